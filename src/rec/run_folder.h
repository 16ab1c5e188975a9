/*
 * The files of a recommendation run folder, shared by training, loading
 * and the command-line tool:
 *
 *   config.json            every model and training setting, and the data
 *   metrics.json           validation figures per epoch, then the test ones
 *   model.safetensors      the weights with the best validation hit@50
 *   checkpoint.safetensors the latest weights, Adam state and loop state
 *   done                   present once the run has finished
 *   .lock                  locked by the training process (see fileio.h)
 *
 * Every file is replaced atomically, so a run killed at any point leaves
 * either the old or the new version of each.
 */
#ifndef MR_REC_RUN_FOLDER_H
#define MR_REC_RUN_FOLDER_H

#include <cJSON.h>

#include "multiround/rec.h"

#define REC_CONFIG_FILE "config.json"
#define REC_METRICS_FILE "metrics.json"
#define REC_MODEL_FILE "model.safetensors"
#define REC_CHECKPOINT_FILE "checkpoint.safetensors"
#define REC_DONE_FILE "done"

/* Reads and parses a JSON file of at most 64 MiB. */
mr_status rec_json_read(const char *path, cJSON **out, mr_error *err);

/* Writes json (indented, with a final newline) to path atomically. */
mr_status rec_json_write(const char *path, const cJSON *json, mr_error *err);

/*
 * Builds the config.json object: "model" (every mr_rec_config field),
 * "train" (the options and the fixed optimizer settings), "data" (path and
 * counts) and "threads". init_dir is the resolved folder or NULL.
 */
cJSON *rec_config_to_json(const mr_rec_config *config,
                          const mr_rec_train_options *options,
                          const char *init_dir, const mr_rec_data *data);

/* Reads the "model" object of a config.json into config; path is for
 * messages. Every field must be present. */
mr_status rec_config_from_json(const cJSON *json, const char *path,
                               mr_rec_config *config, mr_error *err);

/* Reads "data"."n_items" of a config.json. */
mr_status rec_config_n_items(const cJSON *json, const char *path, int32_t *n_items,
                             mr_error *err);

/*
 * Compares the settings that change a run's result between the config.json
 * of an existing run (old) and the one a rerun would write (new): every
 * model setting, batch size, learning rate, clipping, seed, the init
 * folder and the data counts. epochs, patience and checkpoint_minutes may
 * change: they only decide when the same trajectory stops or is saved.
 * Fails with
 * MR_ERR_INVALID_ARGUMENT naming the first setting that differs.
 */
/*
 * Writes the first of those settings that differs to out, as
 * "model.dim = 16, but this run has 8", and returns true. Returns false
 * when they all match.
 */
bool rec_config_difference(const cJSON *old_json, const cJSON *new_json, char *out,
                           size_t size);

mr_status rec_config_compare(const cJSON *old_json, const cJSON *new_json,
                             const char *path, mr_error *err);

/* Builds {"users": N, "hit@10": ..., "ndcg@100": ...} from finished metrics. */
cJSON *rec_metrics_to_json(const mr_rec_metrics *metrics);

/* Reads an object made by rec_metrics_to_json back into metrics. */
mr_status rec_metrics_from_json(const cJSON *json, const char *path,
                                mr_rec_metrics *metrics, mr_error *err);

#endif /* MR_REC_RUN_FOLDER_H */
