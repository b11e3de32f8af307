/* tpusim simulator: cycle counts against hand derivations (one matmul tile,
 * DMA-bound copies, a double-buffered loop, a vector chain), functional
 * results against double-precision oracles (bf16-rounded matmul inputs,
 * softmax), the timing-only mode, and a roofline bound on every run. */
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/sim.h"
#include "support/half.h"
#include "test_util.h"

static const char *k_tiny =
    "{\"name\": \"tiny\", \"clock_hz\": 1e9, \"cores_per_chip\": 1,\n"
    " \"matrix\": {\"units\": 1, \"rows\": 16, \"cols\": 16},\n"
    " \"vector\": {\"lanes\": 16, \"sublanes\": 1, \"ops_per_cycle\": 1, \"latency_cycles\": 2,\n"
    "            \"cycles\": {\"exp\": 4, \"log\": 4, \"sqrt\": 4, \"rsqrt\": 4, \"recip\": 4, \"tanh\": 4, \"erf\": 8, \"sigmoid\": 4}},\n"
    " \"scratchpad\": {\"bytes\": 1048576, \"banks\": 1},\n"
    " \"accumulator\": {\"bytes\": 4096},\n"
    " \"offchip\": {\"bytes_per_s\": 64e9, \"latency_ns\": 100, \"dma_engines\": 1}}\n";

/* tiny: 1 GHz, one 16x16 unit, 64 B/cycle, 100 cycles latency, one DMA engine */
static ldmc_tpu_target tiny(void) {
  ldmc_tpu_target t;
  ldmc_status st = ldmc_tpu_target_parse(k_tiny, strlen(k_tiny), "tiny", &t);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  return t;
}

/* ---- program building ------------------------------------------------------------------- */
static ldmc_tpu_program P;
static void emit(ldmc_tpu_insn in) { CHECK(ldmc_tpu_program_push(&P, &in) == LDMC_OK); }
static void reset(void) {
  ldmc_tpu_program_free(&P);
  ldmc_tpu_program_init(&P);
}

static void dma(ldmc_tpu_opcode op, uint8_t dep, uint8_t buf, uint8_t mdt, uint32_t off, uint32_t mstride, uint8_t vdt, uint32_t vaddr,
                uint32_t vstride, uint16_t rows, uint16_t cols) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(op, dep);
  in.u.dma = (ldmc_tpu_dma){.buf = buf, .mem_dtype = mdt, .vmem_dtype = vdt, .rows = rows, .cols = cols, .mem_offset = off,
                            .mem_stride = mstride, .vmem_addr = vaddr, .vmem_stride = vstride};
  emit(in);
}
static void loadw(uint8_t dep, uint8_t mxu, uint8_t dt, uint32_t vaddr, uint32_t vstride, uint16_t k, uint16_t n, uint8_t tr) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_LOAD_W, dep);
  in.u.loadw = (ldmc_tpu_loadw){.mxu = mxu, .dtype = dt, .transpose = tr, .k = k, .n = n, .vmem_addr = vaddr, .vmem_stride = vstride};
  emit(in);
}
static void matmul(uint8_t dep, uint8_t mxu, uint8_t dt, uint32_t vaddr, uint32_t vstride, uint16_t rows, uint32_t acc_row, uint8_t acc) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_MATMUL, dep);
  in.u.mm = (ldmc_tpu_matmul){.mxu = mxu, .dtype = dt, .accumulate = acc, .rows = rows, .vmem_addr = vaddr, .vmem_stride = vstride, .acc_row = acc_row};
  emit(in);
}
static void accmove(uint8_t dep, uint8_t dt, uint32_t vaddr, uint32_t vstride, uint32_t acc_row, uint16_t acc_col, uint16_t rows, uint16_t cols) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_ACC_MOVE, dep);
  in.u.acc = (ldmc_tpu_accmove){.dtype = dt, .rows = rows, .cols = cols, .acc_col = acc_col, .acc_row = acc_row, .vmem_addr = vaddr, .vmem_stride = vstride};
  emit(in);
}
/* f32 vector op over rows x cols; b is read as bcast says */
static void vop(ldmc_tpu_opcode op, uint8_t dep, uint8_t func, uint8_t bcast, uint32_t dst, uint16_t ds, uint32_t a, uint16_t as, uint32_t b,
                uint16_t bs, uint16_t rows, uint16_t cols) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(op, dep);
  in.u.vec = (ldmc_tpu_vec){.func = func, .bcast = bcast, .rows = rows, .cols = cols, .dst = dst, .a = a, .b = b, .dst_stride = ds,
                            .a_stride = as, .b_stride = bs};
  emit(in);
}
static void vreduce(uint8_t dep, uint8_t func, uint8_t axis, uint32_t dst, uint16_t ds, uint32_t a, uint16_t as, uint16_t rows, uint16_t cols) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_VEC_REDUCE, dep);
  in.u.vec = (ldmc_tpu_vec){.func = func, .axis = axis, .rows = rows, .cols = cols, .dst = dst, .a = a, .dst_stride = ds, .a_stride = as};
  emit(in);
}
static void nop(ldmc_tpu_queue q, uint8_t dep) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_NOP, dep);
  in.u.nop.queue = (uint8_t)q;
  emit(in);
}
enum { PP = LDMC_TPU_POP_PREV, PN = LDMC_TPU_POP_NEXT, UP = LDMC_TPU_PUSH_PREV, UN = LDMC_TPU_PUSH_NEXT };
enum { F32 = LDMC_TPU_F32, BF16 = LDMC_TPU_BF16 };

