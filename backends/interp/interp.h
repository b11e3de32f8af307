/* The reference interpreter's internals: element access with the rounding
 * rules every kernel shares, and one kernel per op family. Kernels receive
 * operands and an output tensor already allocated with the node's dtype and
 * shape; the graph has been verified, so shapes and attributes are trusted. */
#ifndef LDMC_BACKENDS_INTERP_H
#define LDMC_BACKENDS_INTERP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ir/ir.h"
#include "support/half.h"

/* Multiply-adds below which a kernel stays on one thread: small parallel
 * regions cost more than they save, worst on a loaded machine where a
 * descheduled thread stalls the barrier. */
#define LDMC_INTERP_PAR_MIN (INT64_C(1) << 22)

/* ---- rounding -------------------------------------------------------------- */
/* double -> float rounded to odd (truncate, then set the last bit if inexact).
 * Rounding that to bf16/f16 with round-to-nearest-even gives the correctly
 * rounded result of the double, i.e. one rounding, not two (24 >= 11 + 2). */
static inline float ldmc_interp_f32_round_odd(double d) {
  float f = (float)d;
  if (isnan(d) || (double)f == d) return f;
  if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f);
  uint32_t u;
  memcpy(&u, &f, 4);
  u |= 1u;
  memcpy(&f, &u, 4);
  return f;
}

/* int64 -> double rounded to odd (exact below 2^53), for int -> half converts. */
static inline double ldmc_interp_i64_round_odd(int64_t x) {
  uint64_t m = x < 0 ? 0 - (uint64_t)x : (uint64_t)x;
  if (m < (UINT64_C(1) << 53)) return (double)x;
  int s = 0;
  uint64_t sticky = 0;
  while ((m >> s) >= (UINT64_C(1) << 53)) s++;
  sticky = (m & ((UINT64_C(1) << s) - 1)) != 0;
  double d = ldexp((double)((m >> s) | sticky), s);
  return x < 0 ? -d : d;
}

/* ---- element access ---------------------------------------------------------- */
/* Float element as double (any dtype; ints widened, large i64 inexact). */
static inline double ldmc_interp_getf(const ldmc_tensor *t, int64_t i) {
  const uint8_t *p = (const uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case LDMC_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return ldmc_bf16_to_f32(h); }
    case LDMC_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return ldmc_f16_to_f32(h); }
    case LDMC_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case LDMC_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case LDMC_PRED: return p[i] ? 1.0 : 0.0;
    case LDMC_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    default: return 0;
  }
}

/* Stores a double into a float tensor with one rounding (nearest even). */
static inline void ldmc_interp_setf(ldmc_tensor *t, int64_t i, double v) {
  uint8_t *p = (uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_F32: { float f = (float)v; memcpy(p + 4 * i, &f, 4); break; }
    case LDMC_BF16: { uint16_t h = ldmc_f32_to_bf16(ldmc_interp_f32_round_odd(v)); memcpy(p + 2 * i, &h, 2); break; }
    case LDMC_F16: { uint16_t h = ldmc_f32_to_f16(ldmc_interp_f32_round_odd(v)); memcpy(p + 2 * i, &h, 2); break; }
    case LDMC_F64: memcpy(p + 8 * i, &v, 8); break; /* the double itself: no rounding */
    default: break; /* integer stores go through ldmc_interp_seti */
  }
}

/* Integer or pred element, exact. */
static inline int64_t ldmc_interp_geti(const ldmc_tensor *t, int64_t i) {
  const uint8_t *p = (const uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case LDMC_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    case LDMC_PRED: return p[i] != 0;
    default: return (int64_t)ldmc_interp_getf(t, i); /* not used for floats */
  }
}

/* Stores an integer: i32 wraps (two's complement), pred is v != 0. */
static inline void ldmc_interp_seti(ldmc_tensor *t, int64_t i, int64_t v) {
  uint8_t *p = (uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_I32: { int32_t x = (int32_t)(uint32_t)(uint64_t)v; memcpy(p + 4 * i, &x, 4); break; }
    case LDMC_I64: memcpy(p + 8 * i, &v, 8); break;
    case LDMC_PRED: p[i] = v != 0; break;
    /* f64 is the last rounding: nearest even, not the odd pre-rounding the narrower floats need */
    case LDMC_F64: ldmc_interp_setf(t, i, (double)v); break;
    default: ldmc_interp_setf(t, i, ldmc_interp_i64_round_odd(v)); break;
  }
}

static inline bool ldmc_interp_is_float(const ldmc_tensor *t) { return ldmc_dtype_is_float(t->dtype); }

static inline int64_t ldmc_interp_numel(const ldmc_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

/* Row-major strides in elements. */
static inline void ldmc_interp_strides(const ldmc_shape *s, int64_t *st) {
  int64_t k = 1;
  for (int i = s->rank - 1; i >= 0; i--) {
    st[i] = k;
    k *= s->dims[i];
  }
}

/* ---- Philox4x32-10 (see rng.c) ------------------------------------------------- */
void ldmc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* ---- kernels: one per op family; out is allocated with the node's type ---------- */
typedef struct ldmc_interp_args {
  const ldmc_node *node;
  const ldmc_tensor *const *in; /* node->n_operands operands */
  ldmc_tensor *out;
} ldmc_interp_args;

ldmc_status ldmc_interp_source(const ldmc_interp_args *a);      /* constant, iota */
ldmc_status ldmc_interp_rng(const ldmc_interp_args *a);         /* rng_uniform, rng_normal */
ldmc_status ldmc_interp_elementwise(const ldmc_interp_args *a); /* convert, unary, binary, compare, select */
ldmc_status ldmc_interp_movement(const ldmc_interp_args *a);    /* broadcast ... scatter_add */
ldmc_status ldmc_interp_reduce(const ldmc_interp_args *a);
ldmc_status ldmc_interp_dot_general(const ldmc_interp_args *a);
ldmc_status ldmc_interp_convolution(const ldmc_interp_args *a);
ldmc_status ldmc_interp_composite(const ldmc_interp_args *a);   /* silu ... upsample_nearest */
ldmc_status ldmc_interp_attention_grad(const ldmc_interp_args *a); /* attention_lse, attention_grad_q / _kv */

/* Evaluates one node (dispatch over the op). */
ldmc_status ldmc_interp_eval(const ldmc_interp_args *a);

#endif
