/* Vectorized float math emitted inline: exp, log, tanh, logistic, erf, sin,
 * cos (Cephes-style range reduction and polynomials, a few ulp), gelu and
 * silu on top of them; pow calls the C library per lane. Every function takes
 * and returns <w x float> for any w, so the same code serves AVX-512, AVX2
 * and the 1-lane scalar path. */
#include <math.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

static LLVMValueRef C(lc_cg *cg, double v, int w) { return lc_fconst(cg, v, w); }
static LLVMValueRef CI(lc_cg *cg, int64_t v, int w) { return lc_iconst(cg, cg->i32, v, w); }
static LLVMTypeRef VI(lc_cg *cg, int w) { return lc_vt(cg, cg->i32, w); }
static LLVMTypeRef VF(lc_cg *cg, int w) { return lc_vt(cg, cg->f32, w); }
static LLVMValueRef fmul(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(B, a, b, ""); }
static LLVMValueRef fadd(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(B, a, b, ""); }
static LLVMValueRef fsub(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(B, a, b, ""); }
static LLVMValueRef fsel(lc_cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSelect(B, c, a, b, ""); }
static LLVMValueRef fcmp(lc_cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFCmp(B, p, a, b, ""); }

/* Horner: c[0]*x^(n-1) + ... + c[n-1] */
static LLVMValueRef horner(lc_cg *cg, LLVMValueRef x, const double *c, int n) {
  int w = lc_width(x);
  LLVMValueRef y = C(cg, c[0], w);
  for (int i = 1; i < n; i++) y = lc_fma(cg, y, x, C(cg, c[i], w));
  return y;
}

static LLVMValueRef fabs_v(lc_cg *cg, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return lc_intr(cg, "llvm.fabs", &t, 1, &x, 1);
}
static LLVMValueRef floor_v(lc_cg *cg, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return lc_intr(cg, "llvm.floor", &t, 1, &x, 1);
}
static LLVMValueRef copysign_v(lc_cg *cg, LLVMValueRef mag, LLVMValueRef sgn) {
  LLVMTypeRef t = LLVMTypeOf(mag);
  LLVMValueRef a[2] = {mag, sgn};
  return lc_intr(cg, "llvm.copysign", &t, 1, a, 2);
}
static LLVMValueRef isnan_v(lc_cg *cg, LLVMValueRef x) { return fcmp(cg, LLVMRealUNO, x, x); }

/* 2^n for integer vector n in [-126, 127] */
static LLVMValueRef pow2i(lc_cg *cg, LLVMValueRef n, int w) {
  LLVMValueRef e = LLVMBuildShl(B, LLVMBuildAdd(B, n, CI(cg, 127, w), ""), CI(cg, 23, w), "");
  return LLVMBuildBitCast(B, e, VF(cg, w), "");
}

LLVMValueRef lc_exp(lc_cg *cg, LLVMValueRef x0) {
  int w = lc_width(x0);
  static const double p[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2, 1.6666665459E-1,
                             5.0000001201E-1};
  LLVMValueRef x = lc_fmin(cg, lc_fmax(cg, x0, C(cg, -104.0, w)), C(cg, 89.0, w));
  LLVMValueRef fx = floor_v(cg, lc_fma(cg, x, C(cg, 1.44269504088896341, w), C(cg, 0.5, w)));
  x = lc_fma(cg, fx, C(cg, -0.693359375, w), x);
  x = lc_fma(cg, fx, C(cg, 2.12194440e-4, w), x);
  LLVMValueRef z = fmul(cg, x, x);
  LLVMValueRef y = horner(cg, x, p, 6);
  y = lc_fma(cg, y, z, fadd(cg, x, C(cg, 1.0, w)));
  /* scale by 2^n as two factors so n in [-150, 128] stays representable */
  LLVMValueRef n = LLVMBuildFPToSI(B, fx, VI(cg, w), "");
  LLVMValueRef n1 = LLVMBuildAShr(B, n, CI(cg, 1, w), "");
  LLVMValueRef n2 = LLVMBuildSub(B, n, n1, "");
  y = fmul(cg, fmul(cg, y, pow2i(cg, n1, w)), pow2i(cg, n2, w));
  return fsel(cg, isnan_v(cg, x0), x0, y);
}

