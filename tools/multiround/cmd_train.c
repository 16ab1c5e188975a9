/*
 * `multiround train sft|rm|classify|dpo|grpo|ppo --config FILE.json`:
 * runs one trainer with the settings of a JSON config file (train.h).
 */
#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "multiround/fileio.h"
#include "multiround/train.h"

static void print_help(void) {
    printf(
        "usage: multiround train KIND [--config FILE.json] [--resume] [--KEY VALUE ...]\n\n"
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
        "  grpo      GRPO over multi-turn episodes of the calculator task, with\n"
        "            config keys of its own (run 'multiround train grpo --help')\n"
        "  ppo       PPO with a value head over the same episodes ('train ppo --help')\n\n"
        "options:\n"
        "  --config FILE  JSON object of the settings below\n"
        "  --KEY VALUE    sets a config key, overriding the file, with - in place of _;\n"
        "                 VALUE is on or off for true or false, JSON when it parses (a\n"
        "                 number, an array), else text; paths and names stay text\n"
        "  --resume       continue from OUT/checkpoint.json when it exists; the settings\n"
        "                 must match OUT/config.json, except that max_steps may grow and\n"
        "                 log_every, eval_every, checkpoint_every and stop_after may\n"
        "                 change. Without it, an OUT with a checkpoint or done is an error.\n"
        "                 Ctrl-C or SIGTERM saves a checkpoint after the current step\n"
        "                 and stops, so that --resume continues from there\n");
    cli_print_shared_options(stdout, 17);
    printf(
        "\nconfig keys (default in brackets; paths relative to the working folder):\n"
        "  model              GGUF file or Hugging Face folder [none: a random model of init]\n"
        "  init               a random model's Hugging Face config.json, as an object or\n"
        "                     the path of the file (or of its folder): vocab_size,\n"
        "                     hidden_size, num_hidden_layers, num_attention_heads,\n"
        "                     intermediate_size, num_key_value_heads [heads], head_dim\n"
        "                     [hidden_size / heads], max_position_embeddings [2048],\n"
        "                     rope_theta [10000], rms_norm_eps [1e-6],\n"
        "                     tie_word_embeddings [false]; as for 'multiround lm init'\n"
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
        "  warmup_steps       steps of linear warm-up, at most max_steps\n"
        "                     [10, or max_steps when smaller]\n"
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
        "  completion_field   sft: the row field learnt after \"prompt\", such as \"chosen\"\n"
        "                     of preference pairs [completion]\n"
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

/* Keys of the init object in the names that multiround used before it
 * took Hugging Face config.json names, with their replacements. */
static const char *const old_init_keys[][2] = {
    {"dim", "hidden_size"},
    {"layers", "num_hidden_layers"},
    {"heads", "num_attention_heads"},
    {"kv_heads", "num_key_value_heads"},
    {"ffn_dim", "intermediate_size"},
    {"context_length", "max_position_embeddings"},
    {"rope_base", "rope_theta"},
    {"rms_eps", "rms_norm_eps"},
    {"tied_output", "tie_word_embeddings"},
};

/* Reads the Hugging Face config.json at path, or in the folder path, as
 * `lm init` does. */
static bool read_init_file(const char *path, mr_llama_config *c) {
    char file[4096];
    struct stat info;
    mr_error err;
    if (stat(path, &info) == 0 && S_ISDIR(info.st_mode)) {
        if (mr_path_join(file, sizeof file, path, "config.json", &err) != MR_OK) {
            cli_error("%s", err.message);
            return false;
        }
        path = file;
    }
    char *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, CLI_CONFIG_MAX_BYTES, (void **)&text, &size, &err);
    if (status == MR_OK) {
        status = mr_llama_config_from_hf_json(text, path, c, &err);
    }
    free(text);
    if (status != MR_OK) {
        cli_error("config key 'init': %s", err.message);
        return false;
    }
    return true;
}

/* Reads the init setting of a random model: an object of Hugging Face
 * config.json keys (model_type "llama" unless the object sets
 * architectures or model_type), or the path of a config.json. */
static bool read_init(const cJSON *init, mr_llama_config *c) {
    if (cJSON_IsString(init)) {
        return read_init_file(init->valuestring, c);
    }
    if (!cJSON_IsObject(init)) {
        return cli_config_wrong_type("init",
                                     "an object of Hugging Face config.json keys or the path of "
                                     "a config.json",
                                     init);
    }
    for (size_t i = 0; i < sizeof old_init_keys / sizeof old_init_keys[0]; i++) {
        if (cJSON_GetObjectItemCaseSensitive(init, old_init_keys[i][0]) != NULL) {
            cli_error("config key 'init.%s' is not a Hugging Face config.json key; use '%s'",
                      old_init_keys[i][0], old_init_keys[i][1]);
            return false;
        }
    }

    cJSON *copy = cJSON_Duplicate(init, true);
    if (copy != NULL && cJSON_GetObjectItemCaseSensitive(copy, "architectures") == NULL &&
        cJSON_GetObjectItemCaseSensitive(copy, "model_type") == NULL) {
        cJSON_AddStringToObject(copy, "model_type", "llama");
    }
    char *text = copy != NULL ? cJSON_PrintUnformatted(copy) : NULL;
    cJSON_Delete(copy);
    if (text == NULL) {
        cli_error("out of memory");
        return false;
    }
    mr_error err;
    mr_status status = mr_llama_config_from_hf_json(text, "the config key 'init'", c, &err);
    free(text);
    if (status != MR_OK) {
        cli_error("%s", err.message);
        return false;
    }
    return true;
}

/* Config keys that take a path or a name, in the order of the fields that
 * apply_plain_key sets. */
static const char *const string_keys[] = {"model",     "tokenizer",     "data",
                                          "eval_data", "out",           "chat_template",
                                          "completion_field"};

/* Applies the config keys whose values are strings, integers or floats.
 * Returns 1 when key is one of them and applied, 0 when it is another
 * key, and -1 (error printed) for a value of the wrong type. */
static int apply_plain_key(const cJSON *item, mr_train_options *o) {
    const char *key = item->string;
    const char **string_fields[] = {&o->model_path, &o->tokenizer_path, &o->data_path,
                                    &o->eval_path,  &o->out_dir,        &o->chat_template,
                                    &o->completion_field};
    for (size_t i = 0; i < sizeof string_keys / sizeof string_keys[0]; i++) {
        if (strcmp(key, string_keys[i]) == 0) {
            if (!cJSON_IsString(item)) {
                cli_config_wrong_type(key, "a string", item);
                return -1;
            }
            /* An empty string, as config.json stores an unset path, is unset. */
            *string_fields[i] = item->valuestring[0] != '\0' ? item->valuestring : NULL;
            return 1;
        }
    }

    static const char *const int_keys[] = {"eval_every_nth", "eval_max_examples", "max_length",
                                           "batch_size",     "grad_accum",        "lora_rank",
                                           "num_labels"};
    int *int_fields[] = {&o->eval_every_nth, &o->eval_max_examples, &o->max_length,
                         &o->batch_size,     &o->grad_accum,        &o->lora_config.rank,
                         &o->num_labels};
    double v = 0.0;
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        if (strcmp(key, int_keys[i]) == 0) {
            if (!cli_config_integer(key, item, INT_MIN, INT_MAX, &v)) {
                return -1;
            }
            *int_fields[i] = (int)v;
            return 1;
        }
    }

    /* Integers of up to 2^53, which a double represents exactly. */
    static const char *const step_keys[] = {"max_steps", "warmup_steps", "log_every",
                                            "eval_every", "checkpoint_every", "stop_after"};
    int64_t *step_fields[] = {&o->max_steps,  &o->warmup_steps,     &o->log_every,
                              &o->eval_every, &o->checkpoint_every, &o->stop_after};
    for (size_t i = 0; i < sizeof step_keys / sizeof step_keys[0]; i++) {
        if (strcmp(key, step_keys[i]) == 0) {
            if (!cli_config_integer(key, item, -9007199254740992.0, 9007199254740992.0, &v)) {
                return -1;
            }
            *step_fields[i] = (int64_t)v;
            return 1;
        }
    }

    static const char *const float_keys[] = {"lr",        "min_lr",     "weight_decay",
                                             "adam_eps",  "clip_norm",  "lora_alpha",
                                             "lora_dropout", "beta",    "sft_weight"};
    float *float_fields[] = {&o->lr,       &o->min_lr,    &o->weight_decay,
                             &o->adam_eps, &o->clip_norm, &o->lora_config.alpha,
                             &o->lora_config.dropout, &o->dpo_beta, &o->sft_weight};
    for (size_t i = 0; i < sizeof float_keys / sizeof float_keys[0]; i++) {
        if (strcmp(key, float_keys[i]) == 0) {
            if (!cJSON_IsNumber(item)) {
                cli_config_wrong_type(key, "a number", item);
                return -1;
            }
            *float_fields[i] = (float)item->valuedouble;
            return 1;
        }
    }
    return 0;
}

