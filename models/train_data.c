/* The training data and validation of each model (train_data.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/superres.h"
#include "models/train_data.h"
#include "runtime/dist.h"
#include "runtime/fashion_mnist.h"

#define IMG (LDMC_FMNIST_SIZE * LDMC_FMNIST_SIZE)

typedef enum { DATA_CLASSIFIER, DATA_VAE, DATA_LDM } data_kind;

struct ldmc_model_data {
  data_kind kind;
  ldmc_fmnist *split[2]; /* train, test */
  ldmc_fmnist_batcher *batcher;
  int64_t B;             /* rows this process trains per step */
  int64_t G, first;      /* rows of the global batch; this shard's first */
  uint64_t seed;
  int32_t *idx, *labels; /* per global batch row */
  float *images;         /* a global batch's images (sharded classifier and autoencoder) */
  ldmc_train_session *s;
  double metric;
  /* validation: a graph over the test split, its weights viewing the session's */
  ldmc_graph *val_graph;
  ldmc_executable *val_exe;
  ldmc_tensor *val_in;
  int32_t val_np, val_data;
  int64_t val_B, val_batches;
  double kl_weight;
  /* latent diffusion: every image's posterior, per split */
  float *mean[2], *logvar[2];
  float *cond[2];          /* super-resolution: every image's cond latent, per split (NULL: none) */
  int64_t lat, cond_lat;   /* floats per image */
  int32_t n_data;          /* the loss graph's data inputs */
  int tokens;
  int32_t *token_table; /* [10][tokens]: the class prompts' ids */
};

void ldmc_model_data_free(ldmc_model_data *d) {
  if (!d) return;
  ldmc_fmnist_batcher_free(d->batcher);
  for (int i = 0; i < 2; i++) {
    ldmc_fmnist_free(d->split[i]);
    free(d->mean[i]);
    free(d->logvar[i]);
    free(d->cond[i]);
  }
  ldmc_executable_free(d->val_exe);
  for (int32_t k = 0; d->val_in && k < d->val_data; k++) ldmc_tensor_release(&d->val_in[k]);
  free(d->val_in);
  ldmc_graph_free(d->val_graph);
  free(d->idx), free(d->labels), free(d->token_table), free(d->images);
  free(d);
}

static int64_t key_of(uint64_t seed, int64_t step) { return (int64_t)((seed << 20) + (uint64_t)step); }

/* The largest divisor of n that is at most cap: validation batches cover a split exactly. */
static int64_t divisor_at_most(int64_t n, int64_t cap) {
  for (int64_t b = cap < n ? cap : n; b > 1; b--)
    if (n % b == 0) return b;
  return 1;
}

static ldmc_status open_splits(ldmc_model_data *d, const ldmc_data_opts *o, int64_t batch) {
  for (int i = 0; i < 2; i++) {
    LDMC_TRY(ldmc_fmnist_open(o->dir, i ? LDMC_FMNIST_TEST : LDMC_FMNIST_TRAIN, &d->split[i]));
    ldmc_fmnist_limit(d->split[i], o->limit);
  }
  int64_t ranks = o->shard_ranks > 1 ? o->shard_ranks : 1, G = batch * ranks;
  if (ldmc_fmnist_count(d->split[0]) < G)
    return ldmc_error(LDMC_ERR_INVALID, "batch %lld is larger than the %lld training images", (long long)G,
                      (long long)ldmc_fmnist_count(d->split[0]));
  d->B = batch, d->G = G, d->first = ranks > 1 ? batch * o->shard_rank : 0;
  d->seed = o->seed;
  d->idx = malloc((size_t)G * sizeof *d->idx);
  d->labels = malloc((size_t)G * sizeof *d->labels);
  if (ranks > 1) d->images = malloc((size_t)(G * IMG) * sizeof *d->images);
  if (!d->idx || !d->labels || (ranks > 1 && !d->images)) return ldmc_error(LDMC_ERR_NOMEM, "training data: out of memory");
  return ldmc_fmnist_batcher_new(d->split[0], (int32_t)G, LDMC_FMNIST_SHUFFLE, o->seed, &d->batcher);
}

