/*
 * metrics.jsonl: appending step lines with periodic fsync, cutting the log
 * back to a resumed step, and reading it into a table.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "multiround/fileio.h"
#include "multiround/runlog.h"

/* Defaults of mr_runlog_options. */
#define DEFAULT_SYNC_EVERY_LINES 20
#define DEFAULT_SYNC_EVERY_SECONDS 10.0

/* Largest metrics log read back: about 5 million lines of 200 bytes. */
#define RUNLOG_MAX_BYTES ((size_t)1 << 30)

/* Steps must be integers that a JSON double represents exactly. */
#define MAX_EXACT_STEP 9007199254740992.0 /* 2^53 */

/* Room for one formatted number: sign, 17 digits, point, exponent. */
#define NUMBER_TEXT_MAX 32

struct mr_runlog {
    int fd;
    char *path;
    int64_t last_step;        /* -1 while the log is empty */
    double elapsed_base;      /* elapsed_s of the last kept line at open */
    double opened_at;         /* monotonic seconds at open */
    int sync_every_lines;
    double sync_every_seconds;
    int lines_since_sync;
    double last_sync;         /* monotonic seconds of the last fsync */
};

static double monotonic_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* ------------------------------------------------------------------------
 * Numbers and names
 * ------------------------------------------------------------------------ */

/* Writes value as the shortest JSON text that reads back as the same
 * double, or as a quoted "NaN", "Infinity" or "-Infinity". */
static void format_number(double value, char text[NUMBER_TEXT_MAX]) {
    if (isnan(value)) {
        snprintf(text, NUMBER_TEXT_MAX, "\"NaN\"");
        return;
    }
    if (isinf(value)) {
        snprintf(text, NUMBER_TEXT_MAX, value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(text, NUMBER_TEXT_MAX, "%.*g", digits, value);
        if (strtod(text, NULL) == value) {
            return;
        }
    }
}

/* True when name is a valid metric name (see MR_METRIC_NAME_MAX). */
static bool valid_metric_name(const char *name) {
    if (name == NULL) {
        return false;
    }
    size_t length = strlen(name);
    if (length == 0 || length > MR_METRIC_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9') || strchr("_-./@", c) != NULL;
        if (!allowed) {
            return false;
        }
    }
    return true;
}

/* Reads a member's value: a number, or one of the strings that stand for
 * NaN and the infinities. Returns false for anything else. */
static bool member_value(const cJSON *item, double *value) {
    if (cJSON_IsNumber(item)) {
        *value = item->valuedouble;
        return true;
    }
    if (!cJSON_IsString(item)) {
        return false;
    }
    if (strcmp(item->valuestring, "NaN") == 0) {
        *value = NAN;
    } else if (strcmp(item->valuestring, "Infinity") == 0) {
        *value = INFINITY;
    } else if (strcmp(item->valuestring, "-Infinity") == 0) {
        *value = -INFINITY;
    } else {
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Parsing one line
 * ------------------------------------------------------------------------ */

/*
 * Parses the NUL-terminated line number line_number of path into *object
 * and its step into *step, checking that it is an object whose members
 * are a valid integer "step" greater than previous_step and named numbers
 * without repeats. On failure *object is NULL.
 */
static mr_status parse_line(char *line, const char *path, int64_t line_number,
                            int64_t previous_step, cJSON **object, int64_t *step,
                            mr_error *err) {
    *object = NULL;
    cJSON *json = cJSON_Parse(line);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "runlog: %s line %lld is not a JSON object; fix or delete the "
                            "line",
                            path, (long long)line_number);
    }

    const cJSON *step_item = cJSON_GetObjectItemCaseSensitive(json, MR_RUNLOG_STEP);
    if (!cJSON_IsNumber(step_item) || step_item->valuedouble != floor(step_item->valuedouble) ||
        step_item->valuedouble < 0 || step_item->valuedouble > MAX_EXACT_STEP) {
        cJSON_Delete(json);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "runlog: %s line %lld has no \"step\" that is an integer from 0 "
                            "to 2^53",
                            path, (long long)line_number);
    }
    *step = (int64_t)step_item->valuedouble;
    if (*step <= previous_step) {
        cJSON_Delete(json);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "runlog: %s line %lld has step %lld, but the line before has step "
                            "%lld; steps must increase from line to line",
                            path, (long long)line_number, (long long)*step,
                            (long long)previous_step);
    }

    for (const cJSON *item = json->child; item != NULL; item = item->next) {
        /* The message is set before the object it names is freed. */
        double value = 0;
        if (!member_value(item, &value)) {
            mr_status status = mr_error_set(err, MR_ERR_FORMAT,
                                            "runlog: %s line %lld: \"%s\" is not a number (or "
                                            "\"NaN\", \"Infinity\", \"-Infinity\")",
                                            path, (long long)line_number, item->string);
            cJSON_Delete(json);
            return status;
        }
        for (const cJSON *other = json->child; other != item; other = other->next) {
            if (strcmp(other->string, item->string) == 0) {
                mr_status status = mr_error_set(err, MR_ERR_FORMAT,
                                                "runlog: %s line %lld has \"%s\" twice", path,
                                                (long long)line_number, item->string);
                cJSON_Delete(json);
                return status;
            }
        }
    }
    *object = json;
    return MR_OK;
}

