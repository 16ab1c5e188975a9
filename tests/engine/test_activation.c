/*
 * Activation and dropout tests: values and gradients against PyTorch
 * fixtures, finite-difference gradients on odd shapes, log-sigmoid at
 * extreme inputs, the fused SwiGLU gate against silu and mul, and the
 * dropout mask's statistics, reproducibility and independence of the
 * thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

typedef mr_tensor *(*unary_fn)(mr_ctx *ctx, mr_tensor *x);

static const struct {
    const char *name;
    unary_fn fn;
} activations[] = {
    {"gelu", mr_tensor_gelu},       {"silu", mr_tensor_silu},
    {"relu", mr_tensor_relu},       {"sigmoid", mr_tensor_sigmoid},
    {"tanh", mr_tensor_tanh},       {"log_sigmoid", mr_tensor_log_sigmoid},
};
#define ACTIVATION_COUNT (int)(sizeof activations / sizeof activations[0])

/* ------------------------------------------------------------------------ */

/*
 * Tolerances: libm's erff/expf/tanhf and PyTorch's vectorised kernels may
 * differ by a few float32 ulps, so values and gradients of magnitude up to
 * about 4 agree to 1e-5 relative plus 1e-6 absolute.
 */
static void activations_match_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/activation.json");
    mr_ctx *ctx = mr_ctx_create(0);
    for (int k = 0; k < ACTIVATION_COUNT; k++) {
        const char *name = activations[k].name;
        mr_tensor *x = mr_fixture_tensor(fixture, ctx, name, "x");
        mr_tensor *g = mr_fixture_tensor(fixture, ctx, name, "g");
        mr_tensor *expected_out = mr_fixture_tensor(fixture, ctx, name, "out");
        mr_tensor *expected_grad = mr_fixture_tensor(fixture, ctx, name, "grad_x");
        if (x == NULL || g == NULL || expected_out == NULL || expected_grad == NULL) {
            break;
        }
        mr_tensor_set_requires_grad(x, true);

        mr_tensor *out = activations[k].fn(ctx, x);
        CHECK_CTX_OK(ctx);
        CHECK(out != NULL);
        CHECK(out == NULL || mr_tensor_same_shape(out, x));
        if (out == NULL) {
            break;
        }
        int64_t n = mr_tensor_numel(x);
        if (CHECK_ARRAY_NEAR(out->data, expected_out->data, n, 1e-6, 1e-5) > 0) {
            printf("  (values of %s)\n", name);
        }
        CHECK_STATUS(mr_tensor_backward(ctx, out, g->data), MR_OK);
        if (CHECK_ARRAY_NEAR(x->grad, expected_grad->data, n, 1e-6, 1e-5) > 0) {
            printf("  (gradients of %s)\n", name);
        }
        mr_ctx_reset(ctx);
    }
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

typedef struct unary_case {
    unary_fn fn;
    bool transpose; /* feed a transposed view to test the strided input */
} unary_case;

static mr_tensor *build_unary(mr_ctx *ctx, mr_tensor **in, void *user) {
    const unary_case *c = user;
    mr_tensor *x = in[0];
    if (c->transpose) {
        x = mr_tensor_transpose(ctx, x, 0, -1);
    }
    return c->fn(ctx, x);
}

/* Moves values within 0.05 of zero away from it, so that central
 * differences with step 1e-3 never straddle the kink of relu. */
static void keep_away_from_zero(mr_tensor *t) {
    int64_t n = mr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (fabsf(t->data[i]) < 0.05f) {
            t->data[i] = t->data[i] < 0.0f ? -0.05f - t->data[i] : 0.05f + t->data[i];
        }
    }
}

