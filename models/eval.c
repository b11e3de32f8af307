/* The classifier's model file, its features over image sets, sample files
 * (eval.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/weights_io.h"
#include "models/eval.h"
#include "runtime/dist.h"
#include "models/weights.h"
#include "runtime/checkpoint.h"

#define MAX_BATCH 65536

#ifndef LDMC_SOURCE_DIR
#define LDMC_SOURCE_DIR "."
#endif

const char *ldmc_default_classifier_path(void) {
  static char buf[4096];
  const char *e = getenv("LDMC_DEFAULT_CLASSIFIER");
  if (e && *e) return e;
  snprintf(buf, sizeof buf, "%s/%s", LDMC_SOURCE_DIR, LDMC_DEFAULT_CLASSIFIER_FILE);
  return buf;
}

/* ---- the classifier ---- */

void ldmc_classifier_model_free(ldmc_classifier_model *m) {
  if (!m) return;
  ldmc_tensor_set_free(&m->weights);
  memset(m, 0, sizeof *m);
}

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  if (!s || !*s) return false;
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* "32,64,128" -> widths; false on anything else */
static bool parse_widths(const char *s, ldmc_classifier_config *cfg) {
  int n = 0;
  while (s && *s) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < 1 || v > (1 << 20) || n >= LDMC_CLASSIFIER_MAX_STAGES || (*end && *end != ','))
      return false;
    cfg->widths[n++] = (int)v;
    s = *end ? end + 1 : end;
    if (*end && !*s) return false;
  }
  cfg->n_stages = n;
  return n > 0;
}

static ldmc_status config_of(const ldmc_checkpoint *ck, ldmc_classifier_config *cfg) {
  const char *model = ldmc_checkpoint_config(ck, "model");
  char q[96];
  if (!model || strcmp(model, "classifier") != 0)
    return ldmc_error(LDMC_ERR_INVALID, "not a classifier model file (its config has model = %s)",
                      model ? ldmc_quote(model, q, sizeof q) : "none");
  ldmc_classifier_config_default(cfg);
  const char *widths = ldmc_checkpoint_config(ck, "widths");
  if (!widths) return ldmc_error(LDMC_ERR_INVALID, "its config lacks 'widths'");
  if (!parse_widths(widths, cfg))
    return ldmc_error(LDMC_ERR_INVALID, "config widths = '%s' is not a list of 1 to %d widths",
                      ldmc_quote(widths, q, sizeof q), LDMC_CLASSIFIER_MAX_STAGES);
  static const char *const keys[4] = {"features", "classes", "in_channels", "image_size"}; /* the last two optional */
  int64_t v[4] = {cfg->features, cfg->classes, cfg->in_channels, cfg->image_size};
  for (int i = 0; i < 4; i++) {
    const char *s = ldmc_checkpoint_config(ck, keys[i]);
    if (!s && i < 2) return ldmc_error(LDMC_ERR_INVALID, "its config lacks '%s'", keys[i]);
    if (s && !parse_int(s, 1, 1 << 20, &v[i]))
      return ldmc_error(LDMC_ERR_INVALID, "config %s = '%s' is not an integer in [1, 1048576]", keys[i],
                        ldmc_quote(s, q, sizeof q));
  }
  cfg->features = (int)v[0], cfg->classes = (int)v[1], cfg->in_channels = (int)v[2], cfg->image_size = v[3];
  return ldmc_classifier_config_check(cfg);
}

ldmc_status ldmc_classifier_model_load(const char *path, ldmc_classifier_model *out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "classifier: out is NULL");
  memset(out, 0, sizeof *out);
  if (!path) return ldmc_error(LDMC_ERR_INVALID, "classifier: no path");
  ldmc_checkpoint *ck = NULL;
  LDMC_TRY(ldmc_checkpoint_read(path, &ck));
  ldmc_graph *g = NULL;
  ldmc_status st = config_of(ck, &out->cfg);
  if (st == LDMC_OK) st = ldmc_classifier_build(&out->cfg, &g);
  for (int32_t i = 0; st == LDMC_OK && i < ldmc_checkpoint_num_tensors(ck); i++) {
    ldmc_checkpoint_role role;
    const ldmc_tensor *t = ldmc_checkpoint_tensor_at(ck, i, &role, NULL);
    if (role != LDMC_CKPT_PARAM) continue; /* a training checkpoint's moments and EMA */
    if (t->dtype != LDMC_F32 && t->dtype != LDMC_BF16 && t->dtype != LDMC_F16) {
      st = ldmc_error(LDMC_ERR_INVALID, "tensor '%s' is %s; weights are f32, bf16 or f16", t->name,
                      ldmc_dtype_name(t->dtype));
      break;
    }
    ldmc_tensor c;
    st = ldmc_tensor_alloc(&c, t->name, LDMC_F32, &t->shape);
    if (st != LDMC_OK) break;
    for (int64_t j = 0; j < (int64_t)(c.nbytes / 4); j++) ((float *)c.data)[j] = (float)ldmc_tensor_get(t, j);
    st = ldmc_tensor_set_add(&out->weights, &c);
    if (st != LDMC_OK) ldmc_tensor_release(&c);
  }
  if (st == LDMC_OK) st = ldmc_weights_check(g, ldmc_classifier_input_names, LDMC_CLASSIFIER_N_INPUTS, &out->weights);
  if (st == LDMC_OK) out->step = ldmc_checkpoint_step(ck);
  ldmc_graph_free(g);
  ldmc_checkpoint_free(ck);
  if (st != LDMC_OK) {
    ldmc_error_prefix("%s: ", path);
    ldmc_classifier_model_free(out);
  }
  return st;
}

