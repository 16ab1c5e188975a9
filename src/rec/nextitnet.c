/*
 * The NextItNet backbone as the Ada-Retrieval code (ll0ruc/Ada-Retrieval,
 * nextitnet.py and ResidualBlock_b in modules.py) runs it: `layers`
 * residual blocks with dilations 1, 4, 1, 4, ..., each
 *
 *     y = ReLU(LN(conv_d(x)));  y = ReLU(LN(conv_2d(y)));  out = y + x
 *
 * with dilated causal convolutions of kernel 3 from D to D channels and
 * LayerNorm eps 1e-8. The last position's output goes through a linear
 * layer D -> D to give the user vector. There is no dropout.
 *
 * Padding positions read zero embeddings before any adapter, so their
 * activations are the same for every input: the receptive field of a
 * padding position holds only padding and the zeros before the start. An
 * input cut to its last T = L - P positions therefore gives the
 * full-length user vector when each convolution first reads, in place of
 * zeros, the last 2 * dilation padding activations that a batch-1 pass
 * over P zero positions computes. Under Ada-Retrieval the padding rows
 * differ per input, and the model runs every input at full length.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backbone.h"
#include "rnn_layers.h"

#define NEXTITNET_KERNEL 3
#define NEXTITNET_LN_EPS 1e-8f

/* Weight indices of one residual block. */
typedef struct nextitnet_block {
    int dilation; /* of the first convolution; the second uses twice this */
    int conv1_weight, conv1_bias; /* [D, D, 3], [D] */
    int ln1_weight, ln1_bias;     /* [D] */
    int conv2_weight, conv2_bias;
    int ln2_weight, ln2_bias;
} nextitnet_block;

typedef struct nextitnet_state {
    mr_paramset *ps;
    int dim;
    int max_len;
    int n_blocks;
    nextitnet_block *blocks;
    mr_rec_rnn_linear final_layer; /* dim -> dim */
} nextitnet_state;

static void nextitnet_free(void *state) {
    nextitnet_state *s = state;
    if (s == NULL) {
        return;
    }
    free(s->blocks);
    free(s);
}

/*
 * Declares each block's weights as "backbone.residual_blocks.<i>.conv1.weight"
 * and so on, the authors' module names, and "backbone.final_layer". The
 * reference stores convolution weights as nn.Conv2d [D, D, 1, 3]; here they
 * are [D, D, 3].
 */
static void *nextitnet_declare(const mr_rec_config *config, mr_paramset *ps, mr_error *err) {
    if (config->dim < 1 || config->layers < 1 || config->max_len < 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "nextitnet: dim %d, layers (residual blocks) %d and max_len %d must be "
                     "positive",
                     config->dim, config->layers, config->max_len);
        return NULL;
    }
    nextitnet_state *s = calloc(1, sizeof *s);
    nextitnet_block *blocks = calloc((size_t)config->layers, sizeof *blocks);
    if (s == NULL || blocks == NULL) {
        free(s);
        free(blocks);
        mr_error_set(err, MR_ERR_NO_MEMORY, "nextitnet: out of memory for %d blocks",
                     config->layers);
        return NULL;
    }
    *s = (nextitnet_state){ps, config->dim, config->max_len, config->layers, blocks, {-1, -1}};

    int64_t dim = s->dim;
    int64_t conv_shape[3] = {dim, dim, NEXTITNET_KERNEL};
    int64_t vector_shape[1] = {dim};
    const char *names[8] = {"conv1.weight", "conv1.bias", "ln1.weight", "ln1.bias",
                            "conv2.weight", "conv2.bias", "ln2.weight", "ln2.bias"};
    for (int b = 0; b < s->n_blocks; b++) {
        nextitnet_block *block = &blocks[b];
        block->dilation = b % 2 == 0 ? 1 : 4;
        int *indices[8] = {&block->conv1_weight, &block->conv1_bias, &block->ln1_weight,
                           &block->ln1_bias, &block->conv2_weight, &block->conv2_bias,
                           &block->ln2_weight, &block->ln2_bias};
        char prefix[48];
        snprintf(prefix, sizeof prefix, "backbone.residual_blocks.%d.", b);
        for (int k = 0; k < 8; k++) {
            bool is_conv_weight = k == 0 || k == 4;
            *indices[k] = mr_rec_rnn_declare(ps, prefix, names[k], is_conv_weight ? 3 : 1,
                                             is_conv_weight ? conv_shape : vector_shape, err);
            if (*indices[k] < 0) {
                nextitnet_free(s);
                return NULL;
            }
        }
    }
    if (!mr_rec_rnn_linear_declare(ps, "backbone.final_layer", s->dim, s->dim, true,
                                   &s->final_layer, err)) {
        nextitnet_free(s);
        return NULL;
    }
    return s;
}

