/* Reverse-mode autodiff driver (ldmc_grad, frontend.h): copies the forward
 * graph, then walks the nodes on a path from a differentiated parameter to
 * the output in reverse order, calling each op's VJP rule (frontend/vjp.h)
 * and summing cotangents where a value fans out. See docs/autodiff.md. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/builder_internal.h"
#include "frontend/vjp.h"

static const char *param_name(const ldmc_node *n) { return n->attrs.name ? n->attrs.name : ""; }

/* The builder's error code, never LDMC_OK (for failures it did not record). */
static ldmc_status bstatus(const ldmc_builder *b) {
  return ldmc_builder_status(b) != LDMC_OK ? ldmc_builder_status(b) : LDMC_ERR_INTERNAL;
}

/* Appends s to a ", "-separated list in buf; "..." marks where it was cut. */
static void list_add(char *buf, size_t len, const char *s) {
  size_t used = strlen(buf);
  if (used + 1 >= len) return;
  int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", s);
  if (w < 0 || (size_t)w >= len - used) memcpy(buf + len - 4, "...", 4);
}

static int32_t find_output(const ldmc_graph *g, const char *name) {
  if (!name) return g->n_outputs > 0 ? 0 : -1;
  for (int32_t i = 0; i < g->n_outputs; i++)
    if (strcmp(g->output_names[i], name) == 0) return i;
  return -1;
}

/* Marks in sel[] the float parameters to differentiate. */
static ldmc_status select_params(const ldmc_graph *g, const char *re_src, bool *sel) {
  regex_t re;
  if (re_src) {
    int rc = regcomp(&re, re_src, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char why[256];
      regerror(rc, &re, why, sizeof why);
      return ldmc_error(LDMC_ERR_INVALID, "autodiff: wrt_regex '%s' does not compile: %s", re_src, why);
    }
  }
  int n_sel = 0;
  char floats[512] = "", others[512] = "", matched[512] = "";
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER) continue;
    bool fl = ldmc_dtype_is_float(n->dtype);
    bool match = !re_src || regexec(&re, param_name(n), 0, NULL, 0) == 0;
    list_add(fl ? floats : others, sizeof floats, param_name(n));
    if (match && !fl) list_add(matched, sizeof matched, param_name(n));
    sel[i] = match && fl;
    n_sel += sel[i];
  }
  if (re_src) regfree(&re);
  if (n_sel > 0) return LDMC_OK;
  if (!re_src)
    return ldmc_error(LDMC_ERR_INVALID, "autodiff: graph '%s' has no float parameter to differentiate%s%s%s", g->name,
                      others[0] ? " (parameters: " : "", others, others[0] ? ")" : "");
  return ldmc_error(LDMC_ERR_INVALID,
                    "autodiff: wrt_regex '%s' matches no float parameter of graph '%s' (float parameters: %s%s%s)",
                    re_src, g->name, floats[0] ? floats : "none", matched[0] ? "; it matches only non-float ones: " : "",
                    matched);
}

/* A constant v of dtype dt and shape s. */
static ldmc_value filled(ldmc_builder *b, ldmc_dtype dt, const ldmc_shape *s, double v) {
  ldmc_value c = ldmc_constant_scalar(b, dt, v);
  if (s->rank == 0) return c;
  return ldmc_broadcast_in_dim(b, c, s->rank, s->dims, NULL);
}

typedef struct grad_state {
  const ldmc_graph *g;
  ldmc_builder *b;
  bool *sel, *fwd, *active, *need;
  ldmc_value *ct, *dx;
} grad_state;

static void state_free(grad_state *s) {
  free(s->sel);
  free(s->fwd);
  free(s->active);
  free(s->need);
  free(s->ct);
  free(s->dx);
  ldmc_builder_free(s->b);
}

/* fwd: float nodes depending on a selected parameter; active: those of them
 * the output depends on (a path parameter -> output through float values). */
static void mark_paths(grad_state *s, int32_t y) {
  const ldmc_graph *g = s->g;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) {
      s->fwd[i] = s->sel[i];
    } else if (ldmc_dtype_is_float(n->dtype)) {
      for (int k = 0; k < n->n_operands && !s->fwd[i]; k++) s->fwd[i] = s->fwd[n->operands[k]];
    }
  }
  s->active[y] = s->fwd[y];
  for (int32_t i = y; i >= 0; i--) {
    if (!s->active[i]) continue;
    const ldmc_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_operands; k++)
      if (s->fwd[n->operands[k]]) s->active[n->operands[k]] = true;
  }
}

