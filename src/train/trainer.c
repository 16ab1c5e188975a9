/*
 * The training loop shared by the SFT, reward, classifier and DPO
 * trainers: loading the model and data, batching in a seeded order,
 * gradient accumulation, clipped AdamW steps on a warm-up and decay
 * schedule, evaluation, metrics, checkpoints and resume.
 *
 * The data order of epoch e is a permutation drawn from the seed and e
 * alone, so the number of examples consumed (the data position) is all a
 * checkpoint needs to continue the same order.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "run_dir.h"
#include "train_internal.h"

void train_metrics_add(train_metrics *m, const char *name, double value) {
    for (int i = 0; i < m->count; i++) {
        if (strcmp(m->names[i], name) == 0) {
            m->sums[i] += value;
            return;
        }
    }
    if (m->count < TRAIN_MAX_METRICS) {
        m->names[m->count] = name;
        m->sums[m->count++] = value;
    }
}

/* ------------------------------------------------------------------------
 * Model, tokenizer and optimizer
 * ------------------------------------------------------------------------ */

/* True when path names a folder. */
static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Opens the tokenizer: tokenizer_path, else the model's GGUF file, else
 * the folder's tokenizer.gguf or tokenizer.json. Keeps a GGUF open in
 * t->gguf for the chat template and for writing the model. */
static mr_status open_tokenizer(trainer *t, mr_error *err) {
    char path[4096];
    const char *source = t->o.tokenizer_path;
    if (source == NULL && t->model_is_hf) {
        train_join_path(path, sizeof path, t->o.model_path, "tokenizer.gguf");
        if (access(path, F_OK) != 0) {
            train_join_path(path, sizeof path, t->o.model_path, "tokenizer.json");
        }
        source = path;
    } else if (source == NULL) {
        source = t->o.model_path;
    }
    size_t len = strlen(source);
    if (len >= 5 && strcmp(source + len - 5, ".json") == 0) {
        return mr_tokenizer_from_hf_json(source, &t->tok, err);
    }
    mr_status status = mr_gguf_open(source, &t->gguf, err);
    if (status == MR_OK) {
        status = mr_tokenizer_from_gguf(t->gguf, &t->tok, err);
    }
    return status;
}

/* Loads or creates a model as the options say (trainable unless LoRA
 * will train an adapter on it). */
static mr_llama *open_model(const mr_train_options *o, bool trainable, mr_error *err) {
    mr_llama *model = o->model_path != NULL ? mr_llama_load(o->model_path, err)
                                            : mr_llama_init(&o->init_config, o->seed, err);
    if (model != NULL && trainable && mr_llama_make_trainable(model, err) != MR_OK) {
        mr_llama_free(model);
        return NULL;
    }
    return model;
}

/* Appends the tensors of ps to the decay list (matrices) or the plain
 * list (vectors), marking each view of the set's buffer as a parameter so
 * that the optimizer may take it. */
static void split_params(mr_paramset *ps, mr_tensor **decay, int *n_decay, mr_tensor **plain,
                         int *n_plain) {
    for (int i = 0; i < mr_paramset_count(ps); i++) {
        mr_tensor *p = mr_paramset_get(ps, i);
        mr_tensor_set_param(p);
        if (p->ndim >= 2) {
            decay[(*n_decay)++] = p;
        } else {
            plain[(*n_plain)++] = p;
        }
    }
}

/* Creates AdamW over the trained tensors: matrices with weight decay,
 * norms and biases without. */
