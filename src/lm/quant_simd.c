/*
 * AVX2 + FMA + F16C dot products of stored rows with a float vector, used
 * by mr_qdot() when the compiler targets those extensions. quant.c keeps
 * the scalar loops as the fallback and as the reference.
 *
 * Every kernel sums in a fixed order that depends only on n. F32, F16 and
 * BF16 keep four 8-lane accumulators: element i goes to accumulator
 * (i / 8) % 4 while whole groups of 32 remain, then to accumulator 0. The
 * four are added pairwise, then lane by lane, then the scalar tail is
 * added in element order. Q8_0 and Q4_0 dot each 32-element block in one
 * 8-lane vector and scale it by the block's d with one FMA into one of two
 * running sums (even and odd blocks), added at the end.
 *
 * x stays in float: the quantised kernels widen the weight codes to float
 * instead of quantising x to int8 blocks as ggml does. Their error is
 * therefore that of a float dot product of the decoded row, as for the
 * scalar loops, at the cost of more instructions per weight byte.
 */
#include "quant_internal.h"

#if MR_QUANT_SIMD

#include <immintrin.h>
#include <string.h>

#define QK 32                      /* elements per Q8_0 and Q4_0 block */
#define Q8_0_BLOCK_BYTES (2 + QK)  /* F16 scale, 32 int8 codes */
#define Q4_0_BLOCK_BYTES (2 + QK / 2) /* F16 scale, 16 bytes of 4-bit codes */

static inline uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Adds the eight lanes of v in the order that quant.c's sum_lanes uses. */
static inline float sum_lanes(__m256 v) {
    float lane[8];
    _mm256_storeu_ps(lane, v);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
           ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* Reduces four accumulators pairwise, then across lanes. */
static inline float sum_accumulators(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    return sum_lanes(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

static inline __m256 load_f16x8(const unsigned char *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* BF16 is the upper half of a binary32, so widening is a 16-bit shift. */
static inline __m256 load_bf16x8(const unsigned char *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

/* Widens the low 8 int8 lanes of v to float. */
static inline __m256 int8x8_to_ps(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

static float dot_f32(const unsigned char *row, const float *x, int64_t n) {
    const float *w = (const float *)(const void *)row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    }

    float total = sum_accumulators(a0, a1, a2, a3);
    for (; i < n; i++) {
        float v;
        memcpy(&v, row + 4 * i, sizeof v);
        total += v * x[i];
    }
    return total;
}

static float dot_f16(const unsigned char *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(row + 2 * (i + 8)), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(row + 2 * (i + 16)), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(row + 2 * (i + 24)), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) {
        a0 = _mm256_fmadd_ps(load_f16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
    }

    float total = sum_accumulators(a0, a1, a2, a3);
    for (; i < n; i++) {
        total += _cvtsh_ss(load_u16(row + 2 * i)) * x[i];
    }
    return total;
}

static float dot_bf16(const unsigned char *row, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(row + 2 * (i + 8)), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(row + 2 * (i + 16)), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(row + 2 * (i + 24)), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) {
        a0 = _mm256_fmadd_ps(load_bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), a0);
    }

    float total = sum_accumulators(a0, a1, a2, a3);
    for (; i < n; i++) {
        uint32_t bits = (uint32_t)load_u16(row + 2 * i) << 16;
        float w;
        memcpy(&w, &bits, sizeof w);
        total += w * x[i];
    }
    return total;
}

/* Returns the unscaled dot of one Q8_0 block's codes with 32 floats. */
static inline __m256 block_dot_q8_0(const unsigned char *block, const float *xb) {
    const unsigned char *q = block + 2;
    __m256 w0 = int8x8_to_ps(_mm_loadl_epi64((const __m128i *)(const void *)q));
    __m256 w1 = int8x8_to_ps(_mm_loadl_epi64((const __m128i *)(const void *)(q + 8)));
    __m256 w2 = int8x8_to_ps(_mm_loadl_epi64((const __m128i *)(const void *)(q + 16)));
    __m256 w3 = int8x8_to_ps(_mm_loadl_epi64((const __m128i *)(const void *)(q + 24)));

    /* Two independent chains halve the latency of each block's sum. */
    __m256 first = _mm256_mul_ps(w0, _mm256_loadu_ps(xb));
    __m256 second = _mm256_mul_ps(w1, _mm256_loadu_ps(xb + 8));
    first = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xb + 16), first);
    second = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xb + 24), second);
    return _mm256_add_ps(first, second);
}

