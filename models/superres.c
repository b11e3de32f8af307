/* Super-resolution conditioning: degrade (pool + nearest upsample) and
 * encode with the autoencoder (superres.h). */
#include <stdlib.h>
#include <string.h>

#include "models/superres.h"

ldmc_status ldmc_superres_degrade(const float *img, int64_t n, int size, int factor, float *out) {
  if (n < 0 || size < 1 || factor < 1 || size % factor)
    return ldmc_error(LDMC_ERR_INVALID, "super-resolution: %lld images of %dx%d cannot be pooled %dx", (long long)n,
                      size, size, factor);
  int64_t px = (int64_t)size * size;
  double inv = 1.0 / ((double)factor * factor);
  for (int64_t i = 0; i < n; i++) {
    const float *s = img + i * px;
    float *d = out + i * px;
    for (int by = 0; by < size; by += factor)
      for (int bx = 0; bx < size; bx += factor) {
        double sum = 0; /* read the block whole before writing it: out may be img */
        for (int y = 0; y < factor; y++)
          for (int x = 0; x < factor; x++) sum += s[(by + y) * size + bx + x];
        float v = (float)(sum * inv);
        for (int y = 0; y < factor; y++)
          for (int x = 0; x < factor; x++) d[(by + y) * size + bx + x] = v;
      }
  }
  return LDMC_OK;
}

struct ldmc_superres_encoder {
  ldmc_graph *g;
  ldmc_executable *e;
  ldmc_tensor *in; /* in[0] owned (a batch of degraded images), the weights views */
  int32_t np;
  int64_t B, img, lat; /* rows; floats per image and per latent */
  int factor, size;
  double scale;
};

void ldmc_superres_encoder_free(ldmc_superres_encoder *e) {
  if (!e) return;
  ldmc_executable_free(e->e);
  if (e->in) ldmc_tensor_release(&e->in[0]);
  free(e->in);
  ldmc_graph_free(e->g);
  free(e);
}

int64_t ldmc_superres_encoder_latent_size(const ldmc_superres_encoder *e) { return e->lat; }

ldmc_status ldmc_superres_encoder_new(const ldmc_vae_config *vae, const ldmc_tensor_set *vae_w, double scale,
                                      int factor, int64_t B, const ldmc_backend_i *be, const ldmc_compile_opts *co,
                                      ldmc_superres_encoder **out) {
  *out = NULL;
  if (factor < 2 || vae->height != vae->width || vae->height % factor)
    return ldmc_error(LDMC_ERR_INVALID, "super-resolution: factor %d does not divide the %lldx%lld images (>= 2)",
                      factor, (long long)vae->height, (long long)vae->width);
  if (!(scale > 0)) return ldmc_error(LDMC_ERR_INVALID, "super-resolution: latent scale %g is not positive", scale);
  if (B < 1) return ldmc_error(LDMC_ERR_INVALID, "super-resolution: batch %lld < 1", (long long)B);
  ldmc_superres_encoder *e = calloc(1, sizeof *e);
  if (!e) return ldmc_error(LDMC_ERR_NOMEM, "super-resolution: out of memory");
  ldmc_vae_config vc = *vae;
  vc.batch = e->B = B;
  e->factor = factor, e->size = (int)vae->height, e->scale = scale;
  int64_t ld[4];
  ldmc_vae_latent_dims(&vc, ld);
  e->lat = ld[1] * ld[2] * ld[3];
  e->img = (int64_t)vc.in_channels * vc.height * vc.width;
  ldmc_status st = ldmc_vae_encoder_build(&vc, &e->g);
  if (st == LDMC_OK) {
    e->np = ldmc_graph_num_params(e->g);
    e->in = calloc((size_t)e->np, sizeof *e->in);
    if (!e->in) st = ldmc_error(LDMC_ERR_NOMEM, "super-resolution: out of memory");
  }
  if (st == LDMC_OK) {
    const ldmc_node *p0 = &e->g->nodes[ldmc_graph_param_node(e->g, 0)];
    st = ldmc_tensor_alloc(&e->in[0], p0->attrs.name, p0->dtype, &p0->shape);
  }
  for (int32_t k = 1; k < e->np && st == LDMC_OK; k++) {
    const ldmc_node *p = &e->g->nodes[ldmc_graph_param_node(e->g, k)];
    const ldmc_tensor *w = ldmc_tensor_set_find(vae_w, p->attrs.name);
    if (!w || w->dtype != p->dtype || !ldmc_shape_equal(&w->shape, &p->shape))
      st = ldmc_error(LDMC_ERR_INVALID, "super-resolution: autoencoder weight '%s' %s", p->attrs.name,
                      w ? "has another type than the configuration's" : "is missing");
    else e->in[k] = *w, e->in[k].owns_data = false;
  }
  if (st == LDMC_OK) {
    ldmc_compile_opts c = *co;
    c.donate = NULL;
    c.params_are_weights = true;
    c.n_activation_params = 1; /* the images change per batch */
    st = be->compile(e->g, &c, &e->e);
    if (st != LDMC_OK) ldmc_error_prefix("super-resolution: compiling the autoencoder's encoder: ");
  }
  if (st != LDMC_OK) {
    ldmc_superres_encoder_free(e);
    return st;
  }
  *out = e;
  return LDMC_OK;
}

