/* The plan: kernels (groups of nodes), their order, tiles and arena offsets. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

const char *ldmc_kernel_kind_name(ldmc_kernel_kind k) {
  static const char *const names[] = {"elementwise", "contraction", "norm", "reduction",
                                      "attention", "copy", "alias", "opaque", "prepack"};
  _Static_assert(sizeof names / sizeof names[0] == LDMC_KERNEL_KIND_COUNT, "kernel kind names");
  return (unsigned)k < LDMC_KERNEL_KIND_COUNT ? names[k] : "<bad kind>";
}

ldmc_plan *ldmc_plan_new(void) { return calloc(1, sizeof(ldmc_plan)); }

void ldmc_plan_reset(ldmc_plan *p) {
  if (!p) return;
  for (int32_t k = 0; k < p->n_kernels; k++) {
    free(p->kernels[k].nodes);
    free(p->kernels[k].inputs);
  }
  free(p->kernels);
  free(p->kernel_of);
  free(p->order);
  free(p->offset);
  free(p->size);
  memset(p, 0, sizeof *p);
}

void ldmc_plan_free(ldmc_plan *p) {
  ldmc_plan_reset(p);
  free(p);
}

ldmc_status ldmc_plan_index(ldmc_plan *p, const ldmc_graph *g) {
  int32_t n = g->n_nodes;
  int32_t *of = malloc(((size_t)n + 1) * sizeof *of);
  if (!of) return ldmc_error(LDMC_ERR_NOMEM, "plan: out of memory");
  for (int32_t i = 0; i < n; i++) of[i] = -1;
  for (int32_t k = 0; k < p->n_kernels; k++)
    for (int32_t j = 0; j < p->kernels[k].n_nodes; j++) {
      int32_t id = p->kernels[k].nodes[j];
      if (id < 0 || id >= n || of[id] >= 0) {
        free(of);
        return ldmc_error(LDMC_ERR_INTERNAL, "plan: node %%%d is in two kernels or out of range", (int)id);
      }
      of[id] = k;
    }
  free(p->kernel_of);
  p->kernel_of = of;
  p->n_nodes = n;
  /* inputs: operands of members that belong to no member of the same kernel */
  for (int32_t k = 0; k < p->n_kernels; k++) {
    ldmc_kernel *kr = &p->kernels[k];
    int32_t cap = 0;
    for (int32_t j = 0; j < kr->n_nodes; j++) cap += g->nodes[kr->nodes[j]].n_operands;
    int32_t *in = malloc(((size_t)cap + 1) * sizeof *in), m = 0;
    if (!in) return ldmc_error(LDMC_ERR_NOMEM, "plan: out of memory");
    for (int32_t j = 0; j < kr->n_nodes; j++) {
      const ldmc_node *nd = &g->nodes[kr->nodes[j]];
      for (int o = 0; o < nd->n_operands; o++) {
        int32_t x = nd->operands[o];
        if (of[x] == k) continue;
        bool dup = false;
        for (int32_t q = 0; q < m && !dup; q++) dup = in[q] == x;
        if (!dup) in[m++] = x;
      }
    }
    /* ascending */
    for (int32_t a = 1; a < m; a++)
      for (int32_t b = a; b > 0 && in[b - 1] > in[b]; b--) {
        int32_t t = in[b];
        in[b] = in[b - 1];
        in[b - 1] = t;
      }
    free(kr->inputs);
    kr->inputs = in;
    kr->n_inputs = m;
  }
  return LDMC_OK;
}

char *ldmc_plan_print(const ldmc_plan *p, const ldmc_graph *g) {
  ldmc_textbuf b = {0};
  int32_t counts[LDMC_KERNEL_KIND_COUNT] = {0};
  for (int32_t k = 0; k < p->n_kernels; k++) counts[p->kernels[k].kind]++;
  ldmc_textbuf_printf(&b, "plan: %d kernels (", (int)p->n_kernels);
  for (int c = 0, first = 1; c < LDMC_KERNEL_KIND_COUNT; c++)
    if (counts[c]) {
      ldmc_textbuf_printf(&b, "%s%d %s", first ? "" : ", ", (int)counts[c],
                          ldmc_kernel_kind_name((ldmc_kernel_kind)c));
      first = 0;
    }
  ldmc_textbuf_printf(&b, ")\n");
  if (p->scheduled)
    ldmc_textbuf_printf(&b, "schedule: simulated live peak %" PRId64 " bytes (root order: %" PRId64 ")\n",
                        p->peak_scheduled, p->peak_in_root_order);
  if (p->executed_by)
    ldmc_textbuf_printf(&b, "executed by: %s on %d thread%s (the kernels, order, tiles and offsets below are what it runs)\n",
                        p->executed_by, (int)p->threads, p->threads == 1 ? "" : "s");
  if (p->assigned)
    ldmc_textbuf_printf(&b, "arena: %" PRId64 " bytes (live peak %" PRId64 ", naive sum %" PRId64
                        ", kernel scratch %" PRId64 ")\n",
                        p->arena_bytes, p->live_peak_bytes, p->naive_bytes, p->scratch_bytes);
  for (int32_t pos = 0; pos < p->n_kernels; pos++) {
    int32_t k = p->scheduled && p->order ? p->order[pos] : pos;
    const ldmc_kernel *kr = &p->kernels[k];
    ldmc_textbuf_printf(&b, "k%d %s %%%d:", (int)k, ldmc_kernel_kind_name(kr->kind), (int)kr->root);
    for (int32_t j = 0; j < kr->n_nodes; j++) ldmc_textbuf_printf(&b, " %s", ldmc_op_name(g->nodes[kr->nodes[j]].op));
    ldmc_textbuf_printf(&b, " <-");
    for (int32_t j = 0; j < kr->n_inputs; j++) ldmc_textbuf_printf(&b, " %%%d", (int)kr->inputs[j]);
    if (kr->n_tile) {
      ldmc_textbuf_printf(&b, " tile=");
      for (int t = 0; t < kr->n_tile; t++) ldmc_textbuf_printf(&b, "%s%" PRId64, t ? "x" : "", kr->tile[t]);
      if (kr->reg_tile[0] > 0) ldmc_textbuf_printf(&b, " regs=%" PRId64 "x%" PRId64, kr->reg_tile[0], kr->reg_tile[1]);
      if (kr->fold_images) ldmc_textbuf_printf(&b, " fold=images");
    }
    if (p->assigned && p->offset && kr->root < p->n_nodes && p->offset[kr->root] >= 0)
      ldmc_textbuf_printf(&b, " @%" PRId64 "+%" PRId64, p->offset[kr->root], p->size[kr->root]);
    if (kr->inplace_of >= 0) ldmc_textbuf_printf(&b, " inplace(%%%d)", (int)kr->inplace_of);
    if (kr->scratch_bytes > 0)
      ldmc_textbuf_printf(&b, " scratch@%" PRId64 "+%" PRId64, kr->scratch_offset, kr->scratch_bytes);
    if (kr->n_steps > 0) {
      ldmc_textbuf_printf(&b, " steps=%d", (int)kr->n_steps);
      if (kr->n_prepack_steps > 0) ldmc_textbuf_printf(&b, "(%d prepack)", (int)kr->n_prepack_steps);
    }
    if (g->nodes[kr->root].scope) ldmc_textbuf_printf(&b, "  [%s]", g->nodes[kr->root].scope);
    ldmc_textbuf_printf(&b, "\n");
  }
  if (b.oom) {
    free(b.s);
    ldmc_error(LDMC_ERR_NOMEM, "out of memory printing the plan");
    return NULL;
  }
  return b.s ? b.s : strdup("");
}
