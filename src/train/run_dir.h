/*
 * Run folders and checkpoints, shared by the trainers of trainer.c (SFT,
 * reward models, classifiers, DPO) and rl_run.c (GRPO, PPO).
 *
 * A run folder contains config.json (every setting), metrics.jsonl,
 * checkpoints/step-NNNNNNNN/ and checkpoint.json, which names the newest
 * complete checkpoint, then the outputs and a done marker. The rules:
 * a new run never replaces a finished or checkpointed one, a resumed run
 * keeps every setting that changes its result, and a run that fails
 * before its first checkpoint removes the folders it created.
 */
#ifndef MR_TRAIN_RUN_DIR_H
#define MR_TRAIN_RUN_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "multiround/common.h"
#include "multiround/fileio.h"
#include "multiround/optim.h"
#include "multiround/params.h"

struct cJSON;

/* ------------------------------------------------------------------------
 * Run folder rules (run_dir.c)
 * ------------------------------------------------------------------------ */

/* The part of out_dir that a run created, and its lock on out_dir. */
typedef struct train_run_dir {
    char *created;         /* topmost folder of out_dir that did not exist, or NULL */
    mr_folder_lock *lock;  /* held from run_dir_create to train_run_dir_finish */
} train_run_dir;

/* True when OUT/name exists. */
bool run_dir_has(const char *out_dir, const char *name);

/* Reads OUT/config.json into *stored (free with cJSON_Delete) when resume
 * is set and OUT/checkpoint.json exists. Otherwise *stored is NULL. */
mr_status run_dir_read_stored_config(const char *out_dir, bool resume, struct cJSON **stored,
                                     mr_error *err);

/* Returns the integer member key of stored, or fallback when stored is
 * NULL or has no such number. */
int64_t run_dir_stored_int(const struct cJSON *stored, const char *key, int64_t fallback);

/*
 * Compares config_text, the JSON object a run would write as config.json,
 * with the stored one. Fails with MR_ERR_STATE naming every key that
 * differs, with the stored and the new value. steps_key ("max_steps" or
 * "steps") may grow, and log_every, eval_every, checkpoint_every and
 * stop_after may change.
 */
mr_status run_dir_check_settings(const char *out_dir, const char *config_text,
                                 const struct cJSON *stored, const char *steps_key,
                                 mr_error *err);

/* Rejects a new run (no resume) in a folder that contains done or
 * checkpoint.json, with MR_ERR_STATE. */
mr_status run_dir_check_new(const char *out_dir, mr_error *err);

/* Writes config_text to OUT/config.json atomically. */
mr_status run_dir_write_config(const char *out_dir, const char *config_text, mr_error *err);

/*
 * Creates out_dir and its parents, noting in *dir the topmost folder it
 * created. Then locks out_dir for this process, failing with MR_ERR_STATE
 * while another process has the lock, and removes the temporary files a
 * killed run left in out_dir, adapter/ and each checkpoints/ folder. When
 * a resumed run raises steps_key above its stored value, it removes
 * OUT/done, because the run is no longer finished. On failure, *dir needs
 * no train_run_dir_finish().
 */
mr_status run_dir_create(const char *out_dir, const struct cJSON *stored, const char *steps_key,
                         int64_t steps, train_run_dir *dir, mr_error *err);

/* Removes the folders run_dir_create made when the run failed and left no
 * checkpoint, then releases the lock on out_dir and frees dir. */
void train_run_dir_finish(train_run_dir *dir, const char *out_dir, bool failed);

/* ------------------------------------------------------------------------
 * config.json members (options.c)
 * ------------------------------------------------------------------------ */

/* Writes `  "key": "text",` and a newline, with text escaped for JSON
 * (NULL is written as ""). */
void train_print_string_member(FILE *f, const char *key, const char *text);

/* Writes `  "key": value,` and a newline, with the fewest digits that read
 * back as the same float (1e-3f as 0.001, 1e4f as 10000). */
void train_print_float_member(FILE *f, const char *key, float value);

/* ------------------------------------------------------------------------
 * Checkpoints (checkpoint.c)
 * ------------------------------------------------------------------------ */

/* One parameter set that a checkpoint stores, and its file name in the
 * checkpoint folder. */
typedef struct checkpoint_part {
    mr_paramset *params;
    const char *file; /* such as "model.safetensors" */
} checkpoint_part;

/*
 * Writes OUT/checkpoints/step-N (N = step, 8 digits): each part, the
 * optimizer state with its step count as optimizer.safetensors, and
 * state_json as state.json, each file atomically. Then it replaces
 * OUT/checkpoint.json atomically to name the folder and removes the
 * previous checkpoint.
 */
mr_status checkpoint_write(const char *out_dir, int64_t step, const checkpoint_part *parts,
                           int n_parts, const mr_optim *optim, const char *state_json,
                           mr_error *err);

/*
 * Reads the checkpoint folder that OUT/checkpoint.json names into dir
 * (size bytes) and its state.json into *state (a JSON object; free with
 * cJSON_Delete). *found is false, and nothing is read, when
 * OUT/checkpoint.json does not exist.
 */
mr_status checkpoint_read_state(const char *out_dir, char *dir, size_t size,
                                struct cJSON **state, bool *found, mr_error *err);

/* Loads every part and the optimizer state from the checkpoint folder dir. */
mr_status checkpoint_load_parts(const char *dir, const checkpoint_part *parts, int n_parts,
                                mr_optim *optim, mr_error *err);

/* Reads the non-negative integer member key of a state.json object;
 * false when it is missing or not such a number. */
bool checkpoint_state_int(const struct cJSON *state, const char *key, int64_t *out);

#endif /* MR_TRAIN_RUN_DIR_H */
