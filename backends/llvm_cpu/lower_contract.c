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
#include "passes/passes.h"

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
  /* the tiling pass's blocks (passes/tiling.c, from the target description):
   * mc x nc x kc per tile, the mr x nr register tile inside; a GEMM smaller
   * than the tile (a phase of an lhs-dilated convolution) runs it clipped */
  int32_t kid = p->kp && id < p->kp->n_nodes ? p->kp->kernel_of[id] : -1; /* prepacked weights lower in a consumer */
  const ldmc_kernel *kr = kid >= 0 ? &p->kp->kernels[kid] : NULL;
  if (!kr || (kr->kind != LDMC_KERNEL_CONTRACTION && kr->kind != LDMC_KERNEL_PREPACK) || kr->n_tile != 3 || kr->reg_tile[0] != t->mr ||
      kr->reg_tile[1] != t->nr || kr->tile[0] % t->mr || kr->tile[1] % t->nr || kr->tile[2] < 1 ||
      kr->tile[2] > t->kc || (kr->tile[2] & 1)) {
    free(d);
    return ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %%%d %s: no contraction tile of this target in the plan", (int)id,
                      ldmc_op_name(n->op));
  }
  d->mr = t->mr, d->nr = t->nr;
  int64_t mcp = (d->M + d->mr - 1) / d->mr * d->mr, ncp = (d->N + t->nr - 1) / t->nr * t->nr;
  d->mc = kr->tile[0] < mcp ? kr->tile[0] : mcp;
  d->nc = (int)(kr->tile[1] < ncp ? kr->tile[1] : ncp);
  d->kc = (int)kr->tile[2];
  bool b_pre = !d->conv && d->K > 0 && prepackable(p, b_node, b_ref);
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
  bool fl = ldmc_dtype_is_float(n->dtype);
  if (!fl && p->epi) { /* integer products have no GEMM epilogue */
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
  int64_t n1 = 1, n2 = 1, M = 1, N = 1, K = 1;
  for (int i = 0; i < sp; i++) n1 *= lsh.dims[ls.batch[i]];
  for (int i = sp; i < ls.nb; i++) n2 *= lsh.dims[ls.batch[i]];
  for (int i = 0; i < ls.nf; i++) M *= lsh.dims[ls.free_[i]];
  for (int i = 0; i < rs.nf; i++) N *= rsh.dims[rs.free_[i]];
  for (int i = 0; i < ls.nc; i++) K *= lsh.dims[ls.contract[i]];
  if (!fl) { /* integers: 64-bit wrapping sums (kern_gather.c) */
    lc_ref out = ldmc_lc_new_out(p, id);
    if (out.buf < 0) return LDMC_ERR_NOMEM;
    if (M * N * n1 * n2 == 0) return LDMC_OK;
    lc_idot_desc *idd = calloc(1, sizeof *idd);
    if (!idd) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    idd->dt = (uint8_t)n->dtype;
    idd->M = M, idd->N = N, idd->K = K, idd->nb1 = n1, idd->nb2 = n2;
    memcpy(idd->a_st, av, sizeof av);
    memcpy(idd->b_st, bv, sizeof bv);
    return ldmc_lc_lower_idot(p, id, idd, out, lr, rr);
  }
  lc_gemm_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->dt = (uint8_t)n->dtype;
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

/* A 2-D convolution (1-D and 0-D as height / width 1) in canonical terms:
 * x [image][channel][row][col], w [out][in][ky][kx], out [image][channel][row][col],
 * each as element strides of its buffer. */
typedef struct conv2 {
  int64_t N, G, cg, mg;                    /* images, groups, in / out channels per group */
  int64_t H, Wd, OH, OW, kh, kw, sh, sw, ph, pw, phh, pwh, dh, dw;
  int64_t xs[4], ws[4], os[4];
  ldmc_dtype wdt;
  int32_t w_node;                          /* the kernel's node when wr is its own value (prepack), else -1 */
} conv2;

/* The convolution c (no lhs dilation) as an implicit GEMM writing node id's
 * value: feature-major with pixels contiguous (os), else a dense temporary
 * copied into os afterwards. */
static ldmc_status conv2_gemm(lc_plan *p, int32_t id, const conv2 *c0, lc_ref xr, lc_ref wr) {
  const ldmc_node *n = &p->g->nodes[id];
  conv2 cc = *c0, *c = &cc;
  int64_t K = c->cg * c->kh * c->kw;
  bool fm = c->os[3] == 1 && (c->OH == 1 || c->os[2] == c->OW) && (c->mg * c->G == 1 || c->os[1] == c->OH * c->OW);
  int64_t fos[4]; /* the final layout when a dense temporary is computed first */
  memcpy(fos, c->os, sizeof fos);
  /* the plan's choice (passes/tiling.c): images folded into the columns, the
   * result as [group][m][image][pixel], copied into place */
  int32_t kid = p->kp && id < p->kp->n_nodes ? p->kp->kernel_of[id] : -1;
  bool fold = kid >= 0 && p->kp->kernels[kid].fold_images && c->N > 1;
  int64_t P = c->OH * c->OW;
  if (fold) {
    if (p->epi) return LDMC_OK; /* the plan folds no kernel with an epilogue */
    fm = false;
    c->os[3] = 1, c->os[2] = c->OW, c->os[1] = c->N * P, c->os[0] = P;
  } else if (!fm) {
    c->os[3] = 1, c->os[2] = c->OW, c->os[1] = P, c->os[0] = c->mg * c->G * P;
    if (p->epi) return LDMC_OK; /* *handled false: the caller lowers it alone */
  }
  /* A = kernel as [group][m][ci, ky, kx]; copied to dense OIHW when it does not merge */
  bool wok = c->ws[3] == 1 && (c->kh == 1 || c->ws[2] == c->kw) && (c->cg == 1 || c->ws[1] == c->kh * c->kw);
  if (!wok) {
    int64_t box[4] = {c->mg * c->G, c->cg, c->kh, c->kw};
    lc_stream sv, dv;
    memset(&sv, 0, sizeof sv);
    memset(&dv, 0, sizeof dv);
    sv.dt = dv.dt = (uint8_t)c->wdt;
    memcpy(sv.st, c->ws, sizeof c->ws);
    dv.st[3] = 1, dv.st[2] = c->kw, dv.st[1] = c->kh * c->kw, dv.st[0] = K;
    bool saved = p->prepack_mode, pre = c->w_node >= 0 && ldmc_lc_is_weight(p, c->w_node);
    p->prepack_mode = saved || pre; /* a weight's copy is made once, like its packing */
    int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)(box[0] * K) * ldmc_dtype_size(c->wdt));
    ldmc_status st = b < 0 ? LDMC_ERR_NOMEM : ldmc_lc_add_copy(p, id, 4, box, (lc_ref){b, 0}, &dv, wr, &sv);
    p->prepack_mode = saved;
    LDMC_TRY(st);
    wr = (lc_ref){b, 0};
    memcpy(c->ws, dv.st, sizeof c->ws);
    if (!pre) c->w_node = -1;
  }
  lc_gemm_desc *d = calloc(1, sizeof *d);
  if (!d) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  d->dt = (uint8_t)n->dtype;
  d->M = c->mg, d->N = fold ? c->N * P : P, d->K = K, d->nb1 = fold ? 1 : c->N, d->nb2 = c->G;
  d->fold_n = fold ? P : 0;
  d->a_st[0] = 0, d->a_st[1] = c->mg * c->ws[0], d->a_st[2] = c->ws[0], d->a_st[3] = 1;
  d->c_st[0] = fold ? 0 : c->os[0], d->c_st[1] = c->mg * c->os[1], d->c_st[2] = c->os[1];
  bool plain = !fold && c->kh == 1 && c->kw == 1 && c->sh == 1 && c->sw == 1 && c->ph == 0 && c->pw == 0 && c->phh == 0 &&
               c->pwh == 0 && c->xs[3] == 1 && (c->H == 1 || c->xs[2] == c->Wd) && c->OH == c->H && c->OW == c->Wd;
  if (plain) { /* B = x[image][group] as a [cin/G, H*W] matrix */
    d->b_st[0] = c->xs[0], d->b_st[1] = c->cg * c->xs[1], d->b_st[2] = c->xs[1], d->b_st[3] = 1;
  } else {
    d->conv = 1;
    memcpy(d->x_st, c->xs, sizeof d->x_st);
    d->cg = c->cg, d->H = c->H, d->Wd = c->Wd, d->kh = c->kh, d->kw = c->kw, d->sh = c->sh, d->sw = c->sw;
    d->ph = c->ph, d->pw = c->pw, d->dh = c->dh, d->dw = c->dw, d->OW = c->OW;
  }
  if (d->M * d->N * d->nb1 * d->nb2 == 0) {
    free(d);
    int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, 0);
    if (b < 0) return LDMC_ERR_NOMEM;
    p->value[id] = (lc_ref){b, 0};
    return LDMC_OK;
  }
  LDMC_TRY(emit_gemm_steps(p, id, d, wr, xr, c->w_node, -1));
  if (fm) return LDMC_OK;
  lc_ref tmp = p->value[id], out = ldmc_lc_new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  int64_t box[4] = {c->N, c->G * c->mg, c->OH, c->OW};
  lc_stream sv, dv;
  memset(&sv, 0, sizeof sv);
  memset(&dv, 0, sizeof dv);
  sv.dt = dv.dt = (uint8_t)n->dtype;
  memcpy(sv.st, c->os, sizeof c->os);
  memcpy(dv.st, fos, sizeof fos);
  return ldmc_lc_add_copy(p, id, 4, box, out, &dv, tmp, &sv);
}

