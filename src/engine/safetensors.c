/*
 * Safetensors reader: maps a file and validates its header completely.
 * Conversions to float and int32 are in safetensors_convert.c and the
 * writer is in safetensors_write.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "multiround/safetensors.h"
#include "safetensors_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads little-endian data with memcpy and needs a little-endian host"
#endif

/* Largest integer that a double represents exactly (JSON numbers arrive as doubles). */
#define MAX_EXACT_INTEGER 9007199254740992.0 /* 2^53 */

/* Enough room for a shape string in an error message. */
#define SHAPE_TEXT_SIZE 128

struct mr_safetensors {
    char *name;                     /* path, or the caller's name for memory */
    const uint8_t *bytes;           /* the whole file */
    size_t size;
    void *mapping;                  /* NULL when the caller owns the bytes */
    cJSON *header;                  /* parsed header; names point into it */
    mr_safetensors_tensor *tensors; /* sorted by data offset */
    int64_t *shapes;                /* dimensions of every tensor, back to back */
    int64_t count;
    const mr_safetensors_tensor **by_name; /* the tensors sorted by name */
    const char **metadata_keys;     /* in header order */
    const char **metadata_values;
    int64_t metadata_count;
};

/* The dtype names of the format in enum order, with element sizes. */
static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8},  {"I64", 8},     {"U64", 8},
};
#define DTYPE_COUNT ((int)(sizeof dtype_table / sizeof dtype_table[0]))

/* Names that newer versions of the format define but this reader cannot
 * size or convert (sub-byte floats, the E8M0 scale type, complex). */
static const char *const newer_dtypes[] = {"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64"};

const char *mr_safetensors_dtype_name(mr_safetensors_dtype dtype) {
    if ((int)dtype < 0 || (int)dtype >= DTYPE_COUNT) {
        return "?";
    }
    return dtype_table[dtype].name;
}

size_t mr_safetensors_dtype_size(mr_safetensors_dtype dtype) {
    if ((int)dtype < 0 || (int)dtype >= DTYPE_COUNT) {
        return 0;
    }
    return dtype_table[dtype].size;
}

void mr_st_format_shape(char *text, size_t size, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(text, size, "[");
    for (int i = 0; i < ndim && used < size; i++) {
        used += (size_t)snprintf(text + used, size - used, i == 0 ? "%" PRId64 : ", %" PRId64,
                                 shape[i]);
    }
    if (used < size) {
        snprintf(text + used, size - used, "]");
        return;
    }

    /* Too long: cut after the last whole dimension that leaves room for
     * ", ...]" and its NUL. */
    if (size < 8) {
        text[0] = '\0';
        return;
    }
    size_t cut = size - 7;
    while (cut > 1 && text[cut] != ',') {
        cut--;
    }
    memcpy(text + cut, cut > 1 ? ", ...]" : "...]", cut > 1 ? 7 : 5);
}

/* ------------------------------------------------------------------------
 * Header validation
 * ------------------------------------------------------------------------ */

/*
 * Returns the offset of the first byte in text[0..length) that is not
 * valid UTF-8, or length when there is none. Rejects overlong forms,
 * surrogates and code points above U+10FFFF. With json_text set it also
 * rejects control characters other than tab, newline and carriage return,
 * which JSON allows nowhere (cJSON would take them as whitespace).
 */
