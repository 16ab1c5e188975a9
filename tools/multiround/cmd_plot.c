/*
 * `multiround plot RUN_DIR... [-o FILE.svg] [--metrics a,b] [--smooth N]`:
 * draws the metrics.jsonl of one or more runs as an SVG line chart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "multiround/plot.h"
#include "multiround/runlog.h"

/* Most runs one chart overlays. */
#define PLOT_RUNS_MAX 16

static void print_help(void) {
    printf("usage: multiround plot RUN_DIR [RUN_DIR...] [OPTIONS]\n\n"
           "Draws each metric of the runs' metrics.jsonl against the step as a line\n"
           "chart: one panel per metric, a shared step axis, one colored line per run.\n"
           "RUN_DIR is a run folder or a metrics.jsonl file. NaN and infinite values\n"
           "are left out and reported.\n\noptions:\n"
           "  -o FILE        SVG file to write (default: RUN_DIR/metrics.svg for one\n"
           "                 run; required for several)\n"
           "  --metrics LIST comma-separated metrics to draw, in order (default: the\n"
           "                 metrics whose names contain 'loss', then the others, 6 panels\n"
           "                 at most; elapsed_s is left out)\n"
           "  --smooth N     also draw a trailing moving average over N points\n"
           "                 (default: 0, none)\n"
           "  --width N      chart width in pixels (default: 800)\n");
    cli_print_shared_options(stdout, 17);
}

/* Resolves a RUN_DIR argument to its metrics file: the argument itself
 * when it is a file, else RUN_DIR/metrics.jsonl. */
static char *metrics_path(const char *argument) {
    struct stat info;
    size_t size = strlen(argument) + sizeof MR_RUNLOG_FILE + 2;
    char *path = malloc(size);
    if (path == NULL) {
        return NULL;
    }
    if (stat(argument, &info) == 0 && S_ISDIR(info.st_mode)) {
        snprintf(path, size, "%s/%s", argument, MR_RUNLOG_FILE);
    } else {
        snprintf(path, size, "%s", argument);
    }
    return path;
}

/* Splits a comma-separated list in place into at most max names. */
static int split_metrics(char *list, const char **names, int max) {
    int count = 0;
    for (char *name = strtok(list, ","); name != NULL && count < max;
         name = strtok(NULL, ",")) {
        names[count++] = name;
    }
    return count;
}

/* The parsed command line. */
typedef struct plot_args {
    const char *runs[PLOT_RUNS_MAX];
    int n_runs;
    const char *output;
    char *metrics_list;
    int64_t smooth;
    int64_t width;
} plot_args;

/* Returns 0 to go on, or the exit code to return (help or a usage error). */
static int parse_args(int argc, char **argv, plot_args *args) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help();
            return -1;
        }
        if (strcmp(arg, "-o") == 0 || strcmp(arg, "--metrics") == 0) {
            if (value == NULL) {
                cli_error("%s needs a value", arg);
                return 2;
            }
            if (arg[1] == 'o') {
                args->output = value;
            } else {
                args->metrics_list = argv[i + 1];
            }
            i++;
        } else if (strcmp(arg, "--smooth") == 0) {
            if (!cli_parse_int64(arg, value, 0, 100000, &args->smooth)) {
                return 2;
            }
            i++;
        } else if (strcmp(arg, "--width") == 0) {
            if (!cli_parse_int64(arg, value, 300, 10000, &args->width)) {
                return 2;
            }
            i++;
        } else if (arg[0] == '-') {
            int handled = cli_parse_shared_option(argc, argv, &i);
            if (handled < 0) {
                return 2;
            }
            if (handled == 0) {
                cli_error("unknown option '%s' for plot; run 'multiround plot --help'", arg);
                return 2;
            }
        } else if (args->n_runs == PLOT_RUNS_MAX) {
            cli_error("plot draws at most %d runs in one chart", PLOT_RUNS_MAX);
            return 2;
        } else {
            args->runs[args->n_runs++] = arg;
        }
    }

    if (args->n_runs == 0) {
        cli_error("plot needs a run folder; run 'multiround plot --help'");
        return 2;
    }
    if (args->n_runs > 1 && args->output == NULL) {
        cli_error("plot of several runs needs -o FILE.svg");
        return 2;
    }
    return 0;
}

