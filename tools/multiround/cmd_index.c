/*
 * `multiround index build`: loads a JSON Lines corpus of passages into an
 * SQLite database with an FTS5 index for `multiround search`.
 * `multiround index embed`: stores a dense vector of every passage, made
 * by a GGUF language model, in the same database.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "multiround/retriever.h"

static void print_build_help(FILE *out) {
    mr_passage_index_options defaults;
    mr_passage_index_options_default(&defaults);
    fprintf(out,
            "usage: multiround index build CORPUS.jsonl -o CORPUS.db [OPTIONS]\n\n"
            "Adds the passages of CORPUS.jsonl to the index CORPUS.db, creating it if\n"
            "needed. Each line is a JSON object with \"id\" (string or integer), \"text\"\n"
            "(string) and optionally \"title\" (string); other fields are kept as JSON\n"
            "metadata. Passages whose id is already in the index are skipped, so a rerun\n"
            "adds only new passages. Progress goes to stderr.\n\n"
            "options:\n"
            "  -o, --output FILE       the index database to create or extend (required)\n"
            "  --skip-bad              log bad lines as warnings and go on (default: the\n"
            "                          first bad line stops the build)\n"
            "  --batch-size N          passages per transaction (default %lld)\n"
            "  --max-line-bytes N      maximum line length in bytes (default %zu)\n"
            "  --progress-lines N      print progress every N lines (default %lld) ...\n"
            "  --progress-seconds S    ... or every S seconds, whichever is first "
            "(default %g)\n",
            (long long)defaults.batch_size, defaults.max_line_bytes,
            (long long)defaults.progress_lines, defaults.progress_seconds);
    cli_print_shared_options(out, 26);
}

/* Prints one progress line to stderr. */
static void print_progress(const mr_passage_index_stats *stats, void *user_data) {
    (void)user_data;
    double rate = stats->seconds > 0 ? (double)stats->added / stats->seconds : 0.0;
    fprintf(stderr,
            "index: %lld lines, %lld added, %lld skipped as existing ids, %lld bad, "
            "%.0f passages/s\n",
            (long long)stats->lines, (long long)stats->added,
            (long long)stats->skipped_existing, (long long)stats->bad, rate);
    fflush(stderr);
}

/* Parses a number of seconds in (0, 1e6] for option. */
static bool parse_seconds(const char *option, const char *text, double *value) {
    char rest[2];
    double parsed = 0;
    if (text == NULL || sscanf(text, "%lf%1s", &parsed, rest) != 1 || !(parsed > 0) ||
        parsed > 1e6) {
        cli_error("invalid value '%s' for %s: expected seconds, more than 0 and at most 1e6",
                  text != NULL ? text : "", option);
        return false;
    }
    *value = parsed;
    return true;
}

static int index_build(int argc, char **argv) {
    mr_passage_index_options options;
    mr_passage_index_options_default(&options);
    options.progress = print_progress;
    const char *corpus = NULL;
    const char *output = NULL;

    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        int64_t number = 0;
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_build_help(stdout);
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }

        if (strcmp(option, "--skip-bad") == 0) {
            options.skip_bad = true;
            continue;
        }
        if (option[0] != '-' || strcmp(option, "-") == 0) {
            if (corpus != NULL) {
                cli_error("index build takes one corpus file, got '%s' and '%s'", corpus,
                          option);
                return 2;
            }
            corpus = option;
            continue;
        }
        static const char *const valued[] = {"-o", "--output", "--batch-size",
                                             "--max-line-bytes", "--progress-lines",
                                             "--progress-seconds", NULL};
        const char *value = cli_option_value("index build", valued, argc, argv, i);
        if (value == NULL) {
            return 2;
        }
        i++;
        if (strcmp(option, "-o") == 0 || strcmp(option, "--output") == 0) {
            output = value;
        } else if (strcmp(option, "--batch-size") == 0) {
            if (!cli_parse_int64(option, value, 1, 10000000, &number)) {
                return 2;
            }
            options.batch_size = number;
        } else if (strcmp(option, "--max-line-bytes") == 0) {
            if (!cli_parse_int64(option, value, 64, (int64_t)1 << 30, &number)) {
                return 2;
            }
            options.max_line_bytes = (size_t)number;
        } else if (strcmp(option, "--progress-lines") == 0) {
            if (!cli_parse_int64(option, value, 1, INT64_MAX, &number)) {
                return 2;
            }
            options.progress_lines = number;
        } else if (strcmp(option, "--progress-seconds") == 0) {
            if (!parse_seconds(option, value, &options.progress_seconds)) {
                return 2;
            }
        } else {
            cli_error("unknown option '%s' for index build; run 'multiround index build "
                      "--help'",
                      option);
            return 2;
        }
    }
    if (corpus == NULL || output == NULL) {
        cli_error("index build needs a corpus file and -o FILE; run 'multiround index build "
                  "--help'");
        return 2;
    }

    mr_passage_index_stats stats;
    mr_error err;
    mr_error_clear(&err);
    mr_status status = mr_passage_index_build(corpus, output, &options, &stats, &err);
    if (status != MR_OK) {
        cli_error("%s", err.message);
        if (stats.added > 0 || stats.skipped_existing > 0) {
            cli_error("passages added to %s before the error: %lld; fix the line and run "
                      "again to add the rest (existing ids are skipped)",
                      output, (long long)stats.added);
        }
        return 1;
    }

    double rate = stats.seconds > 0 ? (double)stats.added / stats.seconds : 0.0;
    fprintf(stderr,
            "index: done: %lld lines, %lld added, %lld skipped as existing ids, %lld bad "
            "lines skipped; %lld passages in %s; %.1f s, %.0f passages/s\n",
            (long long)stats.lines, (long long)stats.added, (long long)stats.skipped_existing,
            (long long)stats.bad, (long long)stats.total, output, stats.seconds, rate);
    return 0;
}

