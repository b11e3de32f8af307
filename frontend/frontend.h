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
/* rng_uniform / rng_normal (op) of that type, keyed by an i64[] value */
ldmc_value ldmc_rng(ldmc_builder *b, ldmc_op op, ldmc_dtype dt, int rank, const int64_t *dims, ldmc_value key);
/* Data-parallel training (docs/distributed.md): this process computes rows
 * [rank B, (rank + 1) B) of a global batch of ranks x B rows. Loss graphs
 * draw their per-row noise with ldmc_rng_batch, so a shard's rows get the
 * noise the same rows get in one process's global batch. Process-wide;
 * default rank 0 of 1 (ldmc_rng_batch is then ldmc_rng). Set it around
 * building a training loss only. */
void ldmc_batch_shard_set(int rank, int ranks);
void ldmc_batch_shard_get(int *rank, int *ranks);
/* ldmc_rng over dims whose dims[0] is the local batch B: with ranks > 1 it
 * draws [ranks B, dims[1..]] and slices out this rank's rows. */
ldmc_value ldmc_rng_batch(ldmc_builder *b, ldmc_op op, ldmc_dtype dt, int rank, const int64_t *dims, ldmc_value key);

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
/* attention's backward (the attention VJP builds them; not differentiable):
 * the log-sum-exp of scale q k^T per query, [..., N]; dq [..., N, D] and
 * (dk | dv) [..., M, D + E] from q, k, v, the attention result's cotangent ct,
 * lse and delta = rowsum(ct * y) ([..., N]). Results, lse and delta are f32
 * (f64 for f64 q). */
ldmc_value ldmc_attention_lse(ldmc_builder *b, ldmc_value q, ldmc_value k, double scale);
ldmc_value ldmc_attention_grad_q(ldmc_builder *b, ldmc_value q, ldmc_value k, ldmc_value v, ldmc_value ct,
                                 ldmc_value lse, ldmc_value delta, double scale);
ldmc_value ldmc_attention_grad_kv(ldmc_builder *b, ldmc_value q, ldmc_value k, ldmc_value v, ldmc_value ct,
                                  ldmc_value lse, ldmc_value delta, double scale);

/* Copies graph g into the builder's graph (frontend/inline.c): g's parameter
 * i becomes bind[i] when bind and bind[i] >= 0 (same dtype and shape, else an
 * error), otherwise a new parameter named param_prefix + its name (NULL: the
 * name), created in g's order. Nodes keep their ops and attributes; their
 * scopes go under the builder's current scope. out (g->n_outputs entries, or
 * NULL) receives the values of g's outputs. */
ldmc_status ldmc_builder_inline(ldmc_builder *b, const ldmc_graph *g, const ldmc_value *bind, const char *param_prefix,
                                ldmc_value *out);

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

/* ---- training step graph (frontend/train_step.c; docs/training.md) ---- */
/* One training step as one graph: forward, loss, backward (ldmc_grad), global
 * gradient-norm clipping, AdamW as torch.optim.AdamW, optional EMA. Built of
 * ordinary ops, so every pass and backend runs it like any other graph. */
typedef struct ldmc_train_opts {
  const char *loss;      /* rank-0 float output that is minimized; NULL: the first output */
  int32_t n_data_params; /* the model's first N parameters are per-step data (batch, targets, keys): never trained */
  const char *wrt_regex; /* POSIX ERE picking the trained parameters among the float ones after the data (NULL:
                            all of them); the others are frozen inputs */
  /* AdamW; beta1 = beta2 = eps = 0 selects 0.9, 0.999, 1e-8. Decoupled decay:
   * p <- p (1 - lr wd), then the Adam update with bias correction. */
  double beta1, beta2, eps, weight_decay;
  double clip_norm; /* > 0: gradients scaled by min(1, clip_norm / (global L2 norm + 1e-6)) */
  double ema_decay; /* > 0: ema.P <- decay ema.P + (1 - decay) P, after the update */
  /* Trained bf16/f16 parameters enter as f32 master weights, converted to
   * their dtype where the model reads them: the model computes in its dtype,
   * the update is applied in f32. */
  bool master_f32;
  const char *frozen_regex; /* POSIX ERE: parameters it matches are frozen even where wrt_regex matches (NULL: none) */
  /* With ema_decay > 0: a frozen parameter of the model named ema.P, for a
   * trained P of its shape, is P's EMA state as it is before this step's
   * update (the step graph's ema.P feeds it; it is no parameter of its own):
   * how a consistency-distillation loss reads its EMA target network. Such
   * parameters are never trained. An ema.P without a trained P is an error. */
  bool ema_from_model;
} ldmc_train_opts;

/* Builds in *out the step graph of model. Parameters, in order:
 *   the N data parameters (as in model); lr f32[]; step f32[] (1-based step
 *   count, for the bias corrections 1 - beta^step); per trained parameter P,
 *   in model order: P, adam_m.P, adam_v.P, and ema.P when ema_decay > 0; then
 *   the frozen parameters (as in model), last so that compiling with
 *   params_are_weights and n_activation_params = 1 + the largest entry of
 *   ldmc_train_step_state_pairs treats exactly them as weights.
 * Outputs: loss (the model's loss output), grad_norm (global L2 norm of the
 * gradients before clipping), then per trained P: P, adam_m.P, adam_v.P,
 * [ema.P], each named, typed and shaped exactly as the parameter it replaces,
 * so a runtime can feed it back (or update that buffer in place).
 * Dtypes: P is the model's dtype, or f32 with master_f32 for bf16/f16; the
 * moments and EMA are f32 (f64 for f64 parameters), and so is the update
 * arithmetic; grad_norm is f32 (f64 if any trained parameter is f64); lr and
 * step are f32 whatever the model. The model's other outputs are dropped.
 * A first step takes adam_m = adam_v = 0, ema.P = P, step = 1.
 * Errors (LDMC_ERR_INVALID, message in ldmc_last_error, *out NULL): no such
 * or non-scalar loss, n_data_params out of range, nothing to train, a bad
 * option (betas and ema_decay in [0, 1), eps, weight_decay, clip_norm >= 0 and
 * finite), a name clash in the step graph; and whatever ldmc_grad reports. */
ldmc_status ldmc_train_step_build(const ldmc_graph *model, const ldmc_train_opts *o, ldmc_graph **out);

/* The same step in two graphs, for data-parallel training (the gradients
 * are all-reduced between them): *grads has the step graph's parameters
 * and outputs loss, then grad.P per trained P (in parameter order); *update
 * has parameters grad.P per trained P (f32 or f64, as the update computes),
 * lr, step, then P, adam_m.P, adam_v.P (, ema.P) per trained P, and outputs
 * grad_norm, then the state outputs as the step graph names them.
 * Fed the same gradients, the two compute what the fused step does. */
ldmc_status ldmc_train_step_build_split(const ldmc_graph *model, const ldmc_train_opts *o, ldmc_graph **grads,
                                        ldmc_graph **update);

/* The state pairing of a step graph (or any graph): out_to_in[i] (one entry
 * per output of step) is the index, in parameter (run input) order, of the
 * parameter named like output i, or -1 when none is (loss, grad_norm). An
 * output named like a parameter of another dtype or shape is an error
 * (LDMC_ERR_INVALID, naming both), as it cannot replace it. */
ldmc_status ldmc_train_step_state_pairs(const ldmc_graph *step, int32_t *out_to_in);

#endif
