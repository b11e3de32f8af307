/* `ldmc run --model NAME ...`: builds a built-in model's graph and its weights
 * from run's flags (tools/cmd_run_model.c), and the one table of the U-Net's
 * model-flag defaults and limits that every command building it shares
 * (run, compile, profile, stats). */
#ifndef LDMC_TOOLS_RUN_MODEL_H
#define LDMC_TOOLS_RUN_MODEL_H

#include "ir/ir.h"
#include "models/unet.h"
#include "tools/cli_args.h"

/* ---- the U-Net's model flags: defaults and limits, for every command ---- */
#define LDMC_UNET_CLI_CHANNELS 320              /* --channels: SD-1.5's base width */
#define LDMC_UNET_CLI_CHANNELS_STR "320"
#define LDMC_UNET_CLI_LATENT "64x64x4"          /* --latent HxW[xC] */
#define LDMC_UNET_CLI_CONTEXT "1024x77"         /* --context DxT */
#define LDMC_UNET_CLI_BATCH_MAX ((int64_t)1 << 20) /* --batch B: 1 .. 1048576, default 1 */
#define LDMC_UNET_CLI_BATCH_MAX_STR "1048576"

/* Help texts of those flags, identical in every command. */
#define LDMC_UNET_HELP_CHANNELS "model mode: base width c (default " LDMC_UNET_CLI_CHANNELS_STR "; block widths c,2c,4c,4c;\na multiple of 32, from 32 to 1048576)"
#define LDMC_UNET_HELP_CHANNELS_LIST "base widths c[,c...] (default " LDMC_UNET_CLI_CHANNELS_STR "; block widths c,2c,4c,4c;\neach a multiple of 32, from 32 to 1048576)"
#define LDMC_UNET_HELP_LATENT "model mode: latent height x width x channels (default " LDMC_UNET_CLI_LATENT ";\nH and W multiples of 8)"
#define LDMC_UNET_HELP_CONTEXT "model mode: context width x tokens (default " LDMC_UNET_CLI_CONTEXT ")"
#define LDMC_UNET_HELP_BATCH "model mode: batch size (default 1, at most " LDMC_UNET_CLI_BATCH_MAX_STR ")"

/* The config of the U-Net flags of c: --channels (channels_override if not
 * NULL, else the flag, else the default), --latent, --context, --batch, each
 * defaulting to the table above. LDMC_CLI_CONTINUE, or 2 after a usage error. */
int ldmc_unet_cli_config(const ldmc_cli_cmd *c, const char *channels_override, ldmc_unet_config *cfg);

/* The flags only model mode takes (NULL-terminated), for refusing them without --model. */
extern const char *const ldmc_run_model_flags[];

/* Builds the graph and fills *weights (the model's parameters other than its
 * data inputs; --weights is a .safetensors or .ldmc file). Refuses, before
 * allocating the weights, a run the machine's memory cannot hold. Returns
 * LDMC_CLI_CONTINUE, or the exit status after printing the error. */
int ldmc_run_model_setup(const ldmc_cli_cmd *c, ldmc_graph **graph, ldmc_tensor_set *weights);
/* Checks (and converts, e.g. an integer timestep to f32) the model's data
 * inputs when they are all given; LDMC_CLI_CONTINUE or the exit status. */
int ldmc_run_model_check_inputs(const ldmc_cli_cmd *c, const ldmc_graph *g, const char *path, ldmc_tensor_set *inputs);
/* With --random-inputs: converts an i32/i64 timestep of the right shape in
 * inputs to f32 (the rest is left to the feed's checks). */
int ldmc_run_model_convert_timestep(const ldmc_cli_cmd *c, const ldmc_graph *g, const char *path, ldmc_tensor_set *inputs);

/* Refuses (exit 1) a run of g whose memory, at least its parameters plus the
 * unfused live peak of its activations, exceeds the machine's available
 * memory; the message gives both figures. */
int ldmc_run_check_memory(const ldmc_cli_cmd *c, const ldmc_graph *g);

#endif
