/*
 * Private helpers shared by the rollout, GRPO, PPO and trainer sources.
 */
#ifndef MR_TRAIN_RL_INTERNAL_H
#define MR_TRAIN_RL_INTERNAL_H

#include <stdint.h>

#include "multiround/rl.h"

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

#endif /* MR_TRAIN_RL_INTERNAL_H */
