/* Data movement as strided DMA copies, and sin / cos on the vector unit.
 *
 * reshape, transpose, slice, concatenate, pad and convert (f32 -> f32) are
 * each a list of regions: out[dst_base + sum_i j_i ds_i] = in_b[src_base + sum_i
 * j_i ss_i] over a box of dims d (concatenate: one region per operand; pad:
 * a fill of the whole output with the pad value, then the operand's kept
 * box at output stride (interior + 1), cropped by negative low / high).
 * Dims of size 1 are dropped and neighbours that are contiguous on both
 * sides merged; the rest is viewed as [outer..., D2, C] and tiled into tr x
 * tc scratchpad tiles (two buffer sets: in, out). A tile is loaded by one
 * 2-D DMA when the source's last stride is 1 (any row stride: a slice's
 * step, a transpose that keeps the last dim), else by min(rows, cols) DMAs
 * of one column each (a column DMA writes one vmem row or column: the
 * transpose of the block happens in the DMA's addressing); stored the same
 * way. Between them a vector copy, so that the load of tile i + 2 and the
 * store of tile i use different buffers (tokens of tpk_step_tokens). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "backends/tpusim/lower.h"

typedef struct region {
  int buf;   /* source buffer index in the kernel */
  bool fill; /* no source box: every element is the scalar in buffer buf (pad's value) */
  uint64_t src_base, dst_base;
  int rank;
  uint64_t d[LDMC_MAX_RANK + 2], ss[LDMC_MAX_RANK + 2], ds[LDMC_MAX_RANK + 2];
} region;

static void strides_of(const ldmc_shape *s, uint64_t *st) {
  uint64_t a = 1;
  for (int i = s->rank - 1; i >= 0; i--) st[i] = a, a *= (uint64_t)s->dims[i];
}

/* Drops size-1 dims, merges contiguous neighbours, pads to rank 2. */
static void region_canon(region *r) {
  uint64_t d[LDMC_MAX_RANK + 2], ss[LDMC_MAX_RANK + 2], ds[LDMC_MAX_RANK + 2];
  int n = 0;
  for (int i = 0; i < r->rank; i++) {
    if (r->d[i] == 1) continue;
    if (n > 0 && ss[n - 1] == r->ss[i] * r->d[i] && ds[n - 1] == r->ds[i] * r->d[i]) {
      d[n - 1] *= r->d[i], ss[n - 1] = r->ss[i], ds[n - 1] = r->ds[i];
      continue;
    }
    d[n] = r->d[i], ss[n] = r->ss[i], ds[n] = r->ds[i], n++;
  }
  int pad = n < 2 ? 2 - n : 0;
  for (int i = 0; i < pad; i++) r->d[i] = 1, r->ss[i] = r->ds[i] = 0;
  for (int i = 0; i < n; i++) r->d[pad + i] = d[i], r->ss[pad + i] = ss[i], r->ds[pad + i] = ds[i];
  r->rank = n + pad;
  /* the box's dims may be visited in any order: with the last dim contiguous on both sides, the longest
   * other dim becomes the tile's rows (a head merge [N, h, d] is then tiles of N rows, not of h) */
  int R = r->rank, big = R - 2;
  if (R >= 3 && r->ss[R - 1] == 1 && r->ds[R - 1] == 1) {
    for (int i = 0; i < R - 2; i++)
      if (r->d[i] > r->d[big]) big = i;
    if (big != R - 2) {
      uint64_t t0 = r->d[big], t1 = r->ss[big], t2 = r->ds[big];
      r->d[big] = r->d[R - 2], r->ss[big] = r->ss[R - 2], r->ds[big] = r->ds[R - 2];
      r->d[R - 2] = t0, r->ss[R - 2] = t1, r->ds[R - 2] = t2;
    }
  }
}

/* A contiguous copy of n elements viewed as [n / c, c] with c the last dim
 * of the value (as the elementwise kernels view it). */
