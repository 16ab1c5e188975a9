/*
 * multiround: the rounds driver of multi-round training.
 *
 * A multi-round run repeats the same stages (for example "generate",
 * "judge", "train", "evaluate") once per round, and each round starts from
 * the model the round before it trained. The driver keeps one folder per
 * round and a manifest, and calls the caller's stage functions in order:
 *
 *   RUN_DIR/manifest.json    config, and per round its state, start model,
 *                            output model and per stage its done flag,
 *                            attempts, inputs and outputs with sha256
 *   RUN_DIR/round-000/       files of round 0; round-000/model is its model
 *   RUN_DIR/round-001/       ...
 *   RUN_DIR/lock             held while a process has the run open
 *
 * The manifest is replaced atomically after every change, so a process
 * killed at any point leaves a consistent record. A rerun skips the stages
 * marked done and runs an interrupted stage again from its start. For that
 * to be safe, a stage writes each output under a temporary name and renames
 * it at the end (mr_stage_output_begin and mr_stage_output_commit), so a
 * half-written output never carries the final name.
 *
 * On every open the driver hashes again the inputs and outputs recorded
 * for the finished stages and fails if one changed or went missing,
 * because resuming on top of other data would mix two runs. The files a
 * finished stage produced must therefore stay as they are.
 */
#ifndef MULTIROUND_ROUNDS_H
#define MULTIROUND_ROUNDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MR_ROUNDS_MANIFEST_FILE "manifest.json"

/* The folder a round trains its model into, inside the round's folder. */
#define MR_ROUNDS_MODEL_FOLDER "model"

/* Most rounds and stages in a run. */
#define MR_ROUNDS_MAX 1000
#define MR_ROUNDS_STAGES_MAX 32

/* Maximum length of a stage name or output name, in bytes. */
#define MR_ROUNDS_NAME_MAX 64

typedef enum mr_round_state {
    MR_ROUND_PENDING = 0, /* no stage has started */
    MR_ROUND_RUNNING,     /* a stage has started and not every stage is done; a
                             process killed in a stage leaves this state too */
    MR_ROUND_DONE,        /* every stage is done */
    MR_ROUND_FAILED       /* a stage returned an error; a rerun starts it again */
} mr_round_state;

/* An open run; see mr_rounds_open. */
typedef struct mr_rounds mr_rounds;

/* The round, folders and models of the stage a stage function runs. */
typedef struct mr_stage_context {
    const char *run_dir;
    const char *round_dir;          /* run_dir/round-NNN; it exists */
    const char *previous_round_dir; /* NULL in round 0 */
    int round;                      /* 0-based */
    int stage;                      /* index into the configured stages */
    const char *stage_name;
    /* The model folder this round starts from: the output model of the
     * latest earlier round that wrote one, else the configured initial
     * model (which may be NULL). */
    const char *start_model;
    /* True when start_model contains a LoRA adapter trained by an earlier
     * round: the trainer merges it into its base model and trains a fresh
     * adapter. Set only when the run's config has lora and start_model is
     * an earlier round's model. */
    bool merge_lora;
    const char *output_model;       /* round_dir/model: where this round's model goes */
    mr_rounds *rounds;              /* the driver, for mr_stage_add_input and friends */
} mr_stage_context;

/* Runs one stage. Returns MR_OK once all its outputs are committed; any
 * other status leaves the stage not done, and the next run starts it
 * again. */
typedef mr_status (*mr_stage_fn)(const mr_stage_context *context, void *user_data,
                                 mr_error *err);

typedef struct mr_rounds_stage {
    const char *name; /* 1 to MR_ROUNDS_NAME_MAX letters, digits, _ or - */
    mr_stage_fn run;
} mr_rounds_stage;

typedef struct mr_rounds_config {
    int n_rounds;                  /* 1 to MR_ROUNDS_MAX */
    const mr_rounds_stage *stages; /* in the order they run within a round */
    int n_stages;                  /* 1 to MR_ROUNDS_STAGES_MAX */
    const char *initial_model;     /* round 0's start model, passed through as given; may be NULL */
    bool lora;                     /* rounds train LoRA adapters; see merge_lora */
    void *user_data;               /* passed to every stage function */
} mr_rounds_config;

/*
 * Opens the run in run_dir (creating the folder and manifest when it has
 * none), locks it against other processes and stores it in *out. An
 * existing run must have the same stage names, initial model and lora
 * flag (MR_ERR_INVALID_ARGUMENT otherwise) and at most config->n_rounds
 * rounds; more rounds extend it. The inputs and outputs of every finished
 * stage must still have their recorded sha256 (MR_ERR_STATE naming the
 * round, stage and file otherwise). Records of unfinished stages are
 * dropped because those stages run again. A run that another process has
 * open gives MR_ERR_STATE.
 */
mr_status mr_rounds_open(const char *run_dir, const mr_rounds_config *config,
                         mr_rounds **out, mr_error *err);

/*
 * Runs every stage that is not done, round by round, recording each in
 * the manifest before and after it runs. A failing stage stops the run:
 * its status is returned with a message naming the round and stage, and
 * the next call (or the next process) starts that stage again.
 */
mr_status mr_rounds_run(mr_rounds *rounds, mr_error *err);

/* Unlocks and frees the run. rounds may be NULL. */
void mr_rounds_close(mr_rounds *rounds);

mr_round_state mr_rounds_round_state(const mr_rounds *rounds, int round);
bool mr_rounds_stage_done(const mr_rounds *rounds, int round, int stage);

/* Returns how many times the stage has been started, over all processes. */
int mr_rounds_stage_attempts(const mr_rounds *rounds, int round, int stage);

/* ------------------------------------------------------------------------
 * Called by stage functions
 * ------------------------------------------------------------------------ */

/*
 * Records that the running stage consumed the file at path, with its
 * sha256 as it is now; a folder records every file under it. Paths
 * inside the run folder are stored relative to it, others as absolute
 * paths. Call it before reading the file, or at least before the file
 * could change.
 */
mr_status mr_stage_add_input(const mr_stage_context *context, const char *path,
                             mr_error *err);

/* Records that the running stage produced the file (or the files of the
 * folder) at path, with its sha256. */
mr_status mr_stage_add_output(const mr_stage_context *context, const char *path,
                              mr_error *err);

/*
 * Starts writing the output name (a file or folder directly in the
 * round's folder, such as "generated.jsonl" or MR_ROUNDS_MODEL_FOLDER):
 * removes what an interrupted attempt left at the temporary name and
 * writes that name, round_dir/.NAME.partial, into temp_path. The stage
 * creates the file or folder there.
 */
mr_status mr_stage_output_begin(const mr_stage_context *context, const char *name,
                                char *temp_path, size_t size, mr_error *err);

/*
 * Finishes the output name: flushes the temporary file or folder to disk,
 * renames it to round_dir/NAME (replacing what an interrupted attempt left
 * there) and records it as an output of the stage.
 */
mr_status mr_stage_output_commit(const mr_stage_context *context, const char *name,
                                 mr_error *err);

/* ------------------------------------------------------------------------
 * Reading a run without running it
 * ------------------------------------------------------------------------ */

/*
 * Prints the manifest of the run in run_dir as a table: one row per
 * round with its state, each stage's state and attempts, and its start
 * and output models. With files, lists every recorded input and output
 * with its sha256 after the table. Does not lock the run or hash files.
 */
mr_status mr_rounds_print_status(const char *run_dir, FILE *out, bool files,
                                 mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_ROUNDS_H */
