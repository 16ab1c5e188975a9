/*
 * Batched matrix products through BLAS, forward and backward.
 *
 * Each operand's last two dimensions are handed to BLAS as a stored
 * row-major matrix plus a transpose flag. A transposed view (row stride 1)
 * is passed as the untransposed storage with the flag flipped, so
 * mr_tensor_transpose() before a product costs no copy.
 */
#include <string.h>

#include "blas.h"
#include "ctx.h"
#include "internal.h"

/* How an operand's last two dimensions sit in memory. */
typedef struct matrix_layout {
    bool trans;  /* the logical matrix is the transpose of the storage */
    int64_t ld;  /* row stride of the storage */
} matrix_layout;

/*
 * Describes t's last two dimensions [rows, cols] as BLAS storage. Returns
 * false when neither the rows nor the columns are contiguous.
 */
static bool describe_layout(const mr_tensor *t, matrix_layout *layout) {
    int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
    int64_t row_stride = t->stride[t->ndim - 2], col_stride = t->stride[t->ndim - 1];
    if ((col_stride == 1 || cols == 1) && row_stride >= (cols > 1 ? cols : 1)) {
        layout->trans = false;
        layout->ld = row_stride > 0 ? row_stride : 1;
        if (rows == 1) {
            layout->ld = cols > 1 ? cols : 1;
        }
        return true;
    }
    if ((row_stride == 1 || rows == 1) && col_stride >= (rows > 1 ? rows : 1)) {
        layout->trans = true;
        layout->ld = col_stride;
        return true;
    }
    return false;
}

/* Element offset of batch entry index within t, or 0 when t is 2-D or its
 * batch dimensions are all 1 (broadcast). */
static int64_t batch_offset(const mr_tensor *t, int64_t index) {
    int64_t offset = 0;
    for (int d = t->ndim - 3; d >= 0; d--) {
        int64_t size = t->shape[d];
        offset += (index % size) * t->stride[d];
        index /= size;
    }
    return offset;
}

/*
 * True when t's batch entries (every dimension but the last two) lie in
 * disjoint memory, so that threads may add to them at once. The test is
 * sufficient, not necessary: from the innermost batch dimension out, each
 * step must pass everything inside it.
 */
static bool batch_entries_disjoint(const mr_tensor *t) {
    int rows = t->ndim - 2, cols = t->ndim - 1;
    int64_t span = (t->shape[rows] - 1) * t->stride[rows] +
                   (t->shape[cols] - 1) * t->stride[cols] + 1;
    for (int d = t->ndim - 3; d >= 0; d--) {
        if (t->shape[d] == 1) {
            continue;
        }
        if (t->stride[d] < span) {
            return false;
        }
        span += (t->shape[d] - 1) * t->stride[d];
    }
    return true;
}

typedef struct matmul_saved {
    matrix_layout a, b;
    int64_t m, n, k, batch;
    bool a_batched, b_batched;
    bool folded; /* a's batch folded into M against a shared 2-D b */
} matmul_saved;

/* Operands of one batched matmul's products, entry by entry: c for the
 * forward product, and dc, da and db for backward (da or db NULL when not
 * needed). X = op(A) [M, K], Y = op(B) [K, N]. */
typedef struct matmul_entries {
    const mr_tensor *a, *b;
    matrix_layout la, lb;
    int64_t m, n, k;
    bool a_batched, b_batched;
    const float *dc;
    float *c, *da, *db;
} matmul_entries;

/* C_i = X_i Y_i, written to block i of c. */
static void matmul_entry_forward(int64_t i, void *arg) {
    const matmul_entries *e = arg;
    int64_t oa = e->a_batched ? batch_offset(e->a, i) : 0;
    int64_t ob = e->b_batched ? batch_offset(e->b, i) : 0;
    mr_sgemm(e->la.trans, e->lb.trans, e->m, e->n, e->k, 1.0f, e->a->data + oa, e->la.ld,
             e->b->data + ob, e->lb.ld, 0.0f, e->c + i * e->m * e->n, e->n);
}

