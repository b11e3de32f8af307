/* Profiling events of a plan's steps (backends/backend.h's hook). Each step
 * is one kernel; what it computes is read off the plan once, when a hook is
 * set: a node with several steps (pack, gemm, copies) gives its FLOPs to its
 * main one (by kind: gemm/attn > norm/softmax/reduce/fallback > ew > pack);
 * nodes with no step of their own (elementwise ops and views inlined into a
 * fused kernel, reshapes, an activation fused into a norm) belong to the first
 * step whose main node consumes them through such nodes. So every executed
 * node's FLOPs are reported by exactly one step. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

static int kind_rank(const lc_kernel *k) {
  if (!k) return 5; /* interpreter fallback: the node's whole work */
  switch (k->kind) {
    case LC_K_GEMM: case LC_K_ATTN: return 6;
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
    case LC_K_ATTN: return "attn";
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
  pr->ev = calloc((size_t)(ns ? ns : 1), sizeof *pr->ev);
  pr->nodes = malloc((size_t)(nn + ns + 1) * sizeof *pr->nodes);
  ldmc_status st = LDMC_OK;
  if (!main_step || !owner || !stack || !count || !pr->ev || !pr->nodes) {
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
  /* fused into a producer's step (an activation after a norm) */
  for (int32_t v = 0; p->done && v < nn; v++)
    if (owner[v] < 0 && p->done[v])
      for (int k = 0; k < g->nodes[v].n_operands && owner[v] < 0; k++) owner[v] = main_step[g->nodes[v].operands[k]];
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
        ldmc_op op = g->nodes[o].op;
        if (owner[o] >= 0 || op == LDMC_OP_PARAMETER || op == LDMC_OP_CONSTANT) continue;
        owner[o] = s;
        stack[top++] = o;
      }
    }
  }
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
  if (st != LDMC_OK) ldmc_lc_prof_free(pr);
  return st;
}

void ldmc_lc_prof_report(const lc_prof *pr, int32_t step, int64_t start_ns, int64_t end_ns) {
  ldmc_kernel_event ev = pr->ev[step];
  ev.start_ns = start_ns;
  ev.end_ns = end_ns;
  pr->hook.kernel(pr->hook.ctx, &ev);
}
