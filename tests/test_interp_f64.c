/* f64 on the reference interpreter: computed in double with no rounding to a
 * narrower type anywhere, so that gradients can be checked by finite
 * differences. Oracles: the C library's double functions and naive double
 * loops written here; sums whose small terms f32 would lose (1 + 1e-10
 * terms); integer -> f64 conversion rounded to nearest even (not the odd
 * pre-rounding the half types use); a central-difference derivative against
 * the analytic one. Also: the builder's f64 constants, constant folding and
 * the llvm-cpu backend refusing f64 by node and name. */
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "interp_test_util.h"
#include "passes/passes.h"

#define F64 LDMC_F64

/* |got - want| <= rel * |want| + abs, each element; got from an f64 tensor. */
static void expect_near(const char *label, const ldmc_tensor *t, const double *want, int64_t n, double rel, double abs) {
  CHECK_MSG(t->dtype == F64, "%s: dtype %s", label, ldmc_dtype_name(t->dtype));
  th_expect(label, t, want, n, rel, abs);
}

/* One op on f64 operands. */
static bool eval(ldmc_op op, const ldmc_attrs *at, int n, const ldmc_tensor *ins, ldmc_tensor *out) {
  return th_eval(op, at, F64, NULL, n, ins, out);
}

static void test_elementwise(void) {
  static const struct {
    ldmc_op op;
    double x, want;
  } un[] = {
      {LDMC_OP_EXP, 0.3, 0}, {LDMC_OP_LOG, 0.7, 0}, {LDMC_OP_SQRT, 2, 0}, {LDMC_OP_RSQRT, 3, 0},
      {LDMC_OP_TANH, 0.4, 0}, {LDMC_OP_LOGISTIC, 0.2, 0}, {LDMC_OP_SIN, 1.1, 0}, {LDMC_OP_COS, 1.1, 0},
      {LDMC_OP_ERF, 0.6, 0}, {LDMC_OP_SILU, 0.7, 0}, {LDMC_OP_GELU, -0.9, 0},
  };
  for (int i = 0; i < NELEM(un); i++) {
    double x = un[i].x, w;
    switch (un[i].op) {
      case LDMC_OP_EXP: w = exp(x); break;
      case LDMC_OP_LOG: w = log(x); break;
      case LDMC_OP_SQRT: w = sqrt(x); break;
      case LDMC_OP_RSQRT: w = 1 / sqrt(x); break;
      case LDMC_OP_TANH: w = tanh(x); break;
      case LDMC_OP_LOGISTIC: w = 1 / (1 + exp(-x)); break;
      case LDMC_OP_SIN: w = sin(x); break;
      case LDMC_OP_COS: w = cos(x); break;
      case LDMC_OP_ERF: w = erf(x); break;
      case LDMC_OP_SILU: w = x / (1 + exp(-x)); break;
      default: w = 0.5 * x * (1 + erf(x / sqrt(2.0))); break;
    }
    ldmc_tensor in = th_tensor(F64, SHAPE(1), &x), out;
    if (eval(un[i].op, NULL, 1, &in, &out)) {
      expect_near(ldmc_op_name(un[i].op), &out, &w, 1, 1e-15, 0);
      double got = ldmc_tensor_get(&out, 0);
      CHECK_MSG((double)(float)got != got, "%s: %.17g is an f32 value", ldmc_op_name(un[i].op), got);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&in);
  }
  /* binary: 1/3, 0.1 + 0.2 (0.30000000000000004 in double), 1.1^2.5 */
  ldmc_tensor in[2] = {th_tensor(F64, SHAPE(3), VALS(1, 0.1, 1.1)), th_tensor(F64, SHAPE(3), VALS(3, 0.2, 2.5))}, out;
  if (eval(LDMC_OP_DIV, NULL, 2, in, &out)) {
    CHECK(ldmc_tensor_get(&out, 0) == 1.0 / 3);
    ldmc_tensor_release(&out);
  }
  if (eval(LDMC_OP_ADD, NULL, 2, in, &out)) {
    CHECK(ldmc_tensor_get(&out, 1) == 0.30000000000000004 && ldmc_tensor_get(&out, 1) != 0.3);
    ldmc_tensor_release(&out);
  }
  if (eval(LDMC_OP_POW, NULL, 2, in, &out)) {
    expect_near("pow", &out, VALS(1, pow(0.1, 0.2), pow(1.1, 2.5)), 3, 1e-15, 0);
    ldmc_tensor_release(&out);
  }
  th_release(2, in);
}

