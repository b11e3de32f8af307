/* llvm-cpu bf16 GEMM (vdpbf16ps, f32 accumulation) and weights packed once.
 *
 * Oracle: the same sums in double over operands rounded to bf16 here
 * (frexp/rint/ldexp: round to 8 significant bits, nearest even), plus the
 * interpreter run on those rounded inputs. Tolerances, per output with
 * S = sum_k |a_k b_k|:
 *  - vs the rounded-operand sum: bf16 x bf16 products are exact in f32, so only
 *    the K f32 additions err: (K + 2) 2^-24 S. This also fails if the f32 path
 *    ran (the unrounded operands differ by ~2^-9 relative).
 *  - vs the unrounded f32 sum: each operand moves by <= 2^-9 relative, a product
 *    by <= 2^-8 (first order): 2^-8 S plus the above.
 *  - a bf16 output adds its own rounding, 2^-8 |y|.
 * With the flag off, or an ISA level without avx512_bf16, results must be the
 * f32 ones: (K + 2) 2^-24 S against the unrounded sum.
 * Prepacked weights: parameters declared weights run twice with the same
 * tensors, then with other tensors (results follow), then with the other
 * tensors changed in place, which backend.h says is not seen: equal results
 * show the weights were packed once, not per run. Constants are prepacked too. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

static float bf16r(float x) { /* nearest even at 8 significant bits; inputs here are normal and finite */
  if (x == 0) return x;
  int e;
  double m = frexp((double)x, &e);
  return (float)ldexp(rint(ldexp(m, 8)), e - 8);
}

static uint32_t g_seed = 12345;
static float rnd(void) { /* full-mantissa values in [-1, 1) */
  g_seed = g_seed * 1664525u + 1013904223u;
  return (float)((double)(g_seed >> 8) / (double)(1u << 23) - 1.0);
}

/* a tensor of dtype dt from f32 data (a bf16 tensor gets bf16-representable data) */
static void make(ldmc_tensor *t, const char *name, ldmc_dtype dt, int rank, const int64_t *dims, float *data) {
  ldmc_shape s = {.rank = rank};
  int64_t n = 1;
  for (int i = 0; i < rank; i++) s.dims[i] = dims[i], n *= dims[i];
  ldmc_tensor_alloc(t, name, dt, &s);
  for (int64_t i = 0; i < n; i++) {
    if (dt == LDMC_BF16) data[i] = bf16r(data[i]);
    ldmc_tensor_set_elem(t, i, data[i]);
  }
}

static float *rnd_array(int64_t n) {
  float *a = malloc((size_t)(n ? n : 1) * sizeof *a);
  for (int64_t i = 0; i < n; i++) a[i] = rnd();
  return a;
}

static float *rounded(const float *a, int64_t n) {
  float *r = malloc((size_t)(n ? n : 1) * sizeof *r);
  for (int64_t i = 0; i < n; i++) r[i] = bf16r(a[i]);
  return r;
}

/* ---- oracles: value and sum |a b| per output ---- */
typedef struct gview { /* A(b, m, k) = a[b*sab + m*sam + k*sak]; B(b, k, n) likewise */
  int64_t nb, M, N, K, sab, sam, sak, sbb, sbk, sbn;
} gview;

static void oracle_gemm(const gview *v, const float *a, const float *b, double *y, double *s) {
  for (int64_t q = 0; q < v->nb; q++)
    for (int64_t m = 0; m < v->M; m++)
      for (int64_t n = 0; n < v->N; n++) {
        double acc = 0, abs_ = 0;
        for (int64_t k = 0; k < v->K; k++) {
          double p = (double)a[q * v->sab + m * v->sam + k * v->sak] * (double)b[q * v->sbb + k * v->sbk + n * v->sbn];
          acc += p, abs_ += fabs(p);
        }
        int64_t i = (q * v->M + m) * v->N + n;
        y[i] = acc, s[i] = abs_;
      }
}

typedef struct cview {
  int64_t N, C, H, W, O, kh, kw, stride, pad, groups, OH, OW;
} cview;

