/* Samplers as step graphs (models/sampler_graph.c, sampler_run.c):
 *  1. whole trajectories of DDIM (eta 0 and > 0), DDPM (fixed_small and
 *     fixed_large) and DPM-Solver++ 2M, every prediction type, clipping, three
 *     spacings, against diffusers' step functions written in numpy float64
 *     (tests/torch/sampler_step_ref.py) driving the same toy denoiser, with
 *     the noise the step graphs draw;
 *  2. the closed-form optimal denoiser of Gaussian data N(mu, s^2),
 *     eps(z, t) = sigma (z - alpha mu) / (alpha^2 s^2 + sigma^2), as a graph with
 *     the U-Net's interface: every step is affine, so a deterministic sampler
 *     maps x_T ~ N(0, 1) to N(c, a^2) with c, a read off two runs; mean and
 *     variance approach mu, s^2 as the steps grow, DPM-Solver++ closer than
 *     DDIM at 10 and 20 steps; the stochastic samplers by sample statistics;
 *     v- and sample-prediction versions of the same denoiser give the same;
 *  3. guidance against a denoiser whose cond and uncond outputs differ in a
 *     known way; w = 1 equals the graph without guidance;
 *  4. determinism for a seed, the same result for 1 and 2 threads and for a
 *     batch drawn whole or split, llvm-cpu against interp (one step of a
 *     tiny real U-Net with guidance and DPM-Solver's state);
 *  5. errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "interp_test_util.h"
#include "models/samplers.h"
#include "models/unet.h"

static ldmc_graph *finish(ldmc_builder *b) {
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "building: %s", ldmc_last_error());
  return g;
}

static ldmc_diffusion_config dc_of(ldmc_beta_schedule s, ldmc_prediction p) {
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  dc.schedule = s;
  dc.prediction = p;
  return dc;
}

static ldmc_sampler *mk(const ldmc_diffusion_config *dc, const ldmc_sampler_config *sc, bool guidance,
                        const ldmc_graph *den, const ldmc_tensor_set *w, const ldmc_backend_i *be, int threads) {
  ldmc_sampler *s = NULL;
  ldmc_compile_opts co = {.threads = threads};
  ldmc_status st = ldmc_sampler_new(dc, sc, guidance, den, w, be, &co, &s);
  CHECK_MSG(st == LDMC_OK, "sampler %s on %s: %s", ldmc_sampler_name(sc->kind), be->name, ldmc_last_error());
  return s;
}

/* runs with a zero context; x_T given or drawn */
static bool run(ldmc_sampler *s, uint64_t seed, int64_t first, const ldmc_tensor *xT, double w) {
  const ldmc_node *cp = &ldmc_sampler_step_graph(s)->nodes[ldmc_graph_find_param(ldmc_sampler_step_graph(s),
                                                                                  "encoder_hidden_states")];
  ldmc_tensor ctx = th_tensor(cp->dtype, cp->shape, NULL);
  ldmc_sample_run_opts o = {.seed = seed, .first_image = first, .context = &ctx, .guidance_scale = w, .x_T = xT};
  ldmc_status st = ldmc_sample_run(s, &o);
  CHECK_MSG(st == LDMC_OK, "run: %s", ldmc_last_error());
  ldmc_tensor_release(&ctx);
  return st == LDMC_OK;
}

/* ---- 1: trajectories against diffusers' step functions ---- */

/* m = 0.9 x + 0.0005 t + bias */
static ldmc_graph *toy_denoiser(const int64_t *xd) {
  ldmc_builder *b = ldmc_builder_new("toy");
  int64_t B = xd[0], cd[2] = {xd[0], 2};
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, xd), t = ldmc_parameter(b, "timestep", LDMC_F32, 1, &B);
  ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 2, cd);
  ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 4, xd);
  const int64_t row[1] = {0};
  ldmc_value y = ldmc_add(b, ldmc_add(b, ldmc_scale(b, x, 0.9), ldmc_broadcast_in_dim(b, ldmc_scale(b, t, 0.0005), 4, xd, row)), bias);
  ldmc_builder_output(b, y, "out_sample");
  return finish(b);
}

typedef struct traj_case {
  ldmc_sampler_kind kind;
  ldmc_beta_schedule sched;
  ldmc_timestep_spacing spacing;
  int offset, N;
  double eta;
  bool alpha_one;
  ldmc_ddpm_variance var;
  bool lof, euler;
  ldmc_final_sigmas final;
  ldmc_prediction pred;
  bool clip;
  double range;
} traj_case;

