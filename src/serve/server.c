/*
 * The OpenAI-compatible HTTP server over an in-process model, built on
 * libmicrohttpd with one thread per connection. A connection thread reads
 * and checks the request, prepares the prompt and submits it to the job
 * queue (queue.c), whose one worker runs requests in arrival order. The
 * connection thread then blocks until its job is done, or streams the
 * job's text as server-sent events while it runs. Blocking is allowed
 * because every connection has its own thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "serve_internal.h"

#define DEFAULT_PORT 8080
#define DEFAULT_QUEUE 16
#define DEFAULT_MAX_BODY ((size_t)1 << 20)
#define DEFAULT_MAX_CONNECTIONS 256
#define DEFAULT_SHUTDOWN_TIMEOUT_S 5.0

/* Seconds after which an idle keep-alive connection is closed, which
 * frees its thread. */
#define IDLE_TIMEOUT_S 60

/* How long a shutdown waits for replies already being sent, such as the
 * 503 replies of cancelled requests, before it closes the connections. */
#define FLUSH_TIMEOUT_S 1.0

/* How often a waiting connection checks whether its client went away. */
#define CLIENT_CHECK_S 0.1

/* A body of up to this many times max_body is read and dropped before
 * the 413 reply, so that the client receives it. A larger one is cut off. */
#define DISCARD_FACTOR 16

struct mr_server {
    mr_server_config config;
    char host[64];
    mr_local_model *model;
    job_queue *queue;
    struct MHD_Daemon *daemon;
    int port;
    int64_t started_unix;
    atomic_uint_fast64_t next_id;
    atomic_bool stopping;

    pthread_mutex_t active_lock; /* guards active */
    pthread_cond_t active_done;  /* signalled when active drops to 0 */
    int active;                  /* requests between their headers and the
                                    completion notice */
};

typedef enum route {
    ROUTE_UNKNOWN = 0,
    ROUTE_MODELS = 1,
    ROUTE_COMPLETIONS = 2,
    ROUTE_CHAT = 3
} route;

/* One HTTP request, from its headers to the notice that it completed. */
typedef struct http_request {
    double start_s;
    char method[16];
    char path[128];
    route route;
    char *body;
    size_t size;
    size_t capacity;
    size_t received;
    bool too_large;
    bool responded;
    bool streamed;    /* the stream's free callback writes the log line */
    bool client_gone; /* the client closed the connection before the reply */
    unsigned int status;
    int64_t prompt_tokens;
    int64_t completion_tokens;
} http_request;

void mr_server_config_init(mr_server_config *config) {
    memset(config, 0, sizeof *config);
    config->host = "127.0.0.1";
    config->port = DEFAULT_PORT;
    config->queue = DEFAULT_QUEUE;
    config->max_body = DEFAULT_MAX_BODY;
    config->max_connections = DEFAULT_MAX_CONNECTIONS;
    config->shutdown_timeout_s = DEFAULT_SHUTDOWN_TIMEOUT_S;
}

/* Writes the one log line of a finished request. */
static void log_request(const char *method, const char *path, unsigned int status,
                        int64_t prompt_tokens, int64_t completion_tokens, double start_s,
                        const char *note) {
    double ms = (serve_now_s() - start_s) * 1e3;
    if (status == 0) {
        mr_log(MR_LOG_INFO, "serve", "%s %s -, %lld prompt + %lld completion tokens, %.1f ms%s",
               method, path, (long long)prompt_tokens, (long long)completion_tokens, ms, note);
        return;
    }
    mr_log(MR_LOG_INFO, "serve", "%s %s %u, %lld prompt + %lld completion tokens, %.1f ms%s",
           method, path, status, (long long)prompt_tokens, (long long)completion_tokens, ms,
           note);
}

/* Returns true when the peer of fd has closed its side of the
 * connection. Bytes waiting to be read (a pipelined request) mean the
 * client is still there. */
static bool client_gone(int fd) {
    if (fd < 0) {
        return false;
    }
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info != NULL ? (int)info->connect_fd : -1;
}

/* Fills id with a new reply id: prefix, the server's start time and a
 * counter. */
static void next_reply_id(mr_server *server, const char *prefix, char *id, size_t size) {
    unsigned long long n = (unsigned long long)atomic_fetch_add(&server->next_id, 1);
    snprintf(id, size, "%s-%llx%06llu", prefix, (unsigned long long)server->started_unix, n);
}

