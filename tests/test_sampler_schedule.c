/* Sampler schedules (models/sampler_schedule.c):
 *  1. published constants: SD-1.5's abar_999 = 0.0046601 (sqrt 0.068265, Lin
 *     et al. 2024, table 1) and DDIM's 50 leading steps with steps_offset 1:
 *     981, 961, ..., 21, 1 (the SD pipelines' well-known schedule);
 *  2. the timesteps of every sampler x spacing x offset for N = 1..100 and
 *     more, and DPM-Solver's lambda clipping, against diffusers' rules written
 *     in numpy (tests/torch/sampler_timesteps_ref.py): equal, or an error
 *     where diffusers would index out of range or repeat a timestep;
 *  3. the coefficients against identities they must satisfy: DDIM with
 *     eta = 1 is DDPM's posterior (DDIM paper, eq. 16), DPM-Solver++'s first
 *     order is DDIM, the second-order term recomputed from the log-SNRs,
 *     set_alpha_to_one, fixed_small / fixed_large, no noise at t = 0, the
 *     DPM-Solver order sequence (lower_order_final, final_sigmas_type);
 *  4. bad configurations give errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/samplers.h"
#include "test_util.h"

static ldmc_diffusion_config dc_of(ldmc_beta_schedule s) {
  ldmc_diffusion_config dc;
  ldmc_diffusion_config_default(&dc);
  dc.schedule = s;
  return dc;
}

static void test_published(void) {
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SCALED_LINEAR);
  double ab[1000];
  CHECK(ldmc_diffusion_schedule(&dc, NULL, ab) == LDMC_OK);
  CHECK_MSG(fabs(ab[999] - 0.0046601) < 5e-8, "abar_999 = %.8f, published 0.0046601", ab[999]);
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, LDMC_SAMPLER_DDIM, 50);
  sc.steps_offset = 1;
  int64_t ts[64];
  int n = 0;
  CHECK(ldmc_sampler_timesteps(&dc, &sc, ts, 64, &n) == LDMC_OK);
  CHECK_MSG(n == 50, "%d DDIM steps", n);
  int bad = 0;
  for (int i = 0; i < n; i++) bad += ts[i] != 981 - 20 * i;
  CHECK_MSG(bad == 0 && ts[0] == 981 && ts[49] == 1, "DDIM 50 leading +1: %lld ... %lld", (long long)ts[0],
            (long long)ts[n - 1]);
  printf("published: abar_999 %.7f, DDIM 50 leading+1: %lld, %lld, ..., %lld\n", ab[999], (long long)ts[0],
         (long long)ts[1], (long long)ts[49]);
}

/* ---- 2: against the numpy rules ---- */
static void test_reference(void) {
  const char *src = getenv("LDMC_SRC");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/sampler_timesteps_ref.py 2>&1", src ? src : "..");
  FILE *f = popen(cmd, "r");
  CHECK_MSG(f != NULL, "cannot run %s", cmd);
  if (!f) return;
  size_t cap = 1 << 16;
  char *line = malloc(cap);
  int cases = 0, equal = 0, refused = 0, dropped = 0;
  int64_t *want = malloc(1100 * sizeof *want), *got = malloc(1100 * sizeof *got);
  while (line && fgets(line, (int)cap, f)) {
    char sampler[32], schedule[32], spacing[32], lam[32];
    int offset, N, last, pos = 0;
    if (sscanf(line, "%31s %31s %31s %d %d %31s %d : %n", sampler, schedule, spacing, &offset, &N, lam, &last, &pos) != 7 ||
        !pos) {
      CHECK_MSG(0, "sampler_timesteps_ref.py: unexpected line '%.200s'", line);
      continue;
    }
    int nw = 0;
    for (char *p = line + pos, *e; nw < 1100; p = e) {
      long long v = strtoll(p, &e, 10);
      if (e == p) break;
      want[nw++] = v;
    }
    ldmc_diffusion_config dc;
    ldmc_diffusion_config_default(&dc);
    ldmc_sampler_config sc;
    ldmc_sampler_kind k;
    ldmc_timestep_spacing sp;
    if (ldmc_sampler_parse(sampler, &k) != LDMC_OK || ldmc_spacing_parse(spacing, &sp) != LDMC_OK ||
        ldmc_beta_schedule_parse(schedule, &dc.schedule) != LDMC_OK) {
      CHECK_MSG(0, "unknown case '%.100s'", line);
      continue;
    }
    ldmc_sampler_config_default(&sc, k, N);
    sc.spacing = sp;
    sc.steps_offset = offset;
    sc.lambda_min_clipped = strcmp(lam, "-inf") ? strtod(lam, NULL) : -INFINITY;
    /* what ldmc must do: drop a trailing -1 of trailing spacing, refuse the rest */
    bool drop = sp == LDMC_SPACING_TRAILING && nw > 0 && want[nw - 1] == -1;
    if (drop) nw--, dropped++;
    bool expect_error = false;
    for (int i = 0; i < nw; i++) {
      expect_error |= want[i] < 0 || want[i] >= 1000;
      if (k == LDMC_SAMPLER_DPMPP_2M && i > 0) expect_error |= want[i] >= want[i - 1];
    }
    int n = -1;
    ldmc_status st = ldmc_sampler_timesteps(&dc, &sc, got, 1100, &n);
    cases++;
    if (expect_error) {
      CHECK_MSG(st != LDMC_OK, "%s %s +%d N=%d: diffusers' timesteps are out of range or repeat, ldmc accepted them",
                sampler, spacing, offset, N);
      if (st != LDMC_OK) refused++;
      continue;
    }
    CHECK_MSG(st == LDMC_OK, "%s %s +%d N=%d: %s", sampler, spacing, offset, N, ldmc_last_error());
    if (st != LDMC_OK) continue;
    int diff = n == nw ? 0 : 1;
    for (int i = 0; i < n && !diff; i++) diff = got[i] != want[i] ? i + 1 : 0;
    CHECK_MSG(!diff, "%s %s %s +%d N=%d lambda %s: %d timesteps (numpy %d), first difference at %d: %lld vs %lld",
              sampler, schedule, spacing, offset, N, lam, n, nw, diff - 1, diff > 0 && diff <= n ? (long long)got[diff - 1] : 0,
              diff > 0 && diff <= nw ? (long long)want[diff - 1] : 0);
    equal += !diff;
  }
  int rc = pclose(f);
  CHECK_MSG(rc == 0, "sampler_timesteps_ref.py exited with %d", rc);
  CHECK_MSG(cases > 1900, "only %d cases from the reference", cases);
  printf("timesteps vs numpy rules: %d cases, %d equal, %d refused as diffusers would fail, %d trailing -1 dropped\n",
         cases, equal, refused, dropped);
  free(line), free(want), free(got);
}

