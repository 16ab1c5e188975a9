/*
 * Trainer checkpoints and final outputs.
 *
 * A checkpoint is a folder OUT/checkpoints/step-NNNNNNNN holding the
 * trained weights (model.safetensors for full fine-tuning,
 * lora.safetensors, head.safetensors; PPO adds value_head.safetensors),
 * optimizer.safetensors (every optimizer state array, with the step count
 * in the metadata) and state.json (the step and whatever else the trainer
 * needs to continue, such as the data position). Each file is written
 * atomically, and OUT/checkpoint.json, replaced atomically after the
 * folder is complete, names the checkpoint to resume from. So a run
 * killed at any moment resumes from the newest complete checkpoint.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "multiround/safetensors.h"
#include "train_internal.h"

#define CHECKPOINT_POINTER "checkpoint.json"
#define CHECKPOINT_STATE_MAX_BYTES (1u << 20)

bool train_join_path(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < size;
}

/* Creates dir and its missing parents. */
static mr_status make_dirs(const char *dir, mr_error *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: path too long: %s", dir);
    }
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            return mr_error_set(err, MR_ERR_IO, "train: cannot create folder %s: %s", path,
                                strerror(errno));
        }
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        return mr_error_set(err, MR_ERR_IO, "train: cannot create folder %s: %s", path,
                            strerror(errno));
    }
    return MR_OK;
}

/* Removes a checkpoint folder: its plain files, then the folder. */
static void remove_checkpoint_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *entry;
    char path[4096];
    while ((entry = readdir(d)) != NULL) {
        if (entry->d_name[0] == '.' && (entry->d_name[1] == '\0' ||
                                        (entry->d_name[1] == '.' && entry->d_name[2] == '\0'))) {
            continue;
        }
        if (train_join_path(path, sizeof path, dir, entry->d_name)) {
            unlink(path);
        }
    }
    closedir(d);
    if (rmdir(dir) != 0) {
        mr_log(MR_LOG_WARN, "train", "cannot remove the old checkpoint %s: %s", dir,
               strerror(errno));
    }
}

/* Writes every optimizer state array and the step count. */
static mr_status save_optimizer(const mr_optim *optim, const char *path, mr_error *err) {
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    if (writer == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
    }
    char steps[32];
    snprintf(steps, sizeof steps, "%" PRId64, mr_optim_step_count(optim));
    mr_status status = mr_safetensors_writer_add_metadata(writer, "step_count", steps, err);
    for (int i = 0; status == MR_OK && i < mr_optim_state_count(optim); i++) {
        const char *name = NULL;
        const float *data = NULL;
        int64_t count = 0;
        status = mr_optim_state_get(optim, i, &name, &data, &count, err);
        if (status == MR_OK) {
            status = mr_safetensors_writer_add_f32(writer, name, 1, &count, data,
                                                   MR_SAFETENSORS_F32, err);
        }
    }
    if (status == MR_OK) {
        status = mr_safetensors_writer_write(writer, path, err);
    }
    mr_safetensors_writer_free(writer);
    return status;
}

/* Restores what save_optimizer() wrote. */
static mr_status load_optimizer(mr_optim *optim, const char *path, mr_error *err) {
    mr_safetensors *file = NULL;
    mr_status status = mr_safetensors_open(path, &file, err);
    if (status != MR_OK) {
        return status;
    }
    const char *steps = mr_safetensors_metadata_get(file, "step_count");
    if (steps == NULL) {
        mr_safetensors_close(file);
        return mr_error_set(err, MR_ERR_FORMAT, "%s: missing metadata step_count", path);
    }
    for (int i = 0; status == MR_OK && i < mr_optim_state_count(optim); i++) {
        const char *name = NULL;
        int64_t count = 0;
        status = mr_optim_state_get(optim, i, &name, NULL, &count, err);
        float *buffer = status == MR_OK ? malloc((size_t)count * sizeof *buffer) : NULL;
        if (status == MR_OK && buffer == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
        }
        if (status == MR_OK) {
            status = mr_safetensors_read_f32(file, name, buffer, count, err);
        }
        if (status == MR_OK) {
            status = mr_optim_state_set(optim, name, buffer, count, err);
        }
        free(buffer);
    }
    if (status == MR_OK) {
        status = mr_optim_set_step_count(optim, strtoll(steps, NULL, 10), err);
    }
    mr_safetensors_close(file);
    return status;
}

