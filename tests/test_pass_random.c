/* Every graph pass, and the whole pipeline of every target, keeps results
 * on random graphs (pass_random_graph.h): the interpreter runs the graph
 * before and after on the same random inputs. Tolerances: exact rewrites
 * (simplify, cse, dce) atol 0 / rtol 0; folding 1e-6; rewrites that change
 * the order of f32 operations (attention recognition, decomposition, layout)
 * atol 1e-5 / rtol 1e-4. Each optimized plan must pass the buffer checker. */
#include "pass_random_graph.h"

#define N_GRAPHS 60

static void one_pass(const ldmc_graph *ref, const ldmc_pass *p, const char *target, double atol, double rtol) {
  ldmc_graph *g = ldmc_graph_clone(ref);
  ptu_run_plan(p, g, target, NULL);
  char what[64];
  snprintf(what, sizeof what, "%s (%s)", p->name, target);
  ptu_same_results(what, ref, g, atol, rtol);
  ldmc_graph_free(g);
}

static void pipeline(const ldmc_graph *ref, const char *target, int64_t *kernels) {
  ldmc_graph *g = ldmc_graph_clone(ref);
  ldmc_plan *plan = NULL;
  ldmc_pipeline_opts o = {.verify_each = true};
  ldmc_status s = ldmc_compile_plan(g, ldmc_target_find(target), &o, &plan);
  CHECK_MSG(s == LDMC_OK, "pipeline %s: %s", target, ldmc_last_error());
  if (s == LDMC_OK) {
    char what[64];
    snprintf(what, sizeof what, "pipeline %s", target);
    ptu_same_results(what, ref, g, 1e-5, 1e-4);
    s = ldmc_plan_check_buffers(plan, g);
    CHECK_MSG(s == LDMC_OK, "pipeline %s: %s", target, ldmc_last_error());
    CHECK(plan->arena_bytes >= plan->live_peak_bytes);
    *kernels += plan->n_kernels;
  }
  ldmc_plan_free(plan);
  ldmc_graph_free(g);
}

int main(void) {
  int built = 0;
  int64_t nodes_before = 0, nodes_after = 0, kernels[5] = {0};
  const char *targets[] = {"interp", "cpu-nhwc", "llvm-cpu", "nvptx", "tpusim"};
  for (int i = 0; i < N_GRAPHS; i++) {
    ldmc_graph *g = prg_build(10 + i % 20, i % 2 == 0);
    if (!g) continue;
    built++;
    nodes_before += g->n_nodes;
    one_pass(g, &ldmc_pass_simplify, "cpu-nhwc", 0, 0);
    one_pass(g, &ldmc_pass_cse, "cpu-nhwc", 0, 0);
    one_pass(g, &ldmc_pass_dce, "cpu-nhwc", 0, 0);
    one_pass(g, &ldmc_pass_fold, "cpu-nhwc", 1e-6, 1e-6);
    one_pass(g, &ldmc_pass_attention, "cpu-nhwc", 1e-5, 1e-4);
    one_pass(g, &ldmc_pass_decompose, "tpusim", 1e-5, 1e-4);
    one_pass(g, &ldmc_pass_sink_transposes, "cpu-nhwc", 0, 0);
    for (int t = 0; t < 5; t++) pipeline(g, targets[t], &kernels[t]);
    ldmc_graph *c = ldmc_graph_clone(g);
    ldmc_plan *plan = NULL;
    if (ldmc_compile_plan(c, ldmc_target_find("cpu-nhwc"), NULL, &plan) == LDMC_OK) nodes_after += c->n_nodes;
    ldmc_plan_free(plan);
    ldmc_graph_free(c);
    ldmc_graph_free(g);
  }
  CHECK_MSG(built >= N_GRAPHS * 9 / 10, "only %d of %d random graphs built", built, N_GRAPHS);
  printf("%d random graphs: %lld nodes -> %lld after the cpu pipeline; kernels interp %lld, cpu %lld, tpusim %lld\n", built,
         (long long)nodes_before, (long long)nodes_after, (long long)kernels[0], (long long)kernels[1],
         (long long)kernels[4]);
  CHECK(nodes_after < nodes_before && kernels[1] < kernels[0]);
  return test_summary("test_pass_random");
}
