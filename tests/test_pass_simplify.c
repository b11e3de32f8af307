/* Algebraic simplification on text IR: each case states the input and the
 * structure expected after the pass (worked out by hand), and the results
 * before and after must agree on the interpreter (bit-for-bit up to the sign
 * of zero: tolerance atol 0, rtol 0 with x == y compare). */
#include "pass_test_util.h"

/* Runs simplify (then dce to drop what it orphaned) and compares results. */
static ldmc_graph *simp(const char *text, bool expect_change) {
  ldmc_graph *g = ptu_parse(text);
  if (!g) return NULL;
  ldmc_graph *ref = ldmc_graph_clone(g);
  bool ch = ptu_run(&ldmc_pass_simplify, g);
  CHECK_MSG(ch == expect_change, "simplify changed=%d, expected %d on:\n%s", ch, expect_change, text);
  ptu_run(&ldmc_pass_dce, g);
  ptu_same_results("simplify", ref, g, 0, 0);
  /* a second run finds nothing more */
  CHECK_MSG(!ptu_run(&ldmc_pass_simplify, g), "simplify is not idempotent on:\n%s", text);
  ldmc_graph_free(ref);
  return g;
}

#define HDR "graph t {\n  %0 = f32[2,3] parameter() name=\"x\"\n"

static void test_identities(void) {
  static const char *to_x[] = {
      /* x + 0, 0 + x */
      HDR "  %1 = f32[] constant() value=0\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
          "  %3 = f32[2,3] add(%0, %2)\n  return %3 \"y\"\n}\n",
      HDR "  %1 = f32[2,3] constant() value={0, 0, 0, 0, 0, 0}\n  %2 = f32[2,3] add(%1, %0)\n  return %2 \"y\"\n}\n",
      /* x * 1, 1 * x, x / 1, x - 0, pow(x, 1) */
      HDR "  %1 = f32[] constant() value=1\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
          "  %3 = f32[2,3] mul(%2, %0)\n  return %3 \"y\"\n}\n",
      HDR "  %1 = f32[] constant() value=1\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
          "  %3 = f32[2,3] div(%0, %2)\n  return %3 \"y\"\n}\n",
      HDR "  %1 = f32[] constant() value=0\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
          "  %3 = f32[2,3] sub(%0, %2)\n  return %3 \"y\"\n}\n",
      HDR "  %1 = f32[] constant() value=1\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
          "  %3 = f32[2,3] pow(%0, %2)\n  return %3 \"y\"\n}\n",
      /* --x, max(x, x), convert to the same type */
      HDR "  %1 = f32[2,3] neg(%0)\n  %2 = f32[2,3] neg(%1)\n  return %2 \"y\"\n}\n",
      HDR "  %1 = f32[2,3] max(%0, %0)\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[2,3] convert(%0)\n  return %1 \"y\"\n}\n",
      /* identity transpose / reshape / broadcast / slice / pad */
      HDR "  %1 = f32[2,3] transpose(%0) dims={0,1}\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[2,3] reshape(%0)\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[2,3] broadcast_in_dim(%0) dims={0,1}\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[2,3] slice(%0) start={0,0} limit={2,3} stride={1,1}\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[] constant() value=5\n  %2 = f32[2,3] pad(%0, %1) low={0,0} high={0,0} interior={0,0}\n"
          "  return %2 \"y\"\n}\n",
      /* transpose of transpose back to the start; reshape chain back to the start */
      HDR "  %1 = f32[3,2] transpose(%0) dims={1,0}\n  %2 = f32[2,3] transpose(%1) dims={1,0}\n  return %2 \"y\"\n}\n",
      HDR "  %1 = f32[6] reshape(%0)\n  %2 = f32[3,2] reshape(%1)\n  %3 = f32[2,3] reshape(%2)\n  return %3 \"y\"\n}\n",
      /* select on a constant predicate, select(p, x, x) */
      HDR "  %1 = f32[2,3] exp(%0)\n  %2 = pred[] constant() value=true\n"
          "  %3 = pred[2,3] broadcast_in_dim(%2) dims={}\n  %4 = f32[2,3] select(%3, %0, %1)\n  return %4 \"y\"\n}\n",
  };
  for (size_t i = 0; i < sizeof to_x / sizeof to_x[0]; i++) {
    ldmc_graph *g = simp(to_x[i], true);
    if (!g) continue;
    CHECK_MSG(g->outputs[0] == 0 && g->n_nodes == 1, "case %zu: expected the output to be %%0 alone, got %d nodes, output %s",
              i, (int)g->n_nodes, ldmc_op_name(ptu_out_op(g, 0)));
    ldmc_graph_free(g);
  }
}

