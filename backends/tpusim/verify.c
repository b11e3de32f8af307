/* The tpusim verifier: every field against the target and the off-chip
 * buffers, then the dependency tokens by running the three queues
 * abstractly (counts only), which finds underflow, deadlock and leftovers.
 * Every message starts "insn <index> (<opcode>)". */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/tokens.h"

typedef struct vctx {
  const ldmc_tpu_target *t;
  const ldmc_tpu_mem *mem;
  size_t i;
  const ldmc_tpu_insn *in;
  uint32_t acc_rows;
} vctx;

__attribute__((format(printf, 2, 3))) static ldmc_status fail(const vctx *c, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ldmc_error(LDMC_ERR_INVALID, "insn %zu (%s): %s", c->i, ldmc_tpu_opcode_name(c->in->op), msg);
}

/* Bytes from the first element to one past the last of rows x cols elements. */
static uint64_t span(uint64_t rows, uint64_t cols, uint64_t stride, uint64_t es) {
  return rows == 0 || cols == 0 ? 0 : ((rows - 1) * stride + cols) * es;
}

static ldmc_status check_vmem(const vctx *c, const char *what, uint32_t addr, unsigned dt, uint64_t rows, uint64_t cols,
                              uint64_t stride, bool write) {
  size_t es = ldmc_tpu_dtype_size(dt);
  if (!es) return fail(c, "%s: dtype %u out of range", what, dt);
  if (addr % es) return fail(c, "%s: scratchpad address 0x%x is not aligned to %zu bytes", what, addr, es);
  if (write && rows > 1 && stride < cols)
    return fail(c, "%s: row stride %llu is below the %llu columns written (rows would overlap)", what, (unsigned long long)stride,
                (unsigned long long)cols);
  uint64_t end = addr + span(rows, cols, stride, es);
  if (end > c->t->vmem_bytes)
    return fail(c, "%s: scratchpad range [0x%x, 0x%llx) is outside the target's %llu bytes", what, addr, (unsigned long long)end,
                (unsigned long long)c->t->vmem_bytes);
  return LDMC_OK;
}

static ldmc_status check_acc(const vctx *c, uint64_t row, uint64_t rows, uint64_t col, uint64_t cols) {
  if (row + rows > c->acc_rows)
    return fail(c, "accumulator rows [%llu, %llu) are outside the target's %u rows", (unsigned long long)row,
                (unsigned long long)(row + rows), c->acc_rows);
  if (col + cols > (uint64_t)c->t->mxu_cols)
    return fail(c, "accumulator columns [%llu, %llu) are outside the target's %d columns", (unsigned long long)col,
                (unsigned long long)(col + cols), c->t->mxu_cols);
  return LDMC_OK;
}

static ldmc_status check_mem(const vctx *c, const ldmc_tpu_dma *d, bool write) {
  if (d->buf >= c->mem->count) return fail(c, "off-chip buffer %u does not exist (%d buffers)", d->buf, c->mem->count);
  size_t es = ldmc_tpu_dtype_size(d->mem_dtype);
  if (write && d->rows > 1 && d->mem_stride < d->cols)
    return fail(c, "off-chip row stride %u is below the %u columns written (rows would overlap)", d->mem_stride, d->cols);
  uint64_t lo = (uint64_t)d->mem_offset * es, end = lo + span(d->rows, d->cols, d->mem_stride, es);
  uint64_t size = c->mem->buf[d->buf].bytes;
  if (end > size)
    return fail(c, "off-chip range [%llu, %llu) of buffer %u is outside its %llu bytes", (unsigned long long)lo,
                (unsigned long long)end, d->buf, (unsigned long long)size);
  return LDMC_OK;
}

