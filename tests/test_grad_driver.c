/* The autodiff driver (ldmc_grad): seeds against hand-computed gradients,
 * output and parameter layout, pruning (node counts), wrt_regex selection,
 * paths that stop at integers and predicates, mixed precision, the
 * conventions at ties and kinks, and its error messages. */
#include <string.h>

#include "grad_check.h"

#define DT GC_DT

static ldmc_graph *finish(ldmc_builder *b) {
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "building the forward graph: %s", ldmc_last_error());
  return g;
}

static ldmc_graph *grad(const ldmc_graph *g, const char *output, int seed, const char *wrt) {
  ldmc_grad_opts o = {.output = output, .seed = seed, .wrt_regex = wrt};
  ldmc_graph *out = NULL;
  ldmc_status st = ldmc_grad(g, &o, &out);
  CHECK_MSG(st == LDMC_OK && out, "ldmc_grad: %s", ldmc_last_error());
  return st == LDMC_OK ? out : NULL;
}

/* ldmc_grad must fail with a message containing want (and leave *out NULL). */
static void expect_error(const ldmc_graph *g, const char *output, int seed, const char *wrt, const char *want) {
  ldmc_grad_opts o = {.output = output, .seed = seed, .wrt_regex = wrt};
  ldmc_graph *out = (ldmc_graph *)1;
  ldmc_status st = ldmc_grad(g, &o, &out);
  CHECK_MSG(st != LDMC_OK && out == NULL, "expected an error containing \"%s\"", want);
  CHECK_MSG(strstr(ldmc_last_error(), want) != NULL, "error \"%s\" lacks \"%s\"", ldmc_last_error(), want);
  if (st == LDMC_OK) ldmc_graph_free(out);
}

static int out_index(const ldmc_graph *g, const char *name) {
  for (int i = 0; i < g->n_outputs; i++)
    if (strcmp(g->output_names[i], name) == 0) return i;
  return -1;
}

/* Runs g on the interpreter; outs has room for every output (release them). */
static bool run(const ldmc_graph *g, const ldmc_tensor *in, ldmc_tensor *outs) {
  ldmc_executable *e = NULL;
  if (ldmc_backend_interp.compile(g, NULL, &e) != LDMC_OK) {
    CHECK_MSG(0, "compile: %s", ldmc_last_error());
    return false;
  }
  bool ok = gc_run(e, in, ldmc_graph_num_params(g), outs, g->n_outputs);
  CHECK_MSG(ok, "run: %s", ldmc_last_error());
  gc_exe_free(e);
  return ok;
}

/* The output called name of a run of g, checked against want within tol. */
static void expect_output(const ldmc_graph *g, const ldmc_tensor *outs, const char *name, const double *want, int64_t n,
                          double tol) {
  int k = out_index(g, name);
  CHECK_MSG(k >= 0, "no output '%s'", name);
  if (k >= 0) th_expect(name, &outs[k], want, n, 0, tol);
}

/* f = sum(x * x * w), aux = x + 1 */
static ldmc_graph *tiny(bool vector_f) {
  ldmc_builder *b = ldmc_builder_new("tiny");
  ldmc_value x = ldmc_parameter(b, "x", DT, 1, DIMS(3)), w = ldmc_parameter(b, "w", DT, 1, DIMS(3));
  ldmc_value p = ldmc_mul(b, ldmc_mul(b, x, x), w);
  ldmc_builder_output(b, vector_f ? p : ldmc_reduce(b, LDMC_REDUCE_SUM, p, 1, DIMS(0), false), "f");
  ldmc_builder_output(b, ldmc_add(b, x, ldmc_constant_scalar(b, DT, 1.0)), "aux");
  return finish(b);
}

