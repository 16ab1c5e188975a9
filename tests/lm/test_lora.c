/*
 * LoRA adapters: logits, loss and the gradients of A and B against
 * tests/fixtures/torch_lora.py and finite differences, PEFT's
 * initialisation, the adapter switched off, frozen base weights during
 * training, merging, PEFT folders (including the Hugging Face row order of
 * q and k) and invalid settings. Files go to a fresh folder under the
 * system's temporary directory.
 */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "fixture.h"
#include "gradcheck.h"
#include "hf_internal.h"
#include "multiround/fileio.h"
#include "multiround/llama.h"
#include "multiround/lora.h"
#include "multiround/optim.h"
#include "multiround/safetensors.h"
#include "test.h"

static const char *fixture_cases[] = {"adjacent_all", "halves_bias_qv"};
static char folder[64];

static const char *temp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", folder, name);
    return buf;
}

/* The base model config of a fixture case. */
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

/* Copies every tensor of a parameter set (base weights or A and B) from
 * the fixture case, by name. */
static void copy_from_fixture(mr_fixture *fixture, mr_ctx *data, const char *name,
                              mr_paramset *params) {
    for (int i = 0; i < mr_paramset_count(params); i++) {
        mr_tensor *param = mr_paramset_get(params, i);
        mr_tensor *values = mr_fixture_tensor(fixture, data, name, param->name);
        CHECK(values != NULL && mr_tensor_same_shape(values, param));
        if (values != NULL && mr_tensor_same_shape(values, param)) {
            mr_tensor_copy(param, values);
        }
    }
}

/* The model and adapter of a fixture case with PyTorch's values. */
static mr_lora *fixture_lora(mr_fixture *fixture, mr_ctx *data, const char *name,
                             mr_llama **model) {
    mr_llama_config config = fixture_config(fixture, name);
    mr_error err = {0};
    *model = mr_llama_init(&config, 1, &err);
    CHECK(*model != NULL);
    if (*model == NULL) {
        return NULL;
    }
    copy_from_fixture(fixture, data, name, mr_llama_params(*model));
    mr_lora_config lc = {.rank = (int)mr_fixture_number(fixture, name, "rank", 0),
                         .alpha = (float)mr_fixture_number(fixture, name, "alpha", 0),
                         .dropout = 0.0f,
                         .targets = (unsigned)mr_fixture_number(fixture, name, "targets_mask", 0)};
    mr_lora *lora = mr_lora_create(*model, &lc, 7, &err);
    CHECK(lora != NULL);
    if (lora != NULL) {
        copy_from_fixture(fixture, data, name, mr_lora_params(lora));
    }
    return lora;
}

/* Sets every B to seeded values of about the size of A, so that the
 * adapter changes the logits. */
static void randomise_b(mr_lora *lora, uint64_t seed) {
    mr_paramset *params = mr_lora_params(lora);
    for (int i = 0; i < mr_paramset_count(params); i++) {
        mr_tensor *p = mr_paramset_get(params, i);
        if (strstr(p->name, "lora_b") != NULL) {
            mr_test_fill_uniform(p, -0.3f, 0.3f, seed + (uint64_t)i);
        }
    }
}

/* Logits of tokens [B, T] from the adapter (lora) or the base model. */
static float *logits_of(mr_llama *model, mr_lora *lora, const int32_t *tokens, int batch,
                        int length) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_ctx_set_grad_enabled(ctx, false);
    int64_t shape[2] = {batch, length};
    mr_tensor *ids = mr_tensor_from_i32(ctx, 2, shape, tokens);
    mr_tensor *logits = lora != NULL ? mr_lora_logits(lora, ctx, ids)
                                     : mr_llama_logits(model, ctx, ids);
    CHECK_CTX_OK(ctx);
    float *copy = NULL;
    if (logits != NULL) {
        size_t bytes = (size_t)mr_tensor_numel(logits) * sizeof *copy;
        copy = malloc(bytes);
        memcpy(copy, logits->data, bytes);
    }
    mr_ctx_free(ctx);
    return copy;
}