static void test_rewrites(void) {
  /* 0 - x -> neg(x); x * -1 -> neg(x) */
  ldmc_graph *g = simp(HDR "  %1 = f32[] constant() value=0\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
                           "  %3 = f32[2,3] sub(%2, %0)\n  return %3 \"y\"\n}\n", true);
  if (g) {
    CHECK(ptu_out_op(g, 0) == LDMC_OP_NEG && g->nodes[g->outputs[0]].operands[0] == 0);
    ldmc_graph_free(g);
  }
  g = simp(HDR "  %1 = f32[] constant() value=-1\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
               "  %3 = f32[2,3] mul(%0, %2)\n  return %3 \"y\"\n}\n", true);
  if (g) {
    CHECK(ptu_out_op(g, 0) == LDMC_OP_NEG && g->n_nodes == 2);
    ldmc_graph_free(g);
  }
  /* transpose(transpose(x, {1,2,0}), {2,0,1}) of f32[2,3,4]: composed q[i] = p1[p2[i]] = {0,1,2} -> x;
     with p2 = {1,0,2}: q = {p1[1], p1[0], p1[2]} = {2,1,0} */
  g = simp("graph t {\n  %0 = f32[2,3,4] parameter() name=\"x\"\n  %1 = f32[3,4,2] transpose(%0) dims={1,2,0}\n"
           "  %2 = f32[4,3,2] transpose(%1) dims={1,0,2}\n  return %2 \"y\"\n}\n", true);
  if (g) {
    const ldmc_node *o = &g->nodes[g->outputs[0]];
    CHECK(o->op == LDMC_OP_TRANSPOSE && o->operands[0] == 0 && g->n_nodes == 2);
    CHECK(o->attrs.dims.n == 3 && o->attrs.dims.v[0] == 2 && o->attrs.dims.v[1] == 1 && o->attrs.dims.v[2] == 0);
    ldmc_graph_free(g);
  }
  /* reshape of reshape -> one reshape of x */
  g = simp(HDR "  %1 = f32[6] reshape(%0)\n  %2 = f32[3,2] reshape(%1)\n  return %2 \"y\"\n}\n", true);
  if (g) {
    CHECK(ptu_out_op(g, 0) == LDMC_OP_RESHAPE && g->nodes[g->outputs[0]].operands[0] == 0 && g->n_nodes == 2);
    ldmc_graph_free(g);
  }
  /* broadcast of broadcast: [3] -> [2,3] (dims {1}) -> [4,2,3] (dims {1,2}) = [3] -> [4,2,3] dims {2} */
  g = simp("graph t {\n  %0 = f32[3] parameter() name=\"b\"\n  %1 = f32[2,3] broadcast_in_dim(%0) dims={1}\n"
           "  %2 = f32[4,2,3] broadcast_in_dim(%1) dims={1,2}\n  return %2 \"y\"\n}\n", true);
  if (g) {
    const ldmc_node *o = &g->nodes[g->outputs[0]];
    CHECK(o->op == LDMC_OP_BROADCAST_IN_DIM && o->operands[0] == 0 && o->attrs.dims.n == 1 && o->attrs.dims.v[0] == 2);
    ldmc_graph_free(g);
  }
  /* views of a broadcast scalar become one broadcast of the scalar */
  g = simp("graph t {\n  %0 = f32[] constant() value=3\n  %1 = f32[2,3] broadcast_in_dim(%0) dims={}\n"
           "  %2 = f32[3,2] transpose(%1) dims={1,0}\n  %3 = f32[6] reshape(%2)\n  return %3 \"y\"\n}\n", true);
  if (g) {
    const ldmc_node *o = &g->nodes[g->outputs[0]];
    CHECK(o->op == LDMC_OP_BROADCAST_IN_DIM && g->nodes[o->operands[0]].op == LDMC_OP_CONSTANT && g->n_nodes == 2);
    ldmc_graph_free(g);
  }
  /* x * 0 is folded for integers only */
  g = simp("graph t {\n  %0 = i32[4] parameter() name=\"x\"\n  %1 = i32[] constant() value=0\n"
           "  %2 = i32[4] broadcast_in_dim(%1) dims={}\n  %3 = i32[4] mul(%0, %2)\n  return %3 \"y\"\n}\n", true);
  if (g) {
    CHECK(ptu_count(g, LDMC_OP_MUL) == 0 && ptu_out_op(g, 0) == LDMC_OP_BROADCAST_IN_DIM);
    ldmc_graph_free(g);
  }
}

static void test_untouched(void) {
  static const char *keep[] = {
      /* x * 0 for floats: NaN * 0 is NaN, inf * 0 is NaN */
      HDR "  %1 = f32[] constant() value=0\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
          "  %3 = f32[2,3] mul(%0, %2)\n  return %3 \"y\"\n}\n",
      /* x - x is not 0 for inf/NaN; x + 1 is no identity */
      HDR "  %1 = f32[2,3] sub(%0, %0)\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[] constant() value=1\n  %2 = f32[2,3] broadcast_in_dim(%1) dims={}\n"
          "  %3 = f32[2,3] add(%0, %2)\n  return %3 \"y\"\n}\n",
      /* a real transpose, a real slice, a non-uniform constant */
      HDR "  %1 = f32[3,2] transpose(%0) dims={1,0}\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[1,3] slice(%0) start={1,0} limit={2,3} stride={1,1}\n  return %1 \"y\"\n}\n",
      HDR "  %1 = f32[2,3] constant() value={0, 0, 0, 0, 0, 1}\n  %2 = f32[2,3] add(%1, %0)\n  return %2 \"y\"\n}\n",
      /* convert f32 -> f16 -> f32 rounds */
      HDR "  %1 = f16[2,3] convert(%0)\n  %2 = f32[2,3] convert(%1)\n  return %2 \"y\"\n}\n",
  };
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    ldmc_graph *g = simp(keep[i], false);
    ldmc_graph_free(g);
  }
}

int main(void) {
  test_identities();
  test_rewrites();
  test_untouched();
  return test_summary("test_pass_simplify");
}
