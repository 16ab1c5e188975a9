/*
 * Trainer options: defaults, checks, the config.json record of a run, and
 * the per-kind entry points.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
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
    o->warmup_steps = -1;
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

void train_resolve_warmup(mr_train_options *o, int64_t stored_warmup) {
    if (o->warmup_steps >= 0) {
        return;
    }
    if (stored_warmup >= 0) {
        o->warmup_steps = stored_warmup;
        return;
    }
    o->warmup_steps = o->max_steps < TRAIN_DEFAULT_WARMUP ? o->max_steps : TRAIN_DEFAULT_WARMUP;
}

/* Records one invalid setting in err. The first sets the message and
 * status, and each later one is appended after "; " so that one run
 * reports every bad key. A message past 1023 bytes is cut short. */
static void add_problem(mr_error *err, mr_status *status, const char *fmt, ...)
    MR_PRINTF(3, 4);

static void add_problem(mr_error *err, mr_status *status, const char *fmt, ...) {
    size_t used = 0;
    if (*status == MR_OK) {
        *status = MR_ERR_INVALID_ARGUMENT;
        if (err != NULL) {
            err->status = MR_ERR_INVALID_ARGUMENT;
            used = (size_t)snprintf(err->message, sizeof err->message, "train: ");
        }
    } else if (err != NULL) {
        used = strlen(err->message);
        if (used + 2 < sizeof err->message) {
            memcpy(err->message + used, "; ", 3);
            used += 2;
        }
    }
    if (err == NULL || used >= sizeof err->message) {
        return;
    }
    va_list args;
    va_start(args, fmt);
    vsnprintf(err->message + used, sizeof err->message - used, fmt, args);
    va_end(args);
}

/* Records a problem, naming the config key and its valid range, when
 * condition is false. */
#define REQUIRE(condition, ...)                                                \
    do {                                                                       \
        if (!(condition)) {                                                    \
            add_problem(err, status, __VA_ARGS__);                             \
        }                                                                      \
    } while (0)

/* Checks the sizes and counts of o. */
static void validate_sizes(const mr_train_options *o, mr_status *status, mr_error *err) {
    REQUIRE(o->batch_size >= 1 && o->batch_size <= TRAIN_MAX_BATCH,
            "config key 'batch_size' is %d; it must be in [1, " MR_STRINGIFY(
                TRAIN_MAX_BATCH) "]",
            o->batch_size);
    REQUIRE(o->grad_accum >= 1, "config key 'grad_accum' is %d; it must be >= 1",
            o->grad_accum);
    REQUIRE(o->max_steps >= 1, "config key 'max_steps' is %lld; it must be >= 1",
            (long long)o->max_steps);
    REQUIRE(o->max_length >= 2, "config key 'max_length' is %d; it must be >= 2",
            o->max_length);
    REQUIRE(o->eval_every_nth >= 0,
            "config key 'eval_every_nth' is %d; it must be >= 0 (0: none)", o->eval_every_nth);
    REQUIRE(o->eval_max_examples >= 0,
            "config key 'eval_max_examples' is %d; it must be >= 0 (0: all)",
            o->eval_max_examples);
    const char *const names[] = {"log_every", "eval_every", "checkpoint_every", "stop_after"};
    const int64_t values[] = {o->log_every, o->eval_every, o->checkpoint_every, o->stop_after};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        REQUIRE(values[i] >= 0, "config key '%s' is %lld; it must be >= 0 (0: never)", names[i],
                (long long)values[i]);
    }
}

/* Checks the optimizer, schedule and LoRA settings of o. A warm-up of -1
 * (not resolved yet) passes. */
