/*
 * manifest.json of a multi-round run: the record in memory, its JSON
 * form (written atomically, read strictly), and the status table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "multiround/fileio.h"
#include "rounds_internal.h"

/* Largest manifest read; one with 1000 rounds of many files is a few MiB. */
#define MANIFEST_MAX_BYTES ((size_t)256 << 20)

/* Returns a malloc'ed copy of text, or NULL for NULL text or no memory. */
static char *copy_text(const char *text) {
    if (text == NULL) {
        return NULL;
    }
    char *copy = malloc(strlen(text) + 1);
    if (copy != NULL) {
        strcpy(copy, text);
    }
    return copy;
}

const char *rounds_state_name(mr_round_state state) {
    switch (state) {
    case MR_ROUND_PENDING:
        return "pending";
    case MR_ROUND_RUNNING:
        return "running";
    case MR_ROUND_DONE:
        return "done";
    case MR_ROUND_FAILED:
        return "failed";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------
 * The record in memory
 * ------------------------------------------------------------------------ */

mr_status rounds_file_list_set(rounds_file_list *list, const char *path, const char *sha256,
                               mr_error *err) {
    for (int i = 0; i < list->count; i++) {
        if (strcmp(list->items[i].path, path) == 0) {
            snprintf(list->items[i].sha256, sizeof list->items[i].sha256, "%s", sha256);
            return MR_OK;
        }
    }

    if (list->count == list->capacity) {
        int grown = list->capacity == 0 ? 8 : list->capacity * 2;
        rounds_file *items = realloc(list->items, (size_t)grown * sizeof *items);
        if (items == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory recording '%s'",
                                path);
        }
        list->items = items;
        list->capacity = grown;
    }
    rounds_file *item = &list->items[list->count];
    item->path = copy_text(path);
    if (item->path == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory recording '%s'",
                            path);
    }
    snprintf(item->sha256, sizeof item->sha256, "%s", sha256);
    list->count++;
    return MR_OK;
}

void rounds_file_list_clear(rounds_file_list *list) {
    for (int i = 0; i < list->count; i++) {
        free(list->items[i].path);
    }
    free(list->items);
    list->items = NULL;
    list->count = 0;
    list->capacity = 0;
}

/* Frees what round owns. */
static void round_free(rounds_round_record *round, int n_stages) {
    if (round->stages != NULL) {
        for (int s = 0; s < n_stages; s++) {
            free(round->stages[s].name);
            free(round->stages[s].error);
            rounds_file_list_clear(&round->stages[s].inputs);
            rounds_file_list_clear(&round->stages[s].outputs);
        }
    }
    free(round->stages);
    free(round->start_model);
    free(round->output_model);
}

void rounds_manifest_free(rounds_manifest *m) {
    for (int r = 0; r < m->n_rounds; r++) {
        round_free(&m->rounds[r], m->n_stages);
    }
    free(m->rounds);
    for (int s = 0; s < m->n_stages; s++) {
        free(m->stage_names[s]);
    }
    free(m->stage_names);
    free(m->initial_model);
    memset(m, 0, sizeof *m);
}

mr_status rounds_manifest_extend(rounds_manifest *m, int n_rounds, mr_error *err) {
    if (n_rounds <= m->n_rounds) {
        return MR_OK;
    }
    rounds_round_record *rounds = realloc(m->rounds, (size_t)n_rounds * sizeof *rounds);
    if (rounds == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory for %d rounds",
                            n_rounds);
    }
    m->rounds = rounds;

    for (int r = m->n_rounds; r < n_rounds; r++) {
        rounds_round_record *round = &m->rounds[r];
        memset(round, 0, sizeof *round);
        round->stages = calloc((size_t)m->n_stages, sizeof *round->stages);
        if (round->stages == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory for %d rounds",
                                n_rounds);
        }
        m->n_rounds = r + 1;
        for (int s = 0; s < m->n_stages; s++) {
            round->stages[s].name = copy_text(m->stage_names[s]);
            if (round->stages[s].name == NULL) {
                return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
            }
        }
    }
    return MR_OK;
}