static const traj_case k_cases[] = {
    {LDMC_SAMPLER_DDIM, LDMC_BETA_SCALED_LINEAR, LDMC_SPACING_LEADING, 1, 50, 0, true, 0, 1, 0, 0, LDMC_PREDICT_EPSILON, 0, 1},
    {LDMC_SAMPLER_DDIM, LDMC_BETA_SCALED_LINEAR, LDMC_SPACING_TRAILING, 0, 20, 0.7, false, 0, 1, 0, 0, LDMC_PREDICT_V, 0, 1},
    {LDMC_SAMPLER_DDIM, LDMC_BETA_SQUAREDCOS_CAP_V2, LDMC_SPACING_LINSPACE, 0, 10, 0, true, 0, 1, 0, 0, LDMC_PREDICT_SAMPLE, 1, 1.5},
    {LDMC_SAMPLER_DDPM, LDMC_BETA_SCALED_LINEAR, LDMC_SPACING_LEADING, 1, 30, 0, true, LDMC_DDPM_FIXED_SMALL, 1, 0, 0, LDMC_PREDICT_EPSILON, 0, 1},
    {LDMC_SAMPLER_DDPM, LDMC_BETA_SCALED_LINEAR, LDMC_SPACING_TRAILING, 0, 25, 0, true, LDMC_DDPM_FIXED_LARGE, 1, 0, 0, LDMC_PREDICT_V, 0, 1},
    {LDMC_SAMPLER_DDPM, LDMC_BETA_SQUAREDCOS_CAP_V2, LDMC_SPACING_LINSPACE, 0, 10, 0, true, LDMC_DDPM_FIXED_SMALL, 1, 0, 0, LDMC_PREDICT_SAMPLE, 1, 1.2},
    {LDMC_SAMPLER_DPMPP_2M, LDMC_BETA_SCALED_LINEAR, LDMC_SPACING_LINSPACE, 0, 20, 0, true, 0, 1, 0, LDMC_FINAL_SIGMA_ZERO, LDMC_PREDICT_EPSILON, 0, 1},
    {LDMC_SAMPLER_DPMPP_2M, LDMC_BETA_SCALED_LINEAR, LDMC_SPACING_TRAILING, 0, 10, 0, true, 0, 1, 0, LDMC_FINAL_SIGMA_MIN, LDMC_PREDICT_V, 0, 1},
    {LDMC_SAMPLER_DPMPP_2M, LDMC_BETA_SCALED_LINEAR, LDMC_SPACING_LEADING, 1, 25, 0, true, 0, 0, 0, LDMC_FINAL_SIGMA_MIN, LDMC_PREDICT_SAMPLE, 0, 1},
    /* cosine from t = 999 (abar 2e-9) is ill-conditioned in f32 for epsilon: x0 = (x - sigma eps) / 5e-5 */
    {LDMC_SAMPLER_DPMPP_2M, LDMC_BETA_SQUAREDCOS_CAP_V2, LDMC_SPACING_LEADING, 1, 12, 0, true, 0, 1, 1, LDMC_FINAL_SIGMA_MIN, LDMC_PREDICT_EPSILON, 0, 1},
};
#define N_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

static ldmc_sampler_config cfg_of(const traj_case *c) {
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, c->kind, c->N);
  sc.spacing = c->spacing, sc.steps_offset = c->offset, sc.eta = c->eta, sc.set_alpha_to_one = c->alpha_one;
  sc.variance = c->var, sc.lower_order_final = c->lof, sc.euler_at_final = c->euler, sc.final_sigmas = c->final;
  sc.clip_sample = c->clip, sc.clip_sample_range = c->range;
  return sc;
}

/* the noise rows the step graphs draw: noise graph keyed (seed, image, step) */
static ldmc_tensor noise_of(const ldmc_graph *ng, uint64_t seed, int64_t first, int64_t step) {
  const ldmc_node *kp = &ng->nodes[ldmc_graph_param_node(ng, 0)];
  ldmc_tensor key = th_tensor(LDMC_I64, kp->shape, NULL), z = {0};
  for (int64_t b = 0; b < kp->shape.dims[0]; b++) ((int64_t *)key.data)[b] = ldmc_sample_noise_key(seed, first + b, step);
  th_run_graph(ng, &key, 1, &z, 1);
  ldmc_tensor_release(&key);
  return z;
}

