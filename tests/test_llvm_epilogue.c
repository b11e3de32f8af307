/* GEMM epilogue fusion in the llvm-cpu backend: convolution / dot_general
 * followed by bias, activation, residual, scale and convert kernels.
 * Each case runs at every ISA level the host supports and is checked
 *  - against the interpreter (independent oracle) within a stated tolerance
 *    (f32: |d| <= 2e-5 |want| + 2e-5 max|want|, the conformance suite's GEMM
 *    bound plus the activations' few ulp; bf16 output: 1/128 relative + 1/256
 *    of the maximum, i.e. one bf16 rounding step),
 *  - against the same graph compiled with fusion off
 *    (LDMC_LLVM_CPU_EPILOGUE=0: GEMM, then an elementwise kernel): the fused
 *    store evaluates the same operations in the same order, so the results
 *    must be bit-identical,
 *  - for thread-count independence (1 and 3 threads bit-identical),
 * and the plan must report the epilogue fused (lc_plan.n_epilogue). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/lc.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test_util.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double runif(double lo, double hi) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return lo + (hi - lo) * (double)(z >> 11) / 9007199254740992.0;
}

/* epilogue kinds */
enum { E_BIAS = 1, E_SILU = 2, E_GELU = 4, E_RES = 8, E_SCALE = 16, E_BF16 = 32, E_ROWBIAS = 64, E_RESHAPE = 128 };

static ldmc_value epilogue(ldmc_builder *b, ldmc_value y, int ch_axis, int flags, const char *tag) {
  if (flags & E_RESHAPE) { /* [M, N] -> [2, M / 2, N]: the epilogue is in another shape than C */
    const ldmc_shape *s0 = ldmc_value_shape(b, y);
    int64_t d3[3] = {2, s0->dims[0] / 2, s0->dims[1]};
    y = ldmc_reshape(b, y, 3, d3);
    ch_axis = 2;
  }
  const ldmc_shape *s = ldmc_value_shape(b, y);
  ldmc_shape sh = *s;
  if (flags & (E_BIAS | E_ROWBIAS)) {
    int ax = (flags & E_ROWBIAS) ? sh.rank - 2 : ch_axis;
    int64_t c = sh.dims[ax], map = ax;
    ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 1, &c);
    y = ldmc_add(b, y, ldmc_broadcast_in_dim(b, bias, sh.rank, sh.dims, &map));
  }
  if (flags & E_SILU) y = ldmc_silu(b, y);
  if (flags & E_GELU) y = ldmc_gelu(b, y);
  if (flags & E_RES) y = ldmc_add(b, y, ldmc_parameter(b, "res", LDMC_F32, sh.rank, sh.dims));
  if (flags & E_SCALE) y = ldmc_scale(b, y, 0.37);
  if (flags & E_BF16) y = ldmc_convert(b, y, LDMC_BF16);
  (void)tag;
  return y;
}

static ldmc_graph *finish(ldmc_builder *b, ldmc_value y) {
  ldmc_builder_output(b, y, "out");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

static ldmc_graph *conv_graph(int64_t n, int64_t cin, int64_t cout, int64_t hw, int k, int stride, int groups,
                              int flags) {
  ldmc_builder *b = ldmc_builder_new("conv_epi");
  int64_t xd[4] = {n, cin, hw, hw + 2}, wd[4] = {cout, cin / groups, k, k};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  return finish(b, epilogue(b, ldmc_conv2d(b, x, w, stride, k / 2, 1, groups), 1, flags, "conv"));
}

static ldmc_graph *dot_graph(int64_t batch, int64_t M, int64_t N, int64_t K, int flags) {
  ldmc_builder *b = ldmc_builder_new("dot_epi");
  int64_t xd[3] = {batch, M, K}, wd[3] = {batch, K, N};
  int r = batch ? 3 : 2;
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, r, batch ? xd : xd + 1);
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, r, batch ? wd : wd + 1);
  return finish(b, epilogue(b, ldmc_matmul(b, x, w), r - 1, flags, "dot"));
}

