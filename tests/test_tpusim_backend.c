/* The tpusim backend (backends/tpusim/backend.c, lower_*.c) against the
 * reference interpreter: every lowered op on several shapes, including
 * shapes that are not multiples of the tiles and larger than one
 * scratchpad tile (a tiny target forces many tiles; the v5e preset runs
 * the same graphs in few), matmuls within bf16 tolerance of the interpreter
 * on the f32 inputs and within f32 accumulation error of the interpreter on
 * the bf16-rounded inputs, vector ops within 1e-5, movement ops (transpose,
 * slice, concatenate, pad, reshape, convert) exactly, sin/cos within 1e-6,
 * convolutions (3x3, 1x1, strides, groups, asymmetric and negative padding)
 * like matmuls. Every produced stream is
 * re-verified, and the simulator's counters are checked against
 * hand-computed MACs and bytes. Unsupported nodes are compile errors naming
 * the node. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/tpusim/tpusim.h"
#include "frontend/frontend.h"
#include "support/half.h"
#include "test_util.h"
#include "tpusim_test_util.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double runif(double lo, double hi) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (double)(g_rng >> 11) / 9007199254740992.0;
}

typedef struct expect {
  double rtol, arel;    /* |got - want| <= rtol |want| + arel max|want| + 1e-30 */
  bool bf16_oracle;     /* also within 2e-5 max|want| of the interpreter on bf16-rounded inputs */
  int64_t macs;         /* >= 0: the simulated MACs of all kernels */
  bool rewrites;        /* the output kernel stores some elements twice (pad: the pad value, then the operand) */
  const char *tiles;    /* non-NULL: in the output kernel's tile description (the tiling chosen) */
  int kernels;          /* > 0: the executable's kernel count */
  int last_nodes;       /* > 0: the nodes the output kernel computes (a fused chain) */
} expect;

static ldmc_status make_inputs(const ldmc_graph *g, ldmc_tensor **out, int *n, bool round_bf16) {
  int np = ldmc_graph_num_params(g);
  ldmc_tensor *t = calloc((size_t)(np ? np : 1), sizeof *t);
  uint64_t saved = g_rng;
  for (int k = 0; k < np; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    LDMC_TRY(ldmc_tensor_alloc(&t[k], p->attrs.name, p->dtype, &p->shape));
    int64_t cnt = 1;
    for (int d = 0; d < p->shape.rank; d++) cnt *= p->shape.dims[d];
    float *f = t[k].data;
    for (int64_t e = 0; e < cnt; e++) {
      double v = strncmp(p->attrs.name, "pos", 3) == 0 ? runif(0.1, 4.0) : runif(-2.0, 2.0);
      f[e] = round_bf16 ? ldmc_bf16_to_f32(ldmc_f32_to_bf16((float)v)) : (float)v;
    }
  }
  if (round_bf16) g_rng = saved; /* the same draws, rounded */
  *out = t;
  *n = np;
  return LDMC_OK;
}

static void free_inputs(ldmc_tensor *t, int n) {
  for (int i = 0; i < n; i++) ldmc_tensor_release(&t[i]);
  free(t);
}

static bool run_interp(const ldmc_graph *g, ldmc_tensor *in, int nin, ldmc_tensor *out) {
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 1};
  ldmc_status st = ldmc_backend_interp.compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, nin, out, 1);
  ldmc_executable_free(e);
  CHECK_MSG(st == LDMC_OK, "interp: %s", ldmc_last_error());
  return st == LDMC_OK;
}

/* max over i of |got - want| / (rtol |want| + arel max|want|) */
static double violation(const ldmc_tensor *got, const ldmc_tensor *want, double rtol, double arel, int64_t *at) {
  int64_t n = 1;
  for (int d = 0; d < want->shape.rank; d++) n *= want->shape.dims[d];
  const float *a = got->data, *w = want->data;
  double amax = 0, bad = 0;
  for (int64_t i = 0; i < n; i++) amax = fabs(w[i]) > amax ? fabs(w[i]) : amax;
  *at = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - w[i]), lim = rtol * fabs(w[i]) + arel * amax + 1e-30;
    if (!(e / lim <= bad)) bad = e / lim, *at = i;
  }
  return bad;
}

/* profiler hook: counts events and their FLOPs */
typedef struct prof_count {
  int events;
  int64_t flops;
} prof_count;
static void count_event(void *ctx, const ldmc_kernel_event *ev) {
  prof_count *c = ctx;
  c->events++;
  c->flops += ev->mac_flops + ev->other_flops;
}

