/* Sampler timesteps and per-step coefficients (samplers.h): diffusers'
 * DDIMScheduler, DDPMScheduler and DPMSolverMultistepScheduler rules, with
 * numpy's arithmetic (linspace, float arange, round half to even) done the
 * same way in double so that the integers agree exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/samplers.h"

static const char *const k_sampler_names[] = {"ddim", "ddpm", "dpmpp2m", "lcm"};
_Static_assert(sizeof k_sampler_names / sizeof k_sampler_names[0] == LDMC_SAMPLER_COUNT, "a name per sampler");

void ldmc_lcm_boundary(double t, double scaling, double *c_skip, double *c_out) {
  double s = scaling * t, sd2 = LDMC_LCM_SIGMA_DATA * LDMC_LCM_SIGMA_DATA;
  *c_skip = sd2 / (s * s + sd2);
  *c_out = s / sqrt(s * s + sd2);
}
static const char *const k_spacing_names[] = {"leading", "trailing", "linspace"};
static const char *const k_variance_names[] = {"fixed_small", "fixed_large"};

const char *ldmc_sampler_name(ldmc_sampler_kind k) { return (unsigned)k < LDMC_SAMPLER_COUNT ? k_sampler_names[k] : "?"; }

ldmc_status ldmc_sampler_parse(const char *s, ldmc_sampler_kind *out) {
  for (int i = 0; s && i < LDMC_SAMPLER_COUNT; i++)
    if (!strcmp(s, k_sampler_names[i])) {
      *out = (ldmc_sampler_kind)i;
      return LDMC_OK;
    }
  if (s && (!strcmp(s, "dpm++2m") || !strcmp(s, "dpmsolver++") || !strcmp(s, "dpm++"))) {
    *out = LDMC_SAMPLER_DPMPP_2M;
    return LDMC_OK;
  }
  return ldmc_error(LDMC_ERR_INVALID, "unknown sampler '%s' (ddim, ddpm, dpmpp2m, lcm)", s ? s : "");
}

const char *ldmc_spacing_name(ldmc_timestep_spacing s) { return (unsigned)s < LDMC_SPACING_COUNT ? k_spacing_names[s] : "?"; }

ldmc_status ldmc_spacing_parse(const char *s, ldmc_timestep_spacing *out) {
  for (int i = 0; s && i < LDMC_SPACING_COUNT; i++)
    if (!strcmp(s, k_spacing_names[i])) {
      *out = (ldmc_timestep_spacing)i;
      return LDMC_OK;
    }
  return ldmc_error(LDMC_ERR_INVALID, "unknown timestep spacing '%s' (leading, trailing, linspace)", s ? s : "");
}

const char *ldmc_ddpm_variance_name(ldmc_ddpm_variance v) { return (unsigned)v < 2 ? k_variance_names[v] : "?"; }

ldmc_status ldmc_ddpm_variance_parse(const char *s, ldmc_ddpm_variance *out) {
  for (int i = 0; s && i < 2; i++)
    if (!strcmp(s, k_variance_names[i])) {
      *out = (ldmc_ddpm_variance)i;
      return LDMC_OK;
    }
  return ldmc_error(LDMC_ERR_INVALID, "unknown DDPM variance type '%s' (fixed_small, fixed_large)", s ? s : "");
}

void ldmc_sampler_config_default(ldmc_sampler_config *c, ldmc_sampler_kind kind, int steps) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->steps = steps;
  c->spacing = kind == LDMC_SAMPLER_DPMPP_2M ? LDMC_SPACING_LINSPACE : LDMC_SPACING_LEADING;
  c->set_alpha_to_one = true;
  c->variance = LDMC_DDPM_FIXED_SMALL;
  c->lower_order_final = true;
  c->final_sigmas = LDMC_FINAL_SIGMA_ZERO;
  c->lambda_min_clipped = -INFINITY;
  c->clip_sample_range = 1.0;
  c->lcm_origin_steps = 50;
  c->timestep_scaling = 10.0;
}

ldmc_status ldmc_sampler_config_check(const ldmc_sampler_config *c, int T) {
  if ((unsigned)c->kind >= LDMC_SAMPLER_COUNT) return ldmc_error(LDMC_ERR_INVALID, "sampler: unknown kind %d", (int)c->kind);
  if (c->steps < 1 || c->steps > T)
    return ldmc_error(LDMC_ERR_INVALID, "sampler %s: %d steps is not in [1, %d] (the training timesteps)",
                      ldmc_sampler_name(c->kind), c->steps, T);
  if ((unsigned)c->spacing >= LDMC_SPACING_COUNT)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: unknown timestep spacing %d", (int)c->spacing);
  if (c->steps_offset < 0 || c->steps_offset >= T)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: steps offset %d is not in [0, %d)", c->steps_offset, T);
  if (!(c->eta >= 0) || !isfinite(c->eta))
    return ldmc_error(LDMC_ERR_INVALID, "sampler: eta %g is not a finite number >= 0", c->eta);
  if (c->kind != LDMC_SAMPLER_DDIM && c->eta != 0)
    return ldmc_error(LDMC_ERR_INVALID, "sampler %s: eta is DDIM's (here %g)", ldmc_sampler_name(c->kind), c->eta);
  if ((unsigned)c->variance > LDMC_DDPM_FIXED_LARGE)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: unknown DDPM variance type %d", (int)c->variance);
  if ((unsigned)c->final_sigmas > LDMC_FINAL_SIGMA_MIN)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: unknown final sigmas type %d", (int)c->final_sigmas);
  if (c->kind == LDMC_SAMPLER_LCM) {
    if (c->lcm_origin_steps < 1 || c->lcm_origin_steps > T)
      return ldmc_error(LDMC_ERR_INVALID, "sampler lcm: %d solver steps is not in [1, %d]", c->lcm_origin_steps, T);
    if (c->steps > c->lcm_origin_steps)
      return ldmc_error(LDMC_ERR_INVALID, "sampler lcm: %d steps is more than the %d solver steps of the distillation",
                        c->steps, c->lcm_origin_steps);
    if (!(c->timestep_scaling > 0) || !isfinite(c->timestep_scaling))
      return ldmc_error(LDMC_ERR_INVALID, "sampler lcm: timestep scaling %g is not a positive number",
                        c->timestep_scaling);
  }
  if (isnan(c->lambda_min_clipped))
    return ldmc_error(LDMC_ERR_INVALID, "sampler: lambda_min_clipped is NaN");
  if (c->clip_sample && !(c->clip_sample_range > 0 && isfinite(c->clip_sample_range)))
    return ldmc_error(LDMC_ERR_INVALID, "sampler: clip range %g is not a positive number", c->clip_sample_range);
  return LDMC_OK;
}

/* numpy's round (half to even): rint under the default rounding mode. */
static double np_round(double x) { return nearbyint(x); }

