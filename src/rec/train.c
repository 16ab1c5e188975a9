/*
 * Training of sequential recommenders, as the authors' code of
 * Ada-Retrieval (ll0ruc/Ada-Retrieval) trains them: Adam with a constant
 * learning rate and no weight decay, gradient-norm clipping, batches
 * shuffled each epoch with fresh uniform negatives, and early stopping on
 * validation hit@50 with full ranking. Each epoch validates first and then
 * trains, so epoch 0 measures the untrained (or just initialised) model.
 *
 * Every random stream derives from (seed, epoch, batch) with mr_rng_split,
 * and the checkpoint written after each epoch, and every few minutes
 * within a long one, contains the weights, the Adam state and the loop
 * state down to the next batch. A resumed run therefore repeats exactly what an
 * uninterrupted run with the same thread count would have done.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "multiround/safetensors.h"
#include "trainer.h"

/* Index of hit@50 in mr_rec_cutoffs, the early-stopping metric. */
#define HIT50 2

void mr_rec_train_options_default(mr_rec_train_options *options) {
    memset(options, 0, sizeof *options);
    options->epochs = 0;
    options->batch_size = 1024;
    options->lr = 1e-3f;
    options->clip_norm = 10.0f;
    options->patience = 10;
    options->seed = 366849;
    options->checkpoint_minutes = 10.0;
}


static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static mr_status check_options(const mr_rec_train_options *options, mr_error *err) {
    if (options->out_dir == NULL || options->out_dir[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: training needs a run folder (out_dir)");
    }
    if (options->epochs < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: epochs = %d must be at least 1, or 0 for the run's own limit",
                            options->epochs);
    }
    if (options->batch_size < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: batch_size = %d must be at least 1", options->batch_size);
    }
    if (!isfinite(options->lr) || options->lr <= 0.0f) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: lr = %g must be a positive number", (double)options->lr);
    }
    if (!isfinite(options->clip_norm) || options->clip_norm < 0.0f) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: clip_norm = %g must be >= 0 (0 turns clipping off)",
                            (double)options->clip_norm);
    }
    if (!isfinite(options->checkpoint_minutes) || options->checkpoint_minutes < 0.0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: checkpoint_minutes = %g must be >= 0 (0: only after each "
                            "epoch)",
                            options->checkpoint_minutes);
    }
    if (options->patience < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: patience = %d must be >= 0", options->patience);
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * metrics.json and the done marker
 * ------------------------------------------------------------------------ */

/* Writes metrics.json: the epoch history, the best epoch and, when test is
 * not NULL, the test figures of the best weights. */
static mr_status write_metrics(rec_trainer *tr, const mr_rec_metrics *test, mr_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *epochs = cJSON_Duplicate(tr->state.history, true);
    if (root == NULL || epochs == NULL) {
        cJSON_Delete(root);
        cJSON_Delete(epochs);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory writing %s",
                            tr->metrics_path);
    }
    cJSON_AddItemToObject(root, "epochs", epochs);
    cJSON_AddNumberToObject(root, "best_epoch", tr->state.best_epoch);
    cJSON_AddNumberToObject(root, "best_valid_hit@50", tr->state.best_hit50);
    if (test != NULL) {
        cJSON_AddItemToObject(root, "test", rec_metrics_to_json(test));
    }
    mr_status status = rec_json_write(tr->metrics_path, root, err);
    cJSON_Delete(root);
    return status;
}

/* Logs one line of metrics at the four cutoffs. */
static void log_metrics(const char *what, const mr_rec_metrics *m, const char *suffix) {
    mr_log(MR_LOG_INFO, "rec",
           "%s: hit@10 %.4f hit@20 %.4f hit@50 %.4f hit@100 %.4f ndcg@50 %.4f "
           "ndcg@100 %.4f over %lld users%s",
           what, m->hit[0], m->hit[1], m->hit[2], m->hit[3], m->ndcg[2], m->ndcg[3],
           (long long)m->users, suffix);
}

/*
 * Reads the done marker: its stop reason and the epoch limit of the run
 * that wrote it. Returns false when there is none.
 */
static bool read_done(const rec_trainer *tr, bool *early_stop, int *epochs) {
    cJSON *json = NULL;
    if (!mr_path_exists(tr->done_path) || rec_json_read(tr->done_path, &json, NULL) != MR_OK) {
        return false;
    }
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(json, "stopped");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(json, "epochs");
    *early_stop = cJSON_IsString(reason) && strcmp(reason->valuestring, "early_stop") == 0;
    *epochs = cJSON_IsNumber(limit) ? (int)limit->valuedouble : 0;
    cJSON_Delete(json);
    return true;
}

