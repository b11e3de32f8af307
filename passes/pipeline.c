/* The pass registry, the standard pipelines per target, and the one-call
 * compile used by the driver and `ldmc stats`. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "passes/pass_util.h"

static const ldmc_pass *const all_passes[] = {
    &ldmc_pass_simplify, &ldmc_pass_fold,   &ldmc_pass_cse,    &ldmc_pass_dce,      &ldmc_pass_attention,
    &ldmc_pass_decompose, &ldmc_pass_layout, &ldmc_pass_sink_transposes, &ldmc_pass_fusion, &ldmc_pass_tiling,
    &ldmc_pass_schedule, &ldmc_pass_buffers, &ldmc_pass_remat,
};
#define N_PASSES ((int)(sizeof all_passes / sizeof all_passes[0]))

int ldmc_pass_count(void) { return N_PASSES; }
const ldmc_pass *ldmc_pass_get(int i) { return i >= 0 && i < N_PASSES ? all_passes[i] : NULL; }

const ldmc_pass *ldmc_pass_find(const char *name) {
  for (int i = 0; i < N_PASSES; i++)
    if (name && strcmp(all_passes[i]->name, name) == 0) return all_passes[i];
  ldmc_error(LDMC_ERR_INVALID, "unknown pass '%s'", name ? name : "(null)");
  return NULL;
}

/* remat: after the last cse (which would merge its copies back), before the
 * plan passes it measures with; only under a memory budget. */
static ldmc_pipeline *pipeline_for(const ldmc_target *t, bool remat) {
  ldmc_pipeline *p = ldmc_pipeline_new(t ? t->name : "default");
  if (!p) return NULL;
  static const ldmc_pass *const cleanup[] = {&ldmc_pass_simplify, &ldmc_pass_fold, &ldmc_pass_cse, &ldmc_pass_dce};
  static const ldmc_pass *const layout_cleanup[] = {&ldmc_pass_sink_transposes, &ldmc_pass_simplify, &ldmc_pass_fold,
                                                    &ldmc_pass_cse, &ldmc_pass_dce};
  bool faithful = t && t->faithful;
  bool native_attention = !t || (t->native_ops & LDMC_OPMASK(LDMC_OP_ATTENTION));
  ldmc_status s = ldmc_pipeline_add_fixpoint(p, "cleanup", 4, cleanup);
  if (s == LDMC_OK && native_attention && !faithful) s = ldmc_pipeline_add(p, &ldmc_pass_attention);
  if (s == LDMC_OK) s = ldmc_pipeline_add(p, &ldmc_pass_decompose);
  if (s == LDMC_OK) s = ldmc_pipeline_add_fixpoint(p, "cleanup2", 4, cleanup);
  if (s == LDMC_OK && t && t->channels_last && !faithful) {
    s = ldmc_pipeline_add(p, &ldmc_pass_layout);
    if (s == LDMC_OK) s = ldmc_pipeline_add_fixpoint(p, "layout-cleanup", 5, layout_cleanup);
  }
  if (s == LDMC_OK && remat) s = ldmc_pipeline_add(p, &ldmc_pass_remat);
  if (s == LDMC_OK) s = ldmc_pipeline_add(p, &ldmc_pass_fusion);
  if (s == LDMC_OK) s = ldmc_pipeline_add(p, &ldmc_pass_tiling);
  if (s == LDMC_OK) s = ldmc_pipeline_add(p, &ldmc_pass_schedule);
  if (s == LDMC_OK) s = ldmc_pipeline_add(p, &ldmc_pass_buffers);
  if (s != LDMC_OK) {
    ldmc_pipeline_free(p);
    return NULL;
  }
  return p;
}

ldmc_pipeline *ldmc_pipeline_for_target(const ldmc_target *t) { return pipeline_for(t, false); }

ldmc_status ldmc_compile_plan(ldmc_graph *g, const ldmc_target *t, const ldmc_pipeline_opts *opts,
                              ldmc_plan **plan_out) {
  *plan_out = NULL;
  if (!t) return ldmc_error(LDMC_ERR_INVALID, "compile: no target");
  ldmc_pipeline *pl = pipeline_for(t, opts && opts->memory_budget > 0);
  ldmc_plan *plan = ldmc_plan_new();
  if (!pl || !plan) {
    ldmc_pipeline_free(pl);
    ldmc_plan_free(plan);
    return ldmc_error(LDMC_ERR_NOMEM, "compile: out of memory");
  }
  ldmc_pass_ctx ctx = {.target = t, .plan = plan};
  if (opts) {
    ctx.params_are_weights = opts->params_are_weights;
    ctx.n_activation_params = opts->n_activation_params;
    ctx.donate = opts->donate;
    ctx.memory_budget = opts->memory_budget;
    ctx.remat = opts->remat;
  }
  ldmc_status s = ldmc_pipeline_run(pl, g, &ctx, opts);
  ldmc_pipeline_free(pl);
  if (s != LDMC_OK) {
    ldmc_plan_free(plan);
    return s;
  }
  *plan_out = plan;
  return LDMC_OK;
}

void ldmc_plan_stats_fill(const ldmc_graph *before, const ldmc_graph *after, const ldmc_plan *plan, double seconds,
                          ldmc_plan_stats *out) {
  memset(out, 0, sizeof *out);
  out->nodes_before = before->n_nodes;
  out->input_naive_bytes = ldmc_graph_intermediate_bytes(before);
  out->nodes_after = after->n_nodes;
  out->kernels = plan->n_kernels;
  out->arena_bytes = plan->arena_bytes;
  out->naive_bytes = plan->naive_bytes;
  out->prepacked_bytes = plan->prepacked_bytes;
  for (int32_t k = 0; k < plan->n_kernels; k++) out->prepack_kernels += plan->kernels[k].kind == LDMC_KERNEL_PREPACK;
  out->compile_seconds = seconds;
}

ldmc_status ldmc_plan_stats_compute(const ldmc_graph *g, const char *target_name, int32_t n_activation_params,
                                    ldmc_plan_stats *out) {
  memset(out, 0, sizeof *out);
  const ldmc_target *t = ldmc_target_find(target_name ? target_name : "llvm-cpu");
  if (!t) return LDMC_ERR_INVALID;
  ldmc_graph *c = ldmc_graph_clone(g);
  if (!c) return ldmc_error(LDMC_ERR_NOMEM, "stats: out of memory copying graph '%s'", g->name);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  ldmc_plan *plan = NULL;
  ldmc_pipeline_opts o = {.params_are_weights = n_activation_params >= 0,
                          .n_activation_params = n_activation_params < 0 ? 0 : n_activation_params};
  ldmc_status s = ldmc_compile_plan(c, t, &o, &plan);
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (s == LDMC_OK)
    ldmc_plan_stats_fill(g, c, plan, (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec), out);
  ldmc_plan_free(plan);
  ldmc_graph_free(c);
  return s;
}