/* Reads every run's metrics, draws the chart and reports what it left out. */
static int draw(const plot_args *args, const char *output, mr_runlog_data **tables,
                mr_plot_run *runs) {
    mr_error err;
    for (int i = 0; i < args->n_runs; i++) {
        char *path = metrics_path(args->runs[i]);
        mr_status status = path != NULL ? mr_runlog_read(path, &tables[i], &err)
                                        : mr_error_set(&err, MR_ERR_NO_MEMORY, "out of memory");
        if (status == MR_OK && tables[i]->dropped_last_line) {
            fprintf(stderr, "plot: %s: left out a partial last line\n", path);
        }
        free(path);
        if (status != MR_OK) {
            cli_error("%s", err.message);
            return 1;
        }
        runs[i].label = args->runs[i];
        runs[i].data = tables[i];
    }

    const char *names[64];
    char *list_copy = args->metrics_list != NULL ? strdup(args->metrics_list) : NULL;
    mr_plot_options options = {.smooth = (int)args->smooth, .width = (int)args->width};
    if (list_copy != NULL) {
        options.metrics = names;
        options.n_metrics = split_metrics(list_copy, names, 64);
    }
    mr_plot_summary summary;
    mr_status status = mr_plot_write_svg(output, runs, args->n_runs, &options, &summary, &err);
    free(list_copy);
    if (status != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    printf("plot: wrote %s: %d panel%s, %lld point%s", output, summary.n_panels,
           summary.n_panels == 1 ? "" : "s", (long long)summary.points_drawn,
           summary.points_drawn == 1 ? "" : "s");
    if (summary.points_skipped > 0) {
        printf(", %lld NaN or infinite value%s left out", (long long)summary.points_skipped,
               summary.points_skipped == 1 ? "" : "s");
    }
    printf("\n");
    if (summary.metrics_left_out > 0) {
        printf("plot: drew %d panel%s, losses first; left out %d more metric%s (%s); choose "
               "them with --metrics\n",
               summary.n_panels, summary.n_panels == 1 ? "" : "s", summary.metrics_left_out,
               summary.metrics_left_out == 1 ? "" : "s", summary.left_out_names);
    }
    return 0;
}

int cli_plot(int argc, char **argv) {
    plot_args args = {0};
    int code = parse_args(argc, argv, &args);
    if (code != 0) {
        return code < 0 ? 0 : code;
    }

    /* One run's chart goes beside its metrics by default. */
    char *default_output = NULL;
    const char *output = args.output;
    if (output == NULL) {
        char *metrics = metrics_path(args.runs[0]);
        char *slash = metrics != NULL ? strrchr(metrics, '/') : NULL;
        size_t size = metrics != NULL ? strlen(metrics) + 16 : 0;
        default_output = metrics != NULL ? malloc(size) : NULL;
        if (default_output != NULL) {
            snprintf(default_output, size, "%.*smetrics.svg",
                     slash != NULL ? (int)(slash - metrics + 1) : 0, metrics);
        }
        free(metrics);
        output = default_output;
        if (output == NULL) {
            cli_error("out of memory");
            return 1;
        }
    }

    mr_runlog_data *tables[PLOT_RUNS_MAX] = {0};
    mr_plot_run runs[PLOT_RUNS_MAX];
    code = draw(&args, output, tables, runs);
    for (int i = 0; i < args.n_runs; i++) {
        mr_runlog_data_free(tables[i]);
    }
    free(default_output);
    return code;
}
