/* Fusion: groups nodes into kernels, decided here at compile time.
 *
 * Nodes are visited from last to first; a producer joins the kernel of its
 * consumers when every user is in that one kernel, it is not a graph output,
 * and the pair is legal:
 *   - loop-fusible ops (elementwise, convert, broadcast_in_dim, reshape,
 *     transpose, slice, iota, upsample_nearest, and a gather that reverses an
 *     axis: a convolution's flipped kernel) join elementwise and reduction
 *     loops, and the epilogue (never the core operands) of contraction, norm
 *     and attention kernels;
 *   - a core op (dot_general, convolution, group_norm, layer_norm, reduce,
 *     softmax, attention and its backward ops) joins an elementwise kernel as its core when every
 *     node of that kernel depending on it is an index-preserving elementwise
 *     op of the same element count (or a reshape, or a transpose followed
 *     only by reshapes and transposes: a permuted store): bias, activation, residual and
 *     scale epilogues, group_norm + silu;
 *   - one core per kernel; copies (concatenate, pad, gather, scatter_add) and
 *     rng stay alone;
 *   - a kernel reads at most the target's max_kernel_inputs values (a long
 *     chain of gradient accumulations is split into several kernels).
 * Parameters, constants and splats (a broadcast of a rank-0 constant) belong
 * to no kernel: kernels read them as inputs (splats as their scalar). Nodes
 * that read only weights (ctx->params_are_weights) and constants are prepack
 * kernels, run once at load. A faithful target gets one kernel per node. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

typedef struct group {
  ldmc_kernel_kind kind;
  int32_t core;  /* the core op's node, -1 for loops */
  int32_t root;
  int32_t n, cap;
  int32_t *nodes;
} group;

typedef struct fuse {
  const ldmc_graph *g;
  ldmc_users u;
  int32_t *group_of; /* -1: no kernel */
  group *groups;
  int32_t n_groups;
  bool *mark;        /* scratch for the epilogue walk */
  int32_t *stack;
  bool *weight;      /* value is the same every run: weights, constants and what only they feed */
  int32_t *stamp;    /* scratch for counting a kernel's inputs */
  int32_t cur_stamp;
  int max_inputs;    /* the target's limit on values one kernel reads (0: none) */
} fuse;

static bool loop_fusible(ldmc_op op) {
  if (ldmc_op_table[op].flags & LDMC_OPF_ELEMENTWISE) return true;
  switch (op) {
    case LDMC_OP_BROADCAST_IN_DIM: case LDMC_OP_RESHAPE: case LDMC_OP_TRANSPOSE: case LDMC_OP_SLICE:
    case LDMC_OP_IOTA: case LDMC_OP_UPSAMPLE_NEAREST:
      return true;
    default:
      return false;
  }
}

static ldmc_kernel_kind seed_kind(ldmc_op op) {
  switch (op) {
    case LDMC_OP_DOT_GENERAL: case LDMC_OP_CONVOLUTION: return LDMC_KERNEL_CONTRACTION;
    case LDMC_OP_GROUP_NORM: case LDMC_OP_LAYER_NORM: return LDMC_KERNEL_NORM;
    case LDMC_OP_REDUCE: case LDMC_OP_SOFTMAX: return LDMC_KERNEL_REDUCTION;
    case LDMC_OP_ATTENTION: case LDMC_OP_ATTENTION_LSE: case LDMC_OP_ATTENTION_GRAD_Q: case LDMC_OP_ATTENTION_GRAD_KV:
      return LDMC_KERNEL_ATTENTION;
    case LDMC_OP_CONCATENATE: case LDMC_OP_PAD: case LDMC_OP_GATHER: case LDMC_OP_SCATTER_ADD: return LDMC_KERNEL_COPY;
    default: return loop_fusible(op) ? LDMC_KERNEL_ELEMENTWISE : LDMC_KERNEL_OPAQUE;
  }
}

