/*
 * Tests of the run folder rules of mr_train_run: a new run does not
 * replace a finished or checkpointed one, a resume keeps the settings
 * that change the result, the default warm-up fits short runs, a failed
 * run removes the folders it created, a folder locked by another process
 * is rejected, and the log lines count the held-out examples.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "multiround/train.h"
#include "test.h"

static char base_dir[128], data_path[256], bad_data_path[256];

/* Writes 30 prompt/completion rows, and a file whose second row is cut. */
static void write_data(void) {
    FILE *f = fopen(data_path, "w");
    for (int i = 0; i < 30; i++) {
        fprintf(f, "{\"prompt\": \"Once upon a time, Tom\", \"completion\": \" went %s.\"}\n",
                i % 2 ? "home" : "to the park");
    }
    fclose(f);
    f = fopen(bad_data_path, "w");
    fprintf(f, "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"compl\n");
    fclose(f);
}

/* A 2-step SFT run of the stories260K model into base_dir/name. */
static mr_train_options short_run(const char *name, char *out, size_t size) {
    snprintf(out, size, "%s/%s", base_dir, name);
    mr_train_options o;
    mr_train_options_default(&o, MR_TRAIN_SFT);
    o.model_path = "data/lm/stories260K.gguf";
    o.data_path = data_path;
    o.out_dir = out;
    o.max_steps = 2;
    o.batch_size = 2;
    o.max_length = 32;
    o.checkpoint_every = 1;
    o.lr = 1e-3f;
    return o;
}

/* Returns the bytes of base/name as a string (free it), or NULL. */
static char *read_text(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *data = NULL;
    size_t size = 0;
    mr_error err;
    return mr_file_read_all(path, 1u << 20, &data, &size, &err) == MR_OK ? data : NULL;
}

/* True when dir/name exists. */
static bool exists(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return mr_path_exists(path);
}

/* Runs o and checks that it succeeds, printing the error if not. */
static void run_ok(const mr_train_options *o, mr_train_result *result) {
    mr_error err;
    mr_status status = mr_train_run(o, result, &err);
    CHECK_STATUS(status, MR_OK);
    if (status != MR_OK) {
        fprintf(stderr, "%s\n", err.message);
    }
}

/* The default warm-up of 10 steps shrinks to a 2-step run, and
 * config.json records the steps used. */
static void default_warmup_fits_short_run(void) {
    char out[256];
    mr_train_options o = short_run("warmup", out, sizeof out);
    mr_train_result result;
    run_ok(&o, &result);
    CHECK_INT_EQ(result.steps, 2);
    char *config = read_text(out, "config.json");
    CHECK(config != NULL && strstr(config, "\"warmup_steps\": 2,") != NULL);
    free(config);
}

/* A warm-up set longer than the run is an error that names both keys. */
static void explicit_warmup_longer_than_run_fails(void) {
    char out[256];
    mr_train_options o = short_run("warmup-long", out, sizeof out);
    o.warmup_steps = 10;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "config key 'warmup_steps' (10) is larger than max_steps (2)") !=
          NULL);
    CHECK(!mr_path_exists(out));
}

/* An invalid option is reported with the data file's first bad row. */
static void invalid_option_also_reports_data(void) {
    char out[256];
    mr_train_options o = short_run("bad-both", out, sizeof out);
    o.lr = -1.0f;
    o.data_path = bad_data_path;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "train: config key 'lr' is -1; it must be finite and >= 0") !=
          NULL);
    CHECK(strstr(err.message, "the data has an error too") != NULL);
    CHECK(strstr(err.message, ":2:") != NULL);
}

/* Every invalid option is reported in one message, and the run creates
 * no folder. */
static void every_invalid_option_reported(void) {
    char out[256];
    mr_train_options o = short_run("bad-many", out, sizeof out);
    o.batch_size = 0;
    o.max_steps = 0;
    o.lr = -1.0f;
    o.adam_beta2 = 1.0;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "config key 'batch_size' is 0; it must be in [1, 4096]") != NULL);
    CHECK(strstr(err.message, "; config key 'max_steps' is 0; it must be >= 1") != NULL);
    CHECK(strstr(err.message, "; config key 'lr' is -1; it must be finite and >= 0") != NULL);
    CHECK(strstr(err.message, "; config key 'adam_beta2' is 1; it must be in [0, 1)") != NULL);
    CHECK(strstr(err.message, "min_lr") == NULL);
    CHECK(!mr_path_exists(out));
}