/* ------------------------------------------------------------------------
 * Plain replies
 * ------------------------------------------------------------------------ */

/* Queues body (malloc'd; taken over) as a JSON reply with status. */
static enum MHD_Result reply_json(struct MHD_Connection *connection, http_request *request,
                                  unsigned int status, char *body) {
    if (body == NULL) {
        return MHD_NO; /* out of memory: closing the connection is all that is left */
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (response == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW,
                                request->route == ROUTE_MODELS ? "GET" : "POST");
    }
    enum MHD_Result queued = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    request->responded = true;
    request->status = status;
    return queued;
}

/* Queues an OpenAI error body. */
static enum MHD_Result reply_error(struct MHD_Connection *connection, http_request *request,
                                   unsigned int status, const char *type, const char *param,
                                   const char *message) {
    return reply_json(connection, request, status, serve_error_json(message, type, param));
}

/* Returns the OpenAI error type for an HTTP status. */
static const char *error_type(unsigned int status) {
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE || status >= 500) {
        return "server_error";
    }
    return "invalid_request_error";
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

/* A streamed reply: the job it reads and the event bytes not yet sent. */
typedef struct stream_state {
    mr_server *server;
    job *item;
    reply_header header;
    char id[64];
    bool include_usage;
    int fd;
    bool started;  /* the chat's role chunk was produced */
    bool ended;    /* the last event was produced */
    char *out;
    size_t out_len;
    size_t out_sent;
    size_t out_capacity;

    /* For the log line. */
    char method[16];
    char path[128];
    double start_s;
    unsigned int status;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    bool completed;  /* the client received the whole stream */
} stream_state;

/* Appends an event (malloc'd; taken over) to the unsent bytes. Returns
 * false when out of memory. */
static bool stream_push(stream_state *stream, char *event) {
    if (event == NULL) {
        return false;
    }
    size_t len = strlen(event);
    if (stream->out_len + len > stream->out_capacity) {
        size_t capacity = stream->out_capacity > 0 ? stream->out_capacity : 1024;
        while (capacity < stream->out_len + len) {
            capacity *= 2;
        }
        char *bigger = realloc(stream->out, capacity);
        if (bigger == NULL) {
            free(event);
            return false;
        }
        stream->out = bigger;
        stream->out_capacity = capacity;
    }
    memcpy(stream->out + stream->out_len, event, len);
    stream->out_len += len;
    free(event);
    return true;
}

/* Returns "data: " + json + "\n\n" for an error event; json is freed. */
static char *error_event(char *json) {
    if (json == NULL) {
        return NULL;
    }
    size_t len = strlen(json);
    char *event = malloc(len + 9);
    if (event != NULL) {
        snprintf(event, len + 9, "data: %s\n\n", json);
    }
    free(json);
    return event;
}

/* Copies the token counts of a finished job that ran, also when it was
 * cancelled. A job that never ran keeps the counts given: its prompt and
 * 0 output tokens. */
static void take_token_counts(const job *item, int64_t *prompt_tokens,
                              int64_t *completion_tokens) {
    if (item->state != JOB_DONE || item->result.prompt_tokens == 0) {
        return;
    }
    *prompt_tokens = item->result.prompt_tokens;
    *completion_tokens = item->result.completion_tokens;
}

/* Produces the events that end a stream: the finish chunk, the usage
 * chunk when asked for, and [DONE]; or one error event. */
static bool stream_finish(stream_state *stream) {
    job_outcome outcome;
    mr_status status;
    mr_error error;
    job_snapshot(stream->server->queue, stream->item, &outcome, &status, &error);
    const mr_llm_result *result = &stream->item->result;
    stream->ended = true;

    if (outcome == JOB_FINISHED && status == MR_OK) {
        stream->prompt_tokens = result->prompt_tokens;
        stream->completion_tokens = result->completion_tokens;
        char *done = strdup("data: [DONE]\n\n");
        bool ok = stream_push(stream, serve_chunk_event(&stream->header, "", 0, false,
                                                        result->finish_reason, NULL));
        if (ok && stream->include_usage) {
            ok = stream_push(stream,
                             serve_chunk_event(&stream->header, "", 0, false, NULL, result));
        }
        return ok && stream_push(stream, done);
    }

    const char *message = outcome == JOB_SHUTDOWN
                              ? "the server is shutting down; the request was cancelled"
                              : error.message;
    mr_log(MR_LOG_WARN, "serve", "stream %s ended with an error: %s", stream->id, message);
    return stream_push(stream, error_event(serve_error_json(message, "server_error", NULL)));
}

