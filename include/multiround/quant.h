/*
 * multiround: storage types of language-model weights, with quantisation.
 *
 * Each type stores a row of n elements as n / block_size blocks of
 * block_bytes bytes, little-endian, with the layouts that ggml uses in
 * GGUF files:
 *
 *   F32   one IEEE binary32 per element
 *   F16   one IEEE binary16 per element, rounded to nearest, ties to even
 *   BF16  the upper 16 bits of a binary32, rounded to nearest, ties to
 *         even; NaN stays NaN
 *   Q8_0  blocks of 32: an F16 scale d = max|x| / 127, then 32 int8
 *         q = round(x / d), so that x ~ d * q
 *   Q4_0  blocks of 32: an F16 scale d = m / -8, where m is the element of
 *         largest magnitude with its sign, then 16 bytes of 4-bit
 *         q = min(15, (int)(x / d + 8.5)), so that x ~ d * (q - 8).
 *         Element j sits in the low nibble of byte j and element j + 16
 *         in the high nibble.
 *
 * A block whose elements are all zero gets d = 0 and decodes to zeros.
 */
#ifndef MULTIROUND_QUANT_H
#define MULTIROUND_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Storage types of weights, numbered as ggml numbers them in GGUF files. */
typedef enum mr_qtype {
    MR_QTYPE_F32 = 0,
    MR_QTYPE_F16 = 1,
    MR_QTYPE_Q4_0 = 2,
    MR_QTYPE_Q8_0 = 8,
    MR_QTYPE_BF16 = 30
} mr_qtype;

/* Returns the lower-case name ("f32", "f16", "q4_0", "q8_0", "bf16"), or
 * NULL for a value outside the enum. */
const char *mr_qtype_name(mr_qtype type);

/* Looks up a type by its name as mr_qtype_name spells it, ignoring case.
 * Returns false and leaves *out unchanged for an unknown name. */
bool mr_qtype_parse(const char *name, mr_qtype *out);

/* Returns whether value is one of the enum's values. */
bool mr_qtype_known(int value);

/* Returns the number of elements per block (1, 1, 32, 32, 1 in enum
 * order), or 0 for an unknown type. */
int mr_qtype_block_size(mr_qtype type);

/* Returns the bytes per block (4, 2, 18, 34, 2 in enum order), or 0 for
 * an unknown type. */
size_t mr_qtype_block_bytes(mr_qtype type);

/* Returns the bytes of a row of n elements. n must be a non-negative
 * multiple of the block size; otherwise, for an unknown type and for a
 * size that overflows size_t, the result is 0. */
size_t mr_qtype_row_bytes(mr_qtype type, int64_t n);

/* Decodes n elements stored as type into dst. n must be a multiple of the
 * block size. */
void mr_dequantize_row(mr_qtype type, const void *src, float *dst, int64_t n);

/* Encodes n floats as type into dst, which must have room for
 * mr_qtype_row_bytes(type, n) bytes. n must be a multiple of the block
 * size. */
void mr_quantize_row(mr_qtype type, const float *src, void *dst, int64_t n);

/* Returns sum_i row[i] * x[i] for a stored row of n elements (the inner
 * loop of matrix-vector products). The sum runs in a fixed order, so the
 * result does not depend on the thread count. */
float mr_qdot(mr_qtype type, const void *row, const float *x, int64_t n);

/* Computes y[r] = sum_i W[r][i] * x[i] for a [rows, n] matrix stored row by
 * row as type, with the rows split across OpenMP threads. Each y[r] equals
 * mr_qdot of row r, whatever the thread count. */
void mr_qmatvec(mr_qtype type, const void *w, int64_t rows, int64_t n, const float *x,
                float *y);

/* Returns the bytes of scratch memory that mr_qmatvec_int8 needs for an x
 * of n elements, or 0 for a negative n. */
size_t mr_qmatvec_int8_scratch_bytes(int64_t n);

/*
 * Computes y = W x like mr_qmatvec, but for Q8_0 and Q4_0 weights with x
 * quantised to int8, as ggml does for these types. Each block of 32
 * elements of x gets a float scale s = max|x| / 127 and codes
 * rint(x / s) (round to nearest, ties to even). Each block's products of
 * weight and x codes are summed exactly in integers, and the block adds
 * d * s times that sum to a float total. For other types this is
 * mr_qmatvec and scratch is not touched.
 *
 * n must be a multiple of 32 for Q8_0 and Q4_0. scratch must have
 * mr_qmatvec_int8_scratch_bytes(n) bytes, aligned as malloc aligns.
 * Rounding x moves each element by at most about s / 2, so y[r] moves by
 * at most about the sum over blocks of s / 2 times the block's sum of
 * |W[r][i]|, plus float rounding (tests/lm/test_quant_int8.c checks that
 * bound). Each y[r] is the same whatever the thread count.
 */
void mr_qmatvec_int8(mr_qtype type, const void *w, int64_t rows, int64_t n, const float *x,
                     float *y, void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_QUANT_H */
