/* Microbenchmarks of the machine: f32 FMA throughput from many independent
 * FMA chains (AVX-512, AVX2+FMA or scalar, chosen at run time) and memory
 * bandwidth from a STREAM triad, each at a given thread count (OpenMP).
 * These loops must be optimized whatever the build type, or a debug build
 * would measure the stack instead of the FMA units. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/profiler.h"

#define CHAINS 16 /* > FMA latency x FMA ports on current x86 cores (4 x 2) */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* x_j <- x_j * a + b for iters rounds on CHAINS vectors starting at j; with
 * a = b = 1 each lane ends at j + iters, exactly while that is below 2^24. */
#define FMA_CHAINS(T, SET1, FMADD, STORE, W)                                                                    \
  T va = SET1(a), vb = SET1(b);                                                                                 \
  T x0 = SET1(0), x1 = SET1(1), x2 = SET1(2), x3 = SET1(3), x4 = SET1(4), x5 = SET1(5), x6 = SET1(6),           \
    x7 = SET1(7), x8 = SET1(8), x9 = SET1(9), x10 = SET1(10), x11 = SET1(11), x12 = SET1(12), x13 = SET1(13),  \
    x14 = SET1(14), x15 = SET1(15);                                                                             \
  for (int64_t i = 0; i < iters; i++) {                                                                         \
    x0 = FMADD(x0, va, vb); x1 = FMADD(x1, va, vb); x2 = FMADD(x2, va, vb); x3 = FMADD(x3, va, vb);             \
    x4 = FMADD(x4, va, vb); x5 = FMADD(x5, va, vb); x6 = FMADD(x6, va, vb); x7 = FMADD(x7, va, vb);             \
    x8 = FMADD(x8, va, vb); x9 = FMADD(x9, va, vb); x10 = FMADD(x10, va, vb); x11 = FMADD(x11, va, vb);         \
    x12 = FMADD(x12, va, vb); x13 = FMADD(x13, va, vb); x14 = FMADD(x14, va, vb); x15 = FMADD(x15, va, vb);     \
  }                                                                                                             \
  STORE(out + 0 * W, x0); STORE(out + 1 * W, x1); STORE(out + 2 * W, x2); STORE(out + 3 * W, x3);               \
  STORE(out + 4 * W, x4); STORE(out + 5 * W, x5); STORE(out + 6 * W, x6); STORE(out + 7 * W, x7);               \
  STORE(out + 8 * W, x8); STORE(out + 9 * W, x9); STORE(out + 10 * W, x10); STORE(out + 11 * W, x11);           \
  STORE(out + 12 * W, x12); STORE(out + 13 * W, x13); STORE(out + 14 * W, x14); STORE(out + 15 * W, x15);

__attribute__((target("avx512f"), noinline)) static void fma_avx512(int64_t iters, float a, float b, float *out) {
  FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, 16)
}

__attribute__((target("avx2,fma"), noinline)) static void fma_avx2(int64_t iters, float a, float b, float *out) {
  FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, 8)
}

static inline float set1f(float v) { return v; }
static inline float madd(float x, float a, float b) { return x * a + b; }
static inline void store1(float *p, float v) { *p = v; }
__attribute__((noinline)) static void fma_scalar(int64_t iters, float a, float b, float *out) {
  FMA_CHAINS(float, set1f, madd, store1, 1)
}

typedef void (*fma_fn)(int64_t, float, float, float *);

static fma_fn pick_fma(int *lanes, const char **isa) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    *lanes = 16, *isa = "avx512";
    return fma_avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    *lanes = 8, *isa = "avx2";
    return fma_avx2;
  }
  *lanes = 1, *isa = "scalar";
  return fma_scalar;
}

double ldmc_bench_fma(int threads, int64_t iters, bool *ok, const char **isa) {
  int lanes;
  const char *name;
  fma_fn fn = pick_fma(&lanes, &name);
  if (isa) *isa = name;
  if (threads < 1) threads = 1;
  if (iters < 1) iters = 1;
  float *out = aligned_alloc(64, (size_t)threads * CHAINS * 16 * sizeof(float));
  if (!out) return -1;
  volatile float one = 1.0f; /* unknown to the compiler: x * 1 + 1 stays an FMA */
  float a = one, b = one;
  double t0 = now_s();
#pragma omp parallel num_threads(threads)
  fn(iters, a, b, out + (size_t)omp_get_thread_num() * CHAINS * 16);
  double t = now_s() - t0;
  bool good = true;
  for (int th = 0; th < threads; th++)
    for (int j = 0; j < CHAINS; j++)
      for (int l = 0; l < lanes; l++)
        good &= out[(size_t)th * CHAINS * 16 + (size_t)j * lanes + (size_t)l] == (float)((double)j + (double)iters);
  free(out);
  if (ok) *ok = good;
  return t > 0 ? (double)threads * (double)iters * CHAINS * lanes * 2 / t * 1e-9 : 0;
}

