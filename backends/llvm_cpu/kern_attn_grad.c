/* Attention's backward, flash style, with the rows a tile owns in vector
 * lanes (lc_attn_grad_desc). A tile is R = nl * W rows of one batch:
 *   dq      (LC_AG_Q):  lanes = queries i, streamed rows = keys j
 *   dk | dv (LC_AG_KV): lanes = keys j,    streamed rows = queries i
 * The lane side x (q; k) and y (ct; v) are transposed once into scratch as
 * XT[d][R] (times scale * log2 e, so that scores are in base 2) and YT[e][R];
 * the streamed side x' (k; q) and y' (v; ct) is read as broadcasts. Per block
 * of bs streamed rows, lane-wise (no horizontal operations):
 *   S[j]  = sum_d x'[j][d] XT[d]            P[j] = 2^(S[j] - lse log2 e)
 *   dP[j] = sum_e y'[j][e] YT[e]            dS[j] = P[j] (dP[j] - delta)
 *   AD[d] += sum_j dS[j] x'[j][d]           (kv: AE[e] += sum_j P[j] y'[j][e])
 * with lse and delta the lanes' (dq) or the streamed row's (dk | dv). At the
 * end dq = scale AD, dk = scale AD, dv = AE are transposed back into rows.
 * P and dS live in registers only (bs x nl of each); no tile writes another
 * tile's rows, so threads need no atomics. Shapes and strides are constants
 * of the kernel; the last partial block is its own straight-line code. */
#include <math.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

typedef struct gctx {
  lc_cg *cg;
  const lc_attn_grad_desc *d;
  bool kv;
  int W, nl, R;             /* lane vectors per tile, R = nl W lane rows */
  int64_t rows, D, E;       /* lane-side rows (N; M for kv) */
  LLVMTypeRef vf;
  LLVMValueRef XT, YT, AD, AE;    /* scratch [Dp][R], [Ep][R], [Dp][R], [Ep][R] (f32) */
  LLVMValueRef xs, ys;            /* streamed x', y' of this batch (f32) */
  const int64_t *xst, *yst;       /* their b1, b2, row, column strides */
  LLVMValueRef lb, db;            /* lse, delta of this batch */
  LLVMValueRef L2[4], dl[4];      /* dq: the lanes' lse log2 e and delta */
} gctx;

static LLVMValueRef add(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef mul(lc_cg *cg, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, lc_i64(cg, b), ""); }
static LLVMValueRef fptr(lc_cg *cg, LLVMValueRef base, LLVMValueRef idx) { return lc_gep(cg, cg->f32, base, idx); }
static LLVMValueRef fptrc(lc_cg *cg, LLVMValueRef base, int64_t idx) { return fptr(cg, base, lc_i64(cg, idx)); }
static LLVMValueRef sload(lc_cg *cg, LLVMValueRef p, LLVMValueRef idx) {
  return lc_load(cg, cg->f32, fptr(cg, p, idx), 4);
}
static LLVMValueRef bcast(gctx *g, LLVMValueRef p, int64_t idx) {
  return lc_splat(g->cg, lc_load(g->cg, g->cg->f32, fptrc(g->cg, p, idx), 4), g->W);
}

/* ---- the lane side in and out ---- */
typedef struct lane_arg {
  gctx *g;
  LLVMValueRef T;         /* scratch rows [len][R] */
  int buf;                /* source (load) buffer */
  const int64_t *st;      /* its strides */
  LLVMValueRef base, r0;  /* element offset of the batch; first lane row */
  int li;                 /* lane vector */
  double c;               /* load: factor; store: factor */
  int64_t coff;           /* store: first output column */
} lane_arg;

/* T[c0 + r][li W + i] = c * src[r0 + li W + i][c0 + r] (rows past the end repeat the last one) */
static void load_block(void *arg, LLVMValueRef c0, int n) {
  const lane_arg *la = arg;
  gctx *g = la->g;
  lc_cg *cg = g->cg;
  int W = g->W;
  LLVMValueRef R[64], col = add(cg, la->base, mul(cg, c0, la->st[3]));
  for (int r = 0; r < W; r++) {
    LLVMValueRef row = lc_smin64(cg, add(cg, la->r0, lc_i64(cg, la->li * W + r)), lc_i64(cg, g->rows - 1));
    R[r] = ldmc_lc_attn_load_row(cg, (ldmc_dtype)g->d->dt, cg->buf[la->buf], add(cg, col, mul(cg, row, la->st[2])),
                                 la->st[3], n);
    if (la->c != 1.0) R[r] = LLVMBuildFMul(B, R[r], lc_fconst(cg, la->c, W), "");
  }
  ldmc_lc_attn_transpose(cg, R, W);
  LLVMValueRef t = fptr(cg, la->T, mul(cg, c0, g->R));
  for (int r = 0; r < n; r++) lc_store(cg, R[r], fptrc(cg, t, (int64_t)r * g->R + la->li * W), 4);
}

