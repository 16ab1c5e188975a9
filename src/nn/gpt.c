/*
 * A small GPT-2 style causal transformer on the tensor engine.
 *
 * The parameters sit in one flat float buffer, laid out as a table of
 * named tensors (token embedding, position embedding, then each block's
 * weights in GPT-2's order, then the final LayerNorm). mr_gpt_create()
 * sums the sizes, allocates the buffer once, marks it as the only engine
 * parameter and carves a view for each weight, so each view's gradient is a
 * window of the one flat gradient.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/nn.h"
#include "multiround/rng.h"

/* LayerNorm epsilon of GPT-2 and PyTorch's default. */
#define GPT_LAYER_NORM_EPS 1e-5f

/* Standard deviation of GPT-2's normal initialisation. */
#define GPT_INIT_STD 0.02f

/* Tensors per transformer block, in storage order. */
enum block_tensor {
    BLOCK_LN1_WEIGHT,
    BLOCK_LN1_BIAS,
    BLOCK_ATTN_WEIGHT,      /* c_attn: [3C, C], rows q, k, v */
    BLOCK_ATTN_BIAS,        /* [3C] */
    BLOCK_ATTN_PROJ_WEIGHT, /* [C, C] */
    BLOCK_ATTN_PROJ_BIAS,
    BLOCK_LN2_WEIGHT,
    BLOCK_LN2_BIAS,
    BLOCK_FC_WEIGHT,        /* [4C, C] */
    BLOCK_FC_BIAS,          /* [4C] */
    BLOCK_FC_PROJ_WEIGHT,   /* [C, 4C] */
    BLOCK_FC_PROJ_BIAS,
    BLOCK_TENSORS
};

/* Initial values of a tensor in GPT-2's scheme. */
enum init_kind { INIT_NORMAL, INIT_RESIDUAL_NORMAL, INIT_ZEROS, INIT_ONES };

typedef struct block_spec {
    const char *suffix;   /* name after "h.<layer>." */
    int rows_per_c;       /* rows as a multiple of C (0: the tensor is 1-D) */
    int cols_per_c;       /* columns (or length when 1-D) as a multiple of C */
    enum init_kind init;
} block_spec;

static const block_spec block_specs[BLOCK_TENSORS] = {
    {"ln_1.weight", 0, 1, INIT_ONES},
    {"ln_1.bias", 0, 1, INIT_ZEROS},
    {"attn.c_attn.weight", 3, 1, INIT_NORMAL},
    {"attn.c_attn.bias", 0, 3, INIT_ZEROS},
    {"attn.c_proj.weight", 1, 1, INIT_RESIDUAL_NORMAL},
    {"attn.c_proj.bias", 0, 1, INIT_ZEROS},
    {"ln_2.weight", 0, 1, INIT_ONES},
    {"ln_2.bias", 0, 1, INIT_ZEROS},
    {"mlp.c_fc.weight", 4, 1, INIT_NORMAL},
    {"mlp.c_fc.bias", 0, 4, INIT_ZEROS},
    {"mlp.c_proj.weight", 1, 4, INIT_RESIDUAL_NORMAL},
    {"mlp.c_proj.bias", 0, 1, INIT_ZEROS},
};

/* Indices of the tensors outside the blocks. */
#define GPT_WTE 0
#define GPT_WPE 1
#define GPT_FIRST_BLOCK 2

struct mr_gpt {
    mr_gpt_config config;
    mr_ctx *param_ctx;   /* owns the flat buffer, its gradient and the views */
    mr_tensor *flat;     /* [P], the only engine parameter */
    mr_tensor **tensors; /* views in storage order */
    int tensor_count;
    mr_rng dropout_rng;  /* advanced by every dropout call */
};

/* Index of block tensor `which` of block `layer` in gpt->tensors. */
static int block_index(int layer, int which) {
    return GPT_FIRST_BLOCK + layer * BLOCK_TENSORS + which;
}

/* Shape of every tensor in storage order; returns the tensor count.
 * shapes[i] has ndims[i] entries. */
