/* Attention recognition: dot(softmax(scale * dot(q, k)), v) over the last two
 * dims, with any leading dims as batch, becomes one attention(q, k, v) op.
 * Matches softmax as the composite or in its decomposed form
 * (e / sum(e), e = exp(x - max(x))), the scale as a multiply or divide by a
 * splat on the logits or on q, and k given transposed ([..., D, M]) through a
 * transpose of the last two dims. Intermediates must have no other users. */
#include <math.h>

#include "passes/pass_util.h"

typedef struct amatch {
  const ldmc_graph *g;
  const ldmc_users *u;
} amatch;

static bool sole_use(const amatch *m, int32_t id) {
  return ldmc_users_count(m->u, id) == 1 && !m->u->is_output[id];
}

/* Batch dims 0..r-3 on both sides, one contracting dim each. */
static bool dot_shape(const ldmc_node *n, int r, int64_t lc, int64_t rc) {
  const ldmc_attrs *a = &n->attrs;
  if (n->op != LDMC_OP_DOT_GENERAL || a->lhs_batch.n != r - 2 || a->rhs_batch.n != r - 2) return false;
  for (int i = 0; i < r - 2; i++)
    if (a->lhs_batch.v[i] != i || a->rhs_batch.v[i] != i) return false;
  return a->lhs_contract.n == 1 && a->rhs_contract.n == 1 && a->lhs_contract.v[0] == lc && a->rhs_contract.v[0] == rc;
}

static bool is_reduce_last(const ldmc_node *n, ldmc_reduce_kind k, int r) {
  return n->op == LDMC_OP_REDUCE && n->attrs.reduce == k && n->attrs.dims.n == 1 && n->attrs.dims.v[0] == r - 1;
}

/* A broadcast of a reduction over the last dim back to the full shape. */
static bool rebroadcast_of(const amatch *m, int32_t id, ldmc_reduce_kind k, int r, int32_t *reduced) {
  const ldmc_node *b = &m->g->nodes[id];
  if (b->op != LDMC_OP_BROADCAST_IN_DIM || !sole_use(m, id)) return false;
  int32_t rid = b->operands[0];
  const ldmc_node *rn = &m->g->nodes[rid];
  if (!is_reduce_last(rn, k, r) || !sole_use(m, rid) || b->attrs.dims.n != r - 1) return false;
  for (int i = 0; i < r - 1; i++)
    if (b->attrs.dims.v[i] != i) return false;
  *reduced = rn->operands[0];
  return true;
}

/* softmax over the last dim of *x; p is the probabilities node. */
static bool softmax_of(const amatch *m, int32_t p, int r, int32_t *x) {
  const ldmc_node *n = &m->g->nodes[p];
  if (!sole_use(m, p)) return false;
  if (n->op == LDMC_OP_SOFTMAX) {
    if (n->attrs.axis != r - 1) return false;
    *x = n->operands[0];
    return true;
  }
  if (n->op != LDMC_OP_DIV) return false; /* e / bcast(sum(e)) */
  int32_t e = n->operands[0], se;
  if (!rebroadcast_of(m, n->operands[1], LDMC_REDUCE_SUM, r, &se) || se != e) return false;
  if (ldmc_users_count(m->u, e) != 2 || m->u->is_output[e]) return false;
  const ldmc_node *en = &m->g->nodes[e];
  if (en->op != LDMC_OP_EXP || !sole_use(m, en->operands[0])) return false;
  const ldmc_node *sub = &m->g->nodes[en->operands[0]];
  int32_t xm;
  if (sub->op != LDMC_OP_SUB || !rebroadcast_of(m, sub->operands[1], LDMC_REDUCE_MAX, r, &xm) ||
      xm != sub->operands[0])
    return false;
  if (ldmc_users_count(m->u, xm) != 2 || m->u->is_output[xm]) return false;
  *x = xm;
  return true;
}

/* s = dot(q, k) * c, dot(q, k) / c, dot(q * c, k) or dot(q, k). */
static bool logits_of(const amatch *m, int32_t s, int r, int32_t *q, int32_t *k, double *scale) {
  const ldmc_node *n = &m->g->nodes[s];
  double c;
  *scale = 1.0;
  if ((n->op == LDMC_OP_MUL || n->op == LDMC_OP_DIV) && ldmc_node_splat(m->g, n->operands[1], &c)) {
    if (!sole_use(m, n->operands[0])) return false;
    *scale = n->op == LDMC_OP_MUL ? c : 1.0 / c;
    s = n->operands[0];
    n = &m->g->nodes[s];
  }
  bool kt = false;
  if (dot_shape(n, r, r - 1, r - 2)) kt = true;
  else if (!dot_shape(n, r, r - 1, r - 1)) return false;
  *q = n->operands[0];
  *k = n->operands[1];
  const ldmc_node *qn = &m->g->nodes[*q];
  if (*scale == 1.0 && qn->op == LDMC_OP_MUL && ldmc_node_splat(m->g, qn->operands[1], &c) && sole_use(m, *q)) {
    *scale = c;
    *q = qn->operands[0];
  }
  if (kt) { /* k arrives as [..., D, M]: need its source [..., M, D] */
    const ldmc_node *kn = &m->g->nodes[*k];
    if (kn->op != LDMC_OP_TRANSPOSE || !sole_use(m, *k)) return false;
    for (int i = 0; i < r; i++) {
      int64_t want = i < r - 2 ? i : i == r - 2 ? r - 1 : r - 2;
      if (kn->attrs.dims.v[i] != want) return false;
    }
    *k = kn->operands[0];
  }
  return isfinite(*scale);
}

static bool run_attention(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  ldmc_users u;
  ldmc_status s = ldmc_users_build(g, &u);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  amatch m = {g, &u};
  bool changed = false;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    ldmc_node *n = &g->nodes[i];
    int r = n->shape.rank;
    if (n->op != LDMC_OP_DOT_GENERAL || r < 2 || !ldmc_dtype_is_float(n->dtype) || !dot_shape(n, r, r - 1, r - 2))
      continue;
    int32_t x, q, k, v = n->operands[1];
    double scale;
    if (!softmax_of(&m, n->operands[0], r, &x) || !logits_of(&m, x, r, &q, &k, &scale)) continue;
    ldmc_attrs at = {0};
    at.scale = scale;
    int32_t ops[3] = {q, k, v};
    ldmc_dtype dts[3] = {g->nodes[q].dtype, g->nodes[k].dtype, g->nodes[v].dtype};
    ldmc_shape shs[3] = {g->nodes[q].shape, g->nodes[k].shape, g->nodes[v].shape};
    ldmc_type_query tq = {.op = LDMC_OP_ATTENTION, .attrs = &at, .n_operands = 3, .operand_dtypes = dts,
                          .operand_shapes = shs, .dtype = n->dtype, .shape = n->shape};
    if (ldmc_infer_type(&tq) != LDMC_OK || tq.dtype != n->dtype || !ldmc_shape_equal(&tq.shape, &n->shape)) {
      ldmc_error_clear();
      continue;
    }
    s = ldmc_node_reset(n, LDMC_OP_ATTENTION, 3, ops, &at);
    if (s != LDMC_OK) break;
    changed = true;
  }
  ldmc_users_free(&u);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  return changed;
}

const ldmc_pass ldmc_pass_attention = {"attention", run_attention, 0};
