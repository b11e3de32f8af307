/* tpusim ISA: encode/decode round trips of every opcode with random fields,
 * decode of hostile bytes, the disassembly syntax, the verifier's error
 * classes, and target files (presets on disk == built-in, parse errors). */
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/isa.h"
#include "support/fileio.h"
#include "test_util.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 11);
}
static uint8_t rbit(void) { return rnd() & 1; }
static float rfloat(void) {
  uint32_t u = rnd() ^ rnd() << 16; /* any bit pattern, NaNs included: they round-trip as bits */
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* A random instruction of opcode op with every field in its encodable range. */
static ldmc_tpu_insn random_insn(ldmc_tpu_opcode op) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(op, (uint8_t)(rnd() & LDMC_TPU_DEP_MASK));
  switch (op) {
  case LDMC_TPU_NOP: in.u.nop.queue = (uint8_t)(rnd() % 3); break;
  case LDMC_TPU_DMA_LOAD:
  case LDMC_TPU_DMA_STORE: {
    ldmc_tpu_dma *d = &in.u.dma;
    d->buf = (uint8_t)rnd(), d->mem_dtype = rbit(), d->vmem_dtype = rbit();
    d->pad_top = (uint8_t)rnd(), d->pad_bottom = (uint8_t)rnd(), d->pad_left = (uint8_t)rnd(), d->pad_right = (uint8_t)rnd();
    d->rows = (uint16_t)rnd(), d->cols = (uint16_t)rnd();
    d->mem_offset = rnd() ^ rnd() << 20, d->mem_stride = rnd() ^ rnd() << 20;
    d->vmem_addr = rnd() ^ rnd() << 20, d->vmem_stride = rnd() ^ rnd() << 20;
    d->pad_value = rfloat();
    break;
  }
  case LDMC_TPU_LOAD_W: {
    ldmc_tpu_loadw *w = &in.u.loadw;
    w->mxu = (uint8_t)rnd(), w->dtype = rbit(), w->transpose = rbit();
    w->k = (uint16_t)rnd(), w->n = (uint16_t)rnd(), w->vmem_addr = rnd() ^ rnd() << 20, w->vmem_stride = rnd() ^ rnd() << 20;
    break;
  }
  case LDMC_TPU_MATMUL: {
    ldmc_tpu_matmul *m = &in.u.mm;
    m->mxu = (uint8_t)rnd(), m->dtype = rbit(), m->accumulate = rbit(), m->rows = (uint16_t)rnd();
    m->vmem_addr = rnd() ^ rnd() << 20, m->vmem_stride = rnd() ^ rnd() << 20, m->acc_row = rnd() ^ rnd() << 20;
    break;
  }
  case LDMC_TPU_ACC_MOVE: {
    ldmc_tpu_accmove *a = &in.u.acc;
    a->dtype = rbit(), a->rows = (uint16_t)rnd(), a->cols = (uint16_t)rnd(), a->acc_col = (uint16_t)rnd();
    a->acc_row = rnd() ^ rnd() << 20, a->vmem_addr = rnd() ^ rnd() << 20, a->vmem_stride = rnd() ^ rnd() << 20;
    break;
  }
  default: {
    ldmc_tpu_vec *v = &in.u.vec;
    unsigned nf = op == LDMC_TPU_VEC_UNARY ? LDMC_TPU_U_COUNT : op == LDMC_TPU_VEC_BINARY ? LDMC_TPU_B_COUNT : LDMC_TPU_R_COUNT;
    v->func = (uint8_t)(rnd() % nf), v->bcast = (uint8_t)(rnd() % 4), v->axis = rbit(), v->accumulate = rbit();
    v->dst_dtype = rbit(), v->a_dtype = rbit(), v->b_dtype = rbit();
    v->rows = (uint16_t)rnd(), v->cols = (uint16_t)rnd();
    v->dst = rnd() ^ rnd() << 20, v->a = rnd() ^ rnd() << 20, v->b = rnd() ^ rnd() << 20;
    v->dst_stride = (uint16_t)rnd(), v->a_stride = (uint16_t)rnd(), v->b_stride = (uint16_t)rnd();
    v->imm = rfloat();
    break;
  }
  }
  return in;
}

