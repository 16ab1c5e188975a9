/*
 * Hugging Face config.json files of Llama and Qwen2 models, the tensor
 * names of their checkpoints, and the file helpers of the folder reader
 * and writer.
 *
 * Absent keys take these defaults: rms_norm_eps 1e-6, rope_theta 10000,
 * tie_word_embeddings false, max_position_embeddings 2048 (Llama) or
 * 32768 (Qwen2), num_key_value_heads = num_attention_heads and head_dim =
 * hidden_size / num_attention_heads.
 * NOTE: these are meant to be the defaults of transformers' LlamaConfig and
 * Qwen2Config but were not checked against a pinned transformers release.
 * Released checkpoints set every one of these keys.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"
#include "multiround/fileio.h"

/* GGUF suffix of each block weight and its Hugging Face name under
 * model.layers.N. */
static const struct {
    const char *gguf;
    const char *hf;
} block_names[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

bool hf_tensor_name(const char *gguf_name, char *out, size_t size) {
    const char *hf = NULL;
    if (strcmp(gguf_name, "token_embd.weight") == 0) {
        hf = "model.embed_tokens.weight";
    } else if (strcmp(gguf_name, "output_norm.weight") == 0) {
        hf = "model.norm.weight";
    } else if (strcmp(gguf_name, "output.weight") == 0) {
        hf = "lm_head.weight";
    }
    if (hf != NULL) {
        return (size_t)snprintf(out, size, "%s", hf) < size;
    }

    int layer = -1, consumed = 0;
    if (sscanf(gguf_name, "blk.%d.%n", &layer, &consumed) != 1 || consumed == 0 || layer < 0) {
        return false;
    }
    const char *suffix = gguf_name + consumed;
    for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++) {
        if (strcmp(suffix, block_names[i].gguf) == 0) {
            int length = snprintf(out, size, "model.layers.%d.%s", layer, block_names[i].hf);
            return length > 0 && (size_t)length < size;
        }
    }
    return false;
}

int hf_permuted_heads(const mr_llama_config *config, const char *gguf_name) {
    if (config->rope_layout != MR_ROPE_ADJACENT) {
        return 0;
    }
    const char *dot = strchr(gguf_name, '.');
    const char *suffix = dot != NULL ? strchr(dot + 1, '.') : NULL;
    if (strncmp(gguf_name, "blk.", 4) != 0 || suffix == NULL) {
        return 0;
    }
    suffix++;
    if (strcmp(suffix, "attn_q.weight") == 0 || strcmp(suffix, "attn_q.bias") == 0) {
        return config->heads;
    }
    if (strcmp(suffix, "attn_k.weight") == 0 || strcmp(suffix, "attn_k.bias") == 0) {
        return config->kv_heads;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * config.json
 * ------------------------------------------------------------------------ */

/* Reads integer key into *out. A missing key keeps *out when optional,
 * else fails; a value that is not an integer in [1, INT32_MAX] fails. */
static mr_status read_int(const cJSON *json, const char *key, const char *name, bool optional,
                          int *out, mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    if (item == NULL || cJSON_IsNull(item)) {
        if (optional) {
            return MR_OK;
        }
        return mr_error_set(err, MR_ERR_NOT_FOUND, "hf: %s has no key \"%s\"", name, key);
    }
    double value = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(value >= 1.0 && value <= 2147483647.0) || value != floor(value)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "hf: %s: \"%s\" must be a positive integer", name, key);
    }
    *out = (int)value;
    return MR_OK;
}

/* Reads an optional positive finite number into *out. */
static mr_status read_float(const cJSON *json, const char *key, const char *name, float *out,
                            mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    if (item == NULL || cJSON_IsNull(item)) {
        return MR_OK;
    }
    double value = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(value > 0.0) || !isfinite((float)value)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "hf: %s: \"%s\" must be a finite number > 0", name, key);
    }
    *out = (float)value;
    return MR_OK;
}