/* ---- 3: coefficient identities ---- */
static ldmc_sampler_schedule sched(ldmc_beta_schedule bs, const ldmc_sampler_config *sc) {
  ldmc_diffusion_config dc = dc_of(bs);
  ldmc_sampler_schedule s;
  ldmc_status st = ldmc_sampler_schedule_build(&dc, sc, &s);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  return s;
}

/* the update in the (x, eps) basis for eps prediction: x' = A x + E eps + noise */
static void in_x_eps(const ldmc_sampler_step *s, double *A, double *E) {
  /* x0 = (x - sigma eps) / alpha */
  *A = s->c_x + s->c_x0 / s->alpha;
  *E = s->c_eps - s->c_x0 * s->sigma / s->alpha;
}

static void test_identities(void) {
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SCALED_LINEAR);
  double ab[1000];
  ldmc_diffusion_schedule(&dc, NULL, ab);
  ldmc_sampler_config c;
  /* DDIM eta = 1 == DDPM fixed_small, step by step (leading, N | T) */
  double worst = 0;
  for (int N = 10; N <= 100; N += 45) {
    ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDIM, N);
    c.eta = 1;
    c.steps_offset = 1;
    ldmc_sampler_schedule a = sched(LDMC_BETA_SCALED_LINEAR, &c);
    ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDPM, N);
    c.steps_offset = 1;
    ldmc_sampler_schedule b = sched(LDMC_BETA_SCALED_LINEAR, &c);
    CHECK(a.n_steps == N && b.n_steps == N);
    for (int i = 0; i < a.n_steps && i < b.n_steps; i++) {
      double A1, E1, A2, E2;
      in_x_eps(&a.steps[i], &A1, &E1);
      in_x_eps(&b.steps[i], &A2, &E2);
      CHECK(a.steps[i].prev_timestep == b.steps[i].prev_timestep || (a.steps[i].prev_timestep < 0 && b.steps[i].prev_timestep < 0));
      double d = fmax(fabs(A1 - A2), fmax(fabs(E1 - E2), fabs(a.steps[i].c_noise - b.steps[i].c_noise)));
      worst = fmax(worst, d);
    }
    ldmc_sampler_schedule_release(&a);
    ldmc_sampler_schedule_release(&b);
  }
  CHECK_MSG(worst < 1e-9, "DDIM(eta=1) vs DDPM(fixed_small): %g", worst);
  printf("DDIM eta=1 == DDPM fixed_small: max coefficient difference %.2g\n", worst);

  /* DDIM: set_alpha_to_one, eta = 0 has no noise, sigma(eta)^2 + c_eps^2 = 1 - abar_prev */
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDIM, 50);
  c.steps_offset = 1;
  ldmc_sampler_schedule s = sched(LDMC_BETA_SCALED_LINEAR, &c);
  const ldmc_sampler_step *l = &s.steps[49], *f = &s.steps[0];
  CHECK(f->timestep == 981 && f->prev_timestep == 961 && l->timestep == 1 && l->prev_timestep == -19);
  CHECK_NEAR(f->c_x0, sqrt(ab[961]), 1e-12);
  CHECK_NEAR(f->c_eps, sqrt(1 - ab[961]), 1e-12);
  CHECK(l->c_x0 == 1 && l->c_eps == 0 && l->c_noise == 0 && f->c_noise == 0 && f->c_x == 0);
  ldmc_sampler_schedule_release(&s);
  c.set_alpha_to_one = false;
  c.eta = 0.5;
  s = sched(LDMC_BETA_SCALED_LINEAR, &c);
  l = &s.steps[49];
  CHECK_NEAR(l->alpha_cumprod_prev, ab[0], 1e-15);
  CHECK_NEAR(l->c_x0, sqrt(ab[0]), 1e-12);
  for (int i = 0; i < s.n_steps; i++) {
    const ldmc_sampler_step *p = &s.steps[i];
    double var = (1 - p->alpha_cumprod_prev) / (1 - p->alpha_cumprod) * (1 - p->alpha_cumprod / p->alpha_cumprod_prev);
    CHECK_NEAR(p->c_noise, 0.5 * sqrt(var), 1e-12);
    CHECK_NEAR(p->c_eps * p->c_eps + p->c_noise * p->c_noise, 1 - p->alpha_cumprod_prev, 1e-12);
  }
  ldmc_sampler_schedule_release(&s);

  /* DDPM: no noise at t = 0; fixed_large's variance is beta_t = 1 - abar_t / abar_prev */
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDPM, 20);
  c.spacing = LDMC_SPACING_LINSPACE;
  c.variance = LDMC_DDPM_FIXED_LARGE;
  s = sched(LDMC_BETA_SCALED_LINEAR, &c);
  CHECK(s.steps[19].timestep == 0 && s.steps[19].c_noise == 0 && s.steps[19].prev_timestep == -1);
  for (int i = 0; i < 19; i++) {
    CHECK(s.steps[i].prev_timestep == s.steps[i + 1].timestep);
    CHECK_NEAR(s.steps[i].c_noise * s.steps[i].c_noise, 1 - s.steps[i].alpha_cumprod / s.steps[i].alpha_cumprod_prev, 1e-12);
  }
  ldmc_sampler_schedule_release(&s);

  /* DPM-Solver++: first order == DDIM to the next timestep; the second-order term from the log-SNRs */
  for (int bs = 0; bs < 2; bs++) {
    ldmc_beta_schedule sch = bs ? LDMC_BETA_SQUAREDCOS_CAP_V2 : LDMC_BETA_SCALED_LINEAR;
    ldmc_diffusion_config d2 = dc_of(sch);
    double a2[1000];
    ldmc_diffusion_schedule(&d2, NULL, a2);
    ldmc_sampler_config_default(&c, LDMC_SAMPLER_DPMPP_2M, 20);
    c.final_sigmas = LDMC_FINAL_SIGMA_MIN;
    s = sched(sch, &c);
    double w1 = 0, w2 = 0;
    for (int i = 0; i < s.n_steps; i++) {
      const ldmc_sampler_step *p = &s.steps[i];
      double abp = i + 1 < s.n_steps ? a2[s.steps[i + 1].timestep] : a2[0];
      /* DDIM eta=0 from t to abp in the (x, x0) basis: eps = (x - alpha x0) / sigma */
      double cx = sqrt(1 - abp) / p->sigma, cx0 = sqrt(abp) - sqrt(1 - abp) * p->alpha / p->sigma;
      w1 = fmax(w1, fmax(fabs(cx - p->c_x), fabs(cx0 - p->c_x0)));
      CHECK_NEAR(p->alpha_cumprod_prev, abp, 1e-12);
      if (i > 0) {
        double lam_s1 = 0.5 * log(a2[s.steps[i - 1].timestep] / (1 - a2[s.steps[i - 1].timestep]));
        double lam_s0 = 0.5 * log(p->alpha_cumprod / (1 - p->alpha_cumprod)), lam_t = 0.5 * log(abp / (1 - abp));
        double h = lam_t - lam_s0, r0 = (lam_s0 - lam_s1) / h;
        double want = p->order == 2 ? -0.5 * sqrt(abp) * (exp(-h) - 1) / r0 : 0;
        w2 = fmax(w2, fabs(want - p->c_d));
      }
    }
    CHECK_MSG(w1 < 1e-9 && w2 < 1e-9, "DPM-Solver++ vs DDIM / second-order term: %g, %g", w1, w2);
    printf("DPM-Solver++ (%s): first order == DDIM within %.2g, c_d from log-SNRs within %.2g\n",
           ldmc_beta_schedule_name(sch), w1, w2);
    ldmc_sampler_schedule_release(&s);
  }

  /* orders: first at the first step; at the last one with final sigma zero, or N < 15 and lower_order_final */
  struct { int N; ldmc_final_sigmas fs; bool lof, euler; int last; } cases[] = {
      {10, LDMC_FINAL_SIGMA_ZERO, true, false, 1}, {20, LDMC_FINAL_SIGMA_ZERO, true, false, 1},
      {10, LDMC_FINAL_SIGMA_MIN, true, false, 1},  {20, LDMC_FINAL_SIGMA_MIN, true, false, 2},
      {10, LDMC_FINAL_SIGMA_MIN, false, false, 2}, {20, LDMC_FINAL_SIGMA_MIN, false, true, 1},
      {14, LDMC_FINAL_SIGMA_MIN, true, false, 1},  {15, LDMC_FINAL_SIGMA_MIN, true, false, 2},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ldmc_sampler_config_default(&c, LDMC_SAMPLER_DPMPP_2M, cases[k].N);
    c.final_sigmas = cases[k].fs;
    c.lower_order_final = cases[k].lof;
    c.euler_at_final = cases[k].euler;
    s = sched(LDMC_BETA_SCALED_LINEAR, &c);
    int bad = s.steps[0].order != 1 || s.steps[s.n_steps - 1].order != cases[k].last;
    for (int i = 1; i < s.n_steps - 1; i++) bad |= s.steps[i].order != 2;
    CHECK_MSG(!bad, "DPM-Solver++ N=%d final %d lower_order_final %d: orders wrong (last %d)", cases[k].N,
              (int)cases[k].fs, cases[k].lof, s.steps[s.n_steps - 1].order);
    if (cases[k].fs == LDMC_FINAL_SIGMA_ZERO) { /* lands on x0 */
      const ldmc_sampler_step *p = &s.steps[s.n_steps - 1];
      CHECK(p->c_x == 0 && p->c_x0 == 1 && p->c_d == 0 && p->alpha_cumprod_prev == 1 && p->prev_timestep == -1);
    }
    ldmc_sampler_schedule_release(&s);
  }
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DPMPP_2M, 1);
  s = sched(LDMC_BETA_SCALED_LINEAR, &c);
  CHECK(s.n_steps == 1 && s.steps[0].order == 1 && s.steps[0].timestep == 999);
  ldmc_sampler_schedule_release(&s);
}

