/*
 * LoRA adapters on a Llama model: creation, the adapted forward pass on
 * engine operations, merging into the base weights, and PEFT folders.
 *
 * The forward pass is llama_forward_logits() of llama_train.c, which adds
 * the adapter's term to each projection through a hook, so that with the
 * adapter off its logits are bit for bit those of mr_llama_logits(). The
 * base weights enter as constant tensors that share the model's memory
 * (or, for types other than F32, hold a decoded copy), so backward
 * computes no gradient for them, even when the model is trainable.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"
#include "llama_internal.h"
#include "multiround/fileio.h"
#include "multiround/lora.h"
#include "multiround/safetensors.h"

#define LORA_KINDS 7
#define LORA_MAX_RANK 65536
#define LORA_PATH_MAX 4096
#define LORA_NAME_MAX 160
#define LORA_CONFIG_MAX_BYTES (1u << 20)

/* Each target: its block weight, PEFT module name and GGUF kind prefix. */
static const struct {
    mr_lora_target target;
    enum llama_block_kind kind;
    const char *module;
    const char *gguf;
} lora_kinds[LORA_KINDS] = {
    {MR_LORA_Q, LLAMA_ATTN_Q, "q_proj", "attn_q"},
    {MR_LORA_K, LLAMA_ATTN_K, "k_proj", "attn_k"},
    {MR_LORA_V, LLAMA_ATTN_V, "v_proj", "attn_v"},
    {MR_LORA_O, LLAMA_ATTN_OUTPUT, "o_proj", "attn_output"},
    {MR_LORA_GATE, LLAMA_FFN_GATE, "gate_proj", "ffn_gate"},
    {MR_LORA_UP, LLAMA_FFN_UP, "up_proj", "ffn_up"},
    {MR_LORA_DOWN, LLAMA_FFN_DOWN, "down_proj", "ffn_down"},
};

struct mr_lora {
    mr_lora_config config;
    float scaling;          /* alpha / r */
    mr_llama *model;        /* borrowed */
    mr_paramset *params;
    mr_tensor **a, **b;     /* [layers][LORA_KINDS], NULL where not targeted */
    mr_rng rng;             /* dropout masks */
    bool enabled;
};

/* ------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------ */

static mr_status validate_config(const mr_lora_config *c, mr_error *err) {
    if (c == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "lora: config is NULL");
    }
    if (c->rank < 1 || c->rank > LORA_MAX_RANK) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "lora: rank must be in [1, %d], got %d",
                            LORA_MAX_RANK, c->rank);
    }
    if (!(c->alpha > 0.0f) || !isfinite(c->alpha)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "lora: alpha must be finite and > 0, got %g", (double)c->alpha);
    }
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "lora: dropout must be in [0, 1), got %g",
                            (double)c->dropout);
    }
    if (c->targets == 0 || (c->targets & ~(unsigned)MR_LORA_ALL) != 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "lora: targets must be a non-empty set of MR_LORA_* bits, got 0x%x",
                            c->targets);
    }
    return MR_OK;
}

/* Declares A and B of every targeted layer, in layer and kind order. */
static mr_status declare_params(mr_lora *lora, mr_error *err) {
    const mr_llama_config *mc = &lora->model->config;
    int rank = lora->config.rank;
    for (int layer = 0; layer < mc->layers; layer++) {
        for (int k = 0; k < LORA_KINDS; k++) {
            if ((lora->config.targets & lora_kinds[k].target) == 0) {
                continue;
            }
            const mr_llama_weight *w = llama_block_weight(lora->model, layer, lora_kinds[k].kind);
            char name[LLAMA_NAME_MAX];
            int64_t a_shape[2] = {rank, w->ne[0]};
            int64_t b_shape[2] = {w->ne[1], rank};
            snprintf(name, sizeof name, "blk.%d.%s.lora_a", layer, lora_kinds[k].gguf);
            if (mr_paramset_declare(lora->params, name, 2, a_shape, err) < 0) {
                return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
            }
            snprintf(name, sizeof name, "blk.%d.%s.lora_b", layer, lora_kinds[k].gguf);
            if (mr_paramset_declare(lora->params, name, 2, b_shape, err) < 0) {
                return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
            }
        }
    }
    return mr_paramset_finalize(lora->params, err);
}

