/*
 * Private parts of the recommendation model, for the trainer, the
 * evaluator and tests.
 *
 * Row 0 of the item embedding is padding. It starts at zero and every
 * lookup passes padding index 0, so it never receives a gradient: Adam,
 * SGD without weight decay and gradient clipping all leave it at zero, and
 * a trainer needs no extra step. A weight decay would also leave it at
 * zero, since it decays towards zero.
 */
#ifndef MR_REC_MODEL_INTERNAL_H
#define MR_REC_MODEL_INTERNAL_H

#include "backbone.h"
#include "multiround/rec.h"

/*
 * Creates a model as mr_rec_model_create does, with the given backbone
 * operations instead of those of config->backbone (tests use it to run
 * the round loop on a small stand-in backbone). The embedding is
 * initialised as config->backbone's would be.
 */
mr_rec_model *mr_rec_model_create_with_ops(const mr_rec_config *config,
                                           const mr_rec_backbone_ops *ops, int32_t n_items,
                                           uint64_t seed, mr_error *err);

/* The backbone's private state, for calling its forward directly. */
void *mr_rec_model_backbone_state(mr_rec_model *model);
const mr_rec_backbone_ops *mr_rec_model_backbone_ops(const mr_rec_model *model);

/*
 * True when the model accepts seq [B, Lb] with 1 <= Lb <= max_len in
 * mr_rec_model_loss and mr_rec_model_user_vectors, giving the same result
 * as for the full left-padded input when only padding was cut. SASRec and
 * SR-GNN always do. GRU4Rec and NextItNet do without Ada-Retrieval, or
 * with ada_zero_padding, which keeps every round's padding rows at zero.
 */
bool mr_rec_model_truncatable(const mr_rec_model *model);

/*
 * True when the model runs whole inputs in every round but the first,
 * whose input may be cut like a base model's (GRU4Rec and NextItNet under
 * Ada-Retrieval without ada_zero_padding): round 0 has no item adapter,
 * so its padding rows are zero.
 */
bool mr_rec_model_round0_truncatable(const mr_rec_model *model);

/*
 * mr_rec_model_loss with round 0 run on the last round0_length positions
 * of seq [B, max_len], which must hold every item of each row (as a
 * length group's longest input does), or 1 <= round0_length <= max_len
 * fails. 0 runs round 0 on all of them. The result equals the full run's
 * up to float rounding. Needs mr_rec_model_round0_truncatable() for a cut.
 */
mr_tensor *mr_rec_model_loss_cut(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                                 int round0_length, mr_tensor *candidates, mr_rng *rng);

/*
 * mr_rec_model_user_vectors, and when picks is not NULL it also receives
 * the ids the model retrieved in every round but the last:
 * (rounds - 1) * B * k ids, round major (picks[(t * B + b) * k + j]), each
 * round's ids in descending score.
 */
mr_status mr_rec_model_user_vectors_picks(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                                          float *out, int32_t *picks, mr_error *err);

/* mr_rec_model_user_vectors_picks with round 0 cut as in
 * mr_rec_model_loss_cut. */
mr_status mr_rec_model_user_vectors_cut(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                                        int round0_length, float *out, int32_t *picks,
                                        mr_error *err);

#endif /* MR_REC_MODEL_INTERNAL_H */
