/* What each model trains on (docs/training.md): Fashion-MNIST batches as the
 * step's data inputs, and the validation on the test split, for the
 * classifier, the autoencoder and the latent diffusion model. */
#ifndef LDMC_MODELS_TRAIN_DATA_H
#define LDMC_MODELS_TRAIN_DATA_H

#include "models/autoencoder.h"
#include "models/classifier.h"
#include "models/diffusion.h"
#include "models/text_encoder.h"
#include "models/train_session.h"
#include "models/unet.h"
#include "runtime/trainer.h"

typedef struct ldmc_model_data ldmc_model_data;
void ldmc_model_data_free(ldmc_model_data *d);

/* Shared options: the dataset folder (NULL: the default), the first `limit`
 * images of each split (0: all), the seed of the data order and of the
 * in-graph noise (the step's key is seed * 2^20 + step), the backend that
 * validates. */
typedef struct ldmc_data_opts {
  const char *dir;
  int64_t limit;
  uint64_t seed;
  const ldmc_backend_i *be;
  ldmc_compile_opts co;
  /* Data-parallel shard (0, 0: one process): the batcher draws global
   * batches of shard_ranks x B images and this process trains rows
   * [shard_rank B, (shard_rank + 1) B) of each (B: the loss graph's batch). */
  int shard_rank, shard_ranks;
  /* Latent diffusion, super-resolution (0: none): every image's cond latent
   * (ldmc_superres_encode: pooled superres x superres, upsampled, the
   * posterior mean x latent_scale) is the loss graph's fifth data input. */
  int superres;
  double latent_scale;
} ldmc_data_opts;

/* Classifier: images, labels; validation: mean cross-entropy and accuracy
 * (metric "accuracy", in [0, 1]) over the test split, in batches of 250
 * (or the whole split when smaller). */
ldmc_status ldmc_classifier_data_new(const ldmc_classifier_config *cfg, const ldmc_data_opts *o, ldmc_train_session *s,
                                     ldmc_model_data **out, ldmc_train_source *src);

/* Autoencoder: images and the step's key; validation: the loss graph's
 * recon + kl_weight kl over the test split with fixed keys, metric "psnr"
 * (dB, of decode(mean) against the image, both mapped from [-1, 1] to [0, 1]). */
ldmc_status ldmc_vae_data_new(const ldmc_vae_config *cfg, const ldmc_data_opts *o, ldmc_train_session *s,
                              ldmc_model_data **out, ldmc_train_source *src);

/* The latent scale factor: 1 / std of posterior samples z = mean + std n
 * (Var z = Var mean + E exp(logvar), over every latent element) of the
 * first n training images (n 0: 10000), encoded with weights ws. */
ldmc_status ldmc_vae_measure_scale(const ldmc_vae_config *cfg, const ldmc_tensor_set *ws, const ldmc_data_opts *o,
                                   int64_t n, double *scale);

/* Latent diffusion (ldmc_ldm_loss_build with the prompt encoder): every image
 * of both splits encoded once with the autoencoder (ws: its weights, cfg's
 * batch ignored) to its posterior mean and logvar; tokens from the labels'
 * class names (ldmc_class_prompt); the key. Validation: the loss graph over
 * up to val_batches test batches with fixed keys (2^40 + batch index). */
/* With o->superres > 0 the loss must have cond_sample (LDMC_LDM_N_DATA + 1
 * data inputs), and the cond latents are computed once per split like the
 * posteriors. */
ldmc_status ldmc_ldm_data_new(const ldmc_graph *loss, const ldmc_vae_config *vcfg, const ldmc_tensor_set *ws,
                              int tokens, int64_t val_batches, const ldmc_data_opts *o, ldmc_train_session *s,
                              ldmc_model_data **out, ldmc_train_source *src);

#endif
