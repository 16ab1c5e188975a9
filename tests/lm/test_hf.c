/*
 * Hugging Face folders: the checkpoints that tests/fixtures/torch_hf.py
 * writes by hand (Llama with F32 and F16 tensors, Qwen2 in BF16 shards)
 * against the script's logits, round trips of random models through
 * folders, conversion between folders and GGUF files (stories260K with its
 * tokenizer keys included), and the settings the reader rejects. Files go
 * to a fresh folder under the system's temporary directory.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "hf_internal.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/safetensors.h"
#include "test.h"

#define STORIES_PATH "data/lm/stories260K.gguf"

static char folder[64];

/* Writes the path of name in the test folder into buf. */
static const char *temp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", folder, name);
    return buf;
}

/* A small model with 6 query heads over 2 key/value heads. */
static mr_llama_config small_config(mr_rope_layout layout, bool bias, bool tied) {
    mr_llama_config config = {.vocab_size = 33, .dim = 24, .layers = 2, .heads = 6,
                              .kv_heads = 2, .head_dim = 8, .ffn_dim = 40,
                              .context_length = 64, .rope_base = 500.0f,
                              .rope_layout = layout, .rms_eps = 1e-5f, .qkv_bias = bias,
                              .tied_output = tied};
    return config;
}

/* A random model whose matrices are 20x the default init and whose norms
 * and biases vary, so that every weight changes the logits. */
static mr_llama *random_model(const mr_llama_config *config, uint64_t seed) {
    mr_error err = {0};
    mr_llama *model = mr_llama_init(config, seed, &err);
    CHECK(model != NULL);
    for (int i = 0; model != NULL && i < mr_llama_weight_count(model); i++) {
        const mr_llama_weight *w = mr_llama_weight_at(model, i);
        int64_t n = mr_tensor_numel(w->param);
        for (int64_t j = 0; j < n; j++) {
            float *value = &w->param->data[j];
            *value = w->n_dims == 2 ? *value * 20.0f : *value + 0.05f * (float)((j + i) % 5);
        }
    }
    return model;
}

/* Logits [n, V] of tokens at positions 0..n-1 through the KV-cache path. */
static float *eval_logits(const mr_llama *model, const int32_t *tokens, int n) {
    mr_error err = {0};
    int vocab = mr_llama_get_config(model)->vocab_size;
    float *logits = calloc((size_t)n * (size_t)vocab, sizeof *logits);
    mr_llama_cache *cache = mr_llama_cache_create(model, n, &err);
    CHECK(cache != NULL);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, n, 0, logits, MR_LLAMA_LOGITS_ALL, &err),
                 MR_OK);
    mr_llama_cache_free(cache);
    return logits;
}

/* True when both models have the same config, weight types and bytes. */
static bool same_weights(const mr_llama *a, const mr_llama *b) {
    const mr_llama_config *ca = mr_llama_get_config(a), *cb = mr_llama_get_config(b);
    bool same_config = ca->vocab_size == cb->vocab_size && ca->dim == cb->dim &&
                       ca->layers == cb->layers && ca->heads == cb->heads &&
                       ca->kv_heads == cb->kv_heads && ca->head_dim == cb->head_dim &&
                       ca->ffn_dim == cb->ffn_dim && ca->context_length == cb->context_length &&
                       ca->rope_base == cb->rope_base && ca->rope_layout == cb->rope_layout &&
                       ca->rms_eps == cb->rms_eps && ca->qkv_bias == cb->qkv_bias &&
                       ca->tied_output == cb->tied_output;
    if (!same_config || mr_llama_weight_count(a) != mr_llama_weight_count(b)) {
        fprintf(stderr, "configs or weight counts differ\n");
        return false;
    }
    for (int i = 0; i < mr_llama_weight_count(a); i++) {
        const mr_llama_weight *wa = mr_llama_weight_at(a, i), *wb = mr_llama_weight_at(b, i);
        size_t bytes = mr_qtype_row_bytes(wa->type, wa->ne[0]) * (size_t)wa->ne[1];
        if (strcmp(wa->name, wb->name) != 0 || wa->type != wb->type ||
            wa->ne[0] != wb->ne[0] || wa->ne[1] != wb->ne[1] ||
            memcmp(wa->data, wb->data, bytes) != 0) {
            fprintf(stderr, "weight %s differs\n", wa->name);
            return false;
        }
    }
    return true;
}

