/*
 * Tests of the reinforcement-learning parts: group advantages, GAE, KL
 * estimators and whitening on hand-made numbers; the policy and value
 * losses and their gradients against PyTorch (tests/fixtures/rl.json);
 * masking of inserted tokens; rollouts with a scripted environment; and
 * seeded GRPO and PPO runs that repeat bit for bit. The last cases check
 * that GRPO's filter drops the groups whose rewards are all equal.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "multiround/env.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/rl.h"
#include "multiround/runlog.h"
#include "multiround/tokenizer.h"
#include "test.h"

#define STORIES "data/lm/stories260K.gguf"

/* Float32 results against PyTorch's float32: the sums differ only in
 * rounding order, a few units in the last place of values near 1. */
#define TORCH_ATOL 2e-6
#define TORCH_RTOL 1e-5

/* ------------------------------------------------------------------------
 * Hand-made numbers
 * ------------------------------------------------------------------------ */

static void grpo_advantages_scaled(void) {
    /* Mean 0.5 and unbiased std sqrt(1/3) give +-0.5 * sqrt(3). */
    float rewards[8] = {1, 0, 0, 1, 2, 2, 2, 2};
    float adv[8];
    mr_error err;
    CHECK_STATUS(mr_grpo_advantages(rewards, 2, 4, true, 0.0f, adv, &err), MR_OK);
    float s = 0.5f * sqrtf(3.0f);
    CHECK_NEAR(adv[0], s, 1e-6);
    CHECK_NEAR(adv[1], -s, 1e-6);
    CHECK_NEAR(adv[2], -s, 1e-6);
    CHECK_NEAR(adv[3], s, 1e-6);
    /* A group with equal rewards has std 0 and every advantage 0. */
    for (int i = 4; i < 8; i++) {
        CHECK(adv[i] == 0.0f);
    }
}

static void grpo_advantages_unscaled(void) {
    float rewards[3] = {1, 0.5f, 0};
    float adv[3];
    mr_error err;
    CHECK_STATUS(mr_grpo_advantages(rewards, 1, 3, false, 0.0f, adv, &err), MR_OK);
    CHECK(adv[0] == 0.5f);
    CHECK(adv[1] == 0.0f);
    CHECK(adv[2] == -0.5f);
}

static void grpo_advantages_eps(void) {
    /* Rewards 0 and 2: mean 1, unbiased std sqrt(2), plus eps 0.5. */
    float rewards[2] = {0, 2};
    float adv[2];
    mr_error err;
    CHECK_STATUS(mr_grpo_advantages(rewards, 1, 2, true, 0.5f, adv, &err), MR_OK);
    CHECK_NEAR(adv[0], -1.0 / (sqrt(2.0) + 0.5), 1e-6);
    CHECK_NEAR(adv[1], 1.0 / (sqrt(2.0) + 0.5), 1e-6);
}

static void grpo_advantages_single(void) {
    float rewards[2] = {1, 0};
    float adv[2] = {9, 9};
    mr_error err;
    CHECK_STATUS(mr_grpo_advantages(rewards, 2, 1, true, 1e-4f, adv, &err), MR_OK);
    CHECK(adv[0] == 0.0f);
    CHECK(adv[1] == 0.0f);
}