mr_status rounds_manifest_init(rounds_manifest *m, const mr_rounds_config *config,
                               mr_error *err) {
    memset(m, 0, sizeof *m);
    m->stage_names = calloc((size_t)config->n_stages, sizeof *m->stage_names);
    if (m->stage_names == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    m->n_stages = config->n_stages;
    for (int s = 0; s < config->n_stages; s++) {
        m->stage_names[s] = copy_text(config->stages[s].name);
        if (m->stage_names[s] == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
        }
    }
    m->lora = config->lora;
    if (config->initial_model != NULL) {
        m->initial_model = copy_text(config->initial_model);
        if (m->initial_model == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
        }
    }
    return rounds_manifest_extend(m, config->n_rounds, err);
}

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

/* Adds a string member, or null for NULL text. */
static void add_string_or_null(cJSON *object, const char *key, const char *text) {
    if (text != NULL) {
        cJSON_AddStringToObject(object, key, text);
    } else {
        cJSON_AddNullToObject(object, key);
    }
}

static cJSON *file_list_to_json(const rounds_file_list *list) {
    cJSON *array = cJSON_CreateArray();
    for (int i = 0; i < list->count && array != NULL; i++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "path", list->items[i].path);
        cJSON_AddStringToObject(item, "sha256", list->items[i].sha256);
        cJSON_AddItemToArray(array, item);
    }
    return array;
}

static cJSON *round_to_json(const rounds_manifest *m, int r) {
    const rounds_round_record *round = &m->rounds[r];
    char folder[32];
    snprintf(folder, sizeof folder, "round-%03d", r);

    cJSON *json = cJSON_CreateObject();
    cJSON_AddNumberToObject(json, "round", r);
    cJSON_AddStringToObject(json, "folder", folder);
    cJSON_AddStringToObject(json, "state", rounds_state_name(round->state));
    add_string_or_null(json, "start_model", round->start_model);
    cJSON_AddBoolToObject(json, "merge_lora", round->merge_lora);
    add_string_or_null(json, "output_model", round->output_model);

    cJSON *stages = cJSON_AddArrayToObject(json, "stages");
    for (int s = 0; s < m->n_stages; s++) {
        const rounds_stage_record *stage = &round->stages[s];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", stage->name);
        cJSON_AddBoolToObject(item, "done", stage->done);
        cJSON_AddNumberToObject(item, "attempts", stage->attempts);
        add_string_or_null(item, "error", stage->error);
        cJSON_AddItemToObject(item, "inputs", file_list_to_json(&stage->inputs));
        cJSON_AddItemToObject(item, "outputs", file_list_to_json(&stage->outputs));
        cJSON_AddItemToArray(stages, item);
    }
    return json;
}

mr_status rounds_manifest_write(const char *path, const rounds_manifest *m, mr_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", ROUNDS_MANIFEST_FORMAT);
    cJSON_AddNumberToObject(root, "version", ROUNDS_MANIFEST_VERSION);
    cJSON *stages = cJSON_AddArrayToObject(root, "stages");
    for (int s = 0; s < m->n_stages; s++) {
        cJSON_AddItemToArray(stages, cJSON_CreateString(m->stage_names[s]));
    }
    add_string_or_null(root, "initial_model", m->initial_model);
    cJSON_AddBoolToObject(root, "lora", m->lora);
    cJSON *rounds = cJSON_AddArrayToObject(root, "rounds");
    for (int r = 0; r < m->n_rounds; r++) {
        cJSON_AddItemToArray(rounds, round_to_json(m, r));
    }

    /* cJSON returns NULL from printing when any allocation above failed. */
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory writing '%s'", path);
    }
    size_t length = strlen(text);
    char *with_newline = realloc(text, length + 2);
    if (with_newline == NULL) {
        cJSON_free(text);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory writing '%s'", path);
    }
    with_newline[length] = '\n';
    with_newline[length + 1] = '\0';
    mr_status status = mr_file_write_atomic(path, with_newline, length + 1, err);
    free(with_newline);
    return status;
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

