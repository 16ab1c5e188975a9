/*
 * Length-grouped, truncated inputs. For SASRec and SR-GNN, with and
 * without Ada-Retrieval, and for GRU4Rec and NextItNet without it, with
 * dropout 0, a batch run as
 * length groups (each cut to its longest input and weighted by its share
 * of the batch) gives the loss, weight gradients, user vectors and
 * evaluation metrics of the same batch at full length. GRU4Rec and
 * NextItNet under Ada-Retrieval cut only round 0, with the same result,
 * and every round with ada_zero_padding. The training batch
 * includes all-padding inputs, which must run at full length. Models whose
 * output depends on the padding rows reject cut inputs.
 *
 * Tolerances: the groups change only the shapes of the products and the
 * order of the sums over the batch, so values differ by float rounding.
 * Loss within 1e-6 relative; gradients within 2e-6 absolute plus 1e-4
 * relative (gradients are of order 1e-3 and sum 192 examples); user
 * vectors (order 1) within 1e-5.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "length_groups.h"
#include "model_internal.h"
#include "trainer.h"
#include "multiround/rec.h"
#include "test.h"

#define ITEMS 200
#define MAX_LEN 32
#define BATCH 192
#define NEGATIVES 10

static char data_path[128];

/* Writes 300 users whose sequences have 3 to 40 items (inputs of 0 to 39
 * items, so some are cut at MAX_LEN and most are shorter) and loads
 * them. */
static mr_rec_data *varied_data(void) {
    FILE *file = fopen(data_path, "w");
    mr_rng rng;
    mr_rng_init(&rng, 21);
    for (int user = 1; user <= 300; user++) {
        int length = 3 + (int)mr_rng_below(&rng, 38);
        fprintf(file, "%d", user);
        for (int j = 0; j < length; j++) {
            fprintf(file, " %d", 1 + (int)mr_rng_below(&rng, ITEMS));
        }
        fputc('\n', file);
    }
    fclose(file);

    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(data_path, &data, &err), MR_OK);
    return data;
}

static mr_rec_config small_config(mr_rec_backbone_type backbone, bool ada, bool zero_padding) {
    mr_rec_config config;
    mr_rec_config_default(&config, backbone);
    config.dim = 16;
    config.max_len = MAX_LEN;
    config.heads = 2;
    config.inner_size = 32;
    config.dropout = 0.0f;
    config.negatives = NEGATIVES;
    config.ada = ada;
    config.ada_zero_padding = zero_padding;
    config.rounds = 3;
    config.per_round = 4;
    return config;
}

/* A backbone's operations with truncation turned off: the full-length
 * path. */
static mr_rec_backbone_ops full_length_ops(mr_rec_backbone_type backbone) {
    mr_rec_backbone_ops ops = backbone == MR_REC_SASREC      ? mr_rec_sasrec_ops
                              : backbone == MR_REC_SRGNN    ? mr_rec_srgnn_ops
                              : backbone == MR_REC_NEXTITNET ? mr_rec_nextitnet_ops
                                                            : mr_rec_gru4rec_ops;
    ops.truncatable = false;
    ops.truncatable_without_adapters = false;
    return ops;
}

/* Rows of the training batch whose input is all padding. */
static bool all_padding_row(int64_t i) { return i % 12 == 5; }

/* Fills the inputs [BATCH, MAX_LEN] and candidates [BATCH, 1 + NEGATIVES]
 * of BATCH training examples spread evenly over the users, so that the
 * batch holds inputs of every length. The rows that all_padding_row picks
 * take the user's first item as the target, so their input is empty. */
static void fill_batch(const mr_rec_data *data, int32_t *seq, int32_t *candidates) {
    mr_rng rng;
    mr_rng_init(&rng, 5);
    for (int64_t i = 0; i < BATCH; i++) {
        int64_t example = i * (data->n_train / BATCH);
        int64_t s = data->train_seq[example];
        int64_t pos = all_padding_row(i) ? 0 : data->train_pos[example];
        mr_rec_data_input(data, s, pos, MAX_LEN, seq + i * MAX_LEN);
        candidates[i * (1 + NEGATIVES)] = data->items[data->offsets[s] + pos];
        mr_rec_sample_negatives(data, s, NEGATIVES, &rng,
                                candidates + i * (1 + NEGATIVES) + 1);
    }
}

