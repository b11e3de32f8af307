/* FLOP rules against hand arithmetic: per-element ops, reductions, dot_general,
 * convolution, attention, saturation, and ldmc_node_flops/ldmc_graph_flops on a
 * small graph. Expected numbers are written out from the formulas in
 * docs/ir.md, not taken from the code. */
#include <string.h>

#include "ir/ir.h"
#include "tests/test_util.h"

#define INTS(...) ((ldmc_ints){.n = (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), .v = {__VA_ARGS__}})

static ldmc_shape S(int rank, const int64_t *d) { return ldmc_shape_make(rank, d); }
#define SH(...) S((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

/* Infers the result type (so the query is well-formed), then runs the FLOP rule. */
static ldmc_flops flops_of(ldmc_op op, const ldmc_attrs *a, int n, const ldmc_shape *shapes, ldmc_dtype dt,
                           ldmc_shape decl) {
  ldmc_dtype dts[8];
  for (int i = 0; i < n; i++) dts[i] = dt;
  if (op == LDMC_OP_GATHER || op == LDMC_OP_SCATTER_ADD) dts[1] = LDMC_I64;
  ldmc_type_query q = {.op = op, .attrs = a, .n_operands = n, .operand_dtypes = dts, .operand_shapes = shapes,
                       .dtype = dt, .shape = decl};
  ldmc_flops f = {-1, -1};
  ldmc_status st = ldmc_infer_type(&q);
  CHECK_MSG(st == LDMC_OK, "%s: %s", ldmc_op_name(op), ldmc_last_error());
  if (st != LDMC_OK) return f;
  ldmc_op_table[op].flop_rule(&q, &f);
  return f;
}

#define EXPECT(f, m, o)                                                                                   \
  do {                                                                                                    \
    ldmc_flops f_ = (f);                                                                                  \
    CHECK_MSG(f_.mac == (int64_t)(m) && f_.other == (int64_t)(o), "line %d: mac %lld other %lld, want %lld %lld", \
              __LINE__, (long long)f_.mac, (long long)f_.other, (long long)(m), (long long)(o));            \
  } while (0)

static const ldmc_attrs none;

static void test_elementwise(void) {
  ldmc_shape x = SH(3, 5), xs[3] = {x, x, x};
  EXPECT(flops_of(LDMC_OP_ADD, &none, 2, xs, LDMC_F32, x), 0, 15);
  EXPECT(flops_of(LDMC_OP_EXP, &none, 1, xs, LDMC_F32, x), 0, 15);
  EXPECT(flops_of(LDMC_OP_SILU, &none, 1, xs, LDMC_F32, x), 0, 4 * 15);
  EXPECT(flops_of(LDMC_OP_GELU, &none, 1, xs, LDMC_F32, x), 0, 5 * 15);
  ldmc_attrs ax = {.axis = 1};
  EXPECT(flops_of(LDMC_OP_SOFTMAX, &ax, 1, xs, LDMC_F32, x), 0, 5 * 15);
  ldmc_shape gn[3] = {SH(2, 8, 4, 4), SH(8), SH(8)};
  ldmc_attrs g = {.groups = 4, .eps = 1e-5};
  EXPECT(flops_of(LDMC_OP_GROUP_NORM, &g, 3, gn, LDMC_F32, x), 0, 8 * 256);
  ldmc_shape ln[3] = {SH(2, 5, 6), SH(6), SH(6)};
  ldmc_attrs l = {.axis = 2};
  EXPECT(flops_of(LDMC_OP_LAYER_NORM, &l, 3, ln, LDMC_F32, x), 0, 8 * 60);
  ldmc_shape sel[3] = {x, x, x};
  ldmc_dtype dts[3] = {LDMC_PRED, LDMC_F32, LDMC_F32};
  ldmc_type_query q = {.op = LDMC_OP_SELECT, .attrs = &none, .n_operands = 3, .operand_dtypes = dts, .operand_shapes = sel};
  CHECK(ldmc_infer_type(&q) == LDMC_OK);
  ldmc_flops f;
  ldmc_op_table[LDMC_OP_SELECT].flop_rule(&q, &f);
  EXPECT(f, 0, 15);
  /* data movement costs nothing */
  ldmc_attrs tr = {.dims = INTS(1, 0)};
  EXPECT(flops_of(LDMC_OP_TRANSPOSE, &tr, 1, xs, LDMC_F32, x), 0, 0);
  EXPECT(flops_of(LDMC_OP_RESHAPE, &none, 1, xs, LDMC_F32, SH(15)), 0, 0);
  EXPECT(flops_of(LDMC_OP_CONVERT, &none, 1, xs, LDMC_F16, x), 0, 0);
  ldmc_attrs up = {.factor = 2};
  ldmc_shape u = SH(1, 3, 4, 4);
  EXPECT(flops_of(LDMC_OP_UPSAMPLE_NEAREST, &up, 1, &u, LDMC_F32, x), 0, 0);
}

