/* group_norm and layer_norm as one kernel on the vector unit, instead of
 * the decomposition's 4-5 kernels (mean, x - mean, its square, variance,
 * normalize and affine), each a pass over the activation off chip.
 *
 * The operand is viewed as Rg statistics groups of gr rows x L columns,
 * contiguous: group norm [N, C, S...] is N G groups of C/G channel rows of
 * S pixels (gamma and beta one value per row: the channel), layer norm
 * [R..., K...] is R groups of one row of K (gamma and beta one value per
 * column). Two forms, chosen from the scratchpad:
 *
 * - resident: tiles of tg whole groups (tg gr rows x L, within one sample
 *   for group norm, so gamma is one contiguous run), double-buffered. Per
 *   tile: row sums (sum.rows), the group sums over each group's gr row sums,
 *   mean = sum / n, x - mean, its square, the same two reductions, rstd =
 *   rsqrt(var + eps), (x - mean) rstd, gamma and beta: the decomposition's
 *   arithmetic (centred variance) on chip. One read and one write of x.
 * - streaming (a group larger than the scratchpad): per group, pass 1 over
 *   its tiles accumulates the sum and the sum of squares (sum.rows, then
 *   sum.cols ... accumulate into one value), var = E[x^2] - mean^2 (clamped
 *   at 0); pass 2 reloads each tile and normalizes it. Two reads, one write.
 *
 * Either way only the result is stored: with a chain (the SiLU after it,
 * tpk_chain over the view [1, 1, Rg gr, L]) the chain runs on the
 * normalized tile (lower_epi.c) and its root is stored. A gamma or beta that
 * is a constant of one repeated value is an immediate (1 and 0: no op). */
#include <inttypes.h>
#include <stdio.h>

#include "backends/tpusim/lower.h"

typedef struct norm_form {
  uint64_t Rg, gr, L, blk; /* groups, rows per group, row length, groups sharing one gamma run */
  bool per_row;            /* gamma / beta one value per row (group norm), else per column */
} norm_form;

typedef struct norm_aff {
  int buf;   /* -1: an immediate (or nothing to do) */
  bool skip; /* the identity (gamma 1, beta 0) */
  float v;
  uint32_t slot[TPK_NBUF];
} norm_aff;

static bool norm_form_of(const ldmc_graph *g, const ldmc_node *n, norm_form *f) {
  const ldmc_shape *s = &g->nodes[n->operands[0]].shape;
  if (n->op == LDMC_OP_GROUP_NORM) {
    int64_t G = n->attrs.groups;
    if (s->rank < 2 || G < 1 || s->dims[1] % G != 0) return false;
    uint64_t S = 1;
    for (int i = 2; i < s->rank; i++) S *= (uint64_t)s->dims[i];
    *f = (norm_form){.Rg = (uint64_t)s->dims[0] * (uint64_t)G, .gr = (uint64_t)(s->dims[1] / G), .L = S,
                     .blk = (uint64_t)G, .per_row = true};
    return true;
  }
  if (n->op != LDMC_OP_LAYER_NORM || n->attrs.axis < 0 || n->attrs.axis > s->rank) return false;
  uint64_t R = 1, K = 1;
  for (int i = 0; i < s->rank; i++) *(i < n->attrs.axis ? &R : &K) *= (uint64_t)s->dims[i];
  *f = (norm_form){.Rg = R, .gr = 1, .L = K, .blk = R ? R : 1, .per_row = false};
  return true;
}

const char *tpk_norm_why_not(const ldmc_graph *g, const ldmc_node *n) {
  norm_form f;
  if (!g || n->n_operands != 3) return "not a norm of three operands";
  if (n->dtype != LDMC_F32) return "only f32 norms are one kernel (v0)";
  for (int j = 0; j < 3; j++)
    if (g->nodes[n->operands[j]].dtype != LDMC_F32) return "only f32 operands (v0)";
  if (!norm_form_of(g, n, &f)) return "a form not lowered";
  if (f.Rg * f.gr * f.L > UINT32_MAX) return "more elements than 32-bit off-chip offsets address";
  return NULL;
}

static void reduce_rows(tpk_em *e, bool cols_axis, bool acc, uint32_t rows, uint32_t cols, uint32_t dst,
                        uint32_t dst_stride, uint32_t a, uint32_t a_stride) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_VEC_REDUCE, 0);
  in.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_R_SUM, .axis = cols_axis ? LDMC_TPU_AX_COLS : LDMC_TPU_AX_ROWS,
                            .accumulate = acc, .rows = (uint16_t)rows, .cols = (uint16_t)cols, .dst = dst, .a = a,
                            .dst_stride = (uint16_t)dst_stride, .a_stride = (uint16_t)a_stride,
                            .dst_dtype = LDMC_TPU_F32, .a_dtype = LDMC_TPU_F32};
  tpk_push(e, &in);
}

