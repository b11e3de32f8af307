/* Epilogue fusion on tpusim (backends/tpusim/lower_epi.c): a dot_general or
 * convolution whose only consumer is an elementwise chain runs the chain on
 * its output tiles on chip and stores only the chain's root.
 *
 * Each case is compiled twice: as built (fused) and with the producer's
 * value also an output (then it must be written off chip, so it is not
 * fused: the baseline). Checked: the fused output against the interpreter
 * (within bf16 tolerance on f32 inputs, and within f32 error of the
 * interpreter on bf16-rounded inputs, what the matrix units compute); one
 * kernel fewer than the baseline; no off-chip buffer holds the producer's
 * value; the fused kernel lists the producer and the chain, root last; and
 * on v5e, where the shapes are one output tile, the DMA bytes are the
 * baseline's less the producer's value written once and read back once
 * (8 bytes per element, by hand), with the fused kernel's own bytes counted
 * by hand. Grouped and strided convolutions with a bias and SiLU, on many
 * tiles on the tiny targets (where the planner may decline a fusion that
 * would move more bytes: then it must be the baseline). A chain whose
 * operand is not strided along the producer's tiles,
 * and a chain fed by two matmuls (one is fused, the other read from off
 * chip) are checked against the interpreter too. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/tpusim/tpusim.h"
#include "frontend/frontend.h"
#include "support/half.h"
#include "test_util.h"
#include "tpusim_test_util.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double runif(double lo, double hi) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (double)(g_rng >> 11) / 9007199254740992.0;
}

static void make_inputs(const ldmc_graph *g, ldmc_tensor *t, int np, bool round_bf16) {
  uint64_t saved = g_rng;
  for (int k = 0; k < np; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    CHECK(ldmc_tensor_alloc(&t[k], p->attrs.name, p->dtype, &p->shape) == LDMC_OK);
    int64_t cnt = 1;
    for (int d = 0; d < p->shape.rank; d++) cnt *= p->shape.dims[d];
    float *f = t[k].data;
    for (int64_t e = 0; e < cnt; e++) {
      float v = (float)runif(-2.0, 2.0);
      f[e] = round_bf16 ? ldmc_bf16_to_f32(ldmc_f32_to_bf16(v)) : v;
    }
  }
  g_rng = saved; /* the same draws for the next call */
}

/* max |got - want| / max |want| */
static double rel_err(const ldmc_tensor *got, const ldmc_tensor *want) {
  int64_t n = 1;
  for (int d = 0; d < want->shape.rank; d++) n *= want->shape.dims[d];
  const float *a = got->data, *w = want->data;
  double amax = 0, e = 0;
  for (int64_t i = 0; i < n; i++) amax = fabs(w[i]) > amax ? fabs(w[i]) : amax;
  for (int64_t i = 0; i < n; i++) e = fabs((double)a[i] - w[i]) > e ? fabs((double)a[i] - w[i]) : e;
  return e / (amax > 0 ? amax : 1);
}

typedef struct prog_stats {
  int kernels;
  uint64_t bytes;          /* DMA bytes of all kernels (loads + stores) */
  uint64_t loaded, stored; /* of the last kernel (the output's) */
  bool producer_buffer;    /* some kernel has an off-chip buffer holding a producer's value */
  int producers_held;      /* how many producers have one */
  int last_nodes;
  bool last_has_producer;
  char last_tiles[64];
  const char *event_name; /* the profiler's name of the last kernel */
} prog_stats;

static void last_name(void *ctx, const ldmc_kernel_event *ev) {
  prog_stats *s = ctx;
  s->event_name = ev->name;
}

static bool is_producer(ldmc_op op) { return op == LDMC_OP_DOT_GENERAL || op == LDMC_OP_CONVOLUTION; }

/* Compiles g on t (bf16 allowed), runs it on f32 and on bf16-rounded inputs, compares output 0 with
 * the interpreter; fills the statistics of the executable. */
