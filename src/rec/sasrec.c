/*
 * The SASRec backbone (Kang and McAuley, "Self-Attentive Sequential
 * Recommendation", ICDM 2018), as the Ada-Retrieval code
 * (ll0ruc/Ada-Retrieval, sasrec.py and modules.py) builds it:
 *
 *   x = Dropout(LN(item_emb + P))          P: learned positions [L, D]
 *   per layer (post-LN):
 *     a = MultiHead(x), causal, padding keys hidden, dropout on the
 *         attention probabilities
 *     x = LN(x + Dropout(W_o a + b_o))
 *     x = LN(x + Dropout(W_2 SiLU(W_1 x + b_1) + b_2))
 *   user vector = x at position L-1 (the most recent item).
 *
 * The reference hides keys by adding -10000 to their logits, so a query
 * that sees no key (a padding position before the first item, or every
 * position of an all-padding input) attends over all L keys as if none
 * were hidden. MR_ATTENTION_ALL_KEYS_IF_EMPTY does the same here.
 *
 * Inputs may also be cut to their last Lb <= L positions; they then add
 * rows L-Lb..L-1 of P, which gives the same user vector when only padding
 * was cut from an input with at least one item. An all-padding input must
 * run at full length, because its user vector depends on all L positions.
 *
 * Layer norms use eps 1e-10; weights start from normal(0, 0.02), biases
 * at 0 and layer-norm gains at 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "backbone.h"
#include "layers.h"

#define SASREC_NORM_EPS 1e-10f
#define SASREC_INIT_STD 0.02f

typedef struct sasrec_layer {
    mr_rec_linear query, key, value, output;
    mr_rec_norm attention_norm;
    mr_rec_ffn ffn;
} sasrec_layer;

typedef struct sasrec_state {
    mr_rec_config config;
    mr_paramset *ps;
    mr_rec_positions input; /* positions [L, D] and the input norm */
    sasrec_layer *layers; /* config.layers entries */
} sasrec_state;

/* Checks the settings SASRec uses. Fills err and returns false on a bad
 * one. */
static bool sasrec_check_config(const mr_rec_config *config, mr_error *err) {
    if (config->dim < 1 || config->max_len < 1 || config->layers < 1 ||
        config->inner_size < 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec sasrec: dim (%d), max_len (%d), layers (%d) and inner_size (%d) "
                     "must all be at least 1",
                     config->dim, config->max_len, config->layers, config->inner_size);
        return false;
    }
    if (config->heads < 1 || config->dim % config->heads != 0) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec sasrec: heads (%d) must be at least 1 and divide dim (%d)",
                     config->heads, config->dim);
        return false;
    }
    if (!(config->dropout >= 0.0f && config->dropout < 1.0f)) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec sasrec: dropout %g is outside [0, 1)", (double)config->dropout);
        return false;
    }
    return true;
}

/* Declares the weights of layer i under "backbone.layers.<i>.". */
static mr_status sasrec_declare_layer(mr_paramset *ps, const mr_rec_config *config, int i,
                                      sasrec_layer *layer, mr_error *err) {
    int64_t dim = config->dim;
    char name[64];
    struct {
        const char *suffix;
        mr_rec_linear *linear;
    } projections[4] = {{"query", &layer->query},
                        {"key", &layer->key},
                        {"value", &layer->value},
                        {"output", &layer->output}};
    for (int p = 0; p < 4; p++) {
        snprintf(name, sizeof name, "backbone.layers.%d.attention.%s", i, projections[p].suffix);
        mr_status status = mr_rec_linear_declare(ps, name, dim, dim, projections[p].linear, err);
        if (status != MR_OK) {
            return status;
        }
    }

    snprintf(name, sizeof name, "backbone.layers.%d.attention_norm", i);
    mr_status status =
        mr_rec_norm_declare(ps, name, dim, SASREC_NORM_EPS, &layer->attention_norm, err);
    if (status != MR_OK) {
        return status;
    }

    snprintf(name, sizeof name, "backbone.layers.%d.ffn", i);
    return mr_rec_ffn_declare(ps, name, dim, config->inner_size, MR_REC_ACT_SILU,
                              SASREC_NORM_EPS, &layer->ffn, err);
}

