/*
 * The recommender trainer's state and the steps that training
 * (train.c) and the throughput benchmark (bench.c) share: setting up the
 * model and optimizer, initialising from a base run, shuffling an epoch
 * and running one batch.
 */
#ifndef MR_REC_TRAINER_H
#define MR_REC_TRAINER_H

#include "length_groups.h"
#include "model_internal.h"
#include "multiround/optim.h"
#include "run_folder.h"

/* Child streams of the seed's root stream. */
#define REC_STREAM_TRAIN 1 /* then per epoch, then 0: shuffle, 1 + b: batch b */

/* The loop state that the checkpoint carries from one epoch to the next,
 * or from one batch to the next within an epoch. */
typedef struct rec_loop_state {
    int next_epoch;
    int64_t next_batch;   /* next batch of next_epoch to train; 0 between epochs */
    double epoch_loss;    /* sum of count * loss over next_epoch's trained batches */
    int best_epoch;       /* -1 before the first validation */
    double best_hit50;    /* -1 before the first validation */
    int since_best;       /* validations without a new best since the best */
    cJSON *history;       /* array of per-epoch entries */
} rec_loop_state;

typedef struct rec_trainer {
    const mr_rec_data *data;
    const mr_rec_config *config;
    const mr_rec_train_options *options;
    mr_rec_model *model;
    mr_optim *optim;
    mr_ctx *step;
    int64_t *order; /* [n_train]: this epoch's example order */
    mr_rng train_root;
    int64_t slice_rows; /* rows per slice of a full-length batch; 0: the default, 256 */
    rec_loop_state state;
    char config_path[4096];
    char metrics_path[4096];
    char model_path[4096];
    char checkpoint_path[4096];
    char done_path[4096];
} rec_trainer;

/* Inputs of one batch and the buffers of its length groups, sized for the
 * largest batch. */
typedef struct rec_batch {
    int64_t rows;                /* capacity */
    int32_t *seq;                /* [rows, L] */
    int32_t *candidates;         /* [rows, 1 + negatives] */
    int64_t *order;              /* [rows] */
    mr_rec_length_group *groups; /* [rows] */
    int32_t *group_seq;          /* [rows, L] */
    int32_t *group_candidates;   /* [rows, 1 + negatives] */
} rec_batch;

/* Sets tr->train_root from the options' seed. tr's data, config and
 * options must be set. */
void rec_trainer_seed(rec_trainer *tr);

/* Creates the model (initialised from the seed), the Adam optimizer over
 * its flat buffer, the step context and the order buffer. tr's data,
 * config and options must be set; rec_trainer_free releases everything,
 * also after a failure. */
mr_status rec_trainer_create(rec_trainer *tr, mr_error *err);

void rec_trainer_free(rec_trainer *tr);

/*
 * Copies the base model's weights (backbone, item embedding and item
 * bias) from the best model in init_dir into the model by name. Every one
 * must be in the file with the same shape. The adapters keep their fresh
 * initialisation, also when init_dir is an Ada-Retrieval run.
 */
mr_status rec_trainer_load_init(rec_trainer *tr, const char *init_dir, mr_error *err);

/* Puts epoch's example order into tr->order: a shuffle that depends only
 * on the seed and the epoch. */
void rec_trainer_shuffle(rec_trainer *tr, int epoch);

/* Allocates a batch of up to rows examples; NULL when out of memory. */
rec_batch *rec_batch_create(const rec_trainer *tr, int64_t rows);
void rec_batch_free(rec_batch *batch);

/*
 * Runs training step `index` of epoch: fills examples
 * tr->order[first .. first + count - 1] with fresh negatives, adds the
 * gradient of their mean loss, clips and takes one Adam step. Stores the
 * batch's mean loss in *loss.
 */
mr_status rec_trainer_step(rec_trainer *tr, int epoch, int64_t index, int64_t first,
                           int64_t count, rec_batch *batch, double *loss, mr_error *err);

#endif /* MR_REC_TRAINER_H */
