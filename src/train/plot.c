/*
 * SVG line charts of metrics logs: tick choice, tick labels and the
 * layout of panels, lines and the legend.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/fileio.h"
#include "multiround/plot.h"

/* Defaults of mr_plot_options, in pixels. */
#define DEFAULT_WIDTH 800
#define DEFAULT_PANEL_HEIGHT 200

/* Layout, in pixels. */
#define MARGIN_LEFT 76
#define MARGIN_RIGHT 20
#define LEGEND_HEIGHT 30
#define PANEL_TITLE_HEIGHT 22
#define PANEL_GAP 14
#define X_AXIS_HEIGHT 44

/* Ticks wanted on a value axis; the step axis gets one per 100 pixels. */
#define Y_TICK_TARGET 5
#define PIXELS_PER_X_TICK 100

/* Tolerance, as a fraction of the step or mantissa, for a value on a tick
 * or a threshold. It absorbs the rounding of decimal fractions in doubles. */
#define TICK_EPSILON 1e-9

/* Line colors (the Tableau 10 palette), reused after the tenth run. */
static const char *const line_colors[] = {
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
};
#define LINE_COLOR_COUNT ((int)(sizeof line_colors / sizeof line_colors[0]))

/* ------------------------------------------------------------------------
 * Ticks
 * ------------------------------------------------------------------------ */

/* Returns 1, 2, 5 or 10 times 10^exponent nearest to raw on a log scale,
 * with the thresholds 1.5, 3 and 7 on the mantissa. */
static double nice_step(double raw) {
    int exponent = (int)floor(log10(raw));
    double scale = exponent >= 0 ? pow(10.0, exponent) : 1.0 / pow(10.0, -exponent);
    double mantissa = raw / scale;
    if (mantissa < 1.0) {
        exponent -= 1;
        mantissa *= 10.0;
    } else if (mantissa >= 10.0) {
        exponent += 1;
        mantissa /= 10.0;
    }

    /* A mantissa within rounding of a threshold counts as on it, so that
     * (2.8 - 2.2) / 4, which is 0.14999999999999991 in doubles, gives 0.2. */
    double nice = 10.0;
    if (mantissa < 1.5 - TICK_EPSILON) {
        nice = 1.0;
    } else if (mantissa < 3.0 - TICK_EPSILON) {
        nice = 2.0;
    } else if (mantissa < 7.0 - TICK_EPSILON) {
        nice = 5.0;
    }
    /* Dividing by an exact power of ten keeps steps such as 0.2 as close to
     * the decimal as a double can be. */
    return exponent >= 0 ? nice * pow(10.0, exponent) : nice / pow(10.0, -exponent);
}

mr_status mr_plot_ticks(double low, double high, int target, double *first, double *step,
                        int *count, mr_error *err) {
    if (!isfinite(low) || !isfinite(high) || low > high) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "plot: ticks need finite bounds with low <= high, got %g and %g",
                            low, high);
    }
    if (target < 2) {
        target = 2;
    }
    if (target > MR_PLOT_TICKS_MAX / 2) {
        target = MR_PLOT_TICKS_MAX / 2;
    }

    /* A single value gets a range of 10% on either side, or -1 to 1 for 0. */
    if (low == high) {
        double half = low == 0 ? 1.0 : fabs(low) * 0.1;
        low -= half;
        high += half;
    }

    double chosen = nice_step((high - low) / (target - 1));
    double first_index = floor(low / chosen + TICK_EPSILON);
    double last_index = ceil(high / chosen - TICK_EPSILON);
    *first = first_index * chosen;
    *step = chosen;
    *count = (int)(last_index - first_index) + 1;
    return MR_OK;
}

