/* Buffer assignment: every kernel output gets a 64-byte aligned offset in one
 * arena. Liveness intervals come from the schedule (a buffer lives from the
 * kernel that writes it to its last reader; graph outputs to the end). An
 * alias (reshape) kernel shares its operand's buffer. A kernel writes in
 * place over an input buffer whose last reader it is when the sizes match and
 * every use of that input inside the kernel is an elementwise op at the
 * output's index (elementwise loops, epilogue residuals). Prepack outputs
 * live with the weights, outside the arena. A kernel's scratch (the
 * temporaries its backend steps need, ldmc_kernel.scratch_bytes, set by the
 * backend that lowers the plan) is one more buffer live only while that
 * kernel runs. Offsets are placed greedily by decreasing size at the lowest
 * gap free over the interval. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

#define ALIGN 64

typedef struct store {
  int64_t size; /* aligned */
  int32_t def, last;
  int64_t offset;
} store;

typedef struct bctx {
  const ldmc_graph *g;
  ldmc_plan *p;
  int32_t nk;
  int32_t *pos;   /* [nk] position in the order */
  int32_t *owner; /* [nk] storage (kernel id) the output lives in, -1: outside the arena */
  int32_t *base;  /* [nk] kernel allocating the output before in-place merges (aliases follow operands) */
  int32_t *merged;/* [nk] storage a kernel's storage was merged into (itself if none) */
  store *st;      /* [2 nk] indexed by owning kernel; st[nk + k]: kernel k's scratch */
  bool *is_out;   /* [nk] kernel root is a graph output */
  bool *sout;     /* [nk] storage holds a graph output */
  int32_t *glast; /* [nk] last use of everything sharing a base storage */
  bool *mark;
  int32_t *stack;
} bctx;

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* Every node of kernel kr reachable from input x is an elementwise op (or a
 * reshape) with the root's element count. */
static bool index_preserving(bctx *c, const ldmc_users *u, const ldmc_kernel *kr, int32_t k, int32_t x) {
  int64_t numel = ldmc_node_numel(&c->g->nodes[kr->root]);
  int32_t sp = 0, nv = 0;
  int32_t *visited = c->stack + c->g->n_nodes;
  bool ok = true;
  c->stack[sp++] = x;
  while (sp > 0 && ok) {
    int32_t y = c->stack[--sp];
    for (int32_t j = u->start[y]; j < u->start[y + 1] && ok; j++) {
      int32_t z = u->list[j];
      if (c->p->kernel_of[z] != k || c->mark[z]) continue;
      c->mark[z] = true;
      visited[nv++] = z;
      const ldmc_node *zn = &c->g->nodes[z];
      bool ew = (ldmc_op_table[zn->op].flags & LDMC_OPF_ELEMENTWISE) || zn->op == LDMC_OP_RESHAPE;
      if (!ew || ldmc_node_numel(zn) != numel) ok = false;
      else c->stack[sp++] = z;
    }
  }
  for (int32_t i = 0; i < nv; i++) c->mark[visited[i]] = false;
  return ok;
}

/* Storage a kernel output lives in, following in-place merges. */
static int32_t find(const bctx *c, int32_t b) {
  while (b >= 0 && c->merged[b] != b) b = c->merged[b];
  return b;
}

/* The input storage kernel k may overwrite, or -1. */
static int32_t inplace_candidate(bctx *c, const ldmc_users *u, int32_t k) {
  const ldmc_kernel *kr = &c->p->kernels[k];
  if (kr->kind == LDMC_KERNEL_ALIAS || kr->kind == LDMC_KERNEL_COPY || kr->kind == LDMC_KERNEL_OPAQUE) return -1;
  if (kr->no_inplace || kr->view_of >= 0 || kr->storage_of >= 0) return -1;
  const ldmc_node *root = &c->g->nodes[kr->root];
  int64_t bytes = ldmc_node_bytes(root);
  for (int32_t j = 0; j < kr->n_inputs; j++) {
    int32_t kx = c->p->kernel_of[kr->inputs[j]];
    if (kx < 0) continue;
    /* a strided view (transpose, broadcast, slice) is not read at the output's index */
    if (c->p->kernels[kx].view_of >= 0 || c->p->kernels[kx].storage_of >= 0) continue;
    int32_t o = find(c, c->base[kx]);
    if (o < 0 || c->sout[o] || c->st[o].last != c->pos[k] || c->st[o].size != align_up(bytes)) continue;
    /* every input living in that storage must be read index-preserving, at the same element size */
    bool ok = true;
    for (int32_t q = 0; q < kr->n_inputs && ok; q++) {
      int32_t y = kr->inputs[q], ky = c->p->kernel_of[y];
      if (ky < 0 || find(c, c->base[ky]) != o) continue;
      const ldmc_node *yn = &c->g->nodes[y];
      ok = ldmc_node_bytes(yn) == bytes && ldmc_dtype_size(yn->dtype) == ldmc_dtype_size(root->dtype) &&
           index_preserving(c, u, kr, k, y);
    }
    if (ok) return o;
  }
  return -1;
}