static void activation_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t shapes[][4] = {{3, 5, 7}, {1}, {2, 1, 3, 4}};
    int ndims[] = {3, 1, 4};
    for (int s = 0; s < 3; s++) {
        for (int k = 0; k < ACTIVATION_COUNT; k++) {
            for (int transpose = 0; transpose < 2; transpose++) {
                mr_tensor *x = mr_tensor_new(params, MR_F32, ndims[s], shapes[s]);
                mr_test_fill_uniform(x, -3.0f, 3.0f, 100 + 10 * s + k);
                keep_away_from_zero(x);
                mr_tensor_set_requires_grad(x, true);
                unary_case c = {activations[k].fn, transpose == 1};
                char label[64];
                snprintf(label, sizeof label, "%s shape case %d%s", activations[k].name, s,
                         transpose ? " transposed" : "");
                CHECK_INT_EQ(mr_gradcheck(label, build_unary, &x, 1, &c, NULL), 0);
            }
        }
    }
    mr_ctx_free(params);
}

static void log_sigmoid_extremes(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float values[4] = {-100.0f, 100.0f, -1e4f, 1e4f};
    int64_t shape[1] = {4};
    mr_tensor *x = mr_tensor_from_f32(ctx, 1, shape, values);
    mr_tensor_set_requires_grad(x, true);

    mr_tensor *y = mr_tensor_log_sigmoid(ctx, x);
    CHECK_CTX_OK(ctx);
    for (int i = 0; i < 4; i++) {
        CHECK(isfinite(y->data[i]));
    }
    /* log s(-100) = -100 - log1p(e^-100); log s(100) = -e^-100, about -4e-44. */
    CHECK_NEAR(y->data[0], -100.0, 1e-5);
    CHECK(y->data[1] <= 0.0f);
    CHECK_NEAR(y->data[1], 0.0, 1e-30);
    CHECK_NEAR(y->data[2], -1e4, 1e-2);
    CHECK_NEAR(y->data[3], 0.0, 0);

    /* The derivative s(-x) is 1 far left and 0 far right. */
    float ones[4] = {1, 1, 1, 1};
    CHECK_STATUS(mr_tensor_backward(ctx, y, ones), MR_OK);
    float expected_grad[4] = {1, 0, 1, 0};
    CHECK_ARRAY_NEAR(x->grad, expected_grad, 4, 1e-30, 0);

    /* sigmoid stays finite and saturates at the same inputs. */
    mr_tensor *s = mr_tensor_sigmoid(ctx, x);
    float expected_sigmoid[4] = {0, 1, 0, 1};
    CHECK_ARRAY_NEAR(s->data, expected_sigmoid, 4, 1e-30, 0);
    mr_ctx_free(ctx);
}

static void activations_reject_int_input(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *ids = mr_tensor_zeros(ctx, MR_I32, 1, (int64_t[]){3});
    CHECK(mr_tensor_gelu(ctx, ids) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "gelu") != NULL);
    mr_ctx_free(ctx);
}

/* Runs silu(gate) * up on [3, 37] inputs in [-6, 6], fused or as separate
 * ops, with gradients for the inputs that need them. Stores the output and
 * the gradients (zeros for an input without one). */
static void run_swiglu(bool fused, bool gate_needs_grad, bool up_needs_grad, float *out,
                       float *dgate, float *dup) {
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *gate = mr_tensor_new2d(params, MR_F32, 3, 37);
    mr_tensor *up = mr_tensor_new2d(params, MR_F32, 3, 37);
    mr_test_fill_uniform(gate, -6.0f, 6.0f, 180);
    mr_test_fill_uniform(up, -6.0f, 6.0f, 181);
    mr_tensor_set_requires_grad(gate, gate_needs_grad);
    mr_tensor_set_requires_grad(up, up_needs_grad);
    int64_t count = mr_tensor_numel(gate);
    float seed[3 * 37];
    for (int64_t i = 0; i < count; i++) {
        seed[i] = (float)((i * 5) % 9) / 9.0f - 0.45f;
    }

    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *y = fused ? mr_tensor_swiglu(ctx, gate, up)
                         : mr_tensor_mul(ctx, mr_tensor_silu(ctx, gate), up);
    CHECK_STATUS(mr_tensor_backward(ctx, y, seed), MR_OK);
    size_t bytes = (size_t)count * sizeof(float);
    memcpy(out, y->data, bytes);
    memset(dgate, 0, bytes);
    memset(dup, 0, bytes);
    if (gate->grad != NULL) {
        memcpy(dgate, gate->grad, bytes);
    }
    if (up->grad != NULL) {
        memcpy(dup, up->grad, bytes);
    }
    mr_ctx_free(ctx);
    mr_ctx_free(params);
}

