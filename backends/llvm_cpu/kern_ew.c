/* Elementwise kernels: a loop nest over a box whose body evaluates a small
 * expression of strided loads and stores one value. The innermost dim runs in
 * vectors of the target's width (contiguous loads, broadcasts of stride-0
 * operands, gathers otherwise) with one masked iteration for the tail.
 * Elementwise ops, convert, broadcast, transpose, slice, pad, concatenate,
 * iota and upsample all lower to this one generator (and fused chains later). */
#include <math.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

#define B (cg->b)

/* ---- shape simplification and tiling ---- */
static void drop_dim(lc_ew_desc *d, int k) {
  for (int i = k; i + 1 < d->rank; i++) {
    d->dims[i] = d->dims[i + 1];
    d->out.st[i] = d->out.st[i + 1];
    for (int s = 0; s < d->n_in; s++) d->in[s].st[i] = d->in[s].st[i + 1];
  }
  d->rank--;
}

static bool mergeable(const lc_stream *s, const lc_ew_desc *d, int k) {
  return s->st[k] == s->st[k + 1] * d->dims[k + 1];
}

int64_t ldmc_lc_ew_finish(lc_ew_desc *d, const lc_target *t) {
  for (int k = d->rank - 1; k >= 0 && d->rank > 1; k--)
    if (d->dims[k] == 1) drop_dim(d, k);
  if (d->rank == 0 || (d->rank == 1 && d->dims[0] == 1)) { /* a scalar */
    d->rank = 1, d->dims[0] = 1, d->out.st[0] = 1;
    for (int s = 0; s < d->n_in; s++) d->in[s].st[0] = 0;
  }
  for (int k = d->rank - 2; k >= 0; k--) {
    bool ok = mergeable(&d->out, d, k);
    for (int s = 0; ok && s < d->n_in; s++) ok = mergeable(&d->in[s], d, k);
    if (!ok) continue;
    d->dims[k] *= d->dims[k + 1];
    d->out.st[k] = d->out.st[k + 1];
    for (int s = 0; s < d->n_in; s++) d->in[s].st[k] = d->in[s].st[k + 1];
    drop_dim(d, k + 1);
  }
  int64_t L = d->dims[d->rank - 1], R = 1;
  for (int k = 0; k + 1 < d->rank; k++) R *= d->dims[k];
  const int64_t te = 8192; /* elements per tile */
  (void)t;
  if (L >= te) {
    d->chunk = te;
    d->rows_per_tile = 1;
    return R * ((L + te - 1) / te);
  }
  d->chunk = L;
  d->rows_per_tile = L > 0 ? (te / L > 0 ? te / L : 1) : 1;
  return L > 0 ? (R + d->rows_per_tile - 1) / d->rows_per_tile : 0;
}

/* ---- emission ---- */
static LLVMValueRef round_float(lc_cg *cg, ldmc_dtype dt, LLVMValueRef v) {
  if (dt == LDMC_BF16 || dt == LDMC_F16) return lc_to_comp(cg, dt, lc_to_store(cg, dt, v));
  return v;
}

/* index vector pos + lane * stride */
static LLVMValueRef lane_index(lc_cg *cg, LLVMValueRef pos, int64_t stride, int w) {
  LLVMValueRef lanes = LLVMBuildMul(B, lc_lane_iota(cg, cg->i64, w), lc_iconst(cg, cg->i64, stride, w), "");
  return LLVMBuildAdd(B, lc_splat(cg, pos, w), lanes, "");
}

static LLVMValueRef all_true(lc_cg *cg, int w) { return lc_iconst(cg, cg->i1, 1, w); }

