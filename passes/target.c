/* Target descriptions: what the passes need to know about a backend. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "passes/passes.h"

#define ALL_COMPOSITES                                                                                   \
  (LDMC_OPMASK(LDMC_OP_SILU) | LDMC_OPMASK(LDMC_OP_GELU) | LDMC_OPMASK(LDMC_OP_SOFTMAX) |                \
   LDMC_OPMASK(LDMC_OP_GROUP_NORM) | LDMC_OPMASK(LDMC_OP_LAYER_NORM) | LDMC_OPMASK(LDMC_OP_ATTENTION) | \
   LDMC_OPMASK(LDMC_OP_UPSAMPLE_NEAREST) | LDMC_OPMASK(LDMC_OP_ATTENTION_LSE) |                      \
   LDMC_OPMASK(LDMC_OP_ATTENTION_GRAD_Q) | LDMC_OPMASK(LDMC_OP_ATTENTION_GRAD_KV))

static ldmc_target targets[] = {
    /* the reference runs every op itself and must stay numerically faithful */
    {.name = "interp", .backend = "interp", .vector_bytes = 8, .native_ops = ALL_COMPOSITES, .faithful = true},
    /* what the llvm-cpu backend executes: this machine's caches (sysconf, on
     * first lookup), NCHW convolutions as implicit GEMMs; at most 10 values
     * per kernel (its loops load 16 streams, LC_EW_MAX_IN: room for values
     * read under two index maps) */
    {.name = "llvm-cpu", .backend = "llvm-cpu", .vector_bytes = 64, .l1_bytes = 48 << 10, .l2_bytes = 1 << 20,
     .l3_bytes = 32 << 20, .native_ops = ALL_COMPOSITES, .host = true, .max_kernel_inputs = 10},
    /* a planning study, not executed by any backend: a znver5 core with NHWC
     * convolutions (layout assignment); kept for the layout pass's tests */
    {.name = "cpu-nhwc", .backend = NULL, .vector_bytes = 64, .l1_bytes = 48 << 10, .l2_bytes = 1 << 20,
     .l3_bytes = 32 << 20, .native_ops = ALL_COMPOSITES, .channels_last = true, .channel_block = 16,
     .internal = true},
    /* an NVIDIA SM: 128-byte transactions, 228 KiB shared memory as the scratchpad, 50 MiB L2 (planning only) */
    {.name = "nvptx", .backend = NULL, .vector_bytes = 128, .l1_bytes = 256 << 10, .l2_bytes = 50 << 20,
     .scratchpad_bytes = 228 << 10,
     .native_ops = LDMC_OPMASK(LDMC_OP_SOFTMAX) | LDMC_OPMASK(LDMC_OP_GROUP_NORM) | LDMC_OPMASK(LDMC_OP_LAYER_NORM) |
                   LDMC_OPMASK(LDMC_OP_ATTENTION)},
    /* the simulated accelerator: 128x128 systolic array, 16 MiB scratchpad, no composites; backends/tpusim runs
     * the ops it lowers and refuses the others by name */
    {.name = "tpusim", .backend = "tpusim", .vector_bytes = 512, .scratchpad_bytes = 16 << 20, .native_ops = 0},
};
#define N_TARGETS ((int)(sizeof targets / sizeof targets[0]))

static void fill_host(ldmc_target *t) {
  static int done;
  if (done) return;
  done = 1;
  long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE), l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l1 > 0) t->l1_bytes = l1;
  if (l2 > 0) t->l2_bytes = l2;
  if (l3 > 0) t->l3_bytes = l3;
#if defined(__x86_64__)
  __builtin_cpu_init();
  t->vector_bytes = __builtin_cpu_supports("avx512f") ? 64 : __builtin_cpu_supports("avx2") ? 32 : 4;
#endif
  ldmc_target_set_gemm(t, t->vector_bytes);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  t->threads = cpus > 0 ? (int)cpus : 1;
}

void ldmc_target_set_gemm(ldmc_target *t, int vector_bytes) {
  t->vector_bytes = vector_bytes;
  /* llvm-cpu's microkernels (backends/llvm_cpu/target.c): as many
   * accumulator registers as the register file holds, kc x nc of B in L2 */
  if (vector_bytes >= 64) t->gemm_mr = 14, t->gemm_nr = 32, t->gemm_kc = 256, t->gemm_nc = 512;
  else if (vector_bytes >= 32) t->gemm_mr = 6, t->gemm_nr = 16, t->gemm_kc = 256, t->gemm_nc = 512;
  else t->gemm_mr = 4, t->gemm_nr = 4, t->gemm_kc = 256, t->gemm_nc = 256;
}

int ldmc_target_count(void) { return N_TARGETS; }

const ldmc_target *ldmc_target_get(int i) {
  if (i < 0 || i >= N_TARGETS) return NULL;
  if (targets[i].host) fill_host(&targets[i]);
  return &targets[i];
}

const ldmc_target *ldmc_target_find(const char *name) {
  for (int i = 0; i < N_TARGETS; i++)
    if (name && strcmp(targets[i].name, name) == 0) return ldmc_target_get(i);
  char list[256] = "";
  size_t k = 0;
  for (int i = 0; i < N_TARGETS && k < sizeof list; i++)
    if (!targets[i].internal)
      k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", targets[i].name);
  ldmc_error(LDMC_ERR_INVALID, "unknown target '%s' (targets: %s)", name ? name : "(null)", list);
  return NULL;
}
