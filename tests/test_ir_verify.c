/* ldmc_graph_verify: well-typed graphs pass; each kind of ill-formed graph
 * (built with the unchecked ldmc_graph_add) is rejected with a message that
 * names the node as "%<id> <op>: " and the rule broken. */
#include <string.h>

#include "ir/ir.h"
#include "tests/test_util.h"

#define INTS(...) ((ldmc_ints){.n = (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), .v = {__VA_ARGS__}})
#define SH(...) ldmc_shape_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define IDS(...) (int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), (int32_t[]){__VA_ARGS__}

static void expect_ok(int line, const ldmc_graph *g) {
  ldmc_status st = ldmc_graph_verify(g);
  CHECK_MSG(st == LDMC_OK, "line %d: verify failed: %s", line, ldmc_last_error());
}

/* Verification fails, the message starts with want_prefix and contains needle. */
static void expect_err(int line, const ldmc_graph *g, const char *want_prefix, const char *needle) {
  ldmc_error_clear();
  ldmc_status st = ldmc_graph_verify(g);
  const char *m = ldmc_last_error();
  CHECK_MSG(st == LDMC_ERR_INVALID, "line %d: verify accepted a bad graph (wanted '%s%s')", line, want_prefix, needle);
  if (st == LDMC_OK) return;
  CHECK_MSG(strncmp(m, want_prefix, strlen(want_prefix)) == 0 && strstr(m, needle),
            "line %d: message '%s' lacks '%s' ... '%s'", line, m, want_prefix, needle);
}
#define OK_G(g) expect_ok(__LINE__, g)
#define ERR_G(g, prefix, needle) expect_err(__LINE__, g, prefix, needle)

static int32_t param(ldmc_graph *g, const char *name, ldmc_dtype dt, ldmc_shape s) {
  ldmc_attrs a = {.name = (char *)name};
  return ldmc_graph_add(g, LDMC_OP_PARAMETER, dt, &s, 0, NULL, &a, NULL);
}

/* %0 = x f32[2,3], %1 = y f32[2,3] */
static ldmc_graph *two_params(void) {
  ldmc_graph *g = ldmc_graph_new("t");
  param(g, "x", LDMC_F32, SH(2, 3));
  param(g, "y", LDMC_F32, SH(2, 3));
  return g;
}

static void test_valid(void) {
  ldmc_graph *g = ldmc_graph_new("empty");
  OK_G(g);
  ldmc_graph_free(g);

  g = two_params();
  ldmc_shape s = SH(2, 3), t = SH(3, 2), m = SH(2, 2);
  int32_t a = ldmc_graph_add(g, LDMC_OP_ADD, LDMC_F32, &s, IDS(0, 1), NULL, "blk");
  ldmc_attrs tr = {.dims = INTS(1, 0)};
  int32_t b = ldmc_graph_add(g, LDMC_OP_TRANSPOSE, LDMC_F32, &t, IDS(a), &tr, NULL);
  ldmc_attrs mm = {.lhs_contract = INTS(1), .rhs_contract = INTS(0)};
  int32_t d = ldmc_graph_add(g, LDMC_OP_DOT_GENERAL, LDMC_F32, &m, IDS(a, b), &mm, NULL);
  float v[1] = {2};
  ldmc_attrs cv = {.value = {v, 4}};
  ldmc_shape sc = SH();
  int32_t c = ldmc_graph_add(g, LDMC_OP_CONSTANT, LDMC_F32, &sc, 0, NULL, &cv, NULL);
  ldmc_attrs bd = {.dims = {0}};
  int32_t cb = ldmc_graph_add(g, LDMC_OP_BROADCAST_IN_DIM, LDMC_F32, &m, IDS(c), &bd, NULL);
  int32_t r = ldmc_graph_add(g, LDMC_OP_MUL, LDMC_F32, &m, IDS(d, cb), NULL, NULL);
  CHECK(ldmc_graph_add_output(g, r, "out") == LDMC_OK);
  CHECK(ldmc_graph_add_output(g, a, "sum") == LDMC_OK);
  CHECK(ldmc_graph_add_output(g, r, "again") == LDMC_OK); /* one node may be two outputs */
  OK_G(g);
  ldmc_graph *c2 = ldmc_graph_clone(g);
  OK_G(c2);
  ldmc_graph_free(c2);
  ldmc_graph_free(g);

  /* a wide concatenate (more operands than any fixed buffer) */
  g = ldmc_graph_new("wide");
  ldmc_shape one = SH(1, 4);
  int32_t ids[100];
  char nm[16];
  for (int i = 0; i < 100; i++) {
    snprintf(nm, sizeof nm, "p%d", i);
    ids[i] = param(g, nm, LDMC_BF16, one);
  }
  ldmc_shape cat = SH(100, 4);
  ldmc_attrs ax = {.axis = 0};
  int32_t k = ldmc_graph_add(g, LDMC_OP_CONCATENATE, LDMC_BF16, &cat, 100, ids, &ax, NULL);
  CHECK(ldmc_graph_add_output(g, k, "cat") == LDMC_OK);
  OK_G(g);
  ldmc_shape wrong = SH(99, 4);
  g->nodes[k].shape = wrong;
  ERR_G(g, "%100 concatenate: ", "node type bf16[99,4] differs from the inferred type bf16[100,4]");
  ldmc_graph_free(g);
}

