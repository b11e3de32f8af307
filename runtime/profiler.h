/* Profiling an executable kernel by kernel: a collector for the backend hook
 * (backends/backend.h), per-kernel figures aggregated over steps, the
 * machine's measured peak (calibration), and outputs: a table, CSV, JSON, a
 * Chrome trace and a roofline plot. See docs/profiling.md. */
#ifndef LDMC_RUNTIME_PROFILER_H
#define LDMC_RUNTIME_PROFILER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backends/backend.h"

/* ---- collecting ----------------------------------------------------------------- */
typedef struct ldmc_profiler ldmc_profiler;

/* A collector for the executable whose graph is g (borrowed: it must outlive
 * the profiler; node names and scopes are read from it). NULL on OOM. */
ldmc_profiler *ldmc_profiler_new(const ldmc_graph *g);
void ldmc_profiler_free(ldmc_profiler *p);
/* The hook to give ldmc_executable_set_profiler. */
ldmc_profile_hook ldmc_profiler_hook(ldmc_profiler *p);
/* Brackets one step (one run of the executable); kernel events between them
 * belong to it. Only bracketed steps count in the report. */
void ldmc_profiler_step_begin(ldmc_profiler *p);
void ldmc_profiler_step_end(ldmc_profiler *p);
/* For backends that report no kernels: the whole step [start, end) as one
 * kernel ("run") computing every node of the graph. */
void ldmc_profiler_record_whole(ldmc_profiler *p, int64_t start_ns, int64_t end_ns);
/* LDMC_ERR_NOMEM if an event could not be stored (the report would be short). */
ldmc_status ldmc_profiler_status(const ldmc_profiler *p);
int64_t ldmc_profiler_n_calls(const ldmc_profiler *p); /* kernel calls recorded */
int ldmc_profiler_n_steps(const ldmc_profiler *p);      /* completed steps */

/* ---- the machine ------------------------------------------------------------------ */
#define LDMC_MACHINE_MAX_POINTS 64
typedef struct ldmc_machine {
  char cpu[128];      /* /proc/cpuinfo "model name" */
  char isa[16];       /* the FMA microbenchmark's instruction set: avx512, avx2, scalar */
  char measured[32];  /* UTC, ISO 8601 */
  int nproc;          /* processors available when measured */
  int n;              /* measured thread counts, ascending */
  int threads[LDMC_MACHINE_MAX_POINTS];
  double gflops[LDMC_MACHINE_MAX_POINTS]; /* f32 FMA peak, GFLOP/s */
  double gbs[LDMC_MACHINE_MAX_POINTS];    /* STREAM-triad bandwidth, GB/s (10^9 bytes) */
} ldmc_machine;

/* "model name" of /proc/cpuinfo (else "unknown CPU"). */
void ldmc_machine_cpu_name(char *buf, size_t len);
/* Processors OpenMP may use. */
int ldmc_machine_nproc(void);
/* Path of the cache: $XDG_CACHE_HOME/ldmc/machine.json, else ~/.cache/ldmc/machine.json. */
ldmc_status ldmc_machine_cache_path(char *buf, size_t len);
/* Measures this machine at thread counts 1..max_threads (all up to 16, then
 * powers of two and max_threads); progress lines go to log if non-NULL. */
ldmc_status ldmc_machine_calibrate(int max_threads, FILE *log, ldmc_machine *out);
/* Reads this CPU's entry from the cache file; *found false if there is none
 * (a missing file is no error). Callers compare m->nproc with
 * ldmc_machine_nproc(): figures from another processor count are stale. A
 * malformed file or entry is an error naming it. */
ldmc_status ldmc_machine_load(const char *path, ldmc_machine *out, bool *found);
/* Adds or replaces m's entry (by CPU name) in the cache file, atomically. */
ldmc_status ldmc_machine_save(const char *path, const ldmc_machine *m);
/* Peak GFLOP/s and bandwidth at a thread count (interpolated between measured
 * counts, clamped to the measured range); 0 if nothing was measured. */
double ldmc_machine_peak(const ldmc_machine *m, int threads);
double ldmc_machine_bandwidth(const ldmc_machine *m, int threads);

/* The microbenchmarks. fma: `threads` threads each run many independent FMA
 * chains for iters rounds (iters <= 2^24 keeps the check exact); returns
 * GFLOP/s (2 per FMA lane) and sets *ok when every lane ended at its exact
 * value, *isa to the instruction set used. triad: a[i] = b[i] + s * c[i] over
 * n floats, bandwidth in GB/s counting 12 bytes per element (STREAM's rule);
 * *ok when a checked sample of a is right. Negative on OOM. */
double ldmc_bench_fma(int threads, int64_t iters, bool *ok, const char **isa);
double ldmc_bench_triad(int threads, int64_t n, bool *ok);

/* For a backend whose events carry a simulated clock (tpusim): replaces the
 * span of the step last ended (ldmc_profiler_step_end) with [start_ns,
 * end_ns) of that clock, so step times, shares and the trace are simulated
 * time like the kernels'. end_ns must be > start_ns >= 0. */
void ldmc_profiler_step_set_span(ldmc_profiler *p, int64_t start_ns, int64_t end_ns);

/* ---- the report --------------------------------------------------------------------- */
/* What a simulated machine (tpusim) counted for one call of a kernel (per
 * step for grouped rows); all zero for other backends. */
typedef struct ldmc_profile_sim {
  int64_t cycles;
  int64_t mxu_busy;  /* cycles the matrix units streamed, summed over units */
  int64_t macs;      /* multiply-adds the matrix units did */
  int64_t vec_busy;  /* vector unit */
  int64_t dma_busy;  /* cycles the off-chip link transferred */
  int64_t dma_bytes; /* off-chip bytes loaded + stored */
  int64_t insns;
} ldmc_profile_sim;

