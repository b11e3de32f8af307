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
 * not differentiated. The gradient graph's copy of f must equal f.
 *
 * gc_check_llvm (defined with GC_LLVM, below) runs a case's f32 gradient
 * graph on llvm-cpu at every ISA level the host supports, against the
 * interpreter. */
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
  /* gc_check_llvm (below): */
  double llvm_tol;       /* 0: gc_llvm_tol of each output's dtype */
  bool llvm_keep_narrow; /* bf16/f16 parameters stay so (only f64 ones become f32) */
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

/* The inputs of the gradient graph: each parameter (its values, or random),
 * then the cotangent of f (node fn), random in [-1,1). */
static inline void gc_inputs(const gc_case *c, const ldmc_node *fn, uint64_t *rs, ldmc_tensor *in) {
  for (int i = 0; i < c->n_params; i++) {
    const gc_param *q = &c->params[i];
    double lo = q->positive ? 0.5 : -1.0, hi = q->positive ? 2.0 : 1.0;
    in[i] = q->values ? th_tensor(q->dt, q->shape, q->values) : th_random(q->dt, q->shape, rs, lo, hi);
  }
  in[c->n_params] = th_random(fn->dtype, fn->shape, rs, -1.0, 1.0);
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
  gc_inputs(c, fn, &rs, in);
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

#ifdef GC_LLVM
/* ---- llvm-cpu against the interpreter, at every ISA level ------------------------
 * Define GC_LLVM before including this header (the test then links llvm-cpu).
 *
 * gc_check_llvm builds the f32 version of a case (every float parameter in
 * f32; with llvm_keep_narrow only the f64 ones, so bf16/f16 conversions stay),
 * differentiates it as gc_check does (same inputs: values, or random in the
 * same ranges), runs the gradient graph on the interpreter, then compiles it
 * with llvm-cpu (2 threads) at each ISA level the host runs, scalar up to
 * ldmc_llvm_cpu_host_isa() (avx2, avx512), and compares every output (f and
 * each gradient) with the interpreter's:
 *   err = max_i |llvm_i - interp_i| / max(1, max_j |interp_j|) <= tol
 * (a NaN against a number, or a wrong dtype or shape, fails). tol is the
 * case's llvm_tol if set, else by the output's dtype: 1e-5 for f32 (~170 ulps
 * of the largest element: the backends order long sums differently, and
 * avx2/avx512 contract a*b+c into FMAs), 1e-2 for bf16 and 2e-3 for f16 (an
 * ulp or two of the largest element: a value rounded from f32 may land on
 * either side). The floor of 1 makes the error absolute for small outputs,
 * whose rounding comes from intermediates of about the inputs' magnitude.
 * Every node of the executable's graph (the optimized graph llvm-cpu runs),
 * parameters and constants aside, must be in some kernel event's nodes
 * (profiler hook) or in a prepack kernel of its plan, and no kernel may be an interpreter fallback ("interp").
 * A gradient graph with a node llvm-cpu's supports() refuses is not run: the
 * nodes are printed and the case is skipped.
 * Cases compared per level, skips and failures are counted for
 * gc_llvm_summary. */
#include "backends/llvm_cpu/llvm_cpu.h"
#include "passes/passes.h"

typedef enum gc_llvm_result { GC_LLVM_FAIL = -1, GC_LLVM_SKIPPED = 0, GC_LLVM_PASS = 1 } gc_llvm_result;

static int gc_llvm_ran[LDMC_LLVM_CPU_ISA_COUNT]; /* cases compared at each level */
static int gc_llvm_skipped, gc_llvm_failed;

static inline double gc_llvm_tol(ldmc_dtype dt) {
  return dt == LDMC_BF16 ? 1e-2 : dt == LDMC_F16 ? 2e-3 : 1e-5;
}

/* The case in f32 (see above). */
static inline gc_case gc_case_f32(const gc_case *c) {
  gc_case r = *c;
  for (int i = 0; i < r.n_params && i < 8; i++) {
    ldmc_dtype *dt = &r.params[i].dt;
    if (ldmc_dtype_is_float(*dt) && (*dt == LDMC_F64 || !c->llvm_keep_narrow)) *dt = LDMC_F32;
  }
  return r;
}

/* The measure above; *at: the worst element (-1 when the tensors differ in
 * dtype or shape: INFINITY). Both NaN counts as equal, one NaN as INFINITY. */
static inline double gc_llvm_err(const ldmc_tensor *got, const ldmc_tensor *want, int64_t *at) {
  *at = -1;
  if (got->dtype != want->dtype || !ldmc_shape_equal(&got->shape, &want->shape)) return INFINITY;
  int64_t n = th_numel(&want->shape);
  double scale = 1.0, worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double w = fabs(ldmc_tensor_get(want, i));
    if (w > scale && !isinf(w)) scale = w;
  }
  for (int64_t i = 0; i < n; i++) {
    double a = ldmc_tensor_get(got, i), b = ldmc_tensor_get(want, i);
    double d = a == b || (isnan(a) && isnan(b)) ? 0.0 : fabs(a - b) / scale;
    if (isnan(d)) d = INFINITY;
    if (*at < 0 || d > worst) {
      worst = d;
      *at = i;
    }
  }
  if (*at < 0) *at = 0;
  return worst;
}

