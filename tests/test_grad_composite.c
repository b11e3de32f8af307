/* Autodiff of the composite ops (native rules, frontend/vjp_composite.c):
 *  1. every rule against finite differences (gc_check) at odd shapes, with
 *     gradients for every operand, and for subsets of them (operands that are
 *     constants get none: the rule's need[] branches);
 *  2. the native gradients equal those obtained by differentiating the
 *     decomposition (ldmc_decompose_composites, then ldmc_grad), in f32 and
 *     in the harness dtype GC_DT;
 *  3. the native backward builds fewer nodes than the decomposition's for
 *     attention and group_norm (all counts printed);
 *  4. bf16 gradients (computed in f32 between converts) match f32 ones;
 *  5. gc_check_llvm (tests/grad_check.h): the f32 gradient graphs run on
 *     llvm-cpu at every ISA level the host runs, every node in a llvm-cpu
 *     kernel, with the interpreter's values (none may be skipped). */
#define GC_LLVM
#include "grad_check.h"

#include "passes/decompose.h"

typedef enum kind { K_SILU, K_GELU, K_SOFTMAX, K_GROUP_NORM, K_LAYER_NORM, K_ATTENTION, K_UPSAMPLE } kind;

typedef struct spec {
  const char *name;
  kind k;
  int n;            /* operands */
  ldmc_shape s[3];  /* their shapes */
  int attr;         /* softmax/layer_norm axis, group_norm groups, upsample factor */
  unsigned consts;  /* bit i: operand i is a constant, not a parameter */
  double gain;      /* operand 0 scaled by this first (0: not): large softmax inputs */
  ldmc_dtype dt;    /* set for each run */
} spec;

#define EPS 1e-5
#define ATTN_SCALE 0.37

/* The composite over parameters p (and constants for the operands in consts),
 * in the parameters' dtype (gc_check_llvm builds the case in f32). */
static ldmc_value build(ldmc_builder *b, const ldmc_value *p, void *user) {
  const spec *s = user;
  ldmc_dtype dt = ldmc_value_dtype(b, p[0]); /* every spec has a parameter */
  ldmc_value x[3];
  uint64_t rs = 0x5851f42d4c957f2dull;
  for (int i = 0, j = 0; i < s->n; i++) {
    if (!((s->consts >> i) & 1u)) {
      x[i] = p[j++];
      continue;
    }
    ldmc_tensor t = th_random(dt, s->s[i], &rs, -1.0, 1.0);
    x[i] = ldmc_constant(b, dt, s->s[i].rank, s->s[i].dims, t.data);
    ldmc_tensor_release(&t);
  }
  if (s->gain) x[0] = ldmc_scale(b, x[0], s->gain);
  switch (s->k) {
    case K_SILU: return ldmc_silu(b, x[0]);
    case K_GELU: return ldmc_gelu(b, x[0]);
    case K_SOFTMAX: return ldmc_softmax(b, x[0], s->attr);
    case K_GROUP_NORM: return ldmc_group_norm(b, x[0], x[1], x[2], s->attr, EPS);
    case K_LAYER_NORM: return ldmc_layer_norm(b, x[0], x[1], x[2], s->attr, EPS);
    case K_ATTENTION: return ldmc_attention(b, x[0], x[1], x[2], ATTN_SCALE);
    case K_UPSAMPLE: return ldmc_upsample_nearest(b, x[0], s->attr);
  }
  return -1;
}

/* Rounding errors grow with the inputs' magnitude (x rounds to ~|x| eps):
 * the tolerance of comparisons between two computations of a case. */
static double cond(const spec *s) { return fmax(1.0, s->gain / 100); }

static gc_case case_of(spec *s) {
  gc_case c = {.name = s->name, .build = build, .user = s};
  for (int i = 0; i < s->n; i++)
    if (!((s->consts >> i) & 1u)) c.params[c.n_params++] = (gc_param){.dt = s->dt, .shape = s->s[i]};
  return c;
}

static ldmc_graph *forward_of(spec *s, ldmc_dtype dt) {
  s->dt = dt;
  gc_case c = case_of(s);
  ldmc_graph *g = gc_build(&c);
  CHECK_MSG(g != NULL, "%s: building: %s", s->name, ldmc_last_error());
  return g;
}

