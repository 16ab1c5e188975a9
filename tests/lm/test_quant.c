/*
 * Storage types: exact F16 and BF16 bit patterns for hand-picked values,
 * exact Q8_0 and Q4_0 bytes for hand-made blocks, round-trip error bounds,
 * and dot and matrix-vector products against decode-then-dot in double.
 * Expected bit patterns were worked out by hand from the formats' rules
 * (and agree with NumPy 1.24's float16 and PyTorch 1.13's bfloat16,
 * except that those two canonicalise NaN differently).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/common.h"
#include "multiround/quant.h"
#include "multiround/rng.h"
#include "quant_internal.h"
#include "test.h"

static float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint32_t float_to_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/* Encodes one float as a 16-bit type and returns the stored pattern. */
static uint16_t narrow16(mr_qtype type, float value) {
    uint16_t bits;
    mr_quantize_row(type, &value, &bits, 1);
    return bits;
}

static float widen16(mr_qtype type, uint16_t bits) {
    float value;
    mr_dequantize_row(type, &bits, &value, 1);
    return value;
}

/* Fills x with n normal values of standard deviation scale. */
static void fill_normal(float *x, int64_t n, float scale, uint64_t seed) {
    mr_rng rng;
    mr_rng_init(&rng, seed);
    for (int64_t i = 0; i < n; i++) {
        x[i] = scale * mr_rng_normal(&rng);
    }
}

static const mr_qtype all_types[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16, MR_QTYPE_Q8_0,
                                     MR_QTYPE_Q4_0};
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

/* ------------------------------------------------------------------------
 * Type table
 * ------------------------------------------------------------------------ */

static void type_table_matches_ggml(void) {
    CHECK_INT_EQ(mr_qtype_block_size(MR_QTYPE_F32), 1);
    CHECK_INT_EQ(mr_qtype_block_size(MR_QTYPE_F16), 1);
    CHECK_INT_EQ(mr_qtype_block_size(MR_QTYPE_Q4_0), 32);
    CHECK_INT_EQ(mr_qtype_block_size(MR_QTYPE_Q8_0), 32);
    CHECK_INT_EQ(mr_qtype_block_size(MR_QTYPE_BF16), 1);
    CHECK_INT_EQ(mr_qtype_block_bytes(MR_QTYPE_F32), 4);
    CHECK_INT_EQ(mr_qtype_block_bytes(MR_QTYPE_F16), 2);
    CHECK_INT_EQ(mr_qtype_block_bytes(MR_QTYPE_Q4_0), 18);
    CHECK_INT_EQ(mr_qtype_block_bytes(MR_QTYPE_Q8_0), 34);
    CHECK_INT_EQ(mr_qtype_block_bytes(MR_QTYPE_BF16), 2);
    CHECK_INT_EQ(mr_qtype_row_bytes(MR_QTYPE_Q4_0, 96), 54);
    CHECK_INT_EQ(mr_qtype_row_bytes(MR_QTYPE_Q8_0, 64), 68);
    CHECK_INT_EQ(mr_qtype_row_bytes(MR_QTYPE_F16, 7), 14);
    CHECK_INT_EQ(mr_qtype_row_bytes(MR_QTYPE_Q8_0, 33), 0);
    CHECK_INT_EQ(mr_qtype_row_bytes(MR_QTYPE_F32, -4), 0);
    CHECK_INT_EQ(mr_qtype_row_bytes((mr_qtype)3, 32), 0);
}