static bool run_case(const char *name, ldmc_graph *g, const ldmc_tpu_target *t, prog_stats *s) {
  memset(s, 0, sizeof *s);
  int np = ldmc_graph_num_params(g), no = g->n_outputs;
  ldmc_tensor in[8] = {{0}}, in16[8] = {{0}}, got[2] = {{0}}, want[2] = {{0}}, got16[2] = {{0}}, want16[2] = {{0}};
  make_inputs(g, in, np, false);
  make_inputs(g, in16, np, true);
  ldmc_executable *e = NULL, *ie = NULL;
  ldmc_compile_opts o = {.bf16 = true}, io = {.threads = 1};
  ldmc_status st = ldmc_tpusim_compile(g, &o, t, &e);
  CHECK_MSG(st == LDMC_OK, "%s (%s): compile: %s", name, t->name, ldmc_last_error());
  prog_stats *sp = s;
  ldmc_profile_hook hook = {.kernel = last_name, .ctx = sp};
  if (st == LDMC_OK) CHECK(ldmc_executable_set_profiler(e, &hook) == LDMC_OK);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, np, got, no);
  if (st == LDMC_OK) ldmc_executable_set_profiler(e, NULL);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in16, np, got16, no);
  CHECK_MSG(st == LDMC_OK, "%s (%s): run: %s", name, t->name, ldmc_last_error());
  ldmc_status is = ldmc_backend_interp.compile(g, &io, &ie);
  if (is == LDMC_OK) is = ldmc_executable_run(ie, in, np, want, no);
  if (is == LDMC_OK) is = ldmc_executable_run(ie, in16, np, want16, no);
  CHECK_MSG(is == LDMC_OK, "%s: interp: %s", name, ldmc_last_error());
  if (st == LDMC_OK && is == LDMC_OK) {
    double e32 = rel_err(&got[0], &want[0]), e16 = rel_err(&got16[0], &want16[0]);
    CHECK_MSG(e32 <= 3e-2, "%s (%s): %.3g of max |out| from the interpreter", name, t->name, e32);
    CHECK_MSG(e16 <= 1e-4, "%s (%s) on bf16 inputs: %.3g of max |out| from the interpreter", name, t->name, e16);
    const ldmc_graph *eg = e->graph;
    s->kernels = ldmc_tpusim_kernel_count(e);
    for (int i = 0; i < s->kernels; i++) {
      ldmc_tpusim_kernel k;
      CHECK(ldmc_tpusim_kernel_get(e, i, &k) == LDMC_OK);
      CHECK_MSG(ldmc_tpu_verify(t, k.program, &k.mem) == LDMC_OK, "%s: kernel %d: %s", name, i, ldmc_last_error());
      s->bytes += k.stats.bytes_loaded + k.stats.bytes_stored;
      for (int b = 0; b < k.mem.count; b++)
        if (is_producer(eg->nodes[k.buf_nodes[b]].op)) s->producer_buffer = true;
      for (int j = 0; j < k.n_nodes; j++) CHECK(j == 0 || k.nodes[j - 1] < k.nodes[j]);
      CHECK(k.nodes[k.n_nodes - 1] == k.node);
      if (i + 1 == s->kernels) {
        s->loaded = k.stats.bytes_loaded, s->stored = k.stats.bytes_stored;
        s->last_nodes = k.n_nodes;
        for (int j = 0; j < k.n_nodes; j++) s->last_has_producer |= is_producer(eg->nodes[k.nodes[j]].op);
        snprintf(s->last_tiles, sizeof s->last_tiles, "%s", k.tiles);
      }
    }
    for (int32_t i = 0; i < eg->n_nodes; i++) {
      if (!is_producer(eg->nodes[i].op)) continue;
      bool held = false;
      for (int kk = 0; kk < s->kernels && !held; kk++) {
        ldmc_tpusim_kernel k;
        ldmc_tpusim_kernel_get(e, kk, &k);
        for (int b = 0; b < k.mem.count; b++) held |= k.buf_nodes[b] == i;
      }
      s->producers_held += held;
    }
  }
  for (int i = 0; i < np; i++) ldmc_tensor_release(&in[i]), ldmc_tensor_release(&in16[i]);
  for (int i = 0; i < no; i++)
    ldmc_tensor_release(&got[i]), ldmc_tensor_release(&want[i]), ldmc_tensor_release(&got16[i]),
        ldmc_tensor_release(&want16[i]);
  ldmc_executable_free(e);
  ldmc_executable_free(ie);
  ldmc_graph_free(g);
  return st == LDMC_OK && is == LDMC_OK;
}