/* Runs g (one output) on tpusim (target t, bf16 allowed) and the interpreter. */
static void check_graph(const char *name, ldmc_graph *g, const ldmc_tpu_target *t, expect x) {
  if (!g) {
    CHECK_MSG(false, "%s: build: %s", name, ldmc_last_error());
    return;
  }
  ldmc_tensor *in = NULL, *in16 = NULL;
  int nin = 0;
  if (make_inputs(g, &in, &nin, false) != LDMC_OK || (x.bf16_oracle && make_inputs(g, &in16, &nin, true) != LDMC_OK)) {
    CHECK_MSG(false, "%s: inputs: %s", name, ldmc_last_error());
    ldmc_graph_free(g);
    return;
  }
  ldmc_tensor want = {0}, want16 = {0}, got = {0};
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.bf16 = true};
  ldmc_status st = ldmc_tpusim_compile(g, &o, t, &e);
  CHECK_MSG(st == LDMC_OK, "%s: compile: %s", name, ldmc_last_error());
  prof_count pc = {0};
  ldmc_profile_hook hook = {.kernel = count_event, .ctx = &pc};
  if (st == LDMC_OK) CHECK(ldmc_executable_set_profiler(e, &hook) == LDMC_OK);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, nin, &got, 1);
  if (st == LDMC_OK) {
    ldmc_flops gf = ldmc_graph_flops(e->graph);
    CHECK_MSG(pc.events == ldmc_tpusim_kernel_count(e) && pc.flops == gf.mac + gf.other,
              "%s: %d events (%d kernels), %" PRId64 " FLOPs reported, graph %" PRId64, name, pc.events,
              ldmc_tpusim_kernel_count(e), pc.flops, gf.mac + gf.other);
    ldmc_executable_set_profiler(e, NULL);
  }
  CHECK_MSG(st == LDMC_OK, "%s: run: %s", name, ldmc_last_error());
  if (st == LDMC_OK && run_interp(g, in, nin, &want)) {
    int64_t at;
    double v = violation(&got, &want, x.rtol, x.arel, &at);
    CHECK_MSG(v <= 1.0, "%s (%s): element %" PRId64 " = %.9g, interpreter %.9g (%.3g x tolerance)", name, t->name, at,
              (double)((float *)got.data)[at], (double)((float *)want.data)[at], v);
    if (x.bf16_oracle && run_interp(g, in16, nin, &want16)) {
      ldmc_tensor got16 = {0};
      CHECK(ldmc_executable_run(e, in16, nin, &got16, 1) == LDMC_OK);
      v = violation(&got16, &want16, 0, 2e-5, &at);
      CHECK_MSG(v <= 1.0, "%s (%s) on bf16 inputs: element %" PRId64 " = %.9g, interpreter %.9g (%.3g x tolerance)", name,
                t->name, at, (double)((float *)got16.data)[at], (double)((float *)want16.data)[at], v);
      ldmc_tensor_release(&got16);
    }
    /* every stream verifies; the counters match what the graph implies */
    int nk = ldmc_tpusim_kernel_count(e);
    CHECK(nk > 0);
    int64_t macs = 0;
    for (int i = 0; i < nk; i++) {
      ldmc_tpusim_kernel k;
      CHECK(ldmc_tpusim_kernel_get(e, i, &k) == LDMC_OK);
      CHECK_MSG(ldmc_tpu_verify(t, k.program, &k.mem) == LDMC_OK, "%s: kernel %d: %s", name, i, ldmc_last_error());
      CHECK(k.stats.cycles > 0 && k.runs >= 1);
      macs += (int64_t)k.stats.macs;
    }
    if (x.macs >= 0) CHECK_MSG(macs == x.macs, "%s: %" PRId64 " MACs simulated, %" PRId64 " expected", name, macs, x.macs);
    /* the last kernel computes the output: each element stored once */
    ldmc_tpusim_kernel last;
    if (ldmc_tpusim_kernel_get(e, nk - 1, &last) == LDMC_OK)
      CHECK_MSG(x.rewrites ? last.stats.bytes_stored >= (uint64_t)got.nbytes && last.stats.bytes_stored <= 2 * (uint64_t)got.nbytes
                           : last.stats.bytes_stored == (uint64_t)got.nbytes,
                "%s: %" PRIu64 " bytes stored, output %zu", name, last.stats.bytes_stored, got.nbytes);
    if (x.kernels > 0) CHECK_MSG(nk == x.kernels, "%s (%s): %d kernels, expected %d", name, t->name, nk, x.kernels);
    if (x.last_nodes > 0 && nk > 0) {
      CHECK_MSG(last.n_nodes == x.last_nodes && last.nodes[last.n_nodes - 1] == last.node,
                "%s (%s): the output kernel computes %d nodes (root %d), expected %d", name, t->name, last.n_nodes,
                (int)last.nodes[last.n_nodes - 1], x.last_nodes);
      for (int i = 1; i < last.n_nodes; i++) CHECK(last.nodes[i - 1] < last.nodes[i]);
    }
    if (x.tiles && nk > 0)
      CHECK_MSG(strstr(last.tiles, x.tiles) != NULL, "%s (%s): tiles '%s', expected '%s'", name, t->name, last.tiles, x.tiles);
  }
  ldmc_tensor_release(&got);
  ldmc_tensor_release(&want);
  ldmc_tensor_release(&want16);
  ldmc_executable_free(e);
  free_inputs(in, nin);
  if (in16) free_inputs(in16, nin);
  ldmc_graph_free(g);
}

static ldmc_graph *finish(ldmc_builder *b, ldmc_value v) {
  ldmc_builder_output(b, v, "out");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static const expect k_vec = {.rtol = 1e-5, .arel = 0, .macs = 0};

static void test_unary(const ldmc_tpu_target *t, int64_t r, int64_t c) {
  static const ldmc_op ops[] = {LDMC_OP_EXP, LDMC_OP_TANH, LDMC_OP_NEG, LDMC_OP_ABS, LDMC_OP_SQRT, LDMC_OP_RSQRT,
                                LDMC_OP_LOGISTIC, LDMC_OP_LOG, LDMC_OP_ERF};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    bool pos = ops[i] == LDMC_OP_SQRT || ops[i] == LDMC_OP_RSQRT || ops[i] == LDMC_OP_LOG;
    int64_t d[2] = {r, c};
    ldmc_builder *b = ldmc_builder_new("unary");
    ldmc_value x = ldmc_parameter(b, pos ? "pos_x" : "x", LDMC_F32, 2, d);
    char name[96];
    snprintf(name, sizeof name, "%s [%" PRId64 ",%" PRId64 "]", ldmc_op_name(ops[i]), r, c);
    expect x_ = k_vec;
    x_.arel = ops[i] == LDMC_OP_ERF || ops[i] == LDMC_OP_TANH ? 1e-6 : 0; /* near zero crossings */
    check_graph(name, finish(b, ldmc_unary(b, ops[i], x)), t, x_);
  }
}

