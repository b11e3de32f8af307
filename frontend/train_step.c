/* The training step graph (ldmc_train_step_build, frontend.h): the model with
 * master-weight converts, its gradients from ldmc_grad, then global-norm
 * clipping, AdamW and EMA in builder ops, with the optimizer state entering as
 * parameters and leaving as outputs of the same names. See docs/training.md. */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"

#define TS_NORM_EPS 1e-6 /* torch.nn.utils.clip_grad_norm_'s */

typedef enum { ROLE_DATA, ROLE_FROZEN, ROLE_TRAINED, ROLE_EMA } ts_role; /* ROLE_EMA: ema_from_model */

typedef struct ts_param {
  const ldmc_node *n; /* the model's parameter node */
  ts_role role;
  int32_t k;          /* index among the trained parameters (ROLE_EMA: of the one it averages) */
  ldmc_dtype dt;      /* its dtype in the step graph (f32 for a master weight) */
  int32_t prep_id;    /* its node in the differentiated graph */
} ts_param;

typedef struct ts_state {
  const ldmc_graph *model;
  ldmc_train_opts o; /* defaults resolved */
  ts_param *p;
  int32_t np, n_trained, loss_id;
} ts_state;

static ldmc_dtype compute_dtype(ldmc_dtype dt);
static const char *pname(const ldmc_node *n) { return n->attrs.name ? n->attrs.name : ""; }

/* Appends s to a ", "-separated list in buf; "..." marks where it was cut. */
static void list_add(char *buf, size_t len, const char *s) {
  size_t used = strlen(buf);
  if (used + 1 >= len) return;
  int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", s);
  if (w < 0 || (size_t)w >= len - used) memcpy(buf + len - 4, "...", 4);
}

static char *cat(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 1);
  if (s) memcpy(s, a, la), memcpy(s + la, b, lb + 1);
  return s;
}

static ldmc_status check_opts(const ldmc_train_opts *in, ldmc_train_opts *o) {
  *o = *in;
  if (o->beta1 == 0 && o->beta2 == 0 && o->eps == 0) o->beta1 = 0.9, o->beta2 = 0.999, o->eps = 1e-8;
  const struct {
    const char *name;
    double v;
    bool below_one;
  } r[] = {{"beta1", o->beta1, true},          {"beta2", o->beta2, true},         {"eps", o->eps, false},
           {"weight_decay", o->weight_decay, false}, {"clip_norm", o->clip_norm, false}, {"ema_decay", o->ema_decay, true}};
  for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
    bool ok = r[i].v >= 0 && isfinite(r[i].v) && (!r[i].below_one || r[i].v < 1);
    if (!ok)
      return ldmc_error(LDMC_ERR_INVALID, "train step: %s = %g must be %s", r[i].name, r[i].v,
                        r[i].below_one ? "in [0, 1)" : "finite and >= 0");
  }
  return LDMC_OK;
}

static ldmc_status find_loss(ts_state *s) {
  const ldmc_graph *g = s->model;
  const char *want = s->o.loss;
  int32_t oi = -1;
  for (int32_t i = 0; i < g->n_outputs && oi < 0; i++)
    if (!want || strcmp(g->output_names[i], want) == 0) oi = i;
  if (oi < 0) {
    if (!want) return ldmc_error(LDMC_ERR_INVALID, "train step: graph '%s' has no outputs (it needs a loss)", g->name);
    char names[512] = "";
    for (int32_t i = 0; i < g->n_outputs; i++) list_add(names, sizeof names, g->output_names[i]);
    return ldmc_error(LDMC_ERR_INVALID, "train step: graph '%s' has no output '%s' (outputs: %s)", g->name, want, names);
  }
  s->loss_id = g->outputs[oi];
  const ldmc_node *n = &g->nodes[s->loss_id];
  if (!ldmc_dtype_is_float(n->dtype) || n->shape.rank != 0) {
    char t[80];
    return ldmc_error(LDMC_ERR_INVALID,
                      "train step: loss output '%s' is %s%s; it must be a rank-0 float (reduce it to a scalar, "
                      "e.g. a mean)", g->output_names[oi], ldmc_dtype_name(n->dtype),
                      ldmc_shape_str(&n->shape, t, sizeof t));
  }
  return LDMC_OK;
}

