/*
 * Optimizer tests: SGD, Adam and AdamW against hand-computed values and
 * torch.optim trajectories (fixtures/optim.json from torch_optim.py),
 * gradient clipping, learning-rate schedules, and state export and import.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "multiround/optim.h"
#include "test.h"

/* Creates a parameter in ctx holding n values. */
static mr_tensor *make_param(mr_ctx *ctx, const float *values, int64_t n) {
    int64_t shape[1] = {n};
    mr_tensor *t = mr_tensor_from_f32(ctx, 1, shape, values);
    CHECK(t != NULL);
    CHECK_STATUS(mr_tensor_set_param(t), MR_OK);
    return t;
}

static void set_grad(mr_tensor *t, const float *values) {
    memcpy(t->grad, values, (size_t)mr_tensor_numel(t) * sizeof(float));
}

/* Creates an optimizer with one group holding w and no weight decay. */
static mr_optim *single_group_optim(mr_optim_config config, mr_tensor *w,
                                    float weight_decay) {
    mr_error err;
    mr_optim *opt = mr_optim_create(&config, &err);
    CHECK(opt != NULL);
    CHECK_STATUS(mr_optim_add_group(opt, &w, 1, weight_decay, 1.0f, &err), MR_OK);
    return opt;
}

/* ------------------------------------------------------------------------
 * Hand-computed updates. The values are powers of two where possible, so
 * SGD results are exact.
 * ------------------------------------------------------------------------ */

static void sgd_plain_two_steps(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, -2.0f}, 2);
    mr_optim *opt = single_group_optim(mr_optim_config_default(MR_OPTIM_SGD), w, 0.0f);

    /* w -= 0.5 * g: [1, -2] - 0.5 * [0.5, 1] = [0.75, -2.5]. */
    set_grad(w, (float[]){0.5f, 1.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.5f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.75f, -2.5f}), 2, 0, 0);

    /* [0.75, -2.5] - 0.5 * [0.25, -1] = [0.625, -2]. */
    set_grad(w, (float[]){0.25f, -1.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.5f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.625f, -2.0f}), 2, 0, 0);
    CHECK_INT_EQ(mr_optim_step_count(opt), 2);
    CHECK_INT_EQ(mr_optim_state_count(opt), 0);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

static void sgd_weight_decay_one_step(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, -2.0f}, 2);
    mr_optim *opt = single_group_optim(mr_optim_config_default(MR_OPTIM_SGD), w, 0.5f);

    /* g = [0.5, 1] + 0.5 * [1, -2] = [1, 0]; w = [1, -2] - 0.5 * [1, 0]. */
    set_grad(w, (float[]){0.5f, 1.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.5f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.5f, -2.0f}), 2, 0, 0);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

static void sgd_momentum_two_steps(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, -2.0f}, 2);
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_SGD);
    config.momentum = 0.5f;
    mr_optim *opt = single_group_optim(config, w, 0.0f);

    /* Step 1: buf = g = [0.5, 1]; w = [1, -2] - 0.5 * buf = [0.75, -2.5]. */
    set_grad(w, (float[]){0.5f, 1.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.5f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.75f, -2.5f}), 2, 0, 0);

    /* Step 2: buf = 0.5 * [0.5, 1] + [0.25, -1] = [0.5, -0.5];
     * w = [0.75, -2.5] - 0.5 * buf = [0.5, -2.25]. */
    set_grad(w, (float[]){0.25f, -1.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.5f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.5f, -2.25f}), 2, 0, 0);

    const char *name = NULL;
    const float *buffer = NULL;
    int64_t count = 0;
    CHECK_INT_EQ(mr_optim_state_count(opt), 1);
    CHECK_STATUS(mr_optim_state_get(opt, 0, &name, &buffer, &count, NULL), MR_OK);
    CHECK(strcmp(name, "optim.momentum.0.0") == 0);
    CHECK_INT_EQ(count, 2);
    CHECK_ARRAY_NEAR(buffer, ((float[]){0.5f, -0.5f}), 2, 0, 0);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

