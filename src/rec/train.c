/*
 * Training of sequential recommenders, as the authors' code of
 * Ada-Retrieval (ll0ruc/Ada-Retrieval) trains them: Adam with a constant
 * learning rate and no weight decay, gradient-norm clipping, batches
 * shuffled each epoch with fresh uniform negatives, and early stopping on
 * validation hit@50 with full ranking. Each epoch validates first and then
 * trains, so epoch 0 measures the untrained (or just initialised) model.
 *
 * Every random stream derives from (seed, epoch, batch) with mr_rng_split,
 * and the checkpoint written after each epoch holds the weights, the Adam
 * state and the loop state. A resumed run therefore repeats exactly what
 * an uninterrupted run with the same thread count would have done.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "length_groups.h"
#include "model_internal.h"
#include "multiround/optim.h"
#include "multiround/safetensors.h"
#include "run_folder.h"

/* Child streams of the seed's root stream. */
#define STREAM_TRAIN 1 /* then per epoch, then 0: shuffle, 1 + b: batch b */

/* Index of hit@50 in mr_rec_cutoffs, the early-stopping metric. */
#define HIT50 2

void mr_rec_train_options_default(mr_rec_train_options *options) {
    memset(options, 0, sizeof *options);
    options->epochs = 200;
    options->batch_size = 1024;
    options->lr = 1e-3f;
    options->clip_norm = 10.0f;
    options->patience = 10;
    options->seed = 366849;
}

/* The loop state that the checkpoint carries from one epoch to the next. */
typedef struct loop_state {
    int next_epoch;
    int best_epoch;       /* -1 before the first validation */
    double best_hit50;    /* -1 before the first validation */
    int since_best;       /* validations without a new best since the best */
    cJSON *history;       /* array of per-epoch entries */
} loop_state;

typedef struct trainer {
    const mr_rec_data *data;
    const mr_rec_config *config;
    const mr_rec_train_options *options;
    mr_rec_model *model;
    mr_optim *optim;
    mr_ctx *step;
    int64_t *order; /* [n_train]: this epoch's example order */
    mr_rng train_root;
    loop_state state;
    char config_path[4096];
    char metrics_path[4096];
    char model_path[4096];
    char checkpoint_path[4096];
    char done_path[4096];
} trainer;

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
    if (options->epochs < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: epochs = %d must be at least 1", options->epochs);
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
static mr_status write_metrics(trainer *tr, const mr_rec_metrics *test, mr_error *err) {
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
static bool read_done(const trainer *tr, bool *early_stop, int *epochs) {
    cJSON *json = NULL;
    if (!rec_path_exists(tr->done_path) || rec_json_read(tr->done_path, &json, NULL) != MR_OK) {
        return false;
    }
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(json, "stopped");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(json, "epochs");
    *early_stop = cJSON_IsString(reason) && strcmp(reason->valuestring, "early_stop") == 0;
    *epochs = cJSON_IsNumber(limit) ? (int)limit->valuedouble : 0;
    cJSON_Delete(json);
    return true;
}

static mr_status write_done(const trainer *tr, bool early_stop, mr_error *err) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "stopped", early_stop ? "early_stop" : "epoch_limit");
    cJSON_AddNumberToObject(json, "epochs", tr->options->epochs);
    cJSON_AddNumberToObject(json, "epochs_run", tr->state.next_epoch);
    mr_status status = rec_json_write(tr->done_path, json, err);
    cJSON_Delete(json);
    return status;
}

/* Logs the test figures of a finished run from its metrics.json. */
static mr_status report_finished(const trainer *tr, mr_error *err) {
    cJSON *json = NULL;
    mr_status status = rec_json_read(tr->metrics_path, &json, err);
    if (status != MR_OK) {
        return status;
    }
    mr_rec_metrics test;
    const cJSON *test_json = cJSON_GetObjectItemCaseSensitive(json, "test");
    status = rec_metrics_from_json(test_json, tr->metrics_path, &test, err);
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rec", "the run in %s has finished; delete its 'done' file to "
               "train again", tr->options->out_dir);
        log_metrics("test (best weights)", &test, "");
    }
    cJSON_Delete(json);
    return status;
}

