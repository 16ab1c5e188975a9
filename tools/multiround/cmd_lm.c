/*
 * `multiround lm`: language-model files. Subcommands:
 *
 *   convert  converts between GGUF files and Hugging Face folders
 *   info     prints a model's architecture, sizes, storage and tokenizer,
 *            or the settings of a PEFT LoRA adapter folder
 *   init     writes a randomly initialised model from a config.json
 *   merge    writes a model with a PEFT LoRA adapter merged into its weights
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "cli.h"
#include "multiround/fileio.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/lora.h"

/* Largest config file `lm init` reads. */
#define INIT_CONFIG_MAX_BYTES (1u << 20)

static void print_help(FILE *out) {
    fprintf(out,
            "usage: multiround lm COMMAND [OPTIONS]\n\n"
            "commands:\n"
            "  convert IN OUT [--type TYPE]\n"
            "      Converts a model between a GGUF file and a Hugging Face folder, in\n"
            "      either direction. OUT ending in .gguf is written as GGUF, anything\n"
            "      else as a folder (config.json, model.safetensors). --type sets the\n"
            "      storage of matrices: f32, f16, bf16, q8_0 or q4_0 (GGUF only);\n"
            "      default: the type of the input's token embedding.\n"
            "  info MODEL\n"
            "      Prints the architecture, sizes, parameter count, tensor types and\n"
            "      bytes, and the tokenizer keys or files present. For a PEFT LoRA\n"
            "      adapter folder (adapter_config.json), prints its rank, alpha,\n"
            "      dropout, target modules and base model.\n"
            "  init --config FILE.json --out MODEL [--seed S]\n"
            "      Writes a model with random F32 weights (normal(0, 0.02) matrices)\n"
            "      for a Hugging Face config.json. MODEL ending in .gguf is a GGUF\n"
            "      file, anything else a folder. --seed: integer, default 0.\n"
            "  merge -m MODEL --lora DIR --out OUT [--type TYPE]\n"
            "      Writes MODEL (GGUF file or Hugging Face folder) with the PEFT LoRA\n"
            "      adapter in DIR merged into its weights: W + (alpha / r) B A. OUT and\n"
            "      --type work as for convert; default type: that of MODEL's token\n"
            "      embedding.\n"
            "  score -m MODEL --data FILE.jsonl\n"
            "      Prints the log-probability of each {\"prompt\", \"completion\"} line's\n"
            "      completion as JSON Lines ('multiround lm score --help').\n"
            "\noptions:\n");
    cli_print_shared_options(out, 16);
}

/* Parses the options after the subcommand's positional arguments. Stores
 * the values of --type, --config, --out and --seed; returns -1 to go on, or
 * an exit code. */
typedef struct lm_options {
    const char *positional[2];
    int positional_count;
    const char *type;
    const char *config;
    const char *out;
    const char *model;
    const char *lora;
    int64_t seed;
} lm_options;

static int parse_options(int argc, char **argv, const char *command, lm_options *options) {
    memset(options, 0, sizeof *options);
    for (int i = 2; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_help(stdout);
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }
        const char **value = NULL;
        if (strcmp(option, "--type") == 0) {
            value = &options->type;
        } else if (strcmp(option, "--config") == 0) {
            value = &options->config;
        } else if (strcmp(option, "--out") == 0) {
            value = &options->out;
        } else if (strcmp(option, "-m") == 0 || strcmp(option, "--model") == 0) {
            value = &options->model;
        } else if (strcmp(option, "--lora") == 0) {
            value = &options->lora;
        } else if (strcmp(option, "--seed") == 0) {
            if (i + 1 >= argc ||
                !cli_parse_int64("--seed", argv[i + 1], 0, INT64_MAX, &options->seed)) {
                if (i + 1 >= argc) {
                    cli_error("--seed needs a value");
                }
                return 2;
            }
            i++;
            continue;
        } else if (option[0] == '-' && option[1] != '\0') {
            cli_error("unknown option '%s' for lm %s; run 'multiround lm --help'", option,
                      command);
            return 2;
        } else if (options->positional_count < 2) {
            options->positional[options->positional_count++] = option;
            continue;
        } else {
            cli_error("unexpected argument '%s' for lm %s", option, command);
            return 2;
        }
        if (i + 1 >= argc) {
            cli_error("%s needs a value", option);
            return 2;
        }
        *value = argv[++i];
    }
    return -1;
}

