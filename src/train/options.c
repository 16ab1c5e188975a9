/*
 * Trainer options: defaults, checks, the config.json record of a run, and
 * the per-kind entry points.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/fileio.h"
#include "train_internal.h"

const char *mr_train_kind_name(mr_train_kind kind) {
    switch (kind) {
    case MR_TRAIN_SFT:
        return "sft";
    case MR_TRAIN_REWARD:
        return "rm";
    case MR_TRAIN_CLASSIFY:
        return "classify";
    case MR_TRAIN_DPO:
        return "dpo";
    }
    return NULL;
}

void mr_train_options_default(mr_train_options *o, mr_train_kind kind) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->max_length = 256;
    o->seed = 1;
    o->max_steps = 100;
    o->batch_size = 8;
    o->grad_accum = 1;
    o->lr = kind == MR_TRAIN_DPO ? 5e-6f : 1e-4f;
    o->min_lr = 0.0f;
    o->warmup_steps = 10;
    o->decay = MR_LR_COSINE;
    o->weight_decay = 0.01f;
    o->adam_beta1 = 0.9;
    o->adam_beta2 = 0.999;
    o->adam_eps = 1e-8f;
    o->clip_norm = 1.0f;
    o->lora_config.rank = 8;
    o->lora_config.alpha = 16.0f;
    o->lora_config.dropout = 0.0f;
    o->lora_config.targets = MR_LORA_Q | MR_LORA_V;
    o->log_every = 1;
    o->eval_every = 50;
    o->checkpoint_every = 50;
    o->add_eos = true;
    o->num_labels = 2;
    o->dpo_beta = 0.1f;
    o->reference = MR_DPO_REFERENCE_COPY;
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

mr_status train_validate_options(const mr_train_options *o, mr_error *err) {
    if (mr_train_kind_name(o->kind) == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: unknown kind %d", (int)o->kind);
    }
    if (o->data_path == NULL || o->out_dir == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "train: data_path and out_dir are required");
    }
    if (o->model_path == NULL && o->tokenizer_path == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "train: a random model (no model_path) needs tokenizer_path");
    }
    if (o->batch_size < 1 || o->batch_size > TRAIN_MAX_BATCH || o->grad_accum < 1 ||
        o->max_steps < 1 || o->max_length < 2) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "train: batch_size %d must be in [1, " MR_STRINGIFY(TRAIN_MAX_BATCH)
                            "], grad_accum %d and max_steps %lld >= 1 and max_length %d >= 2",
                            o->batch_size, o->grad_accum, (long long)o->max_steps,
                            o->max_length);
    }
    if (!(o->lr >= 0.0f) || !(o->weight_decay >= 0.0f) || o->eval_every_nth < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "train: lr %g and weight_decay %g must be >= 0 and eval_every_nth "
                            "%d >= 0",
                            o->lr, o->weight_decay, o->eval_every_nth);
    }
    if (o->decay != MR_LR_COSINE && o->decay != MR_LR_CONSTANT) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "train: the schedule must be cosine or constant");
    }
    if (o->kind == MR_TRAIN_CLASSIFY && o->num_labels < 2) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: num_labels %d must be >= 2",
                            o->num_labels);
    }
    if (o->kind == MR_TRAIN_DPO) {
        if (!(o->dpo_beta > 0.0f) || !(o->sft_weight >= 0.0f)) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "train: dpo beta %g must be > 0 and sft_weight %g >= 0",
                                o->dpo_beta, o->sft_weight);
        }
        if (o->reference == MR_DPO_REFERENCE_ADAPTER_OFF && !o->lora) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "train: the reference adapter_off needs lora; switch lora on or "
                                "use the reference copy");
        }
    }
    if (o->pack && o->kind != MR_TRAIN_SFT) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: pack applies to SFT only");
    }
    return MR_OK;
}

mr_status train_write_config(const mr_train_options *o, mr_error *err) {
    char lora_targets[16];
    snprintf(lora_targets, sizeof lora_targets, "0x%02x", o->lora_config.targets);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
    }
    fprintf(f, "{\n  \"kind\": \"%s\",\n", mr_train_kind_name(o->kind));
    fprintf(f, "  \"model\": \"%s\",\n  \"tokenizer\": \"%s\",\n",
            o->model_path ? o->model_path : "", o->tokenizer_path ? o->tokenizer_path : "");
    const mr_llama_config *c = &o->init_config;
    fprintf(f,
            "  \"init\": {\"vocab_size\": %d, \"dim\": %d, \"layers\": %d, \"heads\": %d, "
            "\"kv_heads\": %d, \"head_dim\": %d, \"ffn_dim\": %d, \"context_length\": %d},\n",
            c->vocab_size, c->dim, c->layers, c->heads, c->kv_heads, c->head_dim, c->ffn_dim,
            c->context_length);
    fprintf(f, "  \"data\": \"%s\",\n  \"eval_data\": \"%s\",\n  \"eval_every_nth\": %d,\n",
            o->data_path, o->eval_path ? o->eval_path : "", o->eval_every_nth);
    fprintf(f, "  \"max_length\": %d,\n  \"eval_max_examples\": %d,\n", o->max_length,
            o->eval_max_examples);
    fprintf(f, "  \"seed\": %" PRIu64 ",\n  \"max_steps\": %" PRId64 ",\n", o->seed,
            o->max_steps);
    fprintf(f, "  \"batch_size\": %d,\n  \"grad_accum\": %d,\n", o->batch_size, o->grad_accum);
    fprintf(f, "  \"lr\": %.9g,\n  \"min_lr\": %.9g,\n  \"warmup_steps\": %" PRId64 ",\n",
            o->lr, o->min_lr, o->warmup_steps);
    fprintf(f, "  \"schedule\": \"%s\",\n", o->decay == MR_LR_COSINE ? "cosine" : "constant");
    fprintf(f, "  \"weight_decay\": %.9g,\n  \"adam_beta1\": %.17g,\n  \"adam_beta2\": %.17g,\n",
            o->weight_decay, o->adam_beta1, o->adam_beta2);
    fprintf(f, "  \"adam_eps\": %.9g,\n  \"clip_norm\": %.9g,\n", o->adam_eps, o->clip_norm);
    fprintf(f,
            "  \"lora\": %s,\n  \"lora_rank\": %d,\n  \"lora_alpha\": %.9g,\n"
            "  \"lora_dropout\": %.9g,\n  \"lora_targets\": \"%s\",\n",
            o->lora ? "true" : "false", o->lora_config.rank, o->lora_config.alpha,
            o->lora_config.dropout, lora_targets);
    fprintf(f,
            "  \"log_every\": %" PRId64 ",\n  \"eval_every\": %" PRId64
            ",\n  \"checkpoint_every\": %" PRId64 ",\n",
            o->log_every, o->eval_every, o->checkpoint_every);
    fprintf(f, "  \"pack\": %s,\n  \"chat_template\": \"%s\",\n  \"add_eos\": %s,\n",
            o->pack ? "true" : "false", o->chat_template ? o->chat_template : "",
            o->add_eos ? "true" : "false");
    fprintf(f, "  \"num_labels\": %d,\n  \"beta\": %.9g,\n  \"reference\": \"%s\",\n",
            o->num_labels, o->dpo_beta,
            o->reference == MR_DPO_REFERENCE_COPY ? "copy" : "adapter_off");
    fprintf(f, "  \"sft_weight\": %.9g\n}\n", o->sft_weight);
    fclose(f);

    char path[4096];
    mr_status status = train_join_path(path, sizeof path, o->out_dir, "config.json")
                           ? mr_file_write_atomic(path, text, size, err)
                           : mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: path too long");
    free(text);
    return status;
}

/* Runs o as kind. */
static mr_status run_as(const mr_train_options *o, mr_train_kind kind, mr_train_result *result,
                        mr_error *err) {
    mr_train_options copy = *o;
    copy.kind = kind;
    return mr_train_run(&copy, result, err);
}

mr_status mr_train_sft(const mr_train_options *o, mr_train_result *result, mr_error *err) {
    return run_as(o, MR_TRAIN_SFT, result, err);
}

mr_status mr_train_reward(const mr_train_options *o, mr_train_result *result, mr_error *err) {
    return run_as(o, MR_TRAIN_REWARD, result, err);
}

mr_status mr_train_classifier(const mr_train_options *o, mr_train_result *result,
                              mr_error *err) {
    return run_as(o, MR_TRAIN_CLASSIFY, result, err);
}

mr_status mr_train_dpo(const mr_train_options *o, mr_train_result *result, mr_error *err) {
    return run_as(o, MR_TRAIN_DPO, result, err);
}
