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
#include "multiround/quant.h"

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

/*
 * Row kernels of the two inference paths, mr_llama_eval() (llama_infer.c)
 * and mr_llama_embed() (llama_embed.c), in llama_rows.c. They run on the
 * typed weights over a matrix of token rows. Their own loops compute each
 * row alone, so neither the thread count nor the row count changes a row's
 * result. The BLAS products may round a row differently for another row
 * count, and a product of one row rounds differently when
 * llama_activations.single_row_matvec is set.
 */

/* Weight rows decoded at once for a batched product on a non-F32 type. */
#define LLAMA_DECODE_ROWS 256

/* The activations of one block over up to a fixed number of token rows. */
typedef struct llama_activations {
    float *x;       /* [rows, C] residual stream */
    float *h;       /* [rows, C] normalised input of a sublayer */
    float *q;       /* [rows, Hq D] */
    float *k;       /* [rows, Hkv D] */
    float *v;       /* [rows, Hkv D] */
    float *att;     /* [rows, Hq D] attention output */
    float *gate;    /* [rows, F] */
    float *up;      /* [rows, F] */
    float *proj;    /* [rows, C] sublayer output */
    float *cos_sin; /* [rows, D] cosines then sines of each pair's angle */
    float *decoded; /* [LLAMA_DECODE_ROWS, widest weight row] */
    void *int8_x;   /* one row of the widest input quantised for mr_qmatvec_int8() */
    bool single_row_matvec; /* a product of one row runs as mr_qmatvec() on
                             * the stored type, not as a matrix product */
    bool int8_matvec;       /* with single_row_matvec: mr_qmatvec_int8() in
                             * place of mr_qmatvec() (Q8_0 and Q4_0 only) */
} llama_activations;

/* Allocates the buffers of a for rows token rows of model. Returns false,
 * with nothing left allocated, when memory runs out. */
bool llama_activations_alloc(llama_activations *a, const mr_llama *model, int64_t rows);

/* Frees the buffers of a and clears it, so that freeing it again is safe. */
void llama_activations_free(llama_activations *a);

/*
 * Computes y [rows, out] = x [rows, in] W^T (+ bias) for a weight w with
 * ne = [in, out]. F32 weights go to BLAS as stored. Other types are
 * decoded LLAMA_DECODE_ROWS rows at a time into a->decoded first. A single
 * row goes through mr_qmatvec() on the stored type instead when
 * a->single_row_matvec is set, or through mr_qmatvec_int8() when
 * a->int8_matvec is set as well.
 */
void llama_weight_product(llama_activations *a, const mr_llama_weight *w,
                          const mr_llama_weight *bias, const float *x, int64_t rows, float *y);

/* Computes dst = src / sqrt(mean(src^2) + eps) * weight for each row of
 * width n, summing the squares in double. */
void llama_rms_norm_rows(const float *src, const float *weight, float eps, int64_t rows,
                         int64_t n, float *dst);

/* Fills one row of a cos_sin table [D] for position: the D/2 cosines, then
 * the D/2 sines of the pair angles, computed in double as the engine's
 * rope does. */
void llama_rope_angles(const mr_llama_config *c, int64_t position, float *cos_sin);

/*
 * Runs the first half of block layer on a->x [rows, C]: the attention
 * RMSNorm, the q, k and v projections with their biases, and the rotation
 * of q and k by a->cos_sin. Attention itself is left to the caller, which
 * reads a->q, a->k and a->v and writes a->att.
 */
void llama_block_qkv(const mr_llama *model, llama_activations *a, int layer,
                     int64_t rows);

/*
 * Runs the rest of block layer after attention: adds the output projection
 * of a->att to a->x, then the SwiGLU feed-forward sublayer.
 */
void llama_block_finish(const mr_llama *model, llama_activations *a, int layer,
                        int64_t rows);

#endif /* MR_LM_LLAMA_INTERNAL_H */
