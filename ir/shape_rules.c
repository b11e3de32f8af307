/* Shape rules of the source, elementwise and data-movement ops (see ops.def
 * and docs/ir.md). A rule checks its operands and attributes and writes the
 * result type into q->dtype / q->shape. No implicit broadcasting anywhere:
 * builders insert broadcast_in_dim. */
#include <inttypes.h>
#include <string.h>

#include "ir/op_rules.h"
#include "ir/shape_rules_util.h"

/* ---- helpers ------------------------------------------------------------------ */
char *ldmc_type_str(ldmc_dtype dt, const ldmc_shape *s, char *buf, size_t len) {
  char sh[LDMC_TYPE_STR_LEN];
  if (s->rank < 0 || s->rank > LDMC_MAX_RANK)
    snprintf(buf, len, "%s[<rank %d>]", ldmc_dtype_name(dt), s->rank);
  else
    snprintf(buf, len, "%s%s", ldmc_dtype_name(dt), ldmc_shape_str(s, sh, sizeof sh));
  return buf;
}

ldmc_status ldmc_rule_error(const ldmc_type_query *q, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ldmc_error(LDMC_ERR_INVALID, "%s: %s", ldmc_op_name(q->op), msg);
}

ldmc_status ldmc_rule_need(const ldmc_type_query *q, int n) {
  if (q->n_operands < n || (n > 0 && (!q->operand_dtypes || !q->operand_shapes)))
    return ldmc_rule_error(q, "expects %d operand(s), got %d", n, q->n_operands);
  for (int i = 0; i < n; i++) {
    const ldmc_shape *s = &q->operand_shapes[i];
    if ((unsigned)q->operand_dtypes[i] >= LDMC_DTYPE_COUNT)
      return ldmc_rule_error(q, "operand %d has invalid dtype %d", i, (int)q->operand_dtypes[i]);
    if (s->rank < 0 || s->rank > LDMC_MAX_RANK)
      return ldmc_rule_error(q, "operand %d has rank %d, outside 0..%d", i, s->rank, LDMC_MAX_RANK);
    for (int d = 0; d < s->rank; d++)
      if (s->dims[d] < 0) return ldmc_rule_error(q, "operand %d has negative dim %d (%" PRId64 ")", i, d, s->dims[d]);
    /* no value of the graph can have it, however small the result (a reduction, a pred) */
    int64_t numel;
    char buf[LDMC_TYPE_STR_LEN];
    if (ldmc_shape_numel(s, ldmc_dtype_size(q->operand_dtypes[i]), &numel) != LDMC_OK)
      return ldmc_rule_error(q, "operand %d type %s is too large", i,
                             ldmc_type_str(q->operand_dtypes[i], s, buf, sizeof buf));
  }
  return LDMC_OK;
}

ldmc_status ldmc_rule_declared_ok(const ldmc_type_query *q) {
  if ((unsigned)q->dtype >= LDMC_DTYPE_COUNT) return ldmc_rule_error(q, "declared dtype %d is invalid", (int)q->dtype);
  if (q->shape.rank < 0 || q->shape.rank > LDMC_MAX_RANK)
    return ldmc_rule_error(q, "declared rank %d is outside 0..%d", q->shape.rank, LDMC_MAX_RANK);
  for (int d = 0; d < q->shape.rank; d++)
    if (q->shape.dims[d] < 0)
      return ldmc_rule_error(q, "declared shape has negative dim %d (%" PRId64 ")", d, q->shape.dims[d]);
  int64_t n;
  char buf[LDMC_TYPE_STR_LEN];
  if (ldmc_shape_numel(&q->shape, ldmc_dtype_size(q->dtype), &n) != LDMC_OK)
    return ldmc_rule_error(q, "declared type %s is too large", ldmc_type_str(q->dtype, &q->shape, buf, sizeof buf));
  return LDMC_OK;
}

ldmc_status ldmc_rule_axis(const ldmc_type_query *q, int64_t axis, int rank, const char *what) {
  if (axis < 0 || axis >= rank)
    return ldmc_rule_error(q, "%s %" PRId64 " is outside 0..%d (rank %d)", what, axis, rank - 1, rank);
  return LDMC_OK;
}