/* ---- features ---- */

struct ldmc_feature_extractor {
  ldmc_graph *g;
  ldmc_executable *exe;
  ldmc_tensor *inputs; /* [0]: the batch's images (owned); then views of the weights */
  int32_t np, out_logits, out_features;
  int64_t batch, image; /* floats per image */
  int32_t d, classes;
};

void ldmc_features_free(ldmc_features *f) {
  if (!f) return;
  free(f->features);
  free(f->logits);
  memset(f, 0, sizeof *f);
}

void ldmc_feature_extractor_free(ldmc_feature_extractor *x) {
  if (!x) return;
  ldmc_executable_free(x->exe);
  if (x->inputs) ldmc_tensor_release(&x->inputs[0]);
  free(x->inputs);
  ldmc_graph_free(x->g);
  free(x);
}

int64_t ldmc_feature_extractor_batch(const ldmc_feature_extractor *x) { return x ? x->batch : 0; }

ldmc_status ldmc_feature_extractor_new(const ldmc_classifier_model *m, int64_t batch, const ldmc_backend_i *be,
                                       const ldmc_compile_opts *co, ldmc_feature_extractor **out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "features: out is NULL");
  *out = NULL;
  if (!m || !be) return ldmc_error(LDMC_ERR_INVALID, "features: no classifier or backend");
  if (batch < 1 || batch > MAX_BATCH)
    return ldmc_error(LDMC_ERR_INVALID, "features: batch %lld must be in [1, %d]", (long long)batch, MAX_BATCH);
  ldmc_feature_extractor *x = calloc(1, sizeof *x);
  if (!x) return ldmc_error(LDMC_ERR_NOMEM, "features: out of memory");
  ldmc_classifier_config cfg = m->cfg;
  cfg.batch = batch;
  x->batch = batch;
  x->image = (int64_t)cfg.in_channels * cfg.image_size * cfg.image_size;
  x->d = cfg.features, x->classes = cfg.classes;
  x->out_logits = x->out_features = -1;
  ldmc_status st = ldmc_classifier_build(&cfg, &x->g);
  if (st == LDMC_OK) {
    x->np = ldmc_graph_num_params(x->g);
    x->inputs = calloc((size_t)x->np, sizeof *x->inputs);
    if (!x->inputs) st = ldmc_error(LDMC_ERR_NOMEM, "features: out of memory");
  }
  for (int32_t o = 0; st == LDMC_OK && o < x->g->n_outputs; o++) {
    if (!strcmp(x->g->output_names[o], "logits")) x->out_logits = o;
    if (!strcmp(x->g->output_names[o], "features")) x->out_features = o;
  }
  for (int32_t k = 0; st == LDMC_OK && k < x->np; k++) {
    const ldmc_node *p = &x->g->nodes[ldmc_graph_param_node(x->g, k)];
    if (k == 0) {
      st = ldmc_tensor_alloc(&x->inputs[0], p->attrs.name, p->dtype, &p->shape);
      continue;
    }
    const ldmc_tensor *w = ldmc_tensor_set_find(&m->weights, p->attrs.name);
    if (!w || w->dtype != p->dtype || !ldmc_shape_equal(&w->shape, &p->shape)) {
      st = ldmc_error(LDMC_ERR_INVALID, "features: the classifier has no f32 weight '%s' of the graph's shape",
                      p->attrs.name);
      break;
    }
    x->inputs[k] = *w;
    x->inputs[k].owns_data = false;
  }
  if (st == LDMC_OK && (x->out_logits < 0 || x->out_features < 0))
    st = ldmc_error(LDMC_ERR_INTERNAL, "features: the classifier graph lacks logits or features");
  if (st == LDMC_OK) {
    ldmc_compile_opts c = co ? *co : (ldmc_compile_opts){0};
    c.params_are_weights = true; /* the same weights every batch: packed once */
    c.n_activation_params = 1;
    c.donate = NULL;
    st = be->compile(x->g, &c, &x->exe);
    if (st != LDMC_OK) ldmc_error_prefix("compiling the classifier on %s: ", be->name);
  }
  if (st != LDMC_OK) {
    ldmc_feature_extractor_free(x);
    return st;
  }
  *out = x;
  return LDMC_OK;
}

