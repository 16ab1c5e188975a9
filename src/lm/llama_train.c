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
 */
#include "llama_internal.h"

/* The F32 parameter of a weight (NULL when the config has none). */
static mr_tensor *param_of(const mr_llama_weight *w) {
    return w != NULL ? w->param : NULL;
}

/* Splits y [B, T, H * D] into heads, [B, H, T, D] as a strided view. */
static mr_tensor *split_heads(mr_ctx *ctx, mr_tensor *y, int64_t batch, int64_t t_len,
                              int heads, int head_dim) {
    int64_t shape[4] = {batch, t_len, heads, head_dim};
    return mr_tensor_transpose(ctx, mr_tensor_reshape(ctx, y, 4, shape), 1, 2);
}

/* Adds one block's attention and feed-forward outputs to x [B, T, C]. */
static mr_tensor *block_forward(const mr_llama *model, mr_ctx *ctx, int layer, mr_tensor *x) {
    const mr_llama_config *c = &model->config;
    int64_t batch = x->shape[0], t_len = x->shape[1];

    /* Attention with rotary positions on q and k. */
    mr_tensor *h = mr_tensor_rms_norm(
        ctx, x, param_of(llama_block_weight(model, layer, LLAMA_ATTN_NORM)), c->rms_eps);
    mr_tensor *q = mr_tensor_linear(ctx, h, param_of(llama_block_weight(model, layer, LLAMA_ATTN_Q)),
                                    param_of(llama_block_weight(model, layer, LLAMA_ATTN_Q_BIAS)));
    mr_tensor *k = mr_tensor_linear(ctx, h, param_of(llama_block_weight(model, layer, LLAMA_ATTN_K)),
                                    param_of(llama_block_weight(model, layer, LLAMA_ATTN_K_BIAS)));
    mr_tensor *v = mr_tensor_linear(ctx, h, param_of(llama_block_weight(model, layer, LLAMA_ATTN_V)),
                                    param_of(llama_block_weight(model, layer, LLAMA_ATTN_V_BIAS)));
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
    x = mr_tensor_add(ctx, x, mr_tensor_linear(ctx, att,
                                               param_of(llama_block_weight(model, layer,
                                                                           LLAMA_ATTN_OUTPUT)),
                                               NULL));

    /* SwiGLU feed-forward. */
    h = mr_tensor_rms_norm(ctx, x, param_of(llama_block_weight(model, layer, LLAMA_FFN_NORM)),
                           c->rms_eps);
    mr_tensor *gate = mr_tensor_linear(
        ctx, h, param_of(llama_block_weight(model, layer, LLAMA_FFN_GATE)), NULL);
    mr_tensor *up = mr_tensor_linear(ctx, h, param_of(llama_block_weight(model, layer, LLAMA_FFN_UP)),
                                     NULL);
    mr_tensor *ffn = mr_tensor_linear(ctx, mr_tensor_mul(ctx, mr_tensor_silu(ctx, gate), up),
                                      param_of(llama_block_weight(model, layer, LLAMA_FFN_DOWN)),
                                      NULL);
    return mr_tensor_add(ctx, x, ffn);
}

mr_tensor *mr_llama_logits(mr_llama *model, mr_ctx *ctx, mr_tensor *tokens) {
    if (tokens == NULL) {
        return NULL;
    }
    const mr_llama_config *c = &model->config;
    if (model->params == NULL) {
        mr_ctx_fail(ctx, MR_ERR_STATE,
                    "llama: the training path needs F32 parameters; call "
                    "mr_llama_make_trainable() first");
        return NULL;
    }
    if (tokens->dtype != MR_I32 || tokens->ndim != 2) {
        char shape[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "llama: tokens must be I32 [B, T], got %s %s",
                    tokens->dtype == MR_I32 ? "I32" : "F32",
                    mr_tensor_shape_string(tokens, shape, sizeof shape));
        return NULL;
    }
    if (tokens->shape[1] > c->context_length) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "llama: %lld tokens per sequence exceed the context length %d",
                    (long long)tokens->shape[1], c->context_length);
        return NULL;
    }

    mr_tensor *x = mr_tensor_embedding(ctx, model->weights[model->token_embd].param, tokens, -1);
    for (int layer = 0; layer < c->layers && x != NULL; layer++) {
        x = block_forward(model, ctx, layer, x);
    }
    x = mr_tensor_rms_norm(ctx, x, model->weights[model->output_norm].param, c->rms_eps);
    return mr_tensor_linear(ctx, x, model->weights[model->output].param, NULL);
}

/* Returns targets with -1 wherever mask is 0, as a new I32 tensor. */
static mr_tensor *apply_mask(mr_ctx *ctx, mr_tensor *targets, mr_tensor *mask) {
    char ts[96], ms[96];
    if (mask->dtype != MR_F32 || !mr_tensor_same_shape(mask, targets)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "llama: mask must be F32 of the targets' shape %s, got %s",
                    mr_tensor_shape_string(targets, ts, sizeof ts),
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

mr_tensor *mr_llama_loss(mr_llama *model, mr_ctx *ctx, mr_tensor *tokens, mr_tensor *targets,
                         mr_tensor *mask) {
    if (tokens == NULL || targets == NULL) {
        return NULL;
    }
    char ts[96], gs[96];
    if (targets->dtype != MR_I32 || !mr_tensor_same_shape(targets, tokens)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "llama: targets must be I32 of the tokens' shape %s, got %s",
                    mr_tensor_shape_string(tokens, ts, sizeof ts),
                    mr_tensor_shape_string(targets, gs, sizeof gs));
        return NULL;
    }
    if (mask != NULL) {
        targets = apply_mask(ctx, targets, mask);
    }

    mr_tensor *logits = mr_llama_logits(model, ctx, tokens);
    return mr_tensor_cross_entropy(ctx, logits, targets, -1, MR_REDUCE_MEAN);
}
