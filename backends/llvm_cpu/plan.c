/* The execution plan of a graph: buffers (inputs, constants, arena slots),
 * steps (one kernel call or one interpreter fallback each), and the arena
 * layout from liveness: a slot is reused once its last reader has run. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

int32_t ldmc_lc_plan_new_buf(lc_plan *p, lc_buf_kind kind, size_t size) {
  if (p->prepack_mode && kind == LC_BUF_ARENA) kind = LC_BUF_PERSIST; /* kept between runs */
  if (p->n_bufs == p->cap_bufs) {
    int32_t cap = p->cap_bufs ? p->cap_bufs * 2 : 64;
    lc_buf *b = realloc(p->bufs, (size_t)cap * sizeof *b);
    if (!b) {
      ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
      return -1;
    }
    p->bufs = b;
    p->cap_bufs = cap;
  }
  lc_buf *b = &p->bufs[p->n_bufs];
  memset(b, 0, sizeof *b);
  b->kind = kind;
  b->size = size;
  b->def = INT32_MAX;
  b->last = -1;
  b->kpos = p->cur_kpos;
  b->root = -1;
  return p->n_bufs++;
}

ldmc_status ldmc_lc_plan_add_step(lc_plan *p, lc_kernel *k, int32_t node, int n_refs, const lc_ref *refs) {
  if (n_refs > LC_MAX_BUFS) {
    ldmc_lc_kernel_free(k);
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: %%%d: a step with %d buffers (at most %d)", (int)node, n_refs,
                      LC_MAX_BUFS);
  }
  if (p->n_steps == p->cap_steps) {
    int32_t cap = p->cap_steps ? p->cap_steps * 2 : 64;
    lc_step *s = realloc(p->steps, (size_t)cap * sizeof *s);
    if (!s) {
      ldmc_lc_kernel_free(k);
      return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    }
    p->steps = s;
    p->cap_steps = cap;
  }
  lc_step *s = &p->steps[p->n_steps++];
  memset(s, 0, sizeof *s);
  s->k = k;
  s->node = node;
  s->prepack = p->prepack_mode;
  s->kpos = p->cur_kpos;
  s->n_refs = n_refs;
  if (s->prepack) p->n_prepack++;
  memcpy(s->refs, refs, (size_t)n_refs * sizeof *refs);
  if (k && k->scratch > p->scratch_bytes) p->scratch_bytes = k->scratch;
  return LDMC_OK;
}

void ldmc_lc_plan_free(lc_plan *p) {
  for (int32_t i = 0; i < p->n_steps; i++) ldmc_lc_kernel_free(p->steps[i].k);
  free(p->steps);
  free(p->bufs);
  free(p->value);
  free(p->uses);
  free(p->done);
  free(p->pending);
  free(p->weight);
  memset(p, 0, sizeof *p);
}

/* weight[i]: node i has the same value every run */
static ldmc_status mark_weights(lc_plan *p) {
  const ldmc_graph *g = p->g;
  int32_t param = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    bool w;
    if (n->op == LDMC_OP_PARAMETER) w = param++ >= p->n_act_params;
    else if (n->op == LDMC_OP_RNG_NORMAL || n->op == LDMC_OP_RNG_UNIFORM) w = false;
    else {
      w = true;
      for (int k = 0; k < n->n_operands && w; k++) w = p->weight[n->operands[k]];
    }
    p->weight[i] = w;
  }
  return LDMC_OK;
}

ldmc_status ldmc_lc_lower_one(lc_plan *p, int32_t i) {
  const ldmc_node *n = &p->g->nodes[i];
  if (n->op == LDMC_OP_RESHAPE) { /* row-major: same bytes */
    LDMC_TRY(ldmc_lc_materialize(p, n->operands[0]));
    p->value[i] = p->value[n->operands[0]];
    return LDMC_OK;
  }
  bool handled = false;
  LDMC_TRY(ldmc_lc_lower_node(p, i, &handled));
  if (handled) return LDMC_OK;
  return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: %%%d %s (%s): no generated kernel for this op or dtype", (int)i,
                    ldmc_op_name(n->op), ldmc_dtype_name(n->dtype));
}