static void print_embed_help(FILE *out) {
    mr_passage_embed_options defaults;
    mr_passage_embed_options_default(&defaults);
    fprintf(out,
            "usage: multiround index embed CORPUS.db -m MODEL.gguf [OPTIONS]\n\n"
            "Stores one float32 vector per passage of CORPUS.db for dense and hybrid search:\n"
            "the mean of the model's final hidden states over the passage's title, a newline\n"
            "and its text, L2-normalised. Vectors are kept per model (by the SHA-256 of the\n"
            "model file), so a second model adds a second set. Batches are committed as they\n"
            "finish, and a rerun embeds only passages that have no vector of this model.\n"
            "Progress goes to stderr.\n\n"
            "options:\n"
            "  -m, --model FILE        GGUF model with its tokenizer (required)\n"
            "  --batch N               passages per forward pass and transaction "
            "(default %d)\n"
            "  --max-tokens N          tokens per passage, BOS included; the rest is cut\n"
            "                          (default %d, at most the model's context length)\n"
            "  --progress-seconds S    print progress every S seconds (default %g)\n",
            defaults.batch_size, defaults.max_tokens, defaults.progress_seconds);
    cli_print_shared_options(out, 26);
}

/* Prints one embedding progress line to stderr. */
static void print_embed_progress(const mr_passage_embed_stats *stats, void *user_data) {
    (void)user_data;
    int64_t missing = stats->total - stats->existing;
    double rate = stats->seconds > 0 ? (double)stats->embedded / stats->seconds : 0.0;
    fprintf(stderr, "embed: %lld of %lld passages, %.0f passages/s, %.0f tokens/s\n",
            (long long)stats->embedded, (long long)missing, rate,
            stats->seconds > 0 ? (double)stats->tokens / stats->seconds : 0.0);
    fflush(stderr);
}

static int index_embed(int argc, char **argv) {
    mr_passage_embed_options options;
    mr_passage_embed_options_default(&options);
    options.progress = print_embed_progress;
    const char *database = NULL;
    const char *model = NULL;

    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        int64_t number = 0;
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_embed_help(stdout);
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }

        if (option[0] != '-') {
            if (database != NULL) {
                cli_error("index embed takes one index, got '%s' and '%s'", database, option);
                return 2;
            }
            database = option;
            continue;
        }
        static const char *const valued[] = {"-m", "--model", "--batch", "--max-tokens",
                                             "--progress-seconds", NULL};
        const char *value = cli_option_value("index embed", valued, argc, argv, i);
        if (value == NULL) {
            return 2;
        }
        i++;
        if (strcmp(option, "-m") == 0 || strcmp(option, "--model") == 0) {
            model = value;
        } else if (strcmp(option, "--batch") == 0) {
            if (!cli_parse_int64(option, value, 1, 100000, &number)) {
                return 2;
            }
            options.batch_size = (int)number;
        } else if (strcmp(option, "--max-tokens") == 0) {
            if (!cli_parse_int64(option, value, 1, 1000000, &number)) {
                return 2;
            }
            options.max_tokens = (int)number;
        } else if (strcmp(option, "--progress-seconds") == 0) {
            if (!parse_seconds(option, value, &options.progress_seconds)) {
                return 2;
            }
        } else {
            cli_error("unknown option '%s' for index embed; run 'multiround index embed "
                      "--help'",
                      option);
            return 2;
        }
    }
    if (database == NULL || model == NULL) {
        cli_error("index embed needs an index and -m MODEL; run 'multiround index embed "
                  "--help'");
        return 2;
    }

    if (!cli_check_input_file("model", model)) {
        return 1;
    }
    mr_passage_embed_stats stats;
    mr_error err;
    mr_error_clear(&err);
    mr_status status = mr_passage_index_embed(database, model, &options, &stats, &err);
    if (status != MR_OK) {
        cli_error("%s", err.message);
        if (stats.embedded > 0) {
            cli_error("vectors stored before the error: %lld; run the command again to embed "
                      "the rest",
                      (long long)stats.embedded);
        }
        return 1;
    }
    double rate = stats.seconds > 0 ? (double)stats.embedded / stats.seconds : 0.0;
    fprintf(stderr,
            "embed: done: %lld passages embedded, %lld already had a vector of %s; %lld "
            "passages in %s; %.1f s, %.1f passages/s\n",
            (long long)stats.embedded, (long long)stats.existing, model,
            (long long)stats.total, database, stats.seconds, rate);
    return 0;
}

static void print_index_help(FILE *out) {
    fprintf(out, "usage: multiround index COMMAND [OPTIONS]\n\n"
                 "commands:\n"
                 "  build   add the passages of a JSONL corpus to an SQLite FTS5 index\n"
                 "  embed   store a dense vector of every passage, made by a GGUF model\n\n"
                 "Run 'multiround index COMMAND --help' for its options.\n");
}

int cli_index(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_index_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "build") == 0) {
        return index_build(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "embed") == 0) {
        return index_embed(argc - 1, argv + 1);
    }
    cli_error("unknown index command '%s'; run 'multiround index --help'", argv[1]);
    return 2;
}
