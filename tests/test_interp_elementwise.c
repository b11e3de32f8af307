/* Interpreter: sources (constant, iota), convert, unary, binary, compare and
 * select for every dtype each allows; rounding of bf16/f16 results; integer
 * wrap-around and division rules; rank 0, rank 8 and zero-size tensors.
 * Oracles: hand-worked values and published constants. */
#include "interp_test_util.h"

static void test_constant(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    ldmc_tensor lit = th_tensor(dt, SHAPE(2, 2), VALS(1, 0, 3, 1));
    ldmc_attrs at = {0};
    at.value.data = lit.data;
    at.value.nbytes = lit.nbytes;
    ldmc_shape s = SHAPE(2, 2);
    ldmc_tensor out;
    if (th_eval(LDMC_OP_CONSTANT, &at, dt, &s, 0, NULL, &out)) {
      CHECK(out.dtype == dt && memcmp(out.data, lit.data, lit.nbytes) == 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&lit);
  }
}

static void test_iota(void) {
  for (int d = 0; d < NELEM(k_numeric); d++) {
    ldmc_dtype dt = k_numeric[d];
    ldmc_shape s = SHAPE(2, 3);
    ldmc_attrs at = {0};
    ldmc_tensor out;
    at.axis = 1;
    if (th_eval(LDMC_OP_IOTA, &at, dt, &s, 0, NULL, &out)) {
      th_expect_dt("iota axis 1", &out, VALS(0, 1, 2, 0, 1, 2), 6);
      ldmc_tensor_release(&out);
    }
    at.axis = 0;
    if (th_eval(LDMC_OP_IOTA, &at, dt, &s, 0, NULL, &out)) {
      th_expect_dt("iota axis 0", &out, VALS(0, 0, 0, 1, 1, 1), 6);
      ldmc_tensor_release(&out);
    }
  }
}

static ldmc_tensor convert1(const ldmc_tensor *x, ldmc_dtype to) {
  ldmc_tensor out;
  if (!th_eval(LDMC_OP_CONVERT, NULL, to, NULL, 1, x, &out)) memset(&out, 0, sizeof out);
  return out;
}

static int64_t get_i64(const ldmc_tensor *t, int64_t i) {
  int64_t v;
  memcpy(&v, (const char *)t->data + 8 * i, 8);
  return v;
}

