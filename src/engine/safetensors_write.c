/*
 * Safetensors writer, and saving and loading engine tensors by name.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "multiround/fileio.h"
#include "multiround/safetensors.h"
#include "safetensors_internal.h"

/* A tensor waiting to be written, with its bytes already converted. */
typedef struct pending_tensor {
    char *name;
    mr_safetensors_dtype dtype;
    int ndim;
    int64_t *shape;
    uint8_t *bytes;
    uint64_t size;
} pending_tensor;

struct mr_safetensors_writer {
    pending_tensor *tensors; /* in insertion order */
    int64_t count;
    int64_t capacity;
    int64_t *slots;          /* open-addressing hash of names: tensor index or -1 */
    int64_t slot_count;      /* a power of two, at least twice count */
    char **metadata;         /* key, value, key, value, ... */
    int64_t metadata_count;  /* pairs */
    int64_t metadata_capacity;
};

mr_safetensors_writer *mr_safetensors_writer_create(void) {
    return calloc(1, sizeof(mr_safetensors_writer));
}

void mr_safetensors_writer_free(mr_safetensors_writer *writer) {
    if (writer == NULL) {
        return;
    }
    for (int64_t i = 0; i < writer->count; i++) {
        free(writer->tensors[i].name);
        free(writer->tensors[i].shape);
        free(writer->tensors[i].bytes);
    }
    for (int64_t i = 0; i < 2 * writer->metadata_count; i++) {
        free(writer->metadata[i]);
    }
    free(writer->tensors);
    free(writer->slots);
    free(writer->metadata);
    free(writer);
}

/* ------------------------------------------------------------------------
 * The name index
 * ------------------------------------------------------------------------ */

/* FNV-1a hash of a NUL-terminated string. */
static uint64_t hash_name(const char *name) {
    uint64_t hash = 1469598103934665603u;
    for (const unsigned char *c = (const unsigned char *)name; *c != '\0'; c++) {
        hash = (hash ^ *c) * 1099511628211u;
    }
    return hash;
}

/* Returns the slot that contains name, or the empty slot where it belongs. */
static int64_t find_slot(const mr_safetensors_writer *writer, const char *name) {
    uint64_t mask = (uint64_t)writer->slot_count - 1;
    uint64_t slot = hash_name(name) & mask;
    while (writer->slots[slot] >= 0 &&
           strcmp(writer->tensors[writer->slots[slot]].name, name) != 0) {
        slot = (slot + 1) & mask;
    }
    return (int64_t)slot;
}

/* Makes room for one more tensor in the array and the name index. */
static bool reserve_tensor(mr_safetensors_writer *writer) {
    if (writer->count == writer->capacity) {
        int64_t capacity = writer->capacity == 0 ? 16 : 2 * writer->capacity;
        pending_tensor *tensors = realloc(writer->tensors, (size_t)capacity * sizeof *tensors);
        if (tensors == NULL) {
            return false;
        }
        writer->tensors = tensors;
        writer->capacity = capacity;
    }

    /* Keep the index at most half full so that probes stay short. */
    if (2 * (writer->count + 1) > writer->slot_count) {
        int64_t slot_count = writer->slot_count == 0 ? 32 : 2 * writer->slot_count;
        int64_t *slots = malloc((size_t)slot_count * sizeof *slots);
        if (slots == NULL) {
            return false;
        }
        free(writer->slots);
        writer->slots = slots;
        writer->slot_count = slot_count;
        for (int64_t i = 0; i < slot_count; i++) {
            slots[i] = -1;
        }
        for (int64_t i = 0; i < writer->count; i++) {
            slots[find_slot(writer, writer->tensors[i].name)] = i;
        }
    }
    return true;
}

/* Returns a malloc'ed copy of text, or NULL. */
static char *copy_string(const char *text) {
    size_t length = strlen(text) + 1;
    char *copy = malloc(length);
    if (copy != NULL) {
        memcpy(copy, text, length);
    }
    return copy;
}

/* ------------------------------------------------------------------------
 * Adding tensors and metadata
 * ------------------------------------------------------------------------ */

/*
 * Checks name, shape and data (NULL only for an empty tensor), then
 * reserves a new entry with its name, shape and an uninitialised byte
 * buffer allocated. On success *entry points at the entry and *numel is
 * the element count. The caller fills the bytes.
 */