static void test_round_trip(void) {
  for (int op = LDMC_TPU_NOP; op < LDMC_TPU_OPCODE_COUNT; op++) {
    int bad = 0;
    for (int it = 0; it < 2000; it++) {
      ldmc_tpu_insn in = random_insn((ldmc_tpu_opcode)op), back;
      uint8_t b[LDMC_TPU_INSN_BYTES], b2[LDMC_TPU_INSN_BYTES];
      if (ldmc_tpu_insn_encode(&in, b) != LDMC_OK || b[0] != op || ldmc_tpu_insn_decode(b, &back) != LDMC_OK ||
          memcmp(&in, &back, sizeof in) != 0 || ldmc_tpu_insn_encode(&back, b2) != LDMC_OK || memcmp(b, b2, sizeof b) != 0)
        bad++;
    }
    CHECK_MSG(bad == 0, "%s: %d of 2000 random instructions did not round-trip (%s)", ldmc_tpu_opcode_name((unsigned)op), bad,
              ldmc_last_error());
  }
  /* random bytes: either refused, or they re-encode to exactly the same bytes */
  int accepted = 0, mismatched = 0;
  for (int it = 0; it < 20000; it++) {
    uint8_t b[LDMC_TPU_INSN_BYTES], b2[LDMC_TPU_INSN_BYTES];
    for (int i = 0; i < LDMC_TPU_INSN_BYTES; i++) b[i] = (uint8_t)rnd();
    b[0] = (uint8_t)(rnd() % 12);
    if (rnd() & 1) memset(b + 16 + rnd() % 9, 0, 8); /* some with zero tails, so a few decode */
    if (rnd() & 1) b[1] &= 0xf;
    ldmc_tpu_insn in;
    if (ldmc_tpu_insn_decode(b, &in) != LDMC_OK) continue;
    accepted++;
    if (ldmc_tpu_insn_encode(&in, b2) != LDMC_OK || memcmp(b, b2, sizeof b)) mismatched++;
  }
  CHECK(mismatched == 0);
  CHECK(accepted > 0);

  /* a program round-trips as a whole */
  ldmc_tpu_program p, q;
  ldmc_tpu_program_init(&p);
  for (int i = 0; i < 300; i++) {
    ldmc_tpu_insn in = random_insn((ldmc_tpu_opcode)(LDMC_TPU_NOP + i % (LDMC_TPU_OPCODE_COUNT - 1)));
    CHECK(ldmc_tpu_program_push(&p, &in) == LDMC_OK);
  }
  uint8_t *bytes;
  size_t len;
  CHECK(ldmc_tpu_program_encode(&p, &bytes, &len) == LDMC_OK);
  CHECK(len == 300 * LDMC_TPU_INSN_BYTES);
  CHECK(ldmc_tpu_program_decode(bytes, len, &q) == LDMC_OK);
  CHECK(q.count == p.count && memcmp(p.insns, q.insns, p.count * sizeof *p.insns) == 0);
  ldmc_tpu_program_free(&q);
  /* a bad byte in instruction 7 is refused, naming it */
  bytes[7 * LDMC_TPU_INSN_BYTES] = 0x3f;
  CHECK(ldmc_tpu_program_decode(bytes, len, &q) == LDMC_ERR_FORMAT);
  CHECK_MSG(strstr(ldmc_last_error(), "insn 7: unknown opcode 0x3f"), "%s", ldmc_last_error());
  CHECK(ldmc_tpu_program_decode(bytes, len - 1, &q) == LDMC_ERR_FORMAT);
  free(bytes);
  ldmc_tpu_program_free(&p);
}

