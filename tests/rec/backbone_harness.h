/*
 * Helpers for the backbone tests: a backbone with its own parameter set,
 * inputs, PyTorch fixture comparison and a forward+backward timing run.
 * Included by tests/rec/test_<backbone>.c; every helper is static inline so
 * that a test file may use any subset.
 */
#ifndef MR_TEST_BACKBONE_HARNESS_H
#define MR_TEST_BACKBONE_HARNESS_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backbone.h"
#include "fixture.h"
#include "gradcheck.h"
#include "multiround/params.h"
#include "multiround/rec.h"
#include "test.h"

/* A backbone, its weights and its settings. */
typedef struct test_backbone {
    mr_rec_config config;
    const mr_rec_backbone_ops *ops;
    mr_paramset *ps;
    void *state;
} test_backbone;

/* Settings for a small backbone; the caller adjusts what it needs. */
static inline mr_rec_config test_config(mr_rec_backbone_type type, int dim, int max_len,
                                        int layers, int heads, int inner_size) {
    mr_rec_config config;
    memset(&config, 0, sizeof config);
    config.backbone = type;
    config.dim = dim;
    config.max_len = max_len;
    config.layers = layers;
    config.heads = heads;
    config.inner_size = inner_size;
    config.dropout = 0.0f;
    return config;
}

/* Declares, finalises and initialises the backbone from seed. Returns
 * false (with a test failure) when any step fails. */
static inline bool test_backbone_create(test_backbone *tb, const mr_rec_config *config,
                                        uint64_t seed) {
    mr_error err;
    memset(tb, 0, sizeof *tb);
    tb->config = *config;
    tb->ops = mr_rec_backbone_ops_for(config->backbone);
    tb->ps = mr_paramset_create();
    tb->state = tb->ops->declare(config, tb->ps, &err);
    if (tb->state == NULL) {
        mr_test_fail(__FILE__, __LINE__, "declare failed: %s", err.message);
        return false;
    }
    if (mr_paramset_finalize(tb->ps, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "finalize failed: %s", err.message);
        return false;
    }
    mr_rng rng;
    mr_rng_init(&rng, seed);
    tb->ops->init(tb->state, tb->ps, &rng);
    return true;
}

static inline void test_backbone_free(test_backbone *tb) {
    if (tb->ops != NULL && tb->ops->free != NULL) {
        tb->ops->free(tb->state);
    }
    mr_paramset_free(tb->ps);
    memset(tb, 0, sizeof *tb);
}

/* Sets every weight to uniform values in [low, high), so that tests see
 * more than the small initial values. */
static inline void test_backbone_randomize(test_backbone *tb, float low, float high,
                                           uint64_t seed) {
    mr_test_fill_uniform(mr_paramset_flat(tb->ps), low, high, seed);
}

/*
 * Creates ids I32 [B, L] in ctx: row b has items[b] items at its end
 * (ids 1, 2, ...) and padding before them.
 */
static inline mr_tensor *test_left_padded_ids(mr_ctx *ctx, int64_t batch, int64_t length,
                                              const int *items) {
    mr_tensor *seq = mr_tensor_new2d(ctx, MR_I32, batch, length);
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t t = 0; t < length; t++) {
            int64_t first = length - items[b];
            seq->idata[b * length + t] = t >= first ? (int32_t)(1 + (b * 7 + t) % 97) : 0;
        }
    }
    return seq;
}

/* Encodes a whole sequence, as mr_rec_sasrec_encode() does. */
typedef mr_tensor *(*test_encode_fn)(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                     mr_tensor *seq, mr_rng *rng);

/*
 * One user for the tests of which positions reach a backbone's output.
 * Weights are in [-0.5, 0.5), item embeddings [1, L, D] in [-1, 1), and
 * the row ends with `items` ids. The case keeps the full encoding and the
 * user vector, and gradients are off in ctx.
 */
