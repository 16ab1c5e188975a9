/*
 * multiround Llama-family transformers: configuration, weights, inference
 * with a KV cache, and training on the engine's autodiff.
 *
 * The model is a decoder-only transformer: a token embedding, L blocks of
 * pre-RMSNorm grouped-query attention with rotary positions and a SwiGLU
 * feed-forward layer, a final RMSNorm and an output projection (its own
 * matrix or the token embedding, tied). Optional q/k/v biases cover Qwen2.
 *
 * Weights carry GGUF names ("token_embd.weight", "blk.0.attn_q.weight",
 * ..., "output_norm.weight", "output.weight"). Each one is a typed buffer
 * (F32, F16, BF16, Q8_0 or Q4_0, see quant.h) that inference reads, which
 * may point into a memory-mapped GGUF file. A trainable model also keeps
 * every weight as an F32 parameter in one mr_paramset, and its typed
 * buffers then point at those parameters, so both paths always see the
 * same values.
 *
 *     mr_llama *model = mr_llama_load_gguf("stories260K.gguf", &err);
 *     mr_llama_cache *cache = mr_llama_cache_create(model, 256, &err);
 *     mr_llama_eval(model, cache, prompt, n, 0, logits, MR_LLAMA_LOGITS_LAST, &err);
 *     ... pick the next token from logits [V] ...
 *     mr_llama_eval(model, cache, &next, 1, n, logits, MR_LLAMA_LOGITS_LAST, &err);
 *
 * Training builds the same network from engine operations:
 *
 *     mr_llama *model = mr_llama_init(&config, seed, &err);
 *     mr_tensor *loss = mr_llama_loss(model, step_ctx, tokens, targets, NULL);
 *     mr_tensor_backward(step_ctx, loss, NULL);  // gradients in mr_llama_params()
 */
#ifndef MULTIROUND_LLAMA_H
#define MULTIROUND_LLAMA_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/gguf.h"
#include "multiround/params.h"
#include "multiround/quant.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Shape and numerics of a Llama-family model. */
typedef struct mr_llama_config {
    int vocab_size;        /* V: token ids are in [0, V) */
    int dim;               /* C: width of the residual stream */
    int layers;            /* L: transformer blocks */
    int heads;             /* Hq: query heads */
    int kv_heads;          /* Hkv: key/value heads; must divide heads */
    int head_dim;          /* D: width of one head (even, for rotary positions) */
    int ffn_dim;           /* F: hidden width of the SwiGLU layer */
    int context_length;    /* maximum number of positions */
    float rope_base;       /* theta of the rotary embedding, e.g. 10000 */
    mr_rope_layout rope_layout; /* ADJACENT (GGUF llama) or HALVES (Hugging Face, NeoX) */
    float rms_eps;         /* epsilon of every RMSNorm, e.g. 1e-5 */
    bool qkv_bias;         /* q, k and v projections have biases (Qwen2) */
    bool tied_output;      /* logits use token_embd.weight; no output.weight */
} mr_llama_config;

/*
 * Checks a config: sizes >= 1, heads a multiple of kv_heads, head_dim even,
 * rope_base and rms_eps finite and > 0, and a known rope layout. Returns
 * MR_OK, or MR_ERR_INVALID_ARGUMENT with a message naming the field.
 */
mr_status mr_llama_config_validate(const mr_llama_config *config, mr_error *err);

/* One weight as inference reads it. */
typedef struct mr_llama_weight {
    const char *name;   /* GGUF name */
    mr_qtype type;      /* storage type of data */
    int n_dims;         /* 1 or 2 */
    int64_t ne[2];      /* GGUF order: ne[0] is the contiguous axis (the input
                           width of a matrix), ne[1] the row count; 1 if 1-D */
    const void *data;   /* ne[1] rows of mr_qtype_row_bytes(type, ne[0]) bytes */
    mr_tensor *param;   /* the F32 parameter [ne[1], ne[0]] of a trainable
                           model, or NULL */
} mr_llama_weight;

typedef struct mr_llama mr_llama;

/*
 * Creates a trainable model with F32 weights drawn from the seed: every
 * matrix and the embedding from normal(0, 0.02), RMSNorm weights 1, biases
 * 0. The same config and seed give bit-identical weights. Returns NULL and
 * fills err when the config is invalid or memory runs out.
 */
mr_llama *mr_llama_init(const mr_llama_config *config, uint64_t seed, mr_error *err);

/*
 * Opens a GGUF file of architecture "llama" (adjacent-pair rope) or "qwen2"
 * (split-half rope, q/k/v biases) and maps its weights without copying
 * matrices; 1-D weights are converted to F32. A missing
 * "<arch>.rope.freq_base" means 10000, a missing head_count_kv means
 * head_count, and a missing output.weight means tied output. Checks every
 * tensor's shape and type and logs what was loaded. Returns NULL and fills
 * err on a missing file, key or tensor, a wrong shape or an unsupported
 * type or architecture.
 */
