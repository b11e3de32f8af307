/* reduce (sum, max, min) over consecutive dims: the operand viewed as
 * [O, Rd, I] with Rd the product of the reduced dims. Trailing dims (I = 1):
 * rows of [O, Rd] reduced one result per row, tiles of tr x tc, a row longer
 * than a tile accumulated over its column tiles (vec_reduce ... accumulate).
 * Otherwise, per o, columns of [Rd, I] reduced one result per column,
 * accumulated over row tiles. Either way the sum runs in order along the
 * reduced axis, in f32. */
#include <inttypes.h>
#include <stdio.h>

#include "backends/tpusim/lower.h"

bool tpk_reduce_contiguous(const ldmc_node *n) {
  for (int i = 1; i < n->attrs.dims.n; i++)
    if (n->attrs.dims.v[i] != n->attrs.dims.v[0] + i) return false;
  return true;
}

static const unsigned k_funcs[LDMC_REDUCE_COUNT] = {LDMC_TPU_R_SUM, LDMC_TPU_R_MAX, LDMC_TPU_R_MIN};

/* [O, Rd, I] with I > 1: for each o, column tiles of tc, accumulated over
 * row tiles of tr; output tile (o, column tile), one result per column. */
static ldmc_status reduce_cols(const ldmc_node *n, const ldmc_tpu_target *t, tpk_kernel *k, uint64_t O, uint64_t Rd,
                               uint64_t I) {
  uint64_t slack = 64u * 2 * TPK_NBUF;
  uint64_t elems = t->vmem_bytes > slack ? (t->vmem_bytes - slack) / (4 * TPK_NBUF) : 1;
  uint64_t tc = I < TPK_MAX_DIM ? I : TPK_MAX_DIM;
  if (2 * tc > elems) tc = elems / 2 ? elems / 2 : 1;
  if (tc < I && tc >= (uint64_t)t->vec_lanes) tc -= tc % (uint64_t)t->vec_lanes;
  uint64_t tr = elems / tc - 1;
  if (tr > Rd) tr = Rd;
  if (tr > TPK_MAX_DIM) tr = TPK_MAX_DIM;
  if (tr < 1) tr = 1;
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %" PRIu64 "x%" PRIu64 " (columns)", tr, tc);
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vin[TPK_NBUF], vout[TPK_NBUF];
  for (int b = 0; b < TPK_NBUF; b++) vin[b] = tpk_vmem_alloc(&e, 4 * tr * tc), vout[b] = tpk_vmem_alloc(&e, 4 * tc);
  int64_t nr = (int64_t)((Rd + tr - 1) / tr), nc = (int64_t)((I + tc - 1) / tc), ntiles = (int64_t)O * nc,
          nsteps = ntiles * nr, step = 0, tile = 0;
  for (uint64_t o = 0; o < O && e.st == LDMC_OK; o++)
    for (int64_t ci = 0; ci < nc && e.st == LDMC_OK; ci++, tile++)
      for (int64_t ri = 0; ri < nr && e.st == LDMC_OK; ri++, step++) {
        int b = (int)(step % TPK_NBUF), ob = (int)(tile % TPK_NBUF);
        uint64_t r0 = (uint64_t)ri * tr, c0 = (uint64_t)ci * tc;
        uint32_t rows = tpk_min32(tr, Rd - r0), cols = tpk_min32(tc, I - c0);
        size_t begin = k->prog.count;
        tpk_dma_load(&e, 0, (uint32_t)((o * Rd + r0) * I + c0), (uint32_t)I, rows, cols, vin[b], (uint32_t)tc,
                     LDMC_TPU_F32);
        ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_VEC_REDUCE, 0);
        in.u.vec = (ldmc_tpu_vec){.func = (uint8_t)k_funcs[n->attrs.reduce], .axis = LDMC_TPU_AX_COLS,
                                  .accumulate = ri > 0, .rows = (uint16_t)rows, .cols = (uint16_t)cols,
                                  .dst = vout[ob], .a = vin[b], .dst_stride = (uint16_t)tc, .a_stride = (uint16_t)tc,
                                  .dst_dtype = LDMC_TPU_F32, .a_dtype = LDMC_TPU_F32};
        tpk_push(&e, &in);
        bool last = ri + 1 == nr;
        if (last) tpk_dma_store(&e, 1, (uint32_t)(o * I + c0), cols, 1, cols, vout[ob], cols);
        tpk_step_tokens(&e, begin, step, nsteps, tile, ri == 0, last, ntiles);
      }
  return e.st;
}

