/* Profiler rows of llvm-cpu's fused kernels: a GEMM or convolution with its
 * epilogue (bias, scale, residual, activation) and a norm with its silu. For
 * each graph, compiled with the GEMM-store epilogue and without it
 * (LDMC_LLVM_CPU_EPILOGUE=0), one run's events must
 *  - cover every non-source node of the executable's graph (e->graph, the
 *    pipeline-optimized one) exactly once among the computing events (packs,
 *    copies and other helper steps list the one node they serve and report
 *    no FLOPs);
 *  - sum to ldmc_graph_flops of that graph, multiply-adds and other FLOPs
 *    separately;
 * and the fused event must report, counted by hand from the ops and shapes
 * (docs/profiling.md: FLOP rules of ir.md; bytes = each distinct value read
 * from outside the kernel once, plus its root's value written once):
 * 2 x M x N x K multiply-add FLOPs, its epilogue's elementwise FLOPs, and the
 * bytes of every input it reads, bias and residual included. Results are
 * checked against the interpreter. */
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "test_util.h"

#define D(...) ((int64_t[]){__VA_ARGS__})
#define MAX_EV 256
#define MAX_NODES 256

typedef struct ev_rec {
  char name[16];
  int32_t nodes[MAX_NODES];
  int32_t n_nodes;
  int64_t mac, other, read, written;
} ev_rec;

typedef struct rec {
  int n;
  bool overflow;
  ev_rec ev[MAX_EV];
} rec;

static void rec_hook(void *ctx, const ldmc_kernel_event *e) {
  rec *r = ctx;
  if (r->n == MAX_EV || e->n_nodes > MAX_NODES) {
    r->overflow = true;
    return;
  }
  ev_rec *x = &r->ev[r->n++];
  snprintf(x->name, sizeof x->name, "%s", e->name ? e->name : "");
  x->n_nodes = e->n_nodes;
  memcpy(x->nodes, e->nodes, (size_t)e->n_nodes * sizeof *x->nodes);
  x->mac = e->mac_flops, x->other = e->other_flops, x->read = e->bytes_read, x->written = e->bytes_written;
}

/* A helper step (a pack, a copy, a part of a node split in several steps)
 * lists the one node it serves, which a computing event lists too. */
static bool helper(const rec *r, const ev_rec *e) {
  if (strcmp(e->name, "pack") == 0 || strcmp(e->name, "copy") == 0) return true;
  if (e->n_nodes != 1 || e->mac || e->other) return false;
  for (int i = 0; i < r->n; i++)
    if (&r->ev[i] != e)
      for (int32_t j = 0; j < r->ev[i].n_nodes; j++)
        if (r->ev[i].nodes[j] == e->nodes[0] && (r->ev[i].n_nodes > 1 || r->ev[i].mac || r->ev[i].other)) return true;
  return false;
}

static bool has_node(const ev_rec *e, int32_t id) {
  for (int32_t i = 0; i < e->n_nodes; i++)
    if (e->nodes[i] == id) return true;
  return false;
}

/* One graph and what its fused kernel must report, by hand. */
typedef struct pcase {
  const char *what;
  ldmc_graph *g;
  ldmc_op core;            /* the fused kernel's main op */
  int64_t mac, other;      /* its FLOPs */
  int64_t read, written;   /* its bytes */
  int64_t total_other;     /* the graph's other FLOPs (all kernels) */
} pcase;

static void fill_inputs(const ldmc_graph *g, ldmc_tensor *in) {
  int k = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape);
    int64_t n = 0;
    ldmc_shape_numel(&p->shape, 0, &n);
    for (int64_t e = 0; e < n; e++) ldmc_tensor_set_elem(&in[k], e, 0.9 * sin(0.37 * (double)(e + 11 * k) + k));
    k++;
  }
}

static void dump_events(const rec *r, const ldmc_graph *xg) {
  for (int i = 0; i < r->n; i++) {
    const ev_rec *e = &r->ev[i];
    fprintf(stderr, "  event %d %s mac %lld other %lld read %lld written %lld:", i, e->name, (long long)e->mac,
            (long long)e->other, (long long)e->read, (long long)e->written);
    for (int32_t j = 0; j < e->n_nodes; j++)
      fprintf(stderr, " %%%d %s", (int)e->nodes[j], ldmc_op_name(xg->nodes[e->nodes[j]].op));
    fputc('\n', stderr);
  }
}

