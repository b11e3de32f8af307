/* ldmc study: a family of U-Net widths trained on Fashion-MNIST, swept over
 * samplers, steps and guidance rates, distilled and finetuned for
 * super-resolution, with the analysis, plots and report (docs/study.md).
 * Resumable: every finished cell is a file in DIR. */
/* Paths: --out is at most STUDY_PATH - 300 bytes (cmd_study.c checks), so every path built from it fits. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "support/fileio.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/study.h"

enum { F_CONFIG, F_OUT, F_DRY_RUN, F_REPORT, F_ONLY, F_PROGRESS, F_NO_PROGRESS, F_COUNT };

static ldmc_cli_flag k_flags[F_COUNT] = {
    [F_CONFIG] = {"config", "FILE", "the study's JSON configuration (docs/study.md; default: the built-in study:\n"
                                    "c = 16,24,32,48,64, 1500 steps each, ddim/ddpm 4-32 steps, dpmpp2m 4-16,\n"
                                    "guidance 1.5,3,5,8, 200 samples per cell, distillation; the shipped study:\n"
                                    "docs/study/study.json)"},
    [F_OUT] = {"out", "DIR", "the study's folder: DIR/study.json, DIR/train|distill|superres/cW (the runs),\n"
                             "DIR/cells/NAME.json (one result per cell), DIR/report.md, DIR/plots, DIR/study.csv"},
    [F_DRY_RUN] = {"dry-run", NULL, "print the plan (every cell, done or not) and its estimated time; run nothing"},
    [F_REPORT] = {"report", NULL, "only write the report, CSV and plots from the cells finished so far"},
    [F_ONLY] = {"only", "KINDS", "run only these kinds of cells, comma-separated: train, sample, ckpt, distill,\n"
                                 "lcm, srtrain, sr (default: all, in that order)"},
    [F_PROGRESS] = {"progress", NULL, "redraw one progress line even when stderr is not a terminal"},
    [F_NO_PROGRESS] = {"no-progress", NULL, "plain progress lines (a line per cell, and every 30 s) even on a terminal"},
};

static ldmc_cli_cmd k_cmd = {
    .name = "study",
    .usage = "--out DIR [--config FILE] [--dry-run | --report] [--only KINDS]",
    .summary = "the scaling study: train a family of widths, sweep samplers, steps and guidance, plot quality vs cost",
    .details = "Cells run in order: training (child `ldmc train` processes, resumed from their checkpoints), the\n"
               "sampler sweeps, the checkpoints (quality against training compute), distillation and its lcm\n"
               "sampling, super-resolution finetuning and its sampling; then the report. Killing the study and\n"
               "running the same command again continues where it stopped. Quality: the Frechet distance (FD) in\n"
               "the classifier's feature space against the Fashion-MNIST test split (docs/sampling.md, Metrics).\n"
               "Example: ldmc study --out runs/study --dry-run",
    .flags = k_flags,
    .n_flags = F_COUNT,
};

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int only_mask(const char *s, unsigned *mask, char *bad, size_t len) {
  *mask = 0;
  if (!s) {
    *mask = ~0u;
    return 0;
  }
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int k = 0;
    while (k < STUDY_KIND_COUNT && strcmp(t, study_kind_name((study_cell_kind)k))) k++;
    if (k == STUDY_KIND_COUNT) {
      snprintf(bad, len, "%s", t);
      return 1;
    }
    *mask |= 1u << k;
  }
  return 0;
}

static void fmt_min(double s, char *buf, size_t len) {
  if (s >= 3600) snprintf(buf, len, "%.1f h", s / 3600);
  else snprintf(buf, len, "%.1f min", s / 60);
}

static int print_plan(const study_config *c, const char *dir, const study_plan *plan, const study_rates *r,
                      unsigned mask) {
  double tot[STUDY_KIND_COUNT] = {0}, left[STUDY_KIND_COUNT] = {0};
  int n[STUDY_KIND_COUNT] = {0}, done[STUDY_KIND_COUNT] = {0};
  printf("study %s: widths", dir);
  for (int i = 0; i < c->n_widths; i++) printf(" %d", c->widths[i]);
  printf("; throughput: training %.1f GFLOP/s (%s), sampling %.1f GFLOP/s (%s)\n", r->train,
         r->measured_train ? "measured by this study's finished cells" : "FMA peak x typical efficiency", r->sample,
         r->measured_sample ? "measured by this study's finished cells" : "FMA peak x typical efficiency");
  printf("%-34s %12s %10s  %s\n", "cell", "GFLOP", "est", "state");
  for (int i = 0; i < plan->n; i++) {
    const study_cell *e = &plan->cells[i];
    bool d = study_cell_done(c, dir, e), sel = mask & (1u << e->kind);
    char name[128], t[32];
    study_cell_name(e, (e->kind == STUDY_SAMPLE || e->kind == STUDY_LCM) ? c->rates[0] : 0, name, sizeof name);
    if (e->kind == STUDY_SAMPLE || e->kind == STUDY_LCM) { /* one line per rate group */
      char *w = strrchr(name, 'w');
      if (w) snprintf(w, 8, "w*");
    }
    snprintf(t, sizeof t, "%.0f s", e->est_s);
    printf("%-34s %12.1f %10s  %s\n", name, e->gflop, t, d ? "done" : sel ? "to run" : "skipped (--only)");
    n[e->kind]++, tot[e->kind] += e->est_s;
    if (d) done[e->kind]++;
    else if (sel) left[e->kind] += e->est_s;
  }
  double all = 0, all_left = 0;
  printf("\n%-10s %6s %6s %12s %12s\n", "kind", "cells", "done", "est. all", "est. left");
  for (int k = 0; k < STUDY_KIND_COUNT; k++) {
    if (!n[k]) continue;
    char a[32], b[32];
    fmt_min(tot[k], a, sizeof a), fmt_min(left[k], b, sizeof b);
    printf("%-10s %6d %6d %12s %12s\n", study_kind_name((study_cell_kind)k), n[k], done[k], a, b);
    all += tot[k], all_left += left[k];
  }
  char a[32], b[32];
  fmt_min(all, a, sizeof a), fmt_min(all_left, b, sizeof b);
  printf("%-10s %6s %6s %12s %12s\n", "total", "", "", a, b);
  return LDMC_EXIT_OK;
}

