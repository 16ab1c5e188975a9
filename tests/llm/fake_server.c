/*
 * The fake OpenAI-compatible server of fake_server.h, linked into every
 * test of tests/llm.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <microhttpd.h>

#include "fake_server.h"

typedef struct recorded_request {
    char *path;
    char *body;
    char *authorization;
    double time_s;
} recorded_request;

struct fake_server {
    struct MHD_Daemon *daemon;
    char base_url[64];
    fake_reply *script;
    int n_script;
    atomic_bool stopping;

    pthread_mutex_t lock; /* guards the fields below */
    int n_requests;
    int in_flight;
    int max_in_flight;
    recorded_request recorded[FAKE_MAX_RECORDED];
};

/* The state of one request while its body arrives. */
typedef struct request_state {
    int index;
    char *body;
    size_t size;
    bool in_flight;
} request_state;

/* A body sent in part before the connection closes. */
typedef struct partial_body {
    char *text;
    size_t size;
} partial_body;

static double now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Sleeps for ms milliseconds in short steps, returning early once the
 * server stops so that a scripted delay never holds up the test. */
static void wait_ms(fake_server *server, int ms) {
    double end = now_s() + ms / 1000.0;
    while (now_s() < end && !atomic_load(&server->stopping)) {
        struct timespec step = {0, 5 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
}

static char *copy_or_null(const char *text) { return text != NULL ? strdup(text) : NULL; }

/* Marks the request as no longer in flight, once. */
static void leave_flight(fake_server *server, request_state *state) {
    pthread_mutex_lock(&server->lock);
    if (state->in_flight) {
        server->in_flight--;
        state->in_flight = false;
    }
    pthread_mutex_unlock(&server->lock);
}

/* ------------------------------------------------------------------------
 * Generated replies
 * ------------------------------------------------------------------------ */

/* Returns the text the generated reply echoes: the last message's content
 * or the prompt, or "" when the body has neither. */
static const char *echoed_text(const cJSON *request, bool *is_chat) {
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(request, "messages");
    *is_chat = cJSON_IsArray(messages);
    if (*is_chat) {
        int n = cJSON_GetArraySize(messages);
        const cJSON *last = cJSON_GetArrayItem(messages, n - 1);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
        return cJSON_IsString(content) ? content->valuestring : "";
    }
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(request, "prompt");
    return cJSON_IsString(prompt) ? prompt->valuestring : "";
}

/* Cuts text before its first stop string, or else to max_tokens words,
 * and returns the finish reason. */
static const char *apply_limits(const cJSON *request, char *text) {
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(request, "stop");
    char *cut = NULL;
    for (const cJSON *item = stop != NULL ? stop->child : NULL; item != NULL;
         item = item->next) {
        char *found = cJSON_IsString(item) ? strstr(text, item->valuestring) : NULL;
        if (found != NULL && (cut == NULL || found < cut)) {
            cut = found;
        }
    }
    if (cut != NULL) {
        *cut = '\0';
        return "stop";
    }

    const cJSON *max_tokens = cJSON_GetObjectItemCaseSensitive(request, "max_tokens");
    if (cJSON_IsNumber(max_tokens)) {
        int words = 0;
        for (char *p = text; *p != '\0'; p++) {
            if (*p == ' ' && ++words == max_tokens->valueint) {
                *p = '\0';
                return "length";
            }
        }
    }
    return "stop";
}

/* Builds the generated reply for a request body; sets *status to 400 for
 * a scripted failure or a body that is not JSON. */
static char *generate_reply(const char *request_body, const fake_reply *reply, int *status) {
    cJSON *request = cJSON_Parse(request_body != NULL ? request_body : "");
    if (!cJSON_IsObject(request)) {
        cJSON_Delete(request);
        *status = 400;
        return strdup("{\"error\":{\"message\":\"request body is not a JSON object\"}}");
    }

    bool is_chat = false;
    const char *content = echoed_text(request, &is_chat);
    if (strstr(content, "[fail]") != NULL) {
        cJSON_Delete(request);
        *status = 400;
        return strdup("{\"error\":{\"message\":\"scripted failure\",\"type\":\"invalid_request_error\"}}");
    }

    size_t size = strlen(content) + sizeof "echo: ";
    char *text = malloc(size);
    snprintf(text, size, "echo: %s", content);
    const char *finish_reason = apply_limits(request, text);

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(request, "model");
    char served[160];
    snprintf(served, sizeof served, "%s:served", cJSON_IsString(model) ? model->valuestring : "");

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", "fake-1");
    cJSON_AddStringToObject(root, "object", is_chat ? "chat.completion" : "text_completion");
    cJSON_AddStringToObject(root, "model", served);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    if (is_chat) {
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(message, "role", "assistant");
        cJSON_AddStringToObject(message, "content", text);
    } else {
        cJSON_AddStringToObject(choice, "text", text);
    }
    cJSON_AddStringToObject(choice, "finish_reason", finish_reason);
    if (!reply->omit_usage) {
        cJSON *usage = cJSON_AddObjectToObject(root, "usage");
        cJSON_AddNumberToObject(usage, "prompt_tokens", FAKE_PROMPT_TOKENS);
        cJSON_AddNumberToObject(usage, "completion_tokens", FAKE_COMPLETION_TOKENS);
        cJSON_AddNumberToObject(usage, "total_tokens",
                                FAKE_PROMPT_TOKENS + FAKE_COMPLETION_TOKENS);
    }

    char *printed = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    cJSON_Delete(request);
    free(text);
    return printed;
}

/* ------------------------------------------------------------------------
 * libmicrohttpd callbacks
 * ------------------------------------------------------------------------ */

/* Sends the first half of a partial body, then reports an error so that
 * libmicrohttpd closes the connection short of the announced length. */
static ssize_t read_partial(void *cls, uint64_t pos, char *buffer, size_t max) {
    partial_body *partial = cls;
    size_t half = partial->size / 2;
    if (pos >= half) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = half - (size_t)pos < max ? half - (size_t)pos : max;
    memcpy(buffer, partial->text + pos, n);
    return (ssize_t)n;
}

static void free_partial(void *cls) {
    partial_body *partial = cls;
    free(partial->text);
    free(partial);
}

/* Builds the response for a request body according to its scripted reply. */
static struct MHD_Response *build_response(const fake_reply *reply, const char *request_body,
                                           int *status) {
    *status = reply->status != 0 ? reply->status : 200;
    char *body = reply->body != NULL ? strdup(reply->body)
                                     : generate_reply(request_body, reply, status);

    struct MHD_Response *response = NULL;
    if (reply->close_mid_body) {
        partial_body *partial = malloc(sizeof *partial);
        partial->text = body;
        partial->size = strlen(body);
        response = MHD_create_response_from_callback(partial->size, 1024, read_partial,
                                                     partial, free_partial);
    } else {
        response = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    }
    MHD_add_response_header(response, "Content-Type", "application/json");
    if (reply->retry_after != NULL) {
        MHD_add_response_header(response, "Retry-After", reply->retry_after);
    }
    return response;
}

/* Records a new request and counts it in flight. */
static request_state *begin_request(fake_server *server, struct MHD_Connection *connection,
                                    const char *url) {
    request_state *state = calloc(1, sizeof *state);
    const char *authorization =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Authorization");

    pthread_mutex_lock(&server->lock);
    state->index = server->n_requests++;
    state->in_flight = true;
    server->in_flight++;
    if (server->in_flight > server->max_in_flight) {
        server->max_in_flight = server->in_flight;
    }
    if (state->index < FAKE_MAX_RECORDED) {
        recorded_request *record = &server->recorded[state->index];
        record->path = copy_or_null(url);
        record->authorization = copy_or_null(authorization);
        record->time_s = now_s();
    }
    pthread_mutex_unlock(&server->lock);
    return state;
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *connection,
                                      const char *url, const char *method,
                                      const char *version, const char *upload_data,
                                      size_t *upload_data_size, void **request_cls) {
    fake_server *server = cls;
    (void)method;
    (void)version;

    request_state *state = *request_cls;
    if (state == NULL) {
        *request_cls = begin_request(server, connection, url);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        char *body = realloc(state->body, state->size + *upload_data_size + 1);
        memcpy(body + state->size, upload_data, *upload_data_size);
        state->size += *upload_data_size;
        body[state->size] = '\0';
        state->body = body;
        *upload_data_size = 0;
        return MHD_YES;
    }

    /* The whole body has arrived. */
    int script_index = state->index < server->n_script ? state->index : server->n_script - 1;
    const fake_reply *reply = &server->script[script_index];
    pthread_mutex_lock(&server->lock);
    if (state->index < FAKE_MAX_RECORDED) {
        server->recorded[state->index].body = strdup(state->body != NULL ? state->body : "");
    }
    pthread_mutex_unlock(&server->lock);

    wait_ms(server, reply->delay_ms);

    int status = 200;
    struct MHD_Response *response = build_response(reply, state->body, &status);
    leave_flight(server, state);
    enum MHD_Result queued = MHD_queue_response(connection, (unsigned int)status, response);
    MHD_destroy_response(response);
    return queued;
}

/* Frees a request's state; a request the client dropped leaves flight here. */
static void complete_request(void *cls, struct MHD_Connection *connection, void **request_cls,
                             enum MHD_RequestTerminationCode code) {
    fake_server *server = cls;
    request_state *state = *request_cls;
    (void)connection;
    (void)code;
    if (state == NULL) {
        return;
    }
    leave_flight(server, state);
    free(state->body);
    free(state);
    *request_cls = NULL;
}

/* ------------------------------------------------------------------------
 * Start, stop and inspection
 * ------------------------------------------------------------------------ */

fake_server *fake_server_start(const fake_reply *script, int n_script) {
    fake_server *server = calloc(1, sizeof *server);
    server->script = malloc((size_t)n_script * sizeof *script);
    memcpy(server->script, script, (size_t)n_script * sizeof *script);
    server->n_script = n_script;
    atomic_init(&server->stopping, false);
    pthread_mutex_init(&server->lock, NULL);

    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;

    server->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
        handle_request, server, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_NOTIFY_COMPLETED, complete_request, server, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)10, MHD_OPTION_END);
    if (server->daemon == NULL) {
        fprintf(stderr, "fake_server: MHD_start_daemon failed on 127.0.0.1\n");
        fake_server_stop(server);
        return NULL;
    }

    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        fprintf(stderr, "fake_server: could not read back the bound port\n");
        fake_server_stop(server);
        return NULL;
    }
    snprintf(server->base_url, sizeof server->base_url, "http://127.0.0.1:%u/v1",
             (unsigned)info->port);
    return server;
}

