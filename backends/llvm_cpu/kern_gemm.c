/* GEMM and implicit-GEMM convolution.
 *
 * A tile is (batch, mc rows of C, nc columns of C). For each K block of kc
 * the tile packs its slice of B into per-thread scratch as nr-wide panels
 * [panel][k][nr] (f32, zero padded) — from a strided matrix, or for a
 * convolution straight from the input image (im2col on the fly, with masked
 * gathers that read zero outside the padding) — and then runs the register
 * microkernel over every (mr rows, nr columns) block: mr x nr/W vector
 * accumulators, one broadcast of A and nr/W vector loads of B per k, FMA.
 * A is read in place when its rows are contiguous f32 (rows past M go through
 * a small zero-padded copy), else from panels packed by an LC_K_PACK step.
 * C (f32) is written on the first K block and accumulated on the others. */
#include <stdio.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

static void add_attr(lc_cg *cg, LLVMValueRef fn, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

static unsigned valign(lc_cg *cg) { return (unsigned)(cg->W * 4 > 64 ? 64 : cg->W * 4); }

/* The microkernel's k loop; l->phi[i * nv + j] accumulate row i, columns j*W..
 * f32: A(i, k) at A[i * lda + k * ak], Bp [k][nr], one FMA per k.
 * bf16: A pairs [kp][mr] (an i32 = 2 bf16), Bp [kp][nr][2]; per pair of k one
 * vdpbf16ps (16 f32 lanes += 2 bf16 products each) with A broadcast. */
static void ukr_kloop(lc_cg *cg, lc_loop *l, LLVMValueRef A, LLVMValueRef Bp, LLVMValueRef kcur, int mr, int nr,
                      int64_t lda, int64_t ak, bool bf16) {
  int W = cg->W, nv = nr / W, na = mr * nv;
  LLVMTypeRef vf = lc_vt(cg, cg->f32, W);
  LLVMValueRef init[LC_MAX_CARRY], bv[8], next[LC_MAX_CARRY];
  for (int i = 0; i < na; i++) init[i] = LLVMConstNull(vf);
  if (bf16) {
    LLVMTypeRef vb = lc_vt(cg, LLVMBFloatTypeInContext(cg->ctx), 2 * W);
    LLVMValueRef npair = LLVMBuildLShr(B, LLVMBuildAdd(B, kcur, lc_i64(cg, 1), ""), lc_i64(cg, 1), "");
    LLVMValueRef kp = lc_for(cg, l, lc_i64(cg, 0), npair, lc_i64(cg, 1), na, init);
    LLVMValueRef brow = LLVMBuildMul(B, kp, lc_i64(cg, 2 * nr), "");
    for (int j = 0; j < nv; j++)
      bv[j] = lc_load(cg, vb, lc_gep(cg, cg->i16, Bp, LLVMBuildAdd(B, brow, lc_i64(cg, 2 * j * W), "")), valign(cg));
    LLVMValueRef arow = LLVMBuildMul(B, kp, lc_i64(cg, mr), "");
    for (int i = 0; i < mr; i++) {
      LLVMValueRef a = lc_load(cg, cg->i32, lc_gep(cg, cg->i32, A, LLVMBuildAdd(B, arow, lc_i64(cg, i), "")), 4);
      LLVMValueRef as = LLVMBuildBitCast(B, lc_splat(cg, a, W), vb, "");
      for (int j = 0; j < nv; j++) {
        LLVMValueRef args[3] = {l->phi[i * nv + j], as, bv[j]};
        next[i * nv + j] = lc_intr(cg, "llvm.x86.avx512bf16.dpbf16ps.512", NULL, 0, args, 3);
      }
    }
  } else {
    LLVMValueRef k = lc_for(cg, l, lc_i64(cg, 0), kcur, lc_i64(cg, 1), na, init);
    LLVMValueRef brow = LLVMBuildMul(B, k, lc_i64(cg, nr), "");
    for (int j = 0; j < nv; j++)
      bv[j] = lc_load(cg, vf, lc_gep(cg, cg->f32, Bp, LLVMBuildAdd(B, brow, lc_i64(cg, j * W), "")), valign(cg));
    LLVMValueRef acol = LLVMBuildMul(B, k, lc_i64(cg, ak), "");
    for (int i = 0; i < mr; i++) {
      LLVMValueRef a = lc_load(cg, cg->f32, lc_gep(cg, cg->f32, A, LLVMBuildAdd(B, acol, lc_i64(cg, i * lda), "")), 4);
      LLVMValueRef as = lc_splat(cg, a, W);
      for (int j = 0; j < nv; j++) next[i * nv + j] = lc_fma(cg, as, bv[j], l->phi[i * nv + j]);
    }
  }
  lc_for_end(cg, l, next);
}

/* void ukr(A, Bp, float *C, i64 kcur, i64 mrem, i64 nrem, i1 first, [epilogue])
 * A and Bp as ukr_kloop reads them; C(i, j) at C[i * c_st[2] + j]; the store
 * (and an epilogue's extra parameters) in kern_epi.c. */
static LLVMValueRef emit_ukr(lc_cg *cg, const lc_gemm_desc *d, const char *name, int mr, int nr, int64_t lda,
                             int64_t ak, bool bf16) {
  LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
  LLVMTypeRef ps[7 + 6 + LC_EW_MAX_IN] = {cg->ptr, cg->ptr, cg->ptr, cg->i64, cg->i64, cg->i64, cg->i1};
  int nps = ldmc_lc_gemm_ukr_params(cg, d, ps);
  LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->vd, ps, (unsigned)nps, 0));
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  ldmc_lc_set_fn_attrs(cg, fn);
  add_attr(cg, fn, LLVMAttributeFunctionIndex, "noinline");
  /* C may be the epilogue's output (f32 partials in place) */
  for (unsigned i = 1; i <= (d->epi.n_ins ? 2u : 3u); i++) add_attr(cg, fn, i, "noalias");
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
  LLVMValueRef A = LLVMGetParam(fn, 0), Bp = LLVMGetParam(fn, 1), C = LLVMGetParam(fn, 2);
  LLVMValueRef kcur = LLVMGetParam(fn, 3);
  lc_loop l;
  ukr_kloop(cg, &l, A, Bp, kcur, mr, nr, lda, ak, bf16);
  ldmc_lc_gemm_store(cg, d, fn, C, l.phi, mr, nr);
  LLVMBuildRetVoid(B);
  LLVMPositionBuilderAtEnd(B, saved);
  return fn;
}