void mr_plot_format_tick(double value, double step, char *out, size_t size) {
    if (fabs(value) < step * 1e-6) {
        snprintf(out, size, "0");
        return;
    }

    int step_exponent = (int)floor(log10(step) + TICK_EPSILON);
    if (step < 1e-4 || step >= 1e5) {
        /* Exponent notation with as many mantissa digits as the step needs. */
        int value_exponent = (int)floor(log10(fabs(value)) + TICK_EPSILON);
        double mantissa = value / pow(10.0, value_exponent);
        int digits = value_exponent - step_exponent;
        if (digits < 0) {
            digits = 0;
        }
        snprintf(out, size, "%.*fe%d", digits, mantissa, value_exponent);
        return;
    }

    int decimals = step_exponent < 0 ? -step_exponent : 0;
    snprintf(out, size, "%.*f", decimals, value);
}

/* ------------------------------------------------------------------------
 * A growing text buffer
 * ------------------------------------------------------------------------ */

typedef struct text_buffer {
    char *text;
    size_t length;
    size_t capacity;
    bool out_of_memory;
} text_buffer;

/* Appends printf-style text; after a failed allocation it does nothing and
 * leaves out_of_memory set. */
static void MR_PRINTF(2, 3) append(text_buffer *buffer, const char *fmt, ...) {
    if (buffer->out_of_memory) {
        return;
    }
    for (;;) {
        va_list args;
        va_start(args, fmt);
        size_t room = buffer->capacity - buffer->length;
        int needed = vsnprintf(buffer->text != NULL ? buffer->text + buffer->length : NULL,
                               room, fmt, args);
        va_end(args);
        if (needed < 0) {
            buffer->out_of_memory = true;
            return;
        }
        if ((size_t)needed < room) {
            buffer->length += (size_t)needed;
            return;
        }

        size_t grown = buffer->capacity < 4096 ? 4096 : buffer->capacity * 2;
        while (grown - buffer->length <= (size_t)needed) {
            grown *= 2;
        }
        char *bigger = realloc(buffer->text, grown);
        if (bigger == NULL) {
            buffer->out_of_memory = true;
            return;
        }
        buffer->text = bigger;
        buffer->capacity = grown;
    }
}

/* Appends text with the XML special characters escaped. */
static void append_escaped(text_buffer *buffer, const char *text) {
    for (const char *c = text; *c != '\0'; c++) {
        switch (*c) {
        case '&':
            append(buffer, "&amp;");
            break;
        case '<':
            append(buffer, "&lt;");
            break;
        case '>':
            append(buffer, "&gt;");
            break;
        case '"':
            append(buffer, "&quot;");
            break;
        case '\'':
            append(buffer, "&apos;");
            break;
        default:
            append(buffer, "%c", *c);
            break;
        }
    }
}

/* ------------------------------------------------------------------------
 * Chart layout
 * ------------------------------------------------------------------------ */

/* An axis: its ticks and the data range it maps onto pixels. */
typedef struct axis {
    double first;  /* first tick, the low end of the axis */
    double step;
    int count;
    double low, high;
} axis;

static mr_status axis_make(double low, double high, int target, axis *out, mr_error *err) {
    mr_status status = mr_plot_ticks(low, high, target, &out->first, &out->step, &out->count,
                                     err);
    out->low = out->first;
    out->high = out->first + (out->count - 1) * out->step;
    return status;
}

/* Makes an axis as axis_make does, but with a tick step of at least 1,
 * for data that are all integers such as steps. */
static mr_status axis_make_integers(double low, double high, int target, axis *out,
                                    mr_error *err) {
    mr_status status = axis_make(low, high, target, out, err);
    if (status != MR_OK || out->step >= 1.0) {
        return status;
    }

    /* A step below 1 means a range of a few units, so this gives few ticks. */
    double first = floor(low);
    double last = ceil(high);
    if (first == last) {
        first -= 1.0;
        last += 1.0;
    }
    out->first = first;
    out->step = 1.0;
    out->count = (int)(last - first) + 1;
    out->low = first;
    out->high = last;
    return MR_OK;
}

/* Maps value on the axis onto pixels from start (low) to end (high). */
static double axis_pixel(const axis *a, double value, double start, double end) {
    return start + (value - a->low) / (a->high - a->low) * (end - start);
}

