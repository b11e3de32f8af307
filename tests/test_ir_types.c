/* dtypes, shapes, attributes, tensors, and the f16/bf16 conversions of
 * support/half.c. Oracles: hand-computed IEEE bit patterns, and a reference
 * rounding written here with frexp/rint on doubles (exact for these formats),
 * plus the compiler's own _Float16 conversion where it has one. */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "ir/ir.h"
#include "support/half.h"
#include "tests/test_util.h"

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Round x to a binary format with p significand bits (implicit bit included),
 * minimum normal exponent emin and largest finite value maxf; ties to even. */
static double ref_round(double x, int p, int emin, double maxf) {
  if (isnan(x) || isinf(x) || x == 0) return x;
  double a = fabs(x);
  int k;
  frexp(a, &k); /* a = m 2^k, m in [0.5, 1) */
  int e = k - 1 < emin ? emin : k - 1;
  double q = ldexp(1.0, e - (p - 1));
  double r = rint(a / q) * q; /* a / q is exact (power-of-two scale); rint ties to even */
  if (r > maxf) r = INFINITY;
  return copysign(r, x);
}
static double ref_f16(double x) { return ref_round(x, 11, -14, 65504.0); }
static double ref_bf16(double x) { return ref_round(x, 8, -126, ldexp(255.0, 120)); }

static void test_half_hand(void) {
  struct { float f; uint16_t h; } f16[] = {
      {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.5f, 0x3800}, {65504.0f, 0x7bff}, {0.1f, 0x2e66},
      {65519.0f, 0x7bff},                 /* below the halfway point to 65536 */
      {65520.0f, 0x7c00},                 /* halfway: ties to even = 2^16 = inf */
      {0x1p-14f, 0x0400},                 /* smallest normal */
      {0x1p-24f, 0x0001},                 /* smallest subnormal */
      {0x3ffp-24f, 0x03ff},               /* largest subnormal */
      {0x7ffp-25f, 0x0400},               /* 1023.5 x 2^-24: tie, rounds up into the normals */
      {0x1p-25f, 0x0000},                 /* tie between 0 and 2^-24: even is 0 */
      {0x1.000002p-25f, 0x0001},          /* just above that tie */
      {0x3p-25f, 0x0002},                 /* 1.5 x 2^-24: tie, even is 2 */
      {1e-8f, 0x0000}, {-1e-8f, 0x8000},
      {0x1.002p0f, 0x3c00},               /* 1 + 2^-11: tie, even is 1.0 */
      {0x1.006p0f, 0x3c02},               /* 1 + 3 x 2^-11: tie, even is 1 + 2^-9 */
      {0x1.00201p0f, 0x3c01},             /* just above the first tie */
      {0x1.ffep0f, 0x4000},               /* 2 - 2^-11: tie, carries into the exponent */
      {-0.0f, 0x8000}, {INFINITY, 0x7c00}, {-INFINITY, 0xfc00},
  };
  for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++) {
    uint16_t h = ldmc_f32_to_f16(f16[i].f);
    CHECK_MSG(h == f16[i].h, "f32_to_f16(%a) = 0x%04x, want 0x%04x", f16[i].f, h, f16[i].h);
  }
  struct { uint16_t h; float f; } back[] = {
      {0x0001, 0x1p-24f}, {0x03ff, 0x3ffp-24f}, {0x0400, 0x1p-14f}, {0x7bff, 65504.0f}, {0x3c01, 0x1.004p0f},
      {0xc000, -2.0f},    {0x3555, 0x1.554p-2f}, {0x0200, 0x1p-15f},
  };
  for (size_t i = 0; i < sizeof back / sizeof back[0]; i++)
    CHECK_MSG(ldmc_f16_to_f32(back[i].h) == back[i].f, "f16_to_f32(0x%04x) = %a, want %a", back[i].h,
              ldmc_f16_to_f32(back[i].h), back[i].f);
  CHECK(f2u(ldmc_f16_to_f32(0x8000)) == 0x80000000u);
  CHECK(ldmc_f16_to_f32(0xfc00) == -INFINITY);
  CHECK(isnan(ldmc_f16_to_f32(0x7e00)) && isnan(ldmc_f16_to_f32(0x7c01)) && isnan(ldmc_f16_to_f32(0xfd00)));
  uint16_t n = ldmc_f32_to_f16(NAN);
  CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);
  n = ldmc_f32_to_f16(u2f(0x7f800001u)); /* NaN with only low payload bits must stay NaN */
  CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);

  struct { uint32_t f; uint16_t h; } bf[] = {
      {0x3f800000u, 0x3f80}, {0xbfc00000u, 0xbfc0}, {0x40490fdbu, 0x4049}, /* pi -> 3.140625 */
      {0x3f808000u, 0x3f80},                                               /* 1 + 2^-8: tie, even */
      {0x3f818000u, 0x3f82},                                               /* 1 + 3 x 2^-8: tie, even */
      {0x3f808001u, 0x3f81},                                               /* above the tie */
      {0x7f7fffffu, 0x7f80},                                               /* FLT_MAX rounds to inf */
      {0x7f7f7fffu, 0x7f7f},                                               /* below that tie */
      {0x00008000u, 0x0000}, {0x00018000u, 0x0002}, {0x80000001u, 0x8000}, /* subnormals */
      {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80}, {0x7fc00000u, 0x7fc0},
  };
  for (size_t i = 0; i < sizeof bf / sizeof bf[0]; i++) {
    uint16_t h = ldmc_f32_to_bf16(u2f(bf[i].f));
    CHECK_MSG(h == bf[i].h, "f32_to_bf16(0x%08x) = 0x%04x, want 0x%04x", bf[i].f, h, bf[i].h);
  }
  n = ldmc_f32_to_bf16(u2f(0x7f800001u));
  CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
  CHECK(f2u(ldmc_bf16_to_f32(0x4049)) == 0x40490000u);
  CHECK(ldmc_bf16_to_f32(0x0001) == 0x1p-133f);
}