static void make_inputs(const ldmc_graph *g, ldmc_tensor *t, int *n) {
  *n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&t[*n], p->attrs.name, p->dtype, &p->shape);
    int64_t cnt = ldmc_lc_numel(&p->shape);
    for (int64_t e = 0; e < cnt; e++) ldmc_tensor_set_elem(&t[*n], e, runif(-1.0, 1.0));
    (*n)++;
  }
}

static bool run(const ldmc_backend_i *be, const ldmc_graph *g, const ldmc_tensor *in, int nin, int threads,
                ldmc_tensor *out) {
  ldmc_compile_opts o = {.threads = threads};
  ldmc_executable *e = NULL;
  ldmc_status st = be->compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, nin, out, 1);
  CHECK_MSG(st == LDMC_OK, "%s: %s", be->name, ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* epilogues fused in the plan the backend would build for g at isa */
static int64_t fused_count(const ldmc_graph *g, ldmc_llvm_cpu_isa isa) {
  const lc_target *t;
  if (ldmc_lc_target_get(isa, &t) != LDMC_OK) return -1;
  ldmc_compile_opts o = {.threads = 2};
  ldmc_graph *opt = NULL;
  ldmc_plan *kp = NULL;
  int64_t n = -1;
  if (ldmc_lc_pipeline(g, &o, t, 2, &opt, &kp) == LDMC_OK) {
    lc_plan_opts po = {.threads = 2, .allow_fallback = true, .n_act_params = INT32_MAX, .kernels = kp};
    lc_plan p;
    if (ldmc_lc_plan_build(opt, t, &po, &p) == LDMC_OK) {
      n = p.n_epilogue;
      ldmc_lc_plan_free(&p);
    }
  }
  ldmc_plan_free(kp);
  ldmc_graph_free(opt);
  return n;
}

static bool same_bits(const ldmc_tensor *a, const ldmc_tensor *b) {
  return a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
}

static void check_case(const char *name, ldmc_graph *g, bool bf16_out) {
  if (!g) return;
  ldmc_tensor in[8];
  int nin;
  memset(in, 0, sizeof in);
  make_inputs(g, in, &nin);
  const ldmc_backend_i *interp = ldmc_backend_find("interp");
  ldmc_tensor want = {0};
  if (!run(interp, g, in, nin, 1, &want)) return;
  int64_t nel = ldmc_lc_numel(&want.shape);
  double amax = 0;
  for (int64_t i = 0; i < nel; i++) amax = fmax(amax, fabs(ldmc_tensor_get(&want, i)));
  double rtol = bf16_out ? 1.0 / 128 : 2e-5, arel = bf16_out ? 1.0 / 256 : 2e-5;
  for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)ldmc_llvm_cpu_host_isa(); isa++) {
    const char *iname = ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa);
    ldmc_llvm_cpu_set_isa((ldmc_llvm_cpu_isa)isa);
    int64_t nf = fused_count(g, (ldmc_llvm_cpu_isa)isa);
    CHECK_MSG(nf == 1, "%s/%s: %" PRId64 " epilogues fused, want 1", name, iname, nf);
    ldmc_tensor got = {0}, got3 = {0}, plain = {0};
    if (run(&ldmc_backend_llvm_cpu, g, in, nin, 2, &got)) {
      double worst = 0;
      int64_t at = 0;
      for (int64_t i = 0; i < nel; i++) {
        double a = ldmc_tensor_get(&got, i), w = ldmc_tensor_get(&want, i);
        double v = fabs(a - w) / (rtol * fabs(w) + arel * amax + 1e-30);
        if (!(v <= worst)) worst = v, at = i;
      }
      CHECK_MSG(worst <= 1.0, "%s/%s: element %" PRId64 " = %.9g, interpreter %.9g (%.3g x tolerance)", name, iname,
                at, ldmc_tensor_get(&got, at), ldmc_tensor_get(&want, at), worst);
      if (run(&ldmc_backend_llvm_cpu, g, in, nin, 3, &got3))
        CHECK_MSG(same_bits(&got, &got3), "%s/%s: 2 and 3 threads differ", name, iname);
      setenv("LDMC_LLVM_CPU_EPILOGUE", "0", 1);
      CHECK_MSG(fused_count(g, (ldmc_llvm_cpu_isa)isa) == 0, "%s/%s: fused with LDMC_LLVM_CPU_EPILOGUE=0", name,
                iname);
      if (run(&ldmc_backend_llvm_cpu, g, in, nin, 2, &plain))
        CHECK_MSG(same_bits(&got, &plain), "%s/%s: fused and unfused results differ", name, iname);
      unsetenv("LDMC_LLVM_CPU_EPILOGUE");
    }
    ldmc_tensor_release(&got);
    ldmc_tensor_release(&got3);
    ldmc_tensor_release(&plain);
  }
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  printf("ok %s\n", name);
  ldmc_tensor_release(&want);
  for (int i = 0; i < nin; i++) ldmc_tensor_release(&in[i]);
  ldmc_graph_free(g);
}