static void test_reductions(void) {
  ldmc_attrs r = {.reduce = LDMC_REDUCE_SUM, .dims = INTS(0, 2)};
  ldmc_shape x = SH(2, 3, 4);
  EXPECT(flops_of(LDMC_OP_REDUCE, &r, 1, &x, LDMC_F32, x), 0, 24); /* numel(operand) */
  ldmc_attrs sc = {.axis = 1};
  ldmc_shape s[3] = {SH(5, 6), SH(3), SH(5, 3)};
  EXPECT(flops_of(LDMC_OP_SCATTER_ADD, &sc, 3, s, LDMC_F32, x), 0, 15); /* numel(updates) */
  ldmc_attrs ga = {.axis = 0};
  ldmc_shape gs[2] = {SH(100, 8), SH(4)};
  EXPECT(flops_of(LDMC_OP_GATHER, &ga, 2, gs, LDMC_F32, x), 0, 0);
}

static void test_dot(void) {
  ldmc_attrs mm = {.lhs_contract = INTS(1), .rhs_contract = INTS(0)};
  ldmc_shape a[2] = {SH(2, 3), SH(3, 4)};
  EXPECT(flops_of(LDMC_OP_DOT_GENERAL, &mm, 2, a, LDMC_F32, a[0]), 2 * 2 * 4 * 3, 0); /* 48 */
  ldmc_attrs bmm = {.lhs_batch = INTS(0), .rhs_batch = INTS(0), .lhs_contract = INTS(2), .rhs_contract = INTS(2)};
  ldmc_shape b[2] = {SH(8, 2, 3), SH(8, 4, 3)};
  EXPECT(flops_of(LDMC_OP_DOT_GENERAL, &bmm, 2, b, LDMC_F32, b[0]), 2 * 8 * 2 * 4 * 3, 0); /* 384 */
  /* SD-1.5 attention projection at 64x64 latents, c = 320: [2*4096, 320] x [320, 320] */
  ldmc_shape p[2] = {SH(8192, 320), SH(320, 320)};
  EXPECT(flops_of(LDMC_OP_DOT_GENERAL, &mm, 2, p, LDMC_BF16, p[0]), INT64_C(1677721600), 0);
  /* two contracting dims: 2 x 5 x 7 x (2 x 3) = 420 */
  ldmc_attrs c2 = {.lhs_contract = INTS(0, 2), .rhs_contract = INTS(1, 0)};
  ldmc_shape c[2] = {SH(2, 5, 3), SH(3, 2, 7)};
  EXPECT(flops_of(LDMC_OP_DOT_GENERAL, &c2, 2, c, LDMC_F32, c[0]), 420, 0);
}

