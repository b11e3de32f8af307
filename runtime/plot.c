/* Line and scatter plots through cairo (see plot.h): the figure's state and
 * its drawing onto a cairo context; plot_save.c makes the files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plot_internal.h"

enum { DEFAULT_W = 800, DEFAULT_H = 500, MIN_SIDE = 100, MAX_SIDE = 10000 };
#define PAD 12.0
#define TITLE_PT 15.0
#define LABEL_PT 12.5
#define TICK_PT 11.0
#define LEGEND_PT 11.5
#define POINT_LABEL_PT 10.5
#define TICK_LEN 5.0
#define MARGIN_FRAC 0.03 /* automatic ranges: the data's span plus this much each side */

typedef plot_series series;

static const char *const k_axis[2] = {"x", "y"};

/* matplotlib's tab10 */
static const unsigned k_cycle[LDMC_PLOT_N_COLORS] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                                    0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

void ldmc_plot_cycle_color(int k, double rgb[3]) {
  unsigned c = k_cycle[((k % LDMC_PLOT_N_COLORS) + LDMC_PLOT_N_COLORS) % LDMC_PLOT_N_COLORS];
  rgb[0] = (double)(c >> 16 & 0xff) / 255.0;
  rgb[1] = (double)(c >> 8 & 0xff) / 255.0;
  rgb[2] = (double)(c & 0xff) / 255.0;
}

/* ---- the figure ---- */

ldmc_status ldmc_plot_create(int width, int height, ldmc_plot **out) {
  *out = NULL;
  if (width == 0 && height == 0) width = DEFAULT_W, height = DEFAULT_H;
  if (width < MIN_SIDE || width > MAX_SIDE || height < MIN_SIDE || height > MAX_SIDE)
    return ldmc_error(LDMC_ERR_INVALID, "plot size %d x %d: each side must be in [%d, %d]", width, height, MIN_SIDE,
                      MAX_SIDE);
  ldmc_plot *p = calloc(1, sizeof *p);
  if (!p) return ldmc_error(LDMC_ERR_NOMEM, "out of memory creating a plot");
  p->w = width;
  p->h = height;
  p->lo[0] = p->lo[1] = p->hi[0] = p->hi[1] = NAN;
  *out = p;
  return LDMC_OK;
}

static void series_free(series *s) {
  free(s->name);
  free(s->x);
  free(s->y);
  free(s->size);
  for (int64_t j = 0; s->label && j < s->n; j++) free(s->label[j]);
  free(s->label);
}

void ldmc_plot_free(ldmc_plot *p) {
  if (!p) return;
  for (int i = 0; i < p->n; i++) series_free(&p->s[i]);
  free(p->s);
  free(p->title);
  free(p->label[0]);
  free(p->label[1]);
  free(p);
}

/* The length of the printable UTF-8 character at p (no control bytes: cairo's
 * text calls refuse anything else), 0 if there is none. */
static size_t printable_char(const unsigned char *p) {
  if (*p < 0x20 || *p == 0x7f) return 0;
  return ldmc_utf8_len(p);
}

static bool printable_utf8(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t n = printable_char(p);
    if (!n) return false;
    p += n;
  }
  return true;
}

void ldmc_plot_clean_text(const char *s, char *out, size_t len) {
  if (!len) return;
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
    size_t n = printable_char(p);
    if (o + (n ? n : 1) >= len) break;
    if (n) memcpy(out + o, p, n), o += n, p += n;
    else out[o++] = '?', p++;
  }
  out[o] = '\0';
}

/* Replaces *dst by a copy of s (NULL or "" clears it). */
static ldmc_status set_text(char **dst, const char *s, const char *what) {
  if (s && *s && !printable_utf8(s)) {
    char q[160];
    return ldmc_error(LDMC_ERR_INVALID, "plot %s '%s': not printable UTF-8", what, ldmc_quote(s, q, sizeof q));
  }
  char *c = NULL;
  if (s && *s && !(c = strdup(s))) return ldmc_error(LDMC_ERR_NOMEM, "out of memory copying the plot %s", what);
  free(*dst);
  *dst = c;
  return LDMC_OK;
}

ldmc_status ldmc_plot_set_title(ldmc_plot *p, const char *title) { return set_text(&p->title, title, "title"); }

ldmc_status ldmc_plot_set_label(ldmc_plot *p, ldmc_plot_axis axis, const char *label) {
  if ((unsigned)axis > 1) return ldmc_error(LDMC_ERR_INVALID, "plot axis %d: expected x (0) or y (1)", (int)axis);
  return set_text(&p->label[axis], label, axis == LDMC_PLOT_X ? "x label" : "y label");
}

