/* The gradient-check harness of the autodiff tests (header-only).
 *
 * gc_check builds f(params) with a case's build function, differentiates
 * S = sum(ct * f) with ldmc_grad (seed COTANGENT, ct random in [-1,1)) with
 * respect to every float parameter, runs the gradient graph on the
 * interpreter, and compares each gradient element with the central finite
 * difference (S(x + h e_i) - S(x - h e_i)) / (x_i+ - x_i-), where S is
 * computed in double from forward runs of the original graph on the
 * interpreter and x_i+/- are the perturbed values as stored (so rounding of
 * the step to the parameter dtype does not bias the quotient).
 *
 * Error measure, per parameter tensor:
 *   err_i = |grad_i - fd_i| / max(1, max_j |fd_j|)
 * i.e. absolute for gradients of magnitude <= 1, relative to the tensor's
 * largest finite difference otherwise (robust to elements whose own gradient
 * is near zero). A case passes when every err_i <= tol and nothing is NaN.
 *
 * Cases are built in GC_DT (f64), where h = 1e-6 relative and tol = 1e-6;
 * f32 parameters get h = 1e-3 and tol = 1e-2 (only gross errors show), and
 * bf16/f16 ones h = 3e-2 and tol = 1e-1.
 * Integer parameters (gather/scatter_add indices) need fixed values and are
 * not differentiated. The gradient graph's copy of f must equal f. */
#ifndef LDMC_TESTS_GRAD_CHECK_H
#define LDMC_TESTS_GRAD_CHECK_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "interp_test_util.h"

/* The float dtype cases are built in (f64: accurate finite differences). */
#define GC_DT LDMC_F64

typedef ldmc_value (*gc_build_fn)(ldmc_builder *b, const ldmc_value *params, void *user);
typedef struct gc_param {
  ldmc_dtype dt;
  ldmc_shape shape;
  const double *values; /* NULL: random in [-1,1) (or [0.5,2) if positive) */
  bool positive;
} gc_param;
typedef struct gc_case {
  const char *name;
  int n_params;
  gc_param params[8];
  gc_build_fn build;
  void *user;
  double tol; /* 0: default */
} gc_case;

/* Step (relative to max(1, |x|)) and tolerance for a parameter dtype. */
static inline double gc_step(ldmc_dtype dt) { return dt == LDMC_F32 ? 1e-3 : dt == LDMC_BF16 || dt == LDMC_F16 ? 3e-2 : 1e-6; }
static inline double gc_default_tol(ldmc_dtype dt) {
  return dt == LDMC_F32 ? 1e-2 : dt == LDMC_BF16 || dt == LDMC_F16 ? 1e-1 : 1e-6;
}

/* The interpreter without the backend registry (which links LLVM):
 * compile, run (inputs already typed right), free as ldmc_executable_free. */
static inline void gc_exe_free(ldmc_executable *e) {
  if (!e) return;
  if (e->iface && e->iface->destroy) e->iface->destroy(e->context);
  ldmc_graph_free(e->graph);
  free(e);
}

static inline bool gc_run(ldmc_executable *e, const ldmc_tensor *in, int n_in, ldmc_tensor *out, int n_out) {
  memset(out, 0, (size_t)n_out * sizeof *out);
  return e->iface->run(e->context, in, n_in, out, n_out) == LDMC_OK;
}

/* sum(ct * f) in double */
static inline double gc_dot(const ldmc_tensor *ct, const ldmc_tensor *f) {
  double s = 0;
  int64_t n = th_numel(&f->shape);
  for (int64_t i = 0; i < n; i++) s += ldmc_tensor_get(ct, i) * ldmc_tensor_get(f, i);
  return s;
}

