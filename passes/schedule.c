/* Scheduling: a topological order of the kernels that lowers peak live
 * memory. A greedy list scheduler picks, among ready kernels, the one whose
 * run adds the fewest bytes (its output minus the buffers it frees); the
 * result is kept only if its simulated peak beats the original order. */
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

/* Storage of kernel outputs: an alias (reshape) kernel shares its operand's
 * storage, so owner() follows aliases to the kernel that allocates. */
typedef struct sched {
  const ldmc_graph *g;
  const ldmc_plan *p;
  int32_t nk;
  int32_t *owner;      /* [nk] kernel owning the storage, -1: none (alias of a parameter/constant) */
  int64_t *bytes;      /* [nk] storage bytes (0 for aliases) */
  bool *is_out;        /* [nk] storage holds a graph output: never freed */
  int32_t *rstart, *rlist; /* readers (kernels) of each storage, CSR, duplicates removed */
  int32_t *dstart, *dlist; /* kernel dependencies, CSR */
} sched;

static int32_t owner_of(const sched *s, int32_t k) {
  const ldmc_kernel *kr = &s->p->kernels[k];
  if (kr->kind == LDMC_KERNEL_PREPACK) return -1; /* kept with the weights */
  if (kr->kind != LDMC_KERNEL_ALIAS) return k;
  int32_t src = s->g->nodes[kr->root].operands[0];
  int32_t ks = s->p->kernel_of[src];
  return ks < 0 ? -1 : s->owner[ks];
}

static void sched_free(sched *s) {
  free(s->owner);
  free(s->bytes);
  free(s->is_out);
  free(s->rstart);
  free(s->rlist);
  free(s->dstart);
  free(s->dlist);
}

static ldmc_status sched_init(sched *s, const ldmc_graph *g, const ldmc_plan *p) {
  memset(s, 0, sizeof *s);
  s->g = g;
  s->p = p;
  int32_t nk = s->nk = p->n_kernels;
  size_t n1 = (size_t)nk + 1;
  int64_t total_in = 0;
  for (int32_t k = 0; k < nk; k++) total_in += p->kernels[k].n_inputs;
  s->owner = malloc(n1 * sizeof *s->owner);
  s->bytes = calloc(n1, sizeof *s->bytes);
  s->is_out = calloc(n1, sizeof *s->is_out);
  s->rstart = calloc(n1 + 1, sizeof *s->rstart);
  s->rlist = malloc(((size_t)total_in + 1) * sizeof *s->rlist);
  s->dstart = calloc(n1 + 1, sizeof *s->dstart);
  s->dlist = malloc(((size_t)total_in + 1) * sizeof *s->dlist);
  if (!s->owner || !s->bytes || !s->is_out || !s->rstart || !s->rlist || !s->dstart || !s->dlist) {
    sched_free(s);
    return ldmc_error(LDMC_ERR_NOMEM, "schedule: out of memory");
  }
  for (int32_t k = 0; k < nk; k++) { /* kernels are in root order: operands come first */
    s->owner[k] = owner_of(s, k);
    s->bytes[k] = s->owner[k] == k ? ldmc_node_bytes(&g->nodes[p->kernels[k].root]) : 0;
  }
  for (int32_t i = 0; i < g->n_outputs; i++) {
    int32_t k = p->kernel_of[g->outputs[i]];
    if (k >= 0 && s->owner[k] >= 0) s->is_out[s->owner[k]] = true;
  }
  /* dependencies, and readers per storage (each kernel counted once per storage) */
  int32_t *seen = malloc(n1 * sizeof *seen);
  if (!seen) {
    sched_free(s);
    return ldmc_error(LDMC_ERR_NOMEM, "schedule: out of memory");
  }
  for (int32_t k = 0; k < nk; k++) seen[k] = -1;
  int32_t nd = 0;
  for (int32_t k = 0; k < nk; k++) {
    s->dstart[k] = nd;
    const ldmc_kernel *kr = &p->kernels[k];
    for (int32_t j = 0; j < kr->n_inputs; j++) {
      int32_t d = p->kernel_of[kr->inputs[j]];
      if (d < 0 || seen[d] == k) continue;
      seen[d] = k;
      s->dlist[nd++] = d;
    }
  }
  s->dstart[nk] = nd;
  /* readers: count then fill */
  for (int32_t k = 0; k < nk; k++) seen[k] = -1;
  int32_t *cnt = calloc(n1 + 1, sizeof *cnt);
  if (!cnt) {
    free(seen);
    sched_free(s);
    return ldmc_error(LDMC_ERR_NOMEM, "schedule: out of memory");
  }
  for (int pass = 0; pass < 2; pass++) {
    for (int32_t k = 0; k < nk; k++) seen[k] = -1;
    for (int32_t k = 0; k < nk; k++)
      for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) {
        int32_t o = s->owner[s->dlist[j]];
        if (o < 0 || seen[o] == k) continue;
        seen[o] = k;
        if (pass == 0) cnt[o + 1]++;
        else s->rlist[cnt[o]++] = k;
      }
    if (pass == 0) {
      for (int32_t k = 0; k < nk; k++) cnt[k + 1] += cnt[k];
      memcpy(s->rstart, cnt, (n1 + 1) * sizeof *cnt);
    }
  }
  free(cnt);
  free(seen);
  return LDMC_OK;
}

