/* Flash attention with queries in vector lanes. A tile holds W query rows of
 * one batch: q is transposed into scratch as QT[d][lane], and for each block
 * of bc keys the scores S^T[j][lane] = scale * sum_d k[j][d] QT[d][lane]
 * (register groups of jg keys, k broadcast) are folded into a running max and
 * sum that are plain vectors over the lanes — the softmax needs no horizontal
 * operations — and P v is accumulated into the output rows in scratch (rg
 * rows at a time so the FMA chains are independent). Only W x bc scores exist
 * at a time; the N x M matrix never does. Self- and cross-attention alike. */
#include <math.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

static LLVMValueRef add(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef mul(lc_cg *cg, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, lc_i64(cg, b), ""); }
static LLVMValueRef fptr(lc_cg *cg, LLVMValueRef base, LLVMValueRef idx) { return lc_gep(cg, cg->f32, base, idx); }

static LLVMValueRef load_scalar(lc_cg *cg, ldmc_dtype dt, LLVMValueRef base, LLVMValueRef idx, int w) {
  LLVMTypeRef st = lc_store_ty(cg, dt);
  LLVMValueRef v = lc_load(cg, st, lc_gep(cg, st, base, idx), (unsigned)ldmc_dtype_size(dt));
  return lc_to_comp(cg, dt, lc_splat(cg, v, w));
}