/* Logits [n, V] of the KV-cache path (for models that are not trainable). */
static float *eval_logits(const mr_llama *model, const int32_t *tokens, int n) {
    mr_error err = {0};
    int vocab = mr_llama_get_config(model)->vocab_size;
    float *logits = calloc((size_t)n * (size_t)vocab, sizeof *logits);
    mr_llama_cache *cache = mr_llama_cache_create(model, n, &err);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, n, 0, logits, MR_LLAMA_LOGITS_ALL, &err),
                 MR_OK);
    mr_llama_cache_free(cache);
    return logits;
}

/* ------------------------------------------------------------------------ */

static void lora_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/lora.json");
    for (size_t c = 0; c < sizeof fixture_cases / sizeof fixture_cases[0]; c++) {
        const char *name = fixture_cases[c];
        mr_ctx *data = mr_ctx_create(0);
        mr_ctx *ctx = mr_ctx_create(0);
        mr_llama *model = NULL;
        mr_lora *lora = fixture_lora(fixture, data, name, &model);
        mr_tensor *tokens = mr_fixture_tensor_i32(fixture, data, name, "tokens");
        mr_tensor *targets = mr_fixture_tensor_i32(fixture, data, name, "targets");
        mr_tensor *expected_logits = mr_fixture_tensor(fixture, data, name, "logits");
        mr_tensor *expected_loss = mr_fixture_tensor(fixture, data, name, "loss");
        if (lora == NULL || tokens == NULL || expected_logits == NULL) {
            mr_lora_free(lora);
            mr_llama_free(model);
            mr_ctx_free(ctx);
            mr_ctx_free(data);
            continue;
        }

        mr_tensor *logits = mr_lora_logits(lora, ctx, tokens);
        CHECK_CTX_OK(ctx);
        if (logits != NULL) {
            CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits->data, expected_logits->data,
                                          mr_tensor_numel(expected_logits), 1e-4, 0.0),
                         0);
        }

        mr_paramset_zero_grad(mr_lora_params(lora));
        mr_tensor *loss = mr_lora_loss(lora, ctx, tokens, targets, NULL);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        if (loss != NULL) {
            CHECK_NEAR(loss->data[0], expected_loss->data[0], 1e-5);
        }
        mr_paramset *params = mr_lora_params(lora);
        for (int i = 0; i < mr_paramset_count(params); i++) {
            mr_tensor *p = mr_paramset_get(params, i);
            char key[80];
            snprintf(key, sizeof key, "grad.%s", p->name);
            mr_tensor *expected = mr_fixture_tensor(fixture, data, name, key);
            if (expected == NULL) {
                continue;
            }
            if (CHECK_ARRAY_NEAR(p->grad, expected->data, mr_tensor_numel(expected), 2e-5,
                                 1e-3) != 0) {
                mr_test_fail(__FILE__, __LINE__, "%s: gradient of %s differs", name, p->name);
            }
        }

        /* The base model's gradient buffers stay untouched. */
        mr_tensor *base = mr_paramset_flat(mr_llama_params(model));
        int64_t nonzero = 0;
        for (int64_t i = 0; i < mr_tensor_numel(base); i++) {
            nonzero += base->grad[i] != 0.0f;
        }
        CHECK_INT_EQ(nonzero, 0);

        mr_lora_free(lora);
        mr_llama_free(model);
        mr_ctx_free(ctx);
        mr_ctx_free(data);
    }
    mr_fixture_free(fixture);
}

/* Gradcheck build function: the adapter's loss on fixed tokens. */
typedef struct loss_inputs {
    mr_lora *lora;
    const int32_t *tokens, *targets;
} loss_inputs;

static mr_tensor *build_loss(mr_ctx *ctx, mr_tensor **inputs, void *user) {
    (void)inputs;
    loss_inputs *in = user;
    int64_t shape[2] = {2, 5};
    return mr_lora_loss(in->lora, ctx, mr_tensor_from_i32(ctx, 2, shape, in->tokens),
                        mr_tensor_from_i32(ctx, 2, shape, in->targets), NULL);
}

