/* The builder API: broadcasting, reshape inference, keepdims, conv/matmul
 * attributes, scopes, sticky errors; numbers through the interpreter checked
 * against hand-computed values. */
#include <string.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "test_util.h"

static const ldmc_node *node(ldmc_builder *b, ldmc_value v) { return &ldmc_builder_graph(b)->nodes[v]; }

static bool shape_is(const ldmc_shape *s, int rank, const int64_t *d) {
  ldmc_shape t = ldmc_shape_make(rank, d);
  return s && ldmc_shape_equal(s, &t);
}

static void test_broadcast(void) {
  ldmc_builder *b = ldmc_builder_new("bc");
  const int64_t d23[2] = {2, 3}, d3[1] = {3}, d214[3] = {2, 1, 4}, d31[2] = {3, 1}, d234[3] = {2, 3, 4};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d23);
  ldmc_value y = ldmc_parameter(b, "y", LDMC_F32, 1, d3);
  ldmc_value s = ldmc_add(b, x, y);
  CHECK(s >= 0 && shape_is(ldmc_value_shape(b, s), 2, d23));
  const ldmc_node *n = node(b, s);
  CHECK(n->op == LDMC_OP_ADD && n->operands[0] == x); /* x needs no broadcast */
  const ldmc_node *bc = node(b, n->operands[1]);
  CHECK(bc->op == LDMC_OP_BROADCAST_IN_DIM && bc->attrs.dims.n == 1 && bc->attrs.dims.v[0] == 1);
  ldmc_value p = ldmc_parameter(b, "p", LDMC_F32, 3, d214);
  ldmc_value q = ldmc_parameter(b, "q", LDMC_F32, 2, d31);
  ldmc_value m = ldmc_mul(b, p, q);
  CHECK(shape_is(ldmc_value_shape(b, m), 3, d234));
  const ldmc_node *bq = node(b, node(b, m)->operands[1]);
  CHECK(bq->attrs.dims.n == 2 && bq->attrs.dims.v[0] == 1 && bq->attrs.dims.v[1] == 2);
  ldmc_value sc = ldmc_scale(b, x, 0.5);
  CHECK(shape_is(ldmc_value_shape(b, sc), 2, d23));
  ldmc_value cmp = ldmc_compare_values(b, LDMC_CMP_GT, x, y);
  CHECK(ldmc_value_dtype(b, cmp) == LDMC_PRED);
  ldmc_value sel = ldmc_select(b, cmp, x, ldmc_constant_scalar(b, LDMC_F32, 0));
  CHECK(shape_is(ldmc_value_shape(b, sel), 2, d23));
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g && st == LDMC_OK, "%s", ldmc_last_error());
  ldmc_graph_free(g);
}

static void test_errors_sticky(void) {
  ldmc_builder *b = ldmc_builder_new("err");
  const int64_t d23[2] = {2, 3}, d4[1] = {4};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d23);
  ldmc_value y = ldmc_parameter(b, "y", LDMC_F32, 1, d4);
  ldmc_builder_push_scope(b, "blk.%d", 7);
  CHECK(ldmc_add(b, x, y) == -1);
  CHECK(ldmc_builder_status(b) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_builder_error(b), "[2,3]") && strstr(ldmc_builder_error(b), "[4]"));
  CHECK(strstr(ldmc_builder_error(b), "blk.7") != NULL);
  CHECK(ldmc_unary(b, LDMC_OP_EXP, x) == -1); /* sticky */
  CHECK(ldmc_parameter(b, "z", LDMC_F32, 2, d23) == -1);
  ldmc_status st;
  CHECK(ldmc_builder_finish(b, &st) == NULL && st == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), "do not broadcast") != NULL);

  b = ldmc_builder_new("err2");
  x = ldmc_parameter(b, "x", LDMC_F32, 2, d23);
  CHECK(ldmc_parameter(b, "x", LDMC_F32, 2, d23) == -1);
  CHECK(strstr(ldmc_builder_error(b), "twice") != NULL);
  ldmc_builder_free(b);

  b = ldmc_builder_new("err3");
  CHECK(ldmc_unary(b, LDMC_OP_EXP, 42) == -1); /* not a value */
  CHECK(ldmc_builder_status(b) != LDMC_OK);
  ldmc_builder_free(b);

  b = ldmc_builder_new("err4");
  x = ldmc_parameter(b, "x", LDMC_F32, 2, d23);
  const int64_t w[4] = {1, 1, 1, 1};
  CHECK(ldmc_conv2d(b, x, x, 1, 0, 1, 1) == -1); /* rank 2 is not NCHW */
  ldmc_builder_free(b);
  b = ldmc_builder_new("err5");
  CHECK(ldmc_parameter(b, "big", LDMC_F32, 9, w) == -1);
  ldmc_builder_free(b);
  b = ldmc_builder_new("err6"); /* missing arrays are errors, not crashes */
  x = ldmc_parameter(b, "x", LDMC_F32, 2, d23);
  CHECK(ldmc_transpose(b, x, NULL) == -1 && ldmc_reshape(b, x, 2, NULL) == -1);
  ldmc_builder_free(b);
  b = ldmc_builder_new("err7");
  CHECK(ldmc_parameter(b, "p", LDMC_F32, 2, NULL) == -1);
  ldmc_builder_free(b);
}

