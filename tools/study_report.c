/* The study's analysis, from the cells finished so far (DIR/cells/NAME.json):
 * DIR/study.csv (every cell), DIR/best.csv (per width, sampler and steps the
 * best FD over the guidance rates and the rate chosen, as the published
 * study selects the optimal CFG per model and step count), the plots
 * (runtime/plot.h, cairo: PNG and SVG) and image grids in DIR/plots, and
 * DIR/report.md with the tables and what the data says: which width is best
 * at each sampling cost, where the crossover lies, per sampler, after
 * distillation and for super-resolution. */
/* Paths: --out is at most STUDY_PATH - 300 bytes (cmd_study.c checks), so every path built from it fits. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend/weights_io.h"
#include "runtime/plot.h"
#include "runtime/png_grid.h"
#include "support/fileio.h"
#include "tools/study.h"

typedef struct rec {
  char name[128];
  study_cell_kind kind;
  int width, steps, samples;
  char sampler[16];
  double guidance, fd, kid, acc, psnr, cost, seconds, spi, gflop, eval_s, compile_s, wall_s;
  char missing[8]; /* non-empty: the cell's input was not there */
  int64_t ckpt_step, train_steps;
} rec;

typedef struct recs {
  rec *r;
  int n, cap;
} recs;

static double num(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static int load_cells(const char *dir, recs *out) {
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/cells", dir);
  DIR *d = opendir(path);
  memset(out, 0, sizeof *out);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".json") || n - 5 >= sizeof out->r->name) continue;
    char f[2 * STUDY_PATH];
    snprintf(f, sizeof f, "%s/%s", path, e->d_name);
    json_t *o = json_load_file(f, 0, NULL);
    if (!o) continue;
    rec r = {0};
    memcpy(r.name, e->d_name, n - 5);
    const char *kind = json_string_value(json_object_get(o, "kind"));
    int k = 0;
    while (kind && k < STUDY_KIND_COUNT && strcmp(kind, study_kind_name((study_cell_kind)k))) k++;
    if (!kind || k == STUDY_KIND_COUNT) {
      json_decref(o);
      continue;
    }
    r.kind = (study_cell_kind)k;
    r.width = (int)num(o, "width"), r.steps = (int)num(o, "steps"), r.samples = (int)num(o, "samples");
    const char *s = json_string_value(json_object_get(o, "sampler"));
    snprintf(r.sampler, sizeof r.sampler, "%s", s ? s : "");
    r.guidance = num(o, "guidance"), r.fd = num(o, "fd"), r.kid = num(o, "kid"), r.acc = num(o, "accuracy");
    r.psnr = num(o, "psnr"), r.cost = num(o, "cost"), r.seconds = num(o, "seconds");
    r.spi = num(o, "seconds_per_image"), r.gflop = num(o, "gflop"), r.eval_s = num(o, "eval_s");
    r.compile_s = num(o, "compile_s"), r.wall_s = num(o, "wall_s");
    r.ckpt_step = (int64_t)num(o, "ckpt_step"), r.train_steps = (int64_t)num(o, "steps");
    if (json_object_get(o, "missing")) snprintf(r.missing, sizeof r.missing, "yes");
    json_decref(o);
    if (out->n == out->cap) {
      int cap = out->cap ? 2 * out->cap : 256;
      rec *nr = realloc(out->r, (size_t)cap * sizeof *nr);
      if (!nr) break;
      out->r = nr, out->cap = cap;
    }
    out->r[out->n++] = r;
  }
  closedir(d);
  return 0;
}

/* the best FD over the rates of (kind, width, sampler, steps); NULL if none */
static const rec *best(const recs *R, study_cell_kind kind, int width, const char *sampler, int steps) {
  const rec *b = NULL;
  for (int i = 0; i < R->n; i++) {
    const rec *r = &R->r[i];
    if (r->kind == kind && r->width == width && r->steps == steps && !strcmp(r->sampler, sampler) && isfinite(r->fd) &&
        (!b || r->fd < b->fd))
      b = r;
  }
  return b;
}

/* a width's best-FD curve over the sweep's steps: cost ascending */
typedef struct curve {
  int n;
  double cost[STUDY_MAX_STEPS], fd[STUDY_MAX_STEPS], rate[STUDY_MAX_STEPS], spi[STUDY_MAX_STEPS];
  int steps[STUDY_MAX_STEPS];
} curve;

static void best_curve(const recs *R, study_cell_kind kind, int width, const char *sampler, const int *steps,
                       int n_steps, curve *c) {
  memset(c, 0, sizeof *c);
  for (int k = 0; k < n_steps; k++) {
    const rec *b = best(R, kind, width, sampler, steps[k]);
    if (!b) continue;
    c->cost[c->n] = b->cost, c->fd[c->n] = b->fd, c->rate[c->n] = b->guidance, c->spi[c->n] = b->spi;
    c->steps[c->n++] = steps[k];
  }
}