/* Nodes of an executable's graph that some kernel event computes. */
typedef struct gc_cover {
  const ldmc_graph *g;
  unsigned char *seen;
  int events, interp;
} gc_cover;

static inline void gc_on_kernel(void *ctx, const ldmc_kernel_event *ev) {
  gc_cover *k = ctx;
  k->events++;
  if (ev->name && !strcmp(ev->name, "interp")) k->interp++;
  for (int32_t i = 0; i < ev->n_nodes; i++)
    if (ev->nodes[i] >= 0 && ev->nodes[i] < k->g->n_nodes) k->seen[ev->nodes[i]] = 1;
}

/* Nodes of prepack kernels (they read only constants, so they run when the
 * executable binds its inputs, in llvm-cpu code, and report no event) count
 * as covered; the plan's graph is the executable's (the same pipeline). */
static inline void gc_cover_prepack(const ldmc_graph *gg, const ldmc_compile_opts *o, gc_cover *cv) {
  ldmc_graph *opt = NULL;
  ldmc_plan *kp = NULL;
  if (ldmc_backend_llvm_cpu.plan(gg, o, &opt, &kp) == LDMC_OK && opt->n_nodes == cv->g->n_nodes)
    for (int32_t k = 0; k < kp->n_kernels; k++)
      if (kp->kernels[k].kind == LDMC_KERNEL_PREPACK)
        for (int32_t j = 0; j < kp->kernels[k].n_nodes; j++) cv->seen[kp->kernels[k].nodes[j]] = 1;
  ldmc_plan_free(kp);
  ldmc_graph_free(opt);
}

/* Compiles gg at level isa, runs it on in and compares with want. Returns the
 * worst err / tol over the outputs (INFINITY on any failure, printed). */
