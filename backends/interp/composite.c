/* Composite ops computed straight from their definitions (not through the
 * decompose pass, so that tests comparing the two mean something). All
 * arithmetic in double, one rounding on store. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"
#include "ir/scalar.h"

static void split_axis(const ldmc_shape *s, int ax, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < ax; i++) *outer *= s->dims[i];
  for (int i = ax + 1; i < s->rank; i++) *inner *= s->dims[i];
  *len = s->dims[ax];
}

/* softmax along axis: exp(x - max) / sum exp(x - max) */
static ldmc_status softmax(const ldmc_tensor *x, int ax, ldmc_tensor *out) {
  int64_t outer, len, inner;
  split_axis(&x->shape, ax, &outer, &len, &inner);
  double *e = malloc((size_t)(len ? len : 1) * sizeof *e);
  if (!e) return ldmc_error(LDMC_ERR_NOMEM, "softmax: out of memory");
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * len * inner + i;
      double m = -INFINITY, s = 0.0;
      for (int64_t l = 0; l < len; l++) {
        double v = ldmc_interp_getf(x, base + l * inner);
        if (v > m || isnan(v)) m = v;
      }
      for (int64_t l = 0; l < len; l++) s += e[l] = exp(ldmc_interp_getf(x, base + l * inner) - m);
      for (int64_t l = 0; l < len; l++) ldmc_interp_setf(out, base + l * inner, e[l] / s);
    }
  free(e);
  return LDMC_OK;
}

/* Normalizes the contiguous run [start, start + cnt) of x (two-pass mean and
 * biased variance), then applies gamma/beta element (j / pdiv) % pmod to
 * element j of the run. */
static void normalize_row(const ldmc_tensor *x, const ldmc_tensor *gamma, const ldmc_tensor *beta, ldmc_tensor *out,
                          int64_t start, int64_t cnt, double eps, int64_t pdiv, int64_t pmod) {
  double mean = 0.0, var = 0.0;
  for (int64_t j = 0; j < cnt; j++) mean += ldmc_interp_getf(x, start + j);
  mean /= (double)cnt;
  for (int64_t j = 0; j < cnt; j++) {
    double d = ldmc_interp_getf(x, start + j) - mean;
    var += d * d;
  }
  var /= (double)cnt; /* biased variance */
  double rs = 1.0 / sqrt(var + eps);
  for (int64_t j = 0; j < cnt; j++) {
    int64_t pi = (j / pdiv) % pmod;
    double y = (ldmc_interp_getf(x, start + j) - mean) * rs;
    ldmc_interp_setf(out, start + j, y * ldmc_interp_getf(gamma, pi) + ldmc_interp_getf(beta, pi));
  }
}

/* group_norm: x[N, C, spatial...], statistics over (C/groups x spatial) per
 * (n, group); gamma/beta per channel. */
static ldmc_status group_norm(const ldmc_interp_args *a) {
  const ldmc_tensor *x = a->in[0];
  int64_t N = x->shape.dims[0], C = x->shape.dims[1], G = a->node->attrs.groups, sp = 1;
  for (int i = 2; i < x->shape.rank; i++) sp *= x->shape.dims[i];
  if (G <= 0 || C % G) return ldmc_error(LDMC_ERR_INVALID, "group_norm: %lld channels in %lld groups", (long long)C,
                                         (long long)G);
  int64_t cg = C / G, cnt = cg * sp;
  if (cnt == 0) return LDMC_OK;
  /* A group is a contiguous run; its element j has channel g*cg + j/sp, so
   * gamma and beta are viewed from channel g*cg on. */
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < G; g++) {
      int64_t start = (n * C + g * cg) * sp;
      ldmc_tensor gv = *a->in[1], bv = *a->in[2];
      size_t es = ldmc_dtype_size(gv.dtype);
      gv.data = (uint8_t *)gv.data + (size_t)(g * cg) * es;
      bv.data = (uint8_t *)bv.data + (size_t)(g * cg) * ldmc_dtype_size(bv.dtype);
      normalize_row(x, &gv, &bv, a->out, start, cnt, a->node->attrs.eps, sp, cg);
    }
  return LDMC_OK;
}

/* layer_norm over dims [axis, rank); gamma/beta have the shape of those dims. */
static ldmc_status layer_norm(const ldmc_interp_args *a) {
  const ldmc_tensor *x = a->in[0];
  int ax = (int)a->node->attrs.axis;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < ax; i++) outer *= x->shape.dims[i];
  for (int i = ax; i < x->shape.rank; i++) inner *= x->shape.dims[i];
  if (inner == 0) return LDMC_OK;
  for (int64_t o = 0; o < outer; o++)
    normalize_row(x, a->in[1], a->in[2], a->out, o * inner, inner, a->node->attrs.eps, 1, inner);
  return LDMC_OK;
}