static void test_trajectories(void) {
  const int64_t xd[4] = {2, 2, 3, 3}, n = 36;
  const uint64_t seed = 2024;
  char path[] = "/tmp/ldmc_sampler_cases_XXXXXX";
  int fd = mkstemp(path);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  CHECK_MSG(f != NULL, "cannot create %s", path);
  if (!f) return;
  ldmc_graph *den = toy_denoiser(xd), *ng = NULL;
  CHECK(ldmc_sampler_noise_build(4, xd, &ng) == LDMC_OK);
  ldmc_tensor bias = th_tensor(LDMC_F32, ldmc_shape_make(4, xd), NULL), xT = th_tensor(LDMC_F32, ldmc_shape_make(4, xd), NULL);
  for (int64_t i = 0; i < n; i++) {
    ldmc_tensor_set_elem(&bias, i, 0.01 * (double)(i % 3) - 0.004 * (double)(i % 5));
    ldmc_tensor_set_elem(&xT, i, 1.5 * sin(1.3 * (double)i + 0.2));
  }
  ldmc_tensor_set ws = {0};
  ldmc_tensor bv = bias;
  bv.name = strdup("bias"), bv.owns_data = false;
  ldmc_tensor_set_add(&ws, &bv);
  double *got = calloc((size_t)(N_CASES * n), sizeof *got);
  int64_t tsteps[N_CASES][64];
  int nsteps[N_CASES];
  for (int k = 0; k < N_CASES && den && ng; k++) {
    const traj_case *c = &k_cases[k];
    ldmc_sampler_config sc = cfg_of(c);
    ldmc_diffusion_config dc = dc_of(c->sched, c->pred);
    ldmc_sampler *s = mk(&dc, &sc, false, den, &ws, &ldmc_backend_interp, 1);
    if (!s) continue;
    const ldmc_sampler_schedule *sch = ldmc_sampler_get_schedule(s);
    nsteps[k] = sch->n_steps;
    for (int i = 0; i < sch->n_steps; i++) tsteps[k][i] = sch->steps[i].timestep;
    fprintf(f, "%s %s %s %d %d %.17g %d %s %d %d %s %s %d %.17g\n%lld\n", ldmc_sampler_name(c->kind),
            ldmc_beta_schedule_name(c->sched), ldmc_spacing_name(c->spacing), c->offset, c->N, c->eta, c->alpha_one,
            ldmc_ddpm_variance_name(c->var), c->lof, c->euler, c->final == LDMC_FINAL_SIGMA_MIN ? "sigma_min" : "zero",
            ldmc_prediction_name(c->pred), c->clip, c->range, (long long)n);
    for (int64_t i = 0; i < n; i++) fprintf(f, "%.17g ", ldmc_tensor_get(&xT, i));
    fprintf(f, "\n");
    for (int64_t i = 0; i < n; i++) fprintf(f, "%.17g ", ldmc_tensor_get(&bias, i));
    fprintf(f, "\n");
    for (int i = 0; i < sch->n_steps; i++) {
      ldmc_tensor z = noise_of(ng, seed, 0, i + 1);
      for (int64_t j = 0; j < n; j++) fprintf(f, "%.17g ", z.data ? ldmc_tensor_get(&z, j) : 0.0);
      fprintf(f, "\n");
      ldmc_tensor_release(&z);
    }
    if (run(s, seed, 0, &xT, 0))
      for (int64_t j = 0; j < n; j++) got[k * n + j] = ldmc_tensor_get(ldmc_sampler_latents(s), j);
    ldmc_sampler_free(s);
  }
  fclose(f);
  const char *src = getenv("LDMC_SRC");
  char cmd[1200], line[16384];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/sampler_step_ref.py %s 2>&1", src ? src : "..", path);
  FILE *p = popen(cmd, "r");
  int seen = 0;
  while (p && fgets(line, sizeof line, p)) {
    int k, pos = 0;
    if (sscanf(line, "case %d: %n", &k, &pos) != 1 || k < 0 || k >= N_CASES) {
      CHECK_MSG(0, "sampler_step_ref.py: '%.300s'", line);
      continue;
    }
    char *q = line + pos, *e;
    int nt = 0, tbad = 0;
    for (long long v; (v = strtoll(q, &e, 10)), e != q; q = e) tbad |= nt >= nsteps[k] || tsteps[k][nt++] != v;
    CHECK_MSG(!tbad && nt == nsteps[k] && *q == ' ' && q[1] == '|', "case %d: timesteps differ from diffusers'", k);
    q = strchr(q, '|');
    double worst = 0, scale = 0;
    for (int64_t j = 0; q && j < n; j++) {
      double v = strtod(q + 1, &e);
      q = e;
      worst = fmax(worst, fabs(v - got[k * n + j]));
      scale = fmax(scale, fabs(v));
    }
    const traj_case *c = &k_cases[k];
    CHECK_MSG(worst <= 2e-5 * fmax(1, scale), "case %d (%s %d steps %s): max |ldmc - diffusers| %.3g (values up to %.3g)",
              k, ldmc_sampler_name(c->kind), c->N, ldmc_prediction_name(c->pred), worst, scale);
    printf("trajectory %d: %-7s %-13s %-8s N=%-2d eta=%.1f %-12s %s: max |ldmc - diffusers(numpy f64)| = %.2g\n", k,
           ldmc_sampler_name(c->kind), ldmc_beta_schedule_name(c->sched), ldmc_spacing_name(c->spacing), c->N, c->eta,
           ldmc_prediction_name(c->pred), c->kind == LDMC_SAMPLER_DDPM ? ldmc_ddpm_variance_name(c->var) : "", worst);
    seen++;
  }
  CHECK_MSG(p && pclose(p) == 0 && seen == N_CASES, "sampler_step_ref.py gave %d of %d cases", seen, N_CASES);
  unlink(path);
  free(got);
  ldmc_tensor_release(&bias);
  ldmc_tensor_release(&xT);
  ldmc_tensor_set_free(&ws);
  ldmc_graph_free(den);
  ldmc_graph_free(ng);
}

/* ---- 2: the Gaussian oracle ---- */

/* E[x0 | z_t] and E[eps | z_t] for x0 ~ N(mu, s2), as the prediction pred */
static ldmc_graph *gauss_denoiser(const ldmc_diffusion_config *dc, ldmc_prediction pred, const int64_t *xd, double mu,
                                  double s2) {
  int T = dc->timesteps;
  double *ab = malloc((size_t)T * sizeof *ab);
  float *ta = malloc((size_t)T * sizeof *ta), *ts = malloc((size_t)T * sizeof *ts);
  ldmc_diffusion_schedule(dc, NULL, ab);
  for (int i = 0; i < T; i++) ta[i] = (float)sqrt(ab[i]), ts[i] = (float)sqrt(1 - ab[i]);
  ldmc_builder *b = ldmc_builder_new("gauss");
  int64_t B = xd[0], cd[3] = {xd[0], 1, 1}, Td = T;
  ldmc_value z = ldmc_parameter(b, "sample", LDMC_F32, 4, xd), t = ldmc_parameter(b, "timestep", LDMC_F32, 1, &B);
  ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 3, cd);
  ldmc_value ti = ldmc_convert(b, t, LDMC_I32);
  const int64_t row[1] = {0};
  ldmc_value a = ldmc_broadcast_in_dim(b, ldmc_gather(b, ldmc_constant(b, LDMC_F32, 1, &Td, ta), ti, 0), 4, xd, row);
  ldmc_value s = ldmc_broadcast_in_dim(b, ldmc_gather(b, ldmc_constant(b, LDMC_F32, 1, &Td, ts), ti, 0), 4, xd, row);
  ldmc_value r = ldmc_div(b, ldmc_sub(b, z, ldmc_scale(b, a, mu)), ldmc_add(b, ldmc_scale(b, ldmc_mul(b, a, a), s2), ldmc_mul(b, s, s)));
  ldmc_value eps = ldmc_mul(b, s, r);
  ldmc_value x0 = ldmc_add(b, ldmc_broadcast_to(b, ldmc_constant_scalar(b, LDMC_F32, mu), 4, xd), ldmc_scale(b, ldmc_mul(b, a, r), s2));
  ldmc_value out = pred == LDMC_PREDICT_EPSILON ? eps : pred == LDMC_PREDICT_SAMPLE ? x0 : ldmc_sub(b, ldmc_mul(b, a, eps), ldmc_mul(b, s, x0));
  ldmc_builder_output(b, out, "out_sample");
  free(ab), free(ta), free(ts);
  return finish(b);
}