static void lora_gradients_finite_differences(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/lora.json");
    mr_ctx *data = mr_ctx_create(0);
    mr_llama *model = NULL;
    mr_lora *lora = fixture_lora(fixture, data, "halves_bias_qv", &model);
    if (lora != NULL) {
        const int32_t tokens[10] = {1, 5, 9, 2, 28, 0, 3, 3, 17, 11};
        const int32_t targets[10] = {5, 9, 2, 28, 4, 3, -1, 17, 11, 6};
        loss_inputs in = {lora, tokens, targets};
        mr_paramset *params = mr_lora_params(lora);
        mr_tensor *inputs[4] = {mr_paramset_find(params, "blk.0.attn_q.lora_a"),
                                mr_paramset_find(params, "blk.0.attn_q.lora_b"),
                                mr_paramset_find(params, "blk.1.attn_v.lora_a"),
                                mr_paramset_find(params, "blk.1.attn_v.lora_b")};
        mr_gradcheck_options options = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2,
                                        .max_elements = 8};
        CHECK_INT_EQ(mr_gradcheck("lora loss", build_loss, inputs, 4, &in, &options), 0);
    }
    mr_lora_free(lora);
    mr_llama_free(model);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

static void lora_fresh_adapter_keeps_logits(void) {
    mr_llama_config config = {.vocab_size = 31, .dim = 20, .layers = 2, .heads = 4,
                              .kv_heads = 2, .head_dim = 6, .ffn_dim = 28,
                              .context_length = 16, .rope_base = 10000.0f,
                              .rope_layout = MR_ROPE_ADJACENT, .rms_eps = 1e-5f};
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 3, &err);
    mr_lora_config lc = {.rank = 4, .alpha = 8.0f, .dropout = 0.0f, .targets = MR_LORA_ALL};
    mr_lora *lora = mr_lora_create(model, &lc, 9, &err);
    CHECK(lora != NULL);
    if (lora == NULL) {
        mr_llama_free(model);
        return;
    }

    /* PEFT's init: A from U(-1/sqrt(in), 1/sqrt(in)), B zero. 2 layers x 7
     * targets x (A, B). */
    mr_paramset *params = mr_lora_params(lora);
    CHECK_INT_EQ(mr_paramset_count(params), 2 * 7 * 2);
    mr_tensor *a = mr_paramset_find(params, "blk.1.ffn_down.lora_a");
    mr_tensor *b = mr_paramset_find(params, "blk.1.ffn_down.lora_b");
    CHECK(a != NULL && b != NULL);
    if (a != NULL && b != NULL) {
        CHECK_INT_EQ(a->shape[0], 4);
        CHECK_INT_EQ(a->shape[1], 28);
        CHECK_INT_EQ(b->shape[0], 20);
        CHECK_INT_EQ(b->shape[1], 4);
        double bound = 1.0 / sqrt(28.0), max_abs = 0.0, b_abs = 0.0;
        for (int64_t i = 0; i < mr_tensor_numel(a); i++) {
            max_abs = fmax(max_abs, fabs(a->data[i]));
        }
        for (int64_t i = 0; i < mr_tensor_numel(b); i++) {
            b_abs += fabs(b->data[i]);
        }
        CHECK(max_abs <= bound);
        CHECK(max_abs > 0.5 * bound);
        CHECK_NEAR(b_abs, 0.0, 0.0);
    }

    const int32_t tokens[8] = {0, 30, 4, 4, 12, 7, 19, 2};
    float *base = logits_of(model, NULL, tokens, 2, 4);
    float *adapted = logits_of(model, lora, tokens, 2, 4);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(adapted, base, 8 * 31, 0.0, 0.0), 0);
    free(base);
    free(adapted);
    mr_lora_free(lora);
    mr_llama_free(model);
}

static void lora_off_equals_base(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/lora.json");
    for (size_t c = 0; c < sizeof fixture_cases / sizeof fixture_cases[0]; c++) {
        mr_ctx *data = mr_ctx_create(0);
        mr_llama *model = NULL;
        mr_lora *lora = fixture_lora(fixture, data, fixture_cases[c], &model);
        if (lora != NULL) {
            const int32_t tokens[12] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
            float *base = logits_of(model, NULL, tokens, 2, 6);
            float *on = logits_of(model, lora, tokens, 2, 6);
            CHECK(mr_lora_enabled(lora));
            mr_lora_set_enabled(lora, false);
            CHECK(!mr_lora_enabled(lora));
            float *off = logits_of(model, lora, tokens, 2, 6);
            CHECK(memcmp(off, base, 12 * 29 * sizeof(float)) == 0);
            CHECK(memcmp(on, base, 12 * 29 * sizeof(float)) != 0);
            free(base);
            free(on);
            free(off);
        }
        mr_lora_free(lora);
        mr_llama_free(model);
        mr_ctx_free(data);
    }
    mr_fixture_free(fixture);
}

