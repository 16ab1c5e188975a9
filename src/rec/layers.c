/*
 * Linear layers, layer norms, the feed-forward block and the input
 * embedding step shared by the SASRec and FMLP-Rec backbones.
 */
#include <stdio.h>

#include "layers.h"

/* Declares "<prefix><suffix>" with the given shape and returns its index,
 * or -1 with err filled. */
static int declare_named(mr_paramset *ps, const char *prefix, const char *suffix, int ndim,
                         const int64_t *shape, mr_error *err) {
    char name[64];
    int length = snprintf(name, sizeof name, "%s%s", prefix, suffix);
    if (length < 0 || (size_t)length >= sizeof name) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "rec: weight name '%s%s' is too long",
                     prefix, suffix);
        return -1;
    }
    return mr_paramset_declare(ps, name, ndim, shape, err);
}

mr_status mr_rec_linear_declare(mr_paramset *ps, const char *prefix, int64_t out,
                                int64_t in, mr_rec_linear *layer, mr_error *err) {
    int64_t weight_shape[2] = {out, in};
    int64_t bias_shape[1] = {out};
    layer->weight = declare_named(ps, prefix, ".weight", 2, weight_shape, err);
    if (layer->weight < 0) {
        return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
    }
    layer->bias = declare_named(ps, prefix, ".bias", 1, bias_shape, err);
    if (layer->bias < 0) {
        return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
    }
    return MR_OK;
}

void mr_rec_linear_init(const mr_rec_linear *layer, mr_paramset *ps, float std,
                        mr_rng *rng) {
    mr_tensor_init_normal(mr_paramset_get(ps, layer->weight), 0.0f, std, rng);
    mr_tensor_init_zeros(mr_paramset_get(ps, layer->bias));
}

/*
 * Returns [x, 1] [W, b]^T = x W^T + b: the bias rides in the matrix product
 * as an extra input column of ones. For a layer wider than its input, a
 * separate bias add would read and write the wide output once more in
 * each direction and sum its gradient over every row, while this copies
 * only the narrower x.
 */
static mr_tensor *linear_bias_in_product(mr_ctx *ctx, mr_tensor *x, mr_tensor *weight,
                                         mr_tensor *bias) {
    int64_t ones_shape[MR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        ones_shape[d] = x->shape[d];
    }
    ones_shape[x->ndim - 1] = 1;
    mr_tensor *ones = mr_tensor_new(ctx, MR_F32, x->ndim, ones_shape);
    if (ones == NULL) {
        return NULL;
    }
    mr_tensor_fill(ones, 1.0f);

    int64_t column_shape[2] = {bias->shape[0], 1};
    mr_tensor *inputs[2] = {x, ones};
    mr_tensor *weights[2] = {weight, mr_tensor_reshape(ctx, bias, 2, column_shape)};
    mr_tensor *augmented_x = mr_tensor_concat(ctx, inputs, 2, x->ndim - 1);
    mr_tensor *augmented_w = mr_tensor_concat(ctx, weights, 2, 1);
    return mr_tensor_matmul(ctx, augmented_x, augmented_w, MR_MATMUL_TRANS_B);
}

mr_tensor *mr_rec_linear_forward(const mr_rec_linear *layer, const mr_paramset *ps,
                                 mr_ctx *ctx, mr_tensor *x) {
    mr_tensor *weight = mr_paramset_get(ps, layer->weight);
    mr_tensor *bias = mr_paramset_get(ps, layer->bias);
    if (x != NULL && x->ndim >= 1 && weight->shape[0] > weight->shape[1]) {
        return linear_bias_in_product(ctx, x, weight, bias);
    }
    return mr_tensor_linear(ctx, x, weight, bias);
}

mr_status mr_rec_norm_declare(mr_paramset *ps, const char *prefix, int64_t dim,
                              float eps, mr_rec_norm *norm, mr_error *err) {
    int64_t shape[1] = {dim};
    norm->eps = eps;
    norm->weight = declare_named(ps, prefix, ".weight", 1, shape, err);
    if (norm->weight < 0) {
        return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
    }
    norm->bias = declare_named(ps, prefix, ".bias", 1, shape, err);
    if (norm->bias < 0) {
        return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
    }
    return MR_OK;
}

void mr_rec_norm_init(const mr_rec_norm *norm, mr_paramset *ps) {
    mr_tensor_fill(mr_paramset_get(ps, norm->weight), 1.0f);
    mr_tensor_init_zeros(mr_paramset_get(ps, norm->bias));
}

mr_tensor *mr_rec_norm_forward(const mr_rec_norm *norm, const mr_paramset *ps,
                               mr_ctx *ctx, mr_tensor *x) {
    return mr_tensor_layer_norm(ctx, x, mr_paramset_get(ps, norm->weight),
                                mr_paramset_get(ps, norm->bias), norm->eps);
}

