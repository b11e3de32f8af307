/* GEMM and convolution shapes of the SD-1.5 U-Net family on the llvm-cpu
 * backend, with the machine's FMA peak measured in the same run.
 *   llvm_cpu_gemm [--threads N] [--reps N] [--c 320|64] [--json] [--no-bf16] [--no-prepack] [--only TEXT]
 * Prints one line per shape: GFLOP/s, fraction of the measured peak, and on
 * avx512_bf16 hosts the same shape with bf16 operands (vdpbf16ps, f32
 * accumulation) and its speedup over f32. The weight (parameter 1) is declared
 * a weight, so it is packed once (--no-prepack: packed every run). The
 * peers (OpenBLAS sgemm through numpy) run in bench/gemm_peers.py, which calls
 * this program and prints the ratios measured in the same run. */
#include <immintrin.h>
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 20 independent FMA chains in named registers (an array would live in
 * memory): FLOPs = iters * 20 * lanes * 2 per thread */
#define FMA_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19)
__attribute__((target("avx512f,fma"))) static float fma_loop(long iters, float s) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(s + (float)i);
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define SUM(i) t = _mm512_add_ps(t, a##i);
  FMA_CHAINS(DECL)
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
    FMA_CHAINS(STEP)
    __asm__ volatile("" ::: "memory");
  }
  __m512 t = _mm512_setzero_ps();
  FMA_CHAINS(SUM)
  return _mm512_reduce_add_ps(t);
#undef DECL
#undef STEP
#undef SUM
}

__attribute__((target("avx2,fma"))) static float fma_loop256(long iters, float s) {
#define DECL(i) __m256 a##i = _mm256_set1_ps(s + (float)i);
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, m, c);
#define SUM(i) t = _mm256_add_ps(t, a##i);
  FMA_CHAINS(DECL)
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
    FMA_CHAINS(STEP)
    __asm__ volatile("" ::: "memory");
  }
  __m256 t = _mm256_setzero_ps();
  FMA_CHAINS(SUM)
  float out[8];
  _mm256_storeu_ps(out, t);
  return out[0];
#undef DECL
#undef STEP
#undef SUM
}

static double fma_peak(int threads) {
  bool avx512 = ldmc_llvm_cpu_host_isa() == LDMC_LLVM_CPU_ISA_AVX512;
  long iters = 20000000;
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    volatile float sink = 0;
    double t0 = now();
#pragma omp parallel num_threads(threads)
    {
      float r = avx512 ? fma_loop(iters, (float)omp_get_thread_num()) : fma_loop256(iters, (float)omp_get_thread_num());
#pragma omp atomic
      sink += r;
    }
    double dt = now() - t0;
    double flops = (double)iters * 20 * (avx512 ? 16 : 8) * 2.0 * threads;
    if (flops / dt > best) best = flops / dt;
    (void)sink;
  }
  return best / 1e9;
}

typedef struct shape {
  const char *name;
  int conv;           /* 0: matmul M x K x N; 1: conv 3x3 pad 1; 2: conv 1x1 */
  int64_t a, b, c, d; /* matmul: M, K, N; conv: Cin, Cout, H, W */
  int stride;
} shape;

/* best time of reps runs (after one that touches the arena) on compile options o; < 0 on error */
static double time_shape(const ldmc_graph *g, const ldmc_compile_opts *o, int reps, const char *name) {
  ldmc_executable *e;
  if (ldmc_backend_llvm_cpu.compile(g, o, &e) != LDMC_OK) {
    fprintf(stderr, "%s: %s\n", name, ldmc_last_error());
    return -1;
  }
  int np = ldmc_graph_num_params(g);
  ldmc_tensor in[2];
  for (int32_t n = 0, k = 0; n < g->n_nodes && k < np; n++) {
    if (g->nodes[n].op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[k], g->nodes[n].attrs.name, LDMC_F32, &g->nodes[n].shape);
    float *p = in[k].data;
    for (size_t j = 0; j < in[k].nbytes / 4; j++) p[j] = (float)((j * 7919 % 1000) / 1000.0 - 0.5);
    k++;
  }
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++) {
    ldmc_tensor out;
    double t0 = now();
    ldmc_executable_run(e, in, np, &out, 1);
    double dt = now() - t0;
    if (r > 0 && dt < best) best = dt; /* the first run touches the arena (and prepacks the weights) */
    ldmc_tensor_release(&out);
  }
  for (int k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
  ldmc_executable_free(e);
  return best;
}