/* The next global batch; this shard's rows into images (B x IMG) and labels (B). */
static ldmc_status next_shard(ldmc_model_data *d, float *images, int32_t *labels) {
  if (d->G == d->B) return ldmc_fmnist_batcher_next(d->batcher, images, labels, NULL);
  LDMC_TRY(ldmc_fmnist_batcher_next(d->batcher, d->images, d->labels, NULL));
  memcpy(images, d->images + d->first * IMG, (size_t)(d->B * IMG) * sizeof *images);
  if (labels) memcpy(labels, d->labels + d->first, (size_t)d->B * sizeof *labels);
  return LDMC_OK;
}

/* A validation graph g (taking ownership): its first n_data inputs owned
 * here, the rest viewing the session's weights (in place: not compiled as
 * weights, so updates between runs are seen). */
static ldmc_status setup_val(ldmc_model_data *d, ldmc_graph *g, int32_t n_data, bool ema, const ldmc_data_opts *o) {
  d->val_graph = g;
  d->val_np = ldmc_graph_num_params(g);
  d->val_data = n_data;
  d->val_in = calloc((size_t)d->val_np, sizeof *d->val_in);
  if (!d->val_in) return ldmc_error(LDMC_ERR_NOMEM, "validation: out of memory");
  for (int32_t k = 0; k < n_data; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    LDMC_TRY(ldmc_tensor_alloc(&d->val_in[k], p->attrs.name, p->dtype, &p->shape));
  }
  LDMC_TRY(ldmc_train_session_views(d->s, g, n_data, ema, d->val_in));
  ldmc_compile_opts c = o->co;
  c.donate = NULL;
  c.params_are_weights = false;
  ldmc_status st = o->be->compile(g, &c, &d->val_exe);
  if (st != LDMC_OK) ldmc_error_prefix("compiling the validation graph: ");
  return st;
}

static int get_state(void *ctx, int64_t *v) {
  ldmc_fmnist_state s = ldmc_fmnist_batcher_state(((ldmc_model_data *)ctx)->batcher);
  v[0] = (int64_t)s.seed, v[1] = s.epoch, v[2] = s.position;
  return 3;
}

static ldmc_status set_state(void *ctx, const int64_t *v, int n) {
  if (n != 3) return ldmc_error(LDMC_ERR_FORMAT, "data-order state has %d values, not 3 (seed, epoch, position)", n);
  ldmc_fmnist_state s = {.seed = (uint64_t)v[0], .epoch = v[1], .position = v[2]};
  return ldmc_fmnist_batcher_set_state(((ldmc_model_data *)ctx)->batcher, &s);
}

/* ---- classifier ---- */
static ldmc_status cls_fill(void *ctx, int64_t step, ldmc_tensor *data) {
  (void)step;
  ldmc_model_data *d = ctx;
  return next_shard(d, data[0].data, data[1].data);
}

static ldmc_status cls_validate(void *ctx, const ldmc_tensor *inputs, double *loss) {
  (void)inputs;
  ldmc_model_data *d = ctx;
  const ldmc_fmnist *t = d->split[1];
  int64_t n = ldmc_fmnist_count(t), nb = n / d->val_B;
  double sum = 0, correct = 0;
  ldmc_tensor out[2] = {{0}};
  ldmc_status st = LDMC_OK;
  for (int64_t b = 0; b < nb && st == LDMC_OK; b++) {
    float *im = d->val_in[0].data;
    int32_t *lb = d->val_in[1].data;
    for (int64_t r = 0; r < d->val_B; r++) {
      ldmc_fmnist_image_f32(t, b * d->val_B + r, im + r * IMG);
      lb[r] = ldmc_fmnist_labels(t)[b * d->val_B + r];
    }
    st = ldmc_executable_run(d->val_exe, d->val_in, d->val_np, out, 2);
    if (st == LDMC_OK) sum += ldmc_tensor_get(&out[0], 0), correct += ldmc_tensor_get(&out[1], 0);
    ldmc_tensor_release(&out[0]), ldmc_tensor_release(&out[1]); /* a run may allocate them anew */
  }
  ldmc_tensor_release(&out[0]), ldmc_tensor_release(&out[1]);
  *loss = sum / (double)nb;
  d->metric = correct / (double)(nb * d->val_B);
  return st;
}

