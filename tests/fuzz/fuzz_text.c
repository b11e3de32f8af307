/* libFuzzer target for the IR text form: parse; on success the graph must
 * verify, and print -> parse -> print must reproduce the first print byte for
 * byte. Self-contained: build it from every ir source except the module_
 * (binary form) files, plus support/status.c and support/half.c:
 *   clang-19 -g -O1 -fsanitize=fuzzer,address,undefined -I. <those files> \
 *     tests/fuzz/fuzz_text.c -lm -o fuzz_text
 *   ./fuzz_text -dict=tests/fuzz/text.dict tests/fuzz/corpus/text */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ldmc_graph *g = NULL;
  if (ldmc_graph_parse((const char *)data, size, &g) != LDMC_OK) {
    if (g) abort(); /* a failed parse leaves *out NULL */
    return 0;
  }
  if (ldmc_graph_verify(g) != LDMC_OK) {
    fprintf(stderr, "parsed graph does not verify: %s\n", ldmc_last_error());
    abort();
  }
  char *t1 = ldmc_graph_print(g);
  if (!t1) abort();
  ldmc_graph *h = NULL;
  if (ldmc_graph_parse(t1, strlen(t1), &h) != LDMC_OK) {
    fprintf(stderr, "printed text does not parse: %s\n%s", ldmc_last_error(), t1);
    abort();
  }
  char *t2 = ldmc_graph_print(h);
  if (!t2 || strcmp(t1, t2) != 0) {
    fprintf(stderr, "second print differs:\n%s---\n%s", t1, t2 ? t2 : "(null)\n");
    abort();
  }
  free(t1);
  free(t2);
  ldmc_graph_free(g);
  ldmc_graph_free(h);
  return 0;
}
