/* The fusion patterns of tests/test_fusion_conformance.c: small graphs in the
 * shapes the pass pipeline fuses (loop chains, GEMM epilogues, norm + silu,
 * head-splitting views around attention, prepacked weight subgraphs, outputs
 * that are also fused intermediates, outputs aliasing inputs). Each pattern
 * builds one graph at a random shape (odd, prime and 1-sized dims) and hands
 * it to fc_add with its tolerance; parameter names choose their input values
 * (pos_: positive, nz_: away from zero, wide_: [-8, 8], w_: [-0.5, 0.5], else
 * [-2, 2]). */
#ifndef LDMC_TESTS_FUSION_PATTERNS_H
#define LDMC_TESTS_FUSION_PATTERNS_H

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"

/* ---- random numbers (splitmix64) ---- */
static uint64_t fc_rng = 0x243f6a8885a308d3ull;
static uint64_t fc_next(void) {
  uint64_t z = (fc_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double fc_unif(double lo, double hi) { return lo + (hi - lo) * (double)(fc_next() >> 11) / 9007199254740992.0; }
static int64_t fc_int(int64_t lo, int64_t hi) { return lo + (int64_t)(fc_next() % (uint64_t)(hi - lo + 1)); }
/* odd, prime, 1, powers of two and one-past */
static int64_t fc_size(void) {
  static const int64_t s[] = {1, 2, 3, 5, 7, 8, 11, 13, 16, 17, 19, 31, 33};
  return s[fc_next() % (sizeof s / sizeof s[0])];
}
static int64_t fc_small(void) { /* for dims that multiply (images, heads) */
  static const int64_t s[] = {1, 2, 3, 5, 7};
  return s[fc_next() % (sizeof s / sizeof s[0])];
}

/* ---- tolerances: |got - want| <= atol + rtol |want| + arel max|want| ---- */
typedef struct fc_tol {
  double rtol, atol, arel;
} fc_tol;

/* elementwise math, fused or not: f32 ulps of the polynomials; bf16 results
 * of a fused chain are rounded once, the interpreter rounds every node */
static fc_tol fc_t_math(ldmc_dtype dt) { return dt == LDMC_BF16 ? (fc_tol){1.0 / 32, 1e-3, 1.0 / 128} : (fc_tol){2e-5, 2e-6, 1e-6}; }
/* with sums (contractions, reductions, norms): relative to the largest value */
static fc_tol fc_t_acc(ldmc_dtype dt) { return dt == LDMC_BF16 ? (fc_tol){1.0 / 32, 0, 1.0 / 32} : (fc_tol){2e-5, 0, 4e-5}; }
/* pure data movement */
static fc_tol fc_t_exact(ldmc_dtype dt) { return dt == LDMC_BF16 ? (fc_tol){1.0 / 128, 0, 0} : (fc_tol){0, 0, 0}; }

/* implemented by the runner: takes the finished graph; n_act >= 0 compiles
 * with params_are_weights, parameters from n_act on being weights */
static void fc_add(ldmc_builder *b, fc_tol t, int n_act, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define FC_P(b, name, dt, ...) ldmc_parameter(b, name, dt, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define FC_OUT(b, v, name) ldmc_builder_output(b, v, name)

static ldmc_ints fc_ints(int n, int64_t a, int64_t b, int64_t c) {
  ldmc_ints v = {.n = n};
  v.v[0] = a, v.v[1] = b, v.v[2] = c;
  return v;
}

/* bias[C] broadcast over dim d of a value of shape s */
static ldmc_value fc_bias_dim(ldmc_builder *b, ldmc_value bias, ldmc_value like, int d) {
  const ldmc_shape *s = ldmc_value_shape(b, like);
  int64_t dims[LDMC_MAX_RANK], map[1] = {d};
  memcpy(dims, s->dims, sizeof dims);
  return ldmc_broadcast_in_dim(b, bias, s->rank, dims, map);
}

static ldmc_value fc_const(ldmc_builder *b, ldmc_dtype dt, double v) { return ldmc_constant_scalar(b, dt, v); }

/* x [.., K] @ W[F, K]^T: a linear layer */
static ldmc_value fc_linear(ldmc_builder *b, ldmc_value x, ldmc_value w) {
  int r = ldmc_value_shape(b, x)->rank;
  ldmc_ints none = {0}, lc = fc_ints(1, r - 1, 0, 0), rc = fc_ints(1, 1, 0, 0);
  return ldmc_dot_general(b, x, w, &none, &none, &lc, &rc);
}

/* x [.., K] @ W[K, F] */
static ldmc_value fc_matmul_w(ldmc_builder *b, ldmc_value x, ldmc_value w) {
  int r = ldmc_value_shape(b, x)->rank;
  ldmc_ints none = {0}, lc = fc_ints(1, r - 1, 0, 0), rc = fc_ints(1, 0, 0, 0);
  return ldmc_dot_general(b, x, w, &none, &none, &lc, &rc);
}

/* ---- loop fusion ---- */
static void pat_ew_chain(ldmc_dtype dt) {
  int64_t A = fc_size(), B = fc_size(), C = fc_size();
  ldmc_builder *b = ldmc_builder_new("ew_chain");
  ldmc_value x = FC_P(b, "x", dt, A, B, C), bias = FC_P(b, "bias", dt, B), y = FC_P(b, "y", dt, C);
  ldmc_value nz = FC_P(b, "nz_z", dt, A, 1, C);
  ldmc_value h = ldmc_add(b, ldmc_scale(b, x, 2.5), fc_bias_dim(b, bias, x, 1));
  ldmc_value t = ldmc_sub(b, ldmc_unary(b, LDMC_OP_TANH, h), fc_const(b, dt, 0.75));
  t = ldmc_binary(b, LDMC_OP_MAX, t, ldmc_broadcast_to(b, y, 3, (int64_t[]){A, B, C}));
  t = ldmc_binary(b, LDMC_OP_MIN, t, fc_const(b, dt, 0.5));
  ldmc_value q = ldmc_div(b, ldmc_unary(b, LDMC_OP_NEG, ldmc_unary(b, LDMC_OP_ABS, x)), nz);
  ldmc_value out = ldmc_add(b, ldmc_mul(b, t, ldmc_unary(b, LDMC_OP_EXP, ldmc_scale(b, x, -0.5))), q);
  FC_OUT(b, out, "out");
  fc_add(b, fc_t_math(dt), -1, "ew chain bcast+consts %s[%" PRId64 ",%" PRId64 ",%" PRId64 "]", ldmc_dtype_name(dt), A, B, C);
}

static void pat_multi_use(ldmc_dtype dt) {
  int64_t A = fc_size(), C = fc_size() + 1;
  ldmc_builder *b = ldmc_builder_new("multi_use");
  ldmc_value x = FC_P(b, "x", dt, A, C), y = FC_P(b, "y", dt, A, C);
  ldmc_value h = ldmc_add(b, ldmc_mul(b, x, y), fc_const(b, dt, 1.0)); /* four users */
  ldmc_value e = ldmc_unary(b, LDMC_OP_EXP, ldmc_unary(b, LDMC_OP_NEG, ldmc_unary(b, LDMC_OP_ABS, h)));
  int64_t ax = 1;
  ldmc_value s = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_unary(b, LDMC_OP_TANH, h), 1, &ax, true);
  ldmc_value out = ldmc_add(b, ldmc_mul(b, h, h), ldmc_mul(b, e, ldmc_broadcast_to(b, s, 2, (int64_t[]){A, C})));
  out = ldmc_sub(b, out, ldmc_silu(b, h));
  FC_OUT(b, out, "out");
  fc_add(b, fc_t_acc(dt), -1, "multi-use intermediate %s[%" PRId64 ",%" PRId64 "]", ldmc_dtype_name(dt), A, C);
}

static void pat_reshape_in_chain(ldmc_dtype dt) {
  int64_t A = fc_size(), B = fc_size(), C = fc_size();
  ldmc_builder *b = ldmc_builder_new("reshape_chain");
  ldmc_value x = FC_P(b, "x", dt, A, B, C), bias = FC_P(b, "bias", dt, C), y = FC_P(b, "y", dt, A, B * C);
  ldmc_value t = ldmc_reshape(b, ldmc_unary(b, LDMC_OP_TANH, x), 2, (int64_t[]){A * B, C});
  t = ldmc_add(b, t, fc_bias_dim(b, bias, t, 1));
  t = ldmc_mul(b, ldmc_reshape(b, t, 2, (int64_t[]){A, B * C}), y);
  FC_OUT(b, ldmc_unary(b, LDMC_OP_LOGISTIC, t), "out");
  fc_add(b, fc_t_math(dt), -1, "reshapes inside a chain %s[%" PRId64 ",%" PRId64 ",%" PRId64 "]", ldmc_dtype_name(dt), A, B, C);
}

static void pat_concat(ldmc_dtype dt) {
  int64_t d[3] = {fc_size(), fc_size(), fc_size()};
  int ax = (int)fc_int(0, 2);
  ldmc_builder *b = ldmc_builder_new("concat");
  ldmc_value x = FC_P(b, "x", dt, d[0], d[1], d[2]), y = FC_P(b, "y", dt, d[0], d[1], d[2]);
  ldmc_value parts[3] = {ldmc_silu(b, x), ldmc_mul(b, x, y), ldmc_add(b, ldmc_unary(b, LDMC_OP_TANH, y), fc_const(b, dt, 1))};
  ldmc_value c = ldmc_concatenate(b, 3, parts, ax);
  FC_OUT(b, ldmc_scale(b, ldmc_unary(b, LDMC_OP_SIN, c), 2.0), "out");
  fc_add(b, fc_t_math(dt), -1, "concatenate of fused values %s axis %d [%" PRId64 ",%" PRId64 ",%" PRId64 "]", ldmc_dtype_name(dt), ax,
         d[0], d[1], d[2]);
}

static void pat_pad(ldmc_dtype dt) {
  int64_t d[3] = {fc_size(), fc_size(), fc_size()}, lo[3], hi[3], in[3];
  bool neg = fc_next() & 1;
  for (int i = 0; i < 3; i++) {
    lo[i] = fc_int(neg ? -1 : 0, 2), hi[i] = fc_int(neg ? -1 : 0, 2), in[i] = fc_int(0, neg ? 1 : 0);
    if (d[i] + lo[i] + hi[i] + (d[i] - 1) * in[i] < 1) lo[i] = hi[i] = 0;
  }
  ldmc_builder *b = ldmc_builder_new("pad");
  ldmc_value x = FC_P(b, "x", dt, d[0], d[1], d[2]), y = FC_P(b, "y", dt, d[0], d[1], d[2]);
  ldmc_value p = ldmc_pad(b, ldmc_add(b, ldmc_mul(b, x, y), fc_const(b, dt, 1)), fc_const(b, dt, -0.5), lo, hi, in);
  FC_OUT(b, ldmc_unary(b, LDMC_OP_TANH, ldmc_scale(b, p, 3.0)), "out");
  fc_add(b, fc_t_math(dt), -1, "pad of a fused value then tanh %s%s [%" PRId64 ",%" PRId64 ",%" PRId64 "]", ldmc_dtype_name(dt),
         neg ? " negative+interior" : "", d[0], d[1], d[2]);
}

static void pat_iota_select(ldmc_dtype dt) {
  int64_t N = fc_size(), M = fc_size();
  ldmc_builder *b = ldmc_builder_new("iota_select");
  ldmc_value x = FC_P(b, "x", dt, N, M), y = FC_P(b, "y", dt, N, M);
  int64_t d[2] = {N, M};
  ldmc_value r = ldmc_iota(b, LDMC_I32, 2, d, 0), c = ldmc_iota(b, LDMC_I32, 2, d, 1);
  ldmc_value causal = ldmc_compare_values(b, LDMC_CMP_GE, r, c);
  ldmc_value sel = ldmc_select(b, causal, x, ldmc_scale(b, y, -2.0));
  ldmc_value pos = ldmc_compare_values(b, LDMC_CMP_GT, x, y);
  ldmc_value fi = ldmc_convert(b, ldmc_add(b, r, c), dt);
  ldmc_value out = ldmc_select(b, pos, ldmc_add(b, sel, ldmc_scale(b, fi, 0.125)), ldmc_unary(b, LDMC_OP_NEG, sel));
  FC_OUT(b, out, "out");
  fc_add(b, fc_t_exact(dt), -1, "iota compare/select chain %s[%" PRId64 ",%" PRId64 "]", ldmc_dtype_name(dt), N, M);
}

static void pat_reduce(ldmc_dtype dt) {
  int64_t d[3] = {fc_size(), fc_size(), fc_size()}, axes[3];
  int na = 0;
  for (int i = 0; i < 3; i++)
    if (fc_next() & 1) axes[na++] = i;
  if (na == 0) axes[na++] = 2;
  ldmc_builder *b = ldmc_builder_new("reduce");
  ldmc_value x = FC_P(b, "x", dt, d[0], d[1], d[2]), y = FC_P(b, "y", dt, d[0], d[1], d[2]);
  ldmc_value s = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, ldmc_unary(b, LDMC_OP_EXP, ldmc_unary(b, LDMC_OP_TANH, x)), y), na,
                             axes, false);
  ldmc_value m = ldmc_reduce(b, LDMC_REDUCE_MAX, ldmc_unary(b, LDMC_OP_ABS, ldmc_sub(b, x, y)), na, axes, false);
  FC_OUT(b, ldmc_add(b, s, m), "sum_max");
  /* rms norm over the last dim: x * rsqrt(mean(x^2) + eps) */
  int64_t last = 2;
  ldmc_value ms = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, x, x), 1, &last, true);
  ms = ldmc_add(b, ldmc_scale(b, ms, 1.0 / (double)d[2]), fc_const(b, dt, 1e-3));
  FC_OUT(b, ldmc_mul(b, x, ldmc_broadcast_to(b, ldmc_unary(b, LDMC_OP_RSQRT, ms), 3, d)), "rms");
  fc_add(b, fc_t_acc(dt), -1, "reduce of producers over %d axes + rms norm %s[%" PRId64 ",%" PRId64 ",%" PRId64 "]", na,
         ldmc_dtype_name(dt), d[0], d[1], d[2]);
}