/* Builds the loss of rows [count, length] scaled by scale, with round 0
 * on the last round0_length positions (0 for all), adds its gradient to
 * the weights and returns the scaled loss. */
static double scaled_loss_backward(mr_rec_model *model, const int32_t *seq_values,
                                   const int32_t *candidate_values, int64_t count, int length,
                                   int round0_length, float scale) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_ctx_set_training(ctx, true);
    mr_ctx_set_grad_enabled(ctx, true);
    mr_rng rng;
    mr_rng_init(&rng, 9);
    mr_tensor *seq = mr_tensor_from_i32(ctx, 2, (int64_t[]){count, length}, seq_values);
    mr_tensor *candidates =
        mr_tensor_from_i32(ctx, 2, (int64_t[]){count, 1 + NEGATIVES}, candidate_values);
    mr_tensor *loss = mr_rec_model_loss_cut(model, ctx, seq, round0_length, candidates, &rng);
    loss = mr_tensor_scale(ctx, loss, scale);
    CHECK_CTX_OK(ctx);
    double value = 0.0;
    if (loss != NULL) {
        value = loss->data[0];
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    }
    mr_ctx_free(ctx);
    return value;
}

/*
 * Computes one batch's loss and gradients at full length and in length
 * groups, and compares them. Returns the number of groups used.
 */
static int64_t compare_grouped_loss(mr_rec_backbone_type backbone, bool ada, bool zero_padding) {
    mr_rec_data *data = varied_data();
    mr_rec_config config = small_config(backbone, ada, zero_padding);
    mr_error err;
    mr_rec_model *model = mr_rec_model_create(&config, data->n_items, 17, &err);
    CHECK(model != NULL);
    if (model == NULL || data->n_train < BATCH) {
        mr_rec_data_free(data);
        mr_rec_model_free(model);
        return 0;
    }
    mr_paramset *ps = mr_rec_model_params(model);
    mr_tensor *flat = mr_paramset_flat(ps);
    int64_t n = mr_tensor_numel(flat);

    int32_t seq[BATCH * MAX_LEN], candidates[BATCH * (1 + NEGATIVES)];
    fill_batch(data, seq, candidates);

    mr_paramset_zero_grad(ps);
    double full_loss = scaled_loss_backward(model, seq, candidates, BATCH, MAX_LEN, 0, 1.0f);
    float *full_grad = malloc((size_t)n * sizeof(float));
    memcpy(full_grad, flat->grad, (size_t)n * sizeof(float));

    /* Groups of at least 16 rows, so a batch of 192 splits several ways. */
    int64_t order[BATCH];
    mr_rec_length_group groups[BATCH];
    int32_t group_seq[BATCH * MAX_LEN], group_candidates[BATCH * (1 + NEGATIVES)];
    int64_t n_groups = mr_rec_length_groups(seq, BATCH, MAX_LEN, 16, order, groups);

    /* The all-padding rows run at full length. */
    int empty_rows = 0, empty_rows_cut = 0;
    for (int64_t g = 0; g < n_groups; g++) {
        for (int64_t r = groups[g].first; r < groups[g].first + groups[g].count; r++) {
            if (all_padding_row(order[r])) {
                empty_rows++;
                empty_rows_cut += groups[g].length != MAX_LEN;
            }
        }
    }
    CHECK_INT_EQ(empty_rows, BATCH / 12);
    CHECK_INT_EQ(empty_rows_cut, 0);

    /* A model that may cut only round 0 gets whole rows, and round 0 runs
     * them cut to the group's length. */
    bool round0_only = mr_rec_model_round0_truncatable(model);
    bool padded_backbone = backbone == MR_REC_GRU4REC || backbone == MR_REC_NEXTITNET;
    CHECK(round0_only == (ada && !zero_padding && padded_backbone));
    mr_paramset_zero_grad(ps);
    double grouped_loss = 0.0;
    for (int64_t g = 0; g < n_groups; g++) {
        int length = round0_only ? MAX_LEN : groups[g].length;
        mr_rec_gather_rows(seq, MAX_LEN, candidates, 1 + NEGATIVES, order + groups[g].first,
                           groups[g].count, length, group_seq, group_candidates);
        grouped_loss += scaled_loss_backward(model, group_seq, group_candidates,
                                             groups[g].count, length,
                                             round0_only ? groups[g].length : 0,
                                             (float)groups[g].count / BATCH);
    }

    CHECK(full_loss > 0.1);
    CHECK_NEAR(grouped_loss, full_loss, 1e-6 * full_loss);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(flat->grad, full_grad, n, 2e-6, 1e-4), 0);

    /* SASRec's position embedding's first rows feed only inputs of
     * MAX_LEN items, so its gradient is not zero there: the groups used
     * them. */
    mr_tensor *positions = mr_paramset_find(ps, "backbone.position_embedding");
    CHECK((positions != NULL) == (backbone == MR_REC_SASREC));
    if (positions != NULL) {
        double first_row = 0.0;
        for (int d = 0; d < config.dim; d++) {
            first_row += positions->grad[d] * (double)positions->grad[d];
        }
        CHECK(first_row > 0.0);
    }

    free(full_grad);
    mr_rec_model_free(model);
    mr_rec_data_free(data);
    return n_groups;
}