static void test_binary(const ldmc_tpu_target *t, int rank, const int64_t *d) {
  static const ldmc_op ops[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV, LDMC_OP_MAX, LDMC_OP_MIN};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    ldmc_builder *b = ldmc_builder_new("binary");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, rank, d);
    ldmc_value y = ldmc_parameter(b, ops[i] == LDMC_OP_DIV ? "pos_y" : "y", LDMC_F32, rank, d);
    char name[96];
    snprintf(name, sizeof name, "%s rank %d [%" PRId64 ",...,%" PRId64 "]", ldmc_op_name(ops[i]), rank, d[0], d[rank - 1]);
    check_graph(name, finish(b, ldmc_binary(b, ops[i], x, y)), t, k_vec);
  }
}

/* x [r, c] op v, v a row vector [c], a column vector [r] or [r, 1] */
static void test_bcast(const ldmc_tpu_target *t, int64_t r, int64_t c) {
  static const ldmc_op ops[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV, LDMC_OP_MAX, LDMC_OP_MIN};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    for (int form = 0; form < 3; form++) {
      int64_t d[2] = {r, c}, vd[2] = {form == 0 ? c : r, 1}, map1[1] = {form == 0 ? 1 : 0}, map2[2] = {0, 1};
      ldmc_builder *b = ldmc_builder_new("bcast");
      ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d);
      ldmc_value v = ldmc_parameter(b, ops[i] == LDMC_OP_DIV ? "pos_v" : "v", LDMC_F32, form == 2 ? 2 : 1, vd);
      ldmc_value bv = ldmc_broadcast_in_dim(b, v, 2, d, form == 2 ? map2 : map1);
      char name[96];
      snprintf(name, sizeof name, "%s [%" PRId64 ",%" PRId64 "] with a %s", ldmc_op_name(ops[i]), r, c,
               form == 0 ? "row vector" : form == 1 ? "column vector" : "[r,1] column");
      check_graph(name, finish(b, ldmc_binary(b, ops[i], x, bv)), t, k_vec);
    }
  /* rank 3 from rank 2, middle dim broadcast: [a,1,c] * [b,1] (numpy style) */
  int64_t d1[3] = {3, 1, c}, d2[2] = {r, 1};
  ldmc_builder *b = ldmc_builder_new("bcast3");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d1), y = ldmc_parameter(b, "y", LDMC_F32, 2, d2);
  check_graph("numpy broadcast [3,1,c] x [r,1]", finish(b, ldmc_mul(b, x, y)), t, k_vec);
}

/* broadcast_in_dim alone, in the forms the lowering tiles differently after
 * merging dims: a repeat of the last dim (upsampling along W), of rows
 * (along H), a per-channel value over a long last dim, outer dims left
 * over, a scalar splat wider than a vector operand; and upsample_nearest. */
static void test_bcast_forms(const ldmc_tpu_target *t) {
  static const struct {
    int xr, r;
    int64_t xd[4], d[4], map[4];
    const char *name, *tiles; /* tiles: the tiling expected on v5e */
  } cs[] = {
      {3, 4, {3, 50, 370}, {3, 50, 370, 2}, {0, 1, 2}, "[3,50,370] -> [3,50,370,2] (repeat last)", "x2 by strided stores"},
      {3, 4, {3, 5, 37}, {3, 5, 2, 37}, {0, 1, 3}, "[3,5,37] -> [3,5,2,37] (repeat rows)", "x2 rows by strided stores"},
      {2, 4, {4, 7}, {4, 3, 7, 5}, {0, 2}, "[4,7] -> [4,3,7,5] (outer dims, repeat last)", NULL},
      {2, 4, {4, 7}, {4, 3, 7, 300}, {0, 2}, "[4,7] -> [4,3,7,300] (long repeat)", "row broadcast"},
      {1, 3, {6}, {2, 6, 45}, {1}, "[6] -> [2,6,45] (per channel)", "row broadcast"},
      {2, 3, {2, 40}, {2, 3, 40}, {0, 2}, "[2,40] -> [2,3,40] (repeat rows, one outer)", NULL},
      {2, 2, {1, 9}, {70, 9}, {0, 1}, "[1,9] -> [70,9] (repeat of a row)", NULL},
      {0, 2, {0}, {2, 40000}, {0}, "[] -> [2,40000] (splat)", "row broadcast"},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    ldmc_builder *b = ldmc_builder_new("bcast_forms");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, cs[i].xr, cs[i].xd);
    expect x_ = k_vec;
    if (strcmp(t->name, "v5e") == 0) x_.tiles = cs[i].tiles;
    check_graph(cs[i].name, finish(b, ldmc_broadcast_in_dim(b, x, cs[i].r, cs[i].d, cs[i].map)), t, x_);
  }
  int64_t d[4] = {2, 3, 5, 7};
  ldmc_builder *b = ldmc_builder_new("upsample");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, d);
  check_graph("upsample_nearest x2 [2,3,5,7]", finish(b, ldmc_upsample_nearest(b, x, 2)), t, k_vec);
}

