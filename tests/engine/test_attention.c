/*
 * Fused attention: values and gradients against an explicit PyTorch
 * implementation (fixtures/attention.json, written by
 * fixtures/torch_attention.py) and against the separate matmul and softmax
 * ops. Also finite-difference gradient checks with grouped heads, masks,
 * odd sizes and strided inputs, inference without recording, thread
 * counts and argument errors.
 *
 * Fixture tolerances: 1e-6 absolute plus 1e-5 relative. The float32 kernel
 * sums D products per score and S terms per output element, against a
 * float64 reference; the largest error seen is 1.2e-7.
 */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

static int compare_case(const char *case_name, const char *what, const float *actual,
                        const float *expected, int64_t n) {
    char label[96];
    snprintf(label, sizeof label, "%s %s", case_name, what);
    return mr_test_compare(__FILE__, __LINE__, label, actual, expected, n, 1e-6, 1e-5);
}

static void attention_matches_torch(void) {
    struct {
        const char *name;
        bool has_mask;
    } cases[] = {{"gqa_plain", false}, {"mqa_causal_mask", true}, {"hidden_queries", true}};
    mr_fixture *fx = mr_fixture_load("fixtures/attention.json");
    if (fx == NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *name = cases[i].name;
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *q = mr_fixture_tensor(fx, ctx, name, "q");
        mr_tensor *k = mr_fixture_tensor(fx, ctx, name, "k");
        mr_tensor *v = mr_fixture_tensor(fx, ctx, name, "v");
        mr_tensor *mask = cases[i].has_mask ? mr_fixture_tensor(fx, ctx, name, "key_mask") : NULL;
        mr_tensor *grad_out = mr_fixture_tensor(fx, ctx, name, "grad_out");
        float scale = (float)mr_fixture_number(fx, name, "scale", 0);
        int flags = mr_fixture_number(fx, name, "causal", 0) != 0 ? MR_SOFTMAX_CAUSAL : 0;
        mr_tensor_set_requires_grad(q, true);
        mr_tensor_set_requires_grad(k, true);
        mr_tensor_set_requires_grad(v, true);

        mr_tensor *out = mr_tensor_attention(ctx, q, k, v, mask, scale, flags);
        CHECK_CTX_OK(ctx);
        if (out == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        mr_tensor *expected = mr_fixture_tensor(fx, ctx, name, "out");
        CHECK_INT_EQ(compare_case(name, "out", out->data, expected->data, mr_tensor_numel(q)),
                     0);

        CHECK_STATUS(mr_tensor_backward(ctx, out, grad_out->data), MR_OK);
        mr_tensor *grads[3] = {q, k, v};
        const char *grad_names[3] = {"grad_q", "grad_k", "grad_v"};
        for (int g = 0; g < 3; g++) {
            mr_tensor *want = mr_fixture_tensor(fx, ctx, name, grad_names[g]);
            CHECK_INT_EQ(compare_case(name, grad_names[g], grads[g]->grad, want->data,
                                      mr_tensor_numel(want)),
                         0);
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fx);
}

/*
 * With Hq == Hkv, attention equals softmax(scale * q k^T, mask, causal) @ v
 * built from the separate ops, in values and in gradients.
 */
static void attention_matches_separate_ops(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t b = 2, h = 2, t = 4, s = 6, d = 5;
    mr_tensor *q = mr_tensor_new4d(params, MR_F32, b, h, t, d);
    mr_tensor *k = mr_tensor_new4d(params, MR_F32, b, h, s, d);
    mr_tensor *v = mr_tensor_new4d(params, MR_F32, b, h, s, d);
    float mv[12] = {1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1};
    int64_t ms[2] = {2, 6}, ms4[4] = {2, 1, 1, 6};
    mr_tensor *mask = mr_tensor_from_f32(params, 2, ms, mv);
    mr_test_fill_uniform(q, -1, 1, 100);
    mr_test_fill_uniform(k, -1, 1, 101);
    mr_test_fill_uniform(v, -1, 1, 102);
    mr_tensor *inputs[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        mr_tensor_set_requires_grad(inputs[i], true);
    }
    int64_t count = b * h * t * d;
    float *seed = malloc((size_t)count * sizeof *seed);
    for (int64_t i = 0; i < count; i++) {
        seed[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    }

    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *fused = mr_tensor_attention(ctx, q, k, v, mask, 0.0f, MR_SOFTMAX_CAUSAL);
    CHECK_STATUS(mr_tensor_backward(ctx, fused, seed), MR_OK);
    float *fused_out = malloc((size_t)count * sizeof *fused_out);
    memcpy(fused_out, fused->data, (size_t)count * sizeof *fused_out);
    float *fused_grads[3];
    for (int i = 0; i < 3; i++) {
        int64_t n = mr_tensor_numel(inputs[i]);
        fused_grads[i] = malloc((size_t)n * sizeof(float));
        memcpy(fused_grads[i], inputs[i]->grad, (size_t)n * sizeof(float));
        mr_tensor_zero_grad(inputs[i]);
    }
    mr_ctx_reset(ctx);

    mr_tensor *scores = mr_tensor_scale(ctx, mr_tensor_matmul(ctx, q, k, MR_MATMUL_TRANS_B),
                                        1.0f / sqrtf((float)d));
    mr_tensor *mask4 = mr_tensor_reshape(ctx, mask, 4, ms4);
    mr_tensor *probs = mr_tensor_softmax(ctx, scores, mask4, MR_SOFTMAX_CAUSAL);
    mr_tensor *separate = mr_tensor_matmul(ctx, probs, v, 0);
    CHECK_STATUS(mr_tensor_backward(ctx, separate, seed), MR_OK);
    CHECK_ARRAY_NEAR(separate->data, fused_out, count, 1e-6, 1e-5);
    for (int i = 0; i < 3; i++) {
        CHECK_ARRAY_NEAR(inputs[i]->grad, fused_grads[i], mr_tensor_numel(inputs[i]), 1e-6,
                         1e-5);
        free(fused_grads[i]);
    }
    free(fused_out);
    free(seed);
    mr_ctx_free(ctx);
    mr_ctx_free(params);
}

/*
 * Runs fused attention and the separate ops (matmul, softmax, matmul) on
 * the same causal, masked inputs with Hq == Hkv and compares values and
 * gradients. Key j of the last batch entry is masked when j % 5 == 3.
 */
static void compare_with_separate_ops(int64_t b, int64_t h, int64_t t, int64_t s, int64_t d) {
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *q = mr_tensor_new4d(params, MR_F32, b, h, t, d);
    mr_tensor *k = mr_tensor_new4d(params, MR_F32, b, h, s, d);
    mr_tensor *v = mr_tensor_new4d(params, MR_F32, b, h, s, d);
    mr_tensor *mask = mr_tensor_new2d(params, MR_F32, b, s);
    for (int64_t i = 0; i < b * s; i++) {
        mask->data[i] = i >= (b - 1) * s && (i % s) % 5 == 3 ? 0.0f : 1.0f;
    }
    mr_test_fill_uniform(q, -1, 1, 150);
    mr_test_fill_uniform(k, -1, 1, 151);
    mr_test_fill_uniform(v, -1, 1, 152);
    mr_tensor *inputs[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        mr_tensor_set_requires_grad(inputs[i], true);
    }
    int64_t count = b * h * t * d;
    float *seed = malloc((size_t)count * sizeof *seed);
    for (int64_t i = 0; i < count; i++) {
        seed[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    }

    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *fused = mr_tensor_attention(ctx, q, k, v, mask, 0.0f, MR_SOFTMAX_CAUSAL);
    CHECK_STATUS(mr_tensor_backward(ctx, fused, seed), MR_OK);
    float *fused_out = malloc((size_t)count * sizeof *fused_out);
    memcpy(fused_out, fused->data, (size_t)count * sizeof *fused_out);
    float *fused_grads[3];
    for (int i = 0; i < 3; i++) {
        int64_t n = mr_tensor_numel(inputs[i]);
        fused_grads[i] = malloc((size_t)n * sizeof(float));
        memcpy(fused_grads[i], inputs[i]->grad, (size_t)n * sizeof(float));
        mr_tensor_zero_grad(inputs[i]);
    }
    mr_ctx_reset(ctx);

    int64_t ms4[4] = {b, 1, 1, s};
    mr_tensor *scores = mr_tensor_scale(ctx, mr_tensor_matmul(ctx, q, k, MR_MATMUL_TRANS_B),
                                        1.0f / sqrtf((float)d));
    mr_tensor *mask4 = mr_tensor_reshape(ctx, mask, 4, ms4);
    mr_tensor *probs = mr_tensor_softmax(ctx, scores, mask4, MR_SOFTMAX_CAUSAL);
    mr_tensor *separate = mr_tensor_matmul(ctx, probs, v, 0);
    CHECK_STATUS(mr_tensor_backward(ctx, separate, seed), MR_OK);
    CHECK_ARRAY_NEAR(separate->data, fused_out, count, 1e-6, 1e-5);
    for (int i = 0; i < 3; i++) {
        CHECK_ARRAY_NEAR(inputs[i]->grad, fused_grads[i], mr_tensor_numel(inputs[i]), 1e-6,
                         1e-5);
        free(fused_grads[i]);
    }
    free(fused_out);
    free(seed);
    mr_ctx_free(ctx);
    mr_ctx_free(params);
}

/*
 * Head sizes of 16 and more run the kernels' 16-float blocks, and key
 * counts above 16 their partial last block of scores. D = 40 has two
 * whole blocks and a tail of 8; D = 64 has whole blocks only.
 */
static void attention_wide_heads_match_separate_ops(void) {
    compare_with_separate_ops(2, 2, 37, 37, 40);
    compare_with_separate_ops(2, 3, 20, 33, 64);
    compare_with_separate_ops(1, 2, 17, 16, 16);
}

typedef struct attention_build {
    float scale;
    int flags;
    bool use_mask;
    bool strided; /* q, k, v given as [B, T, H, D] and transposed */
} attention_build;

/* in[0..2] = q, k, v; in[3] = key mask (no gradient). */
static mr_tensor *build_attention(mr_ctx *ctx, mr_tensor **in, void *user) {
    attention_build *c = user;
    mr_tensor *q = in[0], *k = in[1], *v = in[2];
    if (c->strided) {
        q = mr_tensor_transpose(ctx, q, 1, 2);
        k = mr_tensor_transpose(ctx, k, 1, 2);
        v = mr_tensor_transpose(ctx, v, 1, 2);
    }
    return mr_tensor_attention(ctx, q, k, v, c->use_mask ? in[3] : NULL, c->scale, c->flags);
}

static void attention_gradients(void) {
    struct {
        int64_t b, hq, hkv, t, s, d;
        attention_build build;
        float mask[2 * 7];
    } cases[] = {
        /* Hq = 4 over Hkv = 2, odd T, S and D. */
        {1, 4, 2, 3, 5, 3, {0.0f, 0, false, false}, {0}},
        /* Hq = 4 over one kv head, causal with T < S, padding mask. */
        {2, 4, 1, 3, 5, 5, {0.7f, MR_SOFTMAX_CAUSAL, true, false},
         {1, 1, 0, 1, 1, 0, 1, 1, 1, 1}},
        /* Causal with T > S and a mask: query 0 sees no key. */
        {1, 2, 2, 4, 3, 3, {0.0f, MR_SOFTMAX_CAUSAL, true, false}, {1, 0, 1}},
        /* Strided q, k, v views with grouped heads. */
        {2, 4, 2, 3, 7, 4, {0.0f, MR_SOFTMAX_CAUSAL, true, true},
         {1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_ctx *params = mr_ctx_create(0);
        int64_t b = cases[i].b, t = cases[i].t, s = cases[i].s, d = cases[i].d;
        bool strided = cases[i].build.strided;
        int64_t qs[4] = {b, cases[i].hq, t, d}, ks[4] = {b, cases[i].hkv, s, d};
        if (strided) {
            qs[1] = t;
            qs[2] = cases[i].hq;
            ks[1] = s;
            ks[2] = cases[i].hkv;
        }
        int64_t ms[2] = {b, s};
        mr_tensor *in[4] = {mr_tensor_new(params, MR_F32, 4, qs),
                            mr_tensor_new(params, MR_F32, 4, ks),
                            mr_tensor_new(params, MR_F32, 4, ks),
                            mr_tensor_from_f32(params, 2, ms, cases[i].mask)};
        for (int j = 0; j < 3; j++) {
            mr_test_fill_uniform(in[j], -1.5f, 1.5f, 110 + 10 * i + j);
            mr_tensor_set_requires_grad(in[j], true);
        }
        char label[32];
        snprintf(label, sizeof label, "attention case %zu", i);
        CHECK_INT_EQ(mr_gradcheck(label, build_attention, in, 4, &cases[i].build, NULL), 0);
        mr_ctx_free(params);
    }
}

/* Finite differences with grouped heads, D = 40, causal masking with
 * T < S and a padding mask. */
static void attention_wide_heads_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t b = 2, t = 19, s = 21, d = 40;
    int64_t qs[4] = {b, 4, t, d}, ks[4] = {b, 2, s, d}, ms[2] = {b, s};
    mr_tensor *in[4] = {mr_tensor_new(params, MR_F32, 4, qs),
                        mr_tensor_new(params, MR_F32, 4, ks),
                        mr_tensor_new(params, MR_F32, 4, ks),
                        mr_tensor_new(params, MR_F32, 2, ms)};
    for (int64_t i = 0; i < b * s; i++) {
        in[3]->data[i] = i % 7 == 2 ? 0.0f : 1.0f;
    }
    for (int j = 0; j < 3; j++) {
        mr_test_fill_uniform(in[j], -1.5f, 1.5f, 160 + j);
        mr_tensor_set_requires_grad(in[j], true);
    }
    attention_build build = {0.0f, MR_SOFTMAX_CAUSAL, true, false};
    mr_gradcheck_options options = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2,
                                    .max_elements = 400};
    CHECK_INT_EQ(mr_gradcheck("wide heads", build_attention, in, 4, &build, &options), 0);
    mr_ctx_free(params);
}

/* A masked key adds nothing, even when its key and value are NaN: the
 * output and every gradient stay finite. */
static void attention_masked_nan_key_adds_nothing(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t t = 5, s = 20, d = 32;
    mr_tensor *q = mr_tensor_new4d(ctx, MR_F32, 1, 2, t, d);
    mr_tensor *k = mr_tensor_new4d(ctx, MR_F32, 1, 2, s, d);
    mr_tensor *v = mr_tensor_new4d(ctx, MR_F32, 1, 2, s, d);
    mr_tensor *mask = mr_tensor_new2d(ctx, MR_F32, 1, s);
    mr_test_fill_uniform(q, -1, 1, 170);
    mr_test_fill_uniform(k, -1, 1, 171);
    mr_test_fill_uniform(v, -1, 1, 172);
    for (int64_t j = 0; j < s; j++) {
        mask->data[j] = j == 6 ? 0.0f : 1.0f;
    }
    for (int64_t h = 0; h < 2; h++) {
        for (int64_t c = 0; c < d; c++) {
            k->data[(h * s + 6) * d + c] = NAN;
            v->data[(h * s + 6) * d + c] = NAN;
        }
    }
    mr_tensor_set_requires_grad(q, true);
    mr_tensor_set_requires_grad(v, true);
    mr_tensor *out = mr_tensor_attention(ctx, q, k, v, mask, 0.0f, 0);
    CHECK_CTX_OK(ctx);
    if (out == NULL) {
        mr_ctx_free(ctx);
        return;
    }
    int64_t count = mr_tensor_numel(out);
    float *seed = malloc((size_t)count * sizeof *seed);
    for (int64_t i = 0; i < count; i++) {
        seed[i] = 1.0f;
    }
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);

    int nonfinite_out = 0, nonfinite_dq = 0, nonfinite_dv = 0;
    for (int64_t i = 0; i < count; i++) {
        nonfinite_out += !isfinite(out->data[i]);
        nonfinite_dq += !isfinite(q->grad[i]);
    }
    for (int64_t i = 0; i < mr_tensor_numel(v); i++) {
        nonfinite_dv += !isfinite(v->grad[i]);
    }
    CHECK_INT_EQ(nonfinite_out, 0);
    CHECK_INT_EQ(nonfinite_dq, 0);
    CHECK_INT_EQ(nonfinite_dv, 0);
    free(seed);
    mr_ctx_free(ctx);
}

static void attention_hidden_query_gives_zeros(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    /* T = 3 > S = 2 with causal masking: query 0 sees j <= -1, nothing. */
    mr_tensor *q = mr_tensor_new4d(ctx, MR_F32, 1, 2, 3, 4);
    mr_tensor *k = mr_tensor_new4d(ctx, MR_F32, 1, 1, 2, 4);
    mr_tensor *v = mr_tensor_new4d(ctx, MR_F32, 1, 1, 2, 4);
    mr_test_fill_uniform(q, -1, 1, 120);
    mr_test_fill_uniform(k, -1, 1, 121);
    mr_test_fill_uniform(v, -1, 1, 122);
    mr_tensor_set_requires_grad(q, true);
    mr_tensor_set_requires_grad(k, true);
    mr_tensor_set_requires_grad(v, true);
    mr_tensor *out = mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, MR_SOFTMAX_CAUSAL);
    CHECK_CTX_OK(ctx);

    float zeros[4] = {0, 0, 0, 0};
    for (int h = 0; h < 2; h++) {
        CHECK_ARRAY_NEAR(out->data + h * 12, zeros, 4, 0, 0);
        /* Query 1 sees key 0 only, so it outputs v[0]. */
        CHECK_ARRAY_NEAR(out->data + h * 12 + 4, v->data, 4, 1e-7, 0);
    }

    float seed[24];
    for (int i = 0; i < 24; i++) {
        seed[i] = 1.0f;
    }
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);
    int nonfinite = 0;
    for (int i = 0; i < 24; i++) {
        nonfinite += !isfinite(q->grad[i]);
    }
    for (int i = 0; i < 8; i++) {
        nonfinite += !isfinite(k->grad[i]) + !isfinite(v->grad[i]);
    }
    CHECK_INT_EQ(nonfinite, 0);
    CHECK_ARRAY_NEAR(q->grad, zeros, 4, 0, 0);
    CHECK_ARRAY_NEAR(q->grad + 12, zeros, 4, 0, 0);
    mr_ctx_free(ctx);
}

/* Forward without recording uses per-thread scratch rows; it must give
 * the same values as the recording path. */
static void attention_inference_matches_training(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *q = mr_tensor_new4d(ctx, MR_F32, 2, 4, 5, 8);
    mr_tensor *k = mr_tensor_new4d(ctx, MR_F32, 2, 2, 9, 8);
    mr_tensor *v = mr_tensor_new4d(ctx, MR_F32, 2, 2, 9, 8);
    mr_test_fill_uniform(q, -1, 1, 130);
    mr_test_fill_uniform(k, -1, 1, 131);
    mr_test_fill_uniform(v, -1, 1, 132);
    mr_tensor_set_requires_grad(q, true);
    mr_tensor *recorded = mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, MR_SOFTMAX_CAUSAL);
    CHECK(mr_tensor_requires_grad(recorded));

    mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *inferred = mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, MR_SOFTMAX_CAUSAL);
    CHECK(!mr_tensor_requires_grad(inferred));
    CHECK_CTX_OK(ctx);
    CHECK_ARRAY_NEAR(inferred->data, recorded->data, mr_tensor_numel(q), 0, 0);
    mr_ctx_free(ctx);
}

