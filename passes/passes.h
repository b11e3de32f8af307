/* Passes over the IR and the pass manager: the one public header of passes/.
 *
 * A pass is one unit: a name and `bool run(ldmc_graph *g, const ldmc_pass_ctx *ctx)`
 * that returns whether it changed the graph (or, for plan passes, the plan).
 * Graph passes rewrite the SSA graph in place; the later passes (fusion,
 * tiling, scheduling, buffer assignment) record compile-time decisions in an
 * ldmc_plan that backends consume. See docs/passes.md. */
#ifndef LDMC_PASSES_PASSES_H
#define LDMC_PASSES_PASSES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/ir.h"

/* ---- targets ---------------------------------------------------------------- */
#define LDMC_OPMASK(op) (UINT64_C(1) << (op))

typedef struct ldmc_target {
  const char *name;         /* "interp", "llvm-cpu", "nvptx", "tpusim" (and the internal "cpu-nhwc") */
  const char *backend;      /* the backend that executes its plans; NULL: a planning description only */
  int vector_bytes;         /* SIMD / vector-unit width in bytes (64 = AVX-512) */
  int64_t l1_bytes, l2_bytes, l3_bytes; /* data caches per core (0: none) */
  int64_t scratchpad_bytes; /* on-chip buffer of an accelerator (0: none) */
  uint64_t native_ops;      /* LDMC_OPMASK(op) of composites run natively; others are decomposed */
  bool faithful;            /* the reference: no fusion, no layout change, nothing that moves numerics */
  bool channels_last;       /* layout assignment runs convolutions in NHWC */
  int channel_block;        /* > 0: convolution weights repacked channel-blocked (informational) */
  bool host;                /* caches and vector width read from this machine on first lookup */
  bool internal;            /* a study for the passes' tests: not offered to users */
  /* The executing backend's GEMM microkernel (0: none; tiling then uses a
   * generic cache rule): register tile mr x nr, depth block kc, column block
   * nc; contraction tiles are split until each thread has 4 of them. */
  int gemm_mr, gemm_nr, gemm_kc, gemm_nc;
  int threads; /* threads the kernels' tiles are spread over (0: 1) */
  int max_kernel_inputs; /* fusion keeps a kernel's outside values at most this many (0: no limit) */
} ldmc_target;

/* A gather whose indices are the constant [L-1, ..., 0] along its axis (of
 * length L) reverses that axis: a view, fused like a slice. Returns the axis,
 * or -1 for any other node. */
int ldmc_node_reverse_axis(const ldmc_graph *g, int32_t id);

int ldmc_target_count(void);
const ldmc_target *ldmc_target_get(int i);
/* "interp", "llvm-cpu" (this machine's caches, NCHW convolutions: what the
 * llvm-cpu backend runs), "nvptx" and "tpusim" (planning descriptions; no
 * backend yet), "cpu-nhwc" (internal: NHWC layout study); NULL with a message
 * listing the user-facing names. */
const ldmc_target *ldmc_target_find(const char *name);
/* Sets a CPU target's vector width and the GEMM blocking llvm-cpu uses at it
 * (64: AVX-512, 32: AVX2, 4: scalar). */
void ldmc_target_set_gemm(ldmc_target *t, int vector_bytes);

/* ---- the plan: compile-time decisions --------------------------------------- */
typedef enum ldmc_kernel_kind {
  LDMC_KERNEL_ELEMENTWISE, /* one loop over the output: elementwise ops with broadcasts, reshapes, converts */
  LDMC_KERNEL_CONTRACTION, /* dot_general or convolution plus an elementwise epilogue (bias, activation, residual, scale) */
  LDMC_KERNEL_NORM,        /* group_norm / layer_norm statistics with their elementwise consumers */
  LDMC_KERNEL_REDUCTION,   /* reduce or softmax with fused elementwise producers and consumers */
  LDMC_KERNEL_ATTENTION,   /* the attention op (q k^T, scale, softmax, v) as one kernel */
  LDMC_KERNEL_COPY,        /* data movement: transpose, slice, concatenate, pad, gather, ... */
  LDMC_KERNEL_ALIAS,       /* a reshape of a buffer: no code, shares its operand's storage */
  LDMC_KERNEL_OPAQUE,      /* any other single op */
  LDMC_KERNEL_PREPACK,     /* reads only weights and constants (e.g. a weight relayout): runs once when the
                              weights load; its output is kept with the weights, outside the arena */
  LDMC_KERNEL_KIND_COUNT
} ldmc_kernel_kind;
const char *ldmc_kernel_kind_name(ldmc_kernel_kind k);

