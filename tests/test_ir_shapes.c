/* Shape rules of every op (ldmc_infer_type): one or more valid cases whose
 * result types were worked out by hand from the rules in docs/ir.md, and
 * invalid cases whose messages must name the op and the rule broken. FLOP
 * rules are in test_ir_flops.c. */
#include <stdarg.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/test_util.h"

typedef struct ty {
  ldmc_dtype dt;
  ldmc_shape s;
} ty;

/* "f32[2,3]" -> type; written here, independently of ir/parse.c. */
static ty T(const char *str) {
  ty t = {0};
  const char *b = strchr(str, '[');
  if (!b || !ldmc_dtype_parse(str, (size_t)(b - str), &t.dt)) {
    fprintf(stderr, "bad test type %s\n", str);
    abort();
  }
  for (const char *p = b + 1; *p && *p != ']';) {
    char *end;
    t.s.dims[t.s.rank++] = strtoll(p, &end, 10);
    p = *end == ',' ? end + 1 : end;
  }
  return t;
}

static char *tstr(ldmc_dtype dt, const ldmc_shape *s, char *buf) {
  char sh[200];
  sprintf(buf, "%s%s", ldmc_dtype_name(dt), ldmc_shape_str(s, sh, sizeof sh));
  return buf;
}

static bool covered[LDMC_OP_COUNT];

static ldmc_status run(ldmc_op op, const ldmc_attrs *a, const char *decl, int n, const ty *ops, ty *res) {
  ldmc_dtype dts[16];
  ldmc_shape shapes[16];
  for (int i = 0; i < n; i++) dts[i] = ops[i].dt, shapes[i] = ops[i].s;
  ldmc_type_query q = {.op = op, .attrs = a, .n_operands = n, .operand_dtypes = dts, .operand_shapes = shapes};
  if (decl) {
    ty d = T(decl);
    q.dtype = d.dt;
    q.shape = d.s;
  }
  ldmc_error_clear();
  ldmc_status st = ldmc_infer_type(&q);
  res->dt = q.dtype;
  res->s = q.shape;
  return st;
}

static void ok_case(int line, ldmc_op op, const ldmc_attrs *a, const char *decl, const char *expect, int n,
                    const ty *ops) {
  ty r, want = T(expect);
  char b1[300], b2[300];
  ldmc_status st = run(op, a, decl, n, ops, &r);
  CHECK_MSG(st == LDMC_OK, "line %d: %s failed: %s", line, ldmc_op_name(op), ldmc_last_error());
  if (st != LDMC_OK) return;
  CHECK_MSG(r.dt == want.dt && ldmc_shape_equal(&r.s, &want.s), "line %d: %s gave %s, expected %s", line,
            ldmc_op_name(op), tstr(r.dt, &r.s, b1), tstr(want.dt, &want.s, b2));
  covered[op] = true;
}

static void err_case(int line, ldmc_op op, const ldmc_attrs *a, const char *decl, const char *needle, int n,
                     const ty *ops) {
  ty r;
  ldmc_status st = run(op, a, decl, n, ops, &r);
  const char *msg = ldmc_last_error();
  char prefix[64];
  snprintf(prefix, sizeof prefix, "%s: ", ldmc_op_name(op));
  CHECK_MSG(st == LDMC_ERR_INVALID, "line %d: %s accepted an invalid case (wanted '%s')", line, ldmc_op_name(op), needle);
  if (st == LDMC_OK) return;
  CHECK_MSG(strncmp(msg, prefix, strlen(prefix)) == 0 && strstr(msg, needle), "line %d: message '%s' lacks '%s%s'",
            line, msg, prefix, needle);
}

#define OPS(...) (int)(sizeof((ty[]){__VA_ARGS__}) / sizeof(ty)), (ty[]){__VA_ARGS__}
#define NOOPS 0, NULL
#define OK(op, attrs, decl, expect, ...) ok_case(__LINE__, LDMC_OP_##op, attrs, decl, expect, __VA_ARGS__)
#define ERR(op, attrs, decl, needle, ...) err_case(__LINE__, LDMC_OP_##op, attrs, decl, needle, __VA_ARGS__)
#define INTS(...) ((ldmc_ints){.n = (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), .v = {__VA_ARGS__}})
#define A(...) (&(ldmc_attrs){__VA_ARGS__})
static const ldmc_attrs none;

static void test_generic(void) {
  ERR(ADD, &none, NULL, "expects 2 operands, got 1", OPS(T("f32[2]")));
  ERR(PARAMETER, &none, "f32[2]", "expects 0 operands, got 1", OPS(T("f32[2]")));
  ERR(CONCATENATE, A(.axis = 0), NULL, "one or more operands", NOOPS);
  ty bad = T("f32[2]");
  bad.s.rank = 9;
  ERR(NEG, &none, NULL, "rank 9", 1, &bad);
  bad = T("f32[2,-1]");
  ERR(NEG, &none, NULL, "negative dim", 1, &bad);
  bad = T("f32[2]");
  bad.dt = (ldmc_dtype)17;
  ERR(NEG, &none, NULL, "invalid dtype", 1, &bad);
  ERR(TRANSPOSE, A(.dims = {.n = 9}), NULL, "attribute dims has 9 entries", OPS(T("f32[2]")));
  ERR(ATTENTION, A(.scale = INFINITY), NULL, "scale is not finite",
      OPS(T("f32[2,3]"), T("f32[4,3]"), T("f32[4,5]")));
  /* a NULL attrs pointer reads as all-zero attributes */
  OK(ADD, NULL, NULL, "f32[2]", OPS(T("f32[2]"), T("f32[2]")));
}

