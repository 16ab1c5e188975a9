/*
 * Matrix product throughput: mr_tensor_matmul (forward, gradients off)
 * against a direct cblas_sgemm call on the same operands, at the sizes the
 * models use. Prints GFLOP/s (2 M N K per product) of the best of several
 * repeats and the ratio engine / BLAS.
 *
 *     bench_gemm [--threads N] [--repeats N]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/common.h"
#include "multiround/rng.h"
#include "multiround/tensor.h"

/* One product: x [M, K] times w [N, K]^T (a linear layer) or w [K, N]. */
typedef struct gemm_case {
    const char *label;
    int64_t m, n, k;
    bool trans_b;
} gemm_case;

static const gemm_case cases[] = {
    {"linear 3200x64 -> 256", 3200, 256, 64, true},
    {"linear 3200x256 -> 64", 3200, 64, 256, true},
    {"logits 3200x64 -> 12000", 3200, 12000, 64, true},
    {"square 1024^3", 1024, 1024, 1024, false},
};

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Best time in seconds of `repeats` engine products. */
static double time_engine(const gemm_case *c, mr_ctx *ctx, mr_tensor *x, mr_tensor *w,
                          int repeats) {
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        mr_ctx_reset(ctx);
        double start = seconds();
        mr_tensor *y = mr_tensor_matmul(ctx, x, w, c->trans_b ? MR_MATMUL_TRANS_B : 0);
        double elapsed = seconds() - start;
        if (y == NULL) {
            fprintf(stderr, "bench_gemm: matmul failed: %s\n", mr_ctx_error_message(ctx));
            exit(1);
        }
        best = elapsed < best ? elapsed : best;
    }
    return best;
}

/* Best time in seconds of `repeats` direct cblas_sgemm calls. */
static double time_blas(const gemm_case *c, const float *x, const float *w, float *y,
                        int repeats) {
    double best = 1e30;
    int ldb = c->trans_b ? (int)c->k : (int)c->n;
    for (int r = 0; r < repeats; r++) {
        double start = seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, c->trans_b ? CblasTrans : CblasNoTrans,
                    (int)c->m, (int)c->n, (int)c->k, 1.0f, x, (int)c->k, w, ldb, 0.0f, y,
                    (int)c->n);
        double elapsed = seconds() - start;
        best = elapsed < best ? elapsed : best;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = 0, repeats = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--repeats") == 0) {
            repeats = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "usage: bench_gemm [--threads N] [--repeats N]\n");
            return 2;
        }
    }
    mr_threads_set(threads);
    if (repeats < 1) {
        repeats = 1;
    }

    printf("bench_gemm: BLAS %s, %d threads, best of %d\n", mr_blas_name(), mr_threads_get(),
           repeats);
    printf("%-26s %12s %12s %8s\n", "product", "engine GF/s", "BLAS GF/s", "ratio");
    mr_ctx *operands = mr_ctx_create(0);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_ctx_set_grad_enabled(ctx, false);
    mr_rng rng;
    mr_rng_init(&rng, 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const gemm_case *c = &cases[i];
        mr_ctx_reset(operands);
        mr_tensor *x = mr_tensor_new2d(operands, MR_F32, c->m, c->k);
        mr_tensor *w = c->trans_b ? mr_tensor_new2d(operands, MR_F32, c->n, c->k)
                                  : mr_tensor_new2d(operands, MR_F32, c->k, c->n);
        mr_tensor *y = mr_tensor_new2d(operands, MR_F32, c->m, c->n);
        if (x == NULL || w == NULL || y == NULL) {
            fprintf(stderr, "bench_gemm: %s\n", mr_ctx_error_message(operands));
            return 1;
        }
        mr_tensor_init_uniform(x, -1.0f, 1.0f, &rng);
        mr_tensor_init_uniform(w, -1.0f, 1.0f, &rng);

        /* One untimed call of each warms caches and thread pools. */
        time_engine(c, ctx, x, w, 1);
        time_blas(c, x->data, w->data, y->data, 1);
        double engine = time_engine(c, ctx, x, w, repeats);
        double blas = time_blas(c, x->data, w->data, y->data, repeats);
        double flops = 2.0 * (double)c->m * (double)c->n * (double)c->k;
        printf("%-26s %12.1f %12.1f %8.2f\n", c->label, flops / engine * 1e-9,
               flops / blas * 1e-9, blas / engine);
    }
    mr_ctx_free(ctx);
    mr_ctx_free(operands);
    return 0;
}
