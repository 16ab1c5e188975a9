/*
 * The HTTP back end against a fake OpenAI-compatible server on 127.0.0.1:
 * request bodies, replies, accounting, retries and backoff, timeouts,
 * broken and malformed replies, concurrency, and an unreachable port.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "fake_server.h"
#include "llm_internal.h"
#include "multiround/llm.h"
#include "test.h"

#define MODEL_ID "fake-model"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Log lines that the library wrote during the running test. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];

static void capture_log(mr_log_level level, const char *subsystem, const char *message,
                        void *user_data) {
    (void)level;
    (void)user_data;
    pthread_mutex_lock(&log_lock);
    size_t used = strlen(log_text);
    snprintf(log_text + used, sizeof log_text - used, "%s: %s\n", subsystem, message);
    pthread_mutex_unlock(&log_lock);
}

static void clear_log(void) {
    pthread_mutex_lock(&log_lock);
    log_text[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

/* A client of server with short timeouts and the given retry settings. */
static mr_llm *create_client(const fake_server *server, int max_retries, double backoff_s) {
    mr_llm_http_config config;
    mr_llm_http_config_init(&config);
    config.base_url = fake_server_base_url(server);
    config.model = MODEL_ID;
    config.connect_timeout_s = 2.0;
    config.timeout_s = 5.0;
    config.max_retries = max_retries;
    config.backoff_initial_s = backoff_s;
    config.backoff_max_s = 2.0;
    mr_error err;
    mr_llm *llm = mr_llm_http_create(&config, NULL, &err);
    if (llm == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mr_llm_http_create failed: %s", err.message);
    }
    return llm;
}

/* A chat request with one user message. */
static mr_llm_request user_request(const char *content, mr_llm_message *message) {
    message->role = "user";
    message->content = content;
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.messages = message;
    request.n_messages = 1;
    return request;
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
 * Requests and replies
 * ------------------------------------------------------------------------ */

static void chat_sends_every_field(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_message messages[2] = {{"system", "Be brief."}, {"user", "Name a prime."}};
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.messages = messages;
    request.n_messages = 2;
    request.max_tokens = 64;
    request.temperature = 0.5;
    request.top_p = 0.875;
    request.use_seed = true;
    request.seed = 9007199254740993LL; /* 2^53 + 1: exact only as an integer */
    const char *stops[5] = {"END", "\n\n", "Q:", "###", "</s>"};
    for (int i = 0; i < 5; i++) {
        request.stop[i] = stops[i];
    }
    request.n_stop = 5;

    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK_STR_EQ(result.text, "echo: Name a prime.");
    CHECK_STR_EQ(result.finish_reason, "stop");
    CHECK_STR_EQ(result.model, MODEL_ID ":served");
    CHECK_INT_EQ(result.http_status, 200);
    CHECK_INT_EQ(result.attempts, 1);
    CHECK_INT_EQ(result.prompt_tokens, FAKE_PROMPT_TOKENS);
    CHECK_INT_EQ(result.completion_tokens, FAKE_COMPLETION_TOKENS);
    CHECK(result.usage_reported);
    CHECK(result.latency_s > 0);
    CHECK_STR_EQ(fake_server_request_path(server, 0), "/v1/chat/completions");

    const char *body = fake_server_request_body(server, 0);
    CHECK_CONTAINS(body, "\"seed\":9007199254740993");
    cJSON *sent = cJSON_Parse(body);
    CHECK_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(sent, "model")), MODEL_ID);
    cJSON *sent_messages = cJSON_GetObjectItem(sent, "messages");
    CHECK_INT_EQ(cJSON_GetArraySize(sent_messages), 2);
    cJSON *first = cJSON_GetArrayItem(sent_messages, 0);
    CHECK_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(first, "role")), "system");
    CHECK_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(first, "content")), "Be brief.");
    cJSON *second = cJSON_GetArrayItem(sent_messages, 1);
    CHECK_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(second, "role")), "user");
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(sent, "max_tokens")), 64, 0);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(sent, "temperature")), 0.5, 0);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(sent, "top_p")), 0.875, 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(sent, "stream")));
    cJSON *sent_stop = cJSON_GetObjectItem(sent, "stop");
    CHECK_INT_EQ(cJSON_GetArraySize(sent_stop), 5);
    for (int i = 0; i < 5; i++) {
        CHECK_STR_EQ(cJSON_GetStringValue(cJSON_GetArrayItem(sent_stop, i)), stops[i]);
    }
    cJSON_Delete(sent);

    mr_llm_result_free(&result);
    CHECK(result.text == NULL);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void unset_fields_left_out(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("hi", &message);
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, NULL), MR_OK);

    cJSON *sent = cJSON_Parse(fake_server_request_body(server, 0));
    CHECK(cJSON_IsObject(sent));
    const char *absent[] = {"max_tokens", "temperature", "top_p", "seed", "stop", "prompt"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        if (cJSON_GetObjectItem(sent, absent[i]) != NULL) {
            mr_test_fail(__FILE__, __LINE__, "field '%s' was sent but never set", absent[i]);
        }
    }
    cJSON_Delete(sent);

    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void completion_sends_prompt(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_request request;
    mr_llm_request_init(&request);
    request.kind = MR_LLM_COMPLETION;
    request.prompt = "Once upon a time";
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK_STR_EQ(result.text, "echo: Once upon a time");
    CHECK_STR_EQ(fake_server_request_path(server, 0), "/v1/completions");

    cJSON *sent = cJSON_Parse(fake_server_request_body(server, 0));
    CHECK_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(sent, "prompt")), "Once upon a time");
    CHECK(cJSON_GetObjectItem(sent, "messages") == NULL);
    cJSON_Delete(sent);

    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void stop_and_length_finish(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    /* The fake server honours the stop string the client passed on. */
    mr_llm_message message;
    mr_llm_request request = user_request("alpha beta END gamma", &message);
    request.stop[0] = "END";
    request.n_stop = 1;
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, NULL), MR_OK);
    CHECK_STR_EQ(result.text, "echo: alpha beta ");
    CHECK_STR_EQ(result.finish_reason, "stop");
    mr_llm_result_free(&result);

    /* Two words reach max_tokens = 2. */
    request = user_request("alpha beta gamma", &message);
    request.max_tokens = 2;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, NULL), MR_OK);
    CHECK_STR_EQ(result.text, "echo: alpha");
    CHECK_STR_EQ(result.finish_reason, "length");
    mr_llm_result_free(&result);

    mr_llm_free(llm);
    fake_server_stop(server);
}

