/*
 * Recommendation model tests: default and invalid settings, the weights a
 * model declares, the round loop's picks, the multi-round loss against a
 * sum computed here from the user vectors, and a few Adam steps, with and
 * without Ada-Retrieval.
 *
 * The round loop and loss do not depend on the backbone, so these cases run
 * on a small stand-in backbone: tanh of a linear layer over the mean item
 * embedding.
 */
#include <stdlib.h>
#include <string.h>

#include "model_inputs.h"
#include "model_internal.h"
#include "multiround/optim.h"
#include "test.h"

/* ------------------------------------------------------------------------
 * Stand-in backbone: h = tanh(mean_l(item_emb[:, l]) W^T + c).
 * ------------------------------------------------------------------------ */

typedef struct mean_backbone {
    const mr_paramset *ps;
    int weight, bias;
    float dropout;
} mean_backbone;

static void *mean_declare(const mr_rec_config *config, mr_paramset *ps, mr_error *err) {
    mean_backbone *state = calloc(1, sizeof *state);
    state->ps = ps;
    state->dropout = config->dropout;
    state->weight = mr_paramset_declare(ps, "backbone.weight", 2,
                                        (int64_t[]){config->dim, config->dim}, err);
    state->bias = mr_paramset_declare(ps, "backbone.bias", 1, (int64_t[]){config->dim}, err);
    if (state->weight < 0 || state->bias < 0) {
        free(state);
        return NULL;
    }
    return state;
}

static void mean_init(void *state, mr_paramset *ps, mr_rng *rng) {
    mean_backbone *mean = state;
    mr_tensor_init_normal(mr_paramset_get(ps, mean->weight), 0.0f, 0.5f, rng);
    mr_tensor_init_normal(mr_paramset_get(ps, mean->bias), 0.0f, 0.1f, rng);
}

static mr_tensor *mean_forward(void *state, mr_ctx *ctx, mr_tensor *item_emb, mr_tensor *seq,
                               mr_rng *rng) {
    (void)seq;
    mean_backbone *mean = state;
    mr_tensor *pooled = mr_tensor_mean(ctx, mr_tensor_dropout(ctx, item_emb, mean->dropout, rng),
                                       1, false);
    return mr_tensor_tanh(ctx, mr_tensor_linear(ctx, pooled, mr_paramset_get(mean->ps, mean->weight),
                                                mr_paramset_get(mean->ps, mean->bias)));
}

static void mean_free(void *state) { free(state); }

static const mr_rec_backbone_ops mean_ops = {mean_declare, mean_init, mean_forward, mean_free,
                                            false, false};

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* A small configuration: D 8, L 6, dropout 0, and with ada 3 rounds of 4. */
static mr_rec_config small_config(bool ada) {
    mr_rec_config config;
    mr_rec_config_default(&config, MR_REC_GRU4REC);
    config.dim = 8;
    config.max_len = 6;
    config.dropout = 0.0f;
    config.negatives = 5;
    config.ada = ada;
    config.rounds = 3;
    config.per_round = 4;
    return config;
}

/* Creates a model with the stand-in backbone, reporting failures. */
static mr_rec_model *create_mean_model(const mr_rec_config *config, int32_t n_items,
                                       uint64_t seed) {
    mr_error err = {0};
    mr_rec_model *model = mr_rec_model_create_with_ops(config, &mean_ops, n_items, seed, &err);
    if (model == NULL) {
        mr_test_fail(__FILE__, __LINE__, "model creation failed: %s", err.message);
    }
    return model;
}

/* log(1 + e^x) without overflow. */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* ------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------ */

