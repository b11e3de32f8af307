/* Lowering of dot_general and convolution onto the GEMM kernel.
 *
 * dot_general: batch, free and contracting dims of each operand are merged
 * into (b1, b2, m, k) / (b1, b2, k, n) strides when the layout allows;
 * otherwise the operand is first copied into canonical order. The result,
 * [batch..., lhs free..., rhs free...], is exactly C[b][m][n].
 * convolution (2-D, or 1-D as height 1): C[image][group] = W[group] x
 * im2col(x[image][group]); the im2col matrix is built while packing B. A 1x1
 * stride-1 unpadded convolution reads the input as a plain matrix instead.
 * Non-f32 dtypes accumulate into an f32 buffer and convert at the end. */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

/* Merges dims list[0..n) of a tensor (dims, strides) into one (size, stride). */
static bool merge(const int64_t *dims, const int64_t *st, const int64_t *list, int n, int64_t *size, int64_t *stride) {
  int64_t sz = 1, s = 0;
  bool have = false;
  for (int i = n - 1; i >= 0; i--) {
    int64_t d = list[i];
    if (dims[d] == 1) continue;
    if (!have) {
      sz = dims[d], s = st[d], have = true;
      continue;
    }
    if (st[d] != s * sz) return false;
    sz *= dims[d];
  }
  *size = sz;
  *stride = have ? s : 0;
  return true;
}

typedef struct side {
  int nb, nf, nc;
  int64_t batch[LDMC_MAX_RANK], free_[LDMC_MAX_RANK], contract[LDMC_MAX_RANK];
} side;

static void classify(const ldmc_ints *batch, const ldmc_ints *contract, int rank, side *s) {
  memset(s, 0, sizeof *s);
  bool used[LDMC_MAX_RANK] = {0};
  for (int i = 0; i < batch->n; i++) s->batch[s->nb++] = batch->v[i], used[batch->v[i]] = true;
  for (int i = 0; i < contract->n; i++) s->contract[s->nc++] = contract->v[i], used[contract->v[i]] = true;
  for (int i = 0; i < rank; i++)
    if (!used[i]) s->free_[s->nf++] = i;
}

/* strides of operand (dims, st) as gemm views, split of the batch at sp */
static bool views(const ldmc_shape *sh, const int64_t *st, const side *s, int sp, bool rhs, int64_t *out4) {
  int64_t n1, n2, nf, nk;
  if (!merge(sh->dims, st, s->batch, sp, &n1, &out4[0])) return false;
  if (!merge(sh->dims, st, s->batch + sp, s->nb - sp, &n2, &out4[1])) return false;
  if (!merge(sh->dims, st, s->free_, s->nf, &nf, &out4[rhs ? 3 : 2])) return false;
  if (!merge(sh->dims, st, s->contract, s->nc, &nk, &out4[rhs ? 2 : 3])) return false;
  return true;
}

/* Copies operand x into dense order [batch..., first..., second...]; returns its new ref and shape. */
static ldmc_status canonical_copy(lc_plan *p, int32_t node, const ldmc_node *x, lc_ref xr, const int64_t *xst,
                                  const side *s, bool rhs, lc_ref *out, ldmc_shape *shape, side *ns) {
  int64_t perm[LDMC_MAX_RANK];
  int k = 0;
  for (int i = 0; i < s->nb; i++) perm[k++] = s->batch[i];
  const int64_t *a = rhs ? s->contract : s->free_, *b = rhs ? s->free_ : s->contract;
  int na = rhs ? s->nc : s->nf, nb = rhs ? s->nf : s->nc;
  for (int i = 0; i < na; i++) perm[k++] = a[i];
  for (int i = 0; i < nb; i++) perm[k++] = b[i];
  shape->rank = x->shape.rank;
  lc_stream sv, dv;
  memset(&sv, 0, sizeof sv);
  sv.dt = (uint8_t)x->dtype;
  for (int i = 0; i < k; i++) shape->dims[i] = x->shape.dims[perm[i]], sv.st[i] = xst[perm[i]];
  memset(&dv, 0, sizeof dv);
  dv.dt = sv.dt;
  ldmc_lc_strides(shape, dv.st);
  int32_t buf = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)ldmc_lc_numel(shape) * ldmc_dtype_size(x->dtype));
  if (buf < 0) return LDMC_ERR_NOMEM;
  *out = (lc_ref){buf, 0};
  LDMC_TRY(ldmc_lc_add_copy(p, node, k, shape->dims, *out, &dv, xr, &sv));
  memset(ns, 0, sizeof *ns);
  k = 0;
  for (int i = 0; i < s->nb; i++) ns->batch[ns->nb++] = k++;
  for (int i = 0; i < na; i++) *(rhs ? &ns->contract[ns->nc++] : &ns->free_[ns->nf++]) = k++;
  for (int i = 0; i < nb; i++) *(rhs ? &ns->free_[ns->nf++] : &ns->contract[ns->nc++]) = k++;
  return LDMC_OK;
}

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    int64_t t = a % b;
    a = b, b = t;
  }
  return a;
}

