/* The training loop around a compiled step (docs/training.md, "ldmc train"):
 * the learning-rate schedule, per-step data from a source, progress (a bar
 * on a terminal, plain lines otherwise), a CSV log, periodic validation,
 * rotating checkpoints of the donated state, exact resume, and Ctrl-C
 * (SIGINT/SIGTERM) ending in a checkpoint. Model-independent: the models
 * provide the step graph, its data source and their configuration. */
#ifndef LDMC_RUNTIME_TRAINER_H
#define LDMC_RUNTIME_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/backend.h"

typedef enum ldmc_lr_decay { LDMC_LR_CONSTANT, LDMC_LR_COSINE } ldmc_lr_decay;

/* lr(step), step 1-based: linear warm-up from base/warmup to base over the
 * first warmup steps, then constant or cosine from base to base * min_frac at
 * step total. */
typedef struct ldmc_lr_schedule {
  double base, min_frac;
  int64_t warmup, total;
  ldmc_lr_decay decay;
} ldmc_lr_schedule;
double ldmc_lr_at(const ldmc_lr_schedule *s, int64_t step);
ldmc_status ldmc_lr_decay_parse(const char *s, ldmc_lr_decay *out); /* "constant", "cosine" */

/* Where each step's data comes from. fill writes the n_data data inputs of
 * step (1-based) into the bound tensors data[0..n_data-1] (never allocating).
 * get_state/set_state: the data order (at most 64 int64), saved in
 * checkpoints. validate (optional): the mean validation loss with the
 * weights as they are now (state, the step's inputs by index). */
typedef struct ldmc_train_source {
  void *ctx;
  ldmc_status (*fill)(void *ctx, int64_t step, ldmc_tensor *data);
  int (*get_state)(void *ctx, int64_t *v);
  ldmc_status (*set_state)(void *ctx, const int64_t *v, int n);
  ldmc_status (*validate)(void *ctx, const ldmc_tensor *inputs, double *loss);
  int64_t images_per_step;
  /* Optional: a second validation figure (accuracy, PSNR) that validate
   * leaves in *metric, logged as val_<metric_name>. */
  const char *metric_name;
  const double *metric;
} ldmc_train_source;

/* Runs one step instead of the executable (data-parallel training: the
 * gradients graph, the all-reduce, the update graph; models/train_session.h):
 * the inputs bound as for the step graph, their state updated in place. */
typedef struct ldmc_train_runner {
  void *ctx;
  ldmc_status (*run)(void *ctx, ldmc_tensor *inputs, double *loss, double *grad_norm);
} ldmc_train_runner;

typedef struct ldmc_train_loop_opts {
  int64_t steps;            /* total steps (the run ends at this step count, resumed or not) */
  ldmc_lr_schedule lr;      /* total: steps when 0 */
  const char *out_dir;      /* checkpoints (DIR/ckpt-*.ldmc) and log.csv; created if missing */
  int64_t ckpt_every;       /* steps between checkpoints (0: only at the end and on interrupt) */
  int keep;                 /* checkpoints kept (>= 1) */
  int64_t log_every;        /* plain progress lines and CSV rows every N steps (>= 1) */
  int64_t val_every;        /* validation every N steps (0: only at the end); needs source->validate */
  bool resume;              /* continue from out_dir's newest good checkpoint */
  int64_t stop_after;       /* > 0: end this run (with a checkpoint) after that many steps; the schedule is
                               still that of steps, so a resumed run continues it exactly */
  int progress;             /* 1: a bar on stderr; 0: plain lines on stderr; -1: decide by isatty */
  int64_t seed;             /* stored with the checkpoints */
  int32_t n_config;         /* the model configuration stored with every checkpoint */
  const char *const *config_keys, *const *config_values;
  const ldmc_train_runner *runner; /* NULL: run the executable */
} ldmc_train_loop_opts;

typedef struct ldmc_train_result {
  int64_t first_step, last_step; /* steps run this time: first_step..last_step (resumed: after the checkpoint) */
  double last_loss, last_val_loss, last_metric, images_per_s; /* val, metric: NaN if none */
  bool interrupted;
  bool paused;           /* stopped by stop_after before the last step */
  char *last_checkpoint; /* path of the last checkpoint written (malloc'd) or NULL */
} ldmc_train_result;

/* Under MPI (runtime/dist.h, several ranks) every rank runs the loop with
 * its shard of the data and o->runner all-reducing the gradients: rank 0
 * alone writes log.csv, progress and checkpoints; every rank calls
 * validate (a source may shard it and all-reduce); a resumed
 * state is read by rank 0 and broadcast; Ctrl-C on any rank stops all at
 * the same step; at each checkpoint the ranks' states are compared (a
 * mismatch is an error).
 * Runs steps of the executable e, compiled from step graph g (frontend.h's
 * layout: n_data data parameters, lr, step, then state and frozen inputs)
 * with ldmc_compile_opts.donate = pairs (ldmc_train_step_state_pairs).
 * inputs: one bound tensor per parameter of g, the state initialized; the
 * loop updates them in place. Outputs 0 and 1 must be loss and grad_norm.
 * A non-finite loss stops the run with an error naming the step (the last
 * checkpoint stays the previous good one). Returns LDMC_OK also when
 * interrupted (result->interrupted). */
ldmc_status ldmc_train_loop(ldmc_executable *e, const ldmc_graph *g, const int32_t *pairs, int32_t n_data,
                            ldmc_tensor *inputs, const ldmc_train_source *src, const ldmc_train_loop_opts *o,
                            ldmc_train_result *result);
void ldmc_train_result_free(ldmc_train_result *r);

#endif
