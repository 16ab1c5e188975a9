/*
 * GRU4Rec, NextItNet and SR-GNN backbones. User vectors and gradients are
 * compared with PyTorch modules built like the Ada-Retrieval reference
 * (fixtures/rec_rnn.json, written by fixtures/torch_rec_rnn.py) and with
 * finite differences of each whole backbone. Further cases cover initial
 * weight distributions, NextItNet's causality, SR-GNN's session graph on
 * hand-made sequences, dropout and input checks.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backbone.h"
#include "fixture.h"
#include "gradcheck.h"
#include "rnn_layers.h"
#include "test.h"

/* A backbone with its weights in their own parameter set. */
typedef struct test_backbone {
    const mr_rec_backbone_ops *ops;
    void *state;
    mr_paramset *ps;
} test_backbone;

static mr_rec_config make_config(mr_rec_backbone_type type, int dim, int layers,
                                 int inner_size, float dropout) {
    mr_rec_config config;
    memset(&config, 0, sizeof config);
    config.backbone = type;
    config.dim = dim;
    config.max_len = 50;
    config.layers = layers;
    config.heads = 1;
    config.inner_size = inner_size;
    config.dropout = dropout;
    return config;
}

/* Declares, finalises and initialises a backbone from seed. */
static test_backbone make_backbone(const mr_rec_config *config, uint64_t seed) {
    test_backbone b = {mr_rec_backbone_ops_for(config->backbone), NULL, mr_paramset_create()};
    mr_error err = {0};
    b.state = b.ops->declare(config, b.ps, &err);
    if (b.state == NULL) {
        mr_test_fail(__FILE__, __LINE__, "declare failed: %s", err.message);
        return b;
    }
    CHECK_STATUS(mr_paramset_finalize(b.ps, &err), MR_OK);
    mr_rng rng;
    mr_rng_init(&rng, seed);
    b.ops->init(b.state, b.ps, &rng);
    return b;
}

static void free_backbone(test_backbone *b) {
    if (b->state != NULL) {
        b->ops->free(b->state);
    }
    mr_paramset_free(b->ps);
}

/* Copies every weight of the set from the fixture case, by name. */
static void load_weights(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                         mr_paramset *ps) {
    for (int i = 0; i < mr_paramset_count(ps); i++) {
        mr_tensor *weight = mr_paramset_get(ps, i);
        mr_tensor *value = mr_fixture_tensor(fixture, ctx, case_name, weight->name);
        if (value == NULL) {
            continue;
        }
        if (!mr_tensor_same_shape(weight, value)) {
            char want[64], got[64];
            mr_test_fail(__FILE__, __LINE__, "%s: weight %s is %s in C, %s in the fixture",
                         case_name, weight->name,
                         mr_tensor_shape_string(weight, want, sizeof want),
                         mr_tensor_shape_string(value, got, sizeof got));
            continue;
        }
        CHECK_STATUS(mr_tensor_copy(weight, value), MR_OK);
    }
}

/* Compares count values with tensor `name` of a fixture case. */
static void expect_fixture(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                           const char *name, const float *actual, int64_t count, double atol,
                           double rtol) {
    mr_tensor *expected = mr_fixture_tensor(fixture, ctx, case_name, name);
    if (expected == NULL || actual == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s.%s: no value to compare", case_name, name);
        return;
    }
    CHECK_INT_EQ(mr_tensor_numel(expected), count);
    if (mr_tensor_numel(expected) != count) {
        return;
    }
    char label[96];
    snprintf(label, sizeof label, "%s.%s", case_name, name);
    mr_test_compare(__FILE__, __LINE__, label, actual, expected->data, count, atol, rtol);
}

/* Compares the gradient of every weight with the fixture's "grad.<name>". */
static void expect_weight_gradients(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                                    mr_paramset *ps, double atol, double rtol) {
    mr_tensor *flat = mr_paramset_flat(ps);
    for (int i = 0; i < mr_paramset_count(ps); i++) {
        mr_tensor *weight = mr_paramset_get(ps, i);
        char name[80];
        snprintf(name, sizeof name, "grad.%s", weight->name);
        const float *grad = flat->grad + (weight->data - flat->data);
        expect_fixture(fixture, ctx, case_name, name, grad, mr_tensor_numel(weight), atol, rtol);
    }
}

/*
 * Runs a fixture case: loads its weights, builds the user vectors from
 * item_emb (or from the embedding table "table" looked up at "seq"),
 * and compares them and the gradients of sum(out * r).
 */