static void type_names_round_trip(void) {
    const char *names[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
    for (int i = 0; i < N_TYPES; i++) {
        CHECK(strcmp(mr_qtype_name(all_types[i]), names[i]) == 0);
        mr_qtype parsed = (mr_qtype)-1;
        CHECK(mr_qtype_parse(names[i], &parsed));
        CHECK_INT_EQ(parsed, all_types[i]);
        CHECK(mr_qtype_known((int)all_types[i]));
    }

    mr_qtype parsed = MR_QTYPE_F32;
    CHECK(mr_qtype_parse("Q8_0", &parsed));
    CHECK_INT_EQ(parsed, MR_QTYPE_Q8_0);
    CHECK(!mr_qtype_parse("q4_1", &parsed));
    CHECK(!mr_qtype_parse(NULL, &parsed));
    CHECK_INT_EQ(parsed, MR_QTYPE_Q8_0);
    CHECK(mr_qtype_name((mr_qtype)3) == NULL);
    CHECK(!mr_qtype_known(3));
    CHECK(!mr_qtype_known(-1));
    CHECK(!mr_qtype_known(31));
}

/* ------------------------------------------------------------------------
 * F16 and BF16 bit patterns
 * ------------------------------------------------------------------------ */

static void f16_narrowing_exact_bits(void) {
    struct {
        float value;
        uint16_t bits;
    } cases[] = {
        {1.0f, 0x3c00},
        {-2.0f, 0xc000},
        {-0.0f, 0x8000},
        {0.1f, 0x2e66},
        {65504.0f, 0x7bff},               /* largest finite */
        {65519.0f, 0x7bff},               /* below the halfway point to 65536 */
        {65520.0f, 0x7c00},               /* halfway: ties to even overflow to infinity */
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
        {0x1p-14f, 0x0400},               /* smallest normal */
        {1023.0f * 0x1p-24f, 0x03ff},     /* largest subnormal */
        {0x1p-24f, 0x0001},               /* smallest subnormal */
        {0x1p-25f, 0x0000},               /* half of it: tie to even 0 */
        {-0x1p-25f, 0x8000},
        {0x1.000002p-25f, 0x0001},        /* just above the tie */
        {1.5f * 0x1p-24f, 0x0002},        /* tie between 1 and 2 units: even 2 */
        {2.5f * 0x1p-24f, 0x0002},        /* tie between 2 and 3 units: even 2 */
        {0x1p-26f, 0x0000},
        {1.0f + 0x1p-11f, 0x3c00},        /* tie between 0x3c00 and 0x3c01 */
        {1.0f + 3.0f * 0x1p-11f, 0x3c02}, /* tie between 0x3c01 and 0x3c02 */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},
        {2049.0f, 0x6800},                /* tie between 2048 and 2050 */
        {2051.0f, 0x6802},                /* tie between 2050 and 2052 */
        {0x1.ffep-1f, 0x3c00},            /* rounding carries into the exponent */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t bits = narrow16(MR_QTYPE_F16, cases[i].value);
        if (bits != cases[i].bits) {
            mr_test_fail(__FILE__, __LINE__, "f16(%a) is 0x%04x, expected 0x%04x",
                         (double)cases[i].value, bits, cases[i].bits);
        }
    }

    uint16_t nan_bits = narrow16(MR_QTYPE_F16, NAN);
    CHECK_INT_EQ(nan_bits, 0x7e00);
    uint16_t negative_nan_bits = narrow16(MR_QTYPE_F16, -NAN);
    CHECK_INT_EQ(negative_nan_bits, 0xfe00);
}

static void f16_widening_exact_values(void) {
    CHECK(widen16(MR_QTYPE_F16, 0x0001) == 0x1p-24f);
    CHECK(widen16(MR_QTYPE_F16, 0x03ff) == 1023.0f * 0x1p-24f);
    CHECK(widen16(MR_QTYPE_F16, 0x0400) == 0x1p-14f);
    CHECK(widen16(MR_QTYPE_F16, 0x3555) == 0.333251953125f);
    CHECK(widen16(MR_QTYPE_F16, 0x7bff) == 65504.0f);
    CHECK(widen16(MR_QTYPE_F16, 0xfc00) == -INFINITY);
    CHECK(isnan(widen16(MR_QTYPE_F16, 0x7c01)));
    CHECK_INT_EQ(float_to_bits(widen16(MR_QTYPE_F16, 0x8000)), 0x80000000u);

    /* Every finite F16 survives a round trip through float. */
    int mismatches = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u) {
            continue;
        }
        if (narrow16(MR_QTYPE_F16, widen16(MR_QTYPE_F16, (uint16_t)h)) != h) {
            mismatches++;
        }
    }
    CHECK_INT_EQ(mismatches, 0);
}