static void test_seeds(void) {
  static const double xv[] = {1.5, -2, 0.25}, wv[] = {3, 0.5, -4}, cv[] = {2, -1, 0.5};
  double gx[3], gw[3], gxc[3], gwc[3], fwd[2][3];
  for (int i = 0; i < 3; i++) {
    gx[i] = 2 * xv[i] * wv[i];
    gw[i] = xv[i] * xv[i];
    gxc[i] = cv[i] * gx[i];
    gwc[i] = cv[i] * gw[i];
    fwd[1][i] = xv[i] + 1;
  }
  fwd[0][0] = xv[0] * xv[0] * wv[0] + xv[1] * xv[1] * wv[1] + xv[2] * xv[2] * wv[2];
  ldmc_tensor in[3] = {th_tensor(DT, SHAPE(3), xv), th_tensor(DT, SHAPE(3), wv), th_tensor(DT, SHAPE(3), cv)};
  ldmc_graph *g = tiny(false), *gv = tiny(true);
  static const int seeds[] = {LDMC_GRAD_SCALAR, LDMC_GRAD_SUM};
  for (int s = 0; g && s < 2; s++) {
    ldmc_graph *d = grad(g, "f", seeds[s], NULL);
    if (!d) continue;
    /* layout: same parameters, original outputs first, then grad.<param> in parameter order */
    CHECK(ldmc_graph_num_params(d) == 2 && d->n_outputs == 4);
    CHECK(d->n_outputs == 4 && !strcmp(d->output_names[0], "f") && !strcmp(d->output_names[1], "aux") &&
          !strcmp(d->output_names[2], "grad.x") && !strcmp(d->output_names[3], "grad.w"));
    ldmc_tensor outs[4];
    if (d->n_outputs == 4 && run(d, in, outs)) {
      expect_output(d, outs, "f", fwd[0], 1, 1e-12);
      expect_output(d, outs, "aux", fwd[1], 3, 0);
      expect_output(d, outs, "grad.x", gx, 3, 1e-12);
      expect_output(d, outs, "grad.w", gw, 3, 1e-12);
      th_release(4, outs);
    }
    ldmc_graph_free(d);
  }
  /* COTANGENT: a parameter cotangent.f appended after x and w */
  ldmc_graph *d = gv ? grad(gv, "f", LDMC_GRAD_COTANGENT, NULL) : NULL;
  if (d) {
    int32_t cp = ldmc_graph_find_param(d, "cotangent.f");
    CHECK(ldmc_graph_num_params(d) == 3 && cp > ldmc_graph_find_param(d, "w"));
    CHECK(cp >= 0 && d->nodes[cp].dtype == DT && ldmc_shape_equal(&d->nodes[cp].shape, &gv->nodes[gv->outputs[0]].shape));
    ldmc_tensor outs[4];
    if (d->n_outputs == 4 && run(d, in, outs)) {
      expect_output(d, outs, "grad.x", gxc, 3, 1e-12);
      expect_output(d, outs, "grad.w", gwc, 3, 1e-12);
      th_release(4, outs);
    }
    ldmc_graph_free(d);
  }
  /* SUM of a vector output = COTANGENT with ones */
  d = gv ? grad(gv, "f", LDMC_GRAD_SUM, "^x$") : NULL;
  if (d) {
    CHECK(d->n_outputs == 3 && out_index(d, "grad.w") < 0);
    ldmc_tensor outs[3];
    if (d->n_outputs == 3 && run(d, in, outs)) {
      expect_output(d, outs, "grad.x", gx, 3, 1e-12);
      th_release(3, outs);
    }
    ldmc_graph_free(d);
  }
  ldmc_graph_free(g);
  ldmc_graph_free(gv);
  th_release(3, in);
}

/* backward nodes added by ldmc_grad beyond the forward copy */
static int32_t added(const ldmc_graph *fwd, const ldmc_graph *d) { return d ? d->n_nodes - fwd->n_nodes : -1; }

/* f = sum(x * w) [+ sum(sin(sin(sin(u))))], aux = z * 2 */
static ldmc_graph *pruning_graph(bool with_branch) {
  ldmc_builder *b = ldmc_builder_new("prune");
  ldmc_value x = ldmc_parameter(b, "x", DT, 2, DIMS(3, 5)), w = ldmc_parameter(b, "w", DT, 2, DIMS(3, 5));
  ldmc_value u = ldmc_parameter(b, "u", DT, 1, DIMS(7)), z = ldmc_parameter(b, "z", DT, 1, DIMS(2));
  ldmc_value f = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, x, w), 2, DIMS(0, 1), false);
  ldmc_value br = ldmc_unary(b, LDMC_OP_SIN, ldmc_unary(b, LDMC_OP_SIN, ldmc_unary(b, LDMC_OP_SIN, u)));
  ldmc_value s = ldmc_reduce(b, LDMC_REDUCE_SUM, br, 1, DIMS(0), false);
  ldmc_builder_output(b, with_branch ? ldmc_add(b, f, s) : ldmc_add(b, f, ldmc_constant_scalar(b, DT, 0.5)), "f");
  ldmc_builder_output(b, ldmc_scale(b, z, 2.0), "aux");
  return finish(b);
}

