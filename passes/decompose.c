/* Composite ops rewritten as primitives (see decompose.h):
 *   silu(x)      = x * logistic(x)
 *   gelu(x)      = x * (erf(x * 1/sqrt2) + 1) * 0.5
 *   softmax(x)   = e / bcast(sum(e)),  e = exp(x - bcast(max(x)))   along axis
 *   group_norm   x -> [N, G, C/G * spatial], d = x - mean, y = d * rsqrt(mean(d*d) + eps),
 *                back to x's shape, then * gamma[c] + beta[c]
 *   layer_norm   the same over dims [axis, rank), gamma/beta over those dims
 *   attention    dot(softmax(dot(q, k^T) * scale), v) with the leading dims as batch
 *   attention_lse, attention_grad_q, attention_grad_kv (attention's backward; S = scale q k^T)
 *                lse = m + log sum exp(S - m), m = max S;  P = exp(S - lse),
 *                dS = scale P (ct v^T - delta);  dq = dS k;  concatenate(dS^T q, P^T ct)
 *   upsample     per spatial dim: reshape [P, S, 1, Q] -> broadcast [P, S, f, Q] -> reshape
 * Every node is added with ldmc_graph_add_checked, so the rewrite is type-checked. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/decompose.h"
#include "support/half.h"

typedef struct dctx {
  ldmc_graph *g;
  const char *scope;
  ldmc_dtype ct; /* computed in: f32, or f64 for f64 composites (never narrowed) */
  bool failed;
} dctx;

static int32_t emit(dctx *c, ldmc_op op, ldmc_dtype dt, const ldmc_shape *shape, int n, const int32_t *ops,
                    const ldmc_attrs *at) {
  if (c->failed) return -1;
  for (int i = 0; i < n; i++)
    if (ops[i] < 0) return -1;
  int32_t id = ldmc_graph_add_checked(c->g, op, dt, shape, n, ops, at, c->scope);
  if (id < 0) c->failed = true;
  return id;
}

static const ldmc_shape *shape_of(dctx *c, int32_t v) { return &c->g->nodes[v].shape; }
static ldmc_dtype dtype_of(dctx *c, int32_t v) { return c->g->nodes[v].dtype; }

static int32_t un(dctx *c, ldmc_op op, int32_t x) { return x < 0 ? -1 : emit(c, op, c->ct, NULL, 1, &x, NULL); }

static int32_t bin(dctx *c, ldmc_op op, int32_t x, int32_t y) {
  int32_t o[2] = {x, y};
  return emit(c, op, c->ct, NULL, 2, o, NULL);
}

static int32_t convert(dctx *c, int32_t x, ldmc_dtype dt) {
  if (x < 0) return -1;
  if (dtype_of(c, x) == dt) return x;
  return emit(c, LDMC_OP_CONVERT, dt, NULL, 1, &x, NULL);
}

static int32_t reshape(dctx *c, int32_t x, const ldmc_shape *s) {
  if (x < 0) return -1;
  if (ldmc_shape_equal(shape_of(c, x), s)) return x;
  return emit(c, LDMC_OP_RESHAPE, dtype_of(c, x), s, 1, &x, NULL);
}

/* broadcast_in_dim x to shape s, operand dim i -> result dim map[i] */
static int32_t bcast(dctx *c, int32_t x, const ldmc_shape *s, int n, const int64_t *map) {
  if (x < 0) return -1;
  ldmc_attrs at = {0};
  at.dims.n = n;
  for (int i = 0; i < n; i++) at.dims.v[i] = map[i];
  return emit(c, LDMC_OP_BROADCAST_IN_DIM, dtype_of(c, x), s, 1, &x, &at);
}

