/* The cells a study configuration asks for, in run order, with their compute
 * (from the graphs' FLOP counts) and estimated time (compute over the
 * throughput measured on this machine), and the progress line. */
/* Paths: --out is at most STUDY_PATH - 300 bytes (cmd_study.c checks), so every path built from it fits. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/ldm_model.h"
#include "models/stats.h"
#include "models/unet_train.h"
#include "runtime/profiler.h"
#include "tools/study.h"

static const char *const k_kind_names[STUDY_KIND_COUNT] = {"train", "sample", "ckpt", "distill", "lcm", "srtrain", "sr"};
_Static_assert(sizeof k_kind_names / sizeof *k_kind_names == STUDY_KIND_COUNT, "a name per cell kind");

const char *study_kind_name(study_cell_kind k) { return k >= 0 && k < STUDY_KIND_COUNT ? k_kind_names[k] : "?"; }

double study_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The study's U-Net at width w: the family's structure with the study's groups, latent and context. */
static int unet_config(const study_config *c, int width, ldmc_unet_config *u, char *err, size_t errlen) {
  static int lat[3]; /* H, W, C of the shared autoencoder, read once */
  static char lat_of[STUDY_PATH];
  if (strcmp(lat_of, c->vae) != 0) {
    ldmc_ldm_model m;
    if (ldmc_ldm_model_load(c->vae, &m) != LDMC_OK) {
      snprintf(err, errlen, "vae: %s (the study's vae is a latent diffusion model file bundling the autoencoder, "
                            "e.g. models/default/ldm.ldmc)", ldmc_last_error());
      return 1;
    }
    lat[0] = (int)m.unet.height, lat[1] = (int)m.unet.width, lat[2] = m.unet.in_channels;
    ldmc_ldm_model_free(&m);
    snprintf(lat_of, sizeof lat_of, "%s", c->vae);
  }
  ldmc_unet_config_default(u, width);
  u->groups = c->groups;
  u->height = lat[0], u->width = lat[1], u->in_channels = u->out_channels = lat[2];
  u->context_dim = c->text_width, u->context_tokens = c->tokens;
  u->batch = 1;
  if (ldmc_unet_config_check(u) != LDMC_OK) {
    snprintf(err, errlen, "width %d: %s", width, ldmc_last_error());
    return 1;
  }
  return 0;
}

int study_width_costs_compute(const study_config *c, int width, study_width_costs *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  ldmc_unet_config u;
  if (unet_config(c, width, &u, err, errlen)) return 1;
  ldmc_graph *gt = NULL;
  ldmc_unet_pass_cost pc;
  ldmc_status st = ldmc_unet_pass_cost_compute(&u, &pc);
  ldmc_unet_config ut = u;
  ut.batch = c->train_batch;
  if (st == LDMC_OK) st = ldmc_unet_train_build(&ut, &gt);
  if (st == LDMC_OK) {
    out->unet_gflops = pc.gflops;
    out->norm = pc.norm;
    out->params_m = (double)pc.params / 1e6;
    ldmc_flops f = ldmc_graph_flops(gt);
    /* forward and backward: the backward pass costs about twice the forward (two products per product) */
    out->train_step_gflop = 3.0 * (double)(f.mac + f.other) / 1e9;
    out->train_steps = c->train_gflops > 0 ? (int64_t)ceil(c->train_gflops / out->train_step_gflop) : c->train_steps;
    if (out->train_steps < 1) out->train_steps = 1;
  } else
    snprintf(err, errlen, "width %d: %s", width, ldmc_last_error());
  ldmc_graph_free(gt);
  return st != LDMC_OK;
}

void study_cell_name(const study_cell *cell, double rate, char *buf, size_t len) {
  const char *k = study_kind_name(cell->kind), *s = ldmc_sampler_name(cell->sampler);
  switch (cell->kind) {
  case STUDY_TRAIN:
  case STUDY_DISTILL:
  case STUDY_SR_TRAIN: snprintf(buf, len, "%s-c%d", k, cell->width); break;
  case STUDY_SAMPLE: snprintf(buf, len, "%s-c%d-%s-s%d-w%g", k, cell->width, s, cell->steps, rate); break;
  case STUDY_LCM: snprintf(buf, len, "%s-c%d-s%d-w%g", k, cell->width, cell->steps, rate); break;
  case STUDY_CKPT: snprintf(buf, len, "%s-c%d-k%lld", k, cell->width, (long long)cell->ckpt_step); break;
  case STUDY_SR_SAMPLE: snprintf(buf, len, "%s-c%d-%s-s%d", k, cell->width, s, cell->steps); break;
  default: snprintf(buf, len, "cell"); break;
  }
}

/* the rates a cell sweeps: every rate for sampling and lcm cells, none (one result) otherwise */
static int cell_rates(const study_config *c, const study_cell *cell, const double **rates) {
  static const double none = 0;
  if (cell->kind == STUDY_SAMPLE || cell->kind == STUDY_LCM) {
    *rates = c->rates;
    return c->n_rates;
  }
  *rates = &none;
  return 1;
}

