/* Latent consistency distillation (models/distill.c) and the LCM sampler:
 *  1. the boundary scalings: c_skip(0) = 1, c_out(0) = 0, and hand values;
 *  2. LCMScheduler's timesteps (diffusers' set_timesteps worked by hand for
 *     1, 2, 3, 4, 8 and 50 steps) and per-step coefficients;
 *  3. the loss graph on interp with toy models (a linear teacher and student
 *     whose outputs depend on every input): the teacher's guided solver step
 *     against the sampling code's DDIM step (50 steps, steps_offset 19,
 *     abar_prev of the last = abar_0), and f, y and the loss recomputed here
 *     in double from the probe outputs, for the L2 and pseudo-Huber losses;
 *  4. one distillation step of a tiny real U-Net set up by ldmc_lcd_job_build:
 *     interp against llvm-cpu (loss, and every updated state tensor);
 *  5. Gaussian data with the analytic denoiser as teacher: distilling a
 *     student eps(x, t) = u[t] x + v[t] lowers the loss and moves its
 *     1-step samples' variance toward the data's (the teacher-initialized
 *     student's 1-step samples have almost none). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "interp_test_util.h"
#include "models/distill.h"
#include "models/ldm_model.h"
#include "models/samplers.h"
#include "models/train_session.h"
#include "models/weights.h"

/* ---- 1, 2 ---- */
static void test_boundary_and_schedule(void) {
  double cs, co;
  ldmc_lcm_boundary(0, 10, &cs, &co);
  CHECK(cs == 1.0 && co == 0.0);
  ldmc_lcm_boundary(1, 10, &cs, &co); /* s = 10: 0.25 / 100.25, 10 / sqrt(100.25) */
  CHECK_NEAR(cs, 0.25 / 100.25, 1e-15);
  CHECK_NEAR(co, 10 / sqrt(100.25), 1e-15);
  ldmc_lcm_boundary(999, 10, &cs, &co);
  CHECK(cs < 1e-8 && fabs(co - 1) < 1e-8);

  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  static const int64_t want1[] = {999}, want2[] = {999, 499}, want3[] = {999, 679, 339},
                       want4[] = {999, 759, 499, 259}, want8[] = {999, 879, 759, 639, 499, 379, 259, 139};
  const int64_t *want[] = {want1, want2, want3, want4, want8};
  const int ns[] = {1, 2, 3, 4, 8};
  double abar[1000];
  ldmc_diffusion_schedule(&dc, NULL, abar);
  for (int k = 0; k < 5; k++) {
    ldmc_sampler_config sc;
    ldmc_sampler_config_default(&sc, LDMC_SAMPLER_LCM, ns[k]);
    ldmc_sampler_schedule s;
    CHECK_MSG(ldmc_sampler_schedule_build(&dc, &sc, &s) == LDMC_OK, "%s", ldmc_last_error());
    CHECK(s.n_steps == ns[k]);
    for (int i = 0; i < s.n_steps && i < ns[k]; i++) {
      const ldmc_sampler_step *p = &s.steps[i];
      CHECK_MSG(p->timestep == want[k][i], "lcm %d steps: step %d timestep %lld, diffusers %lld", ns[k], i,
                (long long)p->timestep, (long long)want[k][i]);
      double tcs, tco;
      ldmc_lcm_boundary((double)want[k][i], 10, &tcs, &tco);
      bool last = i == ns[k] - 1;
      double abp = last ? 1 : abar[want[k][i + 1]];
      CHECK_NEAR(p->c_x, (last ? 1 : sqrt(abp)) * tcs, 1e-12);
      CHECK_NEAR(p->c_x0, (last ? 1 : sqrt(abp)) * tco, 1e-12);
      CHECK_NEAR(p->c_noise, last ? 0 : sqrt(1 - abp), 1e-12);
      CHECK(p->c_eps == 0 && p->c_d == 0);
      CHECK_NEAR(p->alpha, sqrt(abar[want[k][i]]), 1e-12);
    }
    ldmc_sampler_schedule_release(&s);
  }
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_LCM, 50);
  ldmc_sampler_schedule s;
  CHECK(ldmc_sampler_schedule_build(&dc, &sc, &s) == LDMC_OK && s.n_steps == 50 && s.steps[49].timestep == 19 &&
        s.steps[1].timestep == 979);
  ldmc_sampler_schedule_release(&s);
  sc.steps = 51;
  CHECK(ldmc_sampler_schedule_build(&dc, &sc, &s) != LDMC_OK && strstr(ldmc_last_error(), "solver steps"));
  ldmc_sampler_kind kind;
  CHECK(ldmc_sampler_parse("lcm", &kind) == LDMC_OK && kind == LDMC_SAMPLER_LCM);
  sc.steps = 4;
  CHECK(ldmc_sampler_is_stochastic(&sc));
  sc.steps = 1;
  CHECK(!ldmc_sampler_is_stochastic(&sc));
}

static ldmc_graph *toy_unet(int64_t rows, bool guided);