static void test_reshape_reduce(void) {
  ldmc_builder *b = ldmc_builder_new("rr");
  const int64_t d[3] = {2, 3, 4};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
  const int64_t t1[2] = {-1, 4}, want1[2] = {6, 4};
  ldmc_value r = ldmc_reshape(b, x, 2, t1);
  CHECK(shape_is(ldmc_value_shape(b, r), 2, want1));
  CHECK(ldmc_reshape(b, x, 3, d) == x); /* no-op reshape adds nothing */
  const int64_t axes[2] = {-1, 1}, kd[3] = {2, 1, 1}, nk[1] = {2};
  ldmc_value k = ldmc_reduce(b, LDMC_REDUCE_SUM, x, 2, axes, true);
  CHECK(shape_is(ldmc_value_shape(b, k), 3, kd));
  ldmc_value nkv = ldmc_reduce(b, LDMC_REDUCE_MAX, x, 2, axes, false);
  CHECK(shape_is(ldmc_value_shape(b, nkv), 1, nk));
  const ldmc_node *rn = node(b, nkv);
  CHECK(rn->attrs.dims.n == 2 && rn->attrs.dims.v[0] == 1 && rn->attrs.dims.v[1] == 2);
  const int64_t perm[3] = {2, 0, 1}, pd[3] = {4, 2, 3};
  CHECK(shape_is(ldmc_value_shape(b, ldmc_transpose(b, x, perm)), 3, pd));
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK(g != NULL);
  ldmc_graph_free(g);

  b = ldmc_builder_new("rr2");
  x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
  const int64_t two[2] = {-1, -1};
  CHECK(ldmc_reshape(b, x, 2, two) == -1 && strstr(ldmc_builder_error(b), "-1"));
  ldmc_builder_free(b);
  b = ldmc_builder_new("rr3");
  x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
  const int64_t bad[2] = {-1, 5};
  CHECK(ldmc_reshape(b, x, 2, bad) == -1);
  ldmc_builder_free(b);
  b = ldmc_builder_new("rr4");
  x = ldmc_parameter(b, "x", LDMC_F32, 3, d);
  const int64_t dup[2] = {1, -2};
  CHECK(ldmc_reduce(b, LDMC_REDUCE_SUM, x, 2, dup, false) == -1);
  ldmc_builder_free(b);
}

static void test_conv_matmul_scopes(void) {
  ldmc_builder *b = ldmc_builder_new("cm");
  const int64_t xd[4] = {1, 3, 10, 10}, wd[4] = {8, 3, 3, 3}, od[4] = {1, 8, 5, 5};
  ldmc_builder_push_scope(b, "down_blocks.%d", 1);
  ldmc_builder_push_scope(b, "attentions.0");
  CHECK(strcmp(ldmc_builder_scope(b), "down_blocks.1.attentions.0") == 0);
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd);
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  ldmc_value y = ldmc_conv2d(b, x, w, 2, 1, 1, 1);
  CHECK(shape_is(ldmc_value_shape(b, y), 4, od));
  const ldmc_node *n = node(b, y);
  CHECK(n->attrs.input_dims.n == 4 && n->attrs.kernel_dims.v[3] == 3 && n->attrs.output_dims.v[1] == 1);
  CHECK(n->attrs.window_stride.v[0] == 2 && n->attrs.pad_low.v[1] == 1 && n->attrs.pad_high.v[0] == 1);
  CHECK(n->scope && strcmp(n->scope, "down_blocks.1.attentions.0") == 0);
  ldmc_builder_pop_scope(b);
  CHECK(strcmp(ldmc_builder_scope(b), "down_blocks.1") == 0);
  ldmc_builder_pop_scope(b);
  ldmc_builder_pop_scope(b); /* extra pop is harmless */
  CHECK(strcmp(ldmc_builder_scope(b), "") == 0);
  const int64_t ad[3] = {5, 2, 3}, bd[3] = {5, 3, 4}, md[3] = {5, 2, 4}, cd[2] = {3, 4};
  ldmc_value a = ldmc_parameter(b, "a", LDMC_F32, 3, ad);
  ldmc_value bb = ldmc_parameter(b, "b", LDMC_F32, 3, bd);
  ldmc_value m = ldmc_matmul(b, a, bb);
  CHECK(shape_is(ldmc_value_shape(b, m), 3, md));
  CHECK(node(b, m)->attrs.lhs_batch.n == 1 && node(b, m)->attrs.rhs_contract.v[0] == 1);
  CHECK(node(b, m)->scope == NULL);
  ldmc_value c = ldmc_parameter(b, "c", LDMC_F32, 2, cd);
  CHECK(shape_is(ldmc_value_shape(b, ldmc_matmul(b, a, c)), 3, md));
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "%s", ldmc_last_error());
  /* FLOP rule: 2 * 8 out ch * 25 px * 3 in ch * 9 */
  if (g) CHECK(ldmc_node_flops(g, y).mac == 2 * 8 * 25 * 3 * 9);
  ldmc_graph_free(g);
}