static void grpo_advantages_rejects(void) {
    float rewards[2] = {1, NAN};
    float adv[2];
    mr_error err;
    CHECK_STATUS(mr_grpo_advantages(rewards, 1, 2, true, 1e-4f, adv, &err), MR_ERR_NUMERIC);
    CHECK(strstr(err.message, "reward 1") != NULL);
    CHECK_STATUS(mr_grpo_advantages(rewards, 0, 2, true, 1e-4f, adv, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_grpo_advantages(rewards, 1, 2, true, -1.0f, adv, &err),
                 MR_ERR_INVALID_ARGUMENT);
}

static void gae_skips_inserted(void) {
    /* Policy tokens at 1, 2 and 5; 0, 3 and 4 are prompt and inserted
     * tokens with values and rewards that must not leak in. gamma 0.5,
     * lambda 0.5, all numbers dyadic so the results are exact:
     *   t5: delta = 1 + 0 - 1 = 0,                A = 0,        R = 1
     *   t2: delta = -0.125 + 0.5 * 1 - 0.25 = 0.125, A = 0.125,  R = 0.375
     *   t1: delta = 0 + 0.5 * 0.25 - 0.5 = -0.375,
     *       A = -0.375 + 0.25 * 0.125 = -0.34375,            R = 0.15625 */
    float rewards[6] = {9, 0, -0.125f, 9, 9, 1};
    float values[6] = {9, 0.5f, 0.25f, 9, 9, 1};
    uint8_t mask[6] = {0, 1, 1, 0, 0, 1};
    float adv[6], ret[6];
    mr_ppo_gae(rewards, values, mask, 6, 0.5f, 0.5f, adv, ret);
    float want_adv[6] = {0, -0.34375f, 0.125f, 0, 0, 0};
    float want_ret[6] = {0, 0.15625f, 0.375f, 0, 0, 1};
    for (int t = 0; t < 6; t++) {
        CHECK(adv[t] == want_adv[t]);
        CHECK(ret[t] == want_ret[t]);
    }
}

static void gae_monte_carlo(void) {
    /* gamma = lambda = 1 makes A_t = (sum of later rewards) - V_t. */
    float rewards[4] = {0.5f, 0, 0.25f, 1};
    float values[4] = {0.25f, 0.5f, 0.75f, 0.125f};
    uint8_t mask[4] = {1, 1, 1, 1};
    float adv[4], ret[4];
    mr_ppo_gae(rewards, values, mask, 4, 1.0f, 1.0f, adv, ret);
    CHECK(adv[0] == 1.75f - 0.25f);
    CHECK(adv[1] == 1.25f - 0.5f);
    CHECK(adv[2] == 1.25f - 0.75f);
    CHECK(adv[3] == 1.0f - 0.125f);
    CHECK(ret[0] == 1.75f);
    CHECK(ret[3] == 1.0f);
}

static void kl_estimators(void) {
    float logp = logf(0.5f), ref = logf(0.25f);
    /* k3 = r - log r - 1 with r = 0.5: 0.5 + ln 2 - 1. */
    CHECK_NEAR(mr_rl_kl(logp, ref, MR_KL_K3), log(2.0) - 0.5, 1e-6);
    CHECK_NEAR(mr_rl_kl(logp, ref, MR_KL_LOG_RATIO), log(2.0), 1e-6);
    CHECK(mr_rl_kl(-1.5f, -1.5f, MR_KL_K3) == 0.0f);
    CHECK(mr_rl_kl(-1.5f, -1.5f, MR_KL_LOG_RATIO) == 0.0f);
    /* k3 is never negative, the log-ratio can be. */
    CHECK(mr_rl_kl(ref, logp, MR_KL_K3) > 0.0f);
    CHECK(mr_rl_kl(ref, logp, MR_KL_LOG_RATIO) < 0.0f);
}

static void kl_estimator_names(void) {
    mr_kl_estimator e;
    mr_error err;
    CHECK_STATUS(mr_kl_estimator_parse("log_ratio", &e, &err), MR_OK);
    CHECK_INT_EQ(e, MR_KL_LOG_RATIO);
    CHECK_STATUS(mr_kl_estimator_parse("k3", &e, &err), MR_OK);
    CHECK_INT_EQ(e, MR_KL_K3);
    CHECK_STATUS(mr_kl_estimator_parse("k2", &e, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "'k2'") != NULL);
    CHECK(strcmp(mr_kl_estimator_name(MR_KL_K3), "k3") == 0);
}

static void whiten_masked(void) {
    float x[5] = {1, 100, 2, 3, -7};
    uint8_t mask[5] = {1, 0, 1, 1, 0};
    mr_rl_whiten(x, mask, 5);
    /* Mean 2, unbiased variance 1. */
    CHECK_NEAR(x[0], -1.0, 1e-6);
    CHECK(x[1] == 0.0f);
    CHECK_NEAR(x[2], 0.0, 1e-6);
    CHECK_NEAR(x[3], 1.0, 1e-6);
    CHECK(x[4] == 0.0f);
}

/* ------------------------------------------------------------------------
 * Losses against PyTorch
 * ------------------------------------------------------------------------ */

static void policy_loss_case(const char *name, mr_kl_estimator estimator) {
    mr_fixture *fx = mr_fixture_load("fixtures/rl.json");
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *logp = mr_fixture_tensor(fx, ctx, name, "logp");
    mr_tensor *old = mr_fixture_tensor(fx, ctx, name, "old");
    mr_tensor *adv = mr_fixture_tensor(fx, ctx, name, "adv");
    mr_tensor *ref = mr_fixture_tensor(fx, ctx, name, "ref");
    mr_tensor *w = mr_fixture_tensor(fx, ctx, name, "weights");
    mr_tensor *want_loss = mr_fixture_tensor(fx, ctx, name, "loss");
    mr_tensor *want_grad = mr_fixture_tensor(fx, ctx, name, "grad");
    float clip = (float)mr_fixture_number(fx, name, "clip", 0);
    float beta = (float)mr_fixture_number(fx, name, "beta", 0);
    mr_tensor_set_requires_grad(logp, true);

    mr_tensor *loss = mr_rl_policy_loss(ctx, logp, old, adv, ref, w, clip, beta, estimator);
    CHECK_CTX_OK(ctx);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    CHECK_NEAR(loss->data[0], want_loss->data[0], TORCH_ATOL + TORCH_RTOL * fabs(want_loss->data[0]));
    CHECK_ARRAY_NEAR(logp->grad, want_grad->data, 16, TORCH_ATOL, TORCH_RTOL);
    /* Tokens with weight 0 get exactly zero gradient. */
    int zero_weights = 0;
    for (int i = 0; i < 16; i++) {
        if (w->data[i] == 0.0f) {
            CHECK(logp->grad[i] == 0.0f);
            zero_weights++;
        }
    }
    CHECK_INT_EQ(zero_weights, 4);
    mr_ctx_free(ctx);
    mr_fixture_free(fx);
}

static void policy_loss_k3_torch(void) {
    policy_loss_case("policy_k3", MR_KL_K3);
}

static void policy_loss_log_ratio_torch(void) {
    policy_loss_case("policy_log_ratio", MR_KL_LOG_RATIO);
}

static void value_loss_torch(void) {
    mr_fixture *fx = mr_fixture_load("fixtures/rl.json");
    mr_ctx *ctx = mr_ctx_create(0);
    const char *name = "value_clip";
    mr_tensor *v = mr_fixture_tensor(fx, ctx, name, "values");
    mr_tensor *old = mr_fixture_tensor(fx, ctx, name, "old");
    mr_tensor *ret = mr_fixture_tensor(fx, ctx, name, "returns");
    mr_tensor *w = mr_fixture_tensor(fx, ctx, name, "weights");
    mr_tensor *want_loss = mr_fixture_tensor(fx, ctx, name, "loss");
    mr_tensor *want_grad = mr_fixture_tensor(fx, ctx, name, "grad");
    float clip = (float)mr_fixture_number(fx, name, "clip", 0);
    mr_tensor_set_requires_grad(v, true);

    mr_tensor *loss = mr_rl_value_loss(ctx, v, old, ret, w, clip);
    CHECK_CTX_OK(ctx);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    CHECK_NEAR(loss->data[0], want_loss->data[0], TORCH_ATOL + TORCH_RTOL * fabs(want_loss->data[0]));
    CHECK_ARRAY_NEAR(v->grad, want_grad->data, 12, TORCH_ATOL, TORCH_RTOL);
    CHECK(v->grad[0] == 0.0f);
    CHECK(v->grad[5] == 0.0f);
    mr_ctx_free(ctx);
    mr_fixture_free(fx);
}

static void value_loss_unclipped(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[1] = {2};
    mr_tensor *v = mr_tensor_from_f32(ctx, 1, shape, (float[]){1.0f, 3.0f});
    mr_tensor *old = mr_tensor_from_f32(ctx, 1, shape, (float[]){0.0f, 0.0f});
    mr_tensor *ret = mr_tensor_from_f32(ctx, 1, shape, (float[]){0.5f, 1.0f});
    mr_tensor *w = mr_tensor_from_f32(ctx, 1, shape, (float[]){0.5f, 0.5f});
    mr_tensor_set_requires_grad(v, true);
    /* 0.5 * 0.5 * (0.25 + 4) with clip 0: the plain squared error. */
    mr_tensor *loss = mr_rl_value_loss(ctx, v, old, ret, w, 0.0f);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    CHECK(loss->data[0] == 1.0625f);
    CHECK(v->grad[0] == 0.25f);
    CHECK(v->grad[1] == 1.0f);
    mr_ctx_free(ctx);
}

static void token_logprobs_torch(void) {
    mr_fixture *fx = mr_fixture_load("fixtures/rl.json");
    mr_ctx *ctx = mr_ctx_create(0);
    const char *name = "token_logprobs";
    mr_tensor *logits = mr_fixture_tensor(fx, ctx, name, "logits");
    mr_tensor *tokens = mr_fixture_tensor_i32(fx, ctx, name, "tokens");
    mr_tensor *r = mr_fixture_tensor(fx, ctx, name, "r");
    mr_tensor *want = mr_fixture_tensor(fx, ctx, name, "out");
    mr_tensor *want_grad = mr_fixture_tensor(fx, ctx, name, "grad");
    float temperature = (float)mr_fixture_number(fx, name, "temperature", 0);
    mr_tensor_set_requires_grad(logits, true);

    mr_tensor *out = mr_rl_token_logprobs(ctx, logits, tokens, temperature);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(out->shape[0], 2);
    CHECK_INT_EQ(out->shape[1], 4);
    CHECK_ARRAY_NEAR(out->data, want->data, 8, TORCH_ATOL, TORCH_RTOL);
    CHECK_STATUS(mr_tensor_backward(ctx, out, r->data), MR_OK);
    CHECK_ARRAY_NEAR(logits->grad, want_grad->data, 70, TORCH_ATOL, TORCH_RTOL);
    mr_ctx_free(ctx);
    mr_fixture_free(fx);
}

static void end_to_end_torch(void) {
    mr_fixture *fx = mr_fixture_load("fixtures/rl.json");
    mr_ctx *ctx = mr_ctx_create(0);
    const char *name = "end_to_end";
    mr_tensor *logits = mr_fixture_tensor(fx, ctx, name, "logits");
    mr_tensor *tokens = mr_fixture_tensor_i32(fx, ctx, name, "tokens");
    mr_tensor *old = mr_fixture_tensor(fx, ctx, name, "old");
    mr_tensor *ref = mr_fixture_tensor(fx, ctx, name, "ref");
    mr_tensor *adv = mr_fixture_tensor(fx, ctx, name, "adv");
    mr_tensor *w = mr_fixture_tensor(fx, ctx, name, "weights");
    mr_tensor *want_loss = mr_fixture_tensor(fx, ctx, name, "loss");
    mr_tensor *want_grad = mr_fixture_tensor(fx, ctx, name, "grad");
    float clip = (float)mr_fixture_number(fx, name, "clip", 0);
    float beta = (float)mr_fixture_number(fx, name, "beta", 0);
    mr_tensor_set_requires_grad(logits, true);

    mr_tensor *logp = mr_rl_token_logprobs(ctx, logits, tokens, 1.0f);
    mr_tensor *loss = mr_rl_policy_loss(ctx, logp, old, adv, ref, w, clip, beta, MR_KL_K3);
    CHECK_CTX_OK(ctx);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    CHECK_NEAR(loss->data[0], want_loss->data[0], TORCH_ATOL + TORCH_RTOL * fabs(want_loss->data[0]));
    CHECK_ARRAY_NEAR(logits->grad, want_grad->data, 2 * 6 * 9, TORCH_ATOL, TORCH_RTOL);

    /* Logit rows that predict a token with weight 0 (and the last row,
     * which predicts nothing) get exactly zero gradient. */
    for (int b = 0; b < 2; b++) {
        for (int t = 0; t < 6; t++) {
            bool counted = t < 5 && w->data[b * 5 + t] != 0.0f;
            for (int v = 0; v < 9 && !counted; v++) {
                CHECK(logits->grad[(b * 6 + t) * 9 + v] == 0.0f);
            }
        }
    }
    mr_ctx_free(ctx);
    mr_fixture_free(fx);
}

static void policy_loss_ignores_masked_values(void) {
    /* Garbage (NaN, huge advantages) at weight-0 tokens changes nothing. */
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[1] = {3};
    mr_tensor *logp = mr_tensor_from_f32(ctx, 1, shape, (float[]){-1.0f, -2.0f, -0.5f});
    mr_tensor *old = mr_tensor_from_f32(ctx, 1, shape, (float[]){-1.0f, NAN, -0.5f});
    mr_tensor *adv = mr_tensor_from_f32(ctx, 1, shape, (float[]){1.0f, 1e30f, -2.0f});
    mr_tensor *ref = mr_tensor_from_f32(ctx, 1, shape, (float[]){-1.0f, NAN, -0.5f});
    mr_tensor *w = mr_tensor_from_f32(ctx, 1, shape, (float[]){0.5f, 0.0f, 0.5f});
    mr_tensor_set_requires_grad(logp, true);
    mr_tensor *loss = mr_rl_policy_loss(ctx, logp, old, adv, ref, w, 0.2f, 0.1f, MR_KL_K3);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    /* rho = 1 and KL = 0 everywhere counted: -0.5 * 1 + -0.5 * -2 = 0.5;
     * the gradient is -w A rho (KL slope 0). */
    CHECK(loss->data[0] == 0.5f);
    CHECK(logp->grad[0] == -0.5f);
    CHECK(logp->grad[1] == 0.0f);
    CHECK(logp->grad[2] == 1.0f);
    mr_ctx_free(ctx);
}

static void policy_loss_rejects(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *a = mr_tensor_zeros(ctx, MR_F32, 1, (int64_t[]){3});
    mr_tensor *b = mr_tensor_zeros(ctx, MR_F32, 1, (int64_t[]){4});
    CHECK(mr_rl_policy_loss(ctx, a, a, b, a, a, 0.2f, 0.0f, MR_KL_K3) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "advantages") != NULL);
    mr_ctx_reset(ctx);
    a = mr_tensor_zeros(ctx, MR_F32, 1, (int64_t[]){3});
    CHECK(mr_rl_policy_loss(ctx, a, a, a, NULL, a, 0.2f, 0.1f, MR_KL_K3) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "ref") != NULL);
    mr_ctx_free(ctx);
}

