/*
 * Element-wise arithmetic with broadcasting: add, sub, mul, div, scale and
 * add_scalar, each with its backward pass.
 *
 * Shapes are aligned at the last dimension and padded to four dimensions.
 * An input dimension of size 1 gets stride 0, so one loop nest serves
 * every broadcast. In backward, an input with the output's shape receives
 * its gradient element by element in parallel; a broadcast input sums the
 * output gradient over its stretched dimensions in one serial pass, which
 * keeps the summation order fixed.
 */
#include <string.h>

#include <omp.h>

#include "ctx.h"
#include "internal.h"

enum binary_kind { BINARY_ADD, BINARY_SUB, BINARY_MUL, BINARY_DIV };

/* Strides of t as seen from a 4-D output: 0 for stretched dimensions. */
static void broadcast_strides(const mr_tensor *t, int out_ndim,
                              int64_t strides[MR_MAX_DIMS]) {
    int pad = MR_MAX_DIMS - out_ndim;
    for (int d = 0; d < MR_MAX_DIMS; d++) {
        int td = d - pad - (out_ndim - t->ndim);
        strides[d] = (td >= 0 && t->shape[td] != 1) ? t->stride[td] : 0;
    }
}

/* The output shape padded on the left to four dimensions. */
static void padded_shape(const mr_tensor *out, int64_t shape[MR_MAX_DIMS]) {
    int pad = MR_MAX_DIMS - out->ndim;
    for (int d = 0; d < MR_MAX_DIMS; d++) {
        shape[d] = d < pad ? 1 : out->shape[d - pad];
    }
}

static float binary_apply(int kind, float a, float b) {
    switch (kind) {
    case BINARY_ADD: return a + b;
    case BINARY_SUB: return a - b;
    case BINARY_MUL: return a * b;
    default: return a / b;
    }
}

/*
 * out[i] = a[i] op b[i] for i < count. An operand whose a_moves or b_moves
 * flag is false repeats its element 0. apply_span inlines this once per
 * kind, so that every loop has a fixed operation and vectorises.
 */
static inline void apply_span_kind(int kind, const float *restrict a, bool a_moves,
                                   const float *restrict b, bool b_moves,
                                   float *restrict out, int64_t count) {
    if (a_moves && b_moves) {
        for (int64_t i = 0; i < count; i++) {
            out[i] = binary_apply(kind, a[i], b[i]);
        }
    } else if (a_moves) {
        float y = b[0];
        for (int64_t i = 0; i < count; i++) {
            out[i] = binary_apply(kind, a[i], y);
        }
    } else if (b_moves) {
        float x = a[0];
        for (int64_t i = 0; i < count; i++) {
            out[i] = binary_apply(kind, x, b[i]);
        }
    } else {
        float value = binary_apply(kind, a[0], b[0]);
        for (int64_t i = 0; i < count; i++) {
            out[i] = value;
        }
    }
}

static void apply_span(int kind, const float *a, bool a_moves, const float *b, bool b_moves,
                       float *out, int64_t count) {
    switch (kind) {
    case BINARY_ADD: apply_span_kind(BINARY_ADD, a, a_moves, b, b_moves, out, count); break;
    case BINARY_SUB: apply_span_kind(BINARY_SUB, a, a_moves, b, b_moves, out, count); break;
    case BINARY_MUL: apply_span_kind(BINARY_MUL, a, a_moves, b, b_moves, out, count); break;
    default: apply_span_kind(BINARY_DIV, a, a_moves, b, b_moves, out, count); break;
    }
}

/* d out / d a and d out / d b for one element. */
static float binary_da(int kind, float a, float b) {
    (void)a;
    switch (kind) {
    case BINARY_ADD: case BINARY_SUB: return 1.0f;
    case BINARY_MUL: return b;
    default: return 1.0f / b;
    }
}

static float binary_db(int kind, float a, float b) {
    switch (kind) {
    case BINARY_ADD: return 1.0f;
    case BINARY_SUB: return -1.0f;
    case BINARY_MUL: return a;
    default: return -a / (b * b);
    }
}

/* Adds the gradient of output rows [row_begin, row_end) and columns
 * [col_begin, col_end) into dx, rows in order. */
