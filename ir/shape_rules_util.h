/* Helpers shared by the shape rules (ir-internal). Every rule names its op in
 * its message ("add: operand shapes f32[2,3] and f32[3,2] differ"). */
#ifndef LDMC_IR_SHAPE_RULES_UTIL_H
#define LDMC_IR_SHAPE_RULES_UTIL_H
#include <stdarg.h>
#include <stdio.h>

#include "ir/ir.h"

/* "f32[2,3]" into buf (at least 160 bytes holds any rank-8 type). */
char *ldmc_type_str(ldmc_dtype dt, const ldmc_shape *s, char *buf, size_t len);

/* Sets "<op>: <message>" and returns LDMC_ERR_INVALID. */
ldmc_status ldmc_rule_error(const ldmc_type_query *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks that q has at least n operands (rules may be called directly). */
ldmc_status ldmc_rule_need(const ldmc_type_query *q, int n);

/* Checks the declared result type: valid dtype, rank 0..8, dims >= 0, size fits int64. */
ldmc_status ldmc_rule_declared_ok(const ldmc_type_query *q);

/* Checks 0 <= axis < rank; what names the attribute. */
ldmc_status ldmc_rule_axis(const ldmc_type_query *q, int64_t axis, int rank, const char *what);

/* Checks an ints attribute has exactly n entries. */
ldmc_status ldmc_rule_len(const ldmc_type_query *q, const ldmc_ints *v, int n, const char *what);

/* Checks operand i's dtype is in mask (what: "float"/"integer"...). */
ldmc_status ldmc_rule_operand_dtype(const ldmc_type_query *q, int i, uint32_t mask, const char *what);

#define LDMC_TYPE_STR_LEN 192

#endif
