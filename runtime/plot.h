/* Line and scatter plots drawn with cairo (design: plots go through a drawing
 * library, never hand-written SVG): one panel with a title, axis labels,
 * linear or log axes with 1-2-5 / decade ticks, any number of series (line
 * and/or markers, NaN = a gap; or scatter points each with its own marker
 * size and an optional text label), an automatic color cycle and a legend.
 * Saved as .svg or .png by the path's extension, atomically
 * (support/fileio.h): an error never leaves a partial file. For training
 * curves (ldmc plot), the quality-vs-cost curves of the scaling study and the
 * profiler's roofline (runtime/roofline_plot.c). Implemented in plot.c (the
 * figure and its drawing), plot_save.c (the files), plot_ticks.c. */
#ifndef LDMC_RUNTIME_PLOT_H
#define LDMC_RUNTIME_PLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "support/status.h"

typedef struct ldmc_plot ldmc_plot;

typedef enum ldmc_plot_axis { LDMC_PLOT_X = 0, LDMC_PLOT_Y = 1 } ldmc_plot_axis;

/* What a series draws (bits); 0 means a line. */
enum { LDMC_PLOT_LINE = 1, LDMC_PLOT_MARKERS = 2 };

typedef enum ldmc_plot_dash { LDMC_PLOT_SOLID = 0, LDMC_PLOT_DASHED, LDMC_PLOT_DOTTED } ldmc_plot_dash;

/* Colors of the cycle (matplotlib's tab10): style.color = LDMC_PLOT_COLOR(k). */
#define LDMC_PLOT_N_COLORS 10
#define LDMC_PLOT_COLOR(k) ((k) + 1)

/* How a series looks; all-zero is the default (a solid 1.5 pt line in the
 * next color of the cycle, opaque, in the legend). */
typedef struct ldmc_plot_style {
  unsigned draw;       /* LDMC_PLOT_LINE and/or LDMC_PLOT_MARKERS; 0: LDMC_PLOT_LINE */
  int color;           /* 0: the next cycle color not yet taken; LDMC_PLOT_COLOR(k): cycle color k */
  ldmc_plot_dash dash;
  double opacity;      /* 0: 1; else in (0, 1] (a faint raw series behind its moving average) */
  double line_width;   /* points; 0: 1.5 */
  bool no_legend;      /* leave the series out of the legend */
} ldmc_plot_style;

/* A figure of width x height (pixels for PNG, points for SVG; 0 x 0: 800 x 500). */
ldmc_status ldmc_plot_create(int width, int height, ldmc_plot **out);
void ldmc_plot_free(ldmc_plot *p); /* NULL is fine */

/* Texts are UTF-8, copied; NULL or "" leaves it out. */
ldmc_status ldmc_plot_set_title(ldmc_plot *p, const char *title);
ldmc_status ldmc_plot_set_label(ldmc_plot *p, ldmc_plot_axis axis, const char *label);
void ldmc_plot_set_log(ldmc_plot *p, ldmc_plot_axis axis, bool log);
/* A fixed axis range [lo, hi] (lo < hi, both > 0 on a log axis); NaN, NaN: automatic
 * (the data's range with a small margin). Lines leaving it are clipped. */
ldmc_status ldmc_plot_set_range(ldmc_plot *p, ldmc_plot_axis axis, double lo, double hi);

/* Adds a series of n points (copied). A point whose x or y is NaN or infinite
 * is a gap in the line; so is a non-positive value on a log axis. Errors: no
 * name, n < 1, or no finite point. style NULL: the default. Returns the
 * series' index in *index (may be NULL). */
ldmc_status ldmc_plot_add_series(ldmc_plot *p, const char *name, const double *x, const double *y, int64_t n,
                                 const ldmc_plot_style *style, int *index);
