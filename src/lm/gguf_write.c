/*
 * GGUF writer: collects key/value pairs and tensors, then writes a GGUF v3
 * file atomically through mr_file_writer. Each value is kept encoded as it
 * will appear in the file (the bytes after its u32 type), so copying a
 * pair from an open file is a byte copy.
 *
 * Layout written: header, key/value pairs in the order first set, tensor
 * infos in the order added, zero padding to 32 bytes, then each tensor's
 * data padded with zeros to a multiple of 32 bytes, as ggml writes it.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_internal.h"
#include "multiround/fileio.h"
#include "multiround/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_write.c writes little-endian values with memcpy and needs a little-endian host"
#endif

#define ALIGNMENT MR_GGUF_DEFAULT_ALIGNMENT

typedef struct writer_kv {
    char *key;
    mr_gguf_type type;
    uint8_t *value; /* encoded bytes after the u32 type */
    size_t value_len;
} writer_kv;

typedef struct writer_tensor {
    char *name;
    mr_qtype type;
    int n_dims;
    int64_t ne[4];
    const void *data; /* borrowed */
    size_t size;
} writer_tensor;

struct mr_gguf_writer {
    writer_kv *kvs;
    int64_t kv_count;
    int64_t kv_capacity;
    writer_tensor *tensors;
    int64_t tensor_count;
    int64_t tensor_capacity;
};

mr_gguf_writer *mr_gguf_writer_create(void) {
    return calloc(1, sizeof(mr_gguf_writer));
}

void mr_gguf_writer_free(mr_gguf_writer *w) {
    if (w == NULL) {
        return;
    }
    for (int64_t i = 0; i < w->kv_count; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value);
    }
    for (int64_t i = 0; i < w->tensor_count; i++) {
        free(w->tensors[i].name);
    }
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* ------------------------------------------------------------------------
 * Key/value pairs
 * ------------------------------------------------------------------------ */

static int64_t find_kv(const mr_gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->kv_count; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            return i;
        }
    }
    return -1;
}

/* Checks that key may be set by a caller. */
static mr_status check_key(const mr_gguf_writer *w, const char *key, mr_error *err) {
    if (w == NULL || key == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "gguf writer: the writer or key is NULL");
    }
    size_t len = strlen(key);
    if (len == 0 || len > MR_GGUF_MAX_NAME) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: key length %zu is invalid, expected 1 to %u bytes", len,
                            MR_GGUF_MAX_NAME);
    }
    if (strcmp(key, "general.alignment") == 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: key 'general.alignment' is reserved; the writer always "
                            "aligns data to %u bytes",
                            ALIGNMENT);
    }
    return MR_OK;
}

/* Stores key with an encoded value (taking ownership of value), replacing
 * an earlier value of the same key in place. */
static mr_status put_kv(mr_gguf_writer *w, const char *key, mr_gguf_type type, uint8_t *value,
                        size_t value_len, mr_error *err) {
    int64_t i = find_kv(w, key);
    if (i >= 0) {
        free(w->kvs[i].value);
        w->kvs[i].type = type;
        w->kvs[i].value = value;
        w->kvs[i].value_len = value_len;
        return MR_OK;
    }

    if (w->kv_count == w->kv_capacity) {
        int64_t capacity = w->kv_capacity > 0 ? 2 * w->kv_capacity : 16;
        writer_kv *grown = realloc(w->kvs, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            free(value);
            return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory adding key '%s'",
                                key);
        }
        w->kvs = grown;
        w->kv_capacity = capacity;
    }
    char *key_copy = strdup(key);
    if (key_copy == NULL) {
        free(value);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory adding key '%s'", key);
    }
    w->kvs[w->kv_count++] = (writer_kv){key_copy, type, value, value_len};
    return MR_OK;
}

