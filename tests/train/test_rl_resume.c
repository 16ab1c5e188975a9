/*
 * Tests that GRPO and PPO runs on the calculator task resume exactly. A
 * run stopped after step 3 (its checkpoint is at step 2) and resumed, and
 * a finished 2-step run extended to 4 steps, end as an uninterrupted
 * 4-step run does. They have the same bytes of weights, value head,
 * optimizer state and generator state, and the same metrics on every step.
 *
 * A random model never writes a <calc> or <answer> tag, so every episode
 * gets the same reward and GRPO's advantages are all 0. Weight decay
 * moves the policy off the reference after the first update, and from
 * then on the KL term's gradient depends on the sampled episodes. So the
 * final weights depend on every part of the restored state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/rl.h"
#include "multiround/runlog.h"
#include "test.h"

#define STORIES "data/lm/stories260K.gguf"

static char base_dir[128], problems_path[256], model_path[256];

/* Writes six calculator problems. */
static void write_problems(const char *path) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL) {
        return;
    }
    fprintf(f, "{\"question\": \"2+3\", \"answer\": 5}\n"
               "{\"question\": \"4*5\", \"answer\": 20}\n"
               "{\"question\": \"7-2\", \"answer\": 5}\n"
               "{\"question\": \"3*3+1\", \"answer\": 10}\n"
               "{\"question\": \"12+30\", \"answer\": 42}\n"
               "{\"question\": \"6*7\", \"answer\": 42}\n");
    fclose(f);
}

/* Writes a random model with the stories260K vocabulary and tokenizer to
 * path, as test_rl.c builds its tiny models. */
static void write_tiny_model(const char *path) {
    mr_error err;
    mr_llama_config c = {.vocab_size = 512, .dim = 16, .layers = 1, .heads = 2, .kv_heads = 1,
                         .head_dim = 8, .ffn_dim = 24, .context_length = 128,
                         .rope_base = 10000.0f, .rope_layout = MR_ROPE_ADJACENT,
                         .rms_eps = 1e-5f};
    mr_llama *model = mr_llama_init(&c, 5, &err);
    mr_gguf *stories = NULL;
    CHECK(model != NULL);
    CHECK_STATUS(mr_gguf_open(STORIES, &stories, &err), MR_OK);
    if (model != NULL && stories != NULL) {
        CHECK_STATUS(mr_llama_save_gguf(model, path, MR_QTYPE_F32, stories, &err), MR_OK);
    }
    mr_gguf_close(stories);
    mr_llama_free(model);
}

/* Options of a 4-step run with a checkpoint every 2 steps and an
 * evaluation every 2 steps on the training problems. Each step runs 2
 * epochs of 2 minibatches. */
static mr_rl_run_options run_options(mr_rl_algorithm algorithm, const char *out) {
    mr_rl_run_options o;
    mr_rl_run_options_default(&o, algorithm);
    o.model_path = model_path;
    o.train_path = problems_path;
    o.eval_path = problems_path;
    o.out_dir = out;
    o.checkpoint_every = 2;
    o.calc.limits = (mr_env_limits){.max_turns = 2, .max_turn_tokens = 6, .max_tokens = 48};
    mr_rl_config *c = &o.rl;
    c->steps = 4;
    c->prompts_per_step = algorithm == MR_RL_GRPO ? 2 : 3;
    c->group_size = algorithm == MR_RL_GRPO ? 2 : 1;
    c->minibatch = 2;
    c->epochs = 2;
    c->lr = 1e-2f;
    c->warmup_steps = 10; /* 4 updates per step: the warm-up ends in step 3 */
    c->weight_decay = 0.1f;
    c->seed = 11;
    c->eval_every = 2;
    c->eval_episodes = 2;
    return o;
}

/* Runs o and reports a failure with the error message. */
static void run(const mr_rl_run_options *o, mr_rl_result *result) {
    mr_error err;
    mr_status status = mr_rl_run(o, result, &err);
    CHECK_STATUS(status, MR_OK);
    if (status != MR_OK) {
        fprintf(stderr, "%s\n", err.message);
    }
}

/* Reads dir/name into *data; NULL when it cannot be read. */
static void *read_file(const char *dir, const char *name, size_t *size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *data = NULL;
    mr_error err;
    if (mr_file_read_all(path, 1u << 26, &data, size, &err) != MR_OK) {
        return NULL;
    }
    return data;
}