/* Reads the lora_targets array, or the bit mask such as "0x05" that a run
 * folder's config.json stores. */
static bool read_targets(const cJSON *item, unsigned *targets) {
    if (cJSON_IsString(item) && strncmp(item->valuestring, "0x", 2) == 0) {
        char *end = NULL;
        unsigned long mask = strtoul(item->valuestring + 2, &end, 16);
        if (end != item->valuestring + 2 && *end == '\0' && mask != 0 && mask <= MR_LORA_ALL) {
            *targets = (unsigned)mask;
            return true;
        }
        cli_error("config key 'lora_targets' is '%s'; give an array of target names",
                  item->valuestring);
        return false;
    }
    if (!cJSON_IsArray(item)) {
        return cli_config_wrong_type("lora_targets", "an array of target names", item);
    }
    *targets = 0;
    const cJSON *name;
    cJSON_ArrayForEach(name, item) {
        if (!cJSON_IsString(name) || !parse_target(name->valuestring, targets)) {
            cli_error("config key 'lora_targets' contains %s%s%s; use q, k, v, o, gate, up, "
                      "down or all",
                      cJSON_IsString(name) ? "the unknown target '" : cli_json_type_name(name),
                      cJSON_IsString(name) ? name->valuestring : "",
                      cJSON_IsString(name) ? "'" : "");
            return false;
        }
    }
    return true;
}

