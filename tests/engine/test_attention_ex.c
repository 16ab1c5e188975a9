/*
 * mr_tensor_attention_ex: dropout on the attention probabilities and
 * MR_ATTENTION_ALL_KEYS_IF_EMPTY.
 *
 * Values and gradients are compared with an unfused composition: matmul,
 * masked softmax, the same dropout mask applied by multiplying, matmul.
 * Finite differences cover dropout on and the flag. PyTorch's additive
 * -10000 masking gives the reference for queries that see no key
 * (fixtures/attention_ex.json, written by fixtures/torch_attention_ex.py).
 * Also thread counts and argument errors.
 *
 * Tolerances: 1e-6 absolute plus 1e-5 relative, as in test_attention.c.
 * The fused kernel and the unfused ops sum the same float32 terms in a
 * different order (plain loops against BLAS), and the fixture comes from
 * float64. Probabilities after dropout reach 1 / (1 - 0.4) = 1.67, so the
 * rounding error stays near 1e-7.
 */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

/* One problem: sizes, flags, dropout rate and the key mask [B, S]. */
typedef struct attention_case {
    int64_t b, hq, hkv, t, s, d;
    int flags;
    float dropout;
    bool use_mask;
    float mask[2 * 7];
} attention_case;

static const attention_case cases[] = {
    /* Grouped heads (2 per kv head), odd sizes, dropout, no mask. */
    {1, 4, 2, 3, 5, 3, 0, 0.4f, false, {0}},
    /* One kv head for 3 query heads, causal with T < S, padding hides
     * keys 0 and 1 of batch 1, so its query 0 sees no key. */
    {2, 3, 1, 3, 5, 5, MR_SOFTMAX_CAUSAL | MR_ATTENTION_ALL_KEYS_IF_EMPTY, 0.3f, true,
     {1, 1, 0, 1, 1, 0, 0, 1, 1, 1}},
    /* Causal with T > S: query 0 sees no key, and in batch 1 nothing is
     * visible at all. No dropout, so the flag is tested alone. */
    {2, 2, 2, 4, 3, 3, MR_SOFTMAX_CAUSAL | MR_ATTENTION_ALL_KEYS_IF_EMPTY, 0.0f, true,
     {1, 0, 1, 0, 0, 0}},
    /* Both, with grouped heads, odd head size and an all-padding row. */
    {2, 4, 2, 5, 7, 5, MR_SOFTMAX_CAUSAL | MR_ATTENTION_ALL_KEYS_IF_EMPTY, 0.25f, true,
     {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1}},
};

#define CASE_COUNT (sizeof cases / sizeof cases[0])
#define DROPOUT_SEED 31

/* True when query i of batch b sees key j under the causal limit and the
 * key mask, before the flag applies. */
static bool key_visible(const attention_case *c, int64_t b, int64_t i, int64_t j) {
    if ((c->flags & MR_SOFTMAX_CAUSAL) != 0 && j > i + c->s - c->t) {
        return false;
    }
    return !c->use_mask || c->mask[b * c->s + j] != 0.0f;
}

/*
 * Builds the softmax mask [B, 1, G*T, S] of the unfused composition, with
 * row g*T + i for query i of the g-th query head of a kv head. With the
 * flag, a query that sees no key gets a row of ones.
 */
static mr_tensor *explicit_mask(mr_ctx *ctx, const attention_case *c) {
    int64_t group = c->hq / c->hkv;
    mr_tensor *mask = mr_tensor_new4d(ctx, MR_F32, c->b, 1, group * c->t, c->s);
    for (int64_t b = 0; b < c->b; b++) {
        for (int64_t i = 0; i < c->t; i++) {
            float row[8];
            bool any = false;
            for (int64_t j = 0; j < c->s; j++) {
                row[j] = key_visible(c, b, i, j) ? 1.0f : 0.0f;
                any = any || row[j] != 0.0f;
            }
            if (!any && (c->flags & MR_ATTENTION_ALL_KEYS_IF_EMPTY) != 0) {
                for (int64_t j = 0; j < c->s; j++) {
                    row[j] = 1.0f;
                }
            }
            for (int64_t g = 0; g < group; g++) {
                float *dst = mask->data + (b * group * c->t + g * c->t + i) * c->s;
                memcpy(dst, row, (size_t)c->s * sizeof(float));
            }
        }
    }
    return mask;
}

