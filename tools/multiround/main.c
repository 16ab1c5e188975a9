/*
 * multiround command-line tool: reads the global options, then dispatches
 * to one function per subcommand (one source file each).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "multiround/common.h"

typedef struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary;
} cli_command;

static const cli_command commands[] = {
    {"chat", cli_chat, "chat with a model over HTTP or in-process, one line per turn"},
    {"demo", cli_demo, "train a small character-level GPT on a short text and sample it"},
    {"generate", cli_generate, "generate text or chat with a GGUF language model"},
    {"index", cli_index, "build an SQLite FTS5 index of a JSONL passage corpus"},
    {"lm", cli_lm, "convert, inspect, create and score Llama and Qwen2 models (GGUF, Hugging Face)"},
    {"plot", cli_plot, "draw the metrics.jsonl of one or more runs as an SVG line chart"},
    {"rec", cli_rec, "train, evaluate and query sequential recommenders (Ada-Retrieval)"},
    {"rounds", cli_rounds, "print the state of a multi-round run (rounds status RUN_DIR)"},
    {"search", cli_search, "rank indexed passages for a query with BM25, or evaluate recall"},
    {"serve", cli_serve, "serve a GGUF model over HTTP with OpenAI's API"},
    {"train", cli_train, "train with SFT, a reward model, a classifier, DPO, GRPO or PPO (train KIND)"},
    {"version", cli_version, "print the version, the BLAS library and the thread count"},
};

static const int command_count = (int)(sizeof commands / sizeof commands[0]);

static void print_usage(FILE *out) {
    fprintf(out, "multiround %s: multi-round learning systems on a CPU tensor engine\n\n",
            MR_VERSION_STRING);
    fprintf(out, "usage: multiround [GLOBAL OPTIONS] COMMAND [OPTIONS]\n\ncommands:\n");
    for (int i = 0; i < command_count; i++) {
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(out, "\nglobal options:\n");
    cli_print_shared_options(out, 16);
    fprintf(out, "  --version     print the version and exit (as 'multiround version')\n");
    fprintf(out, "\nRun 'multiround COMMAND --help' for the options of a command.\n");
}

/*
 * Makes idle OpenMP threads sleep instead of spin, unless the user chose a
 * wait policy. libgomp reads OMP_WAIT_POLICY once when it loads, before
 * main, so the program runs itself again with the variable set. On a busy
 * 2-core machine spinning threads made greedy generation with stories260K
 * about 50 times slower (18 against 1,000 tokens/s). Setting
 * OMP_WAIT_POLICY=active keeps libgomp's spinning. Returns only when the
 * variable was already set or the new run failed.
 */
static void use_passive_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") != NULL || setenv("OMP_WAIT_POLICY", "passive", 1) != 0) {
        return;
    }
    execv("/proc/self/exe", argv);

    /* NOTE: without /proc (or if execv fails) the program goes on with
     * libgomp's default policy. */
}

int main(int argc, char **argv) {
    use_passive_wait_policy(argv);

    /* One setting for OpenMP and BLAS: one thread per core unless --threads
     * sets another count. */
    mr_threads_set(0);

    int index = 1;
    for (; index < argc && argv[index][0] == '-'; index++) {
        const char *option = argv[index];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_usage(stdout);
            return 0;
        }
        if (strcmp(option, "--version") == 0) {
            return cli_version(1, argv + index);
        }
        int handled = cli_parse_shared_option(argc, argv, &index);
        if (handled < 0) {
            return 2;
        }
        if (handled == 0) {
            cli_error("unknown option '%s'; run 'multiround --help'", option);
            return 2;
        }
    }
    if (index >= argc) {
        print_usage(stderr);
        return 2;
    }

    const char *name = argv[index];
    for (int i = 0; i < command_count; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return commands[i].run(argc - index, argv + index);
        }
    }
    cli_error("unknown command '%s'; run 'multiround --help' for the list", name);
    return 2;
}
