/*
 * multiround sequential recommendation: datasets in the one-line-per-user
 * format, five backbones (GRU4Rec, SASRec, NextItNet, SR-GNN, FMLP-Rec),
 * Ada-Retrieval's multi-round retrieval with its item and user
 * representation adapters, training, full-ranking evaluation and
 * recommendation.
 *
 * Ada-Retrieval (Li et al., "Ada-Retrieval: An Adaptive Multi-Round
 * Retrieval Paradigm for Sequential Recommendations", AAAI 2024) retrieves
 * a user's next items in T rounds of k items. Before each round after the
 * first, an item representation adapter rewrites the embeddings of the
 * user's history with attention to the items retrieved so far, and a user
 * representation adapter merges the new user vector with the earlier
 * rounds' vectors, so later rounds explore other regions of the item space.
 *
 * Item ids are positive integers; id 0 is padding and never recommended.
 * Every score is u . e_i + b_i: the user vector times the item embedding
 * plus a learned per-item bias.
 */
#ifndef MULTIROUND_REC_H
#define MULTIROUND_REC_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/params.h"
#include "multiround/rng.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Datasets
 * ------------------------------------------------------------------------ */

/*
 * A dataset after preprocessing: repeated items within a user are dropped
 * (the first occurrence stays) and users left with fewer than 3 items are
 * dropped. Each kept sequence splits leave-one-out: its last item is the
 * test target, the second last the validation target, and every earlier
 * item is a training target whose input is the items before it.
 */
typedef struct mr_rec_data {
    char path[256];
    int32_t n_users;      /* largest user id + 1 */
    int32_t n_items;      /* largest item id + 1; row 0 of tables is padding */
    int64_t n_sequences;  /* users kept */
    int32_t *user_ids;    /* [n_sequences], in file order */
    int64_t *offsets;     /* [n_sequences + 1]: sequence s is
                             items[offsets[s] .. offsets[s + 1]) */
    int32_t *items;       /* every kept sequence, oldest item first */
    int64_t n_train;      /* training examples */
    int32_t *train_seq;   /* [n_train]: the sequence of each example */
    int32_t *train_pos;   /* [n_train]: the target's position in it */
    int64_t n_lines;          /* lines read */
    int64_t n_users_dropped;  /* users with fewer than 3 items */
    int64_t n_repeats_dropped;/* repeated items removed */
} mr_rec_data;

/*
 * Reads a file of lines "user item item ...", ids as decimal integers,
 * items oldest first, separated by spaces or tabs. Blank lines are skipped.
 * A line with a non-numeric or non-positive id, an id above 2^31 - 1 or a
 * user given twice is an error naming the file, line and token. A user with
 * fewer than 3 distinct items is dropped with one warning that counts them.
 * An empty file, or one where every user is dropped, is an error.
 */
mr_status mr_rec_data_load(const char *path, mr_rec_data **out, mr_error *err);

/* Frees the dataset. data may be NULL. */
void mr_rec_data_free(mr_rec_data *data);

typedef enum mr_rec_split {
    MR_REC_TRAIN = 0,
    MR_REC_VALID = 1, /* target: second last item; input: the items before */
    MR_REC_TEST = 2   /* target: last item; input: every item before it */
} mr_rec_split;

/* Returns "train", "valid" or "test". */
const char *mr_rec_split_name(mr_rec_split split);

/* Position of sequence s's target for the validation or test split. */
int64_t mr_rec_data_target_pos(const mr_rec_data *data, int64_t s,
                               mr_rec_split split);

/*
 * Writes the input for predicting position target_pos of sequence s: the
 * last max_len items before it, left-padded with 0 so that the most recent
 * item sits in out[max_len - 1].
 */
void mr_rec_data_input(const mr_rec_data *data, int64_t s, int64_t target_pos,
                       int max_len, int32_t *out);

/* True when item occurs anywhere in sequence s. */
bool mr_rec_data_contains(const mr_rec_data *data, int64_t s, int32_t item);

/*
 * Draws count negatives for sequence s: uniform over ids 1..n_items-1 with
 * replacement, rejecting every item of the user's whole sequence. A slot
 * that is rejected 100 times in a row becomes 0 (padding), which callers
 * must treat as a label-0 candidate that scores like any other id.
 */
void mr_rec_sample_negatives(const mr_rec_data *data, int64_t s, int count,
                             mr_rng *rng, int32_t *out);

/* ------------------------------------------------------------------------
 * Metrics over full rankings
 * ------------------------------------------------------------------------ */