/* out[r0 + li W + r][coff + c0 + e] = c * T[c0 + e][li W + r] for the rows that exist */
static void store_block(void *arg, LLVMValueRef c0, int n) {
  const lane_arg *la = arg;
  gctx *g = la->g;
  lc_cg *cg = g->cg;
  const lc_attn_grad_desc *d = g->d;
  int W = g->W;
  LLVMValueRef R[64], t = fptr(cg, la->T, mul(cg, c0, g->R));
  for (int e = 0; e < W; e++) { /* scratch rows past the length exist (zero) and are not stored */
    R[e] = lc_load(cg, g->vf, fptrc(cg, t, (int64_t)e * g->R + la->li * W), 4);
    if (la->c != 1.0) R[e] = LLVMBuildFMul(B, R[e], lc_fconst(cg, la->c, W), "");
  }
  ldmc_lc_attn_transpose(cg, R, W);
  LLVMValueRef emask = n < W ? lc_mask_lt(cg, lc_i64(cg, n), W, 0) : NULL;
  for (int r = 0; r < W; r++) {
    LLVMValueRef row = add(cg, la->r0, lc_i64(cg, la->li * W + r)), mask = emask;
    if (g->rows % g->R) {
      LLVMValueRef ok = lc_splat(cg, LLVMBuildICmp(B, LLVMIntSLT, row, lc_i64(cg, g->rows), ""), W);
      mask = mask ? LLVMBuildAnd(B, mask, ok, "") : ok;
    }
    LLVMValueRef idx = add(cg, la->base, add(cg, mul(cg, row, d->os[2]), add(cg, c0, lc_i64(cg, la->coff))));
    lc_store_comp(cg, LDMC_F32, R[r], cg->buf[0], idx, mask);
  }
}

/* W lanes of a per-row statistic (row stride rs), rows past the end repeating the last */
static LLVMValueRef lane_stat(gctx *g, LLVMValueRef p, int64_t rs, LLVMValueRef r0) {
  lc_cg *cg = g->cg;
  LLVMValueRef v = LLVMConstNull(g->vf);
  for (int i = 0; i < g->W; i++) {
    LLVMValueRef row = lc_smin64(cg, add(cg, r0, lc_i64(cg, i)), lc_i64(cg, g->rows - 1));
    v = LLVMBuildInsertElement(B, v, sload(cg, p, mul(cg, row, rs)), lc_i32(cg, i), "");
  }
  return v;
}

/* ---- the streamed side ---- */
/* out[j nl + li] += sum over column dd of sp[j][dd] T[dd][li] */
static void dot_step(gctx *g, LLVMValueRef T, LLVMValueRef sp, const int64_t *st, LLVMValueRef dd, int n,
                     LLVMValueRef *out) {
  lc_cg *cg = g->cg;
  LLVMValueRef tv[4], trow = fptr(cg, T, mul(cg, dd, g->R)), srow = fptr(cg, sp, mul(cg, dd, st[3]));
  for (int li = 0; li < g->nl; li++) tv[li] = lc_load(cg, g->vf, fptrc(cg, trow, (int64_t)li * g->W), 4);
  for (int j = 0; j < n; j++) {
    LLVMValueRef s = bcast(g, srow, (int64_t)j * st[2]);
    for (int li = 0; li < g->nl; li++) out[j * g->nl + li] = lc_fma(cg, s, tv[li], out[j * g->nl + li]);
  }
}

/* out[j nl + li] = sum_c sp[j][c] T[c][li] over len columns: a loop over
 * chunks of 8 (unrolled inside) beyond 32 */
static void dots(gctx *g, LLVMValueRef T, int64_t len, LLVMValueRef sp, const int64_t *st, int n, LLVMValueRef *out) {
  lc_cg *cg = g->cg;
  int ns = n * g->nl;
  int64_t du = 8, c0 = 0;
  for (int i = 0; i < ns; i++) out[i] = LLVMConstNull(g->vf);
  if (len > 32) {
    lc_loop l;
    LLVMValueRef dd = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, len / du * du), lc_i64(cg, du), ns, out);
    LLVMValueRef acc[LC_MAX_CARRY];
    for (int i = 0; i < ns; i++) acc[i] = l.phi[i];
    for (int64_t k = 0; k < du; k++) dot_step(g, T, sp, st, add(cg, dd, lc_i64(cg, k)), n, acc);
    lc_for_end(cg, &l, acc);
    for (int i = 0; i < ns; i++) out[i] = l.phi[i];
    c0 = len / du * du;
  }
  for (int64_t k = c0; k < len; k++) dot_step(g, T, sp, st, lc_i64(cg, k), n, out);
}