static ldmc_tpu_mem g_mem;
static void mem_reset(void) {
  for (int i = 0; i < g_mem.count; i++) free(g_mem.buf[i].data);
  memset(&g_mem, 0, sizeof g_mem);
}
static void *mem_add(uint64_t bytes) {
  ldmc_tpu_buffer *b = &g_mem.buf[g_mem.count++];
  b->bytes = bytes;
  b->data = calloc(bytes ? bytes : 1, 1);
  return b->data;
}

/* Every run checks the roofline: no unit busier than the run is long, MACs
 * within the peak rate, bytes within the off-chip bandwidth. */
static ldmc_status run(const ldmc_tpu_target *t, ldmc_tpu_sim_mode mode, ldmc_tpu_stats *s, ldmc_tpu_event *ev) {
  ldmc_status st = ldmc_tpu_sim_trace(t, &P, &g_mem, mode, s, ev);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st != LDMC_OK) return st;
  double cyc = (double)s->cycles;
  CHECK_MSG((double)s->macs <= cyc * (double)ldmc_tpu_target_peak_macs_per_cycle(t), "%llu MACs in %llu cycles",
            (unsigned long long)s->macs, (unsigned long long)s->cycles);
  CHECK_MSG((double)(s->bytes_loaded + s->bytes_stored) <= cyc * ldmc_tpu_target_bytes_per_cycle(t) + 1e-6, "%llu bytes in %llu cycles",
            (unsigned long long)(s->bytes_loaded + s->bytes_stored), (unsigned long long)s->cycles);
  for (int u = 0; u < t->mxu_count; u++) CHECK(s->mxu_busy[u] <= s->cycles && s->wload_busy[u] <= s->cycles);
  CHECK(s->vec_busy <= s->cycles && s->acc_busy <= s->cycles && s->dma_busy <= s->cycles);
  return st;
}

static uint64_t g_rng = 12345;
static float frand(float lo, float hi) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (float)((g_rng >> 40) * (1.0 / 16777216.0));
}
static float bf(float x) { return ldmc_bf16_to_f32(ldmc_f32_to_bf16(x)); }
static void put_bf16(void *base, size_t i, float v) {
  uint16_t h = ldmc_f32_to_bf16(v);
  memcpy((uint8_t *)base + 2 * i, &h, 2);
}
static float get_bf16(const void *base, size_t i) {
  uint16_t h;
  memcpy(&h, (const uint8_t *)base + 2 * i, 2);
  return ldmc_bf16_to_f32(h);
}

static void expect_events(const ldmc_tpu_event *ev, const uint64_t (*want)[2], size_t n) {
  for (size_t i = 0; i < n; i++)
    CHECK_MSG(ev[i].start == want[i][0] && ev[i].end == want[i][1], "insn %zu: [%llu, %llu], want [%llu, %llu]", i,
              (unsigned long long)ev[i].start, (unsigned long long)ev[i].end, (unsigned long long)want[i][0], (unsigned long long)want[i][1]);
}

/* One 16x16x16 tile on tiny: load A and W, load_w, matmul, move out, store.
 *   0 load A   512 B: 8 cycles on the link, data after 100 + 8: [0, 108]
 *   1 load W   the one engine is busy until 108:          [108, 216], pushes at 216
 *   2 load_w   pops the token at 216; R = 16 cycles:      [216, 232]
 *   3 matmul   waits for its weights (232); M + R + C = 16 + 16 + 16: [232, 280]
 *   4 acc_move reads what the matmul writes (hazard) until 280; 16 rows: [280, 296], pushes at 296
 *   5 store    1024 B f32: 16 cycles + 100:               [296, 412]
 * total 412 cycles. */
static void test_single_tile(void) {
  ldmc_tpu_target t = tiny();
  reset(), mem_reset();
  void *A = mem_add(512), *W = mem_add(512);
  float *O = mem_add(1024);
  float a[16][16], w[16][16];
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      a[i][j] = (float)((i * 7 + j * 3) % 11 - 5), w[i][j] = (float)((i * 5 + j) % 7 - 3);
      put_bf16(A, (size_t)i * 16 + j, a[i][j]), put_bf16(W, (size_t)i * 16 + j, w[i][j]);
    }
  dma(LDMC_TPU_DMA_LOAD, 0, 0, BF16, 0, 16, BF16, 0x0, 16, 16, 16);
  dma(LDMC_TPU_DMA_LOAD, UN, 1, BF16, 0, 16, BF16, 0x1000, 16, 16, 16);
  loadw(PP, 0, BF16, 0x1000, 16, 16, 16, 0);
  matmul(0, 0, BF16, 0x0, 16, 16, 0, 0);
  accmove(UN, F32, 0x2000, 16, 0, 0, 16, 16);
  dma(LDMC_TPU_DMA_STORE, PP, 2, F32, 0, 16, F32, 0x2000, 16, 16, 16);
  ldmc_tpu_stats s;
  ldmc_tpu_event ev[6];
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, ev) != LDMC_OK) return;
  static const uint64_t want[6][2] = {{0, 108}, {108, 216}, {216, 232}, {232, 280}, {280, 296}, {296, 412}};
  expect_events(ev, want, 6);
  CHECK(s.cycles == 412);
  CHECK(s.macs == 16 * 16 * 16);
  CHECK(s.mxu_busy[0] == 16 && s.wload_busy[0] == 16 && s.acc_busy == 16);
  CHECK(s.dma_busy == 8 + 8 + 16 && s.bytes_loaded == 1024 && s.bytes_stored == 1024);
  CHECK(s.stall[LDMC_TPU_Q_LOAD][LDMC_TPU_STALL_DMA] == 107);             /* ready at 1, engine free at 108 */
  CHECK(s.stall[LDMC_TPU_Q_COMPUTE][LDMC_TPU_STALL_TOKEN_LOAD] == 216);
  CHECK(s.stall[LDMC_TPU_Q_COMPUTE][LDMC_TPU_STALL_WEIGHTS] == 232 - 217);
  CHECK(s.stall[LDMC_TPU_Q_COMPUTE][LDMC_TPU_STALL_HAZARD] == 280 - 233);
  CHECK(s.stall[LDMC_TPU_Q_STORE][LDMC_TPU_STALL_TOKEN_COMPUTE] == 296);
  int bad = 0;
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      double ref = 0;
      for (int k = 0; k < 16; k++) ref += (double)a[i][k] * w[k][j];
      bad += O[i * 16 + j] != (float)ref; /* small integers: exact */
    }
  CHECK_MSG(bad == 0, "%d wrong elements", bad);
  /* timing-only: the same cycles, no data touched */
  memset(O, 0, 1024);
  ldmc_tpu_stats s2;
  if (run(&t, LDMC_TPU_SIM_TIMING_ONLY, &s2, NULL) != LDMC_OK) return;
  CHECK(s2.cycles == s.cycles && s2.macs == s.macs && memcmp(s.stall, s2.stall, sizeof s.stall) == 0);
  CHECK(O[0] == 0.0f && O[255] == 0.0f);
}

