/* Option parsing, error and progress helpers shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "multiround/common.h"

/* Width of the progress bar in characters. */
#define PROGRESS_BAR_WIDTH 30

void cli_error(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fputs("multiround: ", stderr);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
}

bool cli_parse_int64(const char *option, const char *text, int64_t min,
                     int64_t max, int64_t *value) {
    if (text == NULL) {
        cli_error("%s needs a value", option);
        return false;
    }
    errno = 0;
    char *end = NULL;
    long long parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < min || parsed > max) {
        cli_error("invalid value '%s' for %s: expected an integer from %lld to %lld", text,
                  option, (long long)min, (long long)max);
        return false;
    }
    *value = parsed;
    return true;
}

bool cli_parse_double(const char *option, const char *text, double min, double max,
                      double *value) {
    if (text == NULL) {
        cli_error("%s needs a value", option);
        return false;
    }
    errno = 0;
    char *end = NULL;
    double parsed = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(parsed) || parsed < min ||
        parsed > max) {
        cli_error("%s must be a number in [%g, %g], got '%s'", option, min, max, text);
        return false;
    }
    *value = parsed;
    return true;
}

bool cli_check_input_file(const char *what, const char *path) {
    struct stat info;
    if (stat(path, &info) != 0) {
        cli_error("cannot open %s %s: %s", what, path, strerror(errno));
        return false;
    }
    if (S_ISDIR(info.st_mode)) {
        cli_error("cannot open %s %s: %s; give a file", what, path, strerror(EISDIR));
        return false;
    }
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        cli_error("cannot open %s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(file);
    return true;
}

const char *cli_option_value(const char *command, const char *const *names, int argc,
                             char **argv, int index) {
    const char *option = argv[index];
    bool known = false;
    for (int i = 0; names[i] != NULL && !known; i++) {
        known = strcmp(option, names[i]) == 0;
    }
    if (!known) {
        cli_error("unknown option '%s' for %s; run 'multiround %s --help'", option, command,
                  command);
        return NULL;
    }
    if (index + 1 >= argc) {
        cli_error("%s needs a value; run 'multiround %s --help'", option, command);
        return NULL;
    }
    return argv[index + 1];
}

int cli_parse_shared_option(int argc, char **argv, int *index) {
    if (strcmp(argv[*index], "--threads") != 0) {
        return 0;
    }
    int64_t threads = 0;
    const char *text = *index + 1 < argc ? argv[*index + 1] : NULL;
    if (!cli_parse_int64("--threads", text, 0, 4096, &threads)) {
        return -1;
    }
    mr_threads_set((int)threads);
    *index += 1;
    return 1;
}

void cli_print_shared_options(FILE *out) {
    fprintf(out, "  --threads N   threads for kernels and BLAS (default: 0, one per core)\n"
                 "  --help        print this help and exit\n");
}

double cli_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

void cli_progress_init(cli_progress *progress, int64_t total, FILE *out) {
    progress->total = total;
    progress->every = total >= 10 ? total / 10 : 1;
    progress->terminal = isatty(fileno(out)) != 0;
}

void cli_progress_update(cli_progress *progress, FILE *out, int64_t step,
                         const char *detail) {
    bool last = step >= progress->total;
    if (!progress->terminal) {
        if (step % progress->every == 0 || step == 1 || last) {
            fprintf(out, "step %lld/%lld %s\n", (long long)step, (long long)progress->total,
                    detail);
            fflush(out);
        }
        return;
    }

    /* Redraw the line in place; the last update ends it. */
    int filled = progress->total > 0 ? (int)(PROGRESS_BAR_WIDTH * step / progress->total) : 0;
    char bar[PROGRESS_BAR_WIDTH + 1];
    for (int i = 0; i < PROGRESS_BAR_WIDTH; i++) {
        bar[i] = i < filled ? '#' : '.';
    }
    bar[PROGRESS_BAR_WIDTH] = '\0';
    fprintf(out, "\r[%s] %lld/%lld %s\033[K", bar, (long long)step,
            (long long)progress->total, detail);
    if (last) {
        fputc('\n', out);
    }
    fflush(out);
}