static void test_decode_errors(void) {
  uint8_t b[LDMC_TPU_INSN_BYTES] = {0};
  ldmc_tpu_insn in;
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_ERR_FORMAT); /* opcode 0 */
  CHECK(strstr(ldmc_last_error(), "unknown opcode 0x00"));
  b[0] = LDMC_TPU_OPCODE_COUNT;
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_ERR_FORMAT);
  b[0] = LDMC_TPU_MATMUL;
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_OK);
  b[1] = 0x10; /* reserved dependency bit */
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_ERR_FORMAT);
  b[1] = 0;
  b[25] = 1; /* a reserved byte of matmul */
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_ERR_FORMAT);
  CHECK_MSG(strstr(ldmc_last_error(), "reserved byte 25"), "%s", ldmc_last_error());
  b[25] = 0;
  b[3] = 0x04; /* a reserved flag bit of matmul */
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_ERR_FORMAT);
  memset(b, 0, sizeof b);
  b[0] = LDMC_TPU_VEC_UNARY, b[2] = LDMC_TPU_U_COUNT; /* unknown function */
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_ERR_FORMAT);
  b[0] = LDMC_TPU_NOP, b[2] = 3; /* unknown queue */
  CHECK(ldmc_tpu_insn_decode(b, &in) == LDMC_ERR_FORMAT);
  /* encode refuses fields that do not fit their bits */
  ldmc_tpu_insn v = ldmc_tpu_insn_make(LDMC_TPU_VEC_BINARY, 0);
  v.u.vec.func = LDMC_TPU_B_COUNT;
  CHECK(ldmc_tpu_insn_encode(&v, b) == LDMC_ERR_INVALID);
  v.u.vec.func = 0, v.u.vec.dst_dtype = 2;
  CHECK(ldmc_tpu_insn_encode(&v, b) == LDMC_ERR_INVALID);
}

static void check_line(const ldmc_tpu_insn *in, const char *want) {
  char line[LDMC_TPU_DISASM_MAX];
  ldmc_tpu_insn_disasm(in, line, sizeof line);
  CHECK_MSG(strcmp(line, want) == 0, "got  '%s'\nwant '%s'", line, want);
}

