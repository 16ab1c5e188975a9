/*
 * The back-end independent side of mr_llm: request validation, latency and
 * cost, per-model accounting, and batches run on worker threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "llm_internal.h"
#include "multiround/llm.h"

struct mr_llm {
    mr_llm_backend backend;
    void *state;
    char *name;
    char *description;
    double price_input_per_million;
    double price_output_per_million;

    pthread_mutex_t usage_lock; /* guards usage */
    mr_llm_usage usage;
};

/* ------------------------------------------------------------------------
 * Requests and results
 * ------------------------------------------------------------------------ */

void mr_llm_request_init(mr_llm_request *request) {
    memset(request, 0, sizeof *request);
    request->kind = MR_LLM_CHAT;
    request->temperature = -1.0;
    request->top_p = -1.0;
}

void mr_llm_result_free(mr_llm_result *result) {
    if (result == NULL) {
        return;
    }
    free(result->text);
    memset(result, 0, sizeof *result);
}

double mr_llm_now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Checks every field of request against its contract in llm.h. */
static mr_status validate_request(const mr_llm *llm, const mr_llm_request *request,
                                  mr_error *err) {
    const char *name = llm->name;

    if (request->kind == MR_LLM_CHAT) {
        if (request->messages == NULL || request->n_messages < 1) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "llm '%s': a chat request needs at least one message, "
                                "got n_messages = %d%s",
                                name, request->n_messages,
                                request->messages == NULL ? " and messages = NULL" : "");
        }
        for (int i = 0; i < request->n_messages; i++) {
            const mr_llm_message *message = &request->messages[i];
            if (message->role == NULL || message->role[0] == '\0') {
                return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                    "llm '%s': messages[%d].role is missing; set it to "
                                    "\"system\", \"user\" or \"assistant\"",
                                    name, i);
            }
            if (message->content == NULL) {
                return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                    "llm '%s': messages[%d].content is NULL; pass \"\" "
                                    "for an empty message",
                                    name, i);
            }
        }
    } else if (request->kind == MR_LLM_COMPLETION) {
        if (request->prompt == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "llm '%s': a completion request needs a prompt, got NULL",
                                name);
        }
    } else {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm '%s': request kind %d is invalid; use MR_LLM_CHAT or "
                            "MR_LLM_COMPLETION",
                            name, (int)request->kind);
    }

    if (request->max_tokens < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm '%s': max_tokens is %d; use a positive count, or 0 to "
                            "leave it to the server",
                            name, request->max_tokens);
    }
    if (isnan(request->temperature) || request->temperature > 2.0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm '%s': temperature is %g; use a value in [0, 2], or a "
                            "negative value to leave it out",
                            name, request->temperature);
    }
    if (isnan(request->top_p) || request->top_p > 1.0 || request->top_p == 0.0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm '%s': top_p is %g; use a value in (0, 1], or a "
                            "negative value to leave it out",
                            name, request->top_p);
    }
    if (request->n_stop < 0 || request->n_stop > MR_LLM_STOP_MAX) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm '%s': n_stop is %d; a request takes 0 to %d stop strings",
                            name, request->n_stop, MR_LLM_STOP_MAX);
    }
    for (int i = 0; i < request->n_stop; i++) {
        if (request->stop[i] == NULL || request->stop[i][0] == '\0') {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "llm '%s': stop[%d] is %s; every stop string must be "
                                "non-empty",
                                name, i, request->stop[i] == NULL ? "NULL" : "empty");
        }
    }
    if (isnan(request->timeout_s) || isinf(request->timeout_s)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm '%s': timeout_s is %g; use seconds, or 0 for the back "
                            "end's default",
                            name, request->timeout_s);
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * The handle
 * ------------------------------------------------------------------------ */

