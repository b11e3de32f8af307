/* Running a plan: each step calls its kernel over its tiles, spread across
 * OpenMP threads (dynamic scheduling of tile ranges, one scratch area per
 * thread), or evaluates its node on the reference interpreter. Steps run in
 * order; the end of each parallel region is the barrier between them. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"
#include "backends/llvm_cpu/lc.h"

static ldmc_status run_fallback(const lc_plan *p, const lc_step *s, void *const *ptrs) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[s->node];
  ldmc_tensor views[LC_MAX_BUFS];
  const ldmc_tensor *in[LC_MAX_BUFS];
  memset(views, 0, sizeof views);
  for (int i = 0; i < s->n_refs; i++) {
    const ldmc_node *v = i == 0 ? n : &g->nodes[n->operands[i - 1]];
    views[i].dtype = v->dtype;
    views[i].shape = v->shape;
    views[i].data = ptrs[i];
    views[i].nbytes = (size_t)ldmc_lc_numel(&v->shape) * ldmc_dtype_size(v->dtype);
    if (i > 0) in[i - 1] = &views[i];
  }
  ldmc_interp_args a = {.node = n, .in = in, .out = &views[0]};
  ldmc_status st = ldmc_interp_eval(&a);
  if (st != LDMC_OK) ldmc_error_prefix("llvm-cpu: interpreter fallback for %%%d %s: ", (int)s->node, ldmc_op_name(n->op));
  return st;
}

ldmc_status ldmc_lc_exec(const lc_plan *p, void *const *bases, void *scratch, int threads) {
  for (int32_t si = 0; si < p->n_steps; si++) {
    const lc_step *s = &p->steps[si];
    void *ptrs[LC_MAX_BUFS];
    for (int i = 0; i < s->n_refs; i++)
      ptrs[i] = s->refs[i].buf < 0 ? NULL : (char *)bases[s->refs[i].buf] + s->refs[i].off;
    if (!s->k) {
      LDMC_TRY(run_fallback(p, s, ptrs));
      continue;
    }
    lc_kernel_fn fn = s->k->fn;
    int64_t n = s->k->n_tiles;
    if (threads <= 1 || n <= 1) {
      fn(ptrs, 0, n, scratch);
      continue;
    }
    int64_t chunks = n < (int64_t)threads * 8 ? n : (int64_t)threads * 8;
    size_t sb = p->scratch_bytes;
#pragma omp parallel num_threads(threads)
    {
      char *my = (char *)scratch + (size_t)omp_get_thread_num() * sb;
#pragma omp for schedule(dynamic, 1)
      for (int64_t c = 0; c < chunks; c++) fn(ptrs, c * n / chunks, (c + 1) * n / chunks, my);
    }
  }
  return LDMC_OK;
}