static void grouped_loss_matches_full(void) {
    int64_t n_groups = compare_grouped_loss(MR_REC_SASREC, false, false);
    CHECK(n_groups >= 2);
}

static void grouped_ada_loss_matches_full(void) {
    int64_t n_groups = compare_grouped_loss(MR_REC_SASREC, true, false);
    CHECK(n_groups >= 2);
}

/* GRU4Rec starts a cut input from the state that the dropped padding
 * steps leave, which must give the full-length loss and gradients. */
static void grouped_gru4rec_loss_matches_full(void) {
    int64_t n_groups = compare_grouped_loss(MR_REC_GRU4REC, false, false);
    CHECK(n_groups >= 2);
}

/* NextItNet's convolutions read the padding activations of a batch-1
 * pass before a cut input, which must give the full-length loss and
 * gradients. */
static void grouped_nextitnet_loss_matches_full(void) {
    CHECK(compare_grouped_loss(MR_REC_NEXTITNET, false, false) >= 2);
}

/* Under Ada-Retrieval, GRU4Rec and NextItNet cut only round 0, which has
 * no item adapter, and must still give the full-length loss and
 * gradients. */
static void grouped_round0_loss_matches_full(void) {
    CHECK(compare_grouped_loss(MR_REC_GRU4REC, true, false) >= 2);
    CHECK(compare_grouped_loss(MR_REC_NEXTITNET, true, false) >= 2);
}

/* With ada_zero_padding the item adapter leaves padding rows at zero, so
 * GRU4Rec and NextItNet cut every round, with the full-length loss and
 * gradients. A mask that let adapted padding through would break this. */
static void grouped_zero_padding_loss_matches_full(void) {
    CHECK(compare_grouped_loss(MR_REC_GRU4REC, true, true) >= 2);
    CHECK(compare_grouped_loss(MR_REC_NEXTITNET, true, true) >= 2);
    CHECK(compare_grouped_loss(MR_REC_SASREC, true, true) >= 2);
}

/* A round-0 cut that would drop an item, or one for a backbone that
 * cannot cut (FMLP-Rec), fails and names the reason. */
static void round0_cut_rejects_items_and_fmlprec(void) {
    const mr_rec_backbone_type types[2] = {MR_REC_GRU4REC, MR_REC_FMLPREC};
    const char *expected[2] = {"drops item 7", "cannot run on 2 of"};
    for (int i = 0; i < 2; i++) {
        mr_rec_config config = small_config(types[i], true, false);
        mr_error err;
        mr_rec_model *model = mr_rec_model_create(&config, ITEMS + 1, 2, &err);
        CHECK(model != NULL);
        if (model == NULL) {
            continue;
        }
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *seq = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, MAX_LEN});
        seq->idata[MAX_LEN + MAX_LEN - 3] = 7;
        mr_tensor *candidates = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, 3});
        CHECK(mr_rec_model_loss_cut(model, ctx, seq, 2, candidates, NULL) == NULL);
        CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
        const char *message = mr_ctx_error_message(ctx);
        if (strstr(message, expected[i]) == NULL) {
            mr_test_fail(__FILE__, __LINE__, "unexpected message: %s", message);
        }
        mr_ctx_free(ctx);
        mr_rec_model_free(model);
    }
}