/* Applies one config key to o; false (error printed) for an unknown key
 * or a value of the wrong type. */
static bool apply_key(const cJSON *item, mr_train_options *o) {
    const char *key = item->string;
    int plain = apply_plain_key(item, o);
    if (plain != 0) {
        return plain > 0;
    }

    bool choice = false;
    if (strcmp(key, "adam_beta1") == 0 || strcmp(key, "adam_beta2") == 0) {
        if (!cJSON_IsNumber(item)) {
            return cli_config_wrong_type(key, "a number", item);
        }
        *(key[9] == '1' ? &o->adam_beta1 : &o->adam_beta2) = item->valuedouble;
    } else if (strcmp(key, "seed") == 0) {
        double v = 0.0;
        if (!cli_config_integer(key, item, 0.0, 18446744073709549568.0, &v)) {
            return false;
        }
        o->seed = (uint64_t)v;
    } else if (strcmp(key, "lora") == 0) {
        return cli_config_flag(item, &o->lora);
    } else if (strcmp(key, "pack") == 0) {
        return cli_config_flag(item, &o->pack);
    } else if (strcmp(key, "add_eos") == 0) {
        return cli_config_flag(item, &o->add_eos);
    } else if (strcmp(key, "resume") == 0) {
        return cli_config_flag(item, &o->resume);
    } else if (strcmp(key, "schedule") == 0) {
        if (!cli_config_choice(item, "cosine", "constant", &choice)) {
            return false;
        }
        o->decay = choice ? MR_LR_CONSTANT : MR_LR_COSINE;
    } else if (strcmp(key, "reference") == 0) {
        if (!cli_config_choice(item, "copy", "adapter_off", &choice)) {
            return false;
        }
        o->reference = choice ? MR_DPO_REFERENCE_ADAPTER_OFF : MR_DPO_REFERENCE_COPY;
    } else if (strcmp(key, "init") == 0) {
        return read_init(item, &o->init_config);
    } else if (strcmp(key, "lora_targets") == 0) {
        return read_targets(item, &o->lora_config.targets);
    } else if (strcmp(key, "kind") == 0) {
        /* A run folder's config.json names its trainer, which must be this one. */
        const char *kind = mr_train_kind_name(o->kind);
        if (!cJSON_IsString(item)) {
            return cli_config_wrong_type(key, "a string", item);
        }
        if (strcmp(item->valuestring, kind) != 0) {
            cli_error("config key 'kind' is '%s', but this is 'train %s'; drop the key or run "
                      "that trainer",
                      item->valuestring, kind);
            return false;
        }
    } else {
        cli_error("config key '%s' is unknown; run 'multiround train --help' for the keys",
                  key);
        return false;
    }
    return true;
}