static const double k_mu = 0.5, k_s2 = 0.25;

/* (c, a): the deterministic sampler's affine map x_T -> c + a x_T */
static bool affine_map(ldmc_sampler_kind kind, int N, ldmc_prediction pred, double *c, double *a) {
  const int64_t xd[4] = {1, 1, 2, 2};
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SQUAREDCOS_CAP_V2, pred);
  ldmc_graph *den = gauss_denoiser(&dc, pred, xd, k_mu, k_s2);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, kind, N);
  sc.spacing = LDMC_SPACING_TRAILING; /* starts at t = 999, where x_T ~ N(0, 1) is the marginal */
  ldmc_sampler *s = den ? mk(&dc, &sc, false, den, NULL, &ldmc_backend_interp, 1) : NULL;
  ldmc_tensor x = th_tensor(LDMC_F32, ldmc_shape_make(4, xd), NULL);
  bool ok = s && run(s, 1, 0, &x, 0);
  *c = ok ? ldmc_tensor_get(ldmc_sampler_latents(s), 0) : NAN;
  for (int i = 0; i < 4; i++) ldmc_tensor_set_elem(&x, i, 1);
  ok = ok && run(s, 1, 0, &x, 0);
  *a = ok ? ldmc_tensor_get(ldmc_sampler_latents(s), 3) - *c : NAN;
  ldmc_tensor_release(&x);
  ldmc_sampler_free(s);
  ldmc_graph_free(den);
  return ok;
}

static void test_gaussian(void) {
  const int Ns[] = {10, 20, 50, 200};
  /* on |mean - mu| + |var - s^2|: first order ~ 1/N, second order ~ 1/N^2 */
  const double tol[2][4] = {{0.1, 0.05, 0.02, 0.005}, {0.04, 0.01, 0.0016, 1e-4}};
  double err[2][4];
  printf("Gaussian data N(%.2f, %.2f), cosine schedule, trailing: |mean - mu| + |var - s^2|\n", k_mu, k_s2);
  for (int k = 0; k < 2; k++) {
    ldmc_sampler_kind kind = k ? LDMC_SAMPLER_DPMPP_2M : LDMC_SAMPLER_DDIM;
    for (int i = 0; i < 4; i++) {
      double c, a;
      err[k][i] = affine_map(kind, Ns[i], LDMC_PREDICT_EPSILON, &c, &a) ? fabs(c - k_mu) + fabs(a * a - k_s2) : INFINITY;
      printf("  %-7s %3d steps: mean %.5f var %.5f  error %.2e (tolerance %.1e)\n", ldmc_sampler_name(kind), Ns[i], c,
             a * a, err[k][i], tol[k][i]);
      CHECK_MSG(err[k][i] < tol[k][i], "%s at %d steps: error %g", ldmc_sampler_name(kind), Ns[i], err[k][i]);
      if (i > 0) CHECK_MSG(err[k][i] < err[k][i - 1], "%s: no better at %d steps than at %d", ldmc_sampler_name(kind), Ns[i], Ns[i - 1]);
    }
  }
  CHECK_MSG(err[1][0] < 0.5 * err[0][0] && err[1][1] < 0.5 * err[0][1],
            "DPM-Solver++ (%.3g, %.3g) not closer than DDIM (%.3g, %.3g) at 10, 20 steps", err[1][0], err[1][1],
            err[0][0], err[0][1]);
  /* other predictions of the same denoiser: the same sampler */
  for (int k = 0; k < 2; k++) {
    ldmc_sampler_kind kind = k ? LDMC_SAMPLER_DPMPP_2M : LDMC_SAMPLER_DDIM;
    double c0, a0, c1, a1, c2, a2;
    affine_map(kind, 20, LDMC_PREDICT_EPSILON, &c0, &a0);
    affine_map(kind, 20, LDMC_PREDICT_V, &c1, &a1);
    affine_map(kind, 20, LDMC_PREDICT_SAMPLE, &c2, &a2);
    double d = fmax(fmax(fabs(c1 - c0), fabs(a1 - a0)), fmax(fabs(c2 - c0), fabs(a2 - a0)));
    CHECK_MSG(d < 2e-5, "%s: epsilon / v / sample predictions differ by %g", ldmc_sampler_name(kind), d);
    printf("  %s: epsilon, v_prediction, sample give the same map within %.1e\n", ldmc_sampler_name(kind), d);
  }
}

