/* Gradient checks (tests/grad_check.h) of the elementwise and movement VJP
 * rules, at odd and prime sizes, covering each attribute variety: reduce
 * axes and kinds, strided slices, pad with interior and negative edges,
 * gather/scatter_add along several axes with repeated and out-of-range
 * indices, broadcasts, transposes, concatenation, fan-out and a long chain.
 * Values stay away from the kinks of abs/max/min and the integer steps of
 * convert. Every case is checked twice: gc_check (finite differences, on the
 * interpreter) and gc_check_llvm (its f32 gradient graph on llvm-cpu at every
 * ISA level the host runs, against the interpreter); every case must run on
 * llvm-cpu (none skipped). Builders take their dtypes from the parameters,
 * so one builder serves both. */
#include "frontend/builder_internal.h" /* ldmc_builder_node: scatter_add has no builder function */
#define GC_LLVM
#include "grad_check.h"

typedef struct spec {
  ldmc_op op;
  ldmc_reduce_kind kind;
  int n;             /* entries of a/b/c used */
  int64_t a[8], b[8], c[8];
  int rank;          /* result rank and dims (broadcast_in_dim) */
  int64_t dims[8];
  int axis;
} spec;

#define PR(...) {GC_DT, SHAPE(__VA_ARGS__), NULL, false}
#define PP(...) {GC_DT, SHAPE(__VA_ARGS__), NULL, true}
#define PS {GC_DT, SHAPE0, NULL, false}
#define PIDX(vals, ...) {LDMC_I32, SHAPE(__VA_ARGS__), vals, false}

static uint64_t g_seed;

/* Both checks of a case. */
static void check_case(const gc_case *c) {
  uint64_t seed = ++g_seed;
  CHECK_MSG(gc_check(c, seed), "gradient check %s", c->name);
  CHECK_MSG(gc_check_llvm(c, seed) == GC_LLVM_PASS, "llvm-cpu gradients of %s", c->name);
}

static void run_case(const char *name, gc_build_fn fn, void *user, int n, const gc_param *ps) {
  gc_case c = {.name = name, .n_params = n, .build = fn, .user = user};
  for (int i = 0; i < n; i++) c.params[i] = ps[i];
  check_case(&c);
}
#define RUN(name, fn, user, ...) \
  run_case(name, fn, user, NELEM(((gc_param[]){__VA_ARGS__})), (gc_param[]){__VA_ARGS__})