static size_t find_invalid_utf8(const uint8_t *text, size_t length, bool json_text) {
    size_t i = 0;
    while (i < length) {
        uint8_t lead = text[i];
        if (lead == 0 ||
            (json_text && lead < 0x20 && lead != '\t' && lead != '\n' && lead != '\r')) {
            return i;
        }
        if (lead < 0x80) {
            i++;
            continue;
        }

        size_t extra;
        uint32_t code;
        uint32_t minimum;
        if ((lead & 0xe0) == 0xc0) {
            extra = 1, code = lead & 0x1fu, minimum = 0x80;
        } else if ((lead & 0xf0) == 0xe0) {
            extra = 2, code = lead & 0x0fu, minimum = 0x800;
        } else if ((lead & 0xf8) == 0xf0) {
            extra = 3, code = lead & 0x07u, minimum = 0x10000;
        } else {
            return i;
        }
        if (length - i <= extra) {
            return i;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((text[i + k] & 0xc0) != 0x80) {
                return i;
            }
            code = (code << 6) | (text[i + k] & 0x3fu);
        }
        if (code < minimum || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
            return i;
        }
        i += extra + 1;
    }
    return length;
}

bool mr_st_valid_utf8(const char *text) {
    size_t length = strlen(text);
    return find_invalid_utf8((const uint8_t *)text, length, false) == length;
}

/* Reads item as a non-negative integer that a double represents exactly.
 * NOTE: cJSON keeps only the double, so "2.0" and "2e0" pass as 2. */
static bool read_integer(const cJSON *item, uint64_t *value) {
    if (!cJSON_IsNumber(item)) {
        return false;
    }
    double number = item->valuedouble;
    if (!(number >= 0.0) || number > MAX_EXACT_INTEGER || number != floor(number)) {
        return false;
    }
    *value = (uint64_t)number;
    return true;
}

/* Parsing state: the handle being filled and the error to fill. */
typedef struct parser {
    mr_safetensors *file;
    uint64_t buffer_size; /* bytes after the header */
    uint64_t header_size;
    mr_error *err;
} parser;

/* Finds the one dtype named text; sets *status to the error to report on
 * failure (FORMAT for an unknown name, UNSUPPORTED for a newer one). */
static bool parse_dtype(const char *text, mr_safetensors_dtype *dtype, mr_status *status) {
    for (int i = 0; i < DTYPE_COUNT; i++) {
        if (strcmp(text, dtype_table[i].name) == 0) {
            *dtype = (mr_safetensors_dtype)i;
            return true;
        }
    }
    *status = MR_ERR_FORMAT;
    for (size_t i = 0; i < sizeof newer_dtypes / sizeof newer_dtypes[0]; i++) {
        if (strcmp(text, newer_dtypes[i]) == 0) {
            *status = MR_ERR_UNSUPPORTED;
        }
    }
    return false;
}

/* Validates the "__metadata__" object: every value must be a string and
 * keys must be unique. Stores the entries in the handle. */
static mr_status parse_metadata(parser *p, const cJSON *object) {
    mr_safetensors *file = p->file;
    if (!cJSON_IsObject(object)) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': \"__metadata__\" must be an object of strings; "
                            "the header is corrupt",
                            file->name);
    }

    int64_t count = 0;
    for (const cJSON *entry = object->child; entry != NULL; entry = entry->next) {
        count++;
    }
    file->metadata_keys = calloc((size_t)count + 1, sizeof *file->metadata_keys);
    file->metadata_values = calloc((size_t)count + 1, sizeof *file->metadata_values);
    if (file->metadata_keys == NULL || file->metadata_values == NULL) {
        return mr_error_set(p->err, MR_ERR_NO_MEMORY,
                            "safetensors: out of memory reading '%s' (%" PRId64
                            " metadata entries)",
                            file->name, count);
    }

    for (const cJSON *entry = object->child; entry != NULL; entry = entry->next) {
        if (!cJSON_IsString(entry)) {
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': metadata value for key '%s' is not a string; "
                                "every \"__metadata__\" value must be a JSON string",
                                file->name, entry->string);
        }
        file->metadata_keys[file->metadata_count] = entry->string;
        file->metadata_values[file->metadata_count] = entry->valuestring;
        file->metadata_count++;
    }
    return MR_OK;
}

/* Validates one tensor entry and fills tensor, its shape going to
 * *shape_cursor (advanced past it). */
