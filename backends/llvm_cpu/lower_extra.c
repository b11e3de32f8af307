/* Lowering of the ops that used to run on the interpreter: gather,
 * scatter_add, rng_uniform / rng_normal (LC_K_XOP kernels), attention with no
 * keys (a NaN fill, as 0 / 0 in the interpreter), upsample_nearest of any rank
 * (one loop-nest copy per spatial dim when a single copy would need more than
 * LDMC_MAX_RANK dims), and integer dot_general (ldmc_lc_lower_idot). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

ldmc_status ldmc_lc_add_kernel_step(lc_plan *p, int32_t node, lc_kind kind, void *desc, size_t size, int64_t tiles,
                                    size_t scratch, double work, int nb, const lc_ref *refs) {
  lc_kernel *k = ldmc_lc_kernel_new(kind, desc, size, p->t);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  k->work = work;
  k->n_bufs = nb;
  k->n_tiles = tiles;
  k->scratch = (scratch + 63) / 64 * 64;
  if (tiles <= 0) {
    ldmc_lc_kernel_free(k);
    return LDMC_OK;
  }
  return ldmc_lc_plan_add_step(p, k, node, nb, refs);
}

ldmc_status ldmc_lc_add_fill(lc_plan *p, int32_t node, lc_ref dst, ldmc_dtype dt, int64_t numel, double v) {
  if (numel <= 0) return LDMC_OK;
  lc_ew_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->rank = 1;
  d->dims[0] = numel;
  d->out.dt = (uint8_t)dt;
  d->out.st[0] = 1;
  d->n_ins = 1;
  d->ins[0].op = LC_EW_CONST;
  d->ins[0].dt = (uint8_t)dt;
  d->ins[0].cval = v;
  int64_t tiles = ldmc_lc_ew_finish(d, p->t);
  lc_ref refs[1] = {dst};
  return ldmc_lc_add_kernel_step(p, node, LC_K_EW, d, sizeof *d, tiles, 0, (double)numel, 1, refs);
}

static void split_axis(const ldmc_shape *s, int ax, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < ax; i++) *outer *= s->dims[i];
  *len = s->dims[ax];
  for (int i = ax + 1; i < s->rank; i++) *inner *= s->dims[i];
}

static ldmc_status lower_gather(lc_plan *p, int32_t id) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id], *x = &g->nodes[n->operands[0]], *ix = &g->nodes[n->operands[1]];
  lc_ref out = ldmc_lc_new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_gather_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->sub = LC_X_GATHER, d->dt = (uint8_t)n->dtype, d->idt = (uint8_t)ix->dtype;
  split_axis(&x->shape, (int)n->attrs.axis, &d->outer, &d->len, &d->inner);
  d->ni = ldmc_lc_numel(&ix->shape);
  int64_t row = d->inner * (int64_t)ldmc_dtype_size(n->dtype), rows = d->outer * d->ni;
  d->per_tile = row > 0 && row < 65536 ? 65536 / row : 1;
  int64_t tiles = row > 0 ? (rows + d->per_tile - 1) / d->per_tile : 0;
  lc_ref refs[3] = {out, p->value[n->operands[0]], p->value[n->operands[1]]};
  return ldmc_lc_add_kernel_step(p, id, LC_K_XOP, d, sizeof *d, tiles, 0, (double)(rows * (row + 1)), 3, refs);
}

static ldmc_status lower_scatter(lc_plan *p, int32_t id) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id], *x = &g->nodes[n->operands[0]], *ix = &g->nodes[n->operands[1]];
  lc_ref out = ldmc_lc_new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_gather_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->sub = LC_X_SCATTER, d->dt = (uint8_t)n->dtype, d->idt = (uint8_t)ix->dtype;
  split_axis(&x->shape, (int)n->attrs.axis, &d->outer, &d->len, &d->inner);
  d->ni = ldmc_lc_numel(&ix->shape);
  bool fl = ldmc_dtype_is_float(n->dtype);
  /* floats: f64 accumulators [len][jr] per tile, about 256 KiB */
  int64_t jr = d->inner;
  if (fl && d->len * d->inner > 32768) jr = d->len >= 32768 ? 1 : 32768 / d->len;
  if (!fl && jr > 65536) jr = 65536;
  if (jr < 1) jr = 1;
  d->per_tile = jr;
  int64_t tiles = d->len > 0 && d->inner > 0 ? d->outer * ((d->inner + jr - 1) / jr) : 0;
  size_t scratch = fl ? (size_t)(d->len * jr) * 8 : 0;
  lc_ref refs[4] = {out, p->value[n->operands[0]], p->value[n->operands[1]], p->value[n->operands[2]]};
  double work = (double)d->outer * (double)(d->len + d->ni) * (double)d->inner + (double)tiles * (double)d->ni;
  return ldmc_lc_add_kernel_step(p, id, LC_K_XOP, d, sizeof *d, tiles, scratch, work, 4, refs);
}