static int tensor_shapes(const mr_gpt_config *config, int64_t (*shapes)[2],
                         int *ndims) {
    int64_t c = config->channels;
    int n = 0;

    shapes[n][0] = config->vocab_size;
    shapes[n][1] = c;
    ndims[n++] = 2;
    shapes[n][0] = config->context;
    shapes[n][1] = c;
    ndims[n++] = 2;
    for (int layer = 0; layer < config->layers; layer++) {
        for (int which = 0; which < BLOCK_TENSORS; which++) {
            const block_spec *spec = &block_specs[which];
            if (spec->rows_per_c == 0) {
                shapes[n][0] = spec->cols_per_c * c;
                ndims[n++] = 1;
            } else {
                shapes[n][0] = spec->rows_per_c * c;
                shapes[n][1] = spec->cols_per_c * c;
                ndims[n++] = 2;
            }
        }
    }
    shapes[n][0] = c;
    ndims[n++] = 1;
    shapes[n][0] = c;
    ndims[n++] = 1;
    return n;
}

/* Checks the config's ranges; fills err and returns false when invalid. */
static bool config_valid(const mr_gpt_config *config, mr_error *err) {
    if (config->vocab_size < 1 || config->context < 1 || config->layers < 0 ||
        config->heads < 1 || config->channels < 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "gpt: vocab_size (%d), context (%d), heads (%d) and channels (%d) must "
                     "be >= 1 and layers (%d) >= 0",
                     config->vocab_size, config->context, config->heads, config->channels,
                     config->layers);
        return false;
    }
    if (config->channels % config->heads != 0) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "gpt: channels (%d) must be a multiple of heads (%d)", config->channels,
                     config->heads);
        return false;
    }
    if (!(config->dropout >= 0.0f && config->dropout < 1.0f)) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "gpt: dropout must be in [0, 1), got %g", (double)config->dropout);
        return false;
    }
    return true;
}

/* The name of tensor index in storage order, as in GPT-2 checkpoints. */
static void tensor_name(const mr_gpt_config *config, int index, char *name,
                        size_t size) {
    int last = GPT_FIRST_BLOCK + config->layers * BLOCK_TENSORS;
    if (index == GPT_WTE) {
        snprintf(name, size, "wte");
    } else if (index == GPT_WPE) {
        snprintf(name, size, "wpe");
    } else if (index == last) {
        snprintf(name, size, "ln_f.weight");
    } else if (index == last + 1) {
        snprintf(name, size, "ln_f.bias");
    } else {
        int offset = index - GPT_FIRST_BLOCK;
        snprintf(name, size, "h.%d.%s", offset / BLOCK_TENSORS,
                 block_specs[offset % BLOCK_TENSORS].suffix);
    }
}

/* The initialisation of tensor index in storage order. */
static enum init_kind tensor_init(const mr_gpt_config *config, int index) {
    int last = GPT_FIRST_BLOCK + config->layers * BLOCK_TENSORS;
    if (index == GPT_WTE || index == GPT_WPE) {
        return INIT_NORMAL;
    }
    if (index == last) {
        return INIT_ONES;
    }
    if (index == last + 1) {
        return INIT_ZEROS;
    }
    return block_specs[(index - GPT_FIRST_BLOCK) % BLOCK_TENSORS].init;
}