/* ------------------------------------------------------------------------
 * Rollouts with a scripted environment
 * ------------------------------------------------------------------------ */

/* Replies "<result>7</result>" to the first turn and ends the second with
 * reward 0.75. */
typedef struct scripted_state {
    int turns;
} scripted_state;

static mr_status scripted_reset(void *state, uint64_t episode, char **prompt, mr_error *err) {
    (void)episode;
    (void)err;
    ((scripted_state *)state)->turns = 0;
    *prompt = strdup("Q: 1+2\n");
    return MR_OK;
}

static mr_status scripted_step(void *state, const char *turn, size_t len, mr_env_reply *reply,
                               mr_error *err) {
    (void)turn;
    (void)len;
    (void)err;
    scripted_state *s = state;
    if (s->turns++ == 0) {
        reply->text = strdup("<result>7</result>");
    } else {
        reply->done = true;
        reply->reward = 0.75f;
    }
    return MR_OK;
}

static float scripted_truncated(void *state) {
    (void)state;
    return -1.0f;
}

/* Ends the episode at the first turn with reward len(turn) / 32, so that
 * samples of one prompt get different rewards. */
static mr_status length_step(void *state, const char *turn, size_t len, mr_env_reply *reply,
                             mr_error *err) {
    (void)state;
    (void)turn;
    (void)err;
    reply->done = true;
    reply->reward = (float)len / 32.0f;
    return MR_OK;
}

