/*
 * Private parts of the rounds driver: the manifest in memory, its JSON
 * form, and the file helpers of the driver and of stage outputs.
 */
#ifndef MR_TRAIN_ROUNDS_INTERNAL_H
#define MR_TRAIN_ROUNDS_INTERNAL_H

#include <stdbool.h>
#include <stdio.h>

#include "multiround/rounds.h"
#include "sha256.h"

/* The value of "format" in every manifest, and the version this code writes. */
#define ROUNDS_MANIFEST_FORMAT "multiround-rounds"
#define ROUNDS_MANIFEST_VERSION 1

/* A recorded file: its path as stored (relative to the run folder or
 * absolute) and its sha256 in hex. */
typedef struct rounds_file {
    char *path;
    char sha256[MR_SHA256_HEX_LENGTH + 1];
} rounds_file;

typedef struct rounds_file_list {
    rounds_file *items;
    int count;
    int capacity;
} rounds_file_list;

typedef struct rounds_stage_record {
    char *name;
    bool done;
    int attempts;
    char *error;         /* message of the last attempt when it failed, else NULL */
    rounds_file_list inputs;
    rounds_file_list outputs;
} rounds_stage_record;

typedef struct rounds_round_record {
    mr_round_state state;
    char *start_model;   /* as stored; NULL until the round starts or when none */
    bool merge_lora;
    char *output_model;  /* relative to the run folder; NULL until one is written */
    rounds_stage_record *stages;
} rounds_round_record;

/* The whole manifest. */
typedef struct rounds_manifest {
    char **stage_names;
    int n_stages;
    char *initial_model; /* NULL for none */
    bool lora;
    rounds_round_record *rounds;
    int n_rounds;
} rounds_manifest;

struct mr_rounds {
    char *run_dir;       /* as the caller gave it */
    char *run_real;      /* its canonical absolute path */
    char *manifest_path;
    int lock_fd;
    mr_rounds_config config;
    rounds_manifest manifest;
};

/* ---- rounds_manifest.c ---- */

/* Sets up m for the config's stages and rounds, all pending. */
mr_status rounds_manifest_init(rounds_manifest *m, const mr_rounds_config *config,
                               mr_error *err);

/* Appends pending rounds until m has n_rounds. */
mr_status rounds_manifest_extend(rounds_manifest *m, int n_rounds, mr_error *err);

/* Reads and checks the manifest at path into m. */
mr_status rounds_manifest_read(const char *path, rounds_manifest *m, mr_error *err);

/* Writes m to path atomically. */
mr_status rounds_manifest_write(const char *path, const rounds_manifest *m, mr_error *err);

void rounds_manifest_free(rounds_manifest *m);

/* Returns the name of a round state as the manifest writes it. */
const char *rounds_state_name(mr_round_state state);

/* Adds path with its sha256 to list, replacing the hash of an entry with
 * the same path. */
mr_status rounds_file_list_set(rounds_file_list *list, const char *path, const char *sha256,
                               mr_error *err);

void rounds_file_list_clear(rounds_file_list *list);

/* ---- rounds_files.c ---- */

/* Returns a malloc'ed "dir/name", or NULL when out of memory. */
char *rounds_path_join(const char *dir, const char *name);


/* Removes the file or folder tree at path; a missing path is fine. */
mr_status rounds_remove_tree(const char *path, mr_error *err);

/* Flushes the file, or every file and folder under the folder, at path. */
mr_status rounds_sync_tree(const char *path, mr_error *err);

/* Flushes the folder at path so that renames inside it are durable. */
mr_status rounds_sync_folder(const char *path, mr_error *err);

/* Receives each regular file found by rounds_walk_files: its path as
 * walked and as canonical absolute path. */
typedef mr_status (*rounds_file_visitor)(const char *path, const char *real_path,
                                         void *state, mr_error *err);

/*
 * Calls visit for the file at path, or for every regular file under the
 * folder at path in byte order of names (deterministic across machines).
 * Symbolic links to files are followed, links to folders are not
 * entered. Fails with MR_ERR_NOT_FOUND when path does not exist.
 */
mr_status rounds_walk_files(const char *path, rounds_file_visitor visit, void *state,
                            mr_error *err);

#endif /* MR_TRAIN_ROUNDS_INTERNAL_H */
