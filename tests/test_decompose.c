/* ldmc_decompose_composites: every composite, lowered to primitives, agrees
 * with the interpreter's native form (computed from the definitions, not
 * the decomposition) on random inputs over several shapes and dtypes.
 * Tolerance: f32 1e-5 * max(1, |x|); bf16/f16 two units of their roundoff
 * (the decomposition computes in f32, the native form in double); f64 1e-13
 * (both in double, in different orders: far beyond f32's reach); data
 * movement (upsample) exactly. Also: no composite is left, the graph
 * verifies, scopes / outputs / parameters survive, and the keep mask works. */
#include "interp_test_util.h"
#include "passes/decompose.h"

static double g_max_err[LDMC_DTYPE_COUNT]; /* largest |decomposed - native| / max(1, |native|) seen */

static bool no_composites(const ldmc_graph *g, uint64_t keep) {
  for (int32_t i = 0; i < g->n_nodes; i++)
    if ((ldmc_op_table[g->nodes[i].op].flags & LDMC_OPF_COMPOSITE) && !((keep >> g->nodes[i].op) & 1u)) return false;
  return true;
}

/* Runs g natively and decomposed on inputs ins; compares output 0. */
static void compare(const char *label, ldmc_graph *g, const ldmc_tensor *ins, int n, double scale_tol, double rel) {
  ldmc_graph *d = NULL;
  ldmc_status st = ldmc_decompose_composites(g, 0, &d);
  CHECK_MSG(st == LDMC_OK, "%s: decompose: %s", label, ldmc_last_error());
  if (st != LDMC_OK) return;
  CHECK_MSG(no_composites(d, 0), "%s: composites left", label);
  CHECK_MSG(ldmc_graph_verify(d) == LDMC_OK, "%s: verify: %s", label, ldmc_last_error());
  CHECK(d->n_outputs == g->n_outputs && strcmp(d->output_names[0], g->output_names[0]) == 0);
  CHECK(ldmc_graph_num_params(d) == ldmc_graph_num_params(g));
  ldmc_tensor a[4], b[4];
  int no = g->n_outputs;
  if (no <= 4 && th_run_graph(g, ins, n, a, no)) {
    if (th_run_graph(d, ins, n, b, no)) {
      for (int k = 0; k < no; k++) {
        CHECK(a[k].dtype == b[k].dtype && ldmc_shape_equal(&a[k].shape, &b[k].shape));
        int64_t cnt = th_numel(&a[k].shape);
        double *want = malloc((size_t)(cnt ? cnt : 1) * sizeof *want);
        for (int64_t i = 0; i < cnt; i++) want[i] = ldmc_tensor_get(&a[k], i);
        /* |got - want| <= rel * |want| + rel * scale_tol */
        th_expect(label, &b[k], want, cnt, rel, rel * scale_tol);
        for (int64_t i = 0; i < cnt && scale_tol > 0; i++) {
          double e = fabs(ldmc_tensor_get(&b[k], i) - want[i]) / fmax(1.0, fabs(want[i]));
          if (e > g_max_err[b[k].dtype]) g_max_err[b[k].dtype] = e;
        }
        free(want);
      }
      th_release(no, b);
    }
    th_release(no, a);
  }
  ldmc_graph_free(d);
}

static double tol_of(ldmc_dtype dt) { return dt == LDMC_F32 ? 1e-5 : dt == LDMC_F64 ? 1e-13 : 4 * th_eps(dt); }

/* One composite over fresh parameters of the given types; output "y". */
static ldmc_graph *one(ldmc_op op, const ldmc_attrs *at, int n, const ldmc_tensor *ins, const char *scope) {
  ldmc_graph *g = ldmc_graph_new("c");
  int32_t ops[3];
  char name[16];
  for (int i = 0; i < n; i++) {
    snprintf(name, sizeof name, "p%d", i);
    ops[i] = th_param(g, name, ins[i].dtype, ins[i].shape);
  }
  int32_t y = ldmc_graph_add_checked(g, op, ins[0].dtype, NULL, n, ops, at, scope);
  CHECK_MSG(y >= 0, "%s: %s", ldmc_op_name(op), ldmc_last_error());
  ldmc_graph_add_output(g, y, "y");
  return g;
}

static void check_op(const char *label, ldmc_op op, const ldmc_attrs *at, int n, const ldmc_shape *shapes, uint64_t seed,
                     double lo, double hi) {
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_dtype dt = k_floats[d];
    ldmc_tensor ins[3];
    for (int i = 0; i < n; i++) ins[i] = th_random(dt, shapes[i], &seed, i == 0 ? lo : 0.5, i == 0 ? hi : 1.5);
    ldmc_graph *g = one(op, at, n, ins, NULL);
    char full[128];
    snprintf(full, sizeof full, "%s %s", label, ldmc_dtype_name(dt));
    compare(full, g, ins, n, 1.0, tol_of(dt));
    ldmc_graph_free(g);
    th_release(n, ins);
  }
}

