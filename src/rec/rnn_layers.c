/*
 * Linear layers, initialisers and input checks shared by the GRU4Rec,
 * NextItNet and SR-GNN backbones.
 */
#include <stdio.h>

#include "rnn_layers.h"

int mr_rec_rnn_declare(mr_paramset *ps, const char *prefix, const char *name, int ndim,
                       const int64_t *shape, mr_error *err) {
    char full[96];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return mr_paramset_declare(ps, full, ndim, shape, err);
}

bool mr_rec_rnn_linear_declare(mr_paramset *ps, const char *name, int in, int out,
                               bool has_bias, mr_rec_rnn_linear *layer, mr_error *err) {
    int64_t weight_shape[2] = {out, in};
    int64_t bias_shape[1] = {out};
    layer->weight = mr_rec_rnn_declare(ps, name, ".weight", 2, weight_shape, err);
    layer->bias = -1;
    if (layer->weight < 0) {
        return false;
    }
    if (has_bias) {
        layer->bias = mr_rec_rnn_declare(ps, name, ".bias", 1, bias_shape, err);
        if (layer->bias < 0) {
            return false;
        }
    }
    return true;
}

void mr_rec_rnn_linear_init_xavier(mr_paramset *ps, const mr_rec_rnn_linear *layer,
                                   mr_rng *rng) {
    mr_tensor_init_xavier_uniform(mr_paramset_get(ps, layer->weight), 1.0f, rng);
    if (layer->bias >= 0) {
        mr_tensor_init_zeros(mr_paramset_get(ps, layer->bias));
    }
}

mr_tensor *mr_rec_rnn_linear_forward(mr_ctx *ctx, mr_paramset *ps,
                                     const mr_rec_rnn_linear *layer, mr_tensor *x) {
    mr_tensor *bias = layer->bias >= 0 ? mr_paramset_get(ps, layer->bias) : NULL;
    return mr_tensor_linear(ctx, x, mr_paramset_get(ps, layer->weight), bias);
}

void mr_rec_rnn_init_uniform(mr_paramset *ps, int index, float bound, mr_rng *rng) {
    mr_tensor_init_uniform(mr_paramset_get(ps, index), -bound, bound, rng);
}

bool mr_rec_rnn_check_inputs(mr_ctx *ctx, const char *backbone, const mr_tensor *item_emb,
                             const mr_tensor *seq, int dim) {
    char emb_shape[96], seq_shape[96];
    if (item_emb->dtype != MR_F32 || item_emb->ndim != 3 || item_emb->shape[0] < 1 ||
        item_emb->shape[1] < 1 || item_emb->shape[2] != dim) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "%s: item_emb has shape %s, expected a float tensor [B, L, %d] with "
                    "B, L >= 1",
                    backbone, mr_tensor_shape_string(item_emb, emb_shape, sizeof emb_shape),
                    dim);
        return false;
    }
    if (seq == NULL) {
        return true;
    }
    if (seq->dtype != MR_I32 || seq->ndim != 2 || seq->shape[0] != item_emb->shape[0] ||
        seq->shape[1] != item_emb->shape[1]) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "%s: seq has shape %s, expected int32 [%lld, %lld] to match item_emb %s",
                    backbone, mr_tensor_shape_string(seq, seq_shape, sizeof seq_shape),
                    (long long)item_emb->shape[0], (long long)item_emb->shape[1],
                    mr_tensor_shape_string(item_emb, emb_shape, sizeof emb_shape));
        return false;
    }
    return true;
}

/* Adding t to zeros of the full shape broadcasts it over the rows. */
mr_tensor *mr_rec_rnn_repeat_rows(mr_ctx *ctx, mr_tensor *t, int64_t rows) {
    if (t == NULL) {
        return NULL;
    }
    int64_t shape[MR_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) {
        shape[d] = t->shape[d];
    }
    shape[0] = rows;
    return mr_tensor_add(ctx, mr_tensor_zeros(ctx, MR_F32, t->ndim, shape), t);
}

mr_tensor *mr_rec_rnn_last_step(mr_ctx *ctx, mr_tensor *x) {
    if (x == NULL) {
        return NULL;
    }
    int64_t shape[2] = {x->shape[0], x->shape[2]};
    mr_tensor *last = mr_tensor_slice(ctx, x, 1, x->shape[1] - 1, 1);
    return last == NULL ? NULL : mr_tensor_reshape(ctx, last, 2, shape);
}
