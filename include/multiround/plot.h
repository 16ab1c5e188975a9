/*
 * multiround: SVG line charts of metrics logs.
 *
 * One chart has a panel per metric, stacked with a shared step axis. The
 * step axis, and a value axis whose values are all integers, get integer
 * ticks. Each
 * run is one colored line in every panel, and a legend names the runs.
 * The SVG is plain SVG 1.1 text, written without any library.
 */
#ifndef MULTIROUND_PLOT_H
#define MULTIROUND_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/runlog.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maximum number of ticks mr_plot_ticks returns. */
#define MR_PLOT_TICKS_MAX 32

/* One run to draw: its metrics table and the name in the legend. */
typedef struct mr_plot_run {
    const char *label;
    const mr_runlog_data *data;
} mr_plot_run;

/* Chart settings; a zero field selects its default. */
typedef struct mr_plot_options {
    const char *const *metrics; /* metrics to draw, in order; NULL: the columns of
                                   every run except elapsed_s, those whose names
                                   contain "loss" first, each group first seen
                                   first, up to max_panels */
    int n_metrics;
    int smooth;                 /* trailing moving average over this many points;
                                   0 or 1 draws the raw values only */
    int width;                  /* pixels (default 800) */
    int panel_height;           /* pixels per panel (default 200) */
    int max_panels;             /* panels drawn without metrics, loss metrics first
                                   (default MR_PLOT_DEFAULT_PANELS) */
} mr_plot_options;

/* Panels a chart draws by default; the other metrics are left out and
 * named in mr_plot_summary. */
#define MR_PLOT_DEFAULT_PANELS 6

/* What a chart left out: values that are NaN or infinite cannot be drawn. */
typedef struct mr_plot_summary {
    int n_panels;
    int64_t points_drawn;       /* finite values drawn, over all runs and panels */
    int64_t points_skipped;     /* NaN or infinite values left out */
    int metrics_left_out;       /* metrics not drawn because of max_panels */
    char left_out_names[256];   /* their names, comma-separated, cut with "..." */
} mr_plot_summary;

/*
 * Chooses axis ticks for data from low to high. The step is 1, 2 or 5
 * times a power of ten that gives about target ticks (at least 2). The
 * ticks are the multiples of the step from the last one at or below low
 * to the first one at or above high. Writes the first tick to *first, the
 * step to *step and the number of ticks to *count (at most
 * MR_PLOT_TICKS_MAX).
 * When low equals high the range is widened around the value. low and
 * high must be finite with low <= high (MR_ERR_INVALID_ARGUMENT otherwise).
 */
mr_status mr_plot_ticks(double low, double high, int target, double *first, double *step,
                        int *count, mr_error *err);

/*
 * Writes a tick label for value on an axis whose ticks are step apart. It
 * has just enough digits to tell neighbouring ticks apart, reads "0" for
 * a value within rounding of zero, and uses exponent notation ("2.5e-5")
 * when the step is below 1e-4 or at least 1e5.
 */
void mr_plot_format_tick(double value, double step, char *out, size_t size);

/*
 * Renders the chart of runs (n_runs >= 1) as SVG text in a new buffer
 * stored in *svg (free it with free()). Values that are NaN or infinite
 * are left out, break the line there, and are counted in *summary and
 * logged as a warning per run and metric. Fails with MR_ERR_INVALID_ARGUMENT
 * when a requested metric is in no run, and with MR_ERR_FORMAT when no run
 * has a row, or when no metric has a finite value to draw. summary may be
 * NULL.
 */
mr_status mr_plot_render_svg(const mr_plot_run *runs, int n_runs,
                             const mr_plot_options *options, char **svg,
                             mr_plot_summary *summary, mr_error *err);

/* Renders as mr_plot_render_svg does and writes the SVG to path atomically. */
mr_status mr_plot_write_svg(const char *path, const mr_plot_run *runs, int n_runs,
                            const mr_plot_options *options, mr_plot_summary *summary,
                            mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_PLOT_H */
