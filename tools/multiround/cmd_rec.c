/*
 * `multiround rec`: sequential recommendation with five backbones and
 * Ada-Retrieval. Subcommands:
 *
 *   train      trains a model into a run folder, resuming an interrupted run
 *   eval       prints a trained model's full-ranking metrics as JSON
 *   recommend  prints the top items for one user
 *   bench      times training and evaluation (cmd_rec_bench.c)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"
#include "multiround/fileio.h"
#include "multiround/rec.h"

/* Seconds between plain progress lines when stderr is not a terminal. */
#define PROGRESS_LOG_SECONDS 10.0
/* Width of the progress bar in characters, and seconds between redraws. */
#define PROGRESS_BAR_WIDTH 24
#define PROGRESS_BAR_SECONDS 0.2

/* ------------------------------------------------------------------------
 * Progress and log output
 * ------------------------------------------------------------------------ */

/* The state of the progress display on stderr. */
typedef struct rec_display {
    bool terminal;     /* stderr is a terminal: redraw one bar line */
    bool bar_drawn;    /* a bar line is on screen without a newline */
    double last_line;  /* time of the last progress line or redraw */
} rec_display;

static rec_display display;

/* Writes log lines to stderr, first clearing a progress bar if one is on
 * screen; the next update redraws it. */
static void log_to_stderr(mr_log_level level, const char *subsystem, const char *message,
                          void *user_data) {
    (void)user_data;
    if (display.bar_drawn) {
        fputs("\r\033[K", stderr);
        display.bar_drawn = false;
    }
    const char *prefix = "";
    if (level == MR_LOG_ERROR) {
        prefix = "error: ";
    } else if (level == MR_LOG_WARN) {
        prefix = "warning: ";
    }
    fprintf(stderr, "%s: %s%s\n", subsystem, prefix, message);
    fflush(stderr);
}

/* Formats seconds as "1:02:03" or "2:03". */
static void format_duration(double seconds, char *out, size_t size) {
    long total = seconds > 0 && seconds < 1e8 ? (long)(seconds + 0.5) : 0;
    if (total >= 3600) {
        snprintf(out, size, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
    } else {
        snprintf(out, size, "%ld:%02ld", total / 60, total % 60);
    }
}

/* Shows training and evaluation progress: a bar with the rate and ETA on
 * a terminal, a plain line every PROGRESS_LOG_SECONDS otherwise. */
static void show_progress(const mr_rec_progress *progress, void *user_data) {
    (void)user_data;
    bool training = strcmp(progress->phase, "train") == 0;
    double rate = progress->examples_per_second;
    int64_t left = progress->examples_total - progress->examples_done;
    char eta[32];
    format_duration(rate > 0 ? (double)left / rate : 0, eta, sizeof eta);

    double now = cli_seconds();
    if (!display.terminal) {
        if (now - display.last_line < PROGRESS_LOG_SECONDS) {
            return;
        }
        display.last_line = now;
        if (training) {
            fprintf(stderr, "rec: epoch %d train: %lld/%lld examples, loss %.5f, "
                            "%.0f examples/s, ETA %s\n",
                    progress->epoch, (long long)progress->examples_done,
                    (long long)progress->examples_total, progress->loss, rate, eta);
        } else {
            fprintf(stderr, "rec: epoch %d %s: %lld/%lld users, %.0f users/s, ETA %s\n",
                    progress->epoch, progress->phase, (long long)progress->examples_done,
                    (long long)progress->examples_total, rate, eta);
        }
        fflush(stderr);
        return;
    }

    /* Redraw at most every PROGRESS_BAR_SECONDS, and at the end. */
    if (now - display.last_line < PROGRESS_BAR_SECONDS && left > 0) {
        return;
    }
    display.last_line = now;
    int filled = progress->examples_total > 0
                     ? (int)(PROGRESS_BAR_WIDTH * progress->examples_done /
                             progress->examples_total)
                     : 0;
    char bar[PROGRESS_BAR_WIDTH + 1];
    for (int i = 0; i < PROGRESS_BAR_WIDTH; i++) {
        bar[i] = i < filled ? '#' : '.';
    }
    bar[PROGRESS_BAR_WIDTH] = '\0';
    if (training) {
        fprintf(stderr, "\repoch %d [%s] %lld/%lld loss %.5f %.0f ex/s ETA %s\033[K",
                progress->epoch, bar, (long long)progress->examples_done,
                (long long)progress->examples_total, progress->loss, rate, eta);
    } else {
        fprintf(stderr, "\repoch %d %s [%s] %lld/%lld users %.0f users/s ETA %s\033[K",
                progress->epoch, progress->phase, bar, (long long)progress->examples_done,
                (long long)progress->examples_total, rate, eta);
    }
    fflush(stderr);
    display.bar_drawn = true;
}

/* ------------------------------------------------------------------------
 * Option parsing
 * ------------------------------------------------------------------------ */

/* Parses an int option into an int field. */
static bool parse_int(const char *option, const char *text, int64_t min, int64_t max,
                      int *value) {
    int64_t parsed = 0;
    if (!cli_parse_int64(option, text, min, max, &parsed)) {
        return false;
    }
    *value = (int)parsed;
    return true;
}

/* Loads the dataset, printing the error on failure. */
static mr_rec_data *load_data(const char *path) {
    mr_error err;
    mr_rec_data *data = NULL;
    if (mr_rec_data_load(path, &data, &err) != MR_OK) {
        cli_error("%s", err.message);
        return NULL;
    }
    return data;
}

/* Prints finished metrics as one JSON object on stdout. */
static void print_metrics_json(const char *split, const mr_rec_metrics *metrics) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "split", split);
    cJSON_AddNumberToObject(json, "users", (double)metrics->users);
    char key[32];
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        snprintf(key, sizeof key, "hit@%d", mr_rec_cutoffs[c]);
        cJSON_AddNumberToObject(json, key, metrics->hit[c]);
    }
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        snprintf(key, sizeof key, "ndcg@%d", mr_rec_cutoffs[c]);
        cJSON_AddNumberToObject(json, key, metrics->ndcg[c]);
    }
    char *text = cJSON_Print(json);
    if (text != NULL) {
        printf("%s\n", text);
    }
    cJSON_free(text);
    cJSON_Delete(json);
}