static void test_convert(void) {
  /* i64 -> f64 rounds to nearest even: 2^53 + 1 is a tie (even: 2^53), 2^53 + 3 too (even: 2^53 + 4);
     an odd pre-rounding would give 2^53 + 2 for the first */
  int64_t iv[4] = {(INT64_C(1) << 53) + 1, (INT64_C(1) << 53) + 3, -(INT64_C(1) << 53) - 1, INT64_MAX};
  ldmc_tensor i = th_tensor(LDMC_I64, SHAPE(4), NULL), out;
  memcpy(i.data, iv, sizeof iv);
  if (th_eval(LDMC_OP_CONVERT, NULL, F64, NULL, 1, &i, &out)) {
    CHECK(ldmc_tensor_get(&out, 0) == 0x1p53 && ldmc_tensor_get(&out, 1) == 0x1p53 + 4 &&
          ldmc_tensor_get(&out, 2) == -0x1p53 && ldmc_tensor_get(&out, 3) == 0x1p63);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&i);
  /* f64 -> narrower: one rounding from the double. 1 + 2^-8 + 2^-30 is above the bf16 tie, so 1 + 2^-7;
     rounded to f32 first it would be the tie 1 + 2^-8 and then 1 (even). */
  ldmc_tensor d = th_tensor(F64, SHAPE(3), VALS(1 + 0x1p-8 + 0x1p-30, 0.1, -3.99));
  if (th_eval(LDMC_OP_CONVERT, NULL, LDMC_BF16, NULL, 1, &d, &out)) {
    CHECK(ldmc_tensor_get(&out, 0) == 1 + 0x1p-7);
    ldmc_tensor_release(&out);
  }
  if (th_eval(LDMC_OP_CONVERT, NULL, LDMC_F32, NULL, 1, &d, &out)) {
    CHECK(ldmc_tensor_get(&out, 1) == (double)0.1f);
    ldmc_tensor_release(&out);
  }
  if (th_eval(LDMC_OP_CONVERT, NULL, LDMC_I32, NULL, 1, &d, &out)) {
    CHECK(ldmc_tensor_get(&out, 2) == -3);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&d);
  /* f32 -> f64 is exact */
  ldmc_tensor f = th_tensor(LDMC_F32, SHAPE(1), VALS(0.1));
  if (th_eval(LDMC_OP_CONVERT, NULL, F64, NULL, 1, &f, &out)) {
    CHECK(ldmc_tensor_get(&out, 0) == (double)0.1f);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&f);
}

/* 1 followed by K - 1 terms of 1e-10: f32 keeps 1 (1e-10 is under half its ulp), double 1 + (K-1)e-10. */
enum { K = 1001 };
static double small_sum(void) {
  double s = 1;
  for (int k = 1; k < K; k++) s += 1e-10;
  return s;
}

static void test_reduce_dot(void) {
  ldmc_tensor x = th_tensor(F64, SHAPE(2, K), NULL), out;
  for (int k = 0; k < K; k++) {
    ldmc_tensor_set_elem(&x, k, k ? 1e-10 : 1);
    ldmc_tensor_set_elem(&x, K + k, k ? -1e-10 : -1);
  }
  double s = small_sum();
  ldmc_attrs at = {0};
  at.reduce = LDMC_REDUCE_SUM;
  at.dims = INTS(1);
  if (eval(LDMC_OP_REDUCE, &at, 1, &x, &out)) {
    expect_near("reduce sum", &out, VALS(s, -s), 2, 1e-15, 0);
    CHECK_NEAR(ldmc_tensor_get(&out, 0) - 1, 1e-7, 1e-12); /* 1000 roundings of ulp(1) / 2 at most */
    ldmc_tensor_release(&out);
  }
  /* dot_general [2,K] x [K,3] with ones and twos: each output is (1 or 2) * the small sum */
  ldmc_tensor y[2] = {x, th_tensor(F64, SHAPE(K, 3), NULL)};
  for (int k = 0; k < K; k++)
    for (int j = 0; j < 3; j++) ldmc_tensor_set_elem(&y[1], k * 3 + j, j == 1 ? 2 : 1);
  at = (ldmc_attrs){0};
  at.lhs_contract = INTS(1);
  at.rhs_contract = INTS(0);
  if (eval(LDMC_OP_DOT_GENERAL, &at, 2, y, &out)) {
    expect_near("dot_general", &out, VALS(s, 2 * s, s, -s, -2 * s, -s), 6, 1e-15, 0);
    CHECK_NEAR(ldmc_tensor_get(&out, 1) - 2, 2e-7, 1e-12);
    ldmc_tensor_release(&out);
  }
  th_release(2, y);
}