/* A scalar constant of dtype dt broadcast to s. */
static int32_t splat(dctx *c, ldmc_dtype dt, double v, const ldmc_shape *s) {
  uint8_t buf[8] = {0};
  switch (dt) {
    case LDMC_F32: { float f = (float)v; memcpy(buf, &f, 4); break; }
    case LDMC_BF16: { uint16_t h = ldmc_f32_to_bf16((float)v); memcpy(buf, &h, 2); break; }
    case LDMC_F16: { uint16_t h = ldmc_f32_to_f16((float)v); memcpy(buf, &h, 2); break; }
    case LDMC_I32: { int32_t i = (int32_t)v; memcpy(buf, &i, 4); break; }
    case LDMC_I64: { int64_t i = (int64_t)v; memcpy(buf, &i, 8); break; }
    case LDMC_F64: memcpy(buf, &v, 8); break;
    default: buf[0] = v != 0; break;
  }
  ldmc_attrs at = {0};
  at.value.data = buf;
  at.value.nbytes = ldmc_dtype_size(dt);
  ldmc_shape scalar = {0};
  int32_t k = emit(c, LDMC_OP_CONSTANT, dt, &scalar, 0, NULL, &at);
  return bcast(c, k, s, 0, NULL);
}

static int32_t reduce(dctx *c, ldmc_reduce_kind kind, int32_t x, int n, const int64_t *dims) {
  if (x < 0) return -1;
  ldmc_attrs at = {0};
  at.reduce = kind;
  at.dims.n = n;
  for (int i = 0; i < n; i++) at.dims.v[i] = dims[i];
  return emit(c, LDMC_OP_REDUCE, c->ct, NULL, 1, &x, &at);
}

/* Dims 0..rank-1 without the listed (sorted) ones: the map that broadcasts a
 * reduction's result back. */
static int kept_dims(int rank, int n, const int64_t *red, int64_t *out) {
  int k = 0;
  for (int d = 0, j = 0; d < rank; d++) {
    if (j < n && red[j] == d) {
      j++;
      continue;
    }
    out[k++] = d;
  }
  return k;
}

static int32_t softmax(dctx *c, int32_t x, int axis) {
  if (x < 0) return -1;
  ldmc_shape s = *shape_of(c, x);
  int64_t ax = axis, keep[LDMC_MAX_RANK];
  int nk = kept_dims(s.rank, 1, &ax, keep);
  int32_t m = bcast(c, reduce(c, LDMC_REDUCE_MAX, x, 1, &ax), &s, nk, keep);
  int32_t e = un(c, LDMC_OP_EXP, bin(c, LDMC_OP_SUB, x, m));
  int32_t sum = bcast(c, reduce(c, LDMC_REDUCE_SUM, e, 1, &ax), &s, nk, keep);
  return bin(c, LDMC_OP_DIV, e, sum);
}

/* (x - mean) * rsqrt(var + eps) over the sorted dims red of x (biased variance). */
static int32_t normalize(dctx *c, int32_t x, int n, const int64_t *red, double eps) {
  if (x < 0) return -1;
  ldmc_shape s = *shape_of(c, x);
  int64_t keep[LDMC_MAX_RANK], cnt = 1;
  for (int i = 0; i < n; i++) cnt *= s.dims[red[i]];
  int nk = kept_dims(s.rank, n, red, keep);
  int32_t sum = reduce(c, LDMC_REDUCE_SUM, x, n, red);
  if (sum < 0) return -1;
  ldmc_shape rs = *shape_of(c, sum);
  int32_t mean = bin(c, LDMC_OP_DIV, sum, splat(c, c->ct, (double)cnt, &rs));
  int32_t d = bin(c, LDMC_OP_SUB, x, bcast(c, mean, &s, nk, keep));
  int32_t var = bin(c, LDMC_OP_DIV, reduce(c, LDMC_REDUCE_SUM, bin(c, LDMC_OP_MUL, d, d), n, red),
                    splat(c, c->ct, (double)cnt, &rs));
  int32_t r = un(c, LDMC_OP_RSQRT, bin(c, LDMC_OP_ADD, var, splat(c, c->ct, eps, &rs)));
  return bin(c, LDMC_OP_MUL, d, bcast(c, r, &s, nk, keep));
}

/* y * gamma + beta, gamma/beta mapped onto dims map of y. */
static int32_t affine(dctx *c, int32_t y, int32_t gamma, int32_t beta, int n, const int64_t *map) {
  if (y < 0) return -1;
  ldmc_shape s = *shape_of(c, y);
  int32_t g = bcast(c, convert(c, gamma, c->ct), &s, n, map);
  int32_t b = bcast(c, convert(c, beta, c->ct), &s, n, map);
  return bin(c, LDMC_OP_ADD, bin(c, LDMC_OP_MUL, y, g), b);
}

