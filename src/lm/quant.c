/*
 * Storage types of language-model weights: encoding, decoding, dot
 * products and matrix-vector products. include/multiround/quant.h gives
 * the byte layouts.
 *
 * The scalar dot products here are the portable fallback and the
 * reference; quant_simd.c has the AVX2 kernels that mr_qdot uses when the
 * build targets AVX2, FMA and F16C. Every scalar sum runs in a fixed
 * order: eight float partial sums, lane i % 8 for element i, added
 * together in lane order at the end of a block or row. That order lets
 * the compiler vectorise the loops without changing results, and
 * mr_qmatvec gives each row to one thread, so results do not depend on
 * the thread count.
 *
 * mr_qmatvec_int8 quantises x to int8 blocks first and sums each block of
 * a Q8_0 or Q4_0 row in integers. mr_qdot_int8_scalar is its reference.
 */
#include "multiround/quant.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "engine/half.h"
#include "quant_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quant.c reads little-endian blocks with memcpy and needs a little-endian host"
#endif

#define QK 32 /* elements per Q8_0 and Q4_0 block */
#define LANES 8

/* The on-disk blocks, little-endian. Their sizes are fixed by the format,
 * and the static asserts check that the compiler adds no padding. */
typedef struct block_q8_0 {
    uint16_t d;      /* F16 scale */
    int8_t q[QK];    /* x ~ d * q */
} block_q8_0;

typedef struct block_q4_0 {
    uint16_t d;            /* F16 scale */
    uint8_t q[QK / 2];     /* element j in the low nibble of byte j, j + 16 in the high */
} block_q4_0;

_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block must be 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block must be 18 bytes");

/* Reads a u16 from possibly unaligned memory. */
static inline uint16_t load_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float load_f32(const void *p) {
    float v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Adds the eight lanes in a fixed order. */
static inline float sum_lanes(const float acc[LANES]) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* ------------------------------------------------------------------------
 * Type table
 * ------------------------------------------------------------------------ */

const char *mr_qtype_name(mr_qtype type) {
    switch (type) {
    case MR_QTYPE_F32: return "f32";
    case MR_QTYPE_F16: return "f16";
    case MR_QTYPE_Q4_0: return "q4_0";
    case MR_QTYPE_Q8_0: return "q8_0";
    case MR_QTYPE_BF16: return "bf16";
    }
    return NULL;
}

bool mr_qtype_parse(const char *name, mr_qtype *out) {
    static const mr_qtype all[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_Q4_0, MR_QTYPE_Q8_0,
                                   MR_QTYPE_BF16};
    if (name == NULL) {
        return false;
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcasecmp(name, mr_qtype_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

bool mr_qtype_known(int value) {
    return mr_qtype_name((mr_qtype)value) != NULL;
}

int mr_qtype_block_size(mr_qtype type) {
    switch (type) {
    case MR_QTYPE_F32:
    case MR_QTYPE_F16:
    case MR_QTYPE_BF16: return 1;
    case MR_QTYPE_Q4_0:
    case MR_QTYPE_Q8_0: return QK;
    }
    return 0;
}

size_t mr_qtype_block_bytes(mr_qtype type) {
    switch (type) {
    case MR_QTYPE_F32: return 4;
    case MR_QTYPE_F16:
    case MR_QTYPE_BF16: return 2;
    case MR_QTYPE_Q4_0: return sizeof(block_q4_0);
    case MR_QTYPE_Q8_0: return sizeof(block_q8_0);
    }
    return 0;
}

size_t mr_qtype_row_bytes(mr_qtype type, int64_t n) {
    int block = mr_qtype_block_size(type);
    if (block == 0 || n < 0 || n % block != 0 ||
        (uint64_t)(n / block) > SIZE_MAX / mr_qtype_block_bytes(type)) {
        return 0;
    }
    return (size_t)(n / block) * mr_qtype_block_bytes(type);
}

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

/* Encodes one Q8_0 block. As in ggml, q is round(x * (1 / d)) with the
 * unrounded float d and halves rounded away from zero. Only the stored
 * scale is rounded to F16. */
static void quantize_block_q8_0(const float *x, block_q8_0 *out) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) {
        float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }

    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    out->d = mr_f32_to_f16(d);

    /* NOTE: a NaN element gives code 0 and an infinite amax gives all zero
     * codes with an infinite scale; ggml leaves both undefined. The clamp
     * keeps the float-to-int conversion defined. */
    for (int j = 0; j < QK; j++) {
        float v = roundf(x[j] * id);
        if (!(v >= -127.0f)) {
            v = v != v ? 0.0f : -127.0f;
        }
        out->q[j] = (int8_t)(v > 127.0f ? 127.0f : v);
    }
}

/* Encodes one Q4_0 block. m is the element of largest magnitude with its
 * sign, d = m / -8, and q = min(15, (int)(x / d + 8.5)), so m maps to 0. */
static void quantize_block_q4_0(const float *x, block_q4_0 *out) {
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax) {
            amax = a;
            max = x[j];
        }
    }

    float d = max / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    out->d = mr_f32_to_f16(d);

    for (int j = 0; j < QK / 2; j++) {
        uint8_t lo = 0;
        uint8_t hi = 0;
        for (int half = 0; half < 2; half++) {
            float v = x[j + half * (QK / 2)] * id + 8.5f;
            /* Clamped to [0, 15] so that NaN and infinities stay defined. */
            int q = v >= 15.0f ? 15 : (v >= 0.0f ? (int)v : 0);
            if (half == 0) {
                lo = (uint8_t)q;
            } else {
                hi = (uint8_t)q;
            }
        }
        out->q[j] = (uint8_t)(lo | (hi << 4));
    }
}

