/* One U-Net forward on the llvm-cpu backend, timed.
 *   llvm_cpu_unet --channels C --latent HxW --context DxT [--threads N] [--repeat N]
 *                 [--weights W.safetensors --inputs IN.safetensors --out OUT.safetensors]
 *                 [--profile]
 * Without --weights/--inputs it runs on deterministic noise. Prints
 *   gflop=<per forward> compile_s=<s> kernels=<distinct compiled>
 *   run_ms median=<ms> min=<ms> gflops=<at the median>
 * bench/unet_vs_torch.py drives it against PyTorch with the same weights. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/weights_io.h"
#include "models/unet.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *channels = "64", *latent = "32x32", *context = "1024x77", *weights = NULL, *inputs = NULL, *out = NULL;
  mallopt(M_MMAP_THRESHOLD, 1 << 30); /* reuse the output's pages between runs */
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  int threads = 2, repeat = 3;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--channels") && v) channels = v, i++;
    else if (!strcmp(a, "--latent") && v) latent = v, i++;
    else if (!strcmp(a, "--context") && v) context = v, i++;
    else if (!strcmp(a, "--weights") && v) weights = v, i++;
    else if (!strcmp(a, "--inputs") && v) inputs = v, i++;
    else if (!strcmp(a, "--out") && v) out = v, i++;
    else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
    else if (!strcmp(a, "--repeat") && v) repeat = atoi(v), i++;
    else if (!strcmp(a, "--profile")) setenv("LDMC_LLVM_CPU_PROFILE", "1", 1);
    else {
      fprintf(stderr, "unknown argument %s\n", a);
      return 2;
    }
  }
  ldmc_unet_config cfg;
  ldmc_graph *g = NULL;
  if (ldmc_unet_config_from_args(&cfg, channels, latent, context, 1) != LDMC_OK || ldmc_unet_build(&cfg, &g) != LDMC_OK) {
    fprintf(stderr, "unet: %s\n", ldmc_last_error());
    return 1;
  }
  ldmc_flops f = ldmc_graph_flops(g);
  double gflop = (double)(f.mac + f.other) / 1e9;
  ldmc_tensor_set wset = {0}, iset = {0};
  if (weights && ldmc_safetensors_load(weights, &wset) != LDMC_OK) {
    fprintf(stderr, "%s\n", ldmc_last_error());
    return 1;
  }
  if (inputs && ldmc_safetensors_load(inputs, &iset) != LDMC_OK) {
    fprintf(stderr, "%s\n", ldmc_last_error());
    return 1;
  }
  int np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in);
  unsigned seed = 1;
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const ldmc_tensor *src = ldmc_tensor_set_find(&wset, p->attrs.name);
    if (!src) src = ldmc_tensor_set_find(&iset, p->attrs.name);
    ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape);
    size_t n = in[k].nbytes / 4;
    if (src && src->dtype == LDMC_F32 && src->nbytes == in[k].nbytes) {
      memcpy(in[k].data, src->data, in[k].nbytes);
    } else if (src && (src->dtype == LDMC_I64 || src->dtype == LDMC_I32) && p->dtype == LDMC_F32) { /* timestep */
      for (size_t j = 0; j < n; j++) ((float *)in[k].data)[j] = (float)ldmc_tensor_get(src, (int64_t)j);
    } else {
      if ((weights || inputs) && src == NULL) fprintf(stderr, "note: %s not in the files, using noise\n", p->attrs.name);
      double sc = p->shape.rank >= 2 ? 1.0 / sqrt((double)n / (double)p->shape.dims[0]) : 0.1;
      for (size_t j = 0; j < n; j++) {
        seed = seed * 1103515245u + 12345u;
        ((float *)in[k].data)[j] = (float)((((seed >> 8) % 20001) / 10000.0 - 1.0) * sc * 1.7);
      }
      if (k == 1) ((float *)in[k].data)[0] = 500.0f; /* timestep */
    }
    k++;
  }
  ldmc_tensor_set_free(&wset);
  ldmc_tensor_set_free(&iset);
  ldmc_llvm_cpu_stats s0, s1;
  ldmc_llvm_cpu_stats_get(&s0);
  ldmc_compile_opts o = {.threads = threads,
                         .verbose = getenv("LDMC_VERBOSE") ? 1 : 0,
                         .bf16 = getenv("LDMC_LLVM_CPU_BF16") && strcmp(getenv("LDMC_LLVM_CPU_BF16"), "0") != 0,
                         .params_are_weights = true, /* sample, timestep, context; then the weights */
                         .n_activation_params = LDMC_UNET_N_INPUTS};
  ldmc_executable *e = NULL;
  double t0 = now();
  if (ldmc_backend_llvm_cpu.compile(g, &o, &e) != LDMC_OK) {
    fprintf(stderr, "compile: %s\n", ldmc_last_error());
    return 1;
  }
  double compile_s = now() - t0;
  ldmc_llvm_cpu_stats_get(&s1);
  printf("gflop=%.3f compile_s=%.2f kernels=%lld steps_cached=%lld\n", gflop, compile_s,
         (long long)(s1.kernels_compiled - s0.kernels_compiled), (long long)(s1.cache_hits - s0.cache_hits));
  double *ms = calloc((size_t)(repeat + 1), sizeof *ms);
  ldmc_tensor result = {0};
  for (int r = 0; r <= repeat; r++) { /* run 0 warms the arena and the threads */
    ldmc_tensor_release(&result);
    t0 = now();
    if (ldmc_executable_run(e, in, np, &result, 1) != LDMC_OK) {
      fprintf(stderr, "run: %s\n", ldmc_last_error());
      return 1;
    }
    ms[r] = (now() - t0) * 1e3;
  }
  qsort(ms + 1, (size_t)repeat, sizeof *ms, cmp_d);
  double med = ms[1 + repeat / 2], mn = ms[1];
  if (repeat % 2 == 0 && repeat > 0) med = 0.5 * (ms[repeat / 2] + ms[repeat / 2 + 1]);
  printf("run_ms median=%.2f min=%.2f first=%.2f gflops=%.1f\n", med, mn, ms[0], gflop / (med / 1e3));
  if (out) {
    ldmc_tensor_set os = {0};
    ldmc_tensor_set_add(&os, &result);
    if (ldmc_safetensors_save(out, &os, 0, NULL, NULL) != LDMC_OK) fprintf(stderr, "%s\n", ldmc_last_error());
    ldmc_tensor_set_free(&os);
  } else {
    ldmc_tensor_release(&result);
  }
  for (int k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
  free(in);
  free(ms);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
  return 0;
}