/* 2-D convolution NCHW, pad 1, stride 1, against a naive double loop; the input is
 * 1 + tiny offsets that f32 would round away. */
static void test_convolution(void) {
  enum { N = 1, C = 2, O = 3, H = 5, W = 4, R = 3 };
  uint64_t seed = 7;
  ldmc_tensor in[2] = {th_tensor(F64, SHAPE(N, C, H, W), NULL), th_random(F64, SHAPE(O, C, R, R), &seed, -1, 1)}, out;
  for (int i = 0; i < N * C * H * W; i++) ldmc_tensor_set_elem(&in[0], i, 1 + 1e-9 * i);
  double want[N * O * H * W];
  for (int o = 0; o < O; o++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        double acc = 0;
        for (int c = 0; c < C; c++)
          for (int a = 0; a < R; a++)
            for (int b = 0; b < R; b++) {
              int iy = y + a - 1, ix = x + b - 1;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              acc += ldmc_tensor_get(&in[0], (c * H + iy) * W + ix) * ldmc_tensor_get(&in[1], ((o * C + c) * R + a) * R + b);
            }
        want[(o * H + y) * W + x] = acc;
      }
  ldmc_attrs at = {0};
  at.input_dims = at.kernel_dims = at.output_dims = INTS(0, 1, 2, 3);
  at.window_stride = at.lhs_dilation = at.rhs_dilation = INTS(1, 1);
  at.pad_low = at.pad_high = INTS(1, 1);
  at.groups = 1;
  if (eval(LDMC_OP_CONVOLUTION, &at, 2, in, &out)) {
    expect_near("convolution", &out, want, N * O * H * W, 1e-14, 1e-15);
    ldmc_tensor_release(&out);
  }
  th_release(2, in);
}

static void test_norms_softmax_attention(void) {
  uint64_t seed = 11;
  /* group_norm x[2, 4, 3], 2 groups, two-pass mean and biased variance */
  ldmc_tensor gn[3] = {th_random(F64, SHAPE(2, 4, 3), &seed, -2, 2), th_random(F64, SHAPE(4), &seed, 0.5, 1.5),
                       th_random(F64, SHAPE(4), &seed, -1, 1)},
              out;
  double want[64];
  for (int n = 0; n < 2; n++)
    for (int g = 0; g < 2; g++) {
      int base = (n * 4 + g * 2) * 3;
      double m = 0, v = 0;
      for (int j = 0; j < 6; j++) m += ldmc_tensor_get(&gn[0], base + j);
      m /= 6;
      for (int j = 0; j < 6; j++) v += pow(ldmc_tensor_get(&gn[0], base + j) - m, 2);
      v /= 6;
      for (int j = 0; j < 6; j++) {
        int ch = g * 2 + j / 3;
        want[base + j] = (ldmc_tensor_get(&gn[0], base + j) - m) / sqrt(v + 1e-5) * ldmc_tensor_get(&gn[1], ch) +
                         ldmc_tensor_get(&gn[2], ch);
      }
    }
  ldmc_attrs at = {0};
  at.groups = 2;
  at.eps = 1e-5;
  if (eval(LDMC_OP_GROUP_NORM, &at, 3, gn, &out)) {
    expect_near("group_norm", &out, want, 24, 1e-13, 1e-14);
    ldmc_tensor_release(&out);
  }
  th_release(3, gn);

  /* softmax along axis 1 of [3, 5] */
  ldmc_tensor x = th_random(F64, SHAPE(3, 5), &seed, -3, 3);
  for (int r = 0; r < 3; r++) {
    double s = 0;
    for (int c = 0; c < 5; c++) s += exp(ldmc_tensor_get(&x, r * 5 + c));
    for (int c = 0; c < 5; c++) want[r * 5 + c] = exp(ldmc_tensor_get(&x, r * 5 + c)) / s;
  }
  at = (ldmc_attrs){0};
  at.axis = 1;
  if (eval(LDMC_OP_SOFTMAX, &at, 1, &x, &out)) {
    expect_near("softmax", &out, want, 15, 1e-14, 0);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&x);

  /* attention q[2, 3, 4], k[2, 5, 4], v[2, 5, 2], scale 0.5 */
  ldmc_tensor qkv[3] = {th_random(F64, SHAPE(2, 3, 4), &seed, -1, 1), th_random(F64, SHAPE(2, 5, 4), &seed, -1, 1),
                        th_random(F64, SHAPE(2, 5, 2), &seed, -1, 1)};
  for (int b = 0; b < 2; b++)
    for (int n = 0; n < 3; n++) {
      double p[5], s = 0;
      for (int m = 0; m < 5; m++) {
        double d = 0;
        for (int e = 0; e < 4; e++) d += ldmc_tensor_get(&qkv[0], (b * 3 + n) * 4 + e) * ldmc_tensor_get(&qkv[1], (b * 5 + m) * 4 + e);
        s += p[m] = exp(0.5 * d);
      }
      for (int e = 0; e < 2; e++) {
        double acc = 0;
        for (int m = 0; m < 5; m++) acc += p[m] * ldmc_tensor_get(&qkv[2], (b * 5 + m) * 2 + e);
        want[(b * 3 + n) * 2 + e] = acc / s;
      }
    }
  at = (ldmc_attrs){0};
  at.scale = 0.5;
  if (eval(LDMC_OP_ATTENTION, &at, 3, qkv, &out)) {
    expect_near("attention", &out, want, 12, 1e-14, 1e-15);
    ldmc_tensor_release(&out);
  }
  th_release(3, qkv);
}

