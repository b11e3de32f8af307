/* libFuzzer target for the safetensors reader. Any input must parse or fail
 * with a message, never crash; what parses must write, and the written file
 * must parse to the same tensors and write the same bytes again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/weights_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ldmc_tensor_set s;
  if (ldmc_safetensors_parse(data, size, &s) != LDMC_OK) {
    if (!ldmc_last_error()[0]) __builtin_trap();
    return 0;
  }
  uint8_t *a = NULL, *b = NULL;
  size_t alen = 0, blen = 0;
  if (ldmc_safetensors_encode(&s, 0, NULL, NULL, &a, &alen) != LDMC_OK) __builtin_trap();
  ldmc_tensor_set s2;
  if (ldmc_safetensors_parse(a, alen, &s2) != LDMC_OK || s2.n != s.n) __builtin_trap();
  for (int32_t i = 0; i < s.n; i++) {
    const ldmc_tensor *x = &s.items[i], *y = ldmc_tensor_set_find(&s2, x->name);
    if (!y || x->dtype != y->dtype || strcmp(x->raw_dtype, y->raw_dtype) || !ldmc_shape_equal(&x->shape, &y->shape) ||
        x->nbytes != y->nbytes || (x->nbytes && memcmp(x->data, y->data, x->nbytes)))
      __builtin_trap();
  }
  if (ldmc_safetensors_encode(&s2, 0, NULL, NULL, &b, &blen) != LDMC_OK) __builtin_trap();
  if (alen != blen || memcmp(a, b, alen) != 0) __builtin_trap();
  free(a);
  free(b);
  ldmc_tensor_set_free(&s2);
  ldmc_tensor_set_free(&s);
  return 0;
}
