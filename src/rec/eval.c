/*
 * Full-ranking evaluation and top-k recommendation.
 *
 * Users are scored in batches: the model computes each round's user
 * vectors U [B, D], and one matrix product gives the scores of every item,
 * U @ E^T + b. A user's candidates are ids 1..n_items-1 minus the other
 * items of the user's whole sequence. Without Ada-Retrieval the rank is the
 * target's position in the ranking of all candidates. With it the list is
 * rebuilt round by round as the evaluator of the authors' code
 * (ll0ruc/Ada-Retrieval) does: round t appends the top per_round
 * candidates under round t's user vector, skipping items already listed,
 * and the rank is the target's position in that list, or absent.
 *
 * A SASRec model computes the user vectors of each batch in groups of
 * similar input length, each cut to its longest input (see
 * length_groups.h), which skips most of the padding.
 *
 * Users are ranked in parallel; each user's rank is stored and the metrics
 * are summed in user order afterwards, so they do not depend on the
 * thread count.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/blas.h"
#include "length_groups.h"
#include "model_internal.h"
#include "multiround/rec.h"

/* Users scored per matrix product: 256 users x 12,102 Beauty items is
 * 12 MiB of scores. */
#define EVAL_BATCH_USERS 256

/* What scoring needs from the model, checked once. */
typedef struct item_table {
    const float *embedding; /* [n_items, dim] */
    const float *bias;      /* [n_items] */
    int32_t n_items;
    int dim;
} item_table;

/* Checks that the model can score data's items and fills table. */
static mr_status item_table_init(mr_rec_model *model, const mr_rec_data *data,
                                 item_table *table, mr_error *err) {
    const mr_rec_config *config = mr_rec_model_config(model);
    mr_tensor *embedding = mr_rec_model_item_embedding(model);
    mr_tensor *bias = mr_rec_model_item_bias(model);
    int32_t n_items = mr_rec_model_n_items(model);

    if (data->n_items > n_items) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: the data has item ids up to %d but the model scores only "
                            "ids below %d; use the dataset the model was trained on",
                            (int)data->n_items - 1, (int)n_items);
    }
    if (embedding == NULL || bias == NULL || !mr_tensor_is_contiguous(embedding) ||
        !mr_tensor_is_contiguous(bias) || embedding->ndim != 2 ||
        embedding->shape[0] != n_items || embedding->shape[1] != config->dim ||
        mr_tensor_numel(bias) != n_items) {
        return mr_error_set(err, MR_ERR_STATE,
                            "rec: the model's item embedding or bias is not a contiguous "
                            "[%d, %d] and [%d] table",
                            (int)n_items, config->dim, (int)n_items);
    }

    table->embedding = embedding->data;
    table->bias = bias->data;
    table->n_items = n_items;
    table->dim = config->dim;
    return MR_OK;
}

/* Writes scores [count, n_items] = users [count, dim] @ E^T + b. */
static void score_users(const item_table *table, const float *users, int64_t count,
                        float *scores) {
    int64_t n = table->n_items;
    mr_sgemm(false, true, count, n, table->dim, 1.0f, users, table->dim, table->embedding,
             table->dim, 0.0f, scores, n);

#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < count; row++) {
        float *row_scores = scores + row * n;
        for (int64_t i = 0; i < n; i++) {
            row_scores[i] += table->bias[i];
        }
    }
}

/*
 * Appends to list (holding *listed ids) the top `take` candidates of one
 * round: blocked marks the user's sequence items except keep (the target,
 * or 0 for none) and every id already listed. blocked must be all zero on
 * entry and is all zero again on return.
 */
static void append_round(const mr_rec_data *data, int64_t s, int32_t keep,
                         const float *scores, int32_t n_items, int take, uint8_t *blocked,
                         int32_t *list, int *listed) {
    const int32_t *items = data->items + data->offsets[s];
    int64_t length = data->offsets[s + 1] - data->offsets[s];

    for (int64_t j = 0; j < length; j++) {
        if (items[j] != keep && items[j] < n_items) {
            blocked[items[j]] = 1;
        }
    }
    for (int j = 0; j < *listed; j++) {
        blocked[list[j]] = 1;
    }

    *listed += mr_rec_topk(scores, n_items, blocked, take, list + *listed);

    for (int64_t j = 0; j < length; j++) {
        if (items[j] < n_items) {
            blocked[items[j]] = 0;
        }
    }
    for (int j = 0; j < *listed; j++) {
        blocked[list[j]] = 0;
    }
}

/* Rank of target among all candidates of sequence s; exclude is scratch
 * space for the sequence's length. */