/* ------------------------------------------------------------------------
 * rec train
 * ------------------------------------------------------------------------ */

static void print_train_help(void) {
    mr_rec_config config;
    mr_rec_config_default(&config, MR_REC_SASREC);
    mr_rec_train_options options;
    mr_rec_train_options_default(&options);
    printf("usage: multiround rec train --data FILE --backbone NAME --out DIR [OPTIONS]\n\n"
           "Trains a sequential recommender on the training examples of FILE (lines\n"
           "\"user item item ...\", oldest item first) with Adam, validating before each\n"
           "epoch with full-ranking hit@50 and keeping the best weights. The run folder\n"
           "receives config.json, metrics.json, model.safetensors (best weights),\n"
           "checkpoint.safetensors (latest state) and a 'done' file at the end. Rerunning\n"
           "with the same --out resumes an interrupted run; a finished run only prints\n"
           "its test metrics. Ctrl-C (SIGINT) or SIGTERM stops training after the\n"
           "current batch and saves the checkpoint; a second signal stops at once.\n"
           "Ada-Retrieval trains in two stages: first the base model, then\n"
           "--ada --init BASE_DIR, which starts from the base run's best weights.\n\n"
           "options:\n"
           "  --data FILE       dataset file (required)\n"
           "  --backbone NAME   gru4rec, sasrec, nextitnet, srgnn or fmlprec (required)\n"
           "  --out DIR         run folder, created if missing (required)\n"
           "  --ada             add Ada-Retrieval's adapters: %d rounds of %d items\n"
           "  --ada-zero-padding\n"
           "                    with --ada: keep padding positions at zero after the item\n"
           "                    adapter, where the authors' code gives them adapted\n"
           "                    embeddings. A different model, but GRU4Rec and NextItNet\n"
           "                    then skip padding in every round and train faster. Fixed\n"
           "                    for the life of a run (default: off)\n"
           "  --init DIR        base run folder whose best model initialises the\n"
           "                    backbone, item embedding and item bias (default: none)\n"
           "  --epochs N        maximum epochs of training, each validated (default: the\n"
           "                    limit of the run in DIR when it exists, else 200)\n"
           "  --patience N      stop after N+1 validations without a better hit@50\n"
           "                    (default: %d)\n"
           "  --batch-size N    training examples per step (default: %d)\n"
           "  --lr X            Adam learning rate (default: %g)\n"
           "  --seed S          seed of the weights, order, negatives and dropout\n"
           "                    (default: %llu)\n"
           "  --dim D           item embedding and user vector size (default: %d)\n"
           "  --max-len L       most recent items a user is represented by (default: %d)\n"
           "  --dropout P       dropout probability, 0 to 0.999 (default: %g)\n"
           "  --negatives N     uniform negatives per training example (default: %d)\n"
           "  --checkpoint-minutes M\n"
           "                    also save the checkpoint within an epoch every M\n"
           "                    minutes; 0 saves after each epoch only (default: %g)\n",
           config.rounds, config.per_round, options.patience,
           options.batch_size, (double)options.lr, (unsigned long long)options.seed,
           config.dim, config.max_len, (double)config.dropout, config.negatives,
           options.checkpoint_minutes);
    cli_print_shared_options(stdout, 20);
}