/* ---- the LCM sampler on a toy distilled denoiser: m = 0.3 x + 0.1 w ---- */
static ldmc_graph *toy_lcm_denoiser(int64_t rows) {
  ldmc_builder *b = ldmc_builder_new("toy_lcm");
  int64_t zd[4] = {rows, 1, 2, 2}, cd[3] = {rows, 1, 2};
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, zd);
  ldmc_parameter(b, "timestep", LDMC_F32, 1, &rows);
  ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 3, cd);
  ldmc_value g = ldmc_parameter(b, "guidance", LDMC_F32, 1, &rows);
  const int64_t row[1] = {0};
  ldmc_builder_output(b, ldmc_add(b, ldmc_scale(b, x, 0.3), ldmc_broadcast_in_dim(b, ldmc_scale(b, g, 0.1), 4, zd, row)),
                      "out_sample");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static void test_lcm_sampler(void) {
  enum { R = 3, E = 4 };
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  double abar[1000];
  ldmc_diffusion_schedule(&dc, NULL, abar);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_LCM, 2);
  ldmc_graph *d = toy_lcm_denoiser(R), *noise = NULL;
  ldmc_sampler *s = NULL;
  ldmc_compile_opts co = {.threads = 1};
  ldmc_status st = ldmc_sampler_new(&dc, &sc, false, d, NULL, &ldmc_backend_interp, &co, &s);
  CHECK_MSG(st == LDMC_OK, "lcm sampler: %s", ldmc_last_error());
  /* an undistilled denoiser (no guidance input) is refused */
  ldmc_graph *plain = toy_unet(R, false);
  ldmc_sampler *bad = NULL;
  CHECK(ldmc_sampler_new(&dc, &sc, false, plain, NULL, &ldmc_backend_interp, &co, &bad) != LDMC_OK &&
        strstr(ldmc_last_error(), "no guidance input"));
  ldmc_graph_free(plain);
  uint64_t rs = 5;
  ldmc_tensor xT = th_random(LDMC_F32, SHAPE(R, 1, 2, 2), &rs, -1, 1), ctx = th_random(LDMC_F32, SHAPE(R, 1, 2), &rs, 0, 1);
  const double scale = 4.0, w = scale - 1;
  if (st == LDMC_OK) {
    ldmc_sample_run_opts ro = {.seed = 9, .first_image = 2, .context = &ctx, .guidance_scale = scale, .x_T = &xT};
    st = ldmc_sample_run(s, &ro);
    CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  }
  /* by hand: the noise of step 1 is the noise graph's at keys (seed, image, 1) */
  ldmc_tensor keys = {0}, z = {0};
  int64_t B = R;
  CHECK(ldmc_sampler_noise_build(4, DIMS(R, 1, 2, 2), &noise) == LDMC_OK);
  ldmc_shape ks = ldmc_shape_make(1, &B);
  ldmc_tensor_alloc(&keys, "noise_key", LDMC_I64, &ks);
  for (int r = 0; r < R; r++) ((int64_t *)keys.data)[r] = ldmc_sample_noise_key(9, 2 + r, 1);
  ldmc_executable *ne = NULL;
  if (noise && ldmc_backend_interp.compile(noise, &co, &ne) == LDMC_OK) ldmc_executable_run(ne, &keys, 1, &z, 1);
  if (st == LDMC_OK && z.data) {
    const float *x0 = xT.data, *zz = z.data, *got = ldmc_sampler_latents(s)->data;
    double worst = 0;
    const int t1 = 999, t2 = 499;
    double cs1, co1, cs2, co2;
    ldmc_lcm_boundary(t1, 10, &cs1, &co1);
    ldmc_lcm_boundary(t2, 10, &cs2, &co2);
    for (int i = 0; i < R * E; i++) {
      double x = x0[i], m = 0.3 * x + 0.1 * w;
      double den = cs1 * x + co1 * (x - sqrt(1 - abar[t1]) * m) / sqrt(abar[t1]);
      double x1 = sqrt(abar[t2]) * den + sqrt(1 - abar[t2]) * zz[i];
      double m2 = 0.3 * x1 + 0.1 * w;
      double out = cs2 * x1 + co2 * (x1 - sqrt(1 - abar[t2]) * m2) / sqrt(abar[t2]);
      worst = fmax(worst, fabs(out - got[i]) / (1 + fabs(out)));
    }
    CHECK_MSG(worst < 1e-5, "lcm 2 steps against the scheduler's formulas: worst %g", worst);
  }
  ldmc_executable_free(ne);
  ldmc_tensor_release(&keys), ldmc_tensor_release(&z), ldmc_tensor_release(&xT), ldmc_tensor_release(&ctx);
  ldmc_sampler_free(s);
  ldmc_graph_free(noise), ldmc_graph_free(d);
}

