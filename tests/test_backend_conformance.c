/* Backend conformance, in the spirit of ggml's test-backend-ops: every op of
 * ir/ops.def (and the fused patterns backends recognise), on random shapes
 * with odd and prime sizes, in f32 and bf16 (and i32 where the op allows),
 * runs on every registered backend other than the interpreter and is
 * compared with the interpreter (the oracle) within stated tolerances:
 *   |got - want| <= atol + rtol * |want| + arel * max|want|
 * NaN must meet NaN and infinities must match exactly. A case with a node
 * the backend's supports() rejects must be refused at compile time with
 * LDMC_ERR_UNSUPPORTED and a message naming the backend and the op (and is
 * not coverage); a case whose nodes it all supports must compile and run on
 * the backend itself: a kernel it hands to the interpreter (a profiler event
 * named "interp") fails the test, as does any other failure or a wrong result. The llvm-cpu backend
 * is run at every ISA level the host supports (scalar, avx2, avx512), so the
 * narrower vector paths are tested by forcing a smaller feature set.
 * LDMC_CONFORMANCE_SEED varies the shapes; LDMC_CONFORMANCE_FILTER=<substr>
 * runs a subset. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

/* ---- random numbers ---- */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnext(void) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double runif(double lo, double hi) { return lo + (hi - lo) * (double)(rnext() >> 11) / 9007199254740992.0; }
static int64_t rint_(int64_t lo, int64_t hi) { return lo + (int64_t)(rnext() % (uint64_t)(hi - lo + 1)); }
/* sizes: odd, prime, powers of two and one-past */
static int64_t rsize(void) {
  static const int64_t s[] = {1, 2, 3, 5, 7, 8, 13, 16, 17, 19, 31, 33};
  return s[rnext() % (sizeof s / sizeof s[0])];
}

/* ---- cases ---- */
typedef struct tol {
  double rtol, atol, arel;
} tol;

typedef struct cf_case {
  char name[160];
  ldmc_op op; /* the op under test (coverage) */
  ldmc_graph *g;
  tol t;
} cf_case;

enum { MAX_CASES = 1024 };
static cf_case g_cases[MAX_CASES];
static int g_ncases;
static bool g_covered[LDMC_OP_COUNT];
static int g_skipped;

static bool is_f(ldmc_dtype dt) { return ldmc_dtype_is_float(dt); }

/* tolerance by class and dtype */
static tol t_exact(ldmc_dtype dt) { return dt == LDMC_BF16 ? (tol){1.0 / 128, 0, 0} : (tol){0, 0, 0}; }
static tol t_ulp(ldmc_dtype dt) { return dt == LDMC_BF16 ? (tol){1.0 / 128, 1e-6, 0} : (tol){3e-7, 0, 0}; }
static tol t_math(ldmc_dtype dt) { return dt == LDMC_BF16 ? (tol){1.0 / 64, 1e-6, 0} : (tol){5e-6, 2e-6, 0}; }
static tol t_acc(ldmc_dtype dt) { return dt == LDMC_BF16 ? (tol){1.0 / 64, 0, 1.0 / 64} : (tol){1e-5, 0, 2e-5}; }

