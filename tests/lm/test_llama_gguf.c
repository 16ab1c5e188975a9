/*
 * Llama models in GGUF files: saving and loading both architectures
 * ("llama" with adjacent-pair rope, "qwen2" with split halves and biases),
 * quantised storage, and the errors for files the loader cannot use. Files
 * go to a fresh folder under the system's temporary directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "test.h"

static char folder[64];

/* Writes the path of file name in the test folder into buf. */
static const char *temp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", folder, name);
    return buf;
}

/* A model whose row widths are multiples of 32, so any type can store it. */
static mr_llama_config block_config(mr_rope_layout layout, bool bias, bool tied) {
    mr_llama_config config = {.vocab_size = 40, .dim = 32, .layers = 2, .heads = 4,
                              .kv_heads = 2, .head_dim = 8, .ffn_dim = 64,
                              .context_length = 48, .rope_base = 1e6f,
                              .rope_layout = layout, .rms_eps = 1e-6f, .qkv_bias = bias,
                              .tied_output = tied};
    return config;
}

/* Initialises a model with matrices 10x wider than the default init. */
static mr_llama *wide_model(const mr_llama_config *config, uint64_t seed) {
    mr_error err = {0};
    mr_llama *model = mr_llama_init(config, seed, &err);
    for (int i = 0; model != NULL && i < mr_llama_weight_count(model); i++) {
        const mr_llama_weight *w = mr_llama_weight_at(model, i);
        int64_t n = mr_tensor_numel(w->param);
        for (int64_t j = 0; j < n; j++) {
            w->param->data[j] *= w->n_dims == 2 ? 10.0f : 1.0f;
        }
        if (strstr(w->name, ".bias") != NULL) {
            for (int64_t j = 0; j < n; j++) {
                w->param->data[j] = 0.01f * (float)(j % 7);
            }
        }
    }
    return model;
}

/* Logits [n, V] of a batch of n tokens at positions 0..n-1. */
static float *eval_logits(const mr_llama *model, const int32_t *tokens, int n) {
    mr_error err = {0};
    int vocab = mr_llama_get_config(model)->vocab_size;
    float *logits = malloc((size_t)n * (size_t)vocab * sizeof *logits);
    mr_llama_cache *cache = mr_llama_cache_create(model, n, &err);
    CHECK_STATUS(mr_llama_eval(model, cache, tokens, n, 0, logits, MR_LLAMA_LOGITS_ALL, &err),
                 MR_OK);
    mr_llama_cache_free(cache);
    return logits;
}

/* ------------------------------------------------------------------------ */

