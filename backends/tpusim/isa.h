/* The tpusim instruction set: the one header the lowering and the simulator
 * share (as VTA shares its hw_spec). docs/backends/tpusim.md describes every
 * opcode, its encoding, the disassembly syntax and the token scheme.
 *
 * Three in-order queues run concurrently: LOAD (DMA off-chip -> scratchpad),
 * COMPUTE (matrix units, accumulator moves, vector unit) and STORE (DMA
 * scratchpad -> off-chip). The queue of an instruction follows from its
 * opcode (NOP names its queue). Queues synchronize only through dependency
 * tokens on four channels between neighbours, LOAD <-> COMPUTE <-> STORE:
 * an instruction may pop a token from, and push a token to, the queue
 * before it (prev) and the queue after it (next). */
#ifndef LDMC_TPUSIM_ISA_H
#define LDMC_TPUSIM_ISA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backends/tpusim/target.h"
#include "support/status.h"

#define LDMC_TPU_INSN_BYTES 32 /* fixed-size little-endian encoding */
#define LDMC_TPU_MAX_BUFFERS 256 /* off-chip buffers (an 8-bit index) */

typedef enum ldmc_tpu_opcode {
  LDMC_TPU_OP_INVALID = 0, /* zeroed memory is not an instruction */
  LDMC_TPU_NOP,            /* token traffic only, in the queue it names */
  LDMC_TPU_DMA_LOAD,       /* LOAD: off-chip 2-D block -> scratchpad, with padding */
  LDMC_TPU_DMA_STORE,      /* STORE: scratchpad 2-D block -> off-chip */
  LDMC_TPU_LOAD_W,         /* COMPUTE: scratchpad -> a matrix unit's weight buffer */
  LDMC_TPU_MATMUL,         /* COMPUTE: activations x weights -> accumulator */
  LDMC_TPU_ACC_MOVE,       /* COMPUTE: accumulator -> scratchpad (f32 or bf16) */
  LDMC_TPU_VEC_UNARY,      /* COMPUTE: dst = f(a) */
  LDMC_TPU_VEC_BINARY,     /* COMPUTE: dst = f(a, b), b full / per-row / per-column / scalar */
  LDMC_TPU_VEC_REDUCE,     /* COMPUTE: dst = reduce(a) along rows or columns */
  LDMC_TPU_OPCODE_COUNT
} ldmc_tpu_opcode;

typedef enum ldmc_tpu_queue { LDMC_TPU_Q_LOAD, LDMC_TPU_Q_COMPUTE, LDMC_TPU_Q_STORE, LDMC_TPU_Q_COUNT } ldmc_tpu_queue;

/* Dependency flags (ldmc_tpu_insn.dep). prev/next are the neighbour queues
 * of the instruction's own queue: LOAD has no prev, STORE has no next. A pop
 * waits until the token is there; a push happens once this instruction and
 * every earlier one of its queue have completed. */
enum {
  LDMC_TPU_POP_PREV = 1u << 0,
  LDMC_TPU_POP_NEXT = 1u << 1,
  LDMC_TPU_PUSH_PREV = 1u << 2,
  LDMC_TPU_PUSH_NEXT = 1u << 3,
  LDMC_TPU_DEP_MASK = 0xfu
};

typedef enum ldmc_tpu_dtype { LDMC_TPU_F32 = 0, LDMC_TPU_BF16 = 1, LDMC_TPU_DTYPE_COUNT } ldmc_tpu_dtype;

typedef enum ldmc_tpu_unary {
  LDMC_TPU_U_COPY, /* also converts between dtypes */
  LDMC_TPU_U_NEG,
  LDMC_TPU_U_ABS,
  LDMC_TPU_U_FILL, /* dst = imm; a is not read */
  LDMC_TPU_U_EXP,
  LDMC_TPU_U_LOG,
  LDMC_TPU_U_SQRT,
  LDMC_TPU_U_RSQRT,
  LDMC_TPU_U_RECIP,
  LDMC_TPU_U_TANH,
  LDMC_TPU_U_ERF,
  LDMC_TPU_U_SIGMOID,
  LDMC_TPU_U_COUNT
} ldmc_tpu_unary;

typedef enum ldmc_tpu_binary {
  LDMC_TPU_B_ADD,
  LDMC_TPU_B_SUB, /* a - b */
  LDMC_TPU_B_MUL,
  LDMC_TPU_B_DIV, /* a / b, costs a reciprocal */
  LDMC_TPU_B_MAX,
  LDMC_TPU_B_MIN,
  LDMC_TPU_B_COUNT
} ldmc_tpu_binary;

