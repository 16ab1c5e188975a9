/*
 * `multiround train sft|rm|classify|dpo|grpo|ppo --config FILE.json`:
 * runs one trainer with the settings of a JSON config file (train.h).
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "multiround/fileio.h"
#include "multiround/train.h"

/* Config files larger than this are rejected. */
#define CONFIG_MAX_BYTES (1u << 20)

static void print_help(void) {
    printf(
        "usage: multiround train KIND --config FILE.json [--resume] [OPTIONS]\n\n"
        "Trains a Llama-family model. KIND is one of:\n"
        "  sft       supervised fine-tuning on {\"prompt\",\"completion\"} or\n"
        "            {\"messages\":[{\"role\",\"content\"},...]} rows; the loss counts the\n"
        "            completion (or assistant turns) only\n"
        "  rm        reward model: a Linear head dim -> 1 on the last token, Bradley-Terry\n"
        "            loss on {\"prompt\",\"chosen\",\"rejected\"} rows\n"
        "  classify  classifier: a Linear head dim -> num_labels, cross-entropy on\n"
        "            {\"text\",\"label\"} rows\n"
        "  dpo       DPO (sigmoid loss) on {\"prompt\",\"chosen\",\"rejected\"} rows with an\n"
        "            optional \"ground_truth\" completion for the NLL term\n"
        "  grpo      GRPO over multi-turn episodes of the calculator task; takes its\n"
        "            own options (run 'multiround train grpo --help')\n"
        "  ppo       PPO with a value head over the same episodes ('train ppo --help')\n\n"
        "options:\n"
        "  --config FILE  JSON object of the settings below (required)\n"
        "  --resume       continue from OUT/checkpoint.json when it exists\n");
    cli_print_shared_options(stdout);
    printf(
        "\nconfig keys (default in brackets; paths relative to the working folder):\n"
        "  model              GGUF file or Hugging Face folder [none: a random model of init]\n"
        "  init               {vocab_size, dim, layers, heads, kv_heads, head_dim, ffn_dim,\n"
        "                     context_length, rope_base [10000], rms_eps [1e-5],\n"
        "                     tied_output [false]} of a random model\n"
        "  tokenizer          GGUF file or tokenizer.json [the model's own]\n"
        "  data               training JSON Lines file (required)\n"
        "  eval_data          held-out JSON Lines file [none]\n"
        "  eval_every_nth     without eval_data, hold out rows i with i %% N == N-1 [0: none]\n"
        "  eval_max_examples  held-out examples evaluated at most [0: all]\n"
        "  max_length         tokens per sequence; longer prompts lose their start [256]\n"
        "  out                run folder (required)\n"
        "  seed               seed of the data order, head and adapter [1]\n"
        "  max_steps          optimizer steps [100]\n"
        "  batch_size         examples per micro-batch [8]\n"
        "  grad_accum         micro-batches per step [1]\n"
        "  lr                 peak learning rate [1e-4; dpo 5e-6]\n"
        "  min_lr             learning rate at the end of the cosine [0]\n"
        "  warmup_steps       steps of linear warm-up [10]\n"
        "  schedule           \"cosine\" or \"constant\" after warm-up [cosine]\n"
        "  weight_decay       AdamW decay of matrices; norms and biases get none [0.01]\n"
        "  adam_beta1, adam_beta2, adam_eps   [0.9, 0.999, 1e-8]\n"
        "  clip_norm          maximum gradient L2 norm, 0 for none [1]\n"
        "  lora               train a LoRA adapter instead of every weight [false]\n"
        "  lora_rank, lora_alpha, lora_dropout   [8, 16, 0]\n"
        "  lora_targets       array of \"q\",\"k\",\"v\",\"o\",\"gate\",\"up\",\"down\" or \"all\"\n"
        "                     [[\"q\",\"v\"]]\n"
        "  log_every          steps between metrics lines [1]\n"
        "  eval_every         steps between evaluations; also after the last [50]\n"
        "  checkpoint_every   steps between checkpoints; also after the last [50]\n"
        "  stop_after         stop after this step as if killed [0: never]\n"
        "  pack               sft: join short examples into max_length rows; attention\n"
        "                     then crosses examples [false]\n"
        "  chat_template      \"chatml\", \"llama3\" or \"llama2\" [from the GGUF]\n"
        "  add_eos            append EOS to completions [true]\n"
        "  num_labels         classify: number of classes [2]\n"
        "  beta               dpo: beta of the sigmoid loss [0.1]\n"
        "  reference          dpo: \"copy\" (frozen copy) or \"adapter_off\" (needs lora) [copy]\n"
        "  sft_weight         dpo: weight of the NLL of ground_truth, else chosen [0]\n\n"
        "Outputs in OUT: config.json, metrics.jsonl, checkpoints/, model.gguf (or model/\n"
        "for a Hugging Face model), adapter/ with lora, head.safetensors for rm and\n"
        "classify, and done. Plot the metrics with 'multiround plot OUT'.\n");
}