/* ---- builders ---- */
static ldmc_value b_unary(ldmc_builder *b, const ldmc_value *p, void *u) {
  return ldmc_unary(b, ((spec *)u)->op, p[0]);
}
static ldmc_value b_binary(ldmc_builder *b, const ldmc_value *p, void *u) {
  return ldmc_binary(b, ((spec *)u)->op, p[0], p[1]);
}
static ldmc_value b_reduce(ldmc_builder *b, const ldmc_value *p, void *u) {
  spec *s = u;
  return ldmc_reduce(b, s->kind, p[0], s->n, s->a, false);
}
static ldmc_value b_slice(ldmc_builder *b, const ldmc_value *p, void *u) {
  spec *s = u;
  return ldmc_slice(b, p[0], s->a, s->b, s->c);
}
static ldmc_value b_pad(ldmc_builder *b, const ldmc_value *p, void *u) {
  spec *s = u;
  return ldmc_pad(b, p[0], p[1], s->a, s->b, s->c);
}
/* pad, then a nonlinearity, so ct reaching the pad value is not uniform */
static ldmc_value b_pad_sin(ldmc_builder *b, const ldmc_value *p, void *u) {
  return ldmc_unary(b, LDMC_OP_SIN, b_pad(b, p, u));
}
static ldmc_value b_gather(ldmc_builder *b, const ldmc_value *p, void *u) {
  return ldmc_gather(b, p[0], p[1], ((spec *)u)->axis);
}
/* gather with constant in-range indices (no clamping in the rule) */
static ldmc_value b_gather_const(ldmc_builder *b, const ldmc_value *p, void *u) {
  spec *s = u;
  int32_t idx[8];
  for (int i = 0; i < s->n; i++) idx[i] = (int32_t)s->a[i];
  ldmc_value c = ldmc_constant(b, LDMC_I32, 1, (int64_t[]){s->n}, idx);
  return ldmc_gather(b, p[0], c, s->axis);
}
static ldmc_value b_scatter_add(ldmc_builder *b, const ldmc_value *p, void *u) {
  ldmc_attrs at = {0};
  at.axis = ((spec *)u)->axis;
  ldmc_value ops[3] = {p[0], p[1], p[2]};
  ldmc_value s = ldmc_builder_node(b, LDMC_OP_SCATTER_ADD, ldmc_value_dtype(b, p[0]), NULL, 3, ops, &at);
  return ldmc_mul(b, s, s); /* squared: the cotangent of x and updates depends on the sum */
}
static ldmc_value b_broadcast(ldmc_builder *b, const ldmc_value *p, void *u) {
  spec *s = u;
  return ldmc_mul(b, ldmc_broadcast_in_dim(b, p[0], s->rank, s->dims, s->a), p[1]);
}
static ldmc_value b_reshape(ldmc_builder *b, const ldmc_value *p, void *u) {
  spec *s = u;
  return ldmc_mul(b, ldmc_reshape(b, p[0], s->rank, s->dims), p[1]);
}
static ldmc_value b_transpose(ldmc_builder *b, const ldmc_value *p, void *u) {
  return ldmc_transpose(b, p[0], ((spec *)u)->a);
}
static ldmc_value b_concat3(ldmc_builder *b, const ldmc_value *p, void *u) {
  return ldmc_unary(b, LDMC_OP_TANH, ldmc_concatenate(b, 3, p, ((spec *)u)->axis));
}
static ldmc_value b_select(ldmc_builder *b, const ldmc_value *p, void *u) {
  (void)u;
  ldmc_value pr = ldmc_compare_values(b, LDMC_CMP_LT, p[0], p[1]);
  return ldmc_select(b, pr, ldmc_mul(b, p[0], p[2]), ldmc_unary(b, LDMC_OP_SIN, p[1]));
}
/* x converted to y's dtype (mixed precision: f32/bf16/f16 -> f64), times y */
static ldmc_value b_convert_up(ldmc_builder *b, const ldmc_value *p, void *u) {
  (void)u;
  return ldmc_mul(b, ldmc_convert(b, p[0], ldmc_value_dtype(b, p[1])), p[1]);
}
/* convert through i32 carries no gradient: f = x * i32(x) */
static ldmc_value b_convert_int(ldmc_builder *b, const ldmc_value *p, void *u) {
  (void)u;
  return ldmc_mul(b, p[0], ldmc_convert(b, ldmc_convert(b, p[0], LDMC_I32), ldmc_value_dtype(b, p[0])));
}
/* x used three times */
static ldmc_value b_fanout(ldmc_builder *b, const ldmc_value *p, void *u) {
  (void)u;
  return ldmc_mul(b, ldmc_add(b, p[0], ldmc_unary(b, LDMC_OP_EXP, p[0])), ldmc_unary(b, LDMC_OP_TANH, p[0]));
}
/* ten ops in a row, mixing families */
static ldmc_value b_chain(ldmc_builder *b, const ldmc_value *p, void *u) {
  (void)u;
  ldmc_value v = ldmc_unary(b, LDMC_OP_SIN, p[0]);                               /* 1 [3,5] */
  v = ldmc_mul(b, v, p[1]);                                                    /* 2 (+ broadcast of p1 [5]) */
  v = ldmc_transpose(b, v, (int64_t[]){1, 0});                                /* 3 [5,3] */
  v = ldmc_unary(b, LDMC_OP_TANH, v);                                          /* 4 */
  v = ldmc_reshape(b, v, 1, (int64_t[]){15});                                  /* 5 */
  v = ldmc_slice(b, v, (int64_t[]){1}, (int64_t[]){14}, (int64_t[]){2});       /* 6 [7] */
  v = ldmc_unary(b, LDMC_OP_EXP, v);                                           /* 7 */
  v = ldmc_div(b, v, ldmc_slice(b, p[1], (int64_t[]){0}, (int64_t[]){1}, NULL)); /* 8, 9 */
  v = ldmc_unary(b, LDMC_OP_LOGISTIC, v);                                      /* 10 */
  return ldmc_reduce(b, LDMC_REDUCE_MAX, ldmc_reshape(b, v, 2, (int64_t[]){7, 1}), 1, (int64_t[]){1}, false);
}