static void region_flat(region *r, int buf, uint64_t n, uint64_t c) {
  memset(r, 0, sizeof *r);
  r->buf = buf;
  if (c == 0 || n % c) c = n;
  r->rank = 2;
  r->d[0] = n / c, r->d[1] = c;
  r->ss[0] = r->ds[0] = c, r->ss[1] = r->ds[1] = 1;
}

static uint64_t region_outer(const region *r) {
  uint64_t o = 1;
  for (int i = 0; i < r->rank - 2; i++) o *= r->d[i];
  return o;
}

/* A block of rows x cols between off-chip (offset off, row stride s2,
 * column stride sc) and a scratchpad tile (row stride tc). */
static void move_block(tpk_em *e, bool load, int buf, uint64_t off, uint64_t s2, uint64_t sc, uint32_t rows, uint32_t cols,
                       uint32_t vaddr, uint32_t tc) {
  if (sc == 1 || cols == 1) {
    if (load) tpk_dma_load(e, buf, (uint32_t)off, (uint32_t)s2, rows, cols, vaddr, tc, LDMC_TPU_F32);
    else tpk_dma_store(e, buf, (uint32_t)off, (uint32_t)(rows > 1 ? s2 : cols), rows, cols, vaddr, tc);
    return;
  }
  if (rows <= cols) { /* one DMA per tile row: its cols elements, sc apart off chip, contiguous on chip */
    for (uint32_t r = 0; r < rows; r++) {
      if (load) tpk_dma_load(e, buf, (uint32_t)(off + r * s2), (uint32_t)sc, cols, 1, vaddr + 4 * r * tc, 1, LDMC_TPU_F32);
      else tpk_dma_store(e, buf, (uint32_t)(off + r * s2), (uint32_t)sc, cols, 1, vaddr + 4 * r * tc, 1);
    }
  } else { /* one DMA per tile column */
    for (uint32_t c = 0; c < cols; c++) {
      if (load) tpk_dma_load(e, buf, (uint32_t)(off + c * sc), (uint32_t)s2, rows, 1, vaddr + 4 * c, tc, LDMC_TPU_F32);
      else tpk_dma_store(e, buf, (uint32_t)(off + c * sc), (uint32_t)(rows > 1 ? s2 : 1), rows, 1, vaddr + 4 * c, tc);
    }
  }
}

/* Emits (or, with e NULL, counts) the tiles of every region; returns the count. */
static int64_t copy_regions(tpk_em *e, const region *rs, int nr, int out_buf, uint32_t tr, uint32_t tc, const uint32_t *vin,
                            const uint32_t *vout, int64_t nsteps) {
  int64_t step = 0;
  for (int ri = 0; ri < nr; ri++) {
    const region *r = &rs[ri];
    int R = r->rank;
    uint64_t D2 = r->d[R - 2], C = r->d[R - 1], outer = region_outer(r);
    uint64_t nrt = (D2 + tr - 1) / tr, nct = (C + tc - 1) / tc;
    if (!e) {
      step += (int64_t)(outer * nrt * nct);
      continue;
    }
    for (uint64_t o = 0; o < outer && e->st == LDMC_OK; o++) {
      uint64_t sb = r->src_base, db = r->dst_base, rem = o;
      for (int i = R - 3; i >= 0; i--) sb += (rem % r->d[i]) * r->ss[i], db += (rem % r->d[i]) * r->ds[i], rem /= r->d[i];
      for (uint64_t a = 0; a < nrt && e->st == LDMC_OK; a++)
        for (uint64_t b = 0; b < nct && e->st == LDMC_OK; b++, step++) {
          int s = (int)(step % TPK_NBUF);
          uint64_t r0 = a * tr, c0 = b * tc;
          uint32_t rows = tpk_min32(tr, D2 - r0), cols = tpk_min32(tc, C - c0);
          size_t begin = e->p->count;
          if (r->fill) { /* the scalar once per row (row stride 0), spread by a per-row multiply of ones: exact */
            tpk_dma_load(e, r->buf, 0, 0, rows, 1, vin[s], 1, LDMC_TPU_F32);
            tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_FILL, 0, rows, cols, vout[s], tc, vout[s], tc, 0, 0, 1.0f);
            tpk_vec(e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_ROW, rows, cols, vout[s], tc, vout[s], tc, vin[s], 1,
                    0.0f);
          } else {
            move_block(e, true, r->buf, sb + r0 * r->ss[R - 2] + c0 * r->ss[R - 1], r->ss[R - 2], r->ss[R - 1], rows, cols,
                       vin[s], tc);
            tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, rows, cols, vout[s], tc, vin[s], tc, 0, 0, 0.0f);
          }
          move_block(e, false, out_buf, db + r0 * r->ds[R - 2] + c0 * r->ds[R - 1], r->ds[R - 2], r->ds[R - 1], rows, cols,
                     vout[s], tc);
          tpk_step_tokens(e, begin, step, nsteps, step, true, true, nsteps);
        }
    }
  }
  return step;
}

