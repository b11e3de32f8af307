/* The SD-1.5 UNet2DConditionModel family, scaled by base width c. */
#ifndef LDMC_MODELS_UNET_H
#define LDMC_MODELS_UNET_H

#include "ir/ir.h"

#define LDMC_UNET_MAX_LEVELS 8

typedef struct ldmc_unet_config {
  int channels;                         /* base width c (SD-1.5: 320) */
  int n_levels;                         /* 4 */
  int channel_mult[LDMC_UNET_MAX_LEVELS]; /* 1,2,4,4 */
  bool attend[LDMC_UNET_MAX_LEVELS];    /* cross-attention at level i (default: first three) */
  bool mid_attention;                   /* true */
  int layers_down;                      /* resnets per down level: 2 (up levels: layers_down + 1) */
  int heads;                            /* attention heads: 8 */
  int groups;                           /* GroupNorm groups: 32 */
  double norm_eps;                      /* 1e-5 */
  double transformer_norm_eps;          /* 1e-6 (the transformer's GroupNorm); LayerNorms use 1e-5 */
  int context_dim, context_tokens;      /* 1024 x 77 for the family, 768 x 77 for SD-1.5 */
  int in_channels, out_channels;        /* 4, 4 */
  bool linear_proj;                     /* proj_in/proj_out as Linear instead of 1x1 conv */
  int64_t height, width, batch;         /* latent H x W and batch */
  int transformer_depth;                /* BasicTransformerBlocks per Transformer2DModel; 0 means 1 */
  int ff_mult;                          /* GEGLU inner width / dim; 0 means 4 */
  /* > 0: a guidance-rate embedding (LCM's time_cond_proj_dim): a 4th input
   * "guidance" f32[B] (LCM's w = guidance scale - 1), embedded as
   * [sin(1000 w f), cos(1000 w f)] with f_i = exp(-ln(10000) i / (dim/2 - 1)),
   * projected by time_embedding.cond_proj (Linear dim -> c, no bias) and
   * added to the timestep's sinusoidal projection before linear_1, as
   * diffusers' TimestepEmbedding(cond_proj_dim) does. Even, 0: none. */
  int guidance_embed_dim;
  /* > 0: image conditioning (super-resolution): an input "cond_sample"
   * f32[B, cond_channels, H, W] after the others, concatenated after sample
   * along channels before conv_in, whose weight is then
   * [c, in_channels + cond_channels, 3, 3]. 0: none. */
  int cond_channels;
} ldmc_unet_config;

/* The scaling family's defaults at width c: 64x64 latent, batch 1, context 1024x77. */
void ldmc_unet_config_default(ldmc_unet_config *cfg, int channels);
/* SD-1.5 itself: c=320, context 768x77. */
void ldmc_unet_config_sd15(ldmc_unet_config *cfg);

/* Builds the forward graph. Parameters, in order: sample f32[B,4,H,W],
 * timestep f32[B], encoder_hidden_states f32[B,T,D], [guidance f32[B]], then every weight under
 * its diffusers state-dict key. One output, out_sample f32[B,4,H,W]. */
ldmc_status ldmc_unet_build(const ldmc_unet_config *cfg, ldmc_graph **out);

/* Checks a config (widths divisible by groups and heads, latent divisible by
 * 2^(levels-1), ...); the message names the field. */
ldmc_status ldmc_unet_config_check(const ldmc_unet_config *cfg);

/* The graph's inputs (not weights), in parameter order: sample, timestep,
 * encoder_hidden_states, guidance when guidance_embed_dim > 0, cond_sample
 * when cond_channels > 0. ldmc_unet_input_names are the first four
 * (positional when there is no cond_sample) and cond_sample; ldmc_unet_inputs
 * gives a config's list. */
#define LDMC_UNET_N_INPUTS 3
#define LDMC_UNET_MAX_INPUTS 5
extern const char *const ldmc_unet_input_names[LDMC_UNET_MAX_INPUTS];
int ldmc_unet_n_inputs(const ldmc_unet_config *cfg); /* 3, + 1 with the guidance embedding, + 1 with cond_sample */
/* names[LDMC_UNET_MAX_INPUTS] <- the config's inputs in order; returns their count. */
int ldmc_unet_inputs(const ldmc_unet_config *cfg, const char **names);

/* The shared CLI options: channels "320" (one width), latent "HxW" or "HxWxC"
 * (C = in/out channels), context "DxT" (width x tokens), batch >= 1 (0 keeps 1).
 * NULL strings keep the family defaults (64x64x4, 1024x77). Starts from
 * ldmc_unet_config_default. */
ldmc_status ldmc_unet_config_from_args(ldmc_unet_config *cfg, const char *channels, const char *latent,
                                       const char *context, int64_t batch);
/* Parses "64,96,128" into at most max widths. */
ldmc_status ldmc_unet_parse_widths(const char *s, int *out, int max, int *n_out);

#endif
