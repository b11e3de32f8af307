/* Helpers shared by the passes: users, forwarding, compaction, rebuilding. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass_util.h"

bool ldmc_pass_fail(const ldmc_pass_ctx *ctx, ldmc_status s) {
  if (ctx && ctx->status && *ctx->status == LDMC_OK) *ctx->status = s == LDMC_OK ? LDMC_ERR_INTERNAL : s;
  return false;
}

int64_t ldmc_node_numel(const ldmc_node *n) {
  int64_t k;
  if (ldmc_shape_numel(&n->shape, ldmc_dtype_size(n->dtype), &k) != LDMC_OK) return 0;
  return k;
}

int64_t ldmc_node_bytes(const ldmc_node *n) { return ldmc_node_numel(n) * (int64_t)ldmc_dtype_size(n->dtype); }

int64_t ldmc_graph_intermediate_bytes(const ldmc_graph *g) {
  int64_t sum = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op != LDMC_OP_PARAMETER && g->nodes[i].op != LDMC_OP_CONSTANT) sum += ldmc_node_bytes(&g->nodes[i]);
  return sum;
}

ldmc_status ldmc_users_build(const ldmc_graph *g, ldmc_users *u) {
  memset(u, 0, sizeof *u);
  int32_t n = g->n_nodes;
  u->start = calloc((size_t)n + 1, sizeof *u->start);
  u->is_output = calloc((size_t)n + 1, sizeof *u->is_output);
  if (!u->start || !u->is_output) goto nomem;
  int64_t total = 0;
  for (int32_t i = 0; i < n; i++) {
    for (int k = 0; k < g->nodes[i].n_operands; k++) u->start[g->nodes[i].operands[k] + 1]++;
    total += g->nodes[i].n_operands;
  }
  for (int32_t i = 0; i < n; i++) u->start[i + 1] += u->start[i];
  u->list = malloc((size_t)(total ? total : 1) * sizeof *u->list);
  int32_t *fill = malloc(((size_t)n + 1) * sizeof *fill);
  if (!u->list || !fill) {
    free(fill);
    goto nomem;
  }
  memcpy(fill, u->start, ((size_t)n + 1) * sizeof *fill);
  for (int32_t i = 0; i < n; i++)
    for (int k = 0; k < g->nodes[i].n_operands; k++) u->list[fill[g->nodes[i].operands[k]]++] = i;
  free(fill);
  for (int32_t i = 0; i < g->n_outputs; i++) u->is_output[g->outputs[i]] = true;
  return LDMC_OK;
nomem:
  ldmc_users_free(u);
  return ldmc_error(LDMC_ERR_NOMEM, "out of memory listing users of graph '%s'", g->name);
}

void ldmc_users_free(ldmc_users *u) {
  free(u->start);
  free(u->list);
  free(u->is_output);
  memset(u, 0, sizeof *u);
}

static int32_t resolve(int32_t *repl, int32_t i) {
  int32_t r = i;
  while (repl[r] != r) r = repl[r];
  while (repl[i] != r) { /* path compression */
    int32_t nx = repl[i];
    repl[i] = r;
    i = nx;
  }
  return r;
}

bool ldmc_graph_forward(ldmc_graph *g, int32_t *repl) {
  bool changed = false;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    ldmc_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_operands; k++) {
      int32_t r = resolve(repl, n->operands[k]);
      if (r != n->operands[k]) {
        n->operands[k] = r;
        changed = true;
      }
    }
  }
  for (int32_t i = 0; i < g->n_outputs; i++) {
    int32_t r = resolve(repl, g->outputs[i]);
    if (r != g->outputs[i]) {
      g->outputs[i] = r;
      changed = true;
    }
  }
  return changed;
}

static void node_release(ldmc_node *n) {
  free(n->operands);
  free(n->scope);
  ldmc_attrs_free(&n->attrs);
  memset(n, 0, sizeof *n);
}