static int64_t mod_pos(int64_t a, int64_t m) { return ((a % m) + m) % m; }

/* One spatial dim of a convolution with lhs dilation L split into P = L /
 * gcd(stride, L) output phases: outputs o = ph + P t read only the taps k with
 * (ph * stride + k * dil - pad) % L == 0, an arithmetic progression k0 + j * step,
 * so each phase is an ordinary convolution of the undilated input. */
typedef struct phase1 {
  int64_t P, k0, step, nk, stride, dil, pad, n_out;
} phase1;

static void phase_of(int64_t L, int64_t s, int64_t dl, int64_t pl, int64_t K, int64_t O, int64_t ph, phase1 *r) {
  r->P = L / gcd64(s, L);
  r->step = L / gcd64(dl, L);
  r->nk = 0;
  r->k0 = 0;
  for (int64_t k = 0; k < K && k < r->step; k++)
    if (mod_pos(ph * s + k * dl - pl, L) == 0) {
      r->k0 = k;
      r->nk = (K - 1 - k) / r->step + 1;
      break;
    }
  r->stride = r->P * s / L;
  r->dil = r->step * dl / L;
  r->pad = r->nk ? -((ph * s + r->k0 * dl - pl) / L) : 0;
  r->n_out = ph < O ? (O - ph + r->P - 1) / r->P : 0;
}

