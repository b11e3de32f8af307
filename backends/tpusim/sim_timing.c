/* The tpusim timing model and the run loop. Each queue issues in order;
 * an instruction starts at the earliest cycle its queue, tokens, unit,
 * weights, data hazards (compute), the scoreboard, DMA engines and the
 * off-chip link allow. The loop always commits the queue head that starts
 * first, so shared resources (link, engines) are granted in time order, and
 * the functional effect is applied in that order too. The model and its
 * limits: docs/backends/tpusim.md, "Timing model". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/sim_func.h"
#include "backends/tpusim/tokens.h"

static const char *const k_stalls[LDMC_TPU_STALL_COUNT] = {"token from load", "token from compute", "token from store", "unit busy",
                                                           "weights",         "data hazard",        "scoreboard full",  "dma engine/link"};
const char *ldmc_tpu_stall_name(ldmc_tpu_stall s) { return (unsigned)s < LDMC_TPU_STALL_COUNT ? k_stalls[s] : "<bad stall>"; }

#define NEVER UINT64_MAX

typedef struct range {
  uint64_t lo, hi; /* [lo, hi); empty when lo == hi */
} range;
static bool overlap(range a, range b) { return a.lo < a.hi && b.lo < b.hi && a.lo < b.hi && b.lo < a.hi; }

/* What a compute instruction touches: scratchpad bytes and accumulator rows. */
typedef struct footprint {
  range vr[2], vw, ar, aw;
  bool mm;
} footprint;

typedef struct sb_entry {
  footprint f;
  uint64_t read_done, write_done;
} sb_entry;

typedef struct plan {
  uint64_t start, end;
  int cause; /* ldmc_tpu_stall, or -1 */
  int engine;
  uint64_t xfer, busy, read_done;
  footprint f;
} plan;

typedef struct sim {
  const ldmc_tpu_target *t;
  const ldmc_tpu_program *p;
  size_t *list, start[LDMC_TPU_Q_COUNT + 1], pos[LDMC_TPU_Q_COUNT];
  uint64_t ready[LDMC_TPU_Q_COUNT], fence[LDMC_TPU_Q_COUNT];
  uint64_t *tok[LDMC_TPU_CH_COUNT];
  size_t head[LDMC_TPU_CH_COUNT], tail[LDMC_TPU_CH_COUNT];
  uint64_t link_free, engine_free[64];
  double bpc;
  uint64_t lat;
  uint64_t stream_free[LDMC_TPU_MAX_MXU], wpath_free[LDMC_TPU_MAX_MXU], wload_end[LDMC_TPU_MAX_MXU], shadow_free[LDMC_TPU_MAX_MXU];
  bool wused[LDMC_TPU_MAX_MXU];
  uint64_t vec_free, acc_free;
  sb_entry sb[LDMC_TPU_SCOREBOARD];
  int nsb;
  uint16_t *mm_k; /* per instruction: K of a matmul's weights */
  plan cached[LDMC_TPU_Q_COUNT];
  bool valid[LDMC_TPU_Q_COUNT];
} sim;

static void raise_to(uint64_t *t, uint64_t v, int *cause, int why) {
  if (v > *t) *t = v, *cause = why;
}

static range vrange(uint32_t addr, uint64_t rows, uint64_t cols, uint64_t stride, unsigned dt) {
  uint64_t es = ldmc_tpu_dtype_size(dt);
  return (range){addr, rows && cols ? addr + ((rows - 1) * stride + cols) * es : addr};
}

static uint64_t dma_bytes(const ldmc_tpu_dma *d) { return (uint64_t)d->rows * d->cols * ldmc_tpu_dtype_size(d->mem_dtype); }

static uint64_t ceil_log2(uint64_t x) {
  uint64_t n = 0;
  while (((uint64_t)1 << n) < x) n++;
  return n;
}

