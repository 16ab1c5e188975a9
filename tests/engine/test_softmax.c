/*
 * Softmax and log-softmax over the last dimension with masks: values and
 * gradients against PyTorch (fixtures/softmax.json, written by
 * fixtures/torch_softmax.py), finite-difference gradient checks with
 * padding masks, causal masking and fully hidden rows, and argument errors.
 *
 * Fixture tolerances: 1e-6 absolute plus 1e-5 relative. Probabilities are
 * at most 1, and the float32 kernel differs from the float64 reference by
 * a few ulps. Log-softmax values reach about -60, hence the relative term.
 */
#include <stdlib.h>
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

static void softmax_matches_torch(void) {
    struct {
        const char *name;
        bool has_mask;
    } cases[] = {
        {"large_logits", false}, {"padding_mask", true},
        {"causal_cache", false}, {"hidden_rows", true},
    };
    mr_fixture *fx = mr_fixture_load("fixtures/softmax.json");
    if (fx == NULL) {
        return;
    }
    for (int log_form = 0; log_form < 2; log_form++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s", log_form ? "log_softmax" : "softmax",
                     cases[i].name);
            mr_ctx *ctx = mr_ctx_create(0);
            mr_tensor *x = mr_fixture_tensor(fx, ctx, name, "x");
            mr_tensor *mask = cases[i].has_mask ? mr_fixture_tensor(fx, ctx, name, "mask") : NULL;
            mr_tensor *keep = mr_fixture_tensor(fx, ctx, name, "keep");
            mr_tensor *grad_out = mr_fixture_tensor(fx, ctx, name, "grad_out");
            mr_tensor *expected = mr_fixture_tensor(fx, ctx, name, "out");
            mr_tensor *grad_x = mr_fixture_tensor(fx, ctx, name, "grad_x");
            int flags = mr_fixture_number(fx, name, "causal", 0) != 0 ? MR_SOFTMAX_CAUSAL : 0;
            mr_tensor_set_requires_grad(x, true);

            mr_tensor *y = log_form ? mr_tensor_log_softmax(ctx, x, mask, flags)
                                    : mr_tensor_softmax(ctx, x, mask, flags);
            CHECK_CTX_OK(ctx);
            if (y == NULL) {
                mr_ctx_free(ctx);
                continue;
            }
            int64_t n = mr_tensor_numel(x);

            /* Hidden entries: exactly 0 for softmax, -inf for log-softmax;
             * the fixture stores 0 for both. */
            int hidden_wrong = 0;
            float *visible = malloc((size_t)n * sizeof *visible);
            for (int64_t j = 0; j < n; j++) {
                bool hidden = keep->data[j] == 0.0f;
                if (hidden && y->data[j] != (log_form ? -INFINITY : 0.0f)) {
                    hidden_wrong++;
                }
                visible[j] = hidden ? 0.0f : y->data[j];
            }
            CHECK_INT_EQ(hidden_wrong, 0);
            CHECK_INT_EQ(compare_case(name, "out", visible, expected->data, n), 0);
            free(visible);

            CHECK_STATUS(mr_tensor_backward(ctx, y, grad_out->data), MR_OK);
            CHECK_INT_EQ(compare_case(name, "grad_x", x->grad, grad_x->data, n), 0);
            mr_ctx_free(ctx);
        }
    }
    mr_fixture_free(fx);
}

static void softmax_hand_values(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    /* Row [0, ln 2, ln 3, 5] with the last entry hidden: 1/6, 2/6, 3/6. */
    float xv[4] = {0.0f, logf(2.0f), logf(3.0f), 5.0f};
    float mv[4] = {1, 1, 1, 0};
    int64_t shape[1] = {4};
    mr_tensor *x = mr_tensor_from_f32(ctx, 1, shape, xv);
    mr_tensor *mask = mr_tensor_from_f32(ctx, 1, shape, mv);
    mr_tensor *p = mr_tensor_softmax(ctx, x, mask, 0);
    CHECK_CTX_OK(ctx);
    float expected[4] = {1.0f / 6, 2.0f / 6, 3.0f / 6, 0.0f};
    CHECK_ARRAY_NEAR(p->data, expected, 4, 1e-7, 0);

    mr_tensor *lp = mr_tensor_log_softmax(ctx, x, mask, 0);
    CHECK_NEAR(lp->data[0], -logf(6.0f), 1e-6);
    CHECK_NEAR(lp->data[2], logf(0.5f), 1e-6);
    CHECK(lp->data[3] == -INFINITY);
    mr_ctx_free(ctx);
}

typedef struct softmax_build {
    bool log_form;
    bool use_mask;
    int flags;
} softmax_build;

