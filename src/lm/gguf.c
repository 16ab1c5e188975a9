/*
 * GGUF reader: maps a file, validates the whole header and looks up
 * keys and tensors. The writer is in gguf_write.c.
 *
 * Every read goes through a bounds-checked cursor, and every count is
 * compared with the bytes left in the file before anything is allocated
 * for it, so a hostile header can neither read past the mapping nor make
 * the reader allocate more than a small multiple of the file size.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_internal.h"
#include "multiround/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian values with memcpy and needs a little-endian host"
#endif

/* Smallest encodings in bytes, which bound counts by the bytes left. A
 * pair has at least a key length (8), a value type (4) and a 1-byte
 * value. A tensor info has at least a name length (8), n_dims (4), one
 * dimension (8), a type (4) and an offset (8). */
#define MIN_KV_BYTES 13u
#define MIN_TENSOR_INFO_BYTES 32u

/* One key/value pair. Offsets are from the start of the file. */
typedef struct gguf_kv {
    char *key;               /* NUL-terminated copy */
    mr_gguf_type type;
    size_t value_offset;     /* first byte after the u32 type */
    size_t value_end;        /* one past the value's last byte */
    mr_gguf_type elem_type;  /* arrays only */
    int64_t count;           /* arrays only */
    size_t *string_offsets;  /* string arrays only: where each u64 length starts */
} gguf_kv;

struct mr_gguf {
    char *name;              /* path, or the caller's name for memory */
    const uint8_t *bytes;    /* the whole file */
    size_t size;
    void *mapping;           /* NULL when the caller owns the bytes */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    gguf_kv *kvs;            /* in file order */
    int64_t kv_count;
    int64_t *kvs_by_key;     /* indices sorted by key */
    mr_gguf_tensor *tensors; /* in file order */
    int64_t tensor_count;
    int64_t *tensors_by_name;
};

/* A bounds-checked cursor over the file. */
typedef struct parser {
    mr_gguf *file;
    size_t pos;
    mr_error *err;
} parser;

const char *mr_gguf_type_name(mr_gguf_type type) {
    static const char *const names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    if ((unsigned)type < sizeof names / sizeof names[0]) {
        return names[type];
    }
    return "?";
}