static mr_status write_done(const rec_trainer *tr, bool early_stop, mr_error *err) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "stopped", early_stop ? "early_stop" : "epoch_limit");
    cJSON_AddNumberToObject(json, "epochs", tr->options->epochs);
    cJSON_AddNumberToObject(json, "epochs_run", tr->state.next_epoch);
    mr_status status = rec_json_write(tr->done_path, json, err);
    cJSON_Delete(json);
    return status;
}

/* Returns true when folder contains config.json and nothing else but
 * its lock file. */
static bool only_config_written(const char *folder) {
    DIR *dir = opendir(folder);
    if (dir == NULL) {
        return false;
    }
    bool config = false, other = false;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0 ||
            strcmp(entry->d_name, MR_FOLDER_LOCK_FILE) == 0) {
            continue;
        }
        if (strcmp(entry->d_name, "config.json") == 0) {
            config = true;
        } else {
            other = true;
        }
    }
    closedir(dir);
    return config && !other;
}

/* Epochs of a run without a limit of its own. */
#define DEFAULT_EPOCHS 200

/*
 * Returns the epoch limit of the run in the trainer's folder: that of its
 * done marker, else that of its config.json, else DEFAULT_EPOCHS for a
 * new run.
 */
static int stored_epoch_limit(const rec_trainer *tr) {
    bool early_stop = false;
    int epochs = 0;
    if (read_done(tr, &early_stop, &epochs) && epochs >= 1) {
        return epochs;
    }

    cJSON *json = NULL;
    if (mr_path_exists(tr->config_path) && rec_json_read(tr->config_path, &json, NULL) == MR_OK) {
        const cJSON *train = cJSON_GetObjectItemCaseSensitive(json, "train");
        const cJSON *limit = cJSON_GetObjectItemCaseSensitive(train, "epochs");
        epochs = cJSON_IsNumber(limit) ? (int)limit->valuedouble : 0;
        cJSON_Delete(json);
    }
    return epochs >= 1 ? epochs : DEFAULT_EPOCHS;
}

/* Logs the test figures of a finished run from its metrics.json, and how
 * to train on: with a larger --epochs when the limit stopped it. */
static mr_status report_finished(const rec_trainer *tr, mr_error *err) {
    cJSON *json = NULL;
    mr_status status = rec_json_read(tr->metrics_path, &json, err);
    if (status != MR_OK) {
        return status;
    }
    mr_rec_metrics test;
    const cJSON *test_json = cJSON_GetObjectItemCaseSensitive(json, "test");
    status = rec_metrics_from_json(test_json, tr->metrics_path, &test, err);
    if (status == MR_OK) {
        bool early_stop = false;
        int epochs = 0;
        read_done(tr, &early_stop, &epochs);
        if (early_stop) {
            mr_log(MR_LOG_INFO, "rec", "the run in %s has finished: early stopping ended it; "
                   "give another --out to train a new run", tr->options->out_dir);
        } else {
            mr_log(MR_LOG_INFO, "rec",
                   "the run in %s has reached its limit of %d epochs; rerun with a larger "
                   "--epochs to train on, or give another --out for a new run",
                   tr->options->out_dir, epochs);
        }
        log_metrics("test (best weights)", &test, "");
    }
    cJSON_Delete(json);
    return status;
}

/* ------------------------------------------------------------------------
 * Checkpoints
 * ------------------------------------------------------------------------ */

