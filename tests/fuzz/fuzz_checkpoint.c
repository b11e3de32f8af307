/* libFuzzer target for the checkpoint reader (runtime/checkpoint.c, over the
 * .ldmc decoder). Any input must decode or fail with a message, never crash;
 * what decodes must answer lookups of each of its tensors by name and role,
 * encode, decode again and re-encode to the same bytes. Decoding is capped at
 * 64 MiB so a small input cannot ask for gigabytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ldmc_checkpoint *ck = NULL;
  if (ldmc_checkpoint_decode(data, size, 64u << 20, &ck) != LDMC_OK) {
    if (ck || !ldmc_last_error()[0]) __builtin_trap(); /* every failure has a message and no result */
    return 0;
  }
  for (int32_t i = 0; i < ldmc_checkpoint_num_tensors(ck); i++) {
    ldmc_checkpoint_role role;
    const ldmc_tensor *t = ldmc_checkpoint_tensor_at(ck, i, &role, NULL);
    if (!t || ldmc_checkpoint_find(ck, t->name, role) != t || ldmc_checkpoint_find(ck, t->name, LDMC_CKPT_ANY) != t)
      __builtin_trap();
  }
  for (int32_t i = 0; i < ldmc_checkpoint_num_config(ck); i++) {
    const char *k, *v;
    ldmc_checkpoint_config_at(ck, i, &k, &v);
    if (!k || !v || ldmc_checkpoint_config(ck, k) != v) __builtin_trap();
  }
  uint8_t *a = NULL, *b = NULL;
  size_t alen = 0, blen = 0;
  if (ldmc_checkpoint_encode(ck, &a, &alen) != LDMC_OK) __builtin_trap();
  ldmc_checkpoint *ck2 = NULL;
  if (ldmc_checkpoint_decode(a, alen, 0, &ck2) != LDMC_OK) __builtin_trap();
  if (ldmc_checkpoint_encode(ck2, &b, &blen) != LDMC_OK) __builtin_trap();
  if (alen != blen || memcmp(a, b, alen) != 0) __builtin_trap();
  free(a);
  free(b);
  ldmc_checkpoint_free(ck2);
  ldmc_checkpoint_free(ck);
  return 0;
}
