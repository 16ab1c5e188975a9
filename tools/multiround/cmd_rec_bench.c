/*
 * `multiround rec bench`: times recommender training steps and one
 * full-ranking test evaluation, and prints the figures as one JSON line
 * with the same fields as the PyTorch peer (bench/rec/torch_rec.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cJSON.h>

#include "cli.h"
#include "multiround/rec.h"

static void print_bench_help(void) {
    printf("usage: multiround rec bench --data FILE [OPTIONS]\n\n"
           "Times training steps and one full-ranking evaluation of the test split, as\n"
           "`rec train` runs them, without writing a run folder, and prints one JSON\n"
           "line: examples per second, milliseconds per step, evaluation seconds and\n"
           "the peak resident memory of the process.\n\n"
           "options:\n"
           "  --data FILE         dataset file (required)\n"
           "  --backbone NAME     gru4rec, sasrec, nextitnet, srgnn or fmlprec\n"
           "                      (default: sasrec)\n"
           "  --ada               add Ada-Retrieval's adapters\n"
           "  --ada-zero-padding  with --ada: keep padding positions at zero after the\n"
           "                      item adapter (see rec train --help)\n"
           "  --init DIR          base run folder whose best model initialises the\n"
           "                      shared weights (default: none, fresh weights)\n"
           "  --steps N           timed training steps (default: 30)\n"
           "  --warmup-steps N    untimed steps before them (default: 3)\n"
           "  --batch-size N      training examples per step (default: 1024)\n"
           "  --seed S            seed of the weights, order and negatives\n"
           "                      (default: 366849)\n");
    cli_print_shared_options(stdout, 22);
}

/* Peak resident memory of this process in MiB. */
static double peak_rss_mib(void) {
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0) {
        return 0.0;
    }
    return (double)usage.ru_maxrss / 1024.0; /* Linux reports KiB */
}

/* Prints the result and the settings as one JSON line on stdout. */
static void print_result(const mr_rec_data *data, const mr_rec_config *config,
                         const mr_rec_train_options *options, int warmup, int steps,
                         double load_seconds, const mr_rec_bench_result *r) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "impl", "multiround");
    cJSON_AddStringToObject(json, "mode", "bench");
    cJSON_AddNumberToObject(json, "threads", mr_threads_get());
    cJSON_AddStringToObject(json, "blas", mr_blas_name());
    cJSON *d = cJSON_AddObjectToObject(json, "data");
    cJSON_AddStringToObject(d, "path", data->path);
    cJSON_AddNumberToObject(d, "sequences", (double)data->n_sequences);
    cJSON_AddNumberToObject(d, "n_items", data->n_items);
    cJSON_AddNumberToObject(d, "train_examples", (double)data->n_train);
    cJSON *c = cJSON_AddObjectToObject(json, "config");
    cJSON_AddStringToObject(c, "backbone", mr_rec_backbone_name(config->backbone));
    cJSON_AddBoolToObject(c, "ada", config->ada);
    cJSON_AddBoolToObject(c, "ada_zero_padding", config->ada_zero_padding);
    cJSON_AddStringToObject(c, "init", options->init_dir != NULL ? options->init_dir : "");
    cJSON_AddNumberToObject(c, "dim", config->dim);
    cJSON_AddNumberToObject(c, "max_len", config->max_len);
    cJSON_AddNumberToObject(c, "negatives", config->negatives);
    cJSON_AddNumberToObject(c, "batch_size", options->batch_size);
    cJSON_AddNumberToObject(c, "seed", (double)options->seed);
    cJSON_AddNumberToObject(json, "parameters", (double)r->weights);
    cJSON_AddNumberToObject(json, "load_seconds", load_seconds);
    cJSON_AddNumberToObject(json, "train_steps", steps);
    cJSON_AddNumberToObject(json, "warmup_steps", warmup);
    cJSON_AddNumberToObject(json, "train_seconds", r->train_seconds);
    cJSON_AddNumberToObject(json, "train_examples_per_second", r->train_examples_per_second);
    cJSON_AddNumberToObject(json, "train_step_ms", r->train_step_ms);
    cJSON_AddNumberToObject(json, "last_loss", r->last_loss);
    cJSON_AddStringToObject(json, "eval_split", "test");
    cJSON_AddNumberToObject(json, "eval_users", (double)r->eval_users);
    cJSON_AddNumberToObject(json, "eval_seconds", r->eval_seconds);
    cJSON_AddNumberToObject(json, "eval_users_per_second", r->eval_users_per_second);
    cJSON_AddNumberToObject(json, "eval_hit@50", r->eval_hit50);
    cJSON_AddNumberToObject(json, "peak_rss_mib", peak_rss_mib());
    char *text = cJSON_PrintUnformatted(json);
    if (text != NULL) {
        printf("%s\n", text);
    }
    cJSON_free(text);
    cJSON_Delete(json);
}

