/*
 * Parameter sets: named weights carved out of one contiguous buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/params.h"
#include "multiround/safetensors.h"

typedef struct declared_param {
    char name[48];
    int ndim;
    int64_t shape[MR_MAX_DIMS];
    int64_t offset; /* first float in the buffer */
    int64_t count;
    mr_tensor *view;
} declared_param;

struct mr_paramset {
    declared_param *params;
    int count;
    int capacity;
    int64_t numel;
    mr_ctx *ctx;    /* owns the buffer, its gradient and the views */
    mr_tensor *flat;
};

mr_paramset *mr_paramset_create(void) {
    return calloc(1, sizeof(mr_paramset));
}

void mr_paramset_free(mr_paramset *ps) {
    if (ps == NULL) {
        return;
    }
    mr_ctx_free(ps->ctx);
    free(ps->params);
    free(ps);
}

int mr_paramset_declare(mr_paramset *ps, const char *name, int ndim,
                        const int64_t *shape, mr_error *err) {
    if (ps->flat != NULL) {
        mr_error_set(err, MR_ERR_STATE, "params: cannot declare '%s' after the set is finalised",
                     name);
        return -1;
    }
    size_t length = strlen(name);
    if (length == 0 || length >= sizeof ps->params[0].name) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "params: weight name '%s' must have 1 to 47 bytes", name);
        return -1;
    }
    for (int i = 0; i < ps->count; i++) {
        if (strcmp(ps->params[i].name, name) == 0) {
            mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "params: weight '%s' is declared twice",
                         name);
            return -1;
        }
    }
    if (ndim < 0 || ndim > MR_MAX_DIMS) {
        mr_error_set(err, MR_ERR_SHAPE, "params: weight '%s' has %d dimensions; at most %d",
                     name, ndim, MR_MAX_DIMS);
        return -1;
    }

    /* Sizes beyond 2^36 floats (256 GiB) are certainly a bug. */
    int64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && count > ((int64_t)1 << 36) / shape[d])) {
            mr_error_set(err, MR_ERR_SHAPE, "params: weight '%s' has an invalid or huge "
                         "dimension %d (%lld)", name, d, (long long)shape[d]);
            return -1;
        }
        count *= shape[d];
    }

    if (ps->count == ps->capacity) {
        int capacity = ps->capacity == 0 ? 32 : ps->capacity * 2;
        declared_param *grown = realloc(ps->params, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            mr_error_set(err, MR_ERR_NO_MEMORY, "params: out of memory declaring '%s'", name);
            return -1;
        }
        ps->params = grown;
        ps->capacity = capacity;
    }
    declared_param *p = &ps->params[ps->count];
    memset(p, 0, sizeof *p);
    memcpy(p->name, name, length + 1);
    p->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
    }
    p->offset = ps->numel;
    p->count = count;
    ps->numel += count;
    return ps->count++;
}

mr_status mr_paramset_finalize(mr_paramset *ps, mr_error *err) {
    if (ps->flat != NULL) {
        return mr_error_set(err, MR_ERR_STATE, "params: the set is already finalised");
    }

    /* Values, gradient and some room for the view headers. */
    size_t bytes = (size_t)ps->numel * 2 * sizeof(float) + (size_t)ps->count * 1024 + 4096;
    ps->ctx = mr_ctx_create(bytes);
    if (ps->ctx == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "params: cannot allocate %zu bytes for %lld "
                            "weights", bytes, (long long)ps->numel);
    }
    ps->flat = mr_tensor_zeros(ps->ctx, MR_F32, 1, &ps->numel);
    if (ps->flat == NULL || mr_tensor_set_param(ps->flat) != MR_OK) {
        return mr_ctx_take_error(ps->ctx, err);
    }
    mr_tensor_set_name(ps->flat, "params");

    /* Each weight is a slice of the flat buffer, reshaped to its shape. */
    for (int i = 0; i < ps->count; i++) {
        declared_param *p = &ps->params[i];
        mr_tensor *slice = mr_tensor_slice(ps->ctx, ps->flat, 0, p->offset, p->count);
        p->view = mr_tensor_reshape(ps->ctx, slice, p->ndim, p->shape);
        if (p->view == NULL) {
            return mr_ctx_take_error(ps->ctx, err);
        }
        mr_tensor_set_name(p->view, p->name);
    }
    mr_log(MR_LOG_DEBUG, "params", "%d weights, %lld floats (%.2f MiB)", ps->count,
           (long long)ps->numel, (double)ps->numel * sizeof(float) / (1 << 20));
    return MR_OK;
}

