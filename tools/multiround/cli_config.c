/*
 * Reading the JSON config files of `multiround train`: the file, its
 * syntax errors with line and column, and values of the expected type,
 * each error naming the config key.
 */
#include <cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "multiround/fileio.h"

const char *cli_json_type_name(const cJSON *item) {
    if (cJSON_IsString(item)) {
        return "a string";
    }
    if (cJSON_IsNumber(item)) {
        return "a number";
    }
    if (cJSON_IsBool(item)) {
        return cJSON_IsTrue(item) ? "true" : "false";
    }
    if (cJSON_IsNull(item)) {
        return "null";
    }
    return cJSON_IsArray(item) ? "an array" : "an object";
}

bool cli_config_wrong_type(const char *key, const char *expected, const cJSON *item) {
    cli_error("config key '%s' must be %s, got %s", key, expected, cli_json_type_name(item));
    return false;
}

bool cli_config_integer(const char *key, const cJSON *item, double low, double high,
                        double *out) {
    if (!cJSON_IsNumber(item)) {
        return cli_config_wrong_type(key, "an integer", item);
    }
    double v = item->valuedouble;
    if (v != floor(v)) {
        cli_error("config key '%s' must be an integer, got %.17g", key, v);
        return false;
    }
    if (v < low || v > high) {
        cli_error("config key '%s' must be an integer in [%.0f, %.0f], got %.17g", key, low,
                  high, v);
        return false;
    }
    *out = v;
    return true;
}

bool cli_config_flag(const cJSON *item, bool *out) {
    if (!cJSON_IsBool(item)) {
        return cli_config_wrong_type(item->string, "true or false (on or off as an option)", item);
    }
    *out = cJSON_IsTrue(item);
    return true;
}

bool cli_config_choice(const cJSON *item, const char *first, const char *second, bool *out) {
    if (cJSON_IsString(item) && strcmp(item->valuestring, first) == 0) {
        *out = false;
        return true;
    }
    if (cJSON_IsString(item) && strcmp(item->valuestring, second) == 0) {
        *out = true;
        return true;
    }
    if (cJSON_IsString(item)) {
        cli_error("config key '%s' must be \"%s\" or \"%s\", got \"%s\"", item->string, first,
                  second, item->valuestring);
        return false;
    }
    return cli_config_wrong_type(item->string, "a string", item);
}

/* Parses the config text of path into a JSON object, printing the line
 * and column where invalid JSON stops the parser. Returns NULL on error. */
static cJSON *parse_config(const char *path, const char *text) {
    const char *end = NULL;
    cJSON *config = cJSON_ParseWithOpts(text, &end, true);
    if (config == NULL) {
        int line = 1;
        const char *line_start = text;
        for (const char *c = text; end != NULL && c < end; c++) {
            if (*c == '\n') {
                line++;
                line_start = c + 1;
            }
        }
        if (end == NULL) {
            cli_error("%s: invalid JSON", path);
        } else if (*end == '\0') {
            cli_error("%s:%d:%d: invalid JSON: the file ends before the JSON object does", path,
                      line, (int)(end - line_start) + 1);
        } else {
            cli_error("%s:%d:%d: invalid JSON near '%.16s'%s", path, line,
                      (int)(end - line_start) + 1, end,
                      mr_json_cut_short(text) ? "; the file ends before the JSON object does" : "");
        }
        return NULL;
    }
    if (!cJSON_IsObject(config)) {
        cli_error("%s: not a JSON object; a config is one {\"key\": value, ...} object", path);
        cJSON_Delete(config);
        return NULL;
    }
    return config;
}

struct cJSON *cli_config_read(const char *path) {
    char *text = NULL;
    size_t size = 0;
    mr_error err;
    if (mr_file_read_all(path, CLI_CONFIG_MAX_BYTES, (void **)&text, &size, &err) != MR_OK) {
        cli_error("cannot read the config file: %s", err.message);
        return NULL;
    }
    cJSON *config = parse_config(path, text);
    free(text);
    return config;
}
