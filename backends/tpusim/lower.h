/* Private to backends/tpusim: lowering one graph node (or a fused
 * elementwise chain, lower_fuse.c, or a matmul / convolution with the chain
 * that consumes it, lower_epi.c) to one tpusim instruction stream (a
 * "kernel"). Every value a kernel writes lives in its own off-chip f32
 * buffer; a kernel reads its operands' buffers and writes its root's. Streams are tiled into the scratchpad with tile sizes derived from
 * the target, double-buffered with the token protocol of
 * docs/backends/tpusim.md ("Queues and tokens"). */
#ifndef LDMC_TPUSIM_LOWER_H
#define LDMC_TPUSIM_LOWER_H

#include "backends/tpusim/isa.h"
#include "ir/ir.h"

#define TPK_NBUF 2        /* buffer sets: a tile loads while the previous one computes */
#define TPK_MAX_DIM 65535 /* rows / cols / strides of scratchpad operands are 16-bit */
#define TPK_MAX_BUFS 16   /* off-chip buffers of one kernel: a concatenate's operands and its result */
#define TPK_MAX_PAD 255   /* a DMA's padding fields are 8-bit */
#define TPK_MAX_FUSE 16   /* nodes of one fused elementwise kernel */
#define TPK_MAX_KNODES (TPK_MAX_FUSE + 4) /* nodes of one kernel: a matmul, up to 3 reshapes and its chain */

/* One weight tile of a packed buffer: rows x cols f32 values at src (row stride `stride`) of the weight
 * go, rounded to bf16, to dst.. dst + rows cols of the packed buffer, row after row. */
typedef struct tpk_pack_tile {
  uint32_t src, rows, cols, stride, dst;
} tpk_pack_tile;

/* A kernel's off-chip buffers: buffer i of its program holds node buf_node[i]. */
typedef struct tpk_kernel {
  int32_t node;                    /* the root: the node whose value it writes */
  int n_nodes;                     /* the nodes it computes, ascending, root last */
  int32_t nodes[TPK_MAX_KNODES];
  bool epilogue;                   /* a matmul or convolution with its consumer chain (lower_epi.c) */
  int n_bufs;
  int32_t buf_node[TPK_MAX_BUFS];
  ldmc_tpu_program prog;
  char tile_desc[64]; /* the tiles chosen, e.g. "tile 64x128" */
  /* Weights laid out once (params_are_weights): pack_ok, set before lowering a dot_general or
   * convolution, says its operand 1 is a weight; the lowering then reads buffer pk_buf as bf16 tiles
   * in stream order (pk_n tiles, pk_elems values in all), which the executable packs from the weight
   * when it is first passed. */
  bool pack_ok;
  int pk_buf, pk_n, pk_cap;
  uint64_t pk_elems;
  tpk_pack_tile *pk;
} tpk_kernel;

/* Frees k's program and packing tiles (k itself is the caller's). */
void tpk_kernel_release(tpk_kernel *k);

/* Emission state for one kernel. */
typedef struct tpk_em {
  const ldmc_tpu_target *t;
  ldmc_tpu_program *p;
  ldmc_status st;     /* first failure of a push */
  uint32_t vmem_used; /* bump allocator over the scratchpad */
} tpk_em;

void tpk_em_init(tpk_em *e, const ldmc_tpu_target *t, ldmc_tpu_program *p);
/* A scratchpad block of bytes, 64-byte aligned; fails (e->st) past the scratchpad. */
uint32_t tpk_vmem_alloc(tpk_em *e, uint64_t bytes);
void tpk_push(tpk_em *e, const ldmc_tpu_insn *in);

/* After one pipeline step's instructions (from index `begin`): sets the
 * token flags. A step loads into buffer set step % TPK_NBUF and computes
 * into output tile `tile` (set tile % TPK_NBUF); `opens`: its first write of
 * that tile (waits for the store of tile - TPK_NBUF); `closes`: the step
 * also stores the tile. */
void tpk_step_tokens(tpk_em *e, size_t begin, int64_t step, int64_t nsteps, int64_t tile, bool opens, bool closes,
                     int64_t ntiles);

/* Tile rows x cols for n_arrays f32 arrays per buffer set over an R x C
 * view (lower_ew.c): whole vregs per row, capped at a quarter of the tensor
 * unless that is shorter than the off-chip latency's worth of bytes. */
