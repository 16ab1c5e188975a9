/*
 * Element-wise activations (GELU, SiLU, ReLU, sigmoid, tanh, log-sigmoid),
 * the SwiGLU gate silu(gate) * up, and inverted dropout, each with its
 * backward pass.
 *
 * The six activations share one forward and one backward loop. Each is
 * described by a value function y = f(x) and a derivative function that
 * may use x and the stored output y, so backward needs no saved buffers.
 */
#include <math.h>

#include "ctx.h"
#include "fastmath.h"
#include "internal.h"
#include "rng_hash.h"

/* ------------------------------------------------------------------------
 * Scalar functions and their derivatives
 * ------------------------------------------------------------------------ */

static float sigmoid_value(float x) { return mr_sigmoidf(x); }

static float gelu_value(float x) {
    return 0.5f * x * (1.0f + mr_erff(x * (float)M_SQRT1_2));
}

/* d/dx x * Phi(x) = Phi(x) + x * phi(x), with phi the standard normal
 * density. */
static float gelu_derivative(float x, float y) {
    (void)y;
    float cdf = 0.5f * (1.0f + mr_erff(x * (float)M_SQRT1_2));
    float density = mr_expf(-0.5f * x * x) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
    return cdf + x * density;
}

static float silu_value(float x) { return x * sigmoid_value(x); }

/* d/dx x * s(x) = s(x) * (1 + x * (1 - s(x))). */
static float silu_derivative(float x, float y) {
    (void)y;
    float s = sigmoid_value(x);
    return s * (1.0f + x * (1.0f - s));
}

static float relu_value(float x) { return x > 0.0f ? x : 0.0f; }

/* The derivative at exactly 0 is taken as 0, as in PyTorch. */
static float relu_derivative(float x, float y) {
    (void)y;
    return x > 0.0f ? 1.0f : 0.0f;
}

static float sigmoid_derivative(float x, float y) {
    (void)x;
    return y * (1.0f - y);
}

static float tanh_value(float x) { return mr_tanhf(x); }

static float tanh_derivative(float x, float y) {
    (void)x;
    return 1.0f - y * y;
}

/* log s(x) = min(x, 0) - log1p(exp(-|x|)). exp() cannot overflow, and for
 * large positive x the result is -exp(-x) rather than 0 until expf
 * underflows near x = 104. */
static float log_sigmoid_value(float x) {
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

/* d/dx log s(x) = 1 - s(x) = s(-x). */
static float log_sigmoid_derivative(float x, float y) {
    (void)y;
    return sigmoid_value(-x);
}

/* ------------------------------------------------------------------------
 * The shared element-wise pattern
 * ------------------------------------------------------------------------ */

typedef struct unary_kind {
    const char *name;
} unary_kind;

enum { UNARY_GELU, UNARY_SILU, UNARY_RELU, UNARY_SIGMOID, UNARY_TANH, UNARY_LOG_SIGMOID };

static const unary_kind unary_kinds[] = {
    [UNARY_GELU] = {"gelu"},
    [UNARY_SILU] = {"silu"},
    [UNARY_RELU] = {"relu"},
    [UNARY_SIGMOID] = {"sigmoid"},
    [UNARY_TANH] = {"tanh"},
    [UNARY_LOG_SIGMOID] = {"log_sigmoid"},
};

/*
 * One forward and one backward loop per activation, each calling its scalar
 * function directly so that the compiler inlines and vectorises it. A
 * shared loop calling through a function pointer could not be: OpenMP
 * outlines the loop body, and the pointer stops being a constant.
 */
#define DEFINE_UNARY_LOOPS(name)                                                     \
    static void name##_forward_loop(const float *x, float *y, int64_t count) {      \
        _Pragma("omp parallel for simd schedule(static)")                           \
        for (int64_t i = 0; i < count; i++) {                                       \
            y[i] = name##_value(x[i]);                                              \
        }                                                                           \
    }                                                                               \
    static void name##_backward_loop(const float *x, const float *y, const float *dy, \
                                     float *dx, int64_t count) {                    \
        _Pragma("omp parallel for simd schedule(static)")                           \
        for (int64_t i = 0; i < count; i++) {                                       \
            dx[i] += dy[i] * name##_derivative(x[i], y[i]);                         \
        }                                                                           \
    }

DEFINE_UNARY_LOOPS(gelu)
DEFINE_UNARY_LOOPS(silu)
DEFINE_UNARY_LOOPS(relu)
DEFINE_UNARY_LOOPS(sigmoid)
DEFINE_UNARY_LOOPS(tanh)
DEFINE_UNARY_LOOPS(log_sigmoid)

