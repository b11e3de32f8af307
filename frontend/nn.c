/* Neural-network layers with diffusers parameter names (see nn.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/builder_internal.h"
#include "frontend/nn.h"

ldmc_value ldmc_nn_param(ldmc_builder *b, const char *name, ldmc_dtype dt, int rank, const int64_t *dims) {
  if (!b || ldmc_builder_status(b) != LDMC_OK) return -1;
  const char *scope = ldmc_builder_scope(b);
  size_t n = strlen(scope) + strlen(name) + 2;
  char stack[256], *full = n <= sizeof stack ? stack : malloc(n);
  if (!full) return ldmc_parameter(b, NULL, dt, rank, dims); /* reports the failure */
  /* n covers scope + '.' + name + NUL, so this never truncates */
  size_t ls = strlen(scope);
  memcpy(full, scope, ls);
  if (ls) full[ls++] = '.';
  memcpy(full + ls, name, strlen(name) + 1);
  ldmc_value v = ldmc_parameter(b, full, dt, rank, dims);
  if (full != stack) free(full);
  return v;
}

static ldmc_dtype dtype_of(ldmc_builder *b, ldmc_value x) {
  ldmc_dtype dt = ldmc_value_dtype(b, x);
  return dt == LDMC_DTYPE_COUNT ? LDMC_F32 : dt;
}

/* Last dim of x, or -1 (the builder then fails on the bad value). */
static int64_t last_dim(ldmc_builder *b, ldmc_value x) {
  const ldmc_shape *s = ldmc_value_shape(b, x);
  return s && s->rank > 0 ? s->dims[s->rank - 1] : -1;
}

ldmc_value ldmc_nn_linear(ldmc_builder *b, const char *name, ldmc_value x, int64_t out, bool bias) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  const ldmc_shape xs_copy = *ldmc_value_shape(b, x); /* a copy: adding nodes moves them */
  const ldmc_shape *xs = &xs_copy;
  if (xs->rank < 1) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "linear %s: input has rank 0", name);
  ldmc_builder_push_scope(b, "%s", name);
  ldmc_dtype dt = dtype_of(b, x);
  const int64_t wd[2] = {out, last_dim(b, x)};
  ldmc_value w = ldmc_nn_param(b, "weight", dt, 2, wd);
  ldmc_ints lc = {.n = 1, .v = {xs->rank - 1}}, rc = {.n = 1, .v = {1}};
  ldmc_value y = ldmc_dot_general(b, x, w, NULL, NULL, &lc, &rc);
  if (bias) y = ldmc_add(b, y, ldmc_nn_param(b, "bias", dt, 1, &out));
  ldmc_builder_pop_scope(b);
  return y;
}

ldmc_value ldmc_nn_add_channel_bias(ldmc_builder *b, ldmc_value x, ldmc_value bias) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  const ldmc_shape xs_copy = *ldmc_value_shape(b, x); /* a copy: adding nodes moves them */
  const ldmc_shape *xs = &xs_copy;
  const int64_t map[1] = {1};
  return ldmc_add(b, x, ldmc_broadcast_in_dim(b, bias, xs->rank, xs->dims, map));
}

ldmc_value ldmc_nn_conv2d(ldmc_builder *b, const char *name, ldmc_value x, int64_t out, int k, int stride, int pad,
                          bool bias) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  const ldmc_shape xs_copy = *ldmc_value_shape(b, x); /* a copy: adding nodes moves them */
  const ldmc_shape *xs = &xs_copy;
  if (xs->rank != 4) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "conv2d %s: input rank %d, expected 4 (NCHW)", name, xs->rank);
  ldmc_builder_push_scope(b, "%s", name);
  ldmc_dtype dt = dtype_of(b, x);
  const int64_t wd[4] = {out, xs->dims[1], k, k};
  ldmc_value w = ldmc_nn_param(b, "weight", dt, 4, wd);
  ldmc_value y = ldmc_conv2d(b, x, w, stride, pad, 1, 1);
  if (bias) y = ldmc_nn_add_channel_bias(b, y, ldmc_nn_param(b, "bias", dt, 1, &out));
  ldmc_builder_pop_scope(b);
  return y;
}

ldmc_value ldmc_nn_group_norm(ldmc_builder *b, const char *name, ldmc_value x, int groups, double eps) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  const ldmc_shape xs_copy = *ldmc_value_shape(b, x); /* a copy: adding nodes moves them */
  const ldmc_shape *xs = &xs_copy;
  if (xs->rank < 2) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "group_norm %s: input rank %d, expected >= 2", name, xs->rank);
  ldmc_builder_push_scope(b, "%s", name);
  ldmc_dtype dt = dtype_of(b, x);
  const int64_t c = xs->dims[1];
  ldmc_value g = ldmc_nn_param(b, "weight", dt, 1, &c);
  ldmc_value be = ldmc_nn_param(b, "bias", dt, 1, &c);
  ldmc_value y = ldmc_group_norm(b, x, g, be, groups, eps);
  ldmc_builder_pop_scope(b);
  return y;
}

