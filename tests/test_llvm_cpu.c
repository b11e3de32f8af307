/* The llvm-cpu backend beyond per-op conformance: threads (1, 2 and 3 give
 * identical results), the kernel cache (identical kernels compile once), the
 * ISA override, math special values against libm at every ISA level, the
 * interpreter fallback, outputs that alias inputs, empty tensors, and bad
 * graphs refused with a message. Oracles: the interpreter, libm, hand values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

static ldmc_graph *finish(ldmc_builder *b) {
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

static void fill(ldmc_tensor *t, unsigned seed) {
  int64_t n = 1;
  for (int i = 0; i < t->shape.rank; i++) n *= t->shape.dims[i];
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    ldmc_tensor_set_elem(t, i, ((seed >> 8) % 20001) / 10000.0 - 1.0);
  }
}

/* inputs for every parameter of g, filled deterministically */
static ldmc_tensor *inputs_for(const ldmc_graph *g, int *n) {
  *n = ldmc_graph_num_params(g);
  ldmc_tensor *t = calloc((size_t)(*n ? *n : 1), sizeof *t);
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    if (g->nodes[i].op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&t[k], g->nodes[i].attrs.name, g->nodes[i].dtype, &g->nodes[i].shape);
    fill(&t[k], 17u + (unsigned)k);
    k++;
  }
  return t;
}

static ldmc_status run(const ldmc_backend_i *be, const ldmc_graph *g, int threads, ldmc_tensor *in, int nin,
                       ldmc_tensor *out) {
  ldmc_compile_opts o = {.threads = threads};
  ldmc_executable *e = NULL;
  ldmc_status st = be->compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, nin, out, g->n_outputs);
  ldmc_executable_free(e);
  return st;
}

static double max_abs_diff(const ldmc_tensor *a, const ldmc_tensor *b) {
  int64_t n = 1;
  for (int i = 0; i < a->shape.rank; i++) n *= a->shape.dims[i];
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(ldmc_tensor_get(a, i) - ldmc_tensor_get(b, i));
    if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
  }
  return m;
}

/* a small transformer-ish block: conv, norms, matmul, attention, softmax, reduce */
static ldmc_graph *block_graph(void) {
  ldmc_builder *b = ldmc_builder_new("block");
  int64_t xd[4] = {2, 16, 19, 23}, wd[4] = {32, 16, 3, 3}, c = 32, ld[2] = {32, 48};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  ldmc_value gm = ldmc_parameter(b, "gamma", LDMC_F32, 1, &c), bt = ldmc_parameter(b, "beta", LDMC_F32, 1, &c);
  ldmc_value lw = ldmc_parameter(b, "lw", LDMC_F32, 2, ld);
  ldmc_value h = ldmc_silu(b, ldmc_group_norm(b, ldmc_conv2d(b, x, w, 1, 1, 1, 1), gm, bt, 8, 1e-5));
  int64_t tok[3] = {2, 32, 19 * 23}, perm[3] = {0, 2, 1};
  ldmc_value tks = ldmc_transpose(b, ldmc_reshape(b, h, 3, tok), perm); /* [2, 437, 32] */
  ldmc_value q = ldmc_matmul(b, tks, ldmc_broadcast_to(b, lw, 3, (int64_t[]){2, 32, 48}));
  ldmc_value a = ldmc_attention(b, q, q, q, 0.125);
  ldmc_value s = ldmc_softmax(b, a, 2);
  int64_t ax = 1;
  ldmc_builder_output(b, ldmc_reduce(b, LDMC_REDUCE_SUM, s, 1, &ax, false), "sum");
  ldmc_builder_output(b, a, "attn");
  return finish(b);
}

