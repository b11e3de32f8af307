/* The U-Net's attention shapes on the llvm-cpu backend (flash attention,
 * LC_K_ATTN), as the U-Net builds them: q, k, v are head splits
 * (reshape + transpose) of [1, tokens, 8 * D] activations, so q and k are
 * strided views; FLOPs are counted as 4 N M D per head.
 *   llvm_cpu_attention [--threads N] [--reps N] [--json] [--only TEXT] [--bf16] [--backward]
 * Prints one line per shape: ms and GFLOP/s. --backward also times the
 * backward as the attention VJP builds it, from q, k, v, the output y and
 * its cotangent ct (all head splits): lse = attention_lse(q, k), delta =
 * rowsum(ct y), dq (heads merged back) and dk | dv (attention_grad_q / _kv,
 * LC_K_ATTN_GRAD). Its FLOPs are counted as the four products of a backward
 * (dP = ct v^T, dv, dq, dk: 8 N M D per head, the recomputed scores not
 * counted), so that its GFLOP/s and a peer's compare as times; the line also
 * gives the ms of the forward kernel and of each backward kernel (one
 * profiled run) and their GFLOP/s by the ops' FLOP rules (recompute
 * included). bench/attention_peers.py runs it for
 * 1 and 2 threads and compares with PyTorch's scaled_dot_product_attention
 * (and its autograd backward) in the same run. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
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

static ldmc_value heads(ldmc_builder *b, const char *name, ldmc_dtype dt, int64_t n, int64_t d) {
  int64_t xd[3] = {1, n, HEADS * d}, x4[4] = {1, n, HEADS, d}, perm[4] = {0, 2, 1, 3};
  return ldmc_transpose(b, ldmc_reshape(b, ldmc_parameter(b, name, dt, 3, xd), 4, x4), perm);
}

static ldmc_graph *build(const shape *s, ldmc_dtype dt) {
  ldmc_builder *b = ldmc_builder_new("attention");
  ldmc_value q = heads(b, "x", dt, s->N, s->D), k = heads(b, "k", dt, s->M, s->D), v = heads(b, "v", dt, s->M, s->D);
  ldmc_builder_output(b, ldmc_attention(b, q, k, v, 1.0 / __builtin_sqrt((double)s->D)), "o");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

/* attention's backward from q, k, v, y, ct: what vjp_attention builds */
static ldmc_graph *build_backward(const shape *s, ldmc_dtype dt) {
  ldmc_builder *b = ldmc_builder_new("attention_backward");
  double scale = 1.0 / __builtin_sqrt((double)s->D);
  ldmc_value q = heads(b, "x", dt, s->N, s->D), k = heads(b, "k", dt, s->M, s->D), v = heads(b, "v", dt, s->M, s->D);
  ldmc_value y = heads(b, "y", dt, s->N, s->D), ct = heads(b, "ct", dt, s->N, s->D);
  const int64_t row = 3, perm[4] = {0, 2, 1, 3}, xd[3] = {1, s->N, HEADS * s->D};
  ldmc_value lse = ldmc_attention_lse(b, q, k, scale);
  ldmc_value delta =
      ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, ldmc_convert(b, ct, LDMC_F32), ldmc_convert(b, y, LDMC_F32)), 1, &row, false);
  ldmc_value dq = ldmc_attention_grad_q(b, q, k, v, ct, lse, delta, scale);
  ldmc_builder_output(b, ldmc_reshape(b, ldmc_transpose(b, dq, perm), 3, xd), "dq");
  ldmc_builder_output(b, ldmc_attention_grad_kv(b, q, k, v, ct, lse, delta, scale), "dkv");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

/* kernel time and FLOPs (the ops' rules) by profiler name */
#define MAX_NAMES 8
typedef struct by_name {
  const char *name[MAX_NAMES];
  int64_t ns[MAX_NAMES], flops[MAX_NAMES];
  int n;
} by_name;

static void on_kernel(void *ctx, const ldmc_kernel_event *ev) {
  by_name *a = ctx;
  int k = 0;
  while (k < a->n && strcmp(a->name[k], ev->name) != 0) k++;
  if (k == a->n && k < MAX_NAMES) a->name[a->n++] = ev->name;
  if (k == MAX_NAMES) return;
  a->ns[k] += ev->end_ns - ev->start_ns;
  a->flops[k] += ev->mac_flops + ev->other_flops;
}