static LLVMValueRef imin(lc_cg *cg, LLVMValueRef a, int64_t b) { return lc_smin64(cg, a, lc_i64(cg, b)); }
static LLVMValueRef mul(lc_cg *cg, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, lc_i64(cg, b), ""); }
static LLVMValueRef add(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }

/* masked gather of w elements of dt at base[idx[i]] (idx: <w x i64>) in f32 */
static LLVMValueRef gather_f32(lc_cg *cg, ldmc_dtype dt, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef mask) {
  int w = lc_width(idx);
  LLVMTypeRef sty = lc_store_ty(cg, dt);
  LLVMValueRef ptrs = LLVMBuildInBoundsGEP2(B, sty, base, &idx, 1, "");
  LLVMTypeRef tys[2] = {lc_vt(cg, sty, w), lc_vt(cg, cg->ptr, w)};
  LLVMValueRef args[4] = {ptrs, lc_i32(cg, (int32_t)ldmc_dtype_size(dt)), mask, LLVMConstNull(tys[0])};
  return lc_to_comp(cg, dt, lc_intr(cg, "llvm.masked.gather", tys, 2, args, 4));
}

static LLVMValueRef lanes64(lc_cg *cg, int w) { return lc_lane_iota(cg, cg->i64, w); }

/* even(x): x rounded up to a multiple of 2 (k extent of a bf16 panel) */
static LLVMValueRef even(lc_cg *cg, LLVMValueRef x) {
  return LLVMBuildAnd(B, add(cg, x, lc_i64(cg, 1)), lc_i64(cg, ~(int64_t)1), "");
}

/* f32 rows lo, hi (<W x float>) -> bf16 pairs <2W x i16> {lo0, hi0, lo1, hi1, ...},
 * rounded to nearest even (exact for values that came from bf16) */
static LLVMValueRef bf16_pairs(lc_cg *cg, LLVMValueRef lo, LLVMValueRef hi) {
  int w = lc_width(lo);
  LLVMValueRef idx[64];
  for (int i = 0; i < w; i++) idx[2 * i] = lc_i32(cg, i), idx[2 * i + 1] = lc_i32(cg, w + i);
  if (cg->t->avx512bf16 && w == 16) { /* vcvtne2ps2bf16 gives {lo, hi} in one instruction (subnormals to zero,
                                         as vdpbf16ps reads them anyway), then interleave */
    LLVMValueRef args[2] = {hi, lo};
    LLVMValueRef cv = lc_intr(cg, "llvm.x86.avx512bf16.cvtne2ps2bf16.512", NULL, 0, args, 2);
    cv = LLVMBuildBitCast(B, cv, lc_vt(cg, cg->i16, 2 * w), "");
    return LLVMBuildShuffleVector(B, cv, LLVMGetUndef(LLVMTypeOf(cv)), LLVMConstVector(idx, (unsigned)(2 * w)), "");
  }
  return LLVMBuildShuffleVector(B, lc_to_store(cg, LDMC_BF16, lo), lc_to_store(cg, LDMC_BF16, hi),
                                LLVMConstVector(idx, (unsigned)(2 * w)), "");
}

/* W elements of B row at element s of src: contiguous (n stride 1) or gathered */
static LLVMValueRef load_b_row(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef src, LLVMValueRef s, LLVMValueRef mask) {
  int W = cg->W;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  if (d->b_st[3] == 1) return lc_load_comp(cg, dt, src, s, W, mask);
  LLVMValueRef idx = add(cg, lc_splat(cg, s, W), LLVMBuildMul(B, lanes64(cg, W), lc_iconst(cg, cg->i64, d->b_st[3], W), ""));
  idx = LLVMBuildSelect(B, mask, idx, LLVMConstNull(LLVMTypeOf(idx)), "");
  return gather_f32(cg, dt, src, idx, mask);
}

