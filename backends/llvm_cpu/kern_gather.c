/* gather, scatter_add and integer dot_general kernels (LC_K_XOP).
 *
 * gather copies whole rows (the inner extent, as bytes) picked by clamped
 * indices, so it is exact for every dtype. scatter_add gives each tile a
 * block of columns of one outer slice and walks the indices in order, so
 * duplicate indices accumulate deterministically and in the interpreter's
 * order: floats in an f64 scratch rounded once at the end (bit-identical to
 * backends/interp/movement.c), integers wrapping in their own width.
 * Integer products accumulate in 64 bits and wrap (as the interpreter). */
#include <string.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

static LLVMValueRef mul(lc_cg *cg, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, lc_i64(cg, b), ""); }
static LLVMValueRef add(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }

/* index element i of an i32 / i64 buffer as i64 */
static LLVMValueRef load_index(lc_cg *cg, ldmc_dtype idt, LLVMValueRef base, LLVMValueRef i) {
  LLVMTypeRef ty = idt == LDMC_I64 ? cg->i64 : cg->i32;
  LLVMValueRef v = lc_load(cg, ty, lc_gep(cg, ty, base, i), idt == LDMC_I64 ? 8 : 4);
  return idt == LDMC_I64 ? v : LLVMBuildSExt(B, v, cg->i64, "");
}

/* [t0, t1) tiles of per elements of a range of total: the element bounds */
static void tile_range(lc_cg *cg, LLVMValueRef t, int64_t per, int64_t total, LLVMValueRef *e0, LLVMValueRef *e1) {
  *e0 = mul(cg, t, per);
  *e1 = lc_smin64(cg, add(cg, *e0, lc_i64(cg, per)), lc_i64(cg, total));
}

void ldmc_lc_emit_gather(lc_cg *cg, const lc_gather_desc *d) {
  int64_t es = (int64_t)ldmc_dtype_size((ldmc_dtype)d->dt), row = d->inner * es;
  lc_loop lt, lr;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL), r0, r1;
  tile_range(cg, t, d->per_tile, d->outer * d->ni, &r0, &r1);
  LLVMValueRef r = lc_for(cg, &lr, r0, r1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef dst = lc_gep(cg, cg->i8, cg->buf[0], mul(cg, r, row));
  if (d->len == 0) { /* nothing to pick from: zeros (the interpreter's documented result) */
    LLVMBuildMemSet(B, dst, LLVMConstInt(cg->i8, 0, 0), lc_i64(cg, row), 1);
  } else {
    LLVMValueRef o = LLVMBuildUDiv(B, r, lc_i64(cg, d->ni), ""), pi = LLVMBuildURem(B, r, lc_i64(cg, d->ni), "");
    LLVMValueRef k = load_index(cg, (ldmc_dtype)d->idt, cg->buf[2], pi);
    k = lc_smin64(cg, lc_smax64(cg, k, lc_i64(cg, 0)), lc_i64(cg, d->len - 1));
    LLVMValueRef src = lc_gep(cg, cg->i8, cg->buf[1], mul(cg, add(cg, mul(cg, o, d->len), k), row));
    LLVMBuildMemCpy(B, dst, 1, src, 1, lc_i64(cg, row));
  }
  lc_for_end(cg, &lr, NULL);
  lc_for_end(cg, &lt, NULL);
}

/* element i of a float buffer as double */
static LLVMValueRef load_f64(lc_cg *cg, ldmc_dtype dt, LLVMValueRef base, LLVMValueRef i) {
  LLVMValueRef v = lc_load_comp(cg, dt, base, i, 1, NULL);
  v = LLVMBuildExtractElement(B, v, lc_i32(cg, 0), "");
  return LLVMBuildFPExt(B, v, LLVMDoubleTypeInContext(cg->ctx), "");
}

/* double -> float rounded to odd (ldmc_interp_f32_round_odd): rounding that to
 * bf16 / f16 to nearest even is one correct rounding of the double */
