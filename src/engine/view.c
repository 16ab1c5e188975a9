/*
 * Views (reshape, slice, transpose, permute) and the contiguous copy.
 *
 * A view shares the buffers of the tensor it was made from, with its own
 * shape, strides and offset. Its gradient is the same window of that
 * tensor's gradient, so a view needs no backward step: whatever an
 * operation accumulates into the view's gradient lands in the original.
 */
#include <stdio.h>
#include <string.h>

#include "ctx.h"
#include "internal.h"

/* Creates a view header of t with the given shape, strides and extra
 * element offset. */
static mr_tensor *make_view(mr_ctx *ctx, mr_tensor *t, const char *op, int ndim,
                            const int64_t *shape, const int64_t *stride,
                            int64_t offset) {
    mr_tensor *view = mr_ctx_alloc(ctx, sizeof *view);
    if (view == NULL) {
        return NULL;
    }
    memset(view, 0, sizeof *view);

    mr_tensor *root = t->view_of != NULL ? t->view_of : t;
    view->dtype = t->dtype;
    view->ndim = ndim;
    for (int i = 0; i < MR_MAX_DIMS; i++) {
        view->shape[i] = i < ndim ? shape[i] : 1;
        view->stride[i] = i < ndim ? stride[i] : 1;
    }
    view->view_of = root;
    view->view_offset = t->view_offset + offset;
    view->data = t->data != NULL ? t->data + offset : NULL;
    view->idata = t->idata != NULL ? t->idata + offset : NULL;
    view->grad = root->grad != NULL ? root->grad + view->view_offset : NULL;
    view->op = op;
    view->owner = ctx;
    if (mr_tensor_requires_grad(t) && ctx->grad_enabled) {
        view->flags |= MR_FLAG_REQUIRES_GRAD;
    }
    snprintf(view->name, sizeof view->name, "%s", t->name);
    return view;
}

/* ------------------------------------------------------------------------
 * contiguous: a strided copy whose backward scatters back through the
 * input's strides.
 * ------------------------------------------------------------------------ */

/* t's shape and strides padded on the left to four dimensions. */
static void padded_layout(const mr_tensor *t, int64_t shape[MR_MAX_DIMS],
                          int64_t stride[MR_MAX_DIMS]) {
    int pad = MR_MAX_DIMS - t->ndim;
    for (int d = 0; d < MR_MAX_DIMS; d++) {
        shape[d] = d < pad ? 1 : t->shape[d - pad];
        stride[d] = d < pad ? 0 : t->stride[d - pad];
    }
}

/*
 * Moves data between a strided tensor layout and a contiguous buffer:
 * gather copies strided[...] into packed, otherwise packed is added into
 * strided[...]. Rows of the last dimension run in parallel; views never
 * map two elements to one address, so the scatter has no races.
 */
static void strided_transfer(const mr_tensor *t, float *strided, float *packed,
                             bool gather) {
    int64_t shape[MR_MAX_DIMS], stride[MR_MAX_DIMS];
    padded_layout(t, shape, stride);
    int64_t rows = shape[0] * shape[1] * shape[2];
    int64_t cols = shape[3];

#pragma omp parallel for schedule(static) if (rows * cols > 4096)
    for (int64_t row = 0; row < rows; row++) {
        int64_t i2 = row % shape[2];
        int64_t i1 = (row / shape[2]) % shape[1];
        int64_t i0 = row / (shape[2] * shape[1]);
        float *s = strided + i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
        float *p = packed + row * cols;
        if (gather) {
            for (int64_t j = 0; j < cols; j++) {
                p[j] = s[j * stride[3]];
            }
        } else {
            for (int64_t j = 0; j < cols; j++) {
                s[j * stride[3]] += p[j];
            }
        }
    }
}

static void contiguous_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *src = out->src[0];
    float *dsrc = mr_tensor_grad_buffer(ctx, src);
    if (dsrc == NULL) {
        return;
    }
    strided_transfer(src, dsrc, out->grad, false);
}

