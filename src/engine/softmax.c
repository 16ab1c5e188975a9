/*
 * Softmax and log-softmax over the last dimension with an optional keep
 * mask and causal masking, with backward.
 *
 * The input is viewed as [rows, S]. Each row subtracts the maximum of its
 * visible entries before exponentiating, so large logits do not overflow.
 * Rows run in parallel, each summed in index order, so results do not
 * depend on the thread count.
 *
 * Backward needs no saved buffers: softmax reads its own output, and
 * log-softmax marks hidden entries with -INFINITY in its output.
 */
#include <math.h>

#include "ctx.h"
#include "fastmath.h"
#include "internal.h"

/* How a row of x maps onto the mask and the causal limit. */
typedef struct softmax_layout {
    int64_t rows, cols;       /* x as [rows, cols] */
    int64_t t_len;            /* T for the causal limit, x's second-to-last dim */
    const float *mask;        /* contiguous mask data, or NULL */
    int64_t mask_stride[MR_MAX_DIMS]; /* per padded 4-D x dimension, 0 if stretched */
    int64_t x_shape[MR_MAX_DIMS];     /* x's shape padded on the left to 4-D */
    bool causal;
} softmax_layout;

/* Offset of row r's first mask entry. Columns step by mask_stride[3]. */
static int64_t mask_row_offset(const softmax_layout *l, int64_t r) {
    int64_t i2 = r % l->x_shape[2];
    int64_t i1 = (r / l->x_shape[2]) % l->x_shape[1];
    int64_t i0 = r / (l->x_shape[2] * l->x_shape[1]);
    return i0 * l->mask_stride[0] + i1 * l->mask_stride[1] + i2 * l->mask_stride[2];
}

/* Number of leading columns of row r that causal masking leaves visible. */
static int64_t causal_limit(const softmax_layout *l, int64_t r) {
    if (!l->causal) {
        return l->cols;
    }
    int64_t i = r % l->t_len;
    int64_t limit = i + l->cols - l->t_len + 1;
    return limit < 0 ? 0 : (limit > l->cols ? l->cols : limit);
}

/*
 * Writes softmax (or log-softmax) of row r into y. Hidden entries get 0
 * (softmax) or -INFINITY (log-softmax); a row with no visible entry is
 * all zeros or all -INFINITY.
 */
static void softmax_row(const softmax_layout *l, int64_t r, const float *x,
                        float *y, bool log_form) {
    int64_t cols = l->cols;
    int64_t limit = causal_limit(l, r);
    const float *m = l->mask != NULL ? l->mask + mask_row_offset(l, r) : NULL;
    int64_t mstep = l->mask_stride[3];
    float hidden = log_form ? -INFINITY : 0.0f;

    float max = -INFINITY;
    bool any = false;
    for (int64_t j = 0; j < limit; j++) {
        if (m != NULL && m[j * mstep] == 0.0f) {
            continue;
        }
        any = true;
        max = x[j] > max ? x[j] : max;
    }
    if (!any) {
        for (int64_t j = 0; j < cols; j++) {
            y[j] = hidden;
        }
        return;
    }

    /* Exponentials and their sum. Softmax keeps the exponentials in y and
     * log-softmax the shifted logits. */
    double sum = 0.0;
    for (int64_t j = 0; j < cols; j++) {
        bool visible = j < limit && (m == NULL || m[j * mstep] != 0.0f);
        float e = visible ? mr_expf(x[j] - max) : 0.0f;
        sum += e;
        if (!log_form) {
            y[j] = e;
        } else {
            y[j] = visible ? x[j] - max : hidden;
        }
    }

    if (log_form) {
        float log_sum = (float)log(sum);
        for (int64_t j = 0; j < limit; j++) {
            y[j] -= log_sum;
        }
    } else {
        float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < cols; j++) {
            y[j] *= inv;
        }
    }
}

/* dx = y * (dy - sum(dy * y)). Hidden entries have y = 0, so they get 0. */
static void softmax_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *x = out->src[0];
    float *dx = mr_tensor_grad_buffer(ctx, x);
    if (dx == NULL) {
        return;
    }
    int64_t cols = out->ndim > 0 ? out->shape[out->ndim - 1] : 1;
    int64_t rows = cols > 0 ? mr_tensor_numel(out) / cols : 0;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *y = out->data + r * cols;
        const float *dy = out->grad + r * cols;
        double dot = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            dot += (double)dy[j] * y[j];
        }
        float dot_f = (float)dot;
        float *d = dx + r * cols;
        for (int64_t j = 0; j < cols; j++) {
            d[j] += y[j] * (dy[j] - dot_f);
        }
    }
}

