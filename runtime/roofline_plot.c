/* A roofline plot through runtime/plot.h (cairo): log-log axes (FLOPs per
 * byte against GFLOP/s), the memory roof (bandwidth x intensity) up to the
 * ridge point and the compute roof (FMA peak) after it as one line, each
 * kernel a circle whose area is its share of the time, the largest labeled.
 * SVG or PNG by the path's extension, written atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plot.h"
#include "runtime/profiler.h"

enum { W = 960, H = 640, N_LABELS = 8, TAG_LEN = 96 };
#define R_MIN 3.0   /* points: a circle stays visible at any share */
#define R_FULL 27.0 /* points: the radius of a kernel taking all of the time */

static bool plottable(const ldmc_roofline_point *p) {
  return isfinite(p->intensity) && isfinite(p->gflops) && p->intensity > 0 && p->gflops > 0;
}

static double share(const ldmc_roofline_point *p) { return isfinite(p->weight) ? fmax(0, fmin(1, p->weight)) : 0; }

/* The area is the share of the time, above a floor. */
static double area(const ldmc_roofline_point *p) { return M_PI * fmax(R_MIN * R_MIN, R_FULL * R_FULL * share(p)); }

typedef struct ranked {
  const ldmc_roofline_point *p;
  int i;
} ranked;

/* By share, largest first (drawn first, so small circles stay on top); ties in input order. */
static int cmp_share_desc(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  double wx = share(x->p), wy = share(y->p);
  if (wx != wy) return wx > wy ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

/* Whole decades around the points and, when known, the roofs from a tenth
 * of the ridge to ten times it. */
static void pick_ranges(const ranked *pts, int m, double peak, double bw, bool roofs, double lo[2], double hi[2]) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int i = 0; i < m; i++) {
    /* a little room, so a circle on a decade is not cut in half by the frame */
    xlo = fmin(xlo, pts[i].p->intensity / 1.25), xhi = fmax(xhi, pts[i].p->intensity * 1.25);
    ylo = fmin(ylo, pts[i].p->gflops / 1.25), yhi = fmax(yhi, pts[i].p->gflops);
  }
  if (roofs) {
    double ridge = peak / bw;
    xlo = fmin(xlo, ridge / 10);
    xhi = fmax(xhi, ridge * 10);
    yhi = fmax(yhi, peak);
    ylo = fmin(ylo, bw * xlo);
  }
  if (!isfinite(xlo)) xlo = 0.1, xhi = 100, ylo = 0.1, yhi = 100;
  double x0 = floor(log10(xlo)), x1 = ceil(log10(xhi * 1.0001));
  double y0 = floor(log10(ylo)), y1 = ceil(log10(yhi * 1.5));
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  if (y1 - y0 > 9) y0 = y1 - 9; /* keep the interesting top readable */
  lo[0] = pow(10, x0), hi[0] = pow(10, x1), lo[1] = pow(10, y0), hi[1] = pow(10, y1);
}

static ldmc_status build(ldmc_plot *plot, const char *title, double peak, double bw, const ranked *order, int m,
                         int skipped, double *x, double *y, double *sizes, const char **labels,
                         char (*tags)[TAG_LEN]) {
  bool roofs = peak > 0 && bw > 0 && isfinite(peak) && isfinite(bw);
  char text[512], clean[400];
  ldmc_plot_clean_text(title, clean, sizeof clean);
  snprintf(text, sizeof text, "%s%s%s", clean, *clean && !roofs ? " " : "",
           roofs ? "" : "(no machine calibration: roofs not drawn)");
  LDMC_TRY(ldmc_plot_set_title(plot, text));
  LDMC_TRY(ldmc_plot_set_label(plot, LDMC_PLOT_X, "arithmetic intensity (FLOP/byte)"));
  LDMC_TRY(ldmc_plot_set_label(plot, LDMC_PLOT_Y, "performance (GFLOP/s)"));
  double lo[2], hi[2];
  pick_ranges(order, m, peak, bw, roofs, lo, hi);
  for (int a = 0; a < 2; a++) {
    ldmc_plot_set_log(plot, (ldmc_plot_axis)a, true);
    LDMC_TRY(ldmc_plot_set_range(plot, (ldmc_plot_axis)a, lo[a], hi[a]));
  }
  if (roofs) { /* from the left edge (cairo clips what lies below) to the ridge, then flat */
    double ridge = peak / bw, rx[3] = {lo[0], ridge, hi[0]}, ry[3] = {bw * lo[0], peak, peak};
    snprintf(text, sizeof text, "roofs: memory %.1f GB/s, FMA peak %.1f GFLOP/s (ridge %.2f FLOP/B)", bw, peak, ridge);
    ldmc_plot_style st = {.color = LDMC_PLOT_COLOR(3), .line_width = 2.5};
    LDMC_TRY(ldmc_plot_add_series(plot, text, rx, ry, 3, &st, NULL));
  }
  int tagged = 0;
  for (int i = 0; i < m; i++) {
    x[i] = order[i].p->intensity, y[i] = order[i].p->gflops, sizes[i] = area(order[i].p), labels[i] = NULL;
    const char *tag = order[i].p->tag;
    if (tag && *tag && tagged < N_LABELS) {
      ldmc_plot_clean_text(tag, tags[tagged], TAG_LEN);
      labels[i] = tags[tagged++];
    }
  }
  int k = snprintf(text, sizeof text, "%d point%s, area = share of time", m, m == 1 ? "" : "s");
  if (skipped) snprintf(text + k, sizeof text - (size_t)k, "; %d without FLOPs or time not drawn", skipped);
  int count = m;
  if (!m) { /* the legend still says why the plot is empty: one invisible point */
    x[0] = sqrt(lo[0] * hi[0]), y[0] = sqrt(lo[1] * hi[1]), sizes[0] = 0, labels[0] = NULL;
    count = 1;
  }
  ldmc_plot_style st = {.color = LDMC_PLOT_COLOR(0), .opacity = 0.45};
  return ldmc_plot_add_scatter(plot, text, x, y, sizes, labels, count, &st, NULL);
}

ldmc_status ldmc_roofline_write(const char *path, const char *title, double peak_gflops, double bandwidth_gbs,
                                const ldmc_roofline_point *pts, int n) {
  if (n < 0 || (n > 0 && !pts)) return ldmc_error(LDMC_ERR_INVALID, "roofline %s: %d points", path, n);
  size_t cap = (size_t)(n > 0 ? n : 1);
  ranked *order = malloc(cap * sizeof *order);
  double *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y), *sizes = malloc(cap * sizeof *sizes);
  const char **labels = malloc(cap * sizeof *labels);
  char(*tags)[TAG_LEN] = malloc(N_LABELS * sizeof *tags);
  ldmc_plot *plot = NULL;
  ldmc_status st = LDMC_OK;
  if (!order || !x || !y || !sizes || !labels || !tags) st = ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  else st = ldmc_plot_create(W, H, &plot);
  if (st == LDMC_OK) {
    int m = 0;
    for (int i = 0; i < n; i++)
      if (plottable(&pts[i])) order[m++] = (ranked){&pts[i], i};
    qsort(order, (size_t)m, sizeof *order, cmp_share_desc);
    st = build(plot, title, peak_gflops, bandwidth_gbs, order, m, n - m, x, y, sizes, labels, tags);
    if (st != LDMC_OK) ldmc_error_prefix("roofline %s: ", path);
    else st = ldmc_plot_save(plot, path); /* its errors name the path */
  }
  ldmc_plot_free(plot);
  free(order), free(x), free(y), free(sizes), free(labels), free(tags);
  return st;
}
