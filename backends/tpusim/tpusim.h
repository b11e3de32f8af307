/* The tpusim backend: ldmc graphs lowered to tpusim instruction streams (a
 * kernel per node, elementwise chains fused into one or into the matmul or
 * convolution that feeds them, attention as one flash
 * kernel) and run on the functional simulator.
 * docs/backends/tpusim.md, "Lowering (v0)". */
#ifndef LDMC_TPUSIM_TPUSIM_H
#define LDMC_TPUSIM_TPUSIM_H

#include "backends/backend.h"
#include "backends/tpusim/sim.h"

/* name "tpusim". The target is $LDMC_TPUSIM_TARGET (a preset name, or a JSON
 * target file when it contains '/' or ends in ".json"), default "v5e".
 * dot_general is compiled only with ldmc_compile_opts.bf16 (its inputs are
 * rounded to bf16 by the matrix units), so supports() says no to it.
 * An executable runs one call at a time (its buffers and counters are shared). */
extern const ldmc_backend_i ldmc_backend_tpusim;

/* As the backend's compile(), for target t (NULL: as above). */
ldmc_status ldmc_tpusim_compile(const ldmc_graph *g, const ldmc_compile_opts *o, const ldmc_tpu_target *t,
                                ldmc_executable **out);

/* As ldmc_tpusim_compile, simulating in `mode`. LDMC_TPU_SIM_TIMING_ONLY
 * computes nothing: no node buffers are allocated (only the outputs, which
 * stay zero), inputs are never read, and every run only advances the
 * simulated clock and the per-kernel statistics (profiling large graphs). */
ldmc_status ldmc_tpusim_compile_mode(const ldmc_graph *g, const ldmc_compile_opts *o, const ldmc_tpu_target *t,
                                     ldmc_tpu_sim_mode mode, ldmc_executable **out);

/* A target named as $LDMC_TPUSIM_TARGET is: a preset name, or a JSON target
 * file when s contains '/' or ends in ".json"; NULL or "" is v5e. */
ldmc_status ldmc_tpusim_target_resolve(const char *s, ldmc_tpu_target *t);

/* Profiling (ldmc_executable_set_profiler): one event per kernel run, named
 * by its op ("ew" for a fused chain, "dot_general+ew" / "convolution+ew" for a product with its
 * chain, "group_norm+ew" / "layer_norm+ew" for a norm with its chain), with the FLOPs and bytes of its nodes; start_ns and end_ns are
 * SIMULATED time (cycles / clock_hz of the target), on a clock that starts
 * at 0 when the executable is compiled and advances by each kernel's cycles
 * (kernels run one after another). The host's time is not reported.
 *
 * One kernel of a tpusim executable: the node it computes, its stream, the
 * sizes of its off-chip buffers (operands, then the result) and the
 * simulator's counters of its last run (zero before the first). */
typedef struct ldmc_tpusim_kernel {
  int32_t node; /* id in the executable's graph: the root, whose value the kernel writes */
  const int32_t *nodes; /* n_nodes ids, ascending, root last: every node it computes (a fused elementwise
                           chain computes several on chip; the others have no kernel and no value off chip) */
  int n_nodes;
  const int32_t *buf_nodes; /* mem.count ids: the node whose value each off-chip buffer holds */
  const char *tiles; /* the tiles chosen, e.g. "tile m128 k512 n128" */
  const ldmc_tpu_program *program;
  ldmc_tpu_mem mem; /* sizes only (data NULL): what ldmc_tpu_verify needs */
  ldmc_tpu_stats stats;
  uint64_t runs;
  /* Weights laid out once (ldmc_compile_opts.params_are_weights): a dot_general or convolution whose
   * operand 1 is a weight parameter reads, as off-chip buffer packed_buf, that weight converted to bf16
   * and cut into the tiles its stream loads, in load order, each tile's rows back to back (packed_bytes
   * = 2 x the weight's elements; -1 and 0: none). packed: the buffer after the last run (functional
   * mode; NULL before it and in timing-only mode), packed when a weight tensor is first passed and again
   * only when another one (another data pointer) is. */
  int packed_buf;
  uint64_t packed_bytes;
  const uint16_t *packed;
} ldmc_tpusim_kernel;

/* Bytes of all kernels' packed weights (the per-executable buffers); 0 when none or not tpusim. */
uint64_t ldmc_tpusim_packed_bytes(const ldmc_executable *e);

/* -1 when e is not a tpusim executable. */
int ldmc_tpusim_kernel_count(const ldmc_executable *e);
ldmc_status ldmc_tpusim_kernel_get(const ldmc_executable *e, int i, ldmc_tpusim_kernel *out);
/* The target e was compiled for; NULL when e is not a tpusim executable. */
const ldmc_tpu_target *ldmc_tpusim_target(const ldmc_executable *e);

#endif