static ldmc_status check_dma(const vctx *c) {
  const ldmc_tpu_dma *d = &c->in->u.dma;
  if (c->in->op == LDMC_TPU_DMA_STORE) {
    if (d->pad_top || d->pad_bottom || d->pad_left || d->pad_right || d->pad_value != 0.0f || signbit(d->pad_value))
      return fail(c, "a store has no padding (pad fields must be 0)");
    if (!d->rows || !d->cols) return fail(c, "empty %ux%u block", d->rows, d->cols);
    LDMC_TRY(check_vmem(c, "source", d->vmem_addr, d->vmem_dtype, d->rows, d->cols, d->vmem_stride, false));
    return check_mem(c, d, true);
  }
  uint64_t rows = (uint64_t)d->pad_top + d->rows + d->pad_bottom, cols = (uint64_t)d->pad_left + d->cols + d->pad_right;
  if (!rows || !cols) return fail(c, "empty %llux%llu block", (unsigned long long)rows, (unsigned long long)cols);
  if (d->rows && d->cols) LDMC_TRY(check_mem(c, d, false));
  return check_vmem(c, "destination", d->vmem_addr, d->vmem_dtype, rows, cols, d->vmem_stride, true);
}

typedef struct wtile {
  bool loaded;
  uint16_t k, n;
} wtile;

static ldmc_status check_vec(const vctx *c) {
  const ldmc_tpu_vec *v = &c->in->u.vec;
  if (!v->rows || !v->cols) return fail(c, "empty %ux%u region", v->rows, v->cols);
  uint8_t op = c->in->op;
  if (op != LDMC_TPU_VEC_BINARY && v->bcast) return fail(c, "bcast is set but only vec_binary broadcasts");
  if (op != LDMC_TPU_VEC_REDUCE && (v->axis || v->accumulate)) return fail(c, "axis/accumulate are set but only vec_reduce uses them");
  bool fill = op == LDMC_TPU_VEC_UNARY && v->func == LDMC_TPU_U_FILL;
  if (!fill) LDMC_TRY(check_vmem(c, "operand a", v->a, v->a_dtype, v->rows, v->cols, v->a_stride, false));
  if (op == LDMC_TPU_VEC_BINARY) {
    switch (v->bcast) {
    case LDMC_TPU_BC_FULL: LDMC_TRY(check_vmem(c, "operand b", v->b, v->b_dtype, v->rows, v->cols, v->b_stride, false)); break;
    case LDMC_TPU_BC_ROW: LDMC_TRY(check_vmem(c, "operand b (per row)", v->b, v->b_dtype, v->rows, 1, v->b_stride, false)); break;
    case LDMC_TPU_BC_COL: LDMC_TRY(check_vmem(c, "operand b (per column)", v->b, v->b_dtype, 1, v->cols, 0, false)); break;
    default: break;
    }
  }
  if (op == LDMC_TPU_VEC_REDUCE) {
    if (v->axis == LDMC_TPU_AX_ROWS) return check_vmem(c, "destination", v->dst, v->dst_dtype, v->rows, 1, v->dst_stride, true);
    return check_vmem(c, "destination", v->dst, v->dst_dtype, 1, v->cols, 0, true);
  }
  return check_vmem(c, "destination", v->dst, v->dst_dtype, v->rows, v->cols, v->dst_stride, true);
}

