/* Planned against allocated activation memory of the U-Net on llvm-cpu.
 *   llvm_cpu_memory [--latent HxW] [--context DxT] [--threads N] C [C ...]
 * For each width C: the arena the backend's plan reports (what `ldmc compile
 * --target llvm-cpu` prints) and the arena its compiled executable allocates
 * (ldmc_llvm_cpu_memory) once it has run on zero inputs, plus the prepacked
 * weight panels. A width whose weights and panels do not fit in memory (c=768:
 * 5B parameters, 20 GB in f32, twice that with panels) is planned only
 * (`--plan-only C`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "models/unet.h"
#include "passes/passes.h"

int main(int argc, char **argv) {
  const char *latent = "64x64", *context = "1024x77";
  int threads = 2, bad = 0;
  printf("%-8s %8s %16s %16s %8s %14s\n", "c", "kernels", "planned bytes", "allocated bytes", "equal", "prepacked MiB");
  bool plan_only = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--plan-only")) { plan_only = true; continue; }
    if (!strcmp(a, "--latent") && v) { latent = v, i++; continue; }
    if (!strcmp(a, "--context") && v) { context = v, i++; continue; }
    if (!strcmp(a, "--threads") && v) { threads = atoi(v), i++; continue; }
    ldmc_unet_config cfg;
    ldmc_graph *g = NULL, *opt = NULL;
    ldmc_plan *plan = NULL;
    ldmc_executable *e = NULL;
    ldmc_compile_opts o = {.threads = threads, .params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
    size_t arena = 0, prepacked = 0;
    if (ldmc_unet_config_from_args(&cfg, a, latent, context, 1) != LDMC_OK || ldmc_unet_build(&cfg, &g) != LDMC_OK ||
        ldmc_backend_llvm_cpu.plan(g, &o, &opt, &plan) != LDMC_OK) {
      fprintf(stderr, "c=%s: %s\n", a, ldmc_last_error());
      return 1;
    }
    if (plan_only) {
      printf("%-8s %8d %16lld %16s %8s %14s\n", a, (int)plan->n_kernels, (long long)plan->arena_bytes, "(not run)", "-", "-");
      plan_only = false;
      ldmc_plan_free(plan);
      ldmc_graph_free(opt);
      ldmc_graph_free(g);
      continue;
    }
    int np = ldmc_graph_num_params(g);
    ldmc_tensor *in = calloc((size_t)np, sizeof *in), out = {0};
    ldmc_status st = in && ldmc_backend_llvm_cpu.compile(g, &o, &e) == LDMC_OK ? LDMC_OK : LDMC_ERR_NOMEM;
    for (int32_t k = 0, j = 0; st == LDMC_OK && k < g->n_nodes; k++)
      if (g->nodes[k].op == LDMC_OP_PARAMETER) st = ldmc_tensor_alloc(&in[j++], "x", g->nodes[k].dtype, &g->nodes[k].shape);
    if (st == LDMC_OK) st = ldmc_executable_run(e, in, np, &out, 1);
    if (st == LDMC_OK) st = ldmc_llvm_cpu_memory(e, &arena, &prepacked);
    for (int j = 0; in && j < np; j++) ldmc_tensor_release(&in[j]);
    free(in);
    ldmc_tensor_release(&out);
    if (st != LDMC_OK) {
      fprintf(stderr, "c=%s: %s\n", a, ldmc_last_error());
      return 1;
    }
    bool eq = (int64_t)arena == plan->arena_bytes;
    bad += !eq;
    printf("%-8s %8d %16lld %16zu %8s %14.1f\n", a, (int)plan->n_kernels, (long long)plan->arena_bytes, arena,
           eq ? "yes" : "NO", (double)prepacked / (1 << 20));
    fflush(stdout);
    ldmc_executable_free(e);
    ldmc_plan_free(plan);
    ldmc_graph_free(opt);
    ldmc_graph_free(g);
  }
  return bad ? 1 : 0;
}
