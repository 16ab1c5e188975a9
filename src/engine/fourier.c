/*
 * Real discrete Fourier transform along one axis and its inverse, with
 * orthonormal scaling (numpy's and torch.fft's norm="ortho"), forward and
 * backward.
 *
 * Both transforms are linear maps along the axis, so each builds its
 * transform matrix once per call (twiddles computed in double precision,
 * stored as float) and applies it with matrix products: the direct O(n^2)
 * sums, run through BLAS. Backward applies the transposed matrix, which is
 * the adjoint of the map.
 *
 * Layout along the axis: a length-n signal becomes 2F entries with
 * F = n/2 + 1, the real parts of frequencies 0..F-1 followed by their
 * imaginary parts.
 */
#include <math.h>

#include "blas.h"
#include "ctx.h"
#include "internal.h"

/* An axis_linear application: out[o, i, p] = sum_j matrix[i, j] x[o, j, p]. */
typedef struct axis_linear_saved {
    const float *matrix; /* [rows, cols] */
    int64_t rows, cols, outer, inner;
} axis_linear_saved;

/* The angle 2*pi*f*t/n, with f*t reduced modulo n first so that large
 * products lose no precision. */
static double twiddle_angle(int64_t f, int64_t t, int64_t n) {
    return 2.0 * M_PI * (double)((f * t) % n) / (double)n;
}

/* Matrix [2F, n] of the orthonormal real DFT: row f contains the cos
 * terms of frequency f, and row F + f the negated sin terms. */
static float *rdft_matrix(mr_ctx *ctx, int64_t n) {
    int64_t freqs = n / 2 + 1;
    float *m = mr_ctx_alloc(ctx, (size_t)(2 * freqs * n) * sizeof(float));
    if (m == NULL) {
        return NULL;
    }
    double scale = 1.0 / sqrt((double)n);
    for (int64_t f = 0; f < freqs; f++) {
        for (int64_t t = 0; t < n; t++) {
            double angle = twiddle_angle(f, t, n);
            m[f * n + t] = (float)(scale * cos(angle));
            m[(freqs + f) * n + t] = (float)(-scale * sin(angle));
        }
    }
    return m;
}

/*
 * Matrix [n, 2F] of the orthonormal inverse. Frequencies 1..F-1 stand for
 * themselves and their mirror images n - f, so they count twice, except
 * f = n/2 for even n, which is its own mirror. The imaginary parts of
 * frequency 0 and of n/2 (even n) get zero columns: they are ignored, as
 * in numpy.fft.irfft.
 */
static float *irdft_matrix(mr_ctx *ctx, int64_t n) {
    int64_t freqs = n / 2 + 1;
    float *m = mr_ctx_alloc(ctx, (size_t)(2 * freqs * n) * sizeof(float));
    if (m == NULL) {
        return NULL;
    }
    double scale = 1.0 / sqrt((double)n);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t f = 0; f < freqs; f++) {
            bool self_mirrored = f == 0 || (n % 2 == 0 && f == n / 2);
            double weight = self_mirrored ? scale : 2.0 * scale;
            double angle = twiddle_angle(f, t, n);
            m[t * 2 * freqs + f] = (float)(weight * cos(angle));
            m[t * 2 * freqs + freqs + f] = self_mirrored ? 0.0f : (float)(-weight * sin(angle));
        }
    }
    return m;
}

/* One application's operands for the per-block products along an inner
 * axis: `from` is read and `to` written, block o at a time. */
typedef struct axis_linear_block {
    const axis_linear_saved *s;
    const float *from;
    float *to;
} axis_linear_block;

/* out[o] = matrix @ x[o] for block o, both [*, inner]. */
static void axis_linear_forward_block(int64_t o, void *arg) {
    const axis_linear_block *b = arg;
    const axis_linear_saved *s = b->s;
    mr_sgemm(false, false, s->rows, s->inner, s->cols, 1.0f, s->matrix, s->cols,
             b->from + o * s->cols * s->inner, s->inner, 0.0f, b->to + o * s->rows * s->inner,
             s->inner);
}

/* dx[o] += matrix^T @ dy[o] for block o. */
static void axis_linear_backward_block(int64_t o, void *arg) {
    const axis_linear_block *b = arg;
    const axis_linear_saved *s = b->s;
    mr_sgemm(true, false, s->cols, s->inner, s->rows, 1.0f, s->matrix, s->cols,
             b->from + o * s->rows * s->inner, s->inner, 1.0f, b->to + o * s->cols * s->inner,
             s->inner);
}

