/* Layout assignment for channels-last targets, and transpose sinking.
 *
 * layout: every NCHW convolution (input_dims {0,1,2..}, kernel_dims OIHW,
 * output_dims {0,1,2..}) becomes an NHWC one by changing its dim numbers:
 * transpose(x) to NHWC, weights to HWIO (a constant weight is repacked once,
 * here, at compile time; a parameter weight gets a transpose), and a transpose
 * of the result back to NCHW for the original users.
 *
 * sink-transposes: an elementwise op whose operands are transposes by one
 * permutation P (each used only there), splats, or broadcasts that stay
 * ordered under P, runs on the untransposed operands and is followed by one
 * transpose by P. Transposes so move down the graph until they meet the next
 * convolution's input transpose and cancel (simplify composes them). */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

static bool is_nchw_conv(const ldmc_node *n) {
  if (n->op != LDMC_OP_CONVOLUTION || n->shape.rank < 3) return false;
  const ldmc_attrs *a = &n->attrs;
  int r = n->shape.rank;
  if (a->input_dims.n != r || a->kernel_dims.n != r || a->output_dims.n != r) return false;
  for (int i = 0; i < r; i++)
    if (a->input_dims.v[i] != i || a->kernel_dims.v[i] != i || a->output_dims.v[i] != i) return false;
  return true;
}

static int32_t add_transpose(ldmc_rebuild *rb, int32_t x, int r, const int64_t *perm, const char *scope) {
  ldmc_attrs at = {0};
  at.dims.n = r;
  memcpy(at.dims.v, perm, (size_t)r * sizeof *perm);
  return ldmc_rebuild_add(rb, LDMC_OP_TRANSPOSE, rb->out->nodes[x].dtype, NULL, 1, &x, &at, scope);
}

/* A transposed copy of constant node c (in the new graph) as a new constant. */
static int32_t repack_constant(ldmc_rebuild *rb, int32_t c, int r, const int64_t *perm, const char *scope) {
  const ldmc_node *cn = &rb->out->nodes[c];
  ldmc_node t = {.op = LDMC_OP_TRANSPOSE, .dtype = cn->dtype, .shape = {.rank = r}, .n_operands = 1};
  t.attrs.dims.n = r;
  for (int i = 0; i < r; i++) {
    t.attrs.dims.v[i] = perm[i];
    t.shape.dims[i] = cn->shape.dims[perm[i]];
  }
  ldmc_tensor in = {.dtype = cn->dtype, .shape = cn->shape, .data = cn->attrs.value.data, .nbytes = cn->attrs.value.nbytes};
  ldmc_tensor out;
  if (ldmc_eval_node(&t, &in, &out) != LDMC_OK) return -1;
  ldmc_attrs at = {0};
  at.value.data = out.data;
  at.value.nbytes = out.nbytes;
  int32_t id = ldmc_graph_add(rb->out, LDMC_OP_CONSTANT, cn->dtype, &t.shape, 0, NULL, &at, scope);
  ldmc_tensor_release(&out);
  return id;
}

