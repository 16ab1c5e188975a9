/*
 * The SASRec backbone. Covers declared weights and their initial values,
 * output shapes, and agreement with a PyTorch implementation of the
 * reference code (fixtures/sasrec.json, written by
 * fixtures/torch_sasrec.py). Also finite-difference gradients, which
 * positions the output depends on, dropout, input errors and the time of
 * one forward and backward pass.
 *
 * Fixture tolerance: 2e-5 absolute plus 1e-4 relative, for values of
 * order 1 computed in float32 through two layers (each with 6 products and
 * 2 layer norms) against a float64 reference. The largest difference seen
 * is 5.7e-6, in the gradient of the position embedding.
 */
#include "backbone_harness.h"
#include "layers.h"

static void sasrec_declares_named_weights(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 8, 6, 2, 2, 16);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 3)) {
        return;
    }
    /* Position embedding and input norm (3), then per layer 4 linear
     * layers, 2 norms and the 2 feed-forward linear layers (8 + 2 + 4 + 2). */
    CHECK_INT_EQ(mr_paramset_count(tb.ps), 3 + 2 * 16);
    int64_t per_layer = 4 * (8 * 8 + 8) + 2 * 2 * 8 + (16 * 8 + 16) + (8 * 16 + 8);
    CHECK_INT_EQ(mr_paramset_numel(tb.ps), 6 * 8 + 2 * 8 + 2 * per_layer);

    mr_tensor *query = mr_paramset_find(tb.ps, "backbone.layers.1.attention.query.weight");
    mr_tensor *expand = mr_paramset_find(tb.ps, "backbone.layers.0.ffn.expand.weight");
    mr_tensor *norm = mr_paramset_find(tb.ps, "backbone.layers.0.ffn_norm.weight");
    mr_tensor *bias = mr_paramset_find(tb.ps, "backbone.layers.0.attention.output.bias");
    CHECK(query != NULL);
    CHECK(expand != NULL);
    CHECK(norm != NULL);
    CHECK(bias != NULL);
    if (expand != NULL) {
        CHECK_INT_EQ(expand->shape[0], 16);
        CHECK_INT_EQ(expand->shape[1], 8);
    }
    if (norm != NULL && bias != NULL) {
        CHECK_NEAR(mr_tensor_get(norm, 5), 1.0, 0);
        CHECK_NEAR(mr_tensor_get(bias, 3), 0.0, 0);
    }
    test_backbone_free(&tb);
}

static void sasrec_init_draws_normal_002(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 64, 50, 1, 4, 64);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 4)) {
        return;
    }
    /* 3200 draws: the sample standard deviation is within 5% of 0.02 with
     * overwhelming probability. */
    mr_tensor *positions = mr_paramset_find(tb.ps, "backbone.position_embedding");
    double sum = 0.0, squares = 0.0;
    int64_t count = mr_tensor_numel(positions);
    for (int64_t i = 0; i < count; i++) {
        sum += positions->data[i];
        squares += (double)positions->data[i] * positions->data[i];
    }
    double mean = sum / (double)count;
    CHECK_NEAR(mean, 0.0, 0.002);
    CHECK_NEAR(sqrt(squares / (double)count - mean * mean), 0.02, 0.001);
    test_backbone_free(&tb);
}

static void sasrec_rejects_bad_config(void) {
    mr_error err;
    mr_paramset *ps = mr_paramset_create();
    mr_rec_config config = test_config(MR_REC_SASREC, 10, 6, 2, 4, 16);
    CHECK(mr_rec_sasrec_ops.declare(&config, ps, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "heads (4)") != NULL);

    config = test_config(MR_REC_SASREC, 8, 6, 2, 2, 16);
    config.dropout = 1.0f;
    CHECK(mr_rec_sasrec_ops.declare(&config, ps, &err) == NULL);
    CHECK(strstr(err.message, "dropout") != NULL);
    mr_paramset_free(ps);
}

