/* ldmc profile: where a step spends its time, kernel by kernel, against the
 * machine's measured peak (tools/profile_run.h, runtime/profiler.h); or, for
 * several U-Net widths, the counted and the measured cost side by side. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "models/stats.h"
#include "models/unet.h"
#include "models/weights.h"
#include "tools/cli_io.h"
#include "tools/cli_target.h"
#include "tools/run_model.h"
#include "tools/commands.h"
#include "support/fileio.h"
#include "tools/profile_run.h"

#define MAX_WIDTHS 64

typedef struct prof_cmd {
  ldmc_cli_cmd *c;
  ldmc_prof_opts o;
  ldmc_prof_machine mach;
  int threads; /* effective */
  int top;
  const char *group, *csv, *json, *trace, *roofline;
  bool backend_chosen;
  bool tpusim;           /* the target is tpusim: simulated time, the target's peak */
  ldmc_tpu_target tpu_t; /* its machine model */
} prof_cmd;

/* ---- output files: all of them or none ----
 * Each requested file is first written (atomically) under a temporary name
 * next to it; only once every one of them has been written are they renamed
 * into place. A failed profile leaves none of its files, and an earlier file
 * at a requested path stays as it was. */
#define MAX_OUT_FILES 4
typedef struct out_files {
  int n;
  const char *final[MAX_OUT_FILES];
  char *tmp[MAX_OUT_FILES];
} out_files;

/* The temporary name to write path under (NULL for NULL; for path on OOM);
 * it ends in path's extension, which writers such as the roofline go by. */
static const char *out_stage(out_files *o, const char *path) {
  if (!path || o->n == MAX_OUT_FILES) return path;
  size_t len = 2 * strlen(path) + 48;
  char *t = malloc(len);
  if (!t) return path;
  const char *base = strrchr(path, '/'), *ext = strrchr(base ? base : path, '.');
  snprintf(t, len, "%s.ldmc-partial.%ld%s", path, (long)getpid(), ext ? ext : "");
  o->final[o->n] = path;
  o->tmp[o->n++] = t;
  return t;
}

/* Removes the temporary files. */
static void out_abort(out_files *o) {
  for (int i = 0; i < o->n; i++) {
    unlink(o->tmp[i]);
    free(o->tmp[i]);
  }
  o->n = 0;
}

/* Renames every temporary file into place. */
static ldmc_status out_commit(out_files *o) {
  ldmc_status st = LDMC_OK;
  for (int i = 0; i < o->n; i++) {
    if (st == LDMC_OK && rename(o->tmp[i], o->final[i]) != 0)
      st = ldmc_error(LDMC_ERR_IO, "%s: %s", o->final[i], strerror(errno));
    if (st != LDMC_OK) unlink(o->tmp[i]);
    free(o->tmp[i]);
  }
  o->n = 0;
  return st;
}

/* Fails with the last error, naming the requested paths, not the temporary ones. */
static int out_fail(const prof_cmd *pc, out_files *o) {
  const char *msg = ldmc_last_error();
  char buf[2048];
  snprintf(buf, sizeof buf, "%s", msg ? msg : "");
  for (int i = 0; i < o->n; i++) {
    char *at = strstr(buf, o->tmp[i]);
    if (!at) continue;
    char rest[2048];
    snprintf(rest, sizeof rest, "%s", at + strlen(o->tmp[i]));
    snprintf(at, sizeof buf - (size_t)(at - buf), "%s%s", o->final[i], rest);
  }
  out_abort(o);
  return ldmc_cli_fail(pc->c, "%s", buf);
}

/* After the flags are checked: the machine's figures, and which backend runs. */
static int start(prof_cmd *pc) {
  if (pc->tpusim) { /* the simulated machine's figures, not this CPU's */
    const ldmc_tpu_target *t = &pc->tpu_t;
    memset(&pc->mach, 0, sizeof pc->mach);
    pc->mach.known = true;
    pc->mach.peak_gflops = ldmc_prof_tpusim_peak_gflops(t);
    pc->mach.bandwidth_gbs = ldmc_prof_tpusim_bandwidth_gbs(t);
    snprintf(pc->mach.source, sizeof pc->mach.source,
             "tpusim target %s: %d matrix units of %dx%d at %.0f MHz (bf16 peak), %.1f GB/s off chip; %s simulation",
             t->name, t->mxu_count, t->mxu_rows, t->mxu_cols, t->clock_hz * 1e-6, t->hbm_bytes_per_s * 1e-9,
             pc->o.tpu_timing_only ? "timing-only" : "functional");
    return LDMC_CLI_CONTINUE;
  }
  int rc = ldmc_prof_machine_get(pc->c, pc->threads, &pc->mach);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  if (!pc->backend_chosen)
    fprintf(stderr, "ldmc profile: backend %s (the fastest registered; --backend NAME picks another)\n", pc->o.be->name);
  return LDMC_CLI_CONTINUE;
}

/* ---- grouping keys ---- */
static const char *key_op(const ldmc_profile_kernel *k, char *buf, size_t len) {
  snprintf(buf, len, "%s", k->ops[0] ? k->ops : k->name);
  return buf;
}
static const char *key_name(const ldmc_profile_kernel *k, char *buf, size_t len) {
  snprintf(buf, len, "%s", k->name);
  return buf;
}
static const char *key_block(const ldmc_profile_kernel *k, char *buf, size_t len) {
  return ldmc_stats_block_of(k->scope, buf, len);
}
static const char *key_scope(const ldmc_profile_kernel *k, char *buf, size_t len) {
  snprintf(buf, len, "%s", k->scope[0] ? k->scope : "(top)");
  return buf;
}

static ldmc_profile_key_fn group_key(const char *g) {
  if (!g || strcmp(g, "kernel") == 0) return NULL;
  if (strcmp(g, "op") == 0) return key_op;
  if (strcmp(g, "name") == 0) return key_name;
  if (strcmp(g, "block") == 0) return key_block;
  if (strcmp(g, "scope") == 0) return key_scope;
  return NULL;
}

