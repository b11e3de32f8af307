/* IEEE binary16 and bfloat16 conversions (round to nearest even, NaN kept). */
#ifndef LDMC_SUPPORT_HALF_H
#define LDMC_SUPPORT_HALF_H
#include <stdint.h>
#include <string.h>

static inline float ldmc_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint16_t ldmc_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
float ldmc_f16_to_f32(uint16_t h);
uint16_t ldmc_f32_to_f16(float f);
/* Correctly rounded (nearest even) from double: going through float with
 * round-to-nearest would round twice and can miss a tie. */
uint16_t ldmc_f64_to_f16(double v);
uint16_t ldmc_f64_to_bf16(double v);
#endif
