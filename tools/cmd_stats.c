/* ldmc stats: parameters, GFLOPs per step and activation memory of model
 * variants, computed from each variant's IR (models/stats.h), plus the kernel
 * count and planned peak memory of the target's pass pipeline (passes/passes.h). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/stats.h"
#include "models/unet.h"
#include "models/unet_train.h"
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
  ldmc_train_step_stats train; /* --train */
} row;

/* The plan columns of a training step, as `ldmc compile --train` plans it:
 * the state pairing donated (updated in place), nothing a weight. */
static ldmc_status train_plan_stats(const ldmc_cli_target *ct, const ldmc_graph *g, ldmc_plan_stats *out) {
  memset(out, 0, sizeof *out);
  int32_t *donate = malloc((size_t)(g->n_outputs ? g->n_outputs : 1) * sizeof *donate);
  ldmc_graph *c = ldmc_graph_clone(g);
  ldmc_status st = donate && c ? ldmc_train_step_state_pairs(g, donate)
                               : ldmc_error(LDMC_ERR_NOMEM, "stats: out of memory copying graph '%s'", g->name);
  ldmc_pipeline_opts po = {.donate = donate};
  ldmc_compile_opts co = {.donate = donate};
  ldmc_plan *plan = NULL;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  if (st == LDMC_OK) st = ldmc_cli_target_plan(ct, &c, &co, &po, &plan);
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (st == LDMC_OK)
    ldmc_plan_stats_fill(g, c, plan, (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec), out);
  ldmc_plan_free(plan);
  ldmc_graph_free(c);
  free(donate);
  return st;
}

/* target NULL: FLOPs only (the reference width's row). train: the training
 * step graph instead (nothing is a weight: the trained state changes every step). */
static ldmc_status measure(const ldmc_unet_config *base, int c, const ldmc_cli_target *target, bool breakdown,
                           const ldmc_train_opts *train, row *r) {
  ldmc_unet_config cfg = *base;
  cfg.channels = c;
  memset(r, 0, sizeof *r);
  r->channels = c;
  ldmc_graph *g = NULL;
  ldmc_status st;
  if (train) {
    LDMC_TRY(ldmc_unet_train_step_build(&cfg, train, &g));
    st = ldmc_train_step_stats_compute(g, &r->train);
    if (st == LDMC_OK && target) st = train_plan_stats(target, g, &r->plan);
  } else {
    LDMC_TRY(ldmc_unet_build(&cfg, &g));
    st = ldmc_stats_compute(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, &r->s);
    if (st == LDMC_OK && target) st = ldmc_cli_target_plan_stats(target, g, LDMC_UNET_N_INPUTS, false, &r->plan);
  }
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

/* ---- --train: the training step's rows ---- */
static int64_t phase_total(const row *r, ldmc_train_phase p) { return r->train.flops[p].mac + r->train.flops[p].other; }
static double bwd_ratio(const row *r) {
  int64_t f = phase_total(r, LDMC_TRAIN_FORWARD);
  return f > 0 ? (double)phase_total(r, LDMC_TRAIN_BACKWARD) / (double)f : 0.0;
}

static void print_train_table(const row *rows, int n, const ldmc_unet_config *cfg, const ldmc_train_opts *o,
                              const char *target, bool breakdown) {
  printf("U-Net training step (AdamW");
  if (o->clip_norm > 0) printf(", clip %g", o->clip_norm);
  if (o->ema_decay > 0) printf(", EMA %g", o->ema_decay);
  printf(") at latent %" PRId64 "x%" PRId64 "x%d, context %dx%d, batch %" PRId64 ", target %s\n", cfg->height,
         cfg->width, cfg->in_channels, cfg->context_dim, cfg->context_tokens, cfg->batch, target);
  printf("%8s %15s %11s %11s %8s %11s %12s %9s %8s %16s\n", "channels", "params", "fwd GFLOP", "bwd GFLOP", "bwd/fwd",
         "opt GFLOP", "matmul share", "state MiB", "kernels", "planned peak MiB");
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    int64_t all = 0, mac = 0;
    for (int p = 0; p < LDMC_TRAIN_PHASES; p++)
      all += phase_total(r, (ldmc_train_phase)p), mac += r->train.flops[p].mac;
    printf("%8d %15" PRId64 " %11.3f %11.3f %8.3f %11.4f %11.1f%% %9.1f %8d %16.2f\n", r->channels,
           r->train.trained_params, gf(phase_total(r, LDMC_TRAIN_FORWARD)), gf(phase_total(r, LDMC_TRAIN_BACKWARD)),
           bwd_ratio(r), gf(phase_total(r, LDMC_TRAIN_OPTIMIZER)), all > 0 ? 100.0 * (double)mac / (double)all : 0.0,
           mib(r->train.state_bytes), (int)r->plan.kernels, mib(r->plan.arena_bytes));
  }
  printf("fwd: the U-Net and the loss; bwd: the gradient nodes (scope grad.*); opt: clipping, AdamW, EMA\n"
         "(scope optim.*). GFLOP: all FLOPs of the phase (2 x multiply-adds plus elementwise, norms, ...);\n"
         "matmul share: the multiply-add part of the whole step. params: trained weights. state: weights,\n"
         "Adam moments (and EMA) carried between steps. kernels, planned peak: the step's plan on target\n"
         "%s with its state donated (updated in place), as `ldmc compile --model unet --train` prints.\n",
         target);
  if (!breakdown) return;
  for (int i = 0; i < n; i++) {
    ldmc_model_stats s = {.mac_flops = 0};
    for (int p = 0; p < LDMC_TRAIN_PHASES; p++)
      s.mac_flops += rows[i].train.flops[p].mac, s.other_flops += rows[i].train.flops[p].other;
    printf("\nc=%d\n", rows[i].channels);
    print_breakdown_table("op", &rows[i].by_op, &s);
    print_breakdown_table("block", &rows[i].by_block, &s);
  }
}

