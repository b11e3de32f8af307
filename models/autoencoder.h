/* diffusers' AutoencoderKL (the latent-diffusion VAE): structure and
 * state-dict key names, so SD-1.5's VAE is one config and its weights load as
 * they are; down to a small latent-space model for 32x32 images. Graphs for
 * the encoder, the decoder, the whole model and the training loss
 * (docs/models.md, "The autoencoder"). */
#ifndef LDMC_MODELS_AUTOENCODER_H
#define LDMC_MODELS_AUTOENCODER_H

#include "frontend/frontend.h"

#define LDMC_VAE_MAX_BLOCKS 8

typedef struct ldmc_vae_config {
  int in_channels, out_channels;                  /* image channels: 1, 1 (SD-1.5: 3, 3) */
  int n_blocks;                                   /* levels: 3 (SD-1.5: 4); n_blocks - 1 downsamples */
  int block_out_channels[LDMC_VAE_MAX_BLOCKS];    /* 32,64,128 (SD-1.5: 128,256,512,512) */
  int layers_per_block;                           /* encoder resnets per level: 1 (SD-1.5: 2); decoder: + 1 */
  int latent_channels;                            /* 4 */
  int norm_num_groups;                            /* GroupNorm groups: 8 (SD-1.5: 32) */
  double norm_eps;                                /* 1e-6 (every GroupNorm) */
  bool mid_attention;                             /* mid_block.attentions.0: true */
  int64_t height, width, batch;                   /* image size: 32x32 (SD-1.5: 512x512), batch 1 */
  double kl_weight;                               /* loss = recon + kl_weight * kl: 1e-6 (see the loss below) */
  /* Latents a diffusion model sees are z * scaling_factor (SD-1.5: 0.18215;
   * small default 1). Metadata for the callers: no graph here applies it. */
  double scaling_factor;
} ldmc_vae_config;

/* The small default: 32x32x1 images -> 8x8x4 latents (block_out_channels
 * 32,64,128, one resnet per encoder level, 8 groups). */
void ldmc_vae_config_default(ldmc_vae_config *cfg);
/* SD-1.5's AutoencoderKL: 3 channels, 128,256,512,512, 2 layers, 4 latent
 * channels, 32 groups, 512x512, scaling factor 0.18215. */
void ldmc_vae_config_sd15(ldmc_vae_config *cfg);
/* LDMC_ERR_INVALID naming the field: counts and widths out of range, a width
 * not divisible by norm_num_groups, an image size that is not a positive
 * multiple of 2^(n_blocks - 1), eps <= 0, kl_weight < 0, ... */
ldmc_status ldmc_vae_config_check(const ldmc_vae_config *cfg);
/* The latent's shape [B, latent_channels, H / 2^(n_blocks-1), W / 2^(n_blocks-1)]. */
void ldmc_vae_latent_dims(const ldmc_vae_config *cfg, int64_t dims[4]);

/* Graph inputs, in parameter order (weights follow, under their diffusers keys). */
#define LDMC_VAE_N_INPUTS 1
extern const char *const ldmc_vae_encoder_inputs[1]; /* image f32[B,Cin,H,W] */
extern const char *const ldmc_vae_decoder_inputs[1]; /* latent f32[B,L,h,w] */
#define LDMC_VAE_LOSS_N_INPUTS 2
extern const char *const ldmc_vae_loss_inputs[2];    /* image, rng_key i64[] */

/* encode: image -> outputs "mean" and "logvar" f32[B,L,h,w]: encoder.*,
 * quant_conv (1x1, 2L -> 2L), split on channels, logvar clamped to [-30, 20].
 * Weights: encoder.*, quant_conv.*. Named "vae_encoder". */
ldmc_status ldmc_vae_encoder_build(const ldmc_vae_config *cfg, ldmc_graph **out);
/* decode: latent -> "decoded" f32[B,Cout,H,W]: post_quant_conv (1x1, L -> L),
 * decoder.*. Weights: post_quant_conv.*, decoder.*. Named "vae_decoder". */
ldmc_status ldmc_vae_decoder_build(const ldmc_vae_config *cfg, ldmc_graph **out);
/* AutoencoderKL.forward(sample_posterior=False): image -> "decoded" =
 * decode(mean), then "mean", "logvar". Every weight of the model. Named "vae". */
ldmc_status ldmc_vae_build(const ldmc_vae_config *cfg, ldmc_graph **out);

/* The training loss. Inputs image, rng_key (i64[], the Philox key of the
 * posterior noise eps = rng_normal(rng_key) [B,L,h,w]), then every weight.
 *   z     = mean + exp(logvar / 2) * eps
 *   recon = mean over all B*Cout*H*W elements of (decode(z) - image)^2
 *   kl    = (1/B) * sum over b,c,y,x of 0.5 (mean^2 + exp(logvar) - 1 - logvar)
 *   loss  = recon + cfg->kl_weight * kl
 * Outputs "loss", "recon", "kl" (f32[]); ldmc_train_step_build keeps "loss"
 * and drops the other two. Nodes of the sampling in scope "posterior", of the
 * loss in "loss". Named "vae". */
ldmc_status ldmc_vae_loss_build(const ldmc_vae_config *cfg, ldmc_graph **out);
/* ldmc_train_step_build over that loss with n_data_params 2 and loss "loss"
 * (o's loss / n_data_params must be NULL / 0 or those); o NULL: defaults.
 * Named "vae.train_step". */
ldmc_status ldmc_vae_train_step_build(const ldmc_vae_config *cfg, const ldmc_train_opts *o, ldmc_graph **step);

/* Weight tensors and parameters of the whole model (from ldmc_vae_build's
 * graph). SD-1.5: 248 tensors, 83,653,863 parameters. Either pointer may be NULL. */
ldmc_status ldmc_vae_param_count(const ldmc_vae_config *cfg, int64_t *tensors, int64_t *params);

#endif
