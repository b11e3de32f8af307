/* Builder: reductions, contractions and composite ops. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "frontend/builder_internal.h"

static ldmc_ints ints_of(int n, const int64_t *v) {
  ldmc_ints r = {0};
  r.n = n < 0 ? 0 : n > LDMC_MAX_RANK ? LDMC_MAX_RANK : n;
  for (int i = 0; i < r.n; i++) r.v[i] = v[i];
  return r;
}

static int norm_axis(const ldmc_builder *b, ldmc_value x, int axis) {
  int r = ldmc_value_shape(b, x)->rank;
  return axis < 0 ? axis + r : axis;
}

ldmc_value ldmc_reduce(ldmc_builder *b, ldmc_reduce_kind kind, ldmc_value x, int n_axes, const int64_t *axes,
                       bool keepdims) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  const ldmc_shape xs = *ldmc_value_shape(b, x);
  if (n_axes < 0 || n_axes > xs.rank || (n_axes > 0 && !axes))
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reduce: %d axes for rank %d", n_axes, xs.rank);
  bool mark[LDMC_MAX_RANK] = {false};
  for (int i = 0; i < n_axes; i++) {
    int64_t a = axes[i] < 0 ? axes[i] + xs.rank : axes[i];
    if (a < 0 || a >= xs.rank)
      return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reduce: axis %" PRId64 " is outside rank %d", axes[i], xs.rank);
    if (mark[a]) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reduce: axis %" PRId64 " given twice", a);
    mark[a] = true;
  }
  ldmc_attrs at = {0};
  at.reduce = kind;
  int64_t sorted[LDMC_MAX_RANK], kept[LDMC_MAX_RANK];
  int k = 0;
  for (int i = 0; i < xs.rank; i++) {
    if (mark[i]) sorted[k++] = i;
    kept[i] = mark[i] ? 1 : xs.dims[i];
  }
  at.dims = ints_of(k, sorted);
  ldmc_value r = ldmc_builder_node(b, LDMC_OP_REDUCE, ldmc_value_dtype(b, x), NULL, 1, &x, &at);
  if (r < 0 || !keepdims) return r;
  return ldmc_reshape(b, r, xs.rank, kept);
}

ldmc_value ldmc_dot_general(ldmc_builder *b, ldmc_value x, ldmc_value y, const ldmc_ints *lhs_batch,
                            const ldmc_ints *rhs_batch, const ldmc_ints *lhs_contract, const ldmc_ints *rhs_contract) {
  ldmc_value vs[2] = {x, y};
  if (!ldmc_builder_ok(b, 2, vs)) return -1;
  ldmc_attrs a = {0};
  ldmc_ints none = {0};
  a.lhs_batch = lhs_batch ? *lhs_batch : none;
  a.rhs_batch = rhs_batch ? *rhs_batch : none;
  a.lhs_contract = lhs_contract ? *lhs_contract : none;
  a.rhs_contract = rhs_contract ? *rhs_contract : none;
  return ldmc_builder_node(b, LDMC_OP_DOT_GENERAL, ldmc_value_dtype(b, x), NULL, 2, vs, &a);
}

ldmc_value ldmc_matmul(ldmc_builder *b, ldmc_value x, ldmc_value y) {
  ldmc_value vs[2] = {x, y};
  if (!ldmc_builder_ok(b, 2, vs)) return -1;
  const ldmc_shape *xs = ldmc_value_shape(b, x), *ys = ldmc_value_shape(b, y);
  char sa[160], sb[160];
  ldmc_ints lb = {0}, rb = {0}, lc = {0}, rc = {0};
  if (xs->rank >= 2 && ys->rank == xs->rank) {
    for (int i = 0; i < xs->rank - 2; i++) {
      if (xs->dims[i] != ys->dims[i])
        return ldmc_builder_failf(b, LDMC_ERR_INVALID, "matmul: batch dims of %s and %s differ",
                                  ldmc_shape_str(xs, sa, sizeof sa), ldmc_shape_str(ys, sb, sizeof sb));
      lb.v[lb.n++] = i;
      rb.v[rb.n++] = i;
    }
    lc.v[lc.n++] = xs->rank - 1;
    rc.v[rc.n++] = ys->rank - 2;
  } else if (xs->rank > 2 && ys->rank == 2) { /* a shared matrix: no batch dims */
    lc.v[lc.n++] = xs->rank - 1;
    rc.v[rc.n++] = 0;
  } else {
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "matmul: needs rank >= 2 operands of equal rank (or a matrix "
                              "on the right), found %s and %s",
                              ldmc_shape_str(xs, sa, sizeof sa), ldmc_shape_str(ys, sb, sizeof sb));
  }
  if (xs->dims[xs->rank - 1] != ys->dims[ys->rank - 2])
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "matmul: inner dims of %s and %s differ",
                              ldmc_shape_str(xs, sa, sizeof sa), ldmc_shape_str(ys, sb, sizeof sb));
  return ldmc_dot_general(b, x, y, &lb, &rb, &lc, &rc);
}