static ldmc_attrs conv2d(int64_t stride, int64_t pad, int64_t groups) {
  ldmc_attrs c = {.window_stride = INTS(stride, stride), .pad_low = INTS(pad, pad), .pad_high = INTS(pad, pad),
                  .lhs_dilation = INTS(1, 1), .rhs_dilation = INTS(1, 1), .groups = groups,
                  .input_dims = INTS(0, 1, 2, 3), .kernel_dims = INTS(0, 1, 2, 3), .output_dims = INTS(0, 1, 2, 3)};
  return c;
}

static void test_conv(void) {
  ldmc_attrs c = conv2d(1, 1, 1);
  ldmc_shape a[2] = {SH(2, 4, 8, 8), SH(6, 4, 3, 3)};
  /* 2 x N 2 x C_out 6 x 8*8 x C_in 4 x 3*3 = 55296 */
  EXPECT(flops_of(LDMC_OP_CONVOLUTION, &c, 2, a, LDMC_F32, a[0]), 55296, 0);
  ldmc_attrs g = conv2d(1, 0, 4);
  ldmc_shape b[2] = {SH(1, 8, 5, 5), SH(4, 2, 3, 3)};
  /* 2 x 1 x 4 x 3*3 x (8/4) x 3*3 = 1296 */
  EXPECT(flops_of(LDMC_OP_CONVOLUTION, &g, 2, b, LDMC_F32, b[0]), 1296, 0);
  ldmc_attrs s = conv2d(2, 1, 1);
  ldmc_shape d[2] = {SH(1, 3, 9, 9), SH(5, 3, 3, 3)};
  /* out 5x5: 2 x 5 x 25 x 3 x 9 = 6750 */
  EXPECT(flops_of(LDMC_OP_CONVOLUTION, &s, 2, d, LDMC_F32, d[0]), 6750, 0);
  /* SD-1.5 conv at 64x64, c = 320, batch 2: 2 x 2 x 320 x 4096 x 320 x 9 */
  ldmc_shape sd[2] = {SH(2, 320, 64, 64), SH(320, 320, 3, 3)};
  EXPECT(flops_of(LDMC_OP_CONVOLUTION, &c, 2, sd, LDMC_F32, sd[0]), INT64_C(15099494400), 0);
  /* NHWC / HWIO gives the same count as NCHW / OIHW */
  ldmc_attrs nhwc = c;
  nhwc.input_dims = INTS(0, 3, 1, 2);
  nhwc.kernel_dims = INTS(3, 2, 0, 1);
  nhwc.output_dims = INTS(0, 3, 1, 2);
  ldmc_shape n[2] = {SH(2, 8, 8, 4), SH(3, 3, 4, 6)};
  EXPECT(flops_of(LDMC_OP_CONVOLUTION, &nhwc, 2, n, LDMC_F32, n[0]), 55296, 0);
}

static void test_attention(void) {
  ldmc_attrs a = {.scale = 0.125};
  ldmc_shape s[3] = {SH(2, 8, 16, 32), SH(2, 8, 10, 32), SH(2, 8, 10, 40)};
  /* L = 16, N = 16, M = 10, D = 32, E = 40: mac = 2 x 16 x 16 x 10 x 72, other = 6 x 16 x 16 x 10 */
  EXPECT(flops_of(LDMC_OP_ATTENTION, &a, 3, s, LDMC_F32, s[0]), 368640, 15360);
  ldmc_shape t[3] = {SH(3, 4), SH(7, 4), SH(7, 5)};
  EXPECT(flops_of(LDMC_OP_ATTENTION, &a, 3, t, LDMC_F32, t[0]), 2 * 3 * 7 * 9, 6 * 3 * 7);
  /* the backward ops (L N M = 16 x 16 x 10 = 2560): lse recomputes the scores (2 x 2560 x 32, other 5 x 2560);
   * grad_q the scores, dP and dq (2 x 2560 x (64 + 40)); grad_kv the scores, dP, dk and dv (4 x 2560 x 72);
   * both other 6 x 2560 */
  ldmc_shape g6[6] = {SH(2, 8, 16, 32), SH(2, 8, 10, 32), SH(2, 8, 10, 40), SH(2, 8, 16, 40), SH(2, 8, 16), SH(2, 8, 16)};
  EXPECT(flops_of(LDMC_OP_ATTENTION_LSE, &a, 2, s, LDMC_F32, SH(2, 8, 16)), 163840, 12800);
  EXPECT(flops_of(LDMC_OP_ATTENTION_GRAD_Q, &a, 6, g6, LDMC_F32, g6[0]), 532480, 15360);
  EXPECT(flops_of(LDMC_OP_ATTENTION_GRAD_KV, &a, 6, g6, LDMC_F32, SH(2, 8, 10, 72)), 737280, 15360);
}

