/*
 * Private declarations of the HTTP server: the OpenAI JSON of requests
 * and replies (openai.c) and the job queue with its worker thread
 * (queue.c), used by the connection handling in server.c.
 */
#ifndef MR_SERVE_INTERNAL_H
#define MR_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "multiround/serve.h"

/* ------------------------------------------------------------------------
 * Requests and replies (openai.c)
 * ------------------------------------------------------------------------ */

/* A parsed request body. The request's strings point into root. */
typedef struct serve_request {
    cJSON *root;
    mr_llm_message *messages;
    mr_llm_request request;
    bool stream;
    bool include_usage; /* stream_options.include_usage */
} serve_request;

/*
 * Parses and checks a /v1/completions or /v1/chat/completions body. On
 * failure returns MR_ERR_INVALID_ARGUMENT, fills err with a message for
 * the client and param with the name of the field at fault ("" when the
 * body as a whole is at fault).
 */
mr_status serve_request_parse(const char *body, size_t size, mr_llm_kind kind,
                              serve_request *out, char *param, size_t param_size,
                              mr_error *err);

void serve_request_free(serve_request *request);

/* The fields every reply and chunk of one request share. */
typedef struct reply_header {
    const char *id;      /* "cmpl-..." or "chatcmpl-..." */
    const char *model;
    int64_t created;     /* Unix time in seconds */
    mr_llm_kind kind;
} reply_header;

/* Returns the JSON text of a finished completion, or NULL when out of
 * memory. The caller frees it. */
char *serve_reply_json(const reply_header *header, const mr_llm_result *result);

/*
 * Returns one server-sent event "data: {...}\n\n" of a streamed reply,
 * or NULL when out of memory. A chunk carries either a piece of text
 * (finish_reason NULL), the first chunk of a chat (role set, text ""),
 * or the last chunk (finish_reason set, text ""). With usage set the
 * chunk has empty choices and the token counts, as OpenAI sends for
 * stream_options.include_usage.
 */
char *serve_chunk_event(const reply_header *header, const char *text, size_t len,
                        bool role, const char *finish_reason, const mr_llm_result *usage);

/* Returns the JSON error body {"error": {...}} in OpenAI's layout, or
 * NULL when out of memory. param may be NULL or "". */
char *serve_error_json(const char *message, const char *type, const char *param);

/* Returns the /v1/models list with one model. */
char *serve_models_json(const char *model, int64_t created);

/* ------------------------------------------------------------------------
 * The job queue (queue.c)
 * ------------------------------------------------------------------------ */

typedef enum job_state {
    JOB_WAITING = 0,
    JOB_RUNNING = 1,
    JOB_DONE = 2
} job_state;

/* Why a job ended without its full text. */
typedef enum job_outcome {
    JOB_FINISHED = 0,  /* generation ran to its end; see status */
    JOB_CANCELLED = 1, /* the client went away */
    JOB_SHUTDOWN = 2   /* the server stopped before or during the job */
} job_outcome;

typedef struct job_queue job_queue;

/*
 * One request on its way through the queue. The connection thread and
 * the worker share it: the queue's lock guards every field below
 * `prompt`, and the last of the two to let go frees it.
 */
typedef struct job {
    mr_local_prompt prompt;    /* owned; set before the job is queued */
    bool streaming;            /* collect streamed text in pending */

    job_state state;
    job_outcome outcome;
    bool cancel;               /* stop at the next piece of text */
    char *pending;             /* streamed text not yet taken by the connection */
    size_t pending_len;
    size_t pending_capacity;
    bool pending_failed;       /* an allocation failed; the stream ends with an error */
    mr_status status;          /* of the generation */
    mr_error error;
    mr_llm_result result;      /* filled when state is JOB_DONE */
    pthread_cond_t changed;    /* signalled on new text and on state changes */
    int refs;
    struct job *next;          /* in the waiting list */
} job;

/*
 * Creates the queue and starts its worker thread, which runs waiting
 * jobs one at a time on model. capacity is the number of jobs that may
 * wait; token_delay_s pauses after each streamed piece.
 */
job_queue *job_queue_create(mr_local_model *model, int capacity, double token_delay_s,
                            mr_error *err);

/*
 * Creates a job that takes over prompt and adds it to the queue. Returns
 * NULL, with prompt freed, when the queue is full (*full set), stopping
 * (*stopping set) or out of memory (neither set). The returned job has
 * one reference for the caller.
 */
job *job_queue_submit(job_queue *queue, mr_local_prompt *prompt, bool streaming, bool *full,
                      bool *stopping);

/*
 * Waits until the job is done or timeout_s passes (a value <= 0 waits
 * without a limit); returns whether it is done. With take_pending,
 * returns as soon as streamed text is pending too, moving it to *text
 * (allocated; the caller frees it) and its length to *len.
 */
bool job_wait(job_queue *queue, job *item, double timeout_s, bool take_pending, char **text,
              size_t *len);

/* Cancels the job: a waiting job leaves the queue at once and a running
 * one stops at its next piece of text. outcome is JOB_CANCELLED or
 * JOB_SHUTDOWN. A finished job stays as it is. */
void job_cancel(job_queue *queue, job *item, job_outcome outcome);

/* Drops the caller's reference. */
void job_release(job_queue *queue, job *item);

/* Copies the fields that the connection reads once the job is done. */
void job_snapshot(job_queue *queue, job *item, job_outcome *outcome, mr_status *status,
                  mr_error *error);

/*
 * Stops the queue: refuses new jobs, ends every waiting job with
 * JOB_SHUTDOWN, gives the running job up to grace_s to finish and then
 * cancels it, and joins the worker. The queue stays valid for job_wait
 * and job_release until job_queue_free().
 */
void job_queue_stop(job_queue *queue, double grace_s);

/* Frees the queue after job_queue_stop(); jobs still referenced by
 * connections must have been released. */
void job_queue_free(job_queue *queue);

/* Returns a monotonic clock reading in seconds. */
double serve_now_s(void);

#endif /* MR_SERVE_INTERNAL_H */
