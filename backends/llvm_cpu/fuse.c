/* Elementwise fusion. Elementwise ops and views (broadcast_in_dim, transpose,
 * slice, iota) are not computed where they appear: they stay pending, and the
 * first consumer that needs a buffer — a non-elementwise op, a graph output,
 * or an elementwise op with several uses — gets one loop-nest kernel whose
 * expression inlines the whole pending subgraph. Views compose as affine maps
 * of the kernel's index space, so a broadcast or transpose becomes the stride
 * pattern of a load; elementwise ops with one use are inlined, others are
 * materialized once and loaded. Until the pass pipeline's fusion plans exist,
 * this is the backend's own elementwise fusion. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

lc_ref ldmc_lc_new_out(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  int32_t k = p->kp && id < p->kp->n_nodes ? p->kp->kernel_of[id] : -1;
  int32_t pn = k >= 0 && p->kp->kernels[k].root == id ? ldmc_graph_param_node(p->g, p->kp->kernels[k].donated_to) : -1;
  if (pn >= 0) return p->value[id] = p->value[pn]; /* donated state: written in place */
  int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)ldmc_lc_numel(&n->shape) * ldmc_dtype_size(n->dtype));
  lc_ref r = {b, 0};
  if (b >= 0) p->value[id] = r;
  return r;
}

lc_stream ldmc_lc_dense(ldmc_dtype dt, const ldmc_shape *s) {
  lc_stream v;
  memset(&v, 0, sizeof v);
  v.dt = (uint8_t)dt;
  ldmc_lc_strides(s, v.st);
  return v;
}

/* Adds an EW step writing ref out from inputs ins[0..n_in). Takes d. */
static ldmc_status add_ew(lc_plan *p, int32_t id, lc_ew_desc *d, lc_ref out, const lc_ref *ins) {
  int64_t tiles = ldmc_lc_ew_finish(d, p->t);
  lc_ref refs[LC_MAX_BUFS];
  refs[0] = out;
  for (int i = 0; i < d->n_in; i++) refs[1 + i] = d->in[i].iota ? (lc_ref){-1, 0} : ins[i];
  int nb = 1 + d->n_in;
  lc_kernel *k = ldmc_lc_kernel_new(LC_K_EW, d, sizeof *d, p->t);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  k->n_bufs = nb;
  k->n_tiles = tiles;
  k->work = (double)d->n_ins;
  for (int i = 0; i < d->rank; i++) k->work *= (double)d->dims[i];
  if (tiles == 0) { /* nothing to compute */
    ldmc_lc_kernel_free(k);
    return LDMC_OK;
  }
  return ldmc_lc_plan_add_step(p, k, id, nb, refs);
}

static lc_ew_desc *ew_new(int rank, const int64_t *dims, lc_stream out) {
  lc_ew_desc *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->rank = rank;
  memcpy(d->dims, dims, (size_t)rank * sizeof *dims);
  d->out = out;
  return d;
}

static int ew_load(lc_ew_desc *d, lc_stream s) {
  d->in[d->n_in] = s;
  lc_ew_ins *in = &d->ins[d->n_ins];
  in->op = LC_EW_LOAD;
  in->dt = s.dt;
  in->a[0] = in->a[1] = in->a[2] = -1;
  in->arg = d->n_in++;
  return d->n_ins++;
}

static int ew_op(lc_ew_desc *d, int op, ldmc_dtype dt, int a, int b, int c, int32_t arg, double cval) {
  lc_ew_ins *in = &d->ins[d->n_ins];
  in->op = (int16_t)op;
  in->dt = (uint8_t)dt;
  in->a[0] = (int8_t)a, in->a[1] = (int8_t)b, in->a[2] = (int8_t)c;
  in->arg = arg;
  in->cval = cval;
  return d->n_ins++;
}

ldmc_status ldmc_lc_add_copy(lc_plan *p, int32_t node, int rank, const int64_t *dims, lc_ref dst, const lc_stream *dv,
                             lc_ref src, const lc_stream *sv) {
  lc_ew_desc *d = ew_new(rank, dims, *dv);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  ew_load(d, *sv);
  return add_ew(p, node, d, dst, &src);
}