/* ------------------------------------------------------------------------
 * Checkpoints
 * ------------------------------------------------------------------------ */

/* Writes the weights, the Adam state and the loop state atomically. */
static mr_status save_checkpoint(trainer *tr, mr_error *err) {
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
    char next_epoch[32], best_epoch[32], best_hit50[40], since_best[32], steps[32];
    snprintf(next_epoch, sizeof next_epoch, "%d", tr->state.next_epoch);
    snprintf(best_epoch, sizeof best_epoch, "%d", tr->state.best_epoch);
    snprintf(best_hit50, sizeof best_hit50, "%.17g", tr->state.best_hit50);
    snprintf(since_best, sizeof since_best, "%d", tr->state.since_best);
    snprintf(steps, sizeof steps, "%lld", (long long)mr_optim_step_count(tr->optim));
    char *history = cJSON_PrintUnformatted(tr->state.history);
    const char *pairs[][2] = {{"next_epoch", next_epoch},
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
static mr_status load_checkpoint(trainer *tr, mr_error *err) {
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

    long long next_epoch = 0, best_epoch = 0, since_best = 0, steps = 0;
    if (status == MR_OK) {
        status = metadata_int(file, "next_epoch", path, 0, &next_epoch, err);
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
 * Initialisation from a base run (Ada-Retrieval stage 2)
 * ------------------------------------------------------------------------ */

/*
 * Loads the base run's best weights into the model by name. Every weight
 * of the base model (backbone, item embedding and bias) must be in the
 * file with the same shape; weights only the new model has, such as the
 * adapters, keep their fresh initialisation.
 */
static mr_status load_init(trainer *tr, const char *init_dir, mr_error *err) {
    char config_path[4096], model_path[4096];
    mr_status status = rec_path_join(config_path, sizeof config_path, init_dir,
                                     REC_CONFIG_FILE, err);
    if (status == MR_OK) {
        status = rec_path_join(model_path, sizeof model_path, init_dir, REC_MODEL_FILE, err);
    }
    if (status != MR_OK) {
        return status;
    }
    if (!rec_path_exists(model_path)) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "rec: --init folder %s has no %s; train the base model there "
                            "first",
                            init_dir, REC_MODEL_FILE);
    }

    /* The base run must share the backbone settings and the item table. */
    cJSON *json = NULL;
    status = rec_json_read(config_path, &json, err);
    if (status != MR_OK) {
        return status;
    }
    mr_rec_config base;
    int32_t base_items = 0;
    status = rec_config_from_json(json, config_path, &base, err);
    if (status == MR_OK) {
        status = rec_config_n_items(json, config_path, &base_items, err);
    }
    cJSON_Delete(json);
    if (status != MR_OK) {
        return status;
    }
    const mr_rec_config *c = tr->config;
    struct {
        const char *name;
        long long base_value, value;
    } shared[] = {{"backbone", base.backbone, c->backbone},
                  {"dim", base.dim, c->dim},
                  {"max_len", base.max_len, c->max_len},
                  {"layers", base.layers, c->layers},
                  {"heads", base.heads, c->heads},
                  {"inner_size", base.inner_size, c->inner_size},
                  {"n_items", base_items, tr->data->n_items}};
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++) {
        if (shared[i].base_value != shared[i].value) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "rec: the --init run in %s has %s = %lld but this run has "
                                "%lld; initialise from a base run with the same backbone "
                                "settings and data",
                                init_dir, shared[i].name, shared[i].base_value,
                                shared[i].value);
        }
    }

    /* The weights a base model declares are the ones the file must hold. */
    mr_rec_config base_config = *c;
    base_config.ada = false;
    mr_rec_model *base_model = mr_rec_model_create(&base_config, tr->data->n_items, 0, err);
    if (base_model == NULL) {
        return err != NULL && err->status != MR_OK ? err->status : MR_ERR_NO_MEMORY;
    }
    mr_safetensors *file = NULL;
    status = mr_safetensors_open(model_path, &file, err);
    mr_paramset *base_ps = mr_rec_model_params(base_model);
    for (int i = 0; i < mr_paramset_count(base_ps) && status == MR_OK; i++) {
        const char *name = mr_paramset_get(base_ps, i)->name;
        if (mr_safetensors_tensor_find(file, name) == NULL) {
            status = mr_error_set(err, MR_ERR_NOT_FOUND,
                                  "rec: %s lacks the weight '%s' of the base %s model; it "
                                  "is not the best model of a matching base run",
                                  model_path, name, mr_rec_backbone_name(c->backbone));
        }
    }
    int base_count = mr_paramset_count(base_ps);
    mr_safetensors_close(file);
    mr_rec_model_free(base_model);
    if (status != MR_OK) {
        return status;
    }

    mr_paramset *ps = mr_rec_model_params(tr->model);
    int loaded = 0;
    status = mr_paramset_load(ps, model_path, false, &loaded, err);
    if (status != MR_OK) {
        return status;
    }
    if (loaded < base_count) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: only %d of the %d base weights in %s loaded", loaded,
                            base_count, model_path);
    }
    mr_log(MR_LOG_INFO, "rec",
           "initialised %d of %d weights from %s; the other %d (adapters) start fresh",
           loaded, mr_paramset_count(ps), model_path, mr_paramset_count(ps) - loaded);
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Epochs
 * ------------------------------------------------------------------------ */

