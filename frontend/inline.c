/* Inlining one graph into another (ldmc_builder_inline, frontend.h): how a
 * model is composed of models (the prompt encoder feeding the U-Net in one
 * training graph; a frozen teacher next to a student). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/builder_internal.h"

static char *joined(const char *a, const char *sep, const char *b) {
  size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
  char *s = malloc(la + strlen(sep) + lb + 1);
  if (!s) return NULL;
  snprintf(s, la + strlen(sep) + lb + 1, "%s%s%s", a ? a : "", la && lb ? sep : "", b ? b : "");
  return s;
}

ldmc_status ldmc_builder_inline(ldmc_builder *b, const ldmc_graph *g, const ldmc_value *bind, const char *param_prefix,
                                ldmc_value *out) {
  if (!ldmc_builder_ok(b, 0, NULL)) return ldmc_builder_status(b);
  ldmc_graph *dst = ldmc_builder_graph(b);
  int max_ops = 1;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].n_operands > max_ops) max_ops = g->nodes[i].n_operands;
  int32_t *map = malloc((size_t)(g->n_nodes + 1) * sizeof *map), *ops = malloc((size_t)max_ops * sizeof *ops);
  if (!map || !ops) {
    free(map), free(ops);
    ldmc_error(LDMC_ERR_NOMEM, "inlining graph '%s': out of memory", g->name ? g->name : "");
    ldmc_builder_fail(b, LDMC_ERR_NOMEM);
    return LDMC_ERR_NOMEM;
  }
  const char *outer = ldmc_builder_scope(b);
  int32_t param = 0;
  ldmc_status st = LDMC_OK;
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) {
      ldmc_value v = bind ? bind[param] : -1;
      param++;
      if (v >= 0) { /* bound to a value of the caller's: same type required */
        const ldmc_shape *vs = ldmc_value_shape(b, v);
        if (!vs || !ldmc_shape_equal(vs, &n->shape) || ldmc_value_dtype(b, v) != n->dtype) {
          char want[160], got[160];
          ldmc_shape_str(&n->shape, want, sizeof want);
          if (vs) ldmc_shape_str(vs, got, sizeof got);
          ldmc_builder_failf(b, LDMC_ERR_INVALID, "inlining graph '%s': parameter '%s' is %s %s, bound to %s %s",
                             g->name ? g->name : "", n->attrs.name ? n->attrs.name : "", ldmc_dtype_name(n->dtype), want,
                             vs ? ldmc_dtype_name(ldmc_value_dtype(b, v)) : "?", vs ? got : "no value");
          st = ldmc_builder_status(b);
          break;
        }
        map[i] = v;
        continue;
      }
      char *name = joined(param_prefix, "", n->attrs.name);
      if (!name) {
        st = LDMC_ERR_NOMEM;
        break;
      }
      map[i] = ldmc_parameter(b, name, n->dtype, n->shape.rank, n->shape.dims);
      free(name);
      if (map[i] < 0) st = ldmc_builder_status(b);
      continue;
    }
    for (int k = 0; k < n->n_operands; k++) ops[k] = map[n->operands[k]];
    char *scope = joined(outer, ".", n->scope);
    if (!scope) {
      st = LDMC_ERR_NOMEM;
      break;
    }
    map[i] = ldmc_graph_add(dst, n->op, n->dtype, &n->shape, n->n_operands, ops, &n->attrs, scope[0] ? scope : NULL);
    free(scope);
    if (map[i] < 0) {
      ldmc_error_prefix("inlining graph '%s': ", g->name ? g->name : "");
      ldmc_builder_fail(b, LDMC_ERR_INVALID);
      st = LDMC_ERR_INVALID;
    }
  }
  if (st == LDMC_OK && out)
    for (int32_t j = 0; j < g->n_outputs; j++) out[j] = map[g->outputs[j]];
  if (st == LDMC_ERR_NOMEM) {
    ldmc_error(LDMC_ERR_NOMEM, "inlining graph '%s': out of memory", g->name ? g->name : "");
    ldmc_builder_fail(b, LDMC_ERR_NOMEM);
  }
  free(map), free(ops);
  return st;
}