mr_lora *mr_lora_create(mr_llama *model, const mr_lora_config *config, uint64_t seed,
                        mr_error *err) {
    if (model == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "lora: model is NULL");
        return NULL;
    }
    if (validate_config(config, err) != MR_OK) {
        return NULL;
    }
    int layers = model->config.layers;
    mr_lora *lora = calloc(1, sizeof *lora);
    if (lora != NULL) {
        lora->a = calloc((size_t)layers * LORA_KINDS, sizeof *lora->a);
        lora->b = calloc((size_t)layers * LORA_KINDS, sizeof *lora->b);
        lora->params = mr_paramset_create();
    }
    if (lora == NULL || lora->a == NULL || lora->b == NULL || lora->params == NULL) {
        mr_lora_free(lora);
        mr_error_set(err, MR_ERR_NO_MEMORY, "lora: no memory for an adapter of %d layers",
                     layers);
        return NULL;
    }
    lora->config = *config;
    lora->scaling = config->alpha / (float)config->rank;
    lora->model = model;
    lora->enabled = true;
    if (declare_params(lora, err) != MR_OK) {
        mr_lora_free(lora);
        return NULL;
    }

    /* A from U(-1/sqrt(in), 1/sqrt(in)), each from its own child stream;
     * B stays zero. Dropout draws from one more child stream. */
    mr_rng root;
    mr_rng_init(&root, seed);
    int index = 0;
    for (int layer = 0; layer < layers; layer++) {
        for (int k = 0; k < LORA_KINDS; k++) {
            if ((config->targets & lora_kinds[k].target) == 0) {
                continue;
            }
            mr_tensor *a = mr_paramset_get(lora->params, index++);
            mr_tensor *b = mr_paramset_get(lora->params, index++);
            float bound = 1.0f / sqrtf((float)a->shape[1]);
            mr_rng rng = mr_rng_split(&root, (uint64_t)(layer * LORA_KINDS + k));
            mr_tensor_init_uniform(a, -bound, bound, &rng);
            lora->a[layer * LORA_KINDS + k] = a;
            lora->b[layer * LORA_KINDS + k] = b;
        }
    }
    lora->rng = mr_rng_split(&root, (uint64_t)layers * LORA_KINDS);
    return lora;
}

void mr_lora_free(mr_lora *lora) {
    if (lora == NULL) {
        return;
    }
    mr_paramset_free(lora->params);
    free(lora->a);
    free(lora->b);
    free(lora);
}

const mr_lora_config *mr_lora_get_config(const mr_lora *lora) {
    return &lora->config;
}

mr_paramset *mr_lora_params(const mr_lora *lora) {
    return lora->params;
}

void mr_lora_set_enabled(mr_lora *lora, bool enabled) {
    lora->enabled = enabled;
}

bool mr_lora_enabled(const mr_lora *lora) {
    return lora->enabled;
}

/* ------------------------------------------------------------------------
 * Forward pass
 * ------------------------------------------------------------------------ */

/* The llama_adapter_fn of an adapter (data is the mr_lora): adds
 * s * (dropout(x) A^T) B^T to y when the layer is adapted and the adapter
 * is on. */
static mr_tensor *add_adapter_term(void *data, mr_ctx *ctx, mr_tensor *x, mr_tensor *y,
                                   int layer, enum llama_block_kind kind) {
    mr_lora *lora = data;
    int k = 0;
    while (k < LORA_KINDS && lora_kinds[k].kind != kind) {
        k++;
    }
    if (k == LORA_KINDS) {
        return y;
    }
    mr_tensor *a = lora->a[layer * LORA_KINDS + k], *b = lora->b[layer * LORA_KINDS + k];
    if (!lora->enabled || a == NULL || y == NULL) {
        return y;
    }

    mr_tensor *input = x;
    if (lora->config.dropout > 0.0f) {
        input = mr_tensor_dropout(ctx, x, lora->config.dropout, &lora->rng);
    }
    mr_tensor *delta = mr_tensor_linear(ctx, mr_tensor_linear(ctx, input, a, NULL), b, NULL);
    return mr_tensor_add(ctx, y, mr_tensor_scale(ctx, delta, lora->scaling));
}

