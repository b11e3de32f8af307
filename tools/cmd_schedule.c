/* ldmc schedule: a sampler's inference timesteps and per-step coefficients
 * (models/samplers.h), one row per denoising step, as CSV or an aligned
 * table: what `ldmc sample` runs, without running a model. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/samplers.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

enum {
  F_SCHEDULE, F_SAMPLER, F_STEPS, F_SPACING, F_OFFSET, F_ETA, F_VARIANCE, F_FINAL, F_NO_ALPHA_ONE, F_NO_LOF,
  F_LAMBDA, F_TRAIN_T, F_FORMAT, F_COUNT
};

static ldmc_cli_flag k_flags[F_COUNT] = {
    [F_SCHEDULE] = {"schedule", "NAME", "noise schedule: scaled-linear (SD-1.5's betas 0.00085..0.012, the default),\n"
                                        "cosine (squaredcos_cap_v2) or linear (diffusers' names work too)"},
    [F_SAMPLER] = {"sampler", "NAME", "ddim (default), ddpm, dpmpp2m (DPM-Solver++ 2M) or lcm (LCMScheduler, 50\n"
                                      "solver steps: for 4 steps 999, 759, 499, 259)"},
    [F_STEPS] = {"steps", "N", "inference steps, 1..train timesteps (default 50)"},
    [F_SPACING] = {"spacing", "RULE", "timestep spacing: leading, trailing or linspace (default: diffusers' for the\n"
                                      "sampler: leading for ddim and ddpm, linspace for dpmpp2m)"},
    [F_OFFSET] = {"steps-offset", "K", "added to leading timesteps (default 0; SD-1.5's scheduler configs use 1)"},
    [F_ETA] = {"eta", "E", "DDIM's noise weight >= 0 (default 0: deterministic; 1: DDPM's posterior)"},
    [F_VARIANCE] = {"variance", "TYPE", "DDPM's variance: fixed_small (default) or fixed_large"},
    [F_FINAL] = {"final-sigmas", "TYPE", "DPM-Solver++'s last sigma: zero (default; the last step returns x0) or sigma-min"},
    [F_NO_ALPHA_ONE] = {"no-alpha-to-one", NULL, "DDIM: the last step's abar_prev is abar_0 instead of 1 (set_alpha_to_one\n"
                                                 "false, as SD-1.5's configs have it)"},
    [F_NO_LOF] = {"no-lower-order-final", NULL, "DPM-Solver++: keep second order at the last step when N < 15"},
    [F_LAMBDA] = {"lambda-min-clipped", "L", "DPM-Solver++: leave out timesteps whose log(alpha/sigma) < L (default: none)"},
    [F_TRAIN_T] = {"train-timesteps", "T", "training timesteps of the schedule (default 1000)"},
    [F_FORMAT] = {"format", "FMT", "csv (default) or table"},
};

static ldmc_cli_cmd k_cmd = {
    .name = "schedule",
    .usage = "[--sampler ddim|ddpm|dpmpp2m|lcm] [--steps N] [--schedule scaled-linear|cosine|linear]\n"
             " [--spacing leading|trailing|linspace] [--steps-offset K] [--eta E] [--variance TYPE]\n"
             " [--final-sigmas zero|sigma-min] [--no-alpha-to-one] [--no-lower-order-final]\n"
             " [--lambda-min-clipped L] [--train-timesteps T] [--format csv|table]",
    .summary = "a sampler's timesteps and per-step coefficients (diffusers' rules), one row per step",
    .details = "Every step of every sampler is the update (docs/sampling.md)\n"
               "  x' = c_x x + c_x0 x0 + c_eps eps + c_d (x0 - x0_prev) + c_noise z\n"
               "with x0, eps the model's prediction converted at sqrt(abar_t), sqrt(1 - abar_t).\n"
               "Columns: step (1-based), timestep (given to the model), prev_timestep (the sampler's rule; -1 past\n"
               "the end), alpha_cumprod (abar_t), alpha_cumprod_prev, then the sampler's coefficients:\n"
               "  ddim     c_x0 c_eps c_noise      (c_noise = eta sigma_t(eta))\n"
               "  ddpm     c_x c_x0 c_noise        (the posterior mean's coefficients, sqrt of the variance)\n"
               "  dpmpp2m  order c_x c_x0 c_d      (order 1 or 2; c_d weighs x0 - x0_prev)\n"
               "  lcm      c_skip c_out c_noise    (denoised = c_skip x + c_out x0, re-noised to prev_timestep:\n"
               "                                   c_x = sqrt(abar_prev) c_skip, c_x0 = sqrt(abar_prev) c_out)\n"
               "Examples:\n"
               "  ldmc schedule --sampler ddim --steps 50 --steps-offset 1\n"
               "  ldmc schedule --sampler dpmpp2m --steps 20 --spacing trailing --format table\n"
               "  ldmc schedule --sampler lcm --steps 4\n",
    .flags = k_flags,
    .n_flags = F_COUNT,
    .min_pos = 0,
    .max_pos = 0,
};

static int parse_double(const char *flag, const char *s, double lo, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (!s[0] || !end || *end || errno || !isfinite(v) || v < lo)
    return ldmc_cli_usage_error(&k_cmd, "--%s '%s' is not a number >= %g", flag, s, lo);
  *out = v;
  return LDMC_CLI_CONTINUE;
}

static int parse_schedule(const char *s, ldmc_beta_schedule *out) {
  if (!strcmp(s, "scaled-linear") || !strcmp(s, "scaled_linear")) *out = LDMC_BETA_SCALED_LINEAR;
  else if (!strcmp(s, "cosine") || !strcmp(s, "squaredcos_cap_v2")) *out = LDMC_BETA_SQUAREDCOS_CAP_V2;
  else if (!strcmp(s, "linear")) *out = LDMC_BETA_LINEAR;
  else return ldmc_cli_usage_error(&k_cmd, "--schedule '%s': expected scaled-linear, cosine or linear", s);
  return LDMC_CLI_CONTINUE;
}

/* the options into dc, sc; a usage status or LDMC_CLI_CONTINUE */
static int read_options(ldmc_diffusion_config *dc, ldmc_sampler_config *sc) {
  int rc;
  ldmc_diffusion_config_default(dc);
  ldmc_sampler_kind kind = LDMC_SAMPLER_DDIM;
  const char *v;
  if ((v = k_flags[F_SAMPLER].value) && ldmc_sampler_parse(v, &kind) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--sampler '%s': expected ddim, ddpm or dpmpp2m", v);
  if ((v = k_flags[F_SCHEDULE].value) && (rc = parse_schedule(v, &dc->schedule)) != LDMC_CLI_CONTINUE) return rc;
  int64_t T = 1000, steps = 50, offset = 0;
  if ((rc = ldmc_cli_int(&k_cmd, "train-timesteps", 2, 100000, &T)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(&k_cmd, "steps", 1, T, &steps)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(&k_cmd, "steps-offset", 0, T - 1, &offset)) != LDMC_CLI_CONTINUE) return rc;
  dc->timesteps = (int)T;
  ldmc_sampler_config_default(sc, kind, (int)steps);
  sc->steps_offset = (int)offset;
  if ((v = k_flags[F_SPACING].value) && ldmc_spacing_parse(v, &sc->spacing) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--spacing '%s': expected leading, trailing or linspace", v);
  if ((v = k_flags[F_ETA].value)) {
    if ((rc = parse_double("eta", v, 0, &sc->eta)) != LDMC_CLI_CONTINUE) return rc;
    if (kind != LDMC_SAMPLER_DDIM) return ldmc_cli_usage_error(&k_cmd, "--eta is DDIM's (the sampler is %s)", ldmc_sampler_name(kind));
  }
  if ((v = k_flags[F_VARIANCE].value)) {
    if (ldmc_ddpm_variance_parse(v, &sc->variance) != LDMC_OK)
      return ldmc_cli_usage_error(&k_cmd, "--variance '%s': expected fixed_small or fixed_large", v);
    if (kind != LDMC_SAMPLER_DDPM) return ldmc_cli_usage_error(&k_cmd, "--variance is DDPM's (the sampler is %s)", ldmc_sampler_name(kind));
  }
  if ((v = k_flags[F_FINAL].value)) {
    if (!strcmp(v, "zero")) sc->final_sigmas = LDMC_FINAL_SIGMA_ZERO;
    else if (!strcmp(v, "sigma-min") || !strcmp(v, "sigma_min")) sc->final_sigmas = LDMC_FINAL_SIGMA_MIN;
    else return ldmc_cli_usage_error(&k_cmd, "--final-sigmas '%s': expected zero or sigma-min", v);
  }
  if ((v = k_flags[F_LAMBDA].value)) {
    char *end = NULL;
    errno = 0;
    sc->lambda_min_clipped = strtod(v, &end);
    if (!v[0] || *end || errno || isnan(sc->lambda_min_clipped))
      return ldmc_cli_usage_error(&k_cmd, "--lambda-min-clipped '%s' is not a number", v);
  }
  bool dpm_only = k_flags[F_FINAL].value || k_flags[F_NO_LOF].value || k_flags[F_LAMBDA].value;
  if (dpm_only && kind != LDMC_SAMPLER_DPMPP_2M)
    return ldmc_cli_usage_error(&k_cmd, "--final-sigmas, --no-lower-order-final and --lambda-min-clipped are "
                                "DPM-Solver++'s (the sampler is %s)", ldmc_sampler_name(kind));
  if (k_flags[F_NO_ALPHA_ONE].value && kind != LDMC_SAMPLER_DDIM)
    return ldmc_cli_usage_error(&k_cmd, "--no-alpha-to-one is DDIM's (the sampler is %s)", ldmc_sampler_name(kind));
  sc->set_alpha_to_one = !k_flags[F_NO_ALPHA_ONE].value;
  sc->lower_order_final = !k_flags[F_NO_LOF].value;
  return LDMC_CLI_CONTINUE;
}

int ldmc_cmd_schedule(int argc, char **argv) {
  int rc = ldmc_cli_parse(&k_cmd, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *fmt = k_flags[F_FORMAT].value ? k_flags[F_FORMAT].value : "csv";
  bool table = !strcmp(fmt, "table");
  if (!table && strcmp(fmt, "csv")) return ldmc_cli_usage_error(&k_cmd, "--format '%s': expected csv or table", fmt);
  ldmc_diffusion_config dc;
  ldmc_sampler_config sc;
  if ((rc = read_options(&dc, &sc)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_sampler_schedule s;
  ldmc_status st = ldmc_sampler_schedule_build(&dc, &sc, &s);
  if (st == LDMC_ERR_INVALID) return ldmc_cli_usage_error(&k_cmd, "%s", ldmc_last_error()); /* a flag combination */
  if (st != LDMC_OK) return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());

  static const char *const cols[LDMC_SAMPLER_COUNT][4] = {
      {"c_x0", "c_eps", "c_noise", NULL}, {"c_x", "c_x0", "c_noise", NULL}, {"order", "c_x", "c_x0", "c_d"},
      {"c_skip", "c_out", "c_noise", NULL}};
  const char *const *c = cols[sc.kind];
  if (table) {
    printf("# %s, %d steps, ", ldmc_sampler_name(sc.kind), s.n_steps);
    if (sc.kind != LDMC_SAMPLER_LCM) /* LCM's timesteps come from its solver steps */
      printf("%s spacing, steps_offset %d, ", ldmc_spacing_name(sc.spacing), sc.steps_offset);
    printf("%s schedule (T = %d)", ldmc_beta_schedule_name(dc.schedule), dc.timesteps);
    if (sc.kind == LDMC_SAMPLER_DDIM) printf(", eta %g, set_alpha_to_one %s", sc.eta, sc.set_alpha_to_one ? "true" : "false");
    if (sc.kind == LDMC_SAMPLER_DDPM) printf(", %s", ldmc_ddpm_variance_name(sc.variance));
    if (sc.kind == LDMC_SAMPLER_LCM)
      printf(", %d solver steps, timestep scaling %g", sc.lcm_origin_steps, sc.timestep_scaling);
    if (sc.kind == LDMC_SAMPLER_DPMPP_2M)
      printf(", final sigma %s, lower_order_final %s", sc.final_sigmas == LDMC_FINAL_SIGMA_ZERO ? "zero" : "sigma_min",
             sc.lower_order_final ? "true" : "false");
    printf("\n%5s %8s %13s %14s %18s", "step", "timestep", "prev_timestep", "alpha_cumprod", "alpha_cumprod_prev");
    for (int k = 0; k < 4 && c[k]; k++) printf(" %*s", !strcmp(c[k], "order") ? 5 : 12, c[k]);
    printf("\n");
  } else {
    printf("step,timestep,prev_timestep,alpha_cumprod,alpha_cumprod_prev");
    for (int k = 0; k < 4 && c[k]; k++) printf(",%s", c[k]);
    printf("\n");
  }
  for (int i = 0; i < s.n_steps; i++) {
    const ldmc_sampler_step *p = &s.steps[i];
    double v[4];
    int n = 0;
    if (sc.kind == LDMC_SAMPLER_DDIM) v[n++] = p->c_x0, v[n++] = p->c_eps, v[n++] = p->c_noise;
    else if (sc.kind == LDMC_SAMPLER_DDPM) v[n++] = p->c_x, v[n++] = p->c_x0, v[n++] = p->c_noise;
    else if (sc.kind == LDMC_SAMPLER_LCM) v[n++] = p->c_skip, v[n++] = p->c_out, v[n++] = p->c_noise;
    else v[n++] = p->order, v[n++] = p->c_x, v[n++] = p->c_x0, v[n++] = p->c_d;
    if (table) {
      printf("%5d %8lld %13lld %14.9f %18.9f", i + 1, (long long)p->timestep, (long long)p->prev_timestep, p->alpha_cumprod,
             p->alpha_cumprod_prev);
      for (int k = 0; k < n; k++)
        if (!strcmp(c[k], "order")) printf(" %5d", p->order);
        else printf(" %12.8f", v[k]);
    } else {
      printf("%d,%lld,%lld,%.10g,%.10g", i + 1, (long long)p->timestep, (long long)p->prev_timestep, p->alpha_cumprod,
             p->alpha_cumprod_prev);
      for (int k = 0; k < n; k++)
        if (!strcmp(c[k], "order")) printf(",%d", p->order);
        else printf(",%.10g", v[k]);
    }
    printf("\n");
  }
  ldmc_sampler_schedule_release(&s);
  return fflush(stdout) == 0 ? LDMC_EXIT_OK : ldmc_cli_fail(&k_cmd, "writing the output failed");
}
