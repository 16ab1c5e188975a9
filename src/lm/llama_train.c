/*
 * The Llama forward pass on engine operations, recorded for autodiff:
 *
 *   x = token_embd[tokens]
 *   per block:  h = rms_norm(x) * attn_norm
 *               q, k, v = h Wq^T (+ bq), h Wk^T (+ bk), h Wv^T (+ bv)
 *               q, k = rope(q), rope(k) at positions 0..T-1
 *               x = x + attention(q, k, v, causal, grouped) Wo^T
 *               h = rms_norm(x) * ffn_norm
 *               x = x + (silu(h Wgate^T) * (h Wup^T)) Wdown^T
 *   logits = rms_norm(x) * output_norm  Wout^T
 *
 * Wout is output.weight, or token_embd.weight when the output is tied, in
 * which case its gradient sums both uses.
 *
 * mr_llama_logits() takes the model's F32 parameters. mr_lora_logits()
 * runs the same operations with the weights as constants, which get no
 * gradient, and adds the adapter's term to each block projection, so that
 * with the adapter off both give the same logits bit for bit.
 *
 * With checkpointing on (mr_llama_set_checkpointing), each block runs
 * through mr_tensor_checkpoint(): only its output stays in the step's
 * context, and the backward pass recomputes the block's activations.
 */
#include <string.h>

#include "llama_internal.h"

/* One forward pass under construction: the model, the step's context and
 * how weights are taken. */
typedef struct forward_pass {
    const mr_llama *model;
    mr_ctx *ctx;
    const llama_forward_options *options;
} forward_pass;

/*
 * Returns weight w as a constant F32 tensor in ctx: [ne[1], ne[0]], or
 * [ne[0]] for a vector. F32 storage is shared, other types are decoded.
 */
static mr_tensor *constant_weight(mr_ctx *ctx, const mr_llama_weight *w) {
    int64_t shape[2] = {w->ne[1], w->ne[0]};
    int64_t vector_shape[1] = {w->ne[0]};
    int ndim = w->n_dims;
    const int64_t *dims = ndim == 1 ? vector_shape : shape;
    if (w->type != MR_QTYPE_F32) {
        mr_tensor *t = mr_tensor_new(ctx, MR_F32, ndim, dims);
        for (int64_t r = 0; t != NULL && r < w->ne[1]; r++) {
            llama_weight_row(w, r, t->data + r * w->ne[0]);
        }
        return t;
    }

    /* NOTE: tensor.h has no constructor for a tensor over borrowed memory,
     * so this fills a leaf header the way mr_tensor_new() does. Operations
     * only read it, and without flags it never requires a gradient. */
    mr_tensor *t = mr_ctx_alloc(ctx, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->dtype = MR_F32;
    t->ndim = ndim;
    for (int i = 0; i < MR_MAX_DIMS; i++) {
        t->shape[i] = i < ndim ? dims[i] : 1;
        t->stride[i] = 1;
    }
    if (ndim == 2) {
        t->stride[0] = w->ne[0];
    }
    t->data = (float *)w->data;
    t->op = "leaf";
    t->owner = ctx;
    return t;
}

/* The tensor of weight w for this pass (NULL when w is NULL): its F32
 * parameter, or a constant. */
static mr_tensor *weight_tensor(const forward_pass *pass, const mr_llama_weight *w) {
    if (w == NULL) {
        return NULL;
    }
    return pass->options->constant_weights ? constant_weight(pass->ctx, w) : w->param;
}

/* The tensor of a block weight (NULL when the config has none). */
static mr_tensor *block_tensor(const forward_pass *pass, int layer, enum llama_block_kind kind) {
    return weight_tensor(pass, llama_block_weight(pass->model, layer, kind));
}

/* Computes x W^T (+ b) for weight kind of block layer, plus the adapter's term.
 * bias_kind is LLAMA_BLOCK_KINDS for a projection without bias. */
static mr_tensor *project(const forward_pass *pass, mr_tensor *x, int layer,
                          enum llama_block_kind kind, enum llama_block_kind bias_kind) {
    mr_tensor *bias = bias_kind == LLAMA_BLOCK_KINDS ? NULL : block_tensor(pass, layer, bias_kind);
    mr_tensor *y = mr_tensor_linear(pass->ctx, x, block_tensor(pass, layer, kind), bias);
    if (pass->options->adapter == NULL) {
        return y;
    }
    return pass->options->adapter(pass->options->adapter_data, pass->ctx, x, y, layer, kind);
}

/* Splits y [B, T, H * D] into heads, [B, H, T, D] as a strided view. */
static mr_tensor *split_heads(mr_ctx *ctx, mr_tensor *y, int64_t batch, int64_t t_len,
                              int heads, int head_dim) {
    int64_t shape[4] = {batch, t_len, heads, head_dim};
    return mr_tensor_transpose(ctx, mr_tensor_reshape(ctx, y, 4, shape), 1, 2);
}

/* Adds one block's attention and feed-forward outputs to x [B, T, C]. */
static mr_tensor *block_forward(const forward_pass *pass, int layer, mr_tensor *x) {
    const mr_llama_config *c = &pass->model->config;
    mr_ctx *ctx = pass->ctx;
    int64_t batch = x->shape[0], t_len = x->shape[1];
    enum llama_block_kind none = LLAMA_BLOCK_KINDS;

    /* Attention with rotary positions on q and k. The bias weights are
     * NULL unless the config has qkv_bias. */
    mr_tensor *h = mr_tensor_rms_norm(ctx, x, block_tensor(pass, layer, LLAMA_ATTN_NORM),
                                      c->rms_eps);
    mr_tensor *q = project(pass, h, layer, LLAMA_ATTN_Q, LLAMA_ATTN_Q_BIAS);
    mr_tensor *k = project(pass, h, layer, LLAMA_ATTN_K, LLAMA_ATTN_K_BIAS);
    mr_tensor *v = project(pass, h, layer, LLAMA_ATTN_V, LLAMA_ATTN_V_BIAS);
    if (q == NULL || k == NULL || v == NULL) {
        return NULL;
    }
    q = mr_tensor_rope(ctx, split_heads(ctx, q, batch, t_len, c->heads, c->head_dim), NULL,
                       c->rope_base, c->rope_layout);
    k = mr_tensor_rope(ctx, split_heads(ctx, k, batch, t_len, c->kv_heads, c->head_dim), NULL,
                       c->rope_base, c->rope_layout);
    v = split_heads(ctx, v, batch, t_len, c->kv_heads, c->head_dim);
    mr_tensor *att = mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, MR_SOFTMAX_CAUSAL);
    int64_t merged[3] = {batch, t_len, llama_q_width(c)};
    att = mr_tensor_reshape(ctx, mr_tensor_transpose(ctx, att, 1, 2), 3, merged);
    x = mr_tensor_add(ctx, x, project(pass, att, layer, LLAMA_ATTN_OUTPUT, none));

    /* SwiGLU feed-forward. */
    h = mr_tensor_rms_norm(ctx, x, block_tensor(pass, layer, LLAMA_FFN_NORM), c->rms_eps);
    mr_tensor *gate = project(pass, h, layer, LLAMA_FFN_GATE, none);
    mr_tensor *up = project(pass, h, layer, LLAMA_FFN_UP, none);
    mr_tensor *ffn = project(pass, mr_tensor_swiglu(ctx, gate, up), layer, LLAMA_FFN_DOWN, none);
    return mr_tensor_add(ctx, x, ffn);
}

