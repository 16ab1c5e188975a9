/*
 * `multiround rounds status RUN_DIR [--files]`: prints the manifest of a
 * multi-round run as a table. Runs themselves are started by the systems
 * that define their stages.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "multiround/rounds.h"

static void print_help(void) {
    printf("usage: multiround rounds status RUN_DIR [OPTIONS]\n\n"
           "Prints RUN_DIR/manifest.json of a multi-round run as a table: each round's\n"
           "state, each stage's state and attempts, and the model each round started\n"
           "from and wrote. It reads the manifest only, so it works while the run goes on.\n"
           "\noptions:\n"
           "  --files       also list every recorded input and output with its sha256\n");
    cli_print_shared_options(stdout, 16);
}

int cli_rounds(int argc, char **argv) {
    const char *action = NULL;
    const char *run_dir = NULL;
    bool files = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help();
            return 0;
        }
        if (strcmp(arg, "--files") == 0) {
            files = true;
        } else if (arg[0] == '-') {
            int handled = cli_parse_shared_option(argc, argv, &i);
            if (handled < 0) {
                return 2;
            }
            if (handled == 0) {
                cli_error("unknown option '%s' for rounds; run 'multiround rounds --help'",
                          arg);
                return 2;
            }
        } else if (action == NULL) {
            action = arg;
        } else if (run_dir == NULL) {
            run_dir = arg;
        } else {
            cli_error("unexpected argument '%s'; run 'multiround rounds --help'", arg);
            return 2;
        }
    }

    if (action == NULL || strcmp(action, "status") != 0) {
        cli_error("rounds needs the action 'status'%s%s%s; run 'multiround rounds --help'",
                  action != NULL ? ", not '" : "", action != NULL ? action : "",
                  action != NULL ? "'" : "");
        return 2;
    }
    if (run_dir == NULL) {
        cli_error("rounds status needs a run folder");
        return 2;
    }

    mr_error err;
    if (mr_rounds_print_status(run_dir, stdout, files, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    return 0;
}
