/*
 * Private parts of the trainers in src/train/: data rows, tokenized
 * examples, batches and the trainer state shared by trainer.c,
 * checkpoint.c, sft.c, reward.c, dpo.c and data_jsonl.c.
 */
#ifndef MR_TRAIN_INTERNAL_H
#define MR_TRAIN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/generate.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/lora.h"
#include "multiround/optim.h"
#include "multiround/params.h"
#include "multiround/runlog.h"
#include "multiround/tokenizer.h"
#include "multiround/train.h"
#include "run_dir.h"

/* ------------------------------------------------------------------------
 * JSON Lines rows (data_jsonl.c)
 * ------------------------------------------------------------------------ */

/* One row of a data file; fields the kind does not use are NULL. */
typedef struct train_row {
    int line;                  /* 1-based line number in the file */
    char *prompt, *completion; /* SFT */
    mr_chat_message *messages; /* SFT chat rows */
    int n_messages;
    char *chosen, *rejected, *ground_truth; /* reward model and DPO; prompt too */
    char *text;                /* classifier */
    int label;
} train_row;

/*
 * Reads the JSON Lines file at path as rows of kind into *rows (*n of
 * them; free with train_rows_free). Blank lines are skipped, and so are
 * preference rows with an empty chosen or rejected side, with a warning
 * that counts them. A row that is not a JSON object, lacks a field or has
 * one of the wrong type gives MR_ERR_FORMAT naming the path and the line,
 * and text that is not JSON gives it with the column too.
 */
mr_status train_read_jsonl(const char *path, mr_train_kind kind, int num_labels,
                           train_row **rows, int *n, mr_error *err);

/* train_read_jsonl() with the SFT completion read from the field named
 * completion_field (NULL: "completion"). */
mr_status train_read_rows(const char *path, mr_train_kind kind, int num_labels,
                          const char *completion_field, train_row **rows, int *n,
                          mr_error *err);
void train_rows_free(train_row *rows, int n);

/* Frees the strings of one row and zeroes it. */
void train_row_clear(train_row *r);

/* ------------------------------------------------------------------------
 * Tokenized examples and batches
 * ------------------------------------------------------------------------ */

/* Examples per micro-batch at most. */
#define TRAIN_MAX_BATCH 4096
#define MR_STRINGIFY_VALUE(x) #x
#define MR_STRINGIFY(x) MR_STRINGIFY_VALUE(x)

/* Sequences per example at most: chosen, rejected and ground truth. */
#define TRAIN_MAX_SEQUENCES 3

/* One token sequence; targets[t] is the id that position t predicts, or
 * -1 where no loss is counted. */
typedef struct train_sequence {
    int32_t *tokens;
    int32_t *targets;
    int length;
} train_sequence;

typedef struct train_example {
    train_sequence seq[TRAIN_MAX_SEQUENCES];
    int n_seq;    /* 1 (SFT, classifier), 2 (pairs) or 3 (pairs with ground truth) */
    int label;    /* classifier */
    int line;     /* data line, for messages */
} train_example;

void train_examples_free(train_example *examples, int n);

/*
 * The rows of one micro-batch, padded to one length. Row k * examples + i
 * is sequence k of example i, so chosen, rejected and ground-truth rows
 * form three consecutive blocks.
 */
typedef struct train_batch {
    int examples;
    int seqs_per_example;
    int rows;
    int length;
    mr_tensor *tokens;   /* I32 [rows, length], padding 0 */
    mr_tensor *targets;  /* I32 [rows, length], -1 at padding */
    mr_tensor *last;     /* I32 [rows]: position of the last real token */
    mr_tensor *labels;   /* I32 [examples] (classifier) */
    int64_t target_tokens; /* targets that are not -1 */
    int64_t tokens_total;  /* real tokens */
    int64_t first_position, end_position; /* data positions [first, end) */
} train_batch;

/* ------------------------------------------------------------------------
 * Trainer state (trainer.c)
 * ------------------------------------------------------------------------ */

/* Named numbers of one step, averaged over micro-batches. */
#define TRAIN_MAX_METRICS 12
typedef struct train_metrics {
    int count;
    const char *names[TRAIN_MAX_METRICS];
    double sums[TRAIN_MAX_METRICS];
    double weight;         /* micro-batches or examples added */
} train_metrics;

/* Warm-up steps of a run that leaves warmup_steps at -1, unless
 * max_steps is smaller. */
#define TRAIN_DEFAULT_WARMUP 10