void tpk_ew_tiles(const ldmc_tpu_target *t, uint64_t R, uint64_t C, int n_arrays, uint32_t *tr, uint32_t *tc);

/* Instruction builders (f32 / bf16 scratchpad operands). */
void tpk_dma_load(tpk_em *e, int buf, uint32_t off, uint32_t stride, uint32_t rows, uint32_t cols, uint32_t vaddr,
                  uint32_t vstride, unsigned vdtype);
/* A packed weight tile: rows x cols bf16 values back to back at off of buffer buf (recorded in k's
 * packing as coming from src, row stride stride, of the weight the first time: record). */
void tpk_dma_load_packed(tpk_em *e, tpk_kernel *k, int buf, uint32_t off, uint32_t rows, uint32_t cols, uint32_t vaddr,
                         uint32_t vstride, bool record, uint32_t src, uint32_t stride);
void tpk_dma_store(tpk_em *e, int buf, uint32_t off, uint32_t stride, uint32_t rows, uint32_t cols, uint32_t vaddr,
                   uint32_t vstride);
void tpk_vec(tpk_em *e, ldmc_tpu_opcode op, unsigned func, unsigned bcast, uint32_t rows, uint32_t cols, uint32_t dst,
             uint32_t dst_stride, uint32_t a, uint32_t a_stride, uint32_t b, uint32_t b_stride, float imm);

/* A tile row block on every matrix unit: units 0..nchunks-1 multiply rows x
 * (their weight tiles) from vmem a (bf16, row stride a_stride) into
 * accumulator rows acc0 + u tm; accumulate false overwrites. */
void tpk_matmul_units(tpk_em *e, uint32_t nchunks, uint32_t rows, uint32_t a, uint32_t a_stride, uint32_t acc0,
                      uint32_t tm, bool accumulate);
/* The accumulators of tpk_matmul_units to vmem out (f32, row stride
 * out_stride): unit u's cols columns (at most ucols, ns in all) at column u ucols. */
void tpk_acc_to_vmem(tpk_em *e, uint32_t nchunks, uint32_t rows, uint32_t ucols, uint32_t ns, uint32_t acc0,
                     uint32_t tm, uint32_t out, uint32_t out_stride);

/* An elementwise chain consuming a matmul's or convolution's value `src` (the producer itself, or a
 * reshape of it): nodes ascending, root last, as tpk_lower_fused takes them; src is no chain node and
 * only chain nodes that are not broadcasts read it. */
typedef struct tpk_chain {
  const int32_t *nodes;
  int n;
  int32_t src;
} tpk_chain;

/* lower_epi.c: the chain applied to the producer's output tiles on chip. The producer's output is
 * viewed as [V0, V1, M, N] (tiles: rows of M, columns of N, at outer index (i0, i1)); each operand the
 * chain reads from off chip gets strides over that view, loaded per tile as a full tile, one value per
 * row or one row (like lower_fuse.c). */
typedef struct tpk_epi_in {
  int32_t node, bcast; /* the value read; the chain's broadcast_in_dim reading it, or -1 */
  int buf, kind;
  uint64_t s[4];       /* strides over the view */
  uint32_t slot[TPK_NBUF];
} tpk_epi_in;
typedef struct tpk_epi {
  const ldmc_graph *g;
  tpk_chain ch;
  int nin;
  tpk_epi_in in[TPK_MAX_BUFS];
  uint32_t val[TPK_MAX_FUSE]; /* the chain's values but the root's (which overwrites the tile) */
  uint32_t tn;                /* row stride of every tile */
} tpk_epi;
/* Checks the chain and adds its operands to k's buffers (after the producer's operands). Fails with
 * LDMC_ERR_UNSUPPORTED for a form it does not take (the caller does not fuse). */
ldmc_status tpk_epi_init(tpk_epi *ep, const ldmc_graph *g, const tpk_chain *ch, const uint64_t view[4], tpk_kernel *k);
/* Scratchpad bytes of the epilogue at tiles of tm x tn (both buffer sets). */
uint64_t tpk_epi_vmem(const tpk_epi *ep, uint64_t tm, uint64_t tn);
void tpk_epi_alloc(tpk_epi *ep, tpk_em *e, uint32_t tm, uint32_t tn);
/* In the step that closes the tile (buffer set s): its operands' loads, then (after acc_move to `tile`)
 * the chain's vector ops, the root's value left in `tile` for the store. */
