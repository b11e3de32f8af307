/* The tpusim backend: ldmc graphs lowered to tpusim instruction streams (one
 * kernel per node, no fusion yet) and run on the functional simulator.
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

/* One kernel of a tpusim executable: the node it computes, its stream, the
 * sizes of its off-chip buffers (operands, then the result) and the
 * simulator's counters of its last run (zero before the first). */
typedef struct ldmc_tpusim_kernel {
  int32_t node; /* id in the executable's graph */
  const char *tiles; /* the tiles chosen, e.g. "tile m128 k512 n128" */
  const ldmc_tpu_program *program;
  ldmc_tpu_mem mem; /* sizes only (data NULL): what ldmc_tpu_verify needs */
  ldmc_tpu_stats stats;
  uint64_t runs;
} ldmc_tpusim_kernel;

/* -1 when e is not a tpusim executable. */
int ldmc_tpusim_kernel_count(const ldmc_executable *e);
ldmc_status ldmc_tpusim_kernel_get(const ldmc_executable *e, int i, ldmc_tpusim_kernel *out);
/* The target e was compiled for; NULL when e is not a tpusim executable. */
const ldmc_tpu_target *ldmc_tpusim_target(const ldmc_executable *e);

#endif
