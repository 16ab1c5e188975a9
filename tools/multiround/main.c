/* multiround command-line tool: dispatches to one function per subcommand. */
#include <stdio.h>
#include <string.h>

#include "multiround/common.h"

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("multiround %s\nusage: multiround COMMAND [OPTIONS]\n", MR_VERSION_STRING);
        return 0;
    }
    fprintf(stderr, "multiround: unknown command '%s'; run 'multiround --help'\n", argv[1]);
    return 2;
}
