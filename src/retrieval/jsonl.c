/*
 * The JSONL line reader and the parser of one passage line. This file
 * needs only cJSON, not SQLite, so that the fuzz target links it alone.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "multiround/retriever.h"

/* Largest integer id accepted: cJSON parses numbers as doubles, which
 * hold every integer up to 2^53 exactly. */
#define MAX_EXACT_INTEGER 9007199254740992.0

struct mr_jsonl_reader {
    FILE *file;          /* NULL when reading from memory */
    const uint8_t *data; /* the buffer of a memory reader */
    size_t size;
    size_t position;     /* next unread byte of data */
    char *name;          /* the file name used in messages */
    size_t max_line;
    char *line;          /* the current line, max_line + 1 bytes */
    int64_t line_number;
    bool at_end;
};

/* Copies text into a new heap string; NULL when out of memory. */
static char *copy_string(const char *text) {
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy != NULL) {
        memcpy(copy, text, length + 1);
    }
    return copy;
}

/* Allocates a reader with its line buffer; the caller sets the source. */
static mr_status reader_create(const char *name, size_t max_line, mr_jsonl_reader **out,
                               mr_error *err) {
    if (max_line == 0) {
        max_line = MR_JSONL_DEFAULT_MAX_LINE_BYTES;
    }
    mr_jsonl_reader *reader = calloc(1, sizeof *reader);
    if (reader == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "jsonl: out of memory opening %s", name);
    }
    reader->name = copy_string(name);
    reader->max_line = max_line;
    /* One extra byte for the NUL, and one to see that a line is too long. */
    reader->line = max_line < SIZE_MAX - 2 ? malloc(max_line + 2) : NULL;
    if (reader->name == NULL || reader->line == NULL) {
        mr_jsonl_reader_close(reader);
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "jsonl: cannot allocate a line buffer of %zu bytes for %s",
                            max_line, name);
    }
    *out = reader;
    return MR_OK;
}

mr_status mr_jsonl_reader_open(const char *path, size_t max_line_bytes,
                               mr_jsonl_reader **out, mr_error *err) {
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        mr_status status = errno == ENOENT ? MR_ERR_NOT_FOUND : MR_ERR_IO;
        return mr_error_set(err, status, "jsonl: cannot open %s: %s", path, strerror(errno));
    }
    struct stat info;
    if (fstat(fileno(file), &info) == 0 && S_ISDIR(info.st_mode)) {
        fclose(file);
        return mr_error_set(err, MR_ERR_IO, "jsonl: cannot open %s: %s; give a file", path,
                            strerror(EISDIR));
    }

    mr_status status = reader_create(path, max_line_bytes, out, err);
    if (status != MR_OK) {
        fclose(file);
        return status;
    }
    (*out)->file = file;
    return MR_OK;
}

mr_status mr_jsonl_reader_open_memory(const void *data, size_t size, const char *name,
                                      size_t max_line_bytes, mr_jsonl_reader **out,
                                      mr_error *err) {
    *out = NULL;
    mr_status status = reader_create(name, max_line_bytes, out, err);
    if (status != MR_OK) {
        return status;
    }
    (*out)->data = data;
    (*out)->size = data != NULL ? size : 0;
    return MR_OK;
}

void mr_jsonl_reader_close(mr_jsonl_reader *reader) {
    if (reader == NULL) {
        return;
    }
    if (reader->file != NULL) {
        fclose(reader->file);
    }
    free(reader->name);
    free(reader->line);
    free(reader);
}

/* Returns the next byte of the input, or EOF. */
static int reader_getc(mr_jsonl_reader *reader) {
    if (reader->file != NULL) {
        return getc_unlocked(reader->file);
    }
    if (reader->position >= reader->size) {
        return EOF;
    }
    return reader->data[reader->position++];
}

/*
 * Returns the byte offset of the first invalid UTF-8 sequence in
 * text[0..length-1], or length when it is all valid. Overlong forms,
 * UTF-16 surrogates and code points above U+10FFFF are invalid.
 */
static size_t utf8_invalid_offset(const uint8_t *text, size_t length) {
    size_t i = 0;
    while (i < length) {
        uint8_t lead = text[i];
        if (lead < 0x80) {
            i++;
            continue;
        }

        /* The lead byte gives the number of continuation bytes, its own
         * payload bits and the smallest code point of that length. */
        size_t count = 0;
        uint32_t code = 0;
        uint32_t minimum = 0;
        if (lead >= 0xC2 && lead <= 0xDF) {
            count = 1;
            code = lead & 0x1F;
            minimum = 0x80;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            count = 2;
            code = lead & 0x0F;
            minimum = 0x800;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            count = 3;
            code = lead & 0x07;
            minimum = 0x10000;
        } else {
            return i;
        }
        if (length - i <= count) {
            return i;
        }
        for (size_t k = 1; k <= count; k++) {
            uint8_t next = text[i + k];
            if ((next & 0xC0) != 0x80) {
                return i;
            }
            code = (code << 6) | (next & 0x3F);
        }
        if (code < minimum || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
            return i;
        }
        i += count + 1;
    }
    return length;
}

