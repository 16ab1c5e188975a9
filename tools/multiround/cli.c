/* Option parsing, error and progress helpers shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
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
    if (S_ISDIR(info.st_mode) && strcmp(what, "model") == 0) {
        cli_error("cannot open model %s: %s; this command reads a GGUF file, so convert a "
                  "Hugging Face folder first: multiround lm convert %s MODEL.gguf",
                  path, strerror(EISDIR), path);
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

/* Returns the value after the option at argv[index], or prints that the
 * option of command needs a value and returns NULL. */
static const char *option_argument(const char *command, int argc, char **argv, int index) {
    if (index + 1 >= argc) {
        cli_error("%s needs a value; run 'multiround %s --help'", argv[index], command);
        return NULL;
    }
    return argv[index + 1];
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
    return option_argument(command, argc, argv, index);
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

void cli_print_shared_options(FILE *out, int column) {
    /* Two spaces of indent, the option, then at least two spaces. */
    int width = column - 2 > 13 ? column - 2 : 13;
    fprintf(out, "  %-*sthreads for kernels and BLAS (default: 0, one per core)\n", width,
            "--threads N");
    fprintf(out, "  %-*sprint this help and exit\n", width, "--help");
}

void cli_sampling_init(cli_sampling *sampling, unsigned accepted, int64_t max_tokens) {
    mr_sampler_params defaults;
    mr_sampler_params_default(&defaults);
    memset(sampling, 0, sizeof *sampling);
    sampling->accepted = accepted;
    sampling->max_tokens = max_tokens;
    sampling->temperature = defaults.temperature;
    sampling->top_k = defaults.top_k;
    sampling->top_p = defaults.top_p;
    sampling->min_p = defaults.min_p;
    sampling->repeat_penalty = defaults.repeat_penalty;
    sampling->repeat_last_n = defaults.repeat_last_n;
    sampling->seed = (int64_t)defaults.seed;
}

/* The names of the sampling options. -n is the only short name. */
static const struct {
    unsigned bit;
    const char *name;
    const char *short_name;
} sampling_option_names[] = {
    {CLI_SAMPLING_MAX_TOKENS, "--max-tokens", "-n"},
    {CLI_SAMPLING_TEMPERATURE, "--temp", NULL},
    {CLI_SAMPLING_TOP_K, "--top-k", NULL},
    {CLI_SAMPLING_TOP_P, "--top-p", NULL},
    {CLI_SAMPLING_MIN_P, "--min-p", NULL},
    {CLI_SAMPLING_REPEAT_PENALTY, "--repeat-penalty", NULL},
    {CLI_SAMPLING_REPEAT_LAST_N, "--repeat-last-n", NULL},
    {CLI_SAMPLING_SEED, "--seed", NULL},
    {CLI_SAMPLING_STOP, "--stop", NULL},
};

/* Returns the CLI_SAMPLING_* bit of option, or 0 when it is no sampling
 * option. */
static unsigned sampling_option_bit(const char *option) {
    size_t count = sizeof sampling_option_names / sizeof sampling_option_names[0];
    for (size_t i = 0; i < count; i++) {
        const char *short_name = sampling_option_names[i].short_name;
        if (strcmp(option, sampling_option_names[i].name) == 0 ||
            (short_name != NULL && strcmp(option, short_name) == 0)) {
            return sampling_option_names[i].bit;
        }
    }
    return 0;
}

/* Parses text as the value of the sampling option with the given bit into
 * sampling. Returns false with an error printed when it is invalid. */
static bool parse_sampling_value(unsigned bit, const char *option, const char *text,
                                 cli_sampling *sampling) {
    switch (bit) {
    case CLI_SAMPLING_MAX_TOKENS:
        return cli_parse_int64(option, text, 1, 1000000, &sampling->max_tokens);
    case CLI_SAMPLING_TEMPERATURE:
        return cli_parse_double(option, text, 0.0, 2.0, &sampling->temperature);
    case CLI_SAMPLING_TOP_K:
        return cli_parse_int64(option, text, 0, INT32_MAX, &sampling->top_k);
    case CLI_SAMPLING_TOP_P:
        return cli_parse_double(option, text, 1e-6, 1.0, &sampling->top_p);
    case CLI_SAMPLING_MIN_P:
        return cli_parse_double(option, text, 0.0, 1.0, &sampling->min_p);
    case CLI_SAMPLING_REPEAT_PENALTY:
        return cli_parse_double(option, text, 1e-3, 100.0, &sampling->repeat_penalty);
    case CLI_SAMPLING_REPEAT_LAST_N:
        return cli_parse_int64(option, text, -1, INT32_MAX, &sampling->repeat_last_n);
    case CLI_SAMPLING_SEED:
        return cli_parse_int64(option, text, INT64_MIN, INT64_MAX, &sampling->seed);
    case CLI_SAMPLING_STOP:
        if (sampling->n_stop == CLI_STOP_MAX || text[0] == '\0') {
            cli_error("--stop takes a non-empty text, at most %d times", CLI_STOP_MAX);
            return false;
        }
        sampling->stops[sampling->n_stop++] = text;
        return true;
    default:
        return false;
    }
}

int cli_parse_sampling_option(const char *command, int argc, char **argv, int *index,
                              cli_sampling *sampling) {
    const char *option = argv[*index];
    unsigned bit = sampling_option_bit(option);
    if ((bit & sampling->accepted) == 0) {
        return 0;
    }
    const char *text = option_argument(command, argc, argv, *index);
    if (text == NULL || !parse_sampling_value(bit, option, text, sampling)) {
        return -1;
    }
    sampling->given |= bit;
    *index += 1;
    return 1;
}

void cli_print_sampling_options(FILE *out, const cli_sampling *defaults,
                                const char *seed_default) {
    unsigned accepted = defaults->accepted;
    if (accepted & CLI_SAMPLING_MAX_TOKENS) {
        fprintf(out,
                "  -n, --max-tokens N      output tokens per answer at most (default: %lld)\n",
                (long long)defaults->max_tokens);
    }
    if (accepted & CLI_SAMPLING_TEMPERATURE) {
        fprintf(out,
                "  --temp T                temperature in [0, 2]; 0 is greedy (default: %g)\n",
                defaults->temperature);
    }
    if (accepted & CLI_SAMPLING_TOP_K) {
        fprintf(out,
                "  --top-k K               keep the K most likely tokens; 0 is off "
                "(default: %lld)\n",
                (long long)defaults->top_k);
    }
    if (accepted & CLI_SAMPLING_TOP_P) {
        fprintf(out,
                "  --top-p P               keep the smallest set with probability P; 1 is off\n"
                "                          (default: %g)\n",
                defaults->top_p);
    }
    if (accepted & CLI_SAMPLING_MIN_P) {
        fprintf(out,
                "  --min-p P               drop tokens below P times the top probability;\n"
                "                          0 is off (default: %g)\n",
                defaults->min_p);
    }
    if (accepted & CLI_SAMPLING_REPEAT_PENALTY) {
        fprintf(out,
                "  --repeat-penalty X      penalty on repeated tokens; 1 is off (default: %g)\n",
                defaults->repeat_penalty);
    }
    if (accepted & CLI_SAMPLING_REPEAT_LAST_N) {
        fprintf(out,
                "  --repeat-last-n N       tokens the penalty looks back; -1 is all\n"
                "                          (default: %lld)\n",
                (long long)defaults->repeat_last_n);
    }
    if (accepted & CLI_SAMPLING_STOP) {
        fprintf(out,
                "  --stop TEXT             end the output before TEXT; repeatable, up to %d\n",
                CLI_STOP_MAX);
    }
    if (accepted & CLI_SAMPLING_SEED) {
        char number[32];
        snprintf(number, sizeof number, "%lld", (long long)defaults->seed);
        fprintf(out, "  --seed S                seed of the sampler (default: %s)\n",
                seed_default != NULL ? seed_default : number);
    }
}

void cli_sampling_to_sampler(const cli_sampling *sampling, mr_sampler_params *params) {
    params->temperature = (float)sampling->temperature;
    params->top_k = (int)sampling->top_k;
    params->top_p = (float)sampling->top_p;
    params->min_p = (float)sampling->min_p;
    params->repeat_penalty = (float)sampling->repeat_penalty;
    params->repeat_last_n = (int)sampling->repeat_last_n;
    params->seed = (uint64_t)sampling->seed;
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

/* ------------------------------------------------------------------------
 * Stop signals
 * ------------------------------------------------------------------------ */

/* The signal that requested a stop, or 0. An atomic_int is lock-free on
 * the platforms this builds for, so the handler may store to it while
 * OpenMP threads read it. */
static atomic_int stop_signal;

/* Whether SIGINT has the handler; it stays ignored in background jobs. */
static bool sigint_caught;

/* The default action, prepared outside the handler. */
static struct sigaction default_action;

/* The message of the first stop signal. On a terminal it starts on a new
 * line, after the progress bar and the echoed ^C. */
static const char stop_message[] =
    "\nmultiround: stopping after the current step to save a checkpoint; a second "
    "Ctrl-C or SIGTERM stops at once\n";
static bool stop_message_newline;

/* Records the signal and gives both stop signals their default action,
 * so that the next one ends the process. Only async-signal-safe calls may
 * run here, so the message is a constant written with write(). */
static void handle_stop_signal(int signal_number) {
    int saved_errno = errno;
    atomic_store(&stop_signal, signal_number);
    sigaction(SIGTERM, &default_action, NULL);
    if (sigint_caught) {
        sigaction(SIGINT, &default_action, NULL);
    }
    const char *text = stop_message_newline ? stop_message : stop_message + 1;
    size_t length = sizeof stop_message - (stop_message_newline ? 1 : 2);
    ssize_t ignored = write(STDERR_FILENO, text, length);
    (void)ignored;
    errno = saved_errno;
}

void cli_catch_stop_signals(void) {
    stop_message_newline = isatty(STDERR_FILENO) != 0;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);

    /* Ctrl-C in `multiround ... | tee log` also ends tee, and a write to
     * its pipe must then fail with EPIPE instead of killing the run
     * before its checkpoint. */
    signal(SIGPIPE, SIG_IGN);

    struct sigaction action, previous;
    memset(&action, 0, sizeof action);
    action.sa_handler = handle_stop_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, SIGINT);
    sigaddset(&action.sa_mask, SIGTERM);
    sigaction(SIGTERM, &action, NULL);
    sigint_caught = sigaction(SIGINT, NULL, &previous) == 0 && previous.sa_handler != SIG_IGN;
    if (sigint_caught) {
        sigaction(SIGINT, &action, NULL);
    }
}

bool cli_stop_requested(void *user_data) {
    (void)user_data;
    return atomic_load(&stop_signal) != 0;
}

int cli_exit_by_stop_signal(void) {
    int signal_number = atomic_load(&stop_signal);
    if (signal_number == 0) {
        signal_number = SIGINT;
    }
    fflush(NULL);
    sigaction(signal_number, &default_action, NULL);
    raise(signal_number);
    return 128 + signal_number;
}
