/*
 * The sequential-recommendation model: item embeddings and biases, a
 * backbone, and Ada-Retrieval's round loop with its adapters, as the
 * authors' code (ll0ruc/Ada-Retrieval) implements them.
 *
 * Round 1 runs the backbone on the plain embeddings of the input items and
 * its output is the user vector u_1. Before each later round t the item
 * representation adapter rewrites those embeddings with attention to the
 * items R_1 .. R_{t-1} retrieved so far, the backbone (the same weights
 * every round) turns them into h_t, and the user representation adapter
 * merges h_t with a GRU state over u_1 .. u_{t-1} into u_t. R_t is the
 * top k ids by u_t . e + b, excluding id 0 and earlier picks but not the
 * user's history. The choice is discrete and carries no gradient, but
 * gradients flow into Emb(R_t) through the adapters.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "adapters.h"
#include "engine/blas.h"
#include "model_internal.h"

/* Most rounds a model may have (the reference runs 5). */
#define MAX_ROUNDS 100

struct mr_rec_model {
    mr_rec_config config;
    int32_t n_items;
    mr_paramset *params;
    mr_tensor *item_embedding; /* [n_items, D] */
    mr_tensor *item_bias;      /* [n_items] */
    const mr_rec_backbone_ops *ops;
    void *backbone;
    mr_rec_ada ada; /* bound only with config.ada */
};

/* ------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------ */

void mr_rec_config_default(mr_rec_config *config, mr_rec_backbone_type backbone) {
    *config = (mr_rec_config){0};
    config->backbone = backbone;
    config->dim = 64;
    config->max_len = 50;
    config->dropout = 0.1777f;
    config->ada = false;
    config->rounds = 5;
    config->per_round = 20;
    config->round_decay = 0.3f;
    config->negatives = 100;

    /* Settings a backbone does not read keep neutral values: 1 head and a
     * width of D. */
    config->heads = 1;
    config->inner_size = config->dim;
    switch (backbone) {
    case MR_REC_SASREC:
        config->layers = 2;
        config->heads = 4;
        config->inner_size = 512;
        break;
    case MR_REC_FMLPREC:
        config->layers = 2;
        config->inner_size = 256;
        break;
    case MR_REC_GRU4REC:
        config->layers = 2;
        config->inner_size = 128;
        break;
    case MR_REC_NEXTITNET:
        config->layers = 10;
        break;
    case MR_REC_SRGNN:
        config->layers = 1;
        break;
    }
}

/* Stores an error naming setting when value is outside [low, high]. */
static mr_status check_range(const char *setting, long long value, long long low,
                             long long high, mr_error *err) {
    if (value < low || value > high) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: %s = %lld is invalid; it must be in [%lld, %lld]", setting,
                            value, low, high);
    }
    return MR_OK;
}

mr_status mr_rec_config_check(const mr_rec_config *config, mr_error *err) {
    if ((int)config->backbone < 0 || (int)config->backbone >= MR_REC_BACKBONES) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: backbone %d is invalid; choose gru4rec, sasrec, nextitnet, "
                            "srgnn or fmlprec",
                            (int)config->backbone);
    }
    const char *backbone = mr_rec_backbone_name(config->backbone);

    /* Upper limits catch typos; they are far above the reference settings. */
    mr_status status = MR_OK;
    if (status == MR_OK) status = check_range("dim", config->dim, 1, 4096, err);
    if (status == MR_OK) status = check_range("max_len", config->max_len, 1, 4096, err);
    if (status == MR_OK) status = check_range("layers", config->layers, 1, 1000, err);
    if (status == MR_OK) status = check_range("negatives", config->negatives, 1, 100000, err);
    if (status != MR_OK) {
        return status;
    }
    if (config->backbone == MR_REC_SASREC) {
        status = check_range("heads", config->heads, 1, config->dim, err);
        if (status != MR_OK) {
            return status;
        }
        if (config->dim % config->heads != 0) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "rec: dim = %d is not a multiple of heads = %d; sasrec splits "
                                "D evenly across its heads",
                                config->dim, config->heads);
        }
    }
    if (config->backbone == MR_REC_SASREC || config->backbone == MR_REC_FMLPREC ||
        config->backbone == MR_REC_GRU4REC) {
        status = check_range("inner_size", config->inner_size, 1, 65536, err);
        if (status != MR_OK) {
            return status;
        }
    }
    if (!(config->dropout >= 0.0f && config->dropout < 1.0f)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: dropout = %g is invalid for %s; it must be in [0, 1)",
                            (double)config->dropout, backbone);
    }

    if (config->ada) {
        if (status == MR_OK) status = check_range("rounds", config->rounds, 1, MAX_ROUNDS, err);
        if (status == MR_OK) status = check_range("per_round", config->per_round, 1, 10000, err);
        if (status != MR_OK) {
            return status;
        }
        if (!(config->round_decay >= 0.0f && isfinite(config->round_decay))) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "rec: round_decay = %g is invalid; it must be finite and >= 0",
                                (double)config->round_decay);
        }
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Creating and freeing
 * ------------------------------------------------------------------------ */

