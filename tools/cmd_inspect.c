/* ldmc inspect: the tensors of a .safetensors / .ldmc file and a summary of
 * its graph (nodes, op histogram, parameters, outputs, FLOPs). */
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "tools/cli_args.h"
#include "tools/cli_io.h"
#include "tools/commands.h"

static int name_width(const ldmc_tensor_set *s) {
  int w = 4;
  for (int32_t i = 0; i < s->n; i++) {
    int n = (int)strlen(s->items[i].name);
    if (n > w) w = n;
  }
  return w > 64 ? 64 : w;
}

static void print_tensors(const ldmc_tensor_set *s, bool brief) {
  double elems = 0, bytes = 0;
  for (int32_t i = 0; i < s->n; i++) {
    bytes += (double)s->items[i].nbytes;
    double e = 1;
    for (int d = 0; d < s->items[i].shape.rank; d++) e *= (double)s->items[i].shape.dims[d];
    elems += e;
  }
  char b[32], e[32];
  ldmc_tool_format_bytes(bytes, b, sizeof b);
  ldmc_tool_format_count(elems, "", e, sizeof e);
  printf("tensors: %d (%s elements, %s)\n", (int)s->n, e, b);
  if (brief) return;
  int w = name_width(s);
  for (int32_t i = 0; i < s->n; i++) {
    char shape[160];
    ldmc_shape_str(&s->items[i].shape, shape, sizeof shape);
    printf("  %-*s  %-5s %s\n", w, s->items[i].name, ldmc_tool_dtype_str(&s->items[i]), shape);
  }
}

/* A training checkpoint: its state, configuration and role-tagged tensors. */
static void print_checkpoint(const ldmc_checkpoint *ck, bool brief) {
  char q[200], q2[400];
  int64_t seed, counter;
  const int64_t *ds;
  int nds = ldmc_checkpoint_data_state(ck, &ds);
  ldmc_checkpoint_rng(ck, &seed, &counter);
  printf("step: %lld\n", (long long)ldmc_checkpoint_step(ck));
  printf("rng: seed %lld, counter %lld\n", (long long)seed, (long long)counter);
  printf("data state:");
  for (int i = 0; i < nds; i++) printf(" %lld", (long long)ds[i]);
  printf(nds ? "\n" : " none\n");
  int32_t nc = ldmc_checkpoint_num_config(ck), nt = ldmc_checkpoint_num_tensors(ck);
  printf("config: %d entr%s\n", (int)nc, nc == 1 ? "y" : "ies");
  for (int32_t i = 0; i < nc && !brief; i++) {
    const char *k, *v;
    ldmc_checkpoint_config_at(ck, i, &k, &v);
    printf("  %s = %s\n", ldmc_quote(k, q, sizeof q), ldmc_quote(v, q2, sizeof q2));
  }
  double bytes[LDMC_CKPT_ROLE_COUNT] = {0}, total = 0;
  int w = 4;
  for (int32_t i = 0; i < nt; i++) {
    ldmc_checkpoint_role r;
    const ldmc_tensor *t = ldmc_checkpoint_tensor_at(ck, i, &r, NULL);
    bytes[r] += (double)t->nbytes;
    total += (double)t->nbytes;
    int n = (int)strlen(ldmc_quote(t->name, q, sizeof q));
    if (n > w) w = n < 64 ? n : 64;
  }
  char b[32];
  ldmc_tool_format_bytes(total, b, sizeof b);
  printf("tensors: %d (%s):", (int)nt, b);
  for (int r = 0; r < LDMC_CKPT_ROLE_COUNT; r++) {
    ldmc_tool_format_bytes(bytes[r], b, sizeof b);
    printf("%s %s %d (%s)", r ? "," : "", ldmc_checkpoint_role_name((ldmc_checkpoint_role)r),
           (int)ldmc_checkpoint_count(ck, (ldmc_checkpoint_role)r), b);
  }
  printf("\n");
  for (int32_t i = 0; i < nt && !brief; i++) {
    ldmc_checkpoint_role r;
    uint32_t crc;
    const ldmc_tensor *t = ldmc_checkpoint_tensor_at(ck, i, &r, &crc);
    char shape[160];
    ldmc_shape_str(&t->shape, shape, sizeof shape);
    printf("  %-*s  %-9s %-5s %-16s %10zu B  crc32 %08x\n", w, ldmc_quote(t->name, q, sizeof q),
           ldmc_checkpoint_role_name(r), ldmc_dtype_name(t->dtype), shape, t->nbytes, crc);
  }
}

typedef struct op_count {
  int op;
  int64_t n;
} op_count;

static int cmp_count(const void *a, const void *b) {
  const op_count *x = a, *y = b;
  if (x->n != y->n) return x->n < y->n ? 1 : -1;
  return x->op - y->op;
}