mr_gpt *mr_gpt_create(const mr_gpt_config *config, uint64_t seed,
                      mr_error *err) {
    if (config == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "gpt: config is NULL");
        return NULL;
    }
    if (!config_valid(config, err)) {
        return NULL;
    }

    /* Size every tensor and the flat buffer. */
    int count = GPT_FIRST_BLOCK + config->layers * BLOCK_TENSORS + 2;
    int64_t (*shapes)[2] = calloc((size_t)count, sizeof *shapes);
    int *ndims = calloc((size_t)count, sizeof *ndims);
    mr_gpt *gpt = calloc(1, sizeof *gpt);
    if (shapes == NULL || ndims == NULL || gpt == NULL) {
        free(shapes);
        free(ndims);
        free(gpt);
        mr_error_set(err, MR_ERR_NO_MEMORY, "gpt: no memory for the model description");
        return NULL;
    }
    tensor_shapes(config, shapes, ndims);
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        total += shapes[i][0] * (ndims[i] == 2 ? shapes[i][1] : 1);
    }
    gpt->config = *config;
    gpt->tensor_count = count;

    /* One allocation for the weights and their gradient, plus headers. */
    size_t bytes = (size_t)total * 2 * sizeof(float) +
                   (size_t)count * (sizeof(mr_tensor) + 64) + 4096;
    gpt->param_ctx = mr_ctx_create(bytes);
    gpt->tensors = calloc((size_t)count, sizeof *gpt->tensors);
    if (gpt->param_ctx == NULL || gpt->tensors == NULL) {
        free(shapes);
        free(ndims);
        mr_gpt_free(gpt);
        mr_error_set(err, MR_ERR_NO_MEMORY, "gpt: no memory for %lld parameters",
                     (long long)total);
        return NULL;
    }
    gpt->flat = mr_tensor_new1d(gpt->param_ctx, MR_F32, total);
    if (gpt->flat != NULL) {
        mr_tensor_set_name(gpt->flat, "gpt.params");
        mr_tensor_set_param(gpt->flat);
    }

    /* Carve the views and initialise each from its own child stream, so
     * that a tensor's values do not depend on the sizes before it. */
    mr_rng root;
    mr_rng_init(&root, seed);
    float residual_std = GPT_INIT_STD / sqrtf(2.0f * (float)(config->layers > 0 ? config->layers : 1));
    int64_t offset = 0;
    for (int i = 0; i < count && mr_ctx_status(gpt->param_ctx) == MR_OK; i++) {
        int64_t size = shapes[i][0] * (ndims[i] == 2 ? shapes[i][1] : 1);
        mr_tensor *slice = mr_tensor_slice(gpt->param_ctx, gpt->flat, 0, offset, size);
        mr_tensor *view = mr_tensor_reshape(gpt->param_ctx, slice, ndims[i], shapes[i]);
        if (view == NULL) {
            break;
        }
        char name[48];
        tensor_name(config, i, name, sizeof name);
        mr_tensor_set_name(view, name);

        /* Marked as parameters so that optimizers can take the weights one
         * by one, in one group per weight decay. */
        if (mr_tensor_set_param(view) != MR_OK) {
            break;
        }

        mr_rng stream = mr_rng_split(&root, (uint64_t)i);
        switch (tensor_init(config, i)) {
        case INIT_NORMAL:
            mr_tensor_init_normal(view, 0.0f, GPT_INIT_STD, &stream);
            break;
        case INIT_RESIDUAL_NORMAL:
            mr_tensor_init_normal(view, 0.0f, residual_std, &stream);
            break;
        case INIT_ZEROS:
            mr_tensor_fill(view, 0.0f);
            break;
        case INIT_ONES:
            mr_tensor_fill(view, 1.0f);
            break;
        }
        gpt->tensors[i] = view;
        offset += size;
    }
    free(shapes);
    free(ndims);
    if (mr_ctx_status(gpt->param_ctx) != MR_OK) {
        mr_ctx_take_error(gpt->param_ctx, err);
        mr_gpt_free(gpt);
        return NULL;
    }

    /* Dropout draws from a stream of its own, split off the same seed. */
    gpt->dropout_rng = mr_rng_split(&root, (uint64_t)count);
    return gpt;
}

void mr_gpt_free(mr_gpt *gpt) {
    if (gpt == NULL) {
        return;
    }
    mr_ctx_free(gpt->param_ctx);
    free(gpt->tensors);
    free(gpt);
}

const mr_gpt_config *mr_gpt_get_config(const mr_gpt *gpt) {
    return &gpt->config;
}

void mr_gpt_params(mr_gpt *gpt, mr_tensor ***tensors, int *count) {
    *tensors = gpt->tensors;
    *count = gpt->tensor_count;
}

int mr_gpt_params_by_decay(mr_gpt *gpt, bool decayed, mr_tensor **out) {
    int n = 0;
    for (int i = 0; i < gpt->tensor_count; i++) {
        if ((gpt->tensors[i]->ndim == 2) == decayed) {
            out[n++] = gpt->tensors[i];
        }
    }
    return n;
}

mr_tensor *mr_gpt_flat_params(mr_gpt *gpt) {
    return gpt->flat;
}

int64_t mr_gpt_param_count(const mr_gpt *gpt) {
    return mr_tensor_numel(gpt->flat);
}

void mr_gpt_zero_grad(mr_gpt *gpt) {
    mr_tensor_zero_grad(gpt->flat);
}

/* ------------------------------------------------------------------------
 * Forward pass
 * ------------------------------------------------------------------------ */

