/* IR-building helpers shared by the kernel generators: types, constants,
 * memory access, intrinsics, loops, and dtype conversion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

void ldmc_lc_cg_init(lc_cg *cg, LLVMContextRef ctx, LLVMModuleRef mod, const lc_target *t) {
  memset(cg, 0, sizeof *cg);
  cg->ctx = ctx;
  cg->mod = mod;
  cg->b = LLVMCreateBuilderInContext(ctx);
  cg->t = t;
  cg->W = t->W;
  cg->f32 = LLVMFloatTypeInContext(ctx);
  cg->i1 = LLVMInt1TypeInContext(ctx);
  cg->i8 = LLVMInt8TypeInContext(ctx);
  cg->i16 = LLVMInt16TypeInContext(ctx);
  cg->i32 = LLVMInt32TypeInContext(ctx);
  cg->i64 = LLVMInt64TypeInContext(ctx);
  cg->ptr = LLVMPointerTypeInContext(ctx, 0);
  cg->vd = LLVMVoidTypeInContext(ctx);
}

void ldmc_lc_cg_dispose(lc_cg *cg) {
  if (cg->b) LLVMDisposeBuilder(cg->b);
  cg->b = NULL;
}

static void add_str_attr(lc_cg *cg, LLVMValueRef fn, const char *k, const char *v) {
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(cg->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v)));
}

static void add_enum_attr(lc_cg *cg, LLVMValueRef fn, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

void ldmc_lc_set_fn_attrs(lc_cg *cg, LLVMValueRef fn) {
  add_str_attr(cg, fn, "target-cpu", cg->t->cpu);
  if (cg->t->features[0]) add_str_attr(cg, fn, "target-features", cg->t->features);
  if (cg->t->isa == LDMC_LLVM_CPU_ISA_AVX512) { /* keep 512-bit vectors whole */
    add_str_attr(cg, fn, "prefer-vector-width", "512");
    add_str_attr(cg, fn, "min-legal-vector-width", "512");
  }
  add_enum_attr(cg, fn, LLVMAttributeFunctionIndex, "nounwind");
}

void ldmc_lc_emit_kernel(lc_cg *cg, const lc_kernel *k, const char *name) {
  /* body: internal, always inlined, noalias buffer pointers */
  LLVMTypeRef bp[LC_MAX_BUFS + 3];
  int nb = k->n_bufs;
  for (int i = 0; i < nb; i++) bp[i] = cg->ptr;
  bp[nb] = cg->i64, bp[nb + 1] = cg->i64, bp[nb + 2] = cg->ptr;
  char bname[64];
  snprintf(bname, sizeof bname, "%s.body", name);
  LLVMValueRef body = LLVMAddFunction(cg->mod, bname, LLVMFunctionType(cg->vd, bp, (unsigned)nb + 3, 0));
  LLVMSetLinkage(body, LLVMInternalLinkage);
  ldmc_lc_set_fn_attrs(cg, body);
  add_enum_attr(cg, body, LLVMAttributeFunctionIndex, "alwaysinline");
  for (int i = 0; i < nb; i++) add_enum_attr(cg, body, (unsigned)i + 1, "noalias");
  add_enum_attr(cg, body, (unsigned)nb + 3, "noalias");
  /* wrapper with the kernel ABI */
  LLVMTypeRef wp[4] = {cg->ptr, cg->i64, cg->i64, cg->ptr};
  LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->vd, wp, 4, 0));
  ldmc_lc_set_fn_attrs(cg, fn);
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
  LLVMValueRef args[LC_MAX_BUFS + 3];
  LLVMValueRef bufs = LLVMGetParam(fn, 0);
  for (int i = 0; i < nb; i++) args[i] = lc_load(cg, cg->ptr, lc_gep(cg, cg->ptr, bufs, lc_i64(cg, i)), 8);
  args[nb] = LLVMGetParam(fn, 1), args[nb + 1] = LLVMGetParam(fn, 2), args[nb + 2] = LLVMGetParam(fn, 3);
  LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(body), body, args, (unsigned)nb + 3, "");
  LLVMBuildRetVoid(cg->b);
  /* the body */
  cg->fn = body;
  for (int i = 0; i < nb; i++) cg->buf[i] = LLVMGetParam(body, (unsigned)i);
  cg->t0 = LLVMGetParam(body, (unsigned)nb);
  cg->t1 = LLVMGetParam(body, (unsigned)nb + 1);
  cg->scratch = LLVMGetParam(body, (unsigned)nb + 2);
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, body, "entry"));
  switch (k->kind) {
    case LC_K_EW: ldmc_lc_emit_ew(cg, k->desc); break;
    case LC_K_REDUCE: ldmc_lc_emit_reduce(cg, k->desc); break;
    case LC_K_SOFTMAX: ldmc_lc_emit_softmax(cg, k->desc); break;
    case LC_K_NORM: ldmc_lc_emit_norm(cg, k->desc); break;
    case LC_K_PACK: ldmc_lc_emit_pack(cg, k->desc); break;
    case LC_K_GEMM: ldmc_lc_emit_gemm(cg, k->desc); break;
    case LC_K_ATTN: ldmc_lc_emit_attn(cg, k->desc); break;
    case LC_K_XOP: ldmc_lc_emit_xop(cg, k->desc); break;
    case LC_K_ATTN_GRAD: ldmc_lc_emit_attn_grad(cg, k->desc); break;
    default: break;
  }
  LLVMBuildRetVoid(cg->b);
}

