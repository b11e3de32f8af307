/* Super-resolution conditioning (docs/training.md, "Super-resolution"): the
 * low-resolution input of an image, and its "cond latent", the latent the
 * U-Net's cond_sample input gets (ldmc_unet_config.cond_channels). */
#ifndef LDMC_MODELS_SUPERRES_H
#define LDMC_MODELS_SUPERRES_H

#include "backends/backend.h"
#include "models/autoencoder.h"
#include "models/ldm_model.h"

/* The degraded images: img [n][1][size][size] average-pooled factor x factor
 * (size a multiple of factor, factor >= 1), then upsampled back by nearest
 * neighbour, into out (same shape; out may be img). */
ldmc_status ldmc_superres_degrade(const float *img, int64_t n, int size, int factor, float *out);

/* An encoder of degraded images, compiled once for batches of B rows:
 * cond latent = scale * mean of the autoencoder's posterior of the degraded
 * image (the deterministic mean: the condition is the same at every step). */
typedef struct ldmc_superres_encoder ldmc_superres_encoder;
ldmc_status ldmc_superres_encoder_new(const ldmc_vae_config *vae, const ldmc_tensor_set *vae_w, double scale,
                                      int factor, int64_t B, const ldmc_backend_i *be, const ldmc_compile_opts *co,
                                      ldmc_superres_encoder **out);
void ldmc_superres_encoder_free(ldmc_superres_encoder *e);
int64_t ldmc_superres_encoder_latent_size(const ldmc_superres_encoder *e); /* floats per image */
/* images [n][Cin][H][W] (the autoencoder's image shape, in [-1, 1]) -> out [n][latent size], any n >= 0. */
ldmc_status ldmc_superres_encode(ldmc_superres_encoder *e, const float *images, int64_t n, float *out);

/* The cond latents of n images [n][1][H][W] with m's autoencoder and latent
 * scale: f32[n, L, h, w] allocated into *out. factor >= 2. */
ldmc_status ldmc_superres_cond_latents(const ldmc_ldm_model *m, const float *images, int64_t n, int factor,
                                       const ldmc_backend_i *be, const ldmc_compile_opts *co, ldmc_tensor *out);

#endif