static void api_key_sent_not_logged(void) {
    fake_reply script[] = {{.status = 503, .body = "{}"}, {0}};
    fake_server *server = fake_server_start(script, 2);
    setenv("MR_TEST_LLM_KEY", "sk-test-4242", 1);
    clear_log();

    mr_llm_http_config config;
    mr_llm_http_config_init(&config);
    config.base_url = fake_server_base_url(server);
    config.model = MODEL_ID;
    config.api_key_env = "MR_TEST_LLM_KEY";
    config.backoff_initial_s = 0.01;
    mr_error err;
    mr_llm *llm = mr_llm_http_create(&config, "keyed", &err);
    CHECK(llm != NULL);

    mr_llm_message message;
    mr_llm_request request = user_request("hi", &message);
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK_INT_EQ(result.attempts, 2);
    CHECK_STR_EQ(fake_server_request_authorization(server, 0), "Bearer sk-test-4242");
    CHECK_STR_EQ(fake_server_request_authorization(server, 1), "Bearer sk-test-4242");
    CHECK_CONTAINS(log_text, "HTTP 503; retry 1 of 3");
    CHECK(strstr(log_text, "sk-test") == NULL);
    mr_llm_result_free(&result);
    mr_llm_free(llm);

    /* An unset variable fails at creation and names the variable. */
    unsetenv("MR_TEST_LLM_KEY");
    CHECK(mr_llm_http_create(&config, "keyed", &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "MR_TEST_LLM_KEY");
    CHECK_CONTAINS(err.message, "is not set");

    fake_server_stop(server);
}

static void config_rejects_bad_fields(void) {
    mr_llm_http_config config;
    mr_llm_http_config_init(&config);
    config.base_url = "ftp://127.0.0.1/v1";
    config.model = MODEL_ID;
    mr_error err;
    CHECK(mr_llm_http_create(&config, NULL, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "base_url 'ftp://127.0.0.1/v1' is invalid");

    config.base_url = "http://127.0.0.1:1/v1";
    config.model = NULL;
    CHECK(mr_llm_http_create(&config, NULL, &err) == NULL);
    CHECK_CONTAINS(err.message, "model is missing");

    config.model = MODEL_ID;
    config.timeout_s = 0;
    CHECK(mr_llm_http_create(&config, NULL, &err) == NULL);
    CHECK_CONTAINS(err.message, "timeout_s 0");

    config.timeout_s = 1;
    config.max_retries = -1;
    CHECK(mr_llm_http_create(&config, NULL, &err) == NULL);
    CHECK_CONTAINS(err.message, "max_retries -1");
}

static void invalid_request_sends_nothing(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("hi", &message);
    request.temperature = 3.0;
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "temperature is 3");
    CHECK_STR_EQ(result.error.message, err.message);
    CHECK_INT_EQ(fake_server_request_count(server), 0);

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.failures, 0);
    mr_llm_free(llm);
    fake_server_stop(server);
}

