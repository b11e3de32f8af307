/* The diffusion objective (models/diffusion.c):
 *  1. schedules: alphas_cumprod of scaled_linear and squaredcos_cap_v2 against
 *     diffusers' formulas evaluated by torch in float32 (tests/torch/
 *     schedule_ref.py), and SD-1.5's published terminal sqrt(abar_999) =
 *     0.068265 (Lin et al. 2024, "Common diffusion noise schedules and sample
 *     steps are flawed", table 1);
 *  2. the loss graph on interp against the objective recomputed here in
 *     double: the four Philox streams drawn by one-op graphs keyed 4 key + s,
 *     t = floor(1000 u), z0, z_t, prompt dropout, epsilon and v targets,
 *     with a toy U-Net and a toy prompt encoder (an embedding lookup) whose
 *     outputs depend on every input, so any mix-up changes the loss;
 *  3. the same graph with a tiny real U-Net (c=32): loss against the U-Net's
 *     inference graph run on z_t computed here; on llvm-cpu equal to interp;
 *  4. statistics over 4096 rows: t covers 0..999 with mean ~499.5, the
 *     dropout rate ~0.1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "interp_test_util.h"
#include "models/diffusion.h"
#include "models/unet.h"

/* ---- 1: schedules ---- */
static void test_schedules(void) {
  ldmc_diffusion_config c;
  ldmc_diffusion_config_default(&c);
  double ab[1000], ac[1000];
  CHECK(ldmc_diffusion_schedule(&c, NULL, ab) == LDMC_OK);
  CHECK_MSG(fabs(sqrt(ab[999]) - 0.068265) < 2e-6, "SD-1.5 terminal sqrt(abar) %.7f, published 0.068265", sqrt(ab[999]));
  CHECK_MSG(fabs(ab[0] - (1 - 0.00085)) < 1e-12, "abar_0 %.12f", ab[0]);
  c.schedule = LDMC_BETA_SQUAREDCOS_CAP_V2;
  CHECK(ldmc_diffusion_schedule(&c, NULL, ac) == LDMC_OK);
  const char *src = getenv("LDMC_SRC");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/schedule_ref.py 2>&1", src ? src : "..");
  FILE *f = popen(cmd, "r");
  CHECK_MSG(f != NULL, "cannot run %s", cmd);
  if (!f) return;
  char line[256];
  int got = 0;
  while (fgets(line, sizeof line, f)) {
    char name[64];
    int i;
    double v;
    if (sscanf(line, "%63s %d %lf", name, &i, &v) != 3 || i < 0 || i >= 1000) {
      CHECK_MSG(0, "schedule_ref.py: unexpected line '%s'", line);
      continue;
    }
    const double *mine = !strcmp(name, "scaled_linear") ? ab : !strcmp(name, "squaredcos_cap_v2") ? ac : NULL;
    CHECK_MSG(mine != NULL, "schedule_ref.py: unknown schedule %s", name);
    if (!mine) continue;
    /* torch accumulates the product in float32 */
    CHECK_MSG(fabs(mine[i] - v) <= 2e-6 * fmax(v, 1e-3), "%s abar[%d] = %.9g, diffusers' formula in torch %.9g", name, i,
              mine[i], v);
    got++;
  }
  CHECK_MSG(pclose(f) == 0 && got == 12, "schedule_ref.py gave %d values", got);
  ldmc_beta_schedule s;
  CHECK(ldmc_beta_schedule_parse("cosine", &s) != LDMC_OK && strstr(ldmc_last_error(), "squaredcos_cap_v2"));
  c.cond_drop = 1.5;
  CHECK(ldmc_diffusion_config_check(&c) != LDMC_OK && strstr(ldmc_last_error(), "dropout"));
}