typedef struct placed {
  int64_t off, end;
} placed;

static int cmp_placed(const void *a, const void *b) {
  const placed *x = a, *y = b;
  return (x->off > y->off) - (x->off < y->off);
}

static const store *g_sort_st;
static int cmp_store(const void *a, const void *b) {
  const store *x = &g_sort_st[*(const int32_t *)a], *y = &g_sort_st[*(const int32_t *)b];
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  if (x->def != y->def) return x->def < y->def ? -1 : 1;
  return (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b);
}

static ldmc_status place(bctx *c) {
  int32_t nk = c->nk, ns = 0;
  int32_t *ids = malloc((2 * (size_t)nk + 1) * sizeof *ids);
  placed *pl = malloc((2 * (size_t)nk + 1) * sizeof *pl);
  if (!ids || !pl) {
    free(ids);
    free(pl);
    return ldmc_error(LDMC_ERR_NOMEM, "buffers: out of memory");
  }
  for (int32_t k = 0; k < nk; k++)
    if (c->owner[k] == k) ids[ns++] = k;
  for (int32_t k = 0; k < nk; k++)
    if (c->st[nk + k].size > 0) ids[ns++] = nk + k;
  g_sort_st = c->st; /* qsort has no context argument; the pass runs on one thread */
  qsort(ids, (size_t)ns, sizeof *ids, cmp_store);
  int64_t arena = 0;
  for (int32_t i = 0; i < ns; i++) {
    store *s = &c->st[ids[i]];
    int32_t np = 0;
    for (int32_t j = 0; j < i; j++) {
      const store *o = &c->st[ids[j]];
      if (o->def <= s->last && s->def <= o->last) pl[np++] = (placed){o->offset, o->offset + o->size};
    }
    qsort(pl, (size_t)np, sizeof *pl, cmp_placed);
    int64_t off = 0;
    for (int32_t j = 0; j < np; j++) {
      if (pl[j].off >= off + s->size) break;
      if (pl[j].end > off) off = pl[j].end;
    }
    s->offset = off;
    if (off + s->size > arena) arena = off + s->size;
  }
  c->p->arena_bytes = arena;
  free(ids);
  free(pl);
  return LDMC_OK;
}

