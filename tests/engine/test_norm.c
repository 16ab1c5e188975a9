/*
 * Layer norm and RMS norm: values and gradients against PyTorch
 * (fixtures/norm.json, written by fixtures/torch_norm.py), finite-difference
 * gradient checks on odd shapes, strided inputs and argument errors.
 *
 * Fixture tolerances: the references are float64 results rounded to
 * float32, and the engine computes in float32 with double row sums, so
 * outputs of order 1 agree to a few float32 ulps. Rows offset by 40 lose
 * more (1.4e-6 seen) because the row mean is rounded to float32 before the
 * subtraction, so the check allows 1e-5 absolute plus 1e-4 relative.
 */
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

/* Compares n floats and labels mismatches with the case and tensor names. */
static int compare_case(const char *case_name, const char *what, const float *actual,
                        const float *expected, int64_t n) {
    char label[96];
    snprintf(label, sizeof label, "%s %s", case_name, what);
    return mr_test_compare(__FILE__, __LINE__, label, actual, expected, n, 1e-5, 1e-4);
}

typedef struct norm_fixture_case {
    const char *name;
    bool rms, has_weight, has_bias;
} norm_fixture_case;

static void norm_matches_torch(void) {
    norm_fixture_case cases[] = {
        {"layer_norm_affine", false, true, true},
        {"layer_norm_offset_rows", false, false, false},
        {"layer_norm_weight_only", false, true, false},
        {"rms_norm_weight", true, true, false},
        {"rms_norm_plain", true, false, false},
    };
    mr_fixture *fx = mr_fixture_load("fixtures/norm.json");
    if (fx == NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const norm_fixture_case *c = &cases[i];
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *x = mr_fixture_tensor(fx, ctx, c->name, "x");
        mr_tensor *w = c->has_weight ? mr_fixture_tensor(fx, ctx, c->name, "weight") : NULL;
        mr_tensor *b = c->has_bias ? mr_fixture_tensor(fx, ctx, c->name, "bias") : NULL;
        mr_tensor *grad_out = mr_fixture_tensor(fx, ctx, c->name, "grad_out");
        mr_tensor *expected = mr_fixture_tensor(fx, ctx, c->name, "out");
        mr_tensor *grad_x = mr_fixture_tensor(fx, ctx, c->name, "grad_x");
        float eps = (float)mr_fixture_number(fx, c->name, "eps", -1.0);
        mr_tensor_set_requires_grad(x, true);
        if (w != NULL) {
            mr_tensor_set_requires_grad(w, true);
        }
        if (b != NULL) {
            mr_tensor_set_requires_grad(b, true);
        }

        mr_tensor *y = c->rms ? mr_tensor_rms_norm(ctx, x, w, eps)
                              : mr_tensor_layer_norm(ctx, x, w, b, eps);
        CHECK_CTX_OK(ctx);
        if (y == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        int64_t n = mr_tensor_numel(x);
        CHECK_INT_EQ(compare_case(c->name, "out", y->data, expected->data, n), 0);

        CHECK_STATUS(mr_tensor_backward(ctx, y, grad_out->data), MR_OK);
        CHECK_INT_EQ(compare_case(c->name, "grad_x", x->grad, grad_x->data, n), 0);
        if (w != NULL) {
            mr_tensor *grad_w = mr_fixture_tensor(fx, ctx, c->name, "grad_weight");
            CHECK_INT_EQ(compare_case(c->name, "grad_weight", w->grad, grad_w->data,
                                         mr_tensor_numel(w)), 0);
        }
        if (b != NULL) {
            mr_tensor *grad_b = mr_fixture_tensor(fx, ctx, c->name, "grad_bias");
            CHECK_INT_EQ(compare_case(c->name, "grad_bias", b->grad, grad_b->data,
                                         mr_tensor_numel(b)), 0);
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fx);
}

static void layer_norm_hand_values(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    /* Row [1, 2, 3, 4]: mean 2.5, biased variance 1.25. */
    float values[4] = {1, 2, 3, 4};
    int64_t shape[2] = {1, 4};
    mr_tensor *x = mr_tensor_from_f32(ctx, 2, shape, values);
    mr_tensor *y = mr_tensor_layer_norm(ctx, x, NULL, NULL, 0.0f);
    CHECK_CTX_OK(ctx);
    float inv = 1.0f / sqrtf(1.25f);
    float expected[4] = {-1.5f * inv, -0.5f * inv, 0.5f * inv, 1.5f * inv};
    CHECK_ARRAY_NEAR(y->data, expected, 4, 1e-6, 0);

    /* RMS of [1, 2, 3, 4] is sqrt(7.5). */
    mr_tensor *r = mr_tensor_rms_norm(ctx, x, NULL, 0.0f);
    float rinv = 1.0f / sqrtf(7.5f);
    float rexpected[4] = {rinv, 2 * rinv, 3 * rinv, 4 * rinv};
    CHECK_ARRAY_NEAR(r->data, rexpected, 4, 1e-6, 0);
    mr_ctx_free(ctx);
}

typedef struct norm_build {
    bool rms, weight, bias, transpose;
    float eps;
} norm_build;

/* in[0] = x, in[1] = weight, in[2] = bias, each used when its flag is set. */
static mr_tensor *build_norm(mr_ctx *ctx, mr_tensor **in, void *user) {
    norm_build *c = user;
    mr_tensor *x = c->transpose ? mr_tensor_transpose(ctx, in[0], -1, -2) : in[0];
    mr_tensor *w = c->weight ? in[1] : NULL;
    mr_tensor *b = c->bias ? in[2] : NULL;
    return c->rms ? mr_tensor_rms_norm(ctx, x, w, c->eps)
                  : mr_tensor_layer_norm(ctx, x, w, b, c->eps);
}

static void norm_gradients(void) {
    norm_build cases[] = {
        {false, true, true, false, 1e-5f},  {false, false, false, false, 1e-5f},
        {false, true, false, false, 1e-3f}, {false, false, true, true, 1e-5f},
        {true, true, false, false, 1e-6f},  {true, false, false, false, 1e-5f},
        {true, true, false, true, 1e-5f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_ctx *params = mr_ctx_create(0);
        /* A transposed view normalises over the stored dimension 1. */
        int64_t xs[3] = {2, 3, 7};
        int64_t cols = cases[i].transpose ? 3 : 7;
        mr_tensor *in[3] = {mr_tensor_new(params, MR_F32, 3, xs),
                            mr_tensor_new1d(params, MR_F32, cols),
                            mr_tensor_new1d(params, MR_F32, cols)};
        mr_test_fill_uniform(in[0], -2, 2, 30 + i);
        mr_test_fill_uniform(in[1], 0.5f, 1.5f, 40 + i);
        mr_test_fill_uniform(in[2], -1, 1, 50 + i);
        mr_tensor_set_requires_grad(in[0], true);
        mr_tensor_set_requires_grad(in[1], cases[i].weight);
        mr_tensor_set_requires_grad(in[2], cases[i].bias);
        char label[32];
        snprintf(label, sizeof label, "norm case %zu", i);
        CHECK_INT_EQ(mr_gradcheck(label, build_norm, in, 3, &cases[i], NULL), 0);
        mr_ctx_free(params);
    }
}

static void norm_strided_input_matches_copy(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new3d(ctx, MR_F32, 2, 5, 3);
    mr_test_fill_uniform(x, -1, 1, 61);
    mr_tensor *view = mr_tensor_transpose(ctx, x, 1, 2);
    mr_tensor *copy = mr_tensor_new3d(ctx, MR_F32, 2, 3, 5);
    CHECK_STATUS(mr_tensor_copy(copy, view), MR_OK);

    mr_tensor *a = mr_tensor_layer_norm(ctx, view, NULL, NULL, 1e-5f);
    mr_tensor *b = mr_tensor_layer_norm(ctx, copy, NULL, NULL, 1e-5f);
    CHECK_CTX_OK(ctx);
    CHECK_ARRAY_NEAR(a->data, b->data, 30, 0, 0);
    mr_ctx_free(ctx);
}

static void norm_rejects_bad_arguments(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    mr_tensor *w = mr_tensor_new1d(ctx, MR_F32, 5);
    mr_test_fill_uniform(x, -1, 1, 70);
    CHECK(mr_tensor_layer_norm(ctx, x, w, NULL, 1e-5f) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "weight must have shape [4]") != NULL);
    mr_ctx_reset(ctx);

    x = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    mr_tensor *b = mr_tensor_new2d(ctx, MR_F32, 1, 4);
    CHECK(mr_tensor_layer_norm(ctx, x, NULL, b, 1e-5f) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "bias") != NULL);
    mr_ctx_reset(ctx);

    x = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    CHECK(mr_tensor_rms_norm(ctx, x, NULL, -1.0f) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "eps") != NULL);
    mr_ctx_reset(ctx);

    int32_t ids[2] = {1, 2};
    int64_t shape[1] = {2};
    mr_tensor *ints = mr_tensor_from_i32(ctx, 1, shape, ids);
    CHECK(mr_tensor_rms_norm(ctx, ints, NULL, 1e-5f) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);

    /* A NULL input returns NULL and keeps the first error. */
    CHECK(mr_tensor_layer_norm(ctx, NULL, NULL, NULL, 1e-5f) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "float") != NULL);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(norm_matches_torch);
    MR_RUN(layer_norm_hand_values);
    MR_RUN(norm_gradients);
    MR_RUN(norm_strided_input_matches_copy);
    MR_RUN(norm_rejects_bad_arguments);
    return mr_test_finish();
}
