/* VJP rules: composite ops (see frontend/vjp.h), built natively rather than by
 * differentiating their decompositions, so the backward graphs stay compact.
 * bf16/f16 rules compute in f32 between converts (as passes/decompose.c does);
 * f32 (and wider) compute in their own dtype. The norms recompute their
 * statistics the way the forward does: two-pass mean, biased variance, eps
 * inside the sqrt. Attention's backward is three ops of its own
 * (attention_lse, attention_grad_q, attention_grad_kv) that recompute the
 * probabilities from the log-sum-exp, flash style. */
#include <math.h>

#include "frontend/vjp.h"

static ldmc_dtype compute_dtype(ldmc_dtype dt) { return dt == LDMC_BF16 || dt == LDMC_F16 ? LDMC_F32 : dt; }

static ldmc_value to(ldmc_builder *b, ldmc_value v, ldmc_dtype dt) {
  if (v < 0) return -1;
  return ldmc_value_dtype(b, v) == dt ? v : ldmc_convert(b, v, dt);
}

/* A copy of v's shape (the builder's node array moves as nodes are added). */
static ldmc_shape shape_of(const ldmc_builder *b, ldmc_value v) {
  const ldmc_shape *s = ldmc_value_shape(b, v);
  return s ? *s : (ldmc_shape){0};
}

/* A scalar broadcast to s, made once and shared by several uses. */
static ldmc_value splat(ldmc_builder *b, ldmc_dtype dt, double v, const ldmc_shape *s) {
  ldmc_value k = ldmc_constant_scalar(b, dt, v);
  return s->rank ? ldmc_broadcast_in_dim(b, k, s->rank, s->dims, NULL) : k;
}

static ldmc_value rsum(ldmc_builder *b, ldmc_value x, int n, const int64_t *axes) {
  return ldmc_reduce(b, LDMC_REDUCE_SUM, x, n, axes, false);
}

/* r, a reduction over the sorted axes red, broadcast back to shape s: one
 * broadcast_in_dim instead of keepdims' reshape + broadcast. */
static ldmc_value expand(ldmc_builder *b, ldmc_value r, const ldmc_shape *s, int n, const int64_t *red) {
  int64_t keep[LDMC_MAX_RANK];
  int k = 0;
  for (int d = 0, j = 0; d < s->rank; d++) {
    if (j < n && red[j] == d) {
      j++;
      continue;
    }
    keep[k++] = d;
  }
  return ldmc_broadcast_in_dim(b, r, s->rank, s->dims, keep);
}

static bool ok(const ldmc_builder *b) { return ldmc_builder_status(b) == LDMC_OK; }

/* silu: ct * s (1 + x (1 - s)) = ct * (s + y (1 - s)), s = logistic(x). */
static bool vjp_silu(const ldmc_vjp_args *a, ldmc_value *dx) {
  if (!a->need[0]) return true;
  ldmc_builder *b = a->b;
  ldmc_dtype dt = a->n->dtype, cd = compute_dtype(dt);
  ldmc_value x = to(b, a->x[0], cd), ct = to(b, a->ct, cd);
  ldmc_value s = ldmc_unary(b, LDMC_OP_LOGISTIC, x);
  ldmc_value y = cd == dt ? a->y : ldmc_mul(b, x, s); /* y unrounded when the forward is bf16/f16 */
  ldmc_value one_minus_s = ldmc_sub(b, ldmc_constant_scalar(b, cd, 1.0), s);
  ldmc_value d = ldmc_add(b, s, ldmc_mul(b, y, one_minus_s));
  dx[0] = to(b, ldmc_mul(b, ct, d), dt);
  return ok(b);
}

/* gelu (erf form): ct * (Phi(x) + x phi(x))
 *   = ct * (0.5 + 0.5 erf(u) + u exp(-u^2) / sqrt(pi)),  u = x / sqrt(2). */