static char *meta_json(const prof_cmd *pc, const ldmc_prof_result *r, const char *model) {
  json_t *m = json_pack("{s:s,s:i,s:b,s:f,s:b,s:s}", "backend", pc->o.be->name, "threads", pc->threads, "bf16",
                        pc->o.bf16, "compile_s", r->compile_s, "per_kernel", r->per_kernel, "group",
                        pc->group ? pc->group : "kernel");
  if (model) json_object_set_new(m, "model", json_string(model));
  if (pc->tpusim) json_object_set_new(m, "sim_mode", json_string(pc->o.tpu_timing_only ? "timing" : "functional"));
  if (pc->mach.known)
    json_object_set_new(m, "calibration", json_pack("{s:s,s:s,s:s}", "cpu", pc->mach.m.cpu, "isa", pc->mach.m.isa,
                                                    "source", pc->mach.source));
  if (pc->o.overhead)
    json_object_set_new(m, "overhead",
                        json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "unprofiled_median_s", r->plain_median_s,
                                  "profiled_median_s", r->profiled_median_s, "percent", r->overhead_pct,
                                  "unprofiled_min_s", r->plain_min_s, "profiled_min_s", r->profiled_min_s,
                                  "percent_by_min", r->overhead_min_pct, "hook_ns_per_call", r->hook_ns));
  char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
  json_decref(m);
  return s;
}

static ldmc_status write_roofline(const prof_cmd *pc, const char *path, const ldmc_profile_report *r,
                                  const char *title) {
  ldmc_roofline_point *pts = calloc((size_t)(r->n_kernels ? r->n_kernels : 1), sizeof *pts);
  char **labels = calloc((size_t)(r->n_kernels ? r->n_kernels : 1) * 2, sizeof *labels);
  if (!pts || !labels) {
    free(pts);
    free(labels);
    return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  }
  for (int32_t i = 0; i < r->n_kernels; i++) {
    const ldmc_profile_kernel *k = &r->kernels[i];
    size_t len = strlen(k->name) + strlen(k->ops) + strlen(k->nodes) + strlen(k->scope) + 16;
    char **lab = &labels[2 * i], **tag = &labels[2 * i + 1];
    *lab = malloc(len);
    *tag = malloc(len);
    if (*lab) snprintf(*lab, len, "%s (%s) %s %s", k->name, k->ops, k->nodes, k->scope);
    if (*tag && k->root >= 0) snprintf(*tag, len, "%s %%%d", k->name, (int)k->root); /* "attn %192" */
    else if (*tag) snprintf(*tag, len, "%s", k->name);                               /* a group */
    pts[i] = (ldmc_roofline_point){*lab ? *lab : k->name, *tag, k->intensity, k->gflops_s, k->share};
    if (r->simulated && k->sim.cycles > 0 && k->sim.dma_bytes > 0) { /* the bytes the DMAs moved, exact time */
      double flops = (double)(k->mac_flops + k->other_flops), secs = (double)k->sim.cycles / r->sim_target.clock_hz;
      pts[i].intensity = flops / (double)k->sim.dma_bytes;
      pts[i].gflops = flops / secs * 1e-9;
    }
  }
  ldmc_status st = ldmc_roofline_write(path, title, pc->mach.peak_gflops, pc->mach.bandwidth_gbs, pts,
                                       (int)r->n_kernels);
  for (int32_t i = 0; i < 2 * r->n_kernels; i++) free(labels[i]);
  free(labels);
  free(pts);
  return st;
}

/* A grouped simulated report's counters: per step, summed over each group's kernels. */
static void group_sim(const ldmc_profile_report *r, ldmc_profile_key_fn key, ldmc_profile_report *g) {
  double steps = r->steps > 0 ? r->steps : 1;
  for (int32_t i = 0; i < r->n_kernels; i++) {
    const ldmc_profile_kernel *k = &r->kernels[i];
    char buf[256];
    const char *name = key(k, buf, sizeof buf);
    for (int32_t j = 0; j < g->n_kernels; j++) {
      ldmc_profile_sim *o = &g->kernels[j].sim;
      if (strcmp(g->kernels[j].name, name) != 0) continue;
      double n = (double)k->calls / steps;
      o->cycles += llround((double)k->sim.cycles * n);
      o->mxu_busy += llround((double)k->sim.mxu_busy * n);
      o->macs += llround((double)k->sim.macs * n);
      o->vec_busy += llround((double)k->sim.vec_busy * n);
      o->dma_busy += llround((double)k->sim.dma_busy * n);
      o->dma_bytes += llround((double)k->sim.dma_bytes * n);
      o->insns += llround((double)k->sim.insns * n);
      break;
    }
  }
}