int main(void) {
  char name[96];
  /* convolutions: NCHW, C[image][group][cout][pixel] */
  check_case("conv3x3+bias", conv_graph(2, 5, 7, 9, 3, 1, 1, E_BIAS), false);
  check_case("conv3x3+bias+silu", conv_graph(1, 6, 13, 11, 3, 1, 1, E_BIAS | E_SILU), false);
  check_case("conv3x3+bias+residual", conv_graph(2, 4, 7, 7, 3, 1, 1, E_BIAS | E_RES), false);
  check_case("conv1x1+bias+silu", conv_graph(1, 33, 17, 6, 1, 1, 1, E_BIAS | E_SILU), false);
  check_case("conv3x3s2+bias+bf16", conv_graph(1, 3, 5, 13, 3, 2, 1, E_BIAS | E_BF16), true);
  check_case("conv-groups2+bias+residual", conv_graph(2, 6, 10, 5, 3, 1, 2, E_BIAS | E_RES), false);
  /* K = 33 * 9 = 297 > kc: partial sums across K blocks (in place, and in an f32 buffer for bf16) */
  check_case("conv-bigK+bias+residual", conv_graph(1, 33, 7, 5, 3, 1, 1, E_BIAS | E_RES), false);
  check_case("conv-bigK+bias+silu+bf16", conv_graph(1, 33, 7, 5, 3, 1, 1, E_BIAS | E_SILU | E_BF16), true);
  /* dot_general: [batch, lhs free, rhs free] */
  check_case("dot+bias+gelu", dot_graph(0, 13, 33, 7, E_BIAS | E_GELU), false);
  check_case("dot+scale+bf16", dot_graph(0, 33, 61, 13, E_SCALE | E_BF16), true);
  check_case("dot+reshape+bias+residual", dot_graph(0, 14, 33, 7, E_RESHAPE | E_BIAS | E_RES), false);
  check_case("dot+rowbias+silu", dot_graph(0, 7, 13, 33, E_ROWBIAS | E_SILU), false);
  check_case("batched-dot+bias+residual", dot_graph(3, 7, 13, 33, E_BIAS | E_RES), false);
  check_case("dot-bigK+bias+residual+scale", dot_graph(0, 13, 7, 300, E_BIAS | E_RES | E_SCALE), false);
  check_case("dot-bigK+gelu+bf16", dot_graph(2, 7, 33, 300, E_BIAS | E_GELU | E_BF16), true);
  static const int64_t sz[] = {1, 7, 13, 33, 61};
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 5; j++) {
      int64_t M = sz[i], N = sz[j], K = sz[(i + 2 * j) % 5];
      snprintf(name, sizeof name, "dot %" PRId64 "x%" PRId64 "x%" PRId64 "+bias+silu", M, N, K);
      check_case(name, dot_graph(0, M, N, K, E_BIAS | E_SILU), false);
    }
  return test_summary("llvm_epilogue");
}