/* True for the backbones whose reference initialiser is normal(0, 0.02)
 * (SASRec, FMLP-Rec); the others use xavier uniform. */
static bool uses_normal_init(mr_rec_backbone_type backbone) {
    return backbone == MR_REC_SASREC || backbone == MR_REC_FMLPREC;
}

/* Draws the initial weights from seed, one stream per part, so that the
 * embedding, bias and backbone start the same with and without ada. */
static void init_weights(mr_rec_model *model, uint64_t seed) {
    mr_rng root, stream;
    mr_rng_init(&root, seed);

    stream = mr_rng_split(&root, 1);
    if (uses_normal_init(model->config.backbone)) {
        mr_tensor_init_normal(model->item_embedding, 0.0f, 0.02f, &stream);
    } else {
        mr_tensor_init_xavier_uniform(model->item_embedding, 1.0f, &stream);
    }
    memset(model->item_embedding->data, 0, (size_t)model->config.dim * sizeof(float));

    stream = mr_rng_split(&root, 2);
    mr_tensor_init_normal(model->item_bias, 0.0f, 0.1f, &stream);

    stream = mr_rng_split(&root, 3);
    if (model->ops->init != NULL) {
        model->ops->init(model->backbone, model->params, &stream);
    }

    if (model->config.ada) {
        stream = mr_rng_split(&root, 4);
        mr_rec_ada_init(&model->ada, !uses_normal_init(model->config.backbone), &stream);
    }
}

mr_rec_model *mr_rec_model_create_with_ops(const mr_rec_config *config,
                                           const mr_rec_backbone_ops *ops, int32_t n_items,
                                           uint64_t seed, mr_error *err) {
    if (mr_rec_config_check(config, err) != MR_OK) {
        return NULL;
    }
    if (n_items < 2) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec: n_items = %d is invalid; ids 1..n_items-1 must hold at least one "
                     "item",
                     (int)n_items);
        return NULL;
    }
    if ((int64_t)n_items * config->dim > INT32_MAX) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec: item ids up to %d with dim %d need an embedding table of %lld "
                     "values, more than 2^31 - 1; renumber the items 1..N",
                     (int)n_items - 1, config->dim, (long long)n_items * config->dim);
        return NULL;
    }
    if (config->ada && (int64_t)config->per_round * (config->rounds - 1) > n_items - 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "rec: %d rounds of %d items need %lld distinct items before the last "
                     "round, but there are only %d; lower rounds or per_round",
                     config->rounds, config->per_round,
                     (long long)config->per_round * (config->rounds - 1), (int)n_items - 1);
        return NULL;
    }
    mr_rec_model *model = calloc(1, sizeof *model);
    if (model == NULL || (model->params = mr_paramset_create()) == NULL) {
        free(model);
        mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory creating the model");
        return NULL;
    }
    model->config = *config;
    model->n_items = n_items;
    model->ops = ops;

    /* Declare every weight, then allocate them in one buffer. */
    mr_rec_model *result = NULL;
    int64_t dim = config->dim;
    if (mr_paramset_declare(model->params, "item_embedding", 2, (int64_t[]){n_items, dim},
                            err) < 0 ||
        mr_paramset_declare(model->params, "item_bias", 1, (int64_t[]){n_items}, err) < 0) {
        goto done;
    }
    if (ops == NULL || ops->declare == NULL || ops->forward == NULL) {
        mr_error_set(err, MR_ERR_UNSUPPORTED, "rec: the %s backbone has no implementation",
                     mr_rec_backbone_name(config->backbone));
        goto done;
    }
    model->backbone = ops->declare(config, model->params, err);
    if (model->backbone == NULL) {
        goto done;
    }
    if (config->ada && mr_rec_ada_declare(&model->ada, config->dim, config->per_round,
                                          config->dropout, model->params, err) != MR_OK) {
        goto done;
    }
    if (mr_paramset_finalize(model->params, err) != MR_OK) {
        goto done;
    }
    model->item_embedding = mr_paramset_find(model->params, "item_embedding");
    model->item_bias = mr_paramset_find(model->params, "item_bias");
    if (config->ada && mr_rec_ada_bind(&model->ada, model->params, err) != MR_OK) {
        goto done;
    }

    init_weights(model, seed);
    mr_log(MR_LOG_INFO, "rec", "%s%s model: %d items, D %d, %lld weights",
           mr_rec_backbone_name(config->backbone), config->ada ? " + Ada-Retrieval" : "",
           (int)n_items, config->dim, (long long)mr_paramset_numel(model->params));
    result = model;

