/* ldmc run: compiles a graph on a backend and runs it over named inputs,
 * writing the named outputs to a safetensors file (atomically, only on
 * success). Inputs come from --inputs, then the .ldmc module's tensors, then
 * (with --random-inputs) seeded normal noise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "models/unet.h"
#include "tools/cli_args.h"
#include "tools/cli_io.h"
#include "tools/cli_target.h"
#include "tools/commands.h"
#include "tools/run_model.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 + Box-Muller: reproducible noise for --random-inputs */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double normal(uint64_t *s) {
  double u1 = ((double)(mix(s) >> 11) + 1.0) * 0x1.0p-53, u2 = (double)(mix(s) >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static ldmc_status random_tensor(const ldmc_node *p, uint64_t *state, ldmc_tensor *out) {
  LDMC_TRY(ldmc_tensor_alloc(out, p->attrs.name, p->dtype, &p->shape));
  int64_t n;
  LDMC_TRY(ldmc_shape_numel(&p->shape, 0, &n));
  if (ldmc_dtype_is_float(p->dtype))
    for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(out, i, normal(state));
  return LDMC_OK; /* integer and pred parameters stay zero */
}

/* One tensor per graph parameter, in order: a view of the input or module
 * tensor of that name, or fresh noise. Inputs naming no parameter are errors. */
static ldmc_status assemble_feed(const ldmc_graph *g, const ldmc_tensor_set *inputs, const char *inputs_path,
                                 const ldmc_tensor_set *module, const char *module_path, bool random, uint64_t seed,
                                 ldmc_tensor_set *feed, ldmc_tensor_set *generated) {
  char q[256], qg[256]; /* names come from files: printed escaped */
  ldmc_quote(g->name, qg, sizeof qg);
  for (int32_t i = 0; inputs && i < inputs->n; i++)
    if (ldmc_graph_find_param(g, inputs->items[i].name) < 0)
      return ldmc_error(LDMC_ERR_INVALID, "%s: tensor '%s' matches no parameter of graph '%s'", inputs_path,
                        ldmc_quote(inputs->items[i].name, q, sizeof q), qg);
  uint64_t state = seed;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const ldmc_tensor *src = inputs ? ldmc_tensor_set_find(inputs, p->attrs.name) : NULL;
    if (!src && module) src = ldmc_tensor_set_find(module, p->attrs.name);
    if (!src && random) {
      ldmc_tensor t = {0};
      ldmc_status s = random_tensor(p, &state, &t);
      if (s == LDMC_OK) s = ldmc_tensor_set_add(generated, &t);
      if (s != LDMC_OK) {
        ldmc_tensor_release(&t);
        return s;
      }
      src = &generated->items[generated->n - 1];
    }
    if (!src) {
      char shape[160];
      ldmc_shape_str(&p->shape, shape, sizeof shape);
      return ldmc_error(LDMC_ERR_INVALID, "no input for parameter '%s' (%s%s)%s%s", ldmc_quote(p->attrs.name, q, sizeof q),
                        ldmc_dtype_name(p->dtype), shape, inputs_path ? " in " : "", inputs_path ? inputs_path : "");
    }
    if (src->raw_dtype[0] || src->dtype != p->dtype || !ldmc_shape_equal(&src->shape, &p->shape)) {
      char want[160], got[160];
      ldmc_shape_str(&p->shape, want, sizeof want);
      ldmc_shape_str(&src->shape, got, sizeof got);
      bool from_inputs = inputs && src == ldmc_tensor_set_find(inputs, p->attrs.name);
      const char *where = from_inputs ? inputs_path : module_path;
      return ldmc_error(LDMC_ERR_INVALID, "%s%stensor '%s': parameter %%%d of graph '%s' is %s%s, found %s%s",
                        where ? where : "", where ? ": " : "", ldmc_quote(p->attrs.name, q, sizeof q), (int)i, qg,
                        ldmc_dtype_name(p->dtype), want, ldmc_tool_dtype_str(src), got);
    }
    ldmc_tensor view;
    LDMC_TRY(ldmc_tool_tensor_view(src, &view));
    ldmc_status s = ldmc_tensor_set_add(feed, &view);
    if (s != LDMC_OK) {
      ldmc_tensor_release(&view);
      return s;
    }
  }
  return LDMC_OK;
}

static void print_output(const ldmc_tensor *t) {
  char shape[160];
  ldmc_shape_str(&t->shape, shape, sizeof shape);
  int64_t n = 0;
  if (ldmc_shape_numel(&t->shape, 0, &n) != LDMC_OK || t->dtype >= LDMC_DTYPE_COUNT) n = 0;
  double sum = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = ldmc_tensor_get(t, i);
    if (!isfinite(v)) {
      bad++;
      continue;
    }
    sum += v;
    sq += v * v;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  int64_t k = n - bad;
  double mean = k ? sum / (double)k : 0, var = k ? sq / (double)k - mean * mean : 0;
  printf("  %s %s%s  mean %.6g  std %.6g  min %.6g  max %.6g%s", t->name, ldmc_tool_dtype_str(t), shape, mean,
         sqrt(var > 0 ? var : 0), k ? lo : 0, k ? hi : 0, bad ? "" : "\n");
  if (bad) printf("  non-finite %lld\n", (long long)bad);
}

/* --grad: the graph run becomes the graph plus the gradient of sum(OUTPUT). */
static ldmc_status with_gradient(const ldmc_cli_cmd *c, ldmc_graph **g, const char *output, const char *wrt) {
  ldmc_grad_opts o = {.output = output, .seed = LDMC_GRAD_SUM, .wrt_regex = wrt};
  ldmc_graph *gg = NULL;
  ldmc_status s = ldmc_grad(*g, &o, &gg);
  if (s != LDMC_OK) {
    ldmc_cli_fail(c, "--grad %s: %s", output, ldmc_last_error());
    return s;
  }
  ldmc_graph_free(*g);
  *g = gg;
  return LDMC_OK;
}

int ldmc_cmd_run(int argc, char **argv) {
  ldmc_cli_flag flags[] = {
      {"inputs", "FILE", "input tensors (.safetensors), matched to the graph's parameters by name", NULL},
      {"out", "FILE", "where to write the outputs (.safetensors), named as the graph's outputs", NULL},
      {"target", "NAME", "what executes: interp (default) or llvm-cpu[:scalar|avx2|avx512]", NULL},
      {"backend", "NAME", "synonym of --target", NULL},
      {"random-inputs", NULL, "fill parameters that no input or module tensor provides with\nnormal noise (floats; ints and preds get zeros)", NULL},
      {"seed", "N", "seed of --random-inputs and of --init random (default 0)", NULL},
      {"save-inputs", "FILE", "also write the tensors fed to the graph, module weights excepted\n(.safetensors), e.g. to replay a --random-inputs run", NULL},
      {"save-graph", "FILE", "also write the graph that was run (.ldmc with its weights, or .txt)", NULL},
      {"threads", "N", "threads for the backend (default: its own choice; llvm-cpu: OpenMP's)", NULL},
      {"bf16", NULL, "allow bf16 storage with f32 accumulation (llvm-cpu: dot_general and\n"
                     "convolution operands as bf16 through avx512_bf16 where the CPU has it)", NULL},
      {"activation-params", "N", "GRAPH mode: the first N parameters are activations, the rest weights\n"
                                 "(the same tensors every run), as --model declares its weights: llvm-cpu\n"
                                 "prepacks what derives only from weights once (default: all activations)", NULL},
      {"no-cache", NULL, "llvm-cpu: compile every kernel, neither reading nor writing the on-disk\n"
                         "kernel cache (default: $LDMC_CACHE_DIR, else $XDG_CACHE_HOME/ldmc/kernels,\n"
                         "else ~/.cache/ldmc/kernels; LDMC_CACHE_DIR=off turns it off everywhere)", NULL},
      {"verbose", NULL, "the backend's compile summary on stderr (llvm-cpu: steps, prepack steps, arena)", NULL},
      {"repeat", "N", "after compiling, run the step N times and print `compile_ms=<ms>` and\n"
                      "`run_ms median=<ms> min=<ms>` on stdout; --out holds the last run's outputs", NULL},
      {"grad", "OUTPUT", "also compute the gradient of sum(OUTPUT) with respect to every float\n"
                         "parameter (or those --wrt matches), written to --out as grad.<parameter>\n"
                         "next to the outputs (reverse-mode autodiff, frontend/grad.c)", NULL},
      {"wrt", "REGEX", "with --grad: only parameters whose name matches this POSIX extended regex", NULL},
      {"model", "NAME", "build a built-in model instead of reading GRAPH (unet)", NULL},
      {"channels", "C", LDMC_UNET_HELP_CHANNELS, NULL},
      {"latent", "HxW[xC]", LDMC_UNET_HELP_LATENT, NULL},
      {"context", "DxT", LDMC_UNET_HELP_CONTEXT, NULL},
      {"batch", "B", LDMC_UNET_HELP_BATCH, NULL},
      {"weights", "FILE", "model mode: weights (.safetensors, or a .ldmc's tensors) under diffusers\nstate-dict keys", NULL},
      {"init", "random", "model mode: initialize weights randomly (seeded by --seed) instead\n(one of --weights and --init is required, not both)", NULL},
  };
  ldmc_cli_cmd c = {
      .name = "run",
      .usage = "GRAPH --out OUT.safetensors [--inputs IN.safetensors] [--backend NAME]\n"
               "--model unet [--channels C] [--latent HxWx4] [--context DxT] [--batch B]\n"
               "    (--weights W.safetensors | --init random) [--seed S]\n"
               "    (--inputs IN.safetensors | --random-inputs) --out OUT.safetensors",
      .summary = "Compile a graph on a backend and run it. Each graph parameter takes the tensor of\n"
                 "its name from --inputs, else from GRAPH's own tensors (.ldmc modules carry weights),\n"
                 "else noise with --random-inputs. Outputs go to --out under the graph's output names.",
      .details = "GRAPH is a .ldmc module or a text IR file (recognized by its first bytes).\n"
                 "A tensor in --inputs that names no parameter is an error; one that also exists\n"
                 "in the module replaces it. Dtypes and shapes must match the parameters exactly.\n"
                 "With --model unet the graph is built in memory (models/unet.h): its parameters\n"
                 "are sample f32[B,C,H,W], timestep f32[B], encoder_hidden_states f32[B,T,D] and\n"
                 "the weights; its output is out_sample.\n"
                 "The output file is written only if the whole run succeeds.\n"
                 "Examples:\n"
                 "  ldmc run model.ldmc --inputs x.safetensors --out y.safetensors\n"
                 "  ldmc run model.ldmc --inputs x.safetensors --out y.safetensors --backend llvm-cpu \\\n"
                 "      --threads 2 --repeat 10   # prints compile_ms=... and run_ms median=... min=...\n"
                 "  ldmc run --model unet --channels 32 --latent 8x8x4 --context 64x8 --init random \\\n"
                 "      --random-inputs --out y.safetensors\n"
                 "  ldmc run --model unet --channels 32 --latent 8x8x4 --context 64x8 --init random \\\n"
                 "      --random-inputs --grad out_sample --wrt '^down_blocks\\.0\\.' --out g.safetensors\n",
      .flags = flags,
      .n_flags = (int)(sizeof flags / sizeof flags[0]),
      .min_pos = 0,
      .max_pos = 1,
  };
  int rc = ldmc_cli_parse(&c, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *out = ldmc_cli_get(&c, "out"), *inputs_path = ldmc_cli_get(&c, "inputs");
  const char *backend_name = ldmc_cli_target_flag(&c, &rc), *save_inputs = ldmc_cli_get(&c, "save-inputs");
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *save_graph = ldmc_cli_get(&c, "save-graph");
  const char *grad_of = ldmc_cli_get(&c, "grad"), *wrt = ldmc_cli_get(&c, "wrt");
  if (wrt && !grad_of) return ldmc_cli_usage_error(&c, "--wrt needs --grad OUTPUT (see ldmc run --help)");
  bool model_mode = ldmc_cli_has(&c, "model");
  if (model_mode && c.n_pos)
    return ldmc_cli_usage_error(&c, "give either GRAPH or --model, not both (see ldmc run --help)");
  if (!model_mode && !c.n_pos)
    return ldmc_cli_usage_error(&c, "missing GRAPH (or --model NAME) (see ldmc run --help)");
  if (!model_mode)
    for (int i = 0; ldmc_run_model_flags[i]; i++)
      if (ldmc_cli_has(&c, ldmc_run_model_flags[i]))
        return ldmc_cli_usage_error(&c, "flag '--%s' needs --model (see ldmc run --help)", ldmc_run_model_flags[i]);
  if (!out) return ldmc_cli_usage_error(&c, "missing --out OUT.safetensors (see ldmc run --help)");
  static const char *const st_exts[] = {".safetensors", NULL}, *const graph_exts[] = {".ldmc", ".txt", ".ldmcir", NULL};
  if ((rc = ldmc_tool_check_output(&c, "--out", out, st_exts)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_tool_check_output(&c, "--save-inputs", save_inputs, st_exts)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_tool_check_output(&c, "--save-graph", save_graph, graph_exts)) != LDMC_CLI_CONTINUE)
    return rc;
  {
    const char *const what[] = {"--out", "--save-inputs", "--save-graph"}, *const paths[] = {out, save_inputs, save_graph};
    if ((rc = ldmc_tool_check_distinct(&c, 3, what, paths)) != LDMC_CLI_CONTINUE) return rc;
  }
  int64_t seed = 0, threads = 0;
  if ((rc = ldmc_cli_int(&c, "seed", 0, INT64_MAX, &seed)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = ldmc_cli_int(&c, "threads", 1, 4096, &threads)) != LDMC_CLI_CONTINUE) return rc;
  int64_t n_act = -1; /* --activation-params: parameters from n_act on are weights */
  if (model_mode && ldmc_cli_has(&c, "activation-params"))
    return ldmc_cli_usage_error(&c, "--model declares its own weights; --activation-params is for GRAPH");
  if ((rc = ldmc_cli_int(&c, "activation-params", 0, INT32_MAX, &n_act)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_cli_target ct;
  if (ldmc_cli_target_parse(backend_name ? backend_name : "interp", &ct) != LDMC_OK)
    return ldmc_cli_usage_error(&c, "--target %s: %s", backend_name, ldmc_last_error());
  if (!ct.be) return ldmc_cli_usage_error(&c, "--target %s: planning only, no backend executes it yet", backend_name);
  const ldmc_backend_i *be = ct.be;

  int64_t repeat = 0;
  if ((rc = ldmc_cli_int(&c, "repeat", 1, 1000000, &repeat)) != LDMC_CLI_CONTINUE) return rc;
  double *run_ms = calloc((size_t)(repeat > 0 ? repeat : 1), sizeof *run_ms);
  if (!run_ms) return ldmc_cli_fail(&c, "out of memory");

  ldmc_module m = {0};
  ldmc_tensor_set inputs = {0}, feed = {0}, generated = {0}, outputs = {0};
  ldmc_executable *exe = NULL;
  rc = LDMC_EXIT_FAIL;
  double t0 = now_s();
  if (model_mode) {
    int mrc = ldmc_run_model_setup(&c, &m.graph, &m.tensors);
    if (mrc != LDMC_CLI_CONTINUE) {
      rc = mrc;
      goto done;
    }
    if (grad_of && with_gradient(&c, &m.graph, grad_of, wrt) != LDMC_OK) goto done;
  } else {
    ldmc_file_kind kind;
    if (ldmc_tool_load(c.pos[0], &m, &kind) != LDMC_OK) {
      ldmc_cli_fail(&c, "%s", ldmc_last_error());
      goto done;
    }
    if (!m.graph) {
      ldmc_cli_fail(&c, "%s: %s holds no graph to run", c.pos[0], ldmc_file_kind_name(kind));
      goto done;
    }
    if (grad_of && with_gradient(&c, &m.graph, grad_of, wrt) != LDMC_OK) goto done;
    int mrc = ldmc_run_check_memory(&c, m.graph); /* before --random-inputs allocates */
    if (mrc != LDMC_CLI_CONTINUE) {
      rc = mrc;
      goto done;
    }
  }
  if (inputs_path && ldmc_tool_read_tensors(inputs_path, &inputs) != LDMC_OK) {
    ldmc_cli_fail(&c, "%s", ldmc_last_error());
    goto done;
  }
  if (model_mode && inputs_path) { /* with --random-inputs only part of the inputs may be given */
    int mrc = ldmc_cli_has(&c, "random-inputs") ? ldmc_run_model_convert_timestep(&c, m.graph, inputs_path, &inputs)
                                                 : ldmc_run_model_check_inputs(&c, m.graph, inputs_path, &inputs);
    if (mrc != LDMC_CLI_CONTINUE) {
      rc = mrc;
      goto done;
    }
  }
  if (assemble_feed(m.graph, inputs_path ? &inputs : NULL, inputs_path, &m.tensors, model_mode ? NULL : c.pos[0],
                    ldmc_cli_has(&c, "random-inputs"), (uint64_t)seed, &feed, &generated) != LDMC_OK) {
    ldmc_cli_fail(&c, "%s", ldmc_last_error());
    goto done;
  }
  double t1 = now_s();
  ldmc_compile_opts opts = {.threads = (int)threads, .bf16 = ldmc_cli_has(&c, "bf16"),
                            .verbose = ldmc_cli_has(&c, "verbose"), .no_disk_cache = ldmc_cli_has(&c, "no-cache")};
  if (model_mode) { /* the model's weights are the same every run: what derives from them is prepacked once */
    opts.params_are_weights = true;
    opts.n_activation_params = LDMC_UNET_N_INPUTS;
  } else if (n_act >= 0) { /* the same declaration for a graph from a file */
    int32_t np = ldmc_graph_num_params(m.graph);
    if (n_act > np) {
      rc = ldmc_cli_usage_error(&c, "--activation-params %lld: graph '%s' has %d parameters", (long long)n_act,
                                m.graph->name ? m.graph->name : "", (int)np);
      goto done;
    }
    opts.params_are_weights = true;
    opts.n_activation_params = (int32_t)n_act;
  }
  if (be->compile(m.graph, &opts, &exe) != LDMC_OK) {
    ldmc_cli_fail(&c, "compiling graph '%s' for %s: %s", m.graph->name ? m.graph->name : "", be->name, ldmc_last_error());
    goto done;
  }
  double t2 = now_s();
  for (int64_t r = 0; r < (repeat > 0 ? repeat : 1); r++) {
    ldmc_tensor_set_free(&outputs); /* keep only the last run's */
    double r0 = now_s();
    if (ldmc_executable_run_named(exe, &feed, &outputs) != LDMC_OK) {
      ldmc_cli_fail(&c, "running graph '%s' on %s: %s", m.graph->name ? m.graph->name : "", be->name, ldmc_last_error());
      goto done;
    }
    run_ms[r] = 1e3 * (now_s() - r0);
  }
  double t3 = now_s();
  /* every file is written only after the run succeeded, --out last */
  ldmc_file_kind graph_kind = LDMC_KIND_LDMC;
  if (save_graph && !ldmc_tool_kind_from_ext(save_graph, &graph_kind)) graph_kind = LDMC_KIND_LDMC;
  if (save_graph && ldmc_tool_save(save_graph, graph_kind, &m) != LDMC_OK) {
    ldmc_cli_fail(&c, "%s", ldmc_last_error());
    goto done;
  }
  if (save_inputs) {
    ldmc_tensor_set fed = {0};
    ldmc_status s = LDMC_OK;
    for (int32_t i = 0; s == LDMC_OK && i < feed.n; i++) {
      if (ldmc_tensor_set_find(&m.tensors, feed.items[i].name) && !ldmc_tensor_set_find(&inputs, feed.items[i].name))
        continue; /* a module weight */
      ldmc_tensor v;
      s = ldmc_tool_tensor_view(&feed.items[i], &v);
      if (s == LDMC_OK && (s = ldmc_tensor_set_add(&fed, &v)) != LDMC_OK) ldmc_tensor_release(&v);
    }
    if (s == LDMC_OK) s = ldmc_tool_write_tensors(save_inputs, &fed);
    ldmc_tensor_set_free(&fed);
    if (s != LDMC_OK) {
      ldmc_cli_fail(&c, "%s", ldmc_last_error());
      goto done;
    }
  }
  if (ldmc_tool_write_tensors(out, &outputs) != LDMC_OK) {
    ldmc_cli_fail(&c, "%s", ldmc_last_error());
    goto done;
  }
  printf("ran graph '%s' (%d nodes) on %s: setup %.3f s, compile %.3f s, run %.3f s\n",
         m.graph->name ? m.graph->name : "", (int)m.graph->n_nodes, be->name, t1 - t0, t2 - t1, t3 - t2);
  if (repeat > 0) {
    double med, lo;
    for (int64_t a = 1; a < repeat; a++) /* insertion sort: N is small */
      for (int64_t b = a; b > 0 && run_ms[b - 1] > run_ms[b]; b--) {
        double t = run_ms[b];
        run_ms[b] = run_ms[b - 1];
        run_ms[b - 1] = t;
      }
    lo = run_ms[0];
    med = repeat % 2 ? run_ms[repeat / 2] : 0.5 * (run_ms[repeat / 2 - 1] + run_ms[repeat / 2]);
    printf("compile_ms=%.3f\n", 1e3 * (t2 - t1));
    printf("run_ms median=%.3f min=%.3f\n", med, lo);
  }
  if (save_graph) {
    char what[400];
    ldmc_tool_describe(&m, graph_kind, what, sizeof what);
    ldmc_tool_print_wrote(stdout, save_graph, what);
  }
  if (save_inputs) ldmc_tool_print_wrote(stdout, save_inputs, "safetensors: the inputs fed to the graph");
  printf("wrote %s:\n", out);
  for (int32_t i = 0; i < outputs.n; i++) print_output(&outputs.items[i]);
  rc = LDMC_EXIT_OK;
done:
  free(run_ms);
  ldmc_executable_free(exe);
  ldmc_tensor_set_free(&outputs);
  ldmc_tensor_set_free(&feed);
  ldmc_tensor_set_free(&generated);
  ldmc_tensor_set_free(&inputs);
  ldmc_module_free(&m);
  return rc;
}