static float dot_q8_0(const unsigned char *row, const float *x, int64_t n) {
    __m256 even = _mm256_setzero_ps(), odd = even;
    int64_t blocks = n / QK;
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) {
        const unsigned char *block = row + b * Q8_0_BLOCK_BYTES;
        __m256 d_even = _mm256_set1_ps(_cvtsh_ss(load_u16(block)));
        __m256 d_odd = _mm256_set1_ps(_cvtsh_ss(load_u16(block + Q8_0_BLOCK_BYTES)));
        even = _mm256_fmadd_ps(d_even, block_dot_q8_0(block, x + b * QK), even);
        odd = _mm256_fmadd_ps(d_odd, block_dot_q8_0(block + Q8_0_BLOCK_BYTES, x + (b + 1) * QK), odd);
    }
    if (b < blocks) {
        const unsigned char *block = row + b * Q8_0_BLOCK_BYTES;
        __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(block)));
        even = _mm256_fmadd_ps(d, block_dot_q8_0(block, x + b * QK), even);
    }
    return sum_lanes(_mm256_add_ps(even, odd));
}

/* Returns the unscaled dot of one Q4_0 block's codes minus 8 with 32
 * floats. Byte j stores element j in its low nibble and j + 16 in its
 * high nibble. */
static inline __m256 block_dot_q4_0(const unsigned char *block, const float *xb) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i eight = _mm_set1_epi8(8);
    __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)(block + 2));
    __m128i low = _mm_sub_epi8(_mm_and_si128(bytes, mask), eight);
    __m128i high = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight);

    __m256 first = _mm256_mul_ps(int8x8_to_ps(low), _mm256_loadu_ps(xb));
    __m256 second = _mm256_mul_ps(int8x8_to_ps(_mm_srli_si128(low, 8)), _mm256_loadu_ps(xb + 8));
    first = _mm256_fmadd_ps(int8x8_to_ps(high), _mm256_loadu_ps(xb + 16), first);
    second = _mm256_fmadd_ps(int8x8_to_ps(_mm_srli_si128(high, 8)), _mm256_loadu_ps(xb + 24),
                             second);
    return _mm256_add_ps(first, second);
}

static float dot_q4_0(const unsigned char *row, const float *x, int64_t n) {
    __m256 even = _mm256_setzero_ps(), odd = even;
    int64_t blocks = n / QK;
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) {
        const unsigned char *block = row + b * Q4_0_BLOCK_BYTES;
        __m256 d_even = _mm256_set1_ps(_cvtsh_ss(load_u16(block)));
        __m256 d_odd = _mm256_set1_ps(_cvtsh_ss(load_u16(block + Q4_0_BLOCK_BYTES)));
        even = _mm256_fmadd_ps(d_even, block_dot_q4_0(block, x + b * QK), even);
        odd = _mm256_fmadd_ps(d_odd, block_dot_q4_0(block + Q4_0_BLOCK_BYTES, x + (b + 1) * QK), odd);
    }
    if (b < blocks) {
        const unsigned char *block = row + b * Q4_0_BLOCK_BYTES;
        __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(block)));
        even = _mm256_fmadd_ps(d, block_dot_q4_0(block, x + b * QK), even);
    }
    return sum_lanes(_mm256_add_ps(even, odd));
}

float mr_qdot_simd(mr_qtype type, const void *row, const float *x, int64_t n) {
    switch (type) {
    case MR_QTYPE_F32: return dot_f32(row, x, n);
    case MR_QTYPE_F16: return dot_f16(row, x, n);
    case MR_QTYPE_BF16: return dot_bf16(row, x, n);
    case MR_QTYPE_Q8_0: return dot_q8_0(row, x, n);
    case MR_QTYPE_Q4_0: return dot_q4_0(row, x, n);
    }
    return 0.0f;
}

#else

/* ISO C needs at least one declaration in a translation unit. */
typedef int mr_quant_simd_unused;

#endif /* MR_QUANT_SIMD */