/* sample mean and variance over every element after a run from seeded noise */
static double stats_run(ldmc_sampler_kind kind, int N, double eta, ldmc_ddpm_variance var, int64_t side, double tol_m,
                        double tol_v) {
  const int64_t xd[4] = {4, 1, side, side};
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SQUAREDCOS_CAP_V2, LDMC_PREDICT_EPSILON);
  ldmc_graph *den = gauss_denoiser(&dc, LDMC_PREDICT_EPSILON, xd, k_mu, k_s2);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, kind, N);
  sc.spacing = LDMC_SPACING_TRAILING;
  sc.eta = eta, sc.variance = var;
  ldmc_sampler *s = den ? mk(&dc, &sc, false, den, NULL, &ldmc_backend_llvm_cpu, 2) : NULL;
  double err = INFINITY;
  if (s && run(s, 77, 0, NULL, 0)) {
    const ldmc_tensor *x = ldmc_sampler_latents(s);
    int64_t n = th_numel(&x->shape);
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += ldmc_tensor_get(x, i);
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) v += (ldmc_tensor_get(x, i) - m) * (ldmc_tensor_get(x, i) - m);
    v /= (double)(n - 1);
    printf("  %-5s %4d steps eta %.1f %-11s: mean %.4f var %.4f over %lld samples (tolerances %.3f, %.3f)\n",
           ldmc_sampler_name(kind), N, eta, kind == LDMC_SAMPLER_DDPM ? ldmc_ddpm_variance_name(var) : "", m, v,
           (long long)n, tol_m, tol_v);
    CHECK_MSG(fabs(m - k_mu) < tol_m && fabs(v - k_s2) < tol_v, "%s %d steps: mean %g var %g", ldmc_sampler_name(kind), N, m, v);
    err = fabs(m - k_mu) + fabs(v - k_s2);
  }
  ldmc_sampler_free(s);
  ldmc_graph_free(den);
  return err;
}

static void test_stochastic(void) {
  printf("stochastic samplers on Gaussian data (llvm-cpu, 2 threads):\n");
  /* 16384 samples: standard errors of the mean 0.004, of the variance 0.0028 (one graph shape: compiled once).
   * fixed_small ignores the posterior's uncertainty about x0: too little variance at large strides */
  double e10 = stats_run(LDMC_SAMPLER_DDPM, 10, 0, LDMC_DDPM_FIXED_SMALL, 64, 0.015, 0.15);
  double e100 = stats_run(LDMC_SAMPLER_DDPM, 100, 0, LDMC_DDPM_FIXED_SMALL, 64, 0.015, 0.03);
  double e1000 = stats_run(LDMC_SAMPLER_DDPM, 1000, 0, LDMC_DDPM_FIXED_SMALL, 64, 0.015, 0.012);
  CHECK_MSG(e1000 < e100 && e100 < e10, "DDPM errors do not shrink with steps: %g %g %g", e10, e100, e1000);
  stats_run(LDMC_SAMPLER_DDPM, 1000, 0, LDMC_DDPM_FIXED_LARGE, 64, 0.015, 0.015);
  stats_run(LDMC_SAMPLER_DDIM, 100, 1.0, 0, 64, 0.015, 0.03);
  stats_run(LDMC_SAMPLER_DDIM, 100, 0.5, 0, 64, 0.015, 0.03);
}

/* ---- 3: guidance ---- */

/* m = 0.5 x + context[row] */
static ldmc_graph *ctx_denoiser(const int64_t *xd) {
  ldmc_builder *b = ldmc_builder_new("ctx");
  int64_t B = xd[0], cd[3] = {xd[0], 1, 1}, c4[4] = {xd[0], 1, 1, 1};
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, xd);
  ldmc_parameter(b, "timestep", LDMC_F32, 1, &B);
  ldmc_value c = ldmc_parameter(b, "encoder_hidden_states", LDMC_F32, 3, cd);
  ldmc_value y = ldmc_add(b, ldmc_scale(b, x, 0.5), ldmc_broadcast_to(b, ldmc_reshape(b, c, 4, c4), 4, xd));
  ldmc_builder_output(b, y, "out_sample");
  return finish(b);
}

/* One DDIM step (eps prediction) on x with context ctx and scale w: latents out. */
static bool one_step(const ldmc_graph *den, bool guidance, const ldmc_tensor *x, const ldmc_tensor *ctx, double w,
                     const ldmc_sampler_step *p, ldmc_tensor *out) {
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_DDIM, 10);
  ldmc_graph *g = NULL;
  ldmc_sampler_inputs in;
  ldmc_status st = ldmc_sampler_step_build(&sc, LDMC_PREDICT_EPSILON, guidance, den, &g);
  if (st == LDMC_OK) st = ldmc_sampler_step_inputs(g, &in);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st != LDMC_OK) return false;
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *ins = calloc((size_t)np, sizeof *ins);
  for (int32_t i = 0; i < np; i++) {
    const ldmc_node *q = &g->nodes[ldmc_graph_param_node(g, i)];
    ins[i] = th_tensor(q->dtype, q->shape, NULL);
  }
  memcpy(ins[in.latents].data, x->data, x->nbytes);
  memcpy(ins[in.context].data, ctx->data, ctx->nbytes);
  if (in.guidance >= 0) ldmc_tensor_set_elem(&ins[in.guidance], 0, w);
  const double v[8] = {(double)p->timestep, p->alpha, p->sigma, p->c_x, p->c_x0, p->c_eps, p->c_d, p->c_noise};
  const int32_t at[8] = {in.timestep, in.alpha, in.sigma, in.c_x, in.c_x0, in.c_eps, in.c_d, in.c_noise};
  for (int k = 0; k < 8; k++) ldmc_tensor_set_elem(&ins[at[k]], 0, v[k]);
  memset(out, 0, sizeof *out);
  bool ok = th_run_graph(g, ins, np, out, 1);
  th_release(np, ins);
  free(ins);
  ldmc_graph_free(g);
  return ok;
}