static LLVMValueRef load_stream(lc_cg *cg, const lc_ew_desc *d, int s, LLVMValueRef p, LLVMValueRef base,
                                LLVMValueRef j, int w, LLVMValueRef mask) {
  const lc_stream *st = &d->in[s];
  ldmc_dtype dt = (ldmc_dtype)st->dt;
  int64_t is = st->st[d->rank - 1];
  LLVMValueRef pos = LLVMBuildAdd(B, base, LLVMBuildMul(B, j, lc_i64(cg, is), ""), "");
  if (st->iota) {
    LLVMValueRef idx = lane_index(cg, pos, is, w);
    if (ldmc_dtype_is_float(dt)) return round_float(cg, dt, LLVMBuildSIToFP(B, idx, lc_vt(cg, cg->f32, w), ""));
    if (dt == LDMC_I32) return LLVMBuildTrunc(B, idx, lc_vt(cg, cg->i32, w), "");
    return idx;
  }
  LLVMTypeRef sty = lc_store_ty(cg, dt);
  if (is == 1) return lc_load_comp(cg, dt, p, pos, w, mask);
  if (is == 0 || w == 1) {
    LLVMValueRef v = lc_load(cg, sty, lc_gep(cg, sty, p, pos), (unsigned)ldmc_dtype_size(dt));
    return lc_to_comp(cg, dt, lc_splat(cg, v, w));
  }
  LLVMValueRef ptrs = LLVMBuildInBoundsGEP2(B, sty, p, (LLVMValueRef[]){lane_index(cg, pos, is, w)}, 1, "");
  LLVMTypeRef tys[2] = {lc_vt(cg, sty, w), lc_vt(cg, cg->ptr, w)};
  LLVMValueRef args[4] = {ptrs, lc_i32(cg, (int32_t)ldmc_dtype_size(dt)), mask ? mask : all_true(cg, w),
                          LLVMConstNull(tys[0])};
  return lc_to_comp(cg, dt, lc_intr(cg, "llvm.masked.gather", tys, 2, args, 4));
}

static void store_out(lc_cg *cg, const lc_ew_desc *d, LLVMValueRef base, LLVMValueRef j, int w, LLVMValueRef mask,
                      LLVMValueRef v) {
  ldmc_dtype dt = (ldmc_dtype)d->out.dt;
  int64_t os = d->out.st[d->rank - 1];
  LLVMValueRef pos = LLVMBuildAdd(B, base, LLVMBuildMul(B, j, lc_i64(cg, os), ""), "");
  LLVMTypeRef sty = lc_store_ty(cg, dt);
  if (os == 1) {
    lc_store_comp(cg, dt, v, cg->buf[0], pos, mask);
  } else if (w == 1) {
    LLVMValueRef s = LLVMBuildExtractElement(B, lc_to_store(cg, dt, v), lc_i32(cg, 0), "");
    lc_store(cg, s, lc_gep(cg, sty, cg->buf[0], pos), (unsigned)ldmc_dtype_size(dt));
  } else {
    LLVMValueRef ptrs = LLVMBuildInBoundsGEP2(B, sty, cg->buf[0], (LLVMValueRef[]){lane_index(cg, pos, os, w)}, 1, "");
    LLVMTypeRef tys[2] = {lc_vt(cg, sty, w), lc_vt(cg, cg->ptr, w)};
    LLVMValueRef args[4] = {lc_to_store(cg, dt, v), ptrs, lc_i32(cg, (int32_t)ldmc_dtype_size(dt)),
                            mask ? mask : all_true(cg, w)};
    lc_intr(cg, "llvm.masked.scatter", tys, 2, args, 4);
  }
}

static LLVMValueRef fnan_or(lc_cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef r) {
  LLVMValueRef un = LLVMBuildFCmp(B, LLVMRealUNO, a, b, "");
  return LLVMBuildSelect(B, un, lc_fconst(cg, NAN, lc_width(a)), r, "");
}