static void test_threads(void) {
  ldmc_graph *g = block_graph();
  if (!g) return;
  int nin;
  ldmc_tensor *in = inputs_for(g, &nin);
  ldmc_tensor r1[2] = {0}, r2[2] = {0}, r3[2] = {0}, ref[2] = {0};
  CHECK(run(&ldmc_backend_llvm_cpu, g, 1, in, nin, r1) == LDMC_OK);
  CHECK(run(&ldmc_backend_llvm_cpu, g, 2, in, nin, r2) == LDMC_OK);
  CHECK(run(&ldmc_backend_llvm_cpu, g, 3, in, nin, r3) == LDMC_OK);
  CHECK(run(&ldmc_backend_interp, g, 1, in, nin, ref) == LDMC_OK);
  for (int o = 0; o < 2; o++) {
    /* tiles never split a reduction, so thread count cannot change a result: tolerance 0 */
    CHECK_MSG(max_abs_diff(&r1[o], &r2[o]) == 0.0, "output %d: 1 vs 2 threads differ by %g", o, max_abs_diff(&r1[o], &r2[o]));
    CHECK_MSG(max_abs_diff(&r1[o], &r3[o]) == 0.0, "output %d: 1 vs 3 threads differ by %g", o, max_abs_diff(&r1[o], &r3[o]));
    CHECK_MSG(max_abs_diff(&r1[o], &ref[o]) < 1e-4, "output %d vs interpreter: %g", o, max_abs_diff(&r1[o], &ref[o]));
    ldmc_tensor_release(&r1[o]), ldmc_tensor_release(&r2[o]), ldmc_tensor_release(&r3[o]), ldmc_tensor_release(&ref[o]);
  }
  for (int i = 0; i < nin; i++) ldmc_tensor_release(&in[i]);
  free(in);
  ldmc_graph_free(g);
}

static void test_cache(void) {
  /* the same layer on two inputs: one kernel, compiled once */
  ldmc_builder *b = ldmc_builder_new("twice");
  int64_t d[2] = {37, 41};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d), y = ldmc_parameter(b, "y", LDMC_F32, 2, d);
  ldmc_builder_output(b, ldmc_softmax(b, x, 1), "sx");
  ldmc_builder_output(b, ldmc_softmax(b, y, 1), "sy");
  ldmc_graph *g = finish(b);
  if (!g) return;
  ldmc_llvm_cpu_stats s0, s1, s2;
  ldmc_llvm_cpu_stats_get(&s0);
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 1};
  CHECK(ldmc_backend_llvm_cpu.compile(g, &o, &e) == LDMC_OK);
  ldmc_executable_free(e);
  ldmc_llvm_cpu_stats_get(&s1);
  CHECK_MSG(s1.kernels_requested - s0.kernels_requested == 2, "requested %lld",
            (long long)(s1.kernels_requested - s0.kernels_requested));
  CHECK_MSG(s1.kernels_compiled - s0.kernels_compiled <= 1, "compiled %lld kernels for 1 distinct one",
            (long long)(s1.kernels_compiled - s0.kernels_compiled));
  /* compiling the graph again generates nothing */
  CHECK(ldmc_backend_llvm_cpu.compile(g, &o, &e) == LDMC_OK);
  ldmc_llvm_cpu_stats_get(&s2);
  CHECK(s2.kernels_compiled == s1.kernels_compiled);
  CHECK(s2.cache_hits - s1.cache_hits == 2);
  int nin;
  ldmc_tensor *in = inputs_for(g, &nin), out[2] = {0};
  CHECK(ldmc_executable_run(e, in, nin, out, 2) == LDMC_OK);
  double worst = 0;
  for (int k = 0; k < 2; k++) {
    const float *px = in[k].data, *pv = out[k].data;
    for (int r = 0; r < 37; r++) {
      double mx = -INFINITY, sum = 0;
      for (int c = 0; c < 41; c++) mx = fmax(mx, px[r * 41 + c]);
      for (int c = 0; c < 41; c++) sum += exp(px[r * 41 + c] - mx);
      for (int c = 0; c < 41; c++) worst = fmax(worst, fabs(pv[r * 41 + c] - exp(px[r * 41 + c] - mx) / sum));
    }
    ldmc_tensor_release(&out[k]);
  }
  CHECK_MSG(worst < 1e-6, "softmax vs libm: %g", worst);
  for (int i = 0; i < nin; i++) ldmc_tensor_release(&in[i]);
  free(in);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
}

/* the on-disk cache: a fresh compile with an empty in-memory cache is not
 * possible in one process, so check that objects and keys are written and
 * that a graph compiles and runs from a cache directory */
static ldmc_graph *disk_graph(void) {
  ldmc_builder *b = ldmc_builder_new("disk");
  int64_t d[2] = {29, 31};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d);
  ldmc_builder_output(b, ldmc_unary(b, LDMC_OP_LOG, ldmc_add(b, ldmc_unary(b, LDMC_OP_ABS, x), ldmc_constant_scalar(b, LDMC_F32, 1.0))), "y");
  return finish(b);
}