static void bf16_narrowing_exact_bits(void) {
    struct {
        uint32_t value;
        uint16_t bits;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1.0 */
        {0x3f808000u, 0x3f80}, /* tie, kept bit 0: down */
        {0x3f818000u, 0x3f82}, /* tie, kept bit 1: up */
        {0x3f808001u, 0x3f81}, /* just above the tie */
        {0x3f80ffffu, 0x3f81},
        {0x7f7fffffu, 0x7f80}, /* float max rounds to infinity */
        {0xff800000u, 0xff80}, /* -infinity */
        {0x80000000u, 0x8000}, /* -0 */
        {0x00008000u, 0x0000}, /* subnormal tie: down to 0 */
        {0x00018000u, 0x0002}, /* subnormal tie: up to even */
        {0x00010000u, 0x0001}, /* exact subnormal */
        {0x7fc00000u, 0x7fc0}, /* quiet NaN */
        {0xffc00000u, 0xffc0}, /* negative quiet NaN */
        {0x7f800001u, 0x7fc0}, /* signalling NaN becomes quiet, not infinity */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t bits = narrow16(MR_QTYPE_BF16, bits_to_float(cases[i].value));
        if (bits != cases[i].bits) {
            mr_test_fail(__FILE__, __LINE__, "bf16(0x%08x) is 0x%04x, expected 0x%04x",
                         cases[i].value, bits, cases[i].bits);
        }
    }

    CHECK_INT_EQ(float_to_bits(widen16(MR_QTYPE_BF16, 0x3f81)), 0x3f810000u);
    CHECK_INT_EQ(float_to_bits(widen16(MR_QTYPE_BF16, 0x0001)), 0x00010000u);
    CHECK(isnan(widen16(MR_QTYPE_BF16, 0x7fc0)));
}

/* ------------------------------------------------------------------------
 * Q8_0 and Q4_0 blocks
 * ------------------------------------------------------------------------ */

static void q8_0_blocks_exact_bytes(void) {
    float x[96] = {0};

    /* Block 0: max|x| = 127, so d = 1 (F16 0x3c00) and q = round(x),
     * halves away from zero. */
    const float head[8] = {127.0f, -127.0f, 2.5f, -2.5f, 0.49f, -0.5f, 100.0f, -1.0f};
    memcpy(x, head, sizeof head);
    for (int j = 8; j < 32; j++) {
        x[j] = (float)(j - 20);
    }

    /* Block 1 is all zero: d = 0 and zero codes. */

    /* Block 2: max|x| = 254, so d = 2 (F16 0x4000). */
    x[64] = 3.0f;    /* 1.5 -> 2 */
    x[65] = -3.0f;   /* -1.5 -> -2 */
    x[66] = 1.0f;    /* 0.5 -> 1 */
    x[67] = 0.9f;    /* 0.45 -> 0 */
    x[95] = -254.0f; /* -127 */

    unsigned char expected[3 * 34] = {0};
    const unsigned char head_bytes[10] = {0x00, 0x3c, 0x7f, 0x81, 0x03, 0xfd, 0x00, 0xff, 0x64, 0xff};
    memcpy(expected, head_bytes, sizeof head_bytes);
    for (int j = 8; j < 32; j++) {
        expected[2 + j] = (unsigned char)(int8_t)(j - 20);
    }
    const unsigned char tail_bytes[6] = {0x00, 0x40, 0x02, 0xfe, 0x01, 0x00};
    memcpy(expected + 68, tail_bytes, sizeof tail_bytes);
    expected[68 + 2 + 31] = 0x81;

    unsigned char actual[3 * 34];
    memset(actual, 0xaa, sizeof actual);
    mr_quantize_row(MR_QTYPE_Q8_0, x, actual, 96);
    for (int i = 0; i < (int)sizeof actual; i++) {
        if (actual[i] != expected[i]) {
            mr_test_fail(__FILE__, __LINE__, "q8_0 byte %d is 0x%02x, expected 0x%02x", i,
                         actual[i], expected[i]);
        }
    }

    float decoded[96];
    mr_dequantize_row(MR_QTYPE_Q8_0, actual, decoded, 96);
    CHECK(decoded[0] == 127.0f);
    CHECK(decoded[2] == 3.0f);
    CHECK(decoded[5] == -1.0f);
    CHECK(decoded[40] == 0.0f);
    CHECK(decoded[64] == 4.0f);
    CHECK(decoded[95] == -254.0f);
}

