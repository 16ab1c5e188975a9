/*
 * Tensor creation, metadata, copies and initialisers, plus the helpers that
 * every operation uses to create its output.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctx.h"
#include "internal.h"

/* Refuse single tensors above 2^40 bytes (1 TiB): such a size comes from a
 * corrupt header or a bug, never from a model this engine can run. */
#define MAX_TENSOR_BYTES ((int64_t)1 << 40)

static size_t dtype_size(mr_dtype dtype) {
    return dtype == MR_I32 ? sizeof(int32_t) : sizeof(float);
}

int64_t mr_shape_product(const int64_t *shape, int from, int to) {
    int64_t product = 1;
    for (int i = from; i < to; i++) {
        product *= shape[i];
    }
    return product;
}

void mr_set_contiguous_strides(int ndim, const int64_t *shape,
                               int64_t *stride) {
    int64_t step = 1;
    for (int i = MR_MAX_DIMS - 1; i >= 0; i--) {
        stride[i] = 1;
    }
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = step;
        step *= shape[i];
    }
}

/* Allocates the tensor header with the given shape and no data. */
static mr_tensor *tensor_header(mr_ctx *ctx, mr_dtype dtype, int ndim,
                                const int64_t *shape) {
    if (ndim < 0 || ndim > MR_MAX_DIMS) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "engine: a tensor has %d dimensions; the maximum is %d",
                    ndim, MR_MAX_DIMS);
        return NULL;
    }
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "engine: dimension %d has negative size %lld", i,
                        (long long)shape[i]);
            return NULL;
        }
        if (shape[i] > 0 && count > MAX_TENSOR_BYTES / shape[i]) {
            count = MAX_TENSOR_BYTES + 1;
            break;
        }
        count *= shape[i];
    }
    if (count * (int64_t)dtype_size(dtype) > MAX_TENSOR_BYTES) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "engine: a tensor of %lld or more elements exceeds the limit of "
                    "2^40 bytes",
                    (long long)count);
        return NULL;
    }

    mr_tensor *t = mr_ctx_alloc(ctx, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < MR_MAX_DIMS; i++) {
        t->shape[i] = i < ndim ? shape[i] : 1;
    }
    mr_set_contiguous_strides(ndim, t->shape, t->stride);
    t->op = "leaf";
    t->owner = ctx;
    return t;
}

mr_tensor *mr_tensor_new(mr_ctx *ctx, mr_dtype dtype, int ndim,
                         const int64_t *shape) {
    mr_tensor *t = tensor_header(ctx, dtype, ndim, shape);
    if (t == NULL) {
        return NULL;
    }
    void *memory = mr_ctx_alloc(ctx, (size_t)mr_tensor_numel(t) * dtype_size(dtype));
    if (memory == NULL) {
        return NULL;
    }
    if (dtype == MR_I32) {
        t->idata = memory;
    } else {
        t->data = memory;
    }
    return t;
}

mr_tensor *mr_tensor_new1d(mr_ctx *ctx, mr_dtype dtype, int64_t d0) {
    int64_t shape[1] = {d0};
    return mr_tensor_new(ctx, dtype, 1, shape);
}

mr_tensor *mr_tensor_new2d(mr_ctx *ctx, mr_dtype dtype, int64_t d0,
                           int64_t d1) {
    int64_t shape[2] = {d0, d1};
    return mr_tensor_new(ctx, dtype, 2, shape);
}

mr_tensor *mr_tensor_new3d(mr_ctx *ctx, mr_dtype dtype, int64_t d0,
                           int64_t d1, int64_t d2) {
    int64_t shape[3] = {d0, d1, d2};
    return mr_tensor_new(ctx, dtype, 3, shape);
}

mr_tensor *mr_tensor_new4d(mr_ctx *ctx, mr_dtype dtype, int64_t d0,
                           int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    return mr_tensor_new(ctx, dtype, 4, shape);
}

mr_tensor *mr_tensor_zeros(mr_ctx *ctx, mr_dtype dtype, int ndim,
                           const int64_t *shape) {
    mr_tensor *t = mr_tensor_new(ctx, dtype, ndim, shape);
    if (t != NULL) {
        void *memory = dtype == MR_I32 ? (void *)t->idata : (void *)t->data;
        memset(memory, 0, (size_t)mr_tensor_numel(t) * dtype_size(dtype));
    }
    return t;
}

mr_tensor *mr_tensor_scalar(mr_ctx *ctx, float value) {
    mr_tensor *t = mr_tensor_new(ctx, MR_F32, 0, NULL);
    if (t != NULL) {
        t->data[0] = value;
    }
    return t;
}

mr_tensor *mr_tensor_from_f32(mr_ctx *ctx, int ndim, const int64_t *shape,
                              const float *values) {
    mr_tensor *t = mr_tensor_new(ctx, MR_F32, ndim, shape);
    if (t != NULL) {
        memcpy(t->data, values, (size_t)mr_tensor_numel(t) * sizeof(float));
    }
    return t;
}