/* DMA-bound copies on tiny (64 B/cycle, latency 100).
 * (a) one engine: 64 KiB in (1024 cycles + 100), a compute nop relays the
 *     token, 64 KiB out: 2 * (100 + 1024) = 2248 cycles.
 * (b) four engines, four independent 16 KiB loads: the link serializes the
 *     transfers (256 cycles each) and the latencies overlap: load i runs
 *     [256 i, 256 i + 356], total 4 * 256 + 100 = 1124. */
static void test_dma_copy(void) {
  ldmc_tpu_target t = tiny();
  reset(), mem_reset();
  float *src = mem_add(65536), *dst = mem_add(65536);
  for (int i = 0; i < 16384; i++) src[i] = (float)i * 0.5f;
  dma(LDMC_TPU_DMA_LOAD, UN, 0, F32, 0, 1024, F32, 0, 1024, 16, 1024);
  nop(LDMC_TPU_Q_COMPUTE, PP | UN);
  dma(LDMC_TPU_DMA_STORE, PP, 1, F32, 0, 1024, F32, 0, 1024, 16, 1024);
  ldmc_tpu_stats s;
  ldmc_tpu_event ev[3];
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, ev) != LDMC_OK) return;
  static const uint64_t want[3][2] = {{0, 1124}, {1124, 1124}, {1124, 2248}};
  expect_events(ev, want, 3);
  CHECK(s.cycles == 2248 && s.dma_busy == 2048);
  CHECK(memcmp(src, dst, 65536) == 0);

  t.dma_engines = 4;
  reset();
  for (int i = 0; i < 4; i++) dma(LDMC_TPU_DMA_LOAD, 0, 0, F32, (uint32_t)i * 4096, 1024, F32, (uint32_t)i * 16384, 1024, 4, 1024);
  ldmc_tpu_event ev4[4];
  if (run(&t, LDMC_TPU_SIM_TIMING_ONLY, &s, ev4) != LDMC_OK) return;
  static const uint64_t want4[4][2] = {{0, 356}, {256, 612}, {512, 868}, {768, 1124}};
  expect_events(ev4, want4, 4);
  CHECK(s.cycles == 1124 && s.bytes_loaded == 65536);
  CHECK(s.stall[LDMC_TPU_Q_LOAD][LDMC_TPU_STALL_DMA] == 3 * 255); /* each ready one cycle after the last start */
}

/* A double-buffered loop of N = 4 matmuls C_i = A_i W (A_i 256x16, bf16
 * out) on tiny with 128 B/cycle, two DMA engines and 768 accumulator rows
 * (three buffers of 256). Buffers: A in 2, outputs in 2, accumulator in 3.
 *   load:    LW (W, 512 B: 4 cycles) push; L_i (8 KiB: 64 cycles) pop(compute) for i >= 2, push
 *   compute: load_w pop; MM_0; then MM_i, AM_{i-1} (software-pipelined); AM_3.
 *            MM_i pops A_i and pushes "A buffer free" for i < 2; AM_i pops
 *            "output buffer free" for i >= 2 and pushes "output ready".
 *   store:   S_i pop, push for i < 2.
 * Derivation: LW [0, 104]; L0 [4, 168] (the link is free at 4); load_w [104, 120];
 * MM_0 starts at 168 (its A), then every matmul streams 256 rows back to
 * back: MM_i starts at 168 + 256 i (the loads, [104, 268], [456, 620],
 * [712, 876], are always ahead), ends 288 later (fill and drain R + C = 32).
 * AM_i starts when MM_i ends (168 + 256 i + 288) and takes 256 cycles: the
 * accumulator port is as busy as the matrix unit. The last store starts when
 * AM_3 ends, 1480, and takes 100 + 64: total 1644
 *   = 168 (prologue: W and A_0 in) + 4 * 256 (the busiest units' sum)
 *     + 32 (drain) + 256 (last acc_move) + 164 (last store). */