/* Writes the weights, the Adam state and the loop state atomically. */
static mr_status save_checkpoint(rec_trainer *tr, mr_error *err) {
    mr_paramset *ps = mr_rec_model_params(tr->model);
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    if (writer == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory writing %s",
                            tr->checkpoint_path);
    }
    mr_status status = MR_OK;
    for (int i = 0; i < mr_paramset_count(ps) && status == MR_OK; i++) {
        mr_tensor *w = mr_paramset_get(ps, i);
        status = mr_safetensors_writer_add_f32(writer, w->name, w->ndim, w->shape, w->data,
                                               MR_SAFETENSORS_F32, err);
    }
    for (int i = 0; i < mr_optim_state_count(tr->optim) && status == MR_OK; i++) {
        const char *name = NULL;
        const float *values = NULL;
        int64_t count = 0;
        status = mr_optim_state_get(tr->optim, i, &name, &values, &count, err);
        if (status == MR_OK) {
            status = mr_safetensors_writer_add_f32(writer, name, 1, &count, values,
                                                   MR_SAFETENSORS_F32, err);
        }
    }

    /* The loop state as text; %.17g gives back the same double. */
    char next_epoch[32], next_batch[32], epoch_loss[40], best_epoch[32], best_hit50[40];
    char since_best[32], steps[32];
    snprintf(next_epoch, sizeof next_epoch, "%d", tr->state.next_epoch);
    snprintf(next_batch, sizeof next_batch, "%lld", (long long)tr->state.next_batch);
    snprintf(epoch_loss, sizeof epoch_loss, "%.17g", tr->state.epoch_loss);
    snprintf(best_epoch, sizeof best_epoch, "%d", tr->state.best_epoch);
    snprintf(best_hit50, sizeof best_hit50, "%.17g", tr->state.best_hit50);
    snprintf(since_best, sizeof since_best, "%d", tr->state.since_best);
    snprintf(steps, sizeof steps, "%lld", (long long)mr_optim_step_count(tr->optim));
    char *history = cJSON_PrintUnformatted(tr->state.history);
    const char *pairs[][2] = {{"next_epoch", next_epoch},
                              {"next_batch", next_batch},
                              {"epoch_loss_sum", epoch_loss},
                              {"best_epoch", best_epoch},
                              {"best_valid_hit@50", best_hit50},
                              {"validations_since_best", since_best},
                              {"step_count", steps},
                              {"history", history != NULL ? history : "[]"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0] && status == MR_OK; i++) {
        status = mr_safetensors_writer_add_metadata(writer, pairs[i][0], pairs[i][1], err);
    }
    if (status == MR_OK) {
        status = mr_safetensors_writer_write(writer, tr->checkpoint_path, err);
    }
    cJSON_free(history);
    mr_safetensors_writer_free(writer);
    return status;
}

/* Reads an integer metadata entry of a checkpoint. */
static mr_status metadata_int(const mr_safetensors *file, const char *key, const char *path,
                              long long min, long long *value, mr_error *err) {
    const char *text = mr_safetensors_metadata_get(file, key);
    char *end = NULL;
    long long parsed = text != NULL ? strtoll(text, &end, 10) : 0;
    if (text == NULL || end == text || *end != '\0' || parsed < min) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: checkpoint %s has no valid '%s' entry; delete it to start "
                            "the run again",
                            path, key);
    }
    *value = parsed;
    return MR_OK;
}

/* Restores the weights, the Adam state and the loop state. */
static mr_status load_checkpoint(rec_trainer *tr, mr_error *err) {
    const char *path = tr->checkpoint_path;
    mr_status status = mr_paramset_load(mr_rec_model_params(tr->model), path, true, NULL, err);
    if (status != MR_OK) {
        return status;
    }
    mr_safetensors *file = NULL;
    status = mr_safetensors_open(path, &file, err);
    if (status != MR_OK) {
        return status;
    }

    /* Adam's moments, one array per parameter tensor. */
    for (int i = 0; i < mr_optim_state_count(tr->optim) && status == MR_OK; i++) {
        const char *name = NULL;
        int64_t count = 0;
        status = mr_optim_state_get(tr->optim, i, &name, NULL, &count, err);
        float *values = status == MR_OK ? malloc((size_t)count * sizeof(float)) : NULL;
        if (status == MR_OK && values == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory reading %s",
                                  path);
        }
        if (status == MR_OK) {
            status = mr_safetensors_read_f32(file, name, values, count, err);
        }
        if (status == MR_OK) {
            status = mr_optim_state_set(tr->optim, name, values, count, err);
        }
        free(values);
    }

    long long next_epoch = 0, next_batch = 0, best_epoch = 0, since_best = 0, steps = 0;
    if (status == MR_OK) {
        status = metadata_int(file, "next_epoch", path, 0, &next_epoch, err);
    }

    /* Checkpoints from before mid-epoch saving lack the batch entries and
     * were all written between epochs. */
    const char *epoch_loss = mr_safetensors_metadata_get(file, "epoch_loss_sum");
    if (status == MR_OK && mr_safetensors_metadata_get(file, "next_batch") != NULL) {
        status = metadata_int(file, "next_batch", path, 0, &next_batch, err);
    }
    int64_t batches = (tr->data->n_train + tr->options->batch_size - 1) /
                      tr->options->batch_size;
    if (status == MR_OK && (next_batch >= batches || (next_batch > 0 && epoch_loss == NULL))) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "rec: checkpoint %s stops at batch %lld of an epoch of %lld "
                              "batches, or lacks its epoch_loss_sum; delete it to start the "
                              "run again",
                              path, next_batch, (long long)batches);
    }
    if (status == MR_OK) {
        status = metadata_int(file, "best_epoch", path, -1, &best_epoch, err);
    }
    if (status == MR_OK) {
        status = metadata_int(file, "validations_since_best", path, 0, &since_best, err);
    }
    if (status == MR_OK) {
        status = metadata_int(file, "step_count", path, 0, &steps, err);
    }
    if (status == MR_OK) {
        status = mr_optim_set_step_count(tr->optim, steps, err);
    }
    const char *best_hit50 = mr_safetensors_metadata_get(file, "best_valid_hit@50");
    const char *history = mr_safetensors_metadata_get(file, "history");
    cJSON *history_json = history != NULL ? cJSON_Parse(history) : NULL;
    if (status == MR_OK && (best_hit50 == NULL || !cJSON_IsArray(history_json))) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "rec: checkpoint %s lacks its best hit@50 or epoch history; "
                              "delete it to start the run again",
                              path);
    }
    if (status == MR_OK) {
        tr->state.next_epoch = (int)next_epoch;
        tr->state.next_batch = next_batch;
        tr->state.epoch_loss = epoch_loss != NULL ? strtod(epoch_loss, NULL) : 0.0;
        tr->state.best_epoch = (int)best_epoch;
        tr->state.best_hit50 = strtod(best_hit50, NULL);
        tr->state.since_best = (int)since_best;
        cJSON_Delete(tr->state.history);
        tr->state.history = history_json;
        history_json = NULL;
    }
    cJSON_Delete(history_json);
    mr_safetensors_close(file);
    return status;
}

