/*
 * GPT model tests: parameter layout and count, the initial loss, training
 * with AdamW, determinism for a seed, greedy generation, input errors, and
 * the loss and every gradient of one step against the PyTorch model in
 * tests/fixtures/torch_gpt.py.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "multiround/nn.h"
#include "multiround/optim.h"
#include "test.h"

/* The fixture's model: V=32, T=8, L=2, H=2, C=16. */
static const mr_gpt_config tiny_config = {
    .vocab_size = 32, .context = 8, .layers = 2, .heads = 2, .channels = 16, .dropout = 0.0f};

/* A fixed batch of pseudo-random tokens [B, T] and next-token targets. */
static void fill_batch(int32_t *tokens, int32_t *targets, int batch, int length,
                       int vocab, uint64_t seed) {
    mr_rng rng;
    mr_rng_init(&rng, seed);
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t <= length; t++) {
            int32_t id = (int32_t)mr_rng_below(&rng, (uint64_t)vocab);
            if (t < length) {
                tokens[b * length + t] = id;
            }
            if (t > 0) {
                targets[b * length + t - 1] = id;
            }
        }
    }
}

/* Creates an AdamW optimizer over the model: decay 0.01 on matrices. */
static mr_optim *make_adamw(mr_gpt *gpt) {
    mr_error err = {0};
    mr_optim_config config = mr_optim_config_default(MR_OPTIM_ADAMW);
    mr_optim *opt = mr_optim_create(&config, &err);
    mr_tensor **views;
    int count;
    mr_gpt_params(gpt, &views, &count);
    mr_tensor **group = malloc((size_t)count * sizeof *group);
    int n = mr_gpt_params_by_decay(gpt, true, group);
    CHECK_STATUS(mr_optim_add_group(opt, group, n, 0.01f, 1.0f, &err), MR_OK);
    n = mr_gpt_params_by_decay(gpt, false, group);
    CHECK_STATUS(mr_optim_add_group(opt, group, n, 0.0f, 1.0f, &err), MR_OK);
    free(group);
    return opt;
}

/* Runs one forward, backward and AdamW step on the batch and returns the
 * loss before the update (NAN on an error). */
static float train_step(mr_gpt *gpt, mr_optim *opt, mr_ctx *ctx, const int32_t *tokens,
                        const int32_t *targets, int batch, int length, float lr) {
    mr_ctx_reset(ctx);
    int64_t shape[2] = {batch, length};
    mr_tensor *loss = mr_gpt_forward(gpt, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens),
                                     mr_tensor_from_i32(ctx, 2, shape, targets));
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    CHECK_CTX_OK(ctx);
    if (loss == NULL) {
        return NAN;
    }
    mr_error err = {0};
    CHECK_STATUS(mr_optim_step(opt, lr, &err), MR_OK);
    mr_optim_zero_grad(opt);
    return loss->data[0];
}

/* ------------------------------------------------------------------------ */

