/* The profiler: the backend hook on the interpreter and on llvm-cpu (every
 * node's FLOPs reported once, results unchanged), kernel costs against
 * hand-computed FLOPs and bytes, aggregation of synthetic events against
 * hand-computed medians, a tiny U-Net whose profile totals equal the FLOPs
 * `ldmc stats` counts (models/stats.h), and its Chrome trace read back with
 * jansson: one event per kernel call. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "models/stats.h"
#include "models/unet.h"
#include "models/weights.h"
#include "runtime/profiler.h"
#include "test_util.h"

#define D(...) ((int64_t[]){__VA_ARGS__})

/* x[2,3] . y[3,4] = d[2,4]; e = d + b; f = e * e */
static ldmc_graph *small_graph(void) {
  ldmc_builder *b = ldmc_builder_new("small");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, D(2, 3));
  ldmc_value y = ldmc_parameter(b, "y", LDMC_F32, 2, D(3, 4));
  ldmc_value bb = ldmc_parameter(b, "b", LDMC_F32, 2, D(2, 4));
  ldmc_value d = ldmc_matmul(b, x, y);
  ldmc_value e = ldmc_add(b, d, bb);
  ldmc_value f = ldmc_mul(b, e, e);
  ldmc_builder_output(b, f, "f");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static void fill(ldmc_tensor *t, const char *name, int rank, const int64_t *dims, double base) {
  ldmc_shape s = ldmc_shape_make(rank, dims);
  ldmc_tensor_alloc(t, name, LDMC_F32, &s);
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  for (int64_t i = 0; i < n; i++) ((float *)t->data)[i] = (float)(base + 0.25 * (double)(i % 7));
}

static void test_kernel_cost(void) {
  ldmc_graph *g = small_graph();
  CHECK(g != NULL);
  if (!g) return;
  /* nodes: 0 x, 1 y, 2 b, 3 d, 4 e, 5 f */
  CHECK(g->n_nodes == 6 && g->nodes[3].op == LDMC_OP_DOT_GENERAL && g->nodes[5].op == LDMC_OP_MUL);
  ldmc_kernel_event ev;
  int32_t one[] = {3};
  ldmc_profile_kernel_cost(g, one, 1, &ev);
  CHECK(ev.mac_flops == 2 * 2 * 3 * 4); /* 2 x multiply-adds */
  CHECK(ev.bytes_read == (6 + 12) * 4 && ev.bytes_written == 8 * 4);
  int32_t sq[] = {5}; /* f = e * e reads e once */
  ldmc_profile_kernel_cost(g, sq, 1, &ev);
  CHECK(ev.bytes_read == 8 * 4 && ev.bytes_written == 8 * 4 && ev.mac_flops == 0);
  int32_t fused[] = {3, 4, 5}; /* reads x, y, b once; writes f */
  ldmc_profile_kernel_cost(g, fused, 3, &ev);
  CHECK(ev.bytes_read == (6 + 12 + 8) * 4 && ev.bytes_written == 8 * 4);
  CHECK(ev.mac_flops == 48 && ev.other_flops == ldmc_graph_flops(g).other);
  ldmc_graph_free(g);
}

typedef struct seen {
  int calls;
  int64_t mac, other;
  int per_node[64];      /* events listing the node */
  int with_flops[64];    /* events with FLOPs listing the node */
  bool names_ok, sorted_ok, times_ok;
} seen;

static void count_hook(void *ctx, const ldmc_kernel_event *ev) {
  seen *s = ctx;
  s->calls++;
  s->mac += ev->mac_flops;
  s->other += ev->other_flops;
  s->names_ok &= ev->name && ev->name[0];
  s->times_ok &= ev->end_ns >= ev->start_ns && ev->start_ns > 0;
  for (int32_t i = 0; i < ev->n_nodes; i++) {
    if (i > 0) s->sorted_ok &= ev->nodes[i] > ev->nodes[i - 1];
    if (ev->nodes[i] >= 0 && ev->nodes[i] < 64) {
      s->per_node[ev->nodes[i]]++;
      s->with_flops[ev->nodes[i]] += ev->mac_flops + ev->other_flops > 0;
    }
  }
}

