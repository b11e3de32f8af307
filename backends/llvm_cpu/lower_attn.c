/* Lowering of attention and its backward ops (attention_lse, attention_grad_q,
 * attention_grad_kv) to the flash kernels of kern_attn.c and
 * kern_attn_grad.c. Operands are read in place as strided views (up to two
 * leading dims unmerged; more are made dense and merged); the operands a
 * kernel reads as broadcasts (k and v of attention and attention_lse and of
 * grad_q, q and ct of grad_kv) are copied once to f32 when they are not f32.
 * The kernels' blocks are the plan's (passes/tiling.c): a kernel without one
 * is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

/* The plan's block of node id: {result rows per tile: nl vectors of W, at
 * most 4 W; the other side's rows per block, nl * bs <= max_live}. */
static ldmc_status planned_block(lc_plan *p, int32_t id, int max_live, int *nl, int *bs) {
  int W = p->t->W;
  int32_t kid = p->kp && id < p->kp->n_nodes ? p->kp->kernel_of[id] : -1;
  const ldmc_kernel *kr = kid >= 0 ? &p->kp->kernels[kid] : NULL;
  if (!kr || (kr->kind != LDMC_KERNEL_ATTENTION && kr->kind != LDMC_KERNEL_PREPACK) || kr->n_tile != 2 ||
      kr->tile[0] < W || kr->tile[0] % W || kr->tile[0] > 4 * W || kr->tile[1] < 1 ||
      kr->tile[1] * (kr->tile[0] / W) > max_live)
    return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %%%d %s: no attention block of this target in the plan", (int)id,
                      ldmc_op_name(p->g->nodes[id].op));
  *nl = (int)(kr->tile[0] / W);
  *bs = (int)kr->tile[1];
  return LDMC_OK;
}

/* Operand op of an attention node whose q has rank r, as a buffer and its
 * strides {b1, b2, row, column} (vec: an [..., rows] operand, column 0). */
static ldmc_status operand_view(lc_plan *p, int r, int32_t op, bool vec, lc_ref *ref, int64_t s4[4]) {
  const ldmc_node *o = &p->g->nodes[op];
  int64_t st[LDMC_MAX_RANK];
  int lead = r - 2;
  if (r > 4 || !ldmc_lc_strided_view(p, op, ref, st)) {
    LDMC_TRY(ldmc_lc_materialize(p, op));
    *ref = p->value[op];
    ldmc_lc_strides(&o->shape, st); /* dense: the leading dims index as one b2 */
  }
  s4[0] = r == 4 ? st[0] : 0;
  s4[1] = lead >= 1 ? st[lead - 1] : 0;
  s4[2] = st[lead];
  s4[3] = vec ? 0 : st[lead + 1];
  return LDMC_OK;
}

/* An operand read as broadcasts, as f32: in place when it is, else copied
 * once to a dense f32 [B][rows][cols] temporary. */
static ldmc_status as_f32(lc_plan *p, int32_t id, int32_t op, int64_t Bt, int64_t nb2, int64_t rows, int64_t cols,
                          lc_ref *ref, int64_t s4[4]) {
  ldmc_dtype dt = p->g->nodes[op].dtype;
  if (dt == LDMC_F32) return LDMC_OK;
  int32_t cb = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)(Bt * rows * cols) * 4 + 4);
  if (cb < 0) return LDMC_ERR_NOMEM;
  lc_stream sv, dv;
  memset(&sv, 0, sizeof sv);
  memset(&dv, 0, sizeof dv);
  int64_t box[4] = {Bt / nb2, nb2, rows, cols};
  sv.dt = (uint8_t)dt;
  memcpy(sv.st, s4, 4 * sizeof *s4);
  dv.dt = LDMC_F32, dv.st[0] = nb2 * rows * cols, dv.st[1] = rows * cols, dv.st[2] = cols, dv.st[3] = 1;
  LDMC_TRY(ldmc_lc_add_copy(p, id, 4, box, (lc_ref){cb, 0}, &dv, *ref, &sv));
  *ref = (lc_ref){cb, 0};
  memcpy(s4, dv.st, 4 * sizeof *s4);
  return LDMC_OK;
}

typedef struct adims {
  int r;
  int64_t Bt, nb2, N, M, D, E;
} adims;