/* Fills s->p: which parameters are data, frozen or trained. */
static ldmc_status select_params(ts_state *s) {
  const ldmc_graph *g = s->model;
  const ldmc_train_opts *o = &s->o;
  int32_t np = ldmc_graph_num_params(g);
  if (o->n_data_params < 0 || o->n_data_params > np)
    return ldmc_error(LDMC_ERR_INVALID, "train step: n_data_params = %d, but graph '%s' has %d parameters",
                      (int)o->n_data_params, g->name, (int)np);
  if (o->ema_from_model && !(o->ema_decay > 0))
    return ldmc_error(LDMC_ERR_INVALID, "train step: ema_from_model needs ema_decay > 0");
  regex_t re, fz;
  const char *res[2] = {o->wrt_regex, o->frozen_regex};
  regex_t *rx[2] = {&re, &fz};
  for (int r = 0; r < 2; r++) {
    if (!res[r]) continue;
    int rc = regcomp(rx[r], res[r], REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char why[256];
      regerror(rc, rx[r], why, sizeof why);
      if (r && o->wrt_regex) regfree(&re);
      return ldmc_error(LDMC_ERR_INVALID, "train step: %s '%s' does not compile: %s", r ? "frozen_regex" : "wrt_regex",
                        res[r], why);
    }
  }
  s->p = calloc((size_t)(np ? np : 1), sizeof *s->p);
  if (!s->p) {
    if (o->wrt_regex) regfree(&re);
    if (o->frozen_regex) regfree(&fz);
    return ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
  }
  char floats[512] = "";
  for (int32_t i = 0, j = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER) continue;
    ts_param *p = &s->p[j];
    p->n = n;
    p->dt = n->dtype;
    bool fl = ldmc_dtype_is_float(n->dtype);
    p->role = j < o->n_data_params ? ROLE_DATA : ROLE_FROZEN;
    if (p->role == ROLE_FROZEN && fl) {
      list_add(floats, sizeof floats, pname(n));
      bool frozen = (o->frozen_regex && regexec(&fz, pname(n), 0, NULL, 0) == 0) ||
                    (o->ema_from_model && strncmp(pname(n), "ema.", 4) == 0);
      if (!frozen && (!o->wrt_regex || regexec(&re, pname(n), 0, NULL, 0) == 0)) {
        p->role = ROLE_TRAINED;
        p->k = s->n_trained++;
        if (o->master_f32 && (n->dtype == LDMC_BF16 || n->dtype == LDMC_F16)) p->dt = LDMC_F32;
      }
    }
    j++;
  }
  s->np = np;
  if (o->wrt_regex) regfree(&re);
  if (o->frozen_regex) regfree(&fz);
  for (int32_t j = 0; o->ema_from_model && j < np; j++) {
    ts_param *p = &s->p[j];
    if (p->role != ROLE_FROZEN || strncmp(pname(p->n), "ema.", 4) != 0) continue;
    const ts_param *of = NULL;
    for (int32_t i = 0; i < np && !of; i++)
      if (s->p[i].role == ROLE_TRAINED && strcmp(pname(s->p[i].n), pname(p->n) + 4) == 0) of = &s->p[i];
    if (!of)
      return ldmc_error(LDMC_ERR_INVALID, "train step: parameter '%s' would read the EMA of '%s', which is not "
                        "trained", pname(p->n), pname(p->n) + 4);
    if (!ldmc_shape_equal(&of->n->shape, &p->n->shape)) {
      char a[80], c[80];
      return ldmc_error(LDMC_ERR_INVALID, "train step: parameter '%s' is %s but '%s' is %s; it cannot read its EMA",
                        pname(p->n), ldmc_shape_str(&p->n->shape, a, sizeof a), pname(of->n),
                        ldmc_shape_str(&of->n->shape, c, sizeof c));
    }
    p->role = ROLE_EMA;
    p->k = of->k;
    p->dt = compute_dtype(of->dt);
  }
  if (s->n_trained > 0) return LDMC_OK;
  if (!floats[0])
    return ldmc_error(LDMC_ERR_INVALID, "train step: graph '%s' has no float parameter after its %d data parameters "
                      "to train", g->name, (int)o->n_data_params);
  return ldmc_error(LDMC_ERR_INVALID, "train step: wrt_regex '%s' matches none of the trainable parameters of graph "
                    "'%s' (float parameters after the %d data parameters: %s)", o->wrt_regex, g->name,
                    (int)o->n_data_params, floats);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The step graph's parameter names must be distinct, and no state may be
 * named like the outputs loss and grad_norm. */
