/*
 * The parts of recommender training that the epoch loop (train.c) and the
 * throughput benchmark (bench.c) share: setting up the model and Adam,
 * initialising from a base run, the epoch's example order and one
 * training step over a batch of examples.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/fileio.h"
#include "multiround/safetensors.h"
#include "trainer.h"

/* ------------------------------------------------------------------------
 * Set-up
 * ------------------------------------------------------------------------ */

void rec_trainer_seed(rec_trainer *tr) {
    mr_rng root;
    mr_rng_init(&root, tr->options->seed);
    tr->train_root = mr_rng_split(&root, REC_STREAM_TRAIN);
}

/* ------------------------------------------------------------------------
 * Initialisation from a base run (Ada-Retrieval stage 2)
 * ------------------------------------------------------------------------ */

mr_status rec_trainer_load_init(rec_trainer *tr, const char *init_dir, mr_error *err) {
    char config_path[4096], model_path[4096], done_path[4096];
    mr_status status = mr_path_join(config_path, sizeof config_path, init_dir,
                                    REC_CONFIG_FILE, err);
    if (status == MR_OK) {
        status = mr_path_join(model_path, sizeof model_path, init_dir, REC_MODEL_FILE, err);
    }
    if (status == MR_OK) {
        status = mr_path_join(done_path, sizeof done_path, init_dir, REC_DONE_FILE, err);
    }
    if (status != MR_OK) {
        return status;
    }
    if (!mr_path_exists(model_path)) {
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
    if (base.ada) {
        mr_log(MR_LOG_WARN, "rec",
               "the --init run in %s is an Ada-Retrieval run: only its backbone, item "
               "embedding and item bias are used, and the authors' code starts from a base "
               "run", init_dir);
    }
    if (!mr_path_exists(done_path)) {
        mr_log(MR_LOG_WARN, "rec",
               "the --init run in %s has not finished: its %s holds the best weights so "
               "far", init_dir, REC_MODEL_FILE);
    }
    if (base.backbone != c->backbone) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: the --init run in %s has the %s backbone but this run has "
                            "%s; initialise from a base run of the same backbone",
                            init_dir, mr_rec_backbone_name(base.backbone),
                            mr_rec_backbone_name(c->backbone));
    }
    struct {
        const char *name;
        long long base_value, value;
    } shared[] = {{"dim", base.dim, c->dim},
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

    /* The weights a base model declares are the ones the file must hold,
     * and the only ones taken from it. An Ada-Retrieval run's adapters
     * stay behind, so this run's adapters always start fresh. */
    mr_rec_config base_config = *c;
    base_config.ada = false;
    mr_log(MR_LOG_INFO, "rec", "initialising from the base model in %s", model_path);
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
    mr_safetensors_close(file);
    if (status == MR_OK) {
        status = mr_paramset_load(base_ps, model_path, true, NULL, err);
    }

    /* Copy each base weight into the weight of the same name. */
    mr_paramset *ps = mr_rec_model_params(tr->model);
    int loaded = 0;
    for (int i = 0; i < mr_paramset_count(base_ps) && status == MR_OK; i++) {
        const mr_tensor *from = mr_paramset_get(base_ps, i);
        mr_tensor *to = mr_paramset_find(ps, from->name);
        if (to == NULL || mr_tensor_numel(to) != mr_tensor_numel(from)) {
            status = mr_error_set(err, MR_ERR_STATE,
                                  "rec: this run has no weight '%s' of the base model's shape",
                                  from->name);
            break;
        }
        memcpy(to->data, from->data, (size_t)mr_tensor_numel(to) * sizeof(float));
        loaded++;
    }
    mr_rec_model_free(base_model);
    if (status != MR_OK) {
        return status;
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
static void fill_batch(const rec_trainer *tr, int64_t first, int64_t count,
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

/* Rows of one slice of a full-length batch (see full_length_gradient). */
#define FULL_LENGTH_ROWS 256

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
 * gradient to the weights' gradients. Round 0 runs on the last
 * round0_length positions (0 for all). Adds the scaled loss to
 * *loss_value. ctx is reset first.
 */
static mr_status accumulate_loss(rec_trainer *tr, int epoch, int64_t batch, const int32_t *seq_values,
                                 const int32_t *candidate_values, int64_t count, int length,
                                 int round0_length, float scale, mr_rng *dropout_rng,
                                 double *loss_value, mr_error *err) {
    mr_ctx *ctx = tr->step;
    int width = 1 + tr->config->negatives;

    mr_ctx_reset(ctx);
    mr_ctx_set_training(ctx, true);
    mr_ctx_set_grad_enabled(ctx, true);
    mr_tensor *seq = mr_tensor_from_i32(ctx, 2, (int64_t[]){count, length}, seq_values);
    mr_tensor *candidates =
        mr_tensor_from_i32(ctx, 2, (int64_t[]){count, width}, candidate_values);
    mr_tensor *loss =
        mr_rec_model_loss_cut(tr->model, ctx, seq, round0_length, candidates, dropout_rng);
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
 * Groups the rows of a batch by length into buffers->order and
 * buffers->groups (see length_groups.h). Returns the number of groups, or
 * -1 with the error in err when memory runs out.
 */
static int64_t group_batch(const int32_t *seq_values, int64_t count, int max_len,
                           int64_t min_rows, rec_batch *buffers, mr_error *err) {
    int64_t n_groups = mr_rec_length_groups(seq_values, count, max_len, min_rows,
                                            buffers->order, buffers->groups);
    if (n_groups < 0) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory grouping a batch of %lld "
                     "examples", (long long)count);
    }
    return n_groups;
}

/*
 * Adds the gradient of rows [count, length] in slices of at most
 * tr->slice_rows rows, each weighted by its share of a batch of `total`
 * rows, with round 0 run on the last round0_length positions (0 for all).
 */
static mr_status sliced_gradient(rec_trainer *tr, int epoch, int64_t batch,
                                 const int32_t *seq_values, const int32_t *candidate_values,
                                 int64_t count, int length, int64_t total, int round0_length,
                                 mr_rng *dropout_rng, double *loss_value, mr_error *err) {
    int width = 1 + tr->config->negatives;
    int64_t slice = tr->slice_rows > 0 ? tr->slice_rows : FULL_LENGTH_ROWS;
    for (int64_t first = 0; first < count; first += slice) {
        int64_t rows = count - first < slice ? count - first : slice;
        float scale = (float)rows / (float)total;
        mr_status status = accumulate_loss(tr, epoch, batch, seq_values + first * length,
                                           candidate_values + first * width, rows, length,
                                           round0_length, scale, dropout_rng, loss_value, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/*
 * Adds the gradient of a batch's mean loss for a model that needs
 * full-length inputs, in slices of at most tr->slice_rows rows weighted
 * by their share of the batch. The sum is the loss and gradient of the
 * whole batch up to float rounding. The activations kept for the backward
 * pass shrink to those of one slice, where a whole Ada-Retrieval NextItNet
 * batch of 1024 reached 19.3 GB. Dropout draws its masks slice by slice.
 *
 * When only round 0 may run cut inputs (GRU4Rec and NextItNet under
 * Ada-Retrieval), the slices are taken from length groups of at least
 * half a slice, and round 0 of each runs cut to its group's longest input.
 */
static mr_status full_length_gradient(rec_trainer *tr, int epoch, int64_t batch,
                                      const int32_t *seq_values, const int32_t *candidate_values,
                                      int64_t count, rec_batch *buffers, mr_rng *dropout_rng,
                                      double *loss_value, mr_error *err) {
    mr_status status = MR_OK;
    if (!mr_rec_model_round0_truncatable(tr->model)) {
        status = sliced_gradient(tr, epoch, batch, seq_values, candidate_values, count,
                                 tr->config->max_len, count, 0, dropout_rng, loss_value, err);
        return status != MR_OK ? status : check_loss(*loss_value, epoch, batch, err);
    }

    int max_len = tr->config->max_len;
    int width = 1 + tr->config->negatives;
    int64_t slice = tr->slice_rows > 0 ? tr->slice_rows : FULL_LENGTH_ROWS;
    int64_t min_rows = slice / 2 > 0 ? slice / 2 : 1;
    int64_t n_groups = group_batch(seq_values, count, max_len, min_rows, buffers, err);
    if (n_groups < 0) {
        return err != NULL ? err->status : MR_ERR_NO_MEMORY;
    }
    for (int64_t g = 0; g < n_groups && status == MR_OK; g++) {
        const mr_rec_length_group *group = &buffers->groups[g];
        mr_rec_gather_rows(seq_values, max_len, candidate_values, width,
                           buffers->order + group->first, group->count, max_len,
                           buffers->group_seq, buffers->group_candidates);
        status = sliced_gradient(tr, epoch, batch, buffers->group_seq,
                                 buffers->group_candidates, group->count, max_len, count,
                                 group->length, dropout_rng, loss_value, err);
    }
    return status != MR_OK ? status : check_loss(*loss_value, epoch, batch, err);
}

/*
 * Adds the gradient of a filled batch's mean loss to the weights'
 * gradients and stores the loss. A truncatable backbone runs the batch as
 * length groups, each cut to its longest input and weighted by its share
 * of the batch, which sums to the same loss and gradient up to float
 * rounding. Dropout then draws its masks group by group, so they differ
 * from those of one full batch.
 */
static mr_status batch_gradient(rec_trainer *tr, int epoch, int64_t batch, const int32_t *seq_values,
                                const int32_t *candidate_values, int64_t count,
                                rec_batch *buffers, mr_rng *dropout_rng, double *loss_value,
                                mr_error *err) {
    int max_len = tr->config->max_len;
    int width = 1 + tr->config->negatives;
    *loss_value = 0.0;
    if (!mr_rec_model_truncatable(tr->model)) {
        return full_length_gradient(tr, epoch, batch, seq_values, candidate_values, count,
                                    buffers, dropout_rng, loss_value, err);
    }

    int64_t n_groups = group_batch(seq_values, count, max_len, TRAIN_GROUP_ROWS, buffers, err);
    if (n_groups < 0) {
        return err != NULL ? err->status : MR_ERR_NO_MEMORY;
    }
    for (int64_t g = 0; g < n_groups; g++) {
        const mr_rec_length_group *group = &buffers->groups[g];
        mr_rec_gather_rows(seq_values, max_len, candidate_values, width,
                           buffers->order + group->first, group->count, group->length,
                           buffers->group_seq, buffers->group_candidates);
        /* Ada-Retrieval with ada_zero_padding runs every round on cut
         * inputs. Slices bound the activations of all its rounds, as for
         * full-length inputs. */
        mr_status status;
        if (tr->config->ada && tr->config->ada_zero_padding) {
            status = sliced_gradient(tr, epoch, batch, buffers->group_seq,
                                     buffers->group_candidates, group->count, group->length,
                                     count, 0, dropout_rng, loss_value, err);
        } else {
            float scale = (float)group->count / (float)count;
            status = accumulate_loss(tr, epoch, batch, buffers->group_seq,
                                     buffers->group_candidates, group->count, group->length, 0,
                                     scale, dropout_rng, loss_value, err);
        }
        if (status != MR_OK) {
            return status;
        }
    }
    return check_loss(*loss_value, epoch, batch, err);
}

/* Runs one training step on a filled batch and returns its loss. */
static mr_status step_batch(rec_trainer *tr, int epoch, int64_t batch, const int32_t *seq_values,
                            const int32_t *candidate_values, int64_t count,
                            rec_batch *buffers, mr_rng *dropout_rng, double *loss_value,
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

mr_status rec_trainer_create(rec_trainer *tr, mr_error *err) {
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

void rec_trainer_free(rec_trainer *tr) {
    mr_rec_model_free(tr->model);
    mr_optim_free(tr->optim);
    mr_ctx_free(tr->step);
    free(tr->order);
    cJSON_Delete(tr->state.history);
}

/* ------------------------------------------------------------------------
 * Order, batches and steps
 * ------------------------------------------------------------------------ */

void rec_trainer_shuffle(rec_trainer *tr, int epoch) {
    int64_t n = tr->data->n_train;
    mr_rng epoch_rng = mr_rng_split(&tr->train_root, (uint64_t)epoch);

    /* A Fisher-Yates shuffle of the identity from the epoch's child 0. */
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
}

rec_batch *rec_batch_create(const rec_trainer *tr, int64_t rows) {
    size_t max_len = (size_t)tr->config->max_len;
    size_t width = 1 + (size_t)tr->config->negatives;
    rec_batch *batch = calloc(1, sizeof *batch);
    if (batch == NULL) {
        return NULL;
    }
    batch->rows = rows;
    batch->seq = malloc((size_t)rows * max_len * sizeof(int32_t));
    batch->candidates = malloc((size_t)rows * width * sizeof(int32_t));
    batch->order = malloc((size_t)rows * sizeof(int64_t));
    batch->groups = malloc((size_t)rows * sizeof(mr_rec_length_group));
    batch->group_seq = malloc((size_t)rows * max_len * sizeof(int32_t));
    batch->group_candidates = malloc((size_t)rows * width * sizeof(int32_t));
    if (batch->seq == NULL || batch->candidates == NULL || batch->order == NULL ||
        batch->groups == NULL || batch->group_seq == NULL || batch->group_candidates == NULL) {
        rec_batch_free(batch);
        return NULL;
    }
    return batch;
}

void rec_batch_free(rec_batch *batch) {
    if (batch == NULL) {
        return;
    }
    free(batch->seq);
    free(batch->candidates);
    free(batch->order);
    free(batch->groups);
    free(batch->group_seq);
    free(batch->group_candidates);
    free(batch);
}

mr_status rec_trainer_step(rec_trainer *tr, int epoch, int64_t index, int64_t first,
                           int64_t count, rec_batch *batch, double *loss, mr_error *err) {
    if (count > batch->rows) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: a step of %lld examples exceeds the batch buffers' %lld",
                            (long long)count, (long long)batch->rows);
    }

    /* Step `index` of the epoch draws from the epoch's child 1 + index:
     * its child 0 for the negatives and child 1 for dropout. */
    mr_rng epoch_rng = mr_rng_split(&tr->train_root, (uint64_t)epoch);
    mr_rng batch_rng = mr_rng_split(&epoch_rng, 1 + (uint64_t)index);
    mr_rng negatives_rng = mr_rng_split(&batch_rng, 0);
    mr_rng dropout_rng = mr_rng_split(&batch_rng, 1);
    fill_batch(tr, first, count, &negatives_rng, batch->seq, batch->candidates);

    *loss = 0.0;
    return step_batch(tr, epoch, index, batch->seq, batch->candidates, count, batch,
                      &dropout_rng, loss, err);
}
