/*
 * Rotary position embedding (RoPE), forward and backward.
 *
 * x is viewed as [rows, D] where row r sits at time step r % T. Pair i of
 * a row, made of elements (a, b), rotates by angle pos * theta^(-2i/D):
 *   a' = a cos - b sin,  b' = a sin + b cos.
 * The ADJACENT layout pairs elements (2i, 2i+1); the HALVES layout pairs
 * (i, i + D/2). Angles, cosines and sines are computed in double from the
 * integer positions and stored as a [T, D/2] table. The backward pass
 * rotates the gradient by the opposite angle, which inverts the rotation.
 */
#include <math.h>

#include "ctx.h"
#include "internal.h"

typedef struct rope_saved {
    float *cos_table; /* [T, D/2] */
    float *sin_table; /* [T, D/2] */
} rope_saved;

/*
 * Rotates every row of src [rows, dim] into dst by the table angles, or by
 * their negatives when inverse is set. With accumulate, dst += result.
 */
static void rope_apply(const float *src, float *dst, int64_t rows, int64_t t_len,
                       int64_t dim, const float *cos_table, const float *sin_table,
                       int layout, bool inverse, bool accumulate) {
    int64_t half = dim / 2;
    float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = r % t_len;
        const float *c = cos_table + t * half;
        const float *s = sin_table + t * half;
        const float *x = src + r * dim;
        float *y = dst + r * dim;
        for (int64_t i = 0; i < half; i++) {
            int64_t ia = layout == MR_ROPE_ADJACENT ? 2 * i : i;
            int64_t ib = layout == MR_ROPE_ADJACENT ? 2 * i + 1 : i + half;
            float sin_i = sign * s[i];
            float a = x[ia] * c[i] - x[ib] * sin_i;
            float b = x[ia] * sin_i + x[ib] * c[i];
            if (accumulate) {
                y[ia] += a;
                y[ib] += b;
            } else {
                y[ia] = a;
                y[ib] = b;
            }
        }
    }
}

static void rope_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *x = out->src[0];
    float *dx = mr_tensor_grad_buffer(ctx, x);
    if (dx == NULL) {
        return;
    }
    const rope_saved *s = out->saved;
    int64_t dim = out->shape[out->ndim - 1];
    int64_t t_len = out->shape[out->ndim - 2];
    int64_t rows = dim > 0 ? mr_tensor_numel(out) / dim : 0;
    rope_apply(out->grad, dx, rows, t_len, dim, s->cos_table, s->sin_table, out->iparams[0],
               true, true);
}

mr_tensor *mr_tensor_rope(mr_ctx *ctx, mr_tensor *x, mr_tensor *positions,
                          float theta, mr_rope_layout layout) {
    if (x == NULL || !mr_check_dtype(ctx, "rope", "x", x, MR_F32)) {
        return NULL;
    }
    char sx[96], sp[96];
    mr_tensor_shape_string(x, sx, sizeof sx);
    if (x->ndim < 2 || x->shape[x->ndim - 1] % 2 != 0) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rope: x must be [..., T, D] with D even, got %s", sx);
        return NULL;
    }
    int64_t t_len = x->shape[x->ndim - 2];
    int64_t dim = x->shape[x->ndim - 1];
    if (positions != NULL) {
        if (!mr_check_dtype(ctx, "rope", "positions", positions, MR_I32)) {
            return NULL;
        }
        if (positions->ndim != 1 || positions->shape[0] != t_len) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "rope: positions must be [T] = [%lld] for x %s, got %s",
                        (long long)t_len, sx, mr_tensor_shape_string(positions, sp, sizeof sp));
            return NULL;
        }
    }
    if (!(theta > 0.0f) || !isfinite(theta)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "rope: theta must be finite and > 0, got %g",
                    (double)theta);
        return NULL;
    }
    if (layout != MR_ROPE_ADJACENT && layout != MR_ROPE_HALVES) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "rope: unknown layout %d", (int)layout);
        return NULL;
    }
    x = mr_tensor_contiguous(ctx, x);
    if (x == NULL) {
        return NULL;
    }

    /* The cosine and sine tables [T, D/2], which backward reuses when recorded. */
    int64_t half = dim / 2;
    size_t table_bytes = (size_t)(t_len * half > 0 ? t_len * half : 1) * sizeof(float);
    float *cos_table = mr_ctx_alloc(ctx, table_bytes);
    float *sin_table = mr_ctx_alloc(ctx, table_bytes);
    if (cos_table == NULL || sin_table == NULL) {
        return NULL;
    }
    for (int64_t t = 0; t < t_len; t++) {
        double pos = positions != NULL ? (double)positions->idata[t * positions->stride[0]]
                                       : (double)t;
        for (int64_t i = 0; i < half; i++) {
            double angle = pos * pow((double)theta, -2.0 * (double)i / (double)dim);
            cos_table[t * half + i] = (float)cos(angle);
            sin_table[t * half + i] = (float)sin(angle);
        }
    }

    mr_tensor *srcs[1] = {x};
    mr_tensor *out = mr_op_output(ctx, "rope", x->ndim, x->shape, srcs, 1, rope_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = (int32_t)layout;
    out->fparams[0] = theta;
    if (mr_op_recording(out)) {
        rope_saved *s = mr_ctx_alloc(ctx, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        s->cos_table = cos_table;
        s->sin_table = sin_table;
        out->saved = s;
    }

    int64_t rows = dim > 0 ? mr_tensor_numel(x) / dim : 0;
    rope_apply(x->data, out->data, rows, t_len, dim, cos_table, sin_table, (int)layout, false,
               false);
    return out;
}