done:
    if (result == NULL) {
        mr_rec_model_free(model);
    }
    return result;
}

mr_rec_model *mr_rec_model_create(const mr_rec_config *config, int32_t n_items,
                                  uint64_t seed, mr_error *err) {
    const mr_rec_backbone_ops *ops = NULL;
    if ((int)config->backbone >= 0 && (int)config->backbone < MR_REC_BACKBONES) {
        ops = mr_rec_backbone_ops_for(config->backbone);
    }
    return mr_rec_model_create_with_ops(config, ops, n_items, seed, err);
}

void mr_rec_model_free(mr_rec_model *model) {
    if (model == NULL) {
        return;
    }
    if (model->backbone != NULL && model->ops->free != NULL) {
        model->ops->free(model->backbone);
    }
    mr_paramset_free(model->params);
    free(model);
}

const mr_rec_config *mr_rec_model_config(const mr_rec_model *model) { return &model->config; }

int32_t mr_rec_model_n_items(const mr_rec_model *model) { return model->n_items; }

mr_paramset *mr_rec_model_params(mr_rec_model *model) { return model->params; }

int mr_rec_model_rounds(const mr_rec_model *model) {
    return model->config.ada ? model->config.rounds : 1;
}

mr_tensor *mr_rec_model_item_embedding(mr_rec_model *model) { return model->item_embedding; }

mr_tensor *mr_rec_model_item_bias(mr_rec_model *model) { return model->item_bias; }

void *mr_rec_model_backbone_state(mr_rec_model *model) { return model->backbone; }

const mr_rec_backbone_ops *mr_rec_model_backbone_ops(const mr_rec_model *model) {
    return model->ops;
}

bool mr_rec_model_truncatable(const mr_rec_model *model) {
    return model->ops->truncatable ||
           (model->ops->truncatable_without_adapters &&
            (!model->config.ada || model->config.ada_zero_padding));
}

bool mr_rec_model_round0_truncatable(const mr_rec_model *model) {
    return model->config.ada && !model->config.ada_zero_padding && !model->ops->truncatable &&
           model->ops->truncatable_without_adapters;
}

/* ------------------------------------------------------------------------
 * Retrieval between rounds
 * ------------------------------------------------------------------------ */

/* Rows of users scored in one matrix product (bounds the scratch memory
 * to rows x n_items floats). */
#define SCORE_ROWS 256

/*
 * Picks round `round`'s ids for every row of users [B, D]: the top k by
 * u . e + b excluding id 0 and the ids picked in rounds 0..round-1.
 * picks is [B, rounds - 1, k] (batch major); the new ids go to
 * picks[b][round]. Reads the weights without recording anything.
 */