static void test_reduce(const ldmc_tpu_target *t, int64_t r, int64_t c) {
  static const ldmc_reduce_kind kinds[] = {LDMC_REDUCE_SUM, LDMC_REDUCE_MAX, LDMC_REDUCE_MIN};
  for (size_t i = 0; i < 3; i++) {
    int64_t d[3] = {2, r, c}, ax = 2, ax2[2] = {1, 2};
    for (int two = 0; two < 2; two++) {
      ldmc_builder *b = ldmc_builder_new("reduce");
      ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
      char name[96];
      snprintf(name, sizeof name, "reduce %s [2,%" PRId64 ",%" PRId64 "] over %s", ldmc_reduce_kind_name(kinds[i]), r, c,
               two ? "the last two dims" : "the last dim");
      expect x_ = k_vec;
      x_.arel = kinds[i] == LDMC_REDUCE_SUM ? 1e-5 : 0; /* f32 sums in a different order */
      check_graph(name, finish(b, ldmc_reduce(b, kinds[i], x, two ? 2 : 1, two ? ax2 : &ax, false)), t, x_);
    }
    /* leading and middle dims: columns reduced, accumulated over row tiles */
    for (int which = 0; which < 3; which++) {
      static const int64_t axes[3][2] = {{0, 0}, {1, 1}, {0, 1}};
      int nax = which == 2 ? 2 : 1;
      ldmc_builder *b = ldmc_builder_new("reduce_cols");
      ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
      char name[96];
      snprintf(name, sizeof name, "reduce %s [2,%" PRId64 ",%" PRId64 "] over dims %s", ldmc_reduce_kind_name(kinds[i]),
               r, c, which == 0 ? "0" : which == 1 ? "1" : "0,1");
      expect x_ = k_vec;
      x_.arel = kinds[i] == LDMC_REDUCE_SUM ? 1e-5 : 0;
      check_graph(name, finish(b, ldmc_reduce(b, kinds[i], x, nax, axes[which], false)), t, x_);
    }
  }
}

/* lhs [B, M, K] x rhs [B, K, N] (or [B, N, K] transposed); B = 0: plain 2-D */
static void test_dot(const ldmc_tpu_target *t, int64_t B, int64_t M, int64_t K, int64_t N, bool transposed) {
  int nb = B > 0 ? 1 : 0;
  int64_t ld[3], rd[3];
  int k = 0;
  if (nb) ld[k] = B, rd[k] = B, k++;
  ld[k] = M, ld[k + 1] = K;
  rd[k] = transposed ? N : K, rd[k + 1] = transposed ? K : N;
  ldmc_ints lb = {.n = nb, .v = {0}}, rb = {.n = nb, .v = {0}};
  ldmc_ints lc = {.n = 1, .v = {nb + 1}}, rc = {.n = 1, .v = {transposed ? nb + 1 : nb}};
  ldmc_builder *b = ldmc_builder_new("dot");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, nb + 2, ld), y = ldmc_parameter(b, "y", LDMC_F32, nb + 2, rd);
  char name[128];
  snprintf(name, sizeof name, "dot_general %s[%" PRId64 "x%" PRId64 "] x %s[%" PRId64 "x%" PRId64 "]%s",
           nb ? "batched " : "", M, K, nb ? "batched " : "", transposed ? N : K, transposed ? K : N,
           transposed ? " (rhs transposed)" : "");
  expect x_ = {.rtol = 0, .arel = 2e-2, .bf16_oracle = true, .macs = (B ? B : 1) * M * K * N};
  check_graph(name, finish(b, ldmc_dot_general(b, x, y, &lb, &rb, &lc, &rc)), t, x_);
}

/* attention as one flash kernel (bf16 q, k, v and p on the matrix units):
 * q [B.., N, D], k [B.., M, D], v [B.., M, E]; N, M not multiples of the tiles. */
static void test_attention(const ldmc_tpu_target *t, int rank, const int64_t *lead, int64_t N, int64_t M, int64_t D,
                           int64_t E, double scale) {
  int64_t qd[4], kd[4], vd[4], B = 1;
  for (int i = 0; i < rank - 2; i++) qd[i] = kd[i] = vd[i] = lead[i], B *= lead[i];
  qd[rank - 2] = N, qd[rank - 1] = D, kd[rank - 2] = M, kd[rank - 1] = D, vd[rank - 2] = M, vd[rank - 1] = E;
  ldmc_builder *b = ldmc_builder_new("attention");
  ldmc_value q = ldmc_parameter(b, "q", LDMC_F32, rank, qd), k = ldmc_parameter(b, "k", LDMC_F32, rank, kd),
             v = ldmc_parameter(b, "v", LDMC_F32, rank, vd);
  char name[128];
  snprintf(name, sizeof name, "attention B%" PRId64 " N%" PRId64 " M%" PRId64 " D%" PRId64 " E%" PRId64, B, N, M, D, E);
  expect x_ = {.rtol = 0, .arel = 2e-2, .macs = B * N * M * (D + E), .tiles = "flash"};
  check_graph(name, finish(b, ldmc_attention(b, q, k, v, scale)), t, x_);
}

/* head split and merge, [B, N, h, d] <-> [B, h, N, d]: the last dim kept, the longest other dim as rows */
/* a reshape inside the graph is its operand's buffer (no kernel); one of a parameter or an output is a copy */
static void test_reshape_alias(const ldmc_tpu_target *t) {
  int64_t d[2] = {6, 35}, d3[3] = {3, 14, 5};
  ldmc_builder *b = ldmc_builder_new("alias");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d);
  ldmc_value y = ldmc_unary(b, LDMC_OP_EXP, ldmc_reshape(b, ldmc_unary(b, LDMC_OP_TANH, ldmc_reshape(b, x, 3, d3)), 2, d));
  const expect x_ = {.rtol = 1e-5, .arel = 0, .macs = 0, .kernels = 3}; /* reshape of x, tanh, exp */
  check_graph("reshapes as aliases", finish(b, y), t, x_);
}