/* Creates q, k, v for case c, filled from seed, all requiring gradients. */
static void make_inputs(mr_ctx *ctx, const attention_case *c, uint64_t seed, mr_tensor **in) {
    in[0] = mr_tensor_new4d(ctx, MR_F32, c->b, c->hq, c->t, c->d);
    in[1] = mr_tensor_new4d(ctx, MR_F32, c->b, c->hkv, c->s, c->d);
    in[2] = mr_tensor_new4d(ctx, MR_F32, c->b, c->hkv, c->s, c->d);
    for (int i = 0; i < 3; i++) {
        mr_test_fill_uniform(in[i], -1.5f, 1.5f, seed + (uint64_t)i);
        mr_tensor_set_requires_grad(in[i], true);
    }
}

static mr_tensor *key_mask_tensor(mr_ctx *ctx, const attention_case *c) {
    if (!c->use_mask) {
        return NULL;
    }
    int64_t shape[2] = {c->b, c->s};
    return mr_tensor_from_f32(ctx, 2, shape, c->mask);
}

/*
 * Builds the unfused composition. Query heads of one kv head are
 * consecutive, so q [B, Hq, T, D] read as [B, Hkv, G*T, D] lines each kv
 * head up with its queries. The probabilities [B, Hkv, G*T, S] then have
 * the layout of [B, Hq, T, S]. The dropout mask is mr_tensor_dropout of
 * ones, drawn from the same rng state as the fused call.
 */
static mr_tensor *unfused_attention(mr_ctx *ctx, const attention_case *c, mr_tensor **in,
                                    float *dropped_fraction) {
    int64_t group = c->hq / c->hkv;
    int64_t grouped_shape[4] = {c->b, c->hkv, group * c->t, c->d};
    mr_tensor *q = mr_tensor_reshape(ctx, in[0], 4, grouped_shape);
    mr_tensor *scores = mr_tensor_scale(ctx, mr_tensor_matmul(ctx, q, in[1], MR_MATMUL_TRANS_B),
                                        1.0f / sqrtf((float)c->d));
    mr_tensor *probs = mr_tensor_softmax(ctx, scores, explicit_mask(ctx, c), 0);

    if (c->dropout > 0.0f) {
        mr_rng rng;
        mr_rng_init(&rng, DROPOUT_SEED);
        mr_tensor *ones = mr_tensor_new4d(ctx, MR_F32, c->b, c->hkv, group * c->t, c->s);
        int64_t n = mr_tensor_numel(ones);
        for (int64_t i = 0; i < n; i++) {
            ones->data[i] = 1.0f;
        }
        mr_tensor *keep = mr_tensor_dropout(ctx, ones, c->dropout, &rng);
        int64_t dropped = 0;
        for (int64_t i = 0; i < n; i++) {
            dropped += keep->data[i] == 0.0f;
        }
        *dropped_fraction = (float)dropped / (float)n;
        probs = mr_tensor_mul(ctx, probs, keep);
    }

    mr_tensor *out = mr_tensor_matmul(ctx, probs, in[2], 0);
    int64_t out_shape[4] = {c->b, c->hq, c->t, c->d};
    return mr_tensor_reshape(ctx, out, 4, out_shape);
}

static mr_tensor *fused_attention(mr_ctx *ctx, const attention_case *c, mr_tensor **in) {
    mr_rng rng;
    mr_rng_init(&rng, DROPOUT_SEED);
    return mr_tensor_attention_ex(ctx, in[0], in[1], in[2], key_mask_tensor(ctx, c), 0.0f,
                                  c->flags, c->dropout, &rng);
}

/* Compares n floats under the label "<case> <what>" with 1e-6 absolute
 * plus 1e-5 relative tolerance; returns the number of mismatches. */
