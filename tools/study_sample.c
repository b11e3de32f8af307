/* Sampling and scoring cells, in this process: a model is loaded once for
 * its consecutive cells, a sampler compiled once per (model, sampler, steps)
 * with the guidance rate as its input, the shared autoencoder's decoder and
 * the classifier compiled once, and the test split's reference features
 * computed once per study run. Each image i is prompted with class i mod 10
 * and keyed by i, so every width and rate sees the same noise. */
/* Paths: --out is at most STUDY_PATH - 300 bytes (cmd_study.c checks), so every path built from it fits. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/weights_io.h"
#include "models/eval.h"
#include "models/ldm_model.h"
#include "models/metrics.h"
#include "models/superres.h"
#include "models/text_encoder.h"
#include "tools/cli_target.h"
#include "tools/study.h"

#define STUDY_KEEP_IMAGES 20 /* images kept per cell for the grids: two per class */

struct study_sampling {
  const ldmc_backend_i *be;
  ldmc_compile_opts co;
  ldmc_ldm_model vae;         /* the shared autoencoder (its ldm file) */
  ldmc_executable *decoder;   /* latents / scale -> images, batch B */
  ldmc_graph *decoder_graph;
  int64_t B;
  ldmc_classifier_model cls;
  ldmc_feature_extractor *fx;
  ldmc_fmnist *test;
  ldmc_features ref;          /* the test split's features */
  /* the model of the last cell */
  char model_path[2 * STUDY_PATH];
  ldmc_ldm_model m;
  bool have_model;
  ldmc_tensor ctx_all;        /* the 10 class prompts' contexts, then the empty prompt's */
  double sample_s, eval_s, compile_s;
};

static int failf(char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s: %s", what, ldmc_last_error());
  return 1;
}

int study_sampling_new(const study_config *c, const char *dir, study_sampling **out, char *err, size_t errlen) {
  char cells[2 * STUDY_PATH];
  snprintf(cells, sizeof cells, "%s/cells", dir);
  if (mkdir(cells, 0777) != 0 && errno != EEXIST) return snprintf(err, errlen, "cannot create %s: %s", cells, strerror(errno)), 1;
  study_sampling *s = calloc(1, sizeof *s);
  if (!s) return snprintf(err, errlen, "out of memory"), 1;
  *out = s;
  ldmc_cli_target ct;
  if (ldmc_cli_target_parse("llvm-cpu", &ct) != LDMC_OK || !ct.be) return failf(err, errlen, "llvm-cpu");
  s->be = ct.be;
  s->co.threads = c->threads;
  s->B = c->sample_batch;
  double t0 = study_now();
  if (ldmc_ldm_model_load(c->vae, &s->vae) != LDMC_OK) return failf(err, errlen, "vae");
  ldmc_vae_config vc = s->vae.vae;
  vc.batch = s->B;
  if (ldmc_vae_decoder_build(&vc, &s->decoder_graph) != LDMC_OK) return failf(err, errlen, "decoder");
  ldmc_compile_opts dco = s->co;
  dco.params_are_weights = true, dco.n_activation_params = 1;
  if (s->be->compile(s->decoder_graph, &dco, &s->decoder) != LDMC_OK) return failf(err, errlen, "compiling the decoder");
  if (ldmc_classifier_model_load(c->classifier, &s->cls) != LDMC_OK) return failf(err, errlen, "classifier");
  if (ldmc_feature_extractor_new(&s->cls, 100, s->be, &s->co, &s->fx) != LDMC_OK)
    return failf(err, errlen, "compiling the classifier");
  s->compile_s += study_now() - t0;
  t0 = study_now();
  if (ldmc_fmnist_open(ldmc_fmnist_resolve_dir(NULL), LDMC_FMNIST_TEST, &s->test) != LDMC_OK)
    return failf(err, errlen, "the Fashion-MNIST test split");
  if (c->limit > 0) ldmc_fmnist_limit(s->test, c->limit);
  if (ldmc_features_of_fmnist(s->fx, s->test, ldmc_fmnist_count(s->test), &s->ref) != LDMC_OK)
    return failf(err, errlen, "the test split's features");
  s->eval_s += study_now() - t0;
  return 0;
}