ldmc_status ldmc_feature_extractor_run(ldmc_feature_extractor *x, int64_t n, ldmc_image_fn image, void *ctx,
                                       ldmc_features *out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "features: out is NULL");
  memset(out, 0, sizeof *out);
  if (!x || !image) return ldmc_error(LDMC_ERR_INVALID, "features: no extractor or image source");
  if (n < 1) return ldmc_error(LDMC_ERR_INVALID, "features: %lld images; need at least 1", (long long)n);
  out->features = malloc((size_t)n * (size_t)x->d * sizeof(float));
  out->logits = malloc((size_t)n * (size_t)x->classes * sizeof(float));
  if (!out->features || !out->logits) {
    ldmc_features_free(out);
    return ldmc_error(LDMC_ERR_NOMEM, "features: out of memory for %lld images", (long long)n);
  }
  out->n = n, out->d = x->d, out->classes = x->classes;
  float *im = x->inputs[0].data;
  ldmc_tensor outs[2] = {{0}};
  ldmc_status st = LDMC_OK;
  /* under mpirun, batch k runs on rank k mod N and the rest stays 0 there; the sum over
   * the ranks then holds every batch's figures exactly as one process computes them */
  int ranks = ldmc_dist_size(), rank = ldmc_dist_rank();
  if (ranks > 1) {
    memset(out->features, 0, (size_t)n * (size_t)x->d * sizeof(float));
    memset(out->logits, 0, (size_t)n * (size_t)x->classes * sizeof(float));
  }
  for (int64_t b0 = 0; b0 < n && st == LDMC_OK; b0 += x->batch) {
    int64_t rows = n - b0 < x->batch ? n - b0 : x->batch;
    if ((b0 / x->batch) % ranks != rank) continue;
    for (int64_t r = 0; r < rows; r++) image(ctx, b0 + r, im + r * x->image);
    for (int64_t i = rows * x->image; i < x->batch * x->image; i++) im[i] = -1.0f;
    st = ldmc_executable_run(x->exe, x->inputs, x->np, outs, 2);
    if (st == LDMC_OK) {
      memcpy(out->logits + b0 * x->classes, outs[x->out_logits].data, (size_t)(rows * x->classes) * sizeof(float));
      memcpy(out->features + b0 * x->d, outs[x->out_features].data, (size_t)(rows * x->d) * sizeof(float));
    }
    ldmc_tensor_release(&outs[0]), ldmc_tensor_release(&outs[1]); /* each run allocates them */
  }
  if (ranks > 1) {
    st = ldmc_dist_agree(st, "the classifier's features");
    if (st == LDMC_OK) st = ldmc_dist_allreduce_f32(out->features, (size_t)n * (size_t)x->d, "the features");
    if (st == LDMC_OK) st = ldmc_dist_allreduce_f32(out->logits, (size_t)n * (size_t)x->classes, "the logits");
  }
  if (st != LDMC_OK) {
    ldmc_error_prefix("running the classifier: ");
    ldmc_features_free(out);
  }
  return st;
}

typedef struct images_ctx {
  const float *images;
  int64_t image;
} images_ctx;

static void image_from_array(void *ctx, int64_t i, float *out) {
  const images_ctx *c = ctx;
  memcpy(out, c->images + i * c->image, (size_t)c->image * sizeof(float));
}

ldmc_status ldmc_features_of_images(ldmc_feature_extractor *x, const float *images, int64_t n, ldmc_features *out) {
  if (!x || !images) return ldmc_error(LDMC_ERR_INVALID, "features: no extractor or images");
  images_ctx c = {images, x->image};
  return ldmc_feature_extractor_run(x, n, image_from_array, &c, out);
}

static void image_from_fmnist(void *ctx, int64_t i, float *out) { ldmc_fmnist_image_f32(ctx, i, out); }

