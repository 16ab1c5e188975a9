/*
 * Indexing operations: embedding lookup, concatenation and gather, each
 * with its backward pass.
 *
 * The backward passes of embedding and gather scatter-add into rows or
 * elements that several outputs may share. They never let two threads add
 * into the same gradient element: embedding splits the work by columns and
 * gather by the coordinates off the gathered axis. Each gradient element
 * therefore sums its contributions in output order, whatever the thread
 * count.
 */
#include <stdio.h>
#include <string.h>

#include "ctx.h"
#include "internal.h"

/* Writes the coordinates of row-major element i of a tensor of this shape
 * into buf as "[1, 0, 2]" and returns buf. */
static char *coordinates_string(int ndim, const int64_t *shape, int64_t i, char *buf,
                                size_t size) {
    int64_t coords[MR_MAX_DIMS] = {0};
    for (int d = ndim - 1; d >= 0; d--) {
        coords[d] = i % shape[d];
        i /= shape[d];
    }
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++) {
        used += (size_t)snprintf(buf + used, size - used, d == 0 ? "%lld" : ", %lld",
                                 (long long)coords[d]);
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
    return buf;
}

/* ------------------------------------------------------------------------
 * Embedding
 * ------------------------------------------------------------------------ */

/* Columns of the weight gradient that one thread owns in backward. */
#define EMBEDDING_COLUMN_BLOCK 64

/*
 * Adds each output row's gradient into the weight row of its id, skipping
 * padding ids. Threads own disjoint column blocks and walk the ids in
 * order, so repeated ids accumulate in a fixed order.
 */
static void embedding_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *weight = out->src[0];
    const mr_tensor *ids = out->src[1];
    float *dw = mr_tensor_grad_buffer(ctx, weight);
    if (dw == NULL) {
        return;
    }
    int32_t padding_index = out->iparams[0];
    int64_t channels = weight->shape[1];
    int64_t count = mr_tensor_numel(ids);
    int64_t blocks = (channels + EMBEDDING_COLUMN_BLOCK - 1) / EMBEDDING_COLUMN_BLOCK;

#pragma omp parallel for schedule(static)
    for (int64_t block = 0; block < blocks; block++) {
        int64_t begin = block * EMBEDDING_COLUMN_BLOCK;
        int64_t end = begin + EMBEDDING_COLUMN_BLOCK < channels ? begin + EMBEDDING_COLUMN_BLOCK
                                                                : channels;
        for (int64_t n = 0; n < count; n++) {
            int32_t id = ids->idata[n];
            if (id == padding_index) {
                continue;
            }
            float *row = dw + (int64_t)id * channels;
            const float *g = out->grad + n * channels;
            for (int64_t c = begin; c < end; c++) {
                row[c] += g[c];
            }
        }
    }
}

mr_tensor *mr_tensor_embedding(mr_ctx *ctx, mr_tensor *weight, mr_tensor *ids,
                               int32_t padding_index) {
    if (mr_any_null(2, weight, ids)) {
        return NULL;
    }
    if (!mr_check_dtype(ctx, "embedding", "weight", weight, MR_F32) ||
        !mr_check_dtype(ctx, "embedding", "ids", ids, MR_I32)) {
        return NULL;
    }
    char shape_text[96];
    if (weight->ndim != 2) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "embedding: weight must be [V, C], not %s",
                    mr_tensor_shape_string(weight, shape_text, sizeof shape_text));
        return NULL;
    }
    if (ids->ndim > MR_MAX_DIMS - 1) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "embedding: ids of shape %s have %d dimensions; the maximum is %d",
                    mr_tensor_shape_string(ids, shape_text, sizeof shape_text), ids->ndim,
                    MR_MAX_DIMS - 1);
        return NULL;
    }
    int64_t vocab = weight->shape[0];
    int64_t channels = weight->shape[1];
    if (padding_index < -1 || padding_index >= vocab) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "embedding: padding_index %d is outside [0, %lld); pass -1 for none",
                    (int)padding_index, (long long)vocab);
        return NULL;
    }
    weight = mr_tensor_contiguous(ctx, weight);
    ids = mr_tensor_contiguous(ctx, ids);
    if (mr_any_null(2, weight, ids)) {
        return NULL;
    }

    /* Check every id before any output exists, naming the first bad one. */
    int64_t count = mr_tensor_numel(ids);
    for (int64_t n = 0; n < count; n++) {
        int32_t id = ids->idata[n];
        if (id < 0 || id >= vocab) {
            char position[96];
            mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                        "embedding: id %d at position %s of ids %s is outside [0, %lld)",
                        (int)id,
                        coordinates_string(ids->ndim, ids->shape, n, position, sizeof position),
                        mr_tensor_shape_string(ids, shape_text, sizeof shape_text),
                        (long long)vocab);
            return NULL;
        }
    }

    int64_t shape[MR_MAX_DIMS];
    for (int d = 0; d < ids->ndim; d++) {
        shape[d] = ids->shape[d];
    }
    shape[ids->ndim] = channels;
    mr_tensor *srcs[2] = {weight, ids};
    mr_tensor *out = mr_op_output(ctx, "embedding", ids->ndim + 1, shape, srcs, 2,
                                  embedding_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = padding_index;

#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < count; n++) {
        int32_t id = ids->idata[n];
        float *row = out->data + n * channels;
        if (id == padding_index) {
            memset(row, 0, (size_t)channels * sizeof *row);
        } else {
            memcpy(row, weight->data + (int64_t)id * channels, (size_t)channels * sizeof *row);
        }
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Concat
 * ------------------------------------------------------------------------ */

/* The inputs of a concat, which may be more than MR_MAX_SRC. */
typedef struct concat_saved {
    int count;
    int axis;
    mr_tensor **inputs; /* contiguous versions of the inputs */
} concat_saved;

/* Size of the output along the concat axis before input k, times inner. */
static int64_t concat_block_offset(const concat_saved *s, int k, int64_t inner) {
    int64_t offset = 0;
    for (int j = 0; j < k; j++) {
        offset += s->inputs[j]->shape[s->axis] * inner;
    }
    return offset;
}

/* Hands each input the slice of the output gradient it produced. */
static void concat_backward(mr_ctx *ctx, mr_tensor *out) {
    const concat_saved *s = out->saved;
    int64_t outer = mr_shape_product(out->shape, 0, s->axis);
    int64_t inner = mr_shape_product(out->shape, s->axis + 1, out->ndim);
    int64_t out_row = out->shape[s->axis] * inner;

    for (int k = 0; k < s->count; k++) {
        mr_tensor *input = s->inputs[k];
        if (!mr_tensor_requires_grad(input)) {
            continue;
        }
        float *dx = mr_tensor_grad_buffer(ctx, input);
        if (dx == NULL) {
            return;
        }
        int64_t block = input->shape[s->axis] * inner;
        int64_t offset = concat_block_offset(s, k, inner);
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < outer; o++) {
            const float *g = out->grad + o * out_row + offset;
            float *d = dx + o * block;
            for (int64_t i = 0; i < block; i++) {
                d[i] += g[i];
            }
        }
    }
}