static void pat_softmax(ldmc_dtype dt) {
  int64_t d[3] = {fc_size(), fc_size(), fc_int(1, 70)};
  int ax = (fc_next() % 3) ? 2 : (int)fc_int(0, 1);
  ldmc_builder *b = ldmc_builder_new("softmax");
  ldmc_value x = FC_P(b, "x", dt, d[0], d[1], d[2]), mask = FC_P(b, "mask", dt, d[1], d[2]), y = FC_P(b, "y", dt, d[0], d[1], d[2]);
  ldmc_value z = ldmc_add(b, ldmc_scale(b, x, 1.7), ldmc_broadcast_to(b, mask, 3, d));
  ldmc_value s = ldmc_softmax(b, z, ax);
  ldmc_value out = ldmc_add(b, ldmc_mul(b, s, y), fc_const(b, dt, 0.1));
  FC_OUT(b, out, "out");
  fc_add(b, fc_t_acc(dt), -1, "softmax with producers and consumers %s axis %d [%" PRId64 ",%" PRId64 ",%" PRId64 "]",
         ldmc_dtype_name(dt), ax, d[0], d[1], d[2]);
}

static void pat_layer_norm(ldmc_dtype dt) {
  int64_t B = fc_small(), N = fc_size(), C = fc_int(1, 80);
  ldmc_builder *b = ldmc_builder_new("ln_mod");
  ldmc_value x = FC_P(b, "x", dt, B, N, C), gm = FC_P(b, "gamma", dt, C), bt = FC_P(b, "beta", dt, C);
  ldmc_value sc = FC_P(b, "scale", dt, B, 1, C), sh = FC_P(b, "shift", dt, B, 1, C);
  int64_t d[3] = {B, N, C};
  ldmc_value h = ldmc_layer_norm(b, ldmc_add(b, x, fc_const(b, dt, 0.5)), gm, bt, 2, 1e-5);
  ldmc_value one = ldmc_add(b, sc, fc_const(b, dt, 1.0));
  h = ldmc_add(b, ldmc_mul(b, h, ldmc_broadcast_to(b, one, 3, d)), ldmc_broadcast_to(b, sh, 3, d));
  FC_OUT(b, ldmc_silu(b, h), "out");
  fc_add(b, fc_t_acc(dt), -1, "layer_norm + scale/shift + silu %s[%" PRId64 ",%" PRId64 ",%" PRId64 "]", ldmc_dtype_name(dt), B, N, C);
}

