/*
 * GEMM through the BLAS chosen at build time.
 *
 * BLIS is the default: on the 2-core Xeon machines this project is built
 * on, Debian 12's BLIS 0.9.0 ran 1024^3 SGEMM at about 138 GFLOP/s on two
 * threads against about 64 for Debian's OpenBLAS 0.3.21, which detects the
 * processor as "Prescott" and falls back to SSE3 kernels.
 */
#include <stddef.h>

#include "blas.h"
#include "multiround/common.h"

#if defined(MR_BLAS_BLIS) || defined(MR_BLAS_OPENBLAS)
#include <cblas.h>
#endif

#if defined(MR_BLAS_BLIS)
/* From blis.h, declared here so that this file need not parse its 40,000
 * lines; dim_t is int64_t in Debian's 64-bit build. */
void bli_thread_set_num_threads(int64_t n_threads);
#elif defined(MR_BLAS_OPENBLAS)
void openblas_set_num_threads(int num_threads);
#endif

const char *mr_blas_name(void) {
#if defined(MR_BLAS_BLIS)
    return "blis";
#elif defined(MR_BLAS_OPENBLAS)
    return "openblas";
#else
    return "none";
#endif
}

void mr_blas_set_threads(int n) {
#if defined(MR_BLAS_BLIS)
    bli_thread_set_num_threads(n);
#elif defined(MR_BLAS_OPENBLAS)
    openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

#if !defined(MR_BLAS_BLIS) && !defined(MR_BLAS_OPENBLAS)
/* Plain loops for builds without BLAS: correct, and about ten times slower
 * than a tuned library. The i-p-j order keeps the inner loop contiguous
 * when B is not transposed. */
static void sgemm_fallback(bool trans_a, bool trans_b, int64_t m, int64_t n,
                           int64_t k, float alpha, const float *a, int64_t lda,
                           const float *b, int64_t ldb, float beta, float *c,
                           int64_t ldc) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
        float *c_row = c + i * ldc;
        for (int64_t j = 0; j < n; j++) {
            c_row[j] = beta == 0.0f ? 0.0f : beta * c_row[j];
        }
        for (int64_t p = 0; p < k; p++) {
            float a_ip = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
            if (trans_b) {
                for (int64_t j = 0; j < n; j++) {
                    c_row[j] += a_ip * b[j * ldb + p];
                }
            } else {
                const float *b_row = b + p * ldb;
                for (int64_t j = 0; j < n; j++) {
                    c_row[j] += a_ip * b_row[j];
                }
            }
        }
    }
}
#endif

void mr_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              float alpha, const float *a, int64_t lda, const float *b,
              int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m == 0 || n == 0) {
        return;
    }
#if defined(MR_BLAS_BLIS) || defined(MR_BLAS_OPENBLAS)
    if (k == 0) {
        /* BLAS reads no A or B then, but some builds reject lda == 0. */
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < n; j++) {
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            }
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
#else
    sgemm_fallback(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                   ldc);
#endif
}
