/*
 * Rotary position embedding: values and gradients of both layouts against
 * PyTorch (fixtures/rope.json, written by fixtures/torch_rope.py), the
 * relative-position property, finite-difference gradient checks and
 * argument errors.
 *
 * Fixture tolerances: 1e-6 absolute plus 1e-5 relative. Angles and their
 * cosines are computed in double and rounded once; each output adds two
 * float32 products.
 */
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

static int compare_case(const char *case_name, const char *what, const float *actual,
                        const float *expected, int64_t n) {
    char label[96];
    snprintf(label, sizeof label, "%s %s", case_name, what);
    return mr_test_compare(__FILE__, __LINE__, label, actual, expected, n, 1e-6, 1e-5);
}

static void rope_matches_torch(void) {
    const char *layouts[2] = {"adjacent", "halves"};
    const char *kinds[2] = {"default_positions", "given_positions"};
    mr_fixture *fx = mr_fixture_load("fixtures/rope.json");
    if (fx == NULL) {
        return;
    }
    for (int l = 0; l < 2; l++) {
        for (int kind = 0; kind < 2; kind++) {
            char name[64];
            snprintf(name, sizeof name, "rope_%s_%s", layouts[l], kinds[kind]);
            mr_ctx *ctx = mr_ctx_create(0);
            mr_tensor *x = mr_fixture_tensor(fx, ctx, name, "x");
            mr_tensor *positions = kind == 1 ? mr_fixture_tensor_i32(fx, ctx, name, "positions")
                                             : NULL;
            mr_tensor *grad_out = mr_fixture_tensor(fx, ctx, name, "grad_out");
            mr_tensor *expected = mr_fixture_tensor(fx, ctx, name, "out");
            mr_tensor *grad_x = mr_fixture_tensor(fx, ctx, name, "grad_x");
            float theta = (float)mr_fixture_number(fx, name, "theta", 0);
            mr_rope_layout layout = mr_fixture_number(fx, name, "halves", -1) == 1
                                        ? MR_ROPE_HALVES : MR_ROPE_ADJACENT;
            mr_tensor_set_requires_grad(x, true);

            mr_tensor *y = mr_tensor_rope(ctx, x, positions, theta, layout);
            CHECK_CTX_OK(ctx);
            if (y == NULL) {
                mr_ctx_free(ctx);
                continue;
            }
            int64_t n = mr_tensor_numel(x);
            CHECK_INT_EQ(compare_case(name, "out", y->data, expected->data, n), 0);
            CHECK_STATUS(mr_tensor_backward(ctx, y, grad_out->data), MR_OK);
            CHECK_INT_EQ(compare_case(name, "grad_x", x->grad, grad_x->data, n), 0);
            mr_ctx_free(ctx);
        }
    }
    mr_fixture_free(fx);
}

static void rope_hand_values(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    /* D = 4, theta = 100: pair 0 turns by pos, pair 1 by pos / 10. */
    float xv[4] = {1, 2, 3, 4};
    int64_t shape[2] = {1, 4}, pshape[1] = {1};
    int32_t pos[1] = {2};
    mr_tensor *x = mr_tensor_from_f32(ctx, 2, shape, xv);
    mr_tensor *p = mr_tensor_from_i32(ctx, 1, pshape, pos);
    float c0 = cosf(2.0f), s0 = sinf(2.0f), c1 = cosf(0.2f), s1 = sinf(0.2f);

    /* ADJACENT pairs (1, 2) and (3, 4). */
    mr_tensor *a = mr_tensor_rope(ctx, x, p, 100.0f, MR_ROPE_ADJACENT);
    CHECK_CTX_OK(ctx);
    float ea[4] = {1 * c0 - 2 * s0, 1 * s0 + 2 * c0, 3 * c1 - 4 * s1, 3 * s1 + 4 * c1};
    CHECK_ARRAY_NEAR(a->data, ea, 4, 1e-6, 0);

    /* HALVES pairs (1, 3) and (2, 4). */
    mr_tensor *h = mr_tensor_rope(ctx, x, p, 100.0f, MR_ROPE_HALVES);
    float eh[4] = {1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 1 * s0 + 3 * c0, 2 * s1 + 4 * c1};
    CHECK_ARRAY_NEAR(h->data, eh, 4, 1e-6, 0);

    /* Position 0 (the default for row 0) leaves x unchanged. */
    mr_tensor *z = mr_tensor_rope(ctx, x, NULL, 100.0f, MR_ROPE_HALVES);
    CHECK_ARRAY_NEAR(z->data, xv, 4, 0, 0);
    mr_ctx_free(ctx);
}

