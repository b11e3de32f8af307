/* Helpers for the interpreter tests: build one-op graphs, run them through
 * the interp backend, compare against values computed in the test. */
#ifndef LDMC_TESTS_INTERP_TEST_UTIL_H
#define LDMC_TESTS_INTERP_TEST_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "ir/ir.h"
#include "support/half.h"
#include "test_util.h"

#define DIMS(...) ((int64_t[]){__VA_ARGS__})
#define NDIMS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* SHAPE(2, 3) -> rank-2 shape; SHAPE0 -> rank 0 */
#define SHAPE(...) ldmc_shape_make(NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__))
#define SHAPE0 ((ldmc_shape){0})
#define VALS(...) ((double[]){__VA_ARGS__})

static const ldmc_dtype k_floats[] = {LDMC_F32, LDMC_BF16, LDMC_F16, LDMC_F64};
static const ldmc_dtype k_ints[] = {LDMC_I32, LDMC_I64};
static const ldmc_dtype k_numeric[] = {LDMC_F32, LDMC_BF16, LDMC_F16, LDMC_F64, LDMC_I32, LDMC_I64};
static const ldmc_dtype k_all[] = {LDMC_F32, LDMC_BF16, LDMC_F16, LDMC_F64, LDMC_I32, LDMC_I64, LDMC_PRED};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static inline int64_t th_numel(const ldmc_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

static inline ldmc_ints th_ints(int n, const int64_t *v) {
  ldmc_ints r = {0};
  r.n = n;
  for (int i = 0; i < n; i++) r.v[i] = v[i];
  return r;
}
#define INTS(...) th_ints(NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__))
#define INTS0 ((ldmc_ints){0})

/* A tensor of dtype/shape filled from v (NULL: zeros); values must be
 * representable (ldmc_tensor_set rounds). */
static inline ldmc_tensor th_tensor(ldmc_dtype dt, ldmc_shape s, const double *v) {
  ldmc_tensor t;
  if (ldmc_tensor_alloc(&t, "t", dt, &s) != LDMC_OK) {
    fprintf(stderr, "alloc failed: %s\n", ldmc_last_error());
    exit(2);
  }
  if (v)
    for (int64_t i = 0; i < th_numel(&s); i++) ldmc_tensor_set_elem(&t, i, v[i]);
  return t;
}

/* Deterministic pseudo-random values in [lo, hi) (xorshift), for bulk tests. */
static inline double th_rand(uint64_t *state, double lo, double hi) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return lo + (hi - lo) * (double)(x >> 11) * 0x1p-53;
}

static inline ldmc_tensor th_random(ldmc_dtype dt, ldmc_shape s, uint64_t *state, double lo, double hi) {
  ldmc_tensor t = th_tensor(dt, s, NULL);
  for (int64_t i = 0; i < th_numel(&s); i++) ldmc_tensor_set_elem(&t, i, th_rand(state, lo, hi));
  return t;
}

/* Adds a node with type inference; reports and returns -1 on failure. */
static inline int32_t th_add(ldmc_graph *g, ldmc_op op, ldmc_dtype dt, const ldmc_shape *s, int n, const int32_t *ops,
                             const ldmc_attrs *at) {
  int32_t id = ldmc_graph_add_checked(g, op, dt, s, n, ops, at, NULL);
  CHECK_MSG(id >= 0, "adding %s: %s", ldmc_op_name(op), ldmc_last_error());
  return id;
}

static inline int32_t th_param(ldmc_graph *g, const char *name, ldmc_dtype dt, ldmc_shape s) {
  ldmc_attrs at = {0};
  at.name = (char *)name;
  return th_add(g, LDMC_OP_PARAMETER, dt, &s, 0, NULL, &at);
}

