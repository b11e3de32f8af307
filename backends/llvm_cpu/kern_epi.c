/* The GEMM microkernel's store: the accumulator tile goes to C (stored on the
 * first K block, added on later ones), or — with a fused epilogue — on the
 * last K block each accumulator vector (plus the partial sum of the earlier
 * blocks, if any) goes through the epilogue expression (kern_ew.c's
 * evaluator, LC_EW_ACC = the accumulator) and is stored into the epilogue's
 * output in its dtype. Earlier blocks keep f32 partials in C (the output
 * itself when it is f32 with C's layout). Tiles never split K, so results do
 * not depend on the thread count. */
#include <string.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

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

/* extra ukr parameters of an epilogue, after the 7 common ones */
enum { P_LAST = 7, P_B1, P_B2, P_ROW, P_COL, P_OUT, P_IN };

int ldmc_lc_gemm_ukr_params(lc_cg *cg, const lc_gemm_desc *d, LLVMTypeRef *ps) {
  if (!d->epi.n_ins) return 7;
  ps[P_LAST] = cg->i1;
  for (int i = P_B1; i <= P_COL; i++) ps[i] = cg->i64;
  ps[P_OUT] = cg->ptr;
  for (int s = 0; s < d->epi.n_in; s++) ps[P_IN + s] = cg->ptr;
  return P_IN + d->epi.n_in;
}

int ldmc_lc_gemm_ukr_args(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef *args, LLVMValueRef k0, LLVMValueRef b1,
                          LLVMValueRef b2, LLVMValueRef row, LLVMValueRef col) {
  if (!d->epi.n_ins) return 7;
  args[P_LAST] = LLVMBuildICmp(B, LLVMIntSGE, LLVMBuildAdd(B, k0, lc_i64(cg, d->kc), ""), lc_i64(cg, d->K), "");
  args[P_B1] = b1, args[P_B2] = b2, args[P_ROW] = row, args[P_COL] = col;
  args[P_OUT] = cg->buf[0];
  for (int s = 0; s < d->epi.n_in; s++)
    args[P_IN + s] = d->epi.in[s].iota ? LLVMConstNull(cg->ptr) : cg->buf[LC_GEMM_EPI_BUF + s];
  return P_IN + d->epi.n_in;
}

