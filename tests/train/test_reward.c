/*
 * Tests of reward models and classifiers: the head outputs, the
 * Bradley-Terry and cross-entropy losses and their gradients against
 * PyTorch (tests/fixtures/torch_trainers.py), the hidden states that feed
 * the head, and a short reward-model run on preference pairs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/train.h"
#include "train_fixture.h"

/* A trainer around the fixture model of case name, with its head. */
static void fixture_trainer(mr_fixture *fixture, mr_ctx *data, const char *name,
                            mr_train_kind kind, trainer *t) {
    memset(t, 0, sizeof *t);
    mr_train_options_default(&t->o, kind);
    t->model = fixture_model(fixture, data, name, "");
    mr_tensor *w = mr_fixture_tensor(fixture, data, name, "score.weight");
    mr_error err;
    CHECK_STATUS(reward_head_create(t, w != NULL ? (int)w->shape[0] : 1, &err), MR_OK);
    mr_tensor *b = mr_fixture_tensor(fixture, data, name, "score.bias");
    if (w != NULL && b != NULL && t->head_weight != NULL) {
        memcpy(t->head_weight->data, w->data, (size_t)mr_tensor_numel(w) * sizeof(float));
        memcpy(t->head_bias->data, b->data, (size_t)mr_tensor_numel(b) * sizeof(float));
    }
}

/* Runs one head case: loss, scores and gradients of the head and of two
 * model weights. Tolerances as in test_sft.c: float32 rounding of a
 * two-layer model. */
static void check_head_case(const char *name, mr_train_kind kind, int examples) {
    mr_fixture *fixture = mr_fixture_load(TRAINERS_FIXTURE);
    mr_ctx *data = mr_ctx_create(0), *ctx = mr_ctx_create(0);
    trainer t;
    fixture_trainer(fixture, data, name, kind, &t);
    train_batch b;
    fixture_batch(fixture, data, name, examples, &b);
    train_metrics m = {0};

    mr_tensor *loss = kind == MR_TRAIN_REWARD ? reward_batch_loss(&t, ctx, &b, &m)
                                              : classify_batch_loss(&t, ctx, &b, &m);
    CHECK_CTX_OK(ctx);
    mr_tensor *expected = mr_fixture_tensor(fixture, data, name, "loss");
    CHECK(loss != NULL && expected != NULL);
    if (loss != NULL && expected != NULL) {
        CHECK_NEAR(loss->data[0], expected->data[0], 1e-5);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        static const char *const head[] = {"score.weight", "score.bias"};
        check_fixture_grads(fixture, data, name, t.head, head, 2, 1e-5, 1e-3);
        static const char *const weights[] = {"blk.0.ffn_up.weight", "token_embd.weight"};
        check_fixture_grads(fixture, data, name, mr_llama_params(t.model), weights, 2, 1e-5,
                            1e-3);
    }

    /* The head outputs themselves. */
    mr_ctx_reset(ctx);
    mr_tensor *scores = mr_train_head_outputs(t.model, NULL, ctx, b.tokens, b.last,
                                              t.head_weight, t.head_bias);
    mr_tensor *expected_scores = mr_fixture_tensor(fixture, data, name, "scores");
    CHECK(scores != NULL && expected_scores != NULL);
    if (scores != NULL && expected_scores != NULL) {
        CHECK_INT_EQ(mr_tensor_numel(scores), mr_tensor_numel(expected_scores));
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(scores->data, expected_scores->data,
                                      mr_tensor_numel(scores), 1e-5, 1e-4),
                     0);
    }

    mr_paramset_free(t.head);
    mr_llama_free(t.model);
    mr_ctx_free(ctx);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

static void reward_loss_matches_torch(void) {
    check_head_case("reward", MR_TRAIN_REWARD, 2);
}

static void classify_loss_matches_torch(void) {
    check_head_case("classify", MR_TRAIN_CLASSIFY, 3);
}

/* The hidden states times output.weight^T are the logits, and the model
 * is unchanged afterwards (the identity stand-in is removed). */
