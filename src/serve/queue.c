/*
 * The server's job queue: connection threads submit prepared prompts and
 * one worker thread runs them in arrival order on the model. A job
 * carries its streamed text to the connection, and either side may
 * cancel it. One mutex guards the queue and every job's shared fields.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve_internal.h"

struct job_queue {
    mr_local_model *model;
    int capacity;          /* jobs that may wait behind the running one */
    double token_delay_s;

    pthread_mutex_t lock;
    pthread_cond_t work;   /* the worker waits here for jobs or quit */
    pthread_cond_t idle;   /* signalled when the running job finishes */
    job *head;
    job *tail;
    int n_waiting;
    job *running;
    bool stopping;         /* refuse new jobs */
    bool quit;             /* the worker exits once no job runs */
    pthread_t worker;
    bool worker_started;
};

double serve_now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Fills *deadline with the CLOCK_MONOTONIC time seconds from now. */
static void deadline_after(double seconds, struct timespec *deadline) {
    clock_gettime(CLOCK_MONOTONIC, deadline);
    time_t whole = (time_t)seconds;
    long nanos = (long)((seconds - (double)whole) * 1e9);
    deadline->tv_sec += whole;
    deadline->tv_nsec += nanos;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec += 1;
        deadline->tv_nsec -= 1000000000L;
    }
}

/* Initialises a condition variable that waits on CLOCK_MONOTONIC. */
static int init_cond(pthread_cond_t *cond) {
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

static void job_free(job *item) {
    mr_local_prompt_free(&item->prompt);
    free(item->pending);
    mr_llm_result_free(&item->result);
    pthread_cond_destroy(&item->changed);
    free(item);
}

/* Drops one reference with the lock held; frees the job at zero. */
static void release_locked(job *item) {
    item->refs--;
    if (item->refs == 0) {
        job_free(item);
    }
}

/* Appends streamed text to the job's pending buffer; false when out of
 * memory. */
static bool pending_append(job *item, const char *text, size_t len) {
    if (item->pending_len + len > item->pending_capacity) {
        size_t capacity = item->pending_capacity > 0 ? item->pending_capacity : 256;
        while (capacity < item->pending_len + len) {
            capacity *= 2;
        }
        char *bigger = realloc(item->pending, capacity);
        if (bigger == NULL) {
            return false;
        }
        item->pending = bigger;
        item->pending_capacity = capacity;
    }
    memcpy(item->pending + item->pending_len, text, len);
    item->pending_len += len;
    return true;
}

/* ------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------ */

/* What the stream callback needs. */
typedef struct piece_context {
    job_queue *queue;
    job *item;
} piece_context;

/* Receives each piece of generated text: hands it to a streaming
 * connection, pauses for token_delay_s, and ends generation once the job
 * is cancelled.
 * NOTE: generation calls this only when it has text to pass on, so a
 * cancelled job runs on while tokens add no text (a held-back prefix of a
 * stop string, or tokens that decode to nothing), at most to max_tokens. */
static bool on_piece(const char *piece, size_t len, void *user_data) {
    piece_context *context = user_data;
    job_queue *queue = context->queue;
    job *item = context->item;

    pthread_mutex_lock(&queue->lock);
    if (item->streaming && !item->cancel && !pending_append(item, piece, len)) {
        item->pending_failed = true;
        item->cancel = true;
    }
    pthread_cond_broadcast(&item->changed);

    if (queue->token_delay_s > 0) {
        struct timespec deadline;
        deadline_after(queue->token_delay_s, &deadline);
        while (!item->cancel &&
               pthread_cond_timedwait(&item->changed, &queue->lock, &deadline) != ETIMEDOUT) {
        }
    }
    bool more = !item->cancel;
    pthread_mutex_unlock(&queue->lock);
    return more;
}

/* Runs waiting jobs one at a time until quit. */
static void *worker_main(void *arg) {
    job_queue *queue = arg;
    pthread_mutex_lock(&queue->lock);
    for (;;) {
        while (!queue->quit && queue->head == NULL) {
            pthread_cond_wait(&queue->work, &queue->lock);
        }
        if (queue->head == NULL) {
            break;
        }

        job *item = queue->head;
        queue->head = item->next;
        if (queue->head == NULL) {
            queue->tail = NULL;
        }
        queue->n_waiting--;
        item->next = NULL;
        item->state = JOB_RUNNING;
        queue->running = item;
        pthread_cond_broadcast(&item->changed);
        pthread_mutex_unlock(&queue->lock);

        /* The model's own lock serialises this with the local back end's
         * callers; the queue's lock stays free for the connections. */
        mr_llm_result result;
        memset(&result, 0, sizeof result);
        mr_error error;
        mr_error_clear(&error);
        piece_context context = {queue, item};
        mr_status status = mr_local_model_generate(queue->model, &item->prompt, on_piece,
                                                   &context, &result, &error);

        pthread_mutex_lock(&queue->lock);
        item->result = result;
        item->status = status;
        item->error = error;
        item->state = JOB_DONE;
        queue->running = NULL;
        pthread_cond_broadcast(&item->changed);
        pthread_cond_broadcast(&queue->idle);
        release_locked(item);
    }
    pthread_mutex_unlock(&queue->lock);
    return NULL;
}

/* ------------------------------------------------------------------------
 * The queue
 * ------------------------------------------------------------------------ */

job_queue *job_queue_create(mr_local_model *model, int capacity, double token_delay_s,
                            mr_error *err) {
    job_queue *queue = calloc(1, sizeof *queue);
    if (queue == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "serve: out of memory for the request queue");
        return NULL;
    }
    queue->model = model;
    queue->capacity = capacity;
    queue->token_delay_s = token_delay_s;
    if (pthread_mutex_init(&queue->lock, NULL) != 0 || init_cond(&queue->work) != 0 ||
        init_cond(&queue->idle) != 0) {
        free(queue);
        mr_error_set(err, MR_ERR_NO_MEMORY, "serve: cannot create the queue's locks");
        return NULL;
    }
    if (pthread_create(&queue->worker, NULL, worker_main, queue) != 0) {
        job_queue_free(queue);
        mr_error_set(err, MR_ERR_STATE, "serve: cannot start the worker thread");
        return NULL;
    }
    queue->worker_started = true;
    return queue;
}