ldmc_status ldmc_features_of_fmnist(ldmc_feature_extractor *x, const ldmc_fmnist *d, int64_t n, ldmc_features *out) {
  if (!x || !d) return ldmc_error(LDMC_ERR_INVALID, "features: no extractor or dataset");
  if (x->image != LDMC_FMNIST_SIZE * LDMC_FMNIST_SIZE)
    return ldmc_error(LDMC_ERR_INVALID, "features: the classifier takes %lld values per image, Fashion-MNIST has 1x%dx%d",
                      (long long)x->image, LDMC_FMNIST_SIZE, LDMC_FMNIST_SIZE);
  if (n > ldmc_fmnist_count(d))
    return ldmc_error(LDMC_ERR_INVALID, "features: %lld images asked of a split of %lld", (long long)n,
                      (long long)ldmc_fmnist_count(d));
  return ldmc_feature_extractor_run(x, n, image_from_fmnist, (void *)d, out);
}

/* ---- sample files ---- */

void ldmc_sample_set_free(ldmc_sample_set *s) {
  if (!s) return;
  free(s->images);
  free(s->labels);
  memset(s, 0, sizeof *s);
}

static ldmc_status load_samples(const ldmc_tensor_set *ts, const ldmc_classifier_config *cfg, int64_t limit,
                                ldmc_sample_set *out) {
  const ldmc_tensor *im = ldmc_tensor_set_find(ts, "images"), *lb = ldmc_tensor_set_find(ts, "labels");
  if (!im) return ldmc_error(LDMC_ERR_INVALID, "no tensor 'images' (expected f32[N,%d,%lld,%lld])", cfg->in_channels,
                             (long long)cfg->image_size, (long long)cfg->image_size);
  const int64_t S = cfg->image_size;
  const bool is_float = im->dtype == LDMC_F32 || im->dtype == LDMC_F16 || im->dtype == LDMC_BF16 || im->dtype == LDMC_F64;
  if (im->raw_dtype[0] || !is_float)
    return ldmc_error(LDMC_ERR_INVALID, "tensor 'images' is %s; expected a float type (f32)",
                      im->raw_dtype[0] ? im->raw_dtype : ldmc_dtype_name(im->dtype));
  if (im->shape.rank != 4 || im->shape.dims[1] != cfg->in_channels || im->shape.dims[2] != S || im->shape.dims[3] != S ||
      im->shape.dims[0] < 1) {
    char got[128] = "";
    size_t len = 0;
    for (int i = 0; i < im->shape.rank && len < sizeof got - 24; i++)
      len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", i ? "," : "", (long long)im->shape.dims[i]);
    return ldmc_error(LDMC_ERR_INVALID, "tensor 'images' has shape [%s]; the classifier takes [N,%d,%lld,%lld], N >= 1",
                      got, cfg->in_channels, (long long)S, (long long)S);
  }
  int64_t n = im->shape.dims[0];
  if (lb) {
    if (lb->raw_dtype[0] || (lb->dtype != LDMC_I64 && lb->dtype != LDMC_I32))
      return ldmc_error(LDMC_ERR_INVALID, "tensor 'labels' is %s; expected i64 (or i32)",
                        lb->raw_dtype[0] ? lb->raw_dtype : ldmc_dtype_name(lb->dtype));
    if (lb->shape.rank != 1 || lb->shape.dims[0] != n)
      return ldmc_error(LDMC_ERR_INVALID, "tensor 'labels' must have shape [%lld], one per image", (long long)n);
  }
  if (limit > 0 && limit < n) n = limit;
  const int64_t per = (int64_t)cfg->in_channels * S * S;
  out->n = n;
  out->images = malloc((size_t)(n * per) * sizeof(float));
  if (lb) out->labels = malloc((size_t)n * sizeof *out->labels);
  if (!out->images || (lb && !out->labels)) return ldmc_error(LDMC_ERR_NOMEM, "out of memory for %lld images", (long long)n);
  for (int64_t i = 0; i < n * per; i++) {
    double v = ldmc_tensor_get(im, i);
    if (!isfinite(v))
      return ldmc_error(LDMC_ERR_INVALID, "image %lld of tensor 'images' has a non-finite pixel (%g)",
                        (long long)(i / per), v);
    out->images[i] = (float)v;
  }
  for (int64_t i = 0; lb && i < n; i++) out->labels[i] = (int64_t)ldmc_tensor_get(lb, i);
  return LDMC_OK;
}

ldmc_status ldmc_sample_set_load(const char *path, const ldmc_classifier_config *cfg, int64_t limit,
                                 ldmc_sample_set *out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "samples: out is NULL");
  memset(out, 0, sizeof *out);
  if (!path || !cfg) return ldmc_error(LDMC_ERR_INVALID, "samples: no path or classifier config");
  ldmc_tensor_set ts = {0};
  LDMC_TRY(ldmc_safetensors_load(path, &ts));
  ldmc_status st = load_samples(&ts, cfg, limit, out);
  ldmc_tensor_set_free(&ts);
  if (st != LDMC_OK) {
    ldmc_error_prefix("%s: ", path);
    ldmc_sample_set_free(out);
  }
  return st;
}
