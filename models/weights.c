/* Weights against a graph: check, convert, random init, run inputs. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/weights_io.h"
#include "models/unet.h"
#include "models/weights.h"

static bool is_input(const char *name, const char *const *inputs, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(name, inputs[i]) == 0) return true;
  return false;
}

static const char *type_str(const ldmc_tensor *t, char *buf, size_t len) {
  char sh[160];
  ldmc_shape_str(&t->shape, sh, sizeof sh);
  snprintf(buf, len, "%s%s", t->raw_dtype[0] ? t->raw_dtype : ldmc_dtype_name(t->dtype), sh);
  return buf;
}

static const char *node_type_str(const ldmc_node *n, char *buf, size_t len) {
  char sh[160];
  snprintf(buf, len, "%s%s", ldmc_dtype_name(n->dtype), ldmc_shape_str(&n->shape, sh, sizeof sh));
  return buf;
}

/* Collects problem lines into one message: the first dozen, then a count. */
typedef struct problems {
  char msg[1800];
  size_t len;
  int n;
} problems;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *p, const char *fmt, ...) {
  if (p->n++ >= 12 || p->len >= sizeof p->msg - 64) return;
  if (p->len) p->len += (size_t)snprintf(p->msg + p->len, sizeof p->msg - p->len, "; ");
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(p->msg + p->len, sizeof p->msg - p->len, fmt, ap);
  va_end(ap);
  p->len += k < 0 ? 0 : (size_t)k;
  if (p->len >= sizeof p->msg) p->len = sizeof p->msg - 1;
}

static ldmc_status problems_report(const problems *p, const char *what) {
  if (p->n == 0) return LDMC_OK;
  if (p->n > 12)
    return ldmc_error(LDMC_ERR_INVALID, "%s: %d problems: %s; and %d more", what, p->n, p->msg, p->n - 12);
  return ldmc_error(LDMC_ERR_INVALID, "%s: %d problem%s: %s", what, p->n, p->n == 1 ? "" : "s", p->msg);
}

/* Replaces *t by an owned tensor of dtype dt with the same values. */
static ldmc_status convert_tensor(ldmc_tensor *t, ldmc_dtype dt) {
  ldmc_tensor c;
  LDMC_TRY(ldmc_tensor_alloc(&c, t->name, dt, &t->shape));
  int64_t n;
  LDMC_TRY(ldmc_shape_numel(&t->shape, 0, &n));
  for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(&c, i, ldmc_tensor_get(t, i));
  ldmc_tensor_release(t);
  *t = c;
  return LDMC_OK;
}

static bool float_dtype_ok(const ldmc_tensor *t) {
  return !t->raw_dtype[0] && (t->dtype == LDMC_F32 || t->dtype == LDMC_F16 || t->dtype == LDMC_BF16);
}

ldmc_status ldmc_weights_check(const ldmc_graph *g, const char *const *inputs, int n_inputs, ldmc_tensor_set *ws) {
  problems p = {0};
  char a[200], b[200];
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER || is_input(n->attrs.name, inputs, n_inputs)) continue;
    ldmc_tensor *t = ldmc_tensor_set_find(ws, n->attrs.name);
    if (!t) {
      problem(&p, "missing '%s' (expected %s)", n->attrs.name, node_type_str(n, a, sizeof a));
    } else if (!ldmc_shape_equal(&t->shape, &n->shape) || !float_dtype_ok(t)) {
      problem(&p, "'%s' is %s, expected %s%s", n->attrs.name, type_str(t, b, sizeof b), node_type_str(n, a, sizeof a),
              float_dtype_ok(t) ? "" : " (F32, F16 or BF16)");
    }
  }
  for (int32_t i = 0; i < ws->n; i++) {
    const ldmc_tensor *t = &ws->items[i];
    int32_t id = ldmc_graph_find_param(g, t->name);
    if (id < 0 || is_input(t->name, inputs, n_inputs))
      problem(&p, "unexpected '%s' (found %s; %s)", t->name, type_str(t, b, sizeof b),
              id < 0 ? "the model has no such weight" : "an input, not a weight");
  }
  LDMC_TRY(problems_report(&p, "weights"));
  for (int32_t i = 0; i < ws->n; i++) {
    ldmc_tensor *t = &ws->items[i];
    ldmc_dtype want = g->nodes[ldmc_graph_find_param(g, t->name)].dtype;
    if (t->dtype != want) LDMC_TRY(convert_tensor(t, want));
  }
  return LDMC_OK;
}

/* ---- random init ---- */
static uint64_t mix64(uint64_t z) { /* splitmix64's finalizer */
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (; *s; s++) h = (h ^ (uint8_t)*s) * UINT64_C(0x100000001b3);
  return h;
}

static uint64_t tensor_key(uint64_t seed, const char *name) { return mix64(seed ^ mix64(fnv1a64(name))); }

static double uniform_at(uint64_t key, int64_t i) {
  uint64_t z = mix64(key + (uint64_t)i * UINT64_C(0x9e3779b97f4a7c15));
  return (double)(z >> 11) * 0x1.0p-53;
}

double ldmc_weights_uniform(uint64_t seed, const char *name, int64_t i) { return uniform_at(tensor_key(seed, name), i); }