/* ---- cases ---- */
static void test_unary(void) {
  static const struct { ldmc_op op; bool positive; } ops[] = {
      {LDMC_OP_NEG, false}, {LDMC_OP_ABS, false}, {LDMC_OP_EXP, false}, {LDMC_OP_LOG, true},
      {LDMC_OP_SQRT, true}, {LDMC_OP_RSQRT, true}, {LDMC_OP_TANH, false}, {LDMC_OP_LOGISTIC, false},
      {LDMC_OP_SIN, false}, {LDMC_OP_COS, false}, {LDMC_OP_ERF, false}};
  for (int i = 0; i < NELEM(ops); i++) {
    spec s = {.op = ops[i].op};
    char name[64];
    snprintf(name, sizeof name, "%s [3,5,7]", ldmc_op_name(ops[i].op));
    if (ops[i].positive)
      RUN(name, b_unary, &s, PP(3, 5, 7));
    else
      RUN(name, b_unary, &s, PR(3, 5, 7));
    snprintf(name, sizeof name, "%s [1,11]", ldmc_op_name(ops[i].op));
    if (ops[i].positive)
      RUN(name, b_unary, &s, PP(1, 11));
    else
      RUN(name, b_unary, &s, PR(1, 11));
  }
}

static void test_binary(void) {
  static const ldmc_op ops[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV, LDMC_OP_MAX, LDMC_OP_MIN};
  for (int i = 0; i < NELEM(ops); i++) {
    spec s = {.op = ops[i]};
    char name[64];
    snprintf(name, sizeof name, "%s [3,5,7]", ldmc_op_name(ops[i]));
    RUN(name, b_binary, &s, PR(3, 5, 7), PP(3, 5, 7));
    /* numpy broadcasting of y: broadcast_in_dim's rule sums over the new dims */
    snprintf(name, sizeof name, "%s [5,3] x [3]", ldmc_op_name(ops[i]));
    RUN(name, b_binary, &s, PR(5, 3), PP(3));
  }
  spec pw = {.op = LDMC_OP_POW};
  RUN("pow both operands [3,5]", b_binary, &pw, PP(3, 5), PR(3, 5));
  RUN("pow scalar exponent [7]", b_binary, &pw, PP(7), PS);
  RUN("select with compare predicate [3,7]", b_select, NULL, PR(3, 7), PR(3, 7), PR(3, 7));
  /* x in f32, bf16, f16; on llvm-cpu (llvm_keep_narrow) bf16 and f16 -> f32 */
  static const struct { ldmc_dtype dt; const char *name; } ups[] = {
      {LDMC_F32, "convert f32 -> f64 [5,3]"}, {LDMC_BF16, "convert bf16 -> f64 [5,3]"}, {LDMC_F16, "convert f16 -> f64 [5,3]"}};
  for (int i = 0; i < NELEM(ups); i++) {
    gc_case up = {.name = ups[i].name, .n_params = 2, .build = b_convert_up, .llvm_keep_narrow = true};
    up.params[0] = (gc_param){ups[i].dt, SHAPE(5, 3), NULL, false};
    up.params[1] = (gc_param)PR(5, 3);
    check_case(&up);
  }
  static const double v[] = {0.3, 1.6, 2.4, -0.7, -1.2, 0.55, 3.3};
  gc_case ci = {.name = "convert through i32 [7]", .n_params = 1, .build = b_convert_int};
  ci.params[0] = (gc_param){GC_DT, SHAPE(7), v, false};
  check_case(&ci);
}

