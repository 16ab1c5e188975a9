/*
 * Dilated causal 1-D convolution over time, forward and backward, as in
 * NextItNet's residual blocks: output step t of x [B, T, Cin] reads steps
 * t - (K-1-k)*dilation for k = 0..K-1, with zeros before the start (left
 * padding of (K-1)*dilation).
 *
 * Both passes use im2col: the K shifted inputs of every (b, t) row are laid
 * side by side in a [B*T, K*Cin] matrix, so the convolution is one matrix
 * product with the weights packed as [Cout, K*Cin].
 */
#include <string.h>

#include "blas.h"
#include "ctx.h"
#include "internal.h"

typedef struct conv_saved {
    mr_tensor *x, *w, *bias; /* bias may be NULL */
    float *packed;           /* w as [Cout, K*Cin]: packed[o][k*Cin + c] = w[o][c][k] */
    float *cols;             /* the forward pass's im2col of x, [B*T, K*Cin] */
    int64_t batch, steps, in_channels, out_channels, taps, dilation;
} conv_saved;

/* Fills cols [B*T, K*Cin] with the shifted inputs; zeros before the start. */
static void im2col(const conv_saved *s, const float *x, float *cols) {
    int64_t steps = s->steps, cin = s->in_channels, taps = s->taps;
    int64_t rows = s->batch * steps, width = taps * cin;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t b = row / steps, t = row % steps;
        for (int64_t k = 0; k < taps; k++) {
            int64_t source = t - (taps - 1 - k) * s->dilation;
            float *dst = cols + row * width + k * cin;
            if (source >= 0) {
                memcpy(dst, x + (b * steps + source) * cin, (size_t)cin * sizeof(float));
            } else {
                memset(dst, 0, (size_t)cin * sizeof(float));
            }
        }
    }
}

static void conv_backward(mr_ctx *ctx, mr_tensor *out) {
    const conv_saved *s = out->saved;
    int64_t steps = s->steps, cin = s->in_channels, cout = s->out_channels, taps = s->taps;
    int64_t rows = s->batch * steps, width = taps * cin;
    const float *dy = out->grad;

    if (mr_tensor_requires_grad(s->x)) {
        float *dx = mr_tensor_grad_buffer(ctx, s->x);
        float *dcols = mr_ctx_alloc(ctx, (size_t)(rows * width + 1) * sizeof(float));
        if (dx == NULL || dcols == NULL) {
            return;
        }
        mr_sgemm(false, false, rows, width, cout, 1.0f, dy, cout, s->packed, width, 0.0f,
                 dcols, width);

        /* Gather form of col2im: input step u collects tap k from output
         * step u + (K-1-k)*dilation, so each dx row has one writer. */
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            int64_t b = row / steps, u = row % steps;
            float *dst = dx + row * cin;
            for (int64_t k = 0; k < taps; k++) {
                int64_t t = u + (taps - 1 - k) * s->dilation;
                if (t >= steps) {
                    continue;
                }
                const float *src = dcols + (b * steps + t) * width + k * cin;
                for (int64_t c = 0; c < cin; c++) {
                    dst[c] += src[c];
                }
            }
        }
    }

    if (mr_tensor_requires_grad(s->w)) {
        float *dw = mr_tensor_grad_buffer(ctx, s->w);
        float *dpacked = mr_ctx_alloc(ctx, (size_t)(cout * width + 1) * sizeof(float));
        if (dw == NULL || dpacked == NULL) {
            return;
        }
        mr_sgemm(true, false, cout, width, rows, 1.0f, dy, cout, s->cols, width, 0.0f, dpacked,
                 width);
        for (int64_t o = 0; o < cout; o++) {
            for (int64_t c = 0; c < cin; c++) {
                for (int64_t k = 0; k < taps; k++) {
                    dw[(o * cin + c) * taps + k] += dpacked[o * width + k * cin + c];
                }
            }
        }
    }

    if (s->bias != NULL && mr_tensor_requires_grad(s->bias)) {
        float *db = mr_tensor_grad_buffer(ctx, s->bias);
        if (db == NULL) {
            return;
        }
        mr_add_column_sums(dy, rows, cout, db);
    }
}

