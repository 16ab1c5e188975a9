/*
 * The interface every sequential-recommendation backbone implements.
 *
 * A backbone turns the (possibly adapted) embeddings of a user's recent
 * items into one user vector. It declares its weights in the model's
 * parameter set, initialises them once the set is finalised, and builds
 * its forward pass in a step context. Ada-Retrieval runs the same backbone
 * once per round on differently adapted embeddings, so forward must not
 * keep state between calls.
 */
#ifndef MR_REC_BACKBONE_H
#define MR_REC_BACKBONE_H

#include "multiround/params.h"
#include "multiround/rec.h"

typedef struct mr_rec_backbone mr_rec_backbone;

typedef struct mr_rec_backbone_ops {
    /*
     * Declares the backbone's weights in ps with names prefixed
     * "backbone." and returns the backbone's private state, or NULL with
     * err filled.
     */
    void *(*declare)(const mr_rec_config *config, mr_paramset *ps,
                     mr_error *err);

    /* Initialises the declared weights (after mr_paramset_finalize) the
     * way the reference implementation does. */
    void (*init)(void *state, mr_paramset *ps, mr_rng *rng);

    /*
     * Builds the user vectors [B, D] in ctx. item_emb is [B, L, D]: the
     * embeddings of the input items, left-padded (padding rows are zero
     * before any adapter, but an adapter may make them non-zero); seq is
     * I32 [B, L] with the ids (0 = padding), for masks and graphs. L is
     * max_len, or any length in [1, max_len] when truncatable is set. Dropout
     * draws from rng when ctx is in training mode. Returns NULL with the
     * error stored in ctx on failure.
     */
    mr_tensor *(*forward)(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                          mr_tensor *seq, mr_rng *rng);

    /* Frees the private state (not the weights, which ps owns). */
    void (*free)(void *state);

    /*
     * True when forward accepts inputs cut to their last Lb positions
     * (1 <= Lb <= max_len) and returns the same user vector as for the
     * full left-padded input whenever the cut drops only padding from an
     * input with at least one item. Trainers and evaluators then group
     * inputs by length to skip the padding, and run all-padding inputs at
     * max_len.
     */
    bool truncatable;

    /*
     * True when forward keeps the promise of truncatable as long as the
     * padding rows of item_emb are zero, that is for the base model and
     * for round 0 of Ada-Retrieval, but not for the later rounds, whose
     * item adapter gives padding positions non-zero embeddings unless
     * ada_zero_padding is set (GRU4Rec, NextItNet).
     */
    bool truncatable_without_adapters;
} mr_rec_backbone_ops;

/* The operations of each backbone, indexed by mr_rec_backbone_type. */
extern const mr_rec_backbone_ops mr_rec_gru4rec_ops;
extern const mr_rec_backbone_ops mr_rec_sasrec_ops;
extern const mr_rec_backbone_ops mr_rec_nextitnet_ops;
extern const mr_rec_backbone_ops mr_rec_srgnn_ops;
extern const mr_rec_backbone_ops mr_rec_fmlprec_ops;

/* Returns the operations for type. */
const mr_rec_backbone_ops *mr_rec_backbone_ops_for(mr_rec_backbone_type type);

#endif /* MR_REC_BACKBONE_H */
