/*
 * PPO's parts: generalised advantage estimation over policy tokens,
 * advantage whitening, per-token rewards with the KL penalty, and the
 * clipped value loss (a fused engine operation).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/rl.h"

#include "engine/internal.h"
#include "train/rl_internal.h"

void mr_ppo_gae(const float *rewards, const float *values, const uint8_t *mask, int n,
                float gamma, float lambda, float *advantages, float *returns) {
    /* Walk backwards; next_value and next_adv belong to the next masked
     * position, 0 past the last one. */
    double next_value = 0.0, next_adv = 0.0;
    for (int t = n - 1; t >= 0; t--) {
        if (!mask[t]) {
            advantages[t] = 0.0f;
            returns[t] = 0.0f;
            continue;
        }
        double delta = rewards[t] + gamma * next_value - values[t];
        double adv = delta + (double)gamma * lambda * next_adv;
        advantages[t] = (float)adv;
        returns[t] = (float)(adv + values[t]);
        next_value = values[t];
        next_adv = adv;
    }
}

void mr_rl_whiten(float *x, const uint8_t *mask, int64_t n) {
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        if (mask[i]) {
            sum += x[i];
            count++;
        }
    }
    if (count == 0) {
        memset(x, 0, (size_t)n * sizeof *x);
        return;
    }
    double mean = sum / (double)count;
    double var = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (mask[i]) {
            var += (x[i] - mean) * (x[i] - mean);
        }
    }
    double scale = count > 1 ? 1.0 / sqrt(var / (double)(count - 1) + 1e-8) : 1.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = mask[i] ? (float)((x[i] - mean) * scale) : 0.0f;
    }
}

void rl_ppo_token_rewards(const mr_rollout *r, float kl_coef, mr_kl_estimator estimator,
                          float *rewards) {
    int last = -1;
    for (int t = 0; t < r->n_tokens; t++) {
        rewards[t] = 0.0f;
        if (r->policy_mask[t]) {
            last = t;
            if (kl_coef != 0.0f) {
                rewards[t] = -kl_coef * mr_rl_kl(r->old_logprobs[t], r->ref_logprobs[t],
                                                 estimator);
            }
        }
    }
    if (last >= 0) {
        rewards[last] += r->reward;
    }
}

/* ------------------------------------------------------------------------
 * The clipped value loss
 * ------------------------------------------------------------------------ */

typedef struct value_loss_saved {
    const float *old;
    const float *returns;
    const float *weights;
} value_loss_saved;

/*
 * Derivative of 0.5 max(e1, e2) with respect to v, where e1 = (v - R)^2
 * and e2 = (clip(v) - R)^2. As in PyTorch, equal terms (v inside the clip
 * range, bounds included) split the gradient and both halves pass v - R;
 * a strictly larger clipped term stops it at the clamp.
 */
static float value_token_derivative(float v, float old, float ret, float clip) {
    if (!(clip > 0.0f)) {
        return v - ret;
    }
    float vc = fminf(fmaxf(v, old - clip), old + clip);
    float e1 = (v - ret) * (v - ret);
    float e2 = (vc - ret) * (vc - ret);
    return e1 >= e2 ? v - ret : 0.0f;
}

static void value_loss_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *values = out->src[0];
    float *dv = mr_tensor_grad_buffer(ctx, values);
    if (dv == NULL) {
        return;
    }
    const value_loss_saved *s = out->saved;
    float g = out->grad[0];
    float clip = out->fparams[0];
    int64_t n = mr_tensor_numel(values);

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        if (s->weights[i] != 0.0f) {
            dv[i] += g * s->weights[i] *
                     value_token_derivative(values->data[i], s->old[i], s->returns[i], clip);
        }
    }
}

mr_tensor *mr_rl_value_loss(mr_ctx *ctx, mr_tensor *values, mr_tensor *old_values,
                            mr_tensor *returns, mr_tensor *weights, float clip) {
    static const char *op = "rl_value_loss";
    if (mr_any_null(4, values, old_values, returns, weights)) {
        return NULL;
    }
    mr_tensor *others[3] = {old_values, returns, weights};
    static const char *names[3] = {"old_values", "returns", "weights"};
    if (!mr_check_dtype(ctx, op, "values", values, MR_F32)) {
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        if (others[i]->dtype != MR_F32 || !mr_tensor_same_shape(others[i], values)) {
            char vs[96], os[96];
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: %s must be F32 of shape %s, got %s", op,
                        names[i], mr_tensor_shape_string(values, vs, sizeof vs),
                        mr_tensor_shape_string(others[i], os, sizeof os));
            return NULL;
        }
    }

    values = mr_tensor_contiguous(ctx, values);
    old_values = mr_tensor_contiguous(ctx, old_values);
    returns = mr_tensor_contiguous(ctx, returns);
    weights = mr_tensor_contiguous(ctx, weights);
    if (mr_any_null(4, values, old_values, returns, weights)) {
        return NULL;
    }
    mr_tensor *srcs[1] = {values};
    mr_tensor *out = mr_op_output(ctx, op, 0, NULL, srcs, 1, value_loss_backward);
    if (out == NULL) {
        return NULL;
    }

    int64_t n = mr_tensor_numel(values);
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float w = weights->data[i];
        if (w == 0.0f) {
            continue;
        }
        float v = values->data[i], ret = returns->data[i];
        double e = (double)(v - ret) * (v - ret);
        if (clip > 0.0f) {
            float o = old_values->data[i];
            float vc = fminf(fmaxf(v, o - clip), o + clip);
            e = fmax(e, (double)(vc - ret) * (vc - ret));
        }
        total += w * 0.5 * e;
    }
    out->data[0] = (float)total;

    if (mr_op_recording(out)) {
        value_loss_saved *s = mr_ctx_alloc(ctx, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        s->old = old_values->data;
        s->returns = returns->data;
        s->weights = weights->data;
        out->saved = s;
        out->fparams[0] = clip;
    }
    return out;
}