void ldmc_plot_set_log(ldmc_plot *p, ldmc_plot_axis axis, bool log) {
  if ((unsigned)axis <= 1) p->log[axis] = log;
}

ldmc_status ldmc_plot_set_range(ldmc_plot *p, ldmc_plot_axis axis, double lo, double hi) {
  if ((unsigned)axis > 1) return ldmc_error(LDMC_ERR_INVALID, "plot axis %d: expected x (0) or y (1)", (int)axis);
  if (isnan(lo) && isnan(hi)) {
    p->lo[axis] = p->hi[axis] = NAN;
    return LDMC_OK;
  }
  if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
    return ldmc_error(LDMC_ERR_INVALID, "plot %s range [%g, %g]: expected finite lo < hi", k_axis[axis], lo, hi);
  p->lo[axis] = lo;
  p->hi[axis] = hi;
  return LDMC_OK;
}

int ldmc_plot_num_series(const ldmc_plot *p) { return p->n; }

int ldmc_plot_series_color(const ldmc_plot *p, int i) { return i >= 0 && i < p->n ? p->s[i].color : -1; }

/* The first cycle color no series has yet (the cycle repeats when all are taken). */
static int next_color(const ldmc_plot *p) {
  for (int k = 0; k < LDMC_PLOT_N_COLORS; k++) {
    bool used = false;
    for (int i = 0; i < p->n && !used; i++) used = p->s[i].color == k;
    if (!used) return k;
  }
  return p->n % LDMC_PLOT_N_COLORS;
}

/* Checks a series' points and style (q: its quoted name) and normalizes the style. */
static ldmc_status check_series(const ldmc_plot *p, const char *name, const double *x, const double *y, int64_t n,
                                const ldmc_plot_style *style, ldmc_plot_style *st, char *q, size_t qlen) {
  if (!name || !*name) return ldmc_error(LDMC_ERR_INVALID, "plot series %d: no name", p->n);
  ldmc_quote(name, q, qlen);
  if (n < 1 || !x || !y) return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': no points", q);
  if (n > ((int64_t)1 << 31)) return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': %lld points, too many", q, (long long)n);
  int64_t finite = 0;
  for (int64_t i = 0; i < n; i++) finite += isfinite(x[i]) && isfinite(y[i]);
  if (!finite)
    return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': none of its %lld points is finite (all NaN or infinite)", q,
                      (long long)n);
  *st = style ? *style : (ldmc_plot_style){0};
  if (st->draw & ~(unsigned)(LDMC_PLOT_LINE | LDMC_PLOT_MARKERS))
    return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': unknown draw bits 0x%x", q, st->draw);
  if (st->color < 0 || st->color > LDMC_PLOT_N_COLORS)
    return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': color %d is not LDMC_PLOT_COLOR(0..%d) or 0", q, st->color,
                      LDMC_PLOT_N_COLORS - 1);
  if ((unsigned)st->dash > LDMC_PLOT_DOTTED)
    return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': unknown dash %d", q, (int)st->dash);
  if (!(st->opacity >= 0 && st->opacity <= 1) || !(st->line_width >= 0 && st->line_width <= 50))
    return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': opacity %g or line width %g out of range", q, st->opacity,
                      st->line_width);
  if (!st->draw) st->draw = LDMC_PLOT_LINE;
  if (st->opacity == 0) st->opacity = 1;
  if (st->line_width == 0) st->line_width = 1.5;
  return LDMC_OK;
}

/* Appends s (its arrays now owned by p), or frees them on failure. */
static ldmc_status append_series(ldmc_plot *p, series *s, const char *q, int *index) {
  if (p->n == p->cap) {
    int cap = p->cap ? 2 * p->cap : 8;
    series *t = realloc(p->s, (size_t)cap * sizeof *t);
    if (!t) {
      series_free(s);
      return ldmc_error(LDMC_ERR_NOMEM, "out of memory adding plot series '%s'", q);
    }
    p->s = t;
    p->cap = cap;
  }
  s->color = s->st.color ? s->st.color - 1 : next_color(p);
  p->s[p->n] = *s;
  if (index) *index = p->n;
  p->n++;
  return LDMC_OK;
}

/* A series with copies of the name and points (no sizes, no labels). */
static ldmc_status copy_series(const char *name, const double *x, const double *y, int64_t n,
                               const ldmc_plot_style *st, const char *q, series *s) {
  memset(s, 0, sizeof *s);
  ldmc_status rc = set_text(&s->name, name, "series name");
  if (rc != LDMC_OK) return rc;
  s->x = malloc((size_t)n * sizeof *s->x);
  s->y = malloc((size_t)n * sizeof *s->y);
  if (!s->x || !s->y) {
    series_free(s);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory copying the %lld points of plot series '%s'", (long long)n, q);
  }
  memcpy(s->x, x, (size_t)n * sizeof *x);
  memcpy(s->y, y, (size_t)n * sizeof *y);
  s->n = n;
  s->st = *st;
  return LDMC_OK;
}