/* ---- helpers ---- */
static ldmc_tensor run_rng(ldmc_op op, int64_t n, int64_t key) {
  ldmc_builder *b = ldmc_builder_new("rng");
  ldmc_value k = ldmc_constant_scalar(b, LDMC_I64, (double)key);
  ldmc_builder_output(b, ldmc_rng(b, op, LDMC_F32, 1, &n, k), "r");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  ldmc_tensor out = {0};
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 1};
  if (g && ldmc_backend_interp.compile(g, &o, &e) == LDMC_OK) ldmc_executable_run(e, NULL, 0, &out, 1);
  CHECK_MSG(out.data != NULL, "rng graph: %s", ldmc_last_error());
  ldmc_executable_free(e);
  ldmc_graph_free(g);
  return out;
}

static bool run(const ldmc_backend_i *be, const ldmc_graph *g, const ldmc_tensor *in, ldmc_tensor *out, int n_out) {
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 2};
  ldmc_status st = be->compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, ldmc_graph_num_params(g), out, n_out);
  CHECK_MSG(st == LDMC_OK, "%s: %s: %s", be->name, g->name, ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* toy U-Net: out = w sample + timestep / 1000 + sum over (T, D) of context, per row */
static ldmc_graph *toy_unet(int64_t B, int64_t T, int64_t D) {
  ldmc_builder *b = ldmc_builder_new("toy_unet");
  int64_t zd[4] = {B, 4, 2, 2}, cd[3] = {B, T, D};
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, zd), t = ldmc_parameter(b, "timestep", LDMC_F32, 1, &B);
  ldmc_value c = ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 3, cd);
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 0, NULL);
  const int64_t ax[2] = {1, 2}, row[1] = {0};
  ldmc_value cs = ldmc_reduce(b, LDMC_REDUCE_SUM, c, 2, ax, false);
  ldmc_value r = ldmc_add(b, ldmc_scale(b, t, 1e-3), cs);
  ldmc_value y = ldmc_add(b, ldmc_mul(b, ldmc_broadcast_to(b, w, 4, zd), x), ldmc_broadcast_in_dim(b, r, 4, zd, row));
  ldmc_builder_output(b, y, "out_sample");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