/* SR-GNN's padding node has no edges and its padding positions are masked
 * out of the readout, so cutting padding changes nothing, with or without
 * the adapters. */
static void grouped_srgnn_loss_matches_full(void) {
    CHECK(compare_grouped_loss(MR_REC_SRGNN, false, false) >= 2);
    CHECK(compare_grouped_loss(MR_REC_SRGNN, true, false) >= 2);
}

/* The groups of a hand-made batch of inputs padded to 50: 40 empty
 * inputs, 40 of 2 items and 20 of 50, with groups of at least 16 rows.
 * Empty inputs count as 50 long. */
static void length_groups_by_hand(void) {
    enum { ROWS = 100, LONG = 50 };
    static int32_t seq[ROWS * LONG];
    for (int i = 0; i < ROWS; i++) {
        int items = i % 5 == 0 ? LONG : (i % 5 < 3 ? 0 : 2);
        for (int t = LONG - items; t < LONG; t++) {
            seq[i * LONG + t] = 1 + t;
        }
    }
    int64_t order[ROWS];
    mr_rec_length_group groups[ROWS];
    int64_t n_groups = mr_rec_length_groups(seq, ROWS, LONG, 16, order, groups);

    /* 40 rows cut to 2, then the 40 empty and 20 full rows at 50. */
    CHECK_INT_EQ(n_groups, 2);
    CHECK_INT_EQ(groups[0].first, 0);
    CHECK_INT_EQ(groups[0].count, 40);
    CHECK_INT_EQ(groups[0].length, 2);
    CHECK_INT_EQ(groups[1].first, 40);
    CHECK_INT_EQ(groups[1].count, 60);
    CHECK_INT_EQ(groups[1].length, LONG);

    /* Sorted by length, ties by row: rows 3 and 4 have 2 items, rows 0
     * (full) and 1 (empty) start the long ones and row 97 (empty) ends
     * them. */
    CHECK_INT_EQ(order[0], 3);
    CHECK_INT_EQ(order[1], 4);
    CHECK_INT_EQ(order[40], 0);
    CHECK_INT_EQ(order[41], 1);
    CHECK_INT_EQ(order[99], 97);

    /* Fewer rows than the minimum form one group. */
    n_groups = mr_rec_length_groups(seq, 10, LONG, 16, order, groups);
    CHECK_INT_EQ(n_groups, 1);
    CHECK_INT_EQ(groups[0].count, 10);
    CHECK_INT_EQ(groups[0].length, LONG);
}

/* User vectors of cut inputs equal those of the full inputs, for every
 * round with Ada-Retrieval. */