/* Peak of live bytes when kernels run in `order`: a kernel's output is live
 * from its run; storage is freed after its last reader. */
static int64_t simulate(const sched *s, const int32_t *order) {
  int32_t nk = s->nk;
  int32_t *left = malloc(((size_t)nk + 1) * sizeof *left);
  if (!left) return INT64_MAX;
  for (int32_t k = 0; k < nk; k++) left[k] = s->rstart[k + 1] - s->rstart[k];
  int64_t live = 0, peak = 0;
  for (int32_t t = 0; t < nk; t++) {
    int32_t k = order[t];
    live += s->bytes[k];
    if (live > peak) peak = live;
    for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) {
      int32_t o = s->owner[s->dlist[j]];
      /* each storage once per kernel: dlist may name two kernels sharing it */
      bool dup = false;
      for (int32_t q = s->dstart[k]; q < j && !dup; q++) dup = s->owner[s->dlist[q]] == o;
      if (o < 0 || dup) continue;
      if (--left[o] == 0 && !s->is_out[o]) live -= s->bytes[o];
    }
    if (left[k] == 0 && s->owner[k] == k && !s->is_out[k]) live -= s->bytes[k]; /* never read */
  }
  free(left);
  return peak;
}

static ldmc_status greedy(const sched *s, int32_t *order) {
  int32_t nk = s->nk;
  size_t n1 = (size_t)nk + 1;
  int32_t *ndeps = malloc(n1 * sizeof *ndeps), *left = malloc(n1 * sizeof *left);
  int32_t *ready = malloc(n1 * sizeof *ready), *ucnt = calloc(n1 + 1, sizeof *ucnt), *ulist = NULL;
  bool *done = calloc(n1, sizeof *done);
  ldmc_status st = LDMC_OK;
  if (!ndeps || !left || !ready || !ucnt || !done) goto nomem;
  /* users of each kernel (reverse dependencies) */
  for (int32_t k = 0; k < nk; k++)
    for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) ucnt[s->dlist[j] + 1]++;
  for (int32_t k = 0; k < nk; k++) ucnt[k + 1] += ucnt[k];
  ulist = malloc(((size_t)ucnt[nk] + 1) * sizeof *ulist);
  int32_t *fill = malloc(n1 * sizeof *fill);
  if (!ulist || !fill) {
    free(fill);
    goto nomem;
  }
  memcpy(fill, ucnt, (size_t)nk * sizeof *fill);
  for (int32_t k = 0; k < nk; k++)
    for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) ulist[fill[s->dlist[j]]++] = k;
  free(fill);
  int32_t nready = 0;
  for (int32_t k = 0; k < nk; k++) {
    ndeps[k] = s->dstart[k + 1] - s->dstart[k];
    left[k] = s->rstart[k + 1] - s->rstart[k];
    if (ndeps[k] == 0) ready[nready++] = k;
  }
  for (int32_t t = 0; t < nk; t++) {
    if (nready == 0) {
      st = ldmc_error(LDMC_ERR_INTERNAL, "schedule: kernel graph has a cycle");
      goto out;
    }
    int32_t best = -1;
    int64_t best_delta = 0;
    for (int32_t r = 0; r < nready; r++) {
      int32_t k = ready[r];
      int64_t delta = s->bytes[k];
      for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) {
        int32_t o = s->owner[s->dlist[j]];
        bool dup = false;
        for (int32_t q = s->dstart[k]; q < j && !dup; q++) dup = s->owner[s->dlist[q]] == o;
        if (o >= 0 && !dup && left[o] == 1 && !s->is_out[o]) delta -= s->bytes[o];
      }
      if (best < 0 || delta < best_delta || (delta == best_delta && k < ready[best])) {
        best = r;
        best_delta = delta;
      }
    }
    int32_t k = ready[best];
    ready[best] = ready[--nready];
    order[t] = k;
    done[k] = true;
    for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) {
      int32_t o = s->owner[s->dlist[j]];
      bool dup = false;
      for (int32_t q = s->dstart[k]; q < j && !dup; q++) dup = s->owner[s->dlist[q]] == o;
      if (o >= 0 && !dup) left[o]--;
    }
    for (int32_t j = ucnt[k]; j < ucnt[k + 1]; j++)
      if (--ndeps[ulist[j]] == 0) ready[nready++] = ulist[j];
  }
  goto out;