static bool vjp_gelu(const ldmc_vjp_args *a, ldmc_value *dx) {
  if (!a->need[0]) return true;
  ldmc_builder *b = a->b;
  ldmc_dtype dt = a->n->dtype, cd = compute_dtype(dt);
  ldmc_value x = to(b, a->x[0], cd), ct = to(b, a->ct, cd);
  ldmc_shape s = shape_of(b, x);
  ldmc_value u = ldmc_mul(b, x, splat(b, cd, M_SQRT1_2, &s)), half = splat(b, cd, 0.5, &s);
  ldmc_value cdf = ldmc_add(b, half, ldmc_mul(b, half, ldmc_unary(b, LDMC_OP_ERF, u)));
  ldmc_value e = ldmc_unary(b, LDMC_OP_EXP, ldmc_unary(b, LDMC_OP_NEG, ldmc_mul(b, u, u)));
  ldmc_value xpdf = ldmc_mul(b, ldmc_mul(b, u, splat(b, cd, 0.5 * M_2_SQRTPI, &s)), e); /* 1/sqrt(pi) */
  dx[0] = to(b, ldmc_mul(b, ct, ldmc_add(b, cdf, xpdf)), dt);
  return ok(b);
}

/* softmax: ct*y - y * sum(ct*y, axis). */
static bool vjp_softmax(const ldmc_vjp_args *a, ldmc_value *dx) {
  if (!a->need[0]) return true;
  ldmc_builder *b = a->b;
  ldmc_dtype dt = a->n->dtype, cd = compute_dtype(dt);
  ldmc_value y = to(b, a->y, cd), ct = to(b, a->ct, cd);
  ldmc_shape s = a->n->shape;
  int64_t ax = a->n->attrs.axis;
  ldmc_value cy = ldmc_mul(b, ct, y);
  ldmc_value sum = expand(b, rsum(b, cy, 1, &ax), &s, 1, &ax);
  dx[0] = to(b, ldmc_sub(b, cy, ldmc_mul(b, y, sum)), dt);
  return ok(b);
}

/* group_norm and layer_norm, on the view x4 = [A, G, K, S] of x: statistics
 * over dims (2, 3), gamma/beta viewed as [G, K] on dims (1, 2).
 *   group_norm: [N, groups, C/groups, spatial]; layer_norm: [outer, 1, inner, 1].
 * With g = ct * gamma and means over the statistics dims:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat)), dgamma = sum(ct xhat),
 *   dbeta = sum(ct), the last two over dims (0, 3). */
static bool norm_vjp(const ldmc_vjp_args *a, const int64_t v4[4], ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_dtype dt = a->n->dtype, cd = compute_dtype(dt);
  static const int64_t stat[2] = {2, 3}, param[2] = {0, 3}, gmap[2] = {1, 2};
  const ldmc_shape xs = a->n->shape, gs = shape_of(b, a->x[1]);
  const ldmc_shape s4 = ldmc_shape_make(4, v4), st = {.rank = 2, .dims = {v4[0], v4[1]}};
  const int64_t gdims[2] = {v4[1], v4[2]};
  ldmc_value ct = ldmc_reshape(b, to(b, a->ct, cd), 4, v4), xhat = -1, rstd = -1, inv = -1;
  if (a->need[0] || a->need[1]) {
    ldmc_value x = ldmc_reshape(b, to(b, a->x[0], cd), 4, v4);
    inv = splat(b, cd, 1.0 / (double)(v4[2] * v4[3]), &st);
    ldmc_value mean = ldmc_mul(b, rsum(b, x, 2, stat), inv);
    ldmc_value d = ldmc_sub(b, x, expand(b, mean, &s4, 2, stat));
    ldmc_value var = ldmc_mul(b, rsum(b, ldmc_mul(b, d, d), 2, stat), inv);
    ldmc_value r = ldmc_unary(b, LDMC_OP_RSQRT, ldmc_add(b, var, ldmc_constant_scalar(b, cd, a->n->attrs.eps)));
    rstd = expand(b, r, &s4, 2, stat);
    xhat = ldmc_mul(b, d, rstd);
  }
  if (a->need[0]) {
    ldmc_value gamma = ldmc_reshape(b, to(b, a->x[1], cd), 2, gdims);
    ldmc_value g = ldmc_mul(b, ct, ldmc_broadcast_in_dim(b, gamma, 4, v4, gmap));
    ldmc_value mg = expand(b, ldmc_mul(b, rsum(b, g, 2, stat), inv), &s4, 2, stat);
    ldmc_value mgx = expand(b, ldmc_mul(b, rsum(b, ldmc_mul(b, g, xhat), 2, stat), inv), &s4, 2, stat);
    ldmc_value d4 = ldmc_mul(b, rstd, ldmc_sub(b, ldmc_sub(b, g, mg), ldmc_mul(b, xhat, mgx)));
    dx[0] = to(b, ldmc_reshape(b, d4, xs.rank, xs.dims), dt);
  }
  if (a->need[1]) dx[1] = to(b, ldmc_reshape(b, rsum(b, ldmc_mul(b, ct, xhat), 2, param), gs.rank, gs.dims), dt);
  if (a->need[2]) dx[2] = to(b, ldmc_reshape(b, rsum(b, ct, 2, param), gs.rank, gs.dims), dt);
  return ok(b);
}