/* lhs-dilated convolution (the input gradient of a strided one): one implicit
 * GEMM per output phase into a dense temporary, copied into its strided place;
 * phases without taps are zero. */
static ldmc_status conv2_dilated(lc_plan *p, int32_t id, const conv2 *c, int64_t Ly, int64_t Lx, lc_ref xr, lc_ref wr) {
  const ldmc_node *n = &p->g->nodes[id];
  if (p->epi) return LDMC_OK; /* no fused epilogue: lowered alone */
  lc_ref out = ldmc_lc_new_out(p, id);
  if (out.buf < 0) return LDMC_ERR_NOMEM;
  int64_t Py = Ly / gcd64(c->sh, Ly), Px = Lx / gcd64(c->sw, Lx);
  for (int64_t py = 0; py < Py && py < c->OH; py++)
    for (int64_t px = 0; px < Px && px < c->OW; px++) {
      phase1 fy, fx;
      phase_of(Ly, c->sh, c->dh, c->ph, c->kh, c->OH, py, &fy);
      phase_of(Lx, c->sw, c->dw, c->pw, c->kw, c->OW, px, &fx);
      int64_t box[4] = {c->N, c->G * c->mg, fy.n_out, fx.n_out};
      lc_stream dv;
      memset(&dv, 0, sizeof dv);
      dv.dt = (uint8_t)n->dtype;
      dv.st[0] = c->os[0], dv.st[1] = c->os[1], dv.st[2] = c->os[2] * Py, dv.st[3] = c->os[3] * Px;
      dv.off = py * c->os[2] + px * c->os[3];
      if (fy.nk == 0 || fx.nk == 0 || c->cg == 0) { /* no taps: zeros */
        lc_stream zero;
        memset(&zero, 0, sizeof zero);
        zero.dt = (uint8_t)n->dtype;
        zero.iota = 1; /* index * 0 = 0 */
        LDMC_TRY(ldmc_lc_add_copy(p, id, 4, box, out, &dv, (lc_ref){-1, 0}, &zero));
        continue;
      }
      conv2 q = *c;
      q.kh = fy.nk, q.kw = fx.nk, q.sh = fy.stride, q.sw = fx.stride, q.dh = fy.dil, q.dw = fx.dil;
      q.ph = fy.pad, q.pw = fx.pad, q.OH = fy.n_out, q.OW = fx.n_out;
      q.phh = q.pwh = 1; /* not "plain" unless proven: the output size is not the input's */
      if (q.kh == 1 && q.kw == 1 && q.sh == 1 && q.sw == 1 && q.ph == 0 && q.pw == 0 && q.OH == q.H && q.OW == q.Wd)
        q.phh = q.pwh = 0;
      /* the phase's taps of the kernel: a strided view, copied dense */
      q.ws[2] = c->ws[2] * fy.step, q.ws[3] = c->ws[3] * fx.step;
      lc_ref wq = wr;
      wq.off += (size_t)(fy.k0 * c->ws[2] + fx.k0 * c->ws[3]) * ldmc_dtype_size(c->wdt);
      bool dense_w = q.ws[3] == 1 && (q.kh == 1 || q.ws[2] == q.kw) && (q.cg == 1 || q.ws[1] == q.kh * q.kw);
      if (!dense_w && (fy.k0 || fx.k0)) { /* conv2_gemm copies from offset 0 of its ref: give it the view */
        int64_t bx[4] = {c->mg * c->G, c->cg, q.kh, q.kw};
        lc_stream sv, wv;
        memset(&sv, 0, sizeof sv);
        memset(&wv, 0, sizeof wv);
        sv.dt = wv.dt = (uint8_t)c->wdt;
        memcpy(sv.st, q.ws, sizeof q.ws);
        sv.off = fy.k0 * c->ws[2] + fx.k0 * c->ws[3];
        wv.st[3] = 1, wv.st[2] = q.kw, wv.st[1] = q.kh * q.kw, wv.st[0] = q.cg * q.kh * q.kw;
        bool saved = p->prepack_mode, pre = c->w_node >= 0 && ldmc_lc_is_weight(p, c->w_node);
        p->prepack_mode = saved || pre;
        int32_t b = ldmc_lc_plan_new_buf(p, LC_BUF_ARENA, (size_t)(bx[0] * wv.st[0]) * ldmc_dtype_size(c->wdt));
        ldmc_status st = b < 0 ? LDMC_ERR_NOMEM : ldmc_lc_add_copy(p, id, 4, bx, (lc_ref){b, 0}, &wv, wr, &sv);
        p->prepack_mode = saved;
        LDMC_TRY(st);
        wq = (lc_ref){b, 0};
        memcpy(q.ws, wv.st, sizeof q.ws);
        if (!pre) q.w_node = -1;
      }
      q.os[3] = 1, q.os[2] = q.OW, q.os[1] = q.OH * q.OW, q.os[0] = c->G * c->mg * q.OH * q.OW;
      LDMC_TRY(conv2_gemm(p, id, &q, xr, wq));
      lc_ref tmp = p->value[id];
      lc_stream sv;
      memset(&sv, 0, sizeof sv);
      sv.dt = (uint8_t)n->dtype;
      memcpy(sv.st, q.os, sizeof q.os);
      LDMC_TRY(ldmc_lc_add_copy(p, id, 4, box, out, &dv, tmp, &sv));
    }
  p->value[id] = out;
  return LDMC_OK;
}