static mr_env *scripted_env(int max_turns) {
    static const mr_env_ops ops = {"scripted", scripted_reset, scripted_step, scripted_truncated,
                                   free};
    static const char *const stop[] = {"</calc>"};
    mr_env_limits limits = {.max_turns = max_turns, .max_turn_tokens = 6, .max_tokens = 64};
    mr_error err;
    mr_env *env = mr_env_create(&ops, calloc(1, sizeof(scripted_state)), stop, 1, &limits, &err);
    CHECK(env != NULL);
    return env;
}

/* The stories260K tokenizer (512 tokens). */
static mr_tokenizer *load_tokenizer(void) {
    mr_error err;
    mr_gguf *gguf = NULL;
    mr_tokenizer *tok = NULL;
    CHECK_STATUS(mr_gguf_open(STORIES, &gguf, &err), MR_OK);
    CHECK_STATUS(mr_tokenizer_from_gguf(gguf, &tok, &err), MR_OK);
    mr_gguf_close(gguf);
    return tok;
}

/* A random model with the stories260K vocabulary. */
static mr_llama *tiny_model(uint64_t seed) {
    mr_error err;
    mr_llama_config c = {.vocab_size = 512, .dim = 16, .layers = 1, .heads = 2, .kv_heads = 1,
                         .head_dim = 8, .ffn_dim = 24, .context_length = 128,
                         .rope_base = 10000.0f, .rope_layout = MR_ROPE_ADJACENT,
                         .rms_eps = 1e-5f};
    mr_llama *model = mr_llama_init(&c, seed, &err);
    CHECK(model != NULL);
    return model;
}