/* fan_in of the rank >= 2 weight NAME, or of the weight beside bias NAME; 0 if none. */
static int64_t fan_in_for(const ldmc_graph *g, const ldmc_node *n) {
  const ldmc_shape *s = &n->shape;
  if (s->rank >= 2) {
    int64_t f = 1;
    for (int i = 1; i < s->rank; i++) f *= s->dims[i];
    return f;
  }
  const char *name = n->attrs.name;
  size_t len = strlen(name);
  if (s->rank != 1 || len < 5 || strcmp(name + len - 5, ".bias") != 0) return 0;
  char *w = malloc(len + 3);
  if (!w) return 0;
  memcpy(w, name, len - 5);
  strcpy(w + len - 5, ".weight");
  int32_t id = ldmc_graph_find_param(g, w);
  free(w);
  return id >= 0 && g->nodes[id].shape.rank >= 2 ? fan_in_for(g, &g->nodes[id]) : 0;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

ldmc_status ldmc_weights_init_random(const ldmc_graph *g, const char *const *inputs, int n_inputs, uint64_t seed,
                                     ldmc_tensor_set *out) {
  memset(out, 0, sizeof *out);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER || is_input(n->attrs.name, inputs, n_inputs)) continue;
    ldmc_tensor t;
    ldmc_status st = ldmc_tensor_alloc(&t, n->attrs.name, LDMC_F32, &n->shape);
    if (st != LDMC_OK) {
      ldmc_tensor_set_free(out);
      return st;
    }
    int64_t numel;
    ldmc_shape_numel(&n->shape, 0, &numel);
    float *d = t.data;
    int64_t fan = fan_in_for(g, n);
    if (fan > 0) {
      double bound = 1.0 / sqrt((double)fan);
      uint64_t key = tensor_key(seed, n->attrs.name);
      for (int64_t k = 0; k < numel; k++) d[k] = (float)((2.0 * uniform_at(key, k) - 1.0) * bound);
    } else if (n->shape.rank == 1 && ends_with(n->attrs.name, ".weight")) {
      for (int64_t k = 0; k < numel; k++) d[k] = 1.0f;
    } /* else zeros, as allocated */
    if ((st = ldmc_tensor_set_add(out, &t)) != LDMC_OK) {
      ldmc_tensor_release(&t);
      ldmc_tensor_set_free(out);
      return st;
    }
  }
  return LDMC_OK;
}

ldmc_status ldmc_weights_load(const ldmc_graph *g, const char *const *inputs, int n_inputs, const char *path,
                              uint64_t seed, ldmc_tensor_set *out) {
  if (!path) return ldmc_weights_init_random(g, inputs, n_inputs, seed, out);
  memset(out, 0, sizeof *out);
  LDMC_TRY(ldmc_safetensors_load(path, out));
  ldmc_status st = ldmc_weights_check(g, inputs, n_inputs, out);
  if (st != LDMC_OK) {
    ldmc_error_prefix("%s: ", path);
    ldmc_tensor_set_free(out);
  }
  return st;
}

ldmc_status ldmc_unet_inputs_check(const ldmc_graph *g, ldmc_tensor_set *inputs) {
  problems p = {0};
  char a[200], b[200];
  for (int k = 0; k < LDMC_UNET_N_INPUTS; k++) {
    const char *name = ldmc_unet_input_names[k];
    int32_t id = ldmc_graph_find_param(g, name);
    if (id < 0) return ldmc_error(LDMC_ERR_INVALID, "the graph has no input '%s'", name);
    const ldmc_node *n = &g->nodes[id];
    ldmc_tensor *t = ldmc_tensor_set_find(inputs, name);
    bool timestep = strcmp(name, "timestep") == 0;
    if (!t) {
      problem(&p, "missing '%s' (expected %s%s)", name, node_type_str(n, a, sizeof a), timestep ? " or i32/i64" : "");
      continue;
    }
    bool dtype_ok = !t->raw_dtype[0] &&
                    (t->dtype == n->dtype || (timestep && (t->dtype == LDMC_I64 || t->dtype == LDMC_I32)));
    if (!dtype_ok || !ldmc_shape_equal(&t->shape, &n->shape))
      problem(&p, "'%s' is %s, expected %s%s", name, type_str(t, b, sizeof b), node_type_str(n, a, sizeof a),
              timestep ? " (or i32/i64)" : "");
  }
  for (int32_t i = 0; i < inputs->n; i++)
    if (!is_input(inputs->items[i].name, ldmc_unet_input_names, LDMC_UNET_N_INPUTS))
      problem(&p, "unexpected '%s' (inputs are sample, timestep, encoder_hidden_states)", inputs->items[i].name);
  LDMC_TRY(problems_report(&p, "inputs"));
  ldmc_tensor *t = ldmc_tensor_set_find(inputs, "timestep");
  if (t->dtype != LDMC_F32) LDMC_TRY(convert_tensor(t, LDMC_F32));
  return LDMC_OK;
}

static ldmc_status add_views(const ldmc_tensor_set *src, ldmc_tensor_set *out) {
  for (int32_t i = 0; i < src->n; i++) {
    ldmc_tensor v = src->items[i];
    v.owns_data = false;
    if (!(v.name = strdup(src->items[i].name))) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    ldmc_status st = ldmc_tensor_set_add(out, &v);
    if (st != LDMC_OK) {
      free(v.name);
      return st;
    }
  }
  return LDMC_OK;
}

ldmc_status ldmc_weights_bind(const ldmc_tensor_set *weights, const ldmc_tensor_set *inputs, ldmc_tensor_set *out) {
  memset(out, 0, sizeof *out);
  ldmc_status st = add_views(inputs, out);
  if (st == LDMC_OK) st = add_views(weights, out);
  if (st != LDMC_OK) ldmc_tensor_set_free(out);
  return st;
}
