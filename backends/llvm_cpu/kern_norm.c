/* Softmax and the normalizations (group_norm, layer_norm, each with an
 * optional fused silu). Rows are read in vectors with a masked tail; statistics
 * are two-pass (mean, then centred squares) in f32 vector partial sums. */
#include <math.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

/* sum (kind 0) or max (kind 1) over x[off + i*stride], i < len, in w-lane
 * vectors of consecutive elements (stride 1) */
static LLVMValueRef row_fold(lc_cg *cg, ldmc_dtype dt, LLVMValueRef p, LLVMValueRef off, int64_t len, int kind,
                             LLVMValueRef sub /* subtract, then square (kind 2) or exp (kind 3) */) {
  int w = cg->W;
  int64_t full = len / w * w;
  LLVMValueRef init = lc_fconst(cg, kind == 1 ? -INFINITY : 0.0, w);
  lc_loop l;
  LLVMValueRef i = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full), lc_i64(cg, w), 1, &init);
  for (int pass = 0; pass < 2; pass++) {
    LLVMValueRef mask = NULL, idx = i, acc = l.phi[0];
    if (pass == 1) {
      if (full == len) break;
      mask = lc_mask_lt(cg, lc_i64(cg, len - full), w, 0);
      idx = lc_i64(cg, full);
    }
    LLVMValueRef v = lc_load_comp(cg, dt, p, LLVMBuildAdd(B, off, idx, ""), w, mask);
    if (kind == 2) {
      v = LLVMBuildFSub(B, v, sub, "");
      v = LLVMBuildFMul(B, v, v, "");
    } else if (kind == 3) {
      v = lc_exp(cg, LLVMBuildFSub(B, v, sub, ""));
    }
    LLVMValueRef r = kind == 1 ? lc_fmax(cg, acc, v) : LLVMBuildFAdd(B, acc, v, "");
    if (mask) r = LLVMBuildSelect(B, mask, r, acc, "");
    if (pass == 0) {
      lc_for_end(cg, &l, &r);
    } else {
      return lc_hreduce(cg, r, kind == 1 ? 1 : 0);
    }
  }
  return lc_hreduce(cg, l.phi[0], kind == 1 ? 1 : 0);
}

/* ---- softmax ---- */
static void softmax_rows(lc_cg *cg, const lc_softmax_desc *d) {
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  int w = cg->W;
  int64_t len = d->len, full = len / w * w;
  lc_loop lt, lr;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef rb = LLVMBuildMul(B, t, lc_i64(cg, d->per_tile), "");
  LLVMValueRef re = lc_smin64(cg, LLVMBuildAdd(B, rb, lc_i64(cg, d->per_tile), ""), lc_i64(cg, d->outer));
  LLVMValueRef row = lc_for(cg, &lr, rb, re, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef off = LLVMBuildMul(B, row, lc_i64(cg, len), "");
  LLVMValueRef mx = lc_splat(cg, row_fold(cg, dt, cg->buf[1], off, len, 1, NULL), w);
  LLVMValueRef sum = row_fold(cg, dt, cg->buf[1], off, len, 3, mx);
  LLVMValueRef inv = lc_splat(cg, LLVMBuildFDiv(B, lc_f32(cg, 1.0), sum, ""), w);
  lc_loop l;
  LLVMValueRef i = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full), lc_i64(cg, w), 0, NULL);
  for (int pass = 0; pass < 2; pass++) {
    LLVMValueRef mask = NULL, idx = i;
    if (pass == 1) {
      lc_for_end(cg, &l, NULL);
      if (full == len) break;
      mask = lc_mask_lt(cg, lc_i64(cg, len - full), w, 0);
      idx = lc_i64(cg, full);
    }
    LLVMValueRef at = LLVMBuildAdd(B, off, idx, "");
    LLVMValueRef v = lc_load_comp(cg, dt, cg->buf[1], at, w, mask);
    v = LLVMBuildFMul(B, lc_exp(cg, LLVMBuildFSub(B, v, mx, "")), inv, "");
    lc_store_comp(cg, dt, v, cg->buf[0], at, mask);
  }
  lc_for_end(cg, &lr, NULL);
  lc_for_end(cg, &lt, NULL);
}

