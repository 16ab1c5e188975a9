/*
 * The FMLP-Rec backbone. Covers declared weights and their initial values,
 * output shapes, and agreement with a PyTorch implementation of the
 * reference code (fixtures/sasrec.json, written by
 * fixtures/torch_sasrec.py) for even and odd L. Also finite-difference
 * gradients, which positions the output depends on, dropout, input errors
 * and the time of one forward and backward pass.
 *
 * Fixture tolerance: 2e-5 absolute plus 1e-4 relative, for values of
 * order 1 computed in float32 through up to two layers (each with two DFT
 * products, two linear layers and two layer norms) against a float64
 * reference. The largest difference seen is 1.0e-6.
 */
#include "backbone_harness.h"
#include "layers.h"

static void fmlprec_declares_named_weights(void) {
    mr_rec_config config = test_config(MR_REC_FMLPREC, 8, 6, 2, 1, 16);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 3)) {
        return;
    }
    /* Position embedding and input norm (3), then per layer the two filter
     * parts, 2 norms and the 2 feed-forward linear layers (2 + 4 + 4). */
    CHECK_INT_EQ(mr_paramset_count(tb.ps), 3 + 2 * 10);
    int64_t per_layer = 2 * 4 * 8 + 2 * 2 * 8 + (16 * 8 + 16) + (8 * 16 + 8);
    CHECK_INT_EQ(mr_paramset_numel(tb.ps), 6 * 8 + 2 * 8 + 2 * per_layer);

    mr_tensor *real = mr_paramset_find(tb.ps, "backbone.layers.1.filter.weight_real");
    mr_tensor *imag = mr_paramset_find(tb.ps, "backbone.layers.0.filter.weight_imag");
    mr_tensor *norm = mr_paramset_find(tb.ps, "backbone.layers.1.filter_norm.weight");
    mr_tensor *bias = mr_paramset_find(tb.ps, "backbone.layers.0.ffn.project.bias");
    CHECK(real != NULL);
    CHECK(imag != NULL);
    CHECK(norm != NULL);
    CHECK(bias != NULL);
    if (real != NULL) {
        CHECK_INT_EQ(real->shape[0], 4);
        CHECK_INT_EQ(real->shape[1], 8);
    }
    if (norm != NULL && bias != NULL && imag != NULL) {
        CHECK_NEAR(mr_tensor_get(norm, 5), 1.0, 0);
        CHECK_NEAR(mr_tensor_get(bias, 3), 0.0, 0);
        CHECK(mr_tensor_get(imag, 3) != 0.0f);
    }
    test_backbone_free(&tb);
}

static void fmlprec_init_draws_normal_002(void) {
    mr_rec_config config = test_config(MR_REC_FMLPREC, 64, 50, 1, 1, 64);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 4)) {
        return;
    }
    /* 26 * 64 = 1664 draws per part: the sample standard deviation is
     * within 7% of 0.02 with overwhelming probability. */
    const char *names[2] = {"backbone.layers.0.filter.weight_real",
                            "backbone.layers.0.filter.weight_imag"};
    for (int n = 0; n < 2; n++) {
        mr_tensor *weight = mr_paramset_find(tb.ps, names[n]);
        double sum = 0.0, squares = 0.0;
        int64_t count = mr_tensor_numel(weight);
        for (int64_t i = 0; i < count; i++) {
            sum += weight->data[i];
            squares += (double)weight->data[i] * weight->data[i];
        }
        double mean = sum / (double)count;
        CHECK_NEAR(mean, 0.0, 0.002);
        CHECK_NEAR(sqrt(squares / (double)count - mean * mean), 0.02, 0.0014);
    }
    test_backbone_free(&tb);
}

static void fmlprec_rejects_bad_config(void) {
    mr_error err;
    mr_paramset *ps = mr_paramset_create();
    mr_rec_config config = test_config(MR_REC_FMLPREC, 8, 0, 2, 1, 16);
    CHECK(mr_rec_fmlprec_ops.declare(&config, ps, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "max_len (0)") != NULL);

    config = test_config(MR_REC_FMLPREC, 8, 6, 2, 1, 16);
    config.dropout = -0.1f;
    CHECK(mr_rec_fmlprec_ops.declare(&config, ps, &err) == NULL);
    CHECK(strstr(err.message, "dropout") != NULL);
    mr_paramset_free(ps);
}

