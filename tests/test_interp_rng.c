/* Interpreter rng_uniform / rng_normal: Philox4x32-10 against the published
 * Random123 known-answer vectors, the documented counter/key/bit mapping,
 * and moments of the distributions. */
#include "backends/interp/interp.h"
#include "interp_test_util.h"

static void test_kat(void) {
  /* Random123 tests/kat_vectors, "philox4x32 10" lines: counter[4] key[2] -> output[4] */
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
       0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
       0x24126ea1},
  };
  for (int i = 0; i < 3; i++) {
    uint32_t out[4];
    ldmc_philox4x32_10(&kat[i][0], &kat[i][4], out);
    for (int j = 0; j < 4; j++) CHECK_MSG(out[j] == kat[i][6 + j], "KAT %d word %d: %08x, expected %08x", i, j, out[j], kat[i][6 + j]);
  }
}

static ldmc_tensor rng(ldmc_op op, ldmc_dtype dt, ldmc_shape s, int64_t key) {
  ldmc_tensor k = th_tensor(LDMC_I64, SHAPE0, NULL), out;
  memcpy(k.data, &key, 8);
  if (!th_eval(op, NULL, dt, &s, 1, &k, &out)) memset(&out, 0, sizeof out);
  ldmc_tensor_release(&k);
  return out;
}

static void test_mapping(void) {
  /* element i uses counter (lo32(i), hi32(i), 0, 0) and key (lo32(key), hi32(key)) */
  int64_t key = (INT64_C(0x12345678) << 32) | 0x9abcdef0;
  uint32_t kw[2] = {0x9abcdef0u, 0x12345678u};
  ldmc_tensor u = rng(LDMC_OP_RNG_UNIFORM, LDMC_F32, SHAPE(3, 5), key);
  ldmc_tensor n = rng(LDMC_OP_RNG_NORMAL, LDMC_F32, SHAPE(3, 5), key);
  if (!u.data || !n.data) return;
  for (int i = 0; i < 15; i++) {
    uint32_t ctr[4] = {(uint32_t)i, 0, 0, 0}, w[4];
    ldmc_philox4x32_10(ctr, kw, w);
    double u1 = (w[0] >> 8) * 0x1p-24, u2 = (w[1] >> 8) * 0x1p-24;
    CHECK_NEAR(ldmc_tensor_get(&u, i), u1, 0);
    CHECK_NEAR(ldmc_tensor_get(&n, i), (float)(sqrt(-2 * log(1 - u1)) * cos(2 * M_PI * u2)), 1e-6);
  }
  ldmc_tensor_release(&u);
  ldmc_tensor_release(&n);
  /* same key, same values; another key, other values */
  ldmc_tensor a = rng(LDMC_OP_RNG_UNIFORM, LDMC_F32, SHAPE(64), 1), b = rng(LDMC_OP_RNG_UNIFORM, LDMC_F32, SHAPE(64), 1);
  ldmc_tensor c = rng(LDMC_OP_RNG_UNIFORM, LDMC_F32, SHAPE(64), 2);
  CHECK(memcmp(a.data, b.data, a.nbytes) == 0);
  CHECK(memcmp(a.data, c.data, a.nbytes) != 0);
  th_release(1, &a), th_release(1, &b), th_release(1, &c);
}

static void test_moments(void) {
  const int64_t n = 40000;
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_dtype dt = k_floats[d];
    ldmc_tensor u = rng(LDMC_OP_RNG_UNIFORM, dt, SHAPE(n), 42 + d);
    ldmc_tensor z = rng(LDMC_OP_RNG_NORMAL, dt, SHAPE(200, n / 200), -7 - d);
    if (!u.data || !z.data) continue;
    double su = 0, suu = 0, sz = 0, szz = 0, umin = 1, umax = 0;
    for (int64_t i = 0; i < n; i++) {
      double x = ldmc_tensor_get(&u, i), y = ldmc_tensor_get(&z, i);
      su += x, suu += x * x, sz += y, szz += y * y;
      umin = fmin(umin, x), umax = fmax(umax, x);
    }
    double mu = su / n, vu = suu / n - mu * mu, mz = sz / n, vz = szz / n - mz * mz;
    /* standard errors: uniform mean 0.0014, normal mean 0.005, normal var 0.007 (plus half-type rounding) */
    CHECK_NEAR(mu, 0.5, 0.01);
    CHECK_NEAR(vu, 1.0 / 12, 0.005);
    CHECK_NEAR(mz, 0.0, 0.03);
    CHECK_NEAR(vz, 1.0, 0.04);
    CHECK_MSG(umin >= 0 && umax < 1, "%s uniform range [%g, %g]", ldmc_dtype_name(dt), umin, umax);
    th_release(1, &u), th_release(1, &z);
  }
}

int main(void) {
  test_kat();
  test_mapping();
  test_moments();
  return test_summary("test_interp_rng");
}
