/*
 * Ada-Retrieval's item and user representation adapters; see adapters.h
 * for the equations.
 */
#include <math.h>
#include <stddef.h>

#include "adapters.h"

/* One adapter weight: its name in the parameter set and its field in
 * mr_rec_ada. */
typedef struct ada_weight {
    const char *name;
    size_t field;
} ada_weight;

#define ADA_FIELD(f) offsetof(mr_rec_ada, f)

static const ada_weight ada_weights[] = {
    {"ada.lft.complex_weight", ADA_FIELD(lft_weight)},
    {"ada.lft.dense.weight", ADA_FIELD(lft_dense_weight)},
    {"ada.lft.dense.bias", ADA_FIELD(lft_dense_bias)},
    {"ada.lft.norm.weight", ADA_FIELD(lft_norm_weight)},
    {"ada.lft.norm.bias", ADA_FIELD(lft_norm_bias)},
    {"ada.cat.norm.weight", ADA_FIELD(cat_norm_weight)},
    {"ada.cat.norm.bias", ADA_FIELD(cat_norm_bias)},
    {"ada.ura.gru.weight_ih", ADA_FIELD(gru_w_ih)},
    {"ada.ura.gru.weight_hh", ADA_FIELD(gru_w_hh)},
    {"ada.ura.gru.bias_ih", ADA_FIELD(gru_b_ih)},
    {"ada.ura.gru.bias_hh", ADA_FIELD(gru_b_hh)},
    {"ada.ura.mlp1.weight", ADA_FIELD(mlp1_weight)},
    {"ada.ura.mlp1.bias", ADA_FIELD(mlp1_bias)},
    {"ada.ura.mlp2.weight", ADA_FIELD(mlp2_weight)},
    {"ada.ura.mlp2.bias", ADA_FIELD(mlp2_bias)},
    {"ada.ura.norm.weight", ADA_FIELD(ura_norm_weight)},
    {"ada.ura.norm.bias", ADA_FIELD(ura_norm_bias)},
};

#define ADA_WEIGHTS ((int)(sizeof ada_weights / sizeof ada_weights[0]))

/* The tensor slot of weight i in ada. */
static mr_tensor **ada_slot(mr_rec_ada *ada, int i) {
    return (mr_tensor **)((char *)ada + ada_weights[i].field);
}

/* Writes the shape of weight i into shape and returns its ndim. */
static int ada_shape(const mr_rec_ada *ada, int i, int64_t *shape) {
    int64_t d = ada->dim;
    int64_t freqs = ada->per_round / 2 + 1;
    size_t field = ada_weights[i].field;
    if (field == ADA_FIELD(lft_weight)) {
        shape[0] = 2;
        shape[1] = freqs;
        shape[2] = d;
        return 3;
    }
    if (field == ADA_FIELD(lft_dense_weight)) {
        shape[0] = d;
        shape[1] = d;
        return 2;
    }
    if (field == ADA_FIELD(gru_w_ih) || field == ADA_FIELD(gru_w_hh)) {
        shape[0] = 3 * d;
        shape[1] = d;
        return 2;
    }
    if (field == ADA_FIELD(gru_b_ih) || field == ADA_FIELD(gru_b_hh)) {
        shape[0] = 3 * d;
        return 1;
    }
    if (field == ADA_FIELD(mlp1_weight)) {
        shape[0] = 2 * d;
        shape[1] = 2 * d;
        return 2;
    }
    if (field == ADA_FIELD(mlp1_bias)) {
        shape[0] = 2 * d;
        return 1;
    }
    if (field == ADA_FIELD(mlp2_weight)) {
        shape[0] = d;
        shape[1] = 2 * d;
        return 2;
    }
    /* Dense and MLP output biases and every layer norm. */
    shape[0] = d;
    return 1;
}

mr_status mr_rec_ada_declare(mr_rec_ada *ada, int dim, int per_round, float dropout,
                             mr_paramset *ps, mr_error *err) {
    *ada = (mr_rec_ada){0};
    if (dim < 1 || per_round < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: adapters need dim >= 1 and per_round >= 1, not %d and %d",
                            dim, per_round);
    }
    ada->dim = dim;
    ada->per_round = per_round;
    ada->dropout = dropout;

    for (int i = 0; i < ADA_WEIGHTS; i++) {
        int64_t shape[MR_MAX_DIMS];
        int ndim = ada_shape(ada, i, shape);
        if (mr_paramset_declare(ps, ada_weights[i].name, ndim, shape, err) < 0) {
            return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
        }
    }
    return MR_OK;
}