static void q4_0_blocks_exact_bytes(void) {
    float x[64] = {0};

    /* Block 0: the largest magnitude is -8, so d = -8 / -8 = 1 (F16
     * 0x3c00) and q = min(15, (int)(x + 8.5)). */
    const float head[8] = {-8.0f, 7.0f, 0.0f, 0.4f, 0.5f, -0.5f, -0.6f, 7.9f};
    memcpy(x, head, sizeof head);
    for (int j = 8; j < 16; j++) {
        x[j] = (float)(j - 12);
    }
    for (int j = 16; j < 32; j++) {
        x[j] = (float)(j - 16) * 0.25f - 2.0f;
    }

    /* Block 1: the largest magnitude is +4, so d = -0.5 (F16 0xb800) and
     * q = min(15, (int)(-2 x + 8.5)). */
    x[32 + 0] = 1.0f;   /* 6.5 -> 6 */
    x[32 + 1] = -1.0f;  /* 10.5 -> 10 */
    x[32 + 2] = -3.9f;  /* 16.3 -> clamped to 15 */
    x[32 + 5] = 4.0f;   /* 0.5 -> 0 */
    x[32 + 20] = 2.0f;  /* 4.5 -> 4 */
    x[32 + 21] = -2.2f; /* 12.9 -> 12 */
    x[32 + 31] = 0.3f;  /* 7.9 -> 7 */

    /* Byte j holds element j in its low nibble and j + 16 in its high. */
    const unsigned char expected[36] = {
        0x00, 0x3c, 0x60, 0x6f, 0x78, 0x78, 0x79, 0x78, 0x87, 0x8f,
        0x84, 0x85, 0x96, 0x97, 0x98, 0x99, 0xaa, 0xab,
        0x00, 0xb8, 0x86, 0x8a, 0x8f, 0x88, 0x48, 0xc0, 0x88, 0x88,
        0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x78};

    unsigned char actual[36];
    memset(actual, 0xaa, sizeof actual);
    mr_quantize_row(MR_QTYPE_Q4_0, x, actual, 64);
    for (int i = 0; i < (int)sizeof actual; i++) {
        if (actual[i] != expected[i]) {
            mr_test_fail(__FILE__, __LINE__, "q4_0 byte %d is 0x%02x, expected 0x%02x", i,
                         actual[i], expected[i]);
        }
    }

    float decoded[64];
    mr_dequantize_row(MR_QTYPE_Q4_0, actual, decoded, 64);
    CHECK(decoded[0] == -8.0f);
    CHECK(decoded[1] == 7.0f);
    CHECK(decoded[7] == 7.0f);
    CHECK(decoded[17] == -2.0f);
    CHECK(decoded[32 + 2] == -3.5f);
    CHECK(decoded[32 + 5] == 4.0f);
    CHECK(decoded[32 + 21] == -2.0f);
}

static void quantize_nonfinite_stays_defined(void) {
    /* Only the absence of undefined behaviour (checked by UBSan) and the
     * finite elements' codes are promised here. */
    float x[32];
    for (int j = 0; j < 32; j++) {
        x[j] = (float)j;
    }
    x[3] = NAN;
    unsigned char q8[34];
    mr_quantize_row(MR_QTYPE_Q8_0, x, q8, 32);
    CHECK_INT_EQ((int8_t)q8[2 + 3], 0);
    CHECK_INT_EQ((int8_t)q8[2 + 31], 127);

    unsigned char q4[18];
    x[5] = INFINITY;
    mr_quantize_row(MR_QTYPE_Q4_0, x, q4, 32);
    float decoded[32];
    mr_dequantize_row(MR_QTYPE_Q4_0, q4, decoded, 32);
    CHECK(isinf(decoded[5]) || isnan(decoded[5]));
}

/* ------------------------------------------------------------------------
 * Round-trip error bounds
 * ------------------------------------------------------------------------ */