static LLVMValueRef emit_convert(lc_cg *cg, ldmc_dtype from, ldmc_dtype to, LLVMValueRef v) {
  int w = lc_width(v);
  bool ff = ldmc_dtype_is_float(from), ft = ldmc_dtype_is_float(to);
  if (ff && ft) return round_float(cg, to, v);
  if (ff && to == LDMC_PRED) return LLVMBuildFCmp(B, LLVMRealUNE, v, lc_fconst(cg, 0.0, w), "");
  if (ff) {
    LLVMTypeRef tys[2] = {lc_vt(cg, lc_comp_ty(cg, to), w), LLVMTypeOf(v)};
    return lc_intr(cg, "llvm.fptosi.sat", tys, 2, &v, 1);
  }
  if (from == LDMC_PRED) {
    if (ft) return LLVMBuildUIToFP(B, v, lc_vt(cg, cg->f32, w), "");
    if (to == LDMC_PRED) return v;
    return LLVMBuildZExt(B, v, lc_vt(cg, lc_comp_ty(cg, to), w), "");
  }
  /* from an integer */
  if (ft) return round_float(cg, to, LLVMBuildSIToFP(B, v, lc_vt(cg, cg->f32, w), ""));
  if (to == LDMC_PRED) return LLVMBuildICmp(B, LLVMIntNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
  LLVMTypeRef tt = lc_vt(cg, lc_comp_ty(cg, to), w);
  if (from == to) return v;
  return from == LDMC_I32 ? LLVMBuildSExt(B, v, tt, "") : LLVMBuildTrunc(B, v, tt, "");
}

static LLVMValueRef emit_unary_f(lc_cg *cg, ldmc_op op, LLVMValueRef x) {
  int w = lc_width(x);
  LLVMTypeRef t = LLVMTypeOf(x);
  switch (op) {
    case LDMC_OP_NEG: return LLVMBuildFNeg(B, x, "");
    case LDMC_OP_ABS: return lc_intr(cg, "llvm.fabs", &t, 1, &x, 1);
    case LDMC_OP_EXP: return lc_exp(cg, x);
    case LDMC_OP_LOG: return lc_log(cg, x);
    case LDMC_OP_SQRT: return lc_intr(cg, "llvm.sqrt", &t, 1, &x, 1);
    case LDMC_OP_RSQRT: return LLVMBuildFDiv(B, lc_fconst(cg, 1.0, w), lc_intr(cg, "llvm.sqrt", &t, 1, &x, 1), "");
    case LDMC_OP_TANH: return lc_tanh(cg, x);
    case LDMC_OP_LOGISTIC: return lc_logistic(cg, x);
    case LDMC_OP_SIN: return lc_sin(cg, x);
    case LDMC_OP_COS: return lc_cos(cg, x);
    case LDMC_OP_ERF: return lc_erf(cg, x);
    case LDMC_OP_SILU: return lc_silu(cg, x);
    case LDMC_OP_GELU: return lc_gelu(cg, x);
    default: return x;
  }
}

static LLVMValueRef emit_binary_f(lc_cg *cg, ldmc_op op, LLVMValueRef x, LLVMValueRef y) {
  switch (op) {
    case LDMC_OP_ADD: return LLVMBuildFAdd(B, x, y, "");
    case LDMC_OP_SUB: return LLVMBuildFSub(B, x, y, "");
    case LDMC_OP_MUL: return LLVMBuildFMul(B, x, y, "");
    case LDMC_OP_DIV: return LLVMBuildFDiv(B, x, y, "");
    case LDMC_OP_MAX: return fnan_or(cg, x, y, LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, x, y, ""), x, y, ""));
    case LDMC_OP_MIN: return fnan_or(cg, x, y, LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, x, y, ""), x, y, ""));
    case LDMC_OP_POW: return lc_pow(cg, x, y);
    default: return x;
  }
}

static LLVMValueRef emit_binary_i(lc_cg *cg, ldmc_op op, LLVMValueRef x, LLVMValueRef y) {
  LLVMTypeRef t = LLVMTypeOf(x);
  switch (op) {
    case LDMC_OP_ADD: return LLVMBuildAdd(B, x, y, "");
    case LDMC_OP_SUB: return LLVMBuildSub(B, x, y, "");
    case LDMC_OP_MUL: return LLVMBuildMul(B, x, y, "");
    case LDMC_OP_DIV: { /* x / 0 = 0, x / -1 = -x (wrapping), never a trap */
      LLVMValueRef zero = LLVMConstNull(t), m1 = LLVMConstAllOnes(t);
      LLVMValueRef y0 = LLVMBuildICmp(B, LLVMIntEQ, y, zero, ""), ym1 = LLVMBuildICmp(B, LLVMIntEQ, y, m1, "");
      LLVMValueRef safe = LLVMBuildSelect(B, LLVMBuildOr(B, y0, ym1, ""), LLVMBuildNeg(B, m1, ""), y, "");
      LLVMValueRef q = LLVMBuildSDiv(B, x, safe, "");
      q = LLVMBuildSelect(B, ym1, LLVMBuildSub(B, zero, x, ""), q, "");
      return LLVMBuildSelect(B, y0, zero, q, "");
    }
    case LDMC_OP_MAX: return LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSGT, x, y, ""), x, y, "");
    case LDMC_OP_MIN: return LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, x, y, ""), x, y, "");
    default: return x;
  }
}