/* Returns whether the line holds only spaces, tabs and carriage returns. */
static bool is_blank(const char *line, size_t length) {
    for (size_t i = 0; i < length; i++) {
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
            return false;
        }
    }
    return true;
}

mr_status mr_jsonl_reader_next(mr_jsonl_reader *reader, const char **line, size_t *length,
                               int64_t *line_number, mr_error *err) {
    *line = NULL;
    *length = 0;
    for (;;) {
        if (reader->at_end) {
            *line_number = reader->line_number;
            return MR_OK;
        }

        /* Read up to the newline, storing at most max_line + 1 bytes so
         * that a longer line is seen without buffering all of it. */
        size_t used = 0;
        bool too_long = false;
        bool saw_byte = false;
        int c;
        while ((c = reader_getc(reader)) != EOF && c != '\n') {
            saw_byte = true;
            if (used <= reader->max_line) {
                reader->line[used++] = (char)c;
            } else {
                too_long = true;
            }
        }
        if (c == EOF) {
            reader->at_end = true;
            if (reader->file != NULL && ferror(reader->file)) {
                return mr_error_set(err, MR_ERR_IO,
                                    "jsonl: cannot read %s after line %lld: %s", reader->name,
                                    (long long)reader->line_number, strerror(errno));
            }
            if (!saw_byte) {
                *line_number = reader->line_number;
                return MR_OK;
            }
        }
        reader->line_number++;
        *line_number = reader->line_number;

        if (used > 0 && reader->line[used - 1] == '\r') {
            used--;
        }
        if (too_long || used > reader->max_line) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "%s:%lld: line is longer than the limit of %zu bytes; "
                                "shorten the passage or raise the limit",
                                reader->name, (long long)reader->line_number, reader->max_line);
        }
        reader->line[used] = '\0';

        if (memchr(reader->line, '\0', used) != NULL) {
            size_t at = (size_t)((char *)memchr(reader->line, '\0', used) - reader->line);
            return mr_error_set(err, MR_ERR_FORMAT,
                                "%s:%lld: NUL byte at byte %zu of the line; JSON text "
                                "cannot contain NUL bytes",
                                reader->name, (long long)reader->line_number, at + 1);
        }
        size_t invalid = utf8_invalid_offset((const uint8_t *)reader->line, used);
        if (invalid < used) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "%s:%lld: invalid UTF-8 at byte %zu of the line (0x%02X); "
                                "convert the file to UTF-8",
                                reader->name, (long long)reader->line_number, invalid + 1,
                                (unsigned)(uint8_t)reader->line[invalid]);
        }
        if (is_blank(reader->line, used)) {
            continue;
        }

        *line = reader->line;
        *length = used;
        return MR_OK;
    }
}

void mr_passage_free(mr_passage *passage) {
    if (passage == NULL) {
        return;
    }
    free(passage->id);
    free(passage->title);
    free(passage->text);
    free(passage->metadata);
    memset(passage, 0, sizeof *passage);
}

/* Returns a short name for the JSON type of item, for messages. */
static const char *json_type_name(const cJSON *item) {
    if (cJSON_IsString(item)) {
        return "a string";
    }
    if (cJSON_IsNumber(item)) {
        return "a number";
    }
    if (cJSON_IsBool(item)) {
        return "a boolean";
    }
    if (cJSON_IsNull(item)) {
        return "null";
    }
    if (cJSON_IsArray(item)) {
        return "an array";
    }
    return "an object";
}

/* Stores the id of item in out, or returns an error naming the line. */
static mr_status parse_id(const cJSON *item, const char *source, long long line_number,
                          mr_passage *out, mr_error *err) {
    if (cJSON_IsString(item)) {
        if (item->valuestring[0] == '\0') {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "%s:%lld: \"id\" is an empty string; give each passage a "
                                "unique non-empty id",
                                source, line_number);
        }
        out->id = copy_string(item->valuestring);
        out->id_is_integer = false;
    } else if (cJSON_IsNumber(item)) {
        double value = item->valuedouble;
        if (!isfinite(value) || value != floor(value) || fabs(value) > MAX_EXACT_INTEGER) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "%s:%lld: \"id\" is %.17g, not an integer of magnitude at "
                                "most 2^53; use an integer or a string id",
                                source, line_number, value);
        }
        char digits[32];
        snprintf(digits, sizeof digits, "%lld", (long long)value);
        out->id = copy_string(digits);
        out->id_is_integer = true;
    } else {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s:%lld: \"id\" is %s; it must be a string or an integer",
                            source, line_number, json_type_name(item));
    }
    if (out->id == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "%s:%lld: out of memory", source,
                            line_number);
    }
    return MR_OK;
}