void mr_quantize_row(mr_qtype type, const float *src, void *dst, int64_t n) {
    unsigned char *bytes = dst;
    switch (type) {
    case MR_QTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case MR_QTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = mr_f32_to_f16(src[i]);
            memcpy(bytes + 2 * i, &h, 2);
        }
        return;
    case MR_QTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = mr_f32_to_bf16(src[i]);
            memcpy(bytes + 2 * i, &h, 2);
        }
        return;
    case MR_QTYPE_Q8_0:
        for (int64_t b = 0; b < n / QK; b++) {
            block_q8_0 block;
            quantize_block_q8_0(src + b * QK, &block);
            memcpy(bytes + b * (int64_t)sizeof block, &block, sizeof block);
        }
        return;
    case MR_QTYPE_Q4_0:
        for (int64_t b = 0; b < n / QK; b++) {
            block_q4_0 block;
            quantize_block_q4_0(src + b * QK, &block);
            memcpy(bytes + b * (int64_t)sizeof block, &block, sizeof block);
        }
        return;
    }
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

void mr_dequantize_row(mr_qtype type, const void *src, float *dst, int64_t n) {
    const unsigned char *bytes = src;
    switch (type) {
    case MR_QTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case MR_QTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            dst[i] = mr_f16_to_f32(load_u16(bytes + 2 * i));
        }
        return;
    case MR_QTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            dst[i] = mr_bf16_to_f32(load_u16(bytes + 2 * i));
        }
        return;
    case MR_QTYPE_Q8_0:
        for (int64_t b = 0; b < n / QK; b++) {
            const unsigned char *block = bytes + b * (int64_t)sizeof(block_q8_0);
            float d = mr_f16_to_f32(load_u16(block));
            const int8_t *q = (const int8_t *)(block + 2);
            for (int j = 0; j < QK; j++) {
                dst[b * QK + j] = d * (float)q[j];
            }
        }
        return;
    case MR_QTYPE_Q4_0:
        for (int64_t b = 0; b < n / QK; b++) {
            const unsigned char *block = bytes + b * (int64_t)sizeof(block_q4_0);
            float d = mr_f16_to_f32(load_u16(block));
            const uint8_t *q = block + 2;
            for (int j = 0; j < QK / 2; j++) {
                dst[b * QK + j] = d * (float)((q[j] & 0x0f) - 8);
                dst[b * QK + j + QK / 2] = d * (float)((q[j] >> 4) - 8);
            }
        }
        return;
    }
}

/* ------------------------------------------------------------------------
 * Dot products
 * ------------------------------------------------------------------------ */

static float dot_f32(const unsigned char *row, const float *x, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) {
            acc[l] += load_f32(row + 4 * (i + l)) * x[i + l];
        }
    }
    for (; i < n; i++) {
        acc[i % LANES] += load_f32(row + 4 * i) * x[i];
    }
    return sum_lanes(acc);
}