static mr_status parse_tensor(parser *p, const cJSON *entry, mr_safetensors_tensor *tensor,
                              int64_t **shape_cursor) {
    const char *file_name = p->file->name;
    const char *name = entry->string;
    tensor->name = name;
    if (!cJSON_IsObject(entry)) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': entry '%s' must be an object with dtype, shape "
                            "and data_offsets",
                            file_name, name);
    }

    /* Exactly the three known keys, each once. */
    const cJSON *dtype_item = NULL, *shape_item = NULL, *offsets_item = NULL;
    for (const cJSON *field = entry->child; field != NULL; field = field->next) {
        const cJSON **slot = NULL;
        if (strcmp(field->string, "dtype") == 0) {
            slot = &dtype_item;
        } else if (strcmp(field->string, "shape") == 0) {
            slot = &shape_item;
        } else if (strcmp(field->string, "data_offsets") == 0) {
            slot = &offsets_item;
        } else {
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': tensor '%s' has unknown field '%s'; expected "
                                "only dtype, shape and data_offsets",
                                file_name, name, field->string);
        }
        if (*slot != NULL) {
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': tensor '%s' has field '%s' twice", file_name,
                                name, field->string);
        }
        *slot = field;
    }
    if (dtype_item == NULL || shape_item == NULL || offsets_item == NULL) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': tensor '%s' lacks field '%s'", file_name, name,
                            dtype_item == NULL ? "dtype"
                            : shape_item == NULL ? "shape"
                                                 : "data_offsets");
    }

    /* dtype */
    if (!cJSON_IsString(dtype_item)) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': tensor '%s' has a dtype that is not a string",
                            file_name, name);
    }
    mr_status dtype_status = MR_OK;
    if (!parse_dtype(dtype_item->valuestring, &tensor->dtype, &dtype_status)) {
        return mr_error_set(p->err, dtype_status,
                            dtype_status == MR_ERR_UNSUPPORTED
                                ? "safetensors: '%s': tensor '%s' has dtype '%s', which this "
                                  "reader does not support; convert the file to F32, F16 or BF16"
                                : "safetensors: '%s': tensor '%s' has unknown dtype '%s'; "
                                  "expected BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, "
                                  "I32, U32, F32, F64, I64 or U64",
                            file_name, name, dtype_item->valuestring);
    }

    /* shape: its element count is computed with overflow checks. A zero
     * dimension makes the tensor empty whatever the other dimensions. */
    if (!cJSON_IsArray(shape_item)) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': tensor '%s' has a shape that is not an array",
                            file_name, name);
    }
    int64_t *shape = *shape_cursor;
    int ndim = 0;
    bool has_zero = false;
    for (const cJSON *dim = shape_item->child; dim != NULL; dim = dim->next) {
        uint64_t value;
        if (!read_integer(dim, &value)) {
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': tensor '%s' has shape entry %d that is not "
                                "an integer between 0 and 2^53",
                                file_name, name, ndim);
        }
        shape[ndim++] = (int64_t)value;
        has_zero = has_zero || value == 0;
    }
    tensor->ndim = ndim;
    tensor->shape = shape;
    *shape_cursor += ndim;

    char shape_text[SHAPE_TEXT_SIZE];
    uint64_t element_size = dtype_table[tensor->dtype].size;
    uint64_t numel = has_zero ? 0 : 1;
    for (int i = 0; i < ndim && numel != 0; i++) {
        uint64_t dim = (uint64_t)shape[i];
        if (numel > (uint64_t)INT64_MAX / element_size / dim) {
            mr_st_format_shape(shape_text, sizeof shape_text, ndim, shape);
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': tensor '%s' has shape %s whose size in "
                                "bytes overflows 64 bits; the header is corrupt",
                                file_name, name, shape_text);
        }
        numel *= dim;
    }
    tensor->numel = (int64_t)numel;
    tensor->size = numel * element_size;

    /* data_offsets: [begin, end] inside the buffer, spanning the size. */
    uint64_t begin = 0, end = 0;
    if (!cJSON_IsArray(offsets_item) || cJSON_GetArraySize(offsets_item) != 2 ||
        !read_integer(offsets_item->child, &begin) ||
        !read_integer(offsets_item->child->next, &end)) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': tensor '%s' has data_offsets that are not two "
                            "integers [begin, end]",
                            file_name, name);
    }
    if (begin > end || end > p->buffer_size) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': tensor '%s' has data_offsets [%" PRIu64
                            ", %" PRIu64 "] outside the %" PRIu64
                            "-byte data buffer; the file is truncated or corrupt",
                            file_name, name, begin, end, p->buffer_size);
    }
    if (end - begin != tensor->size) {
        mr_st_format_shape(shape_text, sizeof shape_text, ndim, shape);
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': tensor '%s' of dtype %s and shape %s needs "
                            "%" PRIu64 " bytes but data_offsets [%" PRIu64 ", %" PRIu64
                            "] span %" PRIu64,
                            file_name, name, dtype_table[tensor->dtype].name, shape_text,
                            tensor->size, begin, end, end - begin);
    }
    tensor->offset = 8 + p->header_size + begin;
    tensor->data = p->file->bytes + tensor->offset;
    return MR_OK;
}

