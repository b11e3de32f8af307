/* The llvm-cpu backend's vtable: compile = plan + JIT, run = execute the plan
 * over an arena kept in the executable. */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

typedef struct lc_exe {
  lc_plan plan;
  int threads;
  pthread_mutex_t mu; /* one run at a time: the arena is shared */
  void *arena, *scratch;
  lc_prof prof; /* backend.h's profiling hook, when set */
} lc_exe;

static void exe_destroy(void *ctx) {
  lc_exe *x = ctx;
  if (!x) return;
  ldmc_lc_plan_free(&x->plan);
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
  (void)n_inputs;
  pthread_mutex_lock(&x->mu);
  ldmc_status st = LDMC_OK;
  void **bases = calloc((size_t)(p->n_bufs ? p->n_bufs : 1), sizeof *bases);
  if (!x->arena) x->arena = alloc64(p->arena_bytes);
  if (!x->scratch) x->scratch = alloc64(p->scratch_bytes * (size_t)x->threads);
  if (!bases || !x->arena || !x->scratch) {
    st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory for a %zu-byte arena", p->arena_bytes);
    goto done;
  }
  for (int32_t b = 0; b < p->n_bufs; b++) {
    const lc_buf *bf = &p->bufs[b];
    switch (bf->kind) {
      case LC_BUF_INPUT: bases[b] = inputs[bf->param].data; break;
      case LC_BUF_CONST: bases[b] = (void *)bf->data; break;
      case LC_BUF_ARENA: bases[b] = (char *)x->arena + bf->offset; break;
      default: break;
    }
  }
  st = ldmc_lc_exec(p, bases, x->scratch, x->threads);
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
  ldmc_graph *c = ldmc_graph_clone(g);
  if (!e || !x || !c) {
    free(e);
    free(x);
    ldmc_graph_free(c);
    return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  }
  pthread_mutex_init(&x->mu, NULL);
  x->threads = o && o->threads > 0 ? o->threads : omp_get_max_threads();
  e->iface = &k_exe_iface;
  e->context = x;
  e->graph = c;
  ldmc_status st = ldmc_lc_plan_build(c, t, x->threads, true, &x->plan);
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
      fprintf(stderr, "llvm-cpu: graph '%s' (%s): %d steps, %lld on the interpreter, arena %.1f MiB\n", g->name,
              ldmc_llvm_cpu_isa_name(t->isa), (int)x->plan.n_steps, (long long)x->plan.n_fallback,
              (double)x->plan.arena_bytes / (1 << 20));
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