/* ---- the train step's ema_from_model and frozen_regex ---- */
static ldmc_graph *ema_model(const char *ema_name) {
  ldmc_builder *b = ldmc_builder_new("m");
  int64_t n = 3;
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 1, &n), p = ldmc_parameter(b, "P", LDMC_F32, 1, &n);
  ldmc_value e = ldmc_parameter(b, ema_name, LDMC_F32, 1, &n), f = ldmc_parameter(b, "frozen.F", LDMC_F32, 1, &n);
  const int64_t ax[1] = {0};
  ldmc_value d = ldmc_sub(b, ldmc_add(b, p, f), e);
  ldmc_builder_output(b, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, ldmc_mul(b, d, d), x), 1, ax, false), "loss");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static void test_ema_from_model(void) {
  ldmc_graph *m = ema_model("ema.P"), *step = NULL;
  ldmc_train_opts o = {.n_data_params = 1, .ema_decay = 0.5, .ema_from_model = true, .frozen_regex = "^frozen\\."};
  CHECK_MSG(ldmc_train_step_build(m, &o, &step) == LDMC_OK, "%s", ldmc_last_error());
  if (step) {
    /* x, lr, step, P, adam_m.P, adam_v.P, ema.P, frozen.F: the model's ema.P is the step's */
    static const char *want[] = {"x", "lr", "step", "P", "adam_m.P", "adam_v.P", "ema.P", "frozen.F"};
    CHECK(ldmc_graph_num_params(step) == 8);
    for (int k = 0; k < 8 && k < ldmc_graph_num_params(step); k++)
      CHECK_MSG(!strcmp(step->nodes[ldmc_graph_param_node(step, k)].attrs.name, want[k]), "param %d %s", k,
                step->nodes[ldmc_graph_param_node(step, k)].attrs.name);
    /* loss = sum(x (P + F - E)^2) with E the EMA input; grad P = 2 x (P + F - E) */
    ldmc_tensor in[8] = {th_tensor(LDMC_F32, SHAPE(3), VALS(1, 2, 3)), th_tensor(LDMC_F32, SHAPE0, VALS(0.1)),
                         th_tensor(LDMC_F32, SHAPE0, VALS(1)),         th_tensor(LDMC_F32, SHAPE(3), VALS(1, 1, 1)),
                         th_tensor(LDMC_F32, SHAPE(3), VALS(0, 0, 0)), th_tensor(LDMC_F32, SHAPE(3), VALS(0, 0, 0)),
                         th_tensor(LDMC_F32, SHAPE(3), VALS(0.5, 2, 1)), th_tensor(LDMC_F32, SHAPE(3), VALS(0.25, 0, 0))};
    ldmc_tensor out[6] = {{0}};
    ldmc_executable *e = NULL;
    ldmc_compile_opts co = {.threads = 1};
    ldmc_status st = ldmc_backend_interp.compile(step, &co, &e);
    if (st == LDMC_OK) st = ldmc_executable_run(e, in, 8, out, 6);
    CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
    if (st == LDMC_OK) {
      /* d = (0.75, -1, 0): loss 1 * 0.5625 + 2 * 1 + 0 */
      CHECK_NEAR(ldmc_tensor_get(&out[0], 0), 2.5625, 1e-6);
      /* Adam's first step: P - lr sign(g), g = (1.5, -4, 0) -> (0.9, 1.1, 1); ema = 0.5 E + 0.5 P' */
      int oe = -1, op = -1;
      for (int k = 0; k < step->n_outputs; k++) {
        if (!strcmp(step->output_names[k], "ema.P")) oe = k;
        if (!strcmp(step->output_names[k], "P")) op = k;
      }
      CHECK(oe >= 0 && op >= 0 && step->n_outputs == 6);
      if (op >= 0) CHECK_NEAR(ldmc_tensor_get(&out[op], 0), 0.9, 1e-6);
      if (op >= 0) CHECK_NEAR(ldmc_tensor_get(&out[op], 1), 1.1, 1e-6);
      if (oe >= 0) CHECK_NEAR(ldmc_tensor_get(&out[oe], 1), 0.5 * 2 + 0.5 * 1.1, 1e-6);
    }
    for (int k = 0; k < 6; k++) ldmc_tensor_release(&out[k]);
    for (int k = 0; k < 8; k++) ldmc_tensor_release(&in[k]);
    ldmc_executable_free(e);
  }
  ldmc_graph_free(step), step = NULL;
  ldmc_graph *bad = ema_model("ema.Q");
  CHECK(ldmc_train_step_build(bad, &o, &step) != LDMC_OK && strstr(ldmc_last_error(), "ema.Q") &&
        strstr(ldmc_last_error(), "not trained"));
  o.ema_decay = 0;
  CHECK(ldmc_train_step_build(m, &o, &step) != LDMC_OK && strstr(ldmc_last_error(), "ema_decay"));
  o.ema_decay = 0.5, o.frozen_regex = "(";
  CHECK(ldmc_train_step_build(m, &o, &step) != LDMC_OK && strstr(ldmc_last_error(), "frozen_regex"));
  ldmc_graph_free(bad), ldmc_graph_free(m);
}

/* ---- 3: toy models ---- */
enum { B = 6, TT = 3, V = 5, D = 2, Z = 16 }; /* Z = 4 x 2 x 2 per row */

