/* `multiround version`: the version, the BLAS library and the thread count. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "multiround/common.h"

static void print_help(void) {
    printf("usage: multiround version [OPTIONS]\n\n"
           "Prints the version, the BLAS library the engine calls and the number of\n"
           "threads its kernels use.\n\noptions:\n");
    cli_print_shared_options(stdout, 16);
}

int cli_version(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
            return 0;
        }
        int handled = cli_parse_shared_option(argc, argv, &i);
        if (handled < 0) {
            return 2;
        }
        if (handled == 0) {
            cli_error("unknown option '%s' for version; run 'multiround version --help'",
                      argv[i]);
            return 2;
        }
    }

    printf("multiround %s\n", MR_VERSION_STRING);
    printf("BLAS: %s\n", mr_blas_name());
    printf("threads: %d\n", mr_threads_get());
    return 0;
}