static int compare_labelled(const char *case_label, const char *what, const float *actual,
                            const float *expected, int64_t n) {
    char label[96];
    snprintf(label, sizeof label, "%s %s", case_label, what);
    return mr_test_compare(__FILE__, __LINE__, label, actual, expected, n, 1e-6, 1e-5);
}

/* A fixed upstream gradient of n values. */
static float *upstream_gradient(int64_t n) {
    float *seed = malloc((size_t)n * sizeof *seed);
    for (int64_t i = 0; i < n; i++) {
        seed[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    }
    return seed;
}

/* Copies the output and the gradients of q, k and v into saved[0..3] and
 * clears the gradients. */
static void save_results(const mr_tensor *out, mr_tensor **in, float **saved) {
    int64_t n = mr_tensor_numel(out);
    saved[0] = malloc((size_t)n * sizeof(float));
    memcpy(saved[0], out->data, (size_t)n * sizeof(float));
    for (int i = 0; i < 3; i++) {
        n = mr_tensor_numel(in[i]);
        saved[i + 1] = malloc((size_t)n * sizeof(float));
        memcpy(saved[i + 1], in[i]->grad, (size_t)n * sizeof(float));
        mr_tensor_zero_grad(in[i]);
    }
}

static void free_results(float **saved) {
    for (int i = 0; i < 4; i++) {
        free(saved[i]);
    }
}

static void attention_ex_matches_unfused_ops(void) {
    for (size_t ci = 0; ci < CASE_COUNT; ci++) {
        const attention_case *c = &cases[ci];
        mr_ctx *params = mr_ctx_create(0);
        mr_tensor *in[3];
        make_inputs(params, c, 200 + 10 * ci, in);
        int64_t count = c->b * c->hq * c->t * c->d;
        float *seed = upstream_gradient(count);

        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *fused = fused_attention(ctx, c, in);
        CHECK_CTX_OK(ctx);
        if (fused == NULL) {
            free(seed);
            mr_ctx_free(ctx);
            mr_ctx_free(params);
            continue;
        }
        CHECK_STATUS(mr_tensor_backward(ctx, fused, seed), MR_OK);
        float *want[4];
        save_results(fused, in, want);
        mr_ctx_reset(ctx);

        float dropped_fraction = 0.0f;
        mr_tensor *unfused = unfused_attention(ctx, c, in, &dropped_fraction);
        CHECK_CTX_OK(ctx);
        CHECK_STATUS(mr_tensor_backward(ctx, unfused, seed), MR_OK);
        if (c->dropout > 0.0f) {
            /* Over 60 to 280 draws: the mask must drop some and keep most. */
            CHECK(dropped_fraction > 0.05f);
            CHECK(dropped_fraction < 0.6f);
        }

        char label[32];
        snprintf(label, sizeof label, "case %zu", ci);
        CHECK_INT_EQ(compare_labelled(label, "out", unfused->data, want[0], count), 0);
        const char *grad_names[3] = {"grad_q", "grad_k", "grad_v"};
        for (int g = 0; g < 3; g++) {
            CHECK_INT_EQ(compare_labelled(label, grad_names[g], in[g]->grad, want[g + 1],
                                          mr_tensor_numel(in[g])),
                         0);
        }
        free_results(want);
        free(seed);
        mr_ctx_free(ctx);
        mr_ctx_free(params);
    }
}

/* A query that sees no key outputs zeros without the flag but not with
 * it, so the flag cases above test something the plain op does not do. */
static void attention_ex_flag_changes_empty_query(void) {
    const attention_case *c = &cases[2];
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *in[3];
    make_inputs(ctx, c, 250, in);
    mr_tensor *mask = key_mask_tensor(ctx, c);

    mr_tensor *plain = mr_tensor_attention(ctx, in[0], in[1], in[2], mask, 0.0f,
                                           MR_SOFTMAX_CAUSAL);
    mr_tensor *all_keys = mr_tensor_attention_ex(ctx, in[0], in[1], in[2], mask, 0.0f,
                                                 c->flags, 0.0f, NULL);
    CHECK_CTX_OK(ctx);
    if (plain == NULL || all_keys == NULL) {
        mr_ctx_free(ctx);
        return;
    }

    /* Batch 0, head 0, query 0 sees no key; query 1 sees key 0 only. */
    float zeros[3] = {0, 0, 0};
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(plain->data, zeros, 3, 0, 0), 0);
    CHECK(fabsf(all_keys->data[0]) + fabsf(all_keys->data[1]) + fabsf(all_keys->data[2]) > 0.01f);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(all_keys->data + 3, plain->data + 3, 3, 0, 0), 0);

    /* Batch 0's query 0 with the flag is the unmasked softmax over the
     * three keys of kv head 0. */
    const float *q0 = in[0]->data, *k0 = in[1]->data, *v0 = in[2]->data;
    double weights[3], sum = 0.0;
    for (int j = 0; j < 3; j++) {
        double dot = 0.0;
        for (int e = 0; e < 3; e++) {
            dot += (double)q0[e] * (double)k0[j * 3 + e];
        }
        weights[j] = exp(dot / sqrt(3.0));
        sum += weights[j];
    }
    for (int e = 0; e < 3; e++) {
        double expected = 0.0;
        for (int j = 0; j < 3; j++) {
            expected += weights[j] / sum * (double)v0[j * 3 + e];
        }
        CHECK_NEAR(all_keys->data[e], expected, 1e-6);
    }
    mr_ctx_free(ctx);
}