/* Every f16 and bf16 bit pattern widens and narrows back to itself (NaNs stay NaN). */
static void test_half_roundtrip(void) {
  int bad16 = 0, badbf = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = ldmc_f16_to_f32((uint16_t)h);
    uint16_t back = ldmc_f32_to_f16(f);
    bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (nan ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h) bad16++;
    if (!nan && (double)f != ref_f16(f)) bad16++; /* widening is exact: f is representable */
    float g = ldmc_bf16_to_f32((uint16_t)h);
    uint16_t bb = ldmc_f32_to_bf16(g);
    bool bnan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
    if (bnan ? !((bb & 0x7f80) == 0x7f80 && (bb & 0x7f)) : bb != h) badbf++;
  }
  CHECK_MSG(bad16 == 0, "%d f16 patterns do not round-trip", bad16);
  CHECK_MSG(badbf == 0, "%d bf16 patterns do not round-trip", badbf);
}

/* f32 -> f16/bf16 against the reference over a stride through all f32 patterns
 * (about 4.3M values) and every value next to a representable boundary. */
static void test_half_sweep(void) {
  long bad16 = 0, badbf = 0, badhw = 0;
  for (uint64_t u = 0; u < (UINT64_C(1) << 32); u += 997) {
    float f = u2f((uint32_t)u);
    if (isnan(f)) continue;
    if ((double)ldmc_f16_to_f32(ldmc_f32_to_f16(f)) != ref_f16(f) && bad16++ < 3)
      fprintf(stderr, "f16 mismatch at %a\n", f);
    if ((double)ldmc_bf16_to_f32(ldmc_f32_to_bf16(f)) != ref_bf16(f) && badbf++ < 3)
      fprintf(stderr, "bf16 mismatch at %a\n", f);
#ifdef __FLT16_MAX__
    _Float16 hw = (_Float16)f;
    uint16_t hb;
    memcpy(&hb, &hw, 2);
    if (hb != ldmc_f32_to_f16(f) && badhw++ < 3) fprintf(stderr, "_Float16 disagrees at %a\n", f);
#endif
  }
  /* around every f16 value: the halfway points and one f32 ulp either side */
  for (uint32_t h = 0; h < 0x7c00; h++) {
    double lo = ldmc_f16_to_f32((uint16_t)h), hi = h + 1 == 0x7c00 ? 65536.0 : ldmc_f16_to_f32((uint16_t)(h + 1));
    float mid = (float)((lo + hi) / 2); /* exact in f32 */
    float pts[3] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
    for (int k = 0; k < 3; k++)
      if ((double)ldmc_f16_to_f32(ldmc_f32_to_f16(pts[k])) != ref_f16(pts[k]) && bad16++ < 6)
        fprintf(stderr, "f16 mismatch near 0x%04x at %a\n", h, pts[k]);
  }
  CHECK_MSG(bad16 == 0, "%ld f16 mismatches", bad16);
  CHECK_MSG(badbf == 0, "%ld bf16 mismatches", badbf);
  CHECK_MSG(badhw == 0, "%ld mismatches against _Float16", badhw);
}