static void test_convert(void) {
  /* every pair over small integers, which every dtype holds exactly (pred: 0/1) */
  for (int a = 0; a < NELEM(k_all); a++)
    for (int b = 0; b < NELEM(k_all); b++) {
      bool pa = k_all[a] == LDMC_PRED, pb = k_all[b] == LDMC_PRED;
      ldmc_tensor x = th_tensor(k_all[a], SHAPE(4), pa ? VALS(0, 1, 1, 0) : VALS(0, 3, -2, 1));
      ldmc_tensor y = convert1(&x, k_all[b]);
      char label[64];
      snprintf(label, sizeof label, "convert %s->%s", ldmc_dtype_name(k_all[a]), ldmc_dtype_name(k_all[b]));
      if (y.data) th_expect(label, &y, pa ? VALS(0, 1, 1, 0) : pb ? VALS(0, 1, 1, 1) : VALS(0, 3, -2, 1), 4, 0, 0);
      ldmc_tensor_release(&x);
      ldmc_tensor_release(&y);
    }
  /* float -> int: truncation toward zero, NaN -> 0, saturation */
  ldmc_tensor f = th_tensor(LDMC_F32, SHAPE(7), VALS(2.7, -2.7, NAN, 1e10, -1e10, 0.999, -0.5));
  ldmc_tensor i32 = convert1(&f, LDMC_I32), i64 = convert1(&f, LDMC_I64), pr = convert1(&f, LDMC_PRED);
  th_expect("f32->i32", &i32, VALS(2, -2, 0, 2147483647.0, -2147483648.0, 0, 0), 7, 0, 0);
  if (i64.data) {
    CHECK(get_i64(&i64, 3) == 10000000000LL && get_i64(&i64, 4) == -10000000000LL && get_i64(&i64, 2) == 0);
  }
  th_expect("f32->pred", &pr, VALS(1, 1, 1, 1, 1, 1, 1), 7, 0, 0);
  ldmc_tensor big = th_tensor(LDMC_F32, SHAPE(2), VALS(1e30, -1e30));
  ldmc_tensor b64 = convert1(&big, LDMC_I64);
  if (b64.data) CHECK(get_i64(&b64, 0) == INT64_MAX && get_i64(&b64, 1) == INT64_MIN);
  th_release(1, &f), th_release(1, &i32), th_release(1, &i64), th_release(1, &pr), th_release(1, &big);
  th_release(1, &b64);
  /* i64 -> i32 wraps; i64 -> floats is one rounding of the exact integer */
  ldmc_tensor w = th_tensor(LDMC_I64, SHAPE(4), NULL);
  int64_t wv[4] = {(INT64_C(1) << 32) + 5, INT64_C(1) << 31, (INT64_C(1) << 53) + 1,
                   (INT64_C(1) << 60) + (INT64_C(1) << 52) + 1};
  memcpy(w.data, wv, sizeof wv);
  ldmc_tensor w32 = convert1(&w, LDMC_I32), wf = convert1(&w, LDMC_F32), wb = convert1(&w, LDMC_BF16);
  th_expect("i64->i32 wraps", &w32, VALS(5, -2147483648.0, 1, 1), 4, 0, 0);
  th_expect("i64->f32", &wf, VALS(4294967296.0, 2147483648.0, 9007199254740992.0, 0x1p60 + 0x1p52), 4, 0, 0);
  /* 2^60 (1 + 2^-8 + 2^-60): just above the halfway point of bf16 -> 2^60 (1 + 2^-7).
   * Rounding through double first would give the tie, and 2^60. */
  if (wb.data) CHECK_NEAR(ldmc_tensor_get(&wb, 3), 0x1p60 * (1 + 0x1p-7), 0);
  th_release(1, &w), th_release(1, &w32), th_release(1, &wf), th_release(1, &wb);
  /* float -> float: f32 -> bf16 / f16 round to nearest even */
  ldmc_tensor h = th_tensor(LDMC_F32, SHAPE(4), VALS(1 + 0x1p-8, 1 + 0x1p-7 + 0x1p-8, 1 + 0x1p-11, 65520));
  ldmc_tensor hb = convert1(&h, LDMC_BF16), hh = convert1(&h, LDMC_F16);
  th_expect("f32->bf16", &hb, VALS(1, 1 + 0x1p-6, 1, 65536), 4, 0, 0);
  th_expect("f32->f16", &hh, VALS(1 + 0x1p-8, 1 + 0x1p-7 + 0x1p-8, 1, INFINITY), 4, 0, 0);
  th_release(1, &h), th_release(1, &hb), th_release(1, &hh);
}

/* unary float ops against published values of the functions */
static void test_unary_float(void) {
  static const struct {
    ldmc_op op;
    double x[4], want[4];
  } cases[] = {
      {LDMC_OP_NEG, {0, 1.5, -2, 0.25}, {0, -1.5, 2, -0.25}},
      {LDMC_OP_ABS, {0, 1.5, -2, -0.25}, {0, 1.5, 2, 0.25}},
      {LDMC_OP_EXP, {0, 1, -1, 2}, {1, 2.718281828459045, 0.36787944117144233, 7.38905609893065}},
      {LDMC_OP_LOG, {1, 2, 0.5, -1}, {0, 0.6931471805599453, -0.6931471805599453, NAN}},
      {LDMC_OP_SQRT, {4, 2, 0.25, -1}, {2, 1.4142135623730951, 0.5, NAN}},
      {LDMC_OP_RSQRT, {4, 2, 0.25, 0}, {0.5, 0.7071067811865476, 2, INFINITY}},
      {LDMC_OP_TANH, {0, 1, -1, 0.5}, {0, 0.7615941559557649, -0.7615941559557649, 0.46211715726000974}},
      {LDMC_OP_LOGISTIC, {0, 2, -2, 1}, {0.5, 0.8807970779778823, 0.11920292202211755, 0.7310585786300049}},
      {LDMC_OP_SIN, {0, 1, -1, 0.5}, {0, 0.8414709848078965, -0.8414709848078965, 0.479425538604203}},
      {LDMC_OP_COS, {0, 1, -1, 0.5}, {1, 0.5403023058681398, 0.5403023058681398, 0.8775825618903728}},
      {LDMC_OP_ERF, {0, 1, -1, 0.5}, {0, 0.8427007929497149, -0.8427007929497149, 0.5204998778130465}},
  };
  for (int c = 0; c < NELEM(cases); c++)
    for (int d = 0; d < NELEM(k_floats); d++) {
      ldmc_tensor x = th_tensor(k_floats[d], SHAPE(4), cases[c].x), out;
      if (th_eval(cases[c].op, NULL, LDMC_F32, NULL, 1, &x, &out)) {
        CHECK(out.dtype == k_floats[d]);
        th_expect_dt(ldmc_op_name(cases[c].op), &out, cases[c].want, 4);
        ldmc_tensor_release(&out);
      }
      ldmc_tensor_release(&x);
    }
}

