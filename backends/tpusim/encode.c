/* The fixed 32-byte encoding of tpusim instructions, the names of the ISA's
 * enums, and growing programs. Byte layouts: docs/backends/tpusim.md. */
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/isa.h"

static const char *const k_ops[LDMC_TPU_OPCODE_COUNT] = {"<invalid>", "nop",    "dma_load", "dma_store", "load_w",
                                                         "matmul",    "acc_move", "vec_unary", "vec_binary", "vec_reduce"};
static const char *const k_queues[LDMC_TPU_Q_COUNT] = {"load", "compute", "store"};
static const char *const k_dtypes[LDMC_TPU_DTYPE_COUNT] = {"f32", "bf16"};
static const char *const k_unary[LDMC_TPU_U_COUNT] = {"copy", "neg",   "abs", "fill", "exp", "log",
                                                      "sqrt", "rsqrt", "recip", "tanh", "erf", "sigmoid"};
static const char *const k_binary[LDMC_TPU_B_COUNT] = {"add", "sub", "mul", "div", "max", "min"};
static const char *const k_reduce[LDMC_TPU_R_COUNT] = {"sum", "max", "min"};
static const char *const k_bcast[LDMC_TPU_BC_COUNT] = {"full", "row", "col", "scalar"};

const char *ldmc_tpu_opcode_name(unsigned op) { return op > 0 && op < LDMC_TPU_OPCODE_COUNT ? k_ops[op] : "<bad opcode>"; }
const char *ldmc_tpu_queue_name(unsigned q) { return q < LDMC_TPU_Q_COUNT ? k_queues[q] : "<bad queue>"; }
const char *ldmc_tpu_dtype_name(unsigned dt) { return dt < LDMC_TPU_DTYPE_COUNT ? k_dtypes[dt] : "<bad dtype>"; }
const char *ldmc_tpu_unary_name(unsigned f) { return f < LDMC_TPU_U_COUNT ? k_unary[f] : "<bad unary>"; }
const char *ldmc_tpu_binary_name(unsigned f) { return f < LDMC_TPU_B_COUNT ? k_binary[f] : "<bad binary>"; }
const char *ldmc_tpu_reduce_name(unsigned f) { return f < LDMC_TPU_R_COUNT ? k_reduce[f] : "<bad reduce>"; }
const char *ldmc_tpu_bcast_name(unsigned b) { return b < LDMC_TPU_BC_COUNT ? k_bcast[b] : "<bad bcast>"; }
size_t ldmc_tpu_dtype_size(unsigned dt) { return dt == LDMC_TPU_F32 ? 4 : dt == LDMC_TPU_BF16 ? 2 : 0; }

ldmc_tpu_queue ldmc_tpu_insn_queue(const ldmc_tpu_insn *in) {
  switch (in->op) {
  case LDMC_TPU_NOP: return in->u.nop.queue < LDMC_TPU_Q_COUNT ? (ldmc_tpu_queue)in->u.nop.queue : LDMC_TPU_Q_COUNT;
  case LDMC_TPU_DMA_LOAD: return LDMC_TPU_Q_LOAD;
  case LDMC_TPU_DMA_STORE: return LDMC_TPU_Q_STORE;
  case LDMC_TPU_LOAD_W:
  case LDMC_TPU_MATMUL:
  case LDMC_TPU_ACC_MOVE:
  case LDMC_TPU_VEC_UNARY:
  case LDMC_TPU_VEC_BINARY:
  case LDMC_TPU_VEC_REDUCE: return LDMC_TPU_Q_COMPUTE;
  default: return LDMC_TPU_Q_COUNT;
  }
}

ldmc_tpu_insn ldmc_tpu_insn_make(ldmc_tpu_opcode op, uint8_t dep) {
  ldmc_tpu_insn in;
  memset(&in, 0, sizeof in); /* padding too: instructions compare with memcmp */
  in.op = (uint8_t)op;
  in.dep = dep;
  return in;
}