static void test_sources(void) {
  OK(PARAMETER, A(.name = "x"), "bf16[2,3]", "bf16[2,3]", NOOPS);
  OK(PARAMETER, A(.name = "s"), "pred[]", "pred[]", NOOPS);
  ERR(PARAMETER, A(.name = "x"), "f32[2,-3]", "negative dim", NOOPS);
  ERR(PARAMETER, A(.name = "x"), "f32[4611686018427387904,4]", "too large", NOOPS);
  float v[6] = {0};
  OK(CONSTANT, A(.value = {v, 24}), "f32[2,3]", "f32[2,3]", NOOPS);
  OK(CONSTANT, A(.value = {v, 8}), "i64[]", "i64[]", NOOPS);
  OK(CONSTANT, A(.value = {NULL, 0}), "f16[0,3]", "f16[0,3]", NOOPS);
  ERR(CONSTANT, A(.value = {v, 20}), "f32[2,3]", "value has 20 bytes, type f32[2,3] needs 24", NOOPS);
  ERR(CONSTANT, A(.value = {NULL, 24}), "f32[2,3]", "no data", NOOPS);
  OK(IOTA, A(.axis = 1), "i32[3,4]", "i32[3,4]", NOOPS);
  OK(IOTA, A(.axis = 0), "f32[5]", "f32[5]", NOOPS);
  ERR(IOTA, A(.axis = 2), "i32[3,4]", "axis 2 is outside 0..1", NOOPS);
  ERR(IOTA, A(.axis = -1), "i32[3,4]", "axis -1 is outside", NOOPS);
  ERR(IOTA, A(.axis = 0), "pred[3]", "numeric", NOOPS);
  OK(RNG_UNIFORM, &none, "f32[4,4]", "f32[4,4]", OPS(T("i64[]")));
  OK(RNG_NORMAL, &none, "bf16[2,1,3]", "bf16[2,1,3]", OPS(T("i64[]")));
  ERR(RNG_NORMAL, &none, "f32[4]", "key must be i64[], got i32[]", OPS(T("i32[]")));
  ERR(RNG_NORMAL, &none, "f32[4]", "key must be i64[], got i64[1]", OPS(T("i64[1]")));
  ERR(RNG_UNIFORM, &none, "i32[4]", "float", OPS(T("i64[]")));
}

static void test_elementwise(void) {
  OK(CONVERT, &none, "i32[]", "i32[2,3]", OPS(T("f32[2,3]")));
  OK(CONVERT, &none, "pred[]", "pred[5]", OPS(T("bf16[5]")));
  OK(NEG, &none, NULL, "i32[4]", OPS(T("i32[4]")));
  OK(ABS, &none, NULL, "f16[]", OPS(T("f16[]")));
  ERR(NEG, &none, NULL, "operand has dtype pred, needs a numeric dtype", OPS(T("pred[4]")));
  ERR(ABS, &none, NULL, "needs a numeric dtype", OPS(T("pred[4]")));
  static const ldmc_op float_unary[] = {LDMC_OP_EXP,  LDMC_OP_LOG, LDMC_OP_SQRT, LDMC_OP_RSQRT, LDMC_OP_TANH,
                                        LDMC_OP_LOGISTIC, LDMC_OP_SIN, LDMC_OP_COS, LDMC_OP_ERF, LDMC_OP_SILU,
                                        LDMC_OP_GELU};
  for (size_t i = 0; i < sizeof float_unary / sizeof float_unary[0]; i++) {
    ok_case(__LINE__, float_unary[i], &none, NULL, "bf16[3,1,7]", OPS(T("bf16[3,1,7]")));
    err_case(__LINE__, float_unary[i], &none, NULL, "operand has dtype i32, needs a float dtype", OPS(T("i32[3]")));
  }
  static const ldmc_op bin[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV, LDMC_OP_MAX, LDMC_OP_MIN};
  for (size_t i = 0; i < sizeof bin / sizeof bin[0]; i++) {
    ok_case(__LINE__, bin[i], &none, NULL, "i64[2,3]", OPS(T("i64[2,3]"), T("i64[2,3]")));
    ok_case(__LINE__, bin[i], &none, NULL, "f32[]", OPS(T("f32[]"), T("f32[]")));
    err_case(__LINE__, bin[i], &none, NULL, "operand shapes f32[2,3] and f32[3,2] differ",
             OPS(T("f32[2,3]"), T("f32[3,2]")));
    err_case(__LINE__, bin[i], &none, NULL, "operand shapes f32[1,3] and f32[2,3] differ", /* no broadcasting */
             OPS(T("f32[1,3]"), T("f32[2,3]")));
    err_case(__LINE__, bin[i], &none, NULL, "operand dtypes f32[2] and f16[2] differ", OPS(T("f32[2]"), T("f16[2]")));
    err_case(__LINE__, bin[i], &none, NULL, "needs a numeric dtype", OPS(T("pred[2]"), T("pred[2]")));
  }
  OK(POW, &none, NULL, "f16[4]", OPS(T("f16[4]"), T("f16[4]")));
  ERR(POW, &none, NULL, "needs a float dtype", OPS(T("i32[4]"), T("i32[4]")));
  OK(COMPARE, A(.direction = LDMC_CMP_LT), NULL, "pred[2,2]", OPS(T("f32[2,2]"), T("f32[2,2]")));
  OK(COMPARE, A(.direction = LDMC_CMP_EQ), NULL, "pred[3]", OPS(T("pred[3]"), T("pred[3]")));
  ERR(COMPARE, A(.direction = LDMC_CMP_LT), NULL, "operand shapes", OPS(T("f32[2]"), T("f32[3]")));
  ERR(COMPARE, A(.direction = LDMC_CMP_LT), NULL, "operand dtypes", OPS(T("f32[2]"), T("i32[2]")));
  ERR(COMPARE, A(.direction = (ldmc_compare)9), NULL, "direction has invalid value 9", OPS(T("f32[2]"), T("f32[2]")));
  OK(SELECT, &none, NULL, "f32[2,3]", OPS(T("pred[2,3]"), T("f32[2,3]"), T("f32[2,3]")));
  OK(SELECT, &none, NULL, "pred[]", OPS(T("pred[]"), T("pred[]"), T("pred[]")));
  ERR(SELECT, &none, NULL, "predicate f32[2,3] must be pred", OPS(T("f32[2,3]"), T("f32[2,3]"), T("f32[2,3]")));
  ERR(SELECT, &none, NULL, "predicate pred[] must be pred with the shape of f32[2,3]",
      OPS(T("pred[]"), T("f32[2,3]"), T("f32[2,3]")));
  ERR(SELECT, &none, NULL, "branch dtypes", OPS(T("pred[2]"), T("f32[2]"), T("i32[2]")));
  ERR(SELECT, &none, NULL, "branch shapes", OPS(T("pred[2]"), T("f32[2]"), T("f32[1]")));
}