ldmc_status ldmc_plot_add_series(ldmc_plot *p, const char *name, const double *x, const double *y, int64_t n,
                                 const ldmc_plot_style *style, int *index) {
  char q[160];
  ldmc_plot_style st;
  LDMC_TRY(check_series(p, name, x, y, n, style, &st, q, sizeof q));
  series s;
  LDMC_TRY(copy_series(name, x, y, n, &st, q, &s));
  return append_series(p, &s, q, index);
}

ldmc_status ldmc_plot_add_scatter(ldmc_plot *p, const char *name, const double *x, const double *y,
                                  const double *sizes, const char *const *labels, int64_t n,
                                  const ldmc_plot_style *style, int *index) {
  char q[160], lq[160];
  ldmc_plot_style in = style ? *style : (ldmc_plot_style){0}, st;
  bool width_given = in.line_width != 0;
  if (!in.draw) in.draw = LDMC_PLOT_MARKERS;
  in.draw |= LDMC_PLOT_MARKERS;
  LDMC_TRY(check_series(p, name, x, y, n, &in, &st, q, sizeof q));
  if (!width_given) st.line_width = 1; /* the outline; a 1.5 pt one crowds small markers */
  for (int64_t j = 0; sizes && j < n; j++)
    if (!(isfinite(sizes[j]) && sizes[j] >= 0))
      return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': point %lld's size %g: expected a finite area >= 0", q,
                        (long long)j, sizes[j]);
  for (int64_t j = 0; labels && j < n; j++)
    if (labels[j] && *labels[j] && !printable_utf8(labels[j]))
      return ldmc_error(LDMC_ERR_INVALID, "plot series '%s': point %lld's label '%s': not printable UTF-8", q,
                        (long long)j, ldmc_quote(labels[j], lq, sizeof lq));
  series s;
  LDMC_TRY(copy_series(name, x, y, n, &st, q, &s));
  s.scatter = true;
  bool ok = true;
  if (sizes && (ok = (s.size = malloc((size_t)n * sizeof *s.size)) != NULL))
    memcpy(s.size, sizes, (size_t)n * sizeof *sizes);
  if (ok && labels && (ok = (s.label = calloc((size_t)n, sizeof *s.label)) != NULL))
    for (int64_t j = 0; j < n && ok; j++)
      if (labels[j] && *labels[j]) ok = (s.label[j] = strdup(labels[j])) != NULL;
  if (!ok) {
    series_free(&s);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory copying the sizes and labels of plot series '%s'", q);
  }
  return append_series(p, &s, q, index);
}

/* ---- drawing ---- */

typedef struct frame {
  double x0, y0, x1, y1; /* the plot area in device units, y0 at the top */
  double lo[2], hi[2];   /* axis ranges in data units */
  bool log[2];
} frame;

static double axis_t(const frame *f, int axis, double v) { return f->log[axis] ? log10(v) : v; }

static double to_dev(const frame *f, int axis, double v) {
  double a = axis_t(f, axis, f->lo[axis]), b = axis_t(f, axis, f->hi[axis]);
  double u = (axis_t(f, axis, v) - a) / (b - a);
  return axis == 0 ? f->x0 + u * (f->x1 - f->x0) : f->y1 - u * (f->y1 - f->y0);
}

static bool plottable(const ldmc_plot *p, double x, double y) {
  return isfinite(x) && isfinite(y) && (!p->log[0] || x > 0) && (!p->log[1] || y > 0);
}

/* Fixed ranges must suit their axes and every series needs a point the axes
 * can show; then the automatic ranges. */
