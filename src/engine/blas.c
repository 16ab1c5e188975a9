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
int64_t bli_thread_get_num_threads(void);
#elif defined(MR_BLAS_OPENBLAS)
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
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

/*
 * Spreading wins when there are at least two products per thread, or when
 * each product is small (here under 2^21 multiply-adds, about 0.1 ms on
 * one core), where BLAS's own threads cost more to start than they save.
 */
bool mr_sgemm_spread(int64_t count, int64_t m, int64_t n, int64_t k) {
    int threads = mr_threads_get();
    if (threads < 2 || count < 2) {
        return false;
    }
    return count >= 2 * (int64_t)threads || m * n * k < ((int64_t)1 << 21);
}

/* The BLAS library's thread count now (its environment variable or the
 * last mr_blas_set_threads()), or 1 when it runs on the caller's thread. */
static int blas_get_threads(void) {
#if defined(MR_BLAS_BLIS)
    return (int)bli_thread_get_num_threads();
#elif defined(MR_BLAS_OPENBLAS)
    return openblas_get_num_threads();
#else
    return 1;
#endif
}

/*
 * The serial branch must not enter a parallel region. Inside a one-thread
 * region (an OpenMP if clause that is false, say), each threaded BLAS
 * call opens a nested team, and libgomp started and ended a thread for
 * every such call: thousands a second in a training step.
 */
void mr_sgemm_each(int64_t count, bool spread, void (*product)(int64_t i, void *arg),
                   void *arg) {
    if (!spread) {
        for (int64_t i = 0; i < count; i++) {
            product(i, arg);
        }
        return;
    }

    /* NOTE: BLAS's thread count is one setting for the whole process, so
     * a caller that runs engine work on two of its own threads at once may
     * see the other's BLAS calls run single-threaded meanwhile. */
    int saved = blas_get_threads();
    if (saved > 1) {
        mr_blas_set_threads(1);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        product(i, arg);
    }
    if (saved > 1) {
        mr_blas_set_threads(saved);
    }
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