/* Checks that tensor k fits tensor 0 on every dimension but axis. */
static bool concat_check_input(mr_ctx *ctx, mr_tensor **tensors, int k, int axis) {
    const mr_tensor *first = tensors[0], *t = tensors[k];
    char name[32];
    snprintf(name, sizeof name, "tensors[%d]", k);
    if (!mr_check_dtype(ctx, "concat", name, t, MR_F32)) {
        return false;
    }
    bool fits = t->ndim == first->ndim;
    for (int d = 0; fits && d < t->ndim; d++) {
        fits = d == axis || t->shape[d] == first->shape[d];
    }
    if (!fits) {
        char shape0[96], shape_k[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "concat: tensors[%d] of shape %s does not match tensors[0] of shape %s "
                    "on the dimensions other than axis %d",
                    k, mr_tensor_shape_string(t, shape_k, sizeof shape_k),
                    mr_tensor_shape_string(first, shape0, sizeof shape0), axis);
        return false;
    }
    return true;
}

mr_tensor *mr_tensor_concat(mr_ctx *ctx, mr_tensor **tensors, int n, int axis) {
    if (tensors == NULL || n < 1) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "concat: needs at least one tensor, got n = %d", n);
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        if (tensors[k] == NULL) {
            return NULL;
        }
    }
    if (!mr_check_dtype(ctx, "concat", "tensors[0]", tensors[0], MR_F32)) {
        return NULL;
    }
    axis = mr_axis_check(ctx, "concat", tensors[0], axis);
    if (axis < 0) {
        return NULL;
    }
    for (int k = 1; k < n; k++) {
        if (!concat_check_input(ctx, tensors, k, axis)) {
            return NULL;
        }
    }

    concat_saved *s = mr_ctx_alloc(ctx, sizeof *s);
    mr_tensor **inputs = mr_ctx_alloc(ctx, (size_t)n * sizeof *inputs);
    if (s == NULL || inputs == NULL) {
        return NULL;
    }
    int64_t shape[MR_MAX_DIMS];
    for (int d = 0; d < tensors[0]->ndim; d++) {
        shape[d] = tensors[0]->shape[d];
    }
    shape[axis] = 0;
    for (int k = 0; k < n; k++) {
        inputs[k] = mr_tensor_contiguous(ctx, tensors[k]);
        if (inputs[k] == NULL) {
            return NULL;
        }
        shape[axis] += inputs[k]->shape[axis];
    }
    s->count = n;
    s->axis = axis;
    s->inputs = inputs;

    /* mr_op_output keeps only the first MR_MAX_SRC inputs in src, so
     * backward reads all of them from saved. */
    mr_tensor *out = mr_op_output(ctx, "concat", tensors[0]->ndim, shape, inputs, n,
                                  concat_backward);
    if (out == NULL) {
        return NULL;
    }
    out->saved = s;

    int64_t outer = mr_shape_product(shape, 0, axis);
    int64_t inner = mr_shape_product(shape, axis + 1, out->ndim);
    int64_t out_row = shape[axis] * inner;
    for (int k = 0; k < n; k++) {
        int64_t block = inputs[k]->shape[axis] * inner;
        int64_t offset = concat_block_offset(s, k, inner);
        const float *x = inputs[k]->data;
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < outer; o++) {
            memcpy(out->data + o * out_row + offset, x + o * block, (size_t)block * sizeof *x);
        }
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Gather
 * ------------------------------------------------------------------------ */