LLVMValueRef lc_log(lc_cg *cg, LLVMValueRef x0) {
  int w = lc_width(x0);
  static const double p[] = {7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
                             -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1};
  /* subnormals: scale up by 2^23 first */
  LLVMValueRef tiny = fcmp(cg, LLVMRealOLT, x0, C(cg, 0x1p-126, w));
  LLVMValueRef x = fsel(cg, tiny, fmul(cg, x0, C(cg, 0x1p23, w)), x0);
  LLVMValueRef bits = LLVMBuildBitCast(B, x, VI(cg, w), "");
  LLVMValueRef e = LLVMBuildSub(B, LLVMBuildLShr(B, bits, CI(cg, 23, w), ""), CI(cg, 126, w), "");
  e = LLVMBuildSub(B, e, LLVMBuildSelect(B, tiny, CI(cg, 23, w), CI(cg, 0, w), ""), "");
  LLVMValueRef m = LLVMBuildOr(B, LLVMBuildAnd(B, bits, CI(cg, 0x007fffff, w), ""), CI(cg, 0x3f000000, w), "");
  m = LLVMBuildBitCast(B, m, VF(cg, w), ""); /* [0.5, 1) */
  LLVMValueRef ef = LLVMBuildSIToFP(B, e, VF(cg, w), "");
  LLVMValueRef lt = fcmp(cg, LLVMRealOLT, m, C(cg, 0.707106781186547524, w));
  ef = fsub(cg, ef, fsel(cg, lt, C(cg, 1.0, w), C(cg, 0.0, w)));
  m = fsub(cg, fadd(cg, m, fsel(cg, lt, m, C(cg, 0.0, w))), C(cg, 1.0, w));
  LLVMValueRef z = fmul(cg, m, m);
  LLVMValueRef y = fmul(cg, fmul(cg, horner(cg, m, p, 9), m), z);
  y = lc_fma(cg, ef, C(cg, -2.12194440e-4, w), y);
  y = lc_fma(cg, z, C(cg, -0.5, w), y);
  LLVMValueRef r = fadd(cg, m, y);
  r = lc_fma(cg, ef, C(cg, 0.693359375, w), r);
  /* special values */
  r = fsel(cg, fcmp(cg, LLVMRealOEQ, x0, C(cg, INFINITY, w)), x0, r);
  r = fsel(cg, fcmp(cg, LLVMRealOEQ, x0, C(cg, 0.0, w)), C(cg, -INFINITY, w), r);
  r = fsel(cg, fcmp(cg, LLVMRealULT, x0, C(cg, 0.0, w)), C(cg, NAN, w), r); /* negative or NaN */
  return r;
}

LLVMValueRef lc_tanh(lc_cg *cg, LLVMValueRef x) {
  int w = lc_width(x);
  static const double p[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2, 1.33314422036E-1,
                             -3.33332819422E-1};
  LLVMValueRef a = fabs_v(cg, x);
  LLVMValueRef z = fmul(cg, x, x);
  LLVMValueRef small = lc_fma(cg, fmul(cg, horner(cg, z, p, 5), z), x, x);
  LLVMValueRef e = lc_exp(cg, fadd(cg, a, a));
  LLVMValueRef big = fsub(cg, C(cg, 1.0, w), LLVMBuildFDiv(B, C(cg, 2.0, w), fadd(cg, e, C(cg, 1.0, w)), ""));
  big = copysign_v(cg, big, x);
  return fsel(cg, fcmp(cg, LLVMRealOLT, a, C(cg, 0.625, w)), small, fsel(cg, isnan_v(cg, x), x, big));
}

LLVMValueRef lc_logistic(lc_cg *cg, LLVMValueRef x) {
  int w = lc_width(x);
  LLVMValueRef e = lc_exp(cg, LLVMBuildFNeg(B, x, ""));
  return LLVMBuildFDiv(B, C(cg, 1.0, w), fadd(cg, C(cg, 1.0, w), e), "");
}

LLVMValueRef lc_silu(lc_cg *cg, LLVMValueRef x) { return fmul(cg, x, lc_logistic(cg, x)); }