static void validate_optimizer(const mr_train_options *o, mr_status *status, mr_error *err) {
    bool lr_valid = o->lr >= 0.0f && isfinite(o->lr);
    REQUIRE(lr_valid, "config key 'lr' is %g; it must be finite and >= 0", (double)o->lr);
    REQUIRE(o->decay == MR_LR_COSINE || o->decay == MR_LR_CONSTANT,
            "config key 'schedule' must be \"cosine\" or \"constant\"");
    /* An invalid lr is reported once, not again as the bound of min_lr. */
    REQUIRE(!lr_valid || o->decay == MR_LR_CONSTANT ||
                (o->min_lr >= 0.0f && o->min_lr <= o->lr),
            "config key 'min_lr' is %g; it must be in [0, lr = %g]", (double)o->min_lr,
            (double)o->lr);
    REQUIRE(o->warmup_steps >= -1, "config key 'warmup_steps' is %lld; it must be >= 0",
            (long long)o->warmup_steps);
    REQUIRE(o->max_steps < 1 || o->warmup_steps <= o->max_steps,
            "config key 'warmup_steps' (%lld) is larger than max_steps (%lld); lower "
            "warmup_steps, raise max_steps, or leave warmup_steps out to get "
            "min(10, max_steps)",
            (long long)o->warmup_steps, (long long)o->max_steps);
    REQUIRE(o->weight_decay >= 0.0f && isfinite(o->weight_decay),
            "config key 'weight_decay' is %g; it must be finite and >= 0",
            (double)o->weight_decay);
    REQUIRE(o->adam_beta1 >= 0.0 && o->adam_beta1 < 1.0,
            "config key 'adam_beta1' is %g; it must be in [0, 1)", o->adam_beta1);
    REQUIRE(o->adam_beta2 >= 0.0 && o->adam_beta2 < 1.0,
            "config key 'adam_beta2' is %g; it must be in [0, 1)", o->adam_beta2);
    REQUIRE(o->adam_eps > 0.0f && isfinite(o->adam_eps),
            "config key 'adam_eps' is %g; it must be finite and > 0", (double)o->adam_eps);
    REQUIRE(isfinite(o->clip_norm), "config key 'clip_norm' is %g; it must be finite",
            (double)o->clip_norm);
    if (o->lora) {
        const mr_lora_config *l = &o->lora_config;
        REQUIRE(l->rank >= 1 && l->rank <= 65536,
                "config key 'lora_rank' is %d; it must be in [1, 65536]", l->rank);
        REQUIRE(l->alpha > 0.0f && isfinite(l->alpha),
                "config key 'lora_alpha' is %g; it must be finite and > 0", (double)l->alpha);
        REQUIRE(l->dropout >= 0.0f && l->dropout < 1.0f,
                "config key 'lora_dropout' is %g; it must be in [0, 1)", (double)l->dropout);
        REQUIRE(l->targets != 0,
                "config key 'lora_targets' is empty; name at least one target");
    }
}

/* Checks the settings that only some kinds use. */
static void validate_kind_options(const mr_train_options *o, mr_status *status,
                                  mr_error *err) {
    REQUIRE(o->kind != MR_TRAIN_CLASSIFY || o->num_labels >= 2,
            "config key 'num_labels' is %d; it must be >= 2", o->num_labels);
    if (o->kind == MR_TRAIN_DPO) {
        REQUIRE(o->dpo_beta > 0.0f && isfinite(o->dpo_beta),
                "config key 'beta' is %g; it must be finite and > 0", (double)o->dpo_beta);
        REQUIRE(o->sft_weight >= 0.0f && isfinite(o->sft_weight),
                "config key 'sft_weight' is %g; it must be finite and >= 0",
                (double)o->sft_weight);
        REQUIRE(o->reference != MR_DPO_REFERENCE_ADAPTER_OFF || o->lora,
                "config key 'reference' is \"adapter_off\", which needs lora; switch lora on "
                "or use the reference \"copy\"");
    }
    REQUIRE(!o->pack || o->kind == MR_TRAIN_SFT, "config key 'pack' applies to sft only");
    REQUIRE(o->completion_field == NULL || o->kind == MR_TRAIN_SFT,
            "config key 'completion_field' applies to sft only");
    REQUIRE(o->completion_field == NULL || o->completion_field[0] != '\0',
            "config key 'completion_field' is empty; name a string field of the data rows");
}

/* Checks where the model and tokenizer come from. An init that was never
 * set leaves vocab_size 0. */