/* The error of a manifest member that is missing or has the wrong type. */
static mr_status bad_member(const char *path, const char *where, const char *key,
                            const char *expected, mr_error *err) {
    return mr_error_set(err, MR_ERR_FORMAT,
                        "rounds: %s: %s\"%s\" is missing or not %s; restore the manifest or "
                        "start a new run folder",
                        path, where, key, expected);
}

/* Reads a string-or-null member into a new copy in *out (NULL for null). */
static mr_status read_optional_string(const cJSON *object, const char *key, const char *path,
                                      const char *where, char **out, mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    *out = NULL;
    if (cJSON_IsNull(item)) {
        return MR_OK;
    }
    if (!cJSON_IsString(item)) {
        return bad_member(path, where, key, "a string or null", err);
    }
    *out = copy_text(item->valuestring);
    return *out != NULL ? MR_OK : mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
}

static mr_status read_bool(const cJSON *object, const char *key, const char *path,
                           const char *where, bool *out, mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsBool(item)) {
        return bad_member(path, where, key, "true or false", err);
    }
    *out = cJSON_IsTrue(item);
    return MR_OK;
}

/* True when text is 64 lowercase hex digits. */
static bool valid_sha256(const char *text) {
    if (strlen(text) != MR_SHA256_HEX_LENGTH) {
        return false;
    }
    for (const char *c = text; *c != '\0'; c++) {
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) {
            return false;
        }
    }
    return true;
}

static mr_status read_file_list(const cJSON *stage, const char *key, const char *path,
                                const char *where, rounds_file_list *list, mr_error *err) {
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(stage, key);
    if (!cJSON_IsArray(array)) {
        return bad_member(path, where, key, "an array", err);
    }
    const cJSON *item = NULL;
    cJSON_ArrayForEach(item, array) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(item, "path");
        const cJSON *hash = cJSON_GetObjectItemCaseSensitive(item, "sha256");
        if (!cJSON_IsString(file) || !cJSON_IsString(hash) || !valid_sha256(hash->valuestring)) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "rounds: %s: %san entry of \"%s\" lacks a \"path\" string or "
                                "a \"sha256\" of 64 hex digits",
                                path, where, key);
        }
        mr_status status = rounds_file_list_set(list, file->valuestring, hash->valuestring, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

static mr_status read_stage(const cJSON *json, const char *path, const char *where,
                            const char *expected_name, rounds_stage_record *stage,
                            mr_error *err) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(json, "name");
    if (!cJSON_IsString(name) || strcmp(name->valuestring, expected_name) != 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rounds: %s: %sthe stage \"name\" should be \"%s\"; restore the "
                            "manifest or start a new run folder",
                            path, where, expected_name);
    }
    mr_status status = read_bool(json, "done", path, where, &stage->done, err);
    if (status != MR_OK) {
        return status;
    }
    const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(json, "attempts");
    if (!cJSON_IsNumber(attempts) || attempts->valuedouble < 0 ||
        attempts->valuedouble > 1e9) {
        return bad_member(path, where, "attempts", "a count", err);
    }
    stage->attempts = (int)attempts->valuedouble;

    /* Manifests written before failures were recorded have no "error". */
    if (cJSON_GetObjectItemCaseSensitive(json, "error") != NULL) {
        status = read_optional_string(json, "error", path, where, &stage->error, err);
        if (status != MR_OK) {
            return status;
        }
    }
    status = read_file_list(json, "inputs", path, where, &stage->inputs, err);
    if (status != MR_OK) {
        return status;
    }
    return read_file_list(json, "outputs", path, where, &stage->outputs, err);
}