static void f16_bf16_round_trip_relative_error(void) {
    enum { N = 4096 };
    float *x = malloc(N * sizeof *x);
    uint16_t *stored = malloc(N * sizeof *stored);
    float *y = malloc(N * sizeof *y);
    fill_normal(x, N, 3.0f, 11);

    /* Rounding to nearest keeps the error within half a unit in the last
     * place: 2^-11 relative for F16 normals (at least 2^-25 absolute in
     * the subnormal range), 2^-8 relative for BF16. */
    mr_quantize_row(MR_QTYPE_F16, x, stored, N);
    mr_dequantize_row(MR_QTYPE_F16, stored, y, N);
    int f16_failures = 0;
    for (int i = 0; i < N; i++) {
        double bound = fmax(fabs((double)x[i]) * 0x1p-11, 0x1p-25);
        f16_failures += fabs((double)y[i] - (double)x[i]) > bound;
    }
    CHECK_INT_EQ(f16_failures, 0);

    mr_quantize_row(MR_QTYPE_BF16, x, stored, N);
    mr_dequantize_row(MR_QTYPE_BF16, stored, y, N);
    int bf16_failures = 0;
    for (int i = 0; i < N; i++) {
        bf16_failures += fabs((double)y[i] - (double)x[i]) > fabs((double)x[i]) * 0x1p-8;
    }
    CHECK_INT_EQ(bf16_failures, 0);

    free(x);
    free(stored);
    free(y);
}

static void q8_0_q4_0_round_trip_error(void) {
    enum { N = 32 * 64 };
    float *x = malloc(N * sizeof *x);
    float *y = malloc(N * sizeof *y);
    unsigned char *q8 = malloc(mr_qtype_row_bytes(MR_QTYPE_Q8_0, N));
    unsigned char *q4 = malloc(mr_qtype_row_bytes(MR_QTYPE_Q4_0, N));
    fill_normal(x, N, 0.5f, 12);

    /* Q8_0: x - d16 * q = (x - d q) + q (d - d16), so the error is at most
     * d / 2 plus 127 |d - d16| for the F16 rounding of the scale d. */
    mr_quantize_row(MR_QTYPE_Q8_0, x, q8, N);
    mr_dequantize_row(MR_QTYPE_Q8_0, q8, y, N);
    int q8_failures = 0;
    for (int b = 0; b < N / 32; b++) {
        double amax = 0.0;
        for (int j = 0; j < 32; j++) {
            amax = fmax(amax, fabs((double)x[b * 32 + j]));
        }
        double d = (double)(float)(amax / 127.0);
        double d16 = (double)widen16(MR_QTYPE_F16, (uint16_t)(q8[b * 34] | q8[b * 34 + 1] << 8));
        double bound = 0.5 * d + 127.0 * fabs(d - d16) + 1e-6 * amax;
        for (int j = 0; j < 32; j++) {
            q8_failures += fabs((double)y[b * 32 + j] - (double)x[b * 32 + j]) > bound;
        }
    }
    CHECK_INT_EQ(q8_failures, 0);

    /* Q4_0: codes of 16 steps of d cover -8 d .. 7 d, so the error is at
     * most |d| / 2, except for elements near +8 d (the opposite sign of
     * the block's extreme), which clamp to 7 d with error up to |d|. The
     * F16 scale adds at most 8 |d - d16|. */
    mr_quantize_row(MR_QTYPE_Q4_0, x, q4, N);
    mr_dequantize_row(MR_QTYPE_Q4_0, q4, y, N);
    int q4_failures = 0;
    for (int b = 0; b < N / 32; b++) {
        double max = 0.0;
        for (int j = 0; j < 32; j++) {
            if (fabs((double)x[b * 32 + j]) > fabs(max)) {
                max = (double)x[b * 32 + j];
            }
        }
        double d = max / -8.0;
        double d16 = (double)widen16(MR_QTYPE_F16, (uint16_t)(q4[b * 18] | q4[b * 18 + 1] << 8));
        for (int j = 0; j < 32; j++) {
            double scaled = (double)x[b * 32 + j] / d;
            double step = scaled > 7.5 ? 1.0 : 0.5;
            double bound = step * fabs(d) + 8.0 * fabs(d - d16) + 1e-6 * fabs(max);
            q4_failures += fabs((double)y[b * 32 + j] - (double)x[b * 32 + j]) > bound;
        }
    }
    CHECK_INT_EQ(q4_failures, 0);

    free(x);
    free(y);
    free(q8);
    free(q4);
}

/* ------------------------------------------------------------------------
 * Dot and matrix-vector products
 * ------------------------------------------------------------------------ */

/* Checks mr_qdot of a stored row against the decoded row dotted with x in
 * double. Float summation of n products is within (n + 4) 2^-24
 * sum |w_i x_i| of the exact sum (the standard worst-case bound, plus the
 * rounding of the block scale products), so a wrong element or scale
 * shows up far above it. */