/* The simulated machine of a report (ldmc_profile_report.sim_target). */
typedef struct ldmc_profile_sim_target {
  char name[32];          /* "v5e" */
  double clock_hz;
  int mxus;               /* matrix units */
  int64_t macs_per_cycle; /* units x R x C */
} ldmc_profile_sim_target;

typedef struct ldmc_profile_kernel {
  int32_t kernel;         /* the backend's kernel index (-1 for a whole-step record) */
  char *name;             /* the backend's kernel name; for grouped rows, the group */
  char *ops;              /* op names of its nodes in order, '+'-joined: "group_norm+silu" */
  char *nodes;            /* "%12" or "%12,%13" */
  char *scope;            /* its root node's scope (U-Net block), "" if none */
  int32_t root;           /* root node id, -1 for groups */
  int64_t kernels;        /* kernels merged into this row (1 unless grouped) */
  int64_t calls;
  double min_s, median_s; /* per call (grouped rows: per step) */
  double total_s;         /* over all calls */
  int64_t mac_flops, other_flops, bytes_read, bytes_written; /* per call (grouped rows: per step) */
  double gflops_s, gbytes_s, intensity; /* (mac + other) / median, bytes / median, FLOPs per byte */
  double share;           /* total_s / summed step time */
  ldmc_profile_sim sim;   /* simulated backends only */
} ldmc_profile_kernel;

typedef struct ldmc_profile_report {
  char *graph;
  int steps;
  double step_min_s, step_median_s, step_mean_s, steps_total_s;
  double kernel_s_per_step;              /* summed kernel time per step (the rest is dispatch) */
  int64_t graph_mac_flops, graph_other_flops; /* ldmc_graph_flops: `ldmc stats`' GFLOPs per step */
  int64_t exec_mac_flops, exec_other_flops;   /* what the kernels reported, per step */
  int64_t bytes_per_step;                /* read + written by the kernels, per step */
  int64_t calls_per_step;
  double gflops_s;                       /* graph_mac_flops / step_median_s */
  /* the machine, when known (ldmc_profile_report_set_machine); peak_gflops 0:
   * not measured, and pct_peak (0) is unknown: printed "unknown", JSON null */
  int threads;
  double peak_gflops, bandwidth_gbs, pct_peak;
  ldmc_profile_kernel *kernels;          /* by total time, descending */
  int32_t n_kernels;
  /* simulated: every time is the simulated machine's (cycles / clock), the
   * peak and bandwidth are its target's and kernels[].sim is filled */
  bool simulated;
  ldmc_profile_sim_target sim_target;
} ldmc_profile_report;

/* Aggregates the events of the bracketed steps by kernel index; the graph's
 * FLOPs are ldmc_graph_flops of the profiler's graph. */
ldmc_status ldmc_profiler_report(const ldmc_profiler *p, ldmc_profile_report *out);
void ldmc_profile_report_free(ldmc_profile_report *r);
/* Sets the machine figures and the percentage of peak. */
void ldmc_profile_report_set_machine(ldmc_profile_report *r, int threads, double peak_gflops, double bandwidth_gbs);
/* Rows merged by a key of each kernel row (e.g. its ops, its block); times,
 * FLOPs and bytes become per step. out has r's totals. */
typedef const char *(*ldmc_profile_key_fn)(const ldmc_profile_kernel *k, char *buf, size_t len);
ldmc_status ldmc_profile_report_group(const ldmc_profile_report *r, ldmc_profile_key_fn key, ldmc_profile_report *out);

/* A simulated report's counters per step: each row's sim x calls / steps
 * (grouped rows are per step already). */
void ldmc_profile_report_sim_totals(const ldmc_profile_report *r, bool grouped, ldmc_profile_sim *out);

/* ---- outputs ---------------------------------------------------------------------------- */
/* The terminal table: the top `top` rows (0: all) and the totals; a
 * simulated report adds a table of the units' utilization and the roofline
 * position of each row against the target's peak. */
void ldmc_profile_print(const ldmc_profile_report *r, FILE *f, int top, bool grouped);
/* Each written atomically (temp file + rename); errors name the path. */
ldmc_status ldmc_profile_write_csv(const ldmc_profile_report *r, const char *path);
/* meta: a JSON object text merged into the top level (backend, machine...), or NULL. */
ldmc_status ldmc_profile_write_json(const ldmc_profile_report *r, const char *meta, const char *path);
/* Chrome trace event format: one complete ("X") event per kernel call (cat
 * "kernel") inside one per step (cat "step"), ts/dur in microseconds. */
ldmc_status ldmc_profile_write_trace(const ldmc_profiler *p, const char *backend, const char *path);

/* A log-log roofline: memory and compute roofs, one point per entry. */
typedef struct ldmc_roofline_point {
  const char *label;  /* the full description (not drawn: cairo's SVG has no tooltips) */
  const char *tag;    /* short text drawn next to the largest points; NULL: none */
  double intensity; /* FLOPs per byte */
  double gflops;    /* achieved GFLOP/s */
  double weight;    /* share of time: the point's area */
} ldmc_roofline_point;
/* Drawn through runtime/plot.h into path, ".svg" or ".png" (roofline_plot.c):
 * the roofs when peak_gflops and bandwidth_gbs are both > 0 (else the title
 * says they are not drawn), the points with a positive, finite intensity and
 * GFLOP/s (the legend counts the others), the 8 largest tags. Errors name the
 * path and leave no file. */
ldmc_status ldmc_roofline_write(const char *path, const char *title, double peak_gflops, double bandwidth_gbs,
                                const ldmc_roofline_point *pts, int n);

#endif
