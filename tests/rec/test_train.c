/*
 * Recommendation training, evaluation and recommendation: a short run on a
 * synthetic dataset with a learnable pattern, resuming after an
 * interruption, full-ranking metrics of a model whose scores are set by
 * hand, recommendations that skip the user's history, and the checks on
 * a run folder's settings.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "multiround/fileio.h"
#include "multiround/rec.h"
#include "multiround/safetensors.h"
#include "test.h"
#include "trainer.h"

/* Synthetic data: 200 items, and each user views a run of 5 to 9
 * consecutive ids (wrapping from 200 to 1), so the next item is always the
 * last one + 1. */
#define SYNTH_ITEMS 200

/* A random ranking puts the target in the top 50 with probability
 * 50 / n_items, or 50 / 195 once the user's 5 or so other items are
 * excluded from the 200 candidates. */
#define RANDOM_HIT50 (50.0 / 195.0)

static char temp_root[64];

static int remove_entry(const char *path, const struct stat *info, int flag, struct FTW *ftw) {
    (void)info;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Makes a fresh folder under the test's temporary root. */
static void temp_dir(const char *name, char *out, size_t size) {
    snprintf(out, size, "%s/%s", temp_root, name);
    nftw(out, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_text(const char *path, const char *text) {
    mr_error err;
    CHECK_STATUS(mr_file_write_atomic(path, text, strlen(text), &err), MR_OK);
}

/* Writes and loads the synthetic dataset with the given number of users. */
static mr_rec_data *synthetic_data(int users) {
    char path[128];
    snprintf(path, sizeof path, "%s/synthetic_%d.txt", temp_root, users);
    FILE *file = fopen(path, "w");
    mr_rng rng;
    mr_rng_init(&rng, 7);
    for (int user = 1; user <= users; user++) {
        int start = 1 + (int)mr_rng_below(&rng, SYNTH_ITEMS);
        int length = 5 + (int)mr_rng_below(&rng, 5);
        fprintf(file, "%d", user);
        for (int j = 0; j < length; j++) {
            fprintf(file, " %d", 1 + (start - 1 + j) % SYNTH_ITEMS);
        }
        fputc('\n', file);
    }
    fclose(file);

    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(path, &data, &err), MR_OK);
    return data;
}

/* A one-layer SASRec small enough to learn the pattern in two epochs of
 * 47 steps. */
static mr_rec_config small_config(void) {
    mr_rec_config config;
    mr_rec_config_default(&config, MR_REC_SASREC);
    config.dim = 16;
    config.max_len = 6;
    config.layers = 1;
    config.heads = 1;
    config.inner_size = 32;
    config.dropout = 0.1f;
    config.negatives = 10;
    config.rounds = 2;
    config.per_round = 10;
    return config;
}

static mr_rec_train_options small_options(const char *out_dir, int epochs) {
    mr_rec_train_options options;
    mr_rec_train_options_default(&options);
    options.out_dir = out_dir;
    options.epochs = epochs;
    options.batch_size = 64;
    options.lr = 1e-2f;
    options.patience = 50;
    options.seed = 11;
    return options;
}

/* Reads dir/name as JSON. */
static cJSON *read_json(const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *text = NULL;
    size_t size = 0;
    mr_error err;
    if (mr_file_read_all(path, 1 << 24, &text, &size, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "cannot read %s: %s", path, err.message);
        return NULL;
    }
    cJSON *json = cJSON_Parse(text);
    free(text);
    return json;
}

/* valid hit@50 of history entry epoch in a metrics.json. */
static double valid_hit50(const cJSON *metrics, int epoch) {
    const cJSON *entry = cJSON_GetArrayItem(cJSON_GetObjectItem(metrics, "epochs"), epoch);
    const cJSON *hit = cJSON_GetObjectItem(cJSON_GetObjectItem(entry, "valid"), "hit@50");
    return cJSON_IsNumber(hit) ? hit->valuedouble : -1.0;
}

/* True when dir_a/name and dir_b/name hold the same bytes. */
static bool same_file(const char *dir_a, const char *dir_b, const char *name) {
    char path_a[256], path_b[256];
    snprintf(path_a, sizeof path_a, "%s/%s", dir_a, name);
    snprintf(path_b, sizeof path_b, "%s/%s", dir_b, name);
    void *a = NULL, *b = NULL;
    size_t size_a = 0, size_b = 0;
    mr_error err;
    bool same = mr_file_read_all(path_a, 1 << 26, &a, &size_a, &err) == MR_OK &&
                mr_file_read_all(path_b, 1 << 26, &b, &size_b, &err) == MR_OK &&
                size_a == size_b && memcmp(a, b, size_a) == 0;
    free(a);
    free(b);
    return same;
}

/* Fails the running test for each training output of dir_b that differs
 * from dir_a's, naming the file and what happened to dir_b's run. */
static void check_same_outputs(const char *dir_a, const char *dir_b, const char *after) {
    const char *files[] = {"metrics.json", "model.safetensors", "checkpoint.safetensors",
                           "done"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (!same_file(dir_a, dir_b, files[i])) {
            mr_test_fail(__FILE__, __LINE__, "%s differs after %s", files[i], after);
        }
    }
}

static bool file_exists(const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------------------
 * Training
 * ------------------------------------------------------------------------ */

static void train_learns_pattern(void) {
    mr_rec_data *data = synthetic_data(600);
    mr_rec_config config = small_config();
    char dir[128];
    temp_dir("learn", dir, sizeof dir);
    mr_rec_train_options options = small_options(dir, 4);
    mr_error err;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    CHECK(file_exists(dir, "config.json"));
    CHECK(file_exists(dir, "metrics.json"));
    CHECK(file_exists(dir, "model.safetensors"));
    CHECK(file_exists(dir, "checkpoint.safetensors"));
    CHECK(file_exists(dir, "done"));

    /* Epoch 0 validates the untrained model, near the random ranking, and
     * epoch 3 follows 3 epochs of training. A fifth validation measures the
     * last epoch's training, which the epoch limit ends. */
    cJSON *metrics = read_json(dir, "metrics.json");
    CHECK_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(metrics, "epochs")), 5);
    const cJSON *last = cJSON_GetArrayItem(cJSON_GetObjectItem(metrics, "epochs"), 4);
    CHECK_INT_EQ(cJSON_GetObjectItem(last, "epoch")->valueint, 4);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(last, "train_loss")));
    double untrained = valid_hit50(metrics, 0);
    double trained = valid_hit50(metrics, 3);
    printf("valid hit@50: untrained %.4f, after 3 epochs %.4f, random %.4f\n", untrained,
           trained, RANDOM_HIT50);
    CHECK(untrained < 1.5 * RANDOM_HIT50);
    CHECK(trained > 0.9);
    const cJSON *best_epoch = cJSON_GetObjectItem(metrics, "best_epoch");
    CHECK(cJSON_IsNumber(best_epoch) && best_epoch->valueint >= 2);

    /* Loading the best model gives the test figures metrics.json holds. */
    mr_rec_model *model = NULL;
    CHECK_STATUS(mr_rec_model_load(dir, data->n_items, &model, &err), MR_OK);
    mr_rec_metrics test;
    CHECK_STATUS(mr_rec_evaluate(model, data, MR_REC_TEST, &test, &err), MR_OK);
    const cJSON *saved = cJSON_GetObjectItem(cJSON_GetObjectItem(metrics, "test"), "hit@50");
    CHECK(cJSON_IsNumber(saved));
    CHECK(saved->valuedouble == test.hit[2]);
    CHECK_INT_EQ(test.users, 600);

    mr_rec_model_free(model);
    cJSON_Delete(metrics);
    mr_rec_data_free(data);
}