static void test_elementwise(void) {
  ldmc_shape shapes[] = {SHAPE(7), SHAPE(2, 3, 4), SHAPE(0, 3), SHAPE0};
  for (int i = 0; i < NELEM(shapes); i++) {
    check_op("silu", LDMC_OP_SILU, NULL, 1, &shapes[i], 1 + i, -8, 8);
    check_op("gelu", LDMC_OP_GELU, NULL, 1, &shapes[i], 5 + i, -6, 6);
  }
}

static void test_softmax(void) {
  struct { ldmc_shape s; int axis; } cases[] = {{SHAPE(5, 7), 0}, {SHAPE(5, 7), 1}, {SHAPE(2, 3, 4), 1}, {SHAPE(1, 1), 0},
                                                {SHAPE(3, 16), 1}};
  for (int i = 0; i < NELEM(cases); i++) {
    ldmc_attrs at = {0};
    at.axis = cases[i].axis;
    check_op("softmax", LDMC_OP_SOFTMAX, &at, 1, &cases[i].s, 10 + i, -20, 20);
  }
}

static void test_norms(void) {
  struct { ldmc_shape x; int64_t groups; } gn[] = {
      {SHAPE(2, 8, 4, 4), 4}, {SHAPE(1, 6, 5), 3}, {SHAPE(3, 4, 2, 3, 2), 2}, {SHAPE(2, 4), 1}, {SHAPE(1, 32, 3, 3), 32}};
  for (int i = 0; i < NELEM(gn); i++) {
    ldmc_attrs at = {0};
    at.groups = gn[i].groups;
    at.eps = 1e-5;
    ldmc_shape s[3] = {gn[i].x, SHAPE(gn[i].x.dims[1]), SHAPE(gn[i].x.dims[1])};
    check_op("group_norm", LDMC_OP_GROUP_NORM, &at, 3, s, 20 + i, -3, 5);
  }
  struct { ldmc_shape x; int axis; } ln[] = {{SHAPE(4, 16), 1}, {SHAPE(2, 3, 8), 1}, {SHAPE(2, 3, 8), 2}, {SHAPE(3, 5), 0},
                                             {SHAPE(5), 0}};
  for (int i = 0; i < NELEM(ln); i++) {
    ldmc_attrs at = {0};
    at.axis = ln[i].axis;
    at.eps = 1e-6;
    ldmc_shape p = {.rank = ln[i].x.rank - ln[i].axis};
    for (int k = 0; k < p.rank; k++) p.dims[k] = ln[i].x.dims[ln[i].axis + k];
    ldmc_shape s[3] = {ln[i].x, p, p};
    check_op("layer_norm", LDMC_OP_LAYER_NORM, &at, 3, s, 30 + i, -2, 4);
  }
}

static void test_attention(void) {
  struct { ldmc_shape q, k, v; } cases[] = {
      {SHAPE(2, 4, 8), SHAPE(2, 6, 8), SHAPE(2, 6, 5)},
      {SHAPE(2, 2, 3, 4), SHAPE(2, 2, 7, 4), SHAPE(2, 2, 7, 4)},
      {SHAPE(5, 3), SHAPE(4, 3), SHAPE(4, 2)},
      {SHAPE(1, 64, 16), SHAPE(1, 64, 16), SHAPE(1, 64, 16)},
  };
  for (int i = 0; i < NELEM(cases); i++) {
    ldmc_attrs at = {0};
    at.scale = 1.0 / sqrt((double)cases[i].q.dims[cases[i].q.rank - 1]);
    ldmc_shape s[3] = {cases[i].q, cases[i].k, cases[i].v};
    /* q, k, v all in [-2, 2]: check_op draws operands 1 and 2 from [0.5, 1.5], so draw here */
    for (int d = 0; d < NELEM(k_floats); d++) {
      uint64_t seed = 40 + i;
      ldmc_tensor ins[3];
      for (int j = 0; j < 3; j++) ins[j] = th_random(k_floats[d], s[j], &seed, -2, 2);
      ldmc_graph *g = one(LDMC_OP_ATTENTION, &at, 3, ins, NULL);
      char label[64];
      snprintf(label, sizeof label, "attention %d %s", i, ldmc_dtype_name(k_floats[d]));
      compare(label, g, ins, 3, 1.0, tol_of(k_floats[d]));
      ldmc_graph_free(g);
      th_release(3, ins);
    }
  }
}

/* attention's backward ops as the VJP builds them (lse, delta = rowsum(ct y),
 * dq, dk | dv), every op decomposed; outputs lse, dq and dk | dv */
