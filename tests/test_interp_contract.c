/* Interpreter reduce and dot_general for every numeric dtype: hand-worked
 * cases plus naive loops written out here for the general ones (batch dims,
 * several contracting dims, non-leading positions). */
#include <omp.h>

#include "interp_test_util.h"

static double small(ldmc_dtype dt, int64_t i) { (void)dt; return (double)((i * 7) % 5) - 2; } /* -2..2 */

static ldmc_tensor fill(ldmc_dtype dt, ldmc_shape s, int64_t salt) {
  ldmc_tensor t = th_tensor(dt, s, NULL);
  for (int64_t i = 0; i < th_numel(&s); i++) ldmc_tensor_set_elem(&t, i, small(dt, i + salt));
  return t;
}

static void reduce1(ldmc_reduce_kind k, const ldmc_tensor *x, ldmc_ints dims, const double *want, int64_t n,
                    const char *label) {
  ldmc_attrs at = {0};
  at.reduce = k;
  at.dims = dims;
  ldmc_tensor out;
  if (th_eval(LDMC_OP_REDUCE, &at, x->dtype, NULL, 1, x, &out)) {
    CHECK(out.dtype == x->dtype);
    th_expect(label, &out, want, n, 0, 0);
    ldmc_tensor_release(&out);
  }
}

static void test_reduce(void) {
  for (int d = 0; d < NELEM(k_numeric); d++) {
    ldmc_dtype dt = k_numeric[d];
    ldmc_tensor x = fill(dt, SHAPE(2, 3, 4), 0);
    double v[24], w[24];
    for (int i = 0; i < 24; i++) v[i] = small(dt, i);
    for (int kind = 0; kind < 3; kind++) {
      /* over dim 1: out[a, c] */
      for (int a = 0; a < 2; a++)
        for (int c = 0; c < 4; c++) {
          double acc = kind == 0 ? 0 : v[a * 12 + c];
          for (int b = 0; b < 3; b++) {
            double e = v[a * 12 + b * 4 + c];
            acc = kind == 0 ? acc + e : kind == 1 ? fmax(acc, e) : fmin(acc, e);
          }
          w[a * 4 + c] = acc;
        }
      reduce1((ldmc_reduce_kind)kind, &x, INTS(1), w, 8, "reduce {1}");
      /* over dims 0 and 2: out[b] */
      for (int b = 0; b < 3; b++) {
        double acc = kind == 0 ? 0 : v[b * 4];
        for (int a = 0; a < 2; a++)
          for (int c = 0; c < 4; c++) {
            double e = v[a * 12 + b * 4 + c];
            acc = kind == 0 ? acc + e : kind == 1 ? fmax(acc, e) : fmin(acc, e);
          }
        w[b] = acc;
      }
      reduce1((ldmc_reduce_kind)kind, &x, INTS(0, 2), w, 3, "reduce {0,2}");
      /* all dims: a scalar; no dims: a copy */
      double all = kind == 0 ? 0 : v[0];
      for (int i = 0; i < 24; i++) all = kind == 0 ? all + v[i] : kind == 1 ? fmax(all, v[i]) : fmin(all, v[i]);
      reduce1((ldmc_reduce_kind)kind, &x, INTS(0, 1, 2), &all, 1, "reduce all");
      reduce1((ldmc_reduce_kind)kind, &x, INTS0, v, 24, "reduce none");
    }
    ldmc_tensor_release(&x);
    /* empty reductions give the identities */
    ldmc_tensor e = th_tensor(dt, SHAPE(2, 0), NULL);
    bool fl = ldmc_dtype_is_float(dt);
    double lo = fl ? -INFINITY : dt == LDMC_I32 ? (double)INT32_MIN : (double)INT64_MIN;
    double hi = fl ? INFINITY : dt == LDMC_I32 ? (double)INT32_MAX : (double)INT64_MAX;
    reduce1(LDMC_REDUCE_SUM, &e, INTS(1), VALS(0, 0), 2, "empty sum");
    reduce1(LDMC_REDUCE_MAX, &e, INTS(1), VALS(lo, lo), 2, "empty max");
    reduce1(LDMC_REDUCE_MIN, &e, INTS(1), VALS(hi, hi), 2, "empty min");
    ldmc_tensor_release(&e);
  }
  ldmc_tensor n = th_tensor(LDMC_F32, SHAPE(3), VALS(1, NAN, 3));
  reduce1(LDMC_REDUCE_MAX, &n, INTS(0), VALS(NAN), 1, "max NaN");
  reduce1(LDMC_REDUCE_MIN, &n, INTS(0), VALS(NAN), 1, "min NaN");
  ldmc_tensor_release(&n);
  /* i64 sums are exact beyond 2^53 */
  ldmc_tensor big = th_tensor(LDMC_I64, SHAPE(3), NULL), out;
  int64_t bv[3] = {INT64_C(1) << 53, 1, 1};
  memcpy(big.data, bv, sizeof bv);
  ldmc_attrs at = {0};
  at.dims = INTS(0);
  if (th_eval(LDMC_OP_REDUCE, &at, LDMC_I64, NULL, 1, &big, &out)) {
    int64_t r;
    memcpy(&r, out.data, 8);
    CHECK(r == (INT64_C(1) << 53) + 2);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&big);
}

