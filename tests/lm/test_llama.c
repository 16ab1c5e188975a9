/*
 * Llama model tests: config checks, the weight list, initialisation, the
 * training path's logits, loss and gradients against the PyTorch model of
 * tests/fixtures/torch_llama.py, a finite-difference check of the loss,
 * KV-cache inference against the training path, quantised inference, and
 * input errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "multiround/llama.h"
#include "test.h"

static const char *fixture_cases[] = {"halves_bias_untied", "adjacent_tied"};

/* The fixture's model shapes, with the case's rope layout, bias and tying. */
static mr_llama_config fixture_config(mr_fixture *fixture, const char *name) {
    mr_llama_config config = {
        .vocab_size = (int)mr_fixture_number(fixture, name, "vocab_size", 0),
        .dim = (int)mr_fixture_number(fixture, name, "dim", 0),
        .layers = (int)mr_fixture_number(fixture, name, "layers", 0),
        .heads = (int)mr_fixture_number(fixture, name, "heads", 0),
        .kv_heads = (int)mr_fixture_number(fixture, name, "kv_heads", 0),
        .head_dim = (int)mr_fixture_number(fixture, name, "head_dim", 0),
        .ffn_dim = (int)mr_fixture_number(fixture, name, "ffn_dim", 0),
        .context_length = (int)mr_fixture_number(fixture, name, "context_length", 0),
        .rope_base = (float)mr_fixture_number(fixture, name, "rope_base", 0),
        .rope_layout = mr_fixture_number(fixture, name, "adjacent", 0) != 0 ? MR_ROPE_ADJACENT
                                                                             : MR_ROPE_HALVES,
        .rms_eps = (float)mr_fixture_number(fixture, name, "rms_eps", 0),
        .qkv_bias = mr_fixture_number(fixture, name, "qkv_bias", 0) != 0,
        .tied_output = mr_fixture_number(fixture, name, "tied_output", 0) != 0,
    };
    return config;
}

/* Creates the model of a fixture case with PyTorch's weights copied in. */
static mr_llama *fixture_model(mr_fixture *fixture, mr_ctx *data, const char *name) {
    mr_llama_config config = fixture_config(fixture, name);
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 1, &err);
    CHECK(model != NULL);
    if (model == NULL) {
        return NULL;
    }
    for (int i = 0; i < mr_llama_weight_count(model); i++) {
        const mr_llama_weight *w = mr_llama_weight_at(model, i);
        mr_tensor *values = mr_fixture_tensor(fixture, data, name, w->name);
        if (values == NULL) {
            continue; /* the fixture loader reported the missing tensor */
        }
        CHECK(mr_tensor_same_shape(values, w->param));
        if (mr_tensor_same_shape(values, w->param)) {
            mr_tensor_copy(w->param, values);
        }
    }
    return model;
}

/* A small model with both kinds of head grouping at once: 6 query heads
 * over 2 kv heads, head width 8 unlike dim / heads. */
static mr_llama_config odd_config(mr_rope_layout layout, bool bias, bool tied) {
    mr_llama_config config = {.vocab_size = 29, .dim = 24, .layers = 3, .heads = 6,
                              .kv_heads = 2, .head_dim = 8, .ffn_dim = 40,
                              .context_length = 80, .rope_base = 500.0f,
                              .rope_layout = layout, .rms_eps = 1e-6f, .qkv_bias = bias,
                              .tied_output = tied};
    return config;
}

/* Scales every matrix of a fresh model so that its logits vary by O(1). */
static void widen_weights(mr_llama *model, float factor) {
    for (int i = 0; i < mr_llama_weight_count(model); i++) {
        const mr_llama_weight *w = mr_llama_weight_at(model, i);
        if (w->n_dims == 2) {
            int64_t n = mr_tensor_numel(w->param);
            for (int64_t j = 0; j < n; j++) {
                w->param->data[j] *= factor;
            }
        }
    }
}