/* A[e0 + e][li] += sum_j V[j nl + li] sp[j][e0 + e], e < cnt */
static void acc_group(gctx *g, LLVMValueRef A, LLVMValueRef sp, const int64_t *st, LLVMValueRef e0, int cnt, int n,
                      const LLVMValueRef *V) {
  lc_cg *cg = g->cg;
  int nl = g->nl;
  LLVMValueRef acc[64], arow = fptr(cg, A, mul(cg, e0, g->R)), srow = fptr(cg, sp, mul(cg, e0, st[3]));
  for (int e = 0; e < cnt; e++)
    for (int li = 0; li < nl; li++)
      acc[e * nl + li] = lc_load(cg, g->vf, fptrc(cg, arow, (int64_t)e * g->R + li * g->W), 4);
  for (int j = 0; j < n; j++)
    for (int e = 0; e < cnt; e++) {
      LLVMValueRef s = bcast(g, srow, (int64_t)j * st[2] + (int64_t)e * st[3]);
      for (int li = 0; li < nl; li++) acc[e * nl + li] = lc_fma(cg, V[j * nl + li], s, acc[e * nl + li]);
    }
  for (int e = 0; e < cnt; e++)
    for (int li = 0; li < nl; li++) lc_store(cg, acc[e * nl + li], fptrc(cg, arow, (int64_t)e * g->R + li * g->W), 4);
}

static void accumulate(gctx *g, LLVMValueRef A, int64_t len, LLVMValueRef sp, const int64_t *st, int n,
                       const LLVMValueRef *V) {
  lc_cg *cg = g->cg;
  int64_t ec = g->d->ec, full = len / ec;
  if (full >= 2) {
    lc_loop l;
    LLVMValueRef e0 = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full * ec), lc_i64(cg, ec), 0, NULL);
    acc_group(g, A, sp, st, e0, (int)ec, n, V);
    lc_for_end(cg, &l, NULL);
  } else if (full == 1) {
    acc_group(g, A, sp, st, lc_i64(cg, 0), (int)ec, n, V);
  }
  if (len % ec) acc_group(g, A, sp, st, lc_i64(cg, full * ec), (int)(len % ec), n, V);
}

/* streamed rows [s0, s0 + n) */
static void stream_block(gctx *g, LLVMValueRef s0, int n) {
  lc_cg *cg = g->cg;
  const lc_attn_grad_desc *d = g->d;
  int nl = g->nl;
  LLVMValueRef P[LC_MAX_CARRY], dS[LC_MAX_CARRY];
  LLVMValueRef xp = fptr(cg, g->xs, mul(cg, s0, g->xst[2])), yp = fptr(cg, g->ys, mul(cg, s0, g->yst[2]));
  dots(g, g->XT, g->D, xp, g->xst, n, P); /* base-2 scores */
  for (int j = 0; j < n; j++) {
    LLVMValueRef L2 = NULL;
    if (g->kv) {
      LLVMValueRef row = add(cg, s0, lc_i64(cg, j));
      L2 = lc_splat(cg, LLVMBuildFMul(B, sload(cg, g->lb, mul(cg, row, d->ls[2])), lc_f32(cg, M_LOG2E), ""), g->W);
    }
    for (int li = 0; li < nl; li++)
      P[j * nl + li] = ldmc_lc_attn_exp2(cg, LLVMBuildFSub(B, P[j * nl + li], g->kv ? L2 : g->L2[li], ""), false, true);
  }
  dots(g, g->YT, g->E, yp, g->yst, n, dS); /* dP */
  for (int j = 0; j < n; j++) {
    LLVMValueRef dl = NULL;
    if (g->kv) dl = lc_splat(cg, sload(cg, g->db, mul(cg, add(cg, s0, lc_i64(cg, j)), d->ds[2])), g->W);
    for (int li = 0; li < nl; li++) {
      LLVMValueRef dp = LLVMBuildFSub(B, dS[j * nl + li], g->kv ? dl : g->dl[li], "");
      dS[j * nl + li] = LLVMBuildFMul(B, P[j * nl + li], dp, "");
    }
  }
  accumulate(g, g->AD, g->D, xp, g->xst, n, dS);
  if (g->kv) accumulate(g, g->AE, g->E, yp, g->yst, n, P);
}

static LLVMValueRef batch_off(lc_cg *cg, LLVMValueRef b1, LLVMValueRef b2, const int64_t *st) {
  return add(cg, mul(cg, b1, st[0]), mul(cg, b2, st[1]));
}

static void zero(gctx *g, LLVMValueRef p, int64_t n) {
  lc_cg *cg = g->cg;
  if (n <= 0) return;
  lc_loop lz;
  LLVMValueRef i = lc_for(cg, &lz, lc_i64(cg, 0), lc_i64(cg, n), lc_i64(cg, g->W), 0, NULL);
  lc_store(cg, LLVMConstNull(g->vf), fptr(cg, p, i), 4);
  lc_for_end(cg, &lz, NULL);
}

