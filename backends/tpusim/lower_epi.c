/* An elementwise chain as the epilogue of a matmul or convolution: after a
 * tile leaves the accumulator (acc_move, f32), the chain's vector ops run on
 * it in the scratchpad, and only the chain's root is stored. The producer's
 * value never goes off chip; the chain's other operands (a bias, a residual,
 * a norm's statistics) are DMA'd in per output tile, in the step that closes
 * the tile (so the buffer-set tokens of that step cover them).
 *
 * The producer's output is viewed as [V0, V1, M, N] with its tiles as rows
 * of M and columns of N (dot_general: [1, B, M, N]; convolution: [N, G, Og,
 * P]); the chain's root has the producer's element order (the same shape,
 * or a reshape of it), so each outside operand's strides over the root's
 * dims are regrouped into strides over that view. An operand whose view
 * strides are not one per view dim (a dim split across the tile's rows and
 * columns with other strides), or whose column stride is neither 1 nor 0,
 * is refused: the caller then does not fuse. Per tile an operand is one DMA:
 * a full tile (column stride 1), one value per row (column stride 0) or
 * one row (row stride 0), and a broadcast_in_dim node spreads it as in
 * lower_fuse.c (copy, or fill 1 and a per-row / per-column multiply); a
 * constant of one repeated value is an immediate, as there. */
#include <string.h>

#include "backends/tpusim/lower.h"

enum { EPI_FULL, EPI_ROW, EPI_COL }; /* a tile, one value per row, one row */

static int chain_at(const tpk_chain *ch, int32_t id) {
  for (int i = 0; i < ch->n; i++)
    if (ch->nodes[i] == id) return i;
  return -1;
}

static void contiguous(const ldmc_shape *s, uint64_t *st) {
  uint64_t a = 1;
  for (int i = s->rank - 1; i >= 0; i--) st[i] = a, a *= (uint64_t)s->dims[i];
}

/* Strides over the view v[0..3] of an operand with strides s over shape S (same element count):
 * the root's dims, innermost first, are split or grouped to the view's; false when a view dim
 * spans root dims whose strides are not those of one contiguous run. */
static bool view_strides(const ldmc_shape *S, const uint64_t *s, const uint64_t *v, uint64_t *out) {
  int d = S->rank - 1;
  uint64_t rsize = 1, rstride = 0; /* what is left of the current root dim */
  for (int i = 3; i >= 0; i--) {
    uint64_t need = v[i], expect = 0;
    bool first = true;
    out[i] = 0;
    while (need > 1) {
      if (rsize <= 1) {
        if (d < 0) return false;
        rsize = (uint64_t)S->dims[d], rstride = s[d];
        d--;
        continue;
      }
      uint64_t take = need % rsize == 0 ? rsize : rsize % need == 0 ? need : 0;
      if (!take) return false;
      if (first) out[i] = rstride, first = false;
      else if (rstride != expect) return false;
      expect = rstride * take;
      need /= take, rsize /= take, rstride *= take;
    }
  }
  if (rsize > 1) return false;
  for (; d >= 0; d--)
    if (S->dims[d] != 1) return false;
  return true;
}