/* Encodes a scalar of size bytes and stores it under key. */
static mr_status set_scalar(mr_gguf_writer *w, const char *key, mr_gguf_type type,
                            const void *v, size_t size, mr_error *err) {
    mr_status status = check_key(w, key, err);
    if (status != MR_OK) {
        return status;
    }
    uint8_t *value = malloc(size);
    if (value == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory setting '%s'", key);
    }
    memcpy(value, v, size);
    return put_kv(w, key, type, value, size, err);
}

mr_status mr_gguf_writer_set_u32(mr_gguf_writer *w, const char *key, uint32_t v, mr_error *err) {
    return set_scalar(w, key, MR_GGUF_U32, &v, sizeof v, err);
}

mr_status mr_gguf_writer_set_f32(mr_gguf_writer *w, const char *key, float v, mr_error *err) {
    return set_scalar(w, key, MR_GGUF_F32, &v, sizeof v, err);
}

mr_status mr_gguf_writer_set_bool(mr_gguf_writer *w, const char *key, bool v, mr_error *err) {
    uint8_t byte = v ? 1 : 0;
    return set_scalar(w, key, MR_GGUF_BOOL, &byte, 1, err);
}

mr_status mr_gguf_writer_set_string(mr_gguf_writer *w, const char *key, const char *v,
                                    mr_error *err) {
    if (v == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "gguf writer: the value of '%s' is NULL",
                            key != NULL ? key : "(null)");
    }
    mr_status status = check_key(w, key, err);
    if (status != MR_OK) {
        return status;
    }

    uint64_t len = strlen(v);
    uint8_t *value = malloc(8 + (size_t)len);
    if (value == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory setting '%s'", key);
    }
    memcpy(value, &len, 8);
    memcpy(value + 8, v, (size_t)len);
    return put_kv(w, key, MR_GGUF_STRING, value, 8 + (size_t)len, err);
}

mr_status mr_gguf_writer_set_array(mr_gguf_writer *w, const char *key, mr_gguf_type elem_type,
                                   const void *data, int64_t count, mr_error *err) {
    mr_status status = check_key(w, key, err);
    if (status != MR_OK) {
        return status;
    }
    size_t elem_size = mr_gguf_scalar_size(elem_type);
    if (elem_size == 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: key '%s': element type %d is not numeric or bool; use "
                            "mr_gguf_writer_set_strings for strings",
                            key, (int)elem_type);
    }
    if (count < 0 || (uint64_t)count > (SIZE_MAX - 12) / elem_size || (count > 0 && data == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: key '%s': array of %" PRId64 " elements at %p is invalid",
                            key, count, data);
    }
    if (elem_type == MR_GGUF_BOOL) {
        const uint8_t *bytes = data;
        for (int64_t j = 0; j < count; j++) {
            if (bytes[j] > 1) {
                return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                    "gguf writer: key '%s': bool element %" PRId64
                                    " is %u, expected 0 or 1",
                                    key, j, bytes[j]);
            }
        }
    }

    size_t data_len = (size_t)count * elem_size;
    uint8_t *value = malloc(12 + data_len);
    if (value == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory setting '%s'", key);
    }
    uint32_t type = (uint32_t)elem_type;
    uint64_t n = (uint64_t)count;
    memcpy(value, &type, 4);
    memcpy(value + 4, &n, 8);
    if (data_len > 0) {
        memcpy(value + 12, data, data_len);
    }
    return put_kv(w, key, MR_GGUF_ARRAY, value, 12 + data_len, err);
}