static void sgd_nesterov_two_steps(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, -2.0f}, 2);
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_SGD);
    config.momentum = 0.5f;
    config.nesterov = true;
    mr_optim *opt = single_group_optim(config, w, 0.0f);

    /* Step 1: buf = [0.5, 1]; update g + 0.5 buf = [0.75, 1.5];
     * w = [1, -2] - 0.5 * [0.75, 1.5] = [0.625, -2.75]. */
    set_grad(w, (float[]){0.5f, 1.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.5f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.625f, -2.75f}), 2, 0, 0);

    /* Step 2: buf = [0.5, -0.5]; update [0.25, -1] + 0.5 buf = [0.5, -1.25];
     * w = [0.625, -2.75] - 0.5 * [0.5, -1.25] = [0.375, -2.125]. */
    set_grad(w, (float[]){0.25f, -1.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.5f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.375f, -2.125f}), 2, 0, 0);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

static void adam_two_steps(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, -2.0f, 0.5f}, 3);
    mr_optim *opt = single_group_optim(mr_optim_config_default(MR_OPTIM_ADAM), w, 0.0f);

    /* Step 1 (beta1 0.9, beta2 0.999): m = 0.1 g and v = 0.001 g^2, so the
     * bias-corrected m and v are g and g^2 and each element moves by
     * lr * g / (|g| + eps), which is lr * sign(g) to within 1e-8. A zero
     * gradient leaves its element in place. */
    set_grad(w, (float[]){0.5f, -1.0f, 0.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.1f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.9f, -1.9f, 0.5f}), 3, 1e-6, 0);

    /* Step 2, element 1 with g = 1 after g = -1:
     *   m = 0.9 * (-0.1) + 0.1 * 1 = 0.01
     *   v = 0.999 * 0.001 + 0.001 * 1 = 0.001999
     *   m_hat = 0.01 / (1 - 0.9^2) = 0.01 / 0.19 = 0.0526315789
     *   v_hat = 0.001999 / (1 - 0.999^2) = 0.001999 / 0.001999 = 1
     *   w = -1.9 - 0.1 * 0.0526315789 / (1 + 1e-8) = -1.90526316
     * Element 0 gets the same gradient twice and moves by lr again. */
    set_grad(w, (float[]){0.5f, 1.0f, 0.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.1f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.8f, -1.90526316f, 0.5f}), 3, 1e-6, 0);
    CHECK_INT_EQ(mr_optim_step_count(opt), 2);

    const char *name = NULL;
    const float *m = NULL, *v = NULL;
    CHECK_INT_EQ(mr_optim_state_count(opt), 2);
    CHECK_STATUS(mr_optim_state_get(opt, 0, &name, &m, NULL, NULL), MR_OK);
    CHECK(strcmp(name, "optim.m.0.0") == 0);
    CHECK_NEAR(m[1], 0.01, 1e-8);
    CHECK_STATUS(mr_optim_state_get(opt, 1, &name, &v, NULL, NULL), MR_OK);
    CHECK(strcmp(name, "optim.v.0.0") == 0);
    CHECK_NEAR(v[1], 0.001999, 1e-9);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

static void adam_l2_decay_one_step(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, -2.0f, 0.5f}, 3);
    mr_optim *opt = single_group_optim(mr_optim_config_default(MR_OPTIM_ADAM), w, 0.5f);

    /* g = [0.5, -1, 0] + 0.5 * [1, -2, 0.5] = [1, -2, 0.25], all nonzero, so
     * each element moves by lr * sign(g) = 0.1. */
    set_grad(w, (float[]){0.5f, -1.0f, 0.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.1f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.9f, -1.9f, 0.4f}), 3, 1e-6, 0);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

static void adamw_decoupled_decay_one_step(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, -2.0f, 0.5f}, 3);
    mr_optim *opt = single_group_optim(mr_optim_config_default(MR_OPTIM_ADAMW), w, 0.5f);

    /* w *= 1 - 0.1 * 0.5 gives [0.95, -1.9, 0.475]; then the Adam step
     * moves by lr * sign(g) on the raw gradient [0.5, -1, 0]. */
    set_grad(w, (float[]){0.5f, -1.0f, 0.0f});
    CHECK_STATUS(mr_optim_step(opt, 0.1f, NULL), MR_OK);
    CHECK_ARRAY_NEAR(w->data, ((float[]){0.85f, -1.8f, 0.475f}), 3, 1e-6, 0);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

/* ------------------------------------------------------------------------
 * torch.optim trajectories: two groups (decay 0.125 and 0; p1 at half the
 * learning rate), four steps with fixed gradients and varying rates.
 * ------------------------------------------------------------------------ */