static mr_status add_entry(mr_safetensors_writer *writer, const char *name, int ndim,
                           const int64_t *shape, const void *data, mr_safetensors_dtype dtype,
                           pending_tensor **entry, int64_t *numel, mr_error *err) {
    if (name == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "safetensors: a tensor name is NULL");
    }
    if (!mr_st_valid_utf8(name)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor name '%s' is not valid UTF-8", name);
    }
    if (strcmp(name, "__metadata__") == 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: \"__metadata__\" is reserved for metadata and cannot "
                            "name a tensor");
    }
    if (ndim < 0 || (ndim > 0 && shape == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor '%s' has %d dimensions%s", name, ndim,
                            ndim < 0 ? "; expected 0 or more" : " but a NULL shape");
    }

    /* The byte size must fit in int64 and in a size_t allocation. */
    size_t element_size = mr_safetensors_dtype_size(dtype);
    uint64_t limit = (uint64_t)(SIZE_MAX < INT64_MAX ? SIZE_MAX : INT64_MAX) / element_size;
    bool has_zero = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "safetensors: tensor '%s' has negative dimension %d (%" PRId64
                                ")",
                                name, i, shape[i]);
        }
        has_zero = has_zero || shape[i] == 0;
    }
    uint64_t count = has_zero ? 0 : 1;
    for (int i = 0; i < ndim && count != 0; i++) {
        uint64_t dim = (uint64_t)shape[i];
        if (count > limit / dim) {
            char shape_text[128];
            mr_st_format_shape(shape_text, sizeof shape_text, ndim, shape);
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "safetensors: tensor '%s' has shape %s, too large to store",
                                name, shape_text);
        }
        count *= dim;
    }
    if (count > 0 && data == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor '%s' has %" PRIu64 " elements but NULL data",
                            name, count);
    }

    if (!reserve_tensor(writer)) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "safetensors: out of memory adding tensor '%s'", name);
    }
    int64_t slot = find_slot(writer, name);
    if (writer->slots[slot] >= 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor name '%s' was already added; names must be "
                            "unique",
                            name);
    }

    pending_tensor *t = &writer->tensors[writer->count];
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    t->size = count * element_size;
    t->name = copy_string(name);
    t->shape = malloc(((size_t)ndim + 1) * sizeof *t->shape);
    t->bytes = malloc((size_t)t->size + 1);
    if (t->name == NULL || t->shape == NULL || t->bytes == NULL) {
        free(t->name);
        free(t->shape);
        free(t->bytes);
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "safetensors: out of memory adding tensor '%s' (%" PRIu64 " bytes)",
                            name, t->size);
    }
    if (ndim > 0) {
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    }

    writer->slots[slot] = writer->count;
    writer->count++;
    *entry = t;
    *numel = (int64_t)count;
    return MR_OK;
}

mr_status mr_safetensors_writer_add_f32(mr_safetensors_writer *writer, const char *name,
                                        int ndim, const int64_t *shape, const float *data,
                                        mr_safetensors_dtype store_as, mr_error *err) {
    if (store_as != MR_SAFETENSORS_F32 && store_as != MR_SAFETENSORS_F16 &&
        store_as != MR_SAFETENSORS_BF16) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor '%s' cannot be stored as %s; float tensors "
                            "are stored as F32, F16 or BF16",
                            name != NULL ? name : "(null)", mr_safetensors_dtype_name(store_as));
    }

    pending_tensor *t = NULL;
    int64_t numel = 0;
    mr_status status = add_entry(writer, name, ndim, shape, data, store_as, &t, &numel, err);
    if (status != MR_OK) {
        return status;
    }

    /* Values are written little-endian; the reader refuses to build on
     * big-endian hosts, so a plain copy of the bits is right here. */
    if (store_as == MR_SAFETENSORS_F32) {
        if (numel > 0) {
            memcpy(t->bytes, data, (size_t)t->size);
        }
        return MR_OK;
    }
    for (int64_t i = 0; i < numel; i++) {
        uint16_t bits = store_as == MR_SAFETENSORS_F16 ? mr_f32_to_f16(data[i])
                                                       : mr_f32_to_bf16(data[i]);
        memcpy(t->bytes + 2 * i, &bits, sizeof bits);
    }
    return MR_OK;
}

mr_status mr_safetensors_writer_add_i32(mr_safetensors_writer *writer, const char *name,
                                        int ndim, const int64_t *shape, const int32_t *data,
                                        mr_error *err) {
    pending_tensor *t = NULL;
    int64_t numel = 0;
    mr_status status = add_entry(writer, name, ndim, shape, data, MR_SAFETENSORS_I32, &t,
                                 &numel, err);
    if (status != MR_OK) {
        return status;
    }
    if (numel > 0) {
        memcpy(t->bytes, data, (size_t)t->size);
    }
    return MR_OK;
}

