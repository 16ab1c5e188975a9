/*
 * Llama models in GGUF files: loading with the weights left in the file's
 * mapping, and saving with a chosen storage type for the matrices.
 *
 * Keys read, with <arch> the value of general.architecture:
 *   <arch>.embedding_length, .block_count, .feed_forward_length,
 *   .context_length, .attention.head_count (required);
 *   .attention.head_count_kv (default head_count),
 *   .attention.key_length (default embedding_length / head_count),
 *   .rope.freq_base (default 10000), .attention.layer_norm_rms_epsilon
 *   (default 1e-5), .rope.dimension_count (must equal the head width).
 * The vocabulary size is token_embd.weight's ne[1].
 *
 * "llama" files rotate adjacent pairs: llama.cpp's converter permutes the
 * q and k rows of Hugging Face checkpoints so that this holds. "qwen2"
 * files rotate split halves (llama.cpp's NeoX rope type).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_internal.h"

/* Keys under "<arch>." have at most this many bytes in all. */
#define KEY_MAX 128

/* Reads the u32 key "<arch>.<suffix>" into *out. When fallback_used is not
 * NULL a missing key leaves *out unchanged and sets *fallback_used. */
static mr_status read_u32(const mr_gguf *gguf, const char *arch, const char *suffix, int *out,
                          bool *fallback_used, mr_error *err) {
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (fallback_used != NULL && mr_gguf_find_key(gguf, key) < 0) {
        *fallback_used = true;
        return MR_OK;
    }
    uint32_t value = 0;
    mr_status status = mr_gguf_get_u32(gguf, key, &value, err);
    if (status != MR_OK) {
        return status;
    }
    if (value > (uint32_t)INT32_MAX) {
        return mr_error_set(err, MR_ERR_FORMAT, "llama: key %s = %" PRIu32 " is too large", key,
                            value);
    }
    *out = (int)value;
    return MR_OK;
}

/* Reads the optional f32 key "<arch>.<suffix>" into *out, if present. */
static mr_status read_optional_f32(const mr_gguf *gguf, const char *arch, const char *suffix,
                                   float *out, mr_error *err) {
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (mr_gguf_find_key(gguf, key) < 0) {
        return MR_OK;
    }
    return mr_gguf_get_f32(gguf, key, out, err);
}