static int64_t rank_full_ranking(const mr_rec_data *data, int64_t s, int32_t target,
                                 const float *scores, int32_t n_items, int32_t *exclude) {
    const int32_t *items = data->items + data->offsets[s];
    int64_t length = data->offsets[s + 1] - data->offsets[s];
    int64_t n_exclude = 0;
    for (int64_t j = 0; j < length; j++) {
        if (items[j] != target) {
            exclude[n_exclude++] = items[j];
        }
    }
    return mr_rec_rank_full(scores, n_items, exclude, n_exclude, target);
}

/* Longest sequence of the dataset. */
static int64_t max_sequence_length(const mr_rec_data *data) {
    int64_t longest = 0;
    for (int64_t s = 0; s < data->n_sequences; s++) {
        int64_t length = data->offsets[s + 1] - data->offsets[s];
        longest = length > longest ? length : longest;
    }
    return longest;
}

/* Buffers of one evaluation, sized for a batch of users. */
typedef struct eval_buffers {
    float *user_vectors; /* [rounds, batch, dim] */
    float *scores;       /* [batch, n_items] */
    int32_t *lists;      /* [batch, rounds * per_round], Ada-Retrieval */
    int *listed;         /* [batch] */
    uint8_t *blocked;    /* [threads, n_items], zero between uses */
    int32_t *exclude;    /* [threads, longest sequence] */
    int64_t *ranks;      /* [n_sequences] */
} eval_buffers;

static void eval_buffers_free(eval_buffers *b) {
    free(b->user_vectors);
    free(b->scores);
    free(b->lists);
    free(b->listed);
    free(b->blocked);
    free(b->exclude);
    free(b->ranks);
}

static mr_status eval_buffers_alloc(eval_buffers *b, int64_t batch, int rounds, int list_size,
                                    int dim, int32_t n_items, int threads, int64_t longest,
                                    int64_t n_sequences, mr_error *err) {
    memset(b, 0, sizeof *b);
    b->user_vectors = malloc((size_t)(rounds * batch * dim) * sizeof(float));
    b->scores = malloc((size_t)(batch * n_items) * sizeof(float));
    b->lists = malloc((size_t)(batch * (list_size > 0 ? list_size : 1)) * sizeof(int32_t));
    b->listed = malloc((size_t)batch * sizeof(int));
    b->blocked = calloc((size_t)threads * (size_t)n_items, 1);
    b->exclude = malloc((size_t)threads * (size_t)(longest > 0 ? longest : 1) *
                        sizeof(int32_t));
    b->ranks = malloc((size_t)(n_sequences > 0 ? n_sequences : 1) * sizeof(int64_t));
    if (b->user_vectors == NULL || b->scores == NULL || b->lists == NULL ||
        b->listed == NULL || b->blocked == NULL || b->exclude == NULL || b->ranks == NULL) {
        eval_buffers_free(b);
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "rec: out of memory for evaluation buffers (%lld users x %d "
                            "items)",
                            (long long)batch, (int)n_items);
    }
    return MR_OK;
}

/* Users below which a length group is not split off (see length_groups.h). */
#define EVAL_GROUP_ROWS 32

/* The same when only round 0 is cut, so that the later rounds, which run
 * whole inputs, keep products of many rows. */
#define EVAL_ROUND0_GROUP_ROWS 64

/*
 * Computes the user vectors of a batch seq [count, L] into user_vectors
 * (round major, as mr_rec_model_user_vectors writes them). A truncatable
 * model runs the users in length groups, each cut to its longest input,
 * which gives the same vectors up to float rounding. A model that may cut
 * only round 0 runs the groups whole, with round 0 cut. Uses ctx as
 * scratch.
 */