static void check_against_torch(mr_rec_backbone_type type, const char *case_name,
                                double atol, double rtol) {
    mr_fixture *fixture = mr_fixture_load("fixtures/rec_rnn.json");
    mr_ctx *ctx = mr_ctx_create(0);
    mr_ctx_set_training(ctx, false);
    int dim = (int)mr_fixture_number(fixture, case_name, "dim", 0);
    int layers = (int)mr_fixture_number(fixture, case_name, "layers", 0);
    int inner_size = (int)mr_fixture_number(fixture, case_name, "inner_size", 1);
    mr_tensor *seq = NULL, *table = NULL, *item_emb = NULL;
    if (type == MR_REC_SRGNN) {
        seq = mr_fixture_tensor_i32(fixture, ctx, case_name, "seq");
        table = mr_fixture_tensor(fixture, ctx, case_name, "table");
        mr_tensor_set_requires_grad(table, true);
        item_emb = mr_tensor_embedding(ctx, table, seq, -1);
    } else {
        item_emb = mr_fixture_tensor(fixture, ctx, case_name, "item_emb");
        mr_tensor_set_requires_grad(item_emb, true);
    }

    /* The fixture's inputs are whole sequences: an input shorter than
     * max_len would count as cut, and GRU4Rec would start it from a
     * padding state. */
    mr_rec_config config = make_config(type, dim, layers, inner_size, 0.5f);
    if (item_emb != NULL) {
        config.max_len = (int)item_emb->shape[1];
    }
    test_backbone b = make_backbone(&config, 1);
    if (b.state == NULL || item_emb == NULL) {
        free_backbone(&b);
        mr_ctx_free(ctx);
        mr_fixture_free(fixture);
        return;
    }
    load_weights(fixture, ctx, case_name, b.ps);

    mr_tensor *r = mr_fixture_tensor(fixture, ctx, case_name, "r");
    mr_rng rng;
    mr_rng_init(&rng, 7);
    mr_tensor *out = b.ops->forward(b.state, ctx, item_emb, seq, &rng);
    CHECK_CTX_OK(ctx);
    if (out != NULL && r != NULL) {
        CHECK_INT_EQ(out->ndim, 2);
        CHECK_INT_EQ(out->shape[1], dim);
        expect_fixture(fixture, ctx, case_name, "out", out->data, mr_tensor_numel(out), atol,
                       rtol);
        CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
        if (table != NULL) {
            expect_fixture(fixture, ctx, case_name, "grad.table", table->grad,
                           mr_tensor_numel(table), atol, rtol);
        } else {
            expect_fixture(fixture, ctx, case_name, "grad.item_emb", item_emb->grad,
                           mr_tensor_numel(item_emb), atol, rtol);
        }
        expect_weight_gradients(fixture, ctx, case_name, b.ps, atol, rtol);
    }
    free_backbone(&b);
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

/* Float32 sums in another order than PyTorch's differ by a few ulps per
 * step; the tolerances allow that across 2-3 layers of gates and norms. */
static void gru4rec_matches_torch(void) {
    check_against_torch(MR_REC_GRU4REC, "gru4rec", 1e-5, 1e-4);
}

static void nextitnet_matches_torch(void) {
    check_against_torch(MR_REC_NEXTITNET, "nextitnet", 1e-5, 1e-4);
}

/* SR-GNN's graph cell has N(0, 1) weights, so its values reach about 10
 * and the absolute tolerance grows with them. */
static void srgnn_matches_torch(void) {
    check_against_torch(MR_REC_SRGNN, "srgnn", 5e-5, 1e-4);
}

/* ------------------------------------------------------------------------
 * Shapes, parameter counts and initial values
 * ------------------------------------------------------------------------ */

/* Builds the user vectors of a [3, 7, dim] batch with a padded row. */
static mr_tensor *run_on_small_batch(test_backbone *b, mr_ctx *ctx, int dim) {
    int32_t ids[3 * 7] = {0, 0, 0, 4, 2, 9, 1, 5, 6, 7, 8, 3, 2, 1, 0, 0, 0, 0, 0, 0, 6};
    int64_t seq_shape[2] = {3, 7};
    mr_tensor *seq = mr_tensor_from_i32(ctx, 2, seq_shape, ids);
    mr_tensor *item_emb = mr_tensor_new3d(ctx, MR_F32, 3, 7, dim);
    mr_test_fill_uniform(item_emb, -1, 1, 11);
    mr_rng rng;
    mr_rng_init(&rng, 3);
    return b->ops->forward(b->state, ctx, item_emb, seq, &rng);
}

static void backbones_give_one_vector_per_user(void) {
    const int dim = 16;
    mr_rec_config configs[3] = {
        make_config(MR_REC_GRU4REC, dim, 2, 32, 0.1777f),
        make_config(MR_REC_NEXTITNET, dim, 10, 1, 0.1777f),
        make_config(MR_REC_SRGNN, dim, 1, 1, 0.1777f),
    };
    for (int c = 0; c < 3; c++) {
        test_backbone b = make_backbone(&configs[c], 5);
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *out = b.state != NULL ? run_on_small_batch(&b, ctx, dim) : NULL;
        CHECK_CTX_OK(ctx);
        CHECK(out != NULL);
        if (out != NULL) {
            CHECK_INT_EQ(out->ndim, 2);
            CHECK_INT_EQ(out->shape[0], 3);
            CHECK_INT_EQ(out->shape[1], dim);
            for (int64_t i = 0; i < mr_tensor_numel(out); i++) {
                CHECK(isfinite(out->data[i]));
            }
        }
        mr_ctx_free(ctx);
        free_backbone(&b);
    }
}

static void parameter_counts_match_reference(void) {
    /* At D = 64: GRU4Rec with 2 layers of 128, NextItNet with 10 blocks,
     * SR-GNN with its graph cell, two edge layers and readout layers. */
    int64_t d = 64, h = 128;
    int64_t gru4rec = (3 * h * d + 3 * h * h + 6 * h) + (6 * h * h + 6 * h) + (h * d + d);
    int64_t nextitnet = 10 * 2 * (d * d * 3 + d + 2 * d) + (d * d + d);
    int64_t srgnn = (3 * d * 2 * d + 3 * d * d + 6 * d + 2 * d) + 2 * (d * d + d) +
                    2 * (d * d + d) + d + (2 * d * d + d);
    mr_rec_config configs[3] = {
        make_config(MR_REC_GRU4REC, 64, 2, 128, 0.1777f),
        make_config(MR_REC_NEXTITNET, 64, 10, 1, 0.0f),
        make_config(MR_REC_SRGNN, 64, 1, 1, 0.0f),
    };
    int64_t expected[3] = {gru4rec, nextitnet, srgnn};
    for (int c = 0; c < 3; c++) {
        test_backbone b = make_backbone(&configs[c], 1);
        CHECK_INT_EQ(mr_paramset_numel(b.ps), expected[c]);
        free_backbone(&b);
    }
    CHECK_INT_EQ(gru4rec, 181824);
}

/* Largest |value| and the sample standard deviation of a weight. */
static void weight_stats(const mr_tensor *t, double *max_abs, double *std) {
    int64_t n = mr_tensor_numel(t);
    double sum = 0, sum_sq = 0;
    *max_abs = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = t->data[i];
        sum += v;
        sum_sq += v * v;
        *max_abs = fabs(v) > *max_abs ? fabs(v) : *max_abs;
    }
    double mean = sum / (double)n;
    *std = sqrt(sum_sq / (double)n - mean * mean);
}