static bool vjp_group_norm(const ldmc_vjp_args *a, ldmc_value *dx) {
  const ldmc_shape *s = &a->n->shape;
  int64_t G = a->n->attrs.groups, sp = 1;
  for (int i = 2; i < s->rank; i++) sp *= s->dims[i];
  const int64_t v4[4] = {s->dims[0], G, s->dims[1] / G, sp};
  return norm_vjp(a, v4, dx);
}

static bool vjp_layer_norm(const ldmc_vjp_args *a, ldmc_value *dx) {
  const ldmc_shape *s = &a->n->shape;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < a->n->attrs.axis; i++) outer *= s->dims[i];
  for (int i = (int)a->n->attrs.axis; i < s->rank; i++) inner *= s->dims[i];
  const int64_t v4[4] = {outer, 1, inner, 1};
  return norm_vjp(a, v4, dx);
}

/* attention, q[..., N, D], k[..., M, D], v[..., M, E], y = P v with
 * P = exp(S - L), S = scale q k^T, L the row log-sum-exp (attention_lse):
 *   delta = rowsum(ct y), dS = P (ct v^T - delta);
 *   dq = scale dS k (attention_grad_q); (dk | dv) = (scale dS^T q | P^T ct)
 *   (attention_grad_kv, one op for both: P is recomputed once), sliced apart.
 * The ops recompute P from L block by block (flash style) where a backend
 * runs them; their decompositions (passes/decompose.c) build the N x M form.
 * q, k, v and ct go in their own dtype (bf16 storage read by the kernels);
 * lse, delta and the results are f32 (f64 for f64). */
static bool vjp_attention(const ldmc_vjp_args *a, ldmc_value *dx) {
  if (!a->need[0] && !a->need[1] && !a->need[2]) return true;
  ldmc_builder *b = a->b;
  ldmc_dtype dt = a->n->dtype, cd = compute_dtype(dt);
  double scale = a->n->attrs.scale;
  const ldmc_value q = a->x[0], k = a->x[1], v = a->x[2], ct = a->ct;
  const ldmc_shape ks = shape_of(b, k), vs = shape_of(b, v);
  int r = a->n->shape.rank;
  const int64_t row = r - 1;
  ldmc_value lse = ldmc_attention_lse(b, q, k, scale);
  ldmc_value delta; /* [..., N]; dv alone does not read it */
  if (a->need[0] || a->need[1]) {
    delta = rsum(b, ldmc_mul(b, to(b, ct, cd), to(b, a->y, cd)), 1, &row);
  } else {
    ldmc_shape ds = a->n->shape;
    ds.rank--;
    delta = splat(b, cd, 0.0, &ds);
  }
  if (a->need[0]) dx[0] = to(b, ldmc_attention_grad_q(b, q, k, v, ct, lse, delta, scale), dt);
  if (a->need[1] || a->need[2]) {
    ldmc_value kv = ldmc_attention_grad_kv(b, q, k, v, ct, lse, delta, scale); /* [..., M, D + E] */
    int64_t start[LDMC_MAX_RANK] = {0}, limit[LDMC_MAX_RANK], stride[LDMC_MAX_RANK];
    for (int i = 0; i < r; i++) limit[i] = ks.dims[i], stride[i] = 1;
    if (a->need[1]) dx[1] = to(b, ldmc_slice(b, kv, start, limit, stride), dt);
    start[r - 1] = ks.dims[r - 1];
    limit[r - 1] = ks.dims[r - 1] + vs.dims[r - 1];
    if (a->need[2]) dx[2] = to(b, ldmc_slice(b, kv, start, limit, stride), dt);
  }
  return ok(b);
}