/* Fills the unsent bytes with the next events, waiting for the job's
 * text. Returns false when the stream must end with an error. */
static bool stream_refill(stream_state *stream) {
    stream->out_len = 0;
    stream->out_sent = 0;
    if (!stream->started) {
        stream->started = true;
        if (stream->header.kind == MR_LLM_CHAT) {
            return stream_push(stream,
                               serve_chunk_event(&stream->header, "", 0, true, NULL, NULL));
        }
    }

    for (;;) {
        char *text = NULL;
        size_t len = 0;
        bool done = job_wait(stream->server->queue, stream->item, CLIENT_CHECK_S, true, &text,
                             &len);
        bool ok = true;
        if (text != NULL) {
            ok = stream_push(stream,
                             serve_chunk_event(&stream->header, text, len, false, NULL, NULL));
            free(text);
        }
        if (ok && done) {
            ok = stream_finish(stream);
        }
        if (!ok || stream->out_len > 0) {
            return ok;
        }
        if (client_gone(stream->fd)) {
            job_cancel(stream->server->queue, stream->item, JOB_CANCELLED);
            return false;
        }
    }
}

/* libmicrohttpd's content reader: returns the next bytes of the stream,
 * blocking until there are some. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *stream = cls;
    if (stream->out_sent == stream->out_len) {
        if (stream->ended) {
            stream->completed = true;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (!stream_refill(stream)) {
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = stream->out_len - stream->out_sent;
    n = n < max ? n : max;
    memcpy(buf, stream->out + stream->out_sent, n);
    stream->out_sent += n;
    return (ssize_t)n;
}

/* Called when the stream's response is destroyed: cancels an unfinished
 * job and writes the request's log line. */
static void stream_free(void *cls) {
    stream_state *stream = cls;
    job_cancel(stream->server->queue, stream->item, JOB_CANCELLED);

    /* A cancelled job stops at its next piece of text; its result then
     * has the tokens generated so far, which the log line reports. */
    job_wait(stream->server->queue, stream->item, 0, false, NULL, NULL);
    take_token_counts(stream->item, &stream->prompt_tokens, &stream->completion_tokens);
    log_request(stream->method, stream->path, stream->status, stream->prompt_tokens,
                stream->completion_tokens, stream->start_s,
                stream->completed ? "" : " (stream ended early)");
    job_release(stream->server->queue, stream->item);
    free(stream->out);
    free(stream);
}

/* Queues a 200 reply that streams the job's text. Takes over the
 * caller's reference to item. */
static enum MHD_Result reply_stream(mr_server *server, struct MHD_Connection *connection,
                                    http_request *request, job *item, mr_llm_kind kind,
                                    bool include_usage) {
    stream_state *stream = calloc(1, sizeof *stream);
    if (stream == NULL) {
        job_cancel(server->queue, item, JOB_CANCELLED);
        job_release(server->queue, item);
        return reply_error(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR, "server_error",
                           NULL, "serve: out of memory for the stream");
    }
    stream->server = server;
    stream->item = item;
    next_reply_id(server, kind == MR_LLM_CHAT ? "chatcmpl" : "cmpl", stream->id,
                  sizeof stream->id);
    stream->header = (reply_header){stream->id, mr_local_model_id(server->model),
                                    (int64_t)time(NULL), kind};
    stream->include_usage = include_usage;
    stream->fd = connection_fd(connection);
    snprintf(stream->method, sizeof stream->method, "%s", request->method);
    snprintf(stream->path, sizeof stream->path, "%s", request->path);
    stream->start_s = request->start_s;
    stream->status = MHD_HTTP_OK;
    stream->prompt_tokens = request->prompt_tokens;

    struct MHD_Response *response =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, stream,
                                          stream_free);
    if (response == NULL) {
        stream_free(stream);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result queued = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    request->responded = true;
    request->streamed = true;
    request->status = MHD_HTTP_OK;
    return queued;
}

/* ------------------------------------------------------------------------
 * Completions
 * ------------------------------------------------------------------------ */

