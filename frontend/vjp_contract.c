/* VJP rules: contract ops (see frontend/vjp.h).
 *
 * dot_general: each operand's cotangent is a dot_general of the result's
 * cotangent with the other operand (batch dims paired, the other operand's
 * free dims contracted), transposed back into the operand's dim order.
 *
 * convolution (the conv_general_dilated transpose rules of XLA/JAX), per
 * spatial dim with input size I, kernel K, output O, stride S, lhs dilation L,
 * rhs dilation D, pad low lo; I' = (I-1)L+1, K' = (K-1)D+1, O' = (O-1)S+1:
 *   input:  conv(ct, flip(W) with O/I swapped), stride L, lhs dilation S,
 *           rhs dilation D, pad (K'-1-lo, I'+K'-1-O'-(K'-1-lo))
 *   kernel: conv(X with N/C swapped, ct as the kernel, N contracted),
 *           stride D, lhs dilation L, rhs dilation S, pad (lo, O'+K'-1-I'-lo)
 * The high pads absorb the input rows no window reached (stride not dividing).
 * The IR has no reverse op, so the flip is a gather per spatial axis. */
#include <stdlib.h>

#include "frontend/builder_internal.h"
#include "frontend/vjp.h"

static int64_t numel(const ldmc_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

static ldmc_value zeros_like(ldmc_builder *b, ldmc_value x) {
  const ldmc_shape s = *ldmc_value_shape(b, x);
  ldmc_value z = ldmc_constant_scalar(b, ldmc_value_dtype(b, x), 0.0);
  return ldmc_broadcast_to(b, z, s.rank, s.dims);
}

/* A rule's result must have its operand's type; anything else is a bug here,
 * reported through the builder rather than as a wrong-shaped gradient. */
static ldmc_value expect_like(ldmc_builder *b, ldmc_value v, ldmc_value like, const char *what) {
  if (v < 0) return -1;
  const ldmc_shape *vs = ldmc_value_shape(b, v), *ls = ldmc_value_shape(b, like);
  if (ldmc_shape_equal(vs, ls) && ldmc_value_dtype(b, v) == ldmc_value_dtype(b, like)) return v;
  char a[160], c[160];
  return ldmc_builder_failf(b, LDMC_ERR_INTERNAL, "vjp %s: gradient %s does not match operand %s", what,
                            ldmc_shape_str(vs, a, sizeof a), ldmc_shape_str(ls, c, sizeof c));
}

/* ---- dot_general ------------------------------------------------------------ */

static bool listed(const ldmc_ints *v, int64_t d, int *at) {
  for (int i = 0; i < v->n; i++)
    if (v->v[i] == d) {
      if (at) *at = i;
      return true;
    }
  return false;
}

/* Cotangent of one operand ("self", rank sr, dims sb batch / sc contracted)
 * from ct and the other operand ("oth", rank orank, ob / oc). ct is [batch,
 * lhs free, rhs free]; oth_free_at is where oth's free dims start in ct. */
static ldmc_value dot_operand_grad(ldmc_builder *b, ldmc_value ct, ldmc_value oth, int sr, const ldmc_ints *sb,
                                   const ldmc_ints *sc, int orank, const ldmc_ints *ob, const ldmc_ints *oc,
                                   int oth_free_at) {
  ldmc_ints cb = {0}, ccn = {0}, obb = *ob, ofree = {0};
  for (int i = 0; i < sb->n; i++) cb.v[cb.n++] = i;
  for (int d = 0; d < orank; d++)
    if (!listed(ob, d, NULL) && !listed(oc, d, NULL)) {
      ccn.v[ccn.n++] = oth_free_at + ofree.n;
      ofree.v[ofree.n++] = d;
    }
  /* result: [batch, self free (ct's leftover dims, in order), oth's oc dims ascending] */
  ldmc_value r = ldmc_dot_general(b, ct, oth, &cb, &obb, &ccn, &ofree);
  if (r < 0) return -1;
  int nb = sb->n, nfree = sr - sb->n - sc->n, fi = 0;
  int64_t perm[LDMC_MAX_RANK];
  for (int d = 0; d < sr; d++) {
    int k;
    if (listed(sb, d, &k)) {
      perm[d] = k;
    } else if (listed(sc, d, &k)) {
      int rank_in_oc = 0; /* oc[k]'s place among oth's contracted dims sorted */
      for (int i = 0; i < oc->n; i++) rank_in_oc += oc->v[i] < oc->v[k];
      perm[d] = nb + nfree + rank_in_oc;
    } else {
      perm[d] = nb + fi++;
    }
  }
  return ldmc_transpose(b, r, perm);
}

static bool vjp_dot_general(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  const ldmc_attrs at = a->n->attrs;
  if (!ldmc_dtype_is_float(ldmc_value_dtype(b, a->x[0]))) return ldmc_builder_status(b) == LDMC_OK; /* ints: none */
  int lr = ldmc_value_shape(b, a->x[0])->rank, rr = ldmc_value_shape(b, a->x[1])->rank;
  int lfree = lr - at.lhs_batch.n - at.lhs_contract.n;
  if (a->need[0])
    dx[0] = expect_like(b,
                        dot_operand_grad(b, a->ct, a->x[1], lr, &at.lhs_batch, &at.lhs_contract, rr, &at.rhs_batch,
                                         &at.rhs_contract, at.lhs_batch.n + lfree),
                        a->x[0], "dot_general lhs");
  if (a->need[1])
    dx[1] = expect_like(b,
                        dot_operand_grad(b, a->ct, a->x[0], rr, &at.rhs_batch, &at.rhs_contract, lr, &at.lhs_batch,
                                         &at.lhs_contract, at.lhs_batch.n),
                        a->x[1], "dot_general rhs");
  return ldmc_builder_status(b) == LDMC_OK;
}

/* ---- convolution ------------------------------------------------------------- */

typedef struct conv_dims {
  int rank, ns;
  int64_t G;
  int64_t I[LDMC_MAX_RANK], K[LDMC_MAX_RANK], O[LDMC_MAX_RANK];
  int64_t Id[LDMC_MAX_RANK], Kd[LDMC_MAX_RANK], Od[LDMC_MAX_RANK]; /* dilated sizes I', K', O' */
} conv_dims;

static ldmc_attrs conv_attrs(int ns, int64_t groups) {
  ldmc_attrs c = {0};
  c.window_stride.n = c.pad_low.n = c.pad_high.n = c.lhs_dilation.n = c.rhs_dilation.n = ns;
  c.groups = groups;
  return c;
}

/* {v[1], v[0], v[2], ...}: the same tensor with its first two roles swapped */
static ldmc_ints swap01(const ldmc_ints *v) {
  ldmc_ints r = *v;
  r.v[0] = v->v[1];
  r.v[1] = v->v[0];
  return r;
}

static ldmc_ints identity(int rank) {
  ldmc_ints r = {.n = rank};
  for (int i = 0; i < rank; i++) r.v[i] = i;
  return r;
}

/* Reverses axis ax of x (size k) with a gather of k-1..0. */
static ldmc_value flip_axis(ldmc_builder *b, ldmc_value x, int ax, int64_t k) {
  if (k <= 1) return x;
  int32_t *idx = malloc((size_t)k * sizeof *idx);
  if (!idx) return ldmc_builder_failf(b, LDMC_ERR_NOMEM, "vjp convolution: out of memory");
  for (int64_t i = 0; i < k; i++) idx[i] = (int32_t)(k - 1 - i);
  ldmc_value c = ldmc_constant(b, LDMC_I32, 1, &k, idx);
  free(idx);
  return ldmc_gather(b, x, c, ax);
}

/* x, whose dims map = {A, B, spatial...} names, canonicalized and regrouped
 * for G feature groups with identity dims: split_a gives [G*B, A/G, sp...]
 * (index g*B+b, a) from A = G x A/G; else [B/G, G*A, sp...] (b, g*A+a) from
 * B = G x B/G. Spatial dims are merged so the 4-D detour fits any rank. */
static ldmc_value regroup(ldmc_builder *b, ldmc_value x, const ldmc_ints *map, const conv_dims *c, int64_t A,
                          int64_t B, bool split_a) {
  int64_t perm[LDMC_MAX_RANK], sp = 1, G = c->G;
  for (int i = 0; i < c->rank; i++) perm[i] = map->v[i];
  x = ldmc_transpose(b, x, perm); /* canonical [A, B, spatial...] */
  const ldmc_shape *xs = ldmc_value_shape(b, x);
  if (!xs) return -1;
  ldmc_shape s = *xs;
  for (int j = 0; j < c->ns; j++) sp *= s.dims[2 + j];
  int64_t four[4], p4[4], out[LDMC_MAX_RANK];
  if (split_a) { /* [G, A/G, B, sp] -> [G, B, A/G, sp] -> [G*B, A/G, sp...] */
    four[0] = G, four[1] = A / G, four[2] = B, four[3] = sp;
    p4[0] = 0, p4[1] = 2, p4[2] = 1, p4[3] = 3;
    out[0] = G * B, out[1] = A / G;
  } else { /* [A, G, B/G, sp] -> [B/G, G, A, sp] -> [B/G, G*A, sp...] */
    four[0] = A, four[1] = G, four[2] = B / G, four[3] = sp;
    p4[0] = 2, p4[1] = 1, p4[2] = 0, p4[3] = 3;
    out[0] = B / G, out[1] = G * A;
  }
  for (int j = 0; j < c->ns; j++) out[2 + j] = s.dims[2 + j];
  x = ldmc_reshape(b, x, 4, four);
  x = ldmc_transpose(b, x, p4);
  return ldmc_reshape(b, x, c->rank, out);
}

static ldmc_value conv_node(ldmc_builder *b, ldmc_value in, ldmc_value k, const ldmc_attrs *at) {
  ldmc_value vs[2] = {in, k};
  if (!ldmc_builder_ok(b, 2, vs)) return -1;
  return ldmc_builder_node(b, LDMC_OP_CONVOLUTION, ldmc_value_dtype(b, in), NULL, 2, vs, at);
}

static ldmc_value conv_input_grad(ldmc_builder *b, const ldmc_attrs *f, const conv_dims *c, ldmc_value ct,
                                  ldmc_value w) {
  const ldmc_ints *kd = &f->kernel_dims;
  for (int j = 0; j < c->ns; j++) w = flip_axis(b, w, (int)kd->v[2 + j], c->K[j]);
  ldmc_attrs t = conv_attrs(c->ns, c->G);
  if (c->G == 1) {
    t.kernel_dims = swap01(kd);
  } else { /* out feature g*Cg+ci, in feature Og: W[g*Og+oi, ci] */
    const ldmc_shape *ws = ldmc_value_shape(b, w);
    if (!ws) return -1;
    w = regroup(b, w, kd, c, ws->dims[kd->v[0]], ws->dims[kd->v[1]], true);
    t.kernel_dims = identity(c->rank);
  }
  t.input_dims = f->output_dims;
  t.output_dims = f->input_dims;
  for (int j = 0; j < c->ns; j++) {
    t.window_stride.v[j] = f->lhs_dilation.v[j];
    t.lhs_dilation.v[j] = f->window_stride.v[j];
    t.rhs_dilation.v[j] = f->rhs_dilation.v[j];
    t.pad_low.v[j] = c->Kd[j] - 1 - f->pad_low.v[j];
    t.pad_high.v[j] = c->Id[j] + c->Kd[j] - 1 - c->Od[j] - t.pad_low.v[j];
  }
  return conv_node(b, ct, w, &t);
}

static ldmc_value conv_kernel_grad(ldmc_builder *b, const ldmc_attrs *f, const conv_dims *c, ldmc_value ct,
                                   ldmc_value x) {
  ldmc_attrs t = conv_attrs(c->ns, c->G);
  if (c->G == 1) {
    t.input_dims = swap01(&f->input_dims);
  } else { /* batch Cg, features g*N+n, so group g sees X[n, g*Cg+ci] */
    const ldmc_shape *xs = ldmc_value_shape(b, x);
    if (!xs) return -1;
    x = regroup(b, x, &f->input_dims, c, xs->dims[f->input_dims.v[0]], xs->dims[f->input_dims.v[1]], false);
    t.input_dims = identity(c->rank);
  }
  t.kernel_dims = swap01(&f->output_dims);
  t.output_dims = swap01(&f->kernel_dims);
  for (int j = 0; j < c->ns; j++) {
    t.window_stride.v[j] = f->rhs_dilation.v[j];
    t.lhs_dilation.v[j] = f->lhs_dilation.v[j];
    t.rhs_dilation.v[j] = f->window_stride.v[j];
    t.pad_low.v[j] = f->pad_low.v[j];
    t.pad_high.v[j] = c->Od[j] + c->Kd[j] - 1 - c->Id[j] - f->pad_low.v[j];
  }
  return conv_node(b, x, ct, &t);
}

static int64_t dilate(int64_t n, int64_t d) { return n > 0 ? (n - 1) * d + 1 : 0; }

static bool vjp_convolution(const ldmc_vjp_args *a, ldmc_value *dx) {
  ldmc_builder *b = a->b;
  const ldmc_attrs f = a->n->attrs;
  const ldmc_shape *xs = ldmc_value_shape(b, a->x[0]), *ws = ldmc_value_shape(b, a->x[1]),
                   *ys = ldmc_value_shape(b, a->ct);
  if (!xs || !ws || !ys) return false;
  conv_dims c = {.rank = xs->rank, .ns = xs->rank - 2, .G = f.groups > 0 ? f.groups : 1};
  for (int j = 0; j < c.ns; j++) {
    c.I[j] = xs->dims[f.input_dims.v[2 + j]];
    c.K[j] = ws->dims[f.kernel_dims.v[2 + j]];
    c.O[j] = ys->dims[f.output_dims.v[2 + j]];
    c.Id[j] = dilate(c.I[j], f.lhs_dilation.v[j]);
    c.Kd[j] = dilate(c.K[j], f.rhs_dilation.v[j]);
    c.Od[j] = dilate(c.O[j], f.window_stride.v[j]);
  }
  /* an empty operand or result: nothing flows, and the formulas above need
   * nonempty sizes */
  bool empty = numel(xs) == 0 || numel(ws) == 0 || numel(ys) == 0;
  for (int i = 0; i < 2; i++) {
    if (!a->need[i]) continue;
    ldmc_value g = empty    ? zeros_like(b, a->x[i])
                   : i == 0 ? conv_input_grad(b, &f, &c, a->ct, a->x[1])
                            : conv_kernel_grad(b, &f, &c, a->ct, a->x[0]);
    dx[i] = expect_like(b, g, a->x[i], i == 0 ? "convolution input" : "convolution kernel");
  }
  return ldmc_builder_status(b) == LDMC_OK;
}

void ldmc_vjp_register_contract(ldmc_vjp_rule *table) {
  table[LDMC_OP_DOT_GENERAL] = vjp_dot_general;
  table[LDMC_OP_CONVOLUTION] = vjp_convolution;
}
