/* The constant folder and the interpreter share one scalar evaluator
 * (ir/scalar.h): for every elementwise op (convert, the unary and binary
 * ops, compare in each direction, select, silu, gelu), every dtype the op
 * takes, and inputs that include NaN, +-inf, -0, denormals, values past the
 * integer ranges, INT_MIN and INT_MAX, the graph folded by the fold pass and
 * the same graph run on the interpreter give the same bytes. Then a few
 * results by hand: integer division and wrapping, NaN propagation,
 * saturating and NaN converts, signed zeros. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "ir/scalar.h"
#include "passes/passes.h"
#include "test_util.h"

static const ldmc_dtype k_dtypes[] = {LDMC_F32, LDMC_BF16, LDMC_F16, LDMC_F64, LDMC_I32, LDMC_I64, LDMC_PRED};
#define N_DT ((int)(sizeof k_dtypes / sizeof k_dtypes[0]))

static const double k_fvals[] = {0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 2.5, 3.0, 0.1, -7.75, 100.0, 1e-40, -1e-45,
                                 65504.0, 65520.0, 1e30, -1e30, 2147483648.0, -2147483649.0, 9.3e18, -9.3e18,
                                 INFINITY, -INFINITY, NAN, -NAN};
static const int64_t k_ivals[] = {0, 1, -1, 2, -2, 7, -7, 3, 100000, INT32_MAX, INT32_MIN, INT32_MIN + 1,
                                  INT64_MAX, INT64_MIN, INT64_MIN + 1, (INT64_C(1) << 53) + 1, -(INT64_C(1) << 53) - 1,
                                  (INT64_C(1) << 62) + 12345};
#define N_F ((int)(sizeof k_fvals / sizeof k_fvals[0]))
#define N_I ((int)(sizeof k_ivals / sizeof k_ivals[0]))

static int n_values(ldmc_dtype dt) { return dt == LDMC_PRED ? 2 : ldmc_dtype_is_float(dt) ? N_F : N_I; }

/* element j of dtype dt's value list stored at t[i] */
static void put(ldmc_tensor *t, int64_t i, ldmc_dtype dt, int j) {
  if (ldmc_dtype_is_float(dt)) ldmc_tensor_set_elem(t, i, k_fvals[j]);
  else if (dt == LDMC_PRED) ((uint8_t *)t->data)[i] = (uint8_t)j;
  else if (dt == LDMC_I32) {
    int32_t v = (int32_t)(uint32_t)(uint64_t)k_ivals[j]; /* i32 wraps the wide ones: more edge values */
    memcpy((uint8_t *)t->data + 4 * i, &v, 4);
  } else memcpy((uint8_t *)t->data + 8 * i, &k_ivals[j], 8);
}

/* A constant of n elements: value list index idx(i) each. */
static ldmc_value make_const(ldmc_builder *b, ldmc_dtype dt, int64_t n, int (*idx)(int64_t, int), int nv) {
  ldmc_tensor t = {0};
  ldmc_shape s = ldmc_shape_make(1, (int64_t[]){n});
  if (ldmc_tensor_alloc(&t, "c", dt, &s) != LDMC_OK) return -1;
  for (int64_t i = 0; i < n; i++) put(&t, i, dt, idx(i, nv));
  ldmc_value v = ldmc_constant(b, dt, 1, (int64_t[]){n}, t.data);
  ldmc_tensor_release(&t);
  return v;
}

static int idx_row(int64_t i, int nv) { return (int)(i / nv) % nv; } /* x of the pairs */
static int idx_col(int64_t i, int nv) { return (int)(i % nv); }      /* y of the pairs */
static int idx_alt(int64_t i, int nv) { return (int)((i / 3 + i) % nv); }

static int n_compared, n_mismatch;