/* Reads the model family from architectures[0], else model_type. */
static mr_status read_arch(const cJSON *json, const char *name, hf_arch *arch, mr_error *err) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "architectures");
    const cJSON *first = cJSON_IsArray(list) ? cJSON_GetArrayItem(list, 0) : NULL;
    const char *text = cJSON_IsString(first) ? first->valuestring : NULL;
    if (text != NULL) {
        if (strcmp(text, "LlamaForCausalLM") == 0) {
            *arch = HF_ARCH_LLAMA;
            return MR_OK;
        }
        if (strcmp(text, "Qwen2ForCausalLM") == 0) {
            *arch = HF_ARCH_QWEN2;
            return MR_OK;
        }
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "hf: %s: architecture \"%s\" is not supported; multiround reads "
                            "LlamaForCausalLM and Qwen2ForCausalLM",
                            name, text);
    }

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "model_type");
    text = cJSON_IsString(type) ? type->valuestring : NULL;
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "hf: %s has neither \"architectures\" nor \"model_type\"; set "
                            "\"architectures\": [\"LlamaForCausalLM\"] or "
                            "[\"Qwen2ForCausalLM\"]",
                            name);
    }
    if (strcmp(text, "llama") == 0) {
        *arch = HF_ARCH_LLAMA;
        return MR_OK;
    }
    if (strcmp(text, "qwen2") == 0) {
        *arch = HF_ARCH_QWEN2;
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_UNSUPPORTED,
                        "hf: %s: model_type \"%s\" is not supported; multiround reads "
                        "\"llama\" and \"qwen2\"",
                        name, text);
}

/* Rejects settings that change the network in ways multiround does not
 * implement. A key set to null, false or its neutral value passes. */
static mr_status reject_unsupported(const cJSON *json, const char *name, mr_error *err) {
    const char *must_be_null_or_false[] = {"rope_scaling", "attention_bias", "mlp_bias",
                                           "use_sliding_window"};
    for (size_t i = 0; i < sizeof must_be_null_or_false / sizeof must_be_null_or_false[0];
         i++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, must_be_null_or_false[i]);
        if (item != NULL && !cJSON_IsNull(item) && !cJSON_IsFalse(item)) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "hf: %s sets \"%s\", which multiround does not implement; "
                                "only null or false is accepted",
                                name, must_be_null_or_false[i]);
        }
    }

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(json, "hidden_act");
    if (act != NULL && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "hf: %s: \"hidden_act\" must be \"silu\", the activation of the "
                            "SwiGLU layer multiround implements",
                            name);
    }
    const cJSON *partial = cJSON_GetObjectItemCaseSensitive(json, "partial_rotary_factor");
    if (partial != NULL && !(cJSON_IsNumber(partial) && partial->valuedouble == 1.0)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "hf: %s: \"partial_rotary_factor\" must be 1; multiround rotates "
                            "whole heads",
                            name);
    }
    return MR_OK;
}

mr_status hf_config_from_json(const cJSON *json, const char *name, mr_llama_config *config,
                              hf_arch *arch, mr_error *err) {
    if (!cJSON_IsObject(json)) {
        return mr_error_set(err, MR_ERR_FORMAT, "hf: %s is not a JSON object", name);
    }
    mr_status status = read_arch(json, name, arch, err);
    if (status == MR_OK) {
        status = reject_unsupported(json, name, err);
    }
    if (status != MR_OK) {
        return status;
    }

    mr_llama_config c = {0};
    if ((status = read_int(json, "hidden_size", name, false, &c.dim, err)) != MR_OK ||
        (status = read_int(json, "intermediate_size", name, false, &c.ffn_dim, err)) != MR_OK ||
        (status = read_int(json, "num_hidden_layers", name, false, &c.layers, err)) != MR_OK ||
        (status = read_int(json, "num_attention_heads", name, false, &c.heads, err)) != MR_OK ||
        (status = read_int(json, "vocab_size", name, false, &c.vocab_size, err)) != MR_OK) {
        return status;
    }

    c.kv_heads = c.heads;
    c.head_dim = c.dim / c.heads;
    bool head_dim_given = cJSON_GetObjectItemCaseSensitive(json, "head_dim") != NULL &&
                          !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(json, "head_dim"));
    if (!head_dim_given && c.dim % c.heads != 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "hf: %s: \"hidden_size\" %d is not a multiple of "
                            "\"num_attention_heads\" %d, so the head width is undefined; "
                            "change one of them or set \"head_dim\"",
                            name, c.dim, c.heads);
    }
    c.context_length = *arch == HF_ARCH_QWEN2 ? 32768 : 2048;
    c.rope_base = 10000.0f;
    c.rms_eps = 1e-6f;
    if ((status = read_int(json, "num_key_value_heads", name, true, &c.kv_heads, err)) !=
            MR_OK ||
        (status = read_int(json, "head_dim", name, true, &c.head_dim, err)) != MR_OK ||
        (status = read_int(json, "max_position_embeddings", name, true, &c.context_length,
                           err)) != MR_OK ||
        (status = read_float(json, "rope_theta", name, &c.rope_base, err)) != MR_OK ||
        (status = read_float(json, "rms_norm_eps", name, &c.rms_eps, err)) != MR_OK) {
        return status;
    }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(json, "tie_word_embeddings");
    if (tie != NULL && !cJSON_IsBool(tie)) {
        return mr_error_set(err, MR_ERR_FORMAT, "hf: %s: \"tie_word_embeddings\" must be true "
                            "or false", name);
    }
    c.tied_output = cJSON_IsTrue(tie);
    c.qkv_bias = *arch == HF_ARCH_QWEN2;
    /* Llama rows are permuted to adjacent pairs on load (see llama.h). */
    c.rope_layout = *arch == HF_ARCH_QWEN2 ? MR_ROPE_HALVES : MR_ROPE_ADJACENT;

    status = mr_llama_config_validate(&c, err);
    if (status == MR_OK) {
        *config = c;
    }
    return status;
}

