/*
 * Private to src/lm: the two implementations behind mr_qdot() and
 * mr_qmatvec_int8(). The scalar loops in quant.c are the portable fallback
 * and the reference that the tests compare the SIMD kernels of
 * quant_simd.c with.
 */
#ifndef MR_LM_QUANT_INTERNAL_H
#define MR_LM_QUANT_INTERNAL_H

#include <stdint.h>

#include "multiround/quant.h"

/* quant_simd.c has AVX2 kernels only when the compiler targets AVX2, FMA
 * and F16C (the Release build's -march=native on such a CPU). */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define MR_QUANT_SIMD 1
#else
#define MR_QUANT_SIMD 0
#endif

/* Computes mr_qdot() with the portable scalar loops: eight float partial
 * sums, lane i % 8 for element i, added in lane order at the end of each
 * block or row. */
float mr_qdot_scalar(mr_qtype type, const void *row, const float *x, int64_t n);

#if MR_QUANT_SIMD
/* Computes mr_qdot() with AVX2 + FMA + F16C. The sum runs in a fixed order
 * that differs from mr_qdot_scalar's, so the two agree within float
 * rounding, not bit for bit. */
float mr_qdot_simd(mr_qtype type, const void *row, const float *x, int64_t n);
#endif

/* x quantised to int8 blocks of 32 for mr_qmatvec_int8. Block b
 * represents x[32 b + j] ~ scales[b] * codes[32 b + j]. sums[b] is the sum
 * of its 32 codes, which the Q4_0 kernel needs to subtract the offset 8 of
 * the weight codes. All three point into the caller's scratch memory. */
typedef struct mr_q8_activations {
    const float *scales;
    const int32_t *sums;
    const int8_t *codes;
} mr_q8_activations;

/* Quantises x of n elements (a multiple of 32) into scratch, which has
 * mr_qmatvec_int8_scratch_bytes(n) bytes, and returns pointers into it.
 * Codes lie in [-127, 127], and a NaN element gets code 0. */
mr_q8_activations mr_q8_activations_quantize(const float *x, int64_t n, void *scratch);

/* Computes the dot product of a Q8_0 or Q4_0 row of n elements with
 * quantised x. Block b's integer sum times (d_b * s_b) goes to float lane
 * b % 8, and the eight lanes are added as mr_qdot_scalar adds them. This
 * is the portable fallback and the reference. Other types return 0. */
float mr_qdot_int8_scalar(mr_qtype type, const void *row, const mr_q8_activations *x,
                          int64_t n);

#if MR_QUANT_SIMD
/* Computes mr_qdot_int8_scalar() with AVX2 + F16C. Integer block sums are
 * exact and the float operations run in the same order without FMA, so
 * the result is bit for bit that of the scalar reference. */
float mr_qdot_int8_simd(mr_qtype type, const void *row, const mr_q8_activations *x,
                        int64_t n);

/* Computes y[r] = mr_qdot_int8_simd of row r for a Q8_0 or Q4_0 matrix of
 * rows x n, with the rows split across OpenMP threads. */
void mr_qmatvec_int8_simd(mr_qtype type, const void *w, int64_t rows, int64_t n,
                          const mr_q8_activations *x, float *y);
#endif

#endif /* MR_LM_QUANT_INTERNAL_H */
