/*
 * Tests that a stopped or killed run resumes exactly: the final weights
 * and optimizer state are byte for byte those of a run that was never
 * interrupted, and the metrics log has one line per step with the same
 * losses.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "multiround/runlog.h"
#include "multiround/train.h"
#include "test.h"

/* Writes 30 prompt/completion rows and 30 preference pairs. */
static void write_data(const char *sft_path, const char *pairs_path) {
    static const char *const names[] = {"Tom", "Lily", "Ben", "Sue", "Max", "Mia"};
    FILE *sft = fopen(sft_path, "w");
    FILE *pairs = fopen(pairs_path, "w");
    for (int i = 0; i < 30; i++) {
        fprintf(sft, "{\"prompt\": \"Once upon a time, %s\", \"completion\": \" went %s.\"}\n",
                names[i % 6], i % 2 ? "home" : "to the park");
        fprintf(pairs,
                "{\"prompt\": \"%s had a ball.\", \"chosen\": \" It was red.\", \"rejected\": "
                "\" It was %s.\"}\n",
                names[i % 6], i % 3 ? "lost" : "broken");
    }
    fclose(sft);
    fclose(pairs);
}

/* Options of the two runs: full SFT with accumulation, and LoRA DPO with
 * the adapter-off reference. */
static mr_train_options run_options(mr_train_kind kind, const char *data, const char *out) {
    mr_train_options o;
    mr_train_options_default(&o, kind);
    o.model_path = "data/lm/stories260K.gguf";
    o.data_path = data;
    o.out_dir = out;
    o.eval_every_nth = 6;
    o.eval_every = 3;
    o.max_steps = 8;
    o.batch_size = 3;
    o.checkpoint_every = 2;
    o.warmup_steps = 2;
    if (kind == MR_TRAIN_SFT) {
        o.grad_accum = 2;
        o.lr = 1e-3f;
    } else {
        o.lora = true;
        o.reference = MR_DPO_REFERENCE_ADAPTER_OFF;
        o.sft_weight = 0.1f;
        o.lr = 5e-3f;
    }
    return o;
}

/* True when the files a/name and b/name have the same bytes. */
static bool same_file(const char *a, const char *b, const char *name) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    void *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    mr_error err;
    bool same = mr_file_read_all(pa, 1u << 26, &da, &na, &err) == MR_OK &&
                mr_file_read_all(pb, 1u << 26, &db, &nb, &err) == MR_OK && na == nb &&
                memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

