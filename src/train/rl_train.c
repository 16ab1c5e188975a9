/*
 * The GRPO and PPO training loop of rl.h: rollouts, scoring with the
 * policy, the reference and the value head, advantages, and clipped
 * updates over minibatches of episodes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/optim.h"
#include "multiround/params.h"
#include "multiround/rl.h"
#include "multiround/rng.h"
#include "multiround/runlog.h"

#include "train/rl_internal.h"

mr_rl_config mr_rl_config_default(mr_rl_algorithm algorithm) {
    mr_rl_config c = {
        .algorithm = algorithm,
        .steps = 100,
        .prompts_per_step = 8,
        .group_size = algorithm == MR_RL_GRPO ? 8 : 1,
        .epochs = 1,
        .minibatch = 16,
        .lr = 1e-4f,
        .warmup_steps = 0,
        .weight_decay = 0.0f,
        .max_grad_norm = 1.0f,
        .clip_eps = 0.2f,
        .kl_coef = algorithm == MR_RL_GRPO ? 0.04f : 0.001f,
        .kl_estimator = algorithm == MR_RL_GRPO ? MR_KL_K3 : MR_KL_LOG_RATIO,
        .kl_in_reward = algorithm == MR_RL_PPO,
        .average = MR_RL_AVERAGE_SEQUENCE,
        .scale_rewards = true,
        .adv_eps = 1e-4f,
        .filter_groups = false,
        .max_prompt_draws = 0,
        .gamma = 1.0f,
        .lambda = 1.0f,
        .vf_coef = 0.5f,
        .value_clip = 0.2f,
        .value_lr = 1e-3f,
        .whiten_advantages = true,
        .temperature = 1.0f,
        .seed = 0,
        .eval_every = 10,
        .eval_episodes = 100,
        .success_reward = 0.5f,
    };
    return c;
}

/* Returns the maximum number of prompts that one step draws, which is
 * prompts_per_step unless groups are filtered. */
static int64_t rl_max_prompt_draws(const mr_rl_config *c) {
    if (!c->filter_groups) {
        return c->prompts_per_step;
    }
    return c->max_prompt_draws > 0 ? c->max_prompt_draws : 8 * (int64_t)c->prompts_per_step;
}

mr_status mr_rl_config_check(const mr_rl_config *c, mr_error *err) {
#define RL_REQUIRE(cond, fmt, ...)                                                           \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "rl: " fmt, __VA_ARGS__);      \
        }                                                                                    \
    } while (0)
    RL_REQUIRE(c->algorithm == MR_RL_GRPO || c->algorithm == MR_RL_PPO,
               "algorithm must be GRPO or PPO, got %d", (int)c->algorithm);
    RL_REQUIRE(c->steps >= 0, "steps must be >= 0, got %d", c->steps);
    RL_REQUIRE(c->prompts_per_step >= 1, "prompts_per_step must be >= 1, got %d",
               c->prompts_per_step);
    RL_REQUIRE(c->group_size >= 1, "group_size must be >= 1, got %d", c->group_size);
    RL_REQUIRE(c->epochs >= 1, "epochs must be >= 1, got %d", c->epochs);
    RL_REQUIRE(c->minibatch >= 1, "minibatch must be >= 1, got %d", c->minibatch);
    RL_REQUIRE(isfinite(c->lr) && c->lr >= 0.0f, "lr must be finite and >= 0, got %g",
               (double)c->lr);
    RL_REQUIRE(c->warmup_steps >= 0, "warmup_steps must be >= 0, got %d", c->warmup_steps);
    RL_REQUIRE(c->weight_decay >= 0.0f, "weight_decay must be >= 0, got %g",
               (double)c->weight_decay);
    RL_REQUIRE(c->clip_eps >= 0.0f && c->clip_eps < 1.0f, "clip_eps must be in [0, 1), got %g",
               (double)c->clip_eps);
    RL_REQUIRE(isfinite(c->kl_coef) && c->kl_coef >= 0.0f, "kl_coef must be >= 0, got %g",
               (double)c->kl_coef);
    RL_REQUIRE(c->kl_estimator == MR_KL_K3 || c->kl_estimator == MR_KL_LOG_RATIO,
               "unknown kl_estimator %d", (int)c->kl_estimator);
    RL_REQUIRE(c->average == MR_RL_AVERAGE_SEQUENCE || c->average == MR_RL_AVERAGE_TOKEN,
               "unknown loss average %d", (int)c->average);
    RL_REQUIRE(c->adv_eps >= 0.0f, "adv_eps must be >= 0, got %g", (double)c->adv_eps);
    RL_REQUIRE(!c->filter_groups || (c->algorithm == MR_RL_GRPO && c->group_size >= 2),
               "filter_groups needs GRPO with group_size >= 2, got group_size %d",
               c->group_size);
    RL_REQUIRE(c->max_prompt_draws == 0 || c->max_prompt_draws >= c->prompts_per_step,
               "max_prompt_draws must be 0 or >= prompts_per_step (%d), got %d",
               c->prompts_per_step, c->max_prompt_draws);
    RL_REQUIRE((int64_t)rl_max_prompt_draws(c) * c->group_size <= (int64_t)UINT32_MAX,
               "prompts drawn per step (%lld) x group_size (%d) must be below 2^32, because "
               "each episode of a step gets a 32-bit seed counter",
               (long long)rl_max_prompt_draws(c), c->group_size);
    RL_REQUIRE(c->gamma >= 0.0f && c->gamma <= 1.0f, "gamma must be in [0, 1], got %g",
               (double)c->gamma);
    RL_REQUIRE(c->lambda >= 0.0f && c->lambda <= 1.0f, "lambda must be in [0, 1], got %g",
               (double)c->lambda);
    RL_REQUIRE(c->vf_coef >= 0.0f, "vf_coef must be >= 0, got %g", (double)c->vf_coef);
    RL_REQUIRE(isfinite(c->value_lr) && c->value_lr >= 0.0f, "value_lr must be >= 0, got %g",
               (double)c->value_lr);
    RL_REQUIRE(isfinite(c->temperature), "temperature must be finite, got %g",
               (double)c->temperature);
    RL_REQUIRE(c->temperature > 0.0f,
               "temperature must be > 0 for training rollouts, got %g", (double)c->temperature);
    RL_REQUIRE(c->eval_every >= 0, "eval_every must be >= 0, got %d", c->eval_every);
    RL_REQUIRE(c->eval_episodes >= 1, "eval_episodes must be >= 1, got %d", c->eval_episodes);