static ldmc_status check_names(const ts_state *s) {
  static const char *prefix[] = {"", "adam_m.", "adam_v.", "ema."};
  int per = s->o.ema_decay > 0 ? 4 : 3;
  size_t cap = (size_t)s->np + 2 + (size_t)s->n_trained * (size_t)(per - 1);
  char **v = calloc(cap, sizeof *v);
  if (!v) return ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
  size_t n = 0;
  ldmc_status st = LDMC_OK;
  v[n++] = strdup("lr");
  v[n++] = strdup("step");
  for (int32_t j = 0; j < s->np && st == LDMC_OK; j++) {
    const ts_param *p = &s->p[j];
    if (p->role == ROLE_EMA) continue; /* the step's own ema.P */
    for (int q = 0; q < (p->role == ROLE_TRAINED ? per : 1); q++) {
      char *nm = cat(prefix[q], pname(p->n));
      v[n++] = nm;
      if (nm && p->role == ROLE_TRAINED && (strcmp(nm, "loss") == 0 || strcmp(nm, "grad_norm") == 0))
        st = ldmc_error(LDMC_ERR_INVALID, "train step: trained state '%s' would be named like the step graph's "
                        "output '%s'", nm, nm);
    }
  }
  for (size_t i = 0; i < n && st == LDMC_OK; i++)
    if (!v[i]) st = ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
  if (st == LDMC_OK) {
    qsort(v, n, sizeof *v, cmp_str);
    for (size_t i = 1; i < n && st == LDMC_OK; i++)
      if (strcmp(v[i], v[i - 1]) == 0)
        st = ldmc_error(LDMC_ERR_INVALID, "train step: the step graph would have two parameters named '%s' (lr, "
                        "step, adam_m.P, adam_v.P and ema.P are the step's own); rename the model's parameter", v[i]);
  }
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
  return st;
}

/* The model to differentiate: master weights as f32 parameters converted to
 * the model's dtype, parameters renamed T<k> (trained) / F<j> so that "^T"
 * selects exactly the trained ones, and one output, the loss. */
static ldmc_status build_prep(ts_state *s, ldmc_graph **out) {
  const ldmc_graph *m = s->model;
  ldmc_graph *g = ldmc_graph_new(m->name);
  int32_t *map = malloc((size_t)(m->n_nodes ? m->n_nodes : 1) * sizeof *map);
  int max_ops = 1;
  for (int32_t i = 0; i < m->n_nodes; i++)
    if (m->nodes[i].n_operands > max_ops) max_ops = m->nodes[i].n_operands;
  int32_t *ops = malloc((size_t)max_ops * sizeof *ops);
  ldmc_status st = g && map && ops ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
  for (int32_t i = 0, j = 0; i < m->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *n = &m->nodes[i];
    int32_t id;
    if (n->op == LDMC_OP_PARAMETER) {
      ts_param *p = &s->p[j];
      char nm[32];
      snprintf(nm, sizeof nm, p->role == ROLE_TRAINED ? "T%d" : "F%d", (int)(p->role == ROLE_TRAINED ? p->k : j));
      ldmc_attrs at = n->attrs;
      at.name = nm;
      id = p->prep_id = ldmc_graph_add(g, LDMC_OP_PARAMETER, p->dt, &n->shape, 0, NULL, &at, n->scope);
      if (id >= 0 && p->dt != n->dtype)
        id = ldmc_graph_add_checked(g, LDMC_OP_CONVERT, n->dtype, &n->shape, 1, &id, NULL, n->scope);
      j++;
    } else {
      for (int k = 0; k < n->n_operands; k++) ops[k] = map[n->operands[k]];
      id = ldmc_graph_add(g, n->op, n->dtype, &n->shape, n->n_operands, ops, &n->attrs, n->scope);
    }
    if (id < 0) st = ldmc_error(LDMC_ERR_NOMEM, "train step: copying node %%%d: %s", (int)i, ldmc_last_error());
    else map[i] = id;
  }
  if (st == LDMC_OK) st = ldmc_graph_add_output(g, map[s->loss_id], "loss");
  free(map);
  free(ops);
  if (st != LDMC_OK) ldmc_graph_free(g), g = NULL;
  *out = g;
  return st;
}

