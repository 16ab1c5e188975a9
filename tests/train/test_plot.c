/*
 * SVG plots: tick choices and labels for hand-made ranges, well-formed
 * XML, exact line coordinates with and without smoothing, NaN and
 * infinities left out and reported, integer ticks on integer axes, the
 * default limit on panels, and clear errors for empty logs and unknown
 * metrics.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/plot.h"
#include "test.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* A metrics table of one column, built by hand; present is 0 where a
 * value is NAN_ABSENT. */
#define NAN_ABSENT -999.0

typedef struct table {
    mr_runlog_data data;
    int64_t steps[16];
    char *names[2];
    double values[16];
    unsigned char present[16];
} table;

static void table_init(table *t, const char *metric, const int64_t *steps, const double *values,
                       int n) {
    memset(t, 0, sizeof *t);
    t->names[0] = (char *)metric;
    for (int i = 0; i < n; i++) {
        t->steps[i] = steps[i];
        t->values[i] = values[i];
        t->present[i] = values[i] != NAN_ABSENT;
    }
    t->data.n_rows = n;
    t->data.n_columns = 1;
    t->data.steps = t->steps;
    t->data.names = t->names;
    t->data.values = t->values;
    t->data.present = t->present;
}

/*
 * Checks that text is well-formed XML as far as an SVG writer can get it
 * wrong: tags nest and close, attribute values are quoted, and every & starts
 * an entity. Returns false and reports the first fault.
 */
static bool check_xml(const char *text) {
    const char *stack[64];
    size_t lengths[64];
    int depth = 0;
    const char *c = text;
    if (strncmp(c, "<?xml ", 6) == 0) {
        c = strstr(c, "?>");
        if (c == NULL) {
            mr_test_fail(__FILE__, __LINE__, "the XML declaration is not closed");
            return false;
        }
        c += 2;
    }

    for (; *c != '\0'; c++) {
        if (*c == '&') {
            const char *entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
            bool known = false;
            for (int i = 0; i < 5; i++) {
                known = known || strncmp(c, entities[i], strlen(entities[i])) == 0;
            }
            if (!known) {
                mr_test_fail(__FILE__, __LINE__, "bare & at offset %ld", (long)(c - text));
                return false;
            }
            continue;
        }
        if (*c != '<') {
            continue;
        }

        bool closing = c[1] == '/';
        const char *name = c + (closing ? 2 : 1);
        size_t name_length = strcspn(name, " \t\n/>");
        const char *end = name + name_length;
        /* Skip attributes, each name="value". */
        while (*end != '>' && *end != '\0') {
            if (*end == '"') {
                const char *close = strchr(end + 1, '"');
                if (close == NULL || memchr(end + 1, '<', (size_t)(close - end - 1)) != NULL) {
                    mr_test_fail(__FILE__, __LINE__, "bad attribute at offset %ld",
                                 (long)(end - text));
                    return false;
                }
                end = close;
            }
            end++;
        }
        if (*end == '\0' || name_length == 0) {
            mr_test_fail(__FILE__, __LINE__, "unclosed tag at offset %ld", (long)(c - text));
            return false;
        }

        if (closing) {
            if (depth == 0 || lengths[depth - 1] != name_length ||
                strncmp(stack[depth - 1], name, name_length) != 0) {
                mr_test_fail(__FILE__, __LINE__, "</%.*s> at offset %ld closes another tag",
                             (int)name_length, name, (long)(c - text));
                return false;
            }
            depth--;
        } else if (end[-1] != '/') {
            if (depth == 64) {
                mr_test_fail(__FILE__, __LINE__, "tags nest too deep");
                return false;
            }
            stack[depth] = name;
            lengths[depth] = name_length;
            depth++;
        }
        c = end;
    }
    if (depth != 0) {
        mr_test_fail(__FILE__, __LINE__, "%d tags left open, the first <%.*s>", depth,
                     (int)lengths[0], stack[0]);
        return false;
    }
    return true;
}