static ldmc_status axis_ranges(const ldmc_plot *p, frame *f) {
  for (int a = 0; a < 2; a++)
    if (p->log[a] && !isnan(p->lo[a]) && !(p->lo[a] > 0))
      return ldmc_error(LDMC_ERR_INVALID, "%s range [%g, %g]: a log axis needs lo > 0", k_axis[a], p->lo[a],
                        p->hi[a]);
  double mn[2] = {INFINITY, INFINITY}, mx[2] = {-INFINITY, -INFINITY};
  for (int i = 0; i < p->n; i++) {
    const series *s = &p->s[i];
    int64_t ok = 0;
    for (int64_t j = 0; j < s->n; j++) {
      if (!plottable(p, s->x[j], s->y[j])) continue;
      ok++;
      mn[0] = fmin(mn[0], s->x[j]), mx[0] = fmax(mx[0], s->x[j]);
      mn[1] = fmin(mn[1], s->y[j]), mx[1] = fmax(mx[1], s->y[j]);
    }
    if (!ok) {
      char q[160];
      int a = p->log[1] ? 1 : 0;
      for (int64_t j = 0; j < s->n && p->log[0] && p->log[1]; j++)
        if (isfinite(s->x[j]) && isfinite(s->y[j]) && s->y[j] > 0) a = 0; /* it is x that fails */
      return ldmc_error(LDMC_ERR_INVALID, "series '%s': no point with a positive %s for the log %s axis",
                        ldmc_quote(s->name, q, sizeof q), k_axis[a], k_axis[a]);
    }
  }
  for (int a = 0; a < 2; a++) {
    f->log[a] = p->log[a];
    if (!isnan(p->lo[a])) {
      f->lo[a] = p->lo[a], f->hi[a] = p->hi[a];
      continue;
    }
    double lo = p->log[a] ? log10(mn[a]) : mn[a], hi = p->log[a] ? log10(mx[a]) : mx[a];
    double d = hi - lo;
    if (d == 0) d = p->log[a] ? 0.25 / MARGIN_FRAC : (lo != 0 ? fabs(lo) * 0.05 : 1) / MARGIN_FRAC;
    lo -= MARGIN_FRAC * d, hi += MARGIN_FRAC * d;
    f->lo[a] = p->log[a] ? pow(10, lo) : lo;
    f->hi[a] = p->log[a] ? pow(10, hi) : hi;
    if (!isfinite(f->hi[a] - f->lo[a]) || !(f->lo[a] < f->hi[a]) || (p->log[a] && !(f->lo[a] > 0)))
      return ldmc_error(LDMC_ERR_INVALID, "the data's %s values span [%g, %g]: too wide to draw", k_axis[a], mn[a],
                        mx[a]);
  }
  return LDMC_OK;
}

typedef enum valign { V_TOP, V_MIDDLE, V_BASELINE } valign;

static double text_w(cairo_t *cr, const char *s) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s, &te);
  return te.x_advance;
}

/* Text whose anchor (ax: 0 left, 0.5 center, 1 right; v: top/middle/baseline) is at (x, y). */
static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, valign v) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  double by = v == V_TOP ? y + fe.ascent : v == V_MIDDLE ? y + (fe.ascent - fe.descent) / 2 : y;
  cairo_move_to(cr, x - ax * text_w(cr, s), by);
  cairo_show_text(cr, s);
}

static void font(cairo_t *cr, double size, bool bold) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

static double font_h(cairo_t *cr) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  return fe.ascent + fe.descent;
}

static void set_color(cairo_t *cr, int k, double opacity) {
  double c[3];
  ldmc_plot_cycle_color(k, c);
  cairo_set_source_rgba(cr, c[0], c[1], c[2], opacity);
}

static void set_line_style(cairo_t *cr, const ldmc_plot_style *st) {
  double lw = st->line_width, dashed[2] = {5.0 * lw / 1.5, 3.0 * lw / 1.5}, dotted[2] = {0, 2.0 * lw};
  cairo_set_line_width(cr, lw);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, st->dash == LDMC_PLOT_DOTTED ? CAIRO_LINE_CAP_ROUND : CAIRO_LINE_CAP_BUTT);
  if (st->dash == LDMC_PLOT_DASHED) cairo_set_dash(cr, dashed, 2, 0);
  else if (st->dash == LDMC_PLOT_DOTTED) cairo_set_dash(cr, dotted, 2, 0); /* round caps on zero-length dashes: dots */
  else cairo_set_dash(cr, NULL, 0, 0);
}

/* Liang-Barsky: clips the segment (a -> b) to the box; false if nothing is left. */
static bool clip_segment(const double box[4], double *ax, double *ay, double *bx, double *by) {
  double t0 = 0, t1 = 1, dx = *bx - *ax, dy = *by - *ay;
  double pq[4][2] = {{-dx, *ax - box[0]}, {dx, box[2] - *ax}, {-dy, *ay - box[1]}, {dy, box[3] - *ay}};
  for (int i = 0; i < 4; i++) {
    double pp = pq[i][0], qq = pq[i][1];
    if (pp == 0) {
      if (qq < 0) return false;
      continue;
    }
    double r = qq / pp;
    if (pp < 0) t0 = fmax(t0, r);
    else t1 = fmin(t1, r);
    if (t0 > t1) return false;
  }
  double x0 = *ax, y0 = *ay;
  if (t1 < 1) *bx = x0 + t1 * dx, *by = y0 + t1 * dy;
  if (t0 > 0) *ax = x0 + t0 * dx, *ay = y0 + t0 * dy;
  return isfinite(*ax) && isfinite(*ay) && isfinite(*bx) && isfinite(*by); /* ends near DBL_MAX: dropped */
}