/* The fused gate against mr_tensor_mul(mr_tensor_silu(gate), up): equal
 * values and gradients, bit for bit, with gradients for both inputs or
 * for one of them. */
static void swiglu_matches_silu_times_up(void) {
    bool needs[3][2] = {{true, true}, {true, false}, {false, true}};
    for (int c = 0; c < 3; c++) {
        float fused[3][3 * 37], separate[3][3 * 37];
        run_swiglu(true, needs[c][0], needs[c][1], fused[0], fused[1], fused[2]);
        run_swiglu(false, needs[c][0], needs[c][1], separate[0], separate[1], separate[2]);
        CHECK(memcmp(fused[0], separate[0], sizeof fused[0]) == 0);
        CHECK(memcmp(fused[1], separate[1], sizeof fused[1]) == 0);
        CHECK(memcmp(fused[2], separate[2], sizeof fused[2]) == 0);

        /* An input that needs a gradient gets a non-zero one. */
        float zeros[3 * 37] = {0.0f};
        CHECK(needs[c][0] == (memcmp(fused[1], zeros, sizeof zeros) != 0));
        CHECK(needs[c][1] == (memcmp(fused[2], zeros, sizeof zeros) != 0));
    }
}

static mr_tensor *build_swiglu(mr_ctx *ctx, mr_tensor **in, void *user) {
    (void)user;
    return mr_tensor_swiglu(ctx, in[0], in[1]);
}

/* Finite differences for both inputs, from -4 to 4. */
static void swiglu_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *in[2] = {mr_tensor_new2d(params, MR_F32, 4, 9),
                        mr_tensor_new2d(params, MR_F32, 4, 9)};
    for (int i = 0; i < 2; i++) {
        mr_test_fill_uniform(in[i], -4.0f, 4.0f, 190 + i);
        mr_tensor_set_requires_grad(in[i], true);
    }
    CHECK_INT_EQ(mr_gradcheck("swiglu", build_swiglu, in, 2, NULL, NULL), 0);
    mr_ctx_free(params);
}

/* silu(1) * 2 = 2 / (1 + e^-1), and shapes that differ are rejected. */
static void swiglu_value_and_shape_check(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float gate_value = 1.0f, up_value = 2.0f;
    int64_t shape[1] = {1};
    mr_tensor *out = mr_tensor_swiglu(ctx, mr_tensor_from_f32(ctx, 1, shape, &gate_value),
                                      mr_tensor_from_f32(ctx, 1, shape, &up_value));
    CHECK_CTX_OK(ctx);
    if (out != NULL) {
        CHECK_NEAR(out->data[0], 2.0 / (1.0 + exp(-1.0)), 1e-6);
    }

    mr_tensor *gate = mr_tensor_new2d(ctx, MR_F32, 2, 3);
    mr_tensor *up = mr_tensor_new2d(ctx, MR_F32, 3, 2);
    CHECK(mr_tensor_swiglu(ctx, gate, up) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "gate [2, 3] and up [3, 2]") != NULL);
    mr_ctx_free(ctx);
}

/* ------------------------------------------------------------------------
 * Dropout
 * ------------------------------------------------------------------------ */

/* A tensor of n values in [0.5, 1.5), so a zero output marks a drop. */
static mr_tensor *nonzero_input(mr_ctx *ctx, int64_t n) {
    mr_tensor *x = mr_tensor_new1d(ctx, MR_F32, n);
    mr_test_fill_uniform(x, 0.5f, 1.5f, 42);
    return x;
}

