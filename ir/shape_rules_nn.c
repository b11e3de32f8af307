/* Shape rules of reductions, contractions and the composite ops. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ir/op_rules.h"
#include "ir/shape_rules_util.h"

ldmc_status ldmc_shape_reduce(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, LDMC_DT_NUMERIC, "operand"));
  if ((unsigned)q->attrs->reduce >= LDMC_REDUCE_COUNT)
    return ldmc_rule_error(q, "reduce kind %d is invalid", (int)q->attrs->reduce);
  const ldmc_shape *in = &q->operand_shapes[0];
  const ldmc_ints *d = &q->attrs->dims;
  if (d->n < 0 || d->n > in->rank) return ldmc_rule_error(q, "dims has %d entries, operand rank is %d", d->n, in->rank);
  bool drop[LDMC_MAX_RANK] = {0};
  for (int i = 0; i < d->n; i++) {
    LDMC_TRY(ldmc_rule_axis(q, d->v[i], in->rank, "reduced dim"));
    if (i > 0 && d->v[i] <= d->v[i - 1])
      return ldmc_rule_error(q, "dims must be sorted and unique (dims[%d] = %" PRId64 " after %" PRId64 ")", i,
                             d->v[i], d->v[i - 1]);
    drop[d->v[i]] = true;
  }
  ldmc_shape out = {0};
  for (int i = 0; i < in->rank; i++)
    if (!drop[i]) out.dims[out.rank++] = in->dims[i];
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

/* Marks the dims of one side of a dot_general; fails on a repeat or out of range. */
static ldmc_status dot_mark(const ldmc_type_query *q, const ldmc_ints *v, const char *what, int rank, bool *used) {
  if (v->n < 0 || v->n > rank) return ldmc_rule_error(q, "%s has %d entries, operand rank is %d", what, v->n, rank);
  for (int i = 0; i < v->n; i++) {
    LDMC_TRY(ldmc_rule_axis(q, v->v[i], rank, what));
    if (used[v->v[i]]) return ldmc_rule_error(q, "dim %" PRId64 " is listed twice (in %s)", v->v[i], what);
    used[v->v[i]] = true;
  }
  return LDMC_OK;
}

ldmc_status ldmc_shape_dot_general(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 2));
  const ldmc_attrs *a = q->attrs;
  const ldmc_shape *l = &q->operand_shapes[0], *r = &q->operand_shapes[1];
  char tl[LDMC_TYPE_STR_LEN], tr[LDMC_TYPE_STR_LEN];
  if (q->operand_dtypes[0] != q->operand_dtypes[1])
    return ldmc_rule_error(q, "operand dtypes %s and %s differ", ldmc_type_str(q->operand_dtypes[0], l, tl, sizeof tl),
                           ldmc_type_str(q->operand_dtypes[1], r, tr, sizeof tr));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, LDMC_DT_NUMERIC, "operand"));
  if (a->lhs_batch.n != a->rhs_batch.n)
    return ldmc_rule_error(q, "lhs_batch has %d entries, rhs_batch %d", a->lhs_batch.n, a->rhs_batch.n);
  if (a->lhs_contract.n != a->rhs_contract.n)
    return ldmc_rule_error(q, "lhs_contract has %d entries, rhs_contract %d", a->lhs_contract.n, a->rhs_contract.n);
  bool lu[LDMC_MAX_RANK] = {0}, ru[LDMC_MAX_RANK] = {0};
  LDMC_TRY(dot_mark(q, &a->lhs_batch, "lhs_batch", l->rank, lu));
  LDMC_TRY(dot_mark(q, &a->lhs_contract, "lhs_contract", l->rank, lu));
  LDMC_TRY(dot_mark(q, &a->rhs_batch, "rhs_batch", r->rank, ru));
  LDMC_TRY(dot_mark(q, &a->rhs_contract, "rhs_contract", r->rank, ru));
  for (int i = 0; i < a->lhs_batch.n; i++) {
    int64_t x = l->dims[a->lhs_batch.v[i]], y = r->dims[a->rhs_batch.v[i]];
    if (x != y)
      return ldmc_rule_error(q, "batch dims differ: lhs dim %" PRId64 " (%" PRId64 ") vs rhs dim %" PRId64 " (%" PRId64
                             ") in %s x %s", a->lhs_batch.v[i], x, a->rhs_batch.v[i], y,
                             ldmc_type_str(q->operand_dtypes[0], l, tl, sizeof tl),
                             ldmc_type_str(q->operand_dtypes[1], r, tr, sizeof tr));
  }
  for (int i = 0; i < a->lhs_contract.n; i++) {
    int64_t x = l->dims[a->lhs_contract.v[i]], y = r->dims[a->rhs_contract.v[i]];
    if (x != y)
      return ldmc_rule_error(q, "contracting dims differ: lhs dim %" PRId64 " (%" PRId64 ") vs rhs dim %" PRId64
                             " (%" PRId64 ") in %s x %s", a->lhs_contract.v[i], x, a->rhs_contract.v[i], y,
                             ldmc_type_str(q->operand_dtypes[0], l, tl, sizeof tl),
                             ldmc_type_str(q->operand_dtypes[1], r, tr, sizeof tr));
  }
  int rank = a->lhs_batch.n + (l->rank - a->lhs_batch.n - a->lhs_contract.n) + (r->rank - a->rhs_batch.n - a->rhs_contract.n);
  if (rank > LDMC_MAX_RANK) return ldmc_rule_error(q, "result rank %d exceeds %d", rank, LDMC_MAX_RANK);
  ldmc_shape out = {0};
  for (int i = 0; i < a->lhs_batch.n; i++) out.dims[out.rank++] = l->dims[a->lhs_batch.v[i]];
  for (int i = 0; i < l->rank; i++)
    if (!lu[i]) out.dims[out.rank++] = l->dims[i];
  for (int i = 0; i < r->rank; i++)
    if (!ru[i]) out.dims[out.rank++] = r->dims[i];
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

