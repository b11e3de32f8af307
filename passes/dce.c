/* Dead code elimination: keeps what the outputs need, and every parameter
 * (they are the graph's inputs, in order). */
#include <stdlib.h>

#include "passes/pass_util.h"

static bool run_dce(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  bool *keep = calloc((size_t)g->n_nodes + 1, sizeof *keep);
  if (!keep) return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_NOMEM, "dce: out of memory"));
  for (int32_t i = 0; i < g->n_outputs; i++) keep[g->outputs[i]] = true;
  int32_t dead = 0;
  for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) keep[i] = true;
    if (!keep[i]) {
      dead++;
      continue;
    }
    for (int k = 0; k < n->n_operands; k++) keep[n->operands[k]] = true;
  }
  if (dead == 0) {
    free(keep);
    return false;
  }
  ldmc_status s = ldmc_graph_compact(g, keep, NULL);
  free(keep);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  return true;
}

const ldmc_pass ldmc_pass_dce = {"dce", run_dce, 0};