static void dropout_same_state_same_mask(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = nonzero_input(ctx, 1000);
    mr_rng rng;
    mr_rng_init(&rng, 7);
    mr_rng copy = rng;

    mr_tensor *a = mr_tensor_dropout(ctx, x, 0.5f, &rng);
    mr_tensor *b = mr_tensor_dropout(ctx, x, 0.5f, &copy);
    CHECK_CTX_OK(ctx);
    CHECK(memcmp(a->data, b->data, 1000 * sizeof(float)) == 0);

    /* One call takes one draw from the stream. */
    CHECK_INT_EQ(rng.counter, 1);
    CHECK(rng.key == copy.key);

    /* The next call draws a new mask that is no shifted copy of the first:
     * a shifted copy would agree on every element, independent masks
     * agree on about half of them when p = 0.5. */
    mr_tensor *c = mr_tensor_dropout(ctx, x, 0.5f, &rng);
    int same = 0, same_shifted = 0;
    for (int i = 0; i + 1 < 1000; i++) {
        same += (a->data[i] == 0.0f) == (c->data[i] == 0.0f);
        same_shifted += (a->data[i + 1] == 0.0f) == (c->data[i] == 0.0f);
    }
    CHECK(same < 600);
    CHECK(same_shifted < 600);
    mr_ctx_free(ctx);
}

/*
 * With n = 200000 and p = 0.3 the kept fraction has standard deviation
 * sqrt(p (1 - p) / n), about 0.001, so the bound 0.01 is 10 deviations.
 */
static void dropout_kept_fraction_and_scale(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    const int64_t n = 200000;
    const float p = 0.3f;
    mr_tensor *x = nonzero_input(ctx, n);
    mr_rng rng;
    mr_rng_init(&rng, 11);

    mr_tensor *y = mr_tensor_dropout(ctx, x, p, &rng);
    CHECK_CTX_OK(ctx);
    int64_t kept = 0, wrong_scale = 0;
    float scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++) {
        if (y->data[i] != 0.0f) {
            kept++;
            wrong_scale += y->data[i] != x->data[i] * scale;
        }
    }
    CHECK_NEAR((double)kept / (double)n, 1.0 - p, 0.01);
    CHECK_INT_EQ(wrong_scale, 0);
    mr_ctx_free(ctx);
}

static void dropout_gradient_follows_mask(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    const int64_t n = 5000;
    mr_tensor *x = nonzero_input(ctx, n);
    mr_tensor_set_requires_grad(x, true);
    mr_rng rng;
    mr_rng_init(&rng, 13);

    mr_tensor *y = mr_tensor_dropout(ctx, x, 0.25f, &rng);
    float *seed = malloc((size_t)n * sizeof *seed);
    for (int64_t i = 0; i < n; i++) {
        seed[i] = 1.0f;
    }
    CHECK_STATUS(mr_tensor_backward(ctx, y, seed), MR_OK);
    int64_t mismatches = 0;
    for (int64_t i = 0; i < n; i++) {
        float expected = y->data[i] == 0.0f ? 0.0f : 1.0f / 0.75f;
        mismatches += x->grad[i] != expected;
    }
    CHECK_INT_EQ(mismatches, 0);
    free(seed);
    mr_ctx_free(ctx);
}

typedef struct dropout_case {
    float p;
    uint64_t seed;
} dropout_case;

/* Each call starts from the same stream state, so every forward pass of
 * the gradient check draws the same mask. */
static mr_tensor *build_dropout(mr_ctx *ctx, mr_tensor **in, void *user) {
    const dropout_case *c = user;
    mr_rng rng;
    mr_rng_init(&rng, c->seed);
    return mr_tensor_dropout(ctx, in[0], c->p, &rng);
}

static void dropout_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t shapes[][4] = {{3, 5, 7}, {1}, {2, 1, 3, 4}};
    int ndims[] = {3, 1, 4};
    for (int s = 0; s < 3; s++) {
        mr_tensor *x = mr_tensor_new(params, MR_F32, ndims[s], shapes[s]);
        mr_test_fill_uniform(x, -2.0f, 2.0f, 300 + s);
        mr_tensor_set_requires_grad(x, true);
        dropout_case c = {0.4f, 17};
        char label[48];
        snprintf(label, sizeof label, "dropout shape case %d", s);
        CHECK_INT_EQ(mr_gradcheck(label, build_dropout, &x, 1, &c, NULL), 0);
    }
    mr_ctx_free(params);
}