/* out = w sample + timestep / 1000 + sum(context) [+ 0.1 guidance], per row */
static ldmc_graph *toy_unet(int64_t rows, bool guided) {
  ldmc_builder *b = ldmc_builder_new(guided ? "toy_student" : "toy_teacher");
  int64_t zd[4] = {rows, 4, 2, 2}, cd[3] = {rows, TT, D};
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, zd), t = ldmc_parameter(b, "timestep", LDMC_F32, 1, &rows);
  ldmc_value c = ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 3, cd);
  ldmc_value g = guided ? ldmc_parameter(b, "guidance", LDMC_F32, 1, &rows) : -1;
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 0, NULL);
  const int64_t ax[2] = {1, 2}, row[1] = {0};
  ldmc_value r = ldmc_add(b, ldmc_scale(b, t, 1e-3), ldmc_reduce(b, LDMC_REDUCE_SUM, c, 2, ax, false));
  if (guided) r = ldmc_add(b, r, ldmc_scale(b, g, 0.1));
  ldmc_value y = ldmc_add(b, ldmc_mul(b, ldmc_broadcast_to(b, w, 4, zd), x), ldmc_broadcast_in_dim(b, r, 4, zd, row));
  ldmc_builder_output(b, y, "out_sample");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static ldmc_graph *toy_text(void) {
  ldmc_builder *b = ldmc_builder_new("toy_text");
  int64_t td[2] = {B, TT}, ed[2] = {V, D};
  ldmc_value tok = ldmc_parameter(b, "tokens", LDMC_I32, 2, td), emb = ldmc_parameter(b, "emb", LDMC_F32, 2, ed);
  ldmc_builder_output(b, ldmc_gather(b, emb, tok, 0), "context");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static double ctx_sum(const float *emb, const int32_t *tok) {
  double s = 0;
  for (int j = 0; j < TT; j++)
    for (int d = 0; d < D; d++) s += emb[tok[j] * D + d];
  return s;
}

static void check_toy_loss(ldmc_lcd_loss_kind kind) {
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  ldmc_lcd_config lc;
  ldmc_lcd_config_default(&lc);
  lc.loss = kind;
  lc.huber_c = 0.05;
  lc.probe_outputs = true;
  const int32_t empty[TT] = {0, 4, 4};
  const double lscale = 0.7;
  ldmc_graph *st_g = toy_unet(B, true), *te_g = toy_unet(2 * B, false), *tx = toy_text(), *g = NULL;
  CHECK_MSG(ldmc_lcd_loss_build(&dc, &lc, st_g, te_g, tx, empty, lscale, &g) == LDMC_OK, "build: %s", ldmc_last_error());
  if (!g) goto done;
  static const char *names[] = {"latent_mean", "latent_logvar", "tokens", "key", "text.emb", "w", "teacher.w", "ema.w"};
  CHECK(ldmc_graph_num_params(g) == 8);
  for (int k = 0; k < 8 && k < ldmc_graph_num_params(g); k++)
    CHECK_MSG(!strcmp(g->nodes[ldmc_graph_param_node(g, k)].attrs.name, names[k]), "parameter %d is %s", k,
              g->nodes[ldmc_graph_param_node(g, k)].attrs.name);
  uint64_t rs = 11;
  ldmc_tensor in[8];
  in[0] = th_random(LDMC_F32, SHAPE(B, 4, 2, 2), &rs, -1, 1);
  in[1] = th_random(LDMC_F32, SHAPE(B, 4, 2, 2), &rs, -3, -1);
  int32_t tok[B * TT];
  for (int i = 0; i < B * TT; i++) tok[i] = (int32_t)((i * 7 + 3) % V);
  double tokd[B * TT];
  for (int i = 0; i < B * TT; i++) tokd[i] = tok[i];
  in[2] = th_tensor(LDMC_I32, SHAPE(B, TT), tokd);
  in[3] = th_tensor(LDMC_I64, SHAPE0, VALS(424242));
  in[4] = th_random(LDMC_F32, SHAPE(V, D), &rs, -0.3, 0.3);
  in[5] = th_tensor(LDMC_F32, SHAPE0, VALS(0.3));  /* student */
  in[6] = th_tensor(LDMC_F32, SHAPE0, VALS(0.45)); /* teacher */
  in[7] = th_tensor(LDMC_F32, SHAPE0, VALS(0.2));  /* target */
  ldmc_tensor out[7] = {{0}};
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 1};
  ldmc_status st = ldmc_backend_interp.compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, 8, out, 7);
  CHECK_MSG(st == LDMC_OK, "run: %s", ldmc_last_error());
  if (st == LDMC_OK) {
    double abar[1000];
    ldmc_diffusion_schedule(&dc, NULL, abar);
    /* the sampling code's DDIM over the 50 solver timesteps: 999, 979, ..., 19 */
    ldmc_sampler_config sc;
    ldmc_sampler_config_default(&sc, LDMC_SAMPLER_DDIM, 50);
    sc.steps_offset = 19;
    sc.set_alpha_to_one = false;
    ldmc_sampler_schedule ddim;
    CHECK(ldmc_sampler_schedule_build(&dc, &sc, &ddim) == LDMC_OK);
    const float *ts = out[1].data, *sc_ = out[2].data, *x = out[3].data, *xe = out[4].data, *f = out[5].data;
    const float *y = out[6].data, *emb = in[4].data;
    int32_t etok[TT];
    memcpy(etok, empty, sizeof etok);
    double worst_xe = 0, worst_f = 0, worst_y = 0, loss = 0;
    bool all_grid = true, all_range = true;
    int seen_low = 0;
    for (int r = 0; r < B; r++) {
      int t = (int)ts[r], te = t - 20 < 0 ? 0 : t - 20;
      all_grid &= (t + 1) % 20 == 0 && t >= 19 && t <= 999;
      all_range &= sc_[r] >= 2 && sc_[r] <= 8;
      seen_low += t == 19;
      const ldmc_sampler_step *dd = NULL;
      for (int i = 0; i < ddim.n_steps; i++)
        if (ddim.steps[i].timestep == t) dd = &ddim.steps[i];
      CHECK_MSG(dd != NULL, "timestep %d is no DDIM solver timestep", t);
      if (!dd) continue;
      double a = sqrt(abar[t]), sg = sqrt(1 - abar[t]), ae = sqrt(abar[te]), se = sqrt(1 - abar[te]);
      double cc = t * 1e-3 + ctx_sum(emb, tok + r * TT), cu = t * 1e-3 + ctx_sum(emb, etok), s = sc_[r], wl = s - 1;
      double cks, cos_, cke, coe;
      ldmc_lcm_boundary(t, 10, &cks, &cos_);
      ldmc_lcm_boundary(te, 10, &cke, &coe);
      for (int j = 0; j < Z; j++) {
        double xv = x[r * Z + j];
        double mc = 0.45 * xv + cc, mu = 0.45 * xv + cu; /* epsilon prediction */
        double x0c = (xv - sg * mc) / a, x0u = (xv - sg * mu) / a;
        double x0g = x0u + s * (x0c - x0u), epg = mu + s * (mc - mu);
        double xe_ref = dd->c_x0 * x0g + dd->c_eps * epg; /* DDIM, eta 0 */
        worst_xe = fmax(worst_xe, fabs(xe_ref - xe[r * Z + j]) / (1 + fabs(xe_ref)));
        double ms = 0.3 * xv + t * 1e-3 + ctx_sum(emb, tok + r * TT) + 0.1 * wl;
        double f_ref = cks * xv + cos_ * (xv - sg * ms) / a;
        double xev = xe[r * Z + j];
        double mt = 0.2 * xev + te * 1e-3 + ctx_sum(emb, tok + r * TT) + 0.1 * wl;
        double y_ref = cke * xev + coe * (xev - se * mt) / ae;
        worst_f = fmax(worst_f, fabs(f_ref - f[r * Z + j]) / (1 + fabs(f_ref)));
        worst_y = fmax(worst_y, fabs(y_ref - y[r * Z + j]) / (1 + fabs(y_ref)));
        double d = f_ref - y_ref;
        loss += kind == LDMC_LCD_HUBER ? sqrt(d * d + 0.05 * 0.05) - 0.05 : d * d;
      }
      (void)dd;
    }
    loss /= (double)(B * Z);
    CHECK_MSG(worst_xe < 2e-5, "x_prev against DDIM's step: worst relative error %g", worst_xe);
    CHECK_MSG(worst_f < 2e-5 && worst_y < 2e-5, "prediction %g, target %g", worst_f, worst_y);
    CHECK_NEAR(ldmc_tensor_get(&out[0], 0), loss, 1e-5 * (1 + loss));
    CHECK_MSG(all_grid && all_range, "t_start on the solver grid and scale in [2, 8]");
    (void)seen_low;
    ldmc_sampler_schedule_release(&ddim);
  }
  for (int k = 0; k < 7; k++) ldmc_tensor_release(&out[k]);
  for (int k = 0; k < 8; k++) ldmc_tensor_release(&in[k]);
  ldmc_executable_free(e);
