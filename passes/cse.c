/* Common subexpression elimination: a node equal to an earlier one (op, type,
 * operands, attributes, constant data) is replaced by it. Parameters are never
 * merged; rng ops are pure functions of their key, so they merge too. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

static uint64_t node_hash(const ldmc_node *n) {
  uint64_t h = (uint64_t)n->op * 0x100000001b3ull ^ (uint64_t)n->dtype << 32;
  h ^= (uint64_t)n->shape.rank * 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < n->shape.rank; i++) h = (h ^ (uint64_t)n->shape.dims[i]) * 0x100000001b3ull;
  for (int i = 0; i < n->n_operands; i++) h = (h ^ (uint64_t)n->operands[i]) * 0xff51afd7ed558ccdull;
  return h ^ ldmc_attrs_hash(n->op, &n->attrs);
}

static bool node_same(const ldmc_node *a, const ldmc_node *b) {
  if (a->op != b->op || a->dtype != b->dtype || !ldmc_shape_equal(&a->shape, &b->shape) ||
      a->n_operands != b->n_operands)
    return false;
  if (a->n_operands && memcmp(a->operands, b->operands, (size_t)a->n_operands * sizeof *a->operands) != 0)
    return false;
  return ldmc_attrs_equal(a->op, &a->attrs, &b->attrs);
}

static bool run_cse(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  int32_t n = g->n_nodes;
  size_t cap = 16;
  while (cap < (size_t)n * 2) cap <<= 1;
  int32_t *table = malloc(cap * sizeof *table);
  int32_t *repl = malloc(((size_t)n + 1) * sizeof *repl);
  if (!table || !repl) {
    free(table);
    free(repl);
    return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_NOMEM, "cse: out of memory"));
  }
  for (size_t i = 0; i < cap; i++) table[i] = -1;
  bool merged = false;
  for (int32_t i = 0; i < n; i++) {
    ldmc_node *nd = &g->nodes[i];
    repl[i] = i;
    /* operands first: earlier merges feed later matches in one sweep */
    for (int k = 0; k < nd->n_operands; k++) nd->operands[k] = repl[nd->operands[k]];
    if (nd->op == LDMC_OP_PARAMETER) continue;
    size_t h = (size_t)node_hash(nd) & (cap - 1);
    while (table[h] >= 0) {
      if (node_same(&g->nodes[table[h]], nd)) break;
      h = (h + 1) & (cap - 1);
    }
    if (table[h] >= 0) {
      repl[i] = table[h];
      merged = true;
    } else {
      table[h] = i;
    }
  }
  for (int32_t i = 0; i < g->n_outputs; i++) g->outputs[i] = repl[g->outputs[i]];
  free(table);
  ldmc_status s = LDMC_OK;
  if (merged) { /* drop the merged copies so a second run finds nothing */
    bool *keep = malloc(((size_t)n + 1) * sizeof *keep);
    if (!keep) {
      s = ldmc_error(LDMC_ERR_NOMEM, "cse: out of memory");
    } else {
      for (int32_t i = 0; i < n; i++) keep[i] = repl[i] == i;
      s = ldmc_graph_compact(g, keep, NULL);
      free(keep);
    }
  }
  free(repl);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  return merged;
}

const ldmc_pass ldmc_pass_cse = {"cse", run_cse, 0};
