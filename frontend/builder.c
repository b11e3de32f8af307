/* The builder's core: graph ownership, sticky errors, scopes, and the source,
 * elementwise and shape ops. Contractions and composites: builder_ops.c. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/builder_internal.h"
#include "support/half.h"

ldmc_builder *ldmc_builder_new(const char *graph_name) {
  ldmc_builder *b = calloc(1, sizeof *b);
  if (!b) {
    ldmc_error(LDMC_ERR_NOMEM, "out of memory creating a builder");
    return NULL;
  }
  b->g = ldmc_graph_new(graph_name);
  b->scope = calloc(1, 64);
  b->scope_cap = 64;
  if (!b->g || !b->scope) {
    ldmc_graph_free(b->g);
    free(b->scope);
    free(b);
    ldmc_error(LDMC_ERR_NOMEM, "out of memory creating a builder");
    return NULL;
  }
  return b;
}

void ldmc_builder_free(ldmc_builder *b) {
  if (!b) return;
  ldmc_graph_free(b->g);
  free(b->scope);
  free(b->error);
  free(b);
}

ldmc_graph *ldmc_builder_finish(ldmc_builder *b, ldmc_status *status) {
  ldmc_status st = LDMC_ERR_INVALID;
  ldmc_graph *g = NULL;
  if (!b) {
    st = ldmc_error(LDMC_ERR_INVALID, "builder is NULL");
  } else if (b->status != LDMC_OK) {
    st = ldmc_error(b->status, "%s", b->error ? b->error : "builder failed");
  } else if ((st = ldmc_graph_verify(b->g)) == LDMC_OK) {
    g = b->g;
    b->g = NULL;
  } else {
    ldmc_error_prefix("graph '%s' built but does not verify: ", b->g->name);
  }
  ldmc_builder_free(b);
  if (status) *status = st;
  return g;
}

ldmc_graph *ldmc_builder_graph(ldmc_builder *b) { return b ? b->g : NULL; }
ldmc_status ldmc_builder_status(const ldmc_builder *b) { return b ? b->status : LDMC_ERR_INVALID; }
const char *ldmc_builder_error(const ldmc_builder *b) {
  return !b ? "builder is NULL" : b->error ? b->error : "";
}

/* Records the current message as the builder's first error (with the scope). */
ldmc_value ldmc_builder_fail(ldmc_builder *b, ldmc_status code) {
  if (b->status != LDMC_OK) return -1;
  if (b->scope_len) ldmc_error_prefix("in %s: ", b->scope);
  b->status = code == LDMC_OK ? LDMC_ERR_INVALID : code;
  b->error = strdup(ldmc_last_error());
  return -1;
}

ldmc_value ldmc_builder_failf(ldmc_builder *b, ldmc_status code, const char *fmt, ...) {
  if (b->status != LDMC_OK) return -1;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ldmc_error(code, "%s", msg);
  return ldmc_builder_fail(b, code);
}

/* Checks that every operand is a live value; the first error sticks. */
bool ldmc_builder_ok(ldmc_builder *b, int n, const ldmc_value *vs) {
  if (!b || b->status != LDMC_OK) return false;
  for (int i = 0; i < n; i++) {
    if (vs[i] < 0 || vs[i] >= b->g->n_nodes) {
      ldmc_builder_failf(b, LDMC_ERR_INVALID, "operand %d is value %d, which does not exist", i, (int)vs[i]);
      return false;
    }
  }
  return true;
}

ldmc_value ldmc_builder_node(ldmc_builder *b, ldmc_op op, ldmc_dtype dt, const ldmc_shape *shape, int n,
                             const ldmc_value *operands, const ldmc_attrs *attrs) {
  if (!ldmc_builder_ok(b, n, operands)) return -1;
  int32_t id = ldmc_graph_add_checked(b->g, op, dt, shape, n, operands, attrs, b->scope);
  if (id < 0) return ldmc_builder_fail(b, LDMC_ERR_INVALID); /* the rule's message names the op */
  return id;
}

