/* ldmc print: the graph of a .ldmc module (or of a text IR file, re-printed in
 * canonical form) as text IR, on stdout or atomically into a file. */
#include <stdlib.h>

#include "tools/cli_args.h"
#include "tools/cli_io.h"
#include "tools/commands.h"

int ldmc_cmd_print(int argc, char **argv) {
  ldmc_cli_flag flags[] = {
      {"out", "FILE", "write the text IR to FILE (.txt or .ldmcir; atomically) instead of stdout", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "print",
      .usage = "FILE.ldmc [--out FILE.txt]",
      .summary = "Print the graph of a .ldmc module as text IR (the HLO-like form of docs/ir.md).\n"
                 "A text IR file is parsed, verified and printed back in canonical form.",
      .details = "The module's tensors are not printed; see `ldmc inspect` for them.\n",
      .flags = flags,
      .n_flags = 1,
      .min_pos = 1,
      .max_pos = 1,
  };
  int rc = ldmc_cli_parse(&c, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *path = c.pos[0], *out = ldmc_cli_get(&c, "out");
  static const char *const text_exts[] = {".txt", ".ldmcir", NULL};
  if ((rc = ldmc_tool_check_output(&c, "--out", out, text_exts)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_module m = {0};
  ldmc_file_kind kind;
  if (ldmc_tool_load(path, &m, &kind) != LDMC_OK) return ldmc_cli_fail(&c, "%s", ldmc_last_error());
  if (!m.graph) {
    ldmc_module_free(&m);
    return ldmc_cli_fail(&c, "%s: %s holds no graph (only tensors; see ldmc inspect)", path,
                         ldmc_file_kind_name(kind));
  }
  char *text = ldmc_graph_print(m.graph);
  ldmc_module_free(&m);
  if (!text) return ldmc_cli_fail(&c, "%s: %s", path, ldmc_last_error());
  rc = LDMC_EXIT_OK;
  if (out) {
    if (ldmc_tool_write_text(out, text) != LDMC_OK) rc = ldmc_cli_fail(&c, "%s", ldmc_last_error());
  } else if (fputs(text, stdout) == EOF || fflush(stdout) != 0) {
    rc = ldmc_cli_fail(&c, "cannot write to stdout");
  }
  free(text);
  return rc;
}