static void test_disasm(void) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_LOAD, LDMC_TPU_POP_NEXT | LDMC_TPU_PUSH_NEXT);
  in.u.dma = (ldmc_tpu_dma){.buf = 1, .mem_dtype = LDMC_TPU_F32, .vmem_dtype = LDMC_TPU_BF16, .pad_top = 1, .pad_right = 2, .rows = 15,
                            .cols = 126, .mem_offset = 4096, .mem_stride = 512, .vmem_addr = 0x400, .vmem_stride = 128, .pad_value = -0.5f};
  check_line(&in, "dma_load vm[0x400 bf16 s128] <- buf1[4096 f32 s512] 15x126 pad(1,0,0,2)=-0.5 ; pop(compute) push(compute)");
  in = ldmc_tpu_insn_make(LDMC_TPU_DMA_STORE, LDMC_TPU_POP_PREV);
  in.u.dma = (ldmc_tpu_dma){.buf = 2, .rows = 16, .cols = 256, .mem_stride = 256, .vmem_addr = 0x8000, .vmem_stride = 256};
  check_line(&in, "dma_store buf2[0 f32 s256] <- vm[0x8000 f32 s256] 16x256 ; pop(compute)");
  in = ldmc_tpu_insn_make(LDMC_TPU_LOAD_W, LDMC_TPU_POP_PREV);
  in.u.loadw = (ldmc_tpu_loadw){.mxu = 3, .dtype = LDMC_TPU_BF16, .transpose = 1, .k = 64, .n = 128, .vmem_addr = 0x10, .vmem_stride = 64};
  check_line(&in, "load_w mxu3 <- vm[0x10 bf16 s64] k=64 n=128 transposed ; pop(load)");
  in = ldmc_tpu_insn_make(LDMC_TPU_MATMUL, LDMC_TPU_PUSH_PREV | LDMC_TPU_PUSH_NEXT);
  in.u.mm = (ldmc_tpu_matmul){.mxu = 1, .dtype = LDMC_TPU_BF16, .accumulate = 1, .rows = 64, .vmem_addr = 0x8000, .vmem_stride = 128, .acc_row = 128};
  check_line(&in, "matmul mxu1 acc[128] += vm[0x8000 bf16 s128] m=64 ; push(load) push(store)");
  in = ldmc_tpu_insn_make(LDMC_TPU_ACC_MOVE, 0);
  in.u.acc = (ldmc_tpu_accmove){.dtype = LDMC_TPU_BF16, .rows = 8, .cols = 100, .acc_col = 28, .acc_row = 7, .vmem_addr = 0x40, .vmem_stride = 100};
  check_line(&in, "acc_move vm[0x40 bf16 s100] <- acc[7,28] 8x100");
  in = ldmc_tpu_insn_make(LDMC_TPU_VEC_BINARY, 0);
  in.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_B_SUB, .bcast = LDMC_TPU_BC_ROW, .rows = 8, .cols = 128, .dst = 0x100, .a = 0x200, .b = 0x300,
                            .dst_stride = 128, .a_stride = 128, .b_stride = 1};
  check_line(&in, "vec.sub vm[0x100 f32 s128] <- vm[0x200 f32 s128], row vm[0x300 f32 s1] 8x128");
  in.u.vec.bcast = LDMC_TPU_BC_SCALAR, in.u.vec.func = LDMC_TPU_B_MUL, in.u.vec.imm = 0.125f, in.u.vec.b = 0, in.u.vec.b_stride = 0;
  check_line(&in, "vec.mul vm[0x100 f32 s128] <- vm[0x200 f32 s128], 0.125 8x128");
  in = ldmc_tpu_insn_make(LDMC_TPU_VEC_REDUCE, 0);
  in.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_R_MAX, .axis = LDMC_TPU_AX_ROWS, .accumulate = 1, .rows = 8, .cols = 128, .dst = 0x300,
                            .a = 0x200, .dst_stride = 1, .a_stride = 128};
  check_line(&in, "vec.max.rows vm[0x300 f32 s1] <+ vm[0x200 f32 s128] 8x128");
  in = ldmc_tpu_insn_make(LDMC_TPU_VEC_UNARY, 0);
  in.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_U_FILL, .rows = 8, .cols = 1, .dst = 0x300, .dst_stride = 1, .imm = -INFINITY};
  check_line(&in, "vec.fill vm[0x300 f32 s1] <- -inf 8x1");
  in = ldmc_tpu_insn_make(LDMC_TPU_NOP, LDMC_TPU_POP_PREV | LDMC_TPU_PUSH_NEXT);
  in.u.nop.queue = LDMC_TPU_Q_COMPUTE;
  check_line(&in, "nop compute ; pop(load) push(store)");
}

/* ---- verifier -------------------------------------------------------------------------- */
static ldmc_tpu_target g_t;
static ldmc_tpu_mem g_mem;

static ldmc_tpu_insn load(uint32_t vaddr, uint16_t rows, uint16_t cols, uint8_t dep) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_DMA_LOAD, dep);
  in.u.dma = (ldmc_tpu_dma){.vmem_dtype = LDMC_TPU_BF16, .rows = rows, .cols = cols, .mem_stride = cols, .vmem_addr = vaddr, .vmem_stride = cols};
  return in;
}
static ldmc_tpu_insn nop(ldmc_tpu_queue q, uint8_t dep) {
  ldmc_tpu_insn in = ldmc_tpu_insn_make(LDMC_TPU_NOP, dep);
  in.u.nop.queue = (uint8_t)q;
  return in;
}