ldmc_status ldmc_classifier_data_new(const ldmc_classifier_config *cfg, const ldmc_data_opts *o, ldmc_train_session *s,
                                     ldmc_model_data **out, ldmc_train_source *src) {
  ldmc_model_data *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "training data: out of memory");
  d->kind = DATA_CLASSIFIER, d->s = s;
  ldmc_status st = open_splits(d, o, cfg->batch);
  ldmc_graph *g = NULL;
  if (st == LDMC_OK) {
    ldmc_classifier_config vc = *cfg;
    d->val_B = vc.batch = divisor_at_most(ldmc_fmnist_count(d->split[1]), 250);
    st = ldmc_classifier_train_build(&vc, &g);
  }
  if (st == LDMC_OK) st = setup_val(d, g, LDMC_CLASSIFIER_TRAIN_N_INPUTS, true, o);
  if (st != LDMC_OK) {
    if (!d->val_graph) ldmc_graph_free(g);
    ldmc_model_data_free(d);
    return st;
  }
  *src = (ldmc_train_source){.ctx = d, .fill = cls_fill, .get_state = get_state, .set_state = set_state,
                             .validate = cls_validate, .images_per_step = d->G, .metric_name = "accuracy",
                             .metric = &d->metric};
  *out = d;
  return LDMC_OK;
}

/* ---- autoencoder ---- */
static ldmc_status vae_fill(void *ctx, int64_t step, ldmc_tensor *data) {
  ldmc_model_data *d = ctx;
  LDMC_TRY(next_shard(d, data[0].data, d->G == d->B ? d->labels : NULL));
  ((int64_t *)data[1].data)[0] = key_of(d->seed, step);
  return LDMC_OK;
}

/* decode(mean) against the test images: MSE in [-1, 1] units, PSNR over
 * [0, 1] (MSE / 4); the loss as recon + kl_weight kl (deterministic). */
static ldmc_status vae_validate(void *ctx, const ldmc_tensor *inputs, double *loss) {
  (void)inputs;
  ldmc_model_data *d = ctx;
  const ldmc_fmnist *t = d->split[1];
  int64_t n = ldmc_fmnist_count(t), nb = n / d->val_B;
  double se = 0, kl = 0;
  ldmc_tensor out[3] = {{0}};
  ldmc_status st = LDMC_OK;
  for (int64_t b = 0; b < nb && st == LDMC_OK; b++) {
    float *im = d->val_in[0].data;
    for (int64_t r = 0; r < d->val_B; r++) ldmc_fmnist_image_f32(t, b * d->val_B + r, im + r * IMG);
    st = ldmc_executable_run(d->val_exe, d->val_in, d->val_np, out, 3);
    if (st != LDMC_OK) break;
    const float *y = out[0].data, *m = out[1].data, *lv = out[2].data;
    for (int64_t i = 0; i < d->val_B * IMG; i++) se += ((double)y[i] - im[i]) * ((double)y[i] - im[i]);
    int64_t nl = (int64_t)(out[1].nbytes / 4);
    for (int64_t i = 0; i < nl; i++)
      kl += 0.5 * ((double)m[i] * m[i] + exp((double)lv[i]) - 1 - (double)lv[i]);
    for (int i = 0; i < 3; i++) ldmc_tensor_release(&out[i]);
  }
  for (int i = 0; i < 3; i++) ldmc_tensor_release(&out[i]);
  double mse = se / (double)(nb * d->val_B * IMG);
  *loss = mse + d->kl_weight * kl / (double)(nb * d->val_B);
  d->metric = 10 * log10(1.0 / (mse / 4));
  return st;
}