static void sasrec_free(void *state) {
    sasrec_state *s = state;
    if (s == NULL) {
        return;
    }
    free(s->layers);
    free(s);
}

static void *sasrec_declare(const mr_rec_config *config, mr_paramset *ps, mr_error *err) {
    if (!sasrec_check_config(config, err)) {
        return NULL;
    }
    sasrec_state *s = calloc(1, sizeof *s);
    sasrec_layer *layers = calloc((size_t)config->layers, sizeof *layers);
    if (s == NULL || layers == NULL) {
        free(s);
        free(layers);
        mr_error_set(err, MR_ERR_NO_MEMORY, "rec sasrec: out of memory for %d layers",
                     config->layers);
        return NULL;
    }
    s->config = *config;
    s->ps = ps;
    s->layers = layers;

    mr_status status = mr_rec_positions_declare(ps, config, SASREC_NORM_EPS, &s->input, err);
    for (int i = 0; i < config->layers && status == MR_OK; i++) {
        status = sasrec_declare_layer(ps, config, i, &s->layers[i], err);
    }
    if (status != MR_OK) {
        sasrec_free(s);
        return NULL;
    }
    return s;
}

static void sasrec_init(void *state, mr_paramset *ps, mr_rng *rng) {
    sasrec_state *s = state;
    mr_rec_positions_init(&s->input, ps, SASREC_INIT_STD, rng);
    for (int i = 0; i < s->config.layers; i++) {
        sasrec_layer *layer = &s->layers[i];
        mr_rec_linear_init(&layer->query, ps, SASREC_INIT_STD, rng);
        mr_rec_linear_init(&layer->key, ps, SASREC_INIT_STD, rng);
        mr_rec_linear_init(&layer->value, ps, SASREC_INIT_STD, rng);
        mr_rec_linear_init(&layer->output, ps, SASREC_INIT_STD, rng);
        mr_rec_norm_init(&layer->attention_norm, ps);
        mr_rec_ffn_init(&layer->ffn, ps, SASREC_INIT_STD, rng);
    }
}

/* Returns x [B, T, D] as heads [B, H, T, D/H], a strided view without a
 * copy. */
static mr_tensor *split_heads(mr_ctx *ctx, mr_tensor *x, int heads) {
    if (x == NULL) {
        return NULL;
    }
    int64_t shape[4] = {x->shape[0], x->shape[1], heads, x->shape[2] / heads};
    return mr_tensor_transpose(ctx, mr_tensor_reshape(ctx, x, 4, shape), 1, 2);
}

/* Returns the float key mask [B, L]: 1 where the id is an item, 0 for
 * padding. */
static mr_tensor *key_mask_from_ids(mr_ctx *ctx, mr_tensor *seq) {
    seq = mr_tensor_contiguous(ctx, seq);
    if (seq == NULL) {
        return NULL;
    }
    mr_tensor *mask = mr_tensor_new(ctx, MR_F32, 2, seq->shape);
    if (mask == NULL) {
        return NULL;
    }
    int64_t count = mr_tensor_numel(seq);
    for (int64_t i = 0; i < count; i++) {
        mask->data[i] = seq->idata[i] != 0 ? 1.0f : 0.0f;
    }
    return mask;
}

/*
 * Runs one transformer layer over x [B, L, D]. With last_only the queries,
 * and so the output, cover only position L-1 ([B, 1, D]); keys and values
 * still span every position. That is all the last layer needs for the
 * user vector, and it skips most of that layer's feed-forward work.
 *
 * Attention matches the reference: dropout on the probabilities, and a
 * query that sees no item attends over all L keys, future ones included.
 * NOTE: the reference adds -10000 in float32, which rounds such a query's
 * logits to steps of about 1e-3 (the float32 spacing near 10000). This
 * code computes that softmax without the rounding.
 */
