/*
 * Products spread over threads (the GRU's batch rows, batched matrix
 * products and Fourier transforms along an inner axis) must give the
 * values and gradients of one thread. Each case runs once on one thread
 * and once on three, with the same inputs and output gradient, and the
 * two runs are compared. On the machines this was written on they agree
 * bit for bit. The tolerance leaves room for a BLAS whose kernels sum in
 * another order for other matrix sizes.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/common.h"
#include "test.h"

/* Inputs of one case: up to four tensors, all with gradients. */
#define MAX_INPUTS 4

typedef struct spread_case {
    const char *name;
    int n_inputs;
    int ndims[MAX_INPUTS];
    int64_t shapes[MAX_INPUTS][4];
    mr_tensor *(*build)(mr_ctx *ctx, mr_tensor **in);
} spread_case;

/* Output of one run followed by each input's gradient, in one array. */
typedef struct spread_result {
    float *values;
    int64_t count;
} spread_result;

static mr_tensor *build_gru(mr_ctx *ctx, mr_tensor **in) {
    return mr_tensor_gru(ctx, in[0], in[1], in[2], in[3], NULL, NULL);
}

/* Batched product with a transposed view of b: [6, 5, 4] @ [6, 3, 4]^T. */
static mr_tensor *build_matmul_batched(mr_ctx *ctx, mr_tensor **in) {
    return mr_tensor_matmul(ctx, in[0], mr_tensor_transpose(ctx, in[1], 1, 2), 0);
}

/* op(A) transposed against a shared 2-D b, which cannot fold into one
 * product: the gradient of a spreads, that of the shared b sums in order.
 * It is large enough that threads adding to the shared gradient at once
 * are likely, not certain, to change its sums. */
static mr_tensor *build_matmul_shared(mr_ctx *ctx, mr_tensor **in) {
    return mr_tensor_matmul(ctx, in[0], in[1], MR_MATMUL_TRANS_A);
}

/* The item adapter's filter: rdft then irdft along the middle axis. */
static mr_tensor *build_fourier(mr_ctx *ctx, mr_tensor **in) {
    mr_tensor *spectrum = mr_tensor_rdft(ctx, in[0], 1);
    return mr_tensor_irdft(ctx, mr_tensor_mul(ctx, spectrum, spectrum), 1, 6);
}

static const spread_case cases[] = {
    {"gru", 4, {3, 2, 2, 2}, {{7, 5, 3}, {7, 4}, {12, 3}, {12, 4}}, build_gru},
    {"matmul batched", 2, {3, 3}, {{6, 5, 4}, {6, 3, 4}}, build_matmul_batched},
    {"matmul shared b", 2, {3, 2}, {{32, 64, 40}, {64, 48}}, build_matmul_shared},
    {"fourier inner axis", 1, {3}, {{5, 6, 8}}, build_fourier},
};

/* Runs case c on `threads` threads and returns its output and input
 * gradients, or values == NULL after a failed check. */
static spread_result run_case(const spread_case *c, int threads) {
    spread_result result = {NULL, 0};
    mr_threads_set(threads);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *in[MAX_INPUTS];
    for (int i = 0; i < c->n_inputs; i++) {
        in[i] = mr_tensor_new(ctx, MR_F32, c->ndims[i], c->shapes[i]);
        mr_test_fill_uniform(in[i], -1, 1, 17 + (uint64_t)i);
        mr_tensor_set_requires_grad(in[i], true);
    }
    mr_tensor *out = c->build(ctx, in);
    CHECK_CTX_OK(ctx);
    if (out == NULL) {
        mr_ctx_free(ctx);
        return result;
    }

    /* A fixed output gradient, different in every element. */
    mr_tensor *seed = mr_tensor_new(ctx, MR_F32, out->ndim, out->shape);
    mr_test_fill_uniform(seed, -1, 1, 99);
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed->data), MR_OK);

    int64_t count = mr_tensor_numel(out);
    for (int i = 0; i < c->n_inputs; i++) {
        count += mr_tensor_numel(in[i]);
    }
    result.values = malloc((size_t)count * sizeof(float));
    CHECK(result.values != NULL);
    if (result.values != NULL) {
        float *next = result.values;
        memcpy(next, out->data, (size_t)mr_tensor_numel(out) * sizeof(float));
        next += mr_tensor_numel(out);
        for (int i = 0; i < c->n_inputs; i++) {
            CHECK(in[i]->grad != NULL);
            if (in[i]->grad != NULL) {
                memcpy(next, in[i]->grad, (size_t)mr_tensor_numel(in[i]) * sizeof(float));
            }
            next += mr_tensor_numel(in[i]);
        }
        result.count = count;
    }
    mr_ctx_free(ctx);
    return result;
}

static void spread_products_match_one_thread(void) {
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        spread_result serial = run_case(&cases[c], 1);
        spread_result spread = run_case(&cases[c], 3);
        CHECK(serial.values != NULL);
        CHECK(spread.values != NULL);
        CHECK_INT_EQ(spread.count, serial.count);
        if (serial.values != NULL && spread.values != NULL && serial.count == spread.count) {
            mr_test_compare(__FILE__, __LINE__, cases[c].name, spread.values, serial.values,
                            serial.count, 1e-6, 1e-6);
        }
        free(serial.values);
        free(spread.values);
    }
    mr_threads_set(2);
}

int main(void) {
    MR_RUN(spread_products_match_one_thread);
    return mr_test_finish();
}