/* Logits [B, T, V] of the training path, copied out (NULL on error). */
static float *training_logits(mr_llama *model, const int32_t *tokens, int batch, int length) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_ctx_set_grad_enabled(ctx, false);
    int64_t shape[2] = {batch, length};
    mr_tensor *logits = mr_llama_logits(model, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens));
    CHECK_CTX_OK(ctx);
    float *copy = NULL;
    if (logits != NULL) {
        int64_t n = mr_tensor_numel(logits);
        copy = malloc((size_t)n * sizeof *copy);
        memcpy(copy, logits->data, (size_t)n * sizeof *copy);
    }
    mr_ctx_free(ctx);
    return copy;
}

/* Largest |a - b| over n floats. */
static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double max = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        max = d > max ? d : max;
    }
    return max;
}

/* ------------------------------------------------------------------------ */

static void llama_config_rejects_invalid(void) {
    mr_llama_config good = odd_config(MR_ROPE_ADJACENT, false, false);
    mr_error err = {0};
    CHECK_STATUS(mr_llama_config_validate(&good, &err), MR_OK);

    struct {
        const char *field;
        mr_llama_config config;
    } cases[8];
    for (int i = 0; i < 8; i++) {
        cases[i].config = good;
    }
    cases[0].field = "vocab_size";
    cases[0].config.vocab_size = 0;
    cases[1].field = "kv_heads";
    cases[1].config.kv_heads = 4; /* 6 heads are not a multiple of 4 */
    cases[2].field = "head_dim";
    cases[2].config.head_dim = 7;
    cases[3].field = "rope_base";
    cases[3].config.rope_base = -1.0f;
    cases[4].field = "rms_eps";
    cases[4].config.rms_eps = 0.0f;
    cases[5].field = "rope_layout";
    cases[5].config.rope_layout = (mr_rope_layout)5;
    cases[6].field = "context_length";
    cases[6].config.context_length = -3;
    cases[7].field = "layers";
    cases[7].config.layers = 0;
    for (int i = 0; i < 8; i++) {
        mr_error_clear(&err);
        CHECK_STATUS(mr_llama_config_validate(&cases[i].config, &err), MR_ERR_INVALID_ARGUMENT);
        CHECK(strstr(err.message, cases[i].field) != NULL);
    }

    /* mr_llama_init passes the error on. */
    mr_error_clear(&err);
    CHECK(mr_llama_init(&cases[1].config, 1, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
}

static void llama_weight_list_layout(void) {
    mr_llama_config config = odd_config(MR_ROPE_HALVES, true, false);
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 5, &err);
    CHECK(model != NULL);
    if (model == NULL) {
        return;
    }

    /* token_embd, 12 per block with biases, output_norm, output. */
    CHECK_INT_EQ(mr_llama_weight_count(model), 1 + 3 * 12 + 2);
    const mr_llama_weight *q = mr_llama_weight_at(model, 2);
    CHECK(strcmp(q->name, "blk.0.attn_q.weight") == 0);
    CHECK_INT_EQ(q->ne[0], 24);
    CHECK_INT_EQ(q->ne[1], 6 * 8);
    CHECK_INT_EQ(q->param->shape[0], 48);
    CHECK_INT_EQ(q->param->shape[1], 24);
    CHECK(q->data == q->param->data);
    CHECK_INT_EQ(q->type, MR_QTYPE_F32);

    const mr_llama_weight *kb = mr_llama_find_weight(model, "blk.2.attn_k.bias");
    CHECK(kb != NULL);
    if (kb != NULL) {
        CHECK_INT_EQ(kb->n_dims, 1);
        CHECK_INT_EQ(kb->ne[0], 16);
    }
    const mr_llama_weight *down = mr_llama_find_weight(model, "blk.1.ffn_down.weight");
    CHECK(down != NULL);
    if (down != NULL) {
        CHECK_INT_EQ(down->ne[0], 40);
        CHECK_INT_EQ(down->ne[1], 24);
    }
    const mr_llama_weight *out = mr_llama_weight_at(model, mr_llama_weight_count(model) - 1);
    CHECK(strcmp(out->name, "output.weight") == 0);
    CHECK(mr_llama_weight_at(model, mr_llama_weight_count(model)) == NULL);

    /* The paramset contains every weight in the same order and names. */
    mr_paramset *params = mr_llama_params(model);
    CHECK(params != NULL);
    CHECK_INT_EQ(mr_paramset_count(params), mr_llama_weight_count(model));
    CHECK(mr_paramset_find(params, "blk.1.attn_output.weight") ==
          mr_llama_find_weight(model, "blk.1.attn_output.weight")->param);
    mr_llama_free(model);

    /* Tied and without biases: 9 per block and no output.weight. */
    config = odd_config(MR_ROPE_ADJACENT, false, true);
    model = mr_llama_init(&config, 5, &err);
    CHECK_INT_EQ(mr_llama_weight_count(model), 1 + 3 * 9 + 1);
    CHECK(mr_llama_find_weight(model, "output.weight") == NULL);
    CHECK(mr_llama_find_weight(model, "blk.0.attn_q.bias") == NULL);
    mr_llama_free(model);
}

static void llama_init_is_seeded(void) {
    mr_llama_config config = odd_config(MR_ROPE_HALVES, true, false);
    mr_error err = {0};
    mr_llama *a = mr_llama_init(&config, 42, &err);
    mr_llama *b = mr_llama_init(&config, 42, &err);
    mr_llama *c = mr_llama_init(&config, 43, &err);
    mr_tensor *flat_a = mr_paramset_flat(mr_llama_params(a));
    mr_tensor *flat_b = mr_paramset_flat(mr_llama_params(b));
    mr_tensor *flat_c = mr_paramset_flat(mr_llama_params(c));
    size_t bytes = (size_t)mr_tensor_numel(flat_a) * sizeof(float);
    CHECK(memcmp(flat_a->data, flat_b->data, bytes) == 0);
    CHECK(memcmp(flat_a->data, flat_c->data, bytes) != 0);

    /* Norm weights 1, biases 0, matrices with std 0.02. */
    CHECK_NEAR(mr_llama_find_weight(a, "blk.1.ffn_norm.weight")->param->data[3], 1.0, 0);
    CHECK_NEAR(mr_llama_find_weight(a, "blk.1.attn_v.bias")->param->data[3], 0.0, 0);
    const mr_tensor *embd = mr_llama_find_weight(a, "token_embd.weight")->param;
    double sum_sq = 0.0;
    int64_t n = mr_tensor_numel(embd);
    for (int64_t i = 0; i < n; i++) {
        sum_sq += (double)embd->data[i] * embd->data[i];
    }
    /* 696 draws: the sample std is within 10% of 0.02 with room to spare
     * (its standard error is about 2.7%). */
    CHECK_NEAR(sqrt(sum_sq / (double)n), 0.02, 0.002);
    mr_llama_free(a);
    mr_llama_free(b);
    mr_llama_free(c);
}

/*
 * Logits, loss and every gradient against PyTorch. The engine's kernels
 * and PyTorch's sum in different orders in float32. Measured differences
 * were at most 3.4e-6 for the logits, 4.8e-7 for the loss and 1.8e-6 for
 * gradients of magnitude up to 2.1. The tolerances (1e-4, 1e-5, and 2e-5
 * plus 1e-3 relative) leave 10x or more of margin and still catch a wrong
 * term, which moves values by 1e-2 or more.
 */
static void llama_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/llama.json");
    for (size_t c = 0; c < sizeof fixture_cases / sizeof fixture_cases[0]; c++) {
        const char *name = fixture_cases[c];
        mr_ctx *data = mr_ctx_create(0);
        mr_ctx *ctx = mr_ctx_create(0);
        mr_llama *model = fixture_model(fixture, data, name);
        mr_tensor *tokens = mr_fixture_tensor_i32(fixture, data, name, "tokens");
        mr_tensor *targets = mr_fixture_tensor_i32(fixture, data, name, "targets");
        mr_tensor *mask = mr_fixture_tensor(fixture, data, name, "mask");
        mr_tensor *expected_logits = mr_fixture_tensor(fixture, data, name, "logits");
        mr_tensor *expected_loss = mr_fixture_tensor(fixture, data, name, "loss");
        if (model == NULL || tokens == NULL || expected_logits == NULL) {
            mr_ctx_free(ctx);
            mr_ctx_free(data);
            mr_llama_free(model);
            continue;
        }

        mr_tensor *logits = mr_llama_logits(model, ctx, tokens);
        CHECK_CTX_OK(ctx);
        CHECK(logits != NULL);
        if (logits != NULL) {
            CHECK(mr_tensor_same_shape(logits, expected_logits));
            CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits->data, expected_logits->data,
                                          mr_tensor_numel(logits), 1e-4, 0.0),
                         0);
        }

        mr_paramset_zero_grad(mr_llama_params(model));
        mr_tensor *loss = mr_llama_loss(model, ctx, tokens, targets, mask);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        CHECK_CTX_OK(ctx);
        if (loss != NULL) {
            CHECK_NEAR(loss->data[0], expected_loss->data[0], 1e-5);
        }

        for (int i = 0; i < mr_llama_weight_count(model); i++) {
            const mr_llama_weight *w = mr_llama_weight_at(model, i);
            char key[80];
            snprintf(key, sizeof key, "grad.%s", w->name);
            mr_tensor *expected = mr_fixture_tensor(fixture, data, name, key);
            CHECK(w->param->grad != NULL);
            if (expected == NULL || w->param->grad == NULL) {
                continue;
            }
            int bad = CHECK_ARRAY_NEAR(w->param->grad, expected->data,
                                       mr_tensor_numel(expected), 2e-5, 1e-3);
            if (bad != 0) {
                mr_test_fail(__FILE__, __LINE__, "%s: gradient of %s differs", name, w->name);
            }
        }
        mr_ctx_free(ctx);
        mr_ctx_free(data);
        mr_llama_free(model);
    }
    mr_fixture_free(fixture);
}

