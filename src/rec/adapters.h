/*
 * Ada-Retrieval's adapters (Li et al., AAAI 2024; code: ll0ruc/Ada-Retrieval).
 *
 * The item representation adapter (IRA) rewrites the embeddings of a
 * user's input items before the backbone sees them, with attention to the
 * items retrieved in the earlier rounds:
 *   LFT, per earlier round's block X [k, D] of retrieved items in rank
 *     order: X' = irdft(W (.) rdft(X)) along the item axis with one
 *     learnable complex weight W [k/2+1, D], then
 *     LN(Dropout(Linear_DxD(X')) + X);
 *   CAT, per input position with embedding e and the stacked LFT outputs
 *     C [k(t-1), D]: e' = LN(Dropout(softmax(e C^T / sqrt(D)) C) + e).
 * The user representation adapter (URA) merges the backbone's output h_t
 * with g, the last state of a one-layer GRU over the earlier rounds' user
 * vectors: u_t = LN(Dropout(Linear_{2D->D}(ReLU(Linear_{2D->2D}([h_t; g]))))
 * + h_t). Every layer norm uses eps 1e-12.
 *
 * Weights are named "ada.*" in the model's parameter set, so that a base
 * model's checkpoint loads into an Ada-Retrieval model and leaves the
 * adapters at their fresh initialisation.
 */
#ifndef MR_REC_ADAPTERS_H
#define MR_REC_ADAPTERS_H

#include <stdbool.h>

#include "multiround/params.h"
#include "multiround/rng.h"
#include "multiround/tensor.h"

/* Layer-norm epsilon of every adapter layer norm, as in the reference. */
#define MR_REC_ADA_NORM_EPS 1e-12f

/*
 * The adapters' settings and weights. The tensors are views into the
 * model's parameter set after mr_rec_ada_bind(); tests may point them at
 * tensors of their own instead.
 */
typedef struct mr_rec_ada {
    int dim;       /* D */
    int per_round; /* k: items per round, the LFT's transform length */
    float dropout; /* probability of each adapter dropout */

    /* LFT: complex weight [2, k/2+1, D] (real parts, then imaginary
     * parts), dense layer [D, D] and [D], layer norm [D] and [D]. */
    mr_tensor *lft_weight;
    mr_tensor *lft_dense_weight, *lft_dense_bias;
    mr_tensor *lft_norm_weight, *lft_norm_bias;

    /* CAT: layer norm [D] and [D]. */
    mr_tensor *cat_norm_weight, *cat_norm_bias;

    /* URA: GRU [3D, D], [3D, D], [3D], [3D] in PyTorch's gate order, MLP
     * [2D, 2D], [2D], [D, 2D], [D], layer norm [D] and [D]. */
    mr_tensor *gru_w_ih, *gru_w_hh, *gru_b_ih, *gru_b_hh;
    mr_tensor *mlp1_weight, *mlp1_bias, *mlp2_weight, *mlp2_bias;
    mr_tensor *ura_norm_weight, *ura_norm_bias;
} mr_rec_ada;

/*
 * Sets ada's sizes and declares its weights in ps (not yet finalised)
 * under "ada.". Returns MR_OK, or an error naming the weight at fault.
 */
mr_status mr_rec_ada_declare(mr_rec_ada *ada, int dim, int per_round, float dropout,
                             mr_paramset *ps, mr_error *err);

/* Points ada's tensors at the weights of ps after mr_paramset_finalize. */
mr_status mr_rec_ada_bind(mr_rec_ada *ada, const mr_paramset *ps, mr_error *err);

/*
 * Initialises the adapters as the reference does: LFT complex weight
 * normal(0, 0.02); linear weights normal(0, 0.02) (xavier false, for
 * SASRec and FMLP-Rec) or xavier uniform (xavier true, for GRU4Rec,
 * NextItNet and SR-GNN) with zero biases; GRU weights and biases
 * uniform(-1/sqrt(D), 1/sqrt(D)), PyTorch's default; layer norms 1 and 0.
 */
void mr_rec_ada_init(mr_rec_ada *ada, bool xavier, mr_rng *rng);

/* Number of adapter weights (55,680 for D 64 and k 20). */
int64_t mr_rec_ada_numel(const mr_rec_ada *ada);

/*
 * The LFT of blocks x [..., k, D]: each block along the second-last axis
 * is transformed separately with the shared weights. Result: x's shape.
 */
mr_tensor *mr_rec_ada_lft(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *x, mr_rng *rng);

/*
 * CAT: adapts item_emb [B, L, D] with attention over context [B, M, D].
 * Every position attends to every context row; there is no mask, so
 * padding positions (zero rows) become LN(ctx). Result: [B, L, D].
 */
mr_tensor *mr_rec_ada_cat(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *item_emb,
                          mr_tensor *context, mr_rng *rng);

/*
 * The whole IRA for round t = 1 + rounds_before: picks is I32
 * [B, rounds_before, k] with the earlier rounds' retrieved ids in rank
 * order; their embeddings are looked up in table [N, D], transformed by
 * the LFT and stacked into the context of CAT over item_emb [B, L, D].
 * Result: [B, L, D].
 */
mr_tensor *mr_rec_ada_ira(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *table,
                          mr_tensor *item_emb, mr_tensor *picks, mr_rng *rng);

/*
 * Advances the URA's GRU by one round: returns the state [B, D] after
 * reading user vector u [B, D], from state g [B, D] (NULL for the zero
 * state before round 1). Running it over u_1 .. u_{t-1} gives the same
 * last state as a GRU run over the whole stack.
 */
mr_tensor *mr_rec_ada_history_step(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *g,
                                   mr_tensor *u);

/*
 * URA: merges the backbone output h [B, D] with the GRU state g [B, D].
 * Result: the user vector [B, D].
 */
mr_tensor *mr_rec_ada_ura(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *h, mr_tensor *g,
                          mr_rng *rng);

#endif /* MR_REC_ADAPTERS_H */
