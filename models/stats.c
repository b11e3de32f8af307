/* Model statistics from the IR (see stats.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/stats.h"
#include "models/unet.h"

static bool is_input(const char *name, const char *const *inputs, int n) {
  for (int i = 0; i < n; i++)
    if (name && strcmp(name, inputs[i]) == 0) return true;
  return false;
}

static int64_t node_bytes(const ldmc_node *n) {
  int64_t e;
  if (ldmc_shape_numel(&n->shape, ldmc_dtype_size(n->dtype), &e) != LDMC_OK) return 0;
  return e * (int64_t)ldmc_dtype_size(n->dtype);
}

ldmc_status ldmc_stats_compute(const ldmc_graph *g, const char *const *inputs, int n_inputs, ldmc_model_stats *out) {
  memset(out, 0, sizeof *out);
  out->nodes = g->n_nodes;
  int32_t *last = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *last);
  if (!last) return ldmc_error(LDMC_ERR_NOMEM, "out of memory computing stats");
  for (int32_t i = 0; i < g->n_nodes; i++) last[i] = i;
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_operands; k++) last[g->nodes[i].operands[k]] = i;
  for (int32_t i = 0; i < g->n_outputs; i++) last[g->outputs[i]] = g->n_nodes; /* outputs stay live */
  int64_t live = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) {
      if (!is_input(n->attrs.name, inputs, n_inputs)) {
        int64_t e;
        if (ldmc_shape_numel(&n->shape, 0, &e) == LDMC_OK) out->params += e;
        out->param_tensors++;
      }
      continue;
    }
    ldmc_flops f = ldmc_node_flops(g, i);
    out->mac_flops += f.mac;
    out->other_flops += f.other;
    if (n->op == LDMC_OP_CONSTANT) continue;
    int64_t b = node_bytes(n);
    out->activation_bytes += b;
    live += b;
    if (live > out->peak_activation_bytes) out->peak_activation_bytes = live;
    /* free the operands whose last use is this node (and this node if unused) */
    for (int k = 0; k < n->n_operands; k++) {
      int32_t o = n->operands[k];
      bool dup = false;
      for (int j = 0; j < k; j++) dup |= n->operands[j] == o;
      const ldmc_node *on = &g->nodes[o];
      if (!dup && last[o] == i && on->op != LDMC_OP_PARAMETER && on->op != LDMC_OP_CONSTANT) live -= node_bytes(on);
    }
    if (last[i] == i) live -= b;
  }
  free(last);
  return LDMC_OK;
}

const char *ldmc_stats_block_of(const char *scope, char *buf, size_t len) {
  if (!scope || !*scope) {
    snprintf(buf, len, "(top)");
    return buf;
  }
  const char *dot = strchr(scope, '.');
  size_t n = dot ? (size_t)(dot - scope) : strlen(scope);
  if (dot && isdigit((unsigned char)dot[1])) {
    const char *q = dot + 1;
    while (isdigit((unsigned char)*q)) q++;
    if (*q == '.' || *q == 0) n = (size_t)(q - scope);
  }
  snprintf(buf, len, "%.*s", (int)n, scope);
  return buf;
}

static ldmc_status bucket_add(ldmc_stats_breakdown *b, const char *name, ldmc_flops f) {
  for (int i = 0; i < b->n; i++) {
    if (strcmp(b->items[i].name, name) == 0) {
      b->items[i].mac_flops += f.mac;
      b->items[i].other_flops += f.other;
      b->items[i].nodes++;
      return LDMC_OK;
    }
  }
  if (b->n == b->cap) {
    int cap = b->cap ? b->cap * 2 : 16;
    ldmc_stats_bucket *items = realloc(b->items, (size_t)cap * sizeof *items);
    if (!items) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    b->items = items;
    b->cap = cap;
  }
  char *nm = strdup(name);
  if (!nm) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  b->items[b->n++] = (ldmc_stats_bucket){nm, f.mac, f.other, 1};
  return LDMC_OK;
}

static ldmc_status breakdown(const ldmc_graph *g, bool by_block, ldmc_stats_breakdown *out) {
  memset(out, 0, sizeof *out);
  char buf[256];
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (ldmc_op_table[n->op].flags & LDMC_OPF_SOURCE) continue;
    const char *key = by_block ? ldmc_stats_block_of(n->scope, buf, sizeof buf) : ldmc_op_name(n->op);
    ldmc_status st = bucket_add(out, key, ldmc_node_flops(g, i));
    if (st != LDMC_OK) {
      ldmc_stats_breakdown_free(out);
      return st;
    }
  }
  return LDMC_OK;
}

ldmc_status ldmc_stats_by_op(const ldmc_graph *g, ldmc_stats_breakdown *out) { return breakdown(g, false, out); }
ldmc_status ldmc_stats_by_block(const ldmc_graph *g, ldmc_stats_breakdown *out) { return breakdown(g, true, out); }

void ldmc_stats_breakdown_free(ldmc_stats_breakdown *b) {
  for (int i = 0; i < b->n; i++) free(b->items[i].name);
  free(b->items);
  memset(b, 0, sizeof *b);
}

ldmc_status ldmc_unet_pass_cost_compute(const ldmc_unet_config *cfg, ldmc_unet_pass_cost *out) {
  ldmc_unet_config u = *cfg, ref = *cfg;
  u.batch = ref.batch = 1;
  ref.channels = 320, ref.groups = 32;
  ref.guidance_embed_dim = 0, ref.cond_channels = 0;
  ldmc_graph *g = NULL, *gr = NULL;
  ldmc_model_stats s, sr;
  const char *in_names[LDMC_UNET_MAX_INPUTS];
  int n_in = ldmc_unet_inputs(&u, in_names);
  ldmc_status st = ldmc_unet_build(&u, &g);
  if (st == LDMC_OK) st = ldmc_unet_build(&ref, &gr);
  if (st == LDMC_OK) st = ldmc_stats_compute(g, in_names, n_in, &s);
  if (st == LDMC_OK) st = ldmc_stats_compute(gr, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, &sr);
  if (st == LDMC_OK) {
    out->gflops = (double)s.mac_flops / 1e9;
    out->norm = (double)s.mac_flops / (double)sr.mac_flops;
    out->params = s.params;
  }
  ldmc_graph_free(g), ldmc_graph_free(gr);
  return st;
}