/* Compares a loaded fixture folder's logits with the script's. */
static void check_fixture_logits(const char *case_name, const char *dir, double atol) {
    mr_fixture *fixture = mr_fixture_load("fixtures/hf.json");
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *tokens = mr_fixture_tensor_i32(fixture, ctx, case_name, "tokens");
    mr_tensor *expected = mr_fixture_tensor(fixture, ctx, case_name, "logits");
    mr_error err = {0};
    mr_llama *model = mr_llama_load_hf(dir, &err);
    if (model == NULL) {
        mr_test_fail(__FILE__, __LINE__, "loading %s failed: %s", dir, err.message);
    }
    if (model == NULL || tokens == NULL || expected == NULL) {
        mr_llama_free(model);
        mr_ctx_free(ctx);
        mr_fixture_free(fixture);
        return;
    }

    int batch = (int)tokens->shape[0], length = (int)tokens->shape[1];
    int vocab = mr_llama_get_config(model)->vocab_size;
    CHECK_INT_EQ(expected->shape[2], vocab);
    for (int b = 0; b < batch; b++) {
        float *logits = eval_logits(model, tokens->idata + b * length, length);
        CHECK_ARRAY_NEAR(logits, expected->data + (int64_t)b * length * vocab,
                         (int64_t)length * vocab, atol, 0.0);
        free(logits);
    }

    /* The training path reads the same weights after a copy to F32. */
    CHECK_STATUS(mr_llama_make_trainable(model, &err), MR_OK);
    mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *logits = mr_llama_logits(model, ctx, tokens);
    CHECK_CTX_OK(ctx);
    if (logits != NULL) {
        CHECK_ARRAY_NEAR(logits->data, expected->data, mr_tensor_numel(expected), atol, 0.0);
    }
    mr_llama_free(model);
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

/* ------------------------------------------------------------------------ */

static void hf_llama_fixture_matches_torch(void) {
    mr_error err = {0};
    mr_llama *model = mr_llama_load_hf("fixtures/hf_llama", &err);
    CHECK(model != NULL);
    if (model == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s", err.message);
        return;
    }
    const mr_llama_config *c = mr_llama_get_config(model);
    CHECK_INT_EQ(c->vocab_size, 40);
    CHECK_INT_EQ(c->head_dim, 6);
    CHECK_INT_EQ(c->kv_heads, 2);
    CHECK_INT_EQ(c->context_length, 64);
    CHECK_INT_EQ(c->rope_layout, MR_ROPE_ADJACENT);
    CHECK(!c->qkv_bias);
    CHECK(!c->tied_output);
    CHECK_NEAR(c->rope_base, 500.0, 0.0);
    CHECK_NEAR(c->rms_eps, 1e-5f, 0.0);
    CHECK_INT_EQ(mr_llama_find_weight(model, "blk.0.attn_q.weight")->type, MR_QTYPE_F32);
    CHECK_INT_EQ(mr_llama_find_weight(model, "blk.1.ffn_gate.weight")->type, MR_QTYPE_F16);
    mr_llama_free(model);

    /* Logits of O(1): float32 sums in another order than PyTorch's. */
    check_fixture_logits("hf_llama", "fixtures/hf_llama", 2e-5);
}

static void hf_qwen2_sharded_bf16_matches_torch(void) {
    mr_error err = {0};
    mr_llama *model = mr_llama_load_hf("fixtures/hf_qwen2", &err);
    CHECK(model != NULL);
    if (model == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s", err.message);
        return;
    }
    const mr_llama_config *c = mr_llama_get_config(model);
    CHECK_INT_EQ(c->rope_layout, MR_ROPE_HALVES);
    CHECK(c->qkv_bias);
    CHECK(c->tied_output);
    CHECK_INT_EQ(c->kv_heads, 1);
    CHECK_INT_EQ(c->context_length, 128);
    CHECK_INT_EQ(mr_llama_weight_at(model, 0)->type, MR_QTYPE_BF16);
    CHECK(mr_llama_find_weight(model, "output.weight") == NULL);
    mr_llama_free(model);

    check_fixture_logits("hf_qwen2", "fixtures/hf_qwen2", 2e-5);
}

static void hf_llama_rows_permuted_like_llama_cpp(void) {
    /* GGUF row 2i + s of each head is Hugging Face row s * D/2 + i. */
    CHECK_INT_EQ(hf_source_row(0, 6), 0);
    CHECK_INT_EQ(hf_source_row(1, 6), 3);
    CHECK_INT_EQ(hf_source_row(2, 6), 1);
    CHECK_INT_EQ(hf_source_row(5, 6), 5);
    CHECK_INT_EQ(hf_source_row(7, 6), 9);

    mr_error err = {0};
    mr_llama *model = mr_llama_load_hf("fixtures/hf_llama", &err);
    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open("fixtures/hf_llama/model.safetensors", &file, &err), MR_OK);
    if (model == NULL || file == NULL) {
        mr_llama_free(model);
        mr_safetensors_close(file);
        return;
    }
    const struct {
        const char *gguf, *hf;
        int64_t rows;
    } cases[] = {{"blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight", 24},
                 {"blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", 12},
                 {"blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", 12}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float hf[24 * 16];
        CHECK_STATUS(mr_safetensors_read_f32(file, cases[k].hf, hf, cases[k].rows * 16, &err),
                     MR_OK);
        const mr_llama_weight *w = mr_llama_find_weight(model, cases[k].gguf);
        const float *rows = w->data;
        bool permuted = strstr(cases[k].gguf, "attn_v") == NULL;
        int mismatches = 0;
        for (int64_t r = 0; r < cases[k].rows; r++) {
            int64_t from = permuted ? hf_source_row(r, 6) : r;
            mismatches += memcmp(rows + r * 16, hf + from * 16, 16 * sizeof(float)) != 0;
        }
        CHECK_INT_EQ(mismatches, 0);
    }
    mr_safetensors_close(file);
    mr_llama_free(model);
}

