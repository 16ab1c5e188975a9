/*
 * Private helpers of the GRU4Rec, NextItNet and SR-GNN backbones: linear
 * layers and PyTorch-style initialisers over weights in a parameter set,
 * input checks, and the functions the tests call to see inside a backbone
 * (NextItNet's per-position outputs, SR-GNN's session graph).
 */
#ifndef MR_REC_RNN_LAYERS_H
#define MR_REC_RNN_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/params.h"
#include "multiround/tensor.h"

/* A linear layer y = x W^T + b: indices of its weights in a parameter set
 * (bias is -1 when the layer has none). */
typedef struct mr_rec_rnn_linear {
    int weight; /* [out, in] */
    int bias;   /* [out] or -1 */
} mr_rec_rnn_linear;

/*
 * Declares "<name>.weight" [out, in] and, with has_bias, "<name>.bias"
 * [out] in ps. Returns false with err filled when a declaration fails.
 */
bool mr_rec_rnn_linear_declare(mr_paramset *ps, const char *name, int in, int out,
                               bool has_bias, mr_rec_rnn_linear *layer, mr_error *err);

/* Draws the weight from xavier uniform and zeroes the bias, as the
 * authors' xavier_uniform_initialization does for every nn.Linear. */
void mr_rec_rnn_linear_init_xavier(mr_paramset *ps, const mr_rec_rnn_linear *layer,
                                   mr_rng *rng);

/* Builds x W^T + b in ctx. */
mr_tensor *mr_rec_rnn_linear_forward(mr_ctx *ctx, mr_paramset *ps,
                                     const mr_rec_rnn_linear *layer, mr_tensor *x);

/*
 * Declares a weight named "<prefix><name>" and returns its index, or -1
 * with err filled.
 */
int mr_rec_rnn_declare(mr_paramset *ps, const char *prefix, const char *name, int ndim,
                       const int64_t *shape, mr_error *err);

/* Draws every element of weight `index` from uniform(-bound, bound). */
void mr_rec_rnn_init_uniform(mr_paramset *ps, int index, float bound, mr_rng *rng);

/*
 * Checks the forward inputs shared by the three backbones: item_emb F32
 * [B, L, dim] with B, L >= 1 and, when seq is not NULL, seq I32 [B, L].
 * Stores an error naming the backbone and the shapes in ctx and returns
 * false on a mismatch.
 */
bool mr_rec_rnn_check_inputs(mr_ctx *ctx, const char *backbone, const mr_tensor *item_emb,
                             const mr_tensor *seq, int dim);

/* Returns x[:, L - 1, :] of x [B, L, C] as a [B, C] tensor. */
mr_tensor *mr_rec_rnn_last_step(mr_ctx *ctx, mr_tensor *x);

/*
 * Builds t [1, ...] repeated to `rows` rows. The backward pass sums the
 * rows' gradients into t.
 */
mr_tensor *mr_rec_rnn_repeat_rows(mr_ctx *ctx, mr_tensor *t, int64_t rows);

/*
 * Builds NextItNet's residual stack over item_emb [B, L, D] and returns
 * every position's output [B, L, D], before the final linear layer. state
 * is the value NextItNet's declare returned. Exposed for the causality
 * tests.
 */
mr_tensor *mr_rec_nextitnet_positions(void *state, mr_ctx *ctx, mr_tensor *item_emb);

/*
 * Builds the session graph of one left-padded sequence seq[0..L-1] the way
 * the authors' SR-GNN code does. The nodes are the distinct ids of the
 * sequence in ascending order, including padding id 0 when present. Node
 * slots past the last node are unused. Consecutive positions whose ids are
 * both non-zero give a directed edge from the earlier id to the later one
 * (an edge counts once however often it occurs).
 *
 * Writes, for node slots and positions 0..L-1:
 *   representative[n]: a position holding node n's id (the first one), or
 *                      the position of node 0 for unused slots;
 *   alias[p]:          the node of position p;
 *   a_in[n * L + m]:   edge m -> n divided by the in-degree of n;
 *   a_out[n * L + m]:  edge n -> m divided by the out-degree of n.
 * Returns the number of nodes.
 */
int mr_rec_srgnn_graph(const int32_t *seq, int length, int32_t *representative,
                       int32_t *alias, float *a_in, float *a_out);

#endif /* MR_REC_RNN_LAYERS_H */