/* dX_i += dC_i Y_i^T. */
static void matmul_entry_grad_a(int64_t i, void *arg) {
    const matmul_entries *e = arg;
    int64_t oa = e->a_batched ? batch_offset(e->a, i) : 0;
    int64_t ob = e->b_batched ? batch_offset(e->b, i) : 0;
    const float *dc = e->dc + i * e->m * e->n;
    if (!e->la.trans) {
        mr_sgemm(false, !e->lb.trans, e->m, e->k, e->n, 1.0f, dc, e->n, e->b->data + ob,
                 e->lb.ld, 1.0f, e->da + oa, e->la.ld);
    } else {
        mr_sgemm(e->lb.trans, true, e->k, e->m, e->n, 1.0f, e->b->data + ob, e->lb.ld, dc, e->n,
                 1.0f, e->da + oa, e->la.ld);
    }
}

/* dY_i += X_i^T dC_i. */
static void matmul_entry_grad_b(int64_t i, void *arg) {
    const matmul_entries *e = arg;
    int64_t oa = e->a_batched ? batch_offset(e->a, i) : 0;
    int64_t ob = e->b_batched ? batch_offset(e->b, i) : 0;
    const float *dc = e->dc + i * e->m * e->n;
    if (!e->lb.trans) {
        mr_sgemm(!e->la.trans, false, e->k, e->n, e->m, 1.0f, e->a->data + oa, e->la.ld, dc,
                 e->n, 1.0f, e->db + ob, e->lb.ld);
    } else {
        mr_sgemm(true, e->la.trans, e->n, e->k, e->m, 1.0f, dc, e->n, e->a->data + oa, e->la.ld,
                 1.0f, e->db + ob, e->lb.ld);
    }
}

static void matmul_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *a = out->src[0], *b = out->src[1];
    const matmul_saved *s = out->saved;
    int64_t m = s->m, n = s->n, k = s->k;

    float *da = mr_tensor_requires_grad(a) ? mr_tensor_grad_buffer(ctx, a) : NULL;
    float *db = mr_tensor_requires_grad(b) ? mr_tensor_grad_buffer(ctx, b) : NULL;
    if (ctx->status != MR_OK) {
        return;
    }

    int64_t batches = s->folded ? 1 : s->batch;
    if (s->folded) {
        m *= s->batch;
    }

    /* Each gradient's products spread over the threads only when their
     * targets are disjoint. A shared b sums every entry into one dB, in
     * order. */
    matmul_entries e = {.a = a, .b = b, .la = s->a, .lb = s->b, .m = m, .n = n, .k = k,
                        .a_batched = s->a_batched, .b_batched = s->b_batched,
                        .dc = out->grad, .da = da, .db = db};
    if (da != NULL) {
        bool spread = mr_sgemm_spread(batches, m, n, k) && batch_entries_disjoint(a);
        mr_sgemm_each(batches, spread, matmul_entry_grad_a, &e);
    }
    if (db != NULL) {
        bool spread = s->b_batched && mr_sgemm_spread(batches, m, n, k) &&
                      batch_entries_disjoint(b);
        mr_sgemm_each(batches, spread, matmul_entry_grad_b, &e);
    }
}