/* Output and gradient of one dropout call, run with `threads` threads. */
static void dropout_run(int threads, int64_t n, float *out, float *grad) {
    mr_threads_set(threads);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = nonzero_input(ctx, n);
    mr_tensor_set_requires_grad(x, true);
    mr_rng rng;
    mr_rng_init(&rng, 99);
    mr_tensor *y = mr_tensor_dropout(ctx, x, 0.2f, &rng);
    float *seed = malloc((size_t)n * sizeof *seed);
    for (int64_t i = 0; i < n; i++) {
        seed[i] = (float)(i % 7) - 3.0f;
    }
    CHECK_STATUS(mr_tensor_backward(ctx, y, seed), MR_OK);
    memcpy(out, y->data, (size_t)n * sizeof *out);
    memcpy(grad, x->grad, (size_t)n * sizeof *grad);
    free(seed);
    mr_ctx_free(ctx);
}

static void dropout_same_on_one_and_two_threads(void) {
    const int64_t n = 100003;
    float *out1 = malloc((size_t)n * sizeof(float)), *grad1 = malloc((size_t)n * sizeof(float));
    float *out2 = malloc((size_t)n * sizeof(float)), *grad2 = malloc((size_t)n * sizeof(float));
    int previous = mr_threads_get();
    dropout_run(1, n, out1, grad1);
    dropout_run(2, n, out2, grad2);
    mr_threads_set(previous);
    CHECK(memcmp(out1, out2, (size_t)n * sizeof(float)) == 0);
    CHECK(memcmp(grad1, grad2, (size_t)n * sizeof(float)) == 0);
    free(out1);
    free(grad1);
    free(out2);
    free(grad2);
}

static void dropout_identity_in_eval_or_zero_p(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = nonzero_input(ctx, 100);
    mr_rng rng;
    mr_rng_init(&rng, 5);

    CHECK(mr_tensor_dropout(ctx, x, 0.0f, &rng) == x);
    CHECK(mr_ctx_set_training(ctx, false));
    CHECK(mr_tensor_dropout(ctx, x, 0.5f, &rng) == x);
    CHECK(mr_tensor_dropout(ctx, x, 0.5f, NULL) == x);
    CHECK_INT_EQ(rng.counter, 0);
    CHECK_CTX_OK(ctx);
    mr_ctx_free(ctx);
}

static void dropout_rejects_bad_p(void) {
    float bad[3] = {1.0f, -0.1f, NAN};
    for (int i = 0; i < 3; i++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *x = nonzero_input(ctx, 10);
        mr_rng rng;
        mr_rng_init(&rng, 5);
        CHECK(mr_tensor_dropout(ctx, x, bad[i], &rng) == NULL);
        CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
        CHECK(strstr(mr_ctx_error_message(ctx), "outside [0, 1)") != NULL);
        mr_ctx_free(ctx);
    }

    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = nonzero_input(ctx, 10);
    CHECK(mr_tensor_dropout(ctx, x, 0.5f, NULL) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "rng is NULL") != NULL);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(activations_match_torch);
    MR_RUN(activation_gradients);
    MR_RUN(log_sigmoid_extremes);
    MR_RUN(activations_reject_int_input);
    MR_RUN(swiglu_matches_silu_times_up);
    MR_RUN(swiglu_gradients);
    MR_RUN(swiglu_value_and_shape_check);
    MR_RUN(dropout_same_state_same_mask);
    MR_RUN(dropout_kept_fraction_and_scale);
    MR_RUN(dropout_gradient_follows_mask);
    MR_RUN(dropout_gradients);
    MR_RUN(dropout_same_on_one_and_two_threads);
    MR_RUN(dropout_identity_in_eval_or_zero_p);
    MR_RUN(dropout_rejects_bad_p);
    return mr_test_finish();
}
