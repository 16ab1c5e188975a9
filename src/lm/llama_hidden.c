/*
 * Final hidden states of the training path, for reward and classifier
 * heads that read them in place of the logits.
 *
 * The forward passes of llama_train.c and lora.c end in
 * logits = output_norm(x) Wout^T. This file runs either pass unchanged with
 * Wout replaced, for the duration of the call, by the identity matrix
 * [C, C], so the "logits" it returns are the normalised states themselves.
 * A product with the identity is exact in floating point (each output is
 * one value times 1 plus zeros), and so is its backward pass, so the
 * states and their gradients match what a separate forward pass would
 * give. The extra cost is one [B T, C] x [C, C] product.
 */
#include <string.h>

#include "llama_internal.h"
#include "multiround/lora.h"

/* Creates the identity matrix [n, n] as a constant tensor of ctx. */
static mr_tensor *identity_matrix(mr_ctx *ctx, int64_t n) {
    int64_t shape[2] = {n, n};
    mr_tensor *eye = mr_tensor_zeros(ctx, MR_F32, 2, shape);
    if (eye == NULL) {
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        eye->data[i * n + i] = 1.0f;
    }
    return eye;
}

mr_tensor *mr_llama_hidden(mr_llama *model, struct mr_lora *lora, mr_ctx *ctx,
                           mr_tensor *tokens) {
    if (model == NULL || tokens == NULL) {
        return NULL;
    }
    const int64_t dim = model->config.dim;

    /* A copy of the weight list with one extra entry, the identity, that
     * stands in for the output projection. With a tied output the
     * embedding keeps its own entry, so only the projection changes. */
    mr_tensor *eye = identity_matrix(ctx, dim);
    mr_llama_weight *weights =
        mr_ctx_alloc(ctx, (size_t)(model->weight_count + 1) * sizeof *weights);
    if (eye == NULL || weights == NULL) {
        return NULL;
    }
    memcpy(weights, model->weights, (size_t)model->weight_count * sizeof *weights);
    mr_llama_weight *stand_in = &weights[model->weight_count];
    memset(stand_in, 0, sizeof *stand_in);
    stand_in->name = "hidden.identity";
    stand_in->type = MR_QTYPE_F32;
    stand_in->n_dims = 2;
    stand_in->ne[0] = dim;
    stand_in->ne[1] = dim;
    stand_in->data = eye->data;
    stand_in->param = eye;

    /* Run the pass with the stand-in, then restore the model whatever the
     * outcome. NOTE: the model is modified during the call, so no other
     * thread may use it at the same time. */
    mr_llama_weight *saved_weights = model->weights;
    int saved_output = model->output;
    model->weights = weights;
    model->output = model->weight_count;
    mr_tensor *hidden = lora != NULL ? mr_lora_logits(lora, ctx, tokens)
                                     : mr_llama_logits(model, ctx, tokens);
    model->weights = saved_weights;
    model->output = saved_output;
    return hidden;
}
