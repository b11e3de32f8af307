/* llvm-cpu runs the pass pipeline's plan: every pipeline kernel is lowered
 * (count checked against ldmc_compile_plan run independently), and what
 * derives only from weights is computed by prepack steps once per binding of
 * the weight tensors. Oracle: the interpreter, fed the same tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/lc.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test_util.h"

static int64_t numel(const ldmc_shape *s);

static void fill(ldmc_tensor *t, unsigned seed) {
  int64_t n = numel(&t->shape);
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    ldmc_tensor_set_elem(t, i, ((seed >> 8) % 20001) / 10000.0 - 1.0);
  }
}

static int64_t numel(const ldmc_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

static double max_rel_diff(const ldmc_tensor *a, const ldmc_tensor *b) {
  int64_t n = numel(&a->shape);
  double m = 0, scale = 1e-30;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ldmc_tensor_get(b, i)));
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(ldmc_tensor_get(a, i) - ldmc_tensor_get(b, i)) / scale);
  return m;
}

/* y = silu(x W'^T + bias), W' = 0.5 * w + 0.25 (weights only), then a
 * residual-free group of elementwise ops on y. Parameters: x, w, bias. */
static ldmc_graph *linear_graph(void) {
  ldmc_builder *b = ldmc_builder_new("prepack");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, (int64_t[]){13, 7});
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 2, (int64_t[]){11, 7});
  ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 1, (int64_t[]){11});
  ldmc_value w2 = ldmc_add(b, ldmc_scale(b, w, 0.5), ldmc_constant_scalar(b, LDMC_F32, 0.25));
  ldmc_value wt = ldmc_transpose(b, w2, (int64_t[]){1, 0});
  ldmc_value y = ldmc_matmul(b, x, wt);
  y = ldmc_add(b, y, ldmc_broadcast_to(b, bias, 2, (int64_t[]){13, 11}));
  y = ldmc_silu(b, y);
  ldmc_value z = ldmc_mul(b, y, ldmc_sub(b, y, ldmc_constant_scalar(b, LDMC_F32, 1.0)));
  ldmc_builder_output(b, z, "z");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

static void test_kernels_from_pipeline(void) {
  ldmc_graph *g = linear_graph();
  if (!g) return;
  ldmc_compile_opts o = {.params_are_weights = true, .n_activation_params = 1};
  ldmc_graph *opt = NULL;
  ldmc_plan *kp = NULL;
  CHECK_MSG(ldmc_lc_pipeline(g, &o, &opt, &kp) == LDMC_OK, "%s", ldmc_last_error());
  /* the same pipeline run independently gives the same kernels */
  ldmc_graph *c = ldmc_graph_clone(g);
  ldmc_plan *ref = NULL;
  ldmc_pipeline_opts po = {.params_are_weights = true, .n_activation_params = 1};
  CHECK(ldmc_compile_plan(c, ldmc_target_find("cpu-nchw"), &po, &ref) == LDMC_OK);
  const lc_target *t = NULL;
  CHECK(ldmc_lc_target_get(LDMC_LLVM_CPU_ISA_AUTO, &t) == LDMC_OK);
  if (opt && kp && ref && t) {
    CHECK_MSG(kp->n_kernels == ref->n_kernels, "%d vs %d kernels", (int)kp->n_kernels, (int)ref->n_kernels);
    int prepack_kernels = 0;
    for (int32_t k = 0; k < kp->n_kernels; k++) prepack_kernels += kp->kernels[k].kind == LDMC_KERNEL_PREPACK;
    CHECK_MSG(prepack_kernels >= 1, "the pipeline marks W' as prepack (%d)", prepack_kernels);
    lc_plan p;
    lc_plan_opts lo = {.threads = 1, .allow_fallback = false, .n_act_params = 1, .kernels = kp};
    CHECK_MSG(ldmc_lc_plan_build(opt, t, &lo, &p) == LDMC_OK, "%s", ldmc_last_error());
    CHECK_MSG(p.n_kernels == kp->n_kernels, "lowered %lld of %d kernels", (long long)p.n_kernels, (int)kp->n_kernels);
    CHECK_MSG(p.n_prepack >= 1 && p.persist_bytes >= 11 * 7 * 4, "prepack steps %lld, persistent %zu bytes",
              (long long)p.n_prepack, p.persist_bytes);
    for (int32_t s = 0; s < p.n_steps; s++) /* prepack steps write only persistent buffers */
      if (p.steps[s].prepack) CHECK(p.bufs[p.steps[s].refs[0].buf].kind == LC_BUF_PERSIST);
    ldmc_lc_plan_free(&p);
    /* no weights: nothing is prepacked */
    lo.n_act_params = INT32_MAX;
    CHECK(ldmc_lc_plan_build(opt, t, &lo, &p) == LDMC_OK);
    CHECK(p.n_prepack == 0);
    ldmc_lc_plan_free(&p);
  }
  ldmc_plan_free(kp);
  ldmc_plan_free(ref);
  ldmc_graph_free(opt);
  ldmc_graph_free(c);
  ldmc_graph_free(g);
}

