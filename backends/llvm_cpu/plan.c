/* The execution plan of a graph: buffers (inputs, constants, arena slots),
 * steps (one kernel call or one interpreter fallback each), and the arena
 * layout from liveness: a slot is reused once its last reader has run. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

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

/* ---- arena layout: best-fit over a sorted free list ---- */
typedef struct span {
  size_t off, size;
} span;

typedef struct arena {
  span *free;
  int n, cap;
  size_t top;
} arena;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static bool arena_alloc(arena *a, size_t size, size_t *off) {
  size = align64(size ? size : 64);
  int best = -1;
  for (int i = 0; i < a->n; i++)
    if (a->free[i].size >= size && (best < 0 || a->free[i].size < a->free[best].size)) best = i;
  if (best >= 0) {
    *off = a->free[best].off;
    a->free[best].off += size;
    a->free[best].size -= size;
    if (a->free[best].size == 0) {
      memmove(&a->free[best], &a->free[best + 1], (size_t)(a->n - best - 1) * sizeof(span));
      a->n--;
    }
    return true;
  }
  /* grow: reuse a free span that ends at the top */
  if (a->n > 0 && a->free[a->n - 1].off + a->free[a->n - 1].size == a->top) {
    *off = a->free[a->n - 1].off;
    a->n--;
  } else {
    *off = a->top;
  }
  a->top = *off + size;
  return true;
}

static bool arena_release(arena *a, size_t off, size_t size) {
  size = align64(size ? size : 64);
  int i = 0;
  while (i < a->n && a->free[i].off < off) i++;
  if (a->n == a->cap) {
    int cap = a->cap ? a->cap * 2 : 64;
    span *f = realloc(a->free, (size_t)cap * sizeof *f);
    if (!f) return false;
    a->free = f;
    a->cap = cap;
  }
  memmove(&a->free[i + 1], &a->free[i], (size_t)(a->n - i) * sizeof(span));
  a->free[i] = (span){off, size};
  a->n++;
  /* coalesce with neighbours */
  if (i + 1 < a->n && a->free[i].off + a->free[i].size == a->free[i + 1].off) {
    a->free[i].size += a->free[i + 1].size;
    memmove(&a->free[i + 1], &a->free[i + 2], (size_t)(a->n - i - 2) * sizeof(span));
    a->n--;
  }
  if (i > 0 && a->free[i - 1].off + a->free[i - 1].size == a->free[i].off) {
    a->free[i - 1].size += a->free[i].size;
    memmove(&a->free[i], &a->free[i + 1], (size_t)(a->n - i - 1) * sizeof(span));
    a->n--;
  }
  return true;
}

