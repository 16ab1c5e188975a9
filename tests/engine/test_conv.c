/*
 * Dilated causal convolution tests: values and gradients against F.conv1d
 * with left padding (fixtures/conv.json, written by fixtures/torch_conv.py),
 * finite differences for K = 1, 2, 3 and dilation 1, 2, 4 with T shorter
 * than the receptive field, causality, and argument checks.
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

static void conv_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/conv.json");
    struct {
        const char *name;
        bool has_bias;
    } cases[] = {
        {"conv_k3_d2", true}, {"conv_k2_d4", true}, {"conv_k3_d1", false}, {"conv_k1_d1", true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *name = cases[c].name;
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *x = mr_fixture_tensor(fixture, ctx, name, "x");
        mr_tensor *w = mr_fixture_tensor(fixture, ctx, name, "w");
        mr_tensor *bias = cases[c].has_bias ? mr_fixture_tensor(fixture, ctx, name, "bias") : NULL;
        mr_tensor *r = mr_fixture_tensor(fixture, ctx, name, "r");
        int dilation = (int)mr_fixture_number(fixture, name, "dilation", 0);
        if (x == NULL || w == NULL || r == NULL || (cases[c].has_bias && bias == NULL)) {
            mr_ctx_free(ctx);
            continue;
        }
        mr_tensor_set_requires_grad(x, true);
        mr_tensor_set_requires_grad(w, true);
        if (bias != NULL) {
            mr_tensor_set_requires_grad(bias, true);
        }

        mr_tensor *out = mr_tensor_conv1d_causal(ctx, x, w, bias, dilation);
        CHECK_CTX_OK(ctx);
        if (out == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        expect_fixture(fixture, ctx, name, "out", out->data, mr_tensor_numel(out), 1e-5, 1e-5);
        CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
        expect_fixture(fixture, ctx, name, "grad_x", x->grad, mr_tensor_numel(x), 1e-5, 1e-5);
        expect_fixture(fixture, ctx, name, "grad_w", w->grad, mr_tensor_numel(w), 1e-5, 1e-5);
        if (bias != NULL) {
            expect_fixture(fixture, ctx, name, "grad_bias", bias->grad, mr_tensor_numel(bias),
                           1e-5, 1e-5);
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

typedef struct conv_case {
    int dilation;
    bool has_bias;
} conv_case;

static mr_tensor *build_conv(mr_ctx *ctx, mr_tensor **in, void *user) {
    const conv_case *c = user;
    return mr_tensor_conv1d_causal(ctx, in[0], in[1], c->has_bias ? in[2] : NULL, c->dilation);
}

static void conv_gradients(void) {
    /* T = 3 is shorter than the receptive field 1 + (K-1)*dilation whenever
     * (K-1)*dilation >= 3, so some taps read only the zero padding. */
    const int64_t batch = 2, steps = 3, cin = 3, cout = 2;
    int dilations[3] = {1, 2, 4};
    for (int64_t taps = 1; taps <= 3; taps++) {
        for (int d = 0; d < 3; d++) {
            mr_ctx *params = mr_ctx_create(0);
            conv_case c = {dilations[d], (taps + d) % 2 == 0};
            mr_tensor *in[3] = {mr_tensor_new3d(params, MR_F32, batch, steps, cin),
                                mr_tensor_new3d(params, MR_F32, cout, cin, taps),
                                mr_tensor_new1d(params, MR_F32, cout)};
            for (int i = 0; i < 3; i++) {
                mr_test_fill_uniform(in[i], -1, 1, (uint64_t)(100 * taps + 10 * d + i));
                mr_tensor_set_requires_grad(in[i], true);
            }
            char label[64];
            snprintf(label, sizeof label, "conv K=%lld dilation=%d bias=%d", (long long)taps,
                     c.dilation, c.has_bias);
            CHECK_INT_EQ(mr_gradcheck(label, build_conv, in, c.has_bias ? 3 : 2, &c, NULL), 0);
            mr_ctx_free(params);
        }
    }
}

static void conv_is_causal(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    const int64_t steps = 9, cin = 2, cout = 3;
    mr_tensor *x = mr_tensor_new3d(ctx, MR_F32, 1, steps, cin);
    mr_tensor *w = mr_tensor_new3d(ctx, MR_F32, cout, cin, 3);
    mr_test_fill_uniform(x, -1, 1, 1);
    mr_test_fill_uniform(w, -1, 1, 2);
    mr_tensor *before = mr_tensor_conv1d_causal(ctx, x, w, NULL, 2);

    /* Changing step 4 changes only steps 4, 6 and 8 (dilation 2, K = 3). */
    x->data[4 * cin] += 1.0f;
    mr_tensor *after = mr_tensor_conv1d_causal(ctx, x, w, NULL, 2);
    CHECK_CTX_OK(ctx);
    for (int64_t t = 0; t < steps; t++) {
        bool reached = t == 4 || t == 6 || t == 8;
        for (int64_t o = 0; o < cout; o++) {
            float delta = after->data[t * cout + o] - before->data[t * cout + o];
            if (reached) {
                /* The change is w[o][0][k] for the tap k that reads step 4. */
                int64_t k = 2 - (t - 4) / 2;
                CHECK_NEAR(delta, w->data[(o * cin + 0) * 3 + k], 1e-5);
            } else {
                CHECK_NEAR(delta, 0.0, 0);
            }
        }
    }
    mr_ctx_free(ctx);
}

static void conv_rejects_bad_arguments(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 5, 3});
    mr_tensor *w = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){4, 3, 2});
    CHECK(mr_tensor_conv1d_causal(ctx, x, w, NULL, 0) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "dilation is 0") != NULL);

    mr_ctx_reset(ctx);
    x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 5, 3});
    w = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){4, 2, 2});
    CHECK(mr_tensor_conv1d_causal(ctx, x, w, NULL, 1) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);

    mr_ctx_reset(ctx);
    x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 5, 3});
    w = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){4, 3, 2});
    mr_tensor *bias = mr_tensor_zeros(ctx, MR_F32, 1, (int64_t[]){3});
    CHECK(mr_tensor_conv1d_causal(ctx, x, w, bias, 1) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "bias has shape [3], expected [4]") != NULL);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(conv_matches_torch);
    MR_RUN(conv_gradients);
    MR_RUN(conv_is_causal);
    MR_RUN(conv_rejects_bad_arguments);
    return mr_test_finish();
}