/*
 * dx = dy - exp(y) * sum(dy) over visible entries. Entries whose output is
 * -INFINITY are hidden: they get no gradient, and their upstream gradient
 * is ignored (PyTorch's masked_fill + log_softmax would add it to sum(dy)).
 * NOTE: a visible entry whose input is -INFINITY also outputs -INFINITY, so
 * it is treated as hidden here and gets no gradient either.
 */
static void log_softmax_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *x = out->src[0];
    float *dx = mr_tensor_grad_buffer(ctx, x);
    if (dx == NULL) {
        return;
    }
    int64_t cols = out->ndim > 0 ? out->shape[out->ndim - 1] : 1;
    int64_t rows = cols > 0 ? mr_tensor_numel(out) / cols : 0;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *y = out->data + r * cols;
        const float *dy = out->grad + r * cols;
        double sum = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            if (y[j] != -INFINITY) {
                sum += dy[j];
            }
        }
        float sum_f = (float)sum;
        float *d = dx + r * cols;
        for (int64_t j = 0; j < cols; j++) {
            if (y[j] != -INFINITY) {
                d[j] += dy[j] - mr_expf(y[j]) * sum_f;
            }
        }
    }
}

static mr_tensor *softmax_op(mr_ctx *ctx, const char *name, mr_tensor *x,
                             mr_tensor *mask, int flags, bool log_form) {
    if (x == NULL || !mr_check_dtype(ctx, name, "x", x, MR_F32)) {
        return NULL;
    }
    char sx[96], sm[96];
    if (x->ndim < 1) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: x must have at least 1 dimension, got a scalar",
                    name);
        return NULL;
    }
    bool causal = (flags & MR_SOFTMAX_CAUSAL) != 0;
    if ((flags & ~MR_SOFTMAX_CAUSAL) != 0) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", name,
                    (unsigned)(flags & ~MR_SOFTMAX_CAUSAL));
        return NULL;
    }
    if (causal && x->ndim < 2) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: causal masking needs x of shape [..., T, S], got %s",
                    name, mr_tensor_shape_string(x, sx, sizeof sx));
        return NULL;
    }
    if (mask != NULL) {
        if (!mr_check_dtype(ctx, name, "mask", mask, MR_F32)) {
            return NULL;
        }
        int ndim;
        int64_t shape[MR_MAX_DIMS];
        if (!mr_broadcast_shape(ctx, name, x, mask, &ndim, shape)) {
            return NULL;
        }
        bool same = ndim == x->ndim;
        for (int d = 0; same && d < ndim; d++) {
            same = shape[d] == x->shape[d];
        }
        if (!same) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: mask %s must broadcast to x %s without growing it",
                        name, mr_tensor_shape_string(mask, sm, sizeof sm),
                        mr_tensor_shape_string(x, sx, sizeof sx));
            return NULL;
        }
    }
    bool has_mask = mask != NULL;
    x = mr_tensor_contiguous(ctx, x);
    mask = has_mask ? mr_tensor_contiguous(ctx, mask) : NULL;
    if (x == NULL || (has_mask && mask == NULL)) {
        return NULL;
    }

    softmax_layout l;
    l.cols = x->shape[x->ndim - 1];
    l.rows = l.cols > 0 ? mr_tensor_numel(x) / l.cols : 0;
    l.t_len = x->ndim >= 2 ? x->shape[x->ndim - 2] : 1;
    l.causal = causal;
    l.mask = mask != NULL ? mask->data : NULL;
    int pad = MR_MAX_DIMS - x->ndim;
    for (int d = 0; d < MR_MAX_DIMS; d++) {
        l.x_shape[d] = d < pad ? 1 : x->shape[d - pad];
        l.mask_stride[d] = 0;
        if (mask != NULL) {
            int md = d - (MR_MAX_DIMS - mask->ndim);
            l.mask_stride[d] = (md >= 0 && mask->shape[md] != 1) ? mask->stride[md] : 0;
        }
    }

    mr_tensor *srcs[1] = {x};
    mr_tensor *out = mr_op_output(ctx, name, x->ndim, x->shape, srcs, 1,
                                  log_form ? log_softmax_backward : softmax_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = flags;

#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < l.rows; r++) {
        softmax_row(&l, r, x->data + r * l.cols, out->data + r * l.cols, log_form);
    }
    return out;
}

mr_tensor *mr_tensor_softmax(mr_ctx *ctx, mr_tensor *x, mr_tensor *mask,
                             int flags) {
    return softmax_op(ctx, "softmax", x, mask, flags, false);
}

mr_tensor *mr_tensor_log_softmax(mr_ctx *ctx, mr_tensor *x, mr_tensor *mask,
                                 int flags) {
    return softmax_op(ctx, "log_softmax", x, mask, flags, true);
}