/* Compiles g with the interpreter and runs it; outs[k] receive the outputs. */
static inline bool th_run_graph(const ldmc_graph *g, const ldmc_tensor *ins, int n_in, ldmc_tensor *outs, int n_out) {
  ldmc_executable *e = NULL;
  ldmc_status st = ldmc_backend_interp.compile(g, NULL, &e);
  CHECK_MSG(st == LDMC_OK, "compile: %s", ldmc_last_error());
  if (st != LDMC_OK) return false;
  st = ldmc_executable_run(e, ins, n_in, outs, n_out);
  CHECK_MSG(st == LDMC_OK, "run: %s", ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* One op over parameters typed like ins; dt/s are its declared type (for the
 * ops that need one). The result goes to *out (release it). */
static inline bool th_eval(ldmc_op op, const ldmc_attrs *at, ldmc_dtype dt, const ldmc_shape *s, int n,
                           const ldmc_tensor *ins, ldmc_tensor *out) {
  ldmc_graph *g = ldmc_graph_new("t");
  int32_t ops[16];
  char name[16];
  bool ok = true;
  for (int i = 0; i < n; i++) {
    snprintf(name, sizeof name, "p%d", i);
    ops[i] = th_param(g, name, ins[i].dtype, ins[i].shape);
    ok &= ops[i] >= 0;
  }
  int32_t id = ok ? th_add(g, op, dt, s, n, ops, at) : -1;
  memset(out, 0, sizeof *out);
  if (id < 0 || ldmc_graph_add_output(g, id, "out") != LDMC_OK) {
    ldmc_graph_free(g);
    return false;
  }
  ok = th_run_graph(g, ins, n, out, 1);
  ldmc_graph_free(g);
  return ok;
}

static inline void th_release(int n, ldmc_tensor *ts) {
  for (int i = 0; i < n; i++) ldmc_tensor_release(&ts[i]);
}

/* Unit roundoff of a float dtype (half an ulp at 1). */
static inline double th_eps(ldmc_dtype dt) {
  return dt == LDMC_BF16 ? 0x1p-8 : dt == LDMC_F16 ? 0x1p-11 : dt == LDMC_F32 ? 0x1p-24 : dt == LDMC_F64 ? 0x1p-53 : 0.0;
}

/* Checks every element of t against want within |want| * rel + abs; prints
 * the first few mismatches under the label. Returns the number of misses. */
static inline int th_expect(const char *label, const ldmc_tensor *t, const double *want, int64_t n, double rel,
                            double abs_tol) {
  int miss = 0;
  if (th_numel(&t->shape) != n) {
    CHECK_MSG(0, "%s: %lld elements, expected %lld", label, (long long)th_numel(&t->shape), (long long)n);
    return 1;
  }
  for (int64_t i = 0; i < n; i++) {
    double got = ldmc_tensor_get(t, i), w = want[i];
    bool ok = (isnan(w) && isnan(got)) || got == w || fabs(got - w) <= fabs(w) * rel + abs_tol;
    if (!ok && miss++ < 4) fprintf(stderr, "  %s[%lld] = %.9g, expected %.9g\n", label, (long long)i, got, w);
  }
  CHECK_MSG(miss == 0, "%s (%s): %d of %lld elements differ", label, ldmc_dtype_name(t->dtype), miss, (long long)n);
  return miss;
}

/* Expected values rounded like a float dtype would (for exact comparisons
 * of values that are representable or whose rounding is not a tie). f64:
 * within 1e-15 (a few ulps), as values given to 16-17 digits and computed in
 * another order differ by that much. */
static inline int th_expect_dt(const char *label, const ldmc_tensor *t, const double *want, int64_t n) {
  double rel = t->dtype == LDMC_F64 ? 1e-15 : ldmc_dtype_is_float(t->dtype) ? th_eps(t->dtype) * 1.0000001 : 0.0;
  double abs_tol = t->dtype == LDMC_F16 ? 0x1p-25 : t->dtype == LDMC_F32 ? 1e-44 : 0.0;
  return th_expect(label, t, want, n, rel, abs_tol);
}

#endif