mr_status mr_gguf_writer_set_strings(mr_gguf_writer *w, const char *key, const char *const *v,
                                     const size_t *lens, int64_t count, mr_error *err) {
    mr_status status = check_key(w, key, err);
    if (status != MR_OK) {
        return status;
    }
    if (count < 0 || (count > 0 && v == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: key '%s': string array of %" PRId64 " elements is invalid",
                            key, count);
    }

    /* Sum the encoded size first: a u32 type, a u64 count, then each
     * string's u64 length and bytes. */
    size_t total = 12;
    for (int64_t j = 0; j < count; j++) {
        if (v[j] == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "gguf writer: key '%s': string %" PRId64 " is NULL", key, j);
        }
        size_t len = lens != NULL ? lens[j] : strlen(v[j]);
        if (len > SIZE_MAX - total - 8) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "gguf writer: key '%s': the strings are too long", key);
        }
        total += 8 + len;
    }

    uint8_t *value = malloc(total);
    if (value == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory setting '%s'", key);
    }
    uint32_t type = MR_GGUF_STRING;
    uint64_t n = (uint64_t)count;
    memcpy(value, &type, 4);
    memcpy(value + 4, &n, 8);
    size_t pos = 12;
    for (int64_t j = 0; j < count; j++) {
        uint64_t len = lens != NULL ? lens[j] : strlen(v[j]);
        memcpy(value + pos, &len, 8);
        if (len > 0) {
            memcpy(value + pos + 8, v[j], (size_t)len);
        }
        pos += 8 + (size_t)len;
    }
    return put_kv(w, key, MR_GGUF_ARRAY, value, total, err);
}