static void rollout_masks_inserted(void) {
    mr_tokenizer *tok = load_tokenizer();
    mr_llama *model = tiny_model(3);
    mr_env *env = scripted_env(4);
    mr_error err;
    mr_rollout r;
    CHECK_STATUS(mr_rollout_run(model, tok, env, 0, 1.0f, 42, &r, &err), MR_OK);

    /* Prompt: BOS and "Q: 1+2\n"; then a turn, the reply, a turn. */
    int32_t prompt[32], reply[32];
    int64_t n_prompt = 0, n_reply = 0;
    mr_tokenizer_encode(tok, "Q: 1+2\n", 7, true, false, prompt, 32, &n_prompt, &err);
    mr_tokenizer_encode(tok, "<result>7</result>", 18, false, false, reply, 32, &n_reply, &err);
    CHECK_INT_EQ(r.prompt_tokens, n_prompt);
    CHECK_INT_EQ(r.turns, 2);
    CHECK(r.reward == 0.75f);
    CHECK(!r.truncated);
    CHECK(memcmp(r.tokens, prompt, (size_t)n_prompt * sizeof(int32_t)) == 0);
    for (int t = 0; t < n_prompt; t++) {
        CHECK_INT_EQ(r.policy_mask[t], 0);
    }

    /* The reply's tokens sit after the first turn, masked out. */
    int first_turn_end = (int)n_prompt;
    while (first_turn_end < r.n_tokens && r.policy_mask[first_turn_end]) {
        first_turn_end++;
    }
    CHECK(first_turn_end > n_prompt);
    CHECK(first_turn_end - n_prompt <= 6);
    CHECK(first_turn_end + n_reply < r.n_tokens);
    CHECK(memcmp(r.tokens + first_turn_end, reply, (size_t)n_reply * sizeof(int32_t)) == 0);
    int policy = 0;
    for (int t = 0; t < r.n_tokens; t++) {
        bool inserted = t >= first_turn_end && t < first_turn_end + n_reply;
        if (inserted) {
            CHECK_INT_EQ(r.policy_mask[t], 0);
        }
        policy += r.policy_mask[t];
    }
    CHECK_INT_EQ(policy, r.policy_tokens);
    CHECK_INT_EQ(r.policy_tokens, r.n_tokens - n_prompt - n_reply);
    CHECK(strstr(r.text, "Q: 1+2\n") == r.text);
    CHECK(strstr(r.text, "<result>7</result>") != NULL);

    /* The same seed gives the same episode; another seed another one. */
    mr_rollout again, other;
    CHECK_STATUS(mr_rollout_run(model, tok, env, 0, 1.0f, 42, &again, &err), MR_OK);
    CHECK_INT_EQ(again.n_tokens, r.n_tokens);
    CHECK(memcmp(again.tokens, r.tokens, (size_t)r.n_tokens * sizeof(int32_t)) == 0);
    CHECK_STATUS(mr_rollout_run(model, tok, env, 0, 1.0f, 43, &other, &err), MR_OK);
    CHECK(other.n_tokens != r.n_tokens ||
          memcmp(other.tokens, r.tokens, (size_t)r.n_tokens * sizeof(int32_t)) != 0);

    mr_rollout_free(&r);
    mr_rollout_free(&again);
    mr_rollout_free(&other);
    mr_env_free(env);
    mr_llama_free(model);
    mr_tokenizer_free(tok);
}