/* ---- which nodes fuse ---- */
static bool is_view(ldmc_op op) {
  return op == LDMC_OP_BROADCAST_IN_DIM || op == LDMC_OP_TRANSPOSE || op == LDMC_OP_SLICE || op == LDMC_OP_IOTA;
}

/* a view op, or a gather reversing an axis (passes' ldmc_node_reverse_axis) */
static bool is_view_node(const lc_plan *p, int32_t id) {
  return is_view(p->g->nodes[id].op) || ldmc_node_reverse_axis(p->g, id) >= 0;
}

bool ldmc_lc_fusible(const lc_plan *p, int32_t id) {
  return is_view_node(p, id) || (ldmc_op_table[p->g->nodes[id].op].flags & LDMC_OPF_ELEMENTWISE);
}

/* ---- the expression builder ---- */
/* node index x_j = sum_d m[j][d] * i_d + b[j] over the kernel's box index i */
typedef struct affine {
  int64_t m[LDMC_MAX_RANK][LDMC_MAX_RANK];
  int64_t b[LDMC_MAX_RANK];
} affine;

typedef struct memo {
  int32_t node;
  uint64_t h;
  int ins;
} memo;

typedef struct builder {
  lc_plan *p;
  lc_ew_desc *d;
  lc_ref refs[LC_EW_MAX_IN];
  memo seen[LC_EW_MAX_INS];
  int n_seen;
  int32_t core; /* >= 0: a GEMM epilogue; core is the accumulator, and nothing is materialized */
  bool soft;    /* the epilogue is not expressible (not an error) */
} builder;

/* The map of the dense index of shape s over box dims[0..R) when the box
 * refines it (each dim of s a run of consecutive box dims); false if not. */
static bool canon_map(const ldmc_shape *s, int R, const int64_t *dims, affine *o) {
  memset(o, 0, sizeof *o);
  int k = R - 1;
  for (int j = s->rank - 1; j >= 0; j--) {
    int64_t want = s->dims[j], got = 1;
    while (got < want && k >= 0) {
      o->m[j][k] = got;
      got *= dims[k--];
    }
    if (got != want) return false;
  }
  for (; k >= 0; k--)
    if (dims[k] != 1) return false;
  return true;
}

/* The map of a reshape's operand x given the reshape's map a: the linear
 * index is shared, so each box dim must land inside one digit of x's
 * mixed-radix index without carries. False when that is not so. */
static bool reshape_map(const ldmc_shape *res, const ldmc_shape *x, const affine *a, int R, const int64_t *box,
                        affine *o) {
  int64_t rst[LDMC_MAX_RANK], xst[LDMC_MAX_RANK], c[LDMC_MAX_RANK] = {0}, b = 0, top[LDMC_MAX_RANK];
  ldmc_lc_strides(res, rst);
  ldmc_lc_strides(x, xst);
  for (int j = 0; j < res->rank; j++) {
    if (res->dims[j] == 1) continue;
    for (int k = 0; k < R; k++) c[k] += a->m[j][k] * rst[j];
    b += a->b[j] * rst[j];
  }
  memset(o, 0, sizeof *o);
  if (b < 0) return false;
  for (int q = 0; q < x->rank; q++) { /* digits of the offset */
    o->b[q] = x->dims[q] > 0 ? (b / xst[q]) % x->dims[q] : 0;
    top[q] = o->b[q];
  }
  for (int k = 0; k < R; k++) {
    if (box[k] == 1 || c[k] == 0) continue;
    if (c[k] < 0) return false;
    int q = -1;
    for (int t = 0; t < x->rank; t++)
      if (x->dims[t] > 1 && c[k] >= xst[t] && c[k] < xst[t] * x->dims[t]) q = t;
    if (q < 0 || c[k] % xst[q]) return false;
    o->m[q][k] = c[k] / xst[q];
    top[q] += o->m[q][k] * (box[k] - 1);
  }
  for (int q = 0; q < x->rank; q++)
    if (top[q] >= x->dims[q] && x->dims[q] > 0) return false;
  return true;
}

static uint64_t affine_hash(const affine *a, int rank, int box) {
  uint64_t h = 1469598103934665603ull;
  for (int j = 0; j < rank; j++) {
    for (int d = 0; d < box; d++) h = (h ^ (uint64_t)a->m[j][d]) * 1099511628211ull;
    h = (h ^ (uint64_t)a->b[j]) * 1099511628211ull;
  }
  return h;
}