/* Scalars shared by every parameter updated in one compute dtype. */
typedef struct hyper {
  bool made;
  ldmc_value lr, step_size, bc2_sqrt, decay, clip_scale;
} hyper;

typedef struct ts_build {
  ts_state *s;
  ldmc_builder *b;
  ldmc_value lr, step, grad_norm;
  hyper h[2]; /* f32, f64 */
} ts_build;

static ldmc_value cst(ldmc_builder *b, ldmc_dtype dt, double v) { return ldmc_constant_scalar(b, dt, v); }
static ldmc_value to(ldmc_builder *b, ldmc_value x, ldmc_dtype dt) {
  return ldmc_value_dtype(b, x) == dt ? x : ldmc_convert(b, x, dt);
}
static ldmc_dtype compute_dtype(ldmc_dtype dt) { return dt == LDMC_F64 ? LDMC_F64 : LDMC_F32; }

static hyper *hyper_for(ts_build *t, ldmc_dtype cd) {
  hyper *h = &t->h[cd == LDMC_F64];
  if (h->made) return h;
  ldmc_builder *b = t->b;
  const ldmc_train_opts *o = &t->s->o;
  h->made = true;
  ldmc_builder_push_scope(b, "adamw");
  ldmc_value step = to(b, t->step, cd), one = cst(b, cd, 1.0);
  h->lr = to(b, t->lr, cd);
  /* torch: step_size = lr / (1 - beta1^t), denom = sqrt(v) / sqrt(1 - beta2^t) + eps */
  h->step_size = ldmc_div(b, h->lr, ldmc_sub(b, one, ldmc_binary(b, LDMC_OP_POW, cst(b, cd, o->beta1), step)));
  h->bc2_sqrt = ldmc_unary(b, LDMC_OP_SQRT, ldmc_sub(b, one, ldmc_binary(b, LDMC_OP_POW, cst(b, cd, o->beta2), step)));
  h->decay = o->weight_decay > 0 ? ldmc_sub(b, one, ldmc_scale(b, h->lr, o->weight_decay)) : -1;
  ldmc_builder_pop_scope(b);
  h->clip_scale = -1;
  if (o->clip_norm > 0) {
    ldmc_builder_push_scope(b, "clip");
    /* min(1, clip / (norm + 1e-6)), in the norm's dtype as torch does */
    ldmc_dtype nd = ldmc_value_dtype(b, t->grad_norm);
    ldmc_value c = ldmc_div(b, cst(b, nd, o->clip_norm), ldmc_add(b, t->grad_norm, cst(b, nd, TS_NORM_EPS)));
    h->clip_scale = to(b, ldmc_binary(b, LDMC_OP_MIN, c, cst(b, nd, 1.0)), cd);
    ldmc_builder_pop_scope(b);
  }
  return h;
}

static ldmc_value sum_squares(ldmc_builder *b, ldmc_value g) {
  ldmc_value sq = ldmc_mul(b, g, g);
  int rank = ldmc_value_shape(b, g) ? ldmc_value_shape(b, g)->rank : 0;
  if (rank == 0) return sq;
  int64_t axes[LDMC_MAX_RANK];
  for (int i = 0; i < rank; i++) axes[i] = i;
  return ldmc_reduce(b, LDMC_REDUCE_SUM, sq, rank, axes, false);
}