static void test_unary_int(void) {
  for (int d = 0; d < NELEM(k_ints); d++) {
    ldmc_tensor x = th_tensor(k_ints[d], SHAPE(4), VALS(0, 5, -7, 1)), out;
    if (th_eval(LDMC_OP_NEG, NULL, LDMC_F32, NULL, 1, &x, &out)) {
      th_expect("neg int", &out, VALS(0, -5, 7, -1), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    if (th_eval(LDMC_OP_ABS, NULL, LDMC_F32, NULL, 1, &x, &out)) {
      th_expect("abs int", &out, VALS(0, 5, 7, 1), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&x);
  }
  /* two's complement wrap: -INT_MIN == INT_MIN */
  ldmc_tensor x = th_tensor(LDMC_I32, SHAPE(1), VALS(-2147483648.0)), out;
  if (th_eval(LDMC_OP_NEG, NULL, LDMC_F32, NULL, 1, &x, &out)) {
    th_expect("neg INT32_MIN", &out, VALS(-2147483648.0), 1, 0, 0);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&x);
}

static bool g_exact; /* compare binary() results exactly */

static void binary(ldmc_op op, ldmc_dtype dt, const double *a, const double *b, const double *want, int n) {
  ldmc_tensor in[2] = {th_tensor(dt, SHAPE(n), a), th_tensor(dt, SHAPE(n), b)}, out;
  char label[64];
  snprintf(label, sizeof label, "%s %s", ldmc_op_name(op), ldmc_dtype_name(dt));
  if (th_eval(op, NULL, LDMC_F32, NULL, 2, in, &out)) {
    CHECK(out.dtype == dt);
    if (g_exact)
      th_expect(label, &out, want, n, 0, 0);
    else
      th_expect_dt(label, &out, want, n);
    ldmc_tensor_release(&out);
  }
  th_release(2, in);
}

static void test_binary(void) {
  const double *a = VALS(3, -4, 0.5, 6), *b = VALS(2, 2, -0.25, -3);
  for (int d = 0; d < NELEM(k_numeric); d++) {
    ldmc_dtype dt = k_numeric[d];
    bool fl = ldmc_dtype_is_float(dt);
    const double *ai = fl ? a : VALS(3, -4, 0, 6), *bi = fl ? b : VALS(2, 2, -1, -3);
    binary(LDMC_OP_ADD, dt, ai, bi, fl ? VALS(5, -2, 0.25, 3) : VALS(5, -2, -1, 3), 4);
    binary(LDMC_OP_SUB, dt, ai, bi, fl ? VALS(1, -6, 0.75, 9) : VALS(1, -6, 1, 9), 4);
    binary(LDMC_OP_MUL, dt, ai, bi, fl ? VALS(6, -8, -0.125, -18) : VALS(6, -8, 0, -18), 4);
    binary(LDMC_OP_MAX, dt, ai, bi, fl ? VALS(3, 2, 0.5, 6) : VALS(3, 2, 0, 6), 4);
    binary(LDMC_OP_MIN, dt, ai, bi, fl ? VALS(2, -4, -0.25, -3) : VALS(2, -4, -1, -3), 4);
    if (fl) {
      binary(LDMC_OP_DIV, dt, a, b, VALS(1.5, -2, -2, -2), 4);
      binary(LDMC_OP_POW, dt, VALS(2, 4, 9, 2), VALS(3, 0.5, -0.5, -1), VALS(8, 2, 1.0 / 3.0, 0.5), 4);
      binary(LDMC_OP_DIV, dt, VALS(1, -1, 0), VALS(0, 0, 0), VALS(INFINITY, -INFINITY, NAN), 3);
      binary(LDMC_OP_MAX, dt, VALS(NAN, 1), VALS(1, NAN), VALS(NAN, NAN), 2); /* NaN propagates */
      binary(LDMC_OP_MIN, dt, VALS(NAN, 1), VALS(1, NAN), VALS(NAN, NAN), 2);
    } else { /* truncation toward zero; x / 0 = 0 */
      binary(LDMC_OP_DIV, dt, VALS(7, -7, 7, -7, 5, 0), VALS(2, 2, -2, -2, 0, 0), VALS(3, -3, -3, 3, 0, 0), 6);
    }
  }
  binary(LDMC_OP_DIV, LDMC_I32, VALS(-2147483648.0), VALS(-1), VALS(-2147483648.0), 1); /* wraps */
  binary(LDMC_OP_ADD, LDMC_I32, VALS(2147483647.0), VALS(1), VALS(-2147483648.0), 1);
  /* i64 exactness beyond 2^53 */
  ldmc_tensor in[2] = {th_tensor(LDMC_I64, SHAPE(3), NULL), th_tensor(LDMC_I64, SHAPE(3), NULL)}, out;
  int64_t av[3] = {(INT64_C(1) << 62) + 1, 3037000499, INT64_MAX}, bv[3] = {(INT64_C(1) << 62) + 3, 3037000499, 1};
  memcpy(in[0].data, av, sizeof av);
  memcpy(in[1].data, bv, sizeof bv);
  if (th_eval(LDMC_OP_ADD, NULL, LDMC_F32, NULL, 2, in, &out)) {
    CHECK(get_i64(&out, 0) == INT64_MIN + 4); /* 2^63 + 4 wraps */
    CHECK(get_i64(&out, 1) == 6074000998);
    CHECK(get_i64(&out, 2) == INT64_MIN);
    ldmc_tensor_release(&out);
  }
  if (th_eval(LDMC_OP_MUL, NULL, LDMC_F32, NULL, 2, in, &out)) {
    CHECK(get_i64(&out, 1) == INT64_C(9223372030926249001)); /* 3037000499^2, exact */
    ldmc_tensor_release(&out);
  }
  th_release(2, in);
}

static void test_compare_select(void) {
  static const ldmc_compare dirs[] = {LDMC_CMP_EQ, LDMC_CMP_NE, LDMC_CMP_LT, LDMC_CMP_LE, LDMC_CMP_GT, LDMC_CMP_GE};
  /* x = {1, 2, 3}, y = {2, 2, 2} */
  static const double want[6][3] = {{0, 1, 0}, {1, 0, 1}, {1, 0, 0}, {1, 1, 0}, {0, 0, 1}, {0, 1, 1}};
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    bool p = dt == LDMC_PRED;
    for (int c = 0; c < 6; c++) {
      ldmc_tensor in[2] = {th_tensor(dt, SHAPE(3), p ? VALS(0, 1, 1) : VALS(1, 2, 3)),
                           th_tensor(dt, SHAPE(3), p ? VALS(1, 1, 0) : VALS(2, 2, 2))},
                  out;
      ldmc_attrs at = {0};
      at.direction = dirs[c];
      /* pred: x = {0,1,1} vs y = {1,1,0}: lt/eq/gt pattern matches {1,2,3} vs {2,2,2} */
      if (th_eval(LDMC_OP_COMPARE, &at, LDMC_PRED, NULL, 2, in, &out)) {
        CHECK(out.dtype == LDMC_PRED);
        th_expect(ldmc_compare_name(dirs[c]), &out, want[c], 3, 0, 0);
        ldmc_tensor_release(&out);
      }
      th_release(2, in);
    }
    /* select picks bytes as they are */
    ldmc_tensor in[3] = {th_tensor(LDMC_PRED, SHAPE(4), VALS(1, 0, 0, 1)),
                         th_tensor(dt, SHAPE(4), p ? VALS(1, 1, 1, 1) : VALS(1, 2, 3, 4)),
                         th_tensor(dt, SHAPE(4), p ? VALS(0, 0, 0, 0) : VALS(-1, -2, -3, -4))},
                out;
    if (th_eval(LDMC_OP_SELECT, NULL, dt, NULL, 3, in, &out)) {
      th_expect("select", &out, p ? VALS(1, 0, 0, 1) : VALS(1, -2, -3, 4), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    th_release(3, in);
  }
  /* NaN is unordered: only ne holds */
  for (int c = 0; c < 6; c++) {
    ldmc_tensor in[2] = {th_tensor(LDMC_F32, SHAPE(1), VALS(NAN)), th_tensor(LDMC_F32, SHAPE(1), VALS(1))}, out;
    ldmc_attrs at = {0};
    at.direction = dirs[c];
    if (th_eval(LDMC_OP_COMPARE, &at, LDMC_PRED, NULL, 2, in, &out)) {
      CHECK(ldmc_tensor_get(&out, 0) == (dirs[c] == LDMC_CMP_NE));
      ldmc_tensor_release(&out);
    }
    th_release(2, in);
  }
  /* i64 compare is exact beyond 2^53 */
  ldmc_tensor in[2] = {th_tensor(LDMC_I64, SHAPE(1), NULL), th_tensor(LDMC_I64, SHAPE(1), NULL)}, out;
  int64_t a = (INT64_C(1) << 53) + 1, b = INT64_C(1) << 53;
  memcpy(in[0].data, &a, 8);
  memcpy(in[1].data, &b, 8);
  ldmc_attrs at = {0};
  at.direction = LDMC_CMP_GT;
  if (th_eval(LDMC_OP_COMPARE, &at, LDMC_PRED, NULL, 2, in, &out)) {
    CHECK(ldmc_tensor_get(&out, 0) == 1);
    ldmc_tensor_release(&out);
  }
  th_release(2, in);
}

/* Results are rounded once from the exact (double) value: ties to even,
 * overflow to inf, subnormals, and no double rounding through f32. */
static void test_rounding(void) {
  g_exact = true;
  binary(LDMC_OP_ADD, LDMC_BF16, VALS(1, 1 + 0x1p-7), VALS(0x1p-8, 0x1p-8), VALS(1, 1 + 0x1p-6), 2);
  binary(LDMC_OP_ADD, LDMC_F16, VALS(1, 1 + 0x1p-10, 2048, 2050, 65504, 65504),
         VALS(0x1p-11, 0x1p-11, 1, 1, 8, 16), VALS(1, 1 + 0x1p-9, 2048, 2052, 65504, INFINITY), 6);
  binary(LDMC_OP_MUL, LDMC_F16, VALS(0x1p-24, 0x1p-24, 0x1p-14), VALS(0.5, 0.75, 0.5), VALS(0, 0x1p-24, 0x1p-15), 3);
  binary(LDMC_OP_MUL, LDMC_BF16, VALS(3, 255), VALS(85.5, 1.5),
         VALS(256, 382), 2); /* spacing 2 in [256, 512): 256.5 -> 256, 382.5 -> 382 */
  binary(LDMC_OP_ADD, LDMC_BF16, VALS(256, 258), VALS(1, 1), VALS(256, 260), 2); /* ties to even */
  g_exact = false;
  /* sum = 1 + 2^-8 + 2^-30 (bf16) / 1 + 2^-11 + 2^-24 (f16): just above a tie,
   * so the correctly rounded result rounds up; via f32 it would be a tie and round down */
  for (int k = 0; k < 2; k++) {
    ldmc_dtype dt = k ? LDMC_F16 : LDMC_BF16;
    ldmc_tensor x = th_tensor(dt, SHAPE(3), k ? VALS(1, 0x1p-11, 0x1p-24) : VALS(1, 0x1p-8, 0x1p-30)), out;
    ldmc_attrs at = {0};
    at.reduce = LDMC_REDUCE_SUM;
    at.dims = INTS(0);
    if (th_eval(LDMC_OP_REDUCE, &at, dt, NULL, 1, &x, &out)) {
      th_expect("single rounding", &out, k ? VALS(1 + 0x1p-10) : VALS(1 + 0x1p-7), 1, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&x);
  }
}

/* rank 0, rank 8 and zero-size tensors through elementwise ops */
static void test_shapes(void) {
  ldmc_tensor in[2] = {th_tensor(LDMC_F32, SHAPE0, VALS(1.5)), th_tensor(LDMC_F32, SHAPE0, VALS(2))}, out;
  if (th_eval(LDMC_OP_MUL, NULL, LDMC_F32, NULL, 2, in, &out)) {
    CHECK(out.shape.rank == 0);
    th_expect("rank 0", &out, VALS(3), 1, 0, 0);
    ldmc_tensor_release(&out);
  }
  th_release(2, in);
  ldmc_shape s8 = SHAPE(1, 2, 1, 2, 1, 2, 1, 2);
  double v[16], w[16];
  for (int i = 0; i < 16; i++) v[i] = i - 8, w[i] = fabs(i - 8.0);
  ldmc_tensor x8 = th_tensor(LDMC_I64, s8, v);
  if (th_eval(LDMC_OP_ABS, NULL, LDMC_F32, NULL, 1, &x8, &out)) {
    CHECK(out.shape.rank == 8);
    th_expect("rank 8", &out, w, 16, 0, 0);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&x8);
  ldmc_tensor z[2] = {th_tensor(LDMC_BF16, SHAPE(3, 0, 2), NULL), th_tensor(LDMC_BF16, SHAPE(3, 0, 2), NULL)};
  if (th_eval(LDMC_OP_ADD, NULL, LDMC_F32, NULL, 2, z, &out)) {
    CHECK(out.nbytes == 0 && out.shape.dims[1] == 0);
    ldmc_tensor_release(&out);
  }
  th_release(2, z);
}

int main(void) {
  test_constant();
  test_iota();
  test_convert();
  test_unary_float();
  test_unary_int();
  test_binary();
  test_compare_select();
  test_rounding();
  test_shapes();
  return test_summary("test_interp_elementwise");
}