/* q at position m dotted with k at position n depends only on m - n. */
static void rope_dot_depends_on_offset(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[2] = {1, 8}, pshape[1] = {1};
    mr_tensor *q = mr_tensor_new(ctx, MR_F32, 2, shape);
    mr_tensor *k = mr_tensor_new(ctx, MR_F32, 2, shape);
    mr_test_fill_uniform(q, -1, 1, 150);
    mr_test_fill_uniform(k, -1, 1, 151);
    int32_t pairs[3][2] = {{5, 2}, {13, 10}, {103, 100}};
    for (int layout = 0; layout < 2; layout++) {
        float dots[3];
        for (int i = 0; i < 3; i++) {
            mr_tensor *pm = mr_tensor_from_i32(ctx, 1, pshape, &pairs[i][0]);
            mr_tensor *pn = mr_tensor_from_i32(ctx, 1, pshape, &pairs[i][1]);
            mr_tensor *rq = mr_tensor_rope(ctx, q, pm, 10000.0f, (mr_rope_layout)layout);
            mr_tensor *rk = mr_tensor_rope(ctx, k, pn, 10000.0f, (mr_rope_layout)layout);
            CHECK_CTX_OK(ctx);
            dots[i] = 0;
            for (int j = 0; j < 8; j++) {
                dots[i] += rq->data[j] * rk->data[j];
            }
        }
        CHECK_NEAR(dots[1], dots[0], 1e-5);
        CHECK_NEAR(dots[2], dots[0], 1e-5);
    }
    mr_ctx_free(ctx);
}

typedef struct rope_build {
    mr_tensor *positions;
    float theta;
    mr_rope_layout layout;
} rope_build;

static mr_tensor *build_rope(mr_ctx *ctx, mr_tensor **in, void *user) {
    rope_build *c = user;
    return mr_tensor_rope(ctx, in[0], c->positions, c->theta, c->layout);
}

static void rope_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t shape[4] = {2, 3, 5, 6}, pshape[1] = {5};
    int32_t pos[5] = {7, 0, 3, 250, 1};
    mr_tensor *x = mr_tensor_new(params, MR_F32, 4, shape);
    mr_tensor *positions = mr_tensor_from_i32(params, 1, pshape, pos);
    mr_test_fill_uniform(x, -1, 1, 160);
    mr_tensor_set_requires_grad(x, true);
    for (int layout = 0; layout < 2; layout++) {
        rope_build given = {positions, 500.0f, (mr_rope_layout)layout};
        rope_build plain = {NULL, 10000.0f, (mr_rope_layout)layout};
        CHECK_INT_EQ(mr_gradcheck("rope given positions", build_rope, &x, 1, &given, NULL), 0);
        CHECK_INT_EQ(mr_gradcheck("rope default positions", build_rope, &x, 1, &plain, NULL), 0);
    }
    mr_ctx_free(params);
}

static void rope_rejects_bad_arguments(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *odd = mr_tensor_new2d(ctx, MR_F32, 3, 5);
    CHECK(mr_tensor_rope(ctx, odd, NULL, 10000.0f, MR_ROPE_HALVES) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "D even, got [3, 5]") != NULL);
    mr_ctx_reset(ctx);

    mr_tensor *x = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    int32_t pos[2] = {0, 1};
    int64_t pshape[1] = {2};
    mr_tensor *short_positions = mr_tensor_from_i32(ctx, 1, pshape, pos);
    CHECK(mr_tensor_rope(ctx, x, short_positions, 10000.0f, MR_ROPE_ADJACENT) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "positions must be [T] = [3]") != NULL);
    mr_ctx_reset(ctx);

    x = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    CHECK(mr_tensor_rope(ctx, x, NULL, 0.0f, MR_ROPE_ADJACENT) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "theta") != NULL);
    mr_ctx_reset(ctx);

    x = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    mr_tensor *float_positions = mr_tensor_new1d(ctx, MR_F32, 3);
    CHECK(mr_tensor_rope(ctx, x, float_positions, 10000.0f, MR_ROPE_ADJACENT) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "int32") != NULL);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(rope_matches_torch);
    MR_RUN(rope_hand_values);
    MR_RUN(rope_dot_depends_on_offset);
    MR_RUN(rope_gradients);
    MR_RUN(rope_rejects_bad_arguments);
    return mr_test_finish();
}