static bool is_core_kind(ldmc_kernel_kind k) {
  return k == LDMC_KERNEL_CONTRACTION || k == LDMC_KERNEL_NORM || k == LDMC_KERNEL_REDUCTION ||
         k == LDMC_KERNEL_ATTENTION;
}

static bool is_splat(const ldmc_graph *g, int32_t i) {
  int32_t sc;
  return g->nodes[i].op != LDMC_OP_CONSTANT && ldmc_node_scalar_broadcast(g, i, &sc);
}

static bool group_push(group *gr, int32_t id) {
  if (gr->n == gr->cap) {
    int32_t cap = gr->cap ? gr->cap * 2 : 4;
    int32_t *p = realloc(gr->nodes, (size_t)cap * sizeof *p);
    if (!p) return false;
    gr->nodes = p;
    gr->cap = cap;
  }
  gr->nodes[gr->n++] = id;
  return true;
}

/* From y to kernel k's root there are only reshapes and transposes, one path. */
static bool movement_to_root(const fuse *f, int32_t y, int32_t k) {
  while (y != f->groups[k].root) {
    if (ldmc_users_count(&f->u, y) != 1 || f->u.is_output[y]) return false;
    y = f->u.list[f->u.start[y]];
    ldmc_op op = f->g->nodes[y].op;
    if (f->group_of[y] != k || (op != LDMC_OP_RESHAPE && op != LDMC_OP_TRANSPOSE)) return false;
  }
  return true;
}

/* Every node of kernel k that depends on p (through k's own nodes) is an
 * index-preserving elementwise op with p's element count. */
static bool epilogue_ok(fuse *f, int32_t p, int32_t k) {
  int64_t numel = ldmc_node_numel(&f->g->nodes[p]);
  int32_t sp = 0;
  bool ok = true;
  f->stack[sp++] = p;
  int32_t visited_n = 0;
  int32_t *visited = f->stack + f->g->n_nodes; /* second half of the scratch */
  while (sp > 0 && ok) {
    int32_t x = f->stack[--sp];
    for (int32_t j = f->u.start[x]; j < f->u.start[x + 1] && ok; j++) {
      int32_t y = f->u.list[j];
      if (f->group_of[y] != k || f->mark[y]) continue;
      f->mark[y] = true;
      visited[visited_n++] = y;
      const ldmc_node *yn = &f->g->nodes[y];
      bool ew = (ldmc_op_table[yn->op].flags & LDMC_OPF_ELEMENTWISE) || yn->op == LDMC_OP_RESHAPE;
      /* a transpose followed only by reshapes/transposes to the root is a permuted store */
      bool store = yn->op == LDMC_OP_TRANSPOSE && movement_to_root(f, y, k);
      if (!(ew || store) || ldmc_node_numel(yn) != numel) ok = false;
      else f->stack[sp++] = y;
    }
  }
  for (int32_t i = 0; i < visited_n; i++) f->mark[visited[i]] = false;
  return ok;
}

/* Distinct values kernel k would read from outside with p joined. */
static int count_inputs(fuse *f, int32_t p, int32_t k) {
  const group *K = &f->groups[k];
  int32_t s = ++f->cur_stamp, n = 0;
  for (int32_t j = 0; j <= K->n; j++) {
    const ldmc_node *x = &f->g->nodes[j < K->n ? K->nodes[j] : p];
    for (int o = 0; o < x->n_operands; o++) {
      int32_t v = x->operands[o];
      if (v == p || f->group_of[v] == k || f->stamp[v] == s) continue;
      f->stamp[v] = s;
      n++;
    }
  }
  return n;
}

/* A node's kind when it seeds a kernel: a reversing gather is a view. */
static ldmc_kernel_kind node_kind(const ldmc_graph *g, int32_t i) {
  return ldmc_node_reverse_axis(g, i) >= 0 ? LDMC_KERNEL_ELEMENTWISE : seed_kind(g->nodes[i].op);
}

