/* Text form: printer and parser. Oracles: hand-written expected text and
 * hand-computed node fields, hand-derived error positions, published half
 * precision values (bf16(0.1) = 0.10009765625, f16(0.1) = 0.0999755859375),
 * f64 bit patterns (17-digit literals must give the same bits back),
 * and a structural comparison of graphs that does not go through text. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "support/half.h"
#include "test_util.h"

/* ---- helpers ---- */
static ldmc_shape shp(int rank, ...) {
  __builtin_va_list ap;
  __builtin_va_start(ap, rank);
  ldmc_shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) s.dims[i] = __builtin_va_arg(ap, int64_t);
  __builtin_va_end(ap);
  return s;
}
#define S0() shp(0)
#define S1(a) shp(1, (int64_t)(a))
#define S2(a, b) shp(2, (int64_t)(a), (int64_t)(b))
#define S3(a, b, c) shp(3, (int64_t)(a), (int64_t)(b), (int64_t)(c))
#define S4(a, b, c, d) shp(4, (int64_t)(a), (int64_t)(b), (int64_t)(c), (int64_t)(d))

static ldmc_ints ints(int n, const int64_t *v) {
  ldmc_ints r = {.n = n};
  for (int i = 0; i < n; i++) r.v[i] = v[i];
  return r;
}
#define INTS(...) ints((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define NOINTS ((ldmc_ints){0})

static int32_t add(ldmc_graph *g, ldmc_op op, ldmc_dtype dt, ldmc_shape s, int n, const int32_t *ops,
                   const ldmc_attrs *a, const char *scope) {
  int32_t id = ldmc_graph_add_checked(g, op, dt, &s, n, ops, a, scope);
  CHECK_MSG(id >= 0, "adding %s: %s", ldmc_op_name(op), ldmc_last_error());
  return id;
}
static int32_t add1(ldmc_graph *g, ldmc_op op, int32_t x) { return add(g, op, LDMC_F32, S0(), 1, &x, NULL, NULL); }
static int32_t add2(ldmc_graph *g, ldmc_op op, int32_t x, int32_t y) {
  int32_t o[2] = {x, y};
  return add(g, op, LDMC_F32, S0(), 2, o, NULL, NULL);
}
static int32_t param(ldmc_graph *g, const char *name, ldmc_dtype dt, ldmc_shape s) {
  ldmc_attrs a = {0};
  a.name = (char *)name;
  return add(g, LDMC_OP_PARAMETER, dt, s, 0, NULL, &a, NULL);
}
static int32_t constant(ldmc_graph *g, ldmc_dtype dt, ldmc_shape s, const void *data, size_t nbytes, const char *scope) {
  ldmc_attrs a = {0};
  a.value.data = (void *)data;
  a.value.nbytes = nbytes;
  return add(g, LDMC_OP_CONSTANT, dt, s, 0, NULL, &a, scope);
}

static bool str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

/* Structural equality of two graphs, attribute by attribute through the table. */
static bool graphs_equal(const ldmc_graph *a, const ldmc_graph *b, char *why, size_t len) {
  if (!str_eq(a->name, b->name)) return snprintf(why, len, "names differ"), false;
  if (a->n_nodes != b->n_nodes) return snprintf(why, len, "node counts %d vs %d", a->n_nodes, b->n_nodes), false;
  for (int32_t i = 0; i < a->n_nodes; i++) {
    const ldmc_node *x = &a->nodes[i], *y = &b->nodes[i];
    if (x->op != y->op || x->dtype != y->dtype || !ldmc_shape_equal(&x->shape, &y->shape) ||
        x->n_operands != y->n_operands || !str_eq(x->scope, y->scope))
      return snprintf(why, len, "node %d header differs", i), false;
    for (int k = 0; k < x->n_operands; k++)
      if (x->operands[k] != y->operands[k]) return snprintf(why, len, "node %d operand %d", i, k), false;
    uint64_t mask = ldmc_op_table[x->op].attr_mask;
    for (int f = 0; f < LDMC_ATTR_COUNT; f++) {
      if (!(mask >> f & 1u)) continue;
      const char *pa = (const char *)&x->attrs + ldmc_attr_table[f].offset;
      const char *pb = (const char *)&y->attrs + ldmc_attr_table[f].offset;
      bool same = true;
      switch (ldmc_attr_table[f].kind) {
        case LDMC_AK_INT: same = *(const int64_t *)pa == *(const int64_t *)pb; break;
        case LDMC_AK_FLOAT: same = memcmp(pa, pb, sizeof(double)) == 0; break;
        case LDMC_AK_INTS: {
          const ldmc_ints *u = (const ldmc_ints *)pa, *v = (const ldmc_ints *)pb;
          same = u->n == v->n && memcmp(u->v, v->v, (size_t)u->n * sizeof u->v[0]) == 0;
          break;
        }
        case LDMC_AK_STRING: same = str_eq(*(char *const *)pa, *(char *const *)pb); break;
        case LDMC_AK_LITERAL: {
          const ldmc_literal *u = (const ldmc_literal *)pa, *v = (const ldmc_literal *)pb;
          same = u->nbytes == v->nbytes && (u->nbytes == 0 || memcmp(u->data, v->data, u->nbytes) == 0);
          break;
        }
        case LDMC_AK_COMPARE: same = *(const ldmc_compare *)pa == *(const ldmc_compare *)pb; break;
        case LDMC_AK_REDUCE: same = *(const ldmc_reduce_kind *)pa == *(const ldmc_reduce_kind *)pb; break;
      }
      if (!same) return snprintf(why, len, "node %d attribute %s", i, ldmc_attr_table[f].name), false;
    }
  }
  if (a->n_outputs != b->n_outputs) return snprintf(why, len, "output counts differ"), false;
  for (int32_t i = 0; i < a->n_outputs; i++)
    if (a->outputs[i] != b->outputs[i] || !str_eq(a->output_names[i], b->output_names[i]))
      return snprintf(why, len, "output %d differs", i), false;
  return true;
}

