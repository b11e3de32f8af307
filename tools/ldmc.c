/* The `ldmc` driver: a table of subcommands, `ldmc --help`, `ldmc help CMD`. */
#include <stdio.h>
#include <string.h>

#include "support/fileio.h"
#include "tools/cli_args.h"
#include "runtime/dist.h"
#include "tools/commands.h"

typedef struct ldmc_subcommand {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} ldmc_subcommand;

static const ldmc_subcommand commands[] = {
    {"version", "print the ldmc version, the LLVM it was built against and the build type", ldmc_cmd_version},
    {"inspect", "list the tensors of a .safetensors or .ldmc file and summarize its graph", ldmc_cmd_inspect},
    {"print", "print the graph of a .ldmc file (or a text IR file) as text IR", ldmc_cmd_print},
    {"convert", "convert between text IR, .ldmc modules and .safetensors weights", ldmc_cmd_convert},
    {"run", "run a graph (or a built-in model) on a backend over named input tensors", ldmc_cmd_run},
    {"compile", "run a target's pass pipeline; print the fused kernels and peak memory", ldmc_cmd_compile},
    {"profile", "per-kernel time, FLOPs, bytes and GFLOP/s against the machine's peak; traces", ldmc_cmd_profile},
    {"stats", "parameters, GFLOPs per step and activation memory of U-Net variants", ldmc_cmd_stats},
    {"train", "train the classifier, the autoencoder or the latent diffusion model on Fashion-MNIST", ldmc_cmd_train},
    {"distill", "latent consistency distillation of a latent diffusion model to 1-8-step sampling (lcm)",
     ldmc_cmd_distill},
    {"plot", "line plots of CSV columns (training logs: loss, validation) as SVG or PNG", ldmc_cmd_plot},
    {"sample", "sample images from a latent diffusion model (the default one) into a PNG grid, with the cost",
     ldmc_cmd_sample},
    {"schedule", "a sampler's timesteps and per-step coefficients (diffusers' rules), one row per step", ldmc_cmd_schedule},
    {"eval", "sample quality: FD, KID and class accuracy in the classifier's feature space", ldmc_cmd_eval},
    {"study", "the scaling study: a family of widths trained, swept over samplers, steps and guidance, plotted", ldmc_cmd_study},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

/* Commands written in other areas' files: a weak stub keeps the table linking
 * while such a file is absent. */
static int missing_command(char **argv) {
  fprintf(stderr, "ldmc %s: not available in this build\n", argv[0]);
  return LDMC_EXIT_FAIL;
}
__attribute__((weak)) int ldmc_cmd_stats(int argc, char **argv) {
  (void)argc;
  return missing_command(argv);
}
__attribute__((weak)) int ldmc_cmd_compile(int argc, char **argv) {
  (void)argc;
  return missing_command(argv);
}
__attribute__((weak)) int ldmc_cmd_profile(int argc, char **argv) {
  (void)argc;
  return missing_command(argv);
}

static void print_usage(FILE *f) {
  fprintf(f,
          "usage: ldmc COMMAND [ARGS...]\n"
          "       ldmc help COMMAND | ldmc COMMAND --help\n\n"
          "ldmc compiles and runs dataflow graphs of diffusion models.\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf(f,
          "\nglobal flags:\n"
          "  -h, --help     show this help\n"
          "  --version      same as `ldmc version`\n"
          "\nExit status: 0 success, 1 runtime or file error, 2 usage error.\n"
          "See docs/cli.md for the full manual.\n");
}

static void print_help_help(FILE *f) {
  fprintf(f,
          "usage: ldmc help [COMMAND]\n\n"
          "Print the list of commands, or the manual of COMMAND (the same as `ldmc COMMAND --help`).\n"
          "`ldmc help help` prints this.\n"
          "\nExit status: 0 success, 2 an unknown command or more than one argument.\n");
}

static const ldmc_subcommand *find_command(const char *name) {
  for (int i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static int unknown_command(const char *name) {
  fprintf(stderr, "ldmc: unknown command '%s' (see ldmc --help)\n", name);
  return LDMC_EXIT_USAGE;
}

int main(int argc, char **argv) {
  ldmc_file_install_signal_cleanup(); /* SIGINT/SIGTERM remove the temp files of unfinished atomic writes */
  if (argc < 2) {
    print_usage(stderr);
    return LDMC_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    print_usage(stdout);
    return LDMC_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0) {
    char *args[] = {"version", NULL};
    return ldmc_cmd_version(1, args);
  }
  if (strcmp(cmd, "help") == 0) {
    if (argc == 2) {
      print_usage(stdout);
      return LDMC_EXIT_OK;
    }
    if (argc > 3) {
      fprintf(stderr, "ldmc help: expected one command name, got %d arguments\n", argc - 2);
      return LDMC_EXIT_USAGE;
    }
    if (strcmp(argv[2], "help") == 0 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
      print_help_help(stdout);
      return LDMC_EXIT_OK;
    }
    const ldmc_subcommand *sc = find_command(argv[2]);
    if (!sc) return unknown_command(argv[2]);
    char *args[] = {(char *)sc->name, "--help", NULL};
    return sc->run(2, args);
  }
  if (cmd[0] == '-') {
    fprintf(stderr, "ldmc: unknown flag '%s' (see ldmc --help)\n", cmd);
    return LDMC_EXIT_USAGE;
  }
  const ldmc_subcommand *sc = find_command(cmd);
  if (!sc) return unknown_command(cmd);
  /* under mpirun/srun: one rank of a data-parallel job (runtime/dist.h) */
  if (ldmc_dist_init(&argc, &argv) != LDMC_OK) {
    fprintf(stderr, "ldmc: %s\n", ldmc_last_error());
    return LDMC_EXIT_FAIL;
  }
  int rc = sc->run(argc - 1, argv + 1);
  ldmc_dist_finalize();
  return rc;
}