static float dot_f16(const unsigned char *row, const float *x, int64_t n) {
    float acc[LANES] = {0};
    for (int64_t i = 0; i < n; i++) {
        acc[i % LANES] += mr_f16_to_f32(load_u16(row + 2 * i)) * x[i];
    }
    return sum_lanes(acc);
}

static float dot_bf16(const unsigned char *row, const float *x, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) {
            acc[l] += mr_bf16_to_f32(load_u16(row + 2 * (i + l))) * x[i + l];
        }
    }
    for (; i < n; i++) {
        acc[i % LANES] += mr_bf16_to_f32(load_u16(row + 2 * i)) * x[i];
    }
    return sum_lanes(acc);
}

/* Each block's codes are dotted with x in lanes, then scaled by d once. */
static float dot_q8_0(const unsigned char *row, const float *x, int64_t n) {
    float total = 0.0f;
    for (int64_t b = 0; b < n / QK; b++) {
        const unsigned char *block = row + b * (int64_t)sizeof(block_q8_0);
        const int8_t *q = (const int8_t *)(block + 2);
        const float *xb = x + b * QK;
        float acc[LANES] = {0};
        for (int j = 0; j < QK; j += LANES) {
            for (int l = 0; l < LANES; l++) {
                acc[l] += (float)q[j + l] * xb[j + l];
            }
        }
        total += mr_f16_to_f32(load_u16(block)) * sum_lanes(acc);
    }
    return total;
}

static float dot_q4_0(const unsigned char *row, const float *x, int64_t n) {
    float total = 0.0f;
    for (int64_t b = 0; b < n / QK; b++) {
        const unsigned char *block = row + b * (int64_t)sizeof(block_q4_0);
        const uint8_t *q = block + 2;
        const float *xb = x + b * QK;
        float acc[LANES] = {0};
        for (int j = 0; j < QK / 2; j += LANES) {
            for (int l = 0; l < LANES; l++) {
                acc[l] += (float)((q[j + l] & 0x0f) - 8) * xb[j + l];
                acc[l] += (float)((q[j + l] >> 4) - 8) * xb[j + l + QK / 2];
            }
        }
        total += mr_f16_to_f32(load_u16(block)) * sum_lanes(acc);
    }
    return total;
}

float mr_qdot_scalar(mr_qtype type, const void *row, const float *x, int64_t n) {
    switch (type) {
    case MR_QTYPE_F32: return dot_f32(row, x, n);
    case MR_QTYPE_F16: return dot_f16(row, x, n);
    case MR_QTYPE_BF16: return dot_bf16(row, x, n);
    case MR_QTYPE_Q8_0: return dot_q8_0(row, x, n);
    case MR_QTYPE_Q4_0: return dot_q4_0(row, x, n);
    }
    return 0.0f;
}

float mr_qdot(mr_qtype type, const void *row, const float *x, int64_t n) {
#if MR_QUANT_SIMD
    return mr_qdot_simd(type, row, x, n);
#else
    return mr_qdot_scalar(type, row, x, n);
#endif
}

void mr_qmatvec(mr_qtype type, const void *w, int64_t rows, int64_t n, const float *x,
                float *y) {
    const unsigned char *bytes = w;
    size_t row_bytes = mr_qtype_row_bytes(type, n);

    /* Threads pay off only above a few thousand multiply-adds. */
#pragma omp parallel for schedule(static) if (rows * n >= 16384)
    for (int64_t r = 0; r < rows; r++) {
        y[r] = mr_qdot(type, bytes + (size_t)r * row_bytes, x, n);
    }
}

/* ------------------------------------------------------------------------
 * Integer dot products on int8-quantised x
 * ------------------------------------------------------------------------ */

size_t mr_qmatvec_int8_scratch_bytes(int64_t n) {
    if (n < 0) {
        return 0;
    }
    size_t blocks = (size_t)((n + QK - 1) / QK);
    return blocks * (sizeof(float) + sizeof(int32_t) + QK);
}

/* Scratch layout: the float scales, then the int32 code sums, then the
 * codes, so each array is aligned for its type when scratch is. */