static mr_status create_optimizer(trainer *t, mr_error *err) {
    mr_paramset *sets[2] = {t->lora != NULL ? mr_lora_params(t->lora) : mr_llama_params(t->model),
                            t->head};
    int total = 0;
    for (int s = 0; s < 2; s++) {
        total += sets[s] != NULL ? mr_paramset_count(sets[s]) : 0;
    }
    mr_tensor **decay = calloc((size_t)total, sizeof *decay);
    mr_tensor **plain = calloc((size_t)total, sizeof *plain);
    t->trainable = calloc((size_t)total, sizeof *t->trainable);
    if (decay == NULL || plain == NULL || t->trainable == NULL) {
        free(decay);
        free(plain);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
    }
    int n_decay = 0, n_plain = 0;
    for (int s = 0; s < 2; s++) {
        if (sets[s] != NULL) {
            split_params(sets[s], decay, &n_decay, plain, &n_plain);
        }
    }
    memcpy(t->trainable, decay, (size_t)n_decay * sizeof *decay);
    memcpy(t->trainable + n_decay, plain, (size_t)n_plain * sizeof *plain);
    t->n_trainable = n_decay + n_plain;

    mr_optim_config config = mr_optim_config_default(MR_OPTIM_ADAMW);
    config.beta1 = t->o.adam_beta1;
    config.beta2 = t->o.adam_beta2;
    config.eps = t->o.adam_eps;
    t->optim = mr_optim_create(&config, err);
    mr_status status = t->optim != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_NO_MEMORY);
    if (status == MR_OK && n_decay > 0) {
        status = mr_optim_add_group(t->optim, decay, n_decay, t->o.weight_decay, 1.0f, err);
    }
    if (status == MR_OK && n_plain > 0) {
        status = mr_optim_add_group(t->optim, plain, n_plain, 0.0f, 1.0f, err);
    }
    free(decay);
    free(plain);

    t->schedule = (mr_lr_schedule){.base_lr = t->o.lr,
                                   .min_lr = t->o.min_lr,
                                   .warmup_steps = t->o.warmup_steps,
                                   .total_steps = t->o.max_steps,
                                   .decay = t->o.decay};
    if (status == MR_OK) {
        status = mr_lr_schedule_check(&t->schedule, err);
    }
    return status;
}

/* Loads the model, tokenizer, adapter, head, reference and optimizer. */
static mr_status setup_model(trainer *t, mr_error *err) {
    const mr_train_options *o = &t->o;
    t->model_is_hf = o->model_path != NULL && is_dir(o->model_path);
    t->model = open_model(o, !o->lora, err);
    if (t->model == NULL) {
        return err != NULL ? err->status : MR_ERR_FORMAT;
    }
    mr_status status = open_tokenizer(t, err);
    if (status == MR_OK && mr_tokenizer_n_vocab(t->tok) > mr_llama_get_config(t->model)->vocab_size) {
        status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                              "train: the tokenizer has %lld tokens but the model only %d",
                              (long long)mr_tokenizer_n_vocab(t->tok),
                              mr_llama_get_config(t->model)->vocab_size);
    }
    if (status == MR_OK && o->lora) {
        t->lora = mr_lora_create(t->model, &o->lora_config, o->seed, err);
        status = t->lora != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_NO_MEMORY);
    }
    if (status == MR_OK && (o->kind == MR_TRAIN_REWARD || o->kind == MR_TRAIN_CLASSIFY)) {
        status = reward_head_create(t, o->kind == MR_TRAIN_REWARD ? 1 : o->num_labels, err);
    }
    if (status == MR_OK && o->kind == MR_TRAIN_DPO && o->reference == MR_DPO_REFERENCE_COPY) {
        t->reference = open_model(o, true, err);
        status = t->reference != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_FORMAT);
    }
    if (status == MR_OK) {
        status = create_optimizer(t, err);
    }
    return status;
}

/* ------------------------------------------------------------------------
 * Data
 * ------------------------------------------------------------------------ */

