/* llvm-cpu flash attention (LC_K_ATTN) against the interpreter (f64
 * softmax(scale q k^T) v), at every ISA level the host runs.
 *
 * Shapes: self- and cross-attention with head dims D in {1, 8, 13, 40, 64,
 * 160} (and E != D), N and M in {1, 7, 77, 130, 1024}, batch * heads in
 * {1, 3, 8}, f32 and bf16, q/k/v as dense [BH, N, D] tensors or as the
 * U-Net's head splits (reshape + transpose of [B, N, H * D], read in place
 * as strided views). Large-magnitude scores (hundreds, with the running max
 * rising block after block) exercise the online-softmax rescaling.
 *
 * Tolerance per output row, with V = max |v| over the batch and S = max_j
 * scale sum_d |q_d k_d| (the scores' magnitude): the output is a convex
 * combination of v rows, so a relative error delta in every weight moves it by
 * at most 2 delta V. delta: 3e-7 (the exp2 polynomial, 1.9e-7, and
 * roundings) + 2.4e-7 sqrt(D + 4) S (f32 scores, scaled by log2 e; rounding
 * errors grow as the square root of the terms) + 1.2e-7 sqrt(M) (f32 sums).
 * The inputs are fixed, so the statistical bounds do not make the test flaky.
 * bf16 outputs add two roundings (ours and the interpreter's): 2^-7 |want|.
 * The test reports the largest error / V seen on the f32 cases with
 * moderate scores and requires it <= 1e-6 (the docs state 2e-6): tighter
 * than the per-row bounds, it catches a slightly wrong exp polynomial.
 * Each case also runs on 1 and 2 threads: results must be bit-identical. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double runif(void) { /* [-1, 1) */
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}

typedef struct acase {
  int64_t D, E, N, M, BH;
  ldmc_dtype dt;
  bool strided; /* head splits of [B, tokens, H * D] */
  double qk_scale; /* inputs of q, k scaled by this (large-magnitude scores) */
  bool rising;     /* key j scaled by (1 + 3 j / M): the running max grows block by block */
} acase;

static double g_worst_rel; /* max error / V over moderate f32 cases */

/* one parameter: dense [BH, n, d] or [B, n, H * d] for head splitting */
static ldmc_value operand(ldmc_builder *b, const acase *c, const char *name, int64_t n, int64_t d) {
  if (!c->strided) {
    int64_t dims[3] = {c->BH, n, d};
    return ldmc_parameter(b, name, c->dt, 3, dims);
  }
  int64_t H = c->BH == 8 ? 4 : c->BH, Bt = c->BH / H;
  int64_t dims[3] = {Bt, n, H * d}, d4[4] = {Bt, n, H, d}, perm[4] = {0, 2, 1, 3};
  return ldmc_transpose(b, ldmc_reshape(b, ldmc_parameter(b, name, c->dt, 3, dims), 4, d4), perm);
}

static ldmc_graph *build(const acase *c, double scale) {
  ldmc_builder *b = ldmc_builder_new("attention");
  ldmc_value q = operand(b, c, "q", c->N, c->D), k = operand(b, c, "k", c->M, c->D), v = operand(b, c, "v", c->M, c->E);
  ldmc_builder_output(b, ldmc_attention(b, q, k, v, scale), "o");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) fprintf(stderr, "build: %s\n", ldmc_last_error());
  return g;
}