/* From double: no double rounding through float. */
static void test_half_from_double(void) {
  double v = 1.0 + 0x1p-8 + 0x1p-40; /* just above a bf16 tie; (float)v lands on the tie */
  CHECK(ldmc_f64_to_bf16(v) == 0x3f81);
  CHECK(ldmc_f32_to_bf16((float)v) == 0x3f80); /* what rounding twice would give */
  v = 1.0 + 0x1p-11 + 0x1p-40;
  CHECK(ldmc_f64_to_f16(v) == 0x3c01);
  CHECK(ldmc_f64_to_f16(1.0 + 0x1p-11) == 0x3c00);
  CHECK(ldmc_f64_to_f16(1e300) == 0x7c00 && ldmc_f64_to_f16(-1e300) == 0xfc00);
  CHECK(ldmc_f64_to_bf16(1e300) == 0x7f80);
  CHECK(ldmc_f64_to_f16(1e-300) == 0 && ldmc_f64_to_bf16(-1e-300) == 0x8000);
  uint16_t n = ldmc_f64_to_f16(NAN);
  CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff));
  /* pseudo-random doubles against the reference */
  uint64_t s = 88172645463325252ull;
  long bad = 0;
  for (int i = 0; i < 200000; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    double x = ldexp((double)(s >> 11) / 0x1p53, (int)(s % 80) - 40) * ((s >> 3) & 1 ? -1 : 1);
    if ((double)ldmc_f16_to_f32(ldmc_f64_to_f16(x)) != ref_f16(x)) bad++;
    if ((double)ldmc_bf16_to_f32(ldmc_f64_to_bf16(x)) != ref_bf16(x)) bad++;
  }
  CHECK_MSG(bad == 0, "%ld f64 -> half mismatches", bad);
}

