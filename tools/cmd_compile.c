/* ldmc compile: runs a target's pass pipeline over a model (or a graph file)
 * and prints the kernels after fusion and the planned peak activation memory. */
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "backends/tpusim/tpusim.h"
#include "models/unet.h"
#include "models/unet_train.h"
#include "passes/passes.h"
#include "support/fileio.h"
#include "tools/cli_args.h"
#include "tools/cli_io.h"
#include "tools/cli_target.h"
#include "tools/commands.h"
#include "tools/profile_run.h"
#include "tools/run_model.h"

static double mib(int64_t b) { return (double)b / (1024.0 * 1024.0); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void print_kernel_summary(const ldmc_plan *p, const ldmc_graph *g, bool all) {
  /* histogram of fused op sequences, most frequent first */
  printf("kernels after fusion: %d\n", (int)p->n_kernels);
  int32_t per_kind[LDMC_KERNEL_KIND_COUNT] = {0};
  for (int32_t k = 0; k < p->n_kernels; k++) per_kind[p->kernels[k].kind]++;
  for (int c = 0; c < LDMC_KERNEL_KIND_COUNT; c++)
    if (per_kind[c]) printf("  %-12s %d\n", ldmc_kernel_kind_name((ldmc_kernel_kind)c), (int)per_kind[c]);
  if (all) {
    char *text = ldmc_plan_print(p, g);
    if (text) fputs(text, stdout);
    free(text);
    return;
  }
  /* distinct patterns with counts */
  typedef struct pat { char *s; int n; } pat;
  pat *pats = calloc((size_t)p->n_kernels + 1, sizeof *pats);
  int np = 0;
  if (!pats) return;
  for (int32_t k = 0; k < p->n_kernels; k++) {
    const ldmc_kernel *kr = &p->kernels[k];
    size_t len = 32;
    for (int32_t j = 0; j < kr->n_nodes; j++) len += strlen(ldmc_op_name(g->nodes[kr->nodes[j]].op)) + 1;
    char *s = malloc(len);
    if (!s) break;
    int w = snprintf(s, len, "%s:", ldmc_kernel_kind_name(kr->kind));
    for (int32_t j = 0; j < kr->n_nodes; j++) w += snprintf(s + w, len - (size_t)w, " %s", ldmc_op_name(g->nodes[kr->nodes[j]].op));
    int f = -1;
    for (int q = 0; q < np && f < 0; q++)
      if (strcmp(pats[q].s, s) == 0) f = q;
    if (f >= 0) {
      pats[f].n++;
      free(s);
    } else {
      pats[np++] = (pat){s, 1};
    }
  }
  for (int a = 1; a < np; a++)
    for (int b = a; b > 0 && pats[b - 1].n < pats[b].n; b--) {
      pat t = pats[b];
      pats[b] = pats[b - 1];
      pats[b - 1] = t;
    }
  printf("fused patterns (count  kind: ops):\n");
  for (int q = 0; q < np; q++) {
    printf("  %5d  %s\n", pats[q].n, pats[q].s);
    free(pats[q].s);
  }
  free(pats);
}

/* mkdir -p: the dump folder is made on demand, as XLA's --xla_dump_to does. */
static int make_dirs(const ldmc_cli_cmd *c, const char *dir) {
  if (ldmc_make_dirs(dir, 0777) != LDMC_OK) return ldmc_cli_fail(c, "dump folder: %s", ldmc_last_error());
  return LDMC_CLI_CONTINUE;
}

/* Checks the dump flags: a bad regex is a usage error. With create, also makes
 * the folder (called once the graph is built, so usage errors leave none). */
static int check_dumps(const ldmc_cli_cmd *c, bool create) {
  const char *regex = ldmc_cli_get(c, "dump-passes"), *from = "--dump-passes";
  if (!regex) {
    regex = getenv("LDMC_DUMP_PASSES");
    from = "LDMC_DUMP_PASSES";
  }
  if (!regex || !*regex) {
    if (ldmc_cli_has(c, "dump-dir"))
      return ldmc_cli_usage_error(c, "--dump-dir needs --dump-passes REGEX (or LDMC_DUMP_PASSES); '.*' dumps every pass");
    return LDMC_CLI_CONTINUE;
  }
  regex_t re;
  int rc = regcomp(&re, regex, REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char msg[128];
    regerror(rc, &re, msg, sizeof msg);
    return ldmc_cli_usage_error(c, "%s '%s': %s", from, regex, msg);
  }
  regfree(&re);
  if (!create) return LDMC_CLI_CONTINUE;
  const char *dir = ldmc_cli_get(c, "dump-dir");
  if (!dir) dir = getenv("LDMC_DUMP_DIR");
  return dir && *dir ? make_dirs(c, dir) : LDMC_CLI_CONTINUE;
}

/* A temporary name next to path (same folder, so rename is atomic), created
 * empty; NULL with errno set on failure. */
static char *temp_beside(const char *path) {
  size_t n = strlen(path) + 16;
  char *t = malloc(n);
  if (!t) return NULL;
  snprintf(t, n, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(t);
  if (fd < 0) {
    free(t);
    return NULL;
  }
  mode_t mask = umask(0); /* mkstemp makes 0600; give the file the usual mode */
  umask(mask);
  if (fchmod(fd, 0666 & ~mask) != 0) { /* harmless: the file stays private */
  }
  close(fd);
  return t;
}

/* FILE with its extension replaced by .h (or .h appended). */
static char *header_for(const char *path) {
  size_t n = strlen(path);
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  if (dot && (!slash || dot > slash + 1) && dot != path) n = (size_t)(dot - path);
  char *h = malloc(n + 3);
  if (h) snprintf(h, n + 3, "%.*s.h", (int)n, path);
  return h;
}

/* --emit: the graph as built through ldmc_llvm_cpu_emit, written under
 * temporary names and renamed into place only when everything succeeded. */
static int emit_aot(const ldmc_cli_cmd *c, const ldmc_graph *g, int64_t n_act, ldmc_llvm_cpu_emit_kind kind, const char *path,
                    const char *header, const char *entry) {
  char *tmp = temp_beside(path), *htmp = NULL;
  int rc = LDMC_EXIT_OK;
  if (!tmp) return ldmc_cli_fail(c, "cannot write '%s': %s", path, strerror(errno));
  if (header && !(htmp = temp_beside(header))) {
    rc = ldmc_cli_fail(c, "cannot write header '%s': %s", header, strerror(errno));
    goto done;
  }
  ldmc_compile_opts opts = {.params_are_weights = n_act >= 0, .n_activation_params = (int32_t)(n_act < 0 ? 0 : n_act),
                            .bf16 = ldmc_cli_has(c, "bf16")};
  double t0 = now_s();
  if (ldmc_llvm_cpu_emit(g, &opts, kind, tmp, htmp, entry) != LDMC_OK) {
    /* the message names the temporary path; name the real one instead */
    rc = ldmc_cli_fail(c, "emitting '%s' for graph '%s': %s", path, g->name ? g->name : "", ldmc_last_error());
    goto done;
  }
  if (htmp && rename(htmp, header) != 0) {
    rc = ldmc_cli_fail(c, "cannot write header '%s': %s", header, strerror(errno));
    goto done;
  }
  if (rename(tmp, path) != 0) {
    rc = ldmc_cli_fail(c, "cannot write '%s': %s", path, strerror(errno));
    if (header) unlink(header);
    goto done;
  }
  printf("emitted %s%s%s in %.3f s\n", path, header ? " and header " : "", header ? header : "", now_s() - t0);
done:
  if (tmp) unlink(tmp); /* no-ops after a successful rename */
  if (htmp) unlink(htmp);
  free(tmp);
  free(htmp);
  return rc;
}

/* --emit asm on tpusim: every kernel's instruction stream as disassembly
 * (docs/backends/tpusim.md, "Disassembly"), each under a header line naming
 * its node; written under a temporary name, renamed only on success. The
 * graph is compiled as built with bf16 matrix inputs (what the units take)
 * and timing-only buffers (nothing is allocated for values). */
static int emit_tpusim_asm(const ldmc_cli_cmd *c, const ldmc_graph *g, int64_t n_act, const ldmc_tpu_target *t,
                           const char *path) {
  char *tmp = temp_beside(path);
  if (!tmp) return ldmc_cli_fail(c, "cannot write '%s': %s", path, strerror(errno));
  ldmc_compile_opts opts = {.params_are_weights = n_act >= 0, .n_activation_params = (int32_t)(n_act < 0 ? 0 : n_act),
                            .bf16 = true};
  double t0 = now_s();
  ldmc_executable *e = NULL;
  int rc = LDMC_EXIT_OK;
  FILE *f = NULL;
  if (ldmc_tpusim_compile_mode(g, &opts, t, LDMC_TPU_SIM_TIMING_ONLY, &e) != LDMC_OK) {
    rc = ldmc_cli_fail(c, "compiling graph '%s' for tpusim: %s", g->name ? g->name : "", ldmc_last_error());
    goto done;
  }
  if (!(f = fopen(tmp, "w"))) {
    rc = ldmc_cli_fail(c, "cannot write '%s': %s", path, strerror(errno));
    goto done;
  }
  const ldmc_graph *eg = e->graph; /* decomposed: the nodes the kernels compute */
  int nk = ldmc_tpusim_kernel_count(e);
  uint64_t insns = 0;
  for (int i = 0; i < nk; i++) {
    ldmc_tpusim_kernel k;
    if (ldmc_tpusim_kernel_get(e, i, &k) == LDMC_OK) insns += k.program->count;
  }
  fprintf(f, "; tpusim asm of graph '%s' for target %s (%d matrix units of %dx%d, %.0f MHz): %d kernels, %llu "
             "instructions\n; the graph after decomposition has %d nodes; one kernel per node, run in this order\n",
          g->name ? g->name : "", t->name, t->mxu_count, t->mxu_rows, t->mxu_cols, t->clock_hz * 1e-6, nk,
          (unsigned long long)insns, (int)eg->n_nodes);
  ldmc_status st = LDMC_OK;
  for (int i = 0; i < nk && st == LDMC_OK; i++) {
    ldmc_tpusim_kernel k;
    if ((st = ldmc_tpusim_kernel_get(e, i, &k)) != LDMC_OK) break;
    const ldmc_node *n = &eg->nodes[k.node];
    char shape[160];
    fprintf(f, "\n; kernel %d: %%%d %s %s%s", i, (int)k.node, ldmc_op_name(n->op), ldmc_dtype_name(n->dtype),
            ldmc_shape_str(&n->shape, shape, sizeof shape));
    if (n->scope && n->scope[0]) fprintf(f, " [%s]", n->scope);
    if (k.n_nodes > 1) { /* a fused chain: every node it computes on chip, root last */
      fprintf(f, "; fuses ");
      for (int j = 0; j < k.n_nodes; j++) fprintf(f, "%s%%%d", j ? "," : "", (int)k.nodes[j]);
    }
    fprintf(f, "; %s; %zu instructions; buffers", k.tiles[0] ? k.tiles : "no tiles", k.program->count);
    for (int b = 0; b < k.mem.count; b++)
      fprintf(f, "%s buf%d=%%%d (%llu B)", b ? "," : "", b, (int)k.buf_nodes[b], (unsigned long long)k.mem.buf[b].bytes);
    fputc('\n', f);
    st = ldmc_tpu_program_disasm(k.program, f);
  }
  if (st == LDMC_OK && ferror(f)) st = ldmc_error(LDMC_ERR_IO, "writing '%s'", path);
  if (fclose(f) != 0 && st == LDMC_OK) st = ldmc_error(LDMC_ERR_IO, "writing '%s': %s", path, strerror(errno));
  f = NULL;
  if (st != LDMC_OK) {
    rc = ldmc_cli_fail(c, "%s", ldmc_last_error());
    goto done;
  }
  if (rename(tmp, path) != 0) {
    rc = ldmc_cli_fail(c, "cannot write '%s': %s", path, strerror(errno));
    goto done;
  }
  printf("emitted %s: tpusim asm for %s, %d kernels, %llu instructions, in %.3f s\n", path, t->name, nk,
         (unsigned long long)insns, now_s() - t0);
done:
  if (f) fclose(f);
  ldmc_executable_free(e);
  unlink(tmp); /* a no-op after a successful rename */
  free(tmp);
  return rc;
}

/* --train: where the step's work and state are, from the step graph as built. */
static void print_train_summary(const ldmc_train_step_stats *ts, const ldmc_train_opts *o, int64_t batch) {
  printf("training step: AdamW (lr and step are inputs), clip ");
  if (o->clip_norm > 0) printf("%g", o->clip_norm);
  else printf("none");
  printf(", EMA ");
  if (o->ema_decay > 0) printf("%g", o->ema_decay);
  else printf("none");
  printf("; batch %" PRId64 "\n", batch);
  const ldmc_flops *f = ts->flops;
  double fwd = (double)(f[LDMC_TRAIN_FORWARD].mac + f[LDMC_TRAIN_FORWARD].other);
  for (int p = 0; p < LDMC_TRAIN_PHASES; p++) {
    double tot = (double)(f[p].mac + f[p].other);
    printf("  %-9s %12.4f GFLOP (%.4f multiply-add, %.4f other), %" PRId64 " nodes",
           ldmc_train_phase_name((ldmc_train_phase)p), tot / 1e9, (double)f[p].mac / 1e9, (double)f[p].other / 1e9, ts->nodes[p]);
    if (p != LDMC_TRAIN_FORWARD && fwd > 0) printf(", %.3fx forward", tot / fwd);
    printf("\n");
  }
  printf("  (forward: the U-Net and the loss; backward: scope grad.*; optimizer: scope optim.*; as built)\n");
  printf("trained parameters: %" PRId64 " in %" PRId64 " tensors\n", ts->trained_params, ts->trained_tensors);
  printf("state between steps: %" PRId64 " bytes (%.2f MiB) = weights %.2f + Adam moments %.2f + EMA %.2f MiB\n",
         ts->state_bytes, mib(ts->state_bytes), mib(ts->param_bytes), mib(ts->moment_bytes), mib(ts->ema_bytes));
}

int ldmc_cmd_compile(int argc, char **argv) {
  ldmc_cli_flag flags[] = {
      {"model", "NAME", "built-in model to compile: unet", NULL},
      {"channels", "C", LDMC_UNET_HELP_CHANNELS, NULL},
      {"latent", "HxW[xC]", LDMC_UNET_HELP_LATENT, NULL},
      {"context", "DxT", LDMC_UNET_HELP_CONTEXT, NULL},
      {"batch", "B", LDMC_UNET_HELP_BATCH, NULL},
      {"target", "NAME", ldmc_cli_target_help("target to compile for"), NULL},
      {"target-file", "FILE", "with --target tpusim: the machine from a JSON target description\n"
                              "(docs/backends/tpusim.md) instead of a preset (tpusim:v1|v4|v5e)", NULL},
      {"backend", "NAME", "synonym of --target", NULL},
      {"bf16", NULL, "allow bf16 storage with f32 accumulation (llvm-cpu: GEMM and convolution\n"
                     "operands as bf16 pairs on avx512_bf16); applies to the plan and to --emit", NULL},
      {"dump-passes", "REGEX", "dump the IR after every pass whose name matches (POSIX extended regex;\n"
                               "'input' is the graph before the first pass, '.*' dumps all)", NULL},
      {"dump-dir", "DIR", "where dumps go, created if missing (default: $LDMC_DUMP_DIR or .);\n"
                          "needs --dump-passes or LDMC_DUMP_PASSES", NULL},
      {"pass-stats", NULL, "log each pass run: wall time and node-count change", NULL},
      {"verify-each", NULL, "run the verifier after every pass (always on in debug builds)", NULL},
      {"kernels", NULL, "list every kernel (order, fused ops, inputs, tile, arena offset)", NULL},
      {"threads", "N", "threads the executing backend plans for, as `ldmc run --threads N` runs\n"
                       "(llvm-cpu: tiles and per-thread scratch; default: OpenMP's thread count)", NULL},
      {"out", "FILE", "write the optimized graph (text IR or .ldmc by extension);\n"
                      "with --emit, the emitted file instead (-o FILE is the same)", NULL},
      {"emit", "obj|asm|llvm", "also compile the graph as built with the llvm-cpu backend (which runs\n"
                               "the cpu-nchw pipeline itself) into one object file, assembly or\n"
                               "LLVM IR at --out (written only on success); with --target tpusim[:PRESET],\n"
                               "asm only: every kernel's instruction stream, disassembled", NULL},
      {"header", "FILE.h", "with --emit: the C header declaring the entry point (default for obj:\n"
                           "--out with its extension replaced by .h)", NULL},
      {"entry", "NAME", "with --emit: the entry point's name (default: the graph name)", NULL},
      {"activation-params", "N", "only the first N parameters change between runs; later ones are weights\n"
                                 "(kernels reading only weights are prepacked once). Default: 3 for the U-Net\n"
                                 "(sample, timestep, context), all parameters for a FILE and with --train", NULL},
      {"train", NULL, "with --model unet: compile the training step instead of the forward pass:\n"
                      "the U-Net, loss mean((unet(noisy_sample, t, ctx) - target)^2), backward, AdamW\n"
                      "(docs/training.md), planned with its state donated (updated in place). Also\n"
                      "prints the FLOPs of forward, backward and optimizer, the trained parameters\n"
                      "and the state bytes (weights + 2 Adam moments [+ EMA])", NULL},
      {"ema", "DECAY", "with --train: also keep an EMA of the weights, decay in (0, 1) (e.g. 0.9999)", NULL},
      {"clip", "NORM", "with --train: clip gradients to global L2 norm NORM > 0 (e.g. 1.0)", NULL},
      {"memory-budget", "BYTES", "rematerialize: recompute activations for their late readers (the backward\n"
                                 "pass) instead of keeping them, until the planned peak fits BYTES (a count, or\n"
                                 "with K, M, G: KiB, MiB, GiB); prints the peak before and after and the extra\n"
                                 "FLOPs. A budget that cannot be met is reported, not an error", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "compile",
      .usage = "--model unet [--channels C --latent HxW[xC] --context DxT --batch B] [--target NAME] [options]\n"
               "--model unet --train [--ema DECAY] [--clip NORM] [model flags] [--target NAME] [options]\n"
               "FILE [--target NAME] [options]",
      .summary = "Run the target's pass pipeline (simplify, fold, CSE, DCE, attention, decompose, layout,\n"
                 "fusion, tiling, scheduling, buffer assignment) and print the kernels after fusion\n"
                 "and the planned peak activation memory.",
      .details = "FILE is a text IR or .ldmc graph. Environment: LDMC_DUMP_PASSES, LDMC_DUMP_DIR\n"
                 "(the flags win). Dumps are DIR/NNN-<pass>.txt (text IR, plan as # comments) and .dot.\n"
                 "Example: ldmc compile --model unet --channels 64 --dump-passes 'fusion|buffers' --dump-dir /tmp/d\n"
                 "Ahead of time: ldmc compile axpy.txt --emit obj -o axpy.o   (also writes axpy.h declaring\n"
                 "  void axpy(const void *const *inputs, void *const *outputs, void *workspace)\n"
                 "  and axpy_WORKSPACE_BYTES; inputs in parameter order, outputs in output order).\n",
      .flags = flags,
      .n_flags = (int)(sizeof flags / sizeof flags[0]),
      .min_pos = 0,
      .max_pos = 1,
  };
  /* -o FILE is --out FILE (the parser takes long flags only) */
  char **args = malloc(((size_t)argc + 1) * sizeof *args);
  if (!args) return ldmc_cli_fail(&c, "out of memory");
  for (int i = 0, ended = 0; i < argc; i++) {
    ended = ended || strcmp(argv[i], "--") == 0;
    args[i] = !ended && i > 0 && strcmp(argv[i], "-o") == 0 ? "--out" : argv[i];
  }
  args[argc] = NULL;
  int rc = ldmc_cli_parse(&c, argc, args);
  free(args);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *emit = ldmc_cli_get(&c, "emit"), *header = ldmc_cli_get(&c, "header");
  ldmc_llvm_cpu_emit_kind ekind = LDMC_EMIT_OBJ;
  if (!emit && (header || ldmc_cli_has(&c, "entry")))
    return ldmc_cli_usage_error(&c, "flag '--%s' needs --emit (see ldmc compile --help)", header ? "header" : "entry");
  if (emit && !ldmc_llvm_cpu_emit_kind_parse(emit, &ekind))
    return ldmc_cli_usage_error(&c, "flag '--emit' expects obj, asm or llvm, got '%s'", emit);
  if (emit && !ldmc_cli_has(&c, "out"))
    return ldmc_cli_usage_error(&c, "--emit %s needs -o FILE (see ldmc compile --help)", emit);
  static const char *const graph_exts[] = {".txt", ".ldmcir", ".ldmc", NULL}; /* --out without --emit: a graph */
  if (!emit && (rc = ldmc_tool_check_output(&c, "--out", ldmc_cli_get(&c, "out"), graph_exts)) != LDMC_CLI_CONTINUE)
    return rc;
  const char *model = ldmc_cli_get(&c, "model");
  if ((model != NULL) == (c.n_pos == 1)) return ldmc_cli_usage_error(&c, "give either --model NAME or one graph FILE");
  static const char *const model_flags[] = {"channels", "latent", "context", "batch", "train"};
  for (int i = 0; !model && i < (int)(sizeof model_flags / sizeof model_flags[0]); i++)
    if (ldmc_cli_has(&c, model_flags[i]))
      return ldmc_cli_usage_error(&c, "flag '--%s' needs --model (see ldmc compile --help)", model_flags[i]);
  const bool train = ldmc_cli_has(&c, "train");
  int64_t budget = 0;
  if (ldmc_cli_has(&c, "memory-budget")) {
    const char *v = ldmc_cli_get(&c, "memory-budget");
    char *end = NULL;
    double x = v ? strtod(v, &end) : 0;
    double unit = end && *end == 'K' ? 1024.0 : end && *end == 'M' ? 1048576.0 : end && *end == 'G' ? 1073741824.0 : 1;
    if (end && unit > 1) end++;
    if (!v || end == v || (end && *end) || !(x > 0) || x * unit > 9.0e18)
      return ldmc_cli_usage_error(&c, "--memory-budget %s: expected a positive byte count, optionally with K, M or G "
                                  "(KiB, MiB, GiB), e.g. 3G",
                                  v ? v : "");
    budget = (int64_t)(x * unit);
  }
  ldmc_remat_report remat = {0};
  ldmc_train_opts topts = {0};
  if (!train && (ldmc_cli_has(&c, "ema") || ldmc_cli_has(&c, "clip")))
    return ldmc_cli_usage_error(&c, "flag '--%s' needs --train", ldmc_cli_has(&c, "ema") ? "ema" : "clip");
  if (train && ldmc_cli_has(&c, "activation-params"))
    return ldmc_cli_usage_error(&c, "--activation-params does not apply with --train: every weight is trained, "
                                "so none is constant between steps");
  if (ldmc_unet_train_opts_from_args(ldmc_cli_get(&c, "ema"), ldmc_cli_get(&c, "clip"), &topts) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
  const char *chans = ldmc_cli_get(&c, "channels");
  if (chans && strchr(chans, ','))
    return ldmc_cli_usage_error(&c, "flag '--channels' takes one width here, got '%s' (ldmc stats takes a list)", chans);
  const char *tname = ldmc_cli_target_flag(&c, &rc);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  bool tpusim = false;
  ldmc_tpu_target tpu_t;
  const char *tspec = tname;
  if (ldmc_prof_tpusim_target(tname, ldmc_cli_get(&c, "target-file"), &tpusim, &tspec, &tpu_t) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
  ldmc_cli_target ct;
  if (ldmc_cli_target_parse(tspec ? tspec : "llvm-cpu", &ct) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "%s", ldmc_last_error());
  const ldmc_target *t = ct.t;
  if (emit && tpusim && ekind != LDMC_EMIT_ASM)
    return ldmc_cli_usage_error(&c, "--emit %s: tpusim emits asm only (its instruction streams, disassembled)", emit);
  if (emit && tpusim && (header || ldmc_cli_has(&c, "entry")))
    return ldmc_cli_usage_error(&c, "flag '--%s' applies to llvm-cpu's object files, not tpusim asm",
                                header ? "header" : "entry");
  if (emit && !tpusim && !(ct.be && strcmp(ct.be->name, "llvm-cpu") == 0))
    return ldmc_cli_usage_error(&c, "--emit needs --target llvm-cpu or tpusim (target %s has no code generator)", t->name);
  if (emit && tpusim && train)
    return ldmc_cli_usage_error(&c, "--emit asm on tpusim compiles the forward graph; --train is not lowered there");
  int64_t batch = 0;
  if ((rc = ldmc_cli_int(&c, "batch", 1, LDMC_UNET_CLI_BATCH_MAX, &batch)) != LDMC_CLI_CONTINUE) return rc;

  int64_t n_act = -1, threads = 0;
  if ((rc = ldmc_cli_int(&c, "activation-params", 0, INT32_MAX, &n_act)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(&c, "threads", 1, 4096, &threads)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = check_dumps(&c, false)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_graph *g = NULL;
  ldmc_train_step_stats tstats;
  int32_t *donate = NULL; /* --train: the state pairing, planned as updated in place */
  double t0 = now_s();
  if (model) {
    if (strcmp(model, "unet") != 0) return ldmc_cli_usage_error(&c, "unknown model '%s' (models: unet)", model);
    ldmc_unet_config cfg;
    if ((rc = ldmc_unet_cli_config(&c, NULL, &cfg)) != LDMC_CLI_CONTINUE) return rc; /* the shared defaults */
    if (train) {
      if (ldmc_unet_train_step_build(&cfg, &topts, &g) != LDMC_OK)
        return ldmc_cli_fail(&c, "building the U-Net training step: %s", ldmc_last_error());
      donate = malloc((size_t)g->n_outputs * sizeof *donate);
      if (!donate || ldmc_train_step_stats_compute(g, &tstats) != LDMC_OK ||
          ldmc_train_step_state_pairs(g, donate) != LDMC_OK) {
        rc = ldmc_cli_fail(&c, "%s", donate ? ldmc_last_error() : "out of memory");
        ldmc_graph_free(g);
        free(donate);
        return rc;
      }
      batch = cfg.batch; /* n_act stays -1: the trained state changes every step, nothing is prepacked */
    } else {
      if (ldmc_unet_build(&cfg, &g) != LDMC_OK) return ldmc_cli_fail(&c, "building the U-Net: %s", ldmc_last_error());
      if (n_act < 0) n_act = LDMC_UNET_N_INPUTS;
    }
  } else {
    ldmc_module m = {0};
    ldmc_file_kind kind;
    if (ldmc_tool_load(c.pos[0], &m, &kind) != LDMC_OK) return ldmc_cli_fail(&c, "%s", ldmc_last_error());
    g = m.graph;
    m.graph = NULL;
    ldmc_module_free(&m);
    if (!g) return ldmc_cli_fail(&c, "%s holds no graph", c.pos[0]);
  }
  double t_build = now_s() - t0;
  if ((rc = check_dumps(&c, true)) != LDMC_CLI_CONTINUE) {
    ldmc_graph_free(g);
    free(donate);
    return rc;
  }
  ldmc_graph *built = NULL; /* --emit compiles the graph as built, as `ldmc run --backend llvm-cpu` does */
  if (emit && !(built = ldmc_graph_clone(g))) {
    ldmc_graph_free(g);
    free(donate);
    return ldmc_cli_fail(&c, "out of memory");
  }
  int32_t nodes_before = g->n_nodes;
  int64_t naive_before = ldmc_graph_intermediate_bytes(g);
  ldmc_pipeline_opts o = {
      .verify_each = ldmc_cli_has(&c, "verify-each"),
      .dump_regex = ldmc_cli_get(&c, "dump-passes"),
      .dump_dir = ldmc_cli_get(&c, "dump-dir"),
      .stats = ldmc_cli_has(&c, "pass-stats"),
      .log = stdout,
      .params_are_weights = n_act >= 0,
      .n_activation_params = (int32_t)(n_act < 0 ? 0 : n_act),
      .donate = donate,
      .memory_budget = budget,
      .remat = budget > 0 ? &remat : NULL,
  };
  ldmc_plan *plan = NULL;
  t0 = now_s();
  ldmc_compile_opts co = {.threads = (int)threads, .bf16 = ldmc_cli_has(&c, "bf16"), .params_are_weights = n_act >= 0,
                          .n_activation_params = (int32_t)(n_act < 0 ? 0 : n_act), .donate = donate};
  ldmc_status s = ldmc_cli_target_plan(&ct, &g, &co, &o, &plan); /* what the target's backend executes */
  double t_compile = now_s() - t0;
  free(donate);
  if (s != LDMC_OK) {
    ldmc_graph_free(g);
    ldmc_graph_free(built);
    return ldmc_cli_fail(&c, "%s", ldmc_last_error());
  }
  printf("graph %s on target %s%s%s (%s)\n", g->name, t->name, ct.variant[0] ? ":" : "", ct.variant,
         ldmc_cli_target_executor(&ct, plan));
  printf("nodes: %d before, %d after the graph passes\n", (int)nodes_before, (int)g->n_nodes);
  print_kernel_summary(plan, g, ldmc_cli_has(&c, "kernels"));
  printf("planned peak activation memory: %" PRId64 " bytes (%.2f MiB) in one arena\n", plan->arena_bytes,
         mib(plan->arena_bytes));
  if (budget > 0) {
    ldmc_flops fl = ldmc_graph_flops(g);
    double total = (double)(fl.mac + fl.other);
    printf("remat: budget %.2f MiB %s: pipeline peak %.2f -> %.2f MiB, %d values recomputed, %.4g extra GFLOP "
           "(%.2f%% of the graph's)%s\n",
           mib(budget), remat.met ? "met" : "NOT met", mib(remat.peak_before), mib(remat.peak_after), (int)remat.values,
           (double)remat.extra_flops / 1e9, total > 0 ? 100.0 * (double)remat.extra_flops / total : 0.0,
           plan->arena_bytes > remat.peak_after ? " (the executing backend adds its kernel scratch)" : "");
  }
  printf("  live-bytes lower bound %.2f MiB; naive sum of intermediates %.2f MiB as built (%.1fx the arena),\n"
         "  %.2f MiB after the graph passes\n",
         mib(plan->live_peak_bytes), mib(naive_before),
         plan->arena_bytes ? (double)naive_before / (double)plan->arena_bytes : 0.0, mib(plan->naive_bytes));
  if (plan->scratch_bytes) {
    int64_t most = 0;
    for (int32_t k = 0; k < plan->n_kernels; k++)
      if (plan->kernels[k].scratch_bytes > most) most = plan->kernels[k].scratch_bytes;
    printf("  kernel scratch (packed panels, accumulators, per-thread work areas), planned in the arena and\n"
           "  live only while its kernel runs: largest %.2f MiB, %.2f MiB over all kernels\n",
           mib(most), mib(plan->scratch_bytes));
  }
  if (plan->prepacked_bytes)
    printf("  prepacked weights (computed once when the weights are bound, outside the arena): %.2f MiB\n",
           mib(plan->prepacked_bytes));
  printf("schedule: simulated live peak %.2f MiB (kernels in root order: %.2f MiB)\n", mib(plan->peak_scheduled),
         mib(plan->peak_in_root_order));
  if (train) print_train_summary(&tstats, &topts, batch);
  printf("build %.3f s, pass pipeline %.3f s\n", t_build, t_compile);
  ldmc_status chk = ldmc_plan_check_buffers(plan, g);
  if (chk != LDMC_OK) rc = ldmc_cli_fail(&c, "buffer check failed: %s", ldmc_last_error());
  else rc = LDMC_EXIT_OK;
  const char *out = ldmc_cli_get(&c, "out");
  if (rc == LDMC_EXIT_OK && emit && tpusim) {
    rc = emit_tpusim_asm(&c, built, n_act, &tpu_t, out);
  } else if (rc == LDMC_EXIT_OK && emit) {
    char *hdr = header ? strdup(header) : ekind == LDMC_EMIT_OBJ ? header_for(out) : NULL;
    if ((header || ekind == LDMC_EMIT_OBJ) && !hdr) rc = ldmc_cli_fail(&c, "out of memory");
    else rc = emit_aot(&c, built, n_act, ekind, out, hdr, ldmc_cli_get(&c, "entry"));
    free(hdr);
  } else if (rc == LDMC_EXIT_OK && out) {
    ldmc_file_kind kind;
    if (!ldmc_tool_kind_from_ext(out, &kind)) kind = LDMC_KIND_TEXT;
    ldmc_module m = {.graph = g};
    if (ldmc_tool_save(out, kind, &m) != LDMC_OK) {
      rc = ldmc_cli_fail(&c, "%s", ldmc_last_error());
    } else {
      char what[400];
      ldmc_tool_describe(&m, kind, what, sizeof what);
      ldmc_tool_print_wrote(stdout, out, what);
    }
  }
  ldmc_plan_free(plan);
  ldmc_graph_free(g);
  ldmc_graph_free(built);
  return rc;
}
