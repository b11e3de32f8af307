/* The pass manager: order of steps, fixed-point groups and their cap, the
 * verifier between passes, failure propagation, statistics, and dumps
 * (numbered files, text that parses back to the same graph, dot files,
 * the LDMC_DUMP_PASSES / LDMC_DUMP_DIR environment). */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pass_test_util.h"

static int g_count_runs, g_count_limit;
static char g_log[256];
static size_t g_log_n;

/* Changes the graph (appends nothing; says so) g_count_limit times. */
static bool count_pass(ldmc_graph *g, const ldmc_pass_ctx *ctx) {
  (void)g;
  (void)ctx;
  g_count_runs++;
  return g_count_runs <= g_count_limit;
}
static bool log_a(ldmc_graph *g, const ldmc_pass_ctx *c) { (void)g; (void)c; g_log[g_log_n++] = 'a'; return false; }
static bool log_b(ldmc_graph *g, const ldmc_pass_ctx *c) { (void)g; (void)c; g_log[g_log_n++] = 'b'; return false; }
/* Breaks SSA: the last node uses itself. */
static bool corrupt_pass(ldmc_graph *g, const ldmc_pass_ctx *c) {
  (void)c;
  ldmc_node *n = &g->nodes[g->n_nodes - 1];
  if (n->n_operands) n->operands[0] = g->n_nodes - 1;
  return true;
}
static bool failing_pass(ldmc_graph *g, const ldmc_pass_ctx *c) {
  (void)g;
  *c->status = ldmc_error(LDMC_ERR_UNSUPPORTED, "deliberate failure");
  return false;
}

static const ldmc_pass p_count = {"count", count_pass, 0}, p_a = {"a", log_a, 0}, p_b = {"b", log_b, 0},
                       p_corrupt = {"corrupt", corrupt_pass, 0}, p_fail = {"failing", failing_pass, 0};

static const char *k_text = "graph t {\n  %0 = f32[2,3] parameter() name=\"x\"\n  %1 = f32[2,3] neg(%0)\n"
                            "  %2 = f32[2,3] neg(%1)\n  %3 = f32[2,3] exp(%2)\n  %4 = f32[2,3] exp(%2)\n"
                            "  %5 = f32[2,3] add(%3, %4)\n  %6 = f32[2,3] tanh(%0)\n  return %5 \"y\"\n}\n";

static void test_order_and_fixpoint(void) {
  ldmc_graph *g = ptu_parse(k_text);
  if (!g) return;
  ldmc_pipeline *p = ldmc_pipeline_new("t");
  const ldmc_pass *grp[] = {&p_a, &p_count, &p_b};
  CHECK(ldmc_pipeline_add(p, &p_b) == LDMC_OK);
  CHECK(ldmc_pipeline_add_fixpoint(p, "grp", 3, grp) == LDMC_OK);
  CHECK(ldmc_pipeline_add(p, &p_a) == LDMC_OK);
  char *desc = ldmc_pipeline_describe(p);
  CHECK_MSG(desc && strcmp(desc, "b grp{a,count,b} a") == 0, "describe: %s", desc ? desc : "(null)");
  free(desc);
  /* count changes twice: the group runs 3 times (the third finds nothing), so a,b interleave 3 times */
  g_count_runs = 0;
  g_count_limit = 2;
  g_log_n = 0;
  ldmc_pass_ctx ctx = {.target = ldmc_target_find("cpu-nhwc")};
  ldmc_pipeline_opts o = {.dump_regex = "", .log = stderr};
  CHECK(ldmc_pipeline_run(p, g, &ctx, &o) == LDMC_OK);
  g_log[g_log_n] = 0;
  CHECK_MSG(strcmp(g_log, "babababa") == 0, "log %s", g_log);
  CHECK(g_count_runs == 3);
  const ldmc_pass_stat *st;
  int ns = ldmc_pipeline_stats(p, &st);
  CHECK(ns == 3);
  for (int i = 0; i < ns; i++)
    if (strcmp(st[i].pass, "count") == 0) CHECK(st[i].runs == 3 && st[i].changed == 2);
  /* a group that never settles stops at the cap */
  g_count_runs = 0;
  g_count_limit = 1000;
  o.max_iterations = 5;
  CHECK(ldmc_pipeline_run(p, g, &ctx, &o) == LDMC_OK);
  CHECK_MSG(g_count_runs == 5, "runs %d, cap 5", g_count_runs);
  ldmc_pipeline_free(p);
  ldmc_graph_free(g);
}