/* Accumulates dx += dy * f'(x) using the input and the stored output. */
static void unary_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *x = out->src[0];
    float *dx = mr_tensor_grad_buffer(ctx, x);
    if (dx == NULL) {
        return;
    }

    int64_t count = mr_tensor_numel(out);
    const float *xs = x->data, *ys = out->data, *dy = out->grad;
    switch (out->iparams[0]) {
    case UNARY_GELU: gelu_backward_loop(xs, ys, dy, dx, count); break;
    case UNARY_SILU: silu_backward_loop(xs, ys, dy, dx, count); break;
    case UNARY_RELU: relu_backward_loop(xs, ys, dy, dx, count); break;
    case UNARY_SIGMOID: sigmoid_backward_loop(xs, ys, dy, dx, count); break;
    case UNARY_TANH: tanh_backward_loop(xs, ys, dy, dx, count); break;
    default: log_sigmoid_backward_loop(xs, ys, dy, dx, count); break;
    }
}

/* Applies activation kind_id to every element of a float tensor of any
 * shape. Returns NULL (error stored) on a wrong dtype or a full arena. */
static mr_tensor *unary_op(mr_ctx *ctx, int kind_id, mr_tensor *x) {
    const unary_kind *kind = &unary_kinds[kind_id];
    if (x == NULL || !mr_check_dtype(ctx, kind->name, "x", x, MR_F32)) {
        return NULL;
    }
    x = mr_tensor_contiguous(ctx, x);
    if (x == NULL) {
        return NULL;
    }

    mr_tensor *srcs[1] = {x};
    mr_tensor *out = mr_op_output(ctx, kind->name, x->ndim, x->shape, srcs, 1, unary_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = kind_id;

    int64_t count = mr_tensor_numel(x);
    switch (kind_id) {
    case UNARY_GELU: gelu_forward_loop(x->data, out->data, count); break;
    case UNARY_SILU: silu_forward_loop(x->data, out->data, count); break;
    case UNARY_RELU: relu_forward_loop(x->data, out->data, count); break;
    case UNARY_SIGMOID: sigmoid_forward_loop(x->data, out->data, count); break;
    case UNARY_TANH: tanh_forward_loop(x->data, out->data, count); break;
    default: log_sigmoid_forward_loop(x->data, out->data, count); break;
    }
    return out;
}

mr_tensor *mr_tensor_gelu(mr_ctx *ctx, mr_tensor *x) {
    return unary_op(ctx, UNARY_GELU, x);
}

mr_tensor *mr_tensor_silu(mr_ctx *ctx, mr_tensor *x) {
    return unary_op(ctx, UNARY_SILU, x);
}

mr_tensor *mr_tensor_relu(mr_ctx *ctx, mr_tensor *x) {
    return unary_op(ctx, UNARY_RELU, x);
}

mr_tensor *mr_tensor_sigmoid(mr_ctx *ctx, mr_tensor *x) {
    return unary_op(ctx, UNARY_SIGMOID, x);
}

mr_tensor *mr_tensor_tanh(mr_ctx *ctx, mr_tensor *x) {
    return unary_op(ctx, UNARY_TANH, x);
}

mr_tensor *mr_tensor_log_sigmoid(mr_ctx *ctx, mr_tensor *x) {
    return unary_op(ctx, UNARY_LOG_SIGMOID, x);
}

/* ------------------------------------------------------------------------
 * SwiGLU
 * ------------------------------------------------------------------------ */

/*
 * dgate += dy * up * silu'(gate) and dup += dy * silu(gate), with silu
 * recomputed from gate. The products are rounded in the same order as in
 * the separate mul and silu backward passes, so the gradients equal
 * theirs bit for bit. dgate or dup may be NULL.
 */
static void swiglu_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *gate = out->src[0], *up = out->src[1];
    float *dgate = mr_tensor_requires_grad(gate) ? mr_tensor_grad_buffer(ctx, gate) : NULL;
    float *dup = mr_tensor_requires_grad(up) ? mr_tensor_grad_buffer(ctx, up) : NULL;
    if (ctx->status != MR_OK) {
        return;
    }

    int64_t count = mr_tensor_numel(out);
    const float *g = gate->data, *u = up->data, *dy = out->grad;
    if (dgate != NULL && dup != NULL) {
        /* One sigmoid per element serves both gradients. silu_value()
         * and silu_derivative() compute the same s, so the bits match. */
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < count; i++) {
            float s = sigmoid_value(g[i]);
            dgate[i] += dy[i] * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
            dup[i] += dy[i] * (g[i] * s);
        }
    } else if (dgate != NULL) {
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < count; i++) {
            dgate[i] += dy[i] * u[i] * silu_derivative(g[i], 0.0f);
        }
    } else if (dup != NULL) {
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < count; i++) {
            dup[i] += dy[i] * silu_value(g[i]);
        }
    }
}

