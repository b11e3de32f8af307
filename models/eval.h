/* The inputs of the sample-quality metrics (docs/sampling.md, "Metrics"): a trained
 * classifier read from its model file, its features and logits over a set
 * of images computed in batches on a backend, and the sample files of
 * `ldmc sample` (images and prompted labels). models/metrics.h computes the
 * figures from what this produces. */
#ifndef LDMC_MODELS_EVAL_H
#define LDMC_MODELS_EVAL_H

#include "backends/backend.h"
#include "models/classifier.h"
#include "runtime/fashion_mnist.h"

/* ---- the classifier -------------------------------------------------------------- */
/* The repository's default classifier, used when no --classifier is given: env
 * LDMC_DEFAULT_CLASSIFIER, else this file under the source tree ldmc was built from. */
#define LDMC_DEFAULT_CLASSIFIER_FILE "models/default/classifier.ldmc"
const char *ldmc_default_classifier_path(void);

typedef struct ldmc_classifier_model {
  ldmc_classifier_config cfg; /* batch 1; in_channels 1, image_size 32 */
  ldmc_tensor_set weights;    /* f32, exactly the graph's weight parameters */
  int64_t step;               /* training steps behind it */
} ldmc_classifier_model;

/* Reads the .ldmc model file of `ldmc train --model classifier` (or one of
 * its checkpoints): config model = classifier, widths = C,C,.., features,
 * classes; its parameter-role tensors (f32, bf16 or f16, converted to f32)
 * checked against the graph of that config. Errors start with the path. */
ldmc_status ldmc_classifier_model_load(const char *path, ldmc_classifier_model *out);
void ldmc_classifier_model_free(ldmc_classifier_model *m);

/* ---- features ---------------------------------------------------------------------- */
typedef struct ldmc_features {
  int64_t n;
  int32_t d, classes;
  float *features; /* [n][d]: the classifier's penultimate layer (after ReLU) */
  float *logits;   /* [n][classes] */
} ldmc_features;
void ldmc_features_free(ldmc_features *f);

/* Writes image i (in_channels x image_size x image_size floats, [-1, 1]). */
typedef void (*ldmc_image_fn)(void *ctx, int64_t i, float *out);

/* The classifier compiled once for batches of `batch` images (weights bound
 * and prepacked once). */
typedef struct ldmc_feature_extractor ldmc_feature_extractor;
ldmc_status ldmc_feature_extractor_new(const ldmc_classifier_model *m, int64_t batch, const ldmc_backend_i *be,
                                       const ldmc_compile_opts *co, ldmc_feature_extractor **out);
void ldmc_feature_extractor_free(ldmc_feature_extractor *x);
int64_t ldmc_feature_extractor_batch(const ldmc_feature_extractor *x);

/* Features and logits of images 0..n−1 (n >= 1) in batches; the rows past
 * n of the last batch are background images (-1) whose outputs are dropped. */
ldmc_status ldmc_feature_extractor_run(ldmc_feature_extractor *x, int64_t n, ldmc_image_fn image, void *ctx,
                                       ldmc_features *out);
/* The same over images[n][C][S][S], and over the first n images of a
 * Fashion-MNIST split (ldmc_fmnist_image_f32, as training sees them). */
ldmc_status ldmc_features_of_images(ldmc_feature_extractor *x, const float *images, int64_t n, ldmc_features *out);
ldmc_status ldmc_features_of_fmnist(ldmc_feature_extractor *x, const ldmc_fmnist *d, int64_t n, ldmc_features *out);

/* ---- sample files ------------------------------------------------------------------- */
typedef struct ldmc_sample_set {
  int64_t n;
  float *images;   /* [n][C][S][S] */
  int64_t *labels; /* [n], the prompted classes (-1: none); NULL when the file has none */
} ldmc_sample_set;

/* A safetensors file with `images` [N,C,S,S] (f32; f16, bf16, f64 converted)
 * of the classifier's C and S, every pixel finite, and optionally `labels`
 * [N] (i64 or i32); other tensors are ignored. limit > 0 keeps the first
 * limit images. Errors name the file and the tensor. */
ldmc_status ldmc_sample_set_load(const char *path, const ldmc_classifier_config *cfg, int64_t limit,
                                 ldmc_sample_set *out);
void ldmc_sample_set_free(ldmc_sample_set *s);

#endif