static mr_status grouped_user_vectors(mr_rec_model *model, mr_ctx *ctx, const mr_tensor *seq,
                                      float *user_vectors, mr_error *err) {
    const mr_rec_config *config = mr_rec_model_config(model);
    int64_t count = seq->shape[0];
    int max_len = config->max_len;
    bool round0_only = mr_rec_model_round0_truncatable(model);
    if (!mr_rec_model_truncatable(model) && !round0_only) {
        return mr_rec_model_user_vectors(model, ctx, (mr_tensor *)seq, user_vectors, err);
    }

    int rounds = mr_rec_model_rounds(model);
    int64_t dim = config->dim;
    int64_t *order = mr_ctx_alloc(ctx, (size_t)count * sizeof *order);
    mr_rec_length_group *groups = mr_ctx_alloc(ctx, (size_t)count * sizeof *groups);
    float *group_vectors = mr_ctx_alloc(ctx, (size_t)(rounds * count * dim) * sizeof(float));
    int64_t n_groups = order == NULL || groups == NULL || group_vectors == NULL
                           ? -1
                           : mr_rec_length_groups(seq->idata, count, max_len,
                                                  round0_only ? EVAL_ROUND0_GROUP_ROWS
                                                              : EVAL_GROUP_ROWS,
                                                  order, groups);
    if (n_groups < 0) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "rec: out of memory grouping %lld users by length", (long long)count);
    }

    for (int64_t g = 0; g < n_groups; g++) {
        const mr_rec_length_group *group = &groups[g];
        int length = round0_only ? max_len : group->length;
        mr_tensor *group_seq = mr_tensor_new2d(ctx, MR_I32, group->count, length);
        if (group_seq == NULL) {
            return mr_ctx_take_error(ctx, err);
        }
        mr_rec_gather_rows(seq->idata, max_len, NULL, 0, order + group->first, group->count,
                           length, group_seq->idata, NULL);
        mr_status status = mr_rec_model_user_vectors_cut(
            model, ctx, group_seq, round0_only ? group->length : 0, group_vectors, NULL, err);
        if (status != MR_OK) {
            return status;
        }

        /* Back to batch order, round major. */
        for (int t = 0; t < rounds; t++) {
            for (int64_t r = 0; r < group->count; r++) {
                int64_t row = order[group->first + r];
                memcpy(user_vectors + ((int64_t)t * count + row) * dim,
                       group_vectors + ((int64_t)t * group->count + r) * dim,
                       (size_t)dim * sizeof(float));
            }
        }
    }
    return MR_OK;
}

/*
 * Computes the user vectors of sequences first..first+count-1 for the
 * split's targets into b->user_vectors. ctx is reset first.
 */
static mr_status batch_user_vectors(mr_rec_model *model, mr_ctx *ctx,
                                    const mr_rec_data *data, mr_rec_split split,
                                    int64_t first, int64_t count, float *user_vectors,
                                    mr_error *err) {
    int max_len = mr_rec_model_config(model)->max_len;
    mr_ctx_reset(ctx);
    mr_tensor *seq = mr_tensor_new2d(ctx, MR_I32, count, max_len);
    if (seq == NULL) {
        return mr_ctx_take_error(ctx, err);
    }

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        int64_t s = first + i;
        int64_t target_pos = mr_rec_data_target_pos(data, s, split);
        mr_rec_data_input(data, s, target_pos, max_len, seq->idata + i * max_len);
    }

    return grouped_user_vectors(model, ctx, seq, user_vectors, err);
}

mr_status mr_rec_evaluate(mr_rec_model *model, const mr_rec_data *data,
                          mr_rec_split split, mr_rec_metrics *out, mr_error *err) {
    return mr_rec_evaluate_progress(model, data, split, NULL, NULL, out, err);
}