/* Adds a scatter series: point i is a circle of area sizes[i] square points
 * (pixels in a PNG; sizes NULL: the style's marker; 0: no circle), filled
 * in its color at style.opacity and outlined opaque and darker,
 * style.line_width wide (0: 1 pt); labels[i] (labels NULL, or an entry NULL
 * or "": none) is drawn right of the circle, or left of it where the plot
 * area ends, and left out where it would overlap an earlier point's label.
 * Points are drawn in order, each over the ones before. style.draw may add
 * LDMC_PLOT_LINE to join the points; it always has markers. Points are
 * skipped as in ldmc_plot_add_series; the legend shows a plain circle.
 * Everything is copied. Errors: those of ldmc_plot_add_series, a size that
 * is negative or not finite, a label that is not printable UTF-8. */
ldmc_status ldmc_plot_add_scatter(ldmc_plot *p, const char *name, const double *x, const double *y,
                                  const double *sizes, const char *const *labels, int64_t n,
                                  const ldmc_plot_style *style, int *index);
int ldmc_plot_num_series(const ldmc_plot *p);
/* The cycle color index (0..LDMC_PLOT_N_COLORS-1) series i is drawn in; -1 if no such series. */
int ldmc_plot_series_color(const ldmc_plot *p, int i);
/* Cycle color k (taken modulo LDMC_PLOT_N_COLORS) as r, g, b in [0, 1]. */
void ldmc_plot_cycle_color(int k, double rgb[3]);

/* Draws the figure into path: ".svg" (cairo's SVG surface, plus <title> and
 * <desc> naming the title and the series, since cairo draws text as glyph
 * outlines) or ".png" (8-bit RGB). Errors (nothing written): another
 * extension, no series, a series with no plottable point on a log axis, a
 * drawing failure, a path that cannot be written. Not thread-safe: it ends
 * by releasing cairo's and fontconfig's process-wide caches, so nothing else
 * may draw text with cairo meanwhile. */
ldmc_status ldmc_plot_save(const ldmc_plot *p, const char *path);

/* Where the data point (x, y) lands in the figure ldmc_plot_save(p, path)
 * would draw (only path's extension is used: text, and with it the layout,
 * is measured differently for SVG and PNG): *px from the left, *py from the
 * top, in points (SVG) or pixels (PNG). Errors: as ldmc_plot_save's before
 * anything is written, and a point that is not finite or not positive on a
 * log axis. Not thread-safe, like ldmc_plot_save. */
ldmc_status ldmc_plot_locate(const ldmc_plot *p, const char *path, double x, double y, double *px, double *py);

/* Copies s (NULL: "") into out (len > 0 bytes, truncated on a character
 * boundary), each byte that plot texts refuse (a control byte, invalid
 * UTF-8) replaced by '?': for names that come from data. */
void ldmc_plot_clean_text(const char *s, char *out, size_t len);

/* Tick positions on [lo, hi] (lo < hi; > 0 if log): multiples of 1, 2 or 5
 * x 10^k on a linear axis, at most max_ticks (>= 2) of them; decades on a log
 * axis (every k-th decade when there are more than max_ticks), or 1-2-5
 * values within the decades when fewer than two decades fall in the range, or
 * linear ticks when those are fewer than three (or more than max_ticks). Writes at most cap values
 * in ascending order into out and their count into *n; *step (may be NULL) is
 * the step of linear ticks (also of that fallback on a log axis), 0 for
 * decades or 1-2-5 values. */
ldmc_status ldmc_plot_ticks(double lo, double hi, bool log, int max_ticks, double *out, int cap, int *n,
                            double *step);
/* A tick label: v to the precision its step needs ("0.25", "1500", "1e-05",
 * "2.5e+06"); log ticks print as "0.001" .. "1e+05" by value. */
void ldmc_plot_tick_label(double v, double step, bool log, char *buf, size_t len);

/* Frees cairo's and fontconfig's font state after text was drawn (any cairo
 * text user, e.g. png_grid.c's labels); not thread-safe, like
 * ldmc_plot_save. */
void ldmc_plot_release_fonts(void);

#endif
