/*
 * Throughput benchmark of recommender training and evaluation: the same
 * steps as training (train_step.c) on the first batches of epoch 0, timed
 * without writing a run folder.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "trainer.h"

/* Maximum number of training steps of one benchmark (a few epochs of a large dataset). */
#define BENCH_MAX_STEPS 100000

static double bench_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Runs steps [first_step, first_step + count) of epoch 0, wrapping to the
 * start of the order when the steps outrun one epoch. Adds the examples
 * to *examples and stores the last step's loss. */
static mr_status run_steps(rec_trainer *tr, rec_batch *batch, int64_t first_step, int count,
                           int64_t *examples, double *last_loss, mr_error *err) {
    int64_t n = tr->data->n_train;
    int64_t batch_size = tr->options->batch_size;
    int64_t steps_per_epoch = (n + batch_size - 1) / batch_size;

    for (int s = 0; s < count; s++) {
        int64_t index = (first_step + s) % steps_per_epoch;
        int64_t first = index * batch_size;
        int64_t rows = n - first < batch_size ? n - first : batch_size;
        mr_status status =
            rec_trainer_step(tr, 0, index, first, rows, batch, last_loss, err);
        if (status != MR_OK) {
            return status;
        }
        *examples += rows;
    }
    return MR_OK;
}

mr_status mr_rec_bench(const mr_rec_data *data, const mr_rec_config *config,
                       const mr_rec_train_options *options, int warmup_steps, int steps,
                       mr_rec_bench_result *result, mr_error *err) {
    memset(result, 0, sizeof *result);
    if (warmup_steps < 0 || steps < 1 || warmup_steps > BENCH_MAX_STEPS ||
        steps > BENCH_MAX_STEPS) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: bench needs 1 to %d timed steps and 0 to %d warm-up steps, "
                            "not %d and %d",
                            BENCH_MAX_STEPS, BENCH_MAX_STEPS, steps, warmup_steps);
    }
    if (options->batch_size < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: batch_size = %d must be at least 1", options->batch_size);
    }
    mr_status status = mr_rec_config_check(config, err);
    if (status != MR_OK) {
        return status;
    }

    /* The model as training would start it. */
    rec_trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.data = data;
    tr.config = config;
    tr.options = options;
    rec_trainer_seed(&tr);
    status = rec_trainer_create(&tr, err);
    if (status == MR_OK && options->init_dir != NULL) {
        status = rec_trainer_load_init(&tr, options->init_dir, err);
    }
    int64_t rows = data->n_train < options->batch_size ? data->n_train : options->batch_size;
    rec_batch *batch = status == MR_OK ? rec_batch_create(&tr, rows) : NULL;
    if (status == MR_OK && batch == NULL) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY,
                              "rec: out of memory for a batch of %lld examples", (long long)rows);
    }
    if (status == MR_OK) {
        rec_trainer_shuffle(&tr, 0);
        result->weights = mr_paramset_numel(mr_rec_model_params(tr.model));
    }

    /* Warm-up steps fill the context's arena and the BLAS buffers. */
    int64_t examples = 0;
    double loss = 0.0;
    if (status == MR_OK) {
        status = run_steps(&tr, batch, 0, warmup_steps, &examples, &loss, err);
    }
    if (status == MR_OK) {
        examples = 0;
        double start = bench_seconds();
        status = run_steps(&tr, batch, warmup_steps, steps, &examples, &loss, err);
        double elapsed = bench_seconds() - start;
        result->train_examples = examples;
        result->train_seconds = elapsed;
        result->train_examples_per_second = elapsed > 0 ? (double)examples / elapsed : 0.0;
        result->train_step_ms = 1000.0 * elapsed / steps;
        result->last_loss = loss;
    }

    /* One full-ranking evaluation of the test split. */
    if (status == MR_OK) {
        mr_rec_metrics test;
        double start = bench_seconds();
        status = mr_rec_evaluate(tr.model, data, MR_REC_TEST, &test, err);
        double elapsed = bench_seconds() - start;
        result->eval_users = test.users;
        result->eval_seconds = elapsed;
        result->eval_users_per_second = elapsed > 0 ? (double)test.users / elapsed : 0.0;
        for (int c = 0; c < MR_REC_CUTOFFS; c++) {
            if (mr_rec_cutoffs[c] == 50) {
                result->eval_hit50 = test.hit[c];
            }
        }
    }

    rec_batch_free(batch);
    rec_trainer_free(&tr);
    return status;
}