mr_status mr_safetensors_writer_add_metadata(mr_safetensors_writer *writer, const char *key,
                                             const char *value, mr_error *err) {
    if (key == NULL || value == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: a metadata key or value is NULL");
    }
    if (!mr_st_valid_utf8(key) || !mr_st_valid_utf8(value)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: metadata entry '%s' is not valid UTF-8", key);
    }
    for (int64_t i = 0; i < writer->metadata_count; i++) {
        if (strcmp(writer->metadata[2 * i], key) == 0) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "safetensors: metadata key '%s' was already added; keys must be "
                                "unique",
                                key);
        }
    }

    if (writer->metadata_count == writer->metadata_capacity) {
        int64_t capacity = writer->metadata_capacity == 0 ? 8 : 2 * writer->metadata_capacity;
        char **metadata = realloc(writer->metadata, 2 * (size_t)capacity * sizeof *metadata);
        if (metadata == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY,
                                "safetensors: out of memory adding metadata '%s'", key);
        }
        writer->metadata = metadata;
        writer->metadata_capacity = capacity;
    }
    char *key_copy = copy_string(key);
    char *value_copy = copy_string(value);
    if (key_copy == NULL || value_copy == NULL) {
        free(key_copy);
        free(value_copy);
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "safetensors: out of memory adding metadata '%s'", key);
    }
    writer->metadata[2 * writer->metadata_count] = key_copy;
    writer->metadata[2 * writer->metadata_count + 1] = value_copy;
    writer->metadata_count++;
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * The header
 * ------------------------------------------------------------------------ */

/* A growing text buffer; ok turns false once an allocation fails. */
typedef struct text_buffer {
    char *data;
    size_t length;
    size_t capacity;
    bool ok;
} text_buffer;

static void append_bytes(text_buffer *buffer, const char *bytes, size_t length) {
    if (!buffer->ok) {
        return;
    }
    if (buffer->length + length + 1 > buffer->capacity) {
        size_t capacity = buffer->capacity == 0 ? 256 : buffer->capacity;
        while (buffer->length + length + 1 > capacity) {
            capacity *= 2;
        }
        char *data = realloc(buffer->data, capacity);
        if (data == NULL) {
            buffer->ok = false;
            return;
        }
        buffer->data = data;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
    buffer->data[buffer->length] = '\0';
}

static void append_text(text_buffer *buffer, const char *text) {
    append_bytes(buffer, text, strlen(text));
}

/* Appends text as a JSON string: quotes, backslashes and control
 * characters are escaped, and UTF-8 passes through unchanged. */
static void append_json_string(text_buffer *buffer, const char *text) {
    append_text(buffer, "\"");
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        char escape[8];
        if (*c == '"' || *c == '\\') {
            escape[0] = '\\';
            escape[1] = (char)*c;
            append_bytes(buffer, escape, 2);
        } else if (*c < 0x20) {
            snprintf(escape, sizeof escape, "\\u%04x", *c);
            append_text(buffer, escape);
        } else {
            append_bytes(buffer, (const char *)c, 1);
        }
    }
    append_text(buffer, "\"");
}

/*
 * Builds the header JSON for the writer's contents, padded with spaces to
 * a multiple of 8 bytes, in the compact layout of the reference writer:
 * {"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}
 */
static bool build_header(const mr_safetensors_writer *writer, text_buffer *header) {
    char number[48];
    append_text(header, "{");
    bool first = true;
    if (writer->metadata_count > 0) {
        append_text(header, "\"__metadata__\":{");
        for (int64_t i = 0; i < writer->metadata_count; i++) {
            if (i > 0) {
                append_text(header, ",");
            }
            append_json_string(header, writer->metadata[2 * i]);
            append_text(header, ":");
            append_json_string(header, writer->metadata[2 * i + 1]);
        }
        append_text(header, "}");
        first = false;
    }

    uint64_t offset = 0;
    for (int64_t i = 0; i < writer->count; i++) {
        const pending_tensor *t = &writer->tensors[i];
        if (!first) {
            append_text(header, ",");
        }
        first = false;
        append_json_string(header, t->name);
        append_text(header, ":{\"dtype\":");
        append_json_string(header, mr_safetensors_dtype_name(t->dtype));
        append_text(header, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(number, sizeof number, d == 0 ? "%" PRId64 : ",%" PRId64, t->shape[d]);
            append_text(header, number);
        }
        snprintf(number, sizeof number, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset,
                 offset + t->size);
        append_text(header, number);
        offset += t->size;
    }
    append_text(header, "}");

    while (header->ok && header->length % 8 != 0) {
        append_text(header, " ");
    }
    return header->ok;
}

