/* Super-resolution conditioning (models/superres.h, cond_channels of the
 * U-Net, the sampler's cond_sample input):
 *   1. ldmc_superres_degrade against hand-computed pools;
 *   2. a tiny U-Net with cond_channels and zero extra conv_in channels gives
 *      exactly the output of the U-Net without them (interp), and nonzero
 *      extra channels change it (the condition is wired in);
 *   3. a DDIM run with a cond input against a hand-run loop of the same
 *      U-Net on the interpreter; missing / mistyped cond refused;
 *   4. the U-Net training step keeps cond_sample as data.
 * The end to end finetuning is tests/cli/superres.sh. */
#include <string.h>

#include "backends/backend.h"
#include "interp_test_util.h"
#include "models/samplers.h"
#include "models/superres.h"
#include "models/unet.h"
#include "models/unet_train.h"
#include "models/weights.h"
#include "test_util.h"

/* ---- 1 ---- */
static void test_degrade(void) {
  float img[2 * 16], out[2 * 16];
  for (int i = 0; i < 16; i++) img[i] = (float)i, img[16 + i] = i % 2 ? 3.0f : -1.0f;
  CHECK(ldmc_superres_degrade(img, 2, 4, 2, out) == LDMC_OK);
  /* image 0: blocks {0,1,4,5} 2.5, {2,3,6,7} 4.5, {8,9,12,13} 10.5, {10,11,14,15} 12.5 */
  const float want0[16] = {2.5f, 2.5f, 4.5f, 4.5f, 2.5f, 2.5f, 4.5f, 4.5f,
                           10.5f, 10.5f, 12.5f, 12.5f, 10.5f, 10.5f, 12.5f, 12.5f};
  bool ok = true;
  for (int i = 0; i < 16; i++) ok &= out[i] == want0[i] && out[16 + i] == 1.0f; /* image 1: (-1 + 3) / 2 */
  CHECK_MSG(ok, "2x pool of a 4x4 ramp");
  float whole[16];
  CHECK(ldmc_superres_degrade(img, 1, 4, 4, whole) == LDMC_OK);
  ok = true;
  for (int i = 0; i < 16; i++) ok &= whole[i] == 7.5f;
  CHECK_MSG(ok, "4x pool of a 4x4 ramp: its mean 7.5 everywhere");
  memcpy(out, img, sizeof out);
  CHECK(ldmc_superres_degrade(out, 2, 4, 2, out) == LDMC_OK); /* in place */
  ok = true;
  for (int i = 0; i < 16; i++) ok &= out[i] == want0[i];
  CHECK_MSG(ok, "in place");
  CHECK(ldmc_superres_degrade(img, 1, 4, 1, out) == LDMC_OK && !memcmp(out, img, 16 * sizeof *img));
  CHECK(ldmc_superres_degrade(img, 1, 5, 2, out) == LDMC_ERR_INVALID);
  CHECK(ldmc_superres_degrade(img, 1, 4, 0, out) == LDMC_ERR_INVALID);
  /* a 32x32 padded image pooled 4x: 8x8 blocks, a corner block of padding stays -1 */
  static float big[1024], bo[1024];
  for (int i = 0; i < 1024; i++) big[i] = -1;
  big[5 * 32 + 6] = 1; /* row 5, column 6: block (1, 1) = -1 + 2/16 */
  CHECK(ldmc_superres_degrade(big, 1, 32, 4, bo) == LDMC_OK);
  CHECK(bo[0] == -1.0f && bo[4 * 32 + 4] == -0.875f && bo[7 * 32 + 7] == -0.875f && bo[8 * 32 + 8] == -1.0f);
}

/* ---- 2 ---- */
static void tiny_config(ldmc_unet_config *c, int cond) {
  ldmc_unet_config_default(c, 8);
  c->groups = 8, c->height = c->width = 8, c->context_dim = 8, c->context_tokens = 4, c->batch = 2;
  c->cond_channels = cond;
}