/* erfc(a) for a >= 0 (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7) */
static LLVMValueRef erfc_pos(lc_cg *cg, LLVMValueRef a) {
  int w = lc_width(a);
  static const double p[] = {0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
                             0.09678418, 0.37409196, 1.00002368, -1.26551223};
  LLVMValueRef t = LLVMBuildFDiv(B, C(cg, 1.0, w), lc_fma(cg, a, C(cg, 0.5, w), C(cg, 1.0, w)), "");
  LLVMValueRef q = horner(cg, t, p, 10);
  LLVMValueRef arg = fsub(cg, q, fmul(cg, a, a));
  return fmul(cg, t, lc_exp(cg, arg));
}

/* x * (1 - x^2/3 + ...): erf's Taylor series, accurate for |x| < 0.5 */
static LLVMValueRef erf_small(lc_cg *cg, LLVMValueRef x) {
  static const double p[] = {1.0 / 9360, -1.0 / 1320, 1.0 / 216, -1.0 / 42, 1.0 / 10, -1.0 / 3, 1.0};
  int w = lc_width(x);
  LLVMValueRef z = fmul(cg, x, x);
  return fmul(cg, fmul(cg, horner(cg, z, p, 7), x), C(cg, 1.1283791670955126, w));
}

LLVMValueRef lc_erf(lc_cg *cg, LLVMValueRef x) {
  int w = lc_width(x);
  LLVMValueRef a = fabs_v(cg, x);
  LLVMValueRef big = copysign_v(cg, fsub(cg, C(cg, 1.0, w), erfc_pos(cg, a)), x);
  LLVMValueRef r = fsel(cg, fcmp(cg, LLVMRealOLT, a, C(cg, 0.5, w)), erf_small(cg, x), big);
  return fsel(cg, isnan_v(cg, x), x, r);
}

/* gelu(x) = x/2 (1 + erf(x/sqrt2)), with 1 + erf(u) = erfc(-u) for u < 0 so
 * the negative tail keeps its relative accuracy */
LLVMValueRef lc_gelu(lc_cg *cg, LLVMValueRef x) {
  int w = lc_width(x);
  LLVMValueRef u = fmul(cg, x, C(cg, 0.70710678118654752, w));
  LLVMValueRef a = fabs_v(cg, u);
  LLVMValueRef ec = erfc_pos(cg, a);
  LLVMValueRef neg = fcmp(cg, LLVMRealOLT, u, C(cg, 0.0, w));
  LLVMValueRef onep = fsel(cg, neg, ec, fsub(cg, C(cg, 2.0, w), ec));
  onep = fsel(cg, fcmp(cg, LLVMRealOLT, a, C(cg, 0.5, w)), fadd(cg, C(cg, 1.0, w), erf_small(cg, u)), onep);
  LLVMValueRef r = fmul(cg, fmul(cg, x, C(cg, 0.5, w)), onep);
  /* far tails: exactly x (u > 9) or 0 (u < -13, where erfc underflows anyway) */
  r = fsel(cg, fcmp(cg, LLVMRealOGT, u, C(cg, 9.0, w)), x, r);
  return fsel(cg, isnan_v(cg, x), x, r);
}

