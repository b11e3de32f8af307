/* A small member of the U-Net family (c=32, 16x16 latent, context 64x7) on
 * llvm-cpu against the interpreter, with the same random weights and inputs:
 * the whole model — convolutions, group norms, attention, GEGLU, skip
 * concatenations, upsampling, the time embedding — through the backend's
 * fusion and kernels. Also checks that the repeated blocks share compiled
 * kernels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "models/unet.h"
#include "test_util.h"

int main(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 16;
  cfg.context_dim = 64;
  cfg.context_tokens = 7;
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_unet_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return test_summary("llvm_unet");
  int np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in);
  unsigned s = 7;
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape);
    size_t n = in[k].nbytes / 4;
    /* fan-in scaled uniform weights keep activations O(1) through the depth */
    double sc = p->shape.rank >= 2 ? 1.7 / sqrt((double)n / (double)p->shape.dims[0]) : 0.2;
    for (size_t j = 0; j < n; j++) {
      s = s * 1103515245u + 12345u;
      ((float *)in[k].data)[j] = (float)((((s >> 8) % 20001) / 10000.0 - 1.0) * sc);
    }
    if (k == 1) ((float *)in[k].data)[0] = 321.0f; /* timestep */
    k++;
  }
  ldmc_tensor got = {0}, want = {0};
  ldmc_executable *e = NULL, *ref = NULL;
  ldmc_compile_opts o = {.threads = 2};
  ldmc_llvm_cpu_stats s0, s1;
  ldmc_llvm_cpu_stats_get(&s0);
  ldmc_status st = ldmc_backend_llvm_cpu.compile(g, &o, &e);
  CHECK_MSG(st == LDMC_OK, "compile: %s", ldmc_last_error());
  ldmc_llvm_cpu_stats_get(&s1);
  int64_t requested = s1.kernels_requested - s0.kernels_requested;
  int64_t distinct = (s1.kernels_compiled - s0.kernels_compiled) + (s1.disk_hits - s0.disk_hits);
  printf("llvm_unet: %d nodes, %lld kernel steps, %lld distinct kernels compiled\n", (int)g->n_nodes, (long long)requested,
         (long long)distinct);
  CHECK_MSG(distinct < requested / 2, "repeated blocks should share kernels: %lld distinct of %lld", (long long)distinct,
            (long long)requested);
  if (st == LDMC_OK) CHECK(ldmc_executable_run(e, in, np, &got, 1) == LDMC_OK);
  st = ldmc_backend_interp.compile(g, &o, &ref);
  if (st == LDMC_OK) st = ldmc_executable_run(ref, in, np, &want, 1);
  CHECK_MSG(st == LDMC_OK, "interp: %s", ldmc_last_error());
  if (got.data && want.data) {
    size_t n = want.nbytes / 4;
    double md = 0, mx = 0;
    for (size_t j = 0; j < n; j++) {
      double w = ((float *)want.data)[j], a = ((float *)got.data)[j];
      if (fabs(a - w) > md || isnan(a)) md = isnan(a) ? INFINITY : fabs(a - w);
      if (fabs(w) > mx) mx = fabs(w);
    }
    printf("llvm_unet: max |llvm-cpu - interp| = %.3g, max |interp| = %.3g\n", md, mx);
    CHECK(mx > 1e-3);                   /* the model does something */
    CHECK_MSG(md <= 1e-4 * mx, "U-Net output differs from the interpreter: %g (scale %g)", md, mx);
  }
  ldmc_tensor_release(&got);
  ldmc_tensor_release(&want);
  ldmc_executable_free(e);
  ldmc_executable_free(ref);
  for (int k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
  free(in);
  ldmc_graph_free(g);
  return test_summary("llvm_unet");
}