ldmc_status ldmc_rule_len(const ldmc_type_query *q, const ldmc_ints *v, int n, const char *what) {
  if (v->n != n) return ldmc_rule_error(q, "%s has %d entries, expected %d (operand rank)", what, v->n, n);
  return LDMC_OK;
}

static const char *mask_str(uint32_t mask) {
  if (mask == LDMC_DT_FLOAT) return "a float dtype (f32, bf16, f16, f64)";
  if (mask == LDMC_DT_INT) return "an integer dtype (i32, i64)";
  if (mask == LDMC_DT_NUMERIC) return "a numeric dtype (not pred)";
  if (mask == LDMC_DT_PRED) return "pred";
  return "an allowed dtype";
}

ldmc_status ldmc_rule_operand_dtype(const ldmc_type_query *q, int i, uint32_t mask, const char *what) {
  ldmc_dtype dt = q->operand_dtypes[i];
  if (!((mask >> dt) & 1u))
    return ldmc_rule_error(q, "%s has dtype %s, needs %s", what, ldmc_dtype_name(dt), mask_str(mask));
  return LDMC_OK;
}

/* Same dtype and shape for operands a and b. */
static ldmc_status same_type(const ldmc_type_query *q, int a, int b, const char *what) {
  char ta[LDMC_TYPE_STR_LEN], tb[LDMC_TYPE_STR_LEN];
  const ldmc_shape *sa = &q->operand_shapes[a], *sb = &q->operand_shapes[b];
  if (q->operand_dtypes[a] != q->operand_dtypes[b])
    return ldmc_rule_error(q, "%s dtypes %s and %s differ", what, ldmc_type_str(q->operand_dtypes[a], sa, ta, sizeof ta),
                           ldmc_type_str(q->operand_dtypes[b], sb, tb, sizeof tb));
  if (!ldmc_shape_equal(sa, sb))
    return ldmc_rule_error(q, "%s shapes %s and %s differ", what, ldmc_type_str(q->operand_dtypes[a], sa, ta, sizeof ta),
                           ldmc_type_str(q->operand_dtypes[b], sb, tb, sizeof tb));
  return LDMC_OK;
}

static void result_of(ldmc_type_query *q, int i) {
  q->dtype = q->operand_dtypes[i];
  q->shape = q->operand_shapes[i];
}

/* ---- sources ------------------------------------------------------------------ */
ldmc_status ldmc_shape_declared(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_declared_ok(q));
  if (q->op == LDMC_OP_CONSTANT) {
    int64_t n = 0;
    LDMC_TRY(ldmc_shape_numel(&q->shape, ldmc_dtype_size(q->dtype), &n));
    uint64_t want = (uint64_t)n * ldmc_dtype_size(q->dtype);
    char t[LDMC_TYPE_STR_LEN];
    if (!q->attrs || q->attrs->value.nbytes != want)
      return ldmc_rule_error(q, "value has %zu bytes, type %s needs %" PRIu64, q->attrs ? q->attrs->value.nbytes : 0,
                             ldmc_type_str(q->dtype, &q->shape, t, sizeof t), want);
    if (want > 0 && !q->attrs->value.data) return ldmc_rule_error(q, "value has no data");
  }
  return LDMC_OK;
}

ldmc_status ldmc_shape_iota(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_declared_ok(q));
  if (!((LDMC_DT_NUMERIC >> q->dtype) & 1u))
    return ldmc_rule_error(q, "declared dtype %s, needs a numeric dtype", ldmc_dtype_name(q->dtype));
  return ldmc_rule_axis(q, q->attrs->axis, q->shape.rank, "axis");
}