ldmc_status ldmc_vae_data_new(const ldmc_vae_config *cfg, const ldmc_data_opts *o, ldmc_train_session *s,
                              ldmc_model_data **out, ldmc_train_source *src) {
  if (cfg->in_channels != 1 || cfg->height != LDMC_FMNIST_SIZE || cfg->width != LDMC_FMNIST_SIZE)
    return ldmc_error(LDMC_ERR_INVALID, "autoencoder: Fashion-MNIST needs 1 input channel at %dx%d", LDMC_FMNIST_SIZE,
                      LDMC_FMNIST_SIZE);
  ldmc_model_data *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "training data: out of memory");
  d->kind = DATA_VAE, d->s = s, d->kl_weight = cfg->kl_weight;
  ldmc_status st = open_splits(d, o, cfg->batch);
  ldmc_graph *g = NULL;
  if (st == LDMC_OK) {
    ldmc_vae_config vc = *cfg;
    d->val_B = vc.batch = divisor_at_most(ldmc_fmnist_count(d->split[1]), 250);
    st = ldmc_vae_build(&vc, &g);
  }
  if (st == LDMC_OK) st = setup_val(d, g, LDMC_VAE_N_INPUTS, true, o);
  if (st != LDMC_OK) {
    if (!d->val_graph) ldmc_graph_free(g);
    ldmc_model_data_free(d);
    return st;
  }
  *src = (ldmc_train_source){.ctx = d, .fill = vae_fill, .get_state = get_state, .set_state = set_state,
                             .validate = vae_validate, .images_per_step = d->G, .metric_name = "psnr",
                             .metric = &d->metric};
  *out = d;
  return LDMC_OK;
}

/* ---- encoding with a trained autoencoder ---- */
typedef struct encoder {
  ldmc_graph *g;
  ldmc_executable *e;
  ldmc_tensor *in;
  int32_t np;
  int64_t B, lat;
} encoder;

static void encoder_free(encoder *c) {
  ldmc_executable_free(c->e);
  if (c->in) ldmc_tensor_release(&c->in[0]);
  free(c->in);
  ldmc_graph_free(c->g);
}

static const ldmc_tensor *set_find(const ldmc_tensor_set *ws, const char *name) {
  for (int32_t i = 0; i < ws->n; i++)
    if (!strcmp(ws->items[i].name, name)) return &ws->items[i];
  return NULL;
}

static ldmc_status encoder_new(const ldmc_vae_config *cfg, const ldmc_tensor_set *ws, int64_t B, const ldmc_data_opts *o,
                               encoder *c) {
  memset(c, 0, sizeof *c);
  ldmc_vae_config vc = *cfg;
  vc.batch = c->B = B;
  int64_t ld[4];
  ldmc_vae_latent_dims(&vc, ld);
  c->lat = ld[1] * ld[2] * ld[3];
  LDMC_TRY(ldmc_vae_encoder_build(&vc, &c->g));
  c->np = ldmc_graph_num_params(c->g);
  c->in = calloc((size_t)c->np, sizeof *c->in);
  if (!c->in) return ldmc_error(LDMC_ERR_NOMEM, "encoder: out of memory");
  const ldmc_node *p0 = &c->g->nodes[ldmc_graph_param_node(c->g, 0)];
  LDMC_TRY(ldmc_tensor_alloc(&c->in[0], p0->attrs.name, p0->dtype, &p0->shape));
  for (int32_t k = 1; k < c->np; k++) {
    const ldmc_node *p = &c->g->nodes[ldmc_graph_param_node(c->g, k)];
    const ldmc_tensor *w = set_find(ws, p->attrs.name);
    if (!w || w->dtype != p->dtype || !ldmc_shape_equal(&w->shape, &p->shape))
      return ldmc_error(LDMC_ERR_INVALID, "autoencoder weights: '%s' %s", p->attrs.name,
                        w ? "has another type than the configuration's" : "is missing");
    c->in[k] = *w;
    c->in[k].owns_data = false;
  }
  ldmc_compile_opts co = o->co;
  co.donate = NULL;
  co.params_are_weights = true;
  co.n_activation_params = 1;
  ldmc_status st = o->be->compile(c->g, &co, &c->e);
  if (st != LDMC_OK) ldmc_error_prefix("compiling the autoencoder's encoder: ");
  return st;
}