static void gguf_round_trip_f32(void) {
    const int32_t tokens[9] = {0, 39, 7, 7, 21, 3, 30, 12, 5};
    for (int v = 0; v < 2; v++) {
        mr_llama_config config = v == 0 ? block_config(MR_ROPE_HALVES, true, false)
                                        : block_config(MR_ROPE_ADJACENT, false, true);
        mr_llama *saved = wide_model(&config, 11 + (uint64_t)v);
        char path[128];
        temp_path(path, sizeof path, v == 0 ? "qwen2.gguf" : "llama.gguf");
        mr_error err = {0};
        CHECK_STATUS(mr_llama_save_gguf(saved, path, MR_QTYPE_F32, NULL, &err), MR_OK);

        mr_llama *loaded = mr_llama_load_gguf(path, &err);
        CHECK(loaded != NULL);
        if (loaded == NULL) {
            mr_test_fail(__FILE__, __LINE__, "load failed: %s", err.message);
            mr_llama_free(saved);
            continue;
        }

        /* Every config field survives, including layout, bias and tying. */
        const mr_llama_config *c = mr_llama_get_config(loaded);
        CHECK_INT_EQ(c->vocab_size, config.vocab_size);
        CHECK_INT_EQ(c->dim, config.dim);
        CHECK_INT_EQ(c->layers, config.layers);
        CHECK_INT_EQ(c->heads, config.heads);
        CHECK_INT_EQ(c->kv_heads, config.kv_heads);
        CHECK_INT_EQ(c->head_dim, config.head_dim);
        CHECK_INT_EQ(c->ffn_dim, config.ffn_dim);
        CHECK_INT_EQ(c->context_length, config.context_length);
        CHECK_NEAR(c->rope_base, config.rope_base, 0);
        CHECK_NEAR(c->rms_eps, config.rms_eps, 0);
        CHECK_INT_EQ(c->rope_layout, config.rope_layout);
        CHECK_INT_EQ(c->qkv_bias, config.qkv_bias);
        CHECK_INT_EQ(c->tied_output, config.tied_output);

        /* Every weight survives bit for bit. */
        CHECK_INT_EQ(mr_llama_weight_count(loaded), mr_llama_weight_count(saved));
        for (int i = 0; i < mr_llama_weight_count(saved); i++) {
            const mr_llama_weight *a = mr_llama_weight_at(saved, i);
            const mr_llama_weight *b = mr_llama_find_weight(loaded, a->name);
            CHECK(b != NULL);
            if (b != NULL) {
                CHECK_INT_EQ(b->type, MR_QTYPE_F32);
                size_t bytes = (size_t)(a->ne[0] * a->ne[1]) * sizeof(float);
                CHECK(memcmp(a->data, b->data, bytes) == 0);
            }
        }

        /* So inference gives the same bits. */
        float *want = eval_logits(saved, tokens, 9);
        float *got = eval_logits(loaded, tokens, 9);
        CHECK(memcmp(want, got, (size_t)9 * 40 * sizeof(float)) == 0);
        free(want);
        free(got);
        mr_llama_free(loaded);
        mr_llama_free(saved);
    }
}

/* A file saved as Q8_0 contains the bytes that mr_llama_quantize makes, so
 * both give the same logits. */
static void gguf_round_trip_q8_0(void) {
    const int32_t tokens[6] = {1, 2, 3, 4, 5, 6};
    mr_llama_config config = block_config(MR_ROPE_ADJACENT, false, false);
    mr_llama *model = wide_model(&config, 5);
    char path[128];
    temp_path(path, sizeof path, "q8_0.gguf");
    mr_error err = {0};
    CHECK_STATUS(mr_llama_save_gguf(model, path, MR_QTYPE_Q8_0, NULL, &err), MR_OK);
    CHECK_STATUS(mr_llama_quantize(model, MR_QTYPE_Q8_0, &err), MR_OK);

    mr_llama *loaded = mr_llama_load_gguf(path, &err);
    CHECK(loaded != NULL);
    if (loaded != NULL) {
        CHECK_INT_EQ(mr_llama_find_weight(loaded, "blk.1.attn_q.weight")->type, MR_QTYPE_Q8_0);
        CHECK_INT_EQ(mr_llama_find_weight(loaded, "token_embd.weight")->type, MR_QTYPE_Q8_0);
        CHECK_INT_EQ(mr_llama_find_weight(loaded, "blk.1.attn_norm.weight")->type, MR_QTYPE_F32);
        float *want = eval_logits(model, tokens, 6);
        float *got = eval_logits(loaded, tokens, 6);
        CHECK(memcmp(want, got, (size_t)6 * 40 * sizeof(float)) == 0);
        free(want);
        free(got);

        /* And it trains from the decoded values. */
        CHECK_STATUS(mr_llama_make_trainable(loaded, &err), MR_OK);
        CHECK(mr_llama_find_weight(loaded, "blk.1.attn_q.weight")->param != NULL);
    }
    mr_llama_free(loaded);
    mr_llama_free(model);
}

/* Writes a file with the keys of a small llama model, the given
 * architecture, and every tensor except skip (NULL for none). The tensor
 * named wide gets one extra row. */