ldmc_status ldmc_shape_rng(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  char t[LDMC_TYPE_STR_LEN];
  if (q->operand_dtypes[0] != LDMC_I64 || q->operand_shapes[0].rank != 0)
    return ldmc_rule_error(q, "key must be i64[], got %s",
                           ldmc_type_str(q->operand_dtypes[0], &q->operand_shapes[0], t, sizeof t));
  LDMC_TRY(ldmc_rule_declared_ok(q));
  if (!ldmc_dtype_is_float(q->dtype))
    return ldmc_rule_error(q, "declared dtype %s, needs a float dtype", ldmc_dtype_name(q->dtype));
  return LDMC_OK;
}

/* ---- elementwise ---------------------------------------------------------------- */
ldmc_status ldmc_shape_convert(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  if ((unsigned)q->dtype >= LDMC_DTYPE_COUNT) return ldmc_rule_error(q, "declared dtype %d is invalid", (int)q->dtype);
  q->shape = q->operand_shapes[0];
  return LDMC_OK;
}

ldmc_status ldmc_shape_unary(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, ldmc_op_table[q->op].dtypes, "operand"));
  result_of(q, 0);
  return LDMC_OK;
}

ldmc_status ldmc_shape_binary(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 2));
  LDMC_TRY(same_type(q, 0, 1, "operand"));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, ldmc_op_table[q->op].dtypes, "operand"));
  result_of(q, 0);
  return LDMC_OK;
}

ldmc_status ldmc_shape_compare(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 2));
  LDMC_TRY(same_type(q, 0, 1, "operand"));
  if ((unsigned)q->attrs->direction >= LDMC_CMP_COUNT)
    return ldmc_rule_error(q, "direction %d is invalid", (int)q->attrs->direction);
  q->dtype = LDMC_PRED;
  q->shape = q->operand_shapes[0];
  return LDMC_OK;
}

ldmc_status ldmc_shape_select(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 3));
  char tp[LDMC_TYPE_STR_LEN], tx[LDMC_TYPE_STR_LEN];
  if (q->operand_dtypes[0] != LDMC_PRED || !ldmc_shape_equal(&q->operand_shapes[0], &q->operand_shapes[1]))
    return ldmc_rule_error(q, "predicate %s must be pred with the shape of %s",
                           ldmc_type_str(q->operand_dtypes[0], &q->operand_shapes[0], tp, sizeof tp),
                           ldmc_type_str(q->operand_dtypes[1], &q->operand_shapes[1], tx, sizeof tx));
  LDMC_TRY(same_type(q, 1, 2, "branch"));
  result_of(q, 1);
  return LDMC_OK;
}

/* ---- data movement ---------------------------------------------------------------- */
ldmc_status ldmc_shape_broadcast_in_dim(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  LDMC_TRY(ldmc_rule_declared_ok(q));
  const ldmc_shape *in = &q->operand_shapes[0];
  const ldmc_ints *d = &q->attrs->dims;
  LDMC_TRY(ldmc_rule_len(q, d, in->rank, "dims"));
  for (int i = 0; i < d->n; i++) {
    if (d->v[i] < 0 || d->v[i] >= q->shape.rank)
      return ldmc_rule_error(q, "dims[%d] = %" PRId64 " is outside the result rank %d", i, d->v[i], q->shape.rank);
    if (i > 0 && d->v[i] <= d->v[i - 1])
      return ldmc_rule_error(q, "dims must be strictly increasing (dims[%d] = %" PRId64 " after %" PRId64 ")", i,
                             d->v[i], d->v[i - 1]);
    int64_t od = q->shape.dims[d->v[i]];
    if (in->dims[i] != 1 && in->dims[i] != od)
      return ldmc_rule_error(q, "operand dim %d (%" PRId64 ") must be 1 or equal result dim %" PRId64 " (%" PRId64 ")",
                             i, in->dims[i], d->v[i], od);
  }
  q->dtype = q->operand_dtypes[0];
  return LDMC_OK;
}