static void train_resume_matches_uninterrupted(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    mr_error err;
    char whole[128], extended[128], killed[128];
    temp_dir("whole", whole, sizeof whole);
    temp_dir("extended", extended, sizeof extended);
    temp_dir("killed", killed, sizeof killed);

    mr_rec_train_options options = small_options(whole, 4);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    /* A run that ended at 2 epochs, extended to 4. */
    options = small_options(extended, 2);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    options.epochs = 4;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    /* A run killed after epoch 1's checkpoint has no done marker. */
    options = small_options(killed, 2);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/done", killed);
    CHECK_INT_EQ(remove(path), 0);
    options.epochs = 4;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    check_same_outputs(whole, extended, "extending 2 to 4 epochs");
    check_same_outputs(whole, killed, "resuming a killed run");
    CHECK(same_file(whole, extended, "config.json"));
    CHECK(same_file(whole, killed, "config.json"));
    mr_rec_data_free(data);
}

/* Ends the process, as a kill would, when epoch 2's third batch has
 * been trained, so the checkpoint saved last stops at batch 2 of epoch 2. */
static void exit_in_epoch_2(const mr_rec_progress *progress, void *user_data) {
    (void)user_data;
    if (progress->epoch == 2 && strcmp(progress->phase, "train") == 0 &&
        progress->examples_done == 3 * 64) {
        _exit(0);
    }
}