static double marker_r(const ldmc_plot_style *st) { return 1.5 + 1.2 * st->line_width; }

/* A scatter point's radius: its area's, bounded so cairo's coordinates stay in range. */
static double point_r(const ldmc_plot *p, const series *s, int64_t j) {
  return s->size ? fmin(sqrt(s->size[j] / M_PI), 2.0 * (p->w + p->h)) : marker_r(&s->st);
}

/* A filled circle at the series' opacity with an opaque, darker outline. */
static void scatter_marker(cairo_t *cr, const series *s, double cx, double cy, double r) {
  double c[3];
  ldmc_plot_cycle_color(s->color, c);
  cairo_new_path(cr);
  cairo_arc(cr, cx, cy, r, 0, 2 * M_PI);
  cairo_set_source_rgba(cr, c[0], c[1], c[2], s->st.opacity);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.65 * c[0], 0.65 * c[1], 0.65 * c[2]);
  cairo_set_line_width(cr, s->st.line_width);
  cairo_set_dash(cr, NULL, 0, 0);
  cairo_stroke(cr);
}

/* Each point its own circle, in order (a caller drawing large ones first keeps small ones visible). */
static void draw_scatter(cairo_t *cr, const ldmc_plot *p, const frame *f, const series *s, const double box[4]) {
  for (int64_t j = 0; j < s->n; j++) {
    if (!plottable(p, s->x[j], s->y[j])) continue;
    double cx = to_dev(f, 0, s->x[j]), cy = to_dev(f, 1, s->y[j]), r = point_r(p, s, j);
    if (!(r > 0 && cx >= box[0] - r && cx <= box[2] + r && cy >= box[1] - r && cy <= box[3] + r)) continue;
    scatter_marker(cr, s, cx, cy, r);
  }
}

static void draw_series(cairo_t *cr, const ldmc_plot *p, const frame *f, const series *s) {
  /* lines are clipped exactly by cairo; this box only keeps coordinates in cairo's fixed-point range */
  double m = 50, box[4] = {f->x0 - m, f->y0 - m, f->x1 + m, f->y1 + m};
  set_color(cr, s->color, s->st.opacity);
  if (s->st.draw & LDMC_PLOT_LINE) {
    set_line_style(cr, &s->st);
    cairo_new_path(cr);
    bool have_prev = false, pen = false;
    double px = 0, py = 0, lx = 0, ly = 0; /* previous point, end of the path so far */
    for (int64_t j = 0; j < s->n; j++) {
      if (!plottable(p, s->x[j], s->y[j])) {
        have_prev = pen = false;
        continue;
      }
      double cx = to_dev(f, 0, s->x[j]), cy = to_dev(f, 1, s->y[j]);
      if (!isfinite(cx) || !isfinite(cy)) { /* overflowed: far outside a fixed range */
        have_prev = pen = false;
        continue;
      }
      if (have_prev) {
        double ax = px, ay = py, bx = cx, by = cy;
        if (clip_segment(box, &ax, &ay, &bx, &by)) {
          if (!pen || ax != lx || ay != ly) cairo_move_to(cr, ax, ay);
          cairo_line_to(cr, bx, by);
          pen = true, lx = bx, ly = by;
        }
      }
      have_prev = true, px = cx, py = cy;
    }
    cairo_stroke(cr);
  }
  if (s->scatter) {
    draw_scatter(cr, p, f, s, box);
    return;
  }
  /* markers, or in a line-only series the points with no neighbour to join (a dot each) */
  bool markers = s->st.draw & LDMC_PLOT_MARKERS;
  double r = markers ? marker_r(&s->st) : 0.6 * marker_r(&s->st);
  cairo_new_path(cr);
  bool any = false;
  for (int64_t j = 0; j < s->n; j++) {
    if (!plottable(p, s->x[j], s->y[j])) continue;
    if (!markers) {
      bool left = j > 0 && plottable(p, s->x[j - 1], s->y[j - 1]);
      bool right = j + 1 < s->n && plottable(p, s->x[j + 1], s->y[j + 1]);
      if (left || right) continue;
    }
    double cx = to_dev(f, 0, s->x[j]), cy = to_dev(f, 1, s->y[j]);
    if (!(cx >= box[0] && cx <= box[2] && cy >= box[1] && cy <= box[3])) continue; /* also NaN, inf */
    cairo_new_sub_path(cr);
    cairo_arc(cr, cx, cy, r, 0, 2 * M_PI);
    any = true;
  }
  if (any) cairo_fill(cr);
  cairo_new_path(cr);
}

