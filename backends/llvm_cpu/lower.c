/* Lowering of one node into kernel steps: elementwise ops and views fuse
 * (fuse.c); pad, concatenate and upsample become loop-nest copies
 * (kern_ew.c); reductions, softmax and norms get their own kernels;
 * attention and its backward go to lower_attn.c, dot_general and
 * convolution to lower_contract.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

#define new_out ldmc_lc_new_out
#define dense ldmc_lc_dense

static ldmc_status lower_movement(lc_plan *p, int32_t id) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id];
  const ldmc_attrs *at = &n->attrs;
  lc_ref out = new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_stream ov = dense(n->dtype, &n->shape);
  int r = n->shape.rank;
  const ldmc_node *x = &g->nodes[n->operands[0]];
  lc_ref xr = p->value[n->operands[0]];
  int64_t xst[LDMC_MAX_RANK];
  ldmc_lc_strides(&x->shape, xst);
  lc_stream sv;
  memset(&sv, 0, sizeof sv);
  sv.dt = (uint8_t)x->dtype;
  switch (n->op) {
    case LDMC_OP_UPSAMPLE_NEAREST: {
      if (2 + 2 * (r - 2) > LDMC_MAX_RANK) return LDMC_ERR_UNSUPPORTED;
      int64_t dims[LDMC_MAX_RANK];
      lc_stream o2;
      memset(&o2, 0, sizeof o2);
      o2.dt = ov.dt;
      int k = 0;
      for (int i = 0; i < r; i++) {
        if (i < 2) {
          dims[k] = n->shape.dims[i], o2.st[k] = ov.st[i], sv.st[k] = xst[i], k++;
          continue;
        }
        dims[k] = x->shape.dims[i], o2.st[k] = ov.st[i] * at->factor, sv.st[k] = xst[i], k++;
        dims[k] = at->factor, o2.st[k] = ov.st[i], sv.st[k] = 0, k++;
      }
      return ldmc_lc_add_copy(p, id, k, dims, out, &o2, xr, &sv);
    }
    case LDMC_OP_CONCATENATE: {
      int ax = (int)at->axis;
      int64_t at_off = 0;
      for (int k = 0; k < n->n_operands; k++) {
        const ldmc_node *o = &g->nodes[n->operands[k]];
        /* the operand's place goes into the step's byte offset, not the kernel:
         * operands of one shape share one kernel (compiled once) */
        lc_stream s = dense(o->dtype, &o->shape);
        lc_ref dst = out;
        dst.off += (size_t)(at_off * ov.st[ax]) * ldmc_dtype_size(n->dtype);
        at_off += o->shape.dims[ax];
        LDMC_TRY(ldmc_lc_add_copy(p, id, r, o->shape.dims, dst, &ov, p->value[n->operands[k]], &s));
      }
      return LDMC_OK;
    }
    case LDMC_OP_PAD: {
      const ldmc_node *pv = &g->nodes[n->operands[1]];
      lc_stream fill;
      memset(&fill, 0, sizeof fill);
      fill.dt = (uint8_t)pv->dtype;
      LDMC_TRY(ldmc_lc_add_copy(p, id, r, n->shape.dims, out, &ov, p->value[n->operands[1]], &fill));
      /* operand element j of dim i lands at low + j * (interior + 1); keep those in range */
      int64_t box[LDMC_MAX_RANK];
      lc_stream dv = ov;
      bool empty = false;
      for (int i = 0; i < r; i++) {
        int64_t lo = at->low.v[i], step = at->interior.v[i] + 1, od = n->shape.dims[i];
        int64_t j0 = lo >= 0 ? 0 : (-lo + step - 1) / step;
        int64_t j1 = x->shape.dims[i]; /* exclusive */
        if (od - lo <= 0) j1 = 0;
        else if ((od - lo + step - 1) / step < j1) j1 = (od - lo + step - 1) / step;
        box[i] = j1 > j0 ? j1 - j0 : 0;
        if (!box[i]) empty = true;
        dv.st[i] = ov.st[i] * step;
        dv.off += (lo + j0 * step) * ov.st[i];
        sv.st[i] = xst[i];
        sv.off += j0 * xst[i];
      }
      if (empty) return LDMC_OK;
      return ldmc_lc_add_copy(p, id, r, box, out, &dv, xr, &sv);
    }
    default: return LDMC_ERR_UNSUPPORTED;
  }
}

static ldmc_status lower_reduce(lc_plan *p, int32_t id);
static ldmc_status lower_softmax(lc_plan *p, int32_t id);
static ldmc_status lower_norm(lc_plan *p, int32_t id);

