/* Flash attention: for a tile of br query rows, key blocks of bc are scored
 * (S = scale q k^T, register-blocked rb rows x bc keys over the head dim),
 * folded into a running row max m and sum l (P = exp(S - m), earlier output
 * rescaled by exp(m_old - m)), and P v is accumulated into the output rows in
 * scratch. Only br x bc scores exist at a time; the N x M matrix never does.
 * The same code serves self- and cross-attention (any N, M, head sizes). */
#include <math.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

static LLVMValueRef add(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef mul(lc_cg *cg, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, lc_i64(cg, b), ""); }
static LLVMValueRef fptr(lc_cg *cg, LLVMValueRef base, LLVMValueRef idx) { return lc_gep(cg, cg->f32, base, idx); }

void ldmc_lc_emit_attn(lc_cg *cg, const lc_attn_desc *d) {
  int W = cg->W, br = d->br, bc = d->bc, rb = d->rb, nv = bc / W;
  int64_t ntile = (d->N + br - 1) / br, Ep = d->Ep;
  int ev_max = 16; /* output vectors carried per pass over a key block */
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  LLVMTypeRef vf = lc_vt(cg, cg->f32, W);
  /* scratch: S[br][bc], O[br][Ep], m[br], l[br] (f32) */
  LLVMValueRef S = cg->scratch;
  LLVMValueRef O = fptr(cg, S, lc_i64(cg, (int64_t)br * bc));
  LLVMValueRef Mx = fptr(cg, O, lc_i64(cg, (int64_t)br * Ep));
  LLVMValueRef Ls = fptr(cg, Mx, lc_i64(cg, br));
  lc_loop lt;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef b = LLVMBuildUDiv(B, t, lc_i64(cg, ntile), "");
  LLVMValueRef n0 = mul(cg, LLVMBuildURem(B, t, lc_i64(cg, ntile), ""), br);
  LLVMValueRef nrows = lc_smin64(cg, LLVMBuildSub(B, lc_i64(cg, d->N), n0, ""), lc_i64(cg, br));
  LLVMValueRef qb = add(cg, mul(cg, LLVMBuildUDiv(B, b, lc_i64(cg, d->nb2), ""), d->qs[0]),
                        mul(cg, LLVMBuildURem(B, b, lc_i64(cg, d->nb2), ""), d->qs[1]));
  LLVMValueRef ktb = mul(cg, b, d->D * d->Mp), vb = mul(cg, b, d->M * Ep);
  { /* init */
    lc_loop li, le;
    LLVMValueRef i = lc_for(cg, &li, lc_i64(cg, 0), lc_i64(cg, br), lc_i64(cg, 1), 0, NULL);
    lc_store(cg, lc_f32(cg, -INFINITY), fptr(cg, Mx, i), 4);
    lc_store(cg, lc_f32(cg, 0.0), fptr(cg, Ls, i), 4);
    LLVMValueRef e = lc_for(cg, &le, lc_i64(cg, 0), lc_i64(cg, Ep), lc_i64(cg, W), 0, NULL);
    lc_store(cg, LLVMConstNull(vf), fptr(cg, O, add(cg, mul(cg, i, Ep), e)), 4);
    lc_for_end(cg, &le, NULL);
    lc_for_end(cg, &li, NULL);
  }
  lc_loop lk;
  LLVMValueRef kb = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->M), lc_i64(cg, bc), 0, NULL);
  LLVMValueRef kn = lc_smin64(cg, LLVMBuildSub(B, lc_i64(cg, d->M), kb, ""), lc_i64(cg, bc));
  { /* S = scale * q k^T, rb rows at a time; keys past M get -inf */
    lc_loop lr, ld;
    LLVMValueRef i0 = lc_for(cg, &lr, lc_i64(cg, 0), lc_i64(cg, br), lc_i64(cg, rb), 0, NULL);
    LLVMValueRef qrow[16];
    for (int r = 0; r < rb; r++) {
      LLVMValueRef row = lc_smin64(cg, add(cg, add(cg, n0, i0), lc_i64(cg, r)), lc_i64(cg, d->N - 1));
      qrow[r] = add(cg, qb, mul(cg, row, d->qs[2]));
    }
    LLVMValueRef init[LC_MAX_CARRY];
    for (int k = 0; k < rb * nv; k++) init[k] = LLVMConstNull(vf);
    LLVMValueRef dd = lc_for(cg, &ld, lc_i64(cg, 0), lc_i64(cg, d->D), lc_i64(cg, 1), rb * nv, init);
    LLVMValueRef kt[8], next[LC_MAX_CARRY];
    LLVMValueRef krow = add(cg, ktb, add(cg, mul(cg, dd, d->Mp), kb));
    for (int j = 0; j < nv; j++) kt[j] = lc_load(cg, vf, fptr(cg, cg->buf[2], add(cg, krow, lc_i64(cg, (int64_t)j * W))), 4);
    LLVMTypeRef st = lc_store_ty(cg, dt);
    for (int r = 0; r < rb; r++) {
      LLVMValueRef qv = lc_load(cg, st, lc_gep(cg, st, cg->buf[1], add(cg, qrow[r], mul(cg, dd, d->qs[3]))),
                                (unsigned)ldmc_dtype_size(dt));
      qv = lc_to_comp(cg, dt, lc_splat(cg, qv, W));
      for (int j = 0; j < nv; j++) next[r * nv + j] = lc_fma(cg, qv, kt[j], ld.phi[r * nv + j]);
    }
    lc_for_end(cg, &ld, next);
    LLVMValueRef sc = lc_fconst(cg, d->scale, W), ninf = lc_fconst(cg, -INFINITY, W);
    for (int j = 0; j < nv; j++) {
      LLVMValueRef valid = lc_mask_lt(cg, kn, W, (int64_t)j * W);
      for (int r = 0; r < rb; r++) {
        LLVMValueRef s = LLVMBuildSelect(B, valid, LLVMBuildFMul(B, ld.phi[r * nv + j], sc, ""), ninf, "");
        lc_store(cg, s, fptr(cg, S, add(cg, mul(cg, add(cg, i0, lc_i64(cg, r)), bc), lc_i64(cg, (int64_t)j * W))), 4);
      }
    }
    lc_for_end(cg, &lr, NULL);
  }
  { /* per row: online softmax, then O += P v */
    lc_loop li;
    LLVMValueRef i = lc_for(cg, &li, lc_i64(cg, 0), nrows, lc_i64(cg, 1), 0, NULL);
    LLVMValueRef srow = mul(cg, i, bc);
    LLVMValueRef sv[8], mxv = NULL;
    for (int j = 0; j < nv; j++) {
      sv[j] = lc_load(cg, vf, fptr(cg, S, add(cg, srow, lc_i64(cg, (int64_t)j * W))), 4);
      mxv = j ? lc_fmax(cg, mxv, sv[j]) : sv[j];
    }
    LLVMValueRef mold = lc_load(cg, cg->f32, fptr(cg, Mx, i), 4);
    LLVMValueRef mnew = lc_fmax(cg, mold, lc_hreduce(cg, mxv, 1));
    LLVMValueRef alpha1 = lc_exp(cg, lc_splat(cg, LLVMBuildFSub(B, mold, mnew, ""), 1));
    LLVMValueRef alpha = LLVMBuildExtractElement(B, alpha1, lc_i32(cg, 0), "");
    LLVMValueRef mnv = lc_splat(cg, mnew, W), sum = NULL;
    for (int j = 0; j < nv; j++) {
      LLVMValueRef p = lc_exp(cg, LLVMBuildFSub(B, sv[j], mnv, ""));
      lc_store(cg, p, fptr(cg, S, add(cg, srow, lc_i64(cg, (int64_t)j * W))), 4);
      sum = j ? LLVMBuildFAdd(B, sum, p, "") : p;
    }
    LLVMValueRef l = lc_load(cg, cg->f32, fptr(cg, Ls, i), 4);
    lc_store(cg, LLVMBuildFAdd(B, LLVMBuildFMul(B, l, alpha, ""), lc_hreduce(cg, sum, 0), ""), fptr(cg, Ls, i), 4);
    lc_store(cg, mnew, fptr(cg, Mx, i), 4);
    LLVMValueRef av = lc_splat(cg, alpha, W);
    int64_t nev = Ep / W;
    for (int64_t e0 = 0; e0 < nev; e0 += ev_max) {
      int ev = (int)(nev - e0 < ev_max ? nev - e0 : ev_max);
      LLVMValueRef orow = add(cg, mul(cg, i, Ep), lc_i64(cg, e0 * W));
      LLVMValueRef init[LC_MAX_CARRY], next[LC_MAX_CARRY];
      for (int e = 0; e < ev; e++)
        init[e] = LLVMBuildFMul(B, lc_load(cg, vf, fptr(cg, O, add(cg, orow, lc_i64(cg, (int64_t)e * W))), 4), av, "");
      lc_loop lj;
      LLVMValueRef j = lc_for(cg, &lj, lc_i64(cg, 0), kn, lc_i64(cg, 1), ev, init);
      LLVMValueRef p = lc_splat(cg, lc_load(cg, cg->f32, fptr(cg, S, add(cg, srow, j)), 4), W);
      LLVMValueRef vrow = add(cg, vb, add(cg, mul(cg, add(cg, kb, j), Ep), lc_i64(cg, e0 * W)));
      for (int e = 0; e < ev; e++) {
        LLVMValueRef v = lc_load(cg, vf, fptr(cg, cg->buf[3], add(cg, vrow, lc_i64(cg, (int64_t)e * W))), 4);
        next[e] = lc_fma(cg, p, v, lj.phi[e]);
      }
      lc_for_end(cg, &lj, next);
      for (int e = 0; e < ev; e++) lc_store(cg, lj.phi[e], fptr(cg, O, add(cg, orow, lc_i64(cg, (int64_t)e * W))), 4);
    }
    lc_for_end(cg, &li, NULL);
  }
  lc_for_end(cg, &lk, NULL);
  { /* out = O / l */
    lc_loop li, le;
    LLVMValueRef i = lc_for(cg, &li, lc_i64(cg, 0), nrows, lc_i64(cg, 1), 0, NULL);
    LLVMValueRef inv = lc_splat(cg, LLVMBuildFDiv(B, lc_f32(cg, 1.0), lc_load(cg, cg->f32, fptr(cg, Ls, i), 4), ""), W);
    LLVMValueRef orow = add(cg, mul(cg, b, d->N * d->E), mul(cg, add(cg, n0, i), d->E));
    LLVMValueRef e = lc_for(cg, &le, lc_i64(cg, 0), lc_i64(cg, Ep), lc_i64(cg, W), 0, NULL);
    LLVMValueRef o = LLVMBuildFMul(B, lc_load(cg, vf, fptr(cg, O, add(cg, mul(cg, i, Ep), e)), 4), inv, "");
    LLVMValueRef mask = d->E % W ? lc_mask_lt(cg, LLVMBuildSub(B, lc_i64(cg, d->E), e, ""), W, 0) : NULL;
    lc_store_comp(cg, dt, o, cg->buf[0], add(cg, orow, e), mask);
    lc_for_end(cg, &le, NULL);
    lc_for_end(cg, &li, NULL);
  }
  lc_for_end(cg, &lt, NULL);
}