mr_q8_activations mr_q8_activations_quantize(const float *x, int64_t n, void *scratch) {
    int64_t blocks = n / QK;
    float *scales = scratch;
    int32_t *sums = (int32_t *)(scales + blocks);
    int8_t *codes = (int8_t *)(sums + blocks);

    for (int64_t b = 0; b < blocks; b++) {
        const float *xb = x + b * QK;
        int8_t *qb = codes + b * QK;
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax;
        }

        /* The scale stays in float. ggml quantises x to its Q8_0 format,
         * whose F16 scale loses precision once d falls below the smallest
         * normal F16, 2^-14, that is for max|x| below 127 * 2^-14 = 7.8e-3. */
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        scales[b] = d;

        /* rintf rounds ties to even in the default rounding mode. The
         * clamp maps NaN to 0 and keeps the codes in [-127, 127], which
         * the AVX2 sign trick needs. */
        int32_t sum = 0;
        for (int j = 0; j < QK; j++) {
            float v = rintf(xb[j] * id);
            if (!(v >= -127.0f)) {
                v = v != v ? 0.0f : -127.0f;
            }
            qb[j] = (int8_t)(v > 127.0f ? 127.0f : v);
            sum += qb[j];
        }
        sums[b] = sum;
    }

    return (mr_q8_activations){.scales = scales, .sums = sums, .codes = codes};
}

/* Returns the exact integer dot product of one block's weight codes with
 * 32 x codes. |result| <= 32 * 128 * 127, far inside int32 and float's
 * 2^24 of exact integers. */
static int32_t block_sum_q8_0(const unsigned char *block, const int8_t *xq) {
    const int8_t *q = (const int8_t *)(block + 2);
    int32_t sum = 0;
    for (int j = 0; j < QK; j++) {
        sum += (int32_t)q[j] * xq[j];
    }
    return sum;
}

static int32_t block_sum_q4_0(const unsigned char *block, const int8_t *xq) {
    const uint8_t *q = block + 2;
    int32_t sum = 0;
    for (int j = 0; j < QK / 2; j++) {
        sum += ((int32_t)(q[j] & 0x0f) - 8) * xq[j];
        sum += ((int32_t)(q[j] >> 4) - 8) * xq[j + QK / 2];
    }
    return sum;
}

float mr_qdot_int8_scalar(mr_qtype type, const void *row, const mr_q8_activations *x,
                          int64_t n) {
    if (type != MR_QTYPE_Q8_0 && type != MR_QTYPE_Q4_0) {
        return 0.0f;
    }
    const unsigned char *bytes = row;
    size_t block_bytes = mr_qtype_block_bytes(type);
    float acc[LANES] = {0};
    for (int64_t b = 0; b < n / QK; b++) {
        const unsigned char *block = bytes + (size_t)b * block_bytes;
        const int8_t *xq = x->codes + b * QK;
        int32_t sum = type == MR_QTYPE_Q8_0 ? block_sum_q8_0(block, xq) : block_sum_q4_0(block, xq);

        /* Three statements, so that no compiler contracts them into an
         * FMA: the AVX2 kernel multiplies and adds separately. */
        float scale = mr_f16_to_f32(load_u16(block)) * x->scales[b];
        float term = scale * (float)sum;
        acc[b % LANES] += term;
    }
    return sum_lanes(acc);
}

void mr_qmatvec_int8(mr_qtype type, const void *w, int64_t rows, int64_t n, const float *x,
                     float *y, void *scratch) {
    if (type != MR_QTYPE_Q8_0 && type != MR_QTYPE_Q4_0) {
        mr_qmatvec(type, w, rows, n, x, y);
        return;
    }

    /* x is quantised once, before the threads start, and then read by
     * every row. */
    mr_q8_activations xq = mr_q8_activations_quantize(x, n, scratch);

#if MR_QUANT_SIMD
    mr_qmatvec_int8_simd(type, w, rows, n, &xq, y);
#else
    const unsigned char *bytes = w;
    size_t row_bytes = mr_qtype_row_bytes(type, n);
#pragma omp parallel for schedule(static) if (rows * n >= 16384)
    for (int64_t r = 0; r < rows; r++) {
        y[r] = mr_qdot_int8_scalar(type, bytes + (size_t)r * row_bytes, &xq, n);
    }
#endif
}
