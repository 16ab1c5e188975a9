/*
 * Model pools: a JSON file that lists models with their back end,
 * endpoint, prices and description, loaded into one mr_llm per model.
 * docs/llm.md gives the format with an example.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "llm_internal.h"
#include "multiround/serve.h"

/* A pool file larger than this is rejected before it is read. */
#define MAX_POOL_FILE_BYTES (16L << 20)

struct mr_llm_pool {
    mr_llm **models;
    int n_models;
};

static const char *const known_fields[] = {
    "name", "backend", "base_url", "model", "api_key_env", "price_input_per_mtok",
    "price_output_per_mtok", "description", "connect_timeout_s", "timeout_s", "max_retries",
    "backoff_initial_s", "backoff_max_s", "model_path", "chat_template", "context_length",
};

#define KNOWN_FIELDS_TEXT                                                               \
    "name, backend, base_url, model, api_key_env, price_input_per_mtok, "              \
    "price_output_per_mtok, description, connect_timeout_s, timeout_s, max_retries, "  \
    "backoff_initial_s, backoff_max_s, model_path, chat_template, context_length"

/* The place in the file that a message names: "path: models[i]". */
typedef struct entry_place {
    const char *path;
    int index;
} entry_place;

/* Reads the whole file at path into a NUL-terminated buffer. */
static mr_status read_file(const char *path, char **text, size_t *size, mr_error *err) {
    *text = NULL;
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "llm pool: cannot open %s: %s; check the path", path,
                            strerror(errno));
    }

    struct stat info;
    if (fstat(fileno(file), &info) != 0 || !S_ISREG(info.st_mode)) {
        fclose(file);
        return mr_error_set(err, MR_ERR_IO, "llm pool: %s is not a regular file", path);
    }
    if (info.st_size > MAX_POOL_FILE_BYTES) {
        fclose(file);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm pool: %s has %lld bytes, more than the %ld a pool file may "
                            "have; check that it is the pool file",
                            path, (long long)info.st_size, MAX_POOL_FILE_BYTES);
    }

    *size = (size_t)info.st_size;
    *text = malloc(*size + 1);
    if (*text == NULL) {
        fclose(file);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llm pool: out of memory reading %s", path);
    }
    size_t got = fread(*text, 1, *size, file);
    fclose(file);
    if (got != *size) {
        free(*text);
        *text = NULL;
        return mr_error_set(err, MR_ERR_IO, "llm pool: read %zu of %zu bytes of %s", got,
                            *size, path);
    }
    (*text)[*size] = '\0';
    return MR_OK;
}

/* Reads an optional string field: absent or null leaves *value NULL. */
static mr_status read_string(const cJSON *entry, const char *key, bool required,
                             entry_place place, const char **value, mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, key);
    *value = NULL;
    if (cJSON_IsString(item) && item->valuestring[0] != '\0') {
        *value = item->valuestring;
        return MR_OK;
    }
    if ((item == NULL || cJSON_IsNull(item)) && !required) {
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_FORMAT,
                        "llm pool: %s: models[%d].%s is %s, expected a non-empty string",
                        place.path, place.index, key,
                        item == NULL ? "missing" : cJSON_IsString(item) ? "empty"
                                                                         : "not a string");
}

/* Reads a number field that must be finite and >= 0; absent leaves
 * *value unchanged unless required. */
static mr_status read_number(const cJSON *entry, const char *key, bool required,
                             const char *hint, entry_place place, double *value,
                             mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, key);
    if (item == NULL && !required) {
        return MR_OK;
    }
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm pool: %s: models[%d].%s is %s, expected a number >= 0 (%s)",
                            place.path, place.index, key,
                            item == NULL ? "missing" : cJSON_IsNumber(item) ? "negative"
                                                                             : "not a number",
                            hint);
    }
    *value = item->valuedouble;
    return MR_OK;
}

/* Rejects fields that the format does not define, which are most often
 * misspellings. */