typedef struct axis_ticks {
  double v[64];
  int n;
  double step;
  char label[64][32];
} axis_ticks;

static void make_ticks(const frame *f, int axis, double length, axis_ticks *t) {
  int max = (int)(length / (axis == 0 ? 90.0 : 45.0));
  max = max < 3 ? 3 : max > 10 ? 10 : max;
  if (ldmc_plot_ticks(f->lo[axis], f->hi[axis], f->log[axis], max, t->v, 64, &t->n, &t->step) != LDMC_OK) t->n = 0;
  for (int i = 0; i < t->n; i++) ldmc_plot_tick_label(t->v[i], t->step, f->log[axis], t->label[i], sizeof t->label[i]);
}

/* Legend entries: the series not marked no_legend. */
static int legend_count(const ldmc_plot *p) {
  int m = 0;
  for (int i = 0; i < p->n; i++) m += !p->s[i].st.no_legend;
  return m;
}

/* How much of the data lies under a box: points and a few samples along each segment. */
static int64_t covered(const ldmc_plot *p, const frame *f, double bx, double by, double bw, double bh) {
  int64_t hits = 0;
  for (int i = 0; i < p->n; i++) {
    const series *s = &p->s[i];
    double px = 0, py = 0;
    bool have_prev = false;
    for (int64_t j = 0; j < s->n; j++) {
      if (!plottable(p, s->x[j], s->y[j])) {
        have_prev = false;
        continue;
      }
      double cx = to_dev(f, 0, s->x[j]), cy = to_dev(f, 1, s->y[j]);
      int k0 = have_prev && (s->st.draw & LDMC_PLOT_LINE) ? 1 : 4;
      for (int k = k0; k <= 4; k++) {
        double u = k / 4.0, x = px + u * (cx - px), y = py + u * (cy - py);
        hits += x >= bx && x <= bx + bw && y >= by && y <= by + bh;
      }
      have_prev = true, px = cx, py = cy;
    }
  }
  return hits;
}

static void draw_legend(cairo_t *cr, const ldmc_plot *p, const frame *f) {
  int m = legend_count(p);
  if (!m) return;
  font(cr, LEGEND_PT, false);
  double line_h = font_h(cr) + 4, swatch = 28, inner = 8, maxw = 0;
  for (int i = 0; i < p->n; i++)
    if (!p->s[i].st.no_legend) maxw = fmax(maxw, text_w(cr, p->s[i].name));
  double bw = inner + swatch + 6 + maxw + inner, bh = 2 * 6 + m * line_h, in = 8;
  /* the corner covering the least data: upper right, upper left, lower right, lower left */
  double cand[4][2] = {{f->x1 - in - bw, f->y0 + in},
                       {f->x0 + in, f->y0 + in},
                       {f->x1 - in - bw, f->y1 - in - bh},
                       {f->x0 + in, f->y1 - in - bh}};
  int best = 0;
  int64_t best_hits = -1;
  for (int c = 0; c < 4; c++) {
    int64_t h = covered(p, f, cand[c][0], cand[c][1], bw, bh);
    if (best_hits < 0 || h < best_hits) best = c, best_hits = h;
  }
  double bx = cand[best][0], by = cand[best][1];
  cairo_rectangle(cr, bx + 0.5, by + 0.5, bw, bh);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
  cairo_set_line_width(cr, 1);
  cairo_set_dash(cr, NULL, 0, 0);
  cairo_stroke(cr);
  double y = by + 6 + line_h / 2;
  for (int i = 0; i < p->n; i++) {
    const series *s = &p->s[i];
    if (s->st.no_legend) continue;
    double x = bx + inner;
    set_color(cr, s->color, s->st.opacity);
    if (s->st.draw & LDMC_PLOT_LINE) {
      set_line_style(cr, &s->st);
      cairo_move_to(cr, x, y);
      cairo_line_to(cr, x + swatch, y);
      cairo_stroke(cr);
    }
    if (s->scatter) {
      scatter_marker(cr, s, x + swatch / 2, y, 4.5);
    } else if (s->st.draw & LDMC_PLOT_MARKERS) {
      cairo_new_path(cr);
      cairo_arc(cr, x + swatch / 2, y, marker_r(&s->st), 0, 2 * M_PI);
      cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, s->name, x + swatch + 6, y, 0, V_MIDDLE);
    y += line_h;
  }
}