/* softmax over a strided axis: vectors run along the contiguous inner dim */
static void softmax_cols(lc_cg *cg, const lc_softmax_desc *d) {
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  int w = cg->W;
  int64_t inner = d->inner, nch = (inner + w - 1) / w;
  lc_loop lt;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef o = LLVMBuildSDiv(B, t, lc_i64(cg, nch), "");
  LLVMValueRef j = LLVMBuildMul(B, LLVMBuildSRem(B, t, lc_i64(cg, nch), ""), lc_i64(cg, w), "");
  LLVMValueRef mask = inner % w ? lc_mask_lt(cg, LLVMBuildSub(B, lc_i64(cg, inner), j, ""), w, 0) : NULL;
  LLVMValueRef base = LLVMBuildAdd(B, LLVMBuildMul(B, o, lc_i64(cg, d->len * inner), ""), j, "");
  LLVMValueRef mx = lc_fconst(cg, -INFINITY, w), sum = lc_fconst(cg, 0.0, w);
  for (int pass = 0; pass < 3; pass++) {
    LLVMValueRef init = pass == 0 ? mx : sum;
    lc_loop l;
    LLVMValueRef a = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, d->len), lc_i64(cg, 1), pass < 2 ? 1 : 0, &init);
    LLVMValueRef at = LLVMBuildAdd(B, base, LLVMBuildMul(B, a, lc_i64(cg, inner), ""), "");
    LLVMValueRef v = lc_load_comp(cg, dt, cg->buf[1], at, w, mask);
    LLVMValueRef next = NULL;
    if (pass == 0) {
      next = lc_fmax(cg, l.phi[0], v);
    } else {
      LLVMValueRef e = lc_exp(cg, LLVMBuildFSub(B, v, mx, ""));
      if (pass == 1) next = LLVMBuildFAdd(B, l.phi[0], e, "");
      else lc_store_comp(cg, dt, LLVMBuildFDiv(B, e, sum, ""), cg->buf[0], at, mask);
    }
    lc_for_end(cg, &l, pass < 2 ? &next : NULL);
    if (pass == 0) mx = l.phi[0];
    if (pass == 1) sum = l.phi[0];
  }
  lc_for_end(cg, &lt, NULL);
}

void ldmc_lc_emit_softmax(lc_cg *cg, const lc_softmax_desc *d) {
  if (d->inner == 1) softmax_rows(cg, d);
  else softmax_cols(cg, d);
}

