/* Running a profile (tools/profile_run.h): compile, warm up, profiled steps
 * (and, for --overhead, unprofiled steps interleaved with them), the
 * machine's figures, and the inputs. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/tpusim.h"
#include "tools/cli_io.h"
#include "tools/profile_run.h"

/* ---- tpusim ---- */
bool ldmc_prof_simulated(const ldmc_backend_i *be) { return be && strcmp(be->name, "tpusim") == 0; }

ldmc_status ldmc_prof_tpusim_target(const char *spec, const char *file, bool *is_tpusim, const char **spec_out,
                                    ldmc_tpu_target *t) {
  *is_tpusim = false;
  *spec_out = spec;
  const char *colon = spec ? strchr(spec, ':') : NULL;
  size_t n = spec ? (colon ? (size_t)(colon - spec) : strlen(spec)) : 0;
  if (!(spec && n == 6 && strncmp(spec, "tpusim", 6) == 0)) {
    if (file) return ldmc_error(LDMC_ERR_INVALID, "--target-file describes a tpusim machine: it needs --target tpusim");
    return LDMC_OK;
  }
  *is_tpusim = true;
  *spec_out = "tpusim";
  if (colon && file)
    return ldmc_error(LDMC_ERR_INVALID, "give --target tpusim:%s or --target-file %s, not both", colon + 1, file);
  if (file) return ldmc_tpu_target_load(file, t);
  if (colon) {
    if (!colon[1]) return ldmc_error(LDMC_ERR_INVALID, "--target tpusim: empty preset after ':'");
    return ldmc_tpu_target_preset(colon + 1, t);
  }
  return ldmc_tpusim_target_resolve(getenv("LDMC_TPUSIM_TARGET"), t); /* as `ldmc run --target tpusim` */
}

double ldmc_prof_tpusim_peak_gflops(const ldmc_tpu_target *t) {
  return (double)ldmc_tpu_target_peak_macs_per_cycle(t) * 2.0 * t->clock_hz * 1e-9;
}
double ldmc_prof_tpusim_bandwidth_gbs(const ldmc_tpu_target *t) { return t->hbm_bytes_per_s * 1e-9; }

/* The hook in front of the profiler's for a simulated backend: the span of
 * a step's events on the simulated clock becomes the step's time. */
typedef struct sim_clock {
  ldmc_profile_hook inner;
  int64_t lo, hi;
  bool any;
} sim_clock;

static void sim_on_kernel(void *ctx, const ldmc_kernel_event *ev) {
  sim_clock *c = ctx;
  if (!c->any || ev->start_ns < c->lo) c->lo = ev->start_ns;
  if (!c->any || ev->end_ns > c->hi) c->hi = ev->end_ns;
  c->any = true;
  c->inner.kernel(c->inner.ctx, ev);
}

/* The simulator's counters of each kernel into the report's rows. */
static ldmc_status fill_sim(const ldmc_executable *exe, ldmc_profile_report *r) {
  const ldmc_tpu_target *t = ldmc_tpusim_target(exe);
  if (!t) return ldmc_error(LDMC_ERR_INTERNAL, "profile: the tpusim executable has no target");
  r->simulated = true;
  snprintf(r->sim_target.name, sizeof r->sim_target.name, "%s", t->name);
  r->sim_target.clock_hz = t->clock_hz;
  r->sim_target.mxus = t->mxu_count;
  r->sim_target.macs_per_cycle = (int64_t)ldmc_tpu_target_peak_macs_per_cycle(t);
  for (int32_t i = 0; i < r->n_kernels; i++) {
    ldmc_profile_kernel *k = &r->kernels[i];
    ldmc_tpusim_kernel tk;
    LDMC_TRY(ldmc_tpusim_kernel_get(exe, k->kernel, &tk));
    const ldmc_tpu_stats *st = &tk.stats; /* every run of a kernel simulates the same */
    ldmc_profile_sim *s = &k->sim;
    s->cycles = (int64_t)st->cycles;
    for (int u = 0; u < LDMC_TPU_MAX_MXU; u++) s->mxu_busy += (int64_t)st->mxu_busy[u];
    s->macs = (int64_t)st->macs;
    s->vec_busy = (int64_t)st->vec_busy;
    s->dma_busy = (int64_t)st->dma_busy;
    s->dma_bytes = (int64_t)(st->bytes_loaded + st->bytes_stored);
    for (int q = 0; q < LDMC_TPU_Q_COUNT; q++) s->insns += (int64_t)st->insns[q];
  }
  return LDMC_OK;
}

