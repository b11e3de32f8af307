/* Rematerialization under a memory budget (ctx->memory_budget bytes).
 *
 * Training graphs keep forward values alive until the backward pass reads
 * them again. This pass recomputes cheap ones (elementwise, movement, norms,
 * rng) right before their late readers instead, until the planned peak (the
 * buffers pass's arena_bytes, what `ldmc compile` reports) fits the budget or
 * nothing more helps. Greedy: plan (fusion, schedule, buffers), find the
 * position where live bytes peak, rank the values live across it by
 * (bytes freed x positions cut) / recompute cost, duplicate the best ones'
 * producer chains for their readers after the peak, plan again; keep the
 * rewrite if the arena (or, at an equal arena, the bytes above budget summed
 * over positions) dropped, else retry with half the batch and finally drop
 * the candidate. When no cheap value helps any more (none left, or 24
 * plannings in a row rejected), contractions and attention may be recomputed
 * too (tier 1). The graph kept is the first that reached the lowest arena.
 * Duplicates survive because the pipeline runs this pass after its last cse;
 * their scope is "remat.<original scope>". See docs/passes.md, "remat". */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

#define MAX_CHAIN 8       /* nodes one recompute may duplicate */
#define MAX_MEASURES 400  /* plannings per run: bounds the compile time */
#define MAX_FAILS 24      /* rejected plannings in a row that end a tier */

/* Cheap to recompute: no contraction, no attention, no data-dependent copies. */
static bool cheap_op(ldmc_op op) {
  if (ldmc_op_table[op].flags & LDMC_OPF_ELEMENTWISE) return true;
  switch (op) {
    case LDMC_OP_BROADCAST_IN_DIM: case LDMC_OP_RESHAPE: case LDMC_OP_TRANSPOSE: case LDMC_OP_SLICE:
    case LDMC_OP_CONCATENATE: case LDMC_OP_PAD: case LDMC_OP_IOTA: case LDMC_OP_UPSAMPLE_NEAREST:
    case LDMC_OP_REDUCE: case LDMC_OP_SOFTMAX: case LDMC_OP_GROUP_NORM: case LDMC_OP_LAYER_NORM:
    case LDMC_OP_RNG_UNIFORM: case LDMC_OP_RNG_NORMAL: /* a pure function of the key: same bits again */
      return true;
    default:
      return false;
  }
}

static int64_t flops_of(const ldmc_graph *g, int32_t id) {
  ldmc_flops f = ldmc_node_flops(g, id);
  return f.mac + f.other;
}

/* Ranking cost of recomputing one node: its FLOPs, at least one per element
 * written (a copy is not free). */
static int64_t node_cost(const ldmc_graph *g, int32_t id) {
  int64_t f = flops_of(g, id), e = ldmc_node_numel(&g->nodes[id]);
  return f > e ? f : e;
}

static int64_t align64(int64_t x) { return (x + 63) / 64 * 64; }

/* One planning of a graph and the liveness read off it. */
typedef struct live {
  ldmc_plan *plan;
  int32_t nk;
  int32_t *pos;  /* [n] position of the node's kernel in the order, -1: none (source, splat) */
  int32_t *stor; /* [n] kernel whose arena storage holds the node's value, -1: not stored there */
  int32_t *last; /* [nk] by storage kernel: last position reading it (nk: an output, to the end) */
  int64_t arena, excess; /* excess: bytes above the budget summed over positions */
  int32_t tpeak;         /* first position of the most live bytes */
} live;

static void live_free(live *L) {
  ldmc_plan_free(L->plan);
  free(L->pos);
  free(L->stor);
  free(L->last);
  memset(L, 0, sizeof *L);
}