/* Encodes images [first, first + n) of d into mean/logvar (n * lat floats each). */
static ldmc_status encode_split(encoder *c, const ldmc_fmnist *d, int64_t n, float *mean, float *logvar) {
  ldmc_tensor out[2] = {{0}};
  ldmc_status st = LDMC_OK;
  float *im = c->in[0].data;
  for (int64_t b0 = 0; b0 < n && st == LDMC_OK; b0 += c->B) {
    int64_t rows = n - b0 < c->B ? n - b0 : c->B;
    for (int64_t r = 0; r < c->B; r++) ldmc_fmnist_image_f32(d, b0 + (r < rows ? r : 0), im + r * IMG);
    st = ldmc_executable_run(c->e, c->in, c->np, out, 2);
    if (st != LDMC_OK) break;
    memcpy(mean + b0 * c->lat, out[0].data, (size_t)(rows * c->lat) * 4);
    memcpy(logvar + b0 * c->lat, out[1].data, (size_t)(rows * c->lat) * 4);
    ldmc_tensor_release(&out[0]), ldmc_tensor_release(&out[1]);
  }
  ldmc_tensor_release(&out[0]), ldmc_tensor_release(&out[1]);
  return st;
}

ldmc_status ldmc_vae_measure_scale(const ldmc_vae_config *cfg, const ldmc_tensor_set *ws, const ldmc_data_opts *o,
                                   int64_t n, double *scale) {
  ldmc_fmnist *d = NULL;
  LDMC_TRY(ldmc_fmnist_open(o->dir, LDMC_FMNIST_TRAIN, &d));
  ldmc_fmnist_limit(d, o->limit);
  if (n <= 0) n = 10000;
  if (n > ldmc_fmnist_count(d)) n = ldmc_fmnist_count(d);
  encoder c;
  ldmc_status st = encoder_new(cfg, ws, n < 250 ? n : 250, o, &c);
  float *m = NULL, *lv = NULL;
  if (st == LDMC_OK) {
    m = malloc((size_t)(n * c.lat) * 4), lv = malloc((size_t)(n * c.lat) * 4);
    st = m && lv ? encode_split(&c, d, n, m, lv) : ldmc_error(LDMC_ERR_NOMEM, "latent scale: out of memory");
  }
  if (st == LDMC_OK) {
    double s1 = 0, s2 = 0, ev = 0;
    int64_t total = n * c.lat;
    for (int64_t i = 0; i < total; i++) s1 += m[i], s2 += (double)m[i] * m[i], ev += exp((double)lv[i]);
    double mu = s1 / (double)total, var = s2 / (double)total - mu * mu + ev / (double)total;
    *scale = var > 0 ? 1 / sqrt(var) : NAN;
    if (!(var > 0)) st = ldmc_error(LDMC_ERR_INVALID, "latent scale: the latents have no variance");
  }
  free(m), free(lv);
  encoder_free(&c);
  ldmc_fmnist_free(d);
  return st;
}

/* ---- latent diffusion ---- */
static void ldm_rows(ldmc_model_data *d, int split, const int32_t *idx, const int32_t *labels, ldmc_tensor *data) {
  float *m = data[0].data, *lv = data[1].data;
  int32_t *tok = data[2].data;
  for (int64_t r = 0; r < d->B; r++) {
    int64_t i = idx[r] >= 0 ? idx[r] : 0;
    int lb = labels[r] >= 0 ? labels[r] : 0;
    memcpy(m + r * d->lat, d->mean[split] + i * d->lat, (size_t)d->lat * 4);
    memcpy(lv + r * d->lat, d->logvar[split] + i * d->lat, (size_t)d->lat * 4);
    memcpy(tok + r * d->tokens, d->token_table + lb * d->tokens, (size_t)d->tokens * 4);
    if (d->cond[split]) /* super-resolution: the fifth data input */
      memcpy((float *)data[4].data + r * d->cond_lat, d->cond[split] + i * d->cond_lat, (size_t)d->cond_lat * 4);
  }
}