/* Sets row 0 (padding) of the item embedding, or of its gradient, to zero. */
static void zero_padding_row(mr_rec_model *model, bool gradient) {
    mr_tensor *embedding = mr_rec_model_item_embedding(model);
    int dim = mr_rec_model_config(model)->dim;
    float *row = gradient ? embedding->grad : embedding->data;
    if (row != NULL) {
        memset(row, 0, (size_t)dim * sizeof(float));
    }
}

/*
 * Fills the inputs and candidates of examples order[first..first+count-1]:
 * seq [count, L] and candidates [count, 1 + negatives] with the target
 * first. Example i's negatives draw from child i of negatives_rng, so the
 * result does not depend on the thread count.
 */
static void fill_batch(const trainer *tr, int64_t first, int64_t count,
                       const mr_rng *negatives_rng, int32_t *seq, int32_t *candidates) {
    const mr_rec_data *data = tr->data;
    int max_len = tr->config->max_len;
    int width = 1 + tr->config->negatives;

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        int64_t example = tr->order[first + i];
        int64_t s = data->train_seq[example];
        int64_t pos = data->train_pos[example];
        mr_rec_data_input(data, s, pos, max_len, seq + i * max_len);
        candidates[i * width] = data->items[data->offsets[s] + pos];
        mr_rng rng = mr_rng_split(negatives_rng, (uint64_t)i);
        mr_rec_sample_negatives(data, s, tr->config->negatives, &rng,
                                candidates + i * width + 1);
    }
}

/* Rows below which a length group is not split off (see length_groups.h). */
#define TRAIN_GROUP_ROWS 32

/* Buffers for one batch's length groups, sized for the largest batch. */
typedef struct group_buffers {
    int64_t *order;             /* [rows] */
    mr_rec_length_group *groups; /* [rows] */
    int32_t *seq;               /* [rows, L] */
    int32_t *candidates;        /* [rows, 1 + negatives] */
} group_buffers;

/* Checks that a batch loss is finite. */
static mr_status check_loss(double loss, int epoch, int64_t batch, mr_error *err) {
    if (!isfinite(loss)) {
        return mr_error_set(err, MR_ERR_NUMERIC,
                            "rec: the loss is %g at epoch %d, batch %lld; lower the learning "
                            "rate",
                            loss, epoch, (long long)batch);
    }
    return MR_OK;
}

/*
 * Builds the loss of rows [count, length] with weight scale and adds its
 * gradient to the weights' gradients. Adds the scaled loss to *loss_value.
 * ctx is reset first.
 */