done:
  ldmc_graph_free(g), ldmc_graph_free(st_g), ldmc_graph_free(te_g), ldmc_graph_free(tx);
}

/* ---- 4: a tiny real model, interp against llvm-cpu ---- */
static void fake_model(ldmc_ldm_model *m) {
  memset(m, 0, sizeof *m);
  ldmc_unet_config_default(&m->unet, 32);
  m->unet.height = m->unet.width = 8, m->unet.context_dim = 16, m->unet.context_tokens = 4, m->unet.groups = 8;
  m->unet.n_levels = 2, m->unet.batch = 1;
  ldmc_clip_config_words(&m->text, 16, 4);
  m->text.layers = 1, m->text.heads = 2, m->text.batch = 1;
  ldmc_diffusion_config_default(&m->diffusion);
  m->latent_scale = 0.9;
  ldmc_graph *u = NULL, *t = NULL;
  CHECK(ldmc_unet_build(&m->unet, &u) == LDMC_OK && ldmc_clip_build(&m->text, &t) == LDMC_OK);
  static const char *tin[] = {"tokens"};
  CHECK(u && ldmc_weights_init_random(u, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, 5, &m->unet_w) == LDMC_OK);
  CHECK(t && ldmc_weights_init_random(t, tin, 1, 6, &m->text_w) == LDMC_OK);
  ldmc_graph_free(u), ldmc_graph_free(t);
}

