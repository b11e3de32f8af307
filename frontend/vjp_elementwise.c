/* VJP rules: elementwise ops (see frontend/vjp.h). Conventions at kinks and
 * ties follow JAX (docs/autodiff.md):
 *   abs      d|x|/dx = 1 at x = 0 (select(x >= 0, ct, -ct))
 *   max/min  where x == y each operand gets half of ct
 *   pow      d/dx = 0 where y == 0; d/dy = log(x) * x^y with log(0) read as
 *            log(1) (so 0 at x = 0); NaN where x < 0 (log of a negative)
 *   select   nothing flows to the predicate
 *   convert  float -> float converts ct back; int <-> float carries none */
#include <math.h>

#include "frontend/vjp.h"

static ldmc_value scalar_like(ldmc_builder *b, ldmc_value like, double v) {
  return ldmc_constant_scalar(b, ldmc_value_dtype(b, like), v);
}

/* v in the dtype and shape of like */
static ldmc_value filled_like(ldmc_builder *b, ldmc_value like, double v) {
  const ldmc_shape *sp = ldmc_value_shape(b, like);
  if (!sp) return -1;
  const ldmc_shape s = *sp; /* a copy: adding nodes may move the graph's */
  ldmc_value c = scalar_like(b, like, v);
  return s.rank == 0 ? c : ldmc_broadcast_in_dim(b, c, s.rank, s.dims, NULL);
}

static ldmc_value zeros_like(ldmc_builder *b, ldmc_value like) { return filled_like(b, like, 0.0); }

static ldmc_value neg(ldmc_builder *b, ldmc_value x) { return ldmc_unary(b, LDMC_OP_NEG, x); }

static bool vjp_unary(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_value x = a->x[0], y = a->y, g = a->ct, d = -1;
  switch (a->n->op) {
    case LDMC_OP_NEG: d = neg(b, g); break;
    case LDMC_OP_ABS:
      d = ldmc_select(b, ldmc_compare_values(b, LDMC_CMP_GE, x, scalar_like(b, x, 0.0)), g, neg(b, g));
      break;
    case LDMC_OP_EXP: d = ldmc_mul(b, g, y); break;
    case LDMC_OP_LOG: d = ldmc_div(b, g, x); break;
    case LDMC_OP_SQRT: d = ldmc_div(b, ldmc_scale(b, g, 0.5), y); break; /* 1 / (2 sqrt x) */
    case LDMC_OP_RSQRT: d = ldmc_mul(b, g, ldmc_scale(b, ldmc_div(b, y, x), -0.5)); break; /* -x^-3/2 / 2 */
    case LDMC_OP_TANH: d = ldmc_mul(b, g, ldmc_sub(b, scalar_like(b, y, 1.0), ldmc_mul(b, y, y))); break;
    case LDMC_OP_LOGISTIC: d = ldmc_mul(b, g, ldmc_mul(b, y, ldmc_sub(b, scalar_like(b, y, 1.0), y))); break;
    case LDMC_OP_SIN: d = ldmc_mul(b, g, ldmc_unary(b, LDMC_OP_COS, x)); break;
    case LDMC_OP_COS: d = neg(b, ldmc_mul(b, g, ldmc_unary(b, LDMC_OP_SIN, x))); break;
    case LDMC_OP_ERF: { /* 2/sqrt(pi) exp(-x^2) */
      ldmc_value e = ldmc_unary(b, LDMC_OP_EXP, neg(b, ldmc_mul(b, x, x)));
      d = ldmc_mul(b, g, ldmc_scale(b, e, 2.0 / sqrt(M_PI)));
      break;
    }
    default: break;
  }
  dx[0] = d;
  return d >= 0;
}

/* JAX's balanced rule: where x == y, half of ct to each. */
static bool vjp_max_min(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_value g = a->ct, z = zeros_like(b, g), half = ldmc_scale(b, g, 0.5);
  ldmc_value eq[2] = {ldmc_compare_values(b, LDMC_CMP_EQ, a->x[0], a->y),
                      ldmc_compare_values(b, LDMC_CMP_EQ, a->x[1], a->y)};
  for (int i = 0; i < 2; i++) {
    if (!a->need[i]) continue;
    dx[i] = ldmc_select(b, eq[i], ldmc_select(b, eq[1 - i], half, g), z);
    if (dx[i] < 0) return false;
  }
  return true;
}

