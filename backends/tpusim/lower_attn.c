/* attention(q, k, v) = softmax(scale q k^T) v as one flash-style kernel:
 * q [..., N, D], k [..., M, D], v [..., M, E], leading dims a batch. Per
 * batch and tile of tq query rows, the Q tile stays in the scratchpad
 * (bf16) while K and V tiles of tkv keys stream in by DMA (bf16, two
 * buffer sets); per key tile: S = Q K^T on the matrix units (load_w
 * transposed from the K tile, D in R-row slices accumulated), acc_move f32,
 * then the online softmax on the vector unit (running max m, p = exp(scale S
 * - m) rounded to bf16 for the next product, running sum l, the output
 * rescaled by exp(m_old - m_new)), P V on the matrix units (E in C-wide
 * chunks, one unit each) added to the f32 output tile; at the end O / l
 * leaves by one DMA. The N x M scores never leave the chip.
 *
 * Software-pipelined: step j of a query tile issues Q K_j^T on the matrix
 * units before block j-1's softmax and P V (two S buffers in the
 * scratchpad), so the vector unit and the matrix units overlap; K_j and
 * V_{j-1} share a buffer set. A narrow value head (E <= 32) computes O^T = V^T
 * P^T so that the output leaves the accumulator in E rows per C queries.
 *
 * tkv <= min(R, C) (a key tile is one weight tile's n for Q K^T and its k
 * for P V); tq from the accumulator (S and P V) and the scratchpad, halved
 * until everything fits. */
#include <inttypes.h>
#include <stdio.h>

#include "backends/tpusim/lower.h"

static void vecx(tpk_em *e, ldmc_tpu_opcode op, unsigned func, unsigned bcast, uint32_t rows, uint32_t cols, uint32_t dst,
                 uint32_t dst_stride, unsigned dst_dt, uint32_t a, uint32_t a_stride, uint32_t b, uint32_t b_stride, float imm) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(op, 0);
  in.u.vec = (ldmc_tpu_vec){.func = (uint8_t)func, .bcast = (uint8_t)bcast, .rows = (uint16_t)rows,
                            .cols = (uint16_t)cols, .dst = dst, .a = a, .b = b, .dst_stride = (uint16_t)dst_stride,
                            .a_stride = (uint16_t)a_stride, .b_stride = (uint16_t)b_stride, .imm = imm,
                            .dst_dtype = (uint8_t)dst_dt, .a_dtype = LDMC_TPU_F32, .b_dtype = LDMC_TPU_F32};
  tpk_push(e, &in);
}

static void loadw(tpk_em *e, unsigned mxu, bool tr, uint32_t k, uint32_t n, uint32_t addr, uint32_t stride) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_LOAD_W, 0);
  in.u.loadw = (ldmc_tpu_loadw){.mxu = (uint8_t)mxu, .dtype = LDMC_TPU_BF16, .transpose = tr, .k = (uint16_t)k,
                                .n = (uint16_t)n, .vmem_addr = addr, .vmem_stride = stride};
  tpk_push(e, &in);
}

static void matmul(tpk_em *e, unsigned mxu, bool acc, uint32_t rows, uint32_t addr, uint32_t stride, uint32_t acc_row) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_MATMUL, 0);
  in.u.mm = (ldmc_tpu_matmul){.mxu = (uint8_t)mxu, .dtype = LDMC_TPU_BF16, .accumulate = acc, .rows = (uint16_t)rows,
                              .vmem_addr = addr, .vmem_stride = stride, .acc_row = acc_row};
  tpk_push(e, &in);
}

static void accmove(tpk_em *e, uint32_t rows, uint32_t cols, uint32_t acc_row, uint32_t addr, uint32_t stride) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_ACC_MOVE, 0);
  in.u.acc = (ldmc_tpu_accmove){.dtype = LDMC_TPU_F32, .rows = (uint16_t)rows, .cols = (uint16_t)cols,
                                .acc_row = acc_row, .vmem_addr = addr, .vmem_stride = stride};
  tpk_push(e, &in);
}

