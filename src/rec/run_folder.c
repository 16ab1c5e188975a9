/*
 * Run folder files: config.json and metrics.json as JSON, the comparison
 * that decides whether a rerun may resume, and loading a trained model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/fileio.h"
#include "run_folder.h"

/* Largest JSON file read; config and metrics files are a few kilobytes. */
#define REC_JSON_MAX_BYTES ((size_t)64 << 20)

mr_status rec_json_read(const char *path, cJSON **out, mr_error *err) {
    *out = NULL;
    void *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, REC_JSON_MAX_BYTES, &text, &size, err);
    if (status != MR_OK) {
        return status;
    }

    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts(text, size, &end, false);
    if (json == NULL) {
        size_t offset = end != NULL ? (size_t)(end - (const char *)text) : 0;
        free(text);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: %s is not valid JSON (error near byte %zu); delete the "
                            "file or the run folder to start again",
                            path, offset);
    }
    free(text);
    *out = json;
    return MR_OK;
}

mr_status rec_json_write(const char *path, const cJSON *json, mr_error *err) {
    char *text = cJSON_Print(json);
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory printing %s", path);
    }
    size_t length = strlen(text);
    char *with_newline = realloc(text, length + 2);
    if (with_newline == NULL) {
        cJSON_free(text);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory printing %s", path);
    }
    with_newline[length] = '\n';
    with_newline[length + 1] = '\0';

    mr_status status = mr_file_write_atomic(path, with_newline, length + 1, err);
    free(with_newline);
    return status;
}

/* A float setting as the shortest decimal that reads back as the same
 * float, so config.json shows 0.1777 and not 0.17769999802112579. */
static cJSON *float_number(float value) {
    char text[32];
    snprintf(text, sizeof text, "%.9g", (double)value);
    for (int digits = 1; digits < 9; digits++) {
        char shorter[32];
        snprintf(shorter, sizeof shorter, "%.*g", digits, (double)value);
        if ((float)strtod(shorter, NULL) == value) {
            memcpy(text, shorter, sizeof text);
            break;
        }
    }
    return cJSON_CreateNumber(strtod(text, NULL));
}

cJSON *rec_config_to_json(const mr_rec_config *config,
                          const mr_rec_train_options *options,
                          const char *init_dir, const mr_rec_data *data) {
    cJSON *root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON *train = cJSON_AddObjectToObject(root, "train");
    cJSON *data_json = cJSON_AddObjectToObject(root, "data");
    if (model == NULL || train == NULL || data_json == NULL) {
        cJSON_Delete(root);
        return NULL;
    }

    cJSON_AddStringToObject(model, "backbone", mr_rec_backbone_name(config->backbone));
    cJSON_AddNumberToObject(model, "dim", config->dim);
    cJSON_AddNumberToObject(model, "max_len", config->max_len);
    cJSON_AddNumberToObject(model, "layers", config->layers);
    cJSON_AddNumberToObject(model, "heads", config->heads);
    cJSON_AddNumberToObject(model, "inner_size", config->inner_size);
    cJSON_AddItemToObject(model, "dropout", float_number(config->dropout));
    cJSON_AddBoolToObject(model, "ada", config->ada);
    cJSON_AddNumberToObject(model, "rounds", config->rounds);
    cJSON_AddNumberToObject(model, "per_round", config->per_round);
    cJSON_AddItemToObject(model, "round_decay", float_number(config->round_decay));
    cJSON_AddNumberToObject(model, "negatives", config->negatives);
    cJSON_AddBoolToObject(model, "ada_zero_padding", config->ada_zero_padding);

    /* NOTE: JSON numbers are doubles here, so seeds above 2^53 are stored
     * rounded and two such seeds close together compare equal. */
    cJSON_AddNumberToObject(train, "seed", (double)options->seed);
    cJSON_AddNumberToObject(train, "epochs", options->epochs);
    cJSON_AddNumberToObject(train, "batch_size", options->batch_size);
    cJSON_AddStringToObject(train, "optimizer", "adam");
    cJSON_AddItemToObject(train, "lr", float_number(options->lr));
    cJSON_AddNumberToObject(train, "beta1", 0.9);
    cJSON_AddNumberToObject(train, "beta2", 0.999);
    cJSON_AddNumberToObject(train, "eps", 1e-8);
    cJSON_AddNumberToObject(train, "weight_decay", 0);
    cJSON_AddItemToObject(train, "clip_norm", float_number(options->clip_norm));
    cJSON_AddNumberToObject(train, "patience", options->patience);
    cJSON_AddStringToObject(train, "early_stop_metric", "valid hit@50");
    cJSON_AddNumberToObject(train, "checkpoint_minutes", options->checkpoint_minutes);
    if (init_dir != NULL) {
        cJSON_AddStringToObject(train, "init", init_dir);
    } else {
        cJSON_AddNullToObject(train, "init");
    }

    cJSON_AddStringToObject(data_json, "path", data->path);
    cJSON_AddNumberToObject(data_json, "n_users", data->n_users);
    cJSON_AddNumberToObject(data_json, "n_items", data->n_items);
    cJSON_AddNumberToObject(data_json, "n_sequences", (double)data->n_sequences);
    cJSON_AddNumberToObject(data_json, "n_train", (double)data->n_train);

    cJSON_AddNumberToObject(root, "threads", mr_threads_get());
    cJSON_AddStringToObject(root, "version", MR_VERSION_STRING);
    return root;
}