/* Fills config from the file's keys and tensors. */
static mr_status read_config(const mr_gguf *gguf, const char *path, mr_llama_config *config,
                             mr_error *err) {
    const char *arch_bytes = NULL;
    size_t arch_len = 0;
    mr_status status = mr_gguf_get_string(gguf, "general.architecture", &arch_bytes, &arch_len,
                                          err);
    if (status != MR_OK) {
        return status;
    }
    char arch[32];
    if (arch_len >= sizeof arch) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "llama: '%s' has an architecture name of %zu bytes; multiround "
                            "reads \"llama\" and \"qwen2\"",
                            path, arch_len);
    }
    memcpy(arch, arch_bytes, arch_len);
    arch[arch_len] = '\0';
    if (strcmp(arch, "llama") == 0) {
        config->rope_layout = MR_ROPE_ADJACENT;
    } else if (strcmp(arch, "qwen2") == 0) {
        config->rope_layout = MR_ROPE_HALVES;
    } else {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "llama: '%s' has architecture \"%s\"; multiround reads \"llama\" "
                            "and \"qwen2\"",
                            path, arch);
    }

    /* Sizes. */
    if ((status = read_u32(gguf, arch, "embedding_length", &config->dim, NULL, err)) != MR_OK ||
        (status = read_u32(gguf, arch, "block_count", &config->layers, NULL, err)) != MR_OK ||
        (status = read_u32(gguf, arch, "feed_forward_length", &config->ffn_dim, NULL, err)) !=
            MR_OK ||
        (status = read_u32(gguf, arch, "context_length", &config->context_length, NULL, err)) !=
            MR_OK ||
        (status = read_u32(gguf, arch, "attention.head_count", &config->heads, NULL, err)) !=
            MR_OK) {
        return status;
    }
    bool missing = false;
    config->kv_heads = config->heads;
    status = read_u32(gguf, arch, "attention.head_count_kv", &config->kv_heads, &missing, err);
    if (status != MR_OK) {
        return status;
    }
    config->head_dim = config->heads > 0 ? config->dim / config->heads : 0;
    status = read_u32(gguf, arch, "attention.key_length", &config->head_dim, &missing, err);
    if (status != MR_OK) {
        return status;
    }
    int rope_dims = config->head_dim;
    status = read_u32(gguf, arch, "rope.dimension_count", &rope_dims, &missing, err);
    if (status != MR_OK) {
        return status;
    }
    if (rope_dims != config->head_dim) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "llama: '%s' rotates %d of %d dimensions per head; multiround "
                            "supports rotary embeddings over whole heads only",
                            path, rope_dims, config->head_dim);
    }
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (mr_gguf_find_key(gguf, key) >= 0 || mr_gguf_find_tensor(gguf, "rope_freqs.weight")) {
        /* NOTE: a scaling type of "none" would be harmless but is rejected too. */
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "llama: '%s' uses rope scaling (%s or rope_freqs.weight), which "
                            "multiround does not implement",
                            path, key);
    }

    /* Numerics. */
    config->rope_base = 10000.0f;
    config->rms_eps = 1e-5f;
    if ((status = read_optional_f32(gguf, arch, "rope.freq_base", &config->rope_base, err)) !=
            MR_OK ||
        (status = read_optional_f32(gguf, arch, "attention.layer_norm_rms_epsilon",
                                    &config->rms_eps, err)) != MR_OK) {
        return status;
    }

    /* The vocabulary, the output and the biases follow from the tensors. */
    const mr_gguf_tensor *embedding = mr_gguf_find_tensor(gguf, "token_embd.weight");
    if (embedding == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND, "llama: '%s' has no tensor token_embd.weight",
                            path);
    }
    if (embedding->ne[1] > INT32_MAX) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llama: '%s': token_embd.weight has %" PRId64 " rows", path,
                            embedding->ne[1]);
    }
    config->vocab_size = (int)embedding->ne[1];
    config->tied_output = mr_gguf_find_tensor(gguf, "output.weight") == NULL;
    config->qkv_bias = mr_gguf_find_tensor(gguf, "blk.0.attn_q.bias") != NULL;
    return mr_llama_config_validate(config, err);
}

/* Points weight index at its tensor in the file, after checking shape and
 * type; 1-D weights are decoded into F32 memory the model owns. */
static mr_status attach_tensor(mr_llama *model, int index, const char *path, mr_error *err) {
    const mr_llama_weight *w = &model->weights[index];
    const mr_gguf_tensor *t = mr_gguf_find_tensor(model->gguf, w->name);
    if (t == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND, "llama: '%s' has no tensor %s", path, w->name);
    }
    bool shape_ok = t->n_dims == w->n_dims && t->ne[0] == w->ne[0] &&
                    (w->n_dims == 1 || t->ne[1] == w->ne[1]);
    if (!shape_ok) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llama: '%s': tensor %s has %d dimensions [%" PRId64 ", %" PRId64
                            "], expected %d [%" PRId64 ", %" PRId64 "] from the model's keys",
                            path, w->name, t->n_dims, t->ne[0], t->ne[1], w->n_dims, w->ne[0],
                            w->ne[1]);
    }
    int block = mr_qtype_block_size(t->type);
    if (block < 1 || t->ne[0] % block != 0) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "llama: '%s': tensor %s has storage type %d with rows of %" PRId64
                            " elements, which multiround cannot read",
                            path, w->name, (int)t->type, t->ne[0]);
    }

    /* A file with general.alignment below 4 may place data where float
     * loads are misaligned; such a tensor is copied to aligned memory. */
    void *aligned = NULL;
    const void *data = t->data;
    if ((uintptr_t)data % sizeof(float) != 0) {
        aligned = malloc(t->size > 0 ? t->size : 1);
        if (aligned == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory for tensor %s",
                                w->name);
        }
        memcpy(aligned, data, t->size);
        data = aligned;
    }

    if (w->n_dims == 2) {
        llama_set_weight_data(model, index, t->type, data, aligned != NULL);
        return MR_OK;
    }
    float *values = malloc((size_t)t->ne[0] * sizeof *values);
    if (values == NULL) {
        free(aligned);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory for tensor %s", w->name);
    }
    mr_dequantize_row(t->type, data, values, t->ne[0]);
    free(aligned);
    llama_set_weight_data(model, index, MR_QTYPE_F32, values, true);
    return MR_OK;
}