/* Sets a warmup_steps of -1 to stored_warmup when that is >= 0 (the value
 * of a resumed run), else to min(TRAIN_DEFAULT_WARMUP, max_steps)
 * (options.c). */
void train_resolve_warmup(mr_train_options *o, int64_t stored_warmup);

/* Sets err to the error of a JSON Lines line that is not valid JSON,
 * with the 1-based column (in bytes) where cJSON stopped (data_jsonl.c). */
mr_status train_invalid_json_error(const char *path, int line, const char *line_start,
                                   const char *parse_end, mr_error *err);

/* Checks every option before any data or model file is read, and
 * reports every invalid one in err, each naming its config key
 * (options.c). A warm-up of -1 (not resolved yet) passes. */
mr_status train_validate_options(const mr_train_options *o, mr_error *err);

/* Returns every option, defaults included, as the JSON text of
 * OUT/config.json (free it), or NULL when out of memory (options.c). */
char *train_format_config(const mr_train_options *o);

/* Writes train_format_config(o) to OUT/config.json (options.c). */
mr_status train_write_config(const mr_train_options *o, mr_error *err);

/*
 * Copies in to *out with the warm-up resolved, validates it and checks
 * out_dir: it rejects a new run over a finished or checkpointed one, and
 * a resume whose settings differ from OUT/config.json. Then it creates
 * out_dir, noting in *dir what it created (run_dir.c).
 */
mr_status train_run_dir_prepare(const mr_train_options *in, mr_train_options *out,
                                train_run_dir *dir, mr_error *err);

/* Adds value under name (a string literal) to m. */
void train_metrics_add(train_metrics *m, const char *name, double value);

typedef struct trainer {
    mr_train_options o;
    mr_llama *model;
    mr_tokenizer *tok;
    mr_gguf *gguf;             /* the model's or tokenizer's GGUF, or NULL */
    bool model_is_hf;
    mr_lora *lora;
    mr_llama *reference;       /* frozen copy for DPO, or NULL */
    mr_paramset *head;         /* reward or classifier head, or NULL */
    mr_tensor *head_weight, *head_bias;

    mr_optim *optim;
    mr_lr_schedule schedule;
    mr_tensor **trainable;     /* tensors the optimizer updates */
    int n_trainable;

    train_example *train;
    int n_train;
    train_example *eval;
    int n_eval;
    int32_t *order;            /* permutation of the current epoch */
    int64_t order_epoch;       /* epoch that order belongs to, -1 none */

    int64_t step;              /* optimizer steps done */
    int64_t position;          /* training examples consumed */
    mr_runlog *log;
    mr_ctx *ctx;               /* one micro-batch, reset after each */
} trainer;

/* The loss of one micro-batch, with its metrics added to m; NULL with the
 * error in ctx on failure. */
mr_tensor *sft_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m);
mr_tensor *reward_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m);
mr_tensor *classify_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m);
mr_tensor *dpo_batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m);

/*
 * Tokenizes rows into examples of t's kind, truncated to max_length.
 * Rows that give an empty sequence are dropped with a warning.
 */
mr_status train_tokenize(trainer *t, const train_row *rows, int n_rows,
                         train_example **examples, int *n_examples, mr_error *err);

/* Encodes prompt + completion as one sequence and sets the targets of the
 * completion's tokens (see sft.c). */
mr_status train_encode_pair(trainer *t, const char *prompt, const char *completion,
                            bool add_eos, train_sequence *seq, mr_error *err);

/* Creates the reward or classifier head with outputs columns (reward.c). */
mr_status reward_head_create(trainer *t, int outputs, mr_error *err);

/* ------------------------------------------------------------------------
 * Checkpoints (checkpoint.c)
 * ------------------------------------------------------------------------ */

/* Writes OUT/checkpoints/step-N with weights, optimizer state and the data
 * position, then points OUT/checkpoint.json at it and removes the
 * previous checkpoint. */
mr_status checkpoint_save(trainer *t, mr_error *err);

/* Restores the checkpoint named by OUT/checkpoint.json. *found is false,
 * and nothing changes, when there is none. */
mr_status checkpoint_load(trainer *t, bool *found, mr_error *err);

/* Writes the trained model, adapter or head into OUT. */
mr_status checkpoint_write_outputs(trainer *t, mr_error *err);

/* Creates dir and its missing parents. */
mr_status train_make_dirs(const char *dir, mr_error *err);

/* Joins dir and name into out (size bytes); false when it does not fit. */
bool train_join_path(char *out, size_t size, const char *dir, const char *name);

#endif /* MR_TRAIN_INTERNAL_H */
