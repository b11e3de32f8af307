/* group_norm and layer_norm as one tpusim kernel (backends/tpusim/lower_norm.c).
 *
 * Each case runs on v5e (one tile: the resident form) and on tiny targets
 * (many tiles; at 2 KiB a group no longer fits, the streamed two-pass form),
 * against the interpreter on the graph as built (the norm is f32 arithmetic,
 * so within 1e-4 of max |out|). The same graph decomposed by the pass
 * pipeline's decompose pass (what tpusim ran before: reductions and
 * elementwise kernels) is the baseline: one kernel instead of its several,
 * and on v5e the norm kernel's DMA bytes by hand (x read once, gamma and
 * beta once, y written once) against the baseline's. The kernel's nodes name
 * the norm and, fused, the SiLU's nodes, root last. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/tpusim/tpusim.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test_util.h"
#include "tpusim_test_util.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static double runif(double lo, double hi) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (double)(g_rng >> 11) / 9007199254740992.0;
}

typedef struct run_stats {
  int kernels;
  uint64_t bytes; /* DMA bytes of all kernels */
  int norm_nodes; /* nodes of the kernel computing the norm (0: no such kernel) */
  bool root_last, has_norm_op;
  char tiles[64];
} run_stats;

static bool is_norm(ldmc_op op) { return op == LDMC_OP_GROUP_NORM || op == LDMC_OP_LAYER_NORM; }

/* Compiles g on t, runs it, compares output 0 with the interpreter's (on the graph as given). */
static bool run_case(const char *name, const ldmc_graph *g, const ldmc_tpu_target *t, double tol, run_stats *s) {
  memset(s, 0, sizeof *s);
  int np = ldmc_graph_num_params(g);
  ldmc_tensor in[4] = {{0}}, got = {0}, want = {0};
  uint64_t saved = g_rng;
  for (int k = 0; k < np; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    CHECK(ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape) == LDMC_OK);
    int64_t cnt = 1;
    for (int d = 0; d < p->shape.rank; d++) cnt *= p->shape.dims[d];
    float *f = in[k].data;
    for (int64_t e = 0; e < cnt; e++) f[e] = (float)runif(-2.0, 2.0) + (k == 0 ? 0.5f : 0.0f);
  }
  g_rng = saved;
  ldmc_executable *e = NULL, *ie = NULL;
  ldmc_compile_opts o = {0}, io = {.threads = 1};
  ldmc_status st = ldmc_tpusim_compile(g, &o, t, &e);
  CHECK_MSG(st == LDMC_OK, "%s (%s): compile: %s", name, t->name, ldmc_last_error());
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, np, &got, 1);
  CHECK_MSG(st == LDMC_OK, "%s (%s): run: %s", name, t->name, ldmc_last_error());
  ldmc_status is = ldmc_backend_interp.compile(g, &io, &ie);
  if (is == LDMC_OK) is = ldmc_executable_run(ie, in, np, &want, 1);
  CHECK_MSG(is == LDMC_OK, "%s: interp: %s", name, ldmc_last_error());
  if (st == LDMC_OK && is == LDMC_OK) {
    int64_t n = 1;
    for (int d = 0; d < want.shape.rank; d++) n *= want.shape.dims[d];
    const float *a = got.data, *w = want.data;
    double amax = 0, err = 0;
    for (int64_t i = 0; i < n; i++) {
      amax = fmax(amax, fabs(w[i]));
      err = fmax(err, fabs((double)a[i] - w[i]));
    }
    if (err > tol * amax)
      for (int64_t i = 0; i < n && i < 16; i++) printf("    [%d] %g %g\n", (int)i, a[i], w[i]);
    CHECK_MSG(err <= tol * amax, "%s (%s): %.3g of max |out| from the interpreter", name, t->name, err / amax);
    const ldmc_graph *eg = e->graph;
    s->kernels = ldmc_tpusim_kernel_count(e);
    for (int i = 0; i < s->kernels; i++) {
      ldmc_tpusim_kernel k;
      CHECK(ldmc_tpusim_kernel_get(e, i, &k) == LDMC_OK);
      CHECK_MSG(ldmc_tpu_verify(t, k.program, &k.mem) == LDMC_OK, "%s: kernel %d: %s", name, i, ldmc_last_error());
      s->bytes += k.stats.bytes_loaded + k.stats.bytes_stored;
      bool norm = false;
      for (int j = 0; j < k.n_nodes; j++) norm |= is_norm(eg->nodes[k.nodes[j]].op);
      if (norm) {
        s->norm_nodes = k.n_nodes, s->has_norm_op = true;
        s->root_last = k.nodes[k.n_nodes - 1] == k.node;
        for (int j = 1; j < k.n_nodes; j++) s->root_last &= k.nodes[j - 1] < k.nodes[j];
        snprintf(s->tiles, sizeof s->tiles, "%s", k.tiles);
      }
    }
    printf("  %-22s %-10s %3d kernels, %8" PRIu64 " DMA bytes%s%s\n", name, t->name, s->kernels, s->bytes,
           s->tiles[0] ? ", " : "", s->tiles);
  }
  for (int i = 0; i < np; i++) ldmc_tensor_release(&in[i]);
  ldmc_tensor_release(&got), ldmc_tensor_release(&want);
  ldmc_executable_free(e);
  ldmc_executable_free(ie);
  return st == LDMC_OK && is == LDMC_OK;
}

