/* Plots (runtime/plot.h): tick values against hand-computed ones (1-2-5 steps
 * on linear ranges, decades and 1-2-5 values on log ranges, the linear
 * fallback), tick labels; an SVG read back (well-formed tags, one stroked path
 * per line series in its cycle color plus its legend swatch, a gap as a second
 * subpath, the markers as one filled path, the title and legend in
 * <title>/<desc>, glyphs drawn); a PNG's signature and IHDR read byte by byte
 * and its pixels decoded with libpng; every refusal names what is wrong and
 * leaves no file (nor temp file) behind, an existing file untouched.
 * Scatter series: sized markers found in the decoded PNG where
 * ldmc_plot_locate puts them, with the radius their area gives, locations
 * that follow the axes and the frame; circles, labels and overlaps counted in
 * the SVG; the refusals; ldmc_plot_clean_text. */
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/plot.h"
#include "support/fileio.h"
#include "test_util.h"

static char g_dir[64];

static void path_in(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

static bool exists(const char *path) { return access(path, F_OK) == 0; }

/* No "*.tmp.*" left in the test folder. */
static int temp_files(void) {
  DIR *d = opendir(g_dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  return n;
}

static char *read_all(const char *path, size_t *len) {
  uint8_t *data = NULL;
  if (ldmc_file_read(path, 64u << 20, &data, len) != LDMC_OK) return NULL;
  return (char *)data;
}

/* ---- ticks ---- */

static void check_ticks(double lo, double hi, bool log, int max, const double *want, int n_want, double want_step) {
  double v[32], step = -1;
  int n = -1;
  ldmc_status s = ldmc_plot_ticks(lo, hi, log, max, v, 32, &n, &step);
  CHECK_MSG(s == LDMC_OK, "ticks [%g, %g]%s: %s", lo, hi, log ? " log" : "", ldmc_last_error());
  CHECK_MSG(n == n_want, "ticks [%g, %g]%s max %d: %d ticks, want %d", lo, hi, log ? " log" : "", max, n, n_want);
  for (int i = 0; i < n && i < n_want; i++)
    CHECK_MSG(fabs(v[i] - want[i]) <= 1e-12 * fmax(1, fabs(want[i])), "ticks [%g, %g] #%d = %.17g, want %g", lo, hi,
              i, v[i], want[i]);
  CHECK_MSG(fabs(step - want_step) <= 1e-12 * fmax(1, want_step), "ticks [%g, %g]: step %g, want %g", lo, hi, step,
            want_step);
}

static void test_linear_ticks(void) {
  /* range/max = 166.7: step 100 gives 11 ticks, 200 gives 6 */
  check_ticks(0, 1000, false, 6, (double[]){0, 200, 400, 600, 800, 1000}, 6, 200);
  /* 0.074/5 = 0.0148: 0.01 gives 7 (0.02..0.08), 0.02 gives 4 */
  check_ticks(0.013, 0.087, false, 5, (double[]){0.02, 0.04, 0.06, 0.08}, 4, 0.02);
  /* step 1: -3..12 = 16 ticks; step 2: -2..12 = 8 */
  check_ticks(-3.7, 12.2, false, 8, (double[]){-2, 0, 2, 4, 6, 8, 10, 12}, 8, 2);
  /* step 0.1: 11 ticks > 10; 0.2: 6, ends included */
  check_ticks(1, 2, false, 10, (double[]){1, 1.2, 1.4, 1.6, 1.8, 2}, 6, 0.2);
  /* 1000: 21, 2000: 11, 5000: 5 */
  check_ticks(0, 20000, false, 10, (double[]){0, 5000, 10000, 15000, 20000}, 5, 5000);
  /* a negative range straddling nothing: -0.9 .. -0.1, step 0.2 */
  check_ticks(-0.95, -0.05, false, 5, (double[]){-0.8, -0.6, -0.4, -0.2}, 4, 0.2);
  /* tiny span around a large value: 1e6 + [0, 3], step 1 gives 4 */
  check_ticks(1e6, 1e6 + 3, false, 5, (double[]){1e6, 1e6 + 1, 1e6 + 2, 1e6 + 3}, 4, 1);
}

static void test_log_ticks(void) {
  check_ticks(1e-3, 1e2, true, 10, (double[]){1e-3, 1e-2, 1e-1, 1, 10, 100}, 6, 0);
  /* 7 decades 1..1e6 > 4: every second, at even exponents */
  check_ticks(0.5, 2e6, true, 4, (double[]){1, 100, 1e4, 1e6}, 4, 0);
  /* 10^3 .. 10^12 with at most 3: stride 4 gives 10^4, 10^8, 10^12 */
  check_ticks(1e3, 1e12, true, 3, (double[]){1e4, 1e8, 1e12}, 3, 0);
  /* only 0.1 inside: 1-2-5 values 0.02, 0.05, 0.1, 0.2 */
  check_ticks(0.02, 0.3, true, 8, (double[]){0.02, 0.05, 0.1, 0.2}, 4, 0);
  /* only 1 and 2 inside: linear, step 0.5 (0.1: 22 ticks, 0.2: 11) */
  check_ticks(0.97, 3.1, true, 8, (double[]){1, 1.5, 2, 2.5, 3}, 5, 0.5);
  /* no 1, 2 or 5 x 10^k inside: linear, step 0.005 (0.001: 28 ticks, 0.002: 14) */
  check_ticks(0.021, 0.048, true, 8, (double[]){0.025, 0.03, 0.035, 0.04, 0.045}, 5, 0.005);

  double v[8];
  int n;
  CHECK(ldmc_plot_ticks(1, 1, false, 5, v, 8, &n, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_plot_ticks(2, 1, false, 5, v, 8, &n, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_plot_ticks(0, 10, true, 5, v, 8, &n, NULL) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), "lo > 0") != NULL);
  CHECK(ldmc_plot_ticks(0, NAN, false, 5, v, 8, &n, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_plot_ticks(0, 1, false, 1, v, 8, &n, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_plot_ticks(-1e308, 1e308, false, 5, v, 8, &n, NULL) == LDMC_ERR_INVALID); /* span overflows */
  CHECK(strstr(ldmc_last_error(), "too wide") != NULL);
  CHECK(ldmc_plot_ticks(1e-320, 2e-320, false, 5, v, 8, &n, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_plot_ticks(1e-300, 1e300, true, 5, v, 8, &n, NULL) == LDMC_OK && n == 5); /* 601 decades: every 150th */
  /* cap bounds what is written */
  CHECK(ldmc_plot_ticks(0, 10, false, 11, v, 3, &n, NULL) == LDMC_OK && n == 3 && v[2] == 2);
}

static void check_label(double v, double step, bool log, const char *want) {
  char buf[32];
  ldmc_plot_tick_label(v, step, log, buf, sizeof buf);
  CHECK_MSG(strcmp(buf, want) == 0, "label(%.17g, step %g%s) = '%s', want '%s'", v, step, log ? ", log" : "", buf,
            want);
}

static void test_labels(void) {
  check_label(0.1 + 0.2, 0.1, false, "0.3");
  check_label(1500, 500, false, "1500");
  check_label(-0.04, 0.02, false, "-0.04");
  check_label(1e-17, 0.02, false, "0"); /* rounding noise at zero is 0, not 1e-17 */
  check_label(-0.0, 1, false, "0");
  check_label(0.055, 0.005, false, "0.055");
  check_label(2.5e6, 5e5, false, "2500000");
  check_label(3e6, 1e6, false, "3e+06");
  check_label(2.5e-5, 5e-6, false, "2.5e-05");
  check_label(1e-5, 0, true, "1e-05");
  check_label(1e-3, 0, true, "0.001");
  check_label(1e5, 0, true, "100000");
  check_label(1e6, 0, true, "1e+06");
}

/* ---- SVG ---- */

/* Well-formed tags: every element closed in order, one root <svg>. */
static bool svg_well_formed(const char *s, char *why, size_t len) {
  char stack[64][32];
  int depth = 0, roots = 0;
  for (const char *p = strchr(s, '<'); p; p = strchr(p, '<')) {
    const char *gt = strchr(p, '>');
    if (!gt) return snprintf(why, len, "unterminated tag at byte %ld", (long)(p - s)), false;
    const char *q = memchr(p + 1, '<', (size_t)(gt - p - 1));
    if (q) return snprintf(why, len, "'<' inside a tag at byte %ld", (long)(q - s)), false;
    if (p[1] == '?' || p[1] == '!') {
      p = gt + 1;
      continue;
    }
    bool closing = p[1] == '/', empty = gt[-1] == '/';
    const char *name = p + 1 + closing;
    size_t n = strcspn(name, " \t\n/>");
    if (n == 0 || n >= 32) return snprintf(why, len, "bad tag name at byte %ld", (long)(p - s)), false;
    if (closing) {
      if (depth == 0 || strncmp(stack[depth - 1], name, n) != 0 || stack[depth - 1][n])
        return snprintf(why, len, "</%.*s> closes nothing open", (int)n, name), false;
      depth--;
    } else if (!empty) {
      if (depth == 0) roots++;
      if (depth == 64) return snprintf(why, len, "nesting too deep"), false;
      memcpy(stack[depth], name, n);
      stack[depth++][n] = '\0';
    }
    p = gt + 1;
  }
  if (depth != 0) return snprintf(why, len, "%d elements left open (<%s>)", depth, stack[depth - 1]), false;
  if (roots != 1) return snprintf(why, len, "%d root elements", roots), false;
  return true;
}

/* Whether a style "...KEY:rgb(r%,g%,b%)..." holds cycle color k. */
static bool style_has_color(const char *style, size_t len, const char *key, int k) {
  char pat[16];
  snprintf(pat, sizeof pat, "%s:rgb(", key);
  const char *p = strstr(style, pat);
  if (!p || p >= style + len) return false;
  double r, g, b, c[3];
  if (sscanf(p + strlen(pat), "%lf%%,%lf%%,%lf%%", &r, &g, &b) != 3) return false;
  ldmc_plot_cycle_color(k, c);
  return fabs(r / 100 - c[0]) < 0.006 && fabs(g / 100 - c[1]) < 0.006 && fabs(b / 100 - c[2]) < 0.006;
}

/* The <path> elements stroked (or filled) in cycle color k; *subpaths: the
 * most 'M' commands in one of them. */
static int paths_in_color(const char *svg, const char *key, int k, int *subpaths) {
  int n = 0;
  if (subpaths) *subpaths = 0;
  for (const char *p = strstr(svg, "<path"); p; p = strstr(p + 1, "<path")) {
    const char *end = strchr(p, '>');
    if (!end || !style_has_color(p, (size_t)(end - p), key, k)) continue;
    n++;
    int m = 0;
    for (const char *q = p; q < end; q++) m += *q == 'M';
    if (subpaths && m > *subpaths) *subpaths = m;
  }
  return n;
}

static int count_of(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

static ldmc_plot *sample_plot(int w, int h) {
  ldmc_plot *p = NULL;
  CHECK(ldmc_plot_create(w, h, &p) == LDMC_OK);
  CHECK(ldmc_plot_set_title(p, "loss <by> step & width") == LDMC_OK);
  CHECK(ldmc_plot_set_label(p, LDMC_PLOT_X, "step") == LDMC_OK);
  CHECK(ldmc_plot_set_label(p, LDMC_PLOT_Y, "loss") == LDMC_OK);
  double x[50], a[50], b[50], hid[50];
  for (int i = 0; i < 50; i++) {
    x[i] = 10.0 * (i + 1);
    a[i] = 2.0 / (1 + 0.1 * i);
    hid[i] = i == 30 ? NAN : 0.8 * a[i];
    b[i] = i == 20 ? NAN : 2.5 / (1 + 0.08 * i); /* a gap: two subpaths */
  }
  CHECK(ldmc_plot_add_series(p, "train loss", x, a, 50, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_plot_add_series(p, "val loss", x, b, 50, &(ldmc_plot_style){.dash = LDMC_PLOT_DASHED}, NULL) == LDMC_OK);
  double px[4] = {100, 200, 300, 400}, py[4] = {1.5, 1.0, 0.7, 0.5};
  int idx = -1;
  CHECK(ldmc_plot_add_series(p, "points", px, py, 4, &(ldmc_plot_style){.draw = LDMC_PLOT_MARKERS}, &idx) == LDMC_OK);
  CHECK(idx == 2);
  /* a faint series with no legend entry, in the first series' color */
  CHECK(ldmc_plot_add_series(p, "hidden", x, hid, 50,
                             &(ldmc_plot_style){.color = LDMC_PLOT_COLOR(0), .opacity = 0.3, .no_legend = true},
                             NULL) == LDMC_OK);
  return p;
}

static void test_svg(void) {
  char path[128];
  path_in(path, sizeof path, "plot.svg");
  ldmc_plot *p = sample_plot(0, 0);
  CHECK(ldmc_plot_num_series(p) == 4);
  CHECK(ldmc_plot_series_color(p, 0) == 0 && ldmc_plot_series_color(p, 1) == 1 && ldmc_plot_series_color(p, 2) == 2);
  CHECK(ldmc_plot_series_color(p, 3) == 0 && ldmc_plot_series_color(p, 4) == -1);
  ldmc_status s = ldmc_plot_save(p, path);
  CHECK_MSG(s == LDMC_OK, "%s", ldmc_last_error());
  ldmc_plot_free(p);
  size_t len = 0;
  char *svg = read_all(path, &len);
  CHECK(svg != NULL);
  if (!svg) return;
  char why[160] = "";
  CHECK(strncmp(svg, "<?xml", 5) == 0);
  CHECK(strstr(svg, "width=\"800pt\" height=\"500pt\"") != NULL);
  CHECK_MSG(svg_well_formed(svg, why, sizeof why), "%s", why);
  int sub = 0;
  /* line series: its line and its legend swatch */
  CHECK_MSG(paths_in_color(svg, "stroke", 0, &sub) == 3, "color 0: %d stroked paths (train loss, swatch, hidden)",
            paths_in_color(svg, "stroke", 0, NULL));
  CHECK_MSG(paths_in_color(svg, "stroke", 1, &sub) == 2, "color 1: %d stroked paths",
            paths_in_color(svg, "stroke", 1, NULL));
  CHECK_MSG(sub == 2, "the NaN gap: %d subpaths in val loss's line, want 2", sub);
  CHECK(count_of(svg, "stroke-dasharray") >= 2); /* the dashed line and its swatch */
  /* markers: no line; one filled path on the plot, one in the legend */
  CHECK(paths_in_color(svg, "stroke", 2, NULL) == 0);
  CHECK_MSG(paths_in_color(svg, "fill", 2, &sub) == 2, "color 2: %d filled paths", paths_in_color(svg, "fill", 2, NULL));
  CHECK_MSG(sub == 4, "markers: %d circles in one path, want 4", sub);
  CHECK(strstr(svg, "<title>loss &lt;by&gt; step &amp; width</title>") != NULL);
  CHECK(strstr(svg, "<desc>legend: train loss; val loss; points</desc>") != NULL);
  CHECK(strstr(svg, "hidden") == NULL);
  /* text is drawn: at least one glyph use per visible character of the title and legend */
  CHECK_MSG(count_of(svg, "<use ") >= 40, "%d glyphs drawn", count_of(svg, "<use "));
  free(svg);

  /* a first series out of the legend: no stray separator */
  CHECK(ldmc_plot_create(0, 0, &p) == LDMC_OK);
  double x[2] = {0, 1}, y[2] = {1, 2};
  CHECK(ldmc_plot_add_series(p, "raw", x, y, 2, &(ldmc_plot_style){.no_legend = true}, NULL) == LDMC_OK);
  CHECK(ldmc_plot_add_series(p, "avg", x, y, 2, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_plot_save(p, path) == LDMC_OK);
  ldmc_plot_free(p);
  svg = read_all(path, &len);
  CHECK(svg && strstr(svg, "<desc>legend: avg</desc>") != NULL && strstr(svg, "<title>plot</title>") != NULL);
  free(svg);
}

/* ---- PNG ---- */

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_png(void) {
  char path[128];
  path_in(path, sizeof path, "plot.png");
  ldmc_plot *p = sample_plot(640, 400);
  ldmc_status s = ldmc_plot_save(p, path);
  CHECK_MSG(s == LDMC_OK, "%s", ldmc_last_error());
  ldmc_plot_free(p);
  size_t len = 0;
  unsigned char *b = (unsigned char *)read_all(path, &len);
  CHECK(b && len > 33);
  if (!b || len <= 33) return;
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  CHECK(memcmp(b, sig, 8) == 0);
  CHECK(be32(b + 8) == 13 && memcmp(b + 12, "IHDR", 4) == 0);
  CHECK_MSG(be32(b + 16) == 640 && be32(b + 20) == 400, "IHDR %u x %u", be32(b + 16), be32(b + 20));
  CHECK(b[24] == 8 && b[25] == 2); /* 8 bits, RGB */
  CHECK(memcmp(b + len - 8, "IEND", 4) == 0);
  free(b);

  /* decoded: white corners, and lines in the first two cycle colors */
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  CHECK(png_image_begin_read_from_file(&img, path) != 0);
  img.format = PNG_FORMAT_RGB;
  unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
  CHECK(px && png_image_finish_read(&img, NULL, px, 0, NULL) != 0);
  if (!px) return;
  CHECK(img.width == 640 && img.height == 400);
  const unsigned char *c0 = px, *c1 = px + 3 * (640 * 400 - 1);
  CHECK(c0[0] == 255 && c0[1] == 255 && c0[2] == 255 && c1[0] == 255 && c1[1] == 255 && c1[2] == 255);
  /* pixels of color k over white at coverage >= 0.6 (lines are antialiased) */
  int hits[2] = {0, 0};
  for (int k = 0; k < 2; k++) {
    double c[3];
    ldmc_plot_cycle_color(k, c);
    int j = 0; /* the channel farthest from white */
    for (int ch = 1; ch < 3; ch++)
      if (c[ch] < c[j]) j = ch;
    for (size_t i = 0; i < (size_t)640 * 400; i++) {
      const unsigned char *q = px + 3 * i;
      double a = (255.0 - q[j]) / (255.0 * (1 - c[j]));
      bool on = a >= 0.6 && a <= 1.02;
      for (int ch = 0; ch < 3 && on; ch++) on = fabs(q[ch] - 255.0 * (1 - a * (1 - c[ch]))) <= 6;
      hits[k] += on;
    }
  }
  CHECK_MSG(hits[0] > 200 && hits[1] > 100, "pixels in color 0: %d, color 1: %d", hits[0], hits[1]);
  free(px);
}

/* ---- refusals ---- */

static void expect_error(ldmc_status s, ldmc_status want, const char *needle) {
  CHECK_MSG(s == want, "status %s, want %s (%s)", ldmc_status_name(s), ldmc_status_name(want), ldmc_last_error());
  if (s != LDMC_OK)
    CHECK_MSG(strstr(ldmc_last_error(), needle) != NULL, "message '%s' lacks '%s'", ldmc_last_error(), needle);
}

static void test_errors(void) {
  char path[128];
  ldmc_plot *p = NULL;
  expect_error(ldmc_plot_create(50, 500, &p), LDMC_ERR_INVALID, "50 x 500");
  CHECK(p == NULL);
  CHECK(ldmc_plot_create(0, 0, &p) == LDMC_OK);

  /* nothing to draw */
  path_in(path, sizeof path, "empty.svg");
  expect_error(ldmc_plot_save(p, path), LDMC_ERR_INVALID, "no series");
  CHECK(!exists(path));

  double x[3] = {1, 2, 3}, y[3] = {1, 2, 3}, nan3[3] = {NAN, NAN, INFINITY}, neg[3] = {0, -1, -2};
  expect_error(ldmc_plot_add_series(p, "none", x, y, 0, NULL, NULL), LDMC_ERR_INVALID, "'none': no points");
  expect_error(ldmc_plot_add_series(p, "nan", x, nan3, 3, NULL, NULL), LDMC_ERR_INVALID, "'nan': none of its 3");
  expect_error(ldmc_plot_add_series(p, "", x, y, 3, NULL, NULL), LDMC_ERR_INVALID, "no name");
  expect_error(ldmc_plot_add_series(p, "bad\xff", x, y, 3, NULL, NULL), LDMC_ERR_INVALID, "not printable UTF-8");
  expect_error(ldmc_plot_add_series(p, "c", x, y, 3, &(ldmc_plot_style){.color = 11}, NULL), LDMC_ERR_INVALID,
               "color 11");
  expect_error(ldmc_plot_set_title(p, "tab\there"), LDMC_ERR_INVALID, "title");
  expect_error(ldmc_plot_set_range(p, LDMC_PLOT_X, 2, 1), LDMC_ERR_INVALID, "x range [2, 1]");
  CHECK(ldmc_plot_num_series(p) == 0);

  /* every y non-positive on a log y axis: refused at save, by name, an existing file kept */
  CHECK(ldmc_plot_add_series(p, "pos", x, y, 3, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_plot_add_series(p, "neg", x, neg, 3, NULL, NULL) == LDMC_OK);
  ldmc_plot_set_log(p, LDMC_PLOT_Y, true);
  path_in(path, sizeof path, "kept.svg");
  CHECK(ldmc_file_write_atomic(path, "old", 3) == LDMC_OK);
  expect_error(ldmc_plot_save(p, path), LDMC_ERR_INVALID, "series 'neg': no point with a positive y for the log y axis");
  CHECK(strstr(ldmc_last_error(), "kept.svg") != NULL);
  size_t len = 0;
  char *old = read_all(path, &len);
  CHECK(old && len == 3 && memcmp(old, "old", 3) == 0);
  free(old);
  /* log x with x <= 0 everywhere names x */
  ldmc_plot_set_log(p, LDMC_PLOT_Y, false);
  ldmc_plot_set_log(p, LDMC_PLOT_X, true);
  ldmc_plot *q = NULL;
  CHECK(ldmc_plot_create(0, 0, &q) == LDMC_OK);
  CHECK(ldmc_plot_add_series(q, "negx", neg, y, 3, NULL, NULL) == LDMC_OK);
  ldmc_plot_set_log(q, LDMC_PLOT_X, true);
  ldmc_plot_set_log(q, LDMC_PLOT_Y, true);
  expect_error(ldmc_plot_save(q, path), LDMC_ERR_INVALID, "positive x for the log x axis");
  ldmc_plot_free(q);
  /* but a few non-positive points are only gaps */
  CHECK(ldmc_plot_add_series(p, "from zero", (double[]){0, 1, 2}, y, 3, NULL, NULL) == LDMC_OK);
  path_in(path, sizeof path, "logx.png");
  CHECK_MSG(ldmc_plot_save(p, path) == LDMC_OK, "%s", ldmc_last_error());

  /* unknown extension, unwritable path */
  ldmc_plot_set_log(p, LDMC_PLOT_X, false);
  path_in(path, sizeof path, "plot.pdf");
  expect_error(ldmc_plot_save(p, path), LDMC_ERR_INVALID, "unknown extension (expected .svg or .png)");
  CHECK(!exists(path));
  path_in(path, sizeof path, "plot.SVG.txt");
  expect_error(ldmc_plot_save(p, path), LDMC_ERR_INVALID, "unknown extension");
  path_in(path, sizeof path, "no-such-folder/plot.svg");
  expect_error(ldmc_plot_save(p, path), LDMC_ERR_IO, "no-such-folder/plot.svg");
  path_in(path, sizeof path, "no-such-folder");
  CHECK(!exists(path));
  CHECK_MSG(temp_files() == 0, "%d temp files left", temp_files());

  /* a fixed range far inside the data: the far points are clipped, not drawn at 1e300 */
  double fx[6] = {-1e300, 0, 1, 1e300, 1.7e308, -1.7e308}, fy[6] = {1e300, 0.5, 0.2, -1e300, 1, -1.7e308};
  CHECK(ldmc_plot_add_series(p, "far", fx, fy, 6, &(ldmc_plot_style){.draw = LDMC_PLOT_LINE | LDMC_PLOT_MARKERS},
                             NULL) == LDMC_OK);
  CHECK(ldmc_plot_set_range(p, LDMC_PLOT_X, 0, 3) == LDMC_OK);
  CHECK(ldmc_plot_set_range(p, LDMC_PLOT_Y, -1, 4) == LDMC_OK);
  path_in(path, sizeof path, "clipped.svg");
  CHECK_MSG(ldmc_plot_save(p, path) == LDMC_OK, "%s", ldmc_last_error());
  /* data too wide for an automatic range */
  ldmc_plot *w = NULL;
  CHECK(ldmc_plot_create(0, 0, &w) == LDMC_OK);
  double wx[2] = {-1.5e308, 1.5e308};
  CHECK(ldmc_plot_add_series(w, "wide", wx, wx, 2, NULL, NULL) == LDMC_OK);
  expect_error(ldmc_plot_save(w, path), LDMC_ERR_INVALID, "the data's x values span [-1.5e+308, 1.5e+308]");
  ldmc_plot_free(w);
  /* a log axis over a fixed range that includes 0 */
  ldmc_plot_set_log(p, LDMC_PLOT_Y, true);
  expect_error(ldmc_plot_save(p, path), LDMC_ERR_INVALID, "a log axis needs lo > 0");
  ldmc_plot_free(p);

  /* a constant series (zero span on both axes) still gets axes */
  CHECK(ldmc_plot_create(0, 0, &p) == LDMC_OK);
  double one[1] = {5}, c[1] = {0.25};
  CHECK(ldmc_plot_add_series(p, "one point", one, c, 1, NULL, NULL) == LDMC_OK);
  path_in(path, sizeof path, "one.png");
  CHECK_MSG(ldmc_plot_save(p, path) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_plot_set_log(p, LDMC_PLOT_X, true);
  ldmc_plot_set_log(p, LDMC_PLOT_Y, true);
  CHECK_MSG(ldmc_plot_save(p, path) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_plot_free(p);
  ldmc_plot_free(NULL);
}

/* ---- scatter ---- */

static const unsigned char *pixel(const unsigned char *px, int w, int x, int y) { return px + 3 * ((size_t)y * w + x); }

/* Whether a pixel is cycle color k (opaque), within rounding. */
static bool is_color(const unsigned char *q, int k) {
  double c[3];
  ldmc_plot_cycle_color(k, c);
  for (int ch = 0; ch < 3; ch++)
    if (fabs(q[ch] - 255 * c[ch]) > 2) return false;
  return true;
}

static unsigned char *decode_png(const char *path, int *w, int *h) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path)) return NULL;
  img.format = PNG_FORMAT_RGB;
  unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
  if (px && !png_image_finish_read(&img, NULL, px, 0, NULL)) free(px), px = NULL;
  *w = (int)img.width, *h = (int)img.height;
  return px;
}

/* Sized markers land where ldmc_plot_locate says, with the radius their
 * area gives; the locations follow the axes (equal steps per decade on the
 * log x, proportional on the linear y) and the frame is drawn where the
 * fixed range's ends are located. */
static void test_scatter_png(void) {
  char path[128];
  path_in(path, sizeof path, "scatter.png");
  ldmc_plot *p = NULL;
  CHECK(ldmc_plot_create(500, 360, &p) == LDMC_OK);
  ldmc_plot_set_log(p, LDMC_PLOT_X, true);
  CHECK(ldmc_plot_set_range(p, LDMC_PLOT_X, 0.5, 200) == LDMC_OK);
  CHECK(ldmc_plot_set_range(p, LDMC_PLOT_Y, 0, 4) == LDMC_OK);
  CHECK(ldmc_plot_set_label(p, LDMC_PLOT_X, "x") == LDMC_OK);
  double x[4] = {1, 10, 100, -1}, y[4] = {1, 3, 2, 1}, r[4] = {10, 20, 0, 5};
  double area[4] = {M_PI * r[0] * r[0], M_PI * r[1] * r[1], 0, M_PI * r[3] * r[3]};
  const char *labels[4] = {"a", NULL, "c", "skipped: x <= 0 on a log axis"};
  int idx = -1;
  CHECK_MSG(ldmc_plot_add_scatter(p, "pts", x, y, area, labels, 4, NULL, &idx) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(idx == 0 && ldmc_plot_num_series(p) == 1 && ldmc_plot_series_color(p, 0) == 0);
  CHECK_MSG(ldmc_plot_save(p, path) == LDMC_OK, "%s", ldmc_last_error());
  double px[3], py[3], fx0, fy0, fx1, fy1;
  for (int i = 0; i < 3; i++) CHECK(ldmc_plot_locate(p, path, x[i], y[i], &px[i], &py[i]) == LDMC_OK);
  CHECK(ldmc_plot_locate(p, path, 0.5, 0, &fx0, &fy0) == LDMC_OK && ldmc_plot_locate(p, path, 200, 4, &fx1, &fy1) == LDMC_OK);
  CHECK_NEAR(px[1] - px[0], px[2] - px[1], 1e-9);            /* a decade each */
  CHECK_NEAR(py[0] - py[1], 2 * (py[0] - py[2]), 1e-9);      /* y 1 -> 3 is twice 1 -> 2, upwards */
  CHECK_NEAR((px[0] - fx0) / (fx1 - fx0), log10(2) / log10(400), 1e-9);
  CHECK_NEAR((py[0] - fy0) / (fy1 - fy0), 0.25, 1e-9);
  CHECK(fx0 > 0 && fx1 < 500 && fy1 > 0 && fy0 < 360 && fy1 < fy0);
  int w = 0, h = 0;
  unsigned char *img = decode_png(path, &w, &h);
  CHECK(img && w == 500 && h == 360);
  if (!img) return;
  /* the frame's left edge: the 1 px line of dark gray on the column the range's start is located at */
  const unsigned char *fq = pixel(img, w, (int)round(fx0), (int)round((fy0 + fy1) / 2));
  CHECK_MSG(fq[0] == fq[1] && fq[1] == fq[2] && fq[0] > 50 && fq[0] < 80, "frame pixel %d,%d,%d", fq[0], fq[1], fq[2]);
  for (int i = 0; i < 2; i++) {
    int cx = (int)floor(px[i]), cy = (int)floor(py[i]);
    CHECK_MSG(is_color(pixel(img, w, cx, cy), 0), "point %d's center (%d, %d) is not color 0", i, cx, cy);
    static const int dir[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
    for (int d = labels[i] ? 1 : 0; d < 4; d++) { /* not right of a labeled point: its label */
      int ix = (int)floor(px[i] + 0.7 * r[i] * dir[d][0]), iy = (int)floor(py[i] + 0.7 * r[i] * dir[d][1]);
      int ox = (int)floor(px[i] + 1.4 * r[i] * dir[d][0]), oy = (int)floor(py[i] + 1.4 * r[i] * dir[d][1]);
      CHECK_MSG(is_color(pixel(img, w, ix, iy), 0), "point %d: 0.7 r away (%d, %d) is not color 0", i, ix, iy);
      const unsigned char *o = pixel(img, w, ox, oy);
      CHECK_MSG(!is_color(o, 0) && o[0] > 200, "point %d: 1.4 r away (%d, %d) is %d,%d,%d", i, ox, oy, o[0], o[1], o[2]);
    }
  }
  /* size 0: no circle, but its label "c" right of it (dark pixels within 3 .. 15 px) */
  CHECK(!is_color(pixel(img, w, (int)floor(px[2]), (int)floor(py[2])), 0));
  int dark = 0;
  for (int yy = (int)py[2] - 7; yy <= (int)py[2] + 7; yy++)
    for (int xx = (int)px[2] + 3; xx <= (int)px[2] + 15; xx++) dark += pixel(img, w, xx, yy)[0] < 180; /* the grid is 232 */
  CHECK_MSG(dark > 5, "label 'c': %d dark pixels", dark);
  free(img);
  /* a point that cannot be located */
  expect_error(ldmc_plot_locate(p, path, 0, 1, &px[0], &py[0]), LDMC_ERR_INVALID, "not positive on a log axis");
  expect_error(ldmc_plot_locate(p, "a.pdf", 1, 1, &px[0], &py[0]), LDMC_ERR_INVALID, "unknown extension");
  ldmc_plot_free(p);
}

/* The SVG: one circle per drawn point at the series' opacity, outlines, the
 * legend's swatch, a halo per label drawn, overlapping labels left out. */
static void test_scatter_svg(void) {
  char path[128];
  path_in(path, sizeof path, "scatter.svg");
  ldmc_plot *p = NULL;
  CHECK(ldmc_plot_create(0, 0, &p) == LDMC_OK);
  ldmc_plot_set_log(p, LDMC_PLOT_X, true);
  ldmc_plot_set_log(p, LDMC_PLOT_Y, true);
  double x[5] = {1, 10, 10, 100, NAN}, y[5] = {1, 5, 5.01, 50, 1}, s[5] = {100, 400, 50, 900, 10};
  const char *labels[5] = {"first <&>", "same", "same", "", "nan"};
  CHECK(ldmc_plot_add_scatter(p, "kernels & <more>", x, y, s, labels, 5,
                              &(ldmc_plot_style){.color = LDMC_PLOT_COLOR(2), .opacity = 0.5}, NULL) == LDMC_OK);
  double lx[2] = {1, 100}, ly[2] = {2, 200};
  CHECK(ldmc_plot_add_series(p, "roof", lx, ly, 2, &(ldmc_plot_style){.color = LDMC_PLOT_COLOR(3)}, NULL) == LDMC_OK);
  /* sizes NULL: the style's marker */
  CHECK(ldmc_plot_add_scatter(p, "plain", lx, ly, NULL, NULL, 2, NULL, NULL) == LDMC_OK);
  CHECK_MSG(ldmc_plot_save(p, path) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_plot_free(p);
  size_t len = 0;
  char *svg = read_all(path, &len);
  CHECK(svg != NULL);
  if (!svg) return;
  char why[160] = "";
  CHECK_MSG(svg_well_formed(svg, why, sizeof why), "%s", why);
  /* 4 finite points + the swatch, each its own path at fill-opacity 0.5 */
  int n = 0;
  for (const char *q = strstr(svg, "<path"); q; q = strstr(q + 1, "<path")) {
    const char *end = strchr(q, '>');
    if (!end) break;
    char tag[512]; /* its start: the style comes before the path data */
    size_t tl = (size_t)(end - q) < sizeof tag - 1 ? (size_t)(end - q) : sizeof tag - 1;
    memcpy(tag, q, tl);
    tag[tl] = '\0';
    n += style_has_color(tag, tl, "fill", 2) && strstr(tag, "fill-opacity:0.5;") != NULL;
  }
  CHECK_MSG(n == 5, "%d translucent circles in color 2, want 4 + the swatch", n);
  CHECK(paths_in_color(svg, "fill", 0, NULL) == 3); /* "plain" (the first free color): 2 markers + the swatch */
  /* labels: "first <&>" and one "same" (the other overlaps it); "" and the NaN point's are not drawn */
  CHECK_MSG(count_of(svg, "stroke-width:3;") == 2, "%d haloed labels", count_of(svg, "stroke-width:3;"));
  CHECK(strstr(svg, "<desc>legend: kernels &amp; &lt;more&gt;; roof; plain</desc>") != NULL);
  free(svg);
}

static void test_scatter_errors(void) {
  char path[128];
  ldmc_plot *p = NULL;
  CHECK(ldmc_plot_create(0, 0, &p) == LDMC_OK);
  double x[3] = {1, 2, 3}, y[3] = {1, 2, 3}, s[3] = {1, -1, 1}, sn[3] = {1, 1, NAN}, neg[3] = {0, -1, -2};
  const char *bad[3] = {NULL, "ok", "ctrl\x01"};
  expect_error(ldmc_plot_add_scatter(p, "none", x, y, NULL, NULL, 0, NULL, NULL), LDMC_ERR_INVALID, "'none': no points");
  expect_error(ldmc_plot_add_scatter(p, "neg", x, y, s, NULL, 3, NULL, NULL), LDMC_ERR_INVALID, "point 1's size -1");
  expect_error(ldmc_plot_add_scatter(p, "nan", x, y, sn, NULL, 3, NULL, NULL), LDMC_ERR_INVALID, "point 2's size nan");
  expect_error(ldmc_plot_add_scatter(p, "lab", x, y, NULL, bad, 3, NULL, NULL), LDMC_ERR_INVALID,
               "point 2's label 'ctrl\\x01': not printable UTF-8");
  expect_error(ldmc_plot_add_scatter(p, "", x, y, NULL, NULL, 3, NULL, NULL), LDMC_ERR_INVALID, "no name");
  expect_error(ldmc_plot_add_scatter(p, "d", x, y, NULL, NULL, 3, &(ldmc_plot_style){.draw = 8}, NULL),
               LDMC_ERR_INVALID, "unknown draw bits");
  CHECK(ldmc_plot_num_series(p) == 0);
  /* a log axis with no plottable point: refused at save, no file */
  CHECK(ldmc_plot_add_scatter(p, "negx", neg, y, NULL, NULL, 3, NULL, NULL) == LDMC_OK);
  ldmc_plot_set_log(p, LDMC_PLOT_X, true);
  path_in(path, sizeof path, "scatter-log.svg");
  expect_error(ldmc_plot_save(p, path), LDMC_ERR_INVALID, "series 'negx': no point with a positive x for the log x axis");
  CHECK(!exists(path));
  expect_error(ldmc_plot_locate(p, path, 1, 1, &x[0], &y[0]), LDMC_ERR_INVALID, "'negx': no point with a positive x");
  ldmc_plot_free(p);
  /* texts from data, cleaned: control bytes and invalid UTF-8 become '?', cut on a character boundary */
  char out[16];
  ldmc_plot_clean_text("a\tb\xff\xc3\xa9", out, sizeof out);
  CHECK_MSG(strcmp(out, "a?b?\xc3\xa9") == 0, "'%s'", out);
  ldmc_plot_clean_text("a\xc3\xa9", out, 3);
  CHECK(strcmp(out, "a") == 0);
  ldmc_plot_clean_text(NULL, out, sizeof out);
  CHECK(out[0] == 0);
  ldmc_plot_clean_text("\xed\xa0\x80x", out, sizeof out); /* a UTF-16 surrogate: 3 bad bytes */
  CHECK_MSG(strcmp(out, "???x") == 0, "'%s'", out);
}

/* The cycle: automatic colors skip the ones taken explicitly. */
static void test_colors(void) {
  ldmc_plot *p = NULL;
  CHECK(ldmc_plot_create(0, 0, &p) == LDMC_OK);
  double x[2] = {0, 1}, y[2] = {0, 1};
  CHECK(ldmc_plot_add_series(p, "a", x, y, 2, &(ldmc_plot_style){.color = LDMC_PLOT_COLOR(1)}, NULL) == LDMC_OK);
  for (int i = 0; i < 11; i++) CHECK(ldmc_plot_add_series(p, "auto", x, y, 2, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_plot_series_color(p, 0) == 1);
  CHECK(ldmc_plot_series_color(p, 1) == 0);
  CHECK(ldmc_plot_series_color(p, 2) == 2);
  CHECK(ldmc_plot_series_color(p, 9) == 9);
  CHECK(ldmc_plot_series_color(p, 10) == 0); /* all ten taken: the cycle repeats */
  double c[3];
  ldmc_plot_cycle_color(3, c);
  CHECK_NEAR(c[0], 0xd6 / 255.0, 1e-12);
  CHECK_NEAR(c[1], 0x27 / 255.0, 1e-12);
  CHECK_NEAR(c[2], 0x28 / 255.0, 1e-12);
  ldmc_plot_cycle_color(13, c);
  CHECK_NEAR(c[0], 0xd6 / 255.0, 1e-12);
  ldmc_plot_free(p);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ldmc-plot.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_linear_ticks();
  test_log_ticks();
  test_labels();
  test_svg();
  test_png();
  test_errors();
  test_scatter_png();
  test_scatter_svg();
  test_scatter_errors();
  test_colors();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (getenv("LDMC_PLOT_KEEP")) printf("test_plot: the plots are in %s\n", g_dir); /* to look at them */
  else if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  return test_summary("test_plot");
}
