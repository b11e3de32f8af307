/* A chain of elementwise nodes as one vector kernel: per tile, one load of
 * every external operand, the nodes' vector ops in graph order on chip, one
 * store of the root's value. The nodes (ascending, root last) share the
 * root's shape; a broadcast_in_dim among them reads its (external) operand
 * with its own strides: a full tile (row stride 0 repeats a row), a column
 * vector (one value per row, spread by fill 1 and a per-row multiply) or a
 * row vector (one row, spread by a per-column multiply), so biases, norm
 * statistics and affine parameters are never materialized off chip. A
 * constant of one repeated value (a folded scalar broadcast) as the operand
 * b of a binary op (or a of add / mul) is the instruction's immediate.
 *
 * The root's dims are canonicalized jointly for every operand (size-1 dims
 * dropped, neighbours merged where every operand is contiguous across
 * them), viewed as [outer..., D2, C] and tiled like the elementwise kernels
 * (lower_ew.c). Forms a tile cannot load with 2-D DMAs (an operand strided
 * along the last dim) are refused with LDMC_ERR_UNSUPPORTED; the caller
 * then lowers the nodes one by one. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "backends/tpusim/lower.h"

enum { IN_FULL, IN_ROW, IN_COL }; /* a tile, tr values (one per row), tc values (one row) */

typedef struct fin {
  int32_t node;  /* the value read */
  int32_t bcast; /* the cluster's broadcast_in_dim reading it, or -1 (an operand of the root's shape) */
  int buf, kind;
  uint64_t s[LDMC_MAX_RANK + 2];
  uint32_t slot[TPK_NBUF];
} fin;

static int find_node(const int32_t *nodes, int n, int32_t id) {
  for (int i = 0; i < n; i++)
    if (nodes[i] == id) return i;
  return -1;
}

static void contiguous(const ldmc_shape *s, uint64_t *st) {
  uint64_t a = 1;
  for (int i = s->rank - 1; i >= 0; i--) st[i] = a, a *= (uint64_t)s->dims[i];
}