mr_tensor *mr_tensor_swiglu(mr_ctx *ctx, mr_tensor *gate, mr_tensor *up) {
    if (mr_any_null(2, gate, up)) {
        return NULL;
    }
    if (!mr_check_dtype(ctx, "swiglu", "gate", gate, MR_F32) ||
        !mr_check_dtype(ctx, "swiglu", "up", up, MR_F32)) {
        return NULL;
    }
    if (!mr_tensor_same_shape(gate, up)) {
        char sg[96], su[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "swiglu: gate %s and up %s must have the same shape; use "
                    "mr_tensor_mul(mr_tensor_silu(gate), up) to broadcast",
                    mr_tensor_shape_string(gate, sg, sizeof sg),
                    mr_tensor_shape_string(up, su, sizeof su));
        return NULL;
    }
    gate = mr_tensor_contiguous(ctx, gate);
    up = mr_tensor_contiguous(ctx, up);
    if (gate == NULL || up == NULL) {
        return NULL;
    }

    mr_tensor *srcs[2] = {gate, up};
    mr_tensor *out = mr_op_output(ctx, "swiglu", gate->ndim, gate->shape, srcs, 2,
                                  swiglu_backward);
    if (out == NULL) {
        return NULL;
    }
    int64_t count = mr_tensor_numel(gate);
    const float *g = gate->data, *u = up->data;
    float *y = out->data;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) {
        y[i] = silu_value(g[i]) * u[i];
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Dropout
 * ------------------------------------------------------------------------ */

/*
 * Keep decision for element i of the mask with this key: its uniform draw
 * (24 bits) must reach p, so an element is dropped with probability p up
 * to the 2^-24 granularity of the draw.
 */
static bool dropout_keeps(uint64_t mask_key, int64_t i, float p) {
    return mr_rng_bits_to_uniform(rng_hash(mask_key, (uint64_t)i)) >= p;
}

/* Reads the mask that the forward pass saved, so dx is dy / (1 - p) where
 * the element was kept and untouched where it was dropped. */
static void dropout_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *x = out->src[0];
    float *dx = mr_tensor_grad_buffer(ctx, x);
    if (dx == NULL) {
        return;
    }
    const uint8_t *kept = out->saved;
    float scale = out->fparams[1];

    /* Both sides of the select are computed so that the loop vectorises.
     * A dropped element keeps its gradient bits. */
    int64_t count = mr_tensor_numel(out);
    const float *dy = out->grad;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        float added = dx[i] + dy[i] * scale;
        dx[i] = kept[i] ? added : dx[i];
    }
}

mr_tensor *mr_tensor_dropout(mr_ctx *ctx, mr_tensor *x, float p, mr_rng *rng) {
    if (x == NULL || !mr_check_dtype(ctx, "dropout", "x", x, MR_F32)) {
        return NULL;
    }
    if (!(p >= 0.0f && p < 1.0f)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "dropout: probability p = %g is outside [0, 1); pass a drop rate "
                    "such as 0.1",
                    (double)p);
        return NULL;
    }
    if (!mr_ctx_training(ctx) || p == 0.0f) {
        return x;
    }
    if (rng == NULL) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "dropout: rng is NULL; training mode with p = %g needs a random stream",
                    (double)p);
        return NULL;
    }
    x = mr_tensor_contiguous(ctx, x);
    if (x == NULL) {
        return NULL;
    }

    mr_tensor *srcs[1] = {x};
    mr_tensor *out = mr_op_output(ctx, "dropout", x->ndim, x->shape, srcs, 1, dropout_backward);
    if (out == NULL) {
        return NULL;
    }

    /* NOTE: the mask uses a fresh key, the stream's next draw, with element
     * i at counter i. Hashing (key, counter + i) of the stream itself, with
     * the stream advancing by one draw per call, would make the mask of
     * the next call the previous mask shifted by one element. */
    uint64_t mask_key = mr_rng_next_u64(rng);
    float scale = 1.0f / (1.0f - p);
    out->fparams[0] = p;
    out->fparams[1] = scale;

    /* Backward reads the keep decisions from a byte mask instead of
     * hashing every element again. */
    int64_t count = mr_tensor_numel(x);
    uint8_t *kept = NULL;
    if (mr_op_recording(out)) {
        kept = mr_ctx_alloc(ctx, (size_t)(count > 0 ? count : 1));
        if (kept == NULL) {
            return NULL;
        }
        out->saved = kept;
    }
    /* One loop with the mask and one without, each free of branches on
     * the data, so that both vectorise. */
    const float *input = x->data;
    float *output = out->data;
    if (kept != NULL) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < count; i++) {
            bool keep = dropout_keeps(mask_key, i, p);
            float scaled = input[i] * scale;
            kept[i] = keep;
            output[i] = keep ? scaled : 0.0f;
        }
    } else {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < count; i++) {
            float scaled = input[i] * scale;
            output[i] = dropout_keeps(mask_key, i, p) ? scaled : 0.0f;
        }
    }
    return out;
}
