/*
 * Llama model objects: config checks, the weight list, random
 * initialisation, and conversions between trainable F32 parameters and
 * typed (possibly quantised) inference weights.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_internal.h"
#include "multiround/rng.h"

/* Standard deviation of the normal initialisation of matrices, as in the
 * initializer_range of Hugging Face's Llama config. */
#define LLAMA_INIT_STD 0.02f

/* Upper bound on any one size of the config. Larger values are a bug or a
 * corrupt file, and the bound keeps every product of two sizes in int64. */
#define LLAMA_SIZE_LIMIT (1 << 24)

/* GGUF name suffix and whether the weight is a 1-D vector, per block kind. */
static const struct {
    const char *suffix;
    bool vector;
} block_kind_info[LLAMA_BLOCK_KINDS] = {
    [LLAMA_ATTN_NORM] = {"attn_norm.weight", true},
    [LLAMA_ATTN_Q] = {"attn_q.weight", false},
    [LLAMA_ATTN_K] = {"attn_k.weight", false},
    [LLAMA_ATTN_V] = {"attn_v.weight", false},
    [LLAMA_ATTN_Q_BIAS] = {"attn_q.bias", true},
    [LLAMA_ATTN_K_BIAS] = {"attn_k.bias", true},
    [LLAMA_ATTN_V_BIAS] = {"attn_v.bias", true},
    [LLAMA_ATTN_OUTPUT] = {"attn_output.weight", false},
    [LLAMA_FFN_NORM] = {"ffn_norm.weight", true},
    [LLAMA_FFN_GATE] = {"ffn_gate.weight", false},
    [LLAMA_FFN_UP] = {"ffn_up.weight", false},
    [LLAMA_FFN_DOWN] = {"ffn_down.weight", false},
};

/* Checks that one size field lies in [1, LLAMA_SIZE_LIMIT]. */
static bool size_valid(const char *field, int value, mr_error *err) {
    if (value < 1 || value > LLAMA_SIZE_LIMIT) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "llama: config.%s must be in [1, %d], got %d", field, LLAMA_SIZE_LIMIT,
                     value);
        return false;
    }
    return true;
}

mr_status mr_llama_config_validate(const mr_llama_config *config, mr_error *err) {
    if (config == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "llama: config is NULL");
    }

    const struct {
        const char *field;
        int value;
    } sizes[] = {
        {"vocab_size", config->vocab_size}, {"dim", config->dim},
        {"layers", config->layers},         {"heads", config->heads},
        {"kv_heads", config->kv_heads},     {"head_dim", config->head_dim},
        {"ffn_dim", config->ffn_dim},       {"context_length", config->context_length},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (!size_valid(sizes[i].field, sizes[i].value, err)) {
            return MR_ERR_INVALID_ARGUMENT;
        }
    }

    if (config->heads % config->kv_heads != 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: config.heads (%d) must be a multiple of config.kv_heads (%d)",
                            config->heads, config->kv_heads);
    }
    if (config->head_dim % 2 != 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: config.head_dim must be even for rotary positions, got %d",
                            config->head_dim);
    }
    if (!(config->rope_base > 0.0f) || !isfinite(config->rope_base)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: config.rope_base must be finite and > 0, got %g",
                            (double)config->rope_base);
    }
    if (config->rope_layout != MR_ROPE_ADJACENT && config->rope_layout != MR_ROPE_HALVES) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: config.rope_layout must be MR_ROPE_ADJACENT or "
                            "MR_ROPE_HALVES, got %d",
                            (int)config->rope_layout);
    }
    if (!(config->rms_eps > 0.0f) || !isfinite(config->rms_eps)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: config.rms_eps must be finite and > 0, got %g",
                            (double)config->rms_eps);
    }
    return MR_OK;
}

