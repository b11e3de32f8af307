/* Simulator speed: simulated instructions per second of ldmc_tpu_sim_run in
 * timing-only and functional modes, on a tiled, multi-buffered matmul
 * stream generated here (bf16 inputs, f32 output).
 *   bench_tpusim_sim_speed [timing_n=4096] [functional_n=1024] [preset=v5e]
 * runs an n x n x n matmul stream in each mode and prints instructions/s,
 * simulated cycles and the matrix units' utilization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/tpusim/sim.h"

#define NBUF 4 /* input buffers: a load's latency spans more than one k step */

static ldmc_tpu_program P;
static void emit(ldmc_tpu_insn in) {
  if (ldmc_tpu_program_push(&P, &in) != LDMC_OK) {
    fprintf(stderr, "%s\n", ldmc_last_error());
    exit(1);
  }
}
enum { PP = LDMC_TPU_POP_PREV, PN = LDMC_TPU_POP_NEXT, UP = LDMC_TPU_PUSH_PREV, UN = LDMC_TPU_PUSH_NEXT };

static void dma(ldmc_tpu_opcode op, uint8_t dep, uint8_t buf, uint8_t dt, uint32_t off, uint32_t mstride, uint32_t vaddr, uint32_t vstride,
                uint32_t rows, uint32_t cols) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(op, dep);
  in.u.dma = (ldmc_tpu_dma){.buf = buf, .mem_dtype = dt, .vmem_dtype = dt, .rows = (uint16_t)rows, .cols = (uint16_t)cols,
                            .mem_offset = off, .mem_stride = mstride, .vmem_addr = vaddr, .vmem_stride = vstride};
  emit(in);
}

/* The accumulator -> scratchpad moves of block b. */
static void moves(const ldmc_tpu_target *t, uint32_t b, const uint32_t *vO, uint32_t TM, uint32_t BN) {
  uint32_t U = (uint32_t)t->mxu_count, C = (uint32_t)t->mxu_cols;
  for (uint32_t u = 0; u < U; u++) {
    ldmc_tpu_insn a = ldmc_tpu_insn_make(LDMC_TPU_ACC_MOVE, (u == 0 && b >= 2 ? PN : 0) | (u == U - 1 ? UN : 0));
    a.u.acc = (ldmc_tpu_accmove){.dtype = LDMC_TPU_F32, .rows = (uint16_t)TM, .cols = (uint16_t)C, .acc_row = ((b % 2) * U + u) * TM,
                                 .vmem_addr = vO[b % 2] + u * C * 4, .vmem_stride = BN};
    emit(a);
  }
}

/* C = A B over blocks of TM x (units * C) outputs and k steps of R; a
 * block's moves are issued after the next block's first k step. */
