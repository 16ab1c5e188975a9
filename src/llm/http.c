/*
 * The HTTP back end: POSTs OpenAI-compatible requests with libcurl and
 * retries 429, 5xx and connection failures with exponential backoff and
 * jitter, honouring Retry-After.
 *
 * Each attempt uses its own curl easy handle on the calling thread, so
 * mr_llm_batch's worker threads need no shared curl state.
 * NOTE: a fresh handle per attempt also means a fresh TCP connection per
 * attempt. A connection cache shared through CURLSH would save the
 * handshake, which matters little next to generation time.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "llm_internal.h"

/* A reply larger than this is rejected rather than buffered. */
#define MAX_REPLY_BYTES (64u << 20)

typedef struct http_state {
    char *chat_url;        /* base_url + "/chat/completions" */
    char *completion_url;  /* base_url + "/completions" */
    char *model;
    char *auth_header;     /* "Authorization: Bearer <key>", or NULL */
    double connect_timeout_s;
    double timeout_s;
    int max_retries;
    double backoff_initial_s;
    double backoff_max_s;
    atomic_uint_fast64_t jitter_state;
    atomic_bool usage_warned; /* a reply without "usage" was logged once */
} http_state;

/* What one attempt got back. */
typedef struct http_reply {
    char *body;
    size_t size;
    size_t capacity;
    bool too_large;
    long status;             /* HTTP status, 0 when no reply arrived */
    double retry_after_s;    /* Retry-After in seconds, 0 when absent */
    CURLcode code;
    char curl_message[CURL_ERROR_SIZE];
} http_reply;

/* ------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------ */

void mr_llm_http_config_init(mr_llm_http_config *config) {
    memset(config, 0, sizeof *config);
    config->connect_timeout_s = 10.0;
    config->timeout_s = 600.0;
    config->max_retries = 3;
    config->backoff_initial_s = 0.5;
    config->backoff_max_s = 30.0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code = CURLE_OK;

static void init_curl(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

static void free_http_state(void *opaque) {
    http_state *state = opaque;
    if (state == NULL) {
        return;
    }
    if (state->auth_header != NULL) {
        explicit_bzero(state->auth_header, strlen(state->auth_header));
        free(state->auth_header);
    }
    free(state->chat_url);
    free(state->completion_url);
    free(state->model);
    free(state);
}

/* Returns a malloc'd copy of a followed by b, or NULL when out of memory. */
static char *concat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *out = malloc(na + nb + 1);
    if (out != NULL) {
        memcpy(out, a, na);
        memcpy(out + na, b, nb + 1);
    }
    return out;
}

/* Checks the fields of config; the message names the field and the fix. */
static mr_status validate_config(const mr_llm_http_config *config, mr_error *err) {
    const char *url = config->base_url;
    if (url == NULL || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm http: base_url '%s' is invalid; use an http:// or https:// "
                            "URL such as http://127.0.0.1:8080/v1",
                            url != NULL ? url : "(null)");
    }
    if (config->model == NULL || config->model[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm http: model is missing for %s; set it to the model id the "
                            "server serves",
                            url);
    }
    if (!(config->connect_timeout_s > 0) || !isfinite(config->connect_timeout_s) ||
        !(config->timeout_s > 0) || !isfinite(config->timeout_s)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm http: connect_timeout_s %g and timeout_s %g for %s must be "
                            "finite and > 0",
                            config->connect_timeout_s, config->timeout_s, url);
    }
    if (config->max_retries < 0 || config->max_retries > 100) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm http: max_retries %d for %s is out of range; use 0 to 100",
                            config->max_retries, url);
    }
    if (!(config->backoff_initial_s >= 0) || !(config->backoff_max_s >= 0) ||
        !isfinite(config->backoff_initial_s) || !isfinite(config->backoff_max_s)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llm http: backoff_initial_s %g and backoff_max_s %g for %s must "
                            "be finite and >= 0",
                            config->backoff_initial_s, config->backoff_max_s, url);
    }
    return MR_OK;
}