/* The decomposition tpusim ran before (the tpusim pass target runs no composite natively). */
static ldmc_graph *decomposed(const ldmc_graph *g) {
  ldmc_graph *c = ldmc_graph_clone(g);
  ldmc_pipeline *pl = ldmc_pipeline_new("test-decompose");
  static const ldmc_pass *const cleanup[] = {&ldmc_pass_simplify, &ldmc_pass_fold, &ldmc_pass_cse, &ldmc_pass_dce};
  ldmc_pass_ctx ctx = {.target = ldmc_target_find("tpusim")};
  ldmc_status st = c && pl ? LDMC_OK : LDMC_ERR_NOMEM;
  if (st == LDMC_OK) st = ldmc_pipeline_add_fixpoint(pl, "cleanup", 4, cleanup);
  if (st == LDMC_OK) st = ldmc_pipeline_add(pl, &ldmc_pass_decompose);
  if (st == LDMC_OK) st = ldmc_pipeline_add_fixpoint(pl, "cleanup2", 4, cleanup);
  if (st == LDMC_OK) st = ldmc_pipeline_run(pl, c, &ctx, NULL);
  ldmc_pipeline_free(pl);
  CHECK_MSG(st == LDMC_OK, "decompose: %s", ldmc_last_error());
  return c;
}

