/* Flash attention with queries in vector lanes, all of it lane-wise. A tile
 * is Q = nq * W query rows of one batch. q is transposed once into scratch as
 * QT[d][Q] (W x W register transposes), pre-multiplied by scale * log2(e) so
 * that scores are in base 2. For each block of bc keys:
 *   S[j] = sum_d k[j][d] QT[d]          (bc * nq accumulators, k broadcast)
 *   m'   = max(m, max_j S[j]);  alpha = 2^(m - m');  P[j] = 2^(S[j] - m')
 *   l'   = l alpha + sum_j P[j]
 *   OT[e] = OT[e] (alpha) + sum_j P[j] v[j][e]   (v broadcast, ec columns at a time)
 * with the alpha rescale of OT skipped when no lane's max changed. P never
 * leaves registers; the softmax needs no horizontal operations; the output
 * OT[e][Q] / l is transposed back into rows (register transposes) at the end.
 * D, E, M and all strides are constants of the kernel, so score and P v loops
 * are unrolled with immediate offsets, and the last partial key block is its
 * own straight-line code (no masks). Only Q x bc scores exist at a time.
 * attention_lse (d->lse) is the same pass without v: it stores
 * L = (m + log2 l) ln 2 per query. The helpers below the first block are
 * shared with the backward kernels (kern_attn_grad.c). */
#include <math.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

typedef struct actx {
  lc_cg *cg;
  const lc_attn_desc *d;
  int W, nq, Q;
  LLVMTypeRef vf, vi;
  LLVMValueRef QT, OT; /* scratch */
  LLVMValueRef kbp, vbp; /* f32 k, v of this batch */
} actx;

static LLVMValueRef add(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef mul(lc_cg *cg, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, lc_i64(cg, b), ""); }
static LLVMValueRef fptr(lc_cg *cg, LLVMValueRef base, LLVMValueRef idx) { return lc_gep(cg, cg->f32, base, idx); }
static LLVMValueRef fptrc(lc_cg *cg, LLVMValueRef base, int64_t idx) { return fptr(cg, base, lc_i64(cg, idx)); }
/* a > b ? a : b (one vmaxps; the scores are never NaN unless the inputs are) */
static LLVMValueRef vmax(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, b, ""), a, b, "");
}
static LLVMValueRef bcast(actx *a, LLVMValueRef p, int64_t idx) {
  return lc_splat(a->cg, lc_load(a->cg, a->cg->f32, fptrc(a->cg, p, idx), 4), a->W);
}

/* 2^y for y <= 0: n = round(y), 2^f on [-0.5, 0.5] by a degree-5 fit with
 * constant term exactly 1 (max rel. error 1.9e-7 in f32; 2^0 is exactly 1),
 * times 2^n. AVX-512: vrndscaleps and vscalefps (which flushes y < -150 to
 * 0 and overflows to inf; clamp_low: y = -inf, only the first block's alpha,
 * is clamped to -126 so f is not NaN). Otherwise y is clamped at -126
 * (2^-126 then stands for 0 next to the block maximum's 1), rounded by the
 * 1.5*2^23 shifter and 2^n built in the exponent bits; may_be_positive
 * clamps y at 128 too (2^128 is inf there). NaN stays NaN. */