static adims dims_of(const ldmc_graph *g, const ldmc_node *n) {
  const ldmc_node *q = &g->nodes[n->operands[0]], *k = &g->nodes[n->operands[1]];
  int r = q->shape.rank;
  adims a = {r, 1, 1, q->shape.dims[r - 2], k->shape.dims[r - 2], q->shape.dims[r - 1], 0};
  if (n->n_operands > 2) a.E = g->nodes[n->operands[2]].shape.dims[r - 1];
  for (int i = 0; i < r - 2; i++) a.Bt *= q->shape.dims[i];
  a.nb2 = r > 4 ? a.Bt : r >= 3 ? q->shape.dims[r - 3] : 1;
  return a;
}

/* attention or attention_lse (no v; out is the f32 [..., N] log-sum-exp) */
static ldmc_status lower_flash(lc_plan *p, int32_t id, lc_ref out, const int64_t *os) {
  const ldmc_node *n = &p->g->nodes[id];
  bool lse = n->op == LDMC_OP_ATTENTION_LSE;
  adims a = dims_of(p->g, n);
  int W = p->t->W, nops = lse ? 2 : 3;
  lc_ref ref[3];
  int64_t s4[3][4], rows[3] = {a.N, a.M, a.M}, cols[3] = {a.D, a.D, a.E};
  for (int i = 0; i < nops; i++) LDMC_TRY(operand_view(p, a.r, n->operands[i], false, &ref[i], s4[i]));
  for (int i = 1; i < nops; i++) LDMC_TRY(as_f32(p, id, n->operands[i], a.Bt, a.nb2, rows[i], cols[i], &ref[i], s4[i]));
  /* the plan's block (tiling pass): br queries (one vector of W per tile)
   * by bc keys (16 scores + 16 P in zmm registers); ec output columns per
   * P v group (FMA chains) refine it; LDMC_LLVM_CPU_ATTN=nq,bc,ec overrides
   * both (tuning only) */
  lc_attn_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  ldmc_status st = planned_block(p, id, 48, &d->nq, &d->bc);
  if (st != LDMC_OK) {
    free(d);
    return st;
  }
  d->dt = (uint8_t)p->g->nodes[n->operands[0]].dtype;
  d->lse = lse;
  d->ec = W == 16 ? 8 : 4;
  const char *env = getenv("LDMC_LLVM_CPU_ATTN");
  int nq, bc, ec;
  if (env && sscanf(env, "%d,%d,%d", &nq, &bc, &ec) == 3 && nq >= 1 && nq <= 4 && bc >= 1 && ec >= 1 && nq * bc <= 48 &&
      nq * ec <= 32)
    d->nq = nq, d->bc = bc, d->ec = ec;
  d->B = a.Bt, d->N = a.N, d->M = a.M, d->D = a.D, d->E = lse ? 0 : a.E, d->nb2 = a.nb2;
  memcpy(d->qs, s4[0], sizeof d->qs);
  memcpy(d->ks, s4[1], sizeof d->ks);
  if (!lse) memcpy(d->vs, s4[2], sizeof d->vs);
  d->scale = n->attrs.scale;
  memcpy(d->os, os, sizeof d->os);
  int64_t Q = (int64_t)d->nq * W, Ep = (d->E + W - 1) / W * W;
  size_t scratch = (size_t)((a.D + Ep) * Q) * 4;
  int64_t tiles = lse || a.E > 0 ? a.Bt * ((a.N + Q - 1) / Q) : 0;
  double work = 2.0 * (double)a.Bt * (double)a.N * (double)a.M * (double)(a.D + d->E + 8);
  lc_ref refs[4] = {out, ref[0], ref[1], lse ? ref[1] : ref[2]};
  return ldmc_lc_add_kernel_step(p, id, LC_K_ATTN, d, sizeof *d, tiles, scratch, work, lse ? 3 : 4, refs);
}

/* attention_grad_q (queries in lanes, out strides os) or attention_grad_kv
 * (keys in lanes, out dense [..., M, D + E]) */