/* Waits for a non-streamed job and queues its reply. Takes over the
 * caller's reference to item. */
static enum MHD_Result reply_when_done(mr_server *server, struct MHD_Connection *connection,
                                       http_request *request, job *item, mr_llm_kind kind) {
    int fd = connection_fd(connection);
    while (!job_wait(server->queue, item, CLIENT_CHECK_S, false, NULL, NULL)) {
        if (client_gone(fd)) {
            job_cancel(server->queue, item, JOB_CANCELLED);
        }
    }

    job_outcome outcome;
    mr_status status;
    mr_error error;
    job_snapshot(server->queue, item, &outcome, &status, &error);
    take_token_counts(item, &request->prompt_tokens, &request->completion_tokens);
    enum MHD_Result queued;
    if (outcome == JOB_CANCELLED) {
        /* The client has gone, so this reply only lets libmicrohttpd
         * finish the request; the log line shows no status. */
        queued = reply_error(connection, request, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error",
                             NULL, "the request was cancelled because the client closed the "
                                   "connection");
        request->status = 0;
        request->client_gone = true;
    } else if (outcome == JOB_SHUTDOWN) {
        queued = reply_error(connection, request, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error",
                             NULL, "the server is shutting down; the request was cancelled");
    } else if (status != MR_OK) {
        mr_log(MR_LOG_ERROR, "serve", "%s %s failed: %s", request->method, request->path,
               error.message);
        queued = reply_error(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "server_error", NULL, error.message);
    } else {
        char id[64];
        next_reply_id(server, kind == MR_LLM_CHAT ? "chatcmpl" : "cmpl", id, sizeof id);
        reply_header header = {id, mr_local_model_id(server->model), (int64_t)time(NULL), kind};
        queued = reply_json(connection, request, MHD_HTTP_OK,
                            serve_reply_json(&header, &item->result));
    }
    job_release(server->queue, item);
    return queued;
}