/*
 * Calls visit on each complete line of text (size bytes, NUL after the
 * end) with its 1-based number and the offset just past its newline,
 * until visit returns false (stop, *stopped = true) or a line fails to
 * parse. Lines are NUL-terminated in place while visit runs. Sets
 * *partial when text has bytes after its last newline.
 */
typedef bool (*line_visitor)(cJSON *object, int64_t step, size_t end_offset, void *state);

static mr_status scan_lines(char *text, size_t size, const char *path, line_visitor visit,
                            void *state, bool *partial, mr_error *err) {
    *partial = false;
    int64_t previous_step = -1;
    int64_t line_number = 0;
    size_t start = 0;

    while (start < size) {
        char *newline = memchr(text + start, '\n', size - start);
        if (newline == NULL) {
            *partial = true;
            return MR_OK;
        }
        line_number++;

        *newline = '\0';
        cJSON *object = NULL;
        int64_t step = 0;
        mr_status status = parse_line(text + start, path, line_number, previous_step, &object,
                                      &step, err);
        *newline = '\n';
        if (status != MR_OK) {
            return status;
        }

        size_t end = (size_t)(newline - text) + 1;
        bool more = visit(object, step, end, state);
        cJSON_Delete(object);
        if (!more) {
            return MR_OK;
        }
        previous_step = step;
        start = end;
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Opening and cutting back
 * ------------------------------------------------------------------------ */

/* What opening keeps of an existing log. */
typedef struct resume_cut {
    int64_t resume_step;
    size_t keep_bytes;      /* offset just past the last kept line */
    int64_t last_step;      /* step of the last kept line, -1 for none */
    double last_elapsed;    /* its elapsed_s, 0 when missing */
} resume_cut;

/* Keeps lines up to the resumed step and stops at the first one past it. */
static bool visit_for_resume(cJSON *object, int64_t step, size_t end_offset, void *state) {
    resume_cut *cut = state;
    if (step > cut->resume_step) {
        return false;
    }
    cut->keep_bytes = end_offset;
    cut->last_step = step;

    double elapsed = 0;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, MR_RUNLOG_ELAPSED);
    cut->last_elapsed = member_value(item, &elapsed) && isfinite(elapsed) ? elapsed : 0;
    return true;
}

/* Finds what to keep of the existing log at path; a missing file keeps
 * nothing. */
static mr_status find_resume_cut(const char *path, resume_cut *cut, mr_error *err) {
    struct stat info;
    if (stat(path, &info) != 0 && errno == ENOENT) {
        return MR_OK;
    }

    void *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, RUNLOG_MAX_BYTES, &text, &size, err);
    if (status != MR_OK) {
        return status;
    }
    bool partial = false;
    status = scan_lines(text, size, path, visit_for_resume, cut, &partial, err);
    free(text);
    return status;
}