/* Uniform(-a, a) has max close to a and std a / sqrt(3). */
static void expect_uniform(mr_paramset *ps, const char *name, double bound) {
    mr_tensor *t = mr_paramset_find(ps, name);
    CHECK(t != NULL);
    if (t == NULL) {
        return;
    }
    double max_abs, std;
    weight_stats(t, &max_abs, &std);
    CHECK(max_abs <= bound);
    CHECK(max_abs > 0.9 * bound);
    CHECK_NEAR(std, bound / sqrt(3.0), 0.1 * bound);
}

static void expect_constant(mr_paramset *ps, const char *name, float value) {
    mr_tensor *t = mr_paramset_find(ps, name);
    CHECK(t != NULL);
    for (int64_t i = 0; t != NULL && i < mr_tensor_numel(t); i++) {
        CHECK_NEAR(t->data[i], value, 0);
    }
}

static void initial_weights_follow_reference(void) {
    /* GRU: PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)); dense: xavier. */
    mr_rec_config config = make_config(MR_REC_GRU4REC, 64, 2, 128, 0.0f);
    test_backbone b = make_backbone(&config, 9);
    expect_uniform(b.ps, "backbone.gru_layers.weight_ih_l0", 1.0 / sqrt(128.0));
    expect_uniform(b.ps, "backbone.gru_layers.weight_hh_l1", 1.0 / sqrt(128.0));
    expect_uniform(b.ps, "backbone.gru_layers.bias_hh_l1", 1.0 / sqrt(128.0));
    expect_uniform(b.ps, "backbone.dense.weight", sqrt(6.0 / (128 + 64)));
    expect_constant(b.ps, "backbone.dense.bias", 0.0f);
    free_backbone(&b);

    /* Convolutions: uniform(-1/sqrt(3D), 1/sqrt(3D)); norms 1 and 0. */
    config = make_config(MR_REC_NEXTITNET, 64, 4, 1, 0.0f);
    b = make_backbone(&config, 9);
    expect_uniform(b.ps, "backbone.residual_blocks.3.conv2.weight", 1.0 / sqrt(192.0));
    expect_uniform(b.ps, "backbone.residual_blocks.0.conv1.bias", 1.0 / sqrt(192.0));
    expect_constant(b.ps, "backbone.residual_blocks.1.ln1.weight", 1.0f);
    expect_constant(b.ps, "backbone.residual_blocks.1.ln2.bias", 0.0f);
    expect_uniform(b.ps, "backbone.final_layer.weight", sqrt(6.0 / 128.0));
    free_backbone(&b);

    /* SR-GNN: the graph cell's tensors stay normal(0, 1). */
    config = make_config(MR_REC_SRGNN, 64, 1, 1, 0.0f);
    b = make_backbone(&config, 9);
    double max_abs, std;
    weight_stats(mr_paramset_find(b.ps, "backbone.gnn.w_ih"), &max_abs, &std);
    CHECK_NEAR(std, 1.0, 0.03);
    CHECK(max_abs > 3.0);
    weight_stats(mr_paramset_find(b.ps, "backbone.gnn.b_iah"), &max_abs, &std);
    CHECK_NEAR(std, 1.0, 0.3);
    expect_uniform(b.ps, "backbone.linear_transform.weight", sqrt(6.0 / (128 + 64)));
    expect_uniform(b.ps, "backbone.gnn.linear_edge_in.weight", sqrt(6.0 / 128.0));
    expect_constant(b.ps, "backbone.linear_one.bias", 0.0f);
    CHECK(mr_paramset_find(b.ps, "backbone.linear_three.bias") == NULL);
    free_backbone(&b);
}

