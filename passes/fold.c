/* Constant folding: a node whose operands are all constants (or iotas) and
 * whose result has at most ctx->fold_limit elements becomes a constant,
 * computed by the evaluator in eval.c. One sweep folds whole chains. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

#define DEFAULT_FOLD_LIMIT 65536

static bool known(const ldmc_node *n) { return n->op == LDMC_OP_CONSTANT || n->op == LDMC_OP_IOTA; }

static bool run_fold(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  int64_t limit = ctx && ctx->fold_limit > 0 ? ctx->fold_limit : DEFAULT_FOLD_LIMIT;
  bool changed = false;
  ldmc_tensor ins[16];
  for (int32_t i = 0; i < g->n_nodes; i++) {
    ldmc_node *n = &g->nodes[i];
    if (n->n_operands == 0 || n->n_operands > 16 || !ldmc_eval_supported(n->op)) continue;
    bool all = true;
    for (int k = 0; k < n->n_operands && all; k++) all = known(&g->nodes[n->operands[k]]);
    if (!all || ldmc_node_numel(n) > limit) continue;
    int k = 0;
    ldmc_status s = LDMC_OK;
    for (; k < n->n_operands && s == LDMC_OK; k++) s = ldmc_eval_node(&g->nodes[n->operands[k]], NULL, &ins[k]);
    if (s != LDMC_OK) k--; /* the failed one holds nothing */
    ldmc_tensor out = {0};
    if (s == LDMC_OK) s = ldmc_eval_node(n, ins, &out);
    for (int j = 0; j < k; j++) ldmc_tensor_release(&ins[j]);
    if (s == LDMC_ERR_UNSUPPORTED) {
      ldmc_error_clear();
      continue;
    }
    if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
    s = ldmc_node_make_constant(n, out.data, out.nbytes);
    ldmc_tensor_release(&out);
    if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
    changed = true;
  }
  return changed;
}

const ldmc_pass ldmc_pass_fold = {"fold", run_fold, 0};