ldmc_status tpk_lower_reduce(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id], *x = &g->nodes[n->operands[0]];
  if (!tpk_reduce_contiguous(n))
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d reduce: only consecutive dims can be reduced (v0)", (int)id);
  if ((unsigned)n->attrs.reduce >= LDMC_REDUCE_COUNT)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d reduce: unknown kind", (int)id);
  uint32_t numel, xnumel;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  LDMC_TRY(tpk_numel32(g, n->operands[0], &xnumel));
  k->node = id;
  k->n_bufs = 2;
  k->buf_node[0] = n->operands[0];
  k->buf_node[1] = id;
  if (numel == 0) return LDMC_OK;
  if (xnumel == 0)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d reduce: empty reduced dims are not lowered (v0)", (int)id);
  /* [O, Rd, I]: I is the product of the result dims from the first reduced dim on */
  uint64_t I = 1;
  if (n->attrs.dims.n > 0)
    for (int i = (int)n->attrs.dims.v[0]; i < n->shape.rank; i++) I *= (uint64_t)n->shape.dims[i];
  (void)x;
  if (I > 1) return reduce_cols(n, t, k, numel / I, xnumel / numel, I);
  uint64_t R = numel, C = xnumel / numel;
  /* per set: the input tile and tr results; two sets */
  uint64_t slack = 64u * 2 * TPK_NBUF;
  uint64_t elems = t->vmem_bytes > slack ? (t->vmem_bytes - slack) / (4 * TPK_NBUF) : 1;
  uint64_t tc = C < TPK_MAX_DIM ? C : TPK_MAX_DIM;
  if (tc + 1 > elems) tc = elems > 1 ? elems - 1 : 1;
  if (tc < C && tc >= (uint64_t)t->vec_lanes) tc -= tc % (uint64_t)t->vec_lanes;
  uint64_t tr = elems / (tc + 1);
  if (tr > R) tr = R;
  if (tr > TPK_MAX_DIM) tr = TPK_MAX_DIM;
  if (tr < 1) tr = 1;
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %" PRIu64 "x%" PRIu64, tr, tc);
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vin[TPK_NBUF], vout[TPK_NBUF];
  for (int b = 0; b < TPK_NBUF; b++) vin[b] = tpk_vmem_alloc(&e, 4 * tr * tc), vout[b] = tpk_vmem_alloc(&e, 4 * tr);
  int64_t nr = (int64_t)((R + tr - 1) / tr), nc = (int64_t)((C + tc - 1) / tc), nsteps = nr * nc, step = 0;
  for (int64_t ri = 0; ri < nr && e.st == LDMC_OK; ri++)
    for (int64_t ci = 0; ci < nc && e.st == LDMC_OK; ci++, step++) {
      int b = (int)(step % TPK_NBUF), ob = (int)(ri % TPK_NBUF);
      uint64_t r0 = (uint64_t)ri * tr, c0 = (uint64_t)ci * tc;
      uint32_t rows = tpk_min32(tr, R - r0), cols = tpk_min32(tc, C - c0);
      size_t begin = k->prog.count;
      tpk_dma_load(&e, 0, (uint32_t)(r0 * C + c0), (uint32_t)C, rows, cols, vin[b], (uint32_t)tc, LDMC_TPU_F32);
      ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_VEC_REDUCE, 0);
      in.u.vec = (ldmc_tpu_vec){.func = (uint8_t)k_funcs[n->attrs.reduce], .axis = LDMC_TPU_AX_ROWS,
                                .accumulate = ci > 0, .rows = (uint16_t)rows, .cols = (uint16_t)cols,
                                .dst = vout[ob], .a = vin[b], .dst_stride = 1, .a_stride = (uint16_t)tc,
                                .dst_dtype = LDMC_TPU_F32, .a_dtype = LDMC_TPU_F32};
      tpk_push(&e, &in);
      bool last = ci + 1 == nc;
      if (last) tpk_dma_store(&e, 1, (uint32_t)r0, rows, 1, rows, vout[ob], rows);
      tpk_step_tokens(&e, begin, step, nsteps, ri, ci == 0, last, nr);
    }
  return e.st;
}