static void truncated_user_vectors_match(void) {
    mr_rec_data *data = varied_data();
    mr_rec_config config = small_config(MR_REC_SASREC, true, false);
    mr_error err;
    mr_rec_model *model = mr_rec_model_create(&config, data->n_items, 4, &err);
    CHECK(model != NULL);
    if (model == NULL) {
        mr_rec_data_free(data);
        return;
    }
    int rounds = mr_rec_model_rounds(model);
    mr_ctx *ctx = mr_ctx_create(0);

    /* Users with 2 to 4 input items, cut to 4 positions. */
    int32_t values[4 * MAX_LEN], cut_values[4 * 4];
    int64_t users[4] = {0};
    int found = 0;
    for (int64_t s = 0; s < data->n_sequences && found < 4; s++) {
        int64_t target = mr_rec_data_target_pos(data, s, MR_REC_TEST);
        if (target >= 2 && target <= 4) {
            users[found++] = s;
        }
    }
    CHECK_INT_EQ(found, 4);
    for (int i = 0; i < 4; i++) {
        int64_t target = mr_rec_data_target_pos(data, users[i], MR_REC_TEST);
        mr_rec_data_input(data, users[i], target, MAX_LEN, values + i * MAX_LEN);
        memcpy(cut_values + i * 4, values + i * MAX_LEN + MAX_LEN - 4, 4 * sizeof(int32_t));
    }
    mr_tensor *seq = mr_tensor_from_i32(ctx, 2, (int64_t[]){4, MAX_LEN}, values);
    mr_tensor *cut = mr_tensor_from_i32(ctx, 2, (int64_t[]){4, 4}, cut_values);
    float full_vectors[3 * 4 * 16], cut_vectors[3 * 4 * 16];
    CHECK_INT_EQ(rounds, 3);
    CHECK_STATUS(mr_rec_model_user_vectors(model, ctx, seq, full_vectors, &err), MR_OK);
    CHECK_STATUS(mr_rec_model_user_vectors(model, ctx, cut, cut_vectors, &err), MR_OK);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(cut_vectors, full_vectors, 3 * 4 * 16, 1e-5, 0.0), 0);

    mr_ctx_free(ctx);
    mr_rec_model_free(model);
    mr_rec_data_free(data);
}

/* Evaluation of a truncatable model (grouped inputs) gives the metrics of
 * the same weights evaluated at full length. */
static void grouped_evaluation_matches_full(mr_rec_backbone_type backbone, bool ada,
                                            bool zero_padding) {
    mr_rec_data *data = varied_data();
    mr_rec_config config = small_config(backbone, ada, zero_padding);
    mr_rec_backbone_ops ops = full_length_ops(backbone);
    mr_error err;
    mr_rec_model *grouped = mr_rec_model_create(&config, data->n_items, 8, &err);
    mr_rec_model *full = mr_rec_model_create_with_ops(&config, &ops, data->n_items, 8, &err);
    CHECK(grouped != NULL && full != NULL);
    if (grouped == NULL || full == NULL) {
        mr_rec_model_free(grouped);
        mr_rec_model_free(full);
        mr_rec_data_free(data);
        return;
    }
    CHECK(mr_rec_model_truncatable(grouped) || mr_rec_model_round0_truncatable(grouped));
    CHECK(!mr_rec_model_truncatable(full));
    CHECK(!mr_rec_model_round0_truncatable(full));

    /* Random weights of a larger scale than the initial ones, so the
     * scores spread out and the ranks mean something. */
    mr_tensor *weights = mr_paramset_flat(mr_rec_model_params(grouped));
    mr_test_fill_uniform(weights, -0.3f, 0.3f, 31);
    memcpy(mr_paramset_flat(mr_rec_model_params(full))->data, weights->data,
           (size_t)mr_tensor_numel(weights) * sizeof(float));

    for (int split = MR_REC_VALID; split <= MR_REC_TEST; split++) {
        mr_rec_metrics want, got;
        CHECK_STATUS(mr_rec_evaluate(full, data, (mr_rec_split)split, &want, &err), MR_OK);
        CHECK_STATUS(mr_rec_evaluate(grouped, data, (mr_rec_split)split, &got, &err), MR_OK);
        CHECK_INT_EQ(got.users, want.users);
        for (int c = 0; c < MR_REC_CUTOFFS; c++) {
            CHECK_NEAR(got.hit[c], want.hit[c], 0.0);
            CHECK_NEAR(got.ndcg[c], want.ndcg[c], 0.0);
        }
    }
    mr_rec_model_free(grouped);
    mr_rec_model_free(full);
    mr_rec_data_free(data);
}

static void grouped_evaluation_matches_full_base(void) {
    grouped_evaluation_matches_full(MR_REC_SASREC, false, false);
}

static void grouped_evaluation_matches_full_ada(void) {
    grouped_evaluation_matches_full(MR_REC_SASREC, true, false);
}

static void grouped_gru4rec_evaluation_matches_full(void) {
    grouped_evaluation_matches_full(MR_REC_GRU4REC, false, false);
}

static void grouped_nextitnet_evaluation_matches_full(void) {
    grouped_evaluation_matches_full(MR_REC_NEXTITNET, false, false);
}