#define MR_REC_CUTOFFS 4
/* The cutoffs K of hit@K and NDCG@K: 10, 20, 50, 100. */
extern const int mr_rec_cutoffs[MR_REC_CUTOFFS];

/* Sums, then (after mr_rec_metrics_finish) means over users. */
typedef struct mr_rec_metrics {
    int64_t users;
    double hit[MR_REC_CUTOFFS];
    double ndcg[MR_REC_CUTOFFS];
} mr_rec_metrics;

/*
 * Adds one user whose target has 0-based rank `rank` (a negative rank means
 * the target is absent from the list): hit@K = [rank < K] and
 * NDCG@K = 1 / log2(rank + 2) when rank < K, else 0.
 */
void mr_rec_metrics_add(mr_rec_metrics *m, int64_t rank);

/* Adds the sums of other into m (for per-thread partial sums). */
void mr_rec_metrics_merge(mr_rec_metrics *m, const mr_rec_metrics *other);

/* Turns the sums into means over the users added. */
void mr_rec_metrics_finish(mr_rec_metrics *m);

/*
 * Rank of target among all candidate items: ids 1..n_items-1 except those
 * in exclude (the user's other history items). Returns the number of
 * candidates that score higher, where a candidate with an equal score and a
 * smaller id also counts as higher, so ties break the same way every time.
 */
int64_t mr_rec_rank_full(const float *scores, int32_t n_items,
                         const int32_t *exclude, int64_t n_exclude,
                         int32_t target);

/*
 * Writes the k ids of highest score in descending order (ties: the smaller
 * id first) among ids 1..n_items-1 whose entry in `blocked` is 0. blocked
 * may be NULL. Returns the number written (fewer than k when too few
 * candidates remain).
 */
int mr_rec_topk(const float *scores, int32_t n_items, const uint8_t *blocked,
                int k, int32_t *out);

/* ------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------ */

typedef enum mr_rec_backbone_type {
    MR_REC_GRU4REC = 0,
    MR_REC_SASREC = 1,
    MR_REC_NEXTITNET = 2,
    MR_REC_SRGNN = 3,
    MR_REC_FMLPREC = 4
} mr_rec_backbone_type;

#define MR_REC_BACKBONES 5

/* Returns "gru4rec", "sasrec", "nextitnet", "srgnn" or "fmlprec". */
const char *mr_rec_backbone_name(mr_rec_backbone_type type);

/* Parses a backbone name (case-insensitive; "sr-gnn" and "fmlp-rec" too). */
mr_status mr_rec_backbone_parse(const char *name, mr_rec_backbone_type *type,
                                mr_error *err);

typedef struct mr_rec_config {
    mr_rec_backbone_type backbone;
    int dim;          /* D: item embedding and user vector size */
    int max_len;      /* L: the most recent items a user is represented by */
    int layers;       /* transformer or filter layers (SASRec, FMLP-Rec),
                         GRU layers (GRU4Rec), residual blocks (NextItNet),
                         graph steps (SR-GNN) */
    int heads;        /* attention heads (SASRec) */
    int inner_size;   /* feed-forward width (SASRec, FMLP-Rec) or GRU
                         hidden size (GRU4Rec) */
    float dropout;    /* dropout probability of backbone and adapters */
    bool ada;         /* Ada-Retrieval on top of the backbone */
    int rounds;       /* T: retrieval rounds (Ada-Retrieval) */
    int per_round;    /* k: items retrieved per round */
    float round_decay;/* round t's loss weight is round_decay^(t-1) */
    int negatives;    /* uniform negatives per training example */
    bool ada_zero_padding; /* keep padding positions at zero after the item
                              adapter (the reference fills them; off) */
} mr_rec_config;

/*
 * Fills the settings of the reference Ada-Retrieval runs for a backbone,
 * with ada off: D 64, L 50, dropout 0.1777, 100 negatives, T 5 rounds of
 * k 20, round_decay 0.3. Per backbone: SASRec 2 layers of 4 heads with a
 * SiLU feed-forward of width 512; FMLP-Rec 2 filter layers with a GELU
 * feed-forward of width 256; GRU4Rec 2 GRU layers of width 128; NextItNet
 * 10 residual blocks (kernel 3, dilations alternating 1 and 4); SR-GNN 1
 * graph step.
 */
void mr_rec_config_default(mr_rec_config *config, mr_rec_backbone_type backbone);

/* Checks ranges and combinations; the error names the setting and value. */
mr_status mr_rec_config_check(const mr_rec_config *config, mr_error *err);

