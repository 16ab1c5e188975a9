/*
 * multiround tensor engine: contexts, tensors, operations and reverse-mode
 * automatic differentiation on the CPU.
 *
 * A context (mr_ctx) owns an arena from which tensors and their buffers
 * are carved. Training code keeps its parameters in one long-lived context
 * and builds each step in a second context that it resets afterwards; once
 * the arena has grown to fit one step, later steps allocate nothing.
 *
 * Every operation computes its result at once (eager execution) and, when
 * gradients are enabled and an input requires them, records itself on the
 * context's tape. mr_tensor_backward() walks the tape in reverse and
 * accumulates gradients into every tensor that requires them.
 *
 * Error handling: an operation whose inputs do not fit (wrong shapes, an
 * index out of range, an arena that cannot grow) returns NULL and stores
 * the first such error in the context; an operation given a NULL input
 * returns NULL without a new message. So a caller can build a whole step
 * and check mr_ctx_status() once at the end.
 *
 * Shapes follow PyTorch: shape[0] is the outermost dimension and the last
 * dimension is contiguous. Strides count elements, not bytes. Negative axis
 * arguments count from the end (-1 is the last dimension).
 *
 *     mr_ctx *params = mr_ctx_create(0);  // lives as long as the model
 *     mr_ctx *ctx = mr_ctx_create(0);     // one training step
 *     mr_tensor *w = mr_tensor_new2d(params, MR_F32, 16, 8);
 *     mr_tensor_set_param(w);
 *     mr_tensor *x = mr_tensor_new2d(ctx, MR_F32, 4, 8);  // fill x->data
 *     mr_tensor *y = mr_tensor_matmul(ctx, x, w, MR_MATMUL_TRANS_B);
 *     mr_tensor *loss = mr_tensor_mean(ctx, mr_tensor_mul(ctx, y, y), -1, 0);
 *     mr_tensor_backward(ctx, loss, NULL);   // w->grad now holds dloss/dw
 *     mr_ctx_reset(ctx);
 */
#ifndef MULTIROUND_TENSOR_H
#define MULTIROUND_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MR_MAX_DIMS 4
#define MR_MAX_SRC 6
#define MR_MAX_IPARAMS 8
#define MR_MAX_FPARAMS 4

typedef struct mr_ctx mr_ctx;
typedef struct mr_tensor mr_tensor;

typedef enum mr_dtype {
    MR_F32 = 0, /* float values; the only type that carries gradients */
    MR_I32 = 1  /* int32 indices, targets and positions */
} mr_dtype;

/* Tensor flags. */
#define MR_FLAG_PARAM 0x1u         /* a trainable parameter with a lasting grad */
#define MR_FLAG_REQUIRES_GRAD 0x2u /* gradients flow into this tensor */

/* Computes gradients of out's inputs from out->grad; set by each operation. */
typedef void (*mr_backward_fn)(mr_ctx *ctx, mr_tensor *out);

/*
 * A tensor of up to MR_MAX_DIMS dimensions. Fields above the marker are
 * public and stable; fields below it belong to the autodiff machinery.
 */
struct mr_tensor {
    mr_dtype dtype;
    int ndim;                    /* 0 for a scalar */
    int64_t shape[MR_MAX_DIMS];  /* unused dimensions hold 1 */
    int64_t stride[MR_MAX_DIMS]; /* in elements; unused dimensions hold 1 */
    float *data;                 /* first element if dtype == MR_F32 */
    int32_t *idata;              /* first element if dtype == MR_I32 */
    float *grad;                 /* same shape and strides as data, or NULL */
    uint32_t flags;              /* MR_FLAG_* */
    char name[48];

    /* Private: the autodiff record. */
    mr_tensor *view_of;          /* tensor whose buffers this view shares */
    int64_t view_offset;         /* element offset into view_of's buffers */
    const char *op;              /* operation name, "leaf" for inputs */
    mr_tensor *src[MR_MAX_SRC];  /* inputs of the operation */
    mr_backward_fn backward;     /* NULL for leaves and views */
    int32_t iparams[MR_MAX_IPARAMS];
    float fparams[MR_MAX_FPARAMS];
    void *saved;                 /* buffers the backward pass needs */
    mr_ctx *owner;
};