static mr_status accumulate_loss(trainer *tr, int epoch, int64_t batch, const int32_t *seq_values,
                                 const int32_t *candidate_values, int64_t count, int length,
                                 float scale, mr_rng *dropout_rng, double *loss_value,
                                 mr_error *err) {
    mr_ctx *ctx = tr->step;
    int width = 1 + tr->config->negatives;

    mr_ctx_reset(ctx);
    mr_ctx_set_training(ctx, true);
    mr_ctx_set_grad_enabled(ctx, true);
    mr_tensor *seq = mr_tensor_from_i32(ctx, 2, (int64_t[]){count, length}, seq_values);
    mr_tensor *candidates =
        mr_tensor_from_i32(ctx, 2, (int64_t[]){count, width}, candidate_values);
    mr_tensor *loss = mr_rec_model_loss(tr->model, ctx, seq, candidates, dropout_rng);
    if (scale != 1.0f) {
        loss = mr_tensor_scale(ctx, loss, scale);
    }
    if (loss == NULL || mr_ctx_status(ctx) != MR_OK) {
        return mr_ctx_take_error(ctx, err);
    }

    mr_status status = check_loss(loss->data[0], epoch, batch, err);
    if (status != MR_OK) {
        return status;
    }
    *loss_value += loss->data[0];
    if (mr_tensor_backward(ctx, loss, NULL) != MR_OK) {
        return mr_ctx_take_error(ctx, err);
    }
    return MR_OK;
}

/*
 * Adds the gradient of a filled batch's mean loss to the weights'
 * gradients and stores the loss. A truncatable backbone runs the batch as
 * length groups, each cut to its longest input and weighted by its share
 * of the batch, which sums to the same loss and gradient up to float
 * rounding. Dropout then draws its masks group by group, so they differ
 * from those of one full batch.
 */