/* ---- inputs ---- */
static uint64_t mix(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double normal(uint64_t *s) { /* Box-Muller */
  double u1 = ((double)(mix(s) >> 11) + 1.0) * 0x1.0p-53, u2 = (double)(mix(s) >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

ldmc_status ldmc_prof_feed(const ldmc_graph *g, const ldmc_tensor_set *given, const char *given_path,
                           const ldmc_tensor_set *module, bool random, uint64_t seed, ldmc_tensor_set *feed) {
  memset(feed, 0, sizeof *feed);
  for (int32_t i = 0; given && i < given->n; i++)
    if (ldmc_graph_find_param(g, given->items[i].name) < 0)
      return ldmc_error(LDMC_ERR_INVALID, "%s: tensor '%s' matches no parameter of graph '%s'",
                        given_path ? given_path : "inputs", given->items[i].name, g->name ? g->name : "");
  uint64_t state = seed;
  ldmc_status st = LDMC_OK;
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const char *name = p->attrs.name ? p->attrs.name : "";
    const ldmc_tensor *src = given ? ldmc_tensor_set_find(given, name) : NULL;
    if (!src && module) src = ldmc_tensor_set_find(module, name);
    ldmc_tensor t = {0};
    if (src) {
      char want[160], got[160];
      if (src->raw_dtype[0] || src->dtype != p->dtype || !ldmc_shape_equal(&src->shape, &p->shape)) {
        st = ldmc_error(LDMC_ERR_INVALID, "tensor '%s': parameter %%%d of graph '%s' is %s%s, found %s%s", name, (int)i,
                        g->name ? g->name : "", ldmc_dtype_name(p->dtype), ldmc_shape_str(&p->shape, want, sizeof want),
                        ldmc_tool_dtype_str(src), ldmc_shape_str(&src->shape, got, sizeof got));
        break;
      }
      st = ldmc_tool_tensor_view(src, &t);
    } else if (random) {
      int64_t n = 0;
      st = ldmc_tensor_alloc(&t, name, p->dtype, &p->shape);
      if (st == LDMC_OK) st = ldmc_shape_numel(&p->shape, 0, &n);
      if (st == LDMC_OK && ldmc_dtype_is_float(p->dtype))
        for (int64_t k = 0; k < n; k++) ldmc_tensor_set_elem(&t, k, normal(&state));
    } else {
      char shape[160];
      st = ldmc_error(LDMC_ERR_INVALID, "no input for parameter '%s' (%s%s)%s%s; --random-inputs fills it with noise",
                      name, ldmc_dtype_name(p->dtype), ldmc_shape_str(&p->shape, shape, sizeof shape),
                      given_path ? " in " : "", given_path ? given_path : "");
    }
    if (st == LDMC_OK) st = ldmc_tensor_set_add(feed, &t);
    if (st != LDMC_OK) ldmc_tensor_release(&t);
  }
  if (st != LDMC_OK) ldmc_tensor_set_free(feed);
  return st;
}

/* ---- running ---- */
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  if (n <= 0) return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static ldmc_status run_once(ldmc_executable *exe, const ldmc_tensor *in, int n_in, ldmc_tensor *out, int n_out) {
  ldmc_status st = ldmc_executable_run(exe, in, n_in, out, n_out);
  for (int i = 0; i < n_out; i++) ldmc_tensor_release(&out[i]);
  return st;
}

void ldmc_prof_result_free(ldmc_prof_result *r) {
  ldmc_profiler_free(r->prof);
  ldmc_graph_free(r->ran);
  ldmc_profile_report_free(&r->report);
  memset(r, 0, sizeof *r);
}

typedef struct run_state {
  ldmc_executable *exe;
  ldmc_tensor *in, *out;
  int n_in, n_out;
  ldmc_profile_hook hook;
  bool simulated; /* hook is clk's, in front of the profiler's */
  sim_clock clk;
} run_state;

/* One profiled step: bracketed, by kernel or (no kernel reports) whole. */
static ldmc_status profiled_step(run_state *s, ldmc_profiler *prof, bool per_kernel, double *secs) {
  if (per_kernel) LDMC_TRY(ldmc_executable_set_profiler(s->exe, &s->hook));
  s->clk.any = false;
  ldmc_profiler_step_begin(prof);
  int64_t t0 = ldmc_profile_now_ns();
  ldmc_status st = run_once(s->exe, s->in, s->n_in, s->out, s->n_out);
  int64_t t1 = ldmc_profile_now_ns();
  if (!per_kernel && st == LDMC_OK) ldmc_profiler_record_whole(prof, t0, t1);
  ldmc_profiler_step_end(prof);
  if (s->simulated && s->clk.any) ldmc_profiler_step_set_span(prof, s->clk.lo, s->clk.hi);
  *secs = (double)(t1 - t0) * 1e-9;
  return st;
}

static ldmc_status plain_step(run_state *s, bool per_kernel, double *secs) {
  if (per_kernel) LDMC_TRY(ldmc_executable_set_profiler(s->exe, NULL));
  int64_t t0 = ldmc_profile_now_ns();
  ldmc_status st = run_once(s->exe, s->in, s->n_in, s->out, s->n_out);
  *secs = (double)(ldmc_profile_now_ns() - t0) * 1e-9;
  return st;
}

static ldmc_status run_steps(run_state *s, const ldmc_prof_opts *o, ldmc_prof_result *r) {
  for (int i = 0; i < o->warmup; i++) {
    double t;
    LDMC_TRY(plain_step(s, r->per_kernel, &t));
    if (o->progress) fprintf(stderr, "ldmc profile: %s%swarm-up %d/%d %.4f s\n", o->label ? o->label : "",
                             o->label ? " " : "", i + 1, o->warmup, t);
  }
  double *plain = calloc((size_t)o->steps + 1, sizeof *plain), *prof = calloc((size_t)o->steps + 1, sizeof *prof);
  ldmc_status st = plain && prof ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int i = 0; i < o->steps && st == LDMC_OK; i++) {
    /* --overhead: alternate which goes first, so drift hits both alike */
    if (o->overhead && i % 2 == 0) st = plain_step(s, r->per_kernel, &plain[i]);
    if (st == LDMC_OK) st = profiled_step(s, r->prof, r->per_kernel, &prof[i]);
    if (st == LDMC_OK && o->overhead && i % 2 == 1) st = plain_step(s, r->per_kernel, &plain[i]);
    if (st == LDMC_OK && o->progress)
      fprintf(stderr, "ldmc profile: %s%sstep %d/%d %.4f s%s\n", o->label ? o->label : "", o->label ? " " : "", i + 1,
              o->steps, prof[i], ldmc_profiler_status(r->prof) == LDMC_OK ? "" : " (events lost: out of memory)");
  }
  if (st == LDMC_OK && o->overhead) {
    r->plain_median_s = median(plain, o->steps); /* sorts: [0] is the minimum */
    r->profiled_median_s = median(prof, o->steps);
    r->plain_min_s = plain[0];
    r->profiled_min_s = prof[0];
    r->overhead_pct = r->plain_median_s > 0 ? 100 * (r->profiled_median_s / r->plain_median_s - 1) : 0;
    r->overhead_min_pct = r->plain_min_s > 0 ? 100 * (r->profiled_min_s / r->plain_min_s - 1) : 0;
  }
  free(plain);
  free(prof);
  return st;
}

/* The hook's own cost per kernel call, in ns: what a backend adds to each
 * kernel when profiled (the clock twice, one event stored). */
static double hook_cost_ns(const ldmc_graph *g) {
  ldmc_profiler *p = ldmc_profiler_new(g);
  if (!p) return 0;
  ldmc_profile_hook h = ldmc_profiler_hook(p);
  int32_t node = 0;
  ldmc_kernel_event ev = {.name = "probe", .nodes = &node, .n_nodes = 1};
  enum { N = 100000 };
  ldmc_profiler_step_begin(p);
  int64_t t0 = ldmc_profile_now_ns();
  for (int i = 0; i < N; i++) {
    ev.kernel = i % 2048;
    ev.start_ns = ldmc_profile_now_ns();
    ev.end_ns = ldmc_profile_now_ns();
    h.kernel(h.ctx, &ev);
  }
  double ns = (double)(ldmc_profile_now_ns() - t0) / N;
  ldmc_profiler_free(p);
  return ns;
}

ldmc_status ldmc_prof_run(const ldmc_graph *g, const ldmc_tensor_set *feed, const ldmc_prof_opts *o,
                          ldmc_prof_result *r) {
  memset(r, 0, sizeof *r);
  r->nodes_run = g->n_nodes;
  run_state s = {0};
  int32_t np = ldmc_graph_num_params(g);
  s.n_in = np;
  s.n_out = g->n_outputs;
  s.in = calloc((size_t)(np ? np : 1), sizeof *s.in);
  s.out = calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *s.out);
  ldmc_status st = s.in && s.out ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t i = 0, k = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const ldmc_tensor *t = ldmc_tensor_set_find(feed, p->attrs.name ? p->attrs.name : "");
    if (!t) st = ldmc_error(LDMC_ERR_INVALID, "no input for parameter '%s'", p->attrs.name ? p->attrs.name : "");
    else s.in[k++] = *t; /* shallow: run only reads */
  }
  if (st == LDMC_OK) {
    ldmc_compile_opts copts = {.threads = o->threads,
                               .bf16 = o->bf16,
                               .params_are_weights = o->n_activation_params > 0,
                               .n_activation_params = o->n_activation_params,
                               .no_disk_cache = o->no_disk_cache};
    int64_t t0 = ldmc_profile_now_ns();
    s.simulated = ldmc_prof_simulated(o->be);
    if (s.simulated)
      st = ldmc_tpusim_compile_mode(g, &copts, o->tpu_target,
                                    o->tpu_timing_only ? LDMC_TPU_SIM_TIMING_ONLY : LDMC_TPU_SIM_FUNCTIONAL, &s.exe);
    else
      st = o->be->compile(g, &copts, &s.exe);
    r->compile_s = (double)(ldmc_profile_now_ns() - t0) * 1e-9;
    if (st != LDMC_OK) ldmc_error_prefix("compiling graph '%s' for %s: ", g->name ? g->name : "", o->be->name);
  }
  if (st == LDMC_OK) { /* events name nodes of the graph the executable runs (after its passes) */
    r->ran = ldmc_graph_clone(s.exe->graph);
    r->prof = r->ran ? ldmc_profiler_new(r->ran) : NULL;
    if (!r->prof) st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  }
  if (st == LDMC_OK) {
    if (o->progress) fprintf(stderr, "ldmc profile: %s%scompiled for %s in %.3f s\n", o->label ? o->label : "",
                             o->label ? " " : "", o->be->name, r->compile_s);
    s.hook = ldmc_profiler_hook(r->prof);
    if (s.simulated) {
      s.clk.inner = s.hook;
      s.hook = (ldmc_profile_hook){.kernel = sim_on_kernel, .ctx = &s.clk};
    }
    st = ldmc_executable_set_profiler(s.exe, NULL);
    r->per_kernel = st == LDMC_OK;
    if (st == LDMC_ERR_UNSUPPORTED) st = LDMC_OK; /* whole steps only */
  }
  if (st == LDMC_OK) {
    st = run_steps(&s, o, r);
    if (st != LDMC_OK) ldmc_error_prefix("running graph '%s' on %s: ", g->name ? g->name : "", o->be->name);
  }
  if (st == LDMC_OK && o->overhead) r->hook_ns = hook_cost_ns(g);
  if (st == LDMC_OK) st = ldmc_profiler_status(r->prof);
  if (st == LDMC_OK) st = ldmc_profiler_report(r->prof, &r->report);
  if (st == LDMC_OK && s.simulated) st = fill_sim(s.exe, &r->report);
  ldmc_executable_free(s.exe);
  free(s.in);
  free(s.out);
  if (st != LDMC_OK) ldmc_prof_result_free(r);
  return st;
}