static void sasrec_output_shape(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 8, 6, 2, 2, 16);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 5)) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *item_emb = mr_tensor_new3d(ctx, MR_F32, 3, 6, 8);
    mr_test_fill_uniform(item_emb, -1, 1, 6);
    mr_tensor *seq = test_left_padded_ids(ctx, 3, 6, (const int[]){6, 2, 0});
    mr_rng rng;
    mr_rng_init(&rng, 7);

    mr_tensor *user = tb.ops->forward(tb.state, ctx, item_emb, seq, &rng);
    CHECK_CTX_OK(ctx);
    CHECK(user != NULL);
    if (user != NULL) {
        CHECK_INT_EQ(user->ndim, 2);
        CHECK_INT_EQ(user->shape[0], 3);
        CHECK_INT_EQ(user->shape[1], 8);
    }
    mr_tensor *hidden = mr_rec_sasrec_encode(tb.state, ctx, item_emb, seq, &rng);
    CHECK(hidden != NULL);
    if (hidden != NULL) {
        CHECK_INT_EQ(hidden->ndim, 3);
        CHECK_INT_EQ(hidden->shape[1], 6);
    }
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
}

/* SASRec accepts inputs cut to Lb in [1, L], so the shared check of a
 * wrong length does not apply: it rejects Lb = 0, Lb > L and ids that do
 * not match the embeddings. */
static void sasrec_rejects_bad_inputs(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 8, 6, 1, 2, 16);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 8)) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *too_long = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 7, 8});
    mr_tensor *too_long_seq = test_left_padded_ids(ctx, 2, 7, (const int[]){1, 1});
    CHECK(tb.ops->forward(tb.state, ctx, too_long, too_long_seq, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "Lb in [1, 6]") != NULL);

    mr_ctx_reset(ctx);
    mr_tensor *empty = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 0, 8});
    mr_tensor *empty_seq = mr_tensor_new2d(ctx, MR_I32, 2, 0);
    CHECK(tb.ops->forward(tb.state, ctx, empty, empty_seq, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);

    mr_ctx_reset(ctx);
    mr_tensor *item_emb = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 4, 8});
    mr_tensor *other_seq = test_left_padded_ids(ctx, 2, 6, (const int[]){1, 1});
    CHECK(tb.ops->forward(tb.state, ctx, item_emb, other_seq, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "int32 [2, 4]") != NULL);
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
}

/*
 * An input with at least one item, cut to its last Lb positions, gives the
 * user vector of the full left-padded input when only padding was cut. An
 * all-padding input attends over every position, so a cut changes it.
 * Tolerance 1e-5: the cut changes only the shapes of the products, so the
 * sums may round differently.
 */
static void sasrec_truncation_is_exact(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 8, 6, 2, 2, 16);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 12)) {
        return;
    }
    test_backbone_randomize(&tb, -0.5f, 0.5f, 13);
    mr_ctx *ctx = mr_ctx_create(0);
    const int items[4] = {3, 1, 0, 2};
    mr_tensor *seq = test_left_padded_ids(ctx, 4, 6, items);
    mr_tensor *item_emb = mr_tensor_new3d(ctx, MR_F32, 4, 6, 8);
    mr_test_fill_uniform(item_emb, -1.0f, 1.0f, 14);
    for (int64_t i = 0; i < 4 * 6; i++) {
        if (seq->idata[i] == 0) {
            memset(item_emb->data + i * 8, 0, 8 * sizeof(float));
        }
    }
    mr_tensor *full = tb.ops->forward(tb.state, ctx, item_emb, seq, NULL);
    CHECK(full != NULL);

    for (int length = 3; length >= 1; length--) {
        mr_tensor *cut_emb = mr_tensor_contiguous(
            ctx, mr_tensor_slice(ctx, item_emb, 1, 6 - length, length));
        mr_tensor *cut_seq =
            mr_tensor_contiguous(ctx, mr_tensor_slice(ctx, seq, 1, 6 - length, length));
        mr_tensor *cut = tb.ops->forward(tb.state, ctx, cut_emb, cut_seq, NULL);
        if (full == NULL || cut == NULL) {
            break;
        }
        CHECK_INT_EQ(cut->shape[0], 4);

        /* Row 2 is all padding. */
        double empty_change = 0.0;
        for (int64_t d = 0; d < 8; d++) {
            empty_change += fabs(cut->data[2 * cut->stride[0] + d * cut->stride[1]] -
                                 full->data[2 * full->stride[0] + d * full->stride[1]]);
        }
        CHECK(empty_change > 1e-3);

        for (int64_t b = 0; b < 4; b++) {
            if (items[b] == 0 || items[b] > length) {
                continue;
            }
            for (int64_t d = 0; d < 8; d++) {
                float want = full->data[b * full->stride[0] + d * full->stride[1]];
                float got = cut->data[b * cut->stride[0] + d * cut->stride[1]];
                CHECK_NEAR(got, want, 1e-5);
            }
        }
    }
    CHECK_STATUS(mr_ctx_status(ctx), MR_OK);
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
}