/* Fills the GGUF shape of a block weight: ne[0] inputs, ne[1] outputs. */
static void block_kind_shape(const mr_llama_config *c, enum llama_block_kind kind,
                             int64_t ne[2]) {
    int64_t q_width = llama_q_width(c), kv_width = llama_kv_width(c);
    ne[1] = 1;
    switch (kind) {
    case LLAMA_ATTN_NORM:
    case LLAMA_FFN_NORM:
        ne[0] = c->dim;
        break;
    case LLAMA_ATTN_Q:
        ne[0] = c->dim;
        ne[1] = q_width;
        break;
    case LLAMA_ATTN_K:
    case LLAMA_ATTN_V:
        ne[0] = c->dim;
        ne[1] = kv_width;
        break;
    case LLAMA_ATTN_Q_BIAS:
        ne[0] = q_width;
        break;
    case LLAMA_ATTN_K_BIAS:
    case LLAMA_ATTN_V_BIAS:
        ne[0] = kv_width;
        break;
    case LLAMA_ATTN_OUTPUT:
        ne[0] = q_width;
        ne[1] = c->dim;
        break;
    case LLAMA_FFN_GATE:
    case LLAMA_FFN_UP:
        ne[0] = c->dim;
        ne[1] = c->ffn_dim;
        break;
    case LLAMA_FFN_DOWN:
        ne[0] = c->ffn_dim;
        ne[1] = c->dim;
        break;
    case LLAMA_BLOCK_KINDS:
        break;
    }
}

static bool block_kind_used(const mr_llama_config *c, enum llama_block_kind kind) {
    bool bias = kind == LLAMA_ATTN_Q_BIAS || kind == LLAMA_ATTN_K_BIAS ||
                kind == LLAMA_ATTN_V_BIAS;
    return !bias || c->qkv_bias;
}

/* Sets name and shape of weight index; n_dims follows from vector. */
static void describe_weight(mr_llama *model, int index, const char *name, bool vector,
                            const int64_t ne[2]) {
    mr_llama_weight *w = &model->weights[index];
    snprintf(model->names[index], LLAMA_NAME_MAX, "%s", name);
    w->name = model->names[index];
    w->type = MR_QTYPE_F32;
    w->n_dims = vector ? 1 : 2;
    w->ne[0] = ne[0];
    w->ne[1] = vector ? 1 : ne[1];
    w->data = NULL;
    w->param = NULL;
}

mr_llama *llama_create_layout(const mr_llama_config *config, mr_error *err) {
    if (mr_llama_config_validate(config, err) != MR_OK) {
        return NULL;
    }

    /* Count the weights: the embedding, each block's, the final norm and
     * the output matrix unless it is tied. */
    int per_block = 0;
    for (int kind = 0; kind < LLAMA_BLOCK_KINDS; kind++) {
        per_block += block_kind_used(config, kind) ? 1 : 0;
    }
    int count = 1 + config->layers * per_block + 1 + (config->tied_output ? 0 : 1);

    mr_llama *model = calloc(1, sizeof *model);
    if (model != NULL) {
        model->weights = calloc((size_t)count, sizeof *model->weights);
        model->names = calloc((size_t)count, sizeof *model->names);
        model->owned = calloc((size_t)count, sizeof *model->owned);
        model->block_slots = malloc((size_t)config->layers * LLAMA_BLOCK_KINDS *
                                    sizeof *model->block_slots);
    }
    if (model == NULL || model->weights == NULL || model->names == NULL ||
        model->owned == NULL || model->block_slots == NULL) {
        mr_llama_free(model);
        mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory for a list of %d weights", count);
        return NULL;
    }
    model->config = *config;
    model->weight_count = count;

    /* Name and shape every weight in storage order. */
    int index = 0;
    int64_t ne[2] = {config->dim, config->vocab_size};
    model->token_embd = index;
    describe_weight(model, index++, "token_embd.weight", false, ne);
    for (int layer = 0; layer < config->layers; layer++) {
        for (int kind = 0; kind < LLAMA_BLOCK_KINDS; kind++) {
            int *slot = &model->block_slots[layer * LLAMA_BLOCK_KINDS + kind];
            if (!block_kind_used(config, kind)) {
                *slot = -1;
                continue;
            }
            char name[LLAMA_NAME_MAX];
            snprintf(name, sizeof name, "blk.%d.%s", layer, block_kind_info[kind].suffix);
            block_kind_shape(config, kind, ne);
            *slot = index;
            describe_weight(model, index++, name, block_kind_info[kind].vector, ne);
        }
    }
    ne[0] = config->dim;
    model->output_norm = index;
    describe_weight(model, index++, "output_norm.weight", true, ne);
    model->output = model->token_embd;
    if (!config->tied_output) {
        ne[1] = config->vocab_size;
        model->output = index;
        describe_weight(model, index++, "output.weight", false, ne);
    }
    return model;
}

