/*
 * Ada-Retrieval adapter tests: the weight count of the reference
 * configuration, the initialisation, values and gradients of LFT, CAT, URA
 * and the whole IRA against PyTorch (fixtures/ada.json, written by
 * fixtures/torch_ada.py), and finite-difference checks of each part.
 */
#include <stddef.h>
#include <string.h>

#include "adapters.h"
#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

/* Every weight field of mr_rec_ada with its fixture name. */
typedef struct weight_field {
    const char *name;
    size_t offset;
} weight_field;

#define FIELD(f) {#f, offsetof(mr_rec_ada, f)}

static const weight_field weight_fields[] = {
    FIELD(lft_weight),      FIELD(lft_dense_weight), FIELD(lft_dense_bias),
    FIELD(lft_norm_weight), FIELD(lft_norm_bias),    FIELD(cat_norm_weight),
    FIELD(cat_norm_bias),   FIELD(gru_w_ih),         FIELD(gru_w_hh),
    FIELD(gru_b_ih),        FIELD(gru_b_hh),         FIELD(mlp1_weight),
    FIELD(mlp1_bias),       FIELD(mlp2_weight),      FIELD(mlp2_bias),
    FIELD(ura_norm_weight), FIELD(ura_norm_bias),
};

#define WEIGHT_FIELDS ((int)(sizeof weight_fields / sizeof weight_fields[0]))

static mr_tensor **field_slot(mr_rec_ada *ada, int i) {
    return (mr_tensor **)((char *)ada + weight_fields[i].offset);
}

/*
 * Points ada's weights named in `present` at the tensors of a fixture case
 * (others stay NULL) and makes each require a gradient. The caller sets
 * dim and per_round.
 */
static void load_weights(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                         const char *const *present, int n_present, mr_rec_ada *ada) {
    *ada = (mr_rec_ada){0};
    for (int p = 0; p < n_present; p++) {
        for (int i = 0; i < WEIGHT_FIELDS; i++) {
            if (strcmp(weight_fields[i].name, present[p]) == 0) {
                mr_tensor *t = mr_fixture_tensor(fixture, ctx, case_name, present[p]);
                if (t != NULL) {
                    mr_tensor_set_requires_grad(t, true);
                }
                *field_slot(ada, i) = t;
            }
        }
    }
}

/* Compares count values with tensor `name` of a fixture case. */
static void expect_fixture(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                           const char *name, const float *actual, int64_t count,
                           double atol, double rtol) {
    mr_tensor *expected = mr_fixture_tensor(fixture, ctx, case_name, name);
    if (expected == NULL || actual == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s.%s: no value to compare", case_name, name);
        return;
    }
    CHECK_INT_EQ(mr_tensor_numel(expected), count);
    char label[96];
    snprintf(label, sizeof label, "%s.%s", case_name, name);
    mr_test_compare(__FILE__, __LINE__, label, actual, expected->data, count, atol, rtol);
}

/* Compares the gradient of every weight of ada that is set with the
 * fixture's grad_<name>. */
static void expect_weight_grads(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                                mr_rec_ada *ada) {
    for (int i = 0; i < WEIGHT_FIELDS; i++) {
        mr_tensor *t = *field_slot(ada, i);
        if (t == NULL) {
            continue;
        }
        char grad_name[64];
        snprintf(grad_name, sizeof grad_name, "grad_%s", weight_fields[i].name);
        expect_fixture(fixture, ctx, case_name, grad_name, t->grad, mr_tensor_numel(t), 1e-5,
                       1e-4);
    }
}

/* ------------------------------------------------------------------------ */