/* One panel's metric: its column in each run and its value range. */
typedef struct panel {
    const char *metric;
    int *columns;          /* per run; -1 where the run lacks the metric */
    double low, high;      /* range of finite values over all runs */
    int64_t finite;        /* finite values over all runs */
    int64_t skipped;       /* NaN or infinite values over all runs */
    bool integers;         /* every finite value is an integer */
} panel;

/* The chart being drawn. */
typedef struct chart {
    const mr_plot_run *runs;
    int n_runs;
    int smooth;
    int width, panel_height;
    panel *panels;
    int n_panels;
    axis x;
    int metrics_left_out;      /* metrics past max_panels, not drawn */
    char left_out_names[256];
    bool left_out_cut;         /* left_out_names ends with "..." */
} chart;

/* True when the name is already a panel. */
static bool has_panel(const chart *c, const char *metric) {
    for (int i = 0; i < c->n_panels; i++) {
        if (strcmp(c->panels[i].metric, metric) == 0) {
            return true;
        }
    }
    return false;
}

/* Adds a panel for metric with its columns looked up in every run; false
 * when the metric is in no run. */
static bool add_panel(chart *c, const char *metric, int *columns) {
    bool found = false;
    for (int run = 0; run < c->n_runs; run++) {
        columns[run] = mr_runlog_data_column(c->runs[run].data, metric);
        found = found || columns[run] >= 0;
    }
    if (!found) {
        return false;
    }
    panel *p = &c->panels[c->n_panels++];
    p->metric = metric;
    p->columns = columns;
    p->low = INFINITY;
    p->high = -INFINITY;
    p->finite = 0;
    p->skipped = 0;
    p->integers = true;
    return true;
}

/* True for a metric that goes in the first panels: a loss. */
static bool is_loss_metric(const char *metric) {
    return strstr(metric, "loss") != NULL;
}

/* Counts a metric that max_panels leaves out and adds its name to the
 * list while the list has room, ending it with "..." when it is full. */
static void leave_out(chart *c, const char *metric) {
    const char *separator = c->metrics_left_out > 0 ? ", " : "";
    c->metrics_left_out++;
    if (c->left_out_cut) {
        return;
    }
    size_t used = strlen(c->left_out_names);
    size_t room = sizeof c->left_out_names - used;
    if (strlen(separator) + strlen(metric) + sizeof ", ..." > room) {
        snprintf(c->left_out_names + used, room, "%s...", separator);
        c->left_out_cut = true;
        return;
    }
    snprintf(c->left_out_names + used, room, "%s%s", separator, metric);
}

/* Chooses the panels: the requested metrics, or else the columns of
 * every run but elapsed_s, losses first, up to max_panels. columns has
 * room for max_panels * n_runs entries. */
static mr_status choose_panels(chart *c, const mr_plot_options *options, int max_panels,
                               int *columns, mr_error *err) {
    if (options->metrics != NULL) {
        for (int i = 0; i < options->n_metrics; i++) {
            const char *metric = options->metrics[i];
            if (has_panel(c, metric)) {
                continue;
            }
            if (!add_panel(c, metric, columns + (size_t)c->n_panels * (size_t)c->n_runs)) {
                return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                    "plot: no run has the metric '%s'; check the name against "
                                    "the keys in metrics.jsonl",
                                    metric);
            }
        }
        return MR_OK;
    }

    /* Pass 0 takes the losses and pass 1 the rest, each in first-seen order. */
    for (int pass = 0; pass < 2; pass++) {
        for (int run = 0; run < c->n_runs; run++) {
            const mr_runlog_data *data = c->runs[run].data;
            for (int column = 0; column < data->n_columns; column++) {
                const char *metric = data->names[column];
                if (strcmp(metric, MR_RUNLOG_ELAPSED) == 0 ||
                    is_loss_metric(metric) != (pass == 0) || has_panel(c, metric)) {
                    continue;
                }
                if (c->n_panels < max_panels) {
                    add_panel(c, metric, columns + (size_t)c->n_panels * (size_t)c->n_runs);
                    continue;
                }

                /* A metric in several runs is left out once. */
                bool seen = false;
                for (int earlier = 0; earlier < run && !seen; earlier++) {
                    seen = mr_runlog_data_column(c->runs[earlier].data, metric) >= 0;
                }
                if (!seen) {
                    leave_out(c, metric);
                }
            }
        }
    }
    return MR_OK;
}