static void rollout_turn_budget(void) {
    mr_tokenizer *tok = load_tokenizer();
    mr_llama *model = tiny_model(3);
    mr_env *env = scripted_env(1);
    mr_error err;
    mr_rollout r;
    CHECK_STATUS(mr_rollout_run(model, tok, env, 0, 1.0f, 42, &r, &err), MR_OK);
    /* One turn, answered with a reply, then the budget ends the episode. */
    CHECK_INT_EQ(r.turns, 1);
    CHECK(r.truncated);
    CHECK(r.reward == -1.0f);
    mr_rollout_free(&r);
    mr_env_free(env);
    mr_llama_free(model);
    mr_tokenizer_free(tok);
}

static void rollout_rejects_long_budget(void) {
    mr_tokenizer *tok = load_tokenizer();
    mr_llama *model = tiny_model(3);
    static const mr_env_ops ops = {"scripted", scripted_reset, scripted_step, scripted_truncated,
                                   free};
    mr_env_limits limits = {.max_turns = 2, .max_turn_tokens = 6, .max_tokens = 129};
    mr_error err;
    mr_env *env = mr_env_create(&ops, calloc(1, sizeof(scripted_state)), NULL, 0, &limits, &err);
    mr_rollout r;
    CHECK_STATUS(mr_rollout_run(model, tok, env, 0, 1.0f, 42, &r, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "129") != NULL);
    mr_env_free(env);
    mr_llama_free(model);
    mr_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------
 * Seeded training runs
 * ------------------------------------------------------------------------ */

/* Trains a fresh tiny model for two steps and returns a copy of its
 * weights (count floats). */
static float *train_tiny(mr_rl_algorithm algorithm, int64_t *count, mr_rl_result *result) {
    mr_tokenizer *tok = load_tokenizer();
    mr_llama *policy = tiny_model(5);
    mr_llama *ref = tiny_model(5);

    static const mr_env_ops ops = {"length", scripted_reset, length_step, scripted_truncated,
                                   free};
    mr_env_limits limits = {.max_turns = 2, .max_turn_tokens = 6, .max_tokens = 48};
    mr_error err;
    mr_env *env = mr_env_create(&ops, calloc(1, sizeof(scripted_state)), NULL, 0, &limits, &err);
    mr_env *eval = mr_env_create(&ops, calloc(1, sizeof(scripted_state)), NULL, 0, &limits, &err);

    mr_rl_config c = mr_rl_config_default(algorithm);
    c.steps = 2;
    c.prompts_per_step = 2;
    c.group_size = algorithm == MR_RL_GRPO ? 3 : 2;
    c.minibatch = 2;
    c.epochs = 2;
    c.lr = 1e-2f;
    c.seed = 11;
    c.eval_episodes = 2;
    c.eval_every = 1;
    c.success_reward = 0.1f;
    CHECK_STATUS(mr_rl_train(policy, ref, tok, env, eval, &c, NULL, result, &err), MR_OK);
    CHECK_INT_EQ(result->steps_done, 2);

    mr_tensor *flat = mr_paramset_flat(mr_llama_params(policy));
    *count = mr_tensor_numel(flat);
    float *copy = malloc((size_t)*count * sizeof *copy);
    memcpy(copy, flat->data, (size_t)*count * sizeof *copy);

    /* The reference keeps its weights. */
    mr_tensor *ref_flat = mr_paramset_flat(mr_llama_params(ref));
    CHECK(memcmp(ref_flat->data, copy, (size_t)*count * sizeof *copy) != 0);

    mr_env_free(env);
    mr_env_free(eval);
    mr_llama_free(policy);
    mr_llama_free(ref);
    mr_tokenizer_free(tok);
    return copy;
}

static void seeded_runs_repeat(mr_rl_algorithm algorithm) {
    int64_t n1 = 0, n2 = 0;
    mr_rl_result r1, r2;
    float *a = train_tiny(algorithm, &n1, &r1);
    float *b = train_tiny(algorithm, &n2, &r2);
    CHECK_INT_EQ(n1, n2);
    CHECK(memcmp(a, b, (size_t)n1 * sizeof *a) == 0);
    CHECK(r1.final_success == r2.final_success);
    free(a);
    free(b);
}

static void grpo_seeded_runs_repeat(void) {
    seeded_runs_repeat(MR_RL_GRPO);
}

static void ppo_seeded_runs_repeat(void) {
    seeded_runs_repeat(MR_RL_PPO);
}

/* ------------------------------------------------------------------------
 * Filtering groups with equal rewards
 * ------------------------------------------------------------------------ */

/* Counts the episodes reset with an even and an odd index. Even episodes
 * end with reward 0.5 whatever the turn, so their groups have equal
 * rewards. Odd ones end with reward len(turn) / 32 as length_step does. */
typedef struct parity_state {
    uint64_t episode;
    int even_resets, odd_resets;
} parity_state;

static mr_status parity_reset(void *state, uint64_t episode, char **prompt, mr_error *err) {
    (void)err;
    parity_state *s = state;
    s->episode = episode;
    if (episode % 2 == 0) {
        s->even_resets++;
    } else {
        s->odd_resets++;
    }
    *prompt = strdup("Q: 1+2\n");
    return MR_OK;
}

static mr_status parity_step(void *state, const char *turn, size_t len, mr_env_reply *reply,
                             mr_error *err) {
    (void)turn;
    (void)err;
    const parity_state *s = state;
    reply->done = true;
    reply->reward = s->episode % 2 == 0 ? 0.5f : (float)len / 32.0f;
    return MR_OK;
}

/* Ends every episode with reward 0.5. */
static mr_status constant_step(void *state, const char *turn, size_t len, mr_env_reply *reply,
                               mr_error *err) {
    (void)state;
    (void)turn;
    (void)len;
    (void)err;
    reply->done = true;
    reply->reward = 0.5f;
    return MR_OK;
}

static void parity_free(void *state) {
    free(state);
}

/* What one filtered GRPO step did: metrics of its metrics.jsonl line,
 * whether the policy's weights moved, and the env's reset counts. */
typedef struct filter_run {
    double prompts_drawn, prompts_kept, success;
    bool changed;
    parity_state counts;
} filter_run;

static const mr_env_ops parity_ops = {"parity", parity_reset, parity_step, scripted_truncated,
                                     parity_free};
static const mr_env_ops constant_ops = {"constant", parity_reset, constant_step,
                                       scripted_truncated, parity_free};

/* Runs one GRPO step of 2 prompts x 3 episodes with filter_groups on and
 * at most 40 prompt draws on an env of ops (with a parity_state). */
static filter_run run_filtered_step(const mr_env_ops *ops) {
    filter_run run = {0};
    mr_tokenizer *tok = load_tokenizer();
    mr_llama *policy = tiny_model(5);
    mr_env_limits limits = {.max_turns = 1, .max_turn_tokens = 6, .max_tokens = 48};
    mr_error err;
    parity_state *state = calloc(1, sizeof *state);
    mr_env *env = mr_env_create(ops, state, NULL, 0, &limits, &err);
    CHECK(env != NULL);

    char folder[256], path[320];
    const char *base = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_rl_filter_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mkdtemp(%s) failed: %s", folder, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/%s", folder, MR_RUNLOG_FILE);

    mr_rl_config c = mr_rl_config_default(MR_RL_GRPO);
    c.steps = 1;
    c.prompts_per_step = 2;
    c.group_size = 3;
    c.minibatch = 3;
    c.lr = 1e-2f;
    c.kl_coef = 0.0f;
    c.seed = 5; /* draws even, even, even, odd, even, odd episodes */
    c.filter_groups = true;
    c.max_prompt_draws = 40;
    c.success_reward = 0.1f;
    mr_tensor *flat = mr_paramset_flat(mr_llama_params(policy));
    int64_t count = mr_tensor_numel(flat);
    float *before = malloc((size_t)count * sizeof *before);
    memcpy(before, flat->data, (size_t)count * sizeof *before);

    mr_rl_result result;
    CHECK_STATUS(mr_rl_train(policy, NULL, tok, env, NULL, &c, path, &result, &err), MR_OK);
    run.changed = memcmp(before, flat->data, (size_t)count * sizeof *before) != 0;
    run.counts = *state;

    mr_runlog_data *data = NULL;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    CHECK_INT_EQ(data->n_rows, 1);
    const char *names[] = {"prompts_drawn", "prompts_kept", "success"};
    double *values[] = {&run.prompts_drawn, &run.prompts_kept, &run.success};
    for (int i = 0; i < 3; i++) {
        int column = mr_runlog_data_column(data, names[i]);
        CHECK(column >= 0);
        *values[i] = column >= 0 ? data->values[column] : -1.0;
    }

    mr_runlog_data_free(data);
    unlink(path);
    rmdir(folder);
    free(before);
    mr_env_free(env);
    mr_llama_free(policy);
    mr_tokenizer_free(tok);
    return run;
}