ldmc_status ldmc_superres_encode(ldmc_superres_encoder *e, const float *images, int64_t n, float *out) {
  ldmc_tensor o[2] = {{0}, {0}};
  ldmc_status st = LDMC_OK;
  float *im = e->in[0].data;
  int64_t ch = e->img / ((int64_t)e->size * e->size); /* each channel degraded alike */
  for (int64_t b0 = 0; b0 < n && st == LDMC_OK; b0 += e->B) {
    int64_t rows = n - b0 < e->B ? n - b0 : e->B;
    memcpy(im, images + b0 * e->img, (size_t)(rows * e->img) * sizeof *im);
    for (int64_t r = rows; r < e->B; r++) memcpy(im + r * e->img, im, (size_t)e->img * sizeof *im); /* padding rows */
    st = ldmc_superres_degrade(im, e->B * ch, e->size, e->factor, im);
    if (st == LDMC_OK) st = ldmc_executable_run(e->e, e->in, e->np, o, 2);
    if (st != LDMC_OK) break;
    const float *mean = o[0].data; /* outputs: mean, logvar */
    for (int64_t i = 0; i < rows * e->lat; i++) out[b0 * e->lat + i] = (float)(e->scale * mean[i]);
    ldmc_tensor_release(&o[0]), ldmc_tensor_release(&o[1]);
  }
  ldmc_tensor_release(&o[0]), ldmc_tensor_release(&o[1]);
  return st;
}

ldmc_status ldmc_superres_cond_latents(const ldmc_ldm_model *m, const float *images, int64_t n, int factor,
                                       const ldmc_backend_i *be, const ldmc_compile_opts *co, ldmc_tensor *out) {
  memset(out, 0, sizeof *out);
  if (n < 1) return ldmc_error(LDMC_ERR_INVALID, "super-resolution: %lld images (>= 1)", (long long)n);
  ldmc_superres_encoder *e = NULL;
  LDMC_TRY(ldmc_superres_encoder_new(&m->vae, &m->vae_w, m->latent_scale, factor, n < 250 ? n : 250, be, co, &e));
  ldmc_vae_config vc = m->vae;
  vc.batch = n;
  int64_t ld[4];
  ldmc_vae_latent_dims(&vc, ld);
  ldmc_shape s = {.rank = 4, .dims = {ld[0], ld[1], ld[2], ld[3]}};
  ldmc_status st = ldmc_tensor_alloc(out, "cond_sample", LDMC_F32, &s);
  if (st == LDMC_OK) st = ldmc_superres_encode(e, images, n, out->data);
  if (st != LDMC_OK) ldmc_tensor_release(out);
  ldmc_superres_encoder_free(e);
  return st;
}