static void print_graph(const ldmc_graph *g, bool brief) {
  int32_t n_params = ldmc_graph_num_params(g);
  double param_elems = 0;
  op_count hist[LDMC_OP_COUNT];
  for (int i = 0; i < LDMC_OP_COUNT; i++) hist[i] = (op_count){i, 0};
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    hist[n->op].n++;
    if (n->op == LDMC_OP_PARAMETER) {
      double e = 1;
      for (int d = 0; d < n->shape.rank; d++) e *= (double)n->shape.dims[d];
      param_elems += e;
    }
  }
  ldmc_flops fl = ldmc_graph_flops(g);
  char pe[32], tot[32], mac[32], oth[32];
  ldmc_tool_format_count(param_elems, "", pe, sizeof pe);
  ldmc_tool_format_count((double)fl.mac + (double)fl.other, "FLOP", tot, sizeof tot);
  ldmc_tool_format_count((double)fl.mac, "FLOP", mac, sizeof mac);
  ldmc_tool_format_count((double)fl.other, "FLOP", oth, sizeof oth);
  printf("graph '%s': %d node%s, %d parameter%s (%s elements), %d output%s\n", g->name ? g->name : "",
         (int)g->n_nodes, g->n_nodes == 1 ? "" : "s", (int)n_params, n_params == 1 ? "" : "s", pe, (int)g->n_outputs,
         g->n_outputs == 1 ? "" : "s");
  printf("  FLOPs: %s (convolution/dot %s, other %s)\n", tot, mac, oth);
  qsort(hist, LDMC_OP_COUNT, sizeof hist[0], cmp_count);
  printf("  ops:");
  int col = 7;
  for (int i = 0; i < LDMC_OP_COUNT && hist[i].n; i++) {
    char item[64];
    int len = snprintf(item, sizeof item, " %s %lld%s", ldmc_op_name((ldmc_op)hist[i].op), (long long)hist[i].n,
                       i + 1 < LDMC_OP_COUNT && hist[i + 1].n ? "," : "");
    if (col + len > 100) {
      printf("\n      ");
      col = 6;
    }
    fputs(item, stdout);
    col += len;
  }
  printf("\n");
  if (brief) return;
  char shape[160];
  printf("  parameters:\n");
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER) continue;
    ldmc_shape_str(&n->shape, shape, sizeof shape);
    printf("    %s  %s%s\n", n->attrs.name ? n->attrs.name : "?", ldmc_dtype_name(n->dtype), shape);
  }
  printf("  outputs:\n");
  for (int32_t i = 0; i < g->n_outputs; i++) {
    int32_t id = g->outputs[i];
    const ldmc_node *n = id >= 0 && id < g->n_nodes ? &g->nodes[id] : NULL;
    if (!n) continue;
    ldmc_shape_str(&n->shape, shape, sizeof shape);
    printf("    %s  %s%s  (%%%d %s)\n", g->output_names[i] ? g->output_names[i] : "?", ldmc_dtype_name(n->dtype),
           shape, (int)id, ldmc_op_name(n->op));
  }
}

int ldmc_cmd_inspect(int argc, char **argv) {
  ldmc_cli_flag flags[] = {
      {"brief", NULL, "counts and totals only: no per-tensor, parameter, output or config lines", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "inspect",
      .usage = "FILE [--brief]",
      .summary = "Describe a .safetensors, .ldmc or text IR file: each tensor's name, dtype and shape,\n"
                 "and for a graph its node count, op histogram, parameters, outputs and FLOPs.\n"
                 "For a training checkpoint: its step, RNG and data-order state, configuration, and\n"
                 "each tensor's name, role, dtype, shape, bytes and CRC-32 (the file is fully verified).",
      .details = "FILE's kind is recognized from its first bytes, not its name.\n"
                 "FLOPs count 2 per multiply-add of convolutions and dot_generals, plus the\n"
                 "op table's estimate for elementwise, normalization and reduction ops.\n",
      .flags = flags,
      .n_flags = 1,
      .min_pos = 1,
      .max_pos = 1,
  };
  int rc = ldmc_cli_parse(&c, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *path = c.pos[0];
  bool brief = ldmc_cli_has(&c, "brief");
  bool is_ckpt = false;
  ldmc_file_kind sniffed;
  if (ldmc_tool_sniff(path, &sniffed) == LDMC_OK && sniffed == LDMC_KIND_LDMC &&
      ldmc_checkpoint_sniff(path, &is_ckpt) == LDMC_OK && is_ckpt) {
    ldmc_checkpoint *ck;
    if (ldmc_checkpoint_read(path, &ck) != LDMC_OK) return ldmc_cli_fail(&c, "%s", ldmc_last_error());
    printf("%s: ldmc checkpoint\n", path);
    print_checkpoint(ck, brief);
    ldmc_checkpoint_free(ck);
    return LDMC_EXIT_OK;
  }
  ldmc_module m = {0};
  ldmc_file_kind kind;
  if (ldmc_tool_load(path, &m, &kind) != LDMC_OK) return ldmc_cli_fail(&c, "%s", ldmc_last_error());
  printf("%s: %s\n", path, ldmc_file_kind_name(kind));
  if (kind != LDMC_KIND_TEXT) print_tensors(&m.tensors, brief);
  if (m.graph)
    print_graph(m.graph, brief);
  else if (kind == LDMC_KIND_LDMC)
    printf("graph: none\n");
  ldmc_module_free(&m);
  return LDMC_EXIT_OK;
}