static void test_dtypes_shapes(void) {
  const char *names[] = {"f32", "bf16", "f16", "i32", "i64", "pred", "f64"};
  size_t sizes[] = {4, 2, 2, 4, 8, 1, 8};
  CHECK(LDMC_DTYPE_COUNT == 7 && LDMC_PRED == 5 && LDMC_F64 == 6); /* numbers of the older dtypes unchanged */
  for (int i = 0; i < LDMC_DTYPE_COUNT && i < 7; i++) {
    ldmc_dtype d;
    CHECK(strcmp(ldmc_dtype_name((ldmc_dtype)i), names[i]) == 0);
    CHECK(ldmc_dtype_parse(names[i], strlen(names[i]), &d) && d == (ldmc_dtype)i);
    CHECK(ldmc_dtype_size((ldmc_dtype)i) == sizes[i]);
    CHECK(ldmc_dtype_is_float((ldmc_dtype)i) == (i <= 2 || i == 6));
    CHECK(((LDMC_DT_FLOAT >> i) & 1u) == (i <= 2 || i == 6));
  }
  ldmc_dtype d;
  CHECK(!ldmc_dtype_parse("f3", 2, &d) && !ldmc_dtype_parse("f32x", 4, &d) && !ldmc_dtype_parse("f32", 2, &d));
  CHECK(ldmc_dtype_size((ldmc_dtype)77) == 0 && strcmp(ldmc_dtype_name((ldmc_dtype)77), "<bad dtype>") == 0);

  int64_t dims[] = {2, 320, 64, 64};
  ldmc_shape s = ldmc_shape_make(4, dims), t = s;
  char buf[64];
  CHECK(strcmp(ldmc_shape_str(&s, buf, sizeof buf), "[2,320,64,64]") == 0);
  ldmc_shape sc = ldmc_shape_make(0, NULL);
  CHECK(strcmp(ldmc_shape_str(&sc, buf, sizeof buf), "[]") == 0);
  CHECK(strlen(ldmc_shape_str(&s, buf, 6)) == 5); /* truncates, stays terminated */
  int64_t n = -1;
  CHECK(ldmc_shape_numel(&s, 4, &n) == LDMC_OK && n == 2621440);
  CHECK(ldmc_shape_numel(&sc, 4, &n) == LDMC_OK && n == 1);
  CHECK(ldmc_shape_equal(&s, &t));
  t.dims[3] = 63;
  CHECK(!ldmc_shape_equal(&s, &t));
  t = s;
  t.rank = 3;
  CHECK(!ldmc_shape_equal(&s, &t));
  t.dims[3] = 1; /* dims past the rank do not matter */
  ldmc_shape u = ldmc_shape_make(3, dims);
  CHECK(ldmc_shape_equal(&t, &u));
  int64_t neg[] = {2, -1};
  ldmc_shape ns = ldmc_shape_make(2, neg);
  CHECK(ldmc_shape_numel(&ns, 0, &n) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "negative dim 1"));
  int64_t big[] = {INT64_C(1) << 32, INT64_C(1) << 30};
  ldmc_shape bs = ldmc_shape_make(2, big);
  CHECK(ldmc_shape_numel(&bs, 0, &n) == LDMC_OK && n == INT64_C(1) << 62);
  CHECK(ldmc_shape_numel(&bs, 1, &n) == LDMC_OK && n == INT64_C(1) << 62);
  CHECK(ldmc_shape_numel(&bs, 4, &n) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "byte size overflows"));
  int64_t huge[] = {INT64_C(1) << 32, INT64_C(1) << 32};
  ldmc_shape hs = ldmc_shape_make(2, huge);
  CHECK(ldmc_shape_numel(&hs, 0, &n) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "element count overflows"));
  int64_t zero[] = {0, INT64_MAX, INT64_MAX};
  ldmc_shape zs = ldmc_shape_make(3, zero);
  CHECK(ldmc_shape_numel(&zs, 8, &n) == LDMC_OK && n == 0);
  ldmc_shape bad = s;
  bad.rank = 9;
  CHECK(ldmc_shape_numel(&bad, 0, &n) == LDMC_ERR_INVALID);
}