/* The detailed profile of one graph: table, files. */
static int report_one(prof_cmd *pc, const ldmc_graph *g, ldmc_prof_result *r, const char *model) {
  ldmc_profile_report *rep = &r->report, grouped;
  ldmc_profile_report_set_machine(rep, pc->threads, pc->mach.peak_gflops, pc->mach.bandwidth_gbs);
  ldmc_profile_key_fn key = group_key(pc->group);
  if (key) {
    if (ldmc_profile_report_group(rep, key, &grouped) != LDMC_OK) return ldmc_cli_fail(pc->c, "%s", ldmc_last_error());
    if (rep->simulated) group_sim(rep, key, &grouped);
    rep = &grouped;
  }
  if (pc->tpusim)
    printf("profile of graph '%s' (%d nodes; %d after decomposition) on tpusim:%s, simulated (%s): compile %.3f s,\n"
           "  %d warm-up + %d profiled step%s; every time below is simulated (cycles / %.0f MHz)\n",
           g->name ? g->name : "", (int)g->n_nodes, r->ran ? (int)r->ran->n_nodes : 0, pc->tpu_t.name,
           pc->o.tpu_timing_only ? "timing only" : "functional", r->compile_s, pc->o.warmup, rep->steps,
           rep->steps == 1 ? "" : "s", pc->tpu_t.clock_hz * 1e-6);
  else
    printf("profile of graph '%s' (%d nodes) on %s%s, %d thread%s: compile %.3f s, %d warm-up + %d profiled step%s\n",
           g->name ? g->name : "", (int)g->n_nodes, pc->o.be->name, pc->o.bf16 ? " (--bf16)" : "", pc->threads,
           pc->threads == 1 ? "" : "s", r->compile_s, pc->o.warmup, rep->steps, rep->steps == 1 ? "" : "s");
  if (pc->mach.known) printf("machine: %s\n", pc->mach.source);
  if (!r->per_kernel) printf("(the %s backend reports no kernels: each step is one \"run\")\n", pc->o.be->name);
  printf("\n");
  ldmc_profile_print(rep, stdout, pc->top, key != NULL);
  if (pc->o.overhead) {
    printf("profiling overhead: %+.2f%% by median step (%.4f s profiled vs %.4f s unprofiled), %+.2f%% by fastest\n"
           "  (%.4f vs %.4f s), %d steps of each, interleaved\n",
           r->overhead_pct, r->profiled_median_s, r->plain_median_s, r->overhead_min_pct, r->profiled_min_s,
           r->plain_min_s, pc->o.steps);
    double hook_s = r->hook_ns * 1e-9 * (double)rep->calls_per_step;
    printf("  the hook itself: %.0f ns per kernel call x %lld calls = %.3f ms per step (%.3f%% of the median step)\n",
           r->hook_ns, (long long)rep->calls_per_step, hook_s * 1e3,
           rep->step_median_s > 0 ? 100 * hook_s / rep->step_median_s : 0);
  }
  int rc = LDMC_EXIT_OK;
  ldmc_status st = LDMC_OK;
  out_files of = {0};
  const char *csv = out_stage(&of, pc->csv), *json = out_stage(&of, pc->json);
  const char *trace = out_stage(&of, pc->trace), *roofline = out_stage(&of, pc->roofline);
  if (csv) st = ldmc_profile_write_csv(rep, csv);
  if (st == LDMC_OK && json) {
    char *meta = meta_json(pc, r, model);
    st = meta ? ldmc_profile_write_json(rep, meta, json) : ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", json);
    free(meta);
  }
  if (st == LDMC_OK && trace) st = ldmc_profile_write_trace(r->prof, pc->o.be->name, trace);
  if (st == LDMC_OK && roofline) {
    char title[256];
    snprintf(title, sizeof title, "roofline: %s on %s, %d thread%s", g->name ? g->name : "", pc->o.be->name,
             pc->threads, pc->threads == 1 ? "" : "s");
    st = write_roofline(pc, roofline, rep, title);
  }
  if (st == LDMC_OK) st = out_commit(&of);
  if (st != LDMC_OK) rc = out_fail(pc, &of);
  if (rc == LDMC_EXIT_OK) {
    const char *files[4] = {pc->csv, pc->json, pc->trace, pc->roofline};
    for (int i = 0; i < 4; i++)
      if (files[i]) printf("wrote %s\n", files[i]);
  }
  if (key) ldmc_profile_report_free(&grouped);
  return rc;
}

/* ---- the U-Net ---- */
typedef struct width_row {
  int channels;
  ldmc_model_stats s;
  double step_s, gflops_s, pct, intensity, bytes;
  double compile_s, overhead_pct;
  double wall_s;        /* building, compiling and running this width, on this machine */
  ldmc_profile_sim sim; /* tpusim: the counters per step */
} width_row;

/* Timing-only simulation reads no input: every parameter is a view of one
 * read-only mapping of zero pages (never touched, so a 5 GB weight set costs
 * no memory), instead of seeded random weights. */
typedef struct zero_map {
  void *p;
  size_t len;
} zero_map;

static void zero_unmap(void *ctx) {
  zero_map *z = ctx;
  munmap(z->p, z->len);
  free(z);
}

static ldmc_status zero_feed(const ldmc_graph *g, ldmc_tensor_set *feed) {
  memset(feed, 0, sizeof *feed);
  size_t most = 64;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    int64_t n = 0;
    if (p->op == LDMC_OP_PARAMETER && ldmc_shape_numel(&p->shape, ldmc_dtype_size(p->dtype), &n) == LDMC_OK &&
        (size_t)n * ldmc_dtype_size(p->dtype) > most)
      most = (size_t)n * ldmc_dtype_size(p->dtype);
  }
  zero_map *z = calloc(1, sizeof *z);
  if (!z) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  z->len = most;
  z->p = mmap(NULL, most, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (z->p == MAP_FAILED) {
    free(z);
    return ldmc_error(LDMC_ERR_NOMEM, "cannot map %zu bytes of zeros: %s", most, strerror(errno));
  }
  feed->release = zero_unmap;
  feed->release_ctx = z;
  ldmc_status st = LDMC_OK;
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    int64_t n = 0;
    ldmc_shape_numel(&p->shape, ldmc_dtype_size(p->dtype), &n);
    ldmc_tensor t = {.name = strdup(p->attrs.name ? p->attrs.name : ""), .dtype = p->dtype, .shape = p->shape,
                     .data = z->p, .nbytes = (size_t)n * ldmc_dtype_size(p->dtype)};
    st = t.name ? ldmc_tensor_set_add(feed, &t) : ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    if (st != LDMC_OK) free(t.name);
  }
  if (st != LDMC_OK) ldmc_tensor_set_free(feed);
  return st;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ldmc_status unet_feed(const ldmc_graph *g, const char *wpath, uint64_t seed, ldmc_tensor_set *weights,
                             ldmc_tensor_set *feed) {
  LDMC_TRY(ldmc_weights_load(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, wpath, seed, weights));
  /* the data inputs: noise, and timestep 500 (mid-schedule) */
  ldmc_status st = ldmc_prof_feed(g, weights, NULL, NULL, true, seed ^ 0x5eedull, feed);
  int32_t t = ldmc_graph_find_param(g, "timestep");
  ldmc_tensor *ts = ldmc_tensor_set_find(feed, "timestep");
  if (st == LDMC_OK && t >= 0 && ts) {
    int64_t n = 0;
    ldmc_shape_numel(&ts->shape, 0, &n);
    for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(ts, i, 500);
  }
  return st;
}