static ldmc_status plan_and_read(const ldmc_graph *g, const ldmc_pass_ctx *ctx, int64_t budget, live *L) {
  live_free(L);
  ldmc_status st = LDMC_OK;
  ldmc_pass_ctx c = *ctx;
  c.status = &st;
  c.plan = L->plan = ldmc_plan_new();
  if (!c.plan) return ldmc_error(LDMC_ERR_NOMEM, "remat: out of memory");
  const ldmc_pass *steps[] = {&ldmc_pass_fusion, &ldmc_pass_schedule, &ldmc_pass_buffers};
  for (int i = 0; i < 3 && st == LDMC_OK; i++) /* plan passes: the graph is only read */
    if (!steps[i]->run((ldmc_graph *)g, &c) && st == LDMC_OK)
      st = ldmc_error(LDMC_ERR_INTERNAL, "remat: %s wrote no plan", steps[i]->name);
  if (st != LDMC_OK) return st;
  const ldmc_plan *p = L->plan;
  int32_t n = g->n_nodes, nk = L->nk = p->n_kernels;
  L->pos = malloc(((size_t)n + 1) * sizeof *L->pos);
  L->stor = malloc(((size_t)n + 1) * sizeof *L->stor);
  L->last = malloc(((size_t)nk + 1) * sizeof *L->last);
  int32_t *kpos = malloc(((size_t)nk + 1) * sizeof *kpos);
  int64_t *delta = calloc((size_t)nk + 2, sizeof *delta);
  if (!L->pos || !L->stor || !L->last || !kpos || !delta) {
    free(kpos);
    free(delta);
    return ldmc_error(LDMC_ERR_NOMEM, "remat: out of memory");
  }
  for (int32_t t = 0; t < nk; t++) kpos[p->order[t]] = t;
  for (int32_t x = 0; x < n; x++) {
    int32_t k = p->kernel_of[x];
    L->pos[x] = k >= 0 ? kpos[k] : -1;
    L->stor[x] = -1;
    if (k < 0 || p->kernels[k].root != x || p->offset[x] < 0) continue; /* fused away, prepacked, donated */
    L->stor[x] = p->kernels[k].kind == LDMC_KERNEL_ALIAS ? L->stor[g->nodes[x].operands[0]] : k;
  }
  for (int32_t k = 0; k < nk; k++) L->last[k] = kpos[k];
  for (int32_t k = 0; k < nk; k++)
    for (int32_t j = 0; j < p->kernels[k].n_inputs; j++) {
      int32_t s = L->stor[p->kernels[k].inputs[j]];
      if (s >= 0 && kpos[k] > L->last[s]) L->last[s] = kpos[k];
    }
  for (int32_t i = 0; i < g->n_outputs; i++)
    if (L->stor[g->outputs[i]] >= 0) L->last[L->stor[g->outputs[i]]] = nk;
  for (int32_t k = 0; k < nk; k++) {
    if (p->offset[p->kernels[k].root] < 0 || p->kernels[k].kind == LDMC_KERNEL_ALIAS) continue;
    int64_t b = align64(ldmc_node_bytes(&g->nodes[p->kernels[k].root]));
    delta[kpos[k]] += b;
    delta[(L->last[k] < nk ? L->last[k] : nk - 1) + 1] -= b;
  }
  int64_t cur = 0, best = -1;
  L->excess = 0;
  L->tpeak = 0;
  for (int32_t t = 0; t < nk; t++) {
    cur += delta[t];
    if (cur > best) best = cur, L->tpeak = t;
    if (budget > 0 && cur > budget) L->excess += cur - budget;
  }
  L->arena = p->arena_bytes;
  free(kpos);
  free(delta);
  return LDMC_OK;
}

/* One planned graph as the rewrite sees it; tier 0 recomputes cheap ops
 * only, tier 1 (when those are exhausted) contractions and attention too. */
typedef struct view {
  const ldmc_graph *g;
  const live *L;
  const ldmc_users *u;
  int tier;
} view;

static bool recomputable(const view *w, int32_t a) {
  ldmc_op op = w->g->nodes[a].op;
  return op != LDMC_OP_PARAMETER && op != LDMC_OP_CONSTANT && (w->tier > 0 || cheap_op(op));
}

/* Value a can be read at position P without keeping anything new alive:
 * a parameter, constant or splat (no kernel), kept outside the arena, an
 * output, or stored in a buffer other than `freeing` read at P or later anyway. */