static void vbin(tpk_em *e, unsigned func, unsigned bc, uint32_t rows, uint32_t cols, uint32_t dst, uint32_t stride,
                 uint32_t b, uint32_t b_stride, float imm) {
  tpk_vec(e, LDMC_TPU_VEC_BINARY, func, bc, rows, cols, dst, stride, dst, stride, b, b_stride, imm);
}

/* gamma and beta on tile o (rows x cols, row stride ts): per row or per column from slot s, or immediates. */
static void affine(tpk_em *e, const norm_aff *a, bool per_row, int s, uint32_t rows, uint32_t cols, uint32_t o,
                   uint32_t ts) {
  static const unsigned funcs[2] = {LDMC_TPU_B_MUL, LDMC_TPU_B_ADD};
  for (int i = 0; i < 2; i++) {
    if (a[i].skip) continue;
    if (a[i].buf < 0) vbin(e, funcs[i], LDMC_TPU_BC_SCALAR, rows, cols, o, ts, 0, 0, a[i].v);
    else if (per_row) vbin(e, funcs[i], LDMC_TPU_BC_ROW, rows, cols, o, ts, a[i].slot[s], 1, 0.0f);
    else vbin(e, funcs[i], LDMC_TPU_BC_COL, rows, cols, o, ts, a[i].slot[s], 0, 0.0f);
  }
}

static void affine_alloc(tpk_em *e, norm_aff *a, uint64_t n) {
  for (int i = 0; i < 2; i++)
    for (int s = 0; s < TPK_NBUF && a[i].buf >= 0; s++) a[i].slot[s] = tpk_vmem_alloc(e, 4 * n);
}

static void affine_load(tpk_em *e, const norm_aff *a, int s, uint32_t off, uint32_t n) {
  for (int i = 0; i < 2; i++)
    if (a[i].buf >= 0) tpk_dma_load(e, a[i].buf, off, n, 1, n, a[i].slot[s], n, LDMC_TPU_F32);
}

/* Scratchpad bytes of the resident form at tg groups per tile. */
static uint64_t resident_vmem(const norm_form *f, uint64_t tg, int naff, const tpk_epi *ep, bool ch) {
  uint64_t ms = tg * f->gr, tile = 4 * ms * f->L, av = 4 * (f->per_row ? ms : f->L);
  return TPK_NBUF * (2 * tile + (uint64_t)naff * av) + tile + 4 * (3 * ms + 2 * tg) + 64 * (10 + 2 * (uint64_t)naff) +
         (ch ? tpk_epi_vmem(ep, ms, f->L) : 0);
}

static uint64_t stream_vmem(const norm_form *f, uint64_t tr, uint64_t tc, int naff, const tpk_epi *ep, bool ch) {
  uint64_t tile = 4 * tr * tc, av = 4 * (f->per_row ? tr : tc);
  return TPK_NBUF * (2 * tile + (uint64_t)naff * av) + tile + 4 * (tr + 3) + 64 * (9 + 2 * (uint64_t)naff) +
         (ch ? tpk_epi_vmem(ep, tr, tc) : 0);
}

