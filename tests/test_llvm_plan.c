/* llvm-cpu runs the pass pipeline's plan: every pipeline kernel is lowered
 * (kernels and steps checked against the graph read by hand), and what
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

/* The oracle is the graph itself, read by hand: W' = 0.5 w + 0.25 and its
 * transpose depend only on the weight w (prepack); everything from the
 * product on is one contraction with its epilogue (bias, silu, y * (y - 1)),
 * which llvm-cpu runs as one GEMM step whose store applies the epilogue, plus
 * one prepack step packing W'^T's panels. */
static void test_kernels_from_pipeline(void) {
  ldmc_graph *g = linear_graph();
  if (!g) return;
  const ldmc_backend_i *be = ldmc_backend_find("llvm-cpu");
  ldmc_compile_opts o = {.threads = 1, .params_are_weights = true, .n_activation_params = 1};
  ldmc_graph *opt = NULL;
  ldmc_plan *kp = NULL;
  CHECK_MSG(be && be->plan && be->plan(g, &o, &opt, &kp) == LDMC_OK, "%s", ldmc_last_error());
  if (opt && kp) {
    static const ldmc_op want_ops[] = {LDMC_OP_DOT_GENERAL, LDMC_OP_BROADCAST_IN_DIM, LDMC_OP_ADD, LDMC_OP_SILU,
                                       LDMC_OP_SUB, LDMC_OP_MUL};
    int contractions = 0, prepack = 0, other = 0;
    for (int32_t k = 0; k < kp->n_kernels; k++) {
      const ldmc_kernel *kr = &kp->kernels[k];
      if (kr->kind == LDMC_KERNEL_PREPACK) {
        prepack++;
        CHECK_MSG(kr->n_steps == kr->n_prepack_steps, "prepack kernel k%d runs %d steps per call", (int)k,
                  (int)(kr->n_steps - kr->n_prepack_steps));
        continue;
      }
      if (kr->kind != LDMC_KERNEL_CONTRACTION) {
        other++;
        continue;
      }
      contractions++;
      int found = 0;
      for (int32_t j = 0; j < kr->n_nodes; j++)
        for (size_t q = 0; q < sizeof want_ops / sizeof want_ops[0]; q++) found += opt->nodes[kr->nodes[j]].op == want_ops[q];
      CHECK_MSG(kr->n_nodes == 6 && found == 6, "the contraction holds %d nodes (%d of the expected ops)", (int)kr->n_nodes,
                found);
      CHECK_MSG(kr->n_steps == 2 && kr->n_prepack_steps == 1, "contraction: %d steps (%d prepack); want 1 + 1",
                (int)kr->n_steps, (int)kr->n_prepack_steps);
      CHECK(kr->scratch_bytes > 0 && kr->scratch_offset >= 0); /* packed panels per thread */
      CHECK(kp->offset[kr->root] >= 0 && kp->size[kr->root] == 13 * 11 * 4);
    }
    CHECK_MSG(contractions == 1 && other == 0 && prepack >= 1, "%d contractions, %d prepack, %d other kernels",
              contractions, prepack, other);
    CHECK(kp->executed_by && strcmp(kp->executed_by, "llvm-cpu") == 0);
    CHECK_MSG(ldmc_plan_check_buffers(kp, opt) == LDMC_OK, "%s", ldmc_last_error());
  }
  ldmc_plan_free(kp);
  ldmc_graph_free(opt);
  /* no weights: nothing is prepacked, every kernel runs each call */
  o.params_are_weights = false;
  kp = NULL;
  opt = NULL;
  CHECK(be && be->plan(g, &o, &opt, &kp) == LDMC_OK);
  for (int32_t k = 0; kp && k < kp->n_kernels; k++) {
    CHECK(kp->kernels[k].kind != LDMC_KERNEL_PREPACK);
    CHECK(kp->kernels[k].n_prepack_steps == 0);
  }
  ldmc_plan_free(kp);
  ldmc_graph_free(opt);
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
