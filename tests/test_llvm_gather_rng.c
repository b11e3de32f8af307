/* The llvm-cpu ops that used to run on the interpreter, now generated code:
 * rng_uniform / rng_normal (bit-identical to the interpreter's Philox for
 * every element, f32 / bf16 / f16, any key, 1 and 3 threads), gather (clamped
 * indices, i32 / i64 indices, every dtype: bytes equal), scatter_add
 * (duplicate and out-of-range indices; floats bit-identical to the
 * interpreter's f64 accumulation, integers wrapping), integer dot_general,
 * upsample_nearest of rank 6, attention without keys (NaN), lhs-dilated
 * convolutions (the transposed-conv form: odd and prime shapes, dilation 2
 * and 3, strides, padding, groups, rhs dilation, f32 and bf16), a
 * convolution with a channels-last output, all at every ISA level the host
 * runs; and concatenate's compile time: 2000 operands within a bounded
 * multiple of 200 operands' time. Oracle: the interpreter. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test_util.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t rnext(void) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double runif(double lo, double hi) { return lo + (hi - lo) * (double)(rnext() >> 11) / 9007199254740992.0; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* inputs: "idxN" parameters get indices in [-3, N + 2] (out of range too),
 * "key" a 64-bit key, integers small values, floats uniform in [-2, 2] */
static ldmc_tensor *make_inputs(const ldmc_graph *g, int *n, int64_t key) {
  int np = ldmc_graph_num_params(g), k = 0;
  ldmc_tensor *t = calloc((size_t)(np ? np : 1), sizeof *t);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const char *nm = p->attrs.name;
    ldmc_tensor_alloc(&t[k], nm, p->dtype, &p->shape);
    int64_t cnt = 1;
    for (int d = 0; d < p->shape.rank; d++) cnt *= p->shape.dims[d];
    for (int64_t e = 0; e < cnt; e++) {
      if (strcmp(nm, "key") == 0) {
        memcpy(t[k].data, &key, 8);
        continue;
      }
      double v;
      if (strncmp(nm, "idx", 3) == 0) v = (double)((int64_t)(rnext() % (uint64_t)(atoll(nm + 3) + 6)) - 3);
      else if (p->dtype == LDMC_PRED) v = (double)(rnext() & 1);
      else if (!ldmc_dtype_is_float(p->dtype)) v = (double)((int64_t)(rnext() % 2001) - 1000);
      else v = runif(-2.0, 2.0);
      ldmc_tensor_set_elem(&t[k], e, v);
    }
    k++;
  }
  *n = np;
  return t;
}

static void free_tensors(ldmc_tensor *t, int n) {
  for (int i = 0; i < n; i++) ldmc_tensor_release(&t[i]);
  free(t);
}

/* runs g on the interpreter (want) and on llvm-cpu at isa with threads (got) */
static bool run_both(const ldmc_graph *g, ldmc_tensor *in, int nin, ldmc_llvm_cpu_isa isa, int threads,
                     ldmc_tensor *want, ldmc_tensor *got, const char *name) {
  const ldmc_backend_i *ip = ldmc_backend_find("interp"), *lc = ldmc_backend_find("llvm-cpu");
  ldmc_compile_opts o = {.threads = 1};
  ldmc_executable *e = NULL;
  ldmc_status st = ip->compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, nin, want, 1);
  ldmc_executable_free(e);
  CHECK_MSG(st == LDMC_OK, "%s: interp: %s", name, ldmc_last_error());
  if (st != LDMC_OK) return false;
  ldmc_llvm_cpu_set_isa(isa);
  o.threads = threads;
  e = NULL;
  st = lc->compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, nin, got, 1);
  ldmc_executable_free(e);
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  CHECK_MSG(st == LDMC_OK, "%s: llvm-cpu: %s", name, ldmc_last_error());
  if (st != LDMC_OK) ldmc_tensor_release(want);
  return st == LDMC_OK;
}

static const char *isa_s(int isa) { return ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa); }