/* Handles a complete /v1/completions or /v1/chat/completions body. */
static enum MHD_Result handle_completion(mr_server *server, struct MHD_Connection *connection,
                                         http_request *request) {
    if (request->too_large) {
        char message[160];
        snprintf(message, sizeof message,
                 "the request body has %zu bytes, more than the server's limit of %zu",
                 request->received, server->config.max_body);
        return reply_error(connection, request, MHD_HTTP_CONTENT_TOO_LARGE,
                           "invalid_request_error", NULL, message);
    }

    mr_llm_kind kind = request->route == ROUTE_CHAT ? MR_LLM_CHAT : MR_LLM_COMPLETION;
    serve_request parsed;
    char param[64];
    mr_error err;
    mr_error_clear(&err);
    mr_status status = serve_request_parse(request->body != NULL ? request->body : "",
                                           request->size, kind, &parsed, param, sizeof param,
                                           &err);
    if (status != MR_OK) {
        serve_request_free(&parsed);
        unsigned int code = status == MR_ERR_INVALID_ARGUMENT ? MHD_HTTP_BAD_REQUEST
                                                              : MHD_HTTP_INTERNAL_SERVER_ERROR;
        return reply_error(connection, request, code, error_type(code), param, err.message);
    }

    mr_local_prompt prompt;
    status = mr_local_prompt_prepare(server->model, &parsed.request, &prompt, &err);
    if (status != MR_OK) {
        serve_request_free(&parsed);
        bool client_fault = status == MR_ERR_INVALID_ARGUMENT || status == MR_ERR_UNSUPPORTED;
        unsigned int code = client_fault ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_INTERNAL_SERVER_ERROR;
        return reply_error(connection, request, code, error_type(code),
                           kind == MR_LLM_CHAT ? "messages" : "prompt", err.message);
    }
    request->prompt_tokens = prompt.n_ids;

    bool full = false;
    bool stopping = false;
    job *item = job_queue_submit(server->queue, &prompt, parsed.stream, &full, &stopping);
    enum MHD_Result result;
    if (item == NULL) {
        unsigned int code = full || stopping ? MHD_HTTP_SERVICE_UNAVAILABLE
                                             : MHD_HTTP_INTERNAL_SERVER_ERROR;
        char message[160];
        if (full) {
            snprintf(message, sizeof message,
                     "the request queue is full (%d waiting behind the running request); "
                     "retry later",
                     server->config.queue);
        } else {
            snprintf(message, sizeof message, "%s",
                     stopping ? "the server is shutting down" : "serve: out of memory");
        }
        result = reply_error(connection, request, code, "server_error", NULL, message);
    } else if (parsed.stream) {
        result = reply_stream(server, connection, request, item, kind, parsed.include_usage);
    } else {
        result = reply_when_done(server, connection, request, item, kind);
    }
    serve_request_free(&parsed);
    return result;
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

/* Routes a request when its headers arrive. Replies at once to GET
 * /v1/models, unknown paths, wrong methods and announced oversized
 * bodies. */
static enum MHD_Result begin_request(mr_server *server, struct MHD_Connection *connection,
                                     http_request *request) {
    const char *path = request->path;
    bool get = strcmp(request->method, MHD_HTTP_METHOD_GET) == 0;
    bool post = strcmp(request->method, MHD_HTTP_METHOD_POST) == 0;
    if (strcmp(path, "/v1/models") == 0) {
        request->route = ROUTE_MODELS;
    } else if (strcmp(path, "/v1/completions") == 0) {
        request->route = ROUTE_COMPLETIONS;
    } else if (strcmp(path, "/v1/chat/completions") == 0) {
        request->route = ROUTE_CHAT;
    }

    char message[300];
    if (request->route == ROUTE_UNKNOWN) {
        snprintf(message, sizeof message,
                 "no endpoint at %s; this server has GET /v1/models, POST /v1/completions "
                 "and POST /v1/chat/completions",
                 path);
        return reply_error(connection, request, MHD_HTTP_NOT_FOUND, "invalid_request_error",
                           NULL, message);
    }
    if (request->route == ROUTE_MODELS) {
        if (!get) {
            snprintf(message, sizeof message, "%s %s is not allowed; use GET", request->method,
                     path);
            return reply_error(connection, request, MHD_HTTP_METHOD_NOT_ALLOWED,
                               "invalid_request_error", NULL, message);
        }
        return reply_json(connection, request, MHD_HTTP_OK,
                          serve_models_json(mr_local_model_id(server->model),
                                            server->started_unix));
    }
    if (!post) {
        snprintf(message, sizeof message, "%s %s is not allowed; use POST", request->method,
                 path);
        return reply_error(connection, request, MHD_HTTP_METHOD_NOT_ALLOWED,
                           "invalid_request_error", NULL, message);
    }

    /* The 413 reply to a body announced as too large goes out at once when
     * the client waits for "100 Continue", or when the body is too large
     * to read and drop. Otherwise the body is read and dropped first,
     * because closing a connection with unread data resets it and the
     * client may then lose the reply. */
    const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *expect = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_EXPECT);
    unsigned long long announced = length != NULL ? strtoull(length, NULL, 10) : 0;
    size_t limit = server->config.max_body;
    if (announced > limit) {
        bool waits = expect != NULL && strcasestr(expect, "100-continue") != NULL;
        if (!waits && announced / DISCARD_FACTOR <= limit) {
            request->too_large = true;
            return MHD_YES;
        }
        snprintf(message, sizeof message,
                 "the request body has %llu bytes, more than the server's limit of %zu",
                 announced, limit);
        return reply_error(connection, request, MHD_HTTP_CONTENT_TOO_LARGE,
                           "invalid_request_error", NULL, message);
    }
    return MHD_YES;
}

/* Stores a piece of the body, or counts and drops it past max_body.
 * Returns false when the upload goes so far past the limit that the
 * connection should close. */
static bool receive_body(mr_server *server, http_request *request, const char *data,
                         size_t size) {
    request->received += size;
    size_t limit = server->config.max_body;
    if (request->too_large || request->received > limit) {
        request->too_large = true;
        return request->received / DISCARD_FACTOR <= limit;
    }
    if (request->size + size + 1 > request->capacity) {
        size_t capacity = request->capacity > 0 ? request->capacity : 4096;
        while (capacity < request->size + size + 1) {
            capacity *= 2;
        }
        char *bigger = realloc(request->body, capacity);
        if (bigger == NULL) {
            return false;
        }
        request->body = bigger;
        request->capacity = capacity;
    }
    memcpy(request->body + request->size, data, size);
    request->size += size;
    request->body[request->size] = '\0';
    return true;
}

