/* dot_general on the matrix units: out[b][m][n] = sum_k A[b][m][k] W[b][k][n]
 * with lhs laid out [batch..., M..., K...] and rhs [batch..., K..., N...] or,
 * transposed, [batch..., N..., K...] (loaded with load_w ... transposed, as
 * for Q K^T). Operands are DMA'd into the scratchpad as bf16 (the rounding
 * the matrix units apply anyway), products accumulate in f32 in the
 * accumulator, and each output tile leaves by acc_move (f32) and DMA.
 *
 * Tiles: tn <= C x units (each unit holds the weights of one C-wide column
 * chunk, so an activation tile is loaded once for all of them), tk <= R x
 * units (a step's K block, R rows per weight tile), tm <= the accumulator
 * rows / (2 x chunks) (two output tiles in flight, one accumulator region
 * per chunk); then halved, largest first, until both buffer sets and both
 * output tiles fit the scratchpad. With a chain (lower_epi.c) each output
 * tile gets the chain's vector ops after acc_move and the root is stored. */
#include <inttypes.h>
#include <stdio.h>

#include "backends/tpusim/lower.h"

typedef struct dot_form {
  uint64_t B, M, K, N;
  bool transposed; /* rhs is [batch, N, K] */
} dot_form;

static ldmc_status dot_form_of(const ldmc_graph *g, int32_t id, dot_form *f) {
  const ldmc_node *n = &g->nodes[id];
  const ldmc_shape *l = &g->nodes[n->operands[0]].shape, *r = &g->nodes[n->operands[1]].shape;
  const ldmc_attrs *a = &n->attrs;
  int nb = a->lhs_batch.n, nc = a->lhs_contract.n;
  bool ok = true, kn = true, nk = true;
  for (int i = 0; i < nb; i++) ok = ok && a->lhs_batch.v[i] == i && a->rhs_batch.v[i] == i;
  for (int i = 0; i < nc; i++) {
    ok = ok && a->lhs_contract.v[i] == l->rank - nc + i;
    kn = kn && a->rhs_contract.v[i] == nb + i;
    nk = nk && a->rhs_contract.v[i] == r->rank - nc + i;
  }
  if (!ok || !(kn || nk))
    return ldmc_error(LDMC_ERR_UNSUPPORTED,
                      "tpusim: %%%d dot_general: layout not lowered (v0 needs lhs [batch, M, K] and rhs [batch, K, N] "
                      "or [batch, N, K], batch dims leading and in order)",
                      (int)id);
  f->B = f->M = f->K = f->N = 1;
  for (int i = 0; i < nb; i++) f->B *= (uint64_t)l->dims[i];
  for (int i = nb; i < l->rank - nc; i++) f->M *= (uint64_t)l->dims[i];
  for (int i = l->rank - nc; i < l->rank; i++) f->K *= (uint64_t)l->dims[i];
  for (int i = nb; i < r->rank; i++) f->N *= (uint64_t)r->dims[i];
  f->N = f->K ? f->N / f->K : 0;
  f->transposed = !kn;
  return LDMC_OK;
}

static uint64_t dot_vmem(uint64_t tm, uint64_t tk, uint64_t tn) {
  return TPK_NBUF * (2 * tm * tk + 2 * tk * tn + 4 * tm * tn) + 64 * 3 * TPK_NBUF;
}

ldmc_status tpk_lower_dot(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  return tpk_lower_dot_chain(g, id, NULL, t, k);
}

