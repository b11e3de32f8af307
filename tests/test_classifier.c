/* The Fashion-MNIST classifier (models/classifier.h):
 *  1. the cross-entropy graph on a 2-example case computed by hand (loss,
 *     correct count, gradient softmax - onehot over the batch), interp and
 *     llvm-cpu;
 *  2. the default CNN (batch 3) against tests/torch/classifier_ref.py
 *     (float64) with the same weights: logits and features (inference
 *     graph), loss and correct (loss graph), and the loss's gradient for
 *     every weight (ldmc_grad) against torch autograd, on interp and
 *     llvm-cpu; skipped, with a message, when torch is missing;
 *  3. the AdamW step graph (ldmc_classifier_train_step_build): its layout,
 *     and five steps on one batch on llvm-cpu, state fed back, whose first
 *     loss is the loss graph's and whose loss falls;
 *  4. config errors name the field. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "frontend/weights_io.h"
#include "models/classifier.h"
#include "models/stats.h"
#include "models/weights.h"
#include "test_util.h"

static char g_dir[64];

static ldmc_status run_on(const char *backend, const ldmc_graph *g, const ldmc_tensor_set *in, ldmc_tensor_set *out) {
  const ldmc_backend_i *be = ldmc_backend_find(backend);
  if (!be) return LDMC_ERR_INVALID;
  ldmc_executable *e = NULL;
  ldmc_status st = be->compile(g, &(ldmc_compile_opts){.threads = 2}, &e);
  if (st == LDMC_OK) st = ldmc_executable_run_named(e, in, out);
  ldmc_executable_free(e);
  return st;
}

static ldmc_status add_view(ldmc_tensor_set *s, const ldmc_tensor *t) {
  ldmc_tensor v = *t;
  v.name = strdup(t->name);
  v.owns_data = false;
  return v.name ? ldmc_tensor_set_add(s, &v) : LDMC_ERR_NOMEM;
}

/* max |a - b| / max |b| (floored at 1e-12), NaN as infinity; *scale = max |b|. */
static double rel_err(const ldmc_tensor *a, const ldmc_tensor *b, double *scale) {
  int64_t n;
  *scale = 0;
  if (!a || !b || !ldmc_shape_equal(&a->shape, &b->shape) || ldmc_shape_numel(&a->shape, 0, &n) != LDMC_OK)
    return INFINITY;
  double md = 0, mx = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = ldmc_tensor_get(a, i), y = ldmc_tensor_get(b, i), d = fabs(x - y);
    if (!(d <= md)) md = isnan(d) ? INFINITY : d;
    if (fabs(y) > mx) mx = fabs(y);
  }
  *scale = mx;
  return md / fmax(mx, 1e-12);
}

