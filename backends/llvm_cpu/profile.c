/* Profiling events of a plan's steps (backends/backend.h's hook). Each step
 * is one kernel; what it computes is read off the plan once, when a hook is
 * set: a node with several steps (pack, gemm, copies) gives its FLOPs to its
 * main one (by kind: gemm/attn > norm/softmax/reduce/fallback > ew > pack).
 * Nodes with no step of their own are given to the step that computes them:
 *  - a node a fused step marks done (a GEMM epilogue's root, an activation
 *    fused into a norm, the transposes and reshapes attention writes through)
 *    belongs, with the nodes between it and the step's main node (the
 *    epilogue's bias, scale and residual adds, their broadcasts), to the
 *    latest step whose node it reaches through such unowned nodes: the step
 *    that reads all the others' values and writes it;
 *  - elementwise ops and views inlined into a fused kernel, reshapes, belong to
 *    the first step whose main node consumes them through such nodes;
 *  - what is left (a reshape aliasing a graph output) goes with its producer.
 * So every executed node is in exactly one main step's event, and its FLOPs
 * are reported once; bytes are ldmc_profile_kernel_cost's over that set, so a
 * GEMM's event reads its bias and residual too. Prepack steps (weights only)
 * run when the weights are bound, not in a step, and report no event. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

static int kind_rank(const lc_kernel *k) {
  if (!k) return 5; /* interpreter fallback: the node's whole work */
  switch (k->kind) {
    case LC_K_GEMM: case LC_K_ATTN: case LC_K_ATTN_GRAD: return 6;
    case LC_K_NORM: case LC_K_SOFTMAX: case LC_K_REDUCE: return 5;
    case LC_K_EW: return 3;
    default: return 1; /* pack */
  }
}

static const char *kind_name(const lc_kernel *k, bool main) {
  if (!k) return "interp";
  switch (k->kind) {
    case LC_K_EW: return main ? "ew" : "copy";
    case LC_K_REDUCE: return "reduce";
    case LC_K_SOFTMAX: return "softmax";
    case LC_K_NORM: return "norm";
    case LC_K_PACK: return "pack";
    case LC_K_GEMM: return "gemm";
    case LC_K_ATTN: return ((const lc_attn_desc *)k->desc)->lse ? "attn_lse" : "attn";
    case LC_K_ATTN_GRAD: return ((const lc_attn_grad_desc *)k->desc)->sub == LC_AG_KV ? "attn_dkv" : "attn_dq";
    default: return "kernel";
  }
}

/* Bytes of a helper step (a copy or a pack of a node computed elsewhere). */
static void helper_bytes(const lc_kernel *k, ldmc_kernel_event *ev) {
  if (!k) return;
  if (k->kind == LC_K_EW) {
    const lc_ew_desc *d = k->desc;
    int64_t n = 1;
    for (int i = 0; i < d->rank; i++) n *= d->dims[i];
    ev->bytes_written = n * (int64_t)ldmc_dtype_size((ldmc_dtype)d->out.dt);
    for (int i = 0; i < d->n_in; i++)
      if (!d->in[i].iota) ev->bytes_read += n * (int64_t)ldmc_dtype_size((ldmc_dtype)d->in[i].dt);
  } else if (k->kind == LC_K_PACK) {
    const lc_pack_desc *d = k->desc;
    int64_t panels = d->n1 * d->n2, elt = d->bf16 ? 2 : 4, kp = d->bf16 ? (d->K + 1) / 2 * 2 : d->K;
    if (d->bside) { /* B: K x N into nr-wide panels */
      int64_t np = d->nr > 0 ? (d->N + d->nr - 1) / d->nr * d->nr : d->N;
      ev->bytes_read = panels * d->K * d->N * (int64_t)ldmc_dtype_size((ldmc_dtype)d->dt);
      ev->bytes_written = panels * kp * np * elt;
    } else { /* A: M x K into mr-row panels */
      int64_t mp = d->mr > 0 ? (d->M + d->mr - 1) / d->mr * d->mr : d->M;
      ev->bytes_read = panels * d->M * d->K * (int64_t)ldmc_dtype_size((ldmc_dtype)d->dt);
      ev->bytes_written = panels * mp * kp * elt;
    }
  }
}

static bool is_source(const ldmc_node *n) {
  return n->op == LDMC_OP_PARAMETER || n->op == LDMC_OP_CONSTANT;
}

/* Gives v, and the unowned non-source nodes it reaches through unowned nodes,
 * to the latest step owning a node at the edge of that region (none: left
 * unowned). stack holds n_nodes entries; mark[] == stamp marks the region. */
static void claim(const ldmc_graph *g, int32_t v, int32_t *owner, int32_t *stack, int32_t *mark, int32_t stamp) {
  int32_t n_region = 0, best = -1;
  mark[v] = stamp;
  stack[n_region++] = v;
  for (int32_t i = 0; i < n_region; i++) {
    const ldmc_node *n = &g->nodes[stack[i]];
    for (int k = 0; k < n->n_operands; k++) {
      int32_t o = n->operands[k];
      if (mark[o] == stamp) continue;
      mark[o] = stamp;
      if (owner[o] >= 0) best = owner[o] > best ? owner[o] : best;
      else if (!is_source(&g->nodes[o])) stack[n_region++] = o;
    }
  }
  if (best < 0) return;
  for (int32_t i = 0; i < n_region; i++) owner[stack[i]] = best;
}