/* DIR/study.json: the configuration the cells were made with */
static int write_config(const study_config *c, const char *dir) {
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/study.json", dir);
  char *text = study_config_dump(c);
  if (!text) return 1;
  uint8_t *old = NULL;
  size_t len = 0;
  if (ldmc_file_read(path, 1 << 20, &old, &len) == LDMC_OK && strcmp((char *)old, text) && strlen(text) != len - 1)
    fprintf(stderr, "ldmc study: the configuration differs from %s's; finished cells are reused by name (their\n"
                    "  width, sampler, steps and rate), so remove DIR/cells or use another DIR after changing a budget\n",
            path);
  free(old);
  ldmc_atomic_file *f = NULL;
  ldmc_status st = ldmc_atomic_open(path, &f);
  if (st == LDMC_OK) st = ldmc_atomic_write(f, text, strlen(text));
  if (st == LDMC_OK) st = ldmc_atomic_write(f, "\n", 1);
  if (st == LDMC_OK) st = ldmc_atomic_commit(f);
  else ldmc_atomic_abort(f);
  free(text);
  return st != LDMC_OK;
}

/* appends this run's wall time and its split to DIR/runs.jsonl */
static void log_run(const char *dir, double wall, double train_s, const study_sampling *s, int cells_run) {
  double ss = 0, es = 0, cs = 0;
  if (s) study_sampling_times(s, &ss, &es, &cs);
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/runs.jsonl", dir);
  FILE *f = fopen(path, "a");
  if (!f) return;
  time_t now = time(NULL);
  char ts[32];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  fprintf(f, "{\"ended\": \"%s\", \"cells\": %d, \"wall_s\": %.1f, \"train_s\": %.1f, \"sample_s\": %.1f, "
             "\"eval_s\": %.1f, \"compile_s\": %.1f}\n", ts, cells_run, wall, train_s, ss, es, cs);
  fclose(f);
}

