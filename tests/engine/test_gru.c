/*
 * GRU tests: values and gradients against torch.nn.GRU
 * (fixtures/gru.json, written by fixtures/torch_gru.py) and against finite
 * differences with and without h0 and biases, for T = 1 and T = 5.
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

/* Which optional GRU inputs a case passes. */
typedef struct gru_case {
    const char *name;
    bool has_h0, has_b_ih, has_b_hh;
} gru_case;

/* Input names in the order of mr_tensor_gru's arguments. */
static const char *gru_input_names[6] = {"x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"};

static bool gru_input_present(const gru_case *c, int i) {
    return (i != 1 || c->has_h0) && (i != 4 || c->has_b_ih) && (i != 5 || c->has_b_hh);
}

static void gru_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/gru.json");
    gru_case cases[] = {
        {"gru_h0_bias", true, true, true},
        {"gru_no_h0", false, true, true},
        {"gru_no_bias_t1", true, false, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *in[6] = {NULL};
        for (int i = 0; i < 6; i++) {
            if (gru_input_present(&cases[c], i)) {
                in[i] = mr_fixture_tensor(fixture, ctx, cases[c].name, gru_input_names[i]);
                if (in[i] != NULL) {
                    mr_tensor_set_requires_grad(in[i], true);
                }
            }
        }
        mr_tensor *r = mr_fixture_tensor(fixture, ctx, cases[c].name, "r");
        mr_tensor *out = mr_tensor_gru(ctx, in[0], in[1], in[2], in[3], in[4], in[5]);
        CHECK_CTX_OK(ctx);
        if (out == NULL || r == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        expect_fixture(fixture, ctx, cases[c].name, "out", out->data, mr_tensor_numel(out),
                       1e-5, 1e-5);

        CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
        for (int i = 0; i < 6; i++) {
            if (in[i] == NULL) {
                continue;
            }
            char grad_name[16];
            snprintf(grad_name, sizeof grad_name, "grad_%s", gru_input_names[i]);
            expect_fixture(fixture, ctx, cases[c].name, grad_name, in[i]->grad,
                           mr_tensor_numel(in[i]), 1e-5, 1e-4);
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

/* Gradcheck inputs are the present GRU inputs in argument order. */
static mr_tensor *build_gru(mr_ctx *ctx, mr_tensor **in, void *user) {
    const gru_case *c = user;
    mr_tensor *args[6] = {NULL};
    int next = 0;
    for (int i = 0; i < 6; i++) {
        if (gru_input_present(c, i)) {
            args[i] = in[next++];
        }
    }
    return mr_tensor_gru(ctx, args[0], args[1], args[2], args[3], args[4], args[5]);
}

static void gru_gradients(void) {
    const int64_t batch = 2, inputs = 3, hidden = 4;
    gru_case cases[] = {
        {"h0 and biases", true, true, true},
        {"no h0", false, true, true},
        {"no biases", true, false, false},
        {"b_ih only", false, true, false},
        {"b_hh only", true, false, true},
    };
    int64_t step_counts[2] = {1, 5};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int s = 0; s < 2; s++) {
            mr_ctx *params = mr_ctx_create(0);
            int64_t shapes[6][3] = {{batch, step_counts[s], inputs}, {batch, hidden},
                                    {3 * hidden, inputs},            {3 * hidden, hidden},
                                    {3 * hidden},                    {3 * hidden}};
            int ndims[6] = {3, 2, 2, 2, 1, 1};
            mr_tensor *in[6];
            int count = 0;
            for (int i = 0; i < 6; i++) {
                if (!gru_input_present(&cases[c], i)) {
                    continue;
                }
                mr_tensor *t = mr_tensor_new(params, MR_F32, ndims[i], shapes[i]);
                mr_test_fill_uniform(t, -1, 1, 100 * c + 10 * s + i);
                mr_tensor_set_requires_grad(t, true);
                in[count++] = t;
            }
            char label[48];
            snprintf(label, sizeof label, "gru %s, T=%lld", cases[c].name,
                     (long long)step_counts[s]);
            CHECK_INT_EQ(mr_gradcheck(label, build_gru, in, count, &cases[c], NULL), 0);
            mr_ctx_free(params);
        }
    }
}

static void gru_without_recording_gives_same_values(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new3d(ctx, MR_F32, 3, 4, 2);
    mr_tensor *w_ih = mr_tensor_new2d(ctx, MR_F32, 9, 2);
    mr_tensor *w_hh = mr_tensor_new2d(ctx, MR_F32, 9, 3);
    mr_test_fill_uniform(x, -1, 1, 1);
    mr_test_fill_uniform(w_ih, -1, 1, 2);
    mr_test_fill_uniform(w_hh, -1, 1, 3);
    mr_tensor_set_requires_grad(w_ih, true);

    mr_tensor *recorded = mr_tensor_gru(ctx, x, NULL, w_ih, w_hh, NULL, NULL);
    mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *plain = mr_tensor_gru(ctx, x, NULL, w_ih, w_hh, NULL, NULL);
    CHECK_CTX_OK(ctx);
    CHECK(mr_tensor_requires_grad(recorded));
    CHECK(!mr_tensor_requires_grad(plain));
    CHECK_ARRAY_NEAR(plain->data, recorded->data, 3 * 4 * 3, 0, 0);

    /* The first step from a zero state with no biases has W_hh h = 0, so
     * z = sigmoid(x W_iz^T), n = tanh(x W_in^T) and h = (1 - z) * n. */
    double gate[9];
    for (int g = 0; g < 9; g++) {
        gate[g] = w_ih->data[g * 2] * x->data[0] + w_ih->data[g * 2 + 1] * x->data[1];
    }
    for (int j = 0; j < 3; j++) {
        double z = 1.0 / (1.0 + exp(-gate[3 + j]));
        double n = tanh(gate[6 + j]);
        CHECK_NEAR(plain->data[j], (1.0 - z) * n, 1e-6);
    }
    mr_ctx_free(ctx);
}

static void gru_rejects_bad_shapes(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 3, 4});
    mr_tensor *w_ih = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){15, 4});
    mr_tensor *w_hh = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){15, 4});
    CHECK(mr_tensor_gru(ctx, x, NULL, w_ih, w_hh, NULL, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "w_hh has shape [15, 4], expected [15, 5]") != NULL);

    mr_ctx_reset(ctx);
    x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 3, 4});
    w_ih = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){15, 4});
    w_hh = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){15, 5});
    mr_tensor *h0 = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){3, 5});
    CHECK(mr_tensor_gru(ctx, x, h0, w_ih, w_hh, NULL, NULL) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "h0") != NULL);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(gru_matches_torch);
    MR_RUN(gru_gradients);
    MR_RUN(gru_without_recording_gives_same_values);
    MR_RUN(gru_rejects_bad_shapes);
    return mr_test_finish();
}