/* ------------------------------------------------------------------------
 * Finite differences
 * ------------------------------------------------------------------------ */

typedef struct gradcheck_case {
    test_backbone *backbone;
    mr_tensor *seq;
    mr_rng rng; /* copied on every build so dropout masks repeat */
} gradcheck_case;

/* inputs: item_emb and the backbone's flat weight buffer, which the
 * forward reads through the weight views. */
static mr_tensor *build_backbone(mr_ctx *ctx, mr_tensor **inputs, void *user) {
    gradcheck_case *c = user;
    mr_rng rng = c->rng;
    return c->backbone->ops->forward(c->backbone->state, ctx, inputs[0], c->seq, &rng);
}

static void check_backbone_gradients(const char *label, const mr_rec_config *config,
                                     const int32_t *ids, int64_t batch, int64_t length,
                                     double atol, double rtol) {
    test_backbone b = make_backbone(config, 21);
    mr_ctx *inputs_ctx = mr_ctx_create(0);
    int64_t seq_shape[2] = {batch, length};
    mr_tensor *item_emb = mr_tensor_new3d(inputs_ctx, MR_F32, batch, length, config->dim);
    mr_test_fill_uniform(item_emb, -1, 1, 31);
    mr_tensor_set_requires_grad(item_emb, true);
    gradcheck_case c = {&b, mr_tensor_from_i32(inputs_ctx, 2, seq_shape, ids), {0, 0}};
    mr_rng_init(&c.rng, 41);

    mr_tensor *inputs[2] = {item_emb, mr_paramset_flat(b.ps)};
    mr_gradcheck_options options = {1e-3, atol, rtol, 60};
    CHECK_INT_EQ(mr_gradcheck(label, build_backbone, inputs, 2, &c, &options), 0);
    mr_ctx_free(inputs_ctx);
    free_backbone(&b);
}

static const int32_t gradcheck_ids[2 * 5] = {0, 0, 3, 1, 2, 4, 5, 6, 7, 8};

/* Dropout stays active: the build copies the same rng, so every forward
 * draws the same mask. */
static void gru4rec_gradients(void) {
    mr_rec_config config = make_config(MR_REC_GRU4REC, 4, 2, 5, 0.3f);
    check_backbone_gradients("gru4rec", &config, gradcheck_ids, 2, 5, 1e-3, 1e-2);
}