static bool has_op_after(const ldmc_graph *d, int32_t from, ldmc_op op) {
  for (int32_t i = from; i < d->n_nodes; i++)
    if (d->nodes[i].op == op) return true;
  return false;
}

static void test_pruning(void) {
  ldmc_graph *g1 = pruning_graph(true), *g0 = pruning_graph(false);
  if (!g1 || !g0) goto done;
  /* wrt x: the sin branch and w's cotangent are never built */
  ldmc_graph *d1 = grad(g1, "f", LDMC_GRAD_SCALAR, "^x$"), *d0 = grad(g0, "f", LDMC_GRAD_SCALAR, "^x$");
  if (d1 && d0) {
    CHECK_MSG(added(g1, d1) == added(g0, d0), "wrt x: %d backward nodes with the sin branch, %d without",
              (int)added(g1, d1), (int)added(g0, d0));
    /* the seed, reduce's broadcast, mul(ct, w): no cotangent for w or the constant */
    CHECK_MSG(added(g0, d0) == 3, "wrt x: %d backward nodes, expected 3", (int)added(g0, d0));
    CHECK(!has_op_after(d1, g1->n_nodes, LDMC_OP_COS)); /* sin's rule would add cos */
    bool scoped = false;
    for (int32_t i = g1->n_nodes; i < d1->n_nodes; i++)
      scoped |= d1->nodes[i].scope && !strncmp(d1->nodes[i].scope, "grad", 4);
    CHECK_MSG(scoped, "backward nodes carry a scope starting with \"grad\"");
  }
  /* wrt u: the branch is built (one cos per sin) */
  ldmc_graph *du = grad(g1, "f", LDMC_GRAD_SCALAR, "^u$");
  if (du) {
    int cos = 0;
    for (int32_t i = g1->n_nodes; i < du->n_nodes; i++) cos += du->nodes[i].op == LDMC_OP_COS;
    CHECK_MSG(cos == 3, "%d cos nodes for three sins", cos);
  }
  /* every float parameter: z (only in aux) and u in g0 get zeros */
  ldmc_graph *da = grad(g0, "f", LDMC_GRAD_SCALAR, NULL);
  if (da) {
    CHECK(da->n_outputs == 6);
    uint64_t rs = 7;
    ldmc_tensor in[4] = {th_random(DT, SHAPE(3, 5), &rs, -1, 1), th_random(DT, SHAPE(3, 5), &rs, -1, 1),
                         th_random(DT, SHAPE(7), &rs, -1, 1), th_random(DT, SHAPE(2), &rs, -1, 1)};
    ldmc_tensor outs[6];
    if (da->n_outputs == 6 && run(da, in, outs)) {
      double w[15], zeros[7] = {0};
      for (int i = 0; i < 15; i++) w[i] = ldmc_tensor_get(&in[1], i);
      expect_output(da, outs, "grad.x", w, 15, 0);
      expect_output(da, outs, "grad.u", zeros, 7, 0);
      expect_output(da, outs, "grad.z", zeros, 2, 0);
      th_release(6, outs);
    }
    th_release(4, in);
  }
  ldmc_graph_free(d1);
  ldmc_graph_free(d0);
  ldmc_graph_free(du);
  ldmc_graph_free(da);
done:
  ldmc_graph_free(g1);
  ldmc_graph_free(g0);
}

