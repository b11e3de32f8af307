/* FLOP rules of the op table. `mac` counts 2 x multiply-adds of convolutions
 * and matrix products; `other` everything else. Products saturate at
 * INT64_MAX instead of overflowing; a query a shape rule would reject gives 0. */
#include "ir/op_rules.h"

static int64_t sat_mul(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0) return 0;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

static bool rank_ok(const ldmc_shape *s) { return s->rank >= 0 && s->rank <= LDMC_MAX_RANK; }

static int64_t numel_sat(const ldmc_shape *s) {
  if (!rank_ok(s)) return 0;
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n = sat_mul(n, s->dims[i]);
  return n;
}

static bool has_operands(const ldmc_type_query *q, int n) {
  if (q->n_operands < n || !q->operand_shapes) return false;
  for (int i = 0; i < n; i++)
    if (!rank_ok(&q->operand_shapes[i])) return false;
  return true;
}

void ldmc_flops_none(const ldmc_type_query *q, ldmc_flops *out) {
  (void)q;
  out->mac = out->other = 0;
}

static void per_element(const ldmc_type_query *q, ldmc_flops *out, int64_t k) {
  out->mac = 0;
  out->other = sat_mul(k, numel_sat(&q->shape));
}

void ldmc_flops_per_element1(const ldmc_type_query *q, ldmc_flops *out) { per_element(q, out, 1); }
void ldmc_flops_per_element4(const ldmc_type_query *q, ldmc_flops *out) { per_element(q, out, 4); }
void ldmc_flops_per_element5(const ldmc_type_query *q, ldmc_flops *out) { per_element(q, out, 5); }
void ldmc_flops_per_element8(const ldmc_type_query *q, ldmc_flops *out) { per_element(q, out, 8); }

void ldmc_flops_scatter_add(const ldmc_type_query *q, ldmc_flops *out) {
  out->mac = 0;
  out->other = has_operands(q, 3) ? numel_sat(&q->operand_shapes[2]) : 0;
}

void ldmc_flops_reduce(const ldmc_type_query *q, ldmc_flops *out) {
  out->mac = 0;
  out->other = has_operands(q, 1) ? numel_sat(&q->operand_shapes[0]) : 0;
}

/* 2 x batch x lhs free x rhs free x contract = 2 x numel(lhs) x numel(rhs) / (batch x contract) */
void ldmc_flops_dot_general(const ldmc_type_query *q, ldmc_flops *out) {
  out->mac = out->other = 0;
  if (!has_operands(q, 2) || !q->attrs) return;
  const ldmc_attrs *a = q->attrs;
  const ldmc_shape *l = &q->operand_shapes[0], *r = &q->operand_shapes[1];
  bool lu[LDMC_MAX_RANK] = {0}, ru[LDMC_MAX_RANK] = {0};
  int64_t prod = 2;
  const ldmc_ints *lists[2] = {&a->lhs_batch, &a->lhs_contract};
  for (int k = 0; k < 2; k++) {
    if (lists[k]->n < 0 || lists[k]->n > LDMC_MAX_RANK) return;
    for (int i = 0; i < lists[k]->n; i++) {
      int64_t d = lists[k]->v[i];
      if (d < 0 || d >= l->rank || lu[d]) return;
      lu[d] = true;
      prod = sat_mul(prod, l->dims[d]);
    }
  }
  const ldmc_ints *rl[2] = {&a->rhs_batch, &a->rhs_contract};
  for (int k = 0; k < 2; k++) {
    if (rl[k]->n < 0 || rl[k]->n > LDMC_MAX_RANK) return;
    for (int i = 0; i < rl[k]->n; i++) {
      int64_t d = rl[k]->v[i];
      if (d < 0 || d >= r->rank || ru[d]) return;
      ru[d] = true;
    }
  }
  for (int i = 0; i < l->rank; i++)
    if (!lu[i]) prod = sat_mul(prod, l->dims[i]);
  for (int i = 0; i < r->rank; i++)
    if (!ru[i]) prod = sat_mul(prod, r->dims[i]);
  out->mac = prod;
}

static bool perm_ok(const ldmc_ints *v, int rank) {
  bool seen[LDMC_MAX_RANK] = {0};
  if (v->n != rank) return false;
  for (int i = 0; i < rank; i++) {
    if (v->v[i] < 0 || v->v[i] >= rank || seen[v->v[i]]) return false;
    seen[v->v[i]] = true;
  }
  return true;
}