/* A small ResNet/attention block built with the checked builder verifies. */
static void test_checked_block(void) {
  ldmc_graph *g = ldmc_graph_new("block");
  ldmc_attrs pn = {0};
  ldmc_shape xs = SH(2, 8, 4, 4), ws = SH(8, 8, 3, 3), cs = SH(8);
  pn.name = "x";
  int32_t x = ldmc_graph_add_checked(g, LDMC_OP_PARAMETER, LDMC_F32, &xs, 0, NULL, &pn, NULL);
  pn.name = "w";
  int32_t w = ldmc_graph_add_checked(g, LDMC_OP_PARAMETER, LDMC_F32, &ws, 0, NULL, &pn, NULL);
  pn.name = "gamma";
  int32_t ga = ldmc_graph_add_checked(g, LDMC_OP_PARAMETER, LDMC_F32, &cs, 0, NULL, &pn, NULL);
  pn.name = "beta";
  int32_t be = ldmc_graph_add_checked(g, LDMC_OP_PARAMETER, LDMC_F32, &cs, 0, NULL, &pn, NULL);
  ldmc_attrs gn = {.groups = 4, .eps = 1e-5};
  int32_t n = ldmc_graph_add_checked(g, LDMC_OP_GROUP_NORM, LDMC_F32, NULL, IDS(x, ga, be), &gn, NULL);
  int32_t s = ldmc_graph_add_checked(g, LDMC_OP_SILU, LDMC_F32, NULL, IDS(n), NULL, NULL);
  ldmc_attrs cv = {.window_stride = INTS(1, 1), .pad_low = INTS(1, 1), .pad_high = INTS(1, 1),
                   .lhs_dilation = INTS(1, 1), .rhs_dilation = INTS(1, 1), .groups = 1,
                   .input_dims = INTS(0, 1, 2, 3), .kernel_dims = INTS(0, 1, 2, 3), .output_dims = INTS(0, 1, 2, 3)};
  int32_t c = ldmc_graph_add_checked(g, LDMC_OP_CONVOLUTION, LDMC_F32, NULL, IDS(s, w), &cv, NULL);
  int32_t r = ldmc_graph_add_checked(g, LDMC_OP_ADD, LDMC_F32, NULL, IDS(c, x), NULL, NULL);
  ldmc_shape qs = SH(2, 8, 16);
  int32_t q = ldmc_graph_add_checked(g, LDMC_OP_RESHAPE, LDMC_F32, &qs, IDS(r), NULL, NULL);
  ldmc_attrs tp = {.dims = INTS(0, 2, 1)};
  int32_t qt = ldmc_graph_add_checked(g, LDMC_OP_TRANSPOSE, LDMC_F32, NULL, IDS(q), &tp, NULL);
  ldmc_attrs at = {.scale = 0.35355339059327373};
  int32_t o = ldmc_graph_add_checked(g, LDMC_OP_ATTENTION, LDMC_F32, NULL, IDS(qt, qt, qt), &at, NULL);
  CHECK_MSG(o >= 0, "%s", ldmc_last_error());
  CHECK(o >= 0 && g->nodes[o].shape.rank == 3 && g->nodes[o].shape.dims[1] == 16 && g->nodes[o].shape.dims[2] == 8);
  CHECK(ldmc_graph_add_output(g, o, "h") == LDMC_OK);
  OK_G(g);
  /* checked add refuses what verify would refuse */
  CHECK(ldmc_graph_add_checked(g, LDMC_OP_ADD, LDMC_F32, NULL, IDS(x, w), NULL, NULL) == -1);
  CHECK(strstr(ldmc_last_error(), "add: operand shapes f32[2,8,4,4] and f32[8,8,3,3] differ") != NULL);
  ldmc_graph_free(g);
}