typedef struct ldmc_kernel {
  ldmc_kernel_kind kind;
  int32_t root;     /* the node whose value the kernel writes (its one output) */
  int32_t n_nodes;  /* member nodes, ascending ids, root last */
  int32_t *nodes;
  int32_t n_inputs; /* values the kernel reads from outside, ascending ids */
  int32_t *inputs;
  int n_tile;       /* tile sizes (tiling pass); meaning depends on kind, see docs/passes.md */
  int64_t tile[4];
  int64_t reg_tile[2]; /* contraction on a GEMM-microkernel target: the mr x nr register tile inside a tile */
  bool fold_images;    /* convolution on a GEMM-microkernel target: the GEMM's columns are (image, output position),
                          not one GEMM per image (tiling.c, fold_images) */
  int32_t inplace_of; /* input node whose buffer the output reuses (buffer assignment), else -1 */
  int32_t donated_to; /* donated state: index of the parameter whose caller buffer the root overwrites (no arena slot;
                         runs after every reader of that parameter), else -1 */
  /* Set by the backend that executes the plan, before buffer assignment: the
   * bytes of temporaries its steps for this kernel need (packed panels, f32
   * accumulators, per-thread scratch), live only while the kernel runs. */
  int64_t scratch_bytes;
  int64_t scratch_offset; /* buffer assignment: arena offset of that scratch (-1: none) */
  /* Also set by the executing backend: how its steps hold the root. */
  int32_t view_of;    /* >= 0: the root is read in place as a strided view of this input's storage (no copy) */
  int32_t storage_of; /* >= 0: the root is a view of this member's result, which is the kernel's storage */
  bool no_inplace;    /* the steps write the output before they have read all inputs (e.g. K partials) */
  int32_t n_steps;        /* backend steps (kernel calls) executing it; 0 when no backend lowered the plan */
  int32_t n_prepack_steps; /* of those, steps run once when the weights are bound */
} ldmc_kernel;

typedef struct ldmc_plan {
  int32_t n_nodes;       /* node count of the graph the plan was made for */
  int32_t *kernel_of;    /* [n_nodes] kernel id, -1 for parameters and constants */
  ldmc_kernel *kernels;
  int32_t n_kernels;
  int32_t *order;        /* kernel ids in execution order (scheduling), n_kernels entries */
  bool scheduled;
  int64_t peak_in_root_order, peak_scheduled; /* simulated live peaks: kernels in root order vs the order chosen */
  int64_t *offset;       /* [n_nodes] arena byte offset of each kernel root, -1 otherwise */
  int64_t *size;         /* [n_nodes] bytes reserved for each kernel root, 0 otherwise */
  bool assigned;
  int64_t arena_bytes;   /* planned peak activation memory (the arena's size) */
  int64_t live_peak_bytes; /* max over time of the live bytes (lower bound for arena_bytes) */
  int64_t naive_bytes;   /* sum of every non-source node's result, as if nothing were freed or fused */
  int64_t prepacked_bytes; /* outputs of prepack kernels (stored with the weights, not in the arena) */
  int64_t scratch_bytes;   /* sum of the kernels' scratch (part of arena_bytes where it is placed) */
  const char *executed_by; /* backend that lowered this plan and runs exactly it (NULL: a plan nothing ran) */
  int32_t threads;         /* threads its tiles were planned for (0: not stated) */
} ldmc_plan;

ldmc_plan *ldmc_plan_new(void);
void ldmc_plan_reset(ldmc_plan *p); /* back to empty (a graph pass changed the graph) */
void ldmc_plan_free(ldmc_plan *p);
/* Rebuilds inputs/kernel_of from the kernels' node lists (after edits). */
ldmc_status ldmc_plan_index(ldmc_plan *p, const ldmc_graph *g);
/* Human-readable kernels ("k3 contraction: convolution add silu  <- %12 %40"),
 * one per line in execution order, into a malloc'd string. */
char *ldmc_plan_print(const ldmc_plan *p, const ldmc_graph *g);