/* Paths stop at integer values and at select's predicate. */
static void test_stops(void) {
  ldmc_builder *b = ldmc_builder_new("stops");
  ldmc_value x = ldmc_parameter(b, "x", DT, 1, DIMS(4)), u = ldmc_parameter(b, "u", DT, 1, DIMS(4));
  ldmc_value k = ldmc_parameter(b, "k", LDMC_I32, 1, DIMS(2));
  ldmc_value sel = ldmc_select(b, ldmc_compare_values(b, LDMC_CMP_GT, x, u), x, ldmc_scale(b, x, 3.0));
  ldmc_value g = ldmc_gather(b, sel, k, 0);                               /* k: integer indices */
  ldmc_value t = ldmc_convert(b, ldmc_convert(b, u, LDMC_I32), DT);        /* u through i32 */
  ldmc_value f = ldmc_add(b, ldmc_reduce(b, LDMC_REDUCE_SUM, g, 1, DIMS(0), false),
                          ldmc_reduce(b, LDMC_REDUCE_SUM, t, 1, DIMS(0), false));
  ldmc_builder_output(b, f, "f");
  ldmc_graph *fg = finish(b);
  if (!fg) return;
  /* u reaches f only through the predicate and an integer: nothing to build */
  ldmc_graph *du = grad(fg, "f", LDMC_GRAD_SCALAR, "^u$");
  if (du) {
    CHECK_MSG(added(fg, du) == 2, "wrt u: %d nodes added, expected 2 (zeros: a constant and its broadcast)",
              (int)added(fg, du));
    CHECK(du->n_outputs == 2 && out_index(du, "grad.k") < 0);
  }
  ldmc_graph *dx = grad(fg, NULL, LDMC_GRAD_SCALAR, NULL); /* NULL output: the first */
  if (dx) {
    CHECK(dx->n_outputs == 3 && out_index(dx, "grad.k") < 0);
    static const double xv[] = {1, -1, 2, 0.5}, uv[] = {0, 0, 3, 2.5};
    static const double kv[] = {2, 0};
    ldmc_tensor in[3] = {th_tensor(DT, SHAPE(4), xv), th_tensor(DT, SHAPE(4), uv), th_tensor(LDMC_I32, SHAPE(2), kv)};
    ldmc_tensor outs[3];
    if (dx->n_outputs == 3 && run(dx, in, outs)) {
      /* sel = x where x > u else 3x; picks elements 2 (3x) and 0 (x) */
      expect_output(dx, outs, "grad.x", VALS(1, 0, 3, 0), 4, 0);
      expect_output(dx, outs, "grad.u", VALS(0, 0, 0, 0), 4, 0);
      th_release(3, outs);
    }
    th_release(3, in);
  }
  ldmc_graph_free(du);
  ldmc_graph_free(dx);
  ldmc_graph_free(fg);
}

static void test_regex(void) {
  ldmc_builder *b = ldmc_builder_new("names");
  ldmc_value x = ldmc_parameter(b, "x", DT, 0, NULL), w = ldmc_parameter(b, "w", DT, 0, NULL);
  ldmc_value w2 = ldmc_parameter(b, "w2", DT, 0, NULL);
  ldmc_parameter(b, "widx", LDMC_I32, 0, NULL);
  ldmc_builder_output(b, ldmc_mul(b, ldmc_mul(b, x, w), w2), "f");
  ldmc_graph *g = finish(b);
  if (!g) return;
  static const struct { const char *re; const char *outs[3]; } cases[] = {
      {NULL, {"grad.x", "grad.w", "grad.w2"}}, {"w", {"grad.w", "grad.w2"}}, {"^w$", {"grad.w"}},
      {"^(x|w2)$", {"grad.x", "grad.w2"}}, {"idx|^x", {"grad.x"}}};
  for (int c = 0; c < NELEM(cases); c++) {
    ldmc_graph *d = grad(g, "f", LDMC_GRAD_SCALAR, cases[c].re);
    if (!d) continue;
    int n = 0;
    while (n < 3 && cases[c].outs[n]) n++;
    CHECK_MSG(d->n_outputs == 1 + n, "regex %s: %d outputs, expected %d", cases[c].re ? cases[c].re : "NULL",
              (int)d->n_outputs, 1 + n);
    for (int i = 0; i < n && i + 1 < d->n_outputs; i++)
      CHECK_MSG(!strcmp(d->output_names[1 + i], cases[c].outs[i]), "regex %s: output %d is %s, expected %s",
                cases[c].re ? cases[c].re : "NULL", 1 + i, d->output_names[1 + i], cases[c].outs[i]);
    ldmc_graph_free(d);
  }
  ldmc_graph_free(g);
}