static ldmc_status add_step(lc_plan *p, int32_t id, lc_kind kind, void *desc, size_t size, int64_t tiles, size_t scratch,
                            int nb, const lc_ref *refs) {
  double work;
  if (kind == LC_K_GEMM) {
    const lc_gemm_desc *g = desc;
    work = 2.0 * (double)g->M * (double)g->N * (double)g->K * (double)(g->nb1 * g->nb2);
  } else {
    const lc_pack_desc *pk = desc;
    work = (double)(pk->bside ? pk->N : pk->M) * (double)pk->K * (double)(pk->n1 * pk->n2);
  }
  lc_kernel *k = ldmc_lc_kernel_new(kind, desc, size, p->t);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  k->work = work;
  k->n_bufs = nb, k->n_tiles = tiles, k->scratch = scratch;
  if (tiles <= 0) {
    ldmc_lc_kernel_free(k);
    return LDMC_OK;
  }
  return ldmc_lc_plan_add_step(p, k, id, nb, refs);
}

/* bf16 GEMM operands (vdpbf16ps) for tests and benchmarks without a compile option */
static bool env_bf16(void) {
  const char *e = getenv("LDMC_LLVM_CPU_BF16");
  return e && *e && strcmp(e, "0") != 0;
}

/* An operand prepack steps may read: a weight whose buffer holds weights
 * (parameters, constants, or what prepack steps computed from them). */
static bool prepackable(const lc_plan *p, int32_t node, lc_ref r) {
  if (node < 0 || r.buf < 0 || !ldmc_lc_is_weight(p, node)) return false;
  lc_buf_kind k = p->bufs[r.buf].kind;
  return k == LC_BUF_INPUT || k == LC_BUF_CONST || k == LC_BUF_PERSIST;
}

/* Appends a pack step writing a new buffer of `bytes`; with pre, a prepack step
 * into a persistent buffer (run when the weights are bound). *out: its buffer. */
static ldmc_status add_pack(lc_plan *p, int32_t id, lc_pack_desc *pk, int64_t tiles, size_t bytes, lc_ref src, bool pre,
                            lc_ref *out) {
  bool saved = p->prepack_mode;
  p->prepack_mode = saved || pre; /* buffers persistent, steps prepack */
  int32_t buf = ldmc_lc_plan_new_buf(p, pre ? LC_BUF_PERSIST : LC_BUF_ARENA, bytes);
  ldmc_status st = LDMC_ERR_NOMEM;
  if (buf < 0) free(pk);
  else {
    *out = (lc_ref){buf, 0};
    lc_ref refs[2] = {*out, src};
    st = add_step(p, id, LC_K_PACK, pk, sizeof *pk, tiles, 0, 2, refs);
  }
  p->prepack_mode = saved;
  return st;
}

/* Finishes d (A access, tiling) and appends the pack / gemm / convert steps.
 * Takes d. a_ref, b_ref: the operands (a_node, b_node: their nodes, -1 for
 * none); out: the node's output ref. With bf16 (compile option or
 * LDMC_LLVM_CPU_BF16) on an avx512_bf16 host, A and B are packed as bf16 pairs.
 * Weight operands are packed once, by prepack steps: A into its panels, B
 * (not a convolution input) into whole-matrix panels the GEMM reads in place. */