static ldmc_status materialize(lc_plan *p, int32_t id);

/* The map of a view's operand, given the view's map a. */
static void view_map(const lc_plan *p, const ldmc_node *n, const affine *a, affine *o) {
  const ldmc_node *x = &p->g->nodes[n->operands[0]];
  const ldmc_attrs *at = &n->attrs;
  memset(o, 0, sizeof *o);
  int rev = n->op == LDMC_OP_GATHER ? ldmc_node_reverse_axis(p->g, (int32_t)(n - p->g->nodes)) : -1;
  for (int k = 0; k < x->shape.rank; k++) {
    switch (n->op) {
      case LDMC_OP_GATHER: /* a reversed axis: x_k = L - 1 - i_k */
        for (int q = 0; q < LDMC_MAX_RANK; q++) o->m[k][q] = k == rev ? -a->m[k][q] : a->m[k][q];
        o->b[k] = k == rev ? x->shape.dims[k] - 1 - a->b[k] : a->b[k];
        break;
      case LDMC_OP_BROADCAST_IN_DIM:
        if (x->shape.dims[k] != 1) memcpy(o->m[k], a->m[at->dims.v[k]], sizeof o->m[k]), o->b[k] = a->b[at->dims.v[k]];
        break;
      case LDMC_OP_TRANSPOSE: /* result dim i is operand dim perm[i] */
        for (int i = 0; i < x->shape.rank; i++)
          if (at->dims.v[i] == k) memcpy(o->m[k], a->m[i], sizeof o->m[k]), o->b[k] = a->b[i];
        break;
      default: /* slice */
        for (int q = 0; q < LDMC_MAX_RANK; q++) o->m[k][q] = a->m[k][q] * at->stride.v[k];
        o->b[k] = at->start.v[k] + a->b[k] * at->stride.v[k];
        break;
    }
  }
}