static void gpt_param_count_by_hand(void) {
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&tiny_config, 1, &err);
    CHECK(gpt != NULL);

    /* wte 32*16 + wpe 8*16 + per block (ln 2*16 + qkv 48*16 + 48 + proj
     * 16*16 + 16 + ln 2*16 + fc 64*16 + 64 + proj 16*64 + 16) + ln_f 2*16. */
    int64_t block = 32 + 768 + 48 + 256 + 16 + 32 + 1024 + 64 + 1024 + 16;
    CHECK_INT_EQ(block, 12 * 16 * 16 + 13 * 16);
    CHECK_INT_EQ(mr_gpt_param_count(gpt), 512 + 128 + 2 * block + 32);
    CHECK_INT_EQ(mr_gpt_param_count(gpt), 7232);

    /* 28 views, back to back in the one flat buffer. */
    mr_tensor **views;
    int count;
    mr_gpt_params(gpt, &views, &count);
    CHECK_INT_EQ(count, 2 + 2 * 12 + 2);
    mr_tensor *flat = mr_gpt_flat_params(gpt);
    int64_t offset = 0;
    for (int i = 0; i < count; i++) {
        CHECK(views[i]->data == flat->data + offset);
        CHECK(views[i]->grad == flat->grad + offset);
        CHECK(mr_tensor_is_contiguous(views[i]));
        CHECK(views[i]->flags & MR_FLAG_PARAM);
        offset += mr_tensor_numel(views[i]);
    }
    CHECK_INT_EQ(offset, 7232);
    CHECK(strcmp(views[0]->name, "wte") == 0);
    CHECK(strcmp(views[4]->name, "h.0.attn.c_attn.weight") == 0);
    CHECK_INT_EQ(views[4]->shape[0], 48);
    CHECK_INT_EQ(views[4]->shape[1], 16);
    CHECK(strcmp(views[count - 1]->name, "ln_f.bias") == 0);

    /* Decay goes to the 2 embeddings and the 4 matrices of each block. */
    mr_tensor *group[28];
    CHECK_INT_EQ(mr_gpt_params_by_decay(gpt, true, group), 2 + 2 * 4);
    CHECK_INT_EQ(mr_gpt_params_by_decay(gpt, false, group), 2 * 8 + 2);
    mr_gpt_free(gpt);
}

static void gpt_init_follows_gpt2(void) {
    mr_gpt_config config = {.vocab_size = 256, .context = 64, .layers = 4, .heads = 4,
                            .channels = 64, .dropout = 0.0f};
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&config, 7, &err);
    mr_tensor **views;
    int count;
    mr_gpt_params(gpt, &views, &count);

    /* Sample std of wte (16384 draws) and of c_proj (std 0.02/sqrt(8)). */
    for (int which = 0; which < 2; which++) {
        mr_tensor *t = which == 0 ? views[0] : views[2 + 4];
        double expected = which == 0 ? 0.02 : 0.02 / sqrt(8.0);
        CHECK(strcmp(t->name, which == 0 ? "wte" : "h.0.attn.c_proj.weight") == 0);
        double sum = 0, sum_sq = 0;
        int64_t n = mr_tensor_numel(t);
        for (int64_t i = 0; i < n; i++) {
            sum += t->data[i];
            sum_sq += (double)t->data[i] * t->data[i];
        }
        double mean = sum / (double)n;
        double std = sqrt(sum_sq / (double)n - mean * mean);
        CHECK_NEAR(mean, 0.0, 4.0 * expected / sqrt((double)n));
        CHECK_NEAR(std, expected, 0.05 * expected);
    }

    /* LayerNorm weights start at 1 and biases at 0. */
    CHECK(strcmp(views[2]->name, "h.0.ln_1.weight") == 0);
    CHECK_NEAR(views[2]->data[0], 1.0, 0);
    CHECK_NEAR(views[2]->data[63], 1.0, 0);
    CHECK(strcmp(views[5]->name, "h.0.attn.c_attn.bias") == 0);
    CHECK_NEAR(views[5]->data[100], 0.0, 0);
    mr_gpt_free(gpt);
}

static void gpt_init_loss_near_log_vocab(void) {
    mr_gpt_config config = {.vocab_size = 64, .context = 16, .layers = 2, .heads = 2,
                            .channels = 32, .dropout = 0.0f};
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&config, 3, &err);
    mr_ctx *ctx = mr_ctx_create(0);
    int32_t tokens[4 * 16], targets[4 * 16];
    fill_batch(tokens, targets, 4, 16, 64, 11);
    int64_t shape[2] = {4, 16};
    mr_tensor *loss = mr_gpt_forward(gpt, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens),
                                     mr_tensor_from_i32(ctx, 2, shape, targets));
    CHECK_CTX_OK(ctx);

    /* Logits have std about 0.02 sqrt(C) = 0.11, so the loss exceeds
     * ln(64) = 4.159 by about half their variance, 0.006. */
    CHECK(loss != NULL);
    if (loss != NULL) {
        CHECK_INT_EQ(loss->ndim, 0);
        CHECK_NEAR(loss->data[0], log(64.0), 0.03);
    }
    mr_ctx_free(ctx);
    mr_gpt_free(gpt);
}