LLVMValueRef ldmc_lc_attn_exp2(lc_cg *cg, LLVMValueRef y, bool clamp_low, bool may_be_positive) {
  int w = lc_width(y);
  LLVMTypeRef vf = LLVMTypeOf(y), vi = lc_vt(cg, cg->i32, w);
  static const double c[] = {0.0013264729641377926, 0.009671513922512531, 0.05550733581185341, 0.24022242426872253,
                             0.6931470036506653, 1.0};
  LLVMValueRef lo = lc_fconst(cg, -126.0, w);
  bool avx512 = cg->t->isa == LDMC_LLVM_CPU_ISA_AVX512 && w == 16;
  if (clamp_low || !avx512) y = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, y, lo, ""), lo, y, "");
  if (may_be_positive && !avx512) {
    LLVMValueRef hi = lc_fconst(cg, 128.0, w);
    y = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, y, hi, ""), hi, y, "");
  }
  LLVMValueRef t = NULL, r, sh = lc_fconst(cg, 12582912.0, w);
  if (avx512) {
    r = lc_intr(cg, "llvm.roundeven", &vf, 1, &y, 1);
  } else {
    t = LLVMBuildFAdd(B, y, sh, "");
    r = LLVMBuildFSub(B, t, sh, "");
  }
  LLVMValueRef f = LLVMBuildFSub(B, y, r, "");
  LLVMValueRef p = lc_fconst(cg, c[0], w);
  for (int i = 1; i < 6; i++) p = lc_fma(cg, p, f, lc_fconst(cg, c[i], w));
  if (avx512) {
    LLVMValueRef args[5] = {p, r, LLVMGetUndef(vf), LLVMConstInt(cg->i16, 0xffff, 0), lc_i32(cg, 4)};
    return lc_intr(cg, "llvm.x86.avx512.mask.scalef.ps.512", NULL, 0, args, 5);
  }
  LLVMValueRef e = LLVMBuildBitCast(B, t, vi, "");
  e = LLVMBuildShl(B, LLVMBuildAdd(B, e, lc_iconst(cg, cg->i32, 127, w), ""), lc_iconst(cg, cg->i32, 23, w), "");
  return LLVMBuildFMul(B, p, LLVMBuildBitCast(B, e, vf, ""), "");
}

static LLVMValueRef exp2_neg(actx *a, LLVMValueRef y, bool clamp) { return ldmc_lc_attn_exp2(a->cg, y, clamp, false); }

/* In-register transpose of W rows of W lanes: log2(W) stages, each exchanging
 * one row-index bit with one lane-index bit by two-source shuffles. */
void ldmc_lc_attn_transpose(lc_cg *cg, LLVMValueRef *R, int W) {
  for (int s = 1; s < W; s <<= 1) {
    LLVMValueRef m0[64], m1[64];
    for (int c = 0; c < W; c++) {
      m0[c] = lc_i32(cg, c & s ? W + c - s : c);
      m1[c] = lc_i32(cg, c & s ? W + c : c + s);
    }
    LLVMValueRef k0 = LLVMConstVector(m0, (unsigned)W), k1 = LLVMConstVector(m1, (unsigned)W);
    for (int r = 0; r < W; r++) {
      if (r & s) continue;
      LLVMValueRef x = R[r], y = R[r | s];
      R[r] = LLVMBuildShuffleVector(B, x, y, k0, "");
      R[r | s] = LLVMBuildShuffleVector(B, x, y, k1, "");
    }
  }
}

LLVMValueRef ldmc_lc_attn_load_row(lc_cg *cg, ldmc_dtype dt, LLVMValueRef p, LLVMValueRef idx, int64_t cs, int n) {
  int W = cg->W;
  if (cs == 1) return lc_load_comp(cg, dt, p, idx, W, n < W ? lc_mask_lt(cg, lc_i64(cg, n), W, 0) : NULL);
  LLVMValueRef v = LLVMConstNull(lc_vt(cg, cg->f32, W));
  for (int i = 0; i < n; i++) {
    LLVMValueRef x = lc_load_comp(cg, dt, p, add(cg, idx, lc_i64(cg, i * cs)), 1, NULL);
    v = LLVMBuildInsertElement(B, v, LLVMBuildExtractElement(B, x, lc_i32(cg, 0), ""), lc_i32(cg, i), "");
  }
  return v;
}

void ldmc_lc_attn_col_blocks(lc_cg *cg, int64_t len, lc_col_block_fn blk, void *arg) {
  int W = cg->W;
  int64_t full = len / W;
  if (full >= 2) {
    lc_loop l;
    LLVMValueRef c0 = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full * W), lc_i64(cg, W), 0, NULL);
    blk(arg, c0, W);
    lc_for_end(cg, &l, NULL);
  } else if (full == 1) {
    blk(arg, lc_i64(cg, 0), W);
  }
  if (len % W) blk(arg, lc_i64(cg, full * W), (int)(len % W));
}