static bool run(const ldmc_backend_i *be, const ldmc_graph *g, int threads, const ldmc_tensor *in, ldmc_tensor *out) {
  ldmc_compile_opts o = {.threads = threads};
  ldmc_executable *e;
  if (be->compile(g, &o, &e) != LDMC_OK) {
    fprintf(stderr, "%s compile: %s\n", be->name, ldmc_last_error());
    return false;
  }
  ldmc_status st = ldmc_executable_run(e, in, 3, out, 1);
  if (st != LDMC_OK) fprintf(stderr, "%s run: %s\n", be->name, ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* element (bh, row, col) of a parameter's data in either layout */
static int64_t at(const acase *c, int64_t n, int64_t d, int64_t bh, int64_t row, int64_t col) {
  if (!c->strided) return (bh * n + row) * d + col;
  int64_t H = c->BH == 8 ? 4 : c->BH, b = bh / H, h = bh % H;
  return (b * n + row) * H * d + h * d + col;
}

static void run_case(const acase *c, const ldmc_llvm_cpu_isa *isas, int n_isa) {
  double scale = 1.0 / sqrt((double)c->D);
  ldmc_graph *g = build(c, scale);
  CHECK(g != NULL);
  if (!g) return;
  /* inputs */
  ldmc_tensor in[3];
  int64_t rows[3] = {c->N, c->M, c->M}, cols[3] = {c->D, c->D, c->E};
  for (int32_t n = 0, i = 0; n < g->n_nodes && i < 3; n++) {
    if (g->nodes[n].op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[i], g->nodes[n].attrs.name, c->dt, &g->nodes[n].shape);
    for (int64_t bh = 0; bh < c->BH; bh++)
      for (int64_t r = 0; r < rows[i]; r++)
        for (int64_t e = 0; e < cols[i]; e++) {
          double x = runif();
          if (i < 2) x *= c->qk_scale;
          if (i == 1 && c->rising) x *= 1.0 + 3.0 * (double)r / (double)c->M;
          ldmc_tensor_set_elem(&in[i], at(c, rows[i], cols[i], bh, r, e), x);
        }
    i++;
  }
  ldmc_tensor want;
  bool ok = run(&ldmc_backend_interp, g, 1, in, &want);
  CHECK(ok);
  /* per-row tolerance from the inputs as stored */
  double *tolr = malloc((size_t)(c->BH * c->N) * sizeof *tolr), *vmax = malloc((size_t)c->BH * sizeof *vmax);
  for (int64_t bh = 0; bh < c->BH; bh++) {
    vmax[bh] = 0;
    for (int64_t j = 0; j < c->M; j++)
      for (int64_t e = 0; e < c->E; e++) vmax[bh] = fmax(vmax[bh], fabs(ldmc_tensor_get(&in[2], at(c, c->M, c->E, bh, j, e))));
    for (int64_t r = 0; r < c->N; r++) {
      double S = 0;
      for (int64_t j = 0; j < c->M; j++) {
        double s = 0;
        for (int64_t d = 0; d < c->D; d++)
          s += fabs(ldmc_tensor_get(&in[0], at(c, c->N, c->D, bh, r, d)) * ldmc_tensor_get(&in[1], at(c, c->M, c->D, bh, j, d)));
        S = fmax(S, scale * s);
      }
      double delta = 3e-7 + 2.4e-7 * sqrt((double)(c->D + 4)) * S + 1.2e-7 * sqrt((double)c->M);
      tolr[bh * c->N + r] = 2 * delta * vmax[bh];
    }
  }
  char name[160];
  snprintf(name, sizeof name, "%s D%lld E%lld N%lld M%lld BH%lld%s%s%s", ldmc_dtype_name(c->dt), (long long)c->D,
           (long long)c->E, (long long)c->N, (long long)c->M, (long long)c->BH, c->strided ? " strided" : "",
           c->qk_scale > 1 ? " large" : "", c->rising ? " rising" : "");
  for (int li = 0; li < n_isa && ok; li++) {
    ldmc_llvm_cpu_set_isa(isas[li]);
    ldmc_tensor got, got2;
    bool r1 = run(&ldmc_backend_llvm_cpu, g, 1, in, &got), r2 = r1 && run(&ldmc_backend_llvm_cpu, g, 2, in, &got2);
    CHECK_MSG(r1 && r2, "%s at %s: run failed", name, ldmc_llvm_cpu_isa_name(isas[li]));
    if (!r1) continue;
    if (r2) {
      CHECK_MSG(got.nbytes == got2.nbytes && !memcmp(got.data, got2.data, got.nbytes), "%s at %s: 1 and 2 threads differ",
                name, ldmc_llvm_cpu_isa_name(isas[li]));
      ldmc_tensor_release(&got2);
    }
    int64_t bad = 0, first = -1;
    double worst = 0;
    for (int64_t bh = 0; bh < c->BH; bh++)
      for (int64_t r = 0; r < c->N; r++)
        for (int64_t e = 0; e < c->E; e++) {
          int64_t i = (bh * c->N + r) * c->E + e;
          double w = ldmc_tensor_get(&want, i), x = ldmc_tensor_get(&got, i), err = fabs(x - w);
          double t = tolr[bh * c->N + r] + (c->dt == LDMC_BF16 ? fabs(w) / 128 : 0);
          if (!(err <= t)) bad++, first = first < 0 ? i : first;
          if (vmax[bh] > 0) worst = fmax(worst, err / vmax[bh]);
        }
    CHECK_MSG(bad == 0, "%s at %s: %lld wrong, first at %lld: got %.9g want %.9g", name, ldmc_llvm_cpu_isa_name(isas[li]),
              (long long)bad, (long long)first, first >= 0 ? ldmc_tensor_get(&got, first) : 0.0,
              first >= 0 ? ldmc_tensor_get(&want, first) : 0.0);
    if (c->dt == LDMC_F32 && c->qk_scale <= 1) g_worst_rel = fmax(g_worst_rel, worst);
    printf("  %-48s %-7s max err / max|v| %.2e\n", name, ldmc_llvm_cpu_isa_name(isas[li]), worst);
    ldmc_tensor_release(&got);
  }
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  if (ok) ldmc_tensor_release(&want);
  for (int i = 0; i < 3; i++) ldmc_tensor_release(&in[i]);
  free(tolr);
  free(vmax);
  ldmc_graph_free(g);
}

int main(void) {
  ldmc_llvm_cpu_isa isas[3];
  int n_isa = 0;
  ldmc_llvm_cpu_isa host = ldmc_llvm_cpu_host_isa();
  for (int l = LDMC_LLVM_CPU_ISA_SCALAR; l <= (int)host; l++) isas[n_isa++] = (ldmc_llvm_cpu_isa)l;
  const ldmc_dtype F = LDMC_F32, H = LDMC_BF16;
  /* D, E, N, M, BH, dtype, strided, q/k scale, rising */
  const acase cases[] = {
      {1, 1, 1, 1, 1, F, false, 1, false},       {1, 1, 7, 130, 3, H, true, 1, false},
      {1, 1, 1024, 7, 1, F, true, 1, false},     {8, 8, 1024, 1024, 8, F, true, 1, false},
      {8, 8, 1024, 77, 8, F, true, 1, false},    {8, 8, 77, 7, 3, H, false, 1, false},
      {8, 8, 130, 1, 1, F, false, 1, false},     {13, 13, 130, 130, 3, F, false, 1, false},
      {13, 13, 7, 1024, 1, H, true, 1, false},   {13, 13, 1, 77, 8, F, true, 1, false},
      {13, 40, 77, 130, 3, F, false, 1, false},  {40, 40, 130, 77, 8, F, true, 1, false},
      {40, 40, 77, 130, 3, H, true, 1, false},   {40, 40, 1024, 1024, 1, F, false, 1, false},
      {40, 7, 130, 77, 1, F, true, 1, false},    {64, 64, 7, 7, 3, F, false, 1, false},
      {64, 64, 130, 1024, 1, F, true, 1, false}, {64, 64, 77, 77, 8, H, true, 1, false},
      {64, 64, 1, 130, 1, F, false, 1, false},   {160, 160, 77, 77, 1, F, true, 1, false},
      {160, 160, 130, 7, 3, H, false, 1, false}, {160, 160, 1024, 77, 1, F, true, 1, false},
      {160, 160, 1, 1024, 8, F, true, 1, false}, {160, 160, 7, 1, 1, H, true, 1, false},
      /* large-magnitude scores, the max rising across key blocks */
      {40, 40, 130, 1024, 3, F, true, 8, true},  {8, 8, 77, 1024, 1, F, false, 20, true},
      {13, 13, 33, 130, 1, F, false, 30, false}, {64, 64, 17, 77, 1, H, true, 6, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], isas, n_isa);
  printf("largest f32 error / max|v| (moderate scores): %.2e\n", g_worst_rel);
  CHECK(g_worst_rel <= 1e-6); /* the docs promise 2e-6; 1.2e-7 measured */
  return test_summary("llvm_attention");
}