static uint64_t attn_vmem(uint64_t tq, uint64_t tkv, uint64_t D, uint64_t E) {
  return TPK_NBUF * (2 * tkv * D + 2 * tkv * E) /* K, V */ + TPK_NBUF * (2 * tq * D + 4 * tq * E) /* Q, O */ +
         2 * 4 * tq * tkv + 2 * tq * tkv + 4 * tq * E /* two S, P, PV */ + 4 * 4 * tq /* m, mb, alpha, l */ + 64 * 16;
}

const char *tpk_attention_why_not(const ldmc_graph *g, const ldmc_node *n) {
  if (n->n_operands != 3) return "attention needs q, k, v";
  for (int j = 0; j < 3; j++)
    if (g && g->nodes[n->operands[j]].dtype != LDMC_F32) return "only f32 operands are lowered";
  const ldmc_shape *q = &n->shape;
  if (q->rank < 2) return "attention needs rank >= 2";
  int64_t D = g ? g->nodes[n->operands[0]].shape.dims[q->rank - 1] : 1, E = q->dims[q->rank - 1];
  if (D < 1 || E < 1) return "an empty head dim is not lowered";
  if (D > TPK_MAX_DIM || E > TPK_MAX_DIM) return "head dims above 65535 are not lowered";
  return NULL;
}

ldmc_status tpk_lower_attention(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  const ldmc_shape *qs = &g->nodes[n->operands[0]].shape, *ks = &g->nodes[n->operands[1]].shape;
  uint32_t numel, dummy;
  LDMC_TRY(tpk_numel32(g, id, &numel));
  for (int j = 0; j < 3; j++) LDMC_TRY(tpk_numel32(g, n->operands[j], &dummy));
  const char *why = tpk_attention_why_not(g, n);
  if (why) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d attention: %s", (int)id, why);
  int r = qs->rank;
  uint64_t B = 1, N = (uint64_t)qs->dims[r - 2], D = (uint64_t)qs->dims[r - 1], M = (uint64_t)ks->dims[r - 2],
           E = (uint64_t)n->shape.dims[r - 1];
  for (int i = 0; i < r - 2; i++) B *= (uint64_t)qs->dims[i];
  k->node = id;
  k->n_bufs = 4;
  for (int j = 0; j < 3; j++) k->buf_node[j] = n->operands[j];
  k->buf_node[3] = id;
  if (numel == 0) return LDMC_OK;
  if (M == 0) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d attention: no keys (not lowered)", (int)id);
  uint64_t R = (uint64_t)t->mxu_rows, Cc = (uint64_t)t->mxu_cols, U = (uint64_t)t->mxu_count,
           acc_rows = ldmc_tpu_target_acc_rows(t);
  uint64_t tkv = R < Cc ? R : Cc;
  if (tkv > M) tkv = M;
  uint64_t nE = (E + Cc - 1) / Cc, nD = (D + R - 1) / R;
  /* a narrow value head (E <= 32) computes O^T = V^T P^T: P's query chunks are the weights, V^T (loaded
   * transposed: E column DMAs) the E activation rows, so a block's output leaves the accumulator in E
   * rows per C queries instead of one row per query (the accumulator port moves a row per cycle) */
  bool vt = E <= 32 && E <= Cc;
  /* accumulator: the S region (one: the next block's Q K^T waits only for this block's acc_move, a
   * second region measured no faster as it halves tq), then the output's */
#define ACC_NEED(q) ((q) + (vt ? ((q) + Cc - 1) / Cc * E : nE * (q)))
  uint64_t tq = N < TPK_MAX_DIM ? N : TPK_MAX_DIM;
  while (tq > 1 && (attn_vmem(tq, tkv, D, E) > t->vmem_bytes || ACC_NEED(tq) > acc_rows)) tq = (tq + 1) / 2;
  while (tkv > 1 && attn_vmem(tq, tkv, D, E) > t->vmem_bytes) tkv = (tkv + 1) / 2;
  if (attn_vmem(tq, tkv, D, E) > t->vmem_bytes || ACC_NEED(tq) > acc_rows)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d attention: the scratchpad (%" PRIu64 " bytes) holds no tile",
                      (int)id, t->vmem_bytes);