/* Calls node i's rule and adds its operands' cotangents into s->ct. */
static ldmc_status backprop_node(grad_state *s, int32_t i) {
  const ldmc_node *n = &s->g->nodes[i];
  ldmc_builder *b = s->b;
  ldmc_vjp_rule rule = ldmc_vjp_rule_for(n->op);
  if (!rule) return ldmc_error(LDMC_ERR_UNSUPPORTED, "autodiff: no VJP rule for op '%s' (node %%%d)", ldmc_op_name(n->op), (int)i);
  bool any = false;
  for (int k = 0; k < n->n_operands; k++) {
    s->need[k] = s->fwd[n->operands[k]];
    s->dx[k] = -1;
    any |= s->need[k];
  }
  if (!any) return LDMC_OK;
  if (n->scope && n->scope[0])
    ldmc_builder_push_scope(b, "grad.%s", n->scope);
  else
    ldmc_builder_push_scope(b, "grad");
  ldmc_vjp_args a = {.b = b, .n = n, .y = i, .x = n->operands, .ct = s->ct[i], .need = s->need};
  bool ok = rule(&a, s->dx) && ldmc_builder_status(b) == LDMC_OK;
  ldmc_status st = LDMC_OK;
  if (!ok)
    st = ldmc_error(bstatus(b), "autodiff: VJP rule of op '%s' (node %%%d) failed: %s", ldmc_op_name(n->op), (int)i,
                    ldmc_builder_error(b)[0] ? ldmc_builder_error(b) : "no message");
  for (int k = 0; k < n->n_operands && st == LDMC_OK; k++) {
    if (!s->need[k]) continue;
    int32_t j = n->operands[k];
    const ldmc_node *xj = &s->g->nodes[j];
    ldmc_value d = s->dx[k];
    if (d < 0) {
      st = ldmc_error(LDMC_ERR_INTERNAL, "autodiff: VJP rule of op '%s' (node %%%d) gave no cotangent for operand %d",
                      ldmc_op_name(n->op), (int)i, k);
      break;
    }
    if (ldmc_value_dtype(b, d) != xj->dtype || !ldmc_shape_equal(ldmc_value_shape(b, d), &xj->shape)) {
      char t1[80], t2[80];
      st = ldmc_error(LDMC_ERR_INTERNAL,
                      "autodiff: VJP rule of op '%s' (node %%%d) gave operand %d a cotangent of type %s%s, expected %s%s",
                      ldmc_op_name(n->op), (int)i, k, ldmc_dtype_name(ldmc_value_dtype(b, d)),
                      ldmc_shape_str(ldmc_value_shape(b, d), t1, sizeof t1), ldmc_dtype_name(xj->dtype),
                      ldmc_shape_str(&xj->shape, t2, sizeof t2));
      break;
    }
    s->ct[j] = s->ct[j] < 0 ? d : ldmc_add(b, s->ct[j], d);
    if (s->ct[j] < 0)
      st = ldmc_error(bstatus(b), "autodiff: summing cotangents of node %%%d: %s", (int)j, ldmc_builder_error(b));
  }
  ldmc_builder_pop_scope(b);
  return st;
}

/* The forward graph's nodes and outputs, same ids, names and scopes. */
static ldmc_status copy_forward(grad_state *s) {
  ldmc_graph *dst = ldmc_builder_graph(s->b);
  const ldmc_graph *g = s->g;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (ldmc_graph_add(dst, n->op, n->dtype, &n->shape, n->n_operands, n->operands, &n->attrs, n->scope) != i)
      return ldmc_error(LDMC_ERR_NOMEM, "autodiff: copying node %%%d: %s", (int)i, ldmc_last_error());
  }
  for (int32_t i = 0; i < g->n_outputs; i++)
    LDMC_TRY(ldmc_graph_add_output(dst, g->outputs[i], g->output_names[i]));
  return LDMC_OK;
}

static ldmc_status add_grad_outputs(grad_state *s) {
  const ldmc_graph *g = s->g;
  ldmc_builder *b = s->b;
  ldmc_builder_push_scope(b, "grad");
  ldmc_status st = LDMC_OK;
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER || !s->sel[i]) continue;
    ldmc_value v = s->ct[i] >= 0 ? s->ct[i] : filled(b, p->dtype, &p->shape, 0.0);
    size_t len = strlen(param_name(p)) + 6;
    char *name = malloc(len);
    if (!name) {
      st = ldmc_error(LDMC_ERR_NOMEM, "autodiff: out of memory");
      break;
    }
    snprintf(name, len, "grad.%s", param_name(p));
    if (v < 0 || ldmc_builder_output(b, v, name) != LDMC_OK)
      st = ldmc_error(bstatus(b), "autodiff: adding output '%s': %s", name, ldmc_builder_error(b));
    free(name);
  }
  ldmc_builder_pop_scope(b);
  return st;
}

