/* ldmc_infer_type: the generic checks every op shares (arity, operand types,
 * attribute sanity, result dtype), around the op's own shape rule. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ir/op_rules.h"
#include "ir/shape_rules_util.h"

/* Fields of attrs in mask hold values a rule can index with safely. */
static ldmc_status attrs_sane(const ldmc_type_query *q, uint64_t mask) {
  const ldmc_attrs *a = q->attrs;
  for (int f = 0; f < LDMC_ATTR_COUNT; f++) {
    if (!(mask >> f & 1u)) continue;
    const ldmc_attr_info *info = &ldmc_attr_table[f];
    const char *p = (const char *)a + info->offset;
    switch (info->kind) {
      case LDMC_AK_INTS: {
        const ldmc_ints *v = (const ldmc_ints *)p;
        if (v->n < 0 || v->n > LDMC_MAX_RANK)
          return ldmc_rule_error(q, "attribute %s has %d entries, outside 0..%d", info->name, v->n, LDMC_MAX_RANK);
        break;
      }
      case LDMC_AK_FLOAT: {
        double d;
        memcpy(&d, p, sizeof d);
        if (!isfinite(d)) return ldmc_rule_error(q, "attribute %s is not finite (%g)", info->name, d);
        break;
      }
      case LDMC_AK_COMPARE:
        if ((unsigned)a->direction >= LDMC_CMP_COUNT)
          return ldmc_rule_error(q, "attribute %s has invalid value %d", info->name, (int)a->direction);
        break;
      case LDMC_AK_REDUCE:
        if ((unsigned)a->reduce >= LDMC_REDUCE_COUNT)
          return ldmc_rule_error(q, "attribute %s has invalid value %d", info->name, (int)a->reduce);
        break;
      case LDMC_AK_LITERAL:
        if (a->value.nbytes > 0 && !a->value.data) return ldmc_rule_error(q, "attribute %s has no data", info->name);
        break;
      case LDMC_AK_INT:
      case LDMC_AK_STRING:
        break;
    }
  }
  return LDMC_OK;
}

static void dtypes_str(uint32_t mask, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < LDMC_DTYPE_COUNT && k < len; i++)
    if (mask >> i & 1u) k += (size_t)snprintf(buf + k, len - k, k ? ", %s" : "%s", ldmc_dtype_name((ldmc_dtype)i));
}

ldmc_status ldmc_infer_type(ldmc_type_query *q) {
  static const ldmc_attrs empty;
  if (!q) return ldmc_error(LDMC_ERR_INVALID, "ldmc_infer_type: no query");
  if ((unsigned)q->op >= LDMC_OP_COUNT) return ldmc_error(LDMC_ERR_INVALID, "op %d is not a valid op", (int)q->op);
  const ldmc_op_info *info = &ldmc_op_table[q->op];
  if (!q->attrs) q->attrs = &empty;
  if (info->arity >= 0 && q->n_operands != info->arity)
    return ldmc_rule_error(q, "expects %d operand%s, got %d", info->arity, info->arity == 1 ? "" : "s", q->n_operands);
  if (info->arity < 0 && q->n_operands < 1) return ldmc_rule_error(q, "expects one or more operands, got %d", q->n_operands);
  LDMC_TRY(ldmc_rule_need(q, q->n_operands)); /* operand dtypes valid, ranks 0..8, dims >= 0 */
  LDMC_TRY(attrs_sane(q, info->attr_mask));
  LDMC_TRY(info->shape_rule(q));
  char allowed[64], t[LDMC_TYPE_STR_LEN];
  if ((unsigned)q->dtype >= LDMC_DTYPE_COUNT) return ldmc_rule_error(q, "result dtype %d is invalid", (int)q->dtype);
  if (!(info->dtypes >> q->dtype & 1u)) {
    dtypes_str(info->dtypes, allowed, sizeof allowed);
    return ldmc_rule_error(q, "result dtype %s is not allowed (allowed: %s)", ldmc_dtype_name(q->dtype), allowed);
  }
  int64_t n;
  if (ldmc_shape_numel(&q->shape, ldmc_dtype_size(q->dtype), &n) != LDMC_OK)
    return ldmc_rule_error(q, "result type %s is too large", ldmc_type_str(q->dtype, &q->shape, t, sizeof t));
  return LDMC_OK;
}