static mr_status batch_gradient(trainer *tr, int epoch, int64_t batch, const int32_t *seq_values,
                                const int32_t *candidate_values, int64_t count,
                                group_buffers *buffers, mr_rng *dropout_rng, double *loss_value,
                                mr_error *err) {
    int max_len = tr->config->max_len;
    int width = 1 + tr->config->negatives;
    *loss_value = 0.0;
    if (!mr_rec_model_truncatable(tr->model)) {
        return accumulate_loss(tr, epoch, batch, seq_values, candidate_values, count, max_len,
                               1.0f, dropout_rng, loss_value, err);
    }

    int64_t n_groups = mr_rec_length_groups(seq_values, count, max_len, TRAIN_GROUP_ROWS,
                                            buffers->order, buffers->groups);
    if (n_groups < 0) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "rec: out of memory grouping a batch of %lld examples",
                            (long long)count);
    }
    for (int64_t g = 0; g < n_groups; g++) {
        const mr_rec_length_group *group = &buffers->groups[g];
        mr_rec_gather_rows(seq_values, max_len, candidate_values, width,
                           buffers->order + group->first, group->count, group->length,
                           buffers->seq, buffers->candidates);
        float scale = (float)group->count / (float)count;
        mr_status status =
            accumulate_loss(tr, epoch, batch, buffers->seq, buffers->candidates, group->count,
                            group->length, scale, dropout_rng, loss_value, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return check_loss(*loss_value, epoch, batch, err);
}

/* Runs one training step on a filled batch and returns its loss. */
static mr_status train_step(trainer *tr, int epoch, int64_t batch, const int32_t *seq_values,
                            const int32_t *candidate_values, int64_t count,
                            group_buffers *buffers, mr_rng *dropout_rng, double *loss_value,
                            mr_error *err) {
    mr_status status = batch_gradient(tr, epoch, batch, seq_values, candidate_values, count,
                                      buffers, dropout_rng, loss_value, err);
    if (status != MR_OK) {
        return status;
    }

    /* Padding row 0 gets no update, as with PyTorch's padding_idx. */
    zero_padding_row(tr->model, true);
    float norm = mr_optim_clip_grad_norm(tr->optim, tr->options->clip_norm);
    if (!isfinite(norm)) {
        return mr_error_set(err, MR_ERR_NUMERIC,
                            "rec: the gradient norm is %g at epoch %d, batch %lld; lower the "
                            "learning rate",
                            (double)norm, epoch, (long long)batch);
    }
    status = mr_optim_step(tr->optim, tr->options->lr, err);
    mr_optim_zero_grad(tr->optim);
    zero_padding_row(tr->model, false);
    return status;
}

/* Trains one epoch over every training example in a fresh order and
 * stores the example-weighted mean loss. */
static mr_status train_epoch(trainer *tr, int epoch, double *mean_loss, mr_error *err) {
    const mr_rec_data *data = tr->data;
    int64_t n = data->n_train;
    int64_t batch_size = tr->options->batch_size;
    int max_len = tr->config->max_len;
    int width = 1 + tr->config->negatives;
    mr_rng epoch_rng = mr_rng_split(&tr->train_root, (uint64_t)epoch);

    /* A Fisher-Yates shuffle of the identity, so the order depends only on
     * the seed and the epoch. */
    mr_rng shuffle_rng = mr_rng_split(&epoch_rng, 0);
    for (int64_t i = 0; i < n; i++) {
        tr->order[i] = i;
    }
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mr_rng_below(&shuffle_rng, (uint64_t)(i + 1));
        int64_t swap = tr->order[i];
        tr->order[i] = tr->order[j];
        tr->order[j] = swap;
    }

    int64_t rows = n < batch_size ? n : batch_size;
    int32_t *seq = malloc((size_t)(rows * max_len) * sizeof(int32_t));
    int32_t *candidates = malloc((size_t)(rows * width) * sizeof(int32_t));
    group_buffers buffers = {
        .order = malloc((size_t)rows * sizeof(int64_t)),
        .groups = malloc((size_t)rows * sizeof(mr_rec_length_group)),
        .seq = malloc((size_t)(rows * max_len) * sizeof(int32_t)),
        .candidates = malloc((size_t)(rows * width) * sizeof(int32_t))};
    if (seq == NULL || candidates == NULL || buffers.order == NULL || buffers.groups == NULL ||
        buffers.seq == NULL || buffers.candidates == NULL) {
        free(seq);
        free(candidates);
        free(buffers.order);
        free(buffers.groups);
        free(buffers.seq);
        free(buffers.candidates);
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "rec: out of memory for a batch of %lld examples", (long long)rows);
    }

    mr_status status = MR_OK;
    double loss_sum = 0.0;
    double start = now_seconds();
    for (int64_t first = 0, batch = 0; first < n && status == MR_OK; first += batch_size, batch++) {
        int64_t count = n - first < batch_size ? n - first : batch_size;
        mr_rng batch_rng = mr_rng_split(&epoch_rng, 1 + (uint64_t)batch);
        mr_rng negatives_rng = mr_rng_split(&batch_rng, 0);
        mr_rng dropout_rng = mr_rng_split(&batch_rng, 1);
        fill_batch(tr, first, count, &negatives_rng, seq, candidates);

        double loss = 0.0;
        status = train_step(tr, epoch, batch, seq, candidates, count, &buffers, &dropout_rng,
                            &loss, err);
        loss_sum += loss * (double)count;

        if (status == MR_OK && tr->options->progress != NULL) {
            double elapsed = now_seconds() - start;
            mr_rec_progress progress = {
                .epoch = epoch,
                .examples_done = first + count,
                .examples_total = n,
                .loss = loss_sum / (double)(first + count),
                .examples_per_second = elapsed > 0 ? (double)(first + count) / elapsed : 0,
                .phase = "train"};
            tr->options->progress(&progress, tr->options->progress_user_data);
        }
    }
    free(seq);
    free(candidates);
    free(buffers.order);
    free(buffers.groups);
    free(buffers.seq);
    free(buffers.candidates);

    double elapsed = now_seconds() - start;
    *mean_loss = loss_sum / (double)n;
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rec",
               "epoch %d train: loss %.6f over %lld examples in %.1f s (%.0f examples/s)",
               epoch, *mean_loss, (long long)n, elapsed,
               elapsed > 0 ? (double)n / elapsed : 0.0);
    }
    return status;
}

/* Evaluates a split and reports it to the progress callback. */
static mr_status evaluate_split(trainer *tr, int epoch, mr_rec_split split,
                                mr_rec_metrics *metrics, mr_error *err) {
    double start = now_seconds();
    mr_status status = mr_rec_evaluate(tr->model, tr->data, split, metrics, err);
    double elapsed = now_seconds() - start;
    if (status == MR_OK && tr->options->progress != NULL) {
        mr_rec_progress progress = {
            .epoch = epoch,
            .examples_done = metrics->users,
            .examples_total = metrics->users,
            .loss = 0.0,
            .examples_per_second = elapsed > 0 ? (double)metrics->users / elapsed : 0,
            .phase = mr_rec_split_name(split)};
        tr->options->progress(&progress, tr->options->progress_user_data);
    }
    return status;
}

