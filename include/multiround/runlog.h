/*
 * multiround: metrics.jsonl, the per-step metrics log of a training run.
 *
 * Each line is one JSON object for one step:
 *
 *   {"step":120,"elapsed_s":35.2,"loss":1.873,"lr":0.0003,"tokens_per_s":5120}
 *
 * "step" (an integer, strictly increasing from line to line) and
 * "elapsed_s" (seconds of training, counted across resumes) are written by
 * the log itself. Every other member is a named number that the trainer
 * passes, such as the MR_METRIC_* names below. JSON has no NaN or
 * infinity, so those values are written as the strings "NaN", "Infinity"
 * and "-Infinity" and read back as the values they name.
 *
 * The log writes each line with one write() call, so a killed process loses
 * no line it has appended. It calls fsync() every few lines or seconds
 * (mr_runlog_options), which bounds what a machine crash can lose. A crash
 * can still leave a partial last line; readers drop it.
 */
#ifndef MULTIROUND_RUNLOG_H
#define MULTIROUND_RUNLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The file name of the metrics log inside a run folder. */
#define MR_RUNLOG_FILE "metrics.jsonl"

/* Standard metric names; trainers use these so that plots and tools agree. */
#define MR_METRIC_LOSS "loss"
#define MR_METRIC_LR "lr"
#define MR_METRIC_EXAMPLES_PER_SECOND "examples_per_s"
#define MR_METRIC_TOKENS_PER_SECOND "tokens_per_s"

/* The members that the log writes itself; a trainer may not pass them. */
#define MR_RUNLOG_STEP "step"
#define MR_RUNLOG_ELAPSED "elapsed_s"

/* Maximum length of a metric name, in bytes. Names use only letters, digits and the
 * characters _ - . / @ so that they need no escaping in JSON, SVG or a
 * comma-separated option. */
#define MR_METRIC_NAME_MAX 64

/* One named number of a step. */
typedef struct mr_metric {
    const char *name;
    double value;
} mr_metric;

/* When the log calls fsync(). A zero field selects its default. */
typedef struct mr_runlog_options {
    int sync_every_lines;       /* lines between fsync calls (default 20) */
    double sync_every_seconds;  /* seconds between fsync calls (default 10) */
} mr_runlog_options;

/* An open metrics log; see mr_runlog_open. */
typedef struct mr_runlog mr_runlog;

/*
 * Opens the metrics log at path for appending and stores it in *out.
 * Keeps the lines whose step is at most resume_step and removes the rest,
 * together with a partial last line, so that a resumed trainer never
 * writes a second line for a step. resume_step = -1 starts an empty log.
 * The elapsed time continues from the last kept line. A missing file is
 * created. Lines before the cut must parse (as in mr_runlog_read);
 * otherwise the call fails with MR_ERR_FORMAT naming the line and leaves
 * the file unchanged. options may be NULL for the defaults.
 */
mr_status mr_runlog_open(const char *path, int64_t resume_step,
                         const mr_runlog_options *options, mr_runlog **out,
                         mr_error *err);

/*
 * Appends the line of one step: step, elapsed seconds, then the count
 * metrics in the order given. step must be greater than every step in the
 * log (MR_ERR_STATE otherwise). A metric name that is empty, too long,
 * uses other characters, repeats, or is "step" or "elapsed_s" gives
 * MR_ERR_INVALID_ARGUMENT. Nothing is written on failure.
 */
mr_status mr_runlog_append(mr_runlog *log, int64_t step, const mr_metric *metrics,
                           size_t count, mr_error *err);

/* Flushes the appended lines to disk with fsync(). */
mr_status mr_runlog_sync(mr_runlog *log, mr_error *err);

/* Returns the step of the last line in the log, or -1 when it is empty. */
int64_t mr_runlog_last_step(const mr_runlog *log);

/* Flushes and closes the log. Returns the status of the final fsync;
 * the log is freed either way. log may be NULL. */
mr_status mr_runlog_close(mr_runlog *log, mr_error *err);

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

/*
 * A metrics log read into a table: one row per line, and one column per
 * metric name seen in any line, in the order first seen. "step" goes to
 * the steps array, while "elapsed_s" is a column like the others.
 */
typedef struct mr_runlog_data {
    int64_t n_rows;
    int n_columns;
    int64_t *steps;          /* n_rows steps, strictly increasing */
    char **names;            /* n_columns metric names */
    double *values;          /* n_rows x n_columns, row-major */
    unsigned char *present;  /* n_rows x n_columns: 1 where the line has the metric */
    bool dropped_last_line;  /* a partial last line (no newline) was ignored */
} mr_runlog_data;

/*
 * Reads the metrics log at path into a new table stored in *out (free it
 * with mr_runlog_data_free). Text after the last newline is a partial
 * line from an interrupted write and is ignored. Any other line that is
 * not a JSON object of numbers (or "NaN"/"Infinity"/"-Infinity"), lacks
 * an integer step, or does not increase the step gives MR_ERR_FORMAT
 * naming the path, the line number and the fault. An empty file gives a
 * table with no rows.
 */
mr_status mr_runlog_read(const char *path, mr_runlog_data **out, mr_error *err);

/* Returns the column index of name, or -1. */
int mr_runlog_data_column(const mr_runlog_data *data, const char *name);

void mr_runlog_data_free(mr_runlog_data *data);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_RUNLOG_H */