static bool vjp_pow(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_value x = a->x[0], e = a->x[1], g = a->ct;
  if (a->need[0]) { /* y x^(y-1), and 0 where y == 0 (even at x = 0) */
    ldmc_value jac = ldmc_mul(b, e, ldmc_binary(b, LDMC_OP_POW, x, ldmc_sub(b, e, scalar_like(b, e, 1.0))));
    ldmc_value e0 = ldmc_compare_values(b, LDMC_CMP_EQ, e, scalar_like(b, e, 0.0));
    dx[0] = ldmc_mul(b, g, ldmc_select(b, e0, zeros_like(b, e), jac));
    if (dx[0] < 0) return false;
  }
  if (a->need[1]) { /* log(x) x^y, log(0) read as log(1) */
    ldmc_value x0 = ldmc_compare_values(b, LDMC_CMP_EQ, x, scalar_like(b, x, 0.0));
    ldmc_value lg = ldmc_unary(b, LDMC_OP_LOG, ldmc_select(b, x0, filled_like(b, x, 1.0), x));
    dx[1] = ldmc_mul(b, g, ldmc_mul(b, lg, a->y));
    if (dx[1] < 0) return false;
  }
  return true;
}

static bool vjp_binary(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_value x = a->x[0], y = a->x[1], g = a->ct;
  const bool *need = a->need;
  switch (a->n->op) {
    case LDMC_OP_ADD:
      if (need[0]) dx[0] = g;
      if (need[1]) dx[1] = g;
      break;
    case LDMC_OP_SUB:
      if (need[0]) dx[0] = g;
      if (need[1]) dx[1] = neg(b, g);
      break;
    case LDMC_OP_MUL:
      if (need[0]) dx[0] = ldmc_mul(b, g, y);
      if (need[1]) dx[1] = ldmc_mul(b, g, x);
      break;
    case LDMC_OP_DIV: /* d/dy (x/y) = -(x/y)/y */
      if (need[0]) dx[0] = ldmc_div(b, g, y);
      if (need[1]) dx[1] = neg(b, ldmc_div(b, ldmc_mul(b, g, a->y), y));
      break;
    case LDMC_OP_MAX: case LDMC_OP_MIN: return vjp_max_min(a, dx);
    case LDMC_OP_POW: return vjp_pow(a, dx);
    default: return false;
  }
  return (!need[0] || dx[0] >= 0) && (!need[1] || dx[1] >= 0);
}

static bool vjp_select(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_value p = a->x[0], g = a->ct, z = zeros_like(b, g);
  if (a->need[1] && (dx[1] = ldmc_select(b, p, g, z)) < 0) return false;
  if (a->need[2] && (dx[2] = ldmc_select(b, p, z, g)) < 0) return false;
  return true;
}

static bool vjp_convert(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_dtype from = ldmc_value_dtype(a->b, a->x[0]);
  if (!ldmc_dtype_is_float(from) || !ldmc_dtype_is_float(a->n->dtype)) return true; /* no cotangent crosses ints */
  dx[0] = ldmc_convert(a->b, a->ct, from);
  return dx[0] >= 0;
}

void ldmc_vjp_register_elementwise(ldmc_vjp_rule *table) {
  static const ldmc_op unary[] = {LDMC_OP_NEG, LDMC_OP_ABS, LDMC_OP_EXP, LDMC_OP_LOG, LDMC_OP_SQRT, LDMC_OP_RSQRT,
                                  LDMC_OP_TANH, LDMC_OP_LOGISTIC, LDMC_OP_SIN, LDMC_OP_COS, LDMC_OP_ERF};
  static const ldmc_op binary[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV,
                                   LDMC_OP_MAX, LDMC_OP_MIN, LDMC_OP_POW};
  for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) table[unary[i]] = vjp_unary;
  for (size_t i = 0; i < sizeof binary / sizeof binary[0]; i++) table[binary[i]] = vjp_binary;
  table[LDMC_OP_SELECT] = vjp_select;
  table[LDMC_OP_CONVERT] = vjp_convert;
}