/* rng_uniform in f64 is the f32 stream exactly (24-bit values); rng_normal is the double Box-Muller value. */
static void test_rng(void) {
  ldmc_tensor key = th_tensor(LDMC_I64, SHAPE0, VALS(1234)), a, b;
  ldmc_shape s = SHAPE(64);
  if (th_eval(LDMC_OP_RNG_UNIFORM, NULL, F64, &s, 1, &key, &a)) {
    if (th_eval(LDMC_OP_RNG_UNIFORM, NULL, LDMC_F32, &s, 1, &key, &b)) {
      int same = 0;
      for (int i = 0; i < 64; i++) same += ldmc_tensor_get(&a, i) == ldmc_tensor_get(&b, i) && ldmc_tensor_get(&a, i) < 1;
      CHECK(a.dtype == F64 && same == 64);
      ldmc_tensor_release(&b);
    }
    ldmc_tensor_release(&a);
  }
  if (th_eval(LDMC_OP_RNG_NORMAL, NULL, F64, &s, 1, &key, &a)) {
    if (th_eval(LDMC_OP_RNG_NORMAL, NULL, LDMC_F32, &s, 1, &key, &b)) {
      int close = 0, wide = 0;
      for (int i = 0; i < 64; i++) {
        double d = ldmc_tensor_get(&a, i);
        close += (float)d == (float)ldmc_tensor_get(&b, i);
        wide += (double)(float)d != d;
      }
      CHECK(close == 64 && wide > 56);
      ldmc_tensor_release(&b);
    }
    ldmc_tensor_release(&a);
  }
  ldmc_tensor_release(&key);
}

/* d/dx_i sum(tanh(x) * w) = w_i (1 - tanh(x_i)^2), by central differences in f64. */
static void test_finite_difference(void) {
  ldmc_builder *b = ldmc_builder_new("fd");
  int64_t d[1] = {5};
  ldmc_value x = ldmc_parameter(b, "x", F64, 1, d), w = ldmc_parameter(b, "w", F64, 1, d);
  int64_t ax[1] = {0};
  ldmc_value y = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, ldmc_unary(b, LDMC_OP_TANH, x), w), 1, ax, false);
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "%s", ldmc_last_error());
  if (!g) return;
  ldmc_executable *e = NULL;
  CHECK(ldmc_backend_interp.compile(g, NULL, &e) == LDMC_OK);
  uint64_t seed = 3;
  ldmc_tensor in[2] = {th_random(F64, SHAPE(5), &seed, -1, 1), th_random(F64, SHAPE(5), &seed, -2, 2)};
  const double h = 1e-5;
  double worst = 0;
  for (int i = 0; e && i < 5; i++) {
    double x0 = ldmc_tensor_get(&in[0], i), f[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
      ldmc_tensor_set_elem(&in[0], i, x0 + (k ? -h : h));
      ldmc_tensor o;
      if (ldmc_executable_run(e, in, 2, &o, 1) == LDMC_OK) {
        f[k] = ldmc_tensor_get(&o, 0);
        ldmc_tensor_release(&o);
      }
    }
    ldmc_tensor_set_elem(&in[0], i, x0);
    double fd = (f[0] - f[1]) / (2 * h), exact = ldmc_tensor_get(&in[1], i) * (1 - tanh(x0) * tanh(x0));
    worst = fmax(worst, fabs(fd - exact));
  }
  /* truncation h^2 |f'''| / 6 plus rounding 1e-16 / h: ~1e-10 in double (f32 would be ~1e-2) */
  CHECK_MSG(worst < 1e-9, "finite differences off by %g", worst);
  th_release(2, in);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
}