static void add_case(ldmc_builder *b, ldmc_value out, ldmc_op op, tol t, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_case(ldmc_builder *b, ldmc_value out, ldmc_op op, tol t, const char *fmt, ...) {
  ldmc_builder_output(b, out, "out");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  char name[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  if (!g) {
    CHECK_MSG(false, "building case %s: %s", name, ldmc_last_error());
    return;
  }
  const char *filter = getenv("LDMC_CONFORMANCE_FILTER");
  if ((filter && !strstr(name, filter)) || g_ncases == MAX_CASES) {
    ldmc_graph_free(g);
    return;
  }
  cf_case *c = &g_cases[g_ncases++];
  snprintf(c->name, sizeof c->name, "%s", name);
  c->op = op;
  c->g = g;
  c->t = t;
}

static ldmc_value param(ldmc_builder *b, const char *name, ldmc_dtype dt, int rank, const int64_t *dims) {
  return ldmc_parameter(b, name, dt, rank, dims);
}

static int rand_shape(int64_t *d, int rmin, int rmax) {
  int r = (int)rint_(rmin, rmax);
  for (int i = 0; i < r; i++) d[i] = rsize();
  return r;
}

static const char *shape_s(int r, const int64_t *d, char *buf) {
  int k = 0;
  buf[k++] = '[';
  for (int i = 0; i < r; i++) k += sprintf(buf + k, i ? ",%" PRId64 : "%" PRId64, d[i]);
  buf[k++] = ']';
  buf[k] = 0;
  return buf;
}

static void cases_elementwise(ldmc_dtype dt) {
  static const ldmc_op unary[] = {LDMC_OP_NEG, LDMC_OP_ABS, LDMC_OP_EXP, LDMC_OP_LOG, LDMC_OP_SQRT, LDMC_OP_RSQRT,
                                  LDMC_OP_TANH, LDMC_OP_LOGISTIC, LDMC_OP_SIN, LDMC_OP_COS, LDMC_OP_ERF,
                                  LDMC_OP_SILU, LDMC_OP_GELU};
  static const ldmc_op binary[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV,
                                   LDMC_OP_MAX, LDMC_OP_MIN, LDMC_OP_POW};
  char sb[128];
  for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) {
    ldmc_op op = unary[i];
    if (!is_f(dt) && op != LDMC_OP_NEG && op != LDMC_OP_ABS) continue;
    int64_t d[4];
    int r = rand_shape(d, 1, 3);
    bool pos = op == LDMC_OP_LOG || op == LDMC_OP_SQRT || op == LDMC_OP_RSQRT;
    ldmc_builder *b = ldmc_builder_new("unary");
    ldmc_value x = param(b, pos ? "pos_x" : "x", dt, r, d);
    tol t = op == LDMC_OP_NEG || op == LDMC_OP_ABS || op == LDMC_OP_SQRT ? t_exact(dt)
            : op == LDMC_OP_RSQRT                                       ? t_ulp(dt)
                                                                        : t_math(dt);
    add_case(b, ldmc_unary(b, op, x), op, t, "%s %s%s", ldmc_op_name(op), ldmc_dtype_name(dt), shape_s(r, d, sb));
  }
  for (size_t i = 0; i < sizeof binary / sizeof binary[0]; i++) {
    ldmc_op op = binary[i];
    if (!is_f(dt) && op == LDMC_OP_POW) continue;
    int64_t d[4];
    int r = rand_shape(d, 1, 4);
    ldmc_builder *b = ldmc_builder_new("binary");
    ldmc_value x = param(b, op == LDMC_OP_POW ? "pos_x" : "x", dt, r, d);
    ldmc_value y = param(b, op == LDMC_OP_DIV && is_f(dt) ? "nz_y" : op == LDMC_OP_POW ? "small_y" : "y", dt, r, d);
    tol t = op == LDMC_OP_POW ? t_math(dt) : t_exact(dt);
    add_case(b, ldmc_binary(b, op, x, y), op, t, "%s %s%s", ldmc_op_name(op), ldmc_dtype_name(dt), shape_s(r, d, sb));
  }
  /* numpy-style broadcasting inserts broadcast_in_dim: [a,1,c] + [b,1] */
  {
    int64_t a = rsize(), bb = rsize(), c = rsize(), d1[3] = {a, 1, c}, d2[2] = {bb, 1};
    ldmc_builder *b = ldmc_builder_new("bcast");
    ldmc_value x = param(b, "x", dt, 3, d1), y = param(b, "y", dt, 2, d2);
    add_case(b, ldmc_mul(b, x, y), LDMC_OP_BROADCAST_IN_DIM, t_exact(dt), "broadcast-mul %s[%" PRId64 ",1,%" PRId64 "]x[%" PRId64 ",1]",
             ldmc_dtype_name(dt), a, c, bb);
  }
  for (int dir = 0; dir < LDMC_CMP_COUNT; dir++) {
    int64_t d[3];
    int r = rand_shape(d, 1, 3);
    ldmc_builder *b = ldmc_builder_new("compare");
    ldmc_value x = param(b, "ties_x", dt, r, d), y = param(b, "ties_y", dt, r, d);
    ldmc_value p = ldmc_compare_values(b, (ldmc_compare)dir, x, y);
    add_case(b, ldmc_select(b, p, x, y), LDMC_OP_COMPARE, t_exact(dt), "compare-%s+select %s%s",
             ldmc_compare_name((ldmc_compare)dir), ldmc_dtype_name(dt), shape_s(r, d, sb));
    g_covered[LDMC_OP_SELECT] = true;
  }
  /* converts to every other dtype and back */
  for (int to = 0; to < LDMC_DTYPE_COUNT; to++) {
    if (to == (int)dt) continue;
    int64_t d[3];
    int r = rand_shape(d, 1, 3);
    ldmc_builder *b = ldmc_builder_new("convert");
    ldmc_value x = param(b, "ties_x", dt, r, d);
    ldmc_value y = ldmc_convert(b, ldmc_convert(b, x, (ldmc_dtype)to), LDMC_F32);
    add_case(b, y, LDMC_OP_CONVERT, t_exact(LDMC_F32), "convert %s->%s->f32%s", ldmc_dtype_name(dt),
             ldmc_dtype_name((ldmc_dtype)to), shape_s(r, d, sb));
  }
}

static void cases_movement(ldmc_dtype dt) {
  char sb[128];
  for (int rep = 0; rep < 2; rep++) {
    int64_t d[4];
    int r = rand_shape(d, 2, 4);
    int64_t perm[4] = {0, 1, 2, 3};
    for (int i = r - 1; i > 0; i--) { /* random permutation */
      int j = (int)rint_(0, i);
      int64_t t = perm[i];
      perm[i] = perm[j], perm[j] = t;
    }
    ldmc_builder *b = ldmc_builder_new("transpose");
    ldmc_value x = param(b, "x", dt, r, d);
    add_case(b, ldmc_transpose(b, x, perm), LDMC_OP_TRANSPOSE, t_exact(dt), "transpose %s%s perm %" PRId64 "%" PRId64 "%" PRId64 "%" PRId64,
             ldmc_dtype_name(dt), shape_s(r, d, sb), perm[0], perm[1], perm[2], perm[3]);
  }
  { /* broadcast_in_dim into a bigger rank, reshape after */
    int64_t a = rsize(), c = rsize(), out[3] = {a, rsize(), c}, in[2] = {a, c}, map[2] = {0, 2};
    ldmc_builder *b = ldmc_builder_new("bcast");
    ldmc_value x = param(b, "x", dt, 2, in);
    ldmc_value y = ldmc_broadcast_in_dim(b, x, 3, out, map);
    int64_t flat[2] = {a * out[1], c};
    add_case(b, ldmc_reshape(b, y, 2, flat), LDMC_OP_BROADCAST_IN_DIM, t_exact(dt), "broadcast_in_dim+reshape %s%s",
             ldmc_dtype_name(dt), shape_s(3, out, sb));
    g_covered[LDMC_OP_RESHAPE] = true;
  }
  {
    int64_t d[4];
    int r = rand_shape(d, 1, 4);
    int64_t st[4], li[4], sd[4];
    for (int i = 0; i < r; i++) {
      st[i] = rint_(0, d[i] - 1);
      li[i] = rint_(st[i] + 1, d[i]);
      sd[i] = rint_(1, 3);
    }
    ldmc_builder *b = ldmc_builder_new("slice");
    ldmc_value x = param(b, "x", dt, r, d);
    add_case(b, ldmc_slice(b, x, st, li, sd), LDMC_OP_SLICE, t_exact(dt), "slice %s%s", ldmc_dtype_name(dt), shape_s(r, d, sb));
  }
  {
    int64_t d[3];
    int r = rand_shape(d, 1, 3), ax = (int)rint_(0, r - 1);
    ldmc_builder *b = ldmc_builder_new("concat");
    ldmc_value xs[3];
    for (int k = 0; k < 3; k++) {
      d[ax] = rsize();
      char nm[8];
      snprintf(nm, sizeof nm, "x%d", k);
      xs[k] = param(b, nm, dt, r, d);
    }
    add_case(b, ldmc_concatenate(b, 3, xs, ax), LDMC_OP_CONCATENATE, t_exact(dt), "concatenate %s axis %d rank %d",
             ldmc_dtype_name(dt), ax, r);
  }
  for (int rep = 0; rep < 2; rep++) {
    int64_t d[3];
    int r = rand_shape(d, 1, 3);
    int64_t lo[3], hi[3], in[3];
    for (int i = 0; i < r; i++) {
      lo[i] = rint_(rep ? -1 : 0, 2), hi[i] = rint_(rep ? -1 : 0, 3), in[i] = rint_(0, rep ? 2 : 0);
      if (d[i] + lo[i] + hi[i] + (d[i] - 1) * in[i] < 0) lo[i] = hi[i] = 0;
    }
    ldmc_builder *b = ldmc_builder_new("pad");
    ldmc_value x = param(b, "x", dt, r, d);
    ldmc_value v = param(b, "x_pad", dt, 0, NULL);
    add_case(b, ldmc_pad(b, x, v, lo, hi, in), LDMC_OP_PAD, t_exact(dt), "pad %s%s%s", ldmc_dtype_name(dt), shape_s(r, d, sb),
             rep ? " negative+interior" : "");
  }
  {
    int64_t d[4] = {rsize(), rsize(), rsize(), rsize()};
    ldmc_builder *b = ldmc_builder_new("upsample");
    ldmc_value x = param(b, "x", dt, 4, d);
    add_case(b, ldmc_upsample_nearest(b, x, 2), LDMC_OP_UPSAMPLE_NEAREST, t_exact(dt), "upsample_nearest x2 %s%s",
             ldmc_dtype_name(dt), shape_s(4, d, sb));
  }
  {
    int64_t d[3];
    int r = rand_shape(d, 1, 3);
    ldmc_builder *b = ldmc_builder_new("iota");
    ldmc_value x = param(b, "x", dt, r, d);
    int ax = (int)rint_(0, r - 1);
    add_case(b, ldmc_add(b, x, ldmc_iota(b, dt, r, d, ax)), LDMC_OP_IOTA, t_exact(dt), "iota+add %s%s axis %d",
             ldmc_dtype_name(dt), shape_s(r, d, sb), ax);
  }
  {
    int64_t d[2] = {rsize(), rsize()};
    float data[1024];
    for (int i = 0; i < d[0] * d[1]; i++) data[i] = (float)runif(-3, 3);
    ldmc_builder *b = ldmc_builder_new("constant");
    ldmc_value x = param(b, "x", LDMC_F32, 2, d);
    ldmc_value c = ldmc_constant(b, LDMC_F32, 2, d, data);
    add_case(b, ldmc_convert(b, ldmc_mul(b, x, c), dt), LDMC_OP_CONSTANT, t_exact(dt), "constant*x %s%s",
             ldmc_dtype_name(dt), shape_s(2, d, sb));
  }
  { /* gather / scatter_add along an axis (integer indices) */
    int64_t d[3] = {rsize(), rsize(), rsize()}, nidx = rsize();
    int ax = (int)rint_(0, 2);
    char nm[32];
    snprintf(nm, sizeof nm, "idx%" PRId64, d[ax]);
    ldmc_builder *b = ldmc_builder_new("gather");
    ldmc_value x = param(b, "x", dt, 3, d), idx = param(b, nm, LDMC_I32, 1, &nidx);
    add_case(b, ldmc_gather(b, x, idx, ax), LDMC_OP_GATHER, t_exact(dt), "gather %s%s axis %d", ldmc_dtype_name(dt),
             shape_s(3, d, sb), ax);
    b = ldmc_builder_new("scatter");
    x = param(b, "x", dt, 3, d);
    idx = param(b, nm, LDMC_I32, 1, &nidx);
    int64_t ud[3] = {d[0], d[1], d[2]};
    ud[ax] = nidx;
    ldmc_value u = param(b, "u", dt, 3, ud);
    ldmc_graph *g = ldmc_builder_graph(b);
    ldmc_attrs at = {0};
    at.axis = ax;
    int32_t ops[3] = {x, idx, u};
    ldmc_value s = ldmc_graph_add_checked(g, LDMC_OP_SCATTER_ADD, dt, NULL, 3, ops, &at, NULL);
    add_case(b, s, LDMC_OP_SCATTER_ADD, t_acc(dt), "scatter_add %s%s axis %d", ldmc_dtype_name(dt), shape_s(3, d, sb), ax);
  }
}

static void cases_reduce(ldmc_dtype dt) {
  char sb[128];
  for (int kind = 0; kind < LDMC_REDUCE_COUNT; kind++)
    for (int rep = 0; rep < 2; rep++) {
      int64_t d[4];
      int r = rand_shape(d, 1, 4);
      int64_t axes[4];
      int na = 0;
      for (int i = 0; i < r; i++)
        if (rnext() & 1) axes[na++] = i;
      if (rep == 1 && r > 1) na = 1, axes[0] = r - 1; /* innermost */
      ldmc_builder *b = ldmc_builder_new("reduce");
      ldmc_value x = param(b, "x", dt, r, d);
      add_case(b, ldmc_reduce(b, (ldmc_reduce_kind)kind, x, na, axes, false), LDMC_OP_REDUCE,
               kind == LDMC_REDUCE_SUM ? t_acc(dt) : t_exact(dt), "reduce-%s %s%s over %d dims",
               ldmc_reduce_kind_name((ldmc_reduce_kind)kind), ldmc_dtype_name(dt), shape_s(r, d, sb), na);
    }
  { /* a long contiguous row sum and a sum over the outer dim */
    int64_t d[2] = {rsize(), 1000 + rint_(0, 100)}, ax1 = 1, ax0 = 0;
    ldmc_builder *b = ldmc_builder_new("rowsum");
    ldmc_value x = param(b, "x", dt, 2, d);
    add_case(b, ldmc_reduce(b, LDMC_REDUCE_SUM, x, 1, &ax1, false), LDMC_OP_REDUCE, t_acc(dt), "reduce-sum rows %s%s",
             ldmc_dtype_name(dt), shape_s(2, d, sb));
    b = ldmc_builder_new("colsum");
    x = param(b, "x", dt, 2, d);
    add_case(b, ldmc_reduce(b, LDMC_REDUCE_MAX, x, 1, &ax0, false), LDMC_OP_REDUCE, t_exact(dt), "reduce-max cols %s%s",
             ldmc_dtype_name(dt), shape_s(2, d, sb));
  }
}

static ldmc_ints ints(int n, int64_t a, int64_t b, int64_t c) {
  ldmc_ints v = {.n = n};
  v.v[0] = a, v.v[1] = b, v.v[2] = c;
  return v;
}

static void cases_dot(ldmc_dtype dt) {
  for (int rep = 0; rep < 2; rep++) { /* plain matmul, with sizes around the register tile */
    int64_t M = rep ? rint_(1, 40) : rint_(20, 70), K = rint_(1, 300), N = rep ? rint_(1, 40) : rint_(30, 100);
    int64_t a[2] = {M, K}, bd[2] = {K, N};
    ldmc_builder *b = ldmc_builder_new("matmul");
    ldmc_value x = param(b, "x", dt, 2, a), y = param(b, "y", dt, 2, bd);
    add_case(b, ldmc_matmul(b, x, y), LDMC_OP_DOT_GENERAL, t_acc(dt), "matmul %s %" PRId64 "x%" PRId64 "x%" PRId64,
             ldmc_dtype_name(dt), M, K, N);
  }
  { /* batched, rhs transposed (x @ W^T): contract lhs 2 with rhs 2 */
    int64_t Bt = rsize(), M = rint_(1, 50), K = rint_(1, 70), N = rint_(1, 50);
    int64_t a[3] = {Bt, M, K}, bd[3] = {Bt, N, K};
    ldmc_builder *b = ldmc_builder_new("bmm_t");
    ldmc_value x = param(b, "x", dt, 3, a), y = param(b, "y", dt, 3, bd);
    ldmc_ints lb = ints(1, 0, 0, 0), rb = ints(1, 0, 0, 0), lc = ints(1, 2, 0, 0), rc = ints(1, 2, 0, 0);
    add_case(b, ldmc_dot_general(b, x, y, &lb, &rb, &lc, &rc), LDMC_OP_DOT_GENERAL, t_acc(dt),
             "dot_general batch, rhs^T %s %" PRId64 "x%" PRId64 "x%" PRId64 "x%" PRId64, ldmc_dtype_name(dt), Bt, M, K, N);
  }
  { /* lhs transposed, two contracting dims, batch in the middle */
    int64_t K1 = rsize(), K2 = rsize(), M = rint_(1, 30), N = rint_(1, 30), Bt = rsize();
    int64_t a[4] = {K1, Bt, K2, M}, bd[4] = {N, K2, Bt, K1};
    ldmc_builder *b = ldmc_builder_new("dot_odd");
    ldmc_value x = param(b, "x", dt, 4, a), y = param(b, "y", dt, 4, bd);
    ldmc_ints lb = ints(1, 1, 0, 0), rb = ints(1, 2, 0, 0), lc = ints(2, 0, 2, 0), rc = ints(2, 3, 1, 0);
    add_case(b, ldmc_dot_general(b, x, y, &lb, &rb, &lc, &rc), LDMC_OP_DOT_GENERAL, t_acc(dt),
             "dot_general permuted dims %s", ldmc_dtype_name(dt));
  }
}

/* fusion patterns: views feeding products and attention, elementwise chains */
static void cases_fusion(ldmc_dtype dt) {
  { /* matmul of a transposed operand and a broadcast one (read in place) */
    int64_t M = rint_(1, 40), K = rint_(1, 50), N = rint_(1, 40), xd[2] = {K, M}, yd[2] = {K, N}, perm[2] = {1, 0};
    ldmc_builder *b = ldmc_builder_new("mm_views");
    ldmc_value x = param(b, "x", dt, 2, xd), y = param(b, "y", dt, 2, yd);
    add_case(b, ldmc_matmul(b, ldmc_transpose(b, x, perm), y), LDMC_OP_DOT_GENERAL, t_acc(dt),
             "fused transpose->matmul %s %" PRId64 "x%" PRId64 "x%" PRId64, ldmc_dtype_name(dt), M, K, N);
  }
  { /* multi-head attention as the U-Net builds it: split heads by reshape + transpose */
    int64_t Bt = rint_(1, 2), N = rint_(1, 70), M = rint_(1, 30), H = rint_(1, 3), Dh = rint_(1, 17), C = H * Dh;
    int64_t xd[3] = {Bt, N, C}, cd[3] = {Bt, M, C}, d4[4] = {Bt, N, H, Dh}, c4[4] = {Bt, M, H, Dh}, perm[4] = {0, 2, 1, 3};
    ldmc_builder *b = ldmc_builder_new("mha");
    ldmc_value x = param(b, "x", dt, 3, xd), c = param(b, "ctx", dt, 3, cd);
    ldmc_value q = ldmc_transpose(b, ldmc_reshape(b, ldmc_scale(b, x, 1.5), 4, d4), perm);
    ldmc_value k = ldmc_transpose(b, ldmc_reshape(b, c, 4, c4), perm);
    ldmc_value v = ldmc_transpose(b, ldmc_reshape(b, ldmc_unary(b, LDMC_OP_TANH, c), 4, c4), perm);
    ldmc_value o = ldmc_transpose(b, ldmc_attention(b, q, k, v, 0.3), perm);
    add_case(b, ldmc_reshape(b, o, 3, xd), LDMC_OP_ATTENTION, t_acc(dt),
             "fused split-heads attention %s B%" PRId64 " N%" PRId64 " M%" PRId64 " H%" PRId64 " D%" PRId64,
             ldmc_dtype_name(dt), Bt, N, M, H, Dh);
  }
  { /* a long elementwise chain with broadcasts and a shared subexpression */
    int64_t d[3] = {rsize(), rsize(), rsize()}, c = d[1];
    ldmc_builder *b = ldmc_builder_new("chain");
    ldmc_value x = param(b, "x", dt, 3, d), bias = param(b, "bias", dt, 1, &c);
    const int64_t map[1] = {1};
    ldmc_value h = ldmc_add(b, x, ldmc_broadcast_in_dim(b, bias, 3, d, map));
    ldmc_value s = ldmc_silu(b, h);
    ldmc_value y = ldmc_mul(b, ldmc_add(b, s, h), ldmc_unary(b, LDMC_OP_LOGISTIC, ldmc_sub(b, s, x)));
    add_case(b, ldmc_gelu(b, y), LDMC_OP_ADD, t_math(dt), "fused bias+silu+mul+gelu chain %s", ldmc_dtype_name(dt));
  }
}

static ldmc_value conv_raw(ldmc_builder *b, ldmc_value x, ldmc_value w, int64_t s0, int64_t s1, int64_t pl0, int64_t ph0,
                           int64_t pl1, int64_t ph1, int64_t d0, int64_t d1, int64_t ld, int64_t groups) {
  ldmc_graph *g = ldmc_builder_graph(b);
  ldmc_attrs a = {0};
  a.window_stride = ints(2, s0, s1, 0);
  a.pad_low = ints(2, pl0, pl1, 0);
  a.pad_high = ints(2, ph0, ph1, 0);
  a.lhs_dilation = ints(2, ld, ld, 0);
  a.rhs_dilation = ints(2, d0, d1, 0);
  a.groups = groups;
  ldmc_ints dims = {.n = 4, .v = {0, 1, 2, 3}};
  a.input_dims = a.kernel_dims = a.output_dims = dims;
  int32_t ops[2] = {x, w};
  return ldmc_graph_add_checked(g, LDMC_OP_CONVOLUTION, ldmc_value_dtype(b, x), NULL, 2, ops, &a, NULL);
}

static void cases_conv(ldmc_dtype dt) {
  struct {
    int k, stride, pad, dil, groups;
  } cf[] = {{3, 1, 1, 1, 1}, {3, 2, 1, 1, 1}, {1, 1, 0, 1, 1}, {1, 2, 0, 1, 1}, {3, 1, 2, 2, 1}, {3, 1, 1, 1, 3}, {5, 1, 2, 1, 1}};
  for (size_t i = 0; i < sizeof cf / sizeof cf[0]; i++) {
    int64_t G = cf[i].groups, N = rint_(1, 2), C = G * rint_(1, 7), O = G * rint_(1, 11), H = rint_(3, 19), W = rint_(3, 23);
    int64_t xd[4] = {N, C, H, W}, wd[4] = {O, C / G, cf[i].k, cf[i].k};
    ldmc_builder *b = ldmc_builder_new("conv");
    ldmc_value x = param(b, "x", dt, 4, xd), w = param(b, "w", dt, 4, wd);
    add_case(b, ldmc_conv2d(b, x, w, cf[i].stride, cf[i].pad, cf[i].dil, (int)G), LDMC_OP_CONVOLUTION, t_acc(dt),
             "conv2d %s k%d s%d p%d d%d g%" PRId64 " x[%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] o%" PRId64,
             ldmc_dtype_name(dt), cf[i].k, cf[i].stride, cf[i].pad, cf[i].dil, G, N, C, H, W, O);
  }
  { /* asymmetric padding and strides, and a dilated input (the transposed-conv form) */
    int64_t xd[4] = {1, 3, 11, 7}, wd[4] = {5, 3, 3, 2};
    ldmc_builder *b = ldmc_builder_new("conv_asym");
    ldmc_value x = param(b, "x", dt, 4, xd), w = param(b, "w", dt, 4, wd);
    add_case(b, conv_raw(b, x, w, 2, 1, 0, 2, 1, 0, 1, 2, 1, 1), LDMC_OP_CONVOLUTION, t_acc(dt), "convolution asymmetric %s",
             ldmc_dtype_name(dt));
    b = ldmc_builder_new("conv_lhsdil");
    x = param(b, "x", dt, 4, xd), w = param(b, "w", dt, 4, wd);
    add_case(b, conv_raw(b, x, w, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1), LDMC_OP_CONVOLUTION, t_acc(dt), "convolution lhs_dilation 2 %s",
             ldmc_dtype_name(dt));
  }
}

/* a 3-D convolution: the interpreter runs it; llvm-cpu declares it unsupported */
static void case_conv3d(void) {
  int64_t xd[5] = {1, 2, 5, 4, 3}, wd[5] = {3, 2, 2, 3, 1};
  ldmc_builder *b = ldmc_builder_new("conv3d");
  ldmc_value x = param(b, "x", LDMC_F32, 5, xd), w = param(b, "w", LDMC_F32, 5, wd);
  ldmc_attrs a = {0};
  a.window_stride = a.lhs_dilation = a.rhs_dilation = ints(3, 1, 1, 1);
  a.pad_low = a.pad_high = ints(3, 0, 1, 0);
  a.groups = 1;
  ldmc_ints dims = {.n = 5, .v = {0, 1, 2, 3, 4}};
  a.input_dims = a.kernel_dims = a.output_dims = dims;
  int32_t ops[2] = {x, w};
  ldmc_value y = ldmc_graph_add_checked(ldmc_builder_graph(b), LDMC_OP_CONVOLUTION, LDMC_F32, NULL, 2, ops, &a, NULL);
  add_case(b, y, LDMC_OP_CONVOLUTION, t_acc(LDMC_F32), "convolution 3-D f32");
}

static void cases_composite(ldmc_dtype dt) {
  char sb[128];
  for (int rep = 0; rep < 2; rep++) {
    int64_t d[3];
    int r = rand_shape(d, 1, 3), ax = rep ? 0 : r - 1;
    d[ax] = rint_(1, 300);
    ldmc_builder *b = ldmc_builder_new("softmax");
    ldmc_value x = param(b, "wide_x", dt, r, d);
    add_case(b, ldmc_softmax(b, x, ax), LDMC_OP_SOFTMAX, t_acc(dt), "softmax %s%s axis %d", ldmc_dtype_name(dt),
             shape_s(r, d, sb), ax);
  }
  for (int fuse = 0; fuse < 2; fuse++) {
    int64_t G = rint_(1, 4), d[4] = {rint_(1, 2), G * rint_(1, 5), rsize(), rsize()}, c = d[1];
    ldmc_builder *b = ldmc_builder_new("group_norm");
    ldmc_value x = param(b, "x", dt, 4, d), gm = param(b, "gamma", dt, 1, &c), bt = param(b, "beta", dt, 1, &c);
    ldmc_value y = ldmc_group_norm(b, x, gm, bt, (int)G, 1e-5);
    if (fuse) y = ldmc_silu(b, y);
    add_case(b, y, LDMC_OP_GROUP_NORM, t_acc(dt), "group_norm%s %s%s groups %" PRId64, fuse ? "+silu (fused)" : "",
             ldmc_dtype_name(dt), shape_s(4, d, sb), G);
  }
  {
    int64_t d[3] = {rsize(), rsize(), rint_(1, 100)};
    ldmc_builder *b = ldmc_builder_new("layer_norm");
    ldmc_value x = param(b, "x", dt, 3, d), gm = param(b, "gamma", dt, 1, &d[2]), bt = param(b, "beta", dt, 1, &d[2]);
    add_case(b, ldmc_layer_norm(b, x, gm, bt, 2, 1e-5), LDMC_OP_LAYER_NORM, t_acc(dt), "layer_norm %s%s",
             ldmc_dtype_name(dt), shape_s(3, d, sb));
  }
  for (int rep = 0; rep < 3; rep++) { /* self- and cross-attention, odd head sizes */
    int64_t Bt = rint_(1, 3), N = rep == 2 ? 129 : rint_(1, 40), M = rep == 1 ? 77 : rint_(1, 40), D = rep ? 40 : rint_(1, 20),
            E = rep ? D : rint_(1, 20);
    int64_t qd[3] = {Bt, N, D}, kd[3] = {Bt, M, D}, vd[3] = {Bt, M, E};
    ldmc_builder *b = ldmc_builder_new("attention");
    ldmc_value q = param(b, "q", dt, 3, qd), k = param(b, "k", dt, 3, kd), v = param(b, "v", dt, 3, vd);
    add_case(b, ldmc_attention(b, q, k, v, 1.0 / 3.0), LDMC_OP_ATTENTION, t_acc(dt),
             "attention %s B%" PRId64 " N%" PRId64 " M%" PRId64 " D%" PRId64 " E%" PRId64, ldmc_dtype_name(dt), Bt, N, M, D, E);
  }
}

/* attention's backward ops as the attention VJP builds them: lse from q, k;
 * delta = rowsum(ct y); dq and (dk | dv) from q, k, v, ct, lse, delta.
 * Each op is the case's output (the others feed it). */
static void cases_attention_backward(ldmc_dtype dt) {
  static const ldmc_op ops[3] = {LDMC_OP_ATTENTION_LSE, LDMC_OP_ATTENTION_GRAD_Q, LDMC_OP_ATTENTION_GRAD_KV};
  for (int rep = 0; rep < 3; rep++) {
    bool split = rep == 2; /* the U-Net's head splits: strided views */
    int64_t Bt = rint_(1, 2), H = rint_(1, 3), N = rep == 1 ? 67 : rint_(1, 40), M = rep == 0 ? 3 : rint_(1, 40),
            D = rep == 1 ? 40 : rint_(1, 20), E = split ? D : rint_(1, 20);
    for (int o = 0; o < 3; o++) {
      ldmc_builder *b = ldmc_builder_new("attention_backward");
      ldmc_value x[4];
      const char *names[4] = {"q", "k", "v", "ct"};
      int64_t rows[4] = {N, M, M, N}, cols[4] = {D, D, E, E}, perm[4] = {0, 2, 1, 3};
      for (int i = 0; i < 4; i++) {
        int64_t d3[3] = {Bt, rows[i], H * cols[i]}, d4[4] = {Bt, rows[i], H, cols[i]}, dd[4] = {Bt, H, rows[i], cols[i]};
        x[i] = split ? ldmc_transpose(b, ldmc_reshape(b, param(b, names[i], dt, 3, d3), 4, d4), perm)
                     : param(b, names[i], dt, 4, dd);
      }
      double scale = 0.3 + 0.1 * rep;
      const int64_t row = 3;
      ldmc_value lse = ldmc_attention_lse(b, x[0], x[1], scale);
      ldmc_value y = ldmc_attention(b, x[0], x[1], x[2], scale);
      ldmc_value delta = ldmc_reduce(b, LDMC_REDUCE_SUM,
                                     ldmc_mul(b, ldmc_convert(b, x[3], LDMC_F32), ldmc_convert(b, y, LDMC_F32)), 1, &row,
                                     false);
      ldmc_value out = o == 0 ? lse
                       : o == 1 ? ldmc_attention_grad_q(b, x[0], x[1], x[2], x[3], lse, delta, scale)
                                : ldmc_attention_grad_kv(b, x[0], x[1], x[2], x[3], lse, delta, scale);
      add_case(b, out, ops[o], t_acc(dt), "%s %s B%" PRId64 " H%" PRId64 " N%" PRId64 " M%" PRId64 " D%" PRId64 " E%" PRId64 "%s",
               ldmc_op_name(ops[o]), ldmc_dtype_name(dt), Bt, H, N, M, D, E, split ? " split" : "");
    }
  }
}

static void cases_rng(void) {
  for (int op = LDMC_OP_RNG_UNIFORM; op <= LDMC_OP_RNG_NORMAL; op++) {
    int64_t d[2] = {rsize(), rsize()};
    ldmc_builder *b = ldmc_builder_new("rng");
    ldmc_value key = param(b, "key", LDMC_I64, 0, NULL);
    ldmc_shape s = ldmc_shape_make(2, d);
    int32_t ops[1] = {key};
    ldmc_value r = ldmc_graph_add_checked(ldmc_builder_graph(b), (ldmc_op)op, LDMC_F32, &s, 1, ops, NULL, NULL);
    add_case(b, r, (ldmc_op)op, (tol){1e-6, 1e-6, 0}, "%s f32[%" PRId64 ",%" PRId64 "]", ldmc_op_name((ldmc_op)op), d[0], d[1]);
  }
}

/* ---- inputs ---- */
static ldmc_status make_inputs(const ldmc_graph *g, ldmc_tensor **out, int *n) {
  int np = ldmc_graph_num_params(g), k = 0;
  ldmc_tensor *t = calloc((size_t)(np ? np : 1), sizeof *t);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const char *nm = p->attrs.name;
    LDMC_TRY(ldmc_tensor_alloc(&t[k], nm, p->dtype, &p->shape));
    int64_t cnt = 1;
    for (int d = 0; d < p->shape.rank; d++) cnt *= p->shape.dims[d];
    for (int64_t e = 0; e < cnt; e++) {
      double v;
      if (strncmp(nm, "idx", 3) == 0) v = (double)rint_(0, atoll(nm + 3) - 1);
      else if (strcmp(nm, "key") == 0) v = (double)rint_(0, 1000000);
      else if (p->dtype == LDMC_PRED) v = (double)(rnext() & 1);
      else if (!ldmc_dtype_is_float(p->dtype)) v = (double)rint_(-60, 60) * ((rnext() & 7) ? 1 : 0) - (double)((rnext() & 15) == 0);
      else if (strncmp(nm, "pos", 3) == 0) v = runif(0.1, 4.0);
      else if (strncmp(nm, "nz", 2) == 0) v = runif(0.5, 2.0) * ((rnext() & 1) ? 1 : -1);
      else if (strncmp(nm, "small", 5) == 0) v = runif(-2.0, 2.0);
      else if (strncmp(nm, "ties", 4) == 0) v = (double)rint_(-4, 4) * 0.5 + ((rnext() & 3) ? 0.0 : runif(-9, 9));
      else if (strncmp(nm, "wide", 4) == 0) v = runif(-8.0, 8.0);
      else v = runif(-2.0, 2.0);
      ldmc_tensor_set_elem(&t[k], e, v);
    }
    k++;
  }
  *out = t;
  *n = np;
  return LDMC_OK;
}