/* Number of times needle occurs in text. */
static int count_occurrences(const char *text, const char *needle) {
    int count = 0;
    for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + 1, needle)) {
        count++;
    }
    return count;
}

/* The last warning logged, for checking reports. */
static char last_warning[512];
static int warnings;

static void capture_log(mr_log_level level, const char *subsystem, const char *message,
                        void *user_data) {
    (void)user_data;
    if (level == MR_LOG_WARN && strcmp(subsystem, "plot") == 0) {
        snprintf(last_warning, sizeof last_warning, "%s", message);
        warnings++;
    }
}

/* ------------------------------------------------------------------------
 * Ticks
 * ------------------------------------------------------------------------ */

static void ticks_for_hand_made_ranges(void) {
    struct {
        double low, high;
        int target;
        double first, step;
        int count;
    } cases[] = {
        {0, 10, 5, 0, 2, 6},            /* 2.5 per interval rounds to 2 */
        {0, 1, 5, 0, 0.2, 6},
        {0.3, 9.7, 5, 0, 2, 6},         /* the ends widen to ticks */
        {-3, 17, 5, -5, 5, 6},
        {1e-4, 3e-4, 5, 1e-4, 5e-5, 5},
        {100, 100, 5, 90, 5, 5},        /* one value: 10% either side */
        {0, 0, 5, -1, 0.5, 5},
        {0, 1000, 3, 0, 500, 3},
        {0, 1, 4, 0, 0.5, 3},           /* 0.33 rounds to 0.5 */
        {0.3, 0.7, 5, 0.3, 0.1, 5},     /* 0.3 / 0.1 is just under 3 in doubles */
        {2.2, 2.8, 5, 2.2, 0.2, 4},
        {0, 299, 3, 0, 100, 4},         /* 149.5 has mantissa 1.495, below 1.5 */
        {1, 7, 1, 0, 5, 3},             /* target 1 counts as 2 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double first = -1, step = -1;
        int count = -1;
        mr_error err;
        CHECK_STATUS(mr_plot_ticks(cases[i].low, cases[i].high, cases[i].target, &first, &step,
                                   &count, &err),
                     MR_OK);
        if (fabs(first - cases[i].first) > 1e-12 * fmax(1, fabs(cases[i].first)) ||
            fabs(step - cases[i].step) > 1e-12 * cases[i].step || count != cases[i].count) {
            mr_test_fail(__FILE__, __LINE__,
                         "case %zu [%g, %g] target %d: got first %.17g step %.17g count %d, "
                         "expected %g %g %d",
                         i, cases[i].low, cases[i].high, cases[i].target, first, step, count,
                         cases[i].first, cases[i].step, cases[i].count);
        }
    }
}

static void ticks_reject_bad_ranges(void) {
    double first, step;
    int count;
    mr_error err;
    CHECK_STATUS(mr_plot_ticks(2, 1, 5, &first, &step, &count, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_plot_ticks(NAN, 1, 5, &first, &step, &count, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_plot_ticks(0, INFINITY, 5, &first, &step, &count, &err),
                 MR_ERR_INVALID_ARGUMENT);
}

static void tick_labels(void) {
    struct {
        double value, step;
        const char *expected;
    } cases[] = {
        {0.4, 0.2, "0.4"},
        {1000, 500, "1000"},
        {-3, 1, "-3"},
        {0.25, 0.05, "0.25"},
        {0.0001, 5e-5, "1.0e-4"},
        {0.00015, 5e-5, "1.5e-4"},
        {1.5e-5, 5e-6, "1.5e-5"},
        {2e6, 5e5, "2.0e6"},
        {0, 0.2, "0"},
        {5.551115123125783e-17, 0.1, "0"}, /* 0.1 * 3 - 0.3 */
        {0.30000000000000004, 0.1, "0.3"},
        {12000, 2000, "12000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char label[48];
        mr_plot_format_tick(cases[i].value, cases[i].step, label, sizeof label);
        if (strcmp(label, cases[i].expected) != 0) {
            mr_test_fail(__FILE__, __LINE__, "case %zu: %.17g with step %g gives '%s', expected "
                         "'%s'",
                         i, cases[i].value, cases[i].step, label, cases[i].expected);
        }
    }
}

/* ------------------------------------------------------------------------
 * Charts
 * ------------------------------------------------------------------------ */

static void plot_draws_exact_line(void) {
    /* Steps 0..3 map onto x 76..780; values 0..9 onto an axis of 0..10
     * whose pixels run from 252 (bottom) up to 52. */
    int64_t steps[] = {0, 1, 2, 3};
    double values[] = {0, 3, 6, 9};
    table t;
    table_init(&t, "loss", steps, values, 4);
    mr_plot_run run = {"run-a", &t.data};
    char *svg = NULL;
    mr_plot_summary summary;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, NULL, &svg, &summary, &err), MR_OK);
    if (svg == NULL) {
        return;
    }
    CHECK(check_xml(svg));
    CHECK_INT_EQ(summary.n_panels, 1);
    CHECK_INT_EQ(summary.points_drawn, 4);
    CHECK_INT_EQ(summary.points_skipped, 0);
    CHECK(strstr(svg, "points=\"76.00,252.00 310.67,192.00 545.33,132.00 780.00,72.00\"") !=
          NULL);
    CHECK_INT_EQ(count_occurrences(svg, "<polyline"), 1);

    /* Value ticks 0, 2, ..., 10 and whole step ticks 0, 1, 2, 3. */
    CHECK(strstr(svg, "text-anchor=\"end\">10</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"end\">8</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">3</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">2.5</text>") == NULL);
    CHECK(strstr(svg, ">run-a</text>") != NULL);
    CHECK(strstr(svg, ">loss</text>") != NULL);
    CHECK(strstr(svg, ">step</text>") != NULL);
    free(svg);
}