ldmc_status ldmc_graph_compact(ldmc_graph *g, const bool *keep, int32_t *map) {
  int32_t *m = map ? map : malloc(((size_t)g->n_nodes + 1) * sizeof *m);
  if (!m) return ldmc_error(LDMC_ERR_NOMEM, "out of memory compacting graph '%s'", g->name);
  int32_t k = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    if (!keep[i]) {
      m[i] = -1;
      node_release(&g->nodes[i]);
      continue;
    }
    m[i] = k;
    if (k != i) g->nodes[k] = g->nodes[i];
    ldmc_node *n = &g->nodes[k];
    for (int j = 0; j < n->n_operands; j++) n->operands[j] = m[n->operands[j]];
    k++;
  }
  for (int32_t i = 0; i < g->n_outputs; i++) g->outputs[i] = m[g->outputs[i]];
  g->n_nodes = k;
  if (!map) free(m);
  return LDMC_OK;
}

void ldmc_graph_take(ldmc_graph *dst, ldmc_graph *src) {
  ldmc_graph old = *dst;
  *dst = *src;
  /* free old contents through a shell */
  ldmc_graph *shell = malloc(sizeof *shell);
  if (shell) {
    *shell = old;
    ldmc_graph_free(shell);
  }
  free(src);
}

ldmc_status ldmc_rebuild_begin(ldmc_rebuild *rb, const ldmc_graph *in) {
  rb->in = in;
  rb->out = ldmc_graph_new(in->name);
  rb->map = malloc(((size_t)in->n_nodes + 1) * sizeof *rb->map);
  if (!rb->out || !rb->map) {
    ldmc_rebuild_abort(rb);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory rebuilding graph '%s'", in->name);
  }
  for (int32_t i = 0; i < in->n_nodes; i++) rb->map[i] = -1;
  return LDMC_OK;
}

int32_t ldmc_rebuild_copy(ldmc_rebuild *rb, int32_t id) {
  const ldmc_node *n = &rb->in->nodes[id];
  int32_t ops[16] = {0};
  int32_t *p = n->n_operands <= 16 ? ops : malloc((size_t)n->n_operands * sizeof *p);
  if (!p) {
    ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    return -1;
  }
  for (int k = 0; k < n->n_operands; k++) p[k] = rb->map[n->operands[k]];
  int32_t r = ldmc_graph_add(rb->out, n->op, n->dtype, &n->shape, n->n_operands, p, &n->attrs, n->scope);
  if (p != ops) free(p);
  rb->map[id] = r;
  return r;
}

int32_t ldmc_rebuild_add(ldmc_rebuild *rb, ldmc_op op, ldmc_dtype dt, const ldmc_shape *shape, int n,
                         const int32_t *operands, const ldmc_attrs *attrs, const char *scope) {
  return ldmc_graph_add_checked(rb->out, op, dt, shape, n, operands, attrs, scope);
}

ldmc_status ldmc_rebuild_finish(ldmc_rebuild *rb, ldmc_graph *g) {
  for (int32_t i = 0; i < rb->in->n_outputs; i++) {
    int32_t m = rb->map[rb->in->outputs[i]];
    if (m < 0) {
      ldmc_rebuild_abort(rb);
      return ldmc_error(LDMC_ERR_INTERNAL, "rebuild: output '%s' (%%%d) was not emitted", rb->in->output_names[i],
                        (int)rb->in->outputs[i]);
    }
    ldmc_status s = ldmc_graph_add_output(rb->out, m, rb->in->output_names[i]);
    if (s != LDMC_OK) {
      ldmc_rebuild_abort(rb);
      return s;
    }
  }
  free(rb->map);
  rb->map = NULL;
  ldmc_graph_take(g, rb->out);
  rb->out = NULL;
  return LDMC_OK;
}

void ldmc_rebuild_abort(ldmc_rebuild *rb) {
  ldmc_graph_free(rb->out);
  free(rb->map);
  rb->out = NULL;
  rb->map = NULL;
}

/* ---- splats ---- */
static bool is_view_op(ldmc_op op) {
  return op == LDMC_OP_BROADCAST_IN_DIM || op == LDMC_OP_RESHAPE || op == LDMC_OP_TRANSPOSE;
}