mr_status mr_runlog_open(const char *path, int64_t resume_step,
                         const mr_runlog_options *options, mr_runlog **out, mr_error *err) {
    *out = NULL;
    if (path == NULL || path[0] == '\0' || resume_step < -1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "runlog: open needs a path and a resume step of -1 or more, got "
                            "'%s' and %lld",
                            path != NULL ? path : "(null)", (long long)resume_step);
    }

    resume_cut cut = {.resume_step = resume_step, .keep_bytes = 0, .last_step = -1,
                      .last_elapsed = 0};
    mr_status status = MR_OK;
    if (resume_step >= 0) {
        status = find_resume_cut(path, &cut, err);
        if (status != MR_OK) {
            return status;
        }
    }

    /* Cut the file after the last kept line, then make the cut durable
     * before anything is appended after it. */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) {
        return mr_error_set(err, MR_ERR_IO, "runlog: cannot open '%s' for appending: %s", path,
                            strerror(errno));
    }
    if (ftruncate(fd, (off_t)cut.keep_bytes) != 0 || fsync(fd) != 0) {
        status = mr_error_set(err, MR_ERR_IO, "runlog: cannot cut '%s' back to %zu bytes: %s",
                              path, cut.keep_bytes, strerror(errno));
        close(fd);
        return status;
    }

    mr_runlog *log = calloc(1, sizeof *log);
    char *path_copy = malloc(strlen(path) + 1);
    if (log == NULL || path_copy == NULL) {
        free(log);
        free(path_copy);
        close(fd);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "runlog: out of memory opening '%s'", path);
    }
    strcpy(path_copy, path);

    log->fd = fd;
    log->path = path_copy;
    log->last_step = cut.last_step;
    log->elapsed_base = cut.last_elapsed;
    log->opened_at = monotonic_seconds();
    log->last_sync = log->opened_at;
    log->sync_every_lines = DEFAULT_SYNC_EVERY_LINES;
    log->sync_every_seconds = DEFAULT_SYNC_EVERY_SECONDS;
    if (options != NULL && options->sync_every_lines > 0) {
        log->sync_every_lines = options->sync_every_lines;
    }
    if (options != NULL && options->sync_every_seconds > 0) {
        log->sync_every_seconds = options->sync_every_seconds;
    }
    *out = log;
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Appending
 * ------------------------------------------------------------------------ */

/* Checks the names of a step's metrics before anything is written. */
static mr_status check_metric_names(const mr_runlog *log, const mr_metric *metrics,
                                    size_t count, mr_error *err) {
    for (size_t i = 0; i < count; i++) {
        const char *name = metrics[i].name;
        if (!valid_metric_name(name)) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "runlog: metric %zu of a line for '%s' has the invalid name "
                                "'%s'; use 1 to %d letters, digits or _ - . / @",
                                i, log->path, name != NULL ? name : "(null)",
                                MR_METRIC_NAME_MAX);
        }
        if (strcmp(name, MR_RUNLOG_STEP) == 0 || strcmp(name, MR_RUNLOG_ELAPSED) == 0) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "runlog: the metric name '%s' is reserved; the log writes it "
                                "itself",
                                name);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(metrics[j].name, name) == 0) {
                return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                    "runlog: the metric '%s' appears twice in one line", name);
            }
        }
    }
    return MR_OK;
}

/* Writes all size bytes of line to the log's file. */
static mr_status write_line(mr_runlog *log, const char *line, size_t size, mr_error *err) {
    size_t done = 0;
    while (done < size) {
        ssize_t written = write(log->fd, line + done, size - done);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            return mr_error_set(err, MR_ERR_IO, "runlog: appending to '%s' failed: %s",
                                log->path, written < 0 ? strerror(errno) : "no progress");
        }
        done += (size_t)written;
    }
    return MR_OK;
}

