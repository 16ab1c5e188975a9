/*
 * multiround reinforcement learning of Llama-family policies over
 * multi-turn episodes (env.h): rollouts, GRPO and PPO.
 *
 * A rollout is one episode as one token sequence: the prompt, then the
 * policy's turns and the environment's inserted replies in order. Each
 * token t >= 1 is an action taken in the state tokens[0..t-1]; per-token
 * arrays are indexed by that t, and position 0 (BOS) is never an action.
 * Only tokens the policy sampled (policy_mask 1) count in the policy loss,
 * the KL term, the value loss and the advantages. Inserted tokens get
 * exactly zero gradient.
 *
 * GRPO (DeepSeekMath, arXiv 2402.03300) samples group_size episodes per
 * prompt and gives every policy token of episode i the advantage
 * (r_i - mean(r)) / (std(r) + eps) over its group, with the unbiased
 * standard deviation as torch.std and TRL compute it (or r_i - mean(r)
 * without the division). PPO (Schulman et al., arXiv 1707.06347) learns a
 * value head and uses generalised advantage estimation over the policy
 * tokens, with inserted tokens skipped.
 *
 * Both minimise, per policy token with ratio rho = exp(logp - logp_old)
 * and advantage A,
 *     -min(rho A, clip(rho, 1 - clip_eps, 1 + clip_eps) A) + kl_coef KL
 * where KL is the k3 estimator exp(ref - logp) - (ref - logp) - 1 (as
 * DeepSeekMath and TRL's GRPOTrainer use) or the log-ratio logp - ref.
 * PPO can instead put -kl_coef (logp_old - ref) into every policy token's
 * reward, as Router-R1 (verl, kl_penalty "kl") does.
 */
#ifndef MULTIROUND_RL_H
#define MULTIROUND_RL_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/env.h"
#include "multiround/llama.h"
#include "multiround/tensor.h"
#include "multiround/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Rollouts
 * ------------------------------------------------------------------------ */

/* One episode; free it with mr_rollout_free(). */
typedef struct mr_rollout {
    int n_tokens;
    int32_t *tokens;       /* [n_tokens]: BOS, prompt, turns and replies */
    uint8_t *policy_mask;  /* [n_tokens]: 1 where the policy sampled the token */
    float *old_logprobs;   /* [n_tokens]: log p(tokens[t] | tokens[<t]) under the
                              sampling policy at policy tokens, 0 elsewhere */
    float *ref_logprobs;   /* the same under the reference model */
    float *values;         /* PPO: V(tokens[<t]) at policy tokens, 0 elsewhere */
    int prompt_tokens;     /* BOS included */
    int policy_tokens;     /* count of policy_mask == 1 */
    int turns;             /* policy turns */
    float reward;
    bool truncated;        /* the budgets, not the environment, ended it */
    uint64_t episode;
    char *text;            /* prompt, turns and replies as text */
} mr_rollout;

/* Frees what a rollout owns and zeroes it; NULL is allowed. */
void mr_rollout_free(mr_rollout *rollout);

/*
 * Runs one episode of env with model as the policy. Turns are sampled at
 * temperature (> 0; no top-k, top-p or min-p filter, so the recorded
 * log-probabilities are those of the sampling distribution; <= 0 decodes
 * greedily) from seed. The prompt is encoded with BOS, and each inserted
 * reply on its own, without BOS. An end-of-generation token the policy
 * samples stays in the sequence as a policy token. Fills tokens,
 * policy_mask, the counts, reward, truncated and text; the log-probability
 * and value arrays are allocated and zeroed for the trainers to fill.
 * max_tokens of the env's limits must not exceed the model's context
 * length.
 */
mr_status mr_rollout_run(const mr_llama *model, const mr_tokenizer *tok, mr_env *env,
                         uint64_t episode, float temperature, uint64_t seed, mr_rollout *out,
                         mr_error *err);