/* Measures each panel's finite range and counts the values left out,
 * logging them per run and metric. */
static void measure_panels(chart *c) {
    for (int i = 0; i < c->n_panels; i++) {
        panel *p = &c->panels[i];
        for (int run = 0; run < c->n_runs; run++) {
            const mr_runlog_data *data = c->runs[run].data;
            int column = p->columns[run];
            if (column < 0) {
                continue;
            }

            int64_t skipped = 0;
            int64_t first_skipped_step = 0;
            for (int64_t row = 0; row < data->n_rows; row++) {
                size_t cell = (size_t)row * (size_t)data->n_columns + (size_t)column;
                if (!data->present[cell]) {
                    continue;
                }
                double value = data->values[cell];
                if (!isfinite(value)) {
                    if (skipped == 0) {
                        first_skipped_step = data->steps[row];
                    }
                    skipped++;
                    continue;
                }
                p->low = fmin(p->low, value);
                p->high = fmax(p->high, value);
                p->integers = p->integers && value == floor(value);
                p->finite++;
            }

            if (skipped > 0) {
                mr_log(MR_LOG_WARN, "plot",
                       "%s: left out %lld NaN or infinite value%s of %s, the first at step "
                       "%lld",
                       c->runs[run].label, (long long)skipped, skipped == 1 ? "" : "s",
                       p->metric, (long long)first_skipped_step);
            }
            p->skipped += skipped;
        }
    }
}

/* ------------------------------------------------------------------------
 * Drawing
 * ------------------------------------------------------------------------ */

/* Draws one stretch of finite points (at least one) as a polyline, or as a
 * dot when it has one point. */
static void draw_stretch(text_buffer *out, const double *xs, const double *ys, int64_t n,
                         const char *color, double opacity) {
    if (n == 1) {
        append(out, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2\" fill=\"%s\" fill-opacity=\"%.2f\"/>\n",
               xs[0], ys[0], color, opacity);
        return;
    }
    append(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                "stroke-opacity=\"%.2f\" stroke-linejoin=\"round\" points=\"",
           color, opacity);
    for (int64_t i = 0; i < n; i++) {
        append(out, "%s%.2f,%.2f", i > 0 ? " " : "", xs[i], ys[i]);
    }
    append(out, "\"/>\n");
}

/* Replaces ys[0..n) by its trailing moving average over window points. */
static void smooth_values(double *ys, int64_t n, int window, double *scratch) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        scratch[i] = ys[i];
        sum += ys[i];
        if (i >= window) {
            sum -= scratch[i - window];
        }
        int64_t used = i + 1 < window ? i + 1 : window;
        ys[i] = sum / (double)used;
    }
}

/* Draws one run's line in a panel whose plot area spans the given pixels.
 * Non-finite values end a stretch; rows without the metric do not. */