/* Runs a one-output graph on the interpreter. */
static bool run1(ldmc_graph *g, ldmc_tensor *in, int n_in, ldmc_tensor *out) {
  const ldmc_backend_i *be = ldmc_backend_find("interp");
  ldmc_executable *e = NULL;
  if (!be || be->compile(g, &(ldmc_compile_opts){0}, &e) != LDMC_OK) {
    fprintf(stderr, "interp compile: %s\n", ldmc_last_error());
    return false;
  }
  ldmc_status st = ldmc_executable_run(e, in, n_in, out, 1);
  if (st != LDMC_OK) fprintf(stderr, "interp run: %s\n", ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

static void test_numbers(void) {
  /* (x[2,3] + y[3]) * 2 summed over axis 1 with keepdims, then reshaped */
  ldmc_builder *b = ldmc_builder_new("num");
  const int64_t d23[2] = {2, 3}, d3[1] = {3};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, d23);
  ldmc_value y = ldmc_parameter(b, "y", LDMC_F32, 1, d3);
  ldmc_value s = ldmc_scale(b, ldmc_add(b, x, y), 2.0);
  const int64_t ax[1] = {1}, flat[1] = {-1};
  ldmc_value r = ldmc_reshape(b, ldmc_reduce(b, LDMC_REDUCE_SUM, s, 1, ax, true), 1, flat);
  ldmc_builder_output(b, r, "out");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK(g != NULL);
  if (!g) return;
  ldmc_tensor in[2], out;
  ldmc_tensor_alloc(&in[0], "x", LDMC_F32, &(ldmc_shape){2, {2, 3}});
  ldmc_tensor_alloc(&in[1], "y", LDMC_F32, &(ldmc_shape){1, {3}});
  float xv[6] = {1, 2, 3, 4, 5, 6}, yv[3] = {10, 20, 30};
  memcpy(in[0].data, xv, sizeof xv);
  memcpy(in[1].data, yv, sizeof yv);
  if (run1(g, in, 2, &out)) {
    /* row 0: 2*(11+22+33) = 132; row 1: 2*(14+25+36) = 150 */
    CHECK(out.shape.rank == 1 && out.shape.dims[0] == 2);
    CHECK_NEAR(ldmc_tensor_get(&out, 0), 132.0, 1e-4);
    CHECK_NEAR(ldmc_tensor_get(&out, 1), 150.0, 1e-4);
    ldmc_tensor_release(&out);
  } else {
    CHECK(!"interp run");
  }
  ldmc_tensor_release(&in[0]);
  ldmc_tensor_release(&in[1]);
  ldmc_graph_free(g);

  /* batched matmul: [2,1,2] x [2,2,1] */
  b = ldmc_builder_new("mm");
  ldmc_value a = ldmc_parameter(b, "a", LDMC_F32, 3, (int64_t[]){2, 1, 2});
  ldmc_value c = ldmc_parameter(b, "c", LDMC_F32, 3, (int64_t[]){2, 2, 1});
  ldmc_builder_output(b, ldmc_matmul(b, a, c), "out");
  g = ldmc_builder_finish(b, &st);
  CHECK(g != NULL);
  if (!g) return;
  ldmc_tensor_alloc(&in[0], "a", LDMC_F32, &(ldmc_shape){3, {2, 1, 2}});
  ldmc_tensor_alloc(&in[1], "c", LDMC_F32, &(ldmc_shape){3, {2, 2, 1}});
  float av[4] = {1, 2, 3, 4}, cv[4] = {5, 6, 7, 8};
  memcpy(in[0].data, av, sizeof av);
  memcpy(in[1].data, cv, sizeof cv);
  if (run1(g, in, 2, &out)) {
    CHECK_NEAR(ldmc_tensor_get(&out, 0), 1 * 5 + 2 * 6, 1e-5);
    CHECK_NEAR(ldmc_tensor_get(&out, 1), 3 * 7 + 4 * 8, 1e-5);
    ldmc_tensor_release(&out);
  } else {
    CHECK(!"interp run");
  }
  ldmc_tensor_release(&in[0]);
  ldmc_tensor_release(&in[1]);
  ldmc_graph_free(g);
}

int main(void) {
  test_broadcast();
  test_errors_sticky();
  test_reshape_reduce();
  test_conv_matmul_scopes();
  test_numbers();
  return test_summary("test_builder");
}
