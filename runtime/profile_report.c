/* A profile report as a terminal table, CSV and JSON (runtime/profiler.h).
 * Files are written atomically: a partial output never replaces a good one. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/profiler_internal.h"
#include "support/fileio.h"

static double gf(int64_t f) { return (double)f * 1e-9; }

/* "down_blocks.1.attentions.0.transformer_blocks.0.attn1" fits in w columns
 * by keeping its end, where the distinguishing parts are. */
static const char *clip(const char *s, int w, char *buf, size_t len) {
  size_t n = strlen(s);
  if ((int)n <= w) return s;
  snprintf(buf, len, "..%s", s + n - (size_t)(w - 2));
  return buf;
}

void ldmc_profiler_step_set_span(ldmc_profiler *p, int64_t start_ns, int64_t end_ns) {
  /* the last step, if it ended: the profiler marks a completed step by end_ns > 0 */
  if (p->n_steps == 0 || p->cur_step >= 0 || end_ns <= start_ns || start_ns < 0) return;
  prof_step *s = &p->steps[p->n_steps - 1];
  if (s->end_ns > 0) *s = (prof_step){.start_ns = start_ns, .end_ns = end_ns};
}

void ldmc_profile_report_sim_totals(const ldmc_profile_report *r, bool grouped, ldmc_profile_sim *out) {
  memset(out, 0, sizeof *out);
  double steps = r->steps > 0 ? r->steps : 1;
  for (int32_t i = 0; i < r->n_kernels; i++) {
    const ldmc_profile_kernel *k = &r->kernels[i];
    double n = grouped ? 1.0 : (double)k->calls / steps; /* calls per step */
    out->cycles += llround((double)k->sim.cycles * n);
    out->mxu_busy += llround((double)k->sim.mxu_busy * n);
    out->macs += llround((double)k->sim.macs * n);
    out->vec_busy += llround((double)k->sim.vec_busy * n);
    out->dma_busy += llround((double)k->sim.dma_busy * n);
    out->dma_bytes += llround((double)k->sim.dma_bytes * n);
    out->insns += llround((double)k->sim.insns * n);
  }
}

static double pct(double a, double b) { return b > 0 ? 100.0 * a / b : 0; }

/* Where a simulated row sits against the target's roofs (cycles-based: exact). */
typedef struct sim_pos {
  double secs, gflops_s, gbs, intensity, pct_flops, pct_bw, pct_roof;
} sim_pos;

static sim_pos sim_position(const ldmc_profile_report *r, const ldmc_profile_kernel *k) {
  sim_pos p = {0};
  double clk = r->sim_target.clock_hz, flops = (double)(k->mac_flops + k->other_flops);
  p.secs = clk > 0 ? (double)k->sim.cycles / clk : 0;
  p.gflops_s = p.secs > 0 ? flops / p.secs * 1e-9 : 0;
  p.gbs = p.secs > 0 ? (double)k->sim.dma_bytes / p.secs * 1e-9 : 0;
  p.intensity = k->sim.dma_bytes > 0 ? flops / (double)k->sim.dma_bytes : 0;
  p.pct_flops = pct(p.gflops_s, r->peak_gflops);
  p.pct_bw = pct(p.gbs, r->bandwidth_gbs);
  double roof = r->peak_gflops;
  if (k->sim.dma_bytes > 0 && p.intensity * r->bandwidth_gbs < roof) roof = p.intensity * r->bandwidth_gbs;
  p.pct_roof = pct(p.gflops_s, roof);
  return p;
}