static int profile_width(prof_cmd *pc, const ldmc_unet_config *base, int ch, bool detailed, width_row *row) {
  ldmc_unet_config cfg = *base;
  cfg.channels = ch;
  memset(row, 0, sizeof *row);
  row->channels = ch;
  ldmc_graph *g = NULL;
  ldmc_tensor_set weights = {0}, feed = {0};
  ldmc_prof_result r = {0};
  int rc = LDMC_EXIT_OK;
  char label[32];
  snprintf(label, sizeof label, "c=%d", ch);
  pc->o.label = label;
  pc->o.n_activation_params = LDMC_UNET_N_INPUTS; /* the rest are weights */
  const char *wpath = ldmc_cli_get(pc->c, "weights");
  int64_t seed = 0;
  ldmc_cli_int(pc->c, "seed", 0, INT64_MAX, &seed);
  double w0 = wall_now();
  bool zeros = pc->tpusim && pc->o.tpu_timing_only;
  if (ldmc_unet_build(&cfg, &g) != LDMC_OK) {
    rc = ldmc_cli_fail(pc->c, "c=%d: building the U-Net: %s", ch, ldmc_last_error());
  } else if (ldmc_stats_compute(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, &row->s) != LDMC_OK ||
             (zeros ? zero_feed(g, &feed) : unet_feed(g, wpath, (uint64_t)seed, &weights, &feed)) != LDMC_OK ||
             ldmc_prof_run(g, &feed, &pc->o, &r) != LDMC_OK) {
    rc = ldmc_cli_fail(pc->c, "c=%d: %s", ch, ldmc_last_error());
  } else {
    const ldmc_profile_report *rep = &r.report;
    row->step_s = rep->step_median_s;
    row->gflops_s = rep->gflops_s;
    row->pct = pc->mach.known && pc->mach.peak_gflops > 0 ? 100 * rep->gflops_s / pc->mach.peak_gflops : 0;
    row->bytes = (double)rep->bytes_per_step;
    row->intensity = rep->bytes_per_step > 0 ? (double)(rep->exec_mac_flops + rep->exec_other_flops) / row->bytes : 0;
    row->compile_s = r.compile_s;
    row->overhead_pct = r.overhead_pct;
    if (rep->simulated) ldmc_profile_report_sim_totals(rep, false, &row->sim);
    row->wall_s = wall_now() - w0;
    if (pc->tpusim && pc->o.progress)
      fprintf(stderr, "ldmc profile: c=%d: %.1f s on this machine (build, compile, %d simulated step%s)\n", ch, row->wall_s,
              pc->o.warmup + pc->o.steps, pc->o.warmup + pc->o.steps == 1 ? "" : "s");
    if (rep->graph_mac_flops != row->s.mac_flops) /* one FLOP count everywhere: a mismatch is a bug */
      rc = ldmc_cli_fail(pc->c, "c=%d: profile counts %lld FLOPs, stats %lld", ch, (long long)rep->graph_mac_flops,
                         (long long)row->s.mac_flops);
    if (rc == LDMC_EXIT_OK && detailed) {
      char model[64];
      snprintf(model, sizeof model, "unet c=%d", ch);
      rc = report_one(pc, g, &r, model);
    }
  }
  ldmc_prof_result_free(&r);
  ldmc_tensor_set_free(&feed);
  ldmc_tensor_set_free(&weights);
  ldmc_graph_free(g);
  return rc;
}

