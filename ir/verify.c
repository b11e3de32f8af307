/* ldmc_graph_verify: SSA order, operand ids, types (re-inferred and compared
 * with each node's), parameter and output names. Messages read
 * "%<id> <op>: <rule broken>". */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/shape_rules_util.h"

typedef struct named {
  const char *name;
  int32_t idx;
} named;

static int named_cmp(const void *a, const void *b) {
  const named *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Sorted by name then index: a duplicate is the later of two equal neighbours. */
static const named *first_duplicate(named *v, int32_t n, const named **earlier) {
  qsort(v, (size_t)n, sizeof *v, named_cmp);
  const named *best = NULL;
  for (int32_t i = 1; i < n; i++)
    if (strcmp(v[i].name, v[i - 1].name) == 0 && (!best || v[i].idx < best->idx)) {
      best = &v[i];
      *earlier = &v[i - 1];
    }
  return best;
}

#define NODE_ERR(id, n, fmt, ...) \
  ldmc_error(LDMC_ERR_INVALID, "%%%d %s: " fmt, (int)(id), ldmc_op_name((n)->op), __VA_ARGS__)

static ldmc_status verify_node(const ldmc_graph *g, int32_t id, ldmc_dtype *dts, ldmc_shape *shapes) {
  const ldmc_node *n = &g->nodes[id];
  if ((unsigned)n->op >= LDMC_OP_COUNT) return ldmc_error(LDMC_ERR_INVALID, "%%%d: op %d is not a valid op", (int)id, (int)n->op);
  if (n->n_operands < 0 || (n->n_operands > 0 && !n->operands))
    return NODE_ERR(id, n, "has %d operands but no operand list", n->n_operands);
  if ((unsigned)n->dtype >= LDMC_DTYPE_COUNT) return NODE_ERR(id, n, "dtype %d is invalid", (int)n->dtype);
  if (n->shape.rank < 0 || n->shape.rank > LDMC_MAX_RANK)
    return NODE_ERR(id, n, "rank %d is outside 0..%d", n->shape.rank, LDMC_MAX_RANK);
  for (int i = 0; i < n->n_operands; i++) {
    int32_t o = n->operands[i];
    if (o < 0 || o >= g->n_nodes) return NODE_ERR(id, n, "operand %d refers to %%%d, which does not exist", i, (int)o);
    if (o >= id) return NODE_ERR(id, n, "operand %d refers to %%%d, which is not defined before it (SSA order)", i, (int)o);
    dts[i] = g->nodes[o].dtype;
    shapes[i] = g->nodes[o].shape;
  }
  if (n->op == LDMC_OP_PARAMETER && (!n->attrs.name || !n->attrs.name[0])) return NODE_ERR(id, n, "%s", "name is empty");
  ldmc_type_query q = {.op = n->op, .attrs = &n->attrs, .n_operands = n->n_operands, .operand_dtypes = dts,
                       .operand_shapes = shapes, .dtype = n->dtype, .shape = n->shape};
  if (ldmc_infer_type(&q) != LDMC_OK) {
    ldmc_error_prefix("%%%d ", (int)id);
    return LDMC_ERR_INVALID;
  }
  if (q.dtype != n->dtype || !ldmc_shape_equal(&q.shape, &n->shape)) {
    char have[LDMC_TYPE_STR_LEN], want[LDMC_TYPE_STR_LEN];
    return NODE_ERR(id, n, "node type %s differs from the inferred type %s",
                    ldmc_type_str(n->dtype, &n->shape, have, sizeof have),
                    ldmc_type_str(q.dtype, &q.shape, want, sizeof want));
  }
  return LDMC_OK;
}

static ldmc_status verify_names(const ldmc_graph *g) {
  int32_t np = 0, cap = g->n_nodes > g->n_outputs ? g->n_nodes : g->n_outputs;
  named *v = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *v);
  if (!v) return ldmc_error(LDMC_ERR_NOMEM, "out of memory verifying graph '%s'", g->name ? g->name : "");
  ldmc_status st = LDMC_OK;
  const named *dup, *earlier = NULL;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) v[np++] = (named){g->nodes[i].attrs.name, i};
  if ((dup = first_duplicate(v, np, &earlier))) {
    st = ldmc_error(LDMC_ERR_INVALID, "%%%d parameter: name '%s' is already used by %%%d", (int)dup->idx, dup->name,
                    (int)earlier->idx);
    goto done;
  }
  for (int32_t i = 0; i < g->n_outputs; i++) v[i] = (named){g->output_names[i], i};
  if ((dup = first_duplicate(v, g->n_outputs, &earlier)))
    st = ldmc_error(LDMC_ERR_INVALID, "output %d: name '%s' is already used by output %d", (int)dup->idx, dup->name,
                    (int)earlier->idx);
done:
  free(v);
  return st;
}

ldmc_status ldmc_graph_verify(const ldmc_graph *g) {
  if (!g) return ldmc_error(LDMC_ERR_INVALID, "verify: no graph");
  if (g->n_nodes < 0 || (g->n_nodes > 0 && !g->nodes))
    return ldmc_error(LDMC_ERR_INVALID, "graph has %d nodes but no node array", (int)g->n_nodes);
  if (g->n_outputs < 0 || (g->n_outputs > 0 && (!g->outputs || !g->output_names)))
    return ldmc_error(LDMC_ERR_INVALID, "graph has %d outputs but no output arrays", (int)g->n_outputs);
  int max_ops = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].n_operands > max_ops) max_ops = g->nodes[i].n_operands;
  ldmc_dtype *dts = malloc((size_t)(max_ops ? max_ops : 1) * sizeof *dts);
  ldmc_shape *shapes = malloc((size_t)(max_ops ? max_ops : 1) * sizeof *shapes);
  ldmc_status st = LDMC_OK;
  if (!dts || !shapes) {
    st = ldmc_error(LDMC_ERR_NOMEM, "out of memory verifying graph");
    goto done;
  }
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) st = verify_node(g, i, dts, shapes);
  for (int32_t i = 0; i < g->n_outputs && st == LDMC_OK; i++) {
    const char *nm = g->output_names[i];
    if (!nm || !nm[0]) st = ldmc_error(LDMC_ERR_INVALID, "output %d: name is empty", (int)i);
    else if (g->outputs[i] < 0 || g->outputs[i] >= g->n_nodes)
      st = ldmc_error(LDMC_ERR_INVALID, "output %d '%s' refers to %%%d, which does not exist", (int)i, nm,
                      (int)g->outputs[i]);
  }
  if (st == LDMC_OK) st = verify_names(g);
done:
  free(dts);
  free(shapes);
  return st;
}