static ldmc_status lower_rng(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id];
  lc_ref out = ldmc_lc_new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  lc_rng_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->sub = LC_X_RNG, d->dt = (uint8_t)n->dtype, d->normal = n->op == LDMC_OP_RNG_NORMAL;
  d->total = ldmc_lc_numel(&n->shape);
  d->per_tile = 4096;
  int64_t tiles = (d->total + d->per_tile - 1) / d->per_tile;
  lc_ref refs[2] = {out, p->value[n->operands[0]]};
  return ldmc_lc_add_kernel_step(p, id, LC_K_XOP, d, sizeof *d, tiles, 0, (double)d->total * (d->normal ? 200 : 40),
                                 2, refs);
}

/* upsample_nearest one spatial dim at a time: [outer, x_i, inner] ->
 * [outer, x_i, factor, inner], each pass a rank-4 copy */
static ldmc_status lower_upsample(lc_plan *p, int32_t id) {
  const ldmc_node *n = &p->g->nodes[id], *x = &p->g->nodes[n->operands[0]];
  int r = n->shape.rank;
  int64_t f = n->attrs.factor;
  ldmc_shape cur = x->shape;
  lc_ref src = p->value[n->operands[0]];
  for (int i = 2; i < r; i++) {
    ldmc_shape nx = cur;
    nx.dims[i] *= f;
    lc_ref dst;
    if (i == r - 1) {
      dst = ldmc_lc_new_out(p, id);
    } else {
      int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)ldmc_lc_numel(&nx) * ldmc_dtype_size(n->dtype));
      dst = (lc_ref){b, 0};
    }
    if (dst.buf < 0) return LDMC_ERR_NOMEM;
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < i; k++) outer *= cur.dims[k];
    for (int k = i + 1; k < r; k++) inner *= cur.dims[k];
    int64_t box[4] = {outer, cur.dims[i], f, inner};
    lc_stream sv, dv;
    memset(&sv, 0, sizeof sv);
    memset(&dv, 0, sizeof dv);
    sv.dt = dv.dt = (uint8_t)n->dtype;
    sv.st[0] = cur.dims[i] * inner, sv.st[1] = inner, sv.st[2] = 0, sv.st[3] = 1;
    dv.st[0] = cur.dims[i] * f * inner, dv.st[1] = f * inner, dv.st[2] = inner, dv.st[3] = 1;
    LDMC_TRY(ldmc_lc_add_copy(p, id, 4, box, dst, &dv, src, &sv));
    src = dst;
    cur = nx;
  }
  if (r <= 2) { /* no spatial dims: a copy */
    lc_ref dst = ldmc_lc_new_out(p, id);
    if (dst.buf < 0) return LDMC_ERR_NOMEM;
    int64_t total = ldmc_lc_numel(&n->shape);
    lc_stream sv, dv;
    memset(&sv, 0, sizeof sv);
    memset(&dv, 0, sizeof dv);
    sv.dt = dv.dt = (uint8_t)n->dtype;
    sv.st[0] = dv.st[0] = 1;
    return ldmc_lc_add_copy(p, id, 1, &total, dst, &dv, src, &sv);
  }
  return LDMC_OK;
}

ldmc_status ldmc_lc_lower_idot(lc_plan *p, int32_t id, lc_idot_desc *d, lc_ref out, lc_ref a, lc_ref b) {
  d->sub = LC_X_IDOT;
  lc_ref refs[3] = {out, a, b};
  int64_t tiles = d->N > 0 ? d->nb1 * d->nb2 * d->M : 0;
  double work = 2.0 * (double)d->nb1 * (double)d->nb2 * (double)d->M * (double)d->N * (double)(d->K + 1);
  if (d->K == 0) { /* empty contraction: zeros */
    free(d);
    const ldmc_node *n = &p->g->nodes[id];
    return ldmc_lc_add_fill(p, id, out, n->dtype, ldmc_lc_numel(&n->shape), 0.0);
  }
  return ldmc_lc_add_kernel_step(p, id, LC_K_XOP, d, sizeof *d, tiles, 0, work, 3, refs);
}

ldmc_status ldmc_lc_lower_extra(lc_plan *p, int32_t id, bool *handled) {
  const ldmc_node *n = &p->g->nodes[id];
  *handled = true;
  switch (n->op) {
    case LDMC_OP_GATHER: return lower_gather(p, id);
    case LDMC_OP_SCATTER_ADD: return lower_scatter(p, id);
    case LDMC_OP_RNG_UNIFORM:
    case LDMC_OP_RNG_NORMAL: return lower_rng(p, id);
    case LDMC_OP_UPSAMPLE_NEAREST: return lower_upsample(p, id);
    case LDMC_OP_ATTENTION: { /* no keys: softmax over nothing is 0 / 0 */
      lc_ref out = ldmc_lc_new_out(p, id);
      if (out.buf < 0) return LDMC_ERR_NOMEM;
      return ldmc_lc_add_fill(p, id, out, n->dtype, ldmc_lc_numel(&n->shape), NAN);
    }
    default: *handled = false; return LDMC_OK;
  }
}