mr_status mr_runlog_append(mr_runlog *log, int64_t step, const mr_metric *metrics,
                           size_t count, mr_error *err) {
    if (step <= log->last_step || (double)step > MAX_EXACT_STEP) {
        return mr_error_set(err, MR_ERR_STATE,
                            "runlog: cannot append step %lld to '%s' after step %lld; steps "
                            "must increase (and stay below 2^53)",
                            (long long)step, log->path, (long long)log->last_step);
    }
    mr_status status = check_metric_names(log, metrics, count, err);
    if (status != MR_OK) {
        return status;
    }

    /* Each member takes at most the quoted name, a colon, a comma and a
     * number. */
    size_t capacity = 128 + count * (MR_METRIC_NAME_MAX + NUMBER_TEXT_MAX + 8);
    char *line = malloc(capacity);
    if (line == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "runlog: out of memory appending to '%s'",
                            log->path);
    }

    char number[NUMBER_TEXT_MAX];
    double elapsed = log->elapsed_base + (monotonic_seconds() - log->opened_at);
    format_number(elapsed, number);
    size_t length = (size_t)snprintf(line, capacity, "{\"%s\":%lld,\"%s\":%s", MR_RUNLOG_STEP,
                                     (long long)step, MR_RUNLOG_ELAPSED, number);
    for (size_t i = 0; i < count; i++) {
        format_number(metrics[i].value, number);
        length += (size_t)snprintf(line + length, capacity - length, ",\"%s\":%s",
                                   metrics[i].name, number);
    }
    length += (size_t)snprintf(line + length, capacity - length, "}\n");

    status = write_line(log, line, length, err);
    free(line);
    if (status != MR_OK) {
        return status;
    }
    log->last_step = step;
    log->lines_since_sync++;

    double now = monotonic_seconds();
    if (log->lines_since_sync >= log->sync_every_lines ||
        now - log->last_sync >= log->sync_every_seconds) {
        return mr_runlog_sync(log, err);
    }
    return MR_OK;
}

mr_status mr_runlog_sync(mr_runlog *log, mr_error *err) {
    if (fsync(log->fd) != 0) {
        return mr_error_set(err, MR_ERR_IO, "runlog: flushing '%s' to disk failed: %s",
                            log->path, strerror(errno));
    }
    log->lines_since_sync = 0;
    log->last_sync = monotonic_seconds();
    return MR_OK;
}

int64_t mr_runlog_last_step(const mr_runlog *log) {
    return log->last_step;
}

mr_status mr_runlog_close(mr_runlog *log, mr_error *err) {
    if (log == NULL) {
        return MR_OK;
    }
    mr_status status = mr_runlog_sync(log, err);
    if (close(log->fd) != 0 && status == MR_OK) {
        status = mr_error_set(err, MR_ERR_IO, "runlog: closing '%s' failed: %s", log->path,
                              strerror(errno));
    }
    free(log->path);
    free(log);
    return status;
}

/* ------------------------------------------------------------------------
 * Reading into a table
 * ------------------------------------------------------------------------ */

/* The table being filled, with the capacities of its arrays. */
typedef struct table_builder {
    mr_runlog_data *data;
    int64_t row_capacity;
    int column_capacity;
    bool out_of_memory;
} table_builder;

/* Returns the column of name, adding it (absent from earlier rows) when
 * new; -1 when out of memory. */
static int builder_column(table_builder *builder, const char *name) {
    mr_runlog_data *data = builder->data;
    int found = mr_runlog_data_column(data, name);
    if (found >= 0) {
        return found;
    }

    if (data->n_columns == builder->column_capacity) {
        int grown = builder->column_capacity == 0 ? 8 : builder->column_capacity * 2;
        char **names = realloc(data->names, (size_t)grown * sizeof *names);
        if (names == NULL) {
            return -1;
        }
        data->names = names;
        double *values = realloc(data->values,
                                 (size_t)builder->row_capacity * (size_t)grown * sizeof *values);
        unsigned char *present = realloc(data->present,
                                         (size_t)builder->row_capacity * (size_t)grown);
        if (values != NULL) {
            data->values = values;
        }
        if (present != NULL) {
            data->present = present;
        }
        if ((builder->row_capacity > 0 && (values == NULL || present == NULL))) {
            return -1;
        }

        /* Spread the rows out to the new row width, last row first. */
        for (int64_t row = data->n_rows - 1; row >= 0; row--) {
            memmove(data->values + row * grown, data->values + row * builder->column_capacity,
                    (size_t)data->n_columns * sizeof *data->values);
            memmove(data->present + row * grown, data->present + row * builder->column_capacity,
                    (size_t)data->n_columns);
        }
        builder->column_capacity = grown;
    }

    char *copy = malloc(strlen(name) + 1);
    if (copy == NULL) {
        return -1;
    }
    strcpy(copy, name);
    int column = data->n_columns++;
    data->names[column] = copy;
    for (int64_t row = 0; row < data->n_rows; row++) {
        data->values[row * builder->column_capacity + column] = NAN;
        data->present[row * builder->column_capacity + column] = 0;
    }
    return column;
}