static mr_status read_round(const cJSON *json, const char *path, rounds_manifest *m, int r,
                            mr_error *err) {
    rounds_round_record *round = &m->rounds[r];
    char where[96];
    snprintf(where, sizeof where, "round %d: ", r);

    const cJSON *state = cJSON_GetObjectItemCaseSensitive(json, "state");
    const char *state_text = cJSON_IsString(state) ? state->valuestring : "";
    if (strcmp(state_text, "pending") == 0) {
        round->state = MR_ROUND_PENDING;
    } else if (strcmp(state_text, "running") == 0) {
        round->state = MR_ROUND_RUNNING;
    } else if (strcmp(state_text, "done") == 0) {
        round->state = MR_ROUND_DONE;
    } else if (strcmp(state_text, "failed") == 0) {
        round->state = MR_ROUND_FAILED;
    } else {
        return bad_member(path, where, "state",
                          "\"pending\", \"running\", \"done\" or \"failed\"", err);
    }

    mr_status status = read_optional_string(json, "start_model", path, where,
                                            &round->start_model, err);
    if (status == MR_OK) {
        status = read_bool(json, "merge_lora", path, where, &round->merge_lora, err);
    }
    if (status == MR_OK) {
        status = read_optional_string(json, "output_model", path, where, &round->output_model,
                                      err);
    }
    if (status != MR_OK) {
        return status;
    }

    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(json, "stages");
    if (!cJSON_IsArray(stages) || cJSON_GetArraySize(stages) != m->n_stages) {
        return bad_member(path, where, "stages", "an array with one entry per stage", err);
    }
    for (int s = 0; s < m->n_stages; s++) {
        char stage_where[192];
        snprintf(stage_where, sizeof stage_where, "round %d stage %d: ", r, s);
        status = read_stage(cJSON_GetArrayItem(stages, s), path, stage_where,
                            m->stage_names[s], &round->stages[s], err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Reads the members above the rounds: format, stages, initial model, lora. */
static mr_status read_header(const cJSON *root, const char *path, rounds_manifest *m,
                             mr_error *err) {
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, ROUNDS_MANIFEST_FORMAT) != 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rounds: %s is not a rounds manifest (\"format\" is not \"%s\")",
                            path, ROUNDS_MANIFEST_FORMAT);
    }
    if (!cJSON_IsNumber(version) || version->valueint != ROUNDS_MANIFEST_VERSION) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "rounds: %s has manifest version %d; this build reads version %d",
                            path, cJSON_IsNumber(version) ? version->valueint : -1,
                            ROUNDS_MANIFEST_VERSION);
    }

    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
    int n_stages = cJSON_IsArray(stages) ? cJSON_GetArraySize(stages) : 0;
    if (n_stages < 1 || n_stages > MR_ROUNDS_STAGES_MAX) {
        return bad_member(path, "", "stages", "an array of 1 to 32 names", err);
    }
    m->stage_names = calloc((size_t)n_stages, sizeof *m->stage_names);
    if (m->stage_names == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    m->n_stages = n_stages;
    for (int s = 0; s < n_stages; s++) {
        const cJSON *name = cJSON_GetArrayItem(stages, s);
        if (!cJSON_IsString(name)) {
            return bad_member(path, "", "stages", "an array of names", err);
        }
        m->stage_names[s] = copy_text(name->valuestring);
        if (m->stage_names[s] == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
        }
    }

    mr_status status = read_optional_string(root, "initial_model", path, "", &m->initial_model,
                                            err);
    if (status != MR_OK) {
        return status;
    }
    return read_bool(root, "lora", path, "", &m->lora, err);
}

mr_status rounds_manifest_read(const char *path, rounds_manifest *m, mr_error *err) {
    memset(m, 0, sizeof *m);
    void *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, MANIFEST_MAX_BYTES, &text, &size, err);
    if (status != MR_OK) {
        return status;
    }
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rounds: %s is not a JSON object; restore the manifest or start a "
                            "new run folder",
                            path);
    }

    status = read_header(root, path, m, err);
    const cJSON *rounds = cJSON_GetObjectItemCaseSensitive(root, "rounds");
    int n_rounds = cJSON_IsArray(rounds) ? cJSON_GetArraySize(rounds) : 0;
    if (status == MR_OK && (n_rounds < 1 || n_rounds > MR_ROUNDS_MAX)) {
        status = bad_member(path, "", "rounds", "an array of 1 to 1000 rounds", err);
    }
    if (status == MR_OK) {
        status = rounds_manifest_extend(m, n_rounds, err);
    }
    for (int r = 0; status == MR_OK && r < n_rounds; r++) {
        status = read_round(cJSON_GetArrayItem(rounds, r), path, m, r, err);
    }
    cJSON_Delete(root);
    if (status != MR_OK) {
        rounds_manifest_free(m);
    }
    return status;
}

