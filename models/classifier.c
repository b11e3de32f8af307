/* The Fashion-MNIST classifier CNN and its cross-entropy loss (see
 * classifier.h). */
#include <stdio.h>
#include <string.h>

#include "frontend/nn.h"
#include "models/classifier.h"

const char *const ldmc_classifier_input_names[LDMC_CLASSIFIER_N_INPUTS] = {"images"};
const char *const ldmc_classifier_train_input_names[LDMC_CLASSIFIER_TRAIN_N_INPUTS] = {"images", "labels"};

#define CLS_MAX_DIM (1 << 20)

void ldmc_classifier_config_default(ldmc_classifier_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->n_stages = 3;
  cfg->widths[0] = 32;
  cfg->widths[1] = 64;
  cfg->widths[2] = 128;
  cfg->features = 128;
  cfg->classes = 10;
  cfg->in_channels = 1;
  cfg->image_size = 32;
  cfg->batch = 1;
}

ldmc_status ldmc_classifier_config_check(const ldmc_classifier_config *cfg) {
  if (!cfg) return ldmc_error(LDMC_ERR_INVALID, "classifier config: NULL");
  if (cfg->n_stages < 1 || cfg->n_stages > LDMC_CLASSIFIER_MAX_STAGES)
    return ldmc_error(LDMC_ERR_INVALID, "classifier config: n_stages = %d must be in [1, %d]", cfg->n_stages,
                      LDMC_CLASSIFIER_MAX_STAGES);
  char name[32];
  for (int i = 0; i < cfg->n_stages; i++)
    if (cfg->widths[i] < 1 || cfg->widths[i] > CLS_MAX_DIM) {
      snprintf(name, sizeof name, "widths[%d]", i);
      return ldmc_error(LDMC_ERR_INVALID, "classifier config: %s = %d must be in [1, %d]", name, cfg->widths[i],
                        CLS_MAX_DIM);
    }
  const struct {
    const char *name;
    int64_t v;
  } f[] = {{"features", cfg->features}, {"classes", cfg->classes},    {"in_channels", cfg->in_channels},
           {"image_size", cfg->image_size}, {"batch", cfg->batch}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (f[i].v < 1 || f[i].v > CLS_MAX_DIM)
      return ldmc_error(LDMC_ERR_INVALID, "classifier config: %s = %lld must be in [1, %d]", f[i].name,
                        (long long)f[i].v, CLS_MAX_DIM);
  if (cfg->image_size % ((int64_t)1 << cfg->n_stages) != 0)
    return ldmc_error(LDMC_ERR_INVALID, "classifier config: image_size %lld is not divisible by 2^n_stages = %d",
                      (long long)cfg->image_size, 1 << cfg->n_stages);
  return LDMC_OK;
}

static ldmc_value relu(ldmc_builder *b, ldmc_value x) {
  return ldmc_binary(b, LDMC_OP_MAX, x, ldmc_constant_scalar(b, LDMC_F32, 0.0));
}

/* 2x2 max pool, stride 2, of x[N,C,H,W]: a reshape to [N,C,H/2,2,W/2,2] and a
 * max over the window dims. */
static ldmc_value max_pool2(ldmc_builder *b, ldmc_value x, int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t d6[6] = {n, c, h / 2, 2, w / 2, 2}, axes[2] = {3, 5};
  return ldmc_reduce(b, LDMC_REDUCE_MAX, ldmc_reshape(b, x, 6, d6), 2, axes, false);
}

/* The network on images; returns the logits and sets *features. Max pool
 * before ReLU: the same values as after (both are monotone), 4x fewer ReLUs. */
static ldmc_value network(ldmc_builder *b, const ldmc_classifier_config *cfg, ldmc_value x, ldmc_value *features) {
  const int64_t B = cfg->batch;
  int64_t s = cfg->image_size;
  char name[16];
  for (int i = 0; i < cfg->n_stages; i++) {
    snprintf(name, sizeof name, "conv%d", i + 1);
    x = ldmc_nn_conv2d(b, name, x, cfg->widths[i], 3, 1, 1, true);
    ldmc_builder_push_scope(b, "%s", name);
    x = relu(b, max_pool2(b, x, B, cfg->widths[i], s, s));
    ldmc_builder_pop_scope(b);
    s /= 2;
  }
  const int64_t flat[2] = {B, (int64_t)cfg->widths[cfg->n_stages - 1] * s * s};
  x = ldmc_reshape(b, x, 2, flat);
  *features = relu(b, ldmc_nn_linear(b, "fc1", x, cfg->features, true));
  return ldmc_nn_linear(b, "fc2", *features, cfg->classes, true);
}

/* loss = mean_b(logsumexp(l_b) - l_b[y_b]) over z = l - max(l) (the max's
 * gradient cancels between the two terms); correct counts z_b[y_b] >= 0. */
static void cross_entropy(ldmc_builder *b, ldmc_value logits, ldmc_value labels, int64_t B, int64_t K,
                          ldmc_value *loss, ldmc_value *correct) {
  ldmc_builder_push_scope(b, "loss");
  const int64_t ax1[1] = {1}, ax0[1] = {0}, bk[2] = {B, K}, map0[1] = {0};
  ldmc_value m = ldmc_reduce(b, LDMC_REDUCE_MAX, logits, 1, ax1, true); /* [B,1] */
  ldmc_value z = ldmc_sub(b, logits, m);
  ldmc_value lse = ldmc_unary(b, LDMC_OP_LOG, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_unary(b, LDMC_OP_EXP, z), 1, ax1,
                                                           false)); /* [B] */
  ldmc_value cls = ldmc_iota(b, LDMC_I32, 2, bk, 1);
  ldmc_value hit = ldmc_compare_values(b, LDMC_CMP_EQ, cls, ldmc_broadcast_in_dim(b, labels, 2, bk, map0));
  ldmc_value onehot = ldmc_convert(b, hit, LDMC_F32);
  ldmc_value picked = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, onehot, z), 1, ax1, false); /* [B] */
  ldmc_value sum = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_sub(b, lse, picked), 1, ax0, false);
  *loss = ldmc_scale(b, sum, 1.0 / (double)B);
  ldmc_value ok = ldmc_compare_values(b, LDMC_CMP_GE, picked, ldmc_constant_scalar(b, LDMC_F32, 0.0));
  *correct = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_convert(b, ok, LDMC_F32), 1, ax0, false);
  ldmc_builder_pop_scope(b);
}

