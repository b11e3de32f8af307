/* Epilogue fusion: a dot_general / convolution and the elementwise nodes
 * after it (bias, activation, residual, scale, convert — a pipeline
 * CONTRACTION kernel) become one GEMM whose store computes the kernel's root
 * from the accumulators (kern_epi.c).
 *
 * Every node between core and root has core's element count and is an
 * elementwise op or a row-major reshape, so they share the linear index of
 * C. The epilogue expression is built over a box refining all their shapes
 * and C's (b1, b2, m, n) split (fuse.c, core = LC_EW_ACC); each input's
 * strides then merge into one stride per C dim, or the epilogue is not fused.
 * The root is stored dense in C's layout (n contiguous). */
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"
#include "passes/passes.h"

typedef struct lc_epi {
  int32_t root;
  bool dot;       /* batch dims merged as one: b1 stride = b2 stride * nb2, set once nb2 is known */
  bool used;      /* the GEMM step took it */
  lc_ew_desc e;   /* inputs as (b1, b2, m, n) strides; expression */
  lc_ref refs[LC_EW_MAX_IN];
} lc_epi;

static bool env_off(void) {
  const char *e = getenv("LDMC_LLVM_CPU_EPILOGUE");
  return e && strcmp(e, "0") == 0;
}

enum { MAX_CUTS = 64 };
typedef struct cuts {
  int64_t v[MAX_CUTS];
  int n;
  bool overflow;
} cuts;

static void cut_add(cuts *c, int64_t x) {
  for (int i = 0; i < c->n; i++)
    if (c->v[i] == x) return;
  if (c->n == MAX_CUTS) c->overflow = true;
  else c->v[c->n++] = x;
}

/* the suffix products of a shape: where its dims break the linear index */
static void cut_shape(cuts *c, const ldmc_shape *s) {
  int64_t x = 1;
  for (int j = s->rank - 1; j >= 0; j--) cut_add(c, x *= s->dims[j]);
}

/* Whether id reaches core through pending nodes; adds the shapes of the
 * nodes on such paths. memo: 0 unknown, 1 no, 2 yes. */