/* The child of train_resume_within_epoch: trains in dir, saving after
 * every batch, until exit_in_epoch_2 ends the process. */
static int train_and_die(const char *dir) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    mr_rec_train_options options = small_options(dir, 4);
    options.checkpoint_minutes = 1e-9;
    options.progress = exit_in_epoch_2;
    mr_error err;
    mr_rec_train(data, &config, &options, &err);
    return 1;
}

static void train_resume_within_epoch(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    mr_error err;
    char whole[128], killed[128];
    temp_dir("whole_epochs", whole, sizeof whole);
    temp_dir("killed_in_epoch", killed, sizeof killed);
    mr_rec_train_options options = small_options(whole, 4);
    options.checkpoint_minutes = 0.0;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    /* A child saves after every batch and dies inside epoch 2. It is this
     * program started again, because a bare fork hung in the child's
     * first OpenMP parallel region: libgomp's worker threads stay in the
     * parent. */
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        execl("/proc/self/exe", "rec_test_train", "--train-and-die", temp_root, killed,
              (char *)NULL);
        _exit(127);
    }
    int wait_status = -1;
    CHECK(child > 0);
    CHECK_INT_EQ(waitpid(child, &wait_status, 0), child);
    CHECK(WIFEXITED(wait_status));
    CHECK_INT_EQ(WEXITSTATUS(wait_status), 0);

    char path[256];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", killed);
    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    CHECK_STR_EQ(mr_safetensors_metadata_get(file, "next_epoch"), "2");
    CHECK_STR_EQ(mr_safetensors_metadata_get(file, "next_batch"), "2");
    mr_safetensors_close(file);

    /* A temporary file of the ended child, as a kill during a write
     * leaves it, is removed on resume. */
    char stale[64];
    snprintf(stale, sizeof stale, ".model.safetensors.tmp.%ld.0", (long)child);
    snprintf(path, sizeof path, "%s/%s", killed, stale);
    write_text(path, "partial");

    /* The resumed run starts at that batch and ends where the whole run
     * ended. */
    options = small_options(killed, 4);
    options.checkpoint_minutes = 1e-9;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    check_same_outputs(whole, killed, "resuming within an epoch");
    CHECK(!file_exists(killed, stale));
    mr_rec_data_free(data);
}

/* Where stop_at_point requests the stop: once the progress of phase
 * ("train" or "valid") in epoch `epoch` reaches `examples` examples or
 * users. */
typedef struct stop_point {
    int epoch;
    int64_t examples;
    bool reached;
    const char *phase;
} stop_point;

static void watch_stop_point(const mr_rec_progress *progress, void *user_data) {
    stop_point *point = user_data;
    const char *phase = point->phase != NULL ? point->phase : "train";
    if (progress->epoch == point->epoch && strcmp(progress->phase, phase) == 0 &&
        progress->examples_done >= point->examples) {
        point->reached = true;
    }
}

static bool stop_at_point(void *user_data) {
    return ((const stop_point *)user_data)->reached;
}

/* Trains dir until point, checks the status and the checkpoint's position,
 * then resumes without a stop request. */
static void stop_then_resume(const mr_rec_data *data, const char *dir, stop_point point,
                             const char *next_epoch, const char *next_batch) {
    mr_rec_config config = small_config();
    mr_rec_train_options options = small_options(dir, 4);
    options.progress = watch_stop_point;
    options.progress_user_data = &point;
    options.stop = stop_at_point;
    options.stop_user_data = &point;
    mr_error err;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_ERR_INTERRUPTED);
    CHECK(strstr(err.message, dir) != NULL);
    CHECK(strstr(err.message, "rerun the same command") != NULL);
    CHECK(!file_exists(dir, "done"));
    CHECK(file_exists(dir, "config.json"));

    char path[256];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    if (next_epoch == NULL) {
        CHECK(!file_exists(dir, "checkpoint.safetensors"));
    } else {
        mr_safetensors *file = NULL;
        CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
        CHECK_STR_EQ(mr_safetensors_metadata_get(file, "next_epoch"), next_epoch);
        CHECK_STR_EQ(mr_safetensors_metadata_get(file, "next_batch"), next_batch);
        mr_safetensors_close(file);
    }

    options = small_options(dir, 4);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
}