/* The optimizer part, after the forward and backward nodes. grads[k] is the
 * gradient of trained parameter k, ins[4k..4k+3] its P, m, v, ema inputs. */
static void build_update(ts_build *t, const ldmc_value *grads, const ldmc_value *ins, ldmc_value *outs) {
  ts_state *s = t->s;
  ldmc_builder *b = t->b;
  const ldmc_train_opts *o = &s->o;
  ldmc_dtype nd = LDMC_F32;
  for (int32_t j = 0; j < s->np; j++)
    if (s->p[j].role == ROLE_TRAINED && s->p[j].dt == LDMC_F64) nd = LDMC_F64;
  ldmc_builder_push_scope(b, "optim");
  ldmc_builder_push_scope(b, "clip");
  ldmc_value ss = -1;
  for (int32_t k = 0; k < s->n_trained; k++) {
    ldmc_value g = to(b, grads[k], compute_dtype(ldmc_value_dtype(b, grads[k])));
    ldmc_value q = to(b, sum_squares(b, g), nd);
    ss = ss < 0 ? q : ldmc_add(b, ss, q);
  }
  t->grad_norm = ldmc_unary(b, LDMC_OP_SQRT, ss);
  ldmc_builder_pop_scope(b);
  for (int32_t j = 0; j < s->np; j++) {
    const ts_param *p = &s->p[j];
    if (p->role != ROLE_TRAINED) continue;
    int32_t k = p->k;
    ldmc_dtype cd = compute_dtype(p->dt);
    hyper *h = hyper_for(t, cd);
    ldmc_builder_push_scope(b, "adamw");
    ldmc_value g = to(b, grads[k], cd);
    if (h->clip_scale >= 0) g = ldmc_mul(b, g, h->clip_scale);
    ldmc_value w = to(b, ins[4 * k], cd);
    if (h->decay >= 0) w = ldmc_mul(b, w, h->decay);
    ldmc_value m = ldmc_add(b, ldmc_scale(b, ins[4 * k + 1], o->beta1), ldmc_scale(b, g, 1.0 - o->beta1));
    ldmc_value v = ldmc_add(b, ldmc_scale(b, ins[4 * k + 2], o->beta2), ldmc_scale(b, ldmc_mul(b, g, g), 1.0 - o->beta2));
    ldmc_value denom = ldmc_add(b, ldmc_div(b, ldmc_unary(b, LDMC_OP_SQRT, v), h->bc2_sqrt), cst(b, cd, o->eps));
    w = ldmc_sub(b, w, ldmc_mul(b, h->step_size, ldmc_div(b, m, denom)));
    ldmc_builder_pop_scope(b);
    outs[4 * k] = to(b, w, p->dt);
    outs[4 * k + 1] = m;
    outs[4 * k + 2] = v;
    outs[4 * k + 3] = -1;
    if (o->ema_decay > 0) {
      ldmc_builder_push_scope(b, "ema");
      ldmc_value nw = to(b, outs[4 * k], cd); /* the weights as stored */
      outs[4 * k + 3] = ldmc_add(b, ldmc_scale(b, ins[4 * k + 3], o->ema_decay), ldmc_scale(b, nw, 1.0 - o->ema_decay));
      ldmc_builder_pop_scope(b);
    }
  }
  ldmc_builder_pop_scope(b);
}

/* The updated state as outputs named like its parameters (P, adam_m.P, ...). */
static ldmc_status state_outputs(const ts_state *s, ldmc_builder *b, const ldmc_value *outs) {
  static const char *prefix[] = {"", "adam_m.", "adam_v.", "ema."};
  for (int32_t j = 0; j < s->np; j++) {
    const ts_param *p = &s->p[j];
    for (int q = 0; p->role == ROLE_TRAINED && q < 4; q++) {
      if (outs[4 * p->k + q] < 0) continue;
      char *nm = cat(prefix[q], pname(p->n));
      if (!nm) return ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
      ldmc_builder_output(b, outs[4 * p->k + q], nm);
      free(nm);
    }
  }
  return LDMC_OK;
}