mr_tensor *mr_tensor_conv1d_causal(mr_ctx *ctx, mr_tensor *x, mr_tensor *w,
                                   mr_tensor *bias, int dilation) {
    const char *op = "conv1d_causal";
    if (mr_any_null(2, x, w)) {
        return NULL;
    }
    if (!mr_check_dtype(ctx, op, "x", x, MR_F32) || !mr_check_dtype(ctx, op, "w", w, MR_F32) ||
        (bias != NULL && !mr_check_dtype(ctx, op, "bias", bias, MR_F32))) {
        return NULL;
    }
    char sx[96], sw[96], sb[96];
    if (x->ndim != 3 || w->ndim != 3 || x->shape[2] != w->shape[1]) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "%s: x %s and w %s do not fit; expected x [B, T, Cin] and w [Cout, Cin, K]",
                    op, mr_tensor_shape_string(x, sx, sizeof sx),
                    mr_tensor_shape_string(w, sw, sizeof sw));
        return NULL;
    }
    if (w->shape[2] < 1) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: w %s has no taps; the kernel size K must be >= 1",
                    op, mr_tensor_shape_string(w, sw, sizeof sw));
        return NULL;
    }
    if (bias != NULL && (bias->ndim != 1 || bias->shape[0] != w->shape[0])) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: bias has shape %s, expected [%lld] to match w %s",
                    op, mr_tensor_shape_string(bias, sb, sizeof sb), (long long)w->shape[0],
                    mr_tensor_shape_string(w, sw, sizeof sw));
        return NULL;
    }
    if (dilation < 1) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "%s: dilation is %d, expected >= 1", op,
                    dilation);
        return NULL;
    }
    bool has_bias = bias != NULL;
    x = mr_tensor_contiguous(ctx, x);
    w = mr_tensor_contiguous(ctx, w);
    if (has_bias) {
        bias = mr_tensor_contiguous(ctx, bias);
    }
    if (mr_any_null(2, x, w) || (has_bias && bias == NULL)) {
        return NULL;
    }

    mr_tensor *srcs[3] = {x, w, bias};
    int64_t shape[3] = {x->shape[0], x->shape[1], w->shape[0]};
    mr_tensor *out = mr_op_output(ctx, op, 3, shape, srcs, bias != NULL ? 3 : 2,
                                  conv_backward);
    conv_saved *s = mr_ctx_alloc(ctx, sizeof *s);
    if (out == NULL || s == NULL) {
        return NULL;
    }
    *s = (conv_saved){x, w, bias, NULL, NULL, x->shape[0], x->shape[1], x->shape[2], w->shape[0],
                      w->shape[2], dilation};
    int64_t cin = s->in_channels, cout = s->out_channels, taps = s->taps;
    int64_t rows = s->batch * s->steps, width = taps * cin;

    float *cols = mr_ctx_alloc(ctx, (size_t)(rows * width + 1) * sizeof(float));
    s->packed = mr_ctx_alloc(ctx, (size_t)(cout * width + 1) * sizeof(float));
    if (cols == NULL || s->packed == NULL) {
        return NULL;
    }
    s->cols = cols;
    for (int64_t o = 0; o < cout; o++) {
        for (int64_t c = 0; c < cin; c++) {
            for (int64_t k = 0; k < taps; k++) {
                s->packed[o * width + k * cin + c] = w->data[(o * cin + c) * taps + k];
            }
        }
    }
    im2col(s, x->data, cols);

    /* out = cols @ packed^T (+ bias). */
    mr_sgemm(false, true, rows, cout, width, 1.0f, cols, width, s->packed, width, 0.0f,
             out->data, cout);
    if (bias != NULL) {
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            for (int64_t o = 0; o < cout; o++) {
                out->data[row * cout + o] += bias->data[o];
            }
        }
    }

    if (mr_op_recording(out)) {
        out->saved = s;
    }
    return out;
}
