/*
 * GRPO's parts: group-relative advantages, the KL estimators, and the
 * clipped policy loss (a fused engine operation that PPO shares).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/rl.h"

#include "engine/internal.h"
#include "train/rl_internal.h"

const char *mr_kl_estimator_name(mr_kl_estimator estimator) {
    return estimator == MR_KL_LOG_RATIO ? "log_ratio" : "k3";
}

mr_status mr_kl_estimator_parse(const char *name, mr_kl_estimator *out, mr_error *err) {
    if (strcmp(name, "k3") == 0) {
        *out = MR_KL_K3;
        return MR_OK;
    }
    if (strcmp(name, "log_ratio") == 0) {
        *out = MR_KL_LOG_RATIO;
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                        "unknown KL estimator '%s'; expected k3 or log_ratio", name);
}

float mr_rl_kl(float logprob, float ref_logprob, mr_kl_estimator estimator) {
    if (estimator == MR_KL_LOG_RATIO) {
        return logprob - ref_logprob;
    }
    float d = ref_logprob - logprob;
    return expf(d) - d - 1.0f;
}

/* Derivative of mr_rl_kl with respect to logprob. */
static float kl_derivative(float logprob, float ref_logprob, mr_kl_estimator estimator) {
    if (estimator == MR_KL_LOG_RATIO) {
        return 1.0f;
    }
    return 1.0f - expf(ref_logprob - logprob);
}

mr_status mr_grpo_advantages(const float *rewards, int n_groups, int group_size,
                             bool scale_by_std, float eps, float *advantages, mr_error *err) {
    if (n_groups < 1 || group_size < 1 || !(eps >= 0.0f)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "grpo_advantages: need n_groups >= 1, group_size >= 1 and eps >= 0, "
                            "got %d, %d and %g",
                            n_groups, group_size, (double)eps);
    }
    int64_t total = (int64_t)n_groups * group_size;
    for (int64_t i = 0; i < total; i++) {
        if (!isfinite(rewards[i])) {
            return mr_error_set(err, MR_ERR_NUMERIC,
                                "grpo_advantages: reward %lld is %g; rewards must be finite",
                                (long long)i, (double)rewards[i]);
        }
    }

    for (int g = 0; g < n_groups; g++) {
        const float *r = rewards + (int64_t)g * group_size;
        float *a = advantages + (int64_t)g * group_size;
        double mean = 0.0;
        for (int i = 0; i < group_size; i++) {
            mean += r[i];
        }
        mean /= group_size;
        double scale = 1.0;
        if (scale_by_std && group_size > 1) {
            double var = 0.0;
            for (int i = 0; i < group_size; i++) {
                var += (r[i] - mean) * (r[i] - mean);
            }
            /* Equal rewards with eps 0 would divide 0 by 0; their
             * differences from the mean are 0 whatever the scale. */
            double denominator = sqrt(var / (group_size - 1)) + eps;
            scale = denominator > 0.0 ? 1.0 / denominator : 1.0;
        }
        for (int i = 0; i < group_size; i++) {
            a[i] = group_size > 1 ? (float)((r[i] - mean) * scale) : 0.0f;
        }
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * The clipped policy loss
 * ------------------------------------------------------------------------ */

/* The constant inputs of one policy loss, kept for its backward pass. */
typedef struct policy_loss_saved {
    const float *old;
    const float *adv;
    const float *ref; /* NULL without a KL term */
    const float *weights;
} policy_loss_saved;

/*
 * Derivative of one token's loss with respect to its log-probability.
 * -min(rho A, clip(rho) A) follows PyTorch. Where the two terms are equal
 * (rho inside the clip range, bounds included), each gets half the
 * gradient and both halves pass -A rho. Where the clipped term is strictly
 * smaller, its clamp stops the gradient.
 */
static float policy_token_derivative(float logp, float old, float adv, const float *ref,
                                     float clip_eps, float kl_coef, mr_kl_estimator estimator) {
    float rho = expf(logp - old);
    float clipped = fminf(fmaxf(rho, 1.0f - clip_eps), 1.0f + clip_eps);
    float unclipped_term = rho * adv;
    float clipped_term = clipped * adv;
    float d = 0.0f;
    if (unclipped_term <= clipped_term) {
        d = -adv * rho;
    }
    if (ref != NULL && kl_coef != 0.0f) {
        d += kl_coef * kl_derivative(logp, *ref, estimator);
    }
    return d;
}

static void policy_loss_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *logp = out->src[0];
    float *dlogp = mr_tensor_grad_buffer(ctx, logp);
    if (dlogp == NULL) {
        return;
    }
    const policy_loss_saved *s = out->saved;
    float g = out->grad[0];
    float clip_eps = out->fparams[0], kl_coef = out->fparams[1];
    mr_kl_estimator estimator = (mr_kl_estimator)out->iparams[0];
    int64_t n = mr_tensor_numel(logp);

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        if (s->weights[i] == 0.0f) {
            continue;
        }
        const float *ref = s->ref != NULL ? &s->ref[i] : NULL;
        float d = policy_token_derivative(logp->data[i], s->old[i], s->adv[i], ref, clip_eps,
                                          kl_coef, estimator);
        dlogp[i] += g * s->weights[i] * d;
    }
}