/* toy prompt encoder: context = emb[tokens] */
static ldmc_graph *toy_text(int64_t B, int64_t T, int64_t V, int64_t D) {
  ldmc_builder *b = ldmc_builder_new("toy_text");
  int64_t td[2] = {B, T}, ed[2] = {V, D};
  ldmc_value tok = ldmc_parameter(b, "tokens", LDMC_I32, 2, td), emb = ldmc_parameter(b, "emb", LDMC_F32, 2, ed);
  ldmc_builder_output(b, ldmc_gather(b, emb, tok, 0), "context");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

/* ---- 2 + 4: the objective against double arithmetic ---- */
static void check_toy(int64_t B, ldmc_prediction pred, bool stats) {
  const int64_t T = 3, V = 5, D = 2, key = 12345, Z = 16; /* Z = 4*2*2 per row */
  ldmc_graph *u = toy_unet(B, T, D), *tx = toy_text(B, T, V, D), *g = NULL;
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  dc.prediction = pred;
  const int32_t empty[3] = {0, 4, 4};
  const double scale = 0.5;
  CHECK_MSG(u && tx && ldmc_ldm_loss_build(&dc, u, tx, empty, scale, &g) == LDMC_OK, "build: %s", ldmc_last_error());
  if (!g) goto done;
  CHECK(ldmc_graph_num_params(g) == LDMC_LDM_N_DATA + 2); /* + emb, w */
  const char *names[6] = {"latent_mean", "latent_logvar", "tokens", "key", "emb", "w"};
  for (int k = 0; k < 6; k++)
    CHECK_MSG(!strcmp(g->nodes[ldmc_graph_param_node(g, k)].attrs.name, names[k]), "parameter %d is %s", k,
              g->nodes[ldmc_graph_param_node(g, k)].attrs.name);
  uint64_t rs = 7;
  ldmc_tensor in[6];
  for (int k = 0; k < 6; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    in[k] = th_tensor(p->dtype, p->shape, NULL);
    for (int64_t i = 0; i < th_numel(&p->shape); i++) {
      double v = k == 2 ? (double)(1 + (int)th_rand(&rs, 0, 3.999)) : k == 3 ? (double)key : k == 5 ? 0.75
                 : th_rand(&rs, -1, 1);
      ldmc_tensor_set_elem(&in[k], i, v);
    }
  }
  ldmc_tensor out = {0};
  if (!run(&ldmc_backend_interp, g, in, &out, 1)) goto done;
  double loss = ldmc_tensor_get(&out, 0);

  ldmc_tensor n = run_rng(LDMC_OP_RNG_NORMAL, B * Z, 4 * key + 0), uu = run_rng(LDMC_OP_RNG_UNIFORM, B, 4 * key + 1);
  ldmc_tensor eps = run_rng(LDMC_OP_RNG_NORMAL, B * Z, 4 * key + 2), dd = run_rng(LDMC_OP_RNG_UNIFORM, B, 4 * key + 3);
  double abar[1000];
  ldmc_diffusion_schedule(&dc, NULL, abar);
  double sum = 0, tsum = 0;
  int64_t drops = 0, tmin = 1000, tmax = -1;
  for (int64_t r = 0; r < B; r++) {
    int64_t t = (int64_t)(1000.0f * (float)ldmc_tensor_get(&uu, r)); /* as the graph: in f32 */
    if (t > 999) t = 999;
    tsum += (double)t, tmin = t < tmin ? t : tmin, tmax = t > tmax ? t : tmax;
    bool drop = ldmc_tensor_get(&dd, r) < 0.1;
    drops += drop;
    double cs = 0;
    for (int64_t j = 0; j < T; j++) {
      int64_t id = drop ? empty[j] : (int64_t)ldmc_tensor_get(&in[2], r * T + j);
      for (int64_t k = 0; k < D; k++) cs += ldmc_tensor_get(&in[4], id * D + k);
    }
    double a = sqrt(abar[t]), s = sqrt(1 - abar[t]);
    for (int64_t i = 0; i < Z; i++) {
      int64_t at = r * Z + i;
      double z0 = scale * (ldmc_tensor_get(&in[0], at) + exp(0.5 * ldmc_tensor_get(&in[1], at)) * ldmc_tensor_get(&n, at));
      double e = ldmc_tensor_get(&eps, at), zt = a * z0 + s * e;
      double y = 0.75 * zt + (double)t * 1e-3 + cs, target = pred == LDMC_PREDICT_V ? a * e - s * z0 : e;
      sum += (y - target) * (y - target);
    }
  }
  double want = sum / (double)(B * Z);
  CHECK_MSG(fabs(loss - want) <= 2e-5 * fabs(want), "B=%lld %s: loss %.8g, recomputed %.8g", (long long)B,
            ldmc_prediction_name(pred), loss, want);
  if (stats) {
    double rate = (double)drops / (double)B, mean = tsum / (double)B;
    CHECK_MSG(rate > 0.085 && rate < 0.115, "dropout rate %.4f over %lld rows", rate, (long long)B);
    CHECK_MSG(fabs(mean - 499.5) < 15 && tmin < 5 && tmax > 994, "timesteps: mean %.1f, range %lld..%lld", mean,
              (long long)tmin, (long long)tmax);
  }
  ldmc_tensor_release(&n), ldmc_tensor_release(&uu), ldmc_tensor_release(&eps), ldmc_tensor_release(&dd);
  ldmc_tensor_release(&out);
  th_release(6, in);
done:
  ldmc_graph_free(u), ldmc_graph_free(tx), ldmc_graph_free(g);
}

/* ---- 3: a tiny real U-Net, context given directly ---- */
static void test_unet(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 8, cfg.context_dim = 16, cfg.context_tokens = 4, cfg.batch = 2, cfg.groups = 8;
  ldmc_graph *u = NULL, *g = NULL;
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  CHECK_MSG(ldmc_unet_build(&cfg, &u) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(u && ldmc_ldm_loss_build(&dc, u, NULL, NULL, 0.18215, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) goto done;
  int32_t np = ldmc_graph_num_params(g), nu = ldmc_graph_num_params(u);
  CHECK(np == nu + 1); /* mean, logvar, context, key + weights vs sample, t, context + weights */
  ldmc_tensor *in = calloc((size_t)np, sizeof *in), *ui = calloc((size_t)nu, sizeof *ui);
  uint64_t rs = 3;
  const int64_t key = 99;
  for (int32_t k = 0; k < np; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    in[k] = th_tensor(p->dtype, p->shape, NULL);
    double w = p->shape.rank >= 2 ? 0.2 : 0.5;
    for (int64_t i = 0; i < th_numel(&p->shape); i++)
      ldmc_tensor_set_elem(&in[k], i, k == 3 ? (double)key : k == 1 ? th_rand(&rs, -2, 0) : th_rand(&rs, -w, w));
  }
  ldmc_tensor lo = {0}, ll = {0}, uo = {0};
  if (!run(&ldmc_backend_interp, g, in, &lo, 1) || !run(&ldmc_backend_llvm_cpu, g, in, &ll, 1)) goto out;
  int64_t Z = 4 * 8 * 8, B = 2;
  ldmc_tensor n = run_rng(LDMC_OP_RNG_NORMAL, B * Z, 4 * key), uu = run_rng(LDMC_OP_RNG_UNIFORM, B, 4 * key + 1);
  ldmc_tensor eps = run_rng(LDMC_OP_RNG_NORMAL, B * Z, 4 * key + 2);
  double abar[1000];
  ldmc_diffusion_schedule(&dc, NULL, abar);
  ui[0] = th_tensor(LDMC_F32, g->nodes[ldmc_graph_param_node(g, 0)].shape, NULL);
  ui[1] = th_tensor(LDMC_F32, SHAPE(2), NULL);
  int64_t ts[2];
  for (int64_t r = 0; r < B; r++) {
    ts[r] = (int64_t)(1000.0f * (float)ldmc_tensor_get(&uu, r));
    ldmc_tensor_set_elem(&ui[1], r, (double)ts[r]);
    for (int64_t i = 0; i < Z; i++) {
      int64_t at = r * Z + i;
      double z0 = 0.18215 * (ldmc_tensor_get(&in[0], at) + exp(0.5 * ldmc_tensor_get(&in[1], at)) * ldmc_tensor_get(&n, at));
      ldmc_tensor_set_elem(&ui[0], at, sqrt(abar[ts[r]]) * z0 + sqrt(1 - abar[ts[r]]) * ldmc_tensor_get(&eps, at));
    }
  }
  ui[2] = in[2];
  for (int32_t k = 3; k < nu; k++) ui[k] = in[k + 1];
  if (run(&ldmc_backend_interp, u, ui, &uo, 1)) {
    double sum = 0;
    for (int64_t i = 0; i < B * Z; i++) {
      double d = ldmc_tensor_get(&uo, i) - ldmc_tensor_get(&eps, i);
      sum += d * d;
    }
    double want = sum / (double)(B * Z), got = ldmc_tensor_get(&lo, 0), gl = ldmc_tensor_get(&ll, 0);
    CHECK_MSG(fabs(got - want) <= 1e-4 * want, "U-Net loss %.8g, recomputed %.8g (t = %lld, %lld)", got, want,
              (long long)ts[0], (long long)ts[1]);
    CHECK_MSG(fabs(gl - got) <= 1e-4 * got, "llvm-cpu loss %.8g, interp %.8g", gl, got);
  }
  ldmc_tensor_release(&n), ldmc_tensor_release(&uu), ldmc_tensor_release(&eps), ldmc_tensor_release(&uo);
  ldmc_tensor_release(&ui[0]), ldmc_tensor_release(&ui[1]);
out:
  ldmc_tensor_release(&lo), ldmc_tensor_release(&ll);
  th_release(np, in);
  free(in), free(ui);
done:
  ldmc_graph_free(u), ldmc_graph_free(g);
}

int main(void) {
  test_schedules();
  check_toy(7, LDMC_PREDICT_EPSILON, false);
  check_toy(5, LDMC_PREDICT_V, false);
  check_toy(4096, LDMC_PREDICT_EPSILON, true);
  test_unet();
  return test_summary("diffusion");
}