/* Reads the number under key of object, which must be an integer in
 * [min, max]. */
static mr_status read_int(const cJSON *object, const char *key, const char *path,
                          int64_t min, int64_t max, int64_t *value, mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
        item->valuedouble < (double)min || item->valuedouble > (double)max) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: %s: '%s' is missing or not an integer from %lld to %lld",
                            path, key, (long long)min, (long long)max);
    }
    *value = (int64_t)item->valuedouble;
    return MR_OK;
}

static mr_status read_float(const cJSON *object, const char *key, const char *path,
                            float *value, mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble)) {
        return mr_error_set(err, MR_ERR_FORMAT, "rec: %s: '%s' is missing or not a number",
                            path, key);
    }
    *value = (float)item->valuedouble;
    return MR_OK;
}

mr_status rec_config_from_json(const cJSON *json, const char *path,
                               mr_rec_config *config, mr_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(json, "model");
    const cJSON *backbone = cJSON_GetObjectItemCaseSensitive(model, "backbone");
    if (!cJSON_IsObject(model) || !cJSON_IsString(backbone)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: %s has no \"model\" object with a \"backbone\" name; it is "
                            "not the config.json of a recommendation run",
                            path);
    }
    mr_rec_backbone_type type;
    mr_status status = mr_rec_backbone_parse(backbone->valuestring, &type, err);
    if (status != MR_OK) {
        return status;
    }
    mr_rec_config_default(config, type);

    struct {
        const char *key;
        int *field;
    } ints[] = {{"dim", &config->dim},           {"max_len", &config->max_len},
                {"layers", &config->layers},     {"heads", &config->heads},
                {"inner_size", &config->inner_size}, {"rounds", &config->rounds},
                {"per_round", &config->per_round}, {"negatives", &config->negatives}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t value = 0;
        status = read_int(model, ints[i].key, path, 0, INT32_MAX, &value, err);
        if (status != MR_OK) {
            return status;
        }
        *ints[i].field = (int)value;
    }
    status = read_float(model, "dropout", path, &config->dropout, err);
    if (status == MR_OK) {
        status = read_float(model, "round_decay", path, &config->round_decay, err);
    }
    if (status != MR_OK) {
        return status;
    }
    const cJSON *ada = cJSON_GetObjectItemCaseSensitive(model, "ada");
    if (!cJSON_IsBool(ada)) {
        return mr_error_set(err, MR_ERR_FORMAT, "rec: %s: 'ada' is missing or not true/false",
                            path);
    }
    config->ada = cJSON_IsTrue(ada);

    /* Run folders written before ada_zero_padding existed lack the key.
     * They ran with the reference behaviour, which is false. */
    const cJSON *zero_padding = cJSON_GetObjectItemCaseSensitive(model, "ada_zero_padding");
    if (zero_padding != NULL && !cJSON_IsBool(zero_padding)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: %s: 'ada_zero_padding' is not true/false", path);
    }
    config->ada_zero_padding = cJSON_IsTrue(zero_padding);
    return mr_rec_config_check(config, err);
}