/* The parameter sets a checkpoint of t stores, with their file names. */
static int trained_parts(const trainer *t, checkpoint_part *parts) {
    int n = 0;
    if (t->lora != NULL) {
        parts[n++] = (checkpoint_part){mr_lora_params(t->lora), "lora.safetensors"};
    } else {
        parts[n++] = (checkpoint_part){mr_llama_params(t->model), "model.safetensors"};
    }
    if (t->head != NULL) {
        parts[n++] = (checkpoint_part){t->head, "head.safetensors"};
    }
    return n;
}

/* Writes text to dir/name atomically. */
static mr_status write_text(const char *dir, const char *name, const char *text, mr_error *err) {
    char path[4096];
    if (!train_join_path(path, sizeof path, dir, name)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: path too long: %s", dir);
    }
    return mr_file_write_atomic(path, text, strlen(text), err);
}

/* Reads the checkpoint folder that OUT/checkpoint.json names into dir;
 * *found is false when the pointer does not exist. */
static mr_status read_pointer(const char *out_dir, char *dir, size_t size, bool *found,
                              mr_error *err) {
    *found = false;
    char path[4096];
    if (!train_join_path(path, sizeof path, out_dir, CHECKPOINT_POINTER)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: path too long");
    }
    if (access(path, F_OK) != 0) {
        return MR_OK;
    }
    char *text = NULL;
    size_t len = 0;
    mr_status status = mr_file_read_all(path, CHECKPOINT_STATE_MAX_BYTES, (void **)&text, &len,
                                        err);
    if (status != MR_OK) {
        return status;
    }
    cJSON *json = cJSON_Parse(text);
    free(text);
    const cJSON *folder = cJSON_GetObjectItemCaseSensitive(json, "folder");
    if (!cJSON_IsString(folder)) {
        cJSON_Delete(json);
        return mr_error_set(err, MR_ERR_FORMAT, "%s: missing string \"folder\"", path);
    }
    bool fits = train_join_path(dir, size, out_dir, folder->valuestring);
    cJSON_Delete(json);
    if (!fits) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: path too long");
    }
    *found = true;
    return MR_OK;
}

mr_status checkpoint_write(const char *out_dir, int64_t step, const checkpoint_part *parts,
                           int n_parts, const mr_optim *optim, const char *state_json,
                           mr_error *err) {
    char folder[64], dir[4096], path[4096], previous[4096];
    snprintf(folder, sizeof folder, "checkpoints/step-%08" PRId64, step);
    if (!train_join_path(dir, sizeof dir, out_dir, folder)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: path too long");
    }
    bool had_previous = false;
    mr_status status = read_pointer(out_dir, previous, sizeof previous, &had_previous, err);
    if (status == MR_OK) {
        status = make_dirs(dir, err);
    }

    /* Weights and optimizer state first, state.json last. */
    for (int i = 0; status == MR_OK && i < n_parts; i++) {
        train_join_path(path, sizeof path, dir, parts[i].file);
        status = mr_paramset_save(parts[i].params, path, NULL, 0, err);
    }
    if (status == MR_OK) {
        train_join_path(path, sizeof path, dir, "optimizer.safetensors");
        status = save_optimizer(optim, path, err);
    }
    if (status == MR_OK) {
        status = write_text(dir, "state.json", state_json, err);
    }
    if (status == MR_OK) {
        char text[256];
        snprintf(text, sizeof text, "{\"step\": %" PRId64 ", \"folder\": \"%s\"}\n", step,
                 folder);
        status = write_text(out_dir, CHECKPOINT_POINTER, text, err);
    }
    if (status != MR_OK) {
        return status;
    }

    if (had_previous && strcmp(previous, dir) != 0) {
        remove_checkpoint_dir(previous);
    }
    mr_log(MR_LOG_INFO, "train", "step %" PRId64 ": checkpoint written to %s", step, dir);
    return MR_OK;
}

mr_status checkpoint_save(trainer *t, mr_error *err) {
    checkpoint_part parts[2];
    int n_parts = trained_parts(t, parts);
    char text[256];
    snprintf(text, sizeof text, "{\"step\": %" PRId64 ", \"position\": %" PRId64 "}\n",
             t->step, t->position);
    return checkpoint_write(t->o.out_dir, t->step, parts, n_parts, t->optim, text, err);
}