#undef RL_REQUIRE
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Trainer state
 * ------------------------------------------------------------------------ */

/* Sums over every episode that a step sampled, including the groups that
 * filter_groups dropped. */
typedef struct rl_sample_stats {
    double reward, solved, turns, tokens, policy_tokens, truncated;
    int episodes;
    int prompts_drawn;
} rl_sample_stats;

/* Statistics of one step's updates, averaged over its minibatches. */
typedef struct rl_update_stats {
    double loss, policy_loss, value_loss, kl, clip_frac, grad_norm;
    int count;
} rl_update_stats;

/* The constant tensors of one minibatch, [m, T-1] by action position. */
typedef struct rl_batch {
    int m;
    int64_t t;              /* T: the longest sequence */
    mr_tensor *tokens;      /* I32 [m, T], padded with 0 */
    mr_tensor *weights;     /* loss weight per action; 0 off the policy's tokens */
    mr_tensor *old, *ref, *advantages, *old_values, *returns;
    int64_t policy_tokens;
} rl_batch;

/*
 * Builds the logits [B, T, V] of tokens and, when hidden is not NULL, the
 * final hidden states [B, T, C] that the value head reads. The logits are
 * then the output projection of those states, the same operation that
 * mr_llama_logits() ends with.
 */
static mr_tensor *policy_logits(mr_llama *model, mr_ctx *ctx, mr_tensor *tokens,
                                mr_tensor **hidden) {
    if (hidden == NULL) {
        return mr_llama_logits(model, ctx, tokens);
    }
    const mr_llama_weight *out = mr_llama_find_weight(model, "output.weight");
    if (out == NULL) {
        out = mr_llama_find_weight(model, "token_embd.weight");
    }
    *hidden = mr_llama_hidden(model, NULL, ctx, tokens);
    return mr_tensor_linear(ctx, *hidden, out->param, NULL);
}

static int64_t value_feature_width(const mr_llama *model) {
    return mr_llama_get_config(model)->dim;
}

/* Creates the zero-initialised value head of PPO. */
static mr_status create_value_head(rl_trainer *tr, mr_error *err) {
    tr->head = mr_paramset_create();
    if (tr->head == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rl: out of memory for the value head");
    }
    int64_t w_shape[2] = {1, value_feature_width(tr->policy)};
    int64_t b_shape[1] = {1};
    if (mr_paramset_declare(tr->head, "value_head.weight", 2, w_shape, err) < 0 ||
        mr_paramset_declare(tr->head, "value_head.bias", 1, b_shape, err) < 0) {
        return err ? err->status : MR_ERR_INVALID_ARGUMENT;
    }
    return mr_paramset_finalize(tr->head, err);
}