static void gpt_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/gpt.json");
    mr_ctx *data = mr_ctx_create(0);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&tiny_config, 1, &err);
    CHECK_INT_EQ(mr_fixture_number(fixture, "tiny", "channels", 0), tiny_config.channels);
    CHECK_INT_EQ(mr_fixture_number(fixture, "tiny", "vocab_size", 0), tiny_config.vocab_size);

    /* Load PyTorch's weights into the views by name. */
    mr_tensor **views;
    int count;
    mr_gpt_params(gpt, &views, &count);
    for (int i = 0; i < count; i++) {
        mr_tensor *weights = mr_fixture_tensor(fixture, data, "tiny", views[i]->name);
        CHECK(weights != NULL);
        CHECK(weights == NULL || mr_tensor_same_shape(weights, views[i]));
        if (weights != NULL && mr_tensor_same_shape(weights, views[i])) {
            mr_tensor_copy(views[i], weights);
        }
    }

    mr_tensor *tokens = mr_fixture_tensor_i32(fixture, data, "tiny", "tokens");
    mr_tensor *targets = mr_fixture_tensor_i32(fixture, data, "tiny", "targets");
    mr_tensor *expected_loss = mr_fixture_tensor(fixture, data, "tiny", "loss");
    mr_tensor *loss = mr_gpt_forward(gpt, ctx, tokens, targets);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    CHECK_CTX_OK(ctx);

    /* Float32 sums in another order than PyTorch's differ by a few units
     * in the last place per operation. Over about 20 operations on values
     * of order 1 that stays far below 1e-5. */
    if (loss != NULL && expected_loss != NULL) {
        CHECK_NEAR(loss->data[0], expected_loss->data[0], 1e-5);
    }

    /* Every gradient. They reach 0.58 in magnitude, and the largest
     * difference from PyTorch measured was 6e-7 (summation order again).
     * 4e-6 + 1e-4 relative leaves room for other BLAS kernels and thread
     * counts, and is far below the error of any wrong formula. */
    for (int i = 0; i < count; i++) {
        char name[64];
        snprintf(name, sizeof name, "grad.%s", views[i]->name);
        mr_tensor *expected = mr_fixture_tensor(fixture, data, "tiny", name);
        if (expected == NULL || views[i]->grad == NULL) {
            CHECK(expected != NULL);
            CHECK(views[i]->grad != NULL);
            continue;
        }
        if (CHECK_ARRAY_NEAR(views[i]->grad, expected->data, mr_tensor_numel(views[i]), 4e-6,
                             1e-4) > 0) {
            mr_test_fail(__FILE__, __LINE__, "gradient of %s differs from PyTorch",
                         views[i]->name);
        }
    }
    mr_gpt_free(gpt);
    mr_ctx_free(ctx);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

static void gpt_adamw_lowers_loss(void) {
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&tiny_config, 5, &err);
    mr_optim *opt = make_adamw(gpt);
    mr_ctx *ctx = mr_ctx_create(0);
    int32_t tokens[4 * 8], targets[4 * 8];
    fill_batch(tokens, targets, 4, 8, 32, 21);

    /* Ten steps on one batch: the model memorises it. */
    float losses[11];
    for (int step = 0; step < 11; step++) {
        losses[step] = train_step(gpt, opt, ctx, tokens, targets, 4, 8, 1e-2f);
    }
    CHECK_NEAR(losses[0], log(32.0), 0.03);
    for (int step = 1; step < 11; step++) {
        CHECK(losses[step] < losses[step - 1]);
    }
    CHECK(losses[10] < 0.7f * losses[0]);
    mr_ctx_free(ctx);
    mr_optim_free(opt);
    mr_gpt_free(gpt);
}

/* After the first step the step context's arena has grown to fit, so
 * later steps of the same shape ask the system for no memory. */
