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

/* Stores (or adds) the accumulators; with mrem/nrem only rows < mrem and
 * columns < nrem are touched. */
static void store_tile(lc_cg *cg, LLVMValueRef C, LLVMValueRef *acc, int mr, int nv, int64_t ldc, bool add,
                       LLVMValueRef mrem, LLVMValueRef nrem) {
  int W = cg->W;
  LLVMTypeRef vf = lc_vt(cg, cg->f32, W);
  for (int i = 0; i < mr; i++) {
    lc_if fr;
    if (mrem) lc_if_begin(cg, &fr, LLVMBuildICmp(B, LLVMIntSGT, mrem, lc_i64(cg, i), ""));
    for (int j = 0; j < nv; j++) {
      LLVMValueRef p = lc_gep(cg, cg->f32, C, lc_i64(cg, i * ldc + j * W));
      LLVMValueRef v = acc[i * nv + j];
      if (!nrem) {
        if (add) v = LLVMBuildFAdd(B, v, lc_load(cg, vf, p, 4), "");
        lc_store(cg, v, p, 4);
      } else {
        LLVMValueRef mask = lc_mask_lt(cg, nrem, W, (int64_t)j * W);
        if (add) v = LLVMBuildFAdd(B, v, lc_masked_load(cg, vf, p, mask, NULL), "");
        lc_masked_store(cg, v, p, mask);
      }
    }
    if (mrem) lc_if_end(cg, &fr);
  }
}

/* void ukr(float *A, float *Bp, float *C, i64 kcur, i64 mrem, i64 nrem, i1 first)
 * A(i, k) at A[i * lda + k * ak]; Bp panel [k][nr]; C(i, j) at C[i * ldc + j]. */
static LLVMValueRef emit_ukr(lc_cg *cg, const char *name, int mr, int nr, int64_t lda, int64_t ak, int64_t ldc) {
  LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
  LLVMTypeRef ps[7] = {cg->ptr, cg->ptr, cg->ptr, cg->i64, cg->i64, cg->i64, cg->i1};
  LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->vd, ps, 7, 0));
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  ldmc_lc_set_fn_attrs(cg, fn);
  add_attr(cg, fn, LLVMAttributeFunctionIndex, "noinline");
  for (unsigned i = 1; i <= 3; i++) add_attr(cg, fn, i, "noalias");
  LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
  LLVMValueRef A = LLVMGetParam(fn, 0), Bp = LLVMGetParam(fn, 1), C = LLVMGetParam(fn, 2);
  LLVMValueRef kcur = LLVMGetParam(fn, 3), mrem = LLVMGetParam(fn, 4), nrem = LLVMGetParam(fn, 5);
  LLVMValueRef first = LLVMGetParam(fn, 6);
  int W = cg->W, nv = nr / W, na = mr * nv;
  LLVMTypeRef vf = lc_vt(cg, cg->f32, W);
  LLVMValueRef init[LC_MAX_CARRY];
  for (int i = 0; i < na; i++) init[i] = LLVMConstNull(vf);
  lc_loop l;
  LLVMValueRef k = lc_for(cg, &l, lc_i64(cg, 0), kcur, lc_i64(cg, 1), na, init);
  LLVMValueRef bv[8], next[LC_MAX_CARRY];
  LLVMValueRef brow = LLVMBuildMul(B, k, lc_i64(cg, nr), "");
  for (int j = 0; j < nv; j++)
    bv[j] = lc_load(cg, vf, lc_gep(cg, cg->f32, Bp, LLVMBuildAdd(B, brow, lc_i64(cg, j * W), "")), valign(cg));
  LLVMValueRef acol = LLVMBuildMul(B, k, lc_i64(cg, ak), "");
  for (int i = 0; i < mr; i++) {
    LLVMValueRef a = lc_load(cg, cg->f32, lc_gep(cg, cg->f32, A, LLVMBuildAdd(B, acol, lc_i64(cg, i * lda), "")), 4);
    LLVMValueRef as = lc_splat(cg, a, W);
    for (int j = 0; j < nv; j++) next[i * nv + j] = lc_fma(cg, as, bv[j], l.phi[i * nv + j]);
  }
  lc_for_end(cg, &l, next);
  LLVMValueRef full = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntEQ, mrem, lc_i64(cg, mr), ""),
                                   LLVMBuildICmp(B, LLVMIntEQ, nrem, lc_i64(cg, nr), ""), "");
  lc_if fi, f1, f2;
  lc_if_begin(cg, &fi, full);
  lc_if_begin(cg, &f1, first);
  store_tile(cg, C, l.phi, mr, nv, ldc, false, NULL, NULL);
  lc_if_else(cg, &f1);
  store_tile(cg, C, l.phi, mr, nv, ldc, true, NULL, NULL);
  lc_if_end(cg, &f1);
  lc_if_else(cg, &fi);
  lc_if_begin(cg, &f2, first);
  store_tile(cg, C, l.phi, mr, nv, ldc, false, mrem, nrem);
  lc_if_else(cg, &f2);
  store_tile(cg, C, l.phi, mr, nv, ldc, true, mrem, nrem);
  lc_if_end(cg, &f2);
  lc_if_end(cg, &fi);
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