static mr_status pick_round(const mr_rec_model *model, const mr_tensor *users, int32_t *picks,
                            int round, mr_error *err) {
    int64_t batch = users->shape[0];
    int64_t dim = model->config.dim;
    int32_t n_items = model->n_items;
    int k = model->config.per_round;
    int64_t row_stride = (int64_t)(model->config.rounds - 1) * k;
    int threads = omp_get_max_threads();

    float *rows = malloc((size_t)SCORE_ROWS * (size_t)dim * sizeof *rows);
    float *scores = malloc((size_t)SCORE_ROWS * (size_t)n_items * sizeof *scores);
    uint8_t *blocked = calloc((size_t)threads * (size_t)n_items, 1);
    if (rows == NULL || scores == NULL || blocked == NULL) {
        free(rows);
        free(scores);
        free(blocked);
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "rec: out of memory scoring %d items for %d users", (int)n_items,
                            SCORE_ROWS);
    }

    for (int64_t first = 0; first < batch; first += SCORE_ROWS) {
        int64_t count = batch - first < SCORE_ROWS ? batch - first : SCORE_ROWS;

        /* scores = users @ E^T, with the user rows gathered from any
         * layout the backbone returned. */
        for (int64_t r = 0; r < count; r++) {
            for (int64_t d = 0; d < dim; d++) {
                float value =
                    users->data[(first + r) * users->stride[0] + d * users->stride[1]];
                if (!isfinite(value)) {
                    free(rows);
                    free(scores);
                    free(blocked);
                    return mr_error_set(err, MR_ERR_NUMERIC,
                                        "rec: the user vector of batch row %lld in round %d "
                                        "has the non-finite value %g; lower the learning rate "
                                        "or check the inputs",
                                        (long long)(first + r), round + 1, (double)value);
                }
                rows[r * dim + d] = value;
            }
        }
        mr_sgemm(false, true, count, n_items, dim, 1.0f, rows, dim,
                 model->item_embedding->data, dim, 0.0f, scores, n_items);

        /* Each row adds the biases, blocks its earlier picks in its
         * thread's mask, selects, and clears the mask again. */
        const float *bias = model->item_bias->data;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < count; r++) {
            float *row_scores = scores + r * n_items;
            for (int32_t i = 0; i < n_items; i++) {
                row_scores[i] += bias[i];
            }
            uint8_t *mask = blocked + (size_t)omp_get_thread_num() * (size_t)n_items;
            int32_t *row_picks = picks + (first + r) * row_stride;
            for (int64_t j = 0; j < (int64_t)round * k; j++) {
                mask[row_picks[j]] = 1;
            }
            /* Creation checked that k items remain, so all k are written. */
            mr_rec_topk(row_scores, n_items, mask, k, row_picks + (int64_t)round * k);
            for (int64_t j = 0; j < (int64_t)round * k; j++) {
                mask[row_picks[j]] = 0;
            }
        }
    }

    free(rows);
    free(scores);
    free(blocked);
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * The round loop
 * ------------------------------------------------------------------------ */

/*
 * Checks that seq is I32 [B, Lb] with Lb = max_len, or with Lb in
 * [1, max_len] when the backbone is truncatable. Stores the error in ctx
 * if not.
 */
static bool check_seq(mr_ctx *ctx, const mr_rec_model *model, const mr_tensor *seq) {
    char shape_text[96];
    int max_len = model->config.max_len;
    bool truncatable = mr_rec_model_truncatable(model);
    if (seq->dtype != MR_I32 || seq->ndim != 2 || seq->shape[0] < 1) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rec: seq must be I32 [B, %d] (B >= 1), not %s%s",
                    max_len, mr_tensor_shape_string(seq, shape_text, sizeof shape_text),
                    seq->dtype == MR_I32 ? "" : " F32");
        return false;
    }
    int64_t length = seq->shape[1];
    if (truncatable && (length < 1 || length > max_len)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rec: seq must be I32 [B, Lb] with Lb in [1, %d], not %s",
                    max_len, mr_tensor_shape_string(seq, shape_text, sizeof shape_text));
        return false;
    }
    if (!truncatable && length != max_len) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "rec: seq must be I32 [B, %d], not %s; the %s backbone does not accept "
                    "inputs shorter than max_len",
                    max_len, mr_tensor_shape_string(seq, shape_text, sizeof shape_text),
                    mr_rec_backbone_name(model->config.backbone));
        return false;
    }
    return true;
}

