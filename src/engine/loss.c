/*
 * Loss functions with backward: cross-entropy over class logits and binary
 * cross-entropy with logits.
 *
 * Per-element losses are computed in parallel into a buffer and reduced
 * serially in index order in double precision, so MEAN and SUM do not
 * depend on the thread count.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ctx.h"
#include "fastmath.h"
#include "internal.h"

/* Writes the row-major index of flat position `index` within shape, as
 * "[i, j]", into buf. */
static void format_index(const int64_t *shape, int ndim, int64_t index, char *buf,
                         size_t size) {
    int64_t coords[MR_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        coords[d] = shape[d] > 0 ? index % shape[d] : 0;
        index = shape[d] > 0 ? index / shape[d] : 0;
    }
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++) {
        used += (size_t)snprintf(buf + used, size - used, d == 0 ? "%lld" : ", %lld",
                                 (long long)coords[d]);
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
}

/* Sums n values in index order in double precision. */
static double serial_sum(const float *values, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += values[i];
    }
    return sum;
}

/* Stores the SUM or MEAN of n per-element losses in out (a scalar); MEAN
 * divides by `counted` and gives 0 when nothing was counted. NONE leaves
 * out alone, since the losses are already its data. */
static void reduce_losses(mr_tensor *out, const float *losses, int64_t n,
                          int64_t counted, mr_reduction reduction) {
    if (reduction == MR_REDUCE_SUM) {
        out->data[0] = (float)serial_sum(losses, n);
    } else if (reduction == MR_REDUCE_MEAN) {
        out->data[0] = counted > 0 ? (float)(serial_sum(losses, n) / (double)counted) : 0.0f;
    }
}

/* ------------------------------------------------------------------------
 * Cross-entropy
 * ------------------------------------------------------------------------ */

typedef struct cross_entropy_saved {
    float *log_sum_exp; /* per row: log(sum_v exp(logits[v])) */
    int64_t rows, classes;
    int64_t counted;    /* rows whose target is not ignore_index */
    int32_t ignore_index;
    mr_reduction reduction;
} cross_entropy_saved;

/* d loss_i / d logits[i, v] = g_i * (softmax(logits_i)[v] - [v == target_i]),
 * where g_i is the incoming gradient of row i's loss. */
static void cross_entropy_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *logits = out->src[0], *targets = out->src[1];
    const cross_entropy_saved *s = out->saved;
    float *dlogits = mr_tensor_grad_buffer(ctx, logits);
    if (dlogits == NULL) {
        return;
    }
    int64_t classes = s->classes;
    float shared = 0.0f;
    if (s->reduction == MR_REDUCE_SUM) {
        shared = out->grad[0];
    } else if (s->reduction == MR_REDUCE_MEAN) {
        shared = s->counted > 0 ? out->grad[0] / (float)s->counted : 0.0f;
    }

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < s->rows; i++) {
        int32_t target = targets->idata[i];
        if (target == s->ignore_index) {
            continue;
        }
        float g = s->reduction == MR_REDUCE_NONE ? out->grad[i] : shared;
        const float *x = logits->data + i * classes;
        float *dx = dlogits + i * classes;
        float lse = s->log_sum_exp[i];
#pragma omp simd
        for (int64_t v = 0; v < classes; v++) {
            dx[v] += g * mr_expf(x[v] - lse);
        }
        dx[target] -= g;
    }
}

