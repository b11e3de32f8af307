/* Helpers shared by the passes (passes-internal): use counts and user lists,
 * forwarding replaced nodes, compaction, rebuilding a graph through a node
 * remapping, splat detection, attribute equality and hashing. */
#ifndef LDMC_PASSES_PASS_UTIL_H
#define LDMC_PASSES_PASS_UTIL_H

#include "passes/passes.h"

/* Records a failure for the pipeline; returns false so passes can
 * `return ldmc_pass_fail(ctx, ldmc_error(...));`. */
bool ldmc_pass_fail(const ldmc_pass_ctx *ctx, ldmc_status s);

/* Bytes of a node's result (0 on overflow or bad shape). */
int64_t ldmc_node_bytes(const ldmc_node *n);
int64_t ldmc_node_numel(const ldmc_node *n);

/* Users of every node as CSR: users of i are list[start[i] .. start[i+1]).
 * A node using i twice appears twice. is_output[i] marks graph outputs. */
typedef struct ldmc_users {
  int32_t *start;
  int32_t *list;
  bool *is_output;
} ldmc_users;
ldmc_status ldmc_users_build(const ldmc_graph *g, ldmc_users *u);
void ldmc_users_free(ldmc_users *u);
static inline int32_t ldmc_users_count(const ldmc_users *u, int32_t i) { return u->start[i + 1] - u->start[i]; }

/* repl[i] names the node that replaces i (repl[i] <= i; repl[i] == i keeps it).
 * Rewrites every operand and output through repl (chains resolved). Returns
 * whether anything changed. */
bool ldmc_graph_forward(ldmc_graph *g, int32_t *repl);

/* Removes nodes with keep[i] false (nobody may use them), renumbering the rest.
 * If map is given it receives old id -> new id (-1 for removed). */
ldmc_status ldmc_graph_compact(ldmc_graph *g, const bool *keep, int32_t *map);

/* Moves the contents of src into dst (dst's old contents are freed) and frees
 * src's shell. */
void ldmc_graph_take(ldmc_graph *dst, ldmc_graph *src);

/* Rebuilding: walk the old graph in order, emitting nodes into a new one;
 * map[old] holds the new id of each old node emitted so far. */
typedef struct ldmc_rebuild {
  const ldmc_graph *in;
  ldmc_graph *out;
  int32_t *map;
} ldmc_rebuild;
ldmc_status ldmc_rebuild_begin(ldmc_rebuild *rb, const ldmc_graph *in);
/* Copies old node id with its operands remapped; returns the new id or -1. */
int32_t ldmc_rebuild_copy(ldmc_rebuild *rb, int32_t id);
/* Adds a new node (operands are NEW ids), type inferred; -1 on error. */
int32_t ldmc_rebuild_add(ldmc_rebuild *rb, ldmc_op op, ldmc_dtype dt, const ldmc_shape *shape, int n,
                         const int32_t *operands, const ldmc_attrs *attrs, const char *scope);
/* Remaps the outputs and replaces *g by the new graph (on success). */
ldmc_status ldmc_rebuild_finish(ldmc_rebuild *rb, ldmc_graph *g);
void ldmc_rebuild_abort(ldmc_rebuild *rb);

/* True if node id is a constant whose elements all equal one value, or a
 * broadcast_in_dim / reshape / transpose / convert of one; *v gets the value. */
bool ldmc_node_splat(const ldmc_graph *g, int32_t id, double *v);
/* True if node id is a rank-0 constant or a chain of broadcast_in_dim /
 * reshape / transpose of one (a scalar spread over a shape); *scalar gets the
 * rank-0 constant's id. */
bool ldmc_node_scalar_broadcast(const ldmc_graph *g, int32_t id, int32_t *scalar);

/* Attribute equality / hash over the fields the op uses. */
bool ldmc_attrs_equal(ldmc_op op, const ldmc_attrs *a, const ldmc_attrs *b);
uint64_t ldmc_attrs_hash(ldmc_op op, const ldmc_attrs *a);

/* Turns node id into a constant holding data (nbytes, copied); operands dropped. */
ldmc_status ldmc_node_make_constant(ldmc_node *n, const void *data, size_t nbytes);
/* Replaces node id's op and operands in place (attrs reset to *attrs, copied). */
ldmc_status ldmc_node_reset(ldmc_node *n, ldmc_op op, int n_operands, const int32_t *operands, const ldmc_attrs *attrs);

/* Identity permutation test and composition helpers. */
bool ldmc_perm_is_identity(const ldmc_ints *p);

/* Node value evaluation for constant folding and the plan simulator
 * (passes/eval.c). in[] are the operand values; out is allocated. Returns
 * LDMC_ERR_UNSUPPORTED for ops it does not evaluate. */
ldmc_status ldmc_eval_node(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out);
bool ldmc_eval_supported(ldmc_op op);

/* Growable text buffer for the printers (dump, plan). A failed allocation sets
 * oom and later appends do nothing; the caller frees s. */
typedef struct ldmc_textbuf {
  char *s;
  size_t n, cap;
  bool oom;
} ldmc_textbuf;
void ldmc_textbuf_printf(ldmc_textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