mr_llama *mr_llama_load_gguf(const char *path, mr_error *err);

/*
 * Writes the model atomically as a GGUF v3 file of architecture "llama"
 * (ADJACENT rope) or "qwen2" (HALVES rope), with biases when the config
 * has them. Every matrix is stored as type and 1-D weights stay F32. When
 * copy_kv_from is not NULL, its other key/values (the tokenizer, say) are
 * copied too.
 */
mr_status mr_llama_save_gguf(const mr_llama *model, const char *path, mr_qtype type,
                             const mr_gguf *copy_kv_from, mr_error *err);

/* Frees the model, its parameters and its file mapping. model may be NULL. */
void mr_llama_free(mr_llama *model);

/* Returns the model's configuration. */
const mr_llama_config *mr_llama_get_config(const mr_llama *model);

/* Number of weights and the weight at index (NULL when out of range), in
 * storage order: token_embd, then each block, then output_norm and output. */
int mr_llama_weight_count(const mr_llama *model);
const mr_llama_weight *mr_llama_weight_at(const mr_llama *model, int index);

/* The weight with this GGUF name, or NULL. */
const mr_llama_weight *mr_llama_find_weight(const mr_llama *model, const char *name);

/*
 * Makes a loaded model trainable: copies every weight, dequantised, into
 * F32 parameters of a new mr_paramset and points the typed weights at them
 * (the file mapping is closed). Does nothing for a model that is already
 * trainable. Fills err when memory runs out.
 */
mr_status mr_llama_make_trainable(mr_llama *model, mr_error *err);

/*
 * Converts every matrix to type for inference (1-D weights stay F32), in
 * memory the model owns. A trainable model loses its parameters and is no
 * longer trainable. Row widths must be multiples of the type's block size;
 * otherwise MR_ERR_UNSUPPORTED names the weight and nothing changes.
 */
mr_status mr_llama_quantize(mr_llama *model, mr_qtype type, mr_error *err);

/* The parameter set of a trainable model, or NULL. Parameter names are the
 * GGUF names and shapes are [ne[1], ne[0]]. */
mr_paramset *mr_llama_params(const mr_llama *model);

/* ------------------------------------------------------------------------
 * Training path (engine operations, recorded for autodiff)
 * ------------------------------------------------------------------------ */

/*
 * Builds the logits [B, T, V] of I32 tokens [B, T] at positions 0..T-1
 * (T <= context_length) in ctx, with causal attention. The model must be
 * trainable. Returns NULL with the error stored in ctx on bad input.
 */
mr_tensor *mr_llama_logits(mr_llama *model, mr_ctx *ctx, mr_tensor *tokens);

/*
 * Returns the mean next-token cross-entropy (a scalar) of the logits of
 * tokens [B, T] against targets (I32 [B, T], usually tokens shifted left by
 * one). Positions whose target is -1, or where mask (F32 [B, T], may be
 * NULL) is 0, count for nothing. With no counted position the loss is 0.
 * Returns NULL with the error stored in ctx on bad input.
 */
mr_tensor *mr_llama_loss(mr_llama *model, mr_ctx *ctx, mr_tensor *tokens,
                         mr_tensor *targets, mr_tensor *mask);

/* ------------------------------------------------------------------------
 * Inference with a KV cache
 * ------------------------------------------------------------------------ */

typedef struct mr_llama_cache mr_llama_cache;

/*
 * Creates a KV cache for positions 0..length-1 of model (length <=
 * context_length): F32 keys and values of every layer, 2 L Hkv length D
 * floats, plus scratch memory for the evaluation. Returns NULL and fills
 * err on a bad length or when memory runs out.
 */
mr_llama_cache *mr_llama_cache_create(const mr_llama *model, int length, mr_error *err);

/* Frees the cache. cache may be NULL. */
void mr_llama_cache_free(mr_llama_cache *cache);

/* Number of positions the cache holds. */
int mr_llama_cache_length(const mr_llama_cache *cache);

/* Which logits mr_llama_eval() writes. */
typedef enum mr_llama_logits_mode {
    MR_LLAMA_LOGITS_NONE = 0, /* fill the cache only; logits may be NULL */
    MR_LLAMA_LOGITS_LAST = 1, /* [V] for the last token */
    MR_LLAMA_LOGITS_ALL = 2   /* [n, V], one row per token */
} mr_llama_logits_mode;

/*
 * Runs n tokens at positions pos..pos+n-1, stores their keys and values in
 * the cache and writes the logits that mode selects. Attention reads the cache's
 * positions 0..pos+n-1, so positions before pos must come from earlier
 * calls with the same model. A batch (n > 1) goes through BLAS; a single
 * token through matrix-vector products on the stored types. Results are
 * identical for the same inputs and thread count. Fills err on an id
 * outside [0, V), n < 1, or pos + n beyond the cache.
 */