static int family_outputs(prof_cmd *pc, const width_row *rows, int n, const ldmc_unet_config *cfg) {
  if (pc->tpusim)
    printf("U-Net family at latent %lldx%lldx%d, context %dx%d, batch %lld on tpusim:%s (simulated, %s), %d step%s "
           "per width\n",
           (long long)cfg->height, (long long)cfg->width, cfg->in_channels, cfg->context_dim, cfg->context_tokens,
           (long long)cfg->batch, pc->tpu_t.name, pc->o.tpu_timing_only ? "timing only" : "functional", pc->o.steps,
           pc->o.steps == 1 ? "" : "s");
  else
    printf("U-Net family at latent %lldx%lldx%d, context %dx%d, batch %lld on %s, %d thread%s, %d step%s per width\n",
           (long long)cfg->height, (long long)cfg->width, cfg->in_channels, cfg->context_dim, cfg->context_tokens,
           (long long)cfg->batch, pc->o.be->name, pc->threads, pc->threads == 1 ? "" : "s", pc->o.steps,
           pc->o.steps == 1 ? "" : "s");
  if (pc->mach.known)
    printf("peak %.1f GFLOP/s, %s %.1f GB/s: %s\n", pc->mach.peak_gflops, pc->tpusim ? "off chip" : "memory",
           pc->mach.bandwidth_gbs, pc->mach.source);
  if (pc->tpusim) { /* simulated seconds, and how full the matrix units are */
    const ldmc_tpu_target *t = &pc->tpu_t;
    double mpc = (double)ldmc_tpu_target_peak_macs_per_cycle(t);
    printf("%8s %14s %12s %12s %10s %8s %9s %9s %9s %9s %10s %10s %9s\n", "channels", "params", "GFLOPs/step",
           "sim s/step", "GFLOP/s", "% peak", "MAC util", "MXU busy", "VPU busy", "link busy", "norm cost", "norm time",
           "wall s");
    for (int i = 0; i < n; i++) {
      const width_row *w = &rows[i];
      double c = (double)w->sim.cycles;
      printf("%8d %14lld %12.3f %12.6f %10.1f %7.2f%% %8.2f%% %8.2f%% %8.2f%% %8.2f%% %10.3f %10.3f %9.1f\n", w->channels,
             (long long)w->s.params, (double)w->s.mac_flops * 1e-9, w->step_s, w->gflops_s, w->pct,
             c > 0 ? 100 * (double)w->sim.macs / (c * mpc) : 0,
             c > 0 ? 100 * (double)w->sim.mxu_busy / (c * t->mxu_count) : 0, c > 0 ? 100 * (double)w->sim.vec_busy / c : 0,
             c > 0 ? 100 * (double)w->sim.dma_busy / c : 0,
             rows[0].s.mac_flops ? (double)w->s.mac_flops / (double)rows[0].s.mac_flops : 0,
             rows[0].step_s > 0 ? w->step_s / rows[0].step_s : 0, w->wall_s);
    }
    printf("(simulated on one %s core, kernels one after another; MAC util = MACs / (cycles x %d x %dx%d), what\n"
           " under-filled tiles and waiting lose; MXU busy = cycles the units stream rows; wall s = this machine's time\n"
           " for building, compiling and simulating the width)\n",
           t->name, t->mxu_count, t->mxu_rows, t->mxu_cols);
  } else {
    printf("%8s %14s %12s %10s %10s %8s %10s %10s\n", "channels", "params", "GFLOPs/step", "s/step", "GFLOP/s", "% peak",
           "norm cost", "norm time");
    for (int i = 0; i < n; i++) {
      const width_row *w = &rows[i];
      char pct[16] = " unknown"; /* no calibration: unknown, not 0% */
      if (pc->mach.known && pc->mach.peak_gflops > 0) snprintf(pct, sizeof pct, "%7.2f%%", w->pct);
      printf("%8d %14lld %12.3f %10.4f %10.3f %s %10.3f %10.3f\n", w->channels, (long long)w->s.params,
             (double)w->s.mac_flops * 1e-9, w->step_s, w->gflops_s, pct,
             rows[0].s.mac_flops ? (double)w->s.mac_flops / (double)rows[0].s.mac_flops : 0,
             rows[0].step_s > 0 ? w->step_s / rows[0].step_s : 0);
    }
  }
  printf("(norm cost and norm time are relative to c=%d: counted FLOPs against %s seconds)\n", rows[0].channels,
         pc->tpusim ? "simulated" : "measured");
  if (!(pc->mach.known && pc->mach.peak_gflops > 0))
    printf("(%% peak is unknown: the peak was not measured; run `ldmc profile --calibrate` or pass --peak-gflops X)\n");
  if (pc->o.overhead)
    for (int i = 0; i < n; i++)
      printf("profiling overhead at c=%d: %+.2f%% by median step\n", rows[i].channels, rows[i].overhead_pct);
  bool known = pc->mach.known && pc->mach.peak_gflops > 0; /* else % of peak is unknown: empty / null */
  ldmc_status st = LDMC_OK;
  out_files of = {0};
  const char *csv = out_stage(&of, pc->csv), *json = out_stage(&of, pc->json), *roofline = out_stage(&of, pc->roofline);
  if (csv) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f) {
      fprintf(f, "channels,params,gflops_per_step,other_gflops,s_per_step,gflop_s,percent_of_peak,bytes_per_step,"
                 "flop_per_byte,compile_s%s\n",
              pc->tpusim ? ",sim_cycles,mac_percent,mxu_busy_percent,vector_percent,dma_percent,dma_bytes,wall_s" : "");
      for (int i = 0; i < n; i++) {
        char pct[32] = "";
        if (known) snprintf(pct, sizeof pct, "%.4f", rows[i].pct);
        fprintf(f, "%d,%lld,%.6f,%.6f,%.6f,%.4f,%s,%.0f,%.4f,%.4f", rows[i].channels, (long long)rows[i].s.params,
                (double)rows[i].s.mac_flops * 1e-9, (double)rows[i].s.other_flops * 1e-9, rows[i].step_s,
                rows[i].gflops_s, pct, rows[i].bytes, rows[i].intensity, rows[i].compile_s);
        if (pc->tpusim) {
          const ldmc_profile_sim *m = &rows[i].sim;
          double c = m->cycles > 0 ? (double)m->cycles : 1;
          fprintf(f, ",%lld,%.4f,%.4f,%.4f,%.4f,%lld,%.2f", (long long)m->cycles,
                  100 * (double)m->macs / (c * (double)ldmc_tpu_target_peak_macs_per_cycle(&pc->tpu_t)),
                  100 * (double)m->mxu_busy / (c * pc->tpu_t.mxu_count), 100 * (double)m->vec_busy / c,
                  100 * (double)m->dma_busy / c, (long long)m->dma_bytes, rows[i].wall_s);
        }
        fputc('\n', f);
      }
      fclose(f);
    }
    st = buf ? ldmc_file_write_atomic(csv, buf, len) : ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", csv);
    free(buf);
  }
  if (st == LDMC_OK && json) {
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
      json_t *row = json_pack("{s:i,s:I,s:f,s:f,s:f,s:o,s:f,s:f,s:f}", "channels", rows[i].channels,
                                           "params", (json_int_t)rows[i].s.params, "gflops_per_step",
                                           (double)rows[i].s.mac_flops * 1e-9, "s_per_step", rows[i].step_s, "gflop_s",
                                           rows[i].gflops_s, "percent_of_peak",
                                           known ? json_real(rows[i].pct) : json_null(), "bytes_per_step",
                                           rows[i].bytes, "flop_per_byte", rows[i].intensity, "overhead_percent",
                                           rows[i].overhead_pct);
      if (row && pc->tpusim) {
        const ldmc_profile_sim *m = &rows[i].sim;
        double c = m->cycles > 0 ? (double)m->cycles : 1;
        double mpc = (double)ldmc_tpu_target_peak_macs_per_cycle(&pc->tpu_t);
        json_object_set_new(row, "sim", json_pack("{s:I,s:I,s:f,s:f,s:f,s:f,s:I,s:f}", "cycles", (json_int_t)m->cycles,
                                                  "macs", (json_int_t)m->macs, "mac_percent",
                                                  100 * (double)m->macs / (c * mpc),
                                                  "mxu_busy_percent", 100 * (double)m->mxu_busy / (c * pc->tpu_t.mxu_count),
                                                  "vector_percent", 100 * (double)m->vec_busy / c, "dma_percent",
                                                  100 * (double)m->dma_busy / c, "dma_bytes", (json_int_t)m->dma_bytes,
                                                  "wall_s", rows[i].wall_s));
        json_object_set_new(row, "target", json_string(pc->tpu_t.name));
      }
      json_array_append_new(arr, row);
    }
    bool bw_known = pc->mach.known && pc->mach.bandwidth_gbs > 0;
    json_t *root = json_pack("{s:s,s:s,s:i,s:b,s:i,s:o,s:o,s:o}", "model", "unet", "backend", pc->o.be->name,
                             "threads", pc->threads, "bf16", pc->o.bf16, "steps", pc->o.steps, "peak_gflop_s",
                             known ? json_real(pc->mach.peak_gflops) : json_null(), "bandwidth_gb_s",
                             bw_known ? json_real(pc->mach.bandwidth_gbs) : json_null(), "widths", arr);
    char *s = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    st = s ? ldmc_file_write_atomic(json, s, strlen(s)) : ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", json);
    free(s);
  }
  if (st == LDMC_OK && roofline) {
    ldmc_roofline_point pts[MAX_WIDTHS];
    char labels[MAX_WIDTHS][24];
    for (int i = 0; i < n; i++) {
      snprintf(labels[i], sizeof labels[i], "c=%d", rows[i].channels);
      pts[i] = (ldmc_roofline_point){labels[i], labels[i], rows[i].intensity, rows[i].gflops_s, 0.02};
    }
    st = ldmc_roofline_write(roofline, "roofline: U-Net widths, one step each", pc->mach.peak_gflops,
                             pc->mach.bandwidth_gbs, pts, n);
  }
  if (st == LDMC_OK) st = out_commit(&of);
  if (st != LDMC_OK) return out_fail(pc, &of);
  const char *files[3] = {pc->csv, pc->json, pc->roofline};
  for (int i = 0; i < 3; i++)
    if (files[i]) printf("wrote %s\n", files[i]);
  return LDMC_EXIT_OK;
}