const mr_llama_weight *llama_block_weight(const mr_llama *model, int layer,
                                          enum llama_block_kind kind) {
    int slot = model->block_slots[layer * LLAMA_BLOCK_KINDS + kind];
    return slot < 0 ? NULL : &model->weights[slot];
}

void llama_set_weight_data(mr_llama *model, int index, mr_qtype type, const void *data,
                           bool owned) {
    free(model->owned[index]);
    model->owned[index] = owned ? (void *)data : NULL;
    model->weights[index].type = type;
    model->weights[index].data = data;
}

size_t llama_widest_row(const mr_llama *model) {
    size_t widest = 1;
    for (int i = 0; i < model->weight_count; i++) {
        size_t width = (size_t)model->weights[i].ne[0];
        widest = width > widest ? width : widest;
    }
    return widest;
}

void llama_weight_row(const mr_llama_weight *w, int64_t r, float *dst) {
    size_t row_bytes = mr_qtype_row_bytes(w->type, w->ne[0]);
    mr_dequantize_row(w->type, (const char *)w->data + (size_t)r * row_bytes, dst, w->ne[0]);
}

/*
 * Creates the parameter set with one F32 parameter per weight, shaped
 * [ne[1], ne[0]] (or [ne[0]] for vectors) and named as the weight.
 */
static mr_paramset *create_paramset(const mr_llama *model, mr_error *err) {
    mr_paramset *params = mr_paramset_create();
    if (params == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory for the parameter set");
        return NULL;
    }
    for (int i = 0; i < model->weight_count; i++) {
        const mr_llama_weight *w = &model->weights[i];
        int64_t shape[2] = {w->ne[1], w->ne[0]};
        int64_t vector_shape[1] = {w->ne[0]};
        int index = w->n_dims == 1 ? mr_paramset_declare(params, w->name, 1, vector_shape, err)
                                   : mr_paramset_declare(params, w->name, 2, shape, err);
        if (index < 0) {
            mr_paramset_free(params);
            return NULL;
        }
    }
    if (mr_paramset_finalize(params, err) != MR_OK) {
        mr_paramset_free(params);
        return NULL;
    }
    return params;
}

/* Points every weight at its F32 parameter, dropping other storage. */
static void attach_params(mr_llama *model, mr_paramset *params) {
    model->params = params;
    for (int i = 0; i < model->weight_count; i++) {
        mr_tensor *param = mr_paramset_get(params, i);
        model->weights[i].param = param;
        llama_set_weight_data(model, i, MR_QTYPE_F32, param->data, false);
    }
    mr_gguf_close(model->gguf);
    model->gguf = NULL;
}

mr_llama *mr_llama_init(const mr_llama_config *config, uint64_t seed, mr_error *err) {
    mr_llama *model = llama_create_layout(config, err);
    if (model == NULL) {
        return NULL;
    }
    mr_paramset *params = create_paramset(model, err);
    if (params == NULL) {
        mr_llama_free(model);
        return NULL;
    }
    attach_params(model, params);

    /* Each weight draws from its own child stream, so adding a weight
     * later leaves the values of the others unchanged. */
    mr_rng root;
    mr_rng_init(&root, seed);
    for (int i = 0; i < model->weight_count; i++) {
        mr_llama_weight *w = &model->weights[i];
        bool bias = strstr(w->name, ".bias") != NULL;
        if (w->n_dims == 2) {
            mr_rng rng = mr_rng_split(&root, (uint64_t)i);
            mr_tensor_init_normal(w->param, 0.0f, LLAMA_INIT_STD, &rng);
        } else {
            mr_tensor_fill(w->param, bias ? 0.0f : 1.0f);
        }
    }
    return model;
}

void mr_llama_free(mr_llama *model) {
    if (model == NULL) {
        return;
    }
    if (model->owned != NULL) {
        for (int i = 0; i < model->weight_count; i++) {
            free(model->owned[i]);
        }
    }
    mr_paramset_free(model->params);
    mr_gguf_close(model->gguf);
    free(model->owned);
    free(model->weights);
    free(model->names);
    free(model->block_slots);
    free(model);
}

