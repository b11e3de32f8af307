/* Elementwise kernels on the vector unit: unary and binary ops over
 * same-shape f32 operands, and broadcast_in_dim as a strided DMA (stride 0
 * repeats rows) plus a per-row broadcast when the last dim is broadcast.
 * A tensor is viewed as [rows, last dim]; tiles of tr x tc elements are
 * sized so that every array of a tile, in TPK_NBUF sets, fits the
 * scratchpad, and capped so that a large tensor takes several tiles. */
#include <inttypes.h>
#include <math.h>
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
 * for a mapped, non-1 dim and 0 otherwise. The output's dims are first
 * canonicalized: size-1 dims dropped, neighbours merged when the operand is
 * contiguous across them (s_i = s_{i+1} d_{i+1}, runs of broadcast dims
 * included), so that e.g. upsample's [N, C, H, W, 2] from [N, C, H, W] is
 * [M, 2] with strides (1, 0). Then one of three tilings:
 *  - repeat of the last dim (s = (..., 1, 0), f copies of each element, f
 *    small): a large contiguous source chunk per step, copied once on chip,
 *    stored f times by column DMAs (cols 1: off-chip stride f, the repeat
 *    happens in the DMA's addressing);
 *  - repeat of rows (s = (..., sA, 0, 1): [A, f, Q]): a tile of A-rows x Q
 *    loaded once, stored f times at row stride f Q;
 *  - otherwise a tile covers a run of the second-last dim (one DMA with row
 *    stride s[r-2], 0 repeating the row) and a column block of the last; a
 *    broadcast last dim loads one value per row and spreads it with a
 *    per-row multiply of a tile of ones (exact, signs of zero and NaNs kept).
 * The choice is made from a cycle estimate of DMA latency against vector
 * work. */
typedef struct bcast_view {
  int r;
  uint64_t d[LDMC_MAX_RANK + 2], s[LDMC_MAX_RANK + 2];
} bcast_view;

static void bcast_canon(const ldmc_graph *g, const ldmc_node *n, bcast_view *v) {
  const ldmc_node *x = &g->nodes[n->operands[0]];
  uint64_t xs[LDMC_MAX_RANK], acc = 1, sd[LDMC_MAX_RANK];
  for (int j = x->shape.rank - 1; j >= 0; j--) xs[j] = acc, acc *= (uint64_t)x->shape.dims[j];
  for (int i = 0; i < n->shape.rank; i++) sd[i] = 0;
  for (int j = 0; j < n->attrs.dims.n; j++)
    if (x->shape.dims[j] != 1) sd[n->attrs.dims.v[j]] = xs[j];
  uint64_t d[LDMC_MAX_RANK + 2], s[LDMC_MAX_RANK + 2];
  int m = 0;
  for (int i = 0; i < n->shape.rank; i++) {
    uint64_t di = (uint64_t)n->shape.dims[i];
    if (di == 1) continue;
    if (m > 0 && s[m - 1] == sd[i] * di) {
      d[m - 1] *= di, s[m - 1] = sd[i];
      continue;
    }
    d[m] = di, s[m] = sd[i], m++;
  }
  /* a broadcast last dim longer than a vector operand is split back into [a, c] (both stride 0) */
  if (m > 0 && s[m - 1] == 0 && d[m - 1] > TPK_MAX_DIM) {
    uint64_t all = d[m - 1], c = TPK_MAX_DIM;
    while (all % c) c--;
    d[m - 1] = all / c, s[m - 1] = 0, d[m] = c, s[m] = 0, m++;
  }
  int pad = m < 2 ? 2 - m : 0;
  v->r = m + pad;
  for (int i = 0; i < pad; i++) v->d[i] = 1, v->s[i] = 0;
  for (int i = 0; i < m; i++) v->d[pad + i] = d[i], v->s[pad + i] = s[i];
}

static uint64_t bv_outer(const bcast_view *v, int keep) {
  uint64_t o = 1;
  for (int i = 0; i < v->r - keep; i++) o *= v->d[i];
  return o;
}

/* Operand offset of outer index o over dims [0, v->r - keep). */
static uint64_t bv_base(const bcast_view *v, int keep, uint64_t o) {
  uint64_t base = 0;
  for (int i = v->r - keep - 1; i >= 0; i--) base += (o % v->d[i]) * v->s[i], o /= v->d[i];
  return base;
}

static double lat_per_dma(const ldmc_tpu_target *t) {
  return (double)ldmc_tpu_target_latency_cycles(t) / (double)t->dma_engines;
}

/* Elements of one array of a tile when n_arrays arrays x TPK_NBUF sets share the scratchpad, at
 * most a quarter of total (so that tiles overlap) unless that is under the latency's worth of bytes. */
static uint64_t chunk_elems(const ldmc_tpu_target *t, uint64_t total, int n_arrays) {
  uint64_t slack = 64u * TPK_NBUF * (uint64_t)n_arrays;
  uint64_t per = t->vmem_bytes > slack ? (t->vmem_bytes - slack) / (TPK_NBUF * (uint64_t)n_arrays) / 4 : 0;
  double lat_bytes = (double)ldmc_tpu_target_latency_cycles(t) * ldmc_tpu_target_bytes_per_cycle(t);
  uint64_t quarter = (total + 3) / 4, lat_elems = (uint64_t)(lat_bytes / 4) + 1;
  uint64_t cap = quarter > lat_elems ? quarter : lat_elems;
  if (per > cap) per = cap;
  if (per > 16ull * TPK_MAX_DIM) per = 16ull * TPK_MAX_DIM; /* bounded DMAs per step */
  return per ? per : 1;
}

/* [outer..., M, f] with strides (..., 1, 0): each source element stored f times. */
static ldmc_status bcast_repeat_cols(const bcast_view *v, const ldmc_tpu_target *t, tpk_kernel *k) {
  int r = v->r;
  uint64_t M = v->d[r - 2], f = v->d[r - 1], outer = bv_outer(v, 2);
  uint64_t m = chunk_elems(t, M * outer, 2);
  uint64_t w = M < TPK_MAX_DIM ? M : TPK_MAX_DIM;
  if (w > m) w = m;
  if (w < M && w >= (uint64_t)t->vec_lanes) w -= w % (uint64_t)t->vec_lanes;
  if (m > M) m = M;
  m -= m % w; /* whole rows of w per chunk */
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %" PRIu64 "x%" PRIu64 " (x%" PRIu64 " by strided stores)", m / w, w, f);
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vin[TPK_NBUF], vout[TPK_NBUF];
  for (int b = 0; b < TPK_NBUF; b++) vin[b] = tpk_vmem_alloc(&e, 4 * m), vout[b] = tpk_vmem_alloc(&e, 4 * m);
  uint64_t nch = (M + m - 1) / m;
  int64_t nsteps = (int64_t)(outer * nch), step = 0;
  for (uint64_t o = 0; o < outer && e.st == LDMC_OK; o++) {
    uint64_t sb = bv_base(v, 2, o), ob = o * M * f;
    for (uint64_t ci = 0; ci < nch && e.st == LDMC_OK; ci++, step++) {
      int b = (int)(step % TPK_NBUF);
      uint64_t m0 = ci * m, cnt = M - m0 < m ? M - m0 : m, full = cnt / w, tail = cnt % w;
      size_t begin = k->prog.count;
      if (full) tpk_dma_load(&e, 0, (uint32_t)(sb + m0), (uint32_t)w, (uint32_t)full, (uint32_t)w, vin[b], (uint32_t)w, LDMC_TPU_F32);
      if (tail)
        tpk_dma_load(&e, 0, (uint32_t)(sb + m0 + full * w), (uint32_t)w, 1, (uint32_t)tail, vin[b] + (uint32_t)(4 * full * w),
                     (uint32_t)w, LDMC_TPU_F32);
      if (full)
        tpk_vec(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, (uint32_t)full, (uint32_t)w, vout[b], (uint32_t)w, vin[b],
                (uint32_t)w, 0, 0, 0.0f);
      if (tail)
        tpk_vec(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, 1, (uint32_t)tail, vout[b] + (uint32_t)(4 * full * w), (uint32_t)w,
                vin[b] + (uint32_t)(4 * full * w), (uint32_t)w, 0, 0, 0.0f);
      for (uint64_t j = 0; j < f; j++)
        for (uint64_t p0 = 0; p0 < cnt; p0 += TPK_MAX_DIM) {
          uint64_t pn = cnt - p0 < TPK_MAX_DIM ? cnt - p0 : TPK_MAX_DIM;
          tpk_dma_store(&e, 1, (uint32_t)(ob + (m0 + p0) * f + j), (uint32_t)f, (uint32_t)pn, 1, vout[b] + (uint32_t)(4 * p0), 1);
        }
      tpk_step_tokens(&e, begin, step, nsteps, step, true, true, nsteps);
    }
  }
  return e.st;
}

/* [outer..., A, f, Q] with strides (..., sA, 0, 1): each tile of A-rows stored f times. */
static ldmc_status bcast_repeat_rows(const bcast_view *v, const ldmc_tpu_target *t, uint32_t tA, uint32_t tq, tpk_kernel *k) {
  int r = v->r;
  uint64_t A = v->d[r - 3], f = v->d[r - 2], Q = v->d[r - 1], sA = v->s[r - 3], outer = bv_outer(v, 3);
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %ux%u (x%" PRIu64 " rows by strided stores)", tA, tq, f);
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vin[TPK_NBUF], vout[TPK_NBUF];
  for (int b = 0; b < TPK_NBUF; b++) vin[b] = tpk_vmem_alloc(&e, 4ull * tA * tq), vout[b] = tpk_vmem_alloc(&e, 4ull * tA * tq);
  uint64_t na = (A + tA - 1) / tA, nq = (Q + tq - 1) / tq;
  int64_t nsteps = (int64_t)(outer * na * nq), step = 0;
  for (uint64_t o = 0; o < outer && e.st == LDMC_OK; o++) {
    uint64_t sb = bv_base(v, 3, o), ob = o * A * f * Q;
    for (uint64_t ai = 0; ai < na && e.st == LDMC_OK; ai++)
      for (uint64_t qi = 0; qi < nq && e.st == LDMC_OK; qi++, step++) {
        int b = (int)(step % TPK_NBUF);
        uint64_t a0 = ai * tA, q0 = qi * tq;
        uint32_t rows = tpk_min32(tA, A - a0), cols = tpk_min32(tq, Q - q0);
        size_t begin = k->prog.count;
        tpk_dma_load(&e, 0, (uint32_t)(sb + a0 * sA + q0), (uint32_t)sA, rows, cols, vin[b], tq, LDMC_TPU_F32);
        tpk_vec(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, rows, cols, vout[b], tq, vin[b], tq, 0, 0, 0.0f);
        for (uint64_t j = 0; j < f; j++)
          tpk_dma_store(&e, 1, (uint32_t)(ob + (a0 * f + j) * Q + q0), (uint32_t)(f * Q), rows, cols, vout[b], tq);
        tpk_step_tokens(&e, begin, step, nsteps, step, true, true, nsteps);
      }
  }
  return e.st;
}

ldmc_status tpk_lower_broadcast(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  uint32_t numel, xnumel;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  LDMC_TRY(tpk_numel32(g, n->operands[0], &xnumel));
  k->node = id;
  k->n_bufs = 2;
  k->buf_node[0] = n->operands[0];
  k->buf_node[1] = id;
  if (numel == 0) return LDMC_OK;
  bcast_view v;
  bcast_canon(g, n, &v);
  int r = v.r;
  const uint64_t *d = v.d, *s = v.s;
  uint64_t C = d[r - 1], D2 = d[r - 2], outer = bv_outer(&v, 2), sc = s[r - 1], s2 = s[r - 2];
  double sub = (double)t->vec_sublanes, lanes = (double)t->vec_lanes, opc = (double)t->vec_ops_per_cycle;
  if (sc == 0 && s2 == 1 && C > 1) {
    /* strided stores: f DMAs per 64 K elements; on chip: two vector ops over rows of f */
    double dmas = (double)outer * (double)C * ceil((double)D2 / TPK_MAX_DIM), vregs = (double)outer * ceil((double)D2 / sub) * ceil((double)C / lanes);
    if (dmas * lat_per_dma(t) < 2 * vregs / opc) return bcast_repeat_cols(&v, t, k);
  }
  if (r >= 3 && sc == 1 && s2 == 0 && s[r - 3] != 0) {
    uint32_t tA, tq;
    tpk_ew_tiles(t, d[r - 3], C, 2, &tA, &tq);
    /* 1 + f DMAs per tile of tA rows against 2 per row of A (the tiling below: tiles of [f, Q]) */
    if ((double)(1 + D2) < 2.0 * tA) return bcast_repeat_rows(&v, t, tA, tq, k);
  }
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
    uint64_t base = bv_base(&v, 2, o);
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