/* Options on the command line that may set config keys. */
#define MAX_KEY_OPTIONS 64

/*
 * Sets config key KEY from the option --KEY (with - in place of _) to
 * value, replacing the file's entry. A key that takes a path or a name
 * gets the value as text. Otherwise "on" and "off" are true and false,
 * and another value is read as JSON when it parses as JSON (a number, an
 * array), else it is taken as text.
 * Returns false (error printed) when memory runs out.
 */
static bool set_key_option(cJSON *config, const char *option, const char *value) {
    char key[64];
    snprintf(key, sizeof key, "%s", option + 2);
    for (char *c = key; *c != '\0'; c++) {
        if (*c == '-') {
            *c = '_';
        }
    }

    /* Keys that only take text keep a value such as "2024" as text: the
     * string keys and the two that take a name from a choice. */
    bool text = strcmp(key, "schedule") == 0 || strcmp(key, "reference") == 0;
    for (size_t i = 0; i < sizeof string_keys / sizeof string_keys[0]; i++) {
        text = text || strcmp(key, string_keys[i]) == 0;
    }

    cJSON *item = NULL;
    if (text) {
        item = cJSON_CreateString(value);
    } else if (strcmp(value, "on") == 0 || strcmp(value, "off") == 0) {
        item = cJSON_CreateBool(value[1] == 'n');
    } else {
        item = cJSON_ParseWithOpts(value, NULL, true);
        if (item == NULL) {
            item = cJSON_CreateString(value);
        }
    }
    if (item == NULL) {
        cli_error("out of memory reading %s", option);
        return false;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(config, key);
    cJSON_AddItemToObject(config, key, item);
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
    if (argc < 2) {
        cli_error("train needs a KIND: sft, rm, classify, dpo, grpo or ppo");
    }
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
        cli_error("unknown trainer '%s'; use sft, rm, classify, dpo, grpo or ppo", kind_name);
        return 2;
    }

    const char *config_path = NULL;
    bool resume = false;
    int key_options[MAX_KEY_OPTIONS]; /* argv index of each --KEY, its value following */
    int n_key_options = 0;
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
        } else if (strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0') {
            if (i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0) {
                cli_error("%s needs a value; run 'multiround train --help'", argv[i]);
                return 2;
            }
            if (n_key_options == MAX_KEY_OPTIONS) {
                cli_error("more than %d options set config keys; put the settings in a "
                          "--config file",
                          MAX_KEY_OPTIONS);
                return 2;
            }
            key_options[n_key_options++] = i++;
        } else {
            cli_error("unknown option '%s'; run 'multiround train --help'", argv[i]);
            return 2;
        }
    }
    if (config_path == NULL && n_key_options == 0) {
        cli_error("train %s needs --config FILE.json or --KEY VALUE options; run "
                  "'multiround train --help'",
                  kind_name);
        return 2;
    }

    cJSON *config = NULL;
    if (config_path != NULL) {
        config = cli_config_read(config_path);
    } else if ((config = cJSON_CreateObject()) == NULL) {
        cli_error("out of memory");
    }
    if (config == NULL) {
        return 1;
    }
    for (int k = 0; k < n_key_options; k++) {
        int at = key_options[k];
        if (!set_key_option(config, argv[at], argv[at + 1])) {
            cJSON_Delete(config);
            return 1;
        }
    }
    mr_error err;
    mr_train_options o;
    mr_train_options_default(&o, kind);
    const cJSON *item;
    bool ok = true;
    cJSON_ArrayForEach(item, config) {
        /* Every key is applied, so that one run reports every bad key. */
        ok = apply_key(item, &o) && ok;
    }
    o.resume = o.resume || resume;

    int code = 2;
    if (ok) {
        mr_train_result result;
        o.stop = cli_stop_requested;
        cli_catch_stop_signals();
        mr_status status = mr_train_run(&o, &result, &err);
        if (status == MR_ERR_INTERRUPTED) {
            cli_error("%s", err.message);
            code = cli_exit_by_stop_signal();
        } else if (status != MR_OK) {
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