static void test_movement(void) {
  OK(BROADCAST_IN_DIM, A(.dims = INTS(1)), "f32[2,3]", "f32[2,3]", OPS(T("f32[3]")));
  OK(BROADCAST_IN_DIM, A(.dims = INTS(0, 2)), "i32[4,5,3]", "f32[4,5,3]", OPS(T("f32[1,3]"))); /* dtype from operand */
  OK(BROADCAST_IN_DIM, A(.dims = {0}), "f32[2,2]", "f32[2,2]", OPS(T("f32[]")));
  ERR(BROADCAST_IN_DIM, A(.dims = INTS(0)), "f32[2,3]", "operand dim 0 (3) must be 1 or equal result dim 0 (2)",
      OPS(T("f32[3]")));
  ERR(BROADCAST_IN_DIM, A(.dims = INTS(1, 0)), "f32[2,2]", "strictly increasing", OPS(T("f32[2,2]")));
  ERR(BROADCAST_IN_DIM, A(.dims = INTS(0, 0)), "f32[2,2]", "strictly increasing", OPS(T("f32[2,2]")));
  ERR(BROADCAST_IN_DIM, A(.dims = INTS(2)), "f32[2,2]", "outside the result rank 2", OPS(T("f32[2]")));
  ERR(BROADCAST_IN_DIM, A(.dims = INTS(0)), "f32[2,2]", "dims has 1 entries, expected 2", OPS(T("f32[2,2]")));
  OK(RESHAPE, &none, "f32[3,2]", "f32[3,2]", OPS(T("f32[2,3]")));
  OK(RESHAPE, &none, "i64[]", "bf16[]", OPS(T("bf16[1,1]")));
  OK(RESHAPE, &none, "f32[0,5]", "f32[0,5]", OPS(T("f32[5,0]")));
  ERR(RESHAPE, &none, "f32[7]", "element counts differ: f32[2,3] has 6, f32[7] has 7", OPS(T("f32[2,3]")));
  OK(TRANSPOSE, A(.dims = INTS(2, 0, 1)), NULL, "f32[4,2,3]", OPS(T("f32[2,3,4]")));
  OK(TRANSPOSE, A(.dims = INTS(1, 0)), NULL, "i32[5,2]", OPS(T("i32[2,5]")));
  ERR(TRANSPOSE, A(.dims = INTS(0, 0, 1)), NULL, "not a permutation of 0..2", OPS(T("f32[2,3,4]")));
  ERR(TRANSPOSE, A(.dims = INTS(0, 3, 1)), NULL, "not a permutation", OPS(T("f32[2,3,4]")));
  ERR(TRANSPOSE, A(.dims = INTS(0, 1)), NULL, "dims has 2 entries, expected 3", OPS(T("f32[2,3,4]")));
  /* ceil((8-1)/3) = 3, ceil((6-0)/2) = 3, ceil(0/1) = 0 */
  OK(SLICE, A(.start = INTS(1, 0, 2), .limit = INTS(8, 6, 2), .stride = INTS(3, 2, 1)), NULL, "f32[3,3,0]",
     OPS(T("f32[10,6,4]")));
  ERR(SLICE, A(.start = INTS(0), .limit = INTS(11), .stride = INTS(1)), NULL, "limit (11) <= dim (10)",
      OPS(T("f32[10]")));
  ERR(SLICE, A(.start = INTS(5), .limit = INTS(4), .stride = INTS(1)), NULL, "start (5) <= limit (4)",
      OPS(T("f32[10]")));
  ERR(SLICE, A(.start = INTS(-1), .limit = INTS(4), .stride = INTS(1)), NULL, "0 <= start", OPS(T("f32[10]")));
  ERR(SLICE, A(.start = INTS(0), .limit = INTS(4), .stride = INTS(0)), NULL, "stride 0 must be >= 1",
      OPS(T("f32[10]")));
  ERR(SLICE, A(.start = INTS(0), .limit = INTS(4), .stride = INTS(1, 1)), NULL, "stride has 2 entries",
      OPS(T("f32[10]")));
  OK(CONCATENATE, A(.axis = 1), NULL, "f32[2,8]", OPS(T("f32[2,3]"), T("f32[2,1]"), T("f32[2,4]")));
  OK(CONCATENATE, A(.axis = 0), NULL, "i32[5]", OPS(T("i32[5]")));
  ERR(CONCATENATE, A(.axis = 1), NULL, "operand 1 (f32[3,1]) does not match operand 0 (f32[2,3]) outside axis 1",
      OPS(T("f32[2,3]"), T("f32[3,1]")));
  ERR(CONCATENATE, A(.axis = 0), NULL, "does not match", OPS(T("f32[2,3]"), T("f16[2,3]")));
  ERR(CONCATENATE, A(.axis = 0), NULL, "does not match", OPS(T("f32[2,3]"), T("f32[2,3,1]")));
  ERR(CONCATENATE, A(.axis = 2), NULL, "axis 2 is outside 0..1", OPS(T("f32[2,3]"), T("f32[2,3]")));
  /* dim0: 1 + 2 + 4 + 3*1 = 10; dim1: -1 + 0 + 5 = 4; dim2: 0 + 0 + 0 + 0 (empty dim, no interior gaps) */
  OK(PAD, A(.low = INTS(1, -1, 0), .high = INTS(2, 0, 0), .interior = INTS(1, 0, 5)), NULL, "f32[10,4,0]",
     OPS(T("f32[4,5,0]"), T("f32[]")));
  ERR(PAD, A(.low = INTS(0), .high = INTS(0), .interior = INTS(0)), NULL, "pad value f32[1] must be a scalar f32[]",
      OPS(T("f32[4]"), T("f32[1]")));
  ERR(PAD, A(.low = INTS(0), .high = INTS(0), .interior = INTS(0)), NULL, "must be a scalar",
      OPS(T("f32[4]"), T("i32[]")));
  ERR(PAD, A(.low = INTS(0), .high = INTS(0), .interior = INTS(-1)), NULL, "interior -1 must be >= 0",
      OPS(T("f32[4]"), T("f32[]")));
  ERR(PAD, A(.low = INTS(-3), .high = INTS(-2), .interior = INTS(0)), NULL, "padded size -1 is negative",
      OPS(T("f32[4]"), T("f32[]")));
  ERR(PAD, A(.low = INTS(0, 0), .high = INTS(0), .interior = INTS(0)), NULL, "low has 2 entries",
      OPS(T("f32[4]"), T("f32[]")));
  OK(GATHER, A(.axis = 1), NULL, "f32[5,2,3,7]", OPS(T("f32[5,6,7]"), T("i32[2,3]")));
  OK(GATHER, A(.axis = 0), NULL, "bf16[4]", OPS(T("bf16[10]"), T("i64[4]")));
  OK(GATHER, A(.axis = 0), NULL, "f32[8]", OPS(T("f32[100,8]"), T("i64[]"))); /* scalar index drops the axis */
  ERR(GATHER, A(.axis = 0), NULL, "indices has dtype f32, needs an integer dtype", OPS(T("f32[10]"), T("f32[4]")));
  ERR(GATHER, A(.axis = 2), NULL, "axis 2 is outside", OPS(T("f32[10,3]"), T("i32[4]")));
  ERR(GATHER, A(.axis = 0), NULL, "result rank 9 exceeds 8",
      OPS(T("f32[2,2,2,2,2]"), T("i32[2,2,2,2,2]")));
  OK(SCATTER_ADD, A(.axis = 1), NULL, "f32[5,6]", OPS(T("f32[5,6]"), T("i64[3]"), T("f32[5,3]")));
  OK(SCATTER_ADD, A(.axis = 0), NULL, "i32[10,4]", OPS(T("i32[10,4]"), T("i32[2,3]"), T("i32[2,3,4]")));
  ERR(SCATTER_ADD, A(.axis = 1), NULL, "updates f32[3,5] must be f32[5,3]",
      OPS(T("f32[5,6]"), T("i64[3]"), T("f32[3,5]")));
  ERR(SCATTER_ADD, A(.axis = 1), NULL, "updates f16[5,3] must be f32[5,3]",
      OPS(T("f32[5,6]"), T("i64[3]"), T("f16[5,3]")));
  ERR(SCATTER_ADD, A(.axis = 0), NULL, "numeric", OPS(T("pred[5]"), T("i64[3]"), T("pred[3]")));
}

