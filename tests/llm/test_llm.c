/*
 * The back-end independent side of mr_llm, through a scripted in-memory
 * back end: request validation, ownership of back end state, accounting
 * under concurrent calls, and batches.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/llm.h"
#include "test.h"

/* ------------------------------------------------------------------------
 * A scripted back end
 * ------------------------------------------------------------------------ */

/* Echoes the last message or the prompt, reports its length in bytes as
 * completion tokens, and counts how many calls run at once. */
typedef struct echo_state {
    pthread_mutex_t lock;
    int in_flight;
    int max_in_flight;
    int calls;
    int sleep_ms;
    bool *freed; /* set to true by free_echo */
} echo_state;

static mr_status complete_echo(void *opaque, const mr_llm_request *request,
                               mr_llm_result *result, mr_error *err) {
    echo_state *state = opaque;
    pthread_mutex_lock(&state->lock);
    state->calls++;
    state->in_flight++;
    if (state->in_flight > state->max_in_flight) {
        state->max_in_flight = state->in_flight;
    }
    pthread_mutex_unlock(&state->lock);

    if (state->sleep_ms > 0) {
        struct timespec wait = {0, state->sleep_ms * 1000L * 1000L};
        nanosleep(&wait, NULL);
    }

    const char *text = request->kind == MR_LLM_CHAT
                           ? request->messages[request->n_messages - 1].content
                           : request->prompt;
    mr_status status = MR_OK;
    if (strcmp(text, "fail") == 0) {
        status = mr_error_set(err, MR_ERR_IO, "echo: scripted failure");
    } else {
        result->text = strdup(text);
        result->prompt_tokens = 3;
        result->completion_tokens = (int64_t)strlen(text);
        result->attempts = 2;
        snprintf(result->finish_reason, sizeof result->finish_reason, "stop");
    }

    pthread_mutex_lock(&state->lock);
    state->in_flight--;
    pthread_mutex_unlock(&state->lock);
    return status;
}

static void free_echo(void *opaque) {
    echo_state *state = opaque;
    if (state->freed != NULL) {
        *state->freed = true;
    }
    pthread_mutex_destroy(&state->lock);
    free(state);
}

static const mr_llm_backend echo_backend = {
    .name = "echo", .complete = complete_echo, .free_state = free_echo};

static mr_llm *create_echo(int sleep_ms, bool *freed, echo_state **state_out) {
    echo_state *state = calloc(1, sizeof *state);
    pthread_mutex_init(&state->lock, NULL);
    state->sleep_ms = sleep_ms;
    state->freed = freed;
    *state_out = state;
    mr_error err;
    mr_llm *llm = mr_llm_create(&echo_backend, state, "echo-model", &err);
    if (llm == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mr_llm_create failed: %s", err.message);
    }
    return llm;
}

#define CHECK_CONTAINS(text, part)                                                     \
    do {                                                                               \
        const char *text_ = (text);                                                    \
        if (text_ == NULL || strstr(text_, (part)) == NULL) {                          \
            mr_test_fail(__FILE__, __LINE__, "'%s' does not contain '%s'",             \
                         text_ != NULL ? text_ : "(null)", (part));                    \
        }                                                                              \
    } while (0)

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

