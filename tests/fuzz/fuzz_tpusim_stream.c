/* libFuzzer target for the tpusim instruction-stream decoder, disassembler,
 * verifier and simulator (backends/tpusim/isa.h, sim.h). Input:
 *   byte 0     the target: 0 "tiny" (below; simulated functionally and
 *              timing-only), 1 v5e, 2 v4, 3 v1 (timing-only); other values
 *              wrap
 *   byte 1     buffer count n = byte % 16 + 1
 *   4 n bytes  each buffer's size in bytes, little-endian, capped at 1 MiB
 *   the rest   the program: 32-byte instructions
 * Every input must decode or fail with a message, never crash. A decoded
 * program re-encodes to the same bytes and disassembles within the line
 * limit; a program the verifier accepts must simulate, with no unit busier
 * than the run, no more MACs than the units can do, and the same statistics
 * in both modes (timing does not depend on data). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/sim.h"

static const char k_tiny[] =
    "{\"name\": \"tiny\", \"clock_hz\": 1e9, \"cores_per_chip\": 1,"
    " \"matrix\": {\"units\": 2, \"rows\": 16, \"cols\": 16},"
    " \"vector\": {\"lanes\": 16, \"sublanes\": 2, \"ops_per_cycle\": 1, \"latency_cycles\": 2,"
    "  \"cycles\": {\"exp\": 4, \"log\": 4, \"sqrt\": 4, \"rsqrt\": 4, \"recip\": 4, \"tanh\": 4, \"erf\": 8, \"sigmoid\": 4}},"
    " \"scratchpad\": {\"bytes\": 16384, \"banks\": 1},"
    " \"accumulator\": {\"bytes\": 4096},"
    " \"offchip\": {\"bytes_per_s\": 64e9, \"latency_ns\": 100, \"dma_engines\": 2}}";

#define MAX_SIM_INSNS 4096 /* longer streams are decoded and verified, not simulated */
#define MAX_BUF_BYTES (1u << 20)

static void check_stats(const ldmc_tpu_target *t, const ldmc_tpu_program *p, const ldmc_tpu_stats *s) {
  uint64_t n = 0;
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) n += s->insns[q];
  if (n != p->count) __builtin_trap();
  if (s->macs > s->cycles * ldmc_tpu_target_peak_macs_per_cycle(t)) __builtin_trap();
  for (int u = 0; u < LDMC_TPU_MAX_MXU; u++)
    if (s->mxu_busy[u] > s->cycles || (u >= t->mxu_count && (s->mxu_busy[u] || s->wload_busy[u]))) __builtin_trap();
  if (s->vec_busy > s->cycles || s->acc_busy > s->cycles || s->dma_busy > s->cycles) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int which = data[0] % 4, nb = data[1] % 16 + 1;
  if (size < 2 + 4 * (size_t)nb) return 0;
  ldmc_tpu_target t;
  static const char *const presets[] = {NULL, "v5e", "v4", "v1"};
  ldmc_status st = which == 0 ? ldmc_tpu_target_parse(k_tiny, strlen(k_tiny), "tiny", &t)
                              : ldmc_tpu_target_preset(presets[which], &t);
  if (st != LDMC_OK) __builtin_trap();
  ldmc_tpu_mem mem = {.count = nb};
  for (int i = 0; i < nb; i++) {
    const uint8_t *b = data + 2 + 4 * i;
    uint32_t v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    mem.buf[i].bytes = v > MAX_BUF_BYTES ? MAX_BUF_BYTES : v;
  }
  const uint8_t *code = data + 2 + 4 * nb;
  size_t len = size - 2 - 4 * (size_t)nb;
  ldmc_tpu_program p;
  ldmc_tpu_program_init(&p);
  if (ldmc_tpu_program_decode(code, len, &p) != LDMC_OK) {
    if (!ldmc_last_error()[0]) __builtin_trap();
    ldmc_tpu_program_free(&p);
    return 0;
  }
  if (p.count != len / LDMC_TPU_INSN_BYTES) __builtin_trap();
  uint8_t *enc = NULL;
  size_t enc_len = 0;
  if (ldmc_tpu_program_encode(&p, &enc, &enc_len) != LDMC_OK || enc_len != len || (len && memcmp(enc, code, len)))
    __builtin_trap();
  free(enc);
  char line[LDMC_TPU_DISASM_MAX];
  for (size_t i = 0; i < p.count; i++)
    if (strlen(ldmc_tpu_insn_disasm(&p.insns[i], line, sizeof line)) >= sizeof line) __builtin_trap();
  if (ldmc_tpu_verify(&t, &p, &mem) != LDMC_OK || p.count > MAX_SIM_INSNS) {
    ldmc_tpu_program_free(&p);
    return 0;
  }
  ldmc_tpu_stats ts, fs;
  if (ldmc_tpu_sim_run(&t, &p, &mem, LDMC_TPU_SIM_TIMING_ONLY, &ts) != LDMC_OK) __builtin_trap();
  check_stats(&t, &p, &ts);
  if (which == 0) { /* the data: the input's bytes, repeated (any bit pattern, NaNs included) */
    for (int i = 0; i < nb; i++) {
      mem.buf[i].data = malloc(mem.buf[i].bytes ? mem.buf[i].bytes : 1);
      if (!mem.buf[i].data) __builtin_trap();
      for (uint64_t j = 0; j < mem.buf[i].bytes; j++) ((uint8_t *)mem.buf[i].data)[j] = data[(j + (uint64_t)i) % size];
    }
    if (ldmc_tpu_sim_run(&t, &p, &mem, LDMC_TPU_SIM_FUNCTIONAL, &fs) != LDMC_OK) __builtin_trap();
    if (memcmp(&fs, &ts, sizeof fs) != 0) __builtin_trap();
    for (int i = 0; i < nb; i++) free(mem.buf[i].data);
  }
  ldmc_tpu_program_free(&p);
  return 0;
}