static void nextitnet_gradients(void) {
    mr_rec_config config = make_config(MR_REC_NEXTITNET, 4, 3, 1, 0.0f);
    config.max_len = 5;
    check_backbone_gradients("nextitnet", &config, gradcheck_ids, 2, 5, 2e-3, 2e-2);
}

/* An input 3 positions shorter than max_len counts as cut: gradients also
 * flow through the padding activations its convolutions read. */
static void nextitnet_cut_input_gradients(void) {
    mr_rec_config config = make_config(MR_REC_NEXTITNET, 4, 3, 1, 0.0f);
    config.max_len = 8;
    check_backbone_gradients("nextitnet cut", &config, gradcheck_ids, 2, 5, 2e-3, 2e-2);
}

static void srgnn_gradients(void) {
    mr_rec_config config = make_config(MR_REC_SRGNN, 4, 2, 1, 0.0f);
    check_backbone_gradients("srgnn", &config, gradcheck_ids, 2, 5, 2e-3, 2e-2);
}

/* ------------------------------------------------------------------------
 * NextItNet causality
 * ------------------------------------------------------------------------ */

static void nextitnet_later_steps_leave_earlier_alone(void) {
    const int dim = 8, length = 12, changed = 7;
    mr_rec_config config = make_config(MR_REC_NEXTITNET, dim, 4, 1, 0.0f);
    test_backbone b = make_backbone(&config, 13);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new3d(ctx, MR_F32, 2, length, dim);
    mr_test_fill_uniform(x, -1, 1, 17);
    mr_tensor *before = mr_rec_nextitnet_positions(b.state, ctx, x);

    /* Change position 7 of both sequences. */
    mr_tensor *y = mr_tensor_new3d(ctx, MR_F32, 2, length, dim);
    mr_tensor_copy(y, x);
    for (int64_t s = 0; s < 2; s++) {
        for (int64_t d = 0; d < dim; d++) {
            y->data[(s * length + changed) * dim + d] += 0.5f;
        }
    }
    mr_tensor *after = mr_rec_nextitnet_positions(b.state, ctx, y);
    CHECK_CTX_OK(ctx);
    if (before == NULL || after == NULL) {
        mr_ctx_free(ctx);
        free_backbone(&b);
        return;
    }

    for (int64_t s = 0; s < 2; s++) {
        const float *old_rows = before->data + s * length * dim;
        const float *new_rows = after->data + s * length * dim;
        CHECK_ARRAY_NEAR(new_rows, old_rows, changed * dim, 0, 0);
        for (int64_t p = changed; p < length; p++) {
            double change = 0;
            for (int64_t d = 0; d < dim; d++) {
                change += fabs(new_rows[p * dim + d] - old_rows[p * dim + d]);
            }
            CHECK(change > 1e-4);
        }
    }
    mr_ctx_free(ctx);
    free_backbone(&b);
}

static void nextitnet_user_vector_reads_last_step(void) {
    const int dim = 8, length = 12, prefix = 9;
    mr_rec_config config = make_config(MR_REC_NEXTITNET, dim, 4, 1, 0.0f);
    config.max_len = length;
    test_backbone b = make_backbone(&config, 13);

    /* The same weights with max_len 9, so that 9 steps are a whole input
     * and not one cut from 12. */
    config.max_len = prefix;
    test_backbone short_b = make_backbone(&config, 13);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new3d(ctx, MR_F32, 2, length, dim);
    mr_test_fill_uniform(x, -1, 1, 19);
    mr_rng rng;
    mr_rng_init(&rng, 1);

    /* The user vector of the first 9 steps is the final layer applied to
     * step 8 of the full run. */
    mr_tensor *positions = mr_rec_nextitnet_positions(b.state, ctx, x);
    mr_tensor *step = mr_tensor_slice(ctx, positions, 1, prefix - 1, 1);
    mr_tensor *expected =
        mr_tensor_linear(ctx, step, mr_paramset_find(b.ps, "backbone.final_layer.weight"),
                         mr_paramset_find(b.ps, "backbone.final_layer.bias"));
    mr_tensor *head = mr_tensor_contiguous(ctx, mr_tensor_slice(ctx, x, 1, 0, prefix));
    mr_tensor *user = short_b.ops->forward(short_b.state, ctx, head, NULL, &rng);
    CHECK_CTX_OK(ctx);
    if (user != NULL && expected != NULL) {
        CHECK_ARRAY_NEAR(user->data, expected->data, 2 * dim, 1e-6, 1e-6);
    }

    /* Changing only the last step changes the user vector. */
    mr_tensor *full = b.ops->forward(b.state, ctx, x, NULL, &rng);
    mr_tensor *y = mr_tensor_new3d(ctx, MR_F32, 2, length, dim);
    mr_tensor_copy(y, x);
    y->data[(length - 1) * dim] += 0.5f;
    mr_tensor *changed = b.ops->forward(b.state, ctx, y, NULL, &rng);
    CHECK_CTX_OK(ctx);
    if (full != NULL && changed != NULL) {
        double first = 0, second = 0;
        for (int d = 0; d < dim; d++) {
            first += fabs(changed->data[d] - full->data[d]);
            second += fabs(changed->data[dim + d] - full->data[dim + d]);
        }
        CHECK(first > 1e-4);
        CHECK_NEAR(second, 0.0, 0);
    }
    mr_ctx_free(ctx);
    free_backbone(&b);
    free_backbone(&short_b);
}