/* ---- contraction epilogues ---- */
static void pat_dot_bias_gelu(ldmc_dtype dt) {
  int64_t B = fc_small(), N = fc_int(1, 40), K = fc_int(1, 70), F = fc_int(1, 50);
  ldmc_builder *b = ldmc_builder_new("linear_gelu");
  ldmc_value x = FC_P(b, "x", dt, B, N, K), w = FC_P(b, "w", dt, F, K), bias = FC_P(b, "bias", dt, F);
  ldmc_value h = fc_linear(b, x, w);
  FC_OUT(b, ldmc_gelu(b, ldmc_add(b, h, fc_bias_dim(b, bias, h, 2))), "out");
  fc_add(b, fc_t_acc(dt), -1, "linear + bias + gelu %s B%" PRId64 " N%" PRId64 " K%" PRId64 " F%" PRId64, ldmc_dtype_name(dt), B, N,
         K, F);
}

static void pat_geglu(ldmc_dtype dt) {
  int64_t B = fc_small(), N = fc_int(1, 30), K = fc_int(1, 40), F = fc_int(1, 37);
  ldmc_builder *b = ldmc_builder_new("geglu");
  ldmc_value x = FC_P(b, "x", dt, B, N, K), w = FC_P(b, "w", dt, K, 2 * F), bias = FC_P(b, "bias", dt, 2 * F);
  ldmc_value h = fc_matmul_w(b, x, w);
  h = ldmc_add(b, h, fc_bias_dim(b, bias, h, 2));
  ldmc_value a = ldmc_slice(b, h, (int64_t[]){0, 0, 0}, (int64_t[]){B, N, F}, (int64_t[]){1, 1, 1});
  ldmc_value g = ldmc_slice(b, h, (int64_t[]){0, 0, F}, (int64_t[]){B, N, 2 * F}, (int64_t[]){1, 1, 1});
  FC_OUT(b, ldmc_mul(b, a, ldmc_gelu(b, g)), "out");
  fc_add(b, fc_t_acc(dt), -1, "GEGLU dot -> two slices -> x*gelu %s B%" PRId64 " N%" PRId64 " K%" PRId64 " F%" PRId64,
         ldmc_dtype_name(dt), B, N, K, F);
}