static ldmc_graph *grad_of(const ldmc_graph *g, const char *what) {
  ldmc_grad_opts o = {.output = "f", .seed = LDMC_GRAD_COTANGENT, .wrt_regex = NULL};
  ldmc_graph *out = NULL;
  ldmc_status st = ldmc_grad(g, &o, &out);
  CHECK_MSG(st == LDMC_OK, "%s: ldmc_grad: %s", what, ldmc_last_error());
  return st == LDMC_OK ? out : NULL;
}

/* Random inputs for every parameter of g, in order. */
static int make_inputs(const ldmc_graph *g, ldmc_tensor *in, int cap, uint64_t seed) {
  int n = 0;
  for (int32_t i = 0; i < g->n_nodes && n < cap; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op == LDMC_OP_PARAMETER) in[n++] = th_random(p->dtype, p->shape, &seed, -1.0, 1.0);
  }
  return n;
}

/* Runs g on the interpreter; outs receive g's outputs (release them). */
static bool run_interp(const ldmc_graph *g, const ldmc_tensor *in, int n_in, ldmc_tensor *outs, const char *what) {
  ldmc_executable *e = NULL;
  if (ldmc_backend_interp.compile(g, NULL, &e) != LDMC_OK) {
    CHECK_MSG(false, "%s: interp compile: %s", what, ldmc_last_error());
    return false;
  }
  bool ok = gc_run(e, in, n_in, outs, g->n_outputs);
  CHECK_MSG(ok, "%s: interp run: %s", what, ldmc_last_error());
  gc_exe_free(e);
  return ok;
}

/* max |got - want| / max(1, max |want|); NaN gives INFINITY. */
static double rel_err(const ldmc_tensor *got, const ldmc_tensor *want) {
  int64_t n = th_numel(&want->shape);
  if (got->dtype == LDMC_DTYPE_COUNT || th_numel(&got->shape) != n) return INFINITY;
  double scale = 1.0, worst = 0.0;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ldmc_tensor_get(want, i)));
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(ldmc_tensor_get(got, i) - ldmc_tensor_get(want, i)) / scale;
    if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
  }
  return worst;
}

static bool has_composite(const ldmc_graph *g) {
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (ldmc_op_table[g->nodes[i].op].flags & LDMC_OPF_COMPOSITE) return true;
  return false;
}

/* ---- 2, 3: native rule vs the decomposition's gradient ---- */
typedef struct counts {
  int backward; /* nodes ldmc_grad added after the forward copy (cotangent parameter excluded) */
  int live;     /* nodes the gradient outputs depend on, forward ones included */
} counts;

static counts count_nodes(const ldmc_graph *fwd, const ldmc_graph *gg) {
  counts c = {0, 0};
  for (int32_t i = fwd->n_nodes; i < gg->n_nodes; i++) c.backward += gg->nodes[i].op != LDMC_OP_PARAMETER;
  bool *live = calloc((size_t)gg->n_nodes, 1);
  if (!live) return c;
  for (int32_t k = 1; k < gg->n_outputs; k++) live[gg->outputs[k]] = true; /* output 0 is f itself */
  for (int32_t i = gg->n_nodes - 1; i >= 0; i--) {
    if (!live[i]) continue;
    c.live++;
    for (int k = 0; k < gg->nodes[i].n_operands; k++) live[gg->nodes[i].operands[k]] = true;
  }
  free(live);
  return c;
}