/* Orders tensors by data offsets, then by end (empty tensors first), then
 * by name, so that the order never depends on the sort algorithm. */
static int compare_offsets(const void *a, const void *b) {
    const mr_safetensors_tensor *x = a, *y = b;
    if (x->offset != y->offset) {
        return x->offset < y->offset ? -1 : 1;
    }
    if (x->size != y->size) {
        return x->size < y->size ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* Orders pointers to tensors by name. */
static int compare_names(const void *a, const void *b) {
    const mr_safetensors_tensor *x = *(const mr_safetensors_tensor *const *)a;
    const mr_safetensors_tensor *y = *(const mr_safetensors_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks that the sorted tensors tile the buffer exactly. */
static mr_status check_tiling(parser *p) {
    mr_safetensors *file = p->file;
    uint64_t start = 8 + p->header_size;
    uint64_t expected = start; /* file position where the next tensor must begin */
    for (int64_t i = 0; i < file->count; i++) {
        const mr_safetensors_tensor *t = &file->tensors[i];
        if (t->offset < expected) {
            const mr_safetensors_tensor *previous = &file->tensors[i - 1];
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': tensor '%s' (buffer bytes %" PRIu64
                                "..%" PRIu64 ") overlaps tensor '%s' (bytes %" PRIu64
                                "..%" PRIu64 "); tensors must not share bytes",
                                file->name, t->name, t->offset - start,
                                t->offset - start + t->size, previous->name,
                                previous->offset - start,
                                previous->offset - start + previous->size);
        }
        if (t->offset > expected) {
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': buffer bytes %" PRIu64 "..%" PRIu64
                                " belong to no tensor (a hole before tensor '%s'); tensors "
                                "must cover the buffer without gaps",
                                file->name, expected - start, t->offset - start, t->name);
        }
        expected = t->offset + t->size;
    }
    if (expected != file->size) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': the tensors end at file byte %" PRIu64
                            " but the file has %zu bytes (%" PRIu64
                            " trailing bytes); the file is corrupt",
                            file->name, expected, file->size, (uint64_t)file->size - expected);
    }
    return MR_OK;
}

/* Checks that no two tensors and no two metadata keys share a name, and
 * builds the name index. */