/* instruction index for node id seen through a, or -1 with an error */
static int expr(builder *bd, int32_t id, const affine *a) {
  lc_plan *p = bd->p;
  lc_ew_desc *d = bd->d;
  const ldmc_node *n = &p->g->nodes[id];
  int R = d->rank;
  uint64_t h = affine_hash(a, n->shape.rank, R);
  for (int i = 0; i < bd->n_seen; i++)
    if (bd->seen[i].node == id && bd->seen[i].h == h) return bd->seen[i].ins;
  if (bd->core >= 0) {
    if (id == bd->core) { /* the accumulator: only at its own element */
      affine c;
      bool same = canon_map(&n->shape, R, d->dims, &c);
      for (int j = 0; same && j < n->shape.rank; j++)
        same = n->shape.dims[j] == 1 || (!memcmp(c.m[j], a->m[j], sizeof c.m[j]) && a->b[j] == 0);
      if (!same || d->n_ins + 1 > LC_EW_MAX_INS) return bd->soft = true, -1;
      int r = ew_op(d, LC_EW_ACC, n->dtype, -1, -1, -1, 0, 0);
      if (bd->n_seen < LC_EW_MAX_INS) bd->seen[bd->n_seen++] = (memo){id, h, r};
      return r;
    }
    /* nothing is materialized (it might need the core): too large is not fusible */
    if (d->n_ins + 8 > LC_EW_MAX_INS || d->n_in + 3 > LC_EW_MAX_IN) return bd->soft = true, -1;
    bool imm = n->op == LDMC_OP_CONSTANT && ldmc_lc_numel(&n->shape) == 1 && n->dtype != LDMC_PRED &&
               n->dtype != LDMC_I64;
    if (!p->pending[id] && p->value[id].buf < 0 && !imm && n->op != LDMC_OP_RESHAPE) /* reshapes: below */
      return bd->soft = true, -1; /* not computed yet */
  }
  /* room for this node's subtree? if not, compute it separately and load it */
  if (p->pending[id] && (d->n_ins + 8 > LC_EW_MAX_INS || d->n_in + 3 > LC_EW_MAX_IN)) {
    if (materialize(p, id) != LDMC_OK) return -1;
  }
  if (d->n_ins + 4 > LC_EW_MAX_INS || d->n_in + 1 > LC_EW_MAX_IN) {
    ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %%%d: fused expression too large", (int)id);
    return -1;
  }
  int r = -1;
  int32_t vid = id; /* whose buffer a load reads */
  /* a reshape: pending, or in an epilogue not lowered yet (the kernel's member) */
  bool unlowered = bd->core >= 0 && p->value[id].buf < 0 && !p->done[id];
  if (n->op == LDMC_OP_RESHAPE && (p->pending[id] || unlowered)) {
    affine o;
    if (reshape_map(&n->shape, &p->g->nodes[n->operands[0]].shape, a, R, d->dims, &o)) {
      r = expr(bd, n->operands[0], &o);
      if (r >= 0 && bd->n_seen < LC_EW_MAX_INS) bd->seen[bd->n_seen++] = (memo){id, h, r};
      return r;
    }
    if (bd->core >= 0) return bd->soft = true, -1;
    /* not affine here: compute the operand and read its bytes in this shape */
    if (materialize(p, n->operands[0]) != LDMC_OK) return -1;
    vid = n->operands[0];
  }
  if (!p->pending[id] || vid != id) { /* a buffer: load through the map (a scalar constant is an immediate) */
    if (n->op == LDMC_OP_CONSTANT && ldmc_lc_numel(&n->shape) == 1 && n->dtype != LDMC_PRED && n->dtype != LDMC_I64) {
      ldmc_tensor t = {.dtype = n->dtype, .shape = n->shape, .data = n->attrs.value.data, .nbytes = n->attrs.value.nbytes};
      r = ew_op(d, LC_EW_CONST, n->dtype, -1, -1, -1, 0, ldmc_tensor_get(&t, 0));
    } else {
      int64_t st[LDMC_MAX_RANK];
      ldmc_lc_strides(&n->shape, st);
      lc_stream s;
      memset(&s, 0, sizeof s);
      s.dt = (uint8_t)n->dtype;
      for (int j = 0; j < n->shape.rank; j++) {
        if (n->shape.dims[j] == 1) continue;
        for (int k = 0; k < R; k++) s.st[k] += st[j] * a->m[j][k];
        s.off += st[j] * a->b[j];
      }
      bd->refs[d->n_in] = p->value[vid];
      r = ew_load(d, s);
    }
  } else if (n->op == LDMC_OP_IOTA) {
    lc_stream s;
    memset(&s, 0, sizeof s);
    s.dt = (uint8_t)n->dtype;
    s.iota = 1;
    int ax = (int)n->attrs.axis;
    for (int k = 0; k < R; k++) s.st[k] = a->m[ax][k];
    s.off = a->b[ax];
    bd->refs[d->n_in] = (lc_ref){-1, 0};
    r = ew_load(d, s);
  } else if (is_view_node(p, id)) {
    affine o;
    view_map(p, n, a, &o);
    r = expr(bd, n->operands[0], &o);
  } else { /* elementwise: operands share the node's index space */
    int ops[3] = {-1, -1, -1};
    for (int k = 0; k < n->n_operands && k < 3; k++)
      if ((ops[k] = expr(bd, n->operands[k], a)) < 0) return -1;
    if (d->n_ins + 1 > LC_EW_MAX_INS) {
      ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %%%d: fused expression too large", (int)id);
      return -1;
    }
    r = ew_op(d, n->op, n->dtype, ops[0], ops[1], ops[2], n->op == LDMC_OP_COMPARE ? (int32_t)n->attrs.direction : 0, 0);
  }
  if (r >= 0 && bd->n_seen < LC_EW_MAX_INS) bd->seen[bd->n_seen++] = (memo){id, h, r};
  return r;
}

