/*
 * multiround command-line tool: reads the global options, then dispatches
 * to one function per subcommand (one source file each).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "multiround/common.h"

typedef struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary;
} cli_command;

static const cli_command commands[] = {
    {"demo", cli_demo, "train a small character-level GPT on a short text and sample it"},
    {"generate", cli_generate, "generate text or chat with a GGUF language model"},
    {"plot", cli_plot, "draw the metrics.jsonl of one or more runs as an SVG line chart"},
    {"rec", cli_rec, "train, evaluate and query sequential recommenders (Ada-Retrieval)"},
    {"rounds", cli_rounds, "print the state of a multi-round run (rounds status RUN_DIR)"},
    {"train", cli_train, "train with SFT, a reward model, a classifier or DPO (train KIND --config)"},
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
    cli_print_shared_options(out);
    fprintf(out, "  --version     print the version and exit (as 'multiround version')\n");
    fprintf(out, "\nRun 'multiround COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
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