static void filter_groups_drops_equal(void) {
    filter_run run = run_filtered_step(&parity_ops);
    int drawn = (run.counts.even_resets + run.counts.odd_resets) / 3;
    CHECK_INT_EQ(run.counts.even_resets % 3, 0);
    CHECK_INT_EQ(run.counts.odd_resets % 3, 0);
    CHECK(run.counts.even_resets > 0);

    /* Every even group was dropped and every odd one kept, until two were
     * kept. */
    CHECK(run.prompts_drawn == drawn);
    CHECK(run.prompts_drawn == 6);
    CHECK(run.prompts_kept == 2);
    CHECK(run.counts.odd_resets / 3 == 2);
    CHECK(run.changed);

    /* success counts every sampled episode, the dropped ones included, so
     * it is at least the share of even episodes (0.5 >= 0.1). */
    CHECK(run.success >= (double)run.counts.even_resets / (3.0 * drawn));
}

static void filter_groups_all_equal(void) {
    filter_run run = run_filtered_step(&constant_ops);
    /* No group differs, so the step draws its limit, keeps none and does
     * not update. */
    CHECK(run.prompts_drawn == 40);
    CHECK(run.prompts_kept == 0);
    CHECK_INT_EQ(run.counts.even_resets + run.counts.odd_resets, 40 * 3);
    CHECK(!run.changed);
    CHECK(run.success == 1.0);
}