/* Vector-unit busy cycles and extra latency of a vector instruction. */
static void vec_cost(const ldmc_tpu_target *t, uint8_t op, const ldmc_tpu_vec *v, uint64_t *busy, uint64_t *extra) {
  uint64_t vregs = ((uint64_t)v->rows + t->vec_sublanes - 1) / t->vec_sublanes * (((uint64_t)v->cols + t->vec_lanes - 1) / t->vec_lanes);
  int tr = -1;
  if (op == LDMC_TPU_VEC_UNARY && v->func >= LDMC_TPU_U_EXP) tr = LDMC_TPU_T_EXP + (v->func - LDMC_TPU_U_EXP);
  if (op == LDMC_TPU_VEC_BINARY && v->func == LDMC_TPU_B_DIV) tr = LDMC_TPU_T_RECIP;
  *busy = tr >= 0 ? vregs * (uint64_t)t->vec_cycles[tr] : (vregs + t->vec_ops_per_cycle - 1) / t->vec_ops_per_cycle;
  *extra = op != LDMC_TPU_VEC_REDUCE ? 0 : v->axis == LDMC_TPU_AX_ROWS ? ceil_log2(t->vec_lanes) : ceil_log2(t->vec_sublanes);
}

/* k: the K of a matmul's weights */
static void footprint_of(const sim *s, const ldmc_tpu_insn *in, uint64_t k, footprint *f) {
  memset(f, 0, sizeof *f);
  uint64_t C = (uint64_t)s->t->mxu_cols;
  switch (in->op) {
  case LDMC_TPU_LOAD_W: {
    const ldmc_tpu_loadw *l = &in->u.loadw;
    f->vr[0] = vrange(l->vmem_addr, l->transpose ? l->n : l->k, l->transpose ? l->k : l->n, l->vmem_stride, l->dtype);
    break;
  }
  case LDMC_TPU_MATMUL: {
    const ldmc_tpu_matmul *m = &in->u.mm;
    f->vr[0] = vrange(m->vmem_addr, m->rows, k, m->vmem_stride, m->dtype);
    f->aw = (range){(uint64_t)m->acc_row * C, ((uint64_t)m->acc_row + m->rows) * C};
    f->mm = true;
    break;
  }
  case LDMC_TPU_ACC_MOVE: {
    const ldmc_tpu_accmove *a = &in->u.acc;
    f->ar = (range){(uint64_t)a->acc_row * C, ((uint64_t)a->acc_row + a->rows) * C};
    f->vw = vrange(a->vmem_addr, a->rows, a->cols, a->vmem_stride, a->dtype);
    break;
  }
  case LDMC_TPU_VEC_UNARY:
  case LDMC_TPU_VEC_BINARY:
  case LDMC_TPU_VEC_REDUCE: {
    const ldmc_tpu_vec *v = &in->u.vec;
    if (!(in->op == LDMC_TPU_VEC_UNARY && v->func == LDMC_TPU_U_FILL)) f->vr[0] = vrange(v->a, v->rows, v->cols, v->a_stride, v->a_dtype);
    if (in->op == LDMC_TPU_VEC_BINARY) {
      if (v->bcast == LDMC_TPU_BC_FULL) f->vr[1] = vrange(v->b, v->rows, v->cols, v->b_stride, v->b_dtype);
      if (v->bcast == LDMC_TPU_BC_ROW) f->vr[1] = vrange(v->b, v->rows, 1, v->b_stride, v->b_dtype);
      if (v->bcast == LDMC_TPU_BC_COL) f->vr[1] = vrange(v->b, 1, v->cols, 0, v->b_dtype);
    }
    if (in->op != LDMC_TPU_VEC_REDUCE)
      f->vw = vrange(v->dst, v->rows, v->cols, v->dst_stride, v->dst_dtype);
    else if (v->axis == LDMC_TPU_AX_ROWS)
      f->vw = vrange(v->dst, v->rows, 1, v->dst_stride, v->dst_dtype);
    else
      f->vw = vrange(v->dst, 1, v->cols, 0, v->dst_dtype);
    if (in->op == LDMC_TPU_VEC_REDUCE && v->accumulate) f->vr[1] = f->vw;
    break;
  }
  default: break;
  }
}

