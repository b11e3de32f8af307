/* Fusion-pattern conformance: every pattern of fusion_patterns.h (loop
 * chains, GEMM epilogues, norm + silu, head-split attention, prepacked
 * weights, outputs inside fused chains, outputs aliasing inputs) at several
 * random shapes, in f32 and bf16, on every registered backend other than the
 * interpreter — llvm-cpu at every ISA level the host runs for the first
 * shapes of each pattern, at its best level for the others — against the
 * interpreter (the oracle), with the tolerance rule of
 * test_backend_conformance.c: |got - want| <= atol + rtol |want| + arel max|want|,
 * NaN meets NaN, infinities match. Each executable runs twice (the second
 * run must repeat the first bit for bit); weight cases (params_are_weights)
 * run with weights A, A, B, A, each against the interpreter on that set.
 * LDMC_FUSION_SEED varies the shapes, LDMC_FUSION_FILTER=<substr> runs a
 * subset, LDMC_FUSION_REPS the number of shapes per pattern (default 2). */
#include <stdlib.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "fusion_patterns.h"
#include "test_util.h"

typedef struct fc_case {
  char name[224];
  ldmc_graph *g;
  fc_tol t;
  int n_act;    /* -1: no weights */
  bool all_isa; /* llvm-cpu at every ISA level (the first shapes), else the host's best */
} fc_case;

enum { FC_MAX = 512 };
static fc_case g_cases[FC_MAX];
static int g_ncases, g_skipped, g_rep;

static void fc_add(ldmc_builder *b, fc_tol t, int n_act, const char *fmt, ...) {
  char name[224];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) {
    CHECK_MSG(false, "building %s: %s", name, ldmc_last_error());
    return;
  }
  const char *filter = getenv("LDMC_FUSION_FILTER");
  if ((filter && !strstr(name, filter)) || g_ncases == FC_MAX) {
    ldmc_graph_free(g);
    return;
  }
  fc_case *c = &g_cases[g_ncases++];
  snprintf(c->name, sizeof c->name, "%s", name);
  c->g = g;
  c->t = t;
  c->n_act = n_act;
  c->all_isa = g_rep == 0;
}

/* ---- inputs ---- */
static double input_value(const char *nm, ldmc_dtype dt) {
  if (dt == LDMC_PRED) return (double)(fc_next() & 1);
  if (!ldmc_dtype_is_float(dt)) return (double)fc_int(-5, 5);
  if (strncmp(nm, "pos", 3) == 0) return fc_unif(0.1, 4.0);
  if (strncmp(nm, "nz", 2) == 0) return fc_unif(0.5, 2.0) * ((fc_next() & 1) ? 1 : -1);
  if (strncmp(nm, "wide", 4) == 0) return fc_unif(-8.0, 8.0);
  if (strncmp(nm, "w_", 2) == 0) return fc_unif(-0.5, 0.5);
  return fc_unif(-2.0, 2.0);
}

/* one tensor per parameter; from index `from` on (weights) only when fresh */
static ldmc_status make_inputs(const ldmc_graph *g, ldmc_tensor *t, int from) {
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    if (k >= from) {
      LDMC_TRY(ldmc_tensor_alloc(&t[k], p->attrs.name, p->dtype, &p->shape));
      int64_t cnt = 1;
      for (int d = 0; d < p->shape.rank; d++) cnt *= p->shape.dims[d];
      for (int64_t e = 0; e < cnt; e++) ldmc_tensor_set_elem(&t[k], e, input_value(p->attrs.name, p->dtype));
    }
    k++;
  }
  return LDMC_OK;
}