/* np.linspace(0, stop, num)[i]: i * (stop / (num - 1)), the last exactly stop. */
static double np_linspace(double stop, int num, int i) {
  if (num == 1) return 0;
  if (i == num - 1) return stop;
  return (double)i * (stop / (double)(num - 1));
}

/* np.arange(start, 0, -step) for a float step: its length, and its values
 * start + i * delta with delta = (start - step) - start, as numpy fills it. */
static int np_arange_down(double start, double step, double *v, int cap) {
  double len = ceil((0.0 - start) / -step);
  int n = len > 0 ? (int)fmin(len, (double)cap) : 0;
  double delta = (start - step) - start;
  for (int i = 0; i < n; i++) v[i] = i == 0 ? start : i == 1 ? start - step : start + (double)i * delta;
  return n;
}

/* DPM-Solver: timesteps t with lambda_t = log(alpha_t / sigma_t) below the
 * clip are left out: last_timestep = T - their count. */
static int dpm_last_timestep(const double *abar, int T, double lambda_min) {
  int clipped = 0;
  for (int t = 0; t < T; t++)
    if (0.5 * log(abar[t] / (1 - abar[t])) < lambda_min) clipped++;
  return T - clipped;
}

static ldmc_status timesteps_from(const double *abar, int T, const ldmc_sampler_config *sc, int64_t *out, int cap,
                                  int *n_out) {
  *n_out = 0;
  LDMC_TRY(ldmc_sampler_config_check(sc, T));
  int N = sc->steps;
  bool dpm = sc->kind == LDMC_SAMPLER_DPMPP_2M;
  int last = dpm ? dpm_last_timestep(abar, T, sc->lambda_min_clipped) : T;
  if (last < 1)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: lambda_min_clipped %g leaves no timestep", sc->lambda_min_clipped);
  if (sc->kind == LDMC_SAMPLER_LCM) { /* diffusers' LCMScheduler.set_timesteps, strength 1 */
    int origin = sc->lcm_origin_steps, k = T / origin;
    if (N > cap) return ldmc_error(LDMC_ERR_INVALID, "sampler: %d timesteps do not fit in %d", N, cap);
    double step = (double)origin / (double)N; /* np.linspace(0, origin, N, endpoint=False) */
    for (int i = 0; i < N; i++) {
      int idx = (int)floor((double)i * step);
      out[i] = (int64_t)(origin - idx) * k - 1; /* the reversed list k i - 1, i = origin..1 */
    }
    *n_out = N;
    return LDMC_OK;
  }
  double *v = malloc((size_t)(N + 2) * sizeof *v);
  if (!v) return ldmc_error(LDMC_ERR_NOMEM, "sampler: out of memory");
  int n = 0;
  switch (sc->spacing) {
    case LDMC_SPACING_LINSPACE: /* DDIM/DDPM: N points of [0, T-1]; DPM: N+1 of [0, last-1], the 0 dropped */
      if (dpm)
        for (int i = N; i >= 1; i--) v[n++] = np_round(np_linspace(last - 1, N + 1, i));
      else
        for (int i = N - 1; i >= 0; i--) v[n++] = np_round(np_linspace(T - 1, N, i));
      break; /* no steps_offset in either */
    case LDMC_SPACING_LEADING: {
      int ratio = dpm ? last / (N + 1) : T / N;
      for (int i = (dpm ? N : N - 1); i >= (dpm ? 1 : 0); i--) v[n++] = (double)i * ratio + sc->steps_offset;
      break;
    }
    case LDMC_SPACING_TRAILING: {
      n = np_arange_down(dpm ? (double)last : (double)T, (double)T / N, v, N + 2);
      for (int i = 0; i < n; i++) v[i] = np_round(v[i]) - 1;
      while (n > 0 && v[n - 1] < 0) n--; /* numpy's float arange can add a value near 0: -1 once rounded */
      break;
    }
    default: break;
  }
  ldmc_status st = LDMC_OK;
  if (n > cap) st = ldmc_error(LDMC_ERR_INVALID, "sampler: %d timesteps do not fit %d", n, cap);
  for (int i = 0; i < n && st == LDMC_OK; i++) {
    if (v[i] < 0 || v[i] >= T)
      st = ldmc_error(LDMC_ERR_INVALID, "sampler %s: %s spacing with %d steps and offset %d gives timestep %.0f, "
                      "outside [0, %d)", ldmc_sampler_name(sc->kind), ldmc_spacing_name(sc->spacing), N,
                      sc->steps_offset, v[i], T);
    else if (dpm && i > 0 && v[i] >= v[i - 1]) /* diffusers would start at the second of equal timesteps */
      st = ldmc_error(LDMC_ERR_INVALID, "sampler %s: %s spacing with %d steps repeats timestep %.0f; use fewer steps",
                      ldmc_sampler_name(sc->kind), ldmc_spacing_name(sc->spacing), N, v[i]);
    else out[i] = (int64_t)v[i];
  }
  free(v);
  if (st == LDMC_OK) *n_out = n;
  return st;
}