/* Packs B[k0 .. k0+kcur) x [n0 .. n0+nn) of batch (b1, b2), read from src,
 * into nnp panels at Bs: f32 [panel][kcur][nr], bf16 [panel][even(kcur) / 2][nr][2]. */
static void pack_b_strided(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef src, LLVMValueRef Bs, LLVMValueRef b1,
                           LLVMValueRef b2, LLVMValueRef k0, LLVMValueRef kcur, LLVMValueRef n0, LLVMValueRef nn,
                           LLVMValueRef nnp) {
  int W = cg->W, nr = d->nr, nv = nr / W;
  LLVMValueRef bb = add(cg, add(cg, mul(cg, b1, d->b_st[0]), mul(cg, b2, d->b_st[1])), mul(cg, n0, d->b_st[3]));
  LLVMValueRef kcp = d->bf16 ? even(cg, kcur) : kcur;
  lc_loop lp, lk;
  LLVMValueRef np = lc_for(cg, &lp, lc_i64(cg, 0), nnp, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef nleft = LLVMBuildSub(B, nn, mul(cg, np, nr), "");
  LLVMValueRef pb = add(cg, bb, mul(cg, np, nr * d->b_st[3]));
  LLVMValueRef step = lc_i64(cg, d->bf16 ? 2 : 1);
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), kcur, step, 0, NULL);
  LLVMValueRef dst = mul(cg, add(cg, LLVMBuildMul(B, np, kcp, ""), k), nr);
  for (int j = 0; j < nv; j++) {
    LLVMValueRef mask = lc_mask_lt(cg, nleft, W, (int64_t)j * W), col = lc_i64(cg, (int64_t)j * W * d->b_st[3]);
    LLVMValueRef v = load_b_row(cg, d, src, add(cg, add(cg, pb, mul(cg, add(cg, k0, k), d->b_st[2])), col), mask);
    if (!d->bf16) {
      lc_store(cg, v, lc_gep(cg, cg->f32, Bs, add(cg, dst, lc_i64(cg, (int64_t)j * W))), valign(cg));
      continue;
    }
    /* row k + 1 (zero past kcur: odd K) */
    LLVMValueRef k1 = add(cg, k, lc_i64(cg, 1)), hi_ok = LLVMBuildICmp(B, LLVMIntSLT, k1, kcur, "");
    k1 = LLVMBuildSelect(B, hi_ok, k1, k, "");
    LLVMValueRef m1 = LLVMBuildAnd(B, mask, lc_splat(cg, hi_ok, W), "");
    LLVMValueRef v1 = load_b_row(cg, d, src, add(cg, add(cg, pb, mul(cg, add(cg, k0, k1), d->b_st[2])), col), m1);
    lc_store(cg, bf16_pairs(cg, v, v1), lc_gep(cg, cg->i16, Bs, add(cg, dst, lc_i64(cg, 2 * (int64_t)j * W))),
             valign(cg));
  }
  lc_for_end(cg, &lk, NULL);
  lc_for_end(cg, &lp, NULL);
}

/* Per panel: the output pixels of its columns (vectors j of W lanes).
 * Contiguous mode (nseg > 0: unit column stride, column stride sw 1 or 2, and
 * W consecutive pixels span at most nseg output rows): segment r holds the
 * lanes of output row oy(lane 0) + r; they read x at pbase + r * seg_step +
 * sw * lane, so each segment is one masked load (2W elements and an even-lane
 * shuffle for stride 2) instead of a gather. */
#define CONV_MAX_SEG 4
typedef struct conv_cols {
  int nseg;
  LLVMValueRef iy0[8], ix0[8], okn[8];                   /* gather mode: <W x i64> */
  LLVMValueRef ixr[8], seg[8][CONV_MAX_SEG], iyb[8], pb[8]; /* contiguous: <W x i32>, <W x i1>, i64, i64 */
  LLVMValueRef ib[8];                                    /* folded images: <W x i64> image offsets */
} conv_cols;

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    int64_t t = a % b;
    a = b, b = t;
  }
  return a;
}

/* Output rows spanned by W consecutive pixels starting at a multiple of W
 * (panels start at multiples of nr), or 0 when contiguous loads do not apply. */
static int conv_nseg(const lc_gemm_desc *d, int W) {
  if (W < 2 || d->fold_n || d->x_st[3] != 1 || (d->sw != 1 && d->sw != 2) || d->nc % W || d->OW < 1) return 0;
  /* i32 column arithmetic */
  if (d->Wd > (1 << 28) || d->OW * d->sw + d->pw + d->kw * d->dw > (1 << 28)) return 0;
  int64_t g = gcd64(W, d->OW), n = (d->OW - g + W - 1) / d->OW + 1;
  return n <= CONV_MAX_SEG ? (int)n : 0;
}

