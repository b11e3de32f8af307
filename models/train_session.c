/* Binding and compiling a training step (train_session.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/train_session.h"
#include "models/weights.h"
#include "runtime/checkpoint.h"
#include "support/half.h"

void ldmc_train_session_free(ldmc_train_session *s) {
  if (!s) return;
  ldmc_executable_free(s->exe);
  for (int32_t i = 0; s->inputs && i < s->n_inputs; i++) ldmc_tensor_release(&s->inputs[i]);
  free(s->inputs);
  free(s->pairs);
  ldmc_graph_free(s->step);
  free(s);
}

ldmc_tensor *ldmc_train_session_find(ldmc_train_session *s, const char *name) {
  for (int32_t i = 0; i < s->n_inputs; i++)
    if (s->inputs[i].name && !strcmp(s->inputs[i].name, name)) return &s->inputs[i];
  return NULL;
}

static const ldmc_tensor *set_find(const ldmc_tensor_set *ws, const char *name) {
  for (int32_t i = 0; ws && i < ws->n; i++)
    if (ws->items[i].name && !strcmp(ws->items[i].name, name)) return &ws->items[i];
  return NULL;
}

/* Fills the fresh input t (named as step parameter k) from the init draws. */
static ldmc_status init_input(ldmc_train_session *s, int32_t k, const ldmc_tensor_set *drawn,
                              const ldmc_tensor_set *init) {
  ldmc_tensor *t = &s->inputs[k];
  if (k < s->n_data + 2) return LDMC_OK; /* data, lr, step: zeros until filled */
  const char *nm = t->name, *base = nm;
  if (!strncmp(nm, "adam_m.", 7) || !strncmp(nm, "adam_v.", 7)) return LDMC_OK; /* zero moments */
  if (!strncmp(nm, "ema.", 4)) base = nm + 4;
  const ldmc_tensor *src = set_find(init, base);
  if (!src) src = set_find(drawn, base);
  if (!src) return ldmc_error(LDMC_ERR_INTERNAL, "training: no initial value for '%s'", nm);
  if (src->dtype != t->dtype || src->nbytes != t->nbytes)
    return ldmc_error(LDMC_ERR_INVALID, "training: initial '%s' is %s of %zu bytes, the step needs %s of %zu", base,
                      ldmc_dtype_name(src->dtype), src->nbytes, ldmc_dtype_name(t->dtype), t->nbytes);
  memcpy(t->data, src->data, t->nbytes);
  return LDMC_OK;
}

ldmc_status ldmc_train_session_new(const ldmc_graph *loss, int32_t n_data, const ldmc_train_opts *to, uint64_t seed,
                                   const ldmc_tensor_set *init, const ldmc_backend_i *be, const ldmc_compile_opts *co,
                                   ldmc_train_session **out) {
  *out = NULL;
  ldmc_train_session *s = calloc(1, sizeof *s);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "training: out of memory");
  ldmc_train_opts o = *to;
  o.n_data_params = n_data;
  s->n_data = n_data;
  s->ema = o.ema_decay > 0;
  ldmc_status st = ldmc_train_step_build(loss, &o, &s->step);
  const char **names = calloc((size_t)(n_data > 0 ? n_data : 1), sizeof *names);
  ldmc_tensor_set drawn = {0};
  if (st == LDMC_OK && !names) st = ldmc_error(LDMC_ERR_NOMEM, "training: out of memory");
  for (int32_t k = 0; st == LDMC_OK && k < n_data; k++) names[k] = loss->nodes[ldmc_graph_param_node(loss, k)].attrs.name;
  if (st == LDMC_OK) st = ldmc_weights_init_random(loss, names, n_data, seed, &drawn);
  if (st == LDMC_OK) {
    s->n_inputs = ldmc_graph_num_params(s->step);
    s->inputs = calloc((size_t)s->n_inputs, sizeof *s->inputs);
    s->pairs = malloc((size_t)s->step->n_outputs * sizeof *s->pairs);
    if (!s->inputs || !s->pairs) st = ldmc_error(LDMC_ERR_NOMEM, "training: out of memory");
  }
  if (st == LDMC_OK) st = ldmc_train_step_state_pairs(s->step, s->pairs);
  for (int32_t k = 0; st == LDMC_OK && k < s->n_inputs; k++) {
    const ldmc_node *p = &s->step->nodes[ldmc_graph_param_node(s->step, k)];
    st = ldmc_tensor_alloc(&s->inputs[k], p->attrs.name, p->dtype, &p->shape);
    if (st == LDMC_OK) {
      memset(s->inputs[k].data, 0, s->inputs[k].nbytes);
      st = init_input(s, k, &drawn, init);
    }
  }
  ldmc_tensor_set_free(&drawn);
  free(names);
  if (st == LDMC_OK) {
    ldmc_compile_opts c = *co;
    int32_t last_state = s->n_data + 1;
    for (int32_t k = 0; k < s->step->n_outputs; k++)
      if (s->pairs[k] > last_state) last_state = s->pairs[k];
    c.donate = s->pairs;
    c.params_are_weights = true; /* frozen inputs after the state: prepacked once */
    c.n_activation_params = last_state + 1;
    st = be->compile(s->step, &c, &s->exe);
    if (st != LDMC_OK) ldmc_error_prefix("compiling the training step on %s: ", be->name);
  }
  if (st != LDMC_OK) {
    ldmc_train_session_free(s);
    return st;
  }
  *out = s;
  return LDMC_OK;
}