mr_tensor *mr_tensor_contiguous(mr_ctx *ctx, mr_tensor *t) {
    if (t == NULL) {
        return NULL;
    }
    if (mr_tensor_is_contiguous(t)) {
        return t;
    }
    if (t->dtype == MR_I32) {
        mr_tensor *out = mr_tensor_new(ctx, MR_I32, t->ndim, t->shape);
        if (out != NULL) {
            mr_tensor_copy(out, t);
        }
        return out;
    }

    mr_tensor *srcs[1] = {t};
    mr_tensor *out = mr_op_output(ctx, "contiguous", t->ndim, t->shape, srcs, 1,
                                  contiguous_backward);
    if (out == NULL) {
        return NULL;
    }
    strided_transfer(t, t->data, out->data, true);
    return out;
}

/* ------------------------------------------------------------------------
 * Views
 * ------------------------------------------------------------------------ */

mr_tensor *mr_tensor_reshape(mr_ctx *ctx, mr_tensor *t, int ndim,
                             const int64_t *shape) {
    if (t == NULL) {
        return NULL;
    }
    if (ndim < 0 || ndim > MR_MAX_DIMS) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "reshape: %d dimensions requested; the maximum is %d",
                    ndim, MR_MAX_DIMS);
        return NULL;
    }

    /* Resolve a single -1 from the element count. */
    int64_t resolved[MR_MAX_DIMS];
    int inferred = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        resolved[i] = shape[i];
        if (shape[i] == -1 && inferred < 0) {
            inferred = i;
        } else if (shape[i] < 0) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "reshape: invalid size %lld in dimension %d",
                        (long long)shape[i], i);
            return NULL;
        } else {
            known *= shape[i];
        }
    }
    int64_t count = mr_tensor_numel(t);
    if (inferred >= 0) {
        resolved[inferred] = known == 0 ? 0 : count / known;
        known *= resolved[inferred];
    }
    if (known != count) {
        char from[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "reshape: cannot reshape %s (%lld elements) into %lld elements",
                    mr_tensor_shape_string(t, from, sizeof from), (long long)count,
                    (long long)known);
        return NULL;
    }

    mr_tensor *source = mr_tensor_contiguous(ctx, t);
    if (source == NULL) {
        return NULL;
    }
    int64_t stride[MR_MAX_DIMS];
    mr_set_contiguous_strides(ndim, resolved, stride);
    return make_view(ctx, source, "reshape", ndim, resolved, stride, 0);
}

mr_tensor *mr_tensor_slice(mr_ctx *ctx, mr_tensor *t, int axis, int64_t start,
                           int64_t length) {
    if (t == NULL) {
        return NULL;
    }
    int a = mr_axis_check(ctx, "slice", t, axis);
    if (a < 0) {
        return NULL;
    }
    if (start < 0 || length < 0 || start + length > t->shape[a]) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "slice: range [%lld, %lld) is outside dimension %d of size %lld",
                    (long long)start, (long long)(start + length), a,
                    (long long)t->shape[a]);
        return NULL;
    }
    int64_t shape[MR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[a] = length;
    return make_view(ctx, t, "slice", t->ndim, shape, t->stride, start * t->stride[a]);
}

mr_tensor *mr_tensor_transpose(mr_ctx *ctx, mr_tensor *t, int axis0,
                               int axis1) {
    if (t == NULL) {
        return NULL;
    }
    int a0 = mr_axis_check(ctx, "transpose", t, axis0);
    int a1 = mr_axis_check(ctx, "transpose", t, axis1);
    if (a0 < 0 || a1 < 0) {
        return NULL;
    }
    int perm[MR_MAX_DIMS] = {0, 1, 2, 3};
    perm[a0] = a1;
    perm[a1] = a0;
    return mr_tensor_permute(ctx, t, perm);
}

mr_tensor *mr_tensor_permute(mr_ctx *ctx, mr_tensor *t, const int *perm) {
    if (t == NULL) {
        return NULL;
    }
    int64_t shape[MR_MAX_DIMS], stride[MR_MAX_DIMS];
    bool used[MR_MAX_DIMS] = {false, false, false, false};
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i];
        if (p < 0 || p >= t->ndim || used[p]) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "permute: entry %d (%d) is not a permutation of 0..%d",
                        i, p, t->ndim - 1);
            return NULL;
        }
        used[p] = true;
        shape[i] = t->shape[p];
        stride[i] = t->stride[p];
    }
    return make_view(ctx, t, "permute", t->ndim, shape, stride, 0);
}