/* One timed triad over arrays already touched by the same thread layout. */
static double triad_once(int threads, float *a, const float *b, const float *c, int64_t n) {
  volatile float sv = 3.0f;
  float s = sv;
  double t0 = now_s();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
  double t = now_s() - t0;
  return t > 0 ? 12.0 * (double)n / t * 1e-9 : 0;
}

static void triad_init(int threads, float *a, float *b, float *c, int64_t n) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    a[i] = 0;
    b[i] = (float)(i & 1023);
    c[i] = 2.0f;
  }
}

static bool triad_check(const float *a, int64_t n) {
  for (int64_t i = 0; i < n; i += 1 + n / 97)
    if (a[i] != (float)(i & 1023) + 6.0f) return false;
  return n == 0 || a[n - 1] == (float)((n - 1) & 1023) + 6.0f;
}

double ldmc_bench_triad(int threads, int64_t n, bool *ok) {
  if (threads < 1) threads = 1;
  if (n < 1) n = 1;
  size_t bytes = ((size_t)n * sizeof(float) + 63) & ~(size_t)63;
  float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes), *c = aligned_alloc(64, bytes);
  double best = -1;
  if (a && b && c) {
    triad_init(threads, a, b, c, n);
    best = 0;
    for (int r = 0; r < 3; r++) {
      double g = triad_once(threads, a, b, c, n);
      best = g > best ? g : best;
    }
    if (ok) *ok = triad_check(a, n);
  }
  free(a);
  free(b);
  free(c);
  return best;
}

/* 1..16, then powers of two, then max. */
static int thread_counts(int max, int *out) {
  int n = 0;
  for (int t = 1; t <= max && n < LDMC_MACHINE_MAX_POINTS; t = t < 16 ? t + 1 : t * 2) out[n++] = t;
  if (n > 0 && out[n - 1] != max) {
    if (n == LDMC_MACHINE_MAX_POINTS) n--;
    out[n++] = max;
  }
  return n;
}

ldmc_status ldmc_machine_calibrate(int max_threads, FILE *log, ldmc_machine *m) {
  memset(m, 0, sizeof *m);
  ldmc_machine_cpu_name(m->cpu, sizeof m->cpu);
  m->nproc = ldmc_machine_nproc();
  if (max_threads < 1) max_threads = m->nproc;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(m->measured, sizeof m->measured, "%Y-%m-%dT%H:%M:%SZ", &tm);
  /* FMA rounds for about 25 ms per measurement, from a short probe */
  bool ok = true;
  const char *isa = "scalar";
  int64_t probe = 1 << 14;
  double t0 = now_s();
  ldmc_bench_fma(1, probe, &ok, &isa);
  double tp = now_s() - t0;
  int64_t iters = tp > 0 ? (int64_t)((double)probe * 0.025 / tp) : probe;
  if (iters > (1 << 24) - CHAINS) iters = (1 << 24) - CHAINS;
  if (iters < probe) iters = probe;
  snprintf(m->isa, sizeof m->isa, "%s", isa);
  /* triad arrays of 128 MiB each, past the last-level cache of most parts;
   * 256 MiB where the cache is larger */
  long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  int64_t n = (int64_t)1 << (l3 > (128l << 20) ? 26 : 25);
  size_t bytes = (size_t)n * sizeof(float);
  float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes), *c = aligned_alloc(64, bytes);
  if (!a || !b || !c) {
    free(a);
    free(b);
    free(c);
    return ldmc_error(LDMC_ERR_NOMEM, "calibration: out of memory for %zu MiB of triad arrays", 3 * bytes >> 20);
  }
  triad_init(max_threads, a, b, c, n);
  m->n = thread_counts(max_threads, m->threads);
  ldmc_status st = LDMC_OK;
  for (int i = 0; i < m->n && st == LDMC_OK; i++) {
    int t = m->threads[i];
    double best = 0, bw = 0;
    for (int r = 0; r < 7 && st == LDMC_OK; r++) { /* best of several: other processes only slow it down */
      double g = ldmc_bench_fma(t, iters, &ok, NULL);
      if (!ok || g < 0) st = ldmc_error(LDMC_ERR_INTERNAL, "calibration: the FMA microbenchmark computed wrong values");
      best = g > best ? g : best;
      if (r % 2) continue;
      double w = triad_once(t, a, b, c, n);
      bw = w > bw ? w : bw;
    }
    if (st == LDMC_OK && !triad_check(a, n))
      st = ldmc_error(LDMC_ERR_INTERNAL, "calibration: the triad microbenchmark computed wrong values");
    m->gflops[i] = best;
    m->gbs[i] = bw;
    if (log && st == LDMC_OK)
      fprintf(log, "  %3d thread%s: FMA %9.1f GFLOP/s (%s)   triad %7.1f GB/s\n", t, t == 1 ? " " : "s", best,
              m->isa, bw);
  }
  free(a);
  free(b);
  free(c);
  return st;
}