ldmc_status ldmc_train_session_views(ldmc_train_session *s, const ldmc_graph *g, int32_t first, bool use_ema,
                                     ldmc_tensor *views) {
  int32_t np = ldmc_graph_num_params(g);
  for (int32_t k = first; k < np; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    const char *nm = p->attrs.name;
    ldmc_tensor *t = NULL;
    if (use_ema && s->ema) {
      char buf[512];
      snprintf(buf, sizeof buf, "ema.%s", nm);
      t = ldmc_train_session_find(s, buf);
    }
    if (!t) t = ldmc_train_session_find(s, nm);
    if (!t || t->dtype != p->dtype || !ldmc_shape_equal(&t->shape, &p->shape))
      return ldmc_error(LDMC_ERR_INVALID, "graph '%s' parameter '%s': %s in the training state", g->name, nm,
                        t ? "of another type" : "not");
    views[k] = *t;
    views[k].owns_data = false;
  }
  return LDMC_OK;
}

ldmc_status ldmc_train_session_export(ldmc_train_session *s, const char *path, int64_t step, bool use_ema,
                                      ldmc_dtype dt, const char *prefix, int32_t n_config, const char *const *keys,
                                      const char *const *values, const ldmc_tensor_set *extra,
                                      const char *extra_prefix) {
  if (dt != LDMC_F32 && dt != LDMC_BF16) return ldmc_error(LDMC_ERR_INVALID, "export: dtype must be f32 or bf16");
  ldmc_checkpoint *ck = ldmc_checkpoint_new();
  int32_t n_extra = extra ? extra->n : 0;
  void **bufs = calloc((size_t)(s->n_inputs + n_extra), sizeof *bufs);
  ldmc_status st = ck && bufs ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "export: out of memory");
  for (int32_t i = 0; i < n_config && st == LDMC_OK; i++) st = ldmc_checkpoint_set_config(ck, keys[i], values[i]);
  if (st == LDMC_OK) st = ldmc_checkpoint_set_step(ck, step);
  for (int32_t k = 0; k < s->step->n_outputs && st == LDMC_OK; k++) {
    if (s->pairs[k] < 0) continue;
    const ldmc_tensor *t = &s->inputs[s->pairs[k]];
    if (!strncmp(t->name, "adam_", 5) || !strncmp(t->name, "ema.", 4) || t->dtype != LDMC_F32) continue;
    const ldmc_tensor *src = t;
    if (use_ema && s->ema) {
      char buf[512];
      snprintf(buf, sizeof buf, "ema.%s", t->name);
      const ldmc_tensor *e = ldmc_train_session_find(s, buf);
      if (e) src = e;
    }
    const void *data = src->data;
    int64_t n = (int64_t)(src->nbytes / 4);
    if (dt == LDMC_BF16) {
      uint16_t *h = malloc((size_t)n * 2 + 1);
      if (!h) {
        st = ldmc_error(LDMC_ERR_NOMEM, "export: out of memory");
        break;
      }
      for (int64_t i = 0; i < n; i++) h[i] = ldmc_f32_to_bf16(((const float *)src->data)[i]);
      bufs[k] = h;
      data = h;
    }
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", t->name);
    st = ldmc_checkpoint_add_tensor(ck, name, LDMC_CKPT_PARAM, dt, t->shape.rank, t->shape.dims, data);
  }
  for (int32_t i = 0; i < n_extra && st == LDMC_OK; i++) {
    const ldmc_tensor *t = &extra->items[i];
    if (t->dtype != LDMC_F32) continue;
    const void *data = t->data;
    if (dt == LDMC_BF16) {
      int64_t n = (int64_t)(t->nbytes / 4);
      uint16_t *h = malloc((size_t)n * 2 + 1);
      if (!h) {
        st = ldmc_error(LDMC_ERR_NOMEM, "export: out of memory");
        break;
      }
      for (int64_t j = 0; j < n; j++) h[j] = ldmc_f32_to_bf16(((const float *)t->data)[j]);
      bufs[s->n_inputs + i] = h;
      data = h;
    }
    char name[512];
    snprintf(name, sizeof name, "%s%s", extra_prefix ? extra_prefix : "", t->name);
    st = ldmc_checkpoint_add_tensor(ck, name, LDMC_CKPT_OTHER, dt, t->shape.rank, t->shape.dims, data);
  }
  if (st == LDMC_OK) st = ldmc_checkpoint_write(ck, path);
  for (int32_t k = 0; bufs && k < s->n_inputs + n_extra; k++) free(bufs[k]);
  free(bufs);
  ldmc_checkpoint_free(ck);
  return st;
}