static void free_tensors(ldmc_tensor *t, int n) {
  for (int i = 0; i < n; i++) ldmc_tensor_release(&t[i]);
  free(t);
}

/* max violation of the tolerance (<= 1 passes) */
static double compare(const ldmc_tensor *got, const ldmc_tensor *want, tol t, int64_t *worst) {
  int64_t n = 1;
  for (int d = 0; d < want->shape.rank; d++) n *= want->shape.dims[d];
  double amax = 0;
  for (int64_t i = 0; i < n; i++) {
    double w = ldmc_tensor_get(want, i);
    if (isfinite(w) && fabs(w) > amax) amax = fabs(w);
  }
  double bad = 0;
  *worst = -1;
  for (int64_t i = 0; i < n; i++) {
    double a = ldmc_tensor_get(got, i), w = ldmc_tensor_get(want, i), v;
    if (isnan(w) || isnan(a)) v = isnan(w) && isnan(a) ? 0 : 1e30;
    else if (isinf(w) || isinf(a)) v = a == w ? 0 : 1e30;
    else {
      double lim = t.atol + t.rtol * fabs(w) + t.arel * amax;
      double e = fabs(a - w);
      v = e == 0 ? 0 : lim > 0 ? e / lim : 1e30;
    }
    if (v > bad) bad = v, *worst = i;
  }
  return bad;
}