/* With round 0 cut, the evaluation of GRU4Rec and NextItNet under
 * Ada-Retrieval ranks as at full length. */
static void grouped_round0_evaluation_matches_full(void) {
    grouped_evaluation_matches_full(MR_REC_GRU4REC, true, false);
    grouped_evaluation_matches_full(MR_REC_NEXTITNET, true, false);
}

/* With ada_zero_padding, grouped evaluation of GRU4Rec and NextItNet
 * under Ada-Retrieval cuts every round and ranks as at full length. */
static void grouped_zero_padding_evaluation_matches_full(void) {
    grouped_evaluation_matches_full(MR_REC_GRU4REC, true, true);
    grouped_evaluation_matches_full(MR_REC_NEXTITNET, true, true);
}

static void grouped_srgnn_evaluation_matches_full(void) {
    grouped_evaluation_matches_full(MR_REC_SRGNN, false, false);
    grouped_evaluation_matches_full(MR_REC_SRGNN, true, false);
}

/* FMLP-Rec, and GRU4Rec and NextItNet under Ada-Retrieval (whose item
 * adapter makes the padding rows differ per input), reject inputs shorter
 * than max_len, naming the backbone. */
static void other_backbones_reject_cut_inputs(void) {
    const mr_rec_backbone_type types[3] = {MR_REC_GRU4REC, MR_REC_NEXTITNET, MR_REC_FMLPREC};
    for (int i = 0; i < 3; i++) {
        mr_rec_config config = small_config(types[i], types[i] != MR_REC_FMLPREC, false);
        mr_error err;
        mr_rec_model *model = mr_rec_model_create(&config, ITEMS + 1, 2, &err);
        CHECK(model != NULL);
        if (model == NULL) {
            continue;
        }
        CHECK(!mr_rec_model_truncatable(model));
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *seq = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, MAX_LEN - 3});
        mr_tensor *candidates = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, 3});
        CHECK(mr_rec_model_loss(model, ctx, seq, candidates, NULL) == NULL);
        CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
        const char *message = mr_ctx_error_message(ctx);
        CHECK(strstr(message, "does not accept inputs shorter than max_len") != NULL);
        CHECK(strstr(message, mr_rec_backbone_name(types[i])) != NULL);
        mr_ctx_free(ctx);
        mr_rec_model_free(model);
    }
}

/* SASRec rejects inputs longer than max_len. */
static void sasrec_rejects_long_inputs(void) {
    mr_rec_config config = small_config(MR_REC_SASREC, false, false);
    mr_error err;
    mr_rec_model *model = mr_rec_model_create(&config, ITEMS + 1, 2, &err);
    CHECK(model != NULL);
    if (model == NULL) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *seq = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, MAX_LEN + 1});
    mr_tensor *candidates = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, 3});
    CHECK(mr_rec_model_loss(model, ctx, seq, candidates, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "Lb in [1, 32]") != NULL);
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

/*
 * Full-length batches in slices. A model that cannot skip padding
 * (GRU4Rec under Ada-Retrieval) computes a training batch in slices of
 * rows to bound its memory. With dropout 0, one Adam step from a batch of
 * 600 examples in slices of 256 must give the loss and weights of the same
 * step in one slice. Loss within 1e-6 relative; weights within 1e-6
 * absolute, because Adam's first step moves each weight by about lr
 * (1e-3) times the sign of its gradient. A rounding difference therefore
 * only shows where a gradient is near zero.
 */

#define SLICED_BATCH 600

/* Runs step 0 of epoch 0 with slices of slice_rows rows, copies the
 * weights after it into weights (numel floats) and returns the loss. */