int mr_paramset_count(const mr_paramset *ps) { return ps->count; }

int64_t mr_paramset_numel(const mr_paramset *ps) { return ps->numel; }

mr_tensor *mr_paramset_get(const mr_paramset *ps, int index) {
    if (index < 0 || index >= ps->count) {
        return NULL;
    }
    return ps->params[index].view;
}

mr_tensor *mr_paramset_find(const mr_paramset *ps, const char *name) {
    for (int i = 0; i < ps->count; i++) {
        if (strcmp(ps->params[i].name, name) == 0) {
            return ps->params[i].view;
        }
    }
    return NULL;
}

mr_tensor *mr_paramset_flat(const mr_paramset *ps) { return ps->flat; }

void mr_paramset_zero_grad(mr_paramset *ps) {
    if (ps->flat != NULL) {
        mr_tensor_zero_grad(ps->flat);
    }
}

mr_status mr_paramset_save(const mr_paramset *ps, const char *path,
                           const char *const *metadata, int metadata_pairs,
                           mr_error *err) {
    if (ps->flat == NULL) {
        return mr_error_set(err, MR_ERR_STATE, "params: finalise the set before saving %s",
                            path);
    }
    mr_tensor **views = malloc((size_t)(ps->count > 0 ? ps->count : 1) * sizeof *views);
    if (views == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "params: out of memory saving %s", path);
    }
    for (int i = 0; i < ps->count; i++) {
        views[i] = ps->params[i].view;
    }
    mr_status status = mr_safetensors_save_tensors(path, views, ps->count, metadata,
                                                   metadata_pairs, MR_SAFETENSORS_F32, err);
    free(views);
    return status;
}

/* Writes "[a, b]" of a declared shape into buf. */
static void format_shape(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++) {
        used += (size_t)snprintf(buf + used, size - used, d == 0 ? "%lld" : ", %lld",
                                 (long long)shape[d]);
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
}

mr_status mr_paramset_load(mr_paramset *ps, const char *path, bool require_all,
                           int *loaded, mr_error *err) {
    if (ps->flat == NULL) {
        return mr_error_set(err, MR_ERR_STATE, "params: finalise the set before loading %s",
                            path);
    }
    mr_safetensors *file = NULL;
    mr_status status = mr_safetensors_open(path, &file, err);
    if (status != MR_OK) {
        return status;
    }

    /* Check every weight before changing any. */
    int found = 0;
    for (int i = 0; i < ps->count && status == MR_OK; i++) {
        declared_param *p = &ps->params[i];
        const mr_safetensors_tensor *t = mr_safetensors_tensor_find(file, p->name);
        if (t == NULL) {
            if (require_all) {
                status = mr_error_set(err, MR_ERR_NOT_FOUND,
                                      "params: %s has no tensor '%s'; it is not a checkpoint "
                                      "of this model",
                                      path, p->name);
            }
            continue;
        }
        bool same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) {
            same = t->shape[d] == p->shape[d];
        }
        if (!same) {
            char expected[96], actual[96];
            format_shape(p->ndim, p->shape, expected, sizeof expected);
            format_shape(t->ndim, t->shape, actual, sizeof actual);
            status = mr_error_set(err, MR_ERR_SHAPE,
                                  "params: tensor '%s' in %s has shape %s, expected %s; the "
                                  "checkpoint was made with another configuration",
                                  p->name, path, actual, expected);
        }
        found++;
    }

    for (int i = 0; i < ps->count && status == MR_OK; i++) {
        declared_param *p = &ps->params[i];
        if (mr_safetensors_tensor_find(file, p->name) != NULL) {
            status = mr_safetensors_read_f32(file, p->name, p->view->data, p->count, err);
        }
    }
    mr_safetensors_close(file);
    if (status == MR_OK && loaded != NULL) {
        *loaded = found;
    }
    return status;
}