/* libmicrohttpd's access handler: called once with the headers, once per
 * piece of body, and once more when the body is complete. */
static enum MHD_Result handle_connection(void *cls, struct MHD_Connection *connection,
                                         const char *url, const char *method,
                                         const char *version, const char *upload_data,
                                         size_t *upload_data_size, void **con_cls) {
    (void)version;
    mr_server *server = cls;
    http_request *request = *con_cls;
    if (request == NULL) {
        request = calloc(1, sizeof *request);
        if (request == NULL) {
            return MHD_NO;
        }
        request->start_s = serve_now_s();
        pthread_mutex_lock(&server->active_lock);
        server->active++;
        pthread_mutex_unlock(&server->active_lock);
        snprintf(request->method, sizeof request->method, "%s", method);
        snprintf(request->path, sizeof request->path, "%s", url);
        *con_cls = request;
        return begin_request(server, connection, request);
    }

    if (request->responded) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool keep = receive_body(server, request, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (!keep) {
            mr_log(MR_LOG_WARN, "serve",
                   "%s %s: closing the connection after %zu body bytes, far past the limit "
                   "of %zu",
                   request->method, request->path, request->received, server->config.max_body);
        }
        return keep ? MHD_YES : MHD_NO;
    }
    return handle_completion(server, connection, request);
}

/* libmicrohttpd's completion notice: logs the request (streams log in
 * stream_free) and frees its state. */
static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode code) {
    (void)connection;
    mr_server *server = cls;
    http_request *request = *con_cls;
    if (request == NULL) {
        return;
    }
    if (!request->streamed) {
        const char *note = "";
        if (request->client_gone || code == MHD_REQUEST_TERMINATED_CLIENT_ABORT ||
            code == MHD_REQUEST_TERMINATED_READ_ERROR) {
            note = " (the client closed the connection)";
        } else if (code == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) {
            note = " (idle timeout)";
        } else if (code == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN) {
            note = " (server shutdown)";
        } else if (code != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            note = " (the connection failed)";
        }
        log_request(request->method, request->path, request->status, request->prompt_tokens,
                    request->completion_tokens, request->start_s, note);
    }
    free(request->body);
    free(request);
    *con_cls = NULL;

    pthread_mutex_lock(&server->active_lock);
    server->active--;
    if (server->active == 0) {
        pthread_cond_broadcast(&server->active_done);
    }
    pthread_mutex_unlock(&server->active_lock);
}

/* Passes libmicrohttpd's own error messages to the log. */
static void log_mhd_error(void *cls, const char *fmt, va_list args) {
    (void)cls;
    char message[512];
    vsnprintf(message, sizeof message, fmt, args);
    size_t len = strlen(message);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == '\r')) {
        message[--len] = '\0';
    }
    mr_log(MR_LOG_WARN, "serve", "libmicrohttpd: %s", message);
}

/* ------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------ */

/* Checks the settings; the message names the field and the fix. */
static mr_status check_config(const mr_server_config *config, struct sockaddr_in *address,
                              mr_error *err) {
    const char *host = config->host != NULL ? config->host : "127.0.0.1";
    memset(address, 0, sizeof *address);
    address->sin_family = AF_INET;
    if (strcmp(host, "localhost") == 0) {
        host = "127.0.0.1";
    }
    /* NOTE: IPv6 addresses are not accepted; the daemon is started without
     * MHD_USE_IPv6. */
    if (inet_pton(AF_INET, host, &address->sin_addr) != 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "serve: host '%s' is not an IPv4 address; use 127.0.0.1, or "
                            "0.0.0.0 for every interface",
                            host);
    }
    if (config->port < 0 || config->port > 65535) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "serve: port %d is out of range; use 0 to 65535 (0 lets the OS "
                            "pick one)",
                            config->port);
    }
    address->sin_port = htons((uint16_t)config->port);
    if (config->queue < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "serve: queue is %d; use a count >= 0", config->queue);
    }
    if (config->max_body < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "serve: max_body is 0; use a byte count >= 1");
    }
    if (config->max_connections < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "serve: max_connections is %d; use a count >= 1",
                            config->max_connections);
    }
    if (!(config->shutdown_timeout_s >= 0) || !(config->token_delay_s >= 0)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "serve: shutdown_timeout_s %g and token_delay_s %g must be >= 0",
                            config->shutdown_timeout_s, config->token_delay_s);
    }
    return MR_OK;
}

