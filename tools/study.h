/* ldmc study: the scaling study in miniature (docs/study.md).
 *
 *   tools/study_config.c  the JSON configuration (jansson), its defaults and checks
 *   tools/study_plan.c    the cells a configuration asks for, their cost and the time estimate
 *   tools/study_train.c   training, distillation and super-resolution cells: `ldmc train` /
 *                         `ldmc distill` run as child processes, resumed from their checkpoints
 *   tools/study_sample.c  sampling and scoring cells, in this process: one compiled sampler per
 *                         (model, sampler, steps), guidance rates as an input, the reference
 *                         features computed once
 *   tools/study_report.c  the analysis: CSV, plots (runtime/plot.h), image grids, report.md
 *   tools/cmd_study.c     the command
 *
 * A cell's result is a JSON file in DIR/cells/, written atomically when it
 * finishes; a rerun skips every cell whose file exists, so killing the study
 * loses at most the cell in progress (a training cell resumes from its
 * checkpoints). */
#ifndef LDMC_TOOLS_STUDY_H
#define LDMC_TOOLS_STUDY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/samplers.h"

#define STUDY_MAX_WIDTHS 16
#define STUDY_MAX_STEPS 16
#define STUDY_MAX_RATES 16
#define STUDY_MAX_SAMPLERS 4
#define STUDY_PATH 4096

typedef struct study_sweep {
  ldmc_sampler_kind kind;
  int n_steps, steps[STUDY_MAX_STEPS];
} study_sweep;

typedef struct study_config {
  char vae[STUDY_PATH];        /* the shared autoencoder: an autoencoder's or an ldm's model.ldmc */
  char classifier[STUDY_PATH]; /* the metrics' feature space */
  int n_widths, widths[STUDY_MAX_WIDTHS];
  int groups, text_width, text_layers, text_heads, tokens;
  /* training: equal steps, or equal compute when gflops > 0 (steps per width = gflops / GFLOPs per step) */
  int64_t train_steps;
  double train_gflops;
  int train_batch, warmup, ckpt_every;
  double lr, ema;
  int64_t seed;
  /* sampling */
  int n_sweeps;
  study_sweep sweeps[STUDY_MAX_SAMPLERS];
  int n_rates;
  double rates[STUDY_MAX_RATES];
  int samples;      /* images per cell, class i mod 10 for image i */
  int sample_batch; /* images denoised together */
  /* quality against training compute: every kept checkpoint sampled at one setting */
  study_sweep ckpt_sweep; /* one sampler, one step count */
  double ckpt_rate;
  bool ckpt_ema; /* sample the checkpoints' EMA weights (default: their trained parameters; the EMA lags early on) */
  /* distillation (LCM), sampled with lcm at its step counts and the same rates */
  bool distill;
  unsigned distill_widths, superres_widths; /* bit i: widths[i] takes part (default: every width) */
  int64_t distill_steps;
  int distill_batch;
  int n_lcm_steps, lcm_steps[STUDY_MAX_STEPS];
  /* super-resolution finetuning, sampled without guidance */
  bool superres;
  int superres_factor;
  int64_t superres_steps;
  study_sweep superres_sweep;
  int threads;
  int64_t limit; /* > 0: the first `limit` images of each split only (quick runs, tests) */
} study_config;

void study_config_default(study_config *c);
/* Reads a JSON file over the defaults; an unknown key or a bad value is an
 * error naming the key (and the file). */
int study_config_load(const char *path, study_config *c, char *err, size_t errlen);
/* The configuration as JSON text (malloc'd), as written to DIR/study.json. */
char *study_config_dump(const study_config *c);

/* ---- cells ---- */
typedef enum study_cell_kind {
  STUDY_TRAIN,     /* train width w */
  STUDY_SAMPLE,    /* sample width w with sampler/steps at every rate (one cell per rate) */
  STUDY_CKPT,      /* sample a training checkpoint of width w */
  STUDY_DISTILL,   /* distill width w */
  STUDY_LCM,       /* sample the distilled width w with lcm at steps, every rate */
  STUDY_SR_TRAIN,  /* finetune width w for super-resolution */
  STUDY_SR_SAMPLE, /* sample the super-resolution model of width w */
  STUDY_KIND_COUNT
} study_cell_kind;