/* ------------------------------------------------------------------------
 * SR-GNN session graphs
 * ------------------------------------------------------------------------ */

static void srgnn_graph_with_repeat_and_padding(void) {
    /* Nodes 0, 3, 5, 7; edges 3 -> 5, 5 -> 3, 3 -> 7. */
    const int32_t seq[6] = {0, 0, 3, 5, 3, 7};
    int32_t representative[6], alias[6];
    float a_in[36], a_out[36];
    CHECK_INT_EQ(mr_rec_srgnn_graph(seq, 6, representative, alias, a_in, a_out), 4);

    const int32_t expected_alias[6] = {0, 0, 1, 2, 1, 3};
    const int32_t expected_representative[6] = {0, 2, 3, 5, 0, 0};
    for (int p = 0; p < 6; p++) {
        CHECK_INT_EQ(alias[p], expected_alias[p]);
        CHECK_INT_EQ(representative[p], expected_representative[p]);
    }

    /* Node 3 has two out-edges, so each weighs 1/2 in a_out. */
    float expected_in[36] = {0}, expected_out[36] = {0};
    expected_in[1 * 6 + 2] = 1.0f; /* 3 receives from 5 */
    expected_in[2 * 6 + 1] = 1.0f; /* 5 receives from 3 */
    expected_in[3 * 6 + 1] = 1.0f; /* 7 receives from 3 */
    expected_out[1 * 6 + 2] = 0.5f;
    expected_out[1 * 6 + 3] = 0.5f;
    expected_out[2 * 6 + 1] = 1.0f;
    CHECK_ARRAY_NEAR(a_in, expected_in, 36, 0, 0);
    CHECK_ARRAY_NEAR(a_out, expected_out, 36, 0, 0);
}

static void srgnn_graph_of_full_sequence(void) {
    /* Nodes 2, 4, 9 (sorted, no padding node); edges 4 -> 2 and 2 -> 9. */
    const int32_t seq[3] = {4, 2, 9};
    int32_t representative[3], alias[3];
    float a_in[9], a_out[9];
    CHECK_INT_EQ(mr_rec_srgnn_graph(seq, 3, representative, alias, a_in, a_out), 3);
    CHECK_INT_EQ(alias[0], 1);
    CHECK_INT_EQ(alias[1], 0);
    CHECK_INT_EQ(alias[2], 2);
    const float expected_in[9] = {0, 1, 0, 0, 0, 0, 1, 0, 0};
    const float expected_out[9] = {0, 0, 1, 1, 0, 0, 0, 0, 0};
    CHECK_ARRAY_NEAR(a_in, expected_in, 9, 0, 0);
    CHECK_ARRAY_NEAR(a_out, expected_out, 9, 0, 0);

    /* 1 -> 9 and 4 -> 9: node 9 has in-degree 2. Padding in the middle
     * breaks the chain 1, 0, 4. */
    const int32_t two_in[5] = {1, 9, 0, 4, 9};
    int32_t rep5[5], alias5[5];
    float in5[25], out5[25];
    CHECK_INT_EQ(mr_rec_srgnn_graph(two_in, 5, rep5, alias5, in5, out5), 4);
    /* Nodes 0, 1, 4, 9 at indices 0..3. */
    CHECK_NEAR(in5[3 * 5 + 1], 0.5, 0);
    CHECK_NEAR(in5[3 * 5 + 2], 0.5, 0);
    CHECK_NEAR(out5[1 * 5 + 3], 1.0, 0);
    CHECK_NEAR(out5[2 * 5 + 3], 1.0, 0);
    CHECK_NEAR(out5[0 * 5 + 2], 0.0, 0);
    CHECK_NEAR(out5[1 * 5 + 0], 0.0, 0);
    CHECK_INT_EQ(rep5[0], 2);
}

