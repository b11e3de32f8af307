/* Tiling: tile sizes per kernel from the target description. The working
 * set of a tile must fit the level it is blocked for: half of L2 for a CPU
 * (the other half streams), half of the scratchpad for an accelerator
 * (double buffering). Sizes along the vectorized dim are multiples of the
 * vector width in elements.
 *   contraction  {mt, nt, kt}: output rows x output cols x reduction depth of
 *                the (implicit) GEMM; convolution as M = N*spatial, N = Cout,
 *                K = Cin/groups * window. On a target with a GEMM microkernel
 *                (gemm_kc > 0: llvm-cpu) the GEMM and the blocks are the ones
 *                that backend runs (tile_gemm), plus its mr x nr register tile
 *                and whether a convolution's images fold into N (fold_images)
 *   attention    {br, bc}: query rows x key/value columns per block (flash style);
 *                attention_grad_kv: key rows x query rows per block
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

/* weight[i]: node i has the same value every run (parameters past the
 * activation ones, constants, and what derives only from them, rng excluded) */
static bool *mark_weights(const ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  bool *w = calloc((size_t)g->n_nodes + 1, 1);
  if (!w) return NULL;
  int32_t n_act = ctx->params_are_weights ? ctx->n_activation_params : INT32_MAX, param = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) w[i] = param++ >= n_act;
    else if (n->op == LDMC_OP_RNG_NORMAL || n->op == LDMC_OP_RNG_UNIFORM) w[i] = false;
    else {
      w[i] = true;
      for (int k = 0; k < n->n_operands && w[i]; k++) w[i] = w[n->operands[k]];
    }
  }
  return w;
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The GEMM llvm-cpu runs for a contraction core, per batch item: dot_general
 * M = lhs free, N = rhs free, K = contracted, nb = batch; convolution (an
 * implicit GEMM over NCHW) M = output channels per group, N = output
 * positions, K = input channels per group x window, nb = images x groups. */
static void kernel_gemm_dims(const ldmc_graph *g, const ldmc_node *n, int64_t *M, int64_t *N, int64_t *K,
                             int64_t *nb) {
  const ldmc_node *l = &g->nodes[n->operands[0]], *r = &g->nodes[n->operands[1]];
  const ldmc_attrs *a = &n->attrs;
  *M = *N = *K = *nb = 1;
  if (n->op == LDMC_OP_DOT_GENERAL) {
    for (int k = 0; k < a->lhs_batch.n; k++) *nb *= l->shape.dims[a->lhs_batch.v[k]];
    for (int k = 0; k < a->lhs_contract.n; k++) *K *= l->shape.dims[a->lhs_contract.v[k]];
    *M = ldmc_node_numel(l) / max64(1, *K * *nb);
    *N = ldmc_node_numel(r) / max64(1, *K * *nb);
    return;
  }
  int64_t G = a->groups > 0 ? a->groups : 1;
  *nb = n->shape.dims[a->output_dims.v[0]] * G;
  *M = n->shape.dims[a->output_dims.v[1]] / G;
  *N = ldmc_node_numel(n) / max64(1, *nb * *M);
  *K = l->shape.dims[a->input_dims.v[1]] / G;
  for (int s = 2; s < r->shape.rank; s++) *K *= r->shape.dims[a->kernel_dims.v[s]];
}

/* A target with a GEMM microkernel: mt rows (a multiple of mr) x nt columns
 * (a multiple of nr, at most nc) x kt depth (at most kc), split until every
 * thread has 4 tiles. Splitting rows packs B once more per row block (free
 * for prepacked weights); splitting columns reads A once more, cheap unless A
 * streams from memory; packing costs about twice a read, so columns are
 * halved while mt < 2 nt (down to 4 panels), then rows. */
/* A convolution with few output positions per image (a weight gradient:
 * kh x kw of them; deep levels of small latents) leaves most of every nr-wide
 * column panel empty; folding the images into the GEMM's columns (N = images
 * x positions, the packing reads each column's image) fills them. Only for a
 * convolution alone in its kernel (the folded result is [m][image, position],
 * copied into place: no epilogue) and without lhs dilation (those run by
 * output phase). */
static bool fold_images(const ldmc_graph *g, const ldmc_node *core, const ldmc_kernel *kr, int64_t nr) {
  if (core->op != LDMC_OP_CONVOLUTION || &g->nodes[kr->root] != core) return false;
  const ldmc_attrs *a = &core->attrs;
  for (int j = 0; j < a->lhs_dilation.n; j++)
    if (a->lhs_dilation.v[j] != 1) return false;
  int64_t M, N, K, nb, images = core->shape.dims[a->output_dims.v[0]];
  kernel_gemm_dims(g, core, &M, &N, &K, &nb);
  return images > 1 && N % nr != 0 && N < 4 * nr;
}