static void test_heads(const ldmc_tpu_target *t) {
  static const int64_t perm[4] = {0, 2, 1, 3}, shapes[2][4] = {{2, 50, 3, 4}, {2, 3, 50, 4}};
  const expect exact = {.rtol = 0, .arel = 0, .macs = 0};
  for (int i = 0; i < 2; i++) {
    ldmc_builder *b = ldmc_builder_new("heads");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, shapes[i]);
    check_graph(i ? "head merge [2,3,50,4] -> [2,50,3,4]" : "head split [2,50,3,4] -> [2,3,50,4]",
                finish(b, ldmc_transpose(b, x, perm)), t, exact);
  }
}

/* Elementwise chains fused into one vector kernel: a per-column scale, a
 * per-row shift (broadcasts of outside values), unary and binary ops, x
 * used twice (both uses in the chain: absorbed); and a chain whose middle
 * value also has a use outside it (not absorbed: its own kernel). */
static void test_fusion(const ldmc_tpu_target *t, int64_t r, int64_t c) {
  int64_t d[2] = {r, c}, gd[1] = {c}, bd[1] = {r}, m1[1] = {1}, m0[1] = {0};
  ldmc_builder *b = ldmc_builder_new("fuse");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d), g = ldmc_parameter(b, "g", LDMC_F32, 1, gd),
             sh = ldmc_parameter(b, "s", LDMC_F32, 1, bd);
  ldmc_value y = ldmc_add(b, ldmc_mul(b, x, ldmc_broadcast_in_dim(b, g, 2, d, m1)), ldmc_broadcast_in_dim(b, sh, 2, d, m0));
  y = ldmc_sub(b, ldmc_unary(b, LDMC_OP_TANH, y), ldmc_mul(b, x, ldmc_unary(b, LDMC_OP_LOGISTIC, x)));
  /* 8 nodes: 2 broadcasts, mul, add, tanh, logistic, mul, sub */
  expect x_ = {.rtol = 1e-5, .arel = 1e-6, .macs = 0, .kernels = 1, .last_nodes = 8, .tiles = "8 nodes fused"};
  check_graph("fused chain", finish(b, y), t, x_);
  /* a 4-D chain with a per-channel affine (group-norm style: [N, C, H, W] * g[C] + b[C]) */
  int64_t d4[4] = {2, 5, 7, 9}, cd[1] = {5}, map[1] = {1};
  b = ldmc_builder_new("fuse4");
  x = ldmc_parameter(b, "x", LDMC_F32, 4, d4);
  g = ldmc_parameter(b, "g", LDMC_F32, 1, cd);
  ldmc_value be = ldmc_parameter(b, "b", LDMC_F32, 1, cd);
  y = ldmc_add(b, ldmc_mul(b, x, ldmc_broadcast_in_dim(b, g, 4, d4, map)), ldmc_broadcast_in_dim(b, be, 4, d4, map));
  y = ldmc_mul(b, y, ldmc_unary(b, LDMC_OP_LOGISTIC, y)); /* SiLU: y used twice, both uses in the chain */
  expect x4 = {.rtol = 1e-5, .arel = 1e-6, .macs = 0, .kernels = 1, .last_nodes = 6};
  check_graph("per-channel affine then SiLU", finish(b, y), t, x4);
  /* the affine's value also feeds a reduction: needed off chip, so a chain of its own (3 kernels) */
  int64_t ax = 3, m3[3] = {0, 1, 2};
  b = ldmc_builder_new("fuse4r");
  x = ldmc_parameter(b, "x", LDMC_F32, 4, d4);
  g = ldmc_parameter(b, "g", LDMC_F32, 1, cd);
  be = ldmc_parameter(b, "b", LDMC_F32, 1, cd);
  y = ldmc_add(b, ldmc_mul(b, x, ldmc_broadcast_in_dim(b, g, 4, d4, map)), ldmc_broadcast_in_dim(b, be, 4, d4, map));
  ldmc_value sum = ldmc_reduce(b, LDMC_REDUCE_SUM, y, 1, &ax, false);
  y = ldmc_sub(b, ldmc_mul(b, y, ldmc_unary(b, LDMC_OP_LOGISTIC, y)), ldmc_broadcast_in_dim(b, sum, 4, d4, m3));
  expect xr = {.rtol = 1e-5, .arel = 1e-5, .macs = 0, .kernels = 3, .last_nodes = 4};
  check_graph("per-channel affine, SiLU minus its row sums", finish(b, y), t, xr);
}

/* A small chain of several kernels: softmax-like rows of a matmul. */
static void test_chain(const ldmc_tpu_target *t) {
  int64_t xd[2] = {19, 23}, wd[2] = {23, 17}, ax = 1, od[2] = {19, 17}, map[1] = {0};
  ldmc_builder *b = ldmc_builder_new("chain");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, xd), w = ldmc_parameter(b, "w", LDMC_F32, 2, wd);
  ldmc_value h = ldmc_matmul(b, x, w);
  ldmc_value m = ldmc_reduce(b, LDMC_REDUCE_MAX, h, 1, &ax, false);
  ldmc_value e = ldmc_unary(b, LDMC_OP_EXP, ldmc_sub(b, h, ldmc_broadcast_in_dim(b, m, 2, od, map)));
  ldmc_value s = ldmc_reduce(b, LDMC_REDUCE_SUM, e, 1, &ax, false);
  ldmc_value y = ldmc_div(b, e, ldmc_broadcast_in_dim(b, s, 2, od, map));
  expect x_ = {.rtol = 0, .arel = 3e-2, .bf16_oracle = true, .macs = 19 * 23 * 17};
  check_graph("softmax(x w) chain", finish(b, y), t, x_);
}


/* Movement as DMA copies: exact. Transposes (every permutation of a rank-3
 * value, one of rank 4), slices with steps, concatenations on every axis,
 * pads (edges, interior, cropping), reshape and an f32 -> f32 convert. */
