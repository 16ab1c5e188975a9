/*
 * multiround's HTTP server and local back end, both ends real: the server
 * runs in this process on 127.0.0.1 with an OS-picked port and serves
 * stories260K (tests/data/lm/). Clients are the mr_llm HTTP back end and
 * raw libcurl requests. Greedy text through HTTP must equal the local back
 * end's and llama2.c's reference story. Stop strings, token counts and
 * streams must agree. Bad requests get 4xx replies with JSON errors while
 * the server keeps serving, and a full queue gets 503. A slow request
 * times out at the client and is cancelled at the server, and a server
 * stopped mid-request replies 503 at once.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "http_probe.h"
#include "multiround/gguf.h"
#include "multiround/llm.h"
#include "multiround/serve.h"
#include "multiround/tokenizer.h"
#include "test.h"

#define STORIES_PATH "data/lm/stories260K.gguf"
#define EXPECTED_PATH "data/lm/expected_greedy_200_ids.txt"
#define STEPS 200

/* Greedy continuation of "Once upon a time," for 12 tokens; the
 * generation tests of tests/lm check its first 6 tokens the same way. */
#define ONCE_PROMPT "Once upon a time,"
#define ONCE_GREEDY_12 " there was a little girl named Lily. She lo"

/* The main server: stories260K, no delay, small body limit. */
#define MAX_BODY 65536

static mr_local_model *model;      /* no chat template */
static mr_local_model *chat_model; /* the same file with ChatML */
static mr_server *server;
static mr_server *chat_server;
static char base_url[64];
static char chat_base_url[64];

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static mr_local_model *open_model(const char *chat_template) {
    mr_local_model_config config;
    mr_local_model_config_init(&config);
    config.path = STORIES_PATH;
    config.chat_template = chat_template;
    mr_error err;
    mr_error_clear(&err);
    mr_local_model *opened = mr_local_model_open(&config, &err);
    if (opened == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", STORIES_PATH, err.message);
    }
    return opened;
}

/* Starts a server on an OS-picked port and writes its /v1 URL to url. */
static mr_server *start_server(mr_local_model *served, int queue, double token_delay_s,
                               double shutdown_timeout_s, char *url, size_t url_size) {
    mr_server_config config;
    mr_server_config_init(&config);
    config.port = 0;
    config.queue = queue;
    config.max_body = MAX_BODY;
    config.token_delay_s = token_delay_s;
    config.shutdown_timeout_s = shutdown_timeout_s;
    mr_error err;
    mr_error_clear(&err);
    mr_server *started = mr_server_start(&config, served, &err);
    if (started == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mr_server_start failed: %s", err.message);
        return NULL;
    }
    snprintf(url, url_size, "http://127.0.0.1:%d/v1", mr_server_port(started));
    return started;
}

/* An HTTP client of url with no retries. */
static mr_llm *http_client(const char *url, double timeout_s) {
    mr_llm_http_config config;
    mr_llm_http_config_init(&config);
    config.base_url = url;
    config.model = "stories260K";
    config.connect_timeout_s = 2.0;
    config.timeout_s = timeout_s;
    config.max_retries = 0;
    mr_error err;
    mr_error_clear(&err);
    mr_llm *llm = mr_llm_http_create(&config, "over-http", &err);
    if (llm == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mr_llm_http_create failed: %s", err.message);
    }
    return llm;
}

static mr_llm *local_client(mr_local_model *served) {
    mr_error err;
    mr_error_clear(&err);
    mr_llm *llm = mr_llm_local_wrap(served, "in-process", &err);
    if (llm == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mr_llm_local_wrap failed: %s", err.message);
    }
    return llm;
}

/* A greedy completion request. */
static mr_llm_request completion(const char *prompt, int max_tokens) {
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.kind = MR_LLM_COMPLETION;
    request.prompt = prompt;
    request.max_tokens = max_tokens;
    request.temperature = 0.0;
    return request;
}

/* Runs request on llm and reports a failure at the caller's line. */
static bool run(mr_llm *llm, const mr_llm_request *request, mr_llm_result *result, int line) {
    mr_error err;
    mr_error_clear(&err);
    if (mr_llm_complete(llm, request, result, &err) != MR_OK) {
        mr_test_fail(__FILE__, line, "%s failed: %s", mr_llm_name(llm), err.message);
        return false;
    }
    return true;
}

