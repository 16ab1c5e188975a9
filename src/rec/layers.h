/*
 * Layers shared by the transformer-style backbones (SASRec, FMLP-Rec): a
 * linear layer, a layer norm, the input stage with learned positions and
 * the position-wise feed-forward block, each declared as named weights in
 * a parameter set.
 *
 * A layer records the indices of its weights in the set, so it can be
 * declared before mr_paramset_finalize() and used after it. The forward
 * functions look the weights up by index on every call.
 */
#ifndef MR_REC_LAYERS_H
#define MR_REC_LAYERS_H

#include "multiround/params.h"
#include "multiround/rec.h"
#include "multiround/rng.h"
#include "multiround/tensor.h"

/* y = x W^T + b with W [out, in] and b [out]. */
typedef struct mr_rec_linear {
    int weight;
    int bias;
} mr_rec_linear;

/* Layer norm over the last dimension with a gain and a bias of size D. */
typedef struct mr_rec_norm {
    int weight;
    int bias;
    float eps;
} mr_rec_norm;

typedef enum mr_rec_activation {
    MR_REC_ACT_SILU = 0, /* "swish" in the reference configuration */
    MR_REC_ACT_GELU = 1  /* the exact erf form */
} mr_rec_activation;

/*
 * The input stage of SASRec and FMLP-Rec: learned positions [max_len, D]
 * added to the item embeddings, then a layer norm and dropout. The
 * weights are "backbone.position_embedding" and "backbone.input_norm.*".
 */
typedef struct mr_rec_positions {
    int weight;
    mr_rec_norm norm;
} mr_rec_positions;

/*
 * Post-LN feed-forward block: LN(x + Dropout(W2 act(W1 x + b1) + b2)),
 * with W1 [inner, D] and W2 [D, inner].
 */
typedef struct mr_rec_ffn {
    mr_rec_linear expand;
    mr_rec_linear project;
    mr_rec_norm norm;
    mr_rec_activation activation;
} mr_rec_ffn;

/*
 * Declares "<prefix>.weight" [out, in] and "<prefix>.bias" [out]. Returns
 * MR_OK, or the paramset's error in err (a name longer than 47 bytes, a
 * duplicate, a finalised set).
 */
mr_status mr_rec_linear_declare(mr_paramset *ps, const char *prefix, int64_t out,
                                int64_t in, mr_rec_linear *layer, mr_error *err);

/* Draws the weight from normal(0, std) and zeroes the bias. */
void mr_rec_linear_init(const mr_rec_linear *layer, mr_paramset *ps, float std,
                        mr_rng *rng);

/* Applies the layer to x [..., in]. Leading dimensions fold into one
 * matrix product when x is contiguous, and a layer wider than its input
 * adds the bias inside that product. */
mr_tensor *mr_rec_linear_forward(const mr_rec_linear *layer, const mr_paramset *ps,
                                 mr_ctx *ctx, mr_tensor *x);

/* Declares "<prefix>.weight" and "<prefix>.bias", both [dim]. */
mr_status mr_rec_norm_declare(mr_paramset *ps, const char *prefix, int64_t dim,
                              float eps, mr_rec_norm *norm, mr_error *err);

/* Sets the gain to 1 and the bias to 0. */
void mr_rec_norm_init(const mr_rec_norm *norm, mr_paramset *ps);

mr_tensor *mr_rec_norm_forward(const mr_rec_norm *norm, const mr_paramset *ps,
                               mr_ctx *ctx, mr_tensor *x);

/*
 * Declares "<prefix>.expand", "<prefix>.project" (linear layers) and
 * "<prefix>_norm" (the layer norm after the residual sum).
 */
mr_status mr_rec_ffn_declare(mr_paramset *ps, const char *prefix, int64_t dim,
                             int64_t inner, mr_rec_activation activation, float eps,
                             mr_rec_ffn *ffn, mr_error *err);

/* Linear weights from normal(0, std), biases 0, norm 1 and 0. */
void mr_rec_ffn_init(const mr_rec_ffn *ffn, mr_paramset *ps, float std, mr_rng *rng);

/* Applies the block to x [..., D], with dropout p on the projected output
 * (active only when ctx is in training mode). */
mr_tensor *mr_rec_ffn_forward(const mr_rec_ffn *ffn, const mr_paramset *ps, mr_ctx *ctx,
                              mr_tensor *x, float dropout, mr_rng *rng);

/*
 * Checks the item embeddings [B, L, D] and ids I32 [B, L] a backbone gets
 * against its configured max_len and D: L must equal max_len, or lie in
 * [1, max_len] when truncatable. Stores an error naming the backbone and
 * the shapes in ctx and returns false when they do not fit.
 */
bool mr_rec_check_inputs(mr_ctx *ctx, const char *backbone, const mr_rec_config *config,
                         bool truncatable, const mr_tensor *item_emb, const mr_tensor *seq);

/*
 * Declares the input stage's weights: the positions, then the norm with
 * this eps. Returns MR_OK or the paramset's error in err.
 */
mr_status mr_rec_positions_declare(mr_paramset *ps, const mr_rec_config *config, float eps,
                                   mr_rec_positions *positions, mr_error *err);

/* Draws the positions from normal(0, std) and resets the norm. */
void mr_rec_positions_init(const mr_rec_positions *positions, mr_paramset *ps, float std,
                           mr_rng *rng);

/*
 * Returns item_emb [B, Lb, D] + the last Lb rows of the positions
 * (broadcast over the batch), passed through the norm and dropout. Lb
 * must not exceed max_len.
 */
mr_tensor *mr_rec_positions_forward(const mr_rec_positions *positions, const mr_paramset *ps,
                                    mr_ctx *ctx, mr_tensor *item_emb, float dropout,
                                    mr_rng *rng);

/* Returns position L-1 of x [B, L, D] as a contiguous [B, 1, D] tensor. */
mr_tensor *mr_rec_last_position(mr_ctx *ctx, mr_tensor *x);

/*
 * The hidden states of every position, [B, L, D], before the backbone
 * reads the last one. Exposed for tests of which positions see which.
 * state is what the backbone's declare returned.
 */
mr_tensor *mr_rec_sasrec_encode(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                mr_tensor *seq, mr_rng *rng);
mr_tensor *mr_rec_fmlprec_encode(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                 mr_tensor *seq, mr_rng *rng);

#endif /* MR_REC_LAYERS_H */