/* compiles and runs disk_graph from cache dir; checks the result */
static void disk_run(const char *dir) {
  ldmc_graph *g = disk_graph();
  ldmc_compile_opts o = {.threads = 2, .cache_dir = dir};
  ldmc_executable *e = NULL;
  CHECK(ldmc_backend_llvm_cpu.compile(g, &o, &e) == LDMC_OK);
  int nin;
  ldmc_tensor *in = inputs_for(g, &nin), out = {0};
  CHECK(ldmc_executable_run(e, in, nin, &out, 1) == LDMC_OK);
  const float *px = in[0].data, *py = out.data;
  double worst = 0;
  for (int i = 0; i < 29 * 31; i++) worst = fmax(worst, fabs(py[i] - log(fabs(px[i]) + 1.0)));
  CHECK_MSG(worst < 1e-6, "log(|x| + 1) vs libm: %g", worst);
  ldmc_tensor_release(&out);
  ldmc_tensor_release(&in[0]);
  free(in);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
}

/* a fresh process (empty in-memory cache) loads the objects a first one wrote */
static void test_disk_cache(const char *self) {
  char dir[] = "/tmp/ldmc_kcache_XXXXXX";
  if (!mkdtemp(dir)) return;
  ldmc_llvm_cpu_stats s0, s1;
  ldmc_llvm_cpu_stats_get(&s0);
  disk_run(dir);
  ldmc_llvm_cpu_stats_get(&s1);
  CHECK(s1.disk_hits == s0.disk_hits && s1.kernels_compiled > s0.kernels_compiled);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "ls %s/*.kc > /dev/null 2>&1", dir);
  CHECK_MSG(system(cmd) == 0, "no cached objects in %s", dir);
  snprintf(cmd, sizeof cmd, "%s --disk-child %s", self, dir);
  CHECK_MSG(system(cmd) == 0, "the second process did not load its kernel from %s", dir);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* special values through every math kernel, at every ISA level, against libm */
static void test_special_values(void) {
  static const float xs[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, 0.5f, -0.5f, 1.0f, 2.5f, -3.75f, 10.0f, -10.0f,
                             30.0f, -30.0f, 88.5f, -88.5f, 100.0f, -100.0f, -103.0f, 1e30f, -1e30f, INFINITY,
                             -INFINITY, NAN, 3.0e-39f /* subnormal */, 700.25f, -999.9f};
  enum { N = sizeof xs / sizeof xs[0] };
  static const ldmc_op ops[] = {LDMC_OP_EXP, LDMC_OP_LOG, LDMC_OP_TANH, LDMC_OP_LOGISTIC, LDMC_OP_ERF,
                                LDMC_OP_SIN, LDMC_OP_COS, LDMC_OP_SQRT, LDMC_OP_RSQRT};
  for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)ldmc_llvm_cpu_host_isa(); isa++) {
    ldmc_llvm_cpu_set_isa((ldmc_llvm_cpu_isa)isa);
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
      ldmc_builder *b = ldmc_builder_new("special");
      int64_t n = N;
      ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 1, &n);
      ldmc_builder_output(b, ldmc_unary(b, ops[k], x), "y");
      ldmc_graph *g = finish(b);
      if (!g) continue;
      ldmc_tensor in = {0}, out = {0};
      ldmc_shape s = ldmc_shape_make(1, &n);
      ldmc_tensor_alloc(&in, "x", LDMC_F32, &s);
      memcpy(in.data, xs, sizeof xs);
      CHECK(run(&ldmc_backend_llvm_cpu, g, 1, &in, 1, &out) == LDMC_OK);
      for (int i = 0; i < N && out.data; i++) {
        double v = xs[i], want;
        switch (ops[k]) {
          case LDMC_OP_EXP: want = exp(v); break;
          case LDMC_OP_LOG: want = log(v); break;
          case LDMC_OP_TANH: want = tanh(v); break;
          case LDMC_OP_LOGISTIC: want = 1.0 / (1.0 + exp(-v)); break;
          case LDMC_OP_ERF: want = erf(v); break;
          case LDMC_OP_SIN: want = sin(v); break;
          case LDMC_OP_COS: want = cos(v); break;
          case LDMC_OP_SQRT: want = sqrt(v); break;
          default: want = 1.0 / sqrt(v); break;
        }
        want = (float)want;
        double got = ((float *)out.data)[i];
        bool ok;
        if (isnan(want)) ok = isnan(got);
        else if (isinf(want)) ok = got == want;
        else if ((ops[k] == LDMC_OP_SIN || ops[k] == LDMC_OP_COS) && fabs(v) > 1e4) ok = isnan(got) || fabs(got) <= 1.0;
        else if (ops[k] == LDMC_OP_SIN || ops[k] == LDMC_OP_COS) ok = fabs(got - want) <= 2e-6 * (1 + fabs(v) / 100);
        else ok = fabs(got - want) <= 4e-6 * fabs(want) + 1e-37;
        CHECK_MSG(ok, "%s %s(%g) = %.9g, libm %.9g", ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), ldmc_op_name(ops[k]),
                  v, got, want);
      }
      ldmc_tensor_release(&in);
      ldmc_tensor_release(&out);
      ldmc_graph_free(g);
    }
  }
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
}