static void oracle_conv(const cview *c, const float *x, const float *w, double *y, double *s) {
  int64_t cg = c->C / c->groups, og = c->O / c->groups;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->O; o++)
      for (int64_t oy = 0; oy < c->OH; oy++)
        for (int64_t ox = 0; ox < c->OW; ox++) {
          double acc = 0, abs_ = 0;
          int64_t g = o / og;
          for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t ky = 0; ky < c->kh; ky++)
              for (int64_t kx = 0; kx < c->kw; kx++) {
                int64_t iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                double p = (double)x[((n * c->C + g * cg + ci) * c->H + iy) * c->W + ix] *
                           (double)w[((o * cg + ci) * c->kh + ky) * c->kw + kx];
                acc += p, abs_ += fabs(p);
              }
          int64_t i = ((n * c->O + o) * c->OH + oy) * c->OW + ox;
          y[i] = acc, s[i] = abs_;
        }
}

/* ---- running ---- */
typedef struct runopt {
  bool bf16;    /* ldmc_compile_opts.bf16 */
  bool weights; /* parameters from index 1 on are weights */
  int threads;
} runopt;

static ldmc_executable *compile(const ldmc_graph *g, runopt o) {
  ldmc_compile_opts co = {.threads = o.threads ? o.threads : 2, .bf16 = o.bf16};
  if (o.weights) co.params_are_weights = true, co.n_activation_params = 1;
  ldmc_executable *e = NULL;
  ldmc_status st = ldmc_backend_llvm_cpu.compile(g, &co, &e);
  CHECK_MSG(st == LDMC_OK, "compile %s: %s", g->name, ldmc_last_error());
  return st == LDMC_OK ? e : NULL;
}

static bool run1(ldmc_executable *e, ldmc_tensor *in, int nin, ldmc_tensor *out) {
  ldmc_status st = ldmc_executable_run(e, in, nin, out, 1);
  CHECK_MSG(st == LDMC_OK, "run: %s", ldmc_last_error());
  return st == LDMC_OK;
}

/* expect: 0 f32 results, 1 bf16 products */
static void check_out(const char *what, const ldmc_tensor *out, int64_t n, int64_t K, const double *yr, const double *sr,
                      const double *yu, const double *su, int expect) {
  double worst = 0;
  int64_t bad = 0, first = -1;
  bool bf16_out = out->dtype == LDMC_BF16;
  for (int64_t i = 0; i < n; i++) {
    double got = ldmc_tensor_get(out, i), acc_r = (double)(K + 2) * 0x1p-24 * sr[i] * 1.01;
    double acc_u = (double)(K + 2) * 0x1p-24 * su[i] * 1.01;
    double tol_r = acc_r, tol_u = expect ? 0x1p-8 * 1.01 * su[i] + acc_r : acc_u, d_r = fabs(got - yr[i]);
    double d_u = fabs(got - yu[i]);
    if (bf16_out) tol_r += 0x1p-8 * 1.02 * fabs(yr[i]), tol_u += 0x1p-8 * 1.02 * fabs(yu[i]); /* half an ulp */
    bool ok = expect ? d_r <= tol_r + 1e-30 && d_u <= tol_u + 1e-30 : d_u <= tol_u + 1e-30;
    if (!ok) {
      if (first < 0) first = i;
      bad++;
    }
    double rel = (expect ? d_r / (tol_r + 1e-30) : d_u / (tol_u + 1e-30));
    if (rel > worst) worst = rel;
  }
  CHECK_MSG(bad == 0, "%s: %lld of %lld outside tolerance; first %lld: got %.9g, rounded-operand %.9g, f32 %.9g", what,
            (long long)bad, (long long)n, (long long)first, first >= 0 ? ldmc_tensor_get(out, first) : 0.0,
            first >= 0 ? yr[first] : 0.0, first >= 0 ? yu[first] : 0.0);
  if (getenv("BF16_VERBOSE")) printf("  %-44s worst %.3f of tolerance\n", what, worst);
}

/* max |a - b| over n elements (NaN counts as infinite) */
static double max_diff(const ldmc_tensor *a, const ldmc_tensor *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(ldmc_tensor_get(a, i) - ldmc_tensor_get(b, i));
    if (!(d <= m)) m = isnan(d) ? INFINITY : d;
  }
  return m;
}