static int32_t group_norm(dctx *c, const ldmc_node *n, const int32_t *ops) {
  int32_t x = convert(c, ops[0], c->ct);
  if (x < 0) return -1;
  ldmc_shape s = *shape_of(c, x);
  int64_t G = n->attrs.groups, K = s.dims[1] / (G > 0 ? G : 1);
  for (int i = 2; i < s.rank; i++) K *= s.dims[i];
  ldmc_shape gs = {.rank = 3, .dims = {s.dims[0], G, K}};
  int64_t red = 2, ch = 1;
  int32_t y = reshape(c, normalize(c, reshape(c, x, &gs), 1, &red, n->attrs.eps), &s);
  return affine(c, y, ops[1], ops[2], 1, &ch);
}

static int32_t layer_norm(dctx *c, const ldmc_node *n, const int32_t *ops) {
  int32_t x = convert(c, ops[0], c->ct);
  if (x < 0) return -1;
  int r = shape_of(c, x)->rank, ax = (int)n->attrs.axis, k = 0;
  int64_t red[LDMC_MAX_RANK];
  for (int d = ax; d < r; d++) red[k++] = d;
  return affine(c, normalize(c, x, k, red, n->attrs.eps), ops[1], ops[2], k, red);
}

static int32_t dot(dctx *c, int32_t l, int32_t r, int nb, int64_t lc, int64_t rc) {
  ldmc_attrs at = {0};
  at.lhs_batch.n = at.rhs_batch.n = nb;
  for (int i = 0; i < nb; i++) at.lhs_batch.v[i] = at.rhs_batch.v[i] = i;
  at.lhs_contract.n = at.rhs_contract.n = 1;
  at.lhs_contract.v[0] = lc;
  at.rhs_contract.v[0] = rc;
  int32_t o[2] = {l, r};
  return emit(c, LDMC_OP_DOT_GENERAL, c->ct, NULL, 2, o, &at);
}

/* scale q k^T over the last two dims, leading dims batched: [..., N, M] */
static int32_t scaled_scores(dctx *c, int32_t q, int32_t k, double scale) {
  if (q < 0 || k < 0) return -1;
  int r = shape_of(c, q)->rank;
  int32_t logits = dot(c, q, k, r - 2, r - 1, r - 1);
  if (logits < 0) return -1;
  const ldmc_shape ls = *shape_of(c, logits);
  return bin(c, LDMC_OP_MUL, logits, splat(c, c->ct, scale, &ls));
}

static int32_t attention(dctx *c, const ldmc_node *n, const int32_t *ops) {
  int32_t q = convert(c, ops[0], c->ct), k = convert(c, ops[1], c->ct), v = convert(c, ops[2], c->ct);
  if (q < 0 || k < 0 || v < 0) return -1;
  int r = shape_of(c, q)->rank;
  int32_t scaled = scaled_scores(c, q, k, n->attrs.scale); /* [..., N, M] */
  return dot(c, softmax(c, scaled, r - 1), v, r - 2, r - 1, r - 2); /* [..., N, E] */
}

/* a [..., N] row statistic broadcast over the keys of scores s [..., N, M] */
static int32_t per_row(dctx *c, int32_t x, int32_t s) {
  if (x < 0 || s < 0) return -1;
  const ldmc_shape ss = *shape_of(c, s);
  int64_t keep[LDMC_MAX_RANK], ax = ss.rank - 1;
  int nk = kept_dims(ss.rank, 1, &ax, keep);
  return bcast(c, x, &ss, nk, keep);
}

/* attention_lse: m + log sum exp(S - m), m = max S over the keys */
static int32_t attention_lse(dctx *c, const ldmc_node *n, const int32_t *ops) {
  int32_t s = scaled_scores(c, convert(c, ops[0], c->ct), convert(c, ops[1], c->ct), n->attrs.scale);
  if (s < 0) return -1;
  int64_t ax = shape_of(c, s)->rank - 1;
  int32_t m = reduce(c, LDMC_REDUCE_MAX, s, 1, &ax);
  int32_t sum = reduce(c, LDMC_REDUCE_SUM, un(c, LDMC_OP_EXP, bin(c, LDMC_OP_SUB, s, per_row(c, m, s))), 1, &ax);
  return bin(c, LDMC_OP_ADD, m, un(c, LDMC_OP_LOG, sum));
}