/* Logs the configuration, the tensor count per storage type and the bytes. */
static void log_loaded(const mr_llama *model, const char *path) {
    const mr_llama_config *c = &model->config;
    static const mr_qtype types[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16, MR_QTYPE_Q8_0,
                                     MR_QTYPE_Q4_0};
    int counts[sizeof types / sizeof types[0]] = {0};
    double bytes = 0.0;
    for (int i = 0; i < model->weight_count; i++) {
        const mr_llama_weight *w = &model->weights[i];
        bytes += (double)mr_qtype_row_bytes(w->type, w->ne[0]) * (double)w->ne[1];
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            counts[k] += w->type == types[k] ? 1 : 0;
        }
    }
    char by_type[160] = "";
    size_t used = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        if (counts[k] > 0 && used < sizeof by_type) {
            used += (size_t)snprintf(by_type + used, sizeof by_type - used, "%s%s %d",
                                     used > 0 ? ", " : "", mr_qtype_name(types[k]), counts[k]);
        }
    }
    mr_log(MR_LOG_INFO, "llama",
           "loaded '%s': architecture %s, %s rope, V %d, C %d, L %d, heads %d (kv %d) of D %d, F %d, context %d, "
           "theta %g, eps %g%s%s; %d weights (%s), %.2f MiB",
           path, c->rope_layout == MR_ROPE_ADJACENT ? "llama" : "qwen2",
           c->rope_layout == MR_ROPE_ADJACENT ? "adjacent-pair" : "split-half",
           c->vocab_size, c->dim, c->layers, c->heads, c->kv_heads, c->head_dim, c->ffn_dim,
           c->context_length, (double)c->rope_base, (double)c->rms_eps,
           c->qkv_bias ? ", qkv bias" : "", c->tied_output ? ", tied output" : "",
           model->weight_count, by_type, bytes / 1048576.0);
}

mr_llama *mr_llama_load_gguf(const char *path, mr_error *err) {
    mr_gguf *gguf = NULL;
    if (mr_gguf_open(path, &gguf, err) != MR_OK) {
        return NULL;
    }
    mr_llama_config config = {0};
    if (read_config(gguf, path, &config, err) != MR_OK) {
        mr_gguf_close(gguf);
        return NULL;
    }
    mr_llama *model = llama_create_layout(&config, err);
    if (model == NULL) {
        mr_gguf_close(gguf);
        return NULL;
    }
    model->gguf = gguf;

    for (int i = 0; i < model->weight_count; i++) {
        if (attach_tensor(model, i, path, err) != MR_OK) {
            mr_llama_free(model);
            return NULL;
        }
    }

    /* Tensors the model does not use would be ignored silently. */
    int64_t extra = mr_gguf_tensor_count(gguf) - model->weight_count;
    if (extra > 0) {
        mr_log(MR_LOG_WARN, "llama", "'%s' has %" PRId64 " tensors the model does not use", path,
               extra);
    }
    log_loaded(model, path);
    return model;
}