/* Builds logits, action log-probabilities [m, T-1] and, for PPO, values
 * [m, T-1] of a batch in tr->ctx. */
static mr_status forward_batch(rl_trainer *tr, mr_llama *model, const rl_batch *b, bool values,
                               mr_tensor **logprobs, mr_tensor **value_out) {
    mr_ctx *ctx = tr->ctx;
    mr_tensor *features = NULL;
    mr_tensor *logits = policy_logits(model, ctx, b->tokens, values ? &features : NULL);
    *logprobs = mr_rl_token_logprobs(ctx, logits, b->tokens, tr->c->temperature);
    *value_out = NULL;
    if (values) {
        mr_tensor *w = mr_paramset_get(tr->head, 0);
        mr_tensor *bias = mr_paramset_get(tr->head, 1);
        mr_tensor *v = mr_tensor_linear(ctx, features, w, bias);
        int64_t shape[2] = {b->m, b->t};
        v = mr_tensor_reshape(ctx, v, 2, shape);
        *value_out = mr_tensor_slice(ctx, v, 1, 0, b->t - 1);
    }
    return mr_ctx_status(ctx);
}

/* Per-token arrays that gather_actions copies. */
typedef enum rl_field { FIELD_OLD, FIELD_REF, FIELD_VALUES, FIELD_ADVANTAGES, FIELD_RETURNS } rl_field;

static const float *field_of(const rl_trainer *tr, int i, rl_field field) {
    switch (field) {
    case FIELD_OLD:
        return tr->rollouts[i].old_logprobs;
    case FIELD_REF:
        return tr->rollouts[i].ref_logprobs;
    case FIELD_VALUES:
        return tr->rollouts[i].values;
    case FIELD_ADVANTAGES:
        return tr->advantages[i];
    case FIELD_RETURNS:
        return tr->returns[i];
    }
    return NULL;
}

/* Fills a [m, T-1] F32 tensor with a per-token array of each rollout at
 * its policy tokens, and zeros elsewhere. */
static mr_tensor *gather_actions(rl_trainer *tr, const int *idx, int m, int64_t t,
                                 rl_field field) {
    mr_tensor *out = mr_tensor_new2d(tr->ctx, MR_F32, m, t - 1);
    if (out == NULL) {
        return NULL;
    }
    mr_tensor_fill(out, 0.0f);
    for (int i = 0; i < m; i++) {
        const mr_rollout *r = &tr->rollouts[idx[i]];
        const float *src = field_of(tr, idx[i], field);
        for (int s = 1; s < r->n_tokens; s++) {
            if (r->policy_mask[s]) {
                out->data[(int64_t)i * (t - 1) + s - 1] = src[s];
            }
        }
    }
    return out;
}

/* Builds the tensors of the minibatch idx[0..m-1] in tr->ctx. */
static mr_status build_batch(rl_trainer *tr, const int *idx, int m, rl_batch *b) {
    memset(b, 0, sizeof *b);
    b->m = m;
    int64_t t = 2;
    for (int i = 0; i < m; i++) {
        int n = tr->rollouts[idx[i]].n_tokens;
        t = n > t ? n : t;
    }
    b->t = t;

    b->tokens = mr_tensor_new2d(tr->ctx, MR_I32, m, t);
    b->weights = mr_tensor_new2d(tr->ctx, MR_F32, m, t - 1);
    if (b->tokens == NULL || b->weights == NULL) {
        return mr_ctx_status(tr->ctx);
    }
    memset(b->tokens->idata, 0, (size_t)(m * t) * sizeof(int32_t));
    mr_tensor_fill(b->weights, 0.0f);
    for (int i = 0; i < m; i++) {
        const mr_rollout *r = &tr->rollouts[idx[i]];
        memcpy(b->tokens->idata + i * t, r->tokens, (size_t)r->n_tokens * sizeof(int32_t));
        b->policy_tokens += r->policy_tokens;
    }

    /* Each action's weight: a mean over the episode's policy tokens, then
     * over episodes, or a mean over all policy tokens. */
    for (int i = 0; i < m; i++) {
        const mr_rollout *r = &tr->rollouts[idx[i]];
        if (r->policy_tokens == 0) {
            continue;
        }
        float w = tr->c->average == MR_RL_AVERAGE_SEQUENCE
                      ? 1.0f / ((float)m * (float)r->policy_tokens)
                      : 1.0f / (float)b->policy_tokens;
        for (int s = 1; s < r->n_tokens; s++) {
            if (r->policy_mask[s]) {
                b->weights->data[(int64_t)i * (t - 1) + s - 1] = w;
            }
        }
    }

    b->old = gather_actions(tr, idx, m, t, FIELD_OLD);
    b->ref = gather_actions(tr, idx, m, t, FIELD_REF);
    b->old_values = gather_actions(tr, idx, m, t, FIELD_VALUES);
    b->advantages = gather_actions(tr, idx, m, t, FIELD_ADVANTAGES);
    if (tr->c->algorithm == MR_RL_PPO) {
        b->returns = gather_actions(tr, idx, m, t, FIELD_RETURNS);
    }
    return mr_ctx_status(tr->ctx);
}