static double one_step(const mr_rec_data *data, const mr_rec_config *config,
                       const mr_rec_train_options *options, int64_t slice_rows, float *weights,
                       int64_t numel) {
    rec_trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.data = data;
    tr.config = config;
    tr.options = options;
    tr.slice_rows = slice_rows;
    rec_trainer_seed(&tr);
    mr_error err;
    CHECK_STATUS(rec_trainer_create(&tr, &err), MR_OK);
    rec_batch *batch = rec_batch_create(&tr, SLICED_BATCH);
    CHECK(batch != NULL);
    CHECK(!mr_rec_model_truncatable(tr.model));

    double loss = 0.0;
    if (batch != NULL) {
        rec_trainer_shuffle(&tr, 0);
        CHECK_STATUS(rec_trainer_step(&tr, 0, 0, 0, SLICED_BATCH, batch, &loss, &err), MR_OK);
        mr_tensor *flat = mr_paramset_flat(mr_rec_model_params(tr.model));
        CHECK_INT_EQ(mr_tensor_numel(flat), numel);
        memcpy(weights, flat->data, (size_t)numel * sizeof(float));
    }
    rec_batch_free(batch);
    rec_trainer_free(&tr);
    return loss;
}

static void sliced_step_matches_whole(void) {
    mr_rec_data *data = varied_data();
    CHECK(data != NULL);
    CHECK(data == NULL || data->n_train >= SLICED_BATCH);
    if (data == NULL || data->n_train < SLICED_BATCH) {
        mr_rec_data_free(data);
        return;
    }
    mr_rec_config config;
    mr_rec_config_default(&config, MR_REC_GRU4REC);
    config.dim = 16;
    config.max_len = 16;
    config.inner_size = 24;
    config.dropout = 0.0f;
    config.negatives = 10;
    config.ada = true;
    config.rounds = 3;
    config.per_round = 4;
    mr_rec_train_options options;
    mr_rec_train_options_default(&options);
    options.batch_size = SLICED_BATCH;
    options.seed = 5;

    /* The weights' count, from a model built only to count them. */
    mr_error err;
    mr_rec_model *model = mr_rec_model_create(&config, data->n_items, 1, &err);
    CHECK(model != NULL);
    int64_t numel = model != NULL ? mr_paramset_numel(mr_rec_model_params(model)) : 0;
    mr_rec_model_free(model);

    float *sliced = calloc((size_t)numel + 1, sizeof(float));
    float *whole = calloc((size_t)numel + 1, sizeof(float));
    double sliced_loss = one_step(data, &config, &options, 256, sliced, numel);
    double whole_loss = one_step(data, &config, &options, SLICED_BATCH, whole, numel);

    CHECK(whole_loss > 0.1);
    CHECK_NEAR(sliced_loss, whole_loss, 1e-6 * whole_loss);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(sliced, whole, numel, 1e-6, 0.0), 0);

    free(sliced);
    free(whole);
    mr_rec_data_free(data);
}

int main(void) {
    char dir[64];
    snprintf(dir, sizeof dir, "%s/mr_rec_truncation_XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data_path, sizeof data_path, "%s/varied.txt", dir);
    mr_log_set_level(MR_LOG_ERROR);

    MR_RUN(length_groups_by_hand);
    MR_RUN(grouped_loss_matches_full);
    MR_RUN(grouped_ada_loss_matches_full);
    MR_RUN(truncated_user_vectors_match);
    MR_RUN(grouped_evaluation_matches_full_base);
    MR_RUN(grouped_evaluation_matches_full_ada);
    MR_RUN(grouped_gru4rec_loss_matches_full);
    MR_RUN(grouped_gru4rec_evaluation_matches_full);
    MR_RUN(grouped_nextitnet_loss_matches_full);
    MR_RUN(grouped_nextitnet_evaluation_matches_full);
    MR_RUN(grouped_srgnn_loss_matches_full);
    MR_RUN(grouped_round0_loss_matches_full);
    MR_RUN(grouped_round0_evaluation_matches_full);
    MR_RUN(grouped_zero_padding_loss_matches_full);
    MR_RUN(grouped_zero_padding_evaluation_matches_full);
    MR_RUN(round0_cut_rejects_items_and_fmlprec);
    MR_RUN(grouped_srgnn_evaluation_matches_full);
    MR_RUN(other_backbones_reject_cut_inputs);
    MR_RUN(sasrec_rejects_long_inputs);
    MR_RUN(sliced_step_matches_whole);

    remove(data_path);
    rmdir(dir);
    return mr_test_finish();
}