/* Verifies the n instructions; expects failure with both phrases in the message. */
static void expect_bad(const ldmc_tpu_insn *ins, size_t n, const char *p1, const char *p2) {
  ldmc_tpu_program p = {(ldmc_tpu_insn *)ins, n, n};
  ldmc_status st = ldmc_tpu_verify(&g_t, &p, &g_mem);
  CHECK_MSG(st == LDMC_ERR_INVALID && strstr(ldmc_last_error(), p1) && strstr(ldmc_last_error(), p2), "want '%s' ... '%s', got %s: %s",
            p1, p2, ldmc_status_name(st), st ? ldmc_last_error() : "ok");
}
static void expect_ok(const ldmc_tpu_insn *ins, size_t n) {
  ldmc_tpu_program p = {(ldmc_tpu_insn *)ins, n, n};
  ldmc_status st = ldmc_tpu_verify(&g_t, &p, &g_mem);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
}

static void test_verify(void) {
  CHECK(ldmc_tpu_target_preset("v5e", &g_t) == LDMC_OK);
  memset(&g_mem, 0, sizeof g_mem);
  g_mem.count = 2;
  g_mem.buf[0].bytes = 1 << 20;
  g_mem.buf[1].bytes = 4096;
  /* a good pair: load, a compute relay, store */
  ldmc_tpu_insn st = ldmc_tpu_insn_make(LDMC_TPU_DMA_STORE, LDMC_TPU_POP_PREV);
  st.u.dma = (ldmc_tpu_dma){.buf = 1, .vmem_dtype = LDMC_TPU_BF16, .mem_dtype = LDMC_TPU_BF16, .rows = 16, .cols = 128, .mem_stride = 128, .vmem_stride = 128};
  ldmc_tpu_insn ok[] = {load(0, 16, 128, LDMC_TPU_PUSH_NEXT), nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_POP_PREV | LDMC_TPU_PUSH_NEXT), st};
  expect_ok(ok, 3);

  ldmc_tpu_insn bad = ldmc_tpu_insn_make((ldmc_tpu_opcode)42, 0);
  expect_bad(&bad, 1, "insn 0", "unknown opcode 42");
  /* scratchpad range: 128 MiB on v5e */
  ldmc_tpu_insn in = load((128u << 20) - 1024, 16, 128, 0);
  expect_bad(&in, 1, "insn 0 (dma_load)", "outside the target's 134217728 bytes");
  in = load(3, 1, 1, 0);
  expect_bad(&in, 1, "insn 0 (dma_load)", "not aligned");
  /* off-chip range: buffer 1 holds 4096 bytes = 2048 bf16 */
  in = load(0, 16, 128, 0);
  in.u.dma.buf = 1, in.u.dma.mem_dtype = LDMC_TPU_BF16;
  expect_ok(&in, 1);
  in.u.dma.mem_offset = 1;
  expect_bad(&in, 1, "insn 0 (dma_load)", "off-chip range [2, 4098) of buffer 1 is outside its 4096 bytes");
  in.u.dma.buf = 2;
  expect_bad(&in, 1, "insn 0", "off-chip buffer 2 does not exist");
  /* a pure padding load reads nothing off chip */
  in = load(0, 0, 0, 0);
  in.u.dma.buf = 9, in.u.dma.pad_top = 4, in.u.dma.pad_left = 8, in.u.dma.vmem_stride = 8;
  expect_ok(&in, 1);
  in.u.dma.vmem_stride = 7; /* rows of 8 would overlap */
  expect_bad(&in, 1, "insn 0", "rows would overlap");
  ldmc_tpu_insn pst = st;
  pst.dep = 0, pst.u.dma.pad_top = 1;
  expect_bad(&pst, 1, "insn 0 (dma_store)", "no padding");
  /* matrix unit */
  ldmc_tpu_insn w = ldmc_tpu_insn_make(LDMC_TPU_LOAD_W, 0), mm = ldmc_tpu_insn_make(LDMC_TPU_MATMUL, 0);
  w.u.loadw = (ldmc_tpu_loadw){.mxu = 0, .dtype = LDMC_TPU_BF16, .k = 128, .n = 128, .vmem_stride = 128};
  mm.u.mm = (ldmc_tpu_matmul){.mxu = 0, .dtype = LDMC_TPU_BF16, .rows = 8, .vmem_stride = 128};
  expect_bad(&mm, 1, "insn 0 (matmul)", "matrix unit 0 has no weights");
  ldmc_tpu_insn wm[] = {w, mm};
  expect_ok(wm, 2);
  wm[1].u.mm.mxu = 1;
  expect_bad(wm, 2, "insn 1 (matmul)", "matrix unit 1 has no weights");
  wm[1].u.mm.mxu = 4;
  expect_bad(wm, 2, "insn 1", "matrix unit 4 does not exist (4 units)");
  wm[1].u.mm.mxu = 0, wm[1].u.mm.acc_row = 8192 - 7; /* v5e: 4 MiB / (128 * 4) = 8192 rows */
  expect_bad(wm, 2, "insn 1 (matmul)", "accumulator rows [8185, 8193) are outside the target's 8192 rows");
  wm[0].u.loadw.k = 129;
  expect_bad(wm, 2, "insn 0 (load_w)", "does not fit the 128x128 matrix unit");
  ldmc_tpu_insn am = ldmc_tpu_insn_make(LDMC_TPU_ACC_MOVE, 0);
  am.u.acc = (ldmc_tpu_accmove){.rows = 8, .cols = 100, .acc_col = 29, .vmem_stride = 100};
  expect_bad(&am, 1, "insn 0 (acc_move)", "accumulator columns [29, 129)");
  ldmc_tpu_insn vu = ldmc_tpu_insn_make(LDMC_TPU_VEC_UNARY, 0);
  vu.u.vec = (ldmc_tpu_vec){.func = LDMC_TPU_U_EXP, .rows = 8, .cols = 128, .a_stride = 128, .dst_stride = 128, .accumulate = 1};
  expect_bad(&vu, 1, "insn 0 (vec_unary)", "only vec_reduce");
  vu.u.vec.accumulate = 0, vu.u.vec.a = (128u << 20) - 16;
  expect_bad(&vu, 1, "insn 0 (vec_unary)", "operand a");
  /* dependency flags the queue cannot have */
  in = load(0, 1, 1, LDMC_TPU_POP_PREV);
  expect_bad(&in, 1, "insn 0 (dma_load)", "load queue has no previous queue");
  pst = st;
  pst.dep = LDMC_TPU_PUSH_NEXT;
  expect_bad(&pst, 1, "insn 0 (dma_store)", "store queue has no next queue");

  /* token underflow: compute pops twice, load pushes once */
  ldmc_tpu_insn uf[] = {load(0, 1, 1, LDMC_TPU_PUSH_NEXT), nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_POP_PREV), nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_POP_PREV)};
  expect_bad(uf, 3, "insn 2 (nop): token underflow", "from the load queue");
  /* deadlock: load waits for compute, which waits for load */
  ldmc_tpu_insn dl[] = {load(0, 1, 1, LDMC_TPU_POP_NEXT | LDMC_TPU_PUSH_NEXT), nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_POP_PREV | LDMC_TPU_PUSH_PREV)};
  expect_bad(dl, 2, "insn 0 (dma_load): deadlock", "insn 1 (compute queue) waits for a token from load");
  /* the same two with the compute push first is fine (compute runs ahead) */
  ldmc_tpu_insn fine[] = {load(0, 1, 1, LDMC_TPU_POP_NEXT | LDMC_TPU_PUSH_NEXT), nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_PUSH_PREV),
                          nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_POP_PREV)};
  expect_ok(fine, 3);
  /* three-queue deadlock: store waits for compute, compute for store */
  ldmc_tpu_insn dl3[] = {nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_POP_NEXT | LDMC_TPU_PUSH_NEXT), nop(LDMC_TPU_Q_STORE, LDMC_TPU_POP_PREV | LDMC_TPU_PUSH_PREV)};
  expect_bad(dl3, 2, "deadlock", "insn 1 (store queue) waits for a token from compute");
  /* leftovers: a push nobody pops */
  ldmc_tpu_insn lo[] = {load(0, 1, 1, LDMC_TPU_PUSH_NEXT), load(0, 1, 1, LDMC_TPU_PUSH_NEXT), nop(LDMC_TPU_Q_COMPUTE, LDMC_TPU_POP_PREV)};
  expect_bad(lo, 3, "insn 1 (dma_load): 1 token(s) from load to compute left at the end", "last push");
}