static ldmc_status finish(ldmc_builder *b, ldmc_graph **out, const char *what) {
  ldmc_status st;
  *out = ldmc_builder_finish(b, &st);
  if (st != LDMC_OK) ldmc_error_prefix("building the %s: ", what);
  return st;
}

static ldmc_value images_param(ldmc_builder *b, const ldmc_classifier_config *cfg) {
  const int64_t d[4] = {cfg->batch, cfg->in_channels, cfg->image_size, cfg->image_size};
  return ldmc_parameter(b, ldmc_classifier_input_names[0], LDMC_F32, 4, d);
}

ldmc_status ldmc_classifier_build(const ldmc_classifier_config *cfg, ldmc_graph **out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "classifier: out is NULL");
  *out = NULL;
  LDMC_TRY(ldmc_classifier_config_check(cfg));
  ldmc_builder *b = ldmc_builder_new("classifier");
  if (!b) return ldmc_error(LDMC_ERR_NOMEM, "classifier: out of memory");
  ldmc_value features = -1;
  ldmc_value logits = network(b, cfg, images_param(b, cfg), &features);
  ldmc_builder_output(b, logits, "logits");
  ldmc_builder_output(b, features, "features");
  return finish(b, out, "classifier");
}

ldmc_status ldmc_classifier_train_build(const ldmc_classifier_config *cfg, ldmc_graph **out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "classifier loss: out is NULL");
  *out = NULL;
  LDMC_TRY(ldmc_classifier_config_check(cfg));
  ldmc_builder *b = ldmc_builder_new("classifier");
  if (!b) return ldmc_error(LDMC_ERR_NOMEM, "classifier loss: out of memory");
  ldmc_value images = images_param(b, cfg);
  ldmc_value labels = ldmc_parameter(b, ldmc_classifier_train_input_names[1], LDMC_I32, 1, &cfg->batch);
  ldmc_value features = -1, loss = -1, correct = -1;
  ldmc_value logits = network(b, cfg, images, &features);
  cross_entropy(b, logits, labels, cfg->batch, cfg->classes, &loss, &correct);
  ldmc_builder_output(b, loss, "loss");
  ldmc_builder_output(b, correct, "correct");
  return finish(b, out, "classifier loss");
}

ldmc_status ldmc_classifier_train_step_build(const ldmc_classifier_config *cfg, const ldmc_train_opts *o,
                                             ldmc_graph **step) {
  if (!step) return ldmc_error(LDMC_ERR_INVALID, "classifier train step: step is NULL");
  *step = NULL;
  ldmc_train_opts to = o ? *o : (ldmc_train_opts){0};
  if (to.n_data_params != 0 && to.n_data_params != LDMC_CLASSIFIER_TRAIN_N_INPUTS)
    return ldmc_error(LDMC_ERR_INVALID,
                      "classifier train step: n_data_params = %d, but the loss graph has %d data inputs",
                      (int)to.n_data_params, LDMC_CLASSIFIER_TRAIN_N_INPUTS);
  if (to.loss && strcmp(to.loss, "loss") != 0)
    return ldmc_error(LDMC_ERR_INVALID,
                      "classifier train step: loss '%s' requested, but the loss graph's output is 'loss'", to.loss);
  to.n_data_params = LDMC_CLASSIFIER_TRAIN_N_INPUTS;
  to.loss = "loss";
  ldmc_graph *g = NULL;
  LDMC_TRY(ldmc_classifier_train_build(cfg, &g));
  ldmc_status st = ldmc_train_step_build(g, &to, step);
  ldmc_graph_free(g);
  return st;
}

ldmc_status ldmc_cross_entropy_build(int64_t batch, int classes, ldmc_graph **out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "cross-entropy: out is NULL");
  *out = NULL;
  if (batch < 1 || batch > CLS_MAX_DIM || classes < 1 || classes > CLS_MAX_DIM)
    return ldmc_error(LDMC_ERR_INVALID, "cross-entropy: batch %lld and classes %d must be in [1, %d]",
                      (long long)batch, classes, CLS_MAX_DIM);
  ldmc_builder *b = ldmc_builder_new("cross_entropy");
  if (!b) return ldmc_error(LDMC_ERR_NOMEM, "cross-entropy: out of memory");
  const int64_t d[2] = {batch, classes};
  ldmc_value logits = ldmc_parameter(b, "logits", LDMC_F32, 2, d);
  ldmc_value labels = ldmc_parameter(b, "labels", LDMC_I32, 1, &batch);
  ldmc_value loss = -1, correct = -1;
  cross_entropy(b, logits, labels, batch, classes, &loss, &correct);
  ldmc_builder_output(b, loss, "loss");
  ldmc_builder_output(b, correct, "correct");
  return finish(b, out, "cross-entropy");
}