/* max violation of the tolerance (<= 1 passes) */
static double compare(const ldmc_tensor *got, const ldmc_tensor *want, fc_tol t, int64_t *worst) {
  int64_t n = 1;
  for (int d = 0; d < want->shape.rank; d++) n *= want->shape.dims[d];
  double amax = 0, bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double w = ldmc_tensor_get(want, i);
    if (isfinite(w) && fabs(w) > amax) amax = fabs(w);
  }
  *worst = -1;
  for (int64_t i = 0; i < n; i++) {
    double a = ldmc_tensor_get(got, i), w = ldmc_tensor_get(want, i), v;
    if (isnan(w) || isnan(a)) v = isnan(w) && isnan(a) ? 0 : 1e30;
    else if (isinf(w) || isinf(a)) v = a == w ? 0 : 1e30;
    else {
      double lim = t.atol + t.rtol * fabs(w) + t.arel * amax, e = fabs(a - w);
      v = e == 0 ? 0 : lim > 0 ? e / lim : 1e30;
    }
    if (v > bad) bad = v, *worst = i;
  }
  return bad;
}

static bool same_shape(const ldmc_tensor *a, const ldmc_tensor *b) {
  return a->dtype == b->dtype && ldmc_shape_equal(&a->shape, &b->shape);
}

static void release_all(ldmc_tensor *t, int n) {
  for (int i = 0; i < n; i++) ldmc_tensor_release(&t[i]);
}

static ldmc_status interp_run(const ldmc_graph *g, const ldmc_tensor *in, int nin, ldmc_tensor *out) {
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 1};
  ldmc_status st = ldmc_backend_interp.compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, nin, out, g->n_outputs);
  ldmc_executable_free(e);
  return st;
}

/* Checks outputs got[] against want[]; prev (if non-NULL) must be equal bit for bit. */
static void check_outputs(const char *what, const fc_case *c, const ldmc_tensor *got, const ldmc_tensor *want,
                          const ldmc_tensor *prev) {
  for (int k = 0; k < c->g->n_outputs; k++) {
    const char *on = c->g->output_names ? c->g->output_names[k] : "?";
    if (!same_shape(&got[k], &want[k])) {
      CHECK_MSG(false, "%s: %s: output %s has another type or shape", what, c->name, on);
      continue;
    }
    int64_t at;
    double v = compare(&got[k], &want[k], c->t, &at);
    CHECK_MSG(v <= 1.0, "%s: %s: output %s element %" PRId64 " = %.9g, interpreter %.9g (%.3g x tolerance)", what, c->name, on, at,
              ldmc_tensor_get(&got[k], at), ldmc_tensor_get(&want[k], at), v);
    if (prev) CHECK_MSG(got[k].nbytes == prev[k].nbytes && memcmp(got[k].data, prev[k].data, got[k].nbytes) == 0,
                        "%s: %s: output %s differs between two runs on the same inputs", what, c->name, on);
  }
}

/* sets[s] are input sets, want[s] the interpreter's outputs for them */
static void run_case(const ldmc_backend_i *be, const char *variant, const fc_case *c, int threads, ldmc_tensor *const *sets,
                     ldmc_tensor *const *want) {
  char what[96];
  snprintf(what, sizeof what, "%s/%s", be->name, variant);
  ldmc_compile_opts o = {.threads = threads};
  if (c->n_act >= 0) o.params_are_weights = true, o.n_activation_params = c->n_act;
  ldmc_executable *e = NULL;
  ldmc_status st = be->compile(c->g, &o, &e);
  if (st == LDMC_ERR_UNSUPPORTED) {
    printf("skip %s: %s: %s\n", what, c->name, ldmc_last_error());
    g_skipped++;
    return;
  }
  CHECK_MSG(st == LDMC_OK, "%s: %s: compile: %s", what, c->name, ldmc_last_error());
  if (st != LDMC_OK) return;
  int nin = ldmc_graph_num_params(c->g), nout = c->g->n_outputs;
  /* weights: A, A, B, A (a rebinding each time the pointers change); else A, A */
  static const int seq_w[] = {0, 0, 1, 0}, seq[] = {0, 0};
  const int *order = c->n_act >= 0 ? seq_w : seq;
  int nrun = c->n_act >= 0 ? 4 : 2;
  ldmc_tensor *prev = calloc((size_t)nout, sizeof *prev), *got = calloc((size_t)nout, sizeof *got);
  bool have_prev = false;
  for (int r = 0; r < nrun && got && prev; r++) {
    int s = order[r];
    st = ldmc_executable_run(e, sets[s], nin, got, nout);
    CHECK_MSG(st == LDMC_OK, "%s: %s: run %d: %s", what, c->name, r, ldmc_last_error());
    if (st != LDMC_OK) break;
    check_outputs(what, c, got, want[s], r == 1 && have_prev ? prev : NULL);
    if (r == 0) {
      memcpy(prev, got, (size_t)nout * sizeof *got);
      have_prev = true;
    } else {
      release_all(got, nout);
    }
    memset(got, 0, (size_t)nout * sizeof *got);
  }
  if (have_prev) release_all(prev, nout);
  free(prev);
  free(got);
  ldmc_executable_free(e);
}

