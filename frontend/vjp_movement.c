/* VJP rules: data movement and reductions (see frontend/vjp.h).
 * Conventions (docs/autodiff.md): gather's cotangent goes to the clamped
 * index it read (the interpreter clamps), scatter_add's updates at skipped
 * (out-of-range) indices get 0, and reduce max/min splits ct equally among
 * the elements equal to the result (JAX's rule). */
#include "frontend/builder_internal.h"
#include "frontend/vjp.h"

static ldmc_value filled_like(ldmc_builder *b, ldmc_dtype dt, const ldmc_shape *s, double v) {
  ldmc_value c = ldmc_constant_scalar(b, dt, v);
  return s->rank == 0 ? c : ldmc_broadcast_in_dim(b, c, s->rank, s->dims, NULL);
}

static ldmc_value zeros_of(ldmc_builder *b, ldmc_value like) {
  return filled_like(b, ldmc_value_dtype(b, like), ldmc_value_shape(b, like), 0.0);
}

static bool has_zero_dim(const ldmc_shape *s) {
  for (int i = 0; i < s->rank; i++)
    if (s->dims[i] == 0) return true;
  return false;
}

/* Sums ct over the result dims x was broadcast along, then restores x's shape. */
static bool vjp_broadcast_in_dim(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  const ldmc_shape xs = *ldmc_value_shape(b, a->x[0]), *os = &a->n->shape;
  const ldmc_ints *map = &a->n->attrs.dims;
  bool keep[LDMC_MAX_RANK] = {false};
  for (int i = 0; i < map->n; i++) keep[map->v[i]] = xs.dims[i] == os->dims[map->v[i]];
  int64_t axes[LDMC_MAX_RANK];
  int k = 0;
  for (int j = 0; j < os->rank; j++)
    if (!keep[j]) axes[k++] = j;
  ldmc_value s = k ? ldmc_reduce(b, LDMC_REDUCE_SUM, a->ct, k, axes, false) : a->ct;
  dx[0] = ldmc_reshape(b, s, xs.rank, xs.dims);
  return dx[0] >= 0;
}

static bool vjp_reshape(const ldmc_vjp_args *a, ldmc_value *dx) {
  const ldmc_shape *xs = ldmc_value_shape(a->b, a->x[0]);
  dx[0] = ldmc_reshape(a->b, a->ct, xs->rank, xs->dims);
  return dx[0] >= 0;
}

static bool vjp_transpose(const ldmc_vjp_args *a, ldmc_value *dx) {
  const ldmc_ints *p = &a->n->attrs.dims;
  int64_t inv[LDMC_MAX_RANK];
  for (int i = 0; i < p->n; i++) inv[p->v[i]] = i;
  dx[0] = ldmc_transpose(a->b, a->ct, inv);
  return dx[0] >= 0;
}

/* ct back into x's positions: pad with the stride as interior padding. */
static bool vjp_slice(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  const ldmc_shape *xs = ldmc_value_shape(b, a->x[0]), *os = &a->n->shape;
  const ldmc_attrs *at = &a->n->attrs;
  if (has_zero_dim(os)) {
    dx[0] = zeros_of(b, a->x[0]);
    return dx[0] >= 0;
  }
  int64_t lo[LDMC_MAX_RANK], hi[LDMC_MAX_RANK], in[LDMC_MAX_RANK];
  for (int i = 0; i < xs->rank; i++) {
    int64_t st = at->stride.v[i], last = at->start.v[i] + (os->dims[i] - 1) * st;
    lo[i] = at->start.v[i];
    hi[i] = xs->dims[i] - 1 - last;
    in[i] = st - 1;
  }
  ldmc_value z = ldmc_constant_scalar(b, ldmc_value_dtype(b, a->ct), 0.0);
  dx[0] = ldmc_pad(b, a->ct, z, lo, hi, in);
  return dx[0] >= 0;
}

static bool vjp_concatenate(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  const ldmc_shape *os = &a->n->shape;
  int ax = (int)a->n->attrs.axis;
  int64_t start[LDMC_MAX_RANK] = {0}, limit[LDMC_MAX_RANK];
  for (int i = 0; i < os->rank; i++) limit[i] = os->dims[i];
  int64_t off = 0;
  for (int k = 0; k < a->n->n_operands; k++) {
    int64_t len = ldmc_value_shape(b, a->x[k])->dims[ax];
    if (a->need[k]) {
      start[ax] = off;
      limit[ax] = off + len;
      if ((dx[k] = ldmc_slice(b, a->ct, start, limit, NULL)) < 0) return false;
    }
    off += len;
  }
  return true;
}