/* Returns the worst gradient difference (INFINITY on failure); counts in *cn, *cd. */
static double vs_decomposition(spec *s, ldmc_dtype dt, counts *cn, counts *cd) {
  double worst = INFINITY;
  ldmc_graph *g = forward_of(s, dt), *gd = NULL, *gn = NULL, *gdn = NULL;
  ldmc_tensor in[8], on[8], od[8];
  int n_in = 0;
  memset(on, 0, sizeof on);
  memset(od, 0, sizeof od);
  if (!g) goto done;
  ldmc_status st = ldmc_decompose_composites(g, 0, &gd);
  CHECK_MSG(st == LDMC_OK, "%s: decompose: %s", s->name, ldmc_last_error());
  if (st != LDMC_OK || !(gn = grad_of(g, s->name)) || !(gdn = grad_of(gd, s->name))) goto done;
  /* the native graph keeps the composite; the other differentiated primitives only */
  CHECK_MSG(has_composite(gn) && !has_composite(gdn), "%s: composite in the wrong graph", s->name);
  CHECK(gn->n_outputs == gdn->n_outputs && gn->n_outputs <= 8);
  if (gn->n_outputs != gdn->n_outputs || gn->n_outputs > 8) goto done;
  n_in = make_inputs(gn, in, 8, 0x9e3779b97f4a7c15ull + (uint64_t)dt);
  if (!run_interp(gn, in, n_in, on, s->name) || !run_interp(gdn, in, n_in, od, s->name))
    goto done;
  worst = 0.0;
  for (int32_t k = 1; k < gn->n_outputs; k++) worst = fmax(worst, rel_err(&on[k], &od[k]));
  *cn = count_nodes(g, gn);
  *cd = count_nodes(gd, gdn);
done:
  if (gn) th_release(gn->n_outputs, on);
  if (gdn) th_release(gdn->n_outputs, od);
  th_release(n_in, in);
  ldmc_graph_free(g);
  ldmc_graph_free(gd);
  ldmc_graph_free(gn);
  ldmc_graph_free(gdn);
  return worst;
}

/* ---- 4: the same gradient graph in another dtype ---- */
/* The gradients of s in dt against f32, both on the interpreter, from the
 * same inputs (drawn in dt, so exactly representable in f32). */
static double vs_f32_interp(spec *s, ldmc_dtype dt) {
  double worst = INFINITY;
  ldmc_graph *g = forward_of(s, dt), *g32 = forward_of(s, LDMC_F32), *gg = NULL, *gg32 = NULL;
  ldmc_tensor in[8], in32[8], o[8], o32[8];
  int n_in = 0;
  memset(o, 0, sizeof o);
  memset(o32, 0, sizeof o32);
  if (!g || !g32 || !(gg = grad_of(g, s->name)) || !(gg32 = grad_of(g32, s->name))) goto done;
  CHECK(gg->n_outputs <= 8);
  if (gg->n_outputs > 8) goto done;
  n_in = make_inputs(gg, in, 8, 0x2545f4914f6cdd1dull);
  for (int i = 0; i < n_in; i++) {
    in32[i] = th_tensor(LDMC_F32, in[i].shape, NULL);
    for (int64_t e = 0; e < th_numel(&in[i].shape); e++) ldmc_tensor_set_elem(&in32[i], e, ldmc_tensor_get(&in[i], e));
  }
  if (!run_interp(gg, in, n_in, o, s->name) || !run_interp(gg32, in32, n_in, o32, s->name)) goto done;
  worst = 0.0;
  for (int32_t k = 0; k < gg->n_outputs; k++) {
    CHECK_MSG(o[k].dtype == dt, "%s: output %d is %s", s->name, (int)k, ldmc_dtype_name(o[k].dtype));
    worst = fmax(worst, rel_err(&o[k], &o32[k]));
  }
done:
  if (gg) th_release(gg->n_outputs, o);
  if (gg32) th_release(gg32->n_outputs, o32);
  th_release(n_in, in);
  th_release(n_in, in32);
  ldmc_graph_free(g);
  ldmc_graph_free(g32);
  ldmc_graph_free(gg);
  ldmc_graph_free(gg32);
  return worst;
}

#define SH(...) {.rank = NDIMS(__VA_ARGS__), .dims = {__VA_ARGS__}}