/* Stores the log-probabilities (and values) of each rollout's policy
 * tokens under model, without recording gradients. */
static mr_status score_rollouts(rl_trainer *tr, mr_llama *model, bool reference,
                                mr_error *err) {
    bool values = !reference && tr->c->algorithm == MR_RL_PPO;
    bool was = mr_ctx_set_grad_enabled(tr->ctx, false);
    mr_status status = MR_OK;
    for (int start = 0; start < tr->n && status == MR_OK; start += tr->c->minibatch) {
        int m = tr->n - start < tr->c->minibatch ? tr->n - start : tr->c->minibatch;
        int *idx = tr->order + start;
        for (int i = 0; i < m; i++) {
            idx[i] = start + i;
        }
        rl_batch b;
        mr_tensor *logp = NULL, *v = NULL;
        status = build_batch(tr, idx, m, &b);
        if (status == MR_OK) {
            status = forward_batch(tr, model, &b, values, &logp, &v);
        }
        if (status == MR_OK && v != NULL) {
            v = mr_tensor_contiguous(tr->ctx, v);
            status = mr_ctx_status(tr->ctx);
        }
        for (int i = 0; status == MR_OK && i < m; i++) {
            mr_rollout *r = &tr->rollouts[idx[i]];
            float *dst = reference ? r->ref_logprobs : r->old_logprobs;
            for (int s = 1; s < r->n_tokens; s++) {
                if (r->policy_mask[s]) {
                    dst[s] = logp->data[(int64_t)i * (b.t - 1) + s - 1];
                    if (v != NULL) {
                        r->values[s] = v->data[(int64_t)i * (b.t - 1) + s - 1];
                    }
                }
            }
        }
        if (status != MR_OK) {
            mr_ctx_take_error(tr->ctx, err);
        }
        mr_ctx_reset(tr->ctx);
    }
    mr_ctx_set_grad_enabled(tr->ctx, was);
    return status;
}

/* Fills tr->advantages (and returns) for every rollout of the step. */
static mr_status compute_advantages(rl_trainer *tr, mr_error *err) {
    const mr_rl_config *c = tr->c;
    if (c->algorithm == MR_RL_GRPO) {
        float *rewards = malloc((size_t)tr->n * sizeof *rewards);
        float *adv = malloc((size_t)tr->n * sizeof *adv);
        mr_status status = MR_OK;
        if (rewards == NULL || adv == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "rl: out of memory for advantages");
        }
        for (int i = 0; status == MR_OK && i < tr->n; i++) {
            rewards[i] = tr->rollouts[i].reward;
        }
        if (status == MR_OK) {
            status = mr_grpo_advantages(rewards, tr->n / c->group_size, c->group_size,
                                        c->scale_rewards, c->adv_eps, adv, err);
        }
        for (int i = 0; status == MR_OK && i < tr->n; i++) {
            const mr_rollout *r = &tr->rollouts[i];
            for (int s = 0; s < r->n_tokens; s++) {
                tr->advantages[i][s] = r->policy_mask[s] ? adv[i] : 0.0f;
            }
        }
        free(rewards);
        free(adv);
        return status;
    }

    /* PPO: GAE per episode, then whitening over every policy token. */
    int64_t total = 0;
    for (int i = 0; i < tr->n; i++) {
        total += tr->rollouts[i].n_tokens;
    }
    float *all = malloc((size_t)total * sizeof *all);
    uint8_t *mask = malloc((size_t)total);
    float *rewards = malloc((size_t)total * sizeof *rewards);
    if (all == NULL || mask == NULL || rewards == NULL) {
        free(all);
        free(mask);
        free(rewards);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rl: out of memory for advantages");
    }
    int64_t at = 0;
    for (int i = 0; i < tr->n; i++) {
        const mr_rollout *r = &tr->rollouts[i];
        float kl_coef = c->kl_in_reward ? c->kl_coef : 0.0f;
        rl_ppo_token_rewards(r, kl_coef, c->kl_estimator, rewards + at);
        mr_ppo_gae(rewards + at, r->values, r->policy_mask, r->n_tokens, c->gamma, c->lambda,
                   tr->advantages[i], tr->returns[i]);
        memcpy(all + at, tr->advantages[i], (size_t)r->n_tokens * sizeof *all);
        memcpy(mask + at, r->policy_mask, (size_t)r->n_tokens);
        at += r->n_tokens;
    }
    if (c->whiten_advantages) {
        mr_rl_whiten(all, mask, total);
        at = 0;
        for (int i = 0; i < tr->n; i++) {
            memcpy(tr->advantages[i], all + at, (size_t)tr->rollouts[i].n_tokens * sizeof *all);
            at += tr->rollouts[i].n_tokens;
        }
    }
    free(all);
    free(mask);
    free(rewards);
    return MR_OK;
}