typedef struct tile_arg {
  actx *a;
  LLVMValueRef base, n0, inv; /* q or out element offset of the batch; first row; 1/l */
  int qi;                     /* query vector */
} tile_arg;

/* QT[d0 + r][qi W + i] = c * q[n0 + qi W + i][d0 + r] (rows past N repeat the last one) */
static void load_q_block(void *arg, LLVMValueRef d0, int n) {
  const tile_arg *ta = arg;
  actx *a = ta->a;
  lc_cg *cg = a->cg;
  const lc_attn_desc *d = a->d;
  int W = a->W;
  LLVMValueRef c = lc_fconst(cg, d->scale * M_LOG2E, W), R[64];
  LLVMValueRef col = add(cg, ta->base, mul(cg, d0, d->qs[3]));
  for (int r = 0; r < W; r++) {
    LLVMValueRef row = lc_smin64(cg, add(cg, ta->n0, lc_i64(cg, ta->qi * W + r)), lc_i64(cg, d->N - 1));
    LLVMValueRef x =
        ldmc_lc_attn_load_row(cg, (ldmc_dtype)d->dt, cg->buf[1], add(cg, col, mul(cg, row, d->qs[2])), d->qs[3], n);
    R[r] = LLVMBuildFMul(B, x, c, "");
  }
  ldmc_lc_attn_transpose(cg, R, W);
  LLVMValueRef qt = fptr(cg, a->QT, mul(cg, d0, a->Q));
  for (int r = 0; r < n; r++) lc_store(cg, R[r], fptrc(cg, qt, (int64_t)r * a->Q + ta->qi * W), 4);
}

/* out[n0 + qi W + r][e0 + e] = OT[e0 + e][qi W + r] / l for the rows that exist */
static void store_out_block(void *arg, LLVMValueRef e0, int n) {
  const tile_arg *ta = arg;
  actx *a = ta->a;
  lc_cg *cg = a->cg;
  const lc_attn_desc *d = a->d;
  int W = a->W;
  LLVMValueRef R[64], ot = fptr(cg, a->OT, mul(cg, e0, a->Q));
  for (int e = 0; e < W; e++) /* rows of OT past E exist (Ep rows) and are not stored */
    R[e] = LLVMBuildFMul(B, lc_load(cg, a->vf, fptrc(cg, ot, (int64_t)e * a->Q + ta->qi * W), 4), ta->inv, "");
  ldmc_lc_attn_transpose(cg, R, W);
  LLVMValueRef emask = n < W ? lc_mask_lt(cg, lc_i64(cg, n), W, 0) : NULL;
  for (int r = 0; r < W; r++) {
    LLVMValueRef row = add(cg, ta->n0, lc_i64(cg, ta->qi * W + r)), mask = emask;
    if (d->N % a->Q) {
      LLVMValueRef ok = lc_splat(cg, LLVMBuildICmp(B, LLVMIntSLT, row, lc_i64(cg, d->N), ""), W);
      mask = mask ? LLVMBuildAnd(B, mask, ok, "") : ok;
    }
    lc_store_comp(cg, (ldmc_dtype)d->dt, R[r], cg->buf[0], add(cg, ta->base, add(cg, mul(cg, row, d->os[2]), e0)), mask);
  }
}

/* lse: out[row0 + i] = L[i] for the rows that exist (row stride os[2]) */
static void store_lse(actx *a, LLVMValueRef base, LLVMValueRef row0, LLVMValueRef L) {
  lc_cg *cg = a->cg;
  const lc_attn_desc *d = a->d;
  LLVMValueRef idx = add(cg, base, mul(cg, row0, d->os[2]));
  LLVMValueRef rem = LLVMBuildSub(B, lc_i64(cg, d->N), row0, "");
  if (d->os[2] == 1) {
    lc_store_comp(cg, LDMC_F32, L, cg->buf[0], idx, d->N % a->Q ? lc_mask_lt(cg, rem, a->W, 0) : NULL);
    return;
  }
  for (int i = 0; i < a->W; i++) {
    lc_if f;
    lc_if_begin(cg, &f, LLVMBuildICmp(B, LLVMIntSGT, rem, lc_i64(cg, i), ""));
    LLVMValueRef x = LLVMBuildExtractElement(B, L, lc_i32(cg, i), "");
    lc_store(cg, x, fptr(cg, cg->buf[0], add(cg, idx, lc_i64(cg, (int64_t)i * d->os[2]))), 4);
    lc_if_end(cg, &f);
  }
}

