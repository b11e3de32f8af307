/* Declarations of the shape and FLOP rules the op table names (ir-internal). */
#ifndef LDMC_IR_OP_RULES_H
#define LDMC_IR_OP_RULES_H
#include "ir/ir.h"

ldmc_status ldmc_shape_declared(ldmc_type_query *q);
ldmc_status ldmc_shape_iota(ldmc_type_query *q);
ldmc_status ldmc_shape_rng(ldmc_type_query *q);
ldmc_status ldmc_shape_convert(ldmc_type_query *q);
ldmc_status ldmc_shape_unary(ldmc_type_query *q);
ldmc_status ldmc_shape_binary(ldmc_type_query *q);
ldmc_status ldmc_shape_compare(ldmc_type_query *q);
ldmc_status ldmc_shape_select(ldmc_type_query *q);
ldmc_status ldmc_shape_broadcast_in_dim(ldmc_type_query *q);
ldmc_status ldmc_shape_reshape(ldmc_type_query *q);
ldmc_status ldmc_shape_transpose(ldmc_type_query *q);
ldmc_status ldmc_shape_slice(ldmc_type_query *q);
ldmc_status ldmc_shape_concatenate(ldmc_type_query *q);
ldmc_status ldmc_shape_pad(ldmc_type_query *q);
ldmc_status ldmc_shape_gather(ldmc_type_query *q);
ldmc_status ldmc_shape_scatter_add(ldmc_type_query *q);
ldmc_status ldmc_shape_reduce(ldmc_type_query *q);
ldmc_status ldmc_shape_dot_general(ldmc_type_query *q);
ldmc_status ldmc_shape_convolution(ldmc_type_query *q);
ldmc_status ldmc_shape_softmax(ldmc_type_query *q);
ldmc_status ldmc_shape_group_norm(ldmc_type_query *q);
ldmc_status ldmc_shape_layer_norm(ldmc_type_query *q);
ldmc_status ldmc_shape_attention(ldmc_type_query *q);
ldmc_status ldmc_shape_attention_lse(ldmc_type_query *q);
ldmc_status ldmc_shape_attention_grad(ldmc_type_query *q);
ldmc_status ldmc_shape_upsample_nearest(ldmc_type_query *q);

void ldmc_flops_none(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_per_element1(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_per_element4(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_per_element5(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_per_element8(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_scatter_add(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_reduce(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_dot_general(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_convolution(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_attention(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_attention_lse(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_attention_grad_q(const ldmc_type_query *q, ldmc_flops *out);
void ldmc_flops_attention_grad_kv(const ldmc_type_query *q, ldmc_flops *out);

#endif