/* ------------------------------------------------------------------------
 * Epochs
 * ------------------------------------------------------------------------ */

/* Returns true when the caller's stop callback requests the end of training. */
static bool stop_requested(const rec_trainer *tr) {
    return tr->options->stop != NULL && tr->options->stop(tr->options->stop_user_data);
}

/*
 * Trains one epoch over every training example in a fresh order, from
 * batch tr->state.next_batch on, and stores the example-weighted mean
 * loss. Within the epoch it saves the checkpoint whenever
 * checkpoint_minutes have passed since the last save; the epoch's last
 * batch is left to the caller's checkpoint.
 */
static mr_status train_epoch(rec_trainer *tr, int epoch, double *mean_loss, mr_error *err) {
    int64_t n = tr->data->n_train;
    int64_t batch_size = tr->options->batch_size;
    rec_trainer_shuffle(tr, epoch);
    rec_batch *batch = rec_batch_create(tr, n < batch_size ? n : batch_size);
    if (batch == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "rec: out of memory for a batch of %lld examples",
                            (long long)batch_size);
    }

    mr_status status = MR_OK;
    int64_t index = tr->state.next_batch;
    int64_t resumed_at = index * batch_size;
    double start = now_seconds();
    double last_save = start;
    double save_seconds = 60.0 * tr->options->checkpoint_minutes;
    for (int64_t first = resumed_at; first < n && status == MR_OK;
         first += batch_size, index++) {
        int64_t count = n - first < batch_size ? n - first : batch_size;
        double loss = 0.0;
        status = rec_trainer_step(tr, epoch, index, first, count, batch, &loss, err);
        tr->state.epoch_loss += loss * (double)count;

        if (status == MR_OK && tr->options->progress != NULL) {
            double elapsed = now_seconds() - start;
            mr_rec_progress progress = {
                .epoch = epoch,
                .examples_done = first + count,
                .examples_total = n,
                .loss = tr->state.epoch_loss / (double)(first + count),
                .examples_per_second =
                    elapsed > 0 ? (double)(first + count - resumed_at) / elapsed : 0,
                .phase = "train"};
            tr->options->progress(&progress, tr->options->progress_user_data);
        }

        /* On a stop request, save the position of the next batch and end.
         * After an epoch's last batch the epoch ends instead, and
         * run_epochs writes its checkpoint before it stops. */
        if (status == MR_OK && first + count < n && stop_requested(tr)) {
            tr->state.next_batch = index + 1;
            status = save_checkpoint(tr, err);
            if (status == MR_OK) {
                status = mr_error_set(err, MR_ERR_INTERRUPTED,
                                      "rec: stopped on request in epoch %d after %lld of %lld "
                                      "examples; the checkpoint in %s contains this point, "
                                      "so rerun the same command to resume",
                                      epoch, (long long)(first + count), (long long)n,
                                      tr->options->out_dir);
            }
            break;
        }

        /* A mid-epoch checkpoint: the weights after this batch and the
         * position of the next one. */
        if (status == MR_OK && save_seconds > 0 && first + count < n &&
            now_seconds() - last_save >= save_seconds) {
            tr->state.next_batch = index + 1;
            status = save_checkpoint(tr, err);
            last_save = now_seconds();
            if (status == MR_OK) {
                mr_log(MR_LOG_INFO, "rec", "epoch %d: checkpoint after %lld of %lld examples",
                       epoch, (long long)(first + count), (long long)n);
            }
        }
    }
    rec_batch_free(batch);

    double elapsed = now_seconds() - start;
    *mean_loss = tr->state.epoch_loss / (double)n;
    tr->state.next_batch = 0;
    tr->state.epoch_loss = 0.0;
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rec",
               "epoch %d train: loss %.6f over %lld examples; %lld trained in %.1f s "
               "(%.0f examples/s)",
               epoch, *mean_loss, (long long)n, (long long)(n - resumed_at), elapsed,
               elapsed > 0 ? (double)(n - resumed_at) / elapsed : 0.0);
    }
    return status;
}