static int model_mode(prof_cmd *pc) {
  ldmc_cli_cmd *c = pc->c;
  const char *model = ldmc_cli_get(c, "model"), *init = ldmc_cli_get(c, "init");
  if (strcmp(model, "unet") != 0) return ldmc_cli_usage_error(c, "flag '--model' expects unet, got '%s'", model);
  if (init && strcmp(init, "random") != 0) return ldmc_cli_usage_error(c, "flag '--init' expects random, got '%s'", init);
  if (init && ldmc_cli_has(c, "weights")) return ldmc_cli_usage_error(c, "give --weights or --init random, not both");
  int64_t seed = 0;
  int rc;
  if ((rc = ldmc_cli_int(c, "seed", 0, INT64_MAX, &seed)) != LDMC_CLI_CONTINUE) return rc;
  int widths[MAX_WIDTHS], n = 1;
  widths[0] = LDMC_UNET_CLI_CHANNELS; /* the defaults of tools/run_model.h, as every command */
  const char *chans = ldmc_cli_get(c, "channels");
  if (chans && ldmc_unet_parse_widths(chans, widths, MAX_WIDTHS, &n) != LDMC_OK)
    return ldmc_cli_usage_error(c, "%s", ldmc_last_error());
  ldmc_unet_config cfg;
  if ((rc = ldmc_unet_cli_config(c, LDMC_UNET_CLI_CHANNELS_STR, &cfg)) != LDMC_CLI_CONTINUE) return rc;
  for (int i = 0; i < n; i++) {
    ldmc_unet_config t = cfg;
    t.channels = widths[i];
    if (ldmc_unet_config_check(&t) != LDMC_OK) return ldmc_cli_usage_error(c, "%s", ldmc_last_error());
  }
  if (n > 1 && pc->trace) return ldmc_cli_usage_error(c, "--trace needs a single width (--channels C)");
  if (n > 1 && pc->group) return ldmc_cli_usage_error(c, "--group needs a single width (--channels C)");
  if ((rc = start(pc)) != LDMC_CLI_CONTINUE) return rc;
  if (n == 1) {
    width_row row;
    return profile_width(pc, &cfg, widths[0], true, &row);
  }
  width_row rows[MAX_WIDTHS];
  for (int i = 0; i < n; i++)
    if ((rc = profile_width(pc, &cfg, widths[i], false, &rows[i])) != LDMC_EXIT_OK) return rc;
  return family_outputs(pc, rows, n, &cfg);
}