static void drop_model(study_sampling *s) {
  if (!s->have_model) return;
  ldmc_ldm_model_free(&s->m);
  ldmc_tensor_release(&s->ctx_all);
  s->have_model = false;
  s->model_path[0] = 0;
}

void study_sampling_free(study_sampling *s) {
  if (!s) return;
  drop_model(s);
  ldmc_executable_free(s->decoder);
  ldmc_graph_free(s->decoder_graph);
  ldmc_ldm_model_free(&s->vae);
  ldmc_feature_extractor_free(s->fx);
  ldmc_classifier_model_free(&s->cls);
  ldmc_features_free(&s->ref);
  ldmc_fmnist_free(s->test);
  free(s);
}

void study_sampling_times(const study_sampling *s, double *sample_s, double *eval_s, double *compile_s) {
  *sample_s = s->sample_s, *eval_s = s->eval_s, *compile_s = s->compile_s;
}

/* A checkpoint's EMA weights in place of its parameters: ldmc_ldm_model_load
 * files every tensor that is neither vae.* nor text_model.* under unet_w, so
 * ema.P (and the optimizer moments) land there; P is in unet_w or text_w. */
static int use_ema(ldmc_ldm_model *m, char *err, size_t errlen) {
  int copied = 0;
  for (int32_t i = 0; i < m->unet_w.n; i++) {
    const ldmc_tensor *e = &m->unet_w.items[i];
    if (strncmp(e->name, "ema.", 4) != 0) continue;
    ldmc_tensor *p = ldmc_tensor_set_find(&m->unet_w, e->name + 4);
    if (!p) p = ldmc_tensor_set_find(&m->text_w, e->name + 4);
    if (!p || p->nbytes != e->nbytes) {
      snprintf(err, errlen, "checkpoint: %s has no parameter of its size", e->name);
      return 1;
    }
    memcpy(p->data, e->data, e->nbytes);
    copied++;
  }
  if (!copied) return snprintf(err, errlen, "checkpoint: no EMA weights (ema.*)"), 1;
  return 0;
}

static int load_model(study_sampling *s, const char *path, bool ema, char *err, size_t errlen) {
  if (s->have_model && !strcmp(s->model_path, path)) return 0;
  drop_model(s);
  if (ldmc_ldm_model_load(path, &s->m) != LDMC_OK) return failf(err, errlen, "model");
  s->have_model = true;
  snprintf(s->model_path, sizeof s->model_path, "%s", path);
  if (ema && use_ema(&s->m, err, errlen)) return 1;
  const char *prompts[11];
  for (int k = 0; k < 10; k++) prompts[k] = ldmc_class_prompt(k);
  prompts[10] = "";
  double t0 = study_now();
  if (ldmc_ldm_encode_prompts(&s->m, prompts, 11, s->be, &s->co, &s->ctx_all) != LDMC_OK)
    return failf(err, errlen, "the prompts");
  s->compile_s += study_now() - t0;
  return 0;
}

/* latents [B, ...] -> images [B, 1, S, S] into out (B rows) */
static int decode(study_sampling *s, const ldmc_tensor *z, float *out, int64_t rows, char *err, size_t errlen) {
  int32_t np = ldmc_graph_num_params(s->decoder_graph);
  ldmc_tensor in[256] = {0}, o = {0};
  if (np > 256) return snprintf(err, errlen, "decoder: too many weights"), 1;
  const ldmc_node *p0 = &s->decoder_graph->nodes[ldmc_graph_param_node(s->decoder_graph, 0)];
  if (ldmc_tensor_alloc(&in[0], "latent", LDMC_F32, &p0->shape) != LDMC_OK) return failf(err, errlen, "decoder");
  for (int64_t i = 0; i < (int64_t)(in[0].nbytes / 4); i++)
    ((float *)in[0].data)[i] = (float)(((const float *)z->data)[i] / s->vae.latent_scale);
  for (int32_t k = 1; k < np; k++) {
    const ldmc_node *p = &s->decoder_graph->nodes[ldmc_graph_param_node(s->decoder_graph, k)];
    const ldmc_tensor *w = ldmc_tensor_set_find(&s->vae.vae_w, p->attrs.name);
    if (!w) {
      ldmc_tensor_release(&in[0]);
      return snprintf(err, errlen, "decoder: weight %s missing", p->attrs.name), 1;
    }
    in[k] = *w, in[k].owns_data = false;
  }
  ldmc_status st = ldmc_executable_run(s->decoder, in, np, &o, 1);
  ldmc_tensor_release(&in[0]);
  if (st != LDMC_OK) return failf(err, errlen, "decoding");
  int64_t per = (int64_t)(o.nbytes / 4) / o.shape.dims[0];
  memcpy(out, o.data, (size_t)(rows * per) * 4);
  ldmc_tensor_release(&o);
  return 0;
}