/* attention: softmax(scale * q k^T) v over the last two dims, leading dims batched.
 * q[..., N, D], k[..., M, D], v[..., M, E] -> out[..., N, E]. */
static ldmc_status attention(const ldmc_interp_args *a) {
  const ldmc_tensor *q = a->in[0], *k = a->in[1], *v = a->in[2];
  ldmc_tensor *out = a->out;
  int r = q->shape.rank;
  int64_t N = q->shape.dims[r - 2], D = q->shape.dims[r - 1], M = k->shape.dims[r - 2], E = v->shape.dims[r - 1];
  int64_t B = 1;
  for (int i = 0; i < r - 2; i++) B *= q->shape.dims[i];
  double scale = a->node->attrs.scale;
  double *p = malloc((size_t)(M ? M : 1) * sizeof *p);
  if (!p) return ldmc_error(LDMC_ERR_NOMEM, "attention: out of memory");
  for (int64_t b = 0; b < B; b++)
    for (int64_t n = 0; n < N; n++) {
      double mx = -INFINITY, s = 0.0;
      for (int64_t m = 0; m < M; m++) {
        double dot = 0.0;
        for (int64_t d = 0; d < D; d++)
          dot += ldmc_interp_getf(q, (b * N + n) * D + d) * ldmc_interp_getf(k, (b * M + m) * D + d);
        p[m] = scale * dot;
        if (p[m] > mx || isnan(p[m])) mx = p[m];
      }
      for (int64_t m = 0; m < M; m++) s += p[m] = exp(p[m] - mx);
      for (int64_t e = 0; e < E; e++) {
        double acc = 0.0;
        for (int64_t m = 0; m < M; m++) acc += p[m] * ldmc_interp_getf(v, (b * M + m) * E + e);
        ldmc_interp_setf(out, (b * N + n) * E + e, acc / s);
      }
    }
  free(p);
  return LDMC_OK;
}

/* upsample_nearest: out[n, c, y...] = x[n, c, y / factor...] (bytes copied, any dtype). */
static ldmc_status upsample_nearest(const ldmc_interp_args *a) {
  const ldmc_tensor *x = a->in[0];
  ldmc_tensor *out = a->out;
  int64_t f = a->node->attrs.factor, total = ldmc_interp_numel(&out->shape), xst[LDMC_MAX_RANK];
  ldmc_interp_strides(&x->shape, xst);
  size_t es = ldmc_dtype_size(out->dtype);
  int r = out->shape.rank;
  for (int64_t i = 0; i < total; i++) {
    int64_t rem = i, src = 0;
    for (int d = r - 1; d >= 0; d--) {
      int64_t c = rem % out->shape.dims[d];
      rem /= out->shape.dims[d];
      src += (d >= 2 ? c / f : c) * xst[d];
    }
    memcpy((uint8_t *)out->data + (size_t)i * es, (const uint8_t *)x->data + (size_t)src * es, es);
  }
  return LDMC_OK;
}

ldmc_status ldmc_interp_composite(const ldmc_interp_args *a) {
  const ldmc_node *n = a->node;
  const ldmc_tensor *x = a->in[0];
  ldmc_tensor *out = a->out;
  int64_t total = ldmc_interp_numel(&out->shape);
  switch (n->op) {
    case LDMC_OP_SILU: /* x * sigmoid(x) */
      for (int64_t i = 0; i < total; i++) {
        double v = ldmc_interp_getf(x, i);
        ldmc_interp_setf(out, i, ldmc_scalar_unary_f(LDMC_OP_SILU, v)); /* ir/scalar.h, as the folder */
      }
      return LDMC_OK;
    case LDMC_OP_GELU: /* exact (erf) form */
      for (int64_t i = 0; i < total; i++) {
        double v = ldmc_interp_getf(x, i);
        ldmc_interp_setf(out, i, ldmc_scalar_unary_f(LDMC_OP_GELU, v));
      }
      return LDMC_OK;
    case LDMC_OP_SOFTMAX: return softmax(x, (int)n->attrs.axis, out);
    case LDMC_OP_GROUP_NORM: return group_norm(a);
    case LDMC_OP_LAYER_NORM: return layer_norm(a);
    case LDMC_OP_ATTENTION: return attention(a);
    case LDMC_OP_UPSAMPLE_NEAREST: return upsample_nearest(a);
    default: return ldmc_error(LDMC_ERR_INTERNAL, "interp: %s is not a composite op", ldmc_op_name(n->op));
  }
}