static bool usable(const view *w, int32_t a, int32_t P, int32_t freeing) {
  const live *L = w->L;
  int32_t k = L->plan->kernel_of[a];
  if (k < 0 || w->u->is_output[a]) return true;
  if (L->plan->kernels[k].root != a) return false; /* computed inside a kernel, never stored */
  if (L->plan->offset[a] < 0) return true;
  int32_t s = L->stor[a];
  return s >= 0 && s != freeing && L->last[s] >= P;
}

typedef struct cand {
  int32_t v, P; /* the value; the first position reading it after the peak */
  int64_t freed;
  double score;
} cand;

/* How a chain recomputing a value for readers at P gets operand a. */
enum { USE, EXTEND, DUP };
static bool live_at_peak(const live *L, int32_t a) {
  int32_t s = L->stor[a];
  return s >= 0 && L->pos[a] <= L->tpeak && L->last[s] >= L->tpeak;
}

static int operand_way(const view *w, int32_t a, int32_t P, int32_t freeing, int left) {
  if (usable(w, a, P, freeing)) return USE;
  /* stored and live across the peak anyway: reading it a little later costs nothing there */
  if (w->L->stor[a] != freeing && live_at_peak(w->L, a)) return EXTEND;
  return recomputable(w, a) && left > 0 ? DUP : EXTEND;
}

/* Cost of the chain recomputing a for readers at P, and bytes of the values it
 * would keep alive across the peak that were not (extended). */
static void chain_cost(const view *w, int32_t a, int32_t P, int32_t freeing, int *left, int64_t *cost,
                       int64_t *extended) {
  (*left)--;
  *cost += node_cost(w->g, a);
  const ldmc_node *nd = &w->g->nodes[a];
  for (int k = 0; k < nd->n_operands; k++) {
    int32_t x = nd->operands[k];
    int way = operand_way(w, x, P, freeing, *left);
    if (way == DUP) chain_cost(w, x, P, freeing, left, cost, extended);
    else if (way == EXTEND && !live_at_peak(w->L, x)) *extended += ldmc_node_bytes(&w->g->nodes[x]);
  }
}

static int cmp_cand(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->score != y->score) return x->score < y->score ? 1 : -1;
  return (x->v > y->v) - (x->v < y->v);
}

/* Values live across the peak that readers after it could recompute, best first. */
static int32_t candidates(const view *w, const bool *rejected, cand *out) {
  const ldmc_graph *g = w->g;
  const live *L = w->L;
  const ldmc_users *u = w->u;
  int32_t m = 0, t = L->tpeak;
  for (int32_t v = 0; v < g->n_nodes; v++) {
    int32_t s = L->stor[v];
    if (s < 0 || rejected[v] || u->is_output[v] || !recomputable(w, v) || L->pos[v] > t || L->last[s] <= t)
      continue;
    int32_t P = -1, early = L->pos[v];
    for (int32_t j = u->start[v]; j < u->start[v + 1]; j++) {
      int32_t q = L->pos[u->list[j]];
      if (q > t && (P < 0 || q < P)) P = q;
      if (q <= t && q > early) early = q;
    }
    if (P < 0 || P - early < 2) continue; /* read late only through a view, or not late at all */
    int left = MAX_CHAIN;
    int64_t cost = 0, extended = 0;
    chain_cost(w, v, P, s, &left, &cost, &extended);
    int64_t freed = align64(ldmc_node_bytes(&g->nodes[v])) - extended;
    if (freed <= 0) continue;
    out[m++] = (cand){.v = v, .P = P, .freed = freed, .score = (double)freed * (double)(P - early) / (double)cost};
  }
  qsort(out, (size_t)m, sizeof *out, cmp_cand);
  return m;
}

/* ---- the rewrite ---- */
typedef struct rw {
  const view *w;
  const ldmc_graph *g;
  ldmc_graph *out;
  int32_t *map;    /* [n] new id of each node */
  int32_t *copy;   /* [n] latest recomputed copy of a node (new id), -1 */
  bool *in_batch;  /* [n] readers after the peak use the copy */
  int left;        /* nodes the current chain may still duplicate */
} rw;

