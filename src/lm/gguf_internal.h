/*
 * Shared between the GGUF reader (gguf.c) and writer (gguf_write.c).
 */
#ifndef MR_LM_GGUF_INTERNAL_H
#define MR_LM_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "multiround/gguf.h"

/* Magic bytes at the start of every GGUF file. */
#define MR_GGUF_MAGIC "GGUF"

/* Maximum byte length of a key or tensor name. */
#define MR_GGUF_MAX_NAME 65535u

/* Returns the byte size of a scalar value type, or 0 for string, array
 * and values outside the enum. */
size_t mr_gguf_scalar_size(mr_gguf_type type);

/*
 * Stores the encoded value of pair i of an open file: the bytes after the
 * u32 value type, exactly as in the file (a string's u64 length and bytes,
 * or an array's u32 element type, u64 count and elements). The writer
 * copies pairs between files with it.
 */
void mr_gguf_kv_encoded(const mr_gguf *gguf, int64_t i, const uint8_t **bytes, size_t *len);

#endif /* MR_LM_GGUF_INTERNAL_H */