static ldmc_status emit_resident(const norm_form *f, uint64_t tg, float cnt, float eps, const norm_aff *aff,
                                 tpk_epi *ep, bool ch, int out_buf, tpk_em *e, tpk_kernel *k) {
  uint64_t gr = f->gr, L = f->L, tms = tg * gr;
  uint32_t X[TPK_NBUF], O[TPK_NBUF];
  for (int s = 0; s < TPK_NBUF; s++) X[s] = tpk_vmem_alloc(e, 4 * tms * L), O[s] = tpk_vmem_alloc(e, 4 * tms * L);
  uint32_t Q = tpk_vmem_alloc(e, 4 * tms * L), rs = tpk_vmem_alloc(e, 4 * tms), erow = tpk_vmem_alloc(e, 4 * tms),
           rrow = tpk_vmem_alloc(e, 4 * tms), gs = tpk_vmem_alloc(e, 4 * tg), gq = tpk_vmem_alloc(e, 4 * tg);
  if (ch) tpk_epi_alloc(ep, e, (uint32_t)tms, (uint32_t)L);
  int64_t nt = (int64_t)((f->blk + tg - 1) / tg), ntiles = (int64_t)(f->Rg / f->blk) * nt, tile = 0;
  uint32_t l = (uint32_t)L;
  for (uint64_t b = 0; b < f->Rg / f->blk && e->st == LDMC_OK; b++)
    for (int64_t ti = 0; ti < nt && e->st == LDMC_OK; ti++, tile++) {
      uint64_t t0 = (uint64_t)ti * tg, r0 = b * f->blk + t0, m0 = r0 * gr;
      uint32_t ng = tpk_min32(tg, f->blk - t0), ms = ng * (uint32_t)gr;
      int s = (int)(tile % TPK_NBUF);
      size_t begin = k->prog.count;
      tpk_dma_load(e, 0, (uint32_t)(m0 * L), l, ms, l, X[s], l, LDMC_TPU_F32);
      if (f->per_row) affine_load(e, aff, s, (uint32_t)(t0 * gr), ms);
      else affine_load(e, aff, s, 0, l);
      if (ch) tpk_epi_load(ep, e, s, 0, 0, m0, 0, ms, l);
      /* mean per group, spread to its rows */
      reduce_rows(e, false, false, ms, l, gr > 1 ? rs : gs, 1, X[s], l);
      if (gr > 1) reduce_rows(e, false, false, ng, (uint32_t)gr, gs, 1, rs, (uint32_t)gr);
      vbin(e, LDMC_TPU_B_DIV, LDMC_TPU_BC_SCALAR, 1, ng, gs, ng, 0, 0, cnt);
      uint32_t mrow = gs, r_row = gq;
      if (gr > 1) {
        tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_FILL, 0, ng, (uint32_t)gr, erow, (uint32_t)gr, erow, (uint32_t)gr, 0, 0,
                1.0f);
        vbin(e, LDMC_TPU_B_MUL, LDMC_TPU_BC_ROW, ng, (uint32_t)gr, erow, (uint32_t)gr, gs, 1, 0.0f);
        mrow = erow;
      }
      vbin(e, LDMC_TPU_B_SUB, LDMC_TPU_BC_ROW, ms, l, X[s], l, mrow, 1, 0.0f); /* d = x - mean, in place */
      tpk_vec(e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_FULL, ms, l, Q, l, X[s], l, X[s], l, 0.0f);
      reduce_rows(e, false, false, ms, l, gr > 1 ? rs : gq, 1, Q, l);
      if (gr > 1) reduce_rows(e, false, false, ng, (uint32_t)gr, gq, 1, rs, (uint32_t)gr);
      vbin(e, LDMC_TPU_B_DIV, LDMC_TPU_BC_SCALAR, 1, ng, gq, ng, 0, 0, cnt);
      vbin(e, LDMC_TPU_B_ADD, LDMC_TPU_BC_SCALAR, 1, ng, gq, ng, 0, 0, eps);
      tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_RSQRT, 0, 1, ng, gq, ng, gq, ng, 0, 0, 0.0f);
      if (gr > 1) {
        tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_FILL, 0, ng, (uint32_t)gr, rrow, (uint32_t)gr, rrow, (uint32_t)gr, 0, 0,
                1.0f);
        vbin(e, LDMC_TPU_B_MUL, LDMC_TPU_BC_ROW, ng, (uint32_t)gr, rrow, (uint32_t)gr, gq, 1, 0.0f);
        r_row = rrow;
      }
      tpk_vec(e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_ROW, ms, l, O[s], l, X[s], l, r_row, 1, 0.0f);
      affine(e, aff, f->per_row, s, ms, l, O[s], l);
      if (ch) tpk_epi_compute(ep, e, s, O[s], ms, l);
      tpk_dma_store(e, out_buf, (uint32_t)(m0 * L), l, ms, l, O[s], l);
      tpk_step_tokens(e, begin, tile, ntiles, tile, true, true, ntiles);
    }
  return e->st;
}