static void test_interp_hook(void) {
  ldmc_graph *g = small_graph();
  ldmc_executable *exe = NULL;
  CHECK(g && ldmc_backend_interp.compile(g, NULL, &exe) == LDMC_OK);
  if (!exe) {
    ldmc_graph_free(g);
    return;
  }
  ldmc_tensor in[3], out[1];
  fill(&in[0], "x", 2, D(2, 3), 1);
  fill(&in[1], "y", 2, D(3, 4), -1);
  fill(&in[2], "b", 2, D(2, 4), 0.5);
  seen s = {.names_ok = true, .sorted_ok = true, .times_ok = true};
  ldmc_profile_hook h = {count_hook, &s};
  CHECK(ldmc_executable_set_profiler(exe, &h) == LDMC_OK);
  CHECK(ldmc_executable_run(exe, in, 3, out, 1) == LDMC_OK);
  ldmc_tensor_release(&out[0]);
  CHECK_MSG(s.calls == 3, "interp: one kernel per computed node, got %d", s.calls); /* d, e, f */
  CHECK(s.mac == 48 && s.other == ldmc_graph_flops(g).other && s.names_ok && s.times_ok);
  CHECK(s.per_node[0] == 0 && s.per_node[3] == 1 && s.per_node[4] == 1 && s.per_node[5] == 1);
  /* cleared: no more events */
  CHECK(ldmc_executable_set_profiler(exe, NULL) == LDMC_OK);
  CHECK(ldmc_executable_run(exe, in, 3, out, 1) == LDMC_OK);
  ldmc_tensor_release(&out[0]);
  CHECK(s.calls == 3);
  /* the profiler: three steps, each kernel called three times */
  ldmc_profiler *p = ldmc_profiler_new(g);
  ldmc_profile_hook ph = ldmc_profiler_hook(p);
  CHECK(ldmc_executable_set_profiler(exe, &ph) == LDMC_OK);
  for (int i = 0; i < 3; i++) {
    ldmc_profiler_step_begin(p);
    CHECK(ldmc_executable_run(exe, in, 3, out, 1) == LDMC_OK);
    ldmc_tensor_release(&out[0]);
    ldmc_profiler_step_end(p);
  }
  ldmc_profile_report r;
  CHECK(ldmc_profiler_report(p, &r) == LDMC_OK);
  CHECK(r.steps == 3 && r.n_kernels == 3 && ldmc_profiler_n_calls(p) == 9 && r.calls_per_step == 3);
  CHECK(r.exec_mac_flops == 48 && r.graph_mac_flops == 48 && r.exec_other_flops == r.graph_other_flops);
  for (int32_t i = 0; i < r.n_kernels; i++) {
    CHECK(r.kernels[i].calls == 3 && r.kernels[i].min_s <= r.kernels[i].median_s);
    CHECK(strcmp(r.kernels[i].name, r.kernels[i].ops) == 0); /* interp: a kernel is its op */
    if (i > 0) CHECK(r.kernels[i - 1].total_s >= r.kernels[i].total_s);
  }
  CHECK(r.kernel_s_per_step <= r.step_mean_s);
  ldmc_profile_report_free(&r);
  ldmc_profiler_free(p);
  for (int i = 0; i < 3; i++) ldmc_tensor_release(&in[i]);
  ldmc_executable_free(exe);
  ldmc_graph_free(g);
}

/* conv -> group_norm -> silu, a matmul with a bias, softmax, a reduction:
 * packs, GEMMs, a fused norm and fused elementwise kernels on llvm-cpu. */
