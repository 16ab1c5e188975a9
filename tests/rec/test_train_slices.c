/*
 * Full-length batches in slices. A model that cannot skip padding
 * (GRU4Rec under Ada-Retrieval) computes a training batch in slices of
 * rows to bound its memory. With dropout 0 one Adam step from a batch of
 * 600 examples in slices of 256 must give the loss and weights of the
 * same step in one slice.
 *
 * Tolerances: the slices change only the order of the sums over the
 * batch. Loss within 1e-6 relative; weights within 1e-6 absolute, because
 * Adam's first step moves each weight by about lr (1e-3) times the sign of
 * its gradient, so a rounding difference only shows where a gradient is
 * near zero.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/rec.h"
#include "test.h"
#include "trainer.h"

#define ITEMS 150
#define BATCH 600

static char data_path[128];

/* Writes 300 users with 3 to 40 items each and loads them. */
static mr_rec_data *varied_data(void) {
    FILE *file = fopen(data_path, "w");
    mr_rng rng;
    mr_rng_init(&rng, 3);
    for (int user = 1; user <= 300; user++) {
        int length = 3 + (int)mr_rng_below(&rng, 38);
        fprintf(file, "%d", user);
        for (int j = 0; j < length; j++) {
            fprintf(file, " %d", 1 + (int)mr_rng_below(&rng, ITEMS));
        }
        fputc('\n', file);
    }
    fclose(file);

    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(data_path, &data, &err), MR_OK);
    return data;
}

/* Runs step 0 of epoch 0 with slices of slice_rows rows, copies the
 * weights after it into weights (numel floats) and returns the loss. */
static double one_step(const mr_rec_data *data, const mr_rec_config *config,
                       const mr_rec_train_options *options, int64_t slice_rows, float *weights,
                       int64_t numel) {
    rec_trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.data = data;
    tr.config = config;
    tr.options = options;
    tr.slice_rows = slice_rows;
    rec_trainer_seed(&tr);
    mr_error err;
    CHECK_STATUS(rec_trainer_create(&tr, &err), MR_OK);
    rec_batch *batch = rec_batch_create(&tr, BATCH);
    CHECK(batch != NULL);
    CHECK(!mr_rec_model_truncatable(tr.model));

    double loss = 0.0;
    if (batch != NULL) {
        rec_trainer_shuffle(&tr, 0);
        CHECK_STATUS(rec_trainer_step(&tr, 0, 0, 0, BATCH, batch, &loss, &err), MR_OK);
        mr_tensor *flat = mr_paramset_flat(mr_rec_model_params(tr.model));
        CHECK_INT_EQ(mr_tensor_numel(flat), numel);
        memcpy(weights, flat->data, (size_t)numel * sizeof(float));
    }
    rec_batch_free(batch);
    rec_trainer_free(&tr);
    return loss;
}

static void sliced_step_matches_whole(void) {
    mr_rec_data *data = varied_data();
    CHECK(data != NULL && data->n_train >= BATCH);
    if (data == NULL || data->n_train < BATCH) {
        mr_rec_data_free(data);
        return;
    }
    mr_rec_config config;
    mr_rec_config_default(&config, MR_REC_GRU4REC);
    config.dim = 16;
    config.max_len = 16;
    config.inner_size = 24;
    config.dropout = 0.0f;
    config.negatives = 10;
    config.ada = true;
    config.rounds = 3;
    config.per_round = 4;
    mr_rec_train_options options;
    mr_rec_train_options_default(&options);
    options.batch_size = BATCH;
    options.seed = 5;

    /* The weights' count, from a model built only to count them. */
    mr_error err;
    mr_rec_model *model = mr_rec_model_create(&config, data->n_items, 1, &err);
    CHECK(model != NULL);
    int64_t numel = model != NULL ? mr_paramset_numel(mr_rec_model_params(model)) : 0;
    mr_rec_model_free(model);

    float *sliced = calloc((size_t)numel + 1, sizeof(float));
    float *whole = calloc((size_t)numel + 1, sizeof(float));
    double sliced_loss = one_step(data, &config, &options, 256, sliced, numel);
    double whole_loss = one_step(data, &config, &options, BATCH, whole, numel);

    CHECK(whole_loss > 0.1);
    CHECK_NEAR(sliced_loss, whole_loss, 1e-6 * whole_loss);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(sliced, whole, numel, 1e-6, 0.0), 0);

    free(sliced);
    free(whole);
    mr_rec_data_free(data);
}

int main(void) {
    char dir[64];
    snprintf(dir, sizeof dir, "%s/mr_rec_slices_XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data_path, sizeof data_path, "%s/varied.txt", dir);
    mr_log_set_level(MR_LOG_ERROR);

    MR_RUN(sliced_step_matches_whole);

    unlink(data_path);
    rmdir(dir);
    return mr_test_finish();
}