static void check_dot(mr_qtype type, const void *row, const float *x, int64_t n) {
    float *decoded = malloc((size_t)n * sizeof *decoded);
    mr_dequantize_row(type, row, decoded, n);
    double exact = 0.0;
    double magnitude = 0.0;
    for (int64_t i = 0; i < n; i++) {
        exact += (double)decoded[i] * (double)x[i];
        magnitude += fabs((double)decoded[i] * (double)x[i]);
    }
    free(decoded);

    float dot = mr_qdot(type, row, x, n);
    double tolerance = (double)(n + 4) * 0x1p-24 * magnitude;
    if (!(fabs((double)dot - exact) <= tolerance)) {
        mr_test_fail(__FILE__, __LINE__, "%s dot of %lld elements is %.9g, expected %.9g (tolerance %g)",
                     mr_qtype_name(type), (long long)n, (double)dot, exact, tolerance);
    }
}

static void qdot_matches_decoded_dot(void) {
    const int64_t lengths[] = {32, 64, 96, 288};
    for (int t = 0; t < N_TYPES; t++) {
        for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
            int64_t n = lengths[k];
            float *w = malloc((size_t)n * sizeof *w);
            float *x = malloc((size_t)n * sizeof *x);
            unsigned char *row = malloc(mr_qtype_row_bytes(all_types[t], n));
            fill_normal(w, n, 1.0f, 100 + (uint64_t)k);
            fill_normal(x, n, 2.0f, 200 + (uint64_t)k);
            mr_quantize_row(all_types[t], w, row, n);
            check_dot(all_types[t], row, x, n);
            free(w);
            free(x);
            free(row);
        }
    }
}

static void qdot_odd_lengths_per_element(void) {
    /* Types with one element per block take any length, including ones
     * that leave a remainder after the 8-lane loop. */
    const mr_qtype types[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16};
    const int64_t lengths[] = {1, 7, 37};
    for (size_t t = 0; t < 3; t++) {
        for (size_t k = 0; k < 3; k++) {
            int64_t n = lengths[k];
            float w[37];
            float x[37];
            unsigned char row[37 * 4];
            fill_normal(w, n, 1.0f, 300 + (uint64_t)k);
            fill_normal(x, n, 1.0f, 400 + (uint64_t)k);
            mr_quantize_row(types[t], w, row, n);
            check_dot(types[t], row, x, n);
        }
    }
}

static void qdot_f32_exact_small(void) {
    const float w[3] = {1.0f, 2.0f, -3.0f};
    const float x[3] = {4.0f, 0.5f, 2.0f};
    CHECK(mr_qdot(MR_QTYPE_F32, w, x, 3) == -1.0f);
}

/* Runs mr_qmatvec with the given thread count into y. */
static void matvec_with_threads(int threads, mr_qtype type, const void *w, int64_t rows,
                                int64_t n, const float *x, float *y) {
    int saved = mr_threads_get();
    mr_threads_set(threads);
    mr_qmatvec(type, w, rows, n, x, y);
    mr_threads_set(saved);
}

static void qmatvec_rows_equal_qdot_any_threads(void) {
    /* 67 rows of 256 reach the size at which mr_qmatvec uses threads. */
    const int64_t row_counts[] = {1, 7, 67};
    const int64_t n = 256;
    for (int t = 0; t < N_TYPES; t++) {
        mr_qtype type = all_types[t];
        size_t row_bytes = mr_qtype_row_bytes(type, n);
        for (size_t k = 0; k < 3; k++) {
            int64_t rows = row_counts[k];
            float *w = malloc((size_t)(rows * n) * sizeof *w);
            float *x = malloc((size_t)n * sizeof *x);
            unsigned char *stored = malloc(row_bytes * (size_t)rows);
            float *y1 = malloc((size_t)rows * sizeof *y1);
            float *y2 = malloc((size_t)rows * sizeof *y2);
            fill_normal(w, rows * n, 1.0f, 500 + (uint64_t)k);
            fill_normal(x, n, 1.0f, 600 + (uint64_t)k);
            for (int64_t r = 0; r < rows; r++) {
                mr_quantize_row(type, w + r * n, stored + (size_t)r * row_bytes, n);
            }

            matvec_with_threads(1, type, stored, rows, n, x, y1);
            matvec_with_threads(2, type, stored, rows, n, x, y2);

            CHECK(memcmp(y1, y2, (size_t)rows * sizeof *y1) == 0);
            int mismatches = 0;
            for (int64_t r = 0; r < rows; r++) {
                float dot = mr_qdot(type, stored + (size_t)r * row_bytes, x, n);
                mismatches += memcmp(&dot, &y1[r], sizeof dot) != 0;
            }
            if (mismatches != 0) {
                mr_test_fail(__FILE__, __LINE__, "%s matvec of %lld rows: %d rows differ from mr_qdot",
                             mr_qtype_name(type), (long long)rows, mismatches);
            }
            free(w);
            free(x);
            free(stored);
            free(y1);
            free(y2);
        }
    }
}