static mr_status check_names(parser *p) {
    mr_safetensors *file = p->file;
    file->by_name = malloc(((size_t)file->count + 1) * sizeof *file->by_name);
    if (file->by_name == NULL) {
        return mr_error_set(p->err, MR_ERR_NO_MEMORY, "safetensors: out of memory reading '%s'",
                            file->name);
    }
    for (int64_t i = 0; i < file->count; i++) {
        file->by_name[i] = &file->tensors[i];
    }
    qsort(file->by_name, (size_t)file->count, sizeof *file->by_name, compare_names);
    for (int64_t i = 1; i < file->count; i++) {
        const char *name = file->by_name[i]->name;
        if (strcmp(name, file->by_name[i - 1]->name) == 0) {
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': tensor name '%s' appears more than once in "
                                "the header",
                                file->name, name);
        }
    }

    /* Metadata keys: sort a copy so that header order stays visible. */
    if (file->metadata_count > 1) {
        const char **keys = malloc((size_t)file->metadata_count * sizeof *keys);
        if (keys == NULL) {
            return mr_error_set(p->err, MR_ERR_NO_MEMORY,
                                "safetensors: out of memory reading '%s'", file->name);
        }
        memcpy(keys, file->metadata_keys, (size_t)file->metadata_count * sizeof *keys);
        qsort(keys, (size_t)file->metadata_count, sizeof *keys, compare_strings);
        for (int64_t i = 1; i < file->metadata_count; i++) {
            if (strcmp(keys[i], keys[i - 1]) == 0) {
                mr_status status = mr_error_set(p->err, MR_ERR_FORMAT,
                                                "safetensors: '%s': metadata key '%s' appears "
                                                "more than once",
                                                file->name, keys[i]);
                free(keys);
                return status;
            }
        }
        free(keys);
    }
    return MR_OK;
}

/* Parses and validates the JSON header text (length bytes at file offset 8). */
static mr_status parse_json(parser *p, const char *text, size_t length) {
    mr_safetensors *file = p->file;
    /* NOTE: on a parse error cJSON 1.7.15 also stores the position in a
     * process-wide variable without a lock, so two threads that open
     * corrupt files at the same moment race on it (results stay right). */
    const char *end = NULL;
    file->header = cJSON_ParseWithLengthOpts(text, length, &end, false);
    if (file->header == NULL) {
        size_t position = end != NULL && end >= text ? (size_t)(end - text) : 0;
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': the header is not valid JSON (error near file "
                            "byte %zu); the file is corrupt or not safetensors",
                            file->name, 8 + position);
    }

    /* Only whitespace (the format pads with spaces) may follow the JSON. */
    for (size_t i = (size_t)(end - text); i < length; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return mr_error_set(p->err, MR_ERR_FORMAT,
                                "safetensors: '%s': unexpected byte 0x%02x after the JSON header "
                                "at file byte %zu; only spaces may pad the header",
                                file->name, (unsigned)(uint8_t)c, 8 + i);
        }
    }
    if (!cJSON_IsObject(file->header)) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "safetensors: '%s': the header is not a JSON object", file->name);
    }

    /* Size the arrays: one slot per entry and per shape dimension. */
    int64_t entries = 0, dims = 0;
    for (const cJSON *entry = file->header->child; entry != NULL; entry = entry->next) {
        entries++;
        const cJSON *shape = cJSON_IsObject(entry)
                                 ? cJSON_GetObjectItemCaseSensitive(entry, "shape")
                                 : NULL;
        dims += cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : 0;
    }
    file->tensors = calloc((size_t)entries + 1, sizeof *file->tensors);
    file->shapes = calloc((size_t)dims + 1, sizeof *file->shapes);
    if (file->tensors == NULL || file->shapes == NULL) {
        return mr_error_set(p->err, MR_ERR_NO_MEMORY,
                            "safetensors: out of memory reading '%s' (%" PRId64 " entries)",
                            file->name, entries);
    }

    const cJSON *metadata = NULL;
    int64_t *shape_cursor = file->shapes;
    for (const cJSON *entry = file->header->child; entry != NULL; entry = entry->next) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (metadata != NULL) {
                return mr_error_set(p->err, MR_ERR_FORMAT,
                                    "safetensors: '%s': \"__metadata__\" appears more than once",
                                    file->name);
            }
            metadata = entry;
            continue;
        }
        mr_status status = parse_tensor(p, entry, &file->tensors[file->count], &shape_cursor);
        if (status != MR_OK) {
            return status;
        }
        file->count++;
    }
    if (metadata != NULL) {
        mr_status status = parse_metadata(p, metadata);
        if (status != MR_OK) {
            return status;
        }
    }

    /* Sort before indexing names, because the index points at the tensors. */
    qsort(file->tensors, (size_t)file->count, sizeof *file->tensors, compare_offsets);
    mr_status status = check_names(p);
    if (status != MR_OK) {
        return status;
    }
    return check_tiling(p);
}