static void pat_dot_epilogue_views(ldmc_dtype dt) {
  int64_t Bt = fc_small(), M = fc_int(1, 40), K = fc_int(1, 50), N = fc_int(1, 40);
  ldmc_builder *b = ldmc_builder_new("bmm_epi");
  ldmc_value x = FC_P(b, "x", dt, Bt, M, K), y = FC_P(b, "y", dt, Bt, K, N);
  ldmc_value rb = FC_P(b, "row_bias", dt, M), r = FC_P(b, "r", dt, Bt, N, M), cb = FC_P(b, "col_bias", dt, Bt, 1, N);
  ldmc_value h = ldmc_matmul(b, x, y);
  int64_t d[3] = {Bt, M, N};
  h = ldmc_add(b, h, fc_bias_dim(b, rb, h, 1));
  h = ldmc_add(b, h, ldmc_broadcast_to(b, cb, 3, d));
  h = ldmc_add(b, h, ldmc_transpose(b, r, (int64_t[]){0, 2, 1}));
  ldmc_dtype to = dt == LDMC_BF16 ? LDMC_F32 : LDMC_BF16;
  FC_OUT(b, ldmc_convert(b, ldmc_scale(b, h, 0.7071), to), "out");
  fc_add(b, fc_t_acc(LDMC_BF16), -1, "bmm + row/col bias + transposed residual -> convert %s %" PRId64 "x%" PRId64 "x%" PRId64 "x%" PRId64,
         ldmc_dtype_name(dt), Bt, M, K, N);
}

static int64_t conv_out(int64_t h, int k, int s, int p) { return (h + 2 * p - k) / s + 1; }

static void pat_conv_bias_silu(ldmc_dtype dt) {
  int k = (fc_next() & 1) ? 3 : 1, s = (int)fc_int(1, 2), p = k / 2;
  int64_t N = fc_int(1, 2), C = fc_int(1, 9), O = fc_int(1, 19), H = fc_int(1, 13), W = fc_int(1, 17);
  ldmc_builder *b = ldmc_builder_new("conv_silu");
  ldmc_value x = FC_P(b, "x", dt, N, C, H, W), w = FC_P(b, "w", dt, O, C, k, k), bias = FC_P(b, "bias", dt, O);
  ldmc_value h = ldmc_conv2d(b, x, w, s, p, 1, 1);
  FC_OUT(b, ldmc_silu(b, ldmc_add(b, h, fc_bias_dim(b, bias, h, 1))), "out");
  fc_add(b, fc_t_acc(dt), -1, "conv%dx%d s%d + bias + silu %s x[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] o%" PRId64, k, k, s,
         ldmc_dtype_name(dt), N, C, H, W, O);
}

static void pat_conv_residual(ldmc_dtype dt) {
  int k = (fc_next() & 1) ? 3 : 1, s = (int)fc_int(1, 2);
  int64_t N = fc_int(1, 2), C = fc_int(1, 9), H = fc_int(2, 13), W = fc_int(2, 17), O = s == 1 ? C : fc_int(1, 12);
  int64_t Ho = conv_out(H, k, s, k / 2), Wo = conv_out(W, k, s, k / 2);
  ldmc_builder *b = ldmc_builder_new("conv_res");
  ldmc_value x = FC_P(b, "x", dt, N, C, H, W), w = FC_P(b, "w", dt, O, C, k, k), bias = FC_P(b, "bias", dt, O);
  ldmc_value r = s == 1 ? x : FC_P(b, "r", dt, N, O, Ho, Wo); /* stride 1: the input itself is the residual */
  ldmc_value h = ldmc_conv2d(b, x, w, s, k / 2, 1, 1);
  h = ldmc_add(b, ldmc_add(b, h, fc_bias_dim(b, bias, h, 1)), r);
  FC_OUT(b, ldmc_scale(b, h, 0.7071), "out");
  fc_add(b, fc_t_acc(dt), -1, "conv%dx%d s%d + bias + residual add %s x[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] o%" PRId64, k,
         k, s, ldmc_dtype_name(dt), N, C, H, W, O);
}

static void pat_conv_gn_silu(ldmc_dtype dt) {
  int64_t G = fc_int(1, 4), N = fc_int(1, 2), C = fc_int(1, 7), O = G * fc_int(1, 5), H = fc_int(1, 11), W = fc_int(1, 13);
  ldmc_builder *b = ldmc_builder_new("conv_gn");
  ldmc_value x = FC_P(b, "x", dt, N, C, H, W), w = FC_P(b, "w", dt, O, C, 3, 3), bias = FC_P(b, "bias", dt, O);
  ldmc_value gm = FC_P(b, "gamma", dt, O), bt = FC_P(b, "beta", dt, O);
  ldmc_value h = ldmc_conv2d(b, x, w, 1, 1, 1, 1);
  h = ldmc_add(b, h, fc_bias_dim(b, bias, h, 1));
  ldmc_value n = ldmc_group_norm(b, h, gm, bt, (int)G, 1e-5);
  FC_OUT(b, ldmc_silu(b, n), "out");
  fc_add(b, fc_t_acc(dt), -1, "conv -> group_norm -> silu %s x[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] o%" PRId64 " G%" PRId64,
         ldmc_dtype_name(dt), N, C, H, W, O, G);
}

