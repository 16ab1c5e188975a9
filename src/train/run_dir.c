/*
 * Run folder checks of the trainers (run_dir.h). A new run never replaces
 * a finished or checkpointed one, and a resumed run keeps the settings
 * that change its result. A run that fails before its first checkpoint
 * removes the folders it created.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "train_internal.h"

/* config.json files larger than this are rejected. */
#define STORED_CONFIG_MAX_BYTES (1u << 20)

/* Keys of config.json that a resumed run may change: they set how often
 * the run logs, evaluates and saves, not what it computes. The steps key
 * is checked apart, because it may only grow. */
static const char *const resume_free_keys[] = {"log_every", "eval_every", "checkpoint_every"};

bool run_dir_has(const char *out_dir, const char *name) {
    char path[4096];
    return mr_path_join(path, sizeof path, out_dir, name, NULL) == MR_OK && mr_path_exists(path);
}

mr_status run_dir_read_stored_config(const char *out_dir, bool resume, cJSON **stored,
                                     mr_error *err) {
    *stored = NULL;
    if (!resume || out_dir == NULL || !run_dir_has(out_dir, "checkpoint.json")) {
        return MR_OK;
    }
    char path[4096];
    mr_status status = mr_path_join(path, sizeof path, out_dir, "config.json", err);
    if (status != MR_OK || !mr_path_exists(path)) {
        return status;
    }
    char *text = NULL;
    size_t size = 0;
    status = mr_file_read_all(path, STORED_CONFIG_MAX_BYTES, (void **)&text, &size, err);
    if (status != MR_OK) {
        return status;
    }
    *stored = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(*stored)) {
        cJSON_Delete(*stored);
        *stored = NULL;
        return mr_error_set(err, MR_ERR_FORMAT,
                            "train: %s is not a JSON object; restore it or start a new run in "
                            "another out folder",
                            path);
    }
    return MR_OK;
}

int64_t run_dir_stored_int(const cJSON *stored, const char *key, int64_t fallback) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(stored, key);
    return cJSON_IsNumber(item) ? (int64_t)item->valuedouble : fallback;
}

/* True when a resumed run may give key a value other than the stored one. */
static bool may_differ(const char *key, const char *steps_key, const cJSON *stored,
                       const cJSON *now) {
    for (size_t i = 0; i < sizeof resume_free_keys / sizeof resume_free_keys[0]; i++) {
        if (strcmp(key, resume_free_keys[i]) == 0) {
            return true;
        }
    }
    return strcmp(key, steps_key) == 0 && cJSON_IsNumber(stored) && cJSON_IsNumber(now) &&
           now->valuedouble >= stored->valuedouble;
}

/* Appends "key (stored A, now B)" to list, which has size bytes. */
static void append_difference(char *list, size_t size, const char *key, const cJSON *stored,
                              const cJSON *now) {
    char *stored_text = stored != NULL ? cJSON_PrintUnformatted(stored) : NULL;
    char *now_text = now != NULL ? cJSON_PrintUnformatted(now) : NULL;
    size_t used = strlen(list);
    snprintf(list + used, size - used, "%s%s (stored %s, now %s)", used > 0 ? ", " : "", key,
             stored_text != NULL ? stored_text : "absent", now_text != NULL ? now_text : "absent");
    free(stored_text);
    free(now_text);
}

