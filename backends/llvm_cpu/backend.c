/* The llvm-cpu backend's vtable: compile = plan + JIT, run = execute the plan
 * over an arena kept in the executable. */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

typedef struct lc_exe {
  lc_plan plan;
  ldmc_graph *opt;          /* the pipeline's optimized graph the plan runs (e->graph owns it after compile) */
  void *persist;            /* LC_BUF_PERSIST block: prepack outputs */
  const void **weights_bound; /* weight data pointers the persistent block was computed from */
  bool prepacked;
  int threads;
  pthread_mutex_t mu; /* one run at a time: the arena is shared */
  void *arena;          /* plan.arena_bytes: the pipeline's buffer assignment, kernel scratch included */
  size_t arena_alloc, persist_alloc; /* bytes actually allocated for the arena and the prepacked block */
  lc_prof prof; /* backend.h's profiling hook, when set */
  int32_t *donate; /* per output: the parameter it is written into (donated state), -1; NULL: none */
  void **bases;    /* per run: each buffer's address (kept, so a run allocates nothing) */
  ldmc_output_hook out_hook; /* plan.out_hook points here when set */
} lc_exe;

static void exe_destroy(void *ctx) {
  lc_exe *x = ctx;
  if (!x) return;
  free(x->plan.ready_first); /* before the plan is freed: it clears its fields */
  free(x->plan.ready_list);
  ldmc_lc_plan_free(&x->plan);
  ldmc_graph_free(x->opt); /* NULL once e->graph owns it */
  free(x->persist);
  free(x->weights_bound);
  ldmc_lc_prof_free(&x->prof);
  free(x->arena);
  free(x->donate);
  free(x->bases);
  pthread_mutex_destroy(&x->mu);
  free(x);
}

static void *alloc64(size_t n) { return aligned_alloc(64, ((n ? n : 64) + 63) & ~(size_t)63); }

static ldmc_status exe_run(void *ctx, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs, int n_outputs) {
  lc_exe *x = ctx;
  const lc_plan *p = &x->plan;
  const ldmc_graph *g = p->g;
  pthread_mutex_lock(&x->mu);
  ldmc_status st = LDMC_OK;
  if (!x->bases) x->bases = calloc((size_t)(p->n_bufs ? p->n_bufs : 1), sizeof *x->bases);
  void **bases = x->bases;
  if (!x->arena) {
    x->arena = alloc64(p->arena_bytes);
    x->arena_alloc = x->arena ? p->arena_bytes : 0;
    if (x->arena && p->poison) memset(x->arena, 0xff, p->arena_bytes); /* NaN in every float */
  }
  if (!x->persist) {
    x->persist = alloc64(p->persist_bytes);
    x->persist_alloc = x->persist ? p->persist_bytes : 0;
  }
  if (!x->weights_bound) x->weights_bound = calloc((size_t)(n_inputs > 0 ? n_inputs : 1), sizeof *x->weights_bound);
  if (!bases || !x->arena || !x->persist || !x->weights_bound) {
    st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory for a %zu-byte arena", p->arena_bytes);
    goto done;
  }
  for (int32_t b = 0; b < p->n_bufs; b++) {
    const lc_buf *bf = &p->bufs[b];
    switch (bf->kind) {
      case LC_BUF_INPUT: bases[b] = inputs[bf->param].data; break;
      case LC_BUF_CONST: bases[b] = (void *)bf->data; break;
      case LC_BUF_ARENA: bases[b] = (char *)x->arena + bf->offset; break;
      case LC_BUF_PERSIST: bases[b] = (char *)x->persist + bf->offset; break;
      default: break;
    }
  }
  if (p->n_prepack > 0) { /* (re)compute what derives only from the weights when they change */
    bool same = x->prepacked;
    for (int i = 0; i < n_inputs && same; i++)
      if (i >= p->n_act_params) same = x->weights_bound[i] == inputs[i].data;
    if (!same) {
      x->prepacked = false;
      st = ldmc_lc_exec(p, bases, x->arena, x->threads, true);
      if (st != LDMC_OK) goto done;
      for (int i = 0; i < n_inputs; i++) x->weights_bound[i] = inputs[i].data;
      x->prepacked = true;
    }
  }
  st = ldmc_lc_exec(p, bases, x->arena, x->threads, false);
  for (int o = 0; o < n_outputs && st == LDMC_OK; o++) {
    if (x->donate && x->donate[o] >= 0) continue; /* already in its input's tensor */
    lc_ref r = p->value[g->outputs[o]];
    st = ldmc_output_deliver(g, o, (char *)bases[r.buf] + r.off, x->donate != NULL, &outputs[o]);
  }
  if (st != LDMC_OK && !x->donate)
    for (int o = 0; o < n_outputs; o++) ldmc_tensor_release(&outputs[o]);
done:
  pthread_mutex_unlock(&x->mu);
  return st;
}