static void hidden_states_give_logits(void) {
    mr_fixture *fixture = mr_fixture_load(TRAINERS_FIXTURE);
    mr_ctx *data = mr_ctx_create(0), *ctx = mr_ctx_create(0);
    mr_llama *model = fixture_model(fixture, data, "reward", "");
    mr_tensor *tokens = mr_fixture_tensor_i32(fixture, data, "reward", "tokens");

    mr_tensor *hidden = mr_llama_hidden(model, NULL, ctx, tokens);
    mr_tensor *output = mr_llama_find_weight(model, "output.weight")->param;
    mr_tensor *via_hidden = mr_tensor_linear(ctx, hidden, output, NULL);
    mr_tensor *logits = mr_llama_logits(model, ctx, tokens);
    CHECK_CTX_OK(ctx);
    CHECK(hidden != NULL && hidden->ndim == 3 && hidden->shape[2] == 16);
    if (via_hidden != NULL && logits != NULL) {
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(via_hidden->data, logits->data, mr_tensor_numel(logits),
                                      0.0, 0.0),
                     0);
    }
    CHECK_INT_EQ(mr_llama_weight_count(model), 2 + 2 * 9 + 1);
    CHECK(mr_llama_find_weight(model, "output.weight")->param == output);

    /* Through a fresh LoRA adapter (B = 0) the states are the same. */
    mr_error err;
    mr_lora_config lc = {.rank = 2, .alpha = 4, .dropout = 0, .targets = MR_LORA_ALL};
    mr_lora *lora = mr_lora_create(model, &lc, 3, &err);
    mr_tensor *lora_hidden = mr_llama_hidden(model, lora, ctx, tokens);
    CHECK(lora_hidden != NULL);
    if (lora_hidden != NULL && hidden != NULL) {
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(lora_hidden->data, hidden->data, mr_tensor_numel(hidden),
                                      1e-6, 1e-5),
                     0);
    }
    mr_lora_free(lora);
    mr_llama_free(model);
    mr_ctx_free(ctx);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

/* A reward model learns a preference that the text shows plainly:
 * completions that say "kind" over those that say "mean". */
static void reward_run_learns_pairs(void) {
    char data[256], out[256];
    snprintf(data, sizeof data, "/tmp/mr_test_reward_%d.jsonl", (int)getpid());
    snprintf(out, sizeof out, "/tmp/mr_test_reward_%d_run", (int)getpid());
    static const char *const names[] = {"Tom", "Lily", "Ben", "Sue", "Max", "Mia"};
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 48; i++) {
        fprintf(f,
                "{\"prompt\": \"%s met a dog.\", \"chosen\": \" The dog was kind and "
                "happy.\", \"rejected\": \" The dog was mean and sad.\"}\n",
                names[i % 6]);
    }
    fclose(f);

    mr_train_options o;
    mr_train_options_default(&o, MR_TRAIN_REWARD);
    o.model_path = "data/lm/stories260K.gguf";
    o.data_path = data;
    o.out_dir = out;
    o.eval_every_nth = 4;
    o.max_steps = 15;
    o.batch_size = 4;
    o.lr = 3e-3f;
    o.warmup_steps = 2;
    o.checkpoint_every = 0;
    mr_train_result r;
    mr_error err;
    mr_status status = mr_train_run(&o, &r, &err);
    CHECK_STATUS(status, MR_OK);
    if (status != MR_OK) {
        fprintf(stderr, "%s\n", err.message);
    }
    CHECK_INT_EQ(r.steps, 15);
    CHECK(r.eval_accuracy == 1.0);
    CHECK(r.eval_loss < r.eval_loss_start);
    char path[512];
    snprintf(path, sizeof path, "%s/head.safetensors", out);
    CHECK(access(path, F_OK) == 0);

    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s' '%s'", out, data);
    CHECK_INT_EQ(system(command), 0);
}

int main(void) {
    mr_log_set_level(MR_LOG_WARN);
    MR_RUN(reward_loss_matches_torch);
    MR_RUN(classify_loss_matches_torch);
    MR_RUN(hidden_states_give_logits);
    MR_RUN(reward_run_learns_pairs);
    return mr_test_finish();
}