static void train_stop_request_resumes(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    mr_error err;
    char whole[128], within[128], at_end[128], at_start[128], in_valid[128];
    temp_dir("whole_for_stops", whole, sizeof whole);
    temp_dir("stopped_within_epoch", within, sizeof within);
    temp_dir("stopped_after_epoch", at_end, sizeof at_end);
    temp_dir("stopped_at_start", at_start, sizeof at_start);
    temp_dir("stopped_in_validation", in_valid, sizeof in_valid);
    mr_rec_train_options options = small_options(whole, 4);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    /* Within epoch 2 the checkpoint keeps the next batch. After epoch 1's
     * last batch the epoch ends first. Before any training there is no
     * checkpoint. Each resumed run ends as the whole run did. */
    stop_then_resume(data, within, (stop_point){2, 3 * 64, false, NULL}, "2", "3");
    check_same_outputs(whole, within, "stopping within an epoch");
    stop_then_resume(data, at_end, (stop_point){1, data->n_train, false, NULL}, "2", "0");
    check_same_outputs(whole, at_end, "stopping after an epoch");
    stop_then_resume(data, at_start, (stop_point){0, 0, true, NULL}, NULL, NULL);
    check_same_outputs(whole, at_start, "stopping before the first epoch");

    /* A stop during the validation before epoch 2 keeps that validation
     * in the checkpoint, before any of the epoch's batches. */
    stop_then_resume(data, in_valid, (stop_point){2, 1, false, "valid"}, "2", "0");
    check_same_outputs(whole, in_valid, "stopping during a validation");
    mr_rec_data_free(data);
}

static void train_finished_run_left_alone(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    char dir[128];
    temp_dir("finished", dir, sizeof dir);
    mr_rec_train_options options = small_options(dir, 1);
    mr_error err;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    /* Rerunning reports the test figures and rewrites nothing, so a
     * replaced metrics.json stays as it is. */
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    write_text(path, "{\"epochs\": [], \"test\": {\"users\": 3, \"hit@10\": 0.25, \"hit@20\": 0.5, "
                     "\"hit@50\": 0.5, \"hit@100\": 1, \"ndcg@10\": 0.1, \"ndcg@20\": 0.2, "
                     "\"ndcg@50\": 0.2, \"ndcg@100\": 0.3}}\n");
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    cJSON *metrics = read_json(dir, "metrics.json");
    CHECK_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(metrics, "epochs")), 0);

    cJSON_Delete(metrics);
    mr_rec_data_free(data);
}

static void train_rejects_locked_folder(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    char dir[128];
    temp_dir("locked", dir, sizeof dir);
    mr_error err;
    CHECK_STATUS(mr_make_dirs(dir, &err), MR_OK);

    /* While another owner has the lock, training fails at once and
     * writes nothing. */
    mr_folder_lock *other = NULL;
    CHECK_STATUS(mr_folder_lock_take(dir, &other, &err), MR_OK);
    mr_rec_train_options options = small_options(dir, 1);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, dir) != NULL);
    CHECK(strstr(err.message, "in use") != NULL);
    CHECK(!file_exists(dir, "config.json"));

    /* Once the lock is released, training works and releases its own. */
    mr_folder_lock_release(other);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    CHECK(file_exists(dir, "done"));
    CHECK_STATUS(mr_folder_lock_take(dir, &other, &err), MR_OK);
    mr_folder_lock_release(other);
    mr_rec_data_free(data);
}

static void train_resume_rejects_changed_settings(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    char dir[128];
    temp_dir("mismatch", dir, sizeof dir);
    mr_rec_train_options options = small_options(dir, 1);
    mr_error err;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    options.batch_size = 128;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "train.batch_size = 64") != NULL);

    options = small_options(dir, 1);
    mr_rec_config narrow = config;
    narrow.dim = 8;
    CHECK_STATUS(mr_rec_train(data, &narrow, &options, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "model.dim = 16") != NULL);

    /* Other data is named with the file the run was started on. */
    mr_rec_data *other = synthetic_data(140);
    CHECK_STATUS(mr_rec_train(other, &config, &options, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "started with data from ") != NULL);
    CHECK(strstr(err.message, "synthetic_150.txt, which has data.n_users = 151, but this "
                              "run's data has 141 (the files differ") != NULL);
    mr_rec_data_free(other);

    /* A changed item adapter setting is rejected too. */
    mr_rec_config zero_padding = config;
    zero_padding.ada_zero_padding = true;
    CHECK_STATUS(mr_rec_train(data, &zero_padding, &options, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "model.ada_zero_padding = false") != NULL);

    /* A config.json written before ada_zero_padding existed lacks the key
     * and matches the default, false. */
    cJSON *json = read_json(dir, "config.json");
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(json, "model"), "ada_zero_padding");
    char *text = cJSON_Print(json);
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, text);
    cJSON_free(text);
    cJSON_Delete(json);

    /* More epochs and another patience are allowed. */
    options.epochs = 2;
    options.patience = 3;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    json = read_json(dir, "config.json");
    CHECK(cJSON_IsFalse(
        cJSON_GetObjectItem(cJSON_GetObjectItem(json, "model"), "ada_zero_padding")));
    cJSON_Delete(json);
    mr_rec_data_free(data);
}