/* Fills out from the parsed object root and moves the other fields into
 * out->metadata. */
static mr_status parse_fields(cJSON *root, const char *source, long long line_number,
                              mr_passage *out, mr_error *err) {
    cJSON *id = NULL, *title = NULL, *text = NULL;
    for (cJSON *field = root->child; field != NULL; field = field->next) {
        cJSON **slot = NULL;
        if (strcmp(field->string, "id") == 0) {
            slot = &id;
        } else if (strcmp(field->string, "title") == 0) {
            slot = &title;
        } else if (strcmp(field->string, "text") == 0) {
            slot = &text;
        } else {
            continue;
        }
        if (*slot != NULL) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "%s:%lld: the field \"%s\" appears twice; keep one",
                                source, line_number, field->string);
        }
        *slot = field;
    }

    if (id == NULL) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s:%lld: missing \"id\"; add a string or integer id",
                            source, line_number);
    }
    mr_status status = parse_id(id, source, line_number, out, err);
    if (status != MR_OK) {
        return status;
    }

    if (text == NULL) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s:%lld: missing \"text\"; add the passage text as a string",
                            source, line_number);
    }
    if (!cJSON_IsString(text) || text->valuestring[0] == '\0') {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s:%lld: \"text\" is %s; it must be a non-empty string",
                            source, line_number,
                            cJSON_IsString(text) ? "empty" : json_type_name(text));
    }
    if (title != NULL && !cJSON_IsString(title)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s:%lld: \"title\" is %s; it must be a string or absent",
                            source, line_number, json_type_name(title));
    }
    out->text = copy_string(text->valuestring);
    out->title = copy_string(title != NULL ? title->valuestring : "");

    /* What remains after removing the three fields is the metadata. */
    cJSON_Delete(cJSON_DetachItemViaPointer(root, id));
    cJSON_Delete(cJSON_DetachItemViaPointer(root, text));
    if (title != NULL) {
        cJSON_Delete(cJSON_DetachItemViaPointer(root, title));
    }
    if (root->child != NULL) {
        out->metadata = cJSON_PrintUnformatted(root);
        if (out->metadata == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "%s:%lld: out of memory", source,
                                line_number);
        }
    }
    if (out->text == NULL || out->title == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "%s:%lld: out of memory", source,
                            line_number);
    }
    return MR_OK;
}

mr_status mr_passage_parse(const char *line, size_t length, const char *source,
                           int64_t line_number, mr_passage *out, mr_error *err) {
    memset(out, 0, sizeof *out);
    long long number = (long long)line_number;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, length, &end, false);
    if (root == NULL) {
        /* NOTE: cJSON keeps the error position in a global, so with parses
         * on several threads the reported byte may belong to another line.
         * It is used only when it points into this line. */
        const char *at = cJSON_GetErrorPtr();
        size_t offset = at != NULL && at >= line && at <= line + length
                            ? (size_t)(at - line) : 0;
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s:%lld: malformed JSON near byte %zu; each line must be one "
                            "JSON object such as {\"id\": 1, \"title\": \"...\", \"text\": "
                            "\"...\"}",
                            source, number, offset + 1);
    }

    /* Only whitespace may follow the object. */
    size_t consumed = (size_t)(end - line);
    while (consumed < length && (line[consumed] == ' ' || line[consumed] == '\t' ||
                                 line[consumed] == '\r')) {
        consumed++;
    }
    mr_status status = MR_OK;
    if (consumed < length) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "%s:%lld: text after the JSON value at byte %zu; put one "
                              "object on each line",
                              source, number, consumed + 1);
    } else if (!cJSON_IsObject(root)) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "%s:%lld: the line is %s, not a JSON object; write each "
                              "passage as {\"id\": ..., \"title\": ..., \"text\": ...}",
                              source, number, json_type_name(root));
    } else {
        status = parse_fields(root, source, number, out, err);
    }
    cJSON_Delete(root);

    if (status != MR_OK) {
        mr_passage_free(out);
    }
    return status;
}