static void test_verify_and_failure(void) {
  ldmc_graph *g = ptu_parse(k_text);
  if (!g) return;
  ldmc_pipeline *p = ldmc_pipeline_new("t");
  ldmc_pipeline_add(p, &p_corrupt);
  ldmc_pass_ctx ctx = {0};
  ldmc_pipeline_opts o = {.verify_each = true, .dump_regex = ""};
  ldmc_status s = ldmc_pipeline_run(p, g, &ctx, &o);
  CHECK(s != LDMC_OK);
  CHECK_MSG(strstr(ldmc_last_error(), "corrupt") != NULL, "message names the pass: %s", ldmc_last_error());
  ldmc_pipeline_free(p);
  ldmc_graph_free(g);
  g = ptu_parse(k_text);
  p = ldmc_pipeline_new("t");
  ldmc_pipeline_add(p, &p_fail);
  ldmc_pipeline_add(p, &ldmc_pass_dce);
  s = ldmc_pipeline_run(p, g, &ctx, &o);
  CHECK(s == LDMC_ERR_UNSUPPORTED);
  CHECK(strstr(ldmc_last_error(), "failing") && strstr(ldmc_last_error(), "deliberate failure"));
  CHECK(g->n_nodes == 7); /* dce never ran */
  ldmc_pipeline_free(p);
  ldmc_graph_free(g);
  /* bad regex */
  g = ptu_parse(k_text);
  p = ldmc_pipeline_new("t");
  ldmc_pipeline_add(p, &ldmc_pass_dce);
  o.dump_regex = "(";
  CHECK(ldmc_pipeline_run(p, g, &ctx, &o) == LDMC_ERR_INVALID);
  ldmc_pipeline_free(p);
  ldmc_graph_free(g);
  CHECK(ldmc_pass_find("fusion") == &ldmc_pass_fusion && ldmc_pass_find("nope") == NULL);
  CHECK(ldmc_target_find("cpu-nhwc") && ldmc_target_find("tpusim") && !ldmc_target_find("vax"));
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_dumps(void) {
  char dir[] = "/tmp/ldmc_dumpXXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(0);
    return;
  }
  ldmc_graph *g = ptu_parse(k_text);
  if (!g) return;
  ldmc_plan *plan = NULL;
  char logbuf[8192] = "";
  FILE *log = fmemopen(logbuf, sizeof logbuf - 1, "w");
  ldmc_pipeline_opts o = {.dump_regex = "^(input|simplify|dce|fusion|buffers)$", .dump_dir = dir, .stats = true,
                          .log = log};
  CHECK(ldmc_compile_plan(g, ldmc_target_find("cpu-nhwc"), &o, &plan) == LDMC_OK);
  fclose(log);
  /* stats: one line per run naming the pass, and totals */
  CHECK(strstr(logbuf, "pass simplify") && strstr(logbuf, "pass buffers") && strstr(logbuf, "totals"));
  /* input first; simplify and dce run in fixed-point groups, dumped only when they changed:
     simplify removes --x (run 1), cse merges the exps, dce drops tanh (run 1); later runs change nothing */
  const char *want[] = {"000-input", "001-simplify", "002-dce", "003-fusion", "004-buffers"};
  int nf = count_files(dir);
  CHECK_MSG(nf == 10, "%d dump files, expected 10", nf);
  for (int i = 0; i < 5; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.txt", dir, want[i]);
    char *text = read_all(path);
    CHECK_MSG(text != NULL, "missing %s", path);
    if (text) {
      ldmc_graph *back = NULL;
      ldmc_status s = ldmc_graph_parse(text, strlen(text), &back);
      CHECK_MSG(s == LDMC_OK, "%s does not parse back: %s", path, ldmc_last_error());
      if (s == LDMC_OK) CHECK(ldmc_graph_verify(back) == LDMC_OK);
      if (i == 4 && back) {
        /* the last dump is the final graph, with the plan as comments */
        char *again = ldmc_graph_print(back), *orig = ldmc_graph_print(g);
        CHECK(again && orig && strcmp(again, orig) == 0);
        CHECK(strstr(text, "# plan: ") && strstr(text, "# arena: "));
        free(again);
        free(orig);
      }
      ldmc_graph_free(back);
      free(text);
    }
    snprintf(path, sizeof path, "%s/%s.dot", dir, want[i]);
    text = read_all(path);
    CHECK_MSG(text && strncmp(text, "digraph", 7) == 0 && strstr(text, "->"), "bad dot %s", path);
    if (text && i >= 3) CHECK(strstr(text, "subgraph cluster_k0") != NULL);
    free(text);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s.txt", dir, want[i]);
    unlink(path);
  }
  ldmc_plan_free(plan);
  ldmc_graph_free(g);
  /* the environment names the regex and the directory when the options do not */
  g = ptu_parse(k_text);
  setenv("LDMC_DUMP_PASSES", "cse", 1);
  setenv("LDMC_DUMP_DIR", dir, 1);
  CHECK(ldmc_compile_plan(g, ldmc_target_find("interp"), NULL, &plan) == LDMC_OK);
  unsetenv("LDMC_DUMP_PASSES");
  unsetenv("LDMC_DUMP_DIR");
  char path[512];
  snprintf(path, sizeof path, "%s/000-cse.txt", dir);
  CHECK_MSG(access(path, R_OK) == 0, "env dump %s missing", path);
  CHECK(count_files(dir) == 2);
  unlink(path);
  snprintf(path, sizeof path, "%s/000-cse.dot", dir);
  unlink(path);
  ldmc_plan_free(plan);
  ldmc_graph_free(g);
  /* an unwritable directory is an error naming the file */
  g = ptu_parse(k_text);
  ldmc_pipeline_opts bad = {.dump_regex = "dce", .dump_dir = "/dev/null/ldmc"}; /* under a file: cannot be created */;
  CHECK(ldmc_compile_plan(g, ldmc_target_find("cpu-nhwc"), &bad, &plan) == LDMC_ERR_IO);
  CHECK(strstr(ldmc_last_error(), "/dev/null/ldmc") != NULL);
  ldmc_graph_free(g);
  rmdir(dir);
}

int main(void) {
  test_order_and_fixpoint();
  test_verify_and_failure();
  test_dumps();
  return test_summary("test_pass_manager");
}