/* Packs B[k0 .. k0+kcur) x [n0 .. n0+nn) of batch (b1, b2) into Bs. */
static void pack_b_strided(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef Bs, LLVMValueRef b1, LLVMValueRef b2,
                           LLVMValueRef k0, LLVMValueRef kcur, LLVMValueRef n0, LLVMValueRef nn, LLVMValueRef nnp) {
  int W = cg->W, nr = d->nr, nv = nr / W;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  LLVMValueRef bb = add(cg, add(cg, mul(cg, b1, d->b_st[0]), mul(cg, b2, d->b_st[1])), mul(cg, n0, d->b_st[3]));
  lc_loop lp, lk;
  LLVMValueRef np = lc_for(cg, &lp, lc_i64(cg, 0), nnp, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef nleft = LLVMBuildSub(B, nn, mul(cg, np, nr), "");
  LLVMValueRef pb = add(cg, bb, mul(cg, np, nr * d->b_st[3]));
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), kcur, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef src = add(cg, pb, mul(cg, add(cg, k0, k), d->b_st[2]));
  LLVMValueRef dst = mul(cg, add(cg, LLVMBuildMul(B, np, kcur, ""), k), nr);
  for (int j = 0; j < nv; j++) {
    LLVMValueRef mask = lc_mask_lt(cg, nleft, W, (int64_t)j * W);
    LLVMValueRef s = add(cg, src, lc_i64(cg, (int64_t)j * W * d->b_st[3]));
    LLVMValueRef v;
    if (d->b_st[3] == 1) {
      v = lc_load_comp(cg, dt, cg->buf[2], s, W, mask);
    } else {
      LLVMValueRef idx = add(cg, lc_splat(cg, s, W), LLVMBuildMul(B, lanes64(cg, W), lc_iconst(cg, cg->i64, d->b_st[3], W), ""));
      v = gather_f32(cg, dt, cg->buf[2], idx, mask);
    }
    lc_store(cg, v, lc_gep(cg, cg->f32, Bs, add(cg, dst, lc_i64(cg, (int64_t)j * W))), valign(cg));
  }
  lc_for_end(cg, &lk, NULL);
  lc_for_end(cg, &lp, NULL);
}

/* Packs the im2col matrix of a convolution input: column n is output pixel
 * (oy, ox), row k is (ci, ky, kx); taps outside the image read zero. */