static void hf_round_trip_identical_logits(void) {
    const int32_t tokens[10] = {0, 32, 5, 5, 17, 3, 29, 12, 8, 1};
    const struct {
        const char *name;
        mr_llama_config config;
    } cases[] = {
        {"llama", small_config(MR_ROPE_ADJACENT, false, false)},
        {"llama_tied", small_config(MR_ROPE_ADJACENT, false, true)},
        {"qwen2", small_config(MR_ROPE_HALVES, true, true)},
        {"qwen2_untied", small_config(MR_ROPE_HALVES, true, false)},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mr_llama *saved = random_model(&cases[k].config, 40 + k);
        char dir[128];
        temp_path(dir, sizeof dir, cases[k].name);
        mr_error err = {0};
        CHECK_STATUS(mr_llama_save_hf(saved, dir, MR_QTYPE_F32, NULL, NULL, &err), MR_OK);
        mr_llama *loaded = mr_llama_load_hf(dir, &err);
        CHECK(loaded != NULL);
        if (saved == NULL || loaded == NULL) {
            mr_test_fail(__FILE__, __LINE__, "%s: %s", cases[k].name, err.message);
            mr_llama_free(saved);
            continue;
        }
        CHECK(same_weights(saved, loaded));
        float *before = eval_logits(saved, tokens, 10);
        float *after = eval_logits(loaded, tokens, 10);
        CHECK(memcmp(before, after, 10 * 33 * sizeof(float)) == 0);
        free(before);
        free(after);
        mr_llama_free(saved);
        mr_llama_free(loaded);
    }
}