ldmc_value ldmc_conv2d(ldmc_builder *b, ldmc_value x, ldmc_value w, int stride, int pad, int dilation, int groups) {
  ldmc_value vs[2] = {x, w};
  if (!ldmc_builder_ok(b, 2, vs)) return -1;
  ldmc_attrs a = {0};
  const int64_t s2[2] = {stride, stride}, p2[2] = {pad, pad}, one2[2] = {1, 1}, d2[2] = {dilation, dilation};
  const int64_t dims[4] = {0, 1, 2, 3};
  a.window_stride = ints_of(2, s2);
  a.pad_low = ints_of(2, p2);
  a.pad_high = ints_of(2, p2);
  a.lhs_dilation = ints_of(2, one2);
  a.rhs_dilation = ints_of(2, d2);
  a.groups = groups;
  a.input_dims = ints_of(4, dims);
  a.kernel_dims = ints_of(4, dims);
  a.output_dims = ints_of(4, dims);
  return ldmc_builder_node(b, LDMC_OP_CONVOLUTION, ldmc_value_dtype(b, x), NULL, 2, vs, &a);
}

/* ---- composites ---- */
ldmc_value ldmc_silu(ldmc_builder *b, ldmc_value x) { return ldmc_unary(b, LDMC_OP_SILU, x); }
ldmc_value ldmc_gelu(ldmc_builder *b, ldmc_value x) { return ldmc_unary(b, LDMC_OP_GELU, x); }

ldmc_value ldmc_softmax(ldmc_builder *b, ldmc_value x, int axis) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  ldmc_attrs a = {0};
  a.axis = norm_axis(b, x, axis);
  return ldmc_builder_node(b, LDMC_OP_SOFTMAX, ldmc_value_dtype(b, x), NULL, 1, &x, &a);
}

ldmc_value ldmc_group_norm(ldmc_builder *b, ldmc_value x, ldmc_value gamma, ldmc_value beta, int groups, double eps) {
  ldmc_value vs[3] = {x, gamma, beta};
  if (!ldmc_builder_ok(b, 3, vs)) return -1;
  ldmc_attrs a = {0};
  a.groups = groups;
  a.eps = eps;
  return ldmc_builder_node(b, LDMC_OP_GROUP_NORM, ldmc_value_dtype(b, x), NULL, 3, vs, &a);
}

ldmc_value ldmc_layer_norm(ldmc_builder *b, ldmc_value x, ldmc_value gamma, ldmc_value beta, int axis, double eps) {
  ldmc_value vs[3] = {x, gamma, beta};
  if (!ldmc_builder_ok(b, 3, vs)) return -1;
  ldmc_attrs a = {0};
  a.axis = norm_axis(b, x, axis);
  a.eps = eps;
  return ldmc_builder_node(b, LDMC_OP_LAYER_NORM, ldmc_value_dtype(b, x), NULL, 3, vs, &a);
}

ldmc_value ldmc_attention(ldmc_builder *b, ldmc_value q, ldmc_value k, ldmc_value v, double scale) {
  ldmc_value vs[3] = {q, k, v};
  if (!ldmc_builder_ok(b, 3, vs)) return -1;
  ldmc_attrs a = {0};
  a.scale = scale;
  return ldmc_builder_node(b, LDMC_OP_ATTENTION, ldmc_value_dtype(b, q), NULL, 3, vs, &a);
}

ldmc_value ldmc_attention_lse(ldmc_builder *b, ldmc_value q, ldmc_value k, double scale) {
  ldmc_value vs[2] = {q, k};
  if (!ldmc_builder_ok(b, 2, vs)) return -1;
  ldmc_attrs a = {0};
  a.scale = scale;
  return ldmc_builder_node(b, LDMC_OP_ATTENTION_LSE, LDMC_F32, NULL, 2, vs, &a); /* the rule sets the dtype */
}

static ldmc_value attention_grad(ldmc_builder *b, ldmc_op op, ldmc_value q, ldmc_value k, ldmc_value v, ldmc_value ct,
                                 ldmc_value lse, ldmc_value delta, double scale) {
  ldmc_value vs[6] = {q, k, v, ct, lse, delta};
  if (!ldmc_builder_ok(b, 6, vs)) return -1;
  ldmc_attrs a = {0};
  a.scale = scale;
  return ldmc_builder_node(b, op, LDMC_F32, NULL, 6, vs, &a);
}

ldmc_value ldmc_attention_grad_q(ldmc_builder *b, ldmc_value q, ldmc_value k, ldmc_value v, ldmc_value ct,
                                 ldmc_value lse, ldmc_value delta, double scale) {
  return attention_grad(b, LDMC_OP_ATTENTION_GRAD_Q, q, k, v, ct, lse, delta, scale);
}

ldmc_value ldmc_attention_grad_kv(ldmc_builder *b, ldmc_value q, ldmc_value k, ldmc_value v, ldmc_value ct,
                                  ldmc_value lse, ldmc_value delta, double scale) {
  return attention_grad(b, LDMC_OP_ATTENTION_GRAD_KV, q, k, v, ct, lse, delta, scale);
}

ldmc_value ldmc_upsample_nearest(ldmc_builder *b, ldmc_value x, int factor) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  ldmc_attrs a = {0};
  a.factor = factor;
  return ldmc_builder_node(b, LDMC_OP_UPSAMPLE_NEAREST, ldmc_value_dtype(b, x), NULL, 1, &x, &a);
}
