/* A model's training step made ready to run: the step graph of its loss, the
 * state bound once (weights from the reproducible random init, zero Adam
 * moments, EMA = the weights), compiled with that state donated; views of
 * the current weights for validation graphs; the trained model exported as
 * an .ldmc file (docs/training.md). Used by `ldmc train` for every model. */
#ifndef LDMC_MODELS_TRAIN_SESSION_H
#define LDMC_MODELS_TRAIN_SESSION_H

#include <stdio.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "runtime/trainer.h"

typedef struct ldmc_train_session {
  ldmc_graph *step;      /* ldmc_train_step_build of the loss */
  int32_t *pairs;        /* per step output: the input it updates, or -1 */
  int32_t n_data;        /* data inputs first, then lr, step */
  int32_t n_inputs;
  ldmc_tensor *inputs;   /* one per step parameter, owned, bound for every run */
  ldmc_executable *exe;  /* the fused step; NULL when data-parallel */
  bool ema;
  /* Data-parallel (several MPI ranks at creation; docs/distributed.md): the
   * step in two graphs (ldmc_train_step_build_split) with the gradient
   * all-reduce between them, run by `runner`; step and pairs are still the
   * fused step graph's, for checkpoints and exports. */
  ldmc_graph *grads, *update;
  ldmc_executable *grads_exe, *update_exe;
  int32_t *update_pairs, *update_grad_of; /* per update parameter: grads output it reads, or -1 */
  ldmc_tensor *update_in, *update_out;
  struct ldmc_grad_sync *sync;
  ldmc_train_runner runner;
} ldmc_train_session;

/* Data-parallel: one line of the gradient all-reduce's figures per step
 * (buckets, bytes, time in MPI, time the step waited for it). */
void ldmc_train_session_print_comm(const ldmc_train_session *s, FILE *f);

/* ldmc_train_loop over s (its runner when data-parallel) after every rank
 * has set up; rank 0 then prints the all-reduce figures. Under several
 * ranks an error anywhere ends every rank (ldmc_dist_abort), since the
 * others may be waiting in a collective; so a return on a rank is LDMC_OK. */
ldmc_status ldmc_train_session_loop(ldmc_train_session *s, const ldmc_train_source *src, ldmc_train_loop_opts *lo,
                                    ldmc_train_result *res);

/* The runner ldmc_train_loop needs for s (NULL: run s->exe). */
const ldmc_train_runner *ldmc_train_session_runner(const ldmc_train_session *s);

/* loss: a model's loss graph whose first n_data parameters are data. The
 * weights start as ldmc_weights_init_random(seed) draws them (init: a set of
 * named tensors that replaces some of them, e.g. a pretrained part; NULL
 * none). co: backend options (donate, params_are_weights are set here). */
ldmc_status ldmc_train_session_new(const ldmc_graph *loss, int32_t n_data, const ldmc_train_opts *to, uint64_t seed,
                                   const ldmc_tensor_set *init, const ldmc_backend_i *be, const ldmc_compile_opts *co,
                                   ldmc_train_session **out);
void ldmc_train_session_free(ldmc_train_session *s);

/* The bound input called name, or NULL. */
ldmc_tensor *ldmc_train_session_find(ldmc_train_session *s, const char *name);

/* Non-owning views, one per parameter of g from index first on, of the
 * session's current weights by name: P itself, or ema.P when use_ema and
 * the session keeps an EMA. An error names a parameter g has and the
 * session does not. views: g's parameter count entries (the first `first`
 * untouched). */
ldmc_status ldmc_train_session_views(ldmc_train_session *s, const ldmc_graph *g, int32_t first, bool use_ema,
                                     ldmc_tensor *views);

/* Writes the weights after `step` steps (ema.P as P when use_ema and kept) in dtype dt (f32 or
 * bf16) with the configuration into an .ldmc checkpoint file at path,
 * atomically: a model file for `ldmc sample` and `ldmc inspect`. prefix
 * (NULL: none) goes before every tensor name ("unet." ...). extra (NULL:
 * none): f32 tensors of another model stored too, named extra_prefix + name
 * (the autoencoder inside a diffusion model's file). */
ldmc_status ldmc_train_session_export(ldmc_train_session *s, const char *path, int64_t step, bool use_ema,
                                      ldmc_dtype dt, const char *prefix, int32_t n_config, const char *const *keys,
                                      const char *const *values, const ldmc_tensor_set *extra,
                                      const char *extra_prefix);

#endif