static void conv_cols_init(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef n0, LLVMValueRef nn, LLVMValueRef np,
                           conv_cols *c) {
  int W = cg->W, nr = d->nr, nv = nr / W;
  c->nseg = conv_nseg(d, W);
  for (int j = 0; j < nv; j++) {
    LLVMValueRef rel = add(cg, mul(cg, np, nr), lc_i64(cg, (int64_t)j * W));
    LLVMValueRef n = add(cg, lc_splat(cg, add(cg, n0, rel), W), lanes64(cg, W));
    c->okn[j] = lc_mask_lt(cg, LLVMBuildSub(B, nn, rel, ""), W, 0);
    if (d->fold_n) { /* column = (image, pixel) */
      LLVMValueRef img = LLVMBuildUDiv(B, n, lc_iconst(cg, cg->i64, d->fold_n, W), "");
      c->ib[j] = LLVMBuildMul(B, img, lc_iconst(cg, cg->i64, d->x_st[0], W), "");
      n = LLVMBuildURem(B, n, lc_iconst(cg, cg->i64, d->fold_n, W), "");
    }
    LLVMValueRef oy = LLVMBuildUDiv(B, n, lc_iconst(cg, cg->i64, d->OW, W), "");
    LLVMValueRef ox = LLVMBuildURem(B, n, lc_iconst(cg, cg->i64, d->OW, W), "");
    c->iy0[j] = LLVMBuildSub(B, LLVMBuildMul(B, oy, lc_iconst(cg, cg->i64, d->sh, W), ""), lc_iconst(cg, cg->i64, d->ph, W), "");
    c->ix0[j] = LLVMBuildSub(B, LLVMBuildMul(B, ox, lc_iconst(cg, cg->i64, d->sw, W), ""), lc_iconst(cg, cg->i64, d->pw, W), "");
    if (!c->nseg) continue;
    LLVMValueRef oy0 = LLVMBuildExtractElement(B, oy, lc_i32(cg, 0), "");
    LLVMValueRef dy = LLVMBuildSub(B, oy, lc_splat(cg, oy0, W), "");
    for (int r = 0; r < c->nseg; r++) c->seg[j][r] = LLVMBuildICmp(B, LLVMIntEQ, dy, lc_iconst(cg, cg->i64, r, W), "");
    c->ixr[j] = LLVMBuildTrunc(B, c->ix0[j], lc_vt(cg, cg->i32, W), "");
    c->iyb[j] = LLVMBuildExtractElement(B, c->iy0[j], lc_i32(cg, 0), "");
    c->pb[j] = add(cg, mul(cg, c->iyb[j], d->x_st[2]), LLVMBuildExtractElement(B, c->ix0[j], lc_i32(cg, 0), ""));
  }
}

/* w lanes of sty at p, p + sw, p + 2 sw, ... under mask (off lanes read 0) */
static LLVMValueRef load_lanes(lc_cg *cg, LLVMTypeRef sty, int sw, LLVMValueRef p, LLVMValueRef mask) {
  int w = lc_width(mask);
  if (sw == 1) return lc_masked_load(cg, lc_vt(cg, sty, w), p, mask, NULL);
  LLVMValueRef idx[128];
  for (int e = 0; e < 2 * w; e++) idx[e] = lc_i32(cg, e % 2 ? w : e / 2);
  LLVMValueRef m2 = LLVMBuildShuffleVector(B, mask, LLVMConstNull(LLVMTypeOf(mask)), LLVMConstVector(idx, (unsigned)(2 * w)), "");
  LLVMValueRef v = lc_masked_load(cg, lc_vt(cg, sty, 2 * w), p, m2, NULL);
  for (int e = 0; e < w; e++) idx[e] = lc_i32(cg, 2 * e);
  return LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(idx, (unsigned)w), "");
}

/* Row kk = (ci, ky, kx) of the im2col matrix over the panel's columns, as f32
 * vectors out[j]; taps outside the image (or kvalid false) read zero. */
