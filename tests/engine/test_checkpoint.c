/*
 * mr_tensor_checkpoint(). The output and every gradient must equal those
 * of running the function directly, for contiguous and strided inputs
 * and for parameters the function reads. Errors inside the function must
 * reach the caller's context, and the peak counts the scratch contexts.
 */
#include <stdlib.h>
#include <string.h>

#include "test.h"

/* Parameters of the test function, in their own context. */
typedef struct layer {
    mr_tensor *w; /* [8, 8] */
    mr_tensor *b; /* [8] */
} layer;

/* y = x + silu(x W^T + b) * tanh(x), with x [4, 8]: several operations
 * whose intermediates checkpointing drops. */
static mr_tensor *layer_fn(mr_ctx *ctx, mr_tensor **inputs, void *data) {
    const layer *l = data;
    mr_tensor *x = inputs[0];
    mr_tensor *h = mr_tensor_silu(ctx, mr_tensor_linear(ctx, x, l->w, l->b));
    return mr_tensor_add(ctx, x, mr_tensor_mul(ctx, h, mr_tensor_tanh(ctx, x)));
}

/* A function that fails on its second input's shape. */
static mr_tensor *failing_fn(mr_ctx *ctx, mr_tensor **inputs, void *data) {
    (void)data;
    return mr_tensor_add(ctx, inputs[0], inputs[1]);
}

/* Runs `depth` layers on x (a transpose of a [8, 4] leaf when strided),
 * checkpointed or not; returns the loss and copies the gradients. */
static float run_chain(const layer *layers, int depth, bool checkpoint, bool strided,
                       float *grad_x, float *grad_params, mr_tensor *flat, size_t *peak) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *leaf = mr_tensor_new2d(ctx, MR_F32, strided ? 8 : 4, strided ? 4 : 8);
    mr_test_fill_uniform(leaf, -1.0f, 1.0f, 7);
    mr_tensor_set_requires_grad(leaf, true);
    mr_tensor *x = strided ? mr_tensor_transpose(ctx, leaf, 0, 1) : leaf;
    mr_tensor_zero_grad(flat);

    for (int i = 0; i < depth; i++) {
        void *data = (void *)&layers[i];
        x = checkpoint ? mr_tensor_checkpoint(ctx, layer_fn, data, 1, &x)
                       : layer_fn(ctx, &x, data);
    }
    mr_tensor *loss = mr_tensor_mean(ctx, mr_tensor_mul(ctx, x, x), -1, false);
    loss = mr_tensor_sum(ctx, loss, -1, false);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    CHECK_CTX_OK(ctx);

    float value = loss != NULL ? loss->data[0] : NAN;
    if (leaf->grad != NULL) {
        memcpy(grad_x, leaf->grad, 32 * sizeof(float));
    }
    memcpy(grad_params, flat->grad, (size_t)mr_tensor_numel(flat) * sizeof(float));
    *peak = mr_ctx_peak_bytes(ctx);
    mr_ctx_free(ctx);
    return value;
}

static void checkpoint_equals_direct_run(void) {
    enum { DEPTH = 6 };
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *flat = mr_tensor_new1d(params, MR_F32, DEPTH * 72);
    mr_test_fill_uniform(flat, -0.5f, 0.5f, 3);
    mr_tensor_set_param(flat);
    layer layers[DEPTH];
    for (int i = 0; i < DEPTH; i++) {
        mr_tensor *w = mr_tensor_slice(params, flat, 0, i * 72, 64);
        int64_t shape[2] = {8, 8};
        layers[i].w = mr_tensor_reshape(params, w, 2, shape);
        layers[i].b = mr_tensor_slice(params, flat, 0, i * 72 + 64, 8);
    }

    for (int strided = 0; strided < 2; strided++) {
        float gx[2][32] = {{0}};
        float gp[2][DEPTH * 72];
        size_t peak[2];
        float direct = run_chain(layers, DEPTH, false, strided, gx[0], gp[0], flat, &peak[0]);
        float checkpointed = run_chain(layers, DEPTH, true, strided, gx[1], gp[1], flat, &peak[1]);
        CHECK(direct == checkpointed);
        CHECK(gx[0][5] != 0.0f);
        CHECK(gp[0][DEPTH * 72 - 1] != 0.0f);

        /* A contiguous input gives the same gradients bit for bit. A
         * strided one reaches the function as a contiguous copy, so ops
         * skip the copies they make of strided inputs, and the terms of
         * a gradient add up in another order: float32 rounding only. */
        double tolerance = strided ? 1e-6 : 0.0;
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(gx[1], gx[0], 32, tolerance, tolerance), 0);
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(gp[1], gp[0], DEPTH * 72, tolerance, tolerance), 0);
        CHECK(peak[1] > 0);
    }
    mr_ctx_free(params);
}

/* The backward pass through checkpoints matches finite differences too,
 * so the equality above is not two identical mistakes. */