/* Minor ticks at 2..9 x 10^k on a log axis labelled every decade. */
static void minor_ticks(cairo_t *cr, const frame *f, int axis, const axis_ticks *t) {
  if (!f->log[axis] || t->n < 2 || fabs(t->v[1] / t->v[0] - 10) > 1e-6) return;
  for (double e = floor(log10(f->lo[axis])); e <= ceil(log10(f->hi[axis])); e++)
    for (int k = 2; k <= 9; k++) {
      double v = k * pow(10, e);
      if (v < f->lo[axis] || v > f->hi[axis]) continue;
      double d = round(to_dev(f, axis, v)) + 0.5;
      if (axis == 0) cairo_move_to(cr, d, f->y1), cairo_line_to(cr, d, f->y1 + TICK_LEN / 2);
      else cairo_move_to(cr, f->x0, d), cairo_line_to(cr, f->x0 - TICK_LEN / 2, d);
    }
  cairo_stroke(cr);
}

/* Where everything goes: the plot area, the axis ranges and their ticks. */
typedef struct layout {
  frame f;
  axis_ticks xt, yt;
  double label_h;
} layout;

static ldmc_status lay_out(const ldmc_plot *p, cairo_t *cr, layout *L) {
  frame *f = &L->f;
  LDMC_TRY(axis_ranges(p, f));
  /* title on top, x ticks and label below, y label and ticks at the left */
  double top = PAD, bottom = PAD, left = PAD, right = PAD + 16;
  if (p->title) font(cr, TITLE_PT, true), top += font_h(cr) + 8;
  font(cr, TICK_PT, false);
  double tick_h = font_h(cr);
  bottom += tick_h + TICK_LEN + 4;
  font(cr, LABEL_PT, false);
  L->label_h = font_h(cr);
  if (p->label[0]) bottom += L->label_h + 6;
  if (p->label[1]) left += L->label_h + 6;
  f->y0 = top, f->y1 = p->h - bottom;
  make_ticks(f, 1, f->y1 - f->y0, &L->yt);
  font(cr, TICK_PT, false);
  double yw = 0;
  for (int i = 0; i < L->yt.n; i++) yw = fmax(yw, text_w(cr, L->yt.label[i]));
  f->x0 = left + yw + TICK_LEN + 4, f->x1 = p->w - right;
  make_ticks(f, 0, f->x1 - f->x0, &L->xt);
  return LDMC_OK;
}

/* The scatter points' labels, right of the point (left where the plot area
 * ends), each in a white halo; one that would overlap a label already drawn
 * is left out, so earlier points win. */
static ldmc_status draw_point_labels(cairo_t *cr, const ldmc_plot *p, const frame *f) {
  int64_t m = 0;
  for (int i = 0; i < p->n; i++)
    for (int64_t j = 0; p->s[i].label && j < p->s[i].n; j++) m += p->s[i].label[j] != NULL;
  if (!m) return LDMC_OK;
  double(*box)[4] = malloc((size_t)m * sizeof *box);
  if (!box) return ldmc_error(LDMC_ERR_NOMEM, "out of memory placing %lld point labels", (long long)m);
  int64_t placed = 0;
  font(cr, POINT_LABEL_PT, false);
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  double h = fe.ascent + fe.descent;
  for (int i = 0; i < p->n; i++) {
    const series *s = &p->s[i];
    for (int64_t j = 0; s->label && j < s->n; j++) {
      if (!s->label[j] || !plottable(p, s->x[j], s->y[j])) continue;
      double cx = to_dev(f, 0, s->x[j]), cy = to_dev(f, 1, s->y[j]), r = point_r(p, s, j);
      if (!(cx >= f->x0 && cx <= f->x1 && cy >= f->y0 && cy <= f->y1)) continue;
      double w = text_w(cr, s->label[j]), x0 = cx + r + 3, y0 = cy - h / 2;
      if (x0 + w > f->x1) x0 = cx - r - 3 - w;
      bool clash = false;
      for (int64_t k = 0; k < placed && !clash; k++)
        clash = x0 < box[k][2] && box[k][0] < x0 + w && y0 < box[k][3] && box[k][1] < y0 + h;
      if (clash) continue;
      box[placed][0] = x0, box[placed][1] = y0, box[placed][2] = x0 + w, box[placed][3] = y0 + h;
      placed++;
      cairo_new_path(cr);
      cairo_move_to(cr, x0, y0 + fe.ascent);
      cairo_text_path(cr, s->label[j]);
      cairo_set_source_rgb(cr, 1, 1, 1);
      cairo_set_line_width(cr, 3);
      cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
      cairo_set_dash(cr, NULL, 0, 0);
      cairo_stroke_preserve(cr);
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      cairo_fill(cr);
    }
  }
  free(box);
  return LDMC_OK;
}