/* ---- a graph with every op and every dtype ---- */
static ldmc_graph *build_every_op(void) {
  ldmc_graph *g = ldmc_graph_new("every op \"quoted\"");
  int32_t x = param(g, "x", LDMC_F32, S2(2, 3));
  int32_t y = param(g, "y.weird \"name\"\n", LDMC_F32, S2(2, 3));
  int32_t z = param(g, "z", LDMC_F32, S1(3));
  int32_t img = param(g, "img", LDMC_F32, S4(1, 4, 8, 8));
  int32_t w = param(g, "w", LDMC_F32, S4(8, 2, 3, 3));
  int32_t gam = param(g, "gamma", LDMC_F32, S1(4));
  int32_t bet = param(g, "beta", LDMC_F32, S1(4));
  int32_t g3 = param(g, "g3", LDMC_F32, S1(3));
  int32_t b3 = param(g, "b3", LDMC_F32, S1(3));
  int32_t q = param(g, "q", LDMC_F16, S3(2, 4, 8));
  int32_t k = param(g, "k", LDMC_F16, S3(2, 6, 8));
  int32_t v = param(g, "v", LDMC_F16, S3(2, 6, 5));
  param(g, "pb", LDMC_BF16, S2(1, 1));
  param(g, "pi", LDMC_I64, S0());
  param(g, "pp", LDMC_PRED, S1(0));

  float s = 1.5f;
  int32_t cs = constant(g, LDMC_F32, S0(), &s, 4, "blöck.0");
  float f32v[6] = {-0.0f, INFINITY, -INFINITY, NAN, 3.14159274f, 1e-45f};
  constant(g, LDMC_F32, S2(2, 3), f32v, sizeof f32v, NULL);
  uint16_t bf[4] = {ldmc_f32_to_bf16(0.1f), ldmc_f32_to_bf16(-INFINITY), ldmc_f32_to_bf16(NAN),
                    ldmc_f32_to_bf16(3.0e38f)};
  constant(g, LDMC_BF16, S1(4), bf, sizeof bf, NULL);
  uint16_t hf[4] = {ldmc_f32_to_f16(0.1f), ldmc_f32_to_f16(65504.0f), ldmc_f32_to_f16(6.0e-8f), ldmc_f32_to_f16(NAN)};
  constant(g, LDMC_F16, S2(2, 2), hf, sizeof hf, NULL);
  int32_t i32v[3] = {INT32_MIN, INT32_MAX, 0};
  constant(g, LDMC_I32, S3(1, 3, 1), i32v, sizeof i32v, NULL);
  int64_t i64v[2] = {INT64_MIN, INT64_MAX};
  constant(g, LDMC_I64, S1(2), i64v, sizeof i64v, NULL);
  uint8_t pv[3] = {1, 0, 1};
  constant(g, LDMC_PRED, S1(3), pv, sizeof pv, NULL);
  constant(g, LDMC_F32, S2(0, 3), NULL, 0, NULL);
  int64_t keyv = 42;
  int32_t key = constant(g, LDMC_I64, S0(), &keyv, 8, NULL);

  ldmc_attrs a = {0};
  a.axis = 0;
  int32_t idx = add(g, LDMC_OP_IOTA, LDMC_I32, S1(4), 0, NULL, &a, NULL);
  add(g, LDMC_OP_RNG_UNIFORM, LDMC_F32, S2(2, 3), 1, &key, NULL, NULL);
  add(g, LDMC_OP_RNG_NORMAL, LDMC_BF16, S1(4), 1, &key, NULL, "noise");
  add(g, LDMC_OP_CONVERT, LDMC_F16, S0(), 1, &x, NULL, NULL);
  const ldmc_op unary[] = {LDMC_OP_NEG, LDMC_OP_ABS, LDMC_OP_EXP, LDMC_OP_LOG, LDMC_OP_SQRT, LDMC_OP_RSQRT,
                           LDMC_OP_TANH, LDMC_OP_LOGISTIC, LDMC_OP_SIN, LDMC_OP_COS, LDMC_OP_ERF, LDMC_OP_SILU,
                           LDMC_OP_GELU};
  for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) add1(g, unary[i], x);
  const ldmc_op binary[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV, LDMC_OP_MAX, LDMC_OP_MIN, LDMC_OP_POW};
  for (size_t i = 0; i < sizeof binary / sizeof binary[0]; i++) add2(g, binary[i], x, y);
  a = (ldmc_attrs){0};
  a.direction = LDMC_CMP_GE;
  int32_t xy[2] = {x, y};
  int32_t cmp = add(g, LDMC_OP_COMPARE, LDMC_PRED, S0(), 2, xy, &a, NULL);
  int32_t sel[3] = {cmp, x, y};
  add(g, LDMC_OP_SELECT, LDMC_F32, S0(), 3, sel, NULL, NULL);
  a = (ldmc_attrs){0};
  a.dims = INTS(1);
  add(g, LDMC_OP_BROADCAST_IN_DIM, LDMC_F32, S2(2, 3), 1, &z, &a, NULL);
  add(g, LDMC_OP_RESHAPE, LDMC_F32, S2(3, 2), 1, &x, NULL, NULL);
  a = (ldmc_attrs){0};
  a.dims = INTS(1, 0);
  add(g, LDMC_OP_TRANSPOSE, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){0};
  a.start = INTS(0, 1);
  a.limit = INTS(2, 3);
  a.stride = INTS(1, 2);
  add(g, LDMC_OP_SLICE, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){0};
  a.axis = 0;
  int32_t cat[3] = {x, y, x};
  add(g, LDMC_OP_CONCATENATE, LDMC_F32, S0(), 3, cat, &a, NULL);
  a = (ldmc_attrs){0};
  a.low = INTS(1, -1);
  a.high = INTS(0, 2);
  a.interior = INTS(1, 0);
  int32_t padops[2] = {x, cs};
  add(g, LDMC_OP_PAD, LDMC_F32, S0(), 2, padops, &a, NULL);
  a = (ldmc_attrs){0};
  a.axis = 1;
  int32_t gops[2] = {x, idx};
  int32_t gat = add(g, LDMC_OP_GATHER, LDMC_F32, S0(), 2, gops, &a, NULL);
  int32_t sops[3] = {x, idx, gat};
  add(g, LDMC_OP_SCATTER_ADD, LDMC_F32, S0(), 3, sops, &a, NULL);
  a = (ldmc_attrs){0};
  a.reduce = LDMC_REDUCE_MAX;
  a.dims = INTS(1);
  add(g, LDMC_OP_REDUCE, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){0};
  a.lhs_batch = INTS(0);
  a.rhs_batch = INTS(0);
  a.lhs_contract = INTS(1);
  a.rhs_contract = INTS(1);
  add(g, LDMC_OP_DOT_GENERAL, LDMC_F32, S0(), 2, xy, &a, NULL);
  a = (ldmc_attrs){0};
  a.window_stride = INTS(2, 1);
  a.pad_low = INTS(1, 0);
  a.pad_high = INTS(1, 2);
  a.lhs_dilation = INTS(1, 1);
  a.rhs_dilation = INTS(1, 2);
  a.groups = 2;
  a.input_dims = INTS(0, 1, 2, 3);
  a.kernel_dims = INTS(0, 1, 2, 3);
  a.output_dims = INTS(0, 1, 2, 3);
  int32_t conv_ops[2] = {img, w};
  int32_t conv = add(g, LDMC_OP_CONVOLUTION, LDMC_F32, S0(), 2, conv_ops, &a, "down_blocks.0");
  CHECK(conv >= 0 && ldmc_shape_equal(&g->nodes[conv].shape, &(ldmc_shape){4, {1, 8, 4, 6}}));
  a = (ldmc_attrs){0};
  a.axis = 1;
  add(g, LDMC_OP_SOFTMAX, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){0};
  a.groups = 2;
  a.eps = 1e-5;
  int32_t gn[3] = {img, gam, bet};
  add(g, LDMC_OP_GROUP_NORM, LDMC_F32, S0(), 3, gn, &a, NULL);
  a = (ldmc_attrs){0};
  a.axis = 1;
  a.eps = 1e-6;
  int32_t ln[3] = {x, g3, b3};
  add(g, LDMC_OP_LAYER_NORM, LDMC_F32, S0(), 3, ln, &a, NULL);
  a = (ldmc_attrs){0};
  a.scale = 0.35355339059327373;
  int32_t at[3] = {q, k, v};
  int32_t att = add(g, LDMC_OP_ATTENTION, LDMC_F16, S0(), 3, at, &a, "mid.attn\t\"1\"\\");
  a = (ldmc_attrs){0};
  a.factor = 2;
  int32_t up = add(g, LDMC_OP_UPSAMPLE_NEAREST, LDMC_F32, S0(), 1, &img, &a, NULL);
  /* f64 last, so the ids spot-checked below stay put */
  int32_t pd = param(g, "pd", LDMC_F64, S1(10));
  double f64v[10] = {0.1, 1.0 / 3, 1e-300, 0x1p-1074, 0x0.fffffffffffffp-1022, DBL_MAX, -0.0, INFINITY, NAN,
                     1 + 0x1p-52};
  int32_t cd = constant(g, LDMC_F64, S1(10), f64v, sizeof f64v, NULL);
  add2(g, LDMC_OP_ADD, pd, cd);
  add(g, LDMC_OP_CONVERT, LDMC_F64, S0(), 1, &x, NULL, NULL);
  /* attention's backward ops: f32 results from f16 q, k, v and ct (the attention's result) */
  a = (ldmc_attrs){0};
  a.scale = 0.35355339059327373;
  int32_t lse = add(g, LDMC_OP_ATTENTION_LSE, LDMC_F32, S0(), 2, at, &a, NULL);
  int32_t gops6[6] = {q, k, v, att, lse, lse};
  add(g, LDMC_OP_ATTENTION_GRAD_Q, LDMC_F32, S0(), 6, gops6, &a, "grad.mid.attn");
  add(g, LDMC_OP_ATTENTION_GRAD_KV, LDMC_F32, S0(), 6, gops6, &a, NULL);
  ldmc_graph_add_output(g, conv, "conv");
  ldmc_graph_add_output(g, att, "attn \"out\"");
  ldmc_graph_add_output(g, up, "up");
  return g;
}