static void lora_training_freezes_base(void) {
    /* A model loaded from GGUF is not trainable: no parameters and no
     * gradient buffers, and LoRA leaves it that way. */
    mr_llama_config config = {.vocab_size = 23, .dim = 16, .layers = 2, .heads = 2,
                              .kv_heads = 1, .head_dim = 8, .ffn_dim = 24,
                              .context_length = 16, .rope_base = 10000.0f,
                              .rope_layout = MR_ROPE_HALVES, .rms_eps = 1e-5f,
                              .qkv_bias = true};
    mr_error err = {0};
    mr_llama *source = mr_llama_init(&config, 5, &err);
    /* Matrices 20x the default init give logits of O(1), which the
     * adapter can move within a few steps. */
    for (int i = 0; i < mr_llama_weight_count(source); i++) {
        const mr_llama_weight *w = mr_llama_weight_at(source, i);
        for (int64_t j = 0; w->n_dims == 2 && j < mr_tensor_numel(w->param); j++) {
            w->param->data[j] *= 20.0f;
        }
    }
    char path[128];
    temp_path(path, sizeof path, "frozen.gguf");
    CHECK_STATUS(mr_llama_save_gguf(source, path, MR_QTYPE_F32, NULL, &err), MR_OK);
    mr_llama_free(source);
    mr_llama *model = mr_llama_load_gguf(path, &err);
    CHECK(model != NULL);
    if (model == NULL) {
        return;
    }
    CHECK(mr_llama_params(model) == NULL);

    /* Snapshot every weight's bytes. */
    int count = mr_llama_weight_count(model);
    void **before = calloc((size_t)count, sizeof *before);
    for (int i = 0; i < count; i++) {
        const mr_llama_weight *w = mr_llama_weight_at(model, i);
        size_t bytes = mr_qtype_row_bytes(w->type, w->ne[0]) * (size_t)w->ne[1];
        before[i] = malloc(bytes);
        memcpy(before[i], w->data, bytes);
    }

    mr_lora_config lc = {.rank = 2, .alpha = 4.0f, .dropout = 0.1f, .targets = MR_LORA_ALL};
    mr_lora *lora = mr_lora_create(model, &lc, 21, &err);
    mr_optim_config oc = mr_optim_config_default(MR_OPTIM_ADAM);
    mr_optim *opt = mr_optim_create(&oc, &err);
    mr_tensor *flat = mr_paramset_flat(mr_lora_params(lora));
    CHECK_STATUS(mr_optim_add_group(opt, &flat, 1, 0.0f, 1.0f, &err), MR_OK);
    const int32_t tokens[16] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    const int32_t targets[16] = {2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9};
    int64_t shape[2] = {2, 8};
    mr_ctx *ctx = mr_ctx_create(0);
    float first = 0.0f, last = 0.0f;
    for (int step = 0; step < 30; step++) {
        mr_tensor *loss = mr_lora_loss(lora, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens),
                                       mr_tensor_from_i32(ctx, 2, shape, targets), NULL);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        if (loss != NULL) {
            first = step == 0 ? loss->data[0] : first;
            last = loss->data[0];
        }
        CHECK_STATUS(mr_optim_step(opt, 0.02f, &err), MR_OK);
        mr_optim_zero_grad(opt);
        mr_ctx_reset(ctx);
    }
    /* Measured: 5.19 before the first step, 0.45 after 30. */
    CHECK(last < 0.5f * first);

    CHECK(mr_llama_params(model) == NULL);
    int changed = 0;
    for (int i = 0; i < count; i++) {
        const mr_llama_weight *w = mr_llama_weight_at(model, i);
        size_t bytes = mr_qtype_row_bytes(w->type, w->ne[0]) * (size_t)w->ne[1];
        changed += memcmp(before[i], w->data, bytes) != 0;
        free(before[i]);
    }
    CHECK_INT_EQ(changed, 0);
    free(before);
    mr_ctx_free(ctx);
    mr_optim_free(opt);
    mr_lora_free(lora);
    mr_llama_free(model);
}