static void pat_gn_residual(ldmc_dtype dt) {
  int64_t G = fc_int(1, 3), N = fc_int(1, 2), C = G * fc_int(1, 6), H = fc_size(), W = fc_small();
  ldmc_builder *b = ldmc_builder_new("gn_res");
  ldmc_value x = FC_P(b, "x", dt, N, C, H, W), gm = FC_P(b, "gamma", dt, C), bt = FC_P(b, "beta", dt, C);
  ldmc_value n = ldmc_group_norm(b, x, gm, bt, (int)G, 1e-5);
  ldmc_value s = ldmc_silu(b, n); /* silu with two users, and the norm with two */
  FC_OUT(b, ldmc_add(b, ldmc_mul(b, s, s), ldmc_sub(b, n, x)), "out");
  fc_add(b, fc_t_acc(dt), -1, "group_norm + silu(2 uses) + residual %s[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] G%" PRId64,
         ldmc_dtype_name(dt), N, C, H, W, G);
}

/* a strided slice (a kernel left as a view) feeding a convolution with an
 * epilogue: once read an unset buffer (the epilogue path skipped computing it) */
static void pat_slice_conv(ldmc_dtype dt) {
  int64_t N = fc_int(1, 2), C = fc_int(1, 5), O = fc_int(1, 9), H = fc_int(1, 9), W = fc_int(2, 12);
  int s = (int)fc_int(1, 2);
  ldmc_builder *b = ldmc_builder_new("slice_conv");
  ldmc_value x = FC_P(b, "x", dt, N, C, H, W), w = FC_P(b, "w", dt, O, C, 3, 3), bias = FC_P(b, "bias", dt, O);
  ldmc_value sl = ldmc_slice(b, x, (int64_t[]){0, 0, 0, 1}, (int64_t[]){N, C, H, W}, (int64_t[]){1, 1, 1, 2});
  ldmc_value h = ldmc_conv2d(b, sl, w, s, 1, 1, 1);
  FC_OUT(b, ldmc_unary(b, LDMC_OP_TANH, ldmc_add(b, h, fc_bias_dim(b, bias, h, 1))), "out");
  fc_add(b, fc_t_acc(dt), -1, "strided slice -> conv s%d + bias + tanh %s x[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] o%" PRId64,
         s, ldmc_dtype_name(dt), N, C, H, W, O);
}

static void pat_upsample_conv(ldmc_dtype dt) {
  int64_t N = fc_int(1, 2), C = fc_int(1, 6), O = fc_int(1, 9), H = fc_int(1, 7), W = fc_int(1, 9);
  ldmc_builder *b = ldmc_builder_new("up_conv");
  ldmc_value x = FC_P(b, "x", dt, N, C, H, W), w = FC_P(b, "w", dt, O, C, 3, 3), bias = FC_P(b, "bias", dt, O);
  ldmc_value u = ldmc_upsample_nearest(b, ldmc_silu(b, x), 2);
  ldmc_value h = ldmc_conv2d(b, u, w, 1, 1, 1, 1);
  FC_OUT(b, ldmc_add(b, h, fc_bias_dim(b, bias, h, 1)), "out");
  fc_add(b, fc_t_acc(dt), -1, "silu -> upsample x2 -> conv + bias %s x[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] o%" PRId64,
         ldmc_dtype_name(dt), N, C, H, W, O);
}

/* ---- attention with head-splitting views ---- */
static ldmc_value fc_heads(ldmc_builder *b, ldmc_value x, int64_t B, int64_t N, int64_t H, int64_t D) {
  return ldmc_transpose(b, ldmc_reshape(b, x, 4, (int64_t[]){B, N, H, D}), (int64_t[]){0, 2, 1, 3});
}

static void pat_attention_heads(ldmc_dtype dt, bool explicit_softmax) {
  int64_t B = fc_int(1, 2), N = fc_int(1, 40), M = fc_int(1, 23), H = fc_int(1, 3), D = fc_int(1, 13), C = H * D, E = fc_int(1, 19);
  ldmc_builder *b = ldmc_builder_new("mha");
  ldmc_value x = FC_P(b, "x", dt, B, N, C), ctx = FC_P(b, "ctx", dt, B, M, E);
  /* w_: weights in [-0.5, 0.5], so that scores stay O(1): bf16 scores of O(50)
   * (rounded by the interpreter, not by the fused kernel) would swamp the test */
  ldmc_value wq = FC_P(b, "w_q", dt, C, C), wk = FC_P(b, "w_k", dt, C, E), wv = FC_P(b, "w_v", dt, C, E);
  ldmc_value wo = FC_P(b, "w_o", dt, C, C), bo = FC_P(b, "bo", dt, C);
  ldmc_value q = fc_heads(b, fc_linear(b, x, wq), B, N, H, D);
  ldmc_value k = fc_heads(b, fc_linear(b, ctx, wk), B, M, H, D);
  ldmc_value v = fc_heads(b, fc_linear(b, ctx, wv), B, M, H, D);
  double scale = 1.0 / sqrt((double)D);
  ldmc_value o;
  if (explicit_softmax) { /* the attention pass recognises this */
    ldmc_ints bt = fc_ints(2, 0, 1, 0), c3 = fc_ints(1, 3, 0, 0), c2 = fc_ints(1, 2, 0, 0);
    ldmc_value s = ldmc_scale(b, ldmc_dot_general(b, q, k, &bt, &bt, &c3, &c3), scale);
    o = ldmc_dot_general(b, ldmc_softmax(b, s, 3), v, &bt, &bt, &c3, &c2);
  } else {
    o = ldmc_attention(b, q, k, v, scale);
  }
  o = ldmc_reshape(b, ldmc_transpose(b, o, (int64_t[]){0, 2, 1, 3}), 3, (int64_t[]){B, N, C});
  ldmc_value p = fc_linear(b, o, wo);
  p = ldmc_add(b, ldmc_add(b, p, fc_bias_dim(b, bo, p, 2)), x);
  FC_OUT(b, p, "out");
  fc_add(b, fc_t_acc(dt), -1, "%s head split q,k,v -> attention -> merge + proj + residual %s B%" PRId64 " N%" PRId64 " M%" PRId64
         " H%" PRId64 " D%" PRId64 " E%" PRId64, explicit_softmax ? "softmax(qk)v" : "attention", ldmc_dtype_name(dt), B, N, M, H, D, E);
}