static bool draw_run_line(text_buffer *out, const chart *c, const panel *p, const axis *y,
                          int run, double left, double right, double top, double bottom) {
    const mr_runlog_data *data = c->runs[run].data;
    int column = p->columns[run];
    if (column < 0 || data->n_rows == 0) {
        return true;
    }

    double *xs = malloc((size_t)data->n_rows * sizeof *xs);
    double *ys = malloc((size_t)data->n_rows * sizeof *ys);
    double *values = malloc((size_t)data->n_rows * sizeof *values);
    double *scratch = malloc((size_t)data->n_rows * sizeof *scratch);
    if (xs == NULL || ys == NULL || values == NULL || scratch == NULL) {
        free(xs);
        free(ys);
        free(values);
        free(scratch);
        return false;
    }

    const char *color = line_colors[run % LINE_COLOR_COUNT];
    bool smoothing = c->smooth > 1;
    int64_t n = 0;
    for (int64_t row = 0; row <= data->n_rows; row++) {
        size_t cell = (size_t)row * (size_t)data->n_columns + (size_t)column;
        bool at_end = row == data->n_rows;
        if (!at_end && !data->present[cell]) {
            continue;
        }
        if (!at_end && isfinite(data->values[cell])) {
            xs[n] = axis_pixel(&c->x, (double)data->steps[row], left, right);
            values[n] = data->values[cell];
            n++;
            continue;
        }

        /* The end of the rows or a NaN or infinity ends the stretch. */
        if (n > 0) {
            for (int64_t i = 0; i < n; i++) {
                ys[i] = axis_pixel(y, values[i], bottom, top);
            }
            draw_stretch(out, xs, ys, n, color, smoothing ? 0.3 : 1.0);
            if (smoothing) {
                smooth_values(values, n, c->smooth, scratch);
                for (int64_t i = 0; i < n; i++) {
                    ys[i] = axis_pixel(y, values[i], bottom, top);
                }
                draw_stretch(out, xs, ys, n, color, 1.0);
            }
        }
        n = 0;
    }

    free(xs);
    free(ys);
    free(values);
    free(scratch);
    return true;
}

/* Draws vertical grid lines at the step ticks, and their labels when
 * labels is true. */
static void draw_x_grid(text_buffer *out, const chart *c, double left, double right,
                        double top, double bottom, bool labels) {
    for (int i = 0; i < c->x.count; i++) {
        double value = c->x.first + i * c->x.step;
        double x = axis_pixel(&c->x, value, left, right);
        append(out, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e3e3e3\"/>\n",
               x, top, x, bottom);
        if (labels) {
            char label[48];
            mr_plot_format_tick(value, c->x.step, label, sizeof label);
            append(out, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n", x,
                   bottom + 15, label);
        }
    }
}

/* Draws panel index i: title, grid, value ticks and a line per run. */
static mr_status draw_panel(text_buffer *out, const chart *c, int i, mr_error *err) {
    const panel *p = &c->panels[i];
    double left = MARGIN_LEFT;
    double right = c->width - MARGIN_RIGHT;
    double top = LEGEND_HEIGHT + i * (PANEL_TITLE_HEIGHT + c->panel_height + PANEL_GAP) +
                 PANEL_TITLE_HEIGHT;
    double bottom = top + c->panel_height;
    bool last = i == c->n_panels - 1;

    append(out, "<text x=\"%.2f\" y=\"%.2f\" font-weight=\"bold\">", left, top - 7);
    append_escaped(out, p->metric);
    if (p->skipped > 0) {
        /* dx rather than a leading space, which renderers may collapse. */
        append(out, "<tspan dx=\"6\" font-weight=\"normal\" fill=\"#b22222\">(%lld NaN or "
                    "infinite value%s left out)</tspan>",
               (long long)p->skipped, p->skipped == 1 ? "" : "s");
    }
    append(out, "</text>\n");

    draw_x_grid(out, c, left, right, top, bottom, last);
    if (p->finite == 0) {
        append(out, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" fill=\"#777777\">"
                    "no finite values</text>\n",
               (left + right) / 2, (top + bottom) / 2);
        append(out, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
                    "stroke=\"#888888\"/>\n",
               left, top, right - left, bottom - top);
        return MR_OK;
    }

    axis y;
    mr_status status = p->integers ? axis_make_integers(p->low, p->high, Y_TICK_TARGET, &y, err)
                                   : axis_make(p->low, p->high, Y_TICK_TARGET, &y, err);
    if (status != MR_OK) {
        return status;
    }
    for (int t = 0; t < y.count; t++) {
        double value = y.first + t * y.step;
        double pixel = axis_pixel(&y, value, bottom, top);
        char label[48];
        mr_plot_format_tick(value, y.step, label, sizeof label);
        append(out, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e3e3e3\"/>\n",
               left, pixel, right, pixel);
        append(out, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n", left - 6,
               pixel + 4, label);
    }

    for (int run = 0; run < c->n_runs; run++) {
        if (!draw_run_line(out, c, p, &y, run, left, right, top, bottom)) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "plot: out of memory drawing %s",
                                p->metric);
        }
    }
    append(out, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
                "stroke=\"#888888\"/>\n",
           left, top, right - left, bottom - top);
    return MR_OK;
}