/* ---- little-endian fields -------------------------------------------------------- */
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bitsf(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static bool bit_ok(uint8_t v) { return v <= 1; }

static ldmc_status check_fields(const ldmc_tpu_insn *in) {
  if (in->dep & ~LDMC_TPU_DEP_MASK) return ldmc_error(LDMC_ERR_INVALID, "dependency flags 0x%x have reserved bits set", in->dep);
  switch (in->op) {
  case LDMC_TPU_NOP:
    if (in->u.nop.queue >= LDMC_TPU_Q_COUNT) return ldmc_error(LDMC_ERR_INVALID, "nop: queue %u out of range", in->u.nop.queue);
    return LDMC_OK;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE:
    if (!bit_ok(in->u.dma.mem_dtype) || !bit_ok(in->u.dma.vmem_dtype))
      return ldmc_error(LDMC_ERR_INVALID, "%s: dtype out of range", ldmc_tpu_opcode_name(in->op));
    return LDMC_OK;
  case LDMC_TPU_LOAD_W:
    if (!bit_ok(in->u.loadw.dtype) || !bit_ok(in->u.loadw.transpose))
      return ldmc_error(LDMC_ERR_INVALID, "load_w: dtype or transpose out of range");
    return LDMC_OK;
  case LDMC_TPU_MATMUL:
    if (!bit_ok(in->u.mm.dtype) || !bit_ok(in->u.mm.accumulate))
      return ldmc_error(LDMC_ERR_INVALID, "matmul: dtype or accumulate out of range");
    return LDMC_OK;
  case LDMC_TPU_ACC_MOVE:
    if (!bit_ok(in->u.acc.dtype)) return ldmc_error(LDMC_ERR_INVALID, "acc_move: dtype out of range");
    return LDMC_OK;
  case LDMC_TPU_VEC_UNARY:
  case LDMC_TPU_VEC_BINARY:
  case LDMC_TPU_VEC_REDUCE: {
    const ldmc_tpu_vec *v = &in->u.vec;
    unsigned nf = in->op == LDMC_TPU_VEC_UNARY ? LDMC_TPU_U_COUNT : in->op == LDMC_TPU_VEC_BINARY ? LDMC_TPU_B_COUNT : LDMC_TPU_R_COUNT;
    if (v->func >= nf) return ldmc_error(LDMC_ERR_INVALID, "%s: function %u out of range", ldmc_tpu_opcode_name(in->op), v->func);
    if (v->bcast >= LDMC_TPU_BC_COUNT || !bit_ok(v->axis) || !bit_ok(v->accumulate) || !bit_ok(v->dst_dtype) ||
        !bit_ok(v->a_dtype) || !bit_ok(v->b_dtype))
      return ldmc_error(LDMC_ERR_INVALID, "%s: bcast, axis, accumulate or dtype out of range", ldmc_tpu_opcode_name(in->op));
    return LDMC_OK;
  }
  default: return ldmc_error(LDMC_ERR_INVALID, "unknown opcode %u", in->op);
  }
}

ldmc_status ldmc_tpu_insn_encode(const ldmc_tpu_insn *in, uint8_t out[LDMC_TPU_INSN_BYTES]) {
  LDMC_TRY(check_fields(in));
  memset(out, 0, LDMC_TPU_INSN_BYTES);
  out[0] = in->op;
  out[1] = in->dep;
  switch (in->op) {
  case LDMC_TPU_NOP: out[2] = in->u.nop.queue; break;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE: {
    const ldmc_tpu_dma *d = &in->u.dma;
    out[2] = d->buf;
    out[3] = (uint8_t)(d->mem_dtype | d->vmem_dtype << 1);
    out[4] = d->pad_top, out[5] = d->pad_bottom, out[6] = d->pad_left, out[7] = d->pad_right;
    put16(out + 8, d->rows), put16(out + 10, d->cols);
    put32(out + 12, d->mem_offset), put32(out + 16, d->mem_stride);
    put32(out + 20, d->vmem_addr), put32(out + 24, d->vmem_stride);
    put32(out + 28, fbits(d->pad_value));
    break;
  }
  case LDMC_TPU_LOAD_W: {
    const ldmc_tpu_loadw *w = &in->u.loadw;
    out[2] = w->mxu;
    out[3] = (uint8_t)(w->dtype | w->transpose << 1);
    put16(out + 4, w->k), put16(out + 6, w->n);
    put32(out + 8, w->vmem_addr), put32(out + 12, w->vmem_stride);
    break;
  }
  case LDMC_TPU_MATMUL: {
    const ldmc_tpu_matmul *m = &in->u.mm;
    out[2] = m->mxu;
    out[3] = (uint8_t)(m->dtype | m->accumulate << 1);
    put16(out + 4, m->rows);
    put32(out + 8, m->vmem_addr), put32(out + 12, m->vmem_stride), put32(out + 16, m->acc_row);
    break;
  }
  case LDMC_TPU_ACC_MOVE: {
    const ldmc_tpu_accmove *a = &in->u.acc;
    out[2] = a->dtype;
    put16(out + 4, a->rows), put16(out + 6, a->cols), put16(out + 8, a->acc_col);
    put32(out + 12, a->acc_row), put32(out + 16, a->vmem_addr), put32(out + 20, a->vmem_stride);
    break;
  }
  default: { /* vector ops */
    const ldmc_tpu_vec *v = &in->u.vec;
    out[2] = v->func;
    out[3] = (uint8_t)(v->bcast | v->axis << 2 | v->accumulate << 3 | v->dst_dtype << 4 | v->a_dtype << 5 | v->b_dtype << 6);
    put16(out + 4, v->rows), put16(out + 6, v->cols);
    put32(out + 8, v->dst), put32(out + 12, v->a), put32(out + 16, v->b);
    put16(out + 20, v->dst_stride), put16(out + 22, v->a_stride), put16(out + 24, v->b_stride);
    put32(out + 28, fbits(v->imm));
    break;
  }
  }
  return LDMC_OK;
}

/* Bytes [from, 32) must be zero except those in used (a bit per byte). */
static ldmc_status check_reserved(const uint8_t *b, uint32_t used) {
  for (int i = 2; i < LDMC_TPU_INSN_BYTES; i++)
    if (!(used >> i & 1) && b[i]) return ldmc_error(LDMC_ERR_FORMAT, "%s: reserved byte %d is 0x%02x, not 0", ldmc_tpu_opcode_name(b[0]), i, b[i]);
  return LDMC_OK;
}
#define BYTES(lo, hi) ((uint32_t)((((uint64_t)1 << ((hi) + 1)) - 1) & ~(((uint64_t)1 << (lo)) - 1)))

ldmc_status ldmc_tpu_insn_decode(const uint8_t b[LDMC_TPU_INSN_BYTES], ldmc_tpu_insn *out) {
  if (b[0] == 0 || b[0] >= LDMC_TPU_OPCODE_COUNT) return ldmc_error(LDMC_ERR_FORMAT, "unknown opcode 0x%02x", b[0]);
  if (b[1] & ~LDMC_TPU_DEP_MASK) return ldmc_error(LDMC_ERR_FORMAT, "dependency byte 0x%02x has reserved bits set", b[1]);
  ldmc_tpu_insn in = ldmc_tpu_insn_make((ldmc_tpu_opcode)b[0], b[1]);
  uint32_t used;
  uint8_t flag_mask;
  switch (in.op) {
  case LDMC_TPU_NOP:
    in.u.nop.queue = b[2];
    used = BYTES(2, 2), flag_mask = 0xff;
    break;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE: {
    ldmc_tpu_dma *d = &in.u.dma;
    d->buf = b[2];
    d->mem_dtype = b[3] & 1, d->vmem_dtype = b[3] >> 1 & 1;
    d->pad_top = b[4], d->pad_bottom = b[5], d->pad_left = b[6], d->pad_right = b[7];
    d->rows = get16(b + 8), d->cols = get16(b + 10);
    d->mem_offset = get32(b + 12), d->mem_stride = get32(b + 16);
    d->vmem_addr = get32(b + 20), d->vmem_stride = get32(b + 24);
    d->pad_value = bitsf(get32(b + 28));
    used = BYTES(2, 31), flag_mask = 0x03;
    break;
  }
  case LDMC_TPU_LOAD_W: {
    ldmc_tpu_loadw *w = &in.u.loadw;
    w->mxu = b[2];
    w->dtype = b[3] & 1, w->transpose = b[3] >> 1 & 1;
    w->k = get16(b + 4), w->n = get16(b + 6);
    w->vmem_addr = get32(b + 8), w->vmem_stride = get32(b + 12);
    used = BYTES(2, 15), flag_mask = 0x03;
    break;
  }
  case LDMC_TPU_MATMUL: {
    ldmc_tpu_matmul *m = &in.u.mm;
    m->mxu = b[2];
    m->dtype = b[3] & 1, m->accumulate = b[3] >> 1 & 1;
    m->rows = get16(b + 4);
    m->vmem_addr = get32(b + 8), m->vmem_stride = get32(b + 12), m->acc_row = get32(b + 16);
    used = BYTES(2, 5) | BYTES(8, 19), flag_mask = 0x03;
    break;
  }
  case LDMC_TPU_ACC_MOVE: {
    ldmc_tpu_accmove *a = &in.u.acc;
    if (b[2] > 1) return ldmc_error(LDMC_ERR_FORMAT, "acc_move: dtype %u out of range", b[2]);
    a->dtype = b[2];
    a->rows = get16(b + 4), a->cols = get16(b + 6), a->acc_col = get16(b + 8);
    a->acc_row = get32(b + 12), a->vmem_addr = get32(b + 16), a->vmem_stride = get32(b + 20);
    used = BYTES(2, 2) | BYTES(4, 9) | BYTES(12, 23), flag_mask = 0xff;
    break;
  }
  default: {
    ldmc_tpu_vec *v = &in.u.vec;
    v->func = b[2];
    v->bcast = b[3] & 3, v->axis = b[3] >> 2 & 1, v->accumulate = b[3] >> 3 & 1;
    v->dst_dtype = b[3] >> 4 & 1, v->a_dtype = b[3] >> 5 & 1, v->b_dtype = b[3] >> 6 & 1;
    v->rows = get16(b + 4), v->cols = get16(b + 6);
    v->dst = get32(b + 8), v->a = get32(b + 12), v->b = get32(b + 16);
    v->dst_stride = get16(b + 20), v->a_stride = get16(b + 22), v->b_stride = get16(b + 24);
    v->imm = bitsf(get32(b + 28));
    used = BYTES(2, 25) | BYTES(28, 31), flag_mask = 0x7f;
    break;
  }
  }
  if (b[3] & ~flag_mask && (used >> 3 & 1))
    return ldmc_error(LDMC_ERR_FORMAT, "%s: reserved bits set in flag byte 0x%02x", ldmc_tpu_opcode_name(in.op), b[3]);
  LDMC_TRY(check_reserved(b, used));
  ldmc_status st = check_fields(&in);
  if (st != LDMC_OK) return ldmc_error(LDMC_ERR_FORMAT, "%s", ldmc_last_error());
  *out = in;
  return LDMC_OK;
}

/* ---- programs -------------------------------------------------------------------- */
void ldmc_tpu_program_init(ldmc_tpu_program *p) { memset(p, 0, sizeof *p); }
void ldmc_tpu_program_free(ldmc_tpu_program *p) {
  free(p->insns);
  memset(p, 0, sizeof *p);
}

ldmc_status ldmc_tpu_program_push(ldmc_tpu_program *p, const ldmc_tpu_insn *in) {
  if (p->count == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 64;
    ldmc_tpu_insn *n = realloc(p->insns, cap * sizeof *n);
    if (!n) return ldmc_error(LDMC_ERR_NOMEM, "tpusim program of %zu instructions", cap);
    p->insns = n, p->cap = cap;
  }
  p->insns[p->count++] = *in;
  return LDMC_OK;
}

ldmc_status ldmc_tpu_program_encode(const ldmc_tpu_program *p, uint8_t **out, size_t *out_len) {
  uint8_t *buf = malloc(p->count ? p->count * LDMC_TPU_INSN_BYTES : 1);
  if (!buf) return ldmc_error(LDMC_ERR_NOMEM, "encoding %zu tpusim instructions", p->count);
  for (size_t i = 0; i < p->count; i++) {
    if (ldmc_tpu_insn_encode(&p->insns[i], buf + i * LDMC_TPU_INSN_BYTES) != LDMC_OK) {
      free(buf);
      ldmc_error_prefix("insn %zu: ", i);
      return LDMC_ERR_INVALID;
    }
  }
  *out = buf;
  *out_len = p->count * LDMC_TPU_INSN_BYTES;
  return LDMC_OK;
}

ldmc_status ldmc_tpu_program_decode(const uint8_t *data, size_t len, ldmc_tpu_program *out) {
  ldmc_tpu_program_init(out);
  if (len % LDMC_TPU_INSN_BYTES)
    return ldmc_error(LDMC_ERR_FORMAT, "tpusim program of %zu bytes is not a multiple of %d", len, LDMC_TPU_INSN_BYTES);
  for (size_t i = 0; i < len / LDMC_TPU_INSN_BYTES; i++) {
    ldmc_tpu_insn in;
    ldmc_status st = ldmc_tpu_insn_decode(data + i * LDMC_TPU_INSN_BYTES, &in);
    if (st == LDMC_OK) st = ldmc_tpu_program_push(out, &in);
    if (st != LDMC_OK) {
      ldmc_tpu_program_free(out);
      ldmc_error_prefix("insn %zu: ", i);
      return st;
    }
  }
  return LDMC_OK;
}