/* ---- the machine ---- */
int ldmc_prof_calibrate(const ldmc_cli_cmd *c, int max_threads) {
  char path[4096];
  if (ldmc_machine_cache_path(path, sizeof path) != LDMC_OK) return ldmc_cli_fail(c, "%s", ldmc_last_error());
  ldmc_machine m;
  char cpu[128];
  ldmc_machine_cpu_name(cpu, sizeof cpu);
  printf("calibrating %s (%d processors): f32 FMA peak and STREAM-triad bandwidth per thread count\n", cpu,
         ldmc_machine_nproc());
  fflush(stdout);
  if (ldmc_machine_calibrate(max_threads, stdout, &m) != LDMC_OK) return ldmc_cli_fail(c, "%s", ldmc_last_error());
  if (ldmc_machine_save(path, &m) != LDMC_OK) return ldmc_cli_fail(c, "%s", ldmc_last_error());
  printf("saved to %s\n", path);
  return LDMC_EXIT_OK;
}

static int parse_positive(const ldmc_cli_cmd *c, const char *flag, double *out) {
  const char *v = ldmc_cli_get(c, flag);
  if (!v) return LDMC_CLI_CONTINUE;
  char *end;
  double d = strtod(v, &end);
  if (*v == 0 || *end || !isfinite(d) || d <= 0)
    return ldmc_cli_usage_error(c, "flag '--%s' expects a positive number, got '%s'", flag, v);
  *out = d;
  return LDMC_CLI_CONTINUE;
}