ldmc_status tpk_lower_dot_chain(const ldmc_graph *g, int32_t id, const tpk_chain *ch, const ldmc_tpu_target *t,
                                tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  uint32_t numel, ln, rn;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  LDMC_TRY(tpk_numel32(g, n->operands[0], &ln));
  LDMC_TRY(tpk_numel32(g, n->operands[1], &rn));
  dot_form f = {0};
  LDMC_TRY(dot_form_of(g, id, &f));
  k->node = id;
  k->n_bufs = 2;
  k->buf_node[0] = n->operands[0];
  k->buf_node[1] = n->operands[1];
  tpk_epi ep = {0};
  if (ch) {
    const uint64_t view[4] = {1, f.B, f.M, f.N};
    LDMC_TRY(tpk_epi_init(&ep, g, ch, view, k));
    k->node = ch->nodes[ch->n - 1];
    k->epilogue = true;
  }
  int out_buf = k->n_bufs;
  k->buf_node[k->n_bufs++] = k->node;
  if (numel == 0) return LDMC_OK;
  if (f.K == 0)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d dot_general: an empty contraction is not lowered (v0)", (int)id);
  uint64_t R = (uint64_t)t->mxu_rows, Cc = (uint64_t)t->mxu_cols, U = (uint64_t)t->mxu_count,
           acc_rows = ldmc_tpu_target_acc_rows(t);
  uint64_t tn = f.N < Cc * U ? f.N : Cc * U, tk = f.K < R * U ? f.K : R * U;
  uint64_t nch = (tn + Cc - 1) / Cc, tm = acc_rows / (TPK_NBUF * nch);
  if (tm < 1) tm = 1;
  if (tm > f.M) tm = f.M;
  if (tm > TPK_MAX_DIM) tm = TPK_MAX_DIM;
  if (tk > TPK_MAX_DIM) tk = TPK_MAX_DIM;
  while (dot_vmem(tm, tk, tn) + (ch ? tpk_epi_vmem(&ep, tm, tn) : 0) > t->vmem_bytes || nch * tm > acc_rows) {
    if (tm == 1 && tk == 1 && tn == 1)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d dot_general: the scratchpad (%" PRIu64 " bytes) holds no tile",
                        (int)id, t->vmem_bytes);
    if (tm >= tk && tm >= tn) tm = (tm + 1) / 2;
    else if (tk >= tn) tk = (tk + 1) / 2;
    else tn = (tn + 1) / 2, nch = (tn + Cc - 1) / Cc;
  }
  int tl = snprintf(k->tile_desc, sizeof k->tile_desc, "tile m%" PRIu64 " k%" PRIu64 " n%" PRIu64 "%s", tm, tk, tn,
                    f.transposed ? " rhs^T" : "");
  if (ch && tl > 0 && (size_t)tl < sizeof k->tile_desc)
    snprintf(k->tile_desc + tl, sizeof k->tile_desc - (size_t)tl, ", epilogue %d nodes", ch->n);
  uint64_t nacc = acc_rows >= TPK_NBUF * nch * tm ? TPK_NBUF : 1; /* accumulator region sets */
  if (k->pack_ok) k->pk_buf = 1, k->pk_elems = rn;
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vA[TPK_NBUF], vB[TPK_NBUF], vO[TPK_NBUF];
  for (int s = 0; s < TPK_NBUF; s++) {
    vA[s] = tpk_vmem_alloc(&e, 2 * tm * tk);
    vB[s] = tpk_vmem_alloc(&e, 2 * tk * tn);
    vO[s] = tpk_vmem_alloc(&e, 4 * tm * tn);
  }
  if (ch) tpk_epi_alloc(&ep, &e, (uint32_t)tm, (uint32_t)tn);
  int64_t nm = (int64_t)((f.M + tm - 1) / tm), nn = (int64_t)((f.N + tn - 1) / tn), nk = (int64_t)((f.K + tk - 1) / tk);
  int64_t ntiles = (int64_t)f.B * nm * nn, nsteps = ntiles * nk, step = 0, tile = 0;
  for (uint64_t b = 0; b < f.B && e.st == LDMC_OK; b++)
    for (int64_t mi = 0; mi < nm && e.st == LDMC_OK; mi++)
      for (int64_t ni = 0; ni < nn && e.st == LDMC_OK; ni++, tile++) {
        uint64_t m0 = (uint64_t)mi * tm, n0 = (uint64_t)ni * tn;
        uint32_t ms = tpk_min32(tm, f.M - m0), ns = tpk_min32(tn, f.N - n0), nchunks = (uint32_t)((ns + Cc - 1) / Cc);
        /* accumulator rows of column chunk u of this tile */
        uint32_t acc0 = (uint32_t)((uint64_t)(tile % (int64_t)nacc) * nch * tm);
        int o = (int)(tile % TPK_NBUF);
        for (int64_t ki = 0; ki < nk && e.st == LDMC_OK; ki++, step++) {
          int s = (int)(step % TPK_NBUF);
          uint64_t k0 = (uint64_t)ki * tk;
          uint32_t ks = tpk_min32(tk, f.K - k0);
          size_t begin = k->prog.count;
          tpk_dma_load(&e, 0, (uint32_t)(b * f.M * f.K + m0 * f.K + k0), (uint32_t)f.K, ms, ks, vA[s], (uint32_t)tk,
                       LDMC_TPU_BF16);
          if (k->pack_ok) /* packed: tile (b, ni, ki) at b K N + n0 K + k0 ns, back to back */
            tpk_dma_load_packed(&e, k, 1, (uint32_t)(b * f.K * f.N + n0 * f.K + k0 * ns), f.transposed ? ns : ks,
                                f.transposed ? ks : ns, vB[s], (uint32_t)(f.transposed ? tk : tn), mi == 0,
                                (uint32_t)(f.transposed ? b * f.N * f.K + n0 * f.K + k0 : b * f.K * f.N + k0 * f.N + n0),
                                (uint32_t)(f.transposed ? f.K : f.N));
          else if (f.transposed)
            tpk_dma_load(&e, 1, (uint32_t)(b * f.N * f.K + n0 * f.K + k0), (uint32_t)f.K, ns, ks, vB[s], (uint32_t)tk,
                         LDMC_TPU_BF16);
          else
            tpk_dma_load(&e, 1, (uint32_t)(b * f.K * f.N + k0 * f.N + n0), (uint32_t)f.N, ks, ns, vB[s], (uint32_t)tn,
                         LDMC_TPU_BF16);
          /* per R-row slice of the K block: every unit's weights first (they shift in while earlier units stream) */
          uint32_t nsub = (uint32_t)((ks + R - 1) / R);
          for (uint32_t j = 0; j < nsub; j++) {
            uint32_t kk0 = j * (uint32_t)R, kk = tpk_min32(R, ks - kk0);
            for (uint32_t u = 0; u < nchunks; u++) {
              uint32_t c0 = u * (uint32_t)Cc, nsz = tpk_min32(Cc, ns - c0);
              ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_LOAD_W, 0);
              in.u.loadw = (ldmc_tpu_loadw){
                  .mxu = (uint8_t)u, .dtype = LDMC_TPU_BF16, .transpose = f.transposed, .k = (uint16_t)kk,
                  .n = (uint16_t)nsz,
                  .vmem_addr = f.transposed ? vB[s] + 2 * (c0 * (uint32_t)tk + kk0) : vB[s] + 2 * (kk0 * (uint32_t)tn + c0),
                  .vmem_stride = f.transposed ? (uint32_t)tk : (uint32_t)tn};
              tpk_push(&e, &in);
            }
            tpk_matmul_units(&e, nchunks, (uint32_t)ms, vA[s] + 2 * kk0, (uint32_t)tk, acc0, (uint32_t)tm,
                             !(ki == 0 && j == 0));
          }
          bool last = ki + 1 == nk;
          if (last) {
            if (ch) tpk_epi_load(&ep, &e, s, 0, b, m0, n0, ms, ns); /* the chain's operands, with this step's set */
            tpk_acc_to_vmem(&e, nchunks, (uint32_t)ms, (uint32_t)Cc, (uint32_t)ns, acc0, (uint32_t)tm, vO[o], (uint32_t)tn);
            if (ch) tpk_epi_compute(&ep, &e, s, vO[o], ms, ns);
            tpk_dma_store(&e, out_buf, (uint32_t)(b * f.M * f.N + m0 * f.N + n0), (uint32_t)f.N, ms, ns, vO[o],
                          (uint32_t)tn);
          }
          tpk_step_tokens(&e, begin, step, nsteps, tile, ki == 0, last, ntiles);
        }
      }
  return e.st;
}