static void test_double_buffered(void) {
  ldmc_tpu_target t = tiny();
  t.hbm_bytes_per_s = 128e9, t.dma_engines = 2, t.acc_bytes = 768 * 16 * 4;
  reset(), mem_reset();
  enum { N = 4, M = 256 };
  void *W = mem_add(512), *A = mem_add((size_t)N * M * 16 * 2), *O = mem_add((size_t)N * M * 16 * 2);
  for (int i = 0; i < 256; i++) put_bf16(W, (size_t)i, frand(-1, 1));
  for (int i = 0; i < N * M * 16; i++) put_bf16(A, (size_t)i, frand(-1, 1));
  const uint32_t vW = 0, vA[2] = {0x1000, 0x3000}, vO[2] = {0x5000, 0x7000};
  dma(LDMC_TPU_DMA_LOAD, UN, 0, BF16, 0, 16, BF16, vW, 16, 16, 16);
  for (int i = 0; i < N; i++) dma(LDMC_TPU_DMA_LOAD, (i >= 2 ? PN : 0) | UN, 1, BF16, (uint32_t)(i * M * 16), 16, BF16, vA[i % 2], 16, M, 16);
  loadw(PP, 0, BF16, vW, 16, 16, 16, 0);
  for (int i = 0; i <= N; i++) {
    if (i < N) matmul(PP | (i + 2 < N ? UP : 0), 0, BF16, vA[i % 2], 16, M, (uint32_t)(i % 3) * M, 0);
    int j = i - 1; /* the move of the previous matmul, after this one is issued */
    if (j >= 0) accmove((j >= 2 ? PN : 0) | UN, BF16, vO[j % 2], 16, (uint32_t)(j % 3) * M, 0, M, 16);
  }
  for (int i = 0; i < N; i++) dma(LDMC_TPU_DMA_STORE, PP | (i + 2 < N ? UP : 0), 2, BF16, (uint32_t)(i * M * 16), 16, BF16, vO[i % 2], 16, M, 16);
  ldmc_tpu_stats s;
  ldmc_tpu_event *ev = calloc(P.count, sizeof *ev);
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, ev) == LDMC_OK) {
    CHECK_MSG(s.cycles == 1644, "%llu cycles", (unsigned long long)s.cycles);
    CHECK(s.mxu_busy[0] == N * M && s.acc_busy == N * M);
    /* the matmuls (instructions 6, 7, 9, 11) stream back to back */
    CHECK(ev[6].start == 168 && ev[7].start == 424 && ev[9].start == 680 && ev[11].start == 936);
    CHECK(ev[5].start == 104 && ev[5].end == 120);
    int bad = 0;
    for (int r = 0; r < N * M; r++)
      for (int c = 0; c < 16; c++) {
        double ref = 0;
        for (int k = 0; k < 16; k++) ref += (double)get_bf16(A, (size_t)r * 16 + k) * get_bf16(W, (size_t)k * 16 + c);
        float got = get_bf16(O, (size_t)r * 16 + c);
        bad += fabs(got - ref) > 1e-2 * fabs(ref) + 1e-6; /* one bf16 rounding of the f32 sum */
      }
    CHECK_MSG(bad == 0, "%d wrong outputs", bad);
  }
  free(ev);
}

/* C = A W with M = 40, K = 48 (three k tiles accumulated), N = 32 (one
 * 16-column tile on each of two matrix units), f32 in memory, rounded to
 * bf16 by the DMA, against a double sum of the bf16-rounded inputs. */
static void test_functional_matmul(void) {
  ldmc_tpu_target t = tiny();
  t.mxu_count = 2, t.acc_bytes = 128 * 16 * 4;
  reset(), mem_reset();
  enum { M = 40, K = 48, N = 32 };
  float *A = mem_add(M * K * 4), *W = mem_add(K * N * 4), *O = mem_add(M * N * 4);
  for (int i = 0; i < M * K; i++) A[i] = frand(-2, 2);
  for (int i = 0; i < K * N; i++) W[i] = frand(-2, 2);
  const uint32_t vA = 0, vW = 0x4000, vO = 0x8000;
  dma(LDMC_TPU_DMA_LOAD, 0, 0, F32, 0, K, BF16, vA, K, M, K);
  dma(LDMC_TPU_DMA_LOAD, UN, 1, F32, 0, N, BF16, vW, N, K, N);
  for (int j = 0; j < 2; j++)
    for (int kk = 0; kk < 3; kk++) {
      loadw(j == 0 && kk == 0 ? PP : 0, (uint8_t)j, BF16, vW + (uint32_t)(kk * 16 * N + j * 16) * 2, N, 16, 16, 0);
      matmul(0, (uint8_t)j, BF16, vA + (uint32_t)kk * 16 * 2, K, M, (uint32_t)j * M, kk > 0);
    }
  for (int j = 0; j < 2; j++) accmove(j == 1 ? UN : 0, F32, vO + (uint32_t)j * 16 * 4, N, (uint32_t)j * M, 0, M, 16);
  dma(LDMC_TPU_DMA_STORE, PP, 2, F32, 0, N, F32, vO, N, M, N);
  ldmc_tpu_stats s;
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, NULL) != LDMC_OK) return;
  CHECK(s.macs == (uint64_t)M * K * N);
  double worst = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double ref = 0, mag = 0;
      for (int k = 0; k < K; k++) ref += (double)bf(A[i * K + k]) * bf(W[k * N + j]), mag += fabs((double)bf(A[i * K + k]) * bf(W[k * N + j]));
      double err = fabs(O[i * N + j] - ref) / (mag + 1e-30);
      worst = err > worst ? err : worst;
    }
  CHECK_MSG(worst < 4e-7 * K, "worst relative error %g", worst); /* f32 accumulation of K exact products */
  /* without the bf16 rounding of the inputs the error would be ~1e-3 */
  double unrounded = 0;
  for (int k = 0; k < K; k++) unrounded += (double)A[k] * W[k * N];
  CHECK(fabs(O[0] - unrounded) > 1e-6);

  /* rounding to nearest even, exactly: W = identity, ties in A */
  reset(), mem_reset();
  float *a = mem_add(16 * 4), *w = mem_add(256 * 4), *o = mem_add(16 * 4);
  for (int i = 0; i < 16; i++) w[i * 16 + i] = 1.0f;
  a[0] = 1.0f + 0x1p-8f;              /* halfway between 1 and 1 + 2^-7: to 1 (even) */
  a[1] = 1.0f + 3 * 0x1p-8f;          /* halfway between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6 */
  a[2] = 1.0f + 0x1p-8f + 0x1p-20f;   /* above halfway: up */
  a[3] = -(1.0f + 0x1p-8f);           /* ties are symmetric */
  dma(LDMC_TPU_DMA_LOAD, 0, 0, F32, 0, 16, F32, 0, 16, 1, 16); /* f32 in the scratchpad: the matrix unit rounds */
  dma(LDMC_TPU_DMA_LOAD, UN, 1, F32, 0, 16, F32, 0x100, 16, 16, 16);
  loadw(PP, 0, F32, 0x100, 16, 16, 16, 0);
  matmul(0, 0, F32, 0, 16, 1, 0, 0);
  accmove(UN, F32, 0x800, 16, 0, 0, 1, 16);
  dma(LDMC_TPU_DMA_STORE, PP, 2, F32, 0, 16, F32, 0x800, 16, 1, 16);
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, NULL) != LDMC_OK) return;
  CHECK_MSG(o[0] == 1.0f && o[1] == 1.015625f && o[2] == 1.0078125f && o[3] == -1.0f && o[4] == 0.0f, "%.9g %.9g %.9g %.9g", o[0], o[1], o[2], o[3]);
}