/* The settings of `rec train` that override the backbone's defaults; -1
 * (or a negative dropout) keeps the default. */
typedef struct train_overrides {
    int dim;
    int max_len;
    int negatives;
    double dropout;
} train_overrides;

static int rec_train(int argc, char **argv) {
    const char *data_path = NULL, *backbone = NULL;
    bool ada = false, zero_padding = false;
    mr_rec_train_options options;
    mr_rec_train_options_default(&options);
    train_overrides overrides = {-1, -1, -1, -1.0};

    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_train_help();
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

        static const char *const valued[] = {
            "--data", "--backbone", "--out",     "--init",      "--epochs",
            "--patience", "--batch-size", "--lr", "--seed",     "--dim",
            "--max-len", "--negatives", "--dropout", "--checkpoint-minutes", NULL};
        const char *value = cli_option_value("rec train", valued, argc, argv, i);
        if (value == NULL) {
            return 2;
        }
        bool ok = true;
        double number = 0;
        int64_t integer = 0;
        if (strcmp(option, "--data") == 0) {
            data_path = value;
        } else if (strcmp(option, "--backbone") == 0) {
            backbone = value;
        } else if (strcmp(option, "--out") == 0) {
            options.out_dir = value;
        } else if (strcmp(option, "--init") == 0) {
            options.init_dir = value;
        } else if (strcmp(option, "--epochs") == 0) {
            ok = parse_int(option, value, 1, 1000000, &options.epochs);
        } else if (strcmp(option, "--patience") == 0) {
            ok = parse_int(option, value, 0, 1000000, &options.patience);
        } else if (strcmp(option, "--batch-size") == 0) {
            ok = parse_int(option, value, 1, 1 << 20, &options.batch_size);
        } else if (strcmp(option, "--lr") == 0) {
            ok = cli_parse_double(option, value, 1e-12, 10.0, &number);
            options.lr = (float)number;
        } else if (strcmp(option, "--seed") == 0) {
            ok = cli_parse_int64(option, value, 0, INT64_MAX, &integer);
            options.seed = (uint64_t)integer;
        } else if (strcmp(option, "--dim") == 0) {
            ok = parse_int(option, value, 1, 1 << 16, &overrides.dim);
        } else if (strcmp(option, "--max-len") == 0) {
            ok = parse_int(option, value, 1, 1 << 16, &overrides.max_len);
        } else if (strcmp(option, "--negatives") == 0) {
            ok = parse_int(option, value, 1, 1 << 16, &overrides.negatives);
        } else if (strcmp(option, "--dropout") == 0) {
            ok = cli_parse_double(option, value, 0.0, 0.999, &overrides.dropout);
        } else if (strcmp(option, "--checkpoint-minutes") == 0) {
            ok = cli_parse_double(option, value, 0.0, 1e6, &options.checkpoint_minutes);
        } else {
            cli_error("unknown option '%s' for rec train; run 'multiround rec train --help'",
                      option);
            return 2;
        }
        if (!ok) {
            return 2;
        }
        i++;
    }
    if (data_path == NULL || backbone == NULL || options.out_dir == NULL) {
        cli_error("rec train needs --data, --backbone and --out; run 'multiround rec train "
                  "--help'");
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
    config.dim = overrides.dim > 0 ? overrides.dim : config.dim;
    config.max_len = overrides.max_len > 0 ? overrides.max_len : config.max_len;
    config.negatives = overrides.negatives > 0 ? overrides.negatives : config.negatives;
    config.dropout = overrides.dropout >= 0 ? (float)overrides.dropout : config.dropout;
    if (mr_rec_config_check(&config, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 2;
    }

    mr_rec_data *data = load_data(data_path);
    if (data == NULL) {
        return 1;
    }
    display.terminal = isatty(fileno(stderr)) != 0;
    display.last_line = cli_seconds();
    mr_log_set_callback(log_to_stderr, NULL);
    options.progress = show_progress;
    options.stop = cli_stop_requested;
    cli_catch_stop_signals();

    mr_status status = mr_rec_train(data, &config, &options, &err);
    mr_log_set_callback(NULL, NULL);
    mr_rec_data_free(data);

    if (status == MR_ERR_INTERRUPTED) {
        cli_error("%s", err.message);
        return cli_exit_by_stop_signal();
    }
    if (status != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }

    /* Print the test figures from the run folder, for finished runs too. */
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.json", options.out_dir);
    void *text = NULL;
    size_t size = 0;
    if (mr_file_read_all(path, (size_t)64 << 20, &text, &size, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    cJSON *metrics = cJSON_Parse(text);
    free(text);
    cJSON *test = cJSON_GetObjectItemCaseSensitive(metrics, "test");
    char *printed = test != NULL ? cJSON_Print(test) : NULL;
    if (printed != NULL) {
        printf("%s\n", printed);
    }
    cJSON_free(printed);
    cJSON_Delete(metrics);
    return 0;
}

/* ------------------------------------------------------------------------
 * rec eval and rec recommend
 * ------------------------------------------------------------------------ */

static void print_eval_help(void) {
    printf("usage: multiround rec eval --data FILE --model DIR [OPTIONS]\n\n"
           "Evaluates the best model of a run folder with full ranking over every item\n"
           "and prints hit@K and NDCG@K (K = 10, 20, 50, 100) as JSON. A user's\n"
           "candidates are all items except the other items of the user's sequence.\n\n"
           "options:\n"
           "  --data FILE       dataset the model was trained on (required)\n"
           "  --model DIR       run folder with config.json and model.safetensors\n"
           "                    (required)\n"
           "  --split NAME      test (each user's last item) or valid (second last)\n"
           "                    (default: test)\n");
    cli_print_shared_options(stdout, 20);
}

static void print_recommend_help(void) {
    printf("usage: multiround rec recommend --data FILE --model DIR --user ID [OPTIONS]\n\n"
           "Prints the top items for a user's next item, given the user's whole\n"
           "sequence, skipping the items in it: rank, item id, score and, for\n"
           "Ada-Retrieval, the retrieval round each item came from.\n\n"
           "options:\n"
           "  --data FILE       dataset the model was trained on (required)\n"
           "  --model DIR       run folder with config.json and model.safetensors\n"
           "                    (required)\n"
           "  --user ID         user id as written in FILE (required)\n"
           "  -k N              items to list (default: 10)\n");
    cli_print_shared_options(stdout, 20);
}

/* The options of eval and recommend. */
typedef struct use_options {
    const char *data_path;
    const char *model_dir;
    mr_rec_split split;
    int64_t user;
    int k;
} use_options;

/* Parses the options of eval (recommend false) or recommend; returns -1 to
 * continue, otherwise the exit code. */
static int parse_use_options(int argc, char **argv, bool recommend, use_options *options) {
    *options = (use_options){NULL, NULL, MR_REC_TEST, -1, 10};
    const char *command = recommend ? "recommend" : "eval";
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            recommend ? print_recommend_help() : print_eval_help();
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }

        static const char *const eval_valued[] = {"--data", "--model", "--split", NULL};
        static const char *const recommend_valued[] = {"--data", "--model", "--user", "-k",
                                                       NULL};
        const char *value = cli_option_value(recommend ? "rec recommend" : "rec eval",
                                             recommend ? recommend_valued : eval_valued, argc,
                                             argv, i);
        if (value == NULL) {
            return 2;
        }
        bool ok = true;
        if (strcmp(option, "--data") == 0) {
            options->data_path = value;
        } else if (strcmp(option, "--model") == 0) {
            options->model_dir = value;
        } else if (!recommend && strcmp(option, "--split") == 0) {
            if (strcmp(value, "test") == 0) {
                options->split = MR_REC_TEST;
            } else if (strcmp(value, "valid") == 0) {
                options->split = MR_REC_VALID;
            } else {
                cli_error("invalid value '%s' for --split: expected test or valid", value);
                return 2;
            }
        } else if (recommend && strcmp(option, "--user") == 0) {
            ok = cli_parse_int64(option, value, 1, INT32_MAX, &options->user);
        } else if (recommend && strcmp(option, "-k") == 0) {
            ok = parse_int(option, value, 1, 100000, &options->k);
        } else {
            cli_error("unknown option '%s' for rec %s; run 'multiround rec %s --help'", option,
                      command, command);
            return 2;
        }
        if (!ok) {
            return 2;
        }
        i++;
    }
    if (options->data_path == NULL || options->model_dir == NULL ||
        (recommend && options->user < 0)) {
        cli_error("rec %s needs --data, --model%s; run 'multiround rec %s --help'", command,
                  recommend ? " and --user" : "", command);
        return 2;
    }
    return -1;
}

/* Warns when the run in model_dir has not finished, so that its
 * model.safetensors holds only the best weights so far. */
static void check_model_finished(const char *model_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/done", model_dir);
    if (!mr_path_exists(path)) {
        mr_log(MR_LOG_WARN, "rec",
               "the run in %s has not finished: model.safetensors holds the best weights "
               "so far", model_dir);
    }
}

/*
 * Warns when data is not the data the run in model_dir was trained on, by
 * its counts in config.json, and when the run has not finished.
 */
static void check_model_data(const char *model_dir, const mr_rec_data *data) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    void *text = NULL;
    size_t size = 0;
    if (mr_file_read_all(path, (size_t)64 << 20, &text, &size, NULL) != MR_OK) {
        return; /* loading the model reports it */
    }
    cJSON *config = cJSON_Parse(text);
    free(text);
    const cJSON *stored = cJSON_GetObjectItemCaseSensitive(config, "data");
    const cJSON *stored_path = cJSON_GetObjectItemCaseSensitive(stored, "path");
    const char *keys[] = {"n_users", "n_sequences", "n_train"};
    const double counts[] = {(double)data->n_users, (double)data->n_sequences,
                             (double)data->n_train};
    for (int i = 0; i < 3; i++) {
        const cJSON *count = cJSON_GetObjectItemCaseSensitive(stored, keys[i]);
        if (cJSON_IsNumber(count) && count->valuedouble != counts[i]) {
            mr_log(MR_LOG_WARN, "rec",
                   "%s is not the data the model in %s was trained on (%s): %s is %.0f "
                   "there and %.0f here, so the metrics do not compare with the run's",
                   data->path, model_dir,
                   cJSON_IsString(stored_path) ? stored_path->valuestring : "another file",
                   keys[i], count->valuedouble, counts[i]);
            break;
        }
    }
    cJSON_Delete(config);
    check_model_finished(model_dir);
}