/* byte equality (NaN payloads included), reporting the first difference */
static void check_exact(const ldmc_graph *g, int64_t key, const char *name) {
  int nin;
  ldmc_tensor *in = make_inputs(g, &nin, key);
  for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)ldmc_llvm_cpu_host_isa(); isa++)
    for (int th = 1; th <= 3; th += 2) {
      ldmc_tensor want = {0}, got = {0};
      if (!run_both(g, in, nin, (ldmc_llvm_cpu_isa)isa, th, &want, &got, name)) continue;
      bool same = want.nbytes == got.nbytes && memcmp(want.data, got.data, want.nbytes) == 0;
      int64_t at = -1, n = (int64_t)(want.nbytes / ldmc_dtype_size(want.dtype));
      for (int64_t i = 0; !same && i < n && at < 0; i++)
        if (memcmp((char *)want.data + i * ldmc_dtype_size(want.dtype), (char *)got.data + i * ldmc_dtype_size(want.dtype),
                   ldmc_dtype_size(want.dtype)))
          at = i;
      CHECK_MSG(same, "%s [%s, %d threads]: element %" PRId64 " = %.9g, interpreter %.9g", name, isa_s(isa), th, at,
                at >= 0 ? ldmc_tensor_get(&got, at) : 0.0, at >= 0 ? ldmc_tensor_get(&want, at) : 0.0);
      ldmc_tensor_release(&want);
      ldmc_tensor_release(&got);
    }
  free_tensors(in, nin);
}

/* |got - want| <= rel * max|want| */
static void check_close(const ldmc_graph *g, double rel, const char *name) {
  int nin;
  ldmc_tensor *in = make_inputs(g, &nin, 1);
  for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)ldmc_llvm_cpu_host_isa(); isa++) {
    ldmc_tensor want = {0}, got = {0};
    if (!run_both(g, in, nin, (ldmc_llvm_cpu_isa)isa, 2, &want, &got, name)) continue;
    int64_t n = (int64_t)(want.nbytes / ldmc_dtype_size(want.dtype)), at = -1;
    double amax = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) amax = fmax(amax, fabs(ldmc_tensor_get(&want, i)));
    for (int64_t i = 0; i < n; i++) {
      double e = fabs(ldmc_tensor_get(&got, i) - ldmc_tensor_get(&want, i));
      if (!(e <= rel * amax + 1e-30)) e = INFINITY;
      if (e > bad) bad = e, at = i;
    }
    CHECK_MSG(bad <= rel * amax + 1e-30, "%s [%s]: element %" PRId64 " = %.9g, interpreter %.9g (max %.3g)", name,
              isa_s(isa), at, at >= 0 ? ldmc_tensor_get(&got, at) : 0.0, at >= 0 ? ldmc_tensor_get(&want, at) : 0.0, amax);
    ldmc_tensor_release(&want);
    ldmc_tensor_release(&got);
  }
  free_tensors(in, nin);
}

static ldmc_graph *finish(ldmc_builder *b, ldmc_value out) {
  ldmc_builder_output(b, out, "out");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "building: %s", ldmc_last_error());
  return g;
}

static void test_rng(void) {
  static const int64_t shapes[][2] = {{1, 1}, {7, 13}, {3, 1500}, {1, 4097}};
  static const int64_t keys[] = {0, 42, (int64_t)0x123456789abcdef0ull, -7};
  static const ldmc_dtype dts[] = {LDMC_F32, LDMC_BF16, LDMC_F16};
  for (int op = LDMC_OP_RNG_UNIFORM; op <= LDMC_OP_RNG_NORMAL; op++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        ldmc_builder *b = ldmc_builder_new("rng");
        ldmc_value key = ldmc_parameter(b, "key", LDMC_I64, 0, NULL);
        ldmc_shape sh = ldmc_shape_make(2, shapes[s]);
        int32_t ops[1] = {key};
        ldmc_value r = ldmc_graph_add_checked(ldmc_builder_graph(b), (ldmc_op)op, dts[d], &sh, 1, ops, NULL, NULL);
        ldmc_graph *g = finish(b, r);
        if (!g) continue;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
          char name[128];
          snprintf(name, sizeof name, "%s %s[%" PRId64 ",%" PRId64 "] key %" PRId64, ldmc_op_name((ldmc_op)op),
                   ldmc_dtype_name(dts[d]), shapes[s][0], shapes[s][1], keys[k]);
          check_exact(g, keys[k], name);
        }
        ldmc_graph_free(g);
      }
}

