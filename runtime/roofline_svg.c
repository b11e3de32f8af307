/* A roofline plot as SVG: log-log axes (FLOPs per byte against GFLOP/s), the
 * memory roof (bandwidth x intensity) up to the ridge point, the compute roof
 * (FMA peak) after it, and each kernel a circle whose area is its share of
 * the time, with a tooltip; the largest are labeled. Written atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/profiler.h"
#include "support/fileio.h"

enum { W = 960, H = 640, ML = 90, MR = 40, MT = 56, MB = 76, N_LABELS = 8 };
/* a white outline keeps text readable over points and lines */
#define HALO "stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\""


typedef struct axes {
  double x0, x1, y0, y1; /* log10 range */
} axes;

static double px(const axes *a, double x) { return ML + (log10(x) - a->x0) / (a->x1 - a->x0) * (W - ML - MR); }
static double py(const axes *a, double y) { return H - MB - (log10(y) - a->y0) / (a->y1 - a->y0) * (H - MT - MB); }

static void xml_text(FILE *f, const char *s) {
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
      case '&': fputs("&amp;", f); break;
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&apos;", f); break;
      default:
        if (c < 0x20 && c != '\t' && c != '\n') fputc('?', f); /* not allowed in XML 1.0 */
        else fputc(c, f);
    }
  }
}

static void decade_label(double e, char *buf, size_t len) {
  double v = pow(10, e);
  if (e >= -3 && e <= 5) snprintf(buf, len, "%g", v);
  else snprintf(buf, len, "1e%d", (int)e);
}

static int cmp_weight_desc(const void *a, const void *b) {
  const ldmc_roofline_point *x = *(const ldmc_roofline_point *const *)a, *y = *(const ldmc_roofline_point *const *)b;
  return x->weight > y->weight ? -1 : x->weight < y->weight;
}

static bool plottable(const ldmc_roofline_point *p) {
  return isfinite(p->intensity) && isfinite(p->gflops) && p->intensity > 0 && p->gflops > 0;
}

static void pick_axes(const ldmc_roofline_point *pts, int n, double peak, double bw, axes *a) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (!plottable(&pts[i])) continue;
    xlo = fmin(xlo, pts[i].intensity);
    xhi = fmax(xhi, pts[i].intensity);
    ylo = fmin(ylo, pts[i].gflops);
    yhi = fmax(yhi, pts[i].gflops);
  }
  if (peak > 0 && bw > 0) {
    double ridge = peak / bw;
    xlo = fmin(xlo, ridge / 10);
    xhi = fmax(xhi, ridge * 10);
    yhi = fmax(yhi, peak);
    ylo = fmin(ylo, bw * xlo);
  }
  if (!isfinite(xlo)) xlo = 0.1, xhi = 100, ylo = 0.1, yhi = 100;
  a->x0 = floor(log10(xlo));
  a->x1 = ceil(log10(xhi * 1.0001));
  a->y0 = floor(log10(ylo));
  a->y1 = ceil(log10(yhi * 1.5));
  if (a->x1 <= a->x0) a->x1 = a->x0 + 1;
  if (a->y1 <= a->y0) a->y1 = a->y0 + 1;
  if (a->y1 - a->y0 > 9) a->y0 = a->y1 - 9; /* keep the interesting top readable */
}

static void grid(FILE *f, const axes *a) {
  char lab[32];
  for (double e = a->x0; e <= a->x1 + 1e-9; e++) {
    double x = px(a, pow(10, e));
    decade_label(e, lab, sizeof lab);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, MT, x, H - MB);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x, H - MB + 20, lab);
  }
  for (double e = a->y0; e <= a->y1 + 1e-9; e++) {
    double y = py(a, pow(10, e));
    decade_label(e, lab, sizeof lab);
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", ML, y, W - MR, y);
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ML - 8, y + 4, lab);
  }
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", ML, MT,
          W - ML - MR, H - MT - MB);
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">arithmetic intensity (FLOP/byte)</text>\n",
          (ML + W - MR) / 2, H - 24);
  fprintf(f, "<text transform=\"translate(24 %d) rotate(-90)\" text-anchor=\"middle\">performance (GFLOP/s)</text>\n",
          (MT + H - MB) / 2);
}

