/* `ldmc run --model unet ...`: the U-Net of models/unet.h built in memory, with
 * weights from a safetensors (or .ldmc) file or a seeded random init
 * (models/weights.h); the U-Net flags' shared defaults; the memory check. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/stats.h"
#include "models/unet.h"
#include "models/weights.h"
#include "tools/cli_io.h"
#include "tools/run_model.h"

const char *const ldmc_run_model_flags[] = {"channels", "latent", "context", "batch", "weights", "init", NULL};

int ldmc_unet_cli_config(const ldmc_cli_cmd *c, const char *channels_override, ldmc_unet_config *cfg) {
  int64_t batch = 1;
  int rc;
  if ((rc = ldmc_cli_int(c, "batch", 1, LDMC_UNET_CLI_BATCH_MAX, &batch)) != LDMC_CLI_CONTINUE) return rc;
  const char *ch = channels_override ? channels_override : ldmc_cli_get(c, "channels");
  const char *latent = ldmc_cli_get(c, "latent"), *context = ldmc_cli_get(c, "context");
  if (ldmc_unet_config_from_args(cfg, ch ? ch : LDMC_UNET_CLI_CHANNELS_STR, latent ? latent : LDMC_UNET_CLI_LATENT,
                                 context ? context : LDMC_UNET_CLI_CONTEXT, batch) != LDMC_OK)
    return ldmc_cli_usage_error(c, "%s", ldmc_last_error());
  return LDMC_CLI_CONTINUE;
}

/* Bytes of memory available to this process: MemAvailable, else free pages. */
static int64_t available_bytes(const char **source) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (f) {
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    if (kb >= 0) {
      *source = "MemAvailable in /proc/meminfo";
      return (int64_t)kb * 1024;
    }
  }
  long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && size > 0) {
    *source = "free physical memory";
    return (int64_t)pages * size;
  }
  return -1;
}

int ldmc_run_check_memory(const ldmc_cli_cmd *c, const ldmc_graph *g) {
  double params = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    int64_t numel;
    if (n->op != LDMC_OP_PARAMETER || ldmc_shape_numel(&n->shape, 0, &numel) != LDMC_OK) continue;
    params += (double)numel * (double)ldmc_dtype_size(n->dtype);
  }
  ldmc_model_stats st;
  if (ldmc_stats_compute(g, NULL, 0, &st) != LDMC_OK) return LDMC_CLI_CONTINUE; /* no estimate: let it try */
  double need = params + (double)st.peak_activation_bytes;
  const char *source = NULL;
  int64_t avail = available_bytes(&source);
  if (avail < 0 || need <= (double)avail) return LDMC_CLI_CONTINUE;
  char a[32], b[32], p[32], act[32];
  ldmc_tool_format_bytes(need, a, sizeof a);
  ldmc_tool_format_bytes((double)avail, b, sizeof b);
  ldmc_tool_format_bytes(params, p, sizeof p);
  ldmc_tool_format_bytes((double)st.peak_activation_bytes, act, sizeof act);
  return ldmc_cli_fail(c,
                       "graph '%s' needs at least %s (parameters and inputs %s + live activations %s), more than the "
                       "%s of memory available (%s); use a smaller --batch, --latent or --channels",
                       g->name ? g->name : "", a, p, act, b, source);
}

int ldmc_run_model_setup(const ldmc_cli_cmd *c, ldmc_graph **graph, ldmc_tensor_set *weights) {
  const char *model = ldmc_cli_get(c, "model"), *wpath = ldmc_cli_get(c, "weights"), *init = ldmc_cli_get(c, "init");
  if (strcmp(model, "unet") != 0)
    return ldmc_cli_usage_error(c, "flag '--model' expects unet, got '%s'", model);
  if (wpath && init)
    return ldmc_cli_usage_error(c, "--weights and --init random are mutually exclusive: give one, not both");
  if (!wpath && !init)
    return ldmc_cli_usage_error(c, "--model unet needs its weights: --weights FILE (.safetensors or .ldmc) or --init random");
  if (init && strcmp(init, "random") != 0)
    return ldmc_cli_usage_error(c, "flag '--init' expects random, got '%s'", init);
  int64_t seed = 0;
  int rc;
  if ((rc = ldmc_cli_int(c, "seed", 0, INT64_MAX, &seed)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_unet_config cfg;
  if ((rc = ldmc_unet_cli_config(c, NULL, &cfg)) != LDMC_CLI_CONTINUE) return rc;
  if (ldmc_unet_build(&cfg, graph) != LDMC_OK) return ldmc_cli_fail(c, "building the U-Net: %s", ldmc_last_error());
  if ((rc = ldmc_run_check_memory(c, *graph)) != LDMC_CLI_CONTINUE) return rc;
  if (!wpath) {
    if (ldmc_weights_init_random(*graph, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, (uint64_t)seed, weights) != LDMC_OK)
      return ldmc_cli_fail(c, "%s", ldmc_last_error());
    return LDMC_CLI_CONTINUE;
  }
  /* .safetensors or .ldmc (a module's tensors), recognized by the first bytes as --inputs is */
  if (ldmc_tool_read_tensors(wpath, weights) != LDMC_OK) return ldmc_cli_fail(c, "%s", ldmc_last_error());
  if (ldmc_weights_check(*graph, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, weights) != LDMC_OK) {
    ldmc_error_prefix("%s: ", wpath);
    ldmc_tensor_set_free(weights);
    return ldmc_cli_fail(c, "%s", ldmc_last_error());
  }
  return LDMC_CLI_CONTINUE;
}

int ldmc_run_model_check_inputs(const ldmc_cli_cmd *c, const ldmc_graph *g, const char *path, ldmc_tensor_set *inputs) {
  if (ldmc_unet_inputs_check(g, inputs) != LDMC_OK) return ldmc_cli_fail(c, "%s: %s", path, ldmc_last_error());
  return LDMC_CLI_CONTINUE;
}

int ldmc_run_model_convert_timestep(const ldmc_cli_cmd *c, const ldmc_graph *g, const char *path, ldmc_tensor_set *inputs) {
  ldmc_tensor *t = ldmc_tensor_set_find(inputs, "timestep");
  int32_t id = ldmc_graph_find_param(g, "timestep");
  if (!t || id < 0 || t->raw_dtype[0] || (t->dtype != LDMC_I32 && t->dtype != LDMC_I64) ||
      g->nodes[id].dtype != LDMC_F32 || !ldmc_shape_equal(&t->shape, &g->nodes[id].shape))
    return LDMC_CLI_CONTINUE; /* nothing to convert; the feed checks the rest */
  ldmc_tensor f = {0};
  int64_t n;
  if (ldmc_shape_numel(&t->shape, 0, &n) != LDMC_OK || ldmc_tensor_alloc(&f, t->name, LDMC_F32, &t->shape) != LDMC_OK)
    return ldmc_cli_fail(c, "%s: converting 'timestep' to f32: %s", path, ldmc_last_error());
  for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(&f, i, ldmc_tensor_get(t, i));
  ldmc_tensor_release(t);
  *t = f;
  return LDMC_CLI_CONTINUE;
}
