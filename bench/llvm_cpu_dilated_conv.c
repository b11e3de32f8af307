/* lhs-dilated convolution (the input gradient of a strided convolution, the
 * transposed-conv form) against the plain strided convolution of the same
 * useful FLOPs, on the llvm-cpu backend in the same run.
 *   llvm_cpu_dilated_conv [--threads N] [--reps N] [--c C] [--hw HW]
 * plain:   x[1, C, HW, HW] * w[C, C, 3, 3], stride 2, pad 1 -> [1, C, HW/2, HW/2]
 * dilated: x[1, C, HW/2, HW/2] dilated by 2, pad 1 / 2, * w[C, C, 3, 3] -> [1, C, HW, HW]
 * Both do 2 * C * 9C * (HW/2)^2 useful FLOPs (the dilated one's holes are
 * skipped: one implicit GEMM per output phase), which is what GFLOP/s counts. */
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

static ldmc_graph *conv(int64_t C, int64_t H, int64_t stride, int64_t ldil, int64_t plo, int64_t phi) {
  ldmc_builder *b = ldmc_builder_new("conv");
  int64_t xd[4] = {1, C, H, H}, wd[4] = {C, C, 3, 3};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  ldmc_attrs a = {0};
  a.window_stride = (ldmc_ints){2, {stride, stride}};
  a.pad_low = (ldmc_ints){2, {plo, plo}};
  a.pad_high = (ldmc_ints){2, {phi, phi}};
  a.lhs_dilation = (ldmc_ints){2, {ldil, ldil}};
  a.rhs_dilation = (ldmc_ints){2, {1, 1}};
  a.groups = 1;
  a.input_dims = a.kernel_dims = a.output_dims = (ldmc_ints){4, {0, 1, 2, 3}};
  int32_t ops[2] = {x, w};
  int32_t y = ldmc_graph_add_checked(ldmc_builder_graph(b), LDMC_OP_CONVOLUTION, LDMC_F32, NULL, 2, ops, &a, NULL);
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static double bench(ldmc_graph *g, int threads, int reps) {
  ldmc_compile_opts o = {.threads = threads, .params_are_weights = true, .n_activation_params = 1};
  ldmc_executable *e = NULL;
  if (ldmc_backend_llvm_cpu.compile(g, &o, &e) != LDMC_OK) {
    fprintf(stderr, "compile: %s\n", ldmc_last_error());
    exit(1);
  }
  int np = ldmc_graph_num_params(g), k = 0;
  ldmc_tensor in[2];
  memset(in, 0, sizeof in);
  for (int32_t i = 0; i < g->n_nodes && k < np; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) {
      ldmc_tensor_alloc(&in[k], g->nodes[i].attrs.name, LDMC_F32, &g->nodes[i].shape);
      float *f = in[k].data;
      for (size_t j = 0; j < in[k].nbytes / 4; j++) f[j] = (float)((j * 2654435761u) % 1000) / 1000.0f - 0.5f;
      k++;
    }
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++) {
    ldmc_tensor out = {0};
    double t0 = now();
    if (ldmc_executable_run(e, in, np, &out, 1) != LDMC_OK) {
      fprintf(stderr, "run: %s\n", ldmc_last_error());
      exit(1);
    }
    double t = now() - t0;
    if (r > 0 && t < best) best = t; /* the first run binds (prepacks) the weights */
    ldmc_tensor_release(&out);
  }
  for (int i = 0; i < np; i++) ldmc_tensor_release(&in[i]);
  ldmc_executable_free(e);
  return best;
}

int main(int argc, char **argv) {
  int threads = 1, reps = 10;
  int64_t C = 320, HW = 64;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--c") && i + 1 < argc) C = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--hw") && i + 1 < argc) HW = atoll(argv[++i]);
  }
  double flops = 2.0 * (double)C * 9.0 * (double)C * (double)(HW / 2) * (double)(HW / 2);
  ldmc_graph *plain = conv(C, HW, 2, 1, 1, 1), *dil = conv(C, HW / 2, 1, 2, 1, 2);
  for (int round = 0; round < 2; round++) { /* alternate, so load changes hit both */
    double tp = bench(plain, threads, reps), td = bench(dil, threads, reps);
    printf("c=%lld %lldx%lld, %d thread(s): plain stride-2 conv %.1f GFLOP/s (%.2f ms), lhs-dilated conv %.1f GFLOP/s "
           "(%.2f ms), ratio %.2f\n",
           (long long)C, (long long)HW, (long long)HW, threads, flops / tp / 1e9, tp * 1e3, flops / td / 1e9, td * 1e3,
           tp / td);
  }
  ldmc_graph_free(plain);
  ldmc_graph_free(dil);
  return 0;
}
