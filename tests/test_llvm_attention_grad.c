/* llvm-cpu's attention backward kernels (attention_lse, attention_grad_q,
 * attention_grad_kv: kern_attn.c, kern_attn_grad.c) against the interpreter
 * (the ops' definitions in double), at every ISA level the host runs.
 *
 * Each case is the backward an attention VJP builds: lse = attention_lse(q, k),
 * y = attention(q, k, v), delta = rowsum(ct y), then dq and (dk | dv) from
 * q, k, v, ct, lse, delta; its outputs are lse, dq and dk | dv. Shapes: odd
 * and prime N, M, D, E (M below and above a key block: 8 or 16 keys), batch
 * ranks 3 ([BH, n, d]) and 4 ([B, H, n, d]), the U-Net's head splits
 * (reshape + transpose of [B, n, H d], read in place as strided views), f32
 * and bf16 storage, scale != 1, large scores (q, k scaled up), no keys and
 * no queries. Every kernel must be a llvm-cpu one, one named attn_lse /
 * attn_dq / attn_dkv per op with a non-empty result (profiler events), no
 * node may run on the interpreter, and 1 and 2 threads must give
 * bit-identical results. Tolerance: |got - want| <= tol max(1, max |want|)
 * (finite want; equal infinities match) per output, tol = 3e-6 (2e-5 with
 * large scores: the scores' f32 rounding, ~|S| 2^-24, moves P relatively by
 * as much). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

static uint64_t g_rng = 0x3c6ef372fe94f82bull;
static double runif(void) { /* [-1, 1) */
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}

typedef struct gcase {
  int64_t B, H, N, M, D, E; /* H = 0: rank 3 [B, n, d] */
  ldmc_dtype dt;
  bool split;               /* head splits of [B, n, H d] (rank 4) */
  double scale, gain;       /* q and k scaled by gain */
} gcase;

static ldmc_value operand(ldmc_builder *b, const gcase *c, const char *name, int64_t n, int64_t d) {
  if (c->H == 0) {
    int64_t dims[3] = {c->B, n, d};
    return ldmc_parameter(b, name, c->dt, 3, dims);
  }
  if (!c->split) {
    int64_t dims[4] = {c->B, c->H, n, d};
    return ldmc_parameter(b, name, c->dt, 4, dims);
  }
  int64_t dims[3] = {c->B, n, c->H * d}, d4[4] = {c->B, n, c->H, d}, perm[4] = {0, 2, 1, 3};
  return ldmc_transpose(b, ldmc_reshape(b, ldmc_parameter(b, name, c->dt, 3, dims), 4, d4), perm);
}

static ldmc_graph *build(const gcase *c) {
  ldmc_builder *b = ldmc_builder_new("attention_grad");
  ldmc_value q = operand(b, c, "q", c->N, c->D), k = operand(b, c, "k", c->M, c->D), v = operand(b, c, "v", c->M, c->E);
  ldmc_value ct = operand(b, c, "ct", c->N, c->E);
  int r = ldmc_value_shape(b, q)->rank;
  const int64_t row = r - 1;
  ldmc_value lse = ldmc_attention_lse(b, q, k, c->scale);
  ldmc_value y = ldmc_attention(b, q, k, v, c->scale);
  ldmc_value delta =
      ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, ldmc_convert(b, ct, LDMC_F32), ldmc_convert(b, y, LDMC_F32)), 1, &row, false);
  ldmc_builder_output(b, lse, "lse");
  ldmc_builder_output(b, ldmc_attention_grad_q(b, q, k, v, ct, lse, delta, c->scale), "dq");
  ldmc_builder_output(b, ldmc_attention_grad_kv(b, q, k, v, ct, lse, delta, c->scale), "dkv");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) fprintf(stderr, "build: %s\n", ldmc_last_error());
  return g;
}

typedef struct names {
  int interp, lse, dq, dkv;
} names;

static void on_kernel(void *ctx, const ldmc_kernel_event *ev) {
  names *n = ctx;
  if (!ev->name) return;
  n->interp += !strcmp(ev->name, "interp");
  n->lse += !strcmp(ev->name, "attn_lse");
  n->dq += !strcmp(ev->name, "attn_dq");
  n->dkv += !strcmp(ev->name, "attn_dkv");
}