/* Adds the clip fraction and mean KL of one minibatch's policy tokens. */
static void add_token_stats(const rl_trainer *tr, const rl_batch *b, const mr_tensor *logp,
                            rl_update_stats *stats) {
    int64_t n = (int64_t)b->m * (b->t - 1), counted = 0, clipped = 0;
    double kl = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (b->weights->data[i] == 0.0f) {
            continue;
        }
        float rho = expf(logp->data[i] - b->old->data[i]);
        clipped += rho < 1.0f - tr->c->clip_eps || rho > 1.0f + tr->c->clip_eps;
        if (tr->scored_ref) {
            kl += mr_rl_kl(logp->data[i], b->ref->data[i], tr->c->kl_estimator);
        }
        counted++;
    }
    if (counted > 0) {
        stats->clip_frac += (double)clipped / (double)counted;
        stats->kl += kl / (double)counted;
    }
}

/* Runs one optimizer update on the minibatch idx[0..m-1]. */
static mr_status update_minibatch(rl_trainer *tr, const int *idx, int m, rl_update_stats *stats,
                                  mr_error *err) {
    const mr_rl_config *c = tr->c;
    bool ppo = c->algorithm == MR_RL_PPO;
    rl_batch b;
    mr_tensor *logp = NULL, *v = NULL;
    mr_status status = build_batch(tr, idx, m, &b);
    if (status == MR_OK) {
        status = forward_batch(tr, tr->policy, &b, ppo, &logp, &v);
    }
    if (status != MR_OK) {
        mr_ctx_take_error(tr->ctx, err);
        mr_ctx_reset(tr->ctx);
        return status;
    }

    float kl_coef = ppo && c->kl_in_reward ? 0.0f : c->kl_coef;
    mr_tensor *policy_loss = mr_rl_policy_loss(tr->ctx, logp, b.old, b.advantages, b.ref,
                                               b.weights, c->clip_eps, kl_coef, c->kl_estimator);
    mr_tensor *loss = policy_loss;
    mr_tensor *value_loss = NULL;
    if (ppo) {
        value_loss = mr_rl_value_loss(tr->ctx, v, b.old_values, b.returns, b.weights,
                                      c->value_clip);
        loss = mr_tensor_add(tr->ctx, policy_loss, mr_tensor_scale(tr->ctx, value_loss,
                                                                   c->vf_coef));
    }
    status = mr_ctx_status(tr->ctx);
    if (status == MR_OK) {
        status = mr_tensor_backward(tr->ctx, loss, NULL);
    }
    if (status != MR_OK) {
        mr_ctx_take_error(tr->ctx, err);
        mr_ctx_reset(tr->ctx);
        return status;
    }

    float norm = mr_optim_clip_grad_norm(tr->opt, c->max_grad_norm);
    float lr = c->lr;
    if (c->warmup_steps > 0 && tr->updates < c->warmup_steps) {
        lr = c->lr * (float)(tr->updates + 1) / (float)c->warmup_steps;
    }
    if (isfinite(norm)) {
        status = mr_optim_step(tr->opt, lr, err);
    } else {
        mr_log(MR_LOG_WARN, "rl", "update %lld: gradient norm is %g, update skipped",
               (long long)tr->updates, (double)norm);
    }
    mr_optim_zero_grad(tr->opt);
    tr->updates++;

    stats->loss += loss->data[0];
    stats->policy_loss += policy_loss->data[0];
    stats->value_loss += value_loss != NULL ? value_loss->data[0] : 0.0;
    stats->grad_norm += norm;
    add_token_stats(tr, &b, logp, stats);
    stats->count++;
    mr_ctx_reset(tr->ctx);
    return status;
}

