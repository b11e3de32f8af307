/* Elementwise kernels on the vector unit: unary and binary ops over
 * same-shape f32 operands, and broadcast_in_dim as a strided DMA (stride 0
 * repeats rows) plus a per-row broadcast when the last dim is broadcast.
 * A tensor is viewed as [rows, last dim]; tiles of tr x tc elements are
 * sized so that every array of a tile, in TPK_NBUF sets, fits the
 * scratchpad, and capped so that a large tensor takes several tiles. */
#include <inttypes.h>
#include <stdio.h>

#include "backends/tpusim/lower.h"

/* Tile rows x cols for n_arrays f32 arrays per buffer set. */
void tpk_ew_tiles(const ldmc_tpu_target *t, uint64_t R, uint64_t C, int n_arrays, uint32_t *tr, uint32_t *tc) {
  uint64_t slack = 64u * TPK_NBUF * (uint64_t)n_arrays;
  uint64_t per = t->vmem_bytes > slack ? (t->vmem_bytes - slack) / (TPK_NBUF * (uint64_t)n_arrays) : 0;
  uint64_t elems = per / 4;
  /* No larger than a quarter of the tensor, so that loads, compute and
   * stores of successive tiles overlap, unless that makes a transfer shorter
   * than the off-chip latency's worth of bytes (then latency dominates). */
  double lat_bytes = (double)ldmc_tpu_target_latency_cycles(t) * ldmc_tpu_target_bytes_per_cycle(t);
  uint64_t quarter = (R * C + 3) / 4, lat_elems = (uint64_t)(lat_bytes / 4) + 1;
  uint64_t cap = quarter > lat_elems ? quarter : lat_elems;
  if (elems > cap) elems = cap;
  if (elems < 1) elems = 1;
  uint64_t c = C < TPK_MAX_DIM ? C : TPK_MAX_DIM;
  if (c > elems) c = elems;
  if (c < C && c >= (uint64_t)t->vec_lanes) c -= c % (uint64_t)t->vec_lanes; /* whole vregs per row */
  if (c < 1) c = 1;
  uint64_t r = elems / c;
  if (r > R) r = R;
  if (r > TPK_MAX_DIM) r = TPK_MAX_DIM;
  if (r < 1) r = 1;
  *tr = (uint32_t)r;
  *tc = (uint32_t)c;
}

/* [rows, cols] of a node's value. */
static void view2(const ldmc_node *n, uint64_t *R, uint64_t *C) {
  uint64_t c = n->shape.rank ? (uint64_t)n->shape.dims[n->shape.rank - 1] : 1, all = 1;
  for (int i = 0; i < n->shape.rank; i++) all *= (uint64_t)n->shape.dims[i];
  *C = c;
  *R = c ? all / c : 0;
}

static ldmc_status ew_lower(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k, int n_in,
                            ldmc_tpu_opcode op, unsigned func) {
  const ldmc_node *n = &g->nodes[id];
  uint32_t numel;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  k->node = id;
  k->n_bufs = n_in + 1;
  for (int j = 0; j < n_in; j++) k->buf_node[j] = n->operands[j];
  k->buf_node[n_in] = id;
  uint64_t R, C;
  view2(n, &R, &C);
  if (numel == 0) return LDMC_OK; /* nothing to run */
  uint32_t tr, tc;
  tpk_ew_tiles(t, R, C, n_in + 1, &tr, &tc);
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %ux%u", tr, tc);
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vin[TPK_NBUF][2] = {{0}}, vout[TPK_NBUF];
  for (int s = 0; s < TPK_NBUF; s++) {
    for (int j = 0; j < n_in; j++) vin[s][j] = tpk_vmem_alloc(&e, 4ull * tr * tc);
    vout[s] = tpk_vmem_alloc(&e, 4ull * tr * tc);
  }
  int64_t nr = (int64_t)((R + tr - 1) / tr), nc = (int64_t)((C + tc - 1) / tc), nsteps = nr * nc, step = 0;
  for (int64_t ri = 0; ri < nr && e.st == LDMC_OK; ri++)
    for (int64_t ci = 0; ci < nc && e.st == LDMC_OK; ci++, step++) {
      int s = (int)(step % TPK_NBUF);
      uint32_t r0 = (uint32_t)ri * tr, c0 = (uint32_t)ci * tc;
      uint32_t rows = tpk_min32(tr, R - r0), cols = tpk_min32(tc, C - c0), off = r0 * (uint32_t)C + c0;
      size_t begin = k->prog.count;
      for (int j = 0; j < n_in; j++) tpk_dma_load(&e, j, off, (uint32_t)C, rows, cols, vin[s][j], tc, LDMC_TPU_F32);
      tpk_vec(&e, op, func, LDMC_TPU_BC_FULL, rows, cols, vout[s], tc, vin[s][0], tc, n_in > 1 ? vin[s][1] : 0,
              n_in > 1 ? tc : 0, 0.0f);
      tpk_dma_store(&e, n_in, off, (uint32_t)C, rows, cols, vout[s], tc);
      tpk_step_tokens(&e, begin, step, nsteps, step, true, true, nsteps);
    }
  return e.st;
}

