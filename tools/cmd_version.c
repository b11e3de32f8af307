/* ldmc version: what was built, with what, and which backends it carries. */
#include <stdio.h>

#include "backends/backend.h"
#include "runtime/dist.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

#ifndef LDMC_LLVM_VERSION
#define LDMC_LLVM_VERSION "unknown"
#endif
#ifndef LDMC_BUILD_TYPE
#define LDMC_BUILD_TYPE "unknown"
#endif
#ifndef LDMC_C_COMPILER
#define LDMC_C_COMPILER "unknown"
#endif

int ldmc_cmd_version(int argc, char **argv) {
  ldmc_cli_cmd c = {
      .name = "version",
      .usage = "",
      .summary = "Print the ldmc version, the LLVM version it was built against, the build type,\n"
                 "the compiler, whether MPI is in (data-parallel training) and the registered backends.",
      .min_pos = 0,
      .max_pos = 0,
  };
  int rc = ldmc_cli_parse(&c, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  printf("ldmc %s\n", LDMC_VERSION);
  printf("llvm %s\n", LDMC_LLVM_VERSION);
  printf("build %s%s\n", LDMC_BUILD_TYPE,
#ifdef LDMC_SANITIZED
         " (AddressSanitizer+UBSan)"
#else
         ""
#endif
  );
  printf("compiler %s\n", LDMC_C_COMPILER);
  printf("mpi %s\n", ldmc_dist_built() ? ldmc_dist_library() : "no (built without libopenmpi-dev: one process only)");
  printf("backends");
  for (int i = 0; i < ldmc_backend_count(); i++) printf(" %s", ldmc_backend_get(i)->name);
  printf("\n");
  return LDMC_EXIT_OK;
}
