/* The VJP rule table matches the op table: every op flagged
 * LDMC_OPF_DIFFERENTIABLE in ir/ops.def has a rule (frontend/vjp_*.c), and
 * no other op has one. Missing and unexpected rules are listed by name. */
#include <stdio.h>

#include "frontend/vjp.h"
#include "test_util.h"

int main(void) {
  int missing = 0, extra = 0, with_rule = 0;
  for (int op = 0; op < LDMC_OP_COUNT; op++) {
    bool flagged = (ldmc_op_table[op].flags & LDMC_OPF_DIFFERENTIABLE) != 0;
    bool has = ldmc_vjp_rule_for((ldmc_op)op) != NULL;
    with_rule += has;
    if (flagged && !has) {
      fprintf(stderr, "missing VJP rule: op '%s' is flagged LDMC_OPF_DIFFERENTIABLE\n", ldmc_op_name((ldmc_op)op));
      missing++;
    } else if (!flagged && has) {
      fprintf(stderr, "unexpected VJP rule: op '%s' is not flagged LDMC_OPF_DIFFERENTIABLE\n", ldmc_op_name((ldmc_op)op));
      extra++;
    }
  }
  CHECK_MSG(missing == 0, "%d differentiable op(s) have no VJP rule", missing);
  CHECK_MSG(extra == 0, "%d op(s) have a VJP rule but no LDMC_OPF_DIFFERENTIABLE flag", extra);
  /* the sources, rng and compare carry no gradient */
  static const ldmc_op none[] = {LDMC_OP_PARAMETER, LDMC_OP_CONSTANT, LDMC_OP_IOTA, LDMC_OP_RNG_UNIFORM,
                                 LDMC_OP_RNG_NORMAL, LDMC_OP_COMPARE};
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
    CHECK_MSG(!(ldmc_op_table[none[i]].flags & LDMC_OPF_DIFFERENTIABLE), "op '%s' should not be differentiable",
              ldmc_op_name(none[i]));
  CHECK(ldmc_vjp_rule_for(LDMC_OP_COUNT) == NULL);
  printf("%d of %d ops have a VJP rule\n", with_rule, (int)LDMC_OP_COUNT);
  return test_summary("test_grad_rules");
}