bool ldmc_node_splat(const ldmc_graph *g, int32_t id, double *v) {
  const ldmc_node *n = &g->nodes[id];
  while (is_view_op(n->op) || (n->op == LDMC_OP_CONVERT && ldmc_dtype_is_float(n->dtype) &&
                               ldmc_dtype_is_float(g->nodes[n->operands[0]].dtype))) {
    if (n->op == LDMC_OP_CONVERT) {
      /* only exact for values every float type holds: 0, 1, -1 are checked below */
      double w;
      if (!ldmc_node_splat(g, n->operands[0], &w)) return false;
      if (w != 0.0 && w != 1.0 && w != -1.0) return false;
      *v = w;
      return true;
    }
    n = &g->nodes[n->operands[0]];
  }
  if (n->op != LDMC_OP_CONSTANT) return false;
  int64_t numel = ldmc_node_numel(n);
  size_t es = ldmc_dtype_size(n->dtype);
  if (numel <= 0 || !n->attrs.value.data || n->attrs.value.nbytes < (size_t)numel * es) return false;
  const uint8_t *p = n->attrs.value.data;
  for (int64_t i = 1; i < numel; i++)
    if (memcmp(p, p + (size_t)i * es, es) != 0) return false;
  ldmc_tensor t = {.dtype = n->dtype, .shape = n->shape, .data = (void *)p, .nbytes = es};
  *v = ldmc_tensor_get(&t, 0);
  return true;
}

bool ldmc_node_scalar_broadcast(const ldmc_graph *g, int32_t id, int32_t *scalar) {
  const ldmc_node *n = &g->nodes[id];
  while (is_view_op(n->op)) {
    id = n->operands[0];
    n = &g->nodes[id];
  }
  if (n->op != LDMC_OP_CONSTANT || n->shape.rank != 0) return false;
  *scalar = id;
  return true;
}

int ldmc_node_reverse_axis(const ldmc_graph *g, int32_t id) {
  const ldmc_node *n = &g->nodes[id];
  if (n->op != LDMC_OP_GATHER || n->n_operands != 2) return -1;
  const ldmc_node *x = &g->nodes[n->operands[0]], *ix = &g->nodes[n->operands[1]];
  int ax = (int)n->attrs.axis;
  if (ix->op != LDMC_OP_CONSTANT || ix->shape.rank != 1 || ax < 0 || ax >= x->shape.rank) return -1;
  int64_t L = x->shape.dims[ax];
  if (ix->shape.dims[0] != L || !ix->attrs.value.data || (ix->dtype != LDMC_I32 && ix->dtype != LDMC_I64)) return -1;
  for (int64_t i = 0; i < L; i++) {
    int64_t v;
    if (ix->dtype == LDMC_I32) {
      int32_t w;
      memcpy(&w, (const char *)ix->attrs.value.data + 4 * i, 4);
      v = w;
    } else {
      memcpy(&v, (const char *)ix->attrs.value.data + 8 * i, 8);
    }
    if (v != L - 1 - i) return -1;
  }
  return ax;
}

/* ---- attributes ---- */
bool ldmc_attrs_equal(ldmc_op op, const ldmc_attrs *a, const ldmc_attrs *b) {
  uint64_t mask = ldmc_op_table[op].attr_mask;
  for (int f = 0; f < LDMC_ATTR_COUNT; f++) {
    if (!(mask & (UINT64_C(1) << f))) continue;
    const ldmc_attr_info *ai = &ldmc_attr_table[f];
    const char *pa = (const char *)a + ai->offset, *pb = (const char *)b + ai->offset;
    switch (ai->kind) {
      case LDMC_AK_INT: if (*(const int64_t *)pa != *(const int64_t *)pb) return false; break;
      case LDMC_AK_FLOAT: if (memcmp(pa, pb, sizeof(double)) != 0) return false; break;
      case LDMC_AK_INTS: {
        const ldmc_ints *x = (const ldmc_ints *)pa, *y = (const ldmc_ints *)pb;
        if (x->n != y->n || memcmp(x->v, y->v, (size_t)x->n * sizeof x->v[0]) != 0) return false;
        break;
      }
      case LDMC_AK_STRING: {
        const char *x = *(char *const *)pa, *y = *(char *const *)pb;
        if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0)) return false;
        break;
      }
      case LDMC_AK_LITERAL: {
        const ldmc_literal *x = (const ldmc_literal *)pa, *y = (const ldmc_literal *)pb;
        if (x->nbytes != y->nbytes || (x->nbytes && memcmp(x->data, y->data, x->nbytes) != 0)) return false;
        break;
      }
      case LDMC_AK_COMPARE: if (*(const ldmc_compare *)pa != *(const ldmc_compare *)pb) return false; break;
      case LDMC_AK_REDUCE: if (*(const ldmc_reduce_kind *)pa != *(const ldmc_reduce_kind *)pb) return false; break;
    }
  }
  return true;
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  uint64_t x = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) x = (x ^ b[i]) * 1099511628211ull;
  return mix(h, x);
}