/* Every operand differentiated. */
static spec g_specs[] = {
    {"silu [3,5,7]", K_SILU, 1, {SH(3, 5, 7)}, 0, 0, 0, LDMC_F32},
    {"gelu [3,5,7]", K_GELU, 1, {SH(3, 5, 7)}, 0, 0, 0, LDMC_F32},
    {"softmax [3,5,7] axis 0", K_SOFTMAX, 1, {SH(3, 5, 7)}, 0, 0, 0, LDMC_F32},
    {"softmax [3,5,7] axis 1", K_SOFTMAX, 1, {SH(3, 5, 7)}, 1, 0, 0, LDMC_F32},
    {"softmax [3,5,7] axis 2", K_SOFTMAX, 1, {SH(3, 5, 7)}, 2, 0, 0, LDMC_F32},
    {"group_norm [2,6,5] groups 3", K_GROUP_NORM, 3, {SH(2, 6, 5), SH(6), SH(6)}, 3, 0, 0, LDMC_F32},
    {"group_norm [2,6,3,5] groups 3", K_GROUP_NORM, 3, {SH(2, 6, 3, 5), SH(6), SH(6)}, 3, 0, 0, LDMC_F32},
    {"group_norm [2,12,7] groups 4", K_GROUP_NORM, 3, {SH(2, 12, 7), SH(12), SH(12)}, 4, 0, 0, LDMC_F32},
    {"group_norm [1,12,3,5] groups 4", K_GROUP_NORM, 3, {SH(1, 12, 3, 5), SH(12), SH(12)}, 4, 0, 0, LDMC_F32},
    {"layer_norm [2,3,5] axis 2", K_LAYER_NORM, 3, {SH(2, 3, 5), SH(5), SH(5)}, 2, 0, 0, LDMC_F32},
    {"layer_norm [2,3,5] axis 1", K_LAYER_NORM, 3, {SH(2, 3, 5), SH(3, 5), SH(3, 5)}, 1, 0, 0, LDMC_F32},
    {"attention [2,3] N5 M7 D3 E4", K_ATTENTION, 3, {SH(2, 3, 5, 3), SH(2, 3, 7, 3), SH(2, 3, 7, 4)}, 0, 0, 0, LDMC_F32},
    {"attention N5 M7 D3 E4 (no batch)", K_ATTENTION, 3, {SH(5, 3), SH(7, 3), SH(7, 4)}, 0, 0, 0, LDMC_F32},
    /* scores past exp's f32 and f64 range: only the max-shifted forms stay finite */
    {"softmax [3,5,7] axis 1, inputs x800", K_SOFTMAX, 1, {SH(3, 5, 7)}, 1, 0, 800, LDMC_F32},
    {"attention [3] N5 M7 D3 E4, q x1000", K_ATTENTION, 3, {SH(3, 5, 3), SH(3, 7, 3), SH(3, 7, 4)}, 0, 0, 1000, LDMC_F32},
    {"upsample [2,3,5] x2", K_UPSAMPLE, 1, {SH(2, 3, 5)}, 2, 0, 0, LDMC_F32},
    {"upsample [2,3,5] x3", K_UPSAMPLE, 1, {SH(2, 3, 5)}, 3, 0, 0, LDMC_F32},
    {"upsample [1,2,3,5] x2", K_UPSAMPLE, 1, {SH(1, 2, 3, 5)}, 2, 0, 0, LDMC_F32},
    {"upsample [1,2,3,4] x3", K_UPSAMPLE, 1, {SH(1, 2, 3, 4)}, 3, 0, 0, LDMC_F32},
    {"upsample [1,1,2,3,2,2] x2 (4 spatial)", K_UPSAMPLE, 1, {SH(1, 1, 2, 3, 2, 2)}, 2, 0, 0, LDMC_F32},
};

/* Some operands constant: only the others' cotangents are asked for. */
static spec g_partial[] = {
    {"group_norm x only", K_GROUP_NORM, 3, {SH(2, 6, 5), SH(6), SH(6)}, 3, 6u, 0, LDMC_F32},
    {"group_norm gamma only", K_GROUP_NORM, 3, {SH(2, 6, 5), SH(6), SH(6)}, 3, 5u, 0, LDMC_F32},
    {"group_norm beta only", K_GROUP_NORM, 3, {SH(2, 6, 5), SH(6), SH(6)}, 3, 3u, 0, LDMC_F32},
    {"layer_norm gamma, beta", K_LAYER_NORM, 3, {SH(2, 3, 5), SH(3, 5), SH(3, 5)}, 1, 1u, 0, LDMC_F32},
    {"attention q only", K_ATTENTION, 3, {SH(2, 5, 3), SH(2, 7, 3), SH(2, 7, 4)}, 0, 6u, 0, LDMC_F32},
    {"attention k only", K_ATTENTION, 3, {SH(2, 5, 3), SH(2, 7, 3), SH(2, 7, 4)}, 0, 5u, 0, LDMC_F32},
    {"attention v only", K_ATTENTION, 3, {SH(2, 5, 3), SH(2, 7, 3), SH(2, 7, 4)}, 0, 3u, 0, LDMC_F32},
    {"attention q, k", K_ATTENTION, 3, {SH(2, 5, 3), SH(2, 7, 3), SH(2, 7, 4)}, 0, 4u, 0, LDMC_F32},
};
#define N_SPECS NELEM(g_specs)
#define N_PARTIAL NELEM(g_partial)

