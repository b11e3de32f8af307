/* Algebraic simplification: identities that hold exactly (x+0, x*1, x/1,
 * x*0 for integers only, --x, max(x,x)), chains of transposes, reshapes and
 * broadcasts collapsed into one, identity transpose/reshape/convert/slice/pad/
 * broadcast removed, views of a broadcast scalar turned back into one
 * broadcast of it. Nodes are rewritten in place or forwarded to an earlier
 * node; forwarded nodes are removed. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

typedef struct simp {
  ldmc_graph *g;
  int32_t *repl;
  ldmc_status status;
} simp;

static bool same_type(const ldmc_node *a, const ldmc_node *b) {
  return a->dtype == b->dtype && ldmc_shape_equal(&a->shape, &b->shape);
}

/* Node i becomes x (an earlier node of the same type). */
static bool forward_to(simp *s, int32_t i, int32_t x) {
  if (!same_type(&s->g->nodes[i], &s->g->nodes[x])) return false;
  s->repl[i] = x;
  return true;
}

static bool splat_is(const ldmc_graph *g, int32_t id, double v) {
  double w;
  return ldmc_node_splat(g, id, &w) && w == v;
}

static bool reset(simp *s, int32_t i, ldmc_op op, int n, const int32_t *ops, const ldmc_attrs *a) {
  ldmc_status st = ldmc_node_reset(&s->g->nodes[i], op, n, ops, a);
  if (st != LDMC_OK) s->status = st;
  return st == LDMC_OK;
}

static bool simplify_binary(simp *s, int32_t i) {
  ldmc_graph *g = s->g;
  ldmc_node *n = &g->nodes[i];
  int32_t a = n->operands[0], b = n->operands[1];
  bool is_int = !ldmc_dtype_is_float(n->dtype);
  switch (n->op) {
    case LDMC_OP_ADD:
      if (splat_is(g, b, 0)) return forward_to(s, i, a);
      if (splat_is(g, a, 0)) return forward_to(s, i, b);
      return false;
    case LDMC_OP_SUB:
      if (splat_is(g, b, 0)) return forward_to(s, i, a);
      if (splat_is(g, a, 0)) return reset(s, i, LDMC_OP_NEG, 1, &b, NULL);
      return false;
    case LDMC_OP_MUL:
      if (splat_is(g, b, 1)) return forward_to(s, i, a);
      if (splat_is(g, a, 1)) return forward_to(s, i, b);
      /* x*0 is 0 only without NaN and infinity: integers */
      if (is_int && splat_is(g, b, 0)) return forward_to(s, i, b);
      if (is_int && splat_is(g, a, 0)) return forward_to(s, i, a);
      if (splat_is(g, b, -1)) return reset(s, i, LDMC_OP_NEG, 1, &a, NULL);
      if (splat_is(g, a, -1)) return reset(s, i, LDMC_OP_NEG, 1, &b, NULL);
      return false;
    case LDMC_OP_DIV:
      if (splat_is(g, b, 1)) return forward_to(s, i, a);
      return false;
    case LDMC_OP_POW:
      if (splat_is(g, b, 1)) return forward_to(s, i, a);
      return false;
    case LDMC_OP_MAX:
    case LDMC_OP_MIN:
      if (a == b) return forward_to(s, i, a);
      return false;
    default:
      return false;
  }
}

static bool simplify_unary(simp *s, int32_t i) {
  ldmc_graph *g = s->g;
  ldmc_node *n = &g->nodes[i];
  int32_t a = n->operands[0];
  const ldmc_node *an = &g->nodes[a];
  switch (n->op) {
    case LDMC_OP_NEG:
      if (an->op == LDMC_OP_NEG) return forward_to(s, i, an->operands[0]);
      return false;
    case LDMC_OP_ABS:
      if (an->op == LDMC_OP_ABS) return forward_to(s, i, a);
      if (an->op == LDMC_OP_NEG) {
        int32_t x = an->operands[0];
        return reset(s, i, LDMC_OP_ABS, 1, &x, NULL);
      }
      return false;
    case LDMC_OP_CONVERT:
      if (an->dtype == n->dtype) return forward_to(s, i, a);
      return false;
    default:
      return false;
  }
}

/* A view (reshape, transpose, broadcast) of a scalar spread over a shape is
 * one broadcast of that scalar. */
static bool view_of_scalar(simp *s, int32_t i) {
  ldmc_graph *g = s->g;
  ldmc_node *n = &g->nodes[i];
  int32_t sc;
  if (!ldmc_node_scalar_broadcast(g, n->operands[0], &sc)) return false;
  if (n->op == LDMC_OP_BROADCAST_IN_DIM && n->operands[0] == sc) return false; /* already the canonical form */
  if (n->dtype != g->nodes[sc].dtype) return false;
  ldmc_attrs at = {0};
  at.dims.n = 0;
  return reset(s, i, LDMC_OP_BROADCAST_IN_DIM, 1, &sc, &at);
}