static void print_train_csv(const row *rows, int n) {
  printf("channels,params,forward_gflops,backward_gflops,optimizer_gflops,backward_forward_ratio,param_tensors,"
         "forward_mac_flops,forward_other_flops,backward_mac_flops,backward_other_flops,optimizer_mac_flops,"
         "optimizer_other_flops,state_bytes,kernels,prepack_kernels,planned_peak_bytes\n");
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    const ldmc_flops *f = r->train.flops;
    printf("%d,%" PRId64 ",%.6f,%.6f,%.6f,%.6f,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
           ",%" PRId64 ",%" PRId64 ",%d,%d,%" PRId64 "\n",
           r->channels, r->train.trained_params, gf(phase_total(r, LDMC_TRAIN_FORWARD)),
           gf(phase_total(r, LDMC_TRAIN_BACKWARD)), gf(phase_total(r, LDMC_TRAIN_OPTIMIZER)), bwd_ratio(r),
           r->train.trained_tensors, f[0].mac, f[0].other, f[1].mac, f[1].other, f[2].mac, f[2].other,
           r->train.state_bytes, (int)r->plan.kernels, (int)r->plan.prepack_kernels, r->plan.arena_bytes);
  }
}

static int print_train_json(const ldmc_cli_cmd *c, const row *rows, int n, const ldmc_unet_config *cfg,
                            const ldmc_train_opts *o, const char *target, bool breakdown) {
  json_t *arr = json_array();
  for (int i = 0; i < n; i++) {
    const row *r = &rows[i];
    json_t *ph = json_object();
    for (int p = 0; p < LDMC_TRAIN_PHASES; p++)
      json_object_set_new(ph, ldmc_train_phase_name((ldmc_train_phase)p),
                          json_pack("{s:I,s:I,s:I}", "mac_flops", (json_int_t)r->train.flops[p].mac, "other_flops",
                                    (json_int_t)r->train.flops[p].other, "nodes", (json_int_t)r->train.nodes[p]));
    json_t *x = json_pack("{s:i,s:I,s:I,s:o,s:f,s:I,s:I,s:I,s:I,s:i,s:i,s:I}", "channels", r->channels, "params",
                          (json_int_t)r->train.trained_params, "param_tensors", (json_int_t)r->train.trained_tensors,
                          "phases", ph, "backward_forward_ratio", bwd_ratio(r), "state_bytes",
                          (json_int_t)r->train.state_bytes, "param_bytes", (json_int_t)r->train.param_bytes,
                          "moment_bytes", (json_int_t)r->train.moment_bytes, "ema_bytes",
                          (json_int_t)r->train.ema_bytes, "kernels", (int)r->plan.kernels, "prepack_kernels",
                          (int)r->plan.prepack_kernels, "planned_peak_bytes", (json_int_t)r->plan.arena_bytes);
    if (!x) {
      json_decref(arr);
      return ldmc_cli_fail(c, "out of memory writing JSON");
    }
    if (breakdown) {
      json_object_set_new(x, "by_op", breakdown_json(&r->by_op));
      json_object_set_new(x, "by_block", breakdown_json(&r->by_block));
    }
    json_array_append_new(arr, x);
  }
  json_t *root = json_pack("{s:s,s:b,s:f,s:f,s:[I,I,i],s:[i,i],s:I,s:s,s:o}", "model", "unet", "train", 1, "clip_norm",
                           o->clip_norm, "ema_decay", o->ema_decay, "latent", (json_int_t)cfg->height,
                           (json_int_t)cfg->width, cfg->in_channels, "context", cfg->context_dim,
                           cfg->context_tokens, "batch", (json_int_t)cfg->batch, "target", target, "widths", arr);
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
      {"train", NULL, "the training step instead of the forward pass: U-Net + MSE loss on epsilon,\n"
                      "backward, AdamW (docs/training.md); FLOPs split into forward, backward and\n"
                      "optimizer, trained parameters, state bytes, the step's kernels and planned peak", NULL},
      {"ema", "DECAY", "with --train: also keep an EMA of the weights, decay in (0, 1) (e.g. 0.9999)", NULL},
      {"clip", "NORM", "with --train: clip gradients to global L2 norm NORM > 0 (e.g. 1.0)", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "stats",
      .usage = "--model unet --channels 64,96,128 [--latent 64x64x4] [--context 1024x77] [--batch B]\n"
               "  [--reference 320] [--target llvm-cpu] [--format table|csv|json] [--breakdown]\n"
               "--model unet --train [--ema DECAY] [--clip NORM] --channels 64,96,128 [model flags] [--target T]\n"
               "  [--format table|csv|json] [--breakdown]",
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
                 "With --train the rows are the training step's (the legend explains the columns; CSV:\n"
                 "channels,params,forward_gflops,backward_gflops,optimizer_gflops,... with the exact FLOP\n"
                 "counts of each phase); --reference does not apply. See docs/models.md, docs/training.md.\n",
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
  bool train = ldmc_cli_has(&c, "train");
  ldmc_train_opts topts = {0};
  if (!train && (ldmc_cli_has(&c, "ema") || ldmc_cli_has(&c, "clip")))
    return ldmc_cli_usage_error(&c, "flag '--%s' needs --train", ldmc_cli_has(&c, "ema") ? "ema" : "clip");
  if (train && ldmc_cli_has(&c, "reference"))
    return ldmc_cli_usage_error(&c, "--reference normalizes forward GFLOPs; it does not apply with --train");
  if (ldmc_unet_train_opts_from_args(ldmc_cli_get(&c, "ema"), ldmc_cli_get(&c, "clip"), &topts) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
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
    if (measure(&cfg, widths[done], &ct, breakdown, train ? &topts : NULL, &rows[done]) != LDMC_OK) {
      rc = ldmc_cli_fail(&c, "c=%d, target %s: %s", widths[done], target, ldmc_last_error());
      break;
    }
    if (widths[done] == ref) ref_flops = rows[done].s.mac_flops;
  }
  if (rc == LDMC_EXIT_OK && train) {
    if (strcmp(fmt, "csv") == 0) print_train_csv(rows, n);
    else if (strcmp(fmt, "json") == 0) rc = print_train_json(&c, rows, n, &cfg, &topts, target, breakdown);
    else print_train_table(rows, n, &cfg, &topts, target, breakdown);
  } else if (rc == LDMC_EXIT_OK) {
    if (ref_flops < 0) {
      row r;
      if (measure(&cfg, (int)ref, NULL, false, NULL, &r) != LDMC_OK)
        rc = ldmc_cli_fail(&c, "reference c=%d: %s", (int)ref, ldmc_last_error());
      ref_flops = r.s.mac_flops;
      row_free(&r);
    }
    if (rc == LDMC_EXIT_OK) {
      for (int i = 0; i < n; i++)
        rows[i].norm_cost = ref_flops > 0 ? (double)rows[i].s.mac_flops / (double)ref_flops : 0;
      if (strcmp(fmt, "csv") == 0) print_csv(rows, n, breakdown);
      else if (strcmp(fmt, "json") == 0) rc = print_json(&c, rows, n, &cfg, (int)ref, target, breakdown);
      else print_table(rows, n, &cfg, (int)ref, target, breakdown);
    }
  }
  for (int i = 0; i < done && i < n; i++) row_free(&rows[i]);
  if (done < n) row_free(&rows[done]);
  free(rows);
  return rc;
}