/* ------------------------------------------------------------------------
 * Accounting
 * ------------------------------------------------------------------------ */

static void usage_adds_tokens_and_cost(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);
    CHECK_STATUS(mr_llm_set_prices(llm, 2.0, 10.0, NULL), MR_OK);

    mr_llm_message message;
    mr_llm_request request = user_request("count me", &message);
    double latency_sum = 0;
    for (int i = 0; i < 3; i++) {
        mr_llm_result result;
        CHECK_STATUS(mr_llm_complete(llm, &request, &result, NULL), MR_OK);
        /* (11 * 2 + 7 * 10) / 1e6 dollars */
        CHECK_NEAR(result.cost_usd, 92e-6, 1e-15);
        latency_sum += result.latency_s;
        mr_llm_result_free(&result);
    }

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, 3);
    CHECK_INT_EQ(usage.failures, 0);
    CHECK_INT_EQ(usage.retries, 0);
    CHECK_INT_EQ(usage.prompt_tokens, 3 * FAKE_PROMPT_TOKENS);
    CHECK_INT_EQ(usage.completion_tokens, 3 * FAKE_COMPLETION_TOKENS);
    CHECK_NEAR(usage.cost_usd, 276e-6, 1e-15);
    CHECK_NEAR(usage.latency_s, latency_sum, 1e-12);

    mr_llm_usage_reset(llm);
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, 0);
    CHECK_NEAR(usage.cost_usd, 0, 0);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void missing_usage_counts_zero(void) {
    fake_reply script[] = {{.omit_usage = true}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);
    CHECK_STATUS(mr_llm_set_prices(llm, 2.0, 10.0, NULL), MR_OK);
    clear_log();

    mr_llm_message message;
    mr_llm_request request = user_request("no usage", &message);
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, NULL), MR_OK);
    CHECK(!result.usage_reported);
    CHECK_INT_EQ(result.prompt_tokens, 0);
    CHECK_NEAR(result.cost_usd, 0, 0);
    CHECK_CONTAINS(log_text, "sent no 'usage'");
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

/* ------------------------------------------------------------------------
 * Retries
 * ------------------------------------------------------------------------ */