typedef struct test_positions_case {
    test_backbone tb;
    mr_ctx *ctx;
    mr_tensor *item_emb, *seq;
    mr_tensor *encoded; /* [1, L, D] */
    mr_tensor *user;    /* [1, D] */
} test_positions_case;

/*
 * Builds the case and checks that the user vector, which runs the last
 * layer on position L-1 alone, equals the last row of the full encoding.
 * Returns false (with a test failure) when a step fails; the case is then
 * freed.
 */
static inline bool test_positions_case_create(test_positions_case *pc,
                                              const mr_rec_config *config, int items,
                                              test_encode_fn encode) {
    memset(pc, 0, sizeof *pc);
    if (!test_backbone_create(&pc->tb, config, 30)) {
        return false;
    }
    test_backbone_randomize(&pc->tb, -0.5f, 0.5f, 31);
    int64_t length = config->max_len, dim = config->dim;
    pc->ctx = mr_ctx_create(0);
    mr_ctx_set_grad_enabled(pc->ctx, false);
    pc->item_emb = mr_tensor_new3d(pc->ctx, MR_F32, 1, length, dim);
    mr_test_fill_uniform(pc->item_emb, -1, 1, 32);
    pc->seq = test_left_padded_ids(pc->ctx, 1, length, &items);

    pc->encoded = encode(pc->tb.state, pc->ctx, pc->item_emb, pc->seq, NULL);
    pc->user = pc->tb.ops->forward(pc->tb.state, pc->ctx, pc->item_emb, pc->seq, NULL);
    CHECK_CTX_OK(pc->ctx);
    if (pc->encoded == NULL || pc->user == NULL) {
        mr_ctx_free(pc->ctx);
        test_backbone_free(&pc->tb);
        return false;
    }
    CHECK_ARRAY_NEAR(pc->user->data, pc->encoded->data + (length - 1) * dim, dim, 1e-6, 1e-5);
    return true;
}

static inline void test_positions_case_free(test_positions_case *pc) {
    mr_ctx_free(pc->ctx);
    test_backbone_free(&pc->tb);
}

/* Returns the sum of |a - b| over row t of two [1, L, D] encodings. */
static inline double test_row_change(const mr_tensor *a, const mr_tensor *b, int64_t t) {
    int64_t dim = a->shape[2];
    double change = 0.0;
    for (int64_t d = 0; d < dim; d++) {
        change += fabs(a->data[t * dim + d] - b->data[t * dim + d]);
    }
    return change;
}

/*
 * Loads case_name of fixtures/sasrec.json, copies its weights into a
 * backbone by name, and compares the user vectors and the gradients of
 * sum(user * grad_seed) with |a - b| <= atol + rtol |b|.
 */
