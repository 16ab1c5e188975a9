/*
 * multiround language models: one interface for every back end, an HTTP
 * client for OpenAI-compatible servers (llama.cpp's server, vLLM, Ollama),
 * a pool of models described by a JSON file, and per-model accounting of
 * tokens, cost and latency.
 *
 * An mr_llm is one model behind one back end. A caller fills an
 * mr_llm_request (a chat or a text completion), calls mr_llm_complete() or
 * mr_llm_batch(), reads the mr_llm_result and frees it with
 * mr_llm_result_free(). Every finished call adds its tokens, cost and
 * latency to the model's totals, which mr_llm_usage_get() returns.
 *
 * Every function in this header is thread-safe unless its comment states
 * otherwise, so several threads may call one mr_llm at once.
 */
#ifndef MULTIROUND_LLM_H
#define MULTIROUND_LLM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Requests and results
 * ------------------------------------------------------------------------ */

typedef enum mr_llm_kind {
    MR_LLM_CHAT = 0,       /* messages -> /chat/completions */
    MR_LLM_COMPLETION = 1  /* prompt -> /completions */
} mr_llm_kind;

/* One chat message. role is "system", "user", "assistant" or another role
 * that the server accepts. */
typedef struct mr_llm_message {
    const char *role;
    const char *content;
} mr_llm_message;

/* Maximum number of stop strings in one request. OpenAI's own API takes 4;
 * llama.cpp's server and vLLM take more. */
#define MR_LLM_STOP_MAX 16

/*
 * One request. Call mr_llm_request_init() first: it sets every optional
 * field to "not sent", so the server's default applies. The request only
 * borrows its strings; they must stay valid until the call returns.
 */
typedef struct mr_llm_request {
    mr_llm_kind kind;
    const mr_llm_message *messages;  /* chat: n_messages >= 1 messages */
    int n_messages;
    const char *prompt;              /* completion: the prompt text */
    int max_tokens;                  /* > 0, or 0 to leave it to the server */
    double temperature;              /* in [0, 2], or < 0 to leave it out */
    double top_p;                    /* in (0, 1], or < 0 to leave it out */
    bool use_seed;                   /* send seed when true */
    int64_t seed;
    const char *stop[MR_LLM_STOP_MAX]; /* stop strings, each non-empty */
    int n_stop;
    double timeout_s;                /* limit on each attempt in seconds;
                                        <= 0 uses the back end's default */
} mr_llm_request;

/* Sets kind to MR_LLM_CHAT and every optional field to "not sent". */
void mr_llm_request_init(mr_llm_request *request);

/* Maximum lengths of the fixed strings in a result, including the NUL. */
#define MR_LLM_MODEL_NAME_MAX 128
#define MR_LLM_FINISH_REASON_MAX 32

/*
 * The outcome of one request. text is allocated by the call and freed by
 * mr_llm_result_free(). On failure, error contains the status and message
 * and text is NULL, while http_status, attempts and latency_s still
 * describe the failed call.
 */
typedef struct mr_llm_result {
    char *text;                 /* generated text, NUL-terminated */
    int64_t prompt_tokens;      /* from the server's "usage"; 0 if absent */
    int64_t completion_tokens;
    bool usage_reported;        /* false when the reply had no "usage" */
    char finish_reason[MR_LLM_FINISH_REASON_MAX]; /* "stop", "length", ...;
                                                     "" if the server sent none */
    char model[MR_LLM_MODEL_NAME_MAX]; /* the reply's "model" field */
    long http_status;           /* status of the last attempt; 0 if none */
    int attempts;               /* tries made; 1 means no retry */
    double latency_s;           /* wall time of the whole call, retries and
                                   backoff included */
    double cost_usd;            /* from the model's prices */
    mr_error error;             /* MR_OK on success */
} mr_llm_result;

/* Frees result->text and resets every field. result may be NULL. */
void mr_llm_result_free(mr_llm_result *result);

/* ------------------------------------------------------------------------
 * The model handle and its back ends
 * ------------------------------------------------------------------------ */

typedef struct mr_llm mr_llm;

/*
 * A back end. complete() fills result (text, tokens, finish_reason, model,
 * http_status, attempts) or returns an error through err. It receives
 * only validated requests, and the caller measures latency and cost.
 * complete() must be safe to call from several threads at once on one
 * state. free_state() releases state and may be NULL.
 *
 * Two back ends fill this table: HTTP (mr_llm_http_create) and local, a
 * GGUF model run in-process (mr_llm_local_open in serve.h).
 */
typedef struct mr_llm_backend {
    const char *name;  /* "http", "local", ... */
    mr_status (*complete)(void *state, const mr_llm_request *request,
                          mr_llm_result *result, mr_error *err);
    void (*free_state)(void *state);
} mr_llm_backend;

/*
 * Creates a model handle over a back end. name labels the model in logs
 * and usage reports. The handle takes ownership of state (and frees it
 * with backend->free_state, also when creation fails); backend must
 * outlive the handle. Returns NULL and fills err on failure.
 */