void fake_server_stop(fake_server *server) {
    if (server == NULL) {
        return;
    }
    atomic_store(&server->stopping, true);
    if (server->daemon != NULL) {
        MHD_stop_daemon(server->daemon);
    }
    for (int i = 0; i < FAKE_MAX_RECORDED; i++) {
        free(server->recorded[i].path);
        free(server->recorded[i].body);
        free(server->recorded[i].authorization);
    }
    pthread_mutex_destroy(&server->lock);
    free(server->script);
    free(server);
}

const char *fake_server_base_url(const fake_server *server) { return server->base_url; }

int fake_server_request_count(fake_server *server) {
    pthread_mutex_lock(&server->lock);
    int n = server->n_requests;
    pthread_mutex_unlock(&server->lock);
    return n;
}

int fake_server_max_in_flight(fake_server *server) {
    pthread_mutex_lock(&server->lock);
    int n = server->max_in_flight;
    pthread_mutex_unlock(&server->lock);
    return n;
}

/* Returns the record of request i, or NULL when i was not recorded. */
static recorded_request *find_record(fake_server *server, int i) {
    if (i < 0 || i >= FAKE_MAX_RECORDED || i >= fake_server_request_count(server)) {
        return NULL;
    }
    return &server->recorded[i];
}

const char *fake_server_request_path(fake_server *server, int i) {
    recorded_request *record = find_record(server, i);
    return record != NULL ? record->path : NULL;
}

const char *fake_server_request_body(fake_server *server, int i) {
    pthread_mutex_lock(&server->lock);
    const char *body = i >= 0 && i < FAKE_MAX_RECORDED ? server->recorded[i].body : NULL;
    pthread_mutex_unlock(&server->lock);
    return body;
}

const char *fake_server_request_authorization(fake_server *server, int i) {
    recorded_request *record = find_record(server, i);
    return record != NULL ? record->authorization : NULL;
}

double fake_server_request_time_s(fake_server *server, int i) {
    recorded_request *record = find_record(server, i);
    return record != NULL ? record->time_s : -1.0;
}

int fake_unused_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&address, sizeof address) == 0 &&
        getsockname(fd, (struct sockaddr *)&address, &length) == 0) {
        port = ntohs(address.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}
