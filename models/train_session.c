/* Binding and compiling a training step (train_session.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/train_session.h"
#include "models/weights.h"
#include "runtime/checkpoint.h"
#include "runtime/dist.h"
#include "runtime/grad_sync.h"
#include "support/half.h"

/* grads graph outputs are all-reduced in buckets of about this size */
#define LDMC_DP_BUCKET_BYTES ((size_t)4 << 20)

void ldmc_train_session_free(ldmc_train_session *s) {
  if (!s) return;
  ldmc_grad_sync_free(s->sync);
  ldmc_executable_free(s->grads_exe);
  ldmc_executable_free(s->update_exe);
  for (int32_t i = 0; s->update_out && s->update && i < s->update->n_outputs; i++) ldmc_tensor_release(&s->update_out[i]);
  free(s->update_in), free(s->update_out), free(s->update_pairs), free(s->update_grad_of);
  ldmc_graph_free(s->grads);
  ldmc_graph_free(s->update);
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

void ldmc_train_session_print_comm(const ldmc_train_session *s, FILE *f) {
  if (!s->sync) return;
  ldmc_grad_sync_stats g;
  ldmc_grad_sync_get_stats(s->sync, &g);
  if (g.steps < 1) return;
  fprintf(f, "all-reduce: %d ranks, %d buckets, %.2f MB per step, %.2f ms per step in MPI, step waited %.2f ms for it "
          "(%s)\n", ldmc_dist_size(), (int)g.buckets, (double)g.bytes_per_step / 1e6, 1e3 * g.allreduce_s / (double)g.steps,
          1e3 * g.wait_s / (double)g.steps, g.overlapped ? "overlapped with the backward" : "after the backward");
}

ldmc_status ldmc_train_session_loop(ldmc_train_session *s, const ldmc_train_source *src, ldmc_train_loop_opts *lo,
                                    ldmc_train_result *res) {
  lo->runner = ldmc_train_session_runner(s);
  ldmc_status st = ldmc_dist_agree(LDMC_OK, "setting up");
  if (st == LDMC_OK) st = ldmc_train_loop(s->exe, s->step, s->pairs, s->n_data, s->inputs, src, lo, res);
  if (st != LDMC_OK && ldmc_dist_active()) ldmc_dist_abort(ldmc_last_error());
  if (ldmc_dist_active() && ldmc_dist_rank() == 0) ldmc_train_session_print_comm(s, stderr);
  return st;
}

const ldmc_train_runner *ldmc_train_session_runner(const ldmc_train_session *s) {
  return s->update_exe ? &s->runner : NULL;
}

/* One data-parallel step: gradients, all-reduce (overlapped), update. */
static ldmc_status dp_run(void *ctx, ldmc_tensor *inputs, double *loss, double *grad_norm) {
  ldmc_train_session *s = ctx;
  LDMC_TRY(ldmc_grad_sync_run(s->sync, s->grads_exe, inputs, s->n_inputs));
  *loss = ldmc_grad_sync_output(s->sync, 0)[0];
  int32_t np = ldmc_graph_num_params(s->update);
  for (int32_t k = 0; k < np; k++)
    if (s->update_grad_of[k] >= 0) s->update_in[k].data = ldmc_grad_sync_output(s->sync, s->update_grad_of[k]);
  LDMC_TRY(ldmc_executable_run(s->update_exe, s->update_in, np, s->update_out, s->update->n_outputs));
  *grad_norm = ldmc_tensor_get(&s->update_out[0], 0);
  return LDMC_OK;
}

/* The split step, compiled: the gradients graph over the session's inputs,
 * the update graph over views of them and of the all-reduced gradients. */
static ldmc_status dp_setup(ldmc_train_session *s, const ldmc_graph *loss, const ldmc_train_opts *o,
                            const ldmc_backend_i *be, const ldmc_compile_opts *co, int32_t n_act) {
  LDMC_TRY(ldmc_train_step_build_split(loss, o, &s->grads, &s->update));
  int32_t np = ldmc_graph_num_params(s->update), no = s->update->n_outputs;
  s->update_in = calloc((size_t)np, sizeof *s->update_in);
  s->update_out = calloc((size_t)no, sizeof *s->update_out);
  s->update_pairs = malloc((size_t)no * sizeof *s->update_pairs);
  s->update_grad_of = malloc((size_t)np * sizeof *s->update_grad_of);
  if (!s->update_in || !s->update_out || !s->update_pairs || !s->update_grad_of)
    return ldmc_error(LDMC_ERR_NOMEM, "training: out of memory");
  LDMC_TRY(ldmc_train_step_state_pairs(s->update, s->update_pairs));
  for (int32_t k = 0; k < np; k++) {
    const ldmc_node *p = &s->update->nodes[ldmc_graph_param_node(s->update, k)];
    const char *nm = p->attrs.name;
    s->update_grad_of[k] = -1;
    for (int32_t o2 = 0; o2 < s->grads->n_outputs && s->update_grad_of[k] < 0; o2++)
      if (!strcmp(s->grads->output_names[o2], nm)) s->update_grad_of[k] = o2;
    if (s->update_grad_of[k] >= 0) {
      s->update_in[k] = (ldmc_tensor){.name = (char *)nm, .dtype = p->dtype, .shape = p->shape};
      int64_t ne = 0;
      LDMC_TRY(ldmc_shape_numel(&p->shape, 4, &ne));
      s->update_in[k].nbytes = (size_t)ne * ldmc_dtype_size(p->dtype);
      continue;
    }
    ldmc_tensor *t = ldmc_train_session_find(s, nm);
    if (!t) return ldmc_error(LDMC_ERR_INTERNAL, "training: the update graph's '%s' is not in the step's inputs", nm);
    s->update_in[k] = *t;
    s->update_in[k].owns_data = false;
  }
  /* no gradient replaces an input, but the outputs are kept and rewritten
   * in place every step (donation's reuse rule): nothing allocated per step */
  int32_t *keep = malloc((size_t)s->grads->n_outputs * sizeof *keep);
  if (!keep) return ldmc_error(LDMC_ERR_NOMEM, "training: out of memory");
  for (int32_t o2 = 0; o2 < s->grads->n_outputs; o2++) keep[o2] = -1;
  ldmc_compile_opts c = *co;
  c.donate = keep;
  c.params_are_weights = true;
  c.n_activation_params = n_act;
  ldmc_status st = be->compile(s->grads, &c, &s->grads_exe);
  free(keep);
  if (st != LDMC_OK) {
    ldmc_error_prefix("compiling the gradients graph on %s: ", be->name);
    return st;
  }
  c.donate = s->update_pairs;
  c.params_are_weights = false;
  st = be->compile(s->update, &c, &s->update_exe);
  if (st != LDMC_OK) {
    ldmc_error_prefix("compiling the update graph on %s: ", be->name);
    return st;
  }
  LDMC_TRY(ldmc_grad_sync_new(s->grads_exe->graph, LDMC_DP_BUCKET_BYTES, &s->sync));
  s->runner = (ldmc_train_runner){.ctx = s, .run = dp_run};
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
    if (ldmc_dist_active()) {
      st = dp_setup(s, loss, &o, be, co, last_state + 1);
    } else {
      st = be->compile(s->step, &c, &s->exe);
      if (st != LDMC_OK) ldmc_error_prefix("compiling the training step on %s: ", be->name);
    }
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
