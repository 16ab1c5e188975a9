/*
 * Layer norm and RMS norm over the last dimension, with backward.
 *
 * The input is viewed as [rows, C]. Forward statistics are summed in double
 * in index order, one row per loop iteration, so results do not depend on
 * the thread count. The forward pass saves each row's mean (layer norm
 * only) and reciprocal standard deviation; backward recomputes the
 * normalised row from x with them. Weight and bias gradients are summed
 * over rows in row order, one column per loop iteration.
 */
#include <math.h>
#include <stdlib.h>

#include <omp.h>

#include "ctx.h"
#include "internal.h"

/* Statistics saved for backward: mean (NULL for RMS norm) and rstd per row. */
typedef struct norm_saved {
    float *mean;
    float *rstd;
    int64_t rows, cols;
} norm_saved;

/*
 * Checks x, weight and bias (either may be NULL) for a norm over the last
 * dimension and makes them contiguous in place. Returns false (error stored
 * unless an input was NULL) when they do not fit.
 */
static bool norm_check_inputs(mr_ctx *ctx, const char *op, mr_tensor **x,
                              mr_tensor **weight, mr_tensor **bias, float eps) {
    if (*x == NULL || !mr_check_dtype(ctx, op, "x", *x, MR_F32)) {
        return false;
    }
    char sx[96], sp[96];
    if ((*x)->ndim < 1) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: x must have at least 1 dimension, got a scalar", op);
        return false;
    }
    if (!(eps >= 0.0f) || !isfinite(eps)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0, got %g", op,
                    (double)eps);
        return false;
    }
    int64_t cols = (*x)->shape[(*x)->ndim - 1];
    mr_tensor **params[2] = {weight, bias};
    const char *names[2] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        mr_tensor *p = params[i] != NULL ? *params[i] : NULL;
        if (p == NULL) {
            continue;
        }
        if (!mr_check_dtype(ctx, op, names[i], p, MR_F32)) {
            return false;
        }
        if (p->ndim != 1 || p->shape[0] != cols) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: %s must have shape [%lld] to match x %s, got %s",
                        op, names[i], (long long)cols,
                        mr_tensor_shape_string(*x, sx, sizeof sx),
                        mr_tensor_shape_string(p, sp, sizeof sp));
            return false;
        }
        *params[i] = mr_tensor_contiguous(ctx, p);
        if (*params[i] == NULL) {
            return false;
        }
    }
    *x = mr_tensor_contiguous(ctx, *x);
    return *x != NULL;
}