/* Draws the legend: a colored line and the label of each run, and the
 * smoothing window when there is one. */
static void draw_legend(text_buffer *out, const chart *c) {
    double x = MARGIN_LEFT;
    for (int run = 0; run < c->n_runs; run++) {
        const char *color = line_colors[run % LINE_COLOR_COUNT];
        append(out, "<line x1=\"%.2f\" y1=\"16\" x2=\"%.2f\" y2=\"16\" stroke=\"%s\" "
                    "stroke-width=\"3\"/>\n",
               x, x + 18, color);
        append(out, "<text x=\"%.2f\" y=\"20\">", x + 24);
        append_escaped(out, c->runs[run].label);
        append(out, "</text>\n");
        /* An estimate of the label's width: 7 pixels per character at 12 px. */
        x += 24 + 7.0 * (double)strlen(c->runs[run].label) + 20;
    }
    if (c->smooth > 1) {
        append(out, "<text x=\"%.2f\" y=\"20\" fill=\"#555555\">(faint: raw values; solid: "
                    "moving average of %d points)</text>\n",
               x, c->smooth);
        x += 7.0 * 52;
    }
    if (c->metrics_left_out > 0) {
        append(out, "<text x=\"%.2f\" y=\"20\" fill=\"#555555\">(%d more metric%s not drawn; "
                    "choose with --metrics)</text>\n",
               x, c->metrics_left_out, c->metrics_left_out == 1 ? "" : "s");
    }
}

/* Sets the step axis from the smallest and largest step of any run. */
static mr_status make_x_axis(chart *c, mr_error *err) {
    double low = INFINITY;
    double high = -INFINITY;
    for (int run = 0; run < c->n_runs; run++) {
        const mr_runlog_data *data = c->runs[run].data;
        if (data->n_rows > 0) {
            low = fmin(low, (double)data->steps[0]);
            high = fmax(high, (double)data->steps[data->n_rows - 1]);
        }
    }
    int target = (c->width - MARGIN_LEFT - MARGIN_RIGHT) / PIXELS_PER_X_TICK;
    return axis_make_integers(low, high, target, &c->x, err);
}

/* Checks the runs and the options before any drawing. */
static mr_status check_runs(const mr_plot_run *runs, int n_runs, mr_error *err) {
    if (runs == NULL || n_runs < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "plot: no run to draw");
    }
    int64_t rows = 0;
    for (int run = 0; run < n_runs; run++) {
        if (runs[run].data == NULL || runs[run].label == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "plot: run %d has no metrics table or no label", run);
        }
        rows += runs[run].data->n_rows;
    }
    if (rows == 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "plot: the metrics log of '%s'%s has no lines; a run writes "
                            "metrics.jsonl as it trains",
                            runs[0].label, n_runs > 1 ? " and the other runs" : "");
    }
    return MR_OK;
}

