/*
 * multiround: reading and writing safetensors files.
 *
 * A safetensors file is an 8-byte little-endian header length N, then N
 * bytes of UTF-8 JSON, then the data buffer:
 *
 *   {"__metadata__": {"format": "pt"},
 *    "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
 *
 * data_offsets are byte offsets into the buffer that follows the header.
 * Tensors are stored row-major and little-endian, must tile the buffer
 * exactly (no holes, no overlaps) and the file ends with the last tensor.
 * Shape [] is a scalar; a dimension of 0 gives an empty tensor.
 *
 * The reader memory-maps the file and validates the whole header before
 * any other call trusts it, so that a corrupt or hostile file gives an
 * MR_ERR_FORMAT naming the file, the tensor or byte offset, and the fault.
 */
#ifndef MULTIROUND_SAFETENSORS_H
#define MULTIROUND_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maximum header length N accepted, as in the reference implementation. */
#define MR_SAFETENSORS_MAX_HEADER 100000000u

/* Element types of the safetensors format. */
typedef enum mr_safetensors_dtype {
    MR_SAFETENSORS_BOOL = 0,
    MR_SAFETENSORS_U8,
    MR_SAFETENSORS_I8,
    MR_SAFETENSORS_F8_E5M2,
    MR_SAFETENSORS_F8_E4M3,
    MR_SAFETENSORS_I16,
    MR_SAFETENSORS_U16,
    MR_SAFETENSORS_F16,
    MR_SAFETENSORS_BF16,
    MR_SAFETENSORS_I32,
    MR_SAFETENSORS_U32,
    MR_SAFETENSORS_F32,
    MR_SAFETENSORS_F64,
    MR_SAFETENSORS_I64,
    MR_SAFETENSORS_U64
} mr_safetensors_dtype;

/* Returns the name used in headers ("F32", "BF16", ...), or "?" for a
 * value outside the enum. */
const char *mr_safetensors_dtype_name(mr_safetensors_dtype dtype);

/* Returns the size of one element in bytes, or 0 for a value outside the
 * enum. */
size_t mr_safetensors_dtype_size(mr_safetensors_dtype dtype);

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

typedef struct mr_safetensors mr_safetensors;

/* One tensor of an open file. Pointers stay valid until the file is closed. */
typedef struct mr_safetensors_tensor {
    const char *name;
    mr_safetensors_dtype dtype;
    int ndim;             /* 0 for a scalar */
    const int64_t *shape; /* ndim entries */
    int64_t numel;        /* product of shape; 1 for a scalar */
    uint64_t offset;      /* position of the first byte in the file */
    uint64_t size;        /* bytes: numel * dtype size */
    const void *data;     /* the bytes, inside the mapping; may be unaligned */
} mr_safetensors_tensor;

/*
 * Maps the file at path read-only, validates it completely and stores the
 * handle in *out (NULL on failure). Returns MR_ERR_IO when the file cannot
 * be opened or mapped, MR_ERR_FORMAT when it is malformed and
 * MR_ERR_UNSUPPORTED for a dtype newer than this reader (F4, F6_*,
 * F8_E8M0, C64).
 * NOTE: a file truncated by another process while mapped raises SIGBUS on
 * access; write files atomically (mr_safetensors_writer_write does).
 */
mr_status mr_safetensors_open(const char *path, mr_safetensors **out, mr_error *err);

/*
 * The same for a file already in memory: data (size bytes) must stay
 * valid and unchanged until the handle is closed. name is used in error
 * messages in place of a path.
 */
mr_status mr_safetensors_open_memory(const void *data, size_t size, const char *name,
                                     mr_safetensors **out, mr_error *err);

/* Unmaps the file and frees the handle. file may be NULL. */
void mr_safetensors_close(mr_safetensors *file);

/* Returns the number of tensors. */
int64_t mr_safetensors_tensor_count(const mr_safetensors *file);

/* Returns tensor index (0 <= index < count) in the order of their data
 * offsets, or NULL for an index out of range. */
const mr_safetensors_tensor *mr_safetensors_tensor_at(const mr_safetensors *file,
                                                      int64_t index);

/* Returns the tensor called name, or NULL when there is none. */
const mr_safetensors_tensor *mr_safetensors_tensor_find(const mr_safetensors *file,
                                                        const char *name);

