/* ldmc sample --superres-from test: a super-resolution model conditioned on
 * the first n test images (docs/sampling.md, "Super-resolution"). */
#ifndef LDMC_TOOLS_SAMPLE_SUPERRES_H
#define LDMC_TOOLS_SAMPLE_SUPERRES_H

#include "models/ldm_model.h"
#include "models/samplers.h"

typedef struct ldmc_sr_sample_opts {
  const ldmc_ldm_model *m;     /* unet.cond_channels > 0 */
  const char *model_path;
  const ldmc_sampler_config *sc;
  int64_t n, batch;            /* the first n test images, denoised batch at a time */
  uint64_t seed;
  const char *out_png, *save_latents; /* save_latents NULL: none */
  int scale;                   /* grid pixels per image pixel */
  bool labels;                 /* row labels in the grid */
  const ldmc_backend_i *be;
  ldmc_compile_opts co;
} ldmc_sr_sample_opts;

/* Each image's prompt is its class name (ldmc_class_prompt of its label), no
 * classifier-free guidance; image i draws noise index i. The grid: three rows
 * of n (the low-resolution input, the sample, the original). Prints a summary. */
ldmc_status ldmc_sample_superres(const ldmc_sr_sample_opts *o);

#endif