void ldmc_builder_push_scope(ldmc_builder *b, const char *fmt, ...) {
  if (!b) return;
  char part[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(part, sizeof part, fmt, ap);
  va_end(ap);
  size_t need = b->scope_len + strlen(part) + 2;
  if (need > b->scope_cap) {
    size_t cap = need * 2;
    char *s = realloc(b->scope, cap);
    if (!s) {
      ldmc_builder_failf(b, LDMC_ERR_NOMEM, "out of memory pushing scope '%s'", part);
      return;
    }
    b->scope = s;
    b->scope_cap = cap;
  }
  if (b->depth >= LDMC_BUILDER_MAX_DEPTH) {
    ldmc_builder_failf(b, LDMC_ERR_INVALID, "scopes nested deeper than %d at '%s'", LDMC_BUILDER_MAX_DEPTH, part);
    return;
  }
  b->marks[b->depth++] = b->scope_len;
  if (b->scope_len) b->scope[b->scope_len++] = '.';
  strcpy(b->scope + b->scope_len, part);
  b->scope_len += strlen(part);
}

void ldmc_builder_pop_scope(ldmc_builder *b) {
  if (!b || b->depth == 0) return;
  b->scope_len = b->marks[--b->depth];
  b->scope[b->scope_len] = 0;
}

const char *ldmc_builder_scope(const ldmc_builder *b) { return b && b->scope ? b->scope : ""; }

ldmc_status ldmc_builder_output(ldmc_builder *b, ldmc_value v, const char *name) {
  if (!ldmc_builder_ok(b, 1, &v)) return b ? b->status : LDMC_ERR_INVALID;
  ldmc_status st = ldmc_graph_add_output(b->g, v, name);
  if (st != LDMC_OK) ldmc_builder_fail(b, st);
  return st;
}

/* ---- queries ---- */
const ldmc_shape *ldmc_value_shape(const ldmc_builder *b, ldmc_value v) {
  if (!b || v < 0 || v >= b->g->n_nodes) return NULL;
  return &b->g->nodes[v].shape;
}

ldmc_dtype ldmc_value_dtype(const ldmc_builder *b, ldmc_value v) {
  if (!b || v < 0 || v >= b->g->n_nodes) return LDMC_DTYPE_COUNT;
  return b->g->nodes[v].dtype;
}

static bool rank_ok(ldmc_builder *b, int rank, const char *what) {
  if (b->status != LDMC_OK) return false;
  if (rank < 0 || rank > LDMC_MAX_RANK) {
    ldmc_builder_failf(b, LDMC_ERR_INVALID, "%s: rank %d is outside 0..%d", what, rank, LDMC_MAX_RANK);
    return false;
  }
  return true;
}

/* rank in range and dims given when rank > 0 */
static bool dims_ok(ldmc_builder *b, int rank, const int64_t *dims, const char *what) {
  if (!rank_ok(b, rank, what)) return false;
  if (rank > 0 && !dims) {
    ldmc_builder_failf(b, LDMC_ERR_INVALID, "%s: rank %d but no dims given", what, rank);
    return false;
  }
  return true;
}

static ldmc_ints ints_of(int n, const int64_t *v) {
  ldmc_ints r = {0};
  r.n = n < 0 ? 0 : n > LDMC_MAX_RANK ? LDMC_MAX_RANK : n;
  for (int i = 0; i < r.n; i++) r.v[i] = v ? v[i] : 0;
  return r;
}

/* ---- sources ---- */
ldmc_value ldmc_parameter(ldmc_builder *b, const char *name, ldmc_dtype dt, int rank, const int64_t *dims) {
  if (!b || !dims_ok(b, rank, dims, "parameter")) return -1;
  if (!name || !*name) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "parameter needs a name");
  if (ldmc_graph_find_param(b->g, name) >= 0)
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "parameter '%s' is declared twice", name);
  ldmc_attrs a = {0};
  a.name = (char *)name;
  ldmc_shape s = ldmc_shape_make(rank, dims);
  return ldmc_builder_node(b, LDMC_OP_PARAMETER, dt, &s, 0, NULL, &a);
}