static bool is_directory(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

/* ------------------------------------------------------------------------ */

static int run_convert(const lm_options *options) {
    if (options->positional_count != 2) {
        cli_error("lm convert needs IN and OUT; run 'multiround lm --help'");
        return 2;
    }
    mr_qtype type;
    if (options->type != NULL && !mr_qtype_parse(options->type, &type)) {
        cli_error("--type must be f32, f16, bf16, q8_0 or q4_0, got '%s'", options->type);
        return 2;
    }
    mr_error err = {0};
    if (mr_llama_convert(options->positional[0], options->positional[1],
                         options->type != NULL ? &type : NULL, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    printf("wrote %s\n", options->positional[1]);
    return 0;
}

/* Prints the tensor count and bytes per storage type. */
static void print_storage(const mr_llama *model) {
    static const mr_qtype types[] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16, MR_QTYPE_Q8_0,
                                     MR_QTYPE_Q4_0};
    double total = 0.0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int count = 0;
        double bytes = 0.0;
        for (int i = 0; i < mr_llama_weight_count(model); i++) {
            const mr_llama_weight *w = mr_llama_weight_at(model, i);
            if (w->type == types[k]) {
                count++;
                bytes += (double)mr_qtype_row_bytes(w->type, w->ne[0]) * (double)w->ne[1];
            }
        }
        if (count > 0) {
            printf("  %-5s %4d tensors  %12.0f bytes\n", mr_qtype_name(types[k]), count, bytes);
        }
        total += bytes;
    }
    printf("  total %4d tensors  %12.0f bytes (%.2f MiB)\n", mr_llama_weight_count(model), total,
           total / 1048576.0);
}

/* Prints the tokenizer.* keys of a GGUF file with their types and sizes. */
static void print_tokenizer_keys(const char *path) {
    mr_gguf *gguf = NULL;
    if (mr_gguf_open(path, &gguf, NULL) != MR_OK) {
        return;
    }
    int listed = 0;
    for (int64_t i = 0; i < mr_gguf_kv_count(gguf); i++) {
        const char *key = mr_gguf_kv_key(gguf, i);
        if (strncmp(key, "tokenizer.", 10) != 0) {
            continue;
        }
        mr_gguf_type type = mr_gguf_kv_type(gguf, i);
        if (type == MR_GGUF_ARRAY) {
            mr_gguf_type elem;
            int64_t count = 0;
            const void *data = NULL;
            mr_gguf_get_array(gguf, key, &elem, &count, &data, NULL);
            printf("  %s: array of %" PRId64 " %s\n", key, count, mr_gguf_type_name(elem));
        } else {
            printf("  %s: %s\n", key, mr_gguf_type_name(type));
        }
        listed++;
    }
    if (listed == 0) {
        printf("  (no tokenizer.* keys in %s)\n", path);
    }
    mr_gguf_close(gguf);
}

/* Prints the tokenizer files of a Hugging Face folder. */
static void print_tokenizer_files(const char *dir) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "tokenizer.model",
                                        "tokenizer.gguf"};
    int listed = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        struct stat info;
        if (stat(path, &info) == 0) {
            printf("  %s (%lld bytes)\n", files[i], (long long)info.st_size);
            listed++;
            if (strcmp(files[i], "tokenizer.gguf") == 0) {
                print_tokenizer_keys(path);
            }
        }
    }
    if (listed == 0) {
        printf("  (no tokenizer files)\n");
    }
}

/* Largest adapter_config.json that `lm info` reads. */
#define ADAPTER_CONFIG_MAX_BYTES (1u << 20)

/* Prints the settings of the PEFT adapter folder dir from its
 * adapter_config.json. Returns the exit code. */
