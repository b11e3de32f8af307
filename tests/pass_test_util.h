/* Shared by the pass tests: parse text IR, run one pass, count ops, random
 * inputs, run graphs on the reference interpreter and compare outputs. */
#ifndef LDMC_TESTS_PASS_TEST_UTIL_H
#define LDMC_TESTS_PASS_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "passes/passes.h"
#include "test_util.h"

static inline ldmc_graph *ptu_parse(const char *text) {
  ldmc_graph *g = NULL;
  ldmc_status s = ldmc_graph_parse(text, strlen(text), &g);
  CHECK_MSG(s == LDMC_OK, "parse: %s", ldmc_last_error());
  if (s == LDMC_OK) {
    s = ldmc_graph_verify(g);
    CHECK_MSG(s == LDMC_OK, "verify input: %s", ldmc_last_error());
  }
  return s == LDMC_OK ? g : (ldmc_graph_free(g), NULL);
}

/* Runs one pass on g for a target ("cpu-nhwc" if NULL); checks it reports no
 * error and leaves a verified graph. Returns its "changed" answer. */
static inline bool ptu_run_plan(const ldmc_pass *p, ldmc_graph *g, const char *target, ldmc_plan *plan) {
  ldmc_status st = LDMC_OK;
  ldmc_pass_ctx ctx = {.target = ldmc_target_find(target ? target : "cpu-nhwc"), .plan = plan, .status = &st};
  bool changed = p->run(g, &ctx);
  CHECK_MSG(st == LDMC_OK, "pass %s failed: %s", p->name, ldmc_last_error());
  ldmc_status v = ldmc_graph_verify(g);
  CHECK_MSG(v == LDMC_OK, "verify after %s: %s", p->name, ldmc_last_error());
  return changed;
}
static inline bool ptu_run(const ldmc_pass *p, ldmc_graph *g) { return ptu_run_plan(p, g, NULL, NULL); }

static inline int ptu_count(const ldmc_graph *g, ldmc_op op) {
  int k = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) k += g->nodes[i].op == op;
  return k;
}

/* The op of the node an output names. */
static inline ldmc_op ptu_out_op(const ldmc_graph *g, int i) { return g->nodes[g->outputs[i]].op; }

static uint64_t ptu_rng __attribute__((unused)) = 88172645463325252ull;
static double ptu_scale __attribute__((unused)) = 1.0; /* inputs are ptu_scale * [-2, 2) */
static inline double ptu_uniform(void) { /* xorshift64 in [0, 1) */
  ptu_rng ^= ptu_rng << 13;
  ptu_rng ^= ptu_rng >> 7;
  ptu_rng ^= ptu_rng << 17;
  return (double)(ptu_rng >> 11) / 9007199254740992.0;
}

/* One random tensor per parameter, in parameter order: floats in [-2, 2),
 * ints in [-3, 3], preds fair coins. Returns the count. */
static inline int ptu_inputs(const ldmc_graph *g, ldmc_tensor **out) {
  int n = 0;
  *out = calloc((size_t)ldmc_graph_num_params(g) + 1, sizeof **out);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *nd = &g->nodes[i];
    if (nd->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor *t = &(*out)[n++];
    if (ldmc_tensor_alloc(t, nd->attrs.name, nd->dtype, &nd->shape) != LDMC_OK) continue;
    int64_t numel;
    ldmc_shape_numel(&nd->shape, 0, &numel);
    for (int64_t e = 0; e < numel; e++) {
      double u = ptu_uniform();
      double v = ldmc_dtype_is_float(nd->dtype) ? ptu_scale * (4 * u - 2) : nd->dtype == LDMC_PRED ? (u < 0.5) : floor(7 * u) - 3;
      ldmc_tensor_set_elem(t, e, v);
    }
  }
  return n;
}

static inline void ptu_free_tensors(ldmc_tensor *t, int n) {
  for (int i = 0; i < n; i++) ldmc_tensor_release(&t[i]);
  free(t);
}

/* Runs g on the interpreter; outs gets g->n_outputs tensors (caller frees). */
static inline bool ptu_interp(const ldmc_graph *g, const ldmc_tensor *ins, int n_in, ldmc_tensor **outs) {
  ldmc_executable *e = NULL;
  *outs = calloc((size_t)g->n_outputs + 1, sizeof **outs);
  ldmc_status s = ldmc_backend_interp.compile(g, NULL, &e);
  if (s == LDMC_OK) s = ldmc_executable_run(e, ins, n_in, *outs, g->n_outputs);
  CHECK_MSG(s == LDMC_OK, "interp on '%s': %s", g->name, ldmc_last_error());
  ldmc_executable_free(e);
  return s == LDMC_OK;
}

/* Max of |a-b| / (atol + rtol |b|) over two tensor lists (<= 1 passes). */
static inline double ptu_err(const ldmc_tensor *a, const ldmc_tensor *b, int n, double atol, double rtol) {
  double worst = 0;
  for (int i = 0; i < n; i++) {
    if (a[i].dtype != b[i].dtype || !ldmc_shape_equal(&a[i].shape, &b[i].shape)) return INFINITY;
    int64_t numel;
    ldmc_shape_numel(&a[i].shape, 0, &numel);
    for (int64_t e = 0; e < numel; e++) {
      double x = ldmc_tensor_get(&a[i], e), y = ldmc_tensor_get(&b[i], e);
      if (isnan(x) && isnan(y)) continue;
      if (x == y) continue;
      double d = fabs(x - y) / (atol + rtol * fabs(y));
      if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
  }
  return worst;
}

/* Same parameters and outputs, same values on random inputs within tolerance. */
static inline void ptu_same_results(const char *what, const ldmc_graph *ref, const ldmc_graph *opt, double atol, double rtol) {
  ldmc_tensor *ins = NULL, *a = NULL, *b = NULL;
  int n = ptu_inputs(ref, &ins);
  CHECK_MSG(ldmc_graph_num_params(opt) == n, "%s: parameter count %d -> %d", what, n, (int)ldmc_graph_num_params(opt));
  CHECK_MSG(ref->n_outputs == opt->n_outputs, "%s: output count changed", what);
  if (ldmc_graph_num_params(opt) == n && ref->n_outputs == opt->n_outputs && ptu_interp(ref, ins, n, &a) &&
      ptu_interp(opt, ins, n, &b)) {
    double e = ptu_err(b, a, ref->n_outputs, atol, rtol);
    CHECK_MSG(e <= 1.0, "%s: results differ (error %.3g of tolerance atol %g rtol %g)", what, e, atol, rtol);
  }
  if (a) ptu_free_tensors(a, ref->n_outputs);
  if (b) ptu_free_tensors(b, opt->n_outputs);
  ptu_free_tensors(ins, n);
}

#endif