/* best time of reps runs after a warm-up, then (prof) one profiled run; < 0 on error */
static double time_shape(const ldmc_graph *g, int threads, int reps, by_name *prof) {
  ldmc_compile_opts o = {.threads = threads};
  ldmc_executable *e;
  if (ldmc_backend_llvm_cpu.compile(g, &o, &e) != LDMC_OK) {
    fprintf(stderr, "compile: %s\n", ldmc_last_error());
    return -1;
  }
  int np = ldmc_graph_num_params(g), no = g->n_outputs;
  ldmc_tensor in[8], out[4];
  for (int32_t n = 0, k = 0; n < g->n_nodes && k < np; n++) {
    if (g->nodes[n].op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[k], g->nodes[n].attrs.name, g->nodes[n].dtype, &g->nodes[n].shape);
    int64_t cnt = 1;
    for (int i = 0; i < g->nodes[n].shape.rank; i++) cnt *= g->nodes[n].shape.dims[i];
    for (int64_t j = 0; j < cnt; j++) ldmc_tensor_set_elem(&in[k], j, (double)((j * 7919 + k * 131) % 1000) / 500.0 - 1.0);
    k++;
  }
  double best = 1e30;
  for (int r = 0; r < reps + 1 + (prof != NULL); r++) {
    if (prof && r == reps + 1) {
      ldmc_profile_hook h = {.kernel = on_kernel, .ctx = prof};
      if (ldmc_executable_set_profiler(e, &h) != LDMC_OK) return -1;
    }
    double t0 = now();
    ldmc_status st = ldmc_executable_run(e, in, np, out, no);
    double dt = now() - t0;
    if (st != LDMC_OK) {
      fprintf(stderr, "run: %s\n", ldmc_last_error());
      return -1;
    }
    if (r > 0 && r <= reps && dt < best) best = dt;
    for (int i = 0; i < no; i++) ldmc_tensor_release(&out[i]);
  }
  for (int k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
  ldmc_executable_free(e);
  return best;
}

int main(int argc, char **argv) {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  int threads = 2, reps = 5;
  bool json = false, backward = false;
  ldmc_dtype dt = LDMC_F32;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "--bf16")) dt = LDMC_BF16;
    else if (!strcmp(argv[i], "--backward")) backward = true;
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
  if (!json)
    printf("%-24s %6s %6s %5s %10s %10s%s   (%d threads, %s)\n", "shape", "N", "M", "D", "ms", "GFLOP/s",
           backward ? " kernel=ms@GFLOP/s  bwd ms bwd GFLOP/s  kernels=ms@GFLOP/s" : "", threads, ldmc_dtype_name(dt));
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const shape *s = &shapes[i];
    if (only && !strstr(s->name, only)) continue;
    ldmc_graph *g = build(s, dt);
    if (!g) {
      fprintf(stderr, "%s: %s\n", s->name, ldmc_last_error());
      return 1;
    }
    by_name pf = {0};
    double best = time_shape(g, threads, reps, backward ? &pf : NULL);
    ldmc_graph_free(g);
    if (best < 0) return 1;
    double gf = 4.0 * HEADS * (double)s->N * (double)s->M * (double)s->D / best / 1e9;
    if (json)
      printf("{\"name\":\"%s\",\"N\":%lld,\"M\":%lld,\"D\":%lld,\"heads\":%d,\"threads\":%d,\"ms\":%.4f,\"gflops\":%.2f",
             s->name, (long long)s->N, (long long)s->M, (long long)s->D, HEADS, threads, best * 1e3, gf);
    else
      printf("%-24s %6lld %6lld %5lld %10.3f %10.1f", s->name, (long long)s->N, (long long)s->M, (long long)s->D, best * 1e3,
             gf);
    for (int k = 0; k < pf.n; k++) /* the forward kernel, profiled (--backward) */
      if (!strcmp(pf.name[k], "attn")) {
        double ms = (double)pf.ns[k] / 1e6, kgf = pf.ns[k] ? (double)pf.flops[k] / (double)pf.ns[k] : 0.0;
        if (json) printf(",\"attn_ms\":%.4f,\"attn_gflops\":%.2f", ms, kgf);
        else printf(" attn=%.3fms@%.1f", ms, kgf);
      }
    if (backward) {
      by_name prof = {0};
      ldmc_graph *gb = build_backward(s, dt);
      double bb = gb ? time_shape(gb, threads, reps, &prof) : -1;
      ldmc_graph_free(gb);
      if (bb < 0) {
        fprintf(stderr, "%s backward: %s\n", s->name, ldmc_last_error());
        return 1;
      }
      double bgf = 8.0 * HEADS * (double)s->N * (double)s->M * (double)s->D / bb / 1e9;
      if (json) printf(",\"bwd_ms\":%.4f,\"bwd_gflops\":%.2f", bb * 1e3, bgf);
      else printf(" %10.3f %10.1f  ", bb * 1e3, bgf);
      for (int k = 0; k < prof.n; k++) { /* names are the backend's string constants */
        double ms = (double)prof.ns[k] / 1e6, kgf = prof.ns[k] ? (double)prof.flops[k] / (double)prof.ns[k] : 0.0;
        if (json) printf(",\"%s_ms\":%.4f,\"%s_gflops\":%.2f", prof.name[k], ms, prof.name[k], kgf);
        else printf(" %s=%.3fms@%.1f", prof.name[k], ms, kgf);
      }
    }
    printf(json ? "}\n" : "\n");
    fflush(stdout);
  }
  return 0;
}