mr_status mr_rec_ada_bind(mr_rec_ada *ada, const mr_paramset *ps, mr_error *err) {
    for (int i = 0; i < ADA_WEIGHTS; i++) {
        mr_tensor *weight = mr_paramset_find(ps, ada_weights[i].name);
        if (weight == NULL) {
            return mr_error_set(err, MR_ERR_STATE,
                                "rec: adapter weight '%s' is missing; declare the adapters "
                                "and finalise the parameter set first",
                                ada_weights[i].name);
        }
        *ada_slot(ada, i) = weight;
    }
    return MR_OK;
}

/* Initialises a linear layer's weight as the backbone's initialiser does
 * and zeroes its bias. */
static void init_linear(mr_tensor *weight, mr_tensor *bias, bool xavier, mr_rng *rng) {
    if (xavier) {
        mr_tensor_init_xavier_uniform(weight, 1.0f, rng);
    } else {
        mr_tensor_init_normal(weight, 0.0f, 0.02f, rng);
    }
    mr_tensor_init_zeros(bias);
}

void mr_rec_ada_init(mr_rec_ada *ada, bool xavier, mr_rng *rng) {
    mr_tensor_init_normal(ada->lft_weight, 0.0f, 0.02f, rng);
    init_linear(ada->lft_dense_weight, ada->lft_dense_bias, xavier, rng);

    mr_tensor *norm_weights[3] = {ada->lft_norm_weight, ada->cat_norm_weight,
                                  ada->ura_norm_weight};
    mr_tensor *norm_biases[3] = {ada->lft_norm_bias, ada->cat_norm_bias, ada->ura_norm_bias};
    for (int i = 0; i < 3; i++) {
        mr_tensor_fill(norm_weights[i], 1.0f);
        mr_tensor_init_zeros(norm_biases[i]);
    }

    /* nn.GRU keeps PyTorch's default: every weight and bias uniform in
     * +-1/sqrt(hidden size); the reference's initialiser skips it. */
    float bound = 1.0f / sqrtf((float)ada->dim);
    mr_tensor *gru[4] = {ada->gru_w_ih, ada->gru_w_hh, ada->gru_b_ih, ada->gru_b_hh};
    for (int i = 0; i < 4; i++) {
        mr_tensor_init_uniform(gru[i], -bound, bound, rng);
    }

    init_linear(ada->mlp1_weight, ada->mlp1_bias, xavier, rng);
    init_linear(ada->mlp2_weight, ada->mlp2_bias, xavier, rng);
}

int64_t mr_rec_ada_numel(const mr_rec_ada *ada) {
    int64_t total = 0;
    for (int i = 0; i < ADA_WEIGHTS; i++) {
        int64_t shape[MR_MAX_DIMS];
        int ndim = ada_shape(ada, i, shape);
        int64_t count = 1;
        for (int d = 0; d < ndim; d++) {
            count *= shape[d];
        }
        total += count;
    }
    return total;
}

mr_tensor *mr_rec_ada_lft(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *x, mr_rng *rng) {
    if (x == NULL) {
        return NULL;
    }
    char shape_text[96];
    int axis = x->ndim - 2;
    if (x->ndim < 2 || x->shape[axis] != ada->per_round || x->shape[x->ndim - 1] != ada->dim) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rec: LFT input must be [..., %d, %d] (k, D), not %s",
                    ada->per_round, ada->dim,
                    mr_tensor_shape_string(x, shape_text, sizeof shape_text));
        return NULL;
    }

    /* Complex product of the spectrum [..., 2F, D] (real parts, then
     * imaginary parts) with the weight; [1, F, D] halves broadcast. */
    int64_t freqs = ada->per_round / 2 + 1;
    mr_tensor *spectrum = mr_tensor_rdft(ctx, x, axis);
    mr_tensor *re = mr_tensor_slice(ctx, spectrum, axis, 0, freqs);
    mr_tensor *im = mr_tensor_slice(ctx, spectrum, axis, freqs, freqs);
    mr_tensor *w_re = mr_tensor_slice(ctx, ada->lft_weight, 0, 0, 1);
    mr_tensor *w_im = mr_tensor_slice(ctx, ada->lft_weight, 0, 1, 1);
    mr_tensor *halves[2] = {
        mr_tensor_sub(ctx, mr_tensor_mul(ctx, re, w_re), mr_tensor_mul(ctx, im, w_im)),
        mr_tensor_add(ctx, mr_tensor_mul(ctx, re, w_im), mr_tensor_mul(ctx, im, w_re)),
    };
    mr_tensor *filtered = mr_tensor_irdft(ctx, mr_tensor_concat(ctx, halves, 2, axis), axis,
                                          ada->per_round);

    mr_tensor *hidden = mr_tensor_linear(ctx, filtered, ada->lft_dense_weight,
                                         ada->lft_dense_bias);
    hidden = mr_tensor_dropout(ctx, hidden, ada->dropout, rng);
    return mr_tensor_layer_norm(ctx, mr_tensor_add(ctx, hidden, x), ada->lft_norm_weight,
                                ada->lft_norm_bias, MR_REC_ADA_NORM_EPS);
}