static void sasrec_matches_torch(void) {
    test_backbone_matches_torch(MR_REC_SASREC, "sasrec", 2e-5, 1e-4);
}

/* All-padding inputs, whose queries see no key and so attend over every
 * position, as the reference's additive -10000 mask makes them. */
static void sasrec_padding_matches_torch(void) {
    test_backbone_matches_torch(MR_REC_SASREC, "sasrec_padding", 2e-5, 1e-4);
}

static void sasrec_gradients(void) {
    const char *names[] = {"backbone.position_embedding",
                           "backbone.input_norm.weight",
                           "backbone.layers.0.attention.query.weight",
                           "backbone.layers.0.attention.key.bias",
                           "backbone.layers.0.attention.value.weight",
                           "backbone.layers.0.attention.output.weight",
                           "backbone.layers.0.attention_norm.bias",
                           "backbone.layers.0.ffn.expand.weight",
                           "backbone.layers.0.ffn.expand.bias",
                           "backbone.layers.1.attention.query.bias",
                           "backbone.layers.1.attention.key.weight",
                           "backbone.layers.1.ffn.project.weight",
                           "backbone.layers.1.ffn_norm.weight"};
    mr_rec_config config = test_config(MR_REC_SASREC, 4, 5, 2, 2, 6);
    test_backbone_gradients(&config, names, sizeof names / sizeof names[0], 10);
    config.dropout = 0.3f;
    test_backbone_gradients(&config, names, sizeof names / sizeof names[0], 20);
}

/*
 * An item position's hidden state depends on the items at it and before,
 * never on later ones, and padding positions are hidden keys: changing a
 * padded position's embedding leaves the user vector bit for bit
 * unchanged. A padding position's own hidden state sees every position,
 * as with the reference's additive -10000 mask.
 */
static void sasrec_positions_seen(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 8, 6, 2, 2, 16);
    test_positions_case pc;
    if (!test_positions_case_create(&pc, &config, 4, mr_rec_sasrec_encode)) {
        return;
    }
    mr_tensor *item_emb = pc.item_emb, *before = pc.encoded;

    /* Change item position 3 (the second item): row 2 (the first item)
     * stays, and padding rows 0 and 1 move. */
    item_emb->data[3 * 8 + 1] += 0.5f;
    mr_tensor *after = mr_rec_sasrec_encode(pc.tb.state, pc.ctx, item_emb, pc.seq, NULL);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(after->data + 2 * 8, before->data + 2 * 8, 8, 0, 0), 0);
    CHECK(test_row_change(after, before, 0) + test_row_change(after, before, 1) > 1e-5);
    for (int t = 3; t < 6; t++) {
        CHECK(test_row_change(after, before, t) > 1e-3);
    }
    item_emb->data[3 * 8 + 1] -= 0.5f;

    /* Change padding position 1: the user vector does not move at all. */
    item_emb->data[1 * 8 + 2] += 3.0f;
    mr_tensor *user_after = pc.tb.ops->forward(pc.tb.state, pc.ctx, item_emb, pc.seq, NULL);
    CHECK_ARRAY_NEAR(user_after->data, pc.user->data, 8, 0, 0);
    CHECK_CTX_OK(pc.ctx);
    test_positions_case_free(&pc);
}

