/*
 * multiround serving: a GGUF language model run in-process behind the
 * mr_llm interface (the "local" back end), and an OpenAI-compatible HTTP
 * server over the same model (`multiround serve`, docs/serve.md).
 *
 *     mr_local_model_config config;
 *     mr_local_model_config_init(&config);
 *     config.path = "tests/data/lm/stories260K.gguf";
 *     mr_local_model *model = mr_local_model_open(&config, &err);
 *
 *     mr_llm *llm = mr_llm_local_wrap(model, NULL, &err);  // calls in-process
 *
 *     mr_server_config server_config;
 *     mr_server_config_init(&server_config);
 *     mr_server *server = mr_server_start(&server_config, model, &err);
 *     ... clients call http://127.0.0.1:<mr_server_port(server)>/v1 ...
 *     mr_server_stop(server);
 *
 * One model runs one request at a time: a mutex in mr_local_model
 * serialises generation, and each request gets its own KV cache, so
 * requests never see each other's state.
 */
#ifndef MULTIROUND_SERVE_H
#define MULTIROUND_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/generate.h"
#include "multiround/llm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * The in-process model
 * ------------------------------------------------------------------------ */

/* Settings of an in-process model. */
typedef struct mr_local_model_config {
    const char *path;          /* GGUF file with the weights and the tokenizer */
    const char *lora_dir;      /* PEFT LoRA adapter folder merged into the weights
                                  at load (mr_lora_merge_peft); NULL: none */
    const char *id;            /* model id in replies and /v1/models; NULL: the
                                  file name without its folder and ".gguf" */
    const char *chat_template; /* "chatml", "llama3" or "llama2"; NULL: recognised
                                  from the file's tokenizer.chat_template */
    int context_length;        /* positions per request, prompt and output
                                  together; 0: the model's context length */
    int default_max_tokens;    /* output tokens when a request leaves max_tokens
                                  unset; default 256 */
} mr_local_model_config;

/* Fills config with the defaults above and NULL strings. */
void mr_local_model_config_init(mr_local_model_config *config);

typedef struct mr_local_model mr_local_model;

/*
 * Loads the model and its tokenizer from config->path and picks the chat
 * template. A file without a recognised template and no chat_template
 * setting still serves text completions, while chat requests fail with
 * MR_ERR_UNSUPPORTED. Returns NULL and fills err on a missing or invalid
 * file or adapter, an unknown template name or a context_length outside
 * [0, the model's].
 */
mr_local_model *mr_local_model_open(const mr_local_model_config *config, mr_error *err);

/* Frees the model. model may be NULL. No call on it may be running. */
void mr_local_model_close(mr_local_model *model);

const char *mr_local_model_id(const mr_local_model *model);

/* Positions per request: the config's context_length, or the model's. */
int mr_local_model_context_length(const mr_local_model *model);

/* The chat template's name ("chatml", ...), or NULL when chat requests
 * are not available. */
const char *mr_local_model_chat_template(const mr_local_model *model);

/*
 * A request encoded for the model: the prompt ids, copies of the stop
 * strings and the other generation settings. It owns what it points to,
 * so it outlives the request. Free it with mr_local_prompt_free().
 */
typedef struct mr_local_prompt {
    int32_t *ids;               /* prompt ids, BOS included when the model adds it */
    int n_ids;
    char *stop[MR_LLM_STOP_MAX];
    int n_stop;
    mr_generate_params params;  /* max_tokens already fits the context; stop is
                                   set from the copies at generation time */
} mr_local_prompt;

/*
 * Renders a chat with the model's template (or takes a completion's
 * prompt), encodes it and fills prompt. max_tokens is the request's, or
 * the default when unset, lowered so that prompt and output fit the
 * context. temperature and top_p apply when set; otherwise the sampler
 * defaults of sample.h apply. Without a seed, each request takes the
 * next value of a counter that starts from the clock, so unseeded
 * requests differ from each other. Does not take the model's lock.
 * Fails with MR_ERR_INVALID_ARGUMENT for a prompt that leaves no room
 * for output or a message with an unknown role, and with
 * MR_ERR_UNSUPPORTED for a chat when the model has no template.
 */
mr_status mr_local_prompt_prepare(mr_local_model *model, const mr_llm_request *request,
                                  mr_local_prompt *prompt, mr_error *err);

/* Frees the ids and stop strings and zeroes prompt; NULL is allowed. */
void mr_local_prompt_free(mr_local_prompt *prompt);

/*
 * Generates from a prepared prompt under the model's lock, with a KV
 * cache of its own, and fills result: text, prompt_tokens and
 * completion_tokens (usage_reported true), finish_reason ("stop",
 * "length", or "cancelled" when stream returned false), model (the id)
 * and attempts 1. stream may be NULL; it receives each piece of text as
 * mr_generate_stream_fn describes, from the calling thread.
 */
mr_status mr_local_model_generate(mr_local_model *model, const mr_local_prompt *prompt,
                                  mr_generate_stream_fn stream, void *stream_user_data,
                                  mr_llm_result *result, mr_error *err);

/* ------------------------------------------------------------------------
 * The local back end of mr_llm
 * ------------------------------------------------------------------------ */

/*
 * Creates an mr_llm whose calls run on model in-process. The handle
 * borrows model, which must outlive it. name labels the handle; NULL uses
 * the model's id. The result's http_status is 0 and timeout_s is ignored.
 */
mr_llm *mr_llm_local_wrap(mr_local_model *model, const char *name, mr_error *err);

/* Opens a model as mr_local_model_open() does and wraps it in a handle
 * that owns it. */
mr_llm *mr_llm_local_open(const mr_local_model_config *config, const char *name,
                          mr_error *err);

/* ------------------------------------------------------------------------
 * The OpenAI-compatible HTTP server
 * ------------------------------------------------------------------------ */

/* Settings of a server. */
typedef struct mr_server_config {
    const char *host;          /* IPv4 address to listen on; default "127.0.0.1" */
    int port;                  /* TCP port; 0 lets the OS pick one (default 8080) */
    int queue;                 /* requests that may wait behind the running one;
                                  more get HTTP 503 (default 16) */
    size_t max_body;           /* largest request body in bytes; larger ones get
                                  HTTP 413 (default 1 MiB) */
    int max_connections;       /* open connections at most, each served by its
                                  own thread (default 256) */
    double shutdown_timeout_s; /* how long mr_server_stop() lets the running
                                  request finish before cancelling it (default 5) */
    double token_delay_s;      /* pause after each streamed piece of text, to
                                  imitate a slower model in tests (default 0) */
} mr_server_config;

/* Fills config with the defaults above. */
void mr_server_config_init(mr_server_config *config);

typedef struct mr_server mr_server;

/*
 * Starts serving model on config->host and config->port with
 * libmicrohttpd and returns at once; requests are handled on the
 * server's threads. The server borrows model until mr_server_stop().
 * Logs a warning when host is not a loopback address. Returns NULL and
 * fills err when a setting is invalid or the port cannot be bound.
 */
mr_server *mr_server_start(const mr_server_config *config, mr_local_model *model,
                           mr_error *err);

/* The port the server listens on (the one the OS picked for port 0). */
int mr_server_port(const mr_server *server);

/*
 * Stops the server. It closes the listening socket and replies HTTP 503
 * to waiting requests. The running request may finish within
 * shutdown_timeout_s, and is then cancelled (503, or an error event on a
 * stream). Replies already queued get up to 1 s to reach their clients,
 * then every connection is closed and the server freed. server may be
 * NULL.
 */
void mr_server_stop(mr_server *server);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_SERVE_H */