/* ---- dot_general cases ---- */
enum { XW, XWT, WX, BATCHED };
static const char *const k_dot_names[] = {"x.W", "x.W^T", "W.x", "batched x.y"};

typedef struct dcase {
  int kind;
  int64_t M, K, N, nb;
  ldmc_dtype dt;
} dcase;

/* builds the graph and the view of A, B in (x, w) data; x is parameter 0 */
static ldmc_graph *dot_graph(const dcase *c, const float *wconst, int64_t *xd, int64_t *wd, int *rank, gview *v) {
  ldmc_builder *b = ldmc_builder_new(k_dot_names[c->kind]);
  ldmc_ints none = {0}, c1 = {1, {1}}, c0 = {1, {0}};
  memset(v, 0, sizeof *v);
  v->nb = 1, v->M = c->M, v->N = c->N, v->K = c->K;
  ldmc_value x, w, y;
  *rank = 2;
  switch (c->kind) {
    case XW: /* x [M,K] . w [K,N] */
      xd[0] = c->M, xd[1] = c->K, wd[0] = c->K, wd[1] = c->N;
      v->sam = c->K, v->sak = 1, v->sbk = c->N, v->sbn = 1;
      break;
    case XWT: /* x [M,K] . w [N,K]^T: the linear layer */
      xd[0] = c->M, xd[1] = c->K, wd[0] = c->N, wd[1] = c->K;
      v->sam = c->K, v->sak = 1, v->sbk = 1, v->sbn = c->K;
      break;
    case WX: /* w [M,K] . x [K,N] */
      xd[0] = c->K, xd[1] = c->N, wd[0] = c->M, wd[1] = c->K;
      v->sam = c->K, v->sak = 1, v->sbk = c->N, v->sbn = 1; /* A = w, B = x: swapped below */
      break;
    default: /* x [nb,M,K] . y [nb,K,N] */
      *rank = 3;
      xd[0] = c->nb, xd[1] = c->M, xd[2] = c->K, wd[0] = c->nb, wd[1] = c->K, wd[2] = c->N;
      v->nb = c->nb, v->sab = c->M * c->K, v->sam = c->K, v->sak = 1, v->sbb = c->K * c->N, v->sbk = c->N, v->sbn = 1;
      break;
  }
  x = ldmc_parameter(b, "x", c->dt, *rank, xd);
  w = wconst ? ldmc_constant(b, c->dt, *rank, wd, wconst) : ldmc_parameter(b, "w", c->dt, *rank, wd);
  if (c->kind == XW) y = ldmc_dot_general(b, x, w, &none, &none, &c1, &c0);
  else if (c->kind == XWT) y = ldmc_dot_general(b, x, w, &none, &none, &c1, &c1);
  else if (c->kind == WX) y = ldmc_dot_general(b, w, x, &none, &none, &c1, &c0);
  else y = ldmc_matmul(b, x, w);
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

/* expect: 1 when bf16 products must be used */
static void run_dot(const dcase *c, runopt o, int expect, bool constant) {
  int64_t xd[3], wd[3];
  int rank;
  gview v;
  /* sizes first, to draw the data */
  int64_t nx = c->kind == WX ? c->K * c->N : c->M * c->K, nw = c->kind == WX ? c->M * c->K : c->K * c->N;
  if (c->kind == BATCHED) nx *= c->nb, nw *= c->nb;
  float *x = rnd_array(nx), *w = rnd_array(nw);
  if (c->dt == LDMC_BF16)
    for (int64_t i = 0; i < nx; i++) x[i] = bf16r(x[i]);
  if (c->dt == LDMC_BF16)
    for (int64_t i = 0; i < nw; i++) w[i] = bf16r(w[i]);
  ldmc_graph *g = dot_graph(c, constant ? w : NULL, xd, wd, &rank, &v);
  if (!g) return;
  ldmc_tensor in[2], out, iout;
  make(&in[0], "x", c->dt, rank, xd, x);
  if (!constant) make(&in[1], "w", c->dt, rank, wd, w);
  int nin = constant ? 1 : 2;
  int64_t n = v.nb * c->M * c->N;
  double *yr = malloc((size_t)n * sizeof(double)), *sr = malloc((size_t)n * sizeof(double));
  double *yu = malloc((size_t)n * sizeof(double)), *su = malloc((size_t)n * sizeof(double));
  float *xr = rounded(x, nx), *wr = rounded(w, nw);
  bool wa = c->kind == WX; /* A is w */
  oracle_gemm(&v, wa ? w : x, wa ? x : w, yu, su);
  oracle_gemm(&v, wa ? wr : xr, wa ? xr : wr, yr, sr);
  char what[160];
  snprintf(what, sizeof what, "%s %lldx%lldx%lld%s %s%s%s", k_dot_names[c->kind], (long long)c->M, (long long)c->K,
           (long long)c->N, c->kind == BATCHED ? " batched" : "", ldmc_dtype_name(c->dt), o.bf16 ? " bf16" : "",
           constant ? " const-w" : o.weights ? " weights" : "");
  ldmc_executable *e = compile(g, o);
  if (e && run1(e, in, nin, &out)) {
    check_out(what, &out, n, c->K, yr, sr, yu, su, expect);
    if (expect && !constant) { /* the interpreter over the rounded inputs */
      ldmc_tensor rin[2];
      make(&rin[0], "x", c->dt, rank, xd, xr);
      if (!constant) make(&rin[1], "w", c->dt, rank, wd, wr);
      ldmc_executable *ie = NULL;
      ldmc_compile_opts io = {0};
      if (ldmc_backend_interp.compile(g, &io, &ie) == LDMC_OK && run1(ie, rin, nin, &iout)) {
        double tol = 0;
        for (int64_t i = 0; i < n; i++) {
          double t = 2.0 * (double)(c->K + 2) * 0x1p-24 * sr[i] * 1.01 + (c->dt == LDMC_BF16 ? 0x1p-7 * fabs(yr[i]) : 0);
          if (t > tol) tol = t;
        }
        CHECK_MSG(max_diff(&out, &iout, n) <= tol, "%s vs interpreter on rounded inputs: %g > %g", what,
                  max_diff(&out, &iout, n), tol);
        ldmc_tensor_release(&iout);
      }
      ldmc_executable_free(ie);
      for (int i = 0; i < nin; i++) ldmc_tensor_release(&rin[i]);
    }
    ldmc_tensor_release(&out);
  }
  ldmc_executable_free(e);
  for (int i = 0; i < nin; i++) ldmc_tensor_release(&in[i]);
  ldmc_graph_free(g);
  free(x), free(w), free(xr), free(wr), free(yr), free(sr), free(yu), free(su);
}

/* ---- convolution cases ---- */
static ldmc_graph *conv_graph(const cview *c, ldmc_dtype dt, const float *wconst) {
  ldmc_builder *b = ldmc_builder_new("conv");
  int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->O, c->C / c->groups, c->kh, c->kw};
  ldmc_value x = ldmc_parameter(b, "x", dt, 4, xd);
  ldmc_value w = wconst ? ldmc_constant(b, dt, 4, wd, wconst) : ldmc_parameter(b, "w", dt, 4, wd);
  ldmc_builder_output(b, ldmc_conv2d(b, x, w, (int)c->stride, (int)c->pad, 1, (int)c->groups), "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

static void run_conv(cview c, ldmc_dtype dt, runopt o, int expect) {
  c.OH = (c.H + 2 * c.pad - c.kh) / c.stride + 1, c.OW = (c.W + 2 * c.pad - c.kw) / c.stride + 1;
  int64_t nx = c.N * c.C * c.H * c.W, nw = c.O * (c.C / c.groups) * c.kh * c.kw, n = c.N * c.O * c.OH * c.OW;
  int64_t K = c.C / c.groups * c.kh * c.kw;
  float *x = rnd_array(nx), *w = rnd_array(nw);
  ldmc_graph *g = conv_graph(&c, dt, NULL);
  if (!g) return;
  int64_t xd[4] = {c.N, c.C, c.H, c.W}, wd[4] = {c.O, c.C / c.groups, c.kh, c.kw};
  ldmc_tensor in[2], out;
  make(&in[0], "x", dt, 4, xd, x); /* bf16 dtype: data rounded in place */
  make(&in[1], "w", dt, 4, wd, w);
  double *yr = malloc((size_t)n * sizeof(double)), *sr = malloc((size_t)n * sizeof(double));
  double *yu = malloc((size_t)n * sizeof(double)), *su = malloc((size_t)n * sizeof(double));
  float *xr = rounded(x, nx), *wr = rounded(w, nw);
  oracle_conv(&c, x, w, yu, su);
  oracle_conv(&c, xr, wr, yr, sr);
  char what[160];
  snprintf(what, sizeof what, "conv %lldx%lld s%lld p%lld g%lld %lld->%lld @%lldx%lld n%lld %s%s%s", (long long)c.kh,
           (long long)c.kw, (long long)c.stride, (long long)c.pad, (long long)c.groups, (long long)c.C, (long long)c.O,
           (long long)c.H, (long long)c.W, (long long)c.N, ldmc_dtype_name(dt), o.bf16 ? " bf16" : "",
           o.weights ? " weights" : "");
  ldmc_executable *e = compile(g, o);
  if (e && run1(e, in, 2, &out)) {
    check_out(what, &out, n, K, yr, sr, yu, su, expect);
    ldmc_tensor_release(&out);
  }
  ldmc_executable_free(e);
  ldmc_tensor_release(&in[0]), ldmc_tensor_release(&in[1]);
  ldmc_graph_free(g);
  free(x), free(w), free(xr), free(wr), free(yr), free(sr), free(yu), free(su);
}

/* ---- weights packed once ---- */
/* g's parameter 0 is x, 1 the weight; oracle(x, w, y, s). Runs: W1, W1 again
 * (bit-identical), W2 (follows), W2 changed in place (not seen: packed once). */
typedef void (*oracle_fn)(const void *ctx, const float *x, const float *w, double *y, double *s);
static void gemm_or(const void *ctx, const float *x, const float *w, double *y, double *s) {
  oracle_gemm(ctx, x, w, y, s);
}
static void gemm_or_wa(const void *ctx, const float *x, const float *w, double *y, double *s) { /* A is w */
  oracle_gemm(ctx, w, x, y, s);
}
static void conv_or(const void *ctx, const float *x, const float *w, double *y, double *s) {
  oracle_conv(ctx, x, w, y, s);
}

static void run_prepack(const char *what, const ldmc_graph *g, const void *ctx, oracle_fn orc, int64_t nx, int64_t nw,
                        int64_t n, int64_t K, bool bf16, bool in_place_hidden) {
  const ldmc_node *px = NULL, *pw = NULL;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) *(px ? &pw : &px) = &g->nodes[i];
  float *x = rnd_array(nx), *w1 = rnd_array(nw), *w2 = rnd_array(nw);
  ldmc_tensor in[2], t_w1, t_w2, o1, o2, o3, o4;
  make(&in[0], "x", LDMC_F32, px->shape.rank, px->shape.dims, x);
  make(&t_w1, "w", LDMC_F32, pw->shape.rank, pw->shape.dims, w1);
  make(&t_w2, "w", LDMC_F32, pw->shape.rank, pw->shape.dims, w2);
  double *yr = malloc((size_t)n * sizeof(double)), *sr = malloc((size_t)n * sizeof(double));
  double *yu = malloc((size_t)n * sizeof(double)), *su = malloc((size_t)n * sizeof(double));
  float *xr = rounded(x, nx), *wr = malloc((size_t)nw * sizeof *wr);
  ldmc_executable *e = compile(g, (runopt){.bf16 = bf16, .weights = true});
  char buf[200];
  int expect = bf16 ? 1 : 0;
  if (e) {
    in[1] = t_w1;
    if (run1(e, in, 2, &o1)) {
      for (int64_t i = 0; i < nw; i++) wr[i] = bf16r(w1[i]);
      orc(ctx, x, w1, yu, su), orc(ctx, xr, wr, yr, sr);
      snprintf(buf, sizeof buf, "%s, first weights", what);
      check_out(buf, &o1, n, K, yr, sr, yu, su, expect);
      if (run1(e, in, 2, &o2)) {
        CHECK_MSG(max_diff(&o1, &o2, n) == 0, "%s: second run with the same weights differs", what);
        ldmc_tensor_release(&o2);
      }
      ldmc_tensor_release(&o1);
    }
    in[1] = t_w2;
    if (run1(e, in, 2, &o3)) {
      for (int64_t i = 0; i < nw; i++) wr[i] = bf16r(w2[i]);
      orc(ctx, x, w2, yu, su), orc(ctx, xr, wr, yr, sr);
      snprintf(buf, sizeof buf, "%s, other weight tensors", what);
      check_out(buf, &o3, n, K, yr, sr, yu, su, expect);
      if (in_place_hidden) {
        for (int64_t i = 0; i < nw; i++) ldmc_tensor_set_elem(&t_w2, i, 2.0 * w2[i] + 0.5);
        if (run1(e, in, 2, &o4)) {
          CHECK_MSG(max_diff(&o3, &o4, n) == 0, "%s: an in-place weight change was seen: the weight was not prepacked",
                    what);
          ldmc_tensor_release(&o4);
        }
      }
      ldmc_tensor_release(&o3);
    }
  }
  ldmc_executable_free(e);
  ldmc_tensor_release(&in[0]), ldmc_tensor_release(&t_w1), ldmc_tensor_release(&t_w2);
  free(x), free(w1), free(w2), free(xr), free(wr), free(yr), free(sr), free(yu), free(su);
}

static void prepack_tests(bool have_bf16) {
  for (int pass = 0; pass < 2; pass++) {
    bool bf16 = pass == 1;
    if (bf16 && !have_bf16) break;
    /* the linear layer x . W^T: B is the weight, packed whole (K odd, N past nc) */
    dcase c = {XWT, 37, 301, 545, 1, LDMC_F32};
    int64_t xd[3], wd[3];
    int rank;
    gview v;
    ldmc_graph *g = dot_graph(&c, NULL, xd, wd, &rank, &v);
    if (g) run_prepack(bf16 ? "prepack x.W^T bf16" : "prepack x.W^T f32", g, &v, gemm_or, c.M * c.K, c.N * c.K,
                       c.M * c.N, c.K, bf16, true);
    ldmc_graph_free(g);
    /* x . W: B weight with unit column stride */
    dcase c2 = {XW, 20, 45, 70, 1, LDMC_F32};
    g = dot_graph(&c2, NULL, xd, wd, &rank, &v);
    if (g) run_prepack(bf16 ? "prepack x.W bf16" : "prepack x.W f32", g, &v, gemm_or, c2.M * c2.K, c2.K * c2.N,
                       c2.M * c2.N, c2.K, bf16, true);
    ldmc_graph_free(g);
    /* convolution: the kernel is A; f32 OIHW is read in place (no pack), bf16 is prepacked */
    cview cv = {2, 5, 11, 13, 17, 3, 3, 1, 1, 1, 0, 0};
    cv.OH = 11, cv.OW = 13;
    g = conv_graph(&cv, LDMC_F32, NULL);
    if (g)
      run_prepack(bf16 ? "prepack conv3x3 bf16" : "prepack conv3x3 f32", g, &cv, conv_or, 2 * 5 * 11 * 13,
                  17 * 5 * 9, 2 * 17 * 11 * 13, 45, bf16, bf16);
    ldmc_graph_free(g);
    /* W^T . x with W a weight: A needs a pack (transposed), done once */
    {
      ldmc_builder *b = ldmc_builder_new("wt.x");
      int64_t xdim[2] = {33, 29}, wdim[2] = {33, 19}; /* y[19,29] = sum_k w[k,m] x[k,n] */
      ldmc_ints none = {0}, c0 = {1, {0}};
      ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, xdim), w = ldmc_parameter(b, "w", LDMC_F32, 2, wdim);
      ldmc_builder_output(b, ldmc_dot_general(b, w, x, &none, &none, &c0, &c0), "y");
      ldmc_status st;
      g = ldmc_builder_finish(b, &st);
      gview vv = {1, 19, 29, 33, 0, 1, 19, 0, 29, 1};
      if (g) run_prepack(bf16 ? "prepack W^T.x bf16" : "prepack W^T.x f32", g, &vv, gemm_or_wa, 33 * 29, 33 * 19, 19 * 29,
                         33, bf16, true);
      ldmc_graph_free(g);
    }
  }
}

