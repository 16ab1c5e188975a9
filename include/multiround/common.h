/*
 * multiround: status codes, error messages, logging and thread settings
 * shared by every subsystem.
 *
 * A fallible function returns an mr_status and, when the caller passes a
 * non-NULL mr_error, fills it with a message that names the file, offset,
 * line or value at fault and says what to do about it.
 */
#ifndef MULTIROUND_COMMON_H
#define MULTIROUND_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MR_PRINTF(fmt_index, first_arg) \
    __attribute__((format(printf, fmt_index, first_arg)))
#else
#define MR_PRINTF(fmt_index, first_arg)
#endif

#define MR_VERSION_MAJOR 0
#define MR_VERSION_MINOR 1
#define MR_VERSION_PATCH 0
#define MR_VERSION_STRING "0.1.0"

typedef enum mr_status {
    MR_OK = 0,
    MR_ERR_INVALID_ARGUMENT, /* a value passed by the caller is out of range */
    MR_ERR_SHAPE,            /* tensor shapes do not fit the operation */
    MR_ERR_NO_MEMORY,        /* an allocation failed */
    MR_ERR_IO,               /* a read, write, fsync or rename failed */
    MR_ERR_FORMAT,           /* a file or record is malformed */
    MR_ERR_NOT_FOUND,        /* a named file, tensor or key does not exist */
    MR_ERR_UNSUPPORTED,      /* a valid input this build cannot handle */
    MR_ERR_NUMERIC,          /* NaN or infinity where a finite value is needed */
    MR_ERR_STATE,            /* the object is not in a state that allows the call */
    MR_ERR_INTERRUPTED       /* the caller's stop request ended the call early */
} mr_status;

/* Maximum length of an error message, including the terminating NUL. */
#define MR_ERROR_MESSAGE_MAX 1024

/* The error a fallible call leaves for its caller. */
typedef struct mr_error {
    mr_status status;
    char message[MR_ERROR_MESSAGE_MAX];
} mr_error;

/* Returns a short constant name for a status, such as "format error". */
const char *mr_status_name(mr_status status);

/*
 * Stores status and a printf-style message in err, if err is not NULL, and
 * returns status so that a caller can write `return mr_error_set(...)`.
 */
mr_status mr_error_set(mr_error *err, mr_status status, const char *fmt, ...)
    MR_PRINTF(3, 4);

/* Resets err to MR_OK with an empty message. err may be NULL. */
void mr_error_clear(mr_error *err);

/* ------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------ */

typedef enum mr_log_level {
    MR_LOG_ERROR = 0,
    MR_LOG_WARN = 1,
    MR_LOG_INFO = 2,
    MR_LOG_DEBUG = 3
} mr_log_level;

/* Receives each log line that passes the level filter, without a newline. */
typedef void (*mr_log_callback)(mr_log_level level, const char *subsystem,
                                const char *message, void *user_data);

/*
 * Writes one log line: "subsystem: message". Lines above the current level
 * are dropped. The default sink writes to stderr.
 */
void mr_log(mr_log_level level, const char *subsystem, const char *fmt, ...)
    MR_PRINTF(3, 4);

/* Sets the most verbose level that is still written (default MR_LOG_INFO). */
void mr_log_set_level(mr_log_level level);
mr_log_level mr_log_get_level(void);

/* Replaces the sink; NULL restores the stderr sink. */
void mr_log_set_callback(mr_log_callback callback, void *user_data);

/* ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------ */

/*
 * Sets the number of threads for OpenMP kernels and for BLAS alike.
 * n <= 0 selects the number of cores. Results for the same thread count and
 * seed are bit-identical.
 */
void mr_threads_set(int n);

/* Returns the thread count that kernels currently use. */
int mr_threads_get(void);

/* Returns the name of the BLAS library this build calls ("blis",
 * "openblas" or "none"). */
const char *mr_blas_name(void);

/* ------------------------------------------------------------------------
 * JSON input
 * ------------------------------------------------------------------------ */

/*
 * Returns true when text ends inside a JSON string or with a bracket left
 * open, the marks of a file or line cut short. Parse errors use it to say
 * that the input may be truncated.
 */
bool mr_json_cut_short(const char *text);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_COMMON_H */