/* A new run into a finished run's folder fails and leaves it as it was. */
static void new_run_rejects_finished_folder(void) {
    char out[256];
    mr_train_options o = short_run("finished", out, sizeof out);
    run_ok(&o, NULL);
    char *before = read_text(out, "config.json");

    o.lr = 2e-3f;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, out) != NULL);
    CHECK(strstr(err.message, "already contains a finished run (done)") != NULL);
    CHECK(strstr(err.message, "--resume") != NULL);
    char *after = read_text(out, "config.json");
    CHECK(before != NULL);
    CHECK(after != NULL);
    if (before != NULL && after != NULL) {
        CHECK_STR_EQ(after, before);
    }
    CHECK(exists(out, "done"));
    free(before);
    free(after);
}

/* A new run into a folder with a checkpoint but no done marker fails. */
static void new_run_rejects_checkpointed_folder(void) {
    char out[256];
    mr_train_options o = short_run("stopped", out, sizeof out);
    o.stop_after = 1;
    run_ok(&o, NULL);
    CHECK(exists(out, "checkpoint.json"));
    CHECK(!exists(out, "done"));

    o.stop_after = 0;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "already contains a started run (checkpoint.json)") != NULL);
}

/* A resume with other settings names every key that differs and
 * changes nothing. */
static void resume_rejects_changed_settings(void) {
    char out[256];
    mr_train_options o = short_run("changed", out, sizeof out);
    o.stop_after = 1;
    run_ok(&o, NULL);
    char *before = read_text(out, "config.json");

    o.stop_after = 0;
    o.resume = true;
    o.lr = 5e-3f;
    o.batch_size = 3;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "lr (stored 0.001, now 0.005)") != NULL);
    CHECK(strstr(err.message, "batch_size (stored 2, now 3)") != NULL);
    CHECK(strstr(err.message, "max_steps (") == NULL);

    o = short_run("changed", out, sizeof out);
    o.resume = true;
    o.max_steps = 1;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "max_steps (stored 2, now 1)") != NULL);

    char *after = read_text(out, "config.json");
    CHECK(before != NULL);
    CHECK(after != NULL);
    if (before != NULL && after != NULL) {
        CHECK_STR_EQ(after, before);
    }
    free(before);
    free(after);
}

/* A finished run resumes to more steps with other log and checkpoint
 * intervals, and keeps its resolved warm-up. */
static void resume_extends_finished_run(void) {
    char out[256];
    mr_train_options o = short_run("extended", out, sizeof out);
    run_ok(&o, NULL);

    o.resume = true;
    o.max_steps = 4;
    o.log_every = 2;
    o.checkpoint_every = 2;
    mr_train_result result;
    run_ok(&o, &result);
    CHECK_INT_EQ(result.steps, 4);
    CHECK(exists(out, "done"));
    CHECK(exists(out, "checkpoints/step-00000004/state.json"));
    char *config = read_text(out, "config.json");
    CHECK(config != NULL && strstr(config, "\"max_steps\": 4,") != NULL);
    CHECK(config != NULL && strstr(config, "\"warmup_steps\": 2,") != NULL);
    free(config);
}

/* A run that fails before its first checkpoint removes the folders it
 * created, but not a folder that existed before it. */
static void failed_run_removes_created_folders(void) {
    char out[256], top[256];
    mr_train_options o = short_run("created/a/b", out, sizeof out);
    snprintf(top, sizeof top, "%s/created", base_dir);
    o.data_path = bad_data_path;
    mr_error err;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":2:") != NULL);
    CHECK(!mr_path_exists(top));

    o = short_run("kept", out, sizeof out);
    o.data_path = bad_data_path;
    CHECK_STATUS(mr_make_dirs(out, &err), MR_OK);
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_FORMAT);
    CHECK(mr_path_exists(out));
}

/* A run rejects a folder that another process has locked, and changes
 * nothing in it. Once the lock is released, a resume removes what a
 * killed writer left. */
