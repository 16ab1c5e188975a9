/*
 * Reward models and sequence classifiers: a Linear head on the final
 * hidden state of each sequence's last real token, trained with the
 * Bradley-Terry loss on preference pairs or with cross-entropy on labels.
 */
#include <math.h>

#include "train_internal.h"

mr_status reward_head_create(trainer *t, int outputs, mr_error *err) {
    int64_t dim = mr_llama_get_config(t->model)->dim;
    t->head = mr_paramset_create();
    if (t->head == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory for the head");
    }
    int64_t weight_shape[2] = {outputs, dim};
    int64_t bias_shape[1] = {outputs};
    int w = mr_paramset_declare(t->head, "score.weight", 2, weight_shape, err);
    int b = w >= 0 ? mr_paramset_declare(t->head, "score.bias", 1, bias_shape, err) : -1;
    if (b < 0 || mr_paramset_finalize(t->head, err) != MR_OK) {
        return err != NULL ? err->status : MR_ERR_NO_MEMORY;
    }
    t->head_weight = mr_paramset_get(t->head, w);
    t->head_bias = mr_paramset_get(t->head, b);

    /* Xavier-uniform weights from their own stream of the seed, zero bias. */
    mr_rng rng;
    mr_rng_init(&rng, t->o.seed ^ 0x68656164ULL);
    mr_tensor_init_xavier_uniform(t->head_weight, 1.0f, &rng);
    mr_tensor_init_zeros(t->head_bias);
    return MR_OK;
}

mr_tensor *mr_train_head_outputs(mr_llama *model, mr_lora *lora, mr_ctx *ctx,
                                 mr_tensor *tokens, mr_tensor *last, mr_tensor *weight,
                                 mr_tensor *bias) {
    if (tokens == NULL || last == NULL || weight == NULL) {
        return NULL;
    }
    int64_t rows = tokens->shape[0];
    if (last->dtype != MR_I32 || last->ndim != 1 || last->shape[0] != rows) {
        char ls[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "train: last must be I32 [%lld], got %s",
                    (long long)rows, mr_tensor_shape_string(last, ls, sizeof ls));
        return NULL;
    }
    mr_tensor *hidden = mr_llama_hidden(model, lora, ctx, tokens);
    if (hidden == NULL) {
        return NULL;
    }

    /* Gather the state at last[b] of each row: index [B, 1, C]. */
    int64_t dim = hidden->shape[2];
    mr_tensor *index = mr_tensor_new3d(ctx, MR_I32, rows, 1, dim);
    if (index == NULL) {
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++) {
        int32_t position = last->idata[r];
        if (position < 0 || position >= tokens->shape[1]) {
            mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                        "train: last[%lld] = %d is outside [0, %lld)", (long long)r, position,
                        (long long)tokens->shape[1]);
            return NULL;
        }
        for (int64_t c = 0; c < dim; c++) {
            index->idata[r * dim + c] = position;
        }
    }
    mr_tensor *state = mr_tensor_gather(ctx, hidden, 1, index);
    int64_t flat[2] = {rows, dim};
    return mr_tensor_linear(ctx, mr_tensor_reshape(ctx, state, 2, flat), weight, bias);
}

mr_tensor *mr_train_bradley_terry_loss(mr_ctx *ctx, mr_tensor *r_chosen, mr_tensor *r_rejected) {
    mr_tensor *diff = mr_tensor_sub(ctx, r_chosen, r_rejected);
    mr_tensor *log_p = mr_tensor_log_sigmoid(ctx, diff);
    return mr_tensor_scale(ctx, mr_tensor_mean(ctx, log_p, MR_AXIS_ALL, false), -1.0f);
}

mr_tensor *reward_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m) {
    mr_tensor *scores = mr_train_head_outputs(t->model, t->lora, ctx, b->tokens, b->last,
                                              t->head_weight, t->head_bias);
    if (scores == NULL) {
        return NULL;
    }
    int64_t n = b->examples;
    int64_t flat[1] = {2 * n};
    scores = mr_tensor_reshape(ctx, scores, 1, flat);
    mr_tensor *chosen = mr_tensor_slice(ctx, scores, 0, 0, n);
    mr_tensor *rejected = mr_tensor_slice(ctx, scores, 0, n, n);
    mr_tensor *loss = mr_train_bradley_terry_loss(ctx, chosen, rejected);
    if (loss == NULL) {
        return NULL;
    }

    double correct = 0, sum_chosen = 0, sum_rejected = 0;
    for (int64_t i = 0; i < n; i++) {
        float rc = scores->data[i], rr = scores->data[n + i];
        correct += rc > rr;
        sum_chosen += rc;
        sum_rejected += rr;
    }
    train_metrics_add(m, MR_METRIC_LOSS, loss->data[0]);
    train_metrics_add(m, "accuracy", correct / (double)n);
    train_metrics_add(m, "rewards/chosen", sum_chosen / (double)n);
    train_metrics_add(m, "rewards/rejected", sum_rejected / (double)n);
    return loss;
}

mr_tensor *classify_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m) {
    mr_tensor *logits = mr_train_head_outputs(t->model, t->lora, ctx, b->tokens, b->last,
                                              t->head_weight, t->head_bias);
    mr_tensor *loss = mr_tensor_cross_entropy(ctx, logits, b->labels, -1, MR_REDUCE_MEAN);
    if (loss == NULL) {
        return NULL;
    }

    int64_t classes = logits->shape[1];
    double correct = 0;
    for (int64_t i = 0; i < b->examples; i++) {
        const float *row = logits->data + i * classes;
        int64_t best = 0;
        for (int64_t c = 1; c < classes; c++) {
            best = row[c] > row[best] ? c : best;
        }
        correct += best == b->labels->idata[i];
    }
    train_metrics_add(m, MR_METRIC_LOSS, loss->data[0]);
    train_metrics_add(m, "accuracy", correct / (double)b->examples);
    return loss;
}
