/* The study's widths on the simulated TPU-like core (backends/tpusim): the
 * U-Net at the batch a guided sampling step runs (2 x the sample batch),
 * compiled for the v5e-like preset and run once in timing-only mode; its
 * simulated seconds per image and pass price every cell in simulated time
 * next to the measured llvm-cpu seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/tpusim.h"
#include "models/ldm_model.h"
#include "tools/study.h"

int study_tpusim_seconds(const study_config *c, int width, const char *preset, double *s_per_pass, char *err,
                         size_t errlen) {
  *s_per_pass = 0;
  ldmc_ldm_model m;
  if (ldmc_ldm_model_load(c->vae, &m) != LDMC_OK) return snprintf(err, errlen, "vae: %s", ldmc_last_error()), 1;
  ldmc_unet_config u;
  ldmc_unet_config_default(&u, width);
  u.groups = c->groups;
  u.height = m.unet.height, u.width = m.unet.width, u.in_channels = u.out_channels = m.unet.in_channels;
  u.context_dim = c->text_width, u.context_tokens = c->tokens;
  u.batch = 2 * c->sample_batch;
  ldmc_ldm_model_free(&m);
  ldmc_tpu_target t;
  ldmc_graph *g = NULL;
  ldmc_executable *e = NULL;
  ldmc_status st = ldmc_tpusim_target_resolve(preset, &t);
  if (st == LDMC_OK) st = ldmc_unet_build(&u, &g);
  ldmc_compile_opts co = {.bf16 = true, .params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
  if (st == LDMC_OK) st = ldmc_tpusim_compile_mode(g, &co, &t, LDMC_TPU_SIM_TIMING_ONLY, &e);
  int32_t np = g ? ldmc_graph_num_params(g) : 0;
  ldmc_tensor *in = calloc((size_t)np + 1, sizeof *in), out = {0};
  if (st == LDMC_OK && !in) st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t k = 0; st == LDMC_OK && k < np; k++) { /* timing-only: never read, but shaped as the graph's */
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    st = ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape);
  }
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, np, &out, 1);
  uint64_t cycles = 0;
  for (int i = 0; st == LDMC_OK && i < ldmc_tpusim_kernel_count(e); i++) {
    ldmc_tpusim_kernel k;
    if ((st = ldmc_tpusim_kernel_get(e, i, &k)) == LDMC_OK) cycles += k.stats.cycles * (k.runs ? 1 : 0);
  }
  if (st == LDMC_OK) *s_per_pass = (double)cycles / t.clock_hz / (double)u.batch;
  else snprintf(err, errlen, "tpusim, width %d: %s", width, ldmc_last_error());
  for (int32_t k = 0; in && k < np; k++) ldmc_tensor_release(&in[k]);
  ldmc_tensor_release(&out);
  free(in);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
  return st != LDMC_OK;
}