/* ---- targets ---------------------------------------------------------------------------- */
static void compare_targets(const ldmc_tpu_target *a, const ldmc_tpu_target *b, const char *name) {
  CHECK_MSG(strcmp(a->name, b->name) == 0, "%s name", name);
  CHECK_MSG(a->clock_hz == b->clock_hz && a->cores_per_chip == b->cores_per_chip, "%s clock/cores", name);
  CHECK_MSG(a->mxu_count == b->mxu_count && a->mxu_rows == b->mxu_rows && a->mxu_cols == b->mxu_cols, "%s matrix", name);
  CHECK_MSG(a->vec_lanes == b->vec_lanes && a->vec_sublanes == b->vec_sublanes && a->vec_ops_per_cycle == b->vec_ops_per_cycle &&
                a->vec_latency == b->vec_latency && memcmp(a->vec_cycles, b->vec_cycles, sizeof a->vec_cycles) == 0,
            "%s vector", name);
  CHECK_MSG(a->vmem_bytes == b->vmem_bytes && a->vmem_banks == b->vmem_banks && a->acc_bytes == b->acc_bytes, "%s memories", name);
  CHECK_MSG(a->hbm_bytes_per_s == b->hbm_bytes_per_s && a->hbm_latency_ns == b->hbm_latency_ns && a->dma_engines == b->dma_engines,
            "%s offchip", name);
}