mr_tensor *mr_rec_ada_cat(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *item_emb,
                          mr_tensor *context, mr_rng *rng) {
    if (item_emb == NULL || context == NULL) {
        return NULL;
    }
    char emb_text[96], context_text[96];
    if (item_emb->ndim != 3 || context->ndim != 3 || item_emb->shape[2] != ada->dim ||
        context->shape[2] != ada->dim || context->shape[0] != item_emb->shape[0]) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "rec: CAT needs item embeddings [B, L, %d] and context [B, M, %d], not "
                    "%s and %s",
                    ada->dim, ada->dim,
                    mr_tensor_shape_string(item_emb, emb_text, sizeof emb_text),
                    mr_tensor_shape_string(context, context_text, sizeof context_text));
        return NULL;
    }

    /* One head of attention without projections: the context is both the
     * keys and the values. */
    int64_t batch = item_emb->shape[0], length = item_emb->shape[1];
    int64_t rows = context->shape[1];
    mr_tensor *q = mr_tensor_reshape(ctx, item_emb, 4, (int64_t[]){batch, 1, length, ada->dim});
    mr_tensor *kv = mr_tensor_reshape(ctx, context, 4, (int64_t[]){batch, 1, rows, ada->dim});
    mr_tensor *attended = mr_tensor_attention(ctx, q, kv, kv, NULL,
                                              1.0f / sqrtf((float)ada->dim), 0);
    attended = mr_tensor_reshape(ctx, attended, 3, item_emb->shape);

    attended = mr_tensor_dropout(ctx, attended, ada->dropout, rng);
    return mr_tensor_layer_norm(ctx, mr_tensor_add(ctx, attended, item_emb),
                                ada->cat_norm_weight, ada->cat_norm_bias,
                                MR_REC_ADA_NORM_EPS);
}

mr_tensor *mr_rec_ada_ira(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *table,
                          mr_tensor *item_emb, mr_tensor *picks, mr_rng *rng) {
    if (table == NULL || item_emb == NULL || picks == NULL) {
        return NULL;
    }
    char shape_text[96];
    if (picks->ndim != 3 || picks->shape[2] != ada->per_round) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rec: IRA picks must be [B, rounds, %d], not %s",
                    ada->per_round, mr_tensor_shape_string(picks, shape_text, sizeof shape_text));
        return NULL;
    }

    /* Padding index 0 keeps row 0 of the table free of gradient, although
     * the picks never contain it. */
    mr_tensor *picked = mr_tensor_embedding(ctx, table, picks, 0);
    mr_tensor *filtered = mr_rec_ada_lft(ctx, ada, picked, rng);
    int64_t context_shape[3] = {picks->shape[0], picks->shape[1] * picks->shape[2], ada->dim};
    mr_tensor *context = mr_tensor_reshape(ctx, filtered, 3, context_shape);
    return mr_rec_ada_cat(ctx, ada, item_emb, context, rng);
}

mr_tensor *mr_rec_ada_history_step(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *g,
                                   mr_tensor *u) {
    if (u == NULL) {
        return NULL;
    }
    int64_t batch = u->shape[0];
    mr_tensor *x = mr_tensor_reshape(ctx, u, 3, (int64_t[]){batch, 1, ada->dim});
    mr_tensor *states = mr_tensor_gru(ctx, x, g, ada->gru_w_ih, ada->gru_w_hh, ada->gru_b_ih,
                                      ada->gru_b_hh);
    return mr_tensor_reshape(ctx, states, 2, (int64_t[]){batch, ada->dim});
}

mr_tensor *mr_rec_ada_ura(mr_ctx *ctx, const mr_rec_ada *ada, mr_tensor *h, mr_tensor *g,
                          mr_rng *rng) {
    if (h == NULL || g == NULL) {
        return NULL;
    }
    mr_tensor *joined[2] = {h, g};
    mr_tensor *hidden = mr_tensor_concat(ctx, joined, 2, -1);
    hidden = mr_tensor_relu(ctx, mr_tensor_linear(ctx, hidden, ada->mlp1_weight,
                                                  ada->mlp1_bias));
    hidden = mr_tensor_linear(ctx, hidden, ada->mlp2_weight, ada->mlp2_bias);
    hidden = mr_tensor_dropout(ctx, hidden, ada->dropout, rng);
    return mr_tensor_layer_norm(ctx, mr_tensor_add(ctx, hidden, h), ada->ura_norm_weight,
                                ada->ura_norm_bias, MR_REC_ADA_NORM_EPS);
}
