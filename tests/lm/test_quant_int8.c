/*
 * The integer path of Q8_0 and Q4_0 matrix-vector products
 * (mr_qmatvec_int8). The cases check exact codes of quantised x, exact
 * dot products on hand-made blocks and the AVX2 kernel bit for bit
 * against the scalar reference. They also check the distance from the
 * float path (mr_qmatvec) against the bound that the rounding of x allows.
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

/* Fills x with n normal values of standard deviation scale. */
static void fill_normal(float *x, int64_t n, float scale, uint64_t seed) {
    mr_rng rng;
    mr_rng_init(&rng, seed);
    for (int64_t i = 0; i < n; i++) {
        x[i] = scale * mr_rng_normal(&rng);
    }
}

/* Fills x with normal values whose scale changes from block to block by
 * factors from 1e-3 to 1e3, so that the per-block scales of x matter. */
static void fill_uneven_blocks(float *x, int64_t n, uint64_t seed) {
    static const float block_scales[] = {1.0f, 1e-3f, 30.0f, 0.2f, 1e3f, 4.0f, 0.01f};
    fill_normal(x, n, 1.0f, seed);
    for (int64_t i = 0; i < n; i++) {
        x[i] *= block_scales[(i / 32) % 7];
    }
}

/* Stores a little-endian F16 1.0 as the scale of a block. */
static void put_unit_scale(unsigned char *block) {
    block[0] = 0x00;
    block[1] = 0x3c;
}

static const mr_qtype int8_types[] = {MR_QTYPE_Q8_0, MR_QTYPE_Q4_0};

/* ------------------------------------------------------------------------
 * Quantising x
 * ------------------------------------------------------------------------ */

static void int8_scratch_bytes_per_block(void) {
    CHECK(mr_qmatvec_int8_scratch_bytes(0) == 0);
    CHECK(mr_qmatvec_int8_scratch_bytes(-1) == 0);
    /* 4 bytes of scale, 4 of code sum and 32 codes per block. */
    CHECK(mr_qmatvec_int8_scratch_bytes(32) == 40);
    CHECK(mr_qmatvec_int8_scratch_bytes(4096) == 128 * 40);
    CHECK(mr_qmatvec_int8_scratch_bytes(33) == 80);
}

static void int8_quantize_exact_codes(void) {
    enum { N = 96 };
    float x[N] = {0};
    unsigned char scratch[3 * 40];

    /* Block 0: max |x| = 127, so the scale is 1 and codes round x to the
     * nearest integer, ties to even. */
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = 3.5f;
    x[3] = -2.5f;
    x[4] = -0.5f;
    x[5] = 1.49f;
    x[6] = -126.6f;
    /* Block 1 stays zero. Block 2: max |x| = 254 gives scale 2, and a NaN
     * element gets code 0. */
    x[64] = -254.0f;
    x[65] = 5.0f;
    x[66] = 7.0f;
    x[67] = NAN;
    x[68] = 100.9f;

    mr_q8_activations q = mr_q8_activations_quantize(x, N, scratch);

    CHECK(q.scales[0] == 1.0f);
    CHECK(q.scales[1] == 0.0f);
    CHECK(q.scales[2] == 2.0f);
    const int8_t block0[7] = {127, 2, 4, -2, 0, 1, -127};
    for (int j = 0; j < 7; j++) {
        CHECK_INT_EQ(q.codes[j], block0[j]);
    }
    CHECK_INT_EQ(q.codes[7], 0);
    CHECK_INT_EQ(q.sums[0], 127 + 2 + 4 - 2 + 0 + 1 - 127);
    for (int j = 32; j < 64; j++) {
        CHECK_INT_EQ(q.codes[j], 0);
    }
    CHECK_INT_EQ(q.sums[1], 0);
    const int8_t block2[5] = {-127, 2, 4, 0, 50};
    for (int j = 0; j < 5; j++) {
        CHECK_INT_EQ(q.codes[64 + j], block2[j]);
    }
    CHECK_INT_EQ(q.sums[2], -127 + 2 + 4 + 0 + 50);
}

/* ------------------------------------------------------------------------
 * Exact values on hand-made blocks
 * ------------------------------------------------------------------------ */

/*
 * Rows of 9 blocks with weight scale 1 and x of max |x| = 127 in every
 * block (scale 1), so both paths compute sum_i w_i x_i of integers below
 * 2^24 exactly. The Q8_0 codes include -128, which ggml's quantiser never
 * writes but a file may contain. Checks the scalar reference, the SIMD
 * kernel and mr_qmatvec_int8.
 */