/* one step of the scores at head column dd (constant or loop value) */
static void score_step(actx *a, LLVMValueRef kptr, LLVMValueRef dd, int n, LLVMValueRef *S) {
  lc_cg *cg = a->cg;
  const lc_attn_desc *d = a->d;
  LLVMValueRef qv[8], qrow = fptr(cg, a->QT, mul(cg, dd, a->Q)), krow = fptr(cg, kptr, mul(cg, dd, d->ks[3]));
  for (int q = 0; q < a->nq; q++) qv[q] = lc_load(cg, a->vf, fptrc(cg, qrow, (int64_t)q * a->W), 4);
  for (int j = 0; j < n; j++) {
    LLVMValueRef kv = bcast(a, krow, (int64_t)j * d->ks[2]);
    for (int q = 0; q < a->nq; q++) S[j * a->nq + q] = lc_fma(cg, kv, qv[q], S[j * a->nq + q]);
  }
}

static void scores(actx *a, LLVMValueRef kptr, int n, LLVMValueRef *S) {
  lc_cg *cg = a->cg;
  int64_t D = a->d->D, du = 8, d0 = 0;
  int ns = n * a->nq;
  for (int i = 0; i < ns; i++) S[i] = LLVMConstNull(a->vf);
  if (D > 32) { /* a loop over chunks of du columns, unrolled inside */
    lc_loop l;
    LLVMValueRef dd = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, D / du * du), lc_i64(cg, du), ns, S);
    LLVMValueRef T[LC_MAX_CARRY];
    for (int i = 0; i < ns; i++) T[i] = l.phi[i];
    for (int64_t k = 0; k < du; k++) score_step(a, kptr, add(cg, dd, lc_i64(cg, k)), n, T);
    lc_for_end(cg, &l, T);
    for (int i = 0; i < ns; i++) S[i] = l.phi[i];
    d0 = D / du * du;
  }
  for (int64_t k = d0; k < D; k++) score_step(a, kptr, lc_i64(cg, k), n, S);
}

/* OT[e0 + e] = OT[e0 + e] (* alpha) + sum_j P[j] v[j][e0 + e], e < g. With
 * few columns (g * nq <= 8) at avx512 (32 registers) odd and even keys go to
 * separate accumulators, for enough independent FMA chains. */
static void pv_group(actx *a, LLVMValueRef vptr, LLVMValueRef e0, int g, int n, LLVMValueRef *P, LLVMValueRef *alpha) {
  lc_cg *cg = a->cg;
  const lc_attn_desc *d = a->d;
  int nq = a->nq, na = g * nq, split = na <= 8 && n > 1 && a->W == 16 ? 2 : 1;
  LLVMValueRef acc[128], orow = fptr(cg, a->OT, mul(cg, e0, a->Q)), vrow = fptr(cg, vptr, mul(cg, e0, d->vs[3]));
  for (int e = 0; e < g; e++)
    for (int q = 0; q < nq; q++) {
      LLVMValueRef o = lc_load(cg, a->vf, fptrc(cg, orow, (int64_t)e * a->Q + q * a->W), 4);
      acc[e * nq + q] = alpha ? LLVMBuildFMul(B, o, alpha[q], "") : o;
      if (split == 2) acc[na + e * nq + q] = LLVMConstNull(a->vf);
    }
  for (int j = 0; j < n; j++)
    for (int e = 0; e < g; e++) {
      LLVMValueRef vv = bcast(a, vrow, (int64_t)j * d->vs[2] + (int64_t)e * d->vs[3]);
      LLVMValueRef *ac = acc + (j % split) * na;
      for (int q = 0; q < nq; q++) ac[e * nq + q] = lc_fma(cg, P[j * nq + q], vv, ac[e * nq + q]);
    }
  for (int e = 0; e < g; e++)
    for (int q = 0; q < nq; q++) {
      LLVMValueRef o = acc[e * nq + q];
      if (split == 2) o = LLVMBuildFAdd(B, o, acc[na + e * nq + q], "");
      lc_store(cg, o, fptrc(cg, orow, (int64_t)e * a->Q + q * a->W), 4);
    }
}