/* profiler hook: counts kernels a backend ran on the interpreter (the
 * llvm-cpu convention: such a step's event is named "interp") */
static void count_interp(void *ctx, const ldmc_kernel_event *ev) {
  if (ev->name && strcmp(ev->name, "interp") == 0) ++*(int *)ctx;
}

/* The first node of g the backend says it does not support, or -1. */
static int32_t first_unsupported(const ldmc_backend_i *be, const ldmc_graph *g) {
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (be->supports && !be->supports(&g->nodes[i])) return i;
  return -1;
}

static void run_case(const ldmc_backend_i *be, const char *variant, cf_case *c, ldmc_tensor *in, int nin,
                     const ldmc_tensor *want) {
  ldmc_compile_opts o = {.threads = 2};
  ldmc_executable *e = NULL;
  int32_t bad = first_unsupported(be, c->g);
  ldmc_status st = be->compile(c->g, &o, &e);
  if (bad >= 0) { /* declared unsupported: refused at compile time with a clear error, never covered */
    const char *opn = ldmc_op_name(c->g->nodes[bad].op), *msg = ldmc_last_error();
    CHECK_MSG(st == LDMC_ERR_UNSUPPORTED && msg && strstr(msg, be->name) && strstr(msg, opn),
              "%s/%s: %s: %%%d %s is declared unsupported, but compile gave status %d (%s)", be->name, variant, c->name,
              (int)bad, opn, (int)st, st == LDMC_OK ? "compiled" : msg);
    if (st == LDMC_OK) ldmc_executable_free(e);
    printf("refused %s/%s: %s: %s\n", be->name, variant, c->name, msg);
    g_skipped++;
    return;
  }
  /* supports() said yes for every node: it must compile */
  CHECK_MSG(st == LDMC_OK, "%s/%s: %s: compile (every node declared supported): %s", be->name, variant, c->name,
            ldmc_last_error());
  if (st != LDMC_OK) return;
  int interp_steps = 0;
  ldmc_profile_hook hook = {.kernel = count_interp, .ctx = &interp_steps};
  bool hooked = e->iface->set_profiler && ldmc_executable_set_profiler(e, &hook) == LDMC_OK;
  ldmc_tensor got = {0};
  st = ldmc_executable_run(e, in, nin, &got, 1);
  CHECK_MSG(st == LDMC_OK, "%s/%s: %s: run: %s", be->name, variant, c->name, ldmc_last_error());
  /* every kernel on the backend itself: nothing handed to the interpreter */
  CHECK_MSG(interp_steps == 0, "%s/%s: %s: %d kernels ran on the interpreter", be->name, variant, c->name, interp_steps);
  if (st == LDMC_OK) {
    int64_t at;
    double v = compare(&got, want, c->t, &at);
    CHECK_MSG(v <= 1.0, "%s/%s: %s: element %" PRId64 " = %.9g, interpreter %.9g (%.3g x tolerance)", be->name, variant,
              c->name, at, ldmc_tensor_get(&got, at), ldmc_tensor_get(want, at), v);
    if (v <= 1.0 && interp_steps == 0 && (hooked || be != &ldmc_backend_llvm_cpu)) g_covered[c->op] = true;
  }
  ldmc_tensor_release(&got);
  ldmc_executable_free(e);
}