/* Row softmax of a 4x200 f32 matrix through the vector unit against a
 * direct double computation; then its cycles, hand-derived on tiny (lanes
 * 16, one sublane, latency 2, exp and recip 4 cycles per vreg):
 * 4 * ceil(200 / 16) = 52 vregs.
 *   load 3200 B: [0, 150]; max.rows 52 + 2 + log2(16): [150, 208];
 *   sub (row bcast) 52 + 2: [208, 262]; exp 208 + 2: [262, 472];
 *   sum.rows [472, 530]; div (a recip) 208 + 2: [530, 740]; store [740, 890]. */
static void test_softmax(void) {
  ldmc_tpu_target t = tiny();
  reset(), mem_reset();
  enum { R = 4, C = 200 };
  float *X = mem_add(R * C * 4), *Y = mem_add(R * C * 4);
  for (int i = 0; i < R * C; i++) X[i] = frand(-8, 8);
  X[3] = 80.0f; /* exp(80) overflows f32 unless the max is subtracted */
  const uint32_t vX = 0, vE = 0x1000, vM = 0x2000, vS = 0x2100, vY = 0x3000;
  dma(LDMC_TPU_DMA_LOAD, UN, 0, F32, 0, C, F32, vX, C, R, C);
  vreduce(PP, LDMC_TPU_R_MAX, LDMC_TPU_AX_ROWS, vM, 1, vX, C, R, C);
  vop(LDMC_TPU_VEC_BINARY, 0, LDMC_TPU_B_SUB, LDMC_TPU_BC_ROW, vE, C, vX, C, vM, 1, R, C);
  vop(LDMC_TPU_VEC_UNARY, 0, LDMC_TPU_U_EXP, 0, vE, C, vE, C, 0, 0, R, C);
  vreduce(0, LDMC_TPU_R_SUM, LDMC_TPU_AX_ROWS, vS, 1, vE, C, R, C);
  vop(LDMC_TPU_VEC_BINARY, UN, LDMC_TPU_B_DIV, LDMC_TPU_BC_ROW, vY, C, vE, C, vS, 1, R, C);
  dma(LDMC_TPU_DMA_STORE, PP, 1, F32, 0, C, F32, vY, C, R, C);
  ldmc_tpu_stats s;
  ldmc_tpu_event ev[7];
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, ev) != LDMC_OK) return;
  double worst = 0;
  for (int r = 0; r < R; r++) {
    double m = -INFINITY, sum = 0;
    for (int c = 0; c < C; c++) m = fmax(m, X[r * C + c]);
    for (int c = 0; c < C; c++) sum += exp((double)X[r * C + c] - m);
    for (int c = 0; c < C; c++) {
      double ref = exp((double)X[r * C + c] - m) / sum, err = fabs(Y[r * C + c] - ref) / (ref + 1e-30);
      worst = err > worst ? err : worst;
    }
  }
  CHECK_MSG(worst < 2e-5, "softmax: worst relative error %g", worst);
  static const uint64_t want[7][2] = {{0, 150}, {150, 208}, {208, 262}, {262, 472}, {472, 530}, {530, 740}, {740, 890}};
  expect_events(ev, want, 7);
  CHECK(s.vec_busy == 52 + 52 + 208 + 52 + 208);
  CHECK(s.vec_elems == 4 + 800 + 800 + 4 + 800);
}