/* 2 x N x C_out x prod(out spatial) x (C_in / groups) x prod(kernel spatial);
 * N, C_out and out spatial come from the result, the rest from the operands. */
void ldmc_flops_convolution(const ldmc_type_query *q, ldmc_flops *out) {
  out->mac = out->other = 0;
  if (!has_operands(q, 2) || !q->attrs || !rank_ok(&q->shape)) return;
  const ldmc_attrs *a = q->attrs;
  const ldmc_shape *in = &q->operand_shapes[0], *k = &q->operand_shapes[1];
  int rank = in->rank;
  if (rank < 3 || k->rank != rank || q->shape.rank != rank || !perm_ok(&a->input_dims, rank) ||
      !perm_ok(&a->kernel_dims, rank) || !perm_ok(&a->output_dims, rank) || a->groups < 1)
    return;
  /* numel(result) = N x C_out x prod(out spatial); kernel in_feature = C_in / groups */
  int64_t f = sat_mul(2, numel_sat(&q->shape));
  f = sat_mul(f, k->dims[a->kernel_dims.v[1]]);
  for (int i = 2; i < rank; i++) f = sat_mul(f, k->dims[a->kernel_dims.v[i]]);
  out->mac = f;
}

/* L N M of q[..., N, D], k[..., M, D] (saturated), and D, E (E of operand 2 when there is one, else 0);
 * false when the operands are not attention's. */
static bool attention_dims(const ldmc_type_query *q, int nops, int64_t *lnm, int64_t *D, int64_t *E) {
  if (!has_operands(q, nops)) return false;
  const ldmc_shape *sq = &q->operand_shapes[0], *sk = &q->operand_shapes[1];
  int r = sq->rank;
  if (r < 2 || sk->rank != r || (nops > 2 && q->operand_shapes[2].rank != r)) return false;
  *lnm = 1;
  for (int i = 0; i < r - 2; i++) *lnm = sat_mul(*lnm, sq->dims[i]);
  *lnm = sat_mul(*lnm, sat_mul(sq->dims[r - 2], sk->dims[r - 2]));
  *D = sq->dims[r - 1];
  *E = nops > 2 ? q->operand_shapes[2].dims[r - 1] : 0;
  return *D >= 0 && *E >= 0;
}

static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* q[...,N,D] k[...,M,D] v[...,M,E]: mac = 2 L N M (D + E), other = 6 L N M */
void ldmc_flops_attention(const ldmc_type_query *q, ldmc_flops *out) {
  int64_t lnm, D, E;
  out->mac = out->other = 0;
  if (!attention_dims(q, 3, &lnm, &D, &E)) return;
  out->mac = sat_mul(2, sat_mul(lnm, sat_add(D, E)));
  out->other = sat_mul(6, lnm);
}

/* the scores again (mac 2 L N M D) and scale, max, subtract, exp, sum per score */
void ldmc_flops_attention_lse(const ldmc_type_query *q, ldmc_flops *out) {
  int64_t lnm, D, E;
  out->mac = out->other = 0;
  if (!attention_dims(q, 2, &lnm, &D, &E)) return;
  out->mac = sat_mul(2, sat_mul(lnm, D));
  out->other = sat_mul(5, lnm);
}

/* scores, dP = ct v^T and dq = dS k: mac 2 L N M (2 D + E); scale, - lse, exp,
 * - delta, * P and the dS scale per score */
void ldmc_flops_attention_grad_q(const ldmc_type_query *q, ldmc_flops *out) {
  int64_t lnm, D, E;
  out->mac = out->other = 0;
  if (!attention_dims(q, 3, &lnm, &D, &E)) return;
  out->mac = sat_mul(2, sat_mul(lnm, sat_add(sat_mul(2, D), E)));
  out->other = sat_mul(6, lnm);
}

/* scores, dP, dk = dS^T q and dv = P^T ct: mac 4 L N M (D + E); other as grad_q */
void ldmc_flops_attention_grad_kv(const ldmc_type_query *q, ldmc_flops *out) {
  int64_t lnm, D, E;
  out->mac = out->other = 0;
  if (!attention_dims(q, 3, &lnm, &D, &E)) return;
  out->mac = sat_mul(4, sat_mul(lnm, sat_add(D, E)));
  out->other = sat_mul(6, lnm);
}