/* ---- constants and types ---- */
LLVMTypeRef lc_vt(lc_cg *cg, LLVMTypeRef elt, int w) {
  (void)cg;
  return LLVMVectorType(elt, (unsigned)w);
}
LLVMValueRef lc_i64(lc_cg *cg, int64_t v) { return LLVMConstInt(cg->i64, (unsigned long long)v, 1); }
LLVMValueRef lc_i32(lc_cg *cg, int32_t v) { return LLVMConstInt(cg->i32, (unsigned long long)(int64_t)v, 1); }
LLVMValueRef lc_f32(lc_cg *cg, double v) { return LLVMConstReal(cg->f32, v); }

LLVMValueRef lc_splat(lc_cg *cg, LLVMValueRef s, int w) {
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)w);
  if (LLVMIsConstant(s)) {
    LLVMValueRef e[64];
    for (int i = 0; i < w; i++) e[i] = s;
    return LLVMConstVector(e, (unsigned)w);
  }
  LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), s, lc_i32(cg, 0), "");
  return LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(cg->i32, (unsigned)w)), "");
}
LLVMValueRef lc_fconst(lc_cg *cg, double v, int w) { return lc_splat(cg, lc_f32(cg, v), w); }
LLVMValueRef lc_iconst(lc_cg *cg, LLVMTypeRef ity, int64_t v, int w) {
  return lc_splat(cg, LLVMConstInt(ity, (unsigned long long)v, 1), w);
}
LLVMValueRef lc_lane_iota(lc_cg *cg, LLVMTypeRef ity, int w) {
  (void)cg;
  LLVMValueRef e[64];
  for (int i = 0; i < w; i++) e[i] = LLVMConstInt(ity, (unsigned long long)i, 0);
  return LLVMConstVector(e, (unsigned)w);
}
int lc_width(LLVMValueRef v) { return (int)LLVMGetVectorSize(LLVMTypeOf(v)); }

/* ---- memory ---- */
LLVMValueRef lc_gep(lc_cg *cg, LLVMTypeRef elt, LLVMValueRef p, LLVMValueRef idx) {
  return LLVMBuildInBoundsGEP2(cg->b, elt, p, &idx, 1, "");
}
LLVMValueRef lc_load(lc_cg *cg, LLVMTypeRef ty, LLVMValueRef p, unsigned align) {
  LLVMValueRef v = LLVMBuildLoad2(cg->b, ty, p, "");
  LLVMSetAlignment(v, align);
  return v;
}
void lc_store(lc_cg *cg, LLVMValueRef v, LLVMValueRef p, unsigned align) {
  LLVMValueRef s = LLVMBuildStore(cg->b, v, p);
  LLVMSetAlignment(s, align);
}