static void test_every_op_round_trip(void) {
  ldmc_graph *g = build_every_op();
  CHECK_MSG(ldmc_graph_verify(g) == LDMC_OK, "%s", ldmc_last_error());
  uint64_t seen_ops = 0;
  uint32_t seen_dt = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    seen_ops |= UINT64_C(1) << g->nodes[i].op;
    seen_dt |= 1u << g->nodes[i].dtype;
  }
  CHECK_MSG(seen_ops == (LDMC_OP_COUNT == 64 ? ~UINT64_C(0) : (UINT64_C(1) << LDMC_OP_COUNT) - 1),
            "ops missing from the every-op graph: %#" PRIx64, seen_ops);
  CHECK(seen_dt == (1u << LDMC_DTYPE_COUNT) - 1);

  char *t1 = ldmc_graph_print(g);
  CHECK(t1 != NULL);
  ldmc_graph *h = NULL;
  ldmc_status st = ldmc_graph_parse(t1, strlen(t1), &h);
  CHECK_MSG(st == LDMC_OK, "%s\n%s", ldmc_last_error(), t1);
  if (st == LDMC_OK) {
    char why[128] = "";
    CHECK_MSG(graphs_equal(g, h, why, sizeof why), "%s", why);
    CHECK_MSG(ldmc_graph_verify(h) == LDMC_OK, "%s", ldmc_last_error());
    char *t2 = ldmc_graph_print(h);
    CHECK_MSG(t2 && strcmp(t1, t2) == 0, "second print differs:\n%s\n---\n%s", t1, t2 ? t2 : "");
    free(t2);
  }
  /* Spot checks of exact spellings, derived by hand. */
  CHECK(strncmp(t1, "graph \"every op \\\"quoted\\\"\" {\n", 30) == 0);
  CHECK(strstr(t1, " = f32[] constant() value=1.5 scope=\"blöck.0\"\n") != NULL);
  CHECK(strstr(t1, "value={-0, inf, -inf, nan, 3.14159274, 1.40129846e-45}") != NULL);
  CHECK(strstr(t1, "bf16[4] constant() value={0.100097656, -inf, nan, 3.00405527e+38}") != NULL);
  CHECK(strstr(t1, "f16[2,2] constant() value={0.0999755859, 65504, 5.96046448e-08, nan}") != NULL);
  CHECK(strstr(t1, "i32[1,3,1] constant() value={-2147483648, 2147483647, 0}") != NULL);
  CHECK(strstr(t1, "value={-9223372036854775808, 9223372036854775807}") != NULL);
  CHECK(strstr(t1, "pred[3] constant() value={true, false, true}") != NULL);
  CHECK(strstr(t1, "f64[10] constant() value={0.10000000000000001, 0.33333333333333331, 1e-300, "
                   "4.9406564584124654e-324, 2.2250738585072009e-308, 1.7976931348623157e+308, -0, inf, nan, "
                   "1.0000000000000002}\n") != NULL);
  CHECK(strstr(t1, "f64[10] add(%") != NULL && strstr(t1, "f64[2,3] convert(%0)\n") != NULL);
  CHECK(strstr(t1, "f32[0,3] constant() value={}\n") != NULL);
  CHECK(strstr(t1, "parameter() name=\"y.weird \\\"name\\\"\\n\"\n") != NULL);
  CHECK(strstr(t1, "f32[2,4] gather(%0, %24) axis=1\n") != NULL);
  CHECK(strstr(t1, " group_norm(%3, %5, %6) groups=2 eps=1.0000000000000001e-05\n") != NULL);
  CHECK(strstr(t1, " attention(%9, %10, %11) scale=0.35355339059327373 scope=\"mid.attn\\t\\\"1\\\"\\\\\"\n") != NULL);
  CHECK(strstr(t1, " f32[1,8,4,6] convolution(%3, %4) window_stride={2,1} pad_low={1,0} pad_high={1,2} "
                   "lhs_dilation={1,1} rhs_dilation={1,2} input_dims={0,1,2,3} kernel_dims={0,1,2,3} "
                   "output_dims={0,1,2,3} groups=2 scope=\"down_blocks.0\"\n") != NULL);
  CHECK(strstr(t1, "  return %") != NULL && strstr(t1, " \"attn \\\"out\\\"\", %") != NULL);

  /* Truncations: no prefix short of the final "}" parses; none crashes. */
  size_t n = strlen(t1), bad = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    ldmc_graph *p = NULL;
    if (ldmc_graph_parse(t1, i, &p) == LDMC_OK) bad++;
    ldmc_graph_free(p);
  }
  CHECK_MSG(bad == 0, "%zu truncated prefixes parsed", bad);
  /* A NUL byte anywhere is rejected (outside strings it is no token; inside, no character). */
  char *u = strdup(t1);
  bad = 0;
  for (size_t i = 0; i < n; i += 7) {
    char c = u[i];
    u[i] = 0;
    ldmc_graph *p = NULL;
    if (ldmc_graph_parse(u, n, &p) == LDMC_OK) bad++;
    ldmc_graph_free(p);
    u[i] = c;
  }
  CHECK_MSG(bad == 0, "%zu texts with a NUL parsed", bad);
  /* Random byte edits: never crash; what parses must print stably. */
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  size_t unstable = 0;
  for (int it = 0; it < 3000; it++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t pos = (size_t)(rng >> 33) % n;
    char c = u[pos];
    u[pos] = "0123456789,{}[]()=%\" -.abez#\n\\"[(rng >> 20) % 30];
    ldmc_graph *p = NULL;
    if (ldmc_graph_parse(u, n, &p) == LDMC_OK) {
      char *a1 = ldmc_graph_print(p), *a2 = NULL;
      ldmc_graph *p2 = NULL;
      if (!a1 || ldmc_graph_parse(a1, strlen(a1), &p2) != LDMC_OK || !(a2 = ldmc_graph_print(p2)) || strcmp(a1, a2))
        unstable++;
      free(a1);
      free(a2);
      ldmc_graph_free(p2);
    }
    ldmc_graph_free(p);
    u[pos] = c;
  }
  CHECK_MSG(unstable == 0, "%zu edited texts did not round-trip", unstable);
  free(u);
  free(t1);
  ldmc_graph_free(h);
  ldmc_graph_free(g);
}