static void test_attention_backward(void) {
  struct { ldmc_shape q, k, v; } cases[] = {
      {SHAPE(2, 4, 8), SHAPE(2, 6, 8), SHAPE(2, 6, 5)},
      {SHAPE(2, 2, 3, 4), SHAPE(2, 2, 7, 4), SHAPE(2, 2, 7, 3)},
      {SHAPE(5, 3), SHAPE(4, 3), SHAPE(4, 2)},
      {SHAPE(1, 1, 1), SHAPE(1, 1, 1), SHAPE(1, 1, 1)},
  };
  for (int i = 0; i < NELEM(cases); i++)
    for (int d = 0; d < NELEM(k_floats); d++) {
      ldmc_dtype dt = k_floats[d], cd = dt == LDMC_F64 ? LDMC_F64 : LDMC_F32;
      int r = cases[i].q.rank;
      ldmc_shape ct = cases[i].q;
      ct.dims[r - 1] = cases[i].v.dims[r - 1];
      ldmc_shape s[4] = {cases[i].q, cases[i].k, cases[i].v, ct};
      uint64_t seed = 50 + i;
      ldmc_tensor ins[4];
      for (int j = 0; j < 4; j++) ins[j] = th_random(dt, s[j], &seed, -2, 2);
      ldmc_graph *g = ldmc_graph_new("attention_backward");
      int32_t p[4], o[6];
      char name[8];
      for (int j = 0; j < 4; j++) {
        snprintf(name, sizeof name, "p%d", j);
        p[j] = th_param(g, name, dt, s[j]);
      }
      ldmc_attrs at = {0}, red = {0};
      at.scale = 0.6;
      red.reduce = LDMC_REDUCE_SUM;
      red.dims.n = 1;
      red.dims.v[0] = r - 1;
      int32_t y = ldmc_graph_add_checked(g, LDMC_OP_ATTENTION, dt, NULL, 3, p, &at, NULL);
      int32_t yc = ldmc_graph_add_checked(g, LDMC_OP_CONVERT, cd, NULL, 1, &y, NULL, NULL);
      int32_t cc = ldmc_graph_add_checked(g, LDMC_OP_CONVERT, cd, NULL, 1, &p[3], NULL, NULL);
      int32_t m[2] = {cc, yc};
      int32_t cy = ldmc_graph_add_checked(g, LDMC_OP_MUL, cd, NULL, 2, m, NULL, NULL);
      memcpy(o, p, sizeof p);
      o[4] = ldmc_graph_add_checked(g, LDMC_OP_ATTENTION_LSE, cd, NULL, 2, p, &at, NULL);
      o[5] = ldmc_graph_add_checked(g, LDMC_OP_REDUCE, cd, NULL, 1, &cy, &red, NULL);
      int32_t dq = ldmc_graph_add_checked(g, LDMC_OP_ATTENTION_GRAD_Q, cd, NULL, 6, o, &at, "grad.attn");
      int32_t dkv = ldmc_graph_add_checked(g, LDMC_OP_ATTENTION_GRAD_KV, cd, NULL, 6, o, &at, "grad.attn");
      CHECK_MSG(o[4] >= 0 && dq >= 0 && dkv >= 0, "attention backward graph: %s", ldmc_last_error());
      ldmc_graph_add_output(g, o[4], "lse");
      ldmc_graph_add_output(g, dq, "dq");
      ldmc_graph_add_output(g, dkv, "dkv");
      char label[64];
      snprintf(label, sizeof label, "attention backward %d %s", i, ldmc_dtype_name(dt));
      compare(label, g, ins, 4, 1.0, tol_of(dt));
      ldmc_graph_free(g);
      th_release(4, ins);
    }
}

static void test_upsample(void) {
  struct { ldmc_shape x; int64_t f; } cases[] = {{SHAPE(1, 2, 3, 3), 2}, {SHAPE(2, 1, 4), 3}, {SHAPE(1, 1, 2, 2, 2), 2},
                                                 {SHAPE(1, 2, 3, 3), 1}, {SHAPE(1, 1, 2, 1, 2, 1, 1, 2), 2},
                                                 {SHAPE(1, 3, 0, 2), 2}};
  for (int i = 0; i < NELEM(cases); i++)
    for (int d = 0; d < NELEM(k_all); d++) {
      ldmc_attrs at = {0};
      at.factor = cases[i].f;
      uint64_t seed = 50 + i;
      ldmc_tensor x = th_random(k_all[d], cases[i].x, &seed, -50, 50);
      ldmc_graph *g = one(LDMC_OP_UPSAMPLE_NEAREST, &at, 1, &x, NULL);
      compare("upsample_nearest", g, &x, 1, 0, 0);
      ldmc_graph_free(g);
      ldmc_tensor_release(&x);
    }
}