static void pat_proj_in(ldmc_dtype dt) { /* 1x1 conv, then [B,C,H,W] -> [B,HW,C] and layer_norm (the U-Net transformer input) */
  int64_t B = fc_int(1, 2), C = fc_int(1, 12), H = fc_small(), W = fc_size();
  ldmc_builder *b = ldmc_builder_new("proj_in");
  ldmc_value x = FC_P(b, "x", dt, B, C, H, W), w = FC_P(b, "w", dt, C, C, 1, 1), bias = FC_P(b, "bias", dt, C);
  ldmc_value gm = FC_P(b, "gamma", dt, C), bt = FC_P(b, "beta", dt, C);
  ldmc_value h = ldmc_conv2d(b, x, w, 1, 0, 1, 1);
  h = ldmc_add(b, h, fc_bias_dim(b, bias, h, 1));
  h = ldmc_transpose(b, ldmc_reshape(b, h, 3, (int64_t[]){B, C, H * W}), (int64_t[]){0, 2, 1});
  FC_OUT(b, ldmc_layer_norm(b, h, gm, bt, 2, 1e-6), "out");
  fc_add(b, fc_t_acc(dt), -1, "1x1 conv + bias -> [B,HW,C] -> layer_norm %s[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "]",
         ldmc_dtype_name(dt), B, C, H, W);
}

/* ---- weights, outputs ---- */
static void pat_weights(ldmc_dtype dt) {
  int64_t N = fc_int(1, 30), K = fc_int(1, 40), F = fc_int(1, 33), C = fc_int(1, 6), O = fc_int(1, 9), H = fc_int(1, 9), W = fc_int(1, 11);
  ldmc_builder *b = ldmc_builder_new("weights");
  ldmc_value x = FC_P(b, "x", dt, N, K), xi = FC_P(b, "xi", dt, 1, C, H, W); /* activations first */
  ldmc_value w = FC_P(b, "w", dt, F, K), bias = FC_P(b, "bias", dt, F), wc = FC_P(b, "wc", dt, O, C, 3, 3);
  ldmc_value wt = ldmc_transpose(b, ldmc_add(b, ldmc_scale(b, w, 0.5), fc_const(b, dt, 0.25)), (int64_t[]){1, 0});
  ldmc_value h = ldmc_matmul(b, x, wt);
  h = ldmc_add(b, h, fc_bias_dim(b, ldmc_scale(b, bias, 2.0), h, 1));
  FC_OUT(b, ldmc_silu(b, h), "lin");
  ldmc_value c = ldmc_conv2d(b, xi, ldmc_unary(b, LDMC_OP_TANH, wc), 1, 1, 1, 1);
  FC_OUT(b, c, "conv");
  FC_OUT(b, ldmc_reduce(b, LDMC_REDUCE_SUM, w, 1, (int64_t[]){1}, false), "wsum"); /* an output of weights only */
  fc_add(b, fc_t_acc(dt), 2, "weight-only subgraphs prepacked (linear W'^T, tanh(conv W)) %s N%" PRId64 " K%" PRId64 " F%" PRId64
         " C%" PRId64 " O%" PRId64, ldmc_dtype_name(dt), N, K, F, C, O);
}

static void pat_outputs_inside(ldmc_dtype dt) {
  int64_t A = fc_size(), C = fc_size(), K = fc_int(1, 30), F = fc_int(1, 30), G = fc_int(1, 3);
  ldmc_builder *b = ldmc_builder_new("outs_inside");
  ldmc_value x = FC_P(b, "x", dt, A, C), bias = FC_P(b, "bias", dt, C);
  ldmc_value x2 = FC_P(b, "x2", dt, A, K), w = FC_P(b, "w", dt, K, F), b2 = FC_P(b, "b2", dt, F);
  ldmc_value xg = FC_P(b, "xg", dt, 1, G * 2, 3, 5), gm = FC_P(b, "gamma", dt, G * 2), bt = FC_P(b, "beta", dt, G * 2);
  ldmc_value h = ldmc_add(b, x, fc_bias_dim(b, bias, x, 1));
  FC_OUT(b, h, "h");
  FC_OUT(b, ldmc_mul(b, ldmc_silu(b, h), h), "silu_h");
  ldmc_value c = ldmc_matmul(b, x2, w);
  FC_OUT(b, c, "core");
  ldmc_value e = ldmc_add(b, c, fc_bias_dim(b, b2, c, 1));
  FC_OUT(b, e, "biased");
  FC_OUT(b, ldmc_gelu(b, e), "gelu");
  ldmc_value n = ldmc_group_norm(b, xg, gm, bt, (int)G, 1e-5);
  FC_OUT(b, n, "norm");
  FC_OUT(b, ldmc_silu(b, n), "norm_silu");
  fc_add(b, fc_t_acc(dt), -1, "outputs that are fused intermediates %s A%" PRId64 " C%" PRId64 " K%" PRId64 " F%" PRId64,
         ldmc_dtype_name(dt), A, C, K, F);
}