static bool run_layout(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  bool any = false;
  for (int32_t i = 0; i < g->n_nodes && !any; i++) any = is_nchw_conv(&g->nodes[i]);
  if (!any) return false;
  ldmc_rebuild rb;
  ldmc_status s = ldmc_rebuild_begin(&rb, g);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (!is_nchw_conv(n)) {
      if (ldmc_rebuild_copy(&rb, i) < 0) goto fail;
      continue;
    }
    int r = n->shape.rank;
    int64_t pin[LDMC_MAX_RANK], pw[LDMC_MAX_RANK], pout[LDMC_MAX_RANK];
    ldmc_attrs at = n->attrs;
    at.name = NULL;
    at.value = (ldmc_literal){0};
    pin[0] = 0;
    for (int d = 1; d < r - 1; d++) pin[d] = d + 1; /* N, spatial..., C */
    pin[r - 1] = 1;
    for (int d = 0; d < r - 2; d++) pw[d] = d + 2; /* spatial..., I, O */
    pw[r - 2] = 1;
    pw[r - 1] = 0;
    pout[0] = 0; /* NHWC -> NCHW */
    pout[1] = r - 1;
    for (int d = 2; d < r; d++) pout[d] = d - 1;
    at.input_dims.v[0] = at.output_dims.v[0] = 0;
    at.input_dims.v[1] = at.output_dims.v[1] = r - 1;
    at.kernel_dims.v[0] = r - 1;
    at.kernel_dims.v[1] = r - 2;
    for (int d = 2; d < r; d++) {
      at.input_dims.v[d] = at.output_dims.v[d] = d - 1;
      at.kernel_dims.v[d] = d - 2;
    }
    int32_t x = rb.map[n->operands[0]], w = rb.map[n->operands[1]];
    int32_t xt = add_transpose(&rb, x, r, pin, n->scope);
    int32_t wt = rb.out->nodes[w].op == LDMC_OP_CONSTANT ? repack_constant(&rb, w, r, pw, n->scope)
                                                         : add_transpose(&rb, w, r, pw, n->scope);
    if (xt < 0 || wt < 0) goto fail;
    int32_t ops[2] = {xt, wt};
    int32_t c = ldmc_rebuild_add(&rb, LDMC_OP_CONVOLUTION, n->dtype, NULL, 2, ops, &at, n->scope);
    if (c < 0) goto fail;
    int32_t y = add_transpose(&rb, c, r, pout, n->scope);
    if (y < 0) goto fail;
    rb.map[i] = y;
  }
  s = ldmc_rebuild_finish(&rb, g);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  return true;
fail:
  ldmc_error_prefix("layout: ");
  ldmc_rebuild_abort(&rb);
  return ldmc_pass_fail(ctx, LDMC_ERR_INVALID);
}

const ldmc_pass ldmc_pass_layout = {"layout", run_layout, 0};

/* ---- transpose sinking ---- */

/* How operand x of an elementwise op is rewritten when the op moves before the transpose P. */
typedef enum { OP_TRANSPOSE, OP_SPLAT, OP_BCAST } opkind;

/* Dims of broadcast x that carry data: operand dims of size > 1, with the
 * result dims they map to under perm (where they land before the transpose). */
static int bcast_data_dims(const ldmc_graph *g, const ldmc_node *x, const ldmc_ints *perm, int64_t *src, int64_t *dst) {
  const ldmc_node *in = &g->nodes[x->operands[0]];
  int k = 0;
  for (int j = 0; j < x->attrs.dims.n; j++) {
    if (in->shape.dims[j] == 1) continue;
    src[k] = j;
    dst[k++] = perm->v[x->attrs.dims.v[j]];
  }
  return k;
}

static bool sink_candidate(const ldmc_graph *g, const ldmc_users *u, int32_t i, ldmc_ints *perm) {
  const ldmc_node *n = &g->nodes[i];
  if (!(ldmc_op_table[n->op].flags & LDMC_OPF_ELEMENTWISE) || n->n_operands == 0 || n->n_operands > 8) return false;
  int r = n->shape.rank, nt = 0, sole = 0;
  perm->n = 0;
  for (int k = 0; k < n->n_operands; k++) {
    const ldmc_node *x = &g->nodes[n->operands[k]];
    if (x->op == LDMC_OP_TRANSPOSE) {
      if (perm->n == 0) *perm = x->attrs.dims;
      else if (memcmp(perm->v, x->attrs.dims.v, (size_t)r * sizeof perm->v[0]) != 0) return false;
      nt++;
      int first = k, uses = 0; /* the same transpose twice counts once; it dies if only this op uses it */
      for (int q = 0; q < n->n_operands; q++)
        if (n->operands[q] == n->operands[k]) {
          uses++;
          if (q < first) first = q;
        }
      if (first == k && ldmc_users_count(u, n->operands[k]) == uses && !u->is_output[n->operands[k]]) sole++;
    }
  }
  /* one transpose is added after the op: only worth it when one before it dies */
  if (nt == 0 || sole == 0) return false;
  for (int k = 0; k < n->n_operands; k++) {
    int32_t id = n->operands[k], sc;
    const ldmc_node *x = &g->nodes[id];
    if (x->op == LDMC_OP_TRANSPOSE) continue;
    if (ldmc_node_scalar_broadcast(g, id, &sc)) continue;
    if (x->op != LDMC_OP_BROADCAST_IN_DIM) return false;
    int64_t src[LDMC_MAX_RANK], dst[LDMC_MAX_RANK];
    int kd = bcast_data_dims(g, x, perm, src, dst);
    for (int j = 1; j < kd; j++)
      if (dst[j] <= dst[j - 1]) return false;
    /* only worth it when the broadcast operand is small (a bias, an embedding) */
    if (ldmc_node_numel(&g->nodes[x->operands[0]]) * 4 > ldmc_node_numel(x)) return false;
  }
  return true;
}