static void test_contractions(void) {
  OK(REDUCE, A(.reduce = LDMC_REDUCE_SUM, .dims = INTS(0, 2)), NULL, "f32[3]", OPS(T("f32[2,3,4]")));
  OK(REDUCE, A(.reduce = LDMC_REDUCE_MAX, .dims = INTS(0, 1)), NULL, "i32[]", OPS(T("i32[2,3]")));
  OK(REDUCE, A(.reduce = LDMC_REDUCE_MIN, .dims = {0}), NULL, "f32[2,3]", OPS(T("f32[2,3]")));
  ERR(REDUCE, A(.dims = INTS(2, 0)), NULL, "sorted and unique", OPS(T("f32[2,3,4]")));
  ERR(REDUCE, A(.dims = INTS(1, 1)), NULL, "sorted and unique", OPS(T("f32[2,3,4]")));
  ERR(REDUCE, A(.dims = INTS(3)), NULL, "reduced dim 3 is outside 0..2", OPS(T("f32[2,3,4]")));
  ERR(REDUCE, A(.dims = INTS(0)), NULL, "numeric", OPS(T("pred[2]")));
  ERR(REDUCE, A(.reduce = (ldmc_reduce_kind)7, .dims = INTS(0)), NULL, "invalid value 7", OPS(T("f32[2]")));

  ldmc_attrs mm = {.lhs_contract = INTS(1), .rhs_contract = INTS(0)};
  OK(DOT_GENERAL, &mm, NULL, "f32[2,4]", OPS(T("f32[2,3]"), T("f32[3,4]")));
  OK(DOT_GENERAL, A(.lhs_batch = INTS(0), .rhs_batch = INTS(0), .lhs_contract = INTS(2), .rhs_contract = INTS(2)),
     NULL, "f32[8,2,4]", OPS(T("f32[8,2,3]"), T("f32[8,4,3]")));
  /* batch dims not leading: result still batch ++ lhs free ++ rhs free */
  OK(DOT_GENERAL, A(.lhs_batch = INTS(2), .rhs_batch = INTS(1), .lhs_contract = INTS(1), .rhs_contract = INTS(0)),
     NULL, "f32[8,2,4]", OPS(T("f32[2,3,8]"), T("f32[3,8,4]")));
  OK(DOT_GENERAL, &none, NULL, "i32[2,3,5]", OPS(T("i32[2,3]"), T("i32[5]"))); /* outer product */
  OK(DOT_GENERAL, A(.lhs_contract = INTS(0, 1), .rhs_contract = INTS(1, 0)), NULL, "bf16[]",
     OPS(T("bf16[2,3]"), T("bf16[3,2]")));
  ERR(DOT_GENERAL, &mm, NULL, "contracting dims differ: lhs dim 1 (3) vs rhs dim 0 (5)",
      OPS(T("f32[2,3]"), T("f32[5,4]")));
  ERR(DOT_GENERAL, A(.lhs_batch = INTS(0), .rhs_batch = INTS(0), .lhs_contract = INTS(2), .rhs_contract = INTS(1)),
      NULL, "batch dims differ", OPS(T("f32[8,2,3]"), T("f32[4,3,5]")));
  ERR(DOT_GENERAL, A(.lhs_batch = INTS(0), .rhs_batch = INTS(0), .lhs_contract = INTS(0), .rhs_contract = INTS(1)),
      NULL, "dim 0 is listed twice", OPS(T("f32[3,3]"), T("f32[3,3]")));
  ERR(DOT_GENERAL, A(.lhs_contract = INTS(1), .rhs_contract = INTS(0, 1)), NULL,
      "lhs_contract has 1 entries, rhs_contract 2", OPS(T("f32[2,3]"), T("f32[3,4]")));
  ERR(DOT_GENERAL, A(.lhs_contract = INTS(2), .rhs_contract = INTS(0)), NULL, "lhs_contract 2 is outside",
      OPS(T("f32[2,3]"), T("f32[3,4]")));
  ERR(DOT_GENERAL, &mm, NULL, "operand dtypes f32[2,3] and bf16[3,4] differ", OPS(T("f32[2,3]"), T("bf16[3,4]")));
  ERR(DOT_GENERAL, &none, NULL, "result rank 10 exceeds 8", OPS(T("f32[1,1,1,1,1]"), T("f32[1,1,1,1,1]")));

  /* NCHW / OIHW, 3x3, pad 1: (8 + 2 - 3)/1 + 1 = 8 */
  ldmc_attrs c = {.window_stride = INTS(1, 1), .pad_low = INTS(1, 1), .pad_high = INTS(1, 1),
                  .lhs_dilation = INTS(1, 1), .rhs_dilation = INTS(1, 1), .groups = 1,
                  .input_dims = INTS(0, 1, 2, 3), .kernel_dims = INTS(0, 1, 2, 3), .output_dims = INTS(0, 1, 2, 3)};
  OK(CONVOLUTION, &c, NULL, "f32[2,6,8,8]", OPS(T("f32[2,4,8,8]"), T("f32[6,4,3,3]")));
  ldmc_attrs s2 = c;
  s2.window_stride = INTS(2, 2); /* floor((8 + 2 - 3)/2) + 1 = 4 */
  OK(CONVOLUTION, &s2, NULL, "f32[2,6,4,4]", OPS(T("f32[2,4,8,8]"), T("f32[6,4,3,3]")));
  /* NHWC input, HWIO kernel, NHWC output; H: floor((9 + 1 + 0 - 3)/2) + 1 = 4, W: (5 + 2 - 3)/2 + 1 = 3 */
  ldmc_attrs nhwc = {.window_stride = INTS(2, 2), .pad_low = INTS(1, 1), .pad_high = INTS(0, 1),
                     .lhs_dilation = INTS(1, 1), .rhs_dilation = INTS(1, 1), .groups = 1,
                     .input_dims = INTS(0, 3, 1, 2), .kernel_dims = INTS(3, 2, 0, 1), .output_dims = INTS(0, 3, 1, 2)};
  OK(CONVOLUTION, &nhwc, NULL, "bf16[2,4,3,16]", OPS(T("bf16[2,9,5,8]"), T("bf16[3,3,8,16]")));
  ldmc_attrs g4 = c;
  g4.pad_low = g4.pad_high = INTS(0, 0);
  g4.groups = 4; /* 8 in / 4 groups = 2 per group; (5 - 3) + 1 = 3 */
  OK(CONVOLUTION, &g4, NULL, "f32[1,4,3,3]", OPS(T("f32[1,8,5,5]"), T("f32[4,2,3,3]")));
  ldmc_attrs dil = c;
  dil.pad_low = dil.pad_high = INTS(0, 0);
  dil.rhs_dilation = INTS(2, 1); /* H: dilated kernel 5, 7 - 5 + 1 = 3; W: 7 - 3 + 1 = 5 */
  dil.lhs_dilation = INTS(1, 2); /* W input dilated: (4 - 1) * 2 + 1 = 7 */
  OK(CONVOLUTION, &dil, NULL, "f32[1,2,3,5]", OPS(T("f32[1,3,7,4]"), T("f32[2,3,3,3]")));
  ldmc_attrs c1 = {.window_stride = INTS(1), .pad_low = INTS(0), .pad_high = INTS(0), .lhs_dilation = INTS(1),
                   .rhs_dilation = INTS(1), .groups = 1, .input_dims = INTS(0, 1, 2), .kernel_dims = INTS(0, 1, 2),
                   .output_dims = INTS(0, 1, 2)};
  OK(CONVOLUTION, &c1, NULL, "f16[3,5,8]", OPS(T("f16[3,2,10]"), T("f16[5,2,3]"))); /* 1-D */
  ERR(CONVOLUTION, &c, NULL, "kernel in_feature 3 must equal input features / groups = 4 / 1",
      OPS(T("f32[2,4,8,8]"), T("f32[6,3,3,3]")));
  ldmc_attrs g3 = c;
  g3.groups = 3;
  ERR(CONVOLUTION, &g3, NULL, "input features 4 not divisible by groups 3", OPS(T("f32[2,4,8,8]"), T("f32[6,1,3,3]")));
  ldmc_attrs g2 = c;
  g2.groups = 2;
  ERR(CONVOLUTION, &g2, NULL, "output features 5 not divisible by groups 2", OPS(T("f32[2,4,8,8]"), T("f32[5,2,3,3]")));
  ldmc_attrs g0 = c;
  g0.groups = 0;
  ERR(CONVOLUTION, &g0, NULL, "groups 0 must be >= 1", OPS(T("f32[2,4,8,8]"), T("f32[6,4,3,3]")));
  ldmc_attrs p0 = c;
  p0.pad_low = p0.pad_high = INTS(0, 0); /* H: floor((1 - 5)/1) + 1 = -3 */
  ERR(CONVOLUTION, &p0, NULL, "output size -3 is negative", OPS(T("f32[1,1,1,8]"), T("f32[1,1,5,1]")));
  ldmc_attrs st0 = c;
  st0.window_stride = INTS(1, 0);
  ERR(CONVOLUTION, &st0, NULL, "must be >= 1", OPS(T("f32[2,4,8,8]"), T("f32[6,4,3,3]")));
  ldmc_attrs badperm = c;
  badperm.input_dims = INTS(0, 1, 1, 3);
  ERR(CONVOLUTION, &badperm, NULL, "input_dims is not a permutation", OPS(T("f32[2,4,8,8]"), T("f32[6,4,3,3]")));
  ldmc_attrs shortpad = c;
  shortpad.pad_low = INTS(1);
  ERR(CONVOLUTION, &shortpad, NULL, "pad_low has 1 entries, expected 2", OPS(T("f32[2,4,8,8]"), T("f32[6,4,3,3]")));
  ERR(CONVOLUTION, &c, NULL, "input has dtype i32, needs a float dtype", OPS(T("i32[2,4,8,8]"), T("i32[6,4,3,3]")));
  ERR(CONVOLUTION, &c, NULL, "operand dtypes", OPS(T("f32[2,4,8,8]"), T("f16[6,4,3,3]")));
  ERR(CONVOLUTION, &c, NULL, "same rank >= 3", OPS(T("f32[2,4]"), T("f32[6,4]")));
}