/* A dimension-number attribute must be a permutation of 0..rank-1. */
static ldmc_status conv_perm(const ldmc_type_query *q, const ldmc_ints *v, int rank, const char *what) {
  LDMC_TRY(ldmc_rule_len(q, v, rank, what));
  bool seen[LDMC_MAX_RANK] = {0};
  for (int i = 0; i < rank; i++) {
    if (v->v[i] < 0 || v->v[i] >= rank || seen[v->v[i]])
      return ldmc_rule_error(q, "%s is not a permutation of 0..%d (%s[%d] = %" PRId64 ")", what, rank - 1, what, i,
                             v->v[i]);
    seen[v->v[i]] = true;
  }
  return LDMC_OK;
}

ldmc_status ldmc_shape_convolution(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 2));
  const ldmc_attrs *a = q->attrs;
  const ldmc_shape *in = &q->operand_shapes[0], *k = &q->operand_shapes[1];
  char ti[LDMC_TYPE_STR_LEN], tk[LDMC_TYPE_STR_LEN];
  if (q->operand_dtypes[0] != q->operand_dtypes[1])
    return ldmc_rule_error(q, "operand dtypes %s and %s differ", ldmc_type_str(q->operand_dtypes[0], in, ti, sizeof ti),
                           ldmc_type_str(q->operand_dtypes[1], k, tk, sizeof tk));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, LDMC_DT_FLOAT, "input"));
  if (in->rank < 3 || k->rank != in->rank)
    return ldmc_rule_error(q, "input %s and kernel %s need the same rank >= 3",
                           ldmc_type_str(q->operand_dtypes[0], in, ti, sizeof ti),
                           ldmc_type_str(q->operand_dtypes[1], k, tk, sizeof tk));
  int rank = in->rank, ns = rank - 2;
  LDMC_TRY(conv_perm(q, &a->input_dims, rank, "input_dims"));
  LDMC_TRY(conv_perm(q, &a->kernel_dims, rank, "kernel_dims"));
  LDMC_TRY(conv_perm(q, &a->output_dims, rank, "output_dims"));
  LDMC_TRY(ldmc_rule_len(q, &a->window_stride, ns, "window_stride"));
  LDMC_TRY(ldmc_rule_len(q, &a->pad_low, ns, "pad_low"));
  LDMC_TRY(ldmc_rule_len(q, &a->pad_high, ns, "pad_high"));
  LDMC_TRY(ldmc_rule_len(q, &a->lhs_dilation, ns, "lhs_dilation"));
  LDMC_TRY(ldmc_rule_len(q, &a->rhs_dilation, ns, "rhs_dilation"));
  int64_t n = in->dims[a->input_dims.v[0]], cin = in->dims[a->input_dims.v[1]];
  int64_t cout = k->dims[a->kernel_dims.v[0]], kin = k->dims[a->kernel_dims.v[1]], g = a->groups;
  if (g < 1) return ldmc_rule_error(q, "groups %" PRId64 " must be >= 1", g);
  if (cin % g != 0) return ldmc_rule_error(q, "input features %" PRId64 " not divisible by groups %" PRId64, cin, g);
  if (cout % g != 0) return ldmc_rule_error(q, "output features %" PRId64 " not divisible by groups %" PRId64, cout, g);
  if (kin != cin / g)
    return ldmc_rule_error(q, "kernel in_feature %" PRId64 " must equal input features / groups = %" PRId64 " / %" PRId64,
                           kin, cin, g);
  ldmc_shape out = {.rank = rank};
  out.dims[a->output_dims.v[0]] = n;
  out.dims[a->output_dims.v[1]] = cout;
  for (int i = 0; i < ns; i++) {
    int64_t x = in->dims[a->input_dims.v[2 + i]], kw = k->dims[a->kernel_dims.v[2 + i]];
    int64_t st = a->window_stride.v[i], ld = a->lhs_dilation.v[i], rd = a->rhs_dilation.v[i];
    if (st < 1 || ld < 1 || rd < 1)
      return ldmc_rule_error(q, "spatial dim %d: stride (%" PRId64 ") and dilations (%" PRId64 ", %" PRId64
                             ") must be >= 1", i, st, ld, rd);
    int64_t din = 0, dk = 0, p = 0;
    if (x > 0 && (__builtin_mul_overflow(x - 1, ld, &din) || __builtin_add_overflow(din, 1, &din)))
      return ldmc_rule_error(q, "spatial dim %d: dilated input overflows int64", i);
    if (kw == 0) return ldmc_rule_error(q, "spatial dim %d: kernel size is 0", i);
    if (__builtin_mul_overflow(kw - 1, rd, &dk) || __builtin_add_overflow(dk, 1, &dk) ||
        __builtin_add_overflow(din, a->pad_low.v[i], &p) || __builtin_add_overflow(p, a->pad_high.v[i], &p) ||
        __builtin_sub_overflow(p, dk, &p))
      return ldmc_rule_error(q, "spatial dim %d: window arithmetic overflows int64", i);
    /* floor division (p may be negative) */
    int64_t o = p / st - (p % st != 0 && p < 0) + 1;
    if (o < 0)
      return ldmc_rule_error(q, "spatial dim %d: output size %" PRId64 " is negative (input %" PRId64 ", kernel %" PRId64
                             ", pad %" PRId64 "_%" PRId64 ")", i, o, x, kw, a->pad_low.v[i], a->pad_high.v[i]);
    out.dims[a->output_dims.v[2 + i]] = o;
  }
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

