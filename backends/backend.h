/* Backends: a small vtable each, and a registry. Adding a backend is one
 * ldmc_backend_i and one line in registry.c (see docs/adding-a-backend.md). */
#ifndef LDMC_BACKENDS_BACKEND_H
#define LDMC_BACKENDS_BACKEND_H

#include "ir/ir.h"

struct ldmc_pipeline_opts;
typedef struct ldmc_compile_opts {
  int threads;            /* 0: the backend's default */
  bool bf16;              /* allow bf16 storage with f32 accumulation */
  /* Parameters from index n_activation_params on are weights: the same
   * tensors every run, so what derives only from them (packed panels,
   * relayouts) is computed when they are first passed and again only when
   * other weight tensors (other data pointers) are passed. In-place changes
   * to a weight tensor between runs are not seen. */
  bool params_are_weights;
  int32_t n_activation_params;
  /* On-disk kernel cache (llvm-cpu): compiled kernels are kept as files and
   * loaded by later processes instead of being compiled again.
   *   cache_dir NULL: the default folder, which is $LDMC_CACHE_DIR if that is
   *     set (set but empty, or "off": no disk cache), else
   *     $XDG_CACHE_HOME/ldmc/kernels, else $HOME/.cache/ldmc/kernels;
   *   cache_dir "DIR": that folder (LDMC_CACHE_DIR is not consulted); "" none.
   * Missing folders are created (mode 0700). A folder that cannot be created
   * or written means no disk cache (a warning with verbose), never an error.
   * Entries are keyed by the kernel, ISA level, CPU, ldmc and LLVM versions;
   * a corrupt or foreign entry is compiled again and replaced. See
   * docs/backends/llvm_cpu.md, "Kernel cache". */
  const char *cache_dir;
  int verbose;
  bool no_disk_cache;     /* true: no disk cache whatever cache_dir and LDMC_CACHE_DIR say */
  /* Optional: dumps, pass statistics and verification for the pass pipeline a
   * backend runs (passes/passes.h; its weight fields are set from the above). */
  const struct ldmc_pipeline_opts *pipeline;
  /* Donated state (a step executable: training, sampling); NULL: none. Else
   * one entry per graph output: the index of the parameter whose tensor the
   * output overwrites every run, or -1. See "donated state" below. */
  const int32_t *donate;
} ldmc_compile_opts;

/* A compiled graph. run() takes one input per parameter, in the graph's
 * parameter order (dtype and shape must match), and fills one freshly
 * allocated tensor per graph output, named as the output. */
typedef struct ldmc_profile_hook ldmc_profile_hook;
struct ldmc_output_hook;
typedef struct ldmc_executable_i {
  ldmc_status (*run)(void *context, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs, int n_outputs);
  void (*destroy)(void *context);
  /* Optional (NULL: the backend reports no kernels): keeps a copy of *hook,
   * or clears it when hook is NULL or hook->kernel is NULL. See below. */
  ldmc_status (*set_profiler)(void *context, const ldmc_profile_hook *hook);
  /* Optional (NULL: outputs are ready when run() returns): keeps a copy of
   * *hook, or clears it when hook is NULL. See "output hook" below. */
  ldmc_status (*set_output_hook)(void *context, const struct ldmc_output_hook *hook);
} ldmc_executable_i;

typedef struct ldmc_executable {
  const ldmc_executable_i *iface;
  void *context;
  ldmc_graph *graph; /* the graph as compiled (owned), for parameter and output names */
} ldmc_executable;

struct ldmc_plan;
typedef struct ldmc_backend_i {
  const char *name;
  const char *description;
  bool (*supports)(const ldmc_node *n); /* ops it runs natively */
  ldmc_status (*compile)(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_executable **out);
  /* Optional: what compile() would execute, without generating code — the
   * optimized graph and its pass-pipeline plan (passes/passes.h) with the
   * backend's steps, kernel scratch and buffer offsets filled in. The caller
   * frees both (ldmc_graph_free, ldmc_plan_free). */
  ldmc_status (*plan)(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_graph **opt, struct ldmc_plan **plan);
} ldmc_backend_i;

/* ---- donated state ------------------------------------------------------------
 * Compiled with ldmc_compile_opts.donate, run() writes each donated output's
 * new value into the data of the input tensor it is paired with, after every
 * read of the old value, and leaves outputs[o] untouched: a caller binds the
 * state tensors once and passes the same ones every run, so nothing is
 * allocated for them and their addresses never change (llvm-cpu computes
 * them in place; the interpreter, being the reference, copies them back at
 * the end of the run). The other outputs: a tensor in outputs[o] that already
 * owns a buffer of the output's dtype and shape is written in place, else one
 * is allocated, so a loop that keeps its outputs allocates nothing after the
 * first run. A pair agrees in dtype and shape, a parameter is donated at most
 * once, and a donated parameter is not a weight (params_are_weights). */
ldmc_status ldmc_donation_check(const ldmc_graph *g, const ldmc_compile_opts *o);
/* For run(): output o of g gets bytes `data` (its full size): written into
 * *out when reuse is set and *out owns a buffer of its type, else into a new
 * tensor named as the output. */