/* Parameters in step-graph order, then the differentiated graph's other
 * nodes, then the update; outputs as frontend.h lists them. */
static ldmc_status assemble(ts_state *s, const ldmc_graph *dg, bool grads_only, ldmc_graph **out) {
  static const char *prefix[] = {"", "adam_m.", "adam_v.", "ema."};
  const ldmc_train_opts *o = &s->o;
  char *gname = cat(s->model->name ? s->model->name : "", grads_only ? ".train_grads" : ".train_step");
  ts_build t = {.s = s, .b = gname ? ldmc_builder_new(gname) : NULL};
  free(gname);
  size_t nt = (size_t)s->n_trained;
  int32_t *map = malloc((size_t)dg->n_nodes * sizeof *map);
  ldmc_value *ins = malloc(4 * nt * sizeof *ins), *outs = malloc(4 * nt * sizeof *outs);
  ldmc_value *grads = malloc(nt * sizeof *grads);
  int max_ops = 1;
  for (int32_t i = 0; i < dg->n_nodes; i++)
    if (dg->nodes[i].n_operands > max_ops) max_ops = dg->nodes[i].n_operands;
  int32_t *ops = malloc((size_t)max_ops * sizeof *ops);
  ldmc_status st = LDMC_OK;
  if (!t.b || !map || !ins || !outs || !grads || !ops) st = ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
  for (size_t i = 0; ins && i < 4 * nt; i++) ins[i] = -1;
  ldmc_builder *b = t.b;
  /* frozen last: compile opts treat parameters from some index on as weights */
  static const ts_role order[] = {ROLE_DATA, ROLE_TRAINED, ROLE_FROZEN};
  for (int pass = 0; pass < 3 && st == LDMC_OK; pass++) {
    if (pass == 1) { /* after the data */
      t.lr = ldmc_parameter(b, "lr", LDMC_F32, 0, NULL);
      t.step = ldmc_parameter(b, "step", LDMC_F32, 0, NULL);
    }
    for (int32_t j = 0; j < s->np; j++) {
      const ts_param *p = &s->p[j];
      const ldmc_shape *sh = &p->n->shape;
      if (p->role != order[pass]) continue;
      for (int q = 0; q < (p->role == ROLE_TRAINED ? (o->ema_decay > 0 ? 4 : 3) : 1); q++) {
        char *nm = cat(prefix[q], pname(p->n));
        ldmc_value v = nm ? ldmc_parameter(b, nm, q ? compute_dtype(p->dt) : p->dt, sh->rank, sh->dims) : -1;
        free(nm);
        if (q == 0) map[p->prep_id] = v;
        if (p->role == ROLE_TRAINED) ins[4 * p->k + q] = v;
      }
    }
  }
  for (int32_t j = 0; j < s->np; j++) /* ema_from_model: the model reads the EMA state */
    if (s->p[j].role == ROLE_EMA) map[s->p[j].prep_id] = ins[4 * s->p[j].k + 3];
  ldmc_graph *dst = ldmc_builder_graph(b);
  for (int32_t i = 0; i < dg->n_nodes && st == LDMC_OK && ldmc_builder_status(b) == LDMC_OK; i++) {
    const ldmc_node *n = &dg->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) continue;
    for (int k = 0; k < n->n_operands; k++) ops[k] = map[n->operands[k]];
    map[i] = ldmc_graph_add(dst, n->op, n->dtype, &n->shape, n->n_operands, ops, &n->attrs, n->scope);
    if (map[i] < 0) st = ldmc_error(LDMC_ERR_NOMEM, "train step: copying node %%%d: %s", (int)i, ldmc_last_error());
  }
  for (int32_t k = 0; k < s->n_trained && st == LDMC_OK; k++) {
    char want[32];
    snprintf(want, sizeof want, "grad.T%d", (int)k);
    if (strcmp(dg->output_names[1 + k], want) != 0)
      st = ldmc_error(LDMC_ERR_INTERNAL, "train step: autodiff output %d is '%s', expected '%s'", (int)(1 + k),
                      dg->output_names[1 + k], want);
    else
      grads[k] = map[dg->outputs[1 + k]];
  }
  if (st == LDMC_OK && ldmc_builder_status(b) == LDMC_OK && grads_only) {
    ldmc_builder_output(b, map[dg->outputs[0]], "loss");
    for (int32_t j = 0; j < s->np && st == LDMC_OK; j++) {
      const ts_param *p = &s->p[j];
      if (p->role != ROLE_TRAINED) continue;
      char *nm = cat("grad.", pname(p->n));
      if (nm) ldmc_builder_output(b, to(b, grads[p->k], compute_dtype(p->dt)), nm);
      else st = ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
      free(nm);
    }
  } else if (st == LDMC_OK && ldmc_builder_status(b) == LDMC_OK) {
    build_update(&t, grads, ins, outs);
    ldmc_builder_output(b, map[dg->outputs[0]], "loss");
    ldmc_builder_output(b, t.grad_norm, "grad_norm");
    st = state_outputs(s, b, outs);
  }
  free(map);
  free(ins);
  free(outs);
  free(grads);
  free(ops);
  if (st != LDMC_OK) {
    ldmc_builder_free(b);
    return st;
  }
  *out = ldmc_builder_finish(b, &st);
  if (!*out) ldmc_error_prefix("train step: ");
  return st;
}