static void plot_smooths_moving_average(void) {
    int64_t steps[] = {0, 1, 2, 3};
    double values[] = {0, 3, 6, 9};
    table t;
    table_init(&t, "loss", steps, values, 4);
    mr_plot_run run = {"run-a", &t.data};
    mr_plot_options options = {.smooth = 2};
    char *svg = NULL;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, &options, &svg, NULL, &err), MR_OK);
    if (svg == NULL) {
        return;
    }
    CHECK(check_xml(svg));
    /* The raw line stays, faint; the averages 0, 1.5, 4.5, 7.5 are drawn
     * solid on top. */
    CHECK_INT_EQ(count_occurrences(svg, "<polyline"), 2);
    CHECK(strstr(svg, "stroke-opacity=\"0.30\" stroke-linejoin=\"round\" points=\"76.00,252.00 "
                      "310.67,192.00") != NULL);
    CHECK(strstr(svg, "stroke-opacity=\"1.00\" stroke-linejoin=\"round\" points=\"76.00,252.00 "
                      "310.67,222.00 545.33,162.00 780.00,102.00\"") != NULL);
    CHECK(strstr(svg, "moving average of 2 points") != NULL);
    free(svg);
}

static void plot_skips_and_reports_nonfinite(void) {
    int64_t steps[] = {1, 2, 3, 4, 5, 6, 7};
    double values[] = {4, NAN, 3, INFINITY, 2, NAN_ABSENT, -INFINITY};
    table t;
    table_init(&t, "loss", steps, values, 7);
    mr_plot_run run = {"diverged", &t.data};

    warnings = 0;
    last_warning[0] = '\0';
    mr_log_set_callback(capture_log, NULL);
    char *svg = NULL;
    mr_plot_summary summary;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, NULL, &svg, &summary, &err), MR_OK);
    mr_log_set_callback(NULL, NULL);
    if (svg == NULL) {
        return;
    }
    CHECK(check_xml(svg));
    CHECK_INT_EQ(summary.points_drawn, 3);
    CHECK_INT_EQ(summary.points_skipped, 3);
    CHECK_INT_EQ(warnings, 1);
    CHECK(strstr(last_warning, "diverged: left out 3 NaN or infinite values of loss, the first "
                               "at step 2") != NULL);
    CHECK(strstr(svg, ">(3 NaN or infinite values left out)</tspan>") != NULL);
    /* Each NaN or infinity breaks the line, so the three finite values are
     * single dots; the absent row at step 6 does not break it. */
    CHECK_INT_EQ(count_occurrences(svg, "<polyline"), 0);
    CHECK_INT_EQ(count_occurrences(svg, "<circle"), 3);
    free(svg);
}