static void print_sim(const ldmc_profile_report *r, FILE *f, int shown, bool grouped) {
  const ldmc_profile_sim_target *t = &r->sim_target;
  double mx = t->mxus > 0 ? t->mxus : 1;
  fprintf(f, "\nsimulated units on %s (%d matrix units, %lld MACs per cycle, %.0f MHz; peak %.1f GFLOP/s bf16, "
             "%.1f GB/s off chip):\n", t->name, t->mxus, (long long)t->macs_per_cycle, t->clock_hz * 1e-6,
          r->peak_gflops, r->bandwidth_gbs);
  fprintf(f, "%4s  %-16s %-14s %12s %6s %6s %6s %6s %10s %8s %7s %7s %7s\n", "#", grouped ? "group" : "kernel",
          grouped ? "kernels" : "nodes", "cycles", "MXU%", "MAC%", "VPU%", "DMA%", "DMA MB", "FLOP/B", "%FLOP/s",
          "%BW", "%roof");
  for (int i = 0; i < shown; i++) {
    const ldmc_profile_kernel *k = &r->kernels[i];
    char b1[64], b2[64], nk[32];
    double c = (double)k->sim.cycles;
    sim_pos p = sim_position(r, k);
    snprintf(nk, sizeof nk, "%lld", (long long)k->kernels);
    fprintf(f, "%4d  %-16s %-14s %12lld %5.1f%% %5.2f%% %5.1f%% %5.1f%% %10.3f %8.2f %6.2f%% %6.2f%% %6.2f%%\n", i + 1,
            clip(k->name, 16, b1, sizeof b1), grouped ? nk : clip(k->nodes, 14, b2, sizeof b2), (long long)k->sim.cycles,
            pct((double)k->sim.mxu_busy, c * mx), pct((double)k->sim.macs, c * (double)t->macs_per_cycle),
            pct((double)k->sim.vec_busy, c), pct((double)k->sim.dma_busy, c), (double)k->sim.dma_bytes * 1e-6,
            p.intensity, p.pct_flops, p.pct_bw, p.pct_roof);
  }
  ldmc_profile_sim s;
  ldmc_profile_report_sim_totals(r, grouped, &s);
  double c = (double)s.cycles, secs = t->clock_hz > 0 ? c / t->clock_hz : 0;
  fprintf(f, "per step: %lld cycles = %.6g simulated s, %lld instructions; matrix units busy %.1f%%, MAC utilization "
             "%.2f%%;\n  vector unit %.1f%%, link %.1f%%, %.4f GB moved (%.1f%% of the bandwidth)\n",
          (long long)s.cycles, secs, (long long)s.insns, pct((double)s.mxu_busy, c * mx),
          pct((double)s.macs, c * (double)t->macs_per_cycle), pct((double)s.vec_busy, c), pct((double)s.dma_busy, c),
          (double)s.dma_bytes * 1e-9, secs > 0 ? pct((double)s.dma_bytes / secs * 1e-9, r->bandwidth_gbs) : 0);
  fprintf(f, "  (MXU%%: streaming cycles; MAC%%: MACs / (cycles x units x R x C), what under-filled tiles lose;\n"
             "  FLOP/B over the bytes the DMAs moved; %%roof: of min(peak, FLOP/B x bandwidth))\n");
}