mr_status mr_llama_config_from_hf_json(const char *json_text, const char *name,
                                       mr_llama_config *config, mr_error *err) {
    cJSON *json = cJSON_Parse(json_text);
    if (json == NULL) {
        return mr_error_set(err, MR_ERR_FORMAT, "hf: %s is not valid JSON", name);
    }
    hf_arch arch;
    mr_status status = hf_config_from_json(json, name, config, &arch, err);
    cJSON_Delete(json);
    return status;
}

cJSON *hf_float_number(float value) {
    char text[32];
    snprintf(text, sizeof text, "%.9g", (double)value);
    for (int digits = 1; digits < 9; digits++) {
        char shorter[32];
        snprintf(shorter, sizeof shorter, "%.*g", digits, (double)value);
        if ((float)strtod(shorter, NULL) == value) {
            memcpy(text, shorter, sizeof text);
            break;
        }
    }
    return cJSON_CreateNumber(strtod(text, NULL));
}

/* Returns the torch_dtype name of a storage type. */
static const char *torch_dtype_name(mr_qtype type) {
    switch (type) {
    case MR_QTYPE_F16:
        return "float16";
    case MR_QTYPE_BF16:
        return "bfloat16";
    default:
        return "float32";
    }
}

cJSON *hf_config_to_json(const mr_llama_config *c, hf_arch arch, mr_qtype type) {
    cJSON *root = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(root, "architectures");

    if (list == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    bool qwen2 = arch == HF_ARCH_QWEN2;
    cJSON_AddItemToArray(list, cJSON_CreateString(qwen2 ? "Qwen2ForCausalLM"
                                                        : "LlamaForCausalLM"));
    cJSON_AddStringToObject(root, "model_type", qwen2 ? "qwen2" : "llama");

    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "hidden_size", c->dim);
    cJSON_AddNumberToObject(root, "intermediate_size", c->ffn_dim);
    cJSON_AddNumberToObject(root, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", c->heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", c->kv_heads);
    cJSON_AddNumberToObject(root, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->context_length);
    cJSON_AddItemToObject(root, "rms_norm_eps", hf_float_number(c->rms_eps));
    cJSON_AddItemToObject(root, "rope_theta", hf_float_number(c->rope_base));

    cJSON_AddNullToObject(root, "rope_scaling");
    cJSON_AddBoolToObject(root, "tie_word_embeddings", c->tied_output);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    if (qwen2) {
        cJSON_AddBoolToObject(root, "use_sliding_window", false);
    } else {
        cJSON_AddBoolToObject(root, "attention_bias", false);
        cJSON_AddBoolToObject(root, "mlp_bias", false);
    }
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype_name(type));
    return root;
}

/* ------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------ */

mr_status hf_json_read(const char *path, size_t max_bytes, cJSON **out, mr_error *err) {
    *out = NULL;
    void *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, max_bytes, &text, &size, err);
    if (status != MR_OK) {
        return status;
    }
    *out = cJSON_ParseWithLength(text, size);
    free(text);
    if (*out == NULL) {
        return mr_error_set(err, MR_ERR_FORMAT, "hf: %s is not valid JSON", path);
    }
    return MR_OK;
}

mr_status hf_json_write(const char *path, const cJSON *json, mr_error *err) {
    char *text = cJSON_Print(json);
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory to format %s", path);
    }
    size_t length = strlen(text);
    char *with_newline = malloc(length + 2);
    if (with_newline == NULL) {
        free(text);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory to format %s", path);
    }
    memcpy(with_newline, text, length);
    with_newline[length] = '\n';
    free(text);
    mr_status status = mr_file_write_atomic(path, with_newline, length + 1, err);
    free(with_newline);
    return status;
}