static void test_ssa_and_ids(void) {
  ldmc_graph *g = two_params();
  ldmc_shape s = SH(2, 3);
  ldmc_graph_add(g, LDMC_OP_NEG, LDMC_F32, &s, IDS(3), NULL, NULL); /* %2 uses %3 */
  ldmc_graph_add(g, LDMC_OP_NEG, LDMC_F32, &s, IDS(0), NULL, NULL);
  ERR_G(g, "%2 neg: ", "operand 0 refers to %3, which is not defined before it");
  g->nodes[2].operands[0] = 2; /* itself */
  ERR_G(g, "%2 neg: ", "not defined before it");
  g->nodes[2].operands[0] = 7;
  ERR_G(g, "%2 neg: ", "operand 0 refers to %7, which does not exist");
  g->nodes[2].operands[0] = -1;
  ERR_G(g, "%2 neg: ", "refers to %-1, which does not exist");
  g->nodes[2].operands[0] = 1;
  OK_G(g);
  ldmc_graph_free(g);
}

static void test_types(void) {
  ldmc_graph *g = two_params();
  ldmc_shape s = SH(2, 3), t = SH(3, 2);
  param(g, "z", LDMC_F32, t);
  ldmc_graph_add(g, LDMC_OP_ADD, LDMC_F32, &s, IDS(0, 2), NULL, NULL);
  ERR_G(g, "%3 add: ", "operand shapes f32[2,3] and f32[3,2] differ");
  g->nodes[3].operands[1] = 1;
  OK_G(g);
  g->nodes[3].n_operands = 1; /* arity */
  ERR_G(g, "%3 add: ", "expects 2 operands, got 1");
  g->nodes[3].n_operands = 2;
  g->nodes[3].shape = t; /* node type differs from what its operands give */
  ERR_G(g, "%3 add: ", "node type f32[3,2] differs from the inferred type f32[2,3]");
  g->nodes[3].shape = s;
  g->nodes[3].dtype = LDMC_F16;
  ERR_G(g, "%3 add: ", "node type f16[2,3] differs from the inferred type f32[2,3]");
  g->nodes[3].dtype = LDMC_F32;
  g->nodes[1].dtype = LDMC_I32;
  ERR_G(g, "%3 add: ", "operand dtypes f32[2,3] and i32[2,3] differ");
  g->nodes[1].dtype = LDMC_F32;
  g->nodes[3].op = LDMC_OP_COMPARE; /* result must be pred */
  ERR_G(g, "%3 compare: ", "node type f32[2,3] differs from the inferred type pred[2,3]");
  g->nodes[3].op = LDMC_OP_EXP;
  ERR_G(g, "%3 exp: ", "expects 1 operand, got 2");
  g->nodes[3].op = (ldmc_op)999;
  ERR_G(g, "%3: ", "op 999 is not a valid op");
  g->nodes[3].op = LDMC_OP_ADD;
  g->nodes[3].dtype = (ldmc_dtype)42;
  ERR_G(g, "%3 add: ", "dtype 42 is invalid");
  g->nodes[3].dtype = LDMC_F32;
  g->nodes[3].shape.rank = 12;
  ERR_G(g, "%3 add: ", "rank 12 is outside 0..8");
  g->nodes[3].shape = s;
  OK_G(g);
  ldmc_graph_free(g);

  /* declared-type ops: reshape must keep the element count, iota's axis in range */
  g = two_params();
  ldmc_shape r7 = SH(7);
  ldmc_graph_add(g, LDMC_OP_RESHAPE, LDMC_F32, &r7, IDS(0), NULL, NULL);
  ERR_G(g, "%2 reshape: ", "element counts differ");
  ldmc_graph_free(g);
  g = ldmc_graph_new("iota");
  ldmc_attrs ax = {.axis = 2};
  ldmc_shape is = SH(3, 4);
  ldmc_graph_add(g, LDMC_OP_IOTA, LDMC_I32, &is, 0, NULL, &ax, NULL);
  ERR_G(g, "%0 iota: ", "axis 2 is outside 0..1");
  g->nodes[0].attrs.axis = 1;
  OK_G(g);
  g->nodes[0].dtype = LDMC_PRED;
  ERR_G(g, "%0 iota: ", "numeric");
  ldmc_graph_free(g);
  g = ldmc_graph_new("const");
  float v[3] = {1, 2, 3};
  ldmc_attrs cv = {.value = {v, 12}};
  ldmc_shape c4 = SH(4);
  ldmc_graph_add(g, LDMC_OP_CONSTANT, LDMC_F32, &c4, 0, NULL, &cv, NULL);
  ERR_G(g, "%0 constant: ", "value has 12 bytes, type f32[4] needs 16");
  ldmc_graph_free(g);
}