static void test_isa_override(void) {
  ldmc_llvm_cpu_isa isa;
  CHECK(ldmc_llvm_cpu_isa_parse("avx2", &isa) && isa == LDMC_LLVM_CPU_ISA_AVX2);
  CHECK(!ldmc_llvm_cpu_isa_parse("avx9000", &isa));
  setenv("LDMC_LLVM_CPU_ISA", "scalar", 1);
  CHECK(ldmc_llvm_cpu_current_isa(&isa) == LDMC_OK && isa == LDMC_LLVM_CPU_ISA_SCALAR);
  setenv("LDMC_LLVM_CPU_ISA", "bogus", 1);
  CHECK(ldmc_llvm_cpu_current_isa(&isa) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), "bogus") != NULL);
  ldmc_builder *b = ldmc_builder_new("isa");
  int64_t n = 5;
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 1, &n);
  ldmc_builder_output(b, ldmc_unary(b, LDMC_OP_EXP, x), "y");
  ldmc_graph *g = finish(b);
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {0};
  CHECK(ldmc_backend_llvm_cpu.compile(g, &o, &e) == LDMC_ERR_INVALID); /* refused, not crashed */
  unsetenv("LDMC_LLVM_CPU_ISA");
  /* an explicit setting wins over the environment */
  setenv("LDMC_LLVM_CPU_ISA", "bogus", 1);
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AVX2);
  if (ldmc_llvm_cpu_host_isa() >= LDMC_LLVM_CPU_ISA_AVX2) CHECK(ldmc_llvm_cpu_current_isa(&isa) == LDMC_OK && isa == LDMC_LLVM_CPU_ISA_AVX2);
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  unsetenv("LDMC_LLVM_CPU_ISA");
  ldmc_graph_free(g);
}