ldmc_status ldmc_lc_lower_node(lc_plan *p, int32_t id, bool *handled) {
  const ldmc_node *n = &p->g->nodes[id];
  *handled = true;
  if (ldmc_lc_fusible(p, id)) return ldmc_lc_lower_fusible(p, id);
  /* everything else reads its operands from buffers (products and attention
   * read views of them in place) */
  bool views_in_place = n->op == LDMC_OP_DOT_GENERAL || n->op == LDMC_OP_ATTENTION || n->op == LDMC_OP_ATTENTION_LSE ||
                        n->op == LDMC_OP_ATTENTION_GRAD_Q || n->op == LDMC_OP_ATTENTION_GRAD_KV;
  if (!views_in_place)
    for (int k = 0; k < n->n_operands; k++) LDMC_TRY(ldmc_lc_materialize(p, n->operands[k]));
  switch (n->op) {
    case LDMC_OP_CONCATENATE:
    case LDMC_OP_PAD: return lower_movement(p, id);
    case LDMC_OP_UPSAMPLE_NEAREST:
      if (2 + 2 * (n->shape.rank - 2) <= LDMC_MAX_RANK) return lower_movement(p, id);
      return ldmc_lc_lower_extra(p, id, handled); /* one spatial dim per copy */
    case LDMC_OP_GATHER:
    case LDMC_OP_SCATTER_ADD:
    case LDMC_OP_RNG_UNIFORM:
    case LDMC_OP_RNG_NORMAL: return ldmc_lc_lower_extra(p, id, handled);
    case LDMC_OP_REDUCE: return lower_reduce(p, id);
    case LDMC_OP_SOFTMAX: return lower_softmax(p, id);
    case LDMC_OP_GROUP_NORM:
    case LDMC_OP_LAYER_NORM: return lower_norm(p, id);
    case LDMC_OP_ATTENTION:
      if (p->g->nodes[n->operands[1]].shape.dims[n->shape.rank - 2] > 0) return ldmc_lc_lower_attention(p, id);
      return ldmc_lc_lower_extra(p, id, handled); /* no keys */
    case LDMC_OP_ATTENTION_LSE:
    case LDMC_OP_ATTENTION_GRAD_Q:
    case LDMC_OP_ATTENTION_GRAD_KV: return ldmc_lc_lower_attention(p, id);
    case LDMC_OP_DOT_GENERAL:
    case LDMC_OP_CONVOLUTION: return ldmc_lc_lower_contract(p, id, handled);
    default: break;
  }
  *handled = false;
  return LDMC_OK;
}

/* ---- reductions and normalizations ---- */
/* The single consumer of id if it is op (and id is not an output), else -1. */
int32_t ldmc_lc_sole_consumer(const lc_plan *p, int32_t id, ldmc_op op) {
  if (p->uses[id] != 1) return -1;
  for (int32_t o = 0; o < p->g->n_outputs; o++)
    if (p->g->outputs[o] == id) return -1;
  for (int32_t j = id + 1; j < p->g->n_nodes; j++) {
    const ldmc_node *n = &p->g->nodes[j];
    for (int k = 0; k < n->n_operands; k++)
      if (n->operands[k] == id) return n->op == op && n->n_operands == 1 ? j : -1;
  }
  return -1;
}

static ldmc_status add_kernel(lc_plan *p, int32_t id, lc_kind kind, void *desc, size_t size, int64_t tiles, size_t scratch,
                              int nb, const lc_ref *refs) {
  /* work estimate: elements touched (norms, softmax, reduce), or the products' FLOPs */
  double work = 4.0 * (double)ldmc_lc_numel(&p->g->nodes[id].shape);
  if (kind == LC_K_REDUCE) work = 2.0 * (double)ldmc_lc_numel(&p->g->nodes[p->g->nodes[id].operands[0]].shape);
  lc_kernel *k = ldmc_lc_kernel_new(kind, desc, size, p->t);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  k->work = work;
  k->n_bufs = nb;
  k->n_tiles = tiles;
  k->scratch = scratch;
  if (tiles <= 0) {
    ldmc_lc_kernel_free(k);
    return LDMC_OK;
  }
  return ldmc_lc_plan_add_step(p, k, id, nb, refs);
}