/*
 * Builds log p(tokens[b, t+1] | tokens[b, <=t]) for t in [0, T-1) from
 * logits [B, T, V] (divided by temperature first when it is not 1) and I32
 * tokens [B, T], as a [B, T-1] tensor recorded for autodiff. Returns NULL
 * with the error stored in ctx on bad shapes.
 */
mr_tensor *mr_rl_token_logprobs(mr_ctx *ctx, mr_tensor *logits, mr_tensor *tokens,
                                float temperature);

/* ------------------------------------------------------------------------
 * Losses (fused operations with their own backward)
 * ------------------------------------------------------------------------ */

typedef enum mr_kl_estimator {
    MR_KL_K3 = 0,       /* exp(ref - logp) - (ref - logp) - 1, >= 0 */
    MR_KL_LOG_RATIO = 1 /* logp - ref */
} mr_kl_estimator;

/* Returns "k3" or "log_ratio". */
const char *mr_kl_estimator_name(mr_kl_estimator estimator);

/* Parses "k3" or "log_ratio"; MR_ERR_INVALID_ARGUMENT otherwise. */
mr_status mr_kl_estimator_parse(const char *name, mr_kl_estimator *out, mr_error *err);

/* The per-token KL estimate from a log-probability and the reference's. */
float mr_rl_kl(float logprob, float ref_logprob, mr_kl_estimator estimator);

/*
 * The clipped surrogate with a KL penalty, summed over elements:
 *     sum_i w_i (-min(rho_i A_i, clip(rho_i, 1 - clip_eps, 1 + clip_eps) A_i)
 *                + kl_coef KL(logp_i, ref_i))
 * with rho_i = exp(logp_i - old_i). logprobs is F32 of any shape and
 * old, advantages, weights (and ref, which may be NULL when kl_coef is 0)
 * are F32 tensors of the same shape that receive no gradient. A weight of
 * 0 marks a token that is not an action of the policy: it contributes
 * nothing and gets exactly zero gradient. The gradient with respect to
 * logprobs follows PyTorch's min and clamp (see grpo.c). Returns a scalar,
 * or NULL with the error stored in ctx on mismatched shapes or
 * clip_eps < 0.
 */
mr_tensor *mr_rl_policy_loss(mr_ctx *ctx, mr_tensor *logprobs, mr_tensor *old,
                             mr_tensor *advantages, mr_tensor *ref, mr_tensor *weights,
                             float clip_eps, float kl_coef, mr_kl_estimator estimator);

/*
 * The clipped value loss of PPO, summed over elements:
 *     sum_i w_i 0.5 max((v_i - R_i)^2, (clip(v_i, o_i - c, o_i + c) - R_i)^2)
 * for values v (F32, any shape, the only input that gets a gradient), old
 * values o, returns R and weights w of the same shape, and clip c (c <= 0
 * leaves the value unclipped, the plain squared error). Returns a scalar,
 * or NULL with the error stored in ctx on mismatched shapes.
 */
mr_tensor *mr_rl_value_loss(mr_ctx *ctx, mr_tensor *values, mr_tensor *old_values,
                            mr_tensor *returns, mr_tensor *weights, float clip);

/* ------------------------------------------------------------------------
 * Advantages
 * ------------------------------------------------------------------------ */

/*
 * Group-relative advantages of n_groups groups of group_size consecutive
 * rewards: r - mean over the group, divided by (unbiased std + eps) when
 * scale_by_std. A group of one gets advantage 0. Fills MR_ERR_INVALID_ARGUMENT
 * for counts < 1 or eps < 0, and MR_ERR_NUMERIC for a reward that is not finite.
 */
mr_status mr_grpo_advantages(const float *rewards, int n_groups, int group_size,
                             bool scale_by_std, float eps, float *advantages, mr_error *err);

/*
 * Generalised advantage estimation over the positions t with mask[t] = 1,
 * taken in order as consecutive steps; the others are skipped and get
 * advantage and return 0. With p and q consecutive masked positions,
 *     delta_p = rewards[p] + gamma values[q] - values[p]
 *     A_p = delta_p + gamma lambda A_q
 * and the last masked position bootstraps from 0. returns = A + values.
 */