/* Validates the whole file in file->bytes. */
static mr_status parse_file(mr_safetensors *file, mr_error *err) {
    if (file->size == 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "safetensors: '%s' is empty; expected an 8-byte header length, a "
                            "JSON header and tensor data",
                            file->name);
    }
    if (file->size < 8) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "safetensors: '%s' is %zu bytes, shorter than the 8-byte header "
                            "length; the file is truncated",
                            file->name, file->size);
    }

    uint64_t header_size = 0;
    for (int i = 7; i >= 0; i--) {
        header_size = (header_size << 8) | file->bytes[i];
    }
    if (header_size > MR_SAFETENSORS_MAX_HEADER) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "safetensors: '%s': header length %" PRIu64
                            " exceeds the limit of %u bytes; the file is corrupt or not "
                            "safetensors",
                            file->name, header_size, MR_SAFETENSORS_MAX_HEADER);
    }
    if (header_size > file->size - 8) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "safetensors: '%s': header length %" PRIu64
                            " needs %" PRIu64 " bytes but the file has only %zu; the file is "
                            "truncated",
                            file->name, header_size, header_size + 8, file->size);
    }

    const uint8_t *header = file->bytes + 8;
    if (header_size < 2 || header[0] != '{') {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "safetensors: '%s': the header at file byte 8 must start with '{' "
                            "and hold a JSON object; the file is not safetensors",
                            file->name);
    }
    size_t bad = find_invalid_utf8(header, (size_t)header_size, true);
    if (bad != header_size) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "safetensors: '%s': the header has byte 0x%02x at file byte %zu, "
                            "which is a control character or not valid UTF-8 text",
                            file->name, header[bad], 8 + bad);
    }

    /* Parse a NUL-terminated copy so that cJSON never reads past the header. */
    char *text = malloc((size_t)header_size + 1);
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "safetensors: out of memory for the %" PRIu64 "-byte header of '%s'",
                            header_size, file->name);
    }
    memcpy(text, header, (size_t)header_size);
    text[header_size] = '\0';

    parser p = {file, file->size - 8 - header_size, header_size, err};
    mr_status status = parse_json(&p, text, (size_t)header_size);
    free(text);
    return status;
}

/* Allocates a handle named name for size bytes at bytes. */
static mr_safetensors *handle_create(const char *name) {
    mr_safetensors *file = calloc(1, sizeof *file);
    if (file == NULL) {
        return NULL;
    }
    size_t length = strlen(name);
    file->name = malloc(length + 1);
    if (file->name == NULL) {
        free(file);
        return NULL;
    }
    memcpy(file->name, name, length + 1);
    return file;
}

mr_status mr_safetensors_open_memory(const void *data, size_t size, const char *name,
                                     mr_safetensors **out, mr_error *err) {
    *out = NULL;
    mr_safetensors *file = handle_create(name != NULL ? name : "<memory>");
    if (file == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "safetensors: out of memory opening '%s'",
                            name != NULL ? name : "<memory>");
    }
    file->bytes = data;
    file->size = size;

    mr_status status = parse_file(file, err);
    if (status != MR_OK) {
        mr_safetensors_close(file);
        return status;
    }
    *out = file;
    return MR_OK;
}