static void plot_overlays_runs(void) {
    int64_t steps_a[] = {0, 10, 20};
    double loss_a[] = {3, 2, 1};
    int64_t steps_b[] = {0, 10, 20, 30, 40};
    double loss_b[] = {3, 2.5, 2, 1.5, 1};
    table a, b;
    table_init(&a, "loss", steps_a, loss_a, 3);
    table_init(&b, "loss", steps_b, loss_b, 5);
    mr_plot_run runs[] = {{"lr=1e-3 & warmup", &a.data}, {"<baseline>", &b.data}};
    char *svg = NULL;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(runs, 2, NULL, &svg, NULL, &err), MR_OK);
    if (svg == NULL) {
        return;
    }
    CHECK(check_xml(svg));
    CHECK_INT_EQ(count_occurrences(svg, "<polyline"), 2);
    CHECK(strstr(svg, "stroke=\"#4e79a7\" stroke-width=\"1.5\"") != NULL);
    CHECK(strstr(svg, "stroke=\"#f28e2b\" stroke-width=\"1.5\"") != NULL);
    CHECK(strstr(svg, ">lr=1e-3 &amp; warmup</text>") != NULL);
    CHECK(strstr(svg, ">&lt;baseline&gt;</text>") != NULL);
    /* The shared step axis spans both runs: run a ends at step 20, the
     * middle of 0..40. */
    CHECK(strstr(svg, "428.00,") != NULL);
    free(svg);
}

static void plot_panels_follow_requested_metrics(void) {
    mr_runlog_data data = {0};
    int64_t steps[] = {1, 2};
    char *names[] = {"elapsed_s", "loss", "lr"};
    double values[] = {0.5, 2.0, 0.1, 1.0, 1.5, 0.2};
    unsigned char present[] = {1, 1, 1, 1, 1, 1};
    data.n_rows = 2;
    data.n_columns = 3;
    data.steps = steps;
    data.names = names;
    data.values = values;
    data.present = present;
    mr_plot_run run = {"run", &data};

    /* By default every column but elapsed_s gets a panel. */
    char *svg = NULL;
    mr_plot_summary summary;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, NULL, &svg, &summary, &err), MR_OK);
    CHECK_INT_EQ(summary.n_panels, 2);
    CHECK(svg != NULL);
    CHECK(svg == NULL || strstr(svg, ">elapsed_s</text>") == NULL);
    free(svg);

    const char *wanted[] = {"lr", "elapsed_s"};
    mr_plot_options options = {.metrics = wanted, .n_metrics = 2};
    CHECK_STATUS(mr_plot_render_svg(&run, 1, &options, &svg, &summary, &err), MR_OK);
    CHECK_INT_EQ(summary.n_panels, 2);
    if (svg != NULL) {
        const char *lr = strstr(svg, ">lr</text>");
        const char *elapsed = strstr(svg, ">elapsed_s</text>");
        CHECK(lr != NULL);
        CHECK(elapsed != NULL);
        CHECK(lr < elapsed);
        CHECK(strstr(svg, ">loss</text>") == NULL);
    }
    free(svg);

    const char *unknown[] = {"accuracy"};
    options.metrics = unknown;
    options.n_metrics = 1;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, &options, &svg, NULL, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(svg == NULL);
    CHECK(strstr(err.message, "'accuracy'") != NULL);
}