/* The gradient check's loss: the model and batch travel in user. */
typedef struct loss_inputs {
    mr_llama *model;
    const int32_t *tokens;
    const int32_t *targets;
    int batch, length;
} loss_inputs;

static mr_tensor *build_loss(mr_ctx *ctx, mr_tensor **inputs, void *user) {
    (void)inputs; /* the parameters are the inputs; the model reads them */
    loss_inputs *in = user;
    int64_t shape[2] = {in->batch, in->length};
    return mr_llama_loss(in->model, ctx, mr_tensor_from_i32(ctx, 2, shape, in->tokens),
                         mr_tensor_from_i32(ctx, 2, shape, in->targets), NULL);
}

/* Central differences of the loss against backward, on a model whose
 * head width differs from dim / heads. Default tolerances (1e-3 absolute,
 * 1e-2 relative) suit float32 differences with a step of 1e-3. */
static void llama_loss_gradcheck(void) {
    const bool variants[2][3] = {{true, true, false}, {false, false, true}};
    for (int v = 0; v < 2; v++) {
        mr_llama_config config = odd_config(variants[v][0] ? MR_ROPE_HALVES : MR_ROPE_ADJACENT,
                                            variants[v][1], variants[v][2]);
        config.layers = 2;
        mr_error err = {0};
        mr_llama *model = mr_llama_init(&config, 77 + (uint64_t)v, &err);
        widen_weights(model, 15.0f);
        int32_t tokens[2 * 5] = {3, 17, 28, 0, 9, 11, 11, 4, 22, 1};
        int32_t targets[2 * 5] = {17, 28, 0, 9, -1, 11, 4, 22, 1, 6};
        loss_inputs in = {model, tokens, targets, 2, 5};

        const char *names[] = {"token_embd.weight",  "blk.0.attn_q.weight",
                               "blk.0.attn_k.weight", "blk.1.attn_v.weight",
                               "blk.0.attn_output.weight", "blk.1.ffn_gate.weight",
                               "blk.1.ffn_down.weight", "blk.0.attn_norm.weight",
                               "output_norm.weight", variants[v][1] ? "blk.1.attn_k.bias"
                                                                    : "blk.1.ffn_up.weight"};
        mr_tensor *inputs[10];
        for (int i = 0; i < 10; i++) {
            inputs[i] = mr_llama_find_weight(model, names[i])->param;
        }
        mr_gradcheck_options options = {.eps = 1e-3, .max_elements = 10};
        CHECK_INT_EQ(mr_gradcheck(variants[v][0] ? "halves, bias" : "adjacent, tied",
                                  build_loss, inputs, 10, &in, &options),
                     0);
        mr_llama_free(model);
    }
}