/* Frees the server's own memory and locks. */
static void free_server(mr_server *server) {
    pthread_cond_destroy(&server->active_done);
    pthread_mutex_destroy(&server->active_lock);
    free(server);
}

/* Waits up to FLUSH_TIMEOUT_S for every request in progress to complete,
 * so that replies already queued reach their clients. */
static void wait_for_replies(mr_server *server) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)FLUSH_TIMEOUT_S;
    deadline.tv_nsec += (long)((FLUSH_TIMEOUT_S - (double)(time_t)FLUSH_TIMEOUT_S) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&server->active_lock);
    while (server->active > 0 &&
           pthread_cond_timedwait(&server->active_done, &server->active_lock, &deadline) !=
               ETIMEDOUT) {
    }
    int left = server->active;
    pthread_mutex_unlock(&server->active_lock);
    if (left > 0) {
        mr_log(MR_LOG_WARN, "serve",
               "%d request%s still in progress after %.1f s; closing their connections",
               left, left == 1 ? "" : "s", FLUSH_TIMEOUT_S);
    }
}

mr_server *mr_server_start(const mr_server_config *config, mr_local_model *model,
                           mr_error *err) {
    struct sockaddr_in address;
    if (config == NULL || model == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "mr_server_start: config and model are "
                                                   "required");
        return NULL;
    }
    if (check_config(config, &address, err) != MR_OK) {
        return NULL;
    }

    mr_server *server = calloc(1, sizeof *server);
    if (server == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "serve: out of memory");
        return NULL;
    }
    server->config = *config;
    inet_ntop(AF_INET, &address.sin_addr, server->host, sizeof server->host);
    server->config.host = server->host;
    server->model = model;
    server->started_unix = (int64_t)time(NULL);
    atomic_init(&server->next_id, 1);
    atomic_init(&server->stopping, false);
    pthread_mutex_init(&server->active_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&server->active_done, &attr);
    pthread_condattr_destroy(&attr);

    server->queue = job_queue_create(model, config->queue, config->token_delay_s, err);
    if (server->queue == NULL) {
        free_server(server);
        return NULL;
    }

    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_ITC | MHD_USE_ERROR_LOG;
    server->daemon = MHD_start_daemon(
        flags, (uint16_t)config->port, NULL, NULL, handle_connection, server,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd_error, server, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&address, MHD_OPTION_NOTIFY_COMPLETED, request_completed, server,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)config->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S, MHD_OPTION_END);
    if (server->daemon == NULL) {
        mr_error_set(err, MR_ERR_IO,
                     "serve: cannot listen on %s:%d; check that the port is free and the "
                     "address belongs to this machine (libmicrohttpd's message is in the log)",
                     server->host, config->port);
        job_queue_free(server->queue);
        free_server(server);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(server->daemon,
                                                           MHD_DAEMON_INFO_BIND_PORT);
    server->port = info != NULL ? info->port : config->port;

    if ((ntohl(address.sin_addr.s_addr) >> 24) != 127) {
        mr_log(MR_LOG_WARN, "serve",
               "listening on %s, which is not a loopback address: any host that can reach "
               "it can use the model, and the server has no authentication",
               server->host);
    }
    mr_log(MR_LOG_INFO, "serve",
           "listening on http://%s:%d/v1 with model '%s' (queue %d, max body %zu bytes, %d "
           "connections)",
           server->host, server->port, mr_local_model_id(model), config->queue,
           config->max_body, config->max_connections);
    return server;
}

int mr_server_port(const mr_server *server) { return server->port; }

void mr_server_stop(mr_server *server) {
    if (server == NULL) {
        return;
    }
    double start = serve_now_s();
    atomic_store(&server->stopping, true);

    /* New connections are refused from here on; the listening socket is
     * closed only after the daemon's threads have stopped. */
    MHD_socket listener = MHD_quiesce_daemon(server->daemon);
    job_queue_stop(server->queue, server->config.shutdown_timeout_s);
    wait_for_replies(server);
    MHD_stop_daemon(server->daemon);
    if (listener != MHD_INVALID_SOCKET) {
        close(listener);
    }
    job_queue_free(server->queue);
    mr_log(MR_LOG_INFO, "serve", "stopped in %.2f s", serve_now_s() - start);
    free_server(server);
}