const char *tpk_move_why_not(const ldmc_node *n) {
  if (n->op == LDMC_OP_CONCATENATE && n->n_operands + 1 > TPK_MAX_BUFS) return "more than 15 operands are not lowered";
  if (n->op == LDMC_OP_SLICE)
    for (int i = 0; i < n->attrs.stride.n; i++)
      if (n->attrs.stride.v[i] < 1) return "a slice step below 1";
  if (n->op == LDMC_OP_PAD)
    for (int i = 0; i < n->attrs.interior.n; i++)
      if (n->attrs.interior.v[i] < 0) return "negative interior padding";
  return NULL;
}

ldmc_status tpk_lower_move(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  const char *why = tpk_move_why_not(n);
  if (why) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s: %s", (int)id, ldmc_op_name(n->op), why);
  uint32_t numel;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  int nin = n->n_operands;
  k->node = id;
  k->n_bufs = nin + 1;
  for (int j = 0; j < nin; j++) k->buf_node[j] = n->operands[j];
  k->buf_node[nin] = id;
  if (numel == 0) return LDMC_OK;
  region rs[TPK_MAX_BUFS];
  int nr = 0;
  uint64_t ost[LDMC_MAX_RANK];
  strides_of(&n->shape, ost);
  const ldmc_shape *xs = &g->nodes[n->operands[0]].shape;
  uint64_t xst[LDMC_MAX_RANK];
  strides_of(xs, xst);
  uint64_t last = n->shape.rank ? (uint64_t)n->shape.dims[n->shape.rank - 1] : 1;
  switch (n->op) {
  case LDMC_OP_RESHAPE:
  case LDMC_OP_CONVERT: region_flat(&rs[nr++], 0, numel, last); break;
  case LDMC_OP_TRANSPOSE:
  case LDMC_OP_SLICE: {
    region *r = &rs[nr++];
    memset(r, 0, sizeof *r);
    r->rank = n->shape.rank;
    for (int i = 0; i < r->rank; i++) {
      r->d[i] = (uint64_t)n->shape.dims[i], r->ds[i] = ost[i];
      if (n->op == LDMC_OP_TRANSPOSE) {
        r->ss[i] = xst[n->attrs.dims.v[i]]; /* out dim i is in dim perm[i] */
      } else {
        r->ss[i] = (uint64_t)n->attrs.stride.v[i] * xst[i];
        r->src_base += (uint64_t)n->attrs.start.v[i] * xst[i];
      }
    }
    region_canon(r);
    break;
  }
  case LDMC_OP_CONCATENATE: {
    int ax = (int)n->attrs.axis;
    uint64_t at = 0;
    for (int j = 0; j < nin; j++) {
      const ldmc_shape *s = &g->nodes[n->operands[j]].shape;
      region *r = &rs[nr];
      memset(r, 0, sizeof *r);
      r->buf = j;
      r->rank = s->rank;
      r->dst_base = at * ost[ax];
      strides_of(s, r->ss);
      uint64_t cnt = 1;
      for (int i = 0; i < s->rank; i++) r->d[i] = (uint64_t)s->dims[i], r->ds[i] = ost[i], cnt *= r->d[i];
      at += (uint64_t)s->dims[ax];
      if (cnt == 0) continue;
      region_canon(r);
      nr++;
    }
    break;
  }
  case LDMC_OP_PAD: {
    /* every element the pad value first, then the operand's kept box over it (one store queue: in order).
     * Operand index j lands at low + j (interior + 1); what falls outside is cropped. */
    region_flat(&rs[nr], 1, numel, last);
    rs[nr++].fill = true;
    region *r = &rs[nr];
    memset(r, 0, sizeof *r);
    r->rank = n->shape.rank;
    bool empty = false;
    for (int i = 0; i < r->rank; i++) {
      int64_t lo = n->attrs.low.v[i], step = n->attrs.interior.v[i] + 1, od = n->shape.dims[i], xd = xs->dims[i];
      int64_t j0 = lo >= 0 ? 0 : (-lo + step - 1) / step, j1 = od - 1 - lo >= 0 ? (od - 1 - lo) / step + 1 : 0;
      if (j1 > xd) j1 = xd;
      if (j1 <= j0) empty = true;
      r->d[i] = empty ? 0 : (uint64_t)(j1 - j0);
      r->ss[i] = xst[i], r->ds[i] = ost[i] * (uint64_t)step;
      if (!empty) r->src_base += (uint64_t)j0 * xst[i], r->dst_base += (uint64_t)(lo + j0 * step) * ost[i];
    }
    if (!empty) {
      region_canon(r);
      nr++;
    }
    break;
  }
  default: return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s: not a movement op", (int)id, ldmc_op_name(n->op));
  }
  /* one tile shape for all regions: from the widest region's [D2, C] */
  uint64_t R2 = 1, C2 = 1;
  for (int i = 0; i < nr; i++) {
    uint64_t c = rs[i].d[rs[i].rank - 1], r = rs[i].d[rs[i].rank - 2];
    if (c > C2) C2 = c;
    if (r > R2) R2 = r;
  }
  uint32_t tr, tc;
  tpk_ew_tiles(t, R2, C2, 2, &tr, &tc);
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %ux%u, %d region%s", tr, tc, nr, nr == 1 ? "" : "s");
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vin[TPK_NBUF], vout[TPK_NBUF];
  for (int s = 0; s < TPK_NBUF; s++) vin[s] = tpk_vmem_alloc(&e, 4ull * tr * tc), vout[s] = tpk_vmem_alloc(&e, 4ull * tr * tc);
  int64_t nsteps = copy_regions(NULL, rs, nr, nin, tr, tc, vin, vout, 0);
  copy_regions(&e, rs, nr, nin, tr, tc, vin, vout, nsteps);
  return e.st;
}

