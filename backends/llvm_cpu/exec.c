/* Running a plan: each step calls its kernel over its tiles, spread across
 * OpenMP threads (dynamic scheduling of tile ranges, one scratch area per
 * thread); every step is generated code. Steps run in order; the end of
 * each parallel region is the barrier between them. */
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backends/llvm_cpu/lc.h"

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

/* LDMC_LLVM_CPU_POISON: after step s, the bytes of every arena buffer whose
 * last step is s are set to NaN, except where a buffer still live overlaps
 * them (an in-place successor). A step reading a buffer the plan already
 * considers dead then produces NaN, which the tests see. */
static void poison_dead(const lc_plan *p, char *arena, int32_t s) {
  for (int32_t d = 0; d < p->n_bufs; d++) {
    const lc_buf *db = &p->bufs[d];
    if (db->kind != LC_BUF_ARENA || db->last != s || db->size == 0) continue;
    size_t lo = db->offset, hi = db->offset + db->size;
    /* cut out the live ranges: poison [lo, hi) piecewise */
    size_t at = lo;
    while (at < hi) {
      size_t end = hi;
      bool live = false;
      for (int32_t l = 0; l < p->n_bufs; l++) {
        const lc_buf *lb = &p->bufs[l];
        if (lb->kind != LC_BUF_ARENA || lb->last <= s || lb->def > s || lb->size == 0) continue;
        size_t a = lb->offset, b = lb->offset + lb->size;
        if (a <= at && at < b) {
          live = true;
          end = b < hi ? b : hi;
          break;
        }
        if (a > at && a < end) end = a;
      }
      if (!live) memset(arena + at, 0xff, end - at);
      at = end;
    }
  }
}

/* below this much work (element operations) a step runs on one thread */
static const double k_parallel_work = 1 << 17;

static bool is_parallel(const lc_step *s, int threads) {
  return s->k && threads > 1 && s->k->n_tiles > 1 && s->k->work >= k_parallel_work;
}

static int64_t n_chunks(const lc_step *s, int threads) {
  int64_t n = s->k->n_tiles;
  return n < (int64_t)threads * 8 ? n : (int64_t)threads * 8;
}

/* Thread tid's scratch for step s: planned inside the step's kernel's scratch. */
static void run_chunk(const lc_step *s, void *const *bases, int64_t c, int64_t chunks, char *arena, int tid) {
  void *ptrs[LC_MAX_BUFS];
  step_ptrs(s, bases, ptrs);
  int64_t n = s->k->n_tiles;
  void *scratch = s->k->scratch ? arena + s->scratch_off + (size_t)tid * ldmc_lc_align64(s->k->scratch) : NULL;
  s->k->fn(ptrs, c * n / chunks, (c + 1) * n / chunks, scratch);
}

enum { k_stop = 0x7fffffff };

/* The output hook for slot (0: before the first step, s + 1: after step s). */
static void outputs_ready(const lc_plan *p, void *const *bases, int32_t slot) {
  for (int32_t i = p->ready_first[slot]; i < p->ready_first[slot + 1]; i++) {
    int32_t o = p->ready_list[i];
    lc_ref r = p->value[p->g->outputs[o]];
    p->out_hook->ready(p->out_hook->ctx, o, r.buf < 0 ? NULL : (char *)bases[r.buf] + r.off);
  }
}

/* Threads come from one OpenMP parallel region per run. Thread 0 walks the
 * steps; a parallel step is published as a cursor (step << 32 | next chunk)
 * that every thread, thread 0 included, claims chunks from with a CAS, and the
 * step ends when all its chunks are done — not when every thread has arrived,
 * so a helper the OS has descheduled delays nothing (a barrier per step would
 * wait for it: on a busy machine that costs a time slice per step). Chunks
 * cover fixed tile ranges, so results do not depend on which thread ran what. */