/* weights of the cond graph: those of plain, conv_in widened (extra channels zero, or random when nonzero) */
static ldmc_status widen(const ldmc_tensor_set *plain, int extra, bool nonzero, ldmc_tensor_set *out) {
  memset(out, 0, sizeof *out);
  uint64_t rs = 99;
  for (int32_t i = 0; i < plain->n; i++) {
    const ldmc_tensor *t = &plain->items[i];
    ldmc_shape s = t->shape;
    bool ci = !strcmp(t->name, "conv_in.weight");
    if (ci) s.dims[1] += extra;
    ldmc_tensor n;
    LDMC_TRY(ldmc_tensor_alloc(&n, t->name, t->dtype, &s));
    if (!ci) memcpy(n.data, t->data, t->nbytes);
    else {
      int64_t kk = s.dims[2] * s.dims[3], cin = t->shape.dims[1];
      for (int64_t o = 0; o < s.dims[0]; o++)
        for (int64_t c = 0; c < s.dims[1]; c++)
          for (int64_t k = 0; k < kk; k++)
            ((float *)n.data)[(o * s.dims[1] + c) * kk + k] =
                c < cin ? ((const float *)t->data)[(o * cin + c) * kk + k] : nonzero ? (float)th_rand(&rs, -0.3, 0.3) : 0;
    }
    LDMC_TRY(ldmc_tensor_set_add(out, &n));
  }
  return LDMC_OK;
}

/* runs g on the interpreter: its inputs in[0..n_in), the rest from ws by name */
static ldmc_status run_interp(const ldmc_graph *g, const ldmc_tensor *in, int n_in, const ldmc_tensor_set *ws,
                              ldmc_tensor *out) {
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *all = calloc((size_t)np, sizeof *all);
  ldmc_status st = all ? LDMC_OK : LDMC_ERR_NOMEM;
  for (int32_t k = 0; k < np && st == LDMC_OK; k++) {
    if (k < n_in) {
      all[k] = in[k], all[k].owns_data = false;
      continue;
    }
    const ldmc_tensor *w = ldmc_tensor_set_find(ws, g->nodes[ldmc_graph_param_node(g, k)].attrs.name);
    if (!w) st = ldmc_error(LDMC_ERR_INVALID, "no weight %s", g->nodes[ldmc_graph_param_node(g, k)].attrs.name);
    else all[k] = *w, all[k].owns_data = false;
  }
  ldmc_executable *e = NULL;
  ldmc_compile_opts co = {.threads = 1};
  if (st == LDMC_OK) st = ldmc_backend_interp.compile(g, &co, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, all, np, out, 1);
  ldmc_executable_free(e);
  free(all);
  return st;
}

static double max_diff(const ldmc_tensor *a, const ldmc_tensor *b) {
  double m = a->nbytes == b->nbytes ? 0 : INFINITY;
  for (int64_t i = 0; m < INFINITY && i < (int64_t)(a->nbytes / 4); i++) {
    double d = fabs((double)((float *)a->data)[i] - (double)((float *)b->data)[i]);
    if (!(d <= m)) m = d;
  }
  return m;
}