/* sin and cos: x - k 2 pi (k = round(x / 2 pi) by the 1.5 * 2^23 trick, 2 pi
 * in three parts, Cody-Waite), halved to h in [-pi/2, pi/2]; Taylor
 * polynomials of sin h (degree 11) and cos h (degree 12), both truncated
 * below 6e-8; sin x = 2 sin h cos h, cos x = 1 - 2 sin^2 h. The reduction is
 * exact for |x| < 2^16 * 2 pi (k C1 exact); beyond it errors grow with |x|. */
ldmc_status tpk_lower_sincos(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  bool is_sin = n->op == LDMC_OP_SIN;
  uint32_t numel;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  k->node = id;
  k->n_bufs = 2;
  k->buf_node[0] = n->operands[0];
  k->buf_node[1] = id;
  if (numel == 0) return LDMC_OK;
  uint64_t C = n->shape.rank ? (uint64_t)n->shape.dims[n->shape.rank - 1] : 1, R = numel / C;
  enum { X, OUT, KZ, T, RH, Q, NARR };
  uint32_t tr, tc;
  tpk_ew_tiles(t, R, C, NARR, &tr, &tc);
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %ux%u (polynomial)", tr, tc);
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t v[TPK_NBUF][NARR];
  for (int s = 0; s < TPK_NBUF; s++)
    for (int a = 0; a < NARR; a++) v[s][a] = tpk_vmem_alloc(&e, 4ull * tr * tc);
  const double two_pi = 6.283185307179586476925286766559;
  const float magic = 12582912.0f, c1 = 6.28125f, c2 = (float)(two_pi - 6.28125), c3 = (float)(two_pi - 6.28125 - (double)c2);
  static const float sin_c[] = {-1.0f / 39916800, 1.0f / 362880, -1.0f / 5040, 1.0f / 120, -1.0f / 6, 1.0f};
  static const float cos_c[] = {1.0f / 479001600, -1.0f / 3628800, 1.0f / 40320, -1.0f / 720, 1.0f / 24, -0.5f, 1.0f};
  int64_t nrt = (int64_t)((R + tr - 1) / tr), nct = (int64_t)((C + tc - 1) / tc), nsteps = nrt * nct, step = 0;
  for (int64_t ri = 0; ri < nrt && e.st == LDMC_OK; ri++)
    for (int64_t ci = 0; ci < nct && e.st == LDMC_OK; ci++, step++) {
      const uint32_t *b = v[step % TPK_NBUF];
      uint32_t r0 = (uint32_t)ri * tr, c0 = (uint32_t)ci * tc;
      uint32_t rows = tpk_min32(tr, R - r0), cols = tpk_min32(tc, C - c0), off = r0 * (uint32_t)C + c0;
      size_t begin = k->prog.count;
      tpk_dma_load(&e, 0, off, (uint32_t)C, rows, cols, b[X], tc, LDMC_TPU_F32);
#define SC(f, dst, a, imm) tpk_vec(&e, LDMC_TPU_VEC_BINARY, f, LDMC_TPU_BC_SCALAR, rows, cols, b[dst], tc, b[a], tc, 0, 0, imm)
#define FU(f, dst, a, bb) tpk_vec(&e, LDMC_TPU_VEC_BINARY, f, LDMC_TPU_BC_FULL, rows, cols, b[dst], tc, b[a], tc, b[bb], tc, 0.0f)
      SC(LDMC_TPU_B_MUL, KZ, X, (float)(1.0 / two_pi));
      SC(LDMC_TPU_B_ADD, KZ, KZ, magic);
      SC(LDMC_TPU_B_SUB, KZ, KZ, magic); /* k = round(x / 2 pi) */
      SC(LDMC_TPU_B_MUL, T, KZ, c1);
      FU(LDMC_TPU_B_SUB, RH, X, T);
      SC(LDMC_TPU_B_MUL, T, KZ, c2);
      FU(LDMC_TPU_B_SUB, RH, RH, T);
      SC(LDMC_TPU_B_MUL, T, KZ, c3);
      FU(LDMC_TPU_B_SUB, RH, RH, T);
      SC(LDMC_TPU_B_MUL, RH, RH, 0.5f); /* h */
      FU(LDMC_TPU_B_MUL, KZ, RH, RH);   /* z = h^2 */
      SC(LDMC_TPU_B_MUL, T, KZ, sin_c[0]);
      for (int i = 1; i < 6; i++) {
        SC(LDMC_TPU_B_ADD, T, T, sin_c[i]);
        if (i < 5) FU(LDMC_TPU_B_MUL, T, T, KZ);
      }
      FU(LDMC_TPU_B_MUL, T, T, RH); /* sin h */
      if (is_sin) {
        SC(LDMC_TPU_B_MUL, Q, KZ, cos_c[0]);
        for (int i = 1; i < 7; i++) {
          SC(LDMC_TPU_B_ADD, Q, Q, cos_c[i]);
          if (i < 6) FU(LDMC_TPU_B_MUL, Q, Q, KZ);
        }
        FU(LDMC_TPU_B_MUL, OUT, T, Q);
        SC(LDMC_TPU_B_MUL, OUT, OUT, 2.0f);
      } else {
        FU(LDMC_TPU_B_MUL, OUT, T, T);
        SC(LDMC_TPU_B_MUL, OUT, OUT, -2.0f);
        SC(LDMC_TPU_B_ADD, OUT, OUT, 1.0f);
      }
#undef SC
#undef FU
      tpk_dma_store(&e, 1, off, (uint32_t)C, rows, cols, b[OUT], tc);
      tpk_step_tokens(&e, begin, step, nsteps, step, true, true, nsteps);
    }
  return e.st;
}