static int32_t dup_node(rw *r, int32_t a, const int32_t *ops) {
  const ldmc_node *nd = &r->g->nodes[a];
  if (nd->scope && strncmp(nd->scope, "remat", 5) == 0) /* a copy of a copy */
    return ldmc_graph_add(r->out, nd->op, nd->dtype, &nd->shape, nd->n_operands, ops, &nd->attrs, nd->scope);
  size_t len = nd->scope ? strlen(nd->scope) : 0;
  char *scope = malloc(len + 8);
  if (!scope) return -1;
  memcpy(scope, "remat", 6);
  if (len) {
    scope[5] = '.';
    memcpy(scope + 6, nd->scope, len + 1);
  }
  int32_t id = ldmc_graph_add(r->out, nd->op, nd->dtype, &nd->shape, nd->n_operands, ops, &nd->attrs, scope);
  free(scope);
  return id;
}

/* New id of a as read by a chain recomputing `freeing` at position P. */
static int32_t emit(rw *r, int32_t a, int32_t P, int32_t freeing, bool force) {
  if (!force && r->copy[a] >= 0) return r->copy[a];
  /* a batch value's own buffer is being freed: recompute it (when cheap) rather than read it late */
  int way = r->in_batch[a] ? (r->left > 0 ? DUP : EXTEND) : operand_way(r->w, a, P, freeing, r->left);
  if (!force && way != DUP) return r->map[a];
  r->left--;
  const ldmc_node *nd = &r->g->nodes[a];
  int32_t ops[16], *p = nd->n_operands <= 16 ? ops : malloc((size_t)nd->n_operands * sizeof *p);
  if (!p) return -1;
  int32_t id = 0;
  for (int k = 0; k < nd->n_operands && id >= 0; k++) id = p[k] = emit(r, nd->operands[k], P, freeing, false);
  if (id >= 0) id = dup_node(r, a, p);
  if (p != ops) free(p);
  if (id >= 0) r->copy[a] = id;
  return id;
}

/* Rewrites g: each batch value is recomputed right before its first reader
 * after the peak (in id order), and those readers use the copy; then what
 * nothing reads any more is removed. map_out: old id -> new id, -1 removed. */
