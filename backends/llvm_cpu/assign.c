/* The executed arena is the pass pipeline's buffer assignment.
 *
 * After the plan's kernels are lowered to steps, every arena buffer a step
 * touches is one of two things:
 *   - the value of a kernel root: it goes in the slot buffer assignment gave
 *     that root (the plan's offset, its size, its in-place sharing);
 *   - a temporary of one kernel (packed panels, an f32 accumulator, a value
 *     inlined elsewhere but needed dense here): every step using it executes
 *     that kernel. The temporaries of a kernel are laid out inside the
 *     kernel's scratch (best fit over its steps), followed by the per-thread
 *     scratch its steps need; the total is the kernel's scratch_bytes.
 * Buffer assignment is then run again with those scratch sizes, so the plan
 * that `ldmc compile --target llvm-cpu` prints is the arena that runs. The
 * result is checked: each buffer lies inside its slot or its kernel's scratch
 * and is used only while the plan keeps that region live, and the plan itself
 * passes the independent buffer checker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

/* ---- a best-fit allocator over a sorted free list (temporaries of one kernel) ---- */
typedef struct span {
  size_t off, size;
} span;

typedef struct arena {
  span *free;
  int n, cap;
  size_t top;
} arena;

static size_t blk(size_t n) { return ldmc_lc_align64(n ? n : 64); }

static void arena_alloc(arena *a, size_t size, size_t *off) {
  size = blk(size);
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
    return;
  }
  if (a->n > 0 && a->free[a->n - 1].off + a->free[a->n - 1].size == a->top) { /* grow the span at the top */
    *off = a->free[a->n - 1].off;
    a->n--;
  } else {
    *off = a->top;
  }
  a->top = *off + size;
}

static bool arena_release(arena *a, size_t off, size_t size) {
  size = blk(size);
  int i = 0;
  while (i < a->n && a->free[i].off < off) i++;
  if (a->n == a->cap) {
    int cap = a->cap ? a->cap * 2 : 16;
    span *f = realloc(a->free, (size_t)cap * sizeof *f);
    if (!f) return false;
    a->free = f;
    a->cap = cap;
  }
  memmove(&a->free[i + 1], &a->free[i], (size_t)(a->n - i) * sizeof(span));
  a->free[i] = (span){off, size};
  a->n++;
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

/* Lays out the temporaries tmp[0..n) of one kernel (sorted by def) by their
 * step lifetimes; returns the bytes they need. */
static ldmc_status layout_temps(lc_plan *p, const int32_t *tmp, int32_t n, int32_t *by_last, size_t *top) {
  memcpy(by_last, tmp, (size_t)n * sizeof *by_last);
  for (int32_t i = 1; i < n; i++) { /* by last step */
    int32_t v = by_last[i], j = i - 1;
    while (j >= 0 && p->bufs[by_last[j]].last > p->bufs[v].last) {
      by_last[j + 1] = by_last[j];
      j--;
    }
    by_last[j + 1] = v;
  }
  arena a = {0};
  int32_t id = 0, il = 0;
  while (id < n) {
    int32_t s = p->bufs[tmp[id]].def;
    while (il < n && p->bufs[by_last[il]].last < s) { /* dead before step s */
      lc_buf *b = &p->bufs[by_last[il++]];
      if (!arena_release(&a, b->local, b->size)) {
        free(a.free);
        return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
      }
    }
    while (id < n && p->bufs[tmp[id]].def == s) {
      lc_buf *b = &p->bufs[tmp[id++]];
      arena_alloc(&a, b->size, &b->local);
    }
  }
  *top = a.top;
  free(a.free);
  return LDMC_OK;
}

typedef struct asg {
  lc_plan *p;
  ldmc_plan *kp;
  int32_t nk;
  int32_t *kpos_of;  /* kernel id -> position */
  int32_t *plast;    /* node (root) -> last position the plan keeps it live (nk: an output) */
  int32_t *tcount;   /* per position: temporaries */
  int32_t *tstart;
  int32_t *tlist;
  size_t *thread_scratch; /* per position: the largest per-thread scratch of its steps */
  int32_t *lo, *hi;  /* per buffer holding roots: the positions the plan keeps its slot live */
} asg;

static ldmc_status fail_buf(const lc_plan *p, int32_t b, const char *what) {
  const lc_buf *bf = &p->bufs[b];
  int32_t node = bf->def < p->n_steps ? p->steps[bf->def].node : -1;
  return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: buffer %d (%zu bytes, steps %d..%d, first at %%%d) %s", (int)b,
                    bf->size, (int)bf->def, (int)bf->last, (int)node, what);
}