/* FD at cost x, log-linear between the curve's points; NaN outside its range */
static double at_cost(const curve *c, double x) {
  for (int i = 0; i + 1 < c->n; i++)
    if (x >= c->cost[i] && x <= c->cost[i + 1]) {
      double t = (log(x) - log(c->cost[i])) / (log(c->cost[i + 1]) - log(c->cost[i]));
      return c->fd[i] + t * (c->fd[i + 1] - c->fd[i]);
    }
  return c->n == 1 && fabs(x - c->cost[0]) < 1e-12 ? c->fd[0] : NAN;
}

static int save_plot(ldmc_plot *p, const char *dir, const char *name, FILE *md, const char *caption) {
  char path[2 * STUDY_PATH];
  int rc = 0;
  snprintf(path, sizeof path, "%s/plots/%s.svg", dir, name);
  if (ldmc_plot_num_series(p) == 0) rc = 1;
  if (!rc && ldmc_plot_save(p, path) != LDMC_OK) rc = 1;
  snprintf(path, sizeof path, "%s/plots/%s.png", dir, name);
  if (!rc && ldmc_plot_save(p, path) != LDMC_OK) rc = 1;
  if (!rc) fprintf(md, "\n![%s](plots/%s.png)\n\n*%s* ([SVG](plots/%s.svg))\n", caption, name, caption, name);
  else fprintf(md, "\n(%s: no data yet)\n", caption);
  ldmc_plot_free(p);
  return 0;
}

static ldmc_plot *new_plot(const char *title, const char *x, const char *y, bool logx, bool logy) {
  ldmc_plot *p = NULL;
  if (ldmc_plot_create(800, 500, &p) != LDMC_OK) return NULL;
  ldmc_plot_set_title(p, title);
  ldmc_plot_set_label(p, LDMC_PLOT_X, x);
  ldmc_plot_set_label(p, LDMC_PLOT_Y, y);
  ldmc_plot_set_log(p, LDMC_PLOT_X, logx);
  ldmc_plot_set_log(p, LDMC_PLOT_Y, logy);
  return p;
}

static void add_curve(ldmc_plot *p, const char *name, const double *x, const double *y, int n, int color,
                      ldmc_plot_dash dash, bool markers_only) {
  if (!p || n < 1) return;
  ldmc_plot_style s = {.draw = markers_only ? LDMC_PLOT_MARKERS : LDMC_PLOT_LINE | LDMC_PLOT_MARKERS,
                       .color = LDMC_PLOT_COLOR(color), .dash = dash};
  (void)ldmc_plot_add_series(p, name, x, y, n, &s, NULL);
}

/* the width (index) with the lowest FD at cost x among those whose curves reach x; -1: none */
static int winner(const study_config *c, const curve *cv, double x) {
  int bw = -1;
  double bf = INFINITY;
  for (int i = 0; i < c->n_widths; i++) {
    double f = at_cost(&cv[i], x);
    if (isfinite(f) && f < bf) bf = f, bw = i;
  }
  return bw;
}

/* The lower envelope of the widths' curves over log-spaced costs: which width
 * is best where, as segments [lo, hi] (switches found by bisection). */
#define STUDY_MAX_SEGS 64
typedef struct envelope {
  int n;
  int width[STUDY_MAX_SEGS];
  double lo[STUDY_MAX_SEGS], hi[STUDY_MAX_SEGS];
} envelope;

static void envelope_compute(const study_config *c, const curve *cv, envelope *e) {
  memset(e, 0, sizeof *e);
  double lo = INFINITY, hi = 0;
  for (int i = 0; i < c->n_widths; i++)
    for (int k = 0; k < cv[i].n; k++) lo = fmin(lo, cv[i].cost[k]), hi = fmax(hi, cv[i].cost[k]);
  if (!(hi > lo)) return;
  int prev = -1;
  double seg_start = lo, x_prev = lo;
  for (int j = 0; j <= 400; j++) {
    double x = exp(log(lo) + (log(hi) - log(lo)) * j / 400.0);
    int bw = winner(c, cv, x);
    if (j > 0 && bw != prev && prev >= 0 && bw >= 0 && e->n < STUDY_MAX_SEGS - 1) {
      double a = x_prev, b = x;
      for (int it = 0; it < 60; it++) {
        double m = sqrt(a * b);
        if (winner(c, cv, m) == prev) a = m;
        else b = m;
      }
      e->width[e->n] = c->widths[prev], e->lo[e->n] = seg_start, e->hi[e->n++] = b;
      seg_start = b;
    }
    if (bw >= 0) prev = bw;
    x_prev = x;
  }
  if (prev >= 0) e->width[e->n] = c->widths[prev], e->lo[e->n] = seg_start, e->hi[e->n++] = hi;
}

/* the conclusions, collected while the sections are written */
static char g_conclusions[16384];

