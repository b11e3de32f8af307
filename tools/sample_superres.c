/* ldmc sample --superres-from test (sample_superres.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend/weights_io.h"
#include "models/superres.h"
#include "models/text_encoder.h"
#include "runtime/fashion_mnist.h"
#include "runtime/png_grid.h"
#include "tools/sample_superres.h"

#define IMG (LDMC_FMNIST_SIZE * LDMC_FMNIST_SIZE)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* rows [o0, o0 + B) of src (row floats each) into dst, rows past n repeating the last */
static void rows_of(float *dst, const float *src, int64_t o0, int64_t B, int64_t n, int64_t row) {
  for (int64_t r = 0; r < B; r++) {
    int64_t o = o0 + r < n ? o0 + r : n - 1;
    memcpy(dst + r * row, src + o * row, (size_t)row * sizeof *dst);
  }
}

static ldmc_status save_latents(const char *path, const ldmc_tensor *latents) {
  ldmc_tensor_set set = {0};
  ldmc_tensor lv = *latents;
  lv.name = strdup("latents"), lv.owns_data = false;
  ldmc_status st = lv.name ? ldmc_tensor_set_add(&set, &lv) : ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  if (st == LDMC_OK) st = ldmc_safetensors_save(path, &set, 0, NULL, NULL);
  ldmc_tensor_set_free(&set);
  return st;
}