/*
 * Inference on the fixture models against PyTorch's logits: the whole
 * sequence as one batch, token by token, and a batch followed by single
 * tokens. Measured differences were at most 3.1e-6; the tolerance is that
 * of the training path.
 */
static void llama_eval_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/llama.json");
    for (size_t c = 0; c < sizeof fixture_cases / sizeof fixture_cases[0]; c++) {
        const char *name = fixture_cases[c];
        mr_ctx *data = mr_ctx_create(0);
        mr_llama *model = fixture_model(fixture, data, name);
        mr_tensor *tokens = mr_fixture_tensor_i32(fixture, data, name, "tokens");
        mr_tensor *expected = mr_fixture_tensor(fixture, data, name, "logits");
        if (model == NULL || tokens == NULL || expected == NULL) {
            mr_ctx_free(data);
            mr_llama_free(model);
            continue;
        }
        int vocab = mr_llama_get_config(model)->vocab_size;
        int length = (int)tokens->shape[1];
        mr_error err = {0};
        mr_llama_cache *cache = mr_llama_cache_create(model, 16, &err);
        float *logits = malloc((size_t)length * (size_t)vocab * sizeof *logits);

        for (int b = 0; b < (int)tokens->shape[0]; b++) {
            const int32_t *seq = tokens->idata + b * length;
            const float *want = expected->data + (int64_t)b * length * vocab;

            /* One batch of all tokens. */
            CHECK_STATUS(mr_llama_eval(model, cache, seq, length, 0, logits,
                                       MR_LLAMA_LOGITS_ALL, &err),
                         MR_OK);
            CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits, want, (int64_t)length * vocab, 1e-4, 0.0), 0);

            /* One token at a time, last logits only. */
            for (int t = 0; t < length; t++) {
                CHECK_STATUS(mr_llama_eval(model, cache, seq + t, 1, t, logits,
                                           MR_LLAMA_LOGITS_LAST, &err),
                             MR_OK);
                CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits, want + (int64_t)t * vocab, vocab, 1e-4, 0.0),
                             0);
            }

            /* A prompt of 4 without logits, then the rest one by one. */
            CHECK_STATUS(mr_llama_eval(model, cache, seq, 4, 0, NULL, MR_LLAMA_LOGITS_NONE, &err),
                         MR_OK);
            for (int t = 4; t < length; t++) {
                CHECK_STATUS(mr_llama_eval(model, cache, seq + t, 1, t, logits,
                                           MR_LLAMA_LOGITS_LAST, &err),
                             MR_OK);
                CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits, want + (int64_t)t * vocab, vocab, 1e-4, 0.0),
                             0);
            }
        }
        free(logits);
        mr_llama_cache_free(cache);
        mr_ctx_free(data);
        mr_llama_free(model);
    }
    mr_fixture_free(fixture);
}