static void test_gather_scatter(void) {
  static const ldmc_dtype dts[] = {LDMC_F32, LDMC_BF16, LDMC_F16, LDMC_I32, LDMC_I64, LDMC_PRED};
  static const int64_t shapes[][3] = {{5, 7, 3}, {1, 13, 1}, {3, 50, 700}, {2, 1, 17}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (size_t di = 0; di < sizeof dts / sizeof dts[0]; di++)
      for (int ax = 0; ax < 3; ax++)
        for (int idt = 0; idt < 2; idt++) {
          if (si == 2 && (ax != 1 || idt)) continue; /* the big one: scattered axis 1 only */
          ldmc_dtype dt = dts[di], it = idt ? LDMC_I64 : LDMC_I32;
          const int64_t *d = shapes[si];
          int64_t idims[2] = {3, si == 2 ? 40 : 4};
          char nm[32], name[160];
          snprintf(nm, sizeof nm, "idx%" PRId64, d[ax]);
          ldmc_builder *b = ldmc_builder_new("gather");
          ldmc_value x = ldmc_parameter(b, "x", dt, 3, d), ix = ldmc_parameter(b, nm, it, 2, idims);
          ldmc_graph *g = finish(b, ldmc_gather(b, x, ix, ax));
          snprintf(name, sizeof name, "gather %s[%" PRId64 ",%" PRId64 ",%" PRId64 "] axis %d %s indices", ldmc_dtype_name(dt),
                   d[0], d[1], d[2], ax, ldmc_dtype_name(it));
          if (g) check_exact(g, 0, name);
          ldmc_graph_free(g);
          if (dt == LDMC_PRED) continue;
          b = ldmc_builder_new("scatter");
          x = ldmc_parameter(b, "x", dt, 3, d);
          ix = ldmc_parameter(b, nm, it, 2, idims);
          int64_t ud[4], r = 0;
          for (int i = 0; i < 3; i++) {
            if (i == ax) ud[r++] = idims[0], ud[r++] = idims[1];
            else ud[r++] = d[i];
          }
          ldmc_value u = ldmc_parameter(b, "u", dt, 4, ud);
          ldmc_attrs at = {0};
          at.axis = ax;
          int32_t ops[3] = {x, ix, u};
          ldmc_value s = ldmc_graph_add_checked(ldmc_builder_graph(b), LDMC_OP_SCATTER_ADD, dt, NULL, 3, ops, &at, NULL);
          g = finish(b, s);
          snprintf(name, sizeof name, "scatter_add %s[%" PRId64 ",%" PRId64 ",%" PRId64 "] axis %d %s indices (duplicates)",
                   ldmc_dtype_name(dt), d[0], d[1], d[2], ax, ldmc_dtype_name(it));
          if (g) check_exact(g, 0, name);
          ldmc_graph_free(g);
        }
}

static void test_misc(void) {
  for (int t = 0; t < 2; t++) { /* integer matmul and a batched, transposed one */
    ldmc_dtype dt = t ? LDMC_I64 : LDMC_I32;
    int64_t a[3] = {3, 17, 29}, bd[3] = {3, 31, 29};
    ldmc_builder *b = ldmc_builder_new("idot");
    ldmc_value x = ldmc_parameter(b, "x", dt, 3, a), y = ldmc_parameter(b, "y", dt, 3, bd);
    ldmc_ints lb = {1, {0}}, rb = {1, {0}}, lc = {1, {2}}, rc = {1, {2}};
    ldmc_graph *g = finish(b, ldmc_dot_general(b, x, y, &lb, &rb, &lc, &rc));
    char name[64];
    snprintf(name, sizeof name, "dot_general %s batch, rhs^T", ldmc_dtype_name(dt));
    if (g) check_exact(g, 0, name);
    ldmc_graph_free(g);
    int64_t m1[2] = {13, 7}, m2[2] = {7, 5};
    b = ldmc_builder_new("imm");
    x = ldmc_parameter(b, "x", dt, 2, m1), y = ldmc_parameter(b, "y", dt, 2, m2);
    g = finish(b, ldmc_matmul(b, x, y));
    snprintf(name, sizeof name, "matmul %s", ldmc_dtype_name(dt));
    if (g) check_exact(g, 0, name);
    ldmc_graph_free(g);
  }
  { /* upsample of rank 6: one copy per spatial dim */
    int64_t d[6] = {1, 2, 3, 2, 1, 5};
    ldmc_builder *b = ldmc_builder_new("up6");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 6, d);
    ldmc_graph *g = finish(b, ldmc_upsample_nearest(b, x, 2));
    if (g) check_exact(g, 0, "upsample_nearest rank 6");
    ldmc_graph_free(g);
  }
  { /* attention with no keys: 0 / 0 */
    int64_t qd[3] = {2, 5, 4}, kd[3] = {2, 0, 4}, vd[3] = {2, 0, 3};
    ldmc_builder *b = ldmc_builder_new("att0");
    ldmc_value q = ldmc_parameter(b, "q", LDMC_F32, 3, qd), k = ldmc_parameter(b, "k", LDMC_F32, 3, kd);
    ldmc_value v = ldmc_parameter(b, "v", LDMC_F32, 3, vd);
    ldmc_graph *g = finish(b, ldmc_attention(b, q, k, v, 0.5));
    if (g) {
      int nin;
      ldmc_tensor *in = make_inputs(g, &nin, 0);
      ldmc_tensor want = {0}, got = {0};
      if (run_both(g, in, nin, LDMC_LLVM_CPU_ISA_AUTO, 1, &want, &got, "attention without keys")) {
        bool ok = true;
        for (int64_t i = 0; i < 2 * 5 * 3; i++) ok = ok && isnan(ldmc_tensor_get(&got, i)) && isnan(ldmc_tensor_get(&want, i));
        CHECK_MSG(ok, "attention without keys: NaN expected");
        ldmc_tensor_release(&want);
        ldmc_tensor_release(&got);
      }
      free_tensors(in, nin);
    }
    ldmc_graph_free(g);
  }
}