/* upsample_nearest: each x element's cotangent is the sum over its factor^d
 * block of ct. Splitting every spatial dim into (dim, factor) and summing the
 * factor dims gives x's shape at once when 2 + 2 d <= 8 dims; more spatial
 * dims go three at a time over a [P, s, f, s, f, s, f, Q] view. */
static bool vjp_upsample(const ldmc_vjp_args *a, ldmc_value *dx) {
  if (!a->need[0] || !ldmc_dtype_is_float(a->n->dtype)) return true;
  ldmc_builder *b = a->b;
  ldmc_dtype dt = a->n->dtype, cd = compute_dtype(dt);
  int64_t f = a->n->attrs.factor;
  ldmc_shape xs = shape_of(b, a->x[0]);
  int nsp = xs.rank - 2;
  if (f == 1) {
    dx[0] = a->ct;
    return ok(b);
  }
  ldmc_value g = to(b, a->ct, cd);
  if (2 + 2 * nsp <= LDMC_MAX_RANK) {
    int64_t v[LDMC_MAX_RANK] = {xs.dims[0], xs.dims[1]}, red[LDMC_MAX_RANK / 2];
    for (int i = 0; i < nsp; i++) {
      v[2 + 2 * i] = xs.dims[2 + i];
      v[3 + 2 * i] = f;
      red[i] = 3 + 2 * i;
    }
    g = rsum(b, ldmc_reshape(b, g, 2 + 2 * nsp, v), nsp, red);
  } else {
    ldmc_shape cur = shape_of(b, g);
    for (int d0 = 0; d0 < nsp; d0 += 3) {
      int nd = nsp - d0 < 3 ? nsp - d0 : 3, first = 2 + d0, n = 0;
      int64_t P = 1, Q = 1, v[LDMC_MAX_RANK], red[3];
      for (int i = 0; i < first; i++) P *= cur.dims[i];
      for (int i = first + nd; i < cur.rank; i++) Q *= cur.dims[i];
      v[n++] = P;
      for (int i = 0; i < nd; i++) {
        cur.dims[first + i] = xs.dims[first + i];
        v[n++] = xs.dims[first + i];
        red[i] = n;
        v[n++] = f;
      }
      v[n++] = Q;
      g = ldmc_reshape(b, rsum(b, ldmc_reshape(b, g, n, v), nd, red), cur.rank, cur.dims);
    }
  }
  dx[0] = to(b, g, dt);
  return ok(b);
}

void ldmc_vjp_register_composite(ldmc_vjp_rule *table) {
  table[LDMC_OP_SILU] = vjp_silu;
  table[LDMC_OP_GELU] = vjp_gelu;
  table[LDMC_OP_SOFTMAX] = vjp_softmax;
  table[LDMC_OP_GROUP_NORM] = vjp_group_norm;
  table[LDMC_OP_LAYER_NORM] = vjp_layer_norm;
  table[LDMC_OP_ATTENTION] = vjp_attention;
  table[LDMC_OP_UPSAMPLE_NEAREST] = vjp_upsample;
}