/* ------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------ */

/*
 * Creates a context whose arena starts at initial_bytes (0 picks 1 MiB).
 * The arena grows by whole chunks when needed; mr_ctx_reset() merges the
 * chunks into one, so a step that repeats the same work allocates nothing
 * after the first reset. Returns NULL when memory is exhausted.
 */
mr_ctx *mr_ctx_create(size_t initial_bytes);

/* Frees the context and every tensor in it. ctx may be NULL. */
void mr_ctx_free(mr_ctx *ctx);

/*
 * Forgets every tensor, the tape and any stored error, keeping the arena's
 * memory for the next step. Tensors of the context are invalid afterwards.
 */
void mr_ctx_reset(mr_ctx *ctx);

/*
 * Turns recording on or off and returns the previous setting. With
 * recording off (inference), operations compute results without keeping
 * what backward would need.
 */
bool mr_ctx_set_grad_enabled(mr_ctx *ctx, bool enabled);
bool mr_ctx_grad_enabled(const mr_ctx *ctx);

/*
 * Sets whether the context runs in training mode (dropout active) and
 * returns the previous setting. New contexts start in training mode.
 */
bool mr_ctx_set_training(mr_ctx *ctx, bool training);
bool mr_ctx_training(const mr_ctx *ctx);

/* Returns the first error stored since the last reset, or MR_OK. */
mr_status mr_ctx_status(const mr_ctx *ctx);

/* Returns the message of the first stored error, or "" when none. */
const char *mr_ctx_error_message(const mr_ctx *ctx);

/* Copies the context's stored error into err (err may be NULL) and
 * returns its status. */
mr_status mr_ctx_take_error(const mr_ctx *ctx, mr_error *err);

/* Stores an error in the context unless one is stored already. Used by
 * operations; callers rarely need it. */
void mr_ctx_fail(mr_ctx *ctx, mr_status status, const char *fmt, ...)
    MR_PRINTF(3, 4);

/* Arena statistics: bytes in use, bytes reserved and the number of times
 * the arena had to ask the system for memory since creation. */
size_t mr_ctx_used_bytes(const mr_ctx *ctx);
size_t mr_ctx_capacity_bytes(const mr_ctx *ctx);
uint64_t mr_ctx_system_allocations(const mr_ctx *ctx);

/*
 * Returns size bytes of arena memory aligned to 64 bytes, or NULL (with an
 * error stored) when the arena cannot grow. The memory lives until reset.
 */
void *mr_ctx_alloc(mr_ctx *ctx, size_t size);

/* ------------------------------------------------------------------------
 * Creating tensors
 * ------------------------------------------------------------------------ */

/*
 * Creates a contiguous tensor with uninitialised contents. ndim may be 0
 * (a scalar). Every dimension must be >= 0 and the element count must fit
 * the arena; otherwise returns NULL and stores the error.
 */
mr_tensor *mr_tensor_new(mr_ctx *ctx, mr_dtype dtype, int ndim,
                         const int64_t *shape);
mr_tensor *mr_tensor_new1d(mr_ctx *ctx, mr_dtype dtype, int64_t d0);
mr_tensor *mr_tensor_new2d(mr_ctx *ctx, mr_dtype dtype, int64_t d0,
                           int64_t d1);
mr_tensor *mr_tensor_new3d(mr_ctx *ctx, mr_dtype dtype, int64_t d0,
                           int64_t d1, int64_t d2);
mr_tensor *mr_tensor_new4d(mr_ctx *ctx, mr_dtype dtype, int64_t d0,
                           int64_t d1, int64_t d2, int64_t d3);

/* Creates a zero-filled tensor. */
mr_tensor *mr_tensor_zeros(mr_ctx *ctx, mr_dtype dtype, int ndim,
                           const int64_t *shape);

/* Creates a float scalar (ndim 0) holding value. */
mr_tensor *mr_tensor_scalar(mr_ctx *ctx, float value);

/* Creates a contiguous tensor of shape holding a copy of values, which must
 * point at (product of shape) elements in row-major order. */