static inline double gc_llvm_level(const gc_case *c, const ldmc_graph *gg, ldmc_llvm_cpu_isa isa,
                                   const ldmc_tensor *in, int n_in, const ldmc_tensor *want, int *n_kernels) {
  const char *lv = ldmc_llvm_cpu_isa_name(isa);
  ldmc_compile_opts o = {.threads = 2};
  ldmc_executable *e = NULL;
  ldmc_tensor *got = NULL;
  gc_cover cv = {0};
  double worst = INFINITY;
  ldmc_llvm_cpu_isa now = LDMC_LLVM_CPU_ISA_AUTO;
  ldmc_llvm_cpu_set_isa(isa);
  ldmc_status st = ldmc_llvm_cpu_current_isa(&now);
  if (st == LDMC_OK && now == isa) st = ldmc_backend_llvm_cpu.compile(gg, &o, &e);
  if (st == LDMC_OK && now == isa) {
    cv.g = e->graph;
    cv.seen = calloc((size_t)(e->graph->n_nodes ? e->graph->n_nodes : 1), 1);
    if (cv.seen) gc_cover_prepack(gg, &o, &cv);
  }
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  if (st != LDMC_OK || now != isa) {
    printf("FAIL llvm-cpu %s [%s]: compile: %s\n", c->name, lv, st != LDMC_OK ? ldmc_last_error() : "level not taken");
    goto done;
  }
  got = calloc((size_t)gg->n_outputs, sizeof *got);
  ldmc_profile_hook hook = {.kernel = gc_on_kernel, .ctx = &cv};
  if (!cv.seen || !got || ldmc_executable_set_profiler(e, &hook) != LDMC_OK) {
    printf("FAIL llvm-cpu %s [%s]: no memory or no profiler: %s\n", c->name, lv, ldmc_last_error());
    goto done;
  }
  if (!gc_run(e, in, n_in, got, gg->n_outputs)) {
    printf("FAIL llvm-cpu %s [%s]: run: %s\n", c->name, lv, ldmc_last_error());
    goto done;
  }
  for (int32_t i = 0; i < e->graph->n_nodes; i++) {
    const ldmc_node *n = &e->graph->nodes[i];
    if (cv.seen[i] || n->op == LDMC_OP_PARAMETER || n->op == LDMC_OP_CONSTANT) continue;
    char sh[96];
    printf("FAIL llvm-cpu %s [%s]: node %%%d %s %s%s of the compiled graph is in no kernel event\n", c->name, lv,
           (int)i, ldmc_op_name(n->op), ldmc_dtype_name(n->dtype), ldmc_shape_str(&n->shape, sh, sizeof sh));
    goto done;
  }
  if (cv.events == 0 || cv.interp > 0) {
    printf("FAIL llvm-cpu %s [%s]: %d of %d kernels ran on the interpreter\n", c->name, lv, cv.interp, cv.events);
    goto done;
  }
  double w = 0.0;
  for (int32_t k = 0; k < gg->n_outputs; k++) {
    double tol = c->llvm_tol > 0 ? c->llvm_tol : gc_llvm_tol(want[k].dtype);
    int64_t at;
    double err = gc_llvm_err(&got[k], &want[k], &at);
    if (!(err <= tol)) {
      if (at < 0)
        printf("FAIL llvm-cpu %s [%s]: output '%s' is %s, the interpreter's %s\n", c->name, lv, gg->output_names[k],
               ldmc_dtype_name(got[k].dtype), ldmc_dtype_name(want[k].dtype));
      else
        printf("FAIL llvm-cpu %s [%s]: output '%s'[%lld] = %.9g, interp %.9g (err %.3g > tol %.3g)\n", c->name, lv,
               gg->output_names[k], (long long)at, ldmc_tensor_get(&got[k], at), ldmc_tensor_get(&want[k], at), err,
               tol);
      goto done;
    }
    if (err / tol > w) w = err / tol;
  }
  worst = w;
  *n_kernels = cv.events;
done:
  if (got) {
    th_release(gg->n_outputs, got);
    free(got);
  }
  free(cv.seen);
  gc_exe_free(e);
  return worst;
}