static void test_move(const ldmc_tpu_target *t) {
  static const int64_t perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  const expect exact = {.rtol = 0, .arel = 0, .macs = 0};
  int64_t d[3] = {5, 37, 29};
  for (int p = 1; p < 6; p++) { /* perm 012 is no node: the builder returns x */
    ldmc_builder *b = ldmc_builder_new("transpose");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
    char name[96];
    snprintf(name, sizeof name, "transpose [5,37,29] perm %" PRId64 "%" PRId64 "%" PRId64, perms[p][0], perms[p][1],
             perms[p][2]);
    check_graph(name, finish(b, ldmc_transpose(b, x, perms[p])), t, exact);
  }
  {
    int64_t d4[4] = {2, 3, 9, 70}, perm[4] = {0, 2, 1, 3}; /* attention's head split */
    ldmc_builder *b = ldmc_builder_new("transpose4");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, d4);
    check_graph("transpose [2,3,9,70] perm 0213", finish(b, ldmc_transpose(b, x, perm)), t, exact);
  }
  {
    int64_t st[3] = {1, 2, 0}, li[3] = {5, 37, 29}, sd[3] = {2, 3, 1}, sd2[3] = {1, 1, 2};
    ldmc_builder *b = ldmc_builder_new("slice");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
    check_graph("slice [5,37,29] steps 2,3,1", finish(b, ldmc_slice(b, x, st, li, sd)), t, exact);
    b = ldmc_builder_new("slice2");
    x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
    check_graph("slice [5,37,29] steps 1,1,2", finish(b, ldmc_slice(b, x, st, li, sd2)), t, exact);
  }
  for (int ax = 0; ax < 3; ax++) {
    ldmc_builder *b = ldmc_builder_new("concat");
    ldmc_value xs[3];
    for (int k = 0; k < 3; k++) {
      int64_t dk[3] = {4, 11, 33};
      dk[ax] = 1 + 3 * k;
      char nm[8];
      snprintf(nm, sizeof nm, "x%d", k);
      xs[k] = ldmc_parameter(b, nm, LDMC_F32, 3, dk);
    }
    char name[64];
    snprintf(name, sizeof name, "concatenate axis %d", ax);
    check_graph(name, finish(b, ldmc_concatenate(b, 3, xs, ax)), t, exact);
  }
  for (int form = 0; form < 3; form++) { /* pad: edges, interior, cropping (negative) with interior */
    static const int64_t lo[3][3] = {{1, 0, 3}, {0, 2, 1}, {-1, 1, -2}}, hi[3][3] = {{2, 1, 0}, {1, 0, 2}, {0, -3, 1}},
                         in[3][3] = {{0, 0, 0}, {1, 0, 2}, {2, 1, 0}};
    ldmc_builder *b = ldmc_builder_new("pad");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d), v = ldmc_parameter(b, "v", LDMC_F32, 0, NULL);
    char name[64];
    snprintf(name, sizeof name, "pad [5,37,29] (%s)", form == 0 ? "edges" : form == 1 ? "interior" : "cropping");
    const expect padx = {.rtol = 0, .arel = 0, .macs = 0, .rewrites = true};
    check_graph(name, finish(b, ldmc_pad(b, x, v, lo[form], hi[form], in[form])), t, padx);
  }
  {
    int64_t flat[2] = {5 * 37, 29};
    ldmc_builder *b = ldmc_builder_new("reshape");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
    check_graph("reshape [5,37,29] -> [185,29]", finish(b, ldmc_reshape(b, x, 2, flat)), t, exact);
    b = ldmc_builder_new("convert");
    x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
    check_graph("convert f32 -> f32", finish(b, ldmc_convert(b, x, LDMC_F32)), t, exact);
  }
}

/* sin, cos by range reduction and polynomials: within 1e-6 of the
 * interpreter's libm, on [-2, 2] and on arguments up to 1000 (the
 * timestep embedding's). */
static void test_sincos(const ldmc_tpu_target *t) {
  for (int op = 0; op < 2; op++)
    for (int wide = 0; wide < 2; wide++) {
      int64_t d[2] = {9, 77};
      ldmc_builder *b = ldmc_builder_new("sincos");
      ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d);
      if (wide) x = ldmc_mul(b, x, ldmc_broadcast_in_dim(b, ldmc_constant(b, LDMC_F32, 0, NULL, (float[]){500.0f}), 2, d, NULL));
      ldmc_op o = op ? LDMC_OP_COS : LDMC_OP_SIN;
      char name[64];
      snprintf(name, sizeof name, "%s on [%s]", ldmc_op_name(o), wide ? "-1000, 1000" : "-2, 2");
      expect x_ = {.rtol = 0, .arel = wide ? 3e-6 : 1e-6, .macs = 0};
      check_graph(name, finish(b, ldmc_unary(b, o, x)), t, x_);
    }
}

/* convolution (NCHW, OIHW) by implicit im2col: within bf16 tolerance of the
 * interpreter on f32 inputs, within f32 accumulation error on bf16-rounded
 * inputs; MACs as the convolution's. */
static void test_conv(const ldmc_tpu_target *t, int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t k,
                      int stride, int pad, int groups) {
  int64_t xd[4] = {n, c, h, w}, wd[4] = {o, c / groups, k, k};
  ldmc_builder *b = ldmc_builder_new("conv");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), wv = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  ldmc_value y = ldmc_conv2d(b, x, wv, stride, pad, 1, groups);
  int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
  char name[128];
  snprintf(name, sizeof name, "conv [%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] * [%" PRId64 ",%" PRId64
           ",%" PRId64 ",%" PRId64 "] s%d p%d g%d", n, c, h, w, o, c / groups, k, k, stride, pad, groups);
  expect x_ = {.rtol = 0, .arel = 3e-2, .bf16_oracle = true, .macs = n * o * oh * ow * (c / groups) * k * k};
  check_graph(name, finish(b, y), t, x_);
}

