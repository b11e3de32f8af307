/* Target names and plans for the driver's --target flags (see cli_target.h). */
#include "tools/cli_target.h"

#include "backends/tpusim/target.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *ldmc_cli_target_names(void) {
  static char list[256];
  size_t k = 0;
  list[0] = '\0';
  for (int i = 0; i < ldmc_target_count() && k < sizeof list; i++)
    if (!ldmc_target_get(i)->internal)
      k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", ldmc_target_get(i)->name);
  return list;
}

const char *ldmc_cli_target_help(const char *what) {
  static char help[640];
  snprintf(help, sizeof help,
           "%s: %s (default llvm-cpu).\n"
           "NAME[:VARIANT]; llvm-cpu:scalar|avx2|avx512 picks the ISA level,\n"
           "tpusim:v1|v4|v5e the simulated machine (or a JSON target file).\n"
           "interp, llvm-cpu and tpusim (simulated) execute; nvptx is a planning\n"
           "description no backend runs yet. --backend is a synonym.",
           what, ldmc_cli_target_names());
  return help;
}

const char *ldmc_cli_target_flag(const ldmc_cli_cmd *c, int *rc) {
  const char *t = ldmc_cli_get(c, "target"), *b = ldmc_cli_get(c, "backend");
  *rc = LDMC_CLI_CONTINUE;
  if (t && b && strcmp(t, b) != 0) {
    *rc = ldmc_cli_usage_error(c, "--target %s and --backend %s disagree (they are synonyms: give one)", t, b);
    return NULL;
  }
  return t ? t : b;
}

ldmc_status ldmc_cli_target_parse(const char *spec, ldmc_cli_target *out) {
  memset(out, 0, sizeof *out);
  char name[64];
  const char *colon = strchr(spec, ':');
  size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
  if (n >= sizeof name) n = sizeof name - 1;
  memcpy(name, spec, n);
  name[n] = '\0';
  const ldmc_target *t = ldmc_target_find(name);
  if (!t || t->internal)
    return ldmc_error(LDMC_ERR_INVALID, "unknown target '%s' (targets: %s)", name, ldmc_cli_target_names());
  out->t = t;
  if (t->backend) {
    out->be = ldmc_backend_find(t->backend);
    if (!out->be) return LDMC_ERR_INVALID;
  }
  if (colon && !strcmp(t->name, "tpusim")) { /* the simulated machine: a preset or a JSON target file */
    const char *v = colon + 1;
    ldmc_tpu_target tt;
    size_t lv = strlen(v);
    bool file = strchr(v, '/') || (lv > 5 && !strcmp(v + lv - 5, ".json"));
    if ((file ? ldmc_tpu_target_load(v, &tt) : ldmc_tpu_target_preset(v, &tt)) != LDMC_OK) {
      ldmc_error_prefix("target '%s': ", spec);
      return LDMC_ERR_INVALID;
    }
    snprintf(out->variant, sizeof out->variant, "%s", v);
    setenv("LDMC_TPUSIM_TARGET", v, 1); /* the backend's process-wide machine choice */
    return LDMC_OK;
  }
  if (colon) {
    const char *v = colon + 1;
    if (strcmp(t->name, "llvm-cpu") != 0 || !(strcmp(v, "scalar") == 0 || strcmp(v, "avx2") == 0 || strcmp(v, "avx512") == 0))
      return ldmc_error(LDMC_ERR_INVALID, "target '%s': unknown variant '%s' (llvm-cpu takes :scalar, :avx2 or :avx512)",
                        t->name, v);
    snprintf(out->variant, sizeof out->variant, "%s", v);
    setenv("LDMC_LLVM_CPU_ISA", v, 1); /* the backend's process-wide ISA choice */
  }
  return LDMC_OK;
}

ldmc_status ldmc_cli_target_plan(const ldmc_cli_target *ct, ldmc_graph **g, const ldmc_compile_opts *co,
                                 const ldmc_pipeline_opts *po, ldmc_plan **plan) {
  *plan = NULL;
  if (ct->be && ct->be->plan) {
    ldmc_compile_opts o = co ? *co : (ldmc_compile_opts){0};
    o.pipeline = po;
    ldmc_graph *opt = NULL;
    LDMC_TRY(ct->be->plan(*g, &o, &opt, plan));
    ldmc_graph_free(*g);
    *g = opt;
    return LDMC_OK;
  }
  return ldmc_compile_plan(*g, ct->t, po, plan);
}

ldmc_status ldmc_cli_target_plan_stats(const ldmc_cli_target *ct, const ldmc_graph *g, int32_t n_activation_params,
                                       bool bf16, ldmc_plan_stats *out) {
  if (!(ct->be && ct->be->plan)) return ldmc_plan_stats_compute(g, ct->t->name, n_activation_params, out);
  memset(out, 0, sizeof *out);
  ldmc_graph *c = ldmc_graph_clone(g);
  if (!c) return ldmc_error(LDMC_ERR_NOMEM, "stats: out of memory copying graph '%s'", g->name);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  ldmc_compile_opts co = {.bf16 = bf16,
                          .params_are_weights = n_activation_params >= 0,
                          .n_activation_params = n_activation_params < 0 ? 0 : n_activation_params};
  ldmc_plan *plan = NULL;
  ldmc_status s = ldmc_cli_target_plan(ct, &c, &co, NULL, &plan);
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (s == LDMC_OK)
    ldmc_plan_stats_fill(g, c, plan, (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec), out);
  ldmc_plan_free(plan);
  ldmc_graph_free(c);
  return s;
}

const char *ldmc_cli_target_executor(const ldmc_cli_target *ct, const ldmc_plan *plan) {
  static char s[160];
  if (plan && plan->executed_by && plan->threads > 0)
    snprintf(s, sizeof s, "executed by %s on %d thread%s", plan->executed_by, (int)plan->threads,
             plan->threads == 1 ? "" : "s");
  else if (plan && plan->executed_by)
    snprintf(s, sizeof s, "executed by %s", plan->executed_by);
  else if (ct->be) snprintf(s, sizeof s, "a plan study: %s runs the graph as built, node by node", ct->be->name);
  else snprintf(s, sizeof s, "planning only: no backend executes target %s yet", ct->t->name);
  return s;
}