static inline void test_backbone_matches_torch(mr_rec_backbone_type type, const char *case_name,
                                               double atol, double rtol) {
    mr_fixture *fx = mr_fixture_load("fixtures/sasrec.json");
    if (fx == NULL) {
        return;
    }
    mr_rec_config config = test_config(
        type, (int)mr_fixture_number(fx, case_name, "dim", 0),
        (int)mr_fixture_number(fx, case_name, "max_len", 0),
        (int)mr_fixture_number(fx, case_name, "layers", 0),
        (int)mr_fixture_number(fx, case_name, "heads", 0),
        (int)mr_fixture_number(fx, case_name, "inner_size", 0));
    if (type != MR_REC_SASREC) {
        config.heads = 1;
    }
    test_backbone tb;
    if (!test_backbone_create(&tb, &config, 1)) {
        mr_fixture_free(fx);
        return;
    }

    /* Every declared weight must come from the fixture, with its shape. */
    mr_ctx *ctx = mr_ctx_create(0);
    for (int i = 0; i < mr_paramset_count(tb.ps); i++) {
        mr_tensor *weight = mr_paramset_get(tb.ps, i);
        mr_tensor *value = mr_fixture_tensor(fx, ctx, case_name, weight->name);
        if (value == NULL || !mr_tensor_same_shape(value, weight)) {
            mr_test_fail(__FILE__, __LINE__, "%s: weight %s missing or of another shape",
                         case_name, weight->name);
            continue;
        }
        mr_tensor_copy(weight, value);
    }

    mr_tensor *item_emb = mr_fixture_tensor(fx, ctx, case_name, "item_emb");
    mr_tensor *seq = mr_fixture_tensor_i32(fx, ctx, case_name, "seq");
    mr_tensor *seed = mr_fixture_tensor(fx, ctx, case_name, "grad_seed");
    mr_tensor_set_requires_grad(item_emb, true);
    mr_ctx_set_training(ctx, false);
    mr_rng rng;
    mr_rng_init(&rng, 2);
    mr_paramset_zero_grad(tb.ps);

    mr_tensor *user = tb.ops->forward(tb.state, ctx, item_emb, seq, &rng);
    CHECK_CTX_OK(ctx);
    if (user == NULL || seed == NULL) {
        mr_ctx_free(ctx);
        test_backbone_free(&tb);
        mr_fixture_free(fx);
        return;
    }
    mr_tensor *expected = mr_fixture_tensor(fx, ctx, case_name, "user");
    CHECK_INT_EQ(user->ndim, 2);
    CHECK(mr_tensor_same_shape(user, expected));
    CHECK_INT_EQ(mr_test_compare(__FILE__, __LINE__, "user vectors", user->data, expected->data,
                                 mr_tensor_numel(expected), atol, rtol),
                 0);

    CHECK_STATUS(mr_tensor_backward(ctx, user, seed->data), MR_OK);
    mr_tensor *grad_emb = mr_fixture_tensor(fx, ctx, case_name, "grad_item_emb");
    CHECK_INT_EQ(mr_test_compare(__FILE__, __LINE__, "grad item_emb", item_emb->grad,
                                 grad_emb->data, mr_tensor_numel(grad_emb), atol, rtol),
                 0);
    for (int i = 0; i < mr_paramset_count(tb.ps); i++) {
        mr_tensor *weight = mr_paramset_get(tb.ps, i);
        char name[64];
        snprintf(name, sizeof name, "grad.%s", weight->name);
        mr_tensor *want = mr_fixture_tensor(fx, ctx, case_name, name);
        if (want == NULL) {
            continue;
        }
        char label[96];
        snprintf(label, sizeof label, "%s %s", case_name, name);
        CHECK_INT_EQ(mr_test_compare(__FILE__, __LINE__, label, weight->grad, want->data,
                                     mr_tensor_numel(want), atol, rtol),
                     0);
    }
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
    mr_fixture_free(fx);
}

/* Forward with mis-shaped inputs stores a shape error naming the
 * expected shape. config must have D 8 and L 6. */
static inline void test_backbone_rejects_bad_inputs(const mr_rec_config *config) {
    test_backbone tb;
    if (!test_backbone_create(&tb, config, 8)) {
        return;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *wrong_length = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 5, 8});
    mr_tensor *seq = test_left_padded_ids(ctx, 2, 6, (const int[]){1, 1});
    CHECK(tb.ops->forward(tb.state, ctx, wrong_length, seq, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "[B, 6, 8]") != NULL);

    mr_ctx_reset(ctx);
    mr_tensor *item_emb = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){2, 6, 8});
    mr_tensor *short_seq = test_left_padded_ids(ctx, 1, 6, (const int[]){1});
    CHECK(tb.ops->forward(tb.state, ctx, item_emb, short_seq, NULL) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "int32 [2, 6]") != NULL);
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
}

/* What the gradient checks build: the user vectors of inputs[0]. */
typedef struct test_gradient_build {
    test_backbone *tb;
    mr_tensor *seq;
    mr_rng rng; /* copied per build, so dropout masks repeat */
} test_gradient_build;

static inline mr_tensor *test_build_user(mr_ctx *ctx, mr_tensor **inputs, void *user) {
    test_gradient_build *c = user;
    mr_rng rng = c->rng;
    return c->tb->ops->forward(c->tb->state, ctx, inputs[0], c->seq, &rng);
}