/* The cycle data hazards allow a compute instruction with footprint f to start. */
static void hazards(const sim *s, const footprint *f, uint64_t *t, int *cause) {
  for (int i = 0; i < s->nsb; i++) {
    const sb_entry *e = &s->sb[i];
    bool acc_waw = overlap(f->aw, e->f.aw) && !(f->mm && e->f.mm); /* matmuls accumulate in order */
    if (overlap(f->vr[0], e->f.vw) || overlap(f->vr[1], e->f.vw) || overlap(f->vw, e->f.vw) || overlap(f->ar, e->f.aw) || acc_waw)
      raise_to(t, e->write_done, cause, LDMC_TPU_STALL_HAZARD);
    if (overlap(f->vw, e->f.vr[0]) || overlap(f->vw, e->f.vr[1]) || overlap(f->aw, e->f.ar))
      raise_to(t, e->read_done, cause, LDMC_TPU_STALL_HAZARD);
  }
  int live = 0;
  uint64_t first = NEVER;
  for (int i = 0; i < s->nsb; i++) {
    uint64_t done = s->sb[i].read_done > s->sb[i].write_done ? s->sb[i].read_done : s->sb[i].write_done;
    if (done > *t) live++, first = done < first ? done : first;
  }
  if (live >= LDMC_TPU_SCOREBOARD) raise_to(t, first, cause, LDMC_TPU_STALL_SCOREBOARD);
}

static void make_plan(const sim *s, int q, plan *pl) {
  const ldmc_tpu_target *t = s->t;
  const ldmc_tpu_insn *in = &s->p->insns[s->list[s->pos[q]]];
  memset(pl, 0, sizeof *pl);
  pl->cause = -1;
  uint64_t at = s->ready[q];
  for (int prev = 1; prev >= 0; prev--) {
    if (!(in->dep & (prev ? LDMC_TPU_POP_PREV : LDMC_TPU_POP_NEXT))) continue;
    int ch = ldmc_tpu_ch_pop(q, prev);
    if (ch < 0) continue; /* the verifier rules this out */
    if (s->head[ch] == s->tail[ch]) { /* not pushed yet */
      pl->start = NEVER;
      return;
    }
    raise_to(&at, s->tok[ch][s->head[ch]], &pl->cause, LDMC_TPU_STALL_TOKEN_LOAD + ldmc_tpu_ch_from[ch]);
  }
  switch (in->op) {
  case LDMC_TPU_NOP: pl->end = at; break;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE: {
    uint64_t bytes = dma_bytes(&in->u.dma);
    int e = 0;
    for (int i = 1; i < t->dma_engines; i++)
      if (s->engine_free[i] < s->engine_free[e]) e = i;
    raise_to(&at, s->engine_free[e], &pl->cause, LDMC_TPU_STALL_DMA);
    if (bytes) raise_to(&at, s->link_free, &pl->cause, LDMC_TPU_STALL_DMA);
    pl->engine = e;
    pl->xfer = bytes ? (uint64_t)ceil((double)bytes / s->bpc - 1e-9) : 0;
    pl->end = at + (bytes ? s->lat + pl->xfer : 1);
    break;
  }
  default: { /* compute */
    footprint_of(s, in, s->mm_k[s->list[s->pos[q]]], &pl->f);
    uint64_t R = (uint64_t)t->mxu_rows, C = (uint64_t)t->mxu_cols;
    if (in->op == LDMC_TPU_LOAD_W) {
      int u = in->u.loadw.mxu;
      raise_to(&at, s->wpath_free[u], &pl->cause, LDMC_TPU_STALL_UNIT);
      raise_to(&at, s->shadow_free[u], &pl->cause, LDMC_TPU_STALL_WEIGHTS);
      hazards(s, &pl->f, &at, &pl->cause);
      pl->busy = R;
      pl->end = pl->read_done = at + R;
    } else if (in->op == LDMC_TPU_MATMUL) {
      int u = in->u.mm.mxu;
      raise_to(&at, s->stream_free[u], &pl->cause, LDMC_TPU_STALL_UNIT);
      raise_to(&at, s->wload_end[u], &pl->cause, LDMC_TPU_STALL_WEIGHTS);
      hazards(s, &pl->f, &at, &pl->cause);
      pl->busy = in->u.mm.rows;
      pl->read_done = at + pl->busy;
      pl->end = at + pl->busy + R + C; /* fill and drain of the systolic array */
    } else if (in->op == LDMC_TPU_ACC_MOVE) {
      raise_to(&at, s->acc_free, &pl->cause, LDMC_TPU_STALL_UNIT);
      hazards(s, &pl->f, &at, &pl->cause);
      pl->busy = in->u.acc.rows;
      pl->end = pl->read_done = at + pl->busy;
    } else {
      uint64_t extra;
      vec_cost(t, in->op, &in->u.vec, &pl->busy, &extra);
      raise_to(&at, s->vec_free, &pl->cause, LDMC_TPU_STALL_UNIT);
      hazards(s, &pl->f, &at, &pl->cause);
      pl->read_done = at + pl->busy;
      pl->end = at + pl->busy + (uint64_t)t->vec_latency + extra;
    }
    break;
  }
  }
  pl->start = at;
}