static void run_all(void) {
  int nbe = ldmc_backend_count();
  for (int ci = 0; ci < g_ncases; ci++) {
    fc_case *c = &g_cases[ci];
    int nin = ldmc_graph_num_params(c->g), nout = c->g->n_outputs;
    int nsets = c->n_act >= 0 ? 2 : 1;
    ldmc_tensor *in[2] = {calloc((size_t)nin + 1, sizeof(ldmc_tensor)), calloc((size_t)nin + 1, sizeof(ldmc_tensor))};
    ldmc_tensor *want[2] = {calloc((size_t)nout, sizeof(ldmc_tensor)), calloc((size_t)nout, sizeof(ldmc_tensor))};
    ldmc_status st = make_inputs(c->g, in[0], 0);
    if (st == LDMC_OK && nsets == 2) { /* set B: the same activations, new weight tensors */
      memcpy(in[1], in[0], (size_t)c->n_act * sizeof(ldmc_tensor));
      st = make_inputs(c->g, in[1], c->n_act);
    }
    for (int s = 0; s < nsets && st == LDMC_OK; s++) st = interp_run(c->g, in[s], nin, want[s]);
    CHECK_MSG(st == LDMC_OK, "interp: %s: %s", c->name, ldmc_last_error());
    int threads = 1 + ci % 3;
    for (int bi = 0; st == LDMC_OK && bi < nbe; bi++) {
      const ldmc_backend_i *be = ldmc_backend_get(bi);
      if (be == &ldmc_backend_interp) continue;
      if (be == &ldmc_backend_llvm_cpu) {
        int host = (int)ldmc_llvm_cpu_host_isa();
        for (int isa = c->all_isa ? LDMC_LLVM_CPU_ISA_SCALAR : host; isa <= host; isa++) {
          ldmc_llvm_cpu_set_isa((ldmc_llvm_cpu_isa)isa);
          run_case(be, ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), c, threads, in, want);
        }
        ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
      } else {
        run_case(be, "default", c, threads, in, want);
      }
    }
    for (int s = 0; s < nsets; s++) release_all(want[s], nout);
    release_all(in[0], nin);
    if (nsets == 2) release_all(in[1] + c->n_act, nin - c->n_act);
    for (int s = 0; s < 2; s++) free(in[s]), free(want[s]);
  }
}

int main(void) {
  const char *seed = getenv("LDMC_FUSION_SEED"), *reps_s = getenv("LDMC_FUSION_REPS");
  if (seed) fc_rng ^= strtoull(seed, NULL, 10) * 0x2545F4914F6CDD1Dull;
  int reps = reps_s ? atoi(reps_s) : 2;
  static const ldmc_dtype dts[] = {LDMC_F32, LDMC_BF16};
  for (g_rep = 0; g_rep < reps; g_rep++)
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) fc_patterns(dts[i]);
  printf("fusion conformance: %d cases, %d backends\n", g_ncases, ldmc_backend_count());
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  run_all();
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("fusion conformance: %.1f s, %d runs refused as unsupported\n",
         (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), g_skipped);
  for (int ci = 0; ci < g_ncases; ci++) ldmc_graph_free(g_cases[ci].g);
  return test_summary("test_fusion_conformance");
}
