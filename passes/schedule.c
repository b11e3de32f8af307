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
  int32_t *estart, *elist; /* order-only dependencies, CSR: a donated kernel after its parameter's readers */
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
  free(s->estart);
  free(s->elist);
}

/* Donated state: kernel k overwrites parameter P's bytes, so every other
 * kernel reading P (or a reshape of it) must run first. A reader that
 * depends on k itself cannot; it is left out here and the buffer checker
 * reports the plan. */
static ldmc_status donation_deps(sched *s) {
  const ldmc_graph *g = s->g;
  const ldmc_plan *p = s->p;
  int32_t nk = s->nk, cap = 0, n = 0, *list = NULL;
  s->estart = calloc((size_t)nk + 2, sizeof *s->estart);
  bool *shares = calloc((size_t)g->n_nodes + 1, sizeof *shares), *desc = calloc((size_t)nk + 1, sizeof *desc);
  int32_t *params = malloc(((size_t)ldmc_graph_num_params(g) + 1) * sizeof *params);
  ldmc_status st = s->estart && shares && desc && params ? LDMC_OK : LDMC_ERR_NOMEM;
  for (int32_t i = 0, q = 0; st == LDMC_OK && i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) params[q++] = i;
  int32_t *from = NULL; /* pairs (k, d) in k order: k runs after d */
  for (int32_t k = 0; st == LDMC_OK && k < nk; k++) {
    int32_t pi = p->kernels[k].donated_to;
    if (pi < 0 || pi >= ldmc_graph_num_params(g)) continue;
    memset(shares, 0, (size_t)g->n_nodes);
    shares[params[pi]] = true;
    for (int32_t i = params[pi] + 1; i < g->n_nodes; i++)
      if (g->nodes[i].op == LDMC_OP_RESHAPE && shares[g->nodes[i].operands[0]]) shares[i] = true;
    memset(desc, 0, (size_t)nk);
    desc[k] = true;
    for (int32_t k2 = k + 1; k2 < nk; k2++) /* kernels are in root order: dependencies come first */
      for (int32_t j = s->dstart[k2]; j < s->dstart[k2 + 1] && !desc[k2]; j++) desc[k2] = desc[s->dlist[j]];
    for (int32_t r = 0; st == LDMC_OK && r < nk; r++) {
      if (r == k || desc[r]) continue;
      bool reads = false;
      for (int32_t j = 0; j < p->kernels[r].n_inputs && !reads; j++) reads = shares[p->kernels[r].inputs[j]];
      if (!reads) continue;
      if (n == cap) {
        cap = cap ? 2 * cap : 64;
        int32_t *nl = realloc(list, (size_t)cap * sizeof *nl), *nf = realloc(from, (size_t)cap * sizeof *nf);
        if (nl) list = nl;
        if (nf) from = nf;
        if (!nl || !nf) {
          st = LDMC_ERR_NOMEM;
          break;
        }
      }
      from[n] = k;
      list[n++] = r;
    }
  }
  if (st == LDMC_OK) {
    for (int32_t e = 0; e < n; e++) s->estart[from[e] + 1]++;
    for (int32_t k = 0; k < nk; k++) s->estart[k + 1] += s->estart[k];
    s->elist = list ? list : malloc(sizeof *s->elist); /* pairs were appended in k order */
    list = NULL;
    if (!s->elist) st = LDMC_ERR_NOMEM;
  }
  free(list);
  free(from);
  free(shares);
  free(desc);
  free(params);
  return st == LDMC_OK ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "schedule: out of memory");
}

/* Whether order runs every donated kernel after its parameter's readers. */
static bool order_keeps_donation(const sched *s, const int32_t *order) {
  if (!s->estart || s->estart[s->nk] == 0) return true;
  int32_t *pos = malloc(((size_t)s->nk + 1) * sizeof *pos);
  if (!pos) return false;
  for (int32_t t = 0; t < s->nk; t++) pos[order[t]] = t;
  bool ok = true;
  for (int32_t k = 0; k < s->nk && ok; k++)
    for (int32_t j = s->estart[k]; j < s->estart[k + 1] && ok; j++) ok = pos[s->elist[j]] < pos[k];
  free(pos);
  return ok;
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
  ldmc_status st = donation_deps(s);
  if (st != LDMC_OK) sched_free(s);
  return st;
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
  for (int32_t k = 0; k < nk; k++) {
    for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) ucnt[s->dlist[j] + 1]++;
    for (int32_t j = s->estart[k]; j < s->estart[k + 1]; j++) ucnt[s->elist[j] + 1]++;
  }
  for (int32_t k = 0; k < nk; k++) ucnt[k + 1] += ucnt[k];
  ulist = malloc(((size_t)ucnt[nk] + 1) * sizeof *ulist);
  int32_t *fill = malloc(n1 * sizeof *fill);
  if (!ulist || !fill) {
    free(fill);
    goto nomem;
  }
  memcpy(fill, ucnt, (size_t)nk * sizeof *fill);
  for (int32_t k = 0; k < nk; k++) {
    for (int32_t j = s->dstart[k]; j < s->dstart[k + 1]; j++) ulist[fill[s->dlist[j]]++] = k;
    for (int32_t j = s->estart[k]; j < s->estart[k + 1]; j++) ulist[fill[s->elist[j]]++] = k;
  }
  free(fill);
  int32_t nready = 0;
  for (int32_t k = 0; k < nk; k++) {
    ndeps[k] = s->dstart[k + 1] - s->dstart[k] + s->estart[k + 1] - s->estart[k];
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
  bool orig_ok = order_keeps_donation(&s, orig);
  if (st == LDMC_OK && (peak_gr < peak_orig || !orig_ok)) pick = gr; /* root order may break donation's order */
  p->peak_in_root_order = peak_orig;
  p->peak_scheduled = pick == gr ? peak_gr : peak_orig;
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