bool study_cell_done(const study_config *c, const char *dir, const study_cell *cell) {
  const double *rates;
  int n = cell_rates(c, cell, &rates);
  for (int i = 0; i < n; i++) {
    char name[128], path[2 * STUDY_PATH];
    study_cell_name(cell, rates[i], name, sizeof name);
    snprintf(path, sizeof path, "%s/cells/%s.json", dir, name);
    struct stat sb;
    if (stat(path, &sb) != 0) return false;
  }
  return true;
}

/* sums "gflop" and "seconds" over DIR/cells/<prefix>*.json, overall and per width into r */
static void measured(const char *dir, const char *prefix, bool train, study_rates *r, double *gflop, double *seconds) {
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/cells", dir);
  DIR *d = opendir(path);
  *gflop = *seconds = 0;
  if (!d) return;
  double wg[64] = {0}, ws[64] = {0};
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || n < 6 || strcmp(e->d_name + n - 5, ".json")) continue;
    char f[2 * STUDY_PATH];
    snprintf(f, sizeof f, "%s/%s", path, e->d_name);
    json_t *o = json_load_file(f, 0, NULL);
    if (!o) continue;
    double g = json_number_value(json_object_get(o, "gflop")), s = json_number_value(json_object_get(o, "seconds"));
    int w = (int)json_integer_value(json_object_get(o, "width"));
    json_decref(o);
    if (!(g > 0 && s > 0)) continue;
    *gflop += g, *seconds += s;
    int k = 0;
    while (k < r->n && r->width[k] != w) k++;
    if (k == r->n && r->n < 64) r->width[r->n++] = w;
    if (k < 64) wg[k] += g, ws[k] += s;
  }
  closedir(d);
  for (int k = 0; k < r->n; k++)
    if (ws[k] > 0) (train ? r->train_w : r->sample_w)[k] = wg[k] / ws[k];
}

double study_rate(const study_rates *r, bool train, int width) {
  const double *v = train ? r->train_w : r->sample_w;
  int best = -1;
  for (int k = 0; k < r->n; k++)
    if (v[k] > 0 && (best < 0 || fabs(log((double)r->width[k] / width)) < fabs(log((double)r->width[best] / width))))
      best = k;
  return best >= 0 ? v[best] : train ? r->train : r->sample;
}

void study_rates_measure(const study_config *c, const char *dir, study_rates *r) {
  (void)c;
  memset(r, 0, sizeof *r);
  /* without finished cells: the FMA peak (ldmc's machine cache, else measured now, not cached: the
   * machine may be busy) times the efficiency measured on the development machine (docs/study.md:
   * training about 10%, sampling about 15% of the 2-thread FMA peak at c = 16..64 on 8x8 latents) */
  double peak = 0;
  char cache[STUDY_PATH];
  ldmc_machine m;
  bool found = false;
  if (ldmc_machine_cache_path(cache, sizeof cache) == LDMC_OK && ldmc_machine_load(cache, &m, &found) == LDMC_OK &&
      found && m.nproc == ldmc_machine_nproc())
    peak = ldmc_machine_peak(&m, c->threads);
  if (!(peak > 0) && ldmc_machine_calibrate(c->threads, NULL, &m) == LDMC_OK) peak = ldmc_machine_peak(&m, c->threads);
  if (!(peak > 0)) peak = 300;
  r->train = 0.10 * peak, r->sample = 0.15 * peak;
  r->eval_per_image_s = 0.01, r->compile_s = 4;
  double g, s;
  measured(dir, "train-", true, r, &g, &s);
  if (g > 0) r->train = g / s, r->measured_train = true;
  measured(dir, "sample-", false, r, &g, &s);
  if (g > 0) r->sample = g / s, r->measured_sample = true;
}

static int add(study_plan *p, const study_cell *cell) {
  if (p->n == p->cap) {
    int cap = p->cap ? 2 * p->cap : 64;
    study_cell *n = realloc(p->cells, (size_t)cap * sizeof *n);
    if (!n) return 1;
    p->cells = n, p->cap = cap;
  }
  p->cells[p->n++] = *cell;
  return 0;
}

void study_plan_free(study_plan *p) {
  free(p->cells);
  memset(p, 0, sizeof *p);
}