static ldmc_status lower_grad(lc_plan *p, int32_t id, lc_ref out, const int64_t *os) {
  const ldmc_node *n = &p->g->nodes[id];
  bool kv = n->op == LDMC_OP_ATTENTION_GRAD_KV;
  adims a = dims_of(p->g, n);
  int W = p->t->W;
  lc_ref ref[6];
  int64_t s4[6][4], rows[4] = {a.N, a.M, a.M, a.N}, cols[4] = {a.D, a.D, a.E, a.E};
  for (int i = 0; i < 6; i++) LDMC_TRY(operand_view(p, a.r, n->operands[i], i >= 4, &ref[i], s4[i]));
  for (int i = 0; i < 4; i++) /* the streamed side: k, v for dq; q, ct for dk | dv */
    if (kv == (i == 0 || i == 3)) LDMC_TRY(as_f32(p, id, n->operands[i], a.Bt, a.nb2, rows[i], cols[i], &ref[i], s4[i]));
  for (int i = 4; i < 6; i++) /* lse, delta: computed in f32 by their own kernels */
    if (p->g->nodes[n->operands[i]].dtype != LDMC_F32)
      return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %%%d %s: lse and delta must be f32", (int)id, ldmc_op_name(n->op));
  lc_attn_grad_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  ldmc_status st = planned_block(p, id, 24, &d->nl, &d->bs); /* bs x nl scores and dP in registers */
  if (st != LDMC_OK) {
    free(d);
    return st;
  }
  d->sub = kv ? LC_AG_KV : LC_AG_Q;
  d->dt = (uint8_t)p->g->nodes[n->operands[kv ? 1 : 0]].dtype; /* the lane side's */
  d->ec = W == 16 ? 8 : 4;
  const char *env = getenv("LDMC_LLVM_CPU_ATTN_GRAD"); /* nl,bs,ec: tuning only, as LDMC_LLVM_CPU_ATTN */
  int nl, bs, ec;
  if (env && sscanf(env, "%d,%d,%d", &nl, &bs, &ec) == 3 && nl >= 1 && nl <= 4 && bs >= 1 && ec >= 1 && nl * bs <= 24 &&
      nl * ec <= 32)
    d->nl = nl, d->bs = bs, d->ec = ec;
  d->B = a.Bt, d->N = a.N, d->M = a.M, d->D = a.D, d->E = a.E, d->nb2 = a.nb2;
  memcpy(d->qs, s4[0], sizeof d->qs);
  memcpy(d->ks, s4[1], sizeof d->ks);
  memcpy(d->vs, s4[2], sizeof d->vs);
  memcpy(d->cs, s4[3], sizeof d->cs);
  memcpy(d->ls, s4[4], sizeof d->ls);
  memcpy(d->ds, s4[5], sizeof d->ds);
  memcpy(d->os, os, sizeof d->os);
  d->scale = n->attrs.scale;
  int64_t R = (int64_t)d->nl * W, Dp = (a.D + W - 1) / W * W, Ep = (a.E + W - 1) / W * W;
  int64_t rows_out = kv ? a.M : a.N, cols_out = kv ? a.D + a.E : a.D;
  size_t scratch = (size_t)((kv ? 2 * (Dp + Ep) : 2 * Dp + Ep) * R) * 4;
  int64_t tiles = cols_out > 0 ? a.Bt * ((rows_out + R - 1) / R) : 0;
  double work = 2.0 * (double)a.Bt * (double)a.N * (double)a.M * (double)((kv ? 2 : 1) * (a.D + a.E) + a.D + 8);
  lc_ref refs[7] = {out, ref[0], ref[1], ref[2], ref[3], ref[4], ref[5]};
  return ldmc_lc_add_kernel_step(p, id, LC_K_ATTN_GRAD, d, sizeof *d, tiles, scratch, work, 7, refs);
}

ldmc_status ldmc_lc_lower_attention_into(lc_plan *p, int32_t id, lc_ref out, const int64_t *os) {
  return p->g->nodes[id].op == LDMC_OP_ATTENTION_GRAD_Q ? lower_grad(p, id, out, os) : lower_flash(p, id, out, os);
}

ldmc_status ldmc_lc_lower_attention(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  int r = n->shape.rank;
  int64_t st[LDMC_MAX_RANK], os[3];
  ldmc_lc_strides(&n->shape, st);
  if (n->op == LDMC_OP_ATTENTION_LSE) { /* [..., N]: the rows are the last dim */
    os[0] = r == 3 ? st[0] : 0, os[1] = r >= 2 ? st[r - 2] : 0, os[2] = r >= 1 ? st[r - 1] : 1;
    if (r > 3) os[0] = 0; /* dense: batches merged, b = b2 */
  } else {
    os[0] = r == 4 ? st[0] : 0, os[1] = r >= 3 ? st[r - 3] : 0, os[2] = st[r - 2];
    if (r > 4) os[0] = 0; /* dense: batches merged, b = b2 */
  }
  lc_ref out = ldmc_lc_new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  if (n->op == LDMC_OP_ATTENTION_GRAD_KV) return lower_grad(p, id, out, os);
  return ldmc_lc_lower_attention_into(p, id, out, os);
}