/* y = softmax(silu(a + b)) used twice, with scopes; the keep mask. */
static void test_graph_properties(void) {
  ldmc_graph *g = ldmc_graph_new("net");
  int32_t a = th_param(g, "a", LDMC_F32, SHAPE(3, 4)), b = th_param(g, "b", LDMC_F32, SHAPE(3, 4));
  int32_t ops[2] = {a, b};
  int32_t s = ldmc_graph_add_checked(g, LDMC_OP_ADD, LDMC_F32, NULL, 2, ops, NULL, "blk.0");
  int32_t si = ldmc_graph_add_checked(g, LDMC_OP_SILU, LDMC_F32, NULL, 1, &s, NULL, "blk.1.act");
  ldmc_attrs at = {0};
  at.axis = 1;
  int32_t sm = ldmc_graph_add_checked(g, LDMC_OP_SOFTMAX, LDMC_F32, NULL, 1, &si, &at, "blk.2");
  int32_t ops2[2] = {sm, si};
  int32_t y = ldmc_graph_add_checked(g, LDMC_OP_MUL, LDMC_F32, NULL, 2, ops2, NULL, NULL);
  CHECK(y >= 0);
  ldmc_graph_add_output(g, y, "y");
  ldmc_graph_add_output(g, si, "act");
  uint64_t seed = 3;
  ldmc_tensor ins[2] = {th_random(LDMC_F32, SHAPE(3, 4), &seed, -3, 3), th_random(LDMC_F32, SHAPE(3, 4), &seed, -3, 3)};
  compare("net", g, ins, 2, 1.0, 1e-5);

  ldmc_graph *d = NULL;
  CHECK(ldmc_decompose_composites(g, 0, &d) == LDMC_OK);
  if (d) {
    /* parameters first and in order; every node from silu has its scope; outputs by name */
    CHECK(d->nodes[0].op == LDMC_OP_PARAMETER && strcmp(d->nodes[0].attrs.name, "a") == 0);
    CHECK(d->nodes[1].op == LDMC_OP_PARAMETER && strcmp(d->nodes[1].attrs.name, "b") == 0);
    int scoped_act = 0, scoped_sm = 0;
    for (int32_t i = 0; i < d->n_nodes; i++) {
      const char *sc = d->nodes[i].scope;
      if (d->nodes[i].op == LDMC_OP_LOGISTIC) CHECK(sc && strcmp(sc, "blk.1.act") == 0);
      if (d->nodes[i].op == LDMC_OP_EXP) CHECK(sc && strcmp(sc, "blk.2") == 0);
      scoped_act += sc && strcmp(sc, "blk.1.act") == 0;
      scoped_sm += sc && strcmp(sc, "blk.2") == 0;
    }
    CHECK(scoped_act >= 2 && scoped_sm >= 5);
    CHECK(d->n_outputs == 2 && strcmp(d->output_names[1], "act") == 0);
    CHECK(d->nodes[d->outputs[1]].op == LDMC_OP_MUL); /* x * logistic(x) */
    ldmc_graph_free(d);
  }
  /* keep silu native: it survives, softmax does not */
  uint64_t keep = UINT64_C(1) << LDMC_OP_SILU;
  CHECK(ldmc_decompose_composites(g, keep, &d) == LDMC_OK);
  if (d) {
    int silu = 0, softmax = 0;
    for (int32_t i = 0; i < d->n_nodes; i++) {
      silu += d->nodes[i].op == LDMC_OP_SILU;
      softmax += d->nodes[i].op == LDMC_OP_SOFTMAX;
    }
    CHECK(silu == 1 && softmax == 0 && no_composites(d, keep));
    CHECK(ldmc_graph_verify(d) == LDMC_OK);
    ldmc_graph_free(d);
  }
  th_release(2, ins);
  ldmc_graph_free(g);
  /* bad input: an operand that is not an earlier node */
  ldmc_graph *bad = ldmc_graph_new("bad");
  int32_t x = th_param(bad, "x", LDMC_F32, SHAPE(2));
  int32_t fwd = 5;
  ldmc_graph_add(bad, LDMC_OP_SILU, LDMC_F32, &bad->nodes[x].shape, 1, &fwd, NULL, NULL);
  d = (ldmc_graph *)1;
  CHECK(ldmc_decompose_composites(bad, 0, &d) != LDMC_OK && d == NULL);
  CHECK(strstr(ldmc_last_error(), "%1 silu") != NULL);
  ldmc_graph_free(bad);
}

int main(void) {
  test_elementwise();
  test_softmax();
  test_norms();
  test_attention();
  test_attention_backward();
  test_upsample();
  test_graph_properties();
  for (int d = 0; d < NELEM(k_floats); d++)
    printf("largest error, decomposed vs native, %s: %.3g (relative to max(1, |x|))\n", ldmc_dtype_name(k_floats[d]),
           g_max_err[k_floats[d]]);
  return test_summary("test_decompose");
}
