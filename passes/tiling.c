/* Tiling: tile sizes per kernel from the target description. The working
 * set of a tile must fit the level it is blocked for: half of L2 for a CPU
 * (the other half streams), half of the scratchpad for an accelerator
 * (double buffering). Sizes along the vectorized dim are multiples of the
 * vector width in elements.
 *   contraction  {mt, nt, kt}: output rows x output cols x reduction depth of
 *                the (implicit) GEMM; convolution as M = N*spatial, N = Cout,
 *                K = Cin/groups * window
 *   attention    {br, bc}: query rows x key/value columns per block (flash style)
 *   norm         {rows, cols}: rows of the normalized set per block x its length
 *   elementwise, reduction, copy  {elems}: elements per block
 *   alias        none */
#include <stdlib.h>

#include "passes/pass_util.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int64_t round_down(int64_t x, int64_t m) { return x < m ? x : x / m * m; }

static int64_t budget(const ldmc_target *t) {
  if (t->scratchpad_bytes > 0) return t->scratchpad_bytes / 2;
  if (t->l2_bytes > 0) return t->l2_bytes / 2;
  return 256 << 10;
}

static int64_t lanes(const ldmc_target *t, size_t es) {
  int64_t l = t->vector_bytes > 0 ? t->vector_bytes / (int64_t)(es ? es : 4) : 1;
  return l > 0 ? l : 1;
}

/* M, N, K of the GEMM a contraction core performs. */
static void gemm_dims(const ldmc_graph *g, const ldmc_node *n, int64_t *M, int64_t *N, int64_t *K) {
  const ldmc_node *l = &g->nodes[n->operands[0]], *r = &g->nodes[n->operands[1]];
  *M = *N = *K = 1;
  if (n->op == LDMC_OP_DOT_GENERAL) {
    const ldmc_attrs *a = &n->attrs;
    for (int k = 0; k < a->lhs_contract.n; k++) *K *= l->shape.dims[a->lhs_contract.v[k]];
    int64_t lfree = ldmc_node_numel(l), rfree = ldmc_node_numel(r), batch = 1;
    for (int k = 0; k < a->lhs_batch.n; k++) batch *= l->shape.dims[a->lhs_batch.v[k]];
    int64_t den_l = max64(1, *K * batch), den_r = den_l;
    *M = max64(1, lfree / den_l) * batch;
    *N = max64(1, rfree / den_r);
    return;
  }
  const ldmc_attrs *a = &n->attrs; /* convolution */
  int64_t groups = a->groups > 0 ? a->groups : 1;
  *N = n->shape.dims[a->output_dims.v[1]];
  *M = ldmc_node_numel(n) / max64(1, *N);
  *K = l->shape.dims[a->input_dims.v[1]] / groups;
  for (int s = 2; s < r->shape.rank; s++) *K *= r->shape.dims[a->kernel_dims.v[s]];
}

static void tile_contraction(const ldmc_graph *g, const ldmc_target *t, const ldmc_node *core, ldmc_kernel *kr) {
  int64_t M, N, K;
  gemm_dims(g, core, &M, &N, &K);
  size_t es = ldmc_dtype_size(core->dtype);
  int64_t L = lanes(t, es), B = budget(t) / (int64_t)es;
  /* kt x nt panel of the right operand in L1 (or a quarter of the budget) */
  int64_t l1 = t->l1_bytes > 0 && t->scratchpad_bytes == 0 ? t->l1_bytes / (int64_t)es / 2 : B / 4;
  int64_t kt = min64(K, 256);
  int64_t nt = min64(N, max64(L, round_down(l1 / max64(1, kt), L)));
  /* mt rows of the left operand plus the mt x nt accumulators in the rest */
  int64_t mt = (B - kt * nt) / max64(1, kt + nt);
  mt = min64(M, max64(1, round_down(mt, 8)));
  kr->n_tile = 3;
  kr->tile[0] = mt;
  kr->tile[1] = nt;
  kr->tile[2] = kt;
}