mr_llm *mr_llm_create(const mr_llm_backend *backend, void *state, const char *name,
                      mr_error *err) {
    if (backend == NULL || backend->complete == NULL || name == NULL || name[0] == '\0') {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "mr_llm_create: backend, backend->complete and a non-empty name "
                     "are required");
        if (backend != NULL && backend->free_state != NULL) {
            backend->free_state(state);
        }
        return NULL;
    }

    mr_llm *llm = calloc(1, sizeof *llm);
    char *name_copy = strdup(name);
    char *description = strdup("");
    if (llm == NULL || name_copy == NULL || description == NULL ||
        pthread_mutex_init(&llm->usage_lock, NULL) != 0) {
        free(llm);
        free(name_copy);
        free(description);
        if (backend->free_state != NULL) {
            backend->free_state(state);
        }
        mr_error_set(err, MR_ERR_NO_MEMORY, "llm '%s': out of memory creating the handle",
                     name);
        return NULL;
    }

    llm->backend = *backend;
    llm->state = state;
    llm->name = name_copy;
    llm->description = description;
    return llm;
}

void mr_llm_free(mr_llm *llm) {
    if (llm == NULL) {
        return;
    }
    if (llm->backend.free_state != NULL) {
        llm->backend.free_state(llm->state);
    }
    pthread_mutex_destroy(&llm->usage_lock);
    free(llm->name);
    free(llm->description);
    free(llm);
}

const char *mr_llm_name(const mr_llm *llm) { return llm->name; }

const char *mr_llm_backend_name(const mr_llm *llm) {
    return llm->backend.name != NULL ? llm->backend.name : "";
}

const char *mr_llm_description(const mr_llm *llm) { return llm->description; }

mr_status mr_llm_set_description(mr_llm *llm, const char *description, mr_error *err) {
    char *copy = strdup(description != NULL ? description : "");
    if (copy == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "llm '%s': out of memory copying the description", llm->name);
    }
    free(llm->description);
    llm->description = copy;
    return MR_OK;
}

mr_status mr_llm_set_prices(mr_llm *llm, double input_per_million,
                            double output_per_million, mr_error *err) {
    if (!isfinite(input_per_million) || input_per_million < 0 ||
        !isfinite(output_per_million) || output_per_million < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm '%s': prices %g and %g per million tokens are invalid; "
                            "use finite values >= 0",
                            llm->name, input_per_million, output_per_million);
    }
    pthread_mutex_lock(&llm->usage_lock);
    llm->price_input_per_million = input_per_million;
    llm->price_output_per_million = output_per_million;
    pthread_mutex_unlock(&llm->usage_lock);
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Calls and accounting
 * ------------------------------------------------------------------------ */

/* Adds one finished call to the totals and sets result->cost_usd. */
static void account_call(mr_llm *llm, mr_llm_result *result, bool succeeded) {
    pthread_mutex_lock(&llm->usage_lock);

    int retries = result->attempts > 1 ? result->attempts - 1 : 0;
    llm->usage.retries += retries;
    if (succeeded) {
        result->cost_usd =
            ((double)result->prompt_tokens * llm->price_input_per_million +
             (double)result->completion_tokens * llm->price_output_per_million) / 1e6;
        llm->usage.requests++;
        llm->usage.prompt_tokens += result->prompt_tokens;
        llm->usage.completion_tokens += result->completion_tokens;
        llm->usage.cost_usd += result->cost_usd;
        llm->usage.latency_s += result->latency_s;
    } else {
        llm->usage.failures++;
    }

    pthread_mutex_unlock(&llm->usage_lock);
}