static ldmc_status schedule_abar(const ldmc_diffusion_config *dc, double **abar) {
  *abar = NULL;
  LDMC_TRY(ldmc_diffusion_config_check(dc));
  double *a = malloc((size_t)dc->timesteps * sizeof *a);
  if (!a) return ldmc_error(LDMC_ERR_NOMEM, "sampler: out of memory");
  ldmc_status st = ldmc_diffusion_schedule(dc, NULL, a);
  if (st != LDMC_OK) free(a);
  else *abar = a;
  return st;
}

ldmc_status ldmc_sampler_timesteps(const ldmc_diffusion_config *dc, const ldmc_sampler_config *sc, int64_t *out,
                                   int cap, int *n) {
  *n = 0;
  double *abar;
  LDMC_TRY(schedule_abar(dc, &abar));
  ldmc_status st = timesteps_from(abar, dc->timesteps, sc, out, cap, n);
  free(abar);
  return st;
}

/* ---- per-step coefficients ---- */

static ldmc_status ddim_step(const ldmc_sampler_config *sc, const double *abar, int T, ldmc_sampler_step *s) {
  s->prev_timestep = s->timestep - T / sc->steps; /* diffusers: t - T // N whatever the spacing */
  double ab = s->alpha_cumprod, abp = s->prev_timestep >= 0 ? abar[s->prev_timestep] : sc->set_alpha_to_one ? 1 : abar[0];
  s->alpha_cumprod_prev = abp;
  double var = (1 - abp) / (1 - ab) * (1 - ab / abp), std = sc->eta * sqrt(var);
  double dir = 1 - abp - std * std;
  if (dir < 0)
    return ldmc_error(LDMC_ERR_INVALID, "sampler ddim: eta %g makes 1 - abar_prev - sigma^2 = %g < 0 at timestep %lld",
                      sc->eta, dir, (long long)s->timestep);
  s->c_x0 = sqrt(abp);
  s->c_eps = sqrt(dir);
  s->c_noise = std;
  return LDMC_OK;
}