static void tile_attention(const ldmc_graph *g, const ldmc_target *t, const ldmc_node *n, ldmc_kernel *kr) {
  const ldmc_node *q = &g->nodes[n->operands[0]], *k = &g->nodes[n->operands[1]];
  int r = q->shape.rank;
  int64_t Nq = q->shape.dims[r - 2], D = q->shape.dims[r - 1], Mk = k->shape.dims[r - 2];
  size_t es = ldmc_dtype_size(n->dtype);
  int64_t B = budget(t) / (int64_t)es, L = lanes(t, es);
  /* br*D (q) + 2*bc*D (k, v) + br*bc (scores) + br*D (acc) <= B, square-ish blocks */
  int64_t bc = min64(Mk, max64(L, round_down(B / max64(1, 4 * D + 64), L)));
  int64_t br = (B - 2 * bc * D) / max64(1, 2 * D + bc);
  br = min64(Nq, max64(1, round_down(br, 8)));
  kr->n_tile = 2;
  kr->tile[0] = br;
  kr->tile[1] = bc;
}

static void tile_norm(const ldmc_target *t, const ldmc_node *n, ldmc_kernel *kr) {
  int64_t len = 1, rows;
  if (n->op == LDMC_OP_GROUP_NORM) {
    int64_t G = n->attrs.groups > 0 ? n->attrs.groups : 1;
    len = ldmc_node_numel(n) / max64(1, n->shape.dims[0] * G);
    rows = n->shape.dims[0] * G;
  } else {
    for (int d = (int)n->attrs.axis; d < n->shape.rank; d++) len *= n->shape.dims[d];
    rows = ldmc_node_numel(n) / max64(1, len);
  }
  int64_t B = budget(t) / (int64_t)ldmc_dtype_size(n->dtype);
  kr->n_tile = 2;
  kr->tile[0] = min64(rows, max64(1, B / max64(1, len)));
  kr->tile[1] = len;
}

static void tile_loop(const ldmc_graph *g, const ldmc_target *t, ldmc_kernel *kr) {
  const ldmc_node *root = &g->nodes[kr->root];
  size_t es = ldmc_dtype_size(root->dtype);
  int64_t streams = kr->n_inputs + 1, L = lanes(t, es);
  int64_t e = budget(t) / (int64_t)es / max64(1, streams);
  kr->n_tile = 1;
  kr->tile[0] = min64(ldmc_node_numel(root), max64(L, round_down(e, L)));
}

static bool run_tiling(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  ldmc_plan *p = ctx ? ctx->plan : NULL;
  if (!p || !p->kernel_of || p->n_nodes != g->n_nodes)
    return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_INVALID, "tiling: needs the fusion plan of this graph"));
  static const ldmc_target none = {.name = "none", .vector_bytes = 16, .l1_bytes = 32 << 10, .l2_bytes = 512 << 10};
  const ldmc_target *t = ctx->target ? ctx->target : &none;
  for (int32_t k = 0; k < p->n_kernels; k++) {
    ldmc_kernel *kr = &p->kernels[k];
    const ldmc_node *core = NULL;
    for (int32_t j = 0; j < kr->n_nodes && !core; j++) {
      ldmc_op op = g->nodes[kr->nodes[j]].op;
      if (op == LDMC_OP_DOT_GENERAL || op == LDMC_OP_CONVOLUTION || op == LDMC_OP_ATTENTION ||
          op == LDMC_OP_GROUP_NORM || op == LDMC_OP_LAYER_NORM)
        core = &g->nodes[kr->nodes[j]];
    }
    kr->n_tile = 0;
    switch (kr->kind) {
      case LDMC_KERNEL_CONTRACTION: if (core) tile_contraction(g, t, core, kr); break;
      case LDMC_KERNEL_ATTENTION: if (core) tile_attention(g, t, core, kr); break;
      case LDMC_KERNEL_NORM: if (core) tile_norm(t, core, kr); break;
      case LDMC_KERNEL_ALIAS: break;
      default: tile_loop(g, t, kr); break;
    }
  }
  return true;
}

const ldmc_pass ldmc_pass_tiling = {"tiling", run_tiling, LDMC_PASS_PLAN};