static void test_attrs(void) {
  ldmc_graph *g = two_params();
  ldmc_shape t = SH(3, 2), pr = SH(2, 3);
  ldmc_attrs tr = {.dims = INTS(1, 0)};
  ldmc_graph_add(g, LDMC_OP_TRANSPOSE, LDMC_F32, &t, IDS(0), &tr, NULL);
  OK_G(g);
  g->nodes[2].attrs.dims.n = 9;
  ERR_G(g, "%2 transpose: ", "attribute dims has 9 entries, outside 0..8");
  g->nodes[2].attrs.dims.n = -1;
  ERR_G(g, "%2 transpose: ", "attribute dims has -1 entries");
  g->nodes[2].attrs.dims = INTS(1, 1);
  ERR_G(g, "%2 transpose: ", "not a permutation");
  g->nodes[2].attrs.dims = INTS(1, 0);
  ldmc_attrs cmp = {.direction = (ldmc_compare)-3};
  ldmc_graph_add(g, LDMC_OP_COMPARE, LDMC_PRED, &pr, IDS(0, 1), &cmp, NULL);
  ERR_G(g, "%3 compare: ", "attribute direction has invalid value -3");
  g->nodes[3].attrs.direction = LDMC_CMP_GE;
  OK_G(g);
  ldmc_attrs gn = {.groups = 1, .eps = NAN};
  ldmc_shape cs = SH(3);
  param(g, "gamma", LDMC_F32, cs);
  ldmc_graph_add(g, LDMC_OP_GROUP_NORM, LDMC_F32, &pr, IDS(0, 4, 4), &gn, NULL);
  ERR_G(g, "%5 group_norm: ", "attribute eps is not finite");
  g->nodes[5].attrs.eps = 1e-6;
  OK_G(g);
  ldmc_graph_free(g);
}

static void test_names(void) {
  ldmc_graph *g = two_params();
  param(g, "x", LDMC_F32, SH(4));
  ERR_G(g, "%2 parameter: ", "name 'x' is already used by %0");
  free(g->nodes[2].attrs.name);
  g->nodes[2].attrs.name = strdup("");
  ERR_G(g, "%2 parameter: ", "name is empty");
  free(g->nodes[2].attrs.name);
  g->nodes[2].attrs.name = NULL;
  ERR_G(g, "%2 parameter: ", "name is empty");
  g->nodes[2].attrs.name = strdup("z");
  OK_G(g);
  /* two duplicates: the first reported is the earliest repeated node */
  param(g, "y", LDMC_F32, SH(1));
  param(g, "x", LDMC_F32, SH(1));
  ERR_G(g, "%3 parameter: ", "name 'y' is already used by %1");
  ldmc_graph_free(g);

  g = two_params();
  CHECK(ldmc_graph_add_output(g, 0, "out") == LDMC_OK);
  CHECK(ldmc_graph_add_output(g, 1, "out") == LDMC_OK);
  ERR_G(g, "output 1: ", "name 'out' is already used by output 0");
  free(g->output_names[1]);
  g->output_names[1] = strdup("");
  ERR_G(g, "output 1: ", "name is empty");
  free(g->output_names[1]);
  g->output_names[1] = strdup("out2");
  OK_G(g);
  g->outputs[1] = 5;
  ERR_G(g, "output 1 'out2' ", "refers to %5, which does not exist");
  g->outputs[1] = -2;
  ERR_G(g, "output 1 'out2' ", "refers to %-2");
  g->outputs[1] = 1;
  OK_G(g);
  ldmc_graph_free(g);
  CHECK(ldmc_graph_verify(NULL) == LDMC_ERR_INVALID);
}

int main(void) {
  test_valid();
  test_checked_block();
  test_ssa_and_ids();
  test_types();
  test_attrs();
  test_names();
  return test_summary("test_ir_verify");
}