static void write_variant(const char *path, const char *arch, const char *skip,
                          const char *wide) {
    mr_llama_config config = block_config(MR_ROPE_ADJACENT, false, false);
    mr_llama *model = wide_model(&config, 1);
    char reference[128];
    temp_path(reference, sizeof reference, "reference.gguf");
    mr_error err = {0};
    CHECK_STATUS(mr_llama_save_gguf(model, reference, MR_QTYPE_F32, NULL, &err), MR_OK);
    mr_gguf *from = NULL;
    CHECK_STATUS(mr_gguf_open(reference, &from, &err), MR_OK);

    mr_gguf_writer *w = mr_gguf_writer_create();
    CHECK_STATUS(mr_gguf_writer_set_string(w, "general.architecture", arch, &err), MR_OK);
    CHECK_STATUS(mr_gguf_writer_copy_kv(w, from, &err), MR_OK);
    float *big = calloc(64 * 41, sizeof *big);
    for (int64_t i = 0; from != NULL && i < mr_gguf_tensor_count(from); i++) {
        const mr_gguf_tensor *t = mr_gguf_tensor_at(from, i);
        if (skip != NULL && strcmp(t->name, skip) == 0) {
            continue;
        }
        int64_t ne[2] = {t->ne[0], t->ne[1]};
        const void *data = t->data;
        if (wide != NULL && strcmp(t->name, wide) == 0) {
            ne[1] += 1;
            data = big;
        }
        CHECK_STATUS(mr_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, data, &err),
                     MR_OK);
    }
    CHECK_STATUS(mr_gguf_writer_write(w, path, &err), MR_OK);
    free(big);
    mr_gguf_writer_free(w);
    mr_gguf_close(from);
    mr_llama_free(model);
}

static void gguf_load_rejects_bad_files(void) {
    char path[128];
    mr_error err = {0};

    /* The reader reports a missing file as not found; any other failure
     * to open it would be an I/O error. */
    CHECK(mr_llama_load_gguf(temp_path(path, sizeof path, "absent.gguf"), &err) == NULL);
    CHECK(err.status == MR_ERR_NOT_FOUND || err.status == MR_ERR_IO);
    CHECK(strstr(err.message, "absent.gguf") != NULL);

    write_variant(temp_path(path, sizeof path, "gpt2.gguf"), "gpt2", NULL, NULL);
    CHECK(mr_llama_load_gguf(path, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "gpt2") != NULL);

    write_variant(temp_path(path, sizeof path, "missing.gguf"), "llama", "blk.1.ffn_up.weight",
                  NULL);
    CHECK(mr_llama_load_gguf(path, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "blk.1.ffn_up.weight") != NULL);

    write_variant(temp_path(path, sizeof path, "wide.gguf"), "llama", NULL,
                  "blk.0.attn_k.weight");
    CHECK(mr_llama_load_gguf(path, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_FORMAT);
    CHECK(strstr(err.message, "blk.0.attn_k.weight") != NULL);

    /* Without token_embd.weight the vocabulary size is unknown. */
    write_variant(temp_path(path, sizeof path, "no_embd.gguf"), "llama", "token_embd.weight",
                  NULL);
    CHECK(mr_llama_load_gguf(path, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_NOT_FOUND);
}

/* Removes every file the tests wrote, then the folder. */
static void remove_folder(void) {
    const char *names[] = {"qwen2.gguf", "llama.gguf",   "q8_0.gguf",  "reference.gguf",
                           "gpt2.gguf",  "missing.gguf", "wide.gguf",  "no_embd.gguf"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        unlink(temp_path(path, sizeof path, names[i]));
    }
    rmdir(folder);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_llama_XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(folder) == NULL) {
        fprintf(stderr, "cannot create a folder from %s\n", folder);
        return 1;
    }
    MR_RUN(gguf_round_trip_f32);
    MR_RUN(gguf_round_trip_q8_0);
    MR_RUN(gguf_load_rejects_bad_files);
    remove_folder();
    return mr_test_finish();
}
