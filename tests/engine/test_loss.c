/*
 * Loss tests: cross-entropy and binary cross-entropy with logits against
 * PyTorch (fixtures/loss.json, written by fixtures/torch_loss.py), against
 * finite differences, and on edge cases (every target ignored, huge
 * logits, invalid targets).
 */
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

/* Compares count values with tensor `name` of a fixture case. */
static void expect_fixture(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                           const char *name, const float *actual, int64_t count,
                           double atol, double rtol) {
    mr_tensor *expected = mr_fixture_tensor(fixture, ctx, case_name, name);
    if (expected == NULL || actual == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s.%s: no value to compare", case_name, name);
        return;
    }
    CHECK_INT_EQ(mr_tensor_numel(expected), count);
    char label[96];
    snprintf(label, sizeof label, "%s.%s", case_name, name);
    mr_test_compare(__FILE__, __LINE__, label, actual, expected->data, count, atol, rtol);
}

static mr_reduction reduction_of(const char *case_name) {
    if (strstr(case_name, "_sum") != NULL) {
        return MR_REDUCE_SUM;
    }
    return strstr(case_name, "_none") != NULL ? MR_REDUCE_NONE : MR_REDUCE_MEAN;
}

/* ------------------------------------------------------------------------
 * Cross-entropy
 * ------------------------------------------------------------------------ */