/* Builder constants keep the double; folding computes the same double the interpreter does. */
static void test_builder_fold(void) {
  ldmc_builder *b = ldmc_builder_new("fold");
  ldmc_value c = ldmc_constant_scalar(b, F64, 0.3);
  ldmc_builder_output(b, ldmc_unary(b, LDMC_OP_EXP, c), "e");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "%s", ldmc_last_error());
  if (!g) return;
  CHECK(g->nodes[c].attrs.value.nbytes == 8 && *(const double *)g->nodes[c].attrs.value.data == 0.3);
  ldmc_pass_ctx ctx = {.target = ldmc_target_find("cpu-nhwc"), .status = &st};
  st = LDMC_OK;
  CHECK(ldmc_pass_fold.run(g, &ctx) && st == LDMC_OK);
  const ldmc_node *n = &g->nodes[g->outputs[0]];
  CHECK(n->op == LDMC_OP_CONSTANT && n->dtype == F64 && n->attrs.value.nbytes == 8 &&
        *(const double *)n->attrs.value.data == exp(0.3));
  ldmc_graph_free(g);
}

/* llvm-cpu computes in f32: f64 nodes are declared unsupported and refused by node and "f64". */
static void test_llvm_cpu_refuses(void) {
  const ldmc_backend_i *be = &ldmc_backend_llvm_cpu;
  ldmc_node n64 = {.op = LDMC_OP_ADD, .dtype = F64}, n32 = {.op = LDMC_OP_ADD, .dtype = LDMC_F32};
  CHECK(!be->supports(&n64) && be->supports(&n32));
  /* %0 x f32[3], %1 convert to f64, %2 exp, %3 convert back to f32 */
  ldmc_builder *b = ldmc_builder_new("f64");
  int64_t d[1] = {3};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 1, d);
  ldmc_builder_output(b, ldmc_convert(b, ldmc_unary(b, LDMC_OP_EXP, ldmc_convert(b, x, F64)), LDMC_F32), "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "%s", ldmc_last_error());
  if (!g) return;
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 1, .no_disk_cache = true};
  st = be->compile(g, &o, &e);
  const char *msg = ldmc_last_error();
  CHECK_MSG(st == LDMC_ERR_UNSUPPORTED && e == NULL && strstr(msg, "llvm-cpu") && strstr(msg, "%1 convert") &&
                strstr(msg, "f64"),
            "status %d: %s", (int)st, msg);
  if (e) ldmc_executable_free(e);
  ldmc_graph *opt = NULL;
  ldmc_plan *plan = NULL;
  CHECK(be->plan && be->plan(g, &o, &opt, &plan) == LDMC_ERR_UNSUPPORTED && strstr(ldmc_last_error(), "f64"));
  ldmc_graph_free(opt);
  ldmc_plan_free(plan);
  CHECK(ldmc_llvm_cpu_emit(g, &o, LDMC_EMIT_LLVM, "/nonexistent/f64.ll", NULL, NULL) == LDMC_ERR_UNSUPPORTED &&
        strstr(ldmc_last_error(), "f64"));
  /* the interpreter runs it, in double */
  ldmc_tensor in = th_tensor(LDMC_F32, SHAPE(3), VALS(0, 1, -0.5)), out;
  CHECK(ldmc_backend_interp.supports == NULL || ldmc_backend_interp.supports(&n64));
  if (th_run_graph(g, &in, 1, &out, 1)) {
    th_expect("exp through f64", &out, VALS(1, (float)exp(1.0), (float)exp(-0.5)), 3, 0, 0);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&in);
  ldmc_graph_free(g);
}

int main(void) {
  test_elementwise();
  test_convert();
  test_reduce_dot();
  test_convolution();
  test_norms_softmax_attention();
  test_rng();
  test_finite_difference();
  test_builder_fold();
  test_llvm_cpu_refuses();
  return test_summary("test_interp_f64");
}