/* Folds g (a clone) and runs g on the interpreter; every output must match bytewise. */
static void compare(ldmc_graph *g, const char *what) {
  ldmc_graph *f = ldmc_graph_clone(g);
  ldmc_status st = LDMC_OK;
  ldmc_pass_ctx ctx = {.target = ldmc_target_find("cpu-nhwc"), .fold_limit = 1 << 20, .status = &st};
  CHECK(f != NULL);
  if (!f) return;
  bool changed = ldmc_pass_fold.run(f, &ctx);
  CHECK_MSG(changed && st == LDMC_OK, "%s: folded", what);
  ldmc_executable *exe = NULL;
  CHECK_MSG(ldmc_backend_interp.compile(g, NULL, &exe) == LDMC_OK, "%s: %s", what, ldmc_last_error());
  ldmc_tensor out[1] = {{0}};
  if (exe && ldmc_executable_run(exe, NULL, 0, out, 1) == LDMC_OK) {
    const ldmc_node *c = &f->nodes[f->outputs[0]];
    bool folded = c->op == LDMC_OP_CONSTANT;
    bool same = folded && c->attrs.value.nbytes == out[0].nbytes &&
                memcmp(c->attrs.value.data, out[0].data, out[0].nbytes) == 0;
    n_compared++;
    if (!same) {
      n_mismatch++;
      size_t es = ldmc_dtype_size(out[0].dtype), n = es ? out[0].nbytes / es : 0;
      for (size_t i = 0; folded && i < n; i++)
        if (memcmp((const uint8_t *)c->attrs.value.data + i * es, (const uint8_t *)out[0].data + i * es, es)) {
          fprintf(stderr, "  %s: element %zu: folded %.17g, interpreter %.17g\n", what, i,
                  ldmc_tensor_get(&(ldmc_tensor){.dtype = out[0].dtype, .data = (void *)c->attrs.value.data}, (int64_t)i),
                  ldmc_tensor_get(&out[0], (int64_t)i));
          break;
        }
    }
    CHECK_MSG(same, "%s: folder and interpreter agree bit for bit%s", what, folded ? "" : " (not folded)");
    ldmc_tensor_release(&out[0]);
  } else {
    CHECK_MSG(false, "%s: interpreter run: %s", what, ldmc_last_error());
  }
  ldmc_executable_free(exe);
  ldmc_graph_free(f);
}

/* Builds one graph with `build`; false (and no check) when the builder refuses the dtypes. */
static bool try_graph(ldmc_builder *b, ldmc_value v, const char *what) {
  if (v < 0 || ldmc_builder_output(b, v, "out") != LDMC_OK) {
    ldmc_builder_free(b);
    return false;
  }
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) return false;
  compare(g, what);
  ldmc_graph_free(g);
  return true;
}

static void test_all_ops(void) {
  int covered[LDMC_OP_COUNT] = {0};
  char what[128];
  for (int op = 0; op < LDMC_OP_COUNT; op++) {
    if (!(ldmc_op_table[op].flags & LDMC_OPF_ELEMENTWISE)) continue;
    CHECK_MSG(ldmc_scalar_op_supported((ldmc_op)op), "%s is in the shared evaluator", ldmc_op_name((ldmc_op)op));
    for (int a = 0; a < N_DT; a++) {
      ldmc_dtype dt = k_dtypes[a];
      int nv = n_values(dt);
      int64_t pairs = (int64_t)nv * nv;
      if (op == LDMC_OP_CONVERT) {
        for (int c = 0; c < N_DT; c++) {
          ldmc_builder *b = ldmc_builder_new("convert");
          ldmc_value x = make_const(b, dt, nv, idx_col, nv);
          snprintf(what, sizeof what, "convert %s -> %s", ldmc_dtype_name(dt), ldmc_dtype_name(k_dtypes[c]));
          covered[op] += try_graph(b, ldmc_convert(b, x, k_dtypes[c]), what);
        }
      } else if (op == LDMC_OP_COMPARE) {
        for (int d = 0; d < 6; d++) {
          static const ldmc_compare dirs[6] = {LDMC_CMP_EQ, LDMC_CMP_NE, LDMC_CMP_LT, LDMC_CMP_LE, LDMC_CMP_GT, LDMC_CMP_GE};
          ldmc_builder *b = ldmc_builder_new("compare");
          ldmc_value x = make_const(b, dt, pairs, idx_row, nv), y = make_const(b, dt, pairs, idx_col, nv);
          snprintf(what, sizeof what, "compare %d %s", d, ldmc_dtype_name(dt));
          covered[op] += try_graph(b, ldmc_compare_values(b, dirs[d], x, y), what);
        }
      } else if (op == LDMC_OP_SELECT) {
        ldmc_builder *b = ldmc_builder_new("select");
        ldmc_value p = make_const(b, LDMC_PRED, pairs, idx_alt, 2);
        ldmc_value x = make_const(b, dt, pairs, idx_row, nv), y = make_const(b, dt, pairs, idx_col, nv);
        snprintf(what, sizeof what, "select %s", ldmc_dtype_name(dt));
        covered[op] += try_graph(b, ldmc_select(b, p, x, y), what);
      } else if (ldmc_op_table[op].arity == 1) {
        ldmc_builder *b = ldmc_builder_new("unary");
        ldmc_value x = make_const(b, dt, nv, idx_col, nv);
        ldmc_value v = op == LDMC_OP_SILU ? ldmc_silu(b, x) : op == LDMC_OP_GELU ? ldmc_gelu(b, x) : ldmc_unary(b, (ldmc_op)op, x);
        snprintf(what, sizeof what, "%s %s", ldmc_op_name((ldmc_op)op), ldmc_dtype_name(dt));
        covered[op] += try_graph(b, v, what);
      } else {
        ldmc_builder *b = ldmc_builder_new("binary");
        ldmc_value x = make_const(b, dt, pairs, idx_row, nv), y = make_const(b, dt, pairs, idx_col, nv);
        snprintf(what, sizeof what, "%s %s", ldmc_op_name((ldmc_op)op), ldmc_dtype_name(dt));
        covered[op] += try_graph(b, ldmc_binary(b, (ldmc_op)op, x, y), what);
      }
    }
  }
  for (int op = 0; op < LDMC_OP_COUNT; op++) {
    if (!(ldmc_op_table[op].flags & LDMC_OPF_ELEMENTWISE)) continue;
    bool numeric = op != LDMC_OP_EXP && op != LDMC_OP_LOG && op != LDMC_OP_SQRT && op != LDMC_OP_RSQRT &&
                   op != LDMC_OP_TANH && op != LDMC_OP_LOGISTIC && op != LDMC_OP_SIN && op != LDMC_OP_COS &&
                   op != LDMC_OP_ERF && op != LDMC_OP_POW && op != LDMC_OP_SILU && op != LDMC_OP_GELU;
    int want = op == LDMC_OP_CONVERT ? N_DT * N_DT : op == LDMC_OP_COMPARE ? 6 * 5 : numeric ? 5 : 3;
    CHECK_MSG(covered[op] >= want, "%s: %d dtype combinations compared, want at least %d", ldmc_op_name((ldmc_op)op),
              covered[op], want);
  }
  printf("compared %d graphs, %d mismatched\n", n_compared, n_mismatch);
}