typedef enum ldmc_tpu_reduce { LDMC_TPU_R_SUM, LDMC_TPU_R_MAX, LDMC_TPU_R_MIN, LDMC_TPU_R_COUNT } ldmc_tpu_reduce;

/* How VEC_BINARY reads operand b for element (r, c). */
typedef enum ldmc_tpu_bcast {
  LDMC_TPU_BC_FULL,   /* b[r * b_stride + c] */
  LDMC_TPU_BC_ROW,    /* b[r * b_stride]: one value per row (a column vector) */
  LDMC_TPU_BC_COL,    /* b[c]: one value per column (a row vector) */
  LDMC_TPU_BC_SCALAR, /* imm */
  LDMC_TPU_BC_COUNT
} ldmc_tpu_bcast;

/* VEC_REDUCE: ROWS gives one result per row (dst[r * dst_stride]), COLS one
 * per column (dst[c]). */
typedef enum ldmc_tpu_axis { LDMC_TPU_AX_ROWS, LDMC_TPU_AX_COLS, LDMC_TPU_AX_COUNT } ldmc_tpu_axis;

/* Scratchpad (vmem) addresses are bytes, aligned to the element size;
 * strides are in elements. Off-chip offsets and strides are in elements of
 * the buffer's dtype. */

typedef struct ldmc_tpu_dma { /* DMA_LOAD and DMA_STORE */
  uint8_t buf;        /* off-chip buffer index */
  uint8_t mem_dtype;  /* element type off chip */
  uint8_t vmem_dtype; /* element type in the scratchpad (converted on the way) */
  /* DMA_LOAD only: rows / columns of pad_value written around the copied
   * block; the scratchpad block is (pad_top + rows + pad_bottom) x
   * (pad_left + cols + pad_right). rows or cols may be 0 (padding only). */
  uint8_t pad_top, pad_bottom, pad_left, pad_right;
  uint16_t rows, cols;  /* the block read from / written to off-chip memory */
  uint32_t mem_offset;  /* first element */
  uint32_t mem_stride;  /* elements between rows; a load may overlap rows (im2col) */
  uint32_t vmem_addr;   /* bytes */
  uint32_t vmem_stride; /* elements between scratchpad rows */
  float pad_value;
} ldmc_tpu_dma;

typedef struct ldmc_tpu_loadw { /* LOAD_W: a k x n weight tile, k <= R, n <= C */
  uint8_t mxu;
  uint8_t dtype;     /* scratchpad dtype; rounded to bf16 */
  uint8_t transpose; /* 0: stored as k rows of n; 1: stored as n rows of k (W^T) */
  uint16_t k, n;
  uint32_t vmem_addr, vmem_stride;
} ldmc_tpu_loadw;

typedef struct ldmc_tpu_matmul { /* MATMUL: acc[acc_row + i][j] (+)= sum_k a[i][k] * w[k][j] */
  uint8_t mxu;
  uint8_t dtype;      /* activation dtype in the scratchpad; rounded to bf16 */
  uint8_t accumulate; /* 0: overwrite, 1: add to the accumulator */
  uint16_t rows;      /* M; K and N are the weight tile's */
  uint32_t vmem_addr, vmem_stride;
  uint32_t acc_row;
} ldmc_tpu_matmul;

typedef struct ldmc_tpu_accmove { /* ACC_MOVE: vmem[r][c] = acc[acc_row + r][acc_col + c] */
  uint8_t dtype; /* written as f32 or rounded to bf16 */
  uint16_t rows, cols, acc_col;
  uint32_t acc_row;
  uint32_t vmem_addr, vmem_stride;
} ldmc_tpu_accmove;

typedef struct ldmc_tpu_vec { /* VEC_UNARY, VEC_BINARY, VEC_REDUCE; arithmetic in f32 */
  uint8_t func;       /* ldmc_tpu_unary / ldmc_tpu_binary / ldmc_tpu_reduce */
  uint8_t bcast;      /* VEC_BINARY: ldmc_tpu_bcast; else 0 */
  uint8_t axis;       /* VEC_REDUCE: ldmc_tpu_axis; else 0 */
  uint8_t accumulate; /* VEC_REDUCE: combine with dst's value (running max/sum); else 0 */
  uint8_t dst_dtype, a_dtype, b_dtype;
  uint16_t rows, cols; /* the region of a */
  uint32_t dst, a, b;  /* byte addresses */
  uint16_t dst_stride, a_stride, b_stride;
  float imm; /* VEC_UNARY FILL, VEC_BINARY with BC_SCALAR */
} ldmc_tpu_vec;

typedef struct ldmc_tpu_nop {
  uint8_t queue; /* ldmc_tpu_queue */
} ldmc_tpu_nop;