/* A block run under mr_tensor_checkpoint(): the model, a copy of the
 * forward options (the caller's may be gone by the backward pass) and the
 * adapter's random stream as it was before the block's first run. */
typedef struct checkpointed_block {
    const mr_llama *model;
    llama_forward_options options;
    int layer;
    bool ran;          /* the first run is done; later runs are recomputations */
    mr_rng rng_before;
} checkpointed_block;

/* Runs one block on inputs[0] for mr_tensor_checkpoint(). The first run
 * advances the adapter's stream as a plain block does. A rerun draws the
 * same dropout masks from the stream rewound to where the first run
 * started, and then puts the stream back where it was. */
static mr_tensor *run_checkpointed_block(mr_ctx *ctx, mr_tensor **inputs, void *data) {
    checkpointed_block *block = data;
    forward_pass pass = {.model = block->model, .ctx = ctx, .options = &block->options};
    mr_rng *rng = block->options.adapter_rng;
    if (!block->ran || rng == NULL) {
        block->ran = true;
        return block_forward(&pass, block->layer, inputs[0]);
    }

    mr_rng current = *rng;
    *rng = block->rng_before;
    mr_tensor *out = block_forward(&pass, block->layer, inputs[0]);
    *rng = current;
    return out;
}

/* Adds block layer to x as block_forward() does, keeping only its output
 * in the pass's context. */
static mr_tensor *checkpoint_block(const forward_pass *pass, int layer, mr_tensor *x) {
    checkpointed_block *block = mr_ctx_alloc(pass->ctx, sizeof *block);
    if (block == NULL) {
        return NULL;
    }
    block->model = pass->model;
    block->options = *pass->options;
    block->layer = layer;
    block->ran = false;
    if (pass->options->adapter_rng != NULL) {
        block->rng_before = *pass->options->adapter_rng;
    }
    return mr_tensor_checkpoint(pass->ctx, run_checkpointed_block, block, 1, &x);
}

