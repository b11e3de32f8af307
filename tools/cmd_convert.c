/* ldmc convert: text IR <-> .ldmc modules, and .ldmc <-> .safetensors tensors.
 * The input's kind comes from its first bytes, the output's from its
 * extension (or --to). Outputs are written atomically. */
#include <stdlib.h>
#include <string.h>

#include "tools/cli_args.h"
#include "tools/cli_io.h"
#include "tools/commands.h"

/* Adds views of the tensors of `extra` to m; a name already in m is an error. */
static ldmc_status merge_tensors(ldmc_module *m, ldmc_tensor_set *extra, const char *extra_path) {
  for (int32_t i = 0; i < extra->n; i++) {
    ldmc_tensor *old = ldmc_tensor_set_find(&m->tensors, extra->items[i].name);
    char q[256];
    if (old)
      return ldmc_error(LDMC_ERR_INVALID, "%s: tensor '%s' is already in the input", extra_path,
                        ldmc_quote(extra->items[i].name, q, sizeof q));
    ldmc_tensor view;
    LDMC_TRY(ldmc_tool_tensor_view(&extra->items[i], &view));
    ldmc_status s = ldmc_tensor_set_add(&m->tensors, &view);
    if (s != LDMC_OK) {
      ldmc_tensor_release(&view);
      return s;
    }
  }
  return LDMC_OK;
}

int ldmc_cmd_convert(int argc, char **argv) {
  ldmc_cli_flag flags[] = {
      {"to", "FORMAT", "output format: text, ldmc or safetensors (default: from OUT's extension)", NULL},
      {"weights", "FILE", "add the tensors of FILE (.safetensors) to a .ldmc output", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "convert",
      .usage = "IN OUT [--to text|ldmc|safetensors] [--weights W.safetensors]",
      .summary = "Convert between text IR (.txt, .ldmcir), binary modules (.ldmc) and tensors\n"
                 "(.safetensors). The graph is verified on the way.",
      .details = "IN's kind is recognized from its first bytes; OUT's from its extension:\n"
                 "  .txt .ldmcir   text IR (needs a graph; tensors are dropped with a note)\n"
                 "  .ldmc          module: the graph, if any, and the tensors\n"
                 "  .safetensors   the tensors only (a graph is dropped with a note)\n"
                 "OUT is written atomically: on any error no file (or the old one) is left.\n"
                 "Examples:\n"
                 "  ldmc convert model.txt model.ldmc --weights model.safetensors\n"
                 "  ldmc convert model.ldmc model.txt\n"
                 "  ldmc convert model.ldmc weights.safetensors\n",
      .flags = flags,
      .n_flags = 2,
      .min_pos = 2,
      .max_pos = 2,
  };
  int rc = ldmc_cli_parse(&c, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *in = c.pos[0], *out = c.pos[1], *to = ldmc_cli_get(&c, "to"), *weights = ldmc_cli_get(&c, "weights");
  ldmc_file_kind out_kind;
  if (to) {
    if (!ldmc_tool_kind_from_name(to, &out_kind))
      return ldmc_cli_usage_error(&c, "flag '--to' expects text, ldmc or safetensors, got '%s'", to);
  } else if (!ldmc_tool_kind_from_ext(out, &out_kind)) {
    return ldmc_cli_usage_error(&c, "%s: unknown output extension (use .txt, .ldmcir, .ldmc or .safetensors, or --to)",
                                out);
  }
  if (weights && out_kind != LDMC_KIND_LDMC)
    return ldmc_cli_usage_error(&c, "flag '--weights' needs a .ldmc output, not %s", ldmc_file_kind_name(out_kind));

  ldmc_module m = {0};
  ldmc_file_kind in_kind;
  if (ldmc_tool_load(in, &m, &in_kind) != LDMC_OK) return ldmc_cli_fail(&c, "%s", ldmc_last_error());
  ldmc_tensor_set extra = {0};
  if (weights) {
    if (ldmc_tool_read_tensors(weights, &extra) != LDMC_OK || merge_tensors(&m, &extra, weights) != LDMC_OK) {
      rc = ldmc_cli_fail(&c, "%s", ldmc_last_error());
      goto done;
    }
  }
  if (out_kind == LDMC_KIND_TEXT && !m.graph) {
    rc = ldmc_cli_fail(&c, "%s: %s holds no graph to write as text IR", in, ldmc_file_kind_name(in_kind));
    goto done;
  }
  if (out_kind == LDMC_KIND_TEXT && m.tensors.n)
    fprintf(stderr, "ldmc convert: note: %d tensors of %s are not written to text IR\n", (int)m.tensors.n, in);
  if (out_kind == LDMC_KIND_SAFETENSORS && m.graph)
    fprintf(stderr, "ldmc convert: note: the graph of %s is not written to safetensors\n", in);
  if (ldmc_tool_save(out, out_kind, &m) != LDMC_OK) {
    rc = ldmc_cli_fail(&c, "%s", ldmc_last_error());
    goto done;
  }
  rc = LDMC_EXIT_OK;
done:
  ldmc_module_free(&m); /* views into extra first, then the mapping */
  ldmc_tensor_set_free(&extra);
  return rc;
}
