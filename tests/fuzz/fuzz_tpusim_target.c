/* libFuzzer target for the tpusim target-description reader
 * (backends/tpusim/target.h): any JSON text must parse or fail with a
 * message, never crash. What parses must pass the checks a target built in
 * code gets, and give the derived figures the simulator divides by. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backends/tpusim/target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ldmc_tpu_target t;
  memset(&t, 0xa5, sizeof t); /* a failed parse must not be mistaken for a target */
  if (ldmc_tpu_target_parse((const char *)data, size, "fuzz.json", &t) != LDMC_OK) {
    const char *msg = ldmc_last_error();
    if (!msg[0] || strncmp(msg, "fuzz.json", 9) != 0) __builtin_trap(); /* messages name the file */
    return 0;
  }
  if (ldmc_tpu_target_check(&t, "parsed") != LDMC_OK) __builtin_trap();
  if (!memchr(t.name, 0, sizeof t.name) || !t.name[0]) __builtin_trap();
  if (ldmc_tpu_target_acc_rows(&t) < 1 || ldmc_tpu_target_peak_macs_per_cycle(&t) < 1) __builtin_trap();
  double bpc = ldmc_tpu_target_bytes_per_cycle(&t);
  if (!(bpc > 0) || !isfinite(bpc)) __builtin_trap();
  (void)ldmc_tpu_target_latency_cycles(&t);
  return 0;
}
