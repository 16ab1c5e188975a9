/* JSON fixtures with reference tensors; see fixture.h. */
#include <stdio.h>
#include <stdlib.h>

#include <cJSON.h>

#include "fixture.h"
#include "test.h"

struct mr_fixture {
    cJSON *root;
    char path[256];
};

mr_fixture *mr_fixture_load(const char *path) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot open fixture %s; regenerate it with the "
                     "scripts in tests/fixtures", path);
        return NULL;
    }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t got = fread(text, 1, (size_t)size, file);
    fclose(file);
    text[got] = '\0';

    cJSON *root = cJSON_Parse(text);
    free(text);
    if (root == NULL) {
        mr_test_fail(__FILE__, __LINE__, "fixture %s is not valid JSON", path);
        return NULL;
    }
    mr_fixture *fixture = calloc(1, sizeof *fixture);
    fixture->root = root;
    snprintf(fixture->path, sizeof fixture->path, "%s", path);
    return fixture;
}

void mr_fixture_free(mr_fixture *fixture) {
    if (fixture != NULL) {
        cJSON_Delete(fixture->root);
        free(fixture);
    }
}

static cJSON *find_entry(mr_fixture *fixture, const char *case_name,
                         const char *name) {
    if (fixture == NULL) {
        return NULL;
    }
    cJSON *entry = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(fixture->root, case_name), name);
    if (entry == NULL) {
        mr_test_fail(__FILE__, __LINE__, "fixture %s has no %s.%s", fixture->path, case_name,
                     name);
    }
    return entry;
}

static mr_tensor *make_tensor(mr_fixture *fixture, mr_ctx *ctx,
                              const char *case_name, const char *name,
                              mr_dtype dtype) {
    cJSON *entry = find_entry(fixture, case_name, name);
    if (entry == NULL) {
        return NULL;
    }
    cJSON *shape_json = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    cJSON *data_json = cJSON_GetObjectItemCaseSensitive(entry, "data");
    int ndim = cJSON_GetArraySize(shape_json);
    int64_t shape[MR_MAX_DIMS] = {1, 1, 1, 1};
    for (int i = 0; i < ndim && i < MR_MAX_DIMS; i++) {
        shape[i] = (int64_t)cJSON_GetArrayItem(shape_json, i)->valuedouble;
    }
    mr_tensor *t = mr_tensor_new(ctx, dtype, ndim, shape);
    if (t == NULL || cJSON_GetArraySize(data_json) != mr_tensor_numel(t)) {
        mr_test_fail(__FILE__, __LINE__, "fixture %s: %s.%s has a data length that does not "
                     "match its shape", fixture->path, case_name, name);
        return NULL;
    }
    int64_t i = 0;
    cJSON *value;
    cJSON_ArrayForEach(value, data_json) {
        if (dtype == MR_I32) {
            t->idata[i++] = (int32_t)value->valuedouble;
        } else {
            t->data[i++] = (float)value->valuedouble;
        }
    }
    return t;
}

mr_tensor *mr_fixture_tensor(mr_fixture *fixture, mr_ctx *ctx,
                             const char *case_name, const char *name) {
    return make_tensor(fixture, ctx, case_name, name, MR_F32);
}

mr_tensor *mr_fixture_tensor_i32(mr_fixture *fixture, mr_ctx *ctx,
                                 const char *case_name, const char *name) {
    return make_tensor(fixture, ctx, case_name, name, MR_I32);
}

double mr_fixture_number(mr_fixture *fixture, const char *case_name,
                         const char *name, double fallback) {
    if (fixture == NULL) {
        return fallback;
    }
    cJSON *entry = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(fixture->root, case_name), name);
    return cJSON_IsNumber(entry) ? entry->valuedouble : fallback;
}