static ldmc_graph *mixed_graph(void) {
  ldmc_builder *b = ldmc_builder_new("mixed");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, D(1, 4, 6, 6));
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 4, D(8, 4, 3, 3));
  ldmc_value gm = ldmc_parameter(b, "gamma", LDMC_F32, 1, D(8));
  ldmc_value bt = ldmc_parameter(b, "beta", LDMC_F32, 1, D(8));
  ldmc_value m = ldmc_parameter(b, "m", LDMC_F32, 2, D(36, 5));
  ldmc_value bias = ldmc_parameter(b, "bias", LDMC_F32, 1, D(5));
  ldmc_builder_push_scope(b, "block.0");
  ldmc_value h = ldmc_silu(b, ldmc_group_norm(b, ldmc_conv2d(b, x, w, 1, 1, 1, 1), gm, bt, 4, 1e-5));
  ldmc_builder_pop_scope(b);
  ldmc_value r = ldmc_reshape(b, h, 2, D(8, 36));
  ldmc_value p = ldmc_add(b, ldmc_matmul(b, r, m), ldmc_broadcast_to(b, bias, 2, D(8, 5)));
  ldmc_value s = ldmc_softmax(b, ldmc_scale(b, p, 0.5), 1);
  ldmc_value t = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, s, s), 1, D(1), false);
  ldmc_builder_output(b, t, "t");
  ldmc_builder_output(b, s, "s");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static void test_llvm_cpu_hook(void) {
  const ldmc_backend_i *be = ldmc_backend_find("llvm-cpu");
  if (!be) {
    printf("llvm-cpu not registered: skipped\n");
    return;
  }
  ldmc_graph *g = mixed_graph();
  CHECK_MSG(g != NULL, "%s", ldmc_last_error());
  if (!g) return;
  CHECK(g->n_nodes < 64);
  ldmc_executable *exe = NULL;
  ldmc_compile_opts o = {.threads = 2};
  CHECK_MSG(be->compile(g, &o, &exe) == LDMC_OK, "%s", ldmc_last_error());
  if (!exe) {
    ldmc_graph_free(g);
    return;
  }
  ldmc_tensor in[6], plain[2], prof[2];
  fill(&in[0], "x", 4, D(1, 4, 6, 6), -0.5);
  fill(&in[1], "w", 4, D(8, 4, 3, 3), -0.3);
  fill(&in[2], "gamma", 1, D(8), 1);
  fill(&in[3], "beta", 1, D(8), 0);
  fill(&in[4], "m", 2, D(36, 5), -0.2);
  fill(&in[5], "bias", 1, D(5), 0.1);
  CHECK(ldmc_executable_run(exe, in, 6, plain, 2) == LDMC_OK);
  seen s = {.names_ok = true, .sorted_ok = true, .times_ok = true};
  ldmc_profile_hook h = {count_hook, &s};
  CHECK(ldmc_executable_set_profiler(exe, &h) == LDMC_OK);
  CHECK(ldmc_executable_run(exe, in, 6, prof, 2) == LDMC_OK);
  const ldmc_graph *xg = exe->graph; /* what llvm-cpu runs after its passes: events name its nodes */
  CHECK(xg->n_nodes < 64);
  ldmc_flops gf = ldmc_graph_flops(xg), of = ldmc_graph_flops(g);
  CHECK_MSG(gf.mac == of.mac, "the passes kept the multiply-adds: %lld vs %lld", (long long)gf.mac, (long long)of.mac);
  CHECK_MSG(s.mac == gf.mac && s.other == gf.other, "events %lld + %lld FLOPs, graph %lld + %lld", (long long)s.mac,
            (long long)s.other, (long long)gf.mac, (long long)gf.other);
  CHECK(s.calls > 0 && s.names_ok && s.sorted_ok && s.times_ok);
  for (int32_t i = 0; i < xg->n_nodes; i++) { /* every node with FLOPs is in exactly one event with FLOPs */
    ldmc_flops f = ldmc_node_flops(xg, i);
    if (f.mac + f.other > 0) CHECK_MSG(s.with_flops[i] == 1, "node %d in %d events with FLOPs", (int)i, s.with_flops[i]);
  }
  for (int k = 0; k < 2; k++) { /* profiling changes no result */
    CHECK(plain[k].nbytes == prof[k].nbytes && memcmp(plain[k].data, prof[k].data, plain[k].nbytes) == 0);
    ldmc_tensor_release(&plain[k]);
    ldmc_tensor_release(&prof[k]);
  }
  /* toggling the hook off and on again reports the same calls */
  int calls = s.calls;
  CHECK(ldmc_executable_set_profiler(exe, NULL) == LDMC_OK);
  CHECK(ldmc_executable_run(exe, in, 6, prof, 2) == LDMC_OK);
  for (int k = 0; k < 2; k++) ldmc_tensor_release(&prof[k]);
  CHECK(s.calls == calls);
  CHECK(ldmc_executable_set_profiler(exe, &h) == LDMC_OK);
  CHECK(ldmc_executable_run(exe, in, 6, prof, 2) == LDMC_OK);
  for (int k = 0; k < 2; k++) ldmc_tensor_release(&prof[k]);
  CHECK(s.calls == 2 * calls && s.mac == 2 * gf.mac);
  for (int i = 0; i < 6; i++) ldmc_tensor_release(&in[i]);
  ldmc_executable_free(exe);
  ldmc_graph_free(g);
}

