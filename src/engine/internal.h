/*
 * Private helpers shared by the engine's operations. Every operation
 * follows the same steps:
 *
 *   1. return NULL if an input is NULL (an earlier operation stored the
 *      error) and check shapes with mr_ctx_fail() on a mismatch;
 *   2. make inputs contiguous where the kernel needs it
 *      (mr_tensor_contiguous records a copy only when the layout requires);
 *   3. create the output with mr_op_output(), which records the operation
 *      on the tape when gradients are enabled and an input requires them;
 *   4. compute the forward values, saving what backward needs only when
 *      mr_op_recording(out) is true;
 *   5. in the backward function, read out->grad and accumulate (+=) into
 *      mr_tensor_grad_buffer(ctx, src) for each src that requires a
 *      gradient.
 */
#ifndef MR_ENGINE_INTERNAL_H
#define MR_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/tensor.h"

/*
 * Creates the contiguous F32 output of operation op with nsrc inputs. When
 * gradients are enabled in ctx and any input requires them, the output
 * requires them too, keeps srcs and backward, and goes on the tape.
 * Returns NULL (error stored) if the arena cannot grow.
 */
mr_tensor *mr_op_output(mr_ctx *ctx, const char *op, int ndim,
                        const int64_t *shape, mr_tensor **srcs, int nsrc,
                        mr_backward_fn backward);

/* True when out was recorded, so forward must keep what backward needs. */
static inline bool mr_op_recording(const mr_tensor *out) {
    return out->backward != NULL;
}

/* True when any of the n tensors is NULL. */
bool mr_any_null(int n, ...);

/*
 * Turns a possibly negative axis into 0..ndim-1. Stores an error naming op
 * and returns -1 when it is out of range.
 */
int mr_axis_check(mr_ctx *ctx, const char *op, const mr_tensor *t, int axis);

/* Stores an error unless t has dtype; names op and the argument. */
bool mr_check_dtype(mr_ctx *ctx, const char *op, const char *arg,
                    const mr_tensor *t, mr_dtype dtype);

/*
 * Computes the broadcast shape of a and b into shape/ndim. Stores an error
 * naming op and both shapes and returns false when they do not broadcast.
 */
bool mr_broadcast_shape(mr_ctx *ctx, const char *op, const mr_tensor *a,
                        const mr_tensor *b, int *ndim, int64_t *shape);

/* Product of shape[from..to-1]. */
int64_t mr_shape_product(const int64_t *shape, int from, int to);

/*
 * Adds the column sums of the [rows, cols] row-major matrix m to out[cols].
 * Each column is summed over the rows in order in double, so the result
 * does not depend on the thread count. Threads take blocks of columns and
 * read the matrix row by row. Bias gradients use it.
 */
void mr_add_column_sums(const float *m, int64_t rows, int64_t cols, float *out);

/* Sets contiguous row-major strides for shape. */
void mr_set_contiguous_strides(int ndim, const int64_t *shape,
                               int64_t *stride);

#endif /* MR_ENGINE_INTERNAL_H */