/* True when the files a/name and b/name exist and have the same bytes. */
static bool same_file(const char *a, const char *b, const char *name) {
    size_t na = 0, nb = 0;
    void *da = read_file(a, name, &na);
    void *db = read_file(b, name, &nb);
    bool same = da != NULL && db != NULL && na == nb && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

/* True when dir/name exists. */
static bool has_file(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* Checks that two metrics logs have the same steps and, but for the
 * elapsed time, the same values. */
static void check_same_metrics(const char *a, const char *b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", a);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", b);
    mr_runlog_data *da = NULL, *db = NULL;
    mr_error err;
    CHECK_STATUS(mr_runlog_read(pa, &da, &err), MR_OK);
    CHECK_STATUS(mr_runlog_read(pb, &db, &err), MR_OK);
    if (da == NULL || db == NULL) {
        mr_runlog_data_free(da);
        mr_runlog_data_free(db);
        return;
    }

    /* Steps 0 (the first evaluation) to 4. */
    CHECK_INT_EQ(da->n_rows, 5);
    CHECK_INT_EQ(db->n_rows, da->n_rows);
    CHECK_INT_EQ(db->n_columns, da->n_columns);

    for (int ca = 0; ca < da->n_columns; ca++) {
        if (strcmp(da->names[ca], "elapsed_s") == 0) {
            continue;
        }
        int cb = mr_runlog_data_column(db, da->names[ca]);
        CHECK(cb >= 0);
        for (int64_t r = 0; cb >= 0 && r < da->n_rows && r < db->n_rows; r++) {
            CHECK_INT_EQ(db->steps[r], da->steps[r]);
            bool present = da->present[r * da->n_columns + ca] != 0;
            CHECK_INT_EQ(db->present[r * db->n_columns + cb] != 0, present);
            if (present) {
                CHECK_NEAR(db->values[r * db->n_columns + cb], da->values[r * da->n_columns + ca],
                           0.0);
            }
        }
    }

    mr_runlog_data_free(da);
    mr_runlog_data_free(db);
}

/* Compares the final checkpoints, outputs and logs of runs a and b. */
static void check_same_runs(mr_rl_algorithm algorithm, const char *a, const char *b) {
    CHECK(same_file(a, b, "checkpoints/step-00000004/model.safetensors"));
    CHECK(same_file(a, b, "checkpoints/step-00000004/optimizer.safetensors"));
    CHECK(same_file(a, b, "checkpoints/step-00000004/state.json"));
    CHECK(same_file(a, b, "model.gguf"));
    if (algorithm == MR_RL_PPO) {
        CHECK(same_file(a, b, "checkpoints/step-00000004/value_head.safetensors"));
        CHECK(same_file(a, b, "value_head.safetensors"));
    }
    CHECK(has_file(a, "done"));
    CHECK(has_file(b, "done"));
    check_same_metrics(a, b);
}

/* A run stopped after step 3 resumes from its step-2 checkpoint to the
 * bytes of the uninterrupted run, repeating step 3. */
static void stopped_run_resumes_exactly(mr_rl_algorithm algorithm) {
    const char *name = algorithm == MR_RL_GRPO ? "grpo" : "ppo";
    char whole[256], stopped[256];
    snprintf(whole, sizeof whole, "%s/%s-whole", base_dir, name);
    snprintf(stopped, sizeof stopped, "%s/%s-stopped", base_dir, name);

    mr_rl_run_options o = run_options(algorithm, whole);
    mr_rl_result whole_result;
    run(&o, &whole_result);
    CHECK_INT_EQ(whole_result.steps_done, 4);

    o = run_options(algorithm, stopped);
    o.stop_after = 3;
    mr_rl_result result;
    run(&o, &result);
    CHECK_INT_EQ(result.steps_done, 3);
    CHECK(!has_file(stopped, "done"));
    CHECK(!has_file(stopped, "model.gguf"));
    CHECK(has_file(stopped, "checkpoints/step-00000002/state.json"));
    size_t step2_size = 0;
    void *step2 = read_file(stopped, "checkpoints/step-00000002/model.safetensors", &step2_size);
    CHECK(step2 != NULL);

    o = run_options(algorithm, stopped);
    o.resume = true;
    run(&o, &result);
    CHECK_INT_EQ(result.steps_done, 4);
    CHECK(result.initial_success == whole_result.initial_success);
    CHECK(result.best_success == whole_result.best_success);
    CHECK(result.final_success == whole_result.final_success);
    check_same_runs(algorithm, whole, stopped);
    CHECK(!has_file(stopped, "checkpoints/step-00000002"));

    /* Steps 3 and 4 changed the weights, so the resume had work to do. */
    size_t final_size = 0;
    void *final = read_file(stopped, "checkpoints/step-00000004/model.safetensors", &final_size);
    CHECK(final != NULL);
    CHECK_INT_EQ(final_size, step2_size);
    if (final != NULL && step2 != NULL && final_size == step2_size) {
        CHECK(memcmp(final, step2, step2_size) != 0);
    }
    free(step2);
    free(final);
}

/* A stop callback that requests a stop at its third call, which comes
 * after step 3 of a run from step 0. */
static bool stop_at_third_call(void *user_data) {
    int *calls = user_data;
    *calls += 1;
    return *calls == 3;
}

/* A stop request after step 3 writes a checkpoint there, and the resume
 * reaches the bytes of the uninterrupted run. Runs after the GRPO case
 * above, whose uninterrupted run it compares with. */
static void grpo_interrupted_run_resumes_exactly(void) {
    char whole[256], interrupted[256];
    snprintf(whole, sizeof whole, "%s/grpo-whole", base_dir);
    snprintf(interrupted, sizeof interrupted, "%s/grpo-interrupted", base_dir);

    mr_rl_run_options o = run_options(MR_RL_GRPO, interrupted);
    int calls = 0;
    o.stop = stop_at_third_call;
    o.stop_user_data = &calls;
    mr_rl_result result;
    mr_error err;
    CHECK_STATUS(mr_rl_run(&o, &result, &err), MR_ERR_INTERRUPTED);
    CHECK(strstr(err.message, "after step 3 of 4") != NULL);
    CHECK(strstr(err.message, "--resume") != NULL);
    CHECK(has_file(interrupted, "checkpoints/step-00000003/state.json"));
    CHECK(!has_file(interrupted, "done"));
    CHECK(!has_file(interrupted, "model.gguf"));

    o = run_options(MR_RL_GRPO, interrupted);
    o.resume = true;
    run(&o, &result);
    CHECK_INT_EQ(result.steps_done, 4);
    check_same_runs(MR_RL_GRPO, whole, interrupted);
}

static void grpo_stopped_run_resumes_exactly(void) {
    stopped_run_resumes_exactly(MR_RL_GRPO);
}

static void ppo_stopped_run_resumes_exactly(void) {
    stopped_run_resumes_exactly(MR_RL_PPO);
}

/* A finished 2-step run resumed with 4 steps loses its done marker until
 * step 4 and ends as the 4-step run does. Runs after the GRPO case above,
 * whose uninterrupted run it compares with. */
static void finished_run_extends_exactly(void) {
    char whole[256], extended[256];
    snprintf(whole, sizeof whole, "%s/grpo-whole", base_dir);
    snprintf(extended, sizeof extended, "%s/grpo-extended", base_dir);

    mr_rl_run_options o = run_options(MR_RL_GRPO, extended);
    o.rl.steps = 2;
    mr_rl_result result;
    run(&o, &result);
    CHECK(has_file(extended, "done"));

    o = run_options(MR_RL_GRPO, extended);
    o.resume = true;
    o.stop_after = 3;
    run(&o, &result);
    CHECK_INT_EQ(result.steps_done, 3);
    CHECK(!has_file(extended, "done"));

    o.stop_after = 0;
    run(&o, &result);
    check_same_runs(MR_RL_GRPO, whole, extended);
}

/* A new run into a checkpointed folder, and a resume that changes a
 * setting or lowers steps, fail with MR_ERR_STATE and change nothing. */
static void run_folder_rules(void) {
    char whole[256];
    snprintf(whole, sizeof whole, "%s/ppo-whole", base_dir);
    size_t size_before = 0;
    void *before = read_file(whole, "metrics.jsonl", &size_before);
    CHECK(before != NULL);

    mr_rl_run_options o = run_options(MR_RL_PPO, whole);
    mr_error err;
    mr_rl_result result;
    CHECK_STATUS(mr_rl_run(&o, &result, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "already contains a finished run (done)") != NULL);

    o.resume = true;
    o.rl.vf_coef = 0.25f;
    o.rl.seed = 12;
    CHECK_STATUS(mr_rl_run(&o, &result, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "vf_coef (stored 0.5, now 0.25)") != NULL);
    CHECK(strstr(err.message, "seed (stored 11, now 12)") != NULL);
    CHECK(strstr(err.message, "may raise steps") != NULL);

    o = run_options(MR_RL_PPO, whole);
    o.resume = true;
    o.rl.steps = 3;
    CHECK_STATUS(mr_rl_run(&o, &result, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "steps (stored 4, now 3)") != NULL);

    size_t size_after = 0;
    void *after = read_file(whole, "metrics.jsonl", &size_after);
    CHECK(after != NULL);
    CHECK_INT_EQ(size_after, size_before);
    if (after != NULL && before != NULL && size_after == size_before) {
        CHECK(memcmp(after, before, size_before) == 0);
    }
    free(before);
    free(after);
}

/* OUT/config.json stores GRPO's group filter, so a resume that turns it
 * on or changes its draw limit fails. Runs after the GRPO case above,
 * which leaves a finished run without the filter. */
static void grpo_resume_checks_filter(void) {
    char whole[256];
    snprintf(whole, sizeof whole, "%s/grpo-whole", base_dir);
    size_t size = 0;
    void *stored = read_file(whole, "config.json", &size);
    CHECK(stored != NULL);
    char *config = calloc(size + 1, 1);
    if (stored != NULL && config != NULL) {
        memcpy(config, stored, size);
        CHECK(strstr(config, "\"filter_groups\": false,") != NULL);
        CHECK(strstr(config, "\"max_prompt_draws\": 0,") != NULL);
    }
    free(stored);
    free(config);

    mr_rl_run_options o = run_options(MR_RL_GRPO, whole);
    o.resume = true;
    o.rl.filter_groups = true;
    o.rl.max_prompt_draws = 4;
    mr_error err;
    mr_rl_result result;
    CHECK_STATUS(mr_rl_run(&o, &result, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "filter_groups (stored false, now true)") != NULL);
    CHECK(strstr(err.message, "max_prompt_draws (stored 0, now 4)") != NULL);
}

/* An invalid option fails before any file is read or folder created. */
static void invalid_option_rejected(void) {
    char out[256];
    snprintf(out, sizeof out, "%s/invalid/run", base_dir);
    mr_rl_run_options o = run_options(MR_RL_GRPO, out);
    o.task = "chess";
    mr_error err;
    CHECK_STATUS(mr_rl_run(&o, NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "task is \"chess\"") != NULL);
    o = run_options(MR_RL_GRPO, out);
    o.train_path = NULL;
    CHECK_STATUS(mr_rl_run(&o, NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "train (the problems to train on") != NULL);
    CHECK(!has_file(base_dir, "invalid"));
}

int main(void) {
    mr_log_set_level(MR_LOG_WARN);
    snprintf(base_dir, sizeof base_dir, "/tmp/mr_test_rl_resume_%d", (int)getpid());
    snprintf(problems_path, sizeof problems_path, "%s/problems.jsonl", base_dir);
    snprintf(model_path, sizeof model_path, "%s/tiny.gguf", base_dir);
    char command[600];
    snprintf(command, sizeof command, "mkdir -p '%s'", base_dir);
    if (system(command) != 0) {
        return 1;
    }
    write_problems(problems_path);
    write_tiny_model(model_path);

    MR_RUN(grpo_stopped_run_resumes_exactly);
    MR_RUN(ppo_stopped_run_resumes_exactly);
    MR_RUN(grpo_interrupted_run_resumes_exactly);
    MR_RUN(finished_run_extends_exactly);
    MR_RUN(run_folder_rules);
    MR_RUN(grpo_resume_checks_filter);
    MR_RUN(invalid_option_rejected);

    snprintf(command, sizeof command, "rm -rf '%s'", base_dir);
    CHECK_INT_EQ(system(command), 0);
    return mr_test_finish();
}