static void fmlprec_output_shape(void) {
    mr_rec_config config = test_config(MR_REC_FMLPREC, 8, 7, 2, 1, 16);
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 5)) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *item_emb = mr_tensor_new3d(ctx, MR_F32, 3, 7, 8);
    mr_test_fill_uniform(item_emb, -1, 1, 6);
    mr_tensor *seq = test_left_padded_ids(ctx, 3, 7, (const int[]){7, 2, 0});

    mr_tensor *user = tb.ops->forward(tb.state, ctx, item_emb, seq, NULL);
    CHECK_CTX_OK(ctx);
    CHECK(user != NULL);
    if (user != NULL) {
        CHECK_INT_EQ(user->ndim, 2);
        CHECK_INT_EQ(user->shape[0], 3);
        CHECK_INT_EQ(user->shape[1], 8);
    }
    mr_tensor *hidden = mr_rec_fmlprec_encode(tb.state, ctx, item_emb, seq, NULL);
    CHECK(hidden != NULL);
    if (hidden != NULL) {
        CHECK_INT_EQ(hidden->ndim, 3);
        CHECK_INT_EQ(hidden->shape[1], 7);
    }
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
}

static void fmlprec_rejects_bad_inputs(void) {
    mr_rec_config config = test_config(MR_REC_FMLPREC, 8, 6, 1, 1, 16);
    test_backbone_rejects_bad_inputs(&config);
}

static void fmlprec_matches_torch_even_length(void) {
    test_backbone_matches_torch(MR_REC_FMLPREC, "fmlprec_even", 2e-5, 1e-4);
}

static void fmlprec_matches_torch_odd_length(void) {
    test_backbone_matches_torch(MR_REC_FMLPREC, "fmlprec_odd", 2e-5, 1e-4);
}

static void fmlprec_gradients(void) {
    const char *names[] = {"backbone.position_embedding",
                           "backbone.input_norm.bias",
                           "backbone.layers.0.filter.weight_real",
                           "backbone.layers.0.filter.weight_imag",
                           "backbone.layers.0.filter_norm.weight",
                           "backbone.layers.0.ffn.expand.weight",
                           "backbone.layers.0.ffn.expand.bias",
                           "backbone.layers.1.filter.weight_imag",
                           "backbone.layers.1.ffn.project.weight",
                           "backbone.layers.1.ffn_norm.bias"};
    mr_rec_config config = test_config(MR_REC_FMLPREC, 4, 6, 2, 1, 6);
    test_backbone_gradients(&config, names, sizeof names / sizeof names[0], 10);
    config.max_len = 5;
    config.dropout = 0.3f;
    test_backbone_gradients(&config, names, sizeof names / sizeof names[0], 20);
}

/*
 * The filter has no mask and mixes the whole sequence: every hidden row
 * depends on every position, padding included. The last-position shortcut
 * gives the last row of the full encoding.
 */
static void fmlprec_positions_seen(void) {
    mr_rec_config config = test_config(MR_REC_FMLPREC, 8, 6, 2, 1, 16);
    test_positions_case pc;
    if (!test_positions_case_create(&pc, &config, 4, mr_rec_fmlprec_encode)) {
        return;
    }

    /* Change padding position 1: every row moves, the last one too. */
    pc.item_emb->data[1 * 8 + 2] += 1.0f;
    mr_tensor *after = mr_rec_fmlprec_encode(pc.tb.state, pc.ctx, pc.item_emb, pc.seq, NULL);
    for (int t = 0; t < 6; t++) {
        CHECK(test_row_change(after, pc.encoded, t) > 1e-4);
    }
    CHECK_CTX_OK(pc.ctx);
    test_positions_case_free(&pc);
}

static void fmlprec_dropout(void) {
    mr_rec_config config = test_config(MR_REC_FMLPREC, 8, 6, 2, 1, 16);
    config.dropout = 0.3f;
    test_backbone_dropout(&config);
}

/*
 * One training step's forward and backward at the reference sizes
 * (D 64, L 50, 2 filter layers, feed-forward 256, dropout 0.1777).
 * B is 1024 with MR_REC_BENCH=1 and 64 otherwise, to keep the test short.
 */
static void fmlprec_step_time(void) {
    mr_rec_config config = test_config(MR_REC_FMLPREC, 64, 50, 2, 1, 256);
    config.dropout = 0.1777f;
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 60)) {
        return;
    }
    bool full = test_bench_requested();
    test_backbone_report_step("fmlprec", &tb, full ? 1024 : 64, full ? 5 : 1);
    test_backbone_free(&tb);
}

int main(void) {
    MR_RUN(fmlprec_declares_named_weights);
    MR_RUN(fmlprec_init_draws_normal_002);
    MR_RUN(fmlprec_rejects_bad_config);
    MR_RUN(fmlprec_output_shape);
    MR_RUN(fmlprec_rejects_bad_inputs);
    MR_RUN(fmlprec_matches_torch_even_length);
    MR_RUN(fmlprec_matches_torch_odd_length);
    MR_RUN(fmlprec_gradients);
    MR_RUN(fmlprec_positions_seen);
    MR_RUN(fmlprec_dropout);
    MR_RUN(fmlprec_step_time);
    return mr_test_finish();
}