/* A 3x3 convolution (padding 1) by implicit im2col: for output row oh and
 * tap (kh, kw) one DMA reads the 6 input pixels of that tap (row stride =
 * channels); pixels left/right of the image are pad rows of the tile, an
 * input row above/below the image is a padding-only load. The 9 taps
 * accumulate into the same accumulator rows. Against a double convolution
 * of the bf16-rounded inputs. */
static void test_conv_im2col(void) {
  ldmc_tpu_target t = tiny();
  reset(), mem_reset();
  enum { H = 5, W = 6, CI = 4, CO = 8 };
  float *X = mem_add(H * W * CI * 4), *K = mem_add(9 * CI * CO * 4), *Y = mem_add(H * W * CO * 4);
  for (int i = 0; i < H * W * CI; i++) X[i] = frand(-1, 1);
  for (int i = 0; i < 9 * CI * CO; i++) K[i] = frand(-1, 1);
  const uint32_t vK = 0, vT = 0x1000, vY = 0x4000, tile = W * CI * 2;
  dma(LDMC_TPU_DMA_LOAD, 0, 1, F32, 0, CO, BF16, vK, CO, 9 * CI, CO); /* [tap][ci][co] */
  for (int oh = 0; oh < H; oh++)
    for (int tap = 0; tap < 9; tap++) {
      int kh = tap / 3, kw = tap % 3, ih = oh + kh - 1, last = oh == H - 1 && tap == 8;
      ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_LOAD, last ? UN : 0);
      ldmc_tpu_dma *d = &in.u.dma;
      *d = (ldmc_tpu_dma){.buf = 0, .mem_dtype = F32, .vmem_dtype = BF16, .cols = CI, .mem_stride = CI, .vmem_addr = vT + (uint32_t)(oh * 9 + tap) * tile, .vmem_stride = CI};
      if (ih < 0 || ih >= H) {
        d->pad_top = W, d->cols = 0, d->pad_right = CI; /* the whole tile is padding */
      } else {
        int iw0 = kw - 1; /* input column of output column 0 */
        d->pad_top = iw0 < 0, d->pad_bottom = iw0 + W > W;
        d->rows = (uint16_t)(W - d->pad_top - d->pad_bottom);
        d->mem_offset = (uint32_t)((ih * W + (iw0 < 0 ? 0 : iw0)) * CI);
      }
      emit(in);
    }
  for (int oh = 0; oh < H; oh++)
    for (int tap = 0; tap < 9; tap++) {
      loadw(oh == 0 && tap == 0 ? PP : 0, 0, BF16, vK + (uint32_t)tap * CI * CO * 2, CO, CI, CO, 0);
      matmul(0, 0, BF16, vT + (uint32_t)(oh * 9 + tap) * tile, CI, W, (uint32_t)oh * W, tap > 0);
    }
  accmove(UN, F32, vY, CO, 0, 0, H * W, CO);
  dma(LDMC_TPU_DMA_STORE, PP, 2, F32, 0, CO, F32, vY, CO, H * W, CO);
  ldmc_tpu_stats s;
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, NULL) != LDMC_OK) return;
  CHECK(s.bytes_loaded == (uint64_t)9 * CI * CO * 4 + (uint64_t)((H - 2) * 3 * (5 + 6 + 5) + 2 * 2 * (5 + 6 + 5)) * CI * 4);
  int bad = 0;
  for (int oh = 0; oh < H; oh++)
    for (int ow = 0; ow < W; ow++)
      for (int co = 0; co < CO; co++) {
        double ref = 0;
        for (int kh = 0; kh < 3; kh++)
          for (int kw = 0; kw < 3; kw++) {
            int ih = oh + kh - 1, iw = ow + kw - 1;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            for (int ci = 0; ci < CI; ci++) ref += (double)bf(X[(ih * W + iw) * CI + ci]) * bf(K[((kh * 3 + kw) * CI + ci) * CO + co]);
          }
        bad += fabs(Y[(oh * W + ow) * CO + co] - ref) > 1e-5;
      }
  CHECK_MSG(bad == 0, "conv: %d wrong outputs", bad);
}

/* Online softmax statistics over two 16-column blocks (the flash-attention
 * update: running max m, rescaled running sum l), a row sum accumulated
 * across the blocks, and a column sum; against direct double sums. */