static ldmc_status check_insn(const vctx *c, wtile *w) {
  const ldmc_tpu_insn *in = c->in;
  if (in->op == LDMC_TPU_OP_INVALID || in->op >= LDMC_TPU_OPCODE_COUNT) return fail(c, "unknown opcode %u", in->op);
  uint8_t b[LDMC_TPU_INSN_BYTES];
  if (ldmc_tpu_insn_encode(in, b) != LDMC_OK) return fail(c, "%s", ldmc_last_error()); /* enum fields in range */
  ldmc_tpu_queue q = ldmc_tpu_insn_queue(in);
  if (q == LDMC_TPU_Q_LOAD && in->dep & (LDMC_TPU_POP_PREV | LDMC_TPU_PUSH_PREV))
    return fail(c, "the load queue has no previous queue to pop from or push to");
  if (q == LDMC_TPU_Q_STORE && in->dep & (LDMC_TPU_POP_NEXT | LDMC_TPU_PUSH_NEXT))
    return fail(c, "the store queue has no next queue to pop from or push to");
  const ldmc_tpu_target *t = c->t;
  switch (in->op) {
  case LDMC_TPU_NOP: return LDMC_OK;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE: return check_dma(c);
  case LDMC_TPU_LOAD_W: {
    const ldmc_tpu_loadw *l = &in->u.loadw;
    if (l->mxu >= t->mxu_count) return fail(c, "matrix unit %u does not exist (%d units)", l->mxu, t->mxu_count);
    if (l->k < 1 || l->k > t->mxu_rows || l->n < 1 || l->n > t->mxu_cols)
      return fail(c, "weight tile %ux%u does not fit the %dx%d matrix unit", l->k, l->n, t->mxu_rows, t->mxu_cols);
    uint32_t r = l->transpose ? l->n : l->k, cl = l->transpose ? l->k : l->n;
    LDMC_TRY(check_vmem(c, "weights", l->vmem_addr, l->dtype, r, cl, l->vmem_stride, false));
    w[l->mxu] = (wtile){true, l->k, l->n};
    return LDMC_OK;
  }
  case LDMC_TPU_MATMUL: {
    const ldmc_tpu_matmul *m = &in->u.mm;
    if (m->mxu >= t->mxu_count) return fail(c, "matrix unit %u does not exist (%d units)", m->mxu, t->mxu_count);
    if (!w[m->mxu].loaded) return fail(c, "matrix unit %u has no weights (no load_w before it)", m->mxu);
    if (!m->rows) return fail(c, "empty matmul (0 rows)");
    LDMC_TRY(check_vmem(c, "activations", m->vmem_addr, m->dtype, m->rows, w[m->mxu].k, m->vmem_stride, false));
    return check_acc(c, m->acc_row, m->rows, 0, w[m->mxu].n);
  }
  case LDMC_TPU_ACC_MOVE: {
    const ldmc_tpu_accmove *a = &in->u.acc;
    if (!a->rows || !a->cols) return fail(c, "empty %ux%u block", a->rows, a->cols);
    LDMC_TRY(check_acc(c, a->acc_row, a->rows, a->acc_col, a->cols));
    return check_vmem(c, "destination", a->vmem_addr, a->dtype, a->rows, a->cols, a->vmem_stride, true);
  }
  default: return check_vec(c);
  }
}

/* ---- tokens -------------------------------------------------------------------------- */
static const char *ch_name(int ch) {
  static const char *const n[LDMC_TPU_CH_COUNT] = {"load to compute", "compute to load", "compute to store", "store to compute"};
  return n[ch];
}

/* The channel the queue's head waits on, or -1 if it can go. */
static int blocked_on(const ldmc_tpu_insn *in, int q, const uint64_t *cnt) {
  for (int prev = 1; prev >= 0; prev--) {
    unsigned flag = prev ? LDMC_TPU_POP_PREV : LDMC_TPU_POP_NEXT;
    int ch = ldmc_tpu_ch_pop(q, prev);
    if ((in->dep & flag) && ch >= 0 && cnt[ch] == 0) return ch;
  }
  return -1;
}

