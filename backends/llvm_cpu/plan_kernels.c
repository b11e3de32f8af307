/* Lowering driven by the pass pipeline's plan: the pipeline decides fusion
 * (which nodes form one kernel) and the kernel order at compile time; this
 * file turns each kernel into steps.
 *
 *  - Loop-fusible members other than the root stay pending: the root's loop
 *    nest inlines them (fuse.c), whatever their use count, because the plan
 *    put all their users in this kernel.
 *  - A contraction kernel's epilogue goes into the GEMM's store when
 *    lower_contract.c can map it onto the result index; else the GEMM writes
 *    its result and the epilogue is one loop nest.
 *  - A kernel made only of views (broadcast, transpose, slice) is left as a
 *    strided view: GEMM, attention and loop nests read it in place, and it is
 *    copied only if a consumer needs a dense buffer.
 *  - A kernel that reads only weights and constants (a pipeline prepack
 *    kernel, or any kernel whose root depends only on them) is lowered in
 *    prepack mode: its steps run when the weights are bound, not every run,
 *    and its buffers persist. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

static bool is_view_op(ldmc_op op) {
  return op == LDMC_OP_BROADCAST_IN_DIM || op == LDMC_OP_TRANSPOSE || op == LDMC_OP_SLICE;
}

static bool is_contraction(ldmc_op op) { return op == LDMC_OP_DOT_GENERAL || op == LDMC_OP_CONVOLUTION; }

static bool is_loop_op(const lc_plan *p, int32_t i) {
  return ldmc_lc_fusible(p, i) || p->g->nodes[i].op == LDMC_OP_RESHAPE;
}

/* Lowers one member of a kernel: loop-fusible ones stay pending (the root is
 * materialized after all members), others get their steps now. */
static ldmc_status lower_member(lc_plan *p, int32_t i, int32_t root) {
  if (p->done[i] || p->value[i].buf >= 0 || p->pending[i]) return LDMC_OK;
  /* a reshape inside the nest is an index map (fuse.c), at the root an alias */
  if (ldmc_lc_fusible(p, i) || (i != root && p->g->nodes[i].op == LDMC_OP_RESHAPE)) {
    p->pending[i] = 1;
    return LDMC_OK;
  }
  return ldmc_lc_lower_one(p, i);
}

/* An attention kernel {attention, transpose, reshape...} (the heads merged
 * back: [B,h,N,d] -> [B,N,h,d] -> [B,N,h*d]) writes the attention straight
 * into the root's dense buffer with the transpose's strides; so does
 * attention_grad_q (dq merged back the same way). *done false when the
 * kernel is not of that form. */
static ldmc_status attention_into_root(lc_plan *p, const ldmc_kernel *k, bool *done) {
  const ldmc_graph *g = p->g;
  *done = false;
  if (k->n_nodes < 2) return LDMC_OK;
  int32_t att = k->nodes[0];
  const ldmc_node *a = &g->nodes[att];
  int r = a->shape.rank;
  if ((a->op != LDMC_OP_ATTENTION && a->op != LDMC_OP_ATTENTION_GRAD_Q) || r > 4 || r < 3 || p->prepack_mode)
    return LDMC_OK;
  const ldmc_node *t = &g->nodes[k->nodes[1]];
  if (t->op != LDMC_OP_TRANSPOSE || t->operands[0] != att || t->attrs.dims.v[r - 1] != r - 1) return LDMC_OK;
  for (int32_t j = 2; j < k->n_nodes; j++) { /* then a chain of reshapes */
    const ldmc_node *n = &g->nodes[k->nodes[j]];
    if (n->op != LDMC_OP_RESHAPE || n->operands[0] != k->nodes[j - 1]) return LDMC_OK;
  }
  if (a->op == LDMC_OP_ATTENTION && g->nodes[g->nodes[att].operands[1]].shape.dims[r - 2] <= 0)
    return LDMC_OK; /* no keys: the fallback */
  /* the transpose's dense strides, pulled back to the attention's dims */
  int64_t tst[LDMC_MAX_RANK], ast[LDMC_MAX_RANK], os[3];
  ldmc_lc_strides(&t->shape, tst);
  for (int i = 0; i < r; i++) ast[t->attrs.dims.v[i]] = tst[i];
  os[0] = r == 4 ? ast[0] : 0, os[1] = ast[r - 3], os[2] = ast[r - 2];
  lc_ref out = ldmc_lc_new_out(p, k->root); /* the root's bytes are the transpose's (row-major reshapes) */
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  LDMC_TRY(ldmc_lc_lower_attention_into(p, att, out, os));
  for (int32_t j = 0; j < k->n_nodes; j++) p->done[k->nodes[j]] = 1;
  *done = true;
  return LDMC_OK;
}

