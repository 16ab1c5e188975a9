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
 * Calls product(i, arg) for every i in [0, count). With spread, the calls
 * are shared out over the OpenMP threads (static schedule) and BLAS runs
 * single-threaded meanwhile, so each product must write only its own
 * memory. Without, they run in order on the calling thread, with BLAS
 * threaded as usual. BLAS's thread count is a global setting, so two
 * spread loops must not run at once.
 */
void mr_sgemm_each(int64_t count, bool spread, void (*product)(int64_t i, void *arg),
                   void *arg);

#endif /* MR_ENGINE_BLAS_H */