static void adapters_have_reference_weight_count(void) {
    mr_error err;
    mr_paramset *ps = mr_paramset_create();
    mr_rec_ada ada;
    CHECK_STATUS(mr_rec_ada_declare(&ada, 64, 20, 0.1f, ps, &err), MR_OK);
    CHECK_STATUS(mr_paramset_finalize(ps, &err), MR_OK);
    CHECK_STATUS(mr_rec_ada_bind(&ada, ps, &err), MR_OK);

    /* LFT 5,696 + CAT LN 128 + GRU 24,960 + MLP 24,768 + URA LN 128. */
    CHECK_INT_EQ(mr_paramset_numel(ps), 55680);
    CHECK_INT_EQ(mr_rec_ada_numel(&ada), 55680);
    int64_t lft = mr_tensor_numel(ada.lft_weight) + mr_tensor_numel(ada.lft_dense_weight) +
                  mr_tensor_numel(ada.lft_dense_bias) + mr_tensor_numel(ada.lft_norm_weight) +
                  mr_tensor_numel(ada.lft_norm_bias);
    CHECK_INT_EQ(lft, 5696);
    int64_t gru = mr_tensor_numel(ada.gru_w_ih) + mr_tensor_numel(ada.gru_w_hh) +
                  mr_tensor_numel(ada.gru_b_ih) + mr_tensor_numel(ada.gru_b_hh);
    CHECK_INT_EQ(gru, 24960);
    int64_t mlp = mr_tensor_numel(ada.mlp1_weight) + mr_tensor_numel(ada.mlp1_bias) +
                  mr_tensor_numel(ada.mlp2_weight) + mr_tensor_numel(ada.mlp2_bias);
    CHECK_INT_EQ(mlp, 24768);

    /* The complex weight has k/2 + 1 = 11 frequencies. */
    CHECK_INT_EQ(ada.lft_weight->shape[0], 2);
    CHECK_INT_EQ(ada.lft_weight->shape[1], 11);
    CHECK_INT_EQ(ada.lft_weight->shape[2], 64);
    CHECK(mr_paramset_find(ps, "ada.ura.gru.weight_hh") == ada.gru_w_hh);
    mr_paramset_free(ps);
}

static void adapters_init_like_reference(void) {
    mr_error err;
    mr_paramset *ps = mr_paramset_create();
    mr_rec_ada ada;
    CHECK_STATUS(mr_rec_ada_declare(&ada, 64, 20, 0.1f, ps, &err), MR_OK);
    CHECK_STATUS(mr_paramset_finalize(ps, &err), MR_OK);
    CHECK_STATUS(mr_rec_ada_bind(&ada, ps, &err), MR_OK);
    mr_rng rng;
    mr_rng_init(&rng, 7);
    mr_rec_ada_init(&ada, false, &rng);

    /* Layer norms start at 1 and 0, linear biases at 0. */
    CHECK_NEAR(mr_tensor_get(ada.cat_norm_weight, 5), 1.0, 0);
    CHECK_NEAR(mr_tensor_get(ada.ura_norm_bias, 5), 0.0, 0);
    CHECK_NEAR(mr_tensor_get(ada.mlp1_bias, 3), 0.0, 0);

    /* The complex weight is normal(0, 0.02): its sample deviation over
     * 1,408 values lies within 10% of 0.02. */
    double sum2 = 0;
    int64_t n = mr_tensor_numel(ada.lft_weight);
    for (int64_t i = 0; i < n; i++) {
        sum2 += (double)ada.lft_weight->data[i] * ada.lft_weight->data[i];
    }
    CHECK_NEAR(sqrt(sum2 / (double)n), 0.02, 0.002);

    /* GRU weights are uniform in +-1/8 for D = 64 and use that range. */
    float low = 1, high = -1;
    for (int64_t i = 0; i < mr_tensor_numel(ada.gru_w_hh); i++) {
        low = fminf(low, ada.gru_w_hh->data[i]);
        high = fmaxf(high, ada.gru_w_hh->data[i]);
    }
    CHECK(low >= -0.125f && low < -0.12f);
    CHECK(high <= 0.125f && high > 0.12f);

    /* Xavier uniform for a [128, 128] weight: bound sqrt(6 / 256). */
    mr_rec_ada_init(&ada, true, &rng);
    high = 0;
    for (int64_t i = 0; i < mr_tensor_numel(ada.mlp1_weight); i++) {
        high = fmaxf(high, fabsf(ada.mlp1_weight->data[i]));
    }
    CHECK(high <= sqrtf(6.0f / 256.0f) && high > 0.95f * sqrtf(6.0f / 256.0f));
    mr_paramset_free(ps);
}