typedef struct mr_rec_model mr_rec_model;

/*
 * Creates a model for n_items items (ids 0..n_items-1) with weights drawn
 * from seed: the item embedding table [n_items, D] with row 0 zero, the
 * item bias [n_items] drawn from normal(0, 0.1), the backbone and, with
 * config->ada, the adapters. Returns NULL and fills err on an invalid
 * config or when memory runs out.
 */
mr_rec_model *mr_rec_model_create(const mr_rec_config *config, int32_t n_items,
                                  uint64_t seed, mr_error *err);

/* Frees the model. model may be NULL. */
void mr_rec_model_free(mr_rec_model *model);

const mr_rec_config *mr_rec_model_config(const mr_rec_model *model);
int32_t mr_rec_model_n_items(const mr_rec_model *model);

/* The model's weights (for optimizers and checkpoints). */
mr_paramset *mr_rec_model_params(mr_rec_model *model);

/*
 * Builds the training loss of a batch in ctx. seq is I32 [B, L] (inputs,
 * left-padded; a SASRec model also accepts them cut to their last Lb
 * positions, 1 <= Lb <= L, with the same result when only padding was
 * cut, and other backbones reject Lb < L), candidates I32 [B, 1 + negatives] with the target first.
 * Each round's loss is the binary cross-entropy of the candidates' scores
 * against labels [1, 0, ..., 0], averaged over candidates and batch; the
 * total weights round t by round_decay^(t-1) (only round 1 without ada).
 * Dropout is active when ctx is in training mode and draws from rng.
 * Returns the scalar loss, or NULL with the error stored in ctx.
 */
mr_tensor *mr_rec_model_loss(mr_rec_model *model, mr_ctx *ctx, mr_tensor *seq,
                             mr_tensor *candidates, mr_rng *rng);

/*
 * Computes, without recording gradients and with dropout off, the user
 * vectors of every round for a batch seq I32 [B, L] (or [B, Lb] as for
 * mr_rec_model_loss): out receives
 * rounds * B * D floats, round major (out[(t * B + b) * D + d]); rounds
 * is 1 without ada. For rounds
 * after the first the adapters see the items the model itself retrieved in
 * the earlier rounds (top per_round by score, excluding id 0 and earlier
 * picks). Uses ctx as scratch space and resets nothing.
 */
mr_status mr_rec_model_user_vectors(mr_rec_model *model, mr_ctx *ctx,
                                    mr_tensor *seq, float *out, mr_error *err);

/* Number of rounds whose user vectors mr_rec_model_user_vectors writes. */
int mr_rec_model_rounds(const mr_rec_model *model);

/* The item embedding table [n_items, D] and bias [n_items] for scoring. */
mr_tensor *mr_rec_model_item_embedding(mr_rec_model *model);
mr_tensor *mr_rec_model_item_bias(mr_rec_model *model);

/* ------------------------------------------------------------------------
 * Evaluation and recommendation
 * ------------------------------------------------------------------------ */

/*
 * Evaluates every user of the split with full ranking over all items. A
 * user's candidates are ids 1..n_items-1 except the other items of the
 * user's whole sequence. Without ada the rank is the target's position in
 * the ranking of every candidate; with ada the list is rebuilt round by
 * round (each round's top per_round candidates by that round's user
 * vector, excluding earlier picks) and the rank is the target's position
 * in that list, or absent when it is not in it. Uses all threads.
 */
mr_status mr_rec_evaluate(mr_rec_model *model, const mr_rec_data *data,
                          mr_rec_split split, mr_rec_metrics *out,
                          mr_error *err);

/* Reports the users evaluated so far, after each batch of users. */
typedef void (*mr_rec_eval_progress_fn)(int64_t users_done, int64_t users_total,
                                        void *user_data);

/* mr_rec_evaluate with a progress callback, which may be NULL. */
mr_status mr_rec_evaluate_progress(mr_rec_model *model, const mr_rec_data *data,
                                   mr_rec_split split, mr_rec_eval_progress_fn progress,
                                   void *progress_user_data, mr_rec_metrics *out,
                                   mr_error *err);

/*
 * Writes the top k items for sequence s's next item (the input is the whole
 * sequence), excluding the items in it. rounds_out (may be NULL) receives
 * the 1-based round each item came from (always 1 without ada) and
 * scores_out (may be NULL) its score under that round's user vector. With
 * ada, round after round adds its top per_round items until k are listed,
 * so at most rounds * per_round are written. Returns the count written in
 * *written.
 */
