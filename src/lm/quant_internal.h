/*
 * Private to src/lm: the two implementations behind mr_qdot(). The scalar
 * loops in quant.c are the portable fallback and the reference that the
 * tests compare the SIMD kernels of quant_simd.c with.
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

#endif /* MR_LM_QUANT_INTERNAL_H */