static ldmc_status emit_stream(const norm_form *f, uint64_t tr, uint64_t tc, float cnt, float eps, const norm_aff *aff,
                               tpk_epi *ep, bool ch, int out_buf, tpk_em *e, tpk_kernel *k) {
  uint64_t gr = f->gr, L = f->L;
  uint32_t X[TPK_NBUF], O[TPK_NBUF];
  for (int s = 0; s < TPK_NBUF; s++) X[s] = tpk_vmem_alloc(e, 4 * tr * tc), O[s] = tpk_vmem_alloc(e, 4 * tr * tc);
  uint32_t Q = tpk_vmem_alloc(e, 4 * tr * tc), rs = tpk_vmem_alloc(e, 4 * tr), gs = tpk_vmem_alloc(e, 4),
           gq = tpk_vmem_alloc(e, 4), m2 = tpk_vmem_alloc(e, 4), c = (uint32_t)tc;
  if (ch) tpk_epi_alloc(ep, e, (uint32_t)tr, c);
  int64_t nr = (int64_t)((gr + tr - 1) / tr), nc = (int64_t)((L + tc - 1) / tc), ntiles = (int64_t)f->Rg * nr * nc,
          nsteps = 2 * ntiles, step = 0, tile = 0;
  for (uint64_t r = 0; r < f->Rg && e->st == LDMC_OK; r++)
    for (int pass = 0; pass < 2; pass++)
      for (int64_t ai = 0; ai < nr && e->st == LDMC_OK; ai++)
        for (int64_t ci = 0; ci < nc && e->st == LDMC_OK; ci++, step++) {
          uint64_t a0 = (uint64_t)ai * tr, c0 = (uint64_t)ci * tc, m0 = r * gr + a0;
          uint32_t rows = tpk_min32(tr, gr - a0), cols = tpk_min32(tc, L - c0);
          bool first = ai == 0 && ci == 0;
          int s = (int)(step % TPK_NBUF);
          size_t begin = k->prog.count;
          tpk_dma_load(e, 0, (uint32_t)(m0 * L + c0), (uint32_t)L, rows, cols, X[s], c, LDMC_TPU_F32);
          if (pass == 0) { /* the group's sum and sum of squares, accumulated over its tiles */
            reduce_rows(e, false, false, rows, cols, rs, 1, X[s], c);
            reduce_rows(e, true, !first, rows, 1, gs, 1, rs, 1);
            tpk_vec(e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_FULL, rows, cols, Q, c, X[s], c, X[s], c, 0.0f);
            reduce_rows(e, false, false, rows, cols, rs, 1, Q, c);
            reduce_rows(e, true, !first, rows, 1, gq, 1, rs, 1);
            tpk_step_tokens(e, begin, step, nsteps, tile, false, false, ntiles);
            continue;
          }
          if (f->per_row) affine_load(e, aff, s, (uint32_t)((r % f->blk) * gr + a0), rows);
          else affine_load(e, aff, s, (uint32_t)c0, cols);
          if (ch) tpk_epi_load(ep, e, s, 0, 0, m0, c0, rows, cols);
          if (first) { /* mean, rstd = rsqrt(max(E[x^2] - mean^2, 0) + eps) */
            vbin(e, LDMC_TPU_B_DIV, LDMC_TPU_BC_SCALAR, 1, 1, gs, 1, 0, 0, cnt);
            vbin(e, LDMC_TPU_B_DIV, LDMC_TPU_BC_SCALAR, 1, 1, gq, 1, 0, 0, cnt);
            tpk_vec(e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_FULL, 1, 1, m2, 1, gs, 1, gs, 1, 0.0f);
            vbin(e, LDMC_TPU_B_SUB, LDMC_TPU_BC_FULL, 1, 1, gq, 1, m2, 1, 0.0f);
            vbin(e, LDMC_TPU_B_MAX, LDMC_TPU_BC_SCALAR, 1, 1, gq, 1, 0, 0, 0.0f);
            vbin(e, LDMC_TPU_B_ADD, LDMC_TPU_BC_SCALAR, 1, 1, gq, 1, 0, 0, eps);
            tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_RSQRT, 0, 1, 1, gq, 1, gq, 1, 0, 0, 0.0f);
          }
          vbin(e, LDMC_TPU_B_SUB, LDMC_TPU_BC_ROW, rows, cols, X[s], c, gs, 0, 0.0f);
          int o = (int)(tile % TPK_NBUF);
          tpk_vec(e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_ROW, rows, cols, O[o], c, X[s], c, gq, 0, 0.0f);
          affine(e, aff, f->per_row, s, rows, cols, O[o], c);
          if (ch) tpk_epi_compute(ep, e, s, O[o], rows, cols);
          tpk_dma_store(e, out_buf, (uint32_t)(m0 * L + c0), (uint32_t)L, rows, cols, O[o], c);
          tpk_step_tokens(e, begin, step, nsteps, tile, true, true, ntiles);
          tile++;
        }
  return e->st;
}