static void run_case(const pcase *c, bool epilogue) {
  const ldmc_backend_i *be = ldmc_backend_find("llvm-cpu");
  if (epilogue) unsetenv("LDMC_LLVM_CPU_EPILOGUE");
  else setenv("LDMC_LLVM_CPU_EPILOGUE", "0", 1);
  ldmc_executable *exe = NULL, *ref = NULL;
  ldmc_compile_opts o = {.threads = 2};
  CHECK_MSG(be->compile(c->g, &o, &exe) == LDMC_OK, "%s: %s", c->what, ldmc_last_error());
  CHECK_MSG(ldmc_backend_interp.compile(c->g, NULL, &ref) == LDMC_OK, "%s: %s", c->what, ldmc_last_error());
  unsetenv("LDMC_LLVM_CPU_EPILOGUE");
  if (!exe || !ref) {
    ldmc_executable_free(exe);
    ldmc_executable_free(ref);
    return;
  }
  int32_t np = ldmc_graph_num_params(c->g);
  ldmc_tensor in[8] = {{0}}, out[2] = {{0}}, want[2] = {{0}};
  fill_inputs(c->g, in);
  rec *r = calloc(1, sizeof *r);
  ldmc_profile_hook h = {rec_hook, r};
  CHECK(ldmc_executable_set_profiler(exe, &h) == LDMC_OK);
  CHECK_MSG(ldmc_executable_run(exe, in, np, out, c->g->n_outputs) == LDMC_OK, "%s: %s", c->what, ldmc_last_error());
  CHECK(ldmc_executable_run(ref, in, np, want, c->g->n_outputs) == LDMC_OK);
  for (int k = 0; k < c->g->n_outputs; k++) { /* same results as the interpreter */
    int64_t n = 0;
    ldmc_shape_numel(&want[k].shape, 0, &n);
    double err = 0, mag = 0;
    for (int64_t e = 0; e < n && out[k].data; e++) {
      double a = ldmc_tensor_get(&out[k], e), b = ldmc_tensor_get(&want[k], e);
      err = fmax(err, fabs(a - b));
      mag = fmax(mag, fabs(b));
    }
    CHECK_MSG(out[k].data && err <= 1e-4 * (1 + mag), "%s: output %d differs from the interpreter by %g", c->what, k, err);
    ldmc_tensor_release(&out[k]);
    ldmc_tensor_release(&want[k]);
  }
  const ldmc_graph *xg = exe->graph;
  CHECK(!r->overflow && r->n > 0);
  int fails = t_failed;
  /* every non-source node in exactly one computing event; helpers: one node, no FLOPs */
  int *cover = calloc((size_t)xg->n_nodes, sizeof *cover);
  int64_t mac = 0, other = 0;
  for (int i = 0; i < r->n; i++) {
    const ev_rec *e = &r->ev[i];
    mac += e->mac, other += e->other;
    int64_t m = 0, x = 0;
    for (int32_t j = 0; j < e->n_nodes; j++) {
      ldmc_flops f = ldmc_node_flops(xg, e->nodes[j]);
      m += f.mac, x += f.other;
      if (j > 0) CHECK_MSG(e->nodes[j] > e->nodes[j - 1], "%s: event %d's nodes ascend", c->what, i);
    }
    if (helper(r, e)) {
      CHECK_MSG(e->n_nodes == 1 && e->mac == 0 && e->other == 0, "%s: %s event %d: one node, no FLOPs", c->what,
                e->name, i);
      continue;
    }
    CHECK_MSG(e->mac == m && e->other == x, "%s: event %d reports the FLOPs of its nodes", c->what, i);
    for (int32_t j = 0; j < e->n_nodes; j++) cover[e->nodes[j]]++;
  }
  for (int32_t v = 0; v < xg->n_nodes; v++) {
    ldmc_op op = xg->nodes[v].op;
    int want_n = op == LDMC_OP_PARAMETER || op == LDMC_OP_CONSTANT ? 0 : 1;
    CHECK_MSG(cover[v] == want_n, "%s%s: %%%d %s in %d computing events, want %d", c->what,
              epilogue ? "" : " (unfused)", (int)v, ldmc_op_name(op), cover[v], want_n);
  }
  free(cover);
  ldmc_flops gf = ldmc_graph_flops(xg);
  CHECK_MSG(mac == gf.mac && other == gf.other, "%s: events %lld + %lld FLOPs, graph %lld + %lld", c->what,
            (long long)mac, (long long)other, (long long)gf.mac, (long long)gf.other);
  CHECK_MSG(gf.mac == c->mac && gf.other == c->total_other, "%s: graph FLOPs %lld + %lld, by hand %lld + %lld",
            c->what, (long long)gf.mac, (long long)gf.other, (long long)c->mac, (long long)c->total_other);
  /* the fused kernel: the computing event of the core op */
  const ev_rec *fe = NULL;
  for (int i = 0; i < r->n && !fe; i++)
    for (int32_t j = 0; j < r->ev[i].n_nodes && !helper(r, &r->ev[i]); j++)
      if (xg->nodes[r->ev[i].nodes[j]].op == c->core) fe = &r->ev[i];
  CHECK_MSG(fe != NULL, "%s: an event computes the %s", c->what, ldmc_op_name(c->core));
  bool fused = fe && has_node(fe, xg->outputs[0]);
  if (epilogue) CHECK_MSG(fused, "%s: the %s kernel computes the output (the epilogue is fused)", c->what, fe ? fe->name : "?");
  if (fe && fused) {
    CHECK_MSG(fe->mac == c->mac && fe->other == c->other, "%s: fused %s reports %lld + %lld FLOPs, by hand %lld + %lld",
              c->what, fe->name, (long long)fe->mac, (long long)fe->other, (long long)c->mac, (long long)c->other);
    CHECK_MSG(fe->read == c->read && fe->written == c->written,
              "%s: fused %s reads %lld, writes %lld bytes; by hand %lld, %lld", c->what, fe->name, (long long)fe->read,
              (long long)fe->written, (long long)c->read, (long long)c->written);
  }
  if (t_failed != fails) dump_events(r, xg);
  free(r);
  for (int32_t k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
  ldmc_executable_free(exe);
  ldmc_executable_free(ref);
}

static ldmc_graph *finish(ldmc_builder *b) {
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "%s", ldmc_last_error());
  return g;
}

