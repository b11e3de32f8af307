/* The shared scalar evaluator of the elementwise ops (ir/scalar.h). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ir/scalar.h"

bool ldmc_scalar_op_supported(ldmc_op op) {
  switch (op) {
    case LDMC_OP_CONVERT: case LDMC_OP_NEG: case LDMC_OP_ABS: case LDMC_OP_EXP: case LDMC_OP_LOG: case LDMC_OP_SQRT:
    case LDMC_OP_RSQRT: case LDMC_OP_TANH: case LDMC_OP_LOGISTIC: case LDMC_OP_SIN: case LDMC_OP_COS: case LDMC_OP_ERF:
    case LDMC_OP_ADD: case LDMC_OP_SUB: case LDMC_OP_MUL: case LDMC_OP_DIV: case LDMC_OP_MAX: case LDMC_OP_MIN:
    case LDMC_OP_POW: case LDMC_OP_COMPARE: case LDMC_OP_SELECT: case LDMC_OP_SILU: case LDMC_OP_GELU:
      return true;
    default:
      return false;
  }
}

double ldmc_scalar_unary_f(ldmc_op op, double x) {
  switch (op) {
    case LDMC_OP_NEG: return -x;
    case LDMC_OP_ABS: return fabs(x);
    case LDMC_OP_EXP: return exp(x);
    case LDMC_OP_LOG: return log(x);
    case LDMC_OP_SQRT: return sqrt(x);
    case LDMC_OP_RSQRT: return 1.0 / sqrt(x);
    case LDMC_OP_TANH: return tanh(x);
    case LDMC_OP_LOGISTIC: return 1.0 / (1.0 + exp(-x));
    case LDMC_OP_SIN: return sin(x);
    case LDMC_OP_COS: return cos(x);
    case LDMC_OP_ERF: return erf(x);
    case LDMC_OP_SILU: return x / (1.0 + exp(-x));                   /* x * sigmoid(x) */
    case LDMC_OP_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); /* the exact (erf) form */
    default: return NAN;
  }
}

/* in uint64, so overflow wraps instead of being undefined */
int64_t ldmc_scalar_unary_i(ldmc_op op, int64_t x) {
  uint64_t u = (uint64_t)x;
  switch (op) {
    case LDMC_OP_NEG: return (int64_t)(0 - u);
    case LDMC_OP_ABS: return x < 0 ? (int64_t)(0 - u) : x;
    default: return 0;
  }
}

double ldmc_scalar_binary_f(ldmc_op op, double x, double y) {
  switch (op) {
    case LDMC_OP_ADD: return x + y;
    case LDMC_OP_SUB: return x - y;
    case LDMC_OP_MUL: return x * y;
    case LDMC_OP_DIV: return x / y;
    case LDMC_OP_MAX: return isnan(x) || isnan(y) ? NAN : x > y ? x : y;
    case LDMC_OP_MIN: return isnan(x) || isnan(y) ? NAN : x < y ? x : y;
    case LDMC_OP_POW: return pow(x, y);
    default: return NAN;
  }
}

int64_t ldmc_scalar_binary_i(ldmc_op op, int64_t x, int64_t y) {
  uint64_t a = (uint64_t)x, b = (uint64_t)y;
  switch (op) {
    case LDMC_OP_ADD: return (int64_t)(a + b);
    case LDMC_OP_SUB: return (int64_t)(a - b);
    case LDMC_OP_MUL: return (int64_t)(a * b);
    case LDMC_OP_DIV:
      if (y == 0) return 0;
      if (y == -1) return (int64_t)(0 - a); /* INT64_MIN / -1 wraps */
      return x / y;
    case LDMC_OP_MAX: return x > y ? x : y;
    case LDMC_OP_MIN: return x < y ? x : y;
    default: return 0;
  }
}

bool ldmc_scalar_compare_f(ldmc_compare c, double x, double y) {
  switch (c) {
    case LDMC_CMP_EQ: return x == y;
    case LDMC_CMP_NE: return x != y;
    case LDMC_CMP_LT: return x < y;
    case LDMC_CMP_LE: return x <= y;
    case LDMC_CMP_GT: return x > y;
    case LDMC_CMP_GE: return x >= y;
    default: return false;
  }
}

bool ldmc_scalar_compare_i(ldmc_compare c, int64_t x, int64_t y) {
  switch (c) {
    case LDMC_CMP_EQ: return x == y;
    case LDMC_CMP_NE: return x != y;
    case LDMC_CMP_LT: return x < y;
    case LDMC_CMP_LE: return x <= y;
    case LDMC_CMP_GT: return x > y;
    case LDMC_CMP_GE: return x >= y;
    default: return false;
  }
}

int64_t ldmc_scalar_float_to_int(double v, ldmc_dtype dt) {
  if (isnan(v)) return 0;
  double lo = dt == LDMC_I32 ? -2147483648.0 : -9223372036854775808.0;
  double hi = dt == LDMC_I32 ? 2147483647.0 : 9223372036854775807.0; /* rounds up to 2^63 for i64 */
  if (v <= lo) return dt == LDMC_I32 ? INT32_MIN : INT64_MIN;
  if (v >= hi) return dt == LDMC_I32 ? INT32_MAX : INT64_MAX;
  return (int64_t)v; /* C truncates toward zero */
}

/* int64 -> double rounded to odd (exact below 2^53): a float store of it then
 * rounds once */