/* The printer's exact output for a small graph, written by hand. */
static void test_print_exact(void) {
  ldmc_graph *g = ldmc_graph_new("unet_tiny");
  int32_t x = param(g, "sample", LDMC_F32, S4(1, 4, 8, 8));
  float one_half = 1.5f, v3[3] = {1, 2, 3};
  constant(g, LDMC_F32, S0(), &one_half, 4, NULL);
  int32_t c = constant(g, LDMC_F32, S1(3), v3, sizeof v3, NULL);
  int32_t xx[2] = {x, x}, cc[2] = {c, c};
  int32_t s = add(g, LDMC_OP_ADD, LDMC_F32, S0(), 2, xx, NULL, "down_blocks.0.resnets.0");
  ldmc_attrs a = {0};
  a.direction = LDMC_CMP_LT;
  add(g, LDMC_OP_COMPARE, LDMC_PRED, S0(), 2, cc, &a, NULL);
  a = (ldmc_attrs){0};
  a.reduce = LDMC_REDUCE_SUM;
  a.dims = INTS(0);
  int32_t r = add(g, LDMC_OP_REDUCE, LDMC_F32, S0(), 1, &c, &a, NULL);
  ldmc_graph_add_output(g, s, "out_sample");
  ldmc_graph_add_output(g, r, "total");
  const char *want =
      "graph unet_tiny {\n"
      "  %0 = f32[1,4,8,8] parameter() name=\"sample\"\n"
      "  %1 = f32[] constant() value=1.5\n"
      "  %2 = f32[3] constant() value={1, 2, 3}\n"
      "  %3 = f32[1,4,8,8] add(%0, %0) scope=\"down_blocks.0.resnets.0\"\n"
      "  %4 = pred[3] compare(%2, %2) direction=lt\n"
      "  %5 = f32[] reduce(%2) dims={0} reduce=sum\n"
      "  return %3 \"out_sample\", %5 \"total\"\n"
      "}\n";
  char *t = ldmc_graph_print(g);
  CHECK_MSG(t && strcmp(t, want) == 0, "got:\n%s", t ? t : "(null)");
  free(t);
  ldmc_graph_free(g);

  ldmc_graph *e = ldmc_graph_new("");
  t = ldmc_graph_print(e);
  CHECK(t && strcmp(t, "graph \"\" {\n  return\n}\n") == 0);
  ldmc_graph *p = NULL;
  CHECK(t && ldmc_graph_parse(t, strlen(t), &p) == LDMC_OK && p && p->n_nodes == 0 && p->n_outputs == 0 &&
        strcmp(p->name, "") == 0);
  free(t);
  ldmc_graph_free(p);
  ldmc_graph_free(e);
}

