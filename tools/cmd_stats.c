/* ldmc stats: parameters, GFLOPs per step and activation memory of model
 * variants, computed from each variant's IR (models/stats.h), plus the kernel
 * count and planned peak memory of the target's pass pipeline (passes/passes.h). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/stats.h"
#include "models/unet.h"
#include "passes/passes.h"
#include "tools/cli_args.h"
#include "tools/cli_target.h"
#include "tools/commands.h"
#include "tools/run_model.h"

#define MAX_WIDTHS 64

typedef struct row {
  int channels;
  ldmc_model_stats s;
  ldmc_plan_stats plan; /* the pipeline of --target over a copy of the graph */
  double norm_cost;
  ldmc_stats_breakdown by_op, by_block;
} row;

/* target NULL: FLOPs only (the reference width's row). */
static ldmc_status measure(const ldmc_unet_config *base, int c, const ldmc_cli_target *target, bool breakdown, row *r) {
  ldmc_unet_config cfg = *base;
  cfg.channels = c;
  memset(r, 0, sizeof *r);
  r->channels = c;
  ldmc_graph *g = NULL;
  LDMC_TRY(ldmc_unet_build(&cfg, &g));
  ldmc_status st = ldmc_stats_compute(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, &r->s);
  if (st == LDMC_OK && target) st = ldmc_cli_target_plan_stats(target, g, LDMC_UNET_N_INPUTS, false, &r->plan);
  if (st == LDMC_OK && breakdown) st = ldmc_stats_by_op(g, &r->by_op);
  if (st == LDMC_OK && breakdown) st = ldmc_stats_by_block(g, &r->by_block);
  ldmc_graph_free(g);
  return st;
}

static void row_free(row *r) {
  ldmc_stats_breakdown_free(&r->by_op);
  ldmc_stats_breakdown_free(&r->by_block);
}

static double gf(int64_t f) { return (double)f / 1e9; }
static double mib(int64_t b) { return (double)b / (1024.0 * 1024.0); }

static void print_breakdown_table(const char *title, const ldmc_stats_breakdown *b, const ldmc_model_stats *s) {
  printf("  by %s:\n    %-22s %12s %12s %7s %7s\n", title, title, "GFLOPs", "other", "share", "nodes");
  double total = (double)(s->mac_flops + s->other_flops);
  for (int i = 0; i < b->n; i++) {
    const ldmc_stats_bucket *k = &b->items[i];
    if (k->mac_flops == 0 && k->other_flops == 0) continue;
    printf("    %-22s %12.3f %12.4f %6.2f%% %7" PRId64 "\n", k->name, gf(k->mac_flops), gf(k->other_flops),
           total > 0 ? 100.0 * (double)(k->mac_flops + k->other_flops) / total : 0.0, k->nodes);
  }
}

static void print_table(const row *rows, int n, const ldmc_unet_config *cfg, int ref, const char *target,
                        bool breakdown) {
  printf("U-Net family at latent %" PRId64 "x%" PRId64 "x%d, context %dx%d, batch %" PRId64
         ", target %s; normalized cost = GFLOPs / GFLOPs(c=%d)\n",
         cfg->height, cfg->width, cfg->in_channels, cfg->context_dim, cfg->context_tokens, cfg->batch, target, ref);
  printf("%8s %15s %12s %12s %12s %16s %8s %16s %10s\n", "channels", "params", "GFLOPs/step", "other GFLOP",
         "act sum MiB", "unfused peak MiB", "kernels", "planned peak MiB", "norm cost");
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    printf("%8d %15" PRId64 " %12.3f %12.3f %12.1f %16.1f %8d %16.2f %10.4f\n", r->channels, r->s.params,
           gf(r->s.mac_flops), gf(r->s.other_flops), mib(r->s.activation_bytes), mib(r->s.peak_activation_bytes),
           (int)r->plan.kernels, mib(r->plan.arena_bytes), r->norm_cost);
  }
  printf("act sum: every intermediate as built, nothing freed or fused. unfused peak: most bytes live\n"
         "at once running the graph as built, op by op in graph order. kernels: after fusion on target %s\n"
         "(prepack included). planned peak: the arena of buffer assignment (= `ldmc compile`).\n",
         target);
  if (!breakdown) return;
  for (int i = 0; i < n; i++) {
    printf("\nc=%d\n", rows[i].channels);
    print_breakdown_table("op", &rows[i].by_op, &rows[i].s);
    print_breakdown_table("block", &rows[i].by_block, &rows[i].s);
  }
}