static void conv_row(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef xb, const conv_cols *c, LLVMValueRef kk,
                     LLVMValueRef kvalid, LLVMValueRef *out) {
  int W = cg->W, nv = d->nr / W;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  LLVMTypeRef vi = lc_vt(cg, cg->i64, W), sty = lc_store_ty(cg, dt);
  int64_t taps = d->kh * d->kw;
  LLVMValueRef ci = LLVMBuildUDiv(B, kk, lc_i64(cg, taps), "");
  LLVMValueRef tap = LLVMBuildURem(B, kk, lc_i64(cg, taps), "");
  LLVMValueRef ky = LLVMBuildUDiv(B, tap, lc_i64(cg, d->kw), ""), kx = LLVMBuildURem(B, tap, lc_i64(cg, d->kw), "");
  LLVMValueRef cb = add(cg, xb, mul(cg, ci, d->x_st[1]));
  LLVMValueRef base = lc_gep(cg, sty, cg->buf[2], cb);
  LLVMValueRef dys = mul(cg, ky, d->dh), dxs = mul(cg, kx, d->dw);
  if (c->nseg) {
    LLVMValueRef dx32 = lc_splat(cg, LLVMBuildTrunc(B, dxs, cg->i32, ""), W);
    LLVMValueRef at0 = add(cg, mul(cg, dys, d->x_st[2]), dxs);
    for (int j = 0; j < nv; j++) {
      LLVMValueRef okx = LLVMBuildICmp(B, LLVMIntULT, LLVMBuildAdd(B, c->ixr[j], dx32, ""),
                                       lc_iconst(cg, cg->i32, d->Wd, W), "");
      okx = LLVMBuildAnd(B, okx, c->okn[j], "");
      if (kvalid) okx = LLVMBuildAnd(B, okx, lc_splat(cg, kvalid, W), "");
      LLVMValueRef iy = add(cg, c->iyb[j], dys), at = add(cg, c->pb[j], at0), v = NULL;
      for (int r = 0; r < c->nseg; r++) {
        LLVMValueRef iyr = add(cg, iy, lc_i64(cg, r * d->sh));
        LLVMValueRef oky = LLVMBuildICmp(B, LLVMIntULT, iyr, lc_i64(cg, d->H), "");
        LLVMValueRef m = LLVMBuildSelect(B, oky, okx, LLVMConstNull(LLVMTypeOf(okx)), "");
        if (c->nseg > 1) m = LLVMBuildAnd(B, m, c->seg[j][r], "");
        /* off lanes may address before the buffer: not inbounds */
        LLVMValueRef off = add(cg, at, lc_i64(cg, r * (d->sh * d->x_st[2] - d->sw * d->OW)));
        LLVMValueRef vr = load_lanes(cg, sty, (int)d->sw, LLVMBuildGEP2(B, sty, base, &off, 1, ""), m);
        v = v ? LLVMBuildSelect(B, c->seg[j][r], vr, v, "") : vr;
      }
      out[j] = lc_to_comp(cg, dt, v);
    }
    return;
  }
  LLVMValueRef dy = lc_splat(cg, dys, W), dx = lc_splat(cg, dxs, W);
  for (int j = 0; j < nv; j++) { /* gathers */
    LLVMValueRef iy = add(cg, c->iy0[j], dy), ix = add(cg, c->ix0[j], dx);
    LLVMValueRef ok = LLVMBuildAnd(B, c->okn[j], LLVMBuildICmp(B, LLVMIntULT, iy, lc_iconst(cg, cg->i64, d->H, W), ""), "");
    ok = LLVMBuildAnd(B, ok, LLVMBuildICmp(B, LLVMIntULT, ix, lc_iconst(cg, cg->i64, d->Wd, W), ""), "");
    if (kvalid) ok = LLVMBuildAnd(B, ok, lc_splat(cg, kvalid, W), "");
    LLVMValueRef off = add(cg, LLVMBuildMul(B, iy, lc_iconst(cg, cg->i64, d->x_st[2], W), ""),
                           LLVMBuildMul(B, ix, lc_iconst(cg, cg->i64, d->x_st[3], W), ""));
    if (d->fold_n) off = add(cg, off, c->ib[j]);
    off = LLVMBuildSelect(B, ok, off, LLVMConstNull(vi), "");
    out[j] = gather_f32(cg, dt, base, off, ok);
  }
}

/* Packs the im2col matrix of a convolution input (layout as pack_b_strided):
 * column n is output pixel (oy, ox), row k is (ci, ky, kx). */
static void pack_b_conv(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef Bs, LLVMValueRef b1, LLVMValueRef b2,
                        LLVMValueRef k0, LLVMValueRef kcur, LLVMValueRef n0, LLVMValueRef nn, LLVMValueRef nnp) {
  int W = cg->W, nr = d->nr, nv = nr / W;
  LLVMValueRef xb = add(cg, mul(cg, b1, d->x_st[0]), mul(cg, mul(cg, b2, d->cg), d->x_st[1]));
  LLVMValueRef kcp = d->bf16 ? even(cg, kcur) : kcur;
  lc_loop lp, lk;
  LLVMValueRef np = lc_for(cg, &lp, lc_i64(cg, 0), nnp, lc_i64(cg, 1), 0, NULL);
  conv_cols c;
  conv_cols_init(cg, d, n0, nn, np, &c);
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), kcur, lc_i64(cg, d->bf16 ? 2 : 1), 0, NULL);
  LLVMValueRef dst = mul(cg, add(cg, LLVMBuildMul(B, np, kcp, ""), k), nr);
  LLVMValueRef v[8], v1[8];
  conv_row(cg, d, xb, &c, add(cg, k0, k), NULL, v);
  if (!d->bf16) {
    for (int j = 0; j < nv; j++)
      lc_store(cg, v[j], lc_gep(cg, cg->f32, Bs, add(cg, dst, lc_i64(cg, (int64_t)j * W))), valign(cg));
  } else {
    LLVMValueRef k1 = add(cg, k, lc_i64(cg, 1)), hi_ok = LLVMBuildICmp(B, LLVMIntSLT, k1, kcur, "");
    conv_row(cg, d, xb, &c, add(cg, k0, LLVMBuildSelect(B, hi_ok, k1, k, "")), hi_ok, v1);
    for (int j = 0; j < nv; j++)
      lc_store(cg, bf16_pairs(cg, v[j], v1[j]), lc_gep(cg, cg->i16, Bs, add(cg, dst, lc_i64(cg, 2 * (int64_t)j * W))),
               valign(cg));
  }
  lc_for_end(cg, &lk, NULL);
  lc_for_end(cg, &lp, NULL);
}