static int rec_eval(int argc, char **argv) {
    use_options options;
    int code = parse_use_options(argc, argv, false, &options);
    if (code >= 0) {
        return code;
    }
    mr_rec_data *data = load_data(options.data_path);
    if (data == NULL) {
        return 1;
    }
    mr_error err;
    mr_rec_model *model = NULL;
    mr_rec_metrics metrics;
    mr_status status = mr_rec_model_load(options.model_dir, data->n_items, &model, &err);
    if (status == MR_OK) {
        check_model_data(options.model_dir, data);
        status = mr_rec_evaluate(model, data, options.split, &metrics, &err);
    }
    if (status == MR_OK) {
        print_metrics_json(mr_rec_split_name(options.split), &metrics);
    } else {
        cli_error("%s", err.message);
    }
    mr_rec_model_free(model);
    mr_rec_data_free(data);
    return status == MR_OK ? 0 : 1;
}

static int rec_recommend(int argc, char **argv) {
    use_options options;
    int code = parse_use_options(argc, argv, true, &options);
    if (code >= 0) {
        return code;
    }
    mr_rec_data *data = load_data(options.data_path);
    if (data == NULL) {
        return 1;
    }
    int64_t sequence = -1;
    for (int64_t s = 0; s < data->n_sequences; s++) {
        if (data->user_ids[s] == options.user) {
            sequence = s;
            break;
        }
    }
    if (sequence < 0) {
        cli_error("user %lld is not in %s, or has fewer than 3 distinct items",
                  (long long)options.user, options.data_path);
        mr_rec_data_free(data);
        return 1;
    }

    mr_error err;
    mr_rec_model *model = NULL;
    int32_t *items = malloc((size_t)options.k * sizeof(int32_t));
    int32_t *rounds = malloc((size_t)options.k * sizeof(int32_t));
    float *scores = malloc((size_t)options.k * sizeof(float));
    int written = 0;
    mr_status status = items != NULL && rounds != NULL && scores != NULL
                           ? MR_OK
                           : mr_error_set(&err, MR_ERR_NO_MEMORY, "out of memory");
    if (status == MR_OK) {
        status = mr_rec_model_load(options.model_dir, data->n_items, &model, &err);
    }
    if (status == MR_OK) {
        check_model_finished(options.model_dir);
    }
    if (status == MR_OK) {
        status = mr_rec_recommend(model, data, sequence, options.k, items, rounds, scores,
                                  &written, &err);
    }
    if (status == MR_OK) {
        bool ada = mr_rec_model_config(model)->ada;
        printf(ada ? "rank\titem\tscore\tround\n" : "rank\titem\tscore\n");
        for (int i = 0; i < written; i++) {
            printf("%d\t%d\t%.6f", i + 1, (int)items[i], (double)scores[i]);
            if (ada) {
                printf("\t%d", (int)rounds[i]);
            }
            printf("\n");
        }
        const mr_rec_config *config = mr_rec_model_config(model);
        if (written < options.k && ada && written == config->rounds * config->per_round) {
            fprintf(stderr, "rec: only %d items could be listed: Ada-Retrieval retrieves %d "
                    "rounds of %d items\n", written, config->rounds, config->per_round);
        } else if (written < options.k) {
            fprintf(stderr, "rec: only %d items could be listed: the others are in the "
                    "user's history\n", written);
        }
    } else {
        cli_error("%s", err.message);
    }
    free(items);
    free(rounds);
    free(scores);
    mr_rec_model_free(model);
    mr_rec_data_free(data);
    return status == MR_OK ? 0 : 1;
}

static void print_rec_help(FILE *out) {
    fprintf(out, "usage: multiround rec COMMAND [OPTIONS]\n\n"
                 "Sequential recommendation (GRU4Rec, SASRec, NextItNet, SR-GNN, FMLP-Rec)\n"
                 "with optional Ada-Retrieval multi-round retrieval.\n\n"
                 "commands:\n"
                 "  train       train a model into a run folder (resumes if interrupted)\n"
                 "  eval        print a trained model's full-ranking metrics as JSON\n"
                 "  recommend   print the top items for one user\n"
                 "  bench       time training steps and a full-ranking evaluation\n\n"
                 "Run 'multiround rec COMMAND --help' for the options of a command.\n");
}

int cli_rec(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_rec_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0) {
        return rec_train(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "eval") == 0) {
        return rec_eval(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "recommend") == 0) {
        return rec_recommend(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "bench") == 0) {
        return cli_rec_bench(argc - 1, argv + 1);
    }
    cli_error("unknown rec command '%s'; run 'multiround rec --help'", argv[1]);
    return 2;
}