LLVMValueRef lc_mask_lt(lc_cg *cg, LLVMValueRef n, int w, int64_t lane0) {
  LLVMValueRef e[64];
  for (int i = 0; i < w; i++) e[i] = lc_i64(cg, lane0 + i);
  LLVMValueRef lanes = LLVMConstVector(e, (unsigned)w);
  return LLVMBuildICmp(cg->b, LLVMIntSLT, lanes, lc_splat(cg, n, w), "");
}

static unsigned elt_align(LLVMTypeRef vty) {
  LLVMTypeRef e = LLVMGetTypeKind(vty) == LLVMVectorTypeKind ? LLVMGetElementType(vty) : vty;
  switch (LLVMGetTypeKind(e)) {
    case LLVMFloatTypeKind: return 4;
    case LLVMIntegerTypeKind: {
      unsigned bits = LLVMGetIntTypeWidth(e);
      return bits <= 8 ? 1 : bits / 8;
    }
    default: return 8;
  }
}

LLVMValueRef lc_masked_load(lc_cg *cg, LLVMTypeRef vty, LLVMValueRef p, LLVMValueRef mask, LLVMValueRef passthru) {
  LLVMTypeRef tys[2] = {vty, cg->ptr};
  LLVMValueRef args[4] = {p, lc_i32(cg, (int32_t)elt_align(vty)), mask, passthru ? passthru : LLVMConstNull(vty)};
  return lc_intr(cg, "llvm.masked.load", tys, 2, args, 4);
}

void lc_masked_store(lc_cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) {
  LLVMTypeRef tys[2] = {LLVMTypeOf(v), cg->ptr};
  LLVMValueRef args[4] = {v, p, lc_i32(cg, (int32_t)elt_align(LLVMTypeOf(v))), mask};
  lc_intr(cg, "llvm.masked.store", tys, 2, args, 4);
}

LLVMValueRef lc_gather(lc_cg *cg, LLVMTypeRef elt, LLVMValueRef base, LLVMValueRef idx_vec, int w) {
  LLVMValueRef ptrs = LLVMBuildInBoundsGEP2(cg->b, elt, base, &idx_vec, 1, "");
  LLVMTypeRef vty = LLVMVectorType(elt, (unsigned)w);
  LLVMValueRef ones[64];
  for (int i = 0; i < w; i++) ones[i] = LLVMConstInt(cg->i1, 1, 0);
  LLVMTypeRef tys[2] = {vty, LLVMVectorType(cg->ptr, (unsigned)w)};
  LLVMValueRef args[4] = {ptrs, lc_i32(cg, (int32_t)elt_align(elt)), LLVMConstVector(ones, (unsigned)w),
                          LLVMGetUndef(vty)};
  return lc_intr(cg, "llvm.masked.gather", tys, 2, args, 4);
}

LLVMValueRef lc_intr(lc_cg *cg, const char *name, LLVMTypeRef *tys, int nt, LLVMValueRef *args, int na) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, tys, (size_t)nt);
  LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, tys, (size_t)nt);
  return LLVMBuildCall2(cg->b, fty, f, args, (unsigned)na, "");
}

LLVMValueRef lc_fma(lc_cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMTypeRef t = LLVMTypeOf(a);
  LLVMValueRef args[3] = {a, b, c};
  return lc_intr(cg, "llvm.fma", &t, 1, args, 3);
}
LLVMValueRef lc_fmax(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) {
  LLVMTypeRef t = LLVMTypeOf(a);
  LLVMValueRef args[2] = {a, b};
  return lc_intr(cg, "llvm.maxnum", &t, 1, args, 2);
}
LLVMValueRef lc_fmin(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) {
  LLVMTypeRef t = LLVMTypeOf(a);
  LLVMValueRef args[2] = {a, b};
  return lc_intr(cg, "llvm.minnum", &t, 1, args, 2);
}
LLVMValueRef lc_smin64(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, ""), a, b, "");
}
LLVMValueRef lc_smax64(lc_cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, a, b, ""), a, b, "");
}

