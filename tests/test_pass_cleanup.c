/* CSE, DCE and constant folding on text IR. Expected structures and folded
 * values are worked out by hand; results must match the interpreter on the
 * unoptimized graph (folded values within 1 ulp-ish: rtol 1e-6). */
#include "pass_test_util.h"

static void test_cse(void) {
  ldmc_graph *g = ptu_parse("graph t {\n  %0 = f32[2,3] parameter() name=\"x\"\n  %1 = f32[2,3] parameter() name=\"z\"\n"
                            "  %2 = f32[2,3] add(%0, %1)\n  %3 = f32[2,3] add(%0, %1)\n  %4 = f32[2,3] exp(%2)\n"
                            "  %5 = f32[2,3] exp(%3)\n  %6 = f32[2,3] mul(%4, %5)\n"
                            "  %7 = f32[3,2] transpose(%6) dims={1,0}\n  %8 = f32[3,2] transpose(%6) dims={1,0}\n"
                            "  %9 = f32[] constant() value=2\n  %10 = f32[] constant() value=2\n"
                            "  %11 = f32[] constant() value=3\n  %12 = f32[] add(%9, %10)\n  %13 = f32[] add(%9, %11)\n"
                            "  return %7 \"a\", %8 \"b\", %12 \"c\", %13 \"d\"\n}\n");
  if (!g) return;
  ldmc_graph *ref = ldmc_graph_clone(g);
  CHECK(ptu_run(&ldmc_pass_cse, g));
  /* add, exp, transpose merged pairwise in one sweep; constants 2 and 2 merged, 3 kept */
  CHECK_MSG(g->n_nodes == 10, "cse left %d nodes, expected 10", (int)g->n_nodes);
  CHECK(ptu_count(g, LDMC_OP_ADD) == 3 && ptu_count(g, LDMC_OP_EXP) == 1 && ptu_count(g, LDMC_OP_TRANSPOSE) == 1);
  CHECK(ptu_count(g, LDMC_OP_CONSTANT) == 2 && ptu_count(g, LDMC_OP_PARAMETER) == 2);
  CHECK(g->outputs[0] == g->outputs[1] && g->outputs[2] != g->outputs[3]);
  CHECK(!ptu_run(&ldmc_pass_cse, g));
  ptu_same_results("cse", ref, g, 0, 0);
  ldmc_graph_free(g);
  ldmc_graph_free(ref);
  /* different attributes, different constants, and parameters never merge */
  g = ptu_parse("graph t {\n  %0 = f32[2,2] parameter() name=\"x\"\n  %1 = f32[2,2] parameter() name=\"x2\"\n"
                "  %2 = f32[2,2] transpose(%0) dims={1,0}\n  %3 = f32[2,2] transpose(%0) dims={0,1}\n"
                "  %4 = f32[2] constant() value={1, 2}\n  %5 = f32[2] constant() value={1, 3}\n"
                "  return %2 \"a\", %3 \"b\", %4 \"c\", %5 \"d\", %1 \"e\"\n}\n");
  if (g) {
    CHECK(!ptu_run(&ldmc_pass_cse, g) && g->n_nodes == 6);
    ldmc_graph_free(g);
  }
}

static void test_dce(void) {
  ldmc_graph *g = ptu_parse("graph t {\n  %0 = f32[4] parameter() name=\"x\"\n  %1 = f32[4] parameter() name=\"unused\"\n"
                            "  %2 = f32[4] exp(%0)\n  %3 = f32[4] log(%2)\n  %4 = f32[4] neg(%0)\n"
                            "  %5 = f32[4] tanh(%4)\n  return %4 \"y\"\n}\n");
  if (!g) return;
  ldmc_graph *ref = ldmc_graph_clone(g);
  CHECK(ptu_run(&ldmc_pass_dce, g));
  /* exp, log, tanh dead; both parameters stay, in order */
  CHECK(g->n_nodes == 3 && ptu_count(g, LDMC_OP_PARAMETER) == 2 && ptu_out_op(g, 0) == LDMC_OP_NEG);
  CHECK(ldmc_graph_find_param(g, "x") == 0 && ldmc_graph_find_param(g, "unused") == 1);
  CHECK(!ptu_run(&ldmc_pass_dce, g));
  ptu_same_results("dce", ref, g, 0, 0);
  ldmc_graph_free(g);
  ldmc_graph_free(ref);
}

static void check_values(const ldmc_node *n, const double *want, int k) {
  ldmc_tensor t = {.dtype = n->dtype, .shape = n->shape, .data = n->attrs.value.data, .nbytes = n->attrs.value.nbytes};
  for (int i = 0; i < k; i++) CHECK_NEAR(ldmc_tensor_get(&t, i), want[i], 1e-6 * fabs(want[i]) + 1e-7);
}