/* ---- group_norm / layer_norm ---- */
void ldmc_lc_emit_norm(lc_cg *cg, const lc_norm_desc *d) {
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  int w = cg->W;
  int64_t len = d->len;
  lc_loop lt, lr;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef row = lc_for(cg, &lr, t, LLVMBuildAdd(B, t, lc_i64(cg, 1), ""), lc_i64(cg, 1), 0, NULL);
  LLVMValueRef off = LLVMBuildMul(B, row, lc_i64(cg, len), "");
  LLVMValueRef inv_n = lc_f32(cg, 1.0 / (double)(len ? len : 1));
  LLVMValueRef mean = LLVMBuildFMul(B, row_fold(cg, dt, cg->buf[1], off, len, 0, NULL), inv_n, "");
  LLVMValueRef meanv = lc_splat(cg, mean, w);
  LLVMValueRef var = LLVMBuildFMul(B, row_fold(cg, dt, cg->buf[1], off, len, 2, meanv), inv_n, "");
  LLVMValueRef sq = LLVMBuildFAdd(B, var, lc_f32(cg, d->eps), "");
  LLVMTypeRef f = cg->f32;
  LLVMValueRef rstd = LLVMBuildFDiv(B, lc_f32(cg, 1.0), lc_intr(cg, "llvm.sqrt", &f, 1, &sq, 1), "");
  LLVMValueRef rstdv = lc_splat(cg, rstd, w);
  LLVMValueRef gbase = LLVMBuildMul(B, LLVMBuildSRem(B, row, lc_i64(cg, d->gmod), ""), lc_i64(cg, d->gper), "");
  int64_t gs = d->gsize;
  /* y = x * scale + shift, scale = rstd * gamma, shift = beta - mean * scale */
  if (gs == 1) { /* gamma runs along the row */
    int64_t full = len / w * w;
    lc_loop l;
    LLVMValueRef i = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full), lc_i64(cg, w), 0, NULL);
    for (int pass = 0; pass < 2; pass++) {
      LLVMValueRef mask = NULL, idx = i;
      if (pass == 1) {
        lc_for_end(cg, &l, NULL);
        if (full == len) break;
        mask = lc_mask_lt(cg, lc_i64(cg, len - full), w, 0);
        idx = lc_i64(cg, full);
      }
      LLVMValueRef gi = LLVMBuildAdd(B, gbase, idx, "");
      LLVMValueRef gm = lc_load_comp(cg, dt, cg->buf[2], gi, w, mask), bt = lc_load_comp(cg, dt, cg->buf[3], gi, w, mask);
      LLVMValueRef at = LLVMBuildAdd(B, off, idx, "");
      LLVMValueRef x = lc_load_comp(cg, dt, cg->buf[1], at, w, mask);
      LLVMValueRef y = lc_fma(cg, LLVMBuildFMul(B, LLVMBuildFSub(B, x, meanv, ""), rstdv, ""), gm, bt);
      if (d->silu) y = lc_silu(cg, y);
      lc_store_comp(cg, dt, y, cg->buf[0], at, mask);
    }
  } else { /* one gamma per block of gs consecutive elements (a channel) */
    lc_loop lc, l;
    LLVMValueRef c = lc_for(cg, &lc, lc_i64(cg, 0), lc_i64(cg, len / gs), lc_i64(cg, 1), 0, NULL);
    LLVMValueRef gi = LLVMBuildAdd(B, gbase, c, "");
    LLVMTypeRef st = lc_store_ty(cg, dt);
    unsigned al = (unsigned)ldmc_dtype_size(dt);
    LLVMValueRef gm = lc_to_comp(cg, dt, lc_splat(cg, lc_load(cg, st, lc_gep(cg, st, cg->buf[2], gi), al), 1));
    LLVMValueRef bt = lc_to_comp(cg, dt, lc_splat(cg, lc_load(cg, st, lc_gep(cg, st, cg->buf[3], gi), al), 1));
    gm = LLVMBuildExtractElement(B, gm, lc_i32(cg, 0), "");
    bt = LLVMBuildExtractElement(B, bt, lc_i32(cg, 0), "");
    LLVMValueRef scale = LLVMBuildFMul(B, rstd, gm, "");
    LLVMValueRef shift = LLVMBuildFSub(B, bt, LLVMBuildFMul(B, mean, scale, ""), "");
    LLVMValueRef sv = lc_splat(cg, scale, w), hv = lc_splat(cg, shift, w);
    LLVMValueRef cbase = LLVMBuildAdd(B, off, LLVMBuildMul(B, c, lc_i64(cg, gs), ""), "");
    int64_t full = gs / w * w;
    LLVMValueRef i = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full), lc_i64(cg, w), 0, NULL);
    for (int pass = 0; pass < 2; pass++) {
      LLVMValueRef mask = NULL, idx = i;
      if (pass == 1) {
        lc_for_end(cg, &l, NULL);
        if (full == gs) break;
        mask = lc_mask_lt(cg, lc_i64(cg, gs - full), w, 0);
        idx = lc_i64(cg, full);
      }
      LLVMValueRef at = LLVMBuildAdd(B, cbase, idx, "");
      LLVMValueRef y = lc_fma(cg, lc_load_comp(cg, dt, cg->buf[1], at, w, mask), sv, hv);
      if (d->silu) y = lc_silu(cg, y);
      lc_store_comp(cg, dt, y, cg->buf[0], at, mask);
    }
    lc_for_end(cg, &lc, NULL);
  }
  lc_for_end(cg, &lr, NULL);
  lc_for_end(cg, &lt, NULL);
}