void ldmc_lc_emit_attn(lc_cg *cg, const lc_attn_desc *d) {
  int W = cg->W, bc = d->bc, jg = d->jg, rg = d->rg;
  int64_t ntile = (d->N + W - 1) / W, Ep = d->Ep, D = d->D, nev = Ep / W;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  LLVMTypeRef vf = lc_vt(cg, cg->f32, W);
  /* scratch: QT[D][W], P[bc][W], O[W][Ep] (f32) */
  LLVMValueRef QT = cg->scratch;
  LLVMValueRef P = fptr(cg, QT, lc_i64(cg, D * W));
  LLVMValueRef O = fptr(cg, P, lc_i64(cg, (int64_t)bc * W));
  lc_loop lt;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef b = LLVMBuildUDiv(B, t, lc_i64(cg, ntile), "");
  LLVMValueRef n0 = mul(cg, LLVMBuildURem(B, t, lc_i64(cg, ntile), ""), W);
  LLVMValueRef nrows = lc_smin64(cg, LLVMBuildSub(B, lc_i64(cg, d->N), n0, ""), lc_i64(cg, W));
  LLVMValueRef b1 = LLVMBuildUDiv(B, b, lc_i64(cg, d->nb2), ""), b2 = LLVMBuildURem(B, b, lc_i64(cg, d->nb2), "");
  LLVMValueRef qb = add(cg, mul(cg, b1, d->qs[0]), mul(cg, b2, d->qs[1]));
  LLVMValueRef kbase = add(cg, mul(cg, b1, d->ks[0]), mul(cg, b2, d->ks[1]));
  LLVMValueRef vb = mul(cg, b, d->M * Ep);
  { /* QT[d][i] = q[n0 + i][d] (rows past N repeat the last one); O = 0 */
    lc_loop li, ld, le;
    LLVMValueRef i = lc_for(cg, &li, lc_i64(cg, 0), lc_i64(cg, W), lc_i64(cg, 1), 0, NULL);
    LLVMValueRef row = lc_smin64(cg, add(cg, n0, i), lc_i64(cg, d->N - 1));
    LLVMValueRef qrow = add(cg, qb, mul(cg, row, d->qs[2]));
    LLVMValueRef dd = lc_for(cg, &ld, lc_i64(cg, 0), lc_i64(cg, D), lc_i64(cg, 1), 0, NULL);
    LLVMValueRef qv = LLVMBuildExtractElement(B, load_scalar(cg, dt, cg->buf[1], add(cg, qrow, mul(cg, dd, d->qs[3])), 1),
                                              lc_i32(cg, 0), "");
    lc_store(cg, qv, fptr(cg, QT, add(cg, mul(cg, dd, W), i)), 4);
    lc_for_end(cg, &ld, NULL);
    LLVMValueRef e = lc_for(cg, &le, lc_i64(cg, 0), lc_i64(cg, Ep), lc_i64(cg, W), 0, NULL);
    lc_store(cg, LLVMConstNull(vf), fptr(cg, O, add(cg, mul(cg, i, Ep), e)), 4);
    lc_for_end(cg, &le, NULL);
    lc_for_end(cg, &li, NULL);
  }
  LLVMValueRef ml[2] = {lc_fconst(cg, -INFINITY, W), LLVMConstNull(vf)}; /* running max, running sum */
  lc_loop lk;
  LLVMValueRef kb = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->M), lc_i64(cg, bc), 2, ml);
  LLVMValueRef mold = lk.phi[0], lold = lk.phi[1];
  LLVMValueRef kn = lc_smin64(cg, LLVMBuildSub(B, lc_i64(cg, d->M), kb, ""), lc_i64(cg, bc));
  LLVMValueRef bmax = lc_fconst(cg, -INFINITY, W);
  /* scores, jg keys at a time (keys past M read the last key and score -inf) */
  for (int j0 = 0; j0 < bc; j0 += jg) {
    LLVMValueRef krow[64], init[LC_MAX_CARRY], next[LC_MAX_CARRY];
    for (int j = 0; j < jg; j++) {
      LLVMValueRef kj = lc_smin64(cg, add(cg, kb, lc_i64(cg, j0 + j)), lc_i64(cg, d->M - 1));
      krow[j] = add(cg, kbase, mul(cg, kj, d->ks[2]));
      init[j] = LLVMConstNull(vf);
    }
    lc_loop ld;
    LLVMValueRef dd = lc_for(cg, &ld, lc_i64(cg, 0), lc_i64(cg, D), lc_i64(cg, 1), jg, init);
    LLVMValueRef qv = lc_load(cg, vf, fptr(cg, QT, mul(cg, dd, W)), 4);
    LLVMValueRef kofs = mul(cg, dd, d->ks[3]);
    for (int j = 0; j < jg; j++)
      next[j] = lc_fma(cg, load_scalar(cg, dt, cg->buf[2], add(cg, krow[j], kofs), W), qv, ld.phi[j]);
    lc_for_end(cg, &ld, next);
    for (int j = 0; j < jg; j++) {
      LLVMValueRef s = LLVMBuildFMul(B, ld.phi[j], lc_fconst(cg, d->scale, W), "");
      LLVMValueRef valid = LLVMBuildICmp(B, LLVMIntSLT, lc_i64(cg, j0 + j), kn, "");
      s = LLVMBuildSelect(B, valid, s, lc_fconst(cg, -INFINITY, W), "");
      lc_store(cg, s, fptr(cg, P, lc_i64(cg, (int64_t)(j0 + j) * W)), 4);
      bmax = lc_fmax(cg, bmax, s);
    }
  }
  /* online softmax, per lane */
  LLVMValueRef mnew = lc_fmax(cg, mold, bmax);
  LLVMValueRef alpha = lc_exp(cg, LLVMBuildFSub(B, mold, mnew, ""));
  LLVMValueRef lsum = LLVMBuildFMul(B, lold, alpha, "");
  for (int j = 0; j < bc; j++) {
    LLVMValueRef pp = fptr(cg, P, lc_i64(cg, (int64_t)j * W));
    LLVMValueRef pj = lc_exp(cg, LLVMBuildFSub(B, lc_load(cg, vf, pp, 4), mnew, ""));
    lc_store(cg, pj, pp, 4);
    lsum = LLVMBuildFAdd(B, lsum, pj, "");
  }
  /* O[i] = O[i] * alpha[i] + sum_j P[j][i] v[j], rg rows and up to 16 vectors of E at a time */
  for (int64_t e0 = 0; e0 < nev; e0 += 16) {
    int ev = (int)(nev - e0 < 16 ? nev - e0 : 16);
    int g = rg * ev > 24 ? (24 / ev > 0 ? 24 / ev : 1) : rg;
    for (int i0 = 0; i0 < W; i0 += g) {
      int gi = W - i0 < g ? W - i0 : g;
      LLVMValueRef init[LC_MAX_CARRY], next[LC_MAX_CARRY];
      for (int r = 0; r < gi; r++) {
        LLVMValueRef ar = lc_splat(cg, LLVMBuildExtractElement(B, alpha, lc_i32(cg, i0 + r), ""), W);
        for (int e = 0; e < ev; e++)
          init[r * ev + e] =
              LLVMBuildFMul(B, lc_load(cg, vf, fptr(cg, O, lc_i64(cg, (int64_t)(i0 + r) * Ep + (e0 + e) * W)), 4), ar, "");
      }
      lc_loop lj;
      LLVMValueRef j = lc_for(cg, &lj, lc_i64(cg, 0), kn, lc_i64(cg, 1), gi * ev, init);
      LLVMValueRef vrow = add(cg, vb, add(cg, mul(cg, add(cg, kb, j), Ep), lc_i64(cg, e0 * W)));
      LLVMValueRef vv[16];
      for (int e = 0; e < ev; e++) vv[e] = lc_load(cg, vf, fptr(cg, cg->buf[3], add(cg, vrow, lc_i64(cg, (int64_t)e * W))), 4);
      LLVMValueRef prow = mul(cg, j, W);
      for (int r = 0; r < gi; r++) {
        LLVMValueRef pr = lc_splat(cg, lc_load(cg, cg->f32, fptr(cg, P, add(cg, prow, lc_i64(cg, i0 + r))), 4), W);
        for (int e = 0; e < ev; e++) next[r * ev + e] = lc_fma(cg, pr, vv[e], lj.phi[r * ev + e]);
      }
      lc_for_end(cg, &lj, next);
      for (int r = 0; r < gi; r++)
        for (int e = 0; e < ev; e++)
          lc_store(cg, lj.phi[r * ev + e], fptr(cg, O, lc_i64(cg, (int64_t)(i0 + r) * Ep + (e0 + e) * W)), 4);
    }
  }
  LLVMValueRef mlnext[2] = {mnew, lsum};
  lc_for_end(cg, &lk, mlnext);
  { /* out[n0 + i] = O[i] / l[i] for the rows that exist */
    LLVMValueRef inv = LLVMBuildFDiv(B, lc_fconst(cg, 1.0, W), lk.phi[1], "");
    LLVMValueRef invp = fptr(cg, P, lc_i64(cg, 0)); /* P is free now: keep 1/l there */
    lc_store(cg, inv, invp, 4);
    lc_loop li, le;
    LLVMValueRef i = lc_for(cg, &li, lc_i64(cg, 0), nrows, lc_i64(cg, 1), 0, NULL);
    LLVMValueRef iv = lc_splat(cg, lc_load(cg, cg->f32, fptr(cg, invp, i), 4), W);
    LLVMValueRef orow = add(cg, mul(cg, b, d->N * d->E), mul(cg, add(cg, n0, i), d->E));
    LLVMValueRef e = lc_for(cg, &le, lc_i64(cg, 0), lc_i64(cg, Ep), lc_i64(cg, W), 0, NULL);
    LLVMValueRef o = LLVMBuildFMul(B, lc_load(cg, vf, fptr(cg, O, add(cg, mul(cg, i, Ep), e)), 4), iv, "");
    LLVMValueRef mask = d->E % W ? lc_mask_lt(cg, LLVMBuildSub(B, lc_i64(cg, d->E), e, ""), W, 0) : NULL;
    lc_store_comp(cg, dt, o, cg->buf[0], add(cg, orow, e), mask);
    lc_for_end(cg, &le, NULL);
    lc_for_end(cg, &li, NULL);
  }
  lc_for_end(cg, &lt, NULL);
}