static void conclude(const study_config *c, const char *what, const envelope *e, const char *unit) {
  size_t n = strlen(g_conclusions), cap = sizeof g_conclusions;
  char *o = g_conclusions + n;
  if (e->n == 0) {
    snprintf(o, cap - n, "- %s: no data yet.\n", what);
    return;
  }
  int w0 = e->width[0], w1 = e->width[e->n - 1], narrow = c->widths[0], wide = c->widths[c->n_widths - 1];
  int k = snprintf(o, cap - n, "- %s: ", what);
  for (int i = 0; i < e->n && (size_t)k < cap - n; i++)
    k += snprintf(o + k, cap - n - (size_t)k, "%sc=%d is best from %.3g to %.3g%s", i ? ", then " : "", e->width[i],
                  e->lo[i], e->hi[i], unit);
  if ((size_t)k >= cap - n) return;
  if (e->n == 1)
    k += snprintf(o + k, cap - n - (size_t)k, " (every cost measured: %s).\n",
                  w0 == narrow ? "the smallest model" : w0 == wide ? "the largest model" : "one middle width");
  else
    k += snprintf(o + k, cap - n - (size_t)k, ".\n");
  (void)w1;
}

static void frontier(FILE *md, const study_config *c, const curve *cv, const char *what, const char *label,
                     const char *unit) {
  envelope e;
  envelope_compute(c, cv, &e);
  if (e.n == 0) return;
  fprintf(md, "\n%s — the width with the lowest best FD at each sampling cost (log-linear between measured "
              "points, no extrapolation):\n\n", what);
  for (int i = 0; i < e.n; i++) fprintf(md, "- cost %.3g to %.3g: c=%d\n", e.lo[i], e.hi[i], e.width[i]);
  conclude(c, label, &e, unit);
  /* equal cost, pairwise: each measured point of a narrower width inside a wider width's cost range,
   * against the wider one's FD there (log-linear); and whether each switch of the envelope to a wider
   * model happens at that model's cheapest measured setting (it wins as soon as it is affordable) */
  int pts = 0, small_wins = 0, at_min = 0, ups = 0;
  for (int i = 0; i < c->n_widths; i++)
    for (int j = i + 1; j < c->n_widths; j++)
      for (int k = 0; k < cv[i].n; k++) {
        double f = at_cost(&cv[j], cv[i].cost[k]);
        if (!isfinite(f)) continue;
        pts++, small_wins += cv[i].fd[k] < f;
      }
  for (int i = 1; i < e.n; i++) {
    if (e.width[i] <= e.width[i - 1]) continue;
    ups++;
    for (int w = 0; w < c->n_widths; w++)
      if (c->widths[w] == e.width[i] && cv[w].n > 0 && fabs(e.lo[i] / cv[w].cost[0] - 1) < 1e-6) at_min++;
  }
  size_t n = strlen(g_conclusions);
  const char *verdict = !pts                     ? "no two widths overlap in cost"
                        : small_wins == 0          ? "the wider model wins every equal-cost comparison"
                        : 2 * small_wins > pts     ? "smaller models win most equal-cost comparisons"
                        : 2 * small_wins == pts    ? "the equal-cost comparisons split evenly"
                                                   : "wider models win most equal-cost comparisons";
  snprintf(g_conclusions + n, sizeof g_conclusions - n,
           "  Verdict: %s (the narrower model has the lower FD in %d of %d comparisons: each measured point of a "
           "narrower width inside a wider width's cost range).%s\n", verdict, small_wins, pts,
           ups && at_min == ups ? " Every crossover to a wider model lies at that model's cheapest measured setting: "
                                  "it wins as soon as it is affordable, and a narrower model is best only below that "
                                  "cost." : "");
}

static void grid_row(const char *dir, const char *name, float *out, int64_t per, int cols) {
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/cells/%s.safetensors", dir, name);
  ldmc_tensor_set s = {0};
  for (int64_t i = 0; i < per * cols; i++) out[i] = 1; /* white: missing */
  if (ldmc_safetensors_load(path, &s) != LDMC_OK) return;
  const ldmc_tensor *t = ldmc_tensor_set_find(&s, "images");
  if (t && t->dtype == LDMC_F32) {
    int64_t n = (int64_t)(t->nbytes / 4) / per;
    memcpy(out, t->data, (size_t)((n < cols ? n : cols) * per) * 4);
  }
  ldmc_tensor_set_free(&s);
}