/* A run of 4 steps gets ticks at whole steps, and a metric whose values
 * are all integers gets whole-number ticks too. */
static void plot_integer_axes_get_integer_ticks(void) {
    table t;
    int64_t steps[] = {0, 1, 2, 3, 4};
    double values[] = {3, 4, 3, 4, 4};
    table_init(&t, "tokens", steps, values, 5);
    mr_plot_run run = {"run", &t.data};
    char *svg = NULL;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, NULL, &svg, NULL, &err), MR_OK);
    if (svg == NULL) {
        return;
    }
    CHECK(strstr(svg, "text-anchor=\"middle\">0.5</text>") == NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">1.5</text>") == NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">1</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">4</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"end\">3.2</text>") == NULL);
    CHECK(strstr(svg, "text-anchor=\"end\">3</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"end\">4</text>") != NULL);
    free(svg);

    /* Fractional values keep fractional ticks. */
    double fractions[] = {3.1, 3.5, 3.3, 3.9, 3.6};
    table_init(&t, "loss", steps, fractions, 5);
    CHECK_STATUS(mr_plot_render_svg(&run, 1, NULL, &svg, NULL, &err), MR_OK);
    CHECK(svg != NULL && strstr(svg, "text-anchor=\"end\">3.2</text>") != NULL);
    free(svg);
}

/* Without --metrics a chart of 19 metrics draws 6 panels, losses first,
 * and names the 13 it leaves out. */
static void plot_default_panels_losses_first(void) {
    enum { COLUMNS = 20 };
    char *names[COLUMNS];
    char storage[COLUMNS][16];
    names[0] = "elapsed_s";
    names[1] = "lr";
    for (int i = 2; i < COLUMNS - 2; i++) {
        snprintf(storage[i], sizeof storage[i], "m%d", i - 1);
        names[i] = storage[i];
    }
    names[COLUMNS - 2] = "eval/loss";
    names[COLUMNS - 1] = "loss";
    int64_t steps[] = {1, 2};
    double values[2 * COLUMNS];
    unsigned char present[2 * COLUMNS];
    for (int i = 0; i < 2 * COLUMNS; i++) {
        values[i] = i;
        present[i] = 1;
    }
    mr_runlog_data data = {.n_rows = 2, .n_columns = COLUMNS, .steps = steps, .names = names,
                           .values = values, .present = present};
    mr_plot_run run = {"run", &data};

    char *svg = NULL;
    mr_plot_summary summary;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, NULL, &svg, &summary, &err), MR_OK);
    CHECK_INT_EQ(summary.n_panels, MR_PLOT_DEFAULT_PANELS);
    CHECK_INT_EQ(summary.metrics_left_out, 13);
    CHECK(strncmp(summary.left_out_names, "m4, m5, ", 8) == 0);
    CHECK(strstr(summary.left_out_names, "m16") != NULL);
    if (svg != NULL) {
        const char *eval_loss = strstr(svg, ">eval/loss</text>");
        const char *loss = strstr(svg, ">loss</text>");
        const char *lr = strstr(svg, ">lr</text>");
        CHECK(eval_loss != NULL);
        CHECK(loss != NULL);
        CHECK(lr != NULL);
        CHECK(eval_loss < loss);
        CHECK(loss < lr);
        CHECK(strstr(svg, ">m3</text>") != NULL);
        CHECK(strstr(svg, ">m4</text>") == NULL);
        CHECK(strstr(svg, "(13 more metrics not drawn; choose with --metrics)") != NULL);
    }
    free(svg);

    /* max_panels raises the limit; requested metrics have none. */
    mr_plot_options options = {.max_panels = 100};
    CHECK_STATUS(mr_plot_render_svg(&run, 1, &options, &svg, &summary, &err), MR_OK);
    CHECK_INT_EQ(summary.n_panels, 19);
    CHECK_INT_EQ(summary.metrics_left_out, 0);
    free(svg);
    const char *wanted[] = {"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"};
    options = (mr_plot_options){.metrics = wanted, .n_metrics = 8};
    CHECK_STATUS(mr_plot_render_svg(&run, 1, &options, &svg, &summary, &err), MR_OK);
    CHECK_INT_EQ(summary.n_panels, 8);
    CHECK_INT_EQ(summary.metrics_left_out, 0);
    free(svg);
}