/* ---- passes ------------------------------------------------------------------ */
/* What the remat pass did under a memory budget (docs/passes.md, "remat"). */
typedef struct ldmc_remat_report {
  int64_t budget;                  /* the memory_budget it ran under */
  int64_t peak_before, peak_after; /* planned peak (the buffers pass's arena_bytes) before and after */
  bool met;                        /* peak_after <= budget */
  int64_t extra_flops;             /* FLOPs (mac + other, ldmc_graph_flops) the graph gained */
  int32_t values, nodes_added;     /* values recomputed for late readers; net node growth */
  int32_t measures;                /* plannings it ran */
} ldmc_remat_report;

typedef struct ldmc_pass_ctx {
  const ldmc_target *target;
  ldmc_plan *plan;     /* compile-time decisions; plan passes need it, graph passes reset it */
  int64_t fold_limit;  /* constant folding: the largest result (elements) it materializes */
  ldmc_status *status; /* a pass that fails sets *status (message via ldmc_error) and returns false */
  bool params_are_weights;     /* parameters from index n_activation_params on are weights: */
  int32_t n_activation_params; /* the same every run, so what depends only on them is prepacked */
  int64_t memory_budget;       /* remat: planned peak to fit, in bytes (0: none) */
  ldmc_remat_report *remat;    /* remat writes its report here (NULL: not wanted) */
  const int32_t *donate;       /* per graph output: the parameter index it overwrites (donated state), -1; NULL: none */
} ldmc_pass_ctx;

typedef bool (*ldmc_pass_fn)(ldmc_graph *g, const ldmc_pass_ctx *ctx);

enum { LDMC_PASS_PLAN = 1u << 0 /* writes only the plan, never the graph */ };

typedef struct ldmc_pass {
  const char *name;
  ldmc_pass_fn run;
  unsigned flags;
} ldmc_pass;

/* Graph passes */
extern const ldmc_pass ldmc_pass_dce;       /* removes nodes no output needs (parameters stay) */
extern const ldmc_pass ldmc_pass_cse;       /* merges identical nodes */
extern const ldmc_pass ldmc_pass_simplify;  /* algebraic identities, transpose/reshape chains */
extern const ldmc_pass ldmc_pass_fold;      /* constant folding up to ctx->fold_limit elements */
extern const ldmc_pass ldmc_pass_attention; /* dot, scale, softmax, dot -> attention */
extern const ldmc_pass ldmc_pass_decompose; /* composites the target lacks -> primitives */
extern const ldmc_pass ldmc_pass_layout;    /* NHWC convolutions for channels_last targets */
extern const ldmc_pass ldmc_pass_sink_transposes; /* moves transposes through elementwise ops */
extern const ldmc_pass ldmc_pass_remat;     /* recomputes cheap values for late readers until ctx->memory_budget fits */
/* Plan passes */
extern const ldmc_pass ldmc_pass_fusion;    /* groups nodes into kernels */
extern const ldmc_pass ldmc_pass_tiling;    /* tile sizes per kernel from the target */
extern const ldmc_pass ldmc_pass_schedule;  /* kernel order lowering peak live memory */
extern const ldmc_pass ldmc_pass_buffers;   /* arena offsets from liveness, in-place reuse */

int ldmc_pass_count(void);
const ldmc_pass *ldmc_pass_get(int i);
const ldmc_pass *ldmc_pass_find(const char *name);

/* ---- the pass manager -------------------------------------------------------- */
typedef struct ldmc_pass_stat {
  const char *pass;
  int runs, changed;
  double seconds;
  int64_t nodes_delta;
} ldmc_pass_stat;

typedef struct ldmc_pipeline_opts {
  bool verify_each;       /* ldmc_graph_verify after every pass (always when NDEBUG is not defined) */
  const char *dump_regex; /* POSIX extended regex over pass names; NULL: env LDMC_DUMP_PASSES */
  const char *dump_dir;   /* NULL: env LDMC_DUMP_DIR, else "." */
  bool stats;             /* log each pass run: wall time and node count change */
  FILE *log;              /* where stats go (NULL: stderr) */
  int max_iterations;     /* cap for fixed-point groups (0: 16) */
  /* ldmc_compile_plan hands these to the passes (see ldmc_pass_ctx) */
  bool params_are_weights;
  int32_t n_activation_params;
  int64_t memory_budget;     /* > 0: the pipeline runs remat before fusion to fit this planned peak (bytes) */
  ldmc_remat_report *remat;  /* where remat reports (peaks, extra FLOPs); NULL: not wanted */
  const int32_t *donate; /* per graph output: the parameter it overwrites in place, -1 (backends/backend.h) */
} ldmc_pipeline_opts;