ldmc_status tpk_lower_unary(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  int f = tpk_unary_func(g->nodes[id].op);
  if (f < 0)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s: no vector-unit function", (int)id,
                      ldmc_op_name(g->nodes[id].op));
  return ew_lower(g, id, t, k, 1, LDMC_TPU_VEC_UNARY, (unsigned)f);
}

ldmc_status tpk_lower_binary(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  int f = tpk_binary_func(g->nodes[id].op);
  if (f < 0)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s: no vector-unit function", (int)id,
                      ldmc_op_name(g->nodes[id].op));
  return ew_lower(g, id, t, k, 2, LDMC_TPU_VEC_BINARY, (unsigned)f);
}

/* broadcast_in_dim: out[i] = x[sum_d i_d s_d] with s_d the operand's stride
 * for a mapped, non-1 dim and 0 otherwise. A tile covers a run of the
 * second-last dim (one DMA with row stride s[r-2], 0 repeating the row) and a
 * column block of the last; a broadcast last dim (s[r-1] = 0) loads one
 * value per row and spreads it with a per-row multiply of a tile of ones
 * (exact, signs of zero and NaNs kept). */
ldmc_status tpk_lower_broadcast(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id], *x = &g->nodes[n->operands[0]];
  uint32_t numel, xnumel;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  LDMC_TRY(tpk_numel32(g, n->operands[0], &xnumel));
  k->node = id;
  k->n_bufs = 2;
  k->buf_node[0] = n->operands[0];
  k->buf_node[1] = id;
  if (numel == 0) return LDMC_OK;
  /* operand strides, then the output's dims and strides padded to rank >= 2 */
  uint64_t xs[LDMC_MAX_RANK], acc = 1;
  for (int j = x->shape.rank - 1; j >= 0; j--) xs[j] = acc, acc *= (uint64_t)x->shape.dims[j];
  int r = n->shape.rank < 2 ? 2 : n->shape.rank, pad = r - n->shape.rank;
  uint64_t d[LDMC_MAX_RANK + 2], s[LDMC_MAX_RANK + 2];
  for (int i = 0; i < r; i++) d[i] = 1, s[i] = 0;
  for (int i = 0; i < n->shape.rank; i++) d[i + pad] = (uint64_t)n->shape.dims[i];
  for (int j = 0; j < n->attrs.dims.n; j++)
    if (x->shape.dims[j] != 1) s[n->attrs.dims.v[j] + pad] = xs[j];
  uint64_t C = d[r - 1], D2 = d[r - 2], outer = 1, sc = s[r - 1], s2 = s[r - 2];
  for (int i = 0; i < r - 2; i++) outer *= d[i];
  uint32_t tr, tc;
  tpk_ew_tiles(t, D2, C, 2, &tr, &tc);
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %ux%u%s", tr, tc, sc ? "" : " (row broadcast)");
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vin[TPK_NBUF], vout[TPK_NBUF];
  for (int b = 0; b < TPK_NBUF; b++) vin[b] = tpk_vmem_alloc(&e, 4ull * tr * tc), vout[b] = tpk_vmem_alloc(&e, 4ull * tr * tc);
  int64_t nr = (int64_t)((D2 + tr - 1) / tr), nc = (int64_t)((C + tc - 1) / tc), nsteps = (int64_t)outer * nr * nc,
          step = 0;
  for (uint64_t o = 0; o < outer && e.st == LDMC_OK; o++) {
    uint64_t base = 0, rem = o;
    for (int i = r - 3; i >= 0; i--) base += (rem % d[i]) * s[i], rem /= d[i];
    for (int64_t ri = 0; ri < nr && e.st == LDMC_OK; ri++)
      for (int64_t ci = 0; ci < nc && e.st == LDMC_OK; ci++, step++) {
        int b = (int)(step % TPK_NBUF);
        uint64_t j0 = (uint64_t)ri * tr, c0 = (uint64_t)ci * tc;
        uint32_t rows = tpk_min32(tr, D2 - j0), cols = tpk_min32(tc, C - c0);
        uint32_t xoff = (uint32_t)(base + j0 * s2 + c0 * sc), ooff = (uint32_t)((o * D2 + j0) * C + c0);
        size_t begin = k->prog.count;
        if (sc) {
          tpk_dma_load(&e, 0, xoff, (uint32_t)s2, rows, cols, vin[b], tc, LDMC_TPU_F32);
          tpk_vec(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, rows, cols, vout[b], tc, vin[b], tc, 0, 0, 0.0f);
        } else {
          tpk_dma_load(&e, 0, xoff, (uint32_t)s2, rows, 1, vin[b], 1, LDMC_TPU_F32);
          tpk_vec(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_FILL, 0, rows, cols, vout[b], tc, vout[b], tc, 0, 0, 1.0f);
          tpk_vec(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_ROW, rows, cols, vout[b], tc, vout[b], tc, vin[b],
                  1, 0.0f);
        }
        tpk_dma_store(&e, 1, ooff, (uint32_t)C, rows, cols, vout[b], tc);
        tpk_step_tokens(&e, begin, step, nsteps, step, true, true, nsteps);
      }
  }
  (void)xnumel;
  return e.st;
}
