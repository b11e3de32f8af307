/* `ldmc run --model unet ...`: the U-Net of models/unet.h built in memory, with
 * weights from a safetensors file or a seeded random init (models/weights.h). */
#include <string.h>

#include "models/unet.h"
#include "models/weights.h"
#include "tools/run_model.h"

const char *const ldmc_run_model_flags[] = {"channels", "latent", "context", "batch", "weights", "init", NULL};

int ldmc_run_model_setup(const ldmc_cli_cmd *c, ldmc_graph **graph, ldmc_tensor_set *weights) {
  const char *model = ldmc_cli_get(c, "model"), *wpath = ldmc_cli_get(c, "weights"), *init = ldmc_cli_get(c, "init");
  if (strcmp(model, "unet") != 0)
    return ldmc_cli_usage_error(c, "flag '--model' expects unet, got '%s'", model);
  if (!ldmc_cli_has(c, "channels")) return ldmc_cli_usage_error(c, "--model unet needs --channels C (see ldmc run --help)");
  if (!wpath == !init)
    return ldmc_cli_usage_error(c, "--model unet needs one of --weights W.safetensors or --init random");
  if (init && strcmp(init, "random") != 0)
    return ldmc_cli_usage_error(c, "flag '--init' expects random, got '%s'", init);
  int64_t batch = 0, seed = 0;
  int rc;
  if ((rc = ldmc_cli_int(c, "batch", 1, (int64_t)1 << 24, &batch)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(c, "seed", 0, INT64_MAX, &seed)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_unet_config cfg;
  if (ldmc_unet_config_from_args(&cfg, ldmc_cli_get(c, "channels"), ldmc_cli_get(c, "latent"),
                                 ldmc_cli_get(c, "context"), batch) != LDMC_OK)
    return ldmc_cli_usage_error(c, "%s", ldmc_last_error());
  if (ldmc_unet_build(&cfg, graph) != LDMC_OK) return ldmc_cli_fail(c, "building the U-Net: %s", ldmc_last_error());
  if (ldmc_weights_load(*graph, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, wpath, (uint64_t)seed, weights) != LDMC_OK)
    return ldmc_cli_fail(c, "%s", ldmc_last_error());
  return LDMC_CLI_CONTINUE;
}

int ldmc_run_model_check_inputs(const ldmc_cli_cmd *c, const ldmc_graph *g, const char *path, ldmc_tensor_set *inputs) {
  if (ldmc_unet_inputs_check(g, inputs) != LDMC_OK) return ldmc_cli_fail(c, "%s: %s", path, ldmc_last_error());
  return LDMC_CLI_CONTINUE;
}