static void run_rejects_locked_folder(void) {
    char out[256];
    mr_train_options o = short_run("locked", out, sizeof out);
    run_ok(&o, NULL);
    char *before = read_text(out, "config.json");

    mr_folder_lock *other = NULL;
    mr_error err;
    CHECK_STATUS(mr_folder_lock_take(out, &other, &err), MR_OK);
    o.resume = true;
    o.max_steps = 3;
    CHECK_STATUS(mr_train_run(&o, NULL, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, out) != NULL);
    CHECK(strstr(err.message, "in use") != NULL);
    CHECK(exists(out, "done"));
    char *after = read_text(out, "config.json");
    CHECK(before != NULL);
    CHECK(after != NULL);
    if (before != NULL && after != NULL) {
        CHECK_STR_EQ(after, before);
    }
    mr_folder_lock_release(other);

    /* Temporary files as a killed writer leaves them, at the top and in
     * a checkpoint folder. */
    char path[512];
    snprintf(path, sizeof path, "%s/.config.json.tmp.999999999.0", out);
    CHECK_STATUS(mr_file_write_atomic(path, "{", 1, &err), MR_OK);
    snprintf(path, sizeof path, "%s/checkpoints/step-00000002/.state.json.tmp.999999999.1",
             out);
    CHECK_STATUS(mr_file_write_atomic(path, "{", 1, &err), MR_OK);
    mr_train_result result;
    run_ok(&o, &result);
    CHECK_INT_EQ(result.steps, 3);
    CHECK(!exists(out, ".config.json.tmp.999999999.0"));
    CHECK(!mr_path_exists(path));
    free(before);
    free(after);
}

/* Log lines captured by capture_log. */
static char captured[8192];

static void capture_log(mr_log_level level, const char *subsystem, const char *message,
                        void *user_data) {
    (void)level;
    (void)user_data;
    size_t used = strlen(captured);
    snprintf(captured + used, sizeof captured - used, "%s: %s\n", subsystem, message);
}

/* The data line counts every held-out example and those evaluated, and
 * SFT's evaluation lines have no accuracy. */
static void log_counts_held_out_examples(void) {
    char out[256];
    mr_train_options o = short_run("counts", out, sizeof out);
    o.eval_every_nth = 5;
    o.eval_max_examples = 2;
    captured[0] = '\0';
    mr_log_set_level(MR_LOG_INFO);
    mr_log_set_callback(capture_log, NULL);
    run_ok(&o, NULL);
    mr_log_set_callback(NULL, NULL);
    mr_log_set_level(MR_LOG_WARN);

    CHECK(strstr(captured, "24 training and 6 held-out examples, of which 2 are evaluated "
                           "(eval_max_examples 2)") != NULL);
    CHECK(strstr(captured, "step 2: eval loss ") != NULL);
    CHECK(strstr(captured, "accuracy") == NULL);
}

int main(void) {
    mr_log_set_level(MR_LOG_WARN);
    snprintf(base_dir, sizeof base_dir, "/tmp/mr_test_run_dir_%d", (int)getpid());
    snprintf(data_path, sizeof data_path, "%s/sft.jsonl", base_dir);
    snprintf(bad_data_path, sizeof bad_data_path, "%s/cut.jsonl", base_dir);
    mr_error err;
    if (mr_make_dirs(base_dir, &err) != MR_OK) {
        return 1;
    }
    write_data();

    MR_RUN(default_warmup_fits_short_run);
    MR_RUN(explicit_warmup_longer_than_run_fails);
    MR_RUN(invalid_option_also_reports_data);
    MR_RUN(every_invalid_option_reported);
    MR_RUN(new_run_rejects_finished_folder);
    MR_RUN(new_run_rejects_checkpointed_folder);
    MR_RUN(resume_rejects_changed_settings);
    MR_RUN(resume_extends_finished_run);
    MR_RUN(failed_run_removes_created_folders);
    MR_RUN(run_rejects_locked_folder);
    MR_RUN(log_counts_held_out_examples);

    char command[300];
    snprintf(command, sizeof command, "rm -rf '%s'", base_dir);
    CHECK_INT_EQ(system(command), 0);
    return mr_test_finish();
}