mr_tensor *mr_tensor_from_f32(mr_ctx *ctx, int ndim, const int64_t *shape,
                              const float *values);
mr_tensor *mr_tensor_from_i32(mr_ctx *ctx, int ndim, const int64_t *shape,
                              const int32_t *values);

/*
 * Marks a float tensor as a trainable parameter: it requires gradients and
 * gets a zeroed gradient buffer in its own context that lasts across
 * backward passes and accumulates until mr_tensor_zero_grad(). A
 * contiguous view of a parameter may be marked as well (so an optimizer
 * can take one weight of a model's flat buffer); its gradient is the
 * matching window of the parameter's.
 */
mr_status mr_tensor_set_param(mr_tensor *t);

/* Makes gradients flow into a tensor that is not a parameter (an input
 * whose gradient a test wants to read). */
void mr_tensor_set_requires_grad(mr_tensor *t, bool requires_grad);
bool mr_tensor_requires_grad(const mr_tensor *t);

/* Sets the gradient of t to zero, if it has one. */
void mr_tensor_zero_grad(mr_tensor *t);

/* Sets a name (truncated to 47 bytes) that checkpoints store the tensor
 * under and that parameter errors report. */
void mr_tensor_set_name(mr_tensor *t, const char *name);

/* Element count (1 for a scalar). */
int64_t mr_tensor_numel(const mr_tensor *t);

/* True when the elements are laid out row-major without gaps. */
bool mr_tensor_is_contiguous(const mr_tensor *t);

/* True when a and b have the same ndim and shape. */
bool mr_tensor_same_shape(const mr_tensor *a, const mr_tensor *b);

/* Writes "[2, 3, 4]" into buf (always NUL-terminated) and returns buf. */
char *mr_tensor_shape_string(const mr_tensor *t, char *buf, size_t size);

/* Fills a float tensor with value. */
void mr_tensor_fill(mr_tensor *t, float value);

/*
 * Copies values between tensors of the same shape and dtype, whatever
 * their strides. Not recorded for autodiff.
 */
mr_status mr_tensor_copy(mr_tensor *dst, const mr_tensor *src);

/* Returns element i of a float tensor in row-major order, whatever the
 * strides (slow; meant for tests and debugging). */
float mr_tensor_get(const mr_tensor *t, int64_t i);

/* ------------------------------------------------------------------------
 * Initialisers (in place, not recorded; the same rng state gives the same
 * values on any thread count)
 * ------------------------------------------------------------------------ */

void mr_tensor_init_zeros(mr_tensor *t);
void mr_tensor_init_normal(mr_tensor *t, float mean, float std, mr_rng *rng);
void mr_tensor_init_uniform(mr_tensor *t, float low, float high, mr_rng *rng);

/*
 * Xavier/Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in +
 * fan_out)). For a 2-D weight [out, in] fan_in = in and fan_out = out; for
 * more dimensions the trailing dimensions form the receptive field as in
 * PyTorch.
 */
void mr_tensor_init_xavier_uniform(mr_tensor *t, float gain, mr_rng *rng);

/* ------------------------------------------------------------------------
 * Autodiff
 * ------------------------------------------------------------------------ */

/*
 * Runs the backward pass from out. When seed is NULL out must hold one
 * element and its gradient starts at 1; otherwise seed holds
 * mr_tensor_numel(out) values (row-major) that start out's gradient.
 * Gradients accumulate into every tensor that requires them; parameters
 * keep theirs until mr_tensor_zero_grad(). Returns the context's status.
 */
mr_status mr_tensor_backward(mr_ctx *ctx, mr_tensor *out, const float *seed);

/*
 * Returns the gradient buffer of t, allocating a zeroed one in ctx if t has
 * none yet. For a view it is the matching window of the viewed tensor's
 * gradient. Used by backward functions.
 */
float *mr_tensor_grad_buffer(mr_ctx *ctx, mr_tensor *t);

/* ------------------------------------------------------------------------
 * Views: share the input's buffers when the layout allows, otherwise copy.
 * Gradients of a view land directly in the viewed tensor's gradient.
 * ------------------------------------------------------------------------ */