static void test_guidance(void) {
  const int64_t B = 2, xd[4] = {2, 1, 2, 2}, x2[4] = {4, 1, 2, 2};
  ldmc_graph *d1 = ctx_denoiser(xd), *d2 = ctx_denoiser(x2);
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SCALED_LINEAR, LDMC_PREDICT_EPSILON);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_DDIM, 10);
  ldmc_sampler_schedule sch;
  CHECK(ldmc_sampler_schedule_build(&dc, &sc, &sch) == LDMC_OK);
  const ldmc_sampler_step *p = &sch.steps[3];
  ldmc_tensor x = th_tensor(LDMC_F32, ldmc_shape_make(4, xd), NULL);
  ldmc_tensor c2 = th_tensor(LDMC_F32, SHAPE(4, 1, 1), VALS(1.0, 2.0, -1.0, -0.5)); /* cond rows 1, 2; uncond -1, -0.5 */
  ldmc_tensor c1 = th_tensor(LDMC_F32, SHAPE(2, 1, 1), VALS(1.0, 2.0));
  for (int i = 0; i < 8; i++) ldmc_tensor_set_elem(&x, i, 0.3 * i - 1);
  const double w = 7.5, cond[2] = {1, 2}, unc[2] = {-1, -0.5};
  ldmc_tensor y = {0}, y1 = {0}, yn = {0};
  double worst = 0;
  if (d1 && d2 && one_step(d2, true, &x, &c2, w, p, &y)) {
    for (int i = 0; i < 8; i++) {
      double xv = ldmc_tensor_get(&x, i), mc = 0.5 * xv + cond[i / 4], mu = 0.5 * xv + unc[i / 4];
      double m = mu + w * (mc - mu), x0 = (xv - p->sigma * m) / p->alpha;
      worst = fmax(worst, fabs(ldmc_tensor_get(&y, i) - (p->c_x0 * x0 + p->c_eps * m)));
    }
    CHECK_MSG(worst < 1e-4, "guided step differs from m_u + w (m_c - m_u) by %g", worst);
  }
  double d = INFINITY;
  if (one_step(d2, true, &x, &c2, 1.0, p, &y1) && one_step(d1, false, &x, &c1, 0, p, &yn)) {
    d = 0;
    for (int i = 0; i < 8; i++) d = fmax(d, fabs(ldmc_tensor_get(&y1, i) - ldmc_tensor_get(&yn, i)));
  }
  CHECK_MSG(d < 1e-6, "w = 1 vs no guidance: %g", d);
  printf("guidance: w = %.1f step within %.1e of m_u + w (m_c - m_u); w = 1 equals the unguided graph within %.1e\n", w,
         worst, d);
  /* the unguided step graph is the smaller one: the denoiser runs on B rows, not 2B */
  ldmc_graph *g1 = NULL, *g2 = NULL;
  ldmc_sampler_step_build(&sc, LDMC_PREDICT_EPSILON, false, d1, &g1);
  ldmc_sampler_step_build(&sc, LDMC_PREDICT_EPSILON, true, d2, &g2);
  CHECK(g1 && g2 && g1->n_nodes < g2->n_nodes && ldmc_graph_find_param(g1, "guidance_scale") < 0 &&
        ldmc_graph_find_param(g2, "guidance_scale") >= 0);
  (void)B;
  ldmc_graph_free(g1), ldmc_graph_free(g2);
  ldmc_tensor_release(&x), ldmc_tensor_release(&c1), ldmc_tensor_release(&c2);
  ldmc_tensor_release(&y), ldmc_tensor_release(&y1), ldmc_tensor_release(&yn);
  ldmc_sampler_schedule_release(&sch);
  ldmc_graph_free(d1), ldmc_graph_free(d2);
}

/* ---- 4: determinism, threads, batch split, backends ---- */

static ldmc_tensor sample_once(ldmc_sampler_kind kind, double eta, const int64_t *xd, uint64_t seed, int64_t first,
                               const ldmc_backend_i *be, int threads) {
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SCALED_LINEAR, LDMC_PREDICT_EPSILON);
  ldmc_graph *den = gauss_denoiser(&dc, LDMC_PREDICT_EPSILON, xd, k_mu, k_s2);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, kind, 8);
  sc.eta = eta;
  ldmc_sampler *s = den ? mk(&dc, &sc, false, den, NULL, be, threads) : NULL;
  ldmc_tensor out = {0};
  if (s && run(s, seed, first, NULL, 0)) {
    const ldmc_tensor *x = ldmc_sampler_latents(s);
    out = th_tensor(LDMC_F32, x->shape, NULL);
    memcpy(out.data, x->data, x->nbytes);
  }
  ldmc_sampler_free(s);
  ldmc_graph_free(den);
  return out;
}

static bool same_bits(const ldmc_tensor *a, const void *b, size_t n) { return a->data && b && memcmp(a->data, b, n) == 0; }

static double max_diff(const ldmc_tensor *a, const ldmc_tensor *b) {
  if (!a->data || !b->data || a->nbytes != b->nbytes) return INFINITY;
  double d = 0;
  for (int64_t i = 0; i < th_numel(&a->shape); i++) d = fmax(d, fabs(ldmc_tensor_get(a, i) - ldmc_tensor_get(b, i)));
  return d;
}