static ldmc_status rewrite(const view *w, const cand *batch, int32_t nb, ldmc_graph **out, int32_t *map_out) {
  const ldmc_graph *g = w->g;
  const live *L = w->L;
  const ldmc_users *u = w->u;
  int32_t n = g->n_nodes;
  rw r = {.w = w, .g = g, .out = ldmc_graph_new(g->name)};
  r.map = malloc(((size_t)n + 1) * sizeof *r.map);
  r.copy = malloc(((size_t)n + 1) * sizeof *r.copy);
  r.in_batch = calloc((size_t)n + 1, sizeof *r.in_batch);
  int32_t *trig = malloc(((size_t)n + 1) * sizeof *trig), *next = malloc(((size_t)nb + 1) * sizeof *next);
  bool *keep = NULL;
  ldmc_status st = r.out && r.map && r.copy && r.in_batch && trig && next ? LDMC_OK : LDMC_ERR_NOMEM;
  if (st != LDMC_OK) goto done;
  for (int32_t i = 0; i < n; i++) r.copy[i] = trig[i] = -1;
  for (int32_t b = 0; b < nb; b++) { /* trig[i]: batch entries whose first late reader is node i */
    int32_t v = batch[b].v, first = -1;
    r.in_batch[v] = true;
    for (int32_t j = u->start[v]; j < u->start[v + 1]; j++)
      if (L->pos[u->list[j]] > L->tpeak && (first < 0 || u->list[j] < first)) first = u->list[j];
    next[b] = trig[first];
    trig[first] = b;
  }
  for (int32_t i = 0; i < n && st == LDMC_OK; i++) {
    for (int32_t b = trig[i]; b >= 0 && st == LDMC_OK; b = next[b]) {
      int32_t v = batch[b].v;
      if (r.copy[v] >= 0) continue; /* an earlier chain recomputed it already */
      r.left = MAX_CHAIN;
      if (emit(&r, v, batch[b].P, L->stor[v], true) < 0) st = LDMC_ERR_NOMEM;
    }
    const ldmc_node *nd = &g->nodes[i];
    int32_t ops[16], *p = nd->n_operands <= 16 ? ops : malloc((size_t)nd->n_operands * sizeof *p);
    if (!p) {
      st = LDMC_ERR_NOMEM;
      break;
    }
    bool late = L->pos[i] > L->tpeak;
    for (int k = 0; k < nd->n_operands; k++) {
      int32_t x = nd->operands[k];
      p[k] = late && r.in_batch[x] && r.copy[x] >= 0 ? r.copy[x] : r.map[x];
    }
    r.map[i] = ldmc_graph_add(r.out, nd->op, nd->dtype, &nd->shape, nd->n_operands, p, &nd->attrs, nd->scope);
    if (p != ops) free(p);
    if (r.map[i] < 0) st = LDMC_ERR_NOMEM;
  }
  for (int32_t i = 0; i < g->n_outputs && st == LDMC_OK; i++)
    st = ldmc_graph_add_output(r.out, r.map[g->outputs[i]], g->output_names[i]);
  /* dead code: originals whose readers all moved to copies */
  int32_t m = st == LDMC_OK ? r.out->n_nodes : 0;
  keep = calloc((size_t)m + 1, sizeof *keep);
  int32_t *cmap = malloc(((size_t)m + 1) * sizeof *cmap);
  if (st == LDMC_OK && (!keep || !cmap)) st = LDMC_ERR_NOMEM;
  if (st == LDMC_OK) {
    for (int32_t i = 0; i < r.out->n_outputs; i++) keep[r.out->outputs[i]] = true;
    for (int32_t i = m - 1; i >= 0; i--) {
      const ldmc_node *nd = &r.out->nodes[i];
      if (nd->op == LDMC_OP_PARAMETER) keep[i] = true;
      for (int k = 0; keep[i] && k < nd->n_operands; k++) keep[nd->operands[k]] = true;
    }
    st = ldmc_graph_compact(r.out, keep, cmap);
    for (int32_t i = 0; st == LDMC_OK && i < n; i++) map_out[i] = cmap[r.map[i]];
  }
  free(cmap);
done:
  if (st == LDMC_OK) {
    *out = r.out;
  } else {
    ldmc_graph_free(r.out);
    if (st == LDMC_ERR_NOMEM) ldmc_error(st, "remat: out of memory rewriting graph '%s'", g->name);
  }
  free(r.map);
  free(r.copy);
  free(r.in_batch);
  free(trig);
  free(next);
  free(keep);
  return st;
}

static int64_t graph_flops(const ldmc_graph *g) {
  ldmc_flops f = ldmc_graph_flops(g);
  return f.mac + f.other;
}

static bool better(const live *a, const live *b) {
  return a->arena < b->arena || (a->arena == b->arena && a->excess < b->excess);
}

typedef struct run_state {
  ldmc_graph *orig, *cur, *best; /* best: the last graph that lowered the arena (fewest added FLOPs for it) */
  live base, trial;
  ldmc_users u;
  bool *rejected;
  cand *cands;
  int32_t *map;
  int32_t values, best_values, measures;
  int tier;
  int64_t peak0, best_arena;
} run_state;

static void drop(run_state *s, ldmc_graph *x) {
  if (x && x != s->orig && x != s->cur && x != s->best) ldmc_graph_free(x);
}

/* Takes ng (planned into s->trial) as the current graph. */
static ldmc_status accept(run_state *s, ldmc_graph *ng, int32_t k) {
  bool *rej = calloc((size_t)ng->n_nodes + 1, sizeof *rej);
  if (!rej) return ldmc_error(LDMC_ERR_NOMEM, "remat: out of memory");
  for (int32_t i = 0; i < s->cur->n_nodes; i++)
    if (s->map[i] >= 0) rej[s->map[i]] = s->rejected[i];
  free(s->rejected);
  s->rejected = rej;
  ldmc_graph *old = s->cur;
  s->cur = ng;
  drop(s, old);
  s->values += k;
  live t = s->base;
  s->base = s->trial;
  s->trial = t;
  if (s->base.arena < s->best_arena) {
    old = s->best;
    s->best = s->cur;
    drop(s, old);
    s->best_values = s->values;
    s->best_arena = s->base.arena;
  }
  return LDMC_OK;
}