/* Shuffles order[0..n-1] with the trainer's generator (Fisher-Yates). */
static void shuffle(rl_trainer *tr, int *order, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)mr_rng_below(&tr->rng, (uint64_t)i + 1);
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

/* Returns true when every episode of the group has the same reward, so
 * that every advantage of the group is 0. */
static bool group_rewards_equal(const mr_rollout *group, int size) {
    for (int g = 1; g < size; g++) {
        if (group[g].reward != group[0].reward) {
            return false;
        }
    }
    return true;
}

/* Adds one sampled episode to the step's sampling statistics. */
static void add_sample(const rl_trainer *tr, const mr_rollout *r, rl_sample_stats *sample) {
    sample->reward += r->reward;
    sample->solved += r->reward >= tr->c->success_reward;
    sample->turns += r->turns;
    sample->tokens += r->n_tokens;
    sample->policy_tokens += r->policy_tokens;
    sample->truncated += r->truncated;
    sample->episodes++;
}

/*
 * Collects the step's rollouts: group_size episodes of each drawn prompt,
 * each with its own sampling seed. Without filter_groups the step draws
 * prompts_per_step prompts and keeps them all. With it, a group whose
 * rewards are all equal is dropped and another prompt is drawn, until
 * prompts_per_step groups are kept or the draw limit is reached, so a step
 * may keep fewer groups. tr->n is the number of rollouts kept.
 */
static mr_status collect_rollouts(rl_trainer *tr, int step, rl_sample_stats *sample,
                                  mr_error *err) {
    const mr_rl_config *c = tr->c;
    for (int i = 0; i < tr->capacity; i++) {
        mr_rollout_free(&tr->rollouts[i]);
    }
    tr->n = 0;

    int64_t max_draws = rl_max_prompt_draws(c);
    int kept_groups = 0;
    for (int64_t draw = 0; draw < max_draws && kept_groups < c->prompts_per_step; draw++) {
        uint64_t episode = mr_rng_next_u64(&tr->rng) >> 1;
        mr_rollout *group = tr->rollouts + (int64_t)kept_groups * c->group_size;
        for (int g = 0; g < c->group_size; g++) {
            uint64_t counter = (uint64_t)draw * (uint64_t)c->group_size + (uint64_t)g;
            uint64_t seed = rl_mix_seed(c->seed, ((uint64_t)step << 32) | counter);
            mr_rollout_free(&group[g]);
            mr_status status = mr_rollout_run(tr->policy, tr->tok, tr->env, episode,
                                              c->temperature, seed, &group[g], err);
            if (status != MR_OK) {
                return status;
            }
            add_sample(tr, &group[g], sample);
        }
        sample->prompts_drawn++;
        if (!c->filter_groups || !group_rewards_equal(group, c->group_size)) {
            kept_groups++;
        }
    }
    tr->n = kept_groups * c->group_size;

    for (int i = 0; i < tr->n; i++) {
        free(tr->advantages[i]);
        free(tr->returns[i]);
        size_t n = (size_t)tr->rollouts[i].n_tokens;
        tr->advantages[i] = calloc(n, sizeof(float));
        tr->returns[i] = calloc(n, sizeof(float));
        if (tr->advantages[i] == NULL || tr->returns[i] == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rl: out of memory for rollouts");
        }
    }
    return MR_OK;
}