int ldmc_prof_machine_get(const ldmc_cli_cmd *c, int threads, ldmc_prof_machine *out) {
  memset(out, 0, sizeof *out);
  double peak = 0, bw = 0;
  int rc;
  if ((rc = parse_positive(c, "peak-gflops", &peak)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = parse_positive(c, "bandwidth-gbs", &bw)) != LDMC_CLI_CONTINUE) return rc;
  if (peak > 0 && bw > 0) {
    out->known = true;
    out->peak_gflops = peak;
    out->bandwidth_gbs = bw;
    snprintf(out->source, sizeof out->source, "given by --peak-gflops and --bandwidth-gbs");
    return LDMC_CLI_CONTINUE;
  }
  if (ldmc_cli_has(c, "no-calibrate")) return LDMC_CLI_CONTINUE;
  char path[4096];
  bool found = false;
  if (ldmc_machine_cache_path(path, sizeof path) != LDMC_OK) return ldmc_cli_fail(c, "%s", ldmc_last_error());
  if (ldmc_machine_load(path, &out->m, &found) != LDMC_OK) return ldmc_cli_fail(c, "%s", ldmc_last_error());
  int nproc = ldmc_machine_nproc();
  if (!found || out->m.nproc != nproc) {
    char cpu[128];
    ldmc_machine_cpu_name(cpu, sizeof cpu);
    if (found)
      fprintf(stderr, "ldmc profile: the calibration of %s in %s was made with %d processors, now %d; measuring again\n",
              cpu, path, out->m.nproc, nproc);
    else
      fprintf(stderr, "ldmc profile: no calibration of this machine (%s) in %s; measuring its FMA peak and memory "
                      "bandwidth now (a few seconds, once; `ldmc profile --calibrate` redoes it)\n", cpu, path);
    if (ldmc_machine_calibrate(nproc, stderr, &out->m) != LDMC_OK) return ldmc_cli_fail(c, "%s", ldmc_last_error());
    if (ldmc_machine_save(path, &out->m) != LDMC_OK)
      fprintf(stderr, "ldmc profile: warning: calibration not saved: %s\n", ldmc_last_error());
  }
  out->known = true;
  out->peak_gflops = peak > 0 ? peak : ldmc_machine_peak(&out->m, threads);
  out->bandwidth_gbs = bw > 0 ? bw : ldmc_machine_bandwidth(&out->m, threads);
  snprintf(out->source, sizeof out->source, "%s, %s FMA, calibrated %s (%.300s)", out->m.cpu, out->m.isa, out->m.measured,
           path);
  return LDMC_CLI_CONTINUE;
}