/* Returns the number of "__metadata__" entries. */
int64_t mr_safetensors_metadata_count(const mr_safetensors *file);

/* Returns the metadata value for key, or NULL when absent. */
const char *mr_safetensors_metadata_get(const mr_safetensors *file, const char *key);

/* Stores metadata entry index (in header order) in *key and *value.
 * Returns MR_ERR_INVALID_ARGUMENT for an index out of range. */
mr_status mr_safetensors_metadata_at(const mr_safetensors *file, int64_t index,
                                     const char **key, const char **value);

/*
 * Converts tensor name to count floats in dst (row-major). count must equal
 * the tensor's element count. Reads F32, F16, BF16 and F64 (F64 rounds to
 * the nearest float). Returns MR_ERR_NOT_FOUND for a missing name,
 * MR_ERR_SHAPE when count differs and MR_ERR_UNSUPPORTED for other dtypes.
 */
mr_status mr_safetensors_read_f32(const mr_safetensors *file, const char *name, float *dst,
                                  int64_t count, mr_error *err);

/*
 * Converts tensor name to count int32 values in dst. Reads BOOL and every
 * integer dtype; a value outside the int32 range gives MR_ERR_UNSUPPORTED
 * naming the element. Float dtypes give MR_ERR_UNSUPPORTED.
 */
mr_status mr_safetensors_read_i32(const mr_safetensors *file, const char *name,
                                  int32_t *dst, int64_t count, mr_error *err);

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

typedef struct mr_safetensors_writer mr_safetensors_writer;

/* Creates an empty writer, or returns NULL when memory is exhausted. */
mr_safetensors_writer *mr_safetensors_writer_create(void);

/* Frees the writer and its copies of the data. writer may be NULL. */
void mr_safetensors_writer_free(mr_safetensors_writer *writer);

/*
 * Adds a float tensor stored as F32, F16 or BF16 (rounding to nearest,
 * ties to even; values beyond the range become infinities, NaN stays
 * NaN). The converted bytes are copied, so data may change afterwards.
 * Names must be valid UTF-8, unique and not "__metadata__". ndim may be 0
 * (a scalar); dimensions must be >= 0.
 */
mr_status mr_safetensors_writer_add_f32(mr_safetensors_writer *writer, const char *name,
                                        int ndim, const int64_t *shape, const float *data,
                                        mr_safetensors_dtype store_as, mr_error *err);

/* Adds an int32 tensor stored as I32, with the same rules for names and
 * shapes. */
mr_status mr_safetensors_writer_add_i32(mr_safetensors_writer *writer, const char *name,
                                        int ndim, const int64_t *shape, const int32_t *data,
                                        mr_error *err);

/* Adds a "__metadata__" entry. Keys must be unique; key and value must be
 * valid UTF-8. */
mr_status mr_safetensors_writer_add_metadata(mr_safetensors_writer *writer, const char *key,
                                             const char *value, mr_error *err);

/*
 * Writes the file atomically (see fileio.h): metadata first, then the
 * tensors in the order they were added, with the header padded with
 * spaces to a multiple of 8 bytes. The same writer contents always give
 * the same bytes. The writer is unchanged and may be written again.
 */
mr_status mr_safetensors_writer_write(const mr_safetensors_writer *writer, const char *path,
                                      mr_error *err);

/* ------------------------------------------------------------------------
 * Engine tensors
 * ------------------------------------------------------------------------ */

/*
 * Saves n tensors under their names (mr_tensor.name, which must be set
 * and unique). Float tensors are stored as store_as (F32, F16 or BF16),
 * int32 tensors as I32. metadata contains metadata_count (key, value) pairs
 * as 2 * metadata_count strings and may be NULL when the count is 0.
 */
mr_status mr_safetensors_save_tensors(const char *path, mr_tensor *const *tensors, int n,
                                      const char *const *metadata, int metadata_count,
                                      mr_safetensors_dtype store_as, mr_error *err);

/*
 * Fills n existing tensors from the file by name. Every tensor must be
 * present with the same shape; float tensors accept F32, F16, BF16 and
 * F64, int32 tensors accept integer dtypes. All names and shapes are
 * checked before any tensor is written, so on failure no tensor changes.
 * Tensors in the file that are not requested are ignored.
 */
mr_status mr_safetensors_load_tensors(const char *path, mr_tensor *const *tensors, int n,
                                      mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_SAFETENSORS_H */