static void config_defaults_match_reference(void) {
    mr_rec_config config;
    mr_rec_config_default(&config, MR_REC_SASREC);
    CHECK_INT_EQ(config.backbone, MR_REC_SASREC);
    CHECK_INT_EQ(config.dim, 64);
    CHECK_INT_EQ(config.max_len, 50);
    CHECK_INT_EQ(config.layers, 2);
    CHECK_INT_EQ(config.heads, 4);
    CHECK_INT_EQ(config.inner_size, 512);
    CHECK_NEAR(config.dropout, 0.1777, 1e-7);
    CHECK(!config.ada);
    CHECK_INT_EQ(config.rounds, 5);
    CHECK_INT_EQ(config.per_round, 20);
    CHECK_NEAR(config.round_decay, 0.3, 1e-7);
    CHECK_INT_EQ(config.negatives, 100);
    CHECK_STATUS(mr_rec_config_check(&config, NULL), MR_OK);

    mr_rec_config_default(&config, MR_REC_FMLPREC);
    CHECK_INT_EQ(config.layers, 2);
    CHECK_INT_EQ(config.inner_size, 256);
    mr_rec_config_default(&config, MR_REC_GRU4REC);
    CHECK_INT_EQ(config.layers, 2);
    CHECK_INT_EQ(config.inner_size, 128);
    mr_rec_config_default(&config, MR_REC_NEXTITNET);
    CHECK_INT_EQ(config.layers, 10);
    mr_rec_config_default(&config, MR_REC_SRGNN);
    CHECK_INT_EQ(config.layers, 1);
    for (int b = 0; b < MR_REC_BACKBONES; b++) {
        mr_rec_config_default(&config, (mr_rec_backbone_type)b);
        config.ada = true;
        CHECK_STATUS(mr_rec_config_check(&config, NULL), MR_OK);
    }
}

/* Expects mr_rec_config_check to reject config with a message containing
 * `expected`. */
static void expect_rejected(const mr_rec_config *config, const char *expected, int line) {
    mr_error err = {0};
    if (mr_rec_config_check(config, &err) != MR_ERR_INVALID_ARGUMENT) {
        mr_test_fail(__FILE__, line, "config with '%s' was accepted", expected);
    } else if (strstr(err.message, expected) == NULL) {
        mr_test_fail(__FILE__, line, "message '%s' lacks '%s'", err.message, expected);
    }
}

static void config_check_rejects_invalid_values(void) {
    mr_rec_config base;
    mr_rec_config_default(&base, MR_REC_SASREC);
    mr_rec_config config = base;
    config.dim = 0;
    expect_rejected(&config, "dim = 0", __LINE__);
    config = base;
    config.heads = 3;
    expect_rejected(&config, "not a multiple of heads = 3", __LINE__);
    config = base;
    config.dropout = 1.0f;
    expect_rejected(&config, "dropout = 1", __LINE__);
    config = base;
    config.negatives = 0;
    expect_rejected(&config, "negatives = 0", __LINE__);
    config = base;
    config.backbone = (mr_rec_backbone_type)7;
    expect_rejected(&config, "backbone 7", __LINE__);

    /* Round settings matter only with ada. */
    config = base;
    config.rounds = 0;
    CHECK_STATUS(mr_rec_config_check(&config, NULL), MR_OK);
    config.ada = true;
    expect_rejected(&config, "rounds = 0", __LINE__);
    config = base;
    config.ada = true;
    config.round_decay = NAN;
    expect_rejected(&config, "round_decay = nan", __LINE__);
}

/* ------------------------------------------------------------------------
 * Weights
 * ------------------------------------------------------------------------ */