static const char *k_tiny =
    "{\"name\": \"tiny\", \"clock_hz\": 1e9, \"cores_per_chip\": 1,\n"
    " \"matrix\": {\"units\": 1, \"rows\": 16, \"cols\": 16},\n"
    " \"vector\": {\"lanes\": 16, \"sublanes\": 1, \"ops_per_cycle\": 1, \"latency_cycles\": 2,\n"
    "            \"cycles\": {\"exp\": 4, \"log\": 4, \"sqrt\": 4, \"rsqrt\": 4, \"recip\": 4, \"tanh\": 4, \"erf\": 8, \"sigmoid\": 4}},\n"
    " \"scratchpad\": {\"bytes\": 1048576, \"banks\": 1},\n"
    " \"accumulator\": {\"bytes\": 4096},\n"
    " \"offchip\": {\"bytes_per_s\": 64e9, \"latency_ns\": 100, \"dma_engines\": 1}}\n";

/* k_tiny with the first occurrence of `from` replaced by `to`; expects a parse error containing want. */
static void expect_target_error(const char *from, const char *to, const char *want) {
  char text[2048];
  const char *at = strstr(k_tiny, from);
  CHECK_MSG(at, "'%s' not in the test target", from);
  if (!at) return;
  snprintf(text, sizeof text, "%.*s%s%s", (int)(at - k_tiny), k_tiny, to, at + strlen(from));
  ldmc_tpu_target t;
  ldmc_status st = ldmc_tpu_target_parse(text, strlen(text), "tiny.json", &t);
  CHECK_MSG(st != LDMC_OK && strstr(ldmc_last_error(), "tiny.json") && strstr(ldmc_last_error(), want), "want '%s', got %s", want,
            st ? ldmc_last_error() : "ok");
}

