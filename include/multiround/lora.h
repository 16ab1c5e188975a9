/*
 * multiround LoRA: low-rank adapters on the linear layers of a Llama
 * model, trained on the engine's autodiff while the base weights stay
 * frozen, merged into the base weights, and saved and loaded as PEFT
 * adapter folders.
 *
 * An adapted layer computes y = x W^T (+ b) + s * B A dropout(x)^T with
 * A [r, in], B [out, r] and s = alpha / r, as PEFT's LoRA layers do. A
 * starts as PEFT's kaiming_uniform_(a = sqrt(5)), which is
 * U(-1/sqrt(in), 1/sqrt(in)), and B at zero, so a fresh adapter leaves
 * the logits unchanged. Dropout acts in training mode only (see
 * mr_ctx_set_training).
 *
 * The base weights enter the network as constants that get no gradient
 * buffers and no gradient computation. So the model need not be
 * trainable: a GGUF model loaded with mr_llama_load_gguf works as it is,
 * and quantised weights are decoded to F32 in the step's context. Only A
 * and B, in the adapter's own mr_paramset, are trained.
 *
 *     mr_lora_config config = {.rank = 8, .alpha = 16, .dropout = 0.05f,
 *                              .targets = MR_LORA_Q | MR_LORA_V};
 *     mr_lora *lora = mr_lora_create(model, &config, seed, &err);
 *     ... optimizer over mr_paramset_flat(mr_lora_params(lora)) ...
 *     mr_tensor *loss = mr_lora_loss(lora, ctx, tokens, targets, NULL);
 *     mr_tensor_backward(ctx, loss, NULL);
 *     mr_lora_save_peft(lora, "adapter", "stories260K", &err);
 *
 * With the adapter switched off (mr_lora_set_enabled) the same calls give
 * the base model's logits, bit for bit those of mr_llama_logits(), which
 * is what a preference trainer needs for its reference model.
 */
#ifndef MULTIROUND_LORA_H
#define MULTIROUND_LORA_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/llama.h"
#include "multiround/params.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Linear layers an adapter can target, with their PEFT module names. */
typedef enum mr_lora_target {
    MR_LORA_Q = 1u << 0,    /* q_proj, blk.N.attn_q.weight */
    MR_LORA_K = 1u << 1,    /* k_proj, blk.N.attn_k.weight */
    MR_LORA_V = 1u << 2,    /* v_proj, blk.N.attn_v.weight */
    MR_LORA_O = 1u << 3,    /* o_proj, blk.N.attn_output.weight */
    MR_LORA_GATE = 1u << 4, /* gate_proj, blk.N.ffn_gate.weight */
    MR_LORA_UP = 1u << 5,   /* up_proj, blk.N.ffn_up.weight */
    MR_LORA_DOWN = 1u << 6, /* down_proj, blk.N.ffn_down.weight */
    MR_LORA_ALL = 0x7fu
} mr_lora_target;

typedef struct mr_lora_config {
    int rank;          /* r, in [1, 65536] */
    float alpha;       /* finite and > 0; the scale of B A is alpha / r */
    float dropout;     /* probability in [0, 1) of zeroing an adapter input */
    unsigned targets;  /* OR of mr_lora_target values, not 0 */
} mr_lora_config;

typedef struct mr_lora mr_lora;

/*
 * Creates an adapter on every layer of model for the configured targets,
 * with A drawn from seed and B zero. The model is borrowed: it must outlive
 * the adapter, and its weights must not be replaced (mr_llama_quantize)
 * while the adapter exists. Returns NULL and fills err on an invalid
 * config or when memory runs out.
 */
mr_lora *mr_lora_create(mr_llama *model, const mr_lora_config *config, uint64_t seed,
                        mr_error *err);

/* Frees the adapter and its parameters (not the model). lora may be NULL. */
void mr_lora_free(mr_lora *lora);

/* Returns the adapter's configuration. */
const mr_lora_config *mr_lora_get_config(const mr_lora *lora);