uint64_t ldmc_attrs_hash(ldmc_op op, const ldmc_attrs *a) {
  uint64_t mask = ldmc_op_table[op].attr_mask, h = 0;
  for (int f = 0; f < LDMC_ATTR_COUNT; f++) {
    if (!(mask & (UINT64_C(1) << f))) continue;
    const ldmc_attr_info *ai = &ldmc_attr_table[f];
    const char *p = (const char *)a + ai->offset;
    switch (ai->kind) {
      case LDMC_AK_INT: h = mix(h, (uint64_t) * (const int64_t *)p); break;
      case LDMC_AK_FLOAT: h = hash_bytes(h, p, sizeof(double)); break;
      case LDMC_AK_INTS: {
        const ldmc_ints *x = (const ldmc_ints *)p;
        h = hash_bytes(mix(h, (uint64_t)x->n), x->v, (size_t)x->n * sizeof x->v[0]);
        break;
      }
      case LDMC_AK_STRING: {
        const char *s = *(char *const *)p;
        if (s) h = hash_bytes(h, s, strlen(s));
        break;
      }
      case LDMC_AK_LITERAL: {
        const ldmc_literal *x = (const ldmc_literal *)p;
        h = hash_bytes(mix(h, x->nbytes), x->data, x->nbytes);
        break;
      }
      case LDMC_AK_COMPARE: h = mix(h, (uint64_t) * (const ldmc_compare *)p); break;
      case LDMC_AK_REDUCE: h = mix(h, (uint64_t) * (const ldmc_reduce_kind *)p); break;
    }
  }
  return h;
}

ldmc_status ldmc_node_make_constant(ldmc_node *n, const void *data, size_t nbytes) {
  void *copy = malloc(nbytes ? nbytes : 1);
  if (!copy) return ldmc_error(LDMC_ERR_NOMEM, "out of memory making a %zu-byte constant", nbytes);
  if (nbytes) memcpy(copy, data, nbytes);
  ldmc_attrs_free(&n->attrs);
  memset(&n->attrs, 0, sizeof n->attrs);
  n->attrs.value.data = copy;
  n->attrs.value.nbytes = nbytes;
  free(n->operands);
  n->operands = NULL;
  n->n_operands = 0;
  n->op = LDMC_OP_CONSTANT;
  return LDMC_OK;
}

ldmc_status ldmc_node_reset(ldmc_node *n, ldmc_op op, int n_operands, const int32_t *operands, const ldmc_attrs *attrs) {
  ldmc_attrs copy = {0};
  if (attrs) LDMC_TRY(ldmc_attrs_copy(&copy, attrs));
  int32_t *ops = NULL;
  if (n_operands > 0) {
    ops = malloc((size_t)n_operands * sizeof *ops);
    if (!ops) {
      ldmc_attrs_free(&copy);
      return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    }
    memcpy(ops, operands, (size_t)n_operands * sizeof *ops);
  }
  free(n->operands);
  ldmc_attrs_free(&n->attrs);
  n->op = op;
  n->operands = ops;
  n->n_operands = n_operands;
  n->attrs = copy;
  return LDMC_OK;
}

bool ldmc_perm_is_identity(const ldmc_ints *p) {
  for (int i = 0; i < p->n; i++)
    if (p->v[i] != i) return false;
  return true;
}

void ldmc_textbuf_printf(ldmc_textbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->s && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->n + (size_t)k + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
      b->oom = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
}