mr_status mr_safetensors_writer_write(const mr_safetensors_writer *writer, const char *path,
                                      mr_error *err) {
    text_buffer header = {NULL, 0, 0, true};
    if (!build_header(writer, &header)) {
        free(header.data);
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "safetensors: out of memory building the header of '%s'", path);
    }
    if (header.length > MR_SAFETENSORS_MAX_HEADER) {
        mr_status status = mr_error_set(err, MR_ERR_UNSUPPORTED,
                                        "safetensors: the header of '%s' would be %zu bytes, "
                                        "above the format's limit of %u; use fewer tensors or "
                                        "shorter names",
                                        path, header.length, MR_SAFETENSORS_MAX_HEADER);
        free(header.data);
        return status;
    }

    /* 8-byte little-endian header length, then the header, then the data. */
    uint8_t length_bytes[8];
    for (int i = 0; i < 8; i++) {
        length_bytes[i] = (uint8_t)((uint64_t)header.length >> (8 * i));
    }

    mr_file_writer *file = NULL;
    mr_status status = mr_file_writer_open(path, &file, err);
    if (status == MR_OK) {
        status = mr_file_writer_write(file, length_bytes, sizeof length_bytes, err);
    }
    if (status == MR_OK) {
        status = mr_file_writer_write(file, header.data, header.length, err);
    }
    for (int64_t i = 0; i < writer->count && status == MR_OK; i++) {
        status = mr_file_writer_write(file, writer->tensors[i].bytes,
                                      (size_t)writer->tensors[i].size, err);
    }
    free(header.data);
    if (file == NULL) {
        return status;
    }
    if (status != MR_OK) {
        mr_file_writer_abort(file);
        return status;
    }

    size_t total = mr_file_writer_size(file);
    status = mr_file_writer_commit(file, err);
    if (status == MR_OK) {
        mr_log(MR_LOG_DEBUG, "safetensors", "wrote '%s': %" PRId64 " tensors, %zu bytes", path,
               writer->count, total);
    }
    return status;
}

/* ------------------------------------------------------------------------
 * Engine tensors
 * ------------------------------------------------------------------------ */

/* Copies the elements of t (any strides) in row-major order to dst, or
 * from src into t when src is not NULL. Elements are 4 bytes. */
static void copy_strided(mr_tensor *t, void *dst, const void *src) {
    uint8_t *base = t->dtype == MR_F32 ? (uint8_t *)t->data : (uint8_t *)t->idata;
    int64_t numel = mr_tensor_numel(t);
    for (int64_t i = 0; i < numel; i++) {
        /* Decompose row-major index i into the strided element offset. */
        int64_t rest = i, offset = 0;
        for (int d = t->ndim - 1; d >= 0; d--) {
            offset += (rest % t->shape[d]) * t->stride[d];
            rest /= t->shape[d];
        }
        if (src != NULL) {
            memcpy(base + 4 * offset, (const uint8_t *)src + 4 * i, 4);
        } else {
            memcpy((uint8_t *)dst + 4 * i, base + 4 * offset, 4);
        }
    }
}

/* Adds engine tensor t to writer under its name. */
static mr_status add_engine_tensor(mr_safetensors_writer *writer, mr_tensor *t, int index,
                                   mr_safetensors_dtype store_as, const char *path,
                                   mr_error *err) {
    if (t == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor %d to save in '%s' is NULL", index, path);
    }
    if (t->name[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor %d to save in '%s' has no name; set one with "
                            "mr_tensor_set_name",
                            index, path);
    }

    /* Views with gaps are gathered into a contiguous copy first. */
    int64_t numel = mr_tensor_numel(t);
    void *gathered = NULL;
    const void *values = t->dtype == MR_F32 ? (const void *)t->data : (const void *)t->idata;
    if (!mr_tensor_is_contiguous(t)) {
        gathered = malloc((size_t)numel * 4 + 1);
        if (gathered == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY,
                                "safetensors: out of memory copying tensor '%s'", t->name);
        }
        copy_strided(t, gathered, NULL);
        values = gathered;
    }

    mr_status status;
    if (t->dtype == MR_F32) {
        status = mr_safetensors_writer_add_f32(writer, t->name, t->ndim, t->shape, values,
                                               store_as, err);
    } else {
        status = mr_safetensors_writer_add_i32(writer, t->name, t->ndim, t->shape, values, err);
    }
    free(gathered);
    return status;
}