static ldmc_status exe_set_profiler(void *ctx, const ldmc_profile_hook *hook) {
  lc_exe *x = ctx;
  ldmc_status st = LDMC_OK;
  pthread_mutex_lock(&x->mu);
  x->plan.prof = NULL; /* the events stay built: toggling the same hook is cheap */
  if (hook && !(x->prof.ev && x->prof.hook.kernel == hook->kernel && x->prof.hook.ctx == hook->ctx)) {
    ldmc_lc_prof_free(&x->prof);
    st = ldmc_lc_prof_init(&x->prof, &x->plan, hook);
  }
  if (hook && st == LDMC_OK) x->plan.prof = &x->prof;
  pthread_mutex_unlock(&x->mu);
  return st;
}

/* Output o is final after the last run step that touches its buffer:
 * output buffers stay live to the end, so nothing else is placed over them. */
static ldmc_status ready_lists(lc_plan *p) {
  const ldmc_graph *g = p->g;
  int32_t no = g->n_outputs, ns = p->n_steps;
  int32_t *slot = malloc((size_t)(no ? no : 1) * sizeof *slot);
  p->ready_first = calloc((size_t)ns + 2, sizeof *p->ready_first);
  p->ready_list = malloc((size_t)(no ? no : 1) * sizeof *p->ready_list);
  if (!slot || !p->ready_first || !p->ready_list) {
    free(slot);
    return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  }
  for (int32_t o = 0; o < no; o++) {
    int32_t b = p->value[g->outputs[o]].buf;
    slot[o] = 0;
    for (int32_t si = 0; b >= 0 && si < ns; si++) {
      const lc_step *st = &p->steps[si];
      if (st->prepack) continue;
      for (int i = 0; i < st->n_refs; i++)
        if (st->refs[i].buf == b) slot[o] = si + 1;
    }
    p->ready_first[slot[o] + 1]++;
  }
  for (int32_t s = 0; s <= ns; s++) p->ready_first[s + 1] += p->ready_first[s];
  int32_t *fill = calloc((size_t)ns + 1, sizeof *fill);
  if (!fill) {
    free(slot);
    return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  }
  for (int32_t o = 0; o < no; o++) p->ready_list[p->ready_first[slot[o]] + fill[slot[o]]++] = o;
  free(fill);
  free(slot);
  return LDMC_OK;
}

static ldmc_status exe_set_output_hook(void *ctx, const ldmc_output_hook *hook) {
  lc_exe *x = ctx;
  ldmc_status st = LDMC_OK;
  pthread_mutex_lock(&x->mu);
  x->plan.out_hook = NULL;
  if (hook && !x->plan.ready_first) st = ready_lists(&x->plan);
  if (hook && st == LDMC_OK) {
    x->out_hook = *hook;
    x->plan.out_hook = &x->out_hook;
  }
  pthread_mutex_unlock(&x->mu);
  return st;
}

static const ldmc_executable_i k_exe_iface = {exe_run, exe_destroy, exe_set_profiler, exe_set_output_hook};

ldmc_status ldmc_llvm_cpu_memory(const ldmc_executable *e, size_t *arena_bytes, size_t *prepacked_bytes) {
  if (!e || e->iface != &k_exe_iface) return ldmc_error(LDMC_ERR_INVALID, "llvm-cpu: not an llvm-cpu executable");
  lc_exe *x = e->context;
  pthread_mutex_lock(&x->mu);
  *arena_bytes = x->arena_alloc;
  *prepacked_bytes = x->persist_alloc;
  pthread_mutex_unlock(&x->mu);
  return LDMC_OK;
}