static void pat_alias_outputs(ldmc_dtype dt, bool weights) {
  int64_t A = fc_size(), B = fc_size(), C = fc_size();
  ldmc_builder *b = ldmc_builder_new("alias");
  ldmc_value x = FC_P(b, "x", dt, A, B, C), y = FC_P(b, "y", dt, B, C);
  FC_OUT(b, ldmc_reshape(b, x, 2, (int64_t[]){A * B, C}), "x_flat");
  FC_OUT(b, x, "x");
  FC_OUT(b, ldmc_reshape(b, y, 1, (int64_t[]){B * C}), "y_flat");
  FC_OUT(b, ldmc_transpose(b, y, (int64_t[]){1, 0}), "y_t");
  FC_OUT(b, ldmc_add(b, x, ldmc_broadcast_to(b, y, 3, (int64_t[]){A, B, C})), "sum");
  FC_OUT(b, ldmc_reshape(b, ldmc_scale(b, y, 3.0), 2, (int64_t[]){C, B}), "y3");
  fc_add(b, fc_t_exact(dt), weights ? 1 : -1, "outputs aliasing inputs (reshape/transpose of parameters)%s %s[%" PRId64 ",%" PRId64
         ",%" PRId64 "]", weights ? " y a weight" : "", ldmc_dtype_name(dt), A, B, C);
}

/* 1-sized dims everywhere: reductions with nothing left to reduce (a
 * one-element reduce once read past its dim table), 1x1 products, softmax
 * and layer_norm over one element, a 1x1 image */
static void pat_degenerate(ldmc_dtype dt) {
  int64_t C = fc_size();
  ldmc_builder *b = ldmc_builder_new("degenerate");
  ldmc_value x = FC_P(b, "x", dt, 1, 1, C), s = FC_P(b, "s", dt, 1, 1), y = FC_P(b, "y", dt, 1, 1);
  ldmc_value g1 = FC_P(b, "g1", dt, 1), img = FC_P(b, "img", dt, 1, C, 1, 1), w = FC_P(b, "w", dt, 2, C, 1, 1);
  ldmc_value t = ldmc_unary(b, LDMC_OP_TANH, s);
  ldmc_value r = ldmc_reduce(b, LDMC_REDUCE_SUM, t, 1, (int64_t[]){1}, false); /* [1,1] -> [1] */
  FC_OUT(b, ldmc_sub(b, t, ldmc_broadcast_in_dim(b, r, 2, (int64_t[]){1, 1}, (int64_t[]){0})), "t_minus_sum");
  FC_OUT(b, ldmc_reduce(b, LDMC_REDUCE_MAX, ldmc_mul(b, s, y), 2, (int64_t[]){0, 1}, false), "max_all");
  FC_OUT(b, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_silu(b, x), 2, (int64_t[]){0, 1}, false), "sum_ones");
  FC_OUT(b, ldmc_add(b, ldmc_matmul(b, s, y), fc_const(b, dt, 1.0)), "mm1x1");
  FC_OUT(b, ldmc_mul(b, ldmc_softmax(b, ldmc_scale(b, s, 3.0), 1), y), "softmax1");
  FC_OUT(b, ldmc_layer_norm(b, y, g1, g1, 1, 1e-5), "ln1");
  ldmc_value c = ldmc_conv2d(b, img, w, 1, 0, 1, 1);
  FC_OUT(b, ldmc_silu(b, c), "conv1x1");
  fc_add(b, fc_t_acc(dt), -1, "1-sized dims: one-element reduce/softmax/layer_norm, 1x1 dot and image %s C%" PRId64,
         ldmc_dtype_name(dt), C);
}

/* outputs that are views (kernels left as strided views) of computed values,
 * and a view read by two kernels */
static void pat_view_outputs(ldmc_dtype dt) {
  int64_t B = fc_small(), N = fc_int(2, 20), K = fc_int(1, 20), H = fc_int(1, 3), D = fc_int(1, 7), C = H * D;
  ldmc_builder *b = ldmc_builder_new("view_outs");
  ldmc_value x = FC_P(b, "x", dt, B, N, K), w = FC_P(b, "w", dt, C, K), bias = FC_P(b, "bias", dt, C);
  ldmc_value h = fc_linear(b, x, w);
  FC_OUT(b, fc_heads(b, h, B, N, H, D), "heads");
  FC_OUT(b, ldmc_transpose(b, ldmc_unary(b, LDMC_OP_TANH, x), (int64_t[]){2, 0, 1}), "tanh_t");
  ldmc_value sl = ldmc_slice(b, h, (int64_t[]){0, 1, 0}, (int64_t[]){B, N, C}, (int64_t[]){1, 1, 1});
  FC_OUT(b, sl, "slice");
  FC_OUT(b, ldmc_add(b, sl, fc_const(b, dt, 2.0)), "slice_plus");
  FC_OUT(b, ldmc_reduce(b, LDMC_REDUCE_SUM, sl, 1, (int64_t[]){1}, false), "slice_sum");
  FC_OUT(b, fc_bias_dim(b, bias, h, 2), "bias_b");
  fc_add(b, fc_t_acc(dt), -1, "outputs that are views of computed values %s B%" PRId64 " N%" PRId64 " K%" PRId64 " H%" PRId64
         " D%" PRId64, ldmc_dtype_name(dt), B, N, K, H, D);
}

