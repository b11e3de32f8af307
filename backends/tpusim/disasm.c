/* One-line text disassembly of tpusim instructions (syntax in
 * docs/backends/tpusim.md, "Disassembly"). Every field of an instruction
 * shows, so two instructions with the same line are the same instruction. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "backends/tpusim/isa.h"

typedef struct out {
  char *buf;
  size_t len, pos;
} out;

__attribute__((format(printf, 2, 3))) static void put(out *o, const char *fmt, ...) {
  if (o->pos >= o->len) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
  va_end(ap);
  if (n > 0) o->pos += (size_t)n < o->len - o->pos ? (size_t)n : o->len - o->pos - 1;
}

static void vm(out *o, uint32_t addr, unsigned dt, uint32_t stride) {
  put(o, "vm[0x%x %s s%u]", addr, ldmc_tpu_dtype_name(dt), stride);
}

static void deps(out *o, const ldmc_tpu_insn *in) {
  if (!in->dep) return;
  ldmc_tpu_queue q = ldmc_tpu_insn_queue(in);
  const char *prev = q == LDMC_TPU_Q_COMPUTE ? "load" : q == LDMC_TPU_Q_STORE ? "compute" : "-";
  const char *next = q == LDMC_TPU_Q_COMPUTE ? "store" : q == LDMC_TPU_Q_LOAD ? "compute" : "-";
  put(o, " ;");
  if (in->dep & LDMC_TPU_POP_PREV) put(o, " pop(%s)", prev);
  if (in->dep & LDMC_TPU_POP_NEXT) put(o, " pop(%s)", next);
  if (in->dep & LDMC_TPU_PUSH_PREV) put(o, " push(%s)", prev);
  if (in->dep & LDMC_TPU_PUSH_NEXT) put(o, " push(%s)", next);
  if (in->dep & ~LDMC_TPU_DEP_MASK) put(o, " dep(0x%x)", in->dep);
}

static void dma(out *o, const ldmc_tpu_insn *in) {
  const ldmc_tpu_dma *d = &in->u.dma;
  if (in->op == LDMC_TPU_DMA_LOAD) {
    put(o, "dma_load ");
    vm(o, d->vmem_addr, d->vmem_dtype, d->vmem_stride);
    put(o, " <- buf%u[%u %s s%u]", d->buf, d->mem_offset, ldmc_tpu_dtype_name(d->mem_dtype), d->mem_stride);
  } else {
    put(o, "dma_store buf%u[%u %s s%u] <- ", d->buf, d->mem_offset, ldmc_tpu_dtype_name(d->mem_dtype), d->mem_stride);
    vm(o, d->vmem_addr, d->vmem_dtype, d->vmem_stride);
  }
  put(o, " %ux%u", d->rows, d->cols);
  if (d->pad_top || d->pad_bottom || d->pad_left || d->pad_right || d->pad_value != 0.0f || signbit(d->pad_value))
    put(o, " pad(%u,%u,%u,%u)=%.9g", d->pad_top, d->pad_bottom, d->pad_left, d->pad_right, (double)d->pad_value);
}

static void vec(out *o, const ldmc_tpu_insn *in) {
  const ldmc_tpu_vec *v = &in->u.vec;
  const char *fn = in->op == LDMC_TPU_VEC_UNARY    ? ldmc_tpu_unary_name(v->func)
                   : in->op == LDMC_TPU_VEC_BINARY ? ldmc_tpu_binary_name(v->func)
                                                   : ldmc_tpu_reduce_name(v->func);
  put(o, "vec.%s", fn);
  if (in->op == LDMC_TPU_VEC_REDUCE) put(o, ".%s", v->axis ? "cols" : "rows");
  put(o, " ");
  vm(o, v->dst, v->dst_dtype, v->dst_stride);
  put(o, " %s ", in->op == LDMC_TPU_VEC_REDUCE && v->accumulate ? "<+" : "<-");
  bool fill = in->op == LDMC_TPU_VEC_UNARY && v->func == LDMC_TPU_U_FILL;
  if (fill)
    put(o, "%.9g", (double)v->imm);
  else
    vm(o, v->a, v->a_dtype, v->a_stride);
  if (in->op == LDMC_TPU_VEC_BINARY) {
    if (v->bcast == LDMC_TPU_BC_SCALAR)
      put(o, ", %.9g", (double)v->imm);
    else {
      put(o, ", %s", v->bcast == LDMC_TPU_BC_FULL ? "" : v->bcast == LDMC_TPU_BC_ROW ? "row " : v->bcast == LDMC_TPU_BC_COL ? "col " : "? ");
      vm(o, v->b, v->b_dtype, v->b_stride);
    }
  }
  put(o, " %ux%u", v->rows, v->cols);
  /* fields an instruction does not use, shown only when set (the verifier refuses them) */
  bool uses_b = in->op == LDMC_TPU_VEC_BINARY && v->bcast != LDMC_TPU_BC_SCALAR;
  bool uses_imm = fill || (in->op == LDMC_TPU_VEC_BINARY && v->bcast == LDMC_TPU_BC_SCALAR);
  if (in->op != LDMC_TPU_VEC_BINARY && v->bcast) put(o, " bcast=%u", v->bcast);
  if (in->op != LDMC_TPU_VEC_REDUCE && (v->axis || v->accumulate)) put(o, " axis=%u acc=%u", v->axis, v->accumulate);
  if (!uses_b && (v->b || v->b_stride || v->b_dtype)) put(o, " b=0x%x/%s/s%u", v->b, ldmc_tpu_dtype_name(v->b_dtype), v->b_stride);
  if (fill && (v->a || v->a_stride || v->a_dtype)) put(o, " a=0x%x/%s/s%u", v->a, ldmc_tpu_dtype_name(v->a_dtype), v->a_stride);
  if (!uses_imm && (v->imm != 0.0f || signbit(v->imm))) put(o, " imm=%.9g", (double)v->imm);
}