/*
 * Replays fixture case `case_name` with config and checks both groups after
 * every step. Results agree with PyTorch 1.13 to one float ulp (a few
 * elements differ by 6e-8 or less): PyTorch's vectorized CPU kernels round
 * some products at other points. The tolerances allow about 8 ulp.
 */
static void check_torch_case(mr_fixture *fixture, const char *case_name,
                             mr_optim_config config, double atol, double rtol) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *p0 = mr_fixture_tensor(fixture, ctx, case_name, "p0");
    mr_tensor *p1 = mr_fixture_tensor(fixture, ctx, case_name, "p1");
    mr_tensor *grads0 = mr_fixture_tensor(fixture, ctx, case_name, "grads0");
    mr_tensor *grads1 = mr_fixture_tensor(fixture, ctx, case_name, "grads1");
    mr_tensor *lrs = mr_fixture_tensor(fixture, ctx, case_name, "lrs");
    mr_tensor *after0 = mr_fixture_tensor(fixture, ctx, case_name, "after0");
    mr_tensor *after1 = mr_fixture_tensor(fixture, ctx, case_name, "after1");
    if (p0 == NULL || p1 == NULL || grads0 == NULL || grads1 == NULL || lrs == NULL ||
        after0 == NULL || after1 == NULL) {
        mr_ctx_free(ctx);
        return;
    }
    CHECK_STATUS(mr_tensor_set_param(p0), MR_OK);
    CHECK_STATUS(mr_tensor_set_param(p1), MR_OK);

    mr_error err;
    mr_optim *opt = mr_optim_create(&config, &err);
    CHECK(opt != NULL);
    CHECK_STATUS(mr_optim_add_group(opt, &p0, 1, 0.125f, 1.0f, &err), MR_OK);
    CHECK_STATUS(mr_optim_add_group(opt, &p1, 1, 0.0f, 0.5f, &err), MR_OK);

    int64_t steps = lrs->shape[0];
    for (int64_t step = 0; step < steps; step++) {
        set_grad(p0, grads0->data + step * 5);
        set_grad(p1, grads1->data + step * 3);
        CHECK_STATUS(mr_optim_step(opt, lrs->data[step], &err), MR_OK);
        if (CHECK_ARRAY_NEAR(p0->data, after0->data + step * 5, 5, atol, rtol) > 0 ||
            CHECK_ARRAY_NEAR(p1->data, after1->data + step * 3, 3, atol, rtol) > 0) {
            mr_test_fail(__FILE__, __LINE__, "case %s differs after step %lld", case_name,
                         (long long)step + 1);
            break;
        }
    }

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

static void optimizers_match_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/optim.json");

    mr_optim_config sgd = mr_optim_config_default(MR_OPTIM_SGD);
    check_torch_case(fixture, "sgd", sgd, 1e-7, 1e-6);

    sgd.momentum = 0.9f;
    check_torch_case(fixture, "sgd_momentum", sgd, 1e-7, 1e-6);

    sgd.nesterov = true;
    check_torch_case(fixture, "sgd_nesterov", sgd, 1e-7, 1e-6);

    check_torch_case(fixture, "adam", mr_optim_config_default(MR_OPTIM_ADAM), 1e-7, 1e-6);
    check_torch_case(fixture, "adamw", mr_optim_config_default(MR_OPTIM_ADAMW), 1e-7, 1e-6);

    mr_fixture_free(fixture);
}

/* ------------------------------------------------------------------------
 * Gradient clipping
 * ------------------------------------------------------------------------ */

static void clip_scales_above_max_norm(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *a = make_param(ctx, (float[]){0.0f, 0.0f}, 2);
    mr_tensor *b = make_param(ctx, (float[]){0.0f}, 1);
    mr_tensor *params[3] = {a, NULL, b};

    /* sqrt(3^2 + 4^2 + 12^2) = sqrt(169) = 13; below max_norm, unchanged. */
    set_grad(a, (float[]){3.0f, -4.0f});
    set_grad(b, (float[]){12.0f});
    CHECK_NEAR(mr_grad_clip_norm(params, 3, 26.0f), 13.0, 0);
    CHECK_ARRAY_NEAR(a->grad, ((float[]){3.0f, -4.0f}), 2, 0, 0);
    CHECK_NEAR(b->grad[0], 12.0, 0);

    /* max_norm 13 equals the norm: still unchanged. */
    CHECK_NEAR(mr_grad_clip_norm(params, 3, 13.0f), 13.0, 0);
    CHECK_NEAR(b->grad[0], 12.0, 0);

    /* max_norm <= 0 measures only. */
    CHECK_NEAR(mr_grad_clip_norm(params, 3, 0.0f), 13.0, 0);
    CHECK_NEAR(b->grad[0], 12.0, 0);

    /* max_norm 6.5 halves the gradients (up to the 1e-6 added to 13). */
    CHECK_NEAR(mr_grad_clip_norm(params, 3, 6.5f), 13.0, 0);
    CHECK_ARRAY_NEAR(a->grad, ((float[]){1.5f, -2.0f}), 2, 1e-6, 0);
    CHECK_NEAR(b->grad[0], 6.0, 1e-6);
    CHECK_NEAR(mr_grad_clip_norm(params, 3, 0.0f), 6.5, 1e-6);

    mr_ctx_free(ctx);
}

