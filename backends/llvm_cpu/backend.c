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
  void *arena, *scratch;
  lc_prof prof; /* backend.h's profiling hook, when set */
} lc_exe;

static void exe_destroy(void *ctx) {
  lc_exe *x = ctx;
  if (!x) return;
  ldmc_lc_plan_free(&x->plan);
  ldmc_graph_free(x->opt); /* NULL once e->graph owns it */
  free(x->persist);
  free(x->weights_bound);
  ldmc_lc_prof_free(&x->prof);
  free(x->arena);
  free(x->scratch);
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
  void **bases = calloc((size_t)(p->n_bufs ? p->n_bufs : 1), sizeof *bases);
  if (!x->arena) x->arena = alloc64(p->arena_bytes);
  if (!x->scratch) x->scratch = alloc64(p->scratch_bytes * (size_t)x->threads);
  if (!x->persist) x->persist = alloc64(p->persist_bytes);
  if (!x->weights_bound) x->weights_bound = calloc((size_t)(n_inputs > 0 ? n_inputs : 1), sizeof *x->weights_bound);
  if (!bases || !x->arena || !x->scratch || !x->persist || !x->weights_bound) {
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
      st = ldmc_lc_exec(p, bases, x->scratch, x->threads, true);
      if (st != LDMC_OK) goto done;
      for (int i = 0; i < n_inputs; i++) x->weights_bound[i] = inputs[i].data;
      x->prepacked = true;
    }
  }
  st = ldmc_lc_exec(p, bases, x->scratch, x->threads, false);
  for (int o = 0; o < n_outputs && st == LDMC_OK; o++) {
    const ldmc_node *n = &g->nodes[g->outputs[o]];
    st = ldmc_tensor_alloc(&outputs[o], g->output_names[o], n->dtype, &n->shape);
    if (st != LDMC_OK) break;
    lc_ref r = p->value[g->outputs[o]];
    if (outputs[o].nbytes) memcpy(outputs[o].data, (char *)bases[r.buf] + r.off, outputs[o].nbytes);
  }
  if (st != LDMC_OK)
    for (int o = 0; o < n_outputs; o++) ldmc_tensor_release(&outputs[o]);
done:
  free(bases);
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

static const ldmc_executable_i k_exe_iface = {exe_run, exe_destroy, exe_set_profiler};

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
  ldmc_plan *kp = NULL;
  ldmc_status st = ldmc_lc_pipeline(g, o, &x->opt, &kp);
  if (st == LDMC_OK) { /* the executable's graph is the optimized one: profiler events name its nodes */
    e->graph = x->opt;
    x->opt = NULL;
    lc_plan_opts po = {.threads = x->threads,
                       .allow_fallback = true,
                       .n_act_params = o && o->params_are_weights ? o->n_activation_params : INT32_MAX,
                       .bf16 = o && o->bf16,
                       .kernels = kp};
    st = ldmc_lc_plan_build(e->graph, t, &po, &x->plan);
  }
  ldmc_plan_free(kp);
  if (st == LDMC_OK) {
    lc_kernel **ks = malloc((size_t)(x->plan.n_steps ? x->plan.n_steps : 1) * sizeof *ks);
    int nk = 0;
    if (!ks) st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    for (int32_t i = 0; ks && i < x->plan.n_steps; i++)
      if (x->plan.steps[i].k) ks[nk++] = x->plan.steps[i].k;
    if (st == LDMC_OK)
      st = ldmc_lc_jit_compile(t, ks, nk, o ? o->cache_dir : NULL, x->threads, o ? o->verbose : 0);
    free(ks);
    if (st == LDMC_OK && o && o->verbose)
      fprintf(stderr,
              "llvm-cpu: graph '%s' (%s): %lld pipeline kernels -> %d steps (%lld prepack, %lld on the interpreter), "
              "arena %.1f MiB, prepacked %.1f MiB\n",
              g->name, ldmc_llvm_cpu_isa_name(t->isa), (long long)x->plan.n_kernels, (int)x->plan.n_steps,
              (long long)x->plan.n_prepack, (long long)x->plan.n_fallback, (double)x->plan.arena_bytes / (1 << 20),
              (double)x->plan.persist_bytes / (1 << 20));
  }
  if (st != LDMC_OK) {
    ldmc_executable_free(e);
    return st;
  }
  *out = e;
  return LDMC_OK;
}

/* Ops with generated code; the others run on the interpreter inside the plan
 * (the same conditions as the lowering's). */
static bool lc_supports(const ldmc_node *n) {
  switch (n->op) {
    case LDMC_OP_GATHER:
    case LDMC_OP_SCATTER_ADD:
    case LDMC_OP_RNG_NORMAL:
    case LDMC_OP_RNG_UNIFORM: return false;
    case LDMC_OP_DOT_GENERAL: return ldmc_dtype_is_float(n->dtype);
    case LDMC_OP_CONVOLUTION: {
      int r = n->shape.rank, ns = r - 2;
      if (ns < 1 || ns > 2) return false;
      for (int i = 0; i < ns; i++)
        if (n->attrs.lhs_dilation.v[i] != 1) return false;
      const int64_t *od = n->attrs.output_dims.v; /* feature-major output, pixels contiguous */
      return od[1] == r - 1 - ns && od[ns + 1] == r - 1 && (ns == 1 || od[2] == r - 2);
    }
    case LDMC_OP_UPSAMPLE_NEAREST: return 2 + 2 * (n->shape.rank - 2) <= LDMC_MAX_RANK;
    default: return true;
  }
}

const ldmc_backend_i ldmc_backend_llvm_cpu = {
    .name = "llvm-cpu",
    .description = "LLVM 19 JIT for the host CPU: vectorized kernels, GEMM/convolution microkernels, OpenMP",
    .supports = lc_supports,
    .compile = lc_compile,
};