/* Output and gradients are bit-identical on 1 and 3 threads. */
static void attention_same_on_any_thread_count(void) {
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *q = mr_tensor_new4d(params, MR_F32, 2, 4, 6, 8);
    mr_tensor *k = mr_tensor_new4d(params, MR_F32, 2, 2, 6, 8);
    mr_tensor *v = mr_tensor_new4d(params, MR_F32, 2, 2, 6, 8);
    mr_tensor *inputs[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        mr_test_fill_uniform(inputs[i], -1, 1, 140 + i);
        mr_tensor_set_requires_grad(inputs[i], true);
    }
    int64_t count = mr_tensor_numel(q);
    float *seed = malloc((size_t)count * sizeof *seed);
    for (int64_t i = 0; i < count; i++) {
        seed[i] = (float)(i % 13) / 13.0f - 0.4f;
    }

    float *results[2][4];
    int thread_counts[2] = {1, 3};
    int previous = mr_threads_get();
    for (int run = 0; run < 2; run++) {
        mr_threads_set(thread_counts[run]);
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *out = mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, MR_SOFTMAX_CAUSAL);
        CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);
        results[run][0] = malloc((size_t)count * sizeof(float));
        memcpy(results[run][0], out->data, (size_t)count * sizeof(float));
        for (int i = 0; i < 3; i++) {
            int64_t n = mr_tensor_numel(inputs[i]);
            results[run][i + 1] = malloc((size_t)n * sizeof(float));
            memcpy(results[run][i + 1], inputs[i]->grad, (size_t)n * sizeof(float));
            mr_tensor_zero_grad(inputs[i]);
        }
        mr_ctx_free(ctx);
    }
    mr_threads_set(previous);

    CHECK(memcmp(results[0][0], results[1][0], (size_t)count * sizeof(float)) == 0);
    for (int i = 0; i < 3; i++) {
        size_t bytes = (size_t)mr_tensor_numel(inputs[i]) * sizeof(float);
        CHECK(memcmp(results[0][i + 1], results[1][i + 1], bytes) == 0);
    }
    for (int run = 0; run < 2; run++) {
        for (int i = 0; i < 4; i++) {
            free(results[run][i]);
        }
    }
    free(seed);
    mr_ctx_free(params);
}