static void roofs(FILE *f, const axes *a, double peak, double bw) {
  double xmin = pow(10, a->x0), xmax = pow(10, a->x1), ymin = pow(10, a->y0);
  double ridge = peak / bw;
  double xs = fmax(xmin, ymin / bw); /* where the memory roof enters the plot */
  fprintf(f, "<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2.5\" points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\"/>\n",
          px(a, xs), py(a, bw * xs), px(a, ridge), py(a, peak), px(a, xmax), py(a, peak));
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c0392b\" text-anchor=\"end\" %s>FMA peak %.1f GFLOP/s</text>\n",
          px(a, xmax) - 6, py(a, peak) - 8, HALO, peak);
  double lx = fmax(xs * 1.5, ridge / 30);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c0392b\" %s transform=\"rotate(%.1f %.1f %.1f)\">memory %.1f GB/s</text>\n",
          px(a, lx) + 6, py(a, bw * lx) - 10, HALO,
          -atan2(py(a, bw * xs) - py(a, bw * ridge), px(a, ridge) - px(a, xs)) * 180 / M_PI, px(a, lx) + 6,
          py(a, bw * lx) - 10, bw);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#888\" font-size=\"11\" %s>ridge %.2f FLOP/B</text>\n",
          px(a, ridge) + 6, py(a, peak) + 16, HALO, ridge);
}

ldmc_status ldmc_roofline_write_svg(const char *path, const char *title, double peak_gflops, double bandwidth_gbs,
                                    const ldmc_roofline_point *pts, int n) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  const ldmc_roofline_point **order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
  if (!f || !order) {
    if (f) fclose(f);
    free(buf);
    free(order);
    return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  }
  axes a;
  pick_axes(pts, n, peak_gflops, bandwidth_gbs, &a);
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
             "font-family=\"sans-serif\" font-size=\"13\">\n<title>",
          W, H, W, H);
  xml_text(f, title);
  fprintf(f, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
  fprintf(f, "<text x=\"%d\" y=\"30\" font-size=\"16\" font-weight=\"bold\">", ML);
  xml_text(f, title);
  fprintf(f, "</text>\n");
  grid(f, &a);
  if (peak_gflops > 0 && bandwidth_gbs > 0) roofs(f, &a, peak_gflops, bandwidth_gbs);
  else fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#888\">no machine calibration: roofs not drawn</text>\n", ML + 10, MT + 20);
  int m = 0, skipped = 0;
  for (int i = 0; i < n; i++) {
    if (plottable(&pts[i])) order[m++] = &pts[i];
    else skipped++;
  }
  qsort(order, (size_t)m, sizeof *order, cmp_weight_desc);
  for (int i = 0; i < m; i++) { /* largest first, so small circles stay visible on top */
    const ldmc_roofline_point *p = order[i];
    double r = 3 + 24 * sqrt(fmax(0, fmin(1, p->weight)));
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"#2e86c1\" fill-opacity=\"0.45\" stroke=\"#1b4f72\">"
               "<title>",
            px(&a, p->intensity), py(&a, p->gflops), r);
    xml_text(f, p->label);
    fprintf(f, ": %.3g FLOP/B, %.3g GFLOP/s, %.1f%% of the time</title></circle>\n", p->intensity, p->gflops,
            100 * p->weight);
  }
  /* tags of the largest points, right of the point (left near the edge),
   * skipping any that would overlap one already placed */
  double boxes[N_LABELS][4];
  int placed = 0;
  for (int i = 0; i < m && placed < N_LABELS; i++) {
    const ldmc_roofline_point *p = order[i];
    if (!p->tag || !p->tag[0]) continue;
    double r = 3 + 24 * sqrt(fmax(0, fmin(1, p->weight))), w = 6.5 * (double)strlen(p->tag);
    double cx = px(&a, p->intensity), cy = py(&a, p->gflops);
    bool left = cx + r + 3 + w > W - MR;
    double x0 = left ? cx - r - 3 - w : cx + r + 3, y0 = cy - 7;
    bool clash = false;
    for (int j = 0; j < placed && !clash; j++)
      clash = x0 < boxes[j][2] && boxes[j][0] < x0 + w && y0 < boxes[j][3] && boxes[j][1] < y0 + 14;
    if (clash) continue;
    boxes[placed][0] = x0, boxes[placed][1] = y0, boxes[placed][2] = x0 + w, boxes[placed][3] = y0 + 14;
    placed++;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"%s\" %s>", left ? cx - r - 3 : cx + r + 3,
            cy + 4, left ? "end" : "start", HALO);
    xml_text(f, p->tag);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#666\" font-size=\"11\">%d point%s; area = share of time", ML, MT - 8, m,
          m == 1 ? "" : "s");
  if (skipped) fprintf(f, "; %d without FLOPs or time not drawn", skipped);
  fprintf(f, "</text>\n</svg>\n");
  fclose(f);
  free(order);
  ldmc_status st = buf ? ldmc_file_write_atomic(path, buf, len) : ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  free(buf);
  return st;
}
