/*
 * Sum and mean over one axis or over all elements, with backward.
 *
 * The input is viewed as [outer, n, inner] where n is the reduced axis.
 * Each output element sums its n inputs in index order, so the result does
 * not depend on the thread count.
 */
#include "ctx.h"
#include "internal.h"

static void reduce_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *a = out->src[0];
    float *da = mr_tensor_grad_buffer(ctx, a);
    if (da == NULL) {
        return;
    }
    int axis = out->iparams[1];
    float factor = out->fparams[0];
    int64_t n, inner, outer_count;
    if (axis == MR_AXIS_ALL) {
        outer_count = 1;
        n = mr_tensor_numel(a);
        inner = 1;
    } else {
        outer_count = mr_shape_product(a->shape, 0, axis);
        n = a->shape[axis];
        inner = mr_shape_product(a->shape, axis + 1, a->ndim);
    }
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer_count; o++) {
        for (int64_t j = 0; j < n; j++) {
            float *d = da + (o * n + j) * inner;
            const float *g = out->grad + o * inner;
            for (int64_t i = 0; i < inner; i++) {
                d[i] += factor * g[i];
            }
        }
    }
}

/* Sums over axis (or all) and multiplies by 1/n for a mean. */
static mr_tensor *reduce(mr_ctx *ctx, const char *name, mr_tensor *a, int axis,
                         bool keepdim, bool mean) {
    if (a == NULL || !mr_check_dtype(ctx, name, "a", a, MR_F32)) {
        return NULL;
    }
    int64_t shape[MR_MAX_DIMS];
    int ndim = 0;
    int64_t outer, n, inner;
    if (axis == MR_AXIS_ALL) {
        outer = 1;
        n = mr_tensor_numel(a);
        inner = 1;
        if (keepdim) {
            ndim = a->ndim;
            for (int d = 0; d < ndim; d++) {
                shape[d] = 1;
            }
        }
    } else {
        axis = mr_axis_check(ctx, name, a, axis);
        if (axis < 0) {
            return NULL;
        }
        outer = mr_shape_product(a->shape, 0, axis);
        n = a->shape[axis];
        inner = mr_shape_product(a->shape, axis + 1, a->ndim);
        for (int d = 0; d < a->ndim; d++) {
            if (d != axis) {
                shape[ndim++] = a->shape[d];
            } else if (keepdim) {
                shape[ndim++] = 1;
            }
        }
    }
    a = mr_tensor_contiguous(ctx, a);
    if (a == NULL) {
        return NULL;
    }

    mr_tensor *srcs[1] = {a};
    mr_tensor *out = mr_op_output(ctx, name, ndim, shape, srcs, 1, reduce_backward);
    if (out == NULL) {
        return NULL;
    }
    float factor = mean ? (n > 0 ? 1.0f / (float)n : 0.0f) : 1.0f;
    out->iparams[1] = axis;
    out->fparams[0] = factor;

#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            double sum = 0.0;
            for (int64_t j = 0; j < n; j++) {
                sum += a->data[(o * n + j) * inner + i];
            }
            out->data[o * inner + i] = (float)(sum * factor);
        }
    }
    return out;
}

mr_tensor *mr_tensor_sum(mr_ctx *ctx, mr_tensor *a, int axis, bool keepdim) {
    return reduce(ctx, "sum", a, axis, keepdim, false);
}

mr_tensor *mr_tensor_mean(mr_ctx *ctx, mr_tensor *a, int axis, bool keepdim) {
    return reduce(ctx, "mean", a, axis, keepdim, true);
}

void mr_add_column_sums(const float *m, int64_t rows, int64_t cols, float *out) {
    enum { BLOCK = 32 };
#pragma omp parallel for schedule(static)
    for (int64_t first = 0; first < cols; first += BLOCK) {
        int64_t width = cols - first < BLOCK ? cols - first : BLOCK;
        double sum[BLOCK] = {0};
        for (int64_t row = 0; row < rows; row++) {
            const float *values = m + row * cols + first;
#pragma omp simd
            for (int64_t j = 0; j < width; j++) {
                sum[j] += values[j];
            }
        }
        for (int64_t j = 0; j < width; j++) {
            out[first + j] += (float)sum[j];
        }
    }
}