static void test_attrs_tensors(void) {
  float v[3] = {1, 2, 3};
  ldmc_attrs a = {.name = "w", .value = {v, sizeof v}, .axis = 3, .dims = {2, {1, 0}}}, c;
  CHECK(ldmc_attrs_copy(&c, &a) == LDMC_OK);
  CHECK(c.name != a.name && strcmp(c.name, "w") == 0 && c.value.data != a.value.data);
  CHECK(c.value.nbytes == 12 && memcmp(c.value.data, v, 12) == 0 && c.axis == 3 && c.dims.n == 2 && c.dims.v[0] == 1);
  ldmc_attrs_free(&c);
  CHECK(c.name == NULL && c.value.data == NULL && c.value.nbytes == 0);
  ldmc_attrs bad = {.value = {NULL, 8}};
  CHECK(ldmc_attrs_copy(&c, &bad) == LDMC_ERR_INVALID);
  ldmc_attrs_free(&c);

  ldmc_tensor t;
  int64_t d[] = {2, 3};
  ldmc_shape s = ldmc_shape_make(2, d);
  CHECK(ldmc_tensor_alloc(&t, "x", LDMC_BF16, &s) == LDMC_OK);
  CHECK(t.nbytes == 12 && ((uintptr_t)t.data & 63) == 0 && ldmc_tensor_get(&t, 5) == 0);
  ldmc_tensor_set_elem(&t, 1, 1.0 + 3 * 0x1p-8); /* tie: even is 1 + 2^-6 */
  CHECK(((uint16_t *)t.data)[1] == 0x3f82 && ldmc_tensor_get(&t, 1) == 1.015625);
  ldmc_tensor_set_elem(&t, 2, 1.0 + 0x1p-8 + 0x1p-40);
  CHECK(((uint16_t *)t.data)[2] == 0x3f81);
  ldmc_tensor_release(&t);
  CHECK(ldmc_tensor_alloc(&t, "i", LDMC_I32, &s) == LDMC_OK);
  ldmc_tensor_set_elem(&t, 0, -2.7);
  ldmc_tensor_set_elem(&t, 1, 1e20);
  ldmc_tensor_set_elem(&t, 2, NAN);
  ldmc_tensor_set_elem(&t, 3, -1e20);
  CHECK(ldmc_tensor_get(&t, 0) == -2 && ldmc_tensor_get(&t, 1) == INT32_MAX && ldmc_tensor_get(&t, 2) == 0 &&
        ldmc_tensor_get(&t, 3) == INT32_MIN);
  ldmc_tensor_release(&t);
  CHECK(ldmc_tensor_alloc(&t, "h", LDMC_F16, &s) == LDMC_OK);
  ldmc_tensor_set_elem(&t, 0, 65519.0);
  ldmc_tensor_set_elem(&t, 1, 65520.0);
  CHECK(ldmc_tensor_get(&t, 0) == 65504.0 && isinf(ldmc_tensor_get(&t, 1)));
  ldmc_tensor_release(&t);
  CHECK(ldmc_tensor_alloc(&t, "p", LDMC_PRED, &s) == LDMC_OK);
  ldmc_tensor_set_elem(&t, 4, -0.5);
  CHECK(ldmc_tensor_get(&t, 4) == 1.0 && ldmc_tensor_get(&t, 3) == 0.0 && t.nbytes == 6);
  ldmc_tensor_release(&t);
  /* f64 elements are the double itself: no rounding either way */
  CHECK(ldmc_tensor_alloc(&t, "d", LDMC_F64, &s) == LDMC_OK && t.nbytes == 48);
  const double dv[6] = {0.1, 1.0 / 3, 1e-300, 0x1p-1074, -0.0, 1.0 + 0x1p-52};
  for (int i = 0; i < 6; i++) ldmc_tensor_set_elem(&t, i, dv[i]);
  CHECK(memcmp(t.data, dv, sizeof dv) == 0);
  for (int i = 0; i < 6; i++) CHECK(memcmp(&(double){ldmc_tensor_get(&t, i)}, &dv[i], 8) == 0);
  ldmc_tensor_release(&t);
  int64_t nd[] = {-2};
  ldmc_shape ns = ldmc_shape_make(1, nd);
  CHECK(ldmc_tensor_alloc(&t, "n", LDMC_F32, &ns) == LDMC_ERR_INVALID);
  CHECK(ldmc_tensor_alloc(&t, "n", (ldmc_dtype)9, &s) == LDMC_ERR_INVALID);

  ldmc_tensor_set set = {0};
  for (int i = 0; i < 40; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "t%d", i);
    CHECK(ldmc_tensor_alloc(&t, nm, LDMC_F32, &s) == LDMC_OK);
    ldmc_tensor_set_elem(&t, 0, i);
    CHECK(ldmc_tensor_set_add(&set, &t) == LDMC_OK && t.data == NULL);
  }
  CHECK(ldmc_tensor_alloc(&t, "t7", LDMC_F32, &s) == LDMC_OK);
  CHECK(ldmc_tensor_set_add(&set, &t) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "duplicate tensor name 't7'"));
  ldmc_tensor_release(&t);
  ldmc_tensor *f = ldmc_tensor_set_find(&set, "t33");
  CHECK(set.n == 40 && f && ldmc_tensor_get(f, 0) == 33 && !ldmc_tensor_set_find(&set, "t40"));
  ldmc_tensor_set_free(&set);
  CHECK(set.n == 0 && set.items == NULL);
}

int main(void) {
  test_half_hand();
  test_half_roundtrip();
  test_half_sweep();
  test_half_from_double();
  test_dtypes_shapes();
  test_attrs_tensors();
  return test_summary("test_ir_types");
}