/* The reference story: llama2.c's 200 greedy ids from BOS, decoded. */
static char *expected_story(void) {
    int32_t ids[STEPS];
    int count = 0;
    FILE *f = fopen(EXPECTED_PATH, "r");
    while (f != NULL && count < STEPS && fscanf(f, "%d", &ids[count]) == 1) {
        count++;
    }
    if (f != NULL) {
        fclose(f);
    }
    CHECK_INT_EQ(count, STEPS);

    mr_gguf *gguf = NULL;
    mr_tokenizer *tok = NULL;
    mr_error err;
    mr_error_clear(&err);
    char *text = calloc(8192, 1);
    size_t len = 0;
    if (mr_gguf_open(STORIES_PATH, &gguf, &err) != MR_OK ||
        mr_tokenizer_from_gguf(gguf, &tok, &err) != MR_OK ||
        mr_tokenizer_decode(tok, ids, count, true, false, text, 8191, &len, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "cannot decode the reference ids: %s", err.message);
    }
    text[len] = '\0';
    mr_tokenizer_free(tok);
    mr_gguf_close(gguf);
    return text;
}

/* POSTs a JSON body to path under url. */
static void post(const char *url, const char *path, const char *body, probe_reply *reply) {
    char full[128];
    snprintf(full, sizeof full, "%s%s", url, path);
    probe_request("POST", full, body, strlen(body), false, 10.0, reply);
}

/* Returns the string at error.param of a JSON error body, "" for null,
 * or "(none)" when the body is not an error. */