static void cross_entropy_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/loss.json");
    const char *cases[] = {"ce_mean", "ce_sum", "ce_none", "ce_ignore_class"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *logits = mr_fixture_tensor(fixture, ctx, cases[i], "logits");
        mr_tensor *targets = mr_fixture_tensor_i32(fixture, ctx, cases[i], "targets");
        mr_tensor *r = mr_fixture_tensor(fixture, ctx, cases[i], "r");
        int32_t ignore_index = (int32_t)mr_fixture_number(fixture, cases[i], "ignore_index", 0);
        if (logits == NULL || targets == NULL || r == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        mr_tensor_set_requires_grad(logits, true);

        mr_tensor *out = mr_tensor_cross_entropy(ctx, logits, targets, ignore_index,
                                                 reduction_of(cases[i]));
        CHECK_CTX_OK(ctx);
        if (out == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        expect_fixture(fixture, ctx, cases[i], "out", out->data, mr_tensor_numel(out), 1e-5,
                       1e-5);
        CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
        expect_fixture(fixture, ctx, cases[i], "grad_logits", logits->grad,
                       mr_tensor_numel(logits), 1e-6, 1e-5);
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

typedef struct cross_entropy_case {
    mr_tensor *targets;
    int32_t ignore_index;
    mr_reduction reduction;
} cross_entropy_case;

static mr_tensor *build_cross_entropy(mr_ctx *ctx, mr_tensor **in, void *user) {
    cross_entropy_case *c = user;
    return mr_tensor_cross_entropy(ctx, in[0], c->targets, c->ignore_index, c->reduction);
}

static void cross_entropy_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);

    /* [3, 5, 7] logits with two ignored targets, and an unbatched [5]. */
    int64_t shape3[3] = {3, 5, 7}, tshape2[2] = {3, 5};
    int32_t t3[15] = {0, 6, -1, 3, 2, 1, 1, 5, 4, 6, 0, -1, 2, 3, 4};
    int64_t shape1[1] = {5};
    int32_t t1[1] = {4};
    mr_tensor *logits3 = mr_tensor_new(params, MR_F32, 3, shape3);
    mr_tensor *logits1 = mr_tensor_new(params, MR_F32, 1, shape1);
    mr_test_fill_uniform(logits3, -3, 3, 1);
    mr_test_fill_uniform(logits1, -3, 3, 2);
    mr_tensor_set_requires_grad(logits3, true);
    mr_tensor_set_requires_grad(logits1, true);
    mr_tensor *targets3 = mr_tensor_from_i32(params, 2, tshape2, t3);
    mr_tensor *targets1 = mr_tensor_from_i32(params, 0, NULL, t1);

    for (int reduction = 0; reduction < 3; reduction++) {
        cross_entropy_case c3 = {targets3, -1, (mr_reduction)reduction};
        cross_entropy_case c1 = {targets1, -1, (mr_reduction)reduction};
        char label[48];
        snprintf(label, sizeof label, "cross_entropy [3,5,7] reduction %d", reduction);
        CHECK_INT_EQ(mr_gradcheck(label, build_cross_entropy, &logits3, 1, &c3, NULL), 0);
        snprintf(label, sizeof label, "cross_entropy [5] reduction %d", reduction);
        CHECK_INT_EQ(mr_gradcheck(label, build_cross_entropy, &logits1, 1, &c1, NULL), 0);
    }
    mr_ctx_free(params);
}

static void cross_entropy_all_ignored(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[2] = {2, 3};
    float values[6] = {1, 2, 3, 4, 5, 6};
    int32_t ignored[2] = {-100, -100};
    int64_t tshape[1] = {2};
    mr_tensor *logits = mr_tensor_from_f32(ctx, 2, shape, values);
    mr_tensor *targets = mr_tensor_from_i32(ctx, 1, tshape, ignored);
    mr_tensor_set_requires_grad(logits, true);

    /* MEAN over no counted targets is 0, and no gradient flows. */
    mr_tensor *mean = mr_tensor_cross_entropy(ctx, logits, targets, -100, MR_REDUCE_MEAN);
    CHECK_CTX_OK(ctx);
    CHECK_NEAR(mean->data[0], 0.0, 0);
    CHECK_STATUS(mr_tensor_backward(ctx, mean, NULL), MR_OK);
    float zeros[6] = {0};
    CHECK_ARRAY_NEAR(logits->grad, zeros, 6, 0, 0);

    mr_tensor *none = mr_tensor_cross_entropy(ctx, logits, targets, -100, MR_REDUCE_NONE);
    CHECK_INT_EQ(none->ndim, 1);
    CHECK_NEAR(none->data[0], 0.0, 0);
    CHECK_NEAR(none->data[1], 0.0, 0);
    mr_ctx_free(ctx);
}

static void cross_entropy_huge_logit(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[2] = {2, 3};
    float values[6] = {1e4f, 0.0f, -1e4f, 0.0f, 1e4f, 3.0f};
    int32_t target_values[2] = {1, 1};
    int64_t tshape[1] = {2};
    mr_tensor *logits = mr_tensor_from_f32(ctx, 2, shape, values);
    mr_tensor *targets = mr_tensor_from_i32(ctx, 1, tshape, target_values);
    mr_tensor_set_requires_grad(logits, true);

    /* Row 0 misses by 1e4; row 1 hits its 1e4 logit, so its loss is 0. */
    mr_tensor *none = mr_tensor_cross_entropy(ctx, logits, targets, -1, MR_REDUCE_NONE);
    CHECK_CTX_OK(ctx);
    CHECK_NEAR(none->data[0], 1e4, 1e-2);
    CHECK_NEAR(none->data[1], 0.0, 1e-6);

    mr_tensor *sum = mr_tensor_cross_entropy(ctx, logits, targets, -1, MR_REDUCE_SUM);
    CHECK(isfinite(sum->data[0]));
    CHECK_STATUS(mr_tensor_backward(ctx, sum, NULL), MR_OK);
    float expected[6] = {1, -1, 0, 0, 0, 0};
    CHECK_ARRAY_NEAR(logits->grad, expected, 6, 1e-6, 0);
    mr_ctx_free(ctx);
}

static void cross_entropy_rejects_bad_input(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[3] = {2, 3, 5}, tshape[2] = {2, 3};
    int32_t target_values[6] = {0, 1, 2, 3, 4, 7};
    mr_tensor *logits = mr_tensor_zeros(ctx, MR_F32, 3, shape);
    mr_tensor *targets = mr_tensor_from_i32(ctx, 2, tshape, target_values);

    CHECK(mr_tensor_cross_entropy(ctx, logits, targets, -100, MR_REDUCE_MEAN) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "target 7") != NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "[1, 2]") != NULL);

    /* Targets that do not match the leading shape. */
    mr_ctx_reset(ctx);
    logits = mr_tensor_zeros(ctx, MR_F32, 3, shape);
    mr_tensor *flat = mr_tensor_from_i32(ctx, 1, (int64_t[]){6}, target_values);
    CHECK(mr_tensor_cross_entropy(ctx, logits, flat, -100, MR_REDUCE_MEAN) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "[6]") != NULL);
    mr_ctx_free(ctx);
}

/* ------------------------------------------------------------------------
 * Binary cross-entropy with logits
 * ------------------------------------------------------------------------ */