static void test_fold(void) {
  /* (iota + 1) * 2 over [2,3] along axis 1 = {2,4,6,2,4,6}; sum over axis 1 = {12, 12};
     transpose of a [2,2] constant; exp(0) = 1 */
  ldmc_graph *g = ptu_parse(
      "graph t {\n  %0 = f32[2,3] iota() axis=1\n  %1 = f32[] constant() value=1\n"
      "  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n  %3 = f32[2,3] add(%0, %2)\n  %4 = f32[] constant() value=2\n"
      "  %5 = f32[2,3] broadcast_in_dim(%4) dims={}\n  %6 = f32[2,3] mul(%3, %5)\n"
      "  %7 = f32[2] reduce(%6) reduce=sum dims={1}\n  %8 = f32[2,2] constant() value={1, 2, 3, 4}\n"
      "  %9 = f32[2,2] transpose(%8) dims={1,0}\n  %10 = f32[2] parameter() name=\"x\"\n  %11 = f32[2] add(%10, %7)\n"
      "  return %6 \"a\", %11 \"b\", %9 \"c\"\n}\n");
  if (!g) return;
  ldmc_graph *ref = ldmc_graph_clone(g);
  CHECK(ptu_run(&ldmc_pass_fold, g));
  ptu_run(&ldmc_pass_dce, g);
  CHECK(ptu_out_op(g, 0) == LDMC_OP_CONSTANT && ptu_out_op(g, 2) == LDMC_OP_CONSTANT);
  check_values(&g->nodes[g->outputs[0]], (const double[]){2, 4, 6, 2, 4, 6}, 6);
  check_values(&g->nodes[g->outputs[2]], (const double[]){1, 3, 2, 4}, 4);
  const ldmc_node *b = &g->nodes[g->outputs[1]];
  CHECK(b->op == LDMC_OP_ADD && g->nodes[b->operands[1]].op == LDMC_OP_CONSTANT);
  if (b->op == LDMC_OP_ADD) check_values(&g->nodes[b->operands[1]], (const double[]){12, 12}, 2);
  CHECK(!ptu_run(&ldmc_pass_fold, g));
  ptu_same_results("fold", ref, g, 0, 1e-6);
  ldmc_graph_free(g);
  ldmc_graph_free(ref);

  /* the size limit: a 1000-element broadcast stays unless the limit allows it */
  const char *big = "graph t {\n  %0 = f32[] constant() value=1.5\n  %1 = f32[10,100] broadcast_in_dim(%0) dims={}\n"
                    "  %2 = f32[10,100] exp(%1)\n  return %2 \"y\"\n}\n";
  g = ptu_parse(big);
  if (g) {
    ldmc_status st = LDMC_OK;
    ldmc_pass_ctx ctx = {.target = ldmc_target_find("cpu-nhwc"), .fold_limit = 999, .status = &st};
    CHECK(!ldmc_pass_fold.run(g, &ctx) && st == LDMC_OK && ptu_count(g, LDMC_OP_EXP) == 1);
    ctx.fold_limit = 1000;
    CHECK(ldmc_pass_fold.run(g, &ctx) && st == LDMC_OK && ptu_out_op(g, 0) == LDMC_OP_CONSTANT);
    if (ptu_out_op(g, 0) == LDMC_OP_CONSTANT) check_values(&g->nodes[g->outputs[0]], (const double[]){exp(1.5)}, 1);
    ldmc_graph_free(g);
  }
  /* rng with a constant key is not folded (it is noise, and large) */
  g = ptu_parse("graph t {\n  %0 = i64[] constant() value=7\n  %1 = f32[4] rng_normal(%0)\n  return %1 \"y\"\n}\n");
  if (g) {
    CHECK(!ptu_run(&ldmc_pass_fold, g) && ptu_out_op(g, 0) == LDMC_OP_RNG_NORMAL);
    ldmc_graph_free(g);
  }
  /* integer division truncates toward zero: -7 / 2 = -3 */
  g = ptu_parse("graph t {\n  %0 = i32[2] constant() value={-7, 7}\n  %1 = i32[2] constant() value={2, 2}\n"
                "  %2 = i32[2] div(%0, %1)\n  return %2 \"y\"\n}\n");
  if (g) {
    ldmc_graph *r = ldmc_graph_clone(g);
    CHECK(ptu_run(&ldmc_pass_fold, g));
    check_values(&g->nodes[g->outputs[0]], (const double[]){-3, 3}, 2);
    ptu_same_results("fold int div", r, g, 0, 0);
    ldmc_graph_free(r);
    ldmc_graph_free(g);
  }
}

int main(void) {
  test_cse();
  test_dce();
  test_fold();
  return test_summary("test_pass_cleanup");
}