void ldmc_lc_emit_gemm(lc_cg *cg, const lc_gemm_desc *d) {
  int mr = d->mr, nr = d->nr, kc = d->kc;
  int64_t nc = d->nc, mc = d->mc, ncp = (nc + nr - 1) / nr * nr;
  char name[96];
  size_t len = 0;
  const char *base_name = LLVMGetValueName2(cg->fn, &len);
  snprintf(name, sizeof name, "%.*s.ukr_p", (int)len, base_name);
  LLVMValueRef ukr_p = emit_ukr(cg, d, name, mr, nr, 1, mr, d->bf16);
  LLVMValueRef ukr_d = NULL;
  if (!d->a_packed) {
    snprintf(name, sizeof name, "%.*s.ukr_d", (int)len, base_name);
    ukr_d = emit_ukr(cg, d, name, mr, nr, d->a_st[2], 1, false);
  }
  LLVMTypeRef ukr_ty = LLVMGlobalGetValueType(ukr_p);
  LLVMValueRef Bs = cg->scratch;
  LLVMValueRef As = lc_gep(cg, cg->i8, cg->scratch, lc_i64(cg, (kc * ncp * 4 + 63) / 64 * 64));
  int64_t ntm = (d->M + mc - 1) / mc, ntn = (d->N + nc - 1) / nc;
  lc_loop lt, lk, lm, ln;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef b = LLVMBuildUDiv(B, t, lc_i64(cg, ntm * ntn), "");
  LLVMValueRef r = LLVMBuildURem(B, t, lc_i64(cg, ntm * ntn), "");
  LLVMValueRef im = LLVMBuildUDiv(B, r, lc_i64(cg, ntn), ""), in = LLVMBuildURem(B, r, lc_i64(cg, ntn), "");
  LLVMValueRef b1 = LLVMBuildUDiv(B, b, lc_i64(cg, d->nb2), ""), b2 = LLVMBuildURem(B, b, lc_i64(cg, d->nb2), "");
  LLVMValueRef m0 = mul(cg, im, mc), m1 = imin(cg, add(cg, m0, lc_i64(cg, mc)), d->M);
  LLVMValueRef n0 = mul(cg, in, nc), n1 = imin(cg, add(cg, n0, lc_i64(cg, nc)), d->N);
  LLVMValueRef nn = LLVMBuildSub(B, n1, n0, "");
  LLVMValueRef nnp = LLVMBuildUDiv(B, add(cg, nn, lc_i64(cg, nr - 1)), lc_i64(cg, nr), "");
  LLVMValueRef cb = add(cg, add(cg, mul(cg, b1, d->c_st[0]), mul(cg, b2, d->c_st[1])), n0);
  LLVMValueRef ab = d->a_packed ? add(cg, mul(cg, b1, d->a_pb[0]), mul(cg, b2, d->a_pb[1]))
                                : add(cg, mul(cg, b1, d->a_st[0]), mul(cg, b2, d->a_st[1]));
  LLVMValueRef k0 = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->K), lc_i64(cg, kc), 0, NULL);
  LLVMValueRef kcur = imin(cg, LLVMBuildSub(B, lc_i64(cg, d->K), k0, ""), kc);
  /* panels: f32 [k][nr], or bf16 pairs over an even k extent */
  LLVMValueRef kcp = d->bf16 ? even(cg, kcur) : kcur;
  LLVMTypeRef pet = d->bf16 ? cg->i16 : cg->f32;
  int64_t Kp = d->bf16 ? (d->K + 1) & ~(int64_t)1 : d->K, Np = (d->N + nr - 1) / nr;
  LLVMValueRef Bt = Bs;
  if (d->b_packed) /* the tile's panels of block k0 in the whole-matrix layout */
    Bt = lc_gep(cg, pet, cg->buf[2], add(cg, add(cg, mul(cg, b1, d->b_pb[0]), mul(cg, b2, d->b_pb[1])),
                                         add(cg, mul(cg, k0, Np * nr), LLVMBuildMul(B, mul(cg, in, nc), kcp, ""))));
  else if (d->conv) pack_b_conv(cg, d, Bs, b1, b2, k0, kcur, n0, nn, nnp);
  else pack_b_strided(cg, d, cg->buf[2], Bs, b1, b2, k0, kcur, n0, nn, nnp);
  LLVMValueRef first = LLVMBuildICmp(B, LLVMIntEQ, k0, lc_i64(cg, 0), "");
  LLVMValueRef m = lc_for(cg, &lm, m0, m1, lc_i64(cg, mr), 0, NULL);
  LLVMValueRef mrem = imin(cg, LLVMBuildSub(B, m1, m, ""), mr);
  LLVMValueRef cm = add(cg, cb, mul(cg, m, d->c_st[2]));
  lc_if fe;
  for (int variant = 0; variant < 2; variant++) {
    /* variant 0: A as given (packed, or in place for full rows); 1: edge rows copied */
    LLVMValueRef aptr, ukr = ukr_p;
    if (d->a_packed) {
      if (variant == 1) break;
      aptr = lc_gep(cg, pet, cg->buf[1], add(cg, ab, add(cg, mul(cg, m, Kp), mul(cg, k0, mr))));
    } else if (variant == 0) {
      lc_if_begin(cg, &fe, LLVMBuildICmp(B, LLVMIntEQ, mrem, lc_i64(cg, mr), ""));
      aptr = lc_gep(cg, cg->f32, cg->buf[1], add(cg, ab, add(cg, mul(cg, m, d->a_st[2]), k0)));
      ukr = ukr_d;
    } else {
      lc_if_else(cg, &fe);
      /* As[k][i] = A(m + i, k0 + k) for i < mrem, else 0 */
      lc_loop la, li;
      LLVMValueRef kk = lc_for(cg, &la, lc_i64(cg, 0), kcur, lc_i64(cg, 1), 0, NULL);
      LLVMValueRef i = lc_for(cg, &li, lc_i64(cg, 0), lc_i64(cg, mr), lc_i64(cg, 1), 0, NULL);
      LLVMValueRef inside = LLVMBuildICmp(B, LLVMIntSLT, i, mrem, "");
      LLVMValueRef srci = add(cg, ab, add(cg, mul(cg, add(cg, m, LLVMBuildSelect(B, inside, i, lc_i64(cg, 0), "")), d->a_st[2]),
                                          add(cg, k0, kk)));
      LLVMValueRef v = lc_load(cg, cg->f32, lc_gep(cg, cg->f32, cg->buf[1], srci), 4);
      v = LLVMBuildSelect(B, inside, v, lc_f32(cg, 0.0), "");
      lc_store(cg, v, lc_gep(cg, cg->f32, As, add(cg, mul(cg, kk, mr), i)), 4);
      lc_for_end(cg, &li, NULL);
      lc_for_end(cg, &la, NULL);
      aptr = As;
    }
    LLVMValueRef np = lc_for(cg, &ln, lc_i64(cg, 0), nnp, lc_i64(cg, 1), 0, NULL);
    LLVMValueRef nrem = imin(cg, LLVMBuildSub(B, nn, mul(cg, np, nr), ""), nr);
    LLVMValueRef cbuf = d->epi_c == 2 ? cg->buf[3] : cg->buf[0]; /* f32 partials of an epilogue */
    LLVMValueRef args[7 + 6 + LC_EW_MAX_IN] = {aptr, lc_gep(cg, pet, Bt, LLVMBuildMul(B, mul(cg, np, nr), kcp, "")),
                                               lc_gep(cg, cg->f32, cbuf, add(cg, cm, mul(cg, np, nr))), kcur, mrem,
                                               nrem, first};
    int nargs = ldmc_lc_gemm_ukr_args(cg, d, args, k0, b1, b2, m, add(cg, n0, mul(cg, np, nr)));
    LLVMBuildCall2(B, ukr_ty, ukr, args, (unsigned)nargs, "");
    lc_for_end(cg, &ln, NULL);
    if (!d->a_packed && variant == 1) lc_if_end(cg, &fe);
  }
  lc_for_end(cg, &lm, NULL);
  lc_for_end(cg, &lk, NULL);
  lc_for_end(cg, &lt, NULL);
}