static void hf_round_trip_other_layouts(void) {
    /* A split-half model without biases is written as Llama and comes back
     * with adjacent pairs; an adjacent-pair model with biases is written as
     * Qwen2 and comes back with split halves. The permuted dot products sum
     * in another order, so logits agree to float rounding only. */
    const int32_t tokens[8] = {3, 1, 4, 1, 5, 9, 2, 6};
    const mr_llama_config configs[2] = {small_config(MR_ROPE_HALVES, false, false),
                                        small_config(MR_ROPE_ADJACENT, true, false)};
    const mr_rope_layout loaded_layout[2] = {MR_ROPE_ADJACENT, MR_ROPE_HALVES};
    for (int k = 0; k < 2; k++) {
        mr_llama *saved = random_model(&configs[k], 60 + (uint64_t)k);
        char dir[128];
        temp_path(dir, sizeof dir, k == 0 ? "halves_as_llama" : "adjacent_as_qwen2");
        mr_error err = {0};
        CHECK_STATUS(mr_llama_save_hf(saved, dir, MR_QTYPE_F32, NULL, NULL, &err), MR_OK);
        mr_llama *loaded = mr_llama_load_hf(dir, &err);
        CHECK(loaded != NULL);
        if (saved == NULL || loaded == NULL) {
            mr_llama_free(saved);
            continue;
        }
        CHECK_INT_EQ(mr_llama_get_config(loaded)->rope_layout, loaded_layout[k]);
        float *before = eval_logits(saved, tokens, 8);
        float *after = eval_logits(loaded, tokens, 8);
        CHECK_ARRAY_NEAR(after, before, 8 * 33, 1e-4, 1e-5);
        free(before);
        free(after);
        mr_llama_free(saved);
        mr_llama_free(loaded);
    }
}

static void hf_folder_to_gguf_identical_logits(void) {
    const int32_t tokens[7] = {1, 39, 0, 22, 22, 7, 13};
    char path[128];
    temp_path(path, sizeof path, "from_hf.gguf");
    mr_error err = {0};
    CHECK_STATUS(mr_llama_convert("fixtures/hf_llama", path, NULL, &err), MR_OK);

    mr_llama *hf = mr_llama_load("fixtures/hf_llama", &err);
    mr_llama *gguf = mr_llama_load(path, &err);
    CHECK(hf != NULL);
    CHECK(gguf != NULL);
    if (hf != NULL && gguf != NULL) {
        float *a = eval_logits(hf, tokens, 7);
        float *b = eval_logits(gguf, tokens, 7);
        CHECK(memcmp(a, b, 7 * 40 * sizeof(float)) == 0);
        free(a);
        free(b);
    }
    mr_llama_free(hf);
    mr_llama_free(gguf);

    /* The file is a llama.cpp "llama" file: adjacent-pair rope and the
     * F32 type of token_embd.weight for every matrix. */
    mr_gguf *file = NULL;
    CHECK_STATUS(mr_gguf_open(path, &file, &err), MR_OK);
    if (file != NULL) {
        const char *arch = NULL;
        size_t length = 0;
        CHECK_STATUS(mr_gguf_get_string(file, "general.architecture", &arch, &length, &err),
                     MR_OK);
        CHECK(length == 5 && memcmp(arch, "llama", 5) == 0);
        CHECK_INT_EQ(mr_gguf_find_tensor(file, "blk.0.ffn_up.weight")->type, MR_QTYPE_F32);
        mr_gguf_close(file);
    }
}