mr_status run_dir_check_settings(const char *out_dir, const char *config_text,
                                 const cJSON *stored, const char *steps_key, mr_error *err) {
    cJSON *now = config_text != NULL ? cJSON_Parse(config_text) : NULL;
    if (now == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
    }

    char differences[640] = "";
    const cJSON *item;
    cJSON_ArrayForEach(item, now) {
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(stored, item->string);
        if (!may_differ(item->string, steps_key, old, item) &&
            (old == NULL || !cJSON_Compare(old, item, true))) {
            append_difference(differences, sizeof differences, item->string, old, item);
        }
    }
    cJSON_ArrayForEach(item, stored) {
        if (cJSON_GetObjectItemCaseSensitive(now, item->string) == NULL) {
            append_difference(differences, sizeof differences, item->string, item, NULL);
        }
    }
    if (differences[0] == '\0') {
        cJSON_Delete(now);
        return MR_OK;
    }

    /* The keys that may change, as far as this trainer has them. The
     * message adds stop_after, which config.json does not record. */
    char free_keys[128] = "";
    for (size_t i = 0; i < sizeof resume_free_keys / sizeof resume_free_keys[0]; i++) {
        if (cJSON_GetObjectItemCaseSensitive(now, resume_free_keys[i]) != NULL) {
            size_t used = strlen(free_keys);
            snprintf(free_keys + used, sizeof free_keys - used, "%s%s", used > 0 ? ", " : "",
                     resume_free_keys[i]);
        }
    }
    cJSON_Delete(now);
    return mr_error_set(err, MR_ERR_STATE,
                        "train: cannot resume %s: its config.json differs in %s; resume with "
                        "the stored settings or start a new run in another out folder (a "
                        "resumed run may raise %s and change %s and stop_after)",
                        out_dir, differences, steps_key, free_keys);
}

mr_status run_dir_write_config(const char *out_dir, const char *config_text, mr_error *err) {
    char path[4096];
    mr_status status = mr_path_join(path, sizeof path, out_dir, "config.json", err);
    if (status == MR_OK) {
        status = mr_file_write_atomic(path, config_text, strlen(config_text), err);
    }
    return status;
}

mr_status run_dir_check_new(const char *out_dir, mr_error *err) {
    const char *found = NULL;
    if (run_dir_has(out_dir, "done")) {
        found = "a finished run (done)";
    } else if (run_dir_has(out_dir, "checkpoint.json")) {
        found = "a started run (checkpoint.json)";
    }
    if (found == NULL) {
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_STATE,
                        "train: the out folder %s already contains %s; pass --resume to "
                        "continue it, or choose another out folder",
                        out_dir, found);
}

/* Appends the first error of the data file, if it has one, to the
 * message of an invalid option in err. */
static void add_data_error(const mr_train_options *o, mr_error *err) {
    if (err == NULL || o->data_path == NULL || mr_train_kind_name(o->kind) == NULL ||
        o->num_labels < 1) {
        return;
    }
    train_row *rows = NULL;
    int n = 0;
    mr_error data_err;
    mr_error_clear(&data_err);
    if (train_read_rows(o->data_path, o->kind, o->num_labels, o->completion_field, &rows, &n,
                        &data_err) != MR_OK) {
        size_t used = strlen(err->message);
        snprintf(err->message + used, sizeof err->message - used, "; the data has an error too: %s",
                 data_err.message);
    }
    train_rows_free(rows, n);
}

/* Returns a copy of the topmost folder of path that does not exist yet,
 * or NULL when path exists (or memory runs out). */
static char *first_missing_folder(const char *path) {
    char *copy = strdup(path);
    if (copy == NULL) {
        return NULL;
    }
    for (char *p = copy + 1; *p != '\0'; p++) {
        if (*p != '/' || p[-1] == '/') {
            continue;
        }
        *p = '\0';
        if (!mr_path_exists(copy)) {
            return copy;
        }
        *p = '/';
    }
    if (!mr_path_exists(copy)) {
        return copy;
    }
    free(copy);
    return NULL;
}

/*
 * Removes the temporary files of unfinished atomic writes from out_dir and
 * from the subfolders that runs write into: adapter/ and each folder in
 * checkpoints/. Returns how many it removed. The caller holds the lock.
 */