/* Reshapes to ndim/shape with the same element count; one dimension may be
 * -1 and is inferred. A view if t is contiguous, a recorded copy if not. */
mr_tensor *mr_tensor_reshape(mr_ctx *ctx, mr_tensor *t, int ndim,
                             const int64_t *shape);

/* Elements start .. start+length-1 of dimension axis, as a view. */
mr_tensor *mr_tensor_slice(mr_ctx *ctx, mr_tensor *t, int axis, int64_t start,
                           int64_t length);

/* Swaps two dimensions, as a view. */
mr_tensor *mr_tensor_transpose(mr_ctx *ctx, mr_tensor *t, int axis0,
                               int axis1);

/* Reorders dimensions: result dimension i is input dimension perm[i]. */
mr_tensor *mr_tensor_permute(mr_ctx *ctx, mr_tensor *t, const int *perm);

/* Returns t itself when contiguous, otherwise a recorded contiguous copy. */
mr_tensor *mr_tensor_contiguous(mr_ctx *ctx, mr_tensor *t);

/* ------------------------------------------------------------------------
 * Matrix products
 * ------------------------------------------------------------------------ */

#define MR_MATMUL_TRANS_A 0x1
#define MR_MATMUL_TRANS_B 0x2

/*
 * Batched matrix product op(a) @ op(b), where op transposes the last two
 * dimensions when the matching flag is set. a is [..., M, K] (or [..., K, M]
 * with TRANS_A) and b is [..., K, N] (or [..., N, K] with TRANS_B).
 * Leading (batch) dimensions must be equal, or b may be 2-D and is then
 * shared by every batch entry (a linear layer: x @ W^T with TRANS_B).
 * Transposed views are passed to BLAS as transposes without a copy.
 * Result: [..., M, N].
 */
mr_tensor *mr_tensor_matmul(mr_ctx *ctx, mr_tensor *a, mr_tensor *b,
                            int flags);

/* x @ w^T + bias for x [..., in], w [out, in], bias [out] or NULL. */
mr_tensor *mr_tensor_linear(mr_ctx *ctx, mr_tensor *x, mr_tensor *w,
                            mr_tensor *bias);

/* ------------------------------------------------------------------------
 * Element-wise arithmetic with NumPy broadcasting: shapes align at the
 * last dimension, and a dimension of size 1 (or a missing one) stretches.
 * ------------------------------------------------------------------------ */

mr_tensor *mr_tensor_add(mr_ctx *ctx, mr_tensor *a, mr_tensor *b);
mr_tensor *mr_tensor_sub(mr_ctx *ctx, mr_tensor *a, mr_tensor *b);
mr_tensor *mr_tensor_mul(mr_ctx *ctx, mr_tensor *a, mr_tensor *b);
mr_tensor *mr_tensor_div(mr_ctx *ctx, mr_tensor *a, mr_tensor *b);

/* a * s. */
mr_tensor *mr_tensor_scale(mr_ctx *ctx, mr_tensor *a, float s);

/* a + s. */
mr_tensor *mr_tensor_add_scalar(mr_ctx *ctx, mr_tensor *a, float s);

/* ------------------------------------------------------------------------
 * Reductions
 * ------------------------------------------------------------------------ */

/*
 * Sum or mean over one axis; axis MR_AXIS_ALL reduces every element to a
 * scalar. keepdim keeps the reduced axis with size 1.
 */
#define MR_AXIS_ALL 127
mr_tensor *mr_tensor_sum(mr_ctx *ctx, mr_tensor *a, int axis, bool keepdim);
mr_tensor *mr_tensor_mean(mr_ctx *ctx, mr_tensor *a, int axis, bool keepdim);

/* ------------------------------------------------------------------------
 * Indexing
 * ------------------------------------------------------------------------ */

/*
 * Embedding lookup: weight [V, C], ids (I32) of any shape -> [..., C].
 * Ids equal to padding_index (pass -1 for none) give zero rows and send no
 * gradient. The backward pass scatter-adds into the rows used. An id
 * outside [0, V) stores an error naming it.
 */