static ldmc_status layout_arena(lc_plan *p) {
  const ldmc_graph *g = p->g;
  for (int32_t s = 0; s < p->n_steps; s++)
    for (int r = 0; r < p->steps[s].n_refs; r++) {
      int32_t b = p->steps[s].refs[r].buf;
      if (b < 0) continue;
      if (s < p->bufs[b].def) p->bufs[b].def = s;
      if (s > p->bufs[b].last) p->bufs[b].last = s;
    }
  for (int32_t o = 0; o < g->n_outputs; o++) {
    int32_t b = p->value[g->outputs[o]].buf;
    if (b >= 0) p->bufs[b].last = p->n_steps; /* read after the last step */
  }
  /* events: (step, buffer) sorted by step, allocations before releases */
  int32_t *by_def = malloc((size_t)(p->n_bufs ? p->n_bufs : 1) * sizeof(int32_t) * 2);
  if (!by_def) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  int32_t *by_last = by_def + p->n_bufs;
  int nd = 0, nl = 0;
  for (int32_t b = 0; b < p->n_bufs; b++) {
    if (p->bufs[b].kind != LC_BUF_ARENA) continue;
    if (p->bufs[b].last < 0) { /* never used */
      p->bufs[b].def = 0;
      p->bufs[b].last = 0;
    }
    by_def[nd++] = b;
    by_last[nl++] = b;
  }
  /* sort buffer ids by def and by last */
  for (int pass = 0; pass < 2; pass++) {
    int32_t *ids = pass ? by_last : by_def;
    for (int i = 1; i < nd; i++) { /* insertion sort on a mostly sorted list */
      int32_t v = ids[i];
      int32_t kv = pass ? p->bufs[v].last : p->bufs[v].def;
      int j = i - 1;
      while (j >= 0 && (pass ? p->bufs[ids[j]].last : p->bufs[ids[j]].def) > kv) {
        ids[j + 1] = ids[j];
        j--;
      }
      ids[j + 1] = v;
    }
  }
  arena a = {0};
  int id = 0, il = 0;
  ldmc_status st = LDMC_OK;
  for (int32_t s = 0; s <= p->n_steps && st == LDMC_OK; s++) {
    while (id < nd && p->bufs[by_def[id]].def == s) {
      lc_buf *b = &p->bufs[by_def[id++]];
      arena_alloc(&a, b->size, &b->offset);
    }
    while (il < nl && p->bufs[by_last[il]].last <= s) {
      lc_buf *b = &p->bufs[by_last[il++]];
      if (!arena_release(&a, b->offset, b->size)) st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    }
  }
  p->arena_bytes = a.top;
  free(a.free);
  /* persistent buffers: written once by prepack steps, read every run */
  p->persist_bytes = 0;
  for (int32_t b = 0; b < p->n_bufs; b++)
    if (p->bufs[b].kind == LC_BUF_PERSIST) {
      p->bufs[b].offset = p->persist_bytes;
      p->persist_bytes += align64(p->bufs[b].size ? p->bufs[b].size : 64);
    }
  free(by_def);
  return st;
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

static ldmc_status add_fallback(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  if (n->n_operands + 1 > LC_MAX_BUFS)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: %%%d %s: too many operands for a fallback", (int)id,
                      ldmc_op_name(n->op));
  int64_t numel = ldmc_lc_numel(&n->shape);
  int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)numel * ldmc_dtype_size(n->dtype));
  if (b < 0) return LDMC_ERR_NOMEM;
  p->value[id] = (lc_ref){b, 0};
  lc_ref refs[LC_MAX_BUFS];
  refs[0] = p->value[id];
  for (int k = 0; k < n->n_operands; k++) {
    LDMC_TRY(ldmc_lc_materialize(p, n->operands[k]));
    refs[1 + k] = p->value[n->operands[k]];
  }
  p->n_fallback++;
  return ldmc_lc_plan_add_step(p, NULL, id, n->n_operands + 1, refs);
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

/* Lowers the graph in node order, fusing on the backend's own rules (fuse.c). */
static ldmc_status lower_nodes(lc_plan *p, const bool *live) {
  const ldmc_graph *g = p->g;
  ldmc_status st = LDMC_OK;
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (!live[i] || p->done[i] || n->op == LDMC_OP_PARAMETER || n->op == LDMC_OP_CONSTANT) continue;
    st = ldmc_lc_lower_one(p, i);
  }
  return st;
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
  if (p->allow_fallback) return add_fallback(p, i);
  return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: %%%d %s (%s): no generated kernel for this op or dtype", (int)i,
                    ldmc_op_name(n->op), ldmc_dtype_name(n->dtype));
}

ldmc_status ldmc_lc_plan_build(const ldmc_graph *g, const lc_target *t, const lc_plan_opts *o, lc_plan *p) {
  memset(p, 0, sizeof *p);
  p->g = g;
  p->t = t;
  p->threads = o->threads;
  p->allow_fallback = o->allow_fallback;
  p->n_act_params = o->n_act_params;
  p->bf16 = o->bf16;
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
  if (st == LDMC_OK) st = o->kernels ? ldmc_lc_lower_kernels(p, o->kernels) : lower_nodes(p, live);
  free(live);
  p->prepack_mode = false;
  for (int32_t o2 = 0; o2 < g->n_outputs && st == LDMC_OK; o2++) st = ldmc_lc_materialize(p, g->outputs[o2]);
  if (st == LDMC_OK) st = layout_arena(p);
  if (st != LDMC_OK) ldmc_lc_plan_free(p);
  return st;
}

bool ldmc_lc_is_weight(const lc_plan *p, int32_t node) { return p->weight && p->weight[node]; }