typedef struct dcase {
  int64_t N, C, H, W, O, kh, kw, ly, lx, sh, sw, py0, py1, px0, px1, dh, dw, G;
} dcase;

static ldmc_graph *conv_graph(const dcase *c, ldmc_dtype dt, bool nhwc_out) {
  ldmc_builder *b = ldmc_builder_new("dconv");
  int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->O, c->C / c->G, c->kh, c->kw};
  ldmc_value x = ldmc_parameter(b, "x", dt, 4, xd), w = ldmc_parameter(b, "w", dt, 4, wd);
  ldmc_attrs a = {0};
  a.window_stride = (ldmc_ints){2, {c->sh, c->sw}};
  a.pad_low = (ldmc_ints){2, {c->py0, c->px0}};
  a.pad_high = (ldmc_ints){2, {c->py1, c->px1}};
  a.lhs_dilation = (ldmc_ints){2, {c->ly, c->lx}};
  a.rhs_dilation = (ldmc_ints){2, {c->dh, c->dw}};
  a.groups = c->G;
  a.input_dims = a.kernel_dims = (ldmc_ints){4, {0, 1, 2, 3}};
  a.output_dims = nhwc_out ? (ldmc_ints){4, {0, 3, 1, 2}} : (ldmc_ints){4, {0, 1, 2, 3}};
  int32_t ops[2] = {x, w};
  int32_t y = ldmc_graph_add_checked(ldmc_builder_graph(b), LDMC_OP_CONVOLUTION, dt, NULL, 2, ops, &a, NULL);
  CHECK_MSG(y >= 0, "conv node: %s", ldmc_last_error());
  if (y < 0) {
    ldmc_builder_free(b);
    return NULL;
  }
  return finish(b, y);
}