static ldmc_status lc_compile(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_executable **out) {
  *out = NULL;
  const lc_target *t;
  LDMC_TRY(ldmc_lc_target_get(LDMC_LLVM_CPU_ISA_AUTO, &t));
  ldmc_executable *e = calloc(1, sizeof *e);
  lc_exe *x = calloc(1, sizeof *x);
  if (!e || !x) {
    free(e);
    free(x);
    return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  }
  pthread_mutex_init(&x->mu, NULL);
  x->threads = o && o->threads > 0 ? o->threads : omp_get_max_threads();
  e->iface = &k_exe_iface;
  e->context = x;
  if (o && o->donate) {
    x->donate = malloc((size_t)(g->n_outputs ? g->n_outputs : 1) * sizeof *x->donate);
    if (!x->donate) {
      ldmc_executable_free(e);
      return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    }
    memcpy(x->donate, o->donate, (size_t)g->n_outputs * sizeof *x->donate);
  }
  ldmc_plan *kp = NULL;
  /* the executable's graph is the optimized one: profiler events name its nodes */
  ldmc_status st = ldmc_lc_build(g, o, t, x->threads, &e->graph, &kp, &x->plan);
  ldmc_plan_free(kp);
  if (st == LDMC_OK) {
    lc_kernel **ks = malloc((size_t)(x->plan.n_steps ? x->plan.n_steps : 1) * sizeof *ks);
    int nk = 0;
    if (!ks) st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    for (int32_t i = 0; ks && i < x->plan.n_steps; i++)
      if (x->plan.steps[i].k) ks[nk++] = x->plan.steps[i].k;
    if (st == LDMC_OK)
      st = ldmc_lc_jit_compile(t, ks, nk, o && o->no_disk_cache ? "" : o ? o->cache_dir : NULL, x->threads,
                               o ? o->verbose : 0);
    free(ks);
    if (st == LDMC_OK && o && o->verbose)
      fprintf(stderr,
              "llvm-cpu: graph '%s' (%s): %lld pipeline kernels -> %d steps (%lld prepack), "
              "arena %.1f MiB (planned), prepacked %.1f MiB\n",
              g->name, ldmc_llvm_cpu_isa_name(t->isa), (long long)x->plan.n_kernels, (int)x->plan.n_steps,
              (long long)x->plan.n_prepack, (double)x->plan.arena_bytes / (1 << 20),
              (double)x->plan.persist_bytes / (1 << 20));
  }
  if (st != LDMC_OK) {
    ldmc_executable_free(e);
    return st;
  }
  *out = e;
  return LDMC_OK;
}

/* The plan lc_compile executes, without generating code. */
static ldmc_status lc_plan_only(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_graph **opt, ldmc_plan **plan) {
  const lc_target *t;
  LDMC_TRY(ldmc_lc_target_get(LDMC_LLVM_CPU_ISA_AUTO, &t));
  int threads = o && o->threads > 0 ? o->threads : omp_get_max_threads();
  lc_plan p;
  LDMC_TRY(ldmc_lc_build(g, o, t, threads, opt, plan, &p));
  ldmc_lc_plan_free(&p);
  return LDMC_OK;
}

/* What the lowering generates code for: every op of ops.def in every dtype
 * and layout it allows, except f64 and convolutions with more than two
 * spatial dims (lc_compile refuses those, naming the node). A node reading an
 * f64 value follows the f64 node making it, so the graph is refused either
 * way. Nothing runs on the interpreter. */
static bool lc_supports(const ldmc_node *n) {
  if (n->dtype == LDMC_F64) return false;
  switch (n->op) {
    case LDMC_OP_CONVOLUTION: return n->shape.rank >= 2 && n->shape.rank <= 4;
    default: return true;
  }
}

const ldmc_backend_i ldmc_backend_llvm_cpu = {
    .name = "llvm-cpu",
    .description = "LLVM 19 JIT for the host CPU: vectorized kernels, GEMM/convolution microkernels, OpenMP",
    .supports = lc_supports,
    .compile = lc_compile,
    .plan = lc_plan_only,
};
