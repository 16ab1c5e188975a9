/*
 * JSON Lines readers for the trainers' data: one JSON object per line,
 * with errors that name the file and the line.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/fileio.h"
#include "train_internal.h"

/* Data files larger than this are rejected before they are read. */
#define TRAIN_DATA_MAX_BYTES ((size_t)1 << 31)

void train_row_clear(train_row *r) {
    free(r->prompt);
    free(r->completion);
    free(r->chosen);
    free(r->rejected);
    free(r->ground_truth);
    free(r->text);
    for (int m = 0; m < r->n_messages; m++) {
        free((char *)r->messages[m].role);
        free((char *)r->messages[m].content);
    }
    free(r->messages);
    memset(r, 0, sizeof *r);
}

void train_rows_free(train_row *rows, int n) {
    if (rows == NULL) {
        return;
    }
    for (int i = 0; i < n; i++) {
        train_row_clear(&rows[i]);
    }
    free(rows);
}

/* Copies the string member key of object into *out. A missing member is
 * an error when required and leaves *out NULL otherwise. */
static mr_status read_string(const cJSON *object, const char *key, bool required, char **out,
                             const char *path, int line, mr_error *err) {
    *out = NULL;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (item == NULL || cJSON_IsNull(item)) {
        if (!required) {
            return MR_OK;
        }
        return mr_error_set(err, MR_ERR_FORMAT, "%s:%d: missing string field \"%s\"", path,
                            line, key);
    }
    if (!cJSON_IsString(item)) {
        return mr_error_set(err, MR_ERR_FORMAT, "%s:%d: field \"%s\" must be a string", path,
                            line, key);
    }
    *out = strdup(item->valuestring);
    if (*out == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "%s:%d: out of memory", path, line);
    }
    return MR_OK;
}

/* Reads the "messages" array of a chat row: objects with string "role"
 * and "content". */
static mr_status read_messages(const cJSON *array, train_row *row, const char *path,
                               mr_error *err) {
    int n = cJSON_GetArraySize(array);
    if (n == 0) {
        return mr_error_set(err, MR_ERR_FORMAT, "%s:%d: \"messages\" is empty", path, row->line);
    }
    row->messages = calloc((size_t)n, sizeof *row->messages);
    if (row->messages == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "%s:%d: out of memory", path, row->line);
    }
    for (int m = 0; m < n; m++) {
        const cJSON *item = cJSON_GetArrayItem(array, m);
        if (!cJSON_IsObject(item)) {
            return mr_error_set(err, MR_ERR_FORMAT, "%s:%d: message %d is not an object", path,
                                row->line, m);
        }
        char *role = NULL, *content = NULL;
        mr_status status = read_string(item, "role", true, &role, path, row->line, err);
        if (status == MR_OK) {
            status = read_string(item, "content", true, &content, path, row->line, err);
        }
        row->messages[m].role = role;
        row->messages[m].content = content;
        row->n_messages = m + 1;
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Fills row from one parsed object according to kind. */
static mr_status read_row(const cJSON *object, mr_train_kind kind, int num_labels,
                          const char *completion_field, train_row *row, const char *path,
                          mr_error *err) {
    int line = row->line;
    mr_status status = MR_OK;
    switch (kind) {
    case MR_TRAIN_SFT: {
        const cJSON *messages = cJSON_GetObjectItemCaseSensitive(object, "messages");
        if (messages != NULL) {
            if (!cJSON_IsArray(messages)) {
                return mr_error_set(err, MR_ERR_FORMAT, "%s:%d: \"messages\" must be an array",
                                    path, line);
            }
            return read_messages(messages, row, path, err);
        }
        status = read_string(object, "prompt", true, &row->prompt, path, line, err);
        if (status == MR_OK) {
            status = read_string(object, completion_field, true, &row->completion, path, line,
                                 err);
        }
        return status;
    }
    case MR_TRAIN_REWARD:
    case MR_TRAIN_DPO:
        status = read_string(object, "prompt", true, &row->prompt, path, line, err);
        if (status == MR_OK) {
            status = read_string(object, "chosen", true, &row->chosen, path, line, err);
        }
        if (status == MR_OK) {
            status = read_string(object, "rejected", true, &row->rejected, path, line, err);
        }
        if (status == MR_OK && kind == MR_TRAIN_DPO) {
            status = read_string(object, "ground_truth", false, &row->ground_truth, path, line,
                                 err);
        }
        return status;
    case MR_TRAIN_CLASSIFY: {
        status = read_string(object, "text", true, &row->text, path, line, err);
        if (status != MR_OK) {
            return status;
        }
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(object, "label");
        if (!cJSON_IsNumber(label) || fabs(label->valuedouble) > 1e9 ||
            label->valuedouble != (double)(int)label->valuedouble) {
            return mr_error_set(err, MR_ERR_FORMAT, "%s:%d: \"label\" must be an integer", path,
                                line);
        }
        row->label = (int)label->valuedouble;
        if (row->label < 0 || row->label >= num_labels) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "%s:%d: label %d is outside [0, %d); set num_labels", path,
                                line, row->label, num_labels);
        }
        return MR_OK;
    }
    }
    return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: unknown kind %d", (int)kind);
}