/* The last K block: out(row + i, col + j) = epi(acc (+ C partial)). */
static void store_epi(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef fn, LLVMValueRef C, LLVMValueRef *acc, int mr,
                      int nv, bool partial, LLVMValueRef mrem, LLVMValueRef nrem) {
  const lc_ew_desc *e = &d->epi;
  int W = cg->W;
  LLVMTypeRef vf = lc_vt(cg, cg->f32, W);
  LLVMValueRef b1 = LLVMGetParam(fn, P_B1), b2 = LLVMGetParam(fn, P_B2);
  LLVMValueRef row = LLVMGetParam(fn, P_ROW), col = LLVMGetParam(fn, P_COL), out = LLVMGetParam(fn, P_OUT);
  LLVMValueRef ptrs[LC_EW_MAX_IN], base0[LC_EW_MAX_IN], base[LC_EW_MAX_IN];
  for (int s = 0; s < e->n_in; s++) {
    const lc_stream *st = &e->in[s];
    ptrs[s] = LLVMGetParam(fn, (unsigned)(P_IN + s));
    LLVMValueRef o = LLVMBuildAdd(B, LLVMBuildMul(B, b1, lc_i64(cg, st->st[0]), ""),
                                  LLVMBuildMul(B, b2, lc_i64(cg, st->st[1]), ""), "");
    o = LLVMBuildAdd(B, o, LLVMBuildMul(B, row, lc_i64(cg, st->st[2]), ""), "");
    base0[s] = LLVMBuildAdd(B, o, lc_i64(cg, st->off), "");
  }
  LLVMValueRef ob = LLVMBuildAdd(B, LLVMBuildMul(B, b1, lc_i64(cg, e->out.st[0]), ""),
                                 LLVMBuildMul(B, b2, lc_i64(cg, e->out.st[1]), ""), "");
  ob = LLVMBuildAdd(B, ob, LLVMBuildMul(B, row, lc_i64(cg, e->out.st[2]), ""), "");
  ob = LLVMBuildAdd(B, ob, col, "");
  for (int i = 0; i < mr; i++) {
    lc_if fr;
    if (mrem) lc_if_begin(cg, &fr, LLVMBuildICmp(B, LLVMIntSGT, mrem, lc_i64(cg, i), ""));
    for (int s = 0; s < e->n_in; s++) base[s] = LLVMBuildAdd(B, base0[s], lc_i64(cg, i * e->in[s].st[2]), "");
    for (int j = 0; j < nv; j++) {
      lc_if fc;
      LLVMValueRef mask = NULL;
      if (nrem) { /* whole vectors past the edge are skipped; W == 1 needs no mask then */
        lc_if_begin(cg, &fc, LLVMBuildICmp(B, LLVMIntSGT, nrem, lc_i64(cg, (int64_t)j * W), ""));
        if (W > 1) mask = lc_mask_lt(cg, nrem, W, (int64_t)j * W);
      }
      LLVMValueRef v = acc[i * nv + j];
      if (partial) {
        LLVMValueRef p = lc_gep(cg, cg->f32, C, lc_i64(cg, i * d->c_st[2] + j * W));
        v = LLVMBuildFAdd(B, v, mask ? lc_masked_load(cg, vf, p, mask, NULL) : lc_load(cg, vf, p, 4), "");
      }
      LLVMValueRef jpos = LLVMBuildAdd(B, col, lc_i64(cg, (int64_t)j * W), "");
      v = ldmc_lc_ew_eval(cg, e, ptrs, base, jpos, W, mask, v);
      LLVMValueRef opos = LLVMBuildAdd(B, ob, lc_i64(cg, i * e->out.st[2] + (int64_t)j * W), "");
      lc_store_comp(cg, (ldmc_dtype)e->out.dt, v, out, opos, mask);
      if (nrem) lc_if_end(cg, &fc);
    }
    if (mrem) lc_if_end(cg, &fr);
  }
}

/* the store for one (full or edge) tile shape */
static void store_variant(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef fn, LLVMValueRef C, LLVMValueRef *acc, int mr,
                          int nv, LLVMValueRef mrem, LLVMValueRef nrem) {
  LLVMValueRef first = LLVMGetParam(fn, 6);
  int64_t ldc = d->c_st[2];
  lc_if f1, f2;
  if (!d->epi.n_ins || d->epi_c) {
    if (d->epi.n_ins) {
      lc_if_begin(cg, &f2, LLVMGetParam(fn, P_LAST));
      store_epi(cg, d, fn, C, acc, mr, nv, true, mrem, nrem);
      lc_if_else(cg, &f2);
    }
    lc_if_begin(cg, &f1, first);
    store_tile(cg, C, acc, mr, nv, ldc, false, mrem, nrem);
    lc_if_else(cg, &f1);
    store_tile(cg, C, acc, mr, nv, ldc, true, mrem, nrem);
    lc_if_end(cg, &f1);
    if (d->epi.n_ins) lc_if_end(cg, &f2);
  } else { /* one K block: first and last */
    store_epi(cg, d, fn, C, acc, mr, nv, false, mrem, nrem);
  }
}

void ldmc_lc_gemm_store(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef fn, LLVMValueRef C, LLVMValueRef *acc, int mr,
                        int nr) {
  int nv = nr / cg->W;
  LLVMValueRef mrem = LLVMGetParam(fn, 4), nrem = LLVMGetParam(fn, 5);
  LLVMValueRef full = LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntEQ, mrem, lc_i64(cg, mr), ""),
                                   LLVMBuildICmp(B, LLVMIntEQ, nrem, lc_i64(cg, nr), ""), "");
  lc_if fi;
  lc_if_begin(cg, &fi, full);
  store_variant(cg, d, fn, C, acc, mr, nv, NULL, NULL);
  lc_if_else(cg, &fi);
  store_variant(cg, d, fn, C, acc, mr, nv, mrem, nrem);
  lc_if_end(cg, &fi);
}
