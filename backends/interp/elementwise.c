/* Sources (constant, iota) and elementwise ops: convert, unary, binary,
 * compare, select, computed by ir/scalar.h's evaluator (shared with the
 * constant folder): floats in double and rounded once on store; integers
 * exactly in 64 bits, wrapping to the result width. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backends/interp/interp.h"
#include "ir/scalar.h"

ldmc_status ldmc_interp_source(const ldmc_interp_args *a) {
  const ldmc_node *n = a->node;
  ldmc_tensor *out = a->out;
  if (n->op == LDMC_OP_CONSTANT) {
    if (n->attrs.value.nbytes != out->nbytes)
      return ldmc_error(LDMC_ERR_INVALID, "constant holds %zu bytes, its type needs %zu", n->attrs.value.nbytes,
                        out->nbytes);
    if (out->nbytes) memcpy(out->data, n->attrs.value.data, out->nbytes);
    return LDMC_OK;
  }
  /* iota: the coordinate along axis */
  int64_t st[LDMC_MAX_RANK], total = ldmc_interp_numel(&out->shape);
  ldmc_interp_strides(&out->shape, st);
  int ax = (int)n->attrs.axis;
  for (int64_t i = 0; i < total; i++) {
    int64_t c = (i / st[ax]) % out->shape.dims[ax];
    if (ldmc_interp_is_float(out))
      ldmc_interp_setf(out, i, (double)c);
    else
      ldmc_interp_seti(out, i, c);
  }
  return LDMC_OK;
}

/* convert, unary, binary, compare, select: the scalar evaluator the constant
 * folder shares (ir/scalar.h), so folding never changes a result. */
ldmc_status ldmc_interp_elementwise(const ldmc_interp_args *a) {
  const ldmc_node *n = a->node;
  ldmc_status st = ldmc_scalar_eval_elementwise(n, a->in, a->out);
  if (st != LDMC_OK) ldmc_error(LDMC_ERR_INTERNAL, "interp: %s is not an elementwise op", ldmc_op_name(n->op));
  return st;
}
