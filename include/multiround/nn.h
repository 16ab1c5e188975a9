/*
 * multiround neural network models built on the tensor engine.
 *
 * mr_gpt is a small GPT-2 style causal transformer, the engine's reference
 * model: learned token and position embeddings, L pre-LayerNorm blocks of
 * fused causal multi-head attention and a GELU MLP of width 4C, a final
 * LayerNorm and an output projection tied to the token embedding.
 *
 * Every parameter lives in one contiguous float buffer, allocated once in
 * the model's own long-lived context; each weight is a view into it. The
 * buffer's gradient is contiguous as well, so an optimizer can update the
 * whole model in one pass over mr_gpt_flat_params().
 *
 *     mr_gpt_config config = {.vocab_size = 65, .context = 64, .layers = 2,
 *                             .heads = 4, .channels = 64, .dropout = 0.0f};
 *     mr_gpt *gpt = mr_gpt_create(&config, 1234, &err);
 *     mr_ctx *step = mr_ctx_create(0);
 *     mr_tensor *loss = mr_gpt_forward(gpt, step, tokens, targets);
 *     mr_tensor_backward(step, loss, NULL);
 *     ... optimizer step over mr_gpt_params(), then mr_ctx_reset(step) ...
 */
#ifndef MULTIROUND_NN_H
#define MULTIROUND_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Shape and regularisation of a GPT model. */
typedef struct mr_gpt_config {
    int vocab_size; /* V: token ids are in [0, V) */
    int context;    /* T: the longest sequence the position table covers */
    int layers;     /* L: transformer blocks */
    int heads;      /* H: attention heads; must divide channels */
    int channels;   /* C: width of the residual stream */
    float dropout;  /* probability in [0, 1) after embeddings, attention
                       projection and MLP; active only in training mode */
} mr_gpt_config;

typedef struct mr_gpt mr_gpt;

/*
 * Creates a model with freshly initialised weights, as GPT-2 does. Every
 * weight matrix and both embeddings are drawn from normal(0, 0.02). The
 * exceptions are the two projections in each block that write into the
 * residual stream (attention output and MLP output): they use std
 * 0.02 / sqrt(2 L). Biases start at 0 and LayerNorm weights at 1. The same
 * config and seed give bit-identical weights. Returns NULL and fills err
 * when the config is invalid or memory runs out.
 */
mr_gpt *mr_gpt_create(const mr_gpt_config *config, uint64_t seed,
                      mr_error *err);

/* Frees the model and its parameter context. gpt may be NULL. */
void mr_gpt_free(mr_gpt *gpt);

/* Returns the model's configuration. */
const mr_gpt_config *mr_gpt_get_config(const mr_gpt *gpt);

/*
 * Builds the logits [B, T, V] of a batch of I32 tokens [B, T] (T <= context)
 * in ctx. Each position attends only to itself and earlier positions. Dropout
 * applies when ctx is in training mode and config.dropout > 0. Returns NULL
 * with the error stored in ctx when the tokens have the wrong type or shape
 * or an id is outside [0, V).
 */
mr_tensor *mr_gpt_logits(mr_gpt *gpt, mr_ctx *ctx, mr_tensor *tokens);

/*
 * Builds the logits of tokens and returns the mean cross-entropy loss (a
 * scalar) against targets, I32 [B, T]. Targets equal to -1 are ignored and
 * do not count in the mean. Returns NULL with the error stored in ctx on
 * bad input, as mr_gpt_logits does.
 */
mr_tensor *mr_gpt_forward(mr_gpt *gpt, mr_ctx *ctx, mr_tensor *tokens,
                          mr_tensor *targets);

/*
 * Sets *tensors to the model's parameter views in their storage order and
 * *count to their number. Each view is contiguous, named as in GPT-2's
 * Hugging Face checkpoints ("wte", "h.0.attn.c_attn.weight", ...), carries
 * MR_FLAG_PARAM, and its gradient is a window of the flat gradient, so an
 * optimizer from optim.h accepts the views directly. The array belongs to
 * the model.
 */
void mr_gpt_params(mr_gpt *gpt, mr_tensor ***tensors, int *count);

/*
 * Writes to out the parameter views that GPT-2 applies weight decay to
 * (decayed true: the 2-D matrices and embeddings) or not (decayed false:
 * biases and LayerNorm weights), in storage order, and returns how many.
 * out must have room for every view (the count of mr_gpt_params()).
 */
int mr_gpt_params_by_decay(mr_gpt *gpt, bool decayed, mr_tensor **out);

/* Returns the flat parameter tensor [P] that every view shares; its grad
 * contains the gradients of all parameters in the same order. */
mr_tensor *mr_gpt_flat_params(mr_gpt *gpt);

/* Returns the number of trainable floats P:
 * V C + T C + L (12 C^2 + 13 C) + 2 C. */
int64_t mr_gpt_param_count(const mr_gpt *gpt);

/* Sets every parameter gradient to zero. */
void mr_gpt_zero_grad(mr_gpt *gpt);

/*
 * Appends count tokens to ids [0, length) by greedy decoding: each new
 * token is the argmax of the logits at the last position, computed from
 * the last min(length, context) tokens. ids must have room for length +
 * count entries and length must be >= 1. ctx is reset before each token;
 * gradients and training mode are switched off inside and restored. Returns
 * MR_OK, or the first error with its message in err.
 */
mr_status mr_gpt_generate_greedy(mr_gpt *gpt, mr_ctx *ctx, int32_t *ids,
                                 int length, int count, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_NN_H */