static bool run(const ldmc_backend_i *be, const ldmc_graph *g, int threads, const ldmc_tensor *in, ldmc_tensor *out,
                names *nm) {
  ldmc_compile_opts o = {.threads = threads};
  ldmc_executable *e;
  if (be->compile(g, &o, &e) != LDMC_OK) {
    fprintf(stderr, "%s compile: %s\n", be->name, ldmc_last_error());
    return false;
  }
  ldmc_profile_hook hook = {on_kernel, nm};
  if (nm && ldmc_executable_set_profiler(e, &hook) != LDMC_OK) {
    ldmc_executable_free(e);
    return false;
  }
  ldmc_status st = ldmc_executable_run(e, in, 4, out, 3);
  if (st != LDMC_OK) fprintf(stderr, "%s run: %s\n", be->name, ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* max |got - want| / max(1, max |want|) */
static double err_of(const ldmc_tensor *got, const ldmc_tensor *want) {
  int64_t n = (int64_t)(want->nbytes / ldmc_dtype_size(want->dtype));
  if (got->nbytes != want->nbytes) return INFINITY;
  double m = 1, e = 0;
  for (int64_t i = 0; i < n; i++) {
    double a = ldmc_tensor_get(got, i), w = ldmc_tensor_get(want, i);
    if (isfinite(w)) m = fmax(m, fabs(w));
    double d = a == w ? 0.0 : fabs(a - w); /* -inf: the lse of no keys */
    if (!(d <= e)) e = isnan(d) ? INFINITY : d;
  }
  return e / m;
}

static void run_case(const gcase *c, const ldmc_llvm_cpu_isa *isas, int n_isa) {
  char name[160];
  snprintf(name, sizeof name, "%s B%lld H%lld N%lld M%lld D%lld E%lld scale %.3g%s%s", ldmc_dtype_name(c->dt),
           (long long)c->B, (long long)c->H, (long long)c->N, (long long)c->M, (long long)c->D, (long long)c->E,
           c->scale, c->split ? " split" : "", c->gain > 1 ? " large" : "");
  ldmc_graph *g = build(c);
  CHECK_MSG(g != NULL, "%s: build", name);
  if (!g) return;
  ldmc_tensor in[4];
  for (int32_t n = 0, i = 0; n < g->n_nodes && i < 4; n++) {
    const ldmc_node *p = &g->nodes[n];
    if (p->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[i], p->attrs.name, p->dtype, &p->shape);
    int64_t cnt = (int64_t)(in[i].nbytes / ldmc_dtype_size(p->dtype));
    for (int64_t j = 0; j < cnt; j++) ldmc_tensor_set_elem(&in[i], j, runif() * (i < 2 ? c->gain : 1.0));
    i++;
  }
  ldmc_tensor want[3];
  bool ok = run(&ldmc_backend_interp, g, 1, in, want, NULL);
  CHECK_MSG(ok, "%s: interp", name);
  double tol = c->gain > 1 ? 2e-5 : 3e-6;
  for (int li = 0; li < n_isa && ok; li++) {
    const char *isa = ldmc_llvm_cpu_isa_name(isas[li]);
    ldmc_llvm_cpu_set_isa(isas[li]);
    ldmc_tensor got[3], got2[3];
    names nm = {0};
    bool r1 = run(&ldmc_backend_llvm_cpu, g, 1, in, got, &nm), r2 = r1 && run(&ldmc_backend_llvm_cpu, g, 2, in, got2, NULL);
    CHECK_MSG(r1 && r2, "%s at %s: run failed", name, isa);
    if (!r1) continue;
    /* one kernel per op with a non-empty result */
    int want_lse = c->N > 0, want_dq = c->N > 0 && c->D > 0, want_dkv = c->M > 0 && c->D + c->E > 0;
    CHECK_MSG(nm.interp == 0 && nm.lse == want_lse && nm.dq == want_dq && nm.dkv == want_dkv,
              "%s at %s: kernels: %d interp, %d attn_lse, %d attn_dq, %d attn_dkv (want 0, %d, %d, %d)", name, isa,
              nm.interp, nm.lse, nm.dq, nm.dkv, want_lse, want_dq, want_dkv);
    double e[3];
    for (int o = 0; o < 3; o++) {
      e[o] = err_of(&got[o], &want[o]);
      CHECK_MSG(e[o] <= tol, "%s at %s: output %s error %.3g > %.3g", name, isa, g->output_names[o], e[o], tol);
      if (r2)
        CHECK_MSG(got[o].nbytes == got2[o].nbytes && !memcmp(got[o].data, got2[o].data, got[o].nbytes),
                  "%s at %s: output %s differs on 1 and 2 threads", name, isa, g->output_names[o]);
    }
    printf("  %-52s %-7s err lse %.1e dq %.1e dkv %.1e\n", name, isa, e[0], e[1], e[2]);
    for (int o = 0; o < 3; o++) {
      ldmc_tensor_release(&got[o]);
      if (r2) ldmc_tensor_release(&got2[o]);
    }
  }
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  if (ok)
    for (int o = 0; o < 3; o++) ldmc_tensor_release(&want[o]);
  for (int i = 0; i < 4; i++) ldmc_tensor_release(&in[i]);
  ldmc_graph_free(g);
}

int main(void) {
  ldmc_llvm_cpu_isa isas[3];
  int n_isa = 0;
  for (int l = LDMC_LLVM_CPU_ISA_SCALAR; l <= (int)ldmc_llvm_cpu_host_isa(); l++) isas[n_isa++] = (ldmc_llvm_cpu_isa)l;
  const ldmc_dtype F = LDMC_F32, H = LDMC_BF16;
  /* B, H, N, M, D, E, dtype, split, scale, gain */
  const gcase cases[] = {
      {1, 0, 1, 1, 1, 1, F, false, 1.0, 1},       {3, 0, 7, 5, 3, 2, F, false, 0.37, 1},
      {2, 0, 13, 17, 5, 7, F, false, 0.5, 1},     {1, 0, 37, 3, 11, 13, H, false, 0.29, 1},
      {2, 3, 19, 23, 8, 8, F, false, 0.35, 1},    {1, 2, 5, 31, 17, 3, H, false, 1.7, 1},
      {2, 2, 33, 7, 13, 13, F, true, 0.28, 1},    {1, 4, 64, 64, 8, 8, F, true, 0.3536, 1},
      {1, 2, 41, 67, 40, 40, H, true, 0.158, 1},  {2, 1, 29, 11, 64, 19, F, false, 0.125, 1},
      {1, 3, 17, 130, 7, 9, F, false, 0.4, 4},    {1, 1, 3, 2, 37, 1, F, false, 0.2, 1},
      /* no keys (lse -inf, dq 0), no queries (dk | dv 0) */
      {2, 0, 5, 0, 3, 2, F, false, 0.5, 1},       {2, 0, 0, 5, 3, 2, H, false, 0.5, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], isas, n_isa);
  return test_summary("llvm_attention_grad");
}