static void test_composites(void) {
  OK(SOFTMAX, A(.axis = 1), NULL, "f32[2,7]", OPS(T("f32[2,7]")));
  ERR(SOFTMAX, A(.axis = 2), NULL, "axis 2 is outside 0..1", OPS(T("f32[2,7]")));
  ERR(SOFTMAX, A(.axis = 0), NULL, "needs a float dtype", OPS(T("i32[2]")));
  OK(GROUP_NORM, A(.groups = 4, .eps = 1e-5), NULL, "f32[2,8,4,4]", OPS(T("f32[2,8,4,4]"), T("f32[8]"), T("f32[8]")));
  OK(GROUP_NORM, A(.groups = 1, .eps = 0), NULL, "bf16[3,6]", OPS(T("bf16[3,6]"), T("bf16[6]"), T("bf16[6]")));
  ERR(GROUP_NORM, A(.groups = 3, .eps = 1e-5), NULL, "channels 8 not divisible by groups 3",
      OPS(T("f32[2,8,4,4]"), T("f32[8]"), T("f32[8]")));
  ERR(GROUP_NORM, A(.groups = 0), NULL, "groups 0 must be >= 1", OPS(T("f32[2,8,4,4]"), T("f32[8]"), T("f32[8]")));
  ERR(GROUP_NORM, A(.groups = 4), NULL, "gamma f32[4] must be f32[8]", OPS(T("f32[2,8,4,4]"), T("f32[4]"), T("f32[8]")));
  ERR(GROUP_NORM, A(.groups = 4), NULL, "beta f16[8] must be f32[8]", OPS(T("f32[2,8,4,4]"), T("f32[8]"), T("f16[8]")));
  ERR(GROUP_NORM, A(.groups = 4, .eps = -1e-5), NULL, "must be finite and >= 0",
      OPS(T("f32[2,8,4,4]"), T("f32[8]"), T("f32[8]")));
  ERR(GROUP_NORM, A(.groups = 1), NULL, "rank >= 2", OPS(T("f32[8]"), T("f32[8]"), T("f32[8]")));
  OK(LAYER_NORM, A(.axis = 1, .eps = 1e-6), NULL, "f32[2,5,6]", OPS(T("f32[2,5,6]"), T("f32[5,6]"), T("f32[5,6]")));
  OK(LAYER_NORM, A(.axis = 2), NULL, "f32[2,5,6]", OPS(T("f32[2,5,6]"), T("f32[6]"), T("f32[6]")));
  ERR(LAYER_NORM, A(.axis = 1), NULL, "gamma f32[6] must be f32[5,6]", OPS(T("f32[2,5,6]"), T("f32[6]"), T("f32[6]")));
  ERR(LAYER_NORM, A(.axis = 3), NULL, "axis 3 is outside", OPS(T("f32[2,5,6]"), T("f32[6]"), T("f32[6]")));
  OK(ATTENTION, A(.scale = 0.125), NULL, "f32[2,8,16,40]",
     OPS(T("f32[2,8,16,32]"), T("f32[2,8,10,32]"), T("f32[2,8,10,40]")));
  OK(ATTENTION, &none, NULL, "f16[3,5]", OPS(T("f16[3,4]"), T("f16[7,4]"), T("f16[7,5]")));
  ERR(ATTENTION, &none, NULL, "differ in the last (head) dim", OPS(T("f32[3,4]"), T("f32[7,5]"), T("f32[7,5]")));
  ERR(ATTENTION, &none, NULL, "differ in the key count", OPS(T("f32[3,4]"), T("f32[7,4]"), T("f32[6,5]")));
  ERR(ATTENTION, &none, NULL, "leading dims", OPS(T("f32[2,3,4]"), T("f32[1,7,4]"), T("f32[1,7,5]")));
  ERR(ATTENTION, &none, NULL, "same rank >= 2", OPS(T("f32[4]"), T("f32[4]"), T("f32[4]")));
  ERR(ATTENTION, &none, NULL, "must share a dtype", OPS(T("f32[3,4]"), T("f16[7,4]"), T("f32[7,5]")));
  ERR(ATTENTION, &none, NULL, "q has dtype i32", OPS(T("i32[3,4]"), T("i32[7,4]"), T("i32[7,5]")));
  /* attention's backward: f32 results (f64 for f64), lse and delta [..., N] in that dtype */
  OK(ATTENTION_LSE, A(.scale = 0.125), NULL, "f32[2,8,16]", OPS(T("f32[2,8,16,32]"), T("f32[2,8,10,32]")));
  OK(ATTENTION_LSE, &none, NULL, "f32[3]", OPS(T("bf16[3,4]"), T("bf16[7,4]")));
  OK(ATTENTION_LSE, &none, NULL, "f64[2,3]", OPS(T("f64[2,3,4]"), T("f64[2,7,4]")));
  ERR(ATTENTION_LSE, &none, NULL, "q f32[3,4] and k f16[7,4] must share a dtype", OPS(T("f32[3,4]"), T("f16[7,4]")));
  ERR(ATTENTION_LSE, &none, NULL, "differ in the last (head) dim", OPS(T("f32[3,4]"), T("f32[7,5]")));
  ERR(ATTENTION_LSE, &none, NULL, "leading dims of q", OPS(T("f32[2,3,4]"), T("f32[1,7,4]")));
  ERR(ATTENTION_LSE, A(.scale = NAN), NULL, "not finite", OPS(T("f32[3,4]"), T("f32[7,4]")));
  ERR(ATTENTION_LSE, &none, NULL, "operand 1 type f32[2,9223372036854775807] is too large",
      OPS(T("f32[2,3]"), T("f32[2,9223372036854775807]")));
  OK(ATTENTION_GRAD_Q, A(.scale = 0.125), NULL, "f32[2,8,16,32]",
     OPS(T("f32[2,8,16,32]"), T("f32[2,8,10,32]"), T("f32[2,8,10,40]"), T("f32[2,8,16,40]"), T("f32[2,8,16]"),
         T("f32[2,8,16]")));
  OK(ATTENTION_GRAD_KV, A(.scale = 0.125), NULL, "f32[2,8,10,72]",
     OPS(T("f32[2,8,16,32]"), T("f32[2,8,10,32]"), T("f32[2,8,10,40]"), T("f32[2,8,16,40]"), T("f32[2,8,16]"),
         T("f32[2,8,16]")));
  OK(ATTENTION_GRAD_KV, &none, NULL, "f32[7,9]",
     OPS(T("bf16[3,4]"), T("bf16[7,4]"), T("bf16[7,5]"), T("bf16[3,5]"), T("f32[3]"), T("f32[3]")));
  OK(ATTENTION_GRAD_Q, &none, NULL, "f64[3,4]",
     OPS(T("f64[3,4]"), T("f64[7,4]"), T("f64[7,5]"), T("f64[3,5]"), T("f64[3]"), T("f64[3]")));
  ERR(ATTENTION_GRAD_Q, &none, NULL, "ct f32[3,4] must be f32[3,5]",
      OPS(T("f32[3,4]"), T("f32[7,4]"), T("f32[7,5]"), T("f32[3,4]"), T("f32[3]"), T("f32[3]")));
  ERR(ATTENTION_GRAD_Q, &none, NULL, "ct f16[3,5] must be f32[3,5]",
      OPS(T("f32[3,4]"), T("f32[7,4]"), T("f32[7,5]"), T("f16[3,5]"), T("f32[3]"), T("f32[3]")));
  ERR(ATTENTION_GRAD_KV, &none, NULL, "lse bf16[3] must be f32[3]",
      OPS(T("bf16[3,4]"), T("bf16[7,4]"), T("bf16[7,5]"), T("bf16[3,5]"), T("bf16[3]"), T("f32[3]")));
  ERR(ATTENTION_GRAD_KV, &none, NULL, "delta f32[7] must be f32[3]",
      OPS(T("f32[3,4]"), T("f32[7,4]"), T("f32[7,5]"), T("f32[3,5]"), T("f32[3]"), T("f32[7]")));
  ERR(ATTENTION_GRAD_KV, &none, NULL, "differ in the key count",
      OPS(T("f32[3,4]"), T("f32[7,4]"), T("f32[6,5]"), T("f32[3,5]"), T("f32[3]"), T("f32[3]")));
  ERR(ATTENTION_GRAD_KV, &none, NULL, "expects 6 operands, got 3", OPS(T("f32[3,4]"), T("f32[7,4]"), T("f32[7,5]")));
  OK(UPSAMPLE_NEAREST, A(.factor = 2), NULL, "f32[1,3,8,10]", OPS(T("f32[1,3,4,5]")));
  OK(UPSAMPLE_NEAREST, A(.factor = 3), NULL, "i32[2,1,6]", OPS(T("i32[2,1,2]")));
  ERR(UPSAMPLE_NEAREST, A(.factor = 0), NULL, "factor 0 must be >= 1", OPS(T("f32[1,3,4,5]")));
  ERR(UPSAMPLE_NEAREST, A(.factor = 2), NULL, "rank >= 3", OPS(T("f32[3,4]")));
  ERR(UPSAMPLE_NEAREST, A(.factor = INT64_MAX), NULL, "overflows", OPS(T("f32[1,1,3]")));
}


