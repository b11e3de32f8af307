/* Instruction emission shared by the tpusim lowerings: the scratchpad
 * allocator, instruction builders, and the token flags of a double-buffered
 * tile pipeline (docs/backends/tpusim.md, "Queues and tokens"). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/lower.h"

void tpk_em_init(tpk_em *e, const ldmc_tpu_target *t, ldmc_tpu_program *p) {
  memset(e, 0, sizeof *e);
  e->t = t;
  e->p = p;
}

uint32_t tpk_vmem_alloc(tpk_em *e, uint64_t bytes) {
  uint64_t a = ((uint64_t)e->vmem_used + 63) & ~(uint64_t)63;
  if (a + bytes > e->t->vmem_bytes || a + bytes > UINT32_MAX) {
    if (e->st == LDMC_OK)
      e->st = ldmc_error(LDMC_ERR_INTERNAL, "tpusim: scratchpad of %" PRIu64 " bytes exhausted (%" PRIu64 " more needed at %" PRIu64 ")",
                         e->t->vmem_bytes, bytes, a);
    return 0;
  }
  e->vmem_used = (uint32_t)(a + bytes);
  return (uint32_t)a;
}

void tpk_push(tpk_em *e, const ldmc_tpu_insn *in) {
  if (e->st != LDMC_OK) return;
  e->st = ldmc_tpu_program_push(e->p, in);
}

void tpk_dma_load(tpk_em *e, int buf, uint32_t off, uint32_t stride, uint32_t rows, uint32_t cols, uint32_t vaddr,
                  uint32_t vstride, unsigned vdtype) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_LOAD, 0);
  in.u.dma = (ldmc_tpu_dma){.buf = (uint8_t)buf, .mem_dtype = LDMC_TPU_F32, .vmem_dtype = (uint8_t)vdtype,
                            .rows = (uint16_t)rows, .cols = (uint16_t)cols, .mem_offset = off, .mem_stride = stride,
                            .vmem_addr = vaddr, .vmem_stride = vstride};
  tpk_push(e, &in);
}

void tpk_dma_load_packed(tpk_em *e, tpk_kernel *k, int buf, uint32_t off, uint32_t rows, uint32_t cols, uint32_t vaddr,
                         uint32_t vstride, bool record, uint32_t src, uint32_t stride) {
  if (record && e->st == LDMC_OK) {
    if (k->pk_n == k->pk_cap) {
      int cap = k->pk_cap ? 2 * k->pk_cap : 16;
      tpk_pack_tile *np = realloc(k->pk, sizeof *np * (size_t)cap);
      if (!np) {
        e->st = ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory packing weights");
        return;
      }
      k->pk = np, k->pk_cap = cap;
    }
    k->pk[k->pk_n++] = (tpk_pack_tile){.src = src, .rows = rows, .cols = cols, .stride = stride, .dst = off};
  }
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_LOAD, 0);
  in.u.dma = (ldmc_tpu_dma){.buf = (uint8_t)buf, .mem_dtype = LDMC_TPU_BF16, .vmem_dtype = LDMC_TPU_BF16,
                            .rows = (uint16_t)rows, .cols = (uint16_t)cols, .mem_offset = off, .mem_stride = cols,
                            .vmem_addr = vaddr, .vmem_stride = vstride};
  tpk_push(e, &in);
}

void tpk_kernel_release(tpk_kernel *k) {
  ldmc_tpu_program_free(&k->prog);
  free(k->pk);
  k->pk = NULL;
  k->pk_n = k->pk_cap = 0;
}

void tpk_dma_store(tpk_em *e, int buf, uint32_t off, uint32_t stride, uint32_t rows, uint32_t cols, uint32_t vaddr,
                   uint32_t vstride) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_STORE, 0);
  in.u.dma = (ldmc_tpu_dma){.buf = (uint8_t)buf, .mem_dtype = LDMC_TPU_F32, .vmem_dtype = LDMC_TPU_F32,
                            .rows = (uint16_t)rows, .cols = (uint16_t)cols, .mem_offset = off, .mem_stride = stride,
                            .vmem_addr = vaddr, .vmem_stride = vstride};
  tpk_push(e, &in);
}

void tpk_vec(tpk_em *e, ldmc_tpu_opcode op, unsigned func, unsigned bcast, uint32_t rows, uint32_t cols, uint32_t dst,
             uint32_t dst_stride, uint32_t a, uint32_t a_stride, uint32_t b, uint32_t b_stride, float imm) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(op, 0);
  in.u.vec = (ldmc_tpu_vec){.func = (uint8_t)func, .bcast = (uint8_t)bcast, .rows = (uint16_t)rows,
                            .cols = (uint16_t)cols, .dst = dst, .a = a, .b = b, .dst_stride = (uint16_t)dst_stride,
                            .a_stride = (uint16_t)a_stride, .b_stride = (uint16_t)b_stride, .imm = imm,
                            .dst_dtype = LDMC_TPU_F32, .a_dtype = LDMC_TPU_F32, .b_dtype = LDMC_TPU_F32};
  tpk_push(e, &in);
}

/* The flags follow from three counters per step: a load waits for the
 * compute of step - NBUF to free its buffer set, compute waits for its loads
 * (and, finishing a tile, for the store of tile - NBUF to free the output
 * set), a store waits for its compute. Every "free" token is pushed only when
 * someone will pop it, so the channels end empty. */