mr_status mr_safetensors_save_tensors(const char *path, mr_tensor *const *tensors, int n,
                                      const char *const *metadata, int metadata_count,
                                      mr_safetensors_dtype store_as, mr_error *err) {
    if (n < 0 || metadata_count < 0 || (n > 0 && tensors == NULL) ||
        (metadata_count > 0 && metadata == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: saving '%s' with %d tensors and %d metadata pairs "
                            "needs non-NULL arrays and counts >= 0",
                            path, n, metadata_count);
    }
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    if (writer == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "safetensors: out of memory saving '%s'",
                            path);
    }

    mr_status status = MR_OK;
    for (int i = 0; i < metadata_count && status == MR_OK; i++) {
        status = mr_safetensors_writer_add_metadata(writer, metadata[2 * i], metadata[2 * i + 1],
                                                    err);
    }
    for (int i = 0; i < n && status == MR_OK; i++) {
        status = add_engine_tensor(writer, tensors[i], i, store_as, path, err);
    }
    if (status == MR_OK) {
        status = mr_safetensors_writer_write(writer, path, err);
    }
    mr_safetensors_writer_free(writer);
    return status;
}

/* Checks that file contains t's name with t's shape and a dtype that
 * converts to t's dtype (and, for ints, values that fit int32). */
static mr_status check_loadable(const mr_safetensors *file, const mr_tensor *t, int index,
                                const mr_safetensors_tensor **found, mr_error *err) {
    const char *path = mr_st_file_name(file);
    if (t == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor %d to load from '%s' is NULL", index, path);
    }
    const mr_safetensors_tensor *stored = mr_safetensors_tensor_find(file, t->name);
    *found = stored;
    if (stored == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "safetensors: '%s' has no tensor '%s'; the file does not match "
                            "this model",
                            path, t->name);
    }

    bool same_shape = stored->ndim == t->ndim;
    for (int d = 0; same_shape && d < t->ndim; d++) {
        same_shape = stored->shape[d] == t->shape[d];
    }
    if (!same_shape) {
        char stored_text[128], expected_text[128];
        mr_st_format_shape(stored_text, sizeof stored_text, stored->ndim, stored->shape);
        mr_st_format_shape(expected_text, sizeof expected_text, t->ndim, t->shape);
        return mr_error_set(err, MR_ERR_SHAPE,
                            "safetensors: tensor '%s' has shape %s in '%s' but the model "
                            "expects %s",
                            t->name, stored_text, path, expected_text);
    }

    if (t->dtype == MR_F32) {
        mr_safetensors_dtype d = stored->dtype;
        if (d != MR_SAFETENSORS_F32 && d != MR_SAFETENSORS_F16 && d != MR_SAFETENSORS_BF16 &&
            d != MR_SAFETENSORS_F64) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "safetensors: tensor '%s' is %s in '%s', which cannot be loaded "
                                "into a float tensor (F32, F16, BF16 or F64 expected)",
                                t->name, mr_safetensors_dtype_name(d), path);
        }
        return MR_OK;
    }
    /* Scanning the values now keeps a failed load from changing anything. */
    return mr_st_convert_i32(file, stored, NULL, err);
}

mr_status mr_safetensors_load_tensors(const char *path, mr_tensor *const *tensors, int n,
                                      mr_error *err) {
    if (n < 0 || (n > 0 && tensors == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "safetensors: loading '%s' needs a tensor array and n >= 0 (n = %d)",
                            path, n);
    }
    mr_safetensors *file = NULL;
    mr_status status = mr_safetensors_open(path, &file, err);
    if (status != MR_OK) {
        return status;
    }

    /* First check every tensor, so that a mismatch changes nothing. */
    for (int i = 0; i < n && status == MR_OK; i++) {
        const mr_safetensors_tensor *stored = NULL;
        status = check_loadable(file, tensors[i], i, &stored, err);
    }

    for (int i = 0; i < n && status == MR_OK; i++) {
        mr_tensor *t = tensors[i];
        int64_t numel = mr_tensor_numel(t);
        bool contiguous = mr_tensor_is_contiguous(t);
        void *staging = NULL;
        if (!contiguous) {
            staging = malloc((size_t)numel * 4 + 1);
            if (staging == NULL) {
                status = mr_error_set(err, MR_ERR_NO_MEMORY,
                                      "safetensors: out of memory loading tensor '%s'", t->name);
                break;
            }
        }

        if (t->dtype == MR_F32) {
            float *dst = contiguous ? t->data : staging;
            status = mr_safetensors_read_f32(file, t->name, dst, numel, err);
        } else {
            int32_t *dst = contiguous ? t->idata : staging;
            status = mr_safetensors_read_i32(file, t->name, dst, numel, err);
        }
        if (status == MR_OK && !contiguous) {
            copy_strided(t, NULL, staging);
        }
        free(staging);
    }

    mr_safetensors_close(file);
    return status;
}