/* Splits qkv [B, T, 3C] into q, k or v (part 0, 1 or 2) as [B, H, T, D]. */
static mr_tensor *split_heads(mr_ctx *ctx, mr_tensor *qkv, int part, int heads) {
    int64_t shape[4] = {qkv->shape[0], qkv->shape[1], 3 * heads,
                        qkv->shape[2] / (3 * heads)};
    mr_tensor *grouped = mr_tensor_reshape(ctx, qkv, 4, shape);
    mr_tensor *part_view = mr_tensor_slice(ctx, grouped, 2, (int64_t)part * heads, heads);
    int perm[4] = {0, 2, 1, 3};
    return mr_tensor_permute(ctx, part_view, perm);
}

/* Causal self-attention of one block on the normalised input h [B, T, C]. */
static mr_tensor *attention_block(mr_gpt *gpt, mr_ctx *ctx, int layer, mr_tensor *h) {
    mr_tensor **p = gpt->tensors;
    int heads = gpt->config.heads;

    mr_tensor *qkv = mr_tensor_linear(ctx, h, p[block_index(layer, BLOCK_ATTN_WEIGHT)],
                                      p[block_index(layer, BLOCK_ATTN_BIAS)]);
    if (qkv == NULL) {
        return NULL;
    }
    mr_tensor *q = split_heads(ctx, qkv, 0, heads);
    mr_tensor *k = split_heads(ctx, qkv, 1, heads);
    mr_tensor *v = split_heads(ctx, qkv, 2, heads);
    mr_tensor *y = mr_tensor_attention(ctx, q, k, v, NULL, 0.0f, MR_SOFTMAX_CAUSAL);
    if (y == NULL) {
        return NULL;
    }

    /* [B, H, T, D] back to [B, T, C]. */
    int perm[4] = {0, 2, 1, 3};
    int64_t merged[3] = {h->shape[0], h->shape[1], h->shape[2]};
    y = mr_tensor_reshape(ctx, mr_tensor_permute(ctx, y, perm), 3, merged);
    return mr_tensor_linear(ctx, y, p[block_index(layer, BLOCK_ATTN_PROJ_WEIGHT)],
                            p[block_index(layer, BLOCK_ATTN_PROJ_BIAS)]);
}

/* The GELU MLP of one block on the normalised input h [B, T, C]. */
static mr_tensor *mlp_block(mr_gpt *gpt, mr_ctx *ctx, int layer, mr_tensor *h) {
    mr_tensor **p = gpt->tensors;
    mr_tensor *hidden = mr_tensor_linear(ctx, h, p[block_index(layer, BLOCK_FC_WEIGHT)],
                                         p[block_index(layer, BLOCK_FC_BIAS)]);
    hidden = mr_tensor_gelu(ctx, hidden);
    return mr_tensor_linear(ctx, hidden, p[block_index(layer, BLOCK_FC_PROJ_WEIGHT)],
                            p[block_index(layer, BLOCK_FC_PROJ_BIAS)]);
}