ldmc_status ldmc_shape_reshape(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  q->dtype = q->operand_dtypes[0];
  LDMC_TRY(ldmc_rule_declared_ok(q));
  int64_t a, b;
  LDMC_TRY(ldmc_shape_numel(&q->operand_shapes[0], 0, &a));
  LDMC_TRY(ldmc_shape_numel(&q->shape, 0, &b));
  char ti[LDMC_TYPE_STR_LEN], to[LDMC_TYPE_STR_LEN];
  if (a != b)
    return ldmc_rule_error(q, "element counts differ: %s has %" PRId64 ", %s has %" PRId64,
                           ldmc_type_str(q->dtype, &q->operand_shapes[0], ti, sizeof ti), a,
                           ldmc_type_str(q->dtype, &q->shape, to, sizeof to), b);
  return LDMC_OK;
}

ldmc_status ldmc_shape_transpose(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  const ldmc_shape *in = &q->operand_shapes[0];
  const ldmc_ints *p = &q->attrs->dims;
  LDMC_TRY(ldmc_rule_len(q, p, in->rank, "dims"));
  bool seen[LDMC_MAX_RANK] = {0};
  ldmc_shape out = {.rank = in->rank};
  for (int i = 0; i < p->n; i++) {
    if (p->v[i] < 0 || p->v[i] >= in->rank || seen[p->v[i]])
      return ldmc_rule_error(q, "dims is not a permutation of 0..%d (dims[%d] = %" PRId64 ")", in->rank - 1, i,
                             p->v[i]);
    seen[p->v[i]] = true;
    out.dims[i] = in->dims[p->v[i]];
  }
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

ldmc_status ldmc_shape_slice(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 1));
  const ldmc_shape *in = &q->operand_shapes[0];
  const ldmc_attrs *a = q->attrs;
  LDMC_TRY(ldmc_rule_len(q, &a->start, in->rank, "start"));
  LDMC_TRY(ldmc_rule_len(q, &a->limit, in->rank, "limit"));
  LDMC_TRY(ldmc_rule_len(q, &a->stride, in->rank, "stride"));
  ldmc_shape out = {.rank = in->rank};
  for (int i = 0; i < in->rank; i++) {
    int64_t s = a->start.v[i], l = a->limit.v[i], st = a->stride.v[i];
    if (s < 0 || s > l || l > in->dims[i])
      return ldmc_rule_error(q, "dim %d: need 0 <= start (%" PRId64 ") <= limit (%" PRId64 ") <= dim (%" PRId64 ")", i,
                             s, l, in->dims[i]);
    if (st < 1) return ldmc_rule_error(q, "dim %d: stride %" PRId64 " must be >= 1", i, st);
    out.dims[i] = (l - s) / st + ((l - s) % st != 0);
  }
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