static void srgnn_graph_of_empty_sequence(void) {
    const int32_t seq[4] = {0, 0, 0, 0};
    int32_t representative[4], alias[4];
    float a_in[16], a_out[16], zeros[16] = {0};
    CHECK_INT_EQ(mr_rec_srgnn_graph(seq, 4, representative, alias, a_in, a_out), 1);
    for (int p = 0; p < 4; p++) {
        CHECK_INT_EQ(alias[p], 0);
        CHECK_INT_EQ(representative[p], 0);
    }
    CHECK_ARRAY_NEAR(a_in, zeros, 16, 0, 0);
    CHECK_ARRAY_NEAR(a_out, zeros, 16, 0, 0);
}

/* The graph reads each id's embedding at its first position: changing a
 * later position of a repeated id changes nothing, and neither does any
 * padding position (node 0 has no edges and the readout masks padding). */
static void srgnn_reads_first_position_of_each_id(void) {
    const int dim = 6, length = 6;
    mr_rec_config config = make_config(MR_REC_SRGNN, dim, 1, 1, 0.0f);
    test_backbone b = make_backbone(&config, 23);
    mr_ctx *ctx = mr_ctx_create(0);
    int32_t ids[6] = {0, 0, 3, 8, 3, 5};
    int64_t seq_shape[2] = {1, length};
    mr_tensor *seq = mr_tensor_from_i32(ctx, 2, seq_shape, ids);
    mr_tensor *x = mr_tensor_new3d(ctx, MR_F32, 1, length, dim);
    mr_test_fill_uniform(x, -1, 1, 29);
    mr_tensor *y = mr_tensor_new3d(ctx, MR_F32, 1, length, dim);
    mr_tensor *base = b.ops->forward(b.state, ctx, x, seq, NULL);

    const bool changes_output[6] = {false, false, true, true, false, true};
    for (int p = 0; p < length; p++) {
        mr_tensor_copy(y, x);
        y->data[p * dim + 1] += 1.0f;
        mr_tensor *out = b.ops->forward(b.state, ctx, y, seq, NULL);
        CHECK_CTX_OK(ctx);
        if (base == NULL || out == NULL) {
            break;
        }
        double change = 0;
        for (int d = 0; d < dim; d++) {
            change += fabs(out->data[d] - base->data[d]);
        }
        if (changes_output[p]) {
            CHECK(change > 1e-5);
        } else {
            CHECK_NEAR(change, 0.0, 0);
        }
    }
    mr_ctx_free(ctx);
    free_backbone(&b);
}

/* ------------------------------------------------------------------------
 * Dropout and input checks
 * ------------------------------------------------------------------------ */

static void gru4rec_dropout_only_in_training(void) {
    const int dim = 8;
    mr_rec_config config = make_config(MR_REC_GRU4REC, dim, 1, 8, 0.5f);
    test_backbone b = make_backbone(&config, 3);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_new3d(ctx, MR_F32, 2, 4, dim);
    mr_test_fill_uniform(x, -1, 1, 37);
    mr_rng rng_a, rng_b;
    mr_rng_init(&rng_a, 5);
    mr_rng_init(&rng_b, 5);

    mr_tensor *train_a = b.ops->forward(b.state, ctx, x, NULL, &rng_a);
    mr_tensor *train_b = b.ops->forward(b.state, ctx, x, NULL, &rng_b);
    mr_ctx_set_training(ctx, false);
    mr_tensor *eval_a = b.ops->forward(b.state, ctx, x, NULL, &rng_a);
    mr_tensor *eval_b = b.ops->forward(b.state, ctx, x, NULL, &rng_a);
    CHECK_CTX_OK(ctx);
    if (train_a != NULL && train_b != NULL && eval_a != NULL && eval_b != NULL) {
        CHECK_ARRAY_NEAR(train_a->data, train_b->data, 2 * dim, 0, 0);
        CHECK_ARRAY_NEAR(eval_a->data, eval_b->data, 2 * dim, 0, 0);
        double difference = 0;
        for (int i = 0; i < 2 * dim; i++) {
            difference += fabs(train_a->data[i] - eval_a->data[i]);
        }
        CHECK(difference > 1e-3);
    }
    mr_ctx_free(ctx);
    free_backbone(&b);
}