#undef ACC_NEED
  snprintf(k->tile_desc, sizeof k->tile_desc, "flash tile q%" PRIu64 " kv%" PRIu64 " (D %" PRIu64 ", E %" PRIu64 "%s)", tq,
           tkv, D, E, vt ? ", O^T" : "");
  tpk_em e;
  tpk_em_init(&e, t, &k->prog);
  uint32_t vK[TPK_NBUF], vV[TPK_NBUF], vQ[TPK_NBUF], vO[TPK_NBUF], vS[2];
  for (int s = 0; s < TPK_NBUF; s++) {
    vK[s] = tpk_vmem_alloc(&e, 2 * tkv * D), vV[s] = tpk_vmem_alloc(&e, 2 * tkv * E);
    vQ[s] = tpk_vmem_alloc(&e, 2 * tq * D), vO[s] = tpk_vmem_alloc(&e, 4 * tq * E);
  }
  vS[0] = tpk_vmem_alloc(&e, 4 * tq * tkv), vS[1] = tpk_vmem_alloc(&e, 4 * tq * tkv);
  uint32_t vP = tpk_vmem_alloc(&e, 2 * tq * tkv), vPV = tpk_vmem_alloc(&e, 4 * tq * E), vm = tpk_vmem_alloc(&e, 4 * tq),
           vmb = tpk_vmem_alloc(&e, 4 * tq), val = tpk_vmem_alloc(&e, 4 * tq), vl = tpk_vmem_alloc(&e, 4 * tq);
  const uint32_t accS[2] = {0, 0}, accPV = (uint32_t)tq; /* PV chunk c at accPV + c tq (O^T: + c E) */
  const float scale = (float)n->attrs.scale;
  uint64_t nq = (N + tq - 1) / tq, nkv = (M + tkv - 1) / tkv;
  /* software pipeline: step j of a query tile loads K_j and V_{j-1}, issues Q K_j^T, then block j-1's softmax
   * and P V (the vector unit works while the matrix units compute the next scores), then moves S_j out of
   * the accumulator; step nkv loads V_last and finishes. */
  int64_t ntiles = (int64_t)(B * nq), nsteps = ntiles * (int64_t)(nkv + 1), step = 0, tile = 0;
  const uint32_t TQ = (uint32_t)tq, TKV = (uint32_t)tkv, DD = (uint32_t)D, EE = (uint32_t)E;
  for (uint64_t b = 0; b < B && e.st == LDMC_OK; b++)
    for (uint64_t qi = 0; qi < nq && e.st == LDMC_OK; qi++, tile++) {
      int o = (int)(tile % TPK_NBUF);
      uint32_t q0 = (uint32_t)(qi * tq), qr = tpk_min32(tq, N - q0);
      uint32_t nu = tpk_min32(U, qr), rs = (qr + nu - 1) / nu; /* query rows per unit */
      for (uint64_t j = 0; j <= nkv && e.st == LDMC_OK; j++, step++) {
        int s = (int)(step % TPK_NBUF);
        size_t begin = k->prog.count;
        bool has_qk = j < nkv, has_pv = j > 0;
        uint32_t k0 = (uint32_t)(j * tkv), kr = has_qk ? tpk_min32(tkv, M - k0) : 0;
        /* block jj = j - 1: its keys, its S buffer */
        uint64_t jj = j - 1;
        uint32_t pk0 = (uint32_t)(jj * tkv), pkr = has_pv ? tpk_min32(tkv, M - pk0) : 0;
        bool first = jj == 0, last = j == nkv;
        if (j == 0) tpk_dma_load(&e, 0, (uint32_t)((b * N + q0) * D), DD, qr, DD, vQ[o], DD, LDMC_TPU_BF16);
        if (has_qk) tpk_dma_load(&e, 1, (uint32_t)((b * M + k0) * D), DD, kr, DD, vK[s], DD, LDMC_TPU_BF16);
        if (has_pv) {
          if (vt) /* V^T: row c of the block is column c of V */
            for (uint32_t c = 0; c < EE; c++)
              tpk_dma_load(&e, 2, (uint32_t)((b * M + pk0) * E + c), EE, pkr, 1, vV[s] + 2 * c * TKV, 1, LDMC_TPU_BF16);
          else
            tpk_dma_load(&e, 2, (uint32_t)((b * M + pk0) * E), EE, pkr, EE, vV[s], EE, LDMC_TPU_BF16);
        }
        if (has_qk) /* S_j = Q K_j^T: D in R-row slices, accumulated; the query rows split over the units */
          for (uint32_t d = 0; d < nD; d++) {
            uint32_t d0 = d * (uint32_t)R, dk = tpk_min32(R, D - d0);
            for (uint32_t u = 0; u < nu && u * rs < qr; u++) loadw(&e, u, true, dk, kr, vK[s] + 2 * d0, DD);
            for (uint32_t u = 0; u < nu && u * rs < qr; u++)
              matmul(&e, u, d > 0, tpk_min32(rs, qr - u * rs), vQ[o] + 2 * (u * rs * DD + d0), DD, accS[j % 2] + u * rs);
          }
        if (has_pv) {
          uint32_t S = vS[jj % 2];
          /* online softmax over block jj: s = scale S; m_new = max(m, max_row s); p = exp(s - m_new) */
          vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_SCALAR, qr, pkr, S, TKV, LDMC_TPU_F32, S, TKV, 0, 0, scale);
          if (first) {
            vecx(&e, LDMC_TPU_VEC_REDUCE, LDMC_TPU_R_MAX, 0, qr, pkr, vm, 1, LDMC_TPU_F32, S, TKV, 0, 0, 0.0f);
          } else {
            vecx(&e, LDMC_TPU_VEC_REDUCE, LDMC_TPU_R_MAX, 0, qr, pkr, vmb, 1, LDMC_TPU_F32, S, TKV, 0, 0, 0.0f);
            vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MAX, LDMC_TPU_BC_FULL, qr, 1, vmb, 1, LDMC_TPU_F32, vmb, 1, vm, 1, 0.0f);
            /* alpha = exp(m_old - m_new), then m = m_new */
            vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_SUB, LDMC_TPU_BC_FULL, qr, 1, val, 1, LDMC_TPU_F32, vm, 1, vmb, 1, 0.0f);
            vecx(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_EXP, 0, qr, 1, val, 1, LDMC_TPU_F32, val, 1, 0, 0, 0.0f);
            vecx(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_COPY, 0, qr, 1, vm, 1, LDMC_TPU_F32, vmb, 1, 0, 0, 0.0f);
          }
          vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_SUB, LDMC_TPU_BC_ROW, qr, pkr, S, TKV, LDMC_TPU_F32, S, TKV, vm, 1, 0.0f);
          vecx(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_EXP, 0, qr, pkr, vP, TKV, LDMC_TPU_BF16, S, TKV, 0, 0, 0.0f);
          /* l = alpha l + sum_row p (of the bf16 p the product uses) */
          if (first) vecx(&e, LDMC_TPU_VEC_UNARY, LDMC_TPU_U_FILL, 0, qr, 1, vl, 1, LDMC_TPU_F32, vl, 1, 0, 0, 0.0f);
          else vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_FULL, qr, 1, vl, 1, LDMC_TPU_F32, vl, 1, val, 1, 0.0f);
          {
            ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_VEC_REDUCE, 0);
            in.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_R_SUM, .axis = LDMC_TPU_AX_ROWS, .accumulate = 1,
                                      .rows = (uint16_t)qr, .cols = (uint16_t)pkr, .dst = vl, .a = vP, .dst_stride = 1,
                                      .a_stride = (uint16_t)TKV, .dst_dtype = LDMC_TPU_F32, .a_dtype = LDMC_TPU_BF16,
                                      .b_dtype = LDMC_TPU_F32};
            tpk_push(&e, &in);
          }
          if (vt) { /* O^T block = V^T P^T, per C queries: weights P^T (P's rows, transposed), E rows streamed */
            uint32_t nqc = (qr + (uint32_t)Cc - 1) / (uint32_t)Cc;
            for (uint32_t c0 = 0; c0 < nqc; c0 += (uint32_t)U) {
              for (uint32_t c = c0; c < nqc && c < c0 + U; c++)
                loadw(&e, c - c0, true, pkr, tpk_min32(Cc, qr - c * Cc), vP + 2 * c * (uint32_t)Cc * TKV, TKV);
              for (uint32_t c = c0; c < nqc && c < c0 + U; c++) matmul(&e, c - c0, false, EE, vV[s], TKV, accPV + c * EE);
            }
            uint32_t dst = first ? vO[o] : vPV;
            if (!first) /* O^T *= alpha per query (column) */
              vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_COL, EE, qr, vO[o], TQ, LDMC_TPU_F32, vO[o], TQ, val,
                   0, 0.0f);
            for (uint32_t c = 0; c < nqc; c++)
              accmove(&e, EE, tpk_min32(Cc, qr - c * Cc), accPV + c * EE, dst + 4 * c * (uint32_t)Cc, TQ);
            if (!first)
              vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_ADD, LDMC_TPU_BC_FULL, EE, qr, vO[o], TQ, LDMC_TPU_F32, vO[o], TQ, vPV,
                   TQ, 0.0f);
            if (last) {
              vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_DIV, LDMC_TPU_BC_COL, EE, qr, vO[o], TQ, LDMC_TPU_F32, vO[o], TQ, vl, 0,
                   0.0f);
              for (uint32_t c = 0; c < EE; c++) /* column c of the output from row c of O^T */
                tpk_dma_store(&e, 3, (uint32_t)((b * N + q0) * E + c), EE, qr, 1, vO[o] + 4 * c * TQ, 1);
            }
          } else { /* P V: E in C-wide chunks; the query rows split over the units */
            for (uint32_t c = 0; c < nE; c++) {
              uint32_t c0 = c * (uint32_t)Cc, cn = tpk_min32(Cc, E - c0);
              for (uint32_t u = 0; u < nu && u * rs < qr; u++) loadw(&e, u, false, pkr, cn, vV[s] + 2 * c0, EE);
              for (uint32_t u = 0; u < nu && u * rs < qr; u++)
                matmul(&e, u, false, tpk_min32(rs, qr - u * rs), vP + 2 * u * rs * TKV, TKV, accPV + c * TQ + u * rs);
            }
            if (first) {
              for (uint32_t c = 0; c < nE; c++)
                accmove(&e, qr, tpk_min32(Cc, E - c * Cc), accPV + c * TQ, vO[o] + 4 * c * (uint32_t)Cc, EE);
            } else {
              vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_MUL, LDMC_TPU_BC_ROW, qr, EE, vO[o], EE, LDMC_TPU_F32, vO[o], EE, val,
                   1, 0.0f);
              for (uint32_t c = 0; c < nE; c++)
                accmove(&e, qr, tpk_min32(Cc, E - c * Cc), accPV + c * TQ, vPV + 4 * c * (uint32_t)Cc, EE);
              vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_ADD, LDMC_TPU_BC_FULL, qr, EE, vO[o], EE, LDMC_TPU_F32, vO[o], EE, vPV,
                   EE, 0.0f);
            }
            if (last) {
              vecx(&e, LDMC_TPU_VEC_BINARY, LDMC_TPU_B_DIV, LDMC_TPU_BC_ROW, qr, EE, vO[o], EE, LDMC_TPU_F32, vO[o], EE, vl,
                   1, 0.0f);
              tpk_dma_store(&e, 3, (uint32_t)((b * N + q0) * E), EE, qr, EE, vO[o], EE);
            }
          }
        }
        if (has_qk) accmove(&e, qr, kr, accS[j % 2], vS[j % 2], TKV); /* S_j, read by the next step's softmax */
        tpk_step_tokens(&e, begin, step, nsteps, tile, j == 0, last, ntiles);
      }
    }
  return e.st;
}