static void clip_reports_nan_and_inf(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *a = make_param(ctx, (float[]){0.0f, 0.0f}, 2);
    mr_tensor *b = make_param(ctx, (float[]){0.0f}, 1);
    mr_tensor *params[2] = {a, b};

    set_grad(a, (float[]){3.0f, NAN});
    set_grad(b, (float[]){12.0f});
    CHECK(isnan(mr_grad_clip_norm(params, 2, 1.0f)));
    CHECK_NEAR(a->grad[0], 3.0, 0);
    CHECK_NEAR(b->grad[0], 12.0, 0);

    set_grad(a, (float[]){3.0f, INFINITY});
    CHECK(isinf(mr_grad_clip_norm(params, 2, 1.0f)));
    CHECK_NEAR(a->grad[0], 3.0, 0);
    CHECK_NEAR(b->grad[0], 12.0, 0);

    /* Finite gradients whose norm exceeds the float range also count as
     * infinite and are left unscaled. */
    set_grad(a, (float[]){3e38f, 3e38f});
    CHECK(isinf(mr_grad_clip_norm(params, 2, 1.0f)));
    CHECK_NEAR(a->grad[0], 3e38f, 0);

    mr_ctx_free(ctx);
}

static void clip_large_tensor_same_on_threads(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t n = 300001; /* several blocks and a partial one */
    mr_tensor *w = mr_tensor_zeros(ctx, MR_F32, 1, &n);
    CHECK_STATUS(mr_tensor_set_param(w), MR_OK);
    mr_tensor *params[1] = {w};
    double expected = 0.0;
    for (int64_t i = 0; i < n; i++) {
        w->grad[i] = (float)((i % 7) - 3) * 0.25f;
        expected += (double)w->grad[i] * w->grad[i];
    }
    expected = sqrt(expected);

    int threads = mr_threads_get();
    mr_threads_set(1);
    float one_thread = mr_grad_clip_norm(params, 1, 0.0f);
    mr_threads_set(2);
    float two_threads = mr_grad_clip_norm(params, 1, 0.0f);
    mr_threads_set(threads);
    CHECK_NEAR(one_thread, expected, expected * 1e-7);
    CHECK(memcmp(&one_thread, &two_threads, sizeof one_thread) == 0);

    /* The optimizer's method clips all of its parameters the same way. */
    mr_error err;
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_SGD);
    mr_optim *opt = mr_optim_create(&config, &err);
    CHECK_STATUS(mr_optim_add_group(opt, params, 1, 0.0f, 1.0f, &err), MR_OK);
    CHECK_NEAR(mr_optim_clip_grad_norm(opt, 1.0f), expected, expected * 1e-7);
    CHECK_NEAR(mr_optim_clip_grad_norm(opt, 0.0f), 1.0, 1e-6);

    mr_optim_zero_grad(opt);
    CHECK_NEAR(mr_optim_clip_grad_norm(opt, 0.0f), 0.0, 0);

    mr_optim_free(opt);
    mr_ctx_free(ctx);
}

/* ------------------------------------------------------------------------
 * Learning-rate schedules: base 1, min 0.1, 4 warm-up steps, 14 in all, so
 * the decay spans steps 4..13 and progress = (step - 4) / 10.
 * ------------------------------------------------------------------------ */

