/* Gradients of dot_general and convolution (frontend/vjp_contract.c).
 *
 * Every case runs three checks:
 *   1. gc_check (tests/grad_check.h): ldmc_grad against central finite
 *      differences on the interpreter, in GC_DT (two cases in bf16 / f16);
 *   2. in f32, an adjoint identity that holds exactly for bilinear ops: with
 *      g = grad_x sum(ct * f(x, w)), sum(ct * f(g, w)) = <g, g> (and likewise
 *      for w), to ~1e-6 in f32, so 0.1% errors are caught even where the
 *      finite differences are too coarse to;
 *   3. gc_check_llvm (tests/grad_check.h): the same gradient graph in f32 on
 *      llvm-cpu at every ISA level the host runs, against the interpreter
 *      (after the IR verifier), every node in a llvm-cpu kernel; a case with
 *      a node llvm-cpu's supports() refuses is skipped, and only
 *      convolutions with more than 2 spatial dims may be.
 * Sanity: a gradient scaled by 1.001 must fail checks 1 (once the finite
 * differences resolve it) and 2. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "frontend/builder_internal.h"
#include "frontend/frontend.h"
#define GC_LLVM
#include "grad_check.h"

/* ---- cases ------------------------------------------------------------------- */

typedef struct dot_spec {
  ldmc_ints lb, rb, lc, rc;
} dot_spec;

static ldmc_value build_dot(ldmc_builder *b, const ldmc_value *p, void *user) {
  const dot_spec *d = user;
  return ldmc_dot_general(b, p[0], p[1], &d->lb, &d->rb, &d->lc, &d->rc);
}

static ldmc_value build_conv(ldmc_builder *b, const ldmc_value *p, void *user) {
  return ldmc_builder_node(b, LDMC_OP_CONVOLUTION, ldmc_value_dtype(b, p[0]), NULL, 2, p, (const ldmc_attrs *)user);
}

/* One convolution's attributes: per spatial dim stride, pads, dilations. */
typedef struct conv_opts {
  int ns;
  int64_t st[3], lo[3], hi[3], ld[3], rd[3], groups;
  ldmc_ints id, kd, od; /* .n == 0: NC.../OI.../NC... */
} conv_opts;

static ldmc_attrs conv_attrs_of(const conv_opts *o) {
  ldmc_attrs a = {0};
  int r = o->ns + 2;
  ldmc_ints canon = {.n = r};
  for (int i = 0; i < r; i++) canon.v[i] = i;
  a.window_stride.n = a.pad_low.n = a.pad_high.n = a.lhs_dilation.n = a.rhs_dilation.n = o->ns;
  for (int j = 0; j < o->ns; j++) {
    a.window_stride.v[j] = o->st[j] ? o->st[j] : 1;
    a.pad_low.v[j] = o->lo[j];
    a.pad_high.v[j] = o->hi[j];
    a.lhs_dilation.v[j] = o->ld[j] ? o->ld[j] : 1;
    a.rhs_dilation.v[j] = o->rd[j] ? o->rd[j] : 1;
  }
  a.groups = o->groups ? o->groups : 1;
  a.input_dims = o->id.n ? o->id : canon;
  a.kernel_dims = o->kd.n ? o->kd : canon;
  a.output_dims = o->od.n ? o->od : canon;
  return a;
}

/* Storage of the cases' user data (attrs must outlive the case). */
enum { MAX_CASES = 64 };
static ldmc_attrs g_conv_at[MAX_CASES];
static dot_spec g_dot[MAX_CASES];
static gc_case g_cases[MAX_CASES];
static int g_n;

static gc_param par(ldmc_shape s) { return (gc_param){.dt = GC_DT, .shape = s}; }

static void add_dot(const char *name, ldmc_shape l, ldmc_shape r, dot_spec d) {
  g_dot[g_n] = d;
  g_cases[g_n] =
      (gc_case){.name = name, .n_params = 2, .params = {par(l), par(r)}, .build = build_dot, .user = &g_dot[g_n]};
  g_n++;
}

/* x and w given in the layouts the dims of o name */
static void add_conv(const char *name, ldmc_shape x, ldmc_shape w, conv_opts o) {
  g_conv_at[g_n] = conv_attrs_of(&o);
  g_cases[g_n] = (gc_case){.name = name, .n_params = 2, .params = {par(x), par(w)}, .build = build_conv,
                           .user = &g_conv_at[g_n]};
  g_n++;
}

