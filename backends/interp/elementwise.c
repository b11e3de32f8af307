/* Sources (constant, iota) and elementwise ops: convert, unary, binary,
 * compare, select. Floats are computed in double and rounded once on store;
 * integers exactly in 64 bits, wrapping to the result width. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backends/interp/interp.h"

ldmc_status ldmc_interp_source(const ldmc_interp_args *a) {
  const ldmc_node *n = a->node;
  ldmc_tensor *out = a->out;
  if (n->op == LDMC_OP_CONSTANT) {
    if (n->attrs.value.nbytes != out->nbytes)
      return ldmc_error(LDMC_ERR_INVALID, "constant holds %zu bytes, its type needs %zu", n->attrs.value.nbytes,
                        out->nbytes);
    if (out->nbytes) memcpy(out->data, n->attrs.value.data, out->nbytes);
    return LDMC_OK;
  }
  /* iota: the coordinate along axis */
  int64_t st[LDMC_MAX_RANK], total = ldmc_interp_numel(&out->shape);
  ldmc_interp_strides(&out->shape, st);
  int ax = (int)n->attrs.axis;
  for (int64_t i = 0; i < total; i++) {
    int64_t c = (i / st[ax]) % out->shape.dims[ax];
    if (ldmc_interp_is_float(out))
      ldmc_interp_setf(out, i, (double)c);
    else
      ldmc_interp_seti(out, i, c);
  }
  return LDMC_OK;
}

/* float -> integer: truncate toward zero, NaN -> 0, saturate at the range. */
static int64_t float_to_int(double v, ldmc_dtype dt) {
  if (isnan(v)) return 0;
  double lo = dt == LDMC_I32 ? -2147483648.0 : -9223372036854775808.0;
  double hi = dt == LDMC_I32 ? 2147483647.0 : 9223372036854775807.0; /* rounds up to 2^63 for i64 */
  if (v <= lo) return dt == LDMC_I32 ? INT32_MIN : INT64_MIN;
  if (v >= hi) return dt == LDMC_I32 ? INT32_MAX : INT64_MAX;
  return (int64_t)v; /* C truncates toward zero */
}

static void convert(const ldmc_tensor *x, ldmc_tensor *out, int64_t total) {
  bool fin = ldmc_interp_is_float(x), fout = ldmc_interp_is_float(out);
  for (int64_t i = 0; i < total; i++) {
    if (fin && fout) {
      ldmc_interp_setf(out, i, ldmc_interp_getf(x, i));
    } else if (fin && out->dtype == LDMC_PRED) {
      ldmc_interp_seti(out, i, ldmc_interp_getf(x, i) != 0.0);
    } else if (fin) {
      ldmc_interp_seti(out, i, float_to_int(ldmc_interp_getf(x, i), out->dtype));
    } else {
      ldmc_interp_seti(out, i, ldmc_interp_geti(x, i)); /* int/pred -> anything: exact, wrap, or one rounding */
    }
  }
}

static double logistic(double x) { return 1.0 / (1.0 + exp(-x)); }

static double unary_f(ldmc_op op, double x) {
  switch (op) {
    case LDMC_OP_NEG: return -x;
    case LDMC_OP_ABS: return fabs(x);
    case LDMC_OP_EXP: return exp(x);
    case LDMC_OP_LOG: return log(x);
    case LDMC_OP_SQRT: return sqrt(x);
    case LDMC_OP_RSQRT: return 1.0 / sqrt(x);
    case LDMC_OP_TANH: return tanh(x);
    case LDMC_OP_LOGISTIC: return logistic(x);
    case LDMC_OP_SIN: return sin(x);
    case LDMC_OP_COS: return cos(x);
    case LDMC_OP_ERF: return erf(x);
    default: return NAN;
  }
}

/* Integer arithmetic in uint64 so overflow wraps instead of being undefined. */
static int64_t unary_i(ldmc_op op, int64_t x) {
  uint64_t u = (uint64_t)x;
  switch (op) {
    case LDMC_OP_NEG: return (int64_t)(0 - u);
    case LDMC_OP_ABS: return x < 0 ? (int64_t)(0 - u) : x;
    default: return 0;
  }
}