/* Keeps the last warning logged. */
static char last_warning[1024];

static void keep_warning(mr_log_level level, const char *subsystem, const char *message,
                         void *user_data) {
    (void)subsystem;
    (void)user_data;
    if (level == MR_LOG_WARN) {
        snprintf(last_warning, sizeof last_warning, "%s", message);
    }
}

/* A folder with a config.json but no checkpoint starts over with the new
 * settings, and a warning names the first one that changed. */
static void train_without_checkpoint_warns(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    char first[128], second[128], path[256];
    temp_dir("warn_first", first, sizeof first);
    temp_dir("warn_second", second, sizeof second);
    mr_rec_train_options options = small_options(first, 1);
    mr_error err;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    cJSON *json = read_json(first, "config.json");
    char *text = cJSON_Print(json);
    CHECK_INT_EQ(mkdir(second, 0777), 0);
    snprintf(path, sizeof path, "%s/config.json", second);
    write_text(path, text);
    cJSON_free(text);
    cJSON_Delete(json);

    options = small_options(second, 1);
    options.batch_size = 128;
    last_warning[0] = '\0';
    mr_log_set_callback(keep_warning, NULL);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    mr_log_set_callback(NULL, NULL);
    CHECK(strstr(last_warning, "no checkpoint yet") != NULL);
    CHECK(strstr(last_warning, "train.batch_size = 64, but this run has 128") != NULL);
    mr_rec_data_free(data);
}

/* Another thread count gets a warning when a run resumes, but not when a
 * finished run only reports its figures again. */
static void train_thread_change_warns(void) {
    mr_rec_data *data = synthetic_data(150);
    mr_rec_config config = small_config();
    char dir[128];
    temp_dir("threads", dir, sizeof dir);
    int threads = mr_threads_get();
    mr_threads_set(1);
    mr_rec_train_options options = small_options(dir, 1);
    mr_error err;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    mr_threads_set(2);
    last_warning[0] = '\0';
    mr_log_set_callback(keep_warning, NULL);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    CHECK_STR_EQ(last_warning, "");

    options.epochs = 2;
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);
    mr_log_set_callback(NULL, NULL);
    CHECK(strstr(last_warning, "started with 1 thread and resumes with 2") != NULL);
    mr_threads_set(threads);
    mr_rec_data_free(data);
}