/*
 * Inference against the training path on random models of odd shapes, over
 * a sequence of 70 tokens: longer than one chunk of 64, so the second
 * chunk attends to keys the first one stored. Measured differences were at
 * most 3.3e-6.
 */
static void llama_eval_matches_training(void) {
    enum { LENGTH = 70 };
    for (int v = 0; v < 4; v++) {
        mr_llama_config config = odd_config(v % 2 == 0 ? MR_ROPE_ADJACENT : MR_ROPE_HALVES,
                                            v >= 2, v % 2 == 1);
        mr_error err = {0};
        mr_llama *model = mr_llama_init(&config, 100 + (uint64_t)v, &err);
        widen_weights(model, 10.0f);
        int32_t tokens[LENGTH];
        for (int t = 0; t < LENGTH; t++) {
            tokens[t] = (t * 7 + v) % config.vocab_size;
        }
        float *want = training_logits(model, tokens, 1, LENGTH);
        float *logits = malloc((size_t)LENGTH * (size_t)config.vocab_size * sizeof *logits);
        mr_llama_cache *cache = mr_llama_cache_create(model, LENGTH, &err);
        CHECK(cache != NULL);
        CHECK(want != NULL);
        if (cache != NULL && want != NULL) {
            CHECK_STATUS(mr_llama_eval(model, cache, tokens, LENGTH, 0, logits,
                                       MR_LLAMA_LOGITS_ALL, &err),
                         MR_OK);
            CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits, want, (int64_t)LENGTH * config.vocab_size,
                                          1e-4, 1e-4),
                         0);

            /* The last 6 tokens one at a time after a prompt of 64. */
            CHECK_STATUS(mr_llama_eval(model, cache, tokens, 64, 0, NULL, MR_LLAMA_LOGITS_NONE,
                                       &err),
                         MR_OK);
            for (int t = 64; t < LENGTH; t++) {
                CHECK_STATUS(mr_llama_eval(model, cache, tokens + t, 1, t, logits,
                                           MR_LLAMA_LOGITS_LAST, &err),
                             MR_OK);
                CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits, want + (int64_t)t * config.vocab_size,
                                              config.vocab_size, 1e-4, 1e-4),
                             0);
            }
        }
        free(want);
        free(logits);
        mr_llama_cache_free(cache);
        mr_llama_free(model);
    }
}