mr_tensor *mr_tensor_embedding(mr_ctx *ctx, mr_tensor *weight, mr_tensor *ids,
                               int32_t padding_index);

/*
 * Concatenates n tensors along axis; all other dimensions must match.
 */
mr_tensor *mr_tensor_concat(mr_ctx *ctx, mr_tensor **tensors, int n, int axis);

/*
 * Gathers along axis as torch.gather: index (I32) has a's ndim and
 * out[i][j][k] = a[i][index[i][j][k]][k] for axis 1. Other dimensions of
 * index may be smaller than a's.
 */
mr_tensor *mr_tensor_gather(mr_ctx *ctx, mr_tensor *a, int axis,
                            mr_tensor *index);

/* ------------------------------------------------------------------------
 * Normalisation
 * ------------------------------------------------------------------------ */

/* Layer norm over the last dimension C; weight and bias [C] may be NULL. */
mr_tensor *mr_tensor_layer_norm(mr_ctx *ctx, mr_tensor *x, mr_tensor *weight,
                                mr_tensor *bias, float eps);

/* x / sqrt(mean(x^2) + eps) * weight over the last dimension; weight [C]
 * may be NULL. */
mr_tensor *mr_tensor_rms_norm(mr_ctx *ctx, mr_tensor *x, mr_tensor *weight,
                              float eps);

/* ------------------------------------------------------------------------
 * Softmax over the last dimension
 * ------------------------------------------------------------------------ */

/* With MR_SOFTMAX_CAUSAL the input is [..., T, S] and row i may see columns
 * j <= i + (S - T), which also covers queries that follow a cache. */
#define MR_SOFTMAX_CAUSAL 0x1

/*
 * Softmax of x over its last dimension. mask, if not NULL, is a float
 * tensor broadcastable to x in which 0 hides an entry and any other value
 * keeps it. Hidden entries get probability 0; a row with every entry hidden
 * is all zeros. log_softmax gives hidden entries -INFINITY and sends them no
 * gradient.
 */
mr_tensor *mr_tensor_softmax(mr_ctx *ctx, mr_tensor *x, mr_tensor *mask,
                             int flags);
mr_tensor *mr_tensor_log_softmax(mr_ctx *ctx, mr_tensor *x, mr_tensor *mask,
                                 int flags);

/* ------------------------------------------------------------------------
 * Activations and dropout
 * ------------------------------------------------------------------------ */

/* GELU with the exact erf form: x * 0.5 * (1 + erf(x / sqrt(2))). */
mr_tensor *mr_tensor_gelu(mr_ctx *ctx, mr_tensor *x);
mr_tensor *mr_tensor_silu(mr_ctx *ctx, mr_tensor *x);
mr_tensor *mr_tensor_relu(mr_ctx *ctx, mr_tensor *x);
mr_tensor *mr_tensor_sigmoid(mr_ctx *ctx, mr_tensor *x);
mr_tensor *mr_tensor_tanh(mr_ctx *ctx, mr_tensor *x);

/* log(sigmoid(x)), computed without overflow for large |x|. */
mr_tensor *mr_tensor_log_sigmoid(mr_ctx *ctx, mr_tensor *x);

/*
 * Computes the SwiGLU gate of a Llama feed-forward layer, silu(gate) * up,
 * for gate and up of the same shape. Values and gradients are rounded in
 * the same order as by mr_tensor_mul(ctx, mr_tensor_silu(ctx, gate), up),
 * which the tests check bit for bit, but take one pass each way and keep
 * no silu(gate) tensor.
 */
mr_tensor *mr_tensor_swiglu(mr_ctx *ctx, mr_tensor *gate, mr_tensor *up);

/*
 * Inverted dropout: in training mode each element is zeroed with
 * probability p and the rest are scaled by 1/(1-p). The mask depends only
 * on the rng state and the element index, not on the thread count; rng
 * advances by one draw. Outside training mode, or with p == 0, returns x.
 */
mr_tensor *mr_tensor_dropout(mr_ctx *ctx, mr_tensor *x, float p, mr_rng *rng);

/* ------------------------------------------------------------------------
 * Attention and positions
 * ------------------------------------------------------------------------ */