static void interp_run(const ldmc_graph *g, ldmc_tensor *in, ldmc_tensor *out) {
  const ldmc_backend_i *be = ldmc_backend_find("interp");
  ldmc_executable *e = NULL;
  CHECK(be->compile(g, NULL, &e) == LDMC_OK);
  CHECK(ldmc_executable_run(e, in, 3, out, 1) == LDMC_OK);
  ldmc_executable_free(e);
}

/* Weights rebound: same pointers reuse the prepacked values; other tensors
 * (or the first ones again) are prepacked anew. */
static void test_prepack_follows_weights(void) {
  ldmc_graph *g = linear_graph();
  const ldmc_backend_i *be = ldmc_backend_find("llvm-cpu");
  if (!g || !be) return;
  ldmc_tensor in[3], w2, want[2], got;
  const ldmc_graph *pg = g;
  for (int32_t i = 0, k = 0; i < pg->n_nodes; i++)
    if (pg->nodes[i].op == LDMC_OP_PARAMETER) {
      ldmc_tensor_alloc(&in[k], pg->nodes[i].attrs.name, pg->nodes[i].dtype, &pg->nodes[i].shape);
      fill(&in[k], 5u + 7u * (unsigned)k);
      k++;
    }
  ldmc_tensor_alloc(&w2, "w", LDMC_F32, &in[1].shape);
  fill(&w2, 99u);
  interp_run(g, in, &want[0]);
  ldmc_tensor in2[3] = {in[0], w2, in[2]};
  interp_run(g, in2, &want[1]);
  CHECK(max_rel_diff(&want[0], &want[1]) > 1e-2); /* the weights matter */
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 2, .params_are_weights = true, .n_activation_params = 1};
  CHECK_MSG(be->compile(g, &o, &e) == LDMC_OK, "%s", ldmc_last_error());
  const ldmc_tensor *seq[] = {in, in, in2, in2, in};
  const int which[] = {0, 0, 1, 1, 0};
  for (int r = 0; e && r < 5; r++) {
    CHECK(ldmc_executable_run(e, seq[r], 3, &got, 1) == LDMC_OK);
    double d = max_rel_diff(&got, &want[which[r]]);
    CHECK_MSG(d < 1e-5, "run %d (weights %d): rel diff %g", r, which[r], d);
    ldmc_tensor_release(&got);
  }
  ldmc_executable_free(e);
  for (int k = 0; k < 3; k++) ldmc_tensor_release(&in[k]);
  ldmc_tensor_release(&w2);
  ldmc_tensor_release(&want[0]);
  ldmc_tensor_release(&want[1]);
  ldmc_graph_free(g);
}

int main(void) {
  test_kernels_from_pipeline();
  test_prepack_follows_weights();
  return test_summary("test_llvm_plan");
}