static void test_targets(void) {
  const char *src = getenv("LDMC_SRC");
  char path[1024];
  for (const char *const *n = ldmc_tpu_target_preset_names(); *n; n++) {
    ldmc_tpu_target built, file;
    CHECK(ldmc_tpu_target_preset(*n, &built) == LDMC_OK);
    snprintf(path, sizeof path, "%s/backends/tpusim/presets/%s.json", src ? src : "..", *n);
    ldmc_status st = ldmc_tpu_target_load(path, &file);
    CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
    if (st == LDMC_OK) compare_targets(&built, &file, *n);
  }
  ldmc_tpu_target t;
  CHECK(ldmc_tpu_target_preset("v9", &t) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), "unknown tpusim target preset 'v9'"));
  /* figures derived from the presets (hand-computed) */
  CHECK(ldmc_tpu_target_preset("v1", &t) == LDMC_OK);
  CHECK(ldmc_tpu_target_acc_rows(&t) == 4096);             /* 4 MiB / (256 * 4 B) */
  CHECK(ldmc_tpu_target_latency_cycles(&t) == 70);         /* 100 ns at 700 MHz */
  CHECK_NEAR(ldmc_tpu_target_bytes_per_cycle(&t), 34e9 / 700e6, 1e-9);
  CHECK(ldmc_tpu_target_peak_macs_per_cycle(&t) == 65536); /* 92 TOPS / 2 / 700 MHz ~ 65.7k */
  CHECK(ldmc_tpu_target_preset("v5e", &t) == LDMC_OK);
  CHECK_NEAR(2.0 * ldmc_tpu_target_peak_macs_per_cycle(&t) * t.clock_hz, 197e12, 1e12); /* the documented bf16 peak */

  CHECK(ldmc_tpu_target_parse(k_tiny, strlen(k_tiny), "tiny.json", &t) == LDMC_OK);
  CHECK(t.mxu_rows == 16 && t.acc_bytes == 4096 && t.hbm_bytes_per_s == 64e9 && t.vec_cycles[LDMC_TPU_T_ERF] == 8);
  expect_target_error("\"banks\": 1", "\"bank\": 1", "unknown field scratchpad.bank");
  expect_target_error(", \"banks\": 1", "", "missing field scratchpad.banks");
  expect_target_error("\"rows\": 16", "\"rows\": \"16\"", "field matrix.rows: expected an integer, found a string");
  expect_target_error("\"bytes\": 1048576", "\"bytes\": -5", "field scratchpad.bytes: -5 is below the minimum 1");
  expect_target_error("\"latency_ns\": 100", "\"latency_ns\": -1", "field offchip.latency_ns");
  expect_target_error("\"units\": 1", "\"units\": 9", "field matrix.units: 9 is out of range");
  expect_target_error("\"bytes\": 4096", "\"bytes\": 4000", "accumulator.bytes: not a whole number of rows");
  expect_target_error("\"erf\": 8", "\"erf\": 0", "vector.cycles.erf");
  expect_target_error("\"matrix\": {", "\"matrix\": 3, \"x\": {", "unknown field x");
  expect_target_error("\"vector\": {", "\"vector\": [1], \"v\": {", "unknown field v");
  expect_target_error("\"clock_hz\": 1e9", "\"clock_hz\": true", "field clock_hz: expected a number, found a boolean");
  expect_target_error("}}\n", "}", "tiny.json:"); /* malformed JSON: file:line:col */
  CHECK(ldmc_tpu_target_load("/nonexistent/t.json", &t) == LDMC_ERR_IO);
}

int main(void) {
  test_round_trip();
  test_decode_errors();
  test_disasm();
  test_verify();
  test_targets();
  return test_summary("test_tpusim_isa");
}