/* ---- 4: errors ---- */
static void test_errors(void) {
  ldmc_diffusion_config dc = dc_of(LDMC_BETA_SCALED_LINEAR);
  ldmc_sampler_config c;
  ldmc_sampler_schedule s;
  int64_t ts[1100];
  int n;
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDIM, 0);
  CHECK(ldmc_sampler_schedule_build(&dc, &c, &s) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "steps"));
  c.steps = 1001;
  CHECK(ldmc_sampler_timesteps(&dc, &c, ts, 1100, &n) == LDMC_ERR_INVALID && n == 0);
  c.steps = 1000;
  c.steps_offset = 1;
  CHECK(ldmc_sampler_timesteps(&dc, &c, ts, 1100, &n) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "1000"));
  printf("error: %s\n", ldmc_last_error());
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DPMPP_2M, 1000);
  c.spacing = LDMC_SPACING_LEADING;
  CHECK(ldmc_sampler_schedule_build(&dc, &c, &s) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "repeats"));
  printf("error: %s\n", ldmc_last_error());
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDPM, 10);
  c.eta = 0.5;
  CHECK(ldmc_sampler_schedule_build(&dc, &c, &s) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "eta"));
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDIM, 10);
  c.eta = -1;
  CHECK(ldmc_sampler_schedule_build(&dc, &c, &s) == LDMC_ERR_INVALID);
  c.eta = 3; /* 1 - abar_prev - sigma^2 < 0 */
  CHECK(ldmc_sampler_schedule_build(&dc, &c, &s) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "eta"));
  printf("error: %s\n", ldmc_last_error());
  c.eta = 0;
  c.steps_offset = -1;
  CHECK(ldmc_sampler_schedule_build(&dc, &c, &s) == LDMC_ERR_INVALID);
  ldmc_sampler_config_default(&c, LDMC_SAMPLER_DDIM, 10);
  CHECK(ldmc_sampler_timesteps(&dc, &c, ts, 5, &n) == LDMC_ERR_INVALID);
  ldmc_sampler_kind k;
  ldmc_timestep_spacing sp;
  ldmc_ddpm_variance v;
  CHECK(ldmc_sampler_parse("euler", &k) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "dpmpp2m"));
  CHECK(ldmc_sampler_parse("dpm++2m", &k) == LDMC_OK && k == LDMC_SAMPLER_DPMPP_2M);
  CHECK(ldmc_spacing_parse("even", &sp) == LDMC_ERR_INVALID && ldmc_spacing_parse("trailing", &sp) == LDMC_OK &&
        sp == LDMC_SPACING_TRAILING);
  CHECK(ldmc_ddpm_variance_parse("learned", &v) == LDMC_ERR_INVALID && ldmc_ddpm_variance_parse("fixed_large", &v) == LDMC_OK);
  ldmc_prediction p;
  CHECK(ldmc_prediction_parse("sample", &p) == LDMC_OK && p == LDMC_PREDICT_SAMPLE && !strcmp(ldmc_prediction_name(p), "sample"));
}

int main(void) {
  test_published();
  test_reference();
  test_identities();
  test_errors();
  return test_summary("test_sampler_schedule");
}