static void test_determinism(void) {
  const int64_t x4[4] = {4, 2, 8, 8}, x2[4] = {2, 2, 8, 8};
  const ldmc_backend_i *I = &ldmc_backend_interp, *L = &ldmc_backend_llvm_cpu;
  ldmc_tensor a = sample_once(LDMC_SAMPLER_DDIM, 0, x4, 5, 0, I, 1), b = sample_once(LDMC_SAMPLER_DDIM, 0, x4, 5, 0, I, 1);
  ldmc_tensor c = sample_once(LDMC_SAMPLER_DDIM, 0, x4, 6, 0, I, 1);
  CHECK_MSG(same_bits(&a, b.data, a.nbytes), "DDIM eta=0: two runs of seed 5 differ");
  CHECK_MSG(max_diff(&a, &c) > 0.1, "seeds 5 and 6 give the same sample");
  th_release(1, &b), th_release(1, &c);
  /* stochastic: the whole batch vs two halves (images 0-1, 2-3), 1 vs 2 threads, interp vs llvm-cpu */
  ldmc_tensor w = sample_once(LDMC_SAMPLER_DDPM, 0, x4, 9, 0, I, 1);
  ldmc_tensor h0 = sample_once(LDMC_SAMPLER_DDPM, 0, x2, 9, 0, I, 1), h1 = sample_once(LDMC_SAMPLER_DDPM, 0, x2, 9, 2, I, 1);
  CHECK_MSG(same_bits(&h0, w.data, h0.nbytes) && h1.data && same_bits(&h1, (char *)w.data + h0.nbytes, h1.nbytes),
            "DDPM: batch of 4 differs from two batches of 2");
  ldmc_tensor l1 = sample_once(LDMC_SAMPLER_DDPM, 0, x4, 9, 0, L, 1), l2 = sample_once(LDMC_SAMPLER_DDPM, 0, x4, 9, 0, L, 2);
  ldmc_tensor lh = sample_once(LDMC_SAMPLER_DDPM, 0, x2, 9, 2, L, 2);
  CHECK_MSG(same_bits(&l1, l2.data, l1.nbytes), "llvm-cpu DDPM: 1 and 2 threads differ");
  CHECK_MSG(lh.data && same_bits(&lh, (char *)l2.data + lh.nbytes, lh.nbytes), "llvm-cpu DDPM: batch split differs");
  double dl = max_diff(&w, &l1);
  CHECK_MSG(dl < 1e-4, "DDPM interp vs llvm-cpu: %g", dl);
  ldmc_tensor e1 = sample_once(LDMC_SAMPLER_DDIM, 0.8, x4, 3, 0, L, 1), e2 = sample_once(LDMC_SAMPLER_DDIM, 0.8, x4, 3, 0, L, 2);
  CHECK_MSG(same_bits(&e1, e2.data, e1.nbytes), "llvm-cpu DDIM eta 0.8: 1 and 2 threads differ");
  printf("determinism: DDIM seed repeatable; DDPM batch 4 == 2 + 2 (interp, llvm-cpu), 1 == 2 threads bitwise; "
         "interp vs llvm-cpu %.1e\n", dl);
  th_release(1, &a), th_release(1, &w), th_release(1, &h0), th_release(1, &h1), th_release(1, &l1);
  th_release(1, &l2), th_release(1, &lh), th_release(1, &e1), th_release(1, &e2);
}

/* One DPM-Solver++ second-order step of a tiny real U-Net with guidance: llvm-cpu against interp. */
static void test_unet_step(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 8, cfg.context_dim = 16, cfg.context_tokens = 4, cfg.batch = 2, cfg.groups = 8;
  ldmc_graph *u = NULL, *g = NULL;
  CHECK_MSG(ldmc_unet_build(&cfg, &u) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_DPMPP_2M, 20);
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SCALED_LINEAR, LDMC_PREDICT_EPSILON);
  ldmc_sampler_schedule sch = {0};
  ldmc_sampler_inputs in;
  if (!u || ldmc_sampler_step_build(&sc, LDMC_PREDICT_EPSILON, true, u, &g) != LDMC_OK ||
      ldmc_sampler_step_inputs(g, &in) != LDMC_OK || ldmc_sampler_schedule_build(&dc, &sc, &sch) != LDMC_OK) {
    CHECK_MSG(0, "U-Net step graph: %s", ldmc_last_error());
    ldmc_graph_free(u);
    return;
  }
  const ldmc_sampler_step *p = &sch.steps[5];
  CHECK(p->order == 2 && g->n_outputs == 2);
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *ins[2] = {calloc((size_t)np, sizeof(ldmc_tensor)), calloc((size_t)np, sizeof(ldmc_tensor))};
  uint64_t rs = 11;
  for (int32_t i = 0; i < np; i++) {
    const ldmc_node *q = &g->nodes[ldmc_graph_param_node(g, i)];
    double r = i == in.latents ? 1.5 : q->shape.rank >= 2 ? 0.2 : 0.5;
    ins[0][i] = th_random(q->dtype, q->shape, &rs, -r, r);
  }
  ldmc_tensor_set_elem(&ins[0][in.guidance], 0, 5.0);
  const double v[8] = {(double)p->timestep, p->alpha, p->sigma, p->c_x, p->c_x0, p->c_eps, p->c_d, p->c_noise};
  const int32_t at[8] = {in.timestep, in.alpha, in.sigma, in.c_x, in.c_x0, in.c_eps, in.c_d, in.c_noise};
  for (int k = 0; k < 8; k++) ldmc_tensor_set_elem(&ins[0][at[k]], 0, v[k]);
  for (int32_t i = 0; i < np; i++) {
    ins[1][i] = th_tensor(ins[0][i].dtype, ins[0][i].shape, NULL);
    memcpy(ins[1][i].data, ins[0][i].data, ins[0][i].nbytes);
  }
  const ldmc_backend_i *be[2] = {&ldmc_backend_interp, &ldmc_backend_llvm_cpu};
  int32_t pairs[2] = {in.latents, -1};
  bool ok = true;
  ldmc_tensor x0[2] = {{0}, {0}};
  for (int k = 0; k < 2; k++) {
    ldmc_compile_opts co = {.threads = 2, .donate = pairs, .params_are_weights = true, .n_activation_params = in.n_inputs};
    ldmc_executable *e = NULL;
    ldmc_tensor outs[2] = {{0}, {0}};
    ldmc_status st = be[k]->compile(g, &co, &e);
    if (st == LDMC_OK) st = ldmc_executable_run(e, ins[k], np, outs, 2);
    CHECK_MSG(st == LDMC_OK, "%s: %s", be[k]->name, ldmc_last_error());
    ok &= st == LDMC_OK;
    CHECK(outs[0].data == NULL); /* donated: written into the latents input */
    x0[k] = outs[1];
    ldmc_tensor_release(&outs[0]);
    ldmc_executable_free(e);
  }
  if (ok) { /* the donated latents were updated in place */
    double dx = max_diff(&ins[0][in.latents], &ins[1][in.latents]), d0 = max_diff(&x0[0], &x0[1]);
    CHECK_MSG(dx < 2e-4 && d0 < 2e-4, "U-Net DPM-Solver++ step: llvm-cpu vs interp latents %g, x0 %g", dx, d0);
    printf("U-Net (c=32) guided DPM-Solver++ 2nd-order step: llvm-cpu vs interp max diff latents %.1e, x0 %.1e\n", dx, d0);
  }
  for (int k = 0; k < 2; k++) {
    th_release(np, ins[k]);
    free(ins[k]);
  }
  th_release(2, x0);
  ldmc_sampler_schedule_release(&sch);
  ldmc_graph_free(g);
  ldmc_graph_free(u);
}