ldmc_status ldmc_shape_softmax(ldmc_type_query *q) {
  LDMC_TRY(ldmc_shape_unary(q));
  return ldmc_rule_axis(q, q->attrs->axis, q->operand_shapes[0].rank, "axis");
}

static ldmc_status check_eps(const ldmc_type_query *q) {
  if (!(q->attrs->eps >= 0) || isinf(q->attrs->eps)) return ldmc_rule_error(q, "eps %g must be finite and >= 0", q->attrs->eps);
  return LDMC_OK;
}

/* gamma and beta (operands 1, 2) must have x's dtype and shape want. */
static ldmc_status check_affine(const ldmc_type_query *q, const ldmc_shape *want) {
  char tg[LDMC_TYPE_STR_LEN], tw[LDMC_TYPE_STR_LEN];
  for (int i = 1; i <= 2; i++)
    if (q->operand_dtypes[i] != q->operand_dtypes[0] || !ldmc_shape_equal(&q->operand_shapes[i], want))
      return ldmc_rule_error(q, "%s %s must be %s", i == 1 ? "gamma" : "beta",
                             ldmc_type_str(q->operand_dtypes[i], &q->operand_shapes[i], tg, sizeof tg),
                             ldmc_type_str(q->operand_dtypes[0], want, tw, sizeof tw));
  return LDMC_OK;
}