/* Reads and tokenizes the training and held-out data. */
static mr_status setup_data(trainer *t, mr_error *err) {
    const mr_train_options *o = &t->o;
    train_row *rows = NULL;
    int n_rows = 0;
    mr_status status = train_read_rows(o->data_path, o->kind, o->num_labels,
                                       o->completion_field, &rows, &n_rows, err);
    if (status != MR_OK) {
        return status;
    }

    /* Split off every eval_every_nth row unless an eval file is given. */
    train_row *eval_rows = NULL;
    int n_eval_rows = 0;
    if (o->eval_path != NULL) {
        status = train_read_rows(o->eval_path, o->kind, o->num_labels, o->completion_field,
                                 &eval_rows, &n_eval_rows, err);
    } else if (o->eval_every_nth > 0) {
        eval_rows = calloc((size_t)n_rows, sizeof *eval_rows);
        if (eval_rows == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
        }
        int kept = 0;
        for (int i = 0; status == MR_OK && i < n_rows; i++) {
            if (i % o->eval_every_nth == o->eval_every_nth - 1) {
                eval_rows[n_eval_rows++] = rows[i];
            } else {
                rows[kept++] = rows[i];
            }
        }
        if (status == MR_OK) {
            n_rows = kept;
        }
    }
    int n_held_out = n_eval_rows;
    if (status == MR_OK && o->eval_max_examples > 0 && n_eval_rows > o->eval_max_examples) {
        for (int i = o->eval_max_examples; i < n_eval_rows; i++) {
            train_row_clear(&eval_rows[i]);
        }
        n_eval_rows = o->eval_max_examples;
    }

    if (status == MR_OK) {
        status = train_tokenize(t, rows, n_rows, &t->train, &t->n_train, err);
    }
    if (status == MR_OK && n_eval_rows > 0) {
        status = train_tokenize(t, eval_rows, n_eval_rows, &t->eval, &t->n_eval, err);
    }
    train_rows_free(rows, n_rows);
    train_rows_free(eval_rows, n_eval_rows);
    if (status == MR_OK && t->n_train == 0) {
        status = mr_error_set(err, MR_ERR_FORMAT, "%s: no usable training examples",
                              o->data_path);
    }
    if (status == MR_OK && n_held_out > n_eval_rows) {
        mr_log(MR_LOG_INFO, "train",
               "%d training and %d held-out examples, of which %d are evaluated "
               "(eval_max_examples %d)",
               t->n_train, n_held_out, t->n_eval, o->eval_max_examples);
    } else if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "train", "%d training and %d held-out examples", t->n_train,
               t->n_eval);
    }
    return status;
}

/* The training example at data position p: index p mod N of the
 * permutation of epoch p / N. */
static const train_example *example_at(trainer *t, int64_t position) {
    int64_t epoch = position / t->n_train;
    if (epoch != t->order_epoch) {
        mr_rng base;
        mr_rng_init(&base, t->o.seed);
        mr_rng rng = mr_rng_split(&base, (uint64_t)epoch + 1);
        for (int i = 0; i < t->n_train; i++) {
            t->order[i] = i;
        }
        for (int i = t->n_train - 1; i > 0; i--) {
            int j = (int)mr_rng_below(&rng, (uint64_t)i + 1);
            int32_t swap = t->order[i];
            t->order[i] = t->order[j];
            t->order[j] = swap;
        }
        t->order_epoch = epoch;
    }
    return &t->train[t->order[position % t->n_train]];
}

/* Allocates the batch tensors in ctx for rows x length, padded. */
static mr_status batch_alloc(mr_ctx *ctx, train_batch *b) {
    b->tokens = mr_tensor_new2d(ctx, MR_I32, b->rows, b->length);
    b->targets = mr_tensor_new2d(ctx, MR_I32, b->rows, b->length);
    b->last = mr_tensor_new1d(ctx, MR_I32, b->rows);
    b->labels = mr_tensor_new1d(ctx, MR_I32, b->examples);
    if (b->tokens == NULL || b->targets == NULL || b->last == NULL || b->labels == NULL) {
        return mr_ctx_status(ctx);
    }
    for (int64_t i = 0; i < (int64_t)b->rows * b->length; i++) {
        b->tokens->idata[i] = 0;
        b->targets->idata[i] = -1;
    }
    return MR_OK;
}

/* Copies seq into row r of b at column offset. */
static void batch_put(train_batch *b, int r, int offset, const train_sequence *seq) {
    int32_t *tokens = b->tokens->idata + (int64_t)r * b->length + offset;
    int32_t *targets = b->targets->idata + (int64_t)r * b->length + offset;
    memcpy(tokens, seq->tokens, (size_t)seq->length * sizeof *tokens);
    memcpy(targets, seq->targets, (size_t)seq->length * sizeof *targets);
    b->last->idata[r] = offset + seq->length - 1;
    b->tokens_total += seq->length;
    for (int i = 0; i < seq->length; i++) {
        b->target_tokens += seq->targets[i] >= 0;
    }
}

/* Builds a batch of n examples, each row one sequence. A DPO example
 * without a ground truth repeats its chosen sequence in that block. */