static bool dot(const ldmc_tensor *l, const ldmc_tensor *r, ldmc_ints lb, ldmc_ints rb, ldmc_ints lc, ldmc_ints rc,
                ldmc_tensor *out) {
  ldmc_attrs at = {0};
  at.lhs_batch = lb;
  at.rhs_batch = rb;
  at.lhs_contract = lc;
  at.rhs_contract = rc;
  ldmc_tensor in[2] = {*l, *r};
  return th_eval(LDMC_OP_DOT_GENERAL, &at, l->dtype, NULL, 2, in, out);
}

static void test_dot_small(void) {
  for (int d = 0; d < NELEM(k_numeric); d++) {
    ldmc_dtype dt = k_numeric[d];
    ldmc_tensor a = th_tensor(dt, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    ldmc_tensor b = th_tensor(dt, SHAPE(3, 2), VALS(1, -1, 0, 2, -2, 1)), out;
    /* [[1,2,3],[4,5,6]] x [[1,-1],[0,2],[-2,1]] = [[-5, 6], [-8, 12]] */
    if (dot(&a, &b, INTS0, INTS0, INTS(1), INTS(0), &out)) {
      th_expect("matmul", &out, VALS(-5, 6, -8, 12), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    if (dot(&b, &a, INTS0, INTS0, INTS(1), INTS(0), &out)) {
      /* [[1,-1],[0,2],[-2,1]] x [[1,2,3],[4,5,6]] = [[-3,-3,-3],[8,10,12],[2,1,0]] */
      th_expect("matmul 3x3", &out, VALS(-3, -3, -3, 8, 10, 12, 2, 1, 0), 9, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor u = th_tensor(dt, SHAPE(3), VALS(1, 2, 3)), v = th_tensor(dt, SHAPE(3), VALS(4, -5, 6));
    if (dot(&u, &v, INTS0, INTS0, INTS(0), INTS(0), &out)) { /* inner product: rank 0 */
      CHECK(out.shape.rank == 0);
      th_expect("inner", &out, VALS(12), 1, 0, 0);
      ldmc_tensor_release(&out);
    }
    if (dot(&u, &v, INTS0, INTS0, INTS0, INTS0, &out)) { /* outer product */
      th_expect("outer", &out, VALS(4, -5, 6, 8, -10, 12, 12, -15, 18), 9, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor z1 = th_tensor(dt, SHAPE(2, 0), NULL), z2 = th_tensor(dt, SHAPE(0, 3), NULL);
    if (dot(&z1, &z2, INTS0, INTS0, INTS(1), INTS(0), &out)) { /* empty contraction: zeros */
      th_expect("empty contraction", &out, VALS(0, 0, 0, 0, 0, 0), 6, 0, 0);
      ldmc_tensor_release(&out);
    }
    th_release(1, &a), th_release(1, &b), th_release(1, &u), th_release(1, &v), th_release(1, &z1);
    th_release(1, &z2);
  }
  /* i64: exact products and sums beyond 2^53 */
  ldmc_tensor a = th_tensor(LDMC_I64, SHAPE(2), NULL), b = th_tensor(LDMC_I64, SHAPE(2), NULL), out;
  int64_t av[2] = {INT64_C(1) << 40, INT64_C(1) << 40}, bv[2] = {(INT64_C(1) << 20) + 1, 1};
  memcpy(a.data, av, 16);
  memcpy(b.data, bv, 16);
  if (dot(&a, &b, INTS0, INTS0, INTS(0), INTS(0), &out)) {
    int64_t r;
    memcpy(&r, out.data, 8);
    CHECK(r == (INT64_C(1) << 60) + (INT64_C(1) << 41));
    ldmc_tensor_release(&out);
  }
  th_release(1, &a), th_release(1, &b);
}

/* lhs [b=2, m=3, k1=2, k2=2], rhs [k2=2, b=2, k1=2, n=4]:
 * batch {0} x {1}, contracting {2,3} x {2,0}; result [b, m, n]. */
static void test_dot_general(void) {
  for (int d = 0; d < NELEM(k_numeric); d++) {
    ldmc_dtype dt = k_numeric[d];
    ldmc_tensor l = fill(dt, SHAPE(2, 3, 2, 2), 1), r = fill(dt, SHAPE(2, 2, 2, 4), 3), out;
    if (dot(&l, &r, INTS(0), INTS(1), INTS(2, 3), INTS(2, 0), &out)) {
      double want[24];
      for (int b = 0; b < 2; b++)
        for (int m = 0; m < 3; m++)
          for (int n = 0; n < 4; n++) {
            double acc = 0;
            for (int k1 = 0; k1 < 2; k1++)
              for (int k2 = 0; k2 < 2; k2++)
                acc += small(dt, ((b * 3 + m) * 2 + k1) * 2 + k2 + 1) * small(dt, ((k2 * 2 + b) * 2 + k1) * 4 + n + 3);
            want[(b * 3 + m) * 4 + n] = acc;
          }
      CHECK(out.shape.rank == 3 && out.shape.dims[0] == 2 && out.shape.dims[1] == 3 && out.shape.dims[2] == 4);
      th_expect("dot_general batch + 2 contracting", &out, want, 24, 0, 0);
      ldmc_tensor_release(&out);
    }
    th_release(1, &l), th_release(1, &r);
  }
  /* free dims interleaved: lhs [k=3, m=2, b=2], rhs [b=2, n=2, k=3] -> [b, m, n] */
  ldmc_tensor l = fill(LDMC_F32, SHAPE(3, 2, 2), 5), r = fill(LDMC_F32, SHAPE(2, 2, 3), 2), out;
  if (dot(&l, &r, INTS(2), INTS(0), INTS(0), INTS(2), &out)) {
    double want[8];
    for (int b = 0; b < 2; b++)
      for (int m = 0; m < 2; m++)
        for (int n = 0; n < 2; n++) {
          double acc = 0;
          for (int k = 0; k < 3; k++) acc += small(0, (k * 2 + m) * 2 + b + 5) * small(0, (b * 2 + n) * 3 + k + 2);
          want[(b * 2 + m) * 2 + n] = acc;
        }
    th_expect("dot_general interleaved", &out, want, 8, 0, 0);
    ldmc_tensor_release(&out);
  }
  th_release(1, &l), th_release(1, &r);
}

/* A product big enough to take the parallel path, against a naive loop. */
static void test_dot_large(void) {
  uint64_t seed = 12345;
  enum { M = 160, K = 192, N = 144 }; /* over 2^22 multiply-adds */
  ldmc_tensor a = th_random(LDMC_F32, SHAPE(M, K), &seed, -1, 1);
  ldmc_tensor b = th_random(LDMC_F32, SHAPE(K, N), &seed, -1, 1), out;
  if (dot(&a, &b, INTS0, INTS0, INTS(1), INTS(0), &out)) {
    double *want = malloc(M * N * sizeof *want);
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double acc = 0;
        for (int k = 0; k < K; k++) acc += ldmc_tensor_get(&a, i * K + k) * ldmc_tensor_get(&b, k * N + j);
        want[i * N + j] = acc;
      }
    th_expect("large matmul", &out, want, M * N, 0x1p-24, 1e-6); /* double sums: only the final rounding */
    free(want);
    ldmc_tensor t1, t3; /* the same bits for any thread count */
    omp_set_num_threads(1);
    bool ok = dot(&a, &b, INTS0, INTS0, INTS(1), INTS(0), &t1);
    omp_set_num_threads(3);
    ok = dot(&a, &b, INTS0, INTS0, INTS(1), INTS(0), &t3) && ok;
    omp_set_num_threads(omp_get_num_procs());
    if (ok) {
      CHECK(memcmp(t1.data, out.data, out.nbytes) == 0 && memcmp(t3.data, out.data, out.nbytes) == 0);
      ldmc_tensor_release(&t1), ldmc_tensor_release(&t3);
    }
    ldmc_tensor_release(&out);
  }
  th_release(1, &a), th_release(1, &b);
}

int main(void) {
  test_reduce();
  test_dot_small();
  test_dot_general();
  test_dot_large();
  return test_summary("test_interp_contract");
}