/* Parses a LoRA target name. */
static bool parse_target(const char *name, unsigned *out) {
    static const struct {
        const char *name;
        unsigned value;
    } names[] = {{"q", MR_LORA_Q},       {"k", MR_LORA_K},   {"v", MR_LORA_V},
                 {"o", MR_LORA_O},       {"gate", MR_LORA_GATE}, {"up", MR_LORA_UP},
                 {"down", MR_LORA_DOWN}, {"all", MR_LORA_ALL}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(names[i].name, name) == 0) {
            *out |= names[i].value;
            return true;
        }
    }
    return false;
}

/* Reads the init object of a random model. */
static bool read_init(const cJSON *init, mr_llama_config *c) {
    c->rope_base = 10000.0f;
    c->rms_eps = 1e-5f;
    c->rope_layout = MR_ROPE_ADJACENT;
    int *fields[] = {&c->vocab_size, &c->dim,      &c->layers,  &c->heads,
                     &c->kv_heads,   &c->head_dim, &c->ffn_dim, &c->context_length};
    static const char *const names[] = {"vocab_size", "dim",      "layers",  "heads",
                                        "kv_heads",   "head_dim", "ffn_dim", "context_length"};
    const cJSON *item;
    cJSON_ArrayForEach(item, init) {
        bool known = false;
        for (int i = 0; i < 8; i++) {
            if (strcmp(item->string, names[i]) == 0 && cJSON_IsNumber(item)) {
                *fields[i] = (int)item->valuedouble;
                known = true;
            }
        }
        if (strcmp(item->string, "rope_base") == 0 && cJSON_IsNumber(item)) {
            c->rope_base = (float)item->valuedouble;
            known = true;
        } else if (strcmp(item->string, "rms_eps") == 0 && cJSON_IsNumber(item)) {
            c->rms_eps = (float)item->valuedouble;
            known = true;
        } else if (strcmp(item->string, "tied_output") == 0 && cJSON_IsBool(item)) {
            c->tied_output = cJSON_IsTrue(item);
            known = true;
        }
        if (!known) {
            cli_error("config: unknown or mistyped key init.%s", item->string);
            return false;
        }
    }
    return true;
}

/* Applies one config key to o; false (error printed) for an unknown key
 * or a value of the wrong type. */
static bool apply_key(const cJSON *item, mr_train_options *o) {
    const char *key = item->string;
    const char *text = cJSON_IsString(item) ? item->valuestring : NULL;
    bool number = cJSON_IsNumber(item), flag = cJSON_IsBool(item);
    double v = number ? item->valuedouble : 0.0;

    static const char *const string_keys[] = {"model", "tokenizer", "data", "eval_data", "out",
                                              "chat_template"};
    const char **string_fields[] = {&o->model_path, &o->tokenizer_path, &o->data_path,
                                    &o->eval_path,  &o->out_dir,        &o->chat_template};
    for (int i = 0; i < 6; i++) {
        if (strcmp(key, string_keys[i]) == 0 && text != NULL) {
            *string_fields[i] = text;
            return true;
        }
    }
    static const char *const int_keys[] = {"eval_every_nth", "eval_max_examples", "max_length",
                                           "batch_size",     "grad_accum",        "lora_rank",
                                           "num_labels"};
    int *int_fields[] = {&o->eval_every_nth, &o->eval_max_examples, &o->max_length,
                         &o->batch_size,     &o->grad_accum,        &o->lora_config.rank,
                         &o->num_labels};
    for (int i = 0; i < 7; i++) {
        if (strcmp(key, int_keys[i]) == 0 && number) {
            *int_fields[i] = (int)v;
            return true;
        }
    }
    static const char *const step_keys[] = {"max_steps", "warmup_steps", "log_every",
                                            "eval_every", "checkpoint_every", "stop_after"};
    int64_t *step_fields[] = {&o->max_steps,  &o->warmup_steps,     &o->log_every,
                              &o->eval_every, &o->checkpoint_every, &o->stop_after};
    for (int i = 0; i < 6; i++) {
        if (strcmp(key, step_keys[i]) == 0 && number) {
            *step_fields[i] = (int64_t)v;
            return true;
        }
    }
    static const char *const float_keys[] = {"lr",        "min_lr",     "weight_decay",
                                             "adam_eps",  "clip_norm",  "lora_alpha",
                                             "lora_dropout", "beta",    "sft_weight"};
    float *float_fields[] = {&o->lr,       &o->min_lr,    &o->weight_decay,
                             &o->adam_eps, &o->clip_norm, &o->lora_config.alpha,
                             &o->lora_config.dropout, &o->dpo_beta, &o->sft_weight};
    for (int i = 0; i < 9; i++) {
        if (strcmp(key, float_keys[i]) == 0 && number) {
            *float_fields[i] = (float)v;
            return true;
        }
    }
    if (strcmp(key, "adam_beta1") == 0 && number) {
        o->adam_beta1 = v;
    } else if (strcmp(key, "adam_beta2") == 0 && number) {
        o->adam_beta2 = v;
    } else if (strcmp(key, "seed") == 0 && number && v >= 0) {
        o->seed = (uint64_t)v;
    } else if (strcmp(key, "lora") == 0 && flag) {
        o->lora = cJSON_IsTrue(item);
    } else if (strcmp(key, "pack") == 0 && flag) {
        o->pack = cJSON_IsTrue(item);
    } else if (strcmp(key, "add_eos") == 0 && flag) {
        o->add_eos = cJSON_IsTrue(item);
    } else if (strcmp(key, "resume") == 0 && flag) {
        o->resume = cJSON_IsTrue(item);
    } else if (strcmp(key, "schedule") == 0 && text != NULL &&
               (strcmp(text, "cosine") == 0 || strcmp(text, "constant") == 0)) {
        o->decay = strcmp(text, "cosine") == 0 ? MR_LR_COSINE : MR_LR_CONSTANT;
    } else if (strcmp(key, "reference") == 0 && text != NULL &&
               (strcmp(text, "copy") == 0 || strcmp(text, "adapter_off") == 0)) {
        o->reference = strcmp(text, "copy") == 0 ? MR_DPO_REFERENCE_COPY
                                                 : MR_DPO_REFERENCE_ADAPTER_OFF;
    } else if (strcmp(key, "init") == 0 && cJSON_IsObject(item)) {
        return read_init(item, &o->init_config);
    } else if (strcmp(key, "lora_targets") == 0 && cJSON_IsArray(item)) {
        o->lora_config.targets = 0;
        const cJSON *name;
        cJSON_ArrayForEach(name, item) {
            if (!cJSON_IsString(name) || !parse_target(name->valuestring, &o->lora_config.targets)) {
                cli_error("config: lora_targets holds an unknown target; use q, k, v, o, gate, "
                          "up, down or all");
                return false;
            }
        }
    } else {
        cli_error("config: unknown key '%s' or a value of the wrong type; run 'multiround "
                  "train --help'",
                  key);
        return false;
    }
    return true;
}

