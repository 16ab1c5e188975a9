/*
 * Private helpers shared by the rollout, GRPO, PPO, trainer and run
 * sources.
 */
#ifndef MR_TRAIN_RL_INTERNAL_H
#define MR_TRAIN_RL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/optim.h"
#include "multiround/params.h"
#include "multiround/rl.h"
#include "multiround/rng.h"
#include "multiround/runlog.h"

/* Mixes a seed with a counter into a new seed (SplitMix64 finaliser), so
 * that each episode and turn samples from its own stream. */
static inline uint64_t rl_mix_seed(uint64_t seed, uint64_t counter) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (counter + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/*
 * Fills rewards [r->n_tokens] for GAE: -kl_coef KL(old, ref) at each
 * policy token (none when kl_coef is 0) and the episode's reward added at
 * the last policy token.
 */
void rl_ppo_token_rewards(const mr_rollout *r, float kl_coef, mr_kl_estimator estimator,
                          float *rewards);

/* ------------------------------------------------------------------------
 * The training loop (rl_train.c)
 * ------------------------------------------------------------------------ */

/*
 * A GRPO or PPO trainer. What carries from one step to the next is the
 * policy's weights, the value head, the optimizer state, rng and updates,
 * which a checkpoint stores (rl_run.c). The rollouts and their
 * advantages are rebuilt in every step.
 */
typedef struct rl_trainer {
    const mr_rl_config *c;
    mr_llama *policy;
    mr_llama *ref;
    const mr_tokenizer *tok;
    mr_env *env;
    mr_ctx *ctx;         /* one minibatch at a time, reset after each */
    mr_optim *opt;
    mr_paramset *head;   /* PPO: value_head.weight [1, F] and value_head.bias [1] */
    mr_rng rng;          /* draws the prompts and shuffles the minibatches */
    int capacity;        /* rollout slots: prompts_per_step x group_size */
    int n;               /* rollouts kept this step, at most capacity */
    mr_rollout *rollouts;
    float **advantages;  /* per rollout, [n_tokens] */
    float **returns;     /* PPO, per rollout, [n_tokens] */
    int *order;
    int64_t updates;     /* optimizer updates so far, for the warm-up */
    bool scored_ref;     /* the reference scored this step's rollouts */
} rl_trainer;

/* Allocates the buffers, the optimizer and (PPO) the value head of tr,
 * whose c, policy, ref, tok and env are set, and seeds rng from c->seed. */
mr_status rl_trainer_init(rl_trainer *tr, mr_error *err);

/* Frees what rl_trainer_init allocated; the models and envs stay. */
void rl_trainer_free(rl_trainer *tr);

/* Runs after the metrics line of step (1-based); an error stops the loop. */
typedef mr_status (*rl_step_hook)(rl_trainer *tr, int step, const mr_rl_result *result,
                                  void *user_data, mr_error *err);

/* Where a loop starts and stops, and what it reports to. */
typedef struct rl_loop {
    mr_env *eval_env;        /* NULL: no evaluation */
    mr_runlog *log;          /* NULL: no metrics lines */
    int first_step;          /* steps done before, 0 for a new run */
    int stop_after;          /* end after this step; 0: run to c->steps */
    rl_step_hook after_step; /* NULL: none */
    void *user_data;
} rl_loop;

/*
 * Runs steps first_step + 1 to c->steps (or to stop_after). Evaluates
 * before the first step when first_step is 0, every eval_every steps and
 * after the last. result contains the figures of the steps before
 * first_step (zeros for a new run) and receives those of the steps run.
 */
mr_status rl_train_loop(rl_trainer *tr, const rl_loop *loop, mr_rl_result *result,
                        mr_error *err);

#endif /* MR_TRAIN_RL_INTERNAL_H */