mr_status mr_rec_ffn_declare(mr_paramset *ps, const char *prefix, int64_t dim,
                             int64_t inner, mr_rec_activation activation, float eps,
                             mr_rec_ffn *ffn, mr_error *err) {
    char name[64];
    ffn->activation = activation;

    snprintf(name, sizeof name, "%s.expand", prefix);
    mr_status status = mr_rec_linear_declare(ps, name, inner, dim, &ffn->expand, err);
    if (status != MR_OK) {
        return status;
    }

    snprintf(name, sizeof name, "%s.project", prefix);
    status = mr_rec_linear_declare(ps, name, dim, inner, &ffn->project, err);
    if (status != MR_OK) {
        return status;
    }

    snprintf(name, sizeof name, "%s_norm", prefix);
    return mr_rec_norm_declare(ps, name, dim, eps, &ffn->norm, err);
}

void mr_rec_ffn_init(const mr_rec_ffn *ffn, mr_paramset *ps, float std, mr_rng *rng) {
    mr_rec_linear_init(&ffn->expand, ps, std, rng);
    mr_rec_linear_init(&ffn->project, ps, std, rng);
    mr_rec_norm_init(&ffn->norm, ps);
}

mr_tensor *mr_rec_ffn_forward(const mr_rec_ffn *ffn, const mr_paramset *ps, mr_ctx *ctx,
                              mr_tensor *x, float dropout, mr_rng *rng) {
    mr_tensor *hidden = mr_rec_linear_forward(&ffn->expand, ps, ctx, x);
    hidden = ffn->activation == MR_REC_ACT_GELU ? mr_tensor_gelu(ctx, hidden)
                                                : mr_tensor_silu(ctx, hidden);

    mr_tensor *projected = mr_rec_linear_forward(&ffn->project, ps, ctx, hidden);
    projected = mr_tensor_dropout(ctx, projected, dropout, rng);
    return mr_rec_norm_forward(&ffn->norm, ps, ctx, mr_tensor_add(ctx, projected, x));
}

bool mr_rec_check_inputs(mr_ctx *ctx, const char *backbone, const mr_rec_config *config,
                         bool truncatable, const mr_tensor *item_emb, const mr_tensor *seq) {
    if (item_emb == NULL || seq == NULL) {
        return false;
    }
    char emb_shape[96], seq_shape[96];
    mr_tensor_shape_string(item_emb, emb_shape, sizeof emb_shape);
    mr_tensor_shape_string(seq, seq_shape, sizeof seq_shape);
    if (item_emb->dtype != MR_F32 || item_emb->ndim != 3 || item_emb->shape[2] != config->dim) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "rec %s: item embeddings must be float [B, %d, %d], got %s", backbone,
                    config->max_len, config->dim, emb_shape);
        return false;
    }
    int64_t length = item_emb->shape[1];
    if (truncatable && (length < 1 || length > config->max_len)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "rec %s: item embeddings must be float [B, Lb, %d] with Lb in [1, %d], "
                    "got %s",
                    backbone, config->dim, config->max_len, emb_shape);
        return false;
    }
    if (!truncatable && length != config->max_len) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "rec %s: item embeddings must be float [B, %d, %d], got %s; this backbone "
                    "does not accept inputs shorter than max_len",
                    backbone, config->max_len, config->dim, emb_shape);
        return false;
    }
    if (seq->dtype != MR_I32 || seq->ndim != 2 || seq->shape[0] != item_emb->shape[0] ||
        seq->shape[1] != length) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rec %s: item ids must be int32 [%lld, %lld], got %s",
                    backbone, (long long)item_emb->shape[0], (long long)length, seq_shape);
        return false;
    }
    return true;
}

mr_status mr_rec_positions_declare(mr_paramset *ps, const mr_rec_config *config, float eps,
                                   mr_rec_positions *positions, mr_error *err) {
    int64_t shape[2] = {config->max_len, config->dim};
    positions->weight = mr_paramset_declare(ps, "backbone.position_embedding", 2, shape, err);
    if (positions->weight < 0) {
        return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
    }
    return mr_rec_norm_declare(ps, "backbone.input_norm", config->dim, eps, &positions->norm,
                               err);
}

void mr_rec_positions_init(const mr_rec_positions *positions, mr_paramset *ps, float std,
                           mr_rng *rng) {
    mr_tensor_init_normal(mr_paramset_get(ps, positions->weight), 0.0f, std, rng);
    mr_rec_norm_init(&positions->norm, ps);
}

mr_tensor *mr_rec_positions_forward(const mr_rec_positions *positions, const mr_paramset *ps,
                                    mr_ctx *ctx, mr_tensor *item_emb, float dropout,
                                    mr_rng *rng) {
    if (item_emb == NULL) {
        return NULL;
    }
    mr_tensor *table = mr_paramset_get(ps, positions->weight);
    int64_t length = item_emb->shape[1];
    if (length != table->shape[0]) {
        table = mr_tensor_slice(ctx, table, 0, table->shape[0] - length, length);
    }
    mr_tensor *x = mr_tensor_add(ctx, item_emb, table);
    x = mr_rec_norm_forward(&positions->norm, ps, ctx, x);
    return mr_tensor_dropout(ctx, x, dropout, rng);
}

mr_tensor *mr_rec_last_position(mr_ctx *ctx, mr_tensor *x) {
    if (x == NULL) {
        return NULL;
    }
    mr_tensor *last = mr_tensor_slice(ctx, x, 1, x->shape[1] - 1, 1);
    return mr_tensor_contiguous(ctx, last);
}
