/*
 * Counter-based random numbers. Each draw hashes (key, counter) with the
 * SplitMix64 finaliser, so draws are independent of the order in which
 * threads compute them.
 */
#include <math.h>

#include "multiround/rng.h"
#include "rng_hash.h"


/* Starts the stream of seed at draw 0. Seeds that differ in any bit give
 * unrelated keys. */
void mr_rng_init(mr_rng *rng, uint64_t seed) {
    rng->key = rng_mix64(seed + 0x9e3779b97f4a7c15ull);
    rng->counter = 0;
}

/* Derives a child key from the parent key and the stream id only. */
mr_rng mr_rng_split(const mr_rng *parent, uint64_t stream_id) {
    mr_rng child;
    child.key = rng_mix64(parent->key ^ rng_mix64(stream_id + 0x632be59bd9b4e019ull));
    child.counter = 0;
    return child;
}

uint64_t mr_rng_hash(uint64_t key, uint64_t counter) { return rng_hash(key, counter); }

uint64_t mr_rng_next_u64(mr_rng *rng) {
    uint64_t bits = mr_rng_hash(rng->key, rng->counter);
    rng->counter++;
    return bits;
}

float mr_rng_uniform(mr_rng *rng) {
    return mr_rng_bits_to_uniform(mr_rng_next_u64(rng));
}

/* Lemire's multiply-and-reject method: unbiased and usually one draw. */
uint64_t mr_rng_below(mr_rng *rng, uint64_t n) {
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t bits = mr_rng_next_u64(rng);
        __uint128_t product = (__uint128_t)bits * n;
        if ((uint64_t)product >= threshold) {
            return (uint64_t)(product >> 64);
        }
    }
}

/* Box-Muller from one 64-bit draw split into two 32-bit uniforms. The
 * first uniform is shifted into (0, 1] so that log() stays finite. */
float mr_rng_normal(mr_rng *rng) {
    uint64_t bits = mr_rng_next_u64(rng);
    double u1 = ((double)(bits >> 32) + 1.0) * (1.0 / 4294967296.0);
    double u2 = (double)(bits & 0xffffffffull) * (1.0 / 4294967296.0);
    double radius = sqrt(-2.0 * log(u1));
    return (float)(radius * cos(2.0 * M_PI * u2));
}