static mr_status batch_build(mr_ctx *ctx, const train_example *const *examples, int n,
                             train_batch *b) {
    memset(b, 0, sizeof *b);
    b->examples = n;
    for (int i = 0; i < n; i++) {
        b->seqs_per_example = examples[i]->n_seq > b->seqs_per_example ? examples[i]->n_seq
                                                                       : b->seqs_per_example;
        for (int k = 0; k < examples[i]->n_seq; k++) {
            int len = examples[i]->seq[k].length;
            b->length = len > b->length ? len : b->length;
        }
    }
    b->rows = n * b->seqs_per_example;
    mr_status status = batch_alloc(ctx, b);
    if (status != MR_OK) {
        return status;
    }
    for (int k = 0; k < b->seqs_per_example; k++) {
        for (int i = 0; i < n; i++) {
            const train_example *ex = examples[i];
            batch_put(b, k * n + i, 0, &ex->seq[k < ex->n_seq ? k : 0]);
        }
    }
    for (int i = 0; i < n; i++) {
        b->labels->idata[i] = examples[i]->label;
    }
    return MR_OK;
}

/* Builds the next training micro-batch from t->position on and advances
 * the position. SFT with pack joins consecutive examples into rows of
 * up to max_length tokens. */
static mr_status next_batch(trainer *t, mr_ctx *ctx, train_batch *b) {
    int64_t first = t->position;
    if (!t->o.pack) {
        const train_example *examples[TRAIN_MAX_BATCH];
        int n = t->o.batch_size;
        for (int i = 0; i < n; i++) {
            examples[i] = example_at(t, t->position++);
        }
        mr_status status = batch_build(ctx, examples, n, b);
        b->first_position = first;
        b->end_position = t->position;
        return status;
    }

    /* NOTE: the engine's attention takes no block-diagonal mask and the
     * training path no position ids, so packed examples attend to the
     * examples before them in the row and continue their positions. */
    memset(b, 0, sizeof *b);
    b->examples = t->o.batch_size;
    b->seqs_per_example = 1;
    b->rows = t->o.batch_size;
    b->length = t->o.max_length;
    mr_status status = batch_alloc(ctx, b);
    for (int r = 0; status == MR_OK && r < b->rows; r++) {
        int used = 0;
        for (;;) {
            const train_example *ex = example_at(t, t->position);
            if (used > 0 && used + ex->seq[0].length > b->length) {
                break;
            }
            batch_put(b, r, used, &ex->seq[0]);
            used += ex->seq[0].length;
            t->position++;
        }
    }
    b->first_position = first;
    b->end_position = t->position;
    return status;
}

/* Source lines of the training examples at positions [first, end), for
 * an error message. */
static void describe_lines(trainer *t, int64_t first, int64_t end, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (int64_t p = first; p < end && used + 16 < size; p++) {
        if (p - first == 8) {
            snprintf(out + used, size - used, ", ...");
            return;
        }
        int n = snprintf(out + used, size - used, "%s%d", p == first ? "" : ", ",
                         example_at(t, p)->line);
        used += (size_t)n;
    }
}

/* ------------------------------------------------------------------------
 * Steps and evaluation
 * ------------------------------------------------------------------------ */

/* The loss of batch b for t's kind. */
static mr_tensor *batch_loss(trainer *t, mr_ctx *ctx, const train_batch *b, train_metrics *m) {
    switch (t->o.kind) {
    case MR_TRAIN_SFT:
        return sft_batch_loss(t, ctx, b, m);
    case MR_TRAIN_REWARD:
        return reward_batch_loss(t, ctx, b, m);
    case MR_TRAIN_CLASSIFY:
        return classify_batch_loss(t, ctx, b, m);
    case MR_TRAIN_DPO:
        return dpo_batch_loss(t, ctx, b, m);
    }
    return NULL;
}