static void test_reduce(void) {
  static const ldmc_reduce_kind kinds[] = {LDMC_REDUCE_SUM, LDMC_REDUCE_MAX, LDMC_REDUCE_MIN};
  for (int k = 0; k < NELEM(kinds); k++) {
    const char *kn = ldmc_reduce_kind_name(kinds[k]);
    char name[80];
    spec s1 = {.kind = kinds[k], .n = 1, .a = {1}};
    snprintf(name, sizeof name, "reduce %s axis 1 of [3,5,7]", kn);
    RUN(name, b_reduce, &s1, PR(3, 5, 7));
    spec s2 = {.kind = kinds[k], .n = 2, .a = {0, 2}};
    snprintf(name, sizeof name, "reduce %s axes 0,2 of [3,5,7]", kn);
    RUN(name, b_reduce, &s2, PR(3, 5, 7));
    spec s3 = {.kind = kinds[k], .n = 3, .a = {0, 1, 2}};
    snprintf(name, sizeof name, "reduce %s all of [3,5,7]", kn);
    RUN(name, b_reduce, &s3, PR(3, 5, 7));
    spec s4 = {.kind = kinds[k], .n = 2, .a = {1, 3}};
    snprintf(name, sizeof name, "reduce %s axes 1,3 of [3,1,5,2]", kn);
    RUN(name, b_reduce, &s4, PR(3, 1, 5, 2));
    spec s5 = {.kind = kinds[k], .n = 1, .a = {0}};
    snprintf(name, sizeof name, "reduce %s of [11]", kn);
    RUN(name, b_reduce, &s5, PR(11));
  }
}

static void test_slice_pad(void) {
  spec s1 = {.a = {1, 2}, .b = {7, 10}, .c = {2, 3}};
  RUN("slice [7,11] start 1,2 stride 2,3", b_slice, &s1, PR(7, 11));
  spec s2 = {.a = {0, 1, 2}, .b = {3, 5, 7}, .c = {1, 2, 3}};
  RUN("slice [3,5,7] strides 1,2,3", b_slice, &s2, PR(3, 5, 7));
  spec s3 = {.a = {2, 0}, .b = {3, 11}, .c = {5, 11}};
  RUN("slice [5,11] stride past the end", b_slice, &s3, PR(5, 11));
  spec p1 = {.a = {1, 2}, .b = {2, 0}, .c = {1, 2}};
  RUN("pad [3,5] low/high/interior", b_pad_sin, &p1, PR(3, 5), PS);
  spec p2 = {.a = {-1, 1}, .b = {2, -2}, .c = {1, 0}};
  RUN("pad [5,7] negative low and high", b_pad_sin, &p2, PR(5, 7), PS);
  spec p3 = {.a = {-2, 0, 1}, .b = {-1, 3, -3}, .c = {2, 0, 1}};
  RUN("pad [3,1,5] mixed", b_pad_sin, &p3, PR(3, 1, 5), PS);
  spec p4 = {.a = {0}, .b = {0}, .c = {0}};
  RUN("pad [7] no padding", b_pad_sin, &p4, PR(7), PS);
}

static void test_gather_scatter(void) {
  static const double i1[] = {1, 3, 1, 4}, i2[] = {0, 6, 6, 2, 2, 2}, i3[] = {-1, 8, 3, 3, 0, 6};
  spec a0 = {.axis = 0}, a1 = {.axis = 1}, a2 = {.axis = 2};
  RUN("gather [5,7] axis 0 repeated", b_gather, &a0, PR(5, 7), PIDX(i1, 4));
  RUN("gather [3,7] axis 1 idx [2,3]", b_gather, &a1, PR(3, 7), PIDX(i2, 2, 3));
  RUN("gather [3,5,7] axis 2 clamped", b_gather, &a2, PR(3, 5, 7), PIDX(i3, 6));
  spec c1 = {.axis = 1, .n = 5, .a = {4, 0, 4, 2, 4}};
  RUN("gather [3,5] axis 1 constant indices", b_gather_const, &c1, PR(3, 5));
  RUN("scatter_add [5,7] axis 0 repeated", b_scatter_add, &a0, PR(5, 7), PIDX(i1, 4), PR(4, 7));
  RUN("scatter_add [3,7] axis 1 idx [2,3]", b_scatter_add, &a1, PR(3, 7), PIDX(i2, 2, 3), PR(3, 2, 3));
  RUN("scatter_add [3,5,7] axis 2 skipped", b_scatter_add, &a2, PR(3, 5, 7), PIDX(i3, 6), PR(3, 5, 6));
}