static void push_token(sim *s, int q, int prev) {
  int ch = ldmc_tpu_ch_push(q, prev);
  if (ch < 0) return; /* the verifier rules this out */
  s->tok[ch][s->tail[ch]++] = s->fence[q];
  int to = ch == LDMC_TPU_CH_L2C || ch == LDMC_TPU_CH_S2C ? LDMC_TPU_Q_COMPUTE : ch == LDMC_TPU_CH_C2L ? LDMC_TPU_Q_LOAD : LDMC_TPU_Q_STORE;
  s->valid[to] = false;
}

/* kn: K * N of a matmul's weights, for the MAC count */
static void commit(sim *s, int q, const plan *pl, uint64_t kn, ldmc_tpu_stats *st, ldmc_tpu_machine *m, ldmc_tpu_event *ev) {
  size_t idx = s->list[s->pos[q]];
  const ldmc_tpu_insn *in = &s->p->insns[idx];
  if (pl->cause >= 0) st->stall[q][pl->cause] += pl->start - s->ready[q];
  st->insns[q]++;
  for (int prev = 1; prev >= 0; prev--) {
    int ch = ldmc_tpu_ch_pop(q, prev);
    if ((in->dep & (prev ? LDMC_TPU_POP_PREV : LDMC_TPU_POP_NEXT)) && ch >= 0) s->head[ch]++;
  }
  switch (in->op) {
  case LDMC_TPU_NOP: break;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE: {
    uint64_t bytes = dma_bytes(&in->u.dma);
    s->engine_free[pl->engine] = pl->end;
    if (bytes) s->link_free = pl->start + pl->xfer;
    st->dma_busy += pl->xfer;
    if (in->op == LDMC_TPU_DMA_LOAD) st->bytes_loaded += bytes;
    else st->bytes_stored += bytes;
    int other = q == LDMC_TPU_Q_LOAD ? LDMC_TPU_Q_STORE : LDMC_TPU_Q_LOAD; /* shares the link and engines */
    s->valid[other] = false;
    break;
  }
  default: {
    if (in->op == LDMC_TPU_LOAD_W) {
      int u = in->u.loadw.mxu;
      s->wpath_free[u] = s->wload_end[u] = s->shadow_free[u] = pl->end;
      s->wused[u] = false;
      st->wload_busy[u] += pl->busy;
    } else if (in->op == LDMC_TPU_MATMUL) {
      int u = in->u.mm.mxu;
      s->stream_free[u] = pl->start + pl->busy;
      if (!s->wused[u]) s->wused[u] = true, s->shadow_free[u] = pl->start; /* swapped in: the shadow is free */
      st->mxu_busy[u] += pl->busy;
      st->macs += (uint64_t)in->u.mm.rows * kn;
    } else if (in->op == LDMC_TPU_ACC_MOVE) {
      s->acc_free = pl->start + pl->busy;
      st->acc_busy += pl->busy;
    } else {
      s->vec_free = pl->start + pl->busy;
      st->vec_busy += pl->busy;
      const ldmc_tpu_vec *v = &in->u.vec;
      st->vec_elems += in->op != LDMC_TPU_VEC_REDUCE ? (uint64_t)v->rows * v->cols : v->axis == LDMC_TPU_AX_ROWS ? v->rows : v->cols;
    }
    /* drop finished scoreboard entries, then track this one */
    int n = 0;
    for (int i = 0; i < s->nsb; i++) {
      uint64_t done = s->sb[i].read_done > s->sb[i].write_done ? s->sb[i].read_done : s->sb[i].write_done;
      if (done > pl->start) s->sb[n++] = s->sb[i];
    }
    s->nsb = n;
    if (s->nsb == LDMC_TPU_SCOREBOARD) memmove(s->sb, s->sb + 1, (size_t)--s->nsb * sizeof *s->sb); /* cannot happen: planned */
    s->sb[s->nsb++] = (sb_entry){pl->f, pl->read_done, pl->end};
    break;
  }
  }
  s->ready[q] = pl->start + (in->op == LDMC_TPU_NOP ? 0 : 1);
  if (pl->end > s->fence[q]) s->fence[q] = pl->end;
  if (in->dep & LDMC_TPU_PUSH_PREV) push_token(s, q, 1);
  if (in->dep & LDMC_TPU_PUSH_NEXT) push_token(s, q, 0);
  if (m) ldmc_tpu_machine_exec(m, in);
  if (ev) ev[idx] = (ldmc_tpu_event){pl->start, pl->end};
  s->pos[q]++;
  s->valid[q] = false;
}