void ldmc_lc_emit_attn_grad(lc_cg *cg, const lc_attn_grad_desc *d) {
  gctx g = {.cg = cg, .d = d, .kv = d->sub == LC_AG_KV, .W = cg->W, .nl = d->nl, .D = d->D, .E = d->E};
  g.R = g.nl * g.W;
  g.vf = lc_vt(cg, cg->f32, g.W);
  g.rows = g.kv ? d->M : d->N;
  int64_t srows = g.kv ? d->N : d->M, ntile = (g.rows + g.R - 1) / g.R;
  int64_t Dp = (d->D + g.W - 1) / g.W * g.W, Ep = (d->E + g.W - 1) / g.W * g.W;
  g.XT = cg->scratch;
  g.YT = fptrc(cg, g.XT, Dp * g.R);
  g.AD = fptrc(cg, g.YT, Ep * g.R);
  g.AE = fptrc(cg, g.AD, Dp * g.R);
  /* lane side x, y and streamed x', y': buffers and strides */
  int xb = g.kv ? 2 : 1, yb = g.kv ? 3 : 4, sxb = g.kv ? 1 : 2, syb = g.kv ? 4 : 3;
  const int64_t *xst = g.kv ? d->ks : d->qs, *yst = g.kv ? d->vs : d->cs;
  g.xst = g.kv ? d->qs : d->ks;
  g.yst = g.kv ? d->cs : d->vs;
  lc_loop lt;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef b = LLVMBuildUDiv(B, t, lc_i64(cg, ntile), "");
  LLVMValueRef r0 = mul(cg, LLVMBuildURem(B, t, lc_i64(cg, ntile), ""), g.R);
  LLVMValueRef b1 = LLVMBuildUDiv(B, b, lc_i64(cg, d->nb2), ""), b2 = LLVMBuildURem(B, b, lc_i64(cg, d->nb2), "");
  g.xs = fptr(cg, cg->buf[sxb], batch_off(cg, b1, b2, g.xst));
  g.ys = fptr(cg, cg->buf[syb], batch_off(cg, b1, b2, g.yst));
  g.lb = fptr(cg, cg->buf[5], batch_off(cg, b1, b2, d->ls));
  g.db = fptr(cg, cg->buf[6], batch_off(cg, b1, b2, d->ds));
  for (int li = 0; li < g.nl; li++) {
    lane_arg lx = {.g = &g, .T = g.XT, .buf = xb, .st = xst, .base = batch_off(cg, b1, b2, xst), .r0 = r0, .li = li,
                   .c = d->scale * M_LOG2E};
    ldmc_lc_attn_col_blocks(cg, d->D, load_block, &lx);
    lane_arg ly = {.g = &g, .T = g.YT, .buf = yb, .st = yst, .base = batch_off(cg, b1, b2, yst), .r0 = r0, .li = li,
                   .c = 1.0};
    ldmc_lc_attn_col_blocks(cg, d->E, load_block, &ly);
    if (!g.kv) {
      LLVMValueRef rl = add(cg, r0, lc_i64(cg, (int64_t)li * g.W));
      g.L2[li] = LLVMBuildFMul(B, lane_stat(&g, g.lb, d->ls[2], rl), lc_fconst(cg, M_LOG2E, g.W), "");
      g.dl[li] = lane_stat(&g, g.db, d->ds[2], rl);
    }
  }
  zero(&g, g.AD, Dp * g.R);
  if (g.kv) zero(&g, g.AE, Ep * g.R);
  int64_t nfull = srows / d->bs;
  if (nfull > 0) {
    lc_loop ls;
    LLVMValueRef s0 = lc_for(cg, &ls, lc_i64(cg, 0), lc_i64(cg, nfull * d->bs), lc_i64(cg, d->bs), 0, NULL);
    stream_block(&g, s0, d->bs);
    lc_for_end(cg, &ls, NULL);
  }
  if (srows % d->bs) stream_block(&g, lc_i64(cg, nfull * d->bs), (int)(srows % d->bs));
  LLVMValueRef ob = batch_off(cg, b1, b2, d->os);
  for (int li = 0; li < g.nl; li++) {
    lane_arg sd = {.g = &g, .T = g.AD, .base = ob, .r0 = r0, .li = li, .c = d->scale, .coff = 0};
    ldmc_lc_attn_col_blocks(cg, d->D, store_block, &sd);
    if (!g.kv) continue;
    lane_arg se = {.g = &g, .T = g.AE, .base = ob, .r0 = r0, .li = li, .c = 1.0, .coff = d->D};
    ldmc_lc_attn_col_blocks(cg, d->E, store_block, &se);
  }
  lc_for_end(cg, &lt, NULL);
}
