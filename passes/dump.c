/* IR dumps: text IR (parseable; the plan follows as '#' comments) and
 * Graphviz dot with kernels drawn as clusters. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "passes/pass_util.h"
#include "support/fileio.h"

static ldmc_status write_file(const char *path, const char *a, const char *b) {
  FILE *f = fopen(path, "w");
  if (!f) return ldmc_error(LDMC_ERR_IO, "cannot write dump '%s': %s", path, strerror(errno));
  bool ok = fputs(a, f) >= 0 && (!b || fputs(b, f) >= 0);
  ok = fclose(f) == 0 && ok;
  if (!ok) return ldmc_error(LDMC_ERR_IO, "error writing dump '%s'", path);
  return LDMC_OK;
}

/* Prefixes each line of s with "# ". */
static char *commented(const char *s) {
  size_t lines = 1, n = strlen(s);
  for (size_t i = 0; i < n; i++) lines += s[i] == '\n';
  char *o = malloc(n + 2 * lines + 2), *w = o;
  if (!o) return NULL;
  bool bol = true;
  for (size_t i = 0; i < n; i++) {
    if (bol) {
      *w++ = '#';
      *w++ = ' ';
    }
    *w++ = s[i];
    bol = s[i] == '\n';
  }
  *w = 0;
  return o;
}

static void dot_node(ldmc_textbuf *b, const ldmc_graph *g, int32_t i) {
  const ldmc_node *n = &g->nodes[i];
  char shape[200];
  const char *style = "";
  if (n->op == LDMC_OP_PARAMETER) style = ",shape=box,style=filled,fillcolor=\"#dde8ff\"";
  else if (n->op == LDMC_OP_CONSTANT) style = ",shape=box,style=filled,fillcolor=\"#eeeeee\"";
  ldmc_textbuf_printf(b, "    n%d [label=\"%%%d %s\\n%s%s", (int)i, (int)i, ldmc_op_name(n->op),
                      ldmc_dtype_name(n->dtype), ldmc_shape_str(&n->shape, shape, sizeof shape));
  if (n->op == LDMC_OP_PARAMETER && n->attrs.name) {
    /* names are identifiers and dotted paths; drop anything that would break the label */
    ldmc_textbuf_printf(b, "\\n");
    for (const char *p = n->attrs.name; *p; p++)
      if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) ldmc_textbuf_printf(b, "%c", *p);
  }
  ldmc_textbuf_printf(b, "\"%s];\n", style);
}

char *ldmc_graph_to_dot(const ldmc_graph *g, const ldmc_plan *plan) {
  ldmc_textbuf b = {0};
  ldmc_textbuf_printf(&b,
                      "digraph ldmc {\n  rankdir=TB;\n  node [shape=ellipse,fontname=\"monospace\",fontsize=10];\n");
  bool clusters = plan && plan->n_kernels > 0 && plan->kernel_of && plan->n_nodes == g->n_nodes;
  if (clusters) {
    for (int32_t k = 0; k < plan->n_kernels; k++) {
      const ldmc_kernel *kr = &plan->kernels[k];
      ldmc_textbuf_printf(&b, "  subgraph cluster_k%d {\n    label=\"k%d %s\";\n    style=rounded;\n", (int)k,
                          (int)k, ldmc_kernel_kind_name(kr->kind));
      for (int32_t j = 0; j < kr->n_nodes; j++) dot_node(&b, g, kr->nodes[j]);
      ldmc_textbuf_printf(&b, "  }\n");
    }
  }
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (!clusters || plan->kernel_of[i] < 0) dot_node(&b, g, i);
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_operands; k++)
      ldmc_textbuf_printf(&b, "  n%d -> n%d;\n", (int)g->nodes[i].operands[k], (int)i);
  for (int32_t i = 0; i < g->n_outputs; i++) {
    ldmc_textbuf_printf(&b, "  out%d [shape=plaintext,label=\"", (int)i);
    for (const char *p = g->output_names[i]; *p; p++)
      if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) ldmc_textbuf_printf(&b, "%c", *p);
    ldmc_textbuf_printf(&b, "\"];\n  n%d -> out%d;\n", (int)g->outputs[i], (int)i);
  }
  ldmc_textbuf_printf(&b, "}\n");
  if (b.oom) {
    free(b.s);
    ldmc_error(LDMC_ERR_NOMEM, "out of memory writing dot");
    return NULL;
  }
  return b.s;
}

/* mkdir -p dir: a missing dump folder is created (as XLA's --xla_dump_to
 * does); an error names the component that could not be made. */
static ldmc_status make_dirs(const char *dir) {
  ldmc_status st = ldmc_make_dirs(dir, 0777);
  if (st != LDMC_OK) ldmc_error_prefix("dump folder (for LDMC_DUMP_DIR / --dump-dir '%s'): ", dir);
  return st;
}

ldmc_status ldmc_dump_graph(const ldmc_graph *g, const ldmc_plan *plan, const char *dir, int seq, const char *tag) {
  char path[4096];
  struct stat dst;
  if (stat(dir, &dst) != 0 || !S_ISDIR(dst.st_mode)) LDMC_TRY(make_dirs(dir));
  char *text = ldmc_graph_print(g);
  if (!text) return ldmc_error(LDMC_ERR_NOMEM, "dump: cannot print graph");
  char *annot = NULL;
  if (plan && plan->n_kernels > 0 && plan->n_nodes == g->n_nodes) {
    char *pp = ldmc_plan_print(plan, g);
    if (pp) annot = commented(pp);
    free(pp);
  }
  snprintf(path, sizeof path, "%s/%03d-%s.txt", dir, seq, tag);
  ldmc_status s = write_file(path, text, annot);
  free(text);
  free(annot);
  if (s != LDMC_OK) return s;
  char *dot = ldmc_graph_to_dot(g, plan);
  if (!dot) return ldmc_error(LDMC_ERR_NOMEM, "dump: cannot write dot");
  snprintf(path, sizeof path, "%s/%03d-%s.dot", dir, seq, tag);
  s = write_file(path, dot, NULL);
  free(dot);
  return s;
}
