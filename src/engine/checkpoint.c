/*
 * Gradient checkpointing: an operation whose forward pass is a caller's
 * function, run in a scratch context that is freed at once, so that the
 * function's intermediate tensors do not stay in the caller's arena. The
 * backward pass runs the function again in a fresh scratch context with
 * recording on, backpropagates the output's gradient through that copy
 * and adds what reached the inputs to their gradients.
 *
 * Both runs see copies of the inputs made the same way, so a deterministic
 * function computes the same values twice, and with contiguous inputs the
 * gradients equal those of running the function directly in the caller's
 * context bit for bit.
 * NOTE: a strided input is copied into a contiguous one, so operations
 * inside the function skip the copies they would make of it and gradient
 * terms can add up in another order, which changes float32 rounding.
 */
#include <string.h>

#include "ctx.h"
#include "internal.h"

/* What the backward pass needs to run the function again. */
typedef struct checkpoint_record {
    mr_checkpoint_fn fn;
    void *data;
    int n_inputs;
    mr_tensor *inputs[MR_MAX_SRC];
} checkpoint_record;

/* Creates a scratch context with the caller's training mode and recording
 * on; stores an error in ctx and returns NULL when memory runs out. */
static mr_ctx *scratch_create(mr_ctx *ctx) {
    mr_ctx *scratch = mr_ctx_create(0);
    if (scratch == NULL) {
        mr_ctx_fail(ctx, MR_ERR_NO_MEMORY, "checkpoint: no memory for a scratch context");
        return NULL;
    }
    scratch->training = ctx->training;
    scratch->grad_enabled = true;
    return scratch;
}

/* Records the scratch context's bytes on top of ctx's current use in ctx's
 * peak, then frees the scratch context. */
static void scratch_free(mr_ctx *ctx, mr_ctx *scratch) {
    size_t peak = ctx->used + mr_ctx_peak_bytes(scratch);
    if (peak > ctx->peak_nested) {
        ctx->peak_nested = peak;
    }
    mr_ctx_free(scratch);
}

/* Copies the values of src into dst, a contiguous tensor of its shape. */
static void copy_values(mr_tensor *dst, const mr_tensor *src) {
    if (!mr_tensor_is_contiguous(src)) {
        mr_tensor_copy(dst, src);
        return;
    }
    size_t bytes = (size_t)mr_tensor_numel(src) * 4; /* float and int32 alike */
    if (src->dtype == MR_F32) {
        memcpy(dst->data, src->data, bytes);
    } else {
        memcpy(dst->idata, src->idata, bytes);
    }
}

/* Copies src into a new contiguous leaf of scratch that requires a
 * gradient when src does. */
static mr_tensor *input_copy(mr_ctx *scratch, mr_tensor *src) {
    mr_tensor *copy = mr_tensor_new(scratch, src->dtype, src->ndim, src->shape);
    if (copy == NULL) {
        return NULL;
    }
    copy_values(copy, src);
    if (src->dtype == MR_F32 && mr_tensor_requires_grad(src)) {
        mr_tensor_set_requires_grad(copy, true);
    }
    return copy;
}

/* Runs fn on copies of inputs in scratch; copies[] receives the copies.
 * Returns the output, or NULL with the error moved into ctx. */
static mr_tensor *run_in_scratch(mr_ctx *ctx, mr_ctx *scratch, const checkpoint_record *record,
                                 mr_tensor **copies) {
    for (int i = 0; i < record->n_inputs; i++) {
        copies[i] = input_copy(scratch, record->inputs[i]);
    }
    mr_tensor *out = scratch->status == MR_OK ? record->fn(scratch, copies, record->data) : NULL;

    if (scratch->status != MR_OK) {
        mr_ctx_fail(ctx, scratch->status, "%s", scratch->message);
        return NULL;
    }
    if (out == NULL || out->dtype != MR_F32) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "checkpoint: the function returned %s without storing an error; it must "
                    "return an F32 tensor",
                    out == NULL ? "NULL" : "an I32 tensor");
        return NULL;
    }
    return out;
}

/* Adds the gradient of copy (contiguous) into that of input, whatever
 * input's strides. */