static mr_tensor *sasrec_layer_forward(const sasrec_state *s, const sasrec_layer *layer,
                                       mr_ctx *ctx, mr_tensor *x, mr_tensor *key_mask,
                                       bool last_only, mr_rng *rng) {
    const mr_paramset *ps = s->ps;
    int heads = s->config.heads;
    float p = s->config.dropout;
    mr_tensor *queries = last_only ? mr_rec_last_position(ctx, x) : x;

    /* Scaled dot-product attention per head, scale 1/sqrt(D/H). */
    mr_tensor *q = split_heads(ctx, mr_rec_linear_forward(&layer->query, ps, ctx, queries), heads);
    mr_tensor *k = split_heads(ctx, mr_rec_linear_forward(&layer->key, ps, ctx, x), heads);
    mr_tensor *v = split_heads(ctx, mr_rec_linear_forward(&layer->value, ps, ctx, x), heads);
    mr_tensor *context = mr_tensor_attention_ex(
        ctx, q, k, v, key_mask, 0.0f, MR_SOFTMAX_CAUSAL | MR_ATTENTION_ALL_KEYS_IF_EMPTY, p, rng);

    /* Heads back to [B, T, D]: one copy, none when T is 1. */
    context = mr_tensor_transpose(ctx, context, 1, 2);
    if (context != NULL) {
        int64_t shape[3] = {context->shape[0], context->shape[1], s->config.dim};
        context = mr_tensor_reshape(ctx, context, 3, shape);
    }

    mr_tensor *attended = mr_rec_linear_forward(&layer->output, ps, ctx, context);
    attended = mr_tensor_dropout(ctx, attended, p, rng);
    mr_tensor *h = mr_rec_norm_forward(&layer->attention_norm, ps, ctx,
                                       mr_tensor_add(ctx, attended, queries));

    return mr_rec_ffn_forward(&layer->ffn, ps, ctx, h, p, rng);
}

/* Runs every layer, the last one on position L-1 alone when last_only. */
static mr_tensor *sasrec_run(const sasrec_state *s, mr_ctx *ctx, mr_tensor *item_emb,
                             mr_tensor *seq, bool last_only, mr_rng *rng) {
    if (!mr_rec_check_inputs(ctx, "sasrec", &s->config, true, item_emb, seq)) {
        return NULL;
    }
    mr_tensor *key_mask = key_mask_from_ids(ctx, seq);
    mr_tensor *x =
        mr_rec_positions_forward(&s->input, s->ps, ctx, item_emb, s->config.dropout, rng);
    for (int i = 0; i < s->config.layers; i++) {
        bool last = last_only && i == s->config.layers - 1;
        x = sasrec_layer_forward(s, &s->layers[i], ctx, x, key_mask, last, rng);
    }
    return x;
}

mr_tensor *mr_rec_sasrec_encode(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                mr_tensor *seq, mr_rng *rng) {
    return sasrec_run(state, ctx, item_emb, seq, false, rng);
}

static mr_tensor *sasrec_forward(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                 mr_tensor *seq, mr_rng *rng) {
    const sasrec_state *s = state;
    mr_tensor *last = sasrec_run(s, ctx, item_emb, seq, true, rng);
    if (last == NULL) {
        return NULL;
    }
    int64_t shape[2] = {last->shape[0], s->config.dim};
    return mr_tensor_reshape(ctx, last, 2, shape);
}

/* Truncation is exact for an input with at least one item. Padding keys
 * are hidden in every layer, the user vector is read at the last position,
 * and a cut input of Lb positions takes the last Lb rows of the position
 * table. An all-padding input attends over every position, so it must
 * not be cut. */
const mr_rec_backbone_ops mr_rec_sasrec_ops = {sasrec_declare, sasrec_init, sasrec_forward,
                                               sasrec_free, true, true};