static bool on_path(lc_plan *p, int32_t id, int32_t core, int32_t root, uint8_t *memo, cuts *c) {
  if (id == core) return true;
  if (memo[id]) return memo[id] == 2;
  memo[id] = 1;
  const ldmc_node *nd = &p->g->nodes[id];
  bool unlowered_reshape = nd->op == LDMC_OP_RESHAPE && p->value[id].buf < 0 && !p->done[id];
  if (id != root && !p->pending[id] && !unlowered_reshape) return false;
  const ldmc_node *n = &p->g->nodes[id];
  bool any = false;
  for (int k = 0; k < n->n_operands; k++) any |= on_path(p, n->operands[k], core, root, memo, c);
  if (any) {
    memo[id] = 2;
    cut_shape(c, &n->shape);
  }
  return any;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Merges box dims [lo, hi) of strides st (sizes dims) into one stride. */
static bool merge_group(const int64_t *dims, const int64_t *st, int lo, int hi, int64_t *out) {
  int64_t s = 0, sz = 1;
  bool have = false;
  for (int k = hi - 1; k >= lo; k--) {
    if (dims[k] == 1) continue;
    if (!have) {
      s = st[k], sz = dims[k], have = true;
      continue;
    }
    if (st[k] != s * sz) return false;
    sz *= dims[k];
  }
  *out = s;
  return true;
}

/* C's split of core's linear index: n below cn, m below cm, b2 below cb2
 * (conv groups), b1 above; false if core is not a GEMM this file knows. */
static bool c_split(const lc_plan *p, const ldmc_node *n, int64_t *cn, int64_t *cm, int64_t *cb2, bool *dot) {
  const ldmc_attrs *at = &n->attrs;
  int64_t total = ldmc_lc_numel(&n->shape);
  if (n->op == LDMC_OP_DOT_GENERAL) {
    const ldmc_node *l = &p->g->nodes[n->operands[0]];
    int nb = at->lhs_batch.n, nlf = l->shape.rank - nb - at->lhs_contract.n;
    int64_t N = 1, MN = 1;
    for (int j = nb; j < n->shape.rank; j++) {
      MN *= n->shape.dims[j];
      if (j >= nb + nlf) N *= n->shape.dims[j];
    }
    *cn = N, *cm = MN, *cb2 = total, *dot = true;
    return true;
  }
  int ns = n->shape.rank - 2;
  if (ns < 1 || ns > 2 || at->groups < 1) return false;
  const int64_t *od = at->output_dims.v;
  /* NCHW-like: batch, features, then the spatial dims in order (lower_conv checks the strides) */
  if (od[0] != 0 || od[1] != 1) return false;
  for (int i = 0; i < ns; i++)
    if (od[2 + i] != 2 + i) return false;
  int64_t N = 1, cout = n->shape.dims[1];
  for (int i = 0; i < ns; i++) N *= n->shape.dims[2 + i];
  *cn = N, *cm = N * (cout / at->groups), *cb2 = N * cout, *dot = false;
  return true;
}

/* Builds ep's expression and (b1, b2, m, n) strides; false if not fusible. */
static ldmc_status build(lc_plan *p, int32_t core, int32_t root, lc_epi *ep, bool *ok) {
  const ldmc_node *cn = &p->g->nodes[core];
  int64_t total = ldmc_lc_numel(&cn->shape), sn, sm, sb2;
  *ok = false;
  if (!c_split(p, cn, &sn, &sm, &sb2, &ep->dot)) return LDMC_OK;
  cuts c = {.n = 0};
  cut_add(&c, 1);
  cut_shape(&c, &cn->shape);
  cut_add(&c, sn), cut_add(&c, sm), cut_add(&c, sb2);
  uint8_t *memo = calloc((size_t)p->g->n_nodes, 1);
  if (!memo) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  bool reach = on_path(p, root, core, root, memo, &c);
  free(memo);
  if (!reach || c.overflow) return LDMC_OK;
  qsort(c.v, (size_t)c.n, sizeof c.v[0], cmp64);
  if (c.v[c.n - 1] != total) return LDMC_OK;
  for (int i = 0; i + 1 < c.n; i++)
    if (c.v[i] <= 0 || c.v[i + 1] % c.v[i]) return LDMC_OK; /* shapes with no common refinement */
  int R = c.n - 1;
  if (R > LDMC_MAX_RANK) return LDMC_OK;
  lc_ew_desc *x = calloc(1, sizeof *x);
  if (!x) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  x->rank = R > 0 ? R : 1;
  x->dims[0] = 1;
  int group[LDMC_MAX_RANK]; /* box dim -> 0 b1, 1 b2, 2 m, 3 n */
  for (int k = 0; k < R; k++) {
    int64_t lo = c.v[R - k - 1], hi = c.v[R - k];
    x->dims[k] = hi / lo;
    group[k] = hi <= sn ? 3 : hi <= sm ? 2 : hi <= sb2 ? 1 : 0;
  }
  bool built = false;
  ldmc_status st = ldmc_lc_epilogue_expr(p, core, root, x, ep->refs, &built);
  if (st == LDMC_OK && built) {
    bool merged = true;
    for (int s = 0; s < x->n_in && merged; s++) {
      lc_stream *in = &x->in[s];
      int64_t g4[4] = {0, 0, 0, 0};
      for (int q = 0; q < 4 && merged; q++) {
        int lo = R, hi = 0;
        for (int k = 0; k < R; k++)
          if (group[k] == q) lo = k < lo ? k : lo, hi = k + 1;
        if (lo < hi) merged = merge_group(x->dims, in->st, lo, hi, &g4[q]);
      }
      /* dot_general: the whole batch is group b2 here (sb2 = total); b1 = b2 * nb2 later */
      memcpy(in->st, g4, sizeof g4);
      for (int k = 4; k < LDMC_MAX_RANK; k++) in->st[k] = 0;
    }
    if (merged) {
      ep->e = *x;
      ep->e.rank = 4;
      memset(ep->e.dims, 0, sizeof ep->e.dims);
      *ok = true;
    }
  }
  free(x);
  return st;
}

ldmc_status ldmc_lc_gemm_epilogue_step(lc_plan *p, int32_t core, lc_gemm_desc *d, lc_ref c, lc_ref a, lc_ref b,
                                       size_t scratch, int64_t tiles) {
  lc_epi *ep = p->epi;
  const ldmc_node *rn = &p->g->nodes[ep->root];
  d->epi = ep->e;
  lc_ew_desc *e = &d->epi;
  e->dims[0] = d->nb1, e->dims[1] = d->nb2, e->dims[2] = d->M, e->dims[3] = d->N;
  if (ep->dot)
    for (int s = 0; s < e->n_in; s++) e->in[s].st[0] = e->in[s].st[1] * d->nb2;
  memset(&e->out, 0, sizeof e->out);
  e->out.dt = (uint8_t)rn->dtype;
  e->out.st[0] = d->c_st[0], e->out.st[1] = d->c_st[1], e->out.st[2] = d->c_st[2], e->out.st[3] = 1;
  /* K partials go into an f32 output itself, unless the output is donated state: its storage is the
   * parameter's, which the epilogue still reads (a sampler's latents), so they get their own buffer */
  ldmc_kernel *kr = p->kp && p->cur_kernel >= 0 ? &p->kp->kernels[p->cur_kernel] : NULL;
  d->epi_c = d->K <= d->kc ? 0 : rn->dtype == LDMC_F32 && !(kr && kr->donated_to >= 0) ? 1 : 2;
  if (d->epi_c == 1 && kr) kr->no_inplace = true; /* K partials overwrite the output: not over an input */
  if (d->epi_c != 2) p->bufs[c.buf].size = 0; /* no f32 partials outside the output */
  lc_ref out = ldmc_lc_new_out(p, ep->root);
  if (out.buf < 0) {
    free(d);
    return LDMC_ERR_NOMEM;
  }
  lc_ref refs[LC_MAX_BUFS];
  int nb = LC_GEMM_EPI_BUF + e->n_in;
  refs[0] = out, refs[1] = a, refs[2] = b, refs[3] = d->epi_c == 2 ? c : (lc_ref){-1, 0};
  for (int s = 0; s < e->n_in; s++) refs[LC_GEMM_EPI_BUF + s] = e->in[s].iota ? (lc_ref){-1, 0} : ep->refs[s];
  lc_kernel *k = ldmc_lc_kernel_new(LC_K_GEMM, d, sizeof *d, p->t);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  double nel = (double)(d->nb1 * d->nb2) * (double)d->M * (double)d->N;
  k->work = 2.0 * nel * (double)d->K + nel * (double)e->n_ins;
  k->n_bufs = nb, k->n_tiles = tiles, k->scratch = scratch;
  ep->used = true;
  return ldmc_lc_plan_add_step(p, k, core, nb, refs);
}

ldmc_status ldmc_lc_lower_contract_epilogue(lc_plan *p, int32_t core, int32_t root, bool *fused) {
  *fused = false;
  const ldmc_node *cn = &p->g->nodes[core], *rn = &p->g->nodes[root];
  if (env_off() || root == core || p->epi || !ldmc_dtype_is_float(cn->dtype)) return LDMC_OK;
  if (cn->op != LDMC_OP_DOT_GENERAL && cn->op != LDMC_OP_CONVOLUTION) return LDMC_OK;
  int64_t total = ldmc_lc_numel(&cn->shape);
  if (total <= 0 || ldmc_lc_numel(&rn->shape) != total) return LDMC_OK;
  /* a convolution reads its operands from buffers (ldmc_lc_lower_node does the
   * same): a pending view, such as a lazy slice kernel, is computed first */
  if (cn->op == LDMC_OP_CONVOLUTION)
    for (int k = 0; k < cn->n_operands; k++) LDMC_TRY(ldmc_lc_materialize(p, cn->operands[k]));
  lc_epi *ep = calloc(1, sizeof *ep);
  if (!ep) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  ep->root = root;
  bool ok = false, handled = true;
  ldmc_status st = build(p, core, root, ep, &ok);
  if (st == LDMC_OK && ok) {
    p->epi = ep;
    st = ldmc_lc_lower_contract(p, core, &handled);
    p->epi = NULL;
    if (st == LDMC_OK && handled) {
      *fused = true;
      if (ep->used) {
        p->n_epilogue++;
      } else { /* lowered alone (empty contraction): the epilogue reads its result */
        uint8_t was = p->pending[root];
        p->pending[root] = 1;
        st = ldmc_lc_materialize(p, root);
        if (st != LDMC_OK) p->pending[root] = was;
      }
    }
  }
  free(ep);
  return st;
}