ldmc_status ldmc_shape_concatenate(ldmc_type_query *q) {
  if (q->n_operands < 1) return ldmc_rule_error(q, "expects one or more operands, got %d", q->n_operands);
  LDMC_TRY(ldmc_rule_need(q, q->n_operands));
  const ldmc_shape *s0 = &q->operand_shapes[0];
  LDMC_TRY(ldmc_rule_axis(q, q->attrs->axis, s0->rank, "axis"));
  int ax = (int)q->attrs->axis;
  ldmc_shape out = *s0;
  char t0[LDMC_TYPE_STR_LEN], ti[LDMC_TYPE_STR_LEN];
  for (int i = 1; i < q->n_operands; i++) {
    const ldmc_shape *si = &q->operand_shapes[i];
    bool ok = q->operand_dtypes[i] == q->operand_dtypes[0] && si->rank == s0->rank;
    for (int d = 0; ok && d < s0->rank; d++) ok = d == ax || si->dims[d] == s0->dims[d];
    if (!ok)
      return ldmc_rule_error(q, "operand %d (%s) does not match operand 0 (%s) outside axis %d", i,
                             ldmc_type_str(q->operand_dtypes[i], si, ti, sizeof ti),
                             ldmc_type_str(q->operand_dtypes[0], s0, t0, sizeof t0), ax);
    if (out.dims[ax] > INT64_MAX - si->dims[ax]) return ldmc_rule_error(q, "result dim %d overflows int64", ax);
    out.dims[ax] += si->dims[ax];
  }
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

ldmc_status ldmc_shape_pad(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 2));
  const ldmc_shape *in = &q->operand_shapes[0];
  const ldmc_attrs *a = q->attrs;
  char tv[LDMC_TYPE_STR_LEN];
  if (q->operand_dtypes[1] != q->operand_dtypes[0] || q->operand_shapes[1].rank != 0)
    return ldmc_rule_error(q, "pad value %s must be a scalar %s[]",
                           ldmc_type_str(q->operand_dtypes[1], &q->operand_shapes[1], tv, sizeof tv),
                           ldmc_dtype_name(q->operand_dtypes[0]));
  LDMC_TRY(ldmc_rule_len(q, &a->low, in->rank, "low"));
  LDMC_TRY(ldmc_rule_len(q, &a->high, in->rank, "high"));
  LDMC_TRY(ldmc_rule_len(q, &a->interior, in->rank, "interior"));
  ldmc_shape out = {.rank = in->rank};
  for (int i = 0; i < in->rank; i++) {
    int64_t d = in->dims[i], lo = a->low.v[i], hi = a->high.v[i], it = a->interior.v[i], r, gaps = d > 0 ? d - 1 : 0;
    if (it < 0) return ldmc_rule_error(q, "dim %d: interior %" PRId64 " must be >= 0", i, it);
    if (__builtin_mul_overflow(gaps, it, &r) || __builtin_add_overflow(r, d, &r) || __builtin_add_overflow(r, lo, &r) ||
        __builtin_add_overflow(r, hi, &r))
      return ldmc_rule_error(q, "dim %d: padded size overflows int64", i);
    if (r < 0)
      return ldmc_rule_error(q, "dim %d: padded size %" PRId64 " is negative (dim %" PRId64 ", low %" PRId64
                             ", high %" PRId64 ")", i, r, d, lo, hi);
    out.dims[i] = r;
  }
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

/* x.dims[:axis] ++ idx.dims ++ x.dims[axis+1:] */
static ldmc_status gather_shape(const ldmc_type_query *q, ldmc_shape *out) {
  const ldmc_shape *x = &q->operand_shapes[0], *idx = &q->operand_shapes[1];
  LDMC_TRY(ldmc_rule_axis(q, q->attrs->axis, x->rank, "axis"));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 1, LDMC_DT_INT, "indices"));
  int ax = (int)q->attrs->axis, rank = x->rank - 1 + idx->rank;
  if (rank > LDMC_MAX_RANK) return ldmc_rule_error(q, "result rank %d exceeds %d", rank, LDMC_MAX_RANK);
  out->rank = rank;
  int k = 0;
  for (int i = 0; i < ax; i++) out->dims[k++] = x->dims[i];
  for (int i = 0; i < idx->rank; i++) out->dims[k++] = idx->dims[i];
  for (int i = ax + 1; i < x->rank; i++) out->dims[k++] = x->dims[i];
  return LDMC_OK;
}

ldmc_status ldmc_shape_gather(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 2));
  ldmc_shape out = {0};
  LDMC_TRY(gather_shape(q, &out));
  q->dtype = q->operand_dtypes[0];
  q->shape = out;
  return LDMC_OK;
}

ldmc_status ldmc_shape_scatter_add(ldmc_type_query *q) {
  LDMC_TRY(ldmc_rule_need(q, 3));
  LDMC_TRY(ldmc_rule_operand_dtype(q, 0, LDMC_DT_NUMERIC, "operand"));
  ldmc_shape want = {0};
  LDMC_TRY(gather_shape(q, &want));
  char tu[LDMC_TYPE_STR_LEN], tw[LDMC_TYPE_STR_LEN];
  if (q->operand_dtypes[2] != q->operand_dtypes[0] || !ldmc_shape_equal(&q->operand_shapes[2], &want))
    return ldmc_rule_error(q, "updates %s must be %s (the gather result type)",
                           ldmc_type_str(q->operand_dtypes[2], &q->operand_shapes[2], tu, sizeof tu),
                           ldmc_type_str(q->operand_dtypes[0], &want, tw, sizeof tw));
  result_of(q, 0);
  return LDMC_OK;
}