static ldmc_graph *finish(ldmc_builder *b, ldmc_value y, ldmc_value also) {
  ldmc_builder_output(b, y, "y");
  if (also >= 0) ldmc_builder_output(b, also, "h");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

/* y = act(x w + b) for x [M, K], w [K, N], b [N]: act 0 GELU, 1 SiLU; baseline: x w also an output. */
static ldmc_graph *g_dense(int64_t M, int64_t K, int64_t N, int act, bool baseline) {
  int64_t xd[2] = {M, K}, wd[2] = {K, N}, bd[1] = {N}, od[2] = {M, N}, map[1] = {1};
  ldmc_builder *b = ldmc_builder_new("dense");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, xd), w = ldmc_parameter(b, "w", LDMC_F32, 2, wd),
             bias = ldmc_parameter(b, "b", LDMC_F32, 1, bd);
  ldmc_value h = ldmc_matmul(b, x, w);
  ldmc_value z = ldmc_add(b, h, ldmc_broadcast_in_dim(b, bias, 2, od, map));
  return finish(b, act == 0 ? ldmc_gelu(b, z) : ldmc_silu(b, z), baseline ? h : -1);
}

/* y = conv3x3(x, w) + b + r for x [n, c, hw, hw], w [o, c, 3, 3], b [o], r [n, o, hw, hw]. */
static ldmc_graph *g_conv(int64_t n, int64_t c, int64_t hw, int64_t o, bool baseline) {
  int64_t xd[4] = {n, c, hw, hw}, wd[4] = {o, c, 3, 3}, bd[1] = {o}, od[4] = {n, o, hw, hw}, map[1] = {1};
  ldmc_builder *b = ldmc_builder_new("conv_res");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd),
             bias = ldmc_parameter(b, "b", LDMC_F32, 1, bd), r = ldmc_parameter(b, "r", LDMC_F32, 4, od);
  ldmc_value h = ldmc_conv2d(b, x, w, 1, 1, 1, 1);
  ldmc_value y = ldmc_add(b, ldmc_add(b, h, ldmc_broadcast_in_dim(b, bias, 4, od, map)), r);
  return finish(b, y, baseline ? h : -1);
}

/* y = silu(conv3x3(x, w, stride, groups) + b): a batch of 2, two feature groups or stride 2. */
static ldmc_graph *g_conv_act(int stride, int groups, bool baseline) {
  int64_t c = 4, o = 6, hw = 7, ohw = (hw + 2 - 3) / stride + 1;
  int64_t xd[4] = {2, c, hw, hw}, wd[4] = {o, c / groups, 3, 3}, bd[1] = {o}, od[4] = {2, o, ohw, ohw}, map[1] = {1};
  ldmc_builder *b = ldmc_builder_new("conv_act");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd),
             bias = ldmc_parameter(b, "b", LDMC_F32, 1, bd);
  ldmc_value h = ldmc_conv2d(b, x, w, stride, 1, 1, groups);
  return finish(b, ldmc_silu(b, ldmc_add(b, h, ldmc_broadcast_in_dim(b, bias, 4, od, map))), baseline ? h : -1);
}

/* x [10, 12] w [12, 7] reshaped to [2, 5, 7], then + v broadcast along dim `along` (2: a bias [7],
 * fused through the reshape; 1: a shift [5], not strided along the matmul's rows: not fused), tanh. */
static ldmc_graph *g_reshaped(int along, bool baseline) {
  int64_t xd[2] = {10, 12}, wd[2] = {12, 7}, od[3] = {2, 5, 7}, vd[1] = {along == 2 ? 7 : 5}, map[1] = {along};
  ldmc_builder *b = ldmc_builder_new("reshaped");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, xd), w = ldmc_parameter(b, "w", LDMC_F32, 2, wd),
             v = ldmc_parameter(b, "v", LDMC_F32, 1, vd);
  ldmc_value h = ldmc_matmul(b, x, w);
  ldmc_value z = ldmc_add(b, ldmc_reshape(b, h, 3, od), ldmc_broadcast_in_dim(b, v, 3, od, map));
  return finish(b, ldmc_unary(b, LDMC_OP_TANH, z), baseline ? h : -1);
}