LLVMValueRef lc_hreduce(lc_cg *cg, LLVMValueRef v, int kind) {
  int w = lc_width(v);
  while (w > 1) {
    int h = w / 2;
    LLVMValueRef lo[32], hi[32];
    for (int i = 0; i < h; i++) lo[i] = lc_i32(cg, i), hi[i] = lc_i32(cg, h + i);
    LLVMValueRef a = LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(lo, (unsigned)h), "");
    LLVMValueRef b = LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(hi, (unsigned)h), "");
    v = kind == 0 ? LLVMBuildFAdd(cg->b, a, b, "") : kind == 1 ? lc_fmax(cg, a, b) : lc_fmin(cg, a, b);
    w = h;
  }
  return LLVMBuildExtractElement(cg->b, v, lc_i32(cg, 0), "");
}

/* ---- control flow ---- */
LLVMValueRef lc_for(lc_cg *cg, lc_loop *l, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step, int n,
                    LLVMValueRef *init) {
  memset(l, 0, sizeof *l);
  l->pre = LLVMGetInsertBlock(cg->b);
  LLVMValueRef fn = LLVMGetBasicBlockParent(l->pre);
  l->header = LLVMAppendBasicBlockInContext(cg->ctx, fn, "loop");
  l->body = LLVMAppendBasicBlockInContext(cg->ctx, fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(cg->ctx, fn, "exit");
  l->step = step;
  l->n = n;
  LLVMBuildBr(cg->b, l->header);
  LLVMPositionBuilderAtEnd(cg->b, l->header);
  l->iv = LLVMBuildPhi(cg->b, cg->i64, "i");
  LLVMAddIncoming(l->iv, &start, &l->pre, 1);
  for (int i = 0; i < n; i++) {
    l->phi[i] = LLVMBuildPhi(cg->b, LLVMTypeOf(init[i]), "");
    LLVMAddIncoming(l->phi[i], &init[i], &l->pre, 1);
  }
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, l->iv, end, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(cg->b, l->body);
  return l->iv;
}

void lc_for_end(lc_cg *cg, lc_loop *l, LLVMValueRef *next) {
  LLVMValueRef inc = LLVMBuildAdd(cg->b, l->iv, l->step, "");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(cg->b);
  LLVMBuildBr(cg->b, l->header);
  LLVMAddIncoming(l->iv, &inc, &from, 1);
  for (int i = 0; i < l->n; i++) LLVMAddIncoming(l->phi[i], &next[i], &from, 1);
  LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

void lc_if_begin(lc_cg *cg, lc_if *f, LLVMValueRef cond) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
  f->then_bb = LLVMAppendBasicBlockInContext(cg->ctx, fn, "then");
  f->else_bb = LLVMAppendBasicBlockInContext(cg->ctx, fn, "else");
  f->join = LLVMAppendBasicBlockInContext(cg->ctx, fn, "join");
  f->has_else = false;
  LLVMBuildCondBr(cg->b, cond, f->then_bb, f->else_bb);
  LLVMPositionBuilderAtEnd(cg->b, f->then_bb);
}
void lc_if_else(lc_cg *cg, lc_if *f) {
  LLVMBuildBr(cg->b, f->join);
  LLVMPositionBuilderAtEnd(cg->b, f->else_bb);
  f->has_else = true;
}
void lc_if_end(lc_cg *cg, lc_if *f) {
  LLVMBuildBr(cg->b, f->join);
  if (!f->has_else) {
    LLVMPositionBuilderAtEnd(cg->b, f->else_bb);
    LLVMBuildBr(cg->b, f->join);
  }
  LLVMPositionBuilderAtEnd(cg->b, f->join);
}

/* ---- dtypes ---- */
LLVMTypeRef lc_store_ty(lc_cg *cg, ldmc_dtype dt) {
  switch (dt) {
    case LDMC_F32: return cg->f32;
    case LDMC_BF16:
    case LDMC_F16: return cg->i16;
    case LDMC_I32: return cg->i32;
    case LDMC_I64: return cg->i64;
    default: return cg->i8;
  }
}
LLVMTypeRef lc_comp_ty(lc_cg *cg, ldmc_dtype dt) {
  switch (dt) {
    case LDMC_F32:
    case LDMC_BF16:
    case LDMC_F16: return cg->f32;
    case LDMC_I32: return cg->i32;
    case LDMC_I64: return cg->i64;
    default: return cg->i1;
  }
}

/* f16 bits (as <w x i32>) -> float: normal, subnormal, inf/nan by bit arithmetic */
static LLVMValueRef f16_to_f32(lc_cg *cg, LLVMValueRef h, int w) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef vi = lc_vt(cg, cg->i32, w), vf = lc_vt(cg, cg->f32, w);
  LLVMValueRef sign = LLVMBuildShl(b, LLVMBuildAnd(b, h, lc_iconst(cg, cg->i32, 0x8000, w), ""), lc_iconst(cg, cg->i32, 16, w), "");
  LLVMValueRef em = LLVMBuildAnd(b, h, lc_iconst(cg, cg->i32, 0x7fff, w), "");
  /* normal/subnormal: (em << 13) as float * 2^112 handles both exactly */
  LLVMValueRef f = LLVMBuildBitCast(b, LLVMBuildShl(b, em, lc_iconst(cg, cg->i32, 13, w), ""), vf, "");
  f = LLVMBuildFMul(b, f, lc_fconst(cg, 0x1p112, w), "");
  LLVMValueRef fi = LLVMBuildBitCast(b, f, vi, "");
  /* inf / nan: exponent all ones */
  LLVMValueRef special = LLVMBuildICmp(b, LLVMIntUGE, em, lc_iconst(cg, cg->i32, 0x7c00, w), "");
  LLVMValueRef sp = LLVMBuildOr(b, LLVMBuildShl(b, em, lc_iconst(cg, cg->i32, 13, w), ""), lc_iconst(cg, cg->i32, 0x7f800000, w), "");
  fi = LLVMBuildSelect(b, special, sp, fi, "");
  return LLVMBuildBitCast(b, LLVMBuildOr(b, fi, sign, ""), vf, "");
}

