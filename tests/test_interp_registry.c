/* The backend registry and running executables: lookup errors, inputs
 * matched by name (missing, unexpected, mis-typed, mis-shaped refused with
 * messages naming the tensor and both types), outputs under their names,
 * and multi-node graphs with dead values, shared and parameter outputs. */
#include "interp_test_util.h"

static bool has(const char *msg, const char *part) {
  bool ok = strstr(msg, part) != NULL;
  if (!ok) fprintf(stderr, "  message '%s' lacks '%s'\n", msg, part);
  return ok;
}

static void test_lookup(void) {
  CHECK(ldmc_backend_count() >= 1);
  CHECK(ldmc_backend_find("interp") == &ldmc_backend_interp);
  CHECK(ldmc_backend_get(0) != NULL && ldmc_backend_get(-1) == NULL && ldmc_backend_get(ldmc_backend_count()) == NULL);
  CHECK(ldmc_backend_find("nope") == NULL);
  CHECK(has(ldmc_last_error(), "unknown backend 'nope' (available: interp"));
  for (int i = 0; i < ldmc_backend_count(); i++) CHECK(ldmc_backend_find(ldmc_backend_get(i)->name) == ldmc_backend_get(i));
}

/* a f32[2], b i32[3] -> sum = a + a, b_neg = -b, a_again = a, sum2 = sum */
static ldmc_graph *graph(void) {
  ldmc_graph *g = ldmc_graph_new("g");
  int32_t a = th_param(g, "a", LDMC_F32, SHAPE(2)), b = th_param(g, "b", LDMC_I32, SHAPE(3));
  int32_t ops[2] = {a, a};
  int32_t s = th_add(g, LDMC_OP_ADD, LDMC_F32, NULL, 2, ops, NULL);
  th_add(g, LDMC_OP_EXP, LDMC_F32, NULL, 1, &a, NULL); /* dead */
  int32_t nb = th_add(g, LDMC_OP_NEG, LDMC_I32, NULL, 1, &b, NULL);
  ldmc_graph_add_output(g, s, "sum");
  ldmc_graph_add_output(g, nb, "b_neg");
  ldmc_graph_add_output(g, a, "a_again");
  ldmc_graph_add_output(g, s, "sum2");
  return g;
}

static void add(ldmc_tensor_set *set, const char *name, ldmc_dtype dt, ldmc_shape s, const double *v) {
  ldmc_tensor t = th_tensor(dt, s, v);
  free(t.name);
  t.name = strdup(name);
  CHECK(ldmc_tensor_set_add(set, &t) == LDMC_OK);
}