/* sin and cos share the reduction: x = q*pi/2 + r, |r| <= pi/4 */
static LLVMValueRef lc_sincos(lc_cg *cg, LLVMValueRef x, bool is_cos) {
  int w = lc_width(x);
  static const double sp[] = {-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1};
  static const double cp[] = {2.443315711809948E-5, -1.388731625493765E-3, 4.166664568298827E-2};
  LLVMValueRef a = fabs_v(cg, x);
  LLVMValueRef j = LLVMBuildFPToSI(B, fmul(cg, a, C(cg, 1.27323954473516, w)), VI(cg, w), "");
  j = LLVMBuildAnd(B, LLVMBuildAdd(B, j, CI(cg, 1, w), ""), CI(cg, ~1, w), "");
  LLVMValueRef y = LLVMBuildSIToFP(B, j, VF(cg, w), "");
  LLVMValueRef r = lc_fma(cg, y, C(cg, -0.78515625, w), a);
  r = lc_fma(cg, y, C(cg, -2.4187564849853515625e-4, w), r);
  r = lc_fma(cg, y, C(cg, -3.77489497744594108e-8, w), r);
  LLVMValueRef z = fmul(cg, r, r);
  LLVMValueRef ps = lc_fma(cg, fmul(cg, horner(cg, z, sp, 3), z), r, r);
  LLVMValueRef pc = fmul(cg, fmul(cg, horner(cg, z, cp, 3), z), z);
  pc = fadd(cg, lc_fma(cg, z, C(cg, -0.5, w), pc), C(cg, 1.0, w));
  LLVMValueRef q = LLVMBuildLShr(B, j, CI(cg, 1, w), "");
  LLVMValueRef odd = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildAnd(B, q, CI(cg, 1, w), ""), CI(cg, 0, w), "");
  LLVMValueRef res, flip;
  if (!is_cos) {
    res = fsel(cg, odd, pc, ps);
    flip = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildAnd(B, q, CI(cg, 2, w), ""), CI(cg, 0, w), "");
    flip = LLVMBuildXor(B, flip, fcmp(cg, LLVMRealOLT, x, C(cg, 0.0, w)), "");
  } else {
    res = fsel(cg, odd, ps, pc);
    flip = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildAnd(B, LLVMBuildAdd(B, q, CI(cg, 1, w), ""), CI(cg, 2, w), ""),
                         CI(cg, 0, w), "");
  }
  res = fsel(cg, flip, LLVMBuildFNeg(B, res, ""), res);
  /* inf and NaN give NaN */
  LLVMValueRef bad = fcmp(cg, LLVMRealUGE, a, C(cg, INFINITY, w));
  res = fsel(cg, bad, C(cg, NAN, w), res);
  /* past 4096 the three-part reduction loses bits: those lanes call the C library */
  LLVMValueRef big = fcmp(cg, LLVMRealOGT, a, C(cg, 4096.0, w));
  big = LLVMBuildAnd(B, big, LLVMBuildNot(B, bad, ""), "");
  LLVMValueRef any = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildBitCast(B, big, LLVMIntTypeInContext(cg->ctx, (unsigned)w), ""),
                                   LLVMConstNull(LLVMIntTypeInContext(cg->ctx, (unsigned)w)), "");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(B);
  lc_if f;
  lc_if_begin(cg, &f, any);
  const char *name = is_cos ? "cosf" : "sinf";
  LLVMTypeRef fty = LLVMFunctionType(cg->f32, &cg->f32, 1, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
  if (!fn) fn = LLVMAddFunction(cg->mod, name, fty);
  LLVMValueRef lib = res;
  for (int i = 0; i < w; i++) {
    LLVMValueRef xi = LLVMBuildExtractElement(B, x, lc_i32(cg, i), "");
    LLVMValueRef yi = LLVMBuildCall2(B, fty, fn, &xi, 1, "");
    lib = LLVMBuildInsertElement(B, lib, yi, lc_i32(cg, i), "");
  }
  lib = fsel(cg, big, lib, res);
  LLVMBasicBlockRef then_end = LLVMGetInsertBlock(B);
  lc_if_end(cg, &f);
  LLVMValueRef phi = LLVMBuildPhi(B, LLVMTypeOf(res), "");
  LLVMValueRef vals[2] = {lib, res};
  LLVMBasicBlockRef bbs[2] = {then_end, f.else_bb};
  (void)from;
  LLVMAddIncoming(phi, vals, bbs, 2);
  return phi;
}

LLVMValueRef lc_sin(lc_cg *cg, LLVMValueRef x) { return lc_sincos(cg, x, false); }
LLVMValueRef lc_cos(lc_cg *cg, LLVMValueRef x) { return lc_sincos(cg, x, true); }

LLVMValueRef lc_pow(lc_cg *cg, LLVMValueRef x, LLVMValueRef y) {
  int w = lc_width(x);
  LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "powf");
  LLVMTypeRef args[2] = {cg->f32, cg->f32};
  LLVMTypeRef fty = LLVMFunctionType(cg->f32, args, 2, 0);
  if (!f) f = LLVMAddFunction(cg->mod, "powf", fty);
  LLVMValueRef r = LLVMGetUndef(VF(cg, w));
  for (int i = 0; i < w; i++) {
    LLVMValueRef a[2] = {LLVMBuildExtractElement(B, x, lc_i32(cg, i), ""), LLVMBuildExtractElement(B, y, lc_i32(cg, i), "")};
    r = LLVMBuildInsertElement(B, r, LLVMBuildCall2(B, fty, f, a, 2, ""), lc_i32(cg, i), "");
  }
  return r;
}