typedef struct step_ctx {
  study_progress *p;
  const char *name;
  int64_t done, total, B;
} step_ctx;

static ldmc_status on_step(void *ctx, const ldmc_sample_progress *pr) {
  step_ctx *c = ctx;
  double frac = ((double)c->done + (double)c->B * pr->step / pr->n_steps) / (double)c->total;
  char what[192];
  snprintf(what, sizeof what, "%s: %lld/%lld images, step %d/%d", c->name, (long long)c->done, (long long)c->total,
           pr->step, pr->n_steps);
  study_progress_show(c->p, what, frac);
  return LDMC_OK;
}

static int save_images(const char *dir, const char *name, const float *img, int64_t n, int64_t S, char *err,
                       size_t errlen) {
  ldmc_tensor t = {0};
  int64_t dims[4] = {n, 1, S, S};
  ldmc_shape sh = ldmc_shape_make(4, dims);
  if (ldmc_tensor_alloc(&t, "images", LDMC_F32, &sh) != LDMC_OK) return failf(err, errlen, "images");
  memcpy(t.data, img, t.nbytes);
  ldmc_tensor_set set = {0};
  ldmc_status st = ldmc_tensor_set_add(&set, &t);
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/cells/%s.safetensors", dir, name);
  if (st == LDMC_OK) st = ldmc_safetensors_save(path, &set, 0, NULL, NULL);
  ldmc_tensor_set_free(&set);
  return st != LDMC_OK ? failf(err, errlen, path) : 0;
}

/* PSNR (dB) of a against b, values in [-1, 1] (peak-to-peak 2) */
static double psnr(const float *a, const float *b, int64_t n) {
  double se = 0;
  for (int64_t i = 0; i < n; i++) se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  double mse = se / (double)n;
  return mse > 0 ? 10 * log10(4.0 / mse) : INFINITY;
}