/* ------------------------------------------------------------------------
 * The status table
 * ------------------------------------------------------------------------ */

/* Writes a stage's cell: "done", "failed" (its last attempt returned an
 * error), "started" (running, or killed) or "-", with the attempt count
 * when it is above one. */
static void stage_cell(const rounds_stage_record *stage, char *out, size_t size) {
    const char *word = "-";
    if (stage->done) {
        word = "done";
    } else if (stage->error != NULL) {
        word = "failed";
    } else if (stage->attempts > 0) {
        word = "started";
    }
    if (stage->attempts > 1) {
        snprintf(out, size, "%s (%d)", word, stage->attempts);
    } else {
        snprintf(out, size, "%s", word);
    }
}

static void print_file_list(FILE *out, const char *kind, const rounds_file_list *list) {
    for (int i = 0; i < list->count; i++) {
        fprintf(out, "    %-6s %s  %s\n", kind, list->items[i].sha256, list->items[i].path);
    }
}

mr_status mr_rounds_print_status(const char *run_dir, FILE *out, bool files, mr_error *err) {
    char *path = rounds_path_join(run_dir, MR_ROUNDS_MANIFEST_FILE);
    if (path == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
    }
    rounds_manifest m;
    mr_status status = rounds_manifest_read(path, &m, err);
    free(path);
    if (status != MR_OK) {
        return status;
    }

    /* Column widths: every stage column fits its name and "started (99)". */
    int widths[MR_ROUNDS_STAGES_MAX];
    for (int s = 0; s < m.n_stages; s++) {
        int length = (int)strlen(m.stage_names[s]);
        widths[s] = length > 12 ? length : 12;
    }
    fprintf(out, "run: %s\ninitial model: %s\nlora: %s\n\n", run_dir,
            m.initial_model != NULL ? m.initial_model : "-", m.lora ? "yes" : "no");
    fprintf(out, "%-10s %-8s", "round", "state");
    for (int s = 0; s < m.n_stages; s++) {
        fprintf(out, " %-*s", widths[s], m.stage_names[s]);
    }
    fprintf(out, " %s\n", "start model -> output model");

    for (int r = 0; r < m.n_rounds; r++) {
        const rounds_round_record *round = &m.rounds[r];
        char folder[32];
        snprintf(folder, sizeof folder, "round-%03d", r);
        fprintf(out, "%-10s %-8s", folder, rounds_state_name(round->state));
        for (int s = 0; s < m.n_stages; s++) {
            char cell[48];
            stage_cell(&round->stages[s], cell, sizeof cell);
            fprintf(out, " %-*s", widths[s], cell);
        }
        fprintf(out, " %s%s -> %s\n", round->start_model != NULL ? round->start_model : "-",
                round->merge_lora ? " (merge LoRA)" : "",
                round->output_model != NULL ? round->output_model : "-");
    }
    fprintf(out, "\nA number in brackets counts the attempts of a stage started more than "
                 "once.\n");
    for (int r = 0; r < m.n_rounds; r++) {
        for (int s = 0; s < m.n_stages; s++) {
            const rounds_stage_record *stage = &m.rounds[r].stages[s];
            if (!stage->done && stage->error != NULL) {
                fprintf(out, "round-%03d stage %s failed: %s\n", r, stage->name, stage->error);
            }
        }
    }

    if (files) {
        for (int r = 0; r < m.n_rounds; r++) {
            for (int s = 0; s < m.n_stages; s++) {
                const rounds_stage_record *stage = &m.rounds[r].stages[s];
                if (stage->inputs.count == 0 && stage->outputs.count == 0) {
                    continue;
                }
                fprintf(out, "\nround-%03d %s:\n", r, stage->name);
                print_file_list(out, "input", &stage->inputs);
                print_file_list(out, "output", &stage->outputs);
            }
        }
    }
    rounds_manifest_free(&m);
    return MR_OK;
}