/* Step lifetimes; a graph output's buffer is read after the last step. */
static void lifetimes(lc_plan *p) {
  for (int32_t b = 0; b < p->n_bufs; b++) p->bufs[b].def = INT32_MAX, p->bufs[b].last = -1;
  for (int32_t s = 0; s < p->n_steps; s++)
    for (int r = 0; r < p->steps[s].n_refs; r++) {
      int32_t b = p->steps[s].refs[r].buf;
      if (b < 0) continue;
      if (s < p->bufs[b].def) p->bufs[b].def = s;
      if (s > p->bufs[b].last) p->bufs[b].last = s;
    }
  for (int32_t o = 0; o < p->g->n_outputs; o++) {
    int32_t b = p->value[p->g->outputs[o]].buf;
    if (b >= 0) p->bufs[b].last = p->n_steps;
  }
}

/* Which arena buffers hold kernel roots, and the plan's lifetime of each root. */
static ldmc_status classify(asg *a) {
  lc_plan *p = a->p;
  ldmc_plan *kp = a->kp;
  const ldmc_graph *g = p->g;
  for (int32_t t = 0; t < a->nk; t++) a->kpos_of[kp->order[t]] = t;
  for (int32_t i = 0; i < g->n_nodes; i++) a->plast[i] = -1;
  for (int32_t k = 0; k < a->nk; k++) {
    const ldmc_kernel *kr = &kp->kernels[k];
    if (a->kpos_of[k] > a->plast[kr->root]) a->plast[kr->root] = a->kpos_of[k];
    for (int32_t j = 0; j < kr->n_inputs; j++) {
      int32_t x = kr->inputs[j];
      if (a->kpos_of[k] > a->plast[x]) a->plast[x] = a->kpos_of[k];
    }
  }
  for (int32_t o = 0; o < g->n_outputs; o++) a->plast[g->outputs[o]] = a->nk;
  /* a view read in place keeps its source's storage until the view's last
   * reader (chains of views: the later ones first) */
  for (int32_t t = a->nk - 1; t >= 0; t--) {
    const ldmc_kernel *kr = &kp->kernels[kp->order[t]];
    if (kr->view_of >= 0 && a->plast[kr->root] > a->plast[kr->view_of]) a->plast[kr->view_of] = a->plast[kr->root];
  }
  /* an alias root lives as long as anything sharing its storage: take the
   * storage's slot from the root whose buffer it is */
  for (int32_t k = 0; k < a->nk; k++) {
    int32_t r = kp->kernels[k].root;
    lc_ref v = p->value[r];
    if (v.buf < 0 && kp->kernels[k].storage_of >= 0) v = p->value[kp->kernels[k].storage_of];
    if (v.buf < 0 || v.off != 0 || p->bufs[v.buf].kind != LC_BUF_ARENA || kp->offset[r] < 0) continue;
    lc_buf *b = &p->bufs[v.buf];
    int32_t t = a->kpos_of[k];
    if (b->root >= 0) {
      if (kp->offset[b->root] != kp->offset[r])
        return fail_buf(p, v.buf, "holds two kernel roots with different planned slots");
    } else {
      if ((int64_t)b->size > kp->size[r]) return fail_buf(p, v.buf, "is larger than its root's planned slot");
      b->root = r;
      a->lo[v.buf] = t;
      a->hi[v.buf] = a->plast[r];
    }
    if (t < a->lo[v.buf]) a->lo[v.buf] = t;
    if (a->plast[r] > a->hi[v.buf]) a->hi[v.buf] = a->plast[r];
  }
  return LDMC_OK;
}

