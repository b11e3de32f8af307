/* Functional semantics of tpusim instructions: what each does to off-chip
 * buffers, the scratchpad, the accumulator and the weight buffers. Matrix
 * inputs are rounded to bf16 (nearest even); a bf16 x bf16 product is exact
 * in f32, and sums are f32, in order of k. Vector ops compute in f32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/sim_func.h"
#include "support/half.h"

ldmc_status ldmc_tpu_machine_init(ldmc_tpu_machine *m, const ldmc_tpu_target *t, ldmc_tpu_mem *mem) {
  memset(m, 0, sizeof *m);
  m->t = t, m->mem = mem;
  for (int b = 0; b < mem->count; b++)
    if (!mem->buf[b].data && mem->buf[b].bytes)
      return ldmc_error(LDMC_ERR_INVALID, "tpusim functional run: buffer %d has no data", b);
  size_t wsz = (size_t)t->mxu_rows * (size_t)t->mxu_cols;
  m->vmem = calloc(t->vmem_bytes, 1);
  m->acc = calloc((size_t)ldmc_tpu_target_acc_rows(t) * (size_t)t->mxu_cols, sizeof(float));
  bool ok = m->vmem && m->acc;
  for (int u = 0; u < t->mxu_count; u++)
    for (int s = 0; s < 2; s++) ok = ok && (m->w[u][s] = calloc(wsz, sizeof(float))) != NULL;
  if (!ok) {
    ldmc_tpu_machine_free(m);
    return ldmc_error(LDMC_ERR_NOMEM, "tpusim on-chip memories of target %s (%llu scratchpad bytes)", t->name,
                      (unsigned long long)t->vmem_bytes);
  }
  return LDMC_OK;
}

void ldmc_tpu_machine_free(ldmc_tpu_machine *m) {
  free(m->vmem);
  free(m->acc);
  for (int u = 0; u < LDMC_TPU_MAX_MXU; u++)
    for (int s = 0; s < 2; s++) free(m->w[u][s]);
  memset(m, 0, sizeof *m);
}

/* element idx (in elements of dt) from base */
static inline float ld(const uint8_t *base, uint64_t idx, unsigned dt) {
  if (dt == LDMC_TPU_F32) {
    float f;
    memcpy(&f, base + idx * 4, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, base + idx * 2, 2);
  return ldmc_bf16_to_f32(h);
}
static inline void st(uint8_t *base, uint64_t idx, unsigned dt, float v) {
  if (dt == LDMC_TPU_F32) {
    memcpy(base + idx * 4, &v, 4);
  } else {
    uint16_t h = ldmc_f32_to_bf16(v);
    memcpy(base + idx * 2, &h, 2);
  }
}
static inline float round_bf16(float v) { return ldmc_bf16_to_f32(ldmc_f32_to_bf16(v)); }

static void dma_load(ldmc_tpu_machine *m, const ldmc_tpu_dma *d) {
  const uint8_t *src = d->rows && d->cols ? (const uint8_t *)m->mem->buf[d->buf].data : NULL;
  size_t ves = ldmc_tpu_dtype_size(d->vmem_dtype), mes = ldmc_tpu_dtype_size(d->mem_dtype);
  uint8_t *dst = m->vmem + d->vmem_addr;
  uint32_t rows = d->pad_top + d->rows + d->pad_bottom, cols = d->pad_left + d->cols + d->pad_right;
  for (uint32_t r = 0; r < rows; r++) {
    uint8_t *drow = dst + (uint64_t)r * d->vmem_stride * ves;
    bool in_rows = src && r >= d->pad_top && r < (uint32_t)d->pad_top + d->rows;
    const uint8_t *srow = in_rows ? src + ((uint64_t)d->mem_offset + (uint64_t)(r - d->pad_top) * d->mem_stride) * mes : NULL;
    if (srow && d->mem_dtype == d->vmem_dtype) {
      memcpy(drow + (size_t)d->pad_left * ves, srow, (size_t)d->cols * ves);
      for (uint32_t c = 0; c < d->pad_left; c++) st(drow, c, d->vmem_dtype, d->pad_value);
      for (uint32_t c = d->pad_left + d->cols; c < cols; c++) st(drow, c, d->vmem_dtype, d->pad_value);
      continue;
    }
    for (uint32_t c = 0; c < cols; c++) {
      bool in = srow && c >= d->pad_left && c < (uint32_t)d->pad_left + d->cols;
      st(drow, c, d->vmem_dtype, in ? ld(srow, c - d->pad_left, d->mem_dtype) : d->pad_value);
    }
  }
}

static void dma_store(ldmc_tpu_machine *m, const ldmc_tpu_dma *d) {
  uint8_t *dst = m->mem->buf[d->buf].data;
  size_t ves = ldmc_tpu_dtype_size(d->vmem_dtype), mes = ldmc_tpu_dtype_size(d->mem_dtype);
  for (uint32_t r = 0; r < d->rows; r++) {
    const uint8_t *srow = m->vmem + d->vmem_addr + (uint64_t)r * d->vmem_stride * ves;
    uint8_t *drow = dst + ((uint64_t)d->mem_offset + (uint64_t)r * d->mem_stride) * mes;
    if (d->mem_dtype == d->vmem_dtype) {
      memmove(drow, srow, (size_t)d->cols * mes);
      continue;
    }
    for (uint32_t c = 0; c < d->cols; c++) st(drow, c, d->mem_dtype, ld(srow, c, d->vmem_dtype));
  }
}

static void load_w(ldmc_tpu_machine *m, const ldmc_tpu_loadw *l) {
  int u = l->mxu, s = m->active[u] ^ 1; /* into the shadow buffer */
  float *w = m->w[u][s];
  size_t C = (size_t)m->t->mxu_cols;
  const uint8_t *base = m->vmem + l->vmem_addr;
  for (uint32_t k = 0; k < l->k; k++)
    for (uint32_t j = 0; j < l->n; j++) {
      uint64_t idx = l->transpose ? (uint64_t)j * l->vmem_stride + k : (uint64_t)k * l->vmem_stride + j;
      w[k * C + j] = round_bf16(ld(base, idx, l->dtype));
    }
  m->wk[u][s] = l->k, m->wn[u][s] = l->n;
  m->pending[u] = true;
}

static void matmul(ldmc_tpu_machine *m, const ldmc_tpu_matmul *mm) {
  int u = mm->mxu;
  if (m->pending[u]) m->active[u] ^= 1, m->pending[u] = false; /* the swap at the first matmul after a load_w */
  int s = m->active[u];
  const float *w = m->w[u][s];
  uint32_t K = m->wk[u][s], N = m->wn[u][s];
  size_t C = (size_t)m->t->mxu_cols;
  const uint8_t *base = m->vmem + mm->vmem_addr;
  for (uint32_t i = 0; i < mm->rows; i++) {
    float *o = m->acc + ((size_t)mm->acc_row + i) * C;
    if (!mm->accumulate) memset(o, 0, N * sizeof *o);
    for (uint32_t k = 0; k < K; k++) {
      float a = round_bf16(ld(base, (uint64_t)i * mm->vmem_stride + k, mm->dtype));
      const float *wr = w + k * C;
      for (uint32_t j = 0; j < N; j++) o[j] += a * wr[j];
    }
  }
}

static void acc_move(ldmc_tpu_machine *m, const ldmc_tpu_accmove *a) {
  size_t C = (size_t)m->t->mxu_cols;
  uint8_t *base = m->vmem + a->vmem_addr;
  for (uint32_t r = 0; r < a->rows; r++) {
    const float *src = m->acc + ((size_t)a->acc_row + r) * C + a->acc_col;
    for (uint32_t c = 0; c < a->cols; c++) st(base, (uint64_t)r * a->vmem_stride + c, a->dtype, src[c]);
  }
}

static float unary(unsigned f, float x, float imm) {
  switch (f) {
  case LDMC_TPU_U_COPY: return x;
  case LDMC_TPU_U_NEG: return -x;
  case LDMC_TPU_U_ABS: return fabsf(x);
  case LDMC_TPU_U_FILL: return imm;
  case LDMC_TPU_U_EXP: return expf(x);
  case LDMC_TPU_U_LOG: return logf(x);
  case LDMC_TPU_U_SQRT: return sqrtf(x);
  case LDMC_TPU_U_RSQRT: return 1.0f / sqrtf(x);
  case LDMC_TPU_U_RECIP: return 1.0f / x;
  case LDMC_TPU_U_TANH: return tanhf(x);
  case LDMC_TPU_U_ERF: return erff(x);
  default: return 1.0f / (1.0f + expf(-x)); /* sigmoid */
  }
}

static float binary(unsigned f, float a, float b) {
  switch (f) {
  case LDMC_TPU_B_ADD: return a + b;
  case LDMC_TPU_B_SUB: return a - b;
  case LDMC_TPU_B_MUL: return a * b;
  case LDMC_TPU_B_DIV: return a / b;
  case LDMC_TPU_B_MAX: return fmaxf(a, b);
  default: return fminf(a, b);
  }
}

static float combine(unsigned f, float acc, float x) {
  return f == LDMC_TPU_R_SUM ? acc + x : f == LDMC_TPU_R_MAX ? fmaxf(acc, x) : fminf(acc, x);
}
static float identity(unsigned f) { return f == LDMC_TPU_R_SUM ? 0.0f : f == LDMC_TPU_R_MAX ? -INFINITY : INFINITY; }

static void vec(ldmc_tpu_machine *m, uint8_t op, const ldmc_tpu_vec *v) {
  uint8_t *d = m->vmem + v->dst;
  const uint8_t *a = m->vmem + v->a, *b = m->vmem + v->b;
  if (op == LDMC_TPU_VEC_REDUCE) {
    if (v->axis == LDMC_TPU_AX_ROWS) {
      for (uint32_t r = 0; r < v->rows; r++) {
        uint64_t di = (uint64_t)r * v->dst_stride;
        float acc = v->accumulate ? ld(d, di, v->dst_dtype) : identity(v->func);
        for (uint32_t c = 0; c < v->cols; c++) acc = combine(v->func, acc, ld(a, (uint64_t)r * v->a_stride + c, v->a_dtype));
        st(d, di, v->dst_dtype, acc);
      }
    } else {
      for (uint32_t c = 0; c < v->cols; c++) {
        float acc = v->accumulate ? ld(d, c, v->dst_dtype) : identity(v->func);
        for (uint32_t r = 0; r < v->rows; r++) acc = combine(v->func, acc, ld(a, (uint64_t)r * v->a_stride + c, v->a_dtype));
        st(d, c, v->dst_dtype, acc);
      }
    }
    return;
  }
  bool fill = op == LDMC_TPU_VEC_UNARY && v->func == LDMC_TPU_U_FILL;
  for (uint32_t r = 0; r < v->rows; r++)
    for (uint32_t c = 0; c < v->cols; c++) {
      float x = fill ? 0.0f : ld(a, (uint64_t)r * v->a_stride + c, v->a_dtype), y;
      if (op == LDMC_TPU_VEC_UNARY) {
        y = unary(v->func, x, v->imm);
      } else {
        float bv = v->bcast == LDMC_TPU_BC_FULL  ? ld(b, (uint64_t)r * v->b_stride + c, v->b_dtype)
                   : v->bcast == LDMC_TPU_BC_ROW ? ld(b, (uint64_t)r * v->b_stride, v->b_dtype)
                   : v->bcast == LDMC_TPU_BC_COL ? ld(b, c, v->b_dtype)
                                                 : v->imm;
        y = binary(v->func, x, bv);
      }
      st(d, (uint64_t)r * v->dst_stride + c, v->dst_dtype, y);
    }
}

void ldmc_tpu_machine_exec(ldmc_tpu_machine *m, const ldmc_tpu_insn *in) {
  switch (in->op) {
  case LDMC_TPU_DMA_LOAD: dma_load(m, &in->u.dma); break;
  case LDMC_TPU_DMA_STORE: dma_store(m, &in->u.dma); break;
  case LDMC_TPU_LOAD_W: load_w(m, &in->u.loadw); break;
  case LDMC_TPU_MATMUL: matmul(m, &in->u.mm); break;
  case LDMC_TPU_ACC_MOVE: acc_move(m, &in->u.acc); break;
  case LDMC_TPU_VEC_UNARY:
  case LDMC_TPU_VEC_BINARY:
  case LDMC_TPU_VEC_REDUCE: vec(m, in->op, &in->u.vec); break;
  default: break; /* nop */
  }
}