static void handle_owns_backend_state(void) {
    bool freed = false;
    echo_state *state = NULL;
    mr_llm *llm = create_echo(0, &freed, &state);
    CHECK(strcmp(mr_llm_name(llm), "echo-model") == 0);
    CHECK(strcmp(mr_llm_backend_name(llm), "echo") == 0);
    CHECK(strcmp(mr_llm_description(llm), "") == 0);
    CHECK_STATUS(mr_llm_set_description(llm, "answers with its input", NULL), MR_OK);
    CHECK(strcmp(mr_llm_description(llm), "answers with its input") == 0);
    mr_llm_free(llm);
    CHECK(freed);

    /* A failed creation still frees the state it was given. */
    freed = false;
    echo_state *orphan = calloc(1, sizeof *orphan);
    pthread_mutex_init(&orphan->lock, NULL);
    orphan->freed = &freed;
    mr_error err;
    CHECK(mr_llm_create(&echo_backend, orphan, "", &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(freed);
    mr_llm_free(NULL);
}

static void request_validation_cases(void) {
    echo_state *state = NULL;
    mr_llm *llm = create_echo(0, NULL, &state);
    mr_llm_message good = {"user", "hi"};
    mr_llm_message no_role = {NULL, "hi"};
    mr_llm_message no_content = {"user", NULL};

    struct {
        const char *name;
        mr_llm_request request;
        const char *message;
    } cases[8];
    for (int i = 0; i < 8; i++) {
        mr_llm_request_init(&cases[i].request);
        cases[i].request.messages = &good;
        cases[i].request.n_messages = 1;
    }
    cases[0].name = "no messages";
    cases[0].request.n_messages = 0;
    cases[0].message = "at least one message";
    cases[1].name = "missing role";
    cases[1].request.messages = &no_role;
    cases[1].message = "messages[0].role is missing";
    cases[2].name = "NULL content";
    cases[2].request.messages = &no_content;
    cases[2].message = "messages[0].content is NULL";
    cases[3].name = "completion without prompt";
    cases[3].request.kind = MR_LLM_COMPLETION;
    cases[3].message = "needs a prompt";
    cases[4].name = "negative max_tokens";
    cases[4].request.max_tokens = -5;
    cases[4].message = "max_tokens is -5";
    cases[5].name = "top_p zero";
    cases[5].request.top_p = 0.0;
    cases[5].message = "top_p is 0";
    cases[6].name = "too many stops";
    cases[6].request.n_stop = MR_LLM_STOP_MAX + 1;
    cases[6].message = "n_stop is 17";
    cases[7].name = "empty stop";
    cases[7].request.n_stop = 1;
    cases[7].request.stop[0] = "";
    cases[7].message = "stop[0] is empty";

    for (int i = 0; i < 8; i++) {
        mr_llm_result result;
        mr_error err;
        mr_status status = mr_llm_complete(llm, &cases[i].request, &result, &err);
        if (status != MR_ERR_INVALID_ARGUMENT) {
            mr_test_fail(__FILE__, __LINE__, "case '%s' returned '%s'", cases[i].name,
                         mr_status_name(status));
        }
        CHECK_CONTAINS(err.message, cases[i].message);
        CHECK_CONTAINS(err.message, "echo-model");
        mr_llm_result_free(&result);
    }
    CHECK_INT_EQ(state->calls, 0);
    mr_llm_free(llm);
}

static void prices_set_result_cost(void) {
    echo_state *state = NULL;
    mr_llm *llm = create_echo(0, NULL, &state);
    mr_error err;
    CHECK_STATUS(mr_llm_set_prices(llm, -1.0, 1.0, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "prices -1 and 1");
    CHECK_STATUS(mr_llm_set_prices(llm, 0.5, 1.5, &err), MR_OK);

    mr_llm_request request;
    mr_llm_request_init(&request);
    request.kind = MR_LLM_COMPLETION;
    request.prompt = "ten bytes!";
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK(strcmp(result.text, "ten bytes!") == 0);
    CHECK_INT_EQ(result.completion_tokens, 10);
    /* (3 * 0.5 + 10 * 1.5) / 1e6 dollars */
    CHECK_NEAR(result.cost_usd, 16.5e-6, 1e-15);
    CHECK(result.latency_s >= 0);
    mr_llm_result_free(&result);

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, 1);
    CHECK_INT_EQ(usage.retries, 1);
    CHECK_NEAR(usage.cost_usd, 16.5e-6, 1e-15);
    mr_llm_free(llm);
}

/* Arguments of one thread in usage_totals_under_threads. */
typedef struct caller_args {
    mr_llm *llm;
    int calls;
} caller_args;

static void *call_repeatedly(void *opaque) {
    caller_args *args = opaque;
    mr_llm_message message = {"user", "abcd"};
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.messages = &message;
    request.n_messages = 1;
    for (int i = 0; i < args->calls; i++) {
        mr_llm_result result;
        mr_llm_complete(args->llm, &request, &result, NULL);
        mr_llm_result_free(&result);
    }
    return NULL;
}

static void usage_totals_under_threads(void) {
    echo_state *state = NULL;
    mr_llm *llm = create_echo(0, NULL, &state);
    CHECK_STATUS(mr_llm_set_prices(llm, 1.0, 2.0, NULL), MR_OK);

    enum { THREADS = 4, CALLS = 500 };
    pthread_t threads[THREADS];
    caller_args args = {llm, CALLS};
    for (int t = 0; t < THREADS; t++) {
        pthread_create(&threads[t], NULL, call_repeatedly, &args);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
    }

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, THREADS * CALLS);
    CHECK_INT_EQ(usage.retries, THREADS * CALLS);
    CHECK_INT_EQ(usage.prompt_tokens, 3 * THREADS * CALLS);
    CHECK_INT_EQ(usage.completion_tokens, 4 * THREADS * CALLS);
    /* Each call costs (3 * 1 + 4 * 2) / 1e6 dollars. */
    CHECK_NEAR(usage.cost_usd, 11e-6 * THREADS * CALLS, 1e-12);
    mr_llm_free(llm);
}

static void batch_order_and_limit(void) {
    echo_state *state = NULL;
    mr_llm *llm = create_echo(20, NULL, &state);

    enum { N = 12, C = 3 };
    char texts[N][16];
    mr_llm_message messages[N];
    mr_llm_request requests[N];
    for (int i = 0; i < N; i++) {
        if (i == 5) {
            snprintf(texts[i], sizeof texts[i], "fail");
        } else {
            snprintf(texts[i], sizeof texts[i], "item %d", i);
        }
        messages[i].role = "user";
        messages[i].content = texts[i];
        mr_llm_request_init(&requests[i]);
        requests[i].messages = &messages[i];
        requests[i].n_messages = 1;
    }

    mr_llm_result results[N];
    mr_error err;
    CHECK_STATUS(mr_llm_batch(llm, requests, N, C, results, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, "1 of 12 requests failed; request 5: echo: scripted failure");
    CHECK_INT_EQ(state->max_in_flight, C);
    CHECK_INT_EQ(state->calls, N);
    for (int i = 0; i < N; i++) {
        if (i == 5) {
            CHECK_STATUS(results[i].error.status, MR_ERR_IO);
            CHECK(results[i].text == NULL);
        } else {
            CHECK_STATUS(results[i].error.status, MR_OK);
            CHECK(results[i].text != NULL);
            CHECK(results[i].text == NULL || strcmp(results[i].text, texts[i]) == 0);
        }
        mr_llm_result_free(&results[i]);
    }

    /* An empty batch does nothing and succeeds. */
    CHECK_STATUS(mr_llm_batch(llm, NULL, 0, 4, NULL, NULL), MR_OK);
    CHECK_STATUS(mr_llm_batch(llm, requests, -1, 4, results, &err), MR_ERR_INVALID_ARGUMENT);
    mr_llm_free(llm);
}

int main(void) {
    MR_RUN(handle_owns_backend_state);
    MR_RUN(request_validation_cases);
    MR_RUN(prices_set_result_cost);
    MR_RUN(usage_totals_under_threads);
    MR_RUN(batch_order_and_limit);
    return mr_test_finish();
}