/* Builds the case's forward graph: parameters p0.., output "f". */
static inline ldmc_graph *gc_build(const gc_case *c) {
  ldmc_builder *b = ldmc_builder_new(c->name);
  if (!b) return NULL;
  ldmc_value p[8];
  for (int i = 0; i < c->n_params; i++) {
    char name[16];
    snprintf(name, sizeof name, "p%d", i);
    const gc_param *q = &c->params[i];
    p[i] = ldmc_parameter(b, name, q->dt, q->shape.rank, q->shape.dims);
  }
  ldmc_value f = c->build(b, p, c->user);
  ldmc_builder_output(b, f, "f");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static inline bool gc_check(const gc_case *c, uint64_t seed) {
  uint64_t rs = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  if (!rs) rs = 1;
  bool ok = false;
  int np = c->n_params, n_float = 0;
  ldmc_graph *g = NULL, *gg = NULL;
  ldmc_executable *ef = NULL, *eg = NULL;
  ldmc_tensor in[9], f0, ct, *outs = NULL;
  memset(in, 0, sizeof in);
  memset(&f0, 0, sizeof f0);
  memset(&ct, 0, sizeof ct);
  if (np < 0 || np > 8) {
    printf("FAIL %s: %d parameters (0..8 allowed)\n", c->name, np);
    return false;
  }
  for (int i = 0; i < np; i++) {
    const gc_param *q = &c->params[i];
    if (ldmc_dtype_is_float(q->dt)) {
      n_float++;
    } else if (!q->values) {
      printf("FAIL %s: integer parameter p%d needs fixed values\n", c->name, i);
      return false;
    }
  }
  if (!(g = gc_build(c))) {
    printf("FAIL %s: building f: %s\n", c->name, ldmc_last_error());
    return false;
  }
  const ldmc_node *fn = &g->nodes[g->outputs[0]];
  ldmc_grad_opts o = {.output = "f", .seed = LDMC_GRAD_COTANGENT, .wrt_regex = NULL};
  if (ldmc_grad(g, &o, &gg) != LDMC_OK) {
    printf("FAIL %s: ldmc_grad: %s\n", c->name, ldmc_last_error());
    goto done;
  }
  if (ldmc_graph_num_params(gg) != np + 1 || gg->n_outputs != 1 + n_float) {
    printf("FAIL %s: gradient graph has %d parameters and %d outputs, expected %d and %d\n", c->name,
           (int)ldmc_graph_num_params(gg), (int)gg->n_outputs, np + 1, 1 + n_float);
    goto done;
  }
  if (ldmc_backend_interp.compile(g, NULL, &ef) != LDMC_OK || ldmc_backend_interp.compile(gg, NULL, &eg) != LDMC_OK) {
    printf("FAIL %s: compile: %s\n", c->name, ldmc_last_error());
    goto done;
  }
  for (int i = 0; i < np; i++) {
    const gc_param *q = &c->params[i];
    double lo = q->positive ? 0.5 : -1.0, hi = q->positive ? 2.0 : 1.0;
    in[i] = q->values ? th_tensor(q->dt, q->shape, q->values) : th_random(q->dt, q->shape, &rs, lo, hi);
  }
  in[np] = th_random(fn->dtype, fn->shape, &rs, -1.0, 1.0);
  ct = in[np];
  if (!gc_run(ef, in, np, &f0, 1)) {
    printf("FAIL %s: forward run: %s\n", c->name, ldmc_last_error());
    goto done;
  }
  outs = calloc((size_t)gg->n_outputs, sizeof *outs);
  if (!outs || !gc_run(eg, in, np + 1, outs, gg->n_outputs)) {
    printf("FAIL %s: gradient run: %s\n", c->name, ldmc_last_error());
    goto done;
  }
  int64_t nf = th_numel(&fn->shape);
  for (int64_t i = 0; i < nf; i++) {
    double a = ldmc_tensor_get(&f0, i), b = ldmc_tensor_get(&outs[0], i);
    if (!(a == b || (isnan(a) && isnan(b)))) {
      printf("FAIL %s: the gradient graph's f[%lld] = %.17g, the forward graph's = %.17g\n", c->name, (long long)i, b, a);
      goto done;
    }
  }
  double max_err = 0;
  for (int i = 0, k = 0; i < np; i++) {
    const gc_param *q = &c->params[i];
    if (!ldmc_dtype_is_float(q->dt)) continue;
    const ldmc_tensor *gt = &outs[1 + k++];
    if (gt->dtype != q->dt || !ldmc_shape_equal(&gt->shape, &q->shape)) {
      char s1[64], s2[64];
      printf("FAIL %s: grad.p%d is %s%s, expected %s%s\n", c->name, i, ldmc_dtype_name(gt->dtype),
             ldmc_shape_str(&gt->shape, s1, sizeof s1), ldmc_dtype_name(q->dt), ldmc_shape_str(&q->shape, s2, sizeof s2));
      goto done;
    }
    int64_t n = th_numel(&q->shape);
    double *fd = malloc((size_t)(n ? n : 1) * sizeof *fd), scale = 1.0;
    if (!fd) goto done;
    for (int64_t e = 0; e < n; e++) {
      double x = ldmc_tensor_get(&in[i], e), h = gc_step(q->dt) * fmax(1.0, fabs(x)), s[2], xs[2];
      for (int side = 0; side < 2; side++) {
        ldmc_tensor_set_elem(&in[i], e, side ? x - h : x + h);
        xs[side] = ldmc_tensor_get(&in[i], e);
        ldmc_tensor fx;
        if (!gc_run(ef, in, np, &fx, 1)) {
          printf("FAIL %s: forward run: %s\n", c->name, ldmc_last_error());
          ldmc_tensor_set_elem(&in[i], e, x);
          free(fd);
          goto done;
        }
        s[side] = gc_dot(&ct, &fx);
        ldmc_tensor_release(&fx);
      }
      ldmc_tensor_set_elem(&in[i], e, x);
      fd[e] = (s[0] - s[1]) / (xs[0] - xs[1]);
      if (fabs(fd[e]) > scale) scale = fabs(fd[e]);
    }
    double tol = c->tol > 0 ? c->tol : gc_default_tol(q->dt);
    for (int64_t e = 0; e < n; e++) {
      double gv = ldmc_tensor_get(gt, e), err = fabs(gv - fd[e]) / scale;
      if (!(err <= tol)) { /* NaN fails too */
        printf("FAIL %s: param p%d element %lld: grad %.10g vs fd %.10g (err %.3g > tol %.3g)\n", c->name, i,
               (long long)e, gv, fd[e], err, tol);
        free(fd);
        goto done;
      }
      if (err > max_err) max_err = err;
    }
    free(fd);
  }
  printf("PASS %s (max err %.3g)\n", c->name, max_err);
  ok = true;
done:
  if (outs) {
    th_release(gg->n_outputs, outs);
    free(outs);
  }
  ldmc_tensor_release(&f0);
  th_release(np + 1, in);
  gc_exe_free(ef);
  gc_exe_free(eg);
  ldmc_graph_free(g);
  ldmc_graph_free(gg);
  fflush(stdout);
  return ok;
}

#endif