static void ddpm_step(const ldmc_sampler_config *sc, const double *abar, ldmc_sampler_step *s) {
  double ab = s->alpha_cumprod, abp = s->prev_timestep >= 0 ? abar[s->prev_timestep] : 1;
  s->alpha_cumprod_prev = abp;
  double cur_alpha = ab / abp, cur_beta = 1 - cur_alpha;
  s->c_x0 = sqrt(abp) * cur_beta / (1 - ab);
  s->c_x = sqrt(cur_alpha) * (1 - abp) / (1 - ab);
  double var = sc->variance == LDMC_DDPM_FIXED_LARGE ? cur_beta : fmax((1 - abp) / (1 - ab) * cur_beta, 1e-20);
  s->c_noise = s->timestep > 0 ? sqrt(var) : 0; /* diffusers adds noise while t > 0 */
}

/* LCMScheduler.step: denoised = c_skip x + c_out x0, then re-noised to the
 * next timestep (abar_prev), except after the last step, which returns it. */
static void lcm_step(const ldmc_sampler_config *sc, const double *abar, bool last, ldmc_sampler_step *s) {
  ldmc_lcm_boundary((double)s->timestep, sc->timestep_scaling, &s->c_skip, &s->c_out);
  if (last) {
    s->prev_timestep = -1;
    s->alpha_cumprod_prev = 1; /* set_alpha_to_one: unused, nothing is re-noised */
    s->c_x = s->c_skip, s->c_x0 = s->c_out;
    return;
  }
  double abp = abar[s->prev_timestep];
  s->alpha_cumprod_prev = abp;
  s->c_x = sqrt(abp) * s->c_skip;
  s->c_x0 = sqrt(abp) * s->c_out;
  s->c_noise = sqrt(1 - abp);
}

/* DPM-Solver++ in sigma = sqrt((1 - abar) / abar): alpha = 1 / sqrt(sigma^2 + 1),
 * sigma_t = sigma alpha, lambda = -log sigma, so exp(-h) = sigma_t / sigma_s. */