/*
 * Convolutions keep PyTorch's default nn.Conv2d initialisation, because
 * the authors' xavier initialiser does not visit them: weight and bias
 * uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = D * 3. LayerNorms
 * start at weight 1 and bias 0. The final layer gets xavier uniform with a
 * zero bias.
 */
static void nextitnet_init(void *state, mr_paramset *ps, mr_rng *rng) {
    nextitnet_state *s = state;
    float bound = 1.0f / sqrtf((float)(s->dim * NEXTITNET_KERNEL));
    for (int b = 0; b < s->n_blocks; b++) {
        const nextitnet_block *block = &s->blocks[b];
        mr_rec_rnn_init_uniform(ps, block->conv1_weight, bound, rng);
        mr_rec_rnn_init_uniform(ps, block->conv1_bias, bound, rng);
        mr_tensor_fill(mr_paramset_get(ps, block->ln1_weight), 1.0f);
        mr_tensor_init_zeros(mr_paramset_get(ps, block->ln1_bias));
        mr_rec_rnn_init_uniform(ps, block->conv2_weight, bound, rng);
        mr_rec_rnn_init_uniform(ps, block->conv2_bias, bound, rng);
        mr_tensor_fill(mr_paramset_get(ps, block->ln2_weight), 1.0f);
        mr_tensor_init_zeros(mr_paramset_get(ps, block->ln2_bias));
    }
    mr_rec_rnn_linear_init_xavier(ps, &s->final_layer, rng);
}

/* Builds ReLU(LN(causal_conv(x))) for one half of a residual block. */
static mr_tensor *conv_norm_relu(mr_ctx *ctx, mr_paramset *ps, mr_tensor *x, int conv_weight,
                                 int conv_bias, int ln_weight, int ln_bias, int dilation) {
    mr_tensor *y = mr_tensor_conv1d_causal(ctx, x, mr_paramset_get(ps, conv_weight),
                                           mr_paramset_get(ps, conv_bias), dilation);
    y = mr_tensor_layer_norm(ctx, y, mr_paramset_get(ps, ln_weight),
                             mr_paramset_get(ps, ln_bias), NEXTITNET_LN_EPS);
    return mr_tensor_relu(ctx, y);
}

mr_tensor *mr_rec_nextitnet_positions(void *state, mr_ctx *ctx, mr_tensor *item_emb) {
    nextitnet_state *s = state;
    if (item_emb == NULL ||
        !mr_rec_rnn_check_inputs(ctx, "nextitnet", item_emb, NULL, s->dim)) {
        return NULL;
    }

    mr_tensor *x = item_emb;
    for (int b = 0; b < s->n_blocks; b++) {
        const nextitnet_block *block = &s->blocks[b];
        mr_tensor *y = conv_norm_relu(ctx, s->ps, x, block->conv1_weight, block->conv1_bias,
                                      block->ln1_weight, block->ln1_bias, block->dilation);
        y = conv_norm_relu(ctx, s->ps, y, block->conv2_weight, block->conv2_bias,
                           block->ln2_weight, block->ln2_bias, 2 * block->dilation);
        x = mr_tensor_add(ctx, y, x);
    }
    return x;
}

/*
 * Builds ReLU(LN(causal_conv(x))) for a cut input x [B, T, D] whose
 * convolution reads the padding activations `padding` [1, P, D] before
 * its first position. Only the last 2 * dilation of them can reach an
 * output position.
 */