static void store_scalar(ldmc_dtype dt, double v, uint8_t *p) {
  switch (dt) {
    case LDMC_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
    case LDMC_BF16: { uint16_t h = ldmc_f32_to_bf16((float)v); memcpy(p, &h, 2); break; }
    case LDMC_F16: { uint16_t h = ldmc_f32_to_f16((float)v); memcpy(p, &h, 2); break; }
    case LDMC_I32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
    case LDMC_I64: { int64_t x = (int64_t)v; memcpy(p, &x, 8); break; }
    case LDMC_PRED: p[0] = v != 0.0; break;
    case LDMC_F64: memcpy(p, &v, 8); break;
    default: break;
  }
}

ldmc_value ldmc_constant_scalar(ldmc_builder *b, ldmc_dtype dt, double v) {
  if (!b || b->status != LDMC_OK) return -1;
  if ((unsigned)dt >= LDMC_DTYPE_COUNT) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "constant: bad dtype %d", (int)dt);
  uint8_t buf[8] = {0};
  store_scalar(dt, v, buf);
  return ldmc_constant(b, dt, 0, NULL, buf);
}

ldmc_value ldmc_constant(ldmc_builder *b, ldmc_dtype dt, int rank, const int64_t *dims, const void *data) {
  if (!b || !dims_ok(b, rank, dims, "constant")) return -1;
  if ((unsigned)dt >= LDMC_DTYPE_COUNT) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "constant: bad dtype %d", (int)dt);
  ldmc_shape s = ldmc_shape_make(rank, dims);
  int64_t n;
  if (ldmc_shape_numel(&s, ldmc_dtype_size(dt), &n) != LDMC_OK) {
    ldmc_error_prefix("constant: ");
    return ldmc_builder_fail(b, LDMC_ERR_INVALID);
  }
  size_t nbytes = (size_t)n * ldmc_dtype_size(dt);
  if (nbytes && !data) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "constant: no data for %zu bytes", nbytes);
  ldmc_attrs a = {0};
  a.value.data = (void *)data;
  a.value.nbytes = nbytes;
  return ldmc_builder_node(b, LDMC_OP_CONSTANT, dt, &s, 0, NULL, &a);
}

ldmc_value ldmc_iota(ldmc_builder *b, ldmc_dtype dt, int rank, const int64_t *dims, int axis) {
  if (!b || !dims_ok(b, rank, dims, "iota")) return -1;
  ldmc_attrs a = {0};
  a.axis = axis;
  ldmc_shape s = ldmc_shape_make(rank, dims);
  return ldmc_builder_node(b, LDMC_OP_IOTA, dt, &s, 0, NULL, &a);
}

ldmc_value ldmc_rng(ldmc_builder *b, ldmc_op op, ldmc_dtype dt, int rank, const int64_t *dims, ldmc_value key) {
  if (!b || !dims_ok(b, rank, dims, "rng") || !ldmc_builder_ok(b, 1, &key)) return -1;
  if (op != LDMC_OP_RNG_UNIFORM && op != LDMC_OP_RNG_NORMAL)
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "ldmc_rng: op %s is not rng_uniform or rng_normal", ldmc_op_name(op));
  ldmc_shape s = ldmc_shape_make(rank, dims);
  return ldmc_builder_node(b, op, dt, &s, 1, &key, NULL);
}

static int g_shard_rank = 0, g_shard_ranks = 1;
void ldmc_batch_shard_set(int rank, int ranks) {
  g_shard_ranks = ranks > 1 ? ranks : 1;
  g_shard_rank = rank >= 0 && rank < g_shard_ranks ? rank : 0;
}
void ldmc_batch_shard_get(int *rank, int *ranks) {
  if (rank) *rank = g_shard_rank;
  if (ranks) *ranks = g_shard_ranks;
}

