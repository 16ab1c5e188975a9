/*
 * Private layout of mr_llama, shared by the model, training, inference and
 * GGUF files of src/lm/.
 *
 * The weights form one list in storage order: token_embd.weight, then for
 * each block the kinds of enum llama_block_kind that the config uses (the
 * q/k/v biases only with qkv_bias), then output_norm.weight and, unless the
 * output is tied, output.weight.
 */
#ifndef MR_LM_LLAMA_INTERNAL_H
#define MR_LM_LLAMA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/gguf.h"
#include "multiround/llama.h"

/* Maximum weight name length with the NUL; "blk.<layer>.attn_output.weight"
 * fits with room to spare. */
#define LLAMA_NAME_MAX 48

/* The weights of one block, in storage order. */
enum llama_block_kind {
    LLAMA_ATTN_NORM,
    LLAMA_ATTN_Q,
    LLAMA_ATTN_K,
    LLAMA_ATTN_V,
    LLAMA_ATTN_Q_BIAS,
    LLAMA_ATTN_K_BIAS,
    LLAMA_ATTN_V_BIAS,
    LLAMA_ATTN_OUTPUT,
    LLAMA_FFN_NORM,
    LLAMA_FFN_GATE,
    LLAMA_FFN_UP,
    LLAMA_FFN_DOWN,
    LLAMA_BLOCK_KINDS
};

struct mr_llama {
    mr_llama_config config;
    mr_llama_weight *weights;     /* weight_count entries in storage order */
    char (*names)[LLAMA_NAME_MAX];
    void **owned;                 /* per weight: memory the model owns, or NULL */
    int weight_count;
    int *block_slots;             /* [layers][LLAMA_BLOCK_KINDS]: index or -1 */
    int token_embd;               /* index of token_embd.weight */
    int output_norm;
    int output;                   /* output.weight, or token_embd when tied */
    mr_paramset *params;          /* F32 parameters of a trainable model, or NULL */
    mr_gguf *gguf;                /* the mapping weights point into, or NULL */
    bool checkpoint_blocks;       /* recompute each block in the backward pass */
    bool float_decode;            /* single rows use mr_qmatvec, not mr_qmatvec_int8 */
};

/*
 * Allocates a model with the weight list of config: names and shapes set,
 * types F32 and data NULL. Validates the config. Returns NULL and fills
 * err on an invalid config or when memory runs out.
 */
mr_llama *llama_create_layout(const mr_llama_config *config, mr_error *err);

/* The weight of kind in block layer, or NULL when the config has none. */
const mr_llama_weight *llama_block_weight(const mr_llama *model, int layer,
                                          enum llama_block_kind kind);

/* Widths used throughout: Hq D and Hkv D. */
static inline int64_t llama_q_width(const mr_llama_config *c) {
    return (int64_t)c->heads * c->head_dim;
}
static inline int64_t llama_kv_width(const mr_llama_config *c) {
    return (int64_t)c->kv_heads * c->head_dim;
}

/* Replaces the storage of weight index by type/data; data becomes owned by
 * the model when owned is true (the previous owned buffer is freed). */
void llama_set_weight_data(mr_llama *model, int index, mr_qtype type, const void *data,
                           bool owned);

/* The largest ne[0] of any weight: room for one decoded row. */
size_t llama_widest_row(const mr_llama *model);

/*
 * Returns the storage type of weight w when `requested` is asked for:
 * F32 for 1-D weights, F16 for a matrix whose rows do not split into
 * requested's blocks (llama.cpp's converter also falls back for such
 * tensors), and requested otherwise.
 */
mr_qtype llama_storage_type(const mr_llama_weight *w, mr_qtype requested);

/* Decodes row r of a weight into dst (ne[0] floats). */
void llama_weight_row(const mr_llama_weight *w, int64_t r, float *dst);

/*
 * Adds an adapter's term to one block projection. y = x W^T (+ b) is the
 * base output for weight kind of block layer, and x its input. Returns y
 * plus the adapter's term, or y itself where the adapter has none for that
 * weight. y may be NULL after an earlier error, and is then returned.
 */
typedef mr_tensor *(*llama_adapter_fn)(void *adapter, mr_ctx *ctx, mr_tensor *x, mr_tensor *y,
                                       int layer, enum llama_block_kind kind);

/* How llama_forward_logits() takes the weights and adapts projections. */
typedef struct llama_forward_options {
    const char *subsystem;    /* prefix of error messages, such as "llama" */
    bool constant_weights;    /* weights as constants without gradients (F32
                               * storage shared, other types decoded into the
                               * ctx), instead of the model's F32 parameters */
    llama_adapter_fn adapter; /* added to every block projection, or NULL */
    void *adapter_data;       /* first argument of adapter */
    mr_rng *adapter_rng;      /* the stream the adapter draws dropout from, or
                               * NULL; rewound when a block is recomputed */
} llama_forward_options;

/*
 * Builds the logits [B, T, V] of I32 tokens [B, T] on engine operations,
 * the one forward pass behind mr_llama_logits() and mr_lora_logits().
 * Without constant_weights the model must be trainable. Returns NULL with
 * the error stored in ctx on bad input.
 */
mr_tensor *llama_forward_logits(const mr_llama *model, mr_ctx *ctx, mr_tensor *tokens,
                                const llama_forward_options *options);

/*
 * Builds the mean next-token cross-entropy of llama_forward_logits() for
 * I32 targets of the tokens' shape. Positions where the F32 mask (NULL for
 * none) is 0, and targets of -1, are ignored.
 */
mr_tensor *llama_forward_loss(const mr_llama *model, mr_ctx *ctx, mr_tensor *tokens,
                              mr_tensor *targets, mr_tensor *mask,
                              const llama_forward_options *options);

#endif /* MR_LM_LLAMA_INTERNAL_H */