static int remove_stale_temps(const char *out_dir) {
    char path[4096];
    int removed = mr_folder_remove_stale_temps(out_dir);
    if (mr_path_join(path, sizeof path, out_dir, "adapter", NULL) == MR_OK) {
        int count = mr_folder_remove_stale_temps(path);
        removed += count > 0 ? count : 0;
    }

    char checkpoints[4096];
    if (mr_path_join(checkpoints, sizeof checkpoints, out_dir, "checkpoints", NULL) != MR_OK) {
        return removed;
    }
    DIR *dir = opendir(checkpoints);
    if (dir == NULL) {
        return removed;
    }
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (entry->d_name[0] == '.' ||
            mr_path_join(path, sizeof path, checkpoints, entry->d_name, NULL) != MR_OK) {
            continue;
        }
        int count = mr_folder_remove_stale_temps(path);
        removed += count > 0 ? count : 0;
    }
    closedir(dir);
    return removed;
}

mr_status run_dir_create(const char *out_dir, const cJSON *stored, const char *steps_key,
                         int64_t steps, train_run_dir *dir, mr_error *err) {
    dir->created = first_missing_folder(out_dir);
    dir->lock = NULL;
    mr_status status = mr_make_dirs(out_dir, err);

    /* Lock the folder before changing anything in it, then remove what
     * the unfinished writes of a killed run left. */
    if (status == MR_OK) {
        status = mr_folder_lock_take(out_dir, &dir->lock, err);
    }
    if (status == MR_OK) {
        int removed = remove_stale_temps(out_dir);
        if (removed > 0) {
            mr_log(MR_LOG_INFO, "train", "removed %d temporary file%s left in %s by a run "
                   "that was stopped while writing", removed, removed == 1 ? "" : "s", out_dir);
        }
    }
    if (status != MR_OK) {
        free(dir->created);
        dir->created = NULL;
        return status;
    }

    /* A finished run that resumes to more steps is no longer finished. */
    if (status == MR_OK && stored != NULL &&
        steps > run_dir_stored_int(stored, steps_key, steps)) {
        char path[4096];
        if (mr_path_join(path, sizeof path, out_dir, "done", NULL) == MR_OK) {
            unlink(path);
        }
    }
    return status;
}

mr_status train_run_dir_prepare(const mr_train_options *in, mr_train_options *out,
                                train_run_dir *dir, mr_error *err) {
    *out = *in;
    dir->created = NULL;
    dir->lock = NULL;

    /* A resumed run takes a warm-up left at its default from config.json,
     * so that raising max_steps keeps the schedule's start. */
    cJSON *stored = NULL;
    mr_status status = run_dir_read_stored_config(in->out_dir, in->resume, &stored, err);
    if (status != MR_OK) {
        return status;
    }
    train_resolve_warmup(out, run_dir_stored_int(stored, "warmup_steps", -1));

    /* A resume that changes a setting is named as such before the
     * option checks, which the changed value may also fail. */
    if (stored != NULL) {
        char *text = train_format_config(out);
        status = run_dir_check_settings(out->out_dir, text, stored, "max_steps", err);
        free(text);
    }
    if (status == MR_OK) {
        status = train_validate_options(out, err);
        if (status != MR_OK) {
            add_data_error(out, err);
        }
    }
    if (status == MR_OK && !out->resume) {
        status = run_dir_check_new(out->out_dir, err);
    }
    if (status == MR_OK) {
        status = run_dir_create(out->out_dir, stored, "max_steps", out->max_steps, dir, err);
    }
    cJSON_Delete(stored);
    return status;
}

/* Removes one entry of a tree walked bottom-up by nftw. */
static int remove_entry(const char *path, const struct stat *info, int flag, struct FTW *walk) {
    (void)info;
    (void)flag;
    (void)walk;
    if (remove(path) != 0) {
        mr_log(MR_LOG_WARN, "train", "cannot remove %s", path);
    }
    return 0;
}

void train_run_dir_finish(train_run_dir *dir, const char *out_dir, bool failed) {
    if (failed && dir->created != NULL && !run_dir_has(out_dir, "checkpoint.json")) {
        nftw(dir->created, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        mr_log(MR_LOG_INFO, "train", "removed %s, which the failed run created", dir->created);
    }
    mr_folder_lock_release(dir->lock);
    dir->lock = NULL;
    free(dir->created);
    dir->created = NULL;
}