ldmc_status tpk_epi_init(tpk_epi *ep, const ldmc_graph *g, const tpk_chain *ch, const uint64_t view[4], tpk_kernel *k) {
  memset(ep, 0, sizeof *ep);
  ep->g = g;
  ep->ch = *ch;
  int n = ch->n;
  if (n < 1 || n > TPK_MAX_FUSE) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue of %d nodes", n);
  int32_t root = ch->nodes[n - 1];
  const ldmc_shape *S = &g->nodes[root].shape;
  uint64_t numel = 1;
  for (int d = 0; d < S->rank; d++) numel *= (uint64_t)S->dims[d];
  if (numel != view[0] * view[1] * view[2] * view[3])
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: %%%d is not of its producer's size", (int)root);
  for (int i = 0; i < n; i++) {
    const ldmc_node *x = &g->nodes[ch->nodes[i]];
    bool bc = x->op == LDMC_OP_BROADCAST_IN_DIM;
    if (!ldmc_shape_equal(&x->shape, S) || x->dtype != LDMC_F32)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: %%%d is not of the root's shape", (int)ch->nodes[i]);
    if (!bc && tpk_unary_func(x->op) < 0 && tpk_binary_func(x->op) < 0)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: %%%d is not elementwise", (int)ch->nodes[i]);
    float imm;
    int sj = bc ? -1 : tpk_scalar_operand(g, x, ch->nodes, n, ch->src, &imm);
    for (int j = 0; j < x->n_operands; j++) {
      int32_t o = x->operands[j];
      if (j == sj) continue; /* an immediate */
      if (o == ch->src) {
        if (bc) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: a broadcast of the producer's value");
        continue;
      }
      if (chain_at(ch, o) >= 0) {
        if (bc) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: a broadcast of a fused value");
        continue;
      }
      int32_t key = bc ? ch->nodes[i] : -1;
      bool seen = false;
      for (int q = 0; q < ep->nin && !seen; q++) seen = ep->in[q].node == o && ep->in[q].bcast == key;
      if (seen) continue;
      if (ep->nin >= TPK_MAX_BUFS || k->n_bufs + 1 >= TPK_MAX_BUFS)
        return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: too many operands");
      tpk_epi_in *f = &ep->in[ep->nin++];
      f->node = o, f->bcast = key, f->buf = -1;
      for (int b = 0; b < k->n_bufs && f->buf < 0; b++)
        if (k->buf_node[b] == o) f->buf = b;
      if (f->buf < 0) f->buf = k->n_bufs, k->buf_node[k->n_bufs++] = o;
      uint64_t s[LDMC_MAX_RANK];
      if (!bc) {
        contiguous(S, s);
      } else {
        const ldmc_node *xo = &g->nodes[o];
        uint64_t xs[LDMC_MAX_RANK];
        contiguous(&xo->shape, xs);
        for (int d = 0; d < S->rank; d++) s[d] = 0;
        for (int d = 0; d < x->attrs.dims.n; d++)
          if (xo->shape.dims[d] != 1) s[x->attrs.dims.v[d]] = xs[d];
      }
      if (!view_strides(S, s, view, f->s))
        return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: %%%d is not strided along the producer's tiles", (int)o);
      uint64_t sm = f->s[2], sn = f->s[3];
      if (sn == 1) f->kind = sm == 0 && view[2] > 1 ? EPI_COL : EPI_FULL;
      else if (sn == 0) f->kind = EPI_ROW;
      else return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: epilogue: %%%d strided along the tile's columns", (int)o);
    }
  }
  return LDMC_OK;
}

static uint64_t in_bytes(int kind, uint64_t tm, uint64_t tn) {
  return 4 * (kind == EPI_FULL ? tm * tn : kind == EPI_ROW ? tm : tn);
}

uint64_t tpk_epi_vmem(const tpk_epi *ep, uint64_t tm, uint64_t tn) {
  uint64_t b = 0;
  for (int q = 0; q < ep->nin; q++) b += TPK_NBUF * (in_bytes(ep->in[q].kind, tm, tn) + 64);
  return b + (uint64_t)(ep->ch.n - 1) * (4 * tm * tn + 64);
}

void tpk_epi_alloc(tpk_epi *ep, tpk_em *e, uint32_t tm, uint32_t tn) {
  ep->tn = tn;
  for (int q = 0; q < ep->nin; q++)
    for (int s = 0; s < TPK_NBUF; s++) ep->in[q].slot[s] = tpk_vmem_alloc(e, in_bytes(ep->in[q].kind, tm, tn));
  for (int i = 0; i + 1 < ep->ch.n; i++) ep->val[i] = tpk_vmem_alloc(e, 4ull * tm * tn);
}

