/*
 * Real DFT tests: rdft and irdft against torch.fft.rfft/irfft with
 * norm="ortho" (fixtures/fourier.json, written by fixtures/torch_fourier.py)
 * along the first, a middle and the last axis for n = 1, 2, 5, 8 and 50,
 * finite-difference gradients, the round trip irdft(rdft(x)) == x, and an
 * FMLP-Rec-style filter layer compared end to end.
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

static void rdft_known_values(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float values[4] = {1, 2, 3, 4};
    mr_tensor *x = mr_tensor_from_f32(ctx, 1, (int64_t[]){4}, values);

    /* rfft([1, 2, 3, 4]) / sqrt(4) = [5, -1 + 1i, -1]. */
    mr_tensor *spectrum = mr_tensor_rdft(ctx, x, 0);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(spectrum->shape[0], 6);
    float expected[6] = {5, -1, -1, 0, 1, 0};
    CHECK_ARRAY_NEAR(spectrum->data, expected, 6, 1e-6, 0);
    mr_ctx_free(ctx);
}

static void fourier_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/fourier.json");
    const char *cases[] = {"rdft_axis0_n8",  "rdft_middle_n5",  "rdft_last_n50",  "rdft_n1",
                           "rdft_n2",        "irdft_axis0_n8", "irdft_middle_n5", "irdft_last_n50",
                           "irdft_n1",       "irdft_n2"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *x = mr_fixture_tensor(fixture, ctx, cases[c], "x");
        mr_tensor *r = mr_fixture_tensor(fixture, ctx, cases[c], "r");
        int axis = (int)mr_fixture_number(fixture, cases[c], "axis", 0);
        if (x == NULL || r == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        mr_tensor_set_requires_grad(x, true);
        mr_tensor *out;
        if (strncmp(cases[c], "irdft", 5) == 0) {
            int64_t n = (int64_t)mr_fixture_number(fixture, cases[c], "n", 0);
            out = mr_tensor_irdft(ctx, x, axis, n);
        } else {
            out = mr_tensor_rdft(ctx, x, axis);
        }
        CHECK_CTX_OK(ctx);
        if (out == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        expect_fixture(fixture, ctx, cases[c], "out", out->data, mr_tensor_numel(out), 1e-5,
                       1e-5);
        CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
        expect_fixture(fixture, ctx, cases[c], "grad_x", x->grad, mr_tensor_numel(x), 1e-5,
                       1e-5);
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

/* Shapes with n = 1, 2, 5, 8 and 50 along the first, a middle and the
 * last axis; signal_shape is the length-n side of each case. */
typedef struct dft_case {
    int ndim;
    int64_t signal_shape[3];
    int axis;
    bool inverse;
} dft_case;

static const dft_case dft_cases[] = {
    {2, {1, 3}, 0, false},  {3, {2, 2, 3}, 1, false}, {2, {5, 3}, 0, false},
    {3, {2, 5, 3}, 1, false}, {3, {2, 3, 5}, -1, false}, {3, {2, 8, 3}, 1, false},
    {1, {8}, 0, false},     {2, {2, 50}, -1, false},   {2, {50, 2}, 0, false},
};

static mr_tensor *build_dft(mr_ctx *ctx, mr_tensor **in, void *user) {
    const dft_case *c = user;
    if (!c->inverse) {
        return mr_tensor_rdft(ctx, in[0], c->axis);
    }
    int axis = c->axis < 0 ? c->axis + c->ndim : c->axis;
    return mr_tensor_irdft(ctx, in[0], c->axis, c->signal_shape[axis]);
}

static void fourier_gradients(void) {
    for (int inverse = 0; inverse < 2; inverse++) {
        for (size_t i = 0; i < sizeof dft_cases / sizeof dft_cases[0]; i++) {
            dft_case c = dft_cases[i];
            c.inverse = inverse;
            int axis = c.axis < 0 ? c.axis + c.ndim : c.axis;
            int64_t shape[3];
            memcpy(shape, c.signal_shape, sizeof shape);
            if (inverse) {
                shape[axis] = 2 * (shape[axis] / 2 + 1);
            }
            mr_ctx *params = mr_ctx_create(0);
            mr_tensor *x = mr_tensor_new(params, MR_F32, c.ndim, shape);
            mr_test_fill_uniform(x, -1, 1, 10 * i + inverse);
            mr_tensor_set_requires_grad(x, true);
            char label[64];
            snprintf(label, sizeof label, "%s case %zu (n=%lld, axis %d)",
                     inverse ? "irdft" : "rdft", i, (long long)c.signal_shape[axis], c.axis);
            CHECK_INT_EQ(mr_gradcheck(label, build_dft, &x, 1, &c, NULL), 0);
            mr_ctx_free(params);
        }
    }
}

static void irdft_inverts_rdft(void) {
    for (size_t i = 0; i < sizeof dft_cases / sizeof dft_cases[0]; i++) {
        const dft_case *c = &dft_cases[i];
        int axis = c->axis < 0 ? c->axis + c->ndim : c->axis;
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *x = mr_tensor_new(ctx, MR_F32, c->ndim, c->signal_shape);
        mr_test_fill_uniform(x, -2, 2, 50 + i);
        mr_tensor *spectrum = mr_tensor_rdft(ctx, x, c->axis);
        mr_tensor *back = mr_tensor_irdft(ctx, spectrum, c->axis, c->signal_shape[axis]);
        CHECK_CTX_OK(ctx);
        if (back != NULL) {
            CHECK(mr_tensor_same_shape(back, x));
            CHECK_ARRAY_NEAR(back->data, x->data, mr_tensor_numel(x), 2e-6, 1e-5);
        }
        mr_ctx_free(ctx);
    }
}

/*
 * FMLP-Rec's filter layer: y = irdft(rdft(x) * W) along time, with the
 * complex product spelled out on the [real | imaginary] halves. The halves
 * of the product are joined along the frequency axis by two products with
 * constant selection matrices, which keeps the test to ops of this branch.
 */
static mr_tensor *fmlp_filter(mr_ctx *ctx, mr_tensor *x, mr_tensor *w_real,
                              mr_tensor *w_imag) {
    int64_t steps = x->shape[1], freqs = steps / 2 + 1;
    mr_tensor *spectrum = mr_tensor_rdft(ctx, x, 1);
    mr_tensor *re = mr_tensor_slice(ctx, spectrum, 1, 0, freqs);
    mr_tensor *im = mr_tensor_slice(ctx, spectrum, 1, freqs, freqs);
    mr_tensor *out_re = mr_tensor_sub(ctx, mr_tensor_mul(ctx, re, w_real),
                                      mr_tensor_mul(ctx, im, w_imag));
    mr_tensor *out_im = mr_tensor_add(ctx, mr_tensor_mul(ctx, re, w_imag),
                                      mr_tensor_mul(ctx, im, w_real));

    /* place_re [F, 2F] and place_im put frequency f at f and F + f. */
    mr_tensor *place_re = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){freqs, 2 * freqs});
    mr_tensor *place_im = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){freqs, 2 * freqs});
    if (place_re == NULL || place_im == NULL) {
        return NULL;
    }
    for (int64_t f = 0; f < freqs; f++) {
        place_re->data[f * 2 * freqs + f] = 1.0f;
        place_im->data[f * 2 * freqs + freqs + f] = 1.0f;
    }
    mr_tensor *joined = mr_tensor_add(
        ctx, mr_tensor_matmul(ctx, mr_tensor_transpose(ctx, out_re, 1, 2), place_re, 0),
        mr_tensor_matmul(ctx, mr_tensor_transpose(ctx, out_im, 1, 2), place_im, 0));
    return mr_tensor_irdft(ctx, mr_tensor_transpose(ctx, joined, 1, 2), 1, steps);
}