static void schedule_cosine_values(void) {
    mr_lr_schedule s = {1.0f, 0.1f, 4, 14, MR_LR_COSINE};
    CHECK_STATUS(mr_lr_schedule_check(&s, NULL), MR_OK);

    CHECK_NEAR(mr_lr_at(&s, -5), 0.25, 0);
    CHECK_NEAR(mr_lr_at(&s, 0), 0.25, 0); /* 1 * (0 + 1) / 4 */
    CHECK_NEAR(mr_lr_at(&s, 1), 0.5, 0);
    CHECK_NEAR(mr_lr_at(&s, 3), 1.0, 0);  /* last warm-up step */
    CHECK_NEAR(mr_lr_at(&s, 4), 1.0, 0);  /* progress 0 */
    /* Progress 0.2: 0.1 + 0.9 * (1 + cos(0.2 pi)) / 2 = 0.1 + 0.45 * 1.80901699. */
    CHECK_NEAR(mr_lr_at(&s, 6), 0.914057647, 1e-7);
    CHECK_NEAR(mr_lr_at(&s, 9), 0.55, 1e-7); /* progress 0.5 */
    /* Progress 0.9: 0.1 + 0.45 * (1 + cos(0.9 pi)) = 0.1 + 0.45 * 0.0489434837. */
    CHECK_NEAR(mr_lr_at(&s, 13), 0.122024568, 1e-7);
    CHECK_NEAR(mr_lr_at(&s, 14), 0.1f, 0);
    CHECK_NEAR(mr_lr_at(&s, 1000000), 0.1f, 0);
}

static void schedule_linear_values(void) {
    mr_lr_schedule s = {1.0f, 0.1f, 4, 14, MR_LR_LINEAR};
    CHECK_STATUS(mr_lr_schedule_check(&s, NULL), MR_OK);

    CHECK_NEAR(mr_lr_at(&s, 0), 0.25, 0);
    CHECK_NEAR(mr_lr_at(&s, 2), 0.75, 0);
    CHECK_NEAR(mr_lr_at(&s, 3), 1.0, 0);
    CHECK_NEAR(mr_lr_at(&s, 4), 1.0, 0);
    CHECK_NEAR(mr_lr_at(&s, 6), 0.82, 1e-7);  /* 1 - 0.9 * 0.2 */
    CHECK_NEAR(mr_lr_at(&s, 9), 0.55, 1e-7);  /* 1 - 0.9 * 0.5 */
    CHECK_NEAR(mr_lr_at(&s, 13), 0.19, 1e-7); /* 1 - 0.9 * 0.9 */
    CHECK_NEAR(mr_lr_at(&s, 14), 0.1f, 0);
    CHECK_NEAR(mr_lr_at(&s, 20), 0.1f, 0);
}

static void schedule_constant_and_no_warmup(void) {
    mr_lr_schedule constant = {0.5f, 0.0f, 2, 0, MR_LR_CONSTANT};
    CHECK_STATUS(mr_lr_schedule_check(&constant, NULL), MR_OK);
    CHECK_NEAR(mr_lr_at(&constant, 0), 0.25, 0);
    CHECK_NEAR(mr_lr_at(&constant, 1), 0.5, 0);
    CHECK_NEAR(mr_lr_at(&constant, 1000), 0.5, 0);

    mr_lr_schedule cosine = {0.5f, 0.0f, 0, 2, MR_LR_COSINE};
    CHECK_NEAR(mr_lr_at(&cosine, 0), 0.5, 0);
    CHECK_NEAR(mr_lr_at(&cosine, 1), 0.25, 1e-8);
    CHECK_NEAR(mr_lr_at(&cosine, 2), 0.0, 0);

    /* Warm-up straight into the end: the step after warm-up is min_lr. */
    mr_lr_schedule abrupt = {0.5f, 0.125f, 2, 2, MR_LR_LINEAR};
    CHECK_STATUS(mr_lr_schedule_check(&abrupt, NULL), MR_OK);
    CHECK_NEAR(mr_lr_at(&abrupt, 1), 0.5, 0);
    CHECK_NEAR(mr_lr_at(&abrupt, 2), 0.125, 0);
}