static void llama_eval_is_repeatable(void) {
    mr_llama_config config = odd_config(MR_ROPE_HALVES, true, false);
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 9, &err);
    widen_weights(model, 10.0f);
    int32_t tokens[12] = {1, 2, 3, 5, 8, 13, 21, 5, 26, 2, 28, 0};
    float first[12 * 29], second[12 * 29];
    mr_llama_cache *cache = mr_llama_cache_create(model, 12, &err);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, 12, 0, first, MR_LLAMA_LOGITS_ALL, &err),
                 MR_OK);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, 12, 0, second, MR_LLAMA_LOGITS_ALL, &err),
                 MR_OK);
    CHECK(memcmp(first, second, sizeof first) == 0);
    mr_llama_cache_free(cache);
    mr_llama_free(model);
}

/* Evaluates tokens one call per token, writing each token's logits into
 * logits [n, V]. */
static void eval_one_by_one(const mr_llama *model, mr_llama_cache *cache, const int32_t *tokens,
                            int n, float *logits) {
    int vocab = mr_llama_get_config(model)->vocab_size;
    mr_error err = {0};
    for (int t = 0; t < n; t++) {
        CHECK_STATUS(mr_llama_eval(model, cache, tokens + t, 1, t, logits + (int64_t)t * vocab,
                                   MR_LLAMA_LOGITS_LAST, &err),
                     MR_OK);
    }
}

/*
 * Quantised inference: the batched path (rows decoded for BLAS) and the
 * single-token path on float x (mr_qmatvec) read the same stored values,
 * so they agree to float32 rounding (1e-4). Against F32 weights, the logits of
 * this test's model and seed spread over about 5.6 and moved by at most
 * 3.6e-3 (F16), 0.107 (Q8_0) and 1.11 (Q4_0). The bounds are about twice
 * those. The order F16 < Q8_0 < Q4_0 follows the step sizes: 2^-11
 * relative, max/127 and max/8 per block of 32.
 */