ldmc_status ldmc_tpu_sim_trace(const ldmc_tpu_target *t, const ldmc_tpu_program *p, ldmc_tpu_mem *mem, ldmc_tpu_sim_mode mode,
                               ldmc_tpu_stats *stats, ldmc_tpu_event *events) {
  LDMC_TRY(ldmc_tpu_target_check(t, t->name));
  LDMC_TRY(ldmc_tpu_verify(t, p, mem));
  ldmc_tpu_machine machine, *m = NULL;
  if (mode == LDMC_TPU_SIM_FUNCTIONAL) {
    LDMC_TRY(ldmc_tpu_machine_init(&machine, t, mem));
    m = &machine;
  }
  sim *s = calloc(1, sizeof *s);
  uint32_t *kn = NULL; /* K * N of each matmul's weights (the latest load_w on its unit) */
  ldmc_status st = LDMC_OK;
  if (!s || !(s->list = malloc((p->count + 1) * sizeof *s->list)) || !(kn = malloc((p->count + 1) * sizeof *kn)) ||
      !(s->mm_k = malloc((p->count + 1) * sizeof *s->mm_k))) {
    st = ldmc_error(LDMC_ERR_NOMEM, "simulating %zu tpusim instructions", p->count);
    goto done;
  }
  s->t = t, s->p = p;
  s->bpc = ldmc_tpu_target_bytes_per_cycle(t);
  s->lat = ldmc_tpu_target_latency_cycles(t);
  size_t pushes[LDMC_TPU_CH_COUNT] = {0}, fill[LDMC_TPU_Q_COUNT];
  uint32_t cur_kn[LDMC_TPU_MAX_MXU] = {0};
  uint16_t cur_k[LDMC_TPU_MAX_MXU] = {0};
  for (size_t i = 0; i < p->count; i++) {
    const ldmc_tpu_insn *in = &p->insns[i];
    int q = ldmc_tpu_insn_queue(in);
    s->start[q + 1]++;
    for (int prev = 1; prev >= 0; prev--) {
      int ch = ldmc_tpu_ch_push(q, prev);
      if ((in->dep & (prev ? LDMC_TPU_PUSH_PREV : LDMC_TPU_PUSH_NEXT)) && ch >= 0) pushes[ch]++;
    }
    if (in->op == LDMC_TPU_LOAD_W)
      cur_kn[in->u.loadw.mxu] = (uint32_t)in->u.loadw.k * in->u.loadw.n, cur_k[in->u.loadw.mxu] = in->u.loadw.k;
    kn[i] = in->op == LDMC_TPU_MATMUL ? cur_kn[in->u.mm.mxu] : 0;
    s->mm_k[i] = in->op == LDMC_TPU_MATMUL ? cur_k[in->u.mm.mxu] : 0;
  }
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) s->start[q + 1] += s->start[q];
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) fill[q] = s->pos[q] = s->start[q];
  for (size_t i = 0; i < p->count; i++) s->list[fill[ldmc_tpu_insn_queue(&p->insns[i])]++] = i;
  for (int ch = 0; ch < LDMC_TPU_CH_COUNT; ch++)
    if (!(s->tok[ch] = malloc((pushes[ch] + 1) * sizeof(uint64_t)))) {
      st = ldmc_error(LDMC_ERR_NOMEM, "simulating %zu tpusim instructions", p->count);
      goto done;
    }
  ldmc_tpu_stats stz;
  memset(&stz, 0, sizeof stz);
  for (size_t left = p->count; left; left--) {
    int best = -1;
    for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) {
      if (s->pos[q] == s->start[q + 1]) continue;
      if (!s->valid[q]) make_plan(s, q, &s->cached[q]), s->valid[q] = true;
      if (s->cached[q].start != NEVER && (best < 0 || s->cached[q].start < s->cached[best].start)) best = q;
    }
    if (best < 0) { /* the verifier rules this out */
      st = ldmc_error(LDMC_ERR_INTERNAL, "tpusim: every queue waits for a token");
      goto done;
    }
    plan pl = s->cached[best];
    commit(s, best, &pl, kn[s->list[s->pos[best]]], &stz, m, events);
  }
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++)
    if (s->fence[q] > stz.cycles) stz.cycles = s->fence[q];
  *stats = stz;