/* A convolution with per-dim strides and asymmetric (or negative: cropping) padding. */
static void test_conv_raw(const ldmc_tpu_target *t, int64_t s0, int64_t s1, int64_t pl0, int64_t ph0, int64_t pl1,
                          int64_t ph1) {
  int64_t xd[4] = {1, 3, 11, 7}, wd[4] = {5, 3, 3, 2};
  ldmc_builder *b = ldmc_builder_new("conv_raw");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  ldmc_graph *g = ldmc_builder_graph(b);
  ldmc_attrs a = {0};
  a.window_stride = (ldmc_ints){.n = 2, .v = {s0, s1}};
  a.pad_low = (ldmc_ints){.n = 2, .v = {pl0, pl1}};
  a.pad_high = (ldmc_ints){.n = 2, .v = {ph0, ph1}};
  a.lhs_dilation = a.rhs_dilation = (ldmc_ints){.n = 2, .v = {1, 1}};
  a.groups = 1;
  a.input_dims = a.kernel_dims = a.output_dims = (ldmc_ints){.n = 4, .v = {0, 1, 2, 3}};
  int32_t ops[2] = {x, w};
  ldmc_value y = ldmc_graph_add_checked(g, LDMC_OP_CONVOLUTION, LDMC_F32, NULL, 2, ops, &a, NULL);
  int64_t oh = (11 + pl0 + ph0 - 3) / s0 + 1, ow = (7 + pl1 + ph1 - 2) / s1 + 1;
  char name[128];
  snprintf(name, sizeof name, "conv 3x2 strides %" PRId64 ",%" PRId64 " pads %" PRId64 ":%" PRId64 ",%" PRId64 ":%" PRId64,
           s0, s1, pl0, ph0, pl1, ph1);
  expect x_ = {.rtol = 0, .arel = 3e-2, .bf16_oracle = true, .macs = 5 * oh * ow * 3 * 3 * 2};
  check_graph(name, finish(b, y), t, x_);
}

static void test_refusals(void) {
  /* a convolution without bf16 allowed, and a dilated one: compile errors naming the node */
  int64_t xd[4] = {1, 3, 8, 8}, wd[4] = {4, 3, 3, 3};
  for (int dil = 1; dil <= 2; dil++) {
    ldmc_builder *b = ldmc_builder_new("conv");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
    ldmc_value y = ldmc_conv2d(b, x, w, 1, 1, dil, 1);
    ldmc_graph *g = finish(b, ldmc_unary(b, LDMC_OP_EXP, y));
    CHECK(g != NULL);
    if (!g) return;
    char want[64];
    snprintf(want, sizeof want, "%%%d convolution", (int)y);
    CHECK(!ldmc_backend_tpusim.supports(&g->nodes[y]));
    ldmc_executable *e = NULL;
    ldmc_compile_opts o = {.bf16 = dil == 2};
    ldmc_status st = ldmc_backend_tpusim.compile(g, &o, &e);
    const char *msg = ldmc_last_error();
    CHECK_MSG(st == LDMC_ERR_UNSUPPORTED && e == NULL && strstr(msg, want) && strstr(msg, "tpusim") &&
                  strstr(msg, dil == 2 ? "dilated" : "bf16"),
              "status %d: %s", (int)st, msg);
    ldmc_graph_free(g);
  }
  /* a convert from a non-f32 operand: refused at the bf16 parameter, the first node that is not f32 */
  {
    int64_t d1[1] = {5};
    ldmc_builder *b = ldmc_builder_new("convert");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_BF16, 1, d1);
    ldmc_value y = ldmc_convert(b, x, LDMC_F32);
    ldmc_graph *g = finish(b, y);
    CHECK(g && ldmc_backend_tpusim.supports(&g->nodes[y]) && !ldmc_backend_tpusim.supports(&g->nodes[x]));
    ldmc_executable *e = NULL;
    ldmc_compile_opts o = {.bf16 = true};
    ldmc_status st = g ? ldmc_backend_tpusim.compile(g, &o, &e) : LDMC_ERR_INVALID;
    const char *msg = ldmc_last_error();
    CHECK_MSG(st == LDMC_ERR_UNSUPPORTED && e == NULL && strstr(msg, "tpusim") && strstr(msg, "f32"), "status %d: %s",
              (int)st, msg);
    ldmc_graph_free(g);
  }
  ldmc_builder *b;
  ldmc_value x, w, y;
  ldmc_graph *g;
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.bf16 = true};
  ldmc_status st;
  char want[64];
  const char *msg;

  /* dot_general without bf16 allowed; reduce over dims that are not consecutive */
  int64_t d[2] = {4, 5}, d2[2] = {5, 3}, d3[3] = {2, 3, 4}, ax02[2] = {0, 2};
  b = ldmc_builder_new("dot");
  x = ldmc_parameter(b, "x", LDMC_F32, 2, d);
  w = ldmc_parameter(b, "w", LDMC_F32, 2, d2);
  y = ldmc_matmul(b, x, w);
  g = finish(b, y);
  CHECK(g && !ldmc_backend_tpusim.supports(&g->nodes[y]));
  ldmc_compile_opts plain = {0};
  st = g ? ldmc_backend_tpusim.compile(g, &plain, &e) : LDMC_ERR_INVALID;
  snprintf(want, sizeof want, "%%%d dot_general", (int)y);
  msg = ldmc_last_error();
  CHECK_MSG(st == LDMC_ERR_UNSUPPORTED && strstr(msg, want) && strstr(msg, "bf16"), "status %d: %s", (int)st, msg);
  ldmc_graph_free(g);
  b = ldmc_builder_new("reduce02");
  x = ldmc_parameter(b, "x", LDMC_F32, 3, d3);
  y = ldmc_reduce(b, LDMC_REDUCE_SUM, x, 2, ax02, false);
  g = finish(b, y);
  CHECK(g && !ldmc_backend_tpusim.supports(&g->nodes[y]));
  st = g ? ldmc_backend_tpusim.compile(g, &o, &e) : LDMC_ERR_INVALID;
  snprintf(want, sizeof want, "%%%d reduce", (int)y);
  msg = ldmc_last_error();
  CHECK_MSG(st == LDMC_ERR_UNSUPPORTED && strstr(msg, want), "status %d: %s", (int)st, msg);

  /* the target from the environment: a preset by name, or an error naming the presets */
  setenv("LDMC_TPUSIM_TARGET", "v1", 1);
  ldmc_graph_free(g);
  b = ldmc_builder_new("env");
  x = ldmc_parameter(b, "x", LDMC_F32, 2, d);
  g = finish(b, ldmc_unary(b, LDMC_OP_EXP, x));
  st = g ? ldmc_backend_tpusim.compile(g, &o, &e) : LDMC_ERR_INVALID;
  CHECK(st == LDMC_OK && ldmc_tpusim_target(e) && strcmp(ldmc_tpusim_target(e)->name, "v1") == 0);
  ldmc_executable_free(e);
  e = NULL;
  setenv("LDMC_TPUSIM_TARGET", "v99", 1);
  st = g ? ldmc_backend_tpusim.compile(g, &o, &e) : LDMC_ERR_INVALID;
  CHECK_MSG(st != LDMC_OK && strstr(ldmc_last_error(), "v5e"), "%s", ldmc_last_error());
  unsetenv("LDMC_TPUSIM_TARGET");
  CHECK(ldmc_tpusim_kernel_count(NULL) == -1);
  ldmc_graph_free(g);
}