static void test_errors(void) {
  ldmc_builder *b = ldmc_builder_new("errs");
  ldmc_value x = ldmc_parameter(b, "x", DT, 1, DIMS(3)), k = ldmc_parameter(b, "k", LDMC_I32, 1, DIMS(3));
  ldmc_builder_output(b, ldmc_unary(b, LDMC_OP_EXP, x), "vec");
  ldmc_builder_output(b, k, "idx");
  ldmc_graph *g = finish(b);
  if (!g) return;
  expect_error(g, "nope", LDMC_GRAD_SUM, NULL, "has no output 'nope' (outputs: vec, idx)");
  expect_error(g, "vec", LDMC_GRAD_SUM, "(", "wrt_regex '(' does not compile");
  expect_error(g, "vec", LDMC_GRAD_SUM, "^zzz$", "wrt_regex '^zzz$' matches no float parameter");
  expect_error(g, "vec", LDMC_GRAD_SUM, "^k$", "it matches only non-float ones: k");
  expect_error(g, "vec", LDMC_GRAD_SCALAR, NULL, "seed SCALAR needs a rank-0 output, but 'vec' is f64[3]");
  expect_error(g, "idx", LDMC_GRAD_SUM, NULL, "output 'idx' is i32[3]; only float outputs");
  expect_error(NULL, "vec", LDMC_GRAD_SUM, NULL, "the graph is NULL");
  expect_error(g, "vec", 7, NULL, "unknown seed 7");
  ldmc_graph *out = NULL;
  CHECK(ldmc_grad(g, NULL, &out) != LDMC_OK && out == NULL);
  ldmc_graph *empty = ldmc_graph_new("empty");
  if (empty) expect_error(empty, NULL, LDMC_GRAD_SUM, NULL, "graph 'empty' has no outputs");
  ldmc_graph_free(empty);
  ldmc_grad_opts o = {.output = "vec", .seed = LDMC_GRAD_SUM};
  CHECK(ldmc_grad(g, &o, NULL) != LDMC_OK);
  /* an output name the gradients would reuse */
  ldmc_builder *b2 = ldmc_builder_new("clash");
  ldmc_value y = ldmc_parameter(b2, "y", DT, 0, NULL);
  ldmc_builder_output(b2, y, "grad.y");
  ldmc_graph *g2 = finish(b2);
  if (g2) expect_error(g2, "grad.y", LDMC_GRAD_SCALAR, NULL, "'grad.y' is already used");
  ldmc_graph_free(g2);
  ldmc_graph_free(g);
}

/* a gradient has its operand's dtype, through converts */
static void test_mixed_precision(void) {
  ldmc_builder *b = ldmc_builder_new("mixed");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 1, DIMS(3)), h = ldmc_parameter(b, "h", LDMC_BF16, 1, DIMS(3));
  ldmc_value p = ldmc_mul(b, ldmc_convert(b, x, LDMC_BF16), h);
  ldmc_builder_output(b, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_convert(b, p, DT), 1, DIMS(0), false), "f");
  ldmc_graph *g = finish(b);
  ldmc_graph *d = g ? grad(g, "f", LDMC_GRAD_SCALAR, NULL) : NULL;
  if (d) {
    int kx = out_index(d, "grad.x"), kh = out_index(d, "grad.h");
    CHECK(kx >= 0 && d->nodes[d->outputs[kx]].dtype == LDMC_F32);
    CHECK(kh >= 0 && d->nodes[d->outputs[kh]].dtype == LDMC_BF16);
    ldmc_tensor in[2] = {th_tensor(LDMC_F32, SHAPE(3), VALS(1, 2, -3)), th_tensor(LDMC_BF16, SHAPE(3), VALS(0.5, 4, 2))};
    ldmc_tensor outs[3];
    if (kx >= 0 && kh >= 0 && run(d, in, outs)) {
      expect_output(d, outs, "grad.x", VALS(0.5, 4, 2), 3, 0);
      expect_output(d, outs, "grad.h", VALS(1, 2, -3), 3, 0);
      th_release(3, outs);
    }
    th_release(2, in);
  }
  ldmc_graph_free(d);
  ldmc_graph_free(g);
}

/* JAX's conventions: max/min ties split ct in half, reduce max/min ties
 * share it equally, |x|' = 1 at 0, pow's derivatives vanish at y = 0 / x = 0. */
