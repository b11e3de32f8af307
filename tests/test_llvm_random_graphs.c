/* Differential test of the llvm-cpu backend on random graphs
 * (pass_random_graph.h: elementwise chains, splats, transposes, reshapes,
 * biases, reductions, contractions, softmax, CSE / DCE / folding bait, and
 * with composites group_norm, layer_norm, attention) over random base shapes
 * with odd, prime and 1-sized dims. Each graph is compiled by llvm-cpu (the
 * whole pass pipeline, fusion and lowering) and run against the interpreter
 * (the oracle) on the same random inputs: |got - want| <= atol + rtol |want|
 * + arel max|want| per output. The ISA level, the thread count and whether
 * parameters after the first are weights (prepack) rotate over the graphs;
 * weight graphs run twice, the second time with new weight tensors.
 * LDMC_RANDOM_GRAPHS=<n> changes the count, LDMC_RANDOM_SEED the seed,
 * LDMC_RANDOM_ONLY=<i> runs graph i alone (and prints it), LDMC_RANDOM_VERBOSE=1
 * names each graph before it runs. */
#include <inttypes.h>
#include <time.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "pass_random_graph.h"

#define N_GRAPHS 300

/* loose enough for f32 against the f64-accumulating interpreter after long
 * chains, tight enough for any wrong element, offset or stride */
static const double k_atol = 1e-4, k_rtol = 1e-3, k_arel = 1e-4;

/* max over outputs of the tolerance violation (<= 1 passes) */
static double violation(const ldmc_tensor *got, const ldmc_tensor *want, int n, int *which, int64_t *at) {
  double bad = 0;
  for (int k = 0; k < n; k++) {
    if (got[k].dtype != want[k].dtype || !ldmc_shape_equal(&got[k].shape, &want[k].shape)) return *which = k, INFINITY;
    int64_t numel;
    ldmc_shape_numel(&want[k].shape, 0, &numel);
    double amax = 0;
    for (int64_t e = 0; e < numel; e++) {
      double w = ldmc_tensor_get(&want[k], e);
      if (isfinite(w)) amax = fmax(amax, fabs(w));
    }
    for (int64_t e = 0; e < numel; e++) {
      double a = ldmc_tensor_get(&got[k], e), w = ldmc_tensor_get(&want[k], e), v;
      if (isnan(a) || isnan(w)) v = isnan(a) && isnan(w) ? 0 : INFINITY;
      else if (isinf(a) || isinf(w)) v = a == w ? 0 : INFINITY;
      else v = a == w ? 0 : fabs(a - w) / (k_atol + k_rtol * fabs(w) + k_arel * amax);
      if (!(v <= bad)) bad = v, *which = k, *at = e;
    }
  }
  return bad;
}