static void pv(actx *a, LLVMValueRef vptr, int n, LLVMValueRef *P, LLVMValueRef *alpha) {
  lc_cg *cg = a->cg;
  int64_t E = a->d->E, ec = a->d->ec, full = E / ec;
  if (full >= 2) {
    lc_loop l;
    LLVMValueRef e0 = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full * ec), lc_i64(cg, ec), 0, NULL);
    pv_group(a, vptr, e0, (int)ec, n, P, alpha);
    lc_for_end(cg, &l, NULL);
  } else if (full == 1) {
    pv_group(a, vptr, lc_i64(cg, 0), (int)ec, n, P, alpha);
  }
  if (E % ec) pv_group(a, vptr, lc_i64(cg, full * ec), (int)(E % ec), n, P, alpha);
}

static LLVMValueRef tree(lc_cg *cg, LLVMValueRef *v, int n, int stride, bool is_max) {
  if (n == 1) return v[0];
  int h = n / 2;
  LLVMValueRef x = tree(cg, v, h, stride, is_max), y = tree(cg, v + h * stride, n - h, stride, is_max);
  return is_max ? vmax(cg, x, y) : LLVMBuildFAdd(B, x, y, "");
}

/* keys [kb, kb + n): updates the running max m and sum l (nq vectors each) and OT */
static void key_block(actx *a, LLVMValueRef kb, int n, LLVMValueRef *m, LLVMValueRef *l) {
  lc_cg *cg = a->cg;
  const lc_attn_desc *d = a->d;
  int nq = a->nq, W = a->W;
  LLVMValueRef S[LC_MAX_CARRY], mn[8], alpha[8], changed = NULL;
  scores(a, fptr(cg, a->kbp, mul(cg, kb, d->ks[2])), n, S);
  for (int q = 0; q < nq; q++) {
    mn[q] = vmax(cg, m[q], tree(cg, S + q, n, nq, true));
    LLVMValueRef up = LLVMBuildFCmp(B, LLVMRealOGT, mn[q], m[q], "");
    changed = changed ? LLVMBuildOr(B, changed, up, "") : up;
    alpha[q] = exp2_neg(a, LLVMBuildFSub(B, m[q], mn[q], ""), true);
  }
  if (!d->lse)
    changed = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildBitCast(B, changed, LLVMIntTypeInContext(cg->ctx, (unsigned)W), ""),
                            LLVMConstInt(LLVMIntTypeInContext(cg->ctx, (unsigned)W), 0, 0), "");
  for (int j = 0; j < n; j++)
    for (int q = 0; q < nq; q++) S[j * nq + q] = exp2_neg(a, LLVMBuildFSub(B, S[j * nq + q], mn[q], ""), false);
  for (int q = 0; q < nq; q++) {
    l[q] = lc_fma(cg, l[q], alpha[q], tree(cg, S + q, n, nq, false));
    m[q] = mn[q];
  }
  if (d->lse) return;
  LLVMValueRef vptr = fptr(cg, a->vbp, mul(cg, kb, d->vs[2]));
  lc_if f;
  lc_if_begin(cg, &f, changed);
  pv(a, vptr, n, S, alpha);
  lc_if_else(cg, &f);
  pv(a, vptr, n, S, NULL);
  lc_if_end(cg, &f);
}