static void gpt_steps_allocate_nothing(void) {
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&tiny_config, 6, &err);
    mr_optim *opt = make_adamw(gpt);
    mr_ctx *ctx = mr_ctx_create(4096);
    int32_t tokens[4 * 8], targets[4 * 8];
    fill_batch(tokens, targets, 4, 8, 32, 22);

    train_step(gpt, opt, ctx, tokens, targets, 4, 8, 1e-3f);
    train_step(gpt, opt, ctx, tokens, targets, 4, 8, 1e-3f);
    uint64_t after_warm_up = mr_ctx_system_allocations(ctx);
    for (int step = 0; step < 5; step++) {
        train_step(gpt, opt, ctx, tokens, targets, 4, 8, 1e-3f);
    }
    CHECK_INT_EQ(mr_ctx_system_allocations(ctx), after_warm_up);
    mr_ctx_free(ctx);
    mr_optim_free(opt);
    mr_gpt_free(gpt);
}

/* Trains a fresh model with dropout for three steps; copies the losses
 * and the final weights out. */
static void seeded_run(uint64_t seed, float *losses, float *weights) {
    mr_gpt_config config = tiny_config;
    config.dropout = 0.1f;
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&config, seed, &err);
    mr_optim *opt = make_adamw(gpt);
    mr_ctx *ctx = mr_ctx_create(0);
    int32_t tokens[4 * 8], targets[4 * 8];
    fill_batch(tokens, targets, 4, 8, 32, 21);
    for (int step = 0; step < 3; step++) {
        losses[step] = train_step(gpt, opt, ctx, tokens, targets, 4, 8, 1e-2f);
    }
    mr_tensor *flat = mr_gpt_flat_params(gpt);
    memcpy(weights, flat->data, (size_t)mr_tensor_numel(flat) * sizeof(float));
    mr_ctx_free(ctx);
    mr_optim_free(opt);
    mr_gpt_free(gpt);
}

static void gpt_seeded_runs_identical(void) {
    float losses_a[3], losses_b[3], losses_c[3];
    float *weights_a = malloc(7232 * sizeof(float));
    float *weights_b = malloc(7232 * sizeof(float));
    float *weights_c = malloc(7232 * sizeof(float));
    seeded_run(42, losses_a, weights_a);
    seeded_run(42, losses_b, weights_b);
    seeded_run(43, losses_c, weights_c);

    /* Bit-identical for the same seed, including the dropout masks. */
    CHECK(memcmp(losses_a, losses_b, sizeof losses_a) == 0);
    CHECK(memcmp(weights_a, weights_b, 7232 * sizeof(float)) == 0);

    /* A different seed changes both. */
    CHECK(losses_a[0] != losses_c[0]);
    CHECK(memcmp(weights_a, weights_c, 7232 * sizeof(float)) != 0);
    free(weights_a);
    free(weights_b);
    free(weights_c);
}

static void gpt_dropout_changes_training_loss(void) {
    mr_gpt_config config = tiny_config;
    config.dropout = 0.5f;
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&config, 9, &err);
    mr_ctx *ctx = mr_ctx_create(0);
    int32_t tokens[2 * 8], targets[2 * 8];
    fill_batch(tokens, targets, 2, 8, 32, 4);
    int64_t shape[2] = {2, 8};
    float values[4];

    /* Two training-mode passes draw different masks; evaluation mode is
     * deterministic. */
    for (int pass = 0; pass < 4; pass++) {
        mr_ctx_reset(ctx);
        mr_ctx_set_training(ctx, pass < 2);
        mr_tensor *loss = mr_gpt_forward(gpt, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens),
                                         mr_tensor_from_i32(ctx, 2, shape, targets));
        CHECK_CTX_OK(ctx);
        values[pass] = loss != NULL ? loss->data[0] : NAN;
    }
    CHECK(values[0] != values[1]);
    CHECK(values[2] == values[3]);
    mr_ctx_free(ctx);
    mr_gpt_free(gpt);
}