static void add_input_grad(mr_ctx *ctx, mr_tensor *input, const mr_tensor *copy) {
    float *grad = mr_tensor_grad_buffer(ctx, input);
    if (grad == NULL) {
        return;
    }
    int64_t count = mr_tensor_numel(input);
    if (mr_tensor_is_contiguous(input)) {
        for (int64_t i = 0; i < count; i++) {
            grad[i] += copy->grad[i];
        }
        return;
    }
    for (int64_t i = 0; i < count; i++) {
        int64_t rest = i, offset = 0;
        for (int d = input->ndim - 1; d >= 0; d--) {
            offset += (rest % input->shape[d]) * input->stride[d];
            rest /= input->shape[d];
        }
        grad[offset] += copy->grad[i];
    }
}

/* Runs the function again with recording on and backpropagates out's
 * gradient through it into the inputs and any parameters it reads. */
static void checkpoint_backward(mr_ctx *ctx, mr_tensor *out) {
    const checkpoint_record *record = out->saved;
    mr_ctx *scratch = scratch_create(ctx);
    if (scratch == NULL) {
        return;
    }

    mr_tensor *copies[MR_MAX_SRC];
    mr_tensor *again = run_in_scratch(ctx, scratch, record, copies);
    if (again != NULL && !mr_tensor_same_shape(again, out)) {
        char got[96], want[96];
        mr_ctx_fail(ctx, MR_ERR_STATE,
                    "checkpoint: the function returned shape %s when run again but %s the "
                    "first time; it must be deterministic",
                    mr_tensor_shape_string(again, got, sizeof got),
                    mr_tensor_shape_string(out, want, sizeof want));
        again = NULL;
    }
    if (again != NULL && mr_tensor_backward(scratch, again, out->grad) != MR_OK) {
        mr_ctx_fail(ctx, scratch->status, "%s", scratch->message);
        again = NULL;
    }

    for (int i = 0; again != NULL && i < record->n_inputs; i++) {
        if (copies[i]->grad != NULL && mr_tensor_requires_grad(record->inputs[i])) {
            add_input_grad(ctx, record->inputs[i], copies[i]);
        }
    }
    scratch_free(ctx, scratch);
}

mr_tensor *mr_tensor_checkpoint(mr_ctx *ctx, mr_checkpoint_fn fn, void *data, int n_inputs,
                                mr_tensor **inputs) {
    if (fn == NULL || n_inputs < 0 || n_inputs > MR_MAX_SRC || (n_inputs > 0 && inputs == NULL)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "checkpoint: needs a function and 0 to %d inputs, got %s and %d inputs",
                    MR_MAX_SRC, fn == NULL ? "no function" : "a function", n_inputs);
        return NULL;
    }
    for (int i = 0; i < n_inputs; i++) {
        if (inputs[i] == NULL) {
            return NULL;
        }
    }
    if (!ctx->grad_enabled) {
        return fn(ctx, inputs, data);
    }

    /* The record lives in ctx, which outlives the backward pass. */
    checkpoint_record *record = mr_ctx_alloc(ctx, sizeof *record);
    if (record == NULL) {
        return NULL;
    }
    memset(record, 0, sizeof *record);
    record->fn = fn;
    record->data = data;
    record->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) {
        record->inputs[i] = inputs[i];
    }

    /* First run: keep only the output. */
    mr_ctx *scratch = scratch_create(ctx);
    if (scratch == NULL) {
        return NULL;
    }
    mr_tensor *copies[MR_MAX_SRC];
    mr_tensor *result = run_in_scratch(ctx, scratch, record, copies);
    mr_tensor *out = result != NULL ? mr_tensor_new(ctx, MR_F32, result->ndim, result->shape)
                                    : NULL;
    if (out != NULL) {
        copy_values(out, result);
    }
    bool requires_grad = out != NULL && mr_tensor_requires_grad(result);
    scratch_free(ctx, scratch);
    if (!requires_grad) {
        return out;
    }

    out->op = "checkpoint";
    for (int i = 0; i < n_inputs; i++) {
        out->src[i] = inputs[i];
    }
    out->backward = checkpoint_backward;
    out->saved = record;
    out->flags |= MR_FLAG_REQUIRES_GRAD;
    if (!mr_ctx_push_tape(ctx, out)) {
        return NULL;
    }
    return out;
}
