/*
 * multiround: reading and writing GGUF files, the model format of ggml and
 * llama.cpp.
 *
 * A GGUF file is, all little-endian:
 *
 *   "GGUF", u32 version, u64 tensor count, u64 key/value count,
 *   the key/value pairs: string key, u32 value type, value,
 *   the tensor infos: string name, u32 n_dims, u64 ne[n_dims],
 *                     u32 storage type, u64 offset into the data section,
 *   padding to the alignment, then the data section.
 *
 * A string is a u64 byte length and the bytes, without a NUL. An array is
 * a u32 element type, a u64 count and the elements. The alignment is the
 * u32 value of general.alignment, or 32 when that key is absent; the data
 * section and every tensor offset are multiples of it. Version 1 (32-bit
 * counts) is rejected; versions 2 and 3 share the layout above.
 *
 * The reader memory-maps the file and validates every count, length,
 * offset, dimension and type against the file size before any other call
 * trusts it. A corrupt or hostile file gives MR_ERR_FORMAT (or
 * MR_ERR_UNSUPPORTED for a valid file that multiround cannot read) with a
 * message naming the file, the byte offset and what was expected. Beyond
 * the file size, the reader limits keys and tensor names to 65535 bytes
 * without NUL bytes, tensors to 1..4 dimensions and arrays to one level
 * (arrays of arrays are rejected). Keys and tensor names must be unique,
 * bool values must be 0 or 1, and tensor data ranges must be aligned,
 * inside the file and must not overlap.
 */
#ifndef MULTIROUND_GGUF_H
#define MULTIROUND_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Alignment of the data section when general.alignment is absent. */
#define MR_GGUF_DEFAULT_ALIGNMENT 32u

/* Value types of GGUF metadata, numbered as in the GGUF specification. */
typedef enum mr_gguf_type {
    MR_GGUF_U8 = 0,
    MR_GGUF_I8 = 1,
    MR_GGUF_U16 = 2,
    MR_GGUF_I16 = 3,
    MR_GGUF_U32 = 4,
    MR_GGUF_I32 = 5,
    MR_GGUF_F32 = 6,
    MR_GGUF_BOOL = 7,
    MR_GGUF_STRING = 8,
    MR_GGUF_ARRAY = 9,
    MR_GGUF_U64 = 10,
    MR_GGUF_I64 = 11,
    MR_GGUF_F64 = 12
} mr_gguf_type;

/* Returns the specification's name of a value type ("u32", "string",
 * "array", ...), or "?" for a value outside the enum. */
const char *mr_gguf_type_name(mr_gguf_type type);

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

/* An opened, validated, memory-mapped file. */
typedef struct mr_gguf mr_gguf;

/* One tensor of an open file. Pointers stay valid until the file is closed. */
typedef struct mr_gguf_tensor {
    const char *name;   /* NUL-terminated copy */
    int n_dims;         /* 1..4 */
    int64_t ne[4];      /* GGUF order: ne[0] is the contiguous axis; unused dims are 1 */
    mr_qtype type;      /* storage type */
    uint64_t offset;    /* from the start of the data section */
    size_t size;        /* bytes */
    const void *data;   /* into the mapping */
} mr_gguf_tensor;

/*
 * Opens, maps and validates the GGUF file at path and stores the handle in
 * *out (NULL on failure). Returns MR_ERR_NOT_FOUND for a missing file,
 * MR_ERR_IO when the file cannot be opened or mapped, MR_ERR_FORMAT for a malformed file and MR_ERR_UNSUPPORTED
 * for version 1 or a tensor storage type outside mr_qtype.
 */
mr_status mr_gguf_open(const char *path, mr_gguf **out, mr_error *err);

/*
 * Validates size bytes at data as a GGUF file, as mr_gguf_open does after
 * mapping one, and stores the handle in *out. The bytes are borrowed: they
 * must stay unchanged until mr_gguf_close. name replaces the path in
 * error messages. Used by the fuzz target and by tests of corrupt files.
 */
mr_status mr_gguf_open_memory(const void *data, size_t size, const char *name, mr_gguf **out,
                              mr_error *err);

/* Unmaps the file and frees the handle. gguf may be NULL. */
void mr_gguf_close(mr_gguf *gguf);

/* Returns the format version of the file (2 or 3). */
uint32_t mr_gguf_version(const mr_gguf *gguf);

/* Returns the alignment in bytes of the data section and of tensor offsets. */
uint32_t mr_gguf_alignment(const mr_gguf *gguf);

/* Returns the byte offset of the data section from the start of the file. */
uint64_t mr_gguf_data_offset(const mr_gguf *gguf);

/* Returns the number of key/value pairs. */
int64_t mr_gguf_kv_count(const mr_gguf *gguf);

/* Returns the NUL-terminated key of pair i (0 <= i < count), or NULL when
 * i is out of range. */
const char *mr_gguf_kv_key(const mr_gguf *gguf, int64_t i);

/* Returns the value type of pair i, which must be in range. */
mr_gguf_type mr_gguf_kv_type(const mr_gguf *gguf, int64_t i);

/* Returns the index of key, or -1 if the file has no such key. */
int64_t mr_gguf_find_key(const mr_gguf *gguf, const char *key);