/* Whether producer p (alone in its group) may join kernel k. */
static bool may_join(fuse *f, int32_t p, int32_t k) {
  const group *K = &f->groups[k];
  if (f->max_inputs > 0 && count_inputs(f, p, k) > f->max_inputs) return false; /* the backend could not run it */
  ldmc_kernel_kind pk = node_kind(f->g, p);
  if (K->kind == LDMC_KERNEL_COPY || K->kind == LDMC_KERNEL_OPAQUE || K->kind == LDMC_KERNEL_ALIAS ||
      K->kind == LDMC_KERNEL_PREPACK)
    return false;
  if (pk == LDMC_KERNEL_ELEMENTWISE) {
    if (K->kind == LDMC_KERNEL_ELEMENTWISE || K->kind == LDMC_KERNEL_REDUCTION) return true;
    /* contraction / norm / attention: only into the epilogue */
    for (int32_t j = f->u.start[p]; j < f->u.start[p + 1]; j++)
      if (f->u.list[j] == K->core) return false;
    return true;
  }
  if (is_core_kind(pk) && K->kind == LDMC_KERNEL_ELEMENTWISE) return epilogue_ok(f, p, k);
  return false;
}

static ldmc_status build_groups(fuse *f, bool faithful, const ldmc_pass_ctx *ctx) {
  const ldmc_graph *g = f->g;
  int32_t param_index = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    f->group_of[i] = -1;
    if (n->op == LDMC_OP_PARAMETER) {
      f->weight[i] = ctx->params_are_weights && param_index++ >= ctx->n_activation_params;
      continue;
    }
    if (n->op == LDMC_OP_CONSTANT) {
      f->weight[i] = true;
      continue;
    }
    /* prepack only what does not grow: relayouts, reshapes, converts, small math on weights;
       a broadcast of a bias stays a cheap index map fused into its consumer */
    bool w = n->n_operands > 0 && !faithful && n->op != LDMC_OP_BROADCAST_IN_DIM;
    int64_t biggest = 0;
    for (int k = 0; k < n->n_operands && w; k++) {
      w = f->weight[n->operands[k]];
      int64_t e = ldmc_node_numel(&g->nodes[n->operands[k]]);
      if (e > biggest) biggest = e;
    }
    w = w && ldmc_node_numel(n) <= biggest;
    f->weight[i] = w;
    if (!faithful && is_splat(g, i)) continue;
    group *gr = &f->groups[f->n_groups];
    gr->kind = w ? LDMC_KERNEL_PREPACK : node_kind(g, i);
    gr->core = is_core_kind(gr->kind) ? i : -1;
    gr->root = i;
    if (!group_push(gr, i)) return ldmc_error(LDMC_ERR_NOMEM, "fusion: out of memory");
    f->group_of[i] = f->n_groups++;
  }
  if (faithful) return LDMC_OK;
  for (int32_t p = g->n_nodes - 1; p >= 0; p--) {
    int32_t gp = f->group_of[p];
    if (gp < 0 || f->weight[p] || f->u.is_output[p] || ldmc_users_count(&f->u, p) == 0) continue;
    int32_t k = f->group_of[f->u.list[f->u.start[p]]];
    bool same = k >= 0;
    for (int32_t j = f->u.start[p]; j < f->u.start[p + 1] && same; j++) same = f->group_of[f->u.list[j]] == k;
    if (!same || k == gp || !may_join(f, p, k)) continue;
    group *K = &f->groups[k];
    ldmc_kernel_kind pk = f->groups[gp].kind;
    if (!group_push(K, p)) return ldmc_error(LDMC_ERR_NOMEM, "fusion: out of memory");
    if (is_core_kind(pk)) {
      K->kind = pk;
      K->core = p;
    }
    f->groups[gp].n = 0;
    f->group_of[p] = k;
  }
  return LDMC_OK;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* Loops that only move data are copies; a lone reshape is an alias. */