static void test_edges(void) {
  /* outputs that are inputs, reshapes of inputs, constants; and an empty tensor */
  ldmc_builder *b = ldmc_builder_new("edges");
  int64_t d[2] = {3, 4}, flat = 12, z[2] = {0, 5};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d);
  ldmc_value e = ldmc_parameter(b, "empty", LDMC_F32, 2, z);
  ldmc_builder_output(b, x, "same");
  ldmc_builder_output(b, ldmc_reshape(b, x, 1, &flat), "flat");
  ldmc_builder_output(b, ldmc_constant_scalar(b, LDMC_F32, 2.5), "two_and_a_half");
  ldmc_builder_output(b, ldmc_unary(b, LDMC_OP_EXP, e), "exp_empty");
  ldmc_graph *g = finish(b);
  if (!g) return;
  int nin;
  ldmc_tensor *in = inputs_for(g, &nin), out[4] = {0};
  CHECK(run(&ldmc_backend_llvm_cpu, g, 2, in, nin, out) == LDMC_OK);
  CHECK(out[0].data && memcmp(out[0].data, in[0].data, 48) == 0);
  CHECK(out[1].data && memcmp(out[1].data, in[0].data, 48) == 0 && out[1].shape.rank == 1);
  CHECK(out[2].data && *(float *)out[2].data == 2.5f);
  CHECK(out[3].shape.dims[0] == 0 && out[3].shape.dims[1] == 5);
  for (int i = 0; i < 4; i++) ldmc_tensor_release(&out[i]);
  for (int i = 0; i < nin; i++) ldmc_tensor_release(&in[i]);
  free(in);
  ldmc_graph_free(g);

  /* supports() names what has generated code */
  ldmc_node rn = {.op = LDMC_OP_RNG_NORMAL, .dtype = LDMC_F32}, dn = {.op = LDMC_OP_DOT_GENERAL, .dtype = LDMC_I32};
  ldmc_node cn = {.op = LDMC_OP_CONVOLUTION, .dtype = LDMC_F32, .shape = {.rank = 4}};
  cn.attrs.lhs_dilation = (ldmc_ints){.n = 2, .v = {1, 1}};
  cn.attrs.output_dims = (ldmc_ints){.n = 4, .v = {0, 1, 2, 3}};
  CHECK(ldmc_backend_llvm_cpu.supports(&rn) && ldmc_backend_llvm_cpu.supports(&dn)); /* rng, integer dot: generated */
  CHECK(ldmc_backend_llvm_cpu.supports(&cn));
  cn.attrs.lhs_dilation.v[0] = 2; /* lhs dilation: generated (phase-split implicit GEMMs) */
  CHECK(ldmc_backend_llvm_cpu.supports(&cn));
  cn.shape.rank = 5; /* three spatial dims: no kernel */
  CHECK(!ldmc_backend_llvm_cpu.supports(&cn));

  /* rng runs as generated Philox code, bit-compatible with the interpreter's */
  b = ldmc_builder_new("fallback");
  ldmc_value key = ldmc_parameter(b, "key", LDMC_I64, 0, NULL);
  int64_t rd[2] = {5, 7};
  ldmc_shape s = ldmc_shape_make(2, rd);
  int32_t ops[1] = {key};
  ldmc_value r = ldmc_graph_add_checked(ldmc_builder_graph(b), LDMC_OP_RNG_NORMAL, LDMC_F32, &s, 1, ops, NULL, NULL);
  ldmc_builder_output(b, ldmc_unary(b, LDMC_OP_TANH, r), "t");
  g = finish(b);
  if (!g) return;
  in = inputs_for(g, &nin);
  *(int64_t *)in[0].data = 1234;
  ldmc_tensor got = {0}, want = {0};
  CHECK(run(&ldmc_backend_llvm_cpu, g, 2, in, nin, &got) == LDMC_OK);
  CHECK(run(&ldmc_backend_interp, g, 1, in, nin, &want) == LDMC_OK);
  CHECK(max_abs_diff(&got, &want) < 1e-6);
  ldmc_tensor_release(&got), ldmc_tensor_release(&want);
  ldmc_tensor_release(&in[0]);
  free(in);
  ldmc_graph_free(g);

  /* a graph that does not verify is refused with the verifier's message */
  g = ldmc_graph_new("bad");
  int64_t dd[1] = {4}, de[1] = {5};
  ldmc_shape s4 = ldmc_shape_make(1, dd), s5 = ldmc_shape_make(1, de);
  ldmc_attrs a = {0};
  a.name = "p";
  int32_t p0 = ldmc_graph_add(g, LDMC_OP_PARAMETER, LDMC_F32, &s4, 0, NULL, &a, NULL);
  a.name = "q";
  int32_t p1 = ldmc_graph_add(g, LDMC_OP_PARAMETER, LDMC_F32, &s5, 0, NULL, &a, NULL);
  int32_t bad_ops[2] = {p0, p1};
  int32_t sum = ldmc_graph_add(g, LDMC_OP_ADD, LDMC_F32, &s4, 2, bad_ops, NULL, NULL);
  ldmc_graph_add_output(g, sum, "sum");
  ldmc_executable *ex = NULL;
  ldmc_compile_opts o = {0};
  CHECK(ldmc_backend_llvm_cpu.compile(g, &o, &ex) != LDMC_OK);
  CHECK(ex == NULL);
  CHECK(strstr(ldmc_last_error(), "add") != NULL);
  ldmc_graph_free(g);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--disk-child") == 0) { /* see test_disk_cache */
    disk_run(argv[2]);
    ldmc_llvm_cpu_stats st;
    ldmc_llvm_cpu_stats_get(&st);
    CHECK(st.disk_hits >= 1 && st.kernels_compiled == 0);
    return test_summary("llvm_cpu (disk cache child)");
  }
  test_threads();
  test_cache();
  test_disk_cache(argv[0]);
  test_special_values();
  test_isa_override();
  test_edges();
  return test_summary("llvm_cpu");
}