void tpk_step_tokens(tpk_em *e, size_t begin, int64_t step, int64_t nsteps, int64_t tile, bool opens, bool closes,
                     int64_t ntiles) {
  if (e->st != LDMC_OK) return;
  ldmc_tpu_insn *in = e->p->insns;
  size_t end = e->p->count;
  size_t first[LDMC_TPU_Q_COUNT], last[LDMC_TPU_Q_COUNT];
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) first[q] = last[q] = SIZE_MAX;
  for (size_t i = begin; i < end; i++) {
    ldmc_tpu_queue q = ldmc_tpu_insn_queue(&in[i]);
    if (q >= LDMC_TPU_Q_COUNT) continue;
    if (first[q] == SIZE_MAX) first[q] = i;
    last[q] = i;
  }
  if (first[LDMC_TPU_Q_LOAD] == SIZE_MAX || first[LDMC_TPU_Q_COMPUTE] == SIZE_MAX ||
      closes != (first[LDMC_TPU_Q_STORE] != SIZE_MAX)) {
    e->st = ldmc_error(LDMC_ERR_INTERNAL, "tpusim: pipeline step %" PRId64 " lacks a load, compute or store", step);
    return;
  }
  if (step >= TPK_NBUF) in[first[LDMC_TPU_Q_LOAD]].dep |= LDMC_TPU_POP_NEXT;
  in[last[LDMC_TPU_Q_LOAD]].dep |= LDMC_TPU_PUSH_NEXT;
  in[first[LDMC_TPU_Q_COMPUTE]].dep |= LDMC_TPU_POP_PREV;
  if (opens && tile >= TPK_NBUF) in[first[LDMC_TPU_Q_COMPUTE]].dep |= LDMC_TPU_POP_NEXT;
  if (step + TPK_NBUF < nsteps) in[last[LDMC_TPU_Q_COMPUTE]].dep |= LDMC_TPU_PUSH_PREV;
  if (closes) {
    in[last[LDMC_TPU_Q_COMPUTE]].dep |= LDMC_TPU_PUSH_NEXT;
    in[first[LDMC_TPU_Q_STORE]].dep |= LDMC_TPU_POP_PREV;
    if (tile + TPK_NBUF < ntiles) in[last[LDMC_TPU_Q_STORE]].dep |= LDMC_TPU_PUSH_PREV;
  }
}

int tpk_unary_func(ldmc_op op) {
  switch (op) {
    case LDMC_OP_NEG: return LDMC_TPU_U_NEG;
    case LDMC_OP_ABS: return LDMC_TPU_U_ABS;
    case LDMC_OP_EXP: return LDMC_TPU_U_EXP;
    case LDMC_OP_LOG: return LDMC_TPU_U_LOG;
    case LDMC_OP_SQRT: return LDMC_TPU_U_SQRT;
    case LDMC_OP_RSQRT: return LDMC_TPU_U_RSQRT;
    case LDMC_OP_TANH: return LDMC_TPU_U_TANH;
    case LDMC_OP_ERF: return LDMC_TPU_U_ERF;
    case LDMC_OP_LOGISTIC: return LDMC_TPU_U_SIGMOID;
    default: return -1;
  }
}