static bool run_sink(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  ldmc_users u;
  ldmc_status s = ldmc_users_build(g, &u);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  bool any = false;
  ldmc_ints perm;
  for (int32_t i = 0; i < g->n_nodes && !any; i++) any = sink_candidate(g, &u, i, &perm);
  if (!any) {
    ldmc_users_free(&u);
    return false;
  }
  ldmc_rebuild rb;
  s = ldmc_rebuild_begin(&rb, g);
  if (s != LDMC_OK) {
    ldmc_users_free(&u);
    return ldmc_pass_fail(ctx, s);
  }
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (!sink_candidate(g, &u, i, &perm)) {
      if (ldmc_rebuild_copy(&rb, i) < 0) goto fail;
      continue;
    }
    int r = n->shape.rank;
    ldmc_shape pre = {.rank = r};
    for (int d = 0; d < r; d++) pre.dims[perm.v[d]] = n->shape.dims[d];
    int32_t ops[8];
    for (int k = 0; k < n->n_operands; k++) {
      int32_t id = n->operands[k], sc;
      const ldmc_node *x = &g->nodes[id];
      ldmc_attrs at = {0};
      if (x->op == LDMC_OP_TRANSPOSE) {
        ops[k] = rb.map[x->operands[0]];
      } else if (ldmc_node_scalar_broadcast(g, id, &sc)) {
        int32_t scn = rb.map[sc];
        ops[k] = ldmc_rebuild_add(&rb, LDMC_OP_BROADCAST_IN_DIM, x->dtype, &pre, 1, &scn, &at, x->scope);
      } else { /* drop the operand's unit dims (a reshape), broadcast the rest into the pre-transpose shape */
        int64_t sd[LDMC_MAX_RANK], dd[LDMC_MAX_RANK];
        int kd = bcast_data_dims(g, x, &perm, sd, dd);
        const ldmc_node *in = &g->nodes[x->operands[0]];
        int32_t src = rb.map[x->operands[0]];
        if (kd != in->shape.rank) {
          ldmc_shape rs = {.rank = kd};
          for (int j = 0; j < kd; j++) rs.dims[j] = in->shape.dims[sd[j]];
          src = ldmc_rebuild_add(&rb, LDMC_OP_RESHAPE, x->dtype, &rs, 1, &src, NULL, x->scope);
          if (src < 0) goto fail;
        }
        at.dims.n = kd;
        memcpy(at.dims.v, dd, (size_t)kd * sizeof dd[0]);
        ops[k] = ldmc_rebuild_add(&rb, LDMC_OP_BROADCAST_IN_DIM, x->dtype, &pre, 1, &src, &at, x->scope);
      }
      if (ops[k] < 0) goto fail;
    }
    ldmc_attrs at = n->attrs;
    at.name = NULL;
    at.value = (ldmc_literal){0};
    int32_t e = ldmc_rebuild_add(&rb, n->op, n->dtype, &pre, n->n_operands, ops, &at, n->scope);
    if (e < 0) goto fail;
    int32_t t = add_transpose(&rb, e, r, perm.v, n->scope);
    if (t < 0) goto fail;
    rb.map[i] = t;
  }
  ldmc_users_free(&u);
  s = ldmc_rebuild_finish(&rb, g);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  return true;
fail:
  ldmc_users_free(&u);
  ldmc_error_prefix("sink-transposes: ");
  ldmc_rebuild_abort(&rb);
  return ldmc_pass_fail(ctx, LDMC_ERR_INVALID);
}

const ldmc_pass ldmc_pass_sink_transposes = {"sink-transposes", run_sink, 0};