static ldmc_status check_tokens(const ldmc_tpu_program *p) {
  size_t *list = malloc((p->count ? p->count : 1) * sizeof *list);
  if (!list) return ldmc_error(LDMC_ERR_NOMEM, "verifying %zu tpusim instructions", p->count);
  size_t start[LDMC_TPU_Q_COUNT + 1] = {0}, pos[LDMC_TPU_Q_COUNT], fill[LDMC_TPU_Q_COUNT];
  for (size_t i = 0; i < p->count; i++) start[ldmc_tpu_insn_queue(&p->insns[i]) + 1]++;
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) start[q + 1] += start[q];
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) fill[q] = pos[q] = start[q];
  for (size_t i = 0; i < p->count; i++) list[fill[ldmc_tpu_insn_queue(&p->insns[i])]++] = i;

  uint64_t cnt[LDMC_TPU_CH_COUNT] = {0};
  size_t last_push[LDMC_TPU_CH_COUNT] = {0};
  for (bool progress = true; progress;) {
    progress = false;
    for (int q = 0; q < LDMC_TPU_Q_COUNT; q++)
      for (; pos[q] < start[q + 1]; pos[q]++) {
        const ldmc_tpu_insn *in = &p->insns[list[pos[q]]];
        if (blocked_on(in, q, cnt) >= 0) break;
        for (int prev = 1; prev >= 0; prev--) { /* check_insn refused flags without a channel */
          int pop = ldmc_tpu_ch_pop(q, prev), push = ldmc_tpu_ch_push(q, prev);
          if ((in->dep & (prev ? LDMC_TPU_POP_PREV : LDMC_TPU_POP_NEXT)) && pop >= 0) cnt[pop]--;
          if ((in->dep & (prev ? LDMC_TPU_PUSH_PREV : LDMC_TPU_PUSH_NEXT)) && push >= 0) cnt[push]++, last_push[push] = list[pos[q]];
        }
        progress = true;
      }
  }
  ldmc_status st = LDMC_OK;
  /* underflow: the queue a token would come from has finished */
  for (int q = 0; q < LDMC_TPU_Q_COUNT && st == LDMC_OK; q++) {
    if (pos[q] == start[q + 1]) continue;
    size_t i = list[pos[q]];
    int ch = blocked_on(&p->insns[i], q, cnt), from = ldmc_tpu_ch_from[ch];
    if (pos[from] == start[from + 1])
      st = ldmc_error(LDMC_ERR_INVALID, "insn %zu (%s): token underflow: pops a token from the %s queue, which has no push left for it",
                      i, ldmc_tpu_opcode_name(p->insns[i].op), ldmc_tpu_queue_name((unsigned)from));
  }
  if (st == LDMC_OK) {
    char msg[512];
    size_t n = 0, first = 0;
    bool stuck = false;
    for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) {
      if (pos[q] == start[q + 1]) continue;
      size_t i = list[pos[q]];
      int ch = blocked_on(&p->insns[i], q, cnt);
      if (!stuck) first = i;
      stuck = true;
      n += (size_t)snprintf(msg + n, sizeof msg - n, "%sinsn %zu (%s queue) waits for a token from %s", n ? ", " : "", i,
                            ldmc_tpu_queue_name((unsigned)q), ldmc_tpu_queue_name((unsigned)ldmc_tpu_ch_from[ch]));
      if (n >= sizeof msg) n = sizeof msg - 1;
    }
    if (stuck)
      st = ldmc_error(LDMC_ERR_INVALID, "insn %zu (%s): deadlock: %s", first, ldmc_tpu_opcode_name(p->insns[first].op), msg);
  }
  for (int ch = 0; ch < LDMC_TPU_CH_COUNT && st == LDMC_OK; ch++)
    if (cnt[ch])
      st = ldmc_error(LDMC_ERR_INVALID, "insn %zu (%s): %llu token(s) from %s left at the end (this is the last push)", last_push[ch],
                      ldmc_tpu_opcode_name(p->insns[last_push[ch]].op), (unsigned long long)cnt[ch], ch_name(ch));
  free(list);
  return st;
}

ldmc_status ldmc_tpu_verify(const ldmc_tpu_target *t, const ldmc_tpu_program *p, const ldmc_tpu_mem *mem) {
  if (mem->count < 0 || mem->count > LDMC_TPU_MAX_BUFFERS)
    return ldmc_error(LDMC_ERR_INVALID, "tpusim memory: %d buffers (0..%d)", mem->count, LDMC_TPU_MAX_BUFFERS);
  wtile w[LDMC_TPU_MAX_MXU];
  memset(w, 0, sizeof w);
  vctx c = {t, mem, 0, NULL, ldmc_tpu_target_acc_rows(t)};
  for (size_t i = 0; i < p->count; i++) {
    c.i = i, c.in = &p->insns[i];
    LDMC_TRY(check_insn(&c, w));
  }
  return check_tokens(p);
}