mr_tensor *llama_forward_logits(const mr_llama *model, mr_ctx *ctx, mr_tensor *tokens,
                                const llama_forward_options *options) {
    if (tokens == NULL) {
        return NULL;
    }
    const mr_llama_config *c = &model->config;
    const char *subsystem = options->subsystem;
    if (!options->constant_weights && model->params == NULL) {
        mr_ctx_fail(ctx, MR_ERR_STATE,
                    "%s: the training path needs F32 parameters; call "
                    "mr_llama_make_trainable() first",
                    subsystem);
        return NULL;
    }
    if (tokens->dtype != MR_I32 || tokens->ndim != 2) {
        char shape[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: tokens must be I32 [B, T], got %s %s", subsystem,
                    tokens->dtype == MR_I32 ? "I32" : "F32",
                    mr_tensor_shape_string(tokens, shape, sizeof shape));
        return NULL;
    }
    if (tokens->shape[1] > c->context_length) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "%s: %lld tokens per sequence exceed the context length %d", subsystem,
                    (long long)tokens->shape[1], c->context_length);
        return NULL;
    }

    forward_pass pass = {.model = model, .ctx = ctx, .options = options};
    mr_tensor *x =
        mr_tensor_embedding(ctx, weight_tensor(&pass, &model->weights[model->token_embd]), tokens,
                            -1);
    bool checkpoint = model->checkpoint_blocks && mr_ctx_grad_enabled(ctx);
    for (int layer = 0; layer < c->layers && x != NULL; layer++) {
        x = checkpoint ? checkpoint_block(&pass, layer, x) : block_forward(&pass, layer, x);
    }
    x = mr_tensor_rms_norm(ctx, x, weight_tensor(&pass, &model->weights[model->output_norm]),
                           c->rms_eps);
    return mr_tensor_linear(ctx, x, weight_tensor(&pass, &model->weights[model->output]), NULL);
}

void mr_llama_set_checkpointing(mr_llama *model, bool enabled) {
    model->checkpoint_blocks = enabled;
}

bool mr_llama_checkpointing(const mr_llama *model) { return model->checkpoint_blocks; }

mr_tensor *mr_llama_logits(mr_llama *model, mr_ctx *ctx, mr_tensor *tokens) {
    llama_forward_options options = {.subsystem = "llama"};
    return llama_forward_logits(model, ctx, tokens, &options);
}

/* Returns targets with -1 wherever mask is 0, as a new I32 tensor. */
static mr_tensor *apply_mask(mr_ctx *ctx, mr_tensor *targets, mr_tensor *mask,
                             const char *subsystem) {
    char ts[96], ms[96];
    if (mask->dtype != MR_F32 || !mr_tensor_same_shape(mask, targets)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: mask must be F32 of the targets' shape %s, got %s",
                    subsystem, mr_tensor_shape_string(targets, ts, sizeof ts),
                    mr_tensor_shape_string(mask, ms, sizeof ms));
        return NULL;
    }
    mr_tensor *masked = mr_tensor_new(ctx, MR_I32, targets->ndim, targets->shape);
    if (masked == NULL) {
        return NULL;
    }
    int64_t batch = targets->shape[0], t_len = targets->shape[1];
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t t = 0; t < t_len; t++) {
            int32_t target = targets->idata[b * targets->stride[0] + t * targets->stride[1]];
            float keep = mask->data[b * mask->stride[0] + t * mask->stride[1]];
            masked->idata[b * t_len + t] = keep != 0.0f ? target : -1;
        }
    }
    return masked;
}

mr_tensor *llama_forward_loss(const mr_llama *model, mr_ctx *ctx, mr_tensor *tokens,
                              mr_tensor *targets, mr_tensor *mask,
                              const llama_forward_options *options) {
    if (tokens == NULL || targets == NULL) {
        return NULL;
    }
    char ts[96], gs[96];
    if (targets->dtype != MR_I32 || !mr_tensor_same_shape(targets, tokens)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "%s: targets must be I32 of the tokens' shape %s, got %s",
                    options->subsystem, mr_tensor_shape_string(tokens, ts, sizeof ts),
                    mr_tensor_shape_string(targets, gs, sizeof gs));
        return NULL;
    }
    if (mask != NULL) {
        targets = apply_mask(ctx, targets, mask, options->subsystem);
        if (targets == NULL) {
            return NULL;
        }
    }

    mr_tensor *logits = llama_forward_logits(model, ctx, tokens, options);
    return mr_tensor_cross_entropy(ctx, logits, targets, -1, MR_REDUCE_MEAN);
}

mr_tensor *mr_llama_loss(mr_llama *model, mr_ctx *ctx, mr_tensor *tokens, mr_tensor *targets,
                         mr_tensor *mask) {
    llama_forward_options options = {.subsystem = "llama"};
    return llama_forward_loss(model, ctx, tokens, targets, mask, &options);
}