static void gguf_folder_gguf_round_trip(void) {
    const int32_t tokens[9] = {0, 32, 7, 7, 21, 3, 30, 12, 5};
    mr_llama_config configs[2] = {small_config(MR_ROPE_ADJACENT, false, false),
                                  small_config(MR_ROPE_HALVES, true, true)};
    for (int k = 0; k < 2; k++) {
        mr_llama *model = random_model(&configs[k], 80 + (uint64_t)k);
        char first[128], dir[128], second[128];
        temp_path(first, sizeof first, k == 0 ? "trip_llama.gguf" : "trip_qwen2.gguf");
        temp_path(dir, sizeof dir, k == 0 ? "trip_llama" : "trip_qwen2");
        temp_path(second, sizeof second, k == 0 ? "trip_llama2.gguf" : "trip_qwen2_2.gguf");
        mr_error err = {0};
        CHECK_STATUS(mr_llama_save_gguf(model, first, MR_QTYPE_F32, NULL, &err), MR_OK);
        CHECK_STATUS(mr_llama_convert(first, dir, NULL, &err), MR_OK);
        CHECK_STATUS(mr_llama_convert(dir, second, NULL, &err), MR_OK);

        mr_llama *a = mr_llama_load(first, &err);
        mr_llama *b = mr_llama_load(second, &err);
        CHECK(a != NULL && b != NULL);
        if (a != NULL && b != NULL) {
            CHECK(same_weights(a, b));
            float *la = eval_logits(a, tokens, 9);
            float *lb = eval_logits(b, tokens, 9);
            CHECK(memcmp(la, lb, 9 * 33 * sizeof(float)) == 0);
            free(la);
            free(lb);
        }
        mr_llama_free(a);
        mr_llama_free(b);
        mr_llama_free(model);
    }
}

/* Stores string key of file, NUL-terminated, in out. */
static void string_key(const mr_gguf *file, const char *key, char *out, size_t size) {
    const char *bytes = NULL;
    size_t length = 0;
    out[0] = '\0';
    if (mr_gguf_get_string(file, key, &bytes, &length, NULL) == MR_OK && length < size) {
        memcpy(out, bytes, length);
        out[length] = '\0';
    }
}

static void stories_round_trip_keeps_tokenizer(void) {
    char dir[128], path[128];
    temp_path(dir, sizeof dir, "stories_hf");
    temp_path(path, sizeof path, "stories_back.gguf");
    mr_error err = {0};
    CHECK_STATUS(mr_llama_convert(STORIES_PATH, dir, NULL, &err), MR_OK);
    CHECK_STATUS(mr_llama_convert(dir, path, NULL, &err), MR_OK);

    mr_gguf *original = NULL, *back = NULL;
    CHECK_STATUS(mr_gguf_open(STORIES_PATH, &original, &err), MR_OK);
    CHECK_STATUS(mr_gguf_open(path, &back, &err), MR_OK);
    if (original != NULL && back != NULL) {
        /* Every tokenizer key is present with the same type and value. */
        int tokenizer_keys = 0;
        for (int64_t i = 0; i < mr_gguf_kv_count(original); i++) {
            const char *key = mr_gguf_kv_key(original, i);
            if (strncmp(key, "tokenizer.", 10) != 0) {
                continue;
            }
            tokenizer_keys++;
            int64_t j = mr_gguf_find_key(back, key);
            CHECK(j >= 0);
            if (j >= 0) {
                CHECK_INT_EQ(mr_gguf_kv_type(back, j), mr_gguf_kv_type(original, i));
            }
        }
        CHECK(tokenizer_keys >= 5);
        char model_a[32], model_b[32];
        string_key(original, "tokenizer.ggml.model", model_a, sizeof model_a);
        string_key(back, "tokenizer.ggml.model", model_b, sizeof model_b);
        CHECK(strcmp(model_a, "llama") == 0);
        CHECK(strcmp(model_a, model_b) == 0);
        mr_gguf_type type_a, type_b;
        int64_t count_a = 0, count_b = 0;
        const void *data = NULL;
        CHECK_STATUS(mr_gguf_get_array(original, "tokenizer.ggml.tokens", &type_a, &count_a,
                                       &data, &err),
                     MR_OK);
        CHECK_STATUS(mr_gguf_get_array(back, "tokenizer.ggml.tokens", &type_b, &count_b, &data,
                                       &err),
                     MR_OK);
        CHECK_INT_EQ(count_a, 512);
        CHECK_INT_EQ(count_b, 512);
        for (int64_t j = 0; j < count_a; j += 37) {
            const char *ta = NULL, *tb = NULL;
            size_t la = 0, lb = 0;
            mr_gguf_array_string(original, "tokenizer.ggml.tokens", j, &ta, &la, NULL);
            mr_gguf_array_string(back, "tokenizer.ggml.tokens", j, &tb, &lb, NULL);
            CHECK(la == lb && memcmp(ta, tb, la) == 0);
        }
        uint32_t bos_a = 0, bos_b = 0;
        CHECK_STATUS(mr_gguf_get_u32(original, "tokenizer.ggml.bos_token_id", &bos_a, &err),
                     MR_OK);
        CHECK_STATUS(mr_gguf_get_u32(back, "tokenizer.ggml.bos_token_id", &bos_b, &err), MR_OK);
        CHECK_INT_EQ(bos_b, bos_a);
    }
    mr_gguf_close(original);
    mr_gguf_close(back);

    /* The weights, and so the logits, come back unchanged. */
    mr_llama *a = mr_llama_load(STORIES_PATH, &err);
    mr_llama *b = mr_llama_load(path, &err);
    CHECK(a != NULL && b != NULL);
    if (a != NULL && b != NULL) {
        CHECK(same_weights(a, b));
        const int32_t tokens[6] = {1, 403, 407, 261, 378, 10};
        float *la = eval_logits(a, tokens, 6);
        float *lb = eval_logits(b, tokens, 6);
        CHECK(memcmp(la, lb, 6 * 512 * sizeof(float)) == 0);
        free(la);
        free(lb);
    }
    mr_llama_free(a);
    mr_llama_free(b);
}