/* Allocates the saved statistics, with the mean only when with_mean is set. */
static norm_saved *norm_saved_alloc(mr_ctx *ctx, int64_t rows, int64_t cols,
                                    bool with_mean) {
    norm_saved *s = mr_ctx_alloc(ctx, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->rows = rows;
    s->cols = cols;
    s->mean = NULL;
    s->rstd = mr_ctx_alloc(ctx, (size_t)(rows > 0 ? rows : 1) * sizeof(float));
    if (s->rstd == NULL) {
        return NULL;
    }
    if (with_mean) {
        s->mean = mr_ctx_alloc(ctx, (size_t)(rows > 0 ? rows : 1) * sizeof(float));
        if (s->mean == NULL) {
            return NULL;
        }
    }
    return s;
}

/*
 * Accumulates the weight and bias gradients shared by both norms:
 * dw[c] += sum_r dy[r][c] * xhat[r][c] and db[c] += sum_r dy[r][c], where
 * xhat = (x - mean) * rstd (mean is 0 when s->mean is NULL). dw or db may
 * be NULL.
 */
static void norm_param_backward(const norm_saved *s, const float *x,
                                const float *dy, float *dw, float *db) {
    int64_t rows = s->rows, cols = s->cols;

    /* Each thread owns a range of columns and walks the rows in order, so
     * reads stay sequential and every sum has the same order on any
     * thread count. */
#pragma omp parallel
    {
        int threads = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t begin = cols * id / threads, end = cols * (id + 1) / threads;
        int64_t width = end - begin;
        double *sum_w = calloc((size_t)(2 * width + 1), sizeof *sum_w);
        double *sum_b = sum_w + width;
        if (sum_w != NULL) {
            for (int64_t r = 0; r < rows; r++) {
                float mean = s->mean != NULL ? s->mean[r] : 0.0f;
                float rstd = s->rstd[r];
                const float *xr = x + r * cols;
                const float *gr = dy + r * cols;
                for (int64_t c = begin; c < end; c++) {
                    float xhat = (xr[c] - mean) * rstd;
                    sum_w[c - begin] += (double)gr[c] * xhat;
                    sum_b[c - begin] += gr[c];
                }
            }
            for (int64_t c = begin; c < end; c++) {
                if (dw != NULL) {
                    dw[c] += (float)sum_w[c - begin];
                }
                if (db != NULL) {
                    db[c] += (float)sum_b[c - begin];
                }
            }
            free(sum_w);
        } else {
            /* Without scratch memory, add each row straight into the
             * float gradients: the same order, less precision. */
            for (int64_t r = 0; r < rows; r++) {
                float mean = s->mean != NULL ? s->mean[r] : 0.0f;
                for (int64_t c = begin; c < end; c++) {
                    float g = dy[r * cols + c];
                    if (dw != NULL) {
                        dw[c] += g * (x[r * cols + c] - mean) * s->rstd[r];
                    }
                    if (db != NULL) {
                        db[c] += g;
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------
 * Layer norm: y = (x - mean) / sqrt(var + eps) * weight + bias, with the
 * biased variance as in PyTorch.
 * ------------------------------------------------------------------------ */

/*
 * With g = dy * weight and xhat the normalised row:
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
 */
static void layer_norm_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *x = out->src[0];
    /* Sources are packed: x, then weight and bias when given. */
    int next_src = 1;
    mr_tensor *weight = NULL, *bias = NULL;
    if (out->iparams[0]) {
        weight = out->src[next_src++];
    }
    if (out->iparams[1]) {
        bias = out->src[next_src];
    }
    const norm_saved *s = out->saved;
    int64_t rows = s->rows, cols = s->cols;
    const float *dy = out->grad;

    float *dw = weight != NULL && mr_tensor_requires_grad(weight)
                    ? mr_tensor_grad_buffer(ctx, weight) : NULL;
    float *db = bias != NULL && mr_tensor_requires_grad(bias)
                    ? mr_tensor_grad_buffer(ctx, bias) : NULL;
    float *dx = mr_tensor_requires_grad(x) ? mr_tensor_grad_buffer(ctx, x) : NULL;
    if (ctx->status != MR_OK) {
        return;
    }

    if (dx != NULL) {
        const float *w = weight != NULL ? weight->data : NULL;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x->data + r * cols;
            const float *gr = dy + r * cols;
            float mean = s->mean[r], rstd = s->rstd[r];
            double sum_g = 0.0, sum_gx = 0.0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
            for (int64_t c = 0; c < cols; c++) {
                float g = w != NULL ? gr[c] * w[c] : gr[c];
                sum_g += g;
                sum_gx += (double)g * ((xr[c] - mean) * rstd);
            }
            float mean_g = (float)(sum_g / (double)cols);
            float mean_gx = (float)(sum_gx / (double)cols);
            float *dxr = dx + r * cols;
            for (int64_t c = 0; c < cols; c++) {
                float g = w != NULL ? gr[c] * w[c] : gr[c];
                float xhat = (xr[c] - mean) * rstd;
                dxr[c] += rstd * (g - mean_g - xhat * mean_gx);
            }
        }
    }

    if (dw != NULL || db != NULL) {
        norm_param_backward(s, x->data, dy, dw, db);
    }
}

mr_tensor *mr_tensor_layer_norm(mr_ctx *ctx, mr_tensor *x, mr_tensor *weight,
                                mr_tensor *bias, float eps) {
    if (!norm_check_inputs(ctx, "layer_norm", &x, &weight, &bias, eps)) {
        return NULL;
    }

    mr_tensor *srcs[3] = {x, NULL, NULL};
    int nsrc = 1;
    if (weight != NULL) {
        srcs[nsrc++] = weight;
    }
    if (bias != NULL) {
        srcs[nsrc++] = bias;
    }
    mr_tensor *out = mr_op_output(ctx, "layer_norm", x->ndim, x->shape, srcs, nsrc,
                                  layer_norm_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = weight != NULL;
    out->iparams[1] = bias != NULL;
    out->fparams[0] = eps;

    int64_t cols = x->shape[x->ndim - 1];
    int64_t rows = cols > 0 ? mr_tensor_numel(x) / cols : 0;
    norm_saved *s = NULL;
    if (mr_op_recording(out)) {
        s = norm_saved_alloc(ctx, rows, cols, true);
        if (s == NULL) {
            return NULL;
        }
        out->saved = s;
    }

    const float *w = weight != NULL ? weight->data : NULL;
    const float *b = bias != NULL ? bias->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * cols;
        /* The reductions may run in vector lanes: sums in double barely
         * depend on their order, and the float results almost never. */
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < cols; c++) {
            sum += xr[c];
        }
        double mean = sum / (double)cols;
        double sum_sq = 0.0;
#pragma omp simd reduction(+ : sum_sq)
        for (int64_t c = 0; c < cols; c++) {
            double d = xr[c] - mean;
            sum_sq += d * d;
        }
        float rstd = (float)(1.0 / sqrt(sum_sq / (double)cols + eps));
        float mean_f = (float)mean;

        float *yr = out->data + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            float y = (xr[c] - mean_f) * rstd;
            if (w != NULL) {
                y *= w[c];
            }
            if (b != NULL) {
                y += b[c];
            }
            yr[c] = y;
        }
        if (s != NULL) {
            s->mean[r] = mean_f;
            s->rstd[r] = rstd;
        }
    }
    return out;
}

/* ------------------------------------------------------------------------
 * RMS norm: y = x / sqrt(mean(x^2) + eps) * weight.
 * ------------------------------------------------------------------------ */

/* With g = dy * weight and xhat = x * rstd:
 * dx = rstd * (g - xhat * mean(g * xhat)). */
static void rms_norm_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *x = out->src[0];
    mr_tensor *weight = out->iparams[0] ? out->src[1] : NULL;
    const norm_saved *s = out->saved;
    int64_t rows = s->rows, cols = s->cols;
    const float *dy = out->grad;

    float *dw = weight != NULL && mr_tensor_requires_grad(weight)
                    ? mr_tensor_grad_buffer(ctx, weight) : NULL;
    float *dx = mr_tensor_requires_grad(x) ? mr_tensor_grad_buffer(ctx, x) : NULL;
    if (ctx->status != MR_OK) {
        return;
    }

    if (dx != NULL) {
        const float *w = weight != NULL ? weight->data : NULL;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x->data + r * cols;
            const float *gr = dy + r * cols;
            float rstd = s->rstd[r];
            double sum_gx = 0.0;
            for (int64_t c = 0; c < cols; c++) {
                float g = w != NULL ? gr[c] * w[c] : gr[c];
                sum_gx += (double)g * (xr[c] * rstd);
            }
            float mean_gx = (float)(sum_gx / (double)cols);
            float *dxr = dx + r * cols;
            for (int64_t c = 0; c < cols; c++) {
                float g = w != NULL ? gr[c] * w[c] : gr[c];
                dxr[c] += rstd * (g - xr[c] * rstd * mean_gx);
            }
        }
    }

    if (dw != NULL) {
        norm_param_backward(s, x->data, dy, dw, NULL);
    }
}

mr_tensor *mr_tensor_rms_norm(mr_ctx *ctx, mr_tensor *x, mr_tensor *weight,
                              float eps) {
    if (!norm_check_inputs(ctx, "rms_norm", &x, &weight, NULL, eps)) {
        return NULL;
    }

    mr_tensor *srcs[2] = {x, weight};
    int nsrc = weight != NULL ? 2 : 1;
    mr_tensor *out = mr_op_output(ctx, "rms_norm", x->ndim, x->shape, srcs, nsrc,
                                  rms_norm_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = weight != NULL;
    out->fparams[0] = eps;

    int64_t cols = x->shape[x->ndim - 1];
    int64_t rows = cols > 0 ? mr_tensor_numel(x) / cols : 0;
    norm_saved *s = NULL;
    if (mr_op_recording(out)) {
        s = norm_saved_alloc(ctx, rows, cols, false);
        if (s == NULL) {
            return NULL;
        }
        out->saved = s;
    }

    const float *w = weight != NULL ? weight->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * cols;
        double sum_sq = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            sum_sq += (double)xr[c] * xr[c];
        }
        float rstd = (float)(1.0 / sqrt(sum_sq / (double)cols + eps));

        float *yr = out->data + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            yr[c] = w != NULL ? xr[c] * rstd * w[c] : xr[c] * rstd;
        }
        if (s != NULL) {
            s->rstd[r] = rstd;
        }
    }
    return out;
}
