/* `ldmc run --model NAME ...`: builds a built-in model's graph and its weights
 * from run's flags (tools/cmd_run_model.c). */
#ifndef LDMC_TOOLS_RUN_MODEL_H
#define LDMC_TOOLS_RUN_MODEL_H

#include "ir/ir.h"
#include "tools/cli_args.h"

/* The flags only model mode takes (NULL-terminated), for refusing them without --model. */
extern const char *const ldmc_run_model_flags[];

/* Builds the graph and fills *weights (the model's parameters other than its
 * data inputs). Returns LDMC_CLI_CONTINUE, or the exit status after printing
 * the error. */
int ldmc_run_model_setup(const ldmc_cli_cmd *c, ldmc_graph **graph, ldmc_tensor_set *weights);
/* Checks (and converts, e.g. an integer timestep to f32) the model's data
 * inputs when they are all given; LDMC_CLI_CONTINUE or the exit status. */
int ldmc_run_model_check_inputs(const ldmc_cli_cmd *c, const ldmc_graph *g, const char *path, ldmc_tensor_set *inputs);

#endif