static void schedule_rejects_bad_values(void) {
    mr_error err;
    mr_lr_schedule short_total = {1.0f, 0.1f, 10, 5, MR_LR_COSINE};
    CHECK_STATUS(mr_lr_schedule_check(&short_total, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "total_steps (5)") != NULL);

    mr_lr_schedule high_floor = {0.1f, 1.0f, 0, 5, MR_LR_LINEAR};
    CHECK_STATUS(mr_lr_schedule_check(&high_floor, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "min_lr") != NULL);

    mr_lr_schedule negative_warmup = {0.1f, 0.0f, -1, 5, MR_LR_CONSTANT};
    CHECK_STATUS(mr_lr_schedule_check(&negative_warmup, &err), MR_ERR_INVALID_ARGUMENT);

    mr_lr_schedule nan_lr = {NAN, 0.0f, 0, 5, MR_LR_CONSTANT};
    CHECK_STATUS(mr_lr_schedule_check(&nan_lr, &err), MR_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------
 * State export and import
 * ------------------------------------------------------------------------ */

/* Deterministic gradient of element i at step `step`. */
static float resume_grad(int64_t step, int64_t i) {
    return (float)((step * 7 + i * 3) % 11 - 5) * 0.125f;
}

/* Runs steps from..to-1 on two groups (a: 20 elements, b: 9). */
static void resume_run(mr_optim *opt, mr_tensor *a, mr_tensor *b, int64_t from,
                       int64_t to) {
    for (int64_t step = from; step < to; step++) {
        for (int64_t i = 0; i < 20; i++) {
            a->grad[i] = resume_grad(step, i);
        }
        for (int64_t i = 0; i < 9; i++) {
            b->grad[i] = resume_grad(step, i + 100);
        }
        CHECK_STATUS(mr_optim_step(opt, 0.01f * (float)(step + 1), NULL), MR_OK);
    }
}

/* Creates the two-group optimizer of resume_run with fresh parameters. */
static mr_optim *resume_optim(mr_optim_config config, mr_ctx *ctx,
                              mr_tensor **a, mr_tensor **b) {
    *a = mr_tensor_zeros(ctx, MR_F32, 1, (int64_t[]){20});
    *b = mr_tensor_zeros(ctx, MR_F32, 1, (int64_t[]){9});
    mr_test_fill_uniform(*a, -1, 1, 11);
    mr_test_fill_uniform(*b, -1, 1, 12);
    CHECK_STATUS(mr_tensor_set_param(*a), MR_OK);
    CHECK_STATUS(mr_tensor_set_param(*b), MR_OK);

    mr_error err;
    mr_optim *opt = mr_optim_create(&config, &err);
    CHECK(opt != NULL);
    CHECK_STATUS(mr_optim_add_group(opt, a, 1, MR_OPTIM_DEFAULT_DECAY, 1.0f, &err), MR_OK);
    CHECK_STATUS(mr_optim_add_group(opt, b, 1, 0.0f, 0.5f, &err), MR_OK);
    return opt;
}

/* A run interrupted after 3 of 6 steps and resumed from exported state
 * in a fresh optimizer ends with the same bits as an uninterrupted run. */
static void check_resume(mr_optim_config config, int expected_arrays) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *a_full, *b_full, *a_first, *b_first, *a_resumed, *b_resumed;
    mr_optim *full = resume_optim(config, ctx, &a_full, &b_full);
    mr_optim *first = resume_optim(config, ctx, &a_first, &b_first);
    mr_optim *resumed = resume_optim(config, ctx, &a_resumed, &b_resumed);
    resume_run(full, a_full, b_full, 0, 6);
    resume_run(first, a_first, b_first, 0, 3);

    CHECK_INT_EQ(mr_optim_state_count(first), expected_arrays);
    mr_error err;
    for (int i = 0; i < mr_optim_state_count(first); i++) {
        const char *name;
        const float *data;
        int64_t count;
        CHECK_STATUS(mr_optim_state_get(first, i, &name, &data, &count, &err), MR_OK);
        CHECK_STATUS(mr_optim_state_set(resumed, name, data, count, &err), MR_OK);
    }
    CHECK_STATUS(mr_optim_set_step_count(resumed, mr_optim_step_count(first), &err), MR_OK);
    CHECK_STATUS(mr_tensor_copy(a_resumed, a_first), MR_OK);
    CHECK_STATUS(mr_tensor_copy(b_resumed, b_first), MR_OK);

    /* A control that restores parameters and step count but not the
     * state arrays, to show that the import matters. */
    mr_tensor *a_cold, *b_cold;
    mr_optim *cold = resume_optim(config, ctx, &a_cold, &b_cold);
    CHECK_STATUS(mr_optim_set_step_count(cold, 3, &err), MR_OK);
    CHECK_STATUS(mr_tensor_copy(a_cold, a_first), MR_OK);
    CHECK_STATUS(mr_tensor_copy(b_cold, b_first), MR_OK);

    resume_run(resumed, a_resumed, b_resumed, 3, 6);
    resume_run(cold, a_cold, b_cold, 3, 6);
    CHECK_INT_EQ(mr_optim_step_count(resumed), 6);
    CHECK(memcmp(a_resumed->data, a_full->data, 20 * sizeof(float)) == 0);
    CHECK(memcmp(b_resumed->data, b_full->data, 9 * sizeof(float)) == 0);
    CHECK(memcmp(a_cold->data, a_full->data, 20 * sizeof(float)) != 0);

    mr_optim_free(cold);
    mr_optim_free(full);
    mr_optim_free(first);
    mr_optim_free(resumed);
    mr_ctx_free(ctx);
}

static void resume_adam_bit_identical(void) {
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_ADAM);
    config.weight_decay = 0.1f;
    check_resume(config, 4);
}