static void test_conventions(void) {
  ldmc_builder *b = ldmc_builder_new("ties");
  ldmc_value x = ldmc_parameter(b, "x", DT, 1, DIMS(4)), y = ldmc_parameter(b, "y", DT, 1, DIMS(4));
  ldmc_value r = ldmc_parameter(b, "r", DT, 1, DIMS(5));
  ldmc_value f = ldmc_add(b, ldmc_binary(b, LDMC_OP_MAX, x, y), ldmc_scale(b, ldmc_binary(b, LDMC_OP_MIN, x, y), 3.0));
  ldmc_value rm = ldmc_reduce(b, LDMC_REDUCE_MAX, r, 1, DIMS(0), false);
  ldmc_value rn = ldmc_reduce(b, LDMC_REDUCE_MIN, r, 1, DIMS(0), false);
  ldmc_builder_output(b, f, "mm");
  ldmc_builder_output(b, ldmc_add(b, ldmc_scale(b, rm, 3.0), rn), "red");
  ldmc_builder_output(b, ldmc_unary(b, LDMC_OP_ABS, x), "abs");
  ldmc_builder_output(b, ldmc_binary(b, LDMC_OP_POW, x, y), "pow");
  ldmc_graph *g = finish(b);
  if (!g) return;
  static const double xv[] = {2, 0, -1, 0}, yv[] = {2, 1, 3, 0}, rv[] = {1, 4, -2, 4, -2};
  ldmc_tensor in[3] = {th_tensor(DT, SHAPE(4), xv), th_tensor(DT, SHAPE(4), yv), th_tensor(DT, SHAPE(5), rv)};
  static const struct { const char *out; const char *wrt; const char *name; double want[5]; int n; } cases[] = {
      /* max + 3 min: at the ties (elements 0, 3) x gets 1/2 + 3/2; elsewhere x < y, so 3 */
      {"mm", "^x$", "grad.x", {2, 3, 3, 2}, 4},
      {"mm", "^y$", "grad.y", {2, 1, 1, 2}, 4},
      /* 3 max + min over [1,4,-2,4,-2]: 3/2 to each 4, 1/2 to each -2 */
      {"red", "^r$", "grad.r", {0, 1.5, 0.5, 1.5, 0.5}, 5},
      /* d|x| at 0 is +1 */
      {"abs", "^x$", "grad.x", {1, 1, -1, 1}, 4},
      /* d x^y / dx = y x^(y-1), 0 where y = 0 (element 3: 0^0) */
      {"pow", "^x$", "grad.x", {4, 1, 3, 0}, 4},
      /* d x^y / dy = log(x) x^y, 0 at x = 0; NaN for x < 0 */
      {"pow", "^y$", "grad.y", {4 * 0.69314718055994531, 0, NAN, 0}, 4}};
  for (int c = 0; c < NELEM(cases); c++) {
    ldmc_graph *d = grad(g, cases[c].out, LDMC_GRAD_SUM, cases[c].wrt);
    ldmc_tensor outs[5];
    if (d && d->n_outputs == 5 && run(d, in, outs)) {
      expect_output(d, outs, cases[c].name, cases[c].want, cases[c].n, 1e-12);
      th_release(5, outs);
    }
    ldmc_graph_free(d);
  }
  th_release(3, in);
  ldmc_graph_free(g);
}

/* The differentiated output can be a parameter or independent of it. */
static void test_degenerate(void) {
  ldmc_builder *b = ldmc_builder_new("degenerate");
  ldmc_value x = ldmc_parameter(b, "x", DT, 1, DIMS(3));
  ldmc_builder_output(b, x, "same");
  ldmc_builder_output(b, ldmc_constant_scalar(b, DT, 2.0), "const");
  ldmc_graph *g = finish(b);
  if (!g) return;
  ldmc_tensor in[2] = {th_tensor(DT, SHAPE(3), VALS(1, 2, 3)), th_tensor(DT, SHAPE(3), VALS(5, 6, 7))};
  ldmc_tensor outs[3];
  ldmc_graph *d = grad(g, "same", LDMC_GRAD_COTANGENT, NULL);
  if (d && run(d, in, outs)) {
    expect_output(d, outs, "grad.x", VALS(5, 6, 7), 3, 0);
    th_release(3, outs);
  }
  ldmc_graph_free(d);
  d = grad(g, "const", LDMC_GRAD_SCALAR, NULL);
  if (d && run(d, in, outs)) {
    CHECK(added(g, d) == 2); /* only the zeros of grad.x */
    expect_output(d, outs, "grad.x", VALS(0, 0, 0), 3, 0);
    th_release(3, outs);
  }
  ldmc_graph_free(d);
  th_release(2, in);
  ldmc_graph_free(g);
}

int main(void) {
  test_seeds();
  test_pruning();
  test_stops();
  test_regex();
  test_errors();
  test_mixed_precision();
  test_conventions();
  test_degenerate();
  return test_summary("test_grad_driver");
}