/* Synthetic events with known durations: medians, minima, order, groups. */
static void test_aggregation(void) {
  ldmc_graph *g = small_graph();
  ldmc_profiler *p = ldmc_profiler_new(g);
  ldmc_profile_hook h = ldmc_profiler_hook(p);
  const int64_t ms = 1000000;
  int64_t dur_a[3] = {3 * ms, 1 * ms, 2 * ms}, dur_b[3] = {1 * ms, 1 * ms, 4 * ms};
  int32_t na[] = {3}, nb[] = {4, 5};
  for (int s = 0; s < 3; s++) {
    ldmc_profiler_step_begin(p);
    ldmc_kernel_event a = {.kernel = 7, .name = "gemm", .nodes = na, .n_nodes = 1, .start_ns = 100 * ms,
                           .end_ns = 100 * ms + dur_a[s], .mac_flops = 48, .bytes_read = 72, .bytes_written = 32};
    ldmc_kernel_event bb = {.kernel = 2, .name = "ew", .nodes = nb, .n_nodes = 2, .start_ns = 200 * ms,
                            .end_ns = 200 * ms + dur_b[s], .other_flops = 16, .bytes_read = 64, .bytes_written = 32};
    h.kernel(h.ctx, &a);
    h.kernel(h.ctx, &bb);
    h.kernel(h.ctx, &bb); /* called twice per step */
    ldmc_profiler_step_end(p);
  }
  ldmc_kernel_event outside = {.kernel = 7, .name = "gemm", .nodes = na, .n_nodes = 1, .end_ns = 99 * ms};
  h.kernel(h.ctx, &outside); /* outside any step: not counted */
  ldmc_profile_report r;
  CHECK(ldmc_profiler_report(p, &r) == LDMC_OK);
  CHECK(r.steps == 3 && r.n_kernels == 2);
  if (r.n_kernels == 2) {
    const ldmc_profile_kernel *k0 = &r.kernels[0], *k1 = &r.kernels[1];
    /* ew: 6 calls, durations 1,1,1,1,4,4 ms: total 12, median 1, min 1; gemm: 3 calls, total 6, median 2 */
    CHECK(strcmp(k0->name, "ew") == 0 && k0->calls == 6 && k0->kernel == 2);
    CHECK_NEAR(k0->total_s, 0.012, 1e-12);
    CHECK_NEAR(k0->median_s, 0.001, 1e-12);
    CHECK(strcmp(k1->name, "gemm") == 0 && k1->calls == 3);
    CHECK_NEAR(k1->total_s, 0.006, 1e-12);
    CHECK_NEAR(k1->median_s, 0.002, 1e-12);
    CHECK_NEAR(k1->min_s, 0.001, 1e-12);
    CHECK_NEAR(k1->gflops_s, 48 / 0.002 * 1e-9, 1e-12);
    CHECK_NEAR(k1->gbytes_s, 104 / 0.002 * 1e-9, 1e-12);
    CHECK_NEAR(k1->intensity, 48.0 / 104.0, 1e-12);
    CHECK(strcmp(k1->ops, "dot_general") == 0 && strcmp(k1->nodes, "%3") == 0);
    CHECK(strcmp(k0->ops, "add+mul") == 0 && strcmp(k0->nodes, "%4,%5") == 0);
    CHECK(r.exec_mac_flops == 48 && r.exec_other_flops == 32 && r.calls_per_step == 3);
    CHECK_NEAR(r.kernel_s_per_step, 0.006, 1e-12);
    CHECK_NEAR(k0->share + k1->share, 0.018 / r.steps_total_s, 1e-9);
  }
  ldmc_profile_report_free(&r);
  ldmc_profiler_free(p);
  ldmc_graph_free(g);
}

static const char *key_all(const ldmc_profile_kernel *k, char *buf, size_t len) {
  (void)k;
  snprintf(buf, len, "all");
  return buf;
}