static void backbones_reject_bad_inputs(void) {
    const mr_rec_backbone_type types[3] = {MR_REC_GRU4REC, MR_REC_NEXTITNET, MR_REC_SRGNN};
    const char *names[3] = {"gru4rec", "nextitnet", "srgnn"};
    for (int c = 0; c < 3; c++) {
        mr_rec_config config = make_config(types[c], 4, 1, 4, 0.0f);
        test_backbone b = make_backbone(&config, 1);
        mr_ctx *ctx = mr_ctx_create(0);
        mr_rng rng;
        mr_rng_init(&rng, 1);

        /* Embedding size 5 where the backbone expects 4. */
        mr_tensor *wide = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 3, 5});
        mr_tensor *seq = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, 3});
        CHECK(b.ops->forward(b.state, ctx, wide, seq, &rng) == NULL);
        CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
        CHECK(strstr(mr_ctx_error_message(ctx), names[c]) != NULL);
        CHECK(strstr(mr_ctx_error_message(ctx), "[2, 3, 5]") != NULL);

        /* seq of another length. */
        mr_ctx_reset(ctx);
        mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 3, 4});
        mr_tensor *short_seq = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){2, 2});
        CHECK(b.ops->forward(b.state, ctx, x, short_seq, &rng) == NULL);
        CHECK(strstr(mr_ctx_error_message(ctx), "seq has shape [2, 2]") != NULL);

        /* A NULL input from an earlier failed op adds no message. */
        mr_ctx_reset(ctx);
        CHECK(b.ops->forward(b.state, ctx, NULL, NULL, &rng) == NULL);
        CHECK_STATUS(mr_ctx_status(ctx), MR_OK);
        mr_ctx_free(ctx);
        free_backbone(&b);
    }

    /* SR-GNN needs the ids. */
    mr_rec_config config = make_config(MR_REC_SRGNN, 4, 1, 1, 0.0f);
    test_backbone b = make_backbone(&config, 1);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 3, 4});
    CHECK(b.ops->forward(b.state, ctx, x, NULL, NULL) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "srgnn: seq is NULL") != NULL);
    mr_ctx_free(ctx);
    free_backbone(&b);
}

static void backbones_reject_bad_config(void) {
    mr_error err = {0};
    mr_paramset *ps = mr_paramset_create();
    mr_rec_config config = make_config(MR_REC_GRU4REC, 4, 0, 4, 0.0f);
    CHECK(mr_rec_gru4rec_ops.declare(&config, ps, &err) == NULL);
    CHECK(strstr(err.message, "layers 0") != NULL);
    config = make_config(MR_REC_NEXTITNET, 0, 2, 4, 0.0f);
    CHECK(mr_rec_nextitnet_ops.declare(&config, ps, &err) == NULL);
    CHECK(strstr(err.message, "dim 0") != NULL);
    config = make_config(MR_REC_SRGNN, 4, -1, 4, 0.0f);
    CHECK(mr_rec_srgnn_ops.declare(&config, ps, &err) == NULL);
    CHECK(strstr(err.message, "layers (graph steps) -1") != NULL);
    CHECK_INT_EQ(mr_paramset_count(ps), 0);
    mr_paramset_free(ps);
}

int main(void) {
    MR_RUN(gru4rec_matches_torch);
    MR_RUN(nextitnet_matches_torch);
    MR_RUN(srgnn_matches_torch);
    MR_RUN(backbones_give_one_vector_per_user);
    MR_RUN(parameter_counts_match_reference);
    MR_RUN(initial_weights_follow_reference);
    MR_RUN(gru4rec_gradients);
    MR_RUN(nextitnet_gradients);
    MR_RUN(nextitnet_cut_input_gradients);
    MR_RUN(srgnn_gradients);
    MR_RUN(nextitnet_later_steps_leave_earlier_alone);
    MR_RUN(nextitnet_user_vector_reads_last_step);
    MR_RUN(srgnn_graph_with_repeat_and_padding);
    MR_RUN(srgnn_graph_of_full_sequence);
    MR_RUN(srgnn_graph_of_empty_sequence);
    MR_RUN(srgnn_reads_first_position_of_each_id);
    MR_RUN(gru4rec_dropout_only_in_training);
    MR_RUN(backbones_reject_bad_inputs);
    MR_RUN(backbones_reject_bad_config);
    return mr_test_finish();
}