void ldmc_lc_prof_free(lc_prof *pr) {
  if (!pr) return;
  free(pr->ev);
  free(pr->nodes);
  memset(pr, 0, sizeof *pr);
}

ldmc_status ldmc_lc_prof_init(lc_prof *pr, const lc_plan *p, const ldmc_profile_hook *hook) {
  memset(pr, 0, sizeof *pr);
  const ldmc_graph *g = p->g;
  int32_t nn = g->n_nodes, ns = p->n_steps;
  int32_t *main_step = malloc((size_t)(nn ? nn : 1) * sizeof *main_step);
  int32_t *owner = malloc((size_t)(nn ? nn : 1) * sizeof *owner);
  int32_t *stack = malloc((size_t)(nn ? nn : 1) * sizeof *stack);
  int32_t *count = calloc((size_t)ns + 1, sizeof *count);
  int32_t *mark = calloc((size_t)(nn ? nn : 1), sizeof *mark), stamp = 1;
  pr->ev = calloc((size_t)(ns ? ns : 1), sizeof *pr->ev);
  pr->nodes = malloc((size_t)(nn + ns + 1) * sizeof *pr->nodes);
  ldmc_status st = LDMC_OK;
  if (!main_step || !owner || !stack || !count || !mark || !pr->ev || !pr->nodes) {
    st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory for the profiler");
    goto done;
  }
  for (int32_t i = 0; i < nn; i++) main_step[i] = owner[i] = -1;
  for (int32_t s = 0; s < ns; s++) {
    int32_t v = p->steps[s].node;
    if (v < 0 || v >= nn) continue;
    if (main_step[v] < 0 || kind_rank(p->steps[s].k) >= kind_rank(p->steps[main_step[v]].k)) main_step[v] = s;
  }
  for (int32_t v = 0; v < nn; v++)
    if (main_step[v] >= 0) owner[v] = main_step[v];
  /* computed by a fused step: with the unowned nodes between, the latest step reached */
  for (int32_t v = 0; p->done && v < nn; v++)
    if (owner[v] < 0 && p->done[v]) claim(g, v, owner, stack, mark, stamp++);
  /* inlined: owned by the first consuming main step */
  for (int32_t s = 0; s < ns; s++) {
    int32_t r = p->steps[s].node;
    if (r < 0 || r >= nn || main_step[r] != s) continue;
    int32_t top = 0;
    stack[top++] = r;
    while (top > 0) {
      const ldmc_node *n = &g->nodes[stack[--top]];
      for (int k = 0; k < n->n_operands; k++) {
        int32_t o = n->operands[k];
        if (owner[o] >= 0 || is_source(&g->nodes[o])) continue;
        owner[o] = s;
        stack[top++] = o;
      }
    }
  }
  /* consumed by no step (an output reshape aliasing its operand): its producer's */
  for (int32_t v = 0; v < nn; v++)
    if (owner[v] < 0 && !is_source(&g->nodes[v])) claim(g, v, owner, stack, mark, stamp++);
  /* node lists per step: owned nodes for main steps, the node alone for helpers */
  for (int32_t v = 0; v < nn; v++)
    if (owner[v] >= 0) count[owner[v] + 1]++;
  for (int32_t s = 0; s < ns; s++) {
    int32_t r = p->steps[s].node;
    if (r >= 0 && r < nn && main_step[r] != s) count[s + 1]++;
  }
  for (int32_t s = 0; s < ns; s++) count[s + 1] += count[s];
  for (int32_t s = 0; s < ns; s++) {
    pr->ev[s].kernel = s;
    pr->ev[s].nodes = pr->nodes + count[s];
  }
  for (int32_t v = 0; v < nn; v++) /* ascending, so the root (the value written) ends each list */
    if (owner[v] >= 0) pr->nodes[count[owner[v]] + pr->ev[owner[v]].n_nodes++] = v;
  for (int32_t s = 0; s < ns; s++) {
    ldmc_kernel_event *ev = &pr->ev[s];
    int32_t r = p->steps[s].node;
    bool main = r >= 0 && r < nn && main_step[r] == s;
    ev->name = kind_name(p->steps[s].k, main);
    if (main) {
      ldmc_profile_kernel_cost(g, ev->nodes, ev->n_nodes, ev);
    } else if (r >= 0 && r < nn) {
      pr->nodes[count[s] + ev->n_nodes++] = r;
      helper_bytes(p->steps[s].k, ev);
    }
  }
  pr->hook = *hook;
done:
  free(main_step);
  free(owner);
  free(stack);
  free(count);
  free(mark);
  if (st != LDMC_OK) ldmc_lc_prof_free(pr);
  return st;
}

void ldmc_lc_prof_report(const lc_prof *pr, int32_t step, int64_t start_ns, int64_t end_ns) {
  ldmc_kernel_event ev = pr->ev[step];
  ev.start_ns = start_ns;
  ev.end_ns = end_ns;
  pr->hook.kernel(pr->hook.ctx, &ev);
}