/* Checks that the backbone returned [B, D]. */
static bool check_user_vectors(mr_ctx *ctx, const mr_rec_model *model, const mr_tensor *h,
                               int64_t batch) {
    char shape_text[96];
    if (h->ndim != 2 || h->shape[0] != batch || h->shape[1] != model->config.dim) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "rec: the %s backbone returned %s, expected [%lld, %d]",
                    mr_rec_backbone_name(model->config.backbone),
                    mr_tensor_shape_string(h, shape_text, sizeof shape_text), (long long)batch,
                    model->config.dim);
        return false;
    }
    return true;
}

/*
 * Returns the input of round 0: seq itself, or with round0_length in
 * [1, Lb) a copy of its last round0_length columns. A cut must drop only
 * padding and needs a backbone that is truncatable without adapters.
 * Returns NULL with the error stored in ctx.
 */
static mr_tensor *round0_input(mr_ctx *ctx, const mr_rec_model *model, mr_tensor *seq,
                               int round0_length) {
    int64_t batch = seq->shape[0], length = seq->shape[1];
    if (round0_length == 0 || round0_length == length) {
        return seq;
    }
    if (!mr_rec_model_round0_truncatable(model) || round0_length < 0 ||
        round0_length > length) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "rec: round 0 cannot run on %d of %lld positions with the %s backbone%s",
                    round0_length, (long long)length,
                    mr_rec_backbone_name(model->config.backbone),
                    model->config.ada ? "" : " without Ada-Retrieval");
        return NULL;
    }

    int64_t dropped = length - round0_length;
    mr_tensor *cut = mr_tensor_new2d(ctx, MR_I32, batch, round0_length);
    if (cut == NULL) {
        return NULL;
    }
    for (int64_t b = 0; b < batch; b++) {
        const int32_t *row = seq->idata + b * length;
        for (int64_t t = 0; t < dropped; t++) {
            if (row[t] != 0) {
                mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                            "rec: cutting row %lld to its last %d positions for round 0 "
                            "drops item %d",
                            (long long)b, round0_length, row[t]);
                return NULL;
            }
        }
        memcpy(cut->idata + b * round0_length, row + dropped,
               (size_t)round0_length * sizeof(int32_t));
    }
    return cut;
}

/*
 * Returns F32 [B, Lb, 1] holding 1 where seq [B, Lb] has an item and 0 at
 * padding, or NULL with the error stored in ctx.
 */
static mr_tensor *item_mask(mr_ctx *ctx, const mr_tensor *seq) {
    int64_t batch = seq->shape[0], length = seq->shape[1];
    mr_tensor *keep = mr_tensor_new3d(ctx, MR_F32, batch, length, 1);
    if (keep == NULL) {
        return NULL;
    }
    for (int64_t i = 0; i < batch * length; i++) {
        keep->data[i] = seq->idata[i] != 0 ? 1.0f : 0.0f;
    }
    return keep;
}

/*
 * Builds every round's user vector [B, D] into users (rounds of them).
 * Round 0, which has no adapter, runs on the last round0_length
 * positions (0 for all of them). picks receives the ids retrieved before
 * each later round, [B, rounds - 1, k] batch major, and must have room
 * for them. Returns false with the error stored in ctx.
 */