int main(void) {
  ldmc_tpu_target tiny = tpusim_tiny_target(8192), tinier = tpusim_tiny_target(2048), v5e, v1;
  CHECK(ldmc_tpu_target_check(&tiny, "tiny") == LDMC_OK);
  CHECK(ldmc_tpu_target_check(&tinier, "tinier") == LDMC_OK);
  CHECK(ldmc_tpu_target_preset("v5e", &v5e) == LDMC_OK);
  CHECK(ldmc_tpu_target_preset("v1", &v1) == LDMC_OK);
  const ldmc_tpu_target *targets[] = {&tiny, &tinier, &v5e, &v1};
  for (int ti = 0; ti < 4; ti++) {
    const ldmc_tpu_target *t = targets[ti];
    test_unary(t, 37, 100); /* 37 rows of 100: many row tiles on tiny */
    test_unary(t, 1, 1);
    int64_t d1[1] = {1000}, d3[3] = {3, 7, 65}, d2[2] = {5, 1000};
    test_binary(t, 1, d1); /* one row, tiled by columns on tiny */
    test_binary(t, 3, d3);
    test_binary(t, 2, d2);
    test_bcast(t, 13, 29);
    test_bcast(t, 3, 700); /* a column broadcast wider than a tile */
    test_bcast_forms(t);
    test_reduce(t, 9, 33);
    test_reduce(t, 3, 900); /* rows longer than a tile: accumulation over column tiles */
    test_dot(t, 0, 1, 1, 1, false);
    test_dot(t, 0, 37, 45, 29, false);
    test_dot(t, 0, 37, 45, 29, true);
    test_dot(t, 3, 17, 20, 9, false);
    test_dot(t, 3, 17, 20, 9, true);
    test_chain(t);
    test_fusion(t, 37, 100);
    test_attention(t, 4, (int64_t[]){2, 3}, 37, 45, 12, 20, 0.3);
    test_attention(t, 3, (int64_t[]){2}, 19, 130, 9, 9, 1.0 / 3);
    test_attention(t, 2, NULL, 1, 1, 3, 5, 1.0);
    test_move(t);
    test_heads(t);
    test_reshape_alias(t);
    test_sincos(t);
    test_conv(t, 1, 3, 8, 8, 5, 3, 1, 1, 1);    /* 3x3, pad 1, stride 1 */
    test_conv(t, 2, 6, 9, 7, 4, 3, 2, 1, 1);    /* stride 2, odd sizes, batch 2 */
    test_conv(t, 1, 20, 5, 6, 13, 1, 1, 0, 1);  /* 1x1 */
    test_conv(t, 1, 4, 6, 6, 6, 3, 1, 1, 2);    /* two feature groups */
    test_conv(t, 1, 3, 4, 5, 2, 3, 1, 2, 1);    /* padding wider than the window's reach: whole padded rows */
    test_conv_raw(t, 2, 1, 0, 2, 1, 0);         /* asymmetric */
    test_conv_raw(t, 1, 3, -1, 1, 2, -1);       /* cropping (negative padding), stride 3 along W */
  }
  test_conv(&v5e, 1, 64, 16, 16, 96, 3, 1, 1, 1); /* K = 576 over several K blocks, 256 pixels over two units */
  test_dot(&v5e, 0, 130, 300, 200, false); /* more than one 128 x 128 tile, K over two units */
  test_dot(&v5e, 2, 64, 136, 130, true);
  test_attention(&v5e, 3, (int64_t[]){3}, 300, 333, 200, 150, 0.07); /* D over two weight slices, E over two units */
  test_attention(&v5e, 3, (int64_t[]){2}, 1000, 77, 64, 64, 0.125);  /* cross-attention shape: few keys */
  test_refusals();
  return test_summary("tpusim_backend");
}