/* B side: the whole matrix as the GEMM's panels; tile = (batch panel, K block, column panel). */
static void emit_pack_b(lc_cg *cg, const lc_pack_desc *d) {
  lc_gemm_desc gd;
  memset(&gd, 0, sizeof gd);
  gd.dt = d->dt, gd.nr = d->nr, gd.bf16 = d->bf16;
  memcpy(gd.b_st, d->a_st, sizeof gd.b_st);
  int64_t nr = d->nr, Np = (d->N + nr - 1) / nr, nkb = (d->K + d->kc - 1) / d->kc;
  int64_t Kp = d->bf16 ? (d->K + 1) & ~(int64_t)1 : d->K;
  lc_loop lt;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef pb = LLVMBuildUDiv(B, t, lc_i64(cg, nkb * Np), ""), r = LLVMBuildURem(B, t, lc_i64(cg, nkb * Np), "");
  LLVMValueRef kb = LLVMBuildUDiv(B, r, lc_i64(cg, Np), ""), np = LLVMBuildURem(B, r, lc_i64(cg, Np), "");
  LLVMValueRef p1 = LLVMBuildUDiv(B, pb, lc_i64(cg, d->n2), ""), p2 = LLVMBuildURem(B, pb, lc_i64(cg, d->n2), "");
  LLVMValueRef k0 = mul(cg, kb, d->kc), kcur = imin(cg, LLVMBuildSub(B, lc_i64(cg, d->K), k0, ""), d->kc);
  LLVMValueRef kcp = d->bf16 ? even(cg, kcur) : kcur;
  LLVMValueRef n0 = mul(cg, np, nr), nn = imin(cg, LLVMBuildSub(B, lc_i64(cg, d->N), n0, ""), nr);
  LLVMValueRef dst = add(cg, add(cg, mul(cg, pb, Kp * Np * nr), mul(cg, k0, Np * nr)), mul(cg, LLVMBuildMul(B, np, kcp, ""), nr));
  LLVMValueRef Bs = lc_gep(cg, d->bf16 ? cg->i16 : cg->f32, cg->buf[0], dst);
  pack_b_strided(cg, &gd, cg->buf[1], Bs, p1, p2, k0, kcur, n0, nn, lc_i64(cg, 1));
  lc_for_end(cg, &lt, NULL);
}

