/*
 * Helpers for the backbone tests: a backbone with its own parameter set,
 * inputs, PyTorch fixture comparison and a forward+backward timing run.
 * Included by tests/rec/test_<backbone>.c; every helper is static inline so
 * that a test file may use any subset.
 */
#ifndef MR_TEST_BACKBONE_HARNESS_H
#define MR_TEST_BACKBONE_HARNESS_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backbone.h"
#include "fixture.h"
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

/* Wall-clock seconds from a monotonic clock. */
static inline double test_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * Times forward + backward of sum(user vectors) in training mode for a
 * batch of B inputs with 1 to L items each, taking the best of `repeats`
 * steps after one warm-up step. Checks that the user vectors are finite
 * and that the weights receive a non-zero gradient. Returns the best
 * step time in milliseconds.
 */
static inline double test_backbone_step_ms(test_backbone *tb, int64_t batch, int repeats) {
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
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) {
        mr_ctx_reset(ctx);
        mr_paramset_zero_grad(tb->ps);
        double start = test_seconds();
        mr_tensor *user = tb->ops->forward(tb->state, ctx, item_emb, seq, &rng);
        mr_tensor *loss = mr_tensor_sum(ctx, user, MR_AXIS_ALL, false);
        mr_tensor_backward(ctx, loss, NULL);
        double elapsed = test_seconds() - start;
        CHECK_CTX_OK(ctx);
        if (user == NULL) {
            break;
        }
        if (r > 0 && elapsed < best) {
            best = elapsed;
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
    CHECK(norm > 0.0 && isfinite(norm));
    mr_ctx_free(ctx);
    mr_ctx_free(inputs);
    return best * 1000.0;
}

/* True when the environment asks for the full-size timing run
 * (MR_REC_BENCH=1). */
static inline bool test_bench_requested(void) {
    const char *value = getenv("MR_REC_BENCH");
    return value != NULL && strcmp(value, "1") == 0;
}

#endif /* MR_TEST_BACKBONE_HARNESS_H */