static void lora_merge_matches_adapter(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/lora.json");
    const int32_t tokens[12] = {0, 28, 14, 14, 3, 9, 27, 1, 8, 8, 20, 5};

    /* A trainable model: the parameters change in place. */
    mr_ctx *data = mr_ctx_create(0);
    mr_llama *model = NULL;
    mr_lora *lora = fixture_lora(fixture, data, "adjacent_all", &model);
    if (lora != NULL) {
        float *adapted = logits_of(model, lora, tokens, 2, 6);
        mr_error err = {0};
        CHECK_STATUS(mr_lora_merge(lora, &err), MR_OK);
        CHECK(!mr_lora_enabled(lora));
        float *merged = logits_of(model, NULL, tokens, 2, 6);
        /* W + s B A against W x + s B (A x): float rounding of O(1)
         * logits, measured below 1e-5. */
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(merged, adapted, 12 * 29, 5e-5, 1e-5), 0);
        free(adapted);
        free(merged);
    }
    mr_lora_free(lora);
    mr_llama_free(model);
    mr_ctx_free(data);

    /* An F16 model read from a file: targeted weights become F32. */
    data = mr_ctx_create(0);
    lora = fixture_lora(fixture, data, "halves_bias_qv", &model);
    if (lora != NULL) {
        char path[128];
        temp_path(path, sizeof path, "merge_f16.gguf");
        mr_error err = {0};
        CHECK_STATUS(mr_llama_save_gguf(model, path, MR_QTYPE_F16, NULL, &err), MR_OK);
        mr_llama *stored = mr_llama_load_gguf(path, &err);
        mr_paramset *trained = mr_lora_params(lora);
        mr_lora_config lc = *mr_lora_get_config(lora);
        mr_lora *again = mr_lora_create(stored, &lc, 1, &err);
        mr_paramset *copy = mr_lora_params(again);
        mr_tensor_copy(mr_paramset_flat(copy), mr_paramset_flat(trained));

        float *adapted = logits_of(stored, again, tokens, 2, 6);
        CHECK_STATUS(mr_lora_merge(again, &err), MR_OK);
        CHECK_INT_EQ(mr_llama_find_weight(stored, "blk.0.attn_q.weight")->type, MR_QTYPE_F32);
        CHECK_INT_EQ(mr_llama_find_weight(stored, "blk.0.attn_k.weight")->type, MR_QTYPE_F16);
        float *merged = malloc(12 * 29 * sizeof *merged);
        for (int b = 0; b < 2; b++) {
            float *row = eval_logits(stored, tokens + 6 * b, 6);
            memcpy(merged + 6 * 29 * b, row, 6 * 29 * sizeof *row);
            free(row);
        }
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(merged, adapted, 12 * 29, 5e-5, 1e-5), 0);
        free(adapted);
        free(merged);
        mr_lora_free(again);
        mr_llama_free(stored);
    }
    mr_lora_free(lora);
    mr_llama_free(model);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

