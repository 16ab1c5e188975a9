/*
 * Helpers shared by the safetensors reader (safetensors.c), its
 * conversions (safetensors_convert.c) and the writer (safetensors_write.c).
 */
#ifndef MR_ENGINE_SAFETENSORS_INTERNAL_H
#define MR_ENGINE_SAFETENSORS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/safetensors.h"

/* Writes "[2, 3]" into text, ending in "...]" when it does not fit. */
void mr_st_format_shape(char *text, size_t size, int ndim, const int64_t *shape);

/* True when text is valid UTF-8 (no overlong forms or surrogates). */
bool mr_st_valid_utf8(const char *text);

/* True for BOOL and the integer dtypes. */
bool mr_st_is_integer(mr_safetensors_dtype dtype);

/*
 * Converts tensor t of file to int32 into dst, or only checks that every
 * value fits when dst is NULL. Returns MR_ERR_UNSUPPORTED for float dtypes
 * and for values outside the int32 range.
 */
mr_status mr_st_convert_i32(const mr_safetensors *file, const mr_safetensors_tensor *t,
                            int32_t *dst, mr_error *err);

/* Returns the path (or memory name) used in the file's messages. */
const char *mr_st_file_name(const mr_safetensors *file);

#endif /* MR_ENGINE_SAFETENSORS_INTERNAL_H */
