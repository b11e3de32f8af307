/* The Fashion-MNIST classifier: a small CNN over 32x32 images (28x28 padded,
 * scaled to [-1, 1]) whose penultimate layer is the feature space of the
 * quality metrics; its inference, loss and training-step graphs. See
 * docs/models.md, "The classifier". */
#ifndef LDMC_MODELS_CLASSIFIER_H
#define LDMC_MODELS_CLASSIFIER_H

#include "frontend/frontend.h"

#define LDMC_CLASSIFIER_MAX_STAGES 6

typedef struct ldmc_classifier_config {
  int n_stages;                           /* conv stages: 3 */
  int widths[LDMC_CLASSIFIER_MAX_STAGES]; /* output channels of stage i: 32, 64, 128 */
  int features;                           /* fc1 width = the feature space F: 128 */
  int classes;                            /* 10 */
  int in_channels;                        /* 1 */
  int64_t image_size;                     /* 32; divisible by 2^n_stages */
  int64_t batch;                          /* B */
} ldmc_classifier_config;

/* The defaults above, batch 1. */
void ldmc_classifier_config_default(ldmc_classifier_config *cfg);
/* Every count >= 1, image_size divisible by 2^n_stages; the message names the field. */
ldmc_status ldmc_classifier_config_check(const ldmc_classifier_config *cfg);

/* The network (parameter names as torch named modules, see docs/models.md):
 *   stage i (1-based): conv<i> 3x3 pad 1 with bias, 2x2 max pool, ReLU
 *   flatten (NCHW order, as torch's x.flatten(1)), fc1 -> features, ReLU
 *   fc2 -> classes (logits)
 * The inference graph, named "classifier": parameter images
 * f32[B,in_channels,S,S], then the weights conv1.weight [w1,in,3,3],
 * conv1.bias [w1], ..., fc1.weight [F, w_last*(S/2^n)^2], fc1.bias [F],
 * fc2.weight [classes,F], fc2.bias [classes]. Outputs: logits f32[B,classes],
 * features f32[B,F] (after fc1's ReLU). */
ldmc_status ldmc_classifier_build(const ldmc_classifier_config *cfg, ldmc_graph **out);

#define LDMC_CLASSIFIER_N_INPUTS 1
extern const char *const ldmc_classifier_input_names[LDMC_CLASSIFIER_N_INPUTS]; /* images */

/* The loss graph, named "classifier": parameters images f32[B,C,S,S], labels
 * i32[B] (each in [0, classes); others match no class), then the weights as
 * above. Outputs: loss f32[] = mean over the batch of the cross-entropy
 * logsumexp(logits) - logits[label] (scope "loss"), and correct f32[] = the
 * number of examples whose label's logit is the largest (a tie counts as
 * correct). */
ldmc_status ldmc_classifier_train_build(const ldmc_classifier_config *cfg, ldmc_graph **out);

#define LDMC_CLASSIFIER_TRAIN_N_INPUTS 2
extern const char *const ldmc_classifier_train_input_names[LDMC_CLASSIFIER_TRAIN_N_INPUTS]; /* images, labels */

/* The training step of that loss: ldmc_train_step_build with n_data_params =
 * 2 and loss "loss" (o's loss and n_data_params must be NULL/0 or those; o
 * NULL: the AdamW defaults). The step graph keeps loss and grad_norm and
 * drops correct (ldmc_train_step_build keeps no other model outputs).
 * Named "classifier.train_step". */
ldmc_status ldmc_classifier_train_step_build(const ldmc_classifier_config *cfg, const ldmc_train_opts *o,
                                             ldmc_graph **step);

/* The loss part alone, for tests and other heads: parameters logits
 * f32[batch,classes] and labels i32[batch]; outputs loss and correct as above. */
ldmc_status ldmc_cross_entropy_build(int64_t batch, int classes, ldmc_graph **out);

#endif
