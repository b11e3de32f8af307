/* The decompose pass: composites the target does not run natively are
 * lowered to primitives by ldmc_decompose_composites (decompose.c). */
#include "passes/decompose.h"
#include "passes/pass_util.h"

static bool run_decompose(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  uint64_t keep = ctx && ctx->target ? ctx->target->native_ops : ~UINT64_C(0);
  bool any = false;
  for (int32_t i = 0; i < g->n_nodes && !any; i++)
    any = (ldmc_op_table[g->nodes[i].op].flags & LDMC_OPF_COMPOSITE) && !(keep & LDMC_OPMASK(g->nodes[i].op));
  if (!any) return false;
  ldmc_graph *out = NULL;
  ldmc_status s = ldmc_decompose_composites(g, keep, &out);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  ldmc_graph_take(g, out);
  return true;
}

const ldmc_pass ldmc_pass_decompose = {"decompose", run_decompose, 0};