void ldmc_profile_print(const ldmc_profile_report *r, FILE *f, int top, bool grouped) {
  int shown = top > 0 && top < r->n_kernels ? top : r->n_kernels;
  if (grouped)
    fprintf(f, "%4s  %-34s %7s %7s %10s %9s %9s %9s %8s %7s\n", "#", "group", "kernels", "calls", "ms/step",
            "GFLOP", "GFLOP/s", "GB/s", "FLOP/B", "share");
  else
    fprintf(f, "%4s  %-16s %-14s %-22s %6s %9s %9s %8s %9s %8s %7s %6s  %s\n", "#", "kernel", "nodes", "ops", "calls",
            "median ms", "min ms", "GFLOP", "GFLOP/s", "GB/s", "FLOP/B", "share", "block");
  for (int i = 0; i < shown; i++) {
    const ldmc_profile_kernel *k = &r->kernels[i];
    char b1[64], b2[64], b3[64];
    double flops = (double)(k->mac_flops + k->other_flops);
    if (grouped)
      fprintf(f, "%4d  %-34s %7lld %7lld %10.3f %9.4f %9.2f %9.2f %8.2f %6.1f%%\n", i + 1, clip(k->name, 34, b1, sizeof b1),
              (long long)k->kernels, (long long)k->calls, k->median_s * 1e3, flops * 1e-9, k->gflops_s, k->gbytes_s,
              k->intensity, 100 * k->share);
    else
      fprintf(f, "%4d  %-16s %-14s %-22s %6lld %9.3f %9.3f %8.4f %9.2f %8.2f %7.2f %5.1f%%  %s\n", i + 1,
              clip(k->name, 16, b1, sizeof b1), clip(k->nodes, 14, b2, sizeof b2), clip(k->ops, 22, b3, sizeof b3),
              (long long)k->calls, k->median_s * 1e3, k->min_s * 1e3, flops * 1e-9, k->gflops_s, k->gbytes_s,
              k->intensity, 100 * k->share, k->scope[0] ? k->scope : "-");
  }
  if (shown < r->n_kernels)
    fprintf(f, "      ... %d more %s (--top 0 shows all)\n", r->n_kernels - shown, grouped ? "groups" : "kernels");
  if (r->simulated)
    fprintf(f, "\nper step: %.6g simulated s (median of %d; min %.6g, mean %.6g); kernels %.6g s (%.1f%%), "
               "%lld kernel calls\n",
            r->step_median_s, r->steps, r->step_min_s, r->step_mean_s, r->kernel_s_per_step,
            r->step_mean_s > 0 ? 100 * r->kernel_s_per_step / r->step_mean_s : 0, (long long)r->calls_per_step);
  else
    fprintf(f, "\nper step: %.4f s (median of %d; min %.4f, mean %.4f); kernels %.4f s (%.1f%%), %lld kernel calls\n",
            r->step_median_s, r->steps, r->step_min_s, r->step_mean_s, r->kernel_s_per_step,
            r->step_mean_s > 0 ? 100 * r->kernel_s_per_step / r->step_mean_s : 0, (long long)r->calls_per_step);
  fprintf(f, "GFLOPs per step: %.4f (as `ldmc stats`: convolutions, matmuls, attention) + %.4f other;\n",
          gf(r->graph_mac_flops), gf(r->graph_other_flops));
  fprintf(f, "  the kernels report %.4f + %.4f; they move %.4f GB per step\n", gf(r->exec_mac_flops),
          gf(r->exec_other_flops), (double)r->bytes_per_step * 1e-9);
  fprintf(f, "GFLOP/s per step: %.3f", r->gflops_s);
  if (r->peak_gflops > 0 && r->simulated)
    fprintf(f, " = %.2f%% of %s's peak (%.1f GFLOP/s bf16; off chip %.1f GB/s), simulated", r->pct_peak,
            r->sim_target.name, r->peak_gflops, r->bandwidth_gbs);
  else if (r->peak_gflops > 0)
    fprintf(f, " = %.2f%% of peak (%.1f GFLOP/s FMA at %d thread%s; memory %.1f GB/s)", r->pct_peak, r->peak_gflops,
            r->threads, r->threads == 1 ? "" : "s", r->bandwidth_gbs);
  else if (r->simulated)
    fprintf(f, " (the target's peak is not known)");
  else /* not 0%: the peak was not measured (--no-calibrate) */
    fprintf(f, " = unknown %% of peak (peak not measured; `ldmc profile --calibrate` or --peak-gflops X)");
  fputc('\n', f);
  if (r->simulated) {
    print_sim(r, f, shown, grouped);
    return;
  }
  if (r->pct_peak > 100)
    fprintf(f, "note: above the calibrated peak, which was probably measured while the machine was busy;\n"
               "  `ldmc profile --calibrate` on a quiet machine measures it again\n");
}

