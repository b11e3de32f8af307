/* A trained latent diffusion model file (`ldmc train --model unet`'s
 * model.ldmc, and the repository's default model): its configuration
 * rebuilt as the three models' configs, and its weights split per model in
 * f32 (docs/training.md, "ldmc train"). */
#ifndef LDMC_MODELS_LDM_MODEL_H
#define LDMC_MODELS_LDM_MODEL_H

#include "backends/backend.h"
#include "models/autoencoder.h"
#include "models/diffusion.h"
#include "models/text_encoder.h"
#include "models/unet.h"

/* The repository's default model, used when no --model is given: env
 * LDMC_DEFAULT_MODEL, else this file under the source tree ldmc was built from. */
#define LDMC_DEFAULT_MODEL_FILE "models/default/ldm.ldmc"
const char *ldmc_default_model_path(void);
/* The default model distilled for `ldmc sample --sampler lcm` (ldmc distill):
 * env LDMC_DEFAULT_LCM_MODEL, else this file under the source tree. */
#define LDMC_DEFAULT_LCM_FILE "models/default/lcm.ldmc"
const char *ldmc_default_lcm_path(void);

typedef struct ldmc_ldm_model {
  ldmc_unet_config unet;       /* batch 1: set the batch before building; guidance_embed_dim > 0: distilled */
  ldmc_clip_config text;
  ldmc_vae_config vae;
  ldmc_diffusion_config diffusion;
  double latent_scale;         /* the autoencoder's scaling factor */
  ldmc_tensor_set unet_w, text_w, vae_w; /* f32, named as each model's graph parameters */
  int64_t step;                /* training steps behind it */
  int superres_factor;         /* > 0: a super-resolution model (unet.cond_channels > 0) of images pooled this much */
} ldmc_ldm_model;

ldmc_status ldmc_ldm_model_load(const char *path, ldmc_ldm_model *out);
void ldmc_ldm_model_free(ldmc_ldm_model *m);

/* The prompt encoder over n prompts (tokenized; an unknown word is an error
 * listing the vocabulary): context f32[n, T, D], allocated into *out. */
ldmc_status ldmc_ldm_encode_prompts(const ldmc_ldm_model *m, const char *const *prompts, int64_t n,
                                    const ldmc_backend_i *be, const ldmc_compile_opts *co, ldmc_tensor *out);
/* The autoencoder's decoder on latents / latent_scale: images f32[B, C, H, W]
 * (about [-1, 1]), allocated into *out. */
ldmc_status ldmc_ldm_decode(const ldmc_ldm_model *m, const ldmc_tensor *latents, const ldmc_backend_i *be,
                            const ldmc_compile_opts *co, ldmc_tensor *out);

#endif