/* Computes pending node id into its own buffer (one kernel for its subgraph). */
static ldmc_status materialize(lc_plan *p, int32_t id) {
  if (!p->pending[id]) return LDMC_OK;
  const ldmc_node *n = &p->g->nodes[id];
  builder *bd = calloc(1, sizeof *bd);
  if (!bd) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  bd->p = p;
  bd->core = -1;
  bd->d = ew_new(n->shape.rank, n->shape.dims, ldmc_lc_dense(n->dtype, &n->shape));
  if (!bd->d) {
    free(bd);
    return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  }
  affine a;
  memset(&a, 0, sizeof a);
  for (int j = 0; j < n->shape.rank; j++) a.m[j][j] = 1;
  p->pending[id] = 1; /* the root is computed here, not loaded */
  int r = expr(bd, id, &a);
  p->pending[id] = 0;
  ldmc_status st = LDMC_OK;
  if (r < 0) {
    st = LDMC_ERR_INTERNAL;
    free(bd->d);
  } else {
    lc_ref out = ldmc_lc_new_out(p, id);
    if (out.buf < 0) {
      free(bd->d);
      st = LDMC_ERR_NOMEM;
    } else {
      if (r != bd->d->n_ins - 1) /* the result must be the last instruction: copy it */
        ew_op(bd->d, LDMC_OP_CONVERT, n->dtype, r, -1, -1, 0, 0);
      st = add_ew(p, id, bd->d, out, bd->refs);
    }
  }
  free(bd);
  return st;
}

ldmc_status ldmc_lc_materialize(lc_plan *p, int32_t id) { return materialize(p, id); }

ldmc_status ldmc_lc_epilogue_expr(lc_plan *p, int32_t core, int32_t root, lc_ew_desc *d, lc_ref *refs, bool *ok) {
  *ok = false;
  const ldmc_node *n = &p->g->nodes[root];
  builder *bd = calloc(1, sizeof *bd);
  if (!bd) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  bd->p = p;
  bd->d = d;
  bd->core = core;
  affine a;
  if (canon_map(&n->shape, d->rank, d->dims, &a)) {
    uint8_t was = p->pending[root];
    p->pending[root] = 1;
    int r = expr(bd, root, &a);
    p->pending[root] = was;
    if (r >= 0) {
      if (r != d->n_ins - 1) { /* the result must be the last instruction */
        if (d->n_ins + 1 > LC_EW_MAX_INS) r = -1;
        else ew_op(d, LDMC_OP_CONVERT, n->dtype, r, -1, -1, 0, 0);
      }
      *ok = r >= 0;
      memcpy(refs, bd->refs, sizeof bd->refs);
    }
  }
  free(bd);
  return LDMC_OK;
}

bool ldmc_lc_strided_view(lc_plan *p, int32_t id, lc_ref *ref, int64_t *st) {
  const ldmc_node *root = &p->g->nodes[id];
  affine a;
  memset(&a, 0, sizeof a);
  for (int j = 0; j < root->shape.rank; j++) a.m[j][j] = 1;
  int32_t cur = id;
  while (p->pending[cur]) {
    const ldmc_node *n = &p->g->nodes[cur];
    affine o;
    if (n->op == LDMC_OP_RESHAPE) { /* when it is an affine map of the root's index */
      if (!reshape_map(&n->shape, &p->g->nodes[n->operands[0]].shape, &a, root->shape.rank, root->shape.dims, &o))
        return false;
    } else {
      if (!is_view_node(p, cur) || n->op == LDMC_OP_IOTA) return false;
      view_map(p, n, &a, &o);
    }
    a = o;
    cur = n->operands[0];
  }
  const ldmc_node *leaf = &p->g->nodes[cur];
  int64_t lst[LDMC_MAX_RANK], off = 0;
  ldmc_lc_strides(&leaf->shape, lst);
  for (int k = 0; k < root->shape.rank; k++) st[k] = 0;
  for (int j = 0; j < leaf->shape.rank; j++) {
    if (leaf->shape.dims[j] == 1) continue;
    for (int k = 0; k < root->shape.rank; k++) st[k] += lst[j] * a.m[j][k];
    off += lst[j] * a.b[j];
  }
  for (int k = 0; k < root->shape.rank; k++)
    if (st[k] < 0) return false; /* a reversed view: GEMM and attention operands are copied first */
  *ref = p->value[cur];
  ref->off += (size_t)off * ldmc_dtype_size(leaf->dtype);
  return ref->buf >= 0;
}

/* An elementwise op or view: stays pending (computed inside its consumers)
 * unless it is an elementwise op with several uses, which is computed once. */
ldmc_status ldmc_lc_lower_fusible(lc_plan *p, int32_t id) {
  p->pending[id] = 1;
  if (!is_view_node(p, id) && p->uses[id] > 1) return materialize(p, id);
  return LDMC_OK;
}