/* ---- CSV ---- */
static void csv_field(FILE *f, const char *s) {
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

/* Closes a memstream (which sets *buf and *len) and writes it out. */
static ldmc_status write_stream(const char *path, char **buf, size_t *len, FILE *mf) {
  fclose(mf);
  ldmc_status st = *buf ? ldmc_file_write_atomic(path, *buf, *len) : ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  free(*buf);
  return st;
}

ldmc_status ldmc_profile_write_csv(const ldmc_profile_report *r, const char *path) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  fprintf(f, "rank,kernel,name,ops,nodes,block,kernels,calls,median_ms,min_ms,total_ms,mac_flops,other_flops,"
             "bytes_read,bytes_written,gflop_s,gb_s,flop_per_byte,share%s\n",
          r->simulated ? ",sim_cycles,sim_insns,mxu_busy_percent,mac_percent,vector_percent,dma_percent,dma_bytes,"
                         "dma_flop_per_byte,percent_peak_flop_s,percent_peak_bandwidth,percent_roof"
                       : "");
  for (int32_t i = 0; i < r->n_kernels; i++) {
    const ldmc_profile_kernel *k = &r->kernels[i];
    fprintf(f, "%d,%d,", i + 1, (int)k->kernel);
    csv_field(f, k->name);
    fputc(',', f);
    csv_field(f, k->ops);
    fputc(',', f);
    csv_field(f, k->nodes);
    fputc(',', f);
    csv_field(f, k->scope);
    fprintf(f, ",%lld,%lld,%.6f,%.6f,%.6f,%lld,%lld,%lld,%lld,%.4f,%.4f,%.4f,%.6f", (long long)k->kernels,
            (long long)k->calls, k->median_s * 1e3, k->min_s * 1e3, k->total_s * 1e3, (long long)k->mac_flops,
            (long long)k->other_flops, (long long)k->bytes_read, (long long)k->bytes_written, k->gflops_s, k->gbytes_s,
            k->intensity, k->share);
    if (r->simulated) {
      double c = (double)k->sim.cycles, mx = r->sim_target.mxus > 0 ? r->sim_target.mxus : 1;
      sim_pos p = sim_position(r, k);
      fprintf(f, ",%lld,%lld,%.4f,%.4f,%.4f,%.4f,%lld,%.4f,%.4f,%.4f,%.4f", (long long)k->sim.cycles,
              (long long)k->sim.insns, pct((double)k->sim.mxu_busy, c * mx),
              pct((double)k->sim.macs, c * (double)r->sim_target.macs_per_cycle), pct((double)k->sim.vec_busy, c),
              pct((double)k->sim.dma_busy, c), (long long)k->sim.dma_bytes, p.intensity, p.pct_flops, p.pct_bw,
              p.pct_roof);
    }
    fputc('\n', f);
  }
  return write_stream(path, &buf, &len, f);
}

/* ---- JSON ---- */
static json_t *kernel_json_plain(const ldmc_profile_kernel *k);

static json_t *sim_json(const ldmc_profile_report *r, const ldmc_profile_sim *s, const sim_pos *p) {
  double c = (double)s->cycles, mx = r->sim_target.mxus > 0 ? r->sim_target.mxus : 1;
  json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f}", "cycles", (json_int_t)s->cycles, "insns",
                        (json_int_t)s->insns, "mxu_busy_cycles", (json_int_t)s->mxu_busy, "macs", (json_int_t)s->macs,
                        "vector_busy_cycles", (json_int_t)s->vec_busy, "dma_busy_cycles", (json_int_t)s->dma_busy,
                        "dma_bytes", (json_int_t)s->dma_bytes, "mxu_busy_percent", pct((double)s->mxu_busy, c * mx),
                        "mac_percent", pct((double)s->macs, c * (double)r->sim_target.macs_per_cycle),
                        "vector_percent", pct((double)s->vec_busy, c), "dma_percent", pct((double)s->dma_busy, c));
  if (o && p) {
    json_object_set_new(o, "seconds", json_real(p->secs));
    json_object_set_new(o, "gflop_s", json_real(p->gflops_s));
    json_object_set_new(o, "dma_gb_s", json_real(p->gbs));
    json_object_set_new(o, "dma_flop_per_byte", json_real(p->intensity));
    json_object_set_new(o, "percent_peak_flop_s", json_real(p->pct_flops));
    json_object_set_new(o, "percent_peak_bandwidth", json_real(p->pct_bw));
    json_object_set_new(o, "percent_roof", json_real(p->pct_roof));
  }
  return o;
}

static json_t *kernel_json(const ldmc_profile_report *r, const ldmc_profile_kernel *k) {
  json_t *o = kernel_json_plain(k);
  if (o && r->simulated) {
    sim_pos p = sim_position(r, k);
    json_object_set_new(o, "sim", sim_json(r, &k->sim, &p));
  }
  return o;
}