static void gpt_generate_continues_pattern(void) {
    /* The sequence 0 1 2 ... 7 0 1 2 ... repeats; after training, greedy
     * decoding from "3 4" must continue it. */
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&tiny_config, 8, &err);
    mr_optim *opt = make_adamw(gpt);
    mr_ctx *ctx = mr_ctx_create(0);
    int32_t tokens[8 * 8], targets[8 * 8];
    for (int b = 0; b < 8; b++) {
        for (int t = 0; t < 8; t++) {
            tokens[b * 8 + t] = (b + t) % 8;
            targets[b * 8 + t] = (b + t + 1) % 8;
        }
    }
    float loss = 0;
    for (int step = 0; step < 60; step++) {
        loss = train_step(gpt, opt, ctx, tokens, targets, 8, 8, 1e-2f);
    }
    CHECK(loss < 0.05f);

    int32_t ids[2 + 12] = {3, 4};
    CHECK_STATUS(mr_gpt_generate_greedy(gpt, ctx, ids, 2, 12, &err), MR_OK);
    for (int i = 0; i < 14; i++) {
        CHECK_INT_EQ(ids[i], (3 + i) % 8);
    }
    /* Gradient recording and training mode are restored. */
    CHECK(mr_ctx_grad_enabled(ctx));
    CHECK(mr_ctx_training(ctx));
    CHECK_STATUS(mr_gpt_generate_greedy(gpt, ctx, ids, 0, 1, &err), MR_ERR_INVALID_ARGUMENT);
    mr_ctx_free(ctx);
    mr_optim_free(opt);
    mr_gpt_free(gpt);
}

static void gpt_rejects_bad_input(void) {
    mr_error err = {0};
    mr_gpt_config config = tiny_config;
    config.heads = 3;
    CHECK(mr_gpt_create(&config, 1, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "multiple of heads") != NULL);
    config = tiny_config;
    config.dropout = 1.0f;
    CHECK(mr_gpt_create(&config, 1, &err) == NULL);
    CHECK(strstr(err.message, "dropout") != NULL);

    mr_gpt *gpt = mr_gpt_create(&tiny_config, 1, &err);
    mr_ctx *ctx = mr_ctx_create(0);

    /* Longer than the context of 8. */
    int32_t ids[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    int64_t long_shape[2] = {1, 9};
    CHECK(mr_gpt_logits(gpt, ctx, mr_tensor_from_i32(ctx, 2, long_shape, ids)) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "[1, 9]") != NULL);

    /* An id outside the vocabulary of 32. */
    mr_ctx_reset(ctx);
    int32_t bad[2] = {5, 32};
    int64_t shape[2] = {1, 2};
    CHECK(mr_gpt_logits(gpt, ctx, mr_tensor_from_i32(ctx, 2, shape, bad)) == NULL);
    CHECK(mr_ctx_status(ctx) != MR_OK);

    /* Targets of another shape. */
    mr_ctx_reset(ctx);
    int64_t target_shape[2] = {2, 1};
    CHECK(mr_gpt_forward(gpt, ctx, mr_tensor_from_i32(ctx, 2, shape, ids),
                         mr_tensor_from_i32(ctx, 2, target_shape, ids)) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    mr_ctx_free(ctx);
    mr_gpt_free(gpt);
}

int main(void) {
    mr_threads_set(2);
    MR_RUN(gpt_param_count_by_hand);
    MR_RUN(gpt_init_follows_gpt2);
    MR_RUN(gpt_init_loss_near_log_vocab);
    MR_RUN(gpt_matches_torch);
    MR_RUN(gpt_adamw_lowers_loss);
    MR_RUN(gpt_steps_allocate_nothing);
    MR_RUN(gpt_seeded_runs_identical);
    MR_RUN(gpt_dropout_changes_training_loss);
    MR_RUN(gpt_generate_continues_pattern);
    MR_RUN(gpt_rejects_bad_input);
    return mr_test_finish();
}