/* in[0] = x, in[1] = mask (no gradient). */
static mr_tensor *build_softmax(mr_ctx *ctx, mr_tensor **in, void *user) {
    softmax_build *c = user;
    mr_tensor *mask = c->use_mask ? in[1] : NULL;
    return c->log_form ? mr_tensor_log_softmax(ctx, in[0], mask, c->flags)
                       : mr_tensor_softmax(ctx, in[0], mask, c->flags);
}

static void softmax_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);

    /* A padding mask [2, 1, 5] broadcast over the 3 rows of each batch. */
    int64_t xs[3] = {2, 3, 5}, ms[3] = {2, 1, 5};
    float mv[10] = {1, 1, 1, 0, 0, 0, 1, 1, 1, 1};
    mr_tensor *pad_in[2] = {mr_tensor_new(params, MR_F32, 3, xs),
                            mr_tensor_from_f32(params, 3, ms, mv)};
    mr_test_fill_uniform(pad_in[0], -2, 2, 80);
    mr_tensor_set_requires_grad(pad_in[0], true);

    /* Causal with T = 3 < S = 6, and causal with T = 5 > S = 4 plus a mask
     * [5, 4] whose row 3 hides every column: rows 0 and 3 see nothing. */
    int64_t cs[3] = {2, 3, 6}, hs[2] = {5, 4};
    float hv[20] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 2, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1};
    mr_tensor *causal_in[2] = {mr_tensor_new(params, MR_F32, 3, cs), NULL};
    mr_tensor *hidden_in[2] = {mr_tensor_new(params, MR_F32, 2, hs),
                               mr_tensor_from_f32(params, 2, hs, hv)};
    mr_test_fill_uniform(causal_in[0], -2, 2, 81);
    mr_test_fill_uniform(hidden_in[0], -2, 2, 82);
    mr_tensor_set_requires_grad(causal_in[0], true);
    mr_tensor_set_requires_grad(hidden_in[0], true);

    /* Plain rows of odd length. */
    int64_t ps[2] = {3, 7};
    mr_tensor *plain_in[2] = {mr_tensor_new(params, MR_F32, 2, ps), NULL};
    mr_test_fill_uniform(plain_in[0], -3, 3, 83);
    mr_tensor_set_requires_grad(plain_in[0], true);

    for (int log_form = 0; log_form < 2; log_form++) {
        softmax_build plain = {log_form, false, 0};
        softmax_build masked = {log_form, true, 0};
        softmax_build causal = {log_form, false, MR_SOFTMAX_CAUSAL};
        softmax_build hidden = {log_form, true, MR_SOFTMAX_CAUSAL};
        CHECK_INT_EQ(mr_gradcheck("plain", build_softmax, plain_in, 1, &plain, NULL), 0);
        /* Log-softmax outputs -inf at hidden entries, which the objective
         * sum cannot take; log_softmax_hidden_gradients covers those. */
        if (!log_form) {
            CHECK_INT_EQ(mr_gradcheck("padding mask", build_softmax, pad_in, 2, &masked, NULL), 0);
            CHECK_INT_EQ(mr_gradcheck("causal T < S", build_softmax, causal_in, 1, &causal, NULL),
                         0);
            CHECK_INT_EQ(mr_gradcheck("hidden rows", build_softmax, hidden_in, 2, &hidden, NULL),
                         0);
        }
    }
    mr_ctx_free(params);
}

/* Sum of y * r over the entries where y is finite. */
static double finite_objective(const mr_tensor *y, const float *r) {
    double sum = 0.0;
    for (int64_t j = 0; j < mr_tensor_numel(y); j++) {
        if (isfinite(y->data[j])) {
            sum += (double)y->data[j] * r[j];
        }
    }
    return sum;
}

/*
 * Log-softmax with hidden entries: the gradient of sum(y * r) over visible
 * entries matches central differences, hidden entries get exactly 0, and
 * the upstream gradient at hidden entries changes nothing.
 */