static void error_param(const char *body, char *out, size_t cap) {
    snprintf(out, cap, "(none)");
    cJSON *root = body != NULL ? cJSON_Parse(body) : NULL;
    cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    cJSON *param = cJSON_GetObjectItemCaseSensitive(error, "param");
    cJSON *message = cJSON_GetObjectItemCaseSensitive(error, "message");
    if (cJSON_IsString(message)) {
        snprintf(out, cap, "%s", cJSON_IsString(param) ? param->valuestring : "");
    }
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------------
 * Results through HTTP and in-process
 * ------------------------------------------------------------------------ */

static void greedy_story_over_http(void) {
    mr_llm *http = http_client(base_url, 30.0);
    mr_llm *local = local_client(model);
    char *story = expected_story();

    /* An empty prompt is BOS alone, so greedy decoding retells the
     * reference story. */
    mr_llm_request request = completion("", STEPS);
    mr_llm_result over_http, in_process;
    if (run(http, &request, &over_http, __LINE__) && run(local, &request, &in_process, __LINE__)) {
        CHECK(strcmp(over_http.text, story) == 0);
        CHECK(strcmp(in_process.text, story) == 0);
        CHECK_INT_EQ(over_http.prompt_tokens, 1);
        CHECK_INT_EQ(over_http.completion_tokens, STEPS);
        CHECK_INT_EQ(in_process.prompt_tokens, 1);
        CHECK_INT_EQ(in_process.completion_tokens, STEPS);
        CHECK(strcmp(over_http.finish_reason, "length") == 0);
        CHECK(strcmp(in_process.finish_reason, "length") == 0);
        CHECK(strcmp(over_http.model, "stories260K") == 0);
        CHECK(strcmp(in_process.model, "stories260K") == 0);
        CHECK_INT_EQ(over_http.http_status, 200);
        CHECK(over_http.usage_reported);
    }
    mr_llm_result_free(&over_http);
    mr_llm_result_free(&in_process);

    request = completion(ONCE_PROMPT, 12);
    if (run(http, &request, &over_http, __LINE__)) {
        CHECK(strcmp(over_http.text, ONCE_GREEDY_12) == 0);
        CHECK_INT_EQ(over_http.prompt_tokens, 6);
    }
    mr_llm_result_free(&over_http);

    free(story);
    mr_llm_free(http);
    mr_llm_free(local);
}

static void seeded_sampling_matches(void) {
    mr_llm *http = http_client(base_url, 30.0);
    mr_llm *local = local_client(model);

    /* Sampling with a seed is reproducible and passes through HTTP
     * unchanged; another seed gives another story. */
    mr_llm_request request = completion(ONCE_PROMPT, 40);
    request.temperature = 1.0;
    request.top_p = 0.9;
    request.use_seed = true;
    request.seed = 1234;
    mr_llm_result a, b, other;
    if (run(http, &request, &a, __LINE__) && run(local, &request, &b, __LINE__)) {
        CHECK(strcmp(a.text, b.text) == 0);
        CHECK_INT_EQ(a.completion_tokens, b.completion_tokens);
        CHECK(strcmp(a.finish_reason, b.finish_reason) == 0);
    }
    request.seed = 99;
    if (run(http, &request, &other, __LINE__) && a.text != NULL) {
        CHECK(strcmp(a.text, other.text) != 0);
    }
    mr_llm_result_free(&a);
    mr_llm_result_free(&b);
    mr_llm_result_free(&other);
    mr_llm_free(http);
    mr_llm_free(local);
}

static void stop_string_ends_text(void) {
    mr_llm *http = http_client(base_url, 30.0);
    mr_llm *local = local_client(model);

    /* "Lily" comes after " there was a little girl named ". */
    mr_llm_request request = completion(ONCE_PROMPT, 40);
    request.stop[0] = "dog";
    request.stop[1] = "Lily";
    request.n_stop = 2;
    mr_llm_result over_http, in_process;
    if (run(http, &request, &over_http, __LINE__) && run(local, &request, &in_process, __LINE__)) {
        CHECK(strcmp(over_http.text, " there was a little girl named ") == 0);
        CHECK(strcmp(in_process.text, over_http.text) == 0);
        CHECK(strcmp(over_http.finish_reason, "stop") == 0);
        CHECK(strcmp(in_process.finish_reason, "stop") == 0);
        CHECK_INT_EQ(over_http.completion_tokens, in_process.completion_tokens);
        CHECK(over_http.completion_tokens < 12);
    }
    mr_llm_result_free(&over_http);
    mr_llm_result_free(&in_process);
    mr_llm_free(http);
    mr_llm_free(local);
}

static void usage_totals_agree(void) {
    mr_llm *http = http_client(base_url, 30.0);
    mr_llm *local = local_client(model);
    const char *prompts[] = {"Tom had a ball.", "The sun", "Once upon a time, a cat"};
    int max_tokens[] = {5, 17, 30};

    for (int i = 0; i < 3; i++) {
        mr_llm_request request = completion(prompts[i], max_tokens[i]);
        mr_llm_result a, b;
        if (run(http, &request, &a, __LINE__) && run(local, &request, &b, __LINE__)) {
            CHECK_INT_EQ(a.prompt_tokens, b.prompt_tokens);
            CHECK_INT_EQ(a.completion_tokens, b.completion_tokens);
            CHECK(a.completion_tokens <= max_tokens[i]);
        }
        mr_llm_result_free(&a);
        mr_llm_result_free(&b);
    }

    mr_llm_usage over_http, in_process;
    mr_llm_usage_get(http, &over_http);
    mr_llm_usage_get(local, &in_process);
    CHECK_INT_EQ(over_http.requests, 3);
    CHECK_INT_EQ(in_process.requests, 3);
    CHECK_INT_EQ(over_http.prompt_tokens, in_process.prompt_tokens);
    CHECK_INT_EQ(over_http.completion_tokens, in_process.completion_tokens);
    CHECK(over_http.prompt_tokens > 3);
    mr_llm_free(http);
    mr_llm_free(local);
}

static void chat_template_over_http(void) {
    mr_llm *http = http_client(chat_base_url, 30.0);
    mr_llm *local = local_client(chat_model);
    mr_llm_message messages[] = {{"system", "Tell a story."}, {"user", "A dog"}};
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.messages = messages;
    request.n_messages = 2;
    request.max_tokens = 20;
    request.temperature = 0.0;
    mr_llm_result a, b;
    if (run(http, &request, &a, __LINE__) && run(local, &request, &b, __LINE__)) {
        CHECK(strcmp(a.text, b.text) == 0);
        CHECK(strlen(a.text) > 0);
        CHECK_INT_EQ(a.prompt_tokens, b.prompt_tokens);
        CHECK_INT_EQ(a.completion_tokens, b.completion_tokens);
    }
    mr_llm_result_free(&a);
    mr_llm_result_free(&b);

    /* Without a template, chat is a client error that names messages. */
    probe_reply reply;
    post(base_url, "/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         &reply);
    char param[64];
    error_param(reply.body, param, sizeof param);
    CHECK_INT_EQ(reply.status, 400);
    CHECK(strcmp(param, "messages") == 0);
    CHECK(probe_body_contains(&reply, "no chat template"));
    probe_reply_free(&reply);
    mr_llm_free(http);
    mr_llm_free(local);
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

/* Concatenates the text of a stream's chunks into text and checks the
 * event layout: chunks, one finish chunk, a usage chunk, [DONE]. */
static void read_stream(char *body, bool chat, char *text, size_t cap, const char **finish,
                        int64_t *prompt_tokens, int64_t *completion_tokens, int *n_chunks) {
    static char finish_reason[32];
    char *events[512];
    int n = probe_split_events(body, events, 512);
    text[0] = '\0';
    finish_reason[0] = '\0';
    *finish = finish_reason;
    *n_chunks = 0;
    CHECK(n >= 3);
    CHECK(n <= 512);
    if (n < 3 || n > 512) {
        return;
    }
    CHECK(strcmp(events[n - 1], "[DONE]") == 0);

    for (int i = 0; i < n - 1; i++) {
        cJSON *chunk = cJSON_Parse(events[i]);
        CHECK(chunk != NULL);
        cJSON *choices = cJSON_GetObjectItemCaseSensitive(chunk, "choices");
        cJSON *choice = cJSON_GetArrayItem(choices, 0);
        cJSON *usage = cJSON_GetObjectItemCaseSensitive(chunk, "usage");
        cJSON *object = cJSON_GetObjectItemCaseSensitive(chunk, "object");
        CHECK(cJSON_IsString(object) &&
              strcmp(object->valuestring, chat ? "chat.completion.chunk" : "text_completion") ==
                  0);
        if (usage != NULL) {
            CHECK_INT_EQ(i, n - 2);
            *prompt_tokens = (int64_t)cJSON_GetObjectItem(usage, "prompt_tokens")->valuedouble;
            *completion_tokens =
                (int64_t)cJSON_GetObjectItem(usage, "completion_tokens")->valuedouble;
        } else if (choice != NULL) {
            cJSON *piece = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(choice, "delta"),
                                                      "content")
                                : cJSON_GetObjectItem(choice, "text");
            cJSON *reason = cJSON_GetObjectItem(choice, "finish_reason");
            if (cJSON_IsString(piece)) {
                strncat(text, piece->valuestring, cap - strlen(text) - 1);
                (*n_chunks)++;
            }
            if (cJSON_IsString(reason)) {
                CHECK_INT_EQ(i, n - 3);
                snprintf(finish_reason, sizeof finish_reason, "%s", reason->valuestring);
            }
        }
        cJSON_Delete(chunk);
    }
}

static void stream_concatenates_to_text(void) {
    mr_llm *http = http_client(base_url, 30.0);
    mr_llm_request request = completion(ONCE_PROMPT, 40);
    mr_llm_result whole;
    bool ran = run(http, &request, &whole, __LINE__);

    probe_reply reply;
    post(base_url, "/completions",
         "{\"prompt\":\"" ONCE_PROMPT "\",\"max_tokens\":40,\"temperature\":0,"
         "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
         &reply);
    CHECK_INT_EQ(reply.status, 200);
    CHECK(strncmp(reply.content_type, "text/event-stream", 17) == 0);
    char text[4096];
    const char *finish = "";
    int64_t prompt_tokens = -1, completion_tokens = -1;
    int n_chunks = 0;
    if (reply.body != NULL && ran) {
        read_stream(reply.body, false, text, sizeof text, &finish, &prompt_tokens,
                    &completion_tokens, &n_chunks);
        CHECK(strcmp(text, whole.text) == 0);
        CHECK(strcmp(finish, "length") == 0);
        CHECK_INT_EQ(prompt_tokens, whole.prompt_tokens);
        CHECK_INT_EQ(completion_tokens, whole.completion_tokens);
        CHECK(n_chunks >= 1); /* pieces that wait for the client share a chunk */
    }
    probe_reply_free(&reply);
    mr_llm_result_free(&whole);
    mr_llm_free(http);
}

static void chat_stream_concatenates(void) {
    mr_llm *local = local_client(chat_model);
    mr_llm_message messages[] = {{"user", "A dog"}};
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.messages = messages;
    request.n_messages = 1;
    request.max_tokens = 25;
    request.temperature = 0.0;
    request.stop[0] = "the";
    request.n_stop = 1;
    mr_llm_result whole;
    bool ran = run(local, &request, &whole, __LINE__);

    probe_reply reply;
    post(chat_base_url, "/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"A dog\"}],\"max_tokens\":25,"
         "\"temperature\":0,\"stop\":\"the\",\"stream\":true,"
         "\"stream_options\":{\"include_usage\":true}}",
         &reply);
    CHECK_INT_EQ(reply.status, 200);
    char text[4096];
    const char *finish = "";
    int64_t prompt_tokens = -1, completion_tokens = -1;
    int n_chunks = 0;
    if (reply.body != NULL && ran) {
        CHECK(strstr(reply.body, "\"role\":\"assistant\"") != NULL);
        read_stream(reply.body, true, text, sizeof text, &finish, &prompt_tokens,
                    &completion_tokens, &n_chunks);
        CHECK(strcmp(text, whole.text) == 0);
        CHECK(strcmp(finish, whole.finish_reason) == 0);
        CHECK_INT_EQ(completion_tokens, whole.completion_tokens);
    }
    probe_reply_free(&reply);
    mr_llm_result_free(&whole);
    mr_llm_free(local);
}

/* ------------------------------------------------------------------------
 * Bad requests
 * ------------------------------------------------------------------------ */

static void oversized_body_gets_413(void) {
    size_t size = 4 * MAX_BODY;
    char *body = malloc(size + 1);
    memset(body, 'a', size);
    memcpy(body, "{\"prompt\":\"", 11);
    memcpy(body + size - 2, "\"}", 2);
    body[size] = '\0';
    char url[128];
    snprintf(url, sizeof url, "%s/completions", base_url);

    /* With Content-Length, and chunked (the size shows only while reading). */
    for (int chunked = 0; chunked <= 1; chunked++) {
        probe_reply reply;
        probe_request("POST", url, body, size, chunked == 1, 10.0, &reply);
        CHECK_INT_EQ(reply.status, 413);
        CHECK(probe_body_contains(&reply, "limit of 65536"));
        probe_reply_free(&reply);

        mr_llm *http = http_client(base_url, 30.0);
        mr_llm_request request = completion(ONCE_PROMPT, 12);
        mr_llm_result after;
        if (run(http, &request, &after, __LINE__)) {
            CHECK(strcmp(after.text, ONCE_GREEDY_12) == 0);
        }
        mr_llm_result_free(&after);
        mr_llm_free(http);
    }
    free(body);

    /* A client that waits for "100 Continue" gets the 413 before it sends
     * the body, however large the body would be. */
    size = 64 * MAX_BODY;
    body = malloc(size);
    memset(body, 'a', size);
    probe_reply reply;
    probe_request_with_header("POST", url, body, size, false, "Expect: 100-continue", 10.0,
                              &reply);
    CHECK_INT_EQ(reply.status, 413);
    CHECK(probe_body_contains(&reply, "has 4194304 bytes"));
    CHECK(reply.seconds < 1.0);
    probe_reply_free(&reply);
    free(body);
}

/* The server's request log lines ("POST /v1/... 200, ..."), captured
 * while a test installs capture_log as the log sink. */
#define MAX_CAPTURED 64
static pthread_mutex_t captured_lock = PTHREAD_MUTEX_INITIALIZER;
static char captured[MAX_CAPTURED][512];
static int n_captured;

static void capture_log(mr_log_level level, const char *subsystem, const char *message,
                        void *user_data) {
    (void)level;
    (void)user_data;
    pthread_mutex_lock(&captured_lock);
    if (strcmp(subsystem, "serve") == 0 && strncmp(message, "POST ", 5) == 0 &&
        n_captured < MAX_CAPTURED) {
        snprintf(captured[n_captured++], sizeof captured[0], "%s", message);
    }
    pthread_mutex_unlock(&captured_lock);
}

static void start_capture(void) {
    pthread_mutex_lock(&captured_lock);
    n_captured = 0;
    pthread_mutex_unlock(&captured_lock);
    mr_log_set_callback(capture_log, NULL);
}

/* Restores the stderr sink and returns how many lines were captured. */
static int stop_capture(void) {
    mr_log_set_callback(NULL, NULL);
    pthread_mutex_lock(&captured_lock);
    int n = n_captured;
    pthread_mutex_unlock(&captured_lock);
    return n;
}

/* Reads the status and token counts of a captured request log line;
 * returns false when the line has another form. */
static bool parse_log_line(const char *line, long *status, long *prompt, long *completion) {
    const char *counts = strstr(line, "/completions ");
    return counts != NULL &&
           sscanf(counts, "/completions %ld, %ld prompt + %ld completion tokens", status,
                  prompt, completion) == 3;
}

static void max_tokens_fraction_names_integer(void) {
    probe_reply reply;
    post(base_url, "/completions", "{\"prompt\": \"a\", \"max_tokens\": 1.5}", &reply);
    CHECK_INT_EQ(reply.status, 400);
    CHECK(probe_body_contains(&reply, "must be an integer"));
    CHECK(!probe_body_contains(&reply, "out of range"));
    probe_reply_free(&reply);
}

static void malformed_requests_get_400(void) {
    static const struct {
        const char *path;
        const char *body;
        const char *param; /* "" for the body as a whole */
    } cases[] = {
        {"/completions", "{\"prompt\": \"a\"", ""},
        {"/completions", "[1, 2]", ""},
        {"/completions", "{\"prompt\": \"a\"} x", ""},
        {"/completions", "{}", "prompt"},
        {"/completions", "{\"prompt\": 5}", "prompt"},
        {"/completions", "{\"prompt\": [\"a\", \"b\"]}", "prompt"},
        {"/completions", "{\"prompt\": \"a\", \"max_tokens\": \"5\"}", "max_tokens"},
        {"/completions", "{\"prompt\": \"a\", \"max_tokens\": 0}", "max_tokens"},
        {"/completions", "{\"prompt\": \"a\", \"max_tokens\": 2.5}", "max_tokens"},
        {"/completions", "{\"prompt\": \"a\", \"temperature\": 3}", "temperature"},
        {"/completions", "{\"prompt\": \"a\", \"top_p\": 0}", "top_p"},
        {"/completions", "{\"prompt\": \"a\", \"seed\": \"7\"}", "seed"},
        {"/completions", "{\"prompt\": \"a\", \"stop\": [\"x\", 3]}", "stop[1]"},
        {"/completions", "{\"prompt\": \"a\", \"stop\": 3}", "stop"},
        {"/completions", "{\"prompt\": \"a\", \"stream\": \"yes\"}", "stream"},
        {"/completions", "{\"prompt\": \"a\", \"model\": 1}", "model"},
        {"/completions", "{\"prompt\": \"a\", \"n\": 2}", "n"},
        {"/completions", "{\"prompt\": \"a\", \"logprobs\": 3}", "logprobs"},
        {"/chat/completions", "{\"messages\": []}", "messages"},
        {"/chat/completions", "{\"messages\": [{\"role\": \"user\"}]}", "messages[0].content"},
        {"/chat/completions", "{\"messages\": [{\"content\": \"x\"}]}", "messages[0].role"},
        {"/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}",
         "messages[0].content"},
        {"/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\xff\"}]}",
         "messages[0].content"},
        {"/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}, {\"role\": \"us\xc0\xaf" "er\", "
         "\"content\": \"x\"}]}",
         "messages[1].role"},
        {"/completions", "{\"prompt\": \"\xed\xa0\x80\"}", "prompt"},
        {"/completions", "{\"prompt\": \"a\", \"stop\": [\"x\", \"\xc3\"]}", "stop[1]"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        probe_reply reply;
        post(chat_base_url, cases[i].path, cases[i].body, &reply);
        char param[64];
        error_param(reply.body, param, sizeof param);
        if (reply.status != 400 || strcmp(param, cases[i].param) != 0) {
            mr_test_fail(__FILE__, __LINE__, "case %d (%s): status %ld, param '%s', expected "
                         "400 and '%s'; body %s",
                         i, cases[i].body, reply.status, param, cases[i].param,
                         reply.body != NULL ? reply.body : "(none)");
        }
        CHECK(strncmp(reply.content_type, "application/json", 16) == 0);
        probe_reply_free(&reply);
    }

    /* A prompt longer than the context is the client's fault too. */
    char *long_prompt = malloc(20000);
    snprintf(long_prompt, 20000, "{\"prompt\":\"");
    for (int i = 0; i < 2500; i++) {
        strcat(long_prompt, "a b ");
    }
    strcat(long_prompt, "\"}");
    probe_reply reply;
    post(base_url, "/completions", long_prompt, &reply);
    char param[64];
    error_param(reply.body, param, sizeof param);
    CHECK_INT_EQ(reply.status, 400);
    CHECK(strcmp(param, "prompt") == 0);
    CHECK(probe_body_contains(&reply, "shorten the prompt"));
    probe_reply_free(&reply);
    free(long_prompt);
}

static void unknown_path_and_method(void) {
    char url[128];
    probe_reply reply;
    snprintf(url, sizeof url, "%s/embeddings", base_url);
    probe_request("POST", url, "{}", 2, false, 5.0, &reply);
    CHECK_INT_EQ(reply.status, 404);
    CHECK(probe_body_contains(&reply, "\"error\""));
    probe_reply_free(&reply);

    snprintf(url, sizeof url, "%s/completions", base_url);
    probe_request("GET", url, NULL, 0, false, 5.0, &reply);
    CHECK_INT_EQ(reply.status, 405);
    CHECK(strcmp(reply.allow, "POST") == 0);
    probe_reply_free(&reply);

    snprintf(url, sizeof url, "%s/models", base_url);
    probe_request("DELETE", url, NULL, 0, false, 5.0, &reply);
    CHECK_INT_EQ(reply.status, 405);
    CHECK(strcmp(reply.allow, "GET") == 0);
    probe_reply_free(&reply);

    probe_request("GET", url, NULL, 0, false, 5.0, &reply);
    CHECK_INT_EQ(reply.status, 200);
    CHECK(probe_body_contains(&reply, "\"id\":\"stories260K\""));
    probe_reply_free(&reply);
}

/* ------------------------------------------------------------------------
 * Load, timeouts and shutdown (servers with a token delay)
 * ------------------------------------------------------------------------ */

/* A request sent on its own thread. */
typedef struct background_call {
    const char *url;
    const char *body;
    probe_reply reply;
    pthread_t thread;
} background_call;

static void *background_main(void *arg) {
    background_call *call = arg;
    post(call->url, "/completions", call->body, &call->reply);
    return NULL;
}

static void sleep_s(double seconds) {
    struct timespec wait = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&wait, NULL);
}

static void full_queue_gets_503(void) {
    /* One request runs and one waits (queue 1); each takes about 80
     * pieces * 20 ms = 1.6 s. A third request finds the queue full. */
    char url[64];
    mr_server *slow = start_server(model, 1, 0.02, 5.0, url, sizeof url);
    if (slow == NULL) {
        return;
    }
    const char *body = "{\"prompt\":\"" ONCE_PROMPT "\",\"max_tokens\":80,\"temperature\":0}";
    background_call calls[2] = {{.url = url, .body = body}, {.url = url, .body = body}};
    pthread_create(&calls[0].thread, NULL, background_main, &calls[0]);
    sleep_s(0.5);
    pthread_create(&calls[1].thread, NULL, background_main, &calls[1]);
    sleep_s(0.5);

    probe_reply third;
    post(url, "/completions", body, &third);
    CHECK_INT_EQ(third.status, 503);
    CHECK(probe_body_contains(&third, "queue is full"));
    CHECK(third.seconds < 0.5);
    probe_reply_free(&third);

    for (int i = 0; i < 2; i++) {
        pthread_join(calls[i].thread, NULL);
        CHECK_INT_EQ(calls[i].reply.status, 200);
        probe_reply_free(&calls[i].reply);
    }
    mr_server_stop(slow);
}

static void client_timeout_cancels_job(void) {
    char url[64];
    mr_server *slow = start_server(model, 4, 0.02, 5.0, url, sizeof url);
    if (slow == NULL) {
        return;
    }

    /* 250 pieces at 20 ms take 5 s; the client gives up after 0.3 s. */
    mr_llm *impatient = http_client(url, 0.3);
    mr_llm_request request = completion(ONCE_PROMPT, 250);
    mr_llm_result result;
    mr_error err;
    mr_error_clear(&err);
    double start = now_s();
    CHECK_STATUS(mr_llm_complete(impatient, &request, &result, &err), MR_ERR_IO);
    CHECK(now_s() - start < 1.5);
    CHECK(strstr(err.message, "raise timeout_s") != NULL);
    mr_llm_result_free(&result);
    mr_llm_free(impatient);

    /* The server notices the closed connection and cancels the job, so a
     * short request runs well before the 5 s the first would take. */
    mr_llm *patient = http_client(url, 10.0);
    request = completion(ONCE_PROMPT, 3);
    start = now_s();
    if (run(patient, &request, &result, __LINE__)) {
        CHECK(strcmp(result.text, " there was a") == 0);
    }
    CHECK(now_s() - start < 2.5);
    mr_llm_result_free(&result);
    mr_llm_free(patient);
    mr_server_stop(slow);
}

/* A blocking mr_llm call on its own thread. */
typedef struct background_llm {
    mr_llm *llm;
    mr_llm_request request;
    mr_llm_result result;
    mr_status status;
    double seconds;
    pthread_t thread;
} background_llm;

static void *background_llm_main(void *arg) {
    background_llm *call = arg;
    double start = now_s();
    call->status = mr_llm_complete(call->llm, &call->request, &call->result, NULL);
    call->seconds = now_s() - start;
    return NULL;
}

static void stop_mid_request_answers_503(void) {
    char url[64];
    mr_server *slow = start_server(model, 4, 0.02, 0.2, url, sizeof url);
    if (slow == NULL) {
        return;
    }

    /* One request runs (200 pieces: 4 s) and one waits behind it. */
    background_llm calls[2];
    for (int i = 0; i < 2; i++) {
        memset(&calls[i], 0, sizeof calls[i]);
        calls[i].llm = http_client(url, 10.0);
        calls[i].request = completion(ONCE_PROMPT, 200);
        pthread_create(&calls[i].thread, NULL, background_llm_main, &calls[i]);
        sleep_s(0.5);
    }
    sleep_s(0.5);

    start_capture();
    double start = now_s();
    mr_server_stop(slow);
    double stop_seconds = now_s() - start;
    CHECK(stop_seconds < 1.5);
    int n_lines = stop_capture();

    /* The running request logs the tokens it generated before it was
     * cancelled; the waiting one logs its prompt and no output. */
    CHECK_INT_EQ(n_lines, 2);
    int with_output = 0, without_output = 0;
    for (int i = 0; i < n_lines && i < 2; i++) {
        long status = 0, prompt = 0, output = 0;
        CHECK(parse_log_line(captured[i], &status, &prompt, &output));
        CHECK_INT_EQ(status, 503);
        CHECK(prompt > 0);
        with_output += output > 0 && output < 200;
        without_output += output == 0;
    }
    CHECK_INT_EQ(with_output, 1);
    CHECK_INT_EQ(without_output, 1);

    for (int i = 0; i < 2; i++) {
        pthread_join(calls[i].thread, NULL);
        CHECK_STATUS(calls[i].status, MR_ERR_IO);
        CHECK_INT_EQ(calls[i].result.http_status, 503);
        CHECK(strstr(calls[i].result.error.message, "shutting down") != NULL);
        CHECK(calls[i].seconds < 3.5); /* 4 s and 8 s if never cancelled */
        mr_llm_result_free(&calls[i].result);
        mr_llm_free(calls[i].llm);
    }

    /* Nothing listens on the port any more. */
    mr_llm *late = http_client(url, 2.0);
    mr_llm_request request = completion(ONCE_PROMPT, 3);
    mr_llm_result result;
    mr_error err;
    mr_error_clear(&err);
    CHECK_STATUS(mr_llm_complete(late, &request, &result, &err), MR_ERR_IO);
    CHECK(strstr(err.message, "check that the server is running") != NULL);
    mr_llm_result_free(&result);
    mr_llm_free(late);
}

static void stop_mid_stream_sends_error(void) {
    char url[64];
    mr_server *slow = start_server(model, 4, 0.02, 0.2, url, sizeof url);
    if (slow == NULL) {
        return;
    }
    background_call call = {
        .url = url,
        .body = "{\"prompt\":\"" ONCE_PROMPT "\",\"max_tokens\":200,\"temperature\":0,"
                "\"stream\":true}"};
    pthread_create(&call.thread, NULL, background_main, &call);
    sleep_s(0.8);
    start_capture();
    mr_server_stop(slow);
    pthread_join(call.thread, NULL);
    int n_lines = stop_capture();

    /* The log line counts the tokens streamed before the shutdown. */
    CHECK_INT_EQ(n_lines, 1);
    long status = 0, prompt = 0, output = 0;
    CHECK(n_lines == 1 && parse_log_line(captured[0], &status, &prompt, &output));
    CHECK_INT_EQ(status, 200);
    CHECK(prompt > 0);
    CHECK(output > 0);
    CHECK(output < 200);

    /* Some text arrived, then an error event instead of [DONE]. */
    CHECK_INT_EQ(call.reply.status, 200);
    CHECK(call.reply.seconds < 2.0);
    char *events[512];
    int n = call.reply.body != NULL ? probe_split_events(call.reply.body, events, 512) : 0;
    CHECK(n >= 2);
    CHECK(n < 200);
    if (n >= 2 && n <= 512) {
        CHECK(strstr(events[0], "\"text\"") != NULL);
        CHECK(strstr(events[n - 1], "shutting down") != NULL);
        CHECK(strcmp(events[n - 1], "[DONE]") != 0);
    }
    probe_reply_free(&call.reply);
}

int main(void) {
    /* stories260K gains nothing from a second kernel thread, and on a
     * loaded machine the team's barriers only add stalls. */
    mr_threads_set(1);
    model = open_model(NULL);
    chat_model = open_model("chatml");
    if (model == NULL || chat_model == NULL) {
        return 1;
    }
    server = start_server(model, 16, 0.0, 5.0, base_url, sizeof base_url);
    chat_server = start_server(chat_model, 16, 0.0, 5.0, chat_base_url, sizeof chat_base_url);
    if (server == NULL || chat_server == NULL) {
        return 1;
    }

    MR_RUN(greedy_story_over_http);
    MR_RUN(seeded_sampling_matches);
    MR_RUN(stop_string_ends_text);
    MR_RUN(usage_totals_agree);
    MR_RUN(chat_template_over_http);
    MR_RUN(stream_concatenates_to_text);
    MR_RUN(chat_stream_concatenates);
    MR_RUN(oversized_body_gets_413);
    MR_RUN(malformed_requests_get_400);
    MR_RUN(max_tokens_fraction_names_integer);
    MR_RUN(unknown_path_and_method);
    MR_RUN(full_queue_gets_503);
    MR_RUN(client_timeout_cancels_job);
    MR_RUN(stop_mid_request_answers_503);
    MR_RUN(stop_mid_stream_sends_error);

    mr_server_stop(server);
    mr_server_stop(chat_server);
    mr_local_model_close(model);
    mr_local_model_close(chat_model);
    return mr_test_finish();
}