static void lora_peft_round_trip(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/lora.json");
    mr_ctx *data = mr_ctx_create(0);
    mr_llama *model = NULL;
    mr_lora *lora = fixture_lora(fixture, data, "adjacent_all", &model);
    char dir[128], path[256];
    temp_path(dir, sizeof dir, "adapter");
    mr_error err = {0};
    if (lora != NULL) {
        CHECK_STATUS(mr_lora_save_peft(lora, dir, "tiny-llama", &err), MR_OK);
    }

    /* adapter_config.json has PEFT's keys. */
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    void *text = NULL;
    size_t size = 0;
    CHECK_STATUS(mr_file_read_all(path, 1 << 20, &text, &size, &err), MR_OK);
    cJSON *json = text != NULL ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(json != NULL);
    if (json != NULL) {
        CHECK_INT_EQ(cJSON_GetObjectItem(json, "r")->valueint, 3);
        CHECK_NEAR(cJSON_GetObjectItem(json, "lora_alpha")->valuedouble, 6.0, 0.0);
        CHECK(strcmp(cJSON_GetObjectItem(json, "peft_type")->valuestring, "LORA") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(json, "base_model_name_or_path")->valuestring,
                     "tiny-llama") == 0);
        cJSON *modules = cJSON_GetObjectItem(json, "target_modules");
        CHECK_INT_EQ(cJSON_GetArraySize(modules), 7);
        CHECK(strcmp(cJSON_GetArrayItem(modules, 3)->valuestring, "o_proj") == 0);
        cJSON_Delete(json);
    }

    /* adapter_model.safetensors has PEFT's names and shapes. */
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file != NULL) {
        CHECK_INT_EQ(mr_safetensors_tensor_count(file), 2 * 7 * 2);
        const mr_safetensors_tensor *a = mr_safetensors_tensor_find(
            file, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
        const mr_safetensors_tensor *b = mr_safetensors_tensor_find(
            file, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
        CHECK(a != NULL && a->ndim == 2 && a->shape[0] == 3 && a->shape[1] == 16);
        CHECK(b != NULL && b->ndim == 2 && b->shape[0] == 16 && b->shape[1] == 3);
        mr_safetensors_close(file);
    }

    /* Loading gives back the same values and logits. */
    mr_lora *loaded = lora != NULL ? mr_lora_load_peft(model, dir, &err) : NULL;
    CHECK(loaded != NULL);
    if (loaded != NULL) {
        mr_tensor *x = mr_paramset_flat(mr_lora_params(lora));
        mr_tensor *y = mr_paramset_flat(mr_lora_params(loaded));
        CHECK_INT_EQ(mr_tensor_numel(x), mr_tensor_numel(y));
        CHECK(memcmp(x->data, y->data, (size_t)mr_tensor_numel(x) * sizeof(float)) == 0);
        const mr_lora_config *c = mr_lora_get_config(loaded);
        CHECK_INT_EQ(c->rank, 3);
        CHECK_INT_EQ(c->targets, MR_LORA_ALL);
        CHECK_NEAR(c->alpha, 6.0, 0.0);
        const int32_t tokens[6] = {2, 7, 1, 8, 2, 8};
        float *before = logits_of(model, lora, tokens, 1, 6);
        float *after = logits_of(model, loaded, tokens, 1, 6);
        CHECK(memcmp(before, after, 6 * 29 * sizeof(float)) == 0);
        free(before);
        free(after);
    }
    mr_lora_free(loaded);
    mr_lora_free(lora);
    mr_llama_free(model);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

/* Reads tensor name of the safetensors file at path into a new buffer. */
static float *read_tensor(const char *path, const char *name, int64_t count) {
    mr_safetensors *file = NULL;
    mr_error err = {0};
    float *values = calloc((size_t)count, sizeof *values);
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file != NULL) {
        CHECK_STATUS(mr_safetensors_read_f32(file, name, values, count, &err), MR_OK);
        mr_safetensors_close(file);
    }
    return values;
}

static void lora_peft_rows_in_hf_order(void) {
    /* Merging in multiround and writing the Hugging Face folder must give
     * W_hf + s B_peft A_peft, computed here from the written files, for
     * the permuted q and k as for the others. */
    mr_fixture *fixture = mr_fixture_load("fixtures/lora.json");
    mr_ctx *data = mr_ctx_create(0);
    mr_llama *model = NULL;
    mr_lora *lora = fixture_lora(fixture, data, "adjacent_all", &model);
    char base_dir[128], merged_dir[128], adapter_dir[128];
    temp_path(base_dir, sizeof base_dir, "rows_base");
    temp_path(merged_dir, sizeof merged_dir, "rows_merged");
    temp_path(adapter_dir, sizeof adapter_dir, "rows_adapter");
    mr_error err = {0};
    if (lora == NULL) {
        mr_llama_free(model);
        mr_ctx_free(data);
        mr_fixture_free(fixture);
        return;
    }
    CHECK_STATUS(mr_llama_save_hf(model, base_dir, MR_QTYPE_F32, NULL, NULL, &err), MR_OK);
    CHECK_STATUS(mr_lora_save_peft(lora, adapter_dir, NULL, &err), MR_OK);
    CHECK_STATUS(mr_lora_merge(lora, &err), MR_OK);
    CHECK_STATUS(mr_llama_save_hf(model, merged_dir, MR_QTYPE_F32, NULL, NULL, &err), MR_OK);

    const struct {
        const char *module;
        int64_t out, in;
    } modules[] = {{"self_attn.q_proj", 16, 16}, {"self_attn.k_proj", 8, 16},
                   {"self_attn.v_proj", 8, 16},  {"self_attn.o_proj", 16, 16},
                   {"mlp.gate_proj", 24, 16},    {"mlp.down_proj", 16, 24}};
    const float scaling = 6.0f / 3.0f;
    for (size_t m = 0; m < sizeof modules / sizeof modules[0]; m++) {
        char path[256], name[160];
        int64_t out = modules[m].out, in = modules[m].in;
        snprintf(name, sizeof name, "model.layers.1.%s.weight", modules[m].module);
        snprintf(path, sizeof path, "%s/model.safetensors", base_dir);
        float *w = read_tensor(path, name, out * in);
        snprintf(path, sizeof path, "%s/model.safetensors", merged_dir);
        float *merged = read_tensor(path, name, out * in);
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter_dir);
        snprintf(name, sizeof name, "base_model.model.model.layers.1.%s.lora_A.weight",
                 modules[m].module);
        float *a = read_tensor(path, name, 3 * in);
        snprintf(name, sizeof name, "base_model.model.model.layers.1.%s.lora_B.weight",
                 modules[m].module);
        float *b = read_tensor(path, name, out * 3);

        float *expected = malloc((size_t)(out * in) * sizeof *expected);
        for (int64_t o = 0; o < out; o++) {
            for (int64_t i = 0; i < in; i++) {
                double sum = 0.0;
                for (int j = 0; j < 3; j++) {
                    sum += (double)b[o * 3 + j] * (double)a[j * in + i];
                }
                expected[o * in + i] = w[o * in + i] + (float)(scaling * sum);
            }
        }
        if (CHECK_ARRAY_NEAR(merged, expected, out * in, 1e-5, 1e-5) != 0) {
            mr_test_fail(__FILE__, __LINE__, "merged %s differs", modules[m].module);
        }
        free(w);
        free(merged);
        free(a);
        free(b);
        free(expected);
    }
    mr_lora_free(lora);
    mr_llama_free(model);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

static void lora_dropout_is_seeded(void) {
    mr_llama_config config = {.vocab_size = 19, .dim = 12, .layers = 1, .heads = 2,
                              .kv_heads = 2, .head_dim = 6, .ffn_dim = 16,
                              .context_length = 8, .rope_base = 10000.0f,
                              .rope_layout = MR_ROPE_ADJACENT, .rms_eps = 1e-5f};
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 8, &err);
    const int32_t tokens[6] = {1, 2, 3, 4, 5, 6};
    const int32_t targets[6] = {2, 3, 4, 5, 6, 7};
    int64_t shape[2] = {1, 6};
    float losses[3] = {0};
    for (int run = 0; run < 3; run++) {
        mr_lora_config lc = {.rank = 2, .alpha = 2.0f, .dropout = 0.5f, .targets = MR_LORA_ALL};
        mr_lora *lora = mr_lora_create(model, &lc, 77, &err);
        randomise_b(lora, 5);
        mr_ctx *ctx = mr_ctx_create(0);
        mr_ctx_set_training(ctx, run < 2);
        mr_tensor *loss = mr_lora_loss(lora, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens),
                                       mr_tensor_from_i32(ctx, 2, shape, targets), NULL);
        CHECK_CTX_OK(ctx);
        losses[run] = loss != NULL ? loss->data[0] : NAN;
        mr_ctx_free(ctx);
        mr_lora_free(lora);
    }
    /* The same seed gives the same masks; evaluation mode has none. */
    CHECK(losses[0] == losses[1]);
    CHECK(losses[0] != losses[2]);
    mr_llama_free(model);
}