/* Buckets the temporaries by kernel position and lays each kernel's out. */
static ldmc_status plan_temps(asg *a) {
  lc_plan *p = a->p;
  int32_t nk = a->nk;
  for (int32_t b = 0; b < p->n_bufs; b++) {
    lc_buf *bf = &p->bufs[b];
    if (bf->kind != LC_BUF_ARENA || bf->root >= 0) continue;
    if (bf->last < 0) { /* no step uses it (a size-0 placeholder) */
      bf->kpos = -1;
      continue;
    }
    if (bf->def >= p->n_steps) { /* read after the steps but written by none (empty): holds nothing */
      bf->kpos = -1;
      continue;
    }
    if (bf->last >= p->n_steps) return fail_buf(p, b, "is a graph output that no kernel root holds");
    int32_t t0 = p->steps[bf->def].kpos, t1 = p->steps[bf->last].kpos;
    if (t0 != t1 || t0 < 0 || t0 >= nk) return fail_buf(p, b, "is a temporary used by more than one kernel");
    bf->kpos = t0;
    a->tcount[t0]++;
  }
  int32_t sum = 0;
  for (int32_t t = 0; t < nk; t++) a->tstart[t] = sum, sum += a->tcount[t], a->tcount[t] = 0;
  for (int32_t b = 0; b < p->n_bufs; b++) { /* ascending buffer ids: ascending def within a kernel? sort below */
    lc_buf *bf = &p->bufs[b];
    if (bf->kind != LC_BUF_ARENA || bf->root >= 0 || bf->kpos < 0) continue;
    a->tlist[a->tstart[bf->kpos] + a->tcount[bf->kpos]++] = b;
  }
  for (int32_t s = 0; s < p->n_steps; s++) {
    int32_t t = p->steps[s].kpos;
    size_t need = p->steps[s].k && p->steps[s].k->scratch ? blk(p->steps[s].k->scratch) : 0;
    if (need == 0) continue;
    if (t < 0 || t >= nk) return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: step %d needs scratch outside any kernel", (int)s);
    if (need > a->thread_scratch[t]) a->thread_scratch[t] = need;
  }
  int32_t *tmp = malloc(((size_t)sum + 1) * sizeof *tmp);
  if (!tmp) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  ldmc_status st = LDMC_OK;
  for (int32_t t = 0; t < nk && st == LDMC_OK; t++) {
    int32_t *list = a->tlist + a->tstart[t], n = a->tcount[t];
    /* sort by (def, id): pack (def << 20 | rank) is not safe; insertion sort */
    for (int32_t i = 1; i < n; i++) {
      int32_t v = list[i], j = i - 1;
      while (j >= 0 && p->bufs[list[j]].def > p->bufs[v].def) {
        list[j + 1] = list[j];
        j--;
      }
      list[j + 1] = v;
    }
    size_t top = 0;
    st = layout_temps(p, list, n, tmp, &top);
    ldmc_kernel *kr = &a->kp->kernels[a->kp->order[t]];
    kr->scratch_bytes = (int64_t)(top + a->thread_scratch[t] * (size_t)(p->threads > 0 ? p->threads : 1));
    a->thread_scratch[t] = top; /* from here on: where the per-thread scratch starts */
  }
  for (int32_t s = 0; s < p->n_steps && st == LDMC_OK; s++) { /* relative until the kernel's scratch is placed */
    int32_t t = p->steps[s].kpos;
    p->steps[s].scratch_off = t >= 0 && t < nk ? a->thread_scratch[t] : 0;
  }
  free(tmp);
  return st;
}

/* Each buffer within its planned region, used only while the plan keeps it live. */
static ldmc_status verify(const asg *a) {
  const lc_plan *p = a->p;
  const ldmc_plan *kp = a->kp;
  for (int32_t b = 0; b < p->n_bufs; b++) {
    const lc_buf *bf = &p->bufs[b];
    if (bf->kind != LC_BUF_ARENA || bf->last < 0) continue;
    if (bf->def >= p->n_steps) { /* an output no step writes (empty): only where it sits matters */
      if (bf->root >= 0 && (int64_t)bf->offset != kp->offset[bf->root]) return fail_buf(p, b, "is not in its slot");
      continue;
    }
    int32_t t0 = p->steps[bf->def].kpos;
    int32_t t1 = bf->last >= p->n_steps ? a->nk : p->steps[bf->last].kpos;
    if (bf->root >= 0) {
      int32_t r = bf->root;
      if ((int64_t)bf->offset != kp->offset[r] || (int64_t)bf->size > kp->size[r])
        return fail_buf(p, b, "is not inside its root's planned slot");
      if (t0 < a->lo[b] || t1 > a->hi[b]) return fail_buf(p, b, "is used outside its root's planned lifetime");
    } else {
      const ldmc_kernel *kr = &kp->kernels[kp->order[bf->kpos]];
      if (t0 != bf->kpos || t1 != bf->kpos || kr->scratch_offset < 0 ||
          (int64_t)(bf->offset + bf->size) > kr->scratch_offset + kr->scratch_bytes ||
          (int64_t)bf->offset < kr->scratch_offset)
        return fail_buf(p, b, "is not inside its kernel's planned scratch");
    }
    if ((int64_t)(bf->offset + bf->size) > kp->arena_bytes) return fail_buf(p, b, "ends past the planned arena");
  }
  return LDMC_OK;
}

/* LDMC_LLVM_CPU_DUMP_ASSIGN=1: the plan, the steps and the buffers on stderr (debugging) */
static void dump(const lc_plan *p, const ldmc_plan *kp) {
  char *s = ldmc_plan_print(kp, p->g);
  fprintf(stderr, "%s", s ? s : "");
  free(s);
  for (int32_t i = 0; i < p->n_steps; i++) {
    const lc_step *st = &p->steps[i];
    fprintf(stderr, "step %d kpos %d %%%d %s%s bufs", (int)i, (int)st->kpos, (int)st->node,
            ldmc_op_name(p->g->nodes[st->node].op), st->prepack ? " prepack" : "");
    for (int r = 0; r < st->n_refs; r++) fprintf(stderr, " %d", (int)st->refs[r].buf);
    fprintf(stderr, "\n");
  }
  for (int32_t b = 0; b < p->n_bufs; b++) {
    const lc_buf *bf = &p->bufs[b];
    fprintf(stderr, "buf %d kind %d size %zu kpos %d root %d steps %d..%d off %zu\n", (int)b, (int)bf->kind, bf->size,
            (int)bf->kpos, (int)bf->root, (int)bf->def, (int)bf->last, bf->offset);
  }
}