static int64_t numel_of(const ldmc_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

static int32_t scalar_const(prg *r, float v) {
  ldmc_attrs at = {0};
  at.value.data = &v;
  at.value.nbytes = 4;
  ldmc_shape sc = {0};
  return ldmc_graph_add(r->g, LDMC_OP_CONSTANT, LDMC_F32, &sc, 0, NULL, &at, NULL);
}

/* a node outside the pool (not f32: the generator picks only f32 values) */
static int32_t add_aside(prg *r, ldmc_op op, ldmc_dtype dt, const ldmc_shape *s, int n, const int32_t *ops, const ldmc_attrs *at) {
  if (!r->ok) return -1;
  int32_t id = ldmc_graph_add_checked(r->g, op, dt, s, n, ops, at, "random");
  if (id < 0) {
    r->ok = false;
    fprintf(stderr, "random graph: %s\n", ldmc_last_error());
  }
  return id;
}

static int64_t pick(int64_t lo, int64_t hi) { return lo + (int64_t)(ptu_uniform() * (double)(hi - lo + 1)); }

/* Ops the pass tests' generator does not make, for the backend's copies,
 * views and loop nests: slice, pad, concatenate, iota/compare/select,
 * convolution, upsample, bf16 round trips, reshapes that merge dims, new
 * broadcast dims. Values stay bounded; sizes stay small. */
static void ext_step(prg *r) {
  ldmc_graph *g = r->g;
  int32_t x = prg_pick(r);
  ldmc_shape s = g->nodes[x].shape;
  int rank = s.rank;
  ldmc_attrs at = {0};
  switch ((int)(ptu_uniform() * 9)) {
    case 0: { /* slice with steps */
      if (rank == 0) break;
      at.start.n = at.limit.n = at.stride.n = rank;
      for (int i = 0; i < rank; i++) {
        at.start.v[i] = pick(0, s.dims[i] - 1);
        at.limit.v[i] = pick(at.start.v[i] + 1, s.dims[i]);
        at.stride.v[i] = pick(1, 2);
      }
      prg_add(r, LDMC_OP_SLICE, LDMC_F32, NULL, 1, &x, &at);
      break;
    }
    case 1: { /* pad, negative and interior too */
      if (rank == 0 || numel_of(&s) > 2000) break;
      at.low.n = at.high.n = at.interior.n = rank;
      for (int i = 0; i < rank; i++) {
        at.low.v[i] = pick(-1, 2), at.high.v[i] = pick(-1, 2), at.interior.v[i] = pick(0, 1);
        if (s.dims[i] + at.low.v[i] + at.high.v[i] + (s.dims[i] - 1) * at.interior.v[i] < 1) at.low.v[i] = at.high.v[i] = 0;
      }
      int32_t ops[2] = {x, scalar_const(r, 0.5f)};
      prg_add(r, LDMC_OP_PAD, LDMC_F32, NULL, 2, ops, &at);
      break;
    }
    case 2: { /* concatenate of x and a same-shape value on a random axis */
      if (rank == 0 || numel_of(&s) > 3000) break;
      int32_t ops[3] = {x, prg_same(r, x), x};
      at.axis = pick(0, rank - 1);
      prg_add(r, LDMC_OP_CONCATENATE, LDMC_F32, NULL, 2 + (ptu_uniform() < 0.3), ops, &at);
      break;
    }
    case 3: { /* select(iota_a >= iota_b, x, y) */
      if (rank == 0) break;
      ldmc_attrs ia = {0}, ib = {0}, c = {0};
      ia.axis = pick(0, rank - 1), ib.axis = pick(0, rank - 1);
      int32_t i0 = add_aside(r, LDMC_OP_IOTA, LDMC_I32, &s, 0, NULL, &ia);
      int32_t i1 = add_aside(r, LDMC_OP_IOTA, LDMC_I32, &s, 0, NULL, &ib);
      c.direction = LDMC_CMP_GE;
      int32_t ci[2] = {i0, i1};
      int32_t p = add_aside(r, LDMC_OP_COMPARE, LDMC_PRED, NULL, 2, ci, &c);
      int32_t ops[3] = {p, x, prg_same(r, x)};
      prg_add(r, LDMC_OP_SELECT, LDMC_F32, NULL, 3, ops, NULL);
      break;
    }
    case 4: { /* convolution over a rank-4 value, then tanh */
      if (rank != 4 || s.dims[1] > 16 || numel_of(&s) > 3000) break;
      int64_t k = ptu_uniform() < 0.5 ? 1 : 3, st = pick(1, 2), O = pick(1, 9);
      ldmc_shape ws = {.rank = 4, .dims = {O, s.dims[1], k, k}};
      char name[32];
      snprintf(name, sizeof name, "cw%d", (int)g->n_nodes);
      ldmc_attrs pa = {0};
      pa.name = name;
      int32_t w = prg_add(r, LDMC_OP_PARAMETER, LDMC_F32, &ws, 0, NULL, &pa);
      at.window_stride.n = at.pad_low.n = at.pad_high.n = at.lhs_dilation.n = at.rhs_dilation.n = 2;
      for (int i = 0; i < 2; i++) {
        at.window_stride.v[i] = st, at.pad_low.v[i] = at.pad_high.v[i] = k / 2;
        at.lhs_dilation.v[i] = at.rhs_dilation.v[i] = 1;
      }
      at.groups = 1;
      at.input_dims = at.kernel_dims = at.output_dims = (ldmc_ints){.n = 4, .v = {0, 1, 2, 3}};
      int32_t ops[2] = {x, w};
      int32_t c = prg_add(r, LDMC_OP_CONVOLUTION, LDMC_F32, NULL, 2, ops, &at);
      if (c >= 0) prg_add(r, LDMC_OP_TANH, LDMC_F32, NULL, 1, &c, NULL);
      break;
    }
    case 5: { /* upsample x2 (rank >= 3) */
      if (rank < 3 || numel_of(&s) * (1 << (2 * (rank - 2))) > 4000) break;
      at.factor = 2;
      prg_add(r, LDMC_OP_UPSAMPLE_NEAREST, LDMC_F32, NULL, 1, &x, &at);
      break;
    }
    case 6: { /* bf16 round trip, or erf */
      if (ptu_uniform() < 0.5) {
        prg_add(r, LDMC_OP_ERF, LDMC_F32, NULL, 1, &x, NULL);
        break;
      }
      int32_t h = add_aside(r, LDMC_OP_CONVERT, LDMC_BF16, NULL, 1, &x, NULL);
      if (h >= 0) prg_add(r, LDMC_OP_CONVERT, LDMC_F32, NULL, 1, &h, NULL);
      break;
    }
    case 7: { /* merge two adjacent dims */
      if (rank < 2) break;
      int d = (int)pick(0, rank - 2);
      ldmc_shape m = {.rank = rank - 1};
      for (int i = 0, j = 0; i < rank; i++) m.dims[j] = i == d + 1 ? m.dims[j] * s.dims[i] : s.dims[i], j += i != d;
      prg_add(r, LDMC_OP_RESHAPE, LDMC_F32, &m, 1, &x, NULL);
      break;
    }
    default: { /* broadcast into a new dim of size 1..3 */
      if (rank >= 5 || numel_of(&s) > 2000) break;
      int d = (int)pick(0, rank);
      ldmc_shape o = {.rank = rank + 1};
      at.dims.n = rank;
      for (int i = 0, j = 0; i <= rank; i++) {
        if (i == d) {
          o.dims[i] = pick(1, 3);
          continue;
        }
        o.dims[i] = s.dims[j], at.dims.v[j] = i, j++;
      }
      prg_add(r, LDMC_OP_BROADCAST_IN_DIM, LDMC_F32, &o, 1, &x, &at);
      break;
    }
  }
}

/* prg_build_shape with ext_step mixed in (a third of the steps) */
static ldmc_graph *build_ext(int steps, bool composites, ldmc_shape s) {
  prg r = {.g = ldmc_graph_new("random"), .ok = true};
  ldmc_attrs a = {0}, b = {0};
  a.name = "x";
  b.name = "y";
  prg_add(&r, LDMC_OP_PARAMETER, LDMC_F32, &s, 0, NULL, &a);
  prg_add(&r, LDMC_OP_PARAMETER, LDMC_F32, &s, 0, NULL, &b);
  for (int i = 0; i < steps && r.ok; i++) {
    if (ptu_uniform() < 0.35) ext_step(&r);
    else prg_step(&r, composites);
  }
  int nout = 1 + (int)(ptu_uniform() * 3);
  for (int i = 0; i < nout && r.ok; i++) {
    char name[16];
    snprintf(name, sizeof name, "out%d", i);
    int32_t o = i == 0 ? r.g->n_nodes - 1 : prg_pick(&r);
    if (r.g->nodes[o].dtype != LDMC_F32 || (r.g->nodes[o].op == LDMC_OP_PARAMETER && i > 0)) continue;
    ldmc_graph_add_output(r.g, o, name);
  }
  if (!r.ok || r.g->n_outputs == 0 || ldmc_graph_verify(r.g) != LDMC_OK) {
    ldmc_graph_free(r.g);
    return NULL;
  }
  return r.g;
}

static ldmc_shape random_shape(void) {
  static const int64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 11, 13};
  ldmc_shape s = {.rank = 2 + (int)(ptu_uniform() * 3)};
  for (int i = 0; i < s.rank; i++) s.dims[i] = sizes[(int)(ptu_uniform() * 9)];
  return s;
}