size_t mr_gguf_scalar_size(mr_gguf_type type) {
    switch (type) {
    case MR_GGUF_U8:
    case MR_GGUF_I8:
    case MR_GGUF_BOOL: return 1;
    case MR_GGUF_U16:
    case MR_GGUF_I16: return 2;
    case MR_GGUF_U32:
    case MR_GGUF_I32:
    case MR_GGUF_F32: return 4;
    case MR_GGUF_U64:
    case MR_GGUF_I64:
    case MR_GGUF_F64: return 8;
    case MR_GGUF_STRING:
    case MR_GGUF_ARRAY: return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Cursor
 * ------------------------------------------------------------------------ */

/* Stores "gguf: NAME: MESSAGE" with status in the parser's error. */
static mr_status fail(parser *p, mr_status status, const char *fmt, ...) MR_PRINTF(3, 4);
static mr_status fail(parser *p, mr_status status, const char *fmt, ...) {
    char message[MR_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    return mr_error_set(p->err, status, "gguf: %s: %s", p->file->name, message);
}

static size_t bytes_left(const parser *p) {
    return p->file->size - p->pos;
}

/* Copies n bytes at the cursor into out and advances, or fails naming
 * what was expected there. */
static mr_status read_bytes(parser *p, void *out, size_t n, const char *what) {
    if (bytes_left(p) < n) {
        return fail(p, MR_ERR_FORMAT,
                    "file truncated: expected %s (%zu bytes) at offset %zu, but the file ends "
                    "at byte %zu",
                    what, n, p->pos, p->file->size);
    }
    memcpy(out, p->file->bytes + p->pos, n);
    p->pos += n;
    return MR_OK;
}

static mr_status read_u32(parser *p, uint32_t *out, const char *what) {
    return read_bytes(p, out, sizeof *out, what);
}

static mr_status read_u64(parser *p, uint64_t *out, const char *what) {
    return read_bytes(p, out, sizeof *out, what);
}

/* Reads a string's u64 length, checks that its bytes lie in the file and
 * stores where they start. The cursor moves past the bytes. */
static mr_status read_string(parser *p, size_t *start, uint64_t *len, const char *what) {
    size_t length_offset = p->pos;
    mr_status status = read_u64(p, len, what);
    if (status != MR_OK) {
        return status;
    }
    if (*len > bytes_left(p)) {
        return fail(p, MR_ERR_FORMAT,
                    "%s at offset %zu has length %" PRIu64 ", but only %zu bytes follow",
                    what, length_offset, *len, bytes_left(p));
    }
    *start = p->pos;
    p->pos += (size_t)*len;
    return MR_OK;
}

/* Reads a key or tensor name into a new NUL-terminated copy. */
static mr_status read_name(parser *p, char **out, const char *what) {
    size_t offset = p->pos;
    size_t start = 0;
    uint64_t len = 0;
    mr_status status = read_string(p, &start, &len, what);
    if (status != MR_OK) {
        return status;
    }
    if (len == 0 || len > MR_GGUF_MAX_NAME) {
        return fail(p, MR_ERR_FORMAT, "%s at offset %zu has length %" PRIu64
                    ", expected 1 to %u bytes", what, offset, len, MR_GGUF_MAX_NAME);
    }
    if (memchr(p->file->bytes + start, '\0', (size_t)len) != NULL) {
        return fail(p, MR_ERR_FORMAT, "%s at offset %zu contains a NUL byte", what, offset);
    }

    *out = malloc((size_t)len + 1);
    if (*out == NULL) {
        return fail(p, MR_ERR_NO_MEMORY, "out of memory copying the %s at offset %zu", what,
                    offset);
    }
    memcpy(*out, p->file->bytes + start, (size_t)len);
    (*out)[len] = '\0';
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Key/value pairs
 * ------------------------------------------------------------------------ */

/* Reads a value type and checks that it is one of the specification's. */
static mr_status read_type(parser *p, mr_gguf_type *out, const char *key, const char *what) {
    size_t offset = p->pos;
    uint32_t raw = 0;
    mr_status status = read_u32(p, &raw, what);
    if (status != MR_OK) {
        return status;
    }
    if (raw > MR_GGUF_F64) {
        return fail(p, MR_ERR_FORMAT, "key '%s': %s at offset %zu is %" PRIu32
                    ", expected 0 to 12", key, what, offset, raw);
    }
    *out = (mr_gguf_type)raw;
    return MR_OK;
}

/* Checks and skips count scalar elements of type at the cursor. Bools
 * must be 0 or 1. */
static mr_status skip_scalars(parser *p, mr_gguf_type type, uint64_t count, const char *key) {
    size_t elem_size = mr_gguf_scalar_size(type);
    if (count > bytes_left(p) / elem_size) {
        return fail(p, MR_ERR_FORMAT,
                    "key '%s': %" PRIu64 " values of type %s at offset %zu need %" PRIu64
                    " bytes, but only %zu bytes follow",
                    key, count, mr_gguf_type_name(type), p->pos, count * elem_size,
                    bytes_left(p));
    }

    if (type == MR_GGUF_BOOL) {
        for (uint64_t j = 0; j < count; j++) {
            uint8_t value = p->file->bytes[p->pos + j];
            if (value > 1) {
                return fail(p, MR_ERR_FORMAT, "key '%s': bool at offset %zu is %u, expected 0 or 1",
                            key, p->pos + (size_t)j, value);
            }
        }
    }
    p->pos += (size_t)count * elem_size;
    return MR_OK;
}

/* Reads an array value: element type, count and elements. String arrays
 * get a table of where each string starts. */
static mr_status parse_array(parser *p, gguf_kv *kv) {
    size_t type_offset = p->pos;
    mr_status status = read_type(p, &kv->elem_type, kv->key, "array element type");
    if (status != MR_OK) {
        return status;
    }
    if (kv->elem_type == MR_GGUF_ARRAY) {
        return fail(p, MR_ERR_UNSUPPORTED,
                    "key '%s' at offset %zu is an array of arrays, which multiround does not read",
                    kv->key, type_offset);
    }

    size_t count_offset = p->pos;
    uint64_t count = 0;
    status = read_u64(p, &count, "array length");
    if (status != MR_OK) {
        return status;
    }
    if (kv->elem_type != MR_GGUF_STRING) {
        status = skip_scalars(p, kv->elem_type, count, kv->key);
        kv->count = (int64_t)count; /* at most the file size once skip_scalars passes */
        return status;
    }

    /* Each string takes at least its 8-byte length. */
    if (count > bytes_left(p) / 8) {
        return fail(p, MR_ERR_FORMAT,
                    "key '%s': array length %" PRIu64 " at offset %zu is more strings than "
                    "the %zu bytes that follow can hold",
                    kv->key, count, count_offset, bytes_left(p));
    }
    kv->count = (int64_t)count;
    kv->string_offsets = malloc(((size_t)count + 1) * sizeof *kv->string_offsets);
    if (kv->string_offsets == NULL) {
        return fail(p, MR_ERR_NO_MEMORY, "out of memory indexing %" PRIu64 " strings of key '%s'",
                    count, kv->key);
    }
    for (uint64_t j = 0; j < count; j++) {
        kv->string_offsets[j] = p->pos;
        size_t start = 0;
        uint64_t len = 0;
        status = read_string(p, &start, &len, "array string");
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Reads one pair: key, value type and value. */
static mr_status parse_kv(parser *p, gguf_kv *kv) {
    mr_status status = read_name(p, &kv->key, "key");
    if (status != MR_OK) {
        return status;
    }
    status = read_type(p, &kv->type, kv->key, "value type");
    if (status != MR_OK) {
        return status;
    }

    kv->value_offset = p->pos;
    if (kv->type == MR_GGUF_STRING) {
        size_t start = 0;
        uint64_t len = 0;
        status = read_string(p, &start, &len, "string value");
    } else if (kv->type == MR_GGUF_ARRAY) {
        status = parse_array(p, kv);
    } else {
        status = skip_scalars(p, kv->type, 1, kv->key);
    }
    kv->value_end = p->pos;
    return status;
}

/* Applies general.alignment if present: a u32 power of two. */
static mr_status read_alignment(parser *p) {
    mr_gguf *file = p->file;
    file->alignment = MR_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = mr_gguf_find_key(file, "general.alignment");
    if (i < 0) {
        return MR_OK;
    }

    const gguf_kv *kv = &file->kvs[i];
    if (kv->type != MR_GGUF_U32) {
        return fail(p, MR_ERR_FORMAT, "key 'general.alignment' at offset %zu has type %s, expected u32",
                    kv->value_offset, mr_gguf_type_name(kv->type));
    }
    uint32_t alignment = 0;
    memcpy(&alignment, file->bytes + kv->value_offset, sizeof alignment);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        return fail(p, MR_ERR_FORMAT,
                    "key 'general.alignment' at offset %zu is %" PRIu32
                    ", expected a power of two",
                    kv->value_offset, alignment);
    }
    file->alignment = alignment;
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Lookup tables
 * ------------------------------------------------------------------------ */

/* qsort has no context argument, so the comparators read the file being
 * sorted from this thread-local pointer. */
static _Thread_local const mr_gguf *sorting_file;

static int compare_kv_keys(const void *a, const void *b) {
    const gguf_kv *kvs = sorting_file->kvs;
    return strcmp(kvs[*(const int64_t *)a].key, kvs[*(const int64_t *)b].key);
}

static int compare_tensor_names(const void *a, const void *b) {
    const mr_gguf_tensor *tensors = sorting_file->tensors;
    return strcmp(tensors[*(const int64_t *)a].name, tensors[*(const int64_t *)b].name);
}

static int compare_tensor_offsets(const void *a, const void *b) {
    const mr_gguf_tensor *tensors = sorting_file->tensors;
    uint64_t x = tensors[*(const int64_t *)a].offset;
    uint64_t y = tensors[*(const int64_t *)b].offset;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* Returns a new array of the indices 0..count-1 sorted by compare. */
static int64_t *sorted_indices(const mr_gguf *file, int64_t count,
                               int (*compare)(const void *, const void *)) {
    int64_t *indices = malloc((size_t)(count > 0 ? count : 1) * sizeof *indices);
    if (indices == NULL) {
        return NULL;
    }
    for (int64_t i = 0; i < count; i++) {
        indices[i] = i;
    }
    sorting_file = file;
    qsort(indices, (size_t)count, sizeof *indices, compare);
    sorting_file = NULL;
    return indices;
}

/* Sorts the keys and rejects a key that occurs twice. */
static mr_status index_keys(parser *p) {
    mr_gguf *file = p->file;
    file->kvs_by_key = sorted_indices(file, file->kv_count, compare_kv_keys);
    if (file->kvs_by_key == NULL) {
        return fail(p, MR_ERR_NO_MEMORY, "out of memory indexing %" PRId64 " keys", file->kv_count);
    }
    for (int64_t i = 1; i < file->kv_count; i++) {
        const gguf_kv *a = &file->kvs[file->kvs_by_key[i - 1]];
        const gguf_kv *b = &file->kvs[file->kvs_by_key[i]];
        if (strcmp(a->key, b->key) == 0) {
            const gguf_kv *later = a->value_offset > b->value_offset ? a : b;
            return fail(p, MR_ERR_FORMAT, "key '%s' occurs twice; the second copy's value is at offset %zu",
                        a->key, later->value_offset);
        }
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Tensor infos
 * ------------------------------------------------------------------------ */

/* Reads one tensor info and checks its dimensions and type; data ranges
 * are checked once the data section's start is known. */
static mr_status parse_tensor_info(parser *p, mr_gguf_tensor *t) {
    size_t info_offset = p->pos;
    char *name = NULL;
    mr_status status = read_name(p, &name, "tensor name");
    if (status != MR_OK) {
        return status;
    }
    t->name = name;

    size_t dims_offset = p->pos;
    uint32_t n_dims = 0;
    status = read_u32(p, &n_dims, "tensor dimension count");
    if (status != MR_OK) {
        return status;
    }
    if (n_dims < 1 || n_dims > 4) {
        return fail(p, MR_ERR_FORMAT, "tensor '%s' at offset %zu has %" PRIu32
                    " dimensions, expected 1 to 4", name, dims_offset, n_dims);
    }
    t->n_dims = (int)n_dims;

    /* Dimensions of 0 are allowed. The product of the nonzero dimensions
     * must fit int64_t, so that no partial product of ne overflows. */
    uint64_t elements = 1;
    uint64_t nonzero_product = 1;
    for (int d = 0; d < 4; d++) {
        t->ne[d] = 1;
    }
    for (uint32_t d = 0; d < n_dims; d++) {
        size_t ne_offset = p->pos;
        uint64_t ne = 0;
        status = read_u64(p, &ne, "tensor dimension");
        if (status != MR_OK) {
            return status;
        }
        if (ne > (uint64_t)INT64_MAX || (ne != 0 && nonzero_product > (uint64_t)INT64_MAX / ne)) {
            return fail(p, MR_ERR_FORMAT, "tensor '%s': dimension %" PRIu32 " at offset %zu is %"
                        PRIu64 ", which makes the product of the dimensions overflow 64 bits",
                        name, d, ne_offset, ne);
        }
        elements *= ne;
        nonzero_product *= ne != 0 ? ne : 1;
        t->ne[d] = (int64_t)ne;
    }

    size_t type_offset = p->pos;
    uint32_t type = 0;
    status = read_u32(p, &type, "tensor type");
    if (status != MR_OK) {
        return status;
    }
    if (type > (uint32_t)INT32_MAX || !mr_qtype_known((int)type)) {
        return fail(p, MR_ERR_UNSUPPORTED,
                    "tensor '%s' at offset %zu has type %" PRIu32 ", which multiround does not "
                    "read; convert it to f32, f16, bf16, q8_0 or q4_0",
                    name, type_offset, type);
    }
    t->type = (mr_qtype)type;

    int block = mr_qtype_block_size(t->type);
    if (t->ne[0] % block != 0) {
        return fail(p, MR_ERR_FORMAT,
                    "tensor '%s' at offset %zu has ne[0] = %" PRId64 ", which is not a multiple "
                    "of the %s block size %d",
                    name, info_offset, t->ne[0], mr_qtype_name(t->type), block);
    }
    /* bytes = row bytes * rows, where rows = elements / ne[0]. */
    uint64_t blocks = (uint64_t)(t->ne[0] / block);
    uint64_t rows = t->ne[0] == 0 ? 0 : elements / (uint64_t)t->ne[0];
    uint64_t block_bytes = mr_qtype_block_bytes(t->type);
    uint64_t row_bytes = blocks * block_bytes;
    if (blocks > (uint64_t)SIZE_MAX / block_bytes ||
        (rows != 0 && row_bytes > (uint64_t)SIZE_MAX / rows)) {
        return fail(p, MR_ERR_FORMAT, "tensor '%s' at offset %zu is larger than memory can address",
                    name, info_offset);
    }
    t->size = (size_t)(row_bytes * rows);

    return read_u64(p, &t->offset, "tensor data offset");
}

/* Places every tensor in the data section: aligned, inside the file and
 * not overlapping another. */
static mr_status place_tensors(parser *p) {
    mr_gguf *file = p->file;
    if (file->tensor_count == 0) {
        return MR_OK;
    }
    if (file->data_offset > file->size) {
        return fail(p, MR_ERR_FORMAT,
                    "the data section should start at offset %" PRIu64 " (the header ends at "
                    "%zu, aligned to %" PRIu32 "), but the file ends at byte %zu",
                    file->data_offset, p->pos, file->alignment, file->size);
    }

    uint64_t data_size = file->size - file->data_offset;
    for (int64_t i = 0; i < file->tensor_count; i++) {
        mr_gguf_tensor *t = &file->tensors[i];
        if (t->offset % file->alignment != 0) {
            return fail(p, MR_ERR_FORMAT,
                        "tensor '%s' has data offset %" PRIu64 ", which is not a multiple of "
                        "the alignment %" PRIu32,
                        t->name, t->offset, file->alignment);
        }
        if (t->offset > data_size || t->size > data_size - t->offset) {
            return fail(p, MR_ERR_FORMAT,
                        "tensor '%s' needs bytes %" PRIu64 " to %" PRIu64 " of the data section "
                        "at offset %" PRIu64 ", which lies past the end of the file at byte %zu",
                        t->name, t->offset, t->offset + (uint64_t)t->size, file->data_offset,
                        file->size);
        }
        t->data = file->bytes + file->data_offset + t->offset;
    }

    int64_t *by_offset = sorted_indices(file, file->tensor_count, compare_tensor_offsets);
    if (by_offset == NULL) {
        return fail(p, MR_ERR_NO_MEMORY, "out of memory sorting %" PRId64 " tensors",
                    file->tensor_count);
    }
    mr_status status = MR_OK;
    for (int64_t i = 1; i < file->tensor_count && status == MR_OK; i++) {
        const mr_gguf_tensor *a = &file->tensors[by_offset[i - 1]];
        const mr_gguf_tensor *b = &file->tensors[by_offset[i]];
        if (a->offset + a->size > b->offset) {
            status = fail(p, MR_ERR_FORMAT,
                          "tensors '%s' (data offset %" PRIu64 ", %zu bytes) and '%s' (data "
                          "offset %" PRIu64 ") overlap",
                          a->name, a->offset, a->size, b->name, b->offset);
        }

        /* GGUF writers place each tensor right after the previous one,
         * padded to the alignment. A gap means that a tensor's type or shape
         * is wrong (a flipped type byte shrinks it), which would otherwise
         * load as garbage. */
        uint64_t end = a->offset + a->size;
        uint64_t padded_end = end + (file->alignment - end % file->alignment) % file->alignment;
        if (status == MR_OK && b->offset > padded_end) {
            status = fail(p, MR_ERR_FORMAT,
                          "tensor '%s' (%s, %zu bytes at data offset %" PRIu64 ") ends at %" PRIu64
                          ", but the next tensor '%s' starts at %" PRIu64 ": %" PRIu64
                          " bytes between them belong to no tensor, so the type or shape of "
                          "'%s' is probably wrong; the file may be corrupt",
                          a->name, mr_qtype_name(a->type), a->size, a->offset, end, b->name,
                          b->offset, b->offset - end, a->name);
        }
    }
    const mr_gguf_tensor *first = &file->tensors[by_offset[0]];
    if (status == MR_OK && first->offset != 0) {
        status = fail(p, MR_ERR_FORMAT,
                      "the first tensor '%s' starts at data offset %" PRIu64 ", so the bytes "
                      "before it belong to no tensor; the file may be corrupt",
                      first->name, first->offset);
    }
    free(by_offset);
    return status;
}

/* Sorts the tensor names and rejects a name that occurs twice. */
static mr_status index_tensors(parser *p) {
    mr_gguf *file = p->file;
    file->tensors_by_name = sorted_indices(file, file->tensor_count, compare_tensor_names);
    if (file->tensors_by_name == NULL) {
        return fail(p, MR_ERR_NO_MEMORY, "out of memory indexing %" PRId64 " tensors",
                    file->tensor_count);
    }
    for (int64_t i = 1; i < file->tensor_count; i++) {
        const char *a = file->tensors[file->tensors_by_name[i - 1]].name;
        const char *b = file->tensors[file->tensors_by_name[i]].name;
        if (strcmp(a, b) == 0) {
            return fail(p, MR_ERR_FORMAT, "tensor name '%s' occurs twice", a);
        }
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * The whole file
 * ------------------------------------------------------------------------ */

/* Checks the magic and version. */
static mr_status parse_preamble(parser *p) {
    char magic[4];
    mr_status status = read_bytes(p, magic, 4, "the magic \"GGUF\"");
    if (status != MR_OK) {
        return status;
    }
    if (memcmp(magic, MR_GGUF_MAGIC, 4) != 0) {
        return fail(p, MR_ERR_FORMAT,
                    "bad magic at offset 0: expected \"GGUF\" (47 47 55 46), found "
                    "%02x %02x %02x %02x; this is not a GGUF file",
                    (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
    }

    uint32_t version = 0;
    status = read_u32(p, &version, "the version");
    if (status != MR_OK) {
        return status;
    }
    if (version == 1) {
        return fail(p, MR_ERR_UNSUPPORTED,
                    "version 1 at offset 4 uses 32-bit counts, which multiround does not read; "
                    "convert the file to version 3 with a current llama.cpp");
    }
    if (version != 2 && version != 3) {
        uint32_t swapped = __builtin_bswap32(version);
        if (swapped >= 1 && swapped <= 3) {
            return fail(p, MR_ERR_UNSUPPORTED,
                        "version at offset 4 reads as %" PRIu32 " byte-swapped: this is a "
                        "big-endian GGUF file, which multiround does not read",
                        swapped);
        }
        return fail(p, MR_ERR_UNSUPPORTED, "version %" PRIu32 " at offset 4 is not 2 or 3",
                    version);
    }
    p->file->version = version;
    return MR_OK;
}

/* Parses and validates the header of the file in p->file. */
static mr_status parse_file(parser *p) {
    mr_gguf *file = p->file;
    mr_status status = parse_preamble(p);
    if (status != MR_OK) {
        return status;
    }

    uint64_t tensor_count = 0;
    uint64_t kv_count = 0;
    status = read_u64(p, &tensor_count, "the tensor count");
    if (status == MR_OK) {
        status = read_u64(p, &kv_count, "the key/value count");
    }
    if (status != MR_OK) {
        return status;
    }
    if (kv_count > bytes_left(p) / MIN_KV_BYTES) {
        return fail(p, MR_ERR_FORMAT,
                    "key/value count %" PRIu64 " at offset 16 is more than the %zu bytes after "
                    "the counts can hold",
                    kv_count, bytes_left(p));
    }
    if (tensor_count > bytes_left(p) / MIN_TENSOR_INFO_BYTES) {
        return fail(p, MR_ERR_FORMAT,
                    "tensor count %" PRIu64 " at offset 8 is more than the %zu bytes after "
                    "the counts can hold",
                    tensor_count, bytes_left(p));
    }

    file->kvs = calloc((size_t)kv_count + 1, sizeof *file->kvs);
    file->tensors = calloc((size_t)tensor_count + 1, sizeof *file->tensors);
    if (file->kvs == NULL || file->tensors == NULL) {
        return fail(p, MR_ERR_NO_MEMORY, "out of memory for %" PRIu64 " keys and %" PRIu64 " tensors",
                    kv_count, tensor_count);
    }
    for (uint64_t i = 0; i < kv_count; i++) {
        file->kv_count = (int64_t)i + 1; /* so that close frees what was read */
        status = parse_kv(p, &file->kvs[i]);
        if (status != MR_OK) {
            return status;
        }
    }
    status = index_keys(p);
    if (status == MR_OK) {
        status = read_alignment(p);
    }
    if (status != MR_OK) {
        return status;
    }

    for (uint64_t i = 0; i < tensor_count; i++) {
        file->tensor_count = (int64_t)i + 1;
        status = parse_tensor_info(p, &file->tensors[i]);
        if (status != MR_OK) {
            return status;
        }
    }
    status = index_tensors(p);
    if (status != MR_OK) {
        return status;
    }

    /* The data section starts at the end of the header rounded up to the
     * alignment, which is at most 2^31, so the sum cannot overflow. */
    uint64_t align = file->alignment;
    file->data_offset = ((uint64_t)p->pos + align - 1) / align * align;
    return place_tensors(p);
}

static mr_gguf *handle_create(const char *name) {
    mr_gguf *file = calloc(1, sizeof *file);
    if (file == NULL) {
        return NULL;
    }
    file->name = strdup(name != NULL ? name : "(memory)");
    if (file->name == NULL) {
        free(file);
        return NULL;
    }
    return file;
}

/* Validates file->bytes; on failure closes the handle. */
static mr_status finish_open(mr_gguf *file, mr_gguf **out, mr_error *err) {
    parser p = {.file = file, .pos = 0, .err = err};
    mr_status status = parse_file(&p);
    if (status != MR_OK) {
        mr_gguf_close(file);
        return status;
    }
    *out = file;
    return MR_OK;
}

mr_status mr_gguf_open_memory(const void *data, size_t size, const char *name, mr_gguf **out,
                              mr_error *err) {
    *out = NULL;
    if (data == NULL && size > 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "gguf: %s: data is NULL", name);
    }
    mr_gguf *file = handle_create(name);
    if (file == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf: out of memory opening %s", name);
    }
    file->bytes = data;
    file->size = size;
    return finish_open(file, out, err);
}

mr_status mr_gguf_open(const char *path, mr_gguf **out, mr_error *err) {
    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "gguf: the path is NULL or empty");
    }

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return mr_error_set(err, errno == ENOENT ? MR_ERR_NOT_FOUND : MR_ERR_IO,
                            "gguf: cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mr_status status = mr_error_set(err, MR_ERR_IO, "gguf: cannot stat %s: %s", path,
                                        strerror(errno));
        close(fd);
        return status;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mr_error_set(err, MR_ERR_IO, "gguf: %s is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "gguf: %s: the file is empty, expected the magic \"GGUF\" at offset 0",
                            path);
    }

    size_t size = (size_t)st.st_size;
    void *mapping = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (mapping == MAP_FAILED) {
        return mr_error_set(err, MR_ERR_IO, "gguf: cannot map %s (%zu bytes): %s", path, size,
                            strerror(map_errno));
    }

    mr_gguf *file = handle_create(path);
    if (file == NULL) {
        munmap(mapping, size);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "gguf: out of memory opening %s", path);
    }
    file->bytes = mapping;
    file->size = size;
    file->mapping = mapping;
    return finish_open(file, out, err);
}

void mr_gguf_close(mr_gguf *gguf) {
    if (gguf == NULL) {
        return;
    }
    for (int64_t i = 0; i < gguf->kv_count; i++) {
        free(gguf->kvs[i].key);
        free(gguf->kvs[i].string_offsets);
    }
    for (int64_t i = 0; i < gguf->tensor_count; i++) {
        free((char *)gguf->tensors[i].name);
    }
    free(gguf->kvs);
    free(gguf->kvs_by_key);
    free(gguf->tensors);
    free(gguf->tensors_by_name);
    if (gguf->mapping != NULL) {
        munmap(gguf->mapping, gguf->size);
    }
    free(gguf->name);
    free(gguf);
}

/* ------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------ */

uint32_t mr_gguf_version(const mr_gguf *gguf) {
    return gguf->version;
}

uint32_t mr_gguf_alignment(const mr_gguf *gguf) {
    return gguf->alignment;
}

uint64_t mr_gguf_data_offset(const mr_gguf *gguf) {
    return gguf->data_offset;
}

int64_t mr_gguf_kv_count(const mr_gguf *gguf) {
    return gguf->kv_count;
}

const char *mr_gguf_kv_key(const mr_gguf *gguf, int64_t i) {
    if (i < 0 || i >= gguf->kv_count) {
        return NULL;
    }
    return gguf->kvs[i].key;
}

mr_gguf_type mr_gguf_kv_type(const mr_gguf *gguf, int64_t i) {
    return gguf->kvs[i].type;
}

void mr_gguf_kv_encoded(const mr_gguf *gguf, int64_t i, const uint8_t **bytes, size_t *len) {
    const gguf_kv *kv = &gguf->kvs[i];
    *bytes = gguf->bytes + kv->value_offset;
    *len = kv->value_end - kv->value_offset;
}

int64_t mr_gguf_find_key(const mr_gguf *gguf, const char *key) {
    int64_t low = 0;
    int64_t high = gguf->kv_count - 1;
    while (low <= high) {
        int64_t mid = low + (high - low) / 2;
        int64_t index = gguf->kvs_by_key[mid];
        int order = strcmp(key, gguf->kvs[index].key);
        if (order == 0) {
            return index;
        }
        if (order < 0) {
            high = mid - 1;
        } else {
            low = mid + 1;
        }
    }
    return -1;
}

/* Finds key and checks its type, or fails with NOT_FOUND or FORMAT. */
static mr_status find_typed(const mr_gguf *gguf, const char *key, mr_gguf_type expected,
                            const gguf_kv **out, mr_error *err) {
    int64_t i = mr_gguf_find_key(gguf, key);
    if (i < 0) {
        return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: %s: key '%s' not found", gguf->name,
                            key);
    }
    *out = &gguf->kvs[i];
    if ((*out)->type != expected) {
        return mr_error_set(err, MR_ERR_FORMAT, "gguf: %s: key '%s' has type %s, expected %s",
                            gguf->name, key, mr_gguf_type_name((*out)->type),
                            mr_gguf_type_name(expected));
    }
    return MR_OK;
}

/* Reads a value of any integer type. A negative value goes to
 * *signed_value with *negative set, and any other value to *unsigned_value. */
static mr_status read_integer(const mr_gguf *gguf, const char *key, const char *wanted,
                              bool *negative, int64_t *signed_value, uint64_t *unsigned_value,
                              mr_error *err) {
    int64_t i = mr_gguf_find_key(gguf, key);
    if (i < 0) {
        return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: %s: key '%s' not found", gguf->name,
                            key);
    }

    const gguf_kv *kv = &gguf->kvs[i];
    const uint8_t *v = gguf->bytes + kv->value_offset;
    int64_t s = 0;
    uint64_t u = 0;
    bool is_signed = false;
    switch (kv->type) {
    case MR_GGUF_U8: u = v[0]; break;
    case MR_GGUF_I8: s = (int8_t)v[0]; is_signed = true; break;
    case MR_GGUF_U16: { uint16_t x; memcpy(&x, v, 2); u = x; break; }
    case MR_GGUF_I16: { int16_t x; memcpy(&x, v, 2); s = x; is_signed = true; break; }
    case MR_GGUF_U32: { uint32_t x; memcpy(&x, v, 4); u = x; break; }
    case MR_GGUF_I32: { int32_t x; memcpy(&x, v, 4); s = x; is_signed = true; break; }
    case MR_GGUF_U64: memcpy(&u, v, 8); break;
    case MR_GGUF_I64: memcpy(&s, v, 8); is_signed = true; break;
    default:
        return mr_error_set(err, MR_ERR_FORMAT,
                            "gguf: %s: key '%s' has type %s, expected %s or another integer type",
                            gguf->name, key, mr_gguf_type_name(kv->type), wanted);
    }

    *negative = is_signed && s < 0;
    *signed_value = s;
    *unsigned_value = u;
    if (is_signed) {
        *unsigned_value = s < 0 ? 0 : (uint64_t)s;
    }
    return MR_OK;
}

mr_status mr_gguf_get_u32(const mr_gguf *gguf, const char *key, uint32_t *out, mr_error *err) {
    bool negative = false;
    int64_t s = 0;
    uint64_t u = 0;
    mr_status status = read_integer(gguf, key, "u32", &negative, &s, &u, err);
    if (status != MR_OK) {
        return status;
    }
    if (negative || u > UINT32_MAX) {
        return mr_error_set(err, MR_ERR_FORMAT, "gguf: %s: key '%s' is %s%" PRIu64
                            ", which does not fit u32",
                            gguf->name, key, negative ? "-" : "",
                            negative ? (uint64_t)0 - (uint64_t)s : u);
    }
    *out = (uint32_t)u;
    return MR_OK;
}

mr_status mr_gguf_get_i64(const mr_gguf *gguf, const char *key, int64_t *out, mr_error *err) {
    bool negative = false;
    int64_t s = 0;
    uint64_t u = 0;
    mr_status status = read_integer(gguf, key, "i64", &negative, &s, &u, err);
    if (status != MR_OK) {
        return status;
    }
    if (negative) {
        *out = s;
        return MR_OK;
    }
    if (u > (uint64_t)INT64_MAX) {
        return mr_error_set(err, MR_ERR_FORMAT, "gguf: %s: key '%s' is %" PRIu64
                            ", which does not fit i64", gguf->name, key, u);
    }
    *out = (int64_t)u;
    return MR_OK;
}

mr_status mr_gguf_get_f32(const mr_gguf *gguf, const char *key, float *out, mr_error *err) {
    const gguf_kv *kv = NULL;
    mr_status status = find_typed(gguf, key, MR_GGUF_F32, &kv, err);
    if (status != MR_OK) {
        return status;
    }
    memcpy(out, gguf->bytes + kv->value_offset, sizeof *out);
    return MR_OK;
}

mr_status mr_gguf_get_bool(const mr_gguf *gguf, const char *key, bool *out, mr_error *err) {
    const gguf_kv *kv = NULL;
    mr_status status = find_typed(gguf, key, MR_GGUF_BOOL, &kv, err);
    if (status != MR_OK) {
        return status;
    }
    *out = gguf->bytes[kv->value_offset] != 0;
    return MR_OK;
}

mr_status mr_gguf_get_string(const mr_gguf *gguf, const char *key, const char **out, size_t *len,
                             mr_error *err) {
    const gguf_kv *kv = NULL;
    mr_status status = find_typed(gguf, key, MR_GGUF_STRING, &kv, err);
    if (status != MR_OK) {
        return status;
    }
    uint64_t length = 0;
    memcpy(&length, gguf->bytes + kv->value_offset, sizeof length);
    *out = (const char *)gguf->bytes + kv->value_offset + 8;
    *len = (size_t)length;
    return MR_OK;
}

mr_status mr_gguf_get_array(const mr_gguf *gguf, const char *key, mr_gguf_type *elem_type,
                            int64_t *count, const void **data, mr_error *err) {
    const gguf_kv *kv = NULL;
    mr_status status = find_typed(gguf, key, MR_GGUF_ARRAY, &kv, err);
    if (status != MR_OK) {
        return status;
    }
    *elem_type = kv->elem_type;
    *count = kv->count;
    /* Numeric elements follow the u32 element type and the u64 count. */
    *data = kv->elem_type == MR_GGUF_STRING ? NULL : gguf->bytes + kv->value_offset + 12;
    return MR_OK;
}

mr_status mr_gguf_array_string(const mr_gguf *gguf, const char *key, int64_t j, const char **out,
                               size_t *len, mr_error *err) {
    const gguf_kv *kv = NULL;
    mr_status status = find_typed(gguf, key, MR_GGUF_ARRAY, &kv, err);
    if (status != MR_OK) {
        return status;
    }
    if (kv->elem_type != MR_GGUF_STRING) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "gguf: %s: key '%s' is an array of %s, expected an array of string",
                            gguf->name, key, mr_gguf_type_name(kv->elem_type));
    }
    if (j < 0 || j >= kv->count) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gguf: %s: index %" PRId64 " is out of range for key '%s' with %"
                            PRId64 " strings", gguf->name, j, key, kv->count);
    }
    uint64_t length = 0;
    memcpy(&length, gguf->bytes + kv->string_offsets[j], sizeof length);
    *out = (const char *)gguf->bytes + kv->string_offsets[j] + 8;
    *len = (size_t)length;
    return MR_OK;
}

int64_t mr_gguf_tensor_count(const mr_gguf *gguf) {
    return gguf->tensor_count;
}

const mr_gguf_tensor *mr_gguf_tensor_at(const mr_gguf *gguf, int64_t i) {
    if (i < 0 || i >= gguf->tensor_count) {
        return NULL;
    }
    return &gguf->tensors[i];
}

const mr_gguf_tensor *mr_gguf_find_tensor(const mr_gguf *gguf, const char *name) {
    int64_t low = 0;
    int64_t high = gguf->tensor_count - 1;
    while (low <= high) {
        int64_t mid = low + (high - low) / 2;
        int64_t index = gguf->tensors_by_name[mid];
        int order = strcmp(name, gguf->tensors[index].name);
        if (order == 0) {
            return &gguf->tensors[index];
        }
        if (order < 0) {
            high = mid - 1;
        } else {
            low = mid + 1;
        }
    }
    return NULL;
}