int main(void) {
  const char *seed = getenv("LDMC_CONFORMANCE_SEED");
  if (seed) g_rng ^= strtoull(seed, NULL, 10) * 0x2545F4914F6CDD1Dull;
  static const ldmc_dtype dts[] = {LDMC_F32, LDMC_BF16};
  for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
    cases_elementwise(dts[i]);
    cases_movement(dts[i]);
    cases_reduce(dts[i]);
    cases_dot(dts[i]);
    cases_conv(dts[i]);
    cases_composite(dts[i]);
    cases_attention_backward(dts[i]);
    cases_fusion(dts[i]);
  }
  cases_elementwise(LDMC_I32);
  cases_movement(LDMC_I32);
  cases_reduce(LDMC_I32);
  cases_rng();
  case_conv3d();
  printf("conformance: %d cases\n", g_ncases);
  const ldmc_backend_i *interp = ldmc_backend_find("interp");
  CHECK(interp != NULL);
  if (!interp) return test_summary("backend_conformance");
  int ran = 0;
  for (int ci = 0; ci < g_ncases; ci++) {
    cf_case *c = &g_cases[ci];
    ldmc_tensor *in = NULL;
    int nin = 0;
    if (make_inputs(c->g, &in, &nin) != LDMC_OK) {
      CHECK_MSG(false, "%s: inputs: %s", c->name, ldmc_last_error());
      continue;
    }
    ldmc_executable *ref = NULL;
    ldmc_compile_opts o = {.threads = 1};
    ldmc_tensor want = {0};
    ldmc_status st = interp->compile(c->g, &o, &ref);
    if (st == LDMC_OK) st = ldmc_executable_run(ref, in, nin, &want, 1);
    CHECK_MSG(st == LDMC_OK, "interp: %s: %s", c->name, ldmc_last_error());
    ldmc_executable_free(ref);
    for (int bi = 0; st == LDMC_OK && bi < ldmc_backend_count(); bi++) {
      const ldmc_backend_i *be = ldmc_backend_get(bi);
      if (be == interp) continue;
      if (be == &ldmc_backend_llvm_cpu) { /* every ISA level this host runs */
        for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)ldmc_llvm_cpu_host_isa(); isa++) {
          ldmc_llvm_cpu_set_isa((ldmc_llvm_cpu_isa)isa);
          run_case(be, ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), c, in, nin, &want);
        }
        ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
      } else {
        run_case(be, "default", c, in, nin, &want);
      }
      ran++;
    }
    ldmc_tensor_release(&want);
    free_tensors(in, nin);
  }
  /* every op of the table is exercised (parameter is in every case) */
  if (!getenv("LDMC_CONFORMANCE_FILTER") && ran > 0) {
    g_covered[LDMC_OP_PARAMETER] = true;
    for (int op = 0; op < LDMC_OP_COUNT; op++)
      CHECK_MSG(g_covered[op], "op %s has no passing conformance case", ldmc_op_name((ldmc_op)op));
  }
  for (int ci = 0; ci < g_ncases; ci++) ldmc_graph_free(g_cases[ci].g);
  printf("conformance: %d backend runs refused as declared unsupported\n", g_skipped);
  return test_summary("backend_conformance");
}