typedef struct ldmc_pipeline ldmc_pipeline;

ldmc_pipeline *ldmc_pipeline_new(const char *name);
void ldmc_pipeline_free(ldmc_pipeline *p);
ldmc_status ldmc_pipeline_add(ldmc_pipeline *p, const ldmc_pass *pass);
/* A group run repeatedly, in order, until no pass changes anything. */
ldmc_status ldmc_pipeline_add_fixpoint(ldmc_pipeline *p, const char *name, int n, const ldmc_pass *const *passes);
/* Runs every step over g. On failure the graph may be partly rewritten. */
ldmc_status ldmc_pipeline_run(ldmc_pipeline *p, ldmc_graph *g, const ldmc_pass_ctx *ctx,
                              const ldmc_pipeline_opts *o);
/* Per-pass totals of the last run (valid until the next run or free). */
int ldmc_pipeline_stats(const ldmc_pipeline *p, const ldmc_pass_stat **out);
/* Names of the steps, e.g. "simplify-group{simplify,fold,cse,dce} attention ...". */
char *ldmc_pipeline_describe(const ldmc_pipeline *p);

/* The standard pipeline for a target: cleanup group, attention recognition,
 * decompose, cleanup, layout (channels_last), then fusion, tiling, scheduling
 * and buffer assignment. */
ldmc_pipeline *ldmc_pipeline_for_target(const ldmc_target *t);

/* Runs the target's pipeline over g (in place) and returns the plan (caller
 * frees). opts may be NULL. */
ldmc_status ldmc_compile_plan(ldmc_graph *g, const ldmc_target *t, const ldmc_pipeline_opts *opts,
                              ldmc_plan **plan_out);

/* For `ldmc stats`: kernel count and planned peak activation memory of a graph
 * on a target (compiles a copy; g is not changed). Parameters from index
 * n_activation_params on are weights (prepacked); negative: none are (for the
 * U-Net pass LDMC_UNET_N_INPUTS). */
typedef struct ldmc_plan_stats {
  int32_t nodes_before, nodes_after;
  int32_t kernels;         /* all kernels, prepack included */
  int32_t prepack_kernels; /* run once when weights load */
  int64_t arena_bytes, naive_bytes, prepacked_bytes; /* naive_bytes: of the optimized graph */
  int64_t input_naive_bytes; /* every intermediate of the graph as given */
  double compile_seconds;
} ldmc_plan_stats;
ldmc_status ldmc_plan_stats_compute(const ldmc_graph *g, const char *target_name, int32_t n_activation_params,
                                    ldmc_plan_stats *out);
/* The figures of a plan made from `before` (optimized into `after`). */
void ldmc_plan_stats_fill(const ldmc_graph *before, const ldmc_graph *after, const ldmc_plan *plan, double seconds,
                          ldmc_plan_stats *out);

/* Sum of the result bytes of every node but parameters and constants: the
 * memory a graph needs if nothing is freed, fused or reused. */
int64_t ldmc_graph_intermediate_bytes(const ldmc_graph *g);

/* ---- checks and dumps ---------------------------------------------------------- */
/* Independent of the buffer pass: recomputes liveness from the graph and the
 * kernel order and proves no two simultaneously live buffers overlap (in-place
 * pairs must be legal), offsets are 64-byte aligned and inside the arena. */
ldmc_status ldmc_plan_check_buffers(const ldmc_plan *p, const ldmc_graph *g);

/* Writes DIR/NNN-<tag>.txt (text IR, then the plan as '#' comment lines if any)
 * and DIR/NNN-<tag>.dot (Graphviz, kernels as clusters). */
ldmc_status ldmc_dump_graph(const ldmc_graph *g, const ldmc_plan *plan, const char *dir, int seq, const char *tag);
/* Graphviz text of g (kernels as clusters when plan is given); malloc'd. */
char *ldmc_graph_to_dot(const ldmc_graph *g, const ldmc_plan *plan);

#endif