/* Checks that t is an F32 tensor of like's shape; names arg in the error. */
static bool check_like(mr_ctx *ctx, const char *op, const char *arg, const mr_tensor *t,
                       const mr_tensor *like) {
    if (t->dtype != MR_F32 || !mr_tensor_same_shape(t, like)) {
        char ts[96], ls[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: %s must be F32 of shape %s, got %s %s", op, arg,
                    mr_tensor_shape_string(like, ls, sizeof ls),
                    t->dtype == MR_F32 ? "F32" : "I32", mr_tensor_shape_string(t, ts, sizeof ts));
        return false;
    }
    return true;
}

mr_tensor *mr_rl_policy_loss(mr_ctx *ctx, mr_tensor *logprobs, mr_tensor *old,
                             mr_tensor *advantages, mr_tensor *ref, mr_tensor *weights,
                             float clip_eps, float kl_coef, mr_kl_estimator estimator) {
    static const char *op = "rl_policy_loss";
    bool use_kl = kl_coef != 0.0f;
    if (mr_any_null(4, logprobs, old, advantages, weights) || (use_kl && ref == NULL)) {
        if (use_kl && ref == NULL && logprobs != NULL) {
            mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                        "%s: kl_coef is %g but ref is NULL; pass reference log-probabilities",
                        op, (double)kl_coef);
        }
        return NULL;
    }
    if (!mr_check_dtype(ctx, op, "logprobs", logprobs, MR_F32) ||
        !check_like(ctx, op, "old", old, logprobs) ||
        !check_like(ctx, op, "advantages", advantages, logprobs) ||
        !check_like(ctx, op, "weights", weights, logprobs) ||
        (use_kl && !check_like(ctx, op, "ref", ref, logprobs))) {
        return NULL;
    }
    if (!(clip_eps >= 0.0f) || !isfinite(kl_coef)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "%s: clip_eps must be >= 0 and kl_coef finite, got %g and %g", op,
                    (double)clip_eps, (double)kl_coef);
        return NULL;
    }

    logprobs = mr_tensor_contiguous(ctx, logprobs);
    old = mr_tensor_contiguous(ctx, old);
    advantages = mr_tensor_contiguous(ctx, advantages);
    weights = mr_tensor_contiguous(ctx, weights);
    ref = use_kl ? mr_tensor_contiguous(ctx, ref) : NULL;
    if (mr_any_null(4, logprobs, old, advantages, weights) || (use_kl && ref == NULL)) {
        return NULL;
    }

    mr_tensor *srcs[1] = {logprobs};
    mr_tensor *out = mr_op_output(ctx, op, 0, NULL, srcs, 1, policy_loss_backward);
    if (out == NULL) {
        return NULL;
    }

    /* Summed in index order in double, so the value does not depend on
     * the thread count. */
    int64_t n = mr_tensor_numel(logprobs);
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float w = weights->data[i];
        if (w == 0.0f) {
            continue;
        }
        float rho = expf(logprobs->data[i] - old->data[i]);
        float clipped = fminf(fmaxf(rho, 1.0f - clip_eps), 1.0f + clip_eps);
        float a = advantages->data[i];
        double token = -fmin((double)(rho * a), (double)(clipped * a));
        if (use_kl) {
            token += kl_coef * mr_rl_kl(logprobs->data[i], ref->data[i], estimator);
        }
        total += w * token;
    }
    out->data[0] = (float)total;

    if (mr_op_recording(out)) {
        policy_loss_saved *s = mr_ctx_alloc(ctx, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        s->old = old->data;
        s->adv = advantages->data;
        s->ref = use_kl ? ref->data : NULL;
        s->weights = weights->data;
        out->saved = s;
        out->fparams[0] = clip_eps;
        out->fparams[1] = use_kl ? kl_coef : 0.0f;
        out->iparams[0] = (int32_t)estimator;
    }
    return out;
}