/* float -> f16 bits (<w x i32>), round to nearest even */
static LLVMValueRef f32_to_f16(lc_cg *cg, LLVMValueRef f, int w) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef vi = lc_vt(cg, cg->i32, w), vf = lc_vt(cg, cg->f32, w);
  LLVMValueRef u = LLVMBuildBitCast(b, f, vi, "");
  LLVMValueRef sign = LLVMBuildAnd(b, LLVMBuildLShr(b, u, lc_iconst(cg, cg->i32, 16, w), ""), lc_iconst(cg, cg->i32, 0x8000, w), "");
  LLVMValueRef a = LLVMBuildAnd(b, u, lc_iconst(cg, cg->i32, 0x7fffffff, w), "");
  LLVMValueRef isnan = LLVMBuildICmp(b, LLVMIntUGT, a, lc_iconst(cg, cg->i32, 0x7f800000, w), "");
  /* scale down by 2^-112 so the hardware rounds into f16's exponent range; values
   * that round to >= 2^16 become inf (0x7c00) */
  LLVMValueRef af = LLVMBuildBitCast(b, a, vf, "");
  LLVMValueRef big = LLVMBuildFCmp(b, LLVMRealOGE, af, lc_fconst(cg, 65520.0, w), "");
  /* normals: add magic to round mantissa to 10 bits */
  LLVMValueRef small = LLVMBuildFCmp(b, LLVMRealOLT, af, lc_fconst(cg, 0x1p-14, w), "");
  /* subnormal path: af + 0.5 (2^-1) puts the f16 subnormal in the low bits with RNE */
  LLVMValueRef sub = LLVMBuildBitCast(b, LLVMBuildFAdd(b, af, lc_fconst(cg, 0.5, w), ""), vi, "");
  sub = LLVMBuildSub(b, sub, lc_iconst(cg, cg->i32, 0x3f000000, w), "");
  /* normal path: rebias exponent and round (add 0xfff + lsb) */
  LLVMValueRef lsb = LLVMBuildAnd(b, LLVMBuildLShr(b, a, lc_iconst(cg, cg->i32, 13, w), ""), lc_iconst(cg, cg->i32, 1, w), "");
  LLVMValueRef nrm = LLVMBuildAdd(b, a, LLVMBuildAdd(b, lc_iconst(cg, cg->i32, (int64_t)0xc8000fff, w), lsb, ""), "");
  nrm = LLVMBuildLShr(b, nrm, lc_iconst(cg, cg->i32, 13, w), "");
  LLVMValueRef r = LLVMBuildSelect(b, small, sub, nrm, "");
  r = LLVMBuildSelect(b, big, lc_iconst(cg, cg->i32, 0x7c00, w), r, "");
  r = LLVMBuildSelect(b, isnan, lc_iconst(cg, cg->i32, 0x7e00, w), r, "");
  return LLVMBuildOr(b, r, sign, "");
}