/* Reads the API key from the variable that config->api_key_env names and
 * stores the Authorization header. The key itself never reaches a message
 * or a log line. */
static mr_status read_api_key(const mr_llm_http_config *config, http_state *state,
                              mr_error *err) {
    if (config->api_key_env == NULL || config->api_key_env[0] == '\0') {
        return MR_OK;
    }
    const char *key = getenv(config->api_key_env);
    if (key == NULL || key[0] == '\0') {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "llm http: environment variable %s, named by api_key_env for "
                            "%s, is not set; export it with the API key, or remove "
                            "api_key_env for a server without keys",
                            config->api_key_env, config->base_url);
    }
    state->auth_header = concat("Authorization: Bearer ", key);
    if (state->auth_header == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llm http: out of memory");
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * One attempt
 * ------------------------------------------------------------------------ */

/* Appends received bytes to the reply; stops the transfer past
 * MAX_REPLY_BYTES. */
static size_t receive_bytes(char *data, size_t size, size_t count, void *opaque) {
    http_reply *reply = opaque;
    size_t n = size * count;
    if (reply->size + n > MAX_REPLY_BYTES) {
        reply->too_large = true;
        return 0;
    }
    if (reply->size + n + 1 > reply->capacity) {
        size_t capacity = reply->capacity > 0 ? reply->capacity : 4096;
        while (capacity < reply->size + n + 1) {
            capacity *= 2;
        }
        char *body = realloc(reply->body, capacity);
        if (body == NULL) {
            return 0;
        }
        reply->body = body;
        reply->capacity = capacity;
    }
    memcpy(reply->body + reply->size, data, n);
    reply->size += n;
    reply->body[reply->size] = '\0';
    return n;
}

/* POSTs body to url once and fills reply. A failure is not returned but
 * stored: reply->code != CURLE_OK and reply->curl_message describe it. */
static void post_once(const http_state *state, const char *url, const char *body,
                      double timeout_s, http_reply *reply) {
    memset(reply, 0, sizeof *reply);
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        reply->code = CURLE_FAILED_INIT;
        snprintf(reply->curl_message, sizeof reply->curl_message, "curl_easy_init failed");
        return;
    }

    /* "Expect:" turns off curl's 100-continue wait on larger bodies. */
    const char *lines[] = {"Content-Type: application/json", "Accept: application/json",
                           "Expect:", state->auth_header};
    struct curl_slist *headers = NULL;
    bool headers_ok = true;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0] && headers_ok; i++) {
        if (lines[i] == NULL) {
            continue;
        }
        struct curl_slist *longer = curl_slist_append(headers, lines[i]);
        headers_ok = longer != NULL;
        headers = longer != NULL ? longer : headers;
    }
    if (!headers_ok) {
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);
        reply->code = CURLE_OUT_OF_MEMORY;
        snprintf(reply->curl_message, sizeof reply->curl_message, "out of memory");
        return;
    }

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "multiround/" MR_VERSION_STRING);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(state->connect_timeout_s * 1e3));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)ceil(timeout_s * 1e3));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, receive_bytes);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, reply->curl_message);

    reply->code = curl_easy_perform(curl);

    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
    curl_off_t retry_after = 0;
    if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
        retry_after > 0) {
        reply->retry_after_s = (double)retry_after;
    }
    if (reply->curl_message[0] == '\0' && reply->code != CURLE_OK) {
        snprintf(reply->curl_message, sizeof reply->curl_message, "%s",
                 curl_easy_strerror(reply->code));
    }

    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
}

/* Returns true for transport failures that a later attempt may not hit. */
static bool is_transient(CURLcode code) {
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return true;
    default:
        return false;
    }
}

/* Returns the advice that follows a transport failure's message. */
static const char *transport_advice(CURLcode code) {
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return "check that the server is running and listening at base_url";
    case CURLE_OPERATION_TIMEDOUT:
        return "the server did not finish in time; raise timeout_s (the request's or the "
               "model's) or lower max_tokens";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        return "the server closed the connection before the reply was complete; check "
               "its log";
    default:
        return "check base_url and the server";
    }
}