/* y = exp(x1 w1 + x2 w2): one chain, two producers. */
static ldmc_graph *g_two(void) {
  int64_t xd[2] = {9, 11}, wd[2] = {11, 13};
  ldmc_builder *b = ldmc_builder_new("two");
  ldmc_value x1 = ldmc_parameter(b, "x1", LDMC_F32, 2, xd), w1 = ldmc_parameter(b, "w1", LDMC_F32, 2, wd);
  ldmc_value x2 = ldmc_parameter(b, "x2", LDMC_F32, 2, xd), w2 = ldmc_parameter(b, "w2", LDMC_F32, 2, wd);
  ldmc_value z = ldmc_add(b, ldmc_matmul(b, x1, w1), ldmc_matmul(b, x2, w2));
  return finish(b, ldmc_unary(b, LDMC_OP_EXP, ldmc_mul(b, z, z)), -1);
}

/* The fused program against its baseline: one kernel fewer, no producer's value off chip, the output
 * kernel computes the producer and the chain (chain_nodes of them, if >= 0), fewer DMA bytes; saving >= 0:
 * exactly that many fewer bytes. */
static void check_fused(const char *name, const ldmc_tpu_target *t, const prog_stats *f, const prog_stats *b,
                        int chain_nodes, int64_t saving, const char *event, bool must) {
  if (!must && f->kernels == b->kernels) { /* declined (more bytes fused): as the baseline, less the extra output */
    CHECK_MSG(f->producer_buffer && strstr(f->last_tiles, "epilogue") == NULL, "%s (%s): declined but fused", name,
              t->name);
    printf("  %s (%s): not fused (%" PRIu64 " bytes unfused)\n", name, t->name, b->bytes);
    return;
  }
  CHECK_MSG(f->kernels == b->kernels - 1, "%s (%s): %d kernels fused, %d unfused", name, t->name, f->kernels, b->kernels);
  CHECK_MSG(!f->producer_buffer && b->producer_buffer, "%s (%s): the producer's value is off chip only unfused", name,
            t->name);
  CHECK_MSG(f->last_has_producer && (chain_nodes < 0 || f->last_nodes == chain_nodes), "%s (%s): the fused kernel computes %d nodes, expected %d",
            name, t->name, f->last_nodes, chain_nodes);
  CHECK_MSG(strstr(f->last_tiles, "epilogue") != NULL, "%s (%s): tiles '%s'", name, t->name, f->last_tiles);
  CHECK_MSG(f->event_name && strcmp(f->event_name, event) == 0, "%s (%s): event '%s', expected '%s'", name, t->name,
            f->event_name ? f->event_name : "(none)", event);
  CHECK_MSG(f->bytes < b->bytes, "%s (%s): %" PRIu64 " DMA bytes fused, %" PRIu64 " unfused", name, t->name, f->bytes,
            b->bytes);
  if (saving >= 0)
    CHECK_MSG(b->bytes - f->bytes == (uint64_t)saving, "%s (%s): %" PRIu64 " DMA bytes saved, expected %" PRId64, name,
              t->name, b->bytes - f->bytes, saving);
}

