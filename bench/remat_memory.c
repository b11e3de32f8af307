/* Planned peak memory of U-Net gradient graphs under rematerialization.
 *   remat_memory [--latent HxW] [--context DxT] [--target T] [--graph grad|grad-sample|train]
 *                [--budgets F,F,...] C
 * Builds the U-Net at width C (models/unet.h) and one of:
 *   grad         ldmc_grad of sum(out_sample) wrt every weight (the gradients are outputs);
 *   grad-sample  ldmc_grad of sum(out_sample) wrt the sample only (weights frozen);
 *   train        an AdamW step (ldmc_train_step_build) of loss = sum(out_sample^2), state donated
 *                (each updated P, adam_m.P, adam_v.P overwrites its input: no arena slot).
 * Plans it (ldmc_compile_plan, nothing runs) with no budget, then with each
 * budget F x the unbudgeted peak (memory_budget), and prints the planned peak
 * (arena_bytes), whether the budget was met, and the FLOPs remat added. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend/frontend.h"
#include "models/unet.h"
#include "passes/passes.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double mib(int64_t b) { return (double)b / 1048576.0; }

/* loss = sum(out_sample^2), added as the output "loss". */
static ldmc_status add_loss(ldmc_graph *g) {
  int32_t o = g->outputs[0], ops[2] = {o, o};
  ldmc_attrs ra = {.reduce = LDMC_REDUCE_SUM};
  ra.dims.n = g->nodes[o].shape.rank;
  for (int i = 0; i < ra.dims.n; i++) ra.dims.v[i] = i;
  int32_t sq = ldmc_graph_add_checked(g, LDMC_OP_MUL, LDMC_F32, NULL, 2, ops, NULL, "loss");
  int32_t r = sq < 0 ? -1 : ldmc_graph_add_checked(g, LDMC_OP_REDUCE, LDMC_F32, NULL, 1, &sq, &ra, "loss");
  return r < 0 ? LDMC_ERR_INVALID : ldmc_graph_add_output(g, r, "loss");
}

int main(int argc, char **argv) {
  const char *latent = "64x64", *context = "1024x77", *target = "llvm-cpu", *kind = "grad", *budgets = "0.8,0.6";
  const char *width = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--latent") && v) latent = v, i++;
    else if (!strcmp(a, "--context") && v) context = v, i++;
    else if (!strcmp(a, "--target") && v) target = v, i++;
    else if (!strcmp(a, "--graph") && v) kind = v, i++;
    else if (!strcmp(a, "--budgets") && v) budgets = v, i++;
    else width = a;
  }
  bool train = !strcmp(kind, "train"), sample = !strcmp(kind, "grad-sample");
  if (!width || (!train && !sample && strcmp(kind, "grad"))) {
    fprintf(stderr, "usage: remat_memory [--latent HxW] [--context DxT] [--target T] [--graph grad|grad-sample|train] "
                    "[--budgets F,F,...] C\n");
    return 2;
  }
  ldmc_unet_config cfg;
  ldmc_graph *f = NULL, *g = NULL;
  const ldmc_target *t = ldmc_target_find(target);
  ldmc_pipeline_opts base = {.params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
  int32_t *pairs = NULL;
  ldmc_status s = t ? ldmc_unet_config_from_args(&cfg, width, latent, context, 1) : LDMC_ERR_INVALID;
  if (s == LDMC_OK) s = ldmc_unet_build(&cfg, &f);
  if (s == LDMC_OK && train) {
    ldmc_train_opts to = {.loss = "loss", .n_data_params = LDMC_UNET_N_INPUTS};
    s = add_loss(f);
    if (s == LDMC_OK) s = ldmc_train_step_build(f, &to, &g);
    if (s == LDMC_OK && !(pairs = malloc((size_t)g->n_outputs * sizeof *pairs))) s = LDMC_ERR_NOMEM;
    if (s == LDMC_OK) s = ldmc_train_step_state_pairs(g, pairs);
    int32_t top = -1;
    for (int32_t i = 0; s == LDMC_OK && i < g->n_outputs; i++) top = pairs[i] > top ? pairs[i] : top;
    base.n_activation_params = top + 1; /* the frozen parameters (none here) are the weights */
    base.donate = pairs;
  } else if (s == LDMC_OK) {
    ldmc_grad_opts go = {.seed = LDMC_GRAD_SUM, .wrt_regex = sample ? "^sample$" : NULL};
    s = ldmc_grad(f, &go, &g);
  }
  if (s != LDMC_OK) {
    fprintf(stderr, "c=%s %s: %s\n", width, kind, ldmc_last_error());
    return 1;
  }
  printf("# U-Net c=%s, latent %sx%d, context %s, batch 1, f32; graph %s (%d nodes); target %s; planning only\n", width,
         latent, cfg.in_channels, context, kind, (int)g->n_nodes, target);
  printf("%-10s %12s %12s %6s %14s %8s %7s %9s %9s\n", "budget", "budget MiB", "peak MiB", "met", "extra FLOPs",
         "extra %", "values", "plannings", "compile s");
  int64_t p0 = 0;
  double flops0 = 0;
  const char *b = budgets;
  for (int row = 0;; row++) {
    double frac = 0;
    if (row > 0) {
      if (!*b) break;
      frac = strtod(b, (char **)&b);
      if (*b == ',') b++;
      if (frac <= 0) continue;
    }
    ldmc_graph *c = ldmc_graph_clone(g);
    ldmc_plan *plan = NULL;
    ldmc_remat_report rep = {0};
    ldmc_pipeline_opts o = base;
    o.memory_budget = (int64_t)(frac * (double)p0);
    o.remat = &rep;
    double t0 = now_s();
    s = c ? ldmc_compile_plan(c, t, &o, &plan) : LDMC_ERR_NOMEM;
    double dt = now_s() - t0;
    if (s != LDMC_OK) {
      fprintf(stderr, "compile: %s\n", ldmc_last_error());
      return 1;
    }
    ldmc_flops fl = ldmc_graph_flops(c);
    if (row == 0) {
      p0 = plan->arena_bytes;
      flops0 = (double)(fl.mac + fl.other);
      printf("%-10s %12s %12.1f %6s %14.4g %8s %7s %9s %9.2f\n", "none", "-", mib(p0), "-", 0.0, "-", "-", "-", dt);
    } else {
      char name[32];
      snprintf(name, sizeof name, "%.2f x P0", frac);
      printf("%-10s %12.1f %12.1f %6s %14.4g %8.2f %7d %9d %9.2f\n", name, mib(o.memory_budget), mib(plan->arena_bytes),
             rep.met ? "yes" : "no", (double)rep.extra_flops, 100.0 * (double)rep.extra_flops / flops0, rep.values,
             rep.measures, dt);
    }
    ldmc_plan_free(plan);
    ldmc_graph_free(c);
  }
  free(pairs);
  ldmc_graph_free(g);
  ldmc_graph_free(f);
  return 0;
}
