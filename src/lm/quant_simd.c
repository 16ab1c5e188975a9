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
 * The kernels for mr_qdot() keep x in float and widen the Q8_0 and Q4_0
 * weight codes to float. Their error is therefore that of a float dot
 * product of the decoded row, as for the scalar loops, at the cost of
 * more instructions per weight byte.
 *
 * The integer kernels at the end of the file take x quantised to int8
 * blocks, as ggml does, for mr_qmatvec_int8(). They multiply bytes with
 * maddubs and madd, so each block's sum is an exact integer, and they
 * match the scalar reference mr_qdot_int8_scalar() bit for bit.
 */
#include "quant_internal.h"

#if MR_QUANT_SIMD

#include <immintrin.h>
#include <stdbool.h>
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

/* ------------------------------------------------------------------------
 * Integer dot products on int8-quantised x
 * ------------------------------------------------------------------------ */

/* Returns the products of one Q8_0 block's weight codes with 32 x codes,
 * summed in fours: lane l holds elements 4 l .. 4 l + 3. maddubs
 * multiplies unsigned by signed bytes, so the weight's sign moves onto x:
 * |w| * (x with w's sign) = w x. |w| <= 128 (a code of -128 becomes the
 * unsigned byte 128) and |x| <= 127, so a pair sums to at most 32512 and
 * the int16 saturation of maddubs never triggers. */
static inline __m256i block_products_q8_0(const unsigned char *block, const int8_t *xq) {
    __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(block + 2));
    __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)xq);
    __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* Returns the products of one Q4_0 block's codes q in [0, 15], without
 * the offset 8, with 32 x codes, summed in fours as above. The low
 * nibbles are elements 0..15 and the high nibbles 16..31, so the two
 * halves line up with x as they are. The codes are non-negative, so they
 * are maddubs's unsigned operand directly; pairs reach at most
 * 2 * 15 * 127. */
static inline __m256i block_products_q4_0(const unsigned char *block, const int8_t *xq) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)(block + 2));
    __m128i low = _mm_and_si128(bytes, mask);
    __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    __m256i w = _mm256_inserti128_si256(_mm256_castsi128_si256(low), high, 1);
    __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)xq);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

/* Returns one vector whose lane k is the sum of the lanes of s[k], for
 * eight blocks' partial sums. hadd adds neighbouring lanes within each
 * 128-bit half. After two rounds, lane k % 4 of first (blocks 0..3) or
 * second (blocks 4..7) holds the sum of block k's lanes 0..3, and lane
 * k % 4 + 4 the sum of its lanes 4..7. Adding the halves finishes. */
static inline __m256i sum_blocks8(const __m256i s[8]) {
    __m256i pairs01 = _mm256_hadd_epi32(s[0], s[1]);
    __m256i pairs23 = _mm256_hadd_epi32(s[2], s[3]);
    __m256i pairs45 = _mm256_hadd_epi32(s[4], s[5]);
    __m256i pairs67 = _mm256_hadd_epi32(s[6], s[7]);
    __m256i first = _mm256_hadd_epi32(pairs01, pairs23);
    __m256i second = _mm256_hadd_epi32(pairs45, pairs67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(first, second, 0x20),
                            _mm256_permute2x128_si256(first, second, 0x31));
}

/* Widens the F16 scales of eight consecutive blocks block_bytes apart. */
static inline __m256 load_block_scales8(const unsigned char *block, int64_t block_bytes) {
    __m128i halves = _mm_setr_epi16(
        (short)load_u16(block), (short)load_u16(block + block_bytes),
        (short)load_u16(block + 2 * block_bytes), (short)load_u16(block + 3 * block_bytes),
        (short)load_u16(block + 4 * block_bytes), (short)load_u16(block + 5 * block_bytes),
        (short)load_u16(block + 6 * block_bytes), (short)load_u16(block + 7 * block_bytes));
    return _mm256_cvtph_ps(halves);
}

/* Returns the sum of the eight int32 lanes of v. */
static inline int32_t sum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Returns the products of one block's weight codes with its 32 x codes,
 * summed in fours, for either type. */
static inline __attribute__((always_inline)) __m256i
block_products(bool q4, const unsigned char *block, const int8_t *xq) {
    return q4 ? block_products_q4_0(block, xq) : block_products_q8_0(block, xq);
}

/* The integer kernel for both types. q4 is a constant at each call, so
 * the compiler keeps one loop per type. Eight blocks at a time, lane k
 * of the float accumulator receives block b + k, as lane b % 8 of
 * mr_qdot_int8_scalar does. The remaining blocks are added to those lanes
 * one by one. Multiplications and additions stay separate (no FMA), so
 * the result equals the scalar reference bit for bit. */
static inline __attribute__((always_inline)) float
dot_int8(bool q4, const unsigned char *row, const mr_q8_activations *x, int64_t n) {
    const int64_t block_bytes = q4 ? Q4_0_BLOCK_BYTES : Q8_0_BLOCK_BYTES;
    int64_t blocks = n / QK;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= blocks; b += 8) {
        const unsigned char *block = row + b * block_bytes;
        __m256i partial[8];
        for (int k = 0; k < 8; k++) {
            partial[k] = block_products(q4, block + k * block_bytes, x->codes + (b + k) * QK);
        }
        __m256i sums = sum_blocks8(partial);
        if (q4) {
            __m256i x_sums = _mm256_loadu_si256((const __m256i *)(const void *)(x->sums + b));
            sums = _mm256_sub_epi32(sums, _mm256_slli_epi32(x_sums, 3));
        }
        __m256 scales = _mm256_mul_ps(load_block_scales8(block, block_bytes),
                                      _mm256_loadu_ps(x->scales + b));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(scales, _mm256_cvtepi32_ps(sums)));
    }

    /* Padding the last blocks to a group of eight was no faster on rows
     * of 18 blocks when measured, so they go one by one. */
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    for (; b < blocks; b++) {
        const unsigned char *block = row + b * block_bytes;
        int32_t sum = sum_epi32(block_products(q4, block, x->codes + b * QK));
        if (q4) {
            sum -= 8 * x->sums[b];
        }
        float scale = _cvtsh_ss(load_u16(block)) * x->scales[b];
        float term = scale * (float)sum;
        lane[b % 8] += term;
    }
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
           ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

float mr_qdot_int8_simd(mr_qtype type, const void *row, const mr_q8_activations *x,
                        int64_t n) {
    switch (type) {
    case MR_QTYPE_Q8_0: return dot_int8(false, row, x, n);
    case MR_QTYPE_Q4_0: return dot_int8(true, row, x, n);
    default: return 0.0f;
    }
}

/* The row loop sits here rather than in quant.c so that dot_int8 is
 * inlined into it, which saves a call per row on short rows. */
void mr_qmatvec_int8_simd(mr_qtype type, const void *w, int64_t rows, int64_t n,
                          const mr_q8_activations *x, float *y) {
    const unsigned char *bytes = w;
    size_t row_bytes = mr_qtype_row_bytes(type, n);
    bool q4 = type == MR_QTYPE_Q4_0;

#pragma omp parallel for schedule(static) if (rows * n >= 16384)
    for (int64_t r = 0; r < rows; r++) {
        const unsigned char *row = bytes + (size_t)r * row_bytes;
        y[r] = q4 ? dot_int8(true, row, x, n) : dot_int8(false, row, x, n);
    }
}

#else

/* ISO C needs at least one declaration in a translation unit. */
typedef int mr_quant_simd_unused;

#endif /* MR_QUANT_SIMD */