static LLVMValueRef round_odd(lc_cg *cg, LLVMValueRef d) {
  LLVMTypeRef dty = LLVMTypeOf(d);
  bool vec = LLVMGetTypeKind(dty) == LLVMVectorTypeKind;
  int w = vec ? lc_width(d) : 1;
  LLVMTypeRef fty = vec ? lc_vt(cg, cg->f32, w) : cg->f32, ity = vec ? lc_vt(cg, cg->i32, w) : cg->i32;
  LLVMValueRef f = LLVMBuildFPTrunc(B, d, fty, "");
  LLVMValueRef back = LLVMBuildFPExt(B, f, dty, "");
  LLVMValueRef keep = LLVMBuildFCmp(B, LLVMRealUEQ, back, d, ""); /* exact, or NaN */
  LLVMTypeRef fab[1] = {dty};
  LLVMValueRef a1[1] = {back}, a2[1] = {d};
  LLVMValueRef big = LLVMBuildFCmp(B, LLVMRealOGT, lc_intr(cg, "llvm.fabs", fab, 1, a1, 1),
                                   lc_intr(cg, "llvm.fabs", fab, 1, a2, 1), "");
  LLVMValueRef bits = LLVMBuildBitCast(B, f, ity, "");
  LLVMValueRef one = vec ? lc_iconst(cg, cg->i32, 1, w) : lc_i32(cg, 1);
  bits = LLVMBuildSelect(B, big, LLVMBuildSub(B, bits, one, ""), bits, "");
  bits = LLVMBuildOr(B, bits, one, "");
  return LLVMBuildSelect(B, keep, f, LLVMBuildBitCast(B, bits, fty, ""), "");
}

/* stores double v (scalar) into element i of a float buffer with one rounding */
static void store_f64(lc_cg *cg, ldmc_dtype dt, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i) {
  LLVMValueRef f = dt == LDMC_F32 ? LLVMBuildFPTrunc(B, v, cg->f32, "") : round_odd(cg, v);
  LLVMValueRef fv = LLVMBuildInsertElement(B, LLVMGetUndef(lc_vt(cg, cg->f32, 1)), f, lc_i32(cg, 0), "");
  lc_store_comp(cg, dt, fv, base, i, NULL);
}

void ldmc_lc_emit_scatter(lc_cg *cg, const lc_gather_desc *d) {
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  bool fl = ldmc_dtype_is_float(dt);
  int64_t jr = d->per_tile, nj = (d->inner + jr - 1) / jr;
  LLVMTypeRef f64 = LLVMDoubleTypeInContext(cg->ctx), ity = lc_store_ty(cg, dt);
  unsigned ia = (unsigned)ldmc_dtype_size(dt);
  lc_loop lt, lk, lj, lp;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef o = LLVMBuildUDiv(B, t, lc_i64(cg, nj), ""), jb = LLVMBuildURem(B, t, lc_i64(cg, nj), "");
  LLVMValueRef j0 = mul(cg, jb, jr), jn = lc_smin64(cg, LLVMBuildSub(B, lc_i64(cg, d->inner), j0, ""), lc_i64(cg, jr));
  LLVMValueRef xrow = add(cg, mul(cg, o, d->len * d->inner), j0); /* element (o, 0, j0) of x and out */
  LLVMValueRef urow = add(cg, mul(cg, o, d->ni * d->inner), j0);
  /* out = x (floats: the f64 accumulators) */
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->len), lc_i64(cg, 1), 0, NULL);
  LLVMValueRef j = lc_for(cg, &lj, lc_i64(cg, 0), jn, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef xi = add(cg, add(cg, xrow, mul(cg, k, d->inner)), j);
  if (fl) {
    lc_store(cg, load_f64(cg, dt, cg->buf[1], xi), lc_gep(cg, f64, cg->scratch, add(cg, mul(cg, k, jr), j)), 8);
  } else {
    LLVMValueRef v = lc_load(cg, ity, lc_gep(cg, ity, cg->buf[1], xi), ia);
    lc_store(cg, v, lc_gep(cg, ity, cg->buf[0], xi), ia);
  }
  lc_for_end(cg, &lj, NULL);
  lc_for_end(cg, &lk, NULL);
  /* the updates, in index order */
  LLVMValueRef p = lc_for(cg, &lp, lc_i64(cg, 0), lc_i64(cg, d->ni), lc_i64(cg, 1), 0, NULL);
  LLVMValueRef kk = load_index(cg, (ldmc_dtype)d->idt, cg->buf[2], p);
  lc_if in;
  lc_if_begin(cg, &in, LLVMBuildICmp(B, LLVMIntULT, kk, lc_i64(cg, d->len), ""));
  j = lc_for(cg, &lj, lc_i64(cg, 0), jn, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef ui = add(cg, add(cg, urow, mul(cg, p, d->inner)), j);
  if (fl) {
    LLVMValueRef at = lc_gep(cg, f64, cg->scratch, add(cg, mul(cg, kk, jr), j));
    LLVMValueRef s = LLVMBuildFAdd(B, lc_load(cg, f64, at, 8), load_f64(cg, dt, cg->buf[3], ui), "");
    lc_store(cg, s, at, 8);
  } else {
    LLVMValueRef at = lc_gep(cg, ity, cg->buf[0], add(cg, add(cg, xrow, mul(cg, kk, d->inner)), j));
    LLVMValueRef s = add(cg, lc_load(cg, ity, at, ia), lc_load(cg, ity, lc_gep(cg, ity, cg->buf[3], ui), ia));
    lc_store(cg, s, at, ia);
  }
  lc_for_end(cg, &lj, NULL);
  lc_if_end(cg, &in);
  lc_for_end(cg, &lp, NULL);
  if (fl) { /* round once */
    k = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->len), lc_i64(cg, 1), 0, NULL);
    j = lc_for(cg, &lj, lc_i64(cg, 0), jn, lc_i64(cg, 1), 0, NULL);
    LLVMValueRef v = lc_load(cg, f64, lc_gep(cg, f64, cg->scratch, add(cg, mul(cg, k, jr), j)), 8);
    store_f64(cg, dt, v, cg->buf[0], add(cg, add(cg, xrow, mul(cg, k, d->inner)), j));
    lc_for_end(cg, &lj, NULL);
    lc_for_end(cg, &lk, NULL);
  }
  lc_for_end(cg, &lt, NULL);
}