static void hf_convert_copies_tokenizer_and_sets_dtype(void) {
    char dir[128], path[256];
    temp_path(dir, sizeof dir, "llama_bf16");
    mr_error err = {0};
    mr_qtype bf16 = MR_QTYPE_BF16;
    CHECK_STATUS(mr_llama_convert("fixtures/hf_llama", dir, &bf16, &err), MR_OK);

    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    struct stat info;
    CHECK(stat(path, &info) == 0 && info.st_size == 72);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file != NULL) {
        const mr_safetensors_tensor *q =
            mr_safetensors_tensor_find(file, "model.layers.0.self_attn.q_proj.weight");
        const mr_safetensors_tensor *norm = mr_safetensors_tensor_find(file, "model.norm.weight");
        CHECK(q != NULL && q->dtype == MR_SAFETENSORS_BF16);
        CHECK(norm != NULL && norm->dtype == MR_SAFETENSORS_F32);
        CHECK_INT_EQ(mr_safetensors_tensor_count(file), 1 + 2 * 9 + 2);
        mr_safetensors_close(file);
    }
    mr_llama *model = mr_llama_load_hf(dir, &err);
    CHECK(model != NULL);
    if (model != NULL) {
        CHECK_INT_EQ(mr_llama_find_weight(model, "blk.0.attn_q.weight")->type, MR_QTYPE_BF16);
        mr_llama_free(model);
    }

    /* safetensors has no quantised types. */
    mr_qtype q8 = MR_QTYPE_Q8_0;
    temp_path(dir, sizeof dir, "llama_q8");
    CHECK_STATUS(mr_llama_convert("fixtures/hf_llama", dir, &q8, &err), MR_ERR_UNSUPPORTED);
}

