/* Graph construction, copying and queries. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

ldmc_graph *ldmc_graph_new(const char *name) {
  ldmc_graph *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->name = strdup(name ? name : "main");
  if (!g->name) {
    free(g);
    return NULL;
  }
  return g;
}

static void node_free(ldmc_node *n) {
  free(n->operands);
  free(n->scope);
  ldmc_attrs_free(&n->attrs);
}

void ldmc_graph_free(ldmc_graph *g) {
  if (!g) return;
  for (int32_t i = 0; i < g->n_nodes; i++) node_free(&g->nodes[i]);
  for (int32_t i = 0; i < g->n_outputs; i++) free(g->output_names[i]);
  free(g->nodes);
  free(g->outputs);
  free(g->output_names);
  free(g->name);
  free(g);
}

int32_t ldmc_graph_add(ldmc_graph *g, ldmc_op op, ldmc_dtype dtype, const ldmc_shape *shape, int n_operands,
                       const int32_t *operands, const ldmc_attrs *attrs, const char *scope) {
  if (n_operands < 0 || (n_operands > 0 && !operands)) {
    ldmc_error(LDMC_ERR_INVALID, "%s: bad operand list (%d operands)", ldmc_op_name(op), n_operands);
    return -1;
  }
  if (g->n_nodes == INT32_MAX) {
    ldmc_error(LDMC_ERR_INVALID, "graph '%s' has too many nodes", g->name);
    return -1;
  }
  if (g->n_nodes == g->cap_nodes) {
    int64_t cap = g->cap_nodes ? (int64_t)g->cap_nodes * 2 : 64;
    if (cap > INT32_MAX) cap = INT32_MAX;
    ldmc_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
    if (!nodes) {
      ldmc_error(LDMC_ERR_NOMEM, "out of memory growing graph '%s'", g->name);
      return -1;
    }
    g->nodes = nodes;
    g->cap_nodes = (int32_t)cap;
  }
  ldmc_node n = {0};
  n.op = op;
  n.dtype = dtype;
  if (shape) n.shape = *shape;
  n.n_operands = n_operands;
  if (n_operands > 0) {
    n.operands = malloc((size_t)n_operands * sizeof *n.operands);
    if (!n.operands) {
      ldmc_error(LDMC_ERR_NOMEM, "out of memory");
      return -1;
    }
    memcpy(n.operands, operands, (size_t)n_operands * sizeof *n.operands);
  }
  if (attrs && ldmc_attrs_copy(&n.attrs, attrs) != LDMC_OK) {
    free(n.operands);
    return -1;
  }
  if (scope && *scope && !(n.scope = strdup(scope))) {
    node_free(&n);
    ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    return -1;
  }
  g->nodes[g->n_nodes] = n;
  return g->n_nodes++;
}

int32_t ldmc_graph_add_checked(ldmc_graph *g, ldmc_op op, ldmc_dtype dtype, const ldmc_shape *shape, int n_operands,
                               const int32_t *operands, const ldmc_attrs *attrs, const char *scope) {
  ldmc_dtype dts[64];
  ldmc_shape shapes[64];
  ldmc_dtype *pd = dts;
  ldmc_shape *ps = shapes;
  if (n_operands > 64) {
    pd = malloc((size_t)n_operands * sizeof *pd);
    ps = malloc((size_t)n_operands * sizeof *ps);
    if (!pd || !ps) {
      free(pd);
      free(ps);
      ldmc_error(LDMC_ERR_NOMEM, "out of memory");
      return -1;
    }
  }
  int32_t id = -1;
  for (int i = 0; i < n_operands; i++) {
    if (operands[i] < 0 || operands[i] >= g->n_nodes) {
      ldmc_error(LDMC_ERR_INVALID, "%s: operand %d refers to %%%d, which does not exist", ldmc_op_name(op), i,
                 (int)operands[i]);
      goto done;
    }
    pd[i] = g->nodes[operands[i]].dtype;
    ps[i] = g->nodes[operands[i]].shape;
  }
  ldmc_attrs empty = {0};
  ldmc_type_query q = {.op = op, .attrs = attrs ? attrs : &empty, .n_operands = n_operands,
                       .operand_dtypes = pd, .operand_shapes = ps, .dtype = dtype};
  if (shape) q.shape = *shape;
  if (ldmc_infer_type(&q) != LDMC_OK) goto done;
  id = ldmc_graph_add(g, op, q.dtype, &q.shape, n_operands, operands, attrs, scope);
done:
  if (pd != dts) {
    free(pd);
    free(ps);
  }
  return id;
}

ldmc_status ldmc_graph_add_output(ldmc_graph *g, int32_t node, const char *name) {
  if (node < 0 || node >= g->n_nodes)
    return ldmc_error(LDMC_ERR_INVALID, "output '%s' refers to %%%d, which does not exist", name ? name : "", (int)node);
  if (g->n_outputs == g->cap_outputs) {
    int32_t cap = g->cap_outputs ? g->cap_outputs * 2 : 4;
    int32_t *outs = realloc(g->outputs, (size_t)cap * sizeof *outs);
    if (!outs) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    g->outputs = outs;
    char **names = realloc(g->output_names, (size_t)cap * sizeof *names);
    if (!names) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    g->output_names = names;
    g->cap_outputs = cap;
  }
  char *nm = strdup(name ? name : "");
  if (!nm) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  g->outputs[g->n_outputs] = node;
  g->output_names[g->n_outputs] = nm;
  g->n_outputs++;
  return LDMC_OK;
}

ldmc_graph *ldmc_graph_clone(const ldmc_graph *g) {
  ldmc_graph *c = ldmc_graph_new(g->name);
  if (!c) return NULL;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (ldmc_graph_add(c, n->op, n->dtype, &n->shape, n->n_operands, n->operands, &n->attrs, n->scope) < 0) {
      ldmc_graph_free(c);
      return NULL;
    }
  }
  for (int32_t i = 0; i < g->n_outputs; i++) {
    if (ldmc_graph_add_output(c, g->outputs[i], g->output_names[i]) != LDMC_OK) {
      ldmc_graph_free(c);
      return NULL;
    }
  }
  return c;
}

int32_t ldmc_graph_num_params(const ldmc_graph *g) {
  int32_t k = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) k += g->nodes[i].op == LDMC_OP_PARAMETER;
  return k;
}

int32_t ldmc_graph_find_param(const ldmc_graph *g, const char *name) {
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER && g->nodes[i].attrs.name && strcmp(g->nodes[i].attrs.name, name) == 0)
      return i;
  return -1;
}

int32_t ldmc_graph_param_node(const ldmc_graph *g, int32_t k) {
  for (int32_t i = 0, q = 0; k >= 0 && i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER && q++ == k) return i;
  return -1;
}

ldmc_flops ldmc_node_flops(const ldmc_graph *g, int32_t id) {
  ldmc_flops f = {0, 0};
  if (id < 0 || id >= g->n_nodes) return f;
  const ldmc_node *n = &g->nodes[id];
  if ((unsigned)n->op >= LDMC_OP_COUNT || n->n_operands < 0) return f;
  for (int i = 0; i < n->n_operands; i++) /* unverified graph: count nothing rather than read wild */
    if (n->operands[i] < 0 || n->operands[i] >= g->n_nodes) return f;
  ldmc_dtype dts[16];
  ldmc_shape shapes[16];
  int k = n->n_operands < 16 ? n->n_operands : 16; /* only variadic concatenate exceeds, and it has no FLOPs */
  for (int i = 0; i < k; i++) {
    dts[i] = g->nodes[n->operands[i]].dtype;
    shapes[i] = g->nodes[n->operands[i]].shape;
  }
  ldmc_type_query q = {.op = n->op, .attrs = &n->attrs, .n_operands = k, .operand_dtypes = dts,
                       .operand_shapes = shapes, .dtype = n->dtype, .shape = n->shape};
  ldmc_op_table[n->op].flop_rule(&q, &f);
  return f;
}

ldmc_flops ldmc_graph_flops(const ldmc_graph *g) {
  ldmc_flops t = {0, 0};
  for (int32_t i = 0; i < g->n_nodes; i++) {
    ldmc_flops f = ldmc_node_flops(g, i);
    t.mac = f.mac > INT64_MAX - t.mac ? INT64_MAX : t.mac + f.mac; /* saturate like the rules */
    t.other = f.other > INT64_MAX - t.other ? INT64_MAX : t.other + f.other;
  }
  return t;
}