static mr_status check_known_fields(const cJSON *entry, entry_place place, mr_error *err) {
    for (const cJSON *field = entry->child; field != NULL; field = field->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof known_fields / sizeof known_fields[0]; i++) {
            known = known || strcmp(field->string, known_fields[i]) == 0;
        }
        if (!known) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "llm pool: %s: models[%d] has unknown field '%s'; the known "
                                "fields are " KNOWN_FIELDS_TEXT,
                                place.path, place.index, field->string);
        }
    }
    return MR_OK;
}

/* Reads the HTTP fields of one entry into config. */
static mr_status read_http_fields(const cJSON *entry, entry_place place,
                                  mr_llm_http_config *config, mr_error *err) {
    mr_llm_http_config_init(config);
    mr_status status = read_string(entry, "base_url", true, place, &config->base_url, err);
    if (status == MR_OK) {
        status = read_string(entry, "model", true, place, &config->model, err);
    }
    if (status == MR_OK) {
        status = read_string(entry, "api_key_env", false, place, &config->api_key_env, err);
    }
    if (status == MR_OK) {
        status = read_number(entry, "connect_timeout_s", false, "seconds", place,
                             &config->connect_timeout_s, err);
    }
    if (status == MR_OK) {
        status = read_number(entry, "timeout_s", false, "seconds", place, &config->timeout_s,
                             err);
    }
    if (status == MR_OK) {
        status = read_number(entry, "backoff_initial_s", false, "seconds", place,
                             &config->backoff_initial_s, err);
    }
    if (status == MR_OK) {
        status = read_number(entry, "backoff_max_s", false, "seconds", place,
                             &config->backoff_max_s, err);
    }
    double retries = config->max_retries;
    if (status == MR_OK) {
        status = read_number(entry, "max_retries", false, "attempts after the first", place,
                             &retries, err);
    }
    if (status == MR_OK && (retries != floor(retries) || retries > 100)) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "llm pool: %s: models[%d].max_retries is %g, expected an "
                              "integer from 0 to 100",
                              place.path, place.index, retries);
    }
    config->max_retries = (int)retries;
    return status;
}

/* Returns path_in_file resolved against the folder of the pool file: an
 * absolute path stays as it is. The caller frees the copy. */
static char *resolve_beside(const char *pool_path, const char *path_in_file) {
    const char *slash = strrchr(pool_path, '/');
    size_t folder_len = path_in_file[0] == '/' || slash == NULL
                            ? 0
                            : (size_t)(slash - pool_path) + 1;
    size_t len = strlen(path_in_file);
    char *resolved = malloc(folder_len + len + 1);
    if (resolved != NULL) {
        memcpy(resolved, pool_path, folder_len);
        memcpy(resolved + folder_len, path_in_file, len + 1);
    }
    return resolved;
}

/* Creates an in-process model from the entry's model_path (relative to
 * the pool file's folder), model (the id), chat_template and
 * context_length. */
static mr_llm *create_local_model(const cJSON *entry, entry_place place, const char *name,
                                  mr_error *err) {
    mr_local_model_config config;
    mr_local_model_config_init(&config);
    const char *model_path = NULL;
    double context_length = 0;
    mr_status status = read_string(entry, "model_path", true, place, &model_path, err);
    if (status == MR_OK) {
        status = read_string(entry, "model", false, place, &config.id, err);
    }
    if (status == MR_OK) {
        status = read_string(entry, "chat_template", false, place, &config.chat_template, err);
    }
    if (status == MR_OK) {
        status = read_number(entry, "context_length", false,
                             "positions per request; 0 for the model's", place,
                             &context_length, err);
    }
    if (status == MR_OK && (context_length != floor(context_length) || context_length > 1e9)) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "llm pool: %s: models[%d].context_length is %g, expected an "
                              "integer >= 0",
                              place.path, place.index, context_length);
    }
    if (status != MR_OK) {
        return NULL;
    }
    config.context_length = (int)context_length;

    char *resolved = resolve_beside(place.path, model_path);
    if (resolved == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "llm pool: out of memory loading %s", place.path);
        return NULL;
    }
    config.path = resolved;
    mr_error inner;
    mr_error_clear(&inner);
    mr_llm *llm = mr_llm_local_open(&config, name, &inner);
    free(resolved);
    if (llm == NULL) {
        mr_error_set(err, inner.status, "llm pool: %s: models[%d] ('%s'): %s", place.path,
                     place.index, name, inner.message);
    }
    return llm;
}