static double binary_f(ldmc_op op, double x, double y) {
  switch (op) {
    case LDMC_OP_ADD: return x + y;
    case LDMC_OP_SUB: return x - y;
    case LDMC_OP_MUL: return x * y;
    case LDMC_OP_DIV: return x / y;
    case LDMC_OP_MAX: return isnan(x) || isnan(y) ? NAN : x > y ? x : y; /* NaN propagates */
    case LDMC_OP_MIN: return isnan(x) || isnan(y) ? NAN : x < y ? x : y;
    case LDMC_OP_POW: return pow(x, y);
    default: return NAN;
  }
}

/* Division truncates toward zero; x / 0 is 0; INT_MIN / -1 wraps to INT_MIN. */
static int64_t binary_i(ldmc_op op, int64_t x, int64_t y) {
  uint64_t a = (uint64_t)x, b = (uint64_t)y;
  switch (op) {
    case LDMC_OP_ADD: return (int64_t)(a + b);
    case LDMC_OP_SUB: return (int64_t)(a - b);
    case LDMC_OP_MUL: return (int64_t)(a * b);
    case LDMC_OP_DIV:
      if (y == 0) return 0;
      if (y == -1) return (int64_t)(0 - a);
      return x / y;
    case LDMC_OP_MAX: return x > y ? x : y;
    case LDMC_OP_MIN: return x < y ? x : y;
    default: return 0;
  }
}

static bool compare_f(ldmc_compare c, double x, double y) { /* IEEE: NaN is unordered, only ne holds */
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

static bool compare_i(ldmc_compare c, int64_t x, int64_t y) {
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

ldmc_status ldmc_interp_elementwise(const ldmc_interp_args *a) {
  const ldmc_node *n = a->node;
  ldmc_tensor *out = a->out;
  const ldmc_tensor *x = a->in[0];
  int64_t total = ldmc_interp_numel(&out->shape);
  bool fl = ldmc_interp_is_float(x);
  switch (n->op) {
    case LDMC_OP_CONVERT:
      convert(x, out, total);
      return LDMC_OK;
    case LDMC_OP_NEG: case LDMC_OP_ABS: case LDMC_OP_EXP: case LDMC_OP_LOG: case LDMC_OP_SQRT:
    case LDMC_OP_RSQRT: case LDMC_OP_TANH: case LDMC_OP_LOGISTIC: case LDMC_OP_SIN: case LDMC_OP_COS:
    case LDMC_OP_ERF:
      for (int64_t i = 0; i < total; i++) {
        if (fl)
          ldmc_interp_setf(out, i, unary_f(n->op, ldmc_interp_getf(x, i)));
        else
          ldmc_interp_seti(out, i, unary_i(n->op, ldmc_interp_geti(x, i)));
      }
      return LDMC_OK;
    case LDMC_OP_ADD: case LDMC_OP_SUB: case LDMC_OP_MUL: case LDMC_OP_DIV: case LDMC_OP_MAX: case LDMC_OP_MIN:
    case LDMC_OP_POW: {
      const ldmc_tensor *y = a->in[1];
      for (int64_t i = 0; i < total; i++) {
        if (fl)
          ldmc_interp_setf(out, i, binary_f(n->op, ldmc_interp_getf(x, i), ldmc_interp_getf(y, i)));
        else
          ldmc_interp_seti(out, i, binary_i(n->op, ldmc_interp_geti(x, i), ldmc_interp_geti(y, i)));
      }
      return LDMC_OK;
    }
    case LDMC_OP_COMPARE: {
      const ldmc_tensor *y = a->in[1];
      uint8_t *o = out->data;
      for (int64_t i = 0; i < total; i++)
        o[i] = fl ? compare_f(n->attrs.direction, ldmc_interp_getf(x, i), ldmc_interp_getf(y, i))
                  : compare_i(n->attrs.direction, ldmc_interp_geti(x, i), ldmc_interp_geti(y, i));
      return LDMC_OK;
    }
    case LDMC_OP_SELECT: { /* bytes copied as they are: exact for every dtype */
      const uint8_t *p = a->in[0]->data, *t = a->in[1]->data, *f = a->in[2]->data;
      uint8_t *o = out->data;
      size_t es = ldmc_dtype_size(out->dtype);
      for (int64_t i = 0; i < total; i++) memcpy(o + (size_t)i * es, (p[i] ? t : f) + (size_t)i * es, es);
      return LDMC_OK;
    }
    default:
      return ldmc_error(LDMC_ERR_INTERNAL, "interp: %s is not an elementwise op", ldmc_op_name(n->op));
  }
}