static void bce_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/loss.json");
    const char *cases[] = {"bce_mean", "bce_sum", "bce_none", "bce_row_weight"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *logits = mr_fixture_tensor(fixture, ctx, cases[i], "logits");
        mr_tensor *targets = mr_fixture_tensor(fixture, ctx, cases[i], "targets");
        mr_tensor *weight = mr_fixture_tensor(fixture, ctx, cases[i], "weight");
        mr_tensor *r = mr_fixture_tensor(fixture, ctx, cases[i], "r");
        if (logits == NULL || targets == NULL || weight == NULL || r == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        mr_tensor_set_requires_grad(logits, true);
        mr_tensor_set_requires_grad(weight, true);

        mr_tensor *out = mr_tensor_bce_with_logits(ctx, logits, targets, weight,
                                                   reduction_of(cases[i]));
        CHECK_CTX_OK(ctx);
        if (out == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        expect_fixture(fixture, ctx, cases[i], "out", out->data, mr_tensor_numel(out), 1e-5,
                       1e-5);
        CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
        expect_fixture(fixture, ctx, cases[i], "grad_logits", logits->grad,
                       mr_tensor_numel(logits), 1e-6, 1e-5);
        expect_fixture(fixture, ctx, cases[i], "grad_weight", weight->grad,
                       mr_tensor_numel(weight), 1e-5, 1e-5);
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

typedef struct bce_case {
    mr_tensor *targets;
    bool has_weight;
    mr_reduction reduction;
} bce_case;

static mr_tensor *build_bce(mr_ctx *ctx, mr_tensor **in, void *user) {
    bce_case *c = user;
    return mr_tensor_bce_with_logits(ctx, in[0], c->targets, c->has_weight ? in[1] : NULL,
                                     c->reduction);
}

static void bce_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t shape[3] = {2, 3, 5};
    mr_tensor *logits = mr_tensor_new(params, MR_F32, 3, shape);
    mr_tensor *targets = mr_tensor_new(params, MR_F32, 3, shape);
    mr_test_fill_uniform(logits, -4, 4, 3);
    mr_test_fill_uniform(targets, 0, 1, 4);
    mr_tensor_set_requires_grad(logits, true);

    /* Weights of shape [5] (last dimension), [3, 1] and [2, 1, 1]. */
    int64_t weight_shapes[3][3] = {{5}, {3, 1}, {2, 1, 1}};
    int weight_ndims[3] = {1, 2, 3};
    for (int w = -1; w < 3; w++) {
        mr_tensor *weight = NULL;
        if (w >= 0) {
            weight = mr_tensor_new(params, MR_F32, weight_ndims[w], weight_shapes[w]);
            mr_test_fill_uniform(weight, 0.5f, 1.5f, 10 + w);
            mr_tensor_set_requires_grad(weight, true);
        }
        for (int reduction = 0; reduction < 3; reduction++) {
            bce_case c = {targets, weight != NULL, (mr_reduction)reduction};
            mr_tensor *in[2] = {logits, weight};
            char label[48];
            snprintf(label, sizeof label, "bce weight case %d reduction %d", w, reduction);
            CHECK_INT_EQ(mr_gradcheck(label, build_bce, in, weight != NULL ? 2 : 1, &c, NULL),
                         0);
        }
    }
    mr_ctx_free(params);
}

static void bce_large_logits_stay_finite(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float x[4] = {100.0f, -100.0f, 100.0f, -100.0f};
    float y[4] = {1.0f, 1.0f, 0.0f, 0.0f};
    int64_t shape[1] = {4};
    mr_tensor *logits = mr_tensor_from_f32(ctx, 1, shape, x);
    mr_tensor *targets = mr_tensor_from_f32(ctx, 1, shape, y);
    mr_tensor_set_requires_grad(logits, true);

    mr_tensor *out = mr_tensor_bce_with_logits(ctx, logits, targets, NULL, MR_REDUCE_NONE);
    CHECK_CTX_OK(ctx);
    float expected[4] = {0.0f, 100.0f, 100.0f, 0.0f};
    CHECK_ARRAY_NEAR(out->data, expected, 4, 1e-5, 1e-6);

    float seed[4] = {1, 1, 1, 1};
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);
    float expected_grad[4] = {0.0f, -1.0f, 1.0f, 0.0f};
    CHECK_ARRAY_NEAR(logits->grad, expected_grad, 4, 1e-6, 0);
    mr_ctx_free(ctx);
}

static void bce_rejects_bad_weight(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[2] = {3, 4}, wide[2] = {2, 3}, tall[3] = {2, 3, 4};
    mr_tensor *logits = mr_tensor_zeros(ctx, MR_F32, 2, shape);
    mr_tensor *targets = mr_tensor_zeros(ctx, MR_F32, 2, shape);

    mr_tensor *mismatched = mr_tensor_zeros(ctx, MR_F32, 2, wide);
    CHECK(mr_tensor_bce_with_logits(ctx, logits, targets, mismatched, MR_REDUCE_MEAN) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);

    /* A weight that would enlarge the result is rejected too. */
    mr_ctx_reset(ctx);
    logits = mr_tensor_zeros(ctx, MR_F32, 2, shape);
    targets = mr_tensor_zeros(ctx, MR_F32, 2, shape);
    mr_tensor *larger = mr_tensor_zeros(ctx, MR_F32, 3, tall);
    CHECK(mr_tensor_bce_with_logits(ctx, logits, targets, larger, MR_REDUCE_MEAN) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "[2, 3, 4]") != NULL);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(cross_entropy_matches_torch);
    MR_RUN(cross_entropy_gradients);
    MR_RUN(cross_entropy_all_ignored);
    MR_RUN(cross_entropy_huge_logit);
    MR_RUN(cross_entropy_rejects_bad_input);
    MR_RUN(bce_matches_torch);
    MR_RUN(bce_gradients);
    MR_RUN(bce_large_logits_stay_finite);
    MR_RUN(bce_rejects_bad_weight);
    return mr_test_finish();
}