int main(void) {
  ldmc_tpu_target tiny = tpusim_tiny_target(8192), tinier = tpusim_tiny_target(2048), v5e, v1;
  CHECK(ldmc_tpu_target_preset("v5e", &v5e) == LDMC_OK);
  CHECK(ldmc_tpu_target_preset("v1", &v1) == LDMC_OK);
  const ldmc_tpu_target *targets[] = {&v5e, &v1, &tiny, &tinier};
  for (int ti = 0; ti < 4; ti++) {
    const ldmc_tpu_target *t = targets[ti];
    bool one_tile = t == &v5e, tiny_t = t == &tiny || t == &tinier; /* one output tile on v5e: exact byte counts */
    prog_stats f, b;
    /* matmul + bias + GELU / SiLU: the decomposed activation's nodes all in the chain; on the tiny
     * targets many tiles, partial at the edges (a short K keeps the matmul's re-reads cheap) */
    for (int act = 0; act < 2; act++) {
      const int64_t M = tiny_t ? 37 : 64, K = tiny_t ? 8 : 96, N = tiny_t ? 45 : 128;
      const char *name = act == 0 ? "matmul + bias + GELU" : "matmul + bias + SiLU";
      if (run_case(name, g_dense(M, K, N, act, false), t, &f) && run_case(name, g_dense(M, K, N, act, true), t, &b)) {
        check_fused(name, t, &f, &b, -1, one_tile ? 8 * M * N : -1, "dot_general+ew", t != &tinier);
        if (one_tile) { /* x, w and b read once, y written once (GELU's constants are immediates) */
          CHECK_MSG(f.loaded == 4 * (uint64_t)(M * K + K * N + N) && f.stored == 4 * (uint64_t)(M * N),
                    "%s (v5e): %" PRIu64 " bytes loaded, %" PRIu64 " stored", name, f.loaded, f.stored);
        }
        /* the baseline's output kernel is the chain alone; fused: that chain plus the matmul */
        if (f.kernels < b.kernels)
          CHECK_MSG(f.last_nodes == b.last_nodes + 1 && !b.last_has_producer, "%s (%s): %d nodes fused, chain of %d", name,
                    t->name, f.last_nodes, b.last_nodes);
      }
    }
    if (t == &v5e) { /* several output tiles (N over two 512-column tiles, the second partial) */
      const char *name = "matmul 300x200x600 + bias + SiLU";
      if (run_case(name, g_dense(300, 200, 600, 1, false), t, &f) && run_case(name, g_dense(300, 200, 600, 1, true), t, &b)) {
        check_fused(name, t, &f, &b, -1, -1, "dot_general+ew", true);
        /* at least the product's round trip; the unfused chain's row tiles also re-read the bias */
        CHECK_MSG(b.bytes - f.bytes >= 8 * 300 * 600, "%s: %" PRIu64 " bytes saved", name, b.bytes - f.bytes);
      }
    }
    /* convolution + bias + residual add */
    {
      const int64_t n = 2, c = tiny_t ? 2 : 16, hw = tiny_t ? 6 : 8, o = tiny_t ? 5 : 32;
      const char *name = "conv3x3 + bias + residual";
      if (run_case(name, g_conv(n, c, hw, o, false), t, &f) && run_case(name, g_conv(n, c, hw, o, true), t, &b)) {
        /* nodes: convolution, the bias's broadcast, two adds */
        check_fused(name, t, &f, &b, 4, one_tile ? 8 * n * o * hw * hw : -1, "convolution+ew", !tiny_t);
        if (one_tile)
          CHECK_MSG(f.stored == 4 * (uint64_t)(n * o * hw * hw), "%s (v5e): %" PRIu64 " bytes stored", name, f.stored);
      }
    }
    /* grouped and strided convolutions: the bias per output channel of each group's tiles */
    for (int v = 0; v < 2; v++) {
      const char *name = v ? "conv3x3 stride 2 + bias + SiLU" : "grouped conv3x3 + bias + SiLU";
      if (run_case(name, g_conv_act(v ? 2 : 1, v ? 1 : 2, false), t, &f) &&
          run_case(name, g_conv_act(v ? 2 : 1, v ? 1 : 2, true), t, &b))
        check_fused(name, t, &f, &b, -1, -1, "convolution+ew", !tiny_t);
    }
    /* through a reshape: bias along the matmul's columns (fused), a shift along a dim split across its rows (not) */
    {
      const char *name = "matmul, reshape, + bias, tanh";
      if (run_case(name, g_reshaped(2, false), t, &f) && run_case(name, g_reshaped(2, true), t, &b))
        check_fused(name, t, &f, &b, 5, one_tile ? 8 * 10 * 7 : -1, "dot_general+ew", !tiny_t); /* matmul, reshape, bcast, add, tanh */
      name = "matmul, reshape, + per-row shift of a split dim, tanh";
      if (run_case(name, g_reshaped(1, false), t, &f))
        CHECK_MSG(f.producer_buffer && f.kernels == 2 && strstr(f.last_tiles, "epilogue") == NULL,
                  "%s (%s): %d kernels, matmul off chip %d, tiles '%s'", name, t->name, f.kernels, f.producer_buffer,
                  f.last_tiles);
    }
    /* a chain read by two matmuls: one is its epilogue, the other its own kernel */
    if (run_case("two matmuls into one chain", g_two(), t, &f))
      CHECK_MSG(f.kernels == 2 && f.producers_held == 1 && f.last_has_producer, "two matmuls (%s): %d kernels, %d held",
                t->name, f.kernels, f.producers_held);
  }
  return test_summary("tpusim_epilogue");
}
