/*
 * The FMLP-Rec backbone (Zhou et al., "Filter-enhanced MLP is All You Need
 * for Sequential Recommendation", WWW 2022), as the Ada-Retrieval code
 * (ll0ruc/Ada-Retrieval, fmlprec.py and fmlprec_modules.py) builds it:
 *
 *   x = Dropout(LN(item_emb + P))          P: learned positions [L, D]
 *   per layer:
 *     f = irfft(W (.) rfft(x))             along the sequence, orthonormal;
 *                                          W complex [L/2 + 1, D]
 *     x = LN(x + Dropout(f))
 *     x = LN(x + Dropout(W_2 GELU(W_1 x + b_1) + b_2))
 *   user vector = x at position L-1 (the most recent item).
 *
 * There is no mask: padding positions take part in the transform. Layer
 * norms use eps 1e-12; weights, including both parts of W, start from
 * normal(0, 0.02), biases at 0 and layer-norm gains at 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "backbone.h"
#include "layers.h"

#define FMLPREC_NORM_EPS 1e-12f
#define FMLPREC_INIT_STD 0.02f

typedef struct fmlprec_layer {
    int filter_real; /* real parts of W, [L/2 + 1, D] */
    int filter_imag; /* imaginary parts of W, [L/2 + 1, D] */
    mr_rec_norm filter_norm;
    mr_rec_ffn ffn;
} fmlprec_layer;

typedef struct fmlprec_state {
    mr_rec_config config;
    mr_paramset *ps;
    mr_rec_positions input; /* positions [L, D] and the input norm */
    fmlprec_layer *layers; /* config.layers entries */
} fmlprec_state;

/* Checks the settings FMLP-Rec uses. Fills err and returns false on a bad
 * one. */
static bool fmlprec_check_config(const mr_rec_config *config, mr_error *err) {
    if (config->dim < 1 || config->max_len < 1 || config->layers < 1 ||
        config->inner_size < 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec fmlprec: dim (%d), max_len (%d), layers (%d) and inner_size (%d) "
                     "must all be at least 1",
                     config->dim, config->max_len, config->layers, config->inner_size);
        return false;
    }
    if (!(config->dropout >= 0.0f && config->dropout < 1.0f)) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec fmlprec: dropout %g is outside [0, 1)", (double)config->dropout);
        return false;
    }
    return true;
}

/* Declares the weights of layer i under "backbone.layers.<i>.". */
static mr_status fmlprec_declare_layer(mr_paramset *ps, const mr_rec_config *config, int i,
                                       fmlprec_layer *layer, mr_error *err) {
    int64_t filter_shape[2] = {config->max_len / 2 + 1, config->dim};
    char name[64];

    snprintf(name, sizeof name, "backbone.layers.%d.filter.weight_real", i);
    layer->filter_real = mr_paramset_declare(ps, name, 2, filter_shape, err);
    snprintf(name, sizeof name, "backbone.layers.%d.filter.weight_imag", i);
    layer->filter_imag =
        layer->filter_real < 0 ? -1 : mr_paramset_declare(ps, name, 2, filter_shape, err);
    if (layer->filter_imag < 0) {
        return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
    }

    snprintf(name, sizeof name, "backbone.layers.%d.filter_norm", i);
    mr_status status =
        mr_rec_norm_declare(ps, name, config->dim, FMLPREC_NORM_EPS, &layer->filter_norm, err);
    if (status != MR_OK) {
        return status;
    }

    snprintf(name, sizeof name, "backbone.layers.%d.ffn", i);
    return mr_rec_ffn_declare(ps, name, config->dim, config->inner_size, MR_REC_ACT_GELU,
                              FMLPREC_NORM_EPS, &layer->ffn, err);
}

static void fmlprec_free(void *state) {
    fmlprec_state *s = state;
    if (s == NULL) {
        return;
    }
    free(s->layers);
    free(s);
}

static void *fmlprec_declare(const mr_rec_config *config, mr_paramset *ps, mr_error *err) {
    if (!fmlprec_check_config(config, err)) {
        return NULL;
    }
    fmlprec_state *s = calloc(1, sizeof *s);
    fmlprec_layer *layers = calloc((size_t)config->layers, sizeof *layers);
    if (s == NULL || layers == NULL) {
        free(s);
        free(layers);
        mr_error_set(err, MR_ERR_NO_MEMORY, "rec fmlprec: out of memory for %d layers",
                     config->layers);
        return NULL;
    }
    s->config = *config;
    s->ps = ps;
    s->layers = layers;

    mr_status status = mr_rec_positions_declare(ps, config, FMLPREC_NORM_EPS, &s->input, err);
    for (int i = 0; i < config->layers && status == MR_OK; i++) {
        status = fmlprec_declare_layer(ps, config, i, &s->layers[i], err);
    }
    if (status != MR_OK) {
        fmlprec_free(s);
        return NULL;
    }
    return s;
}