/* Hand-written text; node fields checked against values read off the text. */
static void test_parse_fields(void) {
  const char *text =
      "# a comment line\r\n"
      "graph unet_tiny {   # trailing comment\r\n"
      "  %sample = f32[1,4,8,8] parameter() name=\"sample\"\n"
      "  %w.1 = f32[8,4,3,3] parameter() name=\"conv.weight\"\n"
      "  %h = f32[1,8,8,8] convolution(%sample, %w.1) groups=1 window_stride={1,1} pad_low={1,1} pad_high={1,1}\n"
      "      lhs_dilation={1,1} rhs_dilation={1,1} input_dims={0,1,2,3} kernel_dims={0,1,2,3} output_dims={0,1,2,3}\n"
      "      scope=\"down_blocks.0\\x41\"\n"
      "  %c = bf16[2] constant() value={0.1, -2.5e1}\n"
      "  %k = i64[] constant() value=-7\n"
      "  %p = pred[2,1] constant() value={false, true}\n"
      "  %s = f32[8] reduce(%h) dims={0, 2, 3} reduce=max\n"
      "  %n = f32[1,8,8,8] group_norm(%h, %s, %s) eps=1e-5 groups=4\n"
      "  %e = f32[0] constant() value={}\n"
      "  %i = i32[4,2] iota() axis=1\n"
      "  return %n \"out\", %h \"features\"\n"
      "}\n";
  ldmc_graph *g = NULL;
  ldmc_status st = ldmc_graph_parse(text, strlen(text), &g);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st != LDMC_OK) return;
  CHECK(strcmp(g->name, "unet_tiny") == 0);
  CHECK(g->n_nodes == 10);
  CHECK(g->nodes[0].op == LDMC_OP_PARAMETER && strcmp(g->nodes[0].attrs.name, "sample") == 0);
  CHECK(g->nodes[1].op == LDMC_OP_PARAMETER && strcmp(g->nodes[1].attrs.name, "conv.weight") == 0);
  const ldmc_node *h = &g->nodes[2];
  CHECK(h->op == LDMC_OP_CONVOLUTION && h->dtype == LDMC_F32 && h->n_operands == 2 && h->operands[0] == 0 &&
        h->operands[1] == 1);
  CHECK(h->shape.rank == 4 && h->shape.dims[0] == 1 && h->shape.dims[1] == 8 && h->shape.dims[3] == 8);
  CHECK(h->attrs.groups == 1 && h->attrs.pad_low.n == 2 && h->attrs.pad_low.v[1] == 1 && h->attrs.output_dims.n == 4 &&
        h->attrs.output_dims.v[3] == 3);
  CHECK(h->scope && strcmp(h->scope, "down_blocks.0A") == 0);
  const ldmc_node *c = &g->nodes[3];
  CHECK(c->op == LDMC_OP_CONSTANT && c->dtype == LDMC_BF16 && c->attrs.value.nbytes == 4);
  uint16_t bf[2];
  memcpy(bf, c->attrs.value.data, 4);
  CHECK(bf[0] == 0x3dcd && bf[1] == 0xc1c8); /* bf16(0.1) and -25 = -1.5625 * 2^4 */
  int64_t kv = 0;
  memcpy(&kv, g->nodes[4].attrs.value.data, 8);
  CHECK(g->nodes[4].dtype == LDMC_I64 && g->nodes[4].shape.rank == 0 && kv == -7);
  const uint8_t *pv = g->nodes[5].attrs.value.data;
  CHECK(g->nodes[5].attrs.value.nbytes == 2 && pv[0] == 0 && pv[1] == 1);
  const ldmc_node *s = &g->nodes[6];
  CHECK(s->op == LDMC_OP_REDUCE && s->attrs.reduce == LDMC_REDUCE_MAX && s->attrs.dims.n == 3 &&
        s->attrs.dims.v[2] == 3 && s->shape.rank == 1 && s->shape.dims[0] == 8);
  const ldmc_node *n = &g->nodes[7];
  CHECK(n->op == LDMC_OP_GROUP_NORM && n->attrs.groups == 4 && n->attrs.eps == 1e-5 && n->operands[1] == 6 &&
        n->operands[2] == 6 && n->scope == NULL);
  CHECK(g->nodes[8].attrs.value.nbytes == 0 && g->nodes[8].shape.dims[0] == 0);
  CHECK(g->nodes[9].op == LDMC_OP_IOTA && g->nodes[9].attrs.axis == 1 && g->nodes[9].dtype == LDMC_I32);
  CHECK(g->n_outputs == 2 && g->outputs[0] == 7 && g->outputs[1] == 2 && strcmp(g->output_names[0], "out") == 0 &&
        strcmp(g->output_names[1], "features") == 0);
  CHECK_MSG(ldmc_graph_verify(g) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_graph_free(g);

  /* Omitted attributes take their defaults (0, empty). */
  const char *t2 = "graph g { %a = f32[2,3] parameter() name=\"a\" %b = f32[2,3] transpose(%a) return }";
  CHECK(ldmc_graph_parse(t2, strlen(t2), &g) != LDMC_OK); /* dims={} is not a permutation of rank 2 */
  const char *t3 = "graph g { %a = f32[2,3] parameter() name=\"a\" %b = f32[] reduce(%a) dims={0,1} return }";
  CHECK_MSG(ldmc_graph_parse(t3, strlen(t3), &g) == LDMC_OK, "%s", ldmc_last_error());
  if (g) CHECK(g->nodes[1].attrs.reduce == LDMC_REDUCE_SUM && g->nodes[1].attrs.dims.n == 2);
  ldmc_graph_free(g);
}