/* Every forward pass of the gradient check draws the same mask because
 * fused_attention starts each call from the same stream state. The key
 * mask comes from the case. */
static mr_tensor *build_fused(mr_ctx *ctx, mr_tensor **in, void *user) {
    return fused_attention(ctx, user, in);
}

static void attention_ex_gradients(void) {
    for (size_t ci = 0; ci < CASE_COUNT; ci++) {
        mr_ctx *params = mr_ctx_create(0);
        mr_tensor *in[3];
        make_inputs(params, &cases[ci], 300 + 10 * ci, in);
        char label[48];
        snprintf(label, sizeof label, "attention_ex case %zu", ci);
        CHECK_INT_EQ(mr_gradcheck(label, build_fused, in, 3, (void *)&cases[ci], NULL), 0);
        mr_ctx_free(params);
    }
}

/* Strided q, k, v views ([B, T, H, D] transposed) with dropout and the
 * flag, by finite differences. */
static mr_tensor *build_strided(mr_ctx *ctx, mr_tensor **in, void *user) {
    const attention_case *c = user;
    mr_tensor *views[3];
    for (int i = 0; i < 3; i++) {
        views[i] = mr_tensor_transpose(ctx, in[i], 1, 2);
    }
    return fused_attention(ctx, c, views);
}

static void attention_ex_strided_gradients(void) {
    const attention_case *c = &cases[3];
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *in[3] = {mr_tensor_new4d(params, MR_F32, c->b, c->t, c->hq, c->d),
                        mr_tensor_new4d(params, MR_F32, c->b, c->s, c->hkv, c->d),
                        mr_tensor_new4d(params, MR_F32, c->b, c->s, c->hkv, c->d)};
    for (int i = 0; i < 3; i++) {
        mr_test_fill_uniform(in[i], -1.5f, 1.5f, 400 + (uint64_t)i);
        mr_tensor_set_requires_grad(in[i], true);
    }
    CHECK_INT_EQ(mr_gradcheck("attention_ex strided", build_strided, in, 3, (void *)c, NULL), 0);
    mr_ctx_free(params);
}

/* With dropout 0 and no new flag, the op is mr_tensor_attention, bit for
 * bit. Outside training mode the dropout is off and takes no draw. */