int ldmc_cmd_study(int argc, char **argv) {
  int rc = ldmc_cli_parse(&k_cmd, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *dir = k_flags[F_OUT].value;
  if (!dir) return ldmc_cli_usage_error(&k_cmd, "give --out DIR (the study's folder)");
  if (strlen(dir) > STUDY_PATH - 300) return ldmc_cli_usage_error(&k_cmd, "--out: the path is too long");
  if (ldmc_cli_has(&k_cmd, "dry-run") && ldmc_cli_has(&k_cmd, "report"))
    return ldmc_cli_usage_error(&k_cmd, "give --dry-run or --report, not both");
  if (ldmc_cli_has(&k_cmd, "progress") && ldmc_cli_has(&k_cmd, "no-progress"))
    return ldmc_cli_usage_error(&k_cmd, "give --progress or --no-progress, not both");
  unsigned mask;
  char bad[64];
  if (only_mask(k_flags[F_ONLY].value, &mask, bad, sizeof bad))
    return ldmc_cli_usage_error(&k_cmd, "--only: unknown kind '%s' (train, sample, ckpt, distill, lcm, srtrain, sr)", bad);
  study_config c;
  study_config_default(&c);
  char err[1024] = "";
  if (k_flags[F_CONFIG].value && study_config_load(k_flags[F_CONFIG].value, &c, err, sizeof err))
    return ldmc_cli_usage_error(&k_cmd, "--config %s", err);
  if (!c.distill) mask &= ~((1u << STUDY_DISTILL) | (1u << STUDY_LCM));
  if (!c.superres) mask &= ~((1u << STUDY_SR_TRAIN) | (1u << STUDY_SR_SAMPLE));
  if (ldmc_cli_has(&k_cmd, "report")) {
    char cells[2 * STUDY_PATH];
    struct stat sb;
    snprintf(cells, sizeof cells, "%s/cells", dir);
    if (stat(cells, &sb) != 0 || !S_ISDIR(sb.st_mode))
      return ldmc_cli_fail(&k_cmd, "%s: no finished cells (run the study first)", cells);
    if (study_report_write(&c, dir, err, sizeof err)) return ldmc_cli_fail(&k_cmd, "%s", err);
    printf("wrote %s/report.md, %s/study.csv and %s/plots\n", dir, dir, dir);
    return LDMC_EXIT_OK;
  }
  study_rates r;
  study_rates_measure(&c, dir, &r);
  study_plan plan;
  if (study_plan_build(&c, dir, &r, &plan, err, sizeof err)) return ldmc_cli_fail(&k_cmd, "%s", err);
  if (ldmc_cli_has(&k_cmd, "dry-run")) {
    rc = print_plan(&c, dir, &plan, &r, mask);
    study_plan_free(&plan);
    return rc;
  }
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
    study_plan_free(&plan);
    return ldmc_cli_fail(&k_cmd, "cannot create %s: %s", dir, strerror(errno));
  }
  if (write_config(&c, dir)) {
    study_plan_free(&plan);
    return ldmc_cli_fail(&k_cmd, "%s/study.json: %s", dir, ldmc_last_error());
  }
  signal(SIGINT, on_signal), signal(SIGTERM, on_signal);
  study_progress p = {.n_cells = plan.n, .study_t0 = study_now(),
                      .tty = ldmc_cli_has(&k_cmd, "progress") || (!ldmc_cli_has(&k_cmd, "no-progress") && isatty(2))};
  double left = 0;
  for (int i = 0; i < plan.n; i++)
    if ((mask & (1u << plan.cells[i].kind)) && !study_cell_done(&c, dir, &plan.cells[i])) left += plan.cells[i].est_s;
  study_sampling *smp = NULL;
  double train_s = 0;
  int cells_run = 0;
  rc = 0;
  for (int i = 0; i < plan.n && !rc && !g_stop; i++) {
    const study_cell *e = &plan.cells[i];
    if (!(mask & (1u << e->kind)) || study_cell_done(&c, dir, e)) continue;
    left -= e->est_s;
    p.cell = i + 1, p.remaining_s = left + e->est_s;
    double t0 = study_now();
    if (e->kind == STUDY_TRAIN || e->kind == STUDY_DISTILL || e->kind == STUDY_SR_TRAIN) {
      rc = study_run_train_cell(&c, dir, e, &p, err, sizeof err);
      train_s += study_now() - t0;
    } else {
      if (!smp) rc = study_sampling_new(&c, dir, &smp, err, sizeof err);
      if (!rc) rc = study_run_sample_cell(smp, &c, dir, e, &p, err, sizeof err);
    }
    if (!rc) cells_run++;
    char name[128];
    study_cell_name(e, e->kind == STUDY_SAMPLE || e->kind == STUDY_LCM ? c.rates[0] : 0, name, sizeof name);
    p.remaining_s = left;
    char what[200];
    snprintf(what, sizeof what, "%s done in %.0f s", name, study_now() - t0);
    if (!rc) study_progress_show(&p, what, 1);
  }
  if (p.tty) fprintf(stderr, "\n");
  log_run(dir, study_now() - p.study_t0, train_s, smp, cells_run);
  study_sampling_free(smp);
  study_plan_free(&plan);
  if (rc) return ldmc_cli_fail(&k_cmd, "%s", err);
  if (g_stop) {
    fprintf(stderr, "ldmc study: stopped; run the same command again to continue\n");
    return LDMC_EXIT_FAIL;
  }
  if (study_report_write(&c, dir, err, sizeof err)) return ldmc_cli_fail(&k_cmd, "%s", err);
  printf("study %s: %d cells run; report %s/report.md\n", dir, cells_run, dir);
  return LDMC_EXIT_OK;
}