/* ---- 1: cross-entropy by hand ---- */
static void test_cross_entropy(void) {
  /* example 0: logits 1,2,3, label 2: log(e + e^2 + e^3) - 3 = 0.40760596444438013
   * example 1: logits 0.5,0,0, label 1: log(e^0.5 + 2) - 0 = 1.2943767694176431
   * mean 0.8509913669310116; example 0 is right, example 1 wrong: correct 1.
   * d loss / d logits = (softmax - onehot) / 2. */
  const float lv[6] = {1, 2, 3, 0.5f, 0, 0};
  const int32_t yv[2] = {2, 1};
  const double want_grad[6] = {0.09003057317038046 / 2,       0.24472847105479767 / 2, (0.6652409557748219 - 1) / 2,
                               0.45186276187760605 / 2,       (0.27406861906119695 - 1) / 2,
                               0.27406861906119695 / 2};
  ldmc_graph *g = NULL, *gg = NULL;
  CHECK_MSG(ldmc_cross_entropy_build(2, 3, &g) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_grad_opts go = {.output = "loss", .seed = LDMC_GRAD_SCALAR, .wrt_regex = "^logits$"};
  if (g) CHECK_MSG(ldmc_grad(g, &go, &gg) == LDMC_OK, "%s", ldmc_last_error());
  if (!gg) {
    ldmc_graph_free(g);
    return;
  }
  ldmc_tensor_set in = {0};
  ldmc_tensor l, y;
  ldmc_tensor_alloc(&l, "logits", LDMC_F32, &(ldmc_shape){2, {2, 3}});
  ldmc_tensor_alloc(&y, "labels", LDMC_I32, &(ldmc_shape){1, {2}});
  memcpy(l.data, lv, sizeof lv);
  memcpy(y.data, yv, sizeof yv);
  CHECK(ldmc_tensor_set_add(&in, &l) == LDMC_OK && ldmc_tensor_set_add(&in, &y) == LDMC_OK);
  const char *backends[2] = {"interp", "llvm-cpu"};
  for (int k = 0; k < 2; k++) {
    ldmc_tensor_set out = {0};
    CHECK_MSG(run_on(backends[k], gg, &in, &out) == LDMC_OK, "%s: %s", backends[k], ldmc_last_error());
    const ldmc_tensor *loss = ldmc_tensor_set_find(&out, "loss"), *correct = ldmc_tensor_set_find(&out, "correct");
    const ldmc_tensor *grad = ldmc_tensor_set_find(&out, "grad.logits");
    CHECK(loss && correct && grad);
    if (loss && correct && grad) {
      printf("classifier: cross-entropy by hand, %s: loss %.9g (want 0.850991367), correct %g\n", backends[k],
             ldmc_tensor_get(loss, 0), ldmc_tensor_get(correct, 0));
      CHECK_NEAR(ldmc_tensor_get(loss, 0), 0.8509913669310116, 1e-6);
      CHECK(ldmc_tensor_get(correct, 0) == 1.0);
      for (int i = 0; i < 6; i++) CHECK_NEAR(ldmc_tensor_get(grad, i), want_grad[i], 1e-6);
    }
    ldmc_tensor_set_free(&out);
  }
  /* a tie counts as correct: labels 1, 1 on logits (1, 1, 0) and (0, 0, 0) */
  const float tie[6] = {1, 1, 0, 0, 0, 0};
  const int32_t tie_labels[2] = {1, 1};
  memcpy(in.items[0].data, tie, sizeof tie);
  memcpy(in.items[1].data, tie_labels, sizeof tie_labels);
  ldmc_tensor_set out = {0};
  CHECK(run_on("interp", g, &in, &out) == LDMC_OK);
  const ldmc_tensor *correct = ldmc_tensor_set_find(&out, "correct");
  CHECK(correct && ldmc_tensor_get(correct, 0) == 2.0);
  ldmc_tensor_set_free(&out);
  ldmc_tensor_set_free(&in);
  ldmc_graph_free(gg);
  ldmc_graph_free(g);
  CHECK(ldmc_cross_entropy_build(0, 3, &g) == LDMC_ERR_INVALID && g == NULL);
}

/* ---- 2: against torch ---- */
#define B 3
static const int32_t k_labels[B] = {3, 9, 0};

static void make_data(ldmc_tensor_set *in, const ldmc_classifier_config *cfg) {
  ldmc_tensor x, y;
  const int64_t S = cfg->image_size;
  ldmc_tensor_alloc(&x, "images", LDMC_F32, &(ldmc_shape){4, {B, cfg->in_channels, S, S}});
  for (int64_t i = 0; i < B * cfg->in_channels * S * S; i++)
    ldmc_tensor_set_elem(&x, i, 2 * ldmc_weights_uniform(3, "images", i) - 1);
  ldmc_tensor_alloc(&y, "labels", LDMC_I32, &(ldmc_shape){1, {B}});
  memcpy(y.data, k_labels, sizeof k_labels);
  CHECK(ldmc_tensor_set_add(in, &x) == LDMC_OK && ldmc_tensor_set_add(in, &y) == LDMC_OK);
}

static void compare(const char *what, const ldmc_tensor_set *out, const ldmc_tensor_set *ref, const char *name,
                    double tol) {
  double scale, e = rel_err(ldmc_tensor_set_find(out, name), ldmc_tensor_set_find(ref, name), &scale);
  printf("classifier: %s: %s: error %.3g of max |torch| %.3g\n", what, name, e, scale);
  CHECK_MSG(e < tol && scale > 1e-4, "%s: %s differs from torch by %.3g (scale %.3g)", what, name, e, scale);
}

static void test_torch(void) {
  ldmc_classifier_config cfg;
  ldmc_classifier_config_default(&cfg);
  cfg.batch = B;
  ldmc_graph *g = NULL, *lg = NULL, *gg = NULL;
  CHECK_MSG(ldmc_classifier_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_classifier_train_build(&cfg, &lg) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_grad_opts go = {.output = "loss", .seed = LDMC_GRAD_SCALAR, .wrt_regex = "^(conv|fc)"};
  if (lg) CHECK_MSG(ldmc_grad(lg, &go, &gg) == LDMC_OK, "%s", ldmc_last_error());
  if (!g || !gg) {
    ldmc_graph_free(g);
    ldmc_graph_free(lg);
    return;
  }
  ldmc_tensor_set w = {0}, data = {0}, fwd_in = {0}, loss_in = {0}, ref = {0};
  CHECK(ldmc_weights_init_random(g, ldmc_classifier_input_names, 1, 21, &w) == LDMC_OK);
  make_data(&data, &cfg);
  CHECK(ldmc_weights_bind(&w, &(ldmc_tensor_set){0}, &fwd_in) == LDMC_OK && add_view(&fwd_in, &data.items[0]) == LDMC_OK);
  CHECK(ldmc_weights_bind(&w, &data, &loss_in) == LDMC_OK);
  char wpath[128], ipath[128], rpath[512], cmd[1024];
  snprintf(wpath, sizeof wpath, "%s/weights.safetensors", g_dir);
  snprintf(ipath, sizeof ipath, "%s/inputs.safetensors", g_dir);
  snprintf(rpath, sizeof rpath, "%s/ref.safetensors", g_dir);
  CHECK_MSG(ldmc_safetensors_save(wpath, &w, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_safetensors_save(ipath, &data, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/classifier_ref.py --weights %s --inputs %s --out %s",
           getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..", wpath, ipath, rpath);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "torch reference failed: %s", cmd);
  if (rc == 0) CHECK(ldmc_safetensors_load(rpath, &ref) == LDMC_OK);
  const char *backends[2] = {"interp", "llvm-cpu"};
  for (int k = 0; k < 2 && rc == 0; k++) {
    ldmc_tensor_set out = {0}, gout = {0};
    CHECK_MSG(run_on(backends[k], g, &fwd_in, &out) == LDMC_OK, "%s: %s", backends[k], ldmc_last_error());
    compare(backends[k], &out, &ref, "logits", 5e-6);
    compare(backends[k], &out, &ref, "features", 5e-6);
    CHECK_MSG(run_on(backends[k], gg, &loss_in, &gout) == LDMC_OK, "%s grad: %s", backends[k], ldmc_last_error());
    compare(backends[k], &gout, &ref, "loss", 1e-5);
    const ldmc_tensor *c = ldmc_tensor_set_find(&gout, "correct"), *rc_ = ldmc_tensor_set_find(&ref, "correct");
    CHECK(c && rc_ && ldmc_tensor_get(c, 0) == ldmc_tensor_get(rc_, 0));
    int n_grads = 0;
    for (int32_t i = 0; i < w.n; i++) {
      char name[128];
      snprintf(name, sizeof name, "grad.%s", w.items[i].name);
      compare(backends[k], &gout, &ref, name, 5e-6);
      n_grads++;
    }
    CHECK(n_grads == 10);
    ldmc_tensor_set_free(&out);
    ldmc_tensor_set_free(&gout);
  }
  ldmc_tensor_set_free(&ref);
  ldmc_tensor_set_free(&fwd_in);
  ldmc_tensor_set_free(&loss_in);
  ldmc_tensor_set_free(&data);
  ldmc_tensor_set_free(&w);
  ldmc_graph_free(gg);
  ldmc_graph_free(lg);
  ldmc_graph_free(g);
}

/* ---- 3: the training step ---- */
static void test_train_step(void) {
  ldmc_classifier_config cfg;
  ldmc_classifier_config_default(&cfg);
  cfg.batch = B;
  ldmc_graph *g = NULL, *lg = NULL, *step = NULL;
  CHECK(ldmc_classifier_build(&cfg, &g) == LDMC_OK);
  CHECK(ldmc_classifier_train_build(&cfg, &lg) == LDMC_OK);
  CHECK_MSG(ldmc_classifier_train_step_build(&cfg, NULL, &step) == LDMC_OK, "%s", ldmc_last_error());
  if (!g || !lg || !step) {
    ldmc_graph_free(g);
    ldmc_graph_free(lg);
    return;
  }
  ldmc_model_stats ms;
  CHECK(ldmc_stats_compute(g, ldmc_classifier_input_names, 1, &ms) == LDMC_OK);
  /* 32*9+32 + 64*32*9+64 + 128*64*9+128 + 128*2048+128 + 10*128+10 */
  printf("classifier: default config: %lld tensors, %lld parameters, %.1f MFLOPs (multiply-add) per image\n",
         (long long)ms.param_tensors, (long long)ms.params, (double)ms.mac_flops / B / 1e6);
  CHECK(ms.params == 320 + 18496 + 73856 + 262272 + 1290 && ms.param_tensors == 10);
  CHECK(strcmp(step->name, "classifier.train_step") == 0 && step->n_outputs == 2 + 3 * 10);
  CHECK(strcmp(step->output_names[0], "loss") == 0 && strcmp(step->output_names[1], "grad_norm") == 0);
  int32_t np = ldmc_graph_num_params(step);
  CHECK(np == 4 + 3 * 10);
  ldmc_tensor_set w = {0}, data = {0}, lin = {0}, lout = {0};
  CHECK(ldmc_weights_init_random(g, ldmc_classifier_input_names, 1, 21, &w) == LDMC_OK);
  make_data(&data, &cfg);
  CHECK(ldmc_weights_bind(&w, &data, &lin) == LDMC_OK);
  CHECK(run_on("interp", lg, &lin, &lout) == LDMC_OK);
  const ldmc_tensor *l0 = ldmc_tensor_set_find(&lout, "loss");
  double loss0 = l0 ? ldmc_tensor_get(l0, 0) : NAN;
  ldmc_tensor *in = calloc((size_t)np, sizeof *in), *outs = calloc((size_t)step->n_outputs, sizeof *outs);
  int32_t *pairs = malloc((size_t)step->n_outputs * sizeof *pairs);
  CHECK(ldmc_train_step_state_pairs(step, pairs) == LDMC_OK);
  for (int32_t k = 0; k < np; k++) {
    const ldmc_node *p = &step->nodes[ldmc_graph_param_node(step, k)];
    const ldmc_tensor *src = ldmc_tensor_set_find(&w, p->attrs.name);
    if (!src) src = ldmc_tensor_set_find(&data, p->attrs.name);
    CHECK(ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape) == LDMC_OK);
    if (src) memcpy(in[k].data, src->data, src->nbytes);
    else if (strcmp(p->attrs.name, "lr") == 0) ldmc_tensor_set_elem(&in[k], 0, 1e-3);
    else CHECK(strncmp(p->attrs.name, "adam_", 5) == 0 || strcmp(p->attrs.name, "step") == 0);
  }
  ldmc_executable *e = NULL;
  CHECK_MSG(ldmc_backend_find("llvm-cpu")->compile(step, &(ldmc_compile_opts){.threads = 2}, &e) == LDMC_OK, "%s",
            ldmc_last_error());
  double losses[5] = {0};
  for (int s = 0; s < 5 && e; s++) {
    for (int32_t k = 0; k < np; k++)
      if (strcmp(in[k].name, "step") == 0) ldmc_tensor_set_elem(&in[k], 0, s + 1);
    CHECK_MSG(ldmc_executable_run(e, in, np, outs, step->n_outputs) == LDMC_OK, "%s", ldmc_last_error());
    losses[s] = ldmc_tensor_get(&outs[0], 0);
    for (int32_t o = 0; o < step->n_outputs; o++) /* the new state becomes the next input */
      if (pairs[o] >= 0) {
        ldmc_tensor t = in[pairs[o]];
        in[pairs[o]] = outs[o];
        outs[o] = t;
      }
    for (int32_t o = 0; o < step->n_outputs; o++) ldmc_tensor_release(&outs[o]); /* run() allocates them anew */
  }
  printf("classifier: AdamW (lr 1e-3) on one batch, llvm-cpu: loss %.5f %.5f %.5f %.5f %.5f (loss graph %.5f)\n",
         losses[0], losses[1], losses[2], losses[3], losses[4], loss0);
  CHECK_NEAR(losses[0], loss0, 1e-5 * fmax(1.0, fabs(loss0)));
  CHECK_MSG(losses[4] < losses[0] - 0.05, "loss did not fall: %g -> %g", losses[0], losses[4]);
  ldmc_executable_free(e);
  for (int32_t k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
  for (int32_t o = 0; o < step->n_outputs; o++) ldmc_tensor_release(&outs[o]);
  free(in);
  free(outs);
  free(pairs);
  ldmc_tensor_set_free(&lout);
  ldmc_tensor_set_free(&lin);
  ldmc_tensor_set_free(&data);
  ldmc_tensor_set_free(&w);
  ldmc_graph_free(step);
  ldmc_graph_free(lg);
  ldmc_graph_free(g);
  /* wrong step options */
  ldmc_train_opts o = {.loss = "correct"};
  CHECK(ldmc_classifier_train_step_build(&cfg, &o, &step) == LDMC_ERR_INVALID && step == NULL);
  o = (ldmc_train_opts){.n_data_params = 1};
  CHECK(ldmc_classifier_train_step_build(&cfg, &o, &step) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "2 data"));
}

/* ---- 4: config errors ---- */
static void test_config_errors(void) {
  ldmc_classifier_config cfg;
  ldmc_graph *g = NULL;
  ldmc_classifier_config_default(&cfg);
  cfg.image_size = 28;
  CHECK(ldmc_classifier_build(&cfg, &g) == LDMC_ERR_INVALID && g == NULL && strstr(ldmc_last_error(), "image_size 28"));
  ldmc_classifier_config_default(&cfg);
  cfg.widths[1] = 0;
  CHECK(ldmc_classifier_build(&cfg, &g) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "widths[1]"));
  ldmc_classifier_config_default(&cfg);
  cfg.n_stages = 7;
  CHECK(ldmc_classifier_train_build(&cfg, &g) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "n_stages"));
  ldmc_classifier_config_default(&cfg);
  cfg.batch = 0;
  CHECK(ldmc_classifier_build(&cfg, &g) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "batch"));
  CHECK(ldmc_classifier_build(NULL, &g) == LDMC_ERR_INVALID);
}

int main(void) {
  test_cross_entropy();
  if (system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    printf("SKIP torch comparison: /usr/bin/python3 cannot import torch and numpy\n");
  } else {
    strcpy(g_dir, "/tmp/ldmc_classifier_XXXXXX");
    if (mkdtemp(g_dir)) {
      test_torch();
      char cmd[128];
      snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
      if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    } else {
      CHECK(!"mkdtemp");
    }
  }
  test_train_step();
  test_config_errors();
  return test_summary("test_classifier");
}