static void attention_ex_reduces_to_attention(void) {
    const attention_case *c = &cases[1];
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *in[3];
    make_inputs(ctx, c, 500, in);
    mr_tensor *mask = key_mask_tensor(ctx, c);
    int64_t count = c->b * c->hq * c->t * c->d;
    mr_rng rng;
    mr_rng_init(&rng, 3);

    mr_tensor *plain = mr_tensor_attention(ctx, in[0], in[1], in[2], mask, 0.0f,
                                           MR_SOFTMAX_CAUSAL);
    mr_tensor *zero_rate = mr_tensor_attention_ex(ctx, in[0], in[1], in[2], mask, 0.0f,
                                                  MR_SOFTMAX_CAUSAL, 0.0f, &rng);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(rng.counter, 0);
    if (plain != NULL && zero_rate != NULL) {
        CHECK(memcmp(plain->data, zero_rate->data, (size_t)count * sizeof(float)) == 0);
    }

    CHECK(mr_ctx_set_training(ctx, false));
    mr_tensor *eval = mr_tensor_attention_ex(ctx, in[0], in[1], in[2], mask, 0.0f,
                                             MR_SOFTMAX_CAUSAL, 0.5f, NULL);
    CHECK_CTX_OK(ctx);
    if (plain != NULL && eval != NULL) {
        CHECK(memcmp(plain->data, eval->data, (size_t)count * sizeof(float)) == 0);
    }

    /* Training mode with dropout takes exactly one draw. */
    mr_ctx_set_training(ctx, true);
    mr_tensor *dropped = mr_tensor_attention_ex(ctx, in[0], in[1], in[2], mask, 0.0f,
                                                MR_SOFTMAX_CAUSAL, 0.5f, &rng);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(rng.counter, 1);
    if (plain != NULL && dropped != NULL) {
        CHECK(memcmp(plain->data, dropped->data, (size_t)count * sizeof(float)) != 0);
    }
    mr_ctx_free(ctx);
}

/* Without recording (gradients off) the forward pass draws its keep
 * decisions without saving them; values must match the recording path. */
static void attention_ex_inference_matches_recording(void) {
    const attention_case *c = &cases[3];
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *in[3];
    make_inputs(ctx, c, 600, in);

    mr_tensor *recorded = fused_attention(ctx, c, in);
    CHECK(recorded != NULL);
    CHECK(recorded != NULL && mr_tensor_requires_grad(recorded));
    mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *inferred = fused_attention(ctx, c, in);
    CHECK_CTX_OK(ctx);
    if (recorded != NULL && inferred != NULL) {
        CHECK(!mr_tensor_requires_grad(inferred));
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(inferred->data, recorded->data, mr_tensor_numel(in[0]), 0,
                                      0),
                     0);
    }
    mr_ctx_free(ctx);
}

/* Output and gradients of case c on `threads` threads, into saved[0..3]. */
static void run_on_threads(const attention_case *c, int threads, float **saved) {
    mr_threads_set(threads);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *in[3];
    make_inputs(ctx, c, 700, in);
    mr_tensor *out = fused_attention(ctx, c, in);
    CHECK_CTX_OK(ctx);
    float *seed = upstream_gradient(c->b * c->hq * c->t * c->d);
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);
    save_results(out, in, saved);
    free(seed);
    mr_ctx_free(ctx);
}

static void attention_ex_same_on_one_and_two_threads(void) {
    /* 8 (batch, query head) pairs and 4 kv pairs: both threads get work. */
    attention_case c = cases[3];
    float *one[4], *two[4];
    int previous = mr_threads_get();
    run_on_threads(&c, 1, one);
    run_on_threads(&c, 2, two);
    mr_threads_set(previous);

    int64_t sizes[4] = {c.b * c.hq * c.t * c.d, c.b * c.hq * c.t * c.d,
                        c.b * c.hkv * c.s * c.d, c.b * c.hkv * c.s * c.d};
    for (int i = 0; i < 4; i++) {
        CHECK(memcmp(one[i], two[i], (size_t)sizes[i] * sizeof(float)) == 0);
    }
    free_results(one);
    free_results(two);
}