static LLVMValueRef emit_compare(lc_cg *cg, ldmc_dtype dt, ldmc_compare c, LLVMValueRef x, LLVMValueRef y) {
  if (ldmc_dtype_is_float(dt)) {
    static const LLVMRealPredicate fp[] = {LLVMRealOEQ, LLVMRealUNE, LLVMRealOLT, LLVMRealOLE, LLVMRealOGT, LLVMRealOGE};
    return LLVMBuildFCmp(B, fp[c], x, y, "");
  }
  static const LLVMIntPredicate ip[] = {LLVMIntEQ, LLVMIntNE, LLVMIntSLT, LLVMIntSLE, LLVMIntSGT, LLVMIntSGE};
  if (dt == LDMC_PRED) { /* 0/1 values, compare as integers */
    x = LLVMBuildZExt(B, x, lc_vt(cg, cg->i32, lc_width(x)), "");
    y = LLVMBuildZExt(B, y, lc_vt(cg, cg->i32, lc_width(y)), "");
  }
  return LLVMBuildICmp(B, ip[c], x, y, "");
}

static LLVMValueRef emit_const(lc_cg *cg, ldmc_dtype dt, double v, int w) {
  if (ldmc_dtype_is_float(dt)) return lc_fconst(cg, v, w);
  return lc_iconst(cg, lc_comp_ty(cg, dt), (int64_t)v, w);
}

LLVMValueRef ldmc_lc_ew_eval(lc_cg *cg, const lc_ew_desc *d, const LLVMValueRef *ptrs, const LLVMValueRef *base,
                             LLVMValueRef j, int w, LLVMValueRef mask, LLVMValueRef acc) {
  LLVMValueRef v[LC_EW_MAX_INS];
  for (int i = 0; i < d->n_ins; i++) {
    const lc_ew_ins *in = &d->ins[i];
    ldmc_dtype dt = (ldmc_dtype)in->dt;
    ldmc_dtype adt = in->a[0] >= 0 ? (ldmc_dtype)d->ins[in->a[0]].dt : dt;
    LLVMValueRef x = in->a[0] >= 0 ? v[in->a[0]] : NULL, y = in->a[1] >= 0 ? v[in->a[1]] : NULL;
    switch (in->op) {
      case LC_EW_LOAD: v[i] = load_stream(cg, d, in->arg, ptrs[in->arg], base[in->arg], j, w, mask); break;
      case LC_EW_ACC: v[i] = round_float(cg, dt, acc); break; /* the core's value, rounded to its dtype */
      case LC_EW_CONST: v[i] = emit_const(cg, dt, in->cval, w); break;
      case LDMC_OP_CONVERT: v[i] = emit_convert(cg, adt, dt, x); break;
      case LDMC_OP_COMPARE: v[i] = emit_compare(cg, adt, (ldmc_compare)in->arg, x, y); break;
      case LDMC_OP_SELECT: v[i] = LLVMBuildSelect(B, x, y, v[in->a[2]], ""); break;
      case LDMC_OP_NEG:
      case LDMC_OP_ABS:
        if (!ldmc_dtype_is_float(dt)) {
          LLVMValueRef neg = LLVMBuildSub(B, LLVMConstNull(LLVMTypeOf(x)), x, "");
          v[i] = in->op == LDMC_OP_NEG ? neg
                                       : LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, x, LLVMConstNull(LLVMTypeOf(x)), ""), neg, x, "");
          break;
        }
        /* fall through */
      default:
        if (y) v[i] = ldmc_dtype_is_float(dt) ? emit_binary_f(cg, (ldmc_op)in->op, x, y) : emit_binary_i(cg, (ldmc_op)in->op, x, y);
        else v[i] = emit_unary_f(cg, (ldmc_op)in->op, x);
        if (ldmc_dtype_is_float(dt)) v[i] = round_float(cg, dt, v[i]);
        break;
    }
  }
  return v[d->n_ins - 1];
}