static inline gc_llvm_result gc_check_llvm(const gc_case *c, uint64_t seed) {
  uint64_t rs = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  if (!rs) rs = 1;
  gc_llvm_result res = GC_LLVM_FAIL;
  gc_case c32 = gc_case_f32(c);
  int np = c32.n_params, refused = 0;
  ldmc_graph *g = NULL, *gg = NULL;
  ldmc_executable *ei = NULL;
  ldmc_tensor in[9], *want = NULL;
  memset(in, 0, sizeof in);
  if (np < 0 || np > 8 || !(g = gc_build(&c32))) {
    printf("FAIL llvm-cpu %s: building f in f32: %s\n", c->name, np < 0 || np > 8 ? "bad n_params" : ldmc_last_error());
    goto done;
  }
  ldmc_grad_opts o = {.output = "f", .seed = LDMC_GRAD_COTANGENT, .wrt_regex = NULL};
  if (ldmc_grad(g, &o, &gg) != LDMC_OK || ldmc_graph_verify(gg) != LDMC_OK) {
    printf("FAIL llvm-cpu %s: the f32 gradient graph: %s\n", c->name, ldmc_last_error());
    goto done;
  }
  for (int32_t i = 0; i < gg->n_nodes; i++) {
    const ldmc_node *n = &gg->nodes[i];
    if (ldmc_backend_llvm_cpu.supports(n)) continue;
    char sh[96];
    printf("SKIP llvm-cpu %s: supports() refuses %%%d %s %s%s\n", c->name, (int)i, ldmc_op_name(n->op),
           ldmc_dtype_name(n->dtype), ldmc_shape_str(&n->shape, sh, sizeof sh));
    refused++;
  }
  if (refused) {
    res = GC_LLVM_SKIPPED;
    goto done;
  }
  gc_inputs(&c32, &g->nodes[g->outputs[0]], &rs, in);
  want = calloc((size_t)gg->n_outputs, sizeof *want);
  if (!want || ldmc_backend_interp.compile(gg, NULL, &ei) != LDMC_OK || !gc_run(ei, in, np + 1, want, gg->n_outputs)) {
    printf("FAIL llvm-cpu %s: the interpreter's run: %s\n", c->name, ldmc_last_error());
    goto done;
  }
  char line[256];
  int used = 0, kernels = 0;
  bool ok = true;
  for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)ldmc_llvm_cpu_host_isa(); isa++) {
    double r = gc_llvm_level(&c32, gg, (ldmc_llvm_cpu_isa)isa, in, np + 1, want, &kernels);
    if (!(r <= 1.0)) {
      ok = false;
      continue; /* the other levels still run: which fail tells more */
    }
    gc_llvm_ran[isa]++;
    if (used < (int)sizeof line)
      used += snprintf(line + used, sizeof line - (size_t)used, " %s %.2g", ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), r);
  }
  if (ok) {
    printf("PASS llvm-cpu %s (err/tol:%s; %d kernels)\n", c->name, used ? line : "", kernels);
    res = GC_LLVM_PASS;
  } else {
    char *txt = ldmc_graph_print(gg);
    printf("  the f32 gradient graph of %s:\n%s", c->name, txt ? txt : "(print failed)\n");
    free(txt);
  }
done:
  if (res == GC_LLVM_SKIPPED) gc_llvm_skipped++;
  if (res == GC_LLVM_FAIL) gc_llvm_failed++;
  if (want) {
    th_release(gg->n_outputs, want);
    free(want);
  }
  th_release(np + 1 > 0 && np <= 8 ? np + 1 : 0, in);
  gc_exe_free(ei);
  ldmc_graph_free(g);
  ldmc_graph_free(gg);
  fflush(stdout);
  return res;
}

/* Cases compared per ISA level, skipped, failed; llvm-cpu's kernel counters. */
static inline void gc_llvm_summary(const char *test) {
  printf("%s: llvm-cpu vs interp:", test);
  for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)ldmc_llvm_cpu_host_isa(); isa++)
    printf(" %s %d,", ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), gc_llvm_ran[isa]);
  printf(" %d skipped (unsupported), %d failed\n", gc_llvm_skipped, gc_llvm_failed);
  ldmc_llvm_cpu_stats st;
  ldmc_llvm_cpu_stats_get(&st);
  printf("%s: llvm-cpu kernels: %lld requested, %lld compiled (%.1f s in LLVM), %lld from the disk cache\n", test,
         (long long)st.kernels_requested, (long long)st.kernels_compiled, st.llvm_seconds, (long long)st.disk_hits);
  fflush(stdout);
}
#endif /* GC_LLVM */

#endif
