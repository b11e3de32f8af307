/* Lowering of one node into kernel steps: elementwise ops and data movement
 * become loop-nest kernels (kern_ew.c); reductions, softmax, norms and
 * attention get their own kernels; dot_general and convolution go to
 * lower_contract.c. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

static lc_ref new_out(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)ldmc_lc_numel(&n->shape) * ldmc_dtype_size(n->dtype));
  lc_ref r = {b, 0};
  if (b >= 0) p->value[id] = r;
  return r;
}

static lc_stream dense(ldmc_dtype dt, const ldmc_shape *s) {
  lc_stream v;
  memset(&v, 0, sizeof v);
  v.dt = (uint8_t)dt;
  ldmc_lc_strides(s, v.st);
  return v;
}

/* Adds an EW step: d's output is ref out, its inputs ins[0..n_in). Takes d. */
static ldmc_status add_ew(lc_plan *p, int32_t id, lc_ew_desc *d, lc_ref out, const lc_ref *ins) {
  int64_t tiles = ldmc_lc_ew_finish(d, p->t);
  lc_ref refs[LC_MAX_BUFS];
  refs[0] = out;
  for (int i = 0; i < d->n_in; i++) refs[1 + i] = d->in[i].iota ? (lc_ref){-1, 0} : ins[i];
  int nb = 1 + d->n_in;
  lc_kernel *k = ldmc_lc_kernel_new(LC_K_EW, d, sizeof *d, p->t);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  k->n_bufs = nb;
  k->n_tiles = tiles;
  if (tiles == 0) { /* nothing to compute */
    ldmc_lc_kernel_free(k);
    return LDMC_OK;
  }
  return ldmc_lc_plan_add_step(p, k, id, nb, refs);
}

static lc_ew_desc *ew_new(int rank, const int64_t *dims, lc_stream out) {
  lc_ew_desc *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->rank = rank;
  memcpy(d->dims, dims, (size_t)rank * sizeof *dims);
  d->out = out;
  return d;
}

static int ew_load(lc_ew_desc *d, lc_stream s) {
  d->in[d->n_in] = s;
  lc_ew_ins *in = &d->ins[d->n_ins];
  in->op = LC_EW_LOAD;
  in->dt = s.dt;
  in->a[0] = in->a[1] = in->a[2] = -1;
  in->arg = d->n_in++;
  return d->n_ins++;
}

static int ew_op(lc_ew_desc *d, int op, ldmc_dtype dt, int a, int b, int c, int32_t arg) {
  lc_ew_ins *in = &d->ins[d->n_ins];
  in->op = (int16_t)op;
  in->dt = (uint8_t)dt;
  in->a[0] = (int8_t)a, in->a[1] = (int8_t)b, in->a[2] = (int8_t)c;
  in->arg = arg;
  return d->n_ins++;
}

ldmc_status ldmc_lc_add_copy(lc_plan *p, int32_t node, int rank, const int64_t *dims, lc_ref dst, const lc_stream *dv,
                             lc_ref src, const lc_stream *sv) {
  lc_ew_desc *d = ew_new(rank, dims, *dv);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  ew_load(d, *sv);
  return add_ew(p, node, d, dst, &src);
}

static ldmc_status lower_elementwise(lc_plan *p, int32_t id) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id];
  lc_ref out = new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_ew_desc *d = ew_new(n->shape.rank, n->shape.dims, dense(n->dtype, &n->shape));
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  lc_ref ins[3];
  int a[3] = {-1, -1, -1};
  for (int k = 0; k < n->n_operands; k++) {
    const ldmc_node *o = &g->nodes[n->operands[k]];
    a[k] = ew_load(d, dense(o->dtype, &o->shape));
    ins[k] = p->value[n->operands[k]];
  }
  ew_op(d, n->op, n->dtype, a[0], a[1], a[2], n->op == LDMC_OP_COMPARE ? (int32_t)n->attrs.direction : 0);
  return add_ew(p, id, d, out, ins);
}