/* By hand, through the per-element functions both sides call. */
static void test_by_hand(void) {
  CHECK(ldmc_scalar_binary_i(LDMC_OP_DIV, INT64_MIN, -1) == INT64_MIN);
  CHECK(ldmc_scalar_binary_i(LDMC_OP_DIV, 7, 0) == 0 && ldmc_scalar_binary_i(LDMC_OP_DIV, -7, 2) == -3);
  CHECK(ldmc_scalar_binary_i(LDMC_OP_ADD, INT64_MAX, 1) == INT64_MIN);
  CHECK(ldmc_scalar_unary_i(LDMC_OP_NEG, INT64_MIN) == INT64_MIN && ldmc_scalar_unary_i(LDMC_OP_ABS, -5) == 5);
  CHECK(isnan(ldmc_scalar_binary_f(LDMC_OP_MAX, NAN, 1)) && isnan(ldmc_scalar_binary_f(LDMC_OP_MIN, 1, NAN)));
  CHECK(!ldmc_scalar_compare_f(LDMC_CMP_EQ, NAN, NAN) && ldmc_scalar_compare_f(LDMC_CMP_NE, NAN, NAN));
  CHECK(ldmc_scalar_float_to_int(NAN, LDMC_I32) == 0 && ldmc_scalar_float_to_int(1e30, LDMC_I32) == INT32_MAX);
  CHECK(ldmc_scalar_float_to_int(-1e30, LDMC_I64) == INT64_MIN && ldmc_scalar_float_to_int(-2.9, LDMC_I32) == -2);
  CHECK(signbit(ldmc_scalar_unary_f(LDMC_OP_NEG, 0.0)) && ldmc_scalar_unary_f(LDMC_OP_SILU, 0.0) == 0.0);
  /* through tensors: i32 wraps on store, INT32_MIN / -1 is INT32_MIN, -0 survives bf16 */
  ldmc_shape s1 = ldmc_shape_make(1, (int64_t[]){1});
  ldmc_tensor a = {0}, b = {0}, o = {0};
  ldmc_tensor_alloc(&a, "a", LDMC_I32, &s1);
  ldmc_tensor_alloc(&b, "b", LDMC_I32, &s1);
  ldmc_tensor_alloc(&o, "o", LDMC_I32, &s1);
  ldmc_scalar_seti(&a, 0, INT32_MIN);
  ldmc_scalar_seti(&b, 0, -1);
  ldmc_node n = {.op = LDMC_OP_DIV, .n_operands = 2, .dtype = LDMC_I32, .shape = s1};
  const ldmc_tensor *in[2] = {&a, &b};
  CHECK(ldmc_scalar_eval_elementwise(&n, in, &o) == LDMC_OK && ldmc_scalar_geti(&o, 0) == INT32_MIN);
  n.op = LDMC_OP_MUL;
  ldmc_scalar_seti(&b, 0, 2);
  CHECK(ldmc_scalar_eval_elementwise(&n, in, &o) == LDMC_OK && ldmc_scalar_geti(&o, 0) == 0); /* 2^32 wraps */
  ldmc_tensor h = {0};
  ldmc_tensor_alloc(&h, "h", LDMC_BF16, &s1);
  ldmc_scalar_setf(&h, 0, -0.0);
  CHECK(((uint16_t *)h.data)[0] == 0x8000);
  ldmc_tensor_release(&a);
  ldmc_tensor_release(&b);
  ldmc_tensor_release(&o);
  ldmc_tensor_release(&h);
}

int main(void) {
  test_all_ops();
  test_by_hand();
  return test_summary("test_scalar_eval");
}
