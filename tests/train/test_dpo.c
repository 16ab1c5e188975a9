/*
 * Tests of DPO: the sigmoid loss with its mrDPO NLL term, the
 * diagnostics and the gradients against PyTorch
 * (tests/fixtures/torch_trainers.py), the adapter-off reference, the NaN
 * guard, and short runs that raise the held-out implicit reward accuracy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/train.h"
#include "train_fixture.h"

/* Reads metric name from m; NaN when absent. */
static double metric(const train_metrics *m, const char *name) {
    for (int i = 0; i < m->count; i++) {
        if (strcmp(m->names[i], name) == 0) {
            return m->sums[i];
        }
    }
    return NAN;
}

/* The fixture's scalar tensor name of case "dpo". */
static double fixture_scalar(mr_fixture *fixture, mr_ctx *data, const char *name) {
    mr_tensor *t = mr_fixture_tensor(fixture, data, "dpo", name);
    return t != NULL ? t->data[0] : NAN;
}

/* Loss, diagnostics and gradients match PyTorch within float32 rounding
 * of sums of log-probabilities over 7 positions. */
static void dpo_loss_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load(TRAINERS_FIXTURE);
    mr_ctx *data = mr_ctx_create(0), *ctx = mr_ctx_create(0);
    trainer t;
    memset(&t, 0, sizeof t);
    mr_train_options_default(&t.o, MR_TRAIN_DPO);
    t.o.dpo_beta = (float)mr_fixture_number(fixture, "dpo", "beta", 0);
    t.o.sft_weight = (float)mr_fixture_number(fixture, "dpo", "sft_weight", 0);
    t.model = fixture_model(fixture, data, "dpo", "");
    t.reference = fixture_model(fixture, data, "dpo", "ref.");
    train_batch b;
    fixture_batch(fixture, data, "dpo", 2, &b);
    train_metrics m = {0};

    mr_tensor *loss = dpo_batch_loss(&t, ctx, &b, &m);
    CHECK_CTX_OK(ctx);
    CHECK(loss != NULL);
    if (loss != NULL) {
        CHECK_NEAR(loss->data[0], fixture_scalar(fixture, data, "loss"), 1e-5);
        CHECK_NEAR(metric(&m, "dpo_loss"), fixture_scalar(fixture, data, "dpo_loss"), 1e-5);
        CHECK_NEAR(metric(&m, "rewards/chosen"), fixture_scalar(fixture, data, "reward_chosen"),
                   1e-5);
        CHECK_NEAR(metric(&m, "rewards/rejected"),
                   fixture_scalar(fixture, data, "reward_rejected"), 1e-5);
        CHECK_NEAR(metric(&m, "accuracy"), fixture_scalar(fixture, data, "accuracy"), 0.0);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        static const char *const weights[] = {"token_embd.weight", "blk.0.attn_v.weight",
                                              "output.weight"};
        check_fixture_grads(fixture, data, "dpo", mr_llama_params(t.model), weights, 3, 1e-5,
                            1e-3);
    }

    /* Sequence log-probabilities of both models, row by row. */
    mr_ctx_reset(ctx);
    mr_tensor *policy = mr_train_sequence_logps(t.model, NULL, ctx, b.tokens, b.targets);
    mr_tensor *reference = mr_train_sequence_logps(t.reference, NULL, ctx, b.tokens, b.targets);
    mr_tensor *expected = mr_fixture_tensor(fixture, data, "dpo", "logps");
    mr_tensor *expected_ref = mr_fixture_tensor(fixture, data, "dpo", "reference_logps");
    CHECK(policy != NULL && reference != NULL && expected != NULL && expected_ref != NULL);
    if (policy != NULL && reference != NULL && expected != NULL && expected_ref != NULL) {
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(policy->data, expected->data, 6, 1e-4, 1e-5), 0);
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(reference->data, expected_ref->data, 6, 1e-4, 1e-5), 0);
    }

    mr_llama_free(t.model);
    mr_llama_free(t.reference);
    mr_ctx_free(ctx);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

/* With a fresh adapter the policy is the adapter-off reference, so the
 * loss is log 2 and every reward 0; the gradient reaches the adapter's B. */