/* Checks that two metrics logs have the same steps and losses. */
static void check_same_losses(const char *a, const char *b) {
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
    CHECK_INT_EQ(db->n_rows, da->n_rows);
    static const char *const names[] = {"loss", "eval/loss", "grad_norm"};
    for (int64_t r = 0; r < da->n_rows && r < db->n_rows; r++) {
        CHECK_INT_EQ(db->steps[r], da->steps[r]);
        for (int k = 0; k < 3; k++) {
            int ca = mr_runlog_data_column(da, names[k]), cb = mr_runlog_data_column(db, names[k]);
            if (ca < 0 || cb < 0) {
                continue;
            }
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

/* Runs o and reports a failure with the error message. */
static void run(const mr_train_options *o) {
    mr_error err;
    mr_status status = mr_train_run(o, NULL, &err);
    CHECK_STATUS(status, MR_OK);
    if (status != MR_OK) {
        fprintf(stderr, "%s\n", err.message);
    }
}

/* Compares the final checkpoints and logs of runs a and b of kind. */
static void check_same_runs(mr_train_kind kind, const char *a, const char *b) {
    const char *weights = kind == MR_TRAIN_SFT ? "checkpoints/step-00000008/model.safetensors"
                                               : "checkpoints/step-00000008/lora.safetensors";
    CHECK(same_file(a, b, weights));
    CHECK(same_file(a, b, "checkpoints/step-00000008/optimizer.safetensors"));
    CHECK(same_file(a, b, "checkpoints/step-00000008/state.json"));
    CHECK(same_file(a, b, kind == MR_TRAIN_SFT ? "model.gguf"
                                               : "adapter/adapter_model.safetensors"));
    check_same_losses(a, b);
}

static char sft_data[512], pairs_data[512], base_dir[128];

/* A run killed with SIGKILL once its first checkpoint exists resumes to
 * the uninterrupted run's result. Runs first, before this process starts
 * OpenMP threads, so that the forked child may start its own. */
static void killed_run_resumes_exactly(void) {
    char whole[256], killed[256], pointer[300];
    snprintf(whole, sizeof whole, "%s/dpo-whole", base_dir);
    snprintf(killed, sizeof killed, "%s/dpo-killed", base_dir);
    snprintf(pointer, sizeof pointer, "%s/checkpoint.json", killed);

    pid_t child = fork();
    if (child == 0) {
        mr_train_options o = run_options(MR_TRAIN_DPO, pairs_data, killed);
        _exit(mr_train_run(&o, NULL, NULL) == MR_OK ? 0 : 1);
    }
    CHECK(child > 0);
    struct timespec pause = {0, 2000000};
    for (int i = 0; i < 30000 && access(pointer, F_OK) != 0; i++) {
        nanosleep(&pause, NULL);
    }
    kill(child, SIGKILL);
    int wstatus = 0;
    waitpid(child, &wstatus, 0);
    CHECK(access(pointer, F_OK) == 0);
    char done[300];
    snprintf(done, sizeof done, "%s/done", killed);
    CHECK(access(done, F_OK) != 0);

    mr_train_options o = run_options(MR_TRAIN_DPO, pairs_data, killed);
    o.resume = true;
    run(&o);
    o = run_options(MR_TRAIN_DPO, pairs_data, whole);
    run(&o);
    check_same_runs(MR_TRAIN_DPO, whole, killed);
}

/* A run stopped after step 3 (its checkpoint is at step 2) resumes to the
 * uninterrupted run's result, repeating step 3. */
static void stopped_run_resumes_exactly(void) {
    char whole[256], stopped[256];
    snprintf(whole, sizeof whole, "%s/sft-whole", base_dir);
    snprintf(stopped, sizeof stopped, "%s/sft-stopped", base_dir);

    mr_train_options o = run_options(MR_TRAIN_SFT, sft_data, stopped);
    o.stop_after = 3;
    mr_train_result r;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, &r, &err), MR_OK);
    CHECK_INT_EQ(r.steps, 3);
    char done[300];
    snprintf(done, sizeof done, "%s/done", stopped);
    CHECK(access(done, F_OK) != 0);

    o = run_options(MR_TRAIN_SFT, sft_data, stopped);
    o.resume = true;
    run(&o);
    CHECK(access(done, F_OK) == 0);
    o = run_options(MR_TRAIN_SFT, sft_data, whole);
    run(&o);
    check_same_runs(MR_TRAIN_SFT, whole, stopped);
}

/* A stop callback that requests a stop at its third call, which comes
 * after step 3 of a run from step 0. */
static bool stop_at_third_call(void *user_data) {
    int *calls = user_data;
    *calls += 1;
    return *calls == 3;
}

/* A stop request after step 3 keeps that step in a checkpoint, and the
 * resume continues from it to the uninterrupted run's result. */
static void interrupted_run_resumes_exactly(void) {
    char whole[256], interrupted[256];
    snprintf(whole, sizeof whole, "%s/sft-whole-2", base_dir);
    snprintf(interrupted, sizeof interrupted, "%s/sft-interrupted", base_dir);

    mr_train_options o = run_options(MR_TRAIN_SFT, sft_data, interrupted);
    int calls = 0;
    o.stop = stop_at_third_call;
    o.stop_user_data = &calls;
    mr_train_result r;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, &r, &err), MR_ERR_INTERRUPTED);
    CHECK(strstr(err.message, "after step 3 of 8") != NULL);
    CHECK(strstr(err.message, "--resume") != NULL);
    char path[300];
    snprintf(path, sizeof path, "%s/checkpoints/step-00000003/state.json", interrupted);
    CHECK(access(path, F_OK) == 0);
    snprintf(path, sizeof path, "%s/done", interrupted);
    CHECK(access(path, F_OK) != 0);

    o = run_options(MR_TRAIN_SFT, sft_data, interrupted);
    o.resume = true;
    run(&o);
    CHECK(access(path, F_OK) == 0);
    o = run_options(MR_TRAIN_SFT, sft_data, whole);
    run(&o);
    check_same_runs(MR_TRAIN_SFT, whole, interrupted);
}

int main(void) {
    mr_log_set_level(MR_LOG_WARN);
    snprintf(base_dir, sizeof base_dir, "/tmp/mr_test_resume_%d", (int)getpid());
    snprintf(sft_data, sizeof sft_data, "%s/sft.jsonl", base_dir);
    snprintf(pairs_data, sizeof pairs_data, "%s/pairs.jsonl", base_dir);
    char command[600];
    snprintf(command, sizeof command, "mkdir -p '%s'", base_dir);
    if (system(command) != 0) {
        return 1;
    }
    write_data(sft_data, pairs_data);

    MR_RUN(killed_run_resumes_exactly);
    MR_RUN(stopped_run_resumes_exactly);
    MR_RUN(interrupted_run_resumes_exactly);

    snprintf(command, sizeof command, "rm -rf '%s'", base_dir);
    CHECK_INT_EQ(system(command), 0);
    return mr_test_finish();
}