/* The forward options of an adapter: constant base weights plus its term. */
static llama_forward_options forward_options(mr_lora *lora) {
    llama_forward_options options = {.subsystem = "lora",
                                     .constant_weights = true,
                                     .adapter = add_adapter_term,
                                     .adapter_data = lora,
                                     .adapter_rng = &lora->rng};
    return options;
}

mr_tensor *mr_lora_logits(mr_lora *lora, mr_ctx *ctx, mr_tensor *tokens) {
    llama_forward_options options = forward_options(lora);
    return llama_forward_logits(lora->model, ctx, tokens, &options);
}

mr_tensor *mr_lora_loss(mr_lora *lora, mr_ctx *ctx, mr_tensor *tokens, mr_tensor *targets,
                        mr_tensor *mask) {
    llama_forward_options options = forward_options(lora);
    return llama_forward_loss(lora->model, ctx, tokens, targets, mask, &options);
}

/* ------------------------------------------------------------------------
 * Merging
 * ------------------------------------------------------------------------ */

/* Returns writable F32 values of weight index, converting its storage to
 * F32 memory the model owns when needed. Returns NULL when memory runs out. */
static float *writable_weight(mr_llama *model, int index) {
    mr_llama_weight *w = &model->weights[index];
    if (w->param != NULL) {
        return w->param->data;
    }
    if (w->type == MR_QTYPE_F32 && model->owned[index] != NULL) {
        return model->owned[index];
    }
    float *values = malloc((size_t)(w->ne[0] * w->ne[1]) * sizeof *values);
    if (values == NULL) {
        return NULL;
    }
    for (int64_t r = 0; r < w->ne[1]; r++) {
        llama_weight_row(w, r, values + r * w->ne[0]);
    }
    llama_set_weight_data(model, index, MR_QTYPE_F32, values, true);
    return values;
}

mr_status mr_lora_merge(mr_lora *lora, mr_error *err) {
    mr_llama *model = lora->model;
    for (int layer = 0; layer < model->config.layers; layer++) {
        for (int k = 0; k < LORA_KINDS; k++) {
            const mr_tensor *a = lora->a[layer * LORA_KINDS + k];
            const mr_tensor *b = lora->b[layer * LORA_KINDS + k];
            if (a == NULL) {
                continue;
            }
            int index = model->block_slots[layer * LLAMA_BLOCK_KINDS + lora_kinds[k].kind];
            float *w = writable_weight(model, index);
            if (w == NULL) {
                return mr_error_set(err, MR_ERR_NO_MEMORY, "lora: no memory to merge into %s",
                                    model->weights[index].name);
            }

            /* W[o][i] += s * sum_j B[o][j] A[j][i], summed in a fixed
             * order (rows split across threads). */
            int64_t out = b->shape[0], in = a->shape[1], rank = a->shape[0];
            float scaling = lora->scaling;
            const float *ad = a->data, *bd = b->data;
#pragma omp parallel for schedule(static)
            for (int64_t o = 0; o < out; o++) {
                for (int64_t i = 0; i < in; i++) {
                    float sum = 0.0f;
                    for (int64_t j = 0; j < rank; j++) {
                        sum += bd[o * rank + j] * ad[j * in + i];
                    }
                    w[o * in + i] += scaling * sum;
                }
            }
        }
    }
    lora->enabled = false;
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * PEFT folders
 * ------------------------------------------------------------------------ */

/* Writes the PEFT name of A (which = 'A') or B of a layer's target k. */
static bool peft_name(const mr_lora *lora, int layer, int k, char which, char *out,
                      size_t size) {
    const mr_llama_weight *w = llama_block_weight(lora->model, layer, lora_kinds[k].kind);
    char hf[LORA_NAME_MAX];
    if (!hf_tensor_name(w->name, hf, sizeof hf)) {
        return false;
    }
    size_t length = strlen(hf);
    const char *suffix = ".weight";
    if (length < strlen(suffix)) {
        return false;
    }
    hf[length - strlen(suffix)] = '\0';
    int written = snprintf(out, size, "base_model.model.%s.lora_%c.weight", hf, which);
    return written > 0 && (size_t)written < size;
}

/* Adds a layer's A and B to the writer, B's rows in Hugging Face order. */
static mr_status add_adapter(const mr_lora *lora, mr_safetensors_writer *writer, int layer,
                             int k, mr_error *err) {
    const mr_tensor *a = lora->a[layer * LORA_KINDS + k];
    const mr_tensor *b = lora->b[layer * LORA_KINDS + k];
    char a_name[LORA_NAME_MAX], b_name[LORA_NAME_MAX];
    if (!peft_name(lora, layer, k, 'A', a_name, sizeof a_name) ||
        !peft_name(lora, layer, k, 'B', b_name, sizeof b_name)) {
        return mr_error_set(err, MR_ERR_STATE, "lora: no PEFT name for layer %d %s", layer,
                            lora_kinds[k].module);
    }
    mr_status status = mr_safetensors_writer_add_f32(writer, a_name, 2, a->shape, a->data,
                                                     MR_SAFETENSORS_F32, err);
    if (status != MR_OK) {
        return status;
    }

    const mr_llama_weight *w = llama_block_weight(lora->model, layer, lora_kinds[k].kind);
    int heads = hf_permuted_heads(&lora->model->config, w->name);
    int64_t rows = b->shape[0], rank = b->shape[1];
    float *hf_rows = malloc((size_t)(rows * rank) * sizeof *hf_rows);
    if (hf_rows == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "lora: no memory for %s", b_name);
    }
    for (int64_t r = 0; r < rows; r++) {
        int64_t to = heads > 0 ? hf_source_row(r, lora->model->config.head_dim) : r;
        memcpy(hf_rows + to * rank, b->data + r * rank, (size_t)rank * sizeof *hf_rows);
    }
    status = mr_safetensors_writer_add_f32(writer, b_name, 2, b->shape, hf_rows,
                                           MR_SAFETENSORS_F32, err);
    free(hf_rows);
    return status;
}