static void test_shapes(void) {
  spec b1 = {.n = 2, .a = {1, 2}, .rank = 3, .dims = {2, 3, 5}};
  RUN("broadcast [3,1] -> [2,3,5]", b_broadcast, &b1, PR(3, 1), PR(2, 3, 5));
  spec b2 = {.n = 0, .rank = 2, .dims = {3, 5}};
  RUN("broadcast [] -> [3,5]", b_broadcast, &b2, PS, PR(3, 5));
  spec b3 = {.n = 1, .a = {0}, .rank = 3, .dims = {5, 1, 3}};
  RUN("broadcast [5] -> [5,1,3]", b_broadcast, &b3, PR(5), PR(5, 1, 3));
  spec b4 = {.n = 2, .a = {0, 1}, .rank = 2, .dims = {1, 7}};
  RUN("broadcast [1,1] -> [1,7]", b_broadcast, &b4, PR(1, 1), PR(1, 7));
  spec r1 = {.rank = 2, .dims = {15, 7}};
  RUN("reshape [3,5,7] -> [15,7]", b_reshape, &r1, PR(3, 5, 7), PR(15, 7));
  spec r2 = {.rank = 1, .dims = {11}};
  RUN("reshape [1,11] -> [11]", b_reshape, &r2, PR(1, 11), PR(11));
  spec t4 = {.a = {2, 0, 3, 1}};
  RUN("transpose [2,3,5,7] (2,0,3,1)", b_transpose, &t4, PR(2, 3, 5, 7));
  spec t3 = {.a = {1, 2, 0}};
  RUN("transpose [3,1,5] (1,2,0)", b_transpose, &t3, PR(3, 1, 5));
  spec c3 = {.axis = 1};
  RUN("concatenate 3 along axis 1", b_concat3, &c3, PR(3, 2, 5), PR(3, 1, 5), PR(3, 4, 5));
  spec c0 = {.axis = 0};
  RUN("concatenate 3 along axis 0", b_concat3, &c0, PR(1, 3), PR(5, 3), PR(2, 3));
}

static void test_graphs(void) {
  RUN("fan-out: x used 3 times [3,5,7]", b_fanout, NULL, PR(3, 5, 7));
  RUN("chain of 10 ops", b_chain, NULL, PR(3, 5), PP(5));
}

/* gc_check_llvm's measure: |got - want| / max(1, max |want|), NaN only on one
 * side or another shape: INFINITY. */
static void test_llvm_measure(void) {
  static const double want[] = {0.5, -2.0, 0.25}, near[] = {0.5, -2.0 + 1e-5, 0.25}, far[] = {0.5, -2.0, 0.25 + 4e-5};
  ldmc_tensor w = th_tensor(LDMC_F32, SHAPE(3), want), a = th_tensor(LDMC_F32, SHAPE(3), near),
              f = th_tensor(LDMC_F32, SHAPE(3), far), n = th_tensor(LDMC_F32, SHAPE(3), want),
              s = th_tensor(LDMC_F32, SHAPE(1, 3), want);
  int64_t at;
  CHECK(gc_llvm_err(&w, &w, &at) == 0.0);
  double e = gc_llvm_err(&a, &w, &at);
  CHECK_MSG(e <= gc_llvm_tol(LDMC_F32) && at == 1, "err %g at %lld", e, (long long)at);
  e = gc_llvm_err(&f, &w, &at);
  CHECK_MSG(e > gc_llvm_tol(LDMC_F32) && at == 2, "err %g at %lld", e, (long long)at);
  ldmc_tensor_set_elem(&n, 0, NAN);
  CHECK(isinf(gc_llvm_err(&n, &w, &at)) && at == 0);
  CHECK(isinf(gc_llvm_err(&w, &n, &at)));
  CHECK(gc_llvm_err(&n, &n, &at) == 0.0);
  CHECK(isinf(gc_llvm_err(&s, &w, &at)) && at < 0);
  ldmc_tensor ts[5] = {w, a, f, n, s};
  th_release(5, ts);
}

int main(void) {
  test_llvm_measure();
  test_unary();
  test_binary();
  test_reduce();
  test_slice_pad();
  test_gather_scatter();
  test_shapes();
  test_graphs();
  gc_llvm_summary("test_grad_primitives");
  return test_summary("test_grad_primitives");
}