/* Random, mostly ill-formed queries: inference must answer OK or INVALID without
 * reading out of bounds (run under ASan/UBSan), an accepted type must be
 * well-formed, and a graph holding the accepted node must verify. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return rng_state;
}
static int64_t rnd_val(void) {
  static const int64_t v[] = {-2, -1, 0, 1, 1, 2, 2, 3, 3, 4, 5, 8, INT64_MAX, INT64_MIN, INT64_C(1) << 40};
  return v[rnd() % (sizeof v / sizeof v[0])];
}
static void rnd_ints(ldmc_ints *x) {
  x->n = (int)(rnd() % 10) - (rnd() % 16 == 0); /* occasionally -1 or 9 */
  for (int i = 0; i < LDMC_MAX_RANK; i++) x->v[i] = rnd() % 3 ? (int64_t)(rnd() % 5) : rnd_val();
}

static void test_hostile(void) {
  int accepted = 0, bad_types = 0, bad_verify = 0;
  for (int it = 0; it < 30000; it++) {
    ldmc_attrs a = {0};
    ldmc_ints *lists[] = {&a.dims, &a.start, &a.limit, &a.stride, &a.low, &a.high, &a.interior, &a.lhs_batch,
                          &a.rhs_batch, &a.lhs_contract, &a.rhs_contract, &a.window_stride, &a.pad_low, &a.pad_high,
                          &a.lhs_dilation, &a.rhs_dilation, &a.input_dims, &a.kernel_dims, &a.output_dims};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) rnd_ints(lists[i]);
    if (rnd() % 2) { /* a plausible convolution layout */
      for (int i = 0; i < 4; i++) a.input_dims.v[i] = a.kernel_dims.v[i] = a.output_dims.v[i] = i;
      a.input_dims.n = a.kernel_dims.n = a.output_dims.n = 3 + (int)(rnd() % 2);
    }
    a.axis = rnd() % 3 ? (int64_t)(rnd() % 4) : rnd_val();
    a.groups = rnd_val();
    a.factor = rnd_val();
    a.eps = rnd() % 8 ? 1e-5 : -1;
    a.direction = (ldmc_compare)(rnd() % 8);
    a.reduce = (ldmc_reduce_kind)(rnd() % 4);
    a.name = "p";
    ldmc_op op = (ldmc_op)(rnd() % LDMC_OP_COUNT);
    int n = ldmc_op_table[op].arity >= 0 && rnd() % 8 ? ldmc_op_table[op].arity : (int)(rnd() % 5);
    ty ops[5];
    for (int i = 0; i < n; i++) {
      ops[i].dt = (ldmc_dtype)(rnd() % 8 ? (i ? ops[0].dt : rnd() % LDMC_DTYPE_COUNT) : rnd() % 7);
      ops[i].s.rank = (int)(rnd() % 5) + (rnd() % 32 == 0 ? 5 : 0);
      for (int d = 0; d < LDMC_MAX_RANK; d++) ops[i].s.dims[d] = rnd() % 6 ? (int64_t)(rnd() % 4) : rnd_val();
      if (i && rnd() % 2) ops[i].s = ops[0].s;
    }
    if (op == LDMC_OP_CONSTANT) a.value.nbytes = 0;
    ldmc_dtype dts[5];
    ldmc_shape shapes[5];
    for (int i = 0; i < n; i++) dts[i] = ops[i].dt, shapes[i] = ops[i].s;
    ldmc_type_query q = {.op = op, .attrs = &a, .n_operands = n, .operand_dtypes = dts, .operand_shapes = shapes,
                         .dtype = (ldmc_dtype)(rnd() % LDMC_DTYPE_COUNT)};
    q.shape.rank = (int)(rnd() % 4);
    for (int d = 0; d < LDMC_MAX_RANK; d++) q.shape.dims[d] = (int64_t)(rnd() % 4);
    ldmc_status st = ldmc_infer_type(&q);
    if (st != LDMC_OK && st != LDMC_ERR_INVALID) bad_types++;
    if (st != LDMC_OK) continue;
    accepted++;
    int64_t numel;
    if (ldmc_shape_numel(&q.shape, ldmc_dtype_size(q.dtype), &numel) != LDMC_OK) bad_types++;
    ldmc_flops f;
    ldmc_op_table[op].flop_rule(&q, &f);
    if (f.mac < 0 || f.other < 0) bad_types++;
    /* the same node in a graph verifies */
    ldmc_graph *g = ldmc_graph_new("h");
    int32_t ids[5];
    char nm[16];
    for (int i = 0; i < n; i++) {
      ldmc_attrs pa = {.name = nm};
      snprintf(nm, sizeof nm, "p%d", i);
      ids[i] = ldmc_graph_add(g, LDMC_OP_PARAMETER, dts[i], &shapes[i], 0, NULL, &pa, NULL);
    }
    int32_t id = ldmc_graph_add(g, op, q.dtype, &q.shape, n, ids, &a, NULL);
    ldmc_graph_add_output(g, id, "out");
    if (ldmc_graph_verify(g) != LDMC_OK && bad_verify++ < 3)
      fprintf(stderr, "accepted %s does not verify: %s\n", ldmc_op_name(op), ldmc_last_error());
    ldmc_graph_free(g);
  }
  CHECK_MSG(bad_types == 0, "%d malformed answers", bad_types);
  CHECK_MSG(bad_verify == 0, "%d accepted nodes failed to verify", bad_verify);
  CHECK_MSG(accepted > 1000, "only %d of 30000 random queries accepted", accepted);
}

int main(void) {
  test_generic();
  test_sources();
  test_elementwise();
  test_movement();
  test_contractions();
  test_composites();
  test_hostile();
  for (int op = 0; op < LDMC_OP_COUNT; op++)
    CHECK_MSG(covered[op], "op %s has no valid shape case", ldmc_op_name((ldmc_op)op));
  return test_summary("test_ir_shapes");
}