mr_llm *mr_llm_create(const mr_llm_backend *backend, void *state, const char *name,
                      mr_error *err);

/* Frees the handle and its back end state. llm may be NULL. Not
 * thread-safe: no call on llm may be running. */
void mr_llm_free(mr_llm *llm);

const char *mr_llm_name(const mr_llm *llm);
const char *mr_llm_backend_name(const mr_llm *llm);

/* Free-text description, such as the pool file's "description"; "" if
 * none was set. */
const char *mr_llm_description(const mr_llm *llm);
mr_status mr_llm_set_description(mr_llm *llm, const char *description, mr_error *err);

/* Sets the prices in US dollars per million input (prompt) and output
 * (completion) tokens; both must be finite and >= 0. Default 0. */
mr_status mr_llm_set_prices(mr_llm *llm, double input_per_million,
                            double output_per_million, mr_error *err);

/*
 * Runs one request. On success fills result and returns MR_OK. On failure
 * returns the error status, fills err (when not NULL) and result->error
 * with the same message. Either way the caller frees result with
 * mr_llm_result_free(). Invalid requests fail with
 * MR_ERR_INVALID_ARGUMENT before anything is sent.
 */
mr_status mr_llm_complete(mr_llm *llm, const mr_llm_request *request,
                          mr_llm_result *result, mr_error *err);

/*
 * Runs n requests with at most max_in_flight at once and stores result i
 * for request i. Each request runs on its own worker thread's blocking
 * call (see docs/llm.md for why). Every result carries its own error.
 * Returns MR_OK when every request succeeded; otherwise returns the first
 * failed request's status and fills err with how many failed and the
 * first message. max_in_flight <= 0 means 1.
 */
mr_status mr_llm_batch(mr_llm *llm, const mr_llm_request *requests, int n,
                       int max_in_flight, mr_llm_result *results, mr_error *err);

/* ------------------------------------------------------------------------
 * Accounting
 * ------------------------------------------------------------------------ */

/* Totals of one model since creation or the last mr_llm_usage_reset(). */
typedef struct mr_llm_usage {
    int64_t requests;           /* calls that succeeded */
    int64_t failures;           /* calls that failed after validation */
    int64_t retries;            /* attempts beyond the first, all calls */
    int64_t prompt_tokens;
    int64_t completion_tokens;
    double cost_usd;
    double latency_s;           /* sum of latency_s over successful calls */
} mr_llm_usage;

/* Copies the totals of llm into usage. */
void mr_llm_usage_get(mr_llm *llm, mr_llm_usage *usage);

/* Sets the totals of llm to zero. */
void mr_llm_usage_reset(mr_llm *llm);

/* ------------------------------------------------------------------------
 * HTTP back end (OpenAI-compatible servers)
 * ------------------------------------------------------------------------ */

typedef struct mr_llm_http_config {
    const char *base_url;       /* e.g. "http://127.0.0.1:8080/v1"; the client
                                   appends "/chat/completions" or
                                   "/completions" */
    const char *model;          /* model id sent as "model" */
    const char *api_key_env;    /* name of the environment variable holding
                                   the API key, or NULL for none */
    double connect_timeout_s;   /* default 10 */
    double timeout_s;           /* each attempt, default 600 */
    int max_retries;            /* extra attempts after the first, default 3 */
    double backoff_initial_s;   /* first backoff before jitter, default 0.5 */
    double backoff_max_s;       /* cap on backoff and Retry-After, default 30 */
} mr_llm_http_config;

/* Fills config with the defaults above and NULL strings. */
void mr_llm_http_config_init(mr_llm_http_config *config);

/*
 * Creates a model handle that sends requests to an OpenAI-compatible
 * server. name labels the model; NULL uses config->model. The API key is
 * read from the environment once, here, and never logged. Returns NULL and
 * fills err when a field is invalid or the key's variable is unset.
 */
mr_llm *mr_llm_http_create(const mr_llm_http_config *config, const char *name,
                           mr_error *err);

/* ------------------------------------------------------------------------
 * Model pools
 * ------------------------------------------------------------------------ */

typedef struct mr_llm_pool mr_llm_pool;

/*
 * Loads a pool file (format in docs/llm.md) and creates one mr_llm per
 * model. Returns NULL and fills err with the file, the field and the fix
 * when the file is missing, is not JSON, or has an invalid field.
 */
mr_llm_pool *mr_llm_pool_load(const char *path, mr_error *err);

/* Frees the pool and its models. pool may be NULL. */
void mr_llm_pool_free(mr_llm_pool *pool);

int mr_llm_pool_size(const mr_llm_pool *pool);

/* Returns model i in file order, or NULL when i is out of range. */
mr_llm *mr_llm_pool_get(const mr_llm_pool *pool, int i);

/* Returns the model with this name, or NULL when there is none. */
mr_llm *mr_llm_pool_find(const mr_llm_pool *pool, const char *name);

/* Writes a table of every model's usage totals, and a total row, to out. */
void mr_llm_pool_usage_print(const mr_llm_pool *pool, FILE *out);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_LLM_H */