static void adapter_off_reference_starts_even(void) {
    mr_fixture *fixture = mr_fixture_load(TRAINERS_FIXTURE);
    mr_ctx *data = mr_ctx_create(0), *ctx = mr_ctx_create(0);
    trainer t;
    memset(&t, 0, sizeof t);
    mr_train_options_default(&t.o, MR_TRAIN_DPO);
    t.o.reference = MR_DPO_REFERENCE_ADAPTER_OFF;
    t.model = fixture_model(fixture, data, "dpo", "");
    mr_error err;
    mr_lora_config lc = {.rank = 2, .alpha = 4, .dropout = 0, .targets = MR_LORA_Q | MR_LORA_V};
    t.lora = mr_lora_create(t.model, &lc, 5, &err);
    train_batch b;
    fixture_batch(fixture, data, "dpo", 2, &b);
    train_metrics m = {0};

    mr_tensor *loss = dpo_batch_loss(&t, ctx, &b, &m);
    CHECK_CTX_OK(ctx);
    CHECK(loss != NULL);
    if (loss != NULL) {
        CHECK_NEAR(loss->data[0], log(2.0), 1e-6);
        CHECK_NEAR(metric(&m, "rewards/chosen"), 0.0, 0.0);
        CHECK_NEAR(metric(&m, "rewards/margins"), 0.0, 0.0);
        CHECK_NEAR(metric(&m, "accuracy"), 0.0, 0.0);
        CHECK(mr_lora_enabled(t.lora));
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        mr_tensor *lora_b = mr_paramset_find(mr_lora_params(t.lora), "blk.0.attn_q.lora_b");
        double norm = 0;
        for (int64_t i = 0; lora_b != NULL && i < mr_tensor_numel(lora_b); i++) {
            norm += fabs(lora_b->grad[i]);
        }
        CHECK(norm > 0);
    }
    mr_lora_free(t.lora);
    mr_llama_free(t.model);
    mr_ctx_free(ctx);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

/* Writes 40 pairs where the chosen side says "kind" and the rejected
 * "mean"; returns the path (static). */
static const char *write_pairs(void) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/mr_test_dpo_%d.jsonl", (int)getpid());
    static const char *const names[] = {"Tom", "Lily", "Ben", "Sue", "Max"};
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 40; i++) {
        fprintf(f,
                "{\"prompt\": \"%s saw a cat.\", \"chosen\": \" The cat was kind.\", "
                "\"rejected\": \" The cat was mean.\"}\n",
                names[i % 5]);
    }
    fclose(f);
    return path;
}

/* DPO options for the stories260K runs. */
static mr_train_options dpo_options(const char *data, const char *out) {
    mr_train_options o;
    mr_train_options_default(&o, MR_TRAIN_DPO);
    o.model_path = "data/lm/stories260K.gguf";
    o.data_path = data;
    o.out_dir = out;
    o.eval_every_nth = 5;
    o.max_steps = 10;
    o.batch_size = 4;
    o.warmup_steps = 0;
    o.checkpoint_every = 0;
    o.dpo_beta = 0.5f;
    return o;
}

/* Full and LoRA DPO raise the held-out implicit reward accuracy from 0
 * (every reward is 0 before the first step) to 1. */
static void dpo_runs_raise_accuracy(void) {
    const char *data = write_pairs();
    char out[256];
    snprintf(out, sizeof out, "/tmp/mr_test_dpo_%d_run", (int)getpid());
    for (int lora = 0; lora < 2; lora++) {
        mr_train_options o = dpo_options(data, out);
        o.lr = lora ? 1e-2f : 1e-3f;
        o.lora = lora;
        o.reference = lora ? MR_DPO_REFERENCE_ADAPTER_OFF : MR_DPO_REFERENCE_COPY;
        o.sft_weight = lora ? 0.1f : 0.0f;
        mr_train_result r;
        mr_error err;
        mr_status status = mr_train_run(&o, &r, &err);
        CHECK_STATUS(status, MR_OK);
        if (status != MR_OK) {
            fprintf(stderr, "%s\n", err.message);
        }
        CHECK_NEAR(r.eval_accuracy_start, 0.0, 0.0);
        if (lora) {
            /* log 2 plus 0.1 times the NLL of the chosen completion. */
            CHECK(r.eval_loss_start > log(2.0) + 0.01);
        } else {
            CHECK_NEAR(r.eval_loss_start, log(2.0), 1e-6);
        }
        CHECK_NEAR(r.eval_accuracy, 1.0, 0.0);
        CHECK(r.eval_loss < r.eval_loss_start);
        char command[600];
        snprintf(command, sizeof command, "rm -rf '%s'", out);
        CHECK_INT_EQ(system(command), 0);
    }
    unlink(data);
}

/* A learning rate that blows the weights up stops the run with an error
 * that names the step and the data lines. */
static void nan_guard_names_step(void) {
    const char *data = write_pairs();
    char out[256];
    snprintf(out, sizeof out, "/tmp/mr_test_dpo_%d_nan", (int)getpid());
    mr_train_options o = dpo_options(data, out);
    o.lr = 1e30f;
    o.clip_norm = 0.0f;
    o.eval_every_nth = 0;
    mr_train_result r;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, &r, &err), MR_ERR_NUMERIC);
    CHECK(strstr(err.message, "at step 2") != NULL);
    CHECK(strstr(err.message, "lines ") != NULL);
    CHECK_INT_EQ(r.steps, 1);
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", out);
    CHECK_INT_EQ(system(command), 0);
    unlink(data);
}

int main(void) {
    mr_log_set_level(MR_LOG_WARN);
    MR_RUN(dpo_loss_matches_torch);
    MR_RUN(adapter_off_reference_starts_even);
    MR_RUN(dpo_runs_raise_accuracy);
    MR_RUN(nan_guard_names_step);
    return mr_test_finish();
}