mr_tensor *mr_tensor_cross_entropy(mr_ctx *ctx, mr_tensor *logits,
                                   mr_tensor *targets, int32_t ignore_index,
                                   mr_reduction reduction) {
    const char *op = "cross_entropy";
    if (mr_any_null(2, logits, targets)) {
        return NULL;
    }
    if (!mr_check_dtype(ctx, op, "logits", logits, MR_F32) ||
        !mr_check_dtype(ctx, op, "targets", targets, MR_I32)) {
        return NULL;
    }
    char sl[96], st[96];
    bool shape_ok = logits->ndim >= 1 && targets->ndim == logits->ndim - 1;
    for (int d = 0; shape_ok && d < targets->ndim; d++) {
        shape_ok = targets->shape[d] == logits->shape[d];
    }
    if (!shape_ok) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "%s: targets of shape %s do not match logits of shape %s; targets need "
                    "the logits' shape without the last (class) dimension",
                    op, mr_tensor_shape_string(targets, st, sizeof st),
                    mr_tensor_shape_string(logits, sl, sizeof sl));
        return NULL;
    }
    if (reduction != MR_REDUCE_MEAN && reduction != MR_REDUCE_SUM &&
        reduction != MR_REDUCE_NONE) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "%s: invalid reduction %d", op,
                    (int)reduction);
        return NULL;
    }
    logits = mr_tensor_contiguous(ctx, logits);
    targets = mr_tensor_contiguous(ctx, targets);
    if (mr_any_null(2, logits, targets)) {
        return NULL;
    }

    /* Check every target before any work, and count the non-ignored ones. */
    int64_t classes = logits->shape[logits->ndim - 1];
    int64_t rows = mr_tensor_numel(targets);
    int64_t counted = 0;
    for (int64_t i = 0; i < rows; i++) {
        int32_t target = targets->idata[i];
        if (target == ignore_index) {
            continue;
        }
        if (target < 0 || target >= classes) {
            char position[96];
            format_index(targets->shape, targets->ndim, i, position, sizeof position);
            mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                        "%s: target %d at position %s is outside [0, %lld) and is not "
                        "ignore_index (%d)",
                        op, (int)target, position, (long long)classes, (int)ignore_index);
            return NULL;
        }
        counted++;
    }

    mr_tensor *srcs[2] = {logits, targets};
    mr_tensor *out = reduction == MR_REDUCE_NONE
        ? mr_op_output(ctx, op, targets->ndim, targets->shape, srcs, 2,
                       cross_entropy_backward)
        : mr_op_output(ctx, op, 0, NULL, srcs, 2, cross_entropy_backward);
    if (out == NULL) {
        return NULL;
    }
    float *losses = out->data;
    if (reduction != MR_REDUCE_NONE) {
        losses = mr_ctx_alloc(ctx, (size_t)(rows > 0 ? rows : 1) * sizeof(float));
    }
    float *lse_all = mr_ctx_alloc(ctx, (size_t)(rows > 0 ? rows : 1) * sizeof(float));
    if (losses == NULL || lse_all == NULL) {
        return NULL;
    }

    /* Stable log-sum-exp: subtract the row maximum before exponentiating. */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *x = logits->data + i * classes;
        float max = -INFINITY;