static ldmc_status emit_gemm_steps(lc_plan *p, int32_t id, lc_gemm_desc *d, lc_ref a_ref, lc_ref b_ref, int32_t a_node,
                                   int32_t b_node) {
  const lc_target *t = p->t;
  const ldmc_node *n = &p->g->nodes[id];
  ldmc_status st;
  bool bf16 = (p->bf16 || env_bf16()) && t->avx512bf16 && t->W == 16;
  d->bf16 = bf16;
  int64_t Kp = bf16 ? (d->K + 1) & ~(int64_t)1 : d->K;
  size_t esz = bf16 ? 2 : 4;
  d->mr = t->mr, d->nr = t->nr, d->kc = t->kc;
  int64_t ncp = (d->N + t->nr - 1) / t->nr * t->nr;
  d->nc = (int)(ncp < t->nc ? ncp : t->nc);
  /* Tile (mc rows, nc columns): the whole of M and nc columns, split until
   * there are 4 tiles per thread. Splitting rows repacks B once more per row
   * block (a convolution's im2col, an activation; prepacked B costs nothing);
   * splitting columns reads A once more, which is cheap unless A streams from
   * memory. Packing costs about twice a read, so columns are halved while
   * mc < 2 nc (down to 4 panels), then rows. */
  int64_t mcp = (d->M + d->mr - 1) / d->mr * d->mr, want = 4 * (int64_t)(p->threads > 0 ? p->threads : 1);
  bool b_pre = !d->conv && d->K > 0 && prepackable(p, b_node, b_ref);
  bool a_big = (double)d->M * (double)d->K * (double)esz > 8e6;
  int64_t nb12 = d->nb1 * d->nb2;
  d->mc = mcp;
  while (nb12 * ((d->M + d->mc - 1) / d->mc) * ((d->N + d->nc - 1) / d->nc) < want) {
    bool can_n = !b_pre && d->nc > 4 * d->nr, can_m = d->mc > 4 * d->mr;
    if (can_n && (!can_m || (!a_big && d->mc < 2 * (int64_t)d->nc)))
      d->nc = (int)((d->nc / 2 + d->nr - 1) / d->nr * d->nr);
    else if (can_m)
      d->mc = (d->mc / 2 + d->mr - 1) / d->mr * d->mr;
    else
      break;
  }
  if (d->mc > 64 * d->mr) d->mc = 64 * d->mr; /* bound B repacking vs A reuse */
  /* A in place when it is contiguous f32 along k without cache-set aliasing of rows */
  bool direct = !bf16 && d->dt == LDMC_F32 && (d->a_st[3] == 1 || d->K == 1) && gcd64(d->a_st[2] * 4, 4096) < 2048;
  if (d->K == 1) d->a_st[3] = 1;
  lc_ref pa = a_ref;
  if (!direct) {
    lc_pack_desc *pk = calloc(1, sizeof *pk);
    if (!pk) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    pk->dt = d->dt, pk->M = d->M, pk->K = d->K, pk->mr = d->mr, pk->bf16 = bf16;
    memcpy(pk->a_st, d->a_st, sizeof pk->a_st);
    pk->n1 = d->a_st[0] ? d->nb1 : 1;
    pk->n2 = d->a_st[1] ? d->nb2 : 1;
    int64_t Mp = mcp, panel = Mp * Kp, n12 = pk->n1 * pk->n2;
    d->a_pb[0] = d->a_st[0] ? pk->n2 * panel : 0;
    d->a_pb[1] = d->a_st[1] ? panel : 0;
    int64_t tiles = n12 * (Mp / d->mr);
    if ((st = add_pack(p, id, pk, d->K ? tiles : 0, (size_t)(n12 * panel) * esz, a_ref, prepackable(p, a_node, a_ref),
                       &pa)) != LDMC_OK) {
      free(d);
      return st;
    }
    d->a_packed = 1;
    memset(d->a_st, 0, sizeof d->a_st);
  }
  if (b_pre) { /* B: whole-matrix panels, packed once */
    lc_pack_desc *pk = calloc(1, sizeof *pk);
    if (!pk) {
      free(d);
      return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    }
    pk->dt = d->dt, pk->bside = 1, pk->bf16 = bf16, pk->K = d->K, pk->N = d->N, pk->nr = d->nr, pk->kc = d->kc;
    memcpy(pk->a_st, d->b_st, sizeof pk->a_st);
    pk->n1 = d->b_st[0] ? d->nb1 : 1;
    pk->n2 = d->b_st[1] ? d->nb2 : 1;
    int64_t Np = (d->N + d->nr - 1) / d->nr, per = Kp * Np * d->nr, n12 = pk->n1 * pk->n2;
    d->b_pb[0] = d->b_st[0] ? pk->n2 * per : 0;
    d->b_pb[1] = d->b_st[1] ? per : 0;
    int64_t tiles = n12 * ((d->K + d->kc - 1) / d->kc) * Np;
    if ((st = add_pack(p, id, pk, tiles, (size_t)(n12 * per) * esz, b_ref, true, &b_ref)) != LDMC_OK) {
      free(d);
      return st;
    }
    d->b_packed = 1;
    memset(d->b_st, 0, sizeof d->b_st);
  }
  /* C: the output itself for f32, else an f32 buffer converted afterwards */
  int64_t total = d->nb1 * d->nb2 * d->M * d->N;
  bool f32 = n->dtype == LDMC_F32;
  int32_t cbuf = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)total * (f32 ? ldmc_dtype_size(n->dtype) : 4));
  if (cbuf < 0) {
    free(d);
    return LDMC_ERR_NOMEM;
  }
  lc_ref c = {cbuf, 0};
  size_t scratch = ((size_t)d->kc * (size_t)((d->nc + d->nr - 1) / d->nr * d->nr) * 4 + 63) / 64 * 64 +
                   ((size_t)d->kc * (size_t)d->mr * 4 + 63) / 64 * 64;
  int64_t tiles = d->nb1 * d->nb2 * ((d->M + d->mc - 1) / d->mc) * ((d->N + d->nc - 1) / d->nc);
  if (p->epi && d->K > 0) return ldmc_lc_gemm_epilogue_step(p, id, d, c, pa, b_ref, scratch, tiles);
  lc_ref refs[3] = {c, pa, b_ref};
  if (d->K == 0) { /* empty contraction: zeros */
    free(d);
    lc_stream zero, dv;
    memset(&zero, 0, sizeof zero);
    zero.dt = LDMC_F32;
    zero.iota = 1; /* index * 0 = 0 */
    memset(&dv, 0, sizeof dv);
    dv.dt = LDMC_F32;
    dv.st[0] = 1;
    LDMC_TRY(ldmc_lc_add_copy(p, id, 1, &total, c, &dv, (lc_ref){-1, 0}, &zero));
  } else {
    LDMC_TRY(add_step(p, id, LC_K_GEMM, d, sizeof *d, tiles, scratch, 3, refs));
  }
  if (f32) {
    p->value[id] = c;
    return LDMC_OK;
  }
  int32_t ob = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)total * ldmc_dtype_size(n->dtype));
  if (ob < 0) return LDMC_ERR_NOMEM;
  p->value[id] = (lc_ref){ob, 0};
  lc_stream sv, dv;
  memset(&sv, 0, sizeof sv);
  memset(&dv, 0, sizeof dv);
  sv.dt = LDMC_F32, sv.st[0] = 1;
  dv.dt = (uint8_t)n->dtype, dv.st[0] = 1;
  return ldmc_lc_add_copy(p, id, 1, &total, p->value[id], &dv, c, &sv);
}