/* Parses a kind name; false for grpo, ppo (handled before) and unknown names. */
static bool parse_kind(const char *name, mr_train_kind *kind) {
    static const mr_train_kind kinds[] = {MR_TRAIN_SFT, MR_TRAIN_REWARD, MR_TRAIN_CLASSIFY,
                                          MR_TRAIN_DPO};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(name, mr_train_kind_name(kinds[i])) == 0) {
            *kind = kinds[i];
            return true;
        }
    }
    return false;
}

int cli_train(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    const char *kind_name = argv[1];
    if (strcmp(kind_name, "grpo") == 0) {
        return cli_train_grpo(argc - 1, argv + 1);
    }
    if (strcmp(kind_name, "ppo") == 0) {
        return cli_train_ppo(argc - 1, argv + 1);
    }
    mr_train_kind kind;
    if (!parse_kind(kind_name, &kind)) {
        cli_error("unknown trainer '%s'; use sft, rm, classify or dpo", kind_name);
        return 2;
    }

    const char *config_path = NULL;
    bool resume = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--resume") == 0) {
            resume = true;
        } else {
            cli_error("unknown option '%s'; run 'multiround train --help'", argv[i]);
            return 2;
        }
    }
    if (config_path == NULL) {
        cli_error("train %s needs --config FILE.json", kind_name);
        return 2;
    }

    char *text = NULL;
    size_t size = 0;
    mr_error err;
    if (mr_file_read_all(config_path, CONFIG_MAX_BYTES, (void **)&text, &size, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    cJSON *config = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(config)) {
        cli_error("%s: not a JSON object", config_path);
        cJSON_Delete(config);
        return 1;
    }
    mr_train_options o;
    mr_train_options_default(&o, kind);
    const cJSON *item;
    bool ok = true;
    cJSON_ArrayForEach(item, config) {
        ok = ok && apply_key(item, &o);
    }
    o.resume = o.resume || resume;

    int code = 2;
    if (ok) {
        mr_train_result result;
        if (mr_train_run(&o, &result, &err) != MR_OK) {
            cli_error("train %s failed: %s", kind_name, err.message);
            code = 1;
        } else {
            const char *names[] = {"loss", "eval_loss_start", "eval_loss",
                                   "eval_accuracy_start", "eval_accuracy"};
            double values[] = {result.last_loss, result.eval_loss_start, result.eval_loss,
                               result.eval_accuracy_start, result.eval_accuracy};
            printf("{\"steps\": %lld", (long long)result.steps);
            for (int i = 0; i < 5; i++) {
                /* JSON has no NaN: a figure the run does not have is null. */
                if (isnan(values[i])) {
                    printf(", \"%s\": null", names[i]);
                } else {
                    printf(", \"%s\": %.6g", names[i], values[i]);
                }
            }
            printf("}\n");
            code = 0;
        }
    }
    cJSON_Delete(config);
    return code;
}
