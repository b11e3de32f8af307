/* rng_uniform / rng_normal (LC_K_XOP): Philox4x32-10 on W lanes, element i
 * with counter {lo32(i), hi32(i), 0, 0} and the i64 key operand split into
 * {lo32, hi32}, exactly as backends/interp/rng.c, so every element is
 * bit-identical to the interpreter whatever the tiling or thread count.
 *   uniform: (w0 >> 8) * 2^-24 (exact in f32; bf16 / f16 rounded toward zero)
 *   normal:  sqrt(-2 ln(1 - u1)) * cos(2 pi u2) in double, calling the C
 *            library's log and cos (the interpreter's), rounded once. */
#include <string.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

static LLVMValueRef libm1(lc_cg *cg, const char *name, LLVMValueRef x) {
  LLVMTypeRef f64 = LLVMDoubleTypeInContext(cg->ctx);
  LLVMTypeRef fty = LLVMFunctionType(f64, &f64, 1, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
  if (!fn) fn = LLVMAddFunction(cg->mod, name, fty);
  return LLVMBuildCall2(B, fty, fn, &x, 1, "");
}

/* per-lane call of a double -> double C function */
static LLVMValueRef libm_vec(lc_cg *cg, const char *name, LLVMValueRef v) {
  int w = lc_width(v);
  LLVMValueRef r = LLVMGetUndef(LLVMTypeOf(v));
  for (int i = 0; i < w; i++) {
    LLVMValueRef x = LLVMBuildExtractElement(B, v, lc_i32(cg, i), "");
    r = LLVMBuildInsertElement(B, r, libm1(cg, name, x), lc_i32(cg, i), "");
  }
  return r;
}

/* lo and hi 32 bits of a * b (<w x i32>, b a constant) */
static void mulhilo(lc_cg *cg, LLVMValueRef a, uint32_t b, LLVMValueRef *lo, LLVMValueRef *hi) {
  int w = lc_width(a);
  LLVMTypeRef v64 = lc_vt(cg, cg->i64, w), v32 = lc_vt(cg, cg->i32, w);
  LLVMValueRef p = LLVMBuildMul(B, LLVMBuildZExt(B, a, v64, ""), lc_iconst(cg, cg->i64, (int64_t)b, w), "");
  *lo = LLVMBuildTrunc(B, p, v32, "");
  *hi = LLVMBuildTrunc(B, LLVMBuildLShr(B, p, lc_iconst(cg, cg->i64, 32, w), ""), v32, "");
}

/* double vector -> float vector with one rounding into dt, stored form */
static LLVMValueRef f64_to_store(lc_cg *cg, ldmc_dtype dt, LLVMValueRef d) {
  int w = lc_width(d);
  LLVMTypeRef vf = lc_vt(cg, cg->f32, w), vi = lc_vt(cg, cg->i32, w);
  LLVMValueRef f = LLVMBuildFPTrunc(B, d, vf, "");
  if (dt == LDMC_F32) return f;
  /* round to odd (see ldmc_interp_f32_round_odd), then to nearest even */
  LLVMValueRef back = LLVMBuildFPExt(B, f, LLVMTypeOf(d), "");
  LLVMValueRef keep = LLVMBuildFCmp(B, LLVMRealUEQ, back, d, "");
  LLVMTypeRef fab[1] = {LLVMTypeOf(d)};
  LLVMValueRef a1[1] = {back}, a2[1] = {d};
  LLVMValueRef big = LLVMBuildFCmp(B, LLVMRealOGT, lc_intr(cg, "llvm.fabs", fab, 1, a1, 1),
                                   lc_intr(cg, "llvm.fabs", fab, 1, a2, 1), "");
  LLVMValueRef bits = LLVMBuildBitCast(B, f, vi, ""), one = lc_iconst(cg, cg->i32, 1, w);
  bits = LLVMBuildSelect(B, big, LLVMBuildSub(B, bits, one, ""), bits, "");
  bits = LLVMBuildOr(B, bits, one, "");
  f = LLVMBuildSelect(B, keep, f, LLVMBuildBitCast(B, bits, vf, ""), "");
  return lc_to_store(cg, dt, f);
}

void ldmc_lc_emit_rng(lc_cg *cg, const lc_rng_desc *d) {
  int w = cg->W;
  ldmc_dtype dt = (ldmc_dtype)d->dt;
  LLVMTypeRef v32 = lc_vt(cg, cg->i32, w), v64 = lc_vt(cg, cg->i64, w), f64 = LLVMDoubleTypeInContext(cg->ctx);
  LLVMTypeRef vd = lc_vt(cg, f64, w);
  LLVMValueRef key = lc_load(cg, cg->i64, cg->buf[1], 8);
  LLVMValueRef key0 = lc_splat(cg, LLVMBuildTrunc(B, key, cg->i32, ""), w);
  LLVMValueRef key1 = lc_splat(cg, LLVMBuildTrunc(B, LLVMBuildLShr(B, key, lc_i64(cg, 32), ""), cg->i32, ""), w);
  lc_loop lt, le;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef e0 = LLVMBuildMul(B, t, lc_i64(cg, d->per_tile), "");
  LLVMValueRef e1 = lc_smin64(cg, LLVMBuildAdd(B, e0, lc_i64(cg, d->per_tile), ""), lc_i64(cg, d->total));
  LLVMValueRef e = lc_for(cg, &le, e0, e1, lc_i64(cg, w), 0, NULL);
  LLVMValueRef mask = lc_mask_lt(cg, LLVMBuildSub(B, e1, e, ""), w, 0);
  LLVMValueRef idx = LLVMBuildAdd(B, lc_splat(cg, e, w), lc_lane_iota(cg, cg->i64, w), "");
  LLVMValueRef c0 = LLVMBuildTrunc(B, idx, v32, "");
  LLVMValueRef c1 = LLVMBuildTrunc(B, LLVMBuildLShr(B, idx, lc_iconst(cg, cg->i64, 32, w), ""), v32, "");
  LLVMValueRef c2 = LLVMConstNull(v32), c3 = LLVMConstNull(v32), k0 = key0, k1 = key1;
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = LLVMBuildAdd(B, k0, lc_iconst(cg, cg->i32, (int32_t)0x9E3779B9u, w), "");
      k1 = LLVMBuildAdd(B, k1, lc_iconst(cg, cg->i32, (int32_t)0xBB67AE85u, w), "");
    }
    LLVMValueRef lo0, hi0, lo1, hi1;
    mulhilo(cg, c0, 0xD2511F53u, &lo0, &hi0);
    mulhilo(cg, c2, 0xCD9E8D57u, &lo1, &hi1);
    LLVMValueRef n0 = LLVMBuildXor(B, LLVMBuildXor(B, hi1, c1, ""), k0, "");
    LLVMValueRef n2 = LLVMBuildXor(B, LLVMBuildXor(B, hi0, c3, ""), k1, "");
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
  }
  LLVMValueRef m0 = LLVMBuildLShr(B, c0, lc_iconst(cg, cg->i32, 8, w), "");
  LLVMValueRef st;
  if (!d->normal) {
    LLVMValueRef u = LLVMBuildFMul(B, LLVMBuildUIToFP(B, m0, lc_vt(cg, cg->f32, w), ""), lc_fconst(cg, 0x1p-24, w), "");
    if (dt == LDMC_F32) st = u;
    else if (dt == LDMC_BF16) /* truncation: toward zero */
      st = LLVMBuildTrunc(B, LLVMBuildLShr(B, LLVMBuildBitCast(B, u, v32, ""), lc_iconst(cg, cg->i32, 16, w), ""),
                          lc_vt(cg, cg->i16, w), "");
    else { /* nearest, then one step down where that rounded up */
      LLVMValueRef h = lc_to_store(cg, LDMC_F16, u);
      LLVMValueRef up = LLVMBuildFCmp(B, LLVMRealOGT, lc_to_comp(cg, LDMC_F16, h), u, "");
      st = LLVMBuildSub(B, h, LLVMBuildZExt(B, up, lc_vt(cg, cg->i16, w), ""), "");
    }
  } else {
    LLVMValueRef m1 = LLVMBuildLShr(B, c1, lc_iconst(cg, cg->i32, 8, w), "");
    LLVMValueRef sc = lc_splat(cg, LLVMConstReal(f64, 0x1p-24), w);
    LLVMValueRef u1 = LLVMBuildFMul(B, LLVMBuildUIToFP(B, m0, vd, ""), sc, "");
    LLVMValueRef u2 = LLVMBuildFMul(B, LLVMBuildUIToFP(B, m1, vd, ""), sc, "");
    LLVMValueRef l = libm_vec(cg, "log", LLVMBuildFSub(B, lc_splat(cg, LLVMConstReal(f64, 1.0), w), u1, ""));
    LLVMValueRef rr = LLVMBuildFMul(B, lc_splat(cg, LLVMConstReal(f64, -2.0), w), l, "");
    LLVMTypeRef tys[1] = {vd};
    rr = lc_intr(cg, "llvm.sqrt", tys, 1, &rr, 1);
    LLVMValueRef c = libm_vec(cg, "cos",
                              LLVMBuildFMul(B, lc_splat(cg, LLVMConstReal(f64, 6.283185307179586476925286766559), w), u2, ""));
    st = f64_to_store(cg, dt, LLVMBuildFMul(B, rr, c, ""));
  }
  (void)v64;
  lc_masked_store(cg, st, lc_gep(cg, lc_store_ty(cg, dt), cg->buf[0], e), mask);
  lc_for_end(cg, &le, NULL);
  lc_for_end(cg, &lt, NULL);
}
