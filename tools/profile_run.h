/* The machinery behind `ldmc profile` (tools/cmd_profile.c): running a graph
 * for a number of profiled steps, the machine's figures from the calibration
 * cache, and the inputs of a profile. */
#ifndef LDMC_TOOLS_PROFILE_RUN_H
#define LDMC_TOOLS_PROFILE_RUN_H

#include "backends/tpusim/target.h"
#include "runtime/profiler.h"
#include "tools/cli_args.h"

typedef struct ldmc_prof_opts {
  const ldmc_backend_i *be;
  int threads;       /* passed to the backend; 0: its default */
  int steps, warmup; /* profiled runs, and unprofiled runs before them */
  bool overhead;     /* also time as many unprofiled steps, interleaved */
  bool progress;     /* a line per step on stderr */
  const char *label; /* prefix of progress lines, e.g. "c=64" */
  int32_t n_activation_params; /* > 0: parameters from this index on are weights (ldmc_compile_opts) */
  bool no_disk_cache;          /* ldmc_compile_opts.no_disk_cache (--no-cache) */
  bool bf16;         /* ldmc_compile_opts.bf16: bf16 storage with f32 accumulation (`--bf16`) */
  /* be is tpusim: the target to compile for (NULL: $LDMC_TPUSIM_TARGET), and
   * whether to simulate timing only (no arithmetic; the outputs are zeros) */
  const ldmc_tpu_target *tpu_target;
  bool tpu_timing_only;
} ldmc_prof_opts;

typedef struct ldmc_prof_result {
  ldmc_profiler *prof;        /* the recorded events (for the trace) */
  ldmc_graph *ran;            /* the graph the executable ran (a backend's passes may rewrite it); prof's nodes */
  ldmc_profile_report report; /* per kernel, sorted by time */
  double compile_s;
  bool per_kernel;            /* false: the backend reports no kernels; each step is one "run" */
  int nodes_run;              /* graph nodes */
  /* with opts.overhead: step times with and without the hook, and the
   * hook's own cost per kernel call (two clock reads and a recorded event) */
  double plain_median_s, profiled_median_s, overhead_pct;
  double plain_min_s, profiled_min_s, overhead_min_pct;
  double hook_ns;
} ldmc_prof_result;

/* Compiles g on o->be, runs o->warmup + o->steps steps over feed (one tensor
 * per parameter, by name) and aggregates. g must outlive the result. */
ldmc_status ldmc_prof_run(const ldmc_graph *g, const ldmc_tensor_set *feed, const ldmc_prof_opts *o,
                          ldmc_prof_result *out);
void ldmc_prof_result_free(ldmc_prof_result *r);

typedef struct ldmc_prof_machine {
  bool known;
  double peak_gflops, bandwidth_gbs; /* at the profile's thread count */
  ldmc_machine m;
  char source[512];                  /* "calibrated 2025-..., ~/.cache/ldmc/machine.json" or "--peak-gflops" */
} ldmc_prof_machine;

/* The machine's figures at `threads`: --peak-gflops/--bandwidth-gbs if given,
 * else the calibration cache, calibrating (and telling the user on stderr)
 * when this CPU has no entry; --no-calibrate leaves them unknown. Returns
 * LDMC_CLI_CONTINUE or an exit status after printing the error. */
int ldmc_prof_machine_get(const ldmc_cli_cmd *c, int threads, ldmc_prof_machine *out);
/* `ldmc profile --calibrate`: measure, save, print. */
int ldmc_prof_calibrate(const ldmc_cli_cmd *c, int max_threads);

/* Whether a backend reports simulated time (tpusim): its report's times are
 * cycles / clock, its peak the target's. */
bool ldmc_prof_simulated(const ldmc_backend_i *be);

/* --target tpusim[:PRESET] and --target-file FILE: the machine model, into
 * *t. spec is the --target value (NULL: none given); file the --target-file
 * value or NULL. *is_tpusim says whether the target is tpusim (false: t is
 * untouched, and spec goes to ldmc_cli_target_parse; spec_out is then spec
 * with any ':' suffix kept). On success for tpusim, spec_out is "tpusim".
 * Errors (unknown preset, a bad file, --target-file without tpusim) are
 * usage errors: their message is left in ldmc_last_error(). */
ldmc_status ldmc_prof_tpusim_target(const char *spec, const char *file, bool *is_tpusim, const char **spec_out,
                                    ldmc_tpu_target *t);

/* The peak a tpusim target reaches: bf16 matrix units x R x C x 2 x clock,
 * GFLOP/s, and its off-chip bandwidth, GB/s. */
double ldmc_prof_tpusim_peak_gflops(const ldmc_tpu_target *t);
double ldmc_prof_tpusim_bandwidth_gbs(const ldmc_tpu_target *t);

/* Parameters that no tensor of `given` provides get seeded normal noise
 * (floats; ints and preds zeros) when random is set; the result holds a view
 * or a new tensor for every parameter. Unknown names in given are errors. */
ldmc_status ldmc_prof_feed(const ldmc_graph *g, const ldmc_tensor_set *given, const char *given_path,
                           const ldmc_tensor_set *module, bool random, uint64_t seed, ldmc_tensor_set *feed);

#endif