static json_t *kernel_json_plain(const ldmc_profile_kernel *k) {
  return json_pack("{s:i,s:s,s:s,s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f}", "kernel", (int)k->kernel,
                   "name", k->name, "ops", k->ops, "nodes", k->nodes, "block", k->scope, "kernels",
                   (json_int_t)k->kernels, "calls", (json_int_t)k->calls, "median_s", k->median_s, "min_s", k->min_s,
                   "total_s", k->total_s, "mac_flops", (json_int_t)k->mac_flops, "other_flops",
                   (json_int_t)k->other_flops, "bytes_read", (json_int_t)k->bytes_read, "bytes_written",
                   (json_int_t)k->bytes_written, "gflop_s", k->gflops_s, "gb_s", k->gbytes_s, "flop_per_byte",
                   k->intensity, "share", k->share);
}

ldmc_status ldmc_profile_write_json(const ldmc_profile_report *r, const char *meta, const char *path) {
  json_t *root = NULL;
  if (meta) {
    json_error_t err;
    root = json_loads(meta, 0, &err);
    if (!json_is_object(root)) {
      json_decref(root);
      return ldmc_error(LDMC_ERR_INTERNAL, "%s: bad metadata object: %s", path, err.text);
    }
  } else {
    root = json_object();
  }
  json_t *steps = json_pack("{s:i,s:f,s:f,s:f,s:f}", "count", r->steps, "median_s", r->step_median_s, "min_s",
                            r->step_min_s, "mean_s", r->step_mean_s, "kernel_s", r->kernel_s_per_step);
  json_t *totals = json_pack(
      "{s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "graph_mac_flops", (json_int_t)r->graph_mac_flops, "graph_other_flops",
      (json_int_t)r->graph_other_flops, "kernel_mac_flops", (json_int_t)r->exec_mac_flops, "kernel_other_flops",
      (json_int_t)r->exec_other_flops, "bytes", (json_int_t)r->bytes_per_step, "kernel_calls",
      (json_int_t)r->calls_per_step, "gflops_per_step", gf(r->graph_mac_flops), "gflop_s", r->gflops_s);
  /* unknown figures (no calibration) are null, not 0 */
  json_t *machine = json_pack("{s:i,s:o,s:o,s:o}", "threads", r->threads, "peak_gflop_s",
                              r->peak_gflops > 0 ? json_real(r->peak_gflops) : json_null(), "bandwidth_gb_s",
                              r->bandwidth_gbs > 0 ? json_real(r->bandwidth_gbs) : json_null(), "percent_of_peak",
                              r->peak_gflops > 0 ? json_real(r->pct_peak) : json_null());
  json_t *ks = json_array();
  for (int32_t i = 0; ks && i < r->n_kernels; i++) json_array_append_new(ks, kernel_json(r, &r->kernels[i]));
  json_object_set_new(root, "graph", json_string(r->graph ? r->graph : ""));
  json_object_set_new(root, "steps", steps);
  json_object_set_new(root, "per_step", totals);
  json_object_set_new(root, "machine", machine);
  json_object_set_new(root, "kernels", ks);
  if (r->simulated) { /* the target and the per-step counters */
    ldmc_profile_sim tot;
    ldmc_profile_report_sim_totals(r, r->n_kernels > 0 && r->kernels[0].kernel < 0, &tot);
    json_t *sim = sim_json(r, &tot, NULL);
    json_object_set_new(sim, "target", json_string(r->sim_target.name));
    json_object_set_new(sim, "clock_hz", json_real(r->sim_target.clock_hz));
    json_object_set_new(sim, "matrix_units", json_integer(r->sim_target.mxus));
    json_object_set_new(sim, "macs_per_cycle", json_integer(r->sim_target.macs_per_cycle));
    double secs = r->sim_target.clock_hz > 0 ? (double)tot.cycles / r->sim_target.clock_hz : 0;
    json_object_set_new(sim, "seconds", json_real(secs));
    json_object_set_new(root, "simulated", sim);
  }
  char *s = steps && totals && machine && ks ? json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
  json_decref(root);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory writing JSON", path);
  size_t n = strlen(s);
  s[n] = '\n'; /* json_dumps' buffer has room for the NUL we replace */
  ldmc_status st = ldmc_file_write_atomic(path, s, n + 1);
  free(s);
  return st;
}