static void llama_quantized_eval_is_close(void) {
    enum { LENGTH = 10 };
    const mr_qtype types[3] = {MR_QTYPE_F16, MR_QTYPE_Q8_0, MR_QTYPE_Q4_0};
    const double bounds[3] = {8e-3, 0.25, 2.5};
    const double int8_bounds[3] = {1e-4, 0.25, 0.25};
    mr_llama_config config = odd_config(MR_ROPE_ADJACENT, true, false);
    config.dim = 32; /* rows must be multiples of the block size 32 */
    config.ffn_dim = 64;
    config.heads = 4;
    config.head_dim = 8;
    int32_t tokens[LENGTH] = {4, 8, 15, 16, 23, 28, 3, 1, 0, 14};
    int64_t n = (int64_t)LENGTH * config.vocab_size;
    mr_error err = {0};

    mr_llama *reference = mr_llama_init(&config, 3, &err);
    widen_weights(reference, 10.0f);
    float *want = training_logits(reference, tokens, 1, LENGTH);
    float *batched = malloc((size_t)n * sizeof *batched);
    float *single = malloc((size_t)n * sizeof *single);
    float *int8_single = malloc((size_t)n * sizeof *int8_single);
    for (int k = 0; k < 3; k++) {
        mr_llama *model = mr_llama_init(&config, 3, &err);
        widen_weights(model, 10.0f);
        CHECK_STATUS(mr_llama_quantize(model, types[k], &err), MR_OK);
        CHECK(mr_llama_params(model) == NULL);
        CHECK_INT_EQ(mr_llama_find_weight(model, "blk.1.ffn_up.weight")->type, types[k]);
        CHECK_INT_EQ(mr_llama_find_weight(model, "blk.1.ffn_norm.weight")->type, MR_QTYPE_F32);
        mr_llama_cache *cache = mr_llama_cache_create(model, LENGTH, &err);

        CHECK_STATUS(mr_llama_eval(model, cache, tokens, LENGTH, 0, batched,
                                   MR_LLAMA_LOGITS_ALL, &err),
                     MR_OK);
        CHECK(mr_llama_int8_decode(model));
        mr_llama_set_int8_decode(model, false);
        CHECK(!mr_llama_int8_decode(model));
        eval_one_by_one(model, cache, tokens, LENGTH, single);
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(single, batched, n, 1e-4, 1e-4), 0);

        /* The integer path (the default) rounds x to int8 blocks. That
         * moved the Q8_0 and Q4_0 logits by at most 0.118 and 0.116 from
         * the batched path, about as far as Q8_0 weights move them from
         * F32. F16 weights stay on the float path. */
        mr_llama_set_int8_decode(model, true);
        eval_one_by_one(model, cache, tokens, LENGTH, int8_single);
        double int8_moved = max_abs_diff(int8_single, batched, n);
        CHECK(int8_moved <= int8_bounds[k]);
        if (types[k] == MR_QTYPE_F16) {
            CHECK(memcmp(int8_single, single, (size_t)n * sizeof *single) == 0);
        } else {
            CHECK(int8_moved > 1e-4);
        }
        double moved = max_abs_diff(batched, want, n);
        CHECK(moved <= bounds[k]);
        CHECK(moved > 0.0);
        mr_llama_cache_free(cache);

        /* Training on it again decodes the stored values into F32. */
        CHECK_STATUS(mr_llama_make_trainable(model, &err), MR_OK);
        const mr_llama_weight *up = mr_llama_find_weight(model, "blk.1.ffn_up.weight");
        CHECK(up->param != NULL);
        CHECK_INT_EQ(up->type, MR_QTYPE_F32);
        CHECK(up->param == NULL || up->data == up->param->data);
        float *retrained = training_logits(model, tokens, 1, LENGTH);
        CHECK(retrained != NULL);
        CHECK(retrained == NULL || max_abs_diff(retrained, want, n) <= bounds[k]);
        free(retrained);
        mr_llama_free(model);
    }
    free(want);
    free(batched);
    free(single);
    free(int8_single);
    mr_llama_free(reference);

    /* Rows of 24 cannot be stored in blocks of 32, so those matrices fall
     * back to F16 and 1-D weights stay F32. */
    mr_llama_config narrow = odd_config(MR_ROPE_ADJACENT, false, false);
    mr_llama *model = mr_llama_init(&narrow, 3, &err);
    CHECK_STATUS(mr_llama_quantize(model, MR_QTYPE_Q8_0, &err), MR_OK);
    CHECK_INT_EQ(mr_llama_find_weight(model, "token_embd.weight")->type, MR_QTYPE_F16);
    CHECK_INT_EQ(mr_llama_find_weight(model, "output_norm.weight")->type, MR_QTYPE_F32);
    mr_llama_free(model);
}