/*
 * Validates the current weights for epoch, saves them as the best model on
 * a strict improvement of hit@50 and appends the epoch's entry to the
 * history. Sets *stop when patience + 1 validations in a row brought no
 * improvement.
 */
static mr_status validate(trainer *tr, int epoch, bool *stop, mr_error *err) {
    mr_rec_metrics valid;
    mr_status status = evaluate_split(tr, epoch, MR_REC_VALID, &valid, err);
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
    snprintf(suffix, sizeof suffix, improved ? " (new best)" : " (best %.4f at epoch %d)",
             tr->state.best_hit50, tr->state.best_epoch);
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
static void record_loss(trainer *tr, double loss) {
    int last = cJSON_GetArraySize(tr->state.history) - 1;
    cJSON *entry = cJSON_GetArrayItem(tr->state.history, last);
    cJSON_ReplaceItemInObjectCaseSensitive(entry, "train_loss", cJSON_CreateNumber(loss));
}

/* ------------------------------------------------------------------------
 * The run
 * ------------------------------------------------------------------------ */

/* Sets the file paths of the run folder. */
static mr_status set_paths(trainer *tr, mr_error *err) {
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
        mr_status status = rec_path_join(files[i].out, sizeof tr->config_path, dir,
                                         files[i].name, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/*
 * Checks an existing run's config.json against this run's settings, then
 * writes the new one. Sets *finished when the done marker says there is nothing
 * left to train.
 */
static mr_status prepare_folder(trainer *tr, const char *init_dir, bool *finished,
                                mr_error *err) {
    *finished = false;
    mr_status status = rec_make_dirs(tr->options->out_dir, err);
    if (status != MR_OK) {
        return status;
    }
    cJSON *json = rec_config_to_json(tr->config, tr->options, init_dir, tr->data);
    if (json == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory building %s",
                            tr->config_path);
    }

    /* Settings matter once a checkpoint or a finished run exists; before
     * that nothing has been trained and a new config.json replaces the
     * old one. */
    if (rec_path_exists(tr->config_path) &&
        (rec_path_exists(tr->checkpoint_path) || rec_path_exists(tr->done_path))) {
        cJSON *old_json = NULL;
        status = rec_json_read(tr->config_path, &old_json, err);
        if (status == MR_OK) {
            status = rec_config_compare(old_json, json, tr->options->out_dir, err);
        }
        const cJSON *old_threads = cJSON_GetObjectItemCaseSensitive(old_json, "threads");
        if (status == MR_OK && cJSON_IsNumber(old_threads) &&
            (int)old_threads->valuedouble != mr_threads_get()) {
            mr_log(MR_LOG_WARN, "rec",
                   "the run in %s started with %d threads and resumes with %d; sums may "
                   "round differently from an uninterrupted run",
                   tr->options->out_dir, (int)old_threads->valuedouble, mr_threads_get());
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
    if (status == MR_OK && !*finished) {
        status = rec_json_write(tr->config_path, json, err);
    }
    cJSON_Delete(json);
    return status;
}

/* Creates the model, the optimizer over its flat buffer and the buffers. */
static mr_status create_training(trainer *tr, mr_error *err) {
    tr->model = mr_rec_model_create(tr->config, tr->data->n_items, tr->options->seed, err);
    if (tr->model == NULL) {
        return err != NULL && err->status != MR_OK ? err->status : MR_ERR_NO_MEMORY;
    }
    mr_optim_config optim_config = mr_optim_config_default(MR_OPTIM_ADAM);
    tr->optim = mr_optim_create(&optim_config, err);
    if (tr->optim == NULL) {
        return err != NULL && err->status != MR_OK ? err->status : MR_ERR_NO_MEMORY;
    }
    mr_tensor *flat = mr_paramset_flat(mr_rec_model_params(tr->model));
    mr_status status = mr_optim_add_group(tr->optim, &flat, 1, 0.0f, 1.0f, err);
    if (status != MR_OK) {
        return status;
    }
    tr->step = mr_ctx_create(0);
    tr->order = malloc((size_t)tr->data->n_train * sizeof(int64_t));
    tr->state.history = cJSON_CreateArray();
    if (tr->step == NULL || tr->order == NULL || tr->state.history == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory setting up training");
    }
    return MR_OK;
}

static void trainer_free(trainer *tr) {
    mr_rec_model_free(tr->model);
    mr_optim_free(tr->optim);
    mr_ctx_free(tr->step);
    free(tr->order);
    cJSON_Delete(tr->state.history);
}

/* Runs the epochs from the loop state on, then tests the best weights. */
static mr_status run_epochs(trainer *tr, mr_error *err) {
    mr_status status = MR_OK;
    bool stop = false;
    while (!stop && tr->state.next_epoch < tr->options->epochs) {
        int epoch = tr->state.next_epoch;
        status = validate(tr, epoch, &stop, err);
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

        double loss = 0.0;
        status = train_epoch(tr, epoch, &loss, err);
        if (status != MR_OK) {
            return status;
        }
        record_loss(tr, loss);
        tr->state.next_epoch = epoch + 1;
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
    if (status == MR_OK) {
        status = evaluate_split(tr, tr->state.best_epoch, MR_REC_TEST, &test, err);
    }
    if (status == MR_OK) {
        char what[48];
        snprintf(what, sizeof what, "test (best epoch %d)", tr->state.best_epoch);
        log_metrics(what, &test, "");
        status = write_metrics(tr, &test, err);
    }
    if (status == MR_OK) {
        status = write_done(tr, stop, err);
    }
    return status;
}

mr_status mr_rec_train(const mr_rec_data *data, const mr_rec_config *config,
                       const mr_rec_train_options *options, mr_error *err) {
    mr_status status = check_options(options, err);
    if (status == MR_OK) {
        status = mr_rec_config_check(config, err);
    }
    if (status != MR_OK) {
        return status;
    }

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

    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.data = data;
    tr.config = config;
    tr.options = options;
    tr.state.best_epoch = -1;
    tr.state.best_hit50 = -1.0;
    mr_rng root;
    mr_rng_init(&root, options->seed);
    tr.train_root = mr_rng_split(&root, STREAM_TRAIN);

    bool finished = false;
    status = set_paths(&tr, err);
    if (status == MR_OK) {
        status = prepare_folder(&tr, init, &finished, err);
    }
    if (status == MR_OK && finished) {
        return report_finished(&tr, err);
    }
    if (status == MR_OK) {
        status = create_training(&tr, err);
    }

    /* Resume from the checkpoint, or start from the seed or the base run. */
    if (status == MR_OK && rec_path_exists(tr.checkpoint_path)) {
        status = load_checkpoint(&tr, err);
        if (status == MR_OK) {
            mr_log(MR_LOG_INFO, "rec", "resuming the run in %s at epoch %d (best hit@50 %.4f "
                   "at epoch %d)", options->out_dir, tr.state.next_epoch, tr.state.best_hit50,
                   tr.state.best_epoch);
        }
    } else if (status == MR_OK && init != NULL) {
        status = load_init(&tr, init, err);
    } else if (status == MR_OK && config->ada) {
        mr_log(MR_LOG_WARN, "rec", "training Ada-Retrieval without --init: the reference "
               "trains the base model first and starts from its best weights");
    }
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rec",
               "training %s%s on %s: %lld examples, %lld users, %d item ids, %lld weights, "
               "batch %d, lr %g, %d threads",
               mr_rec_backbone_name(config->backbone), config->ada ? " + Ada-Retrieval" : "",
               data->path, (long long)data->n_train, (long long)data->n_sequences,
               (int)data->n_items,
               (long long)mr_paramset_numel(mr_rec_model_params(tr.model)), options->batch_size,
               (double)options->lr, mr_threads_get());
        status = run_epochs(&tr, err);
    }
    trainer_free(&tr);
    return status;
}