mr_status mr_gguf_writer_copy_kv(mr_gguf_writer *w, const mr_gguf *from, mr_error *err) {
    if (w == NULL || from == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "gguf writer: the writer or file is NULL");
    }
    for (int64_t i = 0; i < mr_gguf_kv_count(from); i++) {
        const char *key = mr_gguf_kv_key(from, i);
        if (find_kv(w, key) >= 0 || strcmp(key, "general.alignment") == 0) {
            continue;
        }

        const uint8_t *bytes = NULL;
        size_t len = 0;
        mr_gguf_kv_encoded(from, i, &bytes, &len);
        uint8_t *value = malloc(len > 0 ? len : 1);
        if (value == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory copying '%s'",
                                key);
        }
        memcpy(value, bytes, len);
        mr_status status = put_kv(w, key, mr_gguf_kv_type(from, i), value, len, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------ */

mr_status mr_gguf_writer_add_tensor(mr_gguf_writer *w, const char *name, mr_qtype type,
                                    int n_dims, const int64_t *ne, const void *data,
                                    mr_error *err) {
    if (w == NULL || name == NULL || ne == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: the writer, tensor name or dimensions are NULL");
    }
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > MR_GGUF_MAX_NAME) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: tensor name length %zu is invalid, expected 1 to %u bytes",
                            name_len, MR_GGUF_MAX_NAME);
    }
    if (!mr_qtype_known((int)type)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: tensor '%s' has unknown type %d", name, (int)type);
    }
    if (n_dims < 1 || n_dims > 4) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: tensor '%s' has %d dimensions, expected 1 to 4", name,
                            n_dims);
    }
    for (int64_t i = 0; i < w->tensor_count; i++) {
        if (strcmp(w->tensors[i].name, name) == 0) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "gguf writer: tensor '%s' was already added", name);
        }
    }

    /* size = row bytes * rows, checked for overflow. */
    int block = mr_qtype_block_size(type);
    if (ne[0] < 0 || ne[0] % block != 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: tensor '%s' has ne[0] = %" PRId64 ", expected a "
                            "non-negative multiple of the %s block size %d",
                            name, ne[0], mr_qtype_name(type), block);
    }
    size_t size = mr_qtype_row_bytes(type, ne[0]);
    if (size == 0 && ne[0] > 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: tensor '%s' has ne[0] = %" PRId64 ", too large for memory",
                            name, ne[0]);
    }
    for (int d = 1; d < n_dims; d++) {
        if (ne[d] < 0 || (ne[d] > 0 && size > SIZE_MAX / (uint64_t)ne[d])) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "gguf writer: tensor '%s' has invalid ne[%d] = %" PRId64, name, d,
                                ne[d]);
        }
        size *= (size_t)ne[d];
    }
    if (data == NULL && size > 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf writer: tensor '%s' has %zu bytes but data is NULL", name, size);
    }

    if (w->tensor_count == w->tensor_capacity) {
        int64_t capacity = w->tensor_capacity > 0 ? 2 * w->tensor_capacity : 16;
        writer_tensor *grown = realloc(w->tensors, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY,
                                "gguf writer: out of memory adding tensor '%s'", name);
        }
        w->tensors = grown;
        w->tensor_capacity = capacity;
    }
    char *name_copy = strdup(name);
    if (name_copy == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf writer: out of memory adding tensor '%s'",
                            name);
    }
    writer_tensor *t = &w->tensors[w->tensor_count++];
    *t = (writer_tensor){.name = name_copy, .type = type, .n_dims = n_dims, .data = data,
                         .size = size};
    for (int d = 0; d < 4; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

static size_t padding_to_alignment(uint64_t pos) {
    return (size_t)((ALIGNMENT - pos % ALIGNMENT) % ALIGNMENT);
}

static mr_status write_u32(mr_file_writer *out, uint32_t v, mr_error *err) {
    return mr_file_writer_write(out, &v, sizeof v, err);
}

static mr_status write_u64(mr_file_writer *out, uint64_t v, mr_error *err) {
    return mr_file_writer_write(out, &v, sizeof v, err);
}

static mr_status write_string(mr_file_writer *out, const char *s, mr_error *err) {
    uint64_t len = strlen(s);
    mr_status status = write_u64(out, len, err);
    return status != MR_OK ? status : mr_file_writer_write(out, s, (size_t)len, err);
}

/* Writes the header, pairs and tensor infos; the first error sticks in
 * the file writer, so the steps need not be checked one by one. */
static mr_status write_header(const mr_gguf_writer *w, mr_file_writer *out, mr_error *err) {
    mr_file_writer_write(out, MR_GGUF_MAGIC, 4, err);
    write_u32(out, 3, err);
    write_u64(out, (uint64_t)w->tensor_count, err);
    write_u64(out, (uint64_t)w->kv_count, err);

    for (int64_t i = 0; i < w->kv_count; i++) {
        const writer_kv *kv = &w->kvs[i];
        write_string(out, kv->key, err);
        write_u32(out, (uint32_t)kv->type, err);
        mr_file_writer_write(out, kv->value, kv->value_len, err);
    }

    uint64_t offset = 0;
    for (int64_t i = 0; i < w->tensor_count; i++) {
        const writer_tensor *t = &w->tensors[i];
        write_string(out, t->name, err);
        write_u32(out, (uint32_t)t->n_dims, err);
        for (int d = 0; d < t->n_dims; d++) {
            write_u64(out, (uint64_t)t->ne[d], err);
        }
        write_u32(out, (uint32_t)t->type, err);
        write_u64(out, offset, err);
        offset += t->size + padding_to_alignment(t->size);
    }

    static const uint8_t zeros[ALIGNMENT] = {0};
    return mr_file_writer_write(out, zeros, padding_to_alignment(mr_file_writer_size(out)), err);
}

mr_status mr_gguf_writer_write(mr_gguf_writer *w, const char *path, mr_error *err) {
    if (w == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "gguf writer: the writer is NULL");
    }
    mr_file_writer *out = NULL;
    mr_status status = mr_file_writer_open(path, &out, err);
    if (status != MR_OK) {
        return status;
    }

    status = write_header(w, out, err);
    static const uint8_t zeros[ALIGNMENT] = {0};
    for (int64_t i = 0; i < w->tensor_count && status == MR_OK; i++) {
        const writer_tensor *t = &w->tensors[i];
        if (t->size > 0) {
            status = mr_file_writer_write(out, t->data, t->size, err);
        }
        if (status == MR_OK) {
            status = mr_file_writer_write(out, zeros, padding_to_alignment(t->size), err);
        }
    }
    if (status != MR_OK) {
        mr_file_writer_abort(out);
        return status;
    }
    return mr_file_writer_commit(out, err);
}