/* An all-padding input (a user's first item as the target): no query sees
 * a key, so every query attends over all L positions, and the user vector
 * depends on each position's embedding. */
static void sasrec_all_padding_input(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 8, 6, 2, 2, 16);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 40)) {
        return;
    }
    test_backbone_randomize(&tb, -0.5f, 0.5f, 41);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *item_emb = mr_tensor_new3d(ctx, MR_F32, 1, 6, 8);
    mr_test_fill_uniform(item_emb, -1, 1, 42);
    mr_tensor *seq = test_left_padded_ids(ctx, 1, 6, (const int[]){0});

    mr_tensor *user_before = tb.ops->forward(tb.state, ctx, item_emb, seq, NULL);
    mr_tensor *encoded = mr_rec_sasrec_encode(tb.state, ctx, item_emb, seq, NULL);
    CHECK_CTX_OK(ctx);
    if (user_before == NULL || encoded == NULL) {
        mr_ctx_free(ctx);
        test_backbone_free(&tb);
        return;
    }
    bool finite = true;
    for (int d = 0; d < 8; d++) {
        finite = finite && isfinite(user_before->data[d]);
    }
    CHECK(finite);

    /* The last layer run on position L-1 alone gives the last row of the
     * full encoding here too. */
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(user_before->data, encoded->data + 5 * 8, 8, 1e-6, 1e-5), 0);

    /* A change at any position moves the user vector. */
    for (int t = 0; t < 6; t++) {
        item_emb->data[t * 8 + 4] += 1.0f;
        mr_tensor *user_after = tb.ops->forward(tb.state, ctx, item_emb, seq, NULL);
        item_emb->data[t * 8 + 4] -= 1.0f;
        if (user_after == NULL) {
            break;
        }
        double change = 0.0;
        for (int d = 0; d < 8; d++) {
            change += fabs(user_after->data[d] - user_before->data[d]);
        }
        if (!(change > 1e-4)) {
            mr_test_fail(__FILE__, __LINE__, "position %d moved the user vector by %g, expected "
                         "more than 1e-4", t, change);
        }
    }
    CHECK_CTX_OK(ctx);
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
}

static void sasrec_dropout(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 8, 6, 2, 2, 16);
    config.dropout = 0.3f;
    test_backbone_dropout(&config);
}

/*
 * One training step's forward and backward at the reference sizes
 * (D 64, L 50, 2 layers of 4 heads, feed-forward 512, dropout 0.1777).
 * B is 1024 with MR_REC_BENCH=1 and 64 otherwise, to keep the test short.
 */
static void sasrec_step_time(void) {
    mr_rec_config config = test_config(MR_REC_SASREC, 64, 50, 2, 4, 512);
    config.dropout = 0.1777f;
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 60)) {
        return;
    }
    bool full = test_bench_requested();
    test_backbone_report_step("sasrec", &tb, full ? 1024 : 64, full ? 5 : 1);
    test_backbone_free(&tb);
}

int main(void) {
    MR_RUN(sasrec_declares_named_weights);
    MR_RUN(sasrec_init_draws_normal_002);
    MR_RUN(sasrec_rejects_bad_config);
    MR_RUN(sasrec_output_shape);
    MR_RUN(sasrec_rejects_bad_inputs);
    MR_RUN(sasrec_truncation_is_exact);
    MR_RUN(sasrec_matches_torch);
    MR_RUN(sasrec_padding_matches_torch);
    MR_RUN(sasrec_gradients);
    MR_RUN(sasrec_positions_seen);
    MR_RUN(sasrec_all_padding_input);
    MR_RUN(sasrec_dropout);
    MR_RUN(sasrec_step_time);
    return mr_test_finish();
}