static void int8_dot_exact_on_integers(void) {
    enum { BLOCKS = 9, N = 32 * BLOCKS };
    float x[N];
    for (int i = 0; i < N; i++) {
        x[i] = i % 32 == 0 ? 127.0f : (float)((i * 37) % 255 - 127);
    }

    unsigned char q8[BLOCKS * 34];
    unsigned char q4[BLOCKS * 18];
    double expected_q8 = 0.0;
    double expected_q4 = 0.0;
    for (int b = 0; b < BLOCKS; b++) {
        unsigned char *block8 = q8 + b * 34;
        unsigned char *block4 = q4 + b * 18;
        put_unit_scale(block8);
        put_unit_scale(block4);
        for (int j = 0; j < 32; j++) {
            int code = j == 3 ? -128 : (b * 32 + j) * 53 % 256 - 128;
            block8[2 + j] = (unsigned char)(int8_t)code;
            expected_q8 += (double)code * x[b * 32 + j];
        }
        for (int j = 0; j < 16; j++) {
            int byte = (b * 16 + j) * 89 % 256;
            block4[2 + j] = (unsigned char)byte;
            expected_q4 += (double)((byte & 0x0f) - 8) * x[b * 32 + j];
            expected_q4 += (double)((byte >> 4) - 8) * x[b * 32 + j + 16];
        }
    }

    unsigned char scratch[BLOCKS * 40];
    mr_q8_activations q = mr_q8_activations_quantize(x, N, scratch);
    for (int b = 0; b < BLOCKS; b++) {
        CHECK(q.scales[b] == 1.0f);
    }

    CHECK_NEAR(mr_qdot_int8_scalar(MR_QTYPE_Q8_0, q8, &q, N), expected_q8, 0.0);
    CHECK_NEAR(mr_qdot_int8_scalar(MR_QTYPE_Q4_0, q4, &q, N), expected_q4, 0.0);
#if MR_QUANT_SIMD
    CHECK_NEAR(mr_qdot_int8_simd(MR_QTYPE_Q8_0, q8, &q, N), expected_q8, 0.0);
    CHECK_NEAR(mr_qdot_int8_simd(MR_QTYPE_Q4_0, q4, &q, N), expected_q4, 0.0);
#endif

    float y = 0.0f;
    unsigned char matvec_scratch[BLOCKS * 40];
    mr_qmatvec_int8(MR_QTYPE_Q8_0, q8, 1, N, x, &y, matvec_scratch);
    CHECK_NEAR(y, expected_q8, 0.0);
    mr_qmatvec_int8(MR_QTYPE_Q4_0, q4, 1, N, x, &y, matvec_scratch);
    CHECK_NEAR(y, expected_q4, 0.0);
}

/* ------------------------------------------------------------------------
 * AVX2 kernel against the scalar reference
 * ------------------------------------------------------------------------ */

/*
 * The block sums are exact integers in both, and the float operations
 * (scale product, term, lane sum, final lane reduction) run in the same
 * order without FMA, so the two must agree bit for bit.
 */
static void int8_simd_equals_scalar_bitwise(void) {
#if MR_QUANT_SIMD
    /* Block counts that cover the eight-block loop with no, some and seven
     * remaining blocks, and rows that are not multiples of 256 elements
     * (for example 18 blocks, the 576 of SmolLM2-135M). */
    static const int64_t block_counts[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 33, 48, 128, 129};
    const int count = (int)(sizeof block_counts / sizeof block_counts[0]);
    for (int t = 0; t < 2; t++) {
        mr_qtype type = int8_types[t];
        for (int k = 0; k < count; k++) {
            int64_t n = 32 * block_counts[k];
            float *w = malloc((size_t)n * sizeof *w);
            float *x = malloc((size_t)n * sizeof *x);
            unsigned char *row = malloc(mr_qtype_row_bytes(type, n));
            void *scratch = malloc(mr_qmatvec_int8_scratch_bytes(n));
            fill_normal(w, n, 0.05f, 1000 + (uint64_t)k);
            fill_uneven_blocks(x, n, 1100 + (uint64_t)k);
            mr_quantize_row(type, w, row, n);
            mr_q8_activations q = mr_q8_activations_quantize(x, n, scratch);

            float fast = mr_qdot_int8_simd(type, row, &q, n);
            float reference = mr_qdot_int8_scalar(type, row, &q, n);
            if (memcmp(&fast, &reference, sizeof fast) != 0) {
                mr_test_fail(__FILE__, __LINE__,
                             "%s integer dot of %lld blocks: AVX2 %.9g, scalar %.9g",
                             mr_qtype_name(type), (long long)block_counts[k], (double)fast,
                             (double)reference);
            }
            CHECK(reference != 0.0f);
            free(w);
            free(x);
            free(row);
            free(scratch);
        }
    }
#else
    printf("note: built without AVX2, FMA and F16C; only the scalar reference is tested\n");
#endif
}