/* Means of the held-out metrics, under names "eval/<name>", into out. */
static mr_status evaluate(trainer *t, train_metrics *out, mr_error *err) {
    memset(out, 0, sizeof *out);
    if (t->n_eval == 0) {
        return MR_OK;
    }
    train_metrics sums = {0};
    bool was_training = mr_ctx_set_training(t->ctx, false);
    mr_status status = MR_OK;
    for (int start = 0; start < t->n_eval && status == MR_OK; start += t->o.batch_size) {
        int n = t->n_eval - start < t->o.batch_size ? t->n_eval - start : t->o.batch_size;
        const train_example *examples[TRAIN_MAX_BATCH];
        for (int i = 0; i < n; i++) {
            examples[i] = &t->eval[start + i];
        }
        mr_ctx_reset(t->ctx);
        mr_ctx_set_grad_enabled(t->ctx, false);
        train_batch b;
        train_metrics m = {0};
        status = batch_build(t->ctx, examples, n, &b);
        if (status == MR_OK && batch_loss(t, t->ctx, &b, &m) == NULL) {
            status = mr_ctx_take_error(t->ctx, err);
        }
        /* Weight each batch's means by its example count. */
        for (int i = 0; status == MR_OK && i < m.count; i++) {
            train_metrics_add(&sums, m.names[i], m.sums[i] * n);
        }
        sums.weight += n;
    }
    mr_ctx_set_grad_enabled(t->ctx, true);
    mr_ctx_set_training(t->ctx, was_training);
    mr_ctx_reset(t->ctx);

    static const char *const eval_names[] = {
        "eval/loss", "eval/accuracy", "eval/rewards/chosen", "eval/rewards/rejected",
        "eval/rewards/margins", "eval/logps/chosen", "eval/logps/rejected", "eval/dpo_loss",
        "eval/sft_nll"};
    for (int i = 0; status == MR_OK && i < sums.count; i++) {
        for (size_t k = 0; k < sizeof eval_names / sizeof eval_names[0]; k++) {
            if (strcmp(eval_names[k] + 5, sums.names[i]) == 0) {
                train_metrics_add(out, eval_names[k], sums.sums[i] / sums.weight);
            }
        }
    }
    return status;
}

/* Reads a metric from m, NaN when absent. */
static double metric_value(const train_metrics *m, const char *name) {
    for (int i = 0; i < m->count; i++) {
        if (strcmp(m->names[i], name) == 0) {
            return m->sums[i];
        }
    }
    return NAN;
}

/* Runs one optimizer step: grad_accum micro-batches, clipping, update.
 * Fills m with the step's mean metrics and *tokens with its token count. */
static mr_status train_step(trainer *t, train_metrics *m, int64_t *tokens, mr_error *err) {
    memset(m, 0, sizeof *m);
    *tokens = 0;
    float seed = 1.0f / (float)t->o.grad_accum;
    for (int micro = 0; micro < t->o.grad_accum; micro++) {
        mr_ctx_reset(t->ctx);
        train_batch b;
        mr_status status = next_batch(t, t->ctx, &b);
        mr_tensor *loss = status == MR_OK ? batch_loss(t, t->ctx, &b, m) : NULL;
        if (loss == NULL) {
            return mr_ctx_take_error(t->ctx, err);
        }
        if (!isfinite(loss->data[0])) {
            char lines[160];
            describe_lines(t, b.first_position, b.end_position, lines, sizeof lines);
            return mr_error_set(err, MR_ERR_NUMERIC,
                                "train: the loss is %g at step %" PRId64
                                " (micro-batch %d, data positions %" PRId64 "..%" PRId64
                                ", lines %s of %s); lower lr or check those rows",
                                loss->data[0], t->step + 1, micro, b.first_position,
                                b.end_position - 1, lines, t->o.data_path);
        }
        if (mr_tensor_backward(t->ctx, loss, &seed) != MR_OK) {
            return mr_ctx_take_error(t->ctx, err);
        }
        *tokens += b.tokens_total;
    }
    for (int i = 0; i < m->count; i++) {
        m->sums[i] /= t->o.grad_accum;
    }

    float norm = mr_optim_clip_grad_norm(t->optim, t->o.clip_norm);
    if (!isfinite(norm)) {
        return mr_error_set(err, MR_ERR_NUMERIC,
                            "train: the gradient norm is %g at step %" PRId64
                            " (data positions up to %" PRId64 "); lower lr",
                            norm, t->step + 1, t->position - 1);
    }
    float lr = mr_lr_at(&t->schedule, t->step);
    mr_status status = mr_optim_step(t->optim, lr, err);
    mr_optim_zero_grad(t->optim);
    train_metrics_add(m, MR_METRIC_LR, lr);
    train_metrics_add(m, "grad_norm", norm);
    return status;
}