static mr_tensor *conv_norm_relu_after(mr_ctx *ctx, mr_paramset *ps, mr_tensor *x,
                                       mr_tensor *padding, int conv_weight, int conv_bias,
                                       int ln_weight, int ln_bias, int dilation) {
    int64_t batch = x->shape[0], length = x->shape[1];
    int64_t reach = 2 * (int64_t)dilation;
    int64_t window_length = padding->shape[1] < reach ? padding->shape[1] : reach;

    mr_tensor *window =
        mr_tensor_slice(ctx, padding, 1, padding->shape[1] - window_length, window_length);
    mr_tensor *rows = mr_rec_rnn_repeat_rows(ctx, window, batch);
    mr_tensor *parts[2] = {rows, x};
    mr_tensor *joined = mr_tensor_concat(ctx, parts, 2, 1);

    mr_tensor *y = mr_tensor_conv1d_causal(ctx, joined, mr_paramset_get(ps, conv_weight),
                                           mr_paramset_get(ps, conv_bias), dilation);
    y = mr_tensor_slice(ctx, y, 1, window_length, length);
    y = mr_tensor_layer_norm(ctx, y, mr_paramset_get(ps, ln_weight),
                             mr_paramset_get(ps, ln_bias), NEXTITNET_LN_EPS);
    return mr_tensor_relu(ctx, y);
}

/*
 * Builds the last position's output [B, D] of the residual stack for an
 * input cut by `padding` zero positions (see the top of this file). A
 * batch-1 pass over the padding runs alongside and gives each convolution
 * the activations it reads before the cut.
 */
static mr_tensor *cut_positions(nextitnet_state *s, mr_ctx *ctx, mr_tensor *item_emb,
                                int64_t padding) {
    mr_tensor *pad_x = mr_tensor_zeros(ctx, MR_F32, 3, (int64_t[]){1, padding, s->dim});
    mr_tensor *x = item_emb;
    for (int b = 0; b < s->n_blocks && pad_x != NULL && x != NULL; b++) {
        const nextitnet_block *block = &s->blocks[b];
        mr_tensor *pad_y = conv_norm_relu(ctx, s->ps, pad_x, block->conv1_weight,
                                          block->conv1_bias, block->ln1_weight,
                                          block->ln1_bias, block->dilation);
        mr_tensor *y = conv_norm_relu_after(ctx, s->ps, x, pad_x, block->conv1_weight,
                                            block->conv1_bias, block->ln1_weight,
                                            block->ln1_bias, block->dilation);
        if (pad_y == NULL || y == NULL) {
            return NULL;
        }
        mr_tensor *pad_z = conv_norm_relu(ctx, s->ps, pad_y, block->conv2_weight,
                                          block->conv2_bias, block->ln2_weight,
                                          block->ln2_bias, 2 * block->dilation);
        y = conv_norm_relu_after(ctx, s->ps, y, pad_y, block->conv2_weight, block->conv2_bias,
                                 block->ln2_weight, block->ln2_bias, 2 * block->dilation);
        pad_x = mr_tensor_add(ctx, pad_z, pad_x);
        x = mr_tensor_add(ctx, y, x);
    }
    return x;
}

/* Builds the residual stack and the final layer on the last position.
 * seq is only checked, and rng is not used (no dropout). An input shorter
 * than max_len counts as cut from the left. */
static mr_tensor *nextitnet_forward(void *state, mr_ctx *ctx, mr_tensor *item_emb,
                                    mr_tensor *seq, mr_rng *rng) {
    nextitnet_state *s = state;
    (void)rng;
    if (item_emb == NULL || !mr_rec_rnn_check_inputs(ctx, "nextitnet", item_emb, seq, s->dim)) {
        return NULL;
    }
    int64_t padding = (int64_t)s->max_len - item_emb->shape[1];
    if (padding < 0) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "nextitnet: input of %lld positions is longer than max_len %d",
                    (long long)item_emb->shape[1], s->max_len);
        return NULL;
    }

    mr_tensor *positions = padding > 0 ? cut_positions(s, ctx, item_emb, padding)
                                       : mr_rec_nextitnet_positions(state, ctx, item_emb);
    mr_tensor *last = mr_rec_rnn_last_step(ctx, positions);
    return mr_rec_rnn_linear_forward(ctx, s->ps, &s->final_layer, last);
}

const mr_rec_backbone_ops mr_rec_nextitnet_ops = {nextitnet_declare, nextitnet_init,
                                                  nextitnet_forward, nextitnet_free, false, true};