mr_tensor *mr_tensor_from_i32(mr_ctx *ctx, int ndim, const int64_t *shape,
                              const int32_t *values) {
    mr_tensor *t = mr_tensor_new(ctx, MR_I32, ndim, shape);
    if (t != NULL) {
        memcpy(t->idata, values, (size_t)mr_tensor_numel(t) * sizeof(int32_t));
    }
    return t;
}

/*
 * The gradient lives in the parameter's own context so that it survives
 * resets of the step contexts that read the parameter. A contiguous view
 * of a parameter (one weight carved out of a model's flat buffer) may be
 * marked too: its gradient is the matching window of the parameter's.
 */
mr_status mr_tensor_set_param(mr_tensor *t) {
    bool view_of_param = t->view_of != NULL && (t->view_of->flags & MR_FLAG_PARAM) != 0;
    if (t->dtype != MR_F32 || !mr_tensor_is_contiguous(t) ||
        (t->view_of != NULL && !view_of_param)) {
        mr_ctx_fail(t->owner, MR_ERR_INVALID_ARGUMENT,
                    "engine: only contiguous float tensors, or contiguous views of a "
                    "parameter, can be parameters (tensor '%s')",
                    t->name);
        return MR_ERR_INVALID_ARGUMENT;
    }
    if (view_of_param) {
        t->grad = t->view_of->grad + t->view_offset;
    } else if (t->grad == NULL) {
        t->grad = mr_ctx_alloc(t->owner, (size_t)mr_tensor_numel(t) * sizeof(float));
        if (t->grad == NULL) {
            return MR_ERR_NO_MEMORY;
        }
        memset(t->grad, 0, (size_t)mr_tensor_numel(t) * sizeof(float));
    }
    t->flags |= MR_FLAG_PARAM | MR_FLAG_REQUIRES_GRAD;
    return MR_OK;
}

void mr_tensor_set_requires_grad(mr_tensor *t, bool requires_grad) {
    if (requires_grad) {
        t->flags |= MR_FLAG_REQUIRES_GRAD;
    } else {
        t->flags &= ~MR_FLAG_REQUIRES_GRAD;
    }
}

bool mr_tensor_requires_grad(const mr_tensor *t) {
    return t != NULL && (t->flags & MR_FLAG_REQUIRES_GRAD) != 0;
}

void mr_tensor_zero_grad(mr_tensor *t) {
    if (t->grad == NULL) {
        return;
    }
    if (mr_tensor_is_contiguous(t)) {
        memset(t->grad, 0, (size_t)mr_tensor_numel(t) * sizeof(float));
        return;
    }
    int64_t count = mr_tensor_numel(t);
    for (int64_t i = 0; i < count; i++) {
        int64_t rest = i, offset = 0;
        for (int d = t->ndim - 1; d >= 0; d--) {
            offset += (rest % t->shape[d]) * t->stride[d];
            rest /= t->shape[d];
        }
        t->grad[offset] = 0.0f;
    }
}

void mr_tensor_set_name(mr_tensor *t, const char *name) {
    snprintf(t->name, sizeof t->name, "%s", name);
}

int64_t mr_tensor_numel(const mr_tensor *t) {
    return mr_shape_product(t->shape, 0, t->ndim);
}

bool mr_tensor_is_contiguous(const mr_tensor *t) {
    int64_t step = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != step) {
            return false;
        }
        step *= t->shape[i];
    }
    return true;
}

bool mr_tensor_same_shape(const mr_tensor *a, const mr_tensor *b) {
    if (a->ndim != b->ndim) {
        return false;
    }
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] != b->shape[i]) {
            return false;
        }
    }
    return true;
}

char *mr_tensor_shape_string(const mr_tensor *t, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++) {
        used += (size_t)snprintf(buf + used, size - used, i == 0 ? "%lld" : ", %lld",
                                 (long long)t->shape[i]);
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
    return buf;
}

/* Offset in elements of row-major element i of t. */
static int64_t strided_offset(const mr_tensor *t, int64_t i) {
    int64_t offset = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        offset += (i % t->shape[d]) * t->stride[d];
        i /= t->shape[d];
    }
    return offset;
}

void mr_tensor_fill(mr_tensor *t, float value) {
    int64_t count = mr_tensor_numel(t);
    if (mr_tensor_is_contiguous(t)) {
        for (int64_t i = 0; i < count; i++) {
            t->data[i] = value;
        }
        return;
    }
    for (int64_t i = 0; i < count; i++) {
        t->data[strided_offset(t, i)] = value;
    }
}