/* ------------------------------------------------------------------------
 * Matrix-vector products against the float path
 * ------------------------------------------------------------------------ */

/* Runs mr_qmatvec_int8 with the given thread count into y. */
static void matvec_int8_with_threads(int threads, mr_qtype type, const void *w, int64_t rows,
                                     int64_t n, const float *x, float *y, void *scratch) {
    int saved = mr_threads_get();
    mr_threads_set(threads);
    mr_qmatvec_int8(type, w, rows, n, x, y, scratch);
    mr_threads_set(saved);
}

/*
 * Compares each y[r] of the integer path with the float path's. Element i
 * of x moves by at most s_b / 2, plus about 2^-17 s_b because
 * x * (1 / s_b) is rounded to float, and 0.501 s_b covers both. So y[r]
 * moves by at most B = sum_b 0.501 s_b sum_{i in b} |w_i|. Each path's
 * float rounding adds at most (n + 4) 2^-24 sum_i |w_i| (|x_i| + s_b). A
 * wrong element or scale breaks the bound. The test also requires that
 * some rows differ from the float path, so it fails if mr_qmatvec_int8
 * quietly runs the float path.
 */
static void int8_matvec_within_rounding_of_float(void) {
    const int64_t lengths[] = {32, 96, 256, 576, 1056, 1120, 1536, 4096};
    const int64_t rows = 21;
    for (int t = 0; t < 2; t++) {
        mr_qtype type = int8_types[t];
        for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
            int64_t n = lengths[k];
            size_t row_bytes = mr_qtype_row_bytes(type, n);
            float *w = malloc((size_t)(rows * n) * sizeof *w);
            float *decoded = malloc((size_t)n * sizeof *decoded);
            float *x = malloc((size_t)n * sizeof *x);
            unsigned char *stored = malloc(row_bytes * (size_t)rows);
            float *exact_y = malloc((size_t)rows * sizeof *exact_y);
            float *int8_y = malloc((size_t)rows * sizeof *int8_y);
            void *scratch = malloc(mr_qmatvec_int8_scratch_bytes(n));
            unsigned char *own_scratch = malloc(mr_qmatvec_int8_scratch_bytes(n));
            fill_normal(w, rows * n, 0.05f, 1200 + (uint64_t)k);
            fill_uneven_blocks(x, n, 1300 + (uint64_t)k);
            for (int64_t r = 0; r < rows; r++) {
                mr_quantize_row(type, w + r * n, stored + (size_t)r * row_bytes, n);
            }
            mr_q8_activations q = mr_q8_activations_quantize(x, n, own_scratch);

            mr_qmatvec(type, stored, rows, n, x, exact_y);
            mr_qmatvec_int8(type, stored, rows, n, x, int8_y, scratch);

            int beyond = 0;
            int differing = 0;
            for (int64_t r = 0; r < rows; r++) {
                mr_dequantize_row(type, stored + (size_t)r * row_bytes, decoded, n);
                double bound = 0.0;
                double magnitude = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    double s = q.scales[i / 32];
                    bound += 0.501 * s * fabs((double)decoded[i]);
                    magnitude += fabs((double)decoded[i]) * (fabs((double)x[i]) + s);
                }
                bound += 2.0 * (double)(n + 4) * 0x1p-24 * magnitude;
                double moved = fabs((double)int8_y[r] - (double)exact_y[r]);
                beyond += !(moved <= bound);
                differing += int8_y[r] != exact_y[r];
            }
            if (beyond != 0) {
                mr_test_fail(__FILE__, __LINE__,
                             "%s int8 matvec of %lld x %lld: %d rows beyond the rounding bound",
                             mr_qtype_name(type), (long long)rows, (long long)n, beyond);
            }
            CHECK(differing > 0);
            free(w);
            free(decoded);
            free(x);
            free(stored);
            free(exact_y);
            free(int8_y);
            free(scratch);
            free(own_scratch);
        }
    }
}