static void test_run_named(void) {
  ldmc_graph *g = graph();
  ldmc_executable *e = NULL;
  CHECK(ldmc_backend_interp.compile(g, NULL, &e) == LDMC_OK);
  ldmc_graph_free(g); /* the executable keeps its own copy */
  if (!e) return;
  ldmc_tensor_set in = {0}, out = {0};
  add(&in, "b", LDMC_I32, SHAPE(3), VALS(1, -2, 3));
  add(&in, "a", LDMC_F32, SHAPE(2), VALS(1.5, -4));
  CHECK(ldmc_executable_run_named(e, &in, &out) == LDMC_OK);
  CHECK(out.n == 4);
  ldmc_tensor *t;
  if ((t = ldmc_tensor_set_find(&out, "sum"))) th_expect("sum", t, VALS(3, -8), 2, 0, 0);
  if ((t = ldmc_tensor_set_find(&out, "sum2"))) th_expect("sum2", t, VALS(3, -8), 2, 0, 0);
  if ((t = ldmc_tensor_set_find(&out, "b_neg"))) th_expect("b_neg", t, VALS(-1, 2, -3), 3, 0, 0);
  if ((t = ldmc_tensor_set_find(&out, "a_again"))) th_expect("a_again", t, VALS(1.5, -4), 2, 0, 0);
  CHECK(ldmc_tensor_set_find(&out, "sum") && ldmc_tensor_set_find(&out, "sum")->data !=
                                                  ldmc_tensor_set_find(&out, "sum2")->data);
  /* running again into the same set: the names are taken, refused without leaks */
  CHECK(ldmc_executable_run_named(e, &in, &out) != LDMC_OK);
  CHECK(has(ldmc_last_error(), "sum"));
  ldmc_tensor_set_free(&out);
  ldmc_tensor_set_free(&in);

  /* missing input */
  ldmc_tensor_set miss = {0}, o2 = {0};
  add(&miss, "a", LDMC_F32, SHAPE(2), VALS(1, 2));
  CHECK(ldmc_executable_run_named(e, &miss, &o2) != LDMC_OK);
  CHECK(has(ldmc_last_error(), "missing input 'b'") && has(ldmc_last_error(), "i32[3]"));
  /* unexpected input */
  add(&miss, "b", LDMC_I32, SHAPE(3), VALS(1, 2, 3));
  add(&miss, "c", LDMC_F16, SHAPE(1), VALS(1));
  CHECK(ldmc_executable_run_named(e, &miss, &o2) != LDMC_OK);
  CHECK(has(ldmc_last_error(), "unexpected input 'c'") && has(ldmc_last_error(), "f16[1]"));
  CHECK(o2.n == 0);
  ldmc_tensor_set_free(&miss);
  /* wrong dtype, wrong shape */
  ldmc_tensor_set bad = {0};
  add(&bad, "a", LDMC_F16, SHAPE(2), VALS(1, 2));
  add(&bad, "b", LDMC_I32, SHAPE(3), VALS(1, 2, 3));
  CHECK(ldmc_executable_run_named(e, &bad, &o2) != LDMC_OK);
  CHECK(has(ldmc_last_error(), "'a'") && has(ldmc_last_error(), "expected f32[2], found f16[2]"));
  ldmc_tensor_set_free(&bad);
  add(&bad, "a", LDMC_F32, SHAPE(2), VALS(1, 2));
  add(&bad, "b", LDMC_I32, SHAPE(1, 3), VALS(1, 2, 3));
  CHECK(ldmc_executable_run_named(e, &bad, &o2) != LDMC_OK);
  CHECK(has(ldmc_last_error(), "'b'") && has(ldmc_last_error(), "expected i32[3], found i32[1,3]"));
  ldmc_tensor_set_free(&bad);
  CHECK(o2.n == 0);

  /* positional run: wrong counts and types are refused */
  ldmc_tensor pos[2] = {th_tensor(LDMC_F32, SHAPE(2), VALS(1, 2)), th_tensor(LDMC_I32, SHAPE(3), VALS(1, 2, 3))};
  ldmc_tensor outs[4];
  CHECK(ldmc_executable_run(e, pos, 1, outs, 4) != LDMC_OK);
  CHECK(ldmc_executable_run(e, pos, 2, outs, 3) != LDMC_OK);
  ldmc_tensor swapped[2] = {pos[1], pos[0]};
  CHECK(ldmc_executable_run(e, swapped, 2, outs, 4) != LDMC_OK);
  CHECK(has(ldmc_last_error(), "input 0 'a': expected f32[2], found i32[3]"));
  if (ldmc_executable_run(e, pos, 2, outs, 4) == LDMC_OK) {
    CHECK(strcmp(outs[0].name, "sum") == 0 && strcmp(outs[3].name, "sum2") == 0);
    th_release(4, outs);
  } else {
    CHECK(0);
  }
  th_release(2, pos);
  ldmc_executable_free(e);
  ldmc_executable_free(NULL);
}

static void test_bad_graph(void) {
  /* compile verifies: a node typed wrongly by hand is refused, not run */
  ldmc_graph *g = ldmc_graph_new("bad");
  int32_t a = th_param(g, "a", LDMC_F32, SHAPE(2));
  ldmc_shape wrong = SHAPE(3);
  ldmc_graph_add(g, LDMC_OP_NEG, LDMC_F32, &wrong, 1, &a, NULL, NULL);
  ldmc_graph_add_output(g, 1, "y");
  ldmc_executable *e = NULL;
  CHECK(ldmc_backend_interp.compile(g, NULL, &e) != LDMC_OK && e == NULL);
  ldmc_graph_free(g);
}

int main(void) {
  test_lookup();
  test_run_named();
  test_bad_graph();
  return test_summary("test_interp_registry");
}