/* The last case's parameters in dt instead of GC_DT. */
static void set_dtype(ldmc_dtype dt) {
  for (int i = 0; i < g_cases[g_n - 1].n_params; i++) g_cases[g_n - 1].params[i].dt = dt;
}

#define NHWC INTS(0, 3, 1, 2)
#define HWIO INTS(3, 2, 0, 1)
#define NWC INTS(0, 2, 1)
#define WIO INTS(2, 1, 0)

static void make_cases(void) {
  /* dot_general: result is [batch, lhs free, rhs free] */
  add_dot("dot batch in the middle, two contracting dims", SHAPE(3, 2, 5, 4), SHAPE(4, 3, 2, 6),
          (dot_spec){INTS(1), INTS(2), INTS(3, 0), INTS(0, 1)});
  add_dot("dot batch at the end", SHAPE(4, 5, 3), SHAPE(6, 4, 3), (dot_spec){INTS(2), INTS(2), INTS(0), INTS(1)});
  add_dot("dot two batch dims, crossed order", SHAPE(2, 3, 4, 5), SHAPE(5, 4, 3, 7),
          (dot_spec){INTS(3, 1), INTS(0, 2), INTS(2), INTS(1)});
  add_dot("dot no batch, contracting first/last", SHAPE(5, 3), SHAPE(4, 5), (dot_spec){INTS0, INTS0, INTS(0), INTS(1)});
  add_dot("dot no batch, three contracting dims", SHAPE(2, 3, 4, 2), SHAPE(4, 5, 2, 3),
          (dot_spec){INTS0, INTS0, INTS(1, 2, 0), INTS(3, 0, 2)});
  add_dot("dot matrix-vector", SHAPE(5, 3), SHAPE(3), (dot_spec){INTS0, INTS0, INTS(1), INTS(0)});
  add_dot("dot vector-matrix", SHAPE(5), SHAPE(5, 7), (dot_spec){INTS0, INTS0, INTS(0), INTS(0)});
  add_dot("dot outer product", SHAPE(3), SHAPE(4), (dot_spec){INTS0, INTS0, INTS0, INTS0});
  add_dot("dot full contraction to a scalar", SHAPE(3, 4), SHAPE(4, 3),
          (dot_spec){INTS0, INTS0, INTS(0, 1), INTS(1, 0)});
  add_dot("dot batch only (elementwise product)", SHAPE(3, 2), SHAPE(2, 3),
          (dot_spec){INTS(0, 1), INTS(1, 0), INTS0, INTS0});
  add_dot("dot batch first, free dims on both sides", SHAPE(2, 3, 4, 5), SHAPE(3, 2, 6, 5),
          (dot_spec){INTS(0), INTS(1), INTS(3), INTS(3)});
  add_dot("dot bf16 (gradients in bf16)", SHAPE(2, 4, 3), SHAPE(2, 3, 5),
          (dot_spec){INTS(0), INTS(0), INTS(2), INTS(1)});
  set_dtype(LDMC_BF16);

  /* convolution 1-D: x [N, C, W] / w [O, I, K] unless said */
  add_conv("conv1d s1 pad 1/1", SHAPE(2, 3, 10), SHAPE(4, 3, 3), (conv_opts){.ns = 1, .lo = {1}, .hi = {1}});
  add_conv("conv1d s2 pad 1/0 (stride leaves a row)", SHAPE(2, 3, 10), SHAPE(4, 3, 3),
           (conv_opts){.ns = 1, .st = {2}, .lo = {1}});
  add_conv("conv1d s3 odd input, leftover rows", SHAPE(1, 2, 12), SHAPE(3, 2, 2), (conv_opts){.ns = 1, .st = {3}});
  add_conv("conv1d lhs dilation 2 (transposed conv)", SHAPE(3, 2, 5), SHAPE(2, 2, 3),
           (conv_opts){.ns = 1, .ld = {2}, .lo = {2}, .hi = {1}});
  add_conv("conv1d lhs dilation 2 with stride 3", SHAPE(1, 3, 7), SHAPE(2, 3, 4),
           (conv_opts){.ns = 1, .ld = {2}, .st = {3}, .lo = {1}, .hi = {2}});
  add_conv("conv1d rhs dilation 2 stride 2", SHAPE(2, 3, 13), SHAPE(5, 3, 3),
           (conv_opts){.ns = 1, .st = {2}, .rd = {2}, .lo = {2}, .hi = {1}});
  add_conv("conv1d NWC/WIO groups 2", SHAPE(3, 9, 4), SHAPE(3, 2, 6),
           (conv_opts){.ns = 1, .st = {2}, .lo = {1}, .hi = {1}, .groups = 2, .id = NWC, .kd = WIO, .od = NWC});
  add_conv("conv1d pad larger than the kernel", SHAPE(1, 2, 4), SHAPE(3, 2, 2),
           (conv_opts){.ns = 1, .lo = {3}, .hi = {2}});
  add_conv("conv1d negative pads (cropping)", SHAPE(2, 2, 9), SHAPE(3, 2, 3),
           (conv_opts){.ns = 1, .st = {2}, .lo = {-1}, .hi = {-2}});

  /* convolution 2-D: x [N, C, H, W] / w [O, I, KH, KW] unless said */
  add_conv("conv2d 3x3 s1 pad 1, batch 1, C 3 -> 5", SHAPE(1, 3, 6, 5), SHAPE(5, 3, 3, 3),
           (conv_opts){.ns = 2, .lo = {1, 1}, .hi = {1, 1}});
  add_conv("conv2d s2 odd input, asymmetric pads, batch 3", SHAPE(3, 2, 7, 9), SHAPE(3, 2, 3, 3),
           (conv_opts){.ns = 2, .st = {2, 2}, .lo = {1, 0}, .hi = {0, 2}});
  add_conv("conv2d s3 no padding", SHAPE(2, 3, 11, 10), SHAPE(2, 3, 2, 3), (conv_opts){.ns = 2, .st = {3, 3}});
  add_conv("conv2d strides 2x3, rhs dilation 2x1, groups 2", SHAPE(3, 4, 11, 9), SHAPE(6, 2, 3, 2),
           (conv_opts){.ns = 2, .st = {2, 3}, .rd = {2, 1}, .lo = {1, 0}, .hi = {2, 1}, .groups = 2});
  add_conv("conv2d depthwise groups = C = 5", SHAPE(2, 5, 6, 7), SHAPE(5, 1, 3, 3),
           (conv_opts){.ns = 2, .lo = {1, 1}, .hi = {1, 1}, .groups = 5});
  add_conv("conv2d depthwise x2 multiplier, s2", SHAPE(1, 3, 7, 6), SHAPE(6, 1, 3, 2),
           (conv_opts){.ns = 2, .st = {2, 2}, .lo = {1, 0}, .hi = {1, 1}, .groups = 3});
  add_conv("conv2d prime channels 7 -> 11", SHAPE(1, 7, 5, 5), SHAPE(11, 7, 3, 1),
           (conv_opts){.ns = 2, .lo = {1, 0}, .hi = {1, 0}});
  add_conv("conv2d NHWC/HWIO s2 pad 1", SHAPE(3, 7, 8, 3), SHAPE(3, 3, 3, 4),
           (conv_opts){.ns = 2, .st = {2, 2}, .lo = {1, 1}, .hi = {1, 1}, .id = NHWC, .kd = HWIO, .od = NHWC});
  add_conv("conv2d NHWC/HWIO groups 3 lhs dilation", SHAPE(1, 5, 4, 6), SHAPE(3, 2, 2, 9),
           (conv_opts){.ns = 2, .ld = {2, 3}, .st = {2, 1}, .rd = {1, 2}, .lo = {1, 2}, .hi = {0, 1}, .groups = 3,
                       .id = NHWC, .kd = HWIO, .od = NHWC});
  add_conv("conv2d lhs dilation 2 (stride-2 transposed conv)", SHAPE(2, 3, 4, 5), SHAPE(2, 3, 3, 3),
           (conv_opts){.ns = 2, .ld = {2, 2}, .lo = {2, 2}, .hi = {2, 2}});
  add_conv("conv2d mixed layouts NCHW in, NHWC out, IOHW kernel", SHAPE(2, 4, 6, 5), SHAPE(2, 6, 3, 2),
           (conv_opts){.ns = 2, .st = {1, 2}, .lo = {1, 0}, .hi = {1, 1}, .groups = 2, .id = INTS(0, 1, 2, 3),
                       .kd = INTS(1, 0, 2, 3), .od = INTS(0, 3, 1, 2)});
  add_conv("conv2d batch in the spatial middle (HNCW-ish)", SHAPE(5, 2, 3, 6), SHAPE(2, 3, 3, 3),
           (conv_opts){.ns = 2, .st = {2, 1}, .lo = {0, 1}, .hi = {1, 1}, .id = INTS(1, 2, 0, 3),
                       .kd = INTS(0, 1, 2, 3), .od = INTS(2, 0, 1, 3)});

  add_conv("conv2d f16 s2 groups 2 (gradients in f16)", SHAPE(2, 4, 7, 6), SHAPE(4, 2, 3, 3),
           (conv_opts){.ns = 2, .st = {2, 2}, .lo = {1, 1}, .hi = {1, 0}, .groups = 2});
  set_dtype(LDMC_F16);

  /* convolution 3-D (the interpreter runs any spatial rank) */
  add_conv("conv3d s(2,1,1) groups 2 asymmetric pads", SHAPE(1, 2, 5, 4, 3), SHAPE(4, 1, 2, 2, 2),
           (conv_opts){.ns = 3, .st = {2, 1, 1}, .lo = {1, 0, 1}, .hi = {0, 1, 0}, .groups = 2});
  add_conv("conv3d lhs and rhs dilation, batch 3", SHAPE(3, 2, 3, 4, 3), SHAPE(3, 2, 2, 2, 1),
           (conv_opts){.ns = 3, .ld = {2, 1, 1}, .rd = {1, 2, 1}, .st = {1, 2, 1}, .lo = {1, 1, 0}, .hi = {1, 0, 0}});
}