static void tile_gemm(const ldmc_graph *g, const ldmc_target *t, const bool *weight, const ldmc_node *core,
                      ldmc_kernel *kr) {
  int64_t M, N, K, nb;
  kernel_gemm_dims(g, core, &M, &N, &K, &nb);
  int64_t mr = t->gemm_mr, nr = t->gemm_nr;
  kr->fold_images = fold_images(g, core, kr, nr);
  if (kr->fold_images) {
    int64_t images = core->shape.dims[core->attrs.output_dims.v[0]];
    N *= images;
    nb /= images;
  }
  int64_t nt = min64(round_up(max64(N, 1), nr), t->gemm_nc), mt = round_up(max64(M, 1), mr);
  int64_t kt = min64(t->gemm_kc, round_up(max64(K, 1), 2)); /* even: bf16 packs k in pairs */
  int64_t want = 4 * (int64_t)(t->threads > 0 ? t->threads : 1);
  bool b_pre = core->op == LDMC_OP_DOT_GENERAL && K > 0 && weight && weight[core->operands[1]];
  bool a_big = (double)M * (double)K * (double)ldmc_dtype_size(core->dtype) > 8e6;
  while (nb * cdiv(M, mt) * cdiv(N, nt) < want) {
    bool can_n = !b_pre && nt > 4 * nr, can_m = mt > 4 * mr;
    if (can_n && (!can_m || (!a_big && mt < 2 * nt))) nt = round_up(nt / 2, nr);
    else if (can_m) mt = round_up(mt / 2, mr);
    else break;
  }
  if (mt > 64 * mr) mt = 64 * mr; /* bounds B repacking against A reuse */
  kr->n_tile = 3;
  kr->tile[0] = mt;
  kr->tile[1] = nt;
  kr->tile[2] = kt;
  kr->reg_tile[0] = mr;
  kr->reg_tile[1] = nr;
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

static bool is_attention(ldmc_op op) {
  return op == LDMC_OP_ATTENTION || op == LDMC_OP_ATTENTION_LSE || op == LDMC_OP_ATTENTION_GRAD_Q ||
         op == LDMC_OP_ATTENTION_GRAD_KV;
}

/* llvm-cpu's flash attention kernels: one vector of result rows per tile
 * (queries; keys for attention_grad_kv) against blocks of the other side's
 * rows: 16 with 512-bit vectors (16 scores and 16 probabilities in
 * registers), 8 below; the backward ops hold the scores and dP = ct v^T
 * together, so half as many. */
static void tile_attention_lanes(const ldmc_target *t, const ldmc_node *core, ldmc_kernel *kr) {
  bool grad = core->op == LDMC_OP_ATTENTION_GRAD_Q || core->op == LDMC_OP_ATTENTION_GRAD_KV;
  kr->n_tile = 2;
  kr->tile[0] = max64(1, t->vector_bytes / 4);
  kr->tile[1] = (t->vector_bytes >= 64 ? 16 : 8) / (grad ? 2 : 1);
}

/* {br, bc}: result rows (queries; keys for attention_grad_kv) x the other side's rows per block */
static void tile_attention(const ldmc_graph *g, const ldmc_target *t, const ldmc_node *n, ldmc_kernel *kr) {
  const ldmc_node *q = &g->nodes[n->operands[0]], *k = &g->nodes[n->operands[1]];
  int r = q->shape.rank;
  int64_t Nq = q->shape.dims[r - 2], D = q->shape.dims[r - 1], Mk = k->shape.dims[r - 2];
  if (n->op == LDMC_OP_ATTENTION_GRAD_KV) Nq = Mk, Mk = q->shape.dims[r - 2];
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
  bool *weight = t->gemm_kc > 0 ? mark_weights(g, ctx) : NULL;
  if (t->gemm_kc > 0 && !weight) return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_NOMEM, "tiling: out of memory"));
  for (int32_t k = 0; k < p->n_kernels; k++) {
    ldmc_kernel *kr = &p->kernels[k];
    const ldmc_node *core = NULL;
    for (int32_t j = 0; j < kr->n_nodes && !core; j++) {
      ldmc_op op = g->nodes[kr->nodes[j]].op;
      if (op == LDMC_OP_DOT_GENERAL || op == LDMC_OP_CONVOLUTION || is_attention(op) || op == LDMC_OP_GROUP_NORM ||
          op == LDMC_OP_LAYER_NORM)
        core = &g->nodes[kr->nodes[j]];
    }
    kr->n_tile = 0;
    kr->reg_tile[0] = kr->reg_tile[1] = 0;
    kr->fold_images = false;
    switch (kr->kind) {
      case LDMC_KERNEL_PREPACK: /* weights only, run when bound: its core still needs its blocks */
        if (core && is_attention(core->op) && t->gemm_kc > 0) {
          tile_attention_lanes(t, core, kr);
          break;
        }
        if (!core || (core->op != LDMC_OP_DOT_GENERAL && core->op != LDMC_OP_CONVOLUTION)) {
          if (t->gemm_kc == 0) tile_loop(g, t, kr);
          break;
        }
        /* fall through */
      case LDMC_KERNEL_CONTRACTION:
        if (core && t->gemm_kc > 0 && ldmc_dtype_is_float(core->dtype)) tile_gemm(g, t, weight, core, kr);
        else if (core) tile_contraction(g, t, core, kr);
        break;
      case LDMC_KERNEL_ATTENTION:
        if (core && t->gemm_kc > 0) tile_attention_lanes(t, core, kr);
        else if (core) tile_attention(g, t, core, kr);
        break;
      case LDMC_KERNEL_ALIAS: break;
      /* llvm-cpu splits loops and norms by its own work rule, read from no
       * plan: no tile is claimed for them there */
      case LDMC_KERNEL_NORM: if (core && t->gemm_kc == 0) tile_norm(t, core, kr); break;
      default: if (t->gemm_kc == 0) tile_loop(g, t, kr); break;
    }
  }
  free(weight);
  return true;
}

const ldmc_pass ldmc_pass_tiling = {"tiling", run_tiling, LDMC_PASS_PLAN};