mr_status mr_llama_eval(const mr_llama *model, mr_llama_cache *cache, const int32_t *tokens,
                        int n, int pos, float *logits, mr_llama_logits_mode mode,
                        mr_error *err);

/*
 * Chooses how mr_llama_eval() multiplies a single row by Q8_0 and Q4_0
 * weights: one token, or the last token when only its logits are
 * requested. On (the default), the row is quantised to int8 blocks and
 * each block's dot product is summed in integers (mr_qmatvec_int8), as
 * llama.cpp does. That takes less CPU time per weight byte, but the logits
 * then differ slightly from those of the batched path and of the float
 * products (mr_qmatvec), which off selects. Other storage types and
 * batches of several rows are not affected.
 */
void mr_llama_set_int8_decode(mr_llama *model, bool enabled);
bool mr_llama_int8_decode(const mr_llama *model);


/* ------------------------------------------------------------------------
 * Hugging Face folders and conversion (src/lm/llama_hf.c)
 *
 * A Hugging Face folder contains config.json (LlamaForCausalLM or
 * Qwen2ForCausalLM) and model.safetensors, or shards listed in
 * model.safetensors.index.json. Tensor names map to the GGUF names:
 *
 *   model.embed_tokens.weight                   token_embd.weight
 *   model.layers.N.input_layernorm.weight       blk.N.attn_norm.weight
 *   model.layers.N.self_attn.{q,k,v}_proj.*     blk.N.attn_{q,k,v}.*
 *   model.layers.N.self_attn.o_proj.weight      blk.N.attn_output.weight
 *   model.layers.N.post_attention_layernorm.*   blk.N.ffn_norm.weight
 *   model.layers.N.mlp.{gate,up,down}_proj.*    blk.N.ffn_{gate,up,down}.weight
 *   model.norm.weight                           output_norm.weight
 *   lm_head.weight                              output.weight
 *
 * Hugging Face rotates split halves (i, i + D/2) of each head. A
 * LlamaForCausalLM folder is loaded as an MR_ROPE_ADJACENT model whose
 * q_proj and k_proj rows are permuted as llama.cpp's converter permutes
 * them, so that its GGUF "llama" file is what llama.cpp writes. A
 * Qwen2ForCausalLM folder keeps its rows and MR_ROPE_HALVES, as GGUF
 * "qwen2" does. Writing undoes the permutation of ADJACENT models.
 * ------------------------------------------------------------------------ */

/*
 * Fills config from the text of a Hugging Face config.json (name is used
 * in messages). Reads architectures[0] or model_type ("llama", "qwen2"),
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * vocab_size (required), num_key_value_heads, head_dim, rms_norm_eps
 * (default 1e-6), rope_theta (default 10000), max_position_embeddings
 * (default 2048 for Llama, 32768 for Qwen2) and tie_word_embeddings
 * (default false). Settings multiround does not implement (rope_scaling,
 * attention_bias, mlp_bias, a hidden_act other than silu,
 * use_sliding_window, partial_rotary_factor) give MR_ERR_UNSUPPORTED
 * naming the key.
 */
mr_status mr_llama_config_from_hf_json(const char *json_text, const char *name,
                                       mr_llama_config *config, mr_error *err);

/*
 * Loads a Hugging Face folder: config.json and model.safetensors or the
 * shards of model.safetensors.index.json. Matrices keep their F32, F16 or
 * BF16 storage in memory the model owns; 1-D weights become F32. A
 * lm_head.weight next to tie_word_embeddings = true is ignored with a
 * warning. Returns NULL and fills err on a missing file or tensor, a wrong
 * shape or dtype, or an unsupported setting.
 */
mr_llama *mr_llama_load_hf(const char *dir, mr_error *err);

/*
 * Writes the model as a Hugging Face folder, creating dir if needed:
 * config.json, and model.safetensors with every matrix stored as type
 * (MR_QTYPE_F32, F16 or BF16; 1-D weights stay F32). An ADJACENT model
 * without biases is written as LlamaForCausalLM, a model with q/k/v biases
 * as Qwen2ForCausalLM, and a HALVES model without biases as
 * LlamaForCausalLM. When source_dir is not NULL, its tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, generation_config.json,
 * tokenizer.model and tokenizer.gguf are copied when present. When
 * metadata is not NULL, its key/values (the GGUF tokenizer, say) are
 * written to tokenizer.gguf, a GGUF file without tensors like llama.cpp's
 * vocabulary files. Every file is written atomically.
 */
mr_status mr_llama_save_hf(const mr_llama *model, const char *dir, mr_qtype type,
                           const char *source_dir, const mr_gguf *metadata, mr_error *err);