/* ------------------------------------------------------------------------ */

static const char *const lft_names[] = {"lft_weight", "lft_dense_weight", "lft_dense_bias",
                                        "lft_norm_weight", "lft_norm_bias"};
static const char *const cat_names[] = {"cat_norm_weight", "cat_norm_bias"};
static const char *const ura_names[] = {"gru_w_ih",        "gru_w_hh",     "gru_b_ih",
                                        "gru_b_hh",        "mlp1_weight",  "mlp1_bias",
                                        "mlp2_weight",     "mlp2_bias",    "ura_norm_weight",
                                        "ura_norm_bias"};
static const char *const ira_names[] = {"lft_weight",      "lft_dense_weight", "lft_dense_bias",
                                        "lft_norm_weight", "lft_norm_bias",    "cat_norm_weight",
                                        "cat_norm_bias"};

static void lft_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/ada.json");
    const char *cases[] = {"lft_k5", "lft_k6_blocks"};
    for (int c = 0; c < 2; c++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_rec_ada ada;
        load_weights(fixture, ctx, cases[c], lft_names, 5, &ada);
        mr_tensor *x = mr_fixture_tensor(fixture, ctx, cases[c], "x");
        mr_tensor *r = mr_fixture_tensor(fixture, ctx, cases[c], "r");
        if (x == NULL || r == NULL || ada.lft_weight == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        mr_tensor_set_requires_grad(x, true);
        ada.dim = (int)x->shape[x->ndim - 1];
        ada.per_round = (int)x->shape[x->ndim - 2];

        mr_tensor *out = mr_rec_ada_lft(ctx, &ada, x, NULL);
        CHECK_CTX_OK(ctx);
        if (out != NULL) {
            expect_fixture(fixture, ctx, cases[c], "out", out->data, mr_tensor_numel(out), 1e-5,
                           1e-5);
            CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
            expect_fixture(fixture, ctx, cases[c], "grad_x", x->grad, mr_tensor_numel(x), 1e-5,
                           1e-4);
            expect_weight_grads(fixture, ctx, cases[c], &ada);
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

static void cat_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/ada.json");
    mr_ctx *ctx = mr_ctx_create(0);
    mr_rec_ada ada;
    load_weights(fixture, ctx, "cat", cat_names, 2, &ada);
    mr_tensor *emb = mr_fixture_tensor(fixture, ctx, "cat", "item_emb");
    mr_tensor *context = mr_fixture_tensor(fixture, ctx, "cat", "context");
    mr_tensor *r = mr_fixture_tensor(fixture, ctx, "cat", "r");
    if (emb != NULL && context != NULL && r != NULL) {
        mr_tensor_set_requires_grad(emb, true);
        mr_tensor_set_requires_grad(context, true);
        ada.dim = (int)emb->shape[2];

        mr_tensor *out = mr_rec_ada_cat(ctx, &ada, emb, context, NULL);
        CHECK_CTX_OK(ctx);
        if (out != NULL) {
            expect_fixture(fixture, ctx, "cat", "out", out->data, mr_tensor_numel(out), 1e-5,
                           1e-5);

            /* Position 0 is padding (zeros) and still comes out non-zero. */
            CHECK(fabsf(out->data[0]) + fabsf(out->data[1]) > 0.1f);

            CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
            expect_fixture(fixture, ctx, "cat", "grad_item_emb", emb->grad,
                           mr_tensor_numel(emb), 1e-5, 1e-4);
            expect_fixture(fixture, ctx, "cat", "grad_context", context->grad,
                           mr_tensor_numel(context), 1e-5, 1e-4);
            expect_weight_grads(fixture, ctx, "cat", &ada);
        }
    }
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

/*
 * URA after rounds_before rounds: the GRU runs one step per earlier user
 * vector (history[:, j]), then the MLP merges its state with h.
 */
static mr_tensor *ura_after_history(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *h,
                                    mr_tensor *history, mr_rng *rng) {
    mr_tensor *g = NULL;
    for (int64_t j = 0; j < history->shape[1]; j++) {
        mr_tensor *u = mr_tensor_slice(ctx, history, 1, j, 1);
        u = mr_tensor_reshape(ctx, mr_tensor_contiguous(ctx, u), 2,
                              (int64_t[]){history->shape[0], history->shape[2]});
        g = mr_rec_ada_history_step(ctx, ada, g, u);
    }
    return mr_rec_ada_ura(ctx, ada, h, g, rng);
}

static void ura_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/ada.json");
    const char *cases[] = {"ura_after_3", "ura_after_1"};
    for (int c = 0; c < 2; c++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_rec_ada ada;
        load_weights(fixture, ctx, cases[c], ura_names, 10, &ada);
        mr_tensor *h = mr_fixture_tensor(fixture, ctx, cases[c], "h");
        mr_tensor *history = mr_fixture_tensor(fixture, ctx, cases[c], "history");
        mr_tensor *r = mr_fixture_tensor(fixture, ctx, cases[c], "r");
        if (h == NULL || history == NULL || r == NULL) {
            mr_ctx_free(ctx);
            continue;
        }
        mr_tensor_set_requires_grad(h, true);
        mr_tensor_set_requires_grad(history, true);
        ada.dim = (int)h->shape[1];

        mr_tensor *out = ura_after_history(ctx, &ada, h, history, NULL);
        CHECK_CTX_OK(ctx);
        if (out != NULL) {
            expect_fixture(fixture, ctx, cases[c], "out", out->data, mr_tensor_numel(out), 1e-5,
                           1e-5);
            CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
            expect_fixture(fixture, ctx, cases[c], "grad_h", h->grad, mr_tensor_numel(h), 1e-5,
                           1e-4);
            expect_fixture(fixture, ctx, cases[c], "grad_history", history->grad,
                           mr_tensor_numel(history), 1e-5, 1e-4);
            expect_weight_grads(fixture, ctx, cases[c], &ada);
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

static void ira_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/ada.json");
    const char *name = "ira_round_3";
    mr_ctx *ctx = mr_ctx_create(0);
    mr_rec_ada ada;
    load_weights(fixture, ctx, name, ira_names, 7, &ada);
    mr_tensor *table = mr_fixture_tensor(fixture, ctx, name, "table");
    mr_tensor *seq = mr_fixture_tensor_i32(fixture, ctx, name, "seq");
    mr_tensor *picks = mr_fixture_tensor_i32(fixture, ctx, name, "picks");
    mr_tensor *r = mr_fixture_tensor(fixture, ctx, name, "r");
    if (table != NULL && seq != NULL && picks != NULL && r != NULL) {
        mr_tensor_set_requires_grad(table, true);
        ada.dim = (int)table->shape[1];
        ada.per_round = (int)picks->shape[2];

        mr_tensor *emb = mr_tensor_embedding(ctx, table, seq, 0);
        mr_tensor *out = mr_rec_ada_ira(ctx, &ada, table, emb, picks, NULL);
        CHECK_CTX_OK(ctx);
        if (out != NULL) {
            expect_fixture(fixture, ctx, name, "out", out->data, mr_tensor_numel(out), 1e-5,
                           1e-5);
            CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
            expect_fixture(fixture, ctx, name, "grad_table", table->grad,
                           mr_tensor_numel(table), 1e-5, 1e-4);
            expect_weight_grads(fixture, ctx, name, &ada);

            /* Row 0 (padding) gets no gradient although it is looked up. */
            for (int d = 0; d < ada.dim; d++) {
                CHECK_NEAR(table->grad[d], 0.0, 0);
            }
        }
    }
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

/* ------------------------------------------------------------------------
 * Finite differences. Weights get random values (not the initialiser's
 * ones and zeros) so that every path carries a gradient; dropout is off.
 * ------------------------------------------------------------------------ */

/* Creates every weight of a dim x per_round adapter in ctx with uniform
 * values in [-0.5, 0.5) (layer-norm weights around 1), requiring grads. */
static void random_weights(mr_ctx *ctx, int dim, int per_round, mr_rec_ada *ada) {
    mr_paramset *ps = mr_paramset_create();
    mr_error err;
    CHECK_STATUS(mr_rec_ada_declare(ada, dim, per_round, 0.0f, ps, &err), MR_OK);
    CHECK_STATUS(mr_paramset_finalize(ps, &err), MR_OK);
    mr_rec_ada shapes = *ada;
    CHECK_STATUS(mr_rec_ada_bind(&shapes, ps, &err), MR_OK);
    for (int i = 0; i < WEIGHT_FIELDS; i++) {
        mr_tensor *like = *field_slot(&shapes, i);
        mr_tensor *t = mr_tensor_new(ctx, MR_F32, like->ndim, like->shape);
        bool norm_weight = strstr(weight_fields[i].name, "norm_weight") != NULL;
        mr_test_fill_uniform(t, norm_weight ? 0.5f : -0.5f, norm_weight ? 1.5f : 0.5f,
                             (uint64_t)(100 + i));
        mr_tensor_set_requires_grad(t, true);
        *field_slot(ada, i) = t;
    }
    mr_paramset_free(ps);
}

/* The inputs of a gradient check: data tensors first, then the weights
 * named in `names`, in the order of those names. */
typedef struct grad_setup {
    mr_rec_ada ada;
    int n_data;
    const char *const *names;
    int n_names;
} grad_setup;

/* Copies the weights among inputs into setup->ada. */
static void use_inputs(grad_setup *setup, mr_tensor **inputs) {
    for (int n = 0; n < setup->n_names; n++) {
        for (int i = 0; i < WEIGHT_FIELDS; i++) {
            if (strcmp(weight_fields[i].name, setup->names[n]) == 0) {
                *field_slot(&setup->ada, i) = inputs[setup->n_data + n];
            }
        }
    }
}

static mr_tensor *build_lft(mr_ctx *ctx, mr_tensor **inputs, void *user) {
    grad_setup *setup = user;
    use_inputs(setup, inputs);
    return mr_rec_ada_lft(ctx, &setup->ada, inputs[0], NULL);
}

static mr_tensor *build_cat(mr_ctx *ctx, mr_tensor **inputs, void *user) {
    grad_setup *setup = user;
    use_inputs(setup, inputs);
    return mr_rec_ada_cat(ctx, &setup->ada, inputs[0], inputs[1], NULL);
}

static mr_tensor *build_ura(mr_ctx *ctx, mr_tensor **inputs, void *user) {
    grad_setup *setup = user;
    use_inputs(setup, inputs);
    return ura_after_history(ctx, &setup->ada, inputs[0], inputs[1], NULL);
}

/* Sets up a check over data inputs plus the named weights of ada. */
static int collect_inputs(grad_setup *setup, mr_tensor **data, int n_data,
                          const char *const *names, int n_names, mr_tensor **inputs) {
    setup->n_data = n_data;
    setup->names = names;
    setup->n_names = n_names;
    for (int i = 0; i < n_data; i++) {
        inputs[i] = data[i];
    }
    for (int n = 0; n < n_names; n++) {
        for (int i = 0; i < WEIGHT_FIELDS; i++) {
            if (strcmp(weight_fields[i].name, names[n]) == 0) {
                inputs[n_data + n] = *field_slot(&setup->ada, i);
            }
        }
    }
    return n_data + n_names;
}

/* Central differences in float32 with eps 1e-2 on values of order 1:
 * errors of about 1e-3 are rounding and curvature, not wrong gradients. */
static const mr_gradcheck_options fd_options = {1e-2, 2e-3, 2e-2, 0};

static void lft_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    grad_setup setup;
    random_weights(params, 3, 5, &setup.ada);
    mr_tensor *x = mr_tensor_new3d(params, MR_F32, 2, 5, 3);
    mr_test_fill_uniform(x, -1.0f, 1.0f, 1);
    mr_tensor_set_requires_grad(x, true);
    mr_tensor *inputs[8];
    int n = collect_inputs(&setup, &x, 1, lft_names, 5, inputs);
    CHECK_INT_EQ(mr_gradcheck("lft", build_lft, inputs, n, &setup, &fd_options), 0);
    mr_ctx_free(params);
}

static void cat_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    grad_setup setup;
    random_weights(params, 4, 2, &setup.ada);
    mr_tensor *data[2] = {mr_tensor_new3d(params, MR_F32, 2, 3, 4),
                          mr_tensor_new3d(params, MR_F32, 2, 5, 4)};
    mr_test_fill_uniform(data[0], -1.0f, 1.0f, 2);
    mr_test_fill_uniform(data[1], -1.0f, 1.0f, 3);
    for (int i = 0; i < 2; i++) {
        mr_tensor_set_requires_grad(data[i], true);
    }
    mr_tensor *inputs[8];
    int n = collect_inputs(&setup, data, 2, cat_names, 2, inputs);
    CHECK_INT_EQ(mr_gradcheck("cat", build_cat, inputs, n, &setup, &fd_options), 0);
    mr_ctx_free(params);
}

static void ura_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    grad_setup setup;
    random_weights(params, 3, 2, &setup.ada);
    mr_tensor *data[2] = {mr_tensor_new2d(params, MR_F32, 2, 3),
                          mr_tensor_new3d(params, MR_F32, 2, 2, 3)};
    mr_test_fill_uniform(data[0], -1.0f, 1.0f, 4);
    mr_test_fill_uniform(data[1], -1.0f, 1.0f, 5);
    for (int i = 0; i < 2; i++) {
        mr_tensor_set_requires_grad(data[i], true);
    }
    mr_tensor *inputs[16];
    int n = collect_inputs(&setup, data, 2, ura_names, 10, inputs);
    CHECK_INT_EQ(mr_gradcheck("ura", build_ura, inputs, n, &setup, &fd_options), 0);
    mr_ctx_free(params);
}

/* ------------------------------------------------------------------------ */

static void lft_rejects_wrong_block_length(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    grad_setup setup;
    random_weights(ctx, 4, 6, &setup.ada);
    mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 5, 4});
    CHECK(mr_rec_ada_lft(ctx, &setup.ada, x, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "[..., 6, 4]") != NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "[2, 5, 4]") != NULL);
    mr_ctx_free(ctx);
}