static ldmc_status assign(bctx *c) {
  ldmc_plan *p = c->p;
  const ldmc_graph *g = c->g;
  int32_t nk = c->nk;
  for (int32_t t = 0; t < nk; t++) c->pos[p->order[t]] = t;
  for (int32_t i = 0; i < g->n_outputs; i++) {
    int32_t k = p->kernel_of[g->outputs[i]];
    if (k >= 0) c->is_out[k] = true;
  }
  ldmc_users u;
  LDMC_TRY(ldmc_users_build(g, &u));
  /* last reader of each kernel output */
  int32_t *last = malloc(((size_t)nk + 1) * sizeof *last);
  if (!last) {
    ldmc_users_free(&u);
    return ldmc_error(LDMC_ERR_NOMEM, "buffers: out of memory");
  }
  for (int32_t k = 0; k < nk; k++) last[k] = c->is_out[k] ? nk : c->pos[k];
  for (int32_t k = 0; k < nk; k++)
    for (int32_t j = 0; j < p->kernels[k].n_inputs; j++) {
      int32_t d = p->kernel_of[p->kernels[k].inputs[j]];
      if (d >= 0 && c->pos[k] > last[d]) last[d] = c->pos[k];
    }
  /* aliases share their operand's storage (kernels are in root order: operands first) */
  for (int32_t k = 0; k < nk; k++) {
    c->merged[k] = k;
    c->base[k] = k;
    if (p->kernels[k].kind == LDMC_KERNEL_PREPACK) {
      c->base[k] = -1; /* stored with the weights */
      p->prepacked_bytes += ldmc_node_bytes(&g->nodes[p->kernels[k].root]);
    } else if (p->kernels[k].donated_to >= 0) {
      c->base[k] = -1; /* written into the caller's state tensor */
    } else if (p->kernels[k].kind == LDMC_KERNEL_ALIAS || p->kernels[k].view_of >= 0) {
      int32_t src = p->kernels[k].view_of >= 0 ? p->kernels[k].view_of : g->nodes[p->kernels[k].root].operands[0];
      int32_t ks = p->kernel_of[src];
      c->base[k] = ks < 0 ? -1 : c->base[ks];
    }
    c->glast[k] = -1;
  }
  for (int32_t k = 0; k < nk; k++) {
    int32_t b = c->base[k];
    if (b < 0) continue;
    if (last[k] > c->glast[b]) c->glast[b] = last[k];
    if (c->is_out[k]) c->sout[b] = true;
  }
  /* in execution order, a kernel may take over an input's storage that it reads last */
  for (int32_t t = 0; t < nk; t++) {
    int32_t k = p->order[t];
    ldmc_kernel *kr = &p->kernels[k];
    kr->inplace_of = -1;
    if (c->base[k] != k) continue; /* alias */
    int32_t held = kr->storage_of >= 0 ? kr->storage_of : kr->root; /* the value the storage holds */
    c->st[k] = (store){.size = align_up(ldmc_node_bytes(&g->nodes[held])), .def = t, .last = c->glast[k]};
    int32_t o = inplace_candidate(c, &u, k);
    if (o < 0) continue;
    for (int32_t j = 0; j < kr->n_inputs; j++) {
      int32_t kx = p->kernel_of[kr->inputs[j]];
      if (kx >= 0 && find(c, c->base[kx]) == o) {
        kr->inplace_of = kr->inputs[j];
        break;
      }
    }
    c->merged[k] = o;
    if (c->st[k].last > c->st[o].last) c->st[o].last = c->st[k].last;
    if (c->sout[k]) c->sout[o] = true;
  }
  for (int32_t k = 0; k < nk; k++) c->owner[k] = find(c, c->base[k]);
  for (int32_t k = 0; k < nk; k++) {
    int64_t sb = p->kernels[k].scratch_bytes;
    c->st[nk + k] = (store){.size = sb > 0 ? align_up(sb) : 0, .def = c->pos[k], .last = c->pos[k]};
  }
  free(last);
  ldmc_users_free(&u);
  LDMC_TRY(place(c));
  /* per-node offsets and the live peak */
  p->scratch_bytes = 0;
  for (int32_t k = 0; k < nk; k++) {
    int32_t r = p->kernels[k].root, o = c->owner[k];
    p->offset[r] = o >= 0 ? c->st[o].offset : -1;
    p->size[r] = o >= 0 ? ldmc_node_bytes(&g->nodes[r]) : 0;
    if (o >= 0 && (p->kernels[k].view_of >= 0 || p->kernels[k].storage_of >= 0))
      p->size[r] = c->st[o].size; /* a view spans the storage it reads */
    p->kernels[k].scratch_offset = c->st[nk + k].size > 0 ? c->st[nk + k].offset : -1;
    p->scratch_bytes += c->st[nk + k].size;
  }
  int64_t *delta = calloc((size_t)nk + 2, sizeof *delta);
  if (!delta) return ldmc_error(LDMC_ERR_NOMEM, "buffers: out of memory");
  for (int32_t k = 0; k < 2 * nk; k++)
    if (k >= nk ? c->st[k].size > 0 : c->owner[k] == k) {
      delta[c->st[k].def] += c->st[k].size;
      delta[c->st[k].last + 1] -= c->st[k].size;
    }
  int64_t live = 0, peak = 0;
  for (int32_t t = 0; t <= nk; t++) {
    live += delta[t];
    if (live > peak) peak = live;
  }
  free(delta);
  p->live_peak_bytes = peak;
  p->assigned = true;
  return LDMC_OK;
}

static bool run_buffers(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  ldmc_plan *p = ctx ? ctx->plan : NULL;
  if (!p || !p->kernel_of || p->n_nodes != g->n_nodes || !p->scheduled)
    return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_INVALID, "buffers: needs a scheduled plan of this graph"));
  bctx c = {.g = g, .p = p, .nk = p->n_kernels};
  p->prepacked_bytes = 0;
  size_t n1 = (size_t)c.nk + 1, nn = (size_t)g->n_nodes + 1;
  c.pos = malloc(n1 * sizeof *c.pos);
  c.owner = malloc(n1 * sizeof *c.owner);
  c.st = calloc(2 * n1, sizeof *c.st);
  c.is_out = calloc(n1, sizeof *c.is_out);
  c.sout = calloc(n1, sizeof *c.sout);
  c.base = malloc(n1 * sizeof *c.base);
  c.merged = malloc(n1 * sizeof *c.merged);
  c.glast = malloc(n1 * sizeof *c.glast);
  c.mark = calloc(nn, sizeof *c.mark);
  c.stack = malloc(2 * nn * sizeof *c.stack);
  free(p->offset);
  free(p->size);
  p->offset = malloc(nn * sizeof *p->offset);
  p->size = calloc(nn, sizeof *p->size);
  ldmc_status s = LDMC_OK;
  if (!c.pos || !c.owner || !c.st || !c.is_out || !c.sout || !c.base || !c.merged || !c.glast || !c.mark || !c.stack ||
      !p->offset || !p->size)
    s = ldmc_error(LDMC_ERR_NOMEM, "buffers: out of memory");
  if (s == LDMC_OK) {
    for (int32_t i = 0; i < g->n_nodes; i++) p->offset[i] = -1;
    s = assign(&c);
  }
  free(c.pos);
  free(c.owner);
  free(c.st);
  free(c.is_out);
  free(c.sout);
  free(c.base);
  free(c.merged);
  free(c.glast);
  free(c.mark);
  free(c.stack);
  if (s != LDMC_OK) {
    p->assigned = false;
    return ldmc_pass_fail(ctx, s);
  }
  return true;
}

const ldmc_pass ldmc_pass_buffers = {"buffers", run_buffers, LDMC_PASS_PLAN};
