/*
 * multiround random numbers: a seeded, splittable, counter-based generator.
 *
 * Draw i of a stream is a hash of (key, i), so a kernel may compute any
 * draw without the ones before it. That makes parallel kernels give the
 * same numbers on any thread count, and mr_rng_split() derives independent
 * child streams (one per epoch, layer or worker) from a parent's key.
 * The hash is SplitMix64's finaliser applied twice; it is not meant for
 * cryptography.
 */
#ifndef MULTIROUND_RNG_H
#define MULTIROUND_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A stream: its key and the index of the next draw. Plain data, so it can
 * be copied, saved in a checkpoint and restored. */
typedef struct mr_rng {
    uint64_t key;
    uint64_t counter;
} mr_rng;

/* Starts the stream of the given seed at draw 0. */
void mr_rng_init(mr_rng *rng, uint64_t seed);

/*
 * Returns a child stream for stream_id, derived from parent's key only, so
 * that the same parent key and id always give the same child and the
 * parent does not advance.
 */
mr_rng mr_rng_split(const mr_rng *parent, uint64_t stream_id);

/* Draw number counter of the stream with this key, without state. */
uint64_t mr_rng_hash(uint64_t key, uint64_t counter);

/* Next 64 random bits. */
uint64_t mr_rng_next_u64(mr_rng *rng);

/* Uniform float in [0, 1) with 24 random bits. */
float mr_rng_uniform(mr_rng *rng);

/* Uniform integer in [0, n) without modulo bias; n must be > 0. */
uint64_t mr_rng_below(mr_rng *rng, uint64_t n);

/* Standard normal sample (Box-Muller, one draw of 64 bits per sample). */
float mr_rng_normal(mr_rng *rng);

/* Converts 64 random bits to a uniform float in [0, 1). */
static inline float mr_rng_bits_to_uniform(uint64_t bits) {
    return (float)(bits >> 40) * (1.0f / 16777216.0f);
}

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_RNG_H */