static void emit_body(lc_cg *cg, const lc_ew_desc *d, LLVMValueRef *base, LLVMValueRef obase, LLVMValueRef j, int w,
                      LLVMValueRef mask) {
  store_out(cg, d, obase, j, w, mask, ldmc_lc_ew_eval(cg, d, cg->buf + 1, base, j, w, mask, NULL));
}

void ldmc_lc_emit_ew(lc_cg *cg, const lc_ew_desc *d) {
  int r = d->rank, W = cg->W;
  int64_t L = d->dims[r - 1], R = 1;
  for (int k = 0; k + 1 < r; k++) R *= d->dims[k];
  int64_t nch = (L + d->chunk - 1) / d->chunk, G = d->rows_per_tile;
  lc_loop lt;
  LLVMValueRef t = lc_for(cg, &lt, cg->t0, cg->t1, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef rb = LLVMBuildMul(B, LLVMBuildSDiv(B, t, lc_i64(cg, nch), ""), lc_i64(cg, G), "");
  LLVMValueRef re = lc_smin64(cg, LLVMBuildAdd(B, rb, lc_i64(cg, G), ""), lc_i64(cg, R));
  LLVMValueRef c0 = LLVMBuildMul(B, LLVMBuildSRem(B, t, lc_i64(cg, nch), ""), lc_i64(cg, d->chunk), "");
  LLVMValueRef c1 = lc_smin64(cg, LLVMBuildAdd(B, c0, lc_i64(cg, d->chunk), ""), lc_i64(cg, L));
  lc_loop lr;
  LLVMValueRef row = lc_for(cg, &lr, rb, re, lc_i64(cg, 1), 0, NULL);
  LLVMValueRef base[LC_EW_MAX_IN], obase = lc_i64(cg, d->out.off);
  for (int s = 0; s < d->n_in; s++) base[s] = lc_i64(cg, d->in[s].off);
  LLVMValueRef rem = row;
  for (int k = r - 2; k >= 0; k--) {
    LLVMValueRef dk = lc_i64(cg, d->dims[k]);
    LLVMValueRef ik = k > 0 ? LLVMBuildURem(B, rem, dk, "") : rem;
    if (k > 0) rem = LLVMBuildUDiv(B, rem, dk, "");
    obase = LLVMBuildAdd(B, obase, LLVMBuildMul(B, ik, lc_i64(cg, d->out.st[k]), ""), "");
    for (int s = 0; s < d->n_in; s++)
      base[s] = LLVMBuildAdd(B, base[s], LLVMBuildMul(B, ik, lc_i64(cg, d->in[s].st[k]), ""), "");
  }
  if (W == 1) {
    lc_loop lj;
    LLVMValueRef j = lc_for(cg, &lj, c0, c1, lc_i64(cg, 1), 0, NULL);
    emit_body(cg, d, base, obase, j, 1, NULL);
    lc_for_end(cg, &lj, NULL);
  } else {
    LLVMValueRef n = LLVMBuildSub(B, c1, c0, "");
    LLVMValueRef full = LLVMBuildAdd(B, c0, LLVMBuildMul(B, LLVMBuildSDiv(B, n, lc_i64(cg, W), ""), lc_i64(cg, W), ""), "");
    lc_loop lj;
    LLVMValueRef j = lc_for(cg, &lj, c0, full, lc_i64(cg, W), 0, NULL);
    emit_body(cg, d, base, obase, j, W, NULL);
    lc_for_end(cg, &lj, NULL);
    lc_if tail;
    lc_if_begin(cg, &tail, LLVMBuildICmp(B, LLVMIntSLT, full, c1, ""));
    emit_body(cg, d, base, obase, full, W, lc_mask_lt(cg, LLVMBuildSub(B, c1, full, ""), W, 0));
    lc_if_end(cg, &tail);
  }
  lc_for_end(cg, &lr, NULL);
  lc_for_end(cg, &lt, NULL);
}