static void test_online_softmax(void) {
  ldmc_tpu_target t = tiny();
  reset(), mem_reset();
  enum { R = 4, C = 32, B = 16 };
  float *X = mem_add(R * C * 4), *out = mem_add((3 * R + C) * 4);
  for (int i = 0; i < R * C; i++) X[i] = frand(-6, 6);
  const uint32_t vX = 0, vm = 0x1000, vl = 0x1100, vmb = 0x1200, vmn = 0x1300, val = 0x1400, vlb = 0x1500, vs = 0x1600, vcs = 0x1700, vp = 0x2000;
  const ldmc_tpu_opcode U = LDMC_TPU_VEC_UNARY, BI = LDMC_TPU_VEC_BINARY;
  dma(LDMC_TPU_DMA_LOAD, UN, 0, F32, 0, C, F32, vX, C, R, C);
  ldmc_tpu_insn fill = ldmc_tpu_insn_make(U, PP);
  fill.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_U_FILL, .rows = R, .cols = 1, .dst = vm, .dst_stride = 1, .imm = -INFINITY};
  emit(fill);
  fill.dep = 0, fill.u.vec.dst = vl, fill.u.vec.imm = 0.0f;
  emit(fill);
  for (int blk = 0; blk < 2; blk++) {
    uint32_t xb = vX + (uint32_t)blk * B * 4;
    vreduce(0, LDMC_TPU_R_MAX, LDMC_TPU_AX_ROWS, vmb, 1, xb, C, R, B);
    vop(BI, 0, LDMC_TPU_B_MAX, LDMC_TPU_BC_FULL, vmn, 1, vmb, 1, vm, 1, R, 1);
    vop(BI, 0, LDMC_TPU_B_SUB, LDMC_TPU_BC_FULL, val, 1, vm, 1, vmn, 1, R, 1);
    vop(U, 0, LDMC_TPU_U_EXP, 0, val, 1, val, 1, 0, 0, R, 1);
    vop(BI, 0, LDMC_TPU_B_SUB, LDMC_TPU_BC_ROW, vp, B, xb, C, vmn, 1, R, B);
    vop(U, 0, LDMC_TPU_U_EXP, 0, vp, B, vp, B, 0, 0, R, B);
    vreduce(0, LDMC_TPU_R_SUM, LDMC_TPU_AX_ROWS, vlb, 1, vp, B, R, B);
    vop(BI, 0, LDMC_TPU_B_MUL, LDMC_TPU_BC_FULL, vl, 1, vl, 1, val, 1, R, 1);
    vop(BI, 0, LDMC_TPU_B_ADD, LDMC_TPU_BC_FULL, vl, 1, vl, 1, vlb, 1, R, 1);
    vop(U, 0, LDMC_TPU_U_COPY, 0, vm, 1, vmn, 1, 0, 0, R, 1);
    ldmc_tpu_insn acc = ldmc_tpu_insn_make(LDMC_TPU_VEC_REDUCE, 0); /* plain row sum, accumulated over blocks */
    acc.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_R_SUM, .axis = LDMC_TPU_AX_ROWS, .accumulate = blk > 0, .rows = R, .cols = B, .dst = vs, .a = xb,
                               .dst_stride = 1, .a_stride = C};
    emit(acc);
  }
  vreduce(0, LDMC_TPU_R_SUM, LDMC_TPU_AX_COLS, vcs, 0, vX, C, R, C);
  /* m, l, s are consecutive 4-element rows in the scratchpad, then the column sums */
  vop(U, UN, LDMC_TPU_U_COPY, 0, 0x3000, 1, vm, 1, 0, 0, R, 1);
  dma(LDMC_TPU_DMA_STORE, PP, 1, F32, 0, 1, F32, 0x3000, 1, R, 1);
  nop(LDMC_TPU_Q_COMPUTE, UN);
  dma(LDMC_TPU_DMA_STORE, PP, 1, F32, R, 1, F32, vl, 1, R, 1);
  nop(LDMC_TPU_Q_COMPUTE, UN);
  dma(LDMC_TPU_DMA_STORE, PP, 1, F32, 2 * R, 1, F32, vs, 1, R, 1);
  nop(LDMC_TPU_Q_COMPUTE, UN);
  dma(LDMC_TPU_DMA_STORE, PP, 1, F32, 3 * R, C, F32, vcs, C, 1, C);
  ldmc_tpu_stats s;
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, NULL) != LDMC_OK) return;
  for (int r = 0; r < R; r++) {
    double m = -INFINITY, l = 0, sum = 0;
    for (int c = 0; c < C; c++) m = fmax(m, X[r * C + c]), sum += X[r * C + c];
    for (int c = 0; c < C; c++) l += exp((double)X[r * C + c] - m);
    CHECK(out[r] == (float)m);
    CHECK_NEAR(out[R + r], l, 1e-5 * l);
    CHECK_NEAR(out[2 * R + r], sum, 1e-5 * C * 6);
  }
  for (int c = 0; c < C; c++) {
    double cs = 0;
    for (int r = 0; r < R; r++) cs += X[r * C + c];
    CHECK_NEAR(out[3 * R + c], cs, 1e-5 * R * 6);
  }
}

/* A tiled, multi-buffered matmul stream C[MxN] = A[MxK] B[KxN] (bf16 in,
 * f32 out) for any target: blocks of TM rows x (units * C) columns, k steps
 * of R; inputs in a ring of NBUF buffers (four: a load's latency, 750
 * cycles on v5e, is longer than a k step), accumulators in two regions,
 * outputs in two buffers; a block's moves are issued after the next block's
 * first k step. */
#define NBUF 4
/* The accumulator -> scratchpad moves of block b (tokens: output buffer free, output ready). */
static void emit_moves(const ldmc_tpu_target *t, uint32_t b, const uint32_t *vO, uint32_t TM, uint32_t BN) {
  uint32_t U = (uint32_t)t->mxu_count, C = (uint32_t)t->mxu_cols;
  for (uint32_t u = 0; u < U; u++)
    accmove((u == 0 && b >= 2 ? PN : 0) | (u == U - 1 ? UN : 0), F32, vO[b % 2] + u * C * 4, BN, ((b % 2) * U + u) * TM, 0, (uint16_t)TM,
            (uint16_t)C);
}