static ldmc_status dpm_steps(const ldmc_sampler_config *sc, const double *abar, ldmc_sampler_schedule *o) {
  int n = o->n_steps;
  double *sg = malloc((size_t)(n + 1) * sizeof *sg);
  if (!sg) return ldmc_error(LDMC_ERR_NOMEM, "sampler: out of memory");
  for (int i = 0; i < n; i++) {
    double ab = abar[o->steps[i].timestep];
    sg[i] = sqrt((1 - ab) / ab);
  }
  sg[n] = sc->final_sigmas == LDMC_FINAL_SIGMA_MIN ? sqrt((1 - abar[0]) / abar[0]) : 0;
  for (int i = 0; i < n; i++) {
    ldmc_sampler_step *s = &o->steps[i];
    double a_s = 1 / sqrt(sg[i] * sg[i] + 1), a_t = 1 / sqrt(sg[i + 1] * sg[i + 1] + 1);
    double s_s = sg[i] * a_s, s_t = sg[i + 1] * a_t;
    s->prev_timestep = i + 1 < n ? o->steps[i + 1].timestep : -1;
    s->alpha_cumprod_prev = a_t * a_t;
    s->alpha = a_s, s->sigma = s_s;
    bool final_first = i == n - 1 && (sc->euler_at_final || (sc->lower_order_final && n < 15) ||
                                      sc->final_sigmas == LDMC_FINAL_SIGMA_ZERO);
    s->order = i == 0 || final_first ? 1 : 2;
    double emh = sg[i + 1] / sg[i]; /* exp(-h) */
    s->c_x = s_t / s_s;
    s->c_x0 = a_t * (1 - emh);
    if (s->order == 2) { /* D1 = (m0 - m1) / r0, r0 = h_0 / h; x' += 0.5 a_t (1 - exp(-h)) D1 */
      double h = log(sg[i] / sg[i + 1]), h0 = log(sg[i - 1] / sg[i]);
      s->c_d = 0.5 * a_t * (1 - emh) * h / h0;
    }
  }
  free(sg);
  return LDMC_OK;
}

ldmc_status ldmc_sampler_schedule_build(const ldmc_diffusion_config *dc, const ldmc_sampler_config *sc,
                                        ldmc_sampler_schedule *out) {
  memset(out, 0, sizeof *out);
  double *abar;
  LDMC_TRY(schedule_abar(dc, &abar));
  int T = dc->timesteps, cap = sc->steps + 1;
  int64_t *ts = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ts);
  ldmc_status st = ts ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "sampler: out of memory");
  int n = 0;
  if (st == LDMC_OK) st = timesteps_from(abar, T, sc, ts, cap, &n);
  if (st == LDMC_OK && n < 1) st = ldmc_error(LDMC_ERR_INVALID, "sampler: no timesteps");
  if (st == LDMC_OK && !(out->steps = calloc((size_t)(n > 0 ? n : 1), sizeof *out->steps)))
    st = ldmc_error(LDMC_ERR_NOMEM, "sampler: out of memory");
  if (st == LDMC_OK) {
    out->config = *sc;
    out->n_steps = n;
    for (int i = 0; i < n && st == LDMC_OK; i++) {
      ldmc_sampler_step *s = &out->steps[i];
      s->timestep = ts[i];
      s->alpha_cumprod = abar[ts[i]];
      s->alpha = sqrt(s->alpha_cumprod);
      s->sigma = sqrt(1 - s->alpha_cumprod);
      if (sc->kind == LDMC_SAMPLER_DDIM) st = ddim_step(sc, abar, T, s);
      else if (sc->kind == LDMC_SAMPLER_DDPM) {
        s->prev_timestep = i + 1 < n ? ts[i + 1] : -1; /* the next in the list (older diffusers: t - T // N) */
        ddpm_step(sc, abar, s);
      } else if (sc->kind == LDMC_SAMPLER_LCM) {
        s->prev_timestep = i + 1 < n ? ts[i + 1] : -1;
        lcm_step(sc, abar, i + 1 == n, s);
      }
    }
    if (st == LDMC_OK && sc->kind == LDMC_SAMPLER_DPMPP_2M) st = dpm_steps(sc, abar, out);
  }
  free(ts);
  free(abar);
  if (st != LDMC_OK) ldmc_sampler_schedule_release(out);
  return st;
}

void ldmc_sampler_schedule_release(ldmc_sampler_schedule *s) {
  if (!s) return;
  free(s->steps);
  memset(s, 0, sizeof *s);
}