static ldmc_status lower_kernel(lc_plan *p, const ldmc_kernel *k) {
  const ldmc_graph *g = p->g;
  int32_t root = k->root;
  bool views_only = true; /* members are views (broadcast, transpose, slice) only */
  bool tail_views = true;  /* what follows the core (if any) is views and reshapes only */
  int32_t core = -1;
  for (int32_t j = 0; j < k->n_nodes; j++) {
    const ldmc_node *n = &g->nodes[k->nodes[j]];
    views_only = views_only && is_view_op(n->op);
    if (is_contraction(n->op)) core = k->nodes[j];
    if (is_loop_op(p, k->nodes[j]) && !is_view_op(n->op) && n->op != LDMC_OP_RESHAPE) tail_views = false;
  }
  bool is_output = false; /* computed here, not after the last kernel, so its temporaries are this kernel's */
  for (int32_t o = 0; o < g->n_outputs && !is_output; o++) is_output = g->outputs[o] == root;
  /* (the pipeline's PREPACK kind says the same when it was told the same
   * weights); views of weights are read in place unless they are outputs */
  p->prepack_mode = ldmc_lc_is_weight(p, root) && (!views_only || is_output);
  if (k->kind == LDMC_KERNEL_CONTRACTION && core >= 0 && core != root && !p->prepack_mode) {
    for (int32_t j = 0; j < k->n_nodes; j++) {
      int32_t i = k->nodes[j];
      if (i != core && i != root && ldmc_lc_fusible(p, i)) p->pending[i] = 1;
    }
    bool fused = false;
    LDMC_TRY(ldmc_lc_lower_contract_epilogue(p, core, root, &fused));
    if (fused) {
      p->done[root] = 1;
      return LDMC_OK;
    }
  }
  if (k->kind == LDMC_KERNEL_ATTENTION) {
    bool done = false;
    LDMC_TRY(attention_into_root(p, k, &done));
    if (done) return LDMC_OK;
  }
  /* a core followed by head-splitting reshapes and transposes: the core's
   * result is read through them in place (or copied by a consumer that needs
   * a dense buffer), like a kernel of views alone */
  bool lazy = (views_only || tail_views) && is_loop_op(p, root) && !p->prepack_mode && !is_output;
  if (lazy && g->nodes[root].op == LDMC_OP_RESHAPE && root != core) p->pending[root] = 1;
  for (int32_t j = 0; j < k->n_nodes; j++) LDMC_TRY(lower_member(p, k->nodes[j], root));
  if (lazy) return LDMC_OK;
  return ldmc_lc_materialize(p, root);
}

ldmc_status ldmc_lc_lower_kernels(lc_plan *p, const ldmc_plan *kp) {
  const ldmc_graph *g = p->g;
  if (kp->n_nodes != g->n_nodes)
    return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: the plan is for %d nodes, the graph has %d", (int)kp->n_nodes,
                      (int)g->n_nodes);
  /* nodes of no kernel (splats: broadcasts of rank-0 constants) are views */
  for (int32_t i = 0; i < g->n_nodes; i++) {
    ldmc_op op = g->nodes[i].op;
    if (kp->kernel_of[i] < 0 && op != LDMC_OP_PARAMETER && op != LDMC_OP_CONSTANT) {
      if (!ldmc_lc_fusible(p, i))
        return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %%%d %s belongs to no kernel", (int)i, ldmc_op_name(op));
      p->pending[i] = 1;
    }
  }
  ldmc_status st = LDMC_OK;
  ldmc_plan *wp = p->kp; /* the same plan: the lowering records how it holds each root */
  for (int32_t j = 0; j < kp->n_kernels && st == LDMC_OK; j++) {
    int32_t kid = kp->scheduled ? kp->order[j] : j;
    const ldmc_kernel *k = &kp->kernels[kid];
    p->cur_kpos = j;
    p->cur_kernel = kid;
    int32_t first_buf = p->n_bufs;
    st = lower_kernel(p, k);
    p->n_kernels++;
    if (st != LDMC_OK) break;
    /* a root left pending is read in place through its views: its storage is
     * the leaf the views start from, a member's result or an input's */
    int32_t leaf = k->root;
    while (p->pending[leaf] && g->nodes[leaf].n_operands == 1) leaf = g->nodes[leaf].operands[0];
    if (wp == kp && leaf != k->root && !p->pending[leaf]) {
      wp->kernels[kid].storage_of = kp->kernel_of[leaf] == kid ? leaf : -1;
      wp->kernels[kid].view_of = kp->kernel_of[leaf] == kid ? -1 : leaf;
    }
    /* Values other than the root that this kernel computed into the arena
     * are its temporaries (planned as its scratch): a later kernel that
     * needs one again computes it again rather than extend its life. */
    for (int32_t i = 0; i < g->n_nodes; i++) {
      lc_ref v = p->value[i];
      if (i == k->root || i == k->storage_of || v.buf < first_buf || p->bufs[v.buf].kind != LC_BUF_ARENA) continue;
      if (!ldmc_lc_fusible(p, i) && g->nodes[i].op != LDMC_OP_RESHAPE) continue; /* read here only */
      p->value[i] = (lc_ref){-1, 0};
      p->pending[i] = 1;
      p->done[i] = 0;
    }
  }
  p->prepack_mode = false;
  p->cur_kernel = -1;
  return st;
}