static bool build_rounds(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq, int round0_length,
                         mr_rng *rng, mr_tensor **users, int32_t *picks) {
    const mr_rec_config *config = &model->config;
    if (seq == NULL || !check_seq(ctx, model, seq)) {
        return false;
    }
    int64_t batch = seq->shape[0];
    int rounds = mr_rec_model_rounds(model);
    int k = config->per_round;

    mr_tensor *seq0 = round0_input(ctx, model, seq, round0_length);
    if (seq0 == NULL) {
        return false;
    }

    mr_tensor *emb = mr_tensor_embedding(ctx, model->item_embedding, seq, 0);
    bool zero_padding = config->ada_zero_padding && rounds > 1;
    mr_tensor *keep = NULL;
    if (zero_padding) {
        keep = item_mask(ctx, seq);
        if (keep == NULL) {
            return false;
        }
    }
    mr_tensor *g = NULL;
    for (int t = 0; t < rounds; t++) {
        /* The adapters see the picks of rounds 0..t-1, copied into a
         * [B, t, k] tensor. */
        mr_tensor *item_emb = emb;
        mr_tensor *round_seq = seq;
        if (t == 0 && seq0 != seq) {
            item_emb = mr_tensor_embedding(ctx, model->item_embedding, seq0, 0);
            round_seq = seq0;
        }
        if (t > 0) {
            mr_tensor *earlier = mr_tensor_new3d(ctx, MR_I32, batch, t, k);
            if (earlier == NULL) {
                return false;
            }
            for (int64_t b = 0; b < batch; b++) {
                memcpy(earlier->idata + b * t * k, picks + b * (int64_t)(rounds - 1) * k,
                       (size_t)t * (size_t)k * sizeof(int32_t));
            }
            item_emb = mr_rec_ada_ira(ctx, &model->ada, model->item_embedding, emb, earlier,
                                      rng);

            /* With ada_zero_padding the adapter may rewrite items only:
             * padding rows go back to zero, as the backbone saw them in
             * round 0, which keeps the input truncatable. */
            if (keep != NULL) {
                item_emb = mr_tensor_mul(ctx, item_emb, keep);
            }
        }

        mr_tensor *h = model->ops->forward(model->backbone, ctx, item_emb, round_seq, rng);
        if (h == NULL && mr_ctx_status(ctx) == MR_OK) {
            mr_ctx_fail(ctx, MR_ERR_STATE, "rec: the %s backbone returned no output",
                        mr_rec_backbone_name(config->backbone));
        }
        if (h == NULL || !check_user_vectors(ctx, model, h, batch)) {
            return false;
        }
        if (t == 0) {
            users[t] = h;
        } else {
            g = mr_rec_ada_history_step(ctx, &model->ada, g, users[t - 1]);
            users[t] = mr_rec_ada_ura(ctx, &model->ada, h, g, rng);
        }
        if (users[t] == NULL) {
            return false;
        }

        if (t + 1 < rounds) {
            mr_error error;
            mr_status status = pick_round(model, users[t], picks, t, &error);
            if (status != MR_OK) {
                mr_ctx_fail(ctx, status, "%s", error.message);
                return false;
            }
        }
    }
    return mr_ctx_status(ctx) == MR_OK;
}

/* Allocates the [B, rounds - 1, k] picks of a batch in ctx (at least one
 * int, so that a model without later rounds gets a valid pointer). */
static int32_t *alloc_picks(mr_ctx *ctx, const mr_rec_model *model, int64_t batch) {
    int64_t count = batch * (int64_t)(mr_rec_model_rounds(model) - 1) * model->config.per_round;
    return mr_ctx_alloc(ctx, (size_t)(count > 0 ? count : 1) * sizeof(int32_t));
}

mr_tensor *mr_rec_model_loss(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                             mr_tensor *candidates, mr_rng *rng) {
    return mr_rec_model_loss_cut(model, ctx, seq, 0, candidates, rng);
}