static void binary_backward_block(int kind, int which, const mr_tensor *out,
                                  const mr_tensor *a, const mr_tensor *b, float *dx,
                                  const int64_t *full, const int64_t *sa,
                                  const int64_t *sb, int64_t row_begin, int64_t row_end,
                                  int64_t col_begin, int64_t col_end) {
    const int64_t *sx = which == 0 ? sa : sb;
    for (int64_t row = row_begin; row < row_end; row++) {
        int64_t i2 = row % full[2], i1 = (row / full[2]) % full[1];
        int64_t i0 = row / (full[2] * full[1]);
        int64_t base_a = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        int64_t base_b = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        int64_t base_x = i0 * sx[0] + i1 * sx[1] + i2 * sx[2];
        const float *g = out->grad + row * full[3];
        for (int64_t i3 = col_begin; i3 < col_end; i3++) {
            float av = a->data[base_a + i3 * sa[3]];
            float bv = b->data[base_b + i3 * sb[3]];
            float local = which == 0 ? binary_da(kind, av, bv) : binary_db(kind, av, bv);
            dx[base_x + i3 * sx[3]] += g[i3] * local;
        }
    }
}

/*
 * Accumulates the gradient of operand `which` (0 for a, 1 for b). Work is
 * split so that no two threads write the same gradient element and each
 * element sums its terms in row order, whatever the thread count: by rows
 * when the operand is not stretched across rows, by columns when it is
 * stretched across rows only (a bias), and serially otherwise.
 */
static void binary_backward_operand(int kind, int which, const mr_tensor *out,
                                    const mr_tensor *a, const mr_tensor *b,
                                    float *dx) {
    int64_t full[MR_MAX_DIMS], sa[MR_MAX_DIMS], sb[MR_MAX_DIMS];
    padded_shape(out, full);
    broadcast_strides(a, out->ndim, sa);
    broadcast_strides(b, out->ndim, sb);
    const int64_t *sx = which == 0 ? sa : sb;
    int64_t rows = full[0] * full[1] * full[2];
    int64_t cols = full[3];

    /* Same-shape operands: plain loops that vectorise. */
    int64_t count = rows * cols;
    if (mr_tensor_numel(a) == count && mr_tensor_numel(b) == count &&
        (kind == BINARY_ADD || kind == BINARY_SUB || kind == BINARY_MUL)) {
        const float *g = out->grad;
        const float *other = which == 0 ? b->data : a->data;
        float sign = kind == BINARY_SUB && which == 1 ? -1.0f : 1.0f;
        if (kind == BINARY_MUL) {
#pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < count; i++) {
                dx[i] += g[i] * other[i];
            }
        } else {
#pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < count; i++) {
                dx[i] += sign * g[i];
            }
        }
        return;
    }

    bool stretched_rows = false;
    for (int d = 0; d < 3; d++) {
        stretched_rows = stretched_rows || (sx[d] == 0 && full[d] > 1);
    }
    bool stretched_cols = sx[3] == 0 && cols > 1;

    if (!stretched_rows) {
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            binary_backward_block(kind, which, out, a, b, dx, full, sa, sb, row, row + 1, 0,
                                  cols);
        }
    } else if (!stretched_cols && cols >= 64) {
#pragma omp parallel
        {
            int threads = omp_get_num_threads(), id = omp_get_thread_num();
            int64_t begin = cols * id / threads, end = cols * (id + 1) / threads;
            binary_backward_block(kind, which, out, a, b, dx, full, sa, sb, 0, rows, begin,
                                  end);
        }
    } else {
        binary_backward_block(kind, which, out, a, b, dx, full, sa, sb, 0, rows, 0, cols);
    }
}

static void binary_backward(mr_ctx *ctx, mr_tensor *out) {
    int kind = out->iparams[0];
    mr_tensor *a = out->src[0], *b = out->src[1];
    for (int which = 0; which < 2; which++) {
        mr_tensor *x = which == 0 ? a : b;
        if (!mr_tensor_requires_grad(x)) {
            continue;
        }
        float *dx = mr_tensor_grad_buffer(ctx, x);
        if (dx == NULL) {
            return;
        }
        binary_backward_operand(kind, which, out, a, b, dx);
    }
}

static const char *binary_names[] = {"add", "sub", "mul", "div"};

