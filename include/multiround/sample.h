/*
 * multiround token sampling: picks the next token from a row of logits.
 *
 * The filters apply in this fixed order, as Hugging Face transformers
 * applies its logits processors:
 *
 *   1. repetition penalty: each distinct token among the last
 *      repeat_last_n accepted tokens has its logit divided by the penalty
 *      when positive and multiplied by it when negative;
 *   2. temperature: logits divided by temperature (temperature <= 0 means
 *      greedy: the largest penalised logit wins, the lowest id on ties);
 *   3. top-k: the k largest logits stay;
 *   4. top-p: of those, sorted by probability, the shortest prefix whose
 *      probability sum reaches top_p stays (at least one token);
 *   5. min-p: tokens whose probability is below min_p times the largest
 *      probability are dropped;
 *   6. one draw from the remaining tokens, renormalised.
 *
 * Probabilities in steps 4 to 6 are the softmax over the tokens that the
 * earlier steps kept. Ties in sorting go to the lower id, and the draw
 * uses the counter-based generator of rng.h, so a seed gives the same
 * tokens on any thread count.
 *
 *     mr_sampler_params params;
 *     mr_sampler_params_default(&params);
 *     params.temperature = 0.8f;
 *     mr_sampler *sampler = mr_sampler_create(&params, vocab_size, &err);
 *     int32_t id = mr_sampler_sample(sampler, logits, &err);
 *     mr_sampler_accept(sampler, id);
 */
#ifndef MULTIROUND_SAMPLE_H
#define MULTIROUND_SAMPLE_H

#include <stdint.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Settings of a sampler. Each filter has a value that turns it off. */
typedef struct mr_sampler_params {
    float temperature;    /* > 0 scales logits; <= 0 selects greedy decoding */
    int top_k;            /* tokens kept by top-k; <= 0 turns it off */
    float top_p;          /* probability mass kept by top-p, in (0, 1]; 1 turns it off */
    float min_p;          /* in [0, 1]; 0 turns it off */
    float repeat_penalty; /* >= 1 usually; 1 turns it off */
    int repeat_last_n;    /* accepted tokens the penalty looks at; 0: none, -1: all */
    uint64_t seed;        /* seed of the draws */
} mr_sampler_params;

/* Fills params with the defaults: temperature 0.8, top-k 40, top-p 0.95,
 * min-p 0.05, repetition penalty 1 (off) over the last 64 tokens, seed 0
 * (the values of llama.cpp's command-line tools). */
void mr_sampler_params_default(mr_sampler_params *params);

typedef struct mr_sampler mr_sampler;

/*
 * Creates a sampler for logits of vocab_size entries. Returns NULL and
 * fills err (MR_ERR_INVALID_ARGUMENT naming the field) when vocab_size < 1,
 * top_p is outside (0, 1], min_p outside [0, 1], repeat_penalty is not
 * finite and > 0, repeat_last_n < -1 or temperature is NaN.
 */
mr_sampler *mr_sampler_create(const mr_sampler_params *params, int vocab_size, mr_error *err);

/* Frees the sampler; NULL is allowed. */
void mr_sampler_free(mr_sampler *sampler);

/* Forgets the accepted tokens and restarts the draws at the seed. */
void mr_sampler_reset(mr_sampler *sampler);

/* Records a token of the context (prompt or output) for the repetition
 * penalty. Ids outside [0, vocab_size) are ignored. */
void mr_sampler_accept(mr_sampler *sampler, int32_t token);

/*
 * Runs steps 1 to 5 on logits [vocab_size] and writes the kept tokens,
 * most probable first, to ids and their renormalised probabilities to
 * probs (both may be NULL to count only). *n receives the kept count;
 * at most cap entries are written. Greedy decoding keeps one token with
 * probability 1. Does not draw and does not advance the generator.
 * Fills err with MR_ERR_NUMERIC when a logit is NaN or every logit is
 * minus infinity.
 */
mr_status mr_sampler_filter(mr_sampler *sampler, const float *logits, int32_t *ids, float *probs,
                            int cap, int *n, mr_error *err);

/*
 * Runs the filters on logits [vocab_size] and draws one token (step 6),
 * advancing the generator by one draw unless decoding is greedy. Returns
 * the id, or -1 with err filled as in mr_sampler_filter(). The token is
 * not accepted: call mr_sampler_accept() with it.
 */
int32_t mr_sampler_sample(mr_sampler *sampler, const float *logits, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_SAMPLE_H */
