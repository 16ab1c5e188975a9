/*
 * The backward pass: walks the context's tape from the newest recorded
 * output to the oldest and calls each output's backward function.
 *
 * The tape holds outputs in creation order, which is a topological order
 * of the graph: an operation's inputs were all created before it. So when
 * the walk reaches a tensor, every consumer of it has already added its
 * share to the tensor's gradient.
 */
#include <string.h>

#include "ctx.h"
#include "internal.h"

float *mr_tensor_grad_buffer(mr_ctx *ctx, mr_tensor *t) {
    if (t->grad != NULL) {
        return t->grad;
    }
    if (t->dtype != MR_F32) {
        return NULL;
    }

    /* A view's gradient is a window of the viewed tensor's gradient. */
    if (t->view_of != NULL) {
        float *root_grad = mr_tensor_grad_buffer(ctx, t->view_of);
        if (root_grad == NULL) {
            return NULL;
        }
        t->grad = root_grad + t->view_offset;
        return t->grad;
    }

    /* Allocate in the tensor's own context so the buffer lives as long as
     * the tensor. */
    size_t bytes = (size_t)mr_tensor_numel(t) * sizeof(float);
    mr_ctx *owner = t->owner != NULL ? t->owner : ctx;
    t->grad = mr_ctx_alloc(owner, bytes);
    if (t->grad == NULL) {
        if (owner != ctx) {
            mr_ctx_fail(ctx, MR_ERR_NO_MEMORY, "engine: no memory for the gradient of '%s'",
                        t->name);
        }
        return NULL;
    }
    memset(t->grad, 0, bytes);
    return t->grad;
}

mr_status mr_tensor_backward(mr_ctx *ctx, mr_tensor *out, const float *seed) {
    if (out == NULL) {
        if (ctx->status == MR_OK) {
            mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "backward: the output tensor is NULL");
        }
        return ctx->status;
    }
    if (ctx->status != MR_OK) {
        return ctx->status;
    }
    int64_t count = mr_tensor_numel(out);
    if (seed == NULL && count != 1) {
        char shape[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "backward: output of shape %s is not a scalar; pass a seed gradient",
                    mr_tensor_shape_string(out, shape, sizeof shape));
        return ctx->status;
    }
    if (!mr_tensor_requires_grad(out)) {
        mr_ctx_fail(ctx, MR_ERR_STATE,
                    "backward: the output does not depend on any tensor that requires a "
                    "gradient (or it was computed with gradients disabled)");
        return ctx->status;
    }

    /* Seed the output's gradient. */
    float *dout = mr_tensor_grad_buffer(ctx, out);
    if (dout == NULL) {
        return ctx->status;
    }
    bool contiguous = mr_tensor_is_contiguous(out);
    for (int64_t i = 0; i < count; i++) {
        float value = seed == NULL ? 1.0f : seed[i];
        if (contiguous) {
            dout[i] += value;
        } else {
            /* A strided view as the output: walk its strides. */
            int64_t rest = i, offset = 0;
            for (int d = out->ndim - 1; d >= 0; d--) {
                offset += (rest % out->shape[d]) * out->stride[d];
                rest /= out->shape[d];
            }
            dout[offset] += value;
        }
    }

    /* Walk the tape backwards. Outputs whose gradient no consumer touched
     * have grad == NULL and are skipped. */
    for (size_t i = ctx->tape_count; i-- > 0;) {
        mr_tensor *t = ctx->tape[i];
        if (t->grad == NULL || t->backward == NULL) {
            continue;
        }
        t->backward(ctx, t);
        if (ctx->status != MR_OK) {
            break;
        }
    }
    return ctx->status;
}
