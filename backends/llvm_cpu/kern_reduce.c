/* Reductions (sum / max / min over any dims). Two vectorized shapes:
 * "columns" when the innermost kept dim is contiguous (a vector of outputs
 * accumulates across the reduced dims), "rows" when the innermost reduced dim
 * is contiguous (vector partial results, then a horizontal combine). Other
 * layouts run the column form one lane wide. Float max/min let NaN win, as
 * the interpreter does. */
#include <math.h>
#include <stdint.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

static bool is_f(const lc_reduce_desc *d) { return ldmc_dtype_is_float((ldmc_dtype)d->dt); }

static LLVMValueRef init_val(lc_cg *cg, const lc_reduce_desc *d, int w) {
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  if (is_f(d)) return lc_fconst(cg, d->kind == LDMC_REDUCE_SUM ? 0.0 : d->kind == LDMC_REDUCE_MAX ? -INFINITY : INFINITY, w);
  LLVMTypeRef it = lc_comp_ty(cg, dt);
  int64_t mx = dt == LDMC_I32 ? INT32_MAX : INT64_MAX, mn = dt == LDMC_I32 ? INT32_MIN : INT64_MIN;
  return lc_iconst(cg, it, d->kind == LDMC_REDUCE_SUM ? 0 : d->kind == LDMC_REDUCE_MAX ? mn : mx, w);
}

static LLVMValueRef combine(lc_cg *cg, const lc_reduce_desc *d, LLVMValueRef a, LLVMValueRef b) {
  if (is_f(d)) {
    if (d->kind == LDMC_REDUCE_SUM) return LLVMBuildFAdd(B, a, b, "");
    LLVMValueRef pick = LLVMBuildFCmp(B, d->kind == LDMC_REDUCE_MAX ? LLVMRealOGT : LLVMRealOLT, a, b, "");
    LLVMValueRef r = LLVMBuildSelect(B, pick, a, b, "");
    LLVMValueRef un = LLVMBuildFCmp(B, LLVMRealUNO, a, b, "");
    return LLVMBuildSelect(B, un, lc_fconst(cg, NAN, lc_width(a)), r, "");
  }
  if (d->kind == LDMC_REDUCE_SUM) return LLVMBuildAdd(B, a, b, "");
  LLVMValueRef pick = LLVMBuildICmp(B, d->kind == LDMC_REDUCE_MAX ? LLVMIntSGT : LLVMIntSLT, a, b, "");
  return LLVMBuildSelect(B, pick, a, b, "");
}

static LLVMValueRef hcombine(lc_cg *cg, const lc_reduce_desc *d, LLVMValueRef v) {
  int w = lc_width(v);
  while (w > 1) {
    int h = w / 2;
    LLVMValueRef lo[32], hi[32];
    for (int i = 0; i < h; i++) lo[i] = lc_i32(cg, i), hi[i] = lc_i32(cg, h + i);
    LLVMValueRef a = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(lo, (unsigned)h), "");
    LLVMValueRef b = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(hi, (unsigned)h), "");
    v = combine(cg, d, a, b);
    w = h;
  }
  return v; /* <1 x T> */
}

/* Nested loops over the reduced dims [k, nr) (the last one possibly vectorized
 * by the caller); acc carried through. body(off) returns the new acc. */
typedef LLVMValueRef (*red_body)(lc_cg *cg, const lc_reduce_desc *d, LLVMValueRef off, LLVMValueRef acc, void *ctx);
static LLVMValueRef loop_reduced(lc_cg *cg, const lc_reduce_desc *d, int k, int kend, LLVMValueRef off,
                                 LLVMValueRef acc, red_body body, void *ctx) {
  if (k >= kend || k >= LDMC_MAX_RANK) return body(cg, d, off, acc, ctx); /* (kend <= nr <= LDMC_MAX_RANK) */
  lc_loop l;
  LLVMValueRef i = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, d->rdim[k]), lc_i64(cg, 1), 1, &acc);
  LLVMValueRef o = LLVMBuildAdd(B, off, LLVMBuildMul(B, i, lc_i64(cg, d->rst[k]), ""), "");
  LLVMValueRef next = loop_reduced(cg, d, k + 1, kend, o, l.phi[0], body, ctx);
  lc_for_end(cg, &l, &next);
  return l.phi[0];
}

typedef struct col_ctx {
  int w;
  LLVMValueRef mask;
} col_ctx;

static LLVMValueRef col_body(lc_cg *cg, const lc_reduce_desc *d, LLVMValueRef off, LLVMValueRef acc, void *vctx) {
  col_ctx *c = vctx;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  LLVMValueRef v;
  if (c->w == 1) {
    LLVMTypeRef st = lc_store_ty(cg, dt);
    v = lc_to_comp(cg, dt, lc_splat(cg, lc_load(cg, st, lc_gep(cg, st, cg->buf[1], off), (unsigned)ldmc_dtype_size(dt)), 1));
  } else {
    v = lc_load_comp(cg, dt, cg->buf[1], off, c->w, c->mask);
  }
  return combine(cg, d, acc, v);
}

/* output index -> input offset of the kept dims [0, upto) */
static LLVMValueRef kept_offset(lc_cg *cg, const lc_reduce_desc *d, LLVMValueRef idx, int upto) {
  LLVMValueRef off = lc_i64(cg, 0), rem = idx;
  for (int k = upto - 1; k >= 0; k--) {
    LLVMValueRef dk = lc_i64(cg, d->kdim[k]);
    LLVMValueRef ik = k > 0 ? LLVMBuildURem(B, rem, dk, "") : rem;
    if (k > 0) rem = LLVMBuildUDiv(B, rem, dk, "");
    off = LLVMBuildAdd(B, off, LLVMBuildMul(B, ik, lc_i64(cg, d->kst[k]), ""), "");
  }
  return off;
}

