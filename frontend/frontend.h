/* The C builder API: build graphs op by op with shapes checked as nodes are
 * added. Errors are sticky: after the first failure every call returns -1 and
 * ldmc_builder_finish reports the first message. Values are node ids. */
#ifndef LDMC_FRONTEND_H
#define LDMC_FRONTEND_H

#include "ir/ir.h"

typedef struct ldmc_builder ldmc_builder;
typedef int32_t ldmc_value; /* node id; -1 after an error */

ldmc_builder *ldmc_builder_new(const char *graph_name);
/* Returns the graph (verified) and frees the builder, or NULL with the first
 * error in ldmc_last_error() and *status. */
ldmc_graph *ldmc_builder_finish(ldmc_builder *b, ldmc_status *status);
void ldmc_builder_free(ldmc_builder *b);
ldmc_graph *ldmc_builder_graph(ldmc_builder *b); /* borrowed view while building */
ldmc_status ldmc_builder_status(const ldmc_builder *b);
const char *ldmc_builder_error(const ldmc_builder *b);

/* Scopes name the model block a node belongs to ("down_blocks.0.resnets.1"). */
void ldmc_builder_push_scope(ldmc_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ldmc_builder_pop_scope(ldmc_builder *b);
const char *ldmc_builder_scope(const ldmc_builder *b); /* dotted path, "" at top */

ldmc_status ldmc_builder_output(ldmc_builder *b, ldmc_value v, const char *name);

/* sources */
ldmc_value ldmc_parameter(ldmc_builder *b, const char *name, ldmc_dtype dt, int rank, const int64_t *dims);
ldmc_value ldmc_constant_scalar(ldmc_builder *b, ldmc_dtype dt, double v);
ldmc_value ldmc_constant(ldmc_builder *b, ldmc_dtype dt, int rank, const int64_t *dims, const void *data);
ldmc_value ldmc_iota(ldmc_builder *b, ldmc_dtype dt, int rank, const int64_t *dims, int axis);

/* elementwise; binary ops broadcast numpy-style (inserting broadcast_in_dim) */
ldmc_value ldmc_unary(ldmc_builder *b, ldmc_op op, ldmc_value x);
ldmc_value ldmc_binary(ldmc_builder *b, ldmc_op op, ldmc_value x, ldmc_value y);
ldmc_value ldmc_add(ldmc_builder *b, ldmc_value x, ldmc_value y);
ldmc_value ldmc_sub(ldmc_builder *b, ldmc_value x, ldmc_value y);
ldmc_value ldmc_mul(ldmc_builder *b, ldmc_value x, ldmc_value y);
ldmc_value ldmc_div(ldmc_builder *b, ldmc_value x, ldmc_value y);
ldmc_value ldmc_scale(ldmc_builder *b, ldmc_value x, double s); /* x * s */
/* named _values: ldmc_compare is the direction enum of ir.h */
ldmc_value ldmc_compare_values(ldmc_builder *b, ldmc_compare dir, ldmc_value x, ldmc_value y);
ldmc_value ldmc_select(ldmc_builder *b, ldmc_value pred, ldmc_value x, ldmc_value y);
ldmc_value ldmc_convert(ldmc_builder *b, ldmc_value x, ldmc_dtype dt);

/* shape */
ldmc_value ldmc_reshape(ldmc_builder *b, ldmc_value x, int rank, const int64_t *dims); /* one dim may be -1 */
ldmc_value ldmc_transpose(ldmc_builder *b, ldmc_value x, const int64_t *perm);
ldmc_value ldmc_broadcast_to(ldmc_builder *b, ldmc_value x, int rank, const int64_t *dims); /* numpy rules */
ldmc_value ldmc_broadcast_in_dim(ldmc_builder *b, ldmc_value x, int rank, const int64_t *dims, const int64_t *map);
ldmc_value ldmc_slice(ldmc_builder *b, ldmc_value x, const int64_t *start, const int64_t *limit, const int64_t *stride);
ldmc_value ldmc_concatenate(ldmc_builder *b, int n, const ldmc_value *xs, int axis);
ldmc_value ldmc_pad(ldmc_builder *b, ldmc_value x, ldmc_value pad_value, const int64_t *low, const int64_t *high,
                    const int64_t *interior);
ldmc_value ldmc_gather(ldmc_builder *b, ldmc_value x, ldmc_value indices, int axis);

/* reductions and contractions */
ldmc_value ldmc_reduce(ldmc_builder *b, ldmc_reduce_kind kind, ldmc_value x, int n_axes, const int64_t *axes,
                       bool keepdims);
ldmc_value ldmc_dot_general(ldmc_builder *b, ldmc_value x, ldmc_value y, const ldmc_ints *lhs_batch,
                            const ldmc_ints *rhs_batch, const ldmc_ints *lhs_contract, const ldmc_ints *rhs_contract);
/* numpy matmul for rank >= 2 operands with equal leading (batch) dims */
ldmc_value ldmc_matmul(ldmc_builder *b, ldmc_value x, ldmc_value y);
/* NCHW input, OIHW kernel, NCHW output */
ldmc_value ldmc_conv2d(ldmc_builder *b, ldmc_value x, ldmc_value w, int stride, int pad, int dilation, int groups);

/* composites */
ldmc_value ldmc_silu(ldmc_builder *b, ldmc_value x);
ldmc_value ldmc_gelu(ldmc_builder *b, ldmc_value x);
ldmc_value ldmc_softmax(ldmc_builder *b, ldmc_value x, int axis);
ldmc_value ldmc_group_norm(ldmc_builder *b, ldmc_value x, ldmc_value gamma, ldmc_value beta, int groups, double eps);
ldmc_value ldmc_layer_norm(ldmc_builder *b, ldmc_value x, ldmc_value gamma, ldmc_value beta, int axis, double eps);
ldmc_value ldmc_attention(ldmc_builder *b, ldmc_value q, ldmc_value k, ldmc_value v, double scale);
ldmc_value ldmc_upsample_nearest(ldmc_builder *b, ldmc_value x, int factor);

/* queries */
const ldmc_shape *ldmc_value_shape(const ldmc_builder *b, ldmc_value v);
ldmc_dtype ldmc_value_dtype(const ldmc_builder *b, ldmc_value v);

/* ---- reverse-mode autodiff (frontend/grad.c; rules in frontend/vjp_*.c) ---- */
typedef struct ldmc_grad_opts {
  const char *output;    /* name of the differentiated output; NULL: the graph's first output */
  /* How the output's cotangent enters: LDMC_GRAD_SCALAR needs a rank-0 output
   * (cotangent 1); LDMC_GRAD_SUM differentiates sum(output); LDMC_GRAD_COTANGENT
   * adds a parameter "cotangent.<output>" of the output's type as the last input. */
  enum { LDMC_GRAD_SCALAR, LDMC_GRAD_SUM, LDMC_GRAD_COTANGENT } seed;
  const char *wrt_regex; /* POSIX extended regex over parameter names; NULL: every float parameter */
} ldmc_grad_opts;

/* Returns in *out a new graph with g's parameters (plus the cotangent one) and
 * outputs, then one output "grad.<parameter name>" per differentiated
 * parameter, in parameter order, each of its parameter's dtype and shape.
 * Parameters the output does not depend on get zeros. Only nodes on a path
 * from a differentiated parameter to the output get backward nodes. */
ldmc_status ldmc_grad(const ldmc_graph *g, const ldmc_grad_opts *o, ldmc_graph **out);

#endif