static void gen_tiled_matmul(const ldmc_tpu_target *t, uint32_t M, uint32_t N, uint32_t K) {
  uint32_t R = (uint32_t)t->mxu_rows, C = (uint32_t)t->mxu_cols, U = (uint32_t)t->mxu_count, BN = U * C;
  uint32_t TM = 4 * R < M ? 4 * R : M;
  uint32_t nb_m = M / TM, nb_n = N / BN, ks = K / R, nblocks = nb_m * nb_n, steps = nblocks * ks;
  uint32_t a_bytes = TM * R * 2, b_bytes = R * BN * 2, o_bytes = TM * BN * 4;
  uint32_t vA[NBUF], vB[NBUF], vO[2];
  for (int i = 0; i < NBUF; i++) vA[i] = i * (a_bytes + b_bytes), vB[i] = vA[i] + a_bytes;
  vO[0] = NBUF * (a_bytes + b_bytes), vO[1] = vO[0] + o_bytes;
  uint32_t step = 0;
  for (uint32_t b = 0; b < nblocks; b++) {
    uint32_t bm = b / nb_n, bn = b % nb_n;
    for (uint32_t kk = 0; kk < ks; kk++, step++) {
      int s2 = step % NBUF;
      dma(LDMC_TPU_DMA_LOAD, step >= NBUF ? PN : 0, 0, BF16, bm * TM * K + kk * R, K, BF16, vA[s2], R, (uint16_t)TM, (uint16_t)R);
      dma(LDMC_TPU_DMA_LOAD, UN, 1, BF16, kk * R * N + bn * BN, N, BF16, vB[s2], BN, (uint16_t)R, (uint16_t)BN);
      for (uint32_t u = 0; u < U; u++) {
        loadw(u == 0 ? PP : 0, (uint8_t)u, BF16, vB[s2] + u * C * 2, BN, (uint16_t)R, (uint16_t)C, 0);
        matmul(u == U - 1 && step + NBUF < steps ? UP : 0, (uint8_t)u, BF16, vA[s2], R, (uint16_t)TM, ((b % 2) * U + u) * TM, kk > 0);
      }
      if (kk == 0 && b > 0) emit_moves(t, b - 1, vO, TM, BN);
    }
  }
  emit_moves(t, nblocks - 1, vO, TM, BN);
  for (uint32_t b = 0; b < nblocks; b++) {
    uint32_t bm = b / nb_n, bn = b % nb_n;
    dma(LDMC_TPU_DMA_STORE, PP | (b + 2 < nblocks ? UP : 0), 2, F32, bm * TM * N + bn * BN, N, F32, vO[b % 2], BN, (uint16_t)TM, (uint16_t)BN);
  }
}

/* The tiled stream on every preset, timing only: within the roofline (run()
 * checks), every MAC counted, and on v5e the double buffering keeps the
 * matrix units mostly busy. Small functional check of the same generator
 * on tiny against the oracle. */
static void test_presets_roofline(void) {
  for (const char *const *n = ldmc_tpu_target_preset_names(); *n; n++) {
    ldmc_tpu_target t;
    CHECK(ldmc_tpu_target_preset(*n, &t) == LDMC_OK);
    reset(), mem_reset();
    uint32_t M = 1024, N = 1024, K = 1024;
    mem_add((uint64_t)M * K * 2), mem_add((uint64_t)K * N * 2), mem_add((uint64_t)M * N * 4);
    gen_tiled_matmul(&t, M, N, K);
    ldmc_tpu_stats s;
    if (run(&t, LDMC_TPU_SIM_TIMING_ONLY, &s, NULL) != LDMC_OK) continue;
    CHECK(s.macs == (uint64_t)M * N * K);
    double util = (double)s.macs / ((double)s.cycles * (double)ldmc_tpu_target_peak_macs_per_cycle(&t));
    printf("  %s: 1024^3 matmul %llu cycles, MAC utilization %.1f%%\n", *n, (unsigned long long)s.cycles, 100 * util);
    if (getenv("TPUSIM_VERBOSE")) ldmc_tpu_stats_print(stdout, &t, &s);
    /* v4 and v5e: 8 MiB in and 4 MiB out take 23040 link cycles on v5e
     * (546 B/cycle) against 16384 of matrix work, so the run is link-bound;
     * with the transfers overlapped the link and the units are both busy. */
    double link = (double)s.dma_busy / (double)s.cycles;
    if (strcmp(*n, "v1") != 0) CHECK_MSG(util > 0.4 && link > 0.6, "%s: MAC utilization %.3f, link %.3f", *n, util, link);
    if (strcmp(*n, "v1") == 0) CHECK_MSG(link > 0.99, "v1 is bound by its 34 GB/s: link %.3f", link);
  }
  ldmc_tpu_target t = tiny();
  t.mxu_count = 2, t.acc_bytes = 512 * 16 * 4;
  reset(), mem_reset();
  enum { M = 128, N = 64, K = 48 };
  void *A = mem_add(M * K * 2), *B = mem_add(K * N * 2);
  float *O = mem_add(M * N * 4);
  for (int i = 0; i < M * K; i++) put_bf16(A, (size_t)i, frand(-1, 1));
  for (int i = 0; i < K * N; i++) put_bf16(B, (size_t)i, frand(-1, 1));
  gen_tiled_matmul(&t, M, N, K);
  ldmc_tpu_stats s;
  if (run(&t, LDMC_TPU_SIM_FUNCTIONAL, &s, NULL) != LDMC_OK) return;
  int bad = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double ref = 0;
      for (int k = 0; k < K; k++) ref += (double)get_bf16(A, (size_t)i * K + k) * get_bf16(B, (size_t)k * N + j);
      bad += fabs(O[i * N + j] - ref) > 1e-5;
    }
  CHECK_MSG(bad == 0, "tiled matmul: %d wrong outputs", bad);
}

int main(void) {
  ldmc_tpu_program_init(&P);
  test_single_tile();
  test_dma_copy();
  test_double_buffered();
  test_functional_matmul();
  test_softmax();
  test_conv_im2col();
  test_online_softmax();
  test_presets_roofline();
  ldmc_tpu_program_free(&P);
  mem_reset();
  return test_summary("test_tpusim_sim");
}