ldmc_status ldmc_output_deliver(const ldmc_graph *g, int32_t o, const void *data, bool reuse, ldmc_tensor *out);

int ldmc_backend_count(void);
const ldmc_backend_i *ldmc_backend_get(int i);
const ldmc_backend_i *ldmc_backend_find(const char *name); /* NULL, with a message listing the names, if unknown */

ldmc_status ldmc_executable_run(ldmc_executable *e, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs,
                                int n_outputs);
/* Matches inputs to parameters by name (refusing missing, extra, mis-typed or
 * mis-shaped tensors, each named with expected and found type) and adds the
 * outputs to *outputs under the graph's output names. */
ldmc_status ldmc_executable_run_named(ldmc_executable *e, const ldmc_tensor_set *inputs, ldmc_tensor_set *outputs);
void ldmc_executable_free(ldmc_executable *e);

extern const ldmc_backend_i ldmc_backend_interp;

/* ---- profiling hook (runtime/profiler.h collects the events) -----------------
 * Every backend reports each kernel it runs, on the thread that called run():
 *
 *   if (__builtin_expect(hook.kernel != NULL, 0)) t0 = ldmc_profile_now_ns();
 *   ... run the kernel (it may use many threads) ...
 *   if (__builtin_expect(hook.kernel != NULL, 0)) { ev = <the kernel's event>;
 *     ev.start_ns = t0; ev.end_ns = ldmc_profile_now_ns(); hook.kernel(hook.ctx, &ev); }
 *
 * With no hook set that is one predictable branch per kernel. A "kernel" is
 * the backend's unit of work: one node on the interpreter (interp.c), one plan
 * step (a fused group, a pack, a copy) on llvm-cpu, reported by thread 0
 * (which walks the steps) once all the step's chunks are done, from the
 * previous step's end (llvm_cpu/exec.c; its events are built once per hook in
 * llvm_cpu/profile.c).
 * `kernel` numbers it within the executable, the same every run, so calls
 * aggregate over steps. A new backend adds set_profiler to its
 * ldmc_executable_i and the two branches around its kernel loop. FLOPs come from
 * ldmc_node_flops over the nodes it computes; every node's FLOPs are reported
 * by exactly one kernel, so one run's events sum to the FLOPs of the nodes it
 * executes (ldmc_graph_flops for a graph without dead nodes); kernels that only
 * move data (packs, copies of a node split in several steps) report 0 FLOPs. */
typedef struct ldmc_kernel_event {
  int32_t kernel;                   /* index within the executable, stable across runs */
  const char *name;                 /* kernel name ("convolution", "gemm", "ew"); lives as long as the executable */
  const int32_t *nodes;             /* ids (in the executable's graph) of the IR nodes it computes, ascending;
                                       the last is the root, whose value it writes */
  int32_t n_nodes;
  int64_t start_ns, end_ns;         /* CLOCK_MONOTONIC */
  int64_t mac_flops, other_flops;   /* ldmc_flops of its nodes */
  int64_t bytes_read, bytes_written; /* memory it touches: inputs read once, outputs written once */
} ldmc_kernel_event;

struct ldmc_profile_hook {
  void (*kernel)(void *ctx, const ldmc_kernel_event *ev); /* called once per kernel call */
  void *ctx;
};

/* Sets (or with NULL clears) the executable's hook. LDMC_ERR_UNSUPPORTED when
 * its backend reports no kernels (set_profiler is NULL). Not while it runs. */
ldmc_status ldmc_executable_set_profiler(ldmc_executable *e, const ldmc_profile_hook *hook);

/* ---- output hook ---------------------------------------------------------------
 * An executable with an output hook calls ready(ctx, o, data) once per run
 * for every graph output o, on the thread that called run(), as soon as the
 * kernels have written o's final value: data points at its bytes (dtype and
 * shape as the graph says), which stay valid and unchanged until run()
 * returns. Data-parallel training starts the all-reduce of a gradient
 * bucket from it while the rest of the backward runs (runtime/grad_sync.h).
 * The callback must not call into the executable. */
typedef struct ldmc_output_hook {
  void (*ready)(void *ctx, int32_t output, const void *data);
  void *ctx;
} ldmc_output_hook;

/* Sets (or with NULL clears) the hook. LDMC_ERR_UNSUPPORTED when the backend
 * has none (its outputs are then complete only when run() returns). */
ldmc_status ldmc_executable_set_output_hook(ldmc_executable *e, const ldmc_output_hook *hook);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t ldmc_profile_now_ns(void);

/* Fills ev's FLOPs and bytes for a kernel computing nodes[0..n) (ascending,
 * root last) of g: bytes read = each distinct value outside the set that a
 * member reads (parameters and constants included), once; bytes written = the
 * root's value. */
void ldmc_profile_kernel_cost(const ldmc_graph *g, const int32_t *nodes, int32_t n, ldmc_kernel_event *ev);

#endif