static void hf_config_rejects_unsupported(void) {
    const char *base =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 16, "
        "\"intermediate_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
        "\"vocab_size\": 10%s}";
    const struct {
        const char *extra;
        mr_status status;
        const char *named;
    } cases[] = {
        {", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", MR_ERR_UNSUPPORTED,
         "rope_scaling"},
        {", \"attention_bias\": true", MR_ERR_UNSUPPORTED, "attention_bias"},
        {", \"hidden_act\": \"gelu\"", MR_ERR_UNSUPPORTED, "hidden_act"},
        {", \"partial_rotary_factor\": 0.5", MR_ERR_UNSUPPORTED, "partial_rotary_factor"},
        {", \"num_key_value_heads\": 1.5", MR_ERR_FORMAT, "num_key_value_heads"},
        {", \"rms_norm_eps\": -1", MR_ERR_FORMAT, "rms_norm_eps"},
        {", \"num_key_value_heads\": 3", MR_ERR_INVALID_ARGUMENT, "kv_heads"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char text[512];
        snprintf(text, sizeof text, base, cases[k].extra);
        mr_llama_config config;
        mr_error err = {0};
        CHECK_STATUS(mr_llama_config_from_hf_json(text, "case", &config, &err), cases[k].status);
        CHECK(strstr(err.message, cases[k].named) != NULL);
    }

    /* Neutral values pass, and defaults fill the optional keys. */
    char text[512];
    snprintf(text, sizeof text, base, ", \"rope_scaling\": null, \"attention_bias\": false");
    mr_llama_config config;
    mr_error err = {0};
    CHECK_STATUS(mr_llama_config_from_hf_json(text, "case", &config, &err), MR_OK);
    CHECK_INT_EQ(config.kv_heads, 2);
    CHECK_INT_EQ(config.head_dim, 8);
    CHECK_INT_EQ(config.context_length, 2048);
    CHECK_NEAR(config.rms_eps, 1e-6f, 0.0);
    CHECK_NEAR(config.rope_base, 10000.0, 0.0);

    const char *others[] = {
        "{\"architectures\": [\"MistralForCausalLM\"]}",
        "{\"hidden_size\": 16}",
        "{\"model_type\": \"qwen2\", \"hidden_size\": 16}",
        "[1, 2]",
        "{not json",
    };
    const mr_status expected[] = {MR_ERR_UNSUPPORTED, MR_ERR_NOT_FOUND, MR_ERR_NOT_FOUND,
                                  MR_ERR_FORMAT, MR_ERR_FORMAT};
    for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
        mr_error_clear(&err);
        CHECK_STATUS(mr_llama_config_from_hf_json(others[k], "case", &config, &err),
                     expected[k]);
    }
}

static void hf_load_reports_missing_parts(void) {
    mr_error err = {0};
    char dir[128];
    temp_path(dir, sizeof dir, "no_such_model");
    CHECK(mr_llama_load_hf(dir, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "config.json") != NULL);

    /* A folder whose checkpoint lacks a tensor names it. */
    mr_llama_config config = small_config(MR_ROPE_ADJACENT, false, false);
    mr_llama *model = random_model(&config, 3);
    temp_path(dir, sizeof dir, "missing_tensor");
    CHECK_STATUS(mr_llama_save_hf(model, dir, MR_QTYPE_F32, NULL, NULL, &err), MR_OK);
    mr_llama_free(model);
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 24, "
          "\"intermediate_size\": 40, \"num_hidden_layers\": 3, \"num_attention_heads\": 6, "
          "\"num_key_value_heads\": 2, \"head_dim\": 8, \"vocab_size\": 33}",
          f);
    fclose(f);
    mr_error_clear(&err);
    CHECK(mr_llama_load_hf(dir, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "model.layers.2.input_layernorm.weight") != NULL);
}

/* Removes one entry of the test folder (nftw callback). */
static int remove_entry(const char *path, const struct stat *info, int flag, struct FTW *ftw) {
    (void)info;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_hf_XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(folder) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    mr_log_set_level(MR_LOG_WARN);

    MR_RUN(hf_llama_fixture_matches_torch);
    MR_RUN(hf_qwen2_sharded_bf16_matches_torch);
    MR_RUN(hf_llama_rows_permuted_like_llama_cpp);
    MR_RUN(hf_round_trip_identical_logits);
    MR_RUN(hf_round_trip_other_layouts);
    MR_RUN(hf_folder_to_gguf_identical_logits);
    MR_RUN(gguf_folder_gguf_round_trip);
    MR_RUN(stories_round_trip_keeps_tokenizer);
    MR_RUN(hf_convert_copies_tokenizer_and_sets_dtype);
    MR_RUN(hf_config_rejects_unsupported);
    MR_RUN(hf_load_reports_missing_parts);

    nftw(folder, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return mr_test_finish();
}