static ldmc_status lower_dot(lc_plan *p, int32_t id, bool *handled) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id];
  const ldmc_node *l = &g->nodes[n->operands[0]], *r = &g->nodes[n->operands[1]];
  if (!ldmc_dtype_is_float(n->dtype)) {
    *handled = false;
    return LDMC_OK;
  }
  side ls, rs;
  classify(&n->attrs.lhs_batch, &n->attrs.lhs_contract, l->shape.rank, &ls);
  classify(&n->attrs.rhs_batch, &n->attrs.rhs_contract, r->shape.rank, &rs);
  ldmc_shape lsh = l->shape, rsh = r->shape;
  /* operands as strided views: a transpose or broadcast feeding the product costs nothing */
  lc_ref lr, rr;
  int64_t lst[LDMC_MAX_RANK], rst[LDMC_MAX_RANK];
  for (int side_i = 0; side_i < 2; side_i++) {
    int32_t op = n->operands[side_i];
    lc_ref *ref = side_i ? &rr : &lr;
    int64_t *st = side_i ? rst : lst;
    if (!ldmc_lc_strided_view(p, op, ref, st)) {
      LDMC_TRY(ldmc_lc_materialize(p, op));
      *ref = p->value[op];
      ldmc_lc_strides(&g->nodes[op].shape, st);
    }
  }
  int64_t av[4], bv[4];
  int sp = -1;
  for (int attempt = 0; attempt < 3 && sp < 0; attempt++) {
    for (int s = ls.nb; s >= 0 && sp < 0; s--) {
      bool la = views(&lsh, lst, &ls, s, false, av), rb = views(&rsh, rst, &rs, s, true, bv);
      if (la && rb) sp = s;
    }
    if (sp >= 0) break;
    /* copy the operand(s) that do not merge into canonical order */
    bool lok = false, rok = false;
    for (int s = ls.nb; s >= 0; s--) lok |= views(&lsh, lst, &ls, s, false, av);
    for (int s = rs.nb; s >= 0; s--) rok |= views(&rsh, rst, &rs, s, true, bv);
    if (!lok || attempt == 1) {
      side ns;
      LDMC_TRY(canonical_copy(p, id, l, lr, lst, &ls, false, &lr, &lsh, &ns));
      ls = ns;
      ldmc_lc_strides(&lsh, lst);
    }
    if (!rok || attempt == 1) {
      side ns;
      LDMC_TRY(canonical_copy(p, id, r, rr, rst, &rs, true, &rr, &rsh, &ns));
      rs = ns;
      ldmc_lc_strides(&rsh, rst);
    }
  }
  if (sp < 0) return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %%%d dot_general: no GEMM view", (int)id);
  lc_gemm_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->dt = (uint8_t)n->dtype;
  int64_t n1 = 1, n2 = 1, M = 1, N = 1, K = 1;
  for (int i = 0; i < sp; i++) n1 *= lsh.dims[ls.batch[i]];
  for (int i = sp; i < ls.nb; i++) n2 *= lsh.dims[ls.batch[i]];
  for (int i = 0; i < ls.nf; i++) M *= lsh.dims[ls.free_[i]];
  for (int i = 0; i < rs.nf; i++) N *= rsh.dims[rs.free_[i]];
  for (int i = 0; i < ls.nc; i++) K *= lsh.dims[ls.contract[i]];
  d->M = M, d->N = N, d->K = K, d->nb1 = n1, d->nb2 = n2;
  memcpy(d->a_st, av, sizeof av);
  memcpy(d->b_st, bv, sizeof bv);
  d->c_st[0] = n2 * M * N, d->c_st[1] = M * N, d->c_st[2] = N;
  if (M * N * n1 * n2 == 0) { /* empty result */
    free(d);
    int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, 0);
    if (b < 0) return LDMC_ERR_NOMEM;
    p->value[id] = (lc_ref){b, 0};
    return LDMC_OK;
  }
  return emit_gemm_steps(p, id, d, lr, rr, n->operands[0], n->operands[1]);
}