void mr_ppo_gae(const float *rewards, const float *values, const uint8_t *mask, int n,
                float gamma, float lambda, float *advantages, float *returns);

/* Whitens x over positions with mask 1: (x - mean) / sqrt(var + 1e-8) with
 * the unbiased variance, as verl's masked_whiten. Other entries are set to 0.
 * Fewer than two masked positions leave x - mean. */
void mr_rl_whiten(float *x, const uint8_t *mask, int64_t n);

/* ------------------------------------------------------------------------
 * Trainers
 * ------------------------------------------------------------------------ */

typedef enum mr_rl_algorithm { MR_RL_GRPO = 0, MR_RL_PPO = 1 } mr_rl_algorithm;

/* How per-token losses are averaged into one number per update. */
typedef enum mr_rl_loss_average {
    MR_RL_AVERAGE_SEQUENCE = 0, /* mean over each episode's policy tokens, then over
                                   episodes (DeepSeekMath's GRPO) */
    MR_RL_AVERAGE_TOKEN = 1     /* mean over all policy tokens of the update */
} mr_rl_loss_average;

typedef struct mr_rl_config {
    mr_rl_algorithm algorithm;
    int steps;               /* steps: each collects rollouts, then runs the epochs */
    int prompts_per_step;    /* distinct prompts per step */
    int group_size;          /* episodes per prompt (GRPO; PPO usually 1) */
    int epochs;              /* passes over each step's rollouts */
    int minibatch;           /* episodes per optimizer update */
    float lr;                /* AdamW learning rate, constant after warm-up */
    int warmup_steps;        /* linear warm-up in optimizer updates */
    float weight_decay;
    float max_grad_norm;     /* <= 0: no clipping */
    float clip_eps;          /* ratio clip, e.g. 0.2 */
    float kl_coef;           /* 0 turns the KL term off */
    mr_kl_estimator kl_estimator;
    bool kl_in_reward;       /* PPO: KL as a per-token reward penalty, not a loss */
    mr_rl_loss_average average;
    bool scale_rewards;      /* GRPO: divide by the group's std */
    float adv_eps;           /* GRPO: added to the std */
    bool filter_groups;      /* GRPO: redraw a prompt whose group's rewards are all equal,
                                since all its advantages are 0 (DAPO's dynamic sampling) */
    int max_prompt_draws;    /* GRPO with filter_groups: prompts drawn per step at most;
                                0: 8 x prompts_per_step */
    float gamma, lambda;     /* PPO: GAE discount and decay */
    float vf_coef;           /* PPO: weight of the value loss */
    float value_clip;        /* PPO: clip of the value change, <= 0 for none */
    float value_lr;          /* PPO: learning rate of the value head */
    bool whiten_advantages;  /* PPO: whiten advantages over the batch */
    float temperature;       /* sampling temperature of the rollouts */
    uint64_t seed;
    int eval_every;          /* steps between evaluations; 0: only before and after */
    int eval_episodes;       /* greedy episodes of the eval env per evaluation */
    float success_reward;    /* an episode whose reward is >= this counts as solved */
} mr_rl_config;

/* Returns the defaults of algorithm, which `multiround train grpo --help`
 * and `train ppo --help` list. */
mr_rl_config mr_rl_config_default(mr_rl_algorithm algorithm);

/* Checks a config; MR_ERR_INVALID_ARGUMENT names the first bad field. */
mr_status mr_rl_config_check(const mr_rl_config *config, mr_error *err);

/* Summary of a run. */
typedef struct mr_rl_result {
    float initial_success;  /* eval success rate before the first step */
    float final_success;    /* after the last step */
    float best_success;
    int steps_done;
} mr_rl_result;

