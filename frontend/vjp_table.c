/* The VJP rule table: filled once by the family files. */
#include <pthread.h>

#include "frontend/vjp.h"

static ldmc_vjp_rule g_rules[LDMC_OP_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fill(void) {
  ldmc_vjp_register_elementwise(g_rules);
  ldmc_vjp_register_movement(g_rules);
  ldmc_vjp_register_contract(g_rules);
  ldmc_vjp_register_composite(g_rules);
}

ldmc_vjp_rule ldmc_vjp_rule_for(ldmc_op op) {
  if ((unsigned)op >= LDMC_OP_COUNT) return NULL;
  pthread_once(&g_once, fill);
  return g_rules[op];
}