/* ---- 5: errors, progress, cost ---- */
typedef struct stop_ctx {
  int calls, stop_at;
  int64_t last_t;
} stop_ctx;
static ldmc_status on_progress(void *ctx, const ldmc_sample_progress *p) {
  stop_ctx *c = ctx;
  c->calls++;
  c->last_t = p->timestep;
  if (p->step == c->stop_at) return ldmc_error(LDMC_ERR_INVALID, "stopped at %d/%d", p->step, p->n_steps);
  return LDMC_OK;
}

static void test_errors(void) {
  const int64_t xd[4] = {2, 1, 2, 2}, x3[4] = {3, 1, 2, 2};
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SCALED_LINEAR, LDMC_PREDICT_EPSILON);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_DDIM, 10);
  ldmc_graph *d = ctx_denoiser(xd), *d3 = ctx_denoiser(x3), *g = NULL, *bad = NULL;
  CHECK(ldmc_sampler_step_build(&sc, LDMC_PREDICT_EPSILON, true, d3, &g) == LDMC_ERR_INVALID && !g &&
        strstr(ldmc_last_error(), "2B"));
  ldmc_builder *b = ldmc_builder_new("two");
  ldmc_value x = ldmc_parameter(b, "sample", LDMC_F32, 4, xd);
  ldmc_parameter(b, "timestep", LDMC_F32, 1, xd);
  ldmc_builder_output(b, x, "out");
  bad = finish(b);
  CHECK(ldmc_sampler_step_build(&sc, LDMC_PREDICT_EPSILON, false, bad, &g) == LDMC_ERR_INVALID &&
        strstr(ldmc_last_error(), "interface"));
  printf("error: %s\n", ldmc_last_error());
  /* a denoiser weight missing */
  ldmc_graph *toy = toy_denoiser(xd);
  ldmc_sampler *s = NULL;
  CHECK(ldmc_sampler_new(&dc, &sc, false, toy, NULL, &ldmc_backend_interp, NULL, &s) == LDMC_ERR_INVALID && !s &&
        strstr(ldmc_last_error(), "bias"));
  printf("error: %s\n", ldmc_last_error());
  /* run: a mis-shaped context, a stop from the progress callback, the cost */
  s = mk(&dc, &sc, true, d, NULL, &ldmc_backend_interp, 1);
  if (s) {
    ldmc_tensor ctx = th_tensor(LDMC_F32, SHAPE(1, 1, 1), NULL);
    ldmc_sample_run_opts o = {.seed = 1, .context = &ctx, .guidance_scale = 3};
    CHECK(ldmc_sample_run(s, &o) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "context"));
    printf("error: %s\n", ldmc_last_error());
    ldmc_tensor_release(&ctx);
    ctx = th_tensor(LDMC_F32, SHAPE(2, 1, 1), NULL);
    stop_ctx sc2 = {.stop_at = 4};
    o.context = &ctx, o.progress = on_progress, o.progress_ctx = &sc2;
    CHECK(ldmc_sample_run(s, &o) == LDMC_ERR_INVALID && sc2.calls == 4 && strstr(ldmc_last_error(), "stopped"));
    sc2.stop_at = 0, sc2.calls = 0;
    CHECK(ldmc_sample_run(s, &o) == LDMC_OK && sc2.calls == 10 && sc2.last_t == 0);
    o.guidance_scale = NAN;
    CHECK(ldmc_sample_run(s, &o) == LDMC_ERR_INVALID);
    ldmc_sampler_cost cost;
    ldmc_sampler_get_cost(s, &cost);
    CHECK(cost.n_steps == 10 && cost.batch == 1 && cost.denoiser_batch == 2 && cost.step_flops.other > 0);
    ldmc_tensor_release(&ctx);
  }
  ldmc_sampler_free(s);
  ldmc_graph_free(d), ldmc_graph_free(d3), ldmc_graph_free(bad), ldmc_graph_free(toy);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
  void (*parts[])(void) = {test_trajectories, test_gaussian, test_stochastic, test_guidance,
                           test_determinism,  test_unet_step, test_errors};
  const char *names[] = {"trajectories", "gaussian", "stochastic", "guidance", "determinism", "unet step", "errors"};
  for (int i = 0; i < 7; i++) {
    double t0 = now_s();
    parts[i]();
    printf("[%s: %.1f s]\n", names[i], now_s() - t0);
  }
  return test_summary("test_samplers");
}