static void resume_adamw_bit_identical(void) {
    check_resume(mr_optim_config_default(MR_OPTIM_ADAMW), 4);
}

static void resume_sgd_momentum_bit_identical(void) {
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_SGD);
    config.momentum = 0.9f;
    config.nesterov = true;
    check_resume(config, 2);
}

static void state_import_rejects_mismatch(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *a, *b;
    mr_optim *adam = resume_optim(mr_optim_config_default(MR_OPTIM_ADAM), ctx, &a, &b);
    float values[20] = {0};
    mr_error err;

    const char *name = NULL;
    CHECK_STATUS(mr_optim_state_get(adam, 3, &name, NULL, NULL, &err), MR_OK);
    CHECK(strcmp(name, "optim.v.1.0") == 0);
    CHECK_STATUS(mr_optim_state_get(adam, 4, &name, NULL, NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "state index 4") != NULL);

    /* b has 9 elements, so its moments take exactly 9 floats. */
    CHECK_STATUS(mr_optim_state_set(adam, "optim.m.1.0", values, 20, &err), MR_ERR_SHAPE);
    CHECK(strstr(err.message, "'optim.m.1.0' has 9 floats but 20") != NULL);
    CHECK_STATUS(mr_optim_state_set(adam, "optim.m.2.0", values, 9, &err), MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "optim.m.2.0") != NULL);

    /* SGD momentum state does not fit Adam, nor the reverse. */
    CHECK_STATUS(mr_optim_state_set(adam, "optim.momentum.0.0", values, 20, &err),
                 MR_ERR_NOT_FOUND);
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_SGD);
    config.momentum = 0.5f;
    mr_tensor *c, *d;
    mr_optim *sgd = resume_optim(config, ctx, &c, &d);
    CHECK_STATUS(mr_optim_state_set(sgd, "optim.m.0.0", values, 20, &err), MR_ERR_NOT_FOUND);
    CHECK_STATUS(mr_optim_state_set(sgd, "optim.momentum.0.0", values, 20, &err), MR_OK);

    CHECK_STATUS(mr_optim_set_step_count(sgd, -1, &err), MR_ERR_INVALID_ARGUMENT);

    mr_optim_free(adam);
    mr_optim_free(sgd);
    mr_ctx_free(ctx);
}

/* ------------------------------------------------------------------------
 * Argument checks and threads
 * ------------------------------------------------------------------------ */

static void config_rejects_bad_values(void) {
    mr_error err;
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_ADAM);
    config.beta2 = 1.0f;
    CHECK(mr_optim_create(&config, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "beta2 is 1") != NULL);

    config = mr_optim_config_default(MR_OPTIM_SGD);
    config.nesterov = true;
    CHECK(mr_optim_create(&config, &err) == NULL);
    CHECK(strstr(err.message, "Nesterov") != NULL);

    config = mr_optim_config_default(MR_OPTIM_ADAMW);
    CHECK_NEAR(config.weight_decay, 0.01, 1e-9);
    config.weight_decay = -0.5f;
    CHECK(mr_optim_create(&config, &err) == NULL);
    CHECK(strstr(err.message, "weight_decay") != NULL);
}