ldmc_status tpk_lower_norm_chain(const ldmc_graph *g, int32_t id, const tpk_chain *ch, const ldmc_tpu_target *t,
                                 tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  const char *why = tpk_norm_why_not(g, n);
  if (why) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s: %s", (int)id, ldmc_op_name(n->op), why);
  norm_form f;
  norm_form_of(g, n, &f);
  uint32_t numel;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  k->node = id;
  k->n_bufs = 1;
  k->buf_node[0] = n->operands[0];
  norm_aff aff[2];
  int naff = 0;
  for (int i = 0; i < 2; i++) {
    const ldmc_node *p = &g->nodes[n->operands[1 + i]];
    aff[i] = (norm_aff){.buf = -1};
    if (tpk_splat(p, &aff[i].v)) {
      aff[i].skip = aff[i].v == (i == 0 ? 1.0f : 0.0f);
      continue;
    }
    aff[i].buf = k->n_bufs;
    k->buf_node[k->n_bufs++] = n->operands[1 + i];
    naff++;
  }
  tpk_epi ep = {0};
  if (ch) {
    const uint64_t view[4] = {1, 1, f.Rg * f.gr, f.L};
    LDMC_TRY(tpk_epi_init(&ep, g, ch, view, k));
    k->node = ch->nodes[ch->n - 1];
    k->epilogue = true;
  }
  int out_buf = k->n_bufs;
  k->buf_node[k->n_bufs++] = k->node;
  if (numel == 0) return LDMC_OK;
  float cnt = (float)(f.gr * f.L), eps = (float)n->attrs.eps;
  /* resident: as many whole groups per tile as fit, at most a quarter of the tensor unless that is
   * less than the off-chip latency's worth of bytes */
  uint64_t W = f.gr * f.L, tg = 0;
  if (f.L <= TPK_MAX_DIM && f.gr <= TPK_MAX_DIM) {
    double lat_bytes = (double)ldmc_tpu_target_latency_cycles(t) * ldmc_tpu_target_bytes_per_cycle(t);
    uint64_t cap = (f.Rg + 3) / 4, lat = (uint64_t)(lat_bytes / (4.0 * (double)W)) + 1;
    tg = f.blk;
    if (cap < lat) cap = lat;
    if (tg > cap) tg = cap;
    if (tg > TPK_MAX_DIM / f.gr) tg = TPK_MAX_DIM / f.gr;
    while (tg > 0 && resident_vmem(&f, tg, naff, &ep, ch != NULL) > t->vmem_bytes) tg /= 2;
  }
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  int tl;
  if (tg > 0) {
    tl = snprintf(k->tile_desc, sizeof k->tile_desc, "norm %" PRIu64 " groups of %" PRIu64 "x%" PRIu64 " per tile", tg, f.gr,
                  f.L);
    affine_alloc(&e, aff, f.per_row ? tg * f.gr : f.L);
    LDMC_TRY(emit_resident(&f, tg, cnt, eps, aff, &ep, ch != NULL, out_buf, &e, k));
  } else {
    uint64_t tr = f.gr < TPK_MAX_DIM ? f.gr : TPK_MAX_DIM, tc = f.L < TPK_MAX_DIM ? f.L : TPK_MAX_DIM;
    while (stream_vmem(&f, tr, tc, naff, &ep, ch != NULL) > t->vmem_bytes) {
      if (tr == 1 && tc == 1)
        return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s: the scratchpad (%" PRIu64 " bytes) holds no tile",
                          (int)id, ldmc_op_name(n->op), t->vmem_bytes);
      if (tr >= tc) tr = (tr + 1) / 2;
      else tc = (tc + 1) / 2;
    }
    if (tc < f.L && tc >= (uint64_t)t->vec_lanes) tc -= tc % (uint64_t)t->vec_lanes; /* whole vregs per row */
    tl = snprintf(k->tile_desc, sizeof k->tile_desc, "norm streamed %" PRIu64 "x%" PRIu64 " (2 passes)", tr, tc);
    affine_alloc(&e, aff, f.per_row ? tr : tc);
    LDMC_TRY(emit_stream(&f, tr, tc, cnt, eps, aff, &ep, ch != NULL, out_buf, &e, k));
  }
  if (ch && tl > 0 && (size_t)tl < sizeof k->tile_desc)
    snprintf(k->tile_desc + tl, sizeof k->tile_desc - (size_t)tl, ", epilogue %d nodes", ch->n);
  return LDMC_OK;
}