static void lora_rejects_invalid(void) {
    mr_llama_config config = {.vocab_size = 19, .dim = 12, .layers = 1, .heads = 2,
                              .kv_heads = 2, .head_dim = 6, .ffn_dim = 16,
                              .context_length = 8, .rope_base = 10000.0f,
                              .rope_layout = MR_ROPE_ADJACENT, .rms_eps = 1e-5f};
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 8, &err);
    const struct {
        mr_lora_config config;
        const char *named;
    } cases[] = {
        {{.rank = 0, .alpha = 1.0f, .dropout = 0.0f, .targets = MR_LORA_Q}, "rank"},
        {{.rank = 2, .alpha = 0.0f, .dropout = 0.0f, .targets = MR_LORA_Q}, "alpha"},
        {{.rank = 2, .alpha = 1.0f, .dropout = 1.0f, .targets = MR_LORA_Q}, "dropout"},
        {{.rank = 2, .alpha = 1.0f, .dropout = 0.0f, .targets = 0}, "targets"},
        {{.rank = 2, .alpha = 1.0f, .dropout = 0.0f, .targets = 0x80}, "targets"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mr_error_clear(&err);
        CHECK(mr_lora_create(model, &cases[k].config, 1, &err) == NULL);
        CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
        CHECK(strstr(err.message, cases[k].named) != NULL);
    }

    /* PEFT settings that change the arithmetic are named. */
    mr_lora_config lc = {.rank = 2, .alpha = 1.0f, .dropout = 0.0f, .targets = MR_LORA_V};
    mr_lora *lora = mr_lora_create(model, &lc, 1, &err);
    char dir[128], path[256];
    temp_path(dir, sizeof dir, "bad_adapter");
    CHECK_STATUS(mr_lora_save_peft(lora, dir, NULL, &err), MR_OK);
    mr_lora_free(lora);
    const struct {
        const char *json;
        mr_status status;
        const char *named;
    } files[] = {
        {"{\"r\": 2, \"target_modules\": [\"v_proj\"], \"use_dora\": true}", MR_ERR_UNSUPPORTED,
         "use_dora"},
        {"{\"r\": 2, \"target_modules\": [\"v_proj\"], \"use_rslora\": true}",
         MR_ERR_UNSUPPORTED, "use_rslora"},
        {"{\"r\": 2, \"target_modules\": [\"lm_head\"]}", MR_ERR_UNSUPPORTED, "lm_head"},
        {"{\"r\": 2, \"target_modules\": [\"v_proj\"], \"bias\": \"all\"}", MR_ERR_UNSUPPORTED,
         "bias"},
        {"{\"r\": 4, \"target_modules\": [\"v_proj\"]}", MR_ERR_FORMAT, "lora_A"},
        {"{\"r\": 2, \"target_modules\": [\"q_proj\"]}", MR_ERR_NOT_FOUND, "q_proj.lora_A"},
    };
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        CHECK_STATUS(mr_file_write_atomic(path, files[k].json, strlen(files[k].json), &err),
                     MR_OK);
        mr_error_clear(&err);
        CHECK(mr_lora_load_peft(model, dir, &err) == NULL);
        CHECK_STATUS(err.status, files[k].status);
        CHECK(strstr(err.message, files[k].named) != NULL);
    }
    mr_llama_free(model);
}

static int remove_entry(const char *path, const struct stat *info, int flag, struct FTW *ftw) {
    (void)info;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_lora_XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(folder) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    mr_log_set_level(MR_LOG_WARN);

    MR_RUN(lora_matches_torch);
    MR_RUN(lora_gradients_finite_differences);
    MR_RUN(lora_fresh_adapter_keeps_logits);
    MR_RUN(lora_off_equals_base);
    MR_RUN(lora_training_freezes_base);
    MR_RUN(lora_merge_matches_adapter);
    MR_RUN(lora_peft_round_trip);
    MR_RUN(lora_peft_rows_in_hf_order);
    MR_RUN(lora_dropout_is_seeded);
    MR_RUN(lora_rejects_invalid);

    nftw(folder, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return mr_test_finish();
}