/* Builds adapter_config.json. */
static cJSON *peft_config_json(const mr_lora *lora, const char *base_model) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    if (base_model != NULL) {
        cJSON_AddStringToObject(root, "base_model_name_or_path", base_model);
    } else {
        cJSON_AddNullToObject(root, "base_model_name_or_path");
    }
    cJSON_AddNumberToObject(root, "r", lora->config.rank);
    cJSON_AddItemToObject(root, "lora_alpha", hf_float_number(lora->config.alpha));
    cJSON_AddItemToObject(root, "lora_dropout", hf_float_number(lora->config.dropout));
    cJSON *modules = cJSON_AddArrayToObject(root, "target_modules");
    for (int k = 0; modules != NULL && k < LORA_KINDS; k++) {
        if ((lora->config.targets & lora_kinds[k].target) != 0) {
            cJSON_AddItemToArray(modules, cJSON_CreateString(lora_kinds[k].module));
        }
    }
    cJSON_AddStringToObject(root, "bias", "none");
    cJSON_AddBoolToObject(root, "fan_in_fan_out", false);
    cJSON_AddBoolToObject(root, "inference_mode", true);
    cJSON_AddBoolToObject(root, "init_lora_weights", true);
    cJSON_AddBoolToObject(root, "use_rslora", false);
    cJSON_AddBoolToObject(root, "use_dora", false);
    cJSON_AddNullToObject(root, "modules_to_save");
    cJSON_AddNullToObject(root, "layers_to_transform");
    cJSON_AddItemToObject(root, "rank_pattern", cJSON_CreateObject());
    cJSON_AddItemToObject(root, "alpha_pattern", cJSON_CreateObject());
    return root;
}

mr_status mr_lora_save_peft(const mr_lora *lora, const char *dir, const char *base_model,
                            mr_error *err) {
    mr_status status = mr_make_dirs(dir, err);
    if (status != MR_OK) {
        return status;
    }
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    if (writer == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "lora: no memory to write %s", dir);
    }
    status = mr_safetensors_writer_add_metadata(writer, "format", "pt", err);
    for (int layer = 0; status == MR_OK && layer < lora->model->config.layers; layer++) {
        for (int k = 0; status == MR_OK && k < LORA_KINDS; k++) {
            if (lora->a[layer * LORA_KINDS + k] != NULL) {
                status = add_adapter(lora, writer, layer, k, err);
            }
        }
    }
    char path[LORA_PATH_MAX];
    if (status == MR_OK) {
        status = mr_path_join(path, sizeof path, dir, "adapter_model.safetensors", err);
    }
    if (status == MR_OK) {
        status = mr_safetensors_writer_write(writer, path, err);
    }
    mr_safetensors_writer_free(writer);

    if (status == MR_OK) {
        status = mr_path_join(path, sizeof path, dir, "adapter_config.json", err);
    }
    if (status == MR_OK) {
        cJSON *json = peft_config_json(lora, base_model);
        status = json != NULL ? hf_json_write(path, json, err)
                              : mr_error_set(err, MR_ERR_NO_MEMORY, "lora: no memory for %s",
                                             path);
        cJSON_Delete(json);
    }
    return status;
}