static void test_saturation(void) {
  /* [2^40, 2^30] x [2^30, 2^40]: 2^111 FLOPs saturate instead of wrapping */
  ldmc_attrs mm = {.lhs_contract = INTS(1), .rhs_contract = INTS(0)};
  ldmc_shape big[2] = {SH(INT64_C(1) << 40, INT64_C(1) << 30), SH(INT64_C(1) << 30, INT64_C(1) << 40)};
  ldmc_dtype dts[2] = {LDMC_F32, LDMC_F32};
  ldmc_type_query q = {.op = LDMC_OP_DOT_GENERAL, .attrs = &mm, .n_operands = 2, .operand_dtypes = dts,
                       .operand_shapes = big, .shape = SH(INT64_C(1) << 40, INT64_C(1) << 40)};
  ldmc_flops f;
  ldmc_op_table[LDMC_OP_DOT_GENERAL].flop_rule(&q, &f);
  CHECK(f.mac == INT64_MAX && f.other == 0);
  q.op = LDMC_OP_ADD;
  ldmc_op_table[LDMC_OP_ADD].flop_rule(&q, &f);
  CHECK(f.other == INT64_MAX && f.mac == 0);
  /* an ill-formed query gives 0, not a crash */
  ldmc_type_query bad = {.op = LDMC_OP_CONVOLUTION, .attrs = &mm, .n_operands = 1, .operand_dtypes = dts,
                         .operand_shapes = big};
  ldmc_op_table[LDMC_OP_CONVOLUTION].flop_rule(&bad, &f);
  CHECK(f.mac == 0 && f.other == 0);
}

static void test_graph_flops(void) {
  ldmc_graph *g = ldmc_graph_new("mlp");
  ldmc_shape xs = SH(4, 8), ws = SH(8, 16);
  ldmc_attrs px = {.name = "x"}, pw = {.name = "w"};
  ldmc_attrs mm = {.lhs_contract = INTS(1), .rhs_contract = INTS(0)};
  int32_t x = ldmc_graph_add_checked(g, LDMC_OP_PARAMETER, LDMC_F32, &xs, 0, NULL, &px, NULL);
  int32_t w = ldmc_graph_add_checked(g, LDMC_OP_PARAMETER, LDMC_F32, &ws, 0, NULL, &pw, NULL);
  int32_t d = ldmc_graph_add_checked(g, LDMC_OP_DOT_GENERAL, LDMC_F32, NULL, 2, (int32_t[]){x, w}, &mm, NULL);
  int32_t s = ldmc_graph_add_checked(g, LDMC_OP_SILU, LDMC_F32, NULL, 1, &d, NULL, NULL);
  CHECK(s == 3);
  ldmc_flops f = ldmc_node_flops(g, d);
  EXPECT(f, 2 * 4 * 16 * 8, 0);
  f = ldmc_graph_flops(g);
  EXPECT(f, 1024, 4 * 64);
  ldmc_graph_free(g);
}

int main(void) {
  test_elementwise();
  test_reductions();
  test_dot();
  test_conv();
  test_attention();
  test_saturation();
  test_graph_flops();
  return test_summary("test_ir_flops");
}