/* Sets the model's keys on the writer. */
static mr_status write_keys(const mr_llama *model, mr_gguf_writer *w, mr_error *err) {
    const mr_llama_config *c = &model->config;
    /* NOTE: llama.cpp expects q/k/v biases in every "qwen2" file. This
     * loader takes biases from the tensors present, so it reads any
     * combination, but llama.cpp may reject ADJACENT rope with biases or
     * HALVES rope without them. Not checked against llama.cpp. */
    const char *arch = c->rope_layout == MR_ROPE_ADJACENT ? "llama" : "qwen2";
    char key[KEY_MAX];
    mr_status status = mr_gguf_writer_set_string(w, "general.architecture", arch, err);

    const struct {
        const char *suffix;
        int value;
    } sizes[] = {
        {"context_length", c->context_length},
        {"embedding_length", c->dim},
        {"block_count", c->layers},
        {"feed_forward_length", c->ffn_dim},
        {"attention.head_count", c->heads},
        {"attention.head_count_kv", c->kv_heads},
        {"attention.key_length", c->head_dim},
        {"attention.value_length", c->head_dim},
        {"rope.dimension_count", c->head_dim},
        {"vocab_size", c->vocab_size},
    };
    for (size_t i = 0; status == MR_OK && i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, sizes[i].suffix);
        status = mr_gguf_writer_set_u32(w, key, (uint32_t)sizes[i].value, err);
    }
    if (status == MR_OK) {
        snprintf(key, sizeof key, "%s.rope.freq_base", arch);
        status = mr_gguf_writer_set_f32(w, key, c->rope_base, err);
    }
    if (status == MR_OK) {
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
        status = mr_gguf_writer_set_f32(w, key, c->rms_eps, err);
    }
    return status;
}

mr_status mr_llama_save_gguf(const mr_llama *model, const char *path, mr_qtype type,
                             const mr_gguf *copy_kv_from, mr_error *err) {
    int block = mr_qtype_block_size(type);
    if (block < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "llama: unknown storage type %d",
                            (int)type);
    }
    mr_gguf_writer *w = mr_gguf_writer_create();
    void **encoded = calloc((size_t)model->weight_count, sizeof *encoded);
    float *row = malloc(llama_widest_row(model) * sizeof *row);
    if (w == NULL || encoded == NULL || row == NULL) {
        mr_gguf_writer_free(w);
        free(encoded);
        free(row);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory to write '%s'", path);
    }

    mr_status status = write_keys(model, w, err);
    if (status == MR_OK && copy_kv_from != NULL) {
        status = mr_gguf_writer_copy_kv(w, copy_kv_from, err);
    }

    /* Matrices in the requested type (1-D weights stay F32), encoded into
     * buffers that must outlive the write. */
    for (int i = 0; status == MR_OK && i < model->weight_count; i++) {
        const mr_llama_weight *weight = &model->weights[i];
        mr_qtype target = llama_storage_type(weight, type);
        const void *data = weight->data;
        if (weight->n_dims == 2 && target != type) {
            mr_log(MR_LOG_WARN, "llama",
                   "writing '%s' as f16, not %s: its rows of %lld elements are not a "
                   "multiple of the block size %d",
                   weight->name, mr_qtype_name(type), (long long)weight->ne[0], block);
        }
        if (target != weight->type) {
            size_t row_bytes = mr_qtype_row_bytes(target, weight->ne[0]);
            char *buffer = malloc(row_bytes * (size_t)weight->ne[1]);
            if (buffer == NULL) {
                status = mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory to encode %s",
                                      weight->name);
                break;
            }
            for (int64_t r = 0; r < weight->ne[1]; r++) {
                llama_weight_row(weight, r, row);
                mr_quantize_row(target, row, buffer + (size_t)r * row_bytes, weight->ne[0]);
            }
            encoded[i] = buffer;
            data = buffer;
        }
        status = mr_gguf_writer_add_tensor(w, weight->name, target, weight->n_dims, weight->ne,
                                           data, err);
    }
    if (status == MR_OK) {
        status = mr_gguf_writer_write(w, path, err);
    }

    for (int i = 0; i < model->weight_count; i++) {
        free(encoded[i]);
    }
    free(encoded);
    free(row);
    mr_gguf_writer_free(w);
    return status;
}