mr_status mr_tensor_copy(mr_tensor *dst, const mr_tensor *src) {
    if (dst->dtype != src->dtype || !mr_tensor_same_shape(dst, src)) {
        return MR_ERR_SHAPE;
    }
    int64_t count = mr_tensor_numel(src);
    for (int64_t i = 0; i < count; i++) {
        int64_t from = strided_offset(src, i);
        int64_t to = strided_offset(dst, i);
        if (src->dtype == MR_I32) {
            dst->idata[to] = src->idata[from];
        } else {
            dst->data[to] = src->data[from];
        }
    }
    return MR_OK;
}

float mr_tensor_get(const mr_tensor *t, int64_t i) {
    int64_t offset = strided_offset(t, i);
    return t->dtype == MR_I32 ? (float)t->idata[offset] : t->data[offset];
}

/* ------------------------------------------------------------------------
 * Initialisers. Element i takes draw (counter + i) of the stream, so the
 * values do not depend on the thread count; the stream then advances by
 * the element count.
 * ------------------------------------------------------------------------ */

void mr_tensor_init_zeros(mr_tensor *t) { mr_tensor_fill(t, 0.0f); }

void mr_tensor_init_normal(mr_tensor *t, float mean, float std, mr_rng *rng) {
    int64_t count = mr_tensor_numel(t);
    for (int64_t i = 0; i < count; i++) {
        t->data[strided_offset(t, i)] = mean + std * mr_rng_normal(rng);
    }
}

void mr_tensor_init_uniform(mr_tensor *t, float low, float high, mr_rng *rng) {
    int64_t count = mr_tensor_numel(t);
    for (int64_t i = 0; i < count; i++) {
        t->data[strided_offset(t, i)] = low + (high - low) * mr_rng_uniform(rng);
    }
}

void mr_tensor_init_xavier_uniform(mr_tensor *t, float gain, mr_rng *rng) {
    int64_t fan_in = 1, fan_out = 1;
    if (t->ndim == 1) {
        fan_in = fan_out = t->shape[0];
    } else if (t->ndim >= 2) {
        int64_t receptive = mr_shape_product(t->shape, 2, t->ndim);
        fan_in = t->shape[1] * receptive;
        fan_out = t->shape[0] * receptive;
    }
    float bound = gain * sqrtf(6.0f / (float)(fan_in + fan_out));
    mr_tensor_init_uniform(t, -bound, bound, rng);
}

/* ------------------------------------------------------------------------
 * Helpers for operations
 * ------------------------------------------------------------------------ */

mr_tensor *mr_op_output(mr_ctx *ctx, const char *op, int ndim,
                        const int64_t *shape, mr_tensor **srcs, int nsrc,
                        mr_backward_fn backward) {
    mr_tensor *out = mr_tensor_new(ctx, MR_F32, ndim, shape);
    if (out == NULL) {
        return NULL;
    }
    out->op = op;

    bool needs_grad = false;
    for (int i = 0; i < nsrc; i++) {
        needs_grad = needs_grad || mr_tensor_requires_grad(srcs[i]);
    }
    if (!ctx->grad_enabled || !needs_grad || backward == NULL) {
        return out;
    }

    for (int i = 0; i < nsrc && i < MR_MAX_SRC; i++) {
        out->src[i] = srcs[i];
    }
    out->backward = backward;
    out->flags |= MR_FLAG_REQUIRES_GRAD;
    if (!mr_ctx_push_tape(ctx, out)) {
        return NULL;
    }
    return out;
}

bool mr_any_null(int n, ...) {
    va_list args;
    va_start(args, n);
    bool found = false;
    for (int i = 0; i < n; i++) {
        if (va_arg(args, const mr_tensor *) == NULL) {
            found = true;
        }
    }
    va_end(args);
    return found;
}

int mr_axis_check(mr_ctx *ctx, const char *op, const mr_tensor *t, int axis) {
    int normalized = axis < 0 ? axis + t->ndim : axis;
    if (normalized < 0 || normalized >= t->ndim) {
        char shape[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: axis %d is out of range for a tensor of shape %s",
                    op, axis, mr_tensor_shape_string(t, shape, sizeof shape));
        return -1;
    }
    return normalized;
}

bool mr_check_dtype(mr_ctx *ctx, const char *op, const char *arg,
                    const mr_tensor *t, mr_dtype dtype) {
    if (t->dtype != dtype) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "%s: %s must be %s", op, arg,
                    dtype == MR_I32 ? "an int32 tensor" : "a float tensor");
        return false;
    }
    return true;
}

bool mr_broadcast_shape(mr_ctx *ctx, const char *op, const mr_tensor *a,
                        const mr_tensor *b, int *ndim, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = a->ndim - n + i;
        int ib = b->ndim - n + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1;
        int64_t db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[96], sb[96];
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", op,
                        mr_tensor_shape_string(a, sa, sizeof sa),
                        mr_tensor_shape_string(b, sb, sizeof sb));
            return false;
        }
        shape[i] = da == 1 ? db : da;
    }
    *ndim = n;
    return true;
}