/* Returns the advice that follows an HTTP error status. */
static const char *status_advice(long status) {
    if (status == 401 || status == 403) {
        return "check the API key in the variable that api_key_env names";
    }
    if (status == 404) {
        return "check base_url (it usually ends in /v1) and the model id";
    }
    if (status == 429) {
        return "the server is rate limiting; lower max_in_flight or raise max_retries";
    }
    if (status >= 500) {
        return "the server failed; check its log, or raise max_retries";
    }
    return "the server rejected the request; fix the field its message names";
}

/* ------------------------------------------------------------------------
 * Retries
 * ------------------------------------------------------------------------ */

/* Returns a uniform value in [0, 1) from a shared splitmix64 stream. The
 * jitter only spreads retries in time and never changes a result. */
static double next_jitter(http_state *state) {
    uint64_t z = atomic_fetch_add(&state->jitter_state, 0x9e3779b97f4a7c15ULL) +
                 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

/* Returns the wait before retry number retry (1 for the first): the
 * backoff min(backoff_max_s, backoff_initial_s * 2^(retry-1)) times a
 * jitter factor in [0.5, 1). */
static double backoff_delay_s(http_state *state, int retry) {
    double delay = state->backoff_initial_s * ldexp(1.0, retry - 1);
    if (delay > state->backoff_max_s) {
        delay = state->backoff_max_s;
    }
    return delay * (0.5 + 0.5 * next_jitter(state));
}

static void sleep_s(double seconds) {
    struct timespec wait;
    wait.tv_sec = (time_t)seconds;
    wait.tv_nsec = (long)((seconds - (double)wait.tv_sec) * 1e9);
    while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
    }
}

/* Fills err for a failed final attempt. */
static mr_status report_failure(const http_state *state, const char *url,
                                const http_reply *reply, int attempts, mr_error *err) {
    if (reply->too_large) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm http: reply from %s exceeds %u bytes; lower max_tokens",
                            url, MAX_REPLY_BYTES);
    }
    if (reply->code != CURLE_OK) {
        return mr_error_set(err, MR_ERR_IO, "llm http: POST %s failed after %d attempt%s: %s; %s",
                            url, attempts, attempts == 1 ? "" : "s", reply->curl_message,
                            transport_advice(reply->code));
    }

    char server_message[256];
    mr_llm_openai_error_text(reply->body, reply->size, server_message, sizeof server_message);
    mr_status status = MR_ERR_IO;
    if (reply->status == 404) {
        status = MR_ERR_NOT_FOUND;
    } else if (reply->status >= 400 && reply->status < 500 && reply->status != 429) {
        status = MR_ERR_INVALID_ARGUMENT;
    }
    return mr_error_set(err, status,
                        "llm http: POST %s failed with HTTP %ld after %d attempt%s (model "
                        "'%s'): server message '%s'; %s",
                        url, reply->status, attempts, attempts == 1 ? "" : "s", state->model,
                        server_message, status_advice(reply->status));
}