static double i64_round_odd(int64_t x) {
  uint64_t m = x < 0 ? 0 - (uint64_t)x : (uint64_t)x;
  if (m < (UINT64_C(1) << 53)) return (double)x;
  int s = 0;
  while ((m >> s) >= (UINT64_C(1) << 53)) s++;
  uint64_t sticky = (m & ((UINT64_C(1) << s) - 1)) != 0;
  double d = ldexp((double)((m >> s) | sticky), s);
  return x < 0 ? -d : d;
}

double ldmc_scalar_getf(const ldmc_tensor *t, int64_t i) { return ldmc_tensor_get(t, i); }

int64_t ldmc_scalar_geti(const ldmc_tensor *t, int64_t i) {
  const uint8_t *p = (const uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case LDMC_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    case LDMC_PRED: return p[i] != 0;
    default: return ldmc_scalar_float_to_int(ldmc_tensor_get(t, i), LDMC_I64);
  }
}

/* f64: the double; f32: one rounding of it; bf16/f16: through a round-to-odd f32 (support/half.h) */
void ldmc_scalar_setf(ldmc_tensor *t, int64_t i, double v) {
  if (ldmc_dtype_is_float(t->dtype)) ldmc_tensor_set_elem(t, i, v);
  else ldmc_scalar_seti(t, i, ldmc_scalar_float_to_int(v, t->dtype == LDMC_PRED ? LDMC_I64 : t->dtype));
}

void ldmc_scalar_seti(ldmc_tensor *t, int64_t i, int64_t v) {
  uint8_t *p = (uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_I32: { int32_t x = (int32_t)(uint32_t)(uint64_t)v; memcpy(p + 4 * i, &x, 4); break; }
    case LDMC_I64: memcpy(p + 8 * i, &v, 8); break;
    case LDMC_PRED: p[i] = v != 0; break;
    /* f64 is the last rounding: nearest even, not the odd pre-rounding the narrower floats need */
    case LDMC_F64: ldmc_tensor_set_elem(t, i, (double)v); break;
    default: ldmc_tensor_set_elem(t, i, i64_round_odd(v)); break;
  }
}

static int64_t numel(const ldmc_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

static void convert(const ldmc_tensor *x, ldmc_tensor *out, int64_t total) {
  bool fin = ldmc_dtype_is_float(x->dtype), fout = ldmc_dtype_is_float(out->dtype);
  for (int64_t i = 0; i < total; i++) {
    if (fin && fout) ldmc_scalar_setf(out, i, ldmc_scalar_getf(x, i));
    else if (fin && out->dtype == LDMC_PRED) ldmc_scalar_seti(out, i, ldmc_scalar_getf(x, i) != 0.0);
    else if (fin) ldmc_scalar_seti(out, i, ldmc_scalar_float_to_int(ldmc_scalar_getf(x, i), out->dtype));
    else ldmc_scalar_seti(out, i, ldmc_scalar_geti(x, i)); /* int/pred -> anything: exact, wrap, or one rounding */
  }
}

ldmc_status ldmc_scalar_eval_elementwise(const ldmc_node *n, const ldmc_tensor *const *in, ldmc_tensor *out) {
  if (!ldmc_scalar_op_supported(n->op))
    return ldmc_error(LDMC_ERR_INTERNAL, "%s is not an elementwise op", ldmc_op_name(n->op));
  const ldmc_tensor *x = in[0];
  int64_t total = numel(&out->shape);
  bool fl = ldmc_dtype_is_float(x->dtype);
  switch (n->op) {
    case LDMC_OP_CONVERT:
      convert(x, out, total);
      return LDMC_OK;
    case LDMC_OP_COMPARE: {
      const ldmc_tensor *y = in[1];
      for (int64_t i = 0; i < total; i++)
        ldmc_scalar_seti(out, i, fl ? ldmc_scalar_compare_f(n->attrs.direction, ldmc_scalar_getf(x, i), ldmc_scalar_getf(y, i))
                                    : ldmc_scalar_compare_i(n->attrs.direction, ldmc_scalar_geti(x, i), ldmc_scalar_geti(y, i)));
      return LDMC_OK;
    }
    case LDMC_OP_SELECT: { /* bytes copied as they are: exact for every dtype */
      const uint8_t *t = in[1]->data, *f = in[2]->data;
      uint8_t *o = out->data;
      size_t es = ldmc_dtype_size(out->dtype);
      for (int64_t i = 0; i < total; i++)
        memcpy(o + (size_t)i * es, (ldmc_scalar_geti(x, i) ? t : f) + (size_t)i * es, es);
      return LDMC_OK;
    }
    default: break;
  }
  if (n->n_operands == 1) {
    for (int64_t i = 0; i < total; i++) {
      if (fl) ldmc_scalar_setf(out, i, ldmc_scalar_unary_f(n->op, ldmc_scalar_getf(x, i)));
      else ldmc_scalar_seti(out, i, ldmc_scalar_unary_i(n->op, ldmc_scalar_geti(x, i)));
    }
  } else {
    const ldmc_tensor *y = in[1];
    for (int64_t i = 0; i < total; i++) {
      if (fl) ldmc_scalar_setf(out, i, ldmc_scalar_binary_f(n->op, ldmc_scalar_getf(x, i), ldmc_scalar_getf(y, i)));
      else ldmc_scalar_seti(out, i, ldmc_scalar_binary_i(n->op, ldmc_scalar_geti(x, i), ldmc_scalar_geti(y, i)));
    }
  }
  return LDMC_OK;
}