/* The update half of a split step: grad.P inputs (as data), lr, step, the
 * trained state; clipping, AdamW and EMA exactly as the fused step builds
 * them; outputs grad_norm and the state. */
static ldmc_status assemble_update(ts_state *s, ldmc_graph **out) {
  static const char *prefix[] = {"", "adam_m.", "adam_v.", "ema."};
  const ldmc_train_opts *o = &s->o;
  char *gname = cat(s->model->name ? s->model->name : "", ".train_update");
  ts_build t = {.s = s, .b = gname ? ldmc_builder_new(gname) : NULL};
  free(gname);
  size_t nt = (size_t)s->n_trained;
  ldmc_value *ins = malloc(4 * nt * sizeof *ins), *outs = malloc(4 * nt * sizeof *outs);
  ldmc_value *grads = malloc(nt * sizeof *grads);
  ldmc_status st = t.b && ins && outs && grads ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
  ldmc_builder *b = t.b;
  for (int pass = 0; pass < 2 && st == LDMC_OK; pass++) {
    if (pass == 1) {
      t.lr = ldmc_parameter(b, "lr", LDMC_F32, 0, NULL);
      t.step = ldmc_parameter(b, "step", LDMC_F32, 0, NULL);
    }
    for (int32_t j = 0; j < s->np && st == LDMC_OK; j++) {
      const ts_param *p = &s->p[j];
      if (p->role != ROLE_TRAINED) continue;
      const ldmc_shape *sh = &p->n->shape;
      for (int q = pass ? 0 : 4; q < (pass ? (o->ema_decay > 0 ? 4 : 3) : 5); q++) {
        char *nm = cat(q == 4 ? "grad." : prefix[q], pname(p->n));
        ldmc_dtype dt = q == 4 ? compute_dtype(p->dt) : q ? compute_dtype(p->dt) : p->dt;
        ldmc_value v = nm ? ldmc_parameter(b, nm, dt, sh->rank, sh->dims) : -1;
        if (!nm) st = ldmc_error(LDMC_ERR_NOMEM, "train step: out of memory");
        free(nm);
        if (q == 4) grads[p->k] = v;
        else ins[4 * p->k + q] = v;
      }
    }
  }
  if (st == LDMC_OK && ldmc_builder_status(b) == LDMC_OK) {
    build_update(&t, grads, ins, outs);
    ldmc_builder_output(b, t.grad_norm, "grad_norm");
    st = state_outputs(s, b, outs);
  }
  free(ins);
  free(outs);
  free(grads);
  if (st != LDMC_OK) {
    ldmc_builder_free(b);
    return st;
  }
  *out = ldmc_builder_finish(b, &st);
  if (!*out) ldmc_error_prefix("train step: ");
  return st;
}