static void test_dilated_conv(void) {
  static const dcase cs[] = {
      /* the input gradient of a stride-2 3x3 pad-1 conv: dilation 2, pad k-1-p = 1, 1 (+1 output padding) */
      {1, 5, 7, 9, 11, 3, 3, 2, 2, 1, 1, 1, 2, 1, 2, 1, 1, 1},
      {2, 6, 5, 13, 4, 3, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, 2}, /* stride-3 gradient, groups 2 */
      {1, 3, 11, 7, 5, 3, 2, 2, 1, 2, 1, 0, 2, 1, 0, 1, 2, 1}, /* asymmetric, window stride 2, rhs dilation 2 */
      {1, 7, 13, 17, 19, 4, 4, 2, 2, 1, 1, 2, 2, 2, 2, 1, 1, 1}, /* even kernel (ConvTranspose k4 s2 p1) */
      {1, 4, 6, 5, 6, 5, 3, 3, 2, 2, 3, 3, 1, 0, 1, 1, 1, 1},  /* stride 2 / 3 with dilation 3 / 2 */
      {1, 3, 4, 4, 2, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1, 1},  /* 1x1: every other output pixel is zero */
      {1, 2, 9, 9, 3, 3, 3, 2, 2, 1, 1, -1, 0, 0, -2, 1, 1, 1}, /* negative padding (cropping) */
      {1, 64, 16, 16, 32, 3, 3, 2, 2, 1, 1, 1, 2, 1, 2, 1, 1, 1}, /* several K blocks, many tiles */
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
    for (int m = 0; m < 2; m++) {
      ldmc_dtype dt = m ? LDMC_BF16 : LDMC_F32;
      ldmc_graph *g = conv_graph(&cs[i], dt, false);
      char name[160];
      snprintf(name, sizeof name, "lhs-dilated conv %zu %s (dil %" PRId64 "x%" PRId64 ", k %" PRId64 "x%" PRId64 ")", i,
               ldmc_dtype_name(dt), cs[i].ly, cs[i].lx, cs[i].kh, cs[i].kw);
      if (g) check_close(g, m ? 1.0 / 64 : 2e-6, name);
      ldmc_graph_free(g);
    }
  { /* a channels-last output (not feature-major): computed densely, then copied */
    dcase c = {2, 4, 7, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    ldmc_graph *g = conv_graph(&c, LDMC_F32, true);
    if (g) check_close(g, 2e-6, "conv with an NHWC output");
    ldmc_graph_free(g);
    dcase c2 = {1, 3, 5, 6, 4, 3, 3, 2, 2, 1, 1, 1, 2, 1, 2, 1, 1, 1};
    g = conv_graph(&c2, LDMC_F32, true);
    if (g) check_close(g, 2e-6, "lhs-dilated conv with an NHWC output");
    ldmc_graph_free(g);
  }
}

/* a concatenate of n [2, 3] operands along axis 0: seconds to compile */
static double concat_time(int n) {
  ldmc_builder *b = ldmc_builder_new("cat");
  ldmc_value *xs = malloc((size_t)n * sizeof *xs);
  int64_t d[2] = {2, 3};
  for (int i = 0; i < n; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "x%d", i);
    xs[i] = ldmc_parameter(b, nm, LDMC_F32, 2, d);
  }
  ldmc_graph *g = finish(b, ldmc_concatenate(b, n, xs, 0));
  free(xs);
  if (!g) return 0;
  const ldmc_backend_i *lc = ldmc_backend_find("llvm-cpu");
  ldmc_compile_opts o = {.threads = 1};
  ldmc_executable *e = NULL;
  double t0 = now_s();
  ldmc_status st = lc->compile(g, &o, &e);
  double t = now_s() - t0;
  CHECK_MSG(st == LDMC_OK, "concatenate of %d: %s", n, ldmc_last_error());
  ldmc_executable_free(e);
  if (st == LDMC_OK) { /* and it computes what the interpreter does */
    int nin;
    ldmc_tensor *in = make_inputs(g, &nin, 0);
    ldmc_tensor want = {0}, got = {0};
    if (run_both(g, in, nin, LDMC_LLVM_CPU_ISA_AUTO, 2, &want, &got, "concatenate")) {
      CHECK_MSG(want.nbytes == got.nbytes && memcmp(want.data, got.data, want.nbytes) == 0,
                "concatenate of %d operands differs from the interpreter", n);
      ldmc_tensor_release(&want);
      ldmc_tensor_release(&got);
    }
    free_tensors(in, nin);
  }
  ldmc_graph_free(g);
  return t;
}

static void test_concat_time(void) {
  concat_time(20); /* warm the kernel cache and the pass pipeline */
  double t200 = concat_time(200), t2000 = concat_time(2000);
  printf("concatenate compile: 200 operands %.3f s, 2000 operands %.3f s (ratio %.1f)\n", t200, t2000,
         t200 > 0 ? t2000 / t200 : 0.0);
  /* linear is 10x; quadratic would be 100x. The slack covers a loaded machine. */
  const char *big = getenv("LDMC_TEST_CONCAT_N"); /* e.g. 10000, for measurements */
  if (big) printf("concatenate compile: %d operands %.3f s\n", atoi(big), concat_time(atoi(big)));
  CHECK_MSG(t2000 <= 25.0 * t200 + 0.25, "concatenate compile time grows faster than linearly: %.3f s vs %.3f s", t2000,
            t200);
}


/* A gather whose indices reverse an axis (a convolution's flipped kernel in
 * an input gradient) is a view: fused into its consumer's loop, no gather
 * kernel, exact on every axis, through a transpose, and as a product's
 * operand (copied first: products read forward strides only). */
static void test_reverse(void) {
  const int64_t dims[3] = {3, 5, 7};
  for (int ax = 0; ax < 3; ax++) {
    ldmc_builder *b = ldmc_builder_new("reverse");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, dims);
    int32_t idx[7];
    for (int i = 0; i < dims[ax]; i++) idx[i] = (int32_t)(dims[ax] - 1 - i);
    ldmc_value ix = ldmc_constant(b, LDMC_I32, 1, &dims[ax], idx);
    ldmc_value r = ldmc_gather(b, x, ix, ax);
    ldmc_value y = ldmc_unary(b, LDMC_OP_NEG, ldmc_transpose(b, r, (int64_t[]){2, 0, 1}));
    ldmc_graph *g = finish(b, y);
    if (!g) continue;
    char name[64];
    snprintf(name, sizeof name, "reverse axis %d, transposed, negated", ax);
    check_exact(g, 0, name);
    ldmc_plan *plan = NULL;
    ldmc_pipeline_opts po = {0};
    ldmc_graph *c = ldmc_graph_clone(g);
    CHECK(c && ldmc_compile_plan(c, ldmc_target_find("llvm-cpu"), &po, &plan) == LDMC_OK);
    int kernels = 0, gather_kernels = 0;
    for (int32_t k = 0; plan && k < plan->n_kernels; k++) {
      kernels++;
      gather_kernels += plan->kernels[k].kind == LDMC_KERNEL_COPY;
    }
    CHECK_MSG(kernels == 1 && gather_kernels == 0, "%s: %d kernels (%d copies), expected the reverse fused into one loop",
              name, kernels, gather_kernels);
    ldmc_plan_free(plan);
    ldmc_graph_free(c);
    ldmc_graph_free(g);
  }
  /* reversed rows of a matrix product's operand */
  ldmc_builder *b = ldmc_builder_new("reverse_dot");
  ldmc_value a = ldmc_parameter(b, "a", LDMC_F32, 2, (int64_t[]){9, 13});
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 2, (int64_t[]){13, 11});
  int32_t idx[13];
  for (int i = 0; i < 13; i++) idx[i] = 12 - i;
  ldmc_value ra = ldmc_gather(b, a, ldmc_constant(b, LDMC_I32, 1, (int64_t[]){13}, idx), 1);
  ldmc_graph *g = finish(b, ldmc_matmul(b, ra, w));
  if (g) check_close(g, 1e-6, "reversed operand of a product");
  ldmc_graph_free(g);
}

int main(void) {
  if (getenv("LDMC_TEST_CONCAT_N")) {
    test_concat_time();
    return test_summary("llvm_gather_rng");
  }
  test_rng();
  test_gather_scatter();
  test_reverse();
  test_misc();
  test_dilated_conv();
  test_concat_time();
  return test_summary("llvm_gather_rng");
}