static int print_adapter_info(const char *dir, const char *config_path) {
    void *text = NULL;
    size_t size = 0;
    mr_error err = {0};
    if (mr_file_read_all(config_path, ADAPTER_CONFIG_MAX_BYTES, &text, &size, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    cJSON *json = cJSON_ParseWithLength(text, size);
    free(text);
    if (!cJSON_IsObject(json)) {
        cli_error("%s is not a JSON object", config_path);
        cJSON_Delete(json);
        return 1;
    }

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(json, "peft_type");
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(json, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(json, "lora_alpha");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(json, "lora_dropout");
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(json, "target_modules");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(json, "base_model_name_or_path");
    printf("adapter: %s (PEFT %s)\n", dir, cJSON_IsString(type) ? type->valuestring : "?");
    if (cJSON_IsNumber(rank) && cJSON_IsNumber(alpha) && rank->valuedouble > 0) {
        printf("rank: %g\nalpha: %g (scale alpha / r = %g)\n", rank->valuedouble,
               alpha->valuedouble, alpha->valuedouble / rank->valuedouble);
    } else {
        printf("rank: %s\nalpha: %s\n", cJSON_IsNumber(rank) ? "invalid" : "missing",
               cJSON_IsNumber(alpha) ? "see rank" : "missing");
    }
    if (cJSON_IsNumber(dropout)) {
        printf("dropout: %g\n", dropout->valuedouble);
    }
    printf("targets:");
    if (cJSON_IsString(targets)) {
        printf(" %s", targets->valuestring);
    }
    const cJSON *target = NULL;
    const cJSON *target_list = cJSON_IsArray(targets) ? targets : NULL;
    cJSON_ArrayForEach(target, target_list) {
        printf(" %s", cJSON_IsString(target) ? target->valuestring : "?");
    }
    printf("%s\n", targets == NULL ? " missing" : "");
    printf("base model: %s\n", cJSON_IsString(base) ? base->valuestring : "not recorded");
    cJSON_Delete(json);

    char weights[4096];
    snprintf(weights, sizeof weights, "%s/adapter_model.safetensors", dir);
    struct stat info;
    if (stat(weights, &info) == 0) {
        printf("weights: adapter_model.safetensors (%lld bytes)\n", (long long)info.st_size);
    } else {
        printf("weights: adapter_model.safetensors is missing\n");
    }
    printf("apply it with --lora %s (generate, serve, chat, lm score) or 'lm merge'\n", dir);
    return 0;
}

static int run_info(const lm_options *options) {
    if (options->positional_count != 1) {
        cli_error("lm info needs one MODEL (a GGUF file or a Hugging Face folder)");
        return 2;
    }
    const char *path = options->positional[0];
    struct stat path_info;
    if (stat(path, &path_info) != 0) {
        cli_error("cannot open model %s: %s", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(path_info.st_mode)) {
        char adapter_config[4096];
        snprintf(adapter_config, sizeof adapter_config, "%s/adapter_config.json", path);
        if (stat(adapter_config, &path_info) == 0) {
            return print_adapter_info(path, adapter_config);
        }
    } else if (!cli_check_input_file("model", path)) {
        return 1;
    }
    mr_error err = {0};
    mr_llama *model = mr_llama_load(path, &err);
    if (model == NULL) {
        cli_error("%s", err.message);
        return 1;
    }
    const mr_llama_config *c = mr_llama_get_config(model);
    bool folder = is_directory(path);
    /* The names the writers use: llama_hf.c picks the folder's family by
     * the biases, llama_gguf.c the GGUF architecture by the rope layout. */
    const char *arch = folder ? (c->qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM")
                              : (c->rope_layout == MR_ROPE_ADJACENT ? "llama" : "qwen2");

    printf("model: %s (%s)\n", path, folder ? "Hugging Face folder" : "GGUF file");
    printf("architecture: %s, %s rope in memory\n", arch,
           c->rope_layout == MR_ROPE_ADJACENT ? "adjacent-pair" : "split-half");
    printf("vocabulary: %d\nwidth: %d\nlayers: %d\nheads: %d query, %d key/value, width %d\n",
           c->vocab_size, c->dim, c->layers, c->heads, c->kv_heads, c->head_dim);
    printf("feed-forward width: %d\ncontext length: %d\nrope theta: %g\nrms eps: %g\n",
           c->ffn_dim, c->context_length, (double)c->rope_base, (double)c->rms_eps);
    printf("q/k/v biases: %s\ntied output: %s\n", c->qkv_bias ? "yes" : "no",
           c->tied_output ? "yes" : "no");

    int64_t params = mr_llama_param_count(model);
    printf("parameters: %" PRId64 " (%.3f M)\n", params, (double)params / 1e6);
    printf("storage:\n");
    print_storage(model);
    printf("tokenizer:\n");
    if (folder) {
        print_tokenizer_files(path);
    } else {
        print_tokenizer_keys(path);
    }
    mr_llama_free(model);
    return 0;
}

static bool ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

static int run_init(const lm_options *options) {
    if (options->config == NULL || options->out == NULL || options->positional_count != 0) {
        cli_error("lm init needs --config FILE.json and --out MODEL; run 'multiround lm "
                  "--help'");
        return 2;
    }
    void *text = NULL;
    size_t size = 0;
    mr_error err = {0};
    mr_llama_config config;
    if (mr_file_read_all(options->config, INIT_CONFIG_MAX_BYTES, &text, &size, &err) != MR_OK ||
        mr_llama_config_from_hf_json(text, options->config, &config, &err) != MR_OK) {
        free(text);
        cli_error("%s", err.message);
        return 1;
    }
    free(text);

    mr_llama *model = mr_llama_init(&config, (uint64_t)options->seed, &err);
    mr_status status = model == NULL ? err.status : MR_OK;
    if (status == MR_OK && ends_with(options->out, ".gguf")) {
        status = mr_llama_save_gguf(model, options->out, MR_QTYPE_F32, NULL, &err);
    } else if (status == MR_OK) {
        status = mr_llama_save_hf(model, options->out, MR_QTYPE_F32, NULL, NULL, &err);
    }
    if (status != MR_OK) {
        cli_error("%s", err.message);
        mr_llama_free(model);
        return 1;
    }
    printf("wrote %s: %" PRId64 " parameters, seed %" PRId64 "\n", options->out,
           mr_llama_param_count(model), options->seed);
    mr_llama_free(model);
    return 0;
}

static int run_merge(const lm_options *options) {
    if (options->model == NULL || options->lora == NULL || options->out == NULL ||
        options->positional_count != 0) {
        cli_error("lm merge needs -m MODEL, --lora DIR and --out OUT; run 'multiround lm "
                  "--help'");
        return 2;
    }
    mr_qtype type;
    if (options->type != NULL && !mr_qtype_parse(options->type, &type)) {
        cli_error("--type must be f32, f16, bf16, q8_0 or q4_0, got '%s'", options->type);
        return 2;
    }
    struct stat info;
    if (stat(options->model, &info) != 0) {
        cli_error("cannot open model %s: %s", options->model, strerror(errno));
        return 1;
    }
    mr_error err = {0};
    if (mr_lora_merge_file(options->model, options->lora, options->out,
                           options->type != NULL ? &type : NULL, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    printf("wrote %s: %s with the adapter %s merged\n", options->out, options->model,
           options->lora);
    return 0;
}

int cli_lm(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *command = argv[1];
    if (strcmp(command, "score") == 0) {
        return cli_lm_score(argc - 1, argv + 1);
    }
    lm_options options;
    int code = parse_options(argc, argv, command, &options);
    if (code >= 0) {
        return code;
    }
    if (strcmp(command, "convert") == 0) {
        return run_convert(&options);
    }
    if (strcmp(command, "info") == 0) {
        return run_info(&options);
    }
    if (strcmp(command, "init") == 0) {
        return run_init(&options);
    }
    if (strcmp(command, "merge") == 0) {
        return run_merge(&options);
    }
    cli_error("unknown lm command '%s'; run 'multiround lm --help'", command);
    return 2;
}