int main(void) {
  bool avx512 = ldmc_llvm_cpu_host_isa() == LDMC_LLVM_CPU_ISA_AVX512;
  bool have_bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  if (!have_bf16) printf("SKIP: this host lacks avx512_bf16: the vdpbf16ps cases do not run\n");
  runopt on = {.bf16 = true}, off = {0}, on_w = {.bf16 = true, .weights = true};
  const dcase dots[] = {
      {XW, 1, 1, 1, 1, LDMC_F32},       {XW, 13, 7, 29, 1, LDMC_F32},    {XWT, 29, 33, 47, 1, LDMC_F32},
      {XWT, 37, 257, 61, 1, LDMC_F32},  {WX, 31, 513, 19, 1, LDMC_F32},  {XW, 3, 2, 5, 1, LDMC_F32},
      {XWT, 5, 19, 530, 1, LDMC_F32},   {BATCHED, 7, 23, 11, 3, LDMC_F32}, {XW, 17, 41, 37, 1, LDMC_BF16},
      {XWT, 23, 67, 33, 1, LDMC_BF16},
  };
  int nd = (int)(sizeof dots / sizeof dots[0]);
  if (have_bf16) {
    for (int i = 0; i < nd; i++) {
      run_dot(&dots[i], on, 1, false);
      if (dots[i].kind != BATCHED) run_dot(&dots[i], on_w, 1, false); /* weights: prepacked bf16 panels */
    }
    run_dot(&dots[3], on_w, 1, true); /* constant weights */
    run_dot(&dots[4], (runopt){.bf16 = true, .threads = 1}, 1, false);
    run_dot(&dots[4], (runopt){.bf16 = true, .threads = 3}, 1, false);
    /* the environment switch */
    setenv("LDMC_LLVM_CPU_BF16", "1", 1);
    run_dot(&dots[2], off, 1, false);
    unsetenv("LDMC_LLVM_CPU_BF16");
    const cview convs[] = {
        /* N, C, H, W, O, kh, kw, stride, pad, groups */
        {1, 7, 9, 11, 5, 1, 1, 1, 0, 1, 0, 0},   {2, 3, 13, 10, 17, 3, 3, 1, 1, 1, 0, 0},
        {1, 5, 15, 17, 8, 3, 3, 2, 1, 1, 0, 0},  {1, 4, 7, 9, 3, 3, 3, 1, 0, 1, 0, 0},
        {1, 6, 8, 9, 4, 3, 3, 1, 1, 2, 0, 0},    {1, 29, 33, 35, 31, 3, 3, 1, 1, 1, 0, 0},
        {1, 30, 20, 19, 13, 3, 3, 2, 1, 1, 0, 0}, {1, 3, 5, 5, 2, 1, 1, 2, 0, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
      run_conv(convs[i], LDMC_F32, on, 1);
      run_conv(convs[i], LDMC_F32, on_w, 1);
    }
    run_conv(convs[1], LDMC_BF16, on, 1);
  }
  /* flag off: the f32 GEMM, exactly as before */
  for (int i = 0; i < nd; i++)
    if (dots[i].dt == LDMC_F32) run_dot(&dots[i], off, 0, false);
  run_conv((cview){2, 3, 13, 10, 17, 3, 3, 1, 1, 1, 0, 0}, LDMC_F32, off, 0);
  /* flag on at a level without avx512_bf16: f32 products */
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AVX2);
  run_dot(&dots[3], on, 0, false);
  run_dot(&dots[3], on_w, 0, false);
  run_conv((cview){1, 5, 15, 17, 8, 3, 3, 2, 1, 1, 0, 0}, LDMC_F32, on_w, 0);
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  /* weights packed once (f32 always; bf16 where the host has it) */
  prepack_tests(have_bf16);
  return test_summary("llvm_bf16");
}