ldmc_status ldmc_lc_pipeline(const ldmc_graph *g, const ldmc_compile_opts *o, const lc_target *lt, int threads,
                             ldmc_graph **out, ldmc_plan **plan) {
  *out = NULL;
  *plan = NULL;
  const ldmc_target *host = ldmc_target_find("llvm-cpu");
  if (!host) return LDMC_ERR_INTERNAL;
  /* the description of what runs: this ISA level's vectors and GEMM blocking, this thread count */
  ldmc_target tt = *host, *t = &tt;
  ldmc_target_set_gemm(t, lt->W * 4);
  t->threads = threads > 0 ? threads : 1;
  if (t->gemm_mr != lt->mr || t->gemm_nr != lt->nr || t->gemm_kc != lt->kc || t->gemm_nc != lt->nc)
    return ldmc_error(LDMC_ERR_INTERNAL,
                      "llvm-cpu: the target description's GEMM blocking (%dx%d, kc %d, nc %d) is not the backend's "
                      "(%dx%d, kc %d, nc %d)",
                      t->gemm_mr, t->gemm_nr, t->gemm_kc, t->gemm_nc, lt->mr, lt->nr, lt->kc, lt->nc);
  ldmc_graph *c = ldmc_graph_clone(g);
  if (!c) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory copying graph '%s'", g->name);
  ldmc_pipeline_opts po = {0};
  if (o && o->pipeline) po = *o->pipeline; /* dumps, statistics, verification */
  po.params_are_weights = o && o->params_are_weights;
  po.n_activation_params = o && o->params_are_weights ? o->n_activation_params : 0;
  po.donate = o ? o->donate : NULL;
  ldmc_status st = ldmc_compile_plan(c, t, &po, plan);
  /* the executable is called with the original graph's inputs and outputs */
  if (st == LDMC_OK && (ldmc_graph_num_params(c) != ldmc_graph_num_params(g) || c->n_outputs != g->n_outputs))
    st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: the pass pipeline changed the inputs or outputs of graph '%s'",
                    g->name);
  if (st != LDMC_OK) {
    ldmc_plan_free(*plan);
    *plan = NULL;
    ldmc_graph_free(c);
    return st;
  }
  *out = c;
  return LDMC_OK;
}

/* The kernels compute floats in f32, so f64 (for double-precision checks on
 * the interpreter) is refused rather than run at f32 precision: the first
 * node making or reading an f64 value, by its id in g. lc_supports agrees. */
static ldmc_status refuse_f64(const ldmc_graph *g) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    bool f64 = n->dtype == LDMC_F64;
    for (int k = 0; k < n->n_operands && !f64; k++)
      f64 = n->operands[k] >= 0 && n->operands[k] < i && g->nodes[n->operands[k]].dtype == LDMC_F64;
    if (f64)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: %%%d %s: f64 is not supported (kernels compute in f32); "
                        "run f64 graphs on the interp backend", (int)i, ldmc_op_name(n->op));
  }
  return LDMC_OK;
}

ldmc_status ldmc_lc_build(const ldmc_graph *g, const ldmc_compile_opts *o, const lc_target *t, int threads,
                          ldmc_graph **opt, ldmc_plan **kp, lc_plan *p) {
  *opt = NULL;
  *kp = NULL;
  memset(p, 0, sizeof *p);
  LDMC_TRY(refuse_f64(g));
  LDMC_TRY(ldmc_donation_check(g, o));
  LDMC_TRY(ldmc_lc_pipeline(g, o, t, threads, opt, kp));
  lc_plan_opts po = {.threads = threads,
                     .allow_fallback = false, /* every node has generated code, or the compile fails naming it */
                     .n_act_params = o && o->params_are_weights ? o->n_activation_params : INT32_MAX,
                     .bf16 = o && o->bf16,
                     .kernels = *kp};
  ldmc_status st = ldmc_lc_plan_build(*opt, t, &po, p);
  if (st != LDMC_OK) {
    ldmc_plan_free(*kp);
    ldmc_graph_free(*opt);
    *kp = NULL;
    *opt = NULL;
  }
  return st;
}