static void attention_rejects_bad_arguments(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *q = mr_tensor_new4d(ctx, MR_F32, 1, 3, 4, 8);
    mr_tensor *k = mr_tensor_new4d(ctx, MR_F32, 1, 2, 5, 8);
    mr_tensor *v = mr_tensor_new4d(ctx, MR_F32, 1, 2, 5, 8);
    CHECK(mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, 0) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "multiple of key/value heads") != NULL);
    mr_ctx_reset(ctx);

    q = mr_tensor_new4d(ctx, MR_F32, 1, 2, 4, 8);
    k = mr_tensor_new4d(ctx, MR_F32, 1, 2, 5, 8);
    v = mr_tensor_new4d(ctx, MR_F32, 1, 2, 5, 8);
    mr_tensor *mask = mr_tensor_new2d(ctx, MR_F32, 1, 4);
    CHECK(mr_tensor_attention(ctx, q, k, v, mask, 0.0f, 0) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "key_mask must be [B, S] = [1, 5]") != NULL);
    mr_ctx_reset(ctx);

    q = mr_tensor_new4d(ctx, MR_F32, 1, 2, 4, 8);
    k = mr_tensor_new4d(ctx, MR_F32, 1, 2, 5, 6);
    v = mr_tensor_new4d(ctx, MR_F32, 1, 2, 5, 6);
    CHECK(mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, 0) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "head size") != NULL);
    mr_ctx_reset(ctx);

    q = mr_tensor_new3d(ctx, MR_F32, 2, 4, 8);
    CHECK(mr_tensor_attention(ctx, q, q, q, NULL, 0.0f, 0) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "must be 4-D") != NULL);
    mr_ctx_reset(ctx);

    q = mr_tensor_new4d(ctx, MR_F32, 1, 1, 2, 2);
    CHECK(mr_tensor_attention(ctx, q, q, q, NULL, NAN, 0) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(attention_matches_torch);
    MR_RUN(attention_matches_separate_ops);
    MR_RUN(attention_gradients);
    MR_RUN(attention_wide_heads_match_separate_ops);
    MR_RUN(attention_wide_heads_gradients);
    MR_RUN(attention_masked_nan_key_adds_nothing);
    MR_RUN(attention_hidden_query_gives_zeros);
    MR_RUN(attention_inference_matches_training);
    MR_RUN(attention_same_on_any_thread_count);
    MR_RUN(attention_rejects_bad_arguments);
    return mr_test_finish();
}
