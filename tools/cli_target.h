/* One target vocabulary for every command: --target NAME[:VARIANT] names what
 * executes (interp, llvm-cpu, tpusim on its simulator; nvptx is a planning
 * description with no backend yet), --backend is a synonym. */
#ifndef LDMC_TOOLS_CLI_TARGET_H
#define LDMC_TOOLS_CLI_TARGET_H

#include "backends/backend.h"
#include "passes/passes.h"
#include "tools/cli_args.h"

/* "interp, llvm-cpu, nvptx, tpusim": the user-facing targets. Static storage. */
const char *ldmc_cli_target_names(void);

/* The help text of a --target flag. Static storage. */
const char *ldmc_cli_target_help(const char *what);

/* The value of --target or its synonym --backend (NULL if neither; a usage
 * error if both are given and differ: *rc set, returns NULL). */
const char *ldmc_cli_target_flag(const ldmc_cli_cmd *c, int *rc);

typedef struct ldmc_cli_target {
  const ldmc_target *t;      /* the pass pipeline's description */
  const ldmc_backend_i *be;  /* what executes it; NULL: planning only */
  char variant[256];         /* llvm-cpu: the ISA level (scalar, avx2, avx512); tpusim: the preset or target
                                file; "" default */
} ldmc_cli_target;

/* Parses NAME[:VARIANT]; an error message naming the choices otherwise. A
 * variant of llvm-cpu selects the ISA level (sets LDMC_LLVM_CPU_ISA). */
ldmc_status ldmc_cli_target_parse(const char *spec, ldmc_cli_target *out);

/* The plan the target executes: its backend's own (the optimized graph
 * replaces *g) when it has one, else the target's pass pipeline over *g. */
ldmc_status ldmc_cli_target_plan(const ldmc_cli_target *ct, ldmc_graph **g, const ldmc_compile_opts *co,
                                 const ldmc_pipeline_opts *po, ldmc_plan **plan);

/* ldmc stats' plan columns for a target: those of ldmc_cli_target_plan on a copy of g. */
ldmc_status ldmc_cli_target_plan_stats(const ldmc_cli_target *ct, const ldmc_graph *g, int32_t n_activation_params,
                                       bool bf16, ldmc_plan_stats *out);

/* "executed by llvm-cpu" / "planning only: no backend executes target tpusim" */
const char *ldmc_cli_target_executor(const ldmc_cli_target *ct, const ldmc_plan *plan);

#endif
