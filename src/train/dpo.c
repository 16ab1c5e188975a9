/*
 * Direct preference optimisation with the sigmoid loss, reference
 * log-probabilities from a frozen copy or from the policy with its LoRA
 * adapter switched off, and an optional weighted NLL term on a
 * ground-truth completion (the chosen one when a row has none), as mrDPO
 * adds it.
 */
#include <math.h>

#include "train_internal.h"

mr_tensor *mr_train_dpo_loss(mr_ctx *ctx, mr_tensor *policy_chosen, mr_tensor *policy_rejected,
                             mr_tensor *reference_chosen, mr_tensor *reference_rejected,
                             float beta, mr_dpo_stats *stats) {
    if (policy_chosen == NULL || policy_rejected == NULL || reference_chosen == NULL ||
        reference_rejected == NULL) {
        return NULL;
    }
    mr_tensor *policy_diff = mr_tensor_sub(ctx, policy_chosen, policy_rejected);
    mr_tensor *reference_diff = mr_tensor_sub(ctx, reference_chosen, reference_rejected);
    mr_tensor *z = mr_tensor_scale(ctx, mr_tensor_sub(ctx, policy_diff, reference_diff), beta);
    mr_tensor *loss = mr_tensor_scale(
        ctx, mr_tensor_mean(ctx, mr_tensor_log_sigmoid(ctx, z), MR_AXIS_ALL, false), -1.0f);
    if (loss == NULL || stats == NULL) {
        return loss;
    }

    int64_t n = mr_tensor_numel(policy_chosen);
    mr_dpo_stats s = {.loss = loss->data[0]};
    for (int64_t i = 0; i < n; i++) {
        double pc = mr_tensor_get(policy_chosen, i), pr = mr_tensor_get(policy_rejected, i);
        double rc = beta * (pc - mr_tensor_get(reference_chosen, i));
        double rr = beta * (pr - mr_tensor_get(reference_rejected, i));
        s.reward_chosen += rc;
        s.reward_rejected += rr;
        s.accuracy += rc > rr;
        s.logp_chosen += pc;
        s.logp_rejected += pr;
    }
    s.reward_chosen /= (double)n;
    s.reward_rejected /= (double)n;
    s.margin = s.reward_chosen - s.reward_rejected;
    s.accuracy /= (double)n;
    s.logp_chosen /= (double)n;
    s.logp_rejected /= (double)n;
    *stats = s;
    return loss;
}

/* Reference log-probabilities [rows] of the batch, as constants. */
static mr_tensor *reference_logps(trainer *t, mr_ctx *ctx, const train_batch *b) {
    bool was_recording = mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *logps;
    if (t->o.reference == MR_DPO_REFERENCE_ADAPTER_OFF) {
        mr_lora_set_enabled(t->lora, false);
        logps = mr_train_sequence_logps(t->model, t->lora, ctx, b->tokens, b->targets);
        mr_lora_set_enabled(t->lora, true);
    } else {
        logps = mr_train_sequence_logps(t->reference, NULL, ctx, b->tokens, b->targets);
    }
    mr_ctx_set_grad_enabled(ctx, was_recording);
    return logps;
}

/* Counts the learnt targets of rows [first, first + n). */
static int64_t count_targets(const train_batch *b, int first, int n) {
    int64_t count = 0;
    for (int64_t i = (int64_t)first * b->length; i < (int64_t)(first + n) * b->length; i++) {
        count += b->targets->idata[i] >= 0;
    }
    return count;
}

mr_tensor *dpo_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m) {
    int n = b->examples;
    mr_tensor *reference = reference_logps(t, ctx, b);
    mr_tensor *policy = mr_train_sequence_logps(t->model, t->lora, ctx, b->tokens, b->targets);
    if (reference == NULL || policy == NULL) {
        return NULL;
    }
    mr_dpo_stats stats;
    mr_tensor *loss = mr_train_dpo_loss(
        ctx, mr_tensor_slice(ctx, policy, 0, 0, n), mr_tensor_slice(ctx, policy, 0, n, n),
        mr_tensor_slice(ctx, reference, 0, 0, n), mr_tensor_slice(ctx, reference, 0, n, n),
        t->o.dpo_beta, &stats);
    if (loss == NULL) {
        return NULL;
    }
    train_metrics_add(m, "dpo_loss", stats.loss);
    train_metrics_add(m, "rewards/chosen", stats.reward_chosen);
    train_metrics_add(m, "rewards/rejected", stats.reward_rejected);
    train_metrics_add(m, "rewards/margins", stats.margin);
    train_metrics_add(m, "accuracy", stats.accuracy);
    train_metrics_add(m, "logps/chosen", stats.logp_chosen);
    train_metrics_add(m, "logps/rejected", stats.logp_rejected);

    /* The NLL per token of the ground-truth block (rows 2n..3n) when the
     * batch has one, else of the chosen block. */
    if (t->o.sft_weight > 0.0f) {
        int first = b->seqs_per_example == 3 ? 2 * n : 0;
        int64_t tokens = count_targets(b, first, n);
        mr_tensor *block = mr_tensor_slice(ctx, policy, 0, first, n);
        mr_tensor *nll = mr_tensor_scale(ctx, mr_tensor_sum(ctx, block, MR_AXIS_ALL, false),
                                         -1.0f / (float)(tokens > 0 ? tokens : 1));
        if (nll == NULL) {
            return NULL;
        }
        train_metrics_add(m, "sft_nll", nll->data[0]);
        loss = mr_tensor_add(ctx, loss, mr_tensor_scale(ctx, nll, t->o.sft_weight));
        if (loss == NULL) {
            return NULL;
        }
    }
    train_metrics_add(m, MR_METRIC_LOSS, loss->data[0]);
    return loss;
}
