/*
 * Status names, error messages, the logger and the thread setting.
 */
#include <stdio.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "multiround/common.h"
#include "blas.h"

const char *mr_status_name(mr_status status) {
    switch (status) {
    case MR_OK: return "ok";
    case MR_ERR_INVALID_ARGUMENT: return "invalid argument";
    case MR_ERR_SHAPE: return "shape mismatch";
    case MR_ERR_NO_MEMORY: return "out of memory";
    case MR_ERR_IO: return "I/O error";
    case MR_ERR_FORMAT: return "format error";
    case MR_ERR_NOT_FOUND: return "not found";
    case MR_ERR_UNSUPPORTED: return "unsupported";
    case MR_ERR_NUMERIC: return "numeric error";
    case MR_ERR_STATE: return "invalid state";
    case MR_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

mr_status mr_error_set(mr_error *err, mr_status status, const char *fmt, ...) {
    if (err != NULL) {
        va_list args;
        va_start(args, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
    }
    return status;
}

void mr_error_clear(mr_error *err) {
    if (err != NULL) {
        err->status = MR_OK;
        err->message[0] = '\0';
    }
}

/* ------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------ */

static mr_log_level log_level = MR_LOG_INFO;
static mr_log_callback log_callback = NULL;
static void *log_user_data = NULL;

static const char *level_name(mr_log_level level) {
    switch (level) {
    case MR_LOG_ERROR: return "error";
    case MR_LOG_WARN: return "warning";
    case MR_LOG_INFO: return "info";
    case MR_LOG_DEBUG: return "debug";
    }
    return "log";
}

void mr_log(mr_log_level level, const char *subsystem, const char *fmt, ...) {
    if (level > log_level) {
        return;
    }

    char message[2048];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);

    if (log_callback != NULL) {
        log_callback(level, subsystem, message, log_user_data);
        return;
    }
    if (level <= MR_LOG_WARN) {
        fprintf(stderr, "%s: %s: %s\n", subsystem, level_name(level), message);
    } else {
        fprintf(stderr, "%s: %s\n", subsystem, message);
    }
}

void mr_log_set_level(mr_log_level level) { log_level = level; }

mr_log_level mr_log_get_level(void) { return log_level; }

void mr_log_set_callback(mr_log_callback callback, void *user_data) {
    log_callback = callback;
    log_user_data = user_data;
}

/* ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------ */

static int thread_count = 0; /* 0 until the first mr_threads_set() */

void mr_threads_set(int n) {
#ifdef _OPENMP
    if (n <= 0) {
        n = omp_get_num_procs();
    }
    omp_set_num_threads(n);
#else
    n = 1;
#endif
    thread_count = n;
    mr_blas_set_threads(n);
}

int mr_threads_get(void) {
    if (thread_count == 0) {
#ifdef _OPENMP
        return omp_get_max_threads();
#else
        return 1;
#endif
    }
    return thread_count;
}

bool mr_json_cut_short(const char *text) {
    int depth = 0;
    bool in_string = false;
    for (const char *c = text; *c != '\0'; c++) {
        if (in_string && *c == '\\' && c[1] != '\0') {
            c++;
        } else if (*c == '"') {
            in_string = !in_string;
        } else if (!in_string && (*c == '{' || *c == '[')) {
            depth++;
        } else if (!in_string && (*c == '}' || *c == ']')) {
            depth--;
        }
    }
    return in_string || depth > 0;
}