static void run_step(const ldmc_backend_i *be, const ldmc_lcd_job *j, ldmc_tensor **state, int32_t *n_state,
                     double *loss) {
  ldmc_train_opts to = {.clip_norm = 1.0, .master_f32 = true};
  ldmc_lcd_train_opts(&to, 0.95);
  ldmc_compile_opts co = {.threads = 2, .no_disk_cache = true};
  ldmc_train_session *s = NULL;
  *loss = NAN;
  ldmc_status st = ldmc_train_session_new(j->loss, LDMC_LDM_N_DATA, &to, 3, &j->init, be, &co, &s);
  CHECK_MSG(st == LDMC_OK, "%s session: %s", be->name, ldmc_last_error());
  if (st != LDMC_OK) return;
  uint64_t rs = 99;
  for (int k = 0; k < 2; k++) {
    float *v = s->inputs[k].data;
    for (size_t i = 0; i < s->inputs[k].nbytes / 4; i++) v[i] = (float)th_rand(&rs, k ? -4 : -1, k ? -2 : 1);
  }
  int32_t *tok = s->inputs[2].data;
  for (size_t i = 0; i < s->inputs[2].nbytes / 4; i++) tok[i] = (int32_t)(i % 7);
  ((int64_t *)s->inputs[3].data)[0] = 1234;
  ldmc_tensor_set_elem(&s->inputs[s->n_data], 0, 1e-3);
  ldmc_tensor_set_elem(&s->inputs[s->n_data + 1], 0, 1);
  int32_t no = s->step->n_outputs;
  ldmc_tensor *out = calloc((size_t)no, sizeof *out);
  st = ldmc_executable_run(s->exe, s->inputs, s->n_inputs, out, no);
  CHECK_MSG(st == LDMC_OK, "%s step: %s", be->name, ldmc_last_error());
  if (st == LDMC_OK) *loss = ldmc_tensor_get(&out[0], 0);
  *n_state = s->n_inputs;
  *state = calloc((size_t)s->n_inputs, sizeof **state);
  for (int32_t k = 0; k < s->n_inputs; k++) {
    ldmc_tensor *t = &s->inputs[k];
    ldmc_tensor_alloc(&(*state)[k], t->name, t->dtype, &t->shape);
    memcpy((*state)[k].data, t->data, t->nbytes);
  }
  for (int32_t k = 0; k < no; k++) ldmc_tensor_release(&out[k]);
  free(out);
  ldmc_train_session_free(s);
}

static void test_step_backends(void) {
  ldmc_ldm_model m;
  fake_model(&m);
  ldmc_lcd_config lc;
  ldmc_lcd_config_default(&lc);
  ldmc_lcd_job j;
  ldmc_status st = ldmc_lcd_job_build(&m, &lc, 16, 2, &j);
  CHECK_MSG(st == LDMC_OK, "job: %s", ldmc_last_error());
  if (st != LDMC_OK) {
    ldmc_ldm_model_free(&m);
    return;
  }
  CHECK(ldmc_tensor_set_find(&j.init, "teacher.conv_in.weight") && ldmc_tensor_set_find(&j.init, "conv_in.weight"));
  const ldmc_tensor *cp = ldmc_tensor_set_find(&j.init, "time_embedding.cond_proj.weight");
  CHECK(cp && cp->shape.dims[0] == 32 && cp->shape.dims[1] == 16);
  ldmc_tensor *a = NULL, *c = NULL;
  int32_t na = 0, nc = 0;
  double la, lcv;
  run_step(&ldmc_backend_interp, &j, &a, &na, &la);
  run_step(&ldmc_backend_llvm_cpu, &j, &c, &nc, &lcv);
  CHECK_MSG(isfinite(la) && fabs(la - lcv) <= 1e-4 * fabs(la) + 1e-9, "loss interp %.9g, llvm-cpu %.9g", la, lcv);
  CHECK(na == nc && na > 0);
  /* Gradients (adam_m.P = 0.1 g after the first step) agree to f32
   * rounding relative to each tensor's scale; the weights move by about lr
   * (Adam's first step is lr sign(g)), so an element whose gradient is
   * rounding noise may move the other way: they agree within 2 lr. */
  double worst_g = 0, worst_w = 0;
  const char *gname = "", *wname = "";
  int n_ema = 0, n_m = 0;
  for (int32_t k = 0; k < na && k < nc; k++) {
    if (a[k].dtype != LDMC_F32 || k < LDMC_LDM_N_DATA + 2) continue;
    bool moment = !strncmp(a[k].name, "adam_m.", 7), second = !strncmp(a[k].name, "adam_v.", 7);
    n_ema += !strncmp(a[k].name, "ema.", 4);
    n_m += moment;
    if (second) continue;
    const float *x = a[k].data, *y = c[k].data;
    double scale = 0;
    for (size_t i = 0; i < a[k].nbytes / 4; i++) scale = fmax(scale, fabs(x[i]));
    for (size_t i = 0; i < a[k].nbytes / 4; i++) {
      double d = fabs(x[i] - y[i]);
      if (moment && d / (scale + 1e-12) > worst_g) worst_g = d / (scale + 1e-12), gname = a[k].name;
      if (!moment && d > worst_w) worst_w = d, wname = a[k].name;
    }
  }
  CHECK_MSG(worst_g < 1e-3, "gradients: worst difference %g of the tensor's scale in %s", worst_g, gname);
  CHECK_MSG(worst_w <= 2.05e-3, "weights and EMA: worst difference %g (lr 1e-3) in %s", worst_w, wname);
  CHECK(n_m > 0);
  CHECK(n_ema > 0);
  /* the teacher is no state: it is frozen, and no ema.teacher.* or adam_m.text.* exists */
  bool frozen_ok = true;
  for (int32_t k = 0; k < na; k++)
    frozen_ok &= strncmp(a[k].name, "ema.teacher.", 12) != 0 && strncmp(a[k].name, "adam_m.text.", 12) != 0 &&
                 strncmp(a[k].name, "adam_m.teacher.", 15) != 0;
  CHECK(frozen_ok);
  for (int32_t k = 0; k < na; k++) ldmc_tensor_release(&a[k]);
  for (int32_t k = 0; k < nc; k++) ldmc_tensor_release(&c[k]);
  free(a), free(c);
  ldmc_lcd_job_free(&j);
  /* a distilled model cannot be a teacher */
  m.unet.guidance_embed_dim = 16;
  CHECK(ldmc_lcd_job_build(&m, &lc, 16, 2, &j) != LDMC_OK && strstr(ldmc_last_error(), "distilled"));
  ldmc_ldm_model_free(&m);
}