ldmc_status tpk_lower_fused(const ldmc_graph *g, const int32_t *nodes, int n, const ldmc_tpu_target *t, tpk_kernel *k) {
  int32_t root = nodes[n - 1];
  const ldmc_node *rn = &g->nodes[root];
  const ldmc_shape *S = &rn->shape;
  uint32_t numel;
  LDMC_TRY(tpk_numel32(g, root, &numel));
  if (n > TPK_MAX_FUSE) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: fusion of %d nodes", n);
  fin ins[TPK_MAX_BUFS];
  int nin = 0;
  k->node = root;
  k->n_nodes = n;
  memcpy(k->nodes, nodes, sizeof *nodes * (size_t)n);
  k->n_bufs = 0;
  /* the operands read from off chip */
  for (int i = 0; i < n; i++) {
    const ldmc_node *x = &g->nodes[nodes[i]];
    if (!ldmc_shape_equal(&x->shape, S) || x->dtype != LDMC_F32)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: fusion: %%%d is not of the root's shape", (int)nodes[i]);
    bool bc = x->op == LDMC_OP_BROADCAST_IN_DIM;
    if (!bc && tpk_unary_func(x->op) < 0 && tpk_binary_func(x->op) < 0)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: fusion: %%%d %s is not elementwise", (int)nodes[i], ldmc_op_name(x->op));
    float imm;
    int sj = bc ? -1 : tpk_scalar_operand(g, x, nodes, n, -1, &imm);
    for (int j = 0; j < x->n_operands; j++) {
      int32_t o = x->operands[j];
      if (j == sj) continue; /* an immediate */
      if (find_node(nodes, n, o) >= 0) {
        if (bc) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: fusion: a broadcast of a fused value");
        continue;
      }
      int32_t key = bc ? nodes[i] : -1;
      bool seen = false;
      for (int q = 0; q < nin && !seen; q++) seen = ins[q].node == o && ins[q].bcast == key;
      if (seen) continue;
      if (nin + 1 >= TPK_MAX_BUFS) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: fusion: too many operands");
      fin *f = &ins[nin++];
      memset(f, 0, sizeof *f);
      f->node = o, f->bcast = key;
      f->buf = -1;
      for (int b = 0; b < k->n_bufs && f->buf < 0; b++)
        if (k->buf_node[b] == o) f->buf = b;
      if (f->buf < 0) f->buf = k->n_bufs, k->buf_node[k->n_bufs++] = o;
      if (!bc) {
        contiguous(S, f->s);
      } else {
        const ldmc_node *xo = &g->nodes[o];
        uint64_t xs[LDMC_MAX_RANK];
        contiguous(&xo->shape, xs);
        for (int d = 0; d < S->rank; d++) f->s[d] = 0;
        for (int d = 0; d < x->attrs.dims.n; d++)
          if (xo->shape.dims[d] != 1) f->s[x->attrs.dims.v[d]] = xs[d];
      }
    }
  }
  int out_buf = k->n_bufs;
  k->buf_node[k->n_bufs++] = root;
  if (numel == 0) return LDMC_OK;
  /* joint canonical view */
  uint64_t d[LDMC_MAX_RANK + 2], os[LDMC_MAX_RANK + 2], st[TPK_MAX_BUFS][LDMC_MAX_RANK + 2];
  contiguous(S, os);
  int m = 0;
  for (int i = 0; i < S->rank; i++) {
    uint64_t di = (uint64_t)S->dims[i];
    if (di == 1) continue;
    bool merge = m > 0;
    for (int q = 0; q < nin && merge; q++) merge = st[q][m - 1] == ins[q].s[i] * di;
    if (merge) {
      d[m - 1] *= di;
      for (int q = 0; q < nin; q++) st[q][m - 1] = ins[q].s[i];
      continue;
    }
    d[m] = di;
    for (int q = 0; q < nin; q++) st[q][m] = ins[q].s[i];
    m++;
  }
  /* a flat view (or a last dim wider than an operand field) is split into rows of whole vregs:
   * [a, c], strides (s c, s); a 2-D view keeps its rows (splitting would shorten the tiles) */
  if (m > 0 && d[m - 1] > 4096 && (m == 1 || d[m - 1] > TPK_MAX_DIM)) {
    uint64_t all = d[m - 1], c = 0;
    for (uint64_t cc = 4096 - 4096 % (uint64_t)t->vec_lanes; cc >= (uint64_t)t->vec_lanes && !c; cc -= (uint64_t)t->vec_lanes)
      if (all % cc == 0) c = cc;
    if (c) {
      d[m - 1] = all / c, d[m] = c;
      for (int q = 0; q < nin; q++) st[q][m] = st[q][m - 1], st[q][m - 1] *= c;
      m++;
    }
  }
  int pad = m < 2 ? 2 - m : 0, r = m + pad;
  for (int i = m - 1; i >= 0; i--) {
    d[i + pad] = d[i];
    for (int q = 0; q < nin; q++) st[q][i + pad] = st[q][i];
  }
  for (int i = 0; i < pad; i++) {
    d[i] = 1;
    for (int q = 0; q < nin; q++) st[q][i] = 0;
  }
  uint64_t D2 = d[r - 2], C = d[r - 1], outer = 1;
  for (int i = 0; i < r - 2; i++) outer *= d[i];
  int nfull = 0;
  for (int q = 0; q < nin; q++) {
    memcpy(ins[q].s, st[q], sizeof st[q]);
    uint64_t sc = st[q][r - 1], s2 = st[q][r - 2];
    if (sc == 1) ins[q].kind = s2 == 0 && D2 > 1 ? IN_COL : IN_FULL;
    else if (sc == 0) ins[q].kind = IN_ROW;
    else return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: fusion: an operand strided along the last dim");
    nfull += ins[q].kind == IN_FULL;
  }
  /* arrays of a tile: full operands and the output in two sets, each node's value in one (halved: the
   * tile routine counts TPK_NBUF sets per array), one more for the row / column vectors */
  int narr = nfull + 1 + (n + 1) / 2 + 1;
  uint32_t tr, tc;
  tpk_ew_tiles(t, D2, C, narr, &tr, &tc);
  snprintf(k->tile_desc, sizeof k->tile_desc, "tile %ux%u, %d nodes fused", tr, tc, n);
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  for (int q = 0; q < nin; q++)
    for (int s = 0; s < TPK_NBUF; s++)
      ins[q].slot[s] = tpk_vmem_alloc(&e, 4ull * (ins[q].kind == IN_FULL ? (uint64_t)tr * tc : ins[q].kind == IN_ROW ? tr : tc));
  uint32_t vout[TPK_NBUF], val[TPK_MAX_FUSE];
  for (int s = 0; s < TPK_NBUF; s++) vout[s] = tpk_vmem_alloc(&e, 4ull * tr * tc);
  for (int i = 0; i + 1 < n; i++) val[i] = tpk_vmem_alloc(&e, 4ull * tr * tc);
  if (e.st != LDMC_OK) return e.st;
  int64_t nr = (int64_t)((D2 + tr - 1) / tr), nc = (int64_t)((C + tc - 1) / tc), nsteps = (int64_t)outer * nr * nc, step = 0;
  for (uint64_t o = 0; o < outer && e.st == LDMC_OK; o++) {
    uint64_t base[TPK_MAX_BUFS] = {0}, ob = 0, rem = o;
    for (int i = r - 3; i >= 0; i--) {
      uint64_t j = rem % d[i];
      rem /= d[i];
      for (int q = 0; q < nin; q++) base[q] += j * ins[q].s[i];
    }
    ob = o * D2 * C;
    for (int64_t ri = 0; ri < nr && e.st == LDMC_OK; ri++)
      for (int64_t ci = 0; ci < nc && e.st == LDMC_OK; ci++, step++) {
        int s = (int)(step % TPK_NBUF);
        uint64_t r0 = (uint64_t)ri * tr, c0 = (uint64_t)ci * tc;
        uint32_t rows = tpk_min32(tr, D2 - r0), cols = tpk_min32(tc, C - c0);
        size_t begin = k->prog.count;
        for (int q = 0; q < nin; q++) {
          const fin *f = &ins[q];
          uint64_t s2 = f->s[r - 2], sc = f->s[r - 1], off = base[q] + r0 * s2 + c0 * sc;
          if (f->kind == IN_FULL) tpk_dma_load(&e, f->buf, (uint32_t)off, (uint32_t)s2, rows, cols, f->slot[s], tc, LDMC_TPU_F32);
          else if (f->kind == IN_ROW) tpk_dma_load(&e, f->buf, (uint32_t)off, (uint32_t)s2, rows, 1, f->slot[s], 1, LDMC_TPU_F32);
          else tpk_dma_load(&e, f->buf, (uint32_t)off, 0, 1, cols, f->slot[s], tc, LDMC_TPU_F32);
        }
        for (int i = 0; i < n; i++) {
          const ldmc_node *x = &g->nodes[nodes[i]];
          uint32_t dst = i + 1 == n ? vout[s] : val[i];
          uint32_t src[2] = {0, 0};
          int bq = -1, sj;
          float imm;
          for (int j = 0; j < x->n_operands; j++) {
            int at = find_node(nodes, n, x->operands[j]);
            if (at >= 0) {
              src[j] = at + 1 == n ? vout[s] : val[at];
              continue;
            }
            int32_t key = x->op == LDMC_OP_BROADCAST_IN_DIM ? nodes[i] : -1;
            for (int q = 0; q < nin; q++)
              if (ins[q].node == x->operands[j] && ins[q].bcast == key) bq = q, src[j] = ins[q].slot[s];
          }
          if (x->op == LDMC_OP_BROADCAST_IN_DIM) {
            const fin *f = &ins[bq];
            if (f->kind == IN_FULL) {
              tpk_vec(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, rows, cols, dst, tc, f->slot[s], tc, 0, 0, 0.0f);
            } else { /* ones times the vector: exact (signs of zero, NaNs) */
              tpk_vec(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_FILL, 0, rows, cols, dst, tc, dst, tc, 0, 0, 1.0f);
              tpk_vec(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, f->kind == IN_ROW ? LDMC_TPU_BC_ROW : LDMC_TPU_BC_COL, rows,
                      cols, dst, tc, dst, tc, f->slot[s], f->kind == IN_ROW ? 1 : 0, 0.0f);
            }
          } else if (x->n_operands == 1) {
            tpk_vec(&e, LDMC_TPU_VEC_UNARY, (unsigned)tpk_unary_func(x->op), 0, rows, cols, dst, tc, src[0], tc, 0, 0, 0.0f);
          } else if ((sj = tpk_scalar_operand(g, x, nodes, n, -1, &imm)) >= 0) {
            tpk_vec(&e, LDMC_TPU_VEC_BINARY, (unsigned)tpk_binary_func(x->op), LDMC_TPU_BC_SCALAR, rows, cols, dst, tc,
                    src[1 - sj], tc, 0, 0, imm);
          } else {
            tpk_vec(&e, LDMC_TPU_VEC_BINARY, (unsigned)tpk_binary_func(x->op), LDMC_TPU_BC_FULL, rows, cols, dst, tc, src[0],
                    tc, src[1], tc, 0.0f);
          }
        }
        tpk_dma_store(&e, out_buf, (uint32_t)(ob + r0 * C + c0), (uint32_t)C, rows, cols, vout[s], tc);
        tpk_step_tokens(&e, begin, step, nsteps, step, true, true, nsteps);
      }
  }
  return e.st;
}