static ldmc_kernel_kind final_kind(const ldmc_graph *g, const group *gr) {
  if (gr->kind != LDMC_KERNEL_ELEMENTWISE) return gr->kind;
  if (gr->n == 1 && g->nodes[gr->nodes[0]].op == LDMC_OP_RESHAPE) return LDMC_KERNEL_ALIAS;
  for (int32_t j = 0; j < gr->n; j++) {
    ldmc_op op = g->nodes[gr->nodes[j]].op;
    if ((ldmc_op_table[op].flags & LDMC_OPF_ELEMENTWISE) || op == LDMC_OP_IOTA) return LDMC_KERNEL_ELEMENTWISE;
  }
  return LDMC_KERNEL_COPY;
}

static bool run_fusion(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  ldmc_plan *plan = ctx ? ctx->plan : NULL;
  if (!plan) return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_INVALID, "fusion: no plan to write"));
  ldmc_plan_reset(plan);
  fuse f = {.g = g};
  ldmc_status s = ldmc_users_build(g, &f.u);
  if (s != LDMC_OK) return ldmc_pass_fail(ctx, s);
  size_t n = (size_t)g->n_nodes + 1;
  f.group_of = malloc(n * sizeof *f.group_of);
  f.groups = calloc(n, sizeof *f.groups);
  f.mark = calloc(n, sizeof *f.mark);
  f.stack = malloc(2 * n * sizeof *f.stack);
  f.weight = calloc(n, sizeof *f.weight);
  f.stamp = calloc(n, sizeof *f.stamp);
  f.max_inputs = ctx->target ? ctx->target->max_kernel_inputs : 0;
  if (!f.group_of || !f.groups || !f.mark || !f.stack || !f.weight || !f.stamp)
    s = ldmc_error(LDMC_ERR_NOMEM, "fusion: out of memory");
  if (s == LDMC_OK) s = build_groups(&f, ctx->target && ctx->target->faithful, ctx);
  if (s == LDMC_OK) {
    int32_t nk = 0;
    for (int32_t k = 0; k < f.n_groups; k++) nk += f.groups[k].n > 0;
    plan->kernels = calloc((size_t)nk + 1, sizeof *plan->kernels);
    if (!plan->kernels) s = ldmc_error(LDMC_ERR_NOMEM, "fusion: out of memory");
    /* kernels numbered by root id: a topological order of the kernel DAG */
    for (int32_t k = 0; k < f.n_groups && s == LDMC_OK; k++) {
      group *gr = &f.groups[k];
      if (gr->n == 0) continue;
      qsort(gr->nodes, (size_t)gr->n, sizeof *gr->nodes, cmp_i32);
      ldmc_kernel *kr = &plan->kernels[plan->n_kernels++];
      kr->kind = final_kind(g, gr);
      kr->root = gr->root;
      kr->nodes = gr->nodes;
      kr->n_nodes = gr->n;
      kr->inplace_of = -1;
      kr->donated_to = -1;
      kr->view_of = kr->storage_of = -1;
      kr->scratch_offset = -1;
      gr->nodes = NULL;
    }
  }
  if (s == LDMC_OK) s = ldmc_plan_index(plan, g);
  for (int32_t o = 0; s == LDMC_OK && ctx->donate && o < g->n_outputs; o++) { /* donated state */
    int32_t r = g->outputs[o], k = ctx->donate[o] >= 0 ? plan->kernel_of[r] : -1;
    if (k >= 0 && plan->kernels[k].root == r) plan->kernels[k].donated_to = ctx->donate[o];
  }
  if (s == LDMC_OK) plan->naive_bytes = ldmc_graph_intermediate_bytes(g);
  for (int32_t k = 0; k < f.n_groups; k++) free(f.groups[k].nodes);
  free(f.groups);
  free(f.group_of);
  free(f.mark);
  free(f.stack);
  free(f.weight);
  free(f.stamp);
  ldmc_users_free(&f.u);
  if (s != LDMC_OK) {
    ldmc_plan_reset(plan);
    return ldmc_pass_fail(ctx, s);
  }
  return true;
}

const ldmc_pass ldmc_pass_fusion = {"fusion", run_fusion, LDMC_PASS_PLAN};