ldmc_status ldmc_lc_assign_planned(lc_plan *p, ldmc_plan *kp) {
  const ldmc_graph *g = p->g;
  if (!kp->assigned || !kp->scheduled || kp->n_nodes != g->n_nodes)
    return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: the pipeline's plan has no buffer assignment for this graph");
  asg a = {.p = p, .kp = kp, .nk = kp->n_kernels};
  size_t n1 = (size_t)a.nk + 1;
  a.kpos_of = malloc(n1 * sizeof *a.kpos_of);
  a.plast = malloc(((size_t)g->n_nodes + 1) * sizeof *a.plast);
  a.tcount = calloc(n1, sizeof *a.tcount);
  a.tstart = calloc(n1, sizeof *a.tstart);
  a.tlist = malloc(((size_t)p->n_bufs + 1) * sizeof *a.tlist);
  a.thread_scratch = calloc(n1, sizeof *a.thread_scratch);
  a.lo = malloc(((size_t)p->n_bufs + 1) * sizeof *a.lo);
  a.hi = malloc(((size_t)p->n_bufs + 1) * sizeof *a.hi);
  ldmc_status st = LDMC_OK;
  if (!a.kpos_of || !a.plast || !a.tcount || !a.tstart || !a.tlist || !a.thread_scratch || !a.lo || !a.hi)
    st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  if (st == LDMC_OK) {
    lifetimes(p);
    st = classify(&a);
  }
  if (st == LDMC_OK) st = plan_temps(&a);
  if (st == LDMC_OK) { /* the steps per kernel, then buffer assignment with the scratch */
    for (int32_t k = 0; k < a.nk; k++) kp->kernels[k].n_steps = kp->kernels[k].n_prepack_steps = 0;
    for (int32_t s = 0; s < p->n_steps; s++) {
      int32_t t = p->steps[s].kpos;
      if (t < 0 || t >= a.nk) continue;
      ldmc_kernel *kr = &kp->kernels[kp->order[t]];
      kr->n_steps++;
      kr->n_prepack_steps += p->steps[s].prepack;
    }
    ldmc_pass_ctx ctx = {.plan = kp, .status = &st};
    if (!ldmc_pass_buffers.run((ldmc_graph *)g, &ctx) && st == LDMC_OK)
      st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: buffer assignment failed");
  }
  if (st == LDMC_OK) {
    for (int32_t b = 0; b < p->n_bufs; b++) {
      lc_buf *bf = &p->bufs[b];
      if (bf->kind != LC_BUF_ARENA) continue;
      if (bf->root >= 0) bf->offset = (size_t)kp->offset[bf->root];
      else if (bf->kpos >= 0) bf->offset = (size_t)kp->kernels[kp->order[bf->kpos]].scratch_offset + bf->local;
      else bf->offset = 0; /* unused */
    }
    for (int32_t s = 0; s < p->n_steps; s++) {
      int32_t t = p->steps[s].kpos;
      const ldmc_kernel *kr = t >= 0 && t < a.nk ? &kp->kernels[kp->order[t]] : NULL;
      p->steps[s].scratch_off += kr && kr->scratch_offset >= 0 ? (size_t)kr->scratch_offset : 0;
    }
    p->arena_bytes = (size_t)kp->arena_bytes;
    p->persist_bytes = 0;
    for (int32_t b = 0; b < p->n_bufs; b++)
      if (p->bufs[b].kind == LC_BUF_PERSIST) {
        p->bufs[b].offset = p->persist_bytes;
        p->persist_bytes += blk(p->bufs[b].size);
      }
    kp->prepacked_bytes = (int64_t)p->persist_bytes;
    kp->executed_by = "llvm-cpu";
    kp->threads = p->threads > 0 ? p->threads : 1;
    st = verify(&a);
  }
  if (st == LDMC_OK && (st = ldmc_plan_check_buffers(kp, g)) != LDMC_OK) /* e.g. donated state that cannot be ordered */
    ldmc_error_prefix("llvm-cpu: the plan cannot run as assigned: ");
  const char *dv = getenv("LDMC_LLVM_CPU_DUMP_ASSIGN");
  if (dv && *dv && *dv != '0') dump(p, kp);
  free(a.kpos_of);
  free(a.plast);
  free(a.tcount);
  free(a.tstart);
  free(a.tlist);
  free(a.thread_scratch);
  free(a.lo);
  free(a.hi);
  return st;
}