static void model_declares_weights(void) {
    mr_rec_config config = small_config(true);
    mr_rec_model *model = create_mean_model(&config, 500, 1);
    if (model == NULL) {
        return;
    }
    mr_paramset *ps = mr_rec_model_params(model);

    /* Embedding, bias, stand-in backbone and the adapters at D 8, k 4:
     * LFT 2*3*8 + 72 + 16, CAT 16, GRU 2*192 + 48, MLP 272 + 136, LN 16. */
    int64_t adapters = 48 + 72 + 16 + 16 + 432 + 408 + 16;
    CHECK_INT_EQ(mr_paramset_numel(ps), 500 * 8 + 500 + 72 + adapters);
    CHECK(mr_paramset_find(ps, "item_embedding") == mr_rec_model_item_embedding(model));
    CHECK(mr_paramset_find(ps, "item_bias") == mr_rec_model_item_bias(model));
    CHECK(mr_paramset_find(ps, "ada.lft.complex_weight") != NULL);
    CHECK_INT_EQ(mr_rec_model_rounds(model), 3);
    CHECK_INT_EQ(mr_rec_model_n_items(model), 500);
    CHECK_INT_EQ(mr_rec_model_config(model)->per_round, 4);

    /* Row 0 is zero; GRU4Rec's embedding is xavier uniform, bound
     * sqrt(6 / (500 + 8)); the bias is normal(0, 0.1). */
    mr_tensor *emb = mr_rec_model_item_embedding(model);
    for (int d = 0; d < 8; d++) {
        CHECK_NEAR(emb->data[d], 0.0, 0);
    }
    float bound = sqrtf(6.0f / 508.0f), largest = 0;
    for (int64_t i = 8; i < 500 * 8; i++) {
        largest = fmaxf(largest, fabsf(emb->data[i]));
    }
    CHECK(largest <= bound);
    CHECK(largest > 0.95f * bound);
    double sum2 = 0;
    mr_tensor *bias = mr_rec_model_item_bias(model);
    for (int64_t i = 0; i < 500; i++) {
        sum2 += (double)bias->data[i] * bias->data[i];
    }
    CHECK_NEAR(sqrt(sum2 / 500), 0.1, 0.01);
    mr_rec_model_free(model);

    /* SASRec and FMLP-Rec embeddings are normal(0, 0.02). */
    config.backbone = MR_REC_SASREC;
    config.heads = 2;
    model = create_mean_model(&config, 500, 1);
    if (model != NULL) {
        emb = mr_rec_model_item_embedding(model);
        sum2 = 0;
        for (int64_t i = 8; i < 500 * 8; i++) {
            sum2 += (double)emb->data[i] * emb->data[i];
        }
        CHECK_NEAR(sqrt(sum2 / (499 * 8)), 0.02, 0.002);
        CHECK_NEAR(emb->data[3], 0.0, 0);
    }
    mr_rec_model_free(model);
}

static void model_rejects_too_few_items(void) {
    /* 3 rounds of 4 pick 8 distinct ids before the last round. */
    mr_rec_config config = small_config(true);
    mr_error err = {0};
    mr_rec_model *model = mr_rec_model_create_with_ops(&config, &mean_ops, 8, 1, &err);
    CHECK(model == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "need 8 distinct items") != NULL);
    CHECK(strstr(err.message, "only 7") != NULL);

    model = mr_rec_model_create_with_ops(&config, &mean_ops, 9, 1, &err);
    CHECK(model != NULL);
    mr_rec_model_free(model);
}

/* ------------------------------------------------------------------------
 * The round loop
 * ------------------------------------------------------------------------ */

