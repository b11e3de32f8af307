/* Running a plan: each step calls its kernel over its tiles, spread across
 * OpenMP threads (dynamic scheduling of tile ranges, one scratch area per
 * thread), or evaluates its node on the reference interpreter. Steps run in
 * order; the end of each parallel region is the barrier between them. */
#include <omp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* LDMC_LLVM_CPU_PROFILE=1: time per step, summed by op with the ops' FLOPs,
 * printed after the run */
static void profile_report(const lc_plan *p, const double *t) {
  double by_op[LDMC_OP_COUNT] = {0}, fl[LDMC_OP_COUNT] = {0}, total = 0, total_fl = 0;
  int64_t cnt[LDMC_OP_COUNT] = {0};
  int32_t last = -1;
  for (int32_t s = 0; s < p->n_steps; s++) {
    int32_t id = p->steps[s].node;
    ldmc_op op = p->g->nodes[id].op;
    by_op[op] += t[s];
    cnt[op]++;
    total += t[s];
    if (id != last) { /* a node's steps are consecutive: count its FLOPs once */
      ldmc_flops f = ldmc_node_flops(p->g, id);
      fl[op] += (double)(f.mac + f.other);
      total_fl += (double)(f.mac + f.other);
      last = id;
    }
  }
  fprintf(stderr, "llvm-cpu profile: %d steps, %.3f ms, %.1f GFLOP/s\n", (int)p->n_steps, total * 1e3,
          total > 0 ? total_fl / total / 1e9 : 0.0);
  for (int k = 0; k < LDMC_OP_COUNT; k++) {
    int best = -1;
    for (int op = 0; op < LDMC_OP_COUNT; op++)
      if (cnt[op] && (best < 0 || by_op[op] > by_op[best])) best = op;
    if (best < 0) break;
    fprintf(stderr, "  %-18s %6lld steps %10.3f ms %5.1f%% %8.1f GFLOP/s\n", ldmc_op_name((ldmc_op)best),
            (long long)cnt[best], by_op[best] * 1e3, 100 * by_op[best] / (total > 0 ? total : 1),
            by_op[best] > 0 ? fl[best] / by_op[best] / 1e9 : 0.0);
    cnt[best] = 0;
  }
}

static void step_ptrs(const lc_step *s, void *const *bases, void **ptrs) {
  for (int i = 0; i < s->n_refs; i++) ptrs[i] = s->refs[i].buf < 0 ? NULL : (char *)bases[s->refs[i].buf] + s->refs[i].off;
}

/* below this much work (element operations) a step runs on one thread */
static const double k_parallel_work = 1 << 17;

/* One parallel region for the whole plan: each step is an `omp for` over
 * chunks of its tiles (dynamic), or a `single` when it is small or runs on the
 * interpreter; the implicit barriers order the steps. */
ldmc_status ldmc_lc_exec(const lc_plan *p, void *const *bases, void *scratch, int threads) {
  const char *prof = getenv("LDMC_LLVM_CPU_PROFILE");
  double *times = prof && *prof && *prof != '0' ? calloc((size_t)(p->n_steps ? p->n_steps : 1), sizeof *times) : NULL;
  ldmc_status st = LDMC_OK;
  char msg[1024] = {0};
  size_t sb = p->scratch_bytes;
  if (threads < 1) threads = 1;
#pragma omp parallel num_threads(threads)
  {
    int tid = omp_get_thread_num();
    char *my = (char *)scratch + (size_t)tid * sb;
    double t_prev = times && tid == 0 ? now_s() : 0;
    int64_t p_prev = p->prof && tid == 0 ? ldmc_profile_now_ns() : 0; /* backend.h's profiling hook */
    for (int32_t si = 0; si < p->n_steps; si++) {
      const lc_step *s = &p->steps[si];
      ldmc_status cur;
#pragma omp atomic read
      cur = st;
      if (cur != LDMC_OK) break; /* every thread reads it after the same barrier */
      void *ptrs[LC_MAX_BUFS];
      step_ptrs(s, bases, ptrs);
      int64_t n = s->k ? s->k->n_tiles : 0;
      if (!s->k || omp_get_num_threads() == 1 || n <= 1 || s->k->work < k_parallel_work) {
#pragma omp single
        {
          if (!s->k) {
            ldmc_status r = run_fallback(p, s, ptrs);
            if (r != LDMC_OK) {
              snprintf(msg, sizeof msg, "%s", ldmc_last_error());
#pragma omp atomic write
              st = r;
            }
          } else {
            s->k->fn(ptrs, 0, n, my);
          }
        }
      } else {
        int64_t chunks = n < (int64_t)threads * 8 ? n : (int64_t)threads * 8;
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < chunks; c++) s->k->fn(ptrs, c * n / chunks, (c + 1) * n / chunks, my);
      }
      if (times && tid == 0) {
        double t = now_s();
        times[si] = t - t_prev;
        t_prev = t;
      }
      if (__builtin_expect(p->prof != NULL, 0) && tid == 0) { /* after the step's barrier */
        int64_t t = ldmc_profile_now_ns();
        ldmc_lc_prof_report(p->prof, si, p_prev, t);
        p_prev = t;
      }
    }
  }
  if (st != LDMC_OK) ldmc_error(st, "%s", msg);
  if (times) profile_report(p, times);
  free(times);
  return st;
}