static void rate_limit_then_success(void) {
    const char *limited = "{\"error\":{\"message\":\"slow down\"}}";
    fake_reply script[] = {{.status = 429, .body = limited},
                           {.status = 429, .body = limited},
                           {0}};
    fake_server *server = fake_server_start(script, 3);
    mr_llm *llm = create_client(server, 3, 0.1);

    mr_llm_message message;
    mr_llm_request request = user_request("patience", &message);
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK_STR_EQ(result.text, "echo: patience");
    CHECK_INT_EQ(result.attempts, 3);
    CHECK_INT_EQ(fake_server_request_count(server), 3);

    /* Backoff before retry r is 0.1 * 2^(r-1) s times a jitter in [0.5, 1). */
    double gap1 = fake_server_request_time_s(server, 1) - fake_server_request_time_s(server, 0);
    double gap2 = fake_server_request_time_s(server, 2) - fake_server_request_time_s(server, 1);
    CHECK(gap1 >= 0.05);
    CHECK(gap1 < 1.0);
    CHECK(gap2 >= 0.1);
    CHECK(gap2 < 1.0);
    CHECK(result.latency_s >= 0.15);

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, 1);
    CHECK_INT_EQ(usage.retries, 2);
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void retry_after_is_honoured(void) {
    fake_reply script[] = {{.status = 429, .body = "{}", .retry_after = "1"}, {0}};
    fake_server *server = fake_server_start(script, 2);
    mr_llm *llm = create_client(server, 2, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("later", &message);
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, NULL), MR_OK);
    CHECK_INT_EQ(result.attempts, 2);
    double gap = fake_server_request_time_s(server, 1) - fake_server_request_time_s(server, 0);
    CHECK(gap >= 0.95);
    CHECK(gap < 3.0);
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void retry_after_beyond_cap_fails(void) {
    fake_reply script[] = {{.status = 429, .body = "{}", .retry_after = "120"}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 2, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("later", &message);
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, "Retry-After 120 s");
    CHECK_CONTAINS(err.message, "backoff_max_s 2");
    CHECK_INT_EQ(fake_server_request_count(server), 1);
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void server_errors_exhaust_retries(void) {
    fake_reply script[] = {
        {.status = 500, .body = "{\"error\":{\"message\":\"model crashed\",\"code\":500}}"}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 2, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("hi", &message);
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_IO);
    CHECK(result.text == NULL);
    CHECK_INT_EQ(result.attempts, 3);
    CHECK_INT_EQ(result.http_status, 500);
    CHECK_INT_EQ(fake_server_request_count(server), 3);
    CHECK_CONTAINS(err.message, "HTTP 500 after 3 attempts");
    CHECK_CONTAINS(err.message, fake_server_base_url(server));
    CHECK_CONTAINS(err.message, "/chat/completions");
    CHECK_CONTAINS(err.message, "'model crashed'");
    CHECK_CONTAINS(err.message, "check its log");
    CHECK_STR_EQ(result.error.message, err.message);

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, 0);
    CHECK_INT_EQ(usage.failures, 1);
    CHECK_INT_EQ(usage.retries, 2);
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void client_errors_not_retried(void) {
    struct {
        int status;
        const char *body;
        mr_status expected;
        const char *message;
    } cases[] = {
        {400, "{\"error\":{\"message\":\"max_tokens too large\"}}", MR_ERR_INVALID_ARGUMENT,
         "'max_tokens too large'"},
        {401, "{\"error\":\"invalid api key\"}", MR_ERR_INVALID_ARGUMENT, "api_key_env"},
        {404, "{\"detail\":\"Not Found\"}", MR_ERR_NOT_FOUND, "'Not Found'"},
        {422, "plain text\nreason", MR_ERR_INVALID_ARGUMENT, "'plain text?reason'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_reply script[] = {{.status = cases[i].status, .body = cases[i].body}};
        fake_server *server = fake_server_start(script, 1);
        mr_llm *llm = create_client(server, 3, 0.01);

        mr_llm_message message;
        mr_llm_request request = user_request("hi", &message);
        mr_llm_result result;
        mr_error err;
        CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), cases[i].expected);
        CHECK_INT_EQ(result.attempts, 1);
        CHECK_INT_EQ(result.http_status, cases[i].status);
        CHECK_INT_EQ(fake_server_request_count(server), 1);
        CHECK_CONTAINS(err.message, cases[i].message);
        char status_text[32];
        snprintf(status_text, sizeof status_text, "HTTP %d", cases[i].status);
        CHECK_CONTAINS(err.message, status_text);

        mr_llm_result_free(&result);
        mr_llm_free(llm);
        fake_server_stop(server);
    }
}

/* ------------------------------------------------------------------------
 * Broken connections and replies
 * ------------------------------------------------------------------------ */