static ldmc_status lower_conv(lc_plan *p, int32_t id, bool *handled) {
  const ldmc_graph *g = p->g;
  const ldmc_node *n = &g->nodes[id];
  const ldmc_attrs *at = &n->attrs;
  const ldmc_node *x = &g->nodes[n->operands[0]], *w = &g->nodes[n->operands[1]];
  int rank = n->shape.rank, ns = rank - 2;
  *handled = false;
  if (ns < 0 || ns > 2) return LDMC_OK;
  int64_t xs[LDMC_MAX_RANK], ws[LDMC_MAX_RANK], os[LDMC_MAX_RANK];
  ldmc_lc_strides(&x->shape, xs);
  ldmc_lc_strides(&w->shape, ws);
  ldmc_lc_strides(&n->shape, os);
  const int64_t *id_ = at->input_dims.v, *kd = at->kernel_dims.v, *od = at->output_dims.v;
  conv2 c;
  memset(&c, 0, sizeof c);
  c.wdt = w->dtype;
  c.w_node = n->operands[1];
  c.G = at->groups > 0 ? at->groups : 1;
  c.N = x->shape.dims[id_[0]];
  c.cg = x->shape.dims[id_[1]] / c.G;
  c.mg = n->shape.dims[od[1]] / c.G;
  c.xs[0] = xs[id_[0]], c.xs[1] = xs[id_[1]], c.ws[0] = ws[kd[0]], c.ws[1] = ws[kd[1]];
  c.os[0] = os[od[0]], c.os[1] = os[od[1]];
  /* spatial dims as (row, col); 1-D is a single row, 0-D a single pixel */
  c.H = c.Wd = c.OH = c.OW = c.kh = c.kw = c.sh = c.sw = c.dh = c.dw = 1;
  c.xs[3] = c.ws[3] = c.os[3] = 1;
  int64_t Ly = 1, Lx = 1;
  for (int j = 0; j < ns; j++) {
    bool col = j == ns - 1;
    int64_t *I = col ? &c.Wd : &c.H, *O = col ? &c.OW : &c.OH, *Kk = col ? &c.kw : &c.kh;
    *I = x->shape.dims[id_[2 + j]], *O = n->shape.dims[od[2 + j]], *Kk = w->shape.dims[kd[2 + j]];
    *(col ? &c.sw : &c.sh) = at->window_stride.v[j];
    *(col ? &c.pw : &c.ph) = at->pad_low.v[j];
    *(col ? &c.pwh : &c.phh) = at->pad_high.v[j];
    *(col ? &c.dw : &c.dh) = at->rhs_dilation.v[j];
    *(col ? &Lx : &Ly) = at->lhs_dilation.v[j];
    c.xs[col ? 3 : 2] = xs[id_[2 + j]], c.ws[col ? 3 : 2] = ws[kd[2 + j]], c.os[col ? 3 : 2] = os[od[2 + j]];
  }
  if (c.OH == 1) c.os[2] = c.OW * c.os[3]; /* a single row: any row stride */
  bool fm = c.os[3] == 1 && (c.OH == 1 || c.os[2] == c.OW) && (c.mg * c.G == 1 || c.os[1] == c.OH * c.OW);
  /* a GEMM epilogue needs the result in C's layout: the others are lowered alone */
  if (p->epi && (Ly != 1 || Lx != 1 || !fm)) return LDMC_OK;
  *handled = true;
  lc_ref xr = p->value[n->operands[0]], wr = p->value[n->operands[1]];
  if (Ly != 1 || Lx != 1) return conv2_dilated(p, id, &c, Ly, Lx, xr, wr);
  return conv2_gemm(p, id, &c, xr, wr);
}

ldmc_status ldmc_lc_lower_contract(lc_plan *p, int32_t id, bool *handled) {
  *handled = true;
  if (p->g->nodes[id].op == LDMC_OP_DOT_GENERAL) return lower_dot(p, id, handled);
  return lower_conv(p, id, handled);
}