void ldmc_lc_emit_attn(lc_cg *cg, const lc_attn_desc *d) {
  actx a = {.cg = cg, .d = d, .W = cg->W, .nq = d->nq};
  a.Q = a.nq * a.W;
  a.vf = lc_vt(cg, cg->f32, a.W);
  a.vi = lc_vt(cg, cg->i32, a.W);
  int64_t ntile = (d->N + a.Q - 1) / a.Q, Ep = (d->E + a.W - 1) / a.W * a.W;
  a.QT = cg->scratch; /* QT[D][Q], OT[Ep][Q] (f32; lse: no OT) */
  a.OT = fptrc(cg, a.QT, d->D * a.Q);
  lc_loop lt;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef b = LLVMBuildUDiv(B, t, lc_i64(cg, ntile), "");
  LLVMValueRef n0 = mul(cg, LLVMBuildURem(B, t, lc_i64(cg, ntile), ""), a.Q);
  LLVMValueRef b1 = LLVMBuildUDiv(B, b, lc_i64(cg, d->nb2), ""), b2 = LLVMBuildURem(B, b, lc_i64(cg, d->nb2), "");
  LLVMValueRef qb = add(cg, mul(cg, b1, d->qs[0]), mul(cg, b2, d->qs[1]));
  a.kbp = fptr(cg, cg->buf[2], add(cg, mul(cg, b1, d->ks[0]), mul(cg, b2, d->ks[1])));
  if (!d->lse) a.vbp = fptr(cg, cg->buf[3], add(cg, mul(cg, b1, d->vs[0]), mul(cg, b2, d->vs[1])));
  for (int q = 0; q < a.nq; q++)
    ldmc_lc_attn_col_blocks(cg, d->D, load_q_block, &(tile_arg){.a = &a, .base = qb, .n0 = n0, .qi = q});
  if (!d->lse) { /* OT = 0 */
    lc_loop lz;
    LLVMValueRef i = lc_for(cg, &lz, lc_i64(cg, 0), lc_i64(cg, Ep * a.Q), lc_i64(cg, a.W), 0, NULL);
    lc_store(cg, LLVMConstNull(a.vf), fptr(cg, a.OT, i), 4);
    lc_for_end(cg, &lz, NULL);
  }
  LLVMValueRef m[8], l[8], init[16];
  for (int q = 0; q < a.nq; q++) init[q] = lc_fconst(cg, -INFINITY, a.W), init[a.nq + q] = LLVMConstNull(a.vf);
  int64_t nfull = d->M / d->bc;
  if (nfull > 0) {
    lc_loop lk;
    LLVMValueRef kb = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, nfull * d->bc), lc_i64(cg, d->bc), 2 * a.nq, init);
    for (int q = 0; q < a.nq; q++) m[q] = lk.phi[q], l[q] = lk.phi[a.nq + q];
    key_block(&a, kb, d->bc, m, l);
    LLVMValueRef next[16];
    for (int q = 0; q < a.nq; q++) next[q] = m[q], next[a.nq + q] = l[q];
    lc_for_end(cg, &lk, next);
    for (int q = 0; q < a.nq; q++) m[q] = lk.phi[q], l[q] = lk.phi[a.nq + q];
  } else {
    for (int q = 0; q < a.nq; q++) m[q] = init[q], l[q] = init[a.nq + q];
  }
  if (d->M % d->bc) key_block(&a, lc_i64(cg, nfull * d->bc), (int)(d->M % d->bc), m, l);
  LLVMValueRef ob = add(cg, mul(cg, b1, d->os[0]), mul(cg, b2, d->os[1]));
  for (int q = 0; q < a.nq; q++) {
    if (d->lse) { /* ln 2 m + ln l: -inf without keys */
      store_lse(&a, ob, add(cg, n0, lc_i64(cg, q * a.W)), lc_fma(cg, m[q], lc_fconst(cg, M_LN2, a.W), lc_log(cg, l[q])));
      continue;
    }
    tile_arg ta = {.a = &a, .base = ob, .n0 = n0, .qi = q};
    ta.inv = LLVMBuildFDiv(B, lc_fconst(cg, 1.0, a.W), l[q], "");
    ldmc_lc_attn_col_blocks(cg, d->E, store_out_block, &ta);
  }
  lc_for_end(cg, &lt, NULL);
}