static void slow_server_times_out(void) {
    fake_reply script[] = {{.delay_ms = 3000}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("hi", &message);
    request.timeout_s = 0.3;
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, "timed out");
    CHECK_CONTAINS(err.message, "raise timeout_s");
    CHECK_CONTAINS(err.message, fake_server_base_url(server));
    CHECK_INT_EQ(result.http_status, 0);
    CHECK(result.latency_s >= 0.25);
    CHECK(result.latency_s < 2.0);
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void connection_closed_mid_reply(void) {
    fake_reply script[] = {{.close_mid_body = true}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("cut me off", &message);
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, "closed the connection before the reply was complete");
    CHECK(result.text == NULL);
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);

    /* The same failure is transient, so a retry gets the full reply. */
    fake_reply then_ok[] = {{.close_mid_body = true}, {0}};
    server = fake_server_start(then_ok, 2);
    llm = create_client(server, 1, 0.01);
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK_INT_EQ(result.attempts, 2);
    CHECK_STR_EQ(result.text, "echo: cut me off");
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void malformed_replies_rejected(void) {
    struct {
        const char *body;
        const char *message;
    } cases[] = {
        {"", "returned an empty body"},
        {"<html>Bad Gateway</html>", "is not valid JSON"},
        {"{\"choices\": [{\"message\": {\"content\": \"hel", "truncated"},
        {"[1, 2]", "is an array, expected a JSON object"},
        {"{}", "'choices' missing, expected an array"},
        {"{\"choices\": {}}", "'choices' an object, expected an array"},
        {"{\"choices\": []}", "empty 'choices' array"},
        {"{\"choices\": [7]}", "choices[0] a number, expected an object"},
        {"{\"choices\": [{\"text\": \"hi\"}]}", "choices[0].message missing"},
        {"{\"choices\": [{\"message\": {\"role\": \"assistant\"}}]}",
         "choices[0].message.content missing"},
        {"{\"choices\": [{\"message\": {\"content\": 5}}]}",
         "choices[0].message.content a number"},
        {"{\"choices\": [{\"message\": {\"content\": null}}]}", "tool call"},
        {"{\"choices\": [{\"message\": {\"content\": \"hi\"}, \"finish_reason\": 3}]}",
         "finish_reason a number"},
        {"{\"choices\": [{\"message\": {\"content\": \"hi\"}}], \"usage\": []}",
         "'usage' an array"},
        {"{\"choices\": [{\"message\": {\"content\": \"hi\"}}], "
         "\"usage\": {\"prompt_tokens\": \"3\"}}",
         "usage.prompt_tokens a string"},
        {"{\"choices\": [{\"message\": {\"content\": \"hi\"}}], "
         "\"usage\": {\"completion_tokens\": -4}}",
         "usage.completion_tokens out of range"},
        {"{\"choices\": [{\"message\": {\"content\": \"hi\"}}]} trailing",
         "extra bytes after its JSON value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_reply script[] = {{.body = cases[i].body}};
        fake_server *server = fake_server_start(script, 1);
        mr_llm *llm = create_client(server, 2, 0.01);

        mr_llm_message message;
        mr_llm_request request = user_request("hi", &message);
        mr_llm_result result;
        mr_error err;
        mr_status status = mr_llm_complete(llm, &request, &result, &err);
        if (status != MR_ERR_FORMAT) {
            mr_test_fail(__FILE__, __LINE__, "case %zu returned '%s', expected format error",
                         i, mr_status_name(status));
        }
        CHECK_CONTAINS(err.message, cases[i].message);
        CHECK_CONTAINS(err.message, fake_server_base_url(server));
        CHECK(result.text == NULL);
        CHECK_INT_EQ(result.attempts, 1);
        mr_llm_result_free(&result);
        mr_llm_free(llm);
        fake_server_stop(server);
    }
}

static void error_inside_success_reply(void) {
    fake_reply script[] = {{.body = "{\"error\": {\"message\": \"context too long\"}}"}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_message message;
    mr_llm_request request = user_request("hi", &message);
    mr_llm_result result;
    mr_error err;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, "success status with an error: 'context too long'");
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void unreachable_port_fails(void) {
    int port = fake_unused_port();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);

    mr_llm_http_config config;
    mr_llm_http_config_init(&config);
    config.base_url = url;
    config.model = MODEL_ID;
    config.connect_timeout_s = 1.0;
    config.max_retries = 2;
    config.backoff_initial_s = 0.01;
    mr_error err;
    mr_llm *llm = mr_llm_http_create(&config, NULL, &err);
    CHECK(llm != NULL);

    mr_llm_message message;
    mr_llm_request request = user_request("anyone?", &message);
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_IO);
    CHECK_INT_EQ(result.attempts, 3);
    CHECK_INT_EQ(result.http_status, 0);
    CHECK_CONTAINS(err.message, url);
    CHECK_CONTAINS(err.message, "after 3 attempts");
    CHECK_CONTAINS(err.message, "check that the server is running");
    mr_llm_result_free(&result);
    mr_llm_free(llm);
}

/* ------------------------------------------------------------------------
 * Concurrency
 * ------------------------------------------------------------------------ */

static void batch_keeps_max_in_flight(void) {
    fake_reply script[] = {{.delay_ms = 300}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    enum { N = 8, C = 4 };
    mr_llm_message messages[N];
    mr_llm_request requests[N];
    char contents[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(contents[i], sizeof contents[i], "request %d", i);
        requests[i] = user_request(contents[i], &messages[i]);
    }
    mr_llm_result results[N];
    mr_error err;
    double start = mr_llm_now_s();
    CHECK_STATUS(mr_llm_batch(llm, requests, N, C, results, &err), MR_OK);
    double elapsed = mr_llm_now_s() - start;

    CHECK_INT_EQ(fake_server_max_in_flight(server), C);
    CHECK_INT_EQ(fake_server_request_count(server), N);
    /* Two waves of 0.3 s; one request at a time would take 2.4 s. */
    CHECK(elapsed >= 0.55);
    CHECK(elapsed < 1.8);
    for (int i = 0; i < N; i++) {
        char expected[48];
        snprintf(expected, sizeof expected, "echo: request %d", i);
        CHECK_STR_EQ(results[i].text, expected);
        CHECK_STATUS(results[i].error.status, MR_OK);
        mr_llm_result_free(&results[i]);
    }

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, N);
    CHECK_INT_EQ(usage.prompt_tokens, N * FAKE_PROMPT_TOKENS);
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void batch_of_one_in_flight(void) {
    fake_reply script[] = {{.delay_ms = 50}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 0, 0.01);

    mr_llm_message messages[3];
    mr_llm_request requests[3];
    for (int i = 0; i < 3; i++) {
        requests[i] = user_request("one at a time", &messages[i]);
    }
    mr_llm_result results[3];
    CHECK_STATUS(mr_llm_batch(llm, requests, 3, 0, results, NULL), MR_OK);
    CHECK_INT_EQ(fake_server_max_in_flight(server), 1);
    CHECK_INT_EQ(fake_server_request_count(server), 3);
    for (int i = 0; i < 3; i++) {
        mr_llm_result_free(&results[i]);
    }
    mr_llm_free(llm);
    fake_server_stop(server);
}

static void batch_reports_each_failure(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    mr_llm *llm = create_client(server, 3, 0.01);

    const char *contents[5] = {"a", "b [fail]", "c", "d [fail]", "e"};
    mr_llm_message messages[5];
    mr_llm_request requests[5];
    for (int i = 0; i < 5; i++) {
        requests[i] = user_request(contents[i], &messages[i]);
    }
    mr_llm_result results[5];
    mr_error err;
    CHECK_STATUS(mr_llm_batch(llm, requests, 5, 3, results, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "2 of 5 requests failed; request 1:");
    CHECK_CONTAINS(err.message, "'scripted failure'");
    CHECK_STR_EQ(results[0].text, "echo: a");
    CHECK_STATUS(results[1].error.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(results[1].text == NULL);
    CHECK_STR_EQ(results[2].text, "echo: c");
    CHECK_STATUS(results[3].error.status, MR_ERR_INVALID_ARGUMENT);
    CHECK_STR_EQ(results[4].text, "echo: e");
    for (int i = 0; i < 5; i++) {
        mr_llm_result_free(&results[i]);
    }

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, 3);
    CHECK_INT_EQ(usage.failures, 2);
    CHECK_INT_EQ(usage.retries, 0);
    mr_llm_free(llm);
    fake_server_stop(server);
}

int main(void) {
    /* Every request goes straight to 127.0.0.1, never through a proxy. */
    const char *proxy_variables[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                     "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxy_variables / sizeof proxy_variables[0]; i++) {
        unsetenv(proxy_variables[i]);
    }
    setenv("no_proxy", "*", 1);
    mr_log_set_callback(capture_log, NULL);

    MR_RUN(chat_sends_every_field);
    MR_RUN(unset_fields_left_out);
    MR_RUN(completion_sends_prompt);
    MR_RUN(stop_and_length_finish);
    MR_RUN(api_key_sent_not_logged);
    MR_RUN(config_rejects_bad_fields);
    MR_RUN(invalid_request_sends_nothing);
    MR_RUN(usage_adds_tokens_and_cost);
    MR_RUN(missing_usage_counts_zero);
    MR_RUN(rate_limit_then_success);
    MR_RUN(retry_after_is_honoured);
    MR_RUN(retry_after_beyond_cap_fails);
    MR_RUN(server_errors_exhaust_retries);
    MR_RUN(client_errors_not_retried);
    MR_RUN(slow_server_times_out);
    MR_RUN(connection_closed_mid_reply);
    MR_RUN(malformed_replies_rejected);
    MR_RUN(error_inside_success_reply);
    MR_RUN(unreachable_port_fails);
    MR_RUN(batch_keeps_max_in_flight);
    MR_RUN(batch_of_one_in_flight);
    MR_RUN(batch_reports_each_failure);
    return mr_test_finish();
}