static void log_softmax_hidden_gradients(void) {
    enum { N = 20 };
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t hs[2] = {5, 4};
    float hv[N] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 2, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1};
    mr_tensor *x = mr_tensor_new(ctx, MR_F32, 2, hs);
    mr_tensor *mask = mr_tensor_from_f32(ctx, 2, hs, hv);
    mr_test_fill_uniform(x, -2, 2, 84);
    mr_tensor_set_requires_grad(x, true);
    float r[N];
    for (int j = 0; j < N; j++) {
        r[j] = 0.1f * (float)(j % 7) - 0.3f;
    }

    mr_ctx *step = mr_ctx_create(0);
    mr_tensor *y = mr_tensor_log_softmax(step, x, mask, MR_SOFTMAX_CAUSAL);
    CHECK_STATUS(mr_tensor_backward(step, y, r), MR_OK);
    float analytic[N];
    memcpy(analytic, x->grad, sizeof analytic);

    /* Row i sees columns j <= i - 1, minus the mask: row 0 and row 3 see
     * nothing, row 1 sees column 0, row 2 column 1, row 4 columns 0, 2, 3. */
    bool visible[N] = {0};
    visible[1 * 4 + 0] = true;
    visible[2 * 4 + 1] = true;
    visible[4 * 4 + 0] = true;
    visible[4 * 4 + 2] = true;
    visible[4 * 4 + 3] = true;
    int hidden_nonzero = 0;
    for (int j = 0; j < N; j++) {
        CHECK(isfinite(y->data[j]) == visible[j]);
        if (!visible[j] && analytic[j] != 0.0f) {
            hidden_nonzero++;
        }
    }
    CHECK_INT_EQ(hidden_nonzero, 0);

    /* Central differences of the finite part of the objective. */
    mr_ctx_set_grad_enabled(step, false);
    for (int j = 0; j < N; j++) {
        float saved = x->data[j];
        x->data[j] = saved + 1e-3f;
        mr_ctx_reset(step);
        double plus = finite_objective(mr_tensor_log_softmax(step, x, mask, MR_SOFTMAX_CAUSAL), r);
        x->data[j] = saved - 1e-3f;
        mr_ctx_reset(step);
        double minus = finite_objective(mr_tensor_log_softmax(step, x, mask, MR_SOFTMAX_CAUSAL), r);
        x->data[j] = saved;
        CHECK_NEAR(analytic[j], (plus - minus) / 2e-3, 1e-3);
    }

    /* Zeroing the upstream gradient at hidden entries gives the same. */
    mr_ctx_reset(step);
    mr_ctx_set_grad_enabled(step, true);
    mr_tensor_zero_grad(x);
    float r_visible[N];
    for (int j = 0; j < N; j++) {
        r_visible[j] = visible[j] ? r[j] : 0.0f;
    }
    y = mr_tensor_log_softmax(step, x, mask, MR_SOFTMAX_CAUSAL);
    CHECK_STATUS(mr_tensor_backward(step, y, r_visible), MR_OK);
    CHECK_ARRAY_NEAR(x->grad, analytic, N, 0, 0);
    mr_ctx_free(step);
    mr_ctx_free(ctx);
}

static void softmax_fully_hidden_row_is_zero(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[2] = {2, 4};
    float mv[8] = {0, 0, 0, 0, 1, 0, 1, 1};
    mr_tensor *x = mr_tensor_new(ctx, MR_F32, 2, shape);
    mr_tensor *mask = mr_tensor_from_f32(ctx, 2, shape, mv);
    mr_test_fill_uniform(x, -1, 1, 90);
    mr_tensor_set_requires_grad(x, true);
    mr_tensor *p = mr_tensor_softmax(ctx, x, mask, 0);
    CHECK_CTX_OK(ctx);
    float zeros[4] = {0, 0, 0, 0};
    CHECK_ARRAY_NEAR(p->data, zeros, 4, 0, 0);
    CHECK_NEAR(p->data[4] + p->data[6] + p->data[7], 1.0, 1e-6);

    float seed[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_STATUS(mr_tensor_backward(ctx, p, seed), MR_OK);
    CHECK_ARRAY_NEAR(x->grad, zeros, 4, 0, 0);
    CHECK_NEAR(x->grad[5], 0.0, 0);
    mr_ctx_free(ctx);
}

static void softmax_rejects_bad_arguments(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    mr_test_fill_uniform(x, -1, 1, 91);

    mr_tensor *mask = mr_tensor_new2d(ctx, MR_F32, 3, 5);
    CHECK(mr_tensor_softmax(ctx, x, mask, 0) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "do not broadcast") != NULL);
    mr_ctx_reset(ctx);

    /* A mask that would grow x is rejected too. */
    x = mr_tensor_new2d(ctx, MR_F32, 1, 4);
    mask = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    CHECK(mr_tensor_log_softmax(ctx, x, mask, 0) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "without growing") != NULL);
    mr_ctx_reset(ctx);

    mr_tensor *row = mr_tensor_new1d(ctx, MR_F32, 4);
    CHECK(mr_tensor_softmax(ctx, row, NULL, MR_SOFTMAX_CAUSAL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "causal") != NULL);
    mr_ctx_reset(ctx);

    row = mr_tensor_new1d(ctx, MR_F32, 4);
    CHECK(mr_tensor_softmax(ctx, row, NULL, 0x10) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(softmax_matches_torch);
    MR_RUN(softmax_hand_values);
    MR_RUN(softmax_gradients);
    MR_RUN(log_softmax_hidden_gradients);
    MR_RUN(softmax_fully_hidden_row_is_zero);
    MR_RUN(softmax_rejects_bad_arguments);
    return mr_test_finish();
}