mr_tensor *mr_tensor_matmul(mr_ctx *ctx, mr_tensor *a, mr_tensor *b,
                            int flags) {
    if (mr_any_null(2, a, b)) {
        return NULL;
    }
    if (!mr_check_dtype(ctx, "matmul", "a", a, MR_F32) ||
        !mr_check_dtype(ctx, "matmul", "b", b, MR_F32)) {
        return NULL;
    }
    char sa[96], sb[96];
    if (a->ndim < 2 || b->ndim < 2) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "matmul: operands need at least 2 dimensions, got %s and %s",
                    mr_tensor_shape_string(a, sa, sizeof sa),
                    mr_tensor_shape_string(b, sb, sizeof sb));
        return NULL;
    }

    /* Make each operand BLAS-compatible, copying only odd layouts. */
    matrix_layout la, lb;
    if (!describe_layout(a, &la)) {
        a = mr_tensor_contiguous(ctx, a);
        if (a == NULL || !describe_layout(a, &la)) {
            return NULL;
        }
    }
    if (!describe_layout(b, &lb)) {
        b = mr_tensor_contiguous(ctx, b);
        if (b == NULL || !describe_layout(b, &lb)) {
            return NULL;
        }
    }

    bool flag_a = (flags & MR_MATMUL_TRANS_A) != 0;
    bool flag_b = (flags & MR_MATMUL_TRANS_B) != 0;
    int64_t m = flag_a ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
    int64_t k = flag_a ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t kb = flag_b ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    int64_t n = flag_b ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    if (k != kb) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "matmul: inner dimensions differ (%lld vs %lld) for %s%s @ %s%s",
                    (long long)k, (long long)kb, mr_tensor_shape_string(a, sa, sizeof sa),
                    flag_a ? "^T" : "", mr_tensor_shape_string(b, sb, sizeof sb),
                    flag_b ? "^T" : "");
        return NULL;
    }

    /* Batch dimensions: equal, or b shared (2-D or all ones). */
    int64_t batch = mr_shape_product(a->shape, 0, a->ndim - 2);
    int64_t b_batch = mr_shape_product(b->shape, 0, b->ndim - 2);
    bool b_shared = b_batch == 1;
    bool batches_match = a->ndim == b->ndim;
    for (int d = 0; batches_match && d < a->ndim - 2; d++) {
        batches_match = a->shape[d] == b->shape[d];
    }
    if (!b_shared && !batches_match) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "matmul: batch dimensions of %s and %s differ",
                    mr_tensor_shape_string(a, sa, sizeof sa),
                    mr_tensor_shape_string(b, sb, sizeof sb));
        return NULL;
    }

    int64_t shape[MR_MAX_DIMS];
    for (int d = 0; d < a->ndim - 2; d++) {
        shape[d] = a->shape[d];
    }
    shape[a->ndim - 2] = m;
    shape[a->ndim - 1] = n;
    mr_tensor *srcs[2] = {a, b};
    mr_tensor *out = mr_op_output(ctx, "matmul", a->ndim, shape, srcs, 2, matmul_backward);
    if (out == NULL) {
        return NULL;
    }

    bool ta = flag_a != la.trans;
    bool tb = flag_b != lb.trans;

    /* A linear layer: fold a's batch into M when its rows are evenly
     * spaced, and run one large product against the shared b. */
    bool folded = b_shared && !ta && batch > 1 && mr_tensor_is_contiguous(a);
    if (folded) {
        mr_sgemm(false, tb, batch * m, n, k, 1.0f, a->data, la.ld, b->data, lb.ld, 0.0f,
                 out->data, n);
    } else {
        matmul_entries e = {.a = a, .b = b, .la = {ta, la.ld}, .lb = {tb, lb.ld},
                            .m = m, .n = n, .k = k, .a_batched = true,
                            .b_batched = !b_shared, .c = out->data};
        mr_sgemm_each(batch, mr_sgemm_spread(batch, m, n, k), matmul_entry_forward, &e);
    }

    if (mr_op_recording(out)) {
        matmul_saved *s = mr_ctx_alloc(ctx, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        s->a = (matrix_layout){ta, la.ld};
        s->b = (matrix_layout){tb, lb.ld};
        s->m = m;
        s->n = n;
        s->k = k;
        s->batch = batch;
        s->a_batched = true;
        s->b_batched = !b_shared;
        s->folded = folded;
        out->saved = s;
    }
    return out;
}

mr_tensor *mr_tensor_linear(mr_ctx *ctx, mr_tensor *x, mr_tensor *w,
                            mr_tensor *bias) {
    mr_tensor *y = mr_tensor_matmul(ctx, x, w, MR_MATMUL_TRANS_B);
    if (bias == NULL || y == NULL) {
        return y;
    }
    return mr_tensor_add(ctx, y, bias);
}
