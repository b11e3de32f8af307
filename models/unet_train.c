/* The U-Net's epsilon-prediction loss graph and its training step (see
 * unet_train.h), and the forward / backward / optimizer split of a step. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/unet_train.h"

const char *const ldmc_unet_train_input_names[LDMC_UNET_TRAIN_N_INPUTS] = {"noisy_sample", "timestep",
                                                                           "encoder_hidden_states", "target"};

/* Copies the inference graph u into the builder's graph (renaming sample to
 * noisy_sample, adding target after the context so the data stay first) and
 * returns the id of out_sample in it. */
static ldmc_value copy_unet(ldmc_builder *b, const ldmc_graph *u, int32_t *map) {
  ldmc_graph *dst = ldmc_builder_graph(b);
  int max_ops = 1;
  for (int32_t i = 0; i < u->n_nodes; i++)
    if (u->nodes[i].n_operands > max_ops) max_ops = u->nodes[i].n_operands;
  int32_t *ops = malloc((size_t)max_ops * sizeof *ops);
  if (!ops) {
    ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    return -1;
  }
  int32_t seen = 0; /* parameters copied */
  for (int32_t i = 0; i < u->n_nodes; i++) {
    const ldmc_node *n = &u->nodes[i];
    ldmc_attrs at = n->attrs;
    if (n->op == LDMC_OP_PARAMETER && seen == 0) at.name = (char *)ldmc_unet_train_input_names[0];
    for (int k = 0; k < n->n_operands; k++) ops[k] = map[n->operands[k]];
    map[i] = ldmc_graph_add(dst, n->op, n->dtype, &n->shape, n->n_operands, ops, &at, n->scope);
    if (map[i] < 0) {
      free(ops);
      return -1;
    }
    if (n->op == LDMC_OP_PARAMETER && ++seen == LDMC_UNET_N_INPUTS) {
      const ldmc_node *s = &u->nodes[0]; /* the sample: target has its type */
      if (ldmc_parameter(b, ldmc_unet_train_input_names[3], s->dtype, s->shape.rank, s->shape.dims) < 0) {
        free(ops);
        return -1;
      }
    }
  }
  free(ops);
  return map[u->outputs[0]];
}

ldmc_status ldmc_unet_train_build(const ldmc_unet_config *cfg, ldmc_graph **out) {
  *out = NULL;
  ldmc_graph *u = NULL;
  LDMC_TRY(ldmc_unet_build(cfg, &u));
  /* the copy relies on the inference graph's layout: its data first, sample first */
  for (int k = 0; k < LDMC_UNET_N_INPUTS; k++) {
    const ldmc_node *p = &u->nodes[k];
    if (p->op != LDMC_OP_PARAMETER || !p->attrs.name || strcmp(p->attrs.name, ldmc_unet_input_names[k]) != 0) {
      ldmc_graph_free(u);
      return ldmc_error(LDMC_ERR_INTERNAL, "U-Net loss: node %d of the U-Net is not its input '%s'", k,
                        ldmc_unet_input_names[k]);
    }
  }
  ldmc_builder *b = ldmc_builder_new("unet");
  int32_t *map = malloc((size_t)u->n_nodes * sizeof *map);
  if (!b || !map) {
    ldmc_builder_free(b);
    free(map);
    ldmc_graph_free(u);
    return ldmc_error(LDMC_ERR_NOMEM, "U-Net loss: out of memory");
  }
  ldmc_value pred = copy_unet(b, u, map);
  ldmc_status st = LDMC_OK;
  if (pred < 0) {
    st = ldmc_builder_status(b) != LDMC_OK ? ldmc_builder_status(b) : LDMC_ERR_NOMEM;
    ldmc_error_prefix("U-Net loss: copying the U-Net: ");
  } else {
    int32_t t_id = ldmc_graph_find_param(ldmc_builder_graph(b), ldmc_unet_train_input_names[3]);
    const ldmc_shape *sp = ldmc_value_shape(b, pred);
    const ldmc_shape s_copy = sp ? *sp : (ldmc_shape){0}, *s = sp ? &s_copy : NULL; /* nodes move as they are added */
    int64_t n = 1;
    int64_t axes[LDMC_MAX_RANK];
    for (int i = 0; s && i < s->rank; i++) n *= s->dims[i], axes[i] = i;
    ldmc_builder_push_scope(b, "loss");
    ldmc_value d = ldmc_sub(b, pred, t_id);
    ldmc_value sum = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, d, d), s ? s->rank : 0, axes, false);
    ldmc_value loss = ldmc_scale(b, sum, 1.0 / (double)n);
    ldmc_builder_pop_scope(b);
    ldmc_builder_output(b, loss, "loss");
  }
  free(map);
  ldmc_graph_free(u);
  if (st != LDMC_OK) {
    ldmc_builder_free(b);
    return st;
  }
  *out = ldmc_builder_finish(b, &st);
  if (st != LDMC_OK) ldmc_error_prefix("building the U-Net loss (c=%d): ", cfg->channels);
  return st;
}