ldmc_status ldmc_sample_superres(const ldmc_sr_sample_opts *o) {
  const ldmc_ldm_model *m = o->m;
  if (m->unet.cond_channels <= 0 || m->superres_factor < 2)
    return ldmc_error(LDMC_ERR_INVALID, "--superres-from: %s is not a super-resolution model (ldmc train --superres)",
                      o->model_path);
  ldmc_fmnist *d = NULL;
  LDMC_TRY(ldmc_fmnist_open(NULL, LDMC_FMNIST_TEST, &d));
  int64_t n = o->n, B = o->batch < n ? o->batch : n;
  ldmc_status st = LDMC_OK;
  if (n > ldmc_fmnist_count(d))
    st = ldmc_error(LDMC_ERR_INVALID, "--n %lld: the test split has %lld images", (long long)n,
                    (long long)ldmc_fmnist_count(d));
  float *grid = st == LDMC_OK ? malloc((size_t)(3 * n * IMG) * sizeof *grid) : NULL; /* low-res, sample, original */
  const char **prompts = st == LDMC_OK ? calloc((size_t)n, sizeof *prompts) : NULL;
  if (st == LDMC_OK && (!grid || !prompts)) st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; st == LDMC_OK && i < n; i++) {
    ldmc_fmnist_image_f32(d, i, grid + (2 * n + i) * IMG);
    prompts[i] = ldmc_class_prompt(ldmc_fmnist_labels(d)[i]);
  }
  if (st == LDMC_OK) st = ldmc_superres_degrade(grid + 2 * n * IMG, n, LDMC_FMNIST_SIZE, m->superres_factor, grid);
  ldmc_tensor cond = {0}, ctx_all = {0}, ctx = {0}, cb = {0}, latents = {0}, images = {0};
  if (st == LDMC_OK) st = ldmc_superres_cond_latents(m, grid + 2 * n * IMG, n, m->superres_factor, o->be, &o->co, &cond);
  if (st == LDMC_OK) st = ldmc_ldm_encode_prompts(m, prompts, n, o->be, &o->co, &ctx_all);
  ldmc_unet_config uc = m->unet;
  uc.batch = B;
  ldmc_graph *unet = NULL;
  ldmc_sampler *s = NULL;
  if (st == LDMC_OK) st = ldmc_unet_build(&uc, &unet);
  if (st == LDMC_OK) {
    fprintf(stderr, "compiling the %s step (super-resolution U-Net c=%d, batch %lld) on %s\n",
            ldmc_sampler_name(o->sc->kind), m->unet.channels, (long long)B, o->be->name);
    st = ldmc_sampler_new(&m->diffusion, o->sc, false, unet, &m->unet_w, o->be, &o->co, &s);
  }
  int64_t T = m->unet.context_tokens, D = m->unet.context_dim, crow = T * D;
  int64_t lrow = (int64_t)m->unet.in_channels * m->unet.height * m->unet.width;
  int64_t kd[4] = {B, m->unet.cond_channels, m->unet.height, m->unet.width}, cdims[3] = {B, T, D};
  int64_t ld[4] = {n, m->unet.in_channels, m->unet.height, m->unet.width};
  ldmc_shape ks = ldmc_shape_make(4, kd), cs = ldmc_shape_make(3, cdims), ls = ldmc_shape_make(4, ld);
  if (st == LDMC_OK) st = ldmc_tensor_alloc(&ctx, "encoder_hidden_states", LDMC_F32, &cs);
  if (st == LDMC_OK) st = ldmc_tensor_alloc(&cb, "cond_sample", LDMC_F32, &ks);
  if (st == LDMC_OK) st = ldmc_tensor_alloc(&latents, "latents", LDMC_F32, &ls);
  double t0 = now_s();
  for (int64_t o0 = 0; st == LDMC_OK && o0 < n; o0 += B) {
    rows_of(ctx.data, ctx_all.data, o0, B, n, crow);
    rows_of(cb.data, cond.data, o0, B, n, (int64_t)m->unet.cond_channels * m->unet.height * m->unet.width);
    ldmc_sample_run_opts ro = {.seed = o->seed, .first_image = o0, .context = &ctx, .cond = &cb};
    st = ldmc_sample_run(s, &ro);
    int64_t rows = n - o0 < B ? n - o0 : B;
    if (st == LDMC_OK)
      memcpy((float *)latents.data + o0 * lrow, ldmc_sampler_latents(s)->data, (size_t)(rows * lrow) * sizeof(float));
  }
  double t_sample = now_s() - t0;
  if (st == LDMC_OK) st = ldmc_ldm_decode(m, &latents, o->be, &o->co, &images);
  if (st == LDMC_OK && images.nbytes != (size_t)(n * IMG) * sizeof(float))
    st = ldmc_error(LDMC_ERR_INVALID, "--superres-from: the autoencoder's images are not 1x%dx%d",
                    LDMC_FMNIST_SIZE, LDMC_FMNIST_SIZE);
  if (st == LDMC_OK) {
    memcpy(grid + n * IMG, images.data, images.nbytes);
    static const char *const row_names[3] = {"low-res input", "sample", "original"};
    ldmc_png_grid g = {.images = grid, .n = 3 * n, .channels = 1, .height = LDMC_FMNIST_SIZE,
                       .width = LDMC_FMNIST_SIZE, .lo = -1, .hi = 1, .rows = 3, .cols = (int)n, .scale = o->scale,
                       .pad = 2, .background = 255, .row_labels = o->labels ? row_names : NULL};
    st = ldmc_png_grid_write(o->out_png, &g);
  }
  if (st == LDMC_OK && o->save_latents) st = save_latents(o->save_latents, &latents);
  if (st == LDMC_OK) {
    double mse = 0; /* of the samples against the originals, in [-1, 1] units */
    for (int64_t i = 0; i < n * IMG; i++) {
      double e = (double)grid[n * IMG + i] - grid[2 * n * IMG + i];
      mse += e * e;
    }
    printf("wrote %s: %dx super-resolution of the first %lld test images (rows: low-res input, sample, "
           "original), %s %d steps, prompt: each image's class name, no guidance, seed %llu\n",
           o->out_png, m->superres_factor, (long long)n, ldmc_sampler_name(o->sc->kind),
           ldmc_sampler_get_schedule(s)->n_steps, (unsigned long long)o->seed);
    printf("time: %.3f s per image; sample-vs-original MSE %.5f (pixels in [-1, 1])\n", t_sample / (double)n,
           mse / (double)(n * IMG));
  }
  ldmc_sampler_free(s);
  ldmc_graph_free(unet);
  ldmc_tensor_release(&cond), ldmc_tensor_release(&ctx_all), ldmc_tensor_release(&ctx), ldmc_tensor_release(&cb);
  ldmc_tensor_release(&latents), ldmc_tensor_release(&images);
  free(grid);
  free(prompts);
  ldmc_fmnist_free(d);
  return st;
}