/* attention_grad_q / _kv: P = exp(S - lse), dS = scale P (ct v^T - delta);
 * dq = dS k; (dk | dv) = concatenate(dS^T q, P^T ct) */
static int32_t attention_grad(dctx *c, const ldmc_node *n, const int32_t *ops) {
  int32_t q = convert(c, ops[0], c->ct), k = convert(c, ops[1], c->ct), v = convert(c, ops[2], c->ct);
  int32_t ct = convert(c, ops[3], c->ct), s = scaled_scores(c, q, k, n->attrs.scale);
  if (s < 0 || v < 0 || ct < 0) return -1;
  const ldmc_shape ss = *shape_of(c, s);
  int r = ss.rank;
  int32_t p = un(c, LDMC_OP_EXP, bin(c, LDMC_OP_SUB, s, per_row(c, ops[4], s)));
  int32_t dp = dot(c, ct, v, r - 2, r - 1, r - 1); /* [..., N, M] */
  int32_t ds = bin(c, LDMC_OP_MUL, bin(c, LDMC_OP_MUL, p, bin(c, LDMC_OP_SUB, dp, per_row(c, ops[5], s))),
                   splat(c, c->ct, n->attrs.scale, &ss));
  if (n->op == LDMC_OP_ATTENTION_GRAD_Q) return dot(c, ds, k, r - 2, r - 1, r - 2); /* [..., N, D] */
  int32_t kv[2] = {dot(c, ds, q, r - 2, r - 2, r - 2), dot(c, p, ct, r - 2, r - 2, r - 2)}; /* [..., M, D|E] */
  if (kv[0] < 0 || kv[1] < 0) return -1;
  ldmc_attrs at = {0};
  at.axis = r - 1;
  return emit(c, LDMC_OP_CONCATENATE, c->ct, NULL, 2, kv, &at);
}

static int32_t upsample(dctx *c, const ldmc_node *n, int32_t x) {
  int64_t f = n->attrs.factor;
  ldmc_shape s = *shape_of(c, x);
  for (int d = 2; d < s.rank && f != 1; d++) {
    int64_t P = 1, Q = 1;
    for (int i = 0; i < d; i++) P *= s.dims[i];
    for (int i = d + 1; i < s.rank; i++) Q *= s.dims[i];
    ldmc_shape s4 = {.rank = 4, .dims = {P, s.dims[d], 1, Q}}, b4 = {.rank = 4, .dims = {P, s.dims[d], f, Q}};
    static const int64_t id4[4] = {0, 1, 2, 3};
    s.dims[d] *= f;
    x = reshape(c, bcast(c, reshape(c, x, &s4), &b4, 4, id4), &s);
    if (x < 0) return -1;
  }
  return x;
}

/* Emits the primitives for composite node n (operands already remapped);
 * returns the node holding its value. */
static int32_t lower(dctx *c, const ldmc_node *n, const int32_t *ops) {
  ldmc_dtype dt = n->dtype;
  int32_t x = ops[0], y = -1;
  switch (n->op) {
    case LDMC_OP_SILU:
      x = convert(c, x, c->ct);
      y = bin(c, LDMC_OP_MUL, x, un(c, LDMC_OP_LOGISTIC, x));
      break;
    case LDMC_OP_GELU: {
      x = convert(c, x, c->ct);
      if (x < 0) return -1;
      const ldmc_shape xs = *shape_of(c, x), *s = &xs; /* copy: emitting nodes may move the node array */
      int32_t e = un(c, LDMC_OP_ERF, bin(c, LDMC_OP_MUL, x, splat(c, c->ct, M_SQRT1_2, s)));
      y = bin(c, LDMC_OP_MUL, bin(c, LDMC_OP_MUL, x, bin(c, LDMC_OP_ADD, e, splat(c, c->ct, 1.0, s))),
              splat(c, c->ct, 0.5, s));
      break;
    }
    case LDMC_OP_SOFTMAX: y = softmax(c, convert(c, x, c->ct), (int)n->attrs.axis); break;
    case LDMC_OP_GROUP_NORM: y = group_norm(c, n, ops); break;
    case LDMC_OP_LAYER_NORM: y = layer_norm(c, n, ops); break;
    case LDMC_OP_ATTENTION: y = attention(c, n, ops); break;
    case LDMC_OP_ATTENTION_LSE: y = attention_lse(c, n, ops); break;
    case LDMC_OP_ATTENTION_GRAD_Q:
    case LDMC_OP_ATTENTION_GRAD_KV: y = attention_grad(c, n, ops); break;
    case LDMC_OP_UPSAMPLE_NEAREST: return upsample(c, n, x); /* pure data movement, any dtype */
    default:
      ldmc_error(LDMC_ERR_INTERNAL, "%s is not a composite", ldmc_op_name(n->op));
      return -1;
  }
  return convert(c, y, dt);
}