/* Adds an empty row; false when out of memory. */
static bool builder_add_row(table_builder *builder, int64_t step) {
    mr_runlog_data *data = builder->data;
    if (data->n_rows == builder->row_capacity) {
        int64_t grown = builder->row_capacity == 0 ? 64 : builder->row_capacity * 2;
        size_t cells = (size_t)grown * (size_t)(builder->column_capacity > 0
                                                    ? builder->column_capacity : 1);
        int64_t *steps = realloc(data->steps, (size_t)grown * sizeof *steps);
        double *values = realloc(data->values, cells * sizeof *values);
        unsigned char *present = realloc(data->present, cells);
        if (steps != NULL) {
            data->steps = steps;
        }
        if (values != NULL) {
            data->values = values;
        }
        if (present != NULL) {
            data->present = present;
        }
        if (steps == NULL || values == NULL || present == NULL) {
            return false;
        }
        builder->row_capacity = grown;
    }

    int64_t row = data->n_rows++;
    data->steps[row] = step;
    for (int column = 0; column < builder->column_capacity; column++) {
        data->values[row * builder->column_capacity + column] = NAN;
        data->present[row * builder->column_capacity + column] = 0;
    }
    return true;
}

static bool visit_for_table(cJSON *object, int64_t step, size_t end_offset, void *state) {
    (void)end_offset;
    table_builder *builder = state;
    if (!builder_add_row(builder, step)) {
        builder->out_of_memory = true;
        return false;
    }

    int64_t row = builder->data->n_rows - 1;
    for (const cJSON *item = object->child; item != NULL; item = item->next) {
        if (strcmp(item->string, MR_RUNLOG_STEP) == 0) {
            continue;
        }
        int column = builder_column(builder, item->string);
        if (column < 0) {
            builder->out_of_memory = true;
            return false;
        }
        double value = 0;
        member_value(item, &value);
        builder->data->values[row * builder->column_capacity + column] = value;
        builder->data->present[row * builder->column_capacity + column] = 1;
    }
    return true;
}

/* Packs the rows from column_capacity to n_columns cells wide. */
static void builder_pack(table_builder *builder) {
    mr_runlog_data *data = builder->data;
    for (int64_t row = 0; row < data->n_rows; row++) {
        memmove(data->values + row * data->n_columns,
                data->values + row * builder->column_capacity,
                (size_t)data->n_columns * sizeof *data->values);
        memmove(data->present + row * data->n_columns,
                data->present + row * builder->column_capacity, (size_t)data->n_columns);
    }
}

mr_status mr_runlog_read(const char *path, mr_runlog_data **out, mr_error *err) {
    *out = NULL;
    void *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, RUNLOG_MAX_BYTES, &text, &size, err);
    if (status != MR_OK) {
        return status;
    }

    mr_runlog_data *data = calloc(1, sizeof *data);
    if (data == NULL) {
        free(text);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "runlog: out of memory reading '%s'", path);
    }
    table_builder builder = {.data = data};
    bool partial = false;
    status = scan_lines(text, size, path, visit_for_table, &builder, &partial, err);
    free(text);
    if (status == MR_OK && builder.out_of_memory) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "runlog: out of memory reading '%s'",
                              path);
    }
    if (status != MR_OK) {
        mr_runlog_data_free(data);
        return status;
    }

    builder_pack(&builder);
    data->dropped_last_line = partial;
    *out = data;
    return MR_OK;
}

int mr_runlog_data_column(const mr_runlog_data *data, const char *name) {
    for (int column = 0; column < data->n_columns; column++) {
        if (strcmp(data->names[column], name) == 0) {
            return column;
        }
    }
    return -1;
}

void mr_runlog_data_free(mr_runlog_data *data) {
    if (data == NULL) {
        return;
    }
    for (int column = 0; column < data->n_columns; column++) {
        free(data->names[column]);
    }
    free(data->names);
    free(data->steps);
    free(data->values);
    free(data->present);
    free(data);
}
