/* Tick values and labels of plot axes (see plot.h): the smallest 1-2-5
 * step that gives at most max_ticks ticks, decades on log axes. */
#include "runtime/plot.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

/* Number of multiples of step in [lo, hi] (a hair of slack at both ends). */
static double count_multiples(double lo, double hi, double step) {
  return floor(hi / step + 1e-9) - ceil(lo / step - 1e-9) + 1;
}

static int linear_ticks(double lo, double hi, int max_ticks, double *out, int cap, double *step) {
  static const double k_mant[3] = {1, 2, 5};
  double e = floor(log10((hi - lo) / max_ticks));
  double s = 0;
  for (int k = 0; k < 40 && s == 0; k++) { /* the smallest 1-2-5 step giving at most max_ticks */
    double c = k_mant[k % 3] * pow(10, e + k / 3);
    if (count_multiples(lo, hi, c) <= max_ticks) s = c;
  }
  if (s == 0) s = hi - lo;
  *step = s;
  int n = 0;
  for (double m = ceil(lo / s - 1e-9); m <= floor(hi / s + 1e-9) && n < cap; m++) {
    double v = m * s;
    out[n++] = v == 0 ? 0 : v; /* no -0 */
  }
  return n;
}

ldmc_status ldmc_plot_ticks(double lo, double hi, bool log, int max_ticks, double *out, int cap, int *n,
                            double *step) {
  *n = 0;
  if (step) *step = 0;
  if (!isfinite(lo) || !isfinite(hi) || !(lo < hi) || (log && !(lo > 0)))
    return ldmc_error(LDMC_ERR_INVALID, "ticks on [%g, %g]%s: expected finite lo < hi%s", lo, hi, log ? " (log)" : "",
                      log ? ", lo > 0" : "");
  double span = log ? log10(hi) - log10(lo) : hi - lo;
  if (!isfinite(span) || span < 1e3 * DBL_MIN * max_ticks)
    return ldmc_error(LDMC_ERR_INVALID, "ticks on [%g, %g]: a span of %g is too wide or too narrow", lo, hi, hi - lo);
  if (max_ticks < 2 || cap < 1)
    return ldmc_error(LDMC_ERR_INVALID, "ticks: max_ticks %d (>= 2) or cap %d (>= 1) too small", max_ticks, cap);
  double s = 0;
  if (!log) {
    *n = linear_ticks(lo, hi, max_ticks, out, cap, &s);
    if (step) *step = s;
    return LDMC_OK;
  }
  double elo = ceil(log10(lo) - 1e-9), ehi = floor(log10(hi) + 1e-9);
  if (ehi - elo + 1 >= 2) { /* decades: every stride-th, strides aligned to multiples */
    for (int stride = 1;; stride++) {
      double first = ceil(elo / stride) * stride;
      if (floor((ehi - first) / stride) + 1 > max_ticks) continue;
      for (double e = first; e <= ehi && *n < cap; e += stride) out[(*n)++] = pow(10, e);
      return LDMC_OK;
    }
  }
  /* less than two decades inside: 1, 2 and 5 times the powers of ten, if that makes three or more */
  static const double k_mant[3] = {1, 2, 5};
  double tmp[16];
  int m = 0;
  for (double e = floor(log10(lo)) - 1; e <= ehi + 1 && m < 16; e++)
    for (int k = 0; k < 3 && m < 16; k++) {
      double v = k_mant[k] * pow(10, e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) tmp[m++] = v;
    }
  if (m >= 3 && m <= max_ticks) {
    for (int i = 0; i < m && i < cap; i++) out[(*n)++] = tmp[i];
    return LDMC_OK;
  }
  *n = linear_ticks(lo, hi, max_ticks, out, cap, &s);
  if (step) *step = s;
  return LDMC_OK;
}

void ldmc_plot_tick_label(double v, double step, bool log, char *buf, size_t len) {
  if (log || !(step > 0)) {
    snprintf(buf, len, "%g", v);
    return;
  }
  v = round(v / step) * step; /* 0.30000000000000004 -> 0.3 */
  if (v == 0) {
    snprintf(buf, len, "0");
    return;
  }
  int es = (int)floor(log10(step) + 1e-9);
  if (step < 1e-4 || step >= 1e6) {
    int ev = (int)floor(log10(fabs(v)) + 1e-9);
    snprintf(buf, len, "%.*e", ev - es > 0 ? ev - es : 0, v);
    return;
  }
  snprintf(buf, len, "%.*f", es < 0 ? -es : 0, v);
}