static ldmc_status build_step(const ldmc_graph *model, const ldmc_train_opts *o, ldmc_graph **out,
                              ldmc_graph **update) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "train step: out is NULL");
  *out = NULL;
  if (!model || !o) return ldmc_error(LDMC_ERR_INVALID, "train step: %s is NULL", model ? "opts" : "the model");
  if (ldmc_graph_verify(model) != LDMC_OK) {
    ldmc_error_prefix("train step: graph '%s' does not verify: ", model->name);
    return LDMC_ERR_INVALID;
  }
  ts_state s = {.model = model};
  ldmc_graph *prep = NULL, *dg = NULL;
  ldmc_status st = check_opts(o, &s.o);
  if (st == LDMC_OK) st = find_loss(&s);
  if (st == LDMC_OK) st = select_params(&s);
  if (st == LDMC_OK) st = check_names(&s);
  if (st == LDMC_OK) st = build_prep(&s, &prep);
  if (st == LDMC_OK) {
    ldmc_grad_opts go = {.output = "loss", .seed = LDMC_GRAD_SCALAR, .wrt_regex = "^T"};
    st = ldmc_grad(prep, &go, &dg);
    if (st != LDMC_OK) ldmc_error_prefix("train step: ");
  }
  if (st == LDMC_OK && dg->n_outputs != 1 + s.n_trained)
    st = ldmc_error(LDMC_ERR_INTERNAL, "train step: autodiff gave %d outputs, expected %d", (int)dg->n_outputs,
                    (int)(1 + s.n_trained));
  if (st == LDMC_OK) st = assemble(&s, dg, update != NULL, out);
  if (st == LDMC_OK && update) st = assemble_update(&s, update);
  ldmc_graph_free(prep);
  ldmc_graph_free(dg);
  free(s.p);
  if (st != LDMC_OK) ldmc_graph_free(*out), *out = NULL;
  return st;
}

ldmc_status ldmc_train_step_build(const ldmc_graph *model, const ldmc_train_opts *o, ldmc_graph **out) {
  return build_step(model, o, out, NULL);
}

ldmc_status ldmc_train_step_build_split(const ldmc_graph *model, const ldmc_train_opts *o, ldmc_graph **grads,
                                        ldmc_graph **update) {
  if (!update) return ldmc_error(LDMC_ERR_INVALID, "train step: update is NULL");
  *update = NULL;
  return build_step(model, o, grads, update);
}

ldmc_status ldmc_train_step_state_pairs(const ldmc_graph *step, int32_t *out_to_in) {
  if (!step || !out_to_in)
    return ldmc_error(LDMC_ERR_INVALID, "train step pairs: %s is NULL", step ? "out_to_in" : "the graph");
  int32_t np = ldmc_graph_num_params(step);
  int32_t *pid = malloc((size_t)(np ? np : 1) * sizeof *pid);
  if (!pid) return ldmc_error(LDMC_ERR_NOMEM, "train step pairs: out of memory");
  for (int32_t i = 0, j = 0; i < step->n_nodes; i++)
    if (step->nodes[i].op == LDMC_OP_PARAMETER) pid[j++] = i;
  ldmc_status st = LDMC_OK;
  for (int32_t o = 0; o < step->n_outputs && st == LDMC_OK; o++) {
    out_to_in[o] = -1;
    const ldmc_node *y = &step->nodes[step->outputs[o]];
    for (int32_t j = 0; j < np; j++) {
      const ldmc_node *p = &step->nodes[pid[j]];
      if (strcmp(pname(p), step->output_names[o]) != 0) continue;
      if (p->dtype != y->dtype || !ldmc_shape_equal(&p->shape, &y->shape)) {
        char a[80], c[80];
        st = ldmc_error(LDMC_ERR_INVALID, "train step pairs: output '%s' is %s%s but parameter %d '%s' is %s%s; it "
                        "cannot replace it", step->output_names[o], ldmc_dtype_name(y->dtype),
                        ldmc_shape_str(&y->shape, a, sizeof a), (int)j, pname(p), ldmc_dtype_name(p->dtype),
                        ldmc_shape_str(&p->shape, c, sizeof c));
      }
      out_to_in[o] = j;
      break;
    }
  }
  free(pid);
  return st;
}