static ldmc_status lower_movement(lc_plan *p, int32_t id) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id];
  const ldmc_attrs *at = &n->attrs;
  lc_ref out = new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_stream ov = dense(n->dtype, &n->shape);
  int r = n->shape.rank;
  if (n->op == LDMC_OP_IOTA) {
    lc_ew_desc *d = ew_new(r, n->shape.dims, ov);
    if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    lc_stream s;
    memset(&s, 0, sizeof s);
    s.dt = (uint8_t)n->dtype;
    s.iota = 1;
    s.st[at->axis] = 1;
    ew_load(d, s);
    return add_ew(p, id, d, out, &out);
  }
  const ldmc_node *x = &g->nodes[n->operands[0]];
  lc_ref xr = p->value[n->operands[0]];
  int64_t xst[LDMC_MAX_RANK];
  ldmc_lc_strides(&x->shape, xst);
  lc_stream sv;
  memset(&sv, 0, sizeof sv);
  sv.dt = (uint8_t)x->dtype;
  switch (n->op) {
    case LDMC_OP_BROADCAST_IN_DIM:
      for (int i = 0; i < x->shape.rank; i++)
        if (x->shape.dims[i] != 1) sv.st[at->dims.v[i]] = xst[i];
      return ldmc_lc_add_copy(p, id, r, n->shape.dims, out, &ov, xr, &sv);
    case LDMC_OP_TRANSPOSE:
      for (int i = 0; i < r; i++) sv.st[i] = xst[at->dims.v[i]];
      return ldmc_lc_add_copy(p, id, r, n->shape.dims, out, &ov, xr, &sv);
    case LDMC_OP_SLICE:
      for (int i = 0; i < r; i++) {
        sv.st[i] = xst[i] * at->stride.v[i];
        sv.off += at->start.v[i] * xst[i];
      }
      return ldmc_lc_add_copy(p, id, r, n->shape.dims, out, &ov, xr, &sv);
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
        lc_stream s = dense(o->dtype, &o->shape), dv = ov;
        dv.off = at_off * ov.st[ax];
        at_off += o->shape.dims[ax];
        LDMC_TRY(ldmc_lc_add_copy(p, id, r, o->shape.dims, out, &dv, p->value[n->operands[k]], &s));
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
static ldmc_status lower_attention(lc_plan *p, int32_t id);

ldmc_status ldmc_lc_lower_node(lc_plan *p, int32_t id, bool *handled) {
  const ldmc_node *n = &p->g->nodes[id];
  *handled = true;
  if (ldmc_op_table[n->op].flags & LDMC_OPF_ELEMENTWISE) return lower_elementwise(p, id);
  switch (n->op) {
    case LDMC_OP_IOTA:
    case LDMC_OP_BROADCAST_IN_DIM:
    case LDMC_OP_TRANSPOSE:
    case LDMC_OP_SLICE:
    case LDMC_OP_CONCATENATE:
    case LDMC_OP_PAD: return lower_movement(p, id);
    case LDMC_OP_UPSAMPLE_NEAREST:
      if (2 + 2 * (n->shape.rank - 2) <= LDMC_MAX_RANK) return lower_movement(p, id);
      break;
    case LDMC_OP_REDUCE: return lower_reduce(p, id);
    case LDMC_OP_SOFTMAX: return lower_softmax(p, id);
    case LDMC_OP_GROUP_NORM:
    case LDMC_OP_LAYER_NORM: return lower_norm(p, id);
    case LDMC_OP_ATTENTION:
      if (p->g->nodes[n->operands[1]].shape.dims[n->shape.rank - 2] > 0) return lower_attention(p, id);
      break;
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
  lc_kernel *k = ldmc_lc_kernel_new(kind, desc, size, p->t);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
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

static ldmc_status lower_attention(lc_plan *p, int32_t id) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id];
  const ldmc_node *q = &g->nodes[n->operands[0]], *k = &g->nodes[n->operands[1]], *v = &g->nodes[n->operands[2]];
  int r = n->shape.rank, W = p->t->W;
  int64_t Bt = 1, N = q->shape.dims[r - 2], D = q->shape.dims[r - 1], M = k->shape.dims[r - 2], E = v->shape.dims[r - 1];
  for (int i = 0; i < r - 2; i++) Bt *= q->shape.dims[i];
  lc_attn_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->dt = (uint8_t)n->dtype;
  d->bc = 4 * W;
  d->rb = W == 16 ? 6 : W == 8 ? 2 : 4;
  d->br = 4 * d->rb;
  d->B = Bt, d->N = N, d->M = M, d->D = D, d->E = E;
  d->Mp = (M + d->bc - 1) / d->bc * d->bc;
  d->Ep = (E + W - 1) / W * W;
  d->scale = n->attrs.scale;
  /* k^T as f32 [B][D][Mp] */
  int32_t ktb = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)(Bt * D * d->Mp) * 4);
  if (ktb < 0) {
    free(d);
    return LDMC_ERR_NOMEM;
  }
  lc_stream sv, dv;
  memset(&sv, 0, sizeof sv);
  memset(&dv, 0, sizeof dv);
  int64_t box[3] = {Bt, D, M};
  sv.dt = (uint8_t)k->dtype, sv.st[0] = M * D, sv.st[1] = 1, sv.st[2] = D;
  dv.dt = LDMC_F32, dv.st[0] = D * d->Mp, dv.st[1] = d->Mp, dv.st[2] = 1;
  ldmc_status st = ldmc_lc_add_copy(p, id, 3, box, (lc_ref){ktb, 0}, &dv, p->value[n->operands[1]], &sv);
  /* v as f32 [B][M][Ep] */
  lc_ref vr = p->value[n->operands[2]];
  if (st == LDMC_OK && (v->dtype != LDMC_F32 || d->Ep != E)) {
    int32_t vb = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)(Bt * M * d->Ep) * 4);
    if (vb < 0) st = LDMC_ERR_NOMEM;
    int64_t vbox[3] = {Bt, M, E};
    sv.dt = (uint8_t)v->dtype, sv.st[0] = M * E, sv.st[1] = E, sv.st[2] = 1;
    dv.dt = LDMC_F32, dv.st[0] = M * d->Ep, dv.st[1] = d->Ep, dv.st[2] = 1;
    if (st == LDMC_OK) st = ldmc_lc_add_copy(p, id, 3, vbox, (lc_ref){vb, 0}, &dv, vr, &sv);
    vr = (lc_ref){vb, 0};
  }
  lc_ref out = new_out(p, id);
  if (st != LDMC_OK || out.buf < 0) {
    free(d);
    return st != LDMC_OK ? st : LDMC_ERR_NOMEM;
  }
  size_t scratch = ((size_t)(d->br * d->bc + d->br * d->Ep + 2 * d->br) * 4 + 63) / 64 * 64;
  int64_t tiles = E > 0 ? Bt * ((N + d->br - 1) / d->br) : 0;
  lc_ref refs[4] = {out, p->value[n->operands[0]], {ktb, 0}, vr};
  return add_kernel(p, id, LC_K_ATTN, d, sizeof *d, tiles, scratch, 4, refs);
}