/*
 * Typed getters. Each returns MR_ERR_NOT_FOUND if the key is absent and
 * MR_ERR_FORMAT naming the key and both types if the stored type differs.
 * The integer getters accept any integer type whose value fits the output;
 * a value that does not fit gives MR_ERR_FORMAT naming it.
 */
mr_status mr_gguf_get_u32(const mr_gguf *gguf, const char *key, uint32_t *out, mr_error *err);
mr_status mr_gguf_get_i64(const mr_gguf *gguf, const char *key, int64_t *out, mr_error *err);
mr_status mr_gguf_get_f32(const mr_gguf *gguf, const char *key, float *out, mr_error *err);
mr_status mr_gguf_get_bool(const mr_gguf *gguf, const char *key, bool *out, mr_error *err);

/* Stores a pointer into the mapping and the byte length of a string value.
 * The bytes are not NUL-terminated. */
mr_status mr_gguf_get_string(const mr_gguf *gguf, const char *key, const char **out,
                             size_t *len, mr_error *err);

/*
 * Stores the element type and count of an array value. For numeric and
 * bool elements *data points at the contiguous little-endian elements in
 * the mapping, which may be unaligned: copy them with memcpy. For string
 * elements *data is NULL; read them with mr_gguf_array_string.
 */
mr_status mr_gguf_get_array(const mr_gguf *gguf, const char *key, mr_gguf_type *elem_type,
                            int64_t *count, const void **data, mr_error *err);

/* Stores the j-th string of a string array (pointer into the mapping, not
 * NUL-terminated) and its byte length. Returns MR_ERR_INVALID_ARGUMENT
 * for j out of range and MR_ERR_FORMAT if the array holds another type. */
mr_status mr_gguf_array_string(const mr_gguf *gguf, const char *key, int64_t j,
                               const char **out, size_t *len, mr_error *err);

/* Returns the number of tensors. */
int64_t mr_gguf_tensor_count(const mr_gguf *gguf);

/* Returns tensor i in file order, or NULL when i is out of range. */
const mr_gguf_tensor *mr_gguf_tensor_at(const mr_gguf *gguf, int64_t i);

/* Returns the tensor called name, or NULL if absent. */
const mr_gguf_tensor *mr_gguf_find_tensor(const mr_gguf *gguf, const char *name);

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

/*
 * A writer collects metadata and tensors, then writes GGUF v3 atomically
 * (temporary file, fsync, rename) with 32-byte alignment. Keys and
 * metadata values are copied when set. Tensor data is borrowed: it must
 * stay valid until mr_gguf_writer_write returns.
 */
typedef struct mr_gguf_writer mr_gguf_writer;

/* Returns a new empty writer, or NULL when out of memory. */
mr_gguf_writer *mr_gguf_writer_create(void);

/* Frees the writer and its copies. w may be NULL. */
void mr_gguf_writer_free(mr_gguf_writer *w);

/*
 * Setters. Setting a key a second time replaces its value and keeps its
 * place in the file. Keys must be non-empty; a key of general.alignment is
 * rejected with MR_ERR_INVALID_ARGUMENT because the writer sets it itself.
 */
mr_status mr_gguf_writer_set_u32(mr_gguf_writer *w, const char *key, uint32_t v, mr_error *err);
mr_status mr_gguf_writer_set_f32(mr_gguf_writer *w, const char *key, float v, mr_error *err);
mr_status mr_gguf_writer_set_bool(mr_gguf_writer *w, const char *key, bool v, mr_error *err);
mr_status mr_gguf_writer_set_string(mr_gguf_writer *w, const char *key, const char *v,
                                    mr_error *err);

/* Sets a numeric or bool array of count elements of elem_type, copied
 * from data in the host's (little-endian) layout. */
mr_status mr_gguf_writer_set_array(mr_gguf_writer *w, const char *key, mr_gguf_type elem_type,
                                   const void *data, int64_t count, mr_error *err);

/* Sets a string array. lens[j] is the byte length of v[j]; lens may be
 * NULL when every v[j] is NUL-terminated. */
mr_status mr_gguf_writer_set_strings(mr_gguf_writer *w, const char *key, const char *const *v,
                                     const size_t *lens, int64_t count, mr_error *err);

/* Copies every key/value of an opened file (e.g. the tokenizer keys)
 * except those already set and general.alignment. */
mr_status mr_gguf_writer_copy_kv(mr_gguf_writer *w, const mr_gguf *from, mr_error *err);

/*
 * Adds a tensor of n_dims (1..4) dimensions ne, in GGUF order, whose
 * mr_qtype_row_bytes(type, ne[0]) * ne[1] * ... bytes are at data. ne[0]
 * must be a multiple of the type's block size. Names must be unique and
 * shorter than 64 KiB. data is borrowed until the write.
 */
mr_status mr_gguf_writer_add_tensor(mr_gguf_writer *w, const char *name, mr_qtype type,
                                    int n_dims, const int64_t *ne, const void *data,
                                    mr_error *err);

/* Writes everything collected to path as GGUF v3, atomically. The writer
 * keeps its content and may write again. */
mr_status mr_gguf_writer_write(mr_gguf_writer *w, const char *path, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_GGUF_H */