static void gen(const ldmc_tpu_target *t, uint32_t n) {
  uint32_t R = (uint32_t)t->mxu_rows, C = (uint32_t)t->mxu_cols, U = (uint32_t)t->mxu_count, BN = U * C;
  uint32_t TM = 4 * R < n ? 4 * R : n, nb_n = n / BN, ks = n / R, nblocks = (n / TM) * nb_n, steps = nblocks * ks;
  uint32_t a_bytes = TM * R * 2, b_bytes = R * BN * 2, o_bytes = TM * BN * 4, vA[NBUF], vB[NBUF], vO[2];
  for (int i = 0; i < NBUF; i++) vA[i] = i * (a_bytes + b_bytes), vB[i] = vA[i] + a_bytes;
  vO[0] = NBUF * (a_bytes + b_bytes), vO[1] = vO[0] + o_bytes;
  uint32_t step = 0;
  for (uint32_t b = 0; b < nblocks; b++)
    for (uint32_t kk = 0; kk < ks; kk++, step++) {
      uint32_t bm = b / nb_n, bn = b % nb_n, s = step % NBUF;
      dma(LDMC_TPU_DMA_LOAD, step >= NBUF ? PN : 0, 0, LDMC_TPU_BF16, bm * TM * n + kk * R, n, vA[s], R, TM, R);
      dma(LDMC_TPU_DMA_LOAD, UN, 1, LDMC_TPU_BF16, kk * R * n + bn * BN, n, vB[s], BN, R, BN);
      for (uint32_t u = 0; u < U; u++) {
        ldmc_tpu_insn w = ldmc_tpu_insn_make(LDMC_TPU_LOAD_W, u == 0 ? PP : 0);
        w.u.loadw = (ldmc_tpu_loadw){.mxu = (uint8_t)u, .dtype = LDMC_TPU_BF16, .k = (uint16_t)R, .n = (uint16_t)C, .vmem_addr = vB[s] + u * C * 2,
                                     .vmem_stride = BN};
        emit(w);
        ldmc_tpu_insn m = ldmc_tpu_insn_make(LDMC_TPU_MATMUL, u == U - 1 && step + NBUF < steps ? UP : 0);
        m.u.mm = (ldmc_tpu_matmul){.mxu = (uint8_t)u, .dtype = LDMC_TPU_BF16, .accumulate = kk > 0, .rows = (uint16_t)TM, .vmem_addr = vA[s],
                                   .vmem_stride = R, .acc_row = ((b % 2) * U + u) * TM};
        emit(m);
      }
      if (kk == 0 && b > 0) moves(t, b - 1, vO, TM, BN);
    }
  moves(t, nblocks - 1, vO, TM, BN);
  for (uint32_t b = 0; b < nblocks; b++)
    dma(LDMC_TPU_DMA_STORE, PP | (b + 2 < nblocks ? UP : 0), 2, LDMC_TPU_F32, (b / nb_n) * TM * n + (b % nb_n) * BN, n, vO[b % 2], BN, TM, BN);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int measure(const ldmc_tpu_target *t, uint32_t n, ldmc_tpu_sim_mode mode) {
  ldmc_tpu_program_free(&P);
  ldmc_tpu_program_init(&P);
  gen(t, n);
  static ldmc_tpu_mem mem;
  memset(&mem, 0, sizeof mem);
  mem.count = 3;
  uint64_t sizes[3] = {(uint64_t)n * n * 2, (uint64_t)n * n * 2, (uint64_t)n * n * 4};
  for (int i = 0; i < 3; i++) {
    mem.buf[i].bytes = sizes[i];
    if (mode == LDMC_TPU_SIM_FUNCTIONAL && !(mem.buf[i].data = calloc(sizes[i], 1))) return fprintf(stderr, "out of memory\n"), 1;
  }
  if (mode == LDMC_TPU_SIM_FUNCTIONAL) /* bf16 ones: every output is n */
    for (int i = 0; i < 2; i++)
      for (uint64_t j = 0; j < (uint64_t)n * n; j++) ((uint16_t *)mem.buf[i].data)[j] = 0x3f80;
  ldmc_tpu_stats s;
  int reps = 0;
  double t0 = now(), el;
  do {
    if (ldmc_tpu_sim_run(t, &P, &mem, mode, &s) != LDMC_OK) return fprintf(stderr, "%s\n", ldmc_last_error()), 1;
    reps++;
    el = now() - t0;
  } while (el < 0.5);
  const char *name = mode == LDMC_TPU_SIM_FUNCTIONAL ? "functional" : "timing-only";
  double util = (double)s.macs / ((double)s.cycles * (double)ldmc_tpu_target_peak_macs_per_cycle(t));
  printf("%-11s %s %u^3: %zu instructions, %.3g instructions/s (%d runs in %.2f s, %.3g simulated MAC/s), %llu cycles, MAC utilization %.1f%%\n",
         name, t->name, n, P.count, (double)P.count * reps / el, reps, el, (double)s.macs * reps / el, (unsigned long long)s.cycles, 100 * util);
  if (mode == LDMC_TPU_SIM_FUNCTIONAL && ((float *)mem.buf[2].data)[0] != (float)n)
    return fprintf(stderr, "functional result %g, want %u\n", ((float *)mem.buf[2].data)[0], n), 1;
  for (int i = 0; i < 3; i++) free(mem.buf[i].data);
  return 0;
}

int main(int argc, char **argv) {
  uint32_t nt = argc > 1 ? (uint32_t)atoi(argv[1]) : 4096, nf = argc > 2 ? (uint32_t)atoi(argv[2]) : 1024;
  ldmc_tpu_target t;
  if (ldmc_tpu_target_preset(argc > 3 ? argv[3] : "v5e", &t) != LDMC_OK) return fprintf(stderr, "%s\n", ldmc_last_error()), 1;
  uint32_t unit = (uint32_t)(4 * t.mxu_rows > t.mxu_count * t.mxu_cols ? 4 * t.mxu_rows : t.mxu_count * t.mxu_cols);
  if (nt % unit || nf % unit || nt > 65535 || nf > 65535)
    return fprintf(stderr, "sizes must be multiples of %u (4 R and units x C) below 65536\n", unit), 1;
  int rc = measure(&t, nt, LDMC_TPU_SIM_TIMING_ONLY);
  rc |= measure(&t, nf, LDMC_TPU_SIM_FUNCTIONAL);
  ldmc_tpu_program_free(&P);
  return rc;
}