/* x: uncrop ct (pad by the negative low/high), then slice x's positions out.
 * Pad value: sum of ct over the positions no x element lands on. */
static bool vjp_pad(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  const ldmc_attrs *at = &a->n->attrs;
  const ldmc_shape xs = *ldmc_value_shape(b, a->x[0]);
  ldmc_dtype dt = ldmc_value_dtype(b, a->ct);
  if (a->need[0]) {
    if (has_zero_dim(&xs)) {
      dx[0] = zeros_of(b, a->x[0]);
    } else {
      int64_t ulo[LDMC_MAX_RANK], uhi[LDMC_MAX_RANK], start[LDMC_MAX_RANK], limit[LDMC_MAX_RANK], step[LDMC_MAX_RANK];
      bool crop = false;
      for (int i = 0; i < xs.rank; i++) {
        ulo[i] = at->low.v[i] < 0 ? -at->low.v[i] : 0;
        uhi[i] = at->high.v[i] < 0 ? -at->high.v[i] : 0;
        crop |= ulo[i] || uhi[i];
        step[i] = at->interior.v[i] + 1;
        start[i] = at->low.v[i] > 0 ? at->low.v[i] : 0;
        limit[i] = start[i] + (xs.dims[i] - 1) * step[i] + 1;
      }
      ldmc_value c = a->ct;
      if (crop) c = ldmc_pad(b, c, ldmc_constant_scalar(b, dt, 0.0), ulo, uhi, NULL);
      dx[0] = ldmc_slice(b, c, start, limit, step);
    }
    if (dx[0] < 0) return false;
  }
  if (a->need[1]) {
    ldmc_value mask = ldmc_pad(b, zeros_of(b, a->x[0]), ldmc_constant_scalar(b, dt, 1.0), at->low.v, at->high.v,
                               at->interior.v);
    ldmc_value m = ldmc_mul(b, a->ct, mask);
    int64_t all[LDMC_MAX_RANK];
    for (int i = 0; i < a->n->shape.rank; i++) all[i] = i;
    dx[1] = a->n->shape.rank ? ldmc_reduce(b, LDMC_REDUCE_SUM, m, a->n->shape.rank, all, false) : m;
    if (dx[1] < 0) return false;
  }
  return true;
}

/* True when idx is a constant with every value in [0, len): no clamping or
 * masking needed. */
static bool const_in_range(ldmc_builder *b, ldmc_value idx, int64_t len) {
  const ldmc_node *n = &ldmc_builder_graph(b)->nodes[idx];
  if (n->op != LDMC_OP_CONSTANT) return false;
  ldmc_tensor t = {.dtype = n->dtype, .shape = n->shape, .data = n->attrs.value.data, .nbytes = n->attrs.value.nbytes};
  int64_t cnt;
  if (ldmc_shape_numel(&n->shape, 0, &cnt) != LDMC_OK) return false;
  for (int64_t i = 0; i < cnt; i++) {
    double v = ldmc_tensor_get(&t, i);
    if (v < 0 || v >= (double)len) return false;
  }
  return true;
}

/* idx clamped to [0, len - 1], as gather reads it. */
static ldmc_value clamp_index(ldmc_builder *b, ldmc_value idx, int64_t len) {
  ldmc_dtype dt = ldmc_value_dtype(b, idx);
  ldmc_value lo = ldmc_binary(b, LDMC_OP_MAX, idx, ldmc_constant_scalar(b, dt, 0.0));
  return ldmc_binary(b, LDMC_OP_MIN, lo, ldmc_constant_scalar(b, dt, (double)(len - 1)));
}

static ldmc_value scatter_add(ldmc_builder *b, ldmc_value x, ldmc_value idx, ldmc_value upd, int64_t axis) {
  ldmc_attrs at = {0};
  at.axis = axis;
  ldmc_value ops[3] = {x, idx, upd};
  return ldmc_builder_node(b, LDMC_OP_SCATTER_ADD, ldmc_value_dtype(b, x), NULL, 3, ops, &at);
}