static ldmc_status ldm_fill(void *ctx, int64_t step, ldmc_tensor *data) {
  ldmc_model_data *d = ctx;
  LDMC_TRY(ldmc_fmnist_batcher_next_indices(d->batcher, d->idx, d->labels, NULL));
  ldm_rows(d, 0, d->idx + d->first, d->labels + d->first, data);
  ((int64_t *)data[3].data)[0] = key_of(d->seed, step);
  return LDMC_OK;
}

static ldmc_status ldm_validate(void *ctx, const ldmc_tensor *inputs, double *loss) {
  (void)inputs;
  ldmc_model_data *d = ctx;
  /* batches of the global size, each rank its rows (the graph's noise is
   * that of those rows), the shard means averaged over the ranks */
  int64_t n = ldmc_fmnist_count(d->split[1]), nb = n / d->G;
  if (nb > d->val_batches) nb = d->val_batches;
  double sum = 0;
  ldmc_tensor out = {0};
  ldmc_status st = LDMC_OK;
  for (int64_t b = 0; b < nb && st == LDMC_OK; b++) {
    for (int64_t r = 0; r < d->B; r++) {
      d->idx[r] = (int32_t)(b * d->G + d->first + r);
      d->labels[r] = ldmc_fmnist_labels(d->split[1])[d->idx[r]];
    }
    ldm_rows(d, 1, d->idx, d->labels, d->val_in);
    ((int64_t *)d->val_in[3].data)[0] = ((int64_t)1 << 40) + b;
    st = ldmc_executable_run(d->val_exe, d->val_in, d->val_np, &out, 1);
    if (st == LDMC_OK) sum += ldmc_tensor_get(&out, 0);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&out);
  if (st == LDMC_OK && d->G != d->B) {
    st = ldmc_dist_allreduce_f64(&sum, 1, "the validation loss");
    sum /= (double)(d->G / d->B);
  }
  *loss = nb ? sum / (double)nb : NAN;
  return st;
}

/* Super-resolution: each split's cond latents, once (as the posteriors). */
static ldmc_status superres_latents(ldmc_model_data *d, const ldmc_graph *loss, const ldmc_vae_config *vcfg,
                                    const ldmc_tensor_set *ws, const ldmc_data_opts *o) {
  int32_t cp = ldmc_graph_find_param(loss, "cond_sample");
  bool has = cp >= 0 && ldmc_graph_param_node(loss, LDMC_LDM_N_DATA) == cp;
  if (o->superres <= 0 && cp < 0) return LDMC_OK;
  if (o->superres <= 0 || !has)
    return ldmc_error(LDMC_ERR_INVALID, "super-resolution: %s", o->superres > 0
                      ? "the loss graph has no cond_sample data input after key (a U-Net with cond_channels > 0)"
                      : "the loss graph has a cond_sample input, but no super-resolution factor is given");
  const ldmc_node *cn = &loss->nodes[cp];
  ldmc_superres_encoder *e = NULL;
  int64_t B = 250 < ldmc_fmnist_count(d->split[1]) ? 250 : ldmc_fmnist_count(d->split[1]);
  LDMC_TRY(ldmc_superres_encoder_new(vcfg, ws, o->latent_scale, o->superres, B, o->be, &o->co, &e));
  d->n_data = LDMC_LDM_N_DATA + 1;
  d->cond_lat = ldmc_superres_encoder_latent_size(e);
  ldmc_status st = LDMC_OK;
  if (cn->shape.rank != 4 || cn->shape.dims[1] * cn->shape.dims[2] * cn->shape.dims[3] != d->cond_lat)
    st = ldmc_error(LDMC_ERR_INVALID, "super-resolution: the autoencoder's latents (%lld per image) do not match the "
                    "U-Net's cond_sample", (long long)d->cond_lat);
  float *im = st == LDMC_OK ? malloc((size_t)(B * IMG) * sizeof *im) : NULL;
  if (st == LDMC_OK && !im) st = ldmc_error(LDMC_ERR_NOMEM, "super-resolution: out of memory");
  for (int i = 0; i < 2 && st == LDMC_OK; i++) {
    int64_t n = ldmc_fmnist_count(d->split[i]);
    d->cond[i] = malloc((size_t)((n ? n : 1) * d->cond_lat) * sizeof *d->cond[i]);
    if (!d->cond[i]) st = ldmc_error(LDMC_ERR_NOMEM, "super-resolution: out of memory");
    else fprintf(stderr, "encoding the %s split's %dx-pooled images (the super-resolution condition)\n",
                 i ? "test" : "training", o->superres);
    for (int64_t b0 = 0; b0 < n && st == LDMC_OK; b0 += B) {
      int64_t rows = n - b0 < B ? n - b0 : B;
      for (int64_t r = 0; r < rows; r++) ldmc_fmnist_image_f32(d->split[i], b0 + r, im + r * IMG);
      st = ldmc_superres_encode(e, im, rows, d->cond[i] + b0 * d->cond_lat);
    }
  }
  free(im);
  ldmc_superres_encoder_free(e);
  return st;
}