void tpk_epi_load(const tpk_epi *ep, tpk_em *e, int s, uint64_t i0, uint64_t i1, uint64_t m0, uint64_t n0, uint32_t ms,
                  uint32_t ns) {
  for (int q = 0; q < ep->nin; q++) {
    const tpk_epi_in *f = &ep->in[q];
    uint32_t off = (uint32_t)(i0 * f->s[0] + i1 * f->s[1] + m0 * f->s[2] + n0 * f->s[3]), sm = (uint32_t)f->s[2];
    if (f->kind == EPI_FULL) tpk_dma_load(e, f->buf, off, sm, ms, ns, f->slot[s], ep->tn, LDMC_TPU_F32);
    else if (f->kind == EPI_ROW) tpk_dma_load(e, f->buf, off, sm, ms, 1, f->slot[s], 1, LDMC_TPU_F32);
    else tpk_dma_load(e, f->buf, off, 0, 1, ns, f->slot[s], ep->tn, LDMC_TPU_F32);
  }
}

void tpk_epi_compute(const tpk_epi *ep, tpk_em *e, int s, uint32_t tile, uint32_t ms, uint32_t ns) {
  const ldmc_graph *g = ep->g;
  const tpk_chain *ch = &ep->ch;
  uint32_t tn = ep->tn;
  for (int i = 0; i < ch->n; i++) {
    const ldmc_node *x = &g->nodes[ch->nodes[i]];
    uint32_t dst = i + 1 == ch->n ? tile : ep->val[i]; /* the root overwrites the producer's tile: read last */
    uint32_t src[2] = {0, 0};
    int bq = -1, sj;
    float imm;
    for (int j = 0; j < x->n_operands && j < 2; j++) {
      int32_t o = x->operands[j];
      int at = chain_at(ch, o);
      if (o == ch->src) {
        src[j] = tile;
        continue;
      }
      if (at >= 0) {
        src[j] = ep->val[at];
        continue;
      }
      int32_t key = x->op == LDMC_OP_BROADCAST_IN_DIM ? ch->nodes[i] : -1;
      for (int q = 0; q < ep->nin; q++)
        if (ep->in[q].node == o && ep->in[q].bcast == key) bq = q, src[j] = ep->in[q].slot[s];
    }
    if (x->op == LDMC_OP_BROADCAST_IN_DIM) {
      const tpk_epi_in *f = &ep->in[bq];
      if (f->kind == EPI_FULL) {
        tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, ms, ns, dst, tn, f->slot[s], tn, 0, 0, 0.0f);
      } else { /* ones times the vector: exact (signs of zero, NaNs) */
        tpk_vec(e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_FILL, 0, ms, ns, dst, tn, dst, tn, 0, 0, 1.0f);
        tpk_vec(e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, f->kind == EPI_ROW ? LDMC_TPU_BC_ROW : LDMC_TPU_BC_COL, ms, ns, dst,
                tn, dst, tn, f->slot[s], f->kind == EPI_ROW ? 1 : 0, 0.0f);
      }
    } else if (x->n_operands == 1) {
      tpk_vec(e, LDMC_TPU_VEC_UNARY, (unsigned)tpk_unary_func(x->op), 0, ms, ns, dst, tn, src[0], tn, 0, 0, 0.0f);
    } else if ((sj = tpk_scalar_operand(g, x, ch->nodes, ch->n, ch->src, &imm)) >= 0) {
      tpk_vec(e, LDMC_TPU_VEC_BINARY, (unsigned)tpk_binary_func(x->op), LDMC_TPU_BC_SCALAR, ms, ns, dst, tn, src[1 - sj], tn,
              0, 0, imm);
    } else {
      tpk_vec(e, LDMC_TPU_VEC_BINARY, (unsigned)tpk_binary_func(x->op), LDMC_TPU_BC_FULL, ms, ns, dst, tn, src[0], tn,
              src[1], tn, 0.0f);
    }
  }
}
