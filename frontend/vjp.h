/* The VJP rule interface (frontend-internal). A rule adds to the gradient
 * graph the cotangents of one forward node's operands, given the cotangent of
 * its result. Rules build with the public builder API, so every node they add
 * is shape-checked. One file per op family fills its rows of the table:
 *   vjp_elementwise.c  unary/binary/select/convert
 *   vjp_movement.c     broadcast_in_dim reshape transpose slice concatenate pad
 *                      gather scatter_add reduce
 *   vjp_contract.c     dot_general convolution
 *   vjp_composite.c    silu gelu softmax group_norm layer_norm attention
 *                      upsample_nearest (native rules, not their decompositions) */
#ifndef LDMC_FRONTEND_VJP_H
#define LDMC_FRONTEND_VJP_H
#include "frontend/frontend.h"

typedef struct ldmc_vjp_args {
  ldmc_builder *b;     /* the gradient graph under construction */
  const ldmc_node *n;  /* the forward node (op, attrs, dtype, shape), in the source graph */
  ldmc_value y;        /* its result, as a value of b */
  const ldmc_value *x; /* its operands, as values of b (n->n_operands of them) */
  ldmc_value ct;       /* cotangent of y: same dtype and shape as y */
  const bool *need;    /* need[i]: the cotangent of operand i is wanted */
} ldmc_vjp_args;

/* Sets dx[i] to the cotangent of operand i (its dtype and shape) for every
 * needed operand, -1 where the operand gets none (integer indices, pred). On a
 * builder error returns false (the builder holds the message). dx[] enters
 * filled with -1. */
typedef bool (*ldmc_vjp_rule)(const ldmc_vjp_args *a, ldmc_value *dx);

/* The rule of op, or NULL. Every op flagged LDMC_OPF_DIFFERENTIABLE has one
 * (checked by test_grad_rules). */
ldmc_vjp_rule ldmc_vjp_rule_for(ldmc_op op);

/* Each family file fills its ops' rows. */
void ldmc_vjp_register_elementwise(ldmc_vjp_rule *table);
void ldmc_vjp_register_movement(ldmc_vjp_rule *table);
void ldmc_vjp_register_contract(ldmc_vjp_rule *table);
void ldmc_vjp_register_composite(ldmc_vjp_rule *table);
#endif