/*
 * Fused scaled dot-product attention. q is [B, Hq, T, D]; k and v are
 * [B, Hkv, S, D] with Hq a multiple of Hkv (grouped-query attention: query
 * head h reads key/value head h / (Hq / Hkv)). flags may hold
 * MR_SOFTMAX_CAUSAL (query i sees keys j <= i + S - T). key_mask, if not
 * NULL, is a float [B, S] tensor where 0 hides a key. scale <= 0 selects
 * 1/sqrt(D). Result: [B, Hq, T, D]. A query that sees no key outputs zeros.
 */
mr_tensor *mr_tensor_attention(mr_ctx *ctx, mr_tensor *q, mr_tensor *k,
                               mr_tensor *v, mr_tensor *key_mask, float scale,
                               int flags);

/* With MR_ATTENTION_ALL_KEYS_IF_EMPTY, a query that sees no key attends over
 * all S keys as if nothing were masked, causal limit included. That is what
 * adding -10000 to every hidden logit gives such a query. */
#define MR_ATTENTION_ALL_KEYS_IF_EMPTY 0x2

/*
 * mr_tensor_attention with two additions. flags may also hold
 * MR_ATTENTION_ALL_KEYS_IF_EMPTY. In training mode with dropout > 0, the
 * probabilities [B, Hq, T, S] get inverted dropout before they weight the
 * values: each is zeroed with probability dropout and the rest are scaled
 * by 1/(1 - dropout). The mask is the one mr_tensor_dropout would draw for
 * a contiguous [B, Hq, T, S] tensor from the same rng state, and rng
 * advances by one draw. dropout must be in [0, 1), and rng may be NULL
 * only when no mask is drawn. With dropout 0 and no new flag this is
 * mr_tensor_attention.
 */
mr_tensor *mr_tensor_attention_ex(mr_ctx *ctx, mr_tensor *q, mr_tensor *k,
                                  mr_tensor *v, mr_tensor *key_mask, float scale,
                                  int flags, float dropout, mr_rng *rng);

typedef enum mr_rope_layout {
    MR_ROPE_ADJACENT = 0, /* rotates pairs (2i, 2i+1): GGUF llama, llama2.c */
    MR_ROPE_HALVES = 1    /* rotates pairs (i, i + D/2): Hugging Face, NeoX */
} mr_rope_layout;

/*
 * Rotary position embedding of x [..., T, D] (D even). positions (I32 [T])
 * gives each row's position; NULL means 0..T-1. Pair i rotates by angle
 * pos * theta^(-2i/D).
 */
mr_tensor *mr_tensor_rope(mr_ctx *ctx, mr_tensor *x, mr_tensor *positions,
                          float theta, mr_rope_layout layout);

/* ------------------------------------------------------------------------
 * Losses
 * ------------------------------------------------------------------------ */

typedef enum mr_reduction {
    MR_REDUCE_MEAN = 0, /* mean over counted elements; a scalar */
    MR_REDUCE_SUM = 1,  /* sum over counted elements; a scalar */
    MR_REDUCE_NONE = 2  /* one loss per element or row */
} mr_reduction;

/*
 * Cross-entropy of logits [..., V] against targets (I32, logits' shape
 * without the last dimension). Targets equal to ignore_index count for
 * nothing: they get loss 0 and no gradient, and MEAN divides by the number
 * of the other targets (0 when there are none). A target outside [0, V)
 * that is not ignore_index stores an error.
 */
mr_tensor *mr_tensor_cross_entropy(mr_ctx *ctx, mr_tensor *logits,
                                   mr_tensor *targets, int32_t ignore_index,
                                   mr_reduction reduction);

/*
 * Binary cross-entropy with logits: -(y log s(x) + (1 - y) log(1 - s(x))),
 * computed stably. targets is a float tensor of x's shape; weight, if not
 * NULL, is broadcastable to x and multiplies each element's loss (MEAN then
 * divides by the element count, as PyTorch does).
 */
mr_tensor *mr_tensor_bce_with_logits(mr_ctx *ctx, mr_tensor *logits,
                                     mr_tensor *targets, mr_tensor *weight,
                                     mr_reduction reduction);