static void train_ada_from_base_run(void) {
    mr_rec_data *data = synthetic_data(600);
    mr_rec_config config = small_config();
    char base[128], ada[128], wrong[128], empty[128];
    temp_dir("base", base, sizeof base);
    temp_dir("ada", ada, sizeof ada);
    temp_dir("ada_wrong", wrong, sizeof wrong);
    temp_dir("empty", empty, sizeof empty);
    mr_error err;
    mr_rec_train_options options = small_options(base, 3);
    CHECK_STATUS(mr_rec_train(data, &config, &options, &err), MR_OK);

    /* Epoch 0 of stage 2 validates the base weights with fresh adapters.
     * Round 1 uses the backbone's user vector unchanged, so the list's
     * first 10 items are the base model's top 10 and hit@10 matches the
     * base run's best validation. The list holds rounds * per_round = 20
     * items, so hit@50 equals hit@20. */
    mr_rec_config ada_config = config;
    ada_config.ada = true;
    options = small_options(ada, 1);
    options.init_dir = base;
    CHECK_STATUS(mr_rec_train(data, &ada_config, &options, &err), MR_OK);
    cJSON *base_metrics = read_json(base, "metrics.json");
    cJSON *ada_metrics = read_json(ada, "metrics.json");
    int best = cJSON_GetObjectItem(base_metrics, "best_epoch")->valueint;
    const cJSON *base_valid = cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(base_metrics, "epochs"), best), "valid");
    const cJSON *ada_valid = cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(ada_metrics, "epochs"), 0), "valid");
    double base_hit10 = cJSON_GetObjectItem(base_valid, "hit@10")->valuedouble;
    CHECK(base_hit10 > 0.5);
    CHECK_NEAR(cJSON_GetObjectItem(ada_valid, "hit@10")->valuedouble, base_hit10, 0);
    CHECK_NEAR(cJSON_GetObjectItem(ada_valid, "hit@50")->valuedouble,
               cJSON_GetObjectItem(ada_valid, "hit@20")->valuedouble, 0);
    cJSON_Delete(base_metrics);
    cJSON_Delete(ada_metrics);

    /* An Ada-Retrieval run as --init gives its backbone, item embedding
     * and item bias, but not its adapters. Another seed makes this run's
     * fresh adapters differ from that run's. */
    mr_rec_train_options other_seed = options;
    other_seed.seed = options.seed + 1;
    rec_trainer tr = {.data = data, .config = &ada_config, .options = &other_seed};
    CHECK_STATUS(rec_trainer_create(&tr, &err), MR_OK);
    mr_rec_model *trained = NULL;
    CHECK_STATUS(mr_rec_model_load(ada, data->n_items, &trained, &err), MR_OK);
    mr_paramset *ps = mr_rec_model_params(tr.model);
    mr_tensor *flat = mr_paramset_flat(ps);
    float *fresh = malloc((size_t)mr_tensor_numel(flat) * sizeof(float));
    memcpy(fresh, flat->data, (size_t)mr_tensor_numel(flat) * sizeof(float));

    /* Without its done marker the run counts as unfinished, and loading
     * it warns that its weights are the best so far. */
    char done[256], kept[256];
    snprintf(done, sizeof done, "%s/done", ada);
    snprintf(kept, sizeof kept, "%s/done.kept", ada);
    CHECK_INT_EQ(rename(done, kept), 0);
    last_warning[0] = '\0';
    mr_log_set_callback(keep_warning, NULL);
    CHECK_STATUS(rec_trainer_load_init(&tr, ada, &err), MR_OK);
    mr_log_set_callback(NULL, NULL);
    CHECK(strstr(last_warning, "has not finished: its model.safetensors holds the best "
                               "weights so far") != NULL);
    CHECK_INT_EQ(rename(kept, done), 0);
    int adapters = 0, shared = 0;
    for (int i = 0; trained != NULL && i < mr_paramset_count(ps); i++) {
        const mr_tensor *weight = mr_paramset_get(ps, i);
        const mr_tensor *source = mr_paramset_find(mr_rec_model_params(trained), weight->name);
        int64_t n = mr_tensor_numel(weight);
        bool adapter = strncmp(weight->name, "ada.", 4) == 0;
        const float *want = adapter ? fresh + (weight->data - flat->data) : source->data;
        adapters += adapter;
        shared += !adapter;
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(weight->data, want, n, 0.0, 0.0), 0);
    }
    CHECK(adapters > 0);
    CHECK(shared > 0);
    free(fresh);
    mr_rec_model_free(trained);
    rec_trainer_free(&tr);

    /* A base run of another width, and a folder without a model. */
    mr_rec_config narrow = ada_config;
    narrow.dim = 8;
    options.out_dir = wrong;
    CHECK_STATUS(mr_rec_train(data, &narrow, &options, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "dim = 16") != NULL);
    CHECK_INT_EQ(mkdir(empty, 0777), 0);
    options.init_dir = empty;
    CHECK_STATUS(mr_rec_train(data, &ada_config, &options, &err), MR_ERR_NOT_FOUND);
    mr_rec_data_free(data);
}

/* ------------------------------------------------------------------------
 * Evaluation and recommendation of a model scored by its item bias
 * ------------------------------------------------------------------------ */

/*
 * Six users of three items [a, valid target, test target] over ids 1..150.
 * With the item embedding zero, every score is the bias, and bias[i] =
 * i / 1000 ranks higher ids first, so a target's rank is the number of
 * higher ids that are not in the user's other items:
 *
 *   user  items         test rank        valid rank
 *   1     1 2 145       150-145   = 5    148-1 (145) = 147
 *   2     3 4 135       150-135   = 15   146-1 (135) = 145
 *   3     5 6 110       150-110   = 40   144-1 (110) = 143
 *   4     7 8 70        150-70    = 80   142-1 (70)  = 141
 *   5     150 149 20    130-2     = 128  1-1 (150)   = 0
 *   6     10 140 141    9-1 (140) = 9    10-1 (141)  = 9
 */
static const char *const hand_lines = "1 1 2 145\n2 3 4 135\n3 5 6 110\n4 7 8 70\n"
                                      "5 150 149 20\n6 10 140 141\n";