/* Lengths that leave every kind of remainder: after the 32-element main
 * loop, after the 8-element loop, and odd block counts for the two-sum
 * Q8_0 and Q4_0 kernels. */
static const int64_t simd_lengths[] = {1, 7, 8, 9, 31, 33, 37, 63, 65, 100, 257, 1023, 4097};
static const int64_t simd_block_counts[] = {1, 2, 3, 5, 9, 33, 129};

/* Checks mr_qdot (the SIMD kernels in an AVX2 build) against the scalar
 * reference for one row. Each of the two float sums lies within
 * (n + 4) 2^-24 sum |w_i x_i| of the exact sum whatever its order, so
 * they differ by at most twice that. */
static void check_simd_against_scalar(mr_qtype type, int64_t n, uint64_t seed, float scale) {
    float *w = malloc((size_t)n * sizeof *w);
    float *x = malloc((size_t)n * sizeof *x);
    float *decoded = malloc((size_t)n * sizeof *decoded);
    unsigned char *row = malloc(mr_qtype_row_bytes(type, n));
    fill_normal(w, n, scale, seed);
    fill_normal(x, n, 1.0f, seed + 1);
    mr_quantize_row(type, w, row, n);
    mr_dequantize_row(type, row, decoded, n);
    double magnitude = 0.0;
    for (int64_t i = 0; i < n; i++) {
        magnitude += fabs((double)decoded[i] * (double)x[i]);
    }

    float fast = mr_qdot(type, row, x, n);
    float reference = mr_qdot_scalar(type, row, x, n);
    double tolerance = 2.0 * (double)(n + 4) * 0x1p-24 * magnitude;
    if (!(fabs((double)fast - (double)reference) <= tolerance)) {
        mr_test_fail(__FILE__, __LINE__,
                     "%s dot of %lld elements is %.9g, scalar reference %.9g (tolerance %g)",
                     mr_qtype_name(type), (long long)n, (double)fast, (double)reference,
                     tolerance);
    }
    check_dot(type, row, x, n);

    free(w);
    free(x);
    free(decoded);
    free(row);
}

static void qdot_simd_matches_scalar_per_element(void) {
    const mr_qtype types[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16};
    for (size_t t = 0; t < 3; t++) {
        for (size_t k = 0; k < sizeof simd_lengths / sizeof simd_lengths[0]; k++) {
            check_simd_against_scalar(types[t], simd_lengths[k], 700 + (uint64_t)k, 1.0f);
        }
    }
}

static void qdot_simd_matches_scalar_blocks(void) {
    const mr_qtype types[] = {MR_QTYPE_Q8_0, MR_QTYPE_Q4_0};
    for (size_t t = 0; t < 2; t++) {
        for (size_t k = 0; k < sizeof simd_block_counts / sizeof simd_block_counts[0]; k++) {
            check_simd_against_scalar(types[t], 32 * simd_block_counts[k], 800 + (uint64_t)k,
                                      0.05f);
        }
    }
}