static ldmc_graph *build(const shape *s, double *flops) {
  ldmc_builder *b = ldmc_builder_new(s->name);
  ldmc_value y;
  if (!s->conv) {
    int64_t xd[2] = {s->a, s->b}, wd[2] = {s->b, s->c};
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, xd); /* parameter 0: the activation */
    y = ldmc_matmul(b, x, ldmc_parameter(b, "w", LDMC_F32, 2, wd));
    *flops = 2.0 * (double)s->a * (double)s->b * (double)s->c;
  } else {
    int k = s->conv == 1 ? 3 : 1;
    int64_t xd[4] = {1, s->a, s->c, s->d}, wd[4] = {s->b, s->a, k, k};
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd); /* parameter 0: the activation */
    y = ldmc_conv2d(b, x, ldmc_parameter(b, "w", LDMC_F32, 4, wd), s->stride, k / 2, 1, 1);
    int64_t oh = (s->c + 2 * (k / 2) - k) / s->stride + 1, ow = (s->d + 2 * (k / 2) - k) / s->stride + 1;
    *flops = 2.0 * (double)s->b * (double)(s->a * k * k) * (double)(oh * ow);
  }
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

int main(int argc, char **argv) {
  /* each run returns a fresh output tensor; keep big allocations on the heap so
   * a run does not pay the kernel's page faults for a new mapping (numpy's
   * matmul(out=) reuses its buffer the same way) */
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  int threads = 2, reps = 5, c = 320;
  bool json = false, bf16 = __builtin_cpu_supports("avx512bf16") && ldmc_llvm_cpu_host_isa() == LDMC_LLVM_CPU_ISA_AVX512;
  bool prepack = true;
  const char *only = NULL; /* shapes whose name contains this */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--c") && i + 1 < argc) c = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "--no-bf16")) bf16 = false;
    else if (!strcmp(argv[i], "--no-prepack")) prepack = false;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
  }
  int64_t c1 = c, c2 = 2 * c, c4 = 4 * c;
  /* latent 64x64: levels at 64, 32, 16, 8; tokens = H*W; context 77 x 1024 */
  shape shapes[] = {
      {"conv3x3 c->c @64x64", 1, c1, c1, 64, 64, 1},
      {"conv3x3 2c->2c @32x32", 1, c2, c2, 32, 32, 1},
      {"conv3x3 4c->4c @16x16", 1, c4, c4, 16, 16, 1},
      {"conv3x3 4c->4c @8x8", 1, c4, c4, 8, 8, 1},
      {"conv3x3 s2 c->c @64x64", 1, c1, c1, 64, 64, 2},
      {"conv1x1 c->c @64x64", 2, c1, c1, 64, 64, 1},
      {"linear 4096 x c -> c", 0, 4096, c1, c1, 0, 0},
      {"linear 4096 x c -> 8c (geglu)", 0, 4096, c1, 8 * c1, 0, 0},
      {"linear 4096 x 4c -> c (ff out)", 0, 4096, c4, c1, 0, 0},
      {"linear 77 x 1024 -> c (ctx k/v)", 0, 77, 1024, c1, 0, 0},
      {"linear 1024 x 2c -> 2c", 0, 1024, c2, c2, 0, 0},
  };
  double peak = fma_peak(threads);
  if (json)
    printf("{\"kind\":\"peak\",\"threads\":%d,\"gflops\":%.1f}\n", threads, peak);
  else
    printf("FMA peak (%d threads, measured): %.1f GFLOP/s; weights %s\n%-34s %10s %10s %8s%s\n", threads, peak,
           prepack ? "packed once" : "packed every run", "shape", "ms", "GFLOP/s", "of peak",
           bf16 ? "    bf16 ms bf16 GF/s  bf16/f32" : "");
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    shape *s = &shapes[i];
    if (only && !strstr(s->name, only)) continue;
    double flops;
    ldmc_graph *g = build(s, &flops);
    if (!g) {
      fprintf(stderr, "%s: %s\n", s->name, ldmc_last_error());
      return 1;
    }
    ldmc_compile_opts o = {.threads = threads, .params_are_weights = prepack, .n_activation_params = 1};
    double best = time_shape(g, &o, reps, s->name), bbest = 0;
    if (best < 0) return 1;
    if (bf16) {
      o.bf16 = true;
      if ((bbest = time_shape(g, &o, reps, s->name)) < 0) return 1;
    }
    double gf = flops / best / 1e9, bgf = bf16 ? flops / bbest / 1e9 : 0;
    if (json) {
      printf("{\"kind\":\"shape\",\"name\":\"%s\",\"conv\":%d,\"a\":%lld,\"b\":%lld,\"c\":%lld,\"d\":%lld,\"stride\":%d,"
             "\"ms\":%.3f,\"gflops\":%.1f",
             s->name, s->conv, (long long)s->a, (long long)s->b, (long long)s->c, (long long)s->d, s->stride, best * 1e3, gf);
      if (bf16) printf(",\"bf16_ms\":%.3f,\"bf16_gflops\":%.1f", bbest * 1e3, bgf);
      printf("}\n");
    } else if (bf16) {
      printf("%-34s %10.3f %10.1f %7.0f%% %10.3f %10.1f %8.2fx\n", s->name, best * 1e3, gf, 100 * gf / peak, bbest * 1e3, bgf,
             bgf / gf);
    } else {
      printf("%-34s %10.3f %10.1f %7.0f%%\n", s->name, best * 1e3, gf, 100 * gf / peak);
    }
    ldmc_graph_free(g);
  }
  return 0;
}
