/* The U-Net's attention shapes on the llvm-cpu backend (flash attention,
 * LC_K_ATTN), as the U-Net builds them: q, k, v are head splits
 * (reshape + transpose) of [1, tokens, 8 * D] activations, so q and k are
 * strided views; FLOPs are counted as 4 N M D per head.
 *   llvm_cpu_attention [--threads N] [--reps N] [--json] [--only TEXT] [--bf16]
 * Prints one line per shape: ms and GFLOP/s. bench/attention_peers.py runs it
 * for 1 and 2 threads and compares with PyTorch's
 * scaled_dot_product_attention in the same run. */
#include <malloc.h>
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

typedef struct shape {
  const char *name;
  int64_t N, M, D; /* queries, keys, head dim; 8 heads */
} shape;

#define HEADS 8

static ldmc_graph *build(const shape *s, ldmc_dtype dt) {
  ldmc_builder *b = ldmc_builder_new("attention");
  int64_t C = HEADS * s->D, xd[3] = {1, s->N, C}, cd[3] = {1, s->M, C};
  int64_t x4[4] = {1, s->N, HEADS, s->D}, c4[4] = {1, s->M, HEADS, s->D}, perm[4] = {0, 2, 1, 3};
  ldmc_value x = ldmc_parameter(b, "x", dt, 3, xd), kc = ldmc_parameter(b, "k", dt, 3, cd),
             vc = ldmc_parameter(b, "v", dt, 3, cd);
  ldmc_value q = ldmc_transpose(b, ldmc_reshape(b, x, 4, x4), perm);
  ldmc_value k = ldmc_transpose(b, ldmc_reshape(b, kc, 4, c4), perm);
  ldmc_value v = ldmc_transpose(b, ldmc_reshape(b, vc, 4, c4), perm);
  ldmc_builder_output(b, ldmc_attention(b, q, k, v, 1.0 / __builtin_sqrt((double)s->D)), "o");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

/* best time of reps runs after a warm-up; < 0 on error */
static double time_shape(const ldmc_graph *g, int threads, int reps) {
  ldmc_compile_opts o = {.threads = threads};
  ldmc_executable *e;
  if (ldmc_backend_llvm_cpu.compile(g, &o, &e) != LDMC_OK) {
    fprintf(stderr, "compile: %s\n", ldmc_last_error());
    return -1;
  }
  ldmc_tensor in[3];
  for (int32_t n = 0, k = 0; n < g->n_nodes && k < 3; n++) {
    if (g->nodes[n].op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[k], g->nodes[n].attrs.name, g->nodes[n].dtype, &g->nodes[n].shape);
    int64_t cnt = 1;
    for (int i = 0; i < g->nodes[n].shape.rank; i++) cnt *= g->nodes[n].shape.dims[i];
    for (int64_t j = 0; j < cnt; j++) ldmc_tensor_set_elem(&in[k], j, (double)((j * 7919 + k * 131) % 1000) / 500.0 - 1.0);
    k++;
  }
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++) {
    ldmc_tensor out;
    double t0 = now();
    ldmc_status st = ldmc_executable_run(e, in, 3, &out, 1);
    double dt = now() - t0;
    if (st != LDMC_OK) {
      fprintf(stderr, "run: %s\n", ldmc_last_error());
      return -1;
    }
    if (r > 0 && dt < best) best = dt;
    ldmc_tensor_release(&out);
  }
  for (int k = 0; k < 3; k++) ldmc_tensor_release(&in[k]);
  ldmc_executable_free(e);
  return best;
}

int main(int argc, char **argv) {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  int threads = 2, reps = 5;
  bool json = false;
  ldmc_dtype dt = LDMC_F32;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "--bf16")) dt = LDMC_BF16;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
  }
  /* c=64 at latent 32x32 (levels 32x32, 16x16, 8x8 and mid 4x4 ... with
   * D = c/8, 2c/8, 4c/8), c=320 at latent 64x64; context 77 tokens */
  shape shapes[] = {
      {"c64 self 32x32 D8", 1024, 1024, 8},   {"c64 cross 32x32 D8", 1024, 77, 8},
      {"c64 self 16x16 D16", 256, 256, 16},   {"c64 cross 16x16 D16", 256, 77, 16},
      {"c64 self 8x8 D32", 64, 64, 32},       {"c64 cross 8x8 D32", 64, 77, 32},
      {"c320 self 64x64 D40", 4096, 4096, 40}, {"c320 cross 64x64 D40", 4096, 77, 40},
      {"c320 self 32x32 D80", 1024, 1024, 80}, {"c320 cross 32x32 D80", 1024, 77, 80},
      {"c320 self 16x16 D160", 256, 256, 160}, {"c320 cross 16x16 D160", 256, 77, 160},
      {"c320 self 8x8 D160", 64, 64, 160},
  };
  if (!json) printf("%-24s %6s %6s %5s %10s %10s   (%d threads, %s)\n", "shape", "N", "M", "D", "ms", "GFLOP/s", threads,
                    ldmc_dtype_name(dt));
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const shape *s = &shapes[i];
    if (only && !strstr(s->name, only)) continue;
    ldmc_graph *g = build(s, dt);
    if (!g) {
      fprintf(stderr, "%s: %s\n", s->name, ldmc_last_error());
      return 1;
    }
    double best = time_shape(g, threads, reps);
    ldmc_graph_free(g);
    if (best < 0) return 1;
    double gf = 4.0 * HEADS * (double)s->N * (double)s->M * (double)s->D / best / 1e9;
    if (json)
      printf("{\"name\":\"%s\",\"N\":%lld,\"M\":%lld,\"D\":%lld,\"heads\":%d,\"threads\":%d,\"ms\":%.4f,\"gflops\":%.2f}\n",
             s->name, (long long)s->N, (long long)s->M, (long long)s->D, HEADS, threads, best * 1e3, gf);
    else
      printf("%-24s %6lld %6lld %5lld %10.3f %10.1f\n", s->name, (long long)s->N, (long long)s->M, (long long)s->D, best * 1e3,
             gf);
    fflush(stdout);
  }
  return 0;
}
