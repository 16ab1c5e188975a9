/*
 * The one place that calls BLAS. The build picks BLIS, OpenBLAS or the
 * built-in fallback (MR_BLAS in CMake); the rest of the engine calls
 * mr_sgemm() and never includes a BLAS header.
 */
#ifndef MR_ENGINE_BLAS_H
#define MR_ENGINE_BLAS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Row-major single-precision GEMM: C = alpha * op(A) @ op(B) + beta * C,
 * op(A) is [M, K] and op(B) is [K, N]. lda, ldb and ldc are row strides in
 * elements of A, B and C as stored (before any transpose).
 */
void mr_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              float alpha, const float *a, int64_t lda, const float *b,
              int64_t ldb, float beta, float *c, int64_t ldc);

/* Applies the thread count to the BLAS library, if it has threads. */
void mr_blas_set_threads(int n);

/*
 * True when `count` independent products of op(A) [M, K] by op(B) [K, N]
 * run faster spread over the OpenMP threads, each product on one thread,
 * than one after another with BLAS's own threads. Small products gain the
 * most: each threaded BLAS call starts and joins its threads, which can
 * cost more than the product itself.
 */
bool mr_sgemm_spread(int64_t count, int64_t m, int64_t n, int64_t k);

/*
 * Makes BLAS calls single-threaded until mr_blas_serial_end(): call it
 * before a loop that runs products on OpenMP threads of its own, and pass
 * its result to mr_blas_serial_end() after the loop. The thread count is
 * the BLAS library's global setting, so two such loops must not overlap.
 */
int mr_blas_serial_begin(void);
void mr_blas_serial_end(int saved);

#endif /* MR_ENGINE_BLAS_H */