static ldmc_status remat_loop(run_state *s, const ldmc_pass_ctx *ctx, int64_t budget) {
  LDMC_TRY(plan_and_read(s->cur, ctx, budget, &s->base));
  s->measures++;
  s->peak0 = s->best_arena = s->base.arena;
  int fails = 0;
  while (s->base.arena > budget && s->measures < MAX_MEASURES) {
    ldmc_users_free(&s->u);
    LDMC_TRY(ldmc_users_build(s->cur, &s->u));
    int32_t n = s->cur->n_nodes;
    free(s->cands);
    free(s->map);
    s->cands = malloc(((size_t)n + 1) * sizeof *s->cands);
    s->map = malloc(((size_t)n + 1) * sizeof *s->map);
    if (!s->cands || !s->map) return ldmc_error(LDMC_ERR_NOMEM, "remat: out of memory");
    view w = {.g = s->cur, .L = &s->base, .u = &s->u, .tier = s->tier};
    int32_t nc = candidates(&w, s->rejected, s->cands);
    if ((nc == 0 || fails >= MAX_FAILS) && s->tier == 0) { /* cheap values exhausted: contractions too */
      s->tier = 1;
      fails = 0;
      memset(s->rejected, 0, (size_t)n * sizeof *s->rejected);
      continue;
    }
    if (nc == 0 || fails >= MAX_FAILS) break;
    /* enough of the best to bring the peak under the budget */
    int64_t need = s->base.arena - budget, sum = 0;
    int32_t k = 0;
    while (k < nc && sum < need) sum += s->cands[k++].freed;
    for (;;) {
      ldmc_graph *ng = NULL;
      LDMC_TRY(rewrite(&w, s->cands, k, &ng, s->map));
      ldmc_status st = plan_and_read(ng, ctx, budget, &s->trial);
      s->measures++;
      if (st == LDMC_OK && better(&s->trial, &s->base)) st = accept(s, ng, k);
      else ldmc_graph_free(ng), ng = NULL;
      if (st != LDMC_OK) {
        ldmc_graph_free(ng);
        return st;
      }
      if (ng) {
        fails = 0;
        break;
      }
      fails++;
      if (k == 1 || s->measures >= MAX_MEASURES) {
        s->rejected[s->cands[0].v] = true;
        break;
      }
      k /= 2;
    }
  }
  return LDMC_OK;
}

static bool run_remat(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  int64_t budget = ctx ? ctx->memory_budget : 0;
  if (budget <= 0) return false;
  run_state s = {.orig = g, .cur = g};
  int64_t flops0 = graph_flops(g);
  int32_t nodes0 = g->n_nodes;
  ldmc_status st = (s.rejected = calloc((size_t)g->n_nodes + 1, sizeof *s.rejected)) ? LDMC_OK : LDMC_ERR_NOMEM;
  if (st == LDMC_OK) st = remat_loop(&s, ctx, budget);
  else ldmc_error(st, "remat: out of memory");
  /* keep the best graph: the lowest arena, first reached; g itself if nothing lowered it */
  ldmc_graph *keep = st == LDMC_OK ? s.best : NULL;
  ldmc_graph *cur = s.cur, *best = s.best;
  s.cur = s.best = NULL;
  if (cur != keep) drop(&s, cur);
  if (best != keep) drop(&s, best);
  if (keep) ldmc_graph_take(g, keep); /* g gets keep's contents; keep's shell is freed */
  if (st == LDMC_OK && ctx->remat) {
    ldmc_remat_report *r = ctx->remat;
    memset(r, 0, sizeof *r);
    r->budget = budget;
    r->peak_before = s.peak0;
    r->peak_after = s.best_arena;
    r->met = s.best_arena <= budget;
    r->extra_flops = graph_flops(g) - flops0;
    r->nodes_added = g->n_nodes - nodes0;
    r->values = keep ? s.best_values : 0;
    r->measures = s.measures;
  }
  live_free(&s.base);
  live_free(&s.trial);
  ldmc_users_free(&s.u);
  free(s.rejected);
  free(s.cands);
  free(s.map);
  if (st != LDMC_OK) return ldmc_pass_fail(ctx, st);
  return keep != NULL;
}

const ldmc_pass ldmc_pass_remat = {"remat", run_remat, 0};
