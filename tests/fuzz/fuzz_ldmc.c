/* libFuzzer target for the .ldmc reader. Any input must decode or fail with
 * a message, never crash; what decodes must encode, and the encoding must
 * decode again and re-encode to the same bytes. Decoding is capped at 64 MiB
 * so a small input cannot ask for gigabytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ldmc_module m;
  if (ldmc_module_decode_limited(data, size, 64u << 20, &m) != LDMC_OK) {
    if (!ldmc_last_error()[0]) __builtin_trap(); /* every failure has a message */
    return 0;
  }
  uint8_t *a = NULL, *b = NULL;
  size_t alen = 0, blen = 0;
  if (ldmc_module_encode(&m, &a, &alen) != LDMC_OK) __builtin_trap();
  ldmc_module m2;
  if (ldmc_module_decode(a, alen, &m2) != LDMC_OK) __builtin_trap();
  if (ldmc_module_encode(&m2, &b, &blen) != LDMC_OK) __builtin_trap();
  if (alen != blen || memcmp(a, b, alen) != 0) __builtin_trap();
  free(a);
  free(b);
  ldmc_module_free(&m2);
  ldmc_module_free(&m);
  return 0;
}