static void add_group_rejects_bad_params(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = make_param(ctx, (float[]){1.0f, 2.0f}, 2);
    mr_tensor *plain = mr_tensor_zeros(ctx, MR_F32, 1, (int64_t[]){2});
    mr_tensor_set_name(plain, "plain");
    mr_error err;
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_ADAM);
    mr_optim *opt = mr_optim_create(&config, &err);

    CHECK_STATUS(mr_optim_add_group(opt, &plain, 1, 0.0f, 1.0f, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "'plain'") != NULL);
    mr_tensor *twice[2] = {w, w};
    CHECK_STATUS(mr_optim_add_group(opt, twice, 2, 0.0f, 1.0f, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "twice") != NULL);
    CHECK_STATUS(mr_optim_add_group(opt, &w, 1, 0.0f, -1.0f, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_optim_add_group(opt, &w, 1, -2.0f, 1.0f, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_INT_EQ(mr_optim_group_count(opt), 0);
    CHECK_INT_EQ(mr_optim_state_count(opt), 0);

    CHECK_STATUS(mr_optim_add_group(opt, &w, 1, 0.0f, 1.0f, &err), MR_OK);
    CHECK_STATUS(mr_optim_add_group(opt, &w, 1, 0.0f, 1.0f, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "already in group 0") != NULL);
    CHECK_INT_EQ(mr_optim_param_count(opt), 1);

    CHECK_STATUS(mr_optim_step(opt, NAN, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_INT_EQ(mr_optim_step_count(opt), 0);
    CHECK_STATUS(mr_optim_step(opt, 0.1f, &err), MR_OK);
    mr_tensor *late = make_param(ctx, (float[]){1.0f}, 1);
    CHECK_STATUS(mr_optim_add_group(opt, &late, 1, 0.0f, 1.0f, &err), MR_ERR_STATE);

    mr_optim_free(opt);
    mr_optim_free(NULL);
    mr_ctx_free(ctx);
}

static void step_same_on_threads(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t n = 100003;
    mr_tensor *w1 = mr_tensor_zeros(ctx, MR_F32, 1, &n);
    mr_tensor *w2 = mr_tensor_zeros(ctx, MR_F32, 1, &n);
    mr_test_fill_uniform(w1, -1, 1, 5);
    CHECK_STATUS(mr_tensor_copy(w2, w1), MR_OK);
    CHECK_STATUS(mr_tensor_set_param(w1), MR_OK);
    CHECK_STATUS(mr_tensor_set_param(w2), MR_OK);
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_ADAMW);
    mr_optim *opt1 = single_group_optim(config, w1, MR_OPTIM_DEFAULT_DECAY);
    mr_optim *opt2 = single_group_optim(config, w2, MR_OPTIM_DEFAULT_DECAY);

    int threads = mr_threads_get();
    for (int step = 0; step < 3; step++) {
        for (int64_t i = 0; i < n; i++) {
            w1->grad[i] = w2->grad[i] = resume_grad(step, i);
        }
        mr_threads_set(1);
        CHECK_STATUS(mr_optim_step(opt1, 0.01f, NULL), MR_OK);
        mr_threads_set(2);
        CHECK_STATUS(mr_optim_step(opt2, 0.01f, NULL), MR_OK);
    }
    mr_threads_set(threads);
    CHECK(memcmp(w1->data, w2->data, (size_t)n * sizeof(float)) == 0);

    mr_optim_free(opt1);
    mr_optim_free(opt2);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(sgd_plain_two_steps);
    MR_RUN(sgd_weight_decay_one_step);
    MR_RUN(sgd_momentum_two_steps);
    MR_RUN(sgd_nesterov_two_steps);
    MR_RUN(adam_two_steps);
    MR_RUN(adam_l2_decay_one_step);
    MR_RUN(adamw_decoupled_decay_one_step);
    MR_RUN(optimizers_match_torch);
    MR_RUN(clip_scales_above_max_norm);
    MR_RUN(clip_reports_nan_and_inf);
    MR_RUN(clip_large_tensor_same_on_threads);
    MR_RUN(schedule_cosine_values);
    MR_RUN(schedule_linear_values);
    MR_RUN(schedule_constant_and_no_warmup);
    MR_RUN(schedule_rejects_bad_values);
    MR_RUN(resume_adam_bit_identical);
    MR_RUN(resume_adamw_bit_identical);
    MR_RUN(resume_sgd_momentum_bit_identical);
    MR_RUN(state_import_rejects_mismatch);
    MR_RUN(config_rejects_bad_values);
    MR_RUN(add_group_rejects_bad_params);
    MR_RUN(step_same_on_threads);
    return mr_test_finish();
}
