/* The op and attribute tables, expanded from ops.def and attrs.def. */
#include <stddef.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/op_rules.h"

const ldmc_op_info ldmc_op_table[LDMC_OP_COUNT] = {
#define LDMC_OP(E, NAME, ARITY, ATTRS, SHAPE, FLOPS, DTYPES, FLAGS) \
  [LDMC_OP_##E] = {NAME, ARITY, ATTRS, ldmc_shape_##SHAPE, ldmc_flops_##FLOPS, DTYPES, FLAGS},
#include "ir/ops.def"
#undef LDMC_OP
};

/* Each row must have been filled: counts the rows and checks against the enum. */
enum {
#define LDMC_OP(E, NAME, ARITY, ATTRS, SHAPE, FLOPS, DTYPES, FLAGS) LDMC_OP_ROW_##E,
#include "ir/ops.def"
#undef LDMC_OP
  LDMC_OP_ROWS
};
_Static_assert((int)LDMC_OP_ROWS == (int)LDMC_OP_COUNT, "ops.def rows and ldmc_op enum agree");
_Static_assert(LDMC_ATTR_COUNT <= 64, "attribute masks are 64-bit");

const ldmc_attr_info ldmc_attr_table[LDMC_ATTR_COUNT] = {
#define LDMC_ATTR(E, NAME, KIND, MEMBER) [LDMC_ATTR_##E] = {NAME, KIND, offsetof(ldmc_attrs, MEMBER)},
#include "ir/attrs.def"
#undef LDMC_ATTR
};

const char *ldmc_op_name(ldmc_op op) {
  return (unsigned)op < LDMC_OP_COUNT ? ldmc_op_table[op].name : "<bad op>";
}

bool ldmc_op_lookup(const char *name, size_t len, ldmc_op *out) {
  for (int i = 0; i < LDMC_OP_COUNT; i++) {
    const char *n = ldmc_op_table[i].name;
    if (strlen(n) == len && memcmp(n, name, len) == 0) {
      *out = (ldmc_op)i;
      return true;
    }
  }
  return false;
}

bool ldmc_attr_lookup(const char *name, size_t len, ldmc_attr_field *out) {
  for (int i = 0; i < LDMC_ATTR_COUNT; i++) {
    const char *n = ldmc_attr_table[i].name;
    if (strlen(n) == len && memcmp(n, name, len) == 0) {
      *out = (ldmc_attr_field)i;
      return true;
    }
  }
  return false;
}

const char *ldmc_compare_name(ldmc_compare c) {
  static const char *const names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
  _Static_assert(sizeof names / sizeof names[0] == LDMC_CMP_COUNT, "compare names");
  return (unsigned)c < LDMC_CMP_COUNT ? names[c] : "<bad compare>";
}

const char *ldmc_reduce_kind_name(ldmc_reduce_kind k) {
  static const char *const names[] = {"sum", "max", "min"};
  _Static_assert(sizeof names / sizeof names[0] == LDMC_REDUCE_COUNT, "reduce names");
  return (unsigned)k < LDMC_REDUCE_COUNT ? names[k] : "<bad reduce>";
}