/* The fixture's cases all use the flag and no dropout. */
static void attention_ex_matches_torch_additive_mask(void) {
    const char *names[] = {"causal_padding", "causal_t_gt_s", "all_padding"};
    mr_fixture *fx = mr_fixture_load("fixtures/attention_ex.json");
    if (fx == NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *name = names[i];
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *q = mr_fixture_tensor(fx, ctx, name, "q");
        mr_tensor *k = mr_fixture_tensor(fx, ctx, name, "k");
        mr_tensor *v = mr_fixture_tensor(fx, ctx, name, "v");
        mr_tensor *mask = mr_fixture_tensor(fx, ctx, name, "key_mask");
        mr_tensor *grad_out = mr_fixture_tensor(fx, ctx, name, "grad_out");
        mr_tensor *expected = mr_fixture_tensor(fx, ctx, name, "out");
        if (q == NULL || k == NULL || v == NULL || mask == NULL || grad_out == NULL ||
            expected == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        float scale = (float)mr_fixture_number(fx, name, "scale", 0);
        mr_tensor_set_requires_grad(q, true);
        mr_tensor_set_requires_grad(k, true);
        mr_tensor_set_requires_grad(v, true);

        mr_tensor *out = mr_tensor_attention_ex(
            ctx, q, k, v, mask, scale, MR_SOFTMAX_CAUSAL | MR_ATTENTION_ALL_KEYS_IF_EMPTY, 0.0f,
            NULL);
        CHECK_CTX_OK(ctx);
        if (out == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        CHECK_INT_EQ(compare_labelled(name, "out", out->data, expected->data, mr_tensor_numel(q)),
                     0);

        CHECK_STATUS(mr_tensor_backward(ctx, out, grad_out->data), MR_OK);
        mr_tensor *inputs[3] = {q, k, v};
        const char *grad_names[3] = {"grad_q", "grad_k", "grad_v"};
        for (int g = 0; g < 3; g++) {
            mr_tensor *want = mr_fixture_tensor(fx, ctx, name, grad_names[g]);
            if (want != NULL) {
                CHECK_INT_EQ(compare_labelled(name, grad_names[g], inputs[g]->grad, want->data,
                                              mr_tensor_numel(want)),
                             0);
            }
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fx);
}

static void attention_ex_rejects_bad_arguments(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *q = mr_tensor_new4d(ctx, MR_F32, 1, 2, 3, 4);
    mr_tensor_fill(q, 0.5f);
    mr_rng rng;
    mr_rng_init(&rng, 1);

    float bad[3] = {1.0f, -0.1f, NAN};
    for (int i = 0; i < 3; i++) {
        CHECK(mr_tensor_attention_ex(ctx, q, q, q, NULL, 0.0f, 0, bad[i], &rng) == NULL);
        CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
        CHECK(strstr(mr_ctx_error_message(ctx), "dropout") != NULL);
        mr_ctx_reset(ctx);
        q = mr_tensor_new4d(ctx, MR_F32, 1, 2, 3, 4);
        mr_tensor_fill(q, 0.5f);
    }

    CHECK(mr_tensor_attention_ex(ctx, q, q, q, NULL, 0.0f, 0, 0.2f, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "rng is NULL") != NULL);
    mr_ctx_reset(ctx);

    q = mr_tensor_new4d(ctx, MR_F32, 1, 2, 3, 4);
    CHECK(mr_tensor_attention_ex(ctx, q, q, q, NULL, 0.0f, 0x4, 0.0f, NULL) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "unknown flags 0x4") != NULL);
    CHECK_INT_EQ(rng.counter, 0);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(attention_ex_matches_unfused_ops);
    MR_RUN(attention_ex_flag_changes_empty_query);
    MR_RUN(attention_ex_gradients);
    MR_RUN(attention_ex_strided_gradients);
    MR_RUN(attention_ex_reduces_to_attention);
    MR_RUN(attention_ex_inference_matches_recording);
    MR_RUN(attention_ex_same_on_one_and_two_threads);
    MR_RUN(attention_ex_matches_torch_additive_mask);
    MR_RUN(attention_ex_rejects_bad_arguments);
    return mr_test_finish();
}