const mr_llama_config *mr_llama_get_config(const mr_llama *model) {
    return &model->config;
}

int mr_llama_weight_count(const mr_llama *model) {
    return model->weight_count;
}

const mr_llama_weight *mr_llama_weight_at(const mr_llama *model, int index) {
    if (index < 0 || index >= model->weight_count) {
        return NULL;
    }
    return &model->weights[index];
}

const mr_llama_weight *mr_llama_find_weight(const mr_llama *model, const char *name) {
    for (int i = 0; i < model->weight_count; i++) {
        if (strcmp(model->weights[i].name, name) == 0) {
            return &model->weights[i];
        }
    }
    return NULL;
}

mr_paramset *mr_llama_params(const mr_llama *model) {
    return model->params;
}

mr_status mr_llama_make_trainable(mr_llama *model, mr_error *err) {
    if (model->params != NULL) {
        return MR_OK;
    }
    mr_paramset *params = create_paramset(model, err);
    if (params == NULL) {
        return err != NULL ? err->status : MR_ERR_NO_MEMORY;
    }

    /* Decode every stored row into the parameter before the old storage
     * goes away. */
    for (int i = 0; i < model->weight_count; i++) {
        const mr_llama_weight *w = &model->weights[i];
        float *dst = mr_paramset_get(params, i)->data;
        for (int64_t r = 0; r < w->ne[1]; r++) {
            llama_weight_row(w, r, dst + r * w->ne[0]);
        }
    }
    attach_params(model, params);
    return MR_OK;
}

mr_qtype llama_storage_type(const mr_llama_weight *w, mr_qtype requested) {
    if (w->n_dims != 2) {
        return MR_QTYPE_F32;
    }
    int block = mr_qtype_block_size(requested);
    return block > 1 && w->ne[0] % block != 0 ? MR_QTYPE_F16 : requested;
}

mr_status mr_llama_quantize(mr_llama *model, mr_qtype type, mr_error *err) {
    int block = mr_qtype_block_size(type);
    if (block < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "llama: unknown storage type %d",
                            (int)type);
    }
    for (int i = 0; i < model->weight_count; i++) {
        const mr_llama_weight *w = &model->weights[i];
        if (w->n_dims == 2 && llama_storage_type(w, type) != type) {
            mr_log(MR_LOG_WARN, "llama",
                   "storing '%s' as f16, not %s: its rows of %lld elements are not a "
                   "multiple of the block size %d",
                   w->name, mr_qtype_name(type), (long long)w->ne[0], block);
        }
    }

    /* Encode into new buffers first, so that a failed allocation leaves
     * the model as it was. */
    void **fresh = calloc((size_t)model->weight_count, sizeof *fresh);
    float *row = NULL;
    row = malloc(llama_widest_row(model) * sizeof *row);
    bool ok = fresh != NULL && row != NULL;
    for (int i = 0; ok && i < model->weight_count; i++) {
        const mr_llama_weight *w = &model->weights[i];
        mr_qtype target = llama_storage_type(w, type);
        size_t row_bytes = mr_qtype_row_bytes(target, w->ne[0]);
        char *data = malloc(row_bytes * (size_t)w->ne[1]);
        if (data == NULL) {
            ok = false;
            break;
        }
        for (int64_t r = 0; r < w->ne[1]; r++) {
            llama_weight_row(w, r, row);
            mr_quantize_row(target, row, data + (size_t)r * row_bytes, w->ne[0]);
        }
        fresh[i] = data;
    }
    free(row);
    if (!ok) {
        for (int i = 0; fresh != NULL && i < model->weight_count; i++) {
            free(fresh[i]);
        }
        free(fresh);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory to store the weights as %s",
                            mr_qtype_name(type));
    }

    /* Swap in the new storage; parameters and the mapping are unused now. */
    for (int i = 0; i < model->weight_count; i++) {
        mr_qtype target = llama_storage_type(&model->weights[i], type);
        llama_set_weight_data(model, i, target, fresh[i], true);
        model->weights[i].param = NULL;
    }
    free(fresh);
    mr_paramset_free(model->params);
    model->params = NULL;
    mr_gguf_close(model->gguf);
    model->gguf = NULL;
    return MR_OK;
}
