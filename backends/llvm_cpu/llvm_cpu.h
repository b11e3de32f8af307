/* The LLVM CPU backend: graphs compiled through the LLVM 19 C API into
 * vectorized kernels, run in-process with ORC LLJIT or emitted ahead of time
 * as an object file with a C header. See docs/backends/llvm_cpu.md. */
#ifndef LDMC_BACKENDS_LLVM_CPU_H
#define LDMC_BACKENDS_LLVM_CPU_H

#include "backends/backend.h"

extern const ldmc_backend_i ldmc_backend_llvm_cpu;

/* Instruction-set level the kernels are generated for. AUTO takes the
 * environment variable LDMC_LLVM_CPU_ISA (scalar|avx2|avx512) if set, else the
 * best level the host supports. Forcing a level the host lacks is an error. */
typedef enum ldmc_llvm_cpu_isa {
  LDMC_LLVM_CPU_ISA_AUTO,
  LDMC_LLVM_CPU_ISA_SCALAR, /* x86-64 baseline, vector width 1 */
  LDMC_LLVM_CPU_ISA_AVX2,   /* x86-64-v3: AVX2 + FMA, 8 f32 lanes */
  LDMC_LLVM_CPU_ISA_AVX512, /* the host CPU with its AVX-512 features, 16 f32 lanes */
  LDMC_LLVM_CPU_ISA_COUNT
} ldmc_llvm_cpu_isa;

const char *ldmc_llvm_cpu_isa_name(ldmc_llvm_cpu_isa isa);
bool ldmc_llvm_cpu_isa_parse(const char *s, ldmc_llvm_cpu_isa *out);
/* The best level this host runs. */
ldmc_llvm_cpu_isa ldmc_llvm_cpu_host_isa(void);
/* Process-wide level for later compiles (tests force avx2 / scalar with it). */
void ldmc_llvm_cpu_set_isa(ldmc_llvm_cpu_isa isa);
/* The level a compile would use now (AUTO resolved), or an error. */
ldmc_status ldmc_llvm_cpu_current_isa(ldmc_llvm_cpu_isa *out);

/* Kernel-cache counters since process start (all levels). */
typedef struct ldmc_llvm_cpu_stats {
  int64_t kernels_requested; /* kernel instances asked for by compiles */
  int64_t kernels_compiled;  /* distinct kernels generated and compiled */
  int64_t cache_hits;        /* requests served by an already compiled kernel */
  int64_t disk_hits;         /* modules loaded from the on-disk cache */
  double llvm_seconds;       /* time in IR generation, optimization and JIT */
} ldmc_llvm_cpu_stats;
void ldmc_llvm_cpu_stats_get(ldmc_llvm_cpu_stats *out);

/* What an llvm-cpu executable has allocated (zero before its first run): the
 * activation arena (exactly the plan's arena_bytes, kernel scratch included)
 * and the block prepacked from the weights. LDMC_ERR_INVALID for another
 * backend's executable. */
ldmc_status ldmc_llvm_cpu_memory(const ldmc_executable *e, size_t *arena_bytes, size_t *prepacked_bytes);

/* Ahead-of-time output. */
typedef enum ldmc_llvm_cpu_emit_kind { LDMC_EMIT_OBJ, LDMC_EMIT_ASM, LDMC_EMIT_LLVM } ldmc_llvm_cpu_emit_kind;
bool ldmc_llvm_cpu_emit_kind_parse(const char *s, ldmc_llvm_cpu_emit_kind *out);

/* Compiles g into one self-contained module whose entry point is
 *   void ENTRY(const void *const *inputs, void *const *outputs, void *workspace);
 * (inputs in parameter order, outputs in output order, each a dense row-major
 * buffer of its type; workspace: ENTRY_WORKSPACE_BYTES bytes, 64-byte aligned)
 * and writes it to path as an object file, assembly or LLVM IR. If header_path
 * is non-NULL it writes the C header declaring the entry point there. entry
 * defaults to the graph name (made a C identifier). Kernels run on one thread.
 * Graphs with nodes the backend cannot generate code for are refused. */
ldmc_status ldmc_llvm_cpu_emit(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_llvm_cpu_emit_kind kind,
                               const char *path, const char *header_path, const char *entry);

#endif