typedef struct ldmc_tpu_insn {
  uint8_t op;  /* ldmc_tpu_opcode */
  uint8_t dep; /* LDMC_TPU_POP_PREV | ... */
  union {
    ldmc_tpu_dma dma;
    ldmc_tpu_loadw loadw;
    ldmc_tpu_matmul mm;
    ldmc_tpu_accmove acc;
    ldmc_tpu_vec vec;
    ldmc_tpu_nop nop;
  } u;
} ldmc_tpu_insn;

typedef struct ldmc_tpu_program {
  ldmc_tpu_insn *insns;
  size_t count, cap;
} ldmc_tpu_program;

/* ---- names ------------------------------------------------------------------ */
const char *ldmc_tpu_opcode_name(unsigned op);  /* "dma_load", ...; "<bad opcode>" */
const char *ldmc_tpu_queue_name(unsigned q);    /* "load", "compute", "store" */
const char *ldmc_tpu_dtype_name(unsigned dt);   /* "f32", "bf16" */
const char *ldmc_tpu_unary_name(unsigned f);    /* "copy", "exp", ... */
const char *ldmc_tpu_binary_name(unsigned f);
const char *ldmc_tpu_reduce_name(unsigned f);
const char *ldmc_tpu_bcast_name(unsigned b);    /* "full", "row", "col", "scalar" */
size_t ldmc_tpu_dtype_size(unsigned dt);        /* 4, 2; 0 for a bad dtype */
/* The queue an instruction runs in; LDMC_TPU_Q_COUNT for a bad opcode/queue. */
ldmc_tpu_queue ldmc_tpu_insn_queue(const ldmc_tpu_insn *in);
/* A zeroed instruction of opcode op. */
ldmc_tpu_insn ldmc_tpu_insn_make(ldmc_tpu_opcode op, uint8_t dep);

/* ---- encoding (encode.c) --------------------------------------------------------- */
/* Fails on an enum field out of range (the encoding keeps fields in their
 * bits); decode fails on an unknown opcode, enum value or a nonzero reserved
 * byte, so decode(encode(x)) == x and encode(decode(b)) == b. */
ldmc_status ldmc_tpu_insn_encode(const ldmc_tpu_insn *in, uint8_t out[LDMC_TPU_INSN_BYTES]);
ldmc_status ldmc_tpu_insn_decode(const uint8_t in[LDMC_TPU_INSN_BYTES], ldmc_tpu_insn *out);

void ldmc_tpu_program_init(ldmc_tpu_program *p);
void ldmc_tpu_program_free(ldmc_tpu_program *p);
ldmc_status ldmc_tpu_program_push(ldmc_tpu_program *p, const ldmc_tpu_insn *in);
/* count * 32 bytes, malloc'd; messages name the instruction index. */
ldmc_status ldmc_tpu_program_encode(const ldmc_tpu_program *p, uint8_t **out, size_t *out_len);
ldmc_status ldmc_tpu_program_decode(const uint8_t *data, size_t len, ldmc_tpu_program *out);

/* ---- disassembly (disasm.c) ------------------------------------------------------ */
/* One line, no newline, e.g.
 *   matmul mxu1 acc[0] vm[0x8000 bf16 s128] m=64 acc ; pop(load) push(store)
 * Returns buf; a line never exceeds LDMC_TPU_DISASM_MAX bytes. */
#define LDMC_TPU_DISASM_MAX 256
char *ldmc_tpu_insn_disasm(const ldmc_tpu_insn *in, char *buf, size_t len);
/* Every instruction as "<index>: <line>\n". */
ldmc_status ldmc_tpu_program_disasm(const ldmc_tpu_program *p, FILE *f);

/* ---- verification (verify.c) ----------------------------------------------------- */
/* Sizes of the off-chip buffers a program runs over (data may be NULL when
 * only timing is simulated). */
typedef struct ldmc_tpu_buffer {
  void *data;
  uint64_t bytes;
} ldmc_tpu_buffer;
typedef struct ldmc_tpu_mem {
  int count;
  ldmc_tpu_buffer buf[LDMC_TPU_MAX_BUFFERS];
} ldmc_tpu_mem;

/* Rejects, naming the instruction index and the reason: a bad opcode or
 * field, a scratchpad / accumulator / off-chip range outside the target or
 * the buffer, a matmul on a matrix unit with no weights, a pop from a queue
 * that never pushes (underflow), a deadlock between queues (found by running
 * the queues abstractly), and tokens left over at the end. */
ldmc_status ldmc_tpu_verify(const ldmc_tpu_target *t, const ldmc_tpu_program *p, const ldmc_tpu_mem *mem);

#endif