/* f64 literals print with 17 significant digits and parse back to the same
 * bits: hand-picked values (0.1, 1/3, subnormals, the extremes) and random
 * bit patterns, the bits themselves being the oracle. */
static void test_f64_literals(void) {
  const char *text = "graph g { %c = f64[3] constant() value={0.1, 4.9406564584124654e-324, -1e-300} return %c \"c\" }";
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_graph_parse(text, strlen(text), &g) == LDMC_OK, "%s", ldmc_last_error());
  if (g) {
    const double want[3] = {0.1, 0x1p-1074, -1e-300};
    CHECK(g->nodes[0].dtype == LDMC_F64 && g->nodes[0].attrs.value.nbytes == 24 &&
          memcmp(g->nodes[0].attrs.value.data, want, 24) == 0);
  }
  ldmc_graph_free(g);
  enum { N = 4096 };
  double *v = malloc(N * sizeof *v);
  uint64_t r = 0x2545f4914f6cdd1dull;
  for (int i = 0; i < N; i++) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    uint64_t bits = i < N / 4 ? (r & 0x800fffffffffffffull) : r; /* a quarter subnormal (or zero) */
    memcpy(&v[i], &bits, 8);
    if (isnan(v[i])) v[i] = 1.0 / 3;
  }
  g = ldmc_graph_new("f64");
  constant(g, LDMC_F64, S1(N), v, N * sizeof *v, NULL);
  char *t = ldmc_graph_print(g);
  ldmc_graph *h = NULL;
  CHECK_MSG(t && ldmc_graph_parse(t, strlen(t), &h) == LDMC_OK, "%s", ldmc_last_error());
  size_t bad = 0;
  if (h)
    for (int i = 0; i < N; i++) bad += memcmp((const double *)h->nodes[0].attrs.value.data + i, &v[i], 8) != 0;
  CHECK_MSG(h && bad == 0, "%zu of %d f64 literals did not round-trip bit for bit", bad, N);
  /* f32 text of 0.1 is not the f64 0.1: the dtype decides the precision */
  const char *t32 = "graph g { %c = f32[] constant() value=0.10000000000000001 return %c \"c\" }";
  ldmc_graph *k = NULL;
  CHECK(ldmc_graph_parse(t32, strlen(t32), &k) == LDMC_OK && *(const float *)k->nodes[0].attrs.value.data == 0.1f);
  ldmc_graph_free(k);
  free(t);
  free(v);
  ldmc_graph_free(h);
  ldmc_graph_free(g);
}

/* ---- malformed inputs, each with its exact message ---- */
typedef struct bad_case {
  const char *text;
  const char *msg;
} bad_case;