/* ------------------------------------------------------------------------
 * Recurrent, convolution and Fourier layers
 * ------------------------------------------------------------------------ */

/*
 * One-layer GRU over x [B, T, I] with PyTorch's gate order (reset, update,
 * new) and equations. w_ih [3H, I], w_hh [3H, H], b_ih and b_hh [3H] (either
 * may be NULL), h0 [B, H] or NULL for zeros. Result: every step's hidden
 * state, [B, T, H].
 */
mr_tensor *mr_tensor_gru(mr_ctx *ctx, mr_tensor *x, mr_tensor *h0,
                         mr_tensor *w_ih, mr_tensor *w_hh, mr_tensor *b_ih,
                         mr_tensor *b_hh);

/*
 * Dilated causal 1-D convolution over time: x [B, T, Cin], w [Cout, Cin, K],
 * bias [Cout] or NULL. Output step t reads inputs t - (K-1-k)*dilation for
 * k = 0..K-1, with zeros before the start. Result: [B, T, Cout].
 */
mr_tensor *mr_tensor_conv1d_causal(mr_ctx *ctx, mr_tensor *x, mr_tensor *w,
                                   mr_tensor *bias, int dilation);

/*
 * Real DFT along axis with orthonormal scaling (numpy's norm="ortho"). An
 * axis of length n becomes 2F with F = n/2 + 1: entries 0..F-1 hold the
 * real parts of the F non-negative frequencies and entries F..2F-1 the
 * imaginary parts. Direct O(n^2) sums, meant for n up to a few hundred.
 */
mr_tensor *mr_tensor_rdft(mr_ctx *ctx, mr_tensor *x, int axis);

/*
 * Inverse of mr_tensor_rdft: the axis holds 2F entries laid out as above
 * and n (with n/2 + 1 == F) is the length to restore. Imaginary parts of
 * the zero frequency (and of n/2 for even n) are ignored, as in numpy's
 * irfft.
 */
mr_tensor *mr_tensor_irdft(mr_ctx *ctx, mr_tensor *x, int axis, int64_t n);

/* ------------------------------------------------------------------------
 * Gradient checkpointing (src/engine/checkpoint.c)
 * ------------------------------------------------------------------------ */

/* Builds an F32 output from inputs with operations in ctx; data is the
 * caller's. See mr_tensor_checkpoint() for what the function may do. */
typedef mr_tensor *(*mr_checkpoint_fn)(mr_ctx *ctx, mr_tensor **inputs, void *data);

/*
 * Computes fn(ctx, inputs, data) without keeping its intermediate tensors
 * in ctx: fn runs on copies of the n_inputs (0 to MR_MAX_SRC) inputs in a
 * scratch context that is freed at once, and only the output is copied
 * into ctx. The backward pass runs fn again on fresh copies and
 * backpropagates through that run, so gradients reach the inputs and any
 * parameter fn reads, as if fn had run in ctx. Peak memory then holds one
 * call's intermediates at a time instead of all of them. With contiguous
 * inputs the gradients are bit for bit those of running fn in ctx. A
 * strided input reaches fn as a contiguous copy, which can change the
 * order in which gradient terms add up, so they may differ by rounding.
 *
 * fn must compute the same values when run again: it may read parameters
 * and other tensors that outlive the backward pass, and data must live as
 * long. A random stream that fn draws from must be rewound by fn itself.
 * With recording off in ctx, fn simply runs in ctx. An error inside fn is
 * moved into ctx and the call returns NULL.
 */
mr_tensor *mr_tensor_checkpoint(mr_ctx *ctx, mr_checkpoint_fn fn, void *data, int n_inputs,
                                mr_tensor **inputs);

/*
 * Returns the largest number of arena bytes in use at once since the last
 * reset, counting the scratch contexts of checkpointed calls on top of what
 * ctx used while each ran. Without checkpoints it equals
 * mr_ctx_used_bytes(), because the arena frees nothing before a reset.
 */
size_t mr_ctx_peak_bytes(const mr_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_TENSOR_H */
