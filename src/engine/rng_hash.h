/*
 * The counter hash behind include/multiround/rng.h as inline functions,
 * so that per-element loops such as dropout's can inline and vectorise it.
 * rng.c defines the public mr_rng_hash() with these.
 */
#ifndef MR_ENGINE_RNG_HASH_H
#define MR_ENGINE_RNG_HASH_H

#include <stdint.h>

/* SplitMix64's output function: a bijective 64-bit mixer. */
static inline uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Draw number counter of the stream with this key. Two rounds of mixing
 * decorrelate neighbouring counters and keys. */
static inline uint64_t rng_hash(uint64_t key, uint64_t counter) {
    return rng_mix64(rng_mix64(key ^ (counter * 0x9e3779b97f4a7c15ull)) + key);
}

#endif /* MR_ENGINE_RNG_HASH_H */