/* Compiles g on llvm-cpu and compares with the interpreter; returns false on a failure. */
static bool one_graph(int idx, const ldmc_graph *g, ldmc_llvm_cpu_isa isa, int threads, bool weights) {
  ldmc_tensor *ins = NULL, *want = NULL, *ins2 = NULL, *want2 = NULL;
  int n = ptu_inputs(g, &ins), nout = g->n_outputs;
  bool ok = ptu_interp(g, ins, n, &want);
  if (weights && n > 1) { /* set 2: the same activation, new weights */
    ptu_inputs(g, &ins2);
    ldmc_tensor_release(&ins2[0]);
    ins2[0] = ins[0];
    ok = ok && ptu_interp(g, ins2, n, &want2);
  }
  ldmc_llvm_cpu_set_isa(isa);
  ldmc_compile_opts o = {.threads = threads, .params_are_weights = weights, .n_activation_params = weights ? 1 : 0};
  ldmc_executable *e = NULL;
  ldmc_status st = ok ? ldmc_backend_llvm_cpu.compile(g, &o, &e) : LDMC_ERR_INTERNAL;
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  CHECK_MSG(!ok || st == LDMC_OK, "graph %d (%s, %d threads%s): compile: %s", idx, ldmc_llvm_cpu_isa_name(isa), threads,
            weights ? ", weights" : "", ldmc_last_error());
  ok = ok && st == LDMC_OK;
  for (int r = 0; ok && r < (ins2 ? 2 : 1); r++) {
    ldmc_tensor *got = calloc((size_t)nout + 1, sizeof *got);
    st = ldmc_executable_run(e, r ? ins2 : ins, n, got, nout);
    CHECK_MSG(st == LDMC_OK, "graph %d: run: %s", idx, ldmc_last_error());
    if (st == LDMC_OK) {
      int which = 0;
      int64_t at = 0;
      ldmc_tensor *w = r ? want2 : want;
      double v = violation(got, w, nout, &which, &at);
      CHECK_MSG(v <= 1.0, "graph %d (%s, %d threads%s, run %d): output %d element %" PRId64 " = %.9g, interpreter %.9g (%.3g x tolerance)",
                idx, ldmc_llvm_cpu_isa_name(isa), threads, weights ? ", weights" : "", r, which, at,
                ldmc_tensor_get(&got[which], at), ldmc_tensor_get(&w[which], at), v);
      ok = v <= 1.0;
    }
    ptu_free_tensors(got, st == LDMC_OK ? nout : 0);
    ok = ok && st == LDMC_OK;
  }
  ldmc_executable_free(e);
  if (want) ptu_free_tensors(want, nout);
  if (want2) ptu_free_tensors(want2, nout);
  if (ins2) {
    ins2[0] = (ldmc_tensor){0};
    ptu_free_tensors(ins2, n);
  }
  ptu_free_tensors(ins, n);
  return ok;
}