/* Creates the model that one entry of "models" describes. */
static mr_llm *create_model(const cJSON *entry, entry_place place, mr_error *err) {
    if (!cJSON_IsObject(entry)) {
        mr_error_set(err, MR_ERR_FORMAT, "llm pool: %s: models[%d] is not an object",
                     place.path, place.index);
        return NULL;
    }
    const char *name = NULL, *backend = NULL, *description = NULL;
    double price_input = 0, price_output = 0;
    mr_status status = check_known_fields(entry, place, err);
    if (status == MR_OK) {
        status = read_string(entry, "name", true, place, &name, err);
    }
    if (status == MR_OK) {
        status = read_string(entry, "backend", true, place, &backend, err);
    }
    if (status == MR_OK) {
        status = read_string(entry, "description", false, place, &description, err);
    }
    if (status == MR_OK) {
        status = read_number(entry, "price_input_per_mtok", true,
                             "US dollars per million input tokens; 0 for a free local server",
                             place, &price_input, err);
    }
    if (status == MR_OK) {
        status = read_number(entry, "price_output_per_mtok", true,
                             "US dollars per million output tokens; 0 for a free local server",
                             place, &price_output, err);
    }
    if (status != MR_OK) {
        return NULL;
    }

    mr_llm *llm = NULL;
    if (strcmp(backend, "http") == 0) {
        mr_llm_http_config config;
        if (read_http_fields(entry, place, &config, err) != MR_OK) {
            return NULL;
        }
        mr_error inner;
        llm = mr_llm_http_create(&config, name, &inner);
        if (llm == NULL) {
            mr_error_set(err, inner.status, "llm pool: %s: models[%d] ('%s'): %s", place.path,
                         place.index, name, inner.message);
            return NULL;
        }
    } else if (strcmp(backend, "local") == 0) {
        llm = create_local_model(entry, place, name, err);
        if (llm == NULL) {
            return NULL;
        }
    } else {
        mr_error_set(err, MR_ERR_FORMAT,
                     "llm pool: %s: models[%d].backend is \"%s\", expected \"http\" or "
                     "\"local\"",
                     place.path, place.index, backend);
        return NULL;
    }

    if (mr_llm_set_prices(llm, price_input, price_output, err) != MR_OK ||
        mr_llm_set_description(llm, description, err) != MR_OK) {
        mr_llm_free(llm);
        return NULL;
    }
    return llm;
}

/* Creates every model of the parsed file into pool. */
static mr_status load_models(const cJSON *root, const char *path, mr_llm_pool *pool,
                             mr_error *err) {
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(models)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm pool: %s must be a JSON object with a \"models\" array; see "
                            "docs/llm.md for the format",
                            path);
    }
    for (const cJSON *field = root->child; field != NULL; field = field->next) {
        if (strcmp(field->string, "models") != 0) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "llm pool: %s has unknown top-level field '%s'; only "
                                "\"models\" is defined",
                                path, field->string);
        }
    }

    int n = cJSON_GetArraySize(models);
    if (n == 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm pool: %s has an empty \"models\" array; list at least one "
                            "model (see docs/llm.md for the format)",
                            path);
    }
    pool->models = calloc(n > 0 ? (size_t)n : 1, sizeof *pool->models);
    if (pool->models == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llm pool: out of memory loading %s", path);
    }

    int index = 0;
    for (const cJSON *entry = models->child; entry != NULL; entry = entry->next, index++) {
        entry_place place = {.path = path, .index = index};
        mr_llm *llm = create_model(entry, place, err);
        if (llm == NULL) {
            return err != NULL ? err->status : MR_ERR_FORMAT;
        }
        pool->models[pool->n_models++] = llm;

        for (int j = 0; j < pool->n_models - 1; j++) {
            if (strcmp(mr_llm_name(pool->models[j]), mr_llm_name(llm)) == 0) {
                return mr_error_set(err, MR_ERR_FORMAT,
                                    "llm pool: %s: models[%d].name '%s' repeats models[%d]; "
                                    "give each model its own name",
                                    path, index, mr_llm_name(llm), j);
            }
        }
    }
    return MR_OK;
}