static void test_grouping(void) {
  ldmc_graph *g = small_graph();
  ldmc_profiler *p = ldmc_profiler_new(g);
  ldmc_profile_hook h = ldmc_profiler_hook(p);
  const int64_t ms = 1000000;
  int32_t na[] = {3}, nb[] = {4};
  for (int s = 0; s < 2; s++) {
    ldmc_profiler_step_begin(p);
    ldmc_kernel_event a = {.kernel = 0, .name = "a", .nodes = na, .n_nodes = 1, .start_ns = ms, .end_ns = 3 * ms,
                           .mac_flops = 100, .bytes_read = 10};
    ldmc_kernel_event b = {.kernel = 1, .name = "b", .nodes = nb, .n_nodes = 1, .start_ns = ms, .end_ns = 2 * ms,
                           .other_flops = 50, .bytes_written = 20};
    h.kernel(h.ctx, &a);
    h.kernel(h.ctx, &b);
    h.kernel(h.ctx, &b);
    ldmc_profiler_step_end(p);
  }
  ldmc_profile_report r, gr;
  CHECK(ldmc_profiler_report(p, &r) == LDMC_OK);
  CHECK(ldmc_profile_report_group(&r, key_all, &gr) == LDMC_OK);
  CHECK(gr.n_kernels == 1);
  if (gr.n_kernels == 1) {
    const ldmc_profile_kernel *k = &gr.kernels[0];
    /* per step: a once (2 ms, 100 FLOPs, 10 B), b twice (1 ms, 50 FLOPs, 20 B each) */
    CHECK(k->kernels == 2 && k->calls == 6 && strcmp(k->name, "all") == 0);
    CHECK_NEAR(k->median_s, 0.004, 1e-12);
    CHECK(k->mac_flops == 100 && k->other_flops == 100 && k->bytes_read == 10 && k->bytes_written == 40);
    CHECK_NEAR(k->gflops_s, 200 / 0.004 * 1e-9, 1e-12);
    CHECK_NEAR(k->total_s, 0.008, 1e-12);
  }
  ldmc_profile_report_free(&gr);
  ldmc_profile_report_free(&r);
  ldmc_profiler_free(p);
  ldmc_graph_free(g);
}

/* A backend without the hook: refused by set_profiler; whole steps instead. */
static void test_whole_steps(void) {
  ldmc_graph *g = small_graph();
  static const ldmc_executable_i no_hook = {0};
  ldmc_executable e = {.iface = &no_hook, .graph = g};
  ldmc_profiler *p = ldmc_profiler_new(g);
  ldmc_profile_hook h = ldmc_profiler_hook(p);
  CHECK(ldmc_executable_set_profiler(&e, &h) == LDMC_ERR_UNSUPPORTED && strstr(ldmc_last_error(), "small"));
  CHECK(ldmc_executable_set_profiler(NULL, &h) == LDMC_ERR_INVALID);
  for (int s = 0; s < 2; s++) {
    ldmc_profiler_step_begin(p);
    int64_t t = ldmc_profile_now_ns();
    ldmc_profiler_record_whole(p, t, t + 5000000);
    ldmc_profiler_step_end(p);
  }
  ldmc_profile_report r;
  CHECK(ldmc_profiler_report(p, &r) == LDMC_OK && r.n_kernels == 1);
  if (r.n_kernels == 1) {
    const ldmc_profile_kernel *k = &r.kernels[0];
    CHECK(strcmp(k->name, "run") == 0 && k->calls == 2 && k->kernel == -1);
    CHECK(k->mac_flops == 48 && strcmp(k->nodes, "%3,%4,%5") == 0);
    CHECK(k->bytes_read == (6 + 12 + 8) * 4 && k->bytes_written == 8 * 4); /* the inputs, the output */
    CHECK_NEAR(k->median_s, 0.005, 1e-12);
  }
  ldmc_profile_report_free(&r);
  ldmc_profiler_free(p);
  ldmc_graph_free(g);
}

/* A tiny U-Net on the interpreter: totals against models/stats.h, the trace
 * against the calls. */