static mr_tensor *binary_op(mr_ctx *ctx, int kind, mr_tensor *a, mr_tensor *b) {
    if (mr_any_null(2, a, b)) {
        return NULL;
    }
    const char *name = binary_names[kind];
    if (!mr_check_dtype(ctx, name, "a", a, MR_F32) || !mr_check_dtype(ctx, name, "b", b, MR_F32)) {
        return NULL;
    }
    int ndim;
    int64_t shape[MR_MAX_DIMS];
    if (!mr_broadcast_shape(ctx, name, a, b, &ndim, shape)) {
        return NULL;
    }
    a = mr_tensor_contiguous(ctx, a);
    b = mr_tensor_contiguous(ctx, b);
    if (mr_any_null(2, a, b)) {
        return NULL;
    }

    mr_tensor *srcs[2] = {a, b};
    mr_tensor *out = mr_op_output(ctx, name, ndim, shape, srcs, 2, binary_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = kind;

    /* Same-shape operands: blocks of 4096 elements per loop iteration. */
    int64_t count = mr_tensor_numel(out);
    if (mr_tensor_numel(a) == count && mr_tensor_numel(b) == count) {
        enum { SPAN = 4096 };
#pragma omp parallel for schedule(static)
        for (int64_t first = 0; first < count; first += SPAN) {
            int64_t n = count - first < SPAN ? count - first : SPAN;
            apply_span(kind, a->data + first, true, b->data + first, true, out->data + first, n);
        }
        return out;
    }

    /* Broadcast: one output row of the last dimension at a time. A
     * contiguous operand's last stride is 1, or 0 where it is stretched. */
    int64_t full[MR_MAX_DIMS], sa[MR_MAX_DIMS], sb[MR_MAX_DIMS];
    padded_shape(out, full);
    broadcast_strides(a, ndim, sa);
    broadcast_strides(b, ndim, sb);
    int64_t rows = full[0] * full[1] * full[2];
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t i2 = row % full[2], i1 = (row / full[2]) % full[1], i0 = row / (full[2] * full[1]);
        int64_t base_a = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        int64_t base_b = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        apply_span(kind, a->data + base_a, sa[3] != 0, b->data + base_b, sb[3] != 0,
                   out->data + row * full[3], full[3]);
    }
    return out;
}

mr_tensor *mr_tensor_add(mr_ctx *ctx, mr_tensor *a, mr_tensor *b) {
    return binary_op(ctx, BINARY_ADD, a, b);
}

mr_tensor *mr_tensor_sub(mr_ctx *ctx, mr_tensor *a, mr_tensor *b) {
    return binary_op(ctx, BINARY_SUB, a, b);
}

mr_tensor *mr_tensor_mul(mr_ctx *ctx, mr_tensor *a, mr_tensor *b) {
    return binary_op(ctx, BINARY_MUL, a, b);
}

mr_tensor *mr_tensor_div(mr_ctx *ctx, mr_tensor *a, mr_tensor *b) {
    return binary_op(ctx, BINARY_DIV, a, b);
}

/* ------------------------------------------------------------------------
 * Scalar operations: y = a * s and y = a + s.
 * ------------------------------------------------------------------------ */

static void scalar_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *a = out->src[0];
    float *da = mr_tensor_grad_buffer(ctx, a);
    if (da == NULL) {
        return;
    }
    float factor = out->fparams[0];
    int64_t count = mr_tensor_numel(out);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        da[i] += factor * out->grad[i];
    }
}

static mr_tensor *scalar_op(mr_ctx *ctx, const char *name, mr_tensor *a,
                            float multiply, float add) {
    if (a == NULL || !mr_check_dtype(ctx, name, "a", a, MR_F32)) {
        return NULL;
    }
    a = mr_tensor_contiguous(ctx, a);
    if (a == NULL) {
        return NULL;
    }
    mr_tensor *srcs[1] = {a};
    mr_tensor *out = mr_op_output(ctx, name, a->ndim, a->shape, srcs, 1, scalar_backward);
    if (out == NULL) {
        return NULL;
    }
    out->fparams[0] = multiply;
    int64_t count = mr_tensor_numel(a);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        out->data[i] = a->data[i] * multiply + add;
    }
    return out;
}

mr_tensor *mr_tensor_scale(mr_ctx *ctx, mr_tensor *a, float s) {
    return scalar_op(ctx, "scale", a, s, 0.0f);
}

mr_tensor *mr_tensor_add_scalar(mr_ctx *ctx, mr_tensor *a, float s) {
    return scalar_op(ctx, "add_scalar", a, 1.0f, s);
}
