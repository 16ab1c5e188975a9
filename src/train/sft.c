/*
 * Supervised fine-tuning: the mean next-token cross-entropy over the
 * tokens a batch marks as learnt (the completion, or the assistant turns
 * of a conversation), and per-sequence log-probabilities that DPO builds
 * on.
 */
#include "train_internal.h"

/* The policy's logits [B, T, V], through the adapter when there is one. */
static mr_tensor *policy_logits(mr_llama *model, mr_lora *lora, mr_ctx *ctx,
                                mr_tensor *tokens) {
    return lora != NULL ? mr_lora_logits(lora, ctx, tokens) : mr_llama_logits(model, ctx, tokens);
}

mr_tensor *mr_train_sequence_logps(mr_llama *model, mr_lora *lora, mr_ctx *ctx,
                                   mr_tensor *tokens, mr_tensor *targets) {
    if (tokens == NULL || targets == NULL) {
        return NULL;
    }
    if (targets->dtype != MR_I32 || !mr_tensor_same_shape(targets, tokens)) {
        char ts[96], gs[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "train: targets must be I32 of the tokens' shape %s, got %s",
                    mr_tensor_shape_string(tokens, ts, sizeof ts),
                    mr_tensor_shape_string(targets, gs, sizeof gs));
        return NULL;
    }

    /* Cross-entropy per position is -log p(target); ignored targets give 0. */
    mr_tensor *logits = policy_logits(model, lora, ctx, tokens);
    mr_tensor *nll = mr_tensor_cross_entropy(ctx, logits, targets, -1, MR_REDUCE_NONE);
    return mr_tensor_scale(ctx, mr_tensor_sum(ctx, nll, 1, false), -1.0f);
}

mr_tensor *sft_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m) {
    mr_tensor *loss = t->lora != NULL ? mr_lora_loss(t->lora, ctx, b->tokens, b->targets, NULL)
                                      : mr_llama_loss(t->model, ctx, b->tokens, b->targets, NULL);
    if (loss != NULL) {
        train_metrics_add(m, MR_METRIC_LOSS, loss->data[0]);
    }
    return loss;
}