/* ---- 5: Gaussian data, analytic teacher ---- */
enum { GB = 64 };
static const double k_mu = 0.5, k_s = 0.6;

/* eps*(x, t) = sigma (x - alpha mu) / (alpha^2 s^2 + sigma^2) for z0 ~ N(mu, s^2) */
static ldmc_graph *gauss_teacher(const double *abar) {
  ldmc_builder *b = ldmc_builder_new("gauss_teacher");
  int64_t rows = 2 * GB, zd[4] = {rows, 1, 2, 2}, cd[3] = {rows, 1, 1}, T = 1000;
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, zd), t = ldmc_parameter(b, "timestep", LDMC_F32, 1, &rows);
  ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 3, cd);
  float ka[1000], kb[1000];
  for (int i = 0; i < 1000; i++) {
    double a = sqrt(abar[i]), sg = sqrt(1 - abar[i]), den = a * a * k_s * k_s + sg * sg;
    ka[i] = (float)(sg / den), kb[i] = (float)(-sg * a * k_mu / den);
  }
  ldmc_value ti = ldmc_convert(b, t, LDMC_I32);
  const int64_t row[1] = {0};
  ldmc_value A = ldmc_broadcast_in_dim(b, ldmc_gather(b, ldmc_constant(b, LDMC_F32, 1, &T, ka), ti, 0), 4, zd, row);
  ldmc_value Bv = ldmc_broadcast_in_dim(b, ldmc_gather(b, ldmc_constant(b, LDMC_F32, 1, &T, kb), ti, 0), 4, zd, row);
  ldmc_builder_output(b, ldmc_add(b, ldmc_mul(b, A, x), Bv), "out_sample");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