ldmc_value ldmc_rng_batch(ldmc_builder *b, ldmc_op op, ldmc_dtype dt, int rank, const int64_t *dims, ldmc_value key) {
  if (g_shard_ranks == 1 || rank < 1 || !dims) return ldmc_rng(b, op, dt, rank, dims, key);
  if (!dims_ok(b, rank, dims, "rng")) return -1;
  /* Philox element i depends only on (key, i): the global draw's rows are
   * the single-process rows */
  int64_t g[LDMC_MAX_RANK], start[LDMC_MAX_RANK] = {0}, limit[LDMC_MAX_RANK], stride[LDMC_MAX_RANK];
  for (int i = 0; i < rank; i++) g[i] = limit[i] = dims[i], stride[i] = 1;
  g[0] = dims[0] * g_shard_ranks;
  start[0] = dims[0] * g_shard_rank, limit[0] = start[0] + dims[0];
  return ldmc_slice(b, ldmc_rng(b, op, dt, rank, g, key), start, limit, stride);
}

/* ---- elementwise ---- */
ldmc_value ldmc_unary(ldmc_builder *b, ldmc_op op, ldmc_value x) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  return ldmc_builder_node(b, op, ldmc_value_dtype(b, x), NULL, 1, &x, NULL);
}

/* numpy broadcasting of two shapes into *out; false if incompatible. */
static bool broadcast_shapes(const ldmc_shape *x, const ldmc_shape *y, ldmc_shape *out) {
  int r = x->rank > y->rank ? x->rank : y->rank;
  out->rank = r;
  for (int i = 0; i < r; i++) {
    int xi = i - (r - x->rank), yi = i - (r - y->rank);
    int64_t dx = xi >= 0 ? x->dims[xi] : 1, dy = yi >= 0 ? y->dims[yi] : 1;
    if (dx != dy && dx != 1 && dy != 1) return false;
    out->dims[i] = dx == 1 ? dy : dx;
  }
  return true;
}

/* Broadcasts each operand to their common shape (numpy rules). */
static bool broadcast_all(ldmc_builder *b, const char *what, int n, ldmc_value *vs) {
  if (!ldmc_builder_ok(b, n, vs)) return false;
  ldmc_shape s = *ldmc_value_shape(b, vs[0]);
  for (int i = 1; i < n; i++) {
    ldmc_shape t;
    if (!broadcast_shapes(&s, ldmc_value_shape(b, vs[i]), &t)) {
      char a[160], c[160];
      ldmc_builder_failf(b, LDMC_ERR_INVALID, "%s: shapes %s and %s do not broadcast", what,
                         ldmc_shape_str(&s, a, sizeof a), ldmc_shape_str(ldmc_value_shape(b, vs[i]), c, sizeof c));
      return false;
    }
    s = t;
  }
  for (int i = 0; i < n; i++) {
    vs[i] = ldmc_broadcast_to(b, vs[i], s.rank, s.dims);
    if (vs[i] < 0) return false;
  }
  return true;
}

ldmc_value ldmc_binary(ldmc_builder *b, ldmc_op op, ldmc_value x, ldmc_value y) {
  ldmc_value vs[2] = {x, y};
  if (!broadcast_all(b, ldmc_op_name(op), 2, vs)) return -1;
  return ldmc_builder_node(b, op, ldmc_value_dtype(b, vs[0]), NULL, 2, vs, NULL);
}

ldmc_value ldmc_add(ldmc_builder *b, ldmc_value x, ldmc_value y) { return ldmc_binary(b, LDMC_OP_ADD, x, y); }
ldmc_value ldmc_sub(ldmc_builder *b, ldmc_value x, ldmc_value y) { return ldmc_binary(b, LDMC_OP_SUB, x, y); }
ldmc_value ldmc_mul(ldmc_builder *b, ldmc_value x, ldmc_value y) { return ldmc_binary(b, LDMC_OP_MUL, x, y); }
ldmc_value ldmc_div(ldmc_builder *b, ldmc_value x, ldmc_value y) { return ldmc_binary(b, LDMC_OP_DIV, x, y); }

ldmc_value ldmc_scale(ldmc_builder *b, ldmc_value x, double s) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  ldmc_value c = ldmc_constant_scalar(b, ldmc_value_dtype(b, x), s);
  return ldmc_mul(b, x, c);
}

ldmc_value ldmc_compare_values(ldmc_builder *b, ldmc_compare dir, ldmc_value x, ldmc_value y) {
  ldmc_value vs[2] = {x, y};
  if (!broadcast_all(b, "compare", 2, vs)) return -1;
  ldmc_attrs a = {0};
  a.direction = dir;
  return ldmc_builder_node(b, LDMC_OP_COMPARE, LDMC_PRED, NULL, 2, vs, &a);
}

