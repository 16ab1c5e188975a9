/*
 * The GRU4Rec backbone as the Ada-Retrieval code (ll0ruc/Ada-Retrieval,
 * gru4rec.py) runs it: dropout on the item embeddings, a stack of GRU
 * layers of width inner_size over all L left-padded steps, and a linear
 * layer from inner_size back to D. The last step's output is the user
 * vector.
 *
 * Padding steps change a GRU's state, so they cannot simply be dropped.
 * But without adapters every padding step reads a zero embedding, so the
 * state after P padding steps is the same for every input. An input cut
 * to its last T = L - P steps therefore gives the same user vector when
 * each layer starts from that shared state, which one batch-1 pass over P
 * zero steps computes (inside the graph, so its weights get their
 * gradient). With adapters the padding rows differ per input, and the
 * model runs every input at full length.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backbone.h"
#include "rnn_layers.h"

/* Maximum GRU layers of one model, the size of the per-layer start states. */
#define MR_REC_GRU4REC_MAX_LAYERS 16

/* Weight indices of one GRU layer, PyTorch's gate order (reset, update,
 * new). */
typedef struct gru_layer {
    int w_ih; /* [3H, input] */
    int w_hh; /* [3H, H] */
    int b_ih; /* [3H] */
    int b_hh; /* [3H] */
} gru_layer;

typedef struct gru4rec_state {
    mr_paramset *ps;
    int dim;
    int hidden;
    int n_layers;
    int max_len;
    float dropout;
    gru_layer *layers;
    mr_rec_rnn_linear dense; /* hidden -> dim */
} gru4rec_state;

static void gru4rec_free(void *state) {
    gru4rec_state *s = state;
    if (s == NULL) {
        return;
    }
    free(s->layers);
    free(s);
}

/* Declares the GRU weights under the names PyTorch's nn.GRU gives them
 * (weight_ih_l0, ...) and the output layer "dense". */
static void *gru4rec_declare(const mr_rec_config *config, mr_paramset *ps, mr_error *err) {
    if (config->dim < 1 || config->inner_size < 1 || config->layers < 1 ||
        config->layers > MR_REC_GRU4REC_MAX_LAYERS || config->max_len < 1 ||
        !(config->dropout >= 0.0f && config->dropout < 1.0f)) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "gru4rec: dim %d, inner_size %d and max_len %d must be positive, layers %d "
                     "in [1, %d] and dropout %g in [0, 1)",
                     config->dim, config->inner_size, config->max_len, config->layers,
                     MR_REC_GRU4REC_MAX_LAYERS, (double)config->dropout);
        return NULL;
    }
    gru4rec_state *s = calloc(1, sizeof *s);
    gru_layer *layers = calloc((size_t)config->layers, sizeof *layers);
    if (s == NULL || layers == NULL) {
        free(s);
        free(layers);
        mr_error_set(err, MR_ERR_NO_MEMORY, "gru4rec: out of memory for %d layers",
                     config->layers);
        return NULL;
    }
    *s = (gru4rec_state){ps, config->dim, config->inner_size, config->layers,
                         config->max_len, config->dropout, layers, {-1, -1}};

    int64_t gates = 3 * (int64_t)s->hidden;
    for (int l = 0; l < s->n_layers; l++) {
        int64_t input = l == 0 ? s->dim : s->hidden;
        int64_t ih_shape[2] = {gates, input};
        int64_t hh_shape[2] = {gates, s->hidden};
        int64_t bias_shape[1] = {gates};
        const char *kinds[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
        const int64_t *shapes[4] = {ih_shape, hh_shape, bias_shape, bias_shape};
        int ndims[4] = {2, 2, 1, 1};
        int *indices[4] = {&layers[l].w_ih, &layers[l].w_hh, &layers[l].b_ih, &layers[l].b_hh};
        for (int k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s_l%d", kinds[k], l);
            *indices[k] = mr_rec_rnn_declare(ps, "backbone.gru_layers.", name, ndims[k],
                                             shapes[k], err);
            if (*indices[k] < 0) {
                gru4rec_free(s);
                return NULL;
            }
        }
    }
    if (!mr_rec_rnn_linear_declare(ps, "backbone.dense", s->hidden, s->dim, true, &s->dense,
                                   err)) {
        gru4rec_free(s);
        return NULL;
    }
    return s;
}