bool checkpoint_state_int(const cJSON *state, const char *key, int64_t *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(state, key);
    if (!cJSON_IsNumber(item) || item->valuedouble < 0) {
        return false;
    }
    *out = (int64_t)item->valuedouble;
    return true;
}

mr_status checkpoint_read_state(const char *out_dir, char *dir, size_t size, cJSON **state,
                                bool *found, mr_error *err) {
    *state = NULL;
    mr_status status = read_pointer(out_dir, dir, size, found, err);
    if (status != MR_OK || !*found) {
        return status;
    }

    char path[4096];
    char *text = NULL;
    size_t len = 0;
    if (!train_join_path(path, sizeof path, dir, "state.json")) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: path too long: %s", dir);
    }
    status = mr_file_read_all(path, CHECKPOINT_STATE_MAX_BYTES, (void **)&text, &len, err);
    if (status != MR_OK) {
        return status;
    }
    *state = cJSON_Parse(text);
    free(text);
    int64_t step = 0;
    if (!cJSON_IsObject(*state) || !checkpoint_state_int(*state, "step", &step)) {
        cJSON_Delete(*state);
        *state = NULL;
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s: not a JSON object with an integer \"step\"", path);
    }
    return MR_OK;
}

mr_status checkpoint_load_parts(const char *dir, const checkpoint_part *parts, int n_parts,
                                mr_optim *optim, mr_error *err) {
    char path[4096];
    mr_status status = MR_OK;
    for (int i = 0; status == MR_OK && i < n_parts; i++) {
        train_join_path(path, sizeof path, dir, parts[i].file);
        status = mr_paramset_load(parts[i].params, path, true, NULL, err);
    }
    if (status == MR_OK) {
        train_join_path(path, sizeof path, dir, "optimizer.safetensors");
        status = load_optimizer(optim, path, err);
    }
    return status;
}

mr_status checkpoint_load(trainer *t, bool *found, mr_error *err) {
    char dir[4096];
    cJSON *state = NULL;
    mr_status status = checkpoint_read_state(t->o.out_dir, dir, sizeof dir, &state, found, err);
    if (status != MR_OK || !*found) {
        return status;
    }
    int64_t step = 0, position = 0;
    bool ok = checkpoint_state_int(state, "step", &step) &&
              checkpoint_state_int(state, "position", &position);
    cJSON_Delete(state);
    if (!ok) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s/state.json: needs integers \"step\" and \"position\"", dir);
    }

    checkpoint_part parts[2];
    int n_parts = trained_parts(t, parts);
    status = checkpoint_load_parts(dir, parts, n_parts, t->optim, err);
    if (status != MR_OK) {
        return status;
    }
    t->step = step;
    t->position = position;
    mr_log(MR_LOG_INFO, "train", "resuming from %s: step %" PRId64 ", data position %" PRId64,
           dir, step, position);
    return MR_OK;
}

mr_status checkpoint_write_outputs(trainer *t, mr_error *err) {
    char path[4096];
    mr_status status = MR_OK;
    if (t->lora != NULL) {
        train_join_path(path, sizeof path, t->o.out_dir, "adapter");
        status = mr_lora_save_peft(t->lora, path, t->o.model_path, err);
    } else if (t->model_is_hf) {
        train_join_path(path, sizeof path, t->o.out_dir, "model");
        status = mr_llama_save_hf(t->model, path, MR_QTYPE_F32, t->o.model_path, t->gguf, err);
    } else {
        train_join_path(path, sizeof path, t->o.out_dir, "model.gguf");
        status = mr_llama_save_gguf(t->model, path, MR_QTYPE_F32, t->gguf, err);
    }
    if (status == MR_OK && t->head != NULL) {
        train_join_path(path, sizeof path, t->o.out_dir, "head.safetensors");
        status = mr_paramset_save(t->head, path, NULL, 0, err);
    }
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "train", "outputs written to %s", t->o.out_dir);
    }
    return status;
}

mr_status train_make_dirs(const char *dir, mr_error *err) {
    return make_dirs(dir, err);
}