static bool simplify_view(simp *s, int32_t i) {
  ldmc_graph *g = s->g;
  ldmc_node *n = &g->nodes[i];
  int32_t a = n->operands[0];
  const ldmc_node *an = &g->nodes[a];
  if (same_type(n, an)) {
    bool identity = false;
    switch (n->op) {
      case LDMC_OP_RESHAPE: identity = true; break;
      case LDMC_OP_TRANSPOSE: identity = ldmc_perm_is_identity(&n->attrs.dims); break;
      case LDMC_OP_BROADCAST_IN_DIM: identity = ldmc_perm_is_identity(&n->attrs.dims); break;
      default: break;
    }
    if (identity) return forward_to(s, i, a);
  }
  if (view_of_scalar(s, i)) return true;
  if (n->op == LDMC_OP_TRANSPOSE && an->op == LDMC_OP_TRANSPOSE) {
    ldmc_attrs at = n->attrs;
    at.name = NULL;
    at.value = (ldmc_literal){0};
    for (int k = 0; k < n->attrs.dims.n; k++) at.dims.v[k] = an->attrs.dims.v[n->attrs.dims.v[k]];
    int32_t x = an->operands[0];
    if (ldmc_perm_is_identity(&at.dims)) return forward_to(s, i, x);
    return reset(s, i, LDMC_OP_TRANSPOSE, 1, &x, &at);
  }
  if (n->op == LDMC_OP_RESHAPE && an->op == LDMC_OP_RESHAPE) {
    int32_t x = an->operands[0];
    if (same_type(n, &g->nodes[x])) return forward_to(s, i, x);
    n->operands[0] = x;
    return true;
  }
  if (n->op == LDMC_OP_BROADCAST_IN_DIM && an->op == LDMC_OP_BROADCAST_IN_DIM) {
    ldmc_attrs at = {0};
    at.dims.n = an->attrs.dims.n;
    for (int k = 0; k < an->attrs.dims.n; k++) at.dims.v[k] = n->attrs.dims.v[an->attrs.dims.v[k]];
    int32_t x = an->operands[0];
    return reset(s, i, LDMC_OP_BROADCAST_IN_DIM, 1, &x, &at);
  }
  return false;
}

static bool simplify_other(simp *s, int32_t i) {
  ldmc_graph *g = s->g;
  ldmc_node *n = &g->nodes[i];
  switch (n->op) {
    case LDMC_OP_SLICE: {
      const ldmc_node *an = &g->nodes[n->operands[0]];
      if (!same_type(n, an)) return false;
      for (int k = 0; k < n->shape.rank; k++)
        if (n->attrs.start.v[k] != 0 || n->attrs.stride.v[k] != 1) return false;
      return forward_to(s, i, n->operands[0]);
    }
    case LDMC_OP_PAD: {
      for (int k = 0; k < n->attrs.low.n; k++)
        if (n->attrs.low.v[k] || n->attrs.high.v[k] || (k < n->attrs.interior.n && n->attrs.interior.v[k]))
          return false;
      return forward_to(s, i, n->operands[0]);
    }
    case LDMC_OP_CONCATENATE:
      if (n->n_operands == 1) return forward_to(s, i, n->operands[0]);
      return false;
    case LDMC_OP_REDUCE:
      if (n->attrs.dims.n == 0) return forward_to(s, i, n->operands[0]);
      return false;
    case LDMC_OP_SELECT: {
      double p;
      if (n->operands[1] == n->operands[2]) return forward_to(s, i, n->operands[1]);
      if (ldmc_node_splat(g, n->operands[0], &p)) return forward_to(s, i, n->operands[p != 0 ? 1 : 2]);
      return false;
    }
    default:
      return false;
  }
}

static bool simplify_node(simp *s, int32_t i) {
  ldmc_node *n = &s->g->nodes[i];
  if (n->n_operands == 0) return false;
  switch (n->op) {
    case LDMC_OP_ADD: case LDMC_OP_SUB: case LDMC_OP_MUL: case LDMC_OP_DIV:
    case LDMC_OP_MAX: case LDMC_OP_MIN: case LDMC_OP_POW:
      return simplify_binary(s, i);
    case LDMC_OP_NEG: case LDMC_OP_ABS: case LDMC_OP_CONVERT:
      return simplify_unary(s, i);
    case LDMC_OP_RESHAPE: case LDMC_OP_TRANSPOSE: case LDMC_OP_BROADCAST_IN_DIM:
      return simplify_view(s, i);
    default:
      return simplify_other(s, i);
  }
}

static bool run_simplify(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  simp s = {.g = g, .status = LDMC_OK};
  s.repl = malloc(((size_t)g->n_nodes + 1) * sizeof *s.repl);
  if (!s.repl) return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_NOMEM, "simplify: out of memory"));
  bool changed = false, forwarded = false;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    s.repl[i] = i;
    ldmc_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_operands; k++) n->operands[k] = s.repl[n->operands[k]];
    /* a rewritten node may simplify again (transpose of transpose of transpose) */
    for (int round = 0; round < 8 && s.repl[i] == i && s.status == LDMC_OK; round++) {
      if (!simplify_node(&s, i)) break;
      changed = true;
    }
    if (s.repl[i] != i) forwarded = true;
    if (s.status != LDMC_OK) break;
  }
  if (s.status == LDMC_OK) {
    for (int32_t i = 0; i < g->n_outputs; i++) g->outputs[i] = s.repl[g->outputs[i]];
    if (forwarded) {
      bool *keep = malloc(((size_t)g->n_nodes + 1) * sizeof *keep);
      if (!keep) {
        s.status = ldmc_error(LDMC_ERR_NOMEM, "simplify: out of memory");
      } else {
        for (int32_t i = 0; i < g->n_nodes; i++) keep[i] = s.repl[i] == i;
        s.status = ldmc_graph_compact(g, keep, NULL);
        free(keep);
      }
    }
  }
  free(s.repl);
  if (s.status != LDMC_OK) return ldmc_pass_fail(ctx, s.status);
  return changed;
}

const ldmc_pass ldmc_pass_simplify = {"simplify", run_simplify, 0};