/* Reads the target_modules of adapter_config.json into a target set. */
static mr_status read_targets(const cJSON *json, const char *path, unsigned *targets,
                              mr_error *err) {
    const cJSON *modules = cJSON_GetObjectItemCaseSensitive(json, "target_modules");
    if (cJSON_IsString(modules) && strcmp(modules->valuestring, "all-linear") == 0) {
        *targets = MR_LORA_ALL;
        return MR_OK;
    }
    if (!cJSON_IsArray(modules)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "lora: %s: \"target_modules\" must be a list of module names or "
                            "\"all-linear\"",
                            path);
    }
    *targets = 0;
    const cJSON *item = NULL;
    cJSON_ArrayForEach(item, modules) {
        int k = 0;
        while (k < LORA_KINDS && !(cJSON_IsString(item) &&
                                   strcmp(item->valuestring, lora_kinds[k].module) == 0)) {
            k++;
        }
        if (k == LORA_KINDS) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "lora: %s: target module %s is not one of q_proj, k_proj, "
                                "v_proj, o_proj, gate_proj, up_proj, down_proj",
                                path, cJSON_IsString(item) ? item->valuestring : "(not a string)");
        }
        *targets |= lora_kinds[k].target;
    }
    return MR_OK;
}

/* Rejects PEFT settings that change the adapter's arithmetic. */
static mr_status reject_peft_settings(const cJSON *json, const char *path, mr_error *err) {
    const char *must_be_off[] = {"use_rslora", "use_dora", "fan_in_fan_out", "modules_to_save",
                                 "layers_to_transform", "rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < sizeof must_be_off / sizeof must_be_off[0]; i++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, must_be_off[i]);
        bool off = item == NULL || cJSON_IsNull(item) || cJSON_IsFalse(item) ||
                   ((cJSON_IsObject(item) || cJSON_IsArray(item)) && item->child == NULL);
        if (!off) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "lora: %s sets \"%s\", which multiround does not implement",
                                path, must_be_off[i]);
        }
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "peft_type");
    if (type != NULL && !(cJSON_IsString(type) && strcmp(type->valuestring, "LORA") == 0)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED, "lora: %s: \"peft_type\" must be \"LORA\"",
                            path);
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(json, "bias");
    if (bias != NULL && !(cJSON_IsString(bias) && strcmp(bias->valuestring, "none") == 0)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "lora: %s: \"bias\" must be \"none\"; trained biases are not "
                            "implemented",
                            path);
    }
    return MR_OK;
}

/* Reads adapter_config.json into config. */
static mr_status read_peft_config(const char *dir, mr_lora_config *config, mr_error *err) {
    char path[LORA_PATH_MAX];
    cJSON *json = NULL;
    mr_status status = mr_path_join(path, sizeof path, dir, "adapter_config.json", err);
    if (status == MR_OK) {
        status = hf_json_read(path, LORA_CONFIG_MAX_BYTES, &json, err);
    }
    if (status != MR_OK) {
        return status;
    }
    status = reject_peft_settings(json, path, err);

    /* PEFT's defaults: lora_alpha 8, lora_dropout 0. */
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(json, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(json, "lora_alpha");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(json, "lora_dropout");
    if (status == MR_OK && !(cJSON_IsNumber(r) && r->valuedouble == floor(r->valuedouble))) {
        status = mr_error_set(err, MR_ERR_FORMAT, "lora: %s: \"r\" must be an integer", path);
    }
    if (status == MR_OK && ((alpha != NULL && !cJSON_IsNumber(alpha)) ||
                            (dropout != NULL && !cJSON_IsNumber(dropout)))) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "lora: %s: \"lora_alpha\" and \"lora_dropout\" must be numbers",
                              path);
    }
    if (status == MR_OK) {
        double rank = r->valuedouble;
        config->rank = rank >= 1.0 && rank <= LORA_MAX_RANK ? (int)rank : 0;
        config->alpha = alpha != NULL ? (float)alpha->valuedouble : 8.0f;
        config->dropout = dropout != NULL ? (float)dropout->valuedouble : 0.0f;
        status = read_targets(json, path, &config->targets, err);
    }
    cJSON_Delete(json);
    return status == MR_OK ? validate_config(config, err) : status;
}