static mr_status complete_http(void *opaque, const mr_llm_request *request,
                               mr_llm_result *result, mr_error *err) {
    http_state *state = opaque;
    const char *url = request->kind == MR_LLM_CHAT ? state->chat_url : state->completion_url;
    double timeout_s = request->timeout_s > 0 ? request->timeout_s : state->timeout_s;

    char *body = NULL;
    mr_status status = mr_llm_openai_build_body(request, state->model, &body, err);
    if (status != MR_OK) {
        return status;
    }

    http_reply reply;
    for (int attempt = 1;; attempt++) {
        post_once(state, url, body, timeout_s, &reply);
        result->attempts = attempt;
        result->http_status = reply.status;

        bool succeeded = reply.code == CURLE_OK && reply.status >= 200 && reply.status < 300;
        if (succeeded) {
            status = mr_llm_openai_parse_reply(reply.body, reply.size, request->kind, url,
                                               state->model, result, err);
            break;
        }

        bool retryable = !reply.too_large &&
                         (reply.code != CURLE_OK ? is_transient(reply.code)
                                                 : (reply.status == 429 || reply.status >= 500));
        if (!retryable || attempt > state->max_retries) {
            status = report_failure(state, url, &reply, attempt, err);
            break;
        }

        /* A Retry-After longer than backoff_max_s would block the caller
         * too long, so the call fails instead. */
        double delay = backoff_delay_s(state, attempt);
        if (reply.retry_after_s > 0) {
            if (reply.retry_after_s > state->backoff_max_s) {
                status = mr_error_set(err, MR_ERR_IO,
                                      "llm http: POST %s failed with HTTP %ld and "
                                      "Retry-After %.0f s, more than backoff_max_s %g; "
                                      "retry later or raise backoff_max_s",
                                      url, reply.status, reply.retry_after_s,
                                      state->backoff_max_s);
                break;
            }
            delay = reply.retry_after_s;
        }
        if (reply.code != CURLE_OK) {
            mr_log(MR_LOG_WARN, "llm", "POST %s failed: %s; retry %d of %d in %.2f s", url,
                   reply.curl_message, attempt, state->max_retries, delay);
        } else {
            mr_log(MR_LOG_WARN, "llm", "POST %s returned HTTP %ld; retry %d of %d in %.2f s",
                   url, reply.status, attempt, state->max_retries, delay);
        }
        free(reply.body);
        sleep_s(delay);
    }

    if (status == MR_OK && !result->usage_reported &&
        !atomic_exchange(&state->usage_warned, true)) {
        mr_log(MR_LOG_WARN, "llm",
               "%s sent no 'usage' in its reply, so tokens and cost of model '%s' count as "
               "0; later replies without it are not logged",
               url, state->model);
    }
    free(reply.body);
    free(body);
    return status;
}

/* ------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------ */

static const mr_llm_backend http_backend = {
    .name = "http",
    .complete = complete_http,
    .free_state = free_http_state,
};

mr_llm *mr_llm_http_create(const mr_llm_http_config *config, const char *name,
                           mr_error *err) {
    if (config == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "mr_llm_http_create: config is NULL");
        return NULL;
    }
    if (validate_config(config, err) != MR_OK) {
        return NULL;
    }
    pthread_once(&curl_once, init_curl);
    if (curl_init_code != CURLE_OK) {
        mr_error_set(err, MR_ERR_STATE, "llm http: curl_global_init failed: %s",
                     curl_easy_strerror(curl_init_code));
        return NULL;
    }

    http_state *state = calloc(1, sizeof *state);
    if (state == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "llm http: out of memory");
        return NULL;
    }

    /* One trailing slash on base_url would double in the joined URLs. */
    char *base = strdup(config->base_url);
    if (base != NULL) {
        size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/') {
            base[--n] = '\0';
        }
        state->chat_url = concat(base, "/chat/completions");
        state->completion_url = concat(base, "/completions");
    }
    free(base);
    state->model = strdup(config->model);
    state->connect_timeout_s = config->connect_timeout_s;
    state->timeout_s = config->timeout_s;
    state->max_retries = config->max_retries;
    state->backoff_initial_s = config->backoff_initial_s;
    state->backoff_max_s = config->backoff_max_s;
    atomic_init(&state->jitter_state, (uint_fast64_t)time(NULL) ^ (uintptr_t)state);
    atomic_init(&state->usage_warned, false);

    if (state->chat_url == NULL || state->completion_url == NULL || state->model == NULL) {
        free_http_state(state);
        mr_error_set(err, MR_ERR_NO_MEMORY, "llm http: out of memory");
        return NULL;
    }
    if (read_api_key(config, state, err) != MR_OK) {
        free_http_state(state);
        return NULL;
    }

    return mr_llm_create(&http_backend, state, name != NULL ? name : config->model, err);
}