job *job_queue_submit(job_queue *queue, mr_local_prompt *prompt, bool streaming, bool *full,
                      bool *stopping) {
    *full = false;
    *stopping = false;
    job *item = calloc(1, sizeof *item);
    if (item == NULL || init_cond(&item->changed) != 0) {
        free(item);
        mr_local_prompt_free(prompt);
        return NULL;
    }
    item->prompt = *prompt;
    memset(prompt, 0, sizeof *prompt);
    item->streaming = streaming;
    item->refs = 2; /* the caller's and the queue's */

    /* The running job counts too, so capacity + 1 jobs are admitted. */
    pthread_mutex_lock(&queue->lock);
    int admitted = queue->n_waiting + (queue->running != NULL ? 1 : 0);
    if (queue->stopping || admitted >= queue->capacity + 1) {
        *stopping = queue->stopping;
        *full = !queue->stopping;
        pthread_mutex_unlock(&queue->lock);
        job_free(item);
        return NULL;
    }
    if (queue->tail != NULL) {
        queue->tail->next = item;
    } else {
        queue->head = item;
    }
    queue->tail = item;
    queue->n_waiting++;
    pthread_cond_signal(&queue->work);
    pthread_mutex_unlock(&queue->lock);
    return item;
}

bool job_wait(job_queue *queue, job *item, double timeout_s, bool take_pending, char **text,
              size_t *len) {
    if (text != NULL) {
        *text = NULL;
        *len = 0;
    }
    struct timespec deadline;
    if (timeout_s > 0) {
        deadline_after(timeout_s, &deadline);
    }

    pthread_mutex_lock(&queue->lock);
    bool timed_out = false;
    for (;;) {
        if (take_pending && item->pending_len > 0) {
            *text = item->pending;
            *len = item->pending_len;
            item->pending = NULL;
            item->pending_len = 0;
            item->pending_capacity = 0;
            break;
        }
        if (item->state == JOB_DONE || timed_out) {
            break;
        }
        if (timeout_s > 0) {
            timed_out = pthread_cond_timedwait(&item->changed, &queue->lock, &deadline) ==
                        ETIMEDOUT;
        } else {
            pthread_cond_wait(&item->changed, &queue->lock);
        }
    }
    bool done = item->state == JOB_DONE;
    pthread_mutex_unlock(&queue->lock);
    return done;
}