static mr_rec_model *bias_model(const mr_rec_data *data, bool ada) {
    mr_rec_config config = small_config();
    config.ada = ada;
    config.rounds = 2;
    config.per_round = 5;
    mr_error err;
    mr_rec_model *model = mr_rec_model_create(&config, data->n_items, 3, &err);
    if (model == NULL) {
        mr_test_fail(__FILE__, __LINE__, "model: %s", err.message);
        return NULL;
    }
    mr_tensor *embedding = mr_rec_model_item_embedding(model);
    mr_tensor *bias = mr_rec_model_item_bias(model);
    memset(embedding->data, 0, (size_t)mr_tensor_numel(embedding) * sizeof(float));
    for (int32_t i = 0; i < data->n_items; i++) {
        bias->data[i] = (float)i / 1000.0f;
    }
    return model;
}

static mr_rec_data *hand_data(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/hand.txt", temp_root);
    write_text(path, hand_lines);
    mr_rec_data *data = NULL;
    mr_error err;
    CHECK_STATUS(mr_rec_data_load(path, &data, &err), MR_OK);
    return data;
}

static void eval_ranks_by_hand(void) {
    mr_rec_data *data = hand_data();
    CHECK_INT_EQ(data->n_items, 151);
    mr_rec_model *model = bias_model(data, false);
    mr_error err;
    mr_rec_metrics m;

    /* Test ranks 5, 15, 40, 80, 128, 9. */
    CHECK_STATUS(mr_rec_evaluate(model, data, MR_REC_TEST, &m, &err), MR_OK);
    CHECK_INT_EQ(m.users, 6);
    CHECK_NEAR(m.hit[0], 2.0 / 6, 1e-12);
    CHECK_NEAR(m.hit[1], 3.0 / 6, 1e-12);
    CHECK_NEAR(m.hit[2], 4.0 / 6, 1e-12);
    CHECK_NEAR(m.hit[3], 5.0 / 6, 1e-12);
    double n10 = 1 / log2(7.0) + 1 / log2(11.0);
    CHECK_NEAR(m.ndcg[0], n10 / 6, 1e-12);
    CHECK_NEAR(m.ndcg[3], (n10 + 1 / log2(17.0) + 1 / log2(42.0) + 1 / log2(82.0)) / 6, 1e-12);

    /* Valid ranks 147, 145, 143, 141, 0, 9: user 6's test item 141 is
     * excluded, or its rank would be 10. */
    CHECK_STATUS(mr_rec_evaluate(model, data, MR_REC_VALID, &m, &err), MR_OK);
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        CHECK_NEAR(m.hit[c], 2.0 / 6, 1e-12);
        CHECK_NEAR(m.ndcg[c], (1.0 + 1 / log2(11.0)) / 6, 1e-12);
    }

    CHECK_STATUS(mr_rec_evaluate(model, data, MR_REC_TRAIN, &m, &err),
                 MR_ERR_INVALID_ARGUMENT);
    mr_rec_model_free(model);
    mr_rec_data_free(data);
}

/* The users evaluated so far, as record_eval_progress receives them. */
static int64_t progress_done[8];
static int progress_calls;

static void record_eval_progress(int64_t users_done, int64_t users_total, void *user_data) {
    (void)user_data;
    CHECK_INT_EQ(users_total, 600);
    if (progress_calls < 8) {
        progress_done[progress_calls] = users_done;
    }
    progress_calls++;
}

/* Progress comes after each batch of 256 users, and the figures are
 * those of mr_rec_evaluate. */
static void eval_reports_progress(void) {
    mr_rec_data *data = synthetic_data(600);
    mr_rec_model *model = bias_model(data, true);
    mr_error err;
    mr_rec_metrics plain, reported;
    CHECK_STATUS(mr_rec_evaluate(model, data, MR_REC_VALID, &plain, &err), MR_OK);
    progress_calls = 0;
    CHECK_STATUS(mr_rec_evaluate_progress(model, data, MR_REC_VALID, record_eval_progress,
                                          NULL, &reported, &err),
                 MR_OK);
    CHECK_INT_EQ(progress_calls, 3);
    CHECK_INT_EQ(progress_done[0], 256);
    CHECK_INT_EQ(progress_done[1], 512);
    CHECK_INT_EQ(progress_done[2], 600);
    CHECK_INT_EQ(reported.users, plain.users);
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        CHECK_NEAR(reported.hit[c], plain.hit[c], 0);
        CHECK_NEAR(reported.ndcg[c], plain.ndcg[c], 0);
    }
    mr_rec_model_free(model);
    mr_rec_data_free(data);
}