static void test_unet_zero_channels(void) {
  ldmc_unet_config c0, c1;
  tiny_config(&c0, 0), tiny_config(&c1, 4);
  ldmc_graph *g0 = NULL, *g1 = NULL;
  CHECK_MSG(ldmc_unet_build(&c0, &g0) == LDMC_OK && ldmc_unet_build(&c1, &g1) == LDMC_OK, "%s", ldmc_last_error());
  if (!g0 || !g1) return;
  const char *names[LDMC_UNET_MAX_INPUTS];
  CHECK(ldmc_unet_n_inputs(&c1) == 4 && ldmc_unet_inputs(&c1, names) == 4 && !strcmp(names[3], "cond_sample"));
  int32_t cp = ldmc_graph_find_param(g1, "cond_sample");
  CHECK(cp >= 0 && ldmc_graph_param_node(g1, 3) == cp && g1->nodes[cp].shape.dims[1] == 4);
  CHECK(ldmc_graph_num_params(g1) == ldmc_graph_num_params(g0) + 1);
  ldmc_tensor_set w0 = {0}, wz = {0}, wr = {0};
  CHECK(ldmc_weights_init_random(g0, ldmc_unet_input_names, 3, 5, &w0) == LDMC_OK);
  CHECK(widen(&w0, 4, false, &wz) == LDMC_OK && widen(&w0, 4, true, &wr) == LDMC_OK);
  const ldmc_tensor *ci = ldmc_tensor_set_find(&wz, "conv_in.weight");
  int32_t cw = ldmc_graph_find_param(g1, "conv_in.weight");
  CHECK(ci && cw >= 0 && ldmc_shape_equal(&ci->shape, &g1->nodes[cw].shape) && ci->shape.dims[1] == 8);
  uint64_t rs = 3;
  ldmc_tensor in[4];
  for (int k = 0; k < 4; k++) {
    const ldmc_node *p = &g1->nodes[ldmc_graph_param_node(g1, k)];
    in[k] = th_random(p->dtype, p->shape, &rs, k == 1 ? 0 : -1, k == 1 ? 999 : 1);
  }
  ldmc_tensor o0 = {0}, oz = {0}, orr = {0};
  CHECK_MSG(run_interp(g0, in, 3, &w0, &o0) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(run_interp(g1, in, 4, &wz, &oz) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(run_interp(g1, in, 4, &wr, &orr) == LDMC_OK, "%s", ldmc_last_error());
  double dz = max_diff(&o0, &oz), dr = max_diff(&o0, &orr);
  CHECK_MSG(dz == 0, "zero extra conv_in channels: max diff %g (want exactly 0)", dz);
  CHECK_MSG(dr > 1e-3, "random extra conv_in channels change the output (max diff %g)", dr);
  printf("U-Net c=8 + cond_sample: zero extra conv_in channels give the plain U-Net's output exactly; random ones "
         "differ by %.3g\n", dr);
  for (int k = 0; k < 4; k++) ldmc_tensor_release(&in[k]);
  ldmc_tensor_release(&o0), ldmc_tensor_release(&oz), ldmc_tensor_release(&orr);
  ldmc_tensor_set_free(&w0), ldmc_tensor_set_free(&wz), ldmc_tensor_set_free(&wr);
  ldmc_graph_free(g0), ldmc_graph_free(g1);
}

/* ---- 3 ---- */
static void test_sampler_cond(void) {
  ldmc_unet_config c1;
  tiny_config(&c1, 4);
  ldmc_graph *g1 = NULL;
  CHECK(ldmc_unet_build(&c1, &g1) == LDMC_OK);
  if (!g1) return;
  ldmc_tensor_set w = {0};
  const char *names[LDMC_UNET_MAX_INPUTS];
  int nin = ldmc_unet_inputs(&c1, names);
  CHECK(ldmc_weights_init_random(g1, names, nin, 7, &w) == LDMC_OK);
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_DDIM, 3);
  ldmc_sampler *s = NULL;
  ldmc_compile_opts co = {.threads = 1};
  CHECK_MSG(ldmc_sampler_new(&dc, &sc, false, g1, &w, &ldmc_backend_interp, &co, &s) == LDMC_OK, "%s",
            ldmc_last_error());
  if (!s) {
    ldmc_tensor_set_free(&w), ldmc_graph_free(g1);
    return;
  }
  uint64_t rs = 21;
  const ldmc_node *xp = &g1->nodes[ldmc_graph_param_node(g1, 0)], *cp = &g1->nodes[ldmc_graph_param_node(g1, 2)];
  const ldmc_node *kp = &g1->nodes[ldmc_graph_param_node(g1, 3)];
  ldmc_tensor xT = th_random(LDMC_F32, xp->shape, &rs, -1, 1), ctx = th_random(LDMC_F32, cp->shape, &rs, -1, 1);
  ldmc_tensor cond = th_random(LDMC_F32, kp->shape, &rs, -1, 1);
  ldmc_sample_run_opts ro = {.seed = 1, .context = &ctx, .x_T = &xT};
  CHECK(ldmc_sample_run(s, &ro) == LDMC_ERR_INVALID); /* no cond */
  CHECK(strstr(ldmc_last_error(), "image condition") != NULL);
  ldmc_tensor bad = th_random(LDMC_F32, xp->shape, &rs, -1, 1);
  bad.shape.dims[1] = 2, bad.nbytes /= 2;
  ro.cond = &bad;
  CHECK(ldmc_sample_run(s, &ro) == LDMC_ERR_INVALID); /* wrong shape */
  ro.cond = &cond;
  CHECK_MSG(ldmc_sample_run(s, &ro) == LDMC_OK, "%s", ldmc_last_error());
  /* the hand-run loop: the U-Net on (x, t, ctx, cond), then DDIM's update */
  const ldmc_sampler_schedule *sch = ldmc_sampler_get_schedule(s);
  int64_t n = (int64_t)(xT.nbytes / 4);
  ldmc_tensor x = th_tensor(LDMC_F32, xp->shape, NULL);
  memcpy(x.data, xT.data, xT.nbytes);
  ldmc_shape ts = {.rank = 1, .dims = {2}};
  ldmc_tensor t = th_tensor(LDMC_F32, ts, NULL);
  bool ok = true;
  for (int k = 0; k < sch->n_steps && ok; k++) {
    const ldmc_sampler_step *p = &sch->steps[k];
    ldmc_tensor_set_elem(&t, 0, (double)p->timestep), ldmc_tensor_set_elem(&t, 1, (double)p->timestep);
    ldmc_tensor in[4] = {x, t, ctx, cond}, eps = {0};
    ok = run_interp(g1, in, 4, &w, &eps) == LDMC_OK;
    for (int64_t i = 0; ok && i < n; i++) {
      double xi = ((float *)x.data)[i], e = ((float *)eps.data)[i];
      double x0 = (xi - p->sigma * e) / p->alpha;
      ((float *)x.data)[i] = (float)(p->c_x * xi + p->c_x0 * x0 + p->c_eps * e);
    }
    ldmc_tensor_release(&eps);
  }
  CHECK_MSG(ok, "hand-run loop: %s", ldmc_last_error());
  double d = max_diff(&x, ldmc_sampler_latents(s));
  CHECK_MSG(d < 1e-4, "DDIM with cond_sample: sampler vs hand-run loop max diff %g", d);
  printf("DDIM (3 steps) with a cond_sample input: sampler vs hand-run loop max diff %.2g\n", d);
  ldmc_tensor_release(&x), ldmc_tensor_release(&t), ldmc_tensor_release(&xT), ldmc_tensor_release(&ctx);
  ldmc_tensor_release(&cond), ldmc_tensor_release(&bad);
  ldmc_sampler_free(s);
  ldmc_tensor_set_free(&w);
  ldmc_graph_free(g1);
}

/* the training step: cond_sample is data (after target), never trained; conv_in (widened) is */
static void test_train_step(void) {
  ldmc_unet_config c;
  tiny_config(&c, 4);
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_unet_train_step_build(&c, NULL, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return;
  int32_t cp = ldmc_graph_find_param(g, "cond_sample"), tp = ldmc_graph_find_param(g, "target");
  CHECK(cp >= 0 && ldmc_graph_param_node(g, 4) == cp && tp >= 0 && ldmc_graph_param_node(g, 3) == tp);
  CHECK(ldmc_graph_find_param(g, "adam_m.cond_sample") < 0);
  int32_t mw = ldmc_graph_find_param(g, "adam_m.conv_in.weight");
  CHECK(mw >= 0 && g->nodes[mw].shape.dims[1] == 8);
  ldmc_graph_free(g);
}

int main(void) {
  test_degrade();
  test_unet_zero_channels();
  test_sampler_cond();
  test_train_step();
  return test_summary("test_superres");
}