LLVMValueRef lc_to_comp(lc_cg *cg, ldmc_dtype dt, LLVMValueRef v) {
  int w = lc_width(v);
  LLVMBuilderRef b = cg->b;
  switch (dt) {
    case LDMC_BF16: {
      LLVMValueRef x = LLVMBuildZExt(b, v, lc_vt(cg, cg->i32, w), "");
      x = LLVMBuildShl(b, x, lc_iconst(cg, cg->i32, 16, w), "");
      return LLVMBuildBitCast(b, x, lc_vt(cg, cg->f32, w), "");
    }
    case LDMC_F16: return f16_to_f32(cg, LLVMBuildZExt(b, v, lc_vt(cg, cg->i32, w), ""), w);
    case LDMC_PRED: return LLVMBuildICmp(b, LLVMIntNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
    default: return v;
  }
}

LLVMValueRef lc_to_store(lc_cg *cg, ldmc_dtype dt, LLVMValueRef v) {
  int w = lc_width(v);
  LLVMBuilderRef b = cg->b;
  switch (dt) {
    case LDMC_BF16: {
      LLVMTypeRef vi = lc_vt(cg, cg->i32, w);
      LLVMValueRef u = LLVMBuildBitCast(b, v, vi, "");
      LLVMValueRef lsb = LLVMBuildAnd(b, LLVMBuildLShr(b, u, lc_iconst(cg, cg->i32, 16, w), ""), lc_iconst(cg, cg->i32, 1, w), "");
      LLVMValueRef r = LLVMBuildAdd(b, u, LLVMBuildAdd(b, lc_iconst(cg, cg->i32, 0x7fff, w), lsb, ""), "");
      LLVMValueRef isnan = LLVMBuildICmp(b, LLVMIntUGT, LLVMBuildAnd(b, u, lc_iconst(cg, cg->i32, 0x7fffffff, w), ""),
                                         lc_iconst(cg, cg->i32, 0x7f800000, w), "");
      r = LLVMBuildSelect(b, isnan, LLVMBuildOr(b, u, lc_iconst(cg, cg->i32, 0x400000, w), ""), r, "");
      r = LLVMBuildLShr(b, r, lc_iconst(cg, cg->i32, 16, w), "");
      return LLVMBuildTrunc(b, r, lc_vt(cg, cg->i16, w), "");
    }
    case LDMC_F16: return LLVMBuildTrunc(b, f32_to_f16(cg, v, w), lc_vt(cg, cg->i16, w), "");
    case LDMC_PRED: return LLVMBuildZExt(b, v, lc_vt(cg, cg->i8, w), "");
    default: return v;
  }
}

LLVMValueRef lc_load_comp(lc_cg *cg, ldmc_dtype dt, LLVMValueRef p, LLVMValueRef idx, int w, LLVMValueRef mask) {
  LLVMTypeRef st = lc_store_ty(cg, dt), vt = lc_vt(cg, st, w);
  LLVMValueRef a = lc_gep(cg, st, p, idx);
  LLVMValueRef v = mask ? lc_masked_load(cg, vt, a, mask, NULL) : lc_load(cg, vt, a, elt_align(st));
  return lc_to_comp(cg, dt, v);
}

void lc_store_comp(lc_cg *cg, ldmc_dtype dt, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx, LLVMValueRef mask) {
  LLVMTypeRef st = lc_store_ty(cg, dt);
  LLVMValueRef a = lc_gep(cg, st, p, idx);
  LLVMValueRef s = lc_to_store(cg, dt, v);
  if (mask)
    lc_masked_store(cg, s, a, mask);
  else
    lc_store(cg, s, a, elt_align(st));
}