static void write_csv(const char *dir, const recs *R) {
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/study.csv", dir);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "cell,kind,width,sampler,steps,guidance,ckpt_step,samples,fd,kid,accuracy,psnr,cost,"
             "seconds_per_image,gflop,seconds\n");
  for (int i = 0; i < R->n; i++) {
    const rec *r = &R->r[i];
    if (r->kind == STUDY_TRAIN || r->kind == STUDY_DISTILL || r->kind == STUDY_SR_TRAIN) continue;
    fprintf(f, "%s,%s,%d,%s,%d,%g,%lld,%d,%.6g,%.6g,%.4f,%.4g,%.6g,%.6g,%.6g,%.4g\n", r->name, study_kind_name(r->kind),
            r->width, r->sampler, r->steps, r->guidance, (long long)(r->kind == STUDY_CKPT ? r->ckpt_step : 0),
            r->samples, r->fd, r->kid, r->acc, r->psnr, r->cost, r->spi, r->gflop, r->seconds);
  }
  fclose(f);
}

static int cmp_rec(const void *a, const void *b) { return strcmp(((const rec *)a)->name, ((const rec *)b)->name); }

int study_report_write(const study_config *c, const char *dir, char *err, size_t errlen) {
  recs R;
  g_conclusions[0] = 0;
  load_cells(dir, &R);
  if (R.n > 1) qsort(R.r, (size_t)R.n, sizeof *R.r, cmp_rec);
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/plots", dir);
  mkdir(path, 0777);
  write_csv(dir, &R);
  char tmp[2 * STUDY_PATH];
  snprintf(tmp, sizeof tmp, "%s/report.md.tmp", dir);
  FILE *md = fopen(tmp, "w");
  if (!md) {
    free(R.r);
    snprintf(err, errlen, "cannot write %s", tmp);
    return 1;
  }
  study_width_costs wc[STUDY_MAX_WIDTHS];
  double tpu[STUDY_MAX_WIDTHS]; /* simulated seconds per image-pass on the v5e-like core */
  for (int i = 0; i < c->n_widths; i++) {
    if (study_width_costs_compute(c, c->widths[i], &wc[i], err, errlen)) {
      fclose(md), free(R.r);
      return 1;
    }
    if (study_tpusim_seconds(c, c->widths[i], "v5e", &tpu[i], err, errlen)) tpu[i] = NAN, err[0] = 0;
  }
  fprintf(md, "# Scaling study: quality against sampling cost\n\n"
              "Produced by `ldmc study` (docs/study.md) from %d finished cells. Quality: the Fréchet distance (FD, "
              "lower is better) between %d samples per cell (class i mod 10 prompted for image i) and the "
              "Fashion-MNIST test split, in the classifier's feature space. Sampling cost: the U-Net's GFLOPs per "
              "image per pass normalized to the c=320 U-Net at the same latent and context, × passes (2 with "
              "classifier-free guidance) × steps.\n\n", R.n, c->samples);
  /* the family */
  fprintf(md, "## The family\n\n| width c | parameters (M) | GFLOPs/pass | normalized cost/pass | training steps | "
              "training compute (GFLOP) | final FD (%s %d steps, w=%g) | llvm-cpu s/image/pass (measured) | tpusim v5e "
              "s/image/pass (simulated) |\n|---|---|---|---|---|---|---|---|---|\n",
          ldmc_sampler_name(c->ckpt_sweep.kind), c->ckpt_sweep.steps[0], c->ckpt_rate);
  for (int i = 0; i < c->n_widths; i++) {
    double fd = NAN, cpu = 0, passes = 0;
    for (int k = 0; k < R.n; k++) {
      const rec *r = &R.r[k];
      if (r->kind == STUDY_CKPT && r->width == c->widths[i] && r->ckpt_step == wc[i].train_steps) fd = r->fd;
      if (r->kind == STUDY_SAMPLE && r->width == c->widths[i] && isfinite(r->spi) && r->steps > 0)
        cpu += r->spi * (double)r->samples, passes += 2.0 * r->steps * (double)r->samples;
    }
    char f1[32] = "–", f2[32] = "–", f3[32] = "–";
    if (isfinite(fd)) snprintf(f1, sizeof f1, "%.2f", fd);
    if (passes > 0) snprintf(f2, sizeof f2, "%.3g", cpu / passes);
    if (isfinite(tpu[i])) snprintf(f3, sizeof f3, "%.3g", tpu[i]);
    fprintf(md, "| %d | %.3f | %.4f | %.5f | %lld | %.3g | %s | %s | %s |\n", c->widths[i], wc[i].params_m,
            wc[i].unet_gflops, wc[i].norm, (long long)wc[i].train_steps,
            wc[i].train_step_gflop * (double)wc[i].train_steps, f1, f2, f3);
  }
  int n_missing = 0;
  for (int k = 0; k < R.n; k++) n_missing += R.r[k].missing[0] != 0;
  if (n_missing) {
    fprintf(md, "\nMissing checkpoints (rotated out after an interrupted run):");
    for (int k = 0; k < R.n; k++)
      if (R.r[k].missing[0]) fprintf(md, " c=%d step %lld;", R.r[k].width, (long long)R.r[k].ckpt_step);
    fprintf(md, "\n");
  }
  /* (i) quality against training compute */
  ldmc_plot *p = new_plot("(i) quality against training compute", "training compute (GFLOP)",
                          "FD (lower is better)", true, true);
  for (int i = 0; i < c->n_widths; i++) {
    double x[64], y[64];
    int n = 0;
    for (int64_t k = c->ckpt_every; k <= wc[i].train_steps && n < 64; k += c->ckpt_every)
      for (int j = 0; j < R.n; j++)
        if (R.r[j].kind == STUDY_CKPT && R.r[j].width == c->widths[i] && R.r[j].ckpt_step == k)
          x[n] = wc[i].train_step_gflop * (double)k, y[n++] = R.r[j].fd;
    char nm[32];
    snprintf(nm, sizeof nm, "c=%d", c->widths[i]);
    add_curve(p, nm, x, y, n, i, LDMC_PLOT_SOLID, false);
  }
  fprintf(md, "\n## (i) Quality against training compute\n\nEvery kept checkpoint's %s, sampled with %s at %d steps "
              "and guidance %g.\n", c->ckpt_ema ? "EMA weights" : "trained parameters (not the EMA: it lags early on)",
          ldmc_sampler_name(c->ckpt_sweep.kind), c->ckpt_sweep.steps[0], c->ckpt_rate);
  save_plot(p, dir, "quality_vs_training", md, "FD against training compute per width");
  /* best-per-setting tables and curves per sampler */
  curve cv[STUDY_MAX_SAMPLERS][STUDY_MAX_WIDTHS];
  char bpath[2 * STUDY_PATH];
  snprintf(bpath, sizeof bpath, "%s/best.csv", dir);
  FILE *bc = fopen(bpath, "w");
  if (bc) fprintf(bc, "width,sampler,steps,best_guidance,fd,cost,seconds_per_image,tpusim_v5e_seconds_per_image\n");
  fprintf(md, "\n## (ii) The optimal guidance rate\n\nPer width, sampler and step count, the rate (of");
  for (int k = 0; k < c->n_rates; k++) fprintf(md, " %g", c->rates[k]);
  fprintf(md, ") with the lowest FD.\n\n| sampler | width |");
  int max_steps_cols = 0;
  for (int s = 0; s < c->n_sweeps; s++) max_steps_cols = c->sweeps[s].n_steps > max_steps_cols ? c->sweeps[s].n_steps : max_steps_cols;
  for (int s = 0; s < c->n_sweeps; s++) {
    for (int i = 0; i < c->n_widths; i++) {
      best_curve(&R, STUDY_SAMPLE, c->widths[i], ldmc_sampler_name(c->sweeps[s].kind), c->sweeps[s].steps,
                 c->sweeps[s].n_steps, &cv[s][i]);
      for (int k = 0; bc && k < cv[s][i].n; k++)
        fprintf(bc, "%d,%s,%d,%g,%.6g,%.6g,%.6g,%.6g\n", c->widths[i], ldmc_sampler_name(c->sweeps[s].kind),
                cv[s][i].steps[k], cv[s][i].rate[k], cv[s][i].fd[k], cv[s][i].cost[k], cv[s][i].spi[k],
                tpu[i] * 2 * cv[s][i].steps[k]);
    }
  }
  if (bc) fclose(bc);
  fprintf(md, " best rate at each step count (steps: best FD) |\n|---|---|---|\n");
  for (int s = 0; s < c->n_sweeps; s++)
    for (int i = 0; i < c->n_widths; i++) {
      fprintf(md, "| %s | c=%d | ", ldmc_sampler_name(c->sweeps[s].kind), c->widths[i]);
      for (int k = 0; k < cv[s][i].n; k++)
        fprintf(md, "%s%d: w=%g (FD %.2f)", k ? ", " : "", cv[s][i].steps[k], cv[s][i].rate[k], cv[s][i].fd[k]);
      fprintf(md, " |\n");
    }
  for (int s = 0; s < c->n_sweeps; s++) {
    char title[96], file[48];
    snprintf(title, sizeof title, "(ii) optimal guidance rate against steps, %s", ldmc_sampler_name(c->sweeps[s].kind));
    p = new_plot(title, "sampling steps", "guidance rate with the best FD", true, false);
    for (int i = 0; i < c->n_widths; i++) {
      double x[STUDY_MAX_STEPS];
      for (int k = 0; k < cv[s][i].n; k++) x[k] = cv[s][i].steps[k];
      char nm[32];
      snprintf(nm, sizeof nm, "c=%d", c->widths[i]);
      add_curve(p, nm, x, cv[s][i].rate, cv[s][i].n, i, LDMC_PLOT_SOLID, false);
    }
    snprintf(file, sizeof file, "guidance_%s", ldmc_sampler_name(c->sweeps[s].kind));
    save_plot(p, dir, file, md, title);
  }
  /* (iii), (iv): best FD against sampling cost */
  int ddim = -1;
  for (int s = 0; s < c->n_sweeps; s++)
    if (c->sweeps[s].kind == LDMC_SAMPLER_DDIM) ddim = s;
  fprintf(md, "\n## (iii, iv) Best FD against sampling cost\n\nEach point: one width at one step count, at its best "
              "guidance rate. DDIM is drawn dashed beside the other samplers.\n");
  for (int s = 0; s < c->n_sweeps; s++) {
    char title[96], file[48];
    const char *sn = ldmc_sampler_name(c->sweeps[s].kind);
    snprintf(title, sizeof title, "(%s) best FD against sampling cost, %s", s == ddim ? "iii" : "iv", sn);
    p = new_plot(title, "sampling cost (normalized cost x passes x steps)", "best FD over guidance rates", true, true);
    for (int i = 0; i < c->n_widths; i++) {
      char nm[48];
      snprintf(nm, sizeof nm, "c=%d %s", c->widths[i], sn);
      add_curve(p, nm, cv[s][i].cost, cv[s][i].fd, cv[s][i].n, i, LDMC_PLOT_SOLID, false);
      if (s != ddim && ddim >= 0) {
        snprintf(nm, sizeof nm, "c=%d ddim", c->widths[i]);
        add_curve(p, nm, cv[ddim][i].cost, cv[ddim][i].fd, cv[ddim][i].n, i, LDMC_PLOT_DASHED, false);
      }
    }
    snprintf(file, sizeof file, "cost_%s", sn);
    save_plot(p, dir, file, md, title);
    char what[64], label[64];
    snprintf(what, sizeof what, "**%s**", sn);
    snprintf(label, sizeof label, "%s, by normalized cost", sn);
    frontier(md, c, cv[s], what, label, "");
  }
  /* DDIM against measured and simulated seconds */
  if (ddim >= 0) {
    p = new_plot("best FD against seconds per image, ddim: llvm-cpu measured (solid), tpusim v5e simulated (dashed)",
                 "seconds per image", "best FD over guidance rates", true, true);
    for (int i = 0; i < c->n_widths; i++) {
      double sim[STUDY_MAX_STEPS];
      for (int k = 0; k < cv[ddim][i].n; k++) sim[k] = tpu[i] * 2 * cv[ddim][i].steps[k];
      char nm[48];
      snprintf(nm, sizeof nm, "c=%d llvm-cpu", c->widths[i]);
      add_curve(p, nm, cv[ddim][i].spi, cv[ddim][i].fd, cv[ddim][i].n, i, LDMC_PLOT_SOLID, false);
      snprintf(nm, sizeof nm, "c=%d tpusim", c->widths[i]);
      if (isfinite(tpu[i])) add_curve(p, nm, sim, cv[ddim][i].fd, cv[ddim][i].n, i, LDMC_PLOT_DASHED, false);
    }
    save_plot(p, dir, "seconds_ddim", md, "DDIM: best FD against seconds per image (2 passes per step)");
    curve secs[STUDY_MAX_WIDTHS];
    for (int i = 0; i < c->n_widths; i++) {
      secs[i] = cv[ddim][i];
      for (int k = 0; k < secs[i].n; k++) secs[i].cost[k] = secs[i].spi[k];
    }
    frontier(md, c, secs, "**ddim, by measured llvm-cpu seconds per image** (the cost axis in seconds)",
             "ddim, by measured llvm-cpu seconds per image", " s");
  }
  /* (v) distillation */
  if (c->distill) {
    fprintf(md, "\n## (v) Distilled models against undistilled ones at equal cost\n\nThe distilled (LCM) model of "
                "each width sampled with lcm (one pass per step: the rate is its input), best FD over the rates, "
                "against the same width's undistilled DDIM curve.\n\n| width | lcm steps | best w | FD | cost | "
                "undistilled DDIM FD at that cost (same width) | best undistilled FD of any width at that cost |\n"
                "|---|---|---|---|---|---|---|\n");
    p = new_plot("(v) distilled (lcm) against undistilled (ddim)", "sampling cost", "best FD", true, true);
    int n_same = 0, win_same = 0, n_any = 0, win_any = 0;
    for (int i = 0; i < c->n_widths; i++) {
      curve l;
      best_curve(&R, STUDY_LCM, c->widths[i], "lcm", c->lcm_steps, c->n_lcm_steps, &l);
      char nm[48];
      snprintf(nm, sizeof nm, "c=%d lcm", c->widths[i]);
      add_curve(p, nm, l.cost, l.fd, l.n, i, LDMC_PLOT_SOLID, false);
      if (ddim >= 0) {
        snprintf(nm, sizeof nm, "c=%d ddim", c->widths[i]);
        add_curve(p, nm, cv[ddim][i].cost, cv[ddim][i].fd, cv[ddim][i].n, i, LDMC_PLOT_DASHED, false);
      }
      for (int k = 0; k < l.n; k++) {
        double same = ddim >= 0 ? at_cost(&cv[ddim][i], l.cost[k]) : NAN, any = INFINITY;
        for (int j = 0; ddim >= 0 && j < c->n_widths; j++) {
          double f = at_cost(&cv[ddim][j], l.cost[k]);
          if (isfinite(f) && f < any) any = f;
        }
        if (isfinite(same)) n_same++, win_same += l.fd[k] < same;
        if (isfinite(any)) n_any++, win_any += l.fd[k] < any;
        char a[48], b[48];
        if (isfinite(same)) snprintf(a, sizeof a, "%.2f", same);
        else snprintf(a, sizeof a, "outside its measured costs");
        if (isfinite(any)) snprintf(b, sizeof b, "%.2f", any);
        else snprintf(b, sizeof b, "outside the measured costs");
        fprintf(md, "| c=%d | %d | %g | %.2f | %.4g | %s | %s |\n", c->widths[i], l.steps[k], l.rate[k], l.fd[k],
                l.cost[k], a, b);
      }
    }
    save_plot(p, dir, "distilled", md, "distilled models (solid) against undistilled DDIM (dashed)");
    size_t n = strlen(g_conclusions);
    snprintf(g_conclusions + n, sizeof g_conclusions - n,
             "- distillation: a distilled model's lcm cell has a lower FD than its own width's undistilled DDIM at "
             "the same cost in %d of %d comparisons, and lower than the best undistilled DDIM of any width at that "
             "cost in %d of %d (the others fall outside the measured DDIM costs: lcm runs one pass per step, "
             "cheaper than DDIM's cheapest setting).\n", win_same, n_same, win_any, n_any);
  }
  /* (vi) image grids at about the same cost */
  if (ddim >= 0) {
    /* the target: the largest cost the narrowest width reaches, which the widest reaches at few steps */
    double target = cv[ddim][0].n ? cv[ddim][0].cost[cv[ddim][0].n - 1] : 1;
    int64_t S = 32, per = S * S, cols = 10;
    float *img = malloc((size_t)(c->n_widths * cols * per) * sizeof *img);
    static char lab[STUDY_MAX_WIDTHS][96];
    const char *labels[STUDY_MAX_WIDTHS];
    int rows = 0;
    for (int i = 0; img && i < c->n_widths; i++) {
      int bk = -1;
      for (int k = 0; k < cv[ddim][i].n; k++)
        if (bk < 0 || fabs(log(cv[ddim][i].cost[k] / target)) < fabs(log(cv[ddim][i].cost[bk] / target))) bk = k;
      if (bk < 0) continue;
      char name[128];
      study_cell cell = {.kind = STUDY_SAMPLE, .width = c->widths[i], .sampler = LDMC_SAMPLER_DDIM,
                         .steps = cv[ddim][i].steps[bk]};
      study_cell_name(&cell, cv[ddim][i].rate[bk], name, sizeof name);
      grid_row(dir, name, img + rows * cols * per, per, (int)cols);
      snprintf(lab[rows], sizeof lab[rows], "c=%d, %d steps, w=%g, cost %.3g, FD %.1f", c->widths[i],
               cv[ddim][i].steps[bk], cv[ddim][i].rate[bk], cv[ddim][i].cost[bk], cv[ddim][i].fd[bk]);
      labels[rows] = lab[rows];
      rows++;
    }
    if (rows > 0) {
      ldmc_png_grid g = {.images = img, .n = rows * cols, .channels = 1, .height = S, .width = S, .lo = -1, .hi = 1,
                         .rows = rows, .cols = (int)cols, .scale = 2, .pad = 2, .background = 255, .row_labels = labels};
      snprintf(path, sizeof path, "%s/plots/grid_equal_cost.png", dir);
      if (ldmc_png_grid_write(path, &g) == LDMC_OK)
        fprintf(md, "\n## (vi) Every width at about the same sampling cost\n\nDDIM at the step count whose cost is "
                    "nearest %.3g (the narrowest width's largest), each at its best rate; one image per class, the "
                    "same noise in every row.\n\n![grid](plots/grid_equal_cost.png)\n", target);
    }
    free(img);
  }
  /* super-resolution */
  if (c->superres) {
    fprintf(md, "\n## Downstream: %dx super-resolution\n\nEach width finetuned for %lld steps with the low-resolution "
                "image's latent as extra input channels (zero-initialized), sampled with %s without guidance; FD "
                "against the test split and PSNR against the originals.\n\n| width | steps | FD | PSNR (dB) | cost |\n"
                "|---|---|---|---|---|\n", c->superres_factor, (long long)c->superres_steps,
            ldmc_sampler_name(c->superres_sweep.kind));
    curve sc[STUDY_MAX_WIDTHS];
    p = new_plot("super-resolution: FD against sampling cost", "sampling cost", "FD", true, true);
    for (int i = 0; i < c->n_widths; i++) {
      memset(&sc[i], 0, sizeof sc[i]);
      for (int k = 0; k < c->superres_sweep.n_steps; k++)
        for (int j = 0; j < R.n; j++) {
          const rec *r = &R.r[j];
          if (r->kind != STUDY_SR_SAMPLE || r->width != c->widths[i] || r->steps != c->superres_sweep.steps[k]) continue;
          sc[i].cost[sc[i].n] = r->cost, sc[i].fd[sc[i].n] = r->fd, sc[i].steps[sc[i].n++] = r->steps;
          fprintf(md, "| c=%d | %d | %.2f | %.2f | %.4g |\n", r->width, r->steps, r->fd, r->psnr, r->cost);
        }
      char nm[32];
      snprintf(nm, sizeof nm, "c=%d", c->widths[i]);
      add_curve(p, nm, sc[i].cost, sc[i].fd, sc[i].n, i, LDMC_PLOT_SOLID, false);
    }
    save_plot(p, dir, "superres", md, "super-resolution FD against sampling cost");
    curve lo20[STUDY_MAX_WIDTHS], hi20[STUDY_MAX_WIDTHS];
    for (int i = 0; i < c->n_widths; i++) {
      memset(&lo20[i], 0, sizeof lo20[i]), memset(&hi20[i], 0, sizeof hi20[i]);
      for (int k = 0; k < sc[i].n; k++) {
        curve *d = sc[i].steps[k] <= 20 ? &lo20[i] : &hi20[i];
        d->cost[d->n] = sc[i].cost[k], d->fd[d->n] = sc[i].fd[k], d->steps[d->n++] = sc[i].steps[k];
      }
    }
    frontier(md, c, lo20, "**super-resolution, <= 20 steps**", "super-resolution, <= 20 steps", "");
    frontier(md, c, hi20, "**super-resolution, > 20 steps**", "super-resolution, > 20 steps", "");
  }
  /* where the time went */
  double t_train = 0, t_train_steps = 0, t_sample = 0, t_eval = 0, t_compile = 0, wall = 0;
  for (int i = 0; i < R.n; i++) {
    const rec *r = &R.r[i];
    if (r->kind == STUDY_TRAIN || r->kind == STUDY_DISTILL || r->kind == STUDY_SR_TRAIN) {
      t_train_steps += isfinite(r->seconds) ? r->seconds : 0;
      /* wall time when the study ran the child; a run begun outside it or resumed counts its logged steps */
      double st = isfinite(r->seconds) ? r->seconds : 0;
      t_train += isfinite(r->wall_s) && r->wall_s > st ? r->wall_s : st;
    } else {
      t_sample += isfinite(r->seconds) ? r->seconds : 0;
      t_eval += isfinite(r->eval_s) ? r->eval_s : 0;
      t_compile += isfinite(r->compile_s) ? r->compile_s : 0;
    }
  }
  snprintf(path, sizeof path, "%s/runs.jsonl", dir);
  FILE *rf = fopen(path, "r");
  char line[512];
  while (rf && fgets(line, sizeof line, rf)) {
    json_t *o = json_loads(line, 0, NULL);
    if (o) wall += num(o, "wall_s"), json_decref(o);
  }
  if (rf) fclose(rf);
  double total = t_train + t_sample + t_eval + t_compile;
  fprintf(md, "\n## What the data says\n\nComputed from the cells above (the widths' lower envelope of best FD "
              "against cost; a crossover is where the envelope passes to a wider model):\n\n%s", g_conclusions);
  fprintf(md, "\n## Where the time went\n\n| part | seconds | share |\n|---|---|---|\n"
              "| training, distillation, finetuning (child processes, wall) | %.0f | %.0f%% |\n"
              "| of which compiled training steps (log.csv) | %.0f | %.0f%% |\n"
              "| sampling (compiled denoising steps) | %.0f | %.0f%% |\n"
              "| evaluation (decoding, classifier features, FD, KID) | %.0f | %.0f%% |\n"
              "| compiling samplers, encoding prompts | %.0f | %.0f%% |\n"
              "| sum | %.0f | |\n\nThe study's own wall time over its runs (DIR/runs.jsonl): %.0f s. Compiled code "
              "(training steps and sampling steps) is %.0f%% of the sum.\n",
          t_train, 100 * t_train / total, t_train_steps, 100 * t_train_steps / total, t_sample,
          100 * t_sample / total, t_eval, 100 * t_eval / total, t_compile, 100 * t_compile / total, total, wall,
          100 * (t_train_steps + t_sample) / total);
  fclose(md);
  free(R.r);
  snprintf(path, sizeof path, "%s/report.md", dir);
  if (rename(tmp, path) != 0) return snprintf(err, errlen, "cannot write %s", path), 1;
  return 0;
}