static void eval_ada_list_by_hand(void) {
    mr_rec_data *data = hand_data();
    mr_rec_model *model = bias_model(data, true);
    mr_error err;
    mr_rec_metrics m;

    /* Two rounds of 5 under the same scores list the top 10 of the full
     * ranking, so test ranks 5 and 9 stay and the rest are absent. */
    CHECK_STATUS(mr_rec_evaluate(model, data, MR_REC_TEST, &m, &err), MR_OK);
    double n10 = (1 / log2(7.0) + 1 / log2(11.0)) / 6;
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        CHECK_NEAR(m.hit[c], 2.0 / 6, 1e-12);
        CHECK_NEAR(m.ndcg[c], n10, 1e-12);
    }
    mr_rec_model_free(model);
    mr_rec_data_free(data);
}

static void recommend_skips_history(void) {
    mr_rec_data *data = hand_data();
    mr_rec_model *model = bias_model(data, false);
    mr_error err;
    int32_t items[8], rounds[8];
    float scores[8];
    int written = 0;

    /* User 5 viewed 150 and 149, so the list starts at 148. */
    CHECK_INT_EQ(data->user_ids[4], 5);
    CHECK_STATUS(mr_rec_recommend(model, data, 4, 4, items, rounds, scores, &written, &err),
                 MR_OK);
    CHECK_INT_EQ(written, 4);
    int32_t expected[4] = {148, 147, 146, 145};
    for (int i = 0; i < 4; i++) {
        CHECK_INT_EQ(items[i], expected[i]);
        CHECK_INT_EQ(rounds[i], 1);
        CHECK_NEAR(scores[i], (float)expected[i] / 1000.0f, 0);
    }

    /* User 6 viewed 140 and 141, which the list skips. */
    CHECK_STATUS(mr_rec_recommend(model, data, 5, 8, items, NULL, NULL, &written, &err),
                 MR_OK);
    int32_t expected6[8] = {150, 149, 148, 147, 146, 145, 144, 143};
    for (int i = 0; i < 8; i++) {
        CHECK_INT_EQ(items[i], expected6[i]);
    }
    mr_rec_model_free(model);

    /* With ada each round adds 5 until 8 are listed. */
    model = bias_model(data, true);
    CHECK_STATUS(mr_rec_recommend(model, data, 4, 8, items, rounds, scores, &written, &err),
                 MR_OK);
    CHECK_INT_EQ(written, 8);
    int32_t expected_rounds[8] = {1, 1, 1, 1, 1, 2, 2, 2};
    for (int i = 0; i < 8; i++) {
        CHECK_INT_EQ(items[i], 148 - i);
        CHECK_INT_EQ(rounds[i], expected_rounds[i]);
    }
    CHECK_STATUS(mr_rec_recommend(model, data, 6, 8, items, rounds, scores, &written, &err),
                 MR_ERR_INVALID_ARGUMENT);
    mr_rec_model_free(model);
    mr_rec_data_free(data);
}

static int remove_root(void) {
    return nftw(temp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv) {
    /* The child of train_resume_within_epoch works in its parent's
     * folder. */
    if (argc == 4 && strcmp(argv[1], "--train-and-die") == 0) {
        snprintf(temp_root, sizeof temp_root, "%s", argv[2]);
        mr_log_set_level(MR_LOG_WARN);
        return train_and_die(argv[3]);
    }

    /* Under /dev/shm when present: the run folders are written with fsync,
     * which costs far more on a disk than in memory. */
    snprintf(temp_root, sizeof temp_root, "%s/mr_rec_train_XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(temp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    mr_log_set_level(MR_LOG_WARN);

    MR_RUN(eval_ranks_by_hand);
    MR_RUN(eval_ada_list_by_hand);
    MR_RUN(eval_reports_progress);
    MR_RUN(recommend_skips_history);
    MR_RUN(train_learns_pattern);
    MR_RUN(train_resume_matches_uninterrupted);
    MR_RUN(train_resume_within_epoch);
    MR_RUN(train_stop_request_resumes);
    MR_RUN(train_finished_run_left_alone);
    MR_RUN(train_rejects_locked_folder);
    MR_RUN(train_resume_rejects_changed_settings);
    MR_RUN(train_without_checkpoint_warns);
    MR_RUN(train_thread_change_warns);
    MR_RUN(train_ada_from_base_run);

    remove_root();
    return mr_test_finish();
}
