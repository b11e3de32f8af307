/* The one scalar evaluator of the elementwise ops (convert, the unary and
 * binary ops, compare, select, and the elementwise composites silu and gelu),
 * shared by the constant folder (passes/eval.c) and the reference interpreter
 * (backends/interp/), so a folded constant is bit for bit what the
 * interpreter computes:
 *  - floats (f32, bf16, f16, f64) are computed in double and rounded once on
 *    store (nearest even; bf16 and f16 through a round-to-odd f32, so one
 *    rounding; f64 stores the double as it is);
 *  - integers (i32, i64) exactly in 64 bits, wrapping to the result's width:
 *    division truncates toward zero, x / 0 is 0, INT_MIN / -1 is INT_MIN;
 *  - max and min propagate NaN; compare is IEEE (NaN unordered: only ne);
 *  - convert float -> int truncates toward zero, saturates, NaN -> 0; float ->
 *    pred is v != 0 (NaN true); int -> float rounds once; select copies bytes. */
#ifndef LDMC_IR_SCALAR_H
#define LDMC_IR_SCALAR_H

#include "ir/ir.h"

/* Ops ldmc_scalar_eval_elementwise evaluates. */
bool ldmc_scalar_op_supported(ldmc_op op);

/* Per element. _f: float operands as double (NAN for an op it does not
 * know); _i: integer or pred operands, exactly (0 for an op it does not know;
 * integer ops are neg, abs and add..min). */
double ldmc_scalar_unary_f(ldmc_op op, double x);
int64_t ldmc_scalar_unary_i(ldmc_op op, int64_t x);
double ldmc_scalar_binary_f(ldmc_op op, double x, double y);
int64_t ldmc_scalar_binary_i(ldmc_op op, int64_t x, int64_t y);
bool ldmc_scalar_compare_f(ldmc_compare c, double x, double y);
bool ldmc_scalar_compare_i(ldmc_compare c, int64_t x, int64_t y);
/* float -> i32 / i64: toward zero, saturating, NaN -> 0 */
int64_t ldmc_scalar_float_to_int(double v, ldmc_dtype dt);

/* Element access with the rules above: a float element as double, an integer
 * or pred element exactly; stores round once (floats) or wrap (i32). */
double ldmc_scalar_getf(const ldmc_tensor *t, int64_t i);
int64_t ldmc_scalar_geti(const ldmc_tensor *t, int64_t i);
void ldmc_scalar_setf(ldmc_tensor *t, int64_t i, double v);
void ldmc_scalar_seti(ldmc_tensor *t, int64_t i, int64_t v);

/* Node n (an op ldmc_scalar_op_supported accepts) over operands in[0..n_operands)
 * of its shape, into out, already allocated with n's dtype and shape. */
ldmc_status ldmc_scalar_eval_elementwise(const ldmc_node *n, const ldmc_tensor *const *in, ldmc_tensor *out);

#endif