ldmc_status ldmc_lc_exec(const lc_plan *p, void *const *bases, void *arena, int threads, bool prepack) {
  const char *prof = getenv("LDMC_LLVM_CPU_PROFILE");
  double *times = prof && *prof && *prof != '0' ? calloc((size_t)(p->n_steps ? p->n_steps : 1), sizeof *times) : NULL;
  ldmc_status st = LDMC_OK;
  if (threads < 1) threads = 1;
  if (threads > p->threads && p->threads > 0) threads = p->threads; /* scratch is planned for p->threads */
  bool any_parallel = false;
  int32_t n_run = 0;
  for (int32_t si = 0; si < p->n_steps; si++)
    if (p->steps[si].prepack == prepack) {
      n_run++;
      any_parallel = any_parallel || is_parallel(&p->steps[si], threads);
    }
  if (n_run == 0) {
    free(times);
    return LDMC_OK;
  }
  if (!any_parallel) threads = 1;
  _Atomic uint64_t cursor = (uint64_t)k_stop << 32 | 0xffffffffu; /* nothing to claim yet */
  _Atomic int64_t done = 0;
#pragma omp parallel num_threads(threads)
  {
    int tid = omp_get_thread_num();
    char *ab = arena;
    if (tid != 0) { /* helper: claim chunks of whatever step is published */
      unsigned spins = 0;
      for (;;) {
        uint64_t c = atomic_load_explicit(&cursor, memory_order_acquire);
        uint32_t si = (uint32_t)(c >> 32), k = (uint32_t)c;
        if (si == (uint32_t)k_stop && k == 0) break;
        if (si < (uint32_t)p->n_steps && k < n_chunks(&p->steps[si], threads) &&
            atomic_compare_exchange_weak_explicit(&cursor, &c, c + 1, memory_order_acq_rel, memory_order_relaxed)) {
          run_chunk(&p->steps[si], bases, k, n_chunks(&p->steps[si], threads), ab, tid);
          atomic_fetch_add_explicit(&done, 1, memory_order_release);
          spins = 0;
          continue;
        }
        if (++spins < 2000) __builtin_ia32_pause();
        else sched_yield();
      }
    } else {
      double t_prev = times ? now_s() : 0;
      int64_t p_prev = p->prof ? ldmc_profile_now_ns() : 0; /* backend.h's profiling hook */
      if (p->out_hook && !prepack) outputs_ready(p, bases, 0);
      for (int32_t si = 0; si < p->n_steps && st == LDMC_OK; si++) {
        const lc_step *s = &p->steps[si];
        if (s->prepack != prepack) continue;
        if (!s->k) { /* every step is generated code: nothing runs on the interpreter */
          st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: step %d (%%%d %s) has no kernel", (int)si, (int)s->node,
                          ldmc_op_name(p->g->nodes[s->node].op));
        } else if (!is_parallel(s, threads)) {
          run_chunk(s, bases, 0, 1, ab, tid);
        } else {
          int64_t chunks = n_chunks(s, threads);
          atomic_store_explicit(&done, 0, memory_order_relaxed);
          atomic_store_explicit(&cursor, (uint64_t)si << 32, memory_order_release);
          for (;;) { /* work too, then wait for the chunks others hold */
            uint64_t c = atomic_load_explicit(&cursor, memory_order_acquire);
            uint32_t k = (uint32_t)c;
            if (k >= chunks) break;
            if (atomic_compare_exchange_weak_explicit(&cursor, &c, c + 1, memory_order_acq_rel, memory_order_relaxed)) {
              run_chunk(s, bases, k, chunks, ab, tid);
              atomic_fetch_add_explicit(&done, 1, memory_order_release);
            }
          }
          unsigned spins = 0;
          while (atomic_load_explicit(&done, memory_order_acquire) < chunks) {
            if (++spins < 2000) __builtin_ia32_pause();
            else sched_yield();
          }
        }
        if (__builtin_expect(p->poison, 0) && !prepack) poison_dead(p, ab, si);
        if (times) {
          double t = now_s();
          times[si] = t - t_prev;
          t_prev = t;
        }
        if (__builtin_expect(p->prof != NULL, 0) && !prepack) { /* prepack runs are not step time */
          int64_t t = ldmc_profile_now_ns();
          ldmc_lc_prof_report(p->prof, si, p_prev, t);
          p_prev = t;
        }
        if (__builtin_expect(p->out_hook != NULL, 0) && !prepack) outputs_ready(p, bases, si + 1);
      }
      atomic_store_explicit(&cursor, (uint64_t)k_stop << 32, memory_order_release); /* helpers leave */
    }
  }
  if (times && !prepack) profile_report(p, times);
  free(times);
  return st;
}