static void validate_model_source(const mr_train_options *o, mr_status *status,
                                  mr_error *err) {
    if (o->model_path != NULL) {
        return;
    }
    bool has_init = o->init_config.vocab_size != 0 || o->init_config.dim != 0;
    REQUIRE(has_init || o->tokenizer_path != NULL,
            "config keys 'model' and 'init' are both missing; set model (a GGUF file or "
            "Hugging Face folder), or init (a random model's config.json) with tokenizer");
    REQUIRE(!has_init || o->tokenizer_path != NULL,
            "a random model (init, no model) needs config key 'tokenizer' (a GGUF file or "
            "tokenizer.json)");
    REQUIRE(has_init || o->tokenizer_path == NULL,
            "config key 'tokenizer' is set but neither 'model' nor 'init' is; set model (a "
            "GGUF file or Hugging Face folder), or init (a random model's config.json)");
}

mr_status train_validate_options(const mr_train_options *o, mr_error *err) {
    if (mr_train_kind_name(o->kind) == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: unknown kind %d",
                            (int)o->kind);
    }
    mr_status problems = MR_OK;
    mr_status *status = &problems;
    REQUIRE(o->data_path != NULL,
            "config key 'data' (the training JSON Lines file) is required");
    REQUIRE(o->out_dir != NULL && o->out_dir[0] != '\0',
            "config key 'out' (the run folder) is required");
    validate_model_source(o, status, err);
    validate_sizes(o, status, err);
    validate_optimizer(o, status, err);
    validate_kind_options(o, status, err);
    bool has_init = o->init_config.vocab_size != 0 || o->init_config.dim != 0;
    if (problems == MR_OK && o->model_path == NULL && has_init) {
        problems = mr_llama_config_validate(&o->init_config, err);
    }
    return problems;
}

#undef REQUIRE

/* Writes text as a JSON string literal to f, escaping what JSON needs. */
static void print_json_string(FILE *f, const char *text) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)(text != NULL ? text : ""); *c != '\0';
         c++) {
        if (*c == '"' || *c == '\\') {
            fprintf(f, "\\%c", *c);
        } else if (*c < 0x20) {
            fprintf(f, "\\u%04x", *c);
        } else {
            fputc(*c, f);
        }
    }
    fputc('"', f);
}

void train_print_string_member(FILE *f, const char *key, const char *text) {
    fprintf(f, "  \"%s\": ", key);
    print_json_string(f, text);
    fprintf(f, ",\n");
}

/* Writes value into text (32 bytes) with the fewest digits that read
 * back as the same float, so that 1e-3f reads 0.001 and 1e4f 10000. */
static void format_float(char *text, float value) {
    if (value == floorf(value) && fabsf(value) < 1e9f) {
        snprintf(text, 32, "%.0f", (double)value);
        return;
    }
    snprintf(text, 32, "%.9g", (double)value);
    for (int digits = 1; digits < 9; digits++) {
        char shorter[32];
        snprintf(shorter, sizeof shorter, "%.*g", digits, (double)value);
        if ((float)strtod(shorter, NULL) == value) {
            memcpy(text, shorter, sizeof shorter);
            return;
        }
    }
}

void train_print_float_member(FILE *f, const char *key, float value) {
    char text[32];
    format_float(text, value);
    fprintf(f, "  \"%s\": %s,\n", key, text);
}

/* Writes the random model's shape under the key names of a Hugging Face
 * config.json, or null when the run loads a model. */
static void print_init(FILE *f, const mr_train_options *o) {
    if (o->model_path != NULL) {
        fprintf(f, "  \"init\": null,\n");
        return;
    }
    const mr_llama_config *c = &o->init_config;
    char rope_theta[32], rms_norm_eps[32];
    format_float(rope_theta, c->rope_base);
    format_float(rms_norm_eps, c->rms_eps);
    fprintf(f,
            "  \"init\": {\"vocab_size\": %d, \"hidden_size\": %d, \"num_hidden_layers\": %d, "
            "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
            "\"intermediate_size\": %d, \"max_position_embeddings\": %d, \"rope_theta\": %s, "
            "\"rms_norm_eps\": %s, \"tie_word_embeddings\": %s, \"qkv_bias\": %s, "
            "\"rope_layout\": \"%s\"},\n",
            c->vocab_size, c->dim, c->layers, c->heads, c->kv_heads, c->head_dim, c->ffn_dim,
            c->context_length, rope_theta, rms_norm_eps,
            c->tied_output ? "true" : "false", c->qkv_bias ? "true" : "false",
            c->rope_layout == MR_ROPE_HALVES ? "halves" : "adjacent");
}