mr_status mr_rec_recommend(mr_rec_model *model, const mr_rec_data *data,
                           int64_t s, int k, int32_t *items_out,
                           int32_t *rounds_out, float *scores_out,
                           int *written, mr_error *err);

/* ------------------------------------------------------------------------
 * Training
 * ------------------------------------------------------------------------ */

/* Called after each batch and at the end of each evaluation. */
typedef struct mr_rec_progress {
    int epoch;              /* 0-based */
    int64_t examples_done;  /* in this epoch; users in "valid" and "test" */
    int64_t examples_total;
    double loss;            /* mean loss of the epoch so far */
    double examples_per_second;
    const char *phase;      /* "train", "valid" or "test" */
} mr_rec_progress;

typedef void (*mr_rec_progress_fn)(const mr_rec_progress *progress,
                                   void *user_data);

/* Returns true when training should stop at the next batch boundary. It
 * is called after every batch, so it must be cheap. */
typedef bool (*mr_rec_stop_fn)(void *user_data);

typedef struct mr_rec_train_options {
    const char *out_dir;   /* run folder: created, or resumed if present */
    const char *init_dir;  /* base run whose best model initialises the
                              shared weights (Ada-Retrieval stage 2), or NULL */
    int epochs;            /* maximum epochs; 0: the limit of the run in
                              out_dir when it exists, else 200 (0) */
    int batch_size;        /* examples per step (1024) */
    float lr;              /* Adam learning rate (1e-3) */
    float clip_norm;       /* gradient-norm clip (10) */
    int patience;          /* stop after this many validations without a new
                              best hit@50 beyond the first (10) */
    uint64_t seed;
    double checkpoint_minutes; /* also write the checkpoint within an epoch
                                  once this many minutes have passed since
                                  the last one; 0: only after each epoch (10) */
    mr_rec_progress_fn progress;
    void *progress_user_data;
    mr_rec_stop_fn stop;   /* requests a stop with a checkpoint, or NULL */
    void *stop_user_data;
} mr_rec_train_options;

void mr_rec_train_options_default(mr_rec_train_options *options);

/*
 * Trains a model on data's training examples with Adam and early stopping
 * on validation hit@50, keeping the best weights in out_dir/model.safetensors,
 * then evaluates them on the test split. Writes out_dir/config.json and
 * out_dir/metrics.json (each epoch's validation figures, then the test
 * figures). A checkpoint is written atomically after every epoch, and
 * within a long epoch every checkpoint_minutes. A rerun with the same
 * out_dir resumes from it at the batch it stopped at, and reaches the same
 * result as an uninterrupted run. A finished run is left as it is.
 * When options->stop returns true, training writes the checkpoint after
 * the current batch and returns MR_ERR_INTERRUPTED. A validation or the
 * test evaluation that is under way finishes first.
 */
mr_status mr_rec_train(const mr_rec_data *data, const mr_rec_config *config,
                       const mr_rec_train_options *options, mr_error *err);

/* ------------------------------------------------------------------------
 * Benchmark
 * ------------------------------------------------------------------------ */

/* What mr_rec_bench measured. */
typedef struct mr_rec_bench_result {
    int64_t weights;                  /* trainable weights of the model */
    int64_t train_examples;           /* examples in the timed steps */
    double train_seconds;             /* wall time of the timed steps */
    double train_examples_per_second;
    double train_step_ms;             /* mean wall time of one step */
    double last_loss;                 /* mean loss of the last timed step */
    int64_t eval_users;               /* users ranked in the evaluation */
    double eval_seconds;              /* wall time of the full-ranking test evaluation */
    double eval_users_per_second;
    double eval_hit50;                /* test hit@50 after the timed steps */
} mr_rec_bench_result;

/*
 * Times training and evaluation without a run folder: creates the model
 * from options->seed (then loads options->init_dir's best weights when it
 * is set), runs warmup_steps untimed training steps and `steps` timed ones
 * on the first batches of epoch 0's order, exactly as training would,
 * then times one full-ranking evaluation of the test split. options'
 * out_dir, epochs, patience and progress are ignored.
 */
mr_status mr_rec_bench(const mr_rec_data *data, const mr_rec_config *config,
                       const mr_rec_train_options *options, int warmup_steps, int steps,
                       mr_rec_bench_result *result, mr_error *err);

/* Loads a trained model from a run folder (config.json and
 * model.safetensors). */
mr_status mr_rec_model_load(const char *dir, int32_t n_items,
                            mr_rec_model **out, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_REC_H */