/* Appends the line of step to the metrics log: m, then the eval metrics. */
static mr_status log_step(trainer *t, int64_t step, const train_metrics *m,
                          const train_metrics *eval, mr_error *err) {
    mr_metric metrics[2 * TRAIN_MAX_METRICS];
    size_t n = 0;
    for (int i = 0; m != NULL && i < m->count; i++) {
        metrics[n++] = (mr_metric){m->names[i], m->sums[i]};
    }
    for (int i = 0; eval != NULL && i < eval->count; i++) {
        metrics[n++] = (mr_metric){eval->names[i], eval->sums[i]};
    }
    return n > 0 ? mr_runlog_append(t->log, step, metrics, n, err) : MR_OK;
}

/* Seconds from a monotonic clock. */
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Logs the held-out figures of step; SFT has no accuracy, so its line
 * leaves it out. */
static void log_eval(int64_t step, const train_metrics *eval) {
    double loss = metric_value(eval, "eval/loss");
    double accuracy = metric_value(eval, "eval/accuracy");
    if (isnan(accuracy)) {
        mr_log(MR_LOG_INFO, "train", "step %" PRId64 ": eval loss %.4f", step, loss);
    } else {
        mr_log(MR_LOG_INFO, "train", "step %" PRId64 ": eval loss %.4f, accuracy %.4f", step,
               loss, accuracy);
    }
}

/* The loop from t->step to max_steps (or stop_after). */
static mr_status train_loop(trainer *t, mr_train_result *result, mr_error *err) {
    const mr_train_options *o = &t->o;
    mr_status status = MR_OK;
    train_metrics eval;

    if (t->step == 0) {
        status = evaluate(t, &eval, err);
        if (status == MR_OK) {
            result->eval_loss_start = metric_value(&eval, "eval/loss");
            result->eval_accuracy_start = metric_value(&eval, "eval/accuracy");
            status = log_step(t, 0, NULL, &eval, err);
        }
        if (status == MR_OK && t->n_eval > 0) {
            log_eval(0, &eval);
        }
    }

    while (status == MR_OK && t->step < o->max_steps) {
        double started = now_seconds();
        train_metrics m;
        int64_t tokens = 0;
        status = train_step(t, &m, &tokens, err);
        if (status != MR_OK) {
            break;
        }
        t->step++;
        double seconds = now_seconds() - started;
        train_metrics_add(&m, MR_METRIC_TOKENS_PER_SECOND, seconds > 0 ? tokens / seconds : 0);
        result->last_loss = metric_value(&m, MR_METRIC_LOSS);

        bool last = t->step == o->max_steps;
        bool eval_now = t->n_eval > 0 && ((o->eval_every > 0 && t->step % o->eval_every == 0) ||
                                          last);
        memset(&eval, 0, sizeof eval);
        if (eval_now) {
            status = evaluate(t, &eval, err);
        }
        bool log_now = (o->log_every > 0 && t->step % o->log_every == 0) || eval_now || last;
        if (status == MR_OK && log_now) {
            status = log_step(t, t->step, &m, &eval, err);
            mr_log(MR_LOG_INFO, "train",
                   "step %" PRId64 "/%" PRId64 ": loss %.4f, lr %.3g, grad norm %.3g, "
                   "%.0f tokens/s",
                   t->step, o->max_steps, result->last_loss, metric_value(&m, MR_METRIC_LR),
                   metric_value(&m, "grad_norm"), tokens / (seconds > 0 ? seconds : 1));
            if (eval_now) {
                log_eval(t->step, &eval);
            }
        }
        if (eval_now) {
            result->eval_loss = metric_value(&eval, "eval/loss");
            result->eval_accuracy = metric_value(&eval, "eval/accuracy");
        }
        bool saved = false;
        if (status == MR_OK && ((o->checkpoint_every > 0 && t->step % o->checkpoint_every == 0) ||
                                last)) {
            status = checkpoint_save(t, err);
            saved = true;
        }
        if (o->stop_after > 0 && t->step == o->stop_after) {
            break;
        }

        /* On a stop request, keep this step in a checkpoint and end. */
        if (status == MR_OK && !last && o->stop != NULL && o->stop(o->stop_user_data)) {
            if (!saved) {
                status = checkpoint_save(t, err);
            }
            if (status == MR_OK) {
                status = mr_error_set(err, MR_ERR_INTERRUPTED,
                                      "train: stopped on request after step %" PRId64
                                      " of %" PRId64 "; the checkpoint in %s contains it, "
                                      "so rerun with --resume (the resume option) to "
                                      "continue",
                                      t->step, o->max_steps, o->out_dir);
            }
            break;
        }
    }
    result->steps = t->step;
    return status;
}