static ldmc_status lower_reduce(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  const ldmc_node *x = &p->g->nodes[n->operands[0]];
  lc_ref out = new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_reduce_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->dt = (uint8_t)n->dtype;
  d->kind = (uint8_t)n->attrs.reduce;
  int64_t st[LDMC_MAX_RANK];
  ldmc_lc_strides(&x->shape, st);
  for (int i = 0; i < x->shape.rank; i++) {
    bool red = false;
    for (int j = 0; j < n->attrs.dims.n; j++) red |= n->attrs.dims.v[j] == i;
    if (x->shape.dims[i] == 1) continue;
    if (red) {
      if (d->nr > 0 && d->rst[d->nr - 1] == st[i] * x->shape.dims[i]) { /* merge with the previous reduced dim */
        d->rdim[d->nr - 1] *= x->shape.dims[i], d->rst[d->nr - 1] = st[i];
        continue;
      }
      d->rdim[d->nr] = x->shape.dims[i], d->rst[d->nr++] = st[i];
    } else {
      if (d->nk > 0 && d->kst[d->nk - 1] == st[i] * x->shape.dims[i]) {
        d->kdim[d->nk - 1] *= x->shape.dims[i], d->kst[d->nk - 1] = st[i];
        continue;
      }
      d->kdim[d->nk] = x->shape.dims[i], d->kst[d->nk++] = st[i];
    }
  }
  /* all dims 1 (one element): a row of one, since the row kernel reads rdim[nr - 1] */
  if (d->nr == 0 && d->nk == 0) d->rdim[0] = 1, d->rst[0] = 1, d->nr = 1;
  int64_t rlen = 1, nout = 1;
  for (int i = 0; i < d->nr; i++) rlen *= d->rdim[i];
  for (int i = 0; i < d->nk; i++) nout *= d->kdim[i];
  int64_t tiles;
  if (d->nk > 0 && (d->kst[d->nk - 1] == 1 || !(d->nr > 0 && d->rst[d->nr - 1] == 1 && p->t->W > 1))) {
    int64_t L = d->kdim[d->nk - 1], work = L * rlen, per = 32768 / (work > 0 ? work : 1);
    d->rows_per_tile = per > 0 ? per : 1;
    tiles = (nout / (L ? L : 1) + d->rows_per_tile - 1) / d->rows_per_tile;
    if (!L) tiles = 0;
  } else {
    int64_t per = 32768 / (rlen ? rlen : 1);
    d->rows_per_tile = per > 0 ? per : 1;
    tiles = (nout + d->rows_per_tile - 1) / d->rows_per_tile;
  }
  lc_ref refs[2] = {out, p->value[n->operands[0]]};
  return add_kernel(p, id, LC_K_REDUCE, d, sizeof *d, tiles, 0, 2, refs);
}

static ldmc_status lower_softmax(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  lc_ref out = new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_softmax_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  int ax = (int)n->attrs.axis;
  d->dt = (uint8_t)n->dtype;
  d->outer = d->inner = 1;
  for (int i = 0; i < ax; i++) d->outer *= n->shape.dims[i];
  d->len = n->shape.dims[ax];
  for (int i = ax + 1; i < n->shape.rank; i++) d->inner *= n->shape.dims[i];
  int64_t tiles;
  if (d->inner == 1) {
    d->per_tile = 16384 / (d->len ? d->len : 1);
    if (d->per_tile < 1) d->per_tile = 1;
    tiles = (d->outer + d->per_tile - 1) / d->per_tile;
  } else {
    tiles = d->outer * ((d->inner + p->t->W - 1) / p->t->W);
  }
  if (!d->len) tiles = 0;
  lc_ref refs[2] = {out, p->value[n->operands[0]]};
  return add_kernel(p, id, LC_K_SOFTMAX, d, sizeof *d, tiles, 0, 2, refs);
}

static ldmc_status lower_norm(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  lc_norm_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->dt = (uint8_t)n->dtype;
  d->eps = n->attrs.eps;
  if (n->op == LDMC_OP_GROUP_NORM) {
    int64_t G = n->attrs.groups, C = n->shape.dims[1], S = 1;
    for (int i = 2; i < n->shape.rank; i++) S *= n->shape.dims[i];
    d->rows = n->shape.dims[0] * G;
    d->len = C / G * S;
    d->gsize = S;
    d->gper = C / G;
    d->gmod = G;
  } else {
    int ax = (int)n->attrs.axis;
    d->rows = d->len = 1;
    for (int i = 0; i < ax; i++) d->rows *= n->shape.dims[i];
    for (int i = ax; i < n->shape.rank; i++) d->len *= n->shape.dims[i];
    d->gsize = 1;
    d->gper = d->len;
    d->gmod = 1;
  }
  /* fuse a following silu that is the only consumer */
  int32_t act = ldmc_lc_sole_consumer(p, id, LDMC_OP_SILU);
  d->silu = act >= 0;
  int32_t dst = act >= 0 ? act : id;
  lc_ref out = new_out(p, dst);
  if (out.buf < 0) {
    free(d);
    return LDMC_ERR_NOMEM;
  }
  if (act >= 0) p->done[act] = 1;
  lc_ref refs[4] = {out, p->value[n->operands[0]], p->value[n->operands[1]], p->value[n->operands[2]]};
  return add_kernel(p, id, LC_K_NORM, d, sizeof *d, d->len ? d->rows : 0, 0, 4, refs);
}