static void qdot_simd_small_exact_values(void) {
    /* Small integers: every product and partial sum is exact in float,
     * so any summation order gives the same value. Element i of w is
     * (i % 5) - 2 and of x is (i % 3) + 1. */
    enum { N = 75 };
    float w[N];
    float x[N];
    double expected = 0.0;
    for (int i = 0; i < N; i++) {
        w[i] = (float)(i % 5 - 2);
        x[i] = (float)(i % 3 + 1);
        expected += (double)w[i] * (double)x[i];
    }
    const mr_qtype types[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16};
    for (size_t t = 0; t < 3; t++) {
        unsigned char row[N * 4];
        mr_quantize_row(types[t], w, row, N);
        CHECK_NEAR(mr_qdot(types[t], row, x, N), expected, 0.0);
        CHECK_NEAR(mr_qdot_scalar(types[t], row, x, N), expected, 0.0);
    }

    /* A Q8_0 row of 64 with max |w| = 127 in both blocks has d = 1, so the
     * codes equal w and the product is exact. */
    float wq[64];
    float xq[64];
    double expected_q8 = 0.0;
    for (int i = 0; i < 64; i++) {
        wq[i] = i % 32 == 5 ? 127.0f : (float)(i % 7 - 3);
        xq[i] = (float)(i % 4) - 1.5f;
        expected_q8 += (double)wq[i] * (double)xq[i];
    }
    unsigned char q8[68];
    mr_quantize_row(MR_QTYPE_Q8_0, wq, q8, 64);
    CHECK_NEAR(mr_qdot(MR_QTYPE_Q8_0, q8, xq, 64), expected_q8, 0.0);
}

static void qmatvec_odd_shapes_same_on_1_and_2_threads(void) {
    /* Row lengths off the kernels' 8- and 32-element steps, and row
     * counts that split unevenly over two threads. */
    const struct {
        mr_qtype type;
        int64_t n;
    } cases[] = {{MR_QTYPE_F32, 1001}, {MR_QTYPE_F16, 999}, {MR_QTYPE_BF16, 515},
                 {MR_QTYPE_Q8_0, 32 * 33}, {MR_QTYPE_Q4_0, 32 * 35}};
    const int64_t rows = 131;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mr_qtype type = cases[c].type;
        int64_t n = cases[c].n;
        size_t row_bytes = mr_qtype_row_bytes(type, n);
        float *w = malloc((size_t)(rows * n) * sizeof *w);
        float *x = malloc((size_t)n * sizeof *x);
        unsigned char *stored = malloc(row_bytes * (size_t)rows);
        float *y1 = malloc((size_t)rows * sizeof *y1);
        float *y2 = malloc((size_t)rows * sizeof *y2);
        fill_normal(w, rows * n, 0.1f, 900 + (uint64_t)c);
        fill_normal(x, n, 1.0f, 950 + (uint64_t)c);
        for (int64_t r = 0; r < rows; r++) {
            mr_quantize_row(type, w + r * n, stored + (size_t)r * row_bytes, n);
        }

        matvec_with_threads(1, type, stored, rows, n, x, y1);
        matvec_with_threads(2, type, stored, rows, n, x, y2);

        if (memcmp(y1, y2, (size_t)rows * sizeof *y1) != 0) {
            mr_test_fail(__FILE__, __LINE__, "%s matvec of %lld x %lld differs on 1 and 2 threads",
                         mr_qtype_name(type), (long long)rows, (long long)n);
        }
        for (int64_t r = 0; r < rows; r += 13) {
            check_dot(type, stored + (size_t)r * row_bytes, x, n);
        }
        free(w);
        free(x);
        free(stored);
        free(y1);
        free(y2);
    }
}

int main(void) {
    if (!MR_QUANT_SIMD) {
        printf("note: built without AVX2, FMA and F16C, so mr_qdot is the scalar reference\n");
    }
    MR_RUN(type_table_matches_ggml);
    MR_RUN(type_names_round_trip);
    MR_RUN(f16_narrowing_exact_bits);
    MR_RUN(f16_widening_exact_values);
    MR_RUN(bf16_narrowing_exact_bits);
    MR_RUN(q8_0_blocks_exact_bytes);
    MR_RUN(q4_0_blocks_exact_bytes);
    MR_RUN(quantize_nonfinite_stays_defined);
    MR_RUN(f16_bf16_round_trip_relative_error);
    MR_RUN(q8_0_q4_0_round_trip_error);
    MR_RUN(qdot_matches_decoded_dot);
    MR_RUN(qdot_odd_lengths_per_element);
    MR_RUN(qdot_f32_exact_small);
    MR_RUN(qmatvec_rows_equal_qdot_any_threads);
    MR_RUN(qdot_simd_matches_scalar_per_element);
    MR_RUN(qdot_simd_matches_scalar_blocks);
    MR_RUN(qdot_simd_small_exact_values);
    MR_RUN(qmatvec_odd_shapes_same_on_1_and_2_threads);
    return mr_test_finish();
}