/*
 * Trains policy (trainable, updated in place) on train_env with GRPO or
 * PPO as config->algorithm selects, with ref (trainable, not changed) as
 * the KL reference; ref may be NULL when kl_coef is 0. Evaluates greedy
 * success on eval_env (may be NULL) before the first step, every
 * eval_every steps and after the last. When metrics_path is not NULL,
 * every step appends a line to that metrics.jsonl (reward, success,
 * loss, kl, clip fraction, lengths, eval/success). Results are identical
 * for the same seed and thread count.
 */
mr_status mr_rl_train(mr_llama *policy, mr_llama *ref, const mr_tokenizer *tok,
                      mr_env *train_env, mr_env *eval_env, const mr_rl_config *config,
                      const char *metrics_path, mr_rl_result *result, mr_error *err);

/*
 * Runs episodes 0..n-1 of env greedily with model and stores the share
 * whose reward is >= success_reward in *success and the mean reward in
 * *mean_reward (either may be NULL).
 */
mr_status mr_rl_evaluate(const mr_llama *model, const mr_tokenizer *tok, mr_env *env, int n,
                         float success_reward, float *success, float *mean_reward,
                         mr_error *err);

/* ------------------------------------------------------------------------
 * Runs: `multiround train grpo|ppo` as a library call
 * ------------------------------------------------------------------------ */

/* Every setting of a GRPO or PPO run on the calculator task. Strings are
 * borrowed for the duration of the call. */
typedef struct mr_rl_run_options {
    const char *model_path;  /* GGUF file: the starting policy, the KL reference and
                                the tokenizer */
    const char *train_path;  /* calculator problems to train on, JSON Lines */
    const char *eval_path;   /* held-out problems for eval/success, or NULL */
    const char *out_dir;     /* the run folder */
    const char *task;        /* the environment: "calc" (NULL reads as "calc") */
    mr_rl_config rl;
    mr_calc_config calc;
    int checkpoint_every;    /* steps between checkpoints; 0: only after the last */
    int stop_after;          /* end after this step as if killed, without outputs or
                                done (0: never) */
    bool resume;             /* continue from OUT/checkpoint.json when it exists */

    /* Called after every step but the last. When it returns true the run
     * writes a checkpoint and returns MR_ERR_INTERRUPTED. NULL: never. */
    bool (*stop)(void *user_data);
    void *stop_user_data;
} mr_rl_run_options;

/* Fills o with mr_rl_config_default(algorithm), mr_calc_config_default(),
 * task "calc" and a checkpoint every 10 steps. */
void mr_rl_run_options_default(mr_rl_run_options *o, mr_rl_algorithm algorithm);

/*
 * Runs mr_rl_train() in a run folder, with checkpoints and resume as the
 * trainers of train.h have them. It writes OUT/config.json (every
 * setting) and OUT/metrics.jsonl. Every checkpoint_every steps and after
 * the last, it writes OUT/checkpoints/step-NNNNNNNN/ with the policy
 * (model.safetensors), PPO's value head (value_head.safetensors), the
 * AdamW state with its step count, and state.json. That file has the
 * step, the update count, the state of the generator that draws prompts
 * and shuffles minibatches, and the success figures. OUT/checkpoint.json,
 * replaced atomically, names the newest checkpoint. After the last step
 * the run writes OUT/model.gguf (the policy with the starting file's
 * tokenizer), OUT/value_head.safetensors for PPO, and OUT/done. result
 * (may be NULL) receives the figures.
 *
 * Fails with MR_ERR_INVALID_ARGUMENT on an invalid option, checked before
 * any file is read. Without resume, an out_dir that contains done or
 * checkpoint.json gives MR_ERR_STATE and is left as it is. With resume and
 * a checkpoint, the run continues from it and ends with the same bytes as
 * a run that was never stopped (same thread count). Every setting must
 * then equal the one in OUT/config.json (MR_ERR_STATE naming the keys that
 * differ), except that rl.steps may grow and eval_every and
 * checkpoint_every may change. When the run fails before its first
 * checkpoint, the out_dir folders it created are removed.
 */
mr_status mr_rl_run(const mr_rl_run_options *o, mr_rl_result *result, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_RL_H */