char *ldmc_tpu_insn_disasm(const ldmc_tpu_insn *in, char *buf, size_t len) {
  out o = {buf, len, 0};
  if (len) buf[0] = 0;
  switch (in->op) {
  case LDMC_TPU_NOP: put(&o, "nop %s", ldmc_tpu_queue_name(in->u.nop.queue)); break;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE: dma(&o, in); break;
  case LDMC_TPU_LOAD_W: {
    const ldmc_tpu_loadw *w = &in->u.loadw;
    put(&o, "load_w mxu%u <- ", w->mxu);
    vm(&o, w->vmem_addr, w->dtype, w->vmem_stride);
    put(&o, " k=%u n=%u%s", w->k, w->n, w->transpose == 1 ? " transposed" : w->transpose ? " transpose=?" : "");
    break;
  }
  case LDMC_TPU_MATMUL: {
    const ldmc_tpu_matmul *m = &in->u.mm;
    put(&o, "matmul mxu%u acc[%u] %s ", m->mxu, m->acc_row, m->accumulate ? "+=" : "=");
    vm(&o, m->vmem_addr, m->dtype, m->vmem_stride);
    put(&o, " m=%u", m->rows);
    break;
  }
  case LDMC_TPU_ACC_MOVE: {
    const ldmc_tpu_accmove *a = &in->u.acc;
    put(&o, "acc_move ");
    vm(&o, a->vmem_addr, a->dtype, a->vmem_stride);
    put(&o, " <- acc[%u,%u] %ux%u", a->acc_row, a->acc_col, a->rows, a->cols);
    break;
  }
  case LDMC_TPU_VEC_UNARY:
  case LDMC_TPU_VEC_BINARY:
  case LDMC_TPU_VEC_REDUCE: vec(&o, in); break;
  default: put(&o, "<bad opcode %u>", in->op); break;
  }
  deps(&o, in);
  return buf;
}

ldmc_status ldmc_tpu_program_disasm(const ldmc_tpu_program *p, FILE *f) {
  char line[LDMC_TPU_DISASM_MAX];
  for (size_t i = 0; i < p->count; i++)
    if (fprintf(f, "%zu: %s\n", i, ldmc_tpu_insn_disasm(&p->insns[i], line, sizeof line)) < 0)
      return ldmc_error(LDMC_ERR_IO, "writing the disassembly of tpusim instruction %zu", i);
  return LDMC_OK;
}