mr_status rec_config_n_items(const cJSON *json, const char *path, int32_t *n_items,
                             mr_error *err) {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    int64_t value = 0;
    mr_status status = read_int(data, "n_items", path, 2, INT32_MAX, &value, err);
    if (status == MR_OK) {
        *n_items = (int32_t)value;
    }
    return status;
}

/* Formats a JSON value for a message ("64", "\"sasrec\"", "null"). */
static void describe_value(const cJSON *item, char *out, size_t size) {
    if (item == NULL) {
        snprintf(out, size, "(missing)");
        return;
    }
    char *text = cJSON_PrintUnformatted(item);
    snprintf(out, size, "%s", text != NULL ? text : "?");
    cJSON_free(text);
}

bool rec_config_difference(const cJSON *old_json, const cJSON *new_json, char *out,
                           size_t size) {
    static const char *const keys[][2] = {
        {"model", "backbone"},   {"model", "dim"},        {"model", "max_len"},
        {"model", "layers"},     {"model", "heads"},      {"model", "inner_size"},
        {"model", "dropout"},    {"model", "ada"},        {"model", "rounds"},
        {"model", "per_round"},  {"model", "round_decay"}, {"model", "negatives"},
        {"train", "seed"},       {"train", "batch_size"}, {"train", "optimizer"},
        {"train", "lr"},         {"train", "beta1"},      {"train", "beta2"},
        {"train", "eps"},        {"train", "weight_decay"}, {"train", "clip_norm"},
        {"train", "init"},       {"data", "n_users"},     {"data", "n_items"},
        {"data", "n_sequences"}, {"data", "n_train"},    {"model", "ada_zero_padding"}};

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *old_item = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(old_json, keys[i][0]), keys[i][1]);
        const cJSON *new_item = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(new_json, keys[i][0]), keys[i][1]);
        if (old_item != NULL && new_item != NULL && cJSON_Compare(old_item, new_item, true)) {
            continue;
        }

        /* A key that older run folders lack matches its default, false. */
        if (old_item == NULL && strcmp(keys[i][1], "ada_zero_padding") == 0 &&
            cJSON_IsFalse(new_item)) {
            continue;
        }
        char old_text[320], new_text[320];
        describe_value(old_item, old_text, sizeof old_text);
        describe_value(new_item, new_text, sizeof new_text);

        /* The data counts differ when the file does, so name the files. */
        if (strcmp(keys[i][0], "data") == 0) {
            const cJSON *old_path = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(old_json, "data"), "path");
            snprintf(out, size,
                     "data from %s, which has data.%s = %s, but this run's data has %s (the "
                     "files differ: n_users and n_items are the largest ids + 1, "
                     "n_sequences the users kept and n_train the training examples)",
                     cJSON_IsString(old_path) ? old_path->valuestring : "another file",
                     keys[i][1], old_text, new_text);
            return true;
        }
        snprintf(out, size, "%s.%s = %s, but this run has %s", keys[i][0], keys[i][1],
                 old_text, new_text);
        return true;
    }
    return false;
}

