/*
 * Hugging Face names and row layouts, shared by the checkpoint reader and
 * writer (llama_hf.c, hf_config.c) and the LoRA adapters (lora.c).
 */
#ifndef MR_LM_HF_INTERNAL_H
#define MR_LM_HF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "multiround/llama.h"

/* Model families of a Hugging Face config.json. */
typedef enum hf_arch {
    HF_ARCH_LLAMA = 0, /* LlamaForCausalLM: split-half rope, no biases */
    HF_ARCH_QWEN2 = 1  /* Qwen2ForCausalLM: split-half rope, q/k/v biases */
} hf_arch;

/*
 * Writes the Hugging Face name of a GGUF weight ("blk.3.attn_q.weight"
 * becomes "model.layers.3.self_attn.q_proj.weight") into out. Returns
 * false for a name outside the Llama weight list or one that does not fit.
 */
bool hf_tensor_name(const char *gguf_name, char *out, size_t size);

/*
 * Returns the number of heads whose rows a weight permutes between the
 * Hugging Face layout and the model's: heads for q, kv_heads for k, when
 * the model rotates adjacent pairs; 0 when the rows stay as they are.
 */
int hf_permuted_heads(const mr_llama_config *config, const char *gguf_name);

/*
 * Returns the Hugging Face row that model row `row` of a permuted q or k
 * weight comes from. Within each head of width head_dim, model row 2i + s
 * (s = 0 or 1) is Hugging Face row s * head_dim / 2 + i, which turns the
 * split-half rotation into an adjacent-pair one (llama.cpp's permute()).
 */
static inline int64_t hf_source_row(int64_t row, int head_dim) {
    int64_t head = row / head_dim, j = row % head_dim;
    return head * head_dim + (j % 2) * (head_dim / 2) + j / 2;
}

/* Parses a config.json object into config and the family; name is used in
 * messages. */
mr_status hf_config_from_json(const cJSON *json, const char *name, mr_llama_config *config,
                              hf_arch *arch, mr_error *err);

/* Builds the config.json object of a model of family arch whose matrices
 * are stored as type. Returns NULL when memory runs out. */
cJSON *hf_config_to_json(const mr_llama_config *config, hf_arch arch, mr_qtype type);

/* The family a model is written as: Qwen2 with biases, else Llama. */
static inline hf_arch hf_arch_of(const mr_llama_config *config) {
    return config->qkv_bias ? HF_ARCH_QWEN2 : HF_ARCH_LLAMA;
}

/* Joins dir and name into out; fails with MR_ERR_INVALID_ARGUMENT when
 * the path does not fit. */
mr_status hf_path_join(char *out, size_t size, const char *dir, const char *name,
                       mr_error *err);

/* Creates dir and its missing parents. */
mr_status hf_make_dirs(const char *dir, mr_error *err);

/* Reads a JSON file of at most max_bytes into *out (free with cJSON_Delete). */
mr_status hf_json_read(const char *path, size_t max_bytes, cJSON **out, mr_error *err);

/* Writes json, indented and with a final newline, to path atomically. */
mr_status hf_json_write(const char *path, const cJSON *json, mr_error *err);

/* A float as the shortest decimal that reads back as the same float, so
 * that config.json shows 1e-05 and not 9.9999997473787516e-06. */
cJSON *hf_float_number(float value);

#endif /* MR_LM_HF_INTERNAL_H */