typedef struct study_cell {
  study_cell_kind kind;
  int width;
  ldmc_sampler_kind sampler;
  int steps;
  int64_t ckpt_step; /* STUDY_CKPT */
  double est_s;      /* estimated seconds */
  double gflop;      /* compute of the cell (training: the steps; sampling: every image, every rate) */
} study_cell;

typedef struct study_plan {
  study_cell *cells;
  int n, cap;
} study_plan;

/* Measured throughput (GFLOP/s) by kind, from this machine: finished cells of
 * the study where there are some, else the FMA peak measured now times the
 * kind's typical efficiency (docs/study.md). */
typedef struct study_rates {
  double train, sample, eval_per_image_s, compile_s; /* over every width */
  bool measured_train, measured_sample;
  /* per width, where measured (GFLOP/s grows with the width): 0 where not */
  int n;
  int width[64];
  double train_w[64], sample_w[64];
} study_rates;
/* The rate of a kind (training or sampling) at a width: that width's measured rate, else the
 * nearest measured width's, else the overall figure. */
double study_rate(const study_rates *r, bool train, int width);

/* Per-width figures used by the plan and the analysis. */
typedef struct study_width_costs {
  double unet_gflops;      /* U-Net forward, GFLOPs per image (mac FLOPs, as `ldmc stats`) */
  double norm;             /* unet_gflops / the c=320 U-Net's at the same latent and context */
  double train_step_gflop; /* one training step at the study's batch (the step graph's FLOPs) */
  int64_t train_steps;     /* steps this width trains */
  double params_m;         /* parameters, millions */
} study_width_costs;

int study_width_costs_compute(const study_config *c, int width, study_width_costs *out, char *err, size_t errlen);

/* The cells, in run order, each with its estimated time. */
int study_plan_build(const study_config *c, const char *dir, const study_rates *r, study_plan *out, char *err,
                     size_t errlen);
void study_plan_free(study_plan *p);
void study_rates_measure(const study_config *c, const char *dir, study_rates *out);
/* The cell's result file(s): DIR/cells/<name>.json; rate index for sampling cells (-1: none). */
void study_cell_name(const study_cell *cell, double rate, char *buf, size_t len);
bool study_cell_done(const study_config *c, const char *dir, const study_cell *cell);
const char *study_kind_name(study_cell_kind k);

/* ---- running ---- */
struct json_t;
/* Writes DIR/cells/<name>.json atomically. */
int study_write_cell(const char *dir, const char *name, struct json_t *o, char *err, size_t errlen);
typedef struct study_progress {
  int cell, n_cells;      /* 1-based index of the cell in progress */
  double study_t0;        /* monotonic seconds when the run began */
  double remaining_s;     /* estimated seconds of the cells after this one */
  bool tty;
} study_progress;
void study_progress_show(const study_progress *p, const char *what, double frac);
double study_now(void);

/* The folder of a training-like cell's child run: DIR/train/cW, DIR/distill/cW, DIR/superres/cW. */
void study_run_dir(const char *dir, study_cell_kind kind, int width, char *buf, size_t len);
/* Runs a training-like cell as a child `ldmc train`/`ldmc distill` (resuming its checkpoints),
 * then writes the cell's JSON (wall time, steps, compute). */
int study_run_train_cell(const study_config *c, const char *dir, const study_cell *cell, study_progress *p,
                         char *err, size_t errlen);

typedef struct study_sampling study_sampling; /* the reference features, decoder, classifier: shared by cells */
int study_sampling_new(const study_config *c, const char *dir, study_sampling **out, char *err, size_t errlen);
void study_sampling_free(study_sampling *s);
int study_run_sample_cell(study_sampling *s, const study_config *c, const char *dir, const study_cell *cell,
                          study_progress *p, char *err, size_t errlen);
/* Seconds this process spent, by part: compiled code (sampler steps, decoder, classifier) and the rest. */
void study_sampling_times(const study_sampling *s, double *sample_s, double *eval_s, double *compile_s);

/* Simulated seconds per image and U-Net pass on a tpusim preset (e.g. "v5e"), at the batch of a
 * guided sampling step (tools/study_tpusim.c: timing-only simulation). */
int study_tpusim_seconds(const study_config *c, int width, const char *preset, double *s_per_pass, char *err,
                         size_t errlen);

/* ---- the analysis ---- */
int study_report_write(const study_config *c, const char *dir, char *err, size_t errlen);

#endif