void ldmc_lc_emit_idot(lc_cg *cg, const lc_idot_desc *d) {
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  LLVMTypeRef ty = lc_store_ty(cg, dt);
  unsigned al = (unsigned)ldmc_dtype_size(dt);
  lc_loop lt, ln, lk;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef b = LLVMBuildUDiv(B, t, lc_i64(cg, d->M), ""), m = LLVMBuildURem(B, t, lc_i64(cg, d->M), "");
  LLVMValueRef b1 = LLVMBuildUDiv(B, b, lc_i64(cg, d->nb2), ""), b2 = LLVMBuildURem(B, b, lc_i64(cg, d->nb2), "");
  LLVMValueRef ab = add(cg, add(cg, mul(cg, b1, d->a_st[0]), mul(cg, b2, d->a_st[1])), mul(cg, m, d->a_st[2]));
  LLVMValueRef bb = add(cg, mul(cg, b1, d->b_st[0]), mul(cg, b2, d->b_st[1]));
  LLVMValueRef n = lc_for(cg, &ln, lc_i64(cg, 0), lc_i64(cg, d->N), lc_i64(cg, 1), 0, NULL);
  LLVMValueRef bn = add(cg, bb, mul(cg, n, d->b_st[3]));
  LLVMValueRef zero = lc_i64(cg, 0);
  LLVMValueRef k = lc_for(cg, &lk, lc_i64(cg, 0), lc_i64(cg, d->K), lc_i64(cg, 1), 1, &zero);
  LLVMValueRef av = lc_load(cg, ty, lc_gep(cg, ty, cg->buf[1], add(cg, ab, mul(cg, k, d->a_st[3]))), al);
  LLVMValueRef bv = lc_load(cg, ty, lc_gep(cg, ty, cg->buf[2], add(cg, bn, mul(cg, k, d->b_st[2]))), al);
  if (dt != LDMC_I64) av = LLVMBuildSExt(B, av, cg->i64, ""), bv = LLVMBuildSExt(B, bv, cg->i64, "");
  LLVMValueRef acc = add(cg, lk.phi[0], LLVMBuildMul(B, av, bv, ""));
  lc_for_end(cg, &lk, &acc);
  LLVMValueRef s = lk.phi[0];
  if (dt != LDMC_I64) s = LLVMBuildTrunc(B, s, ty, "");
  lc_store(cg, s, lc_gep(cg, ty, cg->buf[0], add(cg, mul(cg, t, d->N), n)), al);
  lc_for_end(cg, &ln, NULL);
  lc_for_end(cg, &lt, NULL);
}

void ldmc_lc_emit_xop(lc_cg *cg, const void *desc) {
  switch (*(const uint8_t *)desc) {
    case LC_X_GATHER: ldmc_lc_emit_gather(cg, desc); break;
    case LC_X_SCATTER: ldmc_lc_emit_scatter(cg, desc); break;
    case LC_X_RNG: ldmc_lc_emit_rng(cg, desc); break;
    case LC_X_IDOT: ldmc_lc_emit_idot(cg, desc); break;
    default: break;
  }
}