static void emit_columns(lc_cg *cg, const lc_reduce_desc *d, int w) {
  int64_t L = d->kdim[d->nk - 1], G = d->rows_per_tile, R = 1;
  for (int k = 0; k + 1 < d->nk; k++) R *= d->kdim[k];
  int64_t lst = d->kst[d->nk - 1];
  lc_loop lt, lr, lj;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef rb = LLVMBuildMul(B, t, lc_i64(cg, G), "");
  LLVMValueRef re = lc_smin64(cg, LLVMBuildAdd(B, rb, lc_i64(cg, G), ""), lc_i64(cg, R));
  LLVMValueRef row = lc_for(cg, &lr, rb, re, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef ibase = kept_offset(cg, d, row, d->nk - 1);
  LLVMValueRef obase = LLVMBuildMul(B, row, lc_i64(cg, L), "");
  LLVMValueRef full = lc_i64(cg, w == 1 ? L : L / w * w);
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1 && (w == 1 || L % w == 0)) break;
    LLVMValueRef j = pass == 0 ? lc_for(cg, &lj, lc_i64(cg, 0), full, lc_i64(cg, w), 0, NULL) : full;
    col_ctx c = {w, pass == 0 ? NULL : lc_mask_lt(cg, LLVMBuildSub(B, lc_i64(cg, L), full, ""), w, 0)};
    LLVMValueRef off = LLVMBuildAdd(B, ibase, LLVMBuildMul(B, j, lc_i64(cg, lst), ""), "");
    LLVMValueRef acc = loop_reduced(cg, d, 0, d->nr, off, init_val(cg, d, w), col_body, &c);
    lc_store_comp(cg, (ldmc_dtype)d->dt, acc, cg->buf[0], LLVMBuildAdd(B, obase, j, ""), c.mask);
    if (pass == 0) lc_for_end(cg, &lj, NULL);
  }
  lc_for_end(cg, &lr, NULL);
  lc_for_end(cg, &lt, NULL);
}

typedef struct row_ctx {
  int w;
  int64_t len;
} row_ctx;

/* innermost reduced dim (contiguous) in vectors, then a masked tail */
static LLVMValueRef row_body(lc_cg *cg, const lc_reduce_desc *d, LLVMValueRef off, LLVMValueRef acc, void *vctx) {
  row_ctx *c = vctx;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  int64_t full = c->len / c->w * c->w;
  lc_loop l;
  LLVMValueRef i = lc_for(cg, &l, lc_i64(cg, 0), lc_i64(cg, full), lc_i64(cg, c->w), 1, &acc);
  LLVMValueRef v = lc_load_comp(cg, dt, cg->buf[1], LLVMBuildAdd(B, off, i, ""), c->w, NULL);
  LLVMValueRef next = combine(cg, d, l.phi[0], v);
  lc_for_end(cg, &l, &next);
  acc = l.phi[0];
  if (full < c->len) {
    LLVMValueRef mask = lc_mask_lt(cg, lc_i64(cg, c->len - full), c->w, 0);
    LLVMValueRef v2 = lc_load_comp(cg, dt, cg->buf[1], LLVMBuildAdd(B, off, lc_i64(cg, full), ""), c->w, mask);
    acc = LLVMBuildSelect(B, mask, combine(cg, d, acc, v2), acc, "");
  }
  return acc;
}

static void emit_rows(lc_cg *cg, const lc_reduce_desc *d) {
  int w = cg->W;
  int64_t nout = 1, G = d->rows_per_tile;
  for (int k = 0; k < d->nk; k++) nout *= d->kdim[k];
  lc_loop lt, lo;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef ob = LLVMBuildMul(B, t, lc_i64(cg, G), "");
  LLVMValueRef oe = lc_smin64(cg, LLVMBuildAdd(B, ob, lc_i64(cg, G), ""), lc_i64(cg, nout));
  LLVMValueRef o = lc_for(cg, &lo, ob, oe, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef ibase = kept_offset(cg, d, o, d->nk);
  /* nr == 0 (nothing left to reduce after dropping unit dims): a row of one element */
  row_ctx c = {w, d->nr > 0 ? d->rdim[d->nr - 1] : 1};
  LLVMValueRef acc = loop_reduced(cg, d, 0, d->nr > 0 ? d->nr - 1 : 0, ibase, init_val(cg, d, w), row_body, &c);
  lc_store_comp(cg, (ldmc_dtype)d->dt, hcombine(cg, d, acc), cg->buf[0], o, NULL);
  lc_for_end(cg, &lo, NULL);
  lc_for_end(cg, &lt, NULL);
}

void ldmc_lc_emit_reduce(lc_cg *cg, const lc_reduce_desc *d) {
  if (d->nk > 0 && d->kst[d->nk - 1] == 1)
    emit_columns(cg, d, cg->W);
  else if (d->nr > 0 && d->rst[d->nr - 1] == 1 && cg->W > 1)
    emit_rows(cg, d);
  else if (d->nk > 0)
    emit_columns(cg, d, 1);
  else
    emit_rows(cg, d); /* everything reduced, strided: rows one lane wide still work */
}