int tpk_binary_func(ldmc_op op) {
  switch (op) {
    case LDMC_OP_ADD: return LDMC_TPU_B_ADD;
    case LDMC_OP_SUB: return LDMC_TPU_B_SUB;
    case LDMC_OP_MUL: return LDMC_TPU_B_MUL;
    case LDMC_OP_DIV: return LDMC_TPU_B_DIV;
    case LDMC_OP_MAX: return LDMC_TPU_B_MAX;
    case LDMC_OP_MIN: return LDMC_TPU_B_MIN;
    default: return -1;
  }
}

ldmc_status tpk_numel32(const ldmc_graph *g, int32_t id, uint32_t *out) {
  const ldmc_node *n = &g->nodes[id];
  int64_t c;
  LDMC_TRY(ldmc_shape_numel(&n->shape, 4, &c));
  if (c > (int64_t)UINT32_MAX)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s: %" PRId64 " elements exceed 32-bit off-chip offsets", (int)id,
                      ldmc_op_name(n->op), c);
  *out = (uint32_t)c;
  return LDMC_OK;
}

void tpk_matmul_units(tpk_em *e, uint32_t nchunks, uint32_t rows, uint32_t a, uint32_t a_stride, uint32_t acc0,
                      uint32_t tm, bool accumulate) {
  for (uint32_t u = 0; u < nchunks; u++) {
    ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_MATMUL, 0);
    in.u.mm = (ldmc_tpu_matmul){.mxu = (uint8_t)u, .dtype = LDMC_TPU_BF16, .accumulate = accumulate,
                                .rows = (uint16_t)rows, .vmem_addr = a, .vmem_stride = a_stride,
                                .acc_row = acc0 + u * tm};
    tpk_push(e, &in);
  }
}

void tpk_acc_to_vmem(tpk_em *e, uint32_t nchunks, uint32_t rows, uint32_t ucols, uint32_t ns, uint32_t acc0,
                     uint32_t tm, uint32_t out, uint32_t out_stride) {
  for (uint32_t u = 0; u < nchunks; u++) {
    uint32_t c0 = u * ucols;
    ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_ACC_MOVE, 0);
    in.u.acc = (ldmc_tpu_accmove){.dtype = LDMC_TPU_F32, .rows = (uint16_t)rows, .cols = (uint16_t)tpk_min32(ucols, ns - c0),
                                  .acc_row = acc0 + u * tm, .vmem_addr = out + 4 * c0, .vmem_stride = out_stride};
    tpk_push(e, &in);
  }
}

/* An f32 constant holding one value repeated (what folding a scalar's broadcast leaves). */
bool tpk_splat(const ldmc_node *c, float *v) {
  if (c->op != LDMC_OP_CONSTANT || c->dtype != LDMC_F32) return false;
  size_t n = c->attrs.value.nbytes / 4;
  const float *d = c->attrs.value.data;
  if (!n || !d) return false;
  for (size_t i = 1; i < n; i++)
    if (memcmp(&d[i], &d[0], 4) != 0) return false;
  memcpy(v, &d[0], 4);
  return true;
}

int tpk_scalar_operand(const ldmc_graph *g, const ldmc_node *x, const int32_t *nodes, int n, int32_t src, float *imm) {
  if (x->n_operands != 2 || tpk_binary_func(x->op) < 0) return -1;
  for (int j = 1; j >= 0; j--) {
    int32_t o = x->operands[j];
    bool inside = o == src;
    for (int i = 0; i < n && !inside; i++) inside = nodes[i] == o;
    /* operand a only where swapping is exact (add and mul commute) */
    if (inside || (j == 0 && x->op != LDMC_OP_ADD && x->op != LDMC_OP_MUL)) continue;
    if (tpk_splat(&g->nodes[o], imm)) return j;
  }
  return -1;
}