/* eps(x, t) = u[t] x + v[t] (+ 0 guidance) */
static ldmc_graph *gauss_student(void) {
  ldmc_builder *b = ldmc_builder_new("gauss_student");
  int64_t rows = GB, zd[4] = {rows, 1, 2, 2}, cd[3] = {rows, 1, 1}, T = 1000;
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, zd), t = ldmc_parameter(b, "timestep", LDMC_F32, 1, &rows);
  ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 3, cd);
  ldmc_value g = ldmc_parameter(b, "guidance", LDMC_F32, 1, &rows);
  ldmc_value u = ldmc_parameter(b, "u", LDMC_F32, 1, &T), v = ldmc_parameter(b, "v", LDMC_F32, 1, &T);
  ldmc_value ti = ldmc_convert(b, t, LDMC_I32);
  const int64_t row[1] = {0};
  ldmc_value U = ldmc_broadcast_in_dim(b, ldmc_gather(b, u, ti, 0), 4, zd, row);
  ldmc_value W = ldmc_broadcast_in_dim(b, ldmc_add(b, ldmc_gather(b, v, ti, 0), ldmc_scale(b, g, 0.0)), 4, zd, row);
  ldmc_builder_output(b, ldmc_add(b, ldmc_mul(b, U, x), W), "out_sample");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static ldmc_graph *const_text(void) {
  ldmc_builder *b = ldmc_builder_new("const_text");
  int64_t td[2] = {GB, 1}, cd[3] = {GB, 1, 1};
  ldmc_value tok = ldmc_parameter(b, "tokens", LDMC_I32, 2, td);
  ldmc_builder_output(b, ldmc_reshape(b, ldmc_convert(b, tok, LDMC_F32), 3, cd), "context");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

/* 1-step sample of the student at t = 999 from x ~ N(0, 1): f = c_skip x + c_out (x - sigma (u x + v)) / alpha */
static void one_step_moments(const float *u, const float *v, const double *abar, double *mean, double *var) {
  double a = sqrt(abar[999]), sg = sqrt(1 - abar[999]), cs, co;
  ldmc_lcm_boundary(999, 10, &cs, &co);
  double slope = cs + co * (1 - sg * u[999]) / a, off = -co * sg * v[999] / a;
  *mean = off, *var = slope * slope;
}

static void test_gaussian(void) {
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  double abar[1000];
  ldmc_diffusion_schedule(&dc, NULL, abar);
  ldmc_lcd_config lc;
  ldmc_lcd_config_default(&lc);
  lc.scale_min = lc.scale_max = 3; /* the teacher ignores the prompt: guidance changes nothing */
  ldmc_graph *te = gauss_teacher(abar), *stg = gauss_student(), *tx = const_text(), *g = NULL;
  const int32_t empty[1] = {0};
  CHECK_MSG(ldmc_lcd_loss_build(&dc, &lc, stg, te, tx, empty, 1.0, &g) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_tensor_set init = {0};
  int64_t T = 1000;
  ldmc_shape ts = ldmc_shape_make(1, &T);
  ldmc_tensor u, v;
  ldmc_tensor_alloc(&u, "u", LDMC_F32, &ts);
  ldmc_tensor_alloc(&v, "v", LDMC_F32, &ts);
  for (int i = 0; i < 1000; i++) { /* the student starts as the teacher */
    double a = sqrt(abar[i]), sg = sqrt(1 - abar[i]), den = a * a * k_s * k_s + sg * sg;
    ((float *)u.data)[i] = (float)(sg / den), ((float *)v.data)[i] = (float)(-sg * a * k_mu / den);
  }
  double m0, v0;
  one_step_moments(u.data, v.data, abar, &m0, &v0);
  ldmc_tensor_set_add(&init, &u);
  ldmc_tensor_set_add(&init, &v);
  ldmc_train_opts to = {.master_f32 = true};
  ldmc_lcd_train_opts(&to, 0.5);
  ldmc_compile_opts co = {.threads = 2, .no_disk_cache = true};
  ldmc_train_session *s = NULL;
  ldmc_status st = g ? ldmc_train_session_new(g, LDMC_LDM_N_DATA, &to, 1, &init, &ldmc_backend_llvm_cpu, &co, &s)
                     : LDMC_ERR_INVALID;
  CHECK_MSG(st == LDMC_OK, "session: %s", ldmc_last_error());
  if (st == LDMC_OK) {
    float *mean = s->inputs[0].data, *lv = s->inputs[1].data;
    for (size_t i = 0; i < s->inputs[0].nbytes / 4; i++) mean[i] = (float)k_mu, lv[i] = (float)log(k_s * k_s);
    int32_t no = s->step->n_outputs;
    ldmc_tensor *out = calloc((size_t)no, sizeof *out);
    double first = 0, last = 0;
    const int steps = 1500, win = 100;
    for (int k = 1; k <= steps && st == LDMC_OK; k++) {
      ((int64_t *)s->inputs[3].data)[0] = 1000 + k;
      ldmc_tensor_set_elem(&s->inputs[s->n_data], 0, k < 50 ? 2e-3 * k / 50 : 2e-3);
      ldmc_tensor_set_elem(&s->inputs[s->n_data + 1], 0, k);
      st = ldmc_executable_run(s->exe, s->inputs, s->n_inputs, out, no);
      double l = st == LDMC_OK ? ldmc_tensor_get(&out[0], 0) : NAN;
      if (k <= win) first += l / win;
      if (k > steps - win) last += l / win;
    }
    CHECK_MSG(st == LDMC_OK, "steps: %s", ldmc_last_error());
    const ldmc_tensor *eu = ldmc_train_session_find(s, "ema.u"), *ev = ldmc_train_session_find(s, "ema.v");
    double m1 = NAN, v1 = NAN;
    if (eu && ev) one_step_moments(eu->data, ev->data, abar, &m1, &v1);
    printf("gaussian: loss %.3g -> %.3g; 1-step samples mean %.4f -> %.4f (data %.2f), variance %.4f -> %.4f (data %.2f)\n",
           first, last, m0, m1, k_mu, v0, v1, k_s * k_s);
    CHECK_MSG(last < 0.8 * first, "loss %g -> %g", first, last);
    CHECK_MSG(fabs(v1 - k_s * k_s) < 0.5 * fabs(v0 - k_s * k_s), "variance %g -> %g, data %g", v0, v1, k_s * k_s);
    CHECK_MSG(fabs(m1 - k_mu) < 0.1, "mean %g, data %g", m1, k_mu);
    for (int32_t k = 0; k < no; k++) ldmc_tensor_release(&out[k]);
    free(out);
  }
  ldmc_train_session_free(s);
  ldmc_tensor_set_free(&init);
  ldmc_graph_free(g), ldmc_graph_free(te), ldmc_graph_free(stg), ldmc_graph_free(tx);
}

int main(void) {
  test_boundary_and_schedule();
  test_ema_from_model();
  test_lcm_sampler();
  check_toy_loss(LDMC_LCD_L2);
  check_toy_loss(LDMC_LCD_HUBER);
  test_step_backends();
  test_gaussian();
  return test_summary("test_distill");
}