nomem:
  st = ldmc_error(LDMC_ERR_NOMEM, "schedule: out of memory");
out:
  free(ndeps);
  free(left);
  free(ready);
  free(ucnt);
  free(ulist);
  free(done);
  return st;
}

static bool run_schedule(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  ldmc_plan *p = ctx ? ctx->plan : NULL;
  if (!p || !p->kernel_of || p->n_nodes != g->n_nodes)
    return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_INVALID, "schedule: needs the fusion plan of this graph"));
  sched s;
  ldmc_status st = sched_init(&s, g, p);
  if (st != LDMC_OK) return ldmc_pass_fail(ctx, st);
  int32_t nk = p->n_kernels;
  int32_t *orig = malloc(((size_t)nk + 1) * sizeof *orig), *gr = malloc(((size_t)nk + 1) * sizeof *gr);
  if (!orig || !gr) {
    free(orig);
    free(gr);
    sched_free(&s);
    return ldmc_pass_fail(ctx, ldmc_error(LDMC_ERR_NOMEM, "schedule: out of memory"));
  }
  for (int32_t k = 0; k < nk; k++) orig[k] = k;
  st = greedy(&s, gr);
  int32_t *pick = orig;
  int64_t peak_orig = simulate(&s, orig), peak_gr = st == LDMC_OK ? simulate(&s, gr) : INT64_MAX;
  if (peak_gr < peak_orig) pick = gr;
  p->peak_in_root_order = peak_orig;
  p->peak_scheduled = peak_gr < peak_orig ? peak_gr : peak_orig;
  sched_free(&s);
  if (st != LDMC_OK) {
    free(orig);
    free(gr);
    return ldmc_pass_fail(ctx, st);
  }
  free(p->order);
  p->order = pick;
  free(pick == orig ? gr : orig);
  p->scheduled = true;
  p->assigned = false;
  return true;
}

const ldmc_pass ldmc_pass_schedule = {"schedule", run_schedule, LDMC_PASS_PLAN};
