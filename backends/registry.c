/* The backend registry, and running executables with inputs checked against
 * the graph's parameters. Adding a backend: one line in k_backends. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"

static const ldmc_backend_i *const k_backends[] = {
    &ldmc_backend_interp,
    &ldmc_backend_llvm_cpu,
};
enum { N_BACKENDS = (int)(sizeof k_backends / sizeof k_backends[0]) };

int ldmc_backend_count(void) { return N_BACKENDS; }

const ldmc_backend_i *ldmc_backend_get(int i) { return i >= 0 && i < N_BACKENDS ? k_backends[i] : NULL; }

const ldmc_backend_i *ldmc_backend_find(const char *name) {
  char names[512];
  size_t k = 0;
  names[0] = 0;
  for (int i = 0; i < N_BACKENDS; i++) {
    if (name && strcmp(k_backends[i]->name, name) == 0) return k_backends[i];
    if (k < sizeof names) k += (size_t)snprintf(names + k, sizeof names - k, i ? ", %s" : "%s", k_backends[i]->name);
  }
  ldmc_error(LDMC_ERR_INVALID, "unknown backend '%s' (available: %s)", name ? name : "(null)", names);
  return NULL;
}

/* "f32[2,3]" */
static const char *type_str(ldmc_dtype dt, const ldmc_shape *s, char *buf, size_t len) {
  char sh[LDMC_MAX_RANK * 24 + 8];
  if (s->rank < 0 || s->rank > LDMC_MAX_RANK)
    snprintf(buf, len, "%s[<rank %d>]", ldmc_dtype_name(dt), s->rank);
  else
    snprintf(buf, len, "%s%s", ldmc_dtype_name(dt), ldmc_shape_str(s, sh, sizeof sh));
  return buf;
}

static const char *param_name(const ldmc_node *n) { return n->attrs.name ? n->attrs.name : ""; }

/* Checks one input against parameter node p: type, and storage large enough. */
static ldmc_status check_input(const ldmc_node *p, const ldmc_tensor *t, const char *what) {
  char want[256], got[256];
  if (t->dtype != p->dtype || !ldmc_shape_equal(&t->shape, &p->shape))
    return ldmc_error(LDMC_ERR_INVALID, "%s '%s': expected %s, found %s", what, param_name(p),
                      type_str(p->dtype, &p->shape, want, sizeof want), type_str(t->dtype, &t->shape, got, sizeof got));
  int64_t n;
  LDMC_TRY(ldmc_shape_numel(&p->shape, ldmc_dtype_size(p->dtype), &n));
  size_t need = (size_t)n * ldmc_dtype_size(p->dtype);
  if (t->nbytes < need || (need && !t->data))
    return ldmc_error(LDMC_ERR_INVALID, "%s '%s' (%s): holds %zu bytes, needs %zu", what, param_name(p),
                      type_str(p->dtype, &p->shape, want, sizeof want), t->data ? t->nbytes : 0, need);
  return LDMC_OK;
}

ldmc_status ldmc_executable_run(ldmc_executable *e, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs,
                                int n_outputs) {
  if (!e || !e->graph || !e->iface || !e->iface->run) return ldmc_error(LDMC_ERR_INVALID, "no executable to run");
  const ldmc_graph *g = e->graph;
  int32_t np = ldmc_graph_num_params(g);
  if (n_inputs != np || (n_inputs > 0 && !inputs))
    return ldmc_error(LDMC_ERR_INVALID, "graph '%s' takes %d input(s), got %d", g->name, (int)np, n_inputs);
  if (n_outputs != g->n_outputs || (n_outputs > 0 && !outputs))
    return ldmc_error(LDMC_ERR_INVALID, "graph '%s' has %d output(s), got room for %d", g->name, (int)g->n_outputs,
                      n_outputs);
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    if (g->nodes[i].op != LDMC_OP_PARAMETER) continue;
    char what[32];
    snprintf(what, sizeof what, "input %d", (int)k);
    LDMC_TRY(check_input(&g->nodes[i], &inputs[k++], what));
  }
  return e->iface->run(e->context, inputs, n_inputs, outputs, n_outputs);
}

ldmc_status ldmc_executable_run_named(ldmc_executable *e, const ldmc_tensor_set *inputs, ldmc_tensor_set *outputs) {
  if (!e || !e->graph || !inputs || !outputs) return ldmc_error(LDMC_ERR_INVALID, "no executable or tensors to run");
  const ldmc_graph *g = e->graph;
  int32_t np = ldmc_graph_num_params(g);
  char want[256], got[256];
  /* every given tensor must be a parameter */
  for (int32_t j = 0; j < inputs->n; j++) {
    const ldmc_tensor *t = &inputs->items[j];
    if (ldmc_graph_find_param(g, t->name ? t->name : "") < 0)
      return ldmc_error(LDMC_ERR_INVALID, "unexpected input '%s' (%s): graph '%s' has no such parameter",
                        t->name ? t->name : "", type_str(t->dtype, &t->shape, got, sizeof got), g->name);
  }
  ldmc_tensor *ordered = calloc((size_t)(np ? np : 1), sizeof *ordered);
  ldmc_tensor *outs = calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *outs);
  ldmc_status st = LDMC_OK;
  if (!ordered || !outs) {
    st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int32_t i = 0, k = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const ldmc_tensor *t = ldmc_tensor_set_find(inputs, param_name(p));
    if (!t) {
      st = ldmc_error(LDMC_ERR_INVALID, "missing input '%s' (expected %s)", param_name(p),
                      type_str(p->dtype, &p->shape, want, sizeof want));
      break;
    }
    st = check_input(p, t, "input");
    ordered[k++] = *t; /* shallow: run() only reads */
  }
  if (st == LDMC_OK) st = ldmc_executable_run(e, ordered, np, outs, g->n_outputs);
  if (st == LDMC_OK) {
    for (int32_t k = 0; k < g->n_outputs; k++) {
      if (st == LDMC_OK) st = ldmc_tensor_set_add(outputs, &outs[k]); /* takes ownership on success */
      if (st != LDMC_OK) ldmc_tensor_release(&outs[k]);
    }
  }
done:
  free(ordered);
  free(outs);
  return st;
}

void ldmc_executable_free(ldmc_executable *e) {
  if (!e) return;
  if (e->iface && e->iface->destroy) e->iface->destroy(e->context);
  ldmc_graph_free(e->graph);
  free(e);
}