/* ---- shared pieces ------------------------------------------------------------- */

/* The case with every parameter in dtype dt. */
static gc_case in_dtype(const gc_case *c, ldmc_dtype dt) {
  gc_case r = *c;
  for (int i = 0; i < r.n_params; i++) r.params[i].dt = dt;
  return r;
}

typedef struct grad_run {
  ldmc_graph *g, *gg;
  ldmc_tensor in[9]; /* params, then the cotangent */
  ldmc_tensor *out;  /* gg's outputs: f, then grad.p0, grad.p1 */
  int n_out;
} grad_run;

static void grad_run_free(grad_run *r) {
  if (r->out) th_release(r->n_out, r->out);
  free(r->out);
  if (r->g) th_release(ldmc_graph_num_params(r->g) + 1, r->in);
  ldmc_graph_free(r->g);
  ldmc_graph_free(r->gg);
  memset(r, 0, sizeof *r);
}

/* Runs g on the interpreter. */
static bool run_interp(const ldmc_graph *g, const ldmc_tensor *in, int n_in, ldmc_tensor *out, int n_out) {
  ldmc_executable *e = NULL;
  memset(out, 0, (size_t)n_out * sizeof *out);
  ldmc_status st = ldmc_backend_interp.compile(g, NULL, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, n_in, out, n_out);
  CHECK_MSG(st == LDMC_OK, "%s on interp: %s", g->name, ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* Builds f and its gradient graph (seed COTANGENT), random inputs, and runs
 * the gradient graph on the interpreter. */
static bool grad_run_make(const gc_case *c, uint64_t seed, grad_run *r) {
  memset(r, 0, sizeof *r);
  r->g = gc_build(c);
  CHECK_MSG(r->g != NULL, "%s: build: %s", c->name, ldmc_last_error());
  if (!r->g) return false;
  ldmc_grad_opts o = {.output = "f", .seed = LDMC_GRAD_COTANGENT};
  ldmc_status st = ldmc_grad(r->g, &o, &r->gg);
  CHECK_MSG(st == LDMC_OK, "%s: ldmc_grad: %s", c->name, ldmc_last_error());
  if (st != LDMC_OK) return false;
  st = ldmc_graph_verify(r->gg);
  CHECK_MSG(st == LDMC_OK, "%s: gradient graph does not verify: %s", c->name, ldmc_last_error());
  if (st != LDMC_OK) return false;
  int np = c->n_params;
  const ldmc_node *f = &r->g->nodes[r->g->outputs[0]];
  for (int i = 0; i < np; i++) r->in[i] = th_random(c->params[i].dt, c->params[i].shape, &seed, -1, 1);
  r->in[np] = th_random(f->dtype, f->shape, &seed, -1, 1);
  r->n_out = r->gg->n_outputs;
  r->out = calloc((size_t)r->n_out, sizeof *r->out);
  return r->out && run_interp(r->gg, r->in, np + 1, r->out, r->n_out);
}

static double sum_abs_prod(const ldmc_tensor *a, const ldmc_tensor *b, double *dot) {
  double s = 0, d = 0;
  for (int64_t i = 0; i < th_numel(&a->shape); i++) {
    double p = ldmc_tensor_get(a, i) * ldmc_tensor_get(b, i);
    s += fabs(p);
    d += p;
  }
  *dot = d;
  return s;
}

/* Check 2 for parameter k with its gradient scaled by `scale`: the relative
 * defect |sum(ct * f(.., g, ..)) - <g, g>| / (sum |ct f| + <g, g>). */
static double adjoint_defect(const gc_case *c, grad_run *r, int k, double scale) {
  int np = c->n_params;
  ldmc_tensor v = th_tensor(c->params[k].dt, c->params[k].shape, NULL), in[8], f;
  for (int64_t i = 0; i < th_numel(&v.shape); i++)
    ldmc_tensor_set_elem(&v, i, scale * ldmc_tensor_get(&r->out[1 + k], i));
  for (int i = 0; i < np; i++) in[i] = i == k ? v : r->in[i];
  double defect = INFINITY;
  if (run_interp(r->g, in, np, &f, 1)) {
    double s, gg;
    double mag = sum_abs_prod(&r->in[np], &f, &s) + sum_abs_prod(&v, &v, &gg);
    defect = mag > 0 ? fabs(s - gg) / mag : fabs(s - gg);
    ldmc_tensor_release(&f);
  }
  ldmc_tensor_release(&v);
  return defect;
}

/* f32 rounding of f and of g: a few ulps of the magnitudes summed */
#define ADJ_TOL 2e-6

static void adjoint_check(const gc_case *c, uint64_t seed) {
  gc_case c32 = in_dtype(c, LDMC_F32);
  grad_run r;
  if (grad_run_make(&c32, seed, &r))
    for (int k = 0; k < c->n_params; k++) {
      double d = adjoint_defect(&c32, &r, k, 1.0);
      CHECK_MSG(d <= ADJ_TOL, "%s: adjoint identity of p%d off by %.3g (tol %.1g)", c->name, k, d, ADJ_TOL);
    }
  grad_run_free(&r);
}

/* max that keeps a NaN (fmax drops it) */
static double worse(double a, double b) { return isnan(b) || b > a ? b : a; }

/* ---- llvm-cpu --------------------------------------------------------------------- */

/* Check 3: only a convolution with more than 2 spatial dims (x of rank > 4)
 * may be refused. */
static void llvm_check(const gc_case *c, uint64_t seed) {
  gc_llvm_result r = gc_check_llvm(c, seed);
  bool conv3d = c->build == build_conv && c->params[0].shape.rank > 4;
  CHECK_MSG(r == GC_LLVM_PASS || (r == GC_LLVM_SKIPPED && conv3d), "%s: llvm-cpu %s", c->name,
            r == GC_LLVM_SKIPPED ? "refuses a node" : "gradients differ from interp's");
}

/* ---- sanity: a 0.1% wrong gradient is caught ------------------------------------------ */

/* Check 1's measure (tests/grad_check.h) on parameter 0 with its gradient
 * scaled: the largest err_i over the tolerance. */
static double fd_defect(const gc_case *c, double scale, uint64_t seed) {
  grad_run r;
  ldmc_executable *ef = NULL;
  double worst = -1, *fd = NULL;
  if (!grad_run_make(c, seed, &r) || ldmc_backend_interp.compile(r.g, NULL, &ef) != LDMC_OK) goto done;
  int np = c->n_params;
  ldmc_tensor *x = &r.in[0];
  int64_t n = th_numel(&x->shape);
  double mx = 1.0;
  if (!(fd = calloc((size_t)n, sizeof *fd))) goto done;
  for (int64_t e = 0; e < n; e++) {
    double v = ldmc_tensor_get(x, e), h = gc_step(x->dtype) * fmax(1.0, fabs(v)), s[2], xs[2];
    for (int side = 0; side < 2; side++) {
      ldmc_tensor fx;
      ldmc_tensor_set_elem(x, e, side ? v - h : v + h);
      xs[side] = ldmc_tensor_get(x, e);
      s[side] = gc_run(ef, r.in, np, &fx, 1) ? gc_dot(&r.in[np], &fx) : NAN;
      ldmc_tensor_release(&fx);
    }
    ldmc_tensor_set_elem(x, e, v);
    fd[e] = (s[0] - s[1]) / (xs[0] - xs[1]);
    mx = fmax(mx, fabs(fd[e]));
  }
  worst = 0;
  for (int64_t e = 0; e < n; e++)
    worst = worse(worst, fabs(scale * ldmc_tensor_get(&r.out[1], e) - fd[e]) / mx / gc_default_tol(x->dtype));
done:
  free(fd);
  gc_exe_free(ef);
  grad_run_free(&r);
  return worst;
}

static const gc_case *case_named(const char *name) {
  for (int i = 0; i < g_n; i++)
    if (!strcmp(g_cases[i].name, name)) return &g_cases[i];
  CHECK_MSG(0, "no case '%s'", name);
  return NULL;
}

static void sanity_checks(void) {
  const char *picks[2] = {"dot batch in the middle, two contracting dims",
                          "conv2d s2 odd input, asymmetric pads, batch 3"};
  for (int i = 0; i < 2; i++) {
    const gc_case *c = case_named(picks[i]);
    if (!c) continue;
    double ok = fd_defect(c, 1.0, 7), bad = fd_defect(c, 1.001, 7);
    CHECK_MSG(ok >= 0 && ok <= 1.0, "%s: the correct gradient fails the finite differences (%.3g x tol)", c->name, ok);
    if (gc_default_tol(GC_DT) < 1e-3) {
      CHECK_MSG(bad > 1.0, "%s: a gradient 0.1%% off passes the finite differences (%.3g x tol)", c->name, bad);
    } else { /* f32 steps: 0.1% is below resolution; a tolerance-sized error must still show */
      double coarse = fd_defect(c, 1.0 + 3 * gc_default_tol(GC_DT), 7);
      printf("  note: in %s a 0.1%% error is %.2g x the finite-difference tolerance (undetectable); "
             "%.0f%% is %.2g x\n", ldmc_dtype_name(GC_DT), bad, 300 * gc_default_tol(GC_DT), coarse);
      CHECK_MSG(coarse > 1.0, "%s: a gradient %.0f%% off passes the finite differences", c->name,
                300 * gc_default_tol(GC_DT));
    }
    gc_case c32 = in_dtype(c, LDMC_F32);
    grad_run r;
    if (grad_run_make(&c32, 7, &r)) {
      double a_ok = adjoint_defect(&c32, &r, 0, 1.0), a_bad = adjoint_defect(&c32, &r, 0, 1.001);
      printf("  sanity %s: fd err/tol %.3g, x1.001 %.3g; adjoint defect %.3g, x1.001 %.3g\n", c->name, ok, bad, a_ok,
             a_bad);
      CHECK_MSG(a_ok <= ADJ_TOL && a_bad > 10 * ADJ_TOL,
                "%s: adjoint defect %.3g for the gradient, %.3g for it x 1.001 (tol %.1g)", c->name, a_ok, a_bad,
                ADJ_TOL);
    }
    grad_run_free(&r);
  }
}

int main(void) {
  make_cases();
  for (int i = 0; i < g_n; i++) {
    const gc_case *c = &g_cases[i];
    CHECK_MSG(gc_check(c, 1000 + (uint64_t)i), "%s: gc_check", c->name);
    adjoint_check(c, 2000 + (uint64_t)i);
    llvm_check(c, 3000 + (uint64_t)i);
  }
  sanity_checks();
  gc_llvm_summary("test_grad_contract");
  return test_summary("test_grad_contract");
}