mr_status train_invalid_json_error(const char *path, int line, const char *line_start,
                                   const char *parse_end, mr_error *err) {
    if (parse_end == NULL || parse_end < line_start) {
        return mr_error_set(err, MR_ERR_FORMAT, "%s:%d: invalid JSON", path, line);
    }
    long column = (long)(parse_end - line_start) + 1;
    return mr_error_set(err, MR_ERR_FORMAT, "%s:%d:%ld: invalid JSON near '%.16s'%s", path,
                        line, column, parse_end,
                        mr_json_cut_short(line_start) ? "; the line ends before the JSON value does, "
                                                 "so the row may be cut short"
                                               : "");
}

/* True for a preference row with an empty side, which has nothing to
 * compare. */
static bool has_empty_side(const train_row *row) {
    return (row->chosen != NULL && row->chosen[0] == '\0') ||
           (row->rejected != NULL && row->rejected[0] == '\0');
}

mr_status train_read_jsonl(const char *path, mr_train_kind kind, int num_labels,
                           train_row **rows, int *n, mr_error *err) {
    return train_read_rows(path, kind, num_labels, NULL, rows, n, err);
}

mr_status train_read_rows(const char *path, mr_train_kind kind, int num_labels,
                          const char *completion_field, train_row **rows_out, int *n_out,
                          mr_error *err) {
    if (completion_field == NULL) {
        completion_field = "completion";
    }
    *rows_out = NULL;
    *n_out = 0;
    char *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, TRAIN_DATA_MAX_BYTES, (void **)&text, &size, err);
    if (status != MR_OK) {
        return status;
    }

    /* Count lines for the row array. */
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) {
        lines += text[i] == '\n';
    }
    train_row *rows = calloc(lines, sizeof *rows);
    if (rows == NULL) {
        free(text);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "%s: out of memory for %zu rows", path, lines);
    }

    int n = 0, skipped = 0, line = 0;
    char *cursor = text;
    while (status == MR_OK && cursor < text + size) {
        char *end = strchr(cursor, '\n');
        if (end == NULL) {
            end = text + size;
        }
        *end = '\0';
        line++;
        char *line_start = cursor;
        char *start = cursor;
        cursor = end + 1;
        while (*start == ' ' || *start == '\t' || *start == '\r') {
            start++;
        }
        if (*start == '\0') {
            continue;
        }

        const char *parse_end = NULL;
        cJSON *object = cJSON_ParseWithOpts(start, &parse_end, true);
        if (object == NULL) {
            status = train_invalid_json_error(path, line, line_start, parse_end, err);
            break;
        }
        if (!cJSON_IsObject(object)) {
            cJSON_Delete(object);
            status = mr_error_set(err, MR_ERR_FORMAT,
                                  "%s:%d: not a JSON object; each line needs one {...} "
                                  "object",
                                  path, line);
            break;
        }
        rows[n].line = line;
        status = read_row(object, kind, num_labels, completion_field, &rows[n], path, err);
        cJSON_Delete(object);
        n++;
        if (status == MR_OK && has_empty_side(&rows[n - 1])) {
            n--;
            train_row_clear(&rows[n]);
            skipped++;
        }
    }
    free(text);
    if (status != MR_OK) {
        train_rows_free(rows, n);
        return status;
    }
    if (skipped > 0) {
        mr_log(MR_LOG_WARN, "train", "%s: skipped %d rows with an empty chosen or rejected side",
               path, skipped);
    }
    if (n == 0) {
        train_rows_free(rows, n);
        return mr_error_set(err, MR_ERR_FORMAT, "%s: no data rows", path);
    }
    mr_log(MR_LOG_INFO, "train", "%s: read %d row%s", path, n, n == 1 ? "" : "s");
    *rows_out = rows;
    *n_out = n;
    return MR_OK;
}