static void checkpoint_gradient_is_correct(void) {
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *w = mr_tensor_new2d(params, MR_F32, 8, 8);
    mr_tensor *b = mr_tensor_new1d(params, MR_F32, 8);
    mr_test_fill_uniform(w, -0.5f, 0.5f, 4);
    mr_test_fill_uniform(b, -0.5f, 0.5f, 5);
    layer l = {w, b};

    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new2d(ctx, MR_F32, 4, 8);
    mr_test_fill_uniform(x, -1.0f, 1.0f, 6);
    mr_tensor_set_requires_grad(x, true);
    mr_tensor *y = mr_tensor_checkpoint(ctx, layer_fn, &l, 1, &x);
    mr_tensor *loss = mr_tensor_sum(ctx, mr_tensor_sum(ctx, y, -1, false), -1, false);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);

    /* Central differences on three entries of x, in double. */
    int entries[3] = {0, 13, 31};
    for (int k = 0; k < 3; k++) {
        int i = entries[k];
        float saved = x->data[i];
        double sums[2];
        for (int side = 0; side < 2; side++) {
            x->data[i] = saved + (side == 0 ? 1e-3f : -1e-3f);
            mr_ctx *probe = mr_ctx_create(0);
            mr_ctx_set_grad_enabled(probe, false);
            mr_tensor *copy = mr_tensor_from_f32(probe, 2, x->shape, x->data);
            mr_tensor *out = layer_fn(probe, &copy, &l);
            sums[side] = 0.0;
            for (int j = 0; j < 32; j++) {
                sums[side] += out->data[j];
            }
            mr_ctx_free(probe);
        }
        x->data[i] = saved;
        CHECK_NEAR(x->grad[i], (sums[0] - sums[1]) / 2e-3, 2e-3);
    }
    mr_ctx_free(ctx);
    mr_ctx_free(params);
}

static void checkpoint_passes_errors_on(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *inputs[2] = {mr_tensor_new2d(ctx, MR_F32, 2, 3), mr_tensor_new2d(ctx, MR_F32, 4, 5)};
    mr_tensor_fill(inputs[0], 1.0f);
    mr_tensor_fill(inputs[1], 1.0f);
    mr_tensor_set_requires_grad(inputs[0], true);
    CHECK(mr_tensor_checkpoint(ctx, failing_fn, NULL, 2, inputs) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "[2, 3]") != NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "[4, 5]") != NULL);

    mr_ctx_reset(ctx);
    CHECK(mr_tensor_checkpoint(ctx, NULL, NULL, 0, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "no function") != NULL);

    mr_ctx_reset(ctx);
    mr_tensor *many[MR_MAX_SRC + 1] = {0};
    CHECK(mr_tensor_checkpoint(ctx, failing_fn, NULL, MR_MAX_SRC + 1, many) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);

    /* A NULL input means an earlier error: no new message. */
    mr_ctx_reset(ctx);
    mr_tensor *missing[1] = {NULL};
    CHECK(mr_tensor_checkpoint(ctx, layer_fn, NULL, 1, missing) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_OK);
    mr_ctx_free(ctx);
}

/* Without recording the function runs in ctx directly; a result that does
 * not require a gradient is not recorded. Peak equals used bytes then. */
static void checkpoint_without_recording(void) {
    mr_ctx *params = mr_ctx_create(0);
    layer l = {mr_tensor_new2d(params, MR_F32, 8, 8), mr_tensor_new1d(params, MR_F32, 8)};
    mr_test_fill_uniform(l.w, -0.5f, 0.5f, 8);
    mr_test_fill_uniform(l.b, -0.5f, 0.5f, 9);

    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new2d(ctx, MR_F32, 4, 8);
    mr_test_fill_uniform(x, -1.0f, 1.0f, 10);
    mr_tensor *direct = layer_fn(ctx, &x, &l);

    mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *off = mr_tensor_checkpoint(ctx, layer_fn, &l, 1, &x);
    CHECK(off != NULL);
    CHECK(off == NULL || strcmp(off->op, "checkpoint") != 0);
    mr_ctx_set_grad_enabled(ctx, true);
    mr_tensor *constant = mr_tensor_checkpoint(ctx, layer_fn, &l, 1, &x);
    CHECK(constant != NULL);
    CHECK(constant == NULL || !mr_tensor_requires_grad(constant));
    if (off != NULL && constant != NULL) {
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(off->data, direct->data, 32, 0.0, 0.0), 0);
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(constant->data, direct->data, 32, 0.0, 0.0), 0);
    }
    CHECK(mr_ctx_peak_bytes(ctx) >= mr_ctx_used_bytes(ctx));

    mr_ctx_reset(ctx);
    CHECK_INT_EQ(mr_ctx_peak_bytes(ctx), 0);
    mr_ctx_free(ctx);
    mr_ctx_free(params);
}

int main(void) {
    MR_RUN(checkpoint_equals_direct_run);
    MR_RUN(checkpoint_gradient_is_correct);
    MR_RUN(checkpoint_passes_errors_on);
    MR_RUN(checkpoint_without_recording);
    return mr_test_finish();
}