/* Runs one training step and appends its statistics to metrics. */
static mr_status train_step(rl_trainer *tr, int step, mr_metric *metrics, size_t *n_metrics,
                            mr_error *err) {
    const mr_rl_config *c = tr->c;
    rl_sample_stats sample = {0};
    mr_status status = collect_rollouts(tr, step, &sample, err);
    if (status == MR_OK) {
        status = score_rollouts(tr, tr->policy, false, err);
    }
    tr->scored_ref = tr->ref != NULL && c->kl_coef != 0.0f;
    if (status == MR_OK && tr->scored_ref) {
        status = score_rollouts(tr, tr->ref, true, err);
    }
    /* A step that kept no group has nothing to update on. */
    if (status == MR_OK && tr->n > 0) {
        status = compute_advantages(tr, err);
    }

    rl_update_stats stats = {0};
    for (int epoch = 0; status == MR_OK && epoch < c->epochs; epoch++) {
        for (int i = 0; i < tr->n; i++) {
            tr->order[i] = i;
        }
        shuffle(tr, tr->order, tr->n);
        for (int start = 0; status == MR_OK && start < tr->n; start += c->minibatch) {
            int m = tr->n - start < c->minibatch ? tr->n - start : c->minibatch;
            status = update_minibatch(tr, tr->order + start, m, &stats, err);
        }
    }
    if (status != MR_OK) {
        return status;
    }

    double k = stats.count > 0 ? (double)stats.count : 1.0;
    double episodes = sample.episodes;
    size_t at = 0;
    metrics[at++] = (mr_metric){"reward", sample.reward / episodes};
    metrics[at++] = (mr_metric){"success", sample.solved / episodes};
    metrics[at++] = (mr_metric){MR_METRIC_LOSS, stats.loss / k};
    metrics[at++] = (mr_metric){"policy_loss", stats.policy_loss / k};
    if (c->algorithm == MR_RL_PPO) {
        metrics[at++] = (mr_metric){"value_loss", stats.value_loss / k};
    }
    metrics[at++] = (mr_metric){"kl", stats.kl / k};
    metrics[at++] = (mr_metric){"clip_frac", stats.clip_frac / k};
    metrics[at++] = (mr_metric){"grad_norm", stats.grad_norm / k};
    metrics[at++] = (mr_metric){"turns", sample.turns / episodes};
    metrics[at++] = (mr_metric){"tokens", sample.tokens / episodes};
    metrics[at++] = (mr_metric){"policy_tokens", sample.policy_tokens / episodes};
    metrics[at++] = (mr_metric){"truncated", sample.truncated / episodes};
    metrics[at++] = (mr_metric){MR_METRIC_LR, c->lr};
    if (c->filter_groups) {
        metrics[at++] = (mr_metric){"prompts_drawn", sample.prompts_drawn};
        metrics[at++] = (mr_metric){"prompts_kept", tr->n / c->group_size};
    }
    *n_metrics = at;
    return MR_OK;
}

void rl_trainer_free(rl_trainer *tr) {
    /* rl_trainer_init may have failed before it allocated all three. */
    for (int i = 0; tr->rollouts != NULL && i < tr->capacity; i++) {
        mr_rollout_free(&tr->rollouts[i]);
    }
    for (int i = 0; tr->advantages != NULL && i < tr->capacity; i++) {
        free(tr->advantages[i]);
    }
    for (int i = 0; tr->returns != NULL && i < tr->capacity; i++) {
        free(tr->returns[i]);
    }
    free(tr->rollouts);
    free(tr->advantages);
    free(tr->returns);
    free(tr->order);
    mr_optim_free(tr->opt);
    mr_paramset_free(tr->head);
    mr_ctx_free(tr->ctx);
}

mr_status rl_trainer_init(rl_trainer *tr, mr_error *err) {
    const mr_rl_config *c = tr->c;
    tr->capacity = c->prompts_per_step * c->group_size;
    tr->rollouts = calloc((size_t)tr->capacity, sizeof *tr->rollouts);
    tr->advantages = calloc((size_t)tr->capacity, sizeof *tr->advantages);
    tr->returns = calloc((size_t)tr->capacity, sizeof *tr->returns);
    tr->order = calloc((size_t)tr->capacity, sizeof *tr->order);
    tr->ctx = mr_ctx_create(0);
    if (tr->rollouts == NULL || tr->advantages == NULL || tr->returns == NULL ||
        tr->order == NULL || tr->ctx == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rl: out of memory for %d rollouts",
                            tr->capacity);
    }
    mr_rng_init(&tr->rng, c->seed);

    mr_optim_config oc = mr_optim_config_default(MR_OPTIM_ADAMW);
    oc.weight_decay = c->weight_decay;
    tr->opt = mr_optim_create(&oc, err);
    if (tr->opt == NULL) {
        return err ? err->status : MR_ERR_NO_MEMORY;
    }
    mr_tensor *flat = mr_paramset_flat(mr_llama_params(tr->policy));
    mr_status status = mr_optim_add_group(tr->opt, &flat, 1, MR_OPTIM_DEFAULT_DECAY, 1.0f, err);
    if (status == MR_OK && c->algorithm == MR_RL_PPO) {
        status = create_value_head(tr, err);
        if (status == MR_OK) {
            mr_tensor *head = mr_paramset_flat(tr->head);
            float scale = c->lr > 0.0f ? c->value_lr / c->lr : 0.0f;
            status = mr_optim_add_group(tr->opt, &head, 1, 0.0f, scale, err);
        }
    }
    return status;
}