mr_status mr_safetensors_open(const char *path, mr_safetensors **out, mr_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return mr_error_set(err, MR_ERR_IO, "safetensors: cannot open '%s': %s", path,
                            strerror(errno));
    }
    struct stat info;
    if (fstat(fd, &info) != 0) {
        int saved = errno;
        close(fd);
        return mr_error_set(err, MR_ERR_IO, "safetensors: cannot read the size of '%s': %s",
                            path, strerror(saved));
    }
    if (!S_ISREG(info.st_mode)) {
        close(fd);
        return mr_error_set(err, MR_ERR_IO,
                            "safetensors: '%s' is not a regular file; pass the path of a "
                            ".safetensors file",
                            path);
    }

    mr_safetensors *file = handle_create(path);
    if (file == NULL) {
        close(fd);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "safetensors: out of memory opening '%s'",
                            path);
    }
    file->size = (size_t)info.st_size;
    if (file->size > 0) {
        /* mmap rejects length 0, and parse_file reports an empty file itself. */
        void *mapping = mmap(NULL, file->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mapping == MAP_FAILED) {
            int saved = errno;
            close(fd);
            mr_safetensors_close(file);
            return mr_error_set(err, MR_ERR_IO, "safetensors: cannot map '%s' (%lld bytes): %s",
                                path, (long long)info.st_size, strerror(saved));
        }
        file->mapping = mapping;
        file->bytes = mapping;
    }
    close(fd);

    mr_status status = parse_file(file, err);
    if (status != MR_OK) {
        mr_safetensors_close(file);
        return status;
    }
    mr_log(MR_LOG_DEBUG, "safetensors", "opened '%s': %" PRId64 " tensors, %zu bytes", path,
           file->count, file->size);
    *out = file;
    return MR_OK;
}

void mr_safetensors_close(mr_safetensors *file) {
    if (file == NULL) {
        return;
    }
    if (file->mapping != NULL) {
        munmap(file->mapping, file->size);
    }
    cJSON_Delete(file->header);
    free(file->tensors);
    free(file->shapes);
    free(file->by_name);
    free(file->metadata_keys);
    free(file->metadata_values);
    free(file->name);
    free(file);
}

/* ------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------ */

int64_t mr_safetensors_tensor_count(const mr_safetensors *file) {
    return file->count;
}

const mr_safetensors_tensor *mr_safetensors_tensor_at(const mr_safetensors *file,
                                                      int64_t index) {
    if (index < 0 || index >= file->count) {
        return NULL;
    }
    return &file->tensors[index];
}

const mr_safetensors_tensor *mr_safetensors_tensor_find(const mr_safetensors *file,
                                                        const char *name) {
    int64_t low = 0, high = file->count;
    while (low < high) {
        int64_t middle = low + (high - low) / 2;
        const mr_safetensors_tensor *t = file->by_name[middle];
        int order = strcmp(t->name, name);
        if (order == 0) {
            return t;
        }
        if (order < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return NULL;
}

int64_t mr_safetensors_metadata_count(const mr_safetensors *file) {
    return file->metadata_count;
}

const char *mr_safetensors_metadata_get(const mr_safetensors *file, const char *key) {
    for (int64_t i = 0; i < file->metadata_count; i++) {
        if (strcmp(file->metadata_keys[i], key) == 0) {
            return file->metadata_values[i];
        }
    }
    return NULL;
}

mr_status mr_safetensors_metadata_at(const mr_safetensors *file, int64_t index,
                                     const char **key, const char **value) {
    if (index < 0 || index >= file->metadata_count) {
        *key = NULL;
        *value = NULL;
        return MR_ERR_INVALID_ARGUMENT;
    }
    *key = file->metadata_keys[index];
    *value = file->metadata_values[index];
    return MR_OK;
}

const char *mr_st_file_name(const mr_safetensors *file) {
    return file->name;
}