/* Loads a Hugging Face folder when path is a folder, else a GGUF file. */
mr_llama *mr_llama_load(const char *path, mr_error *err);

/*
 * Converts between GGUF files and Hugging Face folders in either
 * direction (and GGUF to GGUF, folder to folder). Output ending in ".gguf"
 * is written as GGUF, anything else as a folder. type selects the storage
 * of matrices; NULL keeps the type of token_embd.weight (F32 for a folder
 * when that type is quantised). The GGUF tokenizer keys travel through the
 * folder's tokenizer.gguf, and the Hugging Face tokenizer files are copied
 * from folder to folder.
 */
mr_status mr_llama_convert(const char *input, const char *output, const mr_qtype *type,
                           mr_error *err);

/* Total number of weight elements (tied output counted once). */
int64_t mr_llama_param_count(const mr_llama *model);

/* ------------------------------------------------------------------------
 * Final hidden states for heads (src/lm/llama_hidden.c)
 * ------------------------------------------------------------------------ */

struct mr_lora;

/*
 * Builds the final hidden states [B, T, C] of I32 tokens [B, T]: the
 * output of the last RMSNorm, which the output projection turns into
 * logits. With lora NULL the model must be trainable and the states are
 * those of mr_llama_logits(); otherwise lora must be an adapter created on
 * this model and the states are those of mr_lora_logits(). Recorded for
 * autodiff like the logits. Returns NULL with the error stored in ctx on
 * bad input.
 */
mr_tensor *mr_llama_hidden(mr_llama *model, struct mr_lora *lora, mr_ctx *ctx,
                           mr_tensor *tokens);

/* ------------------------------------------------------------------------
 * Text embeddings on the inference path (src/lm/llama_embed.c)
 * ------------------------------------------------------------------------ */

struct mr_tokenizer;

/* How mr_llama_embed() turns a text's final hidden states into one vector. */
typedef enum mr_llama_pooling {
    MR_LLAMA_POOLING_MEAN = 0, /* the mean over every token of the text */
    MR_LLAMA_POOLING_LAST = 1  /* the state of the text's last token */
} mr_llama_pooling;

/* Settings of mr_llama_embed(). */
typedef struct mr_llama_embed_options {
    mr_llama_pooling pooling; /* default MR_LLAMA_POOLING_MEAN */
    bool normalize;           /* scale each vector to L2 norm 1 (default false) */
    int max_tokens;           /* tokens kept per text, BOS included; later tokens are
                                 dropped (default 0: the model's context length) */
    int batch_tokens;         /* maximum token rows of one forward pass (default 4096);
                                 a longer text still runs alone */
} mr_llama_embed_options;

/* Fills options with the defaults above. */
void mr_llama_embed_options_default(mr_llama_embed_options *options);

/*
 * Embeds n texts (NUL-terminated UTF-8) into out [n, C], C the model's
 * dim. Each text is encoded with the tokenizer (BOS as the tokenizer's
 * default, special-token texts not parsed), cut to max_tokens, and run
 * through the model without the output projection. Its vector pools the
 * final hidden states (the output of the last RMSNorm, as
 * mr_llama_hidden() returns them), then is L2-normalised if asked.
 *
 * Texts are packed into forward passes of up to batch_tokens rows, in
 * which each text attends only to its own tokens. Products go through
 * BLAS and the other kernels through OpenMP. Results match
 * mr_llama_hidden() to rounding, not bit for bit. They do not depend on
 * how texts are packed or on the thread count as far as the BLAS library
 * keeps each product's summation order when the row count changes, which
 * tests/retrieval/test_dense_embed.c checks for the build's BLAS.
 *
 * Fills err on a NULL text, a text with no tokens, a tokenizer whose
 * vocabulary is larger than the model's, or when memory runs out.
 * options may be NULL for the defaults.
 */
mr_status mr_llama_embed(const mr_llama *model, const struct mr_tokenizer *tokenizer,
                         const char *const *texts, int n, const mr_llama_embed_options *options,
                         float *out, mr_error *err);

/* ------------------------------------------------------------------------
 * Gradient checkpointing (src/lm/llama_train.c)
 * ------------------------------------------------------------------------ */

/*
 * Turns gradient checkpointing of the training path on or off (off by
 * default). On, mr_llama_logits(), mr_llama_loss(), mr_llama_hidden() and
 * the LoRA functions keep only each block's output in the step's context
 * while recording, and the backward pass recomputes one block's
 * activations at a time (mr_tensor_checkpoint). Peak memory then grows
 * with one block instead of all of them, for about one more forward pass
 * of compute. Losses and gradients are bit for bit those without it.
 * Inference (mr_llama_eval) is unaffected.
 */
void mr_llama_set_checkpointing(mr_llama *model, bool enabled);
bool mr_llama_checkpointing(const mr_llama *model);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_LLAMA_H */