/*
 * Checks by finite differences the gradients of the user vectors of a
 * batch of 3 inputs (L items, 2 items, none) with respect to the item
 * embeddings and the named weights, up to 8 elements of each. Weights are
 * uniform in [-0.6, 0.6) so that every path carries a visible gradient.
 */
static inline void test_backbone_gradients(const mr_rec_config *config, const char *const *names,
                                           int n_names, uint64_t seed) {
    test_backbone tb;
    if (!test_backbone_create(&tb, config, seed)) {
        return;
    }
    test_backbone_randomize(&tb, -0.6f, 0.6f, seed + 1);
    int64_t length = config->max_len, dim = config->dim;

    mr_ctx *inputs = mr_ctx_create(0);
    mr_tensor *item_emb = mr_tensor_new3d(inputs, MR_F32, 3, length, dim);
    mr_test_fill_uniform(item_emb, -1, 1, seed + 2);
    mr_tensor_set_requires_grad(item_emb, true);
    test_gradient_build build = {
        &tb, test_left_padded_ids(inputs, 3, length, (const int[]){(int)length, 2, 0}), {0, 0}};
    mr_rng_init(&build.rng, seed + 3);

    mr_tensor **checked = calloc((size_t)(1 + n_names), sizeof *checked);
    checked[0] = item_emb;
    for (int i = 0; i < n_names; i++) {
        checked[1 + i] = mr_paramset_find(tb.ps, names[i]);
        if (checked[1 + i] == NULL) {
            mr_test_fail(__FILE__, __LINE__, "no weight named %s", names[i]);
            checked[1 + i] = item_emb;
        }
    }
    mr_gradcheck_options options = {1e-3, 2e-3, 2e-2, 8};
    char label[64];
    snprintf(label, sizeof label, "%s, dropout %g", mr_rec_backbone_name(config->backbone),
             (double)config->dropout);
    CHECK_INT_EQ(mr_gradcheck(label, test_build_user, checked, 1 + n_names, &build, &options), 0);
    free(checked);
    mr_ctx_free(inputs);
    test_backbone_free(&tb);
}

/*
 * Dropout: in training mode the same rng state gives the same output and
 * another state a different one. In evaluation mode the rng state makes
 * no difference. config must have D 8 and L 6 and a dropout above 0.
 */
static inline void test_backbone_dropout(const mr_rec_config *config) {
    test_backbone tb;
    if (!test_backbone_create(&tb, config, 50)) {
        return;
    }
    test_backbone_randomize(&tb, -0.5f, 0.5f, 51);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *item_emb = mr_tensor_new3d(ctx, MR_F32, 2, 6, 8);
    mr_test_fill_uniform(item_emb, -1, 1, 52);
    mr_tensor *seq = test_left_padded_ids(ctx, 2, 6, (const int[]){6, 3});
    mr_rng rng_a, rng_b, rng_c;
    mr_rng_init(&rng_a, 53);
    rng_b = rng_a;
    mr_rng_init(&rng_c, 54);

    mr_tensor *a = tb.ops->forward(tb.state, ctx, item_emb, seq, &rng_a);
    mr_tensor *b = tb.ops->forward(tb.state, ctx, item_emb, seq, &rng_b);
    mr_tensor *c = tb.ops->forward(tb.state, ctx, item_emb, seq, &rng_c);
    mr_ctx_set_training(ctx, false);
    mr_tensor *eval_a = tb.ops->forward(tb.state, ctx, item_emb, seq, &rng_a);
    mr_tensor *eval_c = tb.ops->forward(tb.state, ctx, item_emb, seq, &rng_c);
    CHECK_CTX_OK(ctx);
    if (a != NULL && b != NULL && c != NULL && eval_a != NULL && eval_c != NULL) {
        CHECK_ARRAY_NEAR(b->data, a->data, 16, 0, 0);
        CHECK_ARRAY_NEAR(eval_c->data, eval_a->data, 16, 0, 0);
        double differs = 0.0, differs_eval = 0.0;
        for (int i = 0; i < 16; i++) {
            differs += fabs(c->data[i] - a->data[i]);
            differs_eval += fabs(eval_a->data[i] - a->data[i]);
        }
        CHECK(differs > 1e-2);
        CHECK(differs_eval > 1e-2);
    }
    mr_ctx_free(ctx);
    test_backbone_free(&tb);
}

