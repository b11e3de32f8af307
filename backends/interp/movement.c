/* Data movement: broadcast_in_dim, reshape, transpose, slice, concatenate,
 * pad, gather, scatter_add. Except scatter_add these copy element bytes, so
 * they are exact for every dtype. */
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"

/* Copies the box `shape` (rank dims) from src to dst, element strides given
 * per dim for each side (0 = repeat). Offsets are in elements. */
static void strided_copy(uint8_t *dst, int64_t dst_off, const int64_t *dst_st, const uint8_t *src, int64_t src_off,
                         const int64_t *src_st, const int64_t *shape, int rank, size_t es) {
  int64_t idx[LDMC_MAX_RANK] = {0};
  for (int d = 0; d < rank; d++)
    if (shape[d] <= 0) return;
  for (;;) {
    memcpy(dst + (size_t)dst_off * es, src + (size_t)src_off * es, es);
    int d = rank - 1;
    for (; d >= 0; d--) { /* odometer step */
      idx[d]++;
      dst_off += dst_st[d];
      src_off += src_st[d];
      if (idx[d] < shape[d]) break;
      dst_off -= dst_st[d] * shape[d];
      src_off -= src_st[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

static ldmc_status broadcast_in_dim(const ldmc_node *n, const ldmc_tensor *x, ldmc_tensor *out, size_t es) {
  int64_t xst[LDMC_MAX_RANK], ost[LDMC_MAX_RANK], sst[LDMC_MAX_RANK] = {0};
  ldmc_interp_strides(&x->shape, xst);
  ldmc_interp_strides(&out->shape, ost);
  for (int i = 0; i < x->shape.rank; i++) /* a size-1 operand dim repeats: stride 0 */
    if (x->shape.dims[i] != 1) sst[n->attrs.dims.v[i]] = xst[i];
  strided_copy(out->data, 0, ost, x->data, 0, sst, out->shape.dims, out->shape.rank, es);
  return LDMC_OK;
}

static ldmc_status transpose(const ldmc_node *n, const ldmc_tensor *x, ldmc_tensor *out, size_t es) {
  int64_t xst[LDMC_MAX_RANK], ost[LDMC_MAX_RANK], sst[LDMC_MAX_RANK];
  ldmc_interp_strides(&x->shape, xst);
  ldmc_interp_strides(&out->shape, ost);
  for (int i = 0; i < out->shape.rank; i++) sst[i] = xst[n->attrs.dims.v[i]]; /* out.dims[i] = in.dims[perm[i]] */
  strided_copy(out->data, 0, ost, x->data, 0, sst, out->shape.dims, out->shape.rank, es);
  return LDMC_OK;
}

static ldmc_status slice(const ldmc_node *n, const ldmc_tensor *x, ldmc_tensor *out, size_t es) {
  int64_t xst[LDMC_MAX_RANK], ost[LDMC_MAX_RANK], sst[LDMC_MAX_RANK], base = 0;
  ldmc_interp_strides(&x->shape, xst);
  ldmc_interp_strides(&out->shape, ost);
  for (int i = 0; i < x->shape.rank; i++) {
    base += n->attrs.start.v[i] * xst[i];
    sst[i] = n->attrs.stride.v[i] * xst[i];
  }
  strided_copy(out->data, 0, ost, x->data, base, sst, out->shape.dims, out->shape.rank, es);
  return LDMC_OK;
}

static ldmc_status concatenate(const ldmc_interp_args *a, size_t es) {
  ldmc_tensor *out = a->out;
  int ax = (int)a->node->attrs.axis;
  int64_t ost[LDMC_MAX_RANK], at = 0;
  ldmc_interp_strides(&out->shape, ost);
  for (int k = 0; k < a->node->n_operands; k++) {
    const ldmc_tensor *x = a->in[k];
    int64_t xst[LDMC_MAX_RANK];
    ldmc_interp_strides(&x->shape, xst);
    strided_copy(out->data, at * ost[ax], ost, x->data, 0, xst, x->shape.dims, x->shape.rank, es);
    at += x->shape.dims[ax];
  }
  return LDMC_OK;
}

/* Input element j of a dim lands at low + j * (interior + 1); positions
 * outside [0, out) are cropped (negative low/high). */
static ldmc_status pad(const ldmc_node *n, const ldmc_tensor *x, const ldmc_tensor *v, ldmc_tensor *out, size_t es) {
  int64_t total = ldmc_interp_numel(&out->shape);
  uint8_t *o = out->data;
  for (int64_t i = 0; i < total; i++) memcpy(o + (size_t)i * es, v->data, es);
  int64_t xst[LDMC_MAX_RANK], ost[LDMC_MAX_RANK], dst[LDMC_MAX_RANK], cnt[LDMC_MAX_RANK], soff = 0, doff = 0;
  ldmc_interp_strides(&x->shape, xst);
  ldmc_interp_strides(&out->shape, ost);
  for (int d = 0; d < x->shape.rank; d++) {
    int64_t step = n->attrs.interior.v[d] + 1, lo = n->attrs.low.v[d], od = out->shape.dims[d];
    int64_t j0 = lo >= 0 ? 0 : (-lo + step - 1) / step; /* first j with lo + j*step >= 0 */
    int64_t j1 = 0;                                    /* one past the last j with lo + j*step < od */
    if (od - 1 - lo >= 0) j1 = (od - 1 - lo) / step + 1;
    if (j1 > x->shape.dims[d]) j1 = x->shape.dims[d];
    cnt[d] = j1 - j0;
    if (cnt[d] <= 0) return LDMC_OK;
    soff += j0 * xst[d];
    doff += (lo + j0 * step) * ost[d];
    dst[d] = ost[d] * step;
  }
  strided_copy(out->data, doff, dst, x->data, soff, xst, cnt, x->shape.rank, es);
  return LDMC_OK;
}

/* Splits x around axis: outer = prod dims[:axis], len = dims[axis], inner = prod dims[axis+1:]. */
static void split_axis(const ldmc_shape *s, int ax, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < ax; i++) *outer *= s->dims[i];
  for (int i = ax + 1; i < s->rank; i++) *inner *= s->dims[i];
  *len = s->dims[ax];
}

/* Result = x.dims[:axis] ++ idx.dims ++ x.dims[axis+1:]; indices clamped to [0, len-1]. */
static ldmc_status gather(const ldmc_node *n, const ldmc_tensor *x, const ldmc_tensor *idx, ldmc_tensor *out,
                          size_t es) {
  int64_t outer, len, inner, ni = ldmc_interp_numel(&idx->shape);
  split_axis(&x->shape, (int)n->attrs.axis, &outer, &len, &inner);
  if (len == 0) return LDMC_OK; /* nothing to pick from: the result stays zero (documented) */
  const uint8_t *src = x->data;
  uint8_t *dst = out->data;
  size_t row = (size_t)inner * es;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t p = 0; p < ni; p++) {
      int64_t k = ldmc_interp_geti(idx, p);
      k = k < 0 ? 0 : k >= len ? len - 1 : k;
      memcpy(dst + (size_t)(o * ni + p) * row, src + (size_t)(o * len + k) * row, row);
    }
  return LDMC_OK;
}

/* out = x; out[.., idx[p], ..] += upd[.., p, ..]; out-of-range indices are skipped.
 * Floats accumulate in double and round once. */
static ldmc_status scatter_add(const ldmc_interp_args *a) {
  const ldmc_tensor *x = a->in[0], *idx = a->in[1], *upd = a->in[2];
  ldmc_tensor *out = a->out;
  int64_t outer, len, inner, ni = ldmc_interp_numel(&idx->shape), total = ldmc_interp_numel(&out->shape);
  split_axis(&x->shape, (int)a->node->attrs.axis, &outer, &len, &inner);
  bool fl = ldmc_interp_is_float(x);
  if (fl) {
    double *acc = malloc((size_t)(total ? total : 1) * sizeof *acc);
    if (!acc) return ldmc_error(LDMC_ERR_NOMEM, "scatter_add: out of memory");
    for (int64_t i = 0; i < total; i++) acc[i] = ldmc_interp_getf(x, i);
    for (int64_t o = 0; o < outer; o++)
      for (int64_t p = 0; p < ni; p++) {
        int64_t k = ldmc_interp_geti(idx, p);
        if (k < 0 || k >= len) continue;
        for (int64_t j = 0; j < inner; j++)
          acc[(o * len + k) * inner + j] += ldmc_interp_getf(upd, (o * ni + p) * inner + j);
      }
    for (int64_t i = 0; i < total; i++) ldmc_interp_setf(out, i, acc[i]);
    free(acc);
    return LDMC_OK;
  }
  memcpy(out->data, x->data, out->nbytes);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t p = 0; p < ni; p++) {
      int64_t k = ldmc_interp_geti(idx, p);
      if (k < 0 || k >= len) continue;
      for (int64_t j = 0; j < inner; j++) {
        int64_t t = (o * len + k) * inner + j;
        uint64_t s = (uint64_t)ldmc_interp_geti(out, t) + (uint64_t)ldmc_interp_geti(upd, (o * ni + p) * inner + j);
        ldmc_interp_seti(out, t, (int64_t)s);
      }
    }
  return LDMC_OK;
}

ldmc_status ldmc_interp_movement(const ldmc_interp_args *a) {
  const ldmc_node *n = a->node;
  const ldmc_tensor *x = a->in[0];
  ldmc_tensor *out = a->out;
  size_t es = ldmc_dtype_size(out->dtype);
  switch (n->op) {
    case LDMC_OP_BROADCAST_IN_DIM: return broadcast_in_dim(n, x, out, es);
    case LDMC_OP_RESHAPE:
      if (out->nbytes) memcpy(out->data, x->data, out->nbytes); /* row-major order is unchanged */
      return LDMC_OK;
    case LDMC_OP_TRANSPOSE: return transpose(n, x, out, es);
    case LDMC_OP_SLICE: return slice(n, x, out, es);
    case LDMC_OP_CONCATENATE: return concatenate(a, es);
    case LDMC_OP_PAD: return pad(n, x, a->in[1], out, es);
    case LDMC_OP_GATHER: return gather(n, x, a->in[1], out, es);
    case LDMC_OP_SCATTER_ADD: return scatter_add(a);
    default: return ldmc_error(LDMC_ERR_INTERNAL, "interp: %s is not a data-movement op", ldmc_op_name(n->op));
  }
}
