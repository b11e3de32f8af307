/* The diffusion objective: noise schedules (diffusers' DDPMScheduler betas)
 * and the latent-diffusion training loss graph, with its noise, timesteps
 * and prompt dropout drawn in the graph from the Philox RNG (docs/training.md,
 * "Diffusion objective"). */
#ifndef LDMC_MODELS_DIFFUSION_H
#define LDMC_MODELS_DIFFUSION_H

#include "frontend/frontend.h"

typedef enum ldmc_beta_schedule {
  LDMC_BETA_SCALED_LINEAR,     /* SD: beta = linspace(sqrt(b0), sqrt(b1), T)^2 */
  LDMC_BETA_LINEAR,            /* beta = linspace(b0, b1, T) */
  LDMC_BETA_SQUAREDCOS_CAP_V2, /* 1 - abar((i+1)/T) / abar(i/T), abar(t) = cos((t + 0.008) / 1.008 * pi/2)^2, <= 0.999 */
} ldmc_beta_schedule;

typedef enum ldmc_prediction {
  LDMC_PREDICT_EPSILON, /* the model predicts the noise eps */
  LDMC_PREDICT_V,       /* v = alpha_t eps - sigma_t z */
  LDMC_PREDICT_SAMPLE,  /* the model predicts the clean sample z0 (diffusers' "sample") */
} ldmc_prediction;

typedef struct ldmc_diffusion_config {
  int timesteps;           /* T, 1000 */
  ldmc_beta_schedule schedule;
  double beta_start, beta_end; /* 0.00085, 0.012 (SD-1.5); unused by the cosine schedule */
  ldmc_prediction prediction;
  double cond_drop;        /* probability a prompt is replaced by the empty one: 0.1 */
} ldmc_diffusion_config;

void ldmc_diffusion_config_default(ldmc_diffusion_config *c); /* SD-1.5's: scaled linear, epsilon, drop 0.1 */
ldmc_status ldmc_diffusion_config_check(const ldmc_diffusion_config *c);
/* "scaled_linear", "linear", "squaredcos_cap_v2" (diffusers' names) */
const char *ldmc_beta_schedule_name(ldmc_beta_schedule s);
ldmc_status ldmc_beta_schedule_parse(const char *s, ldmc_beta_schedule *out);
const char *ldmc_prediction_name(ldmc_prediction p); /* "epsilon", "v_prediction", "sample" */
ldmc_status ldmc_prediction_parse(const char *s, ldmc_prediction *out);

/* betas[T] and alphas_cumprod[T] (abar_t = prod_{i<=t} (1 - beta_i)), in double. */
ldmc_status ldmc_diffusion_schedule(const ldmc_diffusion_config *c, double *betas, double *alphas_cumprod);

/* The training loss graph of a latent diffusion model. Data parameters, in
 * order (then text's weights, then unet's, under their own names):
 *   latent_mean f32[B,C,h,w], latent_logvar f32[B,C,h,w]: the autoencoder's
 *       posterior of each image (z0 = scale * (mean + exp(logvar / 2) n));
 *   tokens i32[B,T] (text given: its first parameter's type) or
 *       encoder_hidden_states (text NULL: the U-Net's context directly);
 *   key i64[]: the step's RNG key (the runtime passes seed * 2^20 + step).
 * From key, four Philox streams: the posterior sample n, the timesteps
 * t = floor(T u) in 0..T-1, the noise eps, the prompt dropout (a row's tokens
 * become empty_tokens with probability cond_drop). Then
 *   z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps,
 *   loss = mean((unet(z_t, t, text(tokens)) - target)^2), target eps, v or z0.
 * unet: ldmc_unet_build's graph (sample, timestep, encoder_hidden_states,
 * weights); text: a graph tokens -> context [B,T',D] (its one output), whose
 * first parameter is the tokens and the rest its weights; NULL for none.
 * empty_tokens: T ids (text given). One output, "loss" f32[]. Named "ldm". */
ldmc_status ldmc_ldm_loss_build(const ldmc_diffusion_config *dc, const ldmc_graph *unet, const ldmc_graph *text,
                                const int32_t *empty_tokens, double latent_scale, ldmc_graph **out);

#define LDMC_LDM_N_DATA 4
/* With a U-Net that has cond_sample (super-resolution), a fifth data input
 * after key, cond_sample f32[B,Cc,h,w] (as the U-Net's): LDMC_LDM_N_DATA + 1. */

#endif