static void fmlp_filter_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/fourier.json");
    mr_ctx *ctx = mr_ctx_create(0);
    const char *name = "fmlp_filter";
    mr_tensor *x = mr_fixture_tensor(fixture, ctx, name, "x");
    mr_tensor *w_real = mr_fixture_tensor(fixture, ctx, name, "w_real");
    mr_tensor *w_imag = mr_fixture_tensor(fixture, ctx, name, "w_imag");
    mr_tensor *r = mr_fixture_tensor(fixture, ctx, name, "r");
    if (x != NULL && w_real != NULL && w_imag != NULL && r != NULL) {
        mr_tensor_set_requires_grad(x, true);
        mr_tensor_set_requires_grad(w_real, true);
        mr_tensor_set_requires_grad(w_imag, true);
        mr_tensor *out = fmlp_filter(ctx, x, w_real, w_imag);
        CHECK_CTX_OK(ctx);
        if (out != NULL) {
            expect_fixture(fixture, ctx, name, "out", out->data, mr_tensor_numel(out), 1e-5,
                           1e-5);
            CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
            expect_fixture(fixture, ctx, name, "grad_x", x->grad, mr_tensor_numel(x), 1e-5,
                           1e-5);
            expect_fixture(fixture, ctx, name, "grad_w_real", w_real->grad,
                           mr_tensor_numel(w_real), 1e-5, 1e-5);
            expect_fixture(fixture, ctx, name, "grad_w_imag", w_imag->grad,
                           mr_tensor_numel(w_imag), 1e-5, 1e-5);
        }
    }
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

static void irdft_rejects_wrong_length(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){3, 8});

    /* n = 8 needs 2 * 5 = 10 entries along the axis, not 8. */
    CHECK(mr_tensor_irdft(ctx, x, -1, 8) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "2 * (n/2 + 1) = 10") != NULL);

    mr_ctx_reset(ctx);
    x = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){3, 8});
    CHECK(mr_tensor_rdft(ctx, x, 2) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(rdft_known_values);
    MR_RUN(fourier_matches_torch);
    MR_RUN(fourier_gradients);
    MR_RUN(irdft_inverts_rdft);
    MR_RUN(fmlp_filter_matches_torch);
    MR_RUN(irdft_rejects_wrong_length);
    return mr_test_finish();
}