int main(void) {
  const char *ns = getenv("LDMC_RANDOM_GRAPHS"), *seed = getenv("LDMC_RANDOM_SEED"), *only = getenv("LDMC_RANDOM_ONLY");
  int n_graphs = ns ? atoi(ns) : N_GRAPHS, only_i = only ? atoi(only) : -1;
  ptu_rng = 0x5deece66dull ^ (seed ? strtoull(seed, NULL, 10) * 0x9e3779b97f4a7c15ull : 0);
  int levels = (int)ldmc_llvm_cpu_host_isa() - LDMC_LLVM_CPU_ISA_SCALAR + 1;
  int built = 0, failed = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < n_graphs; i++) {
    ldmc_shape s = random_shape();
    ldmc_graph *g = i % 4 == 1 ? prg_build_shape(6 + i % 19, true, s) : build_ext(6 + i % 23, i % 3 != 2, s);
    uint64_t rng_after_build = ptu_rng;
    /* the generator normalizes constant rows too (a broadcast reduce): with
     * eps 1e-5 that is rounding noise times 316, whose f32 and f64 values
     * differ; a larger eps keeps those graphs well conditioned */
    for (int32_t k = 0; g && k < g->n_nodes; k++)
      if (g->nodes[k].op == LDMC_OP_LAYER_NORM || g->nodes[k].op == LDMC_OP_GROUP_NORM) g->nodes[k].attrs.eps = 0.05;
    if (!g || (only_i >= 0 && i != only_i)) {
      ldmc_graph_free(g);
      continue;
    }
    built++;
    if (getenv("LDMC_RANDOM_VERBOSE")) fprintf(stderr, "graph %d\n", i);
    if (only_i >= 0) {
      char *text = ldmc_graph_print(g);
      if (text) printf("%s\n", text), fflush(stdout);
      free(text);
    }
    ldmc_llvm_cpu_isa isa = (ldmc_llvm_cpu_isa)(LDMC_LLVM_CPU_ISA_SCALAR + (levels - 1 - i % levels));
    failed += !one_graph(i, g, isa, 1 + i % 3, i % 4 == 3);
    ptu_rng = rng_after_build; /* the next graph does not depend on this one's inputs */
    ldmc_graph_free(g);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (only_i < 0) CHECK_MSG(built >= n_graphs * 9 / 10, "only %d of %d random graphs built", built, n_graphs);
  printf("%d random graphs on llvm-cpu, %d failed, %.1f s\n", built, failed,
         (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
  return test_summary("test_llvm_random_graphs");
}