/* y = group_norm(x [n, c, h, w], gamma, beta, groups) (affine: parameters; else constants 1 and 0), SiLU after it. */
static ldmc_graph *g_group(int64_t n, int64_t c, int64_t h, int64_t w, int groups, bool affine, bool silu) {
  int64_t xd[4] = {n, c, h, w}, cd[1] = {c};
  ldmc_builder *b = ldmc_builder_new("gn");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), gm, bt;
  if (affine) {
    gm = ldmc_parameter(b, "gamma", LDMC_F32, 1, cd), bt = ldmc_parameter(b, "beta", LDMC_F32, 1, cd);
  } else {
    float *one = malloc(sizeof(float) * (size_t)c), *zero = calloc((size_t)c, sizeof(float));
    for (int64_t i = 0; i < c; i++) one[i] = 1.0f;
    gm = ldmc_constant(b, LDMC_F32, 1, cd, one), bt = ldmc_constant(b, LDMC_F32, 1, cd, zero);
    free(one), free(zero);
  }
  ldmc_value y = ldmc_group_norm(b, x, gm, bt, groups, 1e-5);
  ldmc_builder_output(b, silu ? ldmc_silu(b, y) : y, "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

/* y = layer_norm(x [a, r, k], gamma, beta) over the dims from axis on. */
static ldmc_graph *g_layer(int64_t a, int64_t r, int64_t k, int axis) {
  int64_t xd[3] = {a, r, k}, gd[2] = {axis == 1 ? r : k, k};
  ldmc_builder *b = ldmc_builder_new("ln");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, xd), gm = ldmc_parameter(b, "gamma", LDMC_F32, 3 - axis, gd),
             bt = ldmc_parameter(b, "beta", LDMC_F32, 3 - axis, gd);
  ldmc_builder_output(b, ldmc_layer_norm(b, x, gm, bt, axis, 1e-5), "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

/* The case on every target; on v5e (fused bytes by hand: fused_bytes >= 0) against the decomposition,
 * dec_kernels kernels moving dec_bytes (by hand). */
static void check(const char *name, ldmc_graph *g, int norm_nodes, int64_t fused_bytes, int dec_kernels,
                  int64_t dec_bytes) {
  ldmc_tpu_target v5e, tiny8 = tpusim_tiny_target(8192), tiny2 = tpusim_tiny_target(2048);
  CHECK(ldmc_tpu_target_preset("v5e", &v5e) == LDMC_OK);
  const ldmc_tpu_target *ts[3] = {&v5e, &tiny8, &tiny2};
  run_stats f, u;
  for (int i = 0; i < 3; i++) {
    if (!run_case(name, g, ts[i], 1e-4, &f)) continue;
    CHECK_MSG(f.kernels == 1 && f.has_norm_op, "%s (%s): %d kernels, expected one norm kernel", name, ts[i]->name, f.kernels);
    CHECK_MSG(f.norm_nodes == norm_nodes && f.root_last, "%s (%s): the kernel names %d nodes, expected %d, root last",
              name, ts[i]->name, f.norm_nodes, norm_nodes);
    CHECK_MSG(strstr(f.tiles, "norm") != NULL, "%s (%s): tiles '%s'", name, ts[i]->name, f.tiles);
    if (i == 2 && strstr(name, "layer") == NULL) /* a group of 35..99 values no longer fits 2 KiB */
      CHECK_MSG(strstr(f.tiles, "streamed") != NULL, "%s (%s): not streamed: '%s'", name, ts[i]->name, f.tiles);
    if (i == 0 && fused_bytes >= 0) {
      CHECK_MSG(strstr(f.tiles, "streamed") == NULL, "%s (v5e): streamed: '%s'", name, f.tiles);
      CHECK_MSG(f.bytes == (uint64_t)fused_bytes, "%s (v5e): %" PRIu64 " DMA bytes, by hand %" PRId64, name, f.bytes,
                fused_bytes);
      ldmc_graph *d = decomposed(g);
      if (d && run_case("  (decomposed)", d, ts[i], 1e-4, &u)) {
        CHECK_MSG(u.kernels == dec_kernels && !u.has_norm_op, "%s: decomposed %d kernels, by hand %d", name, u.kernels,
                  dec_kernels);
        CHECK_MSG(u.bytes == (uint64_t)dec_bytes && u.bytes > f.bytes,
                  "%s: %" PRIu64 " bytes fused, %" PRIu64 " decomposed, by hand %" PRId64, name, f.bytes, u.bytes, dec_bytes);
      }
      ldmc_graph_free(d);
    }
  }
  ldmc_graph_free(g);
}

/* The decomposition's kernels on v5e, one tile each (X = the activation's bytes, s = one statistic per
 * group, P = gamma and beta's): group norm: a copy of the reshaped parameter (2 X), the sum (X + s), the
 * mean (its constant read: 3 s), x - mean (2 X + s), its square (both operands loaded: 3 X), the sum
 * (X + s), the rstd chain (2 s), the normalizing product (2 X + s), the affine chain (2 X + P): 9 kernels,
 * 13 X + 9 s + P. Layer norm the same without the copy and with the product and the affine one chain:
 * 7 kernels, 9 X + 9 s + P. */
static int64_t gn_dec(int64_t X, int64_t s, int64_t P) { return 13 * X + 9 * s + P; }
static int64_t ln_dec(int64_t X, int64_t s, int64_t P) { return 9 * X + 9 * s + P; }

int main(void) {
  /* one tile on v5e: group norm [1, 6, 5, 7], 3 groups of 2 x 35: x read once (4 x 210 bytes), gamma and
   * beta once (4 x 6 each), y written once (4 x 210): 1728 bytes */
  check("group_norm", g_group(1, 6, 5, 7, 3, true, false), 1, 4 * 210 * 2 + 4 * 6 * 2, 9, gn_dec(840, 12, 48));
  /* gamma 1 and beta 0 are immediates (no ops, not read): 1680 bytes */
  check("group_norm no affine", g_group(1, 6, 5, 7, 3, false, false), 1, 4 * 210 * 2, 9, gn_dec(840, 12, 0));
  /* the SiLU (logistic, mul) on the normalized tile: the kernel names 3 nodes, moves the same 1728 bytes (the
   * decomposition's SiLU joins its affine chain: the same 9 kernels) */
  check("group_norm + silu", g_group(1, 6, 5, 7, 3, true, true), 3, 4 * 210 * 2 + 4 * 6 * 2, 9, gn_dec(840, 12, 48));
  check("group_norm + silu, n2", g_group(2, 8, 9, 11, 4, true, true), 3, -1, 0, 0);
  check("group_norm 1 group", g_group(2, 5, 3, 4, 1, false, true), 3, -1, 0, 0);
  /* layer norm [2, 9, 12] over the last dim: 18 groups of one row, gamma per column: 4 (216 + 12 + 12 + 216) */
  check("layer_norm", g_layer(2, 9, 12, 2), 1, 4 * (216 * 2 + 12 * 2), 7, ln_dec(864, 72, 96));
  check("layer_norm axis 1", g_layer(3, 10, 12, 1), 1, 4 * (360 * 2 + 120 * 2), 7, ln_dec(1440, 12, 960));
  return test_summary("tpusim_norm");
}
