/* Target names for --target help texts (see cli_target.h). */
#include "tools/cli_target.h"

#include <stdio.h>

#include "passes/passes.h"

const char *ldmc_cli_target_names(void) {
  static char list[256];
  size_t k = 0;
  list[0] = '\0';
  for (int i = 0; i < ldmc_target_count() && k < sizeof list; i++)
    k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", ldmc_target_get(i)->name);
  return list;
}

const char *ldmc_cli_target_help(const char *what) {
  static char help[512];
  snprintf(help, sizeof help, "%s:\n%s (default cpu;\ncpu-nchw is the plan `ldmc run --backend llvm-cpu` executes)", what,
           ldmc_cli_target_names());
  return help;
}