static void plot_rejects_empty_and_all_nonfinite(void) {
    mr_runlog_data empty = {0};
    mr_plot_run run = {"runs/empty", &empty};
    char *svg = NULL;
    mr_error err;
    CHECK_STATUS(mr_plot_render_svg(&run, 1, NULL, &svg, NULL, &err), MR_ERR_FORMAT);
    CHECK(svg == NULL);
    CHECK(strstr(err.message, "'runs/empty' has no lines") != NULL);

    int64_t steps[] = {1, 2};
    double values[] = {NAN, INFINITY};
    table t;
    table_init(&t, "loss", steps, values, 2);
    mr_plot_run nonfinite = {"runs/nan", &t.data};
    mr_log_set_callback(capture_log, NULL);
    CHECK_STATUS(mr_plot_render_svg(&nonfinite, 1, NULL, &svg, NULL, &err), MR_ERR_FORMAT);
    mr_log_set_callback(NULL, NULL);
    CHECK(svg == NULL);
    CHECK(strstr(err.message, "no finite value to draw (2 NaN or infinite values left out)") !=
          NULL);

    CHECK_STATUS(mr_plot_render_svg(&run, 0, NULL, &svg, NULL, &err), MR_ERR_INVALID_ARGUMENT);
}

static void plot_writes_file_xmllint_accepts(void) {
    int64_t steps[] = {0, 100, 200, 300};
    double values[] = {2.5, 1.75, 1.5, 1.25};
    table t;
    table_init(&t, "loss", steps, values, 4);
    mr_plot_run run = {"run", &t.data};

    const char *base = getenv("TMPDIR");
    char folder[256], path[512];
    snprintf(folder, sizeof folder, "%s/mr_plot_XXXXXX", base != NULL ? base : "/tmp");
    CHECK(mkdtemp(folder) != NULL);
    snprintf(path, sizeof path, "%s/metrics.svg", folder);
    mr_error err;
    CHECK_STATUS(mr_plot_write_svg(path, &run, 1, NULL, NULL, &err), MR_OK);
    CHECK(access(path, R_OK) == 0);

    /* xmllint (libxml2-utils) checks the XML fully when it is installed. */
    if (system("command -v xmllint > /dev/null 2>&1") == 0) {
        char command[700];
        snprintf(command, sizeof command, "xmllint --noout '%s'", path);
        CHECK_INT_EQ(system(command), 0);
    } else {
        fprintf(stderr, "note: xmllint is not installed; only the built-in XML check ran\n");
    }
    unlink(path);
    rmdir(folder);
}

int main(void) {
    MR_RUN(ticks_for_hand_made_ranges);
    MR_RUN(ticks_reject_bad_ranges);
    MR_RUN(tick_labels);
    MR_RUN(plot_draws_exact_line);
    MR_RUN(plot_smooths_moving_average);
    MR_RUN(plot_skips_and_reports_nonfinite);
    MR_RUN(plot_overlays_runs);
    MR_RUN(plot_panels_follow_requested_metrics);
    MR_RUN(plot_integer_axes_get_integer_ticks);
    MR_RUN(plot_default_panels_losses_first);
    MR_RUN(plot_rejects_empty_and_all_nonfinite);
    MR_RUN(plot_writes_file_xmllint_accepts);
    return mr_test_finish();
}
