/* Training the U-Net: its epsilon-prediction loss graph, the AdamW step graph
 * around it (ldmc_train_step_build, frontend/frontend.h), and the split of a
 * step graph's cost into forward, backward and optimizer (docs/training.md,
 * "U-Net training step"). */
#ifndef LDMC_MODELS_UNET_TRAIN_H
#define LDMC_MODELS_UNET_TRAIN_H

#include "frontend/frontend.h"
#include "models/unet.h"

/* The data inputs of the loss graph, in parameter order. */
#define LDMC_UNET_TRAIN_N_INPUTS 4
extern const char *const ldmc_unet_train_input_names[LDMC_UNET_TRAIN_N_INPUTS];
/* noisy_sample f32[B,C,H,W] (x_t), timestep f32[B], encoder_hidden_states
 * f32[B,T,D], target f32[B,C,H,W] (the noise epsilon added to make x_t) */

/* The U-Net (ldmc_unet_build) with noisy_sample as its sample, and
 *   loss = mean((unet(noisy_sample, timestep, encoder_hidden_states) - target)^2)
 * over every element, the one output "loss" f32[] (its nodes in scope "loss").
 * Parameters: the four data inputs above (then cond_sample f32[B,Cc,H,W]
 * when cfg->cond_channels > 0), then the weights, named and ordered as in
 * the inference graph. Named "unet". */
ldmc_status ldmc_unet_train_build(const ldmc_unet_config *cfg, ldmc_graph **out);

/* The training step graph of that loss: ldmc_train_step_build with
 * n_data_params = 4 (5 with cond_sample) and loss "loss" (o's loss and n_data_params must be NULL/0
 * or those; its other fields as given, e.g. wrt_regex NULL trains every
 * weight). o NULL: the defaults (AdamW 0.9/0.999/1e-8, no decay, clipping or
 * EMA). Named "unet.train_step"; layout as frontend.h gives it. */
ldmc_status ldmc_unet_train_step_build(const ldmc_unet_config *cfg, const ldmc_train_opts *o, ldmc_graph **step);

/* The CLI's --ema DECAY and --clip NORM (NULL: not given) into o (other
 * fields untouched): DECAY in (0, 1), NORM > 0 and finite. LDMC_ERR_INVALID
 * naming the flag otherwise. */
ldmc_status ldmc_unet_train_opts_from_args(const char *ema, const char *clip, ldmc_train_opts *o);

/* ---- where a step graph's work is ---- */
typedef enum ldmc_train_phase {
  LDMC_TRAIN_FORWARD,   /* the model and the loss: every other scope */
  LDMC_TRAIN_BACKWARD,  /* scope "grad" or "grad.*" (ldmc_grad's nodes) */
  LDMC_TRAIN_OPTIMIZER, /* scope "optim" or "optim.*" (clipping, AdamW, EMA: train_step.c) */
  LDMC_TRAIN_PHASES
} ldmc_train_phase;

/* The phase of a node's scope (NULL: forward). */
ldmc_train_phase ldmc_train_phase_of_scope(const char *scope);
const char *ldmc_train_phase_name(ldmc_train_phase p); /* "forward", "backward", "optimizer" */

typedef struct ldmc_train_step_stats {
  ldmc_flops flops[LDMC_TRAIN_PHASES]; /* of the graph as given, by ldmc_node_flops */
  int64_t nodes[LDMC_TRAIN_PHASES];
  /* Trained parameters: those P with an adam_m.P parameter. */
  int64_t trained_tensors, trained_params;
  /* State carried from step to step, bytes: the trained P, adam_m.P and
   * adam_v.P, ema.P; state_bytes is their sum. */
  int64_t param_bytes, moment_bytes, ema_bytes, state_bytes;
  bool ema;
} ldmc_train_step_stats;

/* Fills *out from a step graph of ldmc_train_step_build. LDMC_ERR_INVALID
 * when the graph has no adam_m.* parameter (not a step graph). */
ldmc_status ldmc_train_step_stats_compute(const ldmc_graph *step, ldmc_train_step_stats *out);

#endif