/* dx[o, j, p] += sum_i matrix[i, j] dy[o, i, p]. */
static void axis_linear_backward(mr_ctx *ctx, mr_tensor *out) {
    const axis_linear_saved *s = out->saved;
    float *dx = mr_tensor_grad_buffer(ctx, out->src[0]);
    if (dx == NULL) {
        return;
    }
    if (s->inner == 1) {
        mr_sgemm(false, false, s->outer, s->cols, s->rows, 1.0f, out->grad, s->rows, s->matrix,
                 s->cols, 1.0f, dx, s->cols);
        return;
    }
    axis_linear_block block = {s, out->grad, dx};
    mr_sgemm_each(s->outer, mr_sgemm_spread(s->outer, s->cols, s->inner, s->rows),
                  axis_linear_backward_block, &block);
}

/* Applies matrix [rows, cols] along axis of x, whose length must be cols;
 * the result has rows entries along that axis. */
static mr_tensor *axis_linear(mr_ctx *ctx, const char *op, mr_tensor *x, int axis,
                              const float *matrix, int64_t rows, int64_t cols) {
    x = mr_tensor_contiguous(ctx, x);
    if (x == NULL) {
        return NULL;
    }
    int64_t shape[MR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        shape[d] = d == axis ? rows : x->shape[d];
    }
    mr_tensor *srcs[1] = {x};
    mr_tensor *out = mr_op_output(ctx, op, x->ndim, shape, srcs, 1, axis_linear_backward);
    axis_linear_saved *s = mr_ctx_alloc(ctx, sizeof *s);
    if (out == NULL || s == NULL) {
        return NULL;
    }
    *s = (axis_linear_saved){matrix, rows, cols, mr_shape_product(x->shape, 0, axis),
                             mr_shape_product(x->shape, axis + 1, x->ndim)};

    /* Along the last axis every signal is a row: one product for all. */
    if (s->inner == 1) {
        mr_sgemm(false, true, s->outer, rows, cols, 1.0f, x->data, cols, matrix, cols, 0.0f,
                 out->data, rows);
    } else {
        axis_linear_block block = {s, x->data, out->data};
        mr_sgemm_each(s->outer, mr_sgemm_spread(s->outer, rows, s->inner, cols),
                      axis_linear_forward_block, &block);
    }

    if (mr_op_recording(out)) {
        out->saved = s;
    }
    return out;
}

mr_tensor *mr_tensor_rdft(mr_ctx *ctx, mr_tensor *x, int axis) {
    if (x == NULL || !mr_check_dtype(ctx, "rdft", "x", x, MR_F32)) {
        return NULL;
    }
    axis = mr_axis_check(ctx, "rdft", x, axis);
    if (axis < 0) {
        return NULL;
    }
    int64_t n = x->shape[axis];
    if (n < 1) {
        char sx[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rdft: axis %d of x %s is empty; it needs length >= 1",
                    axis, mr_tensor_shape_string(x, sx, sizeof sx));
        return NULL;
    }
    float *matrix = rdft_matrix(ctx, n);
    if (matrix == NULL) {
        return NULL;
    }
    return axis_linear(ctx, "rdft", x, axis, matrix, 2 * (n / 2 + 1), n);
}

mr_tensor *mr_tensor_irdft(mr_ctx *ctx, mr_tensor *x, int axis, int64_t n) {
    if (x == NULL || !mr_check_dtype(ctx, "irdft", "x", x, MR_F32)) {
        return NULL;
    }
    axis = mr_axis_check(ctx, "irdft", x, axis);
    if (axis < 0) {
        return NULL;
    }
    if (n < 1 || x->shape[axis] != 2 * (n / 2 + 1)) {
        char sx[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "irdft: axis %d of x %s has length %lld, but restoring n = %lld needs "
                    "2 * (n/2 + 1) = %lld entries (n must be >= 1)",
                    axis, mr_tensor_shape_string(x, sx, sizeof sx), (long long)x->shape[axis],
                    (long long)n, (long long)(2 * (n / 2 + 1)));
        return NULL;
    }
    float *matrix = irdft_matrix(ctx, n);
    if (matrix == NULL) {
        return NULL;
    }
    return axis_linear(ctx, "irdft", x, axis, matrix, n, 2 * (n / 2 + 1));
}