/* ------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------ */

/* Frees everything t owns. */
static void trainer_free(trainer *t) {
    mr_runlog_close(t->log, NULL);
    mr_ctx_free(t->ctx);
    mr_optim_free(t->optim);
    free(t->trainable);
    mr_paramset_free(t->head);
    mr_lora_free(t->lora);
    mr_llama_free(t->reference);
    mr_llama_free(t->model);
    mr_tokenizer_free(t->tok);
    mr_gguf_close(t->gguf);
    train_examples_free(t->train, t->n_train);
    train_examples_free(t->eval, t->n_eval);
    free(t->order);
}

mr_status mr_train_run(const mr_train_options *options, mr_train_result *result_out,
                       mr_error *err) {
    mr_train_result result = {0, NAN, NAN, NAN, NAN, NAN};
    if (result_out != NULL) {
        *result_out = result;
    }
    trainer t;
    memset(&t, 0, sizeof t);
    t.order_epoch = -1;
    train_run_dir dir;
    mr_status status = train_run_dir_prepare(options, &t.o, &dir, err);
    if (status != MR_OK) {
        return status;
    }
    const mr_train_options *o = &t.o;

    status = setup_model(&t, err);
    if (status == MR_OK) {
        status = setup_data(&t, err);
    }
    if (status == MR_OK) {
        t.order = malloc((size_t)t.n_train * sizeof *t.order);
        t.ctx = mr_ctx_create(0);
        if (t.order == NULL || t.ctx == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
        }
    }
    bool resumed = false;
    if (status == MR_OK && o->resume) {
        status = checkpoint_load(&t, &resumed, err);
    }

    /* A finished run resumed to the same max_steps keeps its outputs and
     * log as they are. Only the step count of the result is known then. */
    bool already_done = status == MR_OK && resumed && t.step == o->max_steps &&
                        run_dir_has(o->out_dir, "done");
    if (already_done) {
        mr_log(MR_LOG_INFO, "train",
               "%s already contains a finished run of %lld steps (done); nothing to do, so "
               "raise max_steps to continue it",
               o->out_dir, (long long)o->max_steps);
        result.steps = t.step;
    }
    if (status == MR_OK && !already_done) {
        status = train_write_config(o, err);
    }
    char path[4096];
    if (status == MR_OK && !already_done) {
        train_join_path(path, sizeof path, o->out_dir, MR_RUNLOG_FILE);
        status = mr_runlog_open(path, resumed ? t.step : -1, NULL, &t.log, err);
    }
    if (status == MR_OK && !already_done) {
        mr_log(MR_LOG_INFO, "train", "%s: %s training of %d tensors, %lld step%s from step %lld",
               mr_train_kind_name(o->kind), o->lora ? "LoRA" : "full", t.n_train > 0 ? t.n_trainable : 0,
               (long long)o->max_steps, o->max_steps == 1 ? "" : "s", (long long)t.step);
        status = train_loop(&t, &result, err);
    }
    bool finished = status == MR_OK && !already_done && t.step == o->max_steps;
    if (finished) {
        status = checkpoint_write_outputs(&t, err);
    }
    if (status == MR_OK && finished) {
        train_join_path(path, sizeof path, o->out_dir, "done");
        status = mr_file_write_atomic(path, "", 0, err);
    }
    if (status == MR_OK && t.log != NULL) {
        mr_runlog *log = t.log;
        t.log = NULL;
        status = mr_runlog_close(log, err);
    }
    trainer_free(&t);
    train_run_dir_finish(&dir, o->out_dir, status != MR_OK);
    if (result_out != NULL) {
        *result_out = result;
    }
    return status;
}