mr_status mr_rec_evaluate_progress(mr_rec_model *model, const mr_rec_data *data,
                                   mr_rec_split split, mr_rec_eval_progress_fn progress,
                                   void *progress_user_data, mr_rec_metrics *out,
                                   mr_error *err) {
    memset(out, 0, sizeof *out);
    if (split != MR_REC_VALID && split != MR_REC_TEST) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: evaluation needs the valid or test split, not '%s'",
                            mr_rec_split_name(split));
    }
    item_table table;
    mr_status status = item_table_init(model, data, &table, err);
    if (status != MR_OK) {
        return status;
    }

    const mr_rec_config *config = mr_rec_model_config(model);
    bool ada = config->ada;
    int rounds = mr_rec_model_rounds(model);
    int list_size = ada ? rounds * config->per_round : 0;
    int threads = omp_get_max_threads();
    int64_t longest = max_sequence_length(data);
    int64_t batch = data->n_sequences < EVAL_BATCH_USERS ? data->n_sequences
                                                         : EVAL_BATCH_USERS;
    eval_buffers b;
    status = eval_buffers_alloc(&b, batch > 0 ? batch : 1, rounds, list_size, table.dim,
                                table.n_items, threads, longest, data->n_sequences, err);
    if (status != MR_OK) {
        return status;
    }
    mr_ctx *ctx = mr_ctx_create(0);
    if (ctx == NULL) {
        eval_buffers_free(&b);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rec: out of memory for an evaluation context");
    }
    mr_ctx_set_training(ctx, false);
    mr_ctx_set_grad_enabled(ctx, false);

    for (int64_t first = 0; first < data->n_sequences && status == MR_OK; first += batch) {
        int64_t count = data->n_sequences - first < batch ? data->n_sequences - first : batch;
        status = batch_user_vectors(model, ctx, data, split, first, count, b.user_vectors, err);
        if (status != MR_OK) {
            break;
        }
        memset(b.listed, 0, (size_t)count * sizeof(int));

        for (int t = 0; t < rounds; t++) {
            score_users(&table, b.user_vectors + (int64_t)t * count * table.dim, count,
                        b.scores);

#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < count; i++) {
                int thread = omp_get_thread_num();
                int64_t s = first + i;
                int32_t target =
                    data->items[data->offsets[s] + mr_rec_data_target_pos(data, s, split)];
                const float *scores = b.scores + i * table.n_items;
                if (!ada) {
                    int32_t *exclude = b.exclude + (int64_t)thread * longest;
                    b.ranks[s] = rank_full_ranking(data, s, target, scores, table.n_items,
                                                   exclude);
                    continue;
                }
                int32_t *list = b.lists + i * list_size;
                append_round(data, s, target, scores, table.n_items, config->per_round,
                             b.blocked + (int64_t)thread * table.n_items, list, &b.listed[i]);
                if (t == rounds - 1) {
                    b.ranks[s] = -1;
                    for (int j = 0; j < b.listed[i]; j++) {
                        if (list[j] == target) {
                            b.ranks[s] = j;
                            break;
                        }
                    }
                }
            }
        }
        if (progress != NULL) {
            progress(first + count, data->n_sequences, progress_user_data);
        }
    }

    if (status == MR_OK) {
        for (int64_t s = 0; s < data->n_sequences; s++) {
            mr_rec_metrics_add(out, b.ranks[s]);
        }
        mr_rec_metrics_finish(out);
    }
    mr_ctx_free(ctx);
    eval_buffers_free(&b);
    return status;
}

mr_status mr_rec_recommend(mr_rec_model *model, const mr_rec_data *data, int64_t s, int k,
                           int32_t *items_out, int32_t *rounds_out, float *scores_out,
                           int *written, mr_error *err) {
    *written = 0;
    if (s < 0 || s >= data->n_sequences) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: sequence %lld is out of range [0, %lld)", (long long)s,
                            (long long)data->n_sequences);
    }
    if (k <= 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rec: recommendation count k = %d must be positive", k);
    }
    item_table table;
    mr_status status = item_table_init(model, data, &table, err);
    if (status != MR_OK) {
        return status;
    }

    const mr_rec_config *config = mr_rec_model_config(model);
    int rounds = mr_rec_model_rounds(model);
    float *user_vectors = malloc((size_t)rounds * (size_t)table.dim * sizeof(float));
    float *scores = malloc((size_t)table.n_items * sizeof(float));
    uint8_t *blocked = calloc((size_t)table.n_items, 1);
    mr_ctx *ctx = mr_ctx_create(0);
    if (user_vectors == NULL || scores == NULL || blocked == NULL || ctx == NULL) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY,
                              "rec: out of memory recommending among %d items",
                              (int)table.n_items);
        goto done;
    }
    mr_ctx_set_training(ctx, false);
    mr_ctx_set_grad_enabled(ctx, false);

    /* The input is the whole sequence: the target position is one past
     * its end. */
    mr_tensor *seq = mr_tensor_new2d(ctx, MR_I32, 1, config->max_len);
    if (seq == NULL) {
        status = mr_ctx_take_error(ctx, err);
        goto done;
    }
    int64_t length = data->offsets[s + 1] - data->offsets[s];
    mr_rec_data_input(data, s, length, config->max_len, seq->idata);
    status = grouped_user_vectors(model, ctx, seq, user_vectors, err);
    if (status != MR_OK) {
        goto done;
    }

    /* Without ada the one round supplies all k; with it each round adds
     * per_round until k are listed. */
    int listed = 0;
    for (int t = 0; t < rounds && listed < k; t++) {
        score_users(&table, user_vectors + (int64_t)t * table.dim, 1, scores);
        int take = config->ada ? config->per_round : k;
        take = take < k - listed ? take : k - listed;
        int before = listed;
        append_round(data, s, 0, scores, table.n_items, take, blocked, items_out, &listed);
        for (int j = before; j < listed; j++) {
            if (rounds_out != NULL) {
                rounds_out[j] = t + 1;
            }
            if (scores_out != NULL) {
                scores_out[j] = scores[items_out[j]];
            }
        }
    }
    *written = listed;

done:
    mr_ctx_free(ctx);
    free(user_vectors);
    free(scores);
    free(blocked);
    return status;
}