static bool vjp_gather(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_value x = a->x[0], idx = a->x[1];
  int64_t ax = a->n->attrs.axis, len = ldmc_value_shape(b, x)->dims[ax];
  if (len == 0 || has_zero_dim(&a->n->shape)) {
    dx[0] = zeros_of(b, x);
  } else {
    if (!const_in_range(b, idx, len)) idx = clamp_index(b, idx, len);
    dx[0] = scatter_add(b, zeros_of(b, x), idx, a->ct, ax);
  }
  return dx[0] >= 0;
}

static bool vjp_scatter_add(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  ldmc_value idx = a->x[1], upd = a->x[2];
  int64_t ax = a->n->attrs.axis, len = a->n->shape.dims[ax];
  if (a->need[0]) dx[0] = a->ct;
  if (!a->need[2]) return true;
  const ldmc_shape *usp = ldmc_value_shape(b, upd);
  if (!usp) return false;
  const ldmc_shape us_copy = *usp, *us = &us_copy; /* a copy: adding nodes moves the graph's */
  if (len == 0 || has_zero_dim(us)) {
    dx[2] = zeros_of(b, upd);
    return dx[2] >= 0;
  }
  ldmc_value gth = ldmc_gather(b, a->ct, idx, (int)ax);
  if (!const_in_range(b, idx, len)) { /* updates at skipped indices added nothing */
    const ldmc_shape is_copy = *ldmc_value_shape(b, idx), *is = &is_copy;
    ldmc_value ok = ldmc_compare_values(b, LDMC_CMP_EQ, clamp_index(b, idx, len), idx);
    int64_t map[LDMC_MAX_RANK];
    for (int i = 0; i < is->rank; i++) map[i] = ax + i;
    ldmc_value okb = ldmc_broadcast_in_dim(b, ok, us->rank, us->dims, map);
    gth = ldmc_select(b, okb, gth, zeros_of(b, upd));
  }
  dx[2] = gth;
  return dx[2] >= 0;
}

static bool vjp_reduce(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  const ldmc_shape xs = *ldmc_value_shape(b, a->x[0]);
  const ldmc_ints *red = &a->n->attrs.dims;
  bool gone[LDMC_MAX_RANK] = {false};
  for (int i = 0; i < red->n; i++) gone[red->v[i]] = true;
  int64_t kept[LDMC_MAX_RANK];
  int k = 0;
  for (int i = 0; i < xs.rank; i++)
    if (!gone[i]) kept[k++] = i;
  if (a->n->attrs.reduce == LDMC_REDUCE_SUM) {
    dx[0] = ldmc_broadcast_in_dim(b, a->ct, xs.rank, xs.dims, kept);
    return dx[0] >= 0;
  }
  /* max/min: ct / (number of ties) to each element equal to the result */
  ldmc_dtype dt = ldmc_value_dtype(b, a->ct);
  ldmc_value yb = ldmc_broadcast_in_dim(b, a->y, xs.rank, xs.dims, kept);
  ldmc_value hit = ldmc_compare_values(b, LDMC_CMP_EQ, a->x[0], yb);
  ldmc_value zeros = filled_like(b, dt, &xs, 0.0);
  ldmc_value ones = ldmc_select(b, hit, filled_like(b, dt, &xs, 1.0), zeros);
  ldmc_value cnt = red->n ? ldmc_reduce(b, LDMC_REDUCE_SUM, ones, red->n, red->v, false) : ones;
  ldmc_value share = ldmc_broadcast_in_dim(b, ldmc_div(b, a->ct, cnt), xs.rank, xs.dims, kept);
  dx[0] = ldmc_select(b, hit, share, zeros);
  return dx[0] >= 0;
}

void ldmc_vjp_register_movement(ldmc_vjp_rule *table) {
  table[LDMC_OP_BROADCAST_IN_DIM] = vjp_broadcast_in_dim;
  table[LDMC_OP_RESHAPE] = vjp_reshape;
  table[LDMC_OP_TRANSPOSE] = vjp_transpose;
  table[LDMC_OP_SLICE] = vjp_slice;
  table[LDMC_OP_CONCATENATE] = vjp_concatenate;
  table[LDMC_OP_PAD] = vjp_pad;
  table[LDMC_OP_GATHER] = vjp_gather;
  table[LDMC_OP_SCATTER_ADD] = vjp_scatter_add;
  table[LDMC_OP_REDUCE] = vjp_reduce;
}