static void fmlprec_init(void *state, mr_paramset *ps, mr_rng *rng) {
    fmlprec_state *s = state;
    mr_rec_positions_init(&s->input, ps, FMLPREC_INIT_STD, rng);
    for (int i = 0; i < s->config.layers; i++) {
        fmlprec_layer *layer = &s->layers[i];
        mr_tensor_init_normal(mr_paramset_get(ps, layer->filter_real), 0.0f, FMLPREC_INIT_STD,
                              rng);
        mr_tensor_init_normal(mr_paramset_get(ps, layer->filter_imag), 0.0f, FMLPREC_INIT_STD,
                              rng);
        mr_rec_norm_init(&layer->filter_norm, ps);
        mr_rec_ffn_init(&layer->ffn, ps, FMLPREC_INIT_STD, rng);
    }
}

/*
 * Returns irfft(W (.) rfft(x)) along the sequence axis of x [B, L, D]. The
 * spectrum [B, 2F, D] contains the F real parts, then the F imaginary parts,
 * and the product is (a + ib)(c + id) = (ac - bd) + i(ad + bc).
 */
static mr_tensor *filter_forward(const fmlprec_state *s, const fmlprec_layer *layer,
                                 mr_ctx *ctx, mr_tensor *x) {
    int64_t freqs = s->config.max_len / 2 + 1;
    mr_tensor *w_real = mr_paramset_get(s->ps, layer->filter_real);
    mr_tensor *w_imag = mr_paramset_get(s->ps, layer->filter_imag);

    mr_tensor *spectrum = mr_tensor_rdft(ctx, x, 1);
    mr_tensor *real = mr_tensor_contiguous(ctx, mr_tensor_slice(ctx, spectrum, 1, 0, freqs));
    mr_tensor *imag =
        mr_tensor_contiguous(ctx, mr_tensor_slice(ctx, spectrum, 1, freqs, freqs));

    mr_tensor *parts[2];
    parts[0] = mr_tensor_sub(ctx, mr_tensor_mul(ctx, real, w_real),
                             mr_tensor_mul(ctx, imag, w_imag));
    parts[1] = mr_tensor_add(ctx, mr_tensor_mul(ctx, real, w_imag),
                             mr_tensor_mul(ctx, imag, w_real));
    if (parts[0] == NULL || parts[1] == NULL) {
        return NULL;
    }
    mr_tensor *filtered = mr_tensor_concat(ctx, parts, 2, 1);
    return mr_tensor_irdft(ctx, filtered, 1, s->config.max_len);
}

/*
 * Runs one filter layer over x [B, L, D]. With last_only the output covers
 * only position L-1 ([B, 1, D]): the transform still mixes every position,
 * but the norm and feed-forward after it run on the last row alone.
 */
static mr_tensor *fmlprec_layer_forward(const fmlprec_state *s, const fmlprec_layer *layer,
                                        mr_ctx *ctx, mr_tensor *x, bool last_only,
                                        mr_rng *rng) {
    float p = s->config.dropout;
    mr_tensor *filtered = filter_forward(s, layer, ctx, x);
    if (last_only) {
        filtered = mr_rec_last_position(ctx, filtered);
        x = mr_rec_last_position(ctx, x);
    }
    filtered = mr_tensor_dropout(ctx, filtered, p, rng);
    mr_tensor *h = mr_rec_norm_forward(&layer->filter_norm, s->ps, ctx,
                                       mr_tensor_add(ctx, filtered, x));
    return mr_rec_ffn_forward(&layer->ffn, s->ps, ctx, h, p, rng);
}

/* Runs every layer, the last one on position L-1 alone when last_only. */
static mr_tensor *fmlprec_run(const fmlprec_state *s, mr_ctx *ctx, mr_tensor *item_emb,
                              mr_tensor *seq, bool last_only, mr_rng *rng) {
    if (!mr_rec_check_inputs(ctx, "fmlprec", &s->config, false, item_emb, seq)) {
        return NULL;
    }
    mr_tensor *x =
        mr_rec_positions_forward(&s->input, s->ps, ctx, item_emb, s->config.dropout, rng);
    for (int i = 0; i < s->config.layers; i++) {
        bool last = last_only && i == s->config.layers - 1;
        x = fmlprec_layer_forward(s, &s->layers[i], ctx, x, last, rng);
    }
    return x;
}

mr_tensor *mr_rec_fmlprec_encode(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                 mr_tensor *seq, mr_rng *rng) {
    return fmlprec_run(state, ctx, item_emb, seq, false, rng);
}

static mr_tensor *fmlprec_forward(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                  mr_tensor *seq, mr_rng *rng) {
    const fmlprec_state *s = state;
    mr_tensor *last = fmlprec_run(s, ctx, item_emb, seq, true, rng);
    if (last == NULL) {
        return NULL;
    }
    int64_t shape[2] = {last->shape[0], s->config.dim};
    return mr_tensor_reshape(ctx, last, 2, shape);
}

const mr_rec_backbone_ops mr_rec_fmlprec_ops = {fmlprec_declare, fmlprec_init, fmlprec_forward,
                                                fmlprec_free, false, false};