static void pack_b_conv(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef Bs, LLVMValueRef b1, LLVMValueRef b2,
                        LLVMValueRef k0, LLVMValueRef kcur, LLVMValueRef n0, LLVMValueRef nn, LLVMValueRef nnp) {
  int W = cg->W, nr = d->nr, nv = nr / W;
  LLVMTypeRef vi = lc_vt(cg, cg->i64, W);
  LLVMValueRef xb = add(cg, mul(cg, b1, d->x_st[0]), mul(cg, mul(cg, b2, d->cg), d->x_st[1]));
  lc_loop lp, lk;
  LLVMValueRef np = lc_for(cg, &lp, lc_i64(cg, 0), nnp, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef iy0[8], ix0[8], okn[8], row1[8];
  for (int j = 0; j < nv; j++) {
    LLVMValueRef rel = add(cg, mul(cg, np, nr), lc_i64(cg, (int64_t)j * W));
    LLVMValueRef n = add(cg, lc_splat(cg, add(cg, n0, rel), W), lanes64(cg, W));
    okn[j] = lc_mask_lt(cg, LLVMBuildSub(B, nn, rel, ""), W, 0);
    LLVMValueRef oy = LLVMBuildUDiv(B, n, lc_iconst(cg, cg->i64, d->OW, W), "");
    LLVMValueRef ox = LLVMBuildURem(B, n, lc_iconst(cg, cg->i64, d->OW, W), "");
    iy0[j] = LLVMBuildSub(B, LLVMBuildMul(B, oy, lc_iconst(cg, cg->i64, d->sh, W), ""), lc_iconst(cg, cg->i64, d->ph, W), "");
    ix0[j] = LLVMBuildSub(B, LLVMBuildMul(B, ox, lc_iconst(cg, cg->i64, d->sw, W), ""), lc_iconst(cg, cg->i64, d->pw, W), "");
    /* unit column stride and stride 1: lanes of one output row read consecutive input */
    row1[j] = NULL;
    if (d->sw == 1 && d->x_st[3] == 1 && W > 1)
      row1[j] = LLVMBuildICmp(B, LLVMIntEQ, LLVMBuildExtractElement(B, oy, lc_i32(cg, 0), ""),
                              LLVMBuildExtractElement(B, oy, lc_i32(cg, W - 1), ""), "");
  }
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), kcur, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef kk = add(cg, k0, k);
  int64_t taps = d->kh * d->kw;
  LLVMValueRef ci = LLVMBuildUDiv(B, kk, lc_i64(cg, taps), "");
  LLVMValueRef tap = LLVMBuildURem(B, kk, lc_i64(cg, taps), "");
  LLVMValueRef ky = LLVMBuildUDiv(B, tap, lc_i64(cg, d->kw), ""), kx = LLVMBuildURem(B, tap, lc_i64(cg, d->kw), "");
  LLVMValueRef cb = add(cg, xb, mul(cg, ci, d->x_st[1]));
  LLVMValueRef base = lc_gep(cg, lc_store_ty(cg, (ldmc_dtype)d->dt), cg->buf[2], cb);
  LLVMValueRef dy = lc_splat(cg, mul(cg, ky, d->dh), W), dx = lc_splat(cg, mul(cg, kx, d->dw), W);
  LLVMValueRef dst = mul(cg, add(cg, LLVMBuildMul(B, np, kcur, ""), k), nr);
  for (int j = 0; j < nv; j++) {
    LLVMValueRef iy = add(cg, iy0[j], dy), ix = add(cg, ix0[j], dx);
    LLVMValueRef ok = LLVMBuildAnd(B, okn[j], LLVMBuildICmp(B, LLVMIntULT, iy, lc_iconst(cg, cg->i64, d->H, W), ""), "");
    ok = LLVMBuildAnd(B, ok, LLVMBuildICmp(B, LLVMIntULT, ix, lc_iconst(cg, cg->i64, d->Wd, W), ""), "");
    LLVMValueRef dptr = lc_gep(cg, cg->f32, Bs, add(cg, dst, lc_i64(cg, (int64_t)j * W)));
    lc_if fr;
    if (row1[j]) { /* the lanes lie in one output row: a contiguous masked load */
      lc_if_begin(cg, &fr, row1[j]);
      LLVMValueRef iy0s = LLVMBuildExtractElement(B, iy, lc_i32(cg, 0), "");
      LLVMValueRef ix0s = LLVMBuildExtractElement(B, ix, lc_i32(cg, 0), "");
      LLVMValueRef at = add(cg, mul(cg, iy0s, d->x_st[2]), ix0s);
      /* lanes in the padding are masked off; their addresses may lie before the
       * buffer, so this GEP is not inbounds */
      LLVMTypeRef sty = lc_store_ty(cg, (ldmc_dtype)d->dt);
      LLVMValueRef ptr = LLVMBuildGEP2(B, sty, base, &at, 1, "");
      LLVMValueRef v = lc_to_comp(cg, (ldmc_dtype)d->dt, lc_masked_load(cg, lc_vt(cg, sty, W), ptr, ok, NULL));
      lc_store(cg, v, dptr, valign(cg));
      lc_if_else(cg, &fr);
    }
    LLVMValueRef off = add(cg, LLVMBuildMul(B, iy, lc_iconst(cg, cg->i64, d->x_st[2], W), ""),
                           LLVMBuildMul(B, ix, lc_iconst(cg, cg->i64, d->x_st[3], W), ""));
    off = LLVMBuildSelect(B, ok, off, LLVMConstNull(vi), "");
    LLVMValueRef v = gather_f32(cg, (ldmc_dtype)d->dt, base, off, ok);
    lc_store(cg, v, dptr, valign(cg));
    if (row1[j]) lc_if_end(cg, &fr);
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
  LLVMValueRef ukr_p = emit_ukr(cg, name, mr, nr, 1, mr, d->c_st[2]);
  LLVMValueRef ukr_d = NULL;
  if (!d->a_packed) {
    snprintf(name, sizeof name, "%.*s.ukr_d", (int)len, base_name);
    ukr_d = emit_ukr(cg, name, mr, nr, d->a_st[2], 1, d->c_st[2]);
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
  if (d->conv) pack_b_conv(cg, d, Bs, b1, b2, k0, kcur, n0, nn, nnp);
  else pack_b_strided(cg, d, Bs, b1, b2, k0, kcur, n0, nn, nnp);
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
      aptr = lc_gep(cg, cg->f32, cg->buf[1], add(cg, ab, add(cg, mul(cg, m, d->K), mul(cg, k0, mr))));
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
    LLVMValueRef args[7] = {aptr, lc_gep(cg, cg->f32, Bs, LLVMBuildMul(B, mul(cg, np, nr), kcur, "")),
                            lc_gep(cg, cg->f32, cg->buf[0], add(cg, cm, mul(cg, np, nr))), kcur, mrem, nrem, first};
    LLVMBuildCall2(B, ukr_ty, ukr, args, 7, "");
    lc_for_end(cg, &ln, NULL);
    if (!d->a_packed && variant == 1) lc_if_end(cg, &fe);
  }
  lc_for_end(cg, &lm, NULL);
  lc_for_end(cg, &lk, NULL);
  lc_for_end(cg, &lt, NULL);
}

/* A -> f32 panels [pb][m / mr][k][mr]; one tile per (batch panel, row panel). */
void ldmc_lc_emit_pack(lc_cg *cg, const lc_pack_desc *d) {
  int W = cg->W, mr = d->mr, nv = (mr + W - 1) / W;
  int64_t nmp = (d->M + mr - 1) / mr, Mp = nmp * mr;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  lc_loop lt, lk;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef pb = LLVMBuildUDiv(B, t, lc_i64(cg, nmp), ""), mp = LLVMBuildURem(B, t, lc_i64(cg, nmp), "");
  LLVMValueRef p1 = LLVMBuildUDiv(B, pb, lc_i64(cg, d->n2), ""), p2 = LLVMBuildURem(B, pb, lc_i64(cg, d->n2), "");
  LLVMValueRef m = mul(cg, mp, mr);
  LLVMValueRef src = add(cg, add(cg, mul(cg, p1, d->a_st[0]), mul(cg, p2, d->a_st[1])), mul(cg, m, d->a_st[2]));
  LLVMValueRef dst = add(cg, mul(cg, pb, Mp * d->K), mul(cg, m, d->K));
  LLVMValueRef rows = LLVMBuildSub(B, lc_i64(cg, d->M), m, "");
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->K), lc_i64(cg, 1), 0, NULL);
  LLVMValueRef sk = add(cg, src, mul(cg, k, d->a_st[3]));
  LLVMValueRef dk = add(cg, dst, mul(cg, k, mr));
  for (int v = 0; v < nv; v++) {
    LLVMValueRef inmr = lc_mask_lt(cg, lc_i64(cg, mr), W, (int64_t)v * W);
    LLVMValueRef ok = LLVMBuildAnd(B, inmr, lc_mask_lt(cg, rows, W, (int64_t)v * W), "");
    LLVMValueRef idx = add(cg, lc_splat(cg, add(cg, sk, lc_i64(cg, (int64_t)v * W * d->a_st[2])), W),
                           LLVMBuildMul(B, lanes64(cg, W), lc_iconst(cg, cg->i64, d->a_st[2], W), ""));
    idx = LLVMBuildSelect(B, ok, idx, LLVMConstNull(LLVMTypeOf(idx)), "");
    LLVMValueRef val = gather_f32(cg, dt, cg->buf[1], idx, ok);
    lc_masked_store(cg, val, lc_gep(cg, cg->f32, cg->buf[0], add(cg, dk, lc_i64(cg, (int64_t)v * W))), inmr);
  }
  lc_for_end(cg, &lk, NULL);
  lc_for_end(cg, &lt, NULL);
}