mr_status rec_config_compare(const cJSON *old_json, const cJSON *new_json,
                             const char *path, mr_error *err) {
    char difference[800];
    if (!rec_config_difference(old_json, new_json, difference, sizeof difference)) {
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                        "rec: the run in %s was started with %s; rerun with the same "
                        "settings to resume, or choose another output folder",
                        path, difference);
}

cJSON *rec_metrics_to_json(const mr_rec_metrics *metrics) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddNumberToObject(json, "users", (double)metrics->users);
    char key[32];
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        snprintf(key, sizeof key, "hit@%d", mr_rec_cutoffs[c]);
        cJSON_AddNumberToObject(json, key, metrics->hit[c]);
    }
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        snprintf(key, sizeof key, "ndcg@%d", mr_rec_cutoffs[c]);
        cJSON_AddNumberToObject(json, key, metrics->ndcg[c]);
    }
    return json;
}

mr_status rec_metrics_from_json(const cJSON *json, const char *path,
                                mr_rec_metrics *metrics, mr_error *err) {
    memset(metrics, 0, sizeof *metrics);
    mr_status status = read_int(json, "users", path, 0, INT64_MAX / 2, &metrics->users, err);
    char key[32];
    for (int c = 0; c < MR_REC_CUTOFFS && status == MR_OK; c++) {
        const cJSON *hit, *ndcg;
        snprintf(key, sizeof key, "hit@%d", mr_rec_cutoffs[c]);
        hit = cJSON_GetObjectItemCaseSensitive(json, key);
        snprintf(key, sizeof key, "ndcg@%d", mr_rec_cutoffs[c]);
        ndcg = cJSON_GetObjectItemCaseSensitive(json, key);
        if (!cJSON_IsNumber(hit) || !cJSON_IsNumber(ndcg)) {
            status = mr_error_set(err, MR_ERR_FORMAT,
                                  "rec: %s: metrics at cutoff %d are missing", path,
                                  mr_rec_cutoffs[c]);
            break;
        }
        metrics->hit[c] = hit->valuedouble;
        metrics->ndcg[c] = ndcg->valuedouble;
    }
    return status;
}

mr_status mr_rec_model_load(const char *dir, int32_t n_items, mr_rec_model **out,
                            mr_error *err) {
    *out = NULL;
    char config_path[4096], model_path[4096];
    mr_status status = mr_path_join(config_path, sizeof config_path, dir, REC_CONFIG_FILE, err);
    if (status == MR_OK) {
        status = mr_path_join(model_path, sizeof model_path, dir, REC_MODEL_FILE, err);
    }
    if (status != MR_OK) {
        return status;
    }

    /* The run's settings, and the item count its tables were sized for. */
    cJSON *json = NULL;
    status = rec_json_read(config_path, &json, err);
    if (status != MR_OK) {
        return status;
    }
    mr_rec_config config;
    int32_t trained_items = 0;
    status = rec_config_from_json(json, config_path, &config, err);
    if (status == MR_OK) {
        status = rec_config_n_items(json, config_path, &trained_items, err);
    }
    cJSON_Delete(json);
    if (status != MR_OK) {
        return status;
    }
    if (trained_items != n_items) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: the model in %s was trained for %d item ids but the data "
                            "has %d; evaluate it on the dataset it was trained on",
                            dir, (int)trained_items, (int)n_items);
    }

    /* The seed only fills weights that the checkpoint then replaces. */
    mr_error create_error = {MR_OK, ""};
    mr_rec_model *model = mr_rec_model_create(&config, n_items, 0, &create_error);
    if (model == NULL) {
        if (err != NULL) {
            *err = create_error;
        }
        return create_error.status != MR_OK ? create_error.status : MR_ERR_NO_MEMORY;
    }
    status = mr_paramset_load(mr_rec_model_params(model), model_path, true, NULL, err);
    if (status != MR_OK) {
        mr_rec_model_free(model);
        return status;
    }
    *out = model;
    return MR_OK;
}