/*
 * Each y[r] equals the scalar reference on row r bit for bit, on 1 and 2
 * threads. 67 rows of 256 reach the size at which threads start. 131 rows
 * of 33 blocks split unevenly and leave a block after the eight-block
 * loop.
 */
static void int8_matvec_rows_equal_reference_any_threads(void) {
    const struct {
        int64_t rows;
        int64_t n;
    } shapes[] = {{1, 256}, {7, 256}, {67, 256}, {131, 32 * 33}};
    for (int t = 0; t < 2; t++) {
        mr_qtype type = int8_types[t];
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            int64_t rows = shapes[k].rows, n = shapes[k].n;
            size_t row_bytes = mr_qtype_row_bytes(type, n);
            float *w = malloc((size_t)(rows * n) * sizeof *w);
            float *x = malloc((size_t)n * sizeof *x);
            unsigned char *stored = malloc(row_bytes * (size_t)rows);
            float *y1 = malloc((size_t)rows * sizeof *y1);
            float *y2 = malloc((size_t)rows * sizeof *y2);
            void *scratch = malloc(mr_qmatvec_int8_scratch_bytes(n));
            unsigned char *own_scratch = malloc(mr_qmatvec_int8_scratch_bytes(n));
            fill_normal(w, rows * n, 0.1f, 1400 + (uint64_t)k);
            fill_normal(x, n, 1.0f, 1500 + (uint64_t)k);
            for (int64_t r = 0; r < rows; r++) {
                mr_quantize_row(type, w + r * n, stored + (size_t)r * row_bytes, n);
            }

            matvec_int8_with_threads(1, type, stored, rows, n, x, y1, scratch);
            matvec_int8_with_threads(2, type, stored, rows, n, x, y2, scratch);

            CHECK(memcmp(y1, y2, (size_t)rows * sizeof *y1) == 0);
            mr_q8_activations q = mr_q8_activations_quantize(x, n, own_scratch);
            int mismatches = 0;
            for (int64_t r = 0; r < rows; r++) {
                float reference =
                    mr_qdot_int8_scalar(type, stored + (size_t)r * row_bytes, &q, n);
                mismatches += memcmp(&reference, &y1[r], sizeof reference) != 0;
            }
            if (mismatches != 0) {
                mr_test_fail(__FILE__, __LINE__,
                             "%s int8 matvec of %lld x %lld: %d rows differ from the reference",
                             mr_qtype_name(type), (long long)rows, (long long)n, mismatches);
            }
            free(w);
            free(x);
            free(stored);
            free(y1);
            free(y2);
            free(scratch);
            free(own_scratch);
        }
    }
}

/* F32, F16 and BF16 weights go to mr_qmatvec unchanged, without scratch. */
static void int8_matvec_other_types_use_float_path(void) {
    const mr_qtype types[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16};
    enum { ROWS = 5, N = 100 };
    float w[ROWS * N];
    float x[N];
    unsigned char stored[ROWS * N * 4];
    fill_normal(w, ROWS * N, 1.0f, 1600);
    fill_normal(x, N, 1.0f, 1601);
    for (int t = 0; t < 3; t++) {
        size_t row_bytes = mr_qtype_row_bytes(types[t], N);
        for (int r = 0; r < ROWS; r++) {
            mr_quantize_row(types[t], w + r * N, stored + (size_t)r * row_bytes, N);
        }
        float expected[ROWS];
        float got[ROWS];
        mr_qmatvec(types[t], stored, ROWS, N, x, expected);
        mr_qmatvec_int8(types[t], stored, ROWS, N, x, got, NULL);
        CHECK(memcmp(expected, got, sizeof got) == 0);
    }
}

int main(void) {
    MR_RUN(int8_scratch_bytes_per_block);
    MR_RUN(int8_quantize_exact_codes);
    MR_RUN(int8_dot_exact_on_integers);
    MR_RUN(int8_simd_equals_scalar_bitwise);
    MR_RUN(int8_matvec_within_rounding_of_float);
    MR_RUN(int8_matvec_rows_equal_reference_any_threads);
    MR_RUN(int8_matvec_other_types_use_float_path);
    return mr_test_finish();
}
