/*
 * The rounds driver: opening and locking a run, checking recorded files,
 * running the stages round by round, and the calls stage functions make
 * to record their inputs and outputs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "rounds_internal.h"

/* The file a process holds an exclusive flock() on while it has the run open. */
#define ROUNDS_LOCK_FILE "lock"

/* The suffix of an output's temporary name, round_dir/.NAME.partial. */
#define PARTIAL_SUFFIX ".partial"

/* True when name has 1 to MR_ROUNDS_NAME_MAX letters, digits, _ or -
 * (and, when dots is true, also dots, but not as the first character). */
static bool valid_name(const char *name, bool dots) {
    size_t length = name != NULL ? strlen(name) : 0;
    if (length == 0 || length > MR_ROUNDS_NAME_MAX || name[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9') || c == '_' || c == '-' || (dots && c == '.');
        if (!allowed) {
            return false;
        }
    }
    return true;
}

/* Returns a malloc'ed run_dir/round-NNN, or NULL when out of memory. */
static char *round_folder(const mr_rounds *rounds, int round) {
    char name[32];
    snprintf(name, sizeof name, "round-%03d", round);
    return rounds_path_join(rounds->run_dir, name);
}

/* ------------------------------------------------------------------------
 * Opening
 * ------------------------------------------------------------------------ */

static mr_status check_config(const mr_rounds_config *config, mr_error *err) {
    if (config == NULL || config->n_rounds < 1 || config->n_rounds > MR_ROUNDS_MAX ||
        config->stages == NULL || config->n_stages < 1 ||
        config->n_stages > MR_ROUNDS_STAGES_MAX) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rounds: the config needs 1 to %d rounds and 1 to %d stages",
                            MR_ROUNDS_MAX, MR_ROUNDS_STAGES_MAX);
    }
    for (int s = 0; s < config->n_stages; s++) {
        const mr_rounds_stage *stage = &config->stages[s];
        if (!valid_name(stage->name, false) || stage->run == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "rounds: stage %d needs a function and a name of 1 to %d "
                                "letters, digits, _ or -, got '%s'",
                                s, MR_ROUNDS_NAME_MAX,
                                stage->name != NULL ? stage->name : "(null)");
        }
        for (int t = 0; t < s; t++) {
            if (strcmp(config->stages[t].name, stage->name) == 0) {
                return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                    "rounds: the stage name '%s' appears twice", stage->name);
            }
        }
    }
    return MR_OK;
}

/* Checks that an existing run's manifest was made with the same stages,
 * initial model and lora flag, and has no more rounds than requested. */
static mr_status compare_config(const rounds_manifest *m, const mr_rounds_config *config,
                                const char *path, mr_error *err) {
    bool same_stages = m->n_stages == config->n_stages;
    for (int s = 0; same_stages && s < m->n_stages; s++) {
        same_stages = strcmp(m->stage_names[s], config->stages[s].name) == 0;
    }
    if (!same_stages) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rounds: %s records other stages (%d, the first '%s') than the "
                            "config; use the same stages or a new run folder",
                            path, m->n_stages, m->stage_names[0]);
    }

    const char *recorded = m->initial_model != NULL ? m->initial_model : "";
    const char *requested = config->initial_model != NULL ? config->initial_model : "";
    if (strcmp(recorded, requested) != 0 || (m->initial_model == NULL) !=
                                                (config->initial_model == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rounds: %s records the initial model '%s', but the config has "
                            "'%s'; use the same model or a new run folder",
                            path, m->initial_model != NULL ? m->initial_model : "(none)",
                            config->initial_model != NULL ? config->initial_model : "(none)");
    }
    if (m->lora != config->lora) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rounds: %s records lora = %s, but the config has %s; use the "
                            "same setting or a new run folder",
                            path, m->lora ? "true" : "false", config->lora ? "true" : "false");
    }
    if (m->n_rounds > config->n_rounds) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rounds: %s records %d rounds, but the config asks for %d; a run "
                            "can gain rounds but not lose them",
                            path, m->n_rounds, config->n_rounds);
    }
    return MR_OK;
}