/* Nodes reachable backwards from the outputs. */
static bool *live_nodes(const ldmc_graph *g) {
  bool *live = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
  if (!live) return NULL;
  for (int32_t o = 0; o < g->n_outputs; o++) live[g->outputs[o]] = true;
  for (int32_t i = g->n_nodes - 1; i >= 0; i--)
    if (live[i])
      for (int k = 0; k < g->nodes[i].n_operands; k++) live[g->nodes[i].operands[k]] = true;
  return live;
}

ldmc_status ldmc_lc_plan_build(const ldmc_graph *g, const lc_target *t, const lc_plan_opts *o, lc_plan *p) {
  memset(p, 0, sizeof *p);
  p->cur_kpos = p->cur_kernel = -1;
  if (!o->kernels)
    return ldmc_error(LDMC_ERR_INVALID, "llvm-cpu: graph '%s': no pass-pipeline plan to lower", g->name);
  p->g = g;
  p->t = t;
  p->threads = o->threads;
  p->allow_fallback = o->allow_fallback;
  p->n_act_params = o->n_act_params;
  p->bf16 = o->bf16;
  p->kp = o->kernels;
  const char *poison = getenv("LDMC_LLVM_CPU_POISON");
  p->poison = poison && *poison && *poison != '0';
  LDMC_TRY(ldmc_graph_verify(g));
  size_t nn = (size_t)(g->n_nodes ? g->n_nodes : 1);
  p->value = malloc(nn * sizeof *p->value);
  p->uses = calloc(nn, sizeof *p->uses);
  p->done = calloc(nn, 1);
  p->pending = calloc(nn, 1);
  p->weight = calloc(nn, 1);
  bool *live = live_nodes(g);
  if (!p->value || !p->uses || !p->done || !p->pending || !p->weight || !live) {
    free(live);
    ldmc_lc_plan_free(p);
    return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  }
  mark_weights(p);
  for (int32_t i = 0; i < g->n_nodes; i++) p->value[i] = (lc_ref){-1, 0};
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (live[i])
      for (int k = 0; k < g->nodes[i].n_operands; k++) p->uses[g->nodes[i].operands[k]]++;
  for (int32_t o2 = 0; o2 < g->n_outputs; o2++) p->uses[g->outputs[o2]]++;
  ldmc_status st = LDMC_OK;
  int32_t param = 0;
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) { /* sources first */
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) {
      int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_INPUT, 0);
      if (b < 0) st = LDMC_ERR_NOMEM;
      else p->bufs[b].param = param, p->value[i] = (lc_ref){b, 0};
      param++;
    } else if (n->op == LDMC_OP_CONSTANT && live[i]) {
      int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_CONST, n->attrs.value.nbytes);
      if (b < 0) st = LDMC_ERR_NOMEM;
      else p->bufs[b].data = n->attrs.value.data, p->value[i] = (lc_ref){b, 0};
    }
  }
  if (st == LDMC_OK) st = ldmc_lc_lower_kernels(p, o->kernels);
  free(live);
  p->prepack_mode = false;
  p->cur_kpos = o->kernels->n_kernels; /* after the last kernel: outputs the kernels left pending */
  p->cur_kernel = -1;
  for (int32_t o2 = 0; o2 < g->n_outputs && st == LDMC_OK; o2++) st = ldmc_lc_materialize(p, g->outputs[o2]);
  for (int32_t k = 0; k < o->kernels->n_kernels && st == LDMC_OK; k++) { /* donated state is written in place */
    const ldmc_kernel *kr = &o->kernels->kernels[k];
    if (kr->donated_to < 0) continue;
    lc_ref v = p->value[kr->root];
    if (v.buf < 0 || p->bufs[v.buf].kind != LC_BUF_INPUT || p->bufs[v.buf].param != kr->donated_to || v.off != 0)
      st = ldmc_error(LDMC_ERR_UNSUPPORTED,
                      "llvm-cpu: %%%d %s is donated to parameter %d, but its %s kernel cannot write it in place "
                      "(only elementwise kernels update state in place)",
                      (int)kr->root, ldmc_op_name(g->nodes[kr->root].op), (int)kr->donated_to,
                      ldmc_kernel_kind_name(kr->kind));
  }
  if (st == LDMC_OK) st = ldmc_lc_assign_planned(p, o->kernels);
  if (st != LDMC_OK) ldmc_lc_plan_free(p);
  return st;
}

bool ldmc_lc_is_weight(const lc_plan *p, int32_t node) { return p->weight && p->weight[node]; }