/* A -> panels [pb][m / mr][k][mr] (f32) or [pb][m / mr][Kp / 2][mr][2] (bf16
 * pairs); one tile per (batch panel, row panel). B side: emit_pack_b. */
void ldmc_lc_emit_pack(lc_cg *cg, const lc_pack_desc *d) {
  if (d->bside) {
    emit_pack_b(cg, d);
    return;
  }
  int W = cg->W, mr = d->mr, nv = (mr + W - 1) / W;
  int64_t nmp = (d->M + mr - 1) / mr, Mp = nmp * mr, Kp = d->bf16 ? (d->K + 1) & ~(int64_t)1 : d->K;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  lc_loop lt, lk;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef pb = LLVMBuildUDiv(B, t, lc_i64(cg, nmp), ""), mp = LLVMBuildURem(B, t, lc_i64(cg, nmp), "");
  LLVMValueRef p1 = LLVMBuildUDiv(B, pb, lc_i64(cg, d->n2), ""), p2 = LLVMBuildURem(B, pb, lc_i64(cg, d->n2), "");
  LLVMValueRef m = mul(cg, mp, mr);
  LLVMValueRef src = add(cg, add(cg, mul(cg, p1, d->a_st[0]), mul(cg, p2, d->a_st[1])), mul(cg, m, d->a_st[2]));
  LLVMValueRef dst = add(cg, mul(cg, pb, Mp * Kp), mul(cg, m, Kp));
  LLVMValueRef rows = LLVMBuildSub(B, lc_i64(cg, d->M), m, "");
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->K), lc_i64(cg, d->bf16 ? 2 : 1), 0, NULL);
  LLVMValueRef dk = add(cg, dst, mul(cg, k, mr));
  LLVMValueRef k1 = add(cg, k, lc_i64(cg, 1)), hi_ok = LLVMBuildICmp(B, LLVMIntSLT, k1, lc_i64(cg, d->K), "");
  k1 = LLVMBuildSelect(B, hi_ok, k1, k, "");
  for (int v = 0; v < nv; v++) {
    LLVMValueRef inmr = lc_mask_lt(cg, lc_i64(cg, mr), W, (int64_t)v * W);
    LLVMValueRef ok = LLVMBuildAnd(B, inmr, lc_mask_lt(cg, rows, W, (int64_t)v * W), "");
    LLVMValueRef lanes = LLVMBuildMul(B, lanes64(cg, W), lc_iconst(cg, cg->i64, d->a_st[2], W), "");
    LLVMValueRef vals[2];
    for (int h = 0; h < (d->bf16 ? 2 : 1); h++) { /* column k, and k + 1 for bf16 pairs */
      LLVMValueRef okh = h ? LLVMBuildAnd(B, ok, lc_splat(cg, hi_ok, W), "") : ok;
      LLVMValueRef sk = add(cg, src, mul(cg, h ? k1 : k, d->a_st[3]));
      LLVMValueRef idx = add(cg, lc_splat(cg, add(cg, sk, lc_i64(cg, (int64_t)v * W * d->a_st[2])), W), lanes);
      idx = LLVMBuildSelect(B, okh, idx, LLVMConstNull(LLVMTypeOf(idx)), "");
      vals[h] = gather_f32(cg, dt, cg->buf[1], idx, okh);
    }
    if (!d->bf16) {
      lc_masked_store(cg, vals[0], lc_gep(cg, cg->f32, cg->buf[0], add(cg, dk, lc_i64(cg, (int64_t)v * W))), inmr);
    } else {
      LLVMValueRef in2 = lc_mask_lt(cg, lc_i64(cg, 2 * (int64_t)mr), 2 * W, 2 * (int64_t)v * W);
      lc_masked_store(cg, bf16_pairs(cg, vals[0], vals[1]),
                      lc_gep(cg, cg->i16, cg->buf[0], add(cg, dk, lc_i64(cg, 2 * (int64_t)v * W))), in2);
    }
  }
  lc_for_end(cg, &lk, NULL);
  lc_for_end(cg, &lt, NULL);
}