static void part_finite_differences(void) {
  printf("-- 1. native rules vs finite differences (%s)\n", ldmc_dtype_name(GC_DT));
  for (int i = 0; i < N_SPECS; i++) {
    g_specs[i].dt = GC_DT;
    gc_case c = case_of(&g_specs[i]);
    CHECK_MSG(gc_check(&c, 11 + (uint64_t)i), "%s", c.name);
  }
  for (int i = 0; i < N_PARTIAL; i++) {
    g_partial[i].dt = GC_DT;
    gc_case c = case_of(&g_partial[i]);
    CHECK_MSG(gc_check(&c, 101 + (uint64_t)i), "%s", c.name);
  }
}

/* The decomposition's gradient graph needs its decomposed forward, while the
 * native rule recomputes what it needs from the composite's operands, so
 * "live" (every node the gradient outputs depend on) is the fair size; the
 * nodes ldmc_grad added ("backward") are printed as well. */
static void part_decomposition(void) {
  const ldmc_dtype dts[2] = {LDMC_F32, GC_DT};
  const int n_dt = GC_DT == LDMC_F32 ? 1 : 2;
  for (int d = 0; d < n_dt; d++) {
    double tol = dts[d] == LDMC_F32 ? 1e-5 : 1e-10;
    printf("-- 2. native vs decomposition gradients (%s, tol %g); 3. nodes: backward / live\n", ldmc_dtype_name(dts[d]),
           tol);
    for (int i = 0; i < N_SPECS + N_PARTIAL; i++) {
      spec *s = i < N_SPECS ? &g_specs[i] : &g_partial[i - N_SPECS];
      counts cn = {0, 0}, cd = {0, 0};
      double err = vs_decomposition(s, dts[d], &cn, &cd);
      CHECK_MSG(err <= tol * cond(s), "%s (%s): native and decomposition gradients differ by %.3g", s->name,
                ldmc_dtype_name(dts[d]), err);
      printf("  %-40s err %.2e  native %3d / %3d  decomposition %3d / %3d\n", s->name, err, cn.backward, cn.live,
             cd.backward, cd.live);
      if (d == 0 && i < N_SPECS && (s->k == K_ATTENTION || s->k == K_GROUP_NORM))
        CHECK_MSG(cn.live < cd.live, "%s: the native gradient needs %d nodes, the decomposition's %d", s->name,
                  cn.live, cd.live);
    }
  }
}

static void part_bf16(void) {
  printf("-- 4. bf16 gradients vs f32 (tol 3e-2)\n");
  for (int i = 0; i < N_SPECS; i++) {
    if (g_specs[i].gain) continue; /* bf16 keeps 3 digits of inputs ~1000: nothing to compare */
    double err = vs_f32_interp(&g_specs[i], LDMC_BF16);
    CHECK_MSG(err <= 3e-2, "%s: bf16 gradients off by %.3g", g_specs[i].name, err);
    printf("  %-40s err %.2e\n", g_specs[i].name, err);
  }
}

static void part_llvm_cpu(void) {
  printf("-- 5. f32 gradient graphs on llvm-cpu at every ISA level vs the interpreter (tol 1e-5 x cond)\n");
  for (int i = 0; i < N_SPECS + N_PARTIAL; i++) {
    spec *s = i < N_SPECS ? &g_specs[i] : &g_partial[i - N_SPECS];
    s->dt = LDMC_F32;
    gc_case c = case_of(s);
    c.llvm_tol = 1e-5 * cond(s);
    CHECK_MSG(gc_check_llvm(&c, 3000 + (uint64_t)i) == GC_LLVM_PASS, "%s: llvm-cpu gradients", s->name);
  }
  gc_llvm_summary("grad_composite");
}

int main(void) {
  part_finite_differences();
  part_decomposition();
  part_bf16();
  part_llvm_cpu();
  return test_summary("grad_composite");
}