static void config_rejects(void) {
    mr_rl_config c = mr_rl_config_default(MR_RL_GRPO);
    mr_error err;
    CHECK_STATUS(mr_rl_config_check(&c, &err), MR_OK);
    c.clip_eps = 1.5f;
    CHECK_STATUS(mr_rl_config_check(&c, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "clip_eps") != NULL);
    c = mr_rl_config_default(MR_RL_PPO);
    c.gamma = 1.5f;
    CHECK_STATUS(mr_rl_config_check(&c, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "gamma") != NULL);

    /* Filtering needs GRPO groups of two or more and a draw limit of at
     * least prompts_per_step. */
    c = mr_rl_config_default(MR_RL_PPO);
    c.filter_groups = true;
    CHECK_STATUS(mr_rl_config_check(&c, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "filter_groups") != NULL);
    c = mr_rl_config_default(MR_RL_GRPO);
    c.filter_groups = true;
    c.max_prompt_draws = c.prompts_per_step - 1;
    CHECK_STATUS(mr_rl_config_check(&c, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "max_prompt_draws") != NULL);
    c.max_prompt_draws = c.prompts_per_step;
    CHECK_STATUS(mr_rl_config_check(&c, &err), MR_OK);
}

int main(void) {
    MR_RUN(grpo_advantages_scaled);
    MR_RUN(grpo_advantages_unscaled);
    MR_RUN(grpo_advantages_eps);
    MR_RUN(grpo_advantages_single);
    MR_RUN(grpo_advantages_rejects);
    MR_RUN(gae_skips_inserted);
    MR_RUN(gae_monte_carlo);
    MR_RUN(kl_estimators);
    MR_RUN(kl_estimator_names);
    MR_RUN(whiten_masked);
    MR_RUN(policy_loss_k3_torch);
    MR_RUN(policy_loss_log_ratio_torch);
    MR_RUN(value_loss_torch);
    MR_RUN(value_loss_unclipped);
    MR_RUN(token_logprobs_torch);
    MR_RUN(end_to_end_torch);
    MR_RUN(policy_loss_ignores_masked_values);
    MR_RUN(policy_loss_rejects);
    MR_RUN(rollout_masks_inserted);
    MR_RUN(rollout_turn_budget);
    MR_RUN(rollout_rejects_long_budget);
    MR_RUN(grpo_seeded_runs_repeat);
    MR_RUN(ppo_seeded_runs_repeat);
    MR_RUN(filter_groups_drops_equal);
    MR_RUN(filter_groups_all_equal);
    MR_RUN(config_rejects);
    return mr_test_finish();
}