ldmc_status ldmc_unet_train_step_build(const ldmc_unet_config *cfg, const ldmc_train_opts *o, ldmc_graph **step) {
  *step = NULL;
  ldmc_train_opts to = o ? *o : (ldmc_train_opts){0};
  int32_t n_data = LDMC_UNET_TRAIN_N_INPUTS + (cfg->cond_channels > 0); /* cond_sample after target */
  if (to.n_data_params != 0 && to.n_data_params != n_data)
    return ldmc_error(LDMC_ERR_INVALID, "U-Net train step: n_data_params = %d, but the loss graph has %d data inputs",
                      (int)to.n_data_params, (int)n_data);
  if (to.loss && strcmp(to.loss, "loss") != 0)
    return ldmc_error(LDMC_ERR_INVALID, "U-Net train step: loss '%s' requested, but the loss graph's output is 'loss'",
                      to.loss);
  to.n_data_params = n_data;
  to.loss = "loss";
  ldmc_graph *g = NULL;
  LDMC_TRY(ldmc_unet_train_build(cfg, &g));
  ldmc_status st = ldmc_train_step_build(g, &to, step);
  ldmc_graph_free(g);
  return st;
}

static ldmc_status parse_real(const char *flag, const char *s, bool below_one, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  bool ok = end != s && *end == 0 && errno == 0 && isfinite(v) && v > 0 && (!below_one || v < 1);
  if (!ok)
    return ldmc_error(LDMC_ERR_INVALID, "flag '--%s' expects a number %s, got '%s'", flag,
                      below_one ? "in (0, 1) (e.g. 0.9999)" : "> 0 (e.g. 1.0)", s);
  *out = v;
  return LDMC_OK;
}

ldmc_status ldmc_unet_train_opts_from_args(const char *ema, const char *clip, ldmc_train_opts *o) {
  if (ema) LDMC_TRY(parse_real("ema", ema, true, &o->ema_decay));
  if (clip) LDMC_TRY(parse_real("clip", clip, false, &o->clip_norm));
  return LDMC_OK;
}

static bool scope_is(const char *scope, const char *head) {
  size_t n = strlen(head);
  return strncmp(scope, head, n) == 0 && (scope[n] == 0 || scope[n] == '.');
}

ldmc_train_phase ldmc_train_phase_of_scope(const char *scope) {
  if (!scope) return LDMC_TRAIN_FORWARD;
  if (scope_is(scope, "grad")) return LDMC_TRAIN_BACKWARD;
  if (scope_is(scope, "optim")) return LDMC_TRAIN_OPTIMIZER;
  return LDMC_TRAIN_FORWARD;
}

const char *ldmc_train_phase_name(ldmc_train_phase p) {
  static const char *const names[LDMC_TRAIN_PHASES] = {"forward", "backward", "optimizer"};
  return (unsigned)p < LDMC_TRAIN_PHASES ? names[p] : "?";
}

static int64_t node_bytes(const ldmc_node *n) {
  int64_t e;
  if (ldmc_shape_numel(&n->shape, ldmc_dtype_size(n->dtype), &e) != LDMC_OK) return 0;
  return e * (int64_t)ldmc_dtype_size(n->dtype);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

ldmc_status ldmc_train_step_stats_compute(const ldmc_graph *step, ldmc_train_step_stats *out) {
  memset(out, 0, sizeof *out);
  /* the parameter names, sorted, to find each P's adam_m.P without a quadratic scan */
  int32_t np = ldmc_graph_num_params(step), k = 0;
  const char **names = malloc((size_t)(np ? np : 1) * sizeof *names);
  char *want = NULL;
  size_t want_cap = 0;
  if (!names) return ldmc_error(LDMC_ERR_NOMEM, "train step stats: out of memory");
  for (int32_t i = 0; i < step->n_nodes; i++)
    if (step->nodes[i].op == LDMC_OP_PARAMETER) names[k++] = step->nodes[i].attrs.name ? step->nodes[i].attrs.name : "";
  qsort(names, (size_t)k, sizeof *names, cmp_str);
  ldmc_status st = LDMC_OK;
  for (int32_t i = 0; i < step->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *n = &step->nodes[i];
    ldmc_train_phase ph = ldmc_train_phase_of_scope(n->scope);
    ldmc_flops f = ldmc_node_flops(step, i);
    out->flops[ph].mac += f.mac;
    out->flops[ph].other += f.other;
    if (!(ldmc_op_table[n->op].flags & LDMC_OPF_SOURCE)) out->nodes[ph]++;
    if (n->op != LDMC_OP_PARAMETER || !n->attrs.name) continue;
    const char *nm = n->attrs.name;
    if (strncmp(nm, "adam_m.", 7) == 0 || strncmp(nm, "adam_v.", 7) == 0) {
      out->moment_bytes += node_bytes(n);
      continue;
    }
    if (strncmp(nm, "ema.", 4) == 0) {
      out->ema_bytes += node_bytes(n);
      out->ema = true;
      continue;
    }
    size_t len = strlen(nm);
    if (len + 8 > want_cap) {
      char *w = realloc(want, len + 8);
      if (!w) {
        st = ldmc_error(LDMC_ERR_NOMEM, "train step stats: out of memory");
        break;
      }
      want = w, want_cap = len + 8;
    }
    memcpy(want, "adam_m.", 7);
    memcpy(want + 7, nm, len + 1);
    const char *key = want;
    if (!bsearch(&key, names, (size_t)k, sizeof *names, cmp_str)) continue; /* data, lr, step, frozen */
    int64_t e = 0;
    if (ldmc_shape_numel(&n->shape, 0, &e) == LDMC_OK) out->trained_params += e;
    out->trained_tensors++;
    out->param_bytes += node_bytes(n);
  }
  free(names);
  free(want);
  if (st != LDMC_OK) return st;
  if (out->trained_tensors == 0)
    return ldmc_error(LDMC_ERR_INVALID, "train step stats: graph '%s' has no adam_m.* parameter (not a training step)",
                      step->name ? step->name : "");
  out->state_bytes = out->param_bytes + out->moment_bytes + out->ema_bytes;
  return LDMC_OK;
}