/*
 * The GRU keeps PyTorch's default initialisation, uniform(-1/sqrt(H),
 * 1/sqrt(H)) for every weight and bias, because the authors' xavier
 * initialiser only visits Embedding, Linear and LayerNorm modules. The
 * output layer gets xavier uniform with a zero bias.
 */
static void gru4rec_init(void *state, mr_paramset *ps, mr_rng *rng) {
    gru4rec_state *s = state;
    float bound = 1.0f / sqrtf((float)s->hidden);
    for (int l = 0; l < s->n_layers; l++) {
        mr_rec_rnn_init_uniform(ps, s->layers[l].w_ih, bound, rng);
        mr_rec_rnn_init_uniform(ps, s->layers[l].w_hh, bound, rng);
        mr_rec_rnn_init_uniform(ps, s->layers[l].b_ih, bound, rng);
        mr_rec_rnn_init_uniform(ps, s->layers[l].b_hh, bound, rng);
    }
    mr_rec_rnn_linear_init_xavier(ps, &s->dense, rng);
}

/*
 * Runs the GRU stack over `padding` zero steps for one input and stores
 * each layer's final state, [1, H], in states[l]. Returns false with the
 * error stored in ctx on failure.
 */
static bool padding_states(gru4rec_state *s, mr_ctx *ctx, int64_t padding, mr_tensor **states) {
    mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){1, padding, s->dim});
    for (int l = 0; l < s->n_layers; l++) {
        const gru_layer *layer = &s->layers[l];
        x = mr_tensor_gru(ctx, x, NULL, mr_paramset_get(s->ps, layer->w_ih),
                          mr_paramset_get(s->ps, layer->w_hh),
                          mr_paramset_get(s->ps, layer->b_ih),
                          mr_paramset_get(s->ps, layer->b_hh));
        states[l] = mr_rec_rnn_last_step(ctx, x);
        if (states[l] == NULL) {
            return false;
        }
    }
    return true;
}

/*
 * Builds dropout -> GRU stack -> dense on the last step. seq is not used:
 * padding steps run through the GRU like any other step. An input shorter
 * than max_len counts as cut from the left, and each layer starts from
 * the state that the missing zero padding steps would have left (see the
 * top of this file).
 */
static mr_tensor *gru4rec_forward(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                  mr_tensor *seq, mr_rng *rng) {
    gru4rec_state *s = state;
    if (item_emb == NULL || !mr_rec_rnn_check_inputs(ctx, "gru4rec", item_emb, seq, s->dim)) {
        return NULL;
    }
    int64_t batch = item_emb->shape[0];
    int64_t padding = (int64_t)s->max_len - item_emb->shape[1];
    if (padding < 0) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "gru4rec: input of %lld steps is longer than max_len %d",
                    (long long)item_emb->shape[1], s->max_len);
        return NULL;
    }

    mr_tensor *starts[MR_REC_GRU4REC_MAX_LAYERS] = {NULL};
    if (padding > 0 && !padding_states(s, ctx, padding, starts)) {
        return NULL;
    }

    mr_tensor *x = mr_tensor_dropout(ctx, item_emb, s->dropout, rng);

    for (int l = 0; l < s->n_layers; l++) {
        const gru_layer *layer = &s->layers[l];

        mr_tensor *h0 = starts[l] != NULL ? mr_rec_rnn_repeat_rows(ctx, starts[l], batch) : NULL;
        x = mr_tensor_gru(ctx, x, h0, mr_paramset_get(s->ps, layer->w_ih),
                          mr_paramset_get(s->ps, layer->w_hh),
                          mr_paramset_get(s->ps, layer->b_ih),
                          mr_paramset_get(s->ps, layer->b_hh));
    }

    /* The dense layer acts on each step alone, so applying it to the last
     * step only gives the reference's user vector. */
    mr_tensor *last = mr_rec_rnn_last_step(ctx, x);
    return mr_rec_rnn_linear_forward(ctx, s->ps, &s->dense, last);
}

const mr_rec_backbone_ops mr_rec_gru4rec_ops = {gru4rec_declare, gru4rec_init,
                                                gru4rec_forward, gru4rec_free, false, true};