#define G "graph g {\n"
#define P0 "  %0 = f32[3] parameter() name=\"a\"\n"
static const bad_case k_bad[] = {
    {"", "1:1: expected 'graph', found end of input"},
    {"grph g {}", "1:1: expected 'graph', found \"grph\""},
    {"graph {", "1:7: expected graph name, found \"{\""},
    {"graph g\n  %0", "2:3: expected '{', found \"%0\""},
    {G "}", "2:1: expected node or 'return', found \"}\""},
    {G "  @", "2:3: expected node or 'return', found \"@\""},
    {G "  %0 f32[] parameter()", "2:6: expected '=', found \"f32\""},
    {G "  %0 = f33[2] parameter()", "2:8: expected dtype (f32, bf16, f16, f64, i32, i64, pred), found \"f33\""},
    {G "  %0 = f32[1,1,1,1,1,1,1,1,1] parameter()", "2:27: expected ']' (rank is at most 8), found \",\""},
    {G "  %0 = f32[-1] parameter()", "2:12: expected dimension (an integer >= 0), found \"-1\""},
    {G "  %0 = f32[99999999999999999999] parameter()",
     "2:12: expected dimension (an integer >= 0), found \"99999999999999999999\""},
    {G "  %0 = f32[2 3] parameter()", "2:14: expected ',' or ']', found \"3\""},
    {G "  %0 = f32[2] frobnicate()", "2:15: expected op name, found \"frobnicate\""},
    {G "  %0 = f32[2] neg(%x)", "2:19: expected a value defined above, found \"%x\""},
    {G "  %0 = f32[2] neg(,)", "2:19: expected operand or ')', found \",\""},
    {G "  %0 = f32[2] parameter() axis=1", "2:27: expected an attribute of parameter (name, scope), found \"axis\""},
    {G P0 "  %1 = f32[3] neg(%0) foo=1", "3:23: expected an attribute of neg (scope), found \"foo\""},
    {G "  %0 = f32[2] parameter() name=\"a\" name=\"b\"", "2:36: expected name= only once, found \"name\""},
    {G "  %0 = f32[2] parameter() name=\"a\\q\"",
     "2:34: expected escape sequence (\\\" \\\\ \\n \\t \\xHH), found \"\\\\q\""},
    {G "  %0 = f32[2] parameter() name=\"abc", "2:36: expected '\"' to close the string, found end of input"},
    {G "  %0 = f32[2] parameter() name=\"a\\x00\"",
     "2:34: expected a nonzero byte (strings hold no NUL), found \"\\\\x00\""},
    {G "  %0 = f32[2] parameter() name=\"a\\x4g\"", "2:34: expected two hex digits after \\x, found \"\\\\x4g\""},
    {G "  %0 = f32[2] parameter() name=5", "2:32: expected string, found \"5\""},
    {G P0 "  %1 = f32[] reduce(%0) reduce=sum dims={0,1,2,3,4,5,6,7,8}",
     "3:57: expected '}' (at most 8 integers), found \",\""},
    {G P0 "  %1 = pred[3] compare(%0, %0) direction=lq",
     "3:42: expected comparison direction (eq, ne, lt, le, gt, ge), found \"lq\""},
    {G P0 "  %1 = f32[] reduce(%0) reduce=mean", "3:32: expected reduction (sum, max, min), found \"mean\""},
    {G "  %0 = f32[3] constant() value={1, 2}", "2:37: expected ',' (f32[3] has 3 elements), found \"}\""},
    {G "  %0 = f32[3] constant() value={1, 2, 3, 4}", "2:40: expected '}' (f32[3] has 3 elements), found \",\""},
    {G "  %0 = f32[3] constant() value=1", "2:32: expected '{', found \"1\""},
    {G "  %0 = f32[] constant() value=1.2.3", "2:31: expected f32 number, found \"1.2.3\""},
    {G "  %0 = i32[] constant() value=2147483648", "2:31: expected i32 integer, found \"2147483648\""},
    {G "  %0 = pred[] constant() value=1", "2:32: expected 'true' or 'false', found \"1\""},
    {G "  %0 = f32[] constant() value=0x10", "2:31: expected f32 number, found \"0x10\""},
    {G P0 "  %1 = i64[] iota() axis=9223372036854775808",
     "3:26: expected integer, found \"9223372036854775808\""},
    {G P0 "  %1 = f32[2] neg(%0)", "3:3: %1 neg: declared f32[2] but the operands give f32[3]"},
    {G P0 "  %1 = i32[3] neg(%0)", "3:3: %1 neg: declared i32[3] but the operands give f32[3]"},
    {G P0 "  %1 = f32[2] parameter() name=\"b\"\n  %2 = f32[3] add(%0, %1)",
     "4:3: add: operand shapes f32[3] and f32[2] differ"},
    {G P0 "  %1 = f32[3] add(%0)", "3:3: add: expects 2 operands, got 1"},
    {G "  %0 = f32[3] constant()", "2:3: constant: value has 0 bytes, type f32[3] needs 12"},
    {G P0 "  %0 = f32[3] neg(%0)", "3:3: expected a name not defined before, found \"%0\""},
    {G P0 "  %1 = f32[3] parameter() name=\"a\"", "3:3: %1 parameter: name \"a\" is already used by %0"},
    {G "  %0 = f32[3] parameter()", "2:3: %0 parameter: name is empty"},
    {G P0 "  return %0\n}", "4:1: expected output name string, found \"}\""},
    {G P0 "  return %0 \"o\", }", "3:18: expected output value, found \"}\""},
    {G P0 "  return %0 \"o\", %0 \"o\"\n}", "3:21: output name \"o\" is already used by output 0"},
    {G P0 "  return %0 \"\"\n}", "3:13: output name is empty"},
    {G P0 "  return %0 \"o\" %0", "3:17: expected ',' or '}', found \"%0\""},
    {G P0 "  return\n}\nx", "5:1: expected end of input, found \"x\""},
    {G "  %0 = f32[3] parameter() name=\"a\" 5", "2:36: expected attribute, next node or 'return', found \"5\""},
    {G P0 "  %1 = f32[3] group_norm(%0, %0, %0) eps=nan groups=1",
     "3:3: group_norm: attribute eps is not finite (nan)"},
    {"# c1\ngraph g { # c2\n  # c3\n  %0 = f32[2] bogus()", "4:15: expected op name, found \"bogus\""},
    {"graph g\0{", "1:8: expected '{', found \"\\x00\""},
    {G "  %0 = f32[4611686018427387904] parameter() name=\"a\"",
     "2:8: shape [4611686018427387904]: byte size overflows int64"},
    {G "  %0 = f32[3037000500,3037000500] parameter() name=\"a\"",
     "2:8: shape [3037000500,3037000500]: element count overflows int64"},
    {G "  %0 = f32[1000000000] constant() value={1}",
     "2:41: expected a literal for f32[1000000000] (1000000000 elements) within the input's 53 bytes, found \"{\""},
    {G "  %0 = f32[" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "2:12: expected dimension (an integer >= 0), found \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\""},
};