static ldmc_status lower_conv(lc_plan *p, int32_t id, bool *handled) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id];
  const ldmc_attrs *at = &n->attrs;
  const ldmc_node *x = &g->nodes[n->operands[0]], *w = &g->nodes[n->operands[1]];
  int rank = n->shape.rank, ns = rank - 2;
  *handled = false;
  if (ns < 1 || ns > 2) return LDMC_OK;
  for (int i = 0; i < ns; i++)
    if (at->lhs_dilation.v[i] != 1) return LDMC_OK;
  int64_t xs[LDMC_MAX_RANK], ws[LDMC_MAX_RANK], os[LDMC_MAX_RANK];
  ldmc_lc_strides(&x->shape, xs);
  ldmc_lc_strides(&w->shape, ws);
  ldmc_lc_strides(&n->shape, os);
  const int64_t *id_ = at->input_dims.v, *kd = at->kernel_dims.v, *od = at->output_dims.v;
  /* spatial dims as (row, col); 1-D is a single row */
  int64_t H = 1, Wd = x->shape.dims[id_[ns + 1]], OH = 1, OW = n->shape.dims[od[ns + 1]];
  int64_t kh = 1, kw = w->shape.dims[kd[ns + 1]];
  int64_t sh = 1, sw = at->window_stride.v[ns - 1], ph = 0, pw = at->pad_low.v[ns - 1];
  int64_t dh = 1, dw = at->rhs_dilation.v[ns - 1];
  int64_t xrow = 0, wrow = 0, orow = 0;
  if (ns == 2) {
    H = x->shape.dims[id_[2]], OH = n->shape.dims[od[2]], kh = w->shape.dims[kd[2]];
    sh = at->window_stride.v[0], ph = at->pad_low.v[0], dh = at->rhs_dilation.v[0];
    xrow = xs[id_[2]], wrow = ws[kd[2]], orow = os[od[2]];
  }
  /* C[m][n]: feature-major output with pixels (oy, ox) contiguous */
  if (os[od[ns + 1]] != 1 || (ns == 2 && orow != OW) || os[od[1]] != OH * OW) return LDMC_OK;
  int64_t G = at->groups, cin = x->shape.dims[id_[1]], cout = n->shape.dims[od[1]];
  int64_t cg = cin / G, mg = cout / G, K = cg * kh * kw;
  lc_ref xr = p->value[n->operands[0]], wr = p->value[n->operands[1]];
  /* A = kernel as [group][m][ci, ky, kx]; copy to OIHW order if it does not merge */
  int64_t wk = ws[kd[ns + 1]];
  bool wok = (ns == 1 || wrow == kw * wk) && ws[kd[1]] == kh * kw * wk;
  if (!wok || wk != 1) {
    int64_t perm[4] = {kd[0], kd[1], ns == 2 ? kd[2] : kd[2], ns == 2 ? kd[3] : 0};
    ldmc_shape sh2 = {.rank = rank};
    lc_stream sv, dv;
    memset(&sv, 0, sizeof sv);
    sv.dt = (uint8_t)w->dtype;
    for (int i = 0; i < rank; i++) sh2.dims[i] = w->shape.dims[perm[i]], sv.st[i] = ws[perm[i]];
    memset(&dv, 0, sizeof dv);
    dv.dt = sv.dt;
    ldmc_lc_strides(&sh2, dv.st);
    int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)ldmc_lc_numel(&sh2) * ldmc_dtype_size(w->dtype));
    if (b < 0) return LDMC_ERR_NOMEM;
    wr = (lc_ref){b, 0};
    LDMC_TRY(ldmc_lc_add_copy(p, id, rank, sh2.dims, wr, &dv, p->value[n->operands[1]], &sv));
    int64_t tmp[LDMC_MAX_RANK];
    ldmc_lc_strides(&sh2, tmp);
    for (int i = 0; i < rank; i++) ws[perm[i]] = tmp[i];
    wk = 1;
  }
  *handled = true;
  lc_gemm_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->dt = (uint8_t)n->dtype;
  d->M = mg, d->N = OH * OW, d->K = K, d->nb1 = x->shape.dims[id_[0]], d->nb2 = G;
  d->a_st[0] = 0, d->a_st[1] = mg * ws[kd[0]], d->a_st[2] = ws[kd[0]], d->a_st[3] = 1;
  d->c_st[0] = os[od[0]], d->c_st[1] = mg * os[od[1]], d->c_st[2] = os[od[1]];
  bool plain = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 &&
               at->pad_high.v[ns - 1] == 0 && (ns == 1 || at->pad_high.v[0] == 0) && xs[id_[ns + 1]] == 1 &&
               (ns == 1 || xrow == Wd) && OH == H && OW == Wd;
  if (plain) { /* B = x[image][group] as a [cin/G, H*W] matrix */
    d->b_st[0] = xs[id_[0]], d->b_st[1] = cg * xs[id_[1]], d->b_st[2] = xs[id_[1]], d->b_st[3] = 1;
  } else {
    d->conv = 1;
    d->x_st[0] = xs[id_[0]], d->x_st[1] = xs[id_[1]], d->x_st[2] = xrow, d->x_st[3] = xs[id_[ns + 1]];
    d->cg = cg, d->H = H, d->Wd = Wd, d->kh = kh, d->kw = kw, d->sh = sh, d->sw = sw;
    d->ph = ph, d->pw = pw, d->dh = dh, d->dw = dw, d->OW = OW;
  }
  if (d->M * d->N * d->nb1 * d->nb2 == 0) {
    free(d);
    int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, 0);
    if (b < 0) return LDMC_ERR_NOMEM;
    p->value[id] = (lc_ref){b, 0};
    return LDMC_OK;
  }
  return emit_gemm_steps(p, id, d, wr, xr, n->operands[1], -1);
}

ldmc_status ldmc_lc_lower_contract(lc_plan *p, int32_t id, bool *handled) {
  *handled = true;
  if (p->g->nodes[id].op == LDMC_OP_DOT_GENERAL) return lower_dot(p, id, handled);
  return lower_conv(p, id, handled);
}