ldmc_status ldmc_decompose_composites(const ldmc_graph *in, uint64_t keep_ops_mask, ldmc_graph **out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "decompose: no output graph pointer");
  *out = NULL;
  if (!in) return ldmc_error(LDMC_ERR_INVALID, "decompose: no graph");
  ldmc_graph *g = ldmc_graph_new(in->name);
  int32_t *map = malloc((size_t)(in->n_nodes ? in->n_nodes : 1) * sizeof *map);
  int32_t ops_small[16], *ops = NULL;
  ldmc_status st = LDMC_OK;
  if (!g || !map) {
    st = ldmc_error(LDMC_ERR_NOMEM, "decompose: out of memory");
    goto fail;
  }
  for (int32_t i = 0; i < in->n_nodes; i++) {
    const ldmc_node *n = &in->nodes[i];
    if (n->n_operands < 0) {
      st = ldmc_error(LDMC_ERR_INVALID, "decompose: %%%d %s has %d operands", (int)i, ldmc_op_name(n->op),
                      n->n_operands);
      goto fail;
    }
    ops = n->n_operands <= 16 ? ops_small : malloc((size_t)n->n_operands * sizeof *ops);
    if (!ops) {
      st = ldmc_error(LDMC_ERR_NOMEM, "decompose: out of memory");
      goto fail;
    }
    for (int k = 0; k < n->n_operands; k++) {
      int32_t o = n->operands[k];
      if (o < 0 || o >= i) {
        st = ldmc_error(LDMC_ERR_INVALID, "decompose: %%%d %s: operand %d refers to %%%d, not an earlier node",
                        (int)i, ldmc_op_name(n->op), k, (int)o);
        goto fail;
      }
      ops[k] = map[o];
    }
    bool lowered = (unsigned)n->op < LDMC_OP_COUNT && (ldmc_op_table[n->op].flags & LDMC_OPF_COMPOSITE) &&
                   !((keep_ops_mask >> n->op) & 1u);
    if (lowered) {
      dctx c = {.g = g, .scope = n->scope, .ct = n->dtype == LDMC_F64 ? LDMC_F64 : LDMC_F32};
      map[i] = lower(&c, n, ops);
      if (map[i] >= 0 && (g->nodes[map[i]].dtype != n->dtype || !ldmc_shape_equal(&g->nodes[map[i]].shape, &n->shape))) {
        ldmc_error(LDMC_ERR_INTERNAL, "the decomposition changed the result type");
        map[i] = -1;
      }
    } else {
      map[i] = ldmc_graph_add(g, n->op, n->dtype, &n->shape, n->n_operands, ops, &n->attrs, n->scope);
    }
    if (ops != ops_small) free(ops);
    ops = NULL;
    if (map[i] < 0) {
      st = LDMC_ERR_INVALID;
      ldmc_error_prefix("decompose: %%%d %s: ", (int)i, ldmc_op_name(n->op));
      goto fail;
    }
  }
  for (int32_t k = 0; k < in->n_outputs; k++) {
    int32_t o = in->outputs[k];
    if (o < 0 || o >= in->n_nodes) {
      st = ldmc_error(LDMC_ERR_INVALID, "decompose: output '%s' refers to %%%d", in->output_names[k], (int)o);
      goto fail;
    }
    st = ldmc_graph_add_output(g, map[o], in->output_names[k]);
    if (st != LDMC_OK) goto fail;
  }
  free(map);
  *out = g;
  return LDMC_OK;
fail:
  if (ops != ops_small) free(ops);
  free(map);
  ldmc_graph_free(g);
  return st;
}