/* silu 4, gelu 5, group_norm 8 FLOPs per element; add, mul, tanh 1 (ir.md) */
static void cases(pcase *c, int *n) {
  const int64_t M = 37, K = 19, N = 23;
  { /* dot + bias -> silu */
    ldmc_builder *b = ldmc_builder_new("dot_bias_silu");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, D(M, K)), w = ldmc_parameter(b, "w", LDMC_F32, 2, D(K, N));
    ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 1, D(N));
    ldmc_value y = ldmc_silu(b, ldmc_add(b, ldmc_matmul(b, x, w), ldmc_broadcast_to(b, bias, 2, D(M, N))));
    ldmc_builder_output(b, y, "y");
    c[(*n)++] = (pcase){"dot+bias+silu", finish(b), LDMC_OP_DOT_GENERAL, 2 * M * N * K, (1 + 4) * M * N,
                        4 * (M * K + K * N + N), 4 * M * N, (1 + 4) * M * N};
  }
  { /* dot * scale + residual -> tanh (scale a scalar parameter) */
    ldmc_builder *b = ldmc_builder_new("dot_scale_res_tanh");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, D(M, K)), w = ldmc_parameter(b, "w", LDMC_F32, 2, D(K, N));
    ldmc_value s = ldmc_parameter(b, "s", LDMC_F32, 0, D(0)), res = ldmc_parameter(b, "res", LDMC_F32, 2, D(M, N));
    ldmc_value y = ldmc_mul(b, ldmc_matmul(b, x, w), ldmc_broadcast_to(b, s, 2, D(M, N)));
    y = ldmc_unary(b, LDMC_OP_TANH, ldmc_add(b, y, res));
    ldmc_builder_output(b, y, "y");
    c[(*n)++] = (pcase){"dot*scale+residual->tanh", finish(b), LDMC_OP_DOT_GENERAL, 2 * M * N * K, 3 * M * N,
                        4 * (M * K + K * N + 1 + M * N), 4 * M * N, 3 * M * N};
  }
  const int64_t C = 8, H = 9, W = 7, F = 16; /* conv 3x3, pad 1: [1,F,H,W] */
  const int64_t conv_mac = 2 * F * H * W * C * 9, out_n = F * H * W;
  { /* conv + bias -> silu */
    ldmc_builder *b = ldmc_builder_new("conv_bias_silu");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, D(1, C, H, W)), w = ldmc_parameter(b, "w", LDMC_F32, 4, D(F, C, 3, 3));
    ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 1, D(F));
    ldmc_value y = ldmc_conv2d(b, x, w, 1, 1, 1, 1);
    y = ldmc_silu(b, ldmc_add(b, y, ldmc_broadcast_in_dim(b, bias, 4, D(1, F, H, W), D(1))));
    ldmc_builder_output(b, y, "y");
    c[(*n)++] = (pcase){"conv+bias+silu", finish(b), LDMC_OP_CONVOLUTION, conv_mac, 5 * out_n,
                        4 * (C * H * W + F * C * 9 + F), 4 * out_n, 5 * out_n};
  }
  { /* conv + bias + residual */
    ldmc_builder *b = ldmc_builder_new("conv_bias_res");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, D(1, C, H, W)), w = ldmc_parameter(b, "w", LDMC_F32, 4, D(F, C, 3, 3));
    ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 1, D(F));
    ldmc_value res = ldmc_parameter(b, "res", LDMC_F32, 4, D(1, F, H, W));
    ldmc_value y = ldmc_conv2d(b, x, w, 1, 1, 1, 1);
    y = ldmc_add(b, ldmc_add(b, y, ldmc_broadcast_in_dim(b, bias, 4, D(1, F, H, W), D(1))), res);
    ldmc_builder_output(b, y, "y");
    c[(*n)++] = (pcase){"conv+bias+residual", finish(b), LDMC_OP_CONVOLUTION, conv_mac, 2 * out_n,
                        4 * (C * H * W + F * C * 9 + F + out_n), 4 * out_n, 2 * out_n};
  }
  { /* linear (x W^T) + bias -> gelu, then a second kernel consumes it */
    ldmc_builder *b = ldmc_builder_new("linear_gelu_sum");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, D(M, K)), w = ldmc_parameter(b, "w", LDMC_F32, 2, D(N, K));
    ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 1, D(N));
    ldmc_ints none = {0}, lc = {.n = 1, .v = {1}}, rc = {.n = 1, .v = {1}};
    ldmc_value y = ldmc_dot_general(b, x, w, &none, &none, &lc, &rc);
    y = ldmc_gelu(b, ldmc_add(b, y, ldmc_broadcast_to(b, bias, 2, D(M, N))));
    ldmc_builder_output(b, y, "y");
    ldmc_builder_output(b, ldmc_reduce(b, LDMC_REDUCE_SUM, y, 1, D(1), false), "s");
    c[(*n)++] = (pcase){"linear+bias+gelu, then reduced", finish(b), LDMC_OP_DOT_GENERAL, 2 * M * N * K, 6 * M * N,
                        4 * (M * K + K * N + N), 4 * M * N, 6 * M * N + M * N};
  }
  { /* group_norm -> silu */
    ldmc_builder *b = ldmc_builder_new("gn_silu");
    ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, D(2, F, H, W));
    ldmc_value gm = ldmc_parameter(b, "gamma", LDMC_F32, 1, D(F)), bt = ldmc_parameter(b, "beta", LDMC_F32, 1, D(F));
    ldmc_value y = ldmc_silu(b, ldmc_group_norm(b, x, gm, bt, 4, 1e-5));
    ldmc_builder_output(b, y, "y");
    int64_t n_el = 2 * F * H * W;
    c[(*n)++] = (pcase){"group_norm+silu", finish(b), LDMC_OP_GROUP_NORM, 0, (8 + 4) * n_el, 4 * (n_el + 2 * F),
                        4 * n_el, 12 * n_el};
  }
}

int main(void) {
  if (!ldmc_backend_find("llvm-cpu")) {
    printf("llvm-cpu not registered: skipped\n");
    return test_summary("test_llvm_profile_rows");
  }
  pcase c[16];
  int n = 0;
  cases(c, &n);
  for (int i = 0; i < n; i++) {
    if (!c[i].g) continue;
    run_case(&c[i], true);
    run_case(&c[i], false);
    ldmc_graph_free(c[i].g);
  }
  return test_summary("test_llvm_profile_rows");
}