static int graph_mode(prof_cmd *pc) {
  ldmc_cli_cmd *c = pc->c;
  const char *inputs_path = ldmc_cli_get(c, "inputs");
  int64_t seed = 0;
  int rc = ldmc_cli_int(c, "seed", 0, INT64_MAX, &seed);
  if (rc != LDMC_CLI_CONTINUE || (rc = start(pc)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_module m = {0};
  ldmc_tensor_set inputs = {0}, feed = {0};
  ldmc_prof_result r = {0};
  ldmc_file_kind kind;
  rc = LDMC_EXIT_FAIL;
  if (ldmc_tool_load(c->pos[0], &m, &kind) != LDMC_OK) {
    ldmc_cli_fail(c, "%s", ldmc_last_error());
  } else if (!m.graph) {
    ldmc_cli_fail(c, "%s: %s holds no graph to profile", c->pos[0], ldmc_file_kind_name(kind));
  } else if (inputs_path && ldmc_tool_read_tensors(inputs_path, &inputs) != LDMC_OK) {
    ldmc_cli_fail(c, "%s", ldmc_last_error());
  } else if (ldmc_prof_feed(m.graph, inputs_path ? &inputs : NULL, inputs_path, &m.tensors,
                            ldmc_cli_has(c, "random-inputs"), (uint64_t)seed, &feed) != LDMC_OK ||
             ldmc_prof_run(m.graph, &feed, &pc->o, &r) != LDMC_OK) {
    ldmc_cli_fail(c, "%s", ldmc_last_error());
  } else {
    rc = report_one(pc, m.graph, &r, NULL);
  }
  ldmc_prof_result_free(&r);
  ldmc_tensor_set_free(&feed);
  ldmc_tensor_set_free(&inputs);
  ldmc_module_free(&m);
  return rc;
}

static const char *const k_model_flags[] = {"channels", "latent", "context", "batch", "weights", "init", NULL};

int ldmc_cmd_profile(int argc, char **argv) {
  ldmc_cli_flag flags[] = {
      {"model", "NAME", "profile a built-in model instead of GRAPH (unet)", NULL},
      {"channels", "C[,C...]", "model mode: " LDMC_UNET_HELP_CHANNELS_LIST ";\nseveral give the family table", NULL},
      {"latent", "HxW[xC]", LDMC_UNET_HELP_LATENT, NULL},
      {"context", "DxT", LDMC_UNET_HELP_CONTEXT, NULL},
      {"batch", "B", LDMC_UNET_HELP_BATCH, NULL},
      {"weights", "FILE", "model mode: weights (.safetensors); default --init random", NULL},
      {"init", "random", "model mode: seeded random weights (the default)", NULL},
      {"inputs", "FILE", "GRAPH mode: input tensors (.safetensors) by parameter name", NULL},
      {"random-inputs", NULL, "GRAPH mode: fill parameters nothing provides with seeded noise", NULL},
      {"seed", "S", "seed of random weights and inputs (default 0)", NULL},
      {"target", "NAME", "what executes: llvm-cpu[:scalar|avx2|avx512] (default), interp, or\n"
                         "tpusim[:v1|v4|v5e], the simulated TPU-like core (times are simulated;\n"
                         "default preset $LDMC_TPUSIM_TARGET, else v5e; --bf16 implied)", NULL},
      {"target-file", "FILE", "with --target tpusim: the machine from a JSON target description\n"
                              "(docs/backends/tpusim.md, \"Target file\") instead of a preset", NULL},
      {"sim", "MODE", "tpusim: timing (timing-only: no arithmetic, outputs are zeros; the default\n"
                      "with --model) or functional (computes every result; the default for GRAPH)", NULL},
      {"backend", "NAME", "synonym of --target", NULL},
      {"threads", "N", "threads (default: OpenMP's, OMP_NUM_THREADS)", NULL},
      {"bf16", NULL, "allow bf16 storage with f32 accumulation, as `ldmc run --bf16` (llvm-cpu:\n"
                     "dot_general and convolution operands as bf16 where the CPU has avx512_bf16)", NULL},
      {"steps", "N", "profiled steps (runs) to aggregate (default 3)", NULL},
      {"warmup", "N", "unprofiled runs first (default 1)", NULL},
      {"top", "N", "table rows (default 25; 0: all)", NULL},
      {"group", "BY", "merge table rows: kernel (default), op, name, block (down_blocks.1 ...)\nor scope (the full U-Net module)", NULL},
      {"csv", "FILE", "write the per-kernel (or per-width) table as CSV", NULL},
      {"json", "FILE", "write the profile as JSON", NULL},
      {"trace", "FILE.json", "write a Chrome trace (Perfetto, chrome://tracing): one event per kernel call", NULL},
      {"roofline", "FILE.svg", "write a roofline plot: each kernel (or width) a point under the roofs", NULL},
      {"overhead", NULL, "also time as many unprofiled steps, interleaved, and report the difference", NULL},
      {"calibrate", NULL, "measure this machine's FMA peak and memory bandwidth and cache them", NULL},
      {"no-calibrate", NULL, "do not measure the machine if it has no calibration: no % of peak", NULL},
      {"peak-gflops", "X", "use X GFLOP/s as the peak instead of the calibration", NULL},
      {"bandwidth-gbs", "Y", "use Y GB/s as the memory bandwidth instead of the calibration", NULL},
      {"no-cache", NULL, "llvm-cpu: compile every kernel, neither reading nor writing the on-disk\n"
                         "kernel cache (default: $LDMC_CACHE_DIR, else $XDG_CACHE_HOME/ldmc/kernels,\n"
                         "else ~/.cache/ldmc/kernels; LDMC_CACHE_DIR=off turns it off everywhere)", NULL},
      {"verbose", NULL, "progress on stderr (a line per step; on by default when stderr is a terminal)", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "profile",
      .usage = "GRAPH [--inputs IN.safetensors] [--random-inputs] [options]\n"
               "--model unet --channels C[,C...] [--latent HxWxC] [--context DxT] [--steps N] [options]\n"
               "--calibrate",
      .summary = "Run a graph for a few steps and report, per kernel, time, FLOPs, bytes, GFLOP/s,\n"
                 "GB/s and share of the step, against the machine's measured peak; for several\n"
                 "U-Net widths, parameters, GFLOPs per step and measured seconds side by side.",
      .details = "GFLOPs per step is `ldmc stats`' figure (2 x multiply-adds of convolutions, matmuls and\n"
                 "attention); per-kernel GFLOP/s count all of a kernel's FLOPs. % of peak compares GFLOP/s\n"
                 "per step with the FMA peak measured at the run's thread count (`--calibrate`; cached\n"
                 "in $XDG_CACHE_HOME/ldmc/machine.json or ~/.cache/ldmc/machine.json).\n"
                 "Examples:\n"
                 "  ldmc profile --model unet --channels 64 --latent 32x32x4 --steps 5 --trace t.json\n"
                 "  ldmc profile --model unet --channels 64,128,320 --latent 64x64x4 --context 1024x77 --steps 3\n"
                 "  ldmc profile g.txt --random-inputs --roofline r.svg\n"
                 "See docs/profiling.md.",
      .flags = flags,
      .n_flags = (int)(sizeof flags / sizeof flags[0]),
      .min_pos = 0,
      .max_pos = 1,
  };
  int rc = ldmc_cli_parse(&c, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  prof_cmd pc = {.c = &c};
  int64_t threads = 0, steps = 3, warmup = 1, top = 25;
  if ((rc = ldmc_cli_int(&c, "threads", 1, 4096, &threads)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(&c, "steps", 1, 1000000, &steps)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(&c, "warmup", 0, 1000000, &warmup)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(&c, "top", 0, INT32_MAX, &top)) != LDMC_CLI_CONTINUE) return rc;
  if (threads > 0) omp_set_num_threads((int)threads); /* the interpreter follows OpenMP's setting */
  pc.threads = threads > 0 ? (int)threads : omp_get_max_threads();
  bool model = ldmc_cli_has(&c, "model"), calibrate = ldmc_cli_has(&c, "calibrate");
  if (calibrate && !model && !c.n_pos) return ldmc_prof_calibrate(&c, ldmc_machine_nproc());
  if (model && c.n_pos) return ldmc_cli_usage_error(&c, "give either GRAPH or --model, not both");
  if (!model && !c.n_pos) return ldmc_cli_usage_error(&c, "missing GRAPH, --model NAME or --calibrate (see ldmc profile --help)");
  for (int i = 0; !model && k_model_flags[i]; i++)
    if (ldmc_cli_has(&c, k_model_flags[i]))
      return ldmc_cli_usage_error(&c, "flag '--%s' needs --model", k_model_flags[i]);
  if (model && (ldmc_cli_has(&c, "inputs") || ldmc_cli_has(&c, "random-inputs")))
    return ldmc_cli_usage_error(&c, "--model builds its own inputs (noise); --inputs and --random-inputs are for GRAPH");
  pc.group = ldmc_cli_get(&c, "group");
  if (pc.group && strcmp(pc.group, "kernel") && !group_key(pc.group))
    return ldmc_cli_usage_error(&c, "flag '--group' expects kernel, op, name, block or scope, got '%s'", pc.group);
  pc.csv = ldmc_cli_get(&c, "csv");
  pc.json = ldmc_cli_get(&c, "json");
  pc.trace = ldmc_cli_get(&c, "trace");
  pc.roofline = ldmc_cli_get(&c, "roofline");
  {
    static const char *const csv[] = {".csv", NULL}, *const json[] = {".json", NULL}, *const svg[] = {".svg", NULL};
    const char *const what[] = {"--csv", "--json", "--trace", "--roofline"};
    const char *const paths[] = {pc.csv, pc.json, pc.trace, pc.roofline};
    if ((rc = ldmc_tool_check_output(&c, "--csv", pc.csv, csv)) != LDMC_CLI_CONTINUE ||
        (rc = ldmc_tool_check_output(&c, "--json", pc.json, json)) != LDMC_CLI_CONTINUE ||
        (rc = ldmc_tool_check_output(&c, "--trace", pc.trace, json)) != LDMC_CLI_CONTINUE ||
        (rc = ldmc_tool_check_output(&c, "--roofline", pc.roofline, svg)) != LDMC_CLI_CONTINUE ||
        (rc = ldmc_tool_check_distinct(&c, 4, what, paths)) != LDMC_CLI_CONTINUE)
      return rc;
  }
  pc.top = (int)top;
  const char *bname = ldmc_cli_target_flag(&c, &rc);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *tfile = ldmc_cli_get(&c, "target-file"), *spec = bname;
  if (ldmc_prof_tpusim_target(bname, tfile, &pc.tpusim, &spec, &pc.tpu_t) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
  ldmc_cli_target ct;
  if (spec && ldmc_cli_target_parse(spec, &ct) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "--target %s: %s", bname, ldmc_last_error());
  const char *sim = ldmc_cli_get(&c, "sim");
  if (sim && !pc.tpusim) return ldmc_cli_usage_error(&c, "flag '--sim' needs --target tpusim");
  if (sim && strcmp(sim, "timing") && strcmp(sim, "functional"))
    return ldmc_cli_usage_error(&c, "flag '--sim' expects timing or functional, got '%s'", sim);
  if (pc.tpusim) {
    static const char *const cpu_only[] = {"overhead", "calibrate", "peak-gflops", "bandwidth-gbs", "no-calibrate", NULL};
    for (int i = 0; cpu_only[i]; i++)
      if (ldmc_cli_has(&c, cpu_only[i]))
        return ldmc_cli_usage_error(&c, "flag '--%s' does not apply to tpusim: its times are simulated and its peak "
                                    "is its target's", cpu_only[i]);
    pc.o.tpu_target = &pc.tpu_t;
    pc.o.tpu_timing_only = sim ? strcmp(sim, "timing") == 0 : model;
    if (pc.o.tpu_timing_only && ldmc_cli_has(&c, "weights"))
      return ldmc_cli_usage_error(&c, "--weights has no effect on a timing-only simulation (--sim functional reads them)");
    /* a simulated step is deterministic: one is enough unless asked */
    if (!ldmc_cli_has(&c, "steps")) steps = 1;
    if (!ldmc_cli_has(&c, "warmup")) warmup = 0;
  }
  if (bname && !ct.be) return ldmc_cli_usage_error(&c, "--target %s: planning only, no backend executes it yet", bname);
  pc.o.be = bname ? ct.be : ldmc_backend_find("llvm-cpu");
  if (!pc.o.be) pc.o.be = ldmc_backend_find("interp");
  if (!pc.o.be) return ldmc_cli_fail(&c, "no backend registered");
  pc.o.threads = (int)threads;
  pc.o.steps = (int)steps;
  pc.o.warmup = (int)warmup;
  pc.o.overhead = ldmc_cli_has(&c, "overhead");
  pc.o.no_disk_cache = ldmc_cli_has(&c, "no-cache");
  pc.o.bf16 = ldmc_cli_has(&c, "bf16") || pc.tpusim; /* the matrix units take bf16 inputs */
  pc.o.progress = ldmc_cli_has(&c, "verbose") || isatty(STDERR_FILENO);
  if (calibrate && (rc = ldmc_prof_calibrate(&c, ldmc_machine_nproc())) != LDMC_EXIT_OK) return rc;
  pc.backend_chosen = bname != NULL;
  return model ? model_mode(&pc) : graph_mode(&pc);
}