int study_plan_build(const study_config *c, const char *dir, const study_rates *r, study_plan *out, char *err,
                     size_t errlen) {
  (void)dir;
  memset(out, 0, sizeof *out);
  study_width_costs wc[STUDY_MAX_WIDTHS];
  for (int i = 0; i < c->n_widths; i++)
    if (study_width_costs_compute(c, c->widths[i], &wc[i], err, errlen)) return 1;
  int bad = 0;
  double per_image_eval = r->eval_per_image_s;
  /* 1. per width, narrowest first: training, the sampler sweeps, then the kept checkpoints
   * (quality against training compute), so the narrow widths' results come first */
  for (int i = 0; i < c->n_widths; i++) {
    study_cell t = {.kind = STUDY_TRAIN, .width = c->widths[i]};
    t.gflop = wc[i].train_step_gflop * (double)wc[i].train_steps;
    t.est_s = t.gflop / study_rate(r, true, t.width) + 90; /* + encoding the dataset and compiling the step */
    bad |= add(out, &t);
    for (int s = 0; s < c->n_sweeps; s++)
      for (int k = 0; k < c->sweeps[s].n_steps; k++) {
        study_cell e = {.kind = STUDY_SAMPLE, .width = c->widths[i], .sampler = c->sweeps[s].kind,
                        .steps = c->sweeps[s].steps[k]};
        e.gflop = wc[i].unet_gflops * 2 * e.steps * (double)c->samples * c->n_rates;
        e.est_s = e.gflop / study_rate(r, false, e.width) + r->compile_s + per_image_eval * c->samples * c->n_rates;
        bad |= add(out, &e);
      }
    for (int64_t k = c->ckpt_every; k <= wc[i].train_steps; k += c->ckpt_every) {
      study_cell e = {.kind = STUDY_CKPT, .width = c->widths[i], .sampler = c->ckpt_sweep.kind,
                      .steps = c->ckpt_sweep.steps[0], .ckpt_step = k};
      e.gflop = wc[i].unet_gflops * 2 * e.steps * (double)c->samples;
      e.est_s = e.gflop / study_rate(r, false, e.width) + r->compile_s + per_image_eval * c->samples;
      bad |= add(out, &e);
    }
  }
  /* 4. distillation, and the distilled models sampled with lcm */
  for (int i = 0; c->distill && i < c->n_widths; i++) {
    if (!(c->distill_widths & (1u << i))) continue;
    study_cell e = {.kind = STUDY_DISTILL, .width = c->widths[i]};
    /* teacher (2 passes, guidance), student forward and backward (3), target (1) */
    e.gflop = wc[i].unet_gflops * 6 * (double)c->distill_batch * (double)c->distill_steps;
    e.est_s = e.gflop / study_rate(r, true, e.width) + 60;
    bad |= add(out, &e);
    for (int k = 0; k < c->n_lcm_steps; k++) {
      study_cell l = {.kind = STUDY_LCM, .width = c->widths[i], .sampler = LDMC_SAMPLER_LCM, .steps = c->lcm_steps[k]};
      l.gflop = wc[i].unet_gflops * l.steps * (double)c->samples * c->n_rates;
      l.est_s = l.gflop / study_rate(r, false, l.width) + r->compile_s + per_image_eval * c->samples * c->n_rates;
      bad |= add(out, &l);
    }
  }
  /* 5. super-resolution: finetuning, then sampling without guidance */
  for (int i = 0; c->superres && i < c->n_widths; i++) {
    if (!(c->superres_widths & (1u << i))) continue;
    study_cell e = {.kind = STUDY_SR_TRAIN, .width = c->widths[i]};
    e.gflop = wc[i].train_step_gflop * (double)c->superres_steps;
    e.est_s = e.gflop / study_rate(r, true, e.width) + 150; /* + encoding the images and their low-resolution versions */
    bad |= add(out, &e);
    for (int k = 0; k < c->superres_sweep.n_steps; k++) {
      study_cell l = {.kind = STUDY_SR_SAMPLE, .width = c->widths[i], .sampler = c->superres_sweep.kind,
                      .steps = c->superres_sweep.steps[k]};
      l.gflop = wc[i].unet_gflops * l.steps * (double)c->samples;
      l.est_s = l.gflop / study_rate(r, false, l.width) + r->compile_s + per_image_eval * c->samples * 2;
      bad |= add(out, &l);
    }
  }
  if (bad) {
    snprintf(err, errlen, "out of memory");
    study_plan_free(out);
  }
  return bad;
}

static void fmt_time(double s, char *buf, size_t len) {
  if (!(s >= 0) || s > 1e7) snprintf(buf, len, "?");
  else if (s >= 3600) snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
  else if (s >= 60) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(buf, len, "%.0fs", s);
}

void study_progress_show(const study_progress *p, const char *what, double frac) {
  static double last;
  static int last_cell = -1;
  double now = study_now();
  /* a log: a line when a cell starts, when it ends, and every 30 s between */
  if (!p->tty && p->cell == last_cell && frac < 1 && now - last < 30) return;
  last = now;
  last_cell = p->cell;
  char el[32], eta[32];
  fmt_time(now - p->study_t0, el, sizeof el);
  fmt_time(p->remaining_s, eta, sizeof eta);
  fprintf(stderr, "%s[study %d/%d %s elapsed, ETA %s] %s%s", p->tty ? "\r\033[K" : "", p->cell, p->n_cells, el, eta,
          what, p->tty ? "" : "\n");
  fflush(stderr);
}