static void test_unet_profile(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 8;
  cfg.context_dim = 64;
  cfg.context_tokens = 8;
  ldmc_graph *g = NULL;
  CHECK(ldmc_unet_build(&cfg, &g) == LDMC_OK);
  if (!g) return;
  ldmc_model_stats ms;
  CHECK(ldmc_stats_compute(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, &ms) == LDMC_OK);
  ldmc_tensor_set ws = {0};
  CHECK(ldmc_weights_init_random(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, 1, &ws) == LDMC_OK);
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in), out;
  bool *mine = calloc((size_t)np, sizeof *mine);
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++, k += g->nodes[i - 1].op == LDMC_OP_PARAMETER) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER) continue;
    const ldmc_tensor *w = ldmc_tensor_set_find(&ws, n->attrs.name);
    if (w) in[k] = *w; /* a view of the weight */
    else mine[k] = ldmc_tensor_alloc(&in[k], n->attrs.name, n->dtype, &n->shape) == LDMC_OK; /* zero data inputs */
  }
  ldmc_executable *exe = NULL;
  CHECK(ldmc_backend_interp.compile(g, NULL, &exe) == LDMC_OK);
  ldmc_profiler *p = ldmc_profiler_new(g);
  ldmc_profile_hook h = ldmc_profiler_hook(p);
  CHECK(exe && ldmc_executable_set_profiler(exe, &h) == LDMC_OK);
  const int steps = 2;
  for (int s = 0; exe && s < steps; s++) {
    ldmc_profiler_step_begin(p);
    CHECK(ldmc_executable_run(exe, in, np, &out, 1) == LDMC_OK);
    ldmc_tensor_release(&out);
    ldmc_profiler_step_end(p);
  }
  ldmc_profile_report r;
  CHECK(ldmc_profiler_report(p, &r) == LDMC_OK);
  CHECK_MSG(r.graph_mac_flops == ms.mac_flops && r.exec_mac_flops == ms.mac_flops &&
                r.exec_other_flops == ms.other_flops,
            "profile %lld/%lld, stats %lld", (long long)r.graph_mac_flops, (long long)r.exec_mac_flops,
            (long long)ms.mac_flops);
  CHECK(r.calls_per_step == g->n_nodes - np && ldmc_profiler_n_calls(p) == (int64_t)steps * (g->n_nodes - np));
  bool scoped = false;
  for (int32_t i = 0; i < r.n_kernels; i++) scoped |= strncmp(r.kernels[i].scope, "down_blocks.1.attentions.0", 26) == 0;
  CHECK_MSG(scoped, "kernels carry their U-Net block");
  /* the trace */
  char dir[] = "/tmp/ldmc-test-profile.XXXXXX", path[256];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/trace.json", dir);
  CHECK(ldmc_profile_write_trace(p, "interp", path) == LDMC_OK);
  json_error_t err;
  json_t *root = json_load_file(path, 0, &err);
  CHECK_MSG(root != NULL, "%s:%d: %s", path, err.line, err.text);
  json_t *evs = json_object_get(root, "traceEvents");
  size_t i;
  json_t *e;
  int64_t kernels = 0, step_events = 0, mac = 0;
  double step_end = 0;
  bool fields = json_is_array(evs), nested = true;
  json_array_foreach(evs, i, e) {
    const char *ph = json_string_value(json_object_get(e, "ph")), *cat = json_string_value(json_object_get(e, "cat"));
    if (!ph) fields = false;
    if (!ph || strcmp(ph, "X") != 0) continue;
    double ts = json_number_value(json_object_get(e, "ts")), dur = json_number_value(json_object_get(e, "dur"));
    fields &= json_is_number(json_object_get(e, "ts")) && json_is_number(json_object_get(e, "dur")) && ts >= 0 &&
              dur >= 0 && json_is_integer(json_object_get(e, "pid")) && json_is_integer(json_object_get(e, "tid")) &&
              json_is_string(json_object_get(e, "name"));
    if (cat && strcmp(cat, "step") == 0) {
      step_events++;
      step_end = ts + dur;
    } else if (cat && strcmp(cat, "kernel") == 0) {
      kernels++;
      json_t *args = json_object_get(e, "args");
      mac += json_integer_value(json_object_get(args, "mac_flops"));
      fields &= json_is_string(json_object_get(args, "block")) && json_is_integer(json_object_get(args, "bytes_read"));
    }
  }
  json_array_foreach(evs, i, e) { /* every kernel lies inside the last step or before it */
    const char *cat = json_string_value(json_object_get(e, "cat"));
    if (cat && strcmp(cat, "kernel") == 0)
      nested &= json_number_value(json_object_get(e, "ts")) + json_number_value(json_object_get(e, "dur")) <= step_end + 1e-3;
  }
  CHECK(fields && nested);
  CHECK_MSG(kernels == ldmc_profiler_n_calls(p), "trace has %lld kernel events, %lld calls", (long long)kernels,
            (long long)ldmc_profiler_n_calls(p));
  CHECK(step_events == steps && mac == (int64_t)steps * ms.mac_flops);
  json_decref(root);
  unlink(path);
  rmdir(dir);
  ldmc_profile_report_free(&r);
  ldmc_profiler_free(p);
  ldmc_executable_free(exe);
  for (int32_t k = 0; k < np; k++)
    if (mine[k]) ldmc_tensor_release(&in[k]);
  free(in);
  free(mine);
  ldmc_tensor_set_free(&ws);
  ldmc_graph_free(g);
}

int main(void) {
  test_kernel_cost();
  test_interp_hook();
  test_llvm_cpu_hook();
  test_aggregation();
  test_grouping();
  test_whole_steps();
  test_unet_profile();
  return test_summary("test_profile");
}