static void print_csv(const row *rows, int n, bool breakdown) {
  printf("channels,params,gflops_per_step,normalized_cost,other_gflops,activation_sum_mib,unfused_peak_mib,"
         "param_tensors,kernels,prepack_kernels,planned_peak_bytes\n");
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    printf("%d,%" PRId64 ",%.6f,%.6f,%.6f,%.3f,%.3f,%" PRId64 ",%d,%d,%" PRId64 "\n", r->channels, r->s.params,
           gf(r->s.mac_flops), r->norm_cost, gf(r->s.other_flops), mib(r->s.activation_bytes),
           mib(r->s.peak_activation_bytes), r->s.param_tensors, (int)r->plan.kernels, (int)r->plan.prepack_kernels,
           r->plan.arena_bytes);
  }
  if (!breakdown) return;
  printf("\nchannels,kind,name,gflops,other_gflops,nodes\n");
  for (int i = 0; i < n; i++) {
    const ldmc_stats_breakdown *bs[2] = {&rows[i].by_op, &rows[i].by_block};
    const char *kinds[2] = {"op", "block"};
    for (int k = 0; k < 2; k++)
      for (int j = 0; j < bs[k]->n; j++) {
        const ldmc_stats_bucket *b = &bs[k]->items[j];
        printf("%d,%s,%s,%.6f,%.6f,%" PRId64 "\n", rows[i].channels, kinds[k], b->name, gf(b->mac_flops),
               gf(b->other_flops), b->nodes);
      }
  }
}

static json_t *breakdown_json(const ldmc_stats_breakdown *b) {
  json_t *o = json_object();
  for (int i = 0; i < b->n; i++) {
    json_object_set_new(o, b->items[i].name,
                        json_pack("{s:f,s:f,s:I}", "gflops", gf(b->items[i].mac_flops), "other_gflops",
                                  gf(b->items[i].other_flops), "nodes", (json_int_t)b->items[i].nodes));
  }
  return o;
}

static int print_json(const ldmc_cli_cmd *c, const row *rows, int n, const ldmc_unet_config *cfg, int ref,
                      const char *target, bool breakdown) {
  json_t *arr = json_array();
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    json_t *o = json_pack("{s:i,s:I,s:I,s:f,s:f,s:f,s:I,s:I,s:i,s:i,s:I}", "channels", r->channels, "params",
                          (json_int_t)r->s.params, "param_tensors", (json_int_t)r->s.param_tensors,
                          "gflops_per_step", gf(r->s.mac_flops), "normalized_cost", r->norm_cost, "other_gflops",
                          gf(r->s.other_flops), "activation_sum_bytes", (json_int_t)r->s.activation_bytes,
                          "unfused_peak_bytes", (json_int_t)r->s.peak_activation_bytes, "kernels",
                          (int)r->plan.kernels, "prepack_kernels", (int)r->plan.prepack_kernels,
                          "planned_peak_bytes", (json_int_t)r->plan.arena_bytes);
    if (!o) {
      json_decref(arr);
      return ldmc_cli_fail(c, "out of memory writing JSON");
    }
    if (breakdown) {
      json_object_set_new(o, "by_op", breakdown_json(&r->by_op));
      json_object_set_new(o, "by_block", breakdown_json(&r->by_block));
    }
    json_array_append_new(arr, o);
  }
  json_t *root = json_pack("{s:s,s:[I,I,i],s:[i,i],s:I,s:i,s:s,s:o}", "model", "unet", "latent",
                           (json_int_t)cfg->height, (json_int_t)cfg->width, cfg->in_channels, "context",
                           cfg->context_dim, cfg->context_tokens, "batch", (json_int_t)cfg->batch, "reference", ref,
                           "target", target, "widths", arr);
  char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  json_decref(root);
  if (!s) return ldmc_cli_fail(c, "out of memory writing JSON");
  puts(s);
  free(s);
  return LDMC_EXIT_OK;
}