/*
 * Returns the offset, in t's strides, of the first element of a line of
 * index. A line fixes every coordinate but the axis, and lines are
 * numbered row-major over the index's other dimensions. Off the axis an
 * output element and the element of a it reads share their coordinates.
 */
static int64_t gather_line_base(const mr_tensor *t, const mr_tensor *index, int axis,
                                int64_t line) {
    int64_t base = 0;
    for (int d = index->ndim - 1; d >= 0; d--) {
        if (d == axis) {
            continue;
        }
        base += (line % index->shape[d]) * t->stride[d];
        line /= index->shape[d];
    }
    return base;
}

/*
 * Scatter-adds the output gradient into a's gradient. Lines (all
 * coordinates but the axis fixed) write disjoint elements of a, so they
 * run in parallel. Within a line the additions follow the index order.
 */
static void gather_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *a = out->src[0];
    const mr_tensor *index = out->src[1];
    float *da = mr_tensor_grad_buffer(ctx, a);
    if (da == NULL) {
        return;
    }
    int axis = out->iparams[0];
    int64_t length = index->shape[axis];
    int64_t lines = length > 0 ? mr_tensor_numel(index) / length : 0;
    int64_t index_step = index->stride[axis];
    int64_t a_step = a->stride[axis];

#pragma omp parallel for schedule(static)
    for (int64_t line = 0; line < lines; line++) {
        int64_t a_base = gather_line_base(a, index, axis, line);
        int64_t index_base = gather_line_base(index, index, axis, line);
        for (int64_t j = 0; j < length; j++) {
            int64_t at = index_base + j * index_step;
            da[a_base + index->idata[at] * a_step] += out->grad[at];
        }
    }
}

mr_tensor *mr_tensor_gather(mr_ctx *ctx, mr_tensor *a, int axis,
                            mr_tensor *index) {
    if (mr_any_null(2, a, index)) {
        return NULL;
    }
    if (!mr_check_dtype(ctx, "gather", "a", a, MR_F32) ||
        !mr_check_dtype(ctx, "gather", "index", index, MR_I32)) {
        return NULL;
    }
    axis = mr_axis_check(ctx, "gather", a, axis);
    if (axis < 0) {
        return NULL;
    }
    char a_shape[96], index_shape[96];
    bool fits = index->ndim == a->ndim;
    for (int d = 0; fits && d < a->ndim; d++) {
        fits = d == axis || index->shape[d] <= a->shape[d];
    }
    if (!fits) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "gather: index of shape %s must have the %d dimensions of a (shape %s) "
                    "and be no larger on the dimensions other than axis %d",
                    mr_tensor_shape_string(index, index_shape, sizeof index_shape), a->ndim,
                    mr_tensor_shape_string(a, a_shape, sizeof a_shape), axis);
        return NULL;
    }
    a = mr_tensor_contiguous(ctx, a);
    index = mr_tensor_contiguous(ctx, index);
    if (mr_any_null(2, a, index)) {
        return NULL;
    }

    /* Check every index value before any output exists. */
    int64_t count = mr_tensor_numel(index);
    int64_t limit = a->shape[axis];
    for (int64_t i = 0; i < count; i++) {
        int32_t value = index->idata[i];
        if (value < 0 || value >= limit) {
            char position[96];
            mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                        "gather: index value %d at position %s is outside [0, %lld) for "
                        "axis %d of a (shape %s)",
                        (int)value,
                        coordinates_string(index->ndim, index->shape, i, position,
                                           sizeof position),
                        (long long)limit, axis,
                        mr_tensor_shape_string(a, a_shape, sizeof a_shape));
            return NULL;
        }
    }

    mr_tensor *srcs[2] = {a, index};
    mr_tensor *out = mr_op_output(ctx, "gather", index->ndim, index->shape, srcs, 2,
                                  gather_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = axis;

    int64_t length = index->shape[axis];
    int64_t lines = length > 0 ? count / length : 0;
    int64_t index_step = index->stride[axis];
    int64_t a_step = a->stride[axis];
#pragma omp parallel for schedule(static)
    for (int64_t line = 0; line < lines; line++) {
        int64_t a_base = gather_line_base(a, index, axis, line);
        int64_t index_base = gather_line_base(index, index, axis, line);
        for (int64_t j = 0; j < length; j++) {
            int64_t at = index_base + j * index_step;
            out->data[at] = a->data[a_base + index->idata[at] * a_step];
        }
    }
    return out;
}