/* Evaluates the policy and logs eval/success and eval/reward at step. */
static mr_status evaluate_and_log(rl_trainer *tr, mr_env *eval_env, mr_runlog *log,
                                  int64_t step, mr_metric *metrics, size_t n_metrics,
                                  float *success, mr_error *err) {
    float reward = 0.0f;
    mr_status status = mr_rl_evaluate(tr->policy, tr->tok, eval_env, tr->c->eval_episodes,
                                      tr->c->success_reward, success, &reward, err);
    if (status != MR_OK) {
        return status;
    }
    metrics[n_metrics++] = (mr_metric){"eval/success", *success};
    metrics[n_metrics++] = (mr_metric){"eval/reward", reward};
    mr_log(MR_LOG_INFO, "rl", "step %lld: eval success %.3f, mean reward %.3f over %d episodes",
           (long long)step, (double)*success, (double)reward, tr->c->eval_episodes);
    return log != NULL ? mr_runlog_append(log, step, metrics, n_metrics, err) : MR_OK;
}

mr_status rl_train_loop(rl_trainer *tr, const rl_loop *loop, mr_rl_result *result,
                        mr_error *err) {
    const mr_rl_config *config = tr->c;
    mr_status status = MR_OK;
    mr_metric metrics[24];
    float success = result->final_success;
    if (loop->first_step == 0 && loop->eval_env != NULL) {
        status = evaluate_and_log(tr, loop->eval_env, loop->log, 0, metrics, 0, &success, err);
        result->initial_success = success;
        result->best_success = success;
    }
    result->steps_done = loop->first_step;
    for (int step = loop->first_step; status == MR_OK && step < config->steps; step++) {
        size_t n_metrics = 0;
        status = train_step(tr, step, metrics, &n_metrics, err);
        if (status != MR_OK) {
            break;
        }
        mr_log(MR_LOG_INFO, "rl", "step %d: reward %.3f, success %.3f, loss %.4f", step + 1,
               metrics[0].value, metrics[1].value, metrics[2].value);
        bool last = step + 1 == config->steps;
        bool eval_now = loop->eval_env != NULL &&
                        (last || (config->eval_every > 0 && (step + 1) % config->eval_every == 0));
        if (eval_now) {
            status = evaluate_and_log(tr, loop->eval_env, loop->log, step + 1, metrics, n_metrics,
                                      &success, err);
            result->best_success = success > result->best_success ? success
                                                                  : result->best_success;
        } else if (loop->log != NULL) {
            status = mr_runlog_append(loop->log, step + 1, metrics, n_metrics, err);
        }
        result->steps_done = step + 1;
        result->final_success = success;
        if (status == MR_OK && loop->after_step != NULL) {
            status = loop->after_step(tr, step + 1, result, loop->user_data, err);
        }
        if (loop->stop_after > 0 && step + 1 == loop->stop_after) {
            break;
        }
    }
    result->final_success = success;
    return status;
}

mr_status mr_rl_train(mr_llama *policy, mr_llama *ref, const mr_tokenizer *tok,
                      mr_env *train_env, mr_env *eval_env, const mr_rl_config *config,
                      const char *metrics_path, mr_rl_result *result, mr_error *err) {
    memset(result, 0, sizeof *result);
    mr_status status = mr_rl_config_check(config, err);
    if (status != MR_OK) {
        return status;
    }
    if (mr_llama_params(policy) == NULL || (ref != NULL && mr_llama_params(ref) == NULL)) {
        return mr_error_set(err, MR_ERR_STATE,
                            "rl: the policy and the reference must be trainable; call "
                            "mr_llama_make_trainable() first");
    }
    if (ref == NULL && config->kl_coef != 0.0f) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rl: kl_coef is %g but no reference model was given",
                            (double)config->kl_coef);
    }

    rl_trainer tr = {.c = config, .policy = policy, .ref = ref, .tok = tok, .env = train_env};
    mr_runlog *log = NULL;
    status = rl_trainer_init(&tr, err);
    if (status == MR_OK && metrics_path != NULL) {
        status = mr_runlog_open(metrics_path, -1, NULL, &log, err);
    }
    if (status == MR_OK) {
        rl_loop loop = {.eval_env = eval_env, .log = log};
        status = rl_train_loop(&tr, &loop, result, err);
    }

    mr_error close_err;
    mr_status close_status = mr_runlog_close(log, &close_err);
    if (status == MR_OK && close_status != MR_OK) {
        status = close_status;
        if (err != NULL) {
            *err = close_err;
        }
    }
    rl_trainer_free(&tr);
    return status;
}