/* Copies tensor name of file into dst [rows, cols], with rows permuted
 * from Hugging Face order when heads > 0. */
static mr_status read_adapter(const mr_safetensors *file, const char *name, int64_t rows,
                              int64_t cols, int heads, int head_dim, float *dst,
                              mr_error *err) {
    const mr_safetensors_tensor *t = mr_safetensors_tensor_find(file, name);
    if (t == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND, "lora: adapter_model.safetensors has no %s",
                            name);
    }
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "lora: %s must have shape [%lld, %lld] for this model and rank",
                            name, (long long)rows, (long long)cols);
    }
    float *values = malloc((size_t)(rows * cols) * sizeof *values);
    if (values == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "lora: no memory for %s", name);
    }
    mr_status status = mr_safetensors_read_f32(file, name, values, rows * cols, err);
    for (int64_t r = 0; status == MR_OK && r < rows; r++) {
        int64_t from = heads > 0 ? hf_source_row(r, head_dim) : r;
        memcpy(dst + r * cols, values + from * cols, (size_t)cols * sizeof *dst);
    }
    free(values);
    return status;
}

mr_lora *mr_lora_load_peft(mr_llama *model, const char *dir, mr_error *err) {
    mr_lora_config config = {0};
    if (read_peft_config(dir, &config, err) != MR_OK) {
        return NULL;
    }
    mr_lora *lora = mr_lora_create(model, &config, 0, err);
    if (lora == NULL) {
        return NULL;
    }
    char path[LORA_PATH_MAX];
    mr_safetensors *file = NULL;
    mr_status status = mr_path_join(path, sizeof path, dir, "adapter_model.safetensors", err);
    if (status == MR_OK) {
        status = mr_safetensors_open(path, &file, err);
    }

    int64_t used = 0;
    for (int layer = 0; status == MR_OK && layer < model->config.layers; layer++) {
        for (int k = 0; status == MR_OK && k < LORA_KINDS; k++) {
            mr_tensor *a = lora->a[layer * LORA_KINDS + k], *b = lora->b[layer * LORA_KINDS + k];
            if (a == NULL) {
                continue;
            }
            char a_name[LORA_NAME_MAX], b_name[LORA_NAME_MAX];
            peft_name(lora, layer, k, 'A', a_name, sizeof a_name);
            peft_name(lora, layer, k, 'B', b_name, sizeof b_name);
            const mr_llama_weight *w = llama_block_weight(model, layer, lora_kinds[k].kind);
            int heads = hf_permuted_heads(&model->config, w->name);
            status = read_adapter(file, a_name, a->shape[0], a->shape[1], 0, 0, a->data, err);
            if (status == MR_OK) {
                status = read_adapter(file, b_name, b->shape[0], b->shape[1], heads,
                                      model->config.head_dim, b->data, err);
            }
            used += 2;
        }
    }
    if (status == MR_OK && mr_safetensors_tensor_count(file) > used) {
        mr_log(MR_LOG_WARN, "lora", "%s has %lld tensors the adapter does not use", path,
               (long long)(mr_safetensors_tensor_count(file) - used));
    }
    mr_safetensors_close(file);
    if (status != MR_OK) {
        mr_lora_free(lora);
        return NULL;
    }
    mr_log(MR_LOG_INFO, "lora", "loaded '%s': rank %d, alpha %g, dropout %g, %lld adapted layers",
           dir, config.rank, (double)config.alpha, (double)config.dropout, (long long)used / 2);
    return lora;
}

mr_status mr_lora_merge_peft(mr_llama *model, const char *dir, mr_error *err) {
    mr_lora *lora = mr_lora_load_peft(model, dir, err);
    if (lora == NULL) {
        return err != NULL && err->status != MR_OK ? err->status : MR_ERR_FORMAT;
    }
    mr_status status = mr_lora_merge(lora, err);
    mr_lora_free(lora);
    return status;
}