ldmc_status ldmc_shape_group_norm(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 3));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, LDMC_DT_FLOAT, "operand"));
  const ldmc_shape *x = &q->operand_shapes[0];
  char t[LDMC_TYPE_STR_LEN];
  if (x->rank < 2)
    return ldmc_rule_error(q, "operand %s needs rank >= 2 ([N,C,...])", ldmc_type_str(q->operand_dtypes[0], x, t, sizeof t));
  int64_t c = x->dims[1], g = q->attrs->groups;
  if (g < 1) return ldmc_rule_error(q, "groups %" PRId64 " must be >= 1", g);
  if (c % g != 0) return ldmc_rule_error(q, "channels %" PRId64 " not divisible by groups %" PRId64, c, g);
  LDMC_TRY(check_eps(q));
  ldmc_shape want = {.rank = 1, .dims = {c}};
  LDMC_TRY(check_affine(q, &want));
  q->dtype = q->operand_dtypes[0];
  q->shape = *x;
  return LDMC_OK;
}

ldmc_status ldmc_shape_layer_norm(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 3));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, LDMC_DT_FLOAT, "operand"));
  const ldmc_shape *x = &q->operand_shapes[0];
  LDMC_TRY(ldmc_rule_axis(q, q->attrs->axis, x->rank, "axis"));
  LDMC_TRY(check_eps(q));
  ldmc_shape want = {.rank = x->rank - (int)q->attrs->axis};
  for (int i = 0; i < want.rank; i++) want.dims[i] = x->dims[q->attrs->axis + i];
  LDMC_TRY(check_affine(q, &want));
  q->dtype = q->operand_dtypes[0];
  q->shape = *x;
  return LDMC_OK;
}

/* q[..., N, D], k[..., M, D] and (with_v) v[..., M, E]: one float dtype, one
 * rank >= 2, equal leading dims; a finite scale. */
static ldmc_status check_qkv(ldmc_type_query *q, bool with_v) {
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, LDMC_DT_FLOAT, "q"));
  const ldmc_shape *sq = &q->operand_shapes[0], *sk = &q->operand_shapes[1], *sv = &q->operand_shapes[with_v ? 2 : 1];
  char a[LDMC_TYPE_STR_LEN], b[LDMC_TYPE_STR_LEN], c[LDMC_TYPE_STR_LEN];
  ldmc_type_str(q->operand_dtypes[0], sq, a, sizeof a);
  ldmc_type_str(q->operand_dtypes[1], sk, b, sizeof b);
  if (with_v) ldmc_type_str(q->operand_dtypes[2], sv, c, sizeof c);
  if (q->operand_dtypes[1] != q->operand_dtypes[0] || (with_v && q->operand_dtypes[2] != q->operand_dtypes[0]))
    return with_v ? ldmc_rule_error(q, "q %s, k %s, v %s must share a dtype", a, b, c)
                  : ldmc_rule_error(q, "q %s and k %s must share a dtype", a, b);
  int r = sq->rank;
  if (r < 2 || sk->rank != r || sv->rank != r)
    return with_v ? ldmc_rule_error(q, "q %s, k %s, v %s need the same rank >= 2", a, b, c)
                  : ldmc_rule_error(q, "q %s and k %s need the same rank >= 2", a, b);
  for (int i = 0; i < r - 2; i++)
    if (sk->dims[i] != sq->dims[i] || sv->dims[i] != sq->dims[i])
      return with_v ? ldmc_rule_error(q, "leading dims of q %s, k %s, v %s differ", a, b, c)
                    : ldmc_rule_error(q, "leading dims of q %s and k %s differ", a, b);
  if (sk->dims[r - 1] != sq->dims[r - 1])
    return ldmc_rule_error(q, "q %s and k %s differ in the last (head) dim", a, b);
  if (with_v && sv->dims[r - 2] != sk->dims[r - 2])
    return ldmc_rule_error(q, "k %s and v %s differ in the key count (dim %d)", b, c, r - 2);
  if (!isfinite(q->attrs->scale)) return ldmc_rule_error(q, "scale %g must be finite", q->attrs->scale);
  return LDMC_OK;
}