/* Seconds on the given clock (CLOCK_MONOTONIC or CLOCK_PROCESS_CPUTIME_ID). */
static inline double test_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * Times forward + backward of sum(user vectors) in training mode for a
 * batch of B inputs with 1 to L items each, taking the fastest of
 * `repeats` steps after one warm-up step, and prints its wall-clock and
 * process CPU time. Checks that the user vectors are finite and that the
 * weights receive a non-zero gradient.
 */
static inline void test_backbone_report_step(const char *label, test_backbone *tb,
                                             int64_t batch, int repeats) {
    int64_t length = tb->config.max_len, dim = tb->config.dim;
    mr_ctx *inputs = mr_ctx_create(0);
    mr_tensor *item_emb = mr_tensor_new3d(inputs, MR_F32, batch, length, dim);
    mr_test_fill_uniform(item_emb, -0.1f, 0.1f, 77);
    int *items = malloc((size_t)batch * sizeof *items);
    for (int64_t b = 0; b < batch; b++) {
        items[b] = 1 + (int)((b * 13) % length);
    }
    mr_tensor *seq = test_left_padded_ids(inputs, batch, length, items);
    free(items);
    mr_tensor_set_requires_grad(item_emb, true);

    mr_ctx *ctx = mr_ctx_create(0);
    mr_rng rng;
    mr_rng_init(&rng, 5);
    double best_wall = 1e30, best_cpu = 1e30;
    for (int r = 0; r <= repeats; r++) {
        mr_ctx_reset(ctx);
        mr_paramset_zero_grad(tb->ps);
        double wall = test_seconds(CLOCK_MONOTONIC);
        double cpu = test_seconds(CLOCK_PROCESS_CPUTIME_ID);
        mr_tensor *user = tb->ops->forward(tb->state, ctx, item_emb, seq, &rng);
        mr_tensor *loss = mr_tensor_sum(ctx, user, MR_AXIS_ALL, false);
        mr_tensor_backward(ctx, loss, NULL);
        wall = test_seconds(CLOCK_MONOTONIC) - wall;
        cpu = test_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu;
        CHECK_CTX_OK(ctx);
        if (user == NULL) {
            break;
        }
        if (r > 0) {
            best_wall = wall < best_wall ? wall : best_wall;
            best_cpu = cpu < best_cpu ? cpu : best_cpu;
        }
        bool finite = true;
        for (int64_t i = 0; i < mr_tensor_numel(user); i++) {
            finite = finite && isfinite(user->data[i]);
        }
        CHECK(finite);
    }

    mr_tensor *grads = mr_paramset_flat(tb->ps);
    double norm = 0.0;
    for (int64_t i = 0; i < mr_tensor_numel(grads); i++) {
        norm += (double)grads->grad[i] * grads->grad[i];
    }
    CHECK(norm > 0.0);
    CHECK(isfinite(norm));
    printf("%s forward+backward, B %lld: %.1f ms wall, %.1f ms CPU\n", label, (long long)batch,
           best_wall * 1000.0, best_cpu * 1000.0);
    mr_ctx_free(ctx);
    mr_ctx_free(inputs);
}

/* True when the environment requests the full-size timing run
 * (MR_REC_BENCH=1). */
static inline bool test_bench_requested(void) {
    const char *value = getenv("MR_REC_BENCH");
    return value != NULL && strcmp(value, "1") == 0;
}

#endif /* MR_TEST_BACKBONE_HARNESS_H */