ldmc_value ldmc_select(ldmc_builder *b, ldmc_value pred, ldmc_value x, ldmc_value y) {
  ldmc_value vs[3] = {pred, x, y};
  if (!broadcast_all(b, "select", 3, vs)) return -1;
  return ldmc_builder_node(b, LDMC_OP_SELECT, ldmc_value_dtype(b, vs[1]), NULL, 3, vs, NULL);
}

ldmc_value ldmc_convert(ldmc_builder *b, ldmc_value x, ldmc_dtype dt) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  return ldmc_builder_node(b, LDMC_OP_CONVERT, dt, ldmc_value_shape(b, x), 1, &x, NULL);
}

/* ---- shape ---- */
ldmc_value ldmc_reshape(ldmc_builder *b, ldmc_value x, int rank, const int64_t *dims) {
  if (!ldmc_builder_ok(b, 1, &x) || !dims_ok(b, rank, dims, "reshape")) return -1;
  const ldmc_shape *xs = ldmc_value_shape(b, x);
  int64_t n_in;
  if (ldmc_shape_numel(xs, 0, &n_in) != LDMC_OK) return ldmc_builder_fail(b, LDMC_ERR_INVALID);
  ldmc_shape s = ldmc_shape_make(rank, dims);
  int infer = -1;
  int64_t known = 1;
  char a[160], c[160];
  for (int i = 0; i < rank; i++) {
    if (s.dims[i] == -1) {
      if (infer >= 0) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reshape: more than one -1 in the target shape");
      infer = i;
    } else if (s.dims[i] < 0) {
      return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reshape: dim %d is %" PRId64, i, s.dims[i]);
    } else if (s.dims[i] != 0 && known > INT64_MAX / s.dims[i]) {
      return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reshape: target element count overflows");
    } else {
      known *= s.dims[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || n_in % known != 0) {
      s.dims[infer] = 0;
      return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reshape: cannot infer the -1 of %s from %s",
                                ldmc_shape_str(&s, a, sizeof a), ldmc_shape_str(xs, c, sizeof c));
    }
    s.dims[infer] = n_in / known;
    known = n_in;
  }
  if (known != n_in)
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "reshape: %s has %" PRId64 " elements, target %s has %" PRId64,
                              ldmc_shape_str(xs, c, sizeof c), n_in, ldmc_shape_str(&s, a, sizeof a), known);
  if (ldmc_shape_equal(xs, &s)) return x;
  return ldmc_builder_node(b, LDMC_OP_RESHAPE, ldmc_value_dtype(b, x), &s, 1, &x, NULL);
}

ldmc_value ldmc_transpose(ldmc_builder *b, ldmc_value x, const int64_t *perm) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  int r = ldmc_value_shape(b, x)->rank;
  if (r > 0 && !perm) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "transpose: no permutation given");
  bool identity = true;
  for (int i = 0; i < r; i++) identity &= perm[i] == i;
  if (identity) return x;
  ldmc_attrs a = {0};
  a.dims = ints_of(r, perm);
  return ldmc_builder_node(b, LDMC_OP_TRANSPOSE, ldmc_value_dtype(b, x), NULL, 1, &x, &a);
}

ldmc_value ldmc_broadcast_in_dim(ldmc_builder *b, ldmc_value x, int rank, const int64_t *dims, const int64_t *map) {
  if (!ldmc_builder_ok(b, 1, &x) || !dims_ok(b, rank, dims, "broadcast_in_dim")) return -1;
  if (ldmc_value_shape(b, x)->rank > 0 && !map) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "broadcast_in_dim: no dims map");
  ldmc_attrs a = {0};
  a.dims = ints_of(ldmc_value_shape(b, x)->rank, map);
  ldmc_shape s = ldmc_shape_make(rank, dims);
  return ldmc_builder_node(b, LDMC_OP_BROADCAST_IN_DIM, ldmc_value_dtype(b, x), &s, 1, &x, &a);
}