void tpk_epi_load(const tpk_epi *ep, tpk_em *e, int s, uint64_t i0, uint64_t i1, uint64_t m0, uint64_t n0, uint32_t ms,
                  uint32_t ns);
void tpk_epi_compute(const tpk_epi *ep, tpk_em *e, int s, uint32_t tile, uint32_t ms, uint32_t ns);

/* Lowerings: fill k->prog (and k->buf_node, k->tile_desc) for node id of g.
 * Unsupported forms fail with LDMC_ERR_UNSUPPORTED naming the node. */
ldmc_status tpk_lower_unary(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
ldmc_status tpk_lower_binary(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
ldmc_status tpk_lower_broadcast(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
ldmc_status tpk_lower_reduce(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
ldmc_status tpk_lower_dot(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
/* dot_general / convolution with the chain ch (NULL: none) as the output tiles' epilogue; with a chain
 * k->node is its root and the last buffer holds the root's value. */
ldmc_status tpk_lower_dot_chain(const ldmc_graph *g, int32_t id, const tpk_chain *ch, const ldmc_tpu_target *t,
                                tpk_kernel *k);
ldmc_status tpk_lower_conv_chain(const ldmc_graph *g, int32_t id, const tpk_chain *ch, const ldmc_tpu_target *t,
                                 tpk_kernel *k);
/* lower_move.c: reshape, transpose, slice, concatenate, pad, convert (f32 -> f32) as strided DMA copies;
 * sin and cos as vector-unit polynomials. */
ldmc_status tpk_lower_move(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
ldmc_status tpk_lower_sincos(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
/* lower_conv.c: convolution (NCHW / OIHW / NCHW, 2 spatial dims) on the matrix units. */
ldmc_status tpk_lower_conv(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
/* lower_fuse.c: elementwise nodes (unary, binary, broadcast_in_dim of an outside value) of one shape as one
 * vector kernel; nodes ascending, root last, every other node used only inside. Refused forms fail (the
 * caller lowers the nodes one by one). */
ldmc_status tpk_lower_fused(const ldmc_graph *g, const int32_t *nodes, int n, const ldmc_tpu_target *t, tpk_kernel *k);
/* lower_attn.c: attention as one flash-style kernel (online softmax; the scores stay on chip). */
ldmc_status tpk_lower_attention(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, tpk_kernel *k);
/* Why an attention node cannot be lowered as one kernel (g: also its operands), or NULL. */
const char *tpk_attention_why_not(const ldmc_graph *g, const ldmc_node *n);
/* Why a node of these ops cannot be lowered (from the node alone), or NULL. */
const char *tpk_move_why_not(const ldmc_node *n);
const char *tpk_conv_why_not(const ldmc_node *n);

/* True when a reduce node reduces consecutive dims of its operand. */
bool tpk_reduce_contiguous(const ldmc_node *n);

/* ISA function of an ldmc unary / binary op; -1 if none. */
int tpk_unary_func(ldmc_op op);
int tpk_binary_func(ldmc_op op);

/* For a binary elementwise node of a kernel computing nodes[0..n) (and src, if >= 0): the operand
 * (0 or 1) that is an outside constant of one repeated value, to be the instruction's scalar
 * immediate (BC_SCALAR, *imm) instead of a tensor read from off chip; operand 0 only for add and
 * mul (swapped); -1 if none. */
int tpk_scalar_operand(const ldmc_graph *g, const ldmc_node *x, const int32_t *nodes, int n, int32_t src, float *imm);

/* An f32 constant holding one value repeated (what folding a scalar's broadcast leaves): *v. */
bool tpk_splat(const ldmc_node *c, float *v);

/* lower_norm.c: group_norm / layer_norm as one kernel (statistics and normalization on chip), with the
 * chain ch (NULL: none) reading the norm's value as its epilogue; with a chain k->node is its root. */
ldmc_status tpk_lower_norm_chain(const ldmc_graph *g, int32_t id, const tpk_chain *ch, const ldmc_tpu_target *t,
                                 tpk_kernel *k);
/* Why a group_norm / layer_norm node cannot be one kernel (g: also its operands), or NULL. */
const char *tpk_norm_why_not(const ldmc_graph *g, const ldmc_node *n);

/* Element count of a node, as checked 32-bit off-chip addressing needs. */
ldmc_status tpk_numel32(const ldmc_graph *g, int32_t id, uint32_t *out);

static inline uint32_t tpk_min32(uint64_t a, uint64_t b) { return (uint32_t)(a < b ? a : b); }

#endif