int ldmc_cmd_stats(int argc, char **argv) {
  ldmc_cli_flag flags[] = {
      {"model", "NAME", "model family: unet (the only one so far; default unet)", NULL},
      {"channels", "C[,C...]", LDMC_UNET_HELP_CHANNELS_LIST, NULL},
      {"latent", "HxW[xC]", LDMC_UNET_HELP_LATENT, NULL},
      {"context", "DxT", LDMC_UNET_HELP_CONTEXT, NULL},
      {"batch", "B", LDMC_UNET_HELP_BATCH, NULL},
      {"reference", "C", "width whose GFLOPs normalize the cost; default 320", NULL},
      {"format", "FMT", "table (default), csv or json", NULL},
      {"breakdown", NULL, "also split FLOPs by op kind and by block (down_blocks.0, mid_block, ...)", NULL},
      {"target", "NAME", ldmc_cli_target_help("target of the kernels and planned peak columns"),
       NULL},
      {"backend", "NAME", "synonym of --target", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "stats",
      .usage = "--model unet --channels 64,96,128 [--latent 64x64x4] [--context 1024x77] [--batch B]\n"
               "  [--reference 320] [--target llvm-cpu] [--format table|csv|json] [--breakdown]",
      .summary = "Parameters, GFLOPs per denoising step, activation memory, kernels after fusion and\n"
                 "planned peak memory of U-Net variants, computed from each variant's IR.",
      .details = "Columns (CSV names in brackets):\n"
                 "  params [params, param_tensors]: elements of the weights (inputs excluded).\n"
                 "  GFLOPs/step [gflops_per_step]: 2 x multiply-adds of every convolution, matrix\n"
                 "    product and attention product (QK^T and PV), from the op table's FLOP rules.\n"
                 "  other GFLOP [other_gflops]: elementwise, normalization, softmax, reductions.\n"
                 "  act sum MiB [activation_sum_mib]: every value the step computes, as built, as if\n"
                 "    nothing were freed or fused (the naive sum).\n"
                 "  unfused peak MiB [unfused_peak_mib]: the most bytes live at once when the graph as\n"
                 "    built runs op by op in graph order, each value freed after its last use.\n"
                 "  kernels [kernels, prepack_kernels]: kernels after fusion on --target, prepack\n"
                 "    kernels (weight relayouts run once at load) included, as `ldmc compile` prints.\n"
                 "  planned peak MiB [planned_peak_bytes]: the arena of buffer assignment on --target,\n"
                 "    the planned peak activation memory `ldmc compile` prints.\n"
                 "  norm cost [normalized_cost]: GFLOPs/step / GFLOPs/step at --reference.\n"
                 "The first CSV columns are always channels,params,gflops_per_step,normalized_cost.\n"
                 "See docs/models.md.\n",
      .flags = flags,
      .n_flags = (int)(sizeof flags / sizeof flags[0]),
  };
  int rc = ldmc_cli_parse(&c, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *model = ldmc_cli_get(&c, "model");
  if (model && strcmp(model, "unet") != 0)
    return ldmc_cli_usage_error(&c, "unknown model '%s' (known: unet)", model);
  const char *fmt = ldmc_cli_get(&c, "format");
  if (!fmt) fmt = "table";
  if (strcmp(fmt, "table") && strcmp(fmt, "csv") && strcmp(fmt, "json"))
    return ldmc_cli_usage_error(&c, "flag '--format' expects table, csv or json, got '%s'", fmt);
  int64_t ref = 320;
  if ((rc = ldmc_cli_int(&c, "reference", 2, 1 << 20, &ref)) != LDMC_CLI_CONTINUE) return rc;
  const char *chans = ldmc_cli_get(&c, "channels");
  int widths[MAX_WIDTHS], n = 1;
  widths[0] = LDMC_UNET_CLI_CHANNELS; /* the defaults of tools/run_model.h, as every command */
  if (chans && ldmc_unet_parse_widths(chans, widths, MAX_WIDTHS, &n) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
  ldmc_unet_config cfg;
  if ((rc = ldmc_unet_cli_config(&c, LDMC_UNET_CLI_CHANNELS_STR, &cfg)) != LDMC_CLI_CONTINUE) return rc;
  for (int i = 0; i < n; i++) {
    ldmc_unet_config t = cfg;
    t.channels = widths[i];
    if (ldmc_unet_config_check(&t) != LDMC_OK) return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
  }
  ldmc_unet_config t = cfg;
  t.channels = (int)ref;
  if (ldmc_unet_config_check(&t) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "--reference: %s", ldmc_last_error());

  const char *target = ldmc_cli_target_flag(&c, &rc);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  if (!target) target = "llvm-cpu";
  ldmc_cli_target ct;
  if (ldmc_cli_target_parse(target, &ct) != LDMC_OK) return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
  /* The pipeline of every width would dump into the same files: dumps are
   * `ldmc compile`'s job, so stats ignores LDMC_DUMP_PASSES. */
  unsetenv("LDMC_DUMP_PASSES");
  bool breakdown = ldmc_cli_has(&c, "breakdown");
  row *rows = calloc((size_t)n, sizeof *rows);
  if (!rows) return ldmc_cli_fail(&c, "out of memory");
  int64_t ref_flops = -1;
  int done = 0;
  rc = LDMC_EXIT_OK;
  for (; done < n; done++) {
    if (measure(&cfg, widths[done], &ct, breakdown, &rows[done]) != LDMC_OK) {
      rc = ldmc_cli_fail(&c, "c=%d, target %s: %s", widths[done], target, ldmc_last_error());
      break;
    }
    if (widths[done] == ref) ref_flops = rows[done].s.mac_flops;
  }
  if (rc == LDMC_EXIT_OK && ref_flops < 0) {
    row r;
    if (measure(&cfg, (int)ref, NULL, false, &r) != LDMC_OK)
      rc = ldmc_cli_fail(&c, "reference c=%d: %s", (int)ref, ldmc_last_error());
    ref_flops = r.s.mac_flops;
    row_free(&r);
  }
  if (rc == LDMC_EXIT_OK) {
    for (int i = 0; i < n; i++) rows[i].norm_cost = ref_flops > 0 ? (double)rows[i].s.mac_flops / (double)ref_flops : 0;
    if (strcmp(fmt, "csv") == 0) print_csv(rows, n, breakdown);
    else if (strcmp(fmt, "json") == 0) rc = print_json(&c, rows, n, &cfg, (int)ref, target, breakdown);
    else print_table(rows, n, &cfg, (int)ref, target, breakdown);
  }
  for (int i = 0; i < done && i < n; i++) row_free(&rows[i]);
  if (done < n) row_free(&rows[done]);
  free(rows);
  return rc;
}