int cli_rec_bench(int argc, char **argv) {
    const char *data_path = NULL, *backbone = "sasrec";
    bool ada = false, zero_padding = false;
    int64_t steps = 30, warmup = 3, batch_size = 1024, seed = 366849;
    mr_rec_train_options options;
    mr_rec_train_options_default(&options);

    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_bench_help();
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }
        if (strcmp(option, "--ada") == 0) {
            ada = true;
            continue;
        }
        if (strcmp(option, "--ada-zero-padding") == 0) {
            zero_padding = true;
            continue;
        }

        static const char *const valued[] = {"--data",          "--backbone",   "--init",
                                             "--steps",         "--warmup-steps",
                                             "--batch-size",    "--seed",       NULL};
        const char *value = cli_option_value("rec bench", valued, argc, argv, i);
        if (value == NULL) {
            return 2;
        }
        bool ok = true;
        if (strcmp(option, "--data") == 0) {
            data_path = value;
        } else if (strcmp(option, "--backbone") == 0) {
            backbone = value;
        } else if (strcmp(option, "--init") == 0) {
            options.init_dir = value;
        } else if (strcmp(option, "--steps") == 0) {
            ok = cli_parse_int64(option, value, 1, 100000, &steps);
        } else if (strcmp(option, "--warmup-steps") == 0) {
            ok = cli_parse_int64(option, value, 0, 100000, &warmup);
        } else if (strcmp(option, "--batch-size") == 0) {
            ok = cli_parse_int64(option, value, 1, 1 << 20, &batch_size);
        } else if (strcmp(option, "--seed") == 0) {
            ok = cli_parse_int64(option, value, 0, INT64_MAX, &seed);
        } else {
            cli_error("unknown option '%s' for rec bench; run 'multiround rec bench --help'",
                      option);
            return 2;
        }
        if (!ok) {
            return 2;
        }
        i++;
    }
    if (data_path == NULL) {
        cli_error("rec bench needs --data FILE; run 'multiround rec bench --help'");
        return 2;
    }

    mr_error err;
    mr_rec_backbone_type type;
    if (mr_rec_backbone_parse(backbone, &type, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 2;
    }
    mr_rec_config config;
    mr_rec_config_default(&config, type);
    config.ada = ada;
    config.ada_zero_padding = zero_padding;
    if (zero_padding && !ada) {
        cli_error("--ada-zero-padding changes Ada-Retrieval's item adapter; add --ada");
        return 2;
    }
    options.batch_size = (int)batch_size;
    options.seed = (uint64_t)seed;

    double start = cli_seconds();
    mr_rec_data *data = NULL;
    if (mr_rec_data_load(data_path, &data, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    double load_seconds = cli_seconds() - start;

    mr_rec_bench_result result;
    mr_status status =
        mr_rec_bench(data, &config, &options, (int)warmup, (int)steps, &result, &err);
    if (status == MR_OK) {
        print_result(data, &config, &options, (int)warmup, (int)steps, load_seconds, &result);
    } else {
        cli_error("%s", err.message);
    }
    mr_rec_data_free(data);
    return status == MR_OK ? 0 : 1;
}