/* What forward_eval_progress needs to report an evaluation's progress. */
typedef struct eval_progress {
    const rec_trainer *tr;
    int epoch;
    mr_rec_split split;
    double start;
} eval_progress;

/* Passes an evaluation's progress to the caller's progress callback, with
 * users in place of examples. */
static void forward_eval_progress(int64_t users_done, int64_t users_total, void *user_data) {
    const eval_progress *e = user_data;
    double elapsed = now_seconds() - e->start;
    mr_rec_progress progress = {
        .epoch = e->epoch,
        .examples_done = users_done,
        .examples_total = users_total,
        .loss = 0.0,
        .examples_per_second = elapsed > 0 ? (double)users_done / elapsed : 0,
        .phase = mr_rec_split_name(e->split)};
    e->tr->options->progress(&progress, e->tr->options->progress_user_data);
}

static mr_status evaluate_split(rec_trainer *tr, int epoch, mr_rec_split split,
                                mr_rec_metrics *metrics, double *seconds, mr_error *err) {
    eval_progress e = {tr, epoch, split, now_seconds()};
    mr_status status = mr_rec_evaluate_progress(
        tr->model, tr->data, split, tr->options->progress != NULL ? forward_eval_progress : NULL,
        &e, metrics, err);
    *seconds = now_seconds() - e.start;
    return status;
}

/*
 * Validates the current weights for epoch, saves them as the best model on
 * a strict improvement of hit@50 and appends the epoch's entry to the
 * history. Sets *stop when patience + 1 validations in a row brought no
 * improvement.
 */
static mr_status validate(rec_trainer *tr, int epoch, bool *stop, mr_error *err) {
    mr_rec_metrics valid;
    double seconds = 0.0;
    mr_status status = evaluate_split(tr, epoch, MR_REC_VALID, &valid, &seconds, err);
    if (status != MR_OK) {
        return status;
    }

    bool improved = valid.hit[HIT50] > tr->state.best_hit50;
    if (improved) {
        char epoch_text[32], hit_text[40];
        snprintf(epoch_text, sizeof epoch_text, "%d", epoch);
        snprintf(hit_text, sizeof hit_text, "%.17g", valid.hit[HIT50]);
        const char *metadata[] = {"backbone", mr_rec_backbone_name(tr->config->backbone),
                                  "epoch", epoch_text, "valid_hit@50", hit_text};
        status = mr_paramset_save(mr_rec_model_params(tr->model), tr->model_path, metadata,
                                  3, err);
        if (status != MR_OK) {
            return status;
        }
        tr->state.best_hit50 = valid.hit[HIT50];
        tr->state.best_epoch = epoch;
        tr->state.since_best = 0;
    } else {
        tr->state.since_best++;
    }
    *stop = tr->state.since_best > tr->options->patience;

    char suffix[96];
    if (improved) {
        snprintf(suffix, sizeof suffix, " in %.1f s (new best)", seconds);
    } else {
        snprintf(suffix, sizeof suffix, " in %.1f s (best %.4f at epoch %d)", seconds,
                 tr->state.best_hit50, tr->state.best_epoch);
    }
    char what[32];
    snprintf(what, sizeof what, "epoch %d valid", epoch);
    log_metrics(what, &valid, suffix);

    cJSON *entry = cJSON_CreateObject();
    cJSON_AddNumberToObject(entry, "epoch", epoch);
    cJSON_AddItemToObject(entry, "valid", rec_metrics_to_json(&valid));
    cJSON_AddBoolToObject(entry, "new_best", improved);
    cJSON_AddNullToObject(entry, "train_loss");
    cJSON_AddItemToArray(tr->state.history, entry);
    return MR_OK;
}