mr_llm_pool *mr_llm_pool_load(const char *path, mr_error *err) {
    if (path == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "mr_llm_pool_load: path is NULL");
        return NULL;
    }
    char *text = NULL;
    size_t size = 0;
    if (read_file(path, &text, &size, err) != MR_OK) {
        return NULL;
    }

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, size + 1, &end, true);
    if (root == NULL) {
        size_t offset = end != NULL && end >= text ? (size_t)(end - text) : 0;
        int line = 1;
        for (size_t i = 0; i < offset && i < size; i++) {
            line += text[i] == '\n';
        }
        free(text);
        mr_error_set(err, MR_ERR_FORMAT,
                     "llm pool: %s is not valid JSON: parsing failed at byte %zu (line %d)",
                     path, offset, line);
        return NULL;
    }

    mr_llm_pool *pool = calloc(1, sizeof *pool);
    mr_status status = pool != NULL ? load_models(root, path, pool, err)
                                    : mr_error_set(err, MR_ERR_NO_MEMORY,
                                                   "llm pool: out of memory loading %s", path);
    cJSON_Delete(root);
    free(text);
    if (status != MR_OK) {
        mr_llm_pool_free(pool);
        return NULL;
    }
    mr_log(MR_LOG_INFO, "llm", "loaded %d model%s from %s", pool->n_models,
           pool->n_models == 1 ? "" : "s", path);
    return pool;
}

void mr_llm_pool_free(mr_llm_pool *pool) {
    if (pool == NULL) {
        return;
    }
    for (int i = 0; i < pool->n_models; i++) {
        mr_llm_free(pool->models[i]);
    }
    free(pool->models);
    free(pool);
}

int mr_llm_pool_size(const mr_llm_pool *pool) { return pool->n_models; }

mr_llm *mr_llm_pool_get(const mr_llm_pool *pool, int i) {
    return i >= 0 && i < pool->n_models ? pool->models[i] : NULL;
}

mr_llm *mr_llm_pool_find(const mr_llm_pool *pool, const char *name) {
    for (int i = 0; i < pool->n_models; i++) {
        if (strcmp(mr_llm_name(pool->models[i]), name) == 0) {
            return pool->models[i];
        }
    }
    return NULL;
}

/* Writes one row of the usage table. */
static void print_usage_row(FILE *out, const char *name, const mr_llm_usage *usage) {
    double mean_latency = usage->requests > 0 ? usage->latency_s / (double)usage->requests : 0;
    fprintf(out, "%-24s %9lld %9lld %8lld %14lld %17lld %12.6f %14.3f\n", name,
            (long long)usage->requests, (long long)usage->failures, (long long)usage->retries,
            (long long)usage->prompt_tokens, (long long)usage->completion_tokens,
            usage->cost_usd, mean_latency);
}

void mr_llm_pool_usage_print(const mr_llm_pool *pool, FILE *out) {
    fprintf(out, "%-24s %9s %9s %8s %14s %17s %12s %14s\n", "model", "requests", "failures",
            "retries", "prompt_tokens", "completion_tokens", "cost_usd", "mean_latency_s");

    mr_llm_usage total = {0};
    for (int i = 0; i < pool->n_models; i++) {
        mr_llm_usage usage;
        mr_llm_usage_get(pool->models[i], &usage);
        print_usage_row(out, mr_llm_name(pool->models[i]), &usage);
        total.requests += usage.requests;
        total.failures += usage.failures;
        total.retries += usage.retries;
        total.prompt_tokens += usage.prompt_tokens;
        total.completion_tokens += usage.completion_tokens;
        total.cost_usd += usage.cost_usd;
        total.latency_s += usage.latency_s;
    }
    print_usage_row(out, "total", &total);
}