ldmc_status ldmc_plot_draw(const ldmc_plot *p, cairo_t *cr) {
  layout *L = malloc(sizeof *L);
  if (!L) return ldmc_error(LDMC_ERR_NOMEM, "out of memory laying out a plot");
  ldmc_status rc = lay_out(p, cr, L);
  if (rc != LDMC_OK) {
    free(L);
    return rc;
  }
  const frame f = L->f;
  const axis_ticks *xt = &L->xt, *yt = &L->yt;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  /* grid */
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.91, 0.91, 0.91);
  for (int i = 0; i < xt->n; i++) {
    double d = round(to_dev(&f, 0, xt->v[i])) + 0.5;
    cairo_move_to(cr, d, f.y0), cairo_line_to(cr, d, f.y1);
  }
  for (int i = 0; i < yt->n; i++) {
    double d = round(to_dev(&f, 1, yt->v[i])) + 0.5;
    cairo_move_to(cr, f.x0, d), cairo_line_to(cr, f.x1, d);
  }
  cairo_stroke(cr);

  /* the data, clipped to the plot area */
  cairo_save(cr);
  cairo_rectangle(cr, f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
  cairo_clip(cr);
  for (int i = 0; i < p->n; i++) draw_series(cr, p, &f, &p->s[i]);
  rc = draw_point_labels(cr, p, &f);
  cairo_restore(cr);
  if (rc != LDMC_OK) {
    free(L);
    return rc;
  }

  /* frame, ticks, labels */
  cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
  cairo_set_line_width(cr, 1);
  cairo_set_dash(cr, NULL, 0, 0);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  cairo_rectangle(cr, round(f.x0) + 0.5, round(f.y0) + 0.5, round(f.x1) - round(f.x0), round(f.y1) - round(f.y0));
  cairo_stroke(cr);
  for (int i = 0; i < xt->n; i++) {
    double d = round(to_dev(&f, 0, xt->v[i])) + 0.5;
    cairo_move_to(cr, d, f.y1), cairo_line_to(cr, d, f.y1 + TICK_LEN);
  }
  for (int i = 0; i < yt->n; i++) {
    double d = round(to_dev(&f, 1, yt->v[i])) + 0.5;
    cairo_move_to(cr, f.x0, d), cairo_line_to(cr, f.x0 - TICK_LEN, d);
  }
  cairo_stroke(cr);
  minor_ticks(cr, &f, 0, xt);
  minor_ticks(cr, &f, 1, yt);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  font(cr, TICK_PT, false);
  for (int i = 0; i < xt->n; i++) text_at(cr, xt->label[i], to_dev(&f, 0, xt->v[i]), f.y1 + TICK_LEN + 3, 0.5, V_TOP);
  for (int i = 0; i < yt->n; i++) text_at(cr, yt->label[i], f.x0 - TICK_LEN - 3, to_dev(&f, 1, yt->v[i]), 1, V_MIDDLE);
  double label_h = L->label_h;
  free(L);
  font(cr, LABEL_PT, false);
  if (p->label[0]) text_at(cr, p->label[0], (f.x0 + f.x1) / 2, p->h - PAD - label_h, 0.5, V_TOP);
  if (p->label[1]) {
    cairo_save(cr);
    cairo_translate(cr, PAD, (f.y0 + f.y1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, p->label[1], 0, 0, 0.5, V_TOP);
    cairo_restore(cr);
  }
  if (p->title) {
    font(cr, TITLE_PT, true);
    text_at(cr, p->title, (f.x0 + f.x1) / 2, PAD, 0.5, V_TOP);
  }
  draw_legend(cr, p, &f);
  return LDMC_OK;
}

ldmc_status ldmc_plot_place(const ldmc_plot *p, cairo_t *cr, double x, double y, double *dx, double *dy) {
  if (!plottable(p, x, y))
    return ldmc_error(LDMC_ERR_INVALID, "point (%g, %g): not finite, or not positive on a log axis", x, y);
  layout *L = malloc(sizeof *L);
  if (!L) return ldmc_error(LDMC_ERR_NOMEM, "out of memory laying out a plot");
  ldmc_status rc = lay_out(p, cr, L);
  if (rc == LDMC_OK) *dx = to_dev(&L->f, 0, x), *dy = to_dev(&L->f, 1, y);
  free(L);
  return rc;
}