/* Removes a waiting job from the list, with the lock held. */
static void unlink_waiting(job_queue *queue, job *item) {
    job **link = &queue->head;
    job *previous = NULL;
    while (*link != NULL && *link != item) {
        previous = *link;
        link = &(*link)->next;
    }
    if (*link == NULL) {
        return;
    }
    *link = item->next;
    if (queue->tail == item) {
        queue->tail = previous;
    }
    item->next = NULL;
    queue->n_waiting--;
}

void job_cancel(job_queue *queue, job *item, job_outcome outcome) {
    pthread_mutex_lock(&queue->lock);
    if (item->state == JOB_WAITING) {
        unlink_waiting(queue, item);
        item->state = JOB_DONE;
        item->outcome = outcome;
        pthread_cond_broadcast(&item->changed);
        release_locked(item); /* the queue's reference */
    } else if (item->state == JOB_RUNNING) {
        item->cancel = true;
        item->outcome = outcome;
        pthread_cond_broadcast(&item->changed);
    }
    pthread_mutex_unlock(&queue->lock);
}

void job_release(job_queue *queue, job *item) {
    pthread_mutex_lock(&queue->lock);
    release_locked(item);
    pthread_mutex_unlock(&queue->lock);
}

void job_snapshot(job_queue *queue, job *item, job_outcome *outcome, mr_status *status,
                  mr_error *error) {
    pthread_mutex_lock(&queue->lock);
    *outcome = item->outcome;
    *status = item->status;
    *error = item->error;
    if (item->pending_failed && *status == MR_OK) {
        *status = mr_error_set(error, MR_ERR_NO_MEMORY,
                               "serve: out of memory buffering the streamed text");
    }
    pthread_mutex_unlock(&queue->lock);
}

void job_queue_stop(job_queue *queue, double grace_s) {
    pthread_mutex_lock(&queue->lock);
    queue->stopping = true;
    while (queue->head != NULL) {
        job *item = queue->head;
        unlink_waiting(queue, item);
        item->state = JOB_DONE;
        item->outcome = JOB_SHUTDOWN;
        pthread_cond_broadcast(&item->changed);
        release_locked(item);
    }

    struct timespec deadline;
    deadline_after(grace_s > 0 ? grace_s : 0, &deadline);
    while (queue->running != NULL &&
           pthread_cond_timedwait(&queue->idle, &queue->lock, &deadline) != ETIMEDOUT) {
    }
    if (queue->running != NULL) {
        mr_log(MR_LOG_WARN, "serve",
               "the running request did not finish within %.1f s of the shutdown; "
               "cancelling it",
               grace_s);
        queue->running->cancel = true;
        queue->running->outcome = JOB_SHUTDOWN;
        pthread_cond_broadcast(&queue->running->changed);
    }
    queue->quit = true;
    pthread_cond_broadcast(&queue->work);
    pthread_mutex_unlock(&queue->lock);

    if (queue->worker_started) {
        pthread_join(queue->worker, NULL);
        queue->worker_started = false;
    }
}

void job_queue_free(job_queue *queue) {
    if (queue == NULL) {
        return;
    }
    if (queue->worker_started) {
        job_queue_stop(queue, 0);
    }
    pthread_cond_destroy(&queue->work);
    pthread_cond_destroy(&queue->idle);
    pthread_mutex_destroy(&queue->lock);
    free(queue);
}
