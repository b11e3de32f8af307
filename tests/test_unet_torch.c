/* Parity of a tiny U-Net (c=32, 8x8 latent, context 32x4) on the interpreter
 * against an independent PyTorch definition (tests/torch/unet_ref.py, float64),
 * through safetensors files, as `ldmc run` would see them. Skipped, with a
 * message, when /usr/bin/python3 cannot import torch. The bound (2e-6 of the
 * output range) is ~10x the f32 rounding seen, and tight enough to catch a
 * LayerNorm eps of 1e-6 instead of 1e-5 (8e-6). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "frontend/weights_io.h"
#include "models/unet.h"
#include "models/weights.h"
#include "test_util.h"

static char g_dir[64];

static void path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

static ldmc_status add_random(ldmc_tensor_set *s, const char *name, int rank, const int64_t *d, uint64_t seed,
                              double lo, double hi) {
  ldmc_tensor t;
  ldmc_shape sh = ldmc_shape_make(rank, d);
  LDMC_TRY(ldmc_tensor_alloc(&t, name, LDMC_F32, &sh));
  int64_t n;
  ldmc_shape_numel(&sh, 0, &n);
  for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(&t, i, lo + (hi - lo) * ldmc_weights_uniform(seed, name, i));
  return ldmc_tensor_set_add(s, &t);
}

/* Norm weights and biases from init are ones and zeros; make them random so the
 * comparison exercises them too. */
static void perturb_norms(ldmc_tensor_set *w) {
  for (int32_t i = 0; i < w->n; i++) {
    ldmc_tensor *t = &w->items[i];
    if (t->shape.rank != 1 || !strstr(t->name, "norm")) continue;
    bool weight = strstr(t->name, ".weight") != NULL;
    for (int64_t k = 0; k < t->shape.dims[0]; k++) {
      double u = ldmc_weights_uniform(99, t->name, k);
      ldmc_tensor_set_elem(t, k, weight ? 0.5 + u : u - 0.5);
    }
  }
}

static void run_config(const ldmc_unet_config *cfg, const char *json_cfg, const char *label) {
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_unet_build(cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return;
  ldmc_tensor_set w = {0}, in = {0}, views = {0}, out = {0}, ref = {0};
  CHECK(ldmc_weights_init_random(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, 7, &w) == LDMC_OK);
  perturb_norms(&w);
  const int64_t B = cfg->batch;
  const int64_t sd[4] = {B, cfg->in_channels, cfg->height, cfg->width}, cd[3] = {B, cfg->context_tokens, cfg->context_dim};
  CHECK(add_random(&in, "sample", 4, sd, 1, -2, 2) == LDMC_OK);
  CHECK(add_random(&in, "encoder_hidden_states", 3, cd, 2, -1, 1) == LDMC_OK);
  ldmc_tensor ts;
  ldmc_tensor_alloc(&ts, "timestep", LDMC_I64, &(ldmc_shape){1, {B}});
  for (int64_t i = 0; i < B; i++) ldmc_tensor_set_elem(&ts, i, i == 0 ? 917 : 3 + 40 * i); /* i64: converted */
  CHECK(ldmc_tensor_set_add(&in, &ts) == LDMC_OK);
  char wpath[128], ipath[128], rpath[128], cmd[1024];
  path(wpath, sizeof wpath, "weights.safetensors");
  path(ipath, sizeof ipath, "inputs.safetensors");
  path(rpath, sizeof rpath, "ref.safetensors");
  CHECK_MSG(ldmc_safetensors_save(wpath, &w, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_safetensors_save(ipath, &in, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_tensor_set_free(&w);
  ldmc_tensor_set_free(&in);

  /* ldmc side: load both files back as `ldmc run` does */
  CHECK_MSG(ldmc_weights_load(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, wpath, 0, &w) == LDMC_OK, "%s",
            ldmc_last_error());
  CHECK(ldmc_safetensors_load(ipath, &in) == LDMC_OK);
  CHECK_MSG(ldmc_unet_inputs_check(g, &in) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(ldmc_weights_bind(&w, &in, &views) == LDMC_OK);
  const ldmc_backend_i *be = ldmc_backend_find("interp");
  ldmc_executable *e = NULL;
  CHECK_MSG(be && be->compile(g, &(ldmc_compile_opts){0}, &e) == LDMC_OK, "%s", ldmc_last_error());
  if (e) CHECK_MSG(ldmc_executable_run_named(e, &views, &out) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_executable_free(e);

  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 %s/tests/torch/unet_ref.py --config '%s' --weights %s --inputs %s --out %s",
           getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..", json_cfg, wpath, ipath, rpath);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "torch reference failed: %s", cmd);
  if (rc == 0) CHECK(ldmc_safetensors_load(rpath, &ref) == LDMC_OK);
  ldmc_tensor *a = ldmc_tensor_set_find(&out, "out_sample"), *b = ldmc_tensor_set_find(&ref, "out_sample");
  CHECK(a && b);
  if (a && b) {
    CHECK(ldmc_shape_equal(&a->shape, &b->shape) && a->dtype == LDMC_F32);
    int64_t n;
    ldmc_shape_numel(&a->shape, 0, &n);
    double max_abs = 0, max_ref = 0, max_rel = 0;
    for (int64_t i = 0; i < n; i++) {
      double x = ldmc_tensor_get(a, i), y = ldmc_tensor_get(b, i);
      double d = fabs(x - y);
      if (!(d <= max_abs)) max_abs = d; /* NaN propagates */
      if (fabs(y) > max_ref) max_ref = fabs(y);
      double r = d / fmax(fabs(y), 1e-3);
      if (!(r <= max_rel)) max_rel = r;
    }
    double rel = max_abs / max_ref;
    printf("%s: max |ldmc - torch| = %.3g, max |torch| = %.3g, max abs error / max |torch| = %.3g, "
           "max elementwise rel error (|y| floored at 1e-3) = %.3g\n",
           label, max_abs, max_ref, rel, max_rel);
    CHECK_MSG(rel < 2e-6, "%s: relative error %.3g", label, rel);
    CHECK(max_ref > 1e-3); /* the output is not trivially zero */
  }
  ldmc_tensor_set_free(&out);
  ldmc_tensor_set_free(&ref);
  ldmc_tensor_set_free(&views);
  ldmc_tensor_set_free(&w);
  ldmc_tensor_set_free(&in);
  ldmc_graph_free(g);
}

int main(void) {
  if (system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    printf("SKIP test_unet_torch: /usr/bin/python3 cannot import torch and numpy (apt install python3-torch)\n");
    return test_summary("test_unet_torch");
  }
  strcpy(g_dir, "/tmp/ldmc_unet_torch_XXXXXX");
  if (!mkdtemp(g_dir)) {
    CHECK(!"mkdtemp");
    return test_summary("test_unet_torch");
  }
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 8;
  cfg.context_dim = 32;
  cfg.context_tokens = 4;
  cfg.groups = 8;
  cfg.batch = 2;
  run_config(&cfg, "{\"channels\":32,\"groups\":8,\"context_dim\":32}", "tiny c=32 (conv proj)");
  cfg.linear_proj = true;
  cfg.heads = 4;
  cfg.height = 16;
  run_config(&cfg, "{\"channels\":32,\"groups\":8,\"context_dim\":32,\"linear_proj\":true,\"heads\":4}",
             "tiny c=32 (linear proj, 4 heads, 16x8)");
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  return test_summary("test_unet_torch");
}