static void llama_eval_rejects_bad_input(void) {
    mr_llama_config config = odd_config(MR_ROPE_ADJACENT, false, false);
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 1, &err);
    float logits[29];
    int32_t tokens[3] = {1, 29, 2};

    CHECK(mr_llama_cache_create(model, 81, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(mr_llama_cache_create(model, 0, &err) == NULL);
    mr_llama_cache *cache = mr_llama_cache_create(model, 8, &err);
    CHECK_INT_EQ(mr_llama_cache_length(cache), 8);

    CHECK_STATUS(mr_llama_eval(model, cache, tokens, 3, 0, logits, MR_LLAMA_LOGITS_LAST, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "token 29") != NULL);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, 1, 8, logits, MR_LLAMA_LOGITS_LAST, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, 0, 0, logits, MR_LLAMA_LOGITS_LAST, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, 1, -1, logits, MR_LLAMA_LOGITS_LAST, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, 1, 0, NULL, MR_LLAMA_LOGITS_LAST, &err),
                 MR_ERR_INVALID_ARGUMENT);

    /* A cache of another model's shape. */
    mr_llama_config other = config;
    other.layers = 2;
    mr_llama *small = mr_llama_init(&other, 1, &err);
    CHECK_STATUS(mr_llama_eval(small, cache, tokens, 1, 0, logits, MR_LLAMA_LOGITS_LAST, &err),
                 MR_ERR_INVALID_ARGUMENT);
    mr_llama_free(small);
    mr_llama_cache_free(cache);
    mr_llama_free(model);
}

static void llama_loss_rejects_bad_input(void) {
    mr_llama_config config = odd_config(MR_ROPE_ADJACENT, false, false);
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 1, &err);
    mr_ctx *ctx = mr_ctx_create(0);
    int32_t ids[4] = {1, 2, 3, 4};
    int64_t shape[2] = {1, 4};
    int64_t wrong_shape[2] = {2, 2};

    /* Targets of another shape. */
    mr_tensor *loss = mr_llama_loss(model, ctx, mr_tensor_from_i32(ctx, 2, shape, ids),
                                    mr_tensor_from_i32(ctx, 2, wrong_shape, ids), NULL);
    CHECK(loss == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    mr_ctx_reset(ctx);

    /* Longer than the context. */
    int32_t many[81] = {0};
    int64_t long_shape[2] = {1, 81};
    CHECK(mr_llama_logits(model, ctx, mr_tensor_from_i32(ctx, 2, long_shape, many)) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    mr_ctx_reset(ctx);

    /* A mask that zeroes every position gives loss 0. */
    float zeros[4] = {0};
    loss = mr_llama_loss(model, ctx, mr_tensor_from_i32(ctx, 2, shape, ids),
                         mr_tensor_from_i32(ctx, 2, shape, ids),
                         mr_tensor_from_f32(ctx, 2, shape, zeros));
    CHECK_CTX_OK(ctx);
    CHECK(loss != NULL);
    CHECK(loss == NULL || loss->data[0] == 0.0f);
    mr_ctx_reset(ctx);

    /* A quantised model has no parameters to train. Every row width must
     * be a multiple of 32 for Q8_0. */
    config.dim = 32;
    config.ffn_dim = 64;
    config.heads = 4;
    mr_llama *quantised = mr_llama_init(&config, 1, &err);
    CHECK_STATUS(mr_llama_quantize(quantised, MR_QTYPE_Q8_0, &err), MR_OK);
    CHECK(mr_llama_logits(quantised, ctx, mr_tensor_from_i32(ctx, 2, shape, ids)) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_STATE);
    mr_llama_free(quantised);
    mr_ctx_free(ctx);
    mr_llama_free(model);
}

int main(void) {
    MR_RUN(llama_config_rejects_invalid);
    MR_RUN(llama_weight_list_layout);
    MR_RUN(llama_init_is_seeded);
    MR_RUN(llama_matches_torch);
    MR_RUN(llama_loss_gradcheck);
    MR_RUN(llama_eval_matches_torch);
    MR_RUN(llama_eval_matches_training);
    MR_RUN(llama_eval_is_repeatable);
    MR_RUN(llama_quantized_eval_is_close);
    MR_RUN(llama_eval_rejects_bad_input);
    MR_RUN(llama_loss_rejects_bad_input);
    return mr_test_finish();
}