mr_tensor *mr_rec_model_loss_cut(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                                 int round0_length, mr_tensor *candidates, mr_rng *rng) {
    if (seq == NULL || candidates == NULL) {
        return NULL;
    }
    char shape_text[96];
    if (candidates->dtype != MR_I32 || candidates->ndim != 2 ||
        candidates->shape[0] != seq->shape[0] || candidates->shape[1] < 1) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "rec: candidates must be I32 [%lld, 1 + negatives], not %s%s",
                    (long long)seq->shape[0],
                    mr_tensor_shape_string(candidates, shape_text, sizeof shape_text),
                    candidates->dtype == MR_I32 ? "" : " F32");
        return NULL;
    }
    int64_t batch = candidates->shape[0], width = candidates->shape[1];
    int rounds = mr_rec_model_rounds(model);
    mr_tensor *users[MAX_ROUNDS];
    int32_t *picks = alloc_picks(ctx, model, batch);
    if (picks == NULL || !build_rounds(model, ctx, seq, round0_length, rng, users, picks)) {
        return NULL;
    }

    /* Candidate embeddings [B, C, D] (id 0 looks up zeros, as in the
     * reference's padded embedding) and biases [B, C] (id 0 has a bias
     * like any other id). */
    int64_t dim = model->config.dim;
    mr_tensor *cand_emb = mr_tensor_embedding(ctx, model->item_embedding, candidates, 0);
    mr_tensor *bias_table = mr_tensor_reshape(ctx, model->item_bias, 2,
                                              (int64_t[]){model->n_items, 1});
    mr_tensor *cand_bias = mr_tensor_reshape(
        ctx, mr_tensor_embedding(ctx, bias_table, candidates, -1), 2, candidates->shape);
    mr_tensor *labels = mr_tensor_zeros(ctx, MR_F32, 2, candidates->shape);
    if (labels == NULL) {
        return NULL;
    }
    for (int64_t b = 0; b < batch; b++) {
        labels->data[b * width] = 1.0f;
    }

    /* total = sum_t decay^t BCE(u_t . e_c + b_c, labels), t from 0. */
    mr_tensor *total = NULL;
    float weight = 1.0f;
    for (int t = 0; t < rounds; t++) {
        mr_tensor *u = mr_tensor_reshape(ctx, users[t], 3, (int64_t[]){batch, dim, 1});
        mr_tensor *scores = mr_tensor_reshape(ctx, mr_tensor_matmul(ctx, cand_emb, u, 0), 2,
                                              candidates->shape);
        scores = mr_tensor_add(ctx, scores, cand_bias);
        mr_tensor *loss = mr_tensor_bce_with_logits(ctx, scores, labels, NULL, MR_REDUCE_MEAN);
        if (t > 0) {
            loss = mr_tensor_scale(ctx, loss, weight);
        }
        total = t == 0 ? loss : mr_tensor_add(ctx, total, loss);
        weight *= model->config.round_decay;
    }
    return total;
}

mr_status mr_rec_model_user_vectors_picks(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                                          float *out, int32_t *picks, mr_error *err) {
    return mr_rec_model_user_vectors_cut(model, ctx, seq, 0, out, picks, err);
}

mr_status mr_rec_model_user_vectors_cut(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                                        int round0_length, float *out, int32_t *picks,
                                        mr_error *err) {
    if (seq == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "rec: seq is NULL");
    }

    /* Inference: no tape, and no dropout since no random stream is given. */
    bool grad_enabled = mr_ctx_set_grad_enabled(ctx, false);
    bool training = mr_ctx_set_training(ctx, false);
    mr_tensor *users[MAX_ROUNDS];
    int64_t batch = seq->ndim >= 1 ? seq->shape[0] : 0;
    int32_t *batch_picks = alloc_picks(ctx, model, batch);
    bool built = batch_picks != NULL &&
                 build_rounds(model, ctx, seq, round0_length, NULL, users, batch_picks);
    mr_ctx_set_grad_enabled(ctx, grad_enabled);
    mr_ctx_set_training(ctx, training);
    if (!built) {
        return mr_ctx_take_error(ctx, err);
    }

    /* Round-major copies of the vectors and picks. */
    int rounds = mr_rec_model_rounds(model);
    int64_t dim = model->config.dim;
    int k = model->config.per_round;
    for (int t = 0; t < rounds; t++) {
        const mr_tensor *u = users[t];
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t d = 0; d < dim; d++) {
                out[((int64_t)t * batch + b) * dim + d] =
                    u->data[b * u->stride[0] + d * u->stride[1]];
            }
        }
    }
    if (picks != NULL) {
        for (int t = 0; t + 1 < rounds; t++) {
            for (int64_t b = 0; b < batch; b++) {
                memcpy(picks + ((int64_t)t * batch + b) * k,
                       batch_picks + (b * (rounds - 1) + t) * (int64_t)k,
                       (size_t)k * sizeof(int32_t));
            }
        }
    }
    return MR_OK;
}

mr_status mr_rec_model_user_vectors(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                                    float *out, mr_error *err) {
    return mr_rec_model_user_vectors_picks(model, ctx, seq, out, NULL, err);
}
