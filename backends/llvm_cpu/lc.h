/* Internals of the LLVM CPU backend: targets, the JIT and its kernel cache,
 * IR-building helpers, kernel descriptors, and the execution plan.
 *
 * Every kernel has one ABI:
 *   void ldmc_k_<hash>(void *const *bufs, int64_t t0, int64_t t1, void *scratch)
 * It computes tiles [t0, t1) of its work; bufs[0] is its output, the rest its
 * operands (kind-specific order); scratch is a per-thread workspace of the
 * kernel's `scratch` bytes. A kernel's code is a function of its descriptor
 * only (never of buffer addresses), so kernels with equal keys are compiled
 * once and shared between graphs. */
#ifndef LDMC_BACKENDS_LLVM_CPU_LC_H
#define LDMC_BACKENDS_LLVM_CPU_LC_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdarg.h>
#include <stdint.h>

#include "backends/llvm_cpu/llvm_cpu.h"

/* ---- strings ------------------------------------------------------------------ */
typedef struct lc_sb {
  char *s;
  size_t n, cap;
  bool oom;
} lc_sb;
void ldmc_lc_sb_printf(lc_sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ldmc_lc_sb_ints(lc_sb *sb, const int64_t *v, int n); /* "a,b,c" */
void ldmc_lc_sb_hex(lc_sb *sb, const void *data, size_t n);
uint64_t ldmc_lc_hash(const char *s, size_t n);          /* FNV-1a 64 */

/* ---- targets -------------------------------------------------------------------- */
typedef struct lc_target {
  ldmc_llvm_cpu_isa isa;
  char triple[128], cpu[64], features[4096];
  int W;              /* f32 lanes of a vector register */
  int mr, nr;         /* GEMM register tile: mr rows x nr columns (nr = 2W) */
  int kc, nc;         /* GEMM cache blocking: K block, N block */
  bool avx512bf16;
} lc_target;

/* The target for isa (AUTO = ldmc_llvm_cpu_current_isa). Static storage. */
ldmc_status ldmc_lc_target_get(ldmc_llvm_cpu_isa isa, const lc_target **out);
LLVMTargetMachineRef ldmc_lc_tm_create(const lc_target *t);
void ldmc_lc_llvm_init(void);

/* ---- kernels ---------------------------------------------------------------------- */
typedef void (*lc_kernel_fn)(void *const *bufs, int64_t t0, int64_t t1, void *scratch);

typedef enum lc_kind {
  LC_K_EW,      /* loop nest over a box: expression of strided loads, one store */
  LC_K_REDUCE,  /* sum / max / min over dims */
  LC_K_SOFTMAX, /* softmax over one axis of [outer, A, inner] */
  LC_K_NORM,    /* group_norm / layer_norm rows, optional fused silu */
  LC_K_PACK,    /* GEMM operand A packed into mr-row panels */
  LC_K_GEMM,    /* register-blocked GEMM / implicit-GEMM convolution */
  LC_K_ATTN,    /* flash attention with online softmax */
  LC_K_XOP,     /* gather, scatter_add, rng, integer dot (lc_xop_desc; kern_gather.c, kern_rng.c) */
  LC_K_ATTN_GRAD, /* attention's backward: dq, or dk | dv, recomputing P from the log-sum-exp */
  LC_K_COUNT
} lc_kind;

typedef struct lc_kernel {
  lc_kind kind;
  void *desc;      /* kind-specific descriptor (owned) */
  char *key;       /* canonical text of the descriptor (owned) */
  uint64_t hash;
  int n_bufs;
  int64_t n_tiles;
  size_t scratch;  /* bytes per thread */
  double work;     /* estimated element operations; small steps run on one thread */
  lc_kernel_fn fn; /* after ldmc_lc_jit_compile */
  char sym[40];    /* "ldmc_k_<hash>" */
} lc_kernel;

/* Takes ownership of desc (calloc'd, so padding is zero); the key is the
 * ISA, the kind and the descriptor's bytes. NULL on OOM. */
lc_kernel *ldmc_lc_kernel_new(lc_kind kind, void *desc, size_t desc_size, const lc_target *t);
void ldmc_lc_kernel_free(lc_kernel *k);

/* ---- code generation ------------------------------------------------------------------ */
#define LC_MAX_BUFS 20

typedef struct lc_cg {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  const lc_target *t;
  int W;
  LLVMTypeRef f32, i1, i8, i16, i32, i64, ptr, vd; /* vd: void */
  LLVMValueRef fn;                                 /* the function being built */
  LLVMValueRef buf[LC_MAX_BUFS], t0, t1, scratch;  /* its parameters (noalias pointers) */
} lc_cg;

void ldmc_lc_cg_init(lc_cg *cg, LLVMContextRef ctx, LLVMModuleRef mod, const lc_target *t);
void ldmc_lc_cg_dispose(lc_cg *cg);
/* Emits kernel k as external function `name` (its body in an internal,
 * always-inlined function whose buffer pointers are noalias). */
void ldmc_lc_emit_kernel(lc_cg *cg, const lc_kernel *k, const char *name);
void ldmc_lc_set_fn_attrs(lc_cg *cg, LLVMValueRef fn);

/* constants and types */
LLVMTypeRef lc_vt(lc_cg *cg, LLVMTypeRef elt, int w); /* <w x elt> */
LLVMValueRef lc_i64(lc_cg *cg, int64_t v);
LLVMValueRef lc_i32(lc_cg *cg, int32_t v);
LLVMValueRef lc_f32(lc_cg *cg, double v);
LLVMValueRef lc_splat(lc_cg *cg, LLVMValueRef scalar, int w);
LLVMValueRef lc_fconst(lc_cg *cg, double v, int w);   /* <w x float> splat */
LLVMValueRef lc_iconst(lc_cg *cg, LLVMTypeRef ity, int64_t v, int w);
LLVMValueRef lc_lane_iota(lc_cg *cg, LLVMTypeRef ity, int w); /* <0, 1, ..., w-1> */
/* memory */
LLVMValueRef lc_gep(lc_cg *cg, LLVMTypeRef elt, LLVMValueRef p, LLVMValueRef idx);
LLVMValueRef lc_load(lc_cg *cg, LLVMTypeRef ty, LLVMValueRef p, unsigned align);
void lc_store(lc_cg *cg, LLVMValueRef v, LLVMValueRef p, unsigned align);
LLVMValueRef lc_mask_lt(lc_cg *cg, LLVMValueRef n, int w, int64_t lane0); /* lane0 + i < n */
LLVMValueRef lc_masked_load(lc_cg *cg, LLVMTypeRef vty, LLVMValueRef p, LLVMValueRef mask, LLVMValueRef passthru);
void lc_masked_store(lc_cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask);
LLVMValueRef lc_gather(lc_cg *cg, LLVMTypeRef elt, LLVMValueRef base, LLVMValueRef idx_vec, int w);
/* intrinsics: overloaded on types tys[0..nt) */
LLVMValueRef lc_intr(lc_cg *cg, const char *name, LLVMTypeRef *tys, int nt, LLVMValueRef *args, int na);
LLVMValueRef lc_fma(lc_cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);
LLVMValueRef lc_fmax(lc_cg *cg, LLVMValueRef a, LLVMValueRef b); /* maxnum: ignores NaN */
LLVMValueRef lc_fmin(lc_cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef lc_smin64(lc_cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef lc_smax64(lc_cg *cg, LLVMValueRef a, LLVMValueRef b);
/* horizontal reduction of a float vector: 0 sum, 1 max, 2 min */
LLVMValueRef lc_hreduce(lc_cg *cg, LLVMValueRef v, int kind);
int lc_width(LLVMValueRef v); /* lanes of a vector value */

/* Structured control flow. A loop runs iv from start while iv < end by step,
 * carrying n values (phis) that lc_for_end updates; after lc_for_end the
 * carried phis hold the final values. */
#define LC_MAX_CARRY 64
typedef struct lc_loop {
  LLVMBasicBlockRef pre, header, body, exit;
  LLVMValueRef iv, step;
  int n;
  LLVMValueRef phi[LC_MAX_CARRY];
} lc_loop;
LLVMValueRef lc_for(lc_cg *cg, lc_loop *l, LLVMValueRef start, LLVMValueRef end, LLVMValueRef step, int n,
                    LLVMValueRef *init);
void lc_for_end(lc_cg *cg, lc_loop *l, LLVMValueRef *next);
typedef struct lc_if {
  LLVMBasicBlockRef then_bb, else_bb, join;
  bool has_else;
} lc_if;
void lc_if_begin(lc_cg *cg, lc_if *f, LLVMValueRef cond);
void lc_if_else(lc_cg *cg, lc_if *f);
void lc_if_end(lc_cg *cg, lc_if *f);

/* dtype storage <-> compute form (floats as f32, i32, i64, pred as i1) */
LLVMTypeRef lc_store_ty(lc_cg *cg, ldmc_dtype dt);
LLVMTypeRef lc_comp_ty(lc_cg *cg, ldmc_dtype dt);
LLVMValueRef lc_to_comp(lc_cg *cg, ldmc_dtype dt, LLVMValueRef stored);  /* vectors */
LLVMValueRef lc_to_store(lc_cg *cg, ldmc_dtype dt, LLVMValueRef comp);
/* load / store w elements at p[idx..] in compute form (contiguous) */
LLVMValueRef lc_load_comp(lc_cg *cg, ldmc_dtype dt, LLVMValueRef p, LLVMValueRef idx, int w, LLVMValueRef mask);
void lc_store_comp(lc_cg *cg, ldmc_dtype dt, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx, LLVMValueRef mask);

/* vector math on <w x float> (math.c) */
LLVMValueRef lc_exp(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_log(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_tanh(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_logistic(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_erf(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_sin(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_cos(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_pow(lc_cg *cg, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef lc_silu(lc_cg *cg, LLVMValueRef x);
LLVMValueRef lc_gelu(lc_cg *cg, LLVMValueRef x);

/* ---- kernel descriptors ----------------------------------------------------------------- */
/* A strided view: element (i_0..i_r-1) of a box lives at off + sum i_d * st[d]. */
typedef struct lc_stream {
  uint8_t dt;   /* ldmc_dtype */
  uint8_t iota; /* 1: no memory; the value is the index off + sum i_d*st[d] */
  int64_t off;
  int64_t st[LDMC_MAX_RANK];
} lc_stream;

#define LC_EW_MAX_IN 16
#define LC_EW_MAX_INS 48
enum { LC_EW_LOAD = 1000, LC_EW_CONST, /* expression ops beyond the ldmc_op elementwise ones */
       LC_EW_ACC };                    /* a GEMM epilogue's accumulator value (dt: the core's dtype) */
typedef struct lc_ew_ins {
  int16_t op;    /* ldmc_op (elementwise or silu/gelu), LC_EW_LOAD (arg = input), LC_EW_CONST */
  uint8_t dt;    /* result dtype */
  int8_t a[3];   /* operand instruction indices */
  int32_t arg;   /* input index (load), direction (compare) */
  double cval;   /* constant */
} lc_ew_ins;

typedef struct lc_ew_desc {
  int rank;
  int64_t dims[LDMC_MAX_RANK];
  lc_stream out;
  int n_in;
  lc_stream in[LC_EW_MAX_IN]; /* input i is bufs[1 + i] */
  int n_ins;
  lc_ew_ins ins[LC_EW_MAX_INS]; /* the last one is stored */
  int64_t rows_per_tile, chunk; /* set by ldmc_lc_ew_finish */
} lc_ew_desc;
/* Merges dims, drops unit dims, picks the tiling; returns the tile count. */
int64_t ldmc_lc_ew_finish(lc_ew_desc *d, const lc_target *t);

typedef struct lc_reduce_desc {
  uint8_t dt, kind;            /* ldmc_dtype, ldmc_reduce_kind */
  int nk, nr;                  /* kept dims (output order), reduced dims */
  int64_t kdim[LDMC_MAX_RANK], kst[LDMC_MAX_RANK]; /* input strides of kept dims */
  int64_t rdim[LDMC_MAX_RANK], rst[LDMC_MAX_RANK];
  int64_t rows_per_tile;       /* output rows (all kept dims but the last) per tile */
} lc_reduce_desc;

typedef struct lc_softmax_desc {
  uint8_t dt;
  int64_t outer, len, inner; /* softmax over len; element (o, a, i) at (o*len + a)*inner + i */
  int64_t per_tile;
} lc_softmax_desc;

typedef struct lc_norm_desc {
  uint8_t dt;
  uint8_t silu;         /* fused activation after the affine */
  int64_t rows;         /* normalized groups: group_norm N*G, layer_norm prod(dims[:axis]) */
  int64_t len;          /* elements per row */
  int64_t gsize;        /* consecutive elements sharing one gamma/beta (group_norm: spatial size; layer_norm: 1) */
  int64_t gper;         /* gamma entries per row (group_norm: C/G; layer_norm: len) */
  int64_t gmod;         /* rows cycle through gamma blocks: gamma index base = (row % gmod) * gper */
  double eps;
} lc_norm_desc;

/* C[b][m][n] = sum_k A[b][m][k] B[b][k][n] in f32, b = b1 * nb2 + b2.
 * bufs: 0 = C (f32), 1 = A (or its packed panels), 2 = B (or the conv input). */
typedef struct lc_gemm_desc {
  uint8_t dt;        /* storage dtype of A and B (C is always f32) */
  uint8_t a_packed;  /* A comes as LC_K_PACK panels */
  uint8_t conv;      /* B is the im2col of a convolution input, built while packing */
  int64_t M, N, K, nb1, nb2;
  int64_t a_st[4];   /* direct A: b1, b2, m, k strides (k stride 1) */
  int64_t a_pb[2];   /* packed A: b1, b2 strides between batch panels (elements) */
  int64_t b_st[4];   /* strided B: b1, b2, k, n strides */
  int64_t c_st[3];   /* C: b1, b2, m strides; n stride 1 */
  /* conv: B[k][n], k = (ci, ky, kx), n = (oy, ox), reads x at b1 * x_st[0] +
   * (b2 * cg + ci) * x_st[1] + iy * x_st[2] + ix * x_st[3] */
  int64_t x_st[4];
  int64_t cg, H, Wd, kh, kw, sh, sw, ph, pw, dh, dw, OW;
  /* conv with the images folded into the columns (the plan's fold_images):
   * column n is image n / fold_n, pixel n % fold_n (read at image * x_st[0]);
   * nb1 is 1. 0: one GEMM per image b1 */
  int64_t fold_n;
  int mr, nr, kc, nc;
  int64_t mc;        /* rows per tile */
  /* bf16: A and B are bf16 k-pairs (A panels [kp][mr][2], B panels [kp][nr][2],
   * odd K padded with zero) multiplied by vdpbf16ps into f32 (avx512_bf16) */
  uint8_t bf16;
  uint8_t b_packed;  /* B comes whole as LC_K_PACK B-side panels (bufs[2]) */
  int64_t b_pb[2];   /* packed B: b1, b2 strides between batch panels (elements) */
  /* Epilogue (epi.n_ins > 0): on the last K block each element of C goes
   * through epi (rank 4 over (b1, b2, m, n), LC_EW_ACC = the accumulator) into
   * bufs[0] in epi.out's dtype and strides (n stride 1). K partials go to
   * bufs[0] itself when epi_c == 1 (f32, C's layout), else to an f32 buffer
   * bufs[3] laid out as c_st. Input s is bufs[LC_GEMM_EPI_BUF + s]. */
  uint8_t epi_c;
  lc_ew_desc epi;
} lc_gemm_desc;
#define LC_GEMM_EPI_BUF 4

/* A[b1][b2][m][k] -> f32 panels [pb][m / mr][k][mr] (rows past M zero); the
 * batch panels cover b1 (if a_st[0] != 0) and b2 (if a_st[1] != 0). */
typedef struct lc_pack_desc {
  uint8_t dt;
  int64_t M, K, n1, n2; /* batch extents packed (1 where A does not vary) */
  int64_t a_st[4];
  int mr;
  /* bf16: bf16 k-pairs, K padded to even Kp: A [pb][m / mr][Kp / 2][mr][2] */
  uint8_t bf16;
  /* bside: B (a_st = b1, b2, k, n strides; N columns) as the GEMM's whole-matrix
   * panels [pb][K / kc blocks][N / nr][kcur][nr] (bf16: [kcur / 2][nr][2]),
   * block k0 at k0 * Np * nr elements; one tile per (pb, block, panel) */
  uint8_t bside;
  int64_t N;
  int nr, kc;
} lc_pack_desc;

/* softmax(scale q k^T) v without the N x M matrix (kern_attn.c): a tile is
 * nq * W query rows, one per vector lane; key blocks of bc update a running
 * max and sum per lane. bufs: 0 = out (dt, strides os), 1 = q (dt,
 * strided view), 2 = k and 3 = v (f32 strided views: the operands read in
 * place when f32, else f32 copies).
 * lse (attention_lse): the same pass without v; out is the f32 log-sum-exp
 * [B][N] (strides os = b1, b2, row); bufs 0 = out, 1 = q, 2 = k. */
typedef struct lc_attn_desc {
  uint8_t dt;
  uint8_t lse;
  int64_t B, N, M, D, E;
  int64_t nb2;   /* batch b = b1 * nb2 + b2 */
  int64_t qs[4]; /* q strides: b1, b2, row, column */
  int64_t ks[4]; /* k strides */
  int64_t vs[4]; /* v strides */
  int64_t os[3]; /* out strides: b1, b2, row (columns contiguous); dense [B,N,E] unless a transpose is folded in */
  double scale;
  int nq, bc, ec; /* query vectors per tile, keys per block, output columns per P v register group */
} lc_attn_desc;

/* attention's backward without the N x M matrix (kern_attn_grad.c), P =
 * 2^(S - lse log2 e) recomputed from the scores S = scale log2 e q k^T:
 *   LC_AG_Q  (attention_grad_q): a tile is nl * W queries in vector lanes;
 *            key blocks of bs are streamed; out [B][N][D] = dq
 *   LC_AG_KV (attention_grad_kv): a tile is nl * W keys in lanes; query
 *            blocks of bs are streamed; out [B][M][D + E] = dk | dv
 * so every tile owns its output rows (no atomics). bufs: 0 = out (f32,
 * strides os; columns contiguous), 1 = q, 2 = k, 3 = v, 4 = ct (strided
 * views: the lane side, q and ct or k and v, in dt; the streamed side f32,
 * read in place when f32, else f32 copies), 5 = lse, 6 = delta (f32,
 * strides b1, b2, row). */
enum { LC_AG_Q = 1, LC_AG_KV };
typedef struct lc_attn_grad_desc {
  uint8_t sub, dt;
  int64_t B, N, M, D, E;
  int64_t nb2;   /* batch b = b1 * nb2 + b2 */
  int64_t qs[4], ks[4], vs[4], cs[4]; /* b1, b2, row, column strides of q, k, v, ct */
  int64_t ls[3], ds[3];               /* lse, delta: b1, b2, row */
  int64_t os[3];                      /* out: b1, b2, row */
  double scale;
  int nl, bs, ec; /* lane vectors per tile, streamed rows per block, accumulator columns per register group */
} lc_attn_grad_desc;

void ldmc_lc_emit_ew(lc_cg *cg, const lc_ew_desc *d);
/* The expression of d evaluated on w lanes (kern_ew.c; shared by the EW
 * kernel and the GEMM epilogue): ptrs[s] is input s's buffer, base[s] its
 * element offset at the row, j the position along the innermost dim (times
 * its stride), acc the value of LC_EW_ACC. Returns the last instruction's
 * value in compute form. */
LLVMValueRef ldmc_lc_ew_eval(lc_cg *cg, const lc_ew_desc *d, const LLVMValueRef *ptrs, const LLVMValueRef *base,
                             LLVMValueRef j, int w, LLVMValueRef mask, LLVMValueRef acc);
void ldmc_lc_emit_reduce(lc_cg *cg, const lc_reduce_desc *d);
void ldmc_lc_emit_softmax(lc_cg *cg, const lc_softmax_desc *d);
void ldmc_lc_emit_norm(lc_cg *cg, const lc_norm_desc *d);
void ldmc_lc_emit_pack(lc_cg *cg, const lc_pack_desc *d);
void ldmc_lc_emit_gemm(lc_cg *cg, const lc_gemm_desc *d);
/* The microkernel's store (kern_epi.c): the C tile, or with d->epi the fused
 * epilogue on the last K block. ukr_params / ukr_args append the epilogue's
 * extra parameters / arguments after the common 7 and return the count. */
void ldmc_lc_gemm_store(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef ukr, LLVMValueRef C, LLVMValueRef *acc, int mr,
                        int nr);
int ldmc_lc_gemm_ukr_params(lc_cg *cg, const lc_gemm_desc *d, LLVMTypeRef *ps);
int ldmc_lc_gemm_ukr_args(lc_cg *cg, const lc_gemm_desc *d, LLVMValueRef *args, LLVMValueRef k0, LLVMValueRef b1,
                          LLVMValueRef b2, LLVMValueRef row, LLVMValueRef col);
void ldmc_lc_emit_attn(lc_cg *cg, const lc_attn_desc *d);
void ldmc_lc_emit_attn_grad(lc_cg *cg, const lc_attn_grad_desc *d);
/* shared by the attention kernels (kern_attn.c), on vectors of cg->W lanes:
 * 2^y (y <= 0 unless may_be_positive; clamp_low: y = -inf allowed), the
 * in-register transpose of W rows of W lanes, W consecutive elements of a
 * row with column stride cs in compute form (n valid, the rest 0), and the
 * column blocks [c0, c0 + W) of [0, len): full ones in a loop, the partial
 * last one (n < W) as its own code. */
LLVMValueRef ldmc_lc_attn_exp2(lc_cg *cg, LLVMValueRef y, bool clamp_low, bool may_be_positive);
void ldmc_lc_attn_transpose(lc_cg *cg, LLVMValueRef *R, int W);
LLVMValueRef ldmc_lc_attn_load_row(lc_cg *cg, ldmc_dtype dt, LLVMValueRef p, LLVMValueRef idx, int64_t cs, int n);
typedef void (*lc_col_block_fn)(void *arg, LLVMValueRef c0, int n);
void ldmc_lc_attn_col_blocks(lc_cg *cg, int64_t len, lc_col_block_fn blk, void *arg);

/* ---- JIT and kernel cache (jit.c) ------------------------------------------------------------ */
/* Gives every kernel its function pointer: from the in-memory cache when a
 * kernel with the same key was compiled before, else by generating each
 * missing kernel into its own module, optimizing it (default<O3>) and
 * compiling it to an object on `threads` threads, then adding the objects to
 * the level's LLJIT. cache_dir is ldmc_compile_opts.cache_dir (NULL: the default
 * folder, "": no disk cache); see jit.c for the entries. */
ldmc_status ldmc_lc_jit_compile(const lc_target *t, lc_kernel **ks, int n, const char *cache_dir, int threads,
                                int verbose);
/* Optimizes a module with the target's pass pipeline. */
ldmc_status ldmc_lc_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm);
void ldmc_lc_stats_add(int64_t requested, int64_t compiled, int64_t hits, int64_t disk_hits, double seconds);

/* ---- plans (plan.c, lower*.c, exec.c) ------------------------------------------------------------ */
/* LC_BUF_PERSIST: written only by prepack steps (from weights and constants)
 * and kept by the executable across runs, outside the arena. */
typedef enum lc_buf_kind { LC_BUF_NONE, LC_BUF_INPUT, LC_BUF_CONST, LC_BUF_ARENA, LC_BUF_PERSIST } lc_buf_kind;
typedef struct lc_buf {
  lc_buf_kind kind;
  int32_t param;      /* input: parameter index */
  const void *data;   /* const: literal data */
  size_t size, offset; /* arena / persistent block: bytes and offset */
  int32_t def, last;  /* first and last step using it */
  int32_t kpos;       /* position (in the pipeline's order) of the kernel whose lowering made it, -1: none */
  int32_t root;       /* arena: the kernel root whose planned slot holds it, else -1 (a kernel temporary) */
  size_t local;       /* temporary: offset inside its kernel's scratch */
} lc_buf;

typedef struct lc_ref {
  int32_t buf; /* -1: none */
  size_t off;  /* bytes into the buffer */
} lc_ref;

typedef struct lc_step {
  lc_kernel *k;    /* NULL: the node runs on the interpreter */
  int32_t node;
  uint8_t prepack; /* reads only weights and constants, writes only LC_BUF_PERSIST: runs when the
                      weights are bound (first run, or other weight tensors), not every run */
  int32_t kpos;      /* position of the pipeline kernel it executes (-1: none) */
  size_t scratch_off; /* arena offset of its per-thread scratch: thread t uses scratch_off + t * align64(k->scratch) */
  int n_refs;
  lc_ref refs[LC_MAX_BUFS]; /* kernel bufs; fallback: output, then operands */
} lc_step;

typedef struct lc_plan {
  const ldmc_graph *g; /* borrowed */
  const lc_target *t;
  int threads;
  lc_buf *bufs;
  int32_t n_bufs, cap_bufs;
  lc_ref *value; /* per node */
  int32_t *uses;  /* per node: operand uses plus output uses */
  uint8_t *done;  /* per node: already computed by a fused step */
  const struct lc_prof *prof; /* profiler events per step (profile.c); NULL: not profiled */
  uint8_t *pending; /* per node: elementwise/view not yet computed (fuse.c) */
  lc_step *steps;
  int32_t n_steps, cap_steps;
  size_t arena_bytes, scratch_bytes;
  size_t persist_bytes; /* LC_BUF_PERSIST block */
  int64_t n_fallback;
  int64_t n_epilogue;   /* contractions whose elementwise epilogue runs in the GEMM store */
  struct lc_epi *epi;   /* lower_epilogue.c: the epilogue being lowered with the current core */
  int64_t n_prepack;    /* prepack steps */
  uint8_t *weight;      /* per node: the same value every run (constants, weight parameters, what only they feed) */
  int32_t n_act_params; /* parameters from this index on are weights (INT32_MAX: none are) */
  bool bf16;            /* ldmc_compile_opts.bf16: GEMM operands as bf16, f32 accumulation (avx512_bf16) */
  bool allow_fallback;
  bool prepack_mode;    /* lowering a weights-only kernel: its steps are prepack, its buffers persistent */
  int64_t n_kernels;    /* pipeline kernels lowered (0 in node order) */
  struct ldmc_plan *kp; /* the pipeline's plan being executed (NULL: node order); buffer assignment fills it */
  int32_t cur_kpos, cur_kernel; /* the kernel being lowered: position in kp's order and id (-1: none) */
  bool poison;          /* LDMC_LLVM_CPU_POISON=1: NaN-fill the arena, and each buffer's bytes once it is dead */
  /* backend.h's output hook (NULL: none): outputs ready_list[ready_first[s + 1] ..
   * ready_first[s + 2]) are final after step s, those of slot 0 before the first (exec.c) */
  const ldmc_output_hook *out_hook;
  int32_t *ready_first, *ready_list; /* owned by the executable */
} lc_plan;

/* True when node's value is the same on every run: what prepack steps may read. */
bool ldmc_lc_is_weight(const lc_plan *p, int32_t node);

struct ldmc_plan;
typedef struct lc_plan_opts {
  int threads;
  bool allow_fallback;         /* ops without a kernel run on the interpreter (else: refused) */
  int32_t n_act_params;        /* parameters from this index on are weights (INT32_MAX: none are) */
  bool bf16;                   /* see lc_plan.bf16 */
  struct ldmc_plan *kernels;   /* the pass pipeline's plan of g (groups and order); NULL: node order. Its
                                  buffer assignment is redone with the kernels' scratch and then executed. */
} lc_plan_opts;
ldmc_status ldmc_lc_plan_build(const ldmc_graph *g, const lc_target *t, const lc_plan_opts *o, lc_plan *p);
/* Runs the pass pipeline of the "cpu-nchw" target over a copy of g and gives
 * the optimized graph and its plan (caller frees both): the fusion groups and
 * kernel order the backend lowers. */
ldmc_status ldmc_lc_pipeline(const ldmc_graph *g, const ldmc_compile_opts *o, const lc_target *t, int threads,
                             ldmc_graph **out,
                             struct ldmc_plan **plan);
/* Lowers the pipeline plan's kernels in its order (plan_kernels.c). */
ldmc_status ldmc_lc_lower_kernels(lc_plan *p, const struct ldmc_plan *kp);
/* assign.c: the steps' buffers placed by the pipeline's buffer assignment:
 * a kernel root's buffer in its planned slot, every other arena buffer a
 * temporary of one kernel inside that kernel's scratch (per-thread scratch
 * included), which buffer assignment then places; checks the result. */
ldmc_status ldmc_lc_assign_planned(lc_plan *p, struct ldmc_plan *kp);
/* The whole compile short of code generation: pipeline, lowering, buffer
 * assignment (assign.c). *opt and *kp are the caller's. threads: the scratch
 * is planned for that many threads. */
ldmc_status ldmc_lc_build(const ldmc_graph *g, const ldmc_compile_opts *o, const lc_target *t, int threads,
                          ldmc_graph **opt, struct ldmc_plan **kp, lc_plan *p);
void ldmc_lc_plan_free(lc_plan *p);
/* building blocks for the lowering */
int32_t ldmc_lc_plan_new_buf(lc_plan *p, lc_buf_kind kind, size_t size);
ldmc_status ldmc_lc_plan_add_step(lc_plan *p, lc_kernel *k, int32_t node, int n_refs, const lc_ref *refs);
/* Lowers node i (not a parameter or constant): a reshape aliases its operand,
 * an op without a kernel runs on the interpreter when allowed (plan.c). */
ldmc_status ldmc_lc_lower_one(lc_plan *p, int32_t i);
/* Lowers node id into steps (lower.c); *handled false if the op has no kernel. */
ldmc_status ldmc_lc_lower_node(lc_plan *p, int32_t id, bool *handled);
ldmc_status ldmc_lc_lower_contract(lc_plan *p, int32_t id, bool *handled); /* dot_general, convolution */
/* Attention or attention_grad_q node id (rank <= 4 when os is not dense)
 * written into out with strides os = {b1, b2, row} (columns contiguous);
 * lower_attn.c. The caller sets the value of whichever node owns out. */
ldmc_status ldmc_lc_lower_attention_into(lc_plan *p, int32_t id, lc_ref out, const int64_t *os);
/* attention, attention_lse, attention_grad_q / _kv node id into a fresh
 * buffer (lower_attn.c); attention with no keys goes to lower_extra.c. */
ldmc_status ldmc_lc_lower_attention(lc_plan *p, int32_t id);
/* A dot_general / convolution `core` and the elementwise epilogue ending at
 * `root` (a pipeline CONTRACTION kernel; the nodes strictly between are
 * pending): computes root straight from the GEMM accumulators when the
 * epilogue maps onto the core's dense result index; *fused false otherwise
 * (the caller lowers core alone and materializes root). */
ldmc_status ldmc_lc_lower_contract_epilogue(lc_plan *p, int32_t core, int32_t root, bool *fused);
/* lower_epilogue.c: called by emit_gemm_steps while p->epi is set (K > 0):
 * appends the GEMM step with the epilogue computing p->epi's root instead of
 * C (c: the f32 C buffer it had made, reused for K partials or emptied).
 * Takes d. */
ldmc_status ldmc_lc_gemm_epilogue_step(lc_plan *p, int32_t core, lc_gemm_desc *d, lc_ref c, lc_ref a, lc_ref b,
                                       size_t scratch, int64_t tiles);
int32_t ldmc_lc_sole_consumer(const lc_plan *p, int32_t id, ldmc_op op);
/* elementwise fusion (fuse.c) */
bool ldmc_lc_fusible(const lc_plan *p, int32_t id);
ldmc_status ldmc_lc_lower_fusible(lc_plan *p, int32_t id);
ldmc_status ldmc_lc_materialize(lc_plan *p, int32_t id); /* computes a pending node into a buffer */
/* The expression of pending `root` over a box refining the dense index
 * space of `core` (d->rank, d->dims set by the caller; a row-major box whose
 * cut points include every shape on the core -> root path): core becomes
 * LC_EW_ACC, other leaves strided loads (their buffers in refs). Adds no
 * steps. *ok false (and OK) when root is not expressible that way. */
ldmc_status ldmc_lc_epilogue_expr(lc_plan *p, int32_t core, int32_t root, lc_ew_desc *d, lc_ref *refs, bool *ok);
/* If id is computed, or pending views (broadcast, transpose, slice) of a
 * computed node, gives that buffer and the element strides of id's dims in it;
 * else false (materialize it then). */
bool ldmc_lc_strided_view(lc_plan *p, int32_t id, lc_ref *ref, int64_t *st);
lc_ref ldmc_lc_new_out(lc_plan *p, int32_t id);           /* a fresh arena buffer as the node's value */
lc_stream ldmc_lc_dense(ldmc_dtype dt, const ldmc_shape *s);
/* row-major strides of a shape, in elements */
void ldmc_lc_strides(const ldmc_shape *s, int64_t *st);
int64_t ldmc_lc_numel(const ldmc_shape *s);
/* Appends an elementwise copy src(view) -> dst(view) over box dims. */
ldmc_status ldmc_lc_add_copy(lc_plan *p, int32_t node, int rank, const int64_t *dims, lc_ref dst, const lc_stream *dv,
                             lc_ref src, const lc_stream *sv);

/* ---- profiling (profile.c): one backend.h kernel event per step ---- */
typedef struct lc_prof {
  ldmc_profile_hook hook;
  ldmc_kernel_event *ev; /* per step: name, nodes, FLOPs, bytes (times set per call) */
  int32_t *nodes;        /* storage of the events' node lists */
} lc_prof;
ldmc_status ldmc_lc_prof_init(lc_prof *pr, const lc_plan *p, const ldmc_profile_hook *hook);
void ldmc_lc_prof_free(lc_prof *pr);
/* Reports step `step`, run from start_ns to end_ns (thread 0, after its barrier). */
void ldmc_lc_prof_report(const lc_prof *pr, int32_t step, int64_t start_ns, int64_t end_ns);

/* Runs the plan's steps over resolved buffer bases (exec.c): the prepack
 * steps (prepack true) or the others. arena: the arena's base (per-thread
 * scratch lives in it); threads <= p->threads. */
ldmc_status ldmc_lc_exec(const lc_plan *p, void *const *bases, void *arena, int threads, bool prepack);
static inline size_t ldmc_lc_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* ---- gather, scatter_add, rng, integer products (kern_gather.c, kern_rng.c, lower_extra.c) ---- */
/* LC_K_XOP kernels: the descriptor starts with its sub-kind. */
enum { LC_X_GATHER = 1, LC_X_SCATTER, LC_X_RNG, LC_X_IDOT };
/* gather: bufs 0 = out, 1 = x, 2 = idx; x viewed as [outer][len][inner],
 * out[o][p][j] = x[o][clamp(idx[p], 0, len - 1)][j] (rows copied as bytes; len
 * 0: zeros); a tile is per_tile rows (o, p).
 * scatter_add: bufs 0 = out, 1 = x, 2 = idx, 3 = upd [outer][ni][inner]; a
 * tile is (o, per_tile columns j): out = x, then for p in order
 * out[o][idx[p]][j] += upd[o][p][j] (idx outside [0, len) skipped); floats
 * accumulate in an f64 scratch [len][per_tile] and round once (the
 * interpreter's order, so results are bit-identical), integers wrap. */
typedef struct lc_gather_desc {
  uint8_t sub, dt, idt; /* LC_X_GATHER / LC_X_SCATTER, element dtype, index dtype */
  int64_t outer, len, inner, ni;
  int64_t per_tile;
} lc_gather_desc;
/* rng_uniform / rng_normal: bufs 0 = out, 1 = key (i64 scalar); element i is
 * Philox4x32-10 of counter {lo32(i), hi32(i), 0, 0} (backends/interp/rng.c,
 * bit-identical); a tile is per_tile elements. */
typedef struct lc_rng_desc {
  uint8_t sub, dt, normal;
  int64_t total, per_tile;
} lc_rng_desc;
/* integer dot_general C[b][m][n] = sum_k A[b][m][k] B[b][k][n], 64-bit
 * wrapping accumulation stored in dt; bufs 0 = C (dense), 1 = A, 2 = B
 * (strided: b1, b2, m|k, k|n); a tile is one (b, m) row. */
typedef struct lc_idot_desc {
  uint8_t sub, dt;
  int64_t M, N, K, nb1, nb2;
  int64_t a_st[4], b_st[4];
} lc_idot_desc;
void ldmc_lc_emit_xop(lc_cg *cg, const void *desc);
void ldmc_lc_emit_gather(lc_cg *cg, const lc_gather_desc *d);
void ldmc_lc_emit_scatter(lc_cg *cg, const lc_gather_desc *d);
void ldmc_lc_emit_rng(lc_cg *cg, const lc_rng_desc *d);
void ldmc_lc_emit_idot(lc_cg *cg, const lc_idot_desc *d);
/* lower_extra.c: gather, scatter_add, rng, attention without keys, upsample of
 * any rank; *handled false for other ops. */
ldmc_status ldmc_lc_lower_extra(lc_plan *p, int32_t id, bool *handled);
/* an integer dot_general over (b1, b2, m, k) x (b1, b2, k, n) strided views into out (lower_extra.c) */
ldmc_status ldmc_lc_lower_idot(lc_plan *p, int32_t id, lc_idot_desc *d, lc_ref out, lc_ref a, lc_ref b);
/* Appends a step filling numel elements of dt at dst (dense) with value v. */
ldmc_status ldmc_lc_add_fill(lc_plan *p, int32_t node, lc_ref dst, ldmc_dtype dt, int64_t numel, double v);
/* Appends a kernel step (tiles <= 0: none); takes desc. */
ldmc_status ldmc_lc_add_kernel_step(lc_plan *p, int32_t node, lc_kind kind, void *desc, size_t size, int64_t tiles,
                                    size_t scratch, double work, int nb, const lc_ref *refs);

#endif
