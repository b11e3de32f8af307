/* A profile report as a terminal table, CSV and JSON (runtime/profiler.h).
 * Files are written atomically: a partial output never replaces a good one. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/profiler.h"
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
  fprintf(f, "\nper step: %.4f s (median of %d; min %.4f, mean %.4f); kernels %.4f s (%.1f%%), %lld kernel calls\n",
          r->step_median_s, r->steps, r->step_min_s, r->step_mean_s, r->kernel_s_per_step,
          r->step_mean_s > 0 ? 100 * r->kernel_s_per_step / r->step_mean_s : 0, (long long)r->calls_per_step);
  fprintf(f, "GFLOPs per step: %.4f (as `ldmc stats`: convolutions, matmuls, attention) + %.4f other;\n",
          gf(r->graph_mac_flops), gf(r->graph_other_flops));
  fprintf(f, "  the kernels report %.4f + %.4f; they move %.4f GB per step\n", gf(r->exec_mac_flops),
          gf(r->exec_other_flops), (double)r->bytes_per_step * 1e-9);
  fprintf(f, "GFLOP/s per step: %.3f", r->gflops_s);
  if (r->peak_gflops > 0)
    fprintf(f, " = %.2f%% of peak (%.1f GFLOP/s FMA at %d thread%s; memory %.1f GB/s)", r->pct_peak, r->peak_gflops,
            r->threads, r->threads == 1 ? "" : "s", r->bandwidth_gbs);
  else /* not 0%: the peak was not measured (--no-calibrate) */
    fprintf(f, " = unknown %% of peak (peak not measured; `ldmc profile --calibrate` or --peak-gflops X)");
  fputc('\n', f);
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
             "bytes_read,bytes_written,gflop_s,gb_s,flop_per_byte,share\n");
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
    fprintf(f, ",%lld,%lld,%.6f,%.6f,%.6f,%lld,%lld,%lld,%lld,%.4f,%.4f,%.4f,%.6f\n", (long long)k->kernels,
            (long long)k->calls, k->median_s * 1e3, k->min_s * 1e3, k->total_s * 1e3, (long long)k->mac_flops,
            (long long)k->other_flops, (long long)k->bytes_read, (long long)k->bytes_written, k->gflops_s, k->gbytes_s,
            k->intensity, k->share);
  }
  return write_stream(path, &buf, &len, f);
}

/* ---- JSON ---- */
static json_t *kernel_json(const ldmc_profile_kernel *k) {
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
  for (int32_t i = 0; ks && i < r->n_kernels; i++) json_array_append_new(ks, kernel_json(&r->kernels[i]));
  json_object_set_new(root, "graph", json_string(r->graph ? r->graph : ""));
  json_object_set_new(root, "steps", steps);
  json_object_set_new(root, "per_step", totals);
  json_object_set_new(root, "machine", machine);
  json_object_set_new(root, "kernels", ks);
  char *s = steps && totals && machine && ks ? json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
  json_decref(root);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory writing JSON", path);
  size_t n = strlen(s);
  s[n] = '\n'; /* json_dumps' buffer has room for the NUL we replace */
  ldmc_status st = ldmc_file_write_atomic(path, s, n + 1);
  free(s);
  return st;
}