char *train_format_config(const mr_train_options *o) {
    char lora_targets[16];
    snprintf(lora_targets, sizeof lora_targets, "0x%02x", o->lora_config.targets);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL) {
        return NULL;
    }
    fprintf(f, "{\n  \"kind\": \"%s\",\n", mr_train_kind_name(o->kind));
    train_print_string_member(f, "model", o->model_path);
    train_print_string_member(f, "tokenizer", o->tokenizer_path);
    print_init(f, o);
    train_print_string_member(f, "data", o->data_path);
    train_print_string_member(f, "eval_data", o->eval_path);
    fprintf(f, "  \"eval_every_nth\": %d,\n", o->eval_every_nth);
    fprintf(f, "  \"max_length\": %d,\n  \"eval_max_examples\": %d,\n", o->max_length,
            o->eval_max_examples);
    fprintf(f, "  \"seed\": %" PRIu64 ",\n  \"max_steps\": %" PRId64 ",\n", o->seed,
            o->max_steps);
    fprintf(f, "  \"batch_size\": %d,\n  \"grad_accum\": %d,\n", o->batch_size, o->grad_accum);
    train_print_float_member(f, "lr", o->lr);
    train_print_float_member(f, "min_lr", o->min_lr);
    fprintf(f, "  \"warmup_steps\": %" PRId64 ",\n", o->warmup_steps);
    fprintf(f, "  \"schedule\": \"%s\",\n", o->decay == MR_LR_COSINE ? "cosine" : "constant");
    train_print_float_member(f, "weight_decay", o->weight_decay);
    fprintf(f, "  \"adam_beta1\": %.17g,\n  \"adam_beta2\": %.17g,\n", o->adam_beta1,
            o->adam_beta2);
    train_print_float_member(f, "adam_eps", o->adam_eps);
    train_print_float_member(f, "clip_norm", o->clip_norm);
    fprintf(f, "  \"lora\": %s,\n  \"lora_rank\": %d,\n", o->lora ? "true" : "false",
            o->lora_config.rank);
    train_print_float_member(f, "lora_alpha", o->lora_config.alpha);
    train_print_float_member(f, "lora_dropout", o->lora_config.dropout);
    fprintf(f, "  \"lora_targets\": \"%s\",\n", lora_targets);
    fprintf(f,
            "  \"log_every\": %" PRId64 ",\n  \"eval_every\": %" PRId64
            ",\n  \"checkpoint_every\": %" PRId64 ",\n",
            o->log_every, o->eval_every, o->checkpoint_every);
    fprintf(f, "  \"pack\": %s,\n", o->pack ? "true" : "false");
    train_print_string_member(f, "chat_template", o->chat_template);
    fprintf(f, "  \"add_eos\": %s,\n", o->add_eos ? "true" : "false");
    train_print_string_member(f, "completion_field",
                              o->completion_field != NULL ? o->completion_field : "completion");
    fprintf(f, "  \"num_labels\": %d,\n", o->num_labels);
    train_print_float_member(f, "beta", o->dpo_beta);
    train_print_float_member(f, "sft_weight", o->sft_weight);
    fprintf(f, "  \"reference\": \"%s\"\n}\n",
            o->reference == MR_DPO_REFERENCE_COPY ? "copy" : "adapter_off");
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

mr_status train_write_config(const mr_train_options *o, mr_error *err) {
    char *text = train_format_config(o);
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
    }
    mr_status status = run_dir_write_config(o->out_dir, text, err);
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