mr_status mr_llm_complete(mr_llm *llm, const mr_llm_request *request,
                          mr_llm_result *result, mr_error *err) {
    if (result == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "mr_llm_complete: result is NULL");
    }
    memset(result, 0, sizeof *result);
    if (llm == NULL || request == NULL) {
        mr_error_set(&result->error, MR_ERR_INVALID_ARGUMENT,
                     "mr_llm_complete: llm and request must not be NULL");
        return mr_error_set(err, result->error.status, "%s", result->error.message);
    }

    mr_status status = validate_request(llm, request, &result->error);
    if (status != MR_OK) {
        return mr_error_set(err, status, "%s", result->error.message);
    }

    double start = mr_llm_now_s();
    status = llm->backend.complete(llm->state, request, result, &result->error);
    result->latency_s = mr_llm_now_s() - start;

    if (status == MR_OK && result->text == NULL) {
        status = mr_error_set(&result->error, MR_ERR_STATE,
                              "llm '%s': back end '%s' returned no text", llm->name,
                              mr_llm_backend_name(llm));
    }
    if (status != MR_OK) {
        free(result->text);
        result->text = NULL;
        result->error.status = status;
        account_call(llm, result, false);
        return mr_error_set(err, status, "%s", result->error.message);
    }

    result->error.status = MR_OK;
    account_call(llm, result, true);
    return MR_OK;
}

void mr_llm_usage_get(mr_llm *llm, mr_llm_usage *usage) {
    pthread_mutex_lock(&llm->usage_lock);
    *usage = llm->usage;
    pthread_mutex_unlock(&llm->usage_lock);
}

void mr_llm_usage_reset(mr_llm *llm) {
    pthread_mutex_lock(&llm->usage_lock);
    memset(&llm->usage, 0, sizeof llm->usage);
    pthread_mutex_unlock(&llm->usage_lock);
}

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */

/* The work shared by a batch's threads: each takes the next unstarted
 * index until none is left, so results land at their request's index. */
typedef struct batch_work {
    mr_llm *llm;
    const mr_llm_request *requests;
    mr_llm_result *results;
    int n;
    atomic_int next;
} batch_work;

static void *run_batch_worker(void *arg) {
    batch_work *work = arg;
    for (;;) {
        int i = atomic_fetch_add(&work->next, 1);
        if (i >= work->n) {
            break;
        }
        mr_llm_complete(work->llm, &work->requests[i], &work->results[i], NULL);
    }
    return NULL;
}

mr_status mr_llm_batch(mr_llm *llm, const mr_llm_request *requests, int n,
                       int max_in_flight, mr_llm_result *results, mr_error *err) {
    if (llm == NULL || n < 0 || (n > 0 && (requests == NULL || results == NULL))) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "mr_llm_batch: llm, requests and results are required and n "
                            "(%d) must be >= 0",
                            n);
    }
    if (max_in_flight < 1) {
        max_in_flight = 1;
    }
    if (max_in_flight > n) {
        max_in_flight = n;
    }

    batch_work work = {.llm = llm, .requests = requests, .results = results, .n = n};
    atomic_init(&work.next, 0);

    /* The calling thread is one of the workers. A thread that fails to
     * start only lowers the concurrency. */
    int n_threads = max_in_flight > 1 ? max_in_flight - 1 : 0;
    pthread_t *threads = n_threads > 0 ? calloc((size_t)n_threads, sizeof *threads) : NULL;
    int started = 0;
    if (threads != NULL) {
        for (int t = 0; t < n_threads; t++) {
            if (pthread_create(&threads[started], NULL, run_batch_worker, &work) != 0) {
                mr_log(MR_LOG_WARN, "llm",
                       "'%s': started %d of %d batch threads; the batch runs with fewer "
                       "requests in flight",
                       llm->name, started, n_threads);
                break;
            }
            started++;
        }
    }
    run_batch_worker(&work);
    for (int t = 0; t < started; t++) {
        pthread_join(threads[t], NULL);
    }
    free(threads);

    int failed = 0;
    int first_failed = -1;
    for (int i = 0; i < n; i++) {
        if (results[i].error.status != MR_OK) {
            failed++;
            if (first_failed < 0) {
                first_failed = i;
            }
        }
    }
    if (failed == 0) {
        return MR_OK;
    }
    return mr_error_set(err, results[first_failed].error.status,
                        "llm '%s': %d of %d requests failed; request %d: %s", llm->name,
                        failed, n, first_failed, results[first_failed].error.message);
}
