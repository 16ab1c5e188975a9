/*
 * Random model inputs shared by the recommender model tests: left-padded
 * id sequences and candidate lists, each drawn from its own seed.
 */
#ifndef MR_TEST_MODEL_INPUTS_H
#define MR_TEST_MODEL_INPUTS_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/rng.h"
#include "multiround/tensor.h"

/* Creates seq [B, L] in ctx with random ids in 1..n_items-1, where row b
 * is left-padded with b % L zeros. */
static inline mr_tensor *test_random_seq(mr_ctx *ctx, int64_t batch, int length,
                                         int32_t n_items, uint64_t seed) {
    mr_tensor *seq = mr_tensor_new2d(ctx, MR_I32, batch, length);
    mr_rng rng;
    mr_rng_init(&rng, seed);
    for (int64_t b = 0; b < batch; b++) {
        for (int l = 0; l < length; l++) {
            bool padding = l < (int)(b % length);
            seq->idata[b * length + l] =
                padding ? 0 : 1 + (int32_t)mr_rng_below(&rng, (uint64_t)(n_items - 1));
        }
    }
    return seq;
}

/* Creates candidates [B, 1 + negatives] in ctx: a random target, then
 * random negatives, with id 0 (a negative that sampling gave up on) last
 * in row 0. */
static inline mr_tensor *test_random_candidates(mr_ctx *ctx, int64_t batch, int negatives,
                                                int32_t n_items, uint64_t seed) {
    mr_tensor *candidates = mr_tensor_new2d(ctx, MR_I32, batch, 1 + negatives);
    mr_rng rng;
    mr_rng_init(&rng, seed);
    for (int64_t i = 0; i < batch * (1 + negatives); i++) {
        candidates->idata[i] = 1 + (int32_t)mr_rng_below(&rng, (uint64_t)(n_items - 1));
    }
    candidates->idata[negatives] = 0;
    return candidates;
}

#endif /* MR_TEST_MODEL_INPUTS_H */