/*
 * The A and B matrices in one parameter set, for an optimizer. For layer N
 * and weight blk.N.<kind>.weight they are named blk.N.<kind>.lora_a
 * [r, in] and blk.N.<kind>.lora_b [out, r], in layer order and, within a
 * layer, in the order of mr_lora_target.
 */
mr_paramset *mr_lora_params(const mr_lora *lora);

/* Switches the adapter on (the default) or off. Off, the logits are the
 * base model's. */
void mr_lora_set_enabled(mr_lora *lora, bool enabled);
bool mr_lora_enabled(const mr_lora *lora);

/*
 * Builds the logits [B, T, V] of I32 tokens [B, T] as mr_llama_logits()
 * does, with the adapter added to each targeted layer while it is
 * enabled. Dropout draws from the adapter's random stream, which advances
 * by one draw per adapted layer in training mode. Returns NULL with the
 * error stored in ctx on bad input.
 */
mr_tensor *mr_lora_logits(mr_lora *lora, mr_ctx *ctx, mr_tensor *tokens);

/* The mean next-token cross-entropy of mr_lora_logits(), with targets and
 * mask as in mr_llama_loss(). */
mr_tensor *mr_lora_loss(mr_lora *lora, mr_ctx *ctx, mr_tensor *tokens, mr_tensor *targets,
                        mr_tensor *mask);

/*
 * Adds s * B A to each targeted base weight and switches the adapter off,
 * so that the model alone gives the adapted logits. Weights stored in
 * another type than F32, or in a file mapping, become F32 memory that the
 * model owns. A trainable model's parameters change in place. Fills err
 * when memory runs out (the weights merged before that keep the update).
 */
mr_status mr_lora_merge(mr_lora *lora, mr_error *err);

/*
 * Writes the adapter as a PEFT folder, creating dir if needed:
 * adapter_model.safetensors (F32, names such as
 * base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight, with
 * the rows of q and k in Hugging Face order, see llama.h) and
 * adapter_config.json (peft_type LORA, r, lora_alpha, lora_dropout,
 * target_modules, base_model_name_or_path = base_model or null). Files
 * are written atomically.
 */
mr_status mr_lora_save_peft(const mr_lora *lora, const char *dir, const char *base_model,
                            mr_error *err);

/*
 * Loads a PEFT LoRA folder (adapter_config.json and
 * adapter_model.safetensors in F32, F16 or BF16) for model. target_modules
 * may be a list of the seven module names or "all-linear". Settings that
 * multiround does not implement (use_rslora, use_dora, fan_in_fan_out, a
 * bias other than "none", modules_to_save, layers_to_transform,
 * rank_pattern, alpha_pattern) give MR_ERR_UNSUPPORTED naming the key. A
 * missing or misshapen tensor gives an error naming it. The adapter starts
 * enabled.
 */
mr_lora *mr_lora_load_peft(mr_llama *model, const char *dir, mr_error *err);

/*
 * Loads the PEFT LoRA folder dir for model (as mr_lora_load_peft does),
 * merges it into the weights (as mr_lora_merge does) and frees the
 * adapter, so that the model alone gives the adapted logits. Fills err
 * on the errors of those two calls; a failed merge may leave some weights
 * merged, so the model should then be freed.
 */
mr_status mr_lora_merge_peft(mr_llama *model, const char *dir, mr_error *err);

/*
 * Loads the model at model_path (a GGUF file or a Hugging Face folder),
 * merges the PEFT LoRA folder lora_dir into it and writes the result to
 * output as mr_llama_convert() does: a GGUF file when output ends in
 * ".gguf", else a folder, with the input's tokenizer. type selects the
 * storage of matrices; NULL keeps the input's embedding type (F32 for a
 * folder when that type is quantised). Implemented in src/lm/llama_hf.c.
 */
mr_status mr_lora_merge_file(const char *model_path, const char *lora_dir, const char *output,
                             const mr_qtype *type, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_LORA_H */