ldmc_value ldmc_broadcast_to(ldmc_builder *b, ldmc_value x, int rank, const int64_t *dims) {
  if (!ldmc_builder_ok(b, 1, &x) || !dims_ok(b, rank, dims, "broadcast")) return -1;
  const ldmc_shape *xs = ldmc_value_shape(b, x);
  ldmc_shape target = ldmc_shape_make(rank, dims);
  if (ldmc_shape_equal(xs, &target)) return x;
  char a[160], c[160];
  if (xs->rank > rank)
    return ldmc_builder_failf(b, LDMC_ERR_INVALID, "broadcast: cannot broadcast %s to lower rank %s",
                              ldmc_shape_str(xs, a, sizeof a), ldmc_shape_str(&target, c, sizeof c));
  int64_t map[LDMC_MAX_RANK];
  for (int i = 0; i < xs->rank; i++) {
    int j = rank - xs->rank + i;
    if (xs->dims[i] != 1 && xs->dims[i] != dims[j])
      return ldmc_builder_failf(b, LDMC_ERR_INVALID, "broadcast: cannot broadcast %s to %s (dim %d)",
                                ldmc_shape_str(xs, a, sizeof a), ldmc_shape_str(&target, c, sizeof c), i);
    map[i] = j;
  }
  return ldmc_broadcast_in_dim(b, x, rank, dims, map);
}

ldmc_value ldmc_slice(ldmc_builder *b, ldmc_value x, const int64_t *start, const int64_t *limit, const int64_t *stride) {
  if (!ldmc_builder_ok(b, 1, &x)) return -1;
  int r = ldmc_value_shape(b, x)->rank;
  if (r > 0 && (!start || !limit)) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "slice: start and limit are required");
  int64_t ones[LDMC_MAX_RANK];
  for (int i = 0; i < r; i++) ones[i] = 1;
  ldmc_attrs a = {0};
  a.start = ints_of(r, start);
  a.limit = ints_of(r, limit);
  a.stride = ints_of(r, stride ? stride : ones);
  return ldmc_builder_node(b, LDMC_OP_SLICE, ldmc_value_dtype(b, x), NULL, 1, &x, &a);
}

ldmc_value ldmc_concatenate(ldmc_builder *b, int n, const ldmc_value *xs, int axis) {
  if (!b || b->status != LDMC_OK) return -1;
  if (n < 1 || !xs) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "concatenate: needs at least one operand");
  if (!ldmc_builder_ok(b, n, xs)) return -1;
  int r = ldmc_value_shape(b, xs[0])->rank;
  ldmc_attrs a = {0};
  a.axis = axis < 0 ? axis + r : axis;
  return ldmc_builder_node(b, LDMC_OP_CONCATENATE, ldmc_value_dtype(b, xs[0]), NULL, n, xs, &a);
}

ldmc_value ldmc_pad(ldmc_builder *b, ldmc_value x, ldmc_value pad_value, const int64_t *low, const int64_t *high,
                    const int64_t *interior) {
  ldmc_value vs[2] = {x, pad_value};
  if (!ldmc_builder_ok(b, 2, vs)) return -1;
  int r = ldmc_value_shape(b, x)->rank;
  if (r > 0 && (!low || !high)) return ldmc_builder_failf(b, LDMC_ERR_INVALID, "pad: low and high are required");
  ldmc_attrs a = {0};
  a.low = ints_of(r, low);
  a.high = ints_of(r, high);
  a.interior = ints_of(r, interior); /* NULL: zeros */
  return ldmc_builder_node(b, LDMC_OP_PAD, ldmc_value_dtype(b, x), NULL, 2, vs, &a);
}

ldmc_value ldmc_gather(ldmc_builder *b, ldmc_value x, ldmc_value indices, int axis) {
  ldmc_value vs[2] = {x, indices};
  if (!ldmc_builder_ok(b, 2, vs)) return -1;
  ldmc_attrs a = {0};
  a.axis = axis < 0 ? axis + ldmc_value_shape(b, x)->rank : axis;
  return ldmc_builder_node(b, LDMC_OP_GATHER, ldmc_value_dtype(b, x), NULL, 2, vs, &a);
}