mr_tensor *mr_gpt_logits(mr_gpt *gpt, mr_ctx *ctx, mr_tensor *tokens) {
    if (tokens == NULL) {
        return NULL;
    }
    const mr_gpt_config *config = &gpt->config;
    char shape[96];
    if (tokens->dtype != MR_I32 || tokens->ndim != 2 || tokens->shape[1] < 1 ||
        tokens->shape[1] > config->context) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "gpt: tokens must be I32 [B, T] with 1 <= T <= %d (the context), got %s %s",
                    config->context, tokens->dtype == MR_I32 ? "I32" : "F32",
                    mr_tensor_shape_string(tokens, shape, sizeof shape));
        return NULL;
    }
    int64_t t = tokens->shape[1];
    mr_tensor **p = gpt->tensors;
    float dropout = config->dropout;

    /* Token plus position embeddings; positions 0..T-1 broadcast over B. */
    mr_tensor *positions = mr_tensor_new1d(ctx, MR_I32, t);
    if (positions == NULL) {
        return NULL;
    }
    for (int64_t i = 0; i < t; i++) {
        positions->idata[i] = (int32_t)i;
    }
    mr_tensor *x = mr_tensor_add(ctx, mr_tensor_embedding(ctx, p[GPT_WTE], tokens, -1),
                                 mr_tensor_embedding(ctx, p[GPT_WPE], positions, -1));
    x = mr_tensor_dropout(ctx, x, dropout, &gpt->dropout_rng);

    /* Pre-LayerNorm blocks: x += attn(ln_1(x)), then x += mlp(ln_2(x)).
     * NOTE: GPT-2 also applies dropout to the attention probabilities.
     * The fused attention op keeps no probabilities, so that one is left
     * out. */
    for (int layer = 0; layer < config->layers && x != NULL; layer++) {
        mr_tensor *h = mr_tensor_layer_norm(ctx, x, p[block_index(layer, BLOCK_LN1_WEIGHT)],
                                            p[block_index(layer, BLOCK_LN1_BIAS)],
                                            GPT_LAYER_NORM_EPS);
        mr_tensor *a = attention_block(gpt, ctx, layer, h);
        x = mr_tensor_add(ctx, x, mr_tensor_dropout(ctx, a, dropout, &gpt->dropout_rng));

        h = mr_tensor_layer_norm(ctx, x, p[block_index(layer, BLOCK_LN2_WEIGHT)],
                                 p[block_index(layer, BLOCK_LN2_BIAS)], GPT_LAYER_NORM_EPS);
        mr_tensor *m = mlp_block(gpt, ctx, layer, h);
        x = mr_tensor_add(ctx, x, mr_tensor_dropout(ctx, m, dropout, &gpt->dropout_rng));
    }

    /* Final LayerNorm and the output projection tied to wte. */
    int last = GPT_FIRST_BLOCK + config->layers * BLOCK_TENSORS;
    x = mr_tensor_layer_norm(ctx, x, p[last], p[last + 1], GPT_LAYER_NORM_EPS);
    return mr_tensor_matmul(ctx, x, p[GPT_WTE], MR_MATMUL_TRANS_B);
}

mr_tensor *mr_gpt_forward(mr_gpt *gpt, mr_ctx *ctx, mr_tensor *tokens,
                          mr_tensor *targets) {
    mr_tensor *logits = mr_gpt_logits(gpt, ctx, tokens);
    if (logits == NULL || targets == NULL) {
        return NULL;
    }
    if (targets->dtype != MR_I32 || !mr_tensor_same_shape(targets, tokens)) {
        char shape[96], expected[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "gpt: targets must be I32 %s like the tokens, got %s %s",
                    mr_tensor_shape_string(tokens, expected, sizeof expected),
                    targets->dtype == MR_I32 ? "I32" : "F32",
                    mr_tensor_shape_string(targets, shape, sizeof shape));
        return NULL;
    }
    return mr_tensor_cross_entropy(ctx, logits, targets, -1, MR_REDUCE_MEAN);
}

/* ------------------------------------------------------------------------
 * Greedy generation
 * ------------------------------------------------------------------------ */

mr_status mr_gpt_generate_greedy(mr_gpt *gpt, mr_ctx *ctx, int32_t *ids,
                                 int length, int count, mr_error *err) {
    if (length < 1 || count < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "gpt: generation needs length >= 1 and count >= 0, got %d and %d",
                            length, count);
    }
    bool grad_before = mr_ctx_set_grad_enabled(ctx, false);
    bool training_before = mr_ctx_set_training(ctx, false);
    mr_status status = MR_OK;
    int64_t vocab = gpt->config.vocab_size;

    for (int step = 0; step < count; step++) {
        mr_ctx_reset(ctx);
        int window = length < gpt->config.context ? length : gpt->config.context;
        int64_t shape[2] = {1, window};
        mr_tensor *tokens = mr_tensor_from_i32(ctx, 2, shape, ids + length - window);
        mr_tensor *logits = mr_gpt_logits(gpt, ctx, tokens);
        if (logits == NULL) {
            status = mr_ctx_take_error(ctx, err);
            break;
        }

        /* Argmax of the last position; the first maximum wins ties. */
        const float *row = logits->data + (int64_t)(window - 1) * vocab;
        int32_t best = 0;
        for (int64_t j = 1; j < vocab; j++) {
            if (row[j] > row[best]) {
                best = (int32_t)j;
            }
        }
        ids[length++] = best;
    }

    mr_ctx_reset(ctx);
    mr_ctx_set_grad_enabled(ctx, grad_before);
    mr_ctx_set_training(ctx, training_before);
    return status;
}