static void dropout_follows_training_mode(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    grad_setup setup;
    random_weights(ctx, 4, 2, &setup.ada);
    setup.ada.dropout = 0.5f;
    mr_tensor *h = mr_tensor_new2d(ctx, MR_F32, 8, 4);
    mr_tensor *g = mr_tensor_new2d(ctx, MR_F32, 8, 4);
    mr_test_fill_uniform(h, -1.0f, 1.0f, 6);
    mr_test_fill_uniform(g, -1.0f, 1.0f, 7);
    mr_rng rng;
    mr_rng_init(&rng, 3);

    /* Outside training mode the result does not depend on the stream. */
    mr_ctx_set_training(ctx, false);
    mr_tensor *eval_a = mr_rec_ada_ura(ctx, &setup.ada, h, g, &rng);
    mr_rng_init(&rng, 4);
    mr_tensor *eval_b = mr_rec_ada_ura(ctx, &setup.ada, h, g, &rng);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(eval_a->data, eval_b->data, 32, 0, 0), 0);

    /* In training mode half the MLP output is dropped: the results differ. */
    mr_ctx_set_training(ctx, true);
    mr_tensor *train = mr_rec_ada_ura(ctx, &setup.ada, h, g, &rng);
    CHECK_CTX_OK(ctx);
    int differing = 0;
    for (int i = 0; i < 32; i++) {
        differing += fabsf(train->data[i] - eval_a->data[i]) > 1e-4f;
    }
    CHECK(differing > 8);
    mr_ctx_free(ctx);
}

int main(void) {
    MR_RUN(adapters_have_reference_weight_count);
    MR_RUN(adapters_init_like_reference);
    MR_RUN(lft_matches_torch);
    MR_RUN(cat_matches_torch);
    MR_RUN(ura_matches_torch);
    MR_RUN(ira_matches_torch);
    MR_RUN(lft_gradients);
    MR_RUN(cat_gradients);
    MR_RUN(ura_gradients);
    MR_RUN(lft_rejects_wrong_block_length);
    MR_RUN(dropout_follows_training_mode);
    return mr_test_finish();
}