#pragma omp simd reduction(max : max)
        for (int64_t v = 0; v < classes; v++) {
            max = x[v] > max ? x[v] : max;
        }
        /* The vector lanes sum in an order fixed at compile time, so the
         * result does not depend on the thread count. */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t v = 0; v < classes; v++) {
            sum += mr_expf(x[v] - max);
        }
        float lse = (float)((double)max + log((double)sum));
        lse_all[i] = lse;
        int32_t target = targets->idata[i];
        losses[i] = target == ignore_index ? 0.0f : lse - x[target];
    }

    reduce_losses(out, losses, rows, counted, reduction);

    if (mr_op_recording(out)) {
        cross_entropy_saved *s = mr_ctx_alloc(ctx, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        s->log_sum_exp = lse_all;
        s->rows = rows;
        s->classes = classes;
        s->counted = counted;
        s->ignore_index = ignore_index;
        s->reduction = reduction;
        out->saved = s;
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Binary cross-entropy with logits
 * ------------------------------------------------------------------------ */

typedef struct bce_saved {
    mr_tensor *logits, *targets, *weight; /* weight may be NULL */
    mr_reduction reduction;
} bce_saved;

/* Element offset into a weight broadcast to x's shape, for x's row-major
 * element i. */
static int64_t broadcast_offset(const mr_tensor *weight, const mr_tensor *x, int64_t i) {
    int64_t offset = 0;
    for (int d = x->ndim - 1; d >= 0; d--) {
        int64_t coord = i % x->shape[d];
        i /= x->shape[d];
        int wd = d - (x->ndim - weight->ndim);
        if (wd >= 0 && weight->shape[wd] != 1) {
            offset += coord * weight->stride[wd];
        }
    }
    return offset;
}

/* Returns max(x, 0) - x*y + log(1 + exp(-|x|)), which equals
 * -(y log s(x) + (1-y) log(1-s(x))) but cannot overflow for large |x|. */
static float bce_element(float x, float y) {
    return fmaxf(x, 0.0f) - x * y + log1pf(mr_expf(-fabsf(x)));
}

static float stable_sigmoid(float x) {
    if (x >= 0.0f) {
        return 1.0f / (1.0f + mr_expf(-x));
    }
    float e = mr_expf(x);
    return e / (1.0f + e);
}

/* d loss / d x = w * (s(x) - y); d loss / d w = the unweighted loss. The
 * targets get no gradient. */
static void bce_backward(mr_ctx *ctx, mr_tensor *out) {
    const bce_saved *s = out->saved;
    mr_tensor *x = s->logits, *y = s->targets, *w = s->weight;
    int64_t count = mr_tensor_numel(x);
    float shared = 0.0f;
    if (s->reduction == MR_REDUCE_SUM) {
        shared = out->grad[0];
    } else if (s->reduction == MR_REDUCE_MEAN) {
        shared = count > 0 ? out->grad[0] / (float)count : 0.0f;
    }

    if (mr_tensor_requires_grad(x)) {
        float *dx = mr_tensor_grad_buffer(ctx, x);
        if (dx == NULL) {
            return;
        }
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < count; i++) {
            float g = s->reduction == MR_REDUCE_NONE ? out->grad[i] : shared;
            float weight = w != NULL ? w->data[broadcast_offset(w, x, i)] : 1.0f;
            dx[i] += g * weight * (stable_sigmoid(x->data[i]) - y->data[i]);
        }
    }

    /* A broadcast weight sums over its stretched dimensions: serially, so
     * the order is fixed. */
    if (w != NULL && mr_tensor_requires_grad(w)) {
        float *dw = mr_tensor_grad_buffer(ctx, w);
        if (dw == NULL) {
            return;
        }
        for (int64_t i = 0; i < count; i++) {
            float g = s->reduction == MR_REDUCE_NONE ? out->grad[i] : shared;
            dw[broadcast_offset(w, x, i)] += g * bce_element(x->data[i], y->data[i]);
        }
    }
}

mr_tensor *mr_tensor_bce_with_logits(mr_ctx *ctx, mr_tensor *logits,
                                     mr_tensor *targets, mr_tensor *weight,
                                     mr_reduction reduction) {
    const char *op = "bce_with_logits";
    if (mr_any_null(2, logits, targets)) {
        return NULL;
    }
    if (!mr_check_dtype(ctx, op, "logits", logits, MR_F32) ||
        !mr_check_dtype(ctx, op, "targets", targets, MR_F32) ||
        (weight != NULL && !mr_check_dtype(ctx, op, "weight", weight, MR_F32))) {
        return NULL;
    }
    char sl[96], so[96];
    if (!mr_tensor_same_shape(logits, targets)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: targets of shape %s differ from logits of shape %s",
                    op, mr_tensor_shape_string(targets, so, sizeof so),
                    mr_tensor_shape_string(logits, sl, sizeof sl));
        return NULL;
    }
    if (weight != NULL) {
        int ndim;
        int64_t shape[MR_MAX_DIMS];
        if (!mr_broadcast_shape(ctx, op, logits, weight, &ndim, shape)) {
            return NULL;
        }
        bool fits = ndim == logits->ndim;
        for (int d = 0; fits && d < ndim; d++) {
            fits = shape[d] == logits->shape[d];
        }
        if (!fits) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE,
                        "%s: weight of shape %s does not broadcast to logits of shape %s "
                        "without enlarging them",
                        op, mr_tensor_shape_string(weight, so, sizeof so),
                        mr_tensor_shape_string(logits, sl, sizeof sl));
            return NULL;
        }
    }
    if (reduction != MR_REDUCE_MEAN && reduction != MR_REDUCE_SUM &&
        reduction != MR_REDUCE_NONE) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "%s: invalid reduction %d", op,
                    (int)reduction);
        return NULL;
    }
    logits = mr_tensor_contiguous(ctx, logits);
    targets = mr_tensor_contiguous(ctx, targets);
    if (mr_any_null(2, logits, targets)) {
        return NULL;
    }
    if (weight != NULL) {
        weight = mr_tensor_contiguous(ctx, weight);
        if (weight == NULL) {
            return NULL;
        }
    }

    /* NOTE: targets are constants here, so no gradient reaches them even
     * when they require one. torch 1.13 sends them -w * x * g. */
    mr_tensor *srcs[2] = {logits, weight};
    int nsrc = weight != NULL ? 2 : 1;
    mr_tensor *out = reduction == MR_REDUCE_NONE
        ? mr_op_output(ctx, op, logits->ndim, logits->shape, srcs, nsrc, bce_backward)
        : mr_op_output(ctx, op, 0, NULL, srcs, nsrc, bce_backward);
    if (out == NULL) {
        return NULL;
    }
    int64_t count = mr_tensor_numel(logits);
    float *losses = out->data;
    if (reduction != MR_REDUCE_NONE) {
        losses = mr_ctx_alloc(ctx, (size_t)(count > 0 ? count : 1) * sizeof(float));
        if (losses == NULL) {
            return NULL;
        }
    }

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        float w = weight != NULL ? weight->data[broadcast_offset(weight, logits, i)] : 1.0f;
        losses[i] = w * bce_element(logits->data[i], targets->data[i]);
    }

    reduce_losses(out, losses, count, count, reduction);

    if (mr_op_recording(out)) {
        bce_saved *s = mr_ctx_alloc(ctx, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        s->logits = logits;
        s->targets = targets;
        s->weight = weight;
        s->reduction = reduction;
        out->saved = s;
    }
    return out;
}