/* Draws the whole chart into out once the panels are chosen and measured. */
static mr_status draw_chart(text_buffer *out, chart *c, mr_error *err) {
    mr_status status = make_x_axis(c, err);
    if (status != MR_OK) {
        return status;
    }

    int height = LEGEND_HEIGHT + c->n_panels * (PANEL_TITLE_HEIGHT + c->panel_height + PANEL_GAP) +
                 X_AXIS_HEIGHT - PANEL_GAP;
    append(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    append(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
                "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" "
                "font-size=\"12\">\n",
           c->width, height, c->width, height);
    append(out, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    draw_legend(out, c);

    for (int i = 0; i < c->n_panels; i++) {
        status = draw_panel(out, c, i, err);
        if (status != MR_OK) {
            return status;
        }
    }
    append(out, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">step</text>\n",
           (MARGIN_LEFT + c->width - MARGIN_RIGHT) / 2.0, height - 8);
    append(out, "</svg>\n");
    return MR_OK;
}

mr_status mr_plot_render_svg(const mr_plot_run *runs, int n_runs,
                             const mr_plot_options *options, char **svg,
                             mr_plot_summary *summary, mr_error *err) {
    *svg = NULL;
    mr_plot_options defaults = {0};
    if (options == NULL) {
        options = &defaults;
    }
    mr_status status = check_runs(runs, n_runs, err);
    if (status != MR_OK) {
        return status;
    }

    /* At most one panel per column of every run, or per requested metric. */
    int max_panels = options->metrics != NULL ? options->n_metrics : 0;
    if (options->metrics == NULL) {
        for (int run = 0; run < n_runs; run++) {
            max_panels += runs[run].data->n_columns;
        }
    }
    chart c = {.runs = runs, .n_runs = n_runs, .smooth = options->smooth,
               .width = options->width > 0 ? options->width : DEFAULT_WIDTH,
               .panel_height = options->panel_height > 0 ? options->panel_height
                                                          : DEFAULT_PANEL_HEIGHT};
    c.panels = calloc((size_t)max_panels + 1, sizeof *c.panels);
    int *columns = calloc(((size_t)max_panels + 1) * (size_t)n_runs, sizeof *columns);
    if (c.panels == NULL || columns == NULL) {
        free(c.panels);
        free(columns);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "plot: out of memory");
    }

    int limit = options->max_panels > 0 ? options->max_panels : MR_PLOT_DEFAULT_PANELS;
    status = choose_panels(&c, options, options->metrics == NULL && limit < max_panels ? limit
                                                                                    : max_panels,
                           columns, err);
    int64_t finite = 0;
    int64_t skipped = 0;
    if (status == MR_OK) {
        measure_panels(&c);
        for (int i = 0; i < c.n_panels; i++) {
            finite += c.panels[i].finite;
            skipped += c.panels[i].skipped;
        }
        if (finite == 0) {
            status = mr_error_set(err, MR_ERR_FORMAT,
                                  "plot: the metrics of '%s' have no finite value to draw "
                                  "(%lld NaN or infinite values left out)",
                                  runs[0].label, (long long)skipped);
        }
    }

    text_buffer out = {0};
    if (status == MR_OK) {
        status = draw_chart(&out, &c, err);
    }
    if (status == MR_OK && out.out_of_memory) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "plot: out of memory writing the SVG");
    }
    if (summary != NULL) {
        summary->n_panels = c.n_panels;
        summary->points_drawn = finite;
        summary->points_skipped = skipped;
        summary->metrics_left_out = c.metrics_left_out;
        memcpy(summary->left_out_names, c.left_out_names, sizeof c.left_out_names);
    }
    free(c.panels);
    free(columns);
    if (status != MR_OK) {
        free(out.text);
        return status;
    }
    *svg = out.text;
    return MR_OK;
}

mr_status mr_plot_write_svg(const char *path, const mr_plot_run *runs, int n_runs,
                            const mr_plot_options *options, mr_plot_summary *summary,
                            mr_error *err) {
    char *svg = NULL;
    mr_status status = mr_plot_render_svg(runs, n_runs, options, &svg, summary, err);
    if (status != MR_OK) {
        return status;
    }
    status = mr_file_write_atomic(path, svg, strlen(svg), err);
    free(svg);
    return status;
}
