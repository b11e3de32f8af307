/* Donated state: the checks and output delivery both backends share (see
 * backends/backend.h, "donated state"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"

static const char *type_str(ldmc_dtype dt, const ldmc_shape *s, char *buf, size_t len) {
  char sh[160];
  snprintf(buf, len, "%s%s", ldmc_dtype_name(dt), ldmc_shape_str(s, sh, sizeof sh));
  return buf;
}

static const char *param_name(const ldmc_node *n) { return n->attrs.name ? n->attrs.name : ""; }

ldmc_status ldmc_donation_check(const ldmc_graph *g, const ldmc_compile_opts *o) {
  if (!o || !o->donate) return LDMC_OK;
  int32_t np = ldmc_graph_num_params(g);
  const ldmc_node **params = calloc((size_t)(np ? np : 1), sizeof *params);
  int32_t *by = malloc((size_t)(np ? np : 1) * sizeof *by);
  ldmc_status st = params && by ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t i = 0, k = 0; st == LDMC_OK && i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) params[k] = &g->nodes[i], by[k++] = -1;
  char a[256], b[256];
  for (int32_t out = 0; st == LDMC_OK && out < g->n_outputs; out++) {
    int32_t p = o->donate[out];
    if (p < 0) continue;
    const ldmc_node *on = &g->nodes[g->outputs[out]];
    if (p >= np)
      st = ldmc_error(LDMC_ERR_INVALID, "output '%s' is donated to parameter %d, but graph '%s' has %d parameters",
                      g->output_names[out], (int)p, g->name, (int)np);
    else if (by[p] >= 0)
      st = ldmc_error(LDMC_ERR_INVALID, "parameter '%s' is donated to two outputs ('%s' and '%s')", param_name(params[p]),
                      g->output_names[by[p]], g->output_names[out]);
    else if (on->dtype != params[p]->dtype || !ldmc_shape_equal(&on->shape, &params[p]->shape))
      st = ldmc_error(LDMC_ERR_INVALID, "output '%s' (%s) cannot be donated to parameter '%s' (%s)", g->output_names[out],
                      type_str(on->dtype, &on->shape, a, sizeof a), param_name(params[p]),
                      type_str(params[p]->dtype, &params[p]->shape, b, sizeof b));
    else if (o->params_are_weights && p >= o->n_activation_params)
      st = ldmc_error(LDMC_ERR_INVALID,
                      "parameter '%s' is donated to output '%s' but declared a weight (index %d >= %d activations): "
                      "state updated in place changes every run",
                      param_name(params[p]), g->output_names[out], (int)p, (int)o->n_activation_params);
    if (st == LDMC_OK) by[p] = out;
  }
  free(params);
  free(by);
  return st;
}

ldmc_status ldmc_output_deliver(const ldmc_graph *g, int32_t o, const void *data, bool reuse, ldmc_tensor *out) {
  const ldmc_node *n = &g->nodes[g->outputs[o]];
  if (!(reuse && out->owns_data && out->data && out->dtype == n->dtype && ldmc_shape_equal(&out->shape, &n->shape))) {
    if (reuse) ldmc_tensor_release(out);
    LDMC_TRY(ldmc_tensor_alloc(out, g->output_names[o], n->dtype, &n->shape));
  }
  if (out->nbytes) memcpy(out->data, data, out->nbytes);
  return LDMC_OK;
}