ldmc_value ldmc_nn_layer_norm(ldmc_builder *b, const char *name, ldmc_value x, double eps) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  const ldmc_shape xs_copy = *ldmc_value_shape(b, x); /* a copy: adding nodes moves them */
  const ldmc_shape *xs = &xs_copy;
  if (xs->rank < 1) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "layer_norm %s: input has rank 0", name);
  ldmc_builder_push_scope(b, "%s", name);
  ldmc_dtype dt = dtype_of(b, x);
  const int64_t c = xs->dims[xs->rank - 1];
  ldmc_value g = ldmc_nn_param(b, "weight", dt, 1, &c);
  ldmc_value be = ldmc_nn_param(b, "bias", dt, 1, &c);
  ldmc_value y = ldmc_layer_norm(b, x, g, be, xs->rank - 1, eps);
  ldmc_builder_pop_scope(b);
  return y;
}

ldmc_value ldmc_nn_geglu_ff(ldmc_builder *b, const char *name, ldmc_value x, int mult) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  const ldmc_shape *xs0 = ldmc_value_shape(b, x);
  if (xs0->rank < 1) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "feed-forward %s: input has rank 0", name);
  const ldmc_shape xs = *xs0;
  const int64_t dim = xs.dims[xs.rank - 1], inner = dim * mult;
  ldmc_builder_push_scope(b, "%s", name);
  ldmc_builder_push_scope(b, "net.0");
  ldmc_value h = ldmc_nn_linear(b, "proj", x, 2 * inner, true);
  ldmc_builder_pop_scope(b);
  int64_t start[LDMC_MAX_RANK] = {0}, limit[LDMC_MAX_RANK];
  for (int i = 0; i < xs.rank; i++) limit[i] = xs.dims[i];
  limit[xs.rank - 1] = inner;
  ldmc_value value = ldmc_slice(b, h, start, limit, NULL);
  start[xs.rank - 1] = inner;
  limit[xs.rank - 1] = 2 * inner;
  ldmc_value gate = ldmc_slice(b, h, start, limit, NULL);
  h = ldmc_mul(b, value, ldmc_gelu(b, gate));
  h = ldmc_nn_linear(b, "net.2", h, dim, true);
  ldmc_builder_pop_scope(b);
  return h;
}

/* [B,N,h*d] -> [B,h,N,d] */
static ldmc_value split_heads(ldmc_builder *b, ldmc_value x, int heads, int64_t head_dim) {
  const ldmc_shape *s = ldmc_value_shape(b, x);
  if (!s) return -1;
  const int64_t d4[4] = {s->dims[0], s->dims[1], heads, head_dim}, perm[4] = {0, 2, 1, 3};
  return ldmc_transpose(b, ldmc_reshape(b, x, 4, d4), perm);
}

ldmc_value ldmc_nn_attention(ldmc_builder *b, const char *name, ldmc_value x, ldmc_value context, int heads,
                             int64_t head_dim) {
  if (!ldmc_builder_ok(b, 1, &x) || (context >= 0 && !ldmc_builder_ok(b, 1, &context))) return -1;
  const ldmc_shape *xs0 = ldmc_value_shape(b, x);
  if (xs0->rank != 3 || heads < 1 || head_dim < 1)
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "attention %s: needs x[B,N,C], heads >= 1 and head_dim >= 1 (rank %d, %d x %lld)",
                              name, xs0->rank, heads, (long long)head_dim);
  const ldmc_shape xs = *xs0;
  const int64_t inner = (int64_t)heads * head_dim;
  ldmc_value ctx = context >= 0 ? context : x;
  ldmc_builder_push_scope(b, "%s", name);
  ldmc_value q = split_heads(b, ldmc_nn_linear(b, "to_q", x, inner, false), heads, head_dim);
  ldmc_value k = split_heads(b, ldmc_nn_linear(b, "to_k", ctx, inner, false), heads, head_dim);
  ldmc_value v = split_heads(b, ldmc_nn_linear(b, "to_v", ctx, inner, false), heads, head_dim);
  ldmc_value o = ldmc_attention(b, q, k, v, 1.0 / sqrt((double)head_dim));
  const int64_t perm[4] = {0, 2, 1, 3}, d3[3] = {xs.dims[0], xs.dims[1], inner};
  o = ldmc_reshape(b, ldmc_transpose(b, o, perm), 3, d3);
  o = ldmc_nn_linear(b, "to_out.0", o, xs.dims[2], true);
  ldmc_builder_pop_scope(b);
  return o;
}