/* Stores the epoch's training loss in the last history entry. */
static void record_loss(rec_trainer *tr, double loss) {
    int last = cJSON_GetArraySize(tr->state.history) - 1;
    cJSON *entry = cJSON_GetArrayItem(tr->state.history, last);
    cJSON_ReplaceItemInObjectCaseSensitive(entry, "train_loss", cJSON_CreateNumber(loss));
}

/* ------------------------------------------------------------------------
 * The run
 * ------------------------------------------------------------------------ */

/* Sets the file paths of the run folder. */
static mr_status set_paths(rec_trainer *tr, mr_error *err) {
    const char *dir = tr->options->out_dir;
    struct {
        char *out;
        const char *name;
    } files[] = {{tr->config_path, REC_CONFIG_FILE},
                 {tr->metrics_path, REC_METRICS_FILE},
                 {tr->model_path, REC_MODEL_FILE},
                 {tr->checkpoint_path, REC_CHECKPOINT_FILE},
                 {tr->done_path, REC_DONE_FILE}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        mr_status status = mr_path_join(files[i].out, sizeof tr->config_path, dir,
                                        files[i].name, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/*
 * Checks an existing run's config.json against this run's settings, then
 * writes the new one. The folder must exist. Sets *finished when the done
 * marker shows that there is nothing left to train.
 */
static mr_status prepare_folder(rec_trainer *tr, const char *init_dir, bool *finished,
                                mr_error *err) {
    *finished = false;
    mr_status status = MR_OK;
    int started_threads = 0; /* of a run that resumes; 0: none stored */
    cJSON *json = rec_config_to_json(tr->config, tr->options, init_dir, tr->data);
    if (json == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory building %s",
                            tr->config_path);
    }

    /* Settings matter once a checkpoint or a finished run exists; before
     * that nothing has been trained and a new config.json replaces the
     * old one. */
    if (mr_path_exists(tr->config_path) &&
        (mr_path_exists(tr->checkpoint_path) || mr_path_exists(tr->done_path))) {
        cJSON *old_json = NULL;
        status = rec_json_read(tr->config_path, &old_json, err);
        if (status == MR_OK) {
            status = rec_config_compare(old_json, json, tr->options->out_dir, err);
        }
        const cJSON *old_threads = cJSON_GetObjectItemCaseSensitive(old_json, "threads");
        if (status == MR_OK && cJSON_IsNumber(old_threads)) {
            started_threads = (int)old_threads->valuedouble;
        }
        cJSON_Delete(old_json);
    } else if (mr_path_exists(tr->config_path)) {
        /* Say so when the replaced settings differ, since the folder may
         * hold the best model of its first validation. */
        cJSON *old_json = NULL;
        char difference[800];
        if (rec_json_read(tr->config_path, &old_json, NULL) == MR_OK &&
            rec_config_difference(old_json, json, difference, sizeof difference)) {
            mr_log(MR_LOG_WARN, "rec",
                   "the run in %s has no checkpoint yet, so it starts over with new "
                   "settings: it was started with %s",
                   tr->options->out_dir, difference);
        }
        cJSON_Delete(old_json);
    }

    /* A run that stopped early, or reached the epochs asked for now, is
     * finished; one that hit a smaller epoch limit continues. */
    bool early_stop = false;
    int done_epochs = 0;
    if (status == MR_OK && read_done(tr, &early_stop, &done_epochs)) {
        if (early_stop || tr->options->epochs <= done_epochs) {
            *finished = true;
        } else if (unlink(tr->done_path) != 0) {
            status = mr_error_set(err, MR_ERR_IO, "rec: cannot remove %s to extend the run",
                                  tr->done_path);
        } else {
            mr_log(MR_LOG_INFO, "rec", "extending the run in %s from %d to %d epochs",
                   tr->options->out_dir, done_epochs, tr->options->epochs);
        }
    }
    if (status == MR_OK && !*finished && started_threads > 0 &&
        started_threads != mr_threads_get()) {
        mr_log(MR_LOG_WARN, "rec",
               "the run in %s started with %d thread%s and resumes with %d; sums may "
               "round differently from an uninterrupted run",
               tr->options->out_dir, started_threads, started_threads == 1 ? "" : "s",
               mr_threads_get());
    }
    if (status == MR_OK && !*finished) {
        status = rec_json_write(tr->config_path, json, err);
    }
    cJSON_Delete(json);
    return status;
}

/* Returns the epoch of the latest validation in the history, or -1. */
static int last_validated(const rec_trainer *tr) {
    int count = cJSON_GetArraySize(tr->state.history);
    const cJSON *entry = cJSON_GetArrayItem(tr->state.history, count - 1);
    const cJSON *epoch = cJSON_GetObjectItemCaseSensitive(entry, "epoch");
    return cJSON_IsNumber(epoch) ? (int)epoch->valuedouble : -1;
}

/* Runs the epochs from the loop state on, then tests the best weights. */
static mr_status run_epochs(rec_trainer *tr, mr_error *err) {
    mr_status status = MR_OK;
    bool stop = false;
    while (!stop && tr->state.next_epoch < tr->options->epochs) {
        int epoch = tr->state.next_epoch;

        /* Here the state in memory is the one in the checkpoint, or no
         * checkpoint exists yet because nothing has been trained. */
        if (stop_requested(tr)) {
            return mr_error_set(err, MR_ERR_INTERRUPTED,
                                "rec: stopped on request before epoch %d; rerun the same "
                                "command to resume the run in %s",
                                epoch, tr->options->out_dir);
        }
        if (last_validated(tr) < epoch) {
            status = validate(tr, epoch, &stop, err);
        } else {
            stop = tr->state.since_best > tr->options->patience;
        }
        if (status != MR_OK) {
            return status;
        }
        if (stop) {
            mr_log(MR_LOG_INFO, "rec",
                   "stopping: %d validations without a better hit@50 than %.4f (epoch %d)",
                   tr->state.since_best, tr->state.best_hit50, tr->state.best_epoch);
            tr->state.next_epoch = epoch + 1;
            break;
        }

        /* A stop requested during the validation keeps its result in the
         * checkpoint, so the rerun trains the epoch at once. */
        if (stop_requested(tr)) {
            status = save_checkpoint(tr, err);
            if (status == MR_OK) {
                status = write_metrics(tr, NULL, err);
            }
            if (status == MR_OK) {
                status = mr_error_set(err, MR_ERR_INTERRUPTED,
                                      "rec: stopped on request after the validation before "
                                      "epoch %d; rerun the same command to resume the run "
                                      "in %s",
                                      epoch, tr->options->out_dir);
            }
            return status;
        }

        double loss = 0.0;
        status = train_epoch(tr, epoch, &loss, err);
        if (status != MR_OK) {
            return status;
        }
        record_loss(tr, loss);
        tr->state.next_epoch = epoch + 1;

        /* The reference validates only before training, so the last
         * epoch's training would never be measured. A run that reaches its
         * epoch limit validates once more; a later run with a higher limit
         * then continues without repeating that validation. */
        if (tr->state.next_epoch == tr->options->epochs) {
            bool ignored = false;
            status = validate(tr, tr->state.next_epoch, &ignored, err);
            if (status != MR_OK) {
                return status;
            }
        }
        status = save_checkpoint(tr, err);
        if (status == MR_OK) {
            status = write_metrics(tr, NULL, err);
        }
        if (status != MR_OK) {
            return status;
        }
    }

    /* The test uses the best weights, not the last ones. */
    status = mr_paramset_load(mr_rec_model_params(tr->model), tr->model_path, true, NULL, err);
    mr_rec_metrics test;
    double seconds = 0.0;
    if (status == MR_OK) {
        status = evaluate_split(tr, tr->state.best_epoch, MR_REC_TEST, &test, &seconds, err);
    }
    if (status == MR_OK) {
        char what[48], suffix[32];
        snprintf(what, sizeof what, "test (best epoch %d)", tr->state.best_epoch);
        snprintf(suffix, sizeof suffix, " in %.1f s", seconds);
        log_metrics(what, &test, suffix);
        status = write_metrics(tr, &test, err);
    }
    if (status == MR_OK) {
        status = write_done(tr, stop, err);
    }
    return status;
}

mr_status mr_rec_train(const mr_rec_data *data, const mr_rec_config *config,
                       const mr_rec_train_options *given, mr_error *err) {
    mr_status status = check_options(given, err);
    if (status == MR_OK) {
        status = mr_rec_config_check(config, err);
    }
    if (status != MR_OK) {
        return status;
    }

    mr_rec_train_options resolved = *given;
    const mr_rec_train_options *options = &resolved;

    /* The init folder is stored resolved, so a rerun from another working
     * folder compares equal. */
    char init_dir[4096];
    if (options->init_dir != NULL && realpath(options->init_dir, init_dir) == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "rec: --init folder %s does not exist; give the base run's output "
                            "folder",
                            options->init_dir);
    }
    const char *init = options->init_dir != NULL ? init_dir : NULL;

    rec_trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.data = data;
    tr.config = config;
    tr.options = options;
    tr.state.best_epoch = -1;
    tr.state.best_hit50 = -1.0;
    rec_trainer_seed(&tr);

    bool finished = false;
    bool folder_existed = mr_path_exists(options->out_dir);
    status = set_paths(&tr, err);

    /* Without a limit of its own, a rerun keeps the run's limit, so that
     * it finishes or resumes the run it names instead of extending it. */
    if (status == MR_OK && resolved.epochs == 0) {
        resolved.epochs = stored_epoch_limit(&tr);
    }

    /* Lock the folder before checking its settings or writing into it,
     * then remove what the unfinished writes of a killed run left. */
    mr_folder_lock *lock = NULL;
    if (status == MR_OK) {
        status = mr_make_dirs(options->out_dir, err);
    }
    if (status == MR_OK) {
        status = mr_folder_lock_take(options->out_dir, &lock, err);
    }
    if (status == MR_OK) {
        int removed = mr_folder_remove_stale_temps(options->out_dir);
        if (removed > 0) {
            mr_log(MR_LOG_INFO, "rec", "removed %d temporary file%s left in %s by a run that "
                   "was stopped while writing", removed, removed == 1 ? "" : "s",
                   options->out_dir);
        }
    }

    if (status == MR_OK) {
        status = prepare_folder(&tr, init, &finished, err);
    }
    if (status == MR_OK && finished) {
        status = report_finished(&tr, err);
        mr_folder_lock_release(lock);
        return status;
    }
    if (status == MR_OK) {
        status = rec_trainer_create(&tr, err);
    }

    /* Resume from the checkpoint, or start from the seed or the base run. */
    if (status == MR_OK && mr_path_exists(tr.checkpoint_path)) {
        status = load_checkpoint(&tr, err);
        if (status == MR_OK) {
            mr_log(MR_LOG_INFO, "rec", "resuming the run in %s at epoch %d, batch %lld (best "
                   "hit@50 %.4f at epoch %d)", options->out_dir, tr.state.next_epoch,
                   (long long)tr.state.next_batch, tr.state.best_hit50, tr.state.best_epoch);
        }
    } else if (status == MR_OK && init != NULL) {
        status = rec_trainer_load_init(&tr, init, err);
    } else if (status == MR_OK && config->ada) {
        mr_log(MR_LOG_WARN, "rec", "training Ada-Retrieval without --init: the authors' "
               "code trains the base model first and starts from its best weights");
    }
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rec",
               "training %s%s%s on %s: %lld examples, %lld users, %d item ids, %lld weights, "
               "batch %d, lr %g, %d thread%s",
               mr_rec_backbone_name(config->backbone), config->ada ? " + Ada-Retrieval" : "",
               config->ada && config->ada_zero_padding ? " (zero padding)" : "",
               data->path, (long long)data->n_train, (long long)data->n_sequences,
               (int)data->n_items,
               (long long)mr_paramset_numel(mr_rec_model_params(tr.model)), options->batch_size,
               (double)options->lr, mr_threads_get(), mr_threads_get() == 1 ? "" : "s");
        status = run_epochs(&tr, err);
    }

    /* A run that failed before it wrote anything but config.json leaves
     * no folder it created behind. A stopped one keeps it for the rerun.
     * Only the lock's holder cleans up, and before it lets go, so that a
     * run that lost the race for a new folder never removes the winner's
     * files. */
    if (lock != NULL && status != MR_OK && status != MR_ERR_INTERRUPTED && !folder_existed &&
        only_config_written(options->out_dir)) {
        char lock_path[4096];
        unlink(tr.config_path);
        if (mr_path_join(lock_path, sizeof lock_path, options->out_dir, MR_FOLDER_LOCK_FILE,
                         NULL) == MR_OK) {
            unlink(lock_path);
        }
        if (rmdir(options->out_dir) == 0) {
            mr_log(MR_LOG_INFO, "rec", "removed %s, which the failed run created",
                   options->out_dir);
        }
    }
    mr_folder_lock_release(lock);
    rec_trainer_free(&tr);
    return status;
}
