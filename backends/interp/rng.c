/* rng_uniform / rng_normal: counter-based, so noise is a pure function of the
 * key and the element index (identical for any thread count or backend).
 *
 *   generator  Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC 2011):
 *              multipliers 0xD2511F53, 0xCD9E8D57; Weyl key increments
 *              0x9E3779B9, 0xBB67AE85; 10 rounds.
 *   key        the i64 scalar operand: {low 32 bits, high 32 bits}
 *   counter    element index i (row-major): {lo32(i), hi32(i), 0, 0}
 *   uniform    (w0 >> 8) * 2^-24, in [0, 1); exact in f32 and f64; bf16/f16
 *              round it toward zero so that it stays below 1
 *   normal     Box-Muller on u1 = (w0 >> 8) * 2^-24, u2 = (w1 >> 8) * 2^-24:
 *              sqrt(-2 ln(1 - u1)) * cos(2 pi u2)   (1 - u1 > 0, so no log(0))
 * w0..w3 are the Philox output words for that counter. */
#include <math.h>
#include <string.h>

#include "backends/interp/interp.h"

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

void ldmc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    if (r > 0) { /* key schedule: bump between rounds */
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/* u is a non-negative float with 24 significant bits at most: f32 and f64
 * hold it exactly; the half types truncate it (round toward zero). */
static void store_uniform(ldmc_tensor *t, int64_t i, float u) {
  uint8_t *p = (uint8_t *)t->data;
  uint32_t bits;
  uint16_t h;
  switch (t->dtype) {
    case LDMC_F32: memcpy(p + 4 * i, &u, 4); return;
    case LDMC_F64: { double d = u; memcpy(p + 8 * i, &d, 8); return; } /* the f32 value, exactly */
    case LDMC_BF16:
      memcpy(&bits, &u, 4);
      h = (uint16_t)(bits >> 16);
      break;
    case LDMC_F16:
      h = ldmc_f32_to_f16(u);
      if (ldmc_f16_to_f32(h) > u) h--; /* positive: one step down is the next smaller value */
      break;
    default: return;
  }
  memcpy(p + 2 * i, &h, 2);
}

ldmc_status ldmc_interp_rng(const ldmc_interp_args *a) {
  ldmc_tensor *out = a->out;
  int64_t key64;
  memcpy(&key64, a->in[0]->data, 8);
  uint32_t key[2] = {(uint32_t)(uint64_t)key64, (uint32_t)((uint64_t)key64 >> 32)};
  int64_t total = ldmc_interp_numel(&out->shape);
  bool normal = a->node->op == LDMC_OP_RNG_NORMAL;
  const double two_pi = 6.283185307179586476925286766559;
  for (int64_t i = 0; i < total; i++) {
    uint32_t ctr[4] = {(uint32_t)(uint64_t)i, (uint32_t)((uint64_t)i >> 32), 0, 0}, w[4];
    ldmc_philox4x32_10(ctr, key, w);
    double u1 = (double)(w[0] >> 8) * 0x1p-24;
    if (!normal) {
      store_uniform(out, i, (float)u1);
    } else {
      double u2 = (double)(w[1] >> 8) * 0x1p-24;
      ldmc_interp_setf(out, i, sqrt(-2.0 * log(1.0 - u1)) * cos(two_pi * u2));
    }
  }
  return LDMC_OK;
}