static void rounds_pick_distinct_items(void) {
    /* With 8 items and 2 rounds of 4 before the last, every row picks each
     * of ids 1..8 exactly once, even though id 0 scores highest. */
    mr_rec_config config = small_config(true);
    mr_rec_model *model = create_mean_model(&config, 9, 2);
    if (model == NULL) {
        return;
    }
    mr_rec_model_item_bias(model)->data[0] = 100.0f;
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t batch = 7;
    mr_tensor *seq = test_random_seq(ctx, batch, 6, 9, 3);
    float out[3 * 7 * 8];
    int32_t picks[2 * 7 * 4];
    mr_error err = {0};
    CHECK_STATUS(mr_rec_model_user_vectors_picks(model, ctx, seq, out, picks, &err), MR_OK);
    for (int64_t b = 0; b < batch; b++) {
        int seen[9] = {0};
        for (int t = 0; t < 2; t++) {
            for (int j = 0; j < 4; j++) {
                int32_t id = picks[(t * batch + b) * 4 + j];
                CHECK(id >= 1);
                CHECK(id <= 8);
                if (id >= 1 && id <= 8) {
                    seen[id]++;
                }
            }
        }
        for (int id = 1; id <= 8; id++) {
            CHECK_INT_EQ(seen[id], 1);
        }
    }
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

static void rounds_pick_top_scores(void) {
    /* Each round's picks are that round's top 4 by u_t . e + b among the
     * items not picked before, in descending score, history included. */
    mr_rec_config config = small_config(true);
    int32_t n_items = 60;
    mr_rec_model *model = create_mean_model(&config, n_items, 4);
    if (model == NULL) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t batch = 5;
    mr_tensor *seq = test_random_seq(ctx, batch, 6, n_items, 5);

    /* A history item of row 0 with a large bias comes first in round 1. */
    int32_t history_item = seq->idata[5];
    float *bias = mr_rec_model_item_bias(model)->data;
    bias[history_item] = 50.0f;
    bias[0] = 100.0f;

    float out[3 * 5 * 8];
    int32_t picks[2 * 5 * 4];
    mr_error err = {0};
    CHECK_STATUS(mr_rec_model_user_vectors_picks(model, ctx, seq, out, picks, &err), MR_OK);
    CHECK_INT_EQ(picks[0], history_item);

    const float *emb = mr_rec_model_item_embedding(model)->data;
    for (int t = 0; t < 2; t++) {
        for (int64_t b = 0; b < batch; b++) {
            const float *u = out + (t * batch + b) * 8;
            double scores[60];
            for (int32_t id = 0; id < n_items; id++) {
                scores[id] = bias[id];
                for (int d = 0; d < 8; d++) {
                    scores[id] += (double)u[d] * emb[id * 8 + d];
                }
            }

            /* Blocked: id 0 and the picks of earlier rounds. */
            bool blocked[60] = {true};
            for (int e = 0; e < t; e++) {
                for (int j = 0; j < 4; j++) {
                    blocked[picks[(e * batch + b) * 4 + j]] = true;
                }
            }
            const int32_t *round = picks + (t * batch + b) * 4;
            for (int j = 0; j < 4; j++) {
                CHECK(!blocked[round[j]]);
                if (j > 0) {
                    CHECK(scores[round[j]] <= scores[round[j - 1]] + 1e-5);
                }
            }
            for (int j = 0; j < 4; j++) {
                blocked[round[j]] = true;
            }
            double best_left = -INFINITY;
            for (int32_t id = 0; id < n_items; id++) {
                if (!blocked[id]) {
                    best_left = fmax(best_left, scores[id]);
                }
            }
            CHECK(scores[round[3]] >= best_left - 1e-5);
        }
    }
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

static void rounds_reject_nan_user_vectors(void) {
    mr_rec_config config = small_config(true);
    mr_rec_model *model = create_mean_model(&config, 40, 6);
    if (model == NULL) {
        return;
    }
    mr_paramset_find(mr_rec_model_params(model), "backbone.bias")->data[2] = NAN;
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *seq = test_random_seq(ctx, 2, 6, 40, 7);
    float out[3 * 2 * 8];
    mr_error err = {0};
    CHECK_STATUS(mr_rec_model_user_vectors(model, ctx, seq, out, &err), MR_ERR_NUMERIC);
    CHECK(strstr(err.message, "batch row 0 in round 1") != NULL);
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

static void base_user_vectors_are_backbone_output(void) {
    mr_rec_config config = small_config(false);
    mr_rec_model *model = create_mean_model(&config, 40, 6);
    if (model == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_rec_model_rounds(model), 1);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *seq = test_random_seq(ctx, 4, 6, 40, 7);
    float out[4 * 8];
    mr_error err = {0};
    CHECK_STATUS(mr_rec_model_user_vectors(model, ctx, seq, out, &err), MR_OK);

    /* The call turns recording and training mode off only while it runs. */
    CHECK(mr_ctx_training(ctx));
    CHECK(mr_ctx_grad_enabled(ctx));

    mr_tensor *emb = mr_tensor_embedding(ctx, mr_rec_model_item_embedding(model), seq, 0);
    mr_tensor *expected = mr_rec_model_backbone_ops(model)->forward(
        mr_rec_model_backbone_state(model), ctx, emb, seq, NULL);
    CHECK_CTX_OK(ctx);
    if (expected != NULL) {
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(out, expected->data, 32, 0, 0), 0);
    }
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

static void user_vectors_reject_wrong_length(void) {
    mr_rec_config config = small_config(true);
    mr_rec_model *model = create_mean_model(&config, 40, 6);
    if (model == NULL) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *seq = test_random_seq(ctx, 2, 5, 40, 7);
    float out[3 * 2 * 8];
    mr_error err = {0};
    CHECK_STATUS(mr_rec_model_user_vectors(model, ctx, seq, out, &err), MR_ERR_SHAPE);
    CHECK(strstr(err.message, "I32 [B, 6]") != NULL);
    CHECK(strstr(err.message, "[2, 5]") != NULL);
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

/* ------------------------------------------------------------------------
 * The loss
 * ------------------------------------------------------------------------ */

/*
 * The loss in eval mode equals sum_t decay^t mean BCE(u_t . e_c + b_c)
 * computed here in double from the user vectors of the same model.
 */
static void check_loss_against_rounds(bool ada) {
    mr_rec_config config = small_config(ada);
    config.round_decay = 0.5f;
    int32_t n_items = 30;
    mr_rec_model *model = create_mean_model(&config, n_items, 8);
    if (model == NULL) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_ctx_set_training(ctx, false);
    int64_t batch = 6;
    int width = 1 + config.negatives;
    mr_tensor *seq = test_random_seq(ctx, batch, 6, n_items, 9);
    mr_tensor *candidates = test_random_candidates(ctx, batch, config.negatives, n_items, 10);
    mr_tensor *loss = mr_rec_model_loss(model, ctx, seq, candidates, NULL);
    CHECK_CTX_OK(ctx);

    int rounds = mr_rec_model_rounds(model);
    float out[3 * 6 * 8];
    mr_error err = {0};
    CHECK_STATUS(mr_rec_model_user_vectors(model, ctx, seq, out, &err), MR_OK);
    const float *emb = mr_rec_model_item_embedding(model)->data;
    const float *bias = mr_rec_model_item_bias(model)->data;
    double expected = 0, weight = 1;
    for (int t = 0; t < rounds; t++) {
        double round_loss = 0;
        for (int64_t b = 0; b < batch; b++) {
            for (int c = 0; c < width; c++) {
                int32_t id = candidates->idata[b * width + c];
                double score = bias[id];
                for (int d = 0; d < 8; d++) {
                    score += (double)out[(t * batch + b) * 8 + d] * emb[id * 8 + d];
                }
                round_loss += softplus(score) - (c == 0 ? score : 0.0);
            }
        }
        expected += weight * round_loss / (double)(batch * width);
        weight *= 0.5;
    }
    if (loss != NULL) {
        CHECK_INT_EQ(loss->ndim, 0);
        CHECK_NEAR(loss->data[0], expected, 1e-5 * expected);
    }
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

static void loss_sums_rounds_base(void) { check_loss_against_rounds(false); }

static void loss_sums_rounds_ada(void) { check_loss_against_rounds(true); }

static void ada_loss_without_later_rounds_is_base(void) {
    /* With round_decay 0 only round 1 counts, and the embedding, bias and
     * backbone start from the same draws with and without ada. */
    mr_rec_config base_config = small_config(false);
    mr_rec_config ada_config = small_config(true);
    ada_config.round_decay = 0.0f;
    mr_rec_model *base = create_mean_model(&base_config, 30, 11);
    mr_rec_model *ada = create_mean_model(&ada_config, 30, 11);
    if (base != NULL && ada != NULL) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *seq = test_random_seq(ctx, 4, 6, 30, 12);
        mr_tensor *candidates = test_random_candidates(ctx, 4, 5, 30, 13);
        mr_tensor *base_loss = mr_rec_model_loss(base, ctx, seq, candidates, NULL);
        mr_tensor *ada_loss = mr_rec_model_loss(ada, ctx, seq, candidates, NULL);
        CHECK_CTX_OK(ctx);
        if (base_loss != NULL && ada_loss != NULL) {
            CHECK_NEAR(ada_loss->data[0], base_loss->data[0], 1e-7);
        }
        mr_ctx_free(ctx);
    }
    mr_rec_model_free(base);
    mr_rec_model_free(ada);
}

static void init_loss_near_random_bce(void) {
    /* Scores at initialisation are nearly the biases, normal(0, 0.1), so
     * each round's BCE is near log 2 + 0.1^2 / 8 = 0.6944. With ada the
     * round weights 1 + 0.3 + 0.09 sum to 1.39. */
    for (int a = 0; a < 2; a++) {
        mr_rec_config config = small_config(a == 1);
        config.dim = 32;
        config.negatives = 50;
        config.round_decay = 0.3f;
        mr_rec_model *model = create_mean_model(&config, 1000, 14);
        if (model == NULL) {
            continue;
        }
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *seq = test_random_seq(ctx, 64, 6, 1000, 15);
        mr_tensor *candidates = test_random_candidates(ctx, 64, 50, 1000, 16);
        mr_tensor *loss = mr_rec_model_loss(model, ctx, seq, candidates, NULL);
        CHECK_CTX_OK(ctx);
        if (loss != NULL) {
            CHECK_NEAR(loss->data[0], (a == 1 ? 1.39 : 1.0) * 0.6944, 0.02 * (a == 1 ? 1.39 : 1));
        }
        mr_ctx_free(ctx);
        mr_rec_model_free(model);
    }
}

static void loss_gradient_reaches_every_weight(void) {
    mr_rec_config config = small_config(true);
    mr_rec_model *model = create_mean_model(&config, 30, 17);
    if (model == NULL) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *seq = test_random_seq(ctx, 6, 6, 30, 18);
    mr_tensor *candidates = test_random_candidates(ctx, 6, 5, 30, 19);
    mr_tensor *loss = mr_rec_model_loss(model, ctx, seq, candidates, NULL);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);

    mr_paramset *ps = mr_rec_model_params(model);
    for (int i = 0; i < mr_paramset_count(ps); i++) {
        mr_tensor *w = mr_paramset_get(ps, i);
        double total = 0;
        for (int64_t j = 0; j < mr_tensor_numel(w); j++) {
            total += fabs(w->grad[j]);
        }
        if (!(total > 0)) {
            mr_test_fail(__FILE__, __LINE__, "weight '%s' got no gradient", w->name);
        }
    }

    /* Padding row 0 of the embedding gets none, although id 0 is a
     * candidate; its bias does get one. */
    mr_tensor *emb = mr_rec_model_item_embedding(model);
    for (int d = 0; d < 8; d++) {
        CHECK_NEAR(emb->grad[d], 0.0, 0);
    }
    CHECK(mr_rec_model_item_bias(model)->grad[0] != 0.0f);
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

/* Runs 15 Adam steps (lr 0.02) on one batch in training mode with dropout
 * and checks that the eval-mode loss falls by at least a third and that
 * row 0 of the embedding stays zero. */
static void check_adam_lowers_loss(bool ada) {
    mr_rec_config config = small_config(ada);
    config.dim = 16;
    config.dropout = 0.1f;
    int32_t n_items = 50;
    mr_rec_model *model = create_mean_model(&config, n_items, 20);
    if (model == NULL) {
        return;
    }
    mr_error err = {0};
    mr_optim_config optim_config = mr_optim_config_default(MR_OPTIM_ADAM);
    mr_optim *optim = mr_optim_create(&optim_config, &err);
    mr_tensor *flat = mr_paramset_flat(mr_rec_model_params(model));
    CHECK_STATUS(mr_optim_add_group(optim, &flat, 1, 0.0f, 1.0f, &err), MR_OK);

    mr_ctx *batch_ctx = mr_ctx_create(0);
    mr_tensor *seq = test_random_seq(batch_ctx, 8, 6, n_items, 21);
    mr_tensor *candidates = test_random_candidates(batch_ctx, 8, config.negatives, n_items, 22);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_rng rng;
    mr_rng_init(&rng, 23);

    double before = 0, after = 0;
    for (int step = 0; step <= 15; step++) {
        /* The eval-mode loss before step 0 and after the last step. */
        if (step == 0 || step == 15) {
            mr_ctx_set_training(ctx, false);
            mr_ctx_set_grad_enabled(ctx, false);
            mr_tensor *loss = mr_rec_model_loss(model, ctx, seq, candidates, NULL);
            CHECK_CTX_OK(ctx);
            *(step == 0 ? &before : &after) = loss != NULL ? loss->data[0] : NAN;
            mr_ctx_reset(ctx);
            mr_ctx_set_training(ctx, true);
            mr_ctx_set_grad_enabled(ctx, true);
            if (step == 15) {
                break;
            }
        }
        mr_tensor *loss = mr_rec_model_loss(model, ctx, seq, candidates, &rng);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        CHECK_STATUS(mr_optim_step(optim, 0.02f, &err), MR_OK);
        mr_optim_zero_grad(optim);
        mr_ctx_reset(ctx);
    }
    if (!(after < before * 2.0 / 3.0)) {
        mr_test_fail(__FILE__, __LINE__, "loss went from %.4f to %.4f, not below 2/3 of it",
                     before, after);
    }

    const float *emb = mr_rec_model_item_embedding(model)->data;
    for (int d = 0; d < 16; d++) {
        CHECK_NEAR(emb[d], 0.0, 0);
    }
    mr_ctx_free(ctx);
    mr_ctx_free(batch_ctx);
    mr_optim_free(optim);
    mr_rec_model_free(model);
}

static void adam_lowers_loss_base(void) { check_adam_lowers_loss(false); }

static void adam_lowers_loss_ada(void) { check_adam_lowers_loss(true); }

static void loss_rejects_mismatched_candidates(void) {
    mr_rec_config config = small_config(false);
    mr_rec_model *model = create_mean_model(&config, 30, 24);
    if (model == NULL) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *seq = test_random_seq(ctx, 4, 6, 30, 25);
    mr_tensor *candidates = test_random_candidates(ctx, 3, 5, 30, 26);
    CHECK(mr_rec_model_loss(model, ctx, seq, candidates, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "I32 [4, 1 + negatives], not [3, 6]") != NULL);
    mr_ctx_free(ctx);
    mr_rec_model_free(model);
}

int main(void) {
    MR_RUN(config_defaults_match_reference);
    MR_RUN(config_check_rejects_invalid_values);
    MR_RUN(model_declares_weights);
    MR_RUN(model_rejects_too_few_items);
    MR_RUN(rounds_pick_distinct_items);
    MR_RUN(rounds_pick_top_scores);
    MR_RUN(rounds_reject_nan_user_vectors);
    MR_RUN(base_user_vectors_are_backbone_output);
    MR_RUN(user_vectors_reject_wrong_length);
    MR_RUN(loss_sums_rounds_base);
    MR_RUN(loss_sums_rounds_ada);
    MR_RUN(ada_loss_without_later_rounds_is_base);
    MR_RUN(init_loss_near_random_bce);
    MR_RUN(loss_gradient_reaches_every_weight);
    MR_RUN(adam_lowers_loss_base);
    MR_RUN(adam_lowers_loss_ada);
    MR_RUN(loss_rejects_mismatched_candidates);
    return mr_test_finish();
}