/* Returns a malloc'ed path of a stored manifest path: relative ones are
 * inside the run folder. */
static char *stored_to_path(const mr_rounds *rounds, const char *stored) {
    if (stored[0] == '/') {
        char *copy = malloc(strlen(stored) + 1);
        if (copy != NULL) {
            strcpy(copy, stored);
        }
        return copy;
    }
    return rounds_path_join(rounds->run_dir, stored);
}

/* Checks that each recorded file still has its sha256. */
static mr_status verify_files(const mr_rounds *rounds, const rounds_file_list *list,
                              const char *kind, int r, const char *stage, mr_error *err) {
    for (int i = 0; i < list->count; i++) {
        const rounds_file *file = &list->items[i];
        char *path = stored_to_path(rounds, file->path);
        if (path == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
        }

        char hex[MR_SHA256_HEX_LENGTH + 1];
        mr_error hash_err;
        mr_status status = mr_sha256_file(path, hex, &hash_err);
        if (status != MR_OK) {
            status = mr_error_set(err, MR_ERR_STATE,
                                  "rounds: round-%03d stage '%s' recorded the %s '%s', which "
                                  "can no longer be read (%s); restore it or start a new run "
                                  "folder",
                                  r, stage, kind, path, hash_err.message);
        } else if (strcmp(hex, file->sha256) != 0) {
            status = mr_error_set(err, MR_ERR_STATE,
                                  "rounds: round-%03d stage '%s' recorded the %s '%s' with "
                                  "sha256 %s, but it now has sha256 %s; restore the file or "
                                  "start a new run folder",
                                  r, stage, kind, path, file->sha256, hex);
        }
        free(path);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Verifies the files of finished stages and clears the records of
 * unfinished ones, which run again from their start. */
static mr_status check_recorded_files(mr_rounds *rounds, mr_error *err) {
    rounds_manifest *m = &rounds->manifest;
    for (int r = 0; r < m->n_rounds; r++) {
        for (int s = 0; s < m->n_stages; s++) {
            rounds_stage_record *stage = &m->rounds[r].stages[s];
            if (!stage->done) {
                rounds_file_list_clear(&stage->inputs);
                rounds_file_list_clear(&stage->outputs);
                continue;
            }
            mr_status status = verify_files(rounds, &stage->inputs, "input", r, stage->name,
                                            err);
            if (status == MR_OK) {
                status = verify_files(rounds, &stage->outputs, "output", r, stage->name, err);
            }
            if (status != MR_OK) {
                return status;
            }
        }
    }
    return MR_OK;
}

/* Takes the run's lock file, failing when another process holds it. */
static mr_status take_lock(mr_rounds *rounds, mr_error *err) {
    char *path = rounds_path_join(rounds->run_dir, ROUNDS_LOCK_FILE);
    if (path == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    rounds->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (rounds->lock_fd < 0) {
        mr_status status = mr_error_set(err, MR_ERR_IO, "rounds: cannot open '%s': %s", path,
                                        strerror(errno));
        free(path);
        return status;
    }
    if (flock(rounds->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        mr_status status = mr_error_set(err, MR_ERR_STATE,
                                        "rounds: another process has the run '%s' open (it "
                                        "holds '%s'); wait for it to finish",
                                        rounds->run_dir, path);
        free(path);
        return status;
    }
    free(path);
    return MR_OK;
}

/* Creates the folder, lock and manifest of a run, or loads and checks an
 * existing run's manifest. */
static mr_status open_run(mr_rounds *rounds, const char *run_dir, mr_error *err) {
    mr_status status = mr_make_dirs(run_dir, err);
    if (status != MR_OK) {
        return status;
    }
    rounds->run_real = realpath(run_dir, NULL);
    rounds->manifest_path = rounds_path_join(run_dir, MR_ROUNDS_MANIFEST_FILE);
    if (rounds->run_real == NULL || rounds->manifest_path == NULL) {
        return mr_error_set(err, MR_ERR_IO, "rounds: cannot resolve the run folder '%s'",
                            run_dir);
    }
    status = take_lock(rounds, err);
    if (status != MR_OK) {
        return status;
    }

    struct stat info;
    if (stat(rounds->manifest_path, &info) != 0) {
        status = rounds_manifest_init(&rounds->manifest, &rounds->config, err);
        if (status == MR_OK) {
            status = rounds_manifest_write(rounds->manifest_path, &rounds->manifest, err);
        }
        if (status == MR_OK) {
            mr_log(MR_LOG_INFO, "rounds", "created run %s: %d rounds of %d stages", run_dir,
                   rounds->config.n_rounds, rounds->config.n_stages);
        }
        return status;
    }

    status = rounds_manifest_read(rounds->manifest_path, &rounds->manifest, err);
    if (status == MR_OK) {
        status = compare_config(&rounds->manifest, &rounds->config, rounds->manifest_path, err);
    }
    if (status == MR_OK) {
        status = check_recorded_files(rounds, err);
    }
    if (status == MR_OK) {
        status = rounds_manifest_extend(&rounds->manifest, rounds->config.n_rounds, err);
    }
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rounds", "resumed run %s: recorded files match their sha256",
               run_dir);
    }
    return status;
}

mr_status mr_rounds_open(const char *run_dir, const mr_rounds_config *config,
                         mr_rounds **out, mr_error *err) {
    *out = NULL;
    mr_status status = check_config(config, err);
    if (status != MR_OK) {
        return status;
    }
    if (run_dir == NULL || run_dir[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "rounds: the run folder is empty");
    }

    mr_rounds *rounds = calloc(1, sizeof *rounds);
    if (rounds == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    rounds->lock_fd = -1;
    rounds->config = *config;
    rounds->run_dir = malloc(strlen(run_dir) + 1);
    if (rounds->run_dir == NULL) {
        mr_rounds_close(rounds);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    strcpy(rounds->run_dir, run_dir);

    status = open_run(rounds, run_dir, err);
    if (status != MR_OK) {
        mr_rounds_close(rounds);
        return status;
    }
    *out = rounds;
    return MR_OK;
}

void mr_rounds_close(mr_rounds *rounds) {
    if (rounds == NULL) {
        return;
    }
    if (rounds->lock_fd >= 0) {
        close(rounds->lock_fd); /* closing releases the flock */
    }
    rounds_manifest_free(&rounds->manifest);
    free(rounds->run_dir);
    free(rounds->run_real);
    free(rounds->manifest_path);
    free(rounds);
}

mr_round_state mr_rounds_round_state(const mr_rounds *rounds, int round) {
    if (round < 0 || round >= rounds->manifest.n_rounds) {
        return MR_ROUND_PENDING;
    }
    return rounds->manifest.rounds[round].state;
}

bool mr_rounds_stage_done(const mr_rounds *rounds, int round, int stage) {
    if (round < 0 || round >= rounds->manifest.n_rounds || stage < 0 ||
        stage >= rounds->manifest.n_stages) {
        return false;
    }
    return rounds->manifest.rounds[round].stages[stage].done;
}

int mr_rounds_stage_attempts(const mr_rounds *rounds, int round, int stage) {
    if (round < 0 || round >= rounds->manifest.n_rounds || stage < 0 ||
        stage >= rounds->manifest.n_stages) {
        return 0;
    }
    return rounds->manifest.rounds[round].stages[stage].attempts;
}

/* ------------------------------------------------------------------------
 * Running
 * ------------------------------------------------------------------------ */

/* Returns the manifest form of a path: relative to the run folder when
 * real_path is inside it, else real_path itself. */
static const char *path_to_stored(const mr_rounds *rounds, const char *real_path) {
    size_t length = strlen(rounds->run_real);
    if (strncmp(real_path, rounds->run_real, length) == 0 && real_path[length] == '/') {
        return real_path + length + 1;
    }
    return real_path;
}

/* Sets the round's start model and merge flag from the rounds before it:
 * the output model of the latest earlier round that wrote one (and sets
 * *from_round), else the initial model. */
static mr_status choose_start_model(mr_rounds *rounds, int r, bool *from_round,
                                    mr_error *err) {
    rounds_manifest *m = &rounds->manifest;
    rounds_round_record *round = &m->rounds[r];
    const char *start = m->initial_model;
    *from_round = false;
    for (int earlier = r - 1; earlier >= 0; earlier--) {
        if (m->rounds[earlier].output_model != NULL) {
            start = m->rounds[earlier].output_model;
            *from_round = true;
            break;
        }
    }

    /* NOTE: the start model is recorded by path only. A stage that needs
     * it verified on resume records it with mr_stage_add_input. */
    free(round->start_model);
    round->start_model = NULL;
    if (start != NULL) {
        round->start_model = malloc(strlen(start) + 1);
        if (round->start_model == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
        }
        strcpy(round->start_model, start);
    }
    round->merge_lora = m->lora && *from_round;
    return MR_OK;
}

/* Records the round's model folder as its output model when a stage
 * wrote one. */
static mr_status note_output_model(mr_rounds *rounds, int r, const char *output_model,
                                   mr_error *err) {
    rounds_round_record *round = &rounds->manifest.rounds[r];
    struct stat info;
    free(round->output_model);
    round->output_model = NULL;
    if (stat(output_model, &info) != 0 || !S_ISDIR(info.st_mode)) {
        return MR_OK;
    }
    char stored[64];
    snprintf(stored, sizeof stored, "round-%03d/%s", r, MR_ROUNDS_MODEL_FOLDER);
    round->output_model = malloc(strlen(stored) + 1);
    if (round->output_model == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    strcpy(round->output_model, stored);
    return MR_OK;
}

/* Records in the manifest that stage failed with message, so that
 * `rounds status` can show it. A failure to write is logged, because the
 * caller returns the stage's error. */
static void record_failure(mr_rounds *rounds, int r, rounds_stage_record *stage,
                           const char *message) {
    rounds_manifest *m = &rounds->manifest;
    stage->error = strdup(message[0] != '\0' ? message : "(no message)");
    m->rounds[r].state = MR_ROUND_FAILED;
    mr_error write_err;
    if (stage->error == NULL ||
        rounds_manifest_write(rounds->manifest_path, m, &write_err) != MR_OK) {
        mr_log(MR_LOG_WARN, "rounds", "round %d stage %s: the failure is not recorded in %s: %s",
               r, stage->name, rounds->manifest_path,
               stage->error == NULL ? "out of memory" : write_err.message);
    }
}

/* Runs stage s of round r with the context filled in, writing the
 * manifest before (attempt counted) and after (done). */
static mr_status run_stage(mr_rounds *rounds, mr_stage_context *context, int s,
                           mr_error *err) {
    rounds_manifest *m = &rounds->manifest;
    int r = context->round;
    rounds_stage_record *stage = &m->rounds[r].stages[s];

    stage->attempts++;
    free(stage->error);
    stage->error = NULL;
    rounds_file_list_clear(&stage->inputs);
    rounds_file_list_clear(&stage->outputs);
    m->rounds[r].state = MR_ROUND_RUNNING;
    mr_status status = rounds_manifest_write(rounds->manifest_path, m, err);
    if (status != MR_OK) {
        return status;
    }

    context->stage = s;
    context->stage_name = stage->name;
    mr_log(MR_LOG_INFO, "rounds", "round %d stage %s: started (attempt %d)", r, stage->name,
           stage->attempts);
    mr_error stage_err;
    mr_error_clear(&stage_err);
    status = rounds->config.stages[s].run(context, rounds->config.user_data, &stage_err);
    if (status != MR_OK) {
        mr_log(MR_LOG_ERROR, "rounds", "round %d stage %s failed: %s", r, stage->name,
               stage_err.message);
        record_failure(rounds, r, stage, stage_err.message);
        return mr_error_set(err, status,
                            "rounds: round-%03d stage '%s' failed: %s; run again to restart "
                            "the stage",
                            r, stage->name, stage_err.message);
    }

    stage->done = true;
    mr_log(MR_LOG_INFO, "rounds", "round %d stage %s: done, %d inputs and %d outputs recorded",
           r, stage->name, stage->inputs.count, stage->outputs.count);
    return rounds_manifest_write(rounds->manifest_path, m, err);
}

/* Runs the unfinished stages of round r, then marks it done. */
static mr_status run_round(mr_rounds *rounds, int r, mr_error *err) {
    rounds_manifest *m = &rounds->manifest;
    char *round_dir = round_folder(rounds, r);
    char *previous_dir = r > 0 ? round_folder(rounds, r - 1) : NULL;
    char *output_model = round_dir != NULL ? rounds_path_join(round_dir, MR_ROUNDS_MODEL_FOLDER)
                                           : NULL;
    char *start_model = NULL;
    mr_status status = MR_OK;
    if (round_dir == NULL || output_model == NULL || (r > 0 && previous_dir == NULL)) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    if (status == MR_OK) {
        status = mr_make_dirs(round_dir, err);
    }
    bool from_round = false;
    if (status == MR_OK) {
        status = choose_start_model(rounds, r, &from_round, err);
    }

    /* A start model made by an earlier round is stored relative to the run
     * folder; the stage gets a path it can open. The initial model passes
     * through as given. */
    const char *stored_start = m->rounds[r].start_model;
    if (status == MR_OK && stored_start != NULL) {
        if (from_round) {
            start_model = stored_to_path(rounds, stored_start);
        } else {
            start_model = malloc(strlen(stored_start) + 1);
            if (start_model != NULL) {
                strcpy(start_model, stored_start);
            }
        }
        if (start_model == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
        }
    }

    mr_stage_context context = {
        .run_dir = rounds->run_dir,
        .round_dir = round_dir,
        .previous_round_dir = previous_dir,
        .round = r,
        .start_model = start_model,
        .merge_lora = m->rounds[r].merge_lora,
        .output_model = output_model,
        .rounds = rounds,
    };
    for (int s = 0; status == MR_OK && s < m->n_stages; s++) {
        if (!m->rounds[r].stages[s].done) {
            status = run_stage(rounds, &context, s, err);
        }
    }

    if (status == MR_OK) {
        status = note_output_model(rounds, r, output_model, err);
    }
    if (status == MR_OK) {
        m->rounds[r].state = MR_ROUND_DONE;
        status = rounds_manifest_write(rounds->manifest_path, m, err);
    }
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rounds", "round %d done", r);
    }
    free(round_dir);
    free(previous_dir);
    free(output_model);
    free(start_model);
    return status;
}

mr_status mr_rounds_run(mr_rounds *rounds, mr_error *err) {
    for (int r = 0; r < rounds->manifest.n_rounds; r++) {
        if (rounds->manifest.rounds[r].state == MR_ROUND_DONE) {
            continue;
        }
        mr_status status = run_round(rounds, r, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Called by stage functions
 * ------------------------------------------------------------------------ */

/* The state of recording the files under one path. */
typedef struct recording {
    mr_rounds *rounds;
    rounds_file_list *list;
} recording;

static mr_status record_file(const char *path, const char *real_path, void *state,
                             mr_error *err) {
    recording *rec = state;
    char hex[MR_SHA256_HEX_LENGTH + 1];
    mr_status status = mr_sha256_file(path, hex, err);
    if (status != MR_OK) {
        return status;
    }
    return rounds_file_list_set(rec->list, path_to_stored(rec->rounds, real_path), hex, err);
}

/* Records every file under path in the running stage's list of inputs
 * (outputs false) or outputs. */
static mr_status record_path(const mr_stage_context *context, const char *path, bool outputs,
                             mr_error *err) {
    mr_rounds *rounds = context->rounds;
    rounds_stage_record *stage = &rounds->manifest.rounds[context->round].stages[context->stage];
    recording rec = {.rounds = rounds, .list = outputs ? &stage->outputs : &stage->inputs};
    mr_status status = rounds_walk_files(path, record_file, &rec, err);
    if (status == MR_ERR_NOT_FOUND) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "rounds: round-%03d stage '%s' recorded the %s '%s', which does "
                            "not exist",
                            context->round, stage->name, outputs ? "output" : "input", path);
    }
    return status;
}

mr_status mr_stage_add_input(const mr_stage_context *context, const char *path,
                             mr_error *err) {
    return record_path(context, path, false, err);
}

mr_status mr_stage_add_output(const mr_stage_context *context, const char *path,
                              mr_error *err) {
    return record_path(context, path, true, err);
}

/* Sets *final and *temp to malloc'ed round_dir/NAME and round_dir/.NAME.partial. */
static mr_status output_paths(const mr_stage_context *context, const char *name, char **final,
                              char **temp, mr_error *err) {
    *final = NULL;
    *temp = NULL;
    if (!valid_name(name, true)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rounds: the output name '%s' is invalid; use 1 to %d letters, "
                            "digits, _ - or . (not first), without a folder",
                            name != NULL ? name : "(null)", MR_ROUNDS_NAME_MAX);
    }
    char temp_name[MR_ROUNDS_NAME_MAX + 16];
    snprintf(temp_name, sizeof temp_name, ".%s%s", name, PARTIAL_SUFFIX);
    *final = rounds_path_join(context->round_dir, name);
    *temp = rounds_path_join(context->round_dir, temp_name);
    if (*final == NULL || *temp == NULL) {
        free(*final);
        free(*temp);
        *final = NULL;
        *temp = NULL;
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    return MR_OK;
}

mr_status mr_stage_output_begin(const mr_stage_context *context, const char *name,
                                char *temp_path, size_t size, mr_error *err) {
    char *final = NULL;
    char *temp = NULL;
    mr_status status = output_paths(context, name, &final, &temp, err);
    if (status != MR_OK) {
        return status;
    }
    if (strlen(temp) + 1 > size) {
        status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                              "rounds: the temporary path '%s' does not fit in %zu bytes",
                              temp, size);
    }
    if (status == MR_OK) {
        status = rounds_remove_tree(temp, err);
    }
    if (status == MR_OK) {
        strcpy(temp_path, temp);
    }
    free(final);
    free(temp);
    return status;
}

mr_status mr_stage_output_commit(const mr_stage_context *context, const char *name,
                                 mr_error *err) {
    char *final = NULL;
    char *temp = NULL;
    mr_status status = output_paths(context, name, &final, &temp, err);
    if (status != MR_OK) {
        return status;
    }

    /* rename() replaces a file but not a non-empty folder, so what an
     * interrupted attempt left at the final name goes first. The stage is
     * not done until the manifest records it as done, so a kill in between
     * only runs the stage again. */
    struct stat info;
    if (lstat(temp, &info) != 0) {
        status = mr_error_set(err, MR_ERR_NOT_FOUND,
                              "rounds: cannot commit the output '%s' because '%s' does not "
                              "exist; write it after mr_stage_output_begin",
                              name, temp);
    }
    if (status == MR_OK) {
        status = rounds_sync_tree(temp, err);
    }
    if (status == MR_OK && S_ISDIR(info.st_mode)) {
        status = rounds_remove_tree(final, err);
    }
    if (status == MR_OK && rename(temp, final) != 0) {
        status = mr_error_set(err, MR_ERR_IO, "rounds: renaming '%s' to '%s' failed: %s", temp,
                              final, strerror(errno));
    }
    if (status == MR_OK) {
        status = rounds_sync_folder(context->round_dir, err);
    }
    if (status == MR_OK) {
        status = mr_stage_add_output(context, final, err);
    }
    free(final);
    free(temp);
    return status;
}