int study_run_sample_cell(study_sampling *s, const study_config *c, const char *dir, const study_cell *cell,
                          study_progress *p, char *err, size_t errlen) {
  char run[2 * STUDY_PATH], path[2 * STUDY_PATH];
  study_cell_kind src = cell->kind == STUDY_LCM ? STUDY_DISTILL : cell->kind == STUDY_SR_SAMPLE ? STUDY_SR_TRAIN
                                                                                                : STUDY_TRAIN;
  study_run_dir(dir, src, cell->width, run, sizeof run);
  if (cell->kind == STUDY_CKPT) snprintf(path, sizeof path, "%s/ckpt-%010lld.ldmc", run, (long long)cell->ckpt_step);
  else snprintf(path, sizeof path, "%s/model.ldmc", run);
  struct stat sb;
  if (cell->kind == STUDY_CKPT && stat(path, &sb) != 0) {
    /* a checkpoint rotated out (an interrupted run's extra checkpoint counts against --keep): recorded as
     * missing, so the report says so and a rerun does not wait for a file that cannot come back */
    char name[128];
    study_cell_name(cell, 0, name, sizeof name);
    fprintf(stderr, "ldmc study: %s: %s is not there; the cell is recorded as missing\n", name, path);
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(study_kind_name(cell->kind)));
    json_object_set_new(o, "width", json_integer(cell->width));
    json_object_set_new(o, "ckpt_step", json_integer(cell->ckpt_step));
    json_object_set_new(o, "missing", json_string(path));
    int rc = study_write_cell(dir, name, o, err, errlen);
    json_decref(o);
    return rc;
  }
  if (load_model(s, path, cell->kind == STUDY_CKPT && c->ckpt_ema, err, errlen)) return 1;
  study_width_costs wc;
  if (study_width_costs_compute(c, cell->width, &wc, err, errlen)) return 1;
  bool lcm = cell->kind == STUDY_LCM, sr = cell->kind == STUDY_SR_SAMPLE;
  bool guidance = !lcm && !sr;
  double one = 1, ckpt_rate = c->ckpt_rate;
  const double *rates = cell->kind == STUDY_CKPT ? &ckpt_rate : sr ? &one : c->rates;
  int n_rates = (cell->kind == STUDY_CKPT || sr) ? 1 : c->n_rates;
  int64_t B = s->B, N = c->samples;
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, cell->sampler, cell->steps);
  sc.steps_offset = 1; /* as `ldmc sample` */
  ldmc_unet_config uc = s->m.unet;
  uc.batch = guidance ? 2 * B : B;
  ldmc_graph *unet = NULL;
  ldmc_sampler *smp = NULL;
  double t0 = study_now();
  ldmc_status st = ldmc_sampler_config_check(&sc, s->m.diffusion.timesteps);
  if (st == LDMC_OK) st = ldmc_unet_build(&uc, &unet);
  if (st == LDMC_OK) st = ldmc_sampler_new(&s->m.diffusion, &sc, guidance, unet, &s->m.unet_w, s->be, &s->co, &smp);
  double compile_s = study_now() - t0;
  s->compile_s += compile_s;
  if (st != LDMC_OK) {
    ldmc_graph_free(unet);
    return failf(err, errlen, "compiling the sampler");
  }
  int64_t T = s->m.unet.context_tokens, D = s->m.unet.context_dim, row = T * D;
  int64_t cdims[3] = {guidance ? 2 * B : B, T, D};
  ldmc_shape cs = ldmc_shape_make(3, cdims);
  ldmc_tensor ctx = {0}, cond = {0}, cond_all = {0};
  int64_t S = s->vae.vae.height;
  float *images = malloc((size_t)(N + B) * (size_t)(S * S) * sizeof(float));
  float *originals = sr ? malloc((size_t)N * (size_t)(S * S) * sizeof(float)) : NULL;
  int64_t *labels = malloc((size_t)N * sizeof *labels);
  int rc = 0;
  st = ldmc_tensor_alloc(&ctx, "encoder_hidden_states", LDMC_F32, &cs);
  if (st != LDMC_OK || !images || !labels || (sr && !originals)) {
    snprintf(err, errlen, "out of memory");
    rc = 1;
    goto done;
  }
  for (int64_t i = 0; i < N; i++) labels[i] = sr ? ldmc_fmnist_labels(s->test)[i] : i % 10;
  if (sr) { /* the conditions: the first N test images, degraded and encoded */
    for (int64_t i = 0; i < N; i++) {
      ldmc_fmnist_image_f32(s->test, i, originals + i * S * S); /* padded to 32 x 32, as training sees it */
    }
    t0 = study_now();
    if (ldmc_superres_cond_latents(&s->m, originals, N, c->superres_factor, s->be, &s->co, &cond_all) != LDMC_OK) {
      rc = failf(err, errlen, "the low-resolution conditions");
      goto done;
    }
    s->compile_s += study_now() - t0;
    int64_t cd[4] = {B, cond_all.shape.dims[1], cond_all.shape.dims[2], cond_all.shape.dims[3]};
    ldmc_shape csh = ldmc_shape_make(4, cd);
    if (ldmc_tensor_alloc(&cond, "cond_sample", LDMC_F32, &csh) != LDMC_OK) {
      rc = failf(err, errlen, "conditions");
      goto done;
    }
  }
  ldmc_sampler_cost cost;
  ldmc_sampler_get_cost(smp, &cost);
  for (int r = 0; r < n_rates && !rc; r++) {
    char name[128];
    study_cell_name(cell, rates[r], name, sizeof name);
    double t_sample = 0, t_eval = 0;
    step_ctx sctx = {p, name, 0, N, B};
    for (int64_t o0 = 0; o0 < N && !rc; o0 += B) {
      int64_t rows = N - o0 < B ? N - o0 : B;
      for (int64_t b = 0; b < B; b++) { /* rows past the chunk repeat its last image and are dropped */
        int64_t i = o0 + (b < rows ? b : rows - 1);
        memcpy((float *)ctx.data + b * row, (const float *)s->ctx_all.data + labels[i] * row, (size_t)row * 4);
        if (guidance) memcpy((float *)ctx.data + (B + b) * row, (const float *)s->ctx_all.data + 10 * row, (size_t)row * 4);
        if (sr) {
          int64_t per = (int64_t)(cond.nbytes / 4) / B;
          memcpy((float *)cond.data + b * per, (const float *)cond_all.data + i * per, (size_t)per * 4);
        }
      }
      ldmc_sample_run_opts ro = {.seed = (uint64_t)c->seed, .first_image = o0, .context = &ctx,
                                 .guidance_scale = rates[r], .progress = on_step, .progress_ctx = &sctx,
                                 .cond = sr ? &cond : NULL,
      };
      t0 = study_now();
      if (ldmc_sample_run(smp, &ro) != LDMC_OK) {
        rc = failf(err, errlen, "sampling");
        break;
      }
      t_sample += study_now() - t0;
      t0 = study_now();
      rc = decode(s, ldmc_sampler_latents(smp), images + o0 * S * S, rows, err, errlen);
      t_eval += study_now() - t0;
      sctx.done += rows;
    }
    if (rc) break;
    /* the scores */
    t0 = study_now();
    ldmc_features f = {0};
    ldmc_fd_result fd;
    ldmc_kid_result kid;
    ldmc_class_accuracy acc;
    ldmc_kid_opts ko = {.subsets = 100, .subset_size = N, .seed = 0};
    st = ldmc_features_of_images(s->fx, images, N, &f);
    if (st == LDMC_OK) st = ldmc_frechet_distance(f.features, N, s->ref.features, s->ref.n, f.d, &fd);
    if (st == LDMC_OK) st = ldmc_kid(f.features, N, s->ref.features, s->ref.n, f.d, &ko, &kid, NULL);
    if (st == LDMC_OK) st = ldmc_class_accuracy_compute(f.logits, labels, N, f.classes, &acc);
    ldmc_features_free(&f);
    if (st != LDMC_OK) {
      rc = failf(err, errlen, "scoring");
      break;
    }
    t_eval += study_now() - t0;
    s->sample_s += t_sample, s->eval_s += t_eval;
    int passes = guidance ? 2 : 1;
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(study_kind_name(cell->kind)));
    json_object_set_new(o, "width", json_integer(cell->width));
    json_object_set_new(o, "sampler", json_string(ldmc_sampler_name(cell->sampler)));
    json_object_set_new(o, "steps", json_integer(cost.n_steps));
    json_object_set_new(o, "guidance", json_real(rates[r]));
    json_object_set_new(o, "passes", json_integer(passes));
    if (cell->kind == STUDY_CKPT) json_object_set_new(o, "ckpt_step", json_integer(cell->ckpt_step));
    json_object_set_new(o, "model_steps", json_integer(s->m.step));
    json_object_set_new(o, "samples", json_integer(N));
    json_object_set_new(o, "fd", json_real(fd.fd));
    json_object_set_new(o, "kid", json_real(kid.mean));
    json_object_set_new(o, "kid_std", json_real(kid.std));
    json_object_set_new(o, "accuracy", json_real((double)acc.correct / (double)acc.count));
    if (sr) json_object_set_new(o, "psnr", json_real(psnr(images, originals, N * S * S)));
    /* the cost: normalized per-step cost (c=320 = 1) x passes x steps, as `ldmc sample` prints it */
    json_object_set_new(o, "norm_per_pass", json_real(wc.norm));
    json_object_set_new(o, "cost", json_real(wc.norm * passes * cost.n_steps));
    json_object_set_new(o, "unet_gflops", json_real(wc.unet_gflops));
    json_object_set_new(o, "gflop", json_real(wc.unet_gflops * passes * cost.n_steps * (double)N));
    json_object_set_new(o, "seconds", json_real(t_sample));
    json_object_set_new(o, "seconds_per_image", json_real(t_sample / (double)N));
    json_object_set_new(o, "eval_s", json_real(t_eval));
    json_object_set_new(o, "compile_s", json_real(r == 0 ? compile_s : 0));
    rc = save_images(dir, name, images, N < STUDY_KEEP_IMAGES ? N : STUDY_KEEP_IMAGES, S, err, errlen);
    if (!rc) rc = study_write_cell(dir, name, o, err, errlen);
    json_decref(o);
  }
done:
  ldmc_sampler_free(smp);
  ldmc_graph_free(unet);
  ldmc_tensor_release(&ctx), ldmc_tensor_release(&cond), ldmc_tensor_release(&cond_all);
  free(images), free(originals), free(labels);
  return rc;
}