static void test_malformed(void) {
  int n = (int)(sizeof k_bad / sizeof k_bad[0]);
  CHECK(n >= 15);
  for (int i = 0; i < n; i++) {
    const char *t = k_bad[i].text;
    size_t len = strlen(t);
    if (strcmp(t, "graph g") == 0) len = 9; /* the case with an embedded NUL */
    ldmc_graph *g = (ldmc_graph *)1;
    ldmc_status st = ldmc_graph_parse(t, len, &g);
    CHECK_MSG(st != LDMC_OK && g == NULL, "case %d parsed", i);
    CHECK_MSG(strcmp(ldmc_last_error(), k_bad[i].msg) == 0, "case %d:\n  got  %s\n  want %s", i, ldmc_last_error(),
              k_bad[i].msg);
  }
}

/* ---- hostile inputs ---- */
static void expect_reject(const char *what, const char *text, size_t len) {
  ldmc_graph *g = NULL;
  ldmc_status st = ldmc_graph_parse(text, len, &g);
  CHECK_MSG(st != LDMC_OK && !g, "%s parsed", what);
  ldmc_graph_free(g);
}

static char *repeat(const char *head, char c, size_t n, const char *tail) {
  size_t h = strlen(head), t = strlen(tail);
  char *s = malloc(h + n + t + 1);
  memcpy(s, head, h);
  memset(s + h, c, n);
  memcpy(s + h + n, tail, t + 1);
  return s;
}

static void test_hostile(void) {
  const size_t M = 1000000;
  char *s = repeat(G "  %0 = f32[1] constant() value=", '{', M, "");
  expect_reject("10^6 nested braces in a literal", s, strlen(s));
  free(s);
  s = repeat(G P0 "  %1 = f32[] reduce(%0) dims=", '{', M, "");
  expect_reject("10^6 nested braces in ints", s, strlen(s));
  free(s);
  s = repeat(G "  %0 = f32[", '[', M, "");
  expect_reject("10^6 brackets", s, strlen(s));
  free(s);
  s = repeat(G P0 "  %1 = f32[3] neg", '(', M, "");
  expect_reject("10^6 parentheses", s, strlen(s));
  free(s);
  s = repeat(G "  %0 = f32[2] parameter() name=\"", 'a', M, "");
  expect_reject("unterminated 1 MB string", s, strlen(s));
  free(s);
  s = repeat(G "  %", 'x', M, " = f32[] parameter() name=\"n\"\n  return %0 \"o\"\n}");
  expect_reject("1 MB name then an undefined ref", s, strlen(s));
  free(s);
  s = repeat("", '#', M, "");
  expect_reject("1 MB comment", s, strlen(s));
  free(s);
  s = repeat("", '\n', M, "");
  expect_reject("10^6 newlines", s, strlen(s));
  free(s);
  const char *huge = G "  %0 = f32[9223372036854775807,9223372036854775807] constant() value={1}\n  return\n}";
  expect_reject("huge dims", huge, strlen(huge));
  const char *nines = G "  %0 = f32[2147483647,2147483647] constant() value={}\n  return\n}";
  expect_reject("4.6e18-element literal claimed empty", nines, strlen(nines));
  const char *rank9 = G "  %0 = f32[1,2,3,4,5,6,7,8,9] parameter() name=\"a\"\n  return\n}";
  expect_reject("rank 9", rank9, strlen(rank9));
  const char *zeros = G "  %0 = f32[0,9223372036854775807] constant() value={}\n  return %0 \"o\"\n}";
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_graph_parse(zeros, strlen(zeros), &g) == LDMC_OK, "zero-size: %s", ldmc_last_error());
  ldmc_graph_free(g);
  char nul_text[] = "graph g {\n  %0 = f32[] parameter() name=\"a\0b\"\n  return\n}";
  expect_reject("NUL inside a string", nul_text, sizeof nul_text - 1);
  expect_reject("NULL text with a length", NULL, 5);
  g = (ldmc_graph *)1;
  CHECK(ldmc_graph_parse(NULL, 0, &g) != LDMC_OK && g == NULL);

  /* 10^5 chained nodes with long names: linear time, all found. */
  const int N = 100000;
  size_t cap = (size_t)N * 64 + 256, k = 0;
  char *big = malloc(cap);
  k += (size_t)snprintf(big + k, cap - k, "graph chain {\n  %%value_number_0 = f32[2] parameter() name=\"x\"\n");
  for (int i = 1; i < N; i++)
    k += (size_t)snprintf(big + k, cap - k, "  %%value_number_%d = f32[2] neg(%%value_number_%d)\n", i, i - 1);
  snprintf(big + k, cap - k, "  return %%value_number_%d \"y\"\n}\n", N - 1);
  g = NULL;
  CHECK_MSG(ldmc_graph_parse(big, strlen(big), &g) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(g && g->n_nodes == N && g->outputs[0] == N - 1 && g->nodes[N - 1].operands[0] == N - 2);
  ldmc_graph_free(g);
  free(big);
}

int main(void) {
  test_print_exact();
  test_parse_fields();
  test_every_op_round_trip();
  test_f64_literals();
  test_malformed();
  test_hostile();
  return test_summary("test_text");
}