ldmc_status ldmc_grad(const ldmc_graph *g, const ldmc_grad_opts *o, ldmc_graph **out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "autodiff: out is NULL");
  *out = NULL;
  if (!g || !o) return ldmc_error(LDMC_ERR_INVALID, "autodiff: %s is NULL", g ? "opts" : "the graph");
  if (ldmc_graph_verify(g) != LDMC_OK) {
    ldmc_error_prefix("autodiff: graph '%s' does not verify: ", g->name);
    return LDMC_ERR_INVALID;
  }
  if (o->seed != LDMC_GRAD_SCALAR && o->seed != LDMC_GRAD_SUM && o->seed != LDMC_GRAD_COTANGENT)
    return ldmc_error(LDMC_ERR_INVALID, "autodiff: unknown seed %d", (int)o->seed);
  int32_t oi = find_output(g, o->output);
  if (oi < 0) {
    if (!o->output) return ldmc_error(LDMC_ERR_INVALID, "autodiff: graph '%s' has no outputs", g->name);
    char names[512] = "";
    for (int32_t i = 0; i < g->n_outputs; i++) list_add(names, sizeof names, g->output_names[i]);
    return ldmc_error(LDMC_ERR_INVALID, "autodiff: graph '%s' has no output '%s' (outputs: %s)", g->name, o->output,
                      names);
  }
  const char *oname = g->output_names[oi];
  int32_t y = g->outputs[oi];
  const ldmc_node *yn = &g->nodes[y];
  char ts[80];
  if (!ldmc_dtype_is_float(yn->dtype))
    return ldmc_error(LDMC_ERR_INVALID, "autodiff: output '%s' is %s%s; only float outputs can be differentiated", oname,
                      ldmc_dtype_name(yn->dtype), ldmc_shape_str(&yn->shape, ts, sizeof ts));
  if (o->seed == LDMC_GRAD_SCALAR && yn->shape.rank != 0)
    return ldmc_error(LDMC_ERR_INVALID,
                      "autodiff: seed SCALAR needs a rank-0 output, but '%s' is %s%s (use LDMC_GRAD_SUM or "
                      "LDMC_GRAD_COTANGENT)", oname, ldmc_dtype_name(yn->dtype), ldmc_shape_str(&yn->shape, ts, sizeof ts));

  grad_state s = {.g = g};
  size_t nn = (size_t)(g->n_nodes ? g->n_nodes : 1);
  int max_ops = 1;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].n_operands > max_ops) max_ops = g->nodes[i].n_operands;
  s.sel = calloc(nn, sizeof *s.sel);
  s.fwd = calloc(nn, sizeof *s.fwd);
  s.active = calloc(nn, sizeof *s.active);
  s.ct = malloc(nn * sizeof *s.ct);
  s.need = calloc((size_t)max_ops, sizeof *s.need);
  s.dx = calloc((size_t)max_ops, sizeof *s.dx);
  s.b = ldmc_builder_new(g->name);
  ldmc_status st = LDMC_OK;
  if (!s.sel || !s.fwd || !s.active || !s.ct || !s.need || !s.dx || !s.b) {
    state_free(&s);
    return ldmc_error(LDMC_ERR_NOMEM, "autodiff: out of memory");
  }
  for (size_t i = 0; i < nn; i++) s.ct[i] = -1;
  if ((st = select_params(g, o->wrt_regex, s.sel)) != LDMC_OK || (st = copy_forward(&s)) != LDMC_OK) {
    state_free(&s);
    return st;
  }
  mark_paths(&s, y);

  ldmc_value seed = -1;
  if (o->seed == LDMC_GRAD_COTANGENT) {
    size_t len = strlen(oname) + 12;
    char *pn = malloc(len);
    if (pn) {
      snprintf(pn, len, "cotangent.%s", oname);
      seed = ldmc_parameter(s.b, pn, yn->dtype, yn->shape.rank, yn->shape.dims);
      free(pn);
    }
  } else if (s.active[y]) {
    ldmc_builder_push_scope(s.b, "grad");
    seed = filled(s.b, yn->dtype, &yn->shape, 1.0);
    ldmc_builder_pop_scope(s.b);
  }
  if ((o->seed == LDMC_GRAD_COTANGENT || s.active[y]) && seed < 0)
    st = ldmc_error(bstatus(s.b), "autodiff: seeding '%s': %s", oname,
                    ldmc_builder_error(s.b)[0] ? ldmc_builder_error(s.b) : "out of memory");
  if (s.active[y]) s.ct[y] = seed;
  for (int32_t i = y; i >= 0 && st == LDMC_OK; i--)
    if (s.active[i] && s.ct[i] >= 0 && g->nodes[i].op != LDMC_OP_PARAMETER) st = backprop_node(&s, i);
  if (st == LDMC_OK) st = add_grad_outputs(&s);
  if (st != LDMC_OK) {
    state_free(&s);
    return st;
  }
  ldmc_builder *b = s.b;
  s.b = NULL;
  state_free(&s);
  *out = ldmc_builder_finish(b, &st);
  if (!*out) ldmc_error_prefix("autodiff: ");
  return st;
}