ldmc_status ldmc_ldm_data_new(const ldmc_graph *loss, const ldmc_vae_config *vcfg, const ldmc_tensor_set *ws,
                              int tokens, int64_t val_batches, const ldmc_data_opts *o, ldmc_train_session *s,
                              ldmc_model_data **out, ldmc_train_source *src) {
  const ldmc_node *m0 = &loss->nodes[ldmc_graph_param_node(loss, 0)];
  int64_t B = m0->shape.dims[0];
  ldmc_model_data *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "training data: out of memory");
  d->kind = DATA_LDM, d->s = s, d->tokens = tokens, d->val_batches = val_batches > 0 ? val_batches : 1;
  ldmc_status st = open_splits(d, o, B);
  d->token_table = malloc((size_t)(10 * tokens) * sizeof *d->token_table);
  if (st == LDMC_OK && !d->token_table) st = ldmc_error(LDMC_ERR_NOMEM, "training data: out of memory");
  for (int c = 0; c < 10 && st == LDMC_OK; c++) st = ldmc_tokenizer_encode(ldmc_class_prompt(c), tokens, d->token_table + c * tokens);
  encoder c = {0};
  if (st == LDMC_OK) st = encoder_new(vcfg, ws, 250 < ldmc_fmnist_count(d->split[1]) ? 250 : ldmc_fmnist_count(d->split[1]), o, &c);
  int64_t per = m0->shape.dims[1] * m0->shape.dims[2] * m0->shape.dims[3];
  if (st == LDMC_OK) {
    d->lat = c.lat;
    if (d->lat != per)
      st = ldmc_error(LDMC_ERR_INVALID, "the autoencoder's latents (%lld per image) do not match the U-Net's sample "
                      "(%lld per image)", (long long)d->lat, (long long)per);
  }
  for (int i = 0; i < 2 && st == LDMC_OK; i++) {
    int64_t n = ldmc_fmnist_count(d->split[i]);
    d->mean[i] = malloc((size_t)(n * d->lat) * 4), d->logvar[i] = malloc((size_t)(n * d->lat) * 4);
    if (!d->mean[i] || !d->logvar[i]) st = ldmc_error(LDMC_ERR_NOMEM, "latents: out of memory");
    else {
      fprintf(stderr, "encoding the %s split (%lld images) with the autoencoder\n", i ? "test" : "training",
              (long long)n);
      st = encode_split(&c, d->split[i], n, d->mean[i], d->logvar[i]);
    }
  }
  encoder_free(&c);
  d->n_data = LDMC_LDM_N_DATA;
  if (st == LDMC_OK) st = superres_latents(d, loss, vcfg, ws, o);
  ldmc_graph *vg = st == LDMC_OK ? ldmc_graph_clone(loss) : NULL;
  if (st == LDMC_OK && !vg) st = ldmc_error(LDMC_ERR_NOMEM, "validation: out of memory");
  if (st == LDMC_OK) st = setup_val(d, vg, d->n_data, true, o);
  if (st != LDMC_OK) {
    if (!d->val_graph) ldmc_graph_free(vg);
    ldmc_model_data_free(d);
    return st;
  }
  *src = (ldmc_train_source){.ctx = d, .fill = ldm_fill, .get_state = get_state, .set_state = set_state,
                             .validate = ldm_validate, .images_per_step = d->G};
  *out = d;
  return LDMC_OK;
}