/* epilogues through reshapes: [B*N, K] x W -> [B, N, F] + bias; conv -> [N, C, HW] + residual */
static void pat_epilogue_reshape(ldmc_dtype dt) {
  int64_t B = fc_small(), N = fc_size(), K = fc_int(1, 30), F = fc_int(1, 30), C = fc_int(1, 8), H = fc_small(), W = fc_size();
  ldmc_builder *b = ldmc_builder_new("epi_reshape");
  ldmc_value x = FC_P(b, "x", dt, B * N, K), w = FC_P(b, "w", dt, K, F), bias = FC_P(b, "bias", dt, F);
  ldmc_value h = ldmc_reshape(b, fc_matmul_w(b, x, w), 3, (int64_t[]){B, N, F});
  FC_OUT(b, ldmc_gelu(b, ldmc_add(b, h, fc_bias_dim(b, bias, h, 2))), "lin");
  ldmc_value img = FC_P(b, "img", dt, 1, C, H, W), wc = FC_P(b, "wc", dt, C, C, 3, 3), r = FC_P(b, "r", dt, 1, C, H * W);
  ldmc_value c = ldmc_reshape(b, ldmc_conv2d(b, img, wc, 1, 1, 1, 1), 3, (int64_t[]){1, C, H * W});
  FC_OUT(b, ldmc_add(b, ldmc_silu(b, c), r), "conv");
  fc_add(b, fc_t_acc(dt), -1, "epilogues through reshapes %s B%" PRId64 " N%" PRId64 " K%" PRId64 " F%" PRId64 " C%" PRId64 " %" PRId64
         "x%" PRId64, ldmc_dtype_name(dt), B, N, K, F, C, H, W);
}

/* the U-Net ResNet block: gn -> silu -> conv + bias + temb -> gn -> silu -> conv + bias + x */
static void pat_resnet(ldmc_dtype dt) {
  int64_t G = fc_int(1, 3), C = G * fc_int(1, 3), N = fc_int(1, 2), H = fc_int(1, 9), W = fc_int(1, 11), T = fc_int(1, 9);
  ldmc_builder *b = ldmc_builder_new("resnet");
  ldmc_value x = FC_P(b, "x", dt, N, C, H, W), temb = FC_P(b, "temb", dt, N, T);
  ldmc_value g1 = FC_P(b, "g1", dt, C), b1 = FC_P(b, "b1", dt, C), w1 = FC_P(b, "w_1", dt, C, C, 3, 3), c1 = FC_P(b, "c1", dt, C);
  ldmc_value wt = FC_P(b, "w_t", dt, C, T), bt = FC_P(b, "bt", dt, C);
  ldmc_value g2 = FC_P(b, "g2", dt, C), b2 = FC_P(b, "b2", dt, C), w2 = FC_P(b, "w_2", dt, C, C, 3, 3), c2 = FC_P(b, "c2", dt, C);
  ldmc_value h = ldmc_conv2d(b, ldmc_silu(b, ldmc_group_norm(b, x, g1, b1, (int)G, 1e-5)), w1, 1, 1, 1, 1);
  h = ldmc_add(b, h, fc_bias_dim(b, c1, h, 1));
  ldmc_value t = fc_linear(b, ldmc_silu(b, temb), wt); /* [N, C] */
  t = ldmc_add(b, t, fc_bias_dim(b, bt, t, 1));
  h = ldmc_add(b, h, ldmc_broadcast_in_dim(b, t, 4, (int64_t[]){N, C, H, W}, (int64_t[]){0, 1}));
  h = ldmc_conv2d(b, ldmc_silu(b, ldmc_group_norm(b, h, g2, b2, (int)G, 1e-5)), w2, 1, 1, 1, 1);
  h = ldmc_add(b, ldmc_add(b, h, fc_bias_dim(b, c2, h, 1)), x);
  FC_OUT(b, h, "out");
  fc_add(b, fc_t_acc(dt), -1, "ResNet block gn/silu/conv/temb/residual %s[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] G%" PRId64,
         ldmc_dtype_name(dt), N, C, H, W, G);
}

/* epilogues that may not fuse: the core's own operand as residual, the core
 * read at another element (c + c^T), a product of weights (prepack) */
static void pat_epilogue_edges(ldmc_dtype dt) {
  int64_t N = fc_int(1, 23), K = fc_int(1, 30);
  ldmc_builder *b = ldmc_builder_new("epi_edges");
  ldmc_value x = FC_P(b, "x", dt, N, K), w = FC_P(b, "w_a", dt, K, K), w2 = FC_P(b, "w_b", dt, K, K), bias = FC_P(b, "bias", dt, K);
  ldmc_value c = fc_matmul_w(b, x, w);
  FC_OUT(b, ldmc_add(b, ldmc_silu(b, c), x), "self_residual");
  ldmc_value sq = ldmc_matmul(b, x, ldmc_transpose(b, x, (int64_t[]){1, 0})); /* [N, N] */
  FC_OUT(b, ldmc_add(b, sq, ldmc_transpose(b, ldmc_unary(b, LDMC_OP_TANH, sq), (int64_t[]){1, 0})), "c_plus_ct");
  ldmc_value ww = ldmc_matmul(b, w, w2); /* weights only */
  ww = ldmc_silu(b, ldmc_add(b, ww, fc_bias_dim(b, bias, ww, 1)));
  FC_OUT(b, ldmc_matmul(b, x, ww), "x_ww");
  fc_add(b, fc_t_acc(dt), 1, "epilogue edges: self residual, c + tanh(c)^T, prepacked w@w %s N%" PRId64 " K%" PRId64, ldmc_dtype_name(dt),
         N, K);
}

static void fc_patterns(ldmc_dtype dt) {
  pat_resnet(dt);
  pat_epilogue_edges(dt);
  pat_degenerate(dt);
  pat_view_outputs(dt);
  pat_epilogue_reshape(dt);
  pat_ew_chain(dt);
  pat_multi_use(dt);
  pat_reshape_in_chain(dt);
  pat_concat(dt);
  pat_pad(dt);
  pat_iota_select(dt);
  pat_reduce(dt);
  pat_softmax(dt);
  pat_layer_norm(dt);
  pat_dot_bias_gelu(dt);
  pat_geglu(dt);
  pat_dot_epilogue_views(dt);
  pat_conv_bias_silu(dt);
  pat_conv_residual(dt);
  pat_conv_gn_silu(dt);
  pat_gn_residual(dt);
  pat_upsample_conv(dt);
  pat_slice_conv(dt);
  pat_attention_heads(dt, false);
  pat_attention_heads(dt, true);
  pat_proj_in(dt);
  pat_weights(dt);
  pat_outputs_inside(dt);
  pat_alias_outputs(dt, false);
  pat_alias_outputs(dt, true);
}

#endif