done:
  if (s) {
    for (int ch = 0; ch < LDMC_TPU_CH_COUNT; ch++) free(s->tok[ch]);
    free(s->list);
    free(s->mm_k);
  }
  free(s);
  free(kn);
  if (m) ldmc_tpu_machine_free(m);
  return st;
}

ldmc_status ldmc_tpu_sim_run(const ldmc_tpu_target *t, const ldmc_tpu_program *p, ldmc_tpu_mem *mem, ldmc_tpu_sim_mode mode,
                             ldmc_tpu_stats *stats) {
  return ldmc_tpu_sim_trace(t, p, mem, mode, stats, NULL);
}

void ldmc_tpu_stats_print(FILE *f, const ldmc_tpu_target *t, const ldmc_tpu_stats *s) {
  double cyc = s->cycles ? (double)s->cycles : 1.0;
  fprintf(f, "target %s: %llu cycles (%.3f us at %.0f MHz), %llu/%llu/%llu instructions (load/compute/store)\n", t->name,
          (unsigned long long)s->cycles, s->cycles / t->clock_hz * 1e6, t->clock_hz / 1e6, (unsigned long long)s->insns[0],
          (unsigned long long)s->insns[1], (unsigned long long)s->insns[2]);
  double peak = (double)ldmc_tpu_target_peak_macs_per_cycle(t) * cyc;
  fprintf(f, "  MACs %llu: %.1f%% of peak\n", (unsigned long long)s->macs, 100.0 * (double)s->macs / peak);
  for (int u = 0; u < t->mxu_count; u++)
    fprintf(f, "  mxu%d: stream %.1f%%, weight load %.1f%%\n", u, 100.0 * (double)s->mxu_busy[u] / cyc, 100.0 * (double)s->wload_busy[u] / cyc);
  fprintf(f, "  vector unit %.1f%% (%llu elements), accumulator port %.1f%%\n", 100.0 * (double)s->vec_busy / cyc,
          (unsigned long long)s->vec_elems, 100.0 * (double)s->acc_busy / cyc);
  fprintf(f, "  off-chip: %llu bytes loaded, %llu stored, link busy %.1f%%, %.1f%% of peak bandwidth\n", (unsigned long long)s->bytes_loaded,
          (unsigned long long)s->bytes_stored, 100.0 * (double)s->dma_busy / cyc,
          100.0 * (double)(s->bytes_loaded + s->bytes_stored) / (ldmc_tpu_target_bytes_per_cycle(t) * cyc));
  for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) {
    fprintf(f, "  %s queue stalls:", ldmc_tpu_queue_name((unsigned)q));
    bool any = false;
    for (int c = 0; c < LDMC_TPU_STALL_COUNT; c++)
      if (s->stall[q][c]) fprintf(f, " %s %llu", k_stalls[c], (unsigned long long)s->stall[q][c]), any = true;
    fprintf(f, "%s\n", any ? "" : " none");
  }
}