ldmc_status ldmc_shape_attention(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 3));
  LDMC_TRY(check_qkv(q, true));
  int r = q->operand_shapes[0].rank;
  ldmc_shape out = q->operand_shapes[0];
  out.dims[r - 1] = q->operand_shapes[2].dims[r - 1];
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

/* The backward ops compute in f32 (f64 for f64 operands), as the composites'
 * decompositions do. */
static ldmc_dtype attention_compute_dtype(ldmc_dtype dt) { return dt == LDMC_F64 ? LDMC_F64 : LDMC_F32; }

ldmc_status ldmc_shape_attention_lse(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 2));
  LDMC_TRY(check_qkv(q, false));
  ldmc_shape out = q->operand_shapes[0];
  out.rank--;
  q->dtype = attention_compute_dtype(q->operand_dtypes[0]);
  q->shape = out;
  return LDMC_OK;
}

/* q, k, v as attention's; ct [..., N, E] in q's dtype; lse and delta
 * [..., N] in the compute dtype. grad_q: [..., N, D]; grad_kv [..., M, D + E]. */
ldmc_status ldmc_shape_attention_grad(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 6));
  LDMC_TRY(check_qkv(q, true));
  const ldmc_shape *sq = &q->operand_shapes[0], *sk = &q->operand_shapes[1], *sv = &q->operand_shapes[2];
  int r = sq->rank;
  ldmc_dtype cd = attention_compute_dtype(q->operand_dtypes[0]);
  char t[LDMC_TYPE_STR_LEN], w[LDMC_TYPE_STR_LEN];
  ldmc_shape want = *sq;
  want.dims[r - 1] = sv->dims[r - 1];
  if (q->operand_dtypes[3] != q->operand_dtypes[0] || !ldmc_shape_equal(&q->operand_shapes[3], &want))
    return ldmc_rule_error(q, "ct %s must be %s (the attention's result type)",
                           ldmc_type_str(q->operand_dtypes[3], &q->operand_shapes[3], t, sizeof t),
                           ldmc_type_str(q->operand_dtypes[0], &want, w, sizeof w));
  want.rank = r - 1;
  for (int i = 4; i < 6; i++)
    if (q->operand_dtypes[i] != cd || !ldmc_shape_equal(&q->operand_shapes[i], &want))
      return ldmc_rule_error(q, "%s %s must be %s", i == 4 ? "lse" : "delta",
                             ldmc_type_str(q->operand_dtypes[i], &q->operand_shapes[i], t, sizeof t),
                             ldmc_type_str(cd, &want, w, sizeof w));
  ldmc_shape out = *sq;
  if (q->op == LDMC_OP_ATTENTION_GRAD_KV) {
    out.dims[r - 2] = sk->dims[r - 2];
    if (__builtin_add_overflow(sq->dims[r - 1], sv->dims[r - 1], &out.dims[r - 1]))
      return ldmc_rule_error(q, "D + E overflows int64");
  }
  q->dtype = cd;
  q->shape = out;
  return LDMC_OK;
}

ldmc_status ldmc_shape_upsample_nearest(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  const ldmc_shape *x = &q->operand_shapes[0];
  char t[LDMC_TYPE_STR_LEN];
  if (x->rank < 3)
    return ldmc_rule_error(q, "operand %s needs rank >= 3 ([N,C,spatial...])",
                           ldmc_type_str(q->operand_dtypes[0], x, t, sizeof t));
  int64_t f = q->attrs->factor;
  if (f < 1) return ldmc_rule_error(q, "factor %" PRId64 " must be >= 1", f);
  ldmc_shape out = *x;
  for (int i = 2; i < x->rank; i++)
    if (__builtin_mul_overflow(x->dims[i], f, &out.dims[i]))
      return ldmc_rule_error(q, "spatial dim %d x factor overflows int64", i);
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}
