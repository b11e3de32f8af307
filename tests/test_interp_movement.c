/* Interpreter data movement: broadcast_in_dim, reshape, transpose, slice,
 * concatenate, pad, gather, scatter_add, for every dtype each allows.
 * Oracles: hand-worked examples and index formulas written out here. */
#include "interp_test_util.h"

/* A value every dtype holds exactly (pred: 0/1). */
static double val(ldmc_dtype dt, int64_t i) { return dt == LDMC_PRED ? (double)(i % 3 == 0) : (double)(i % 37) - 9; }

static ldmc_tensor ramp(ldmc_dtype dt, ldmc_shape s) {
  ldmc_tensor t = th_tensor(dt, s, NULL);
  for (int64_t i = 0; i < th_numel(&s); i++) ldmc_tensor_set_elem(&t, i, val(dt, i));
  return t;
}

static void test_broadcast(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    ldmc_tensor x = ramp(dt, SHAPE(3, 1)), out;
    ldmc_attrs at = {0};
    at.dims = INTS(1, 2);
    ldmc_shape s = SHAPE(2, 3, 4);
    if (th_eval(LDMC_OP_BROADCAST_IN_DIM, &at, dt, &s, 1, &x, &out)) {
      double want[24];
      for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++)
          for (int c = 0; c < 4; c++) want[(a * 3 + b) * 4 + c] = val(dt, b); /* out[a,b,c] = x[b,0] */
      th_expect("broadcast [3,1]->[2,3,4]", &out, want, 24, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&x);
    /* rank 0 -> [2,2] */
    ldmc_tensor sc = th_tensor(dt, SHAPE0, VALS(1));
    at.dims = INTS0;
    s = SHAPE(2, 2);
    if (th_eval(LDMC_OP_BROADCAST_IN_DIM, &at, dt, &s, 1, &sc, &out)) {
      th_expect("broadcast scalar", &out, VALS(1, 1, 1, 1), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&sc);
  }
  /* transposing broadcast: x[2,3] -> [3,2,1] is not allowed (dims increase), so
   * map x[2] to dim 1 of [3,2] and x[1,2] with its size-1 dim expanded */
  ldmc_tensor x = th_tensor(LDMC_F32, SHAPE(1, 2), VALS(5, 7)), out;
  ldmc_attrs at = {0};
  at.dims = INTS(0, 1);
  ldmc_shape s = SHAPE(3, 2);
  if (th_eval(LDMC_OP_BROADCAST_IN_DIM, &at, LDMC_F32, &s, 1, &x, &out)) {
    th_expect("broadcast [1,2]->[3,2]", &out, VALS(5, 7, 5, 7, 5, 7), 6, 0, 0);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&x);
}

static void test_reshape_transpose(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    ldmc_tensor x = ramp(dt, SHAPE(2, 3, 4)), out;
    ldmc_shape s = SHAPE(4, 6);
    double want[24];
    if (th_eval(LDMC_OP_RESHAPE, NULL, dt, &s, 1, &x, &out)) {
      for (int i = 0; i < 24; i++) want[i] = val(dt, i);
      th_expect("reshape", &out, want, 24, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_attrs at = {0};
    at.dims = INTS(2, 0, 1); /* out.dims[i] = in.dims[perm[i]]: out[a,b,c] = x[b,c,a] */
    if (th_eval(LDMC_OP_TRANSPOSE, &at, dt, NULL, 1, &x, &out)) {
      CHECK(out.shape.dims[0] == 4 && out.shape.dims[1] == 2 && out.shape.dims[2] == 3);
      for (int a = 0; a < 4; a++)
        for (int b = 0; b < 2; b++)
          for (int c = 0; c < 3; c++) want[(a * 2 + b) * 3 + c] = val(dt, (b * 3 + c) * 4 + a);
      th_expect("transpose (2,0,1)", &out, want, 24, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&x);
  }
  /* rank 8, reversed permutation, checked by decoding coordinates */
  ldmc_shape s8 = SHAPE(2, 1, 3, 1, 2, 2, 1, 2);
  ldmc_tensor x = ramp(LDMC_I64, s8), out;
  ldmc_attrs at = {0};
  at.dims = INTS(7, 6, 5, 4, 3, 2, 1, 0);
  if (th_eval(LDMC_OP_TRANSPOSE, &at, LDMC_I64, NULL, 1, &x, &out)) {
    int64_t n = th_numel(&s8);
    double *want = malloc((size_t)n * sizeof *want);
    for (int64_t o = 0; o < n; o++) {
      int64_t rem = o, c[8], src = 0;
      for (int d = 7; d >= 0; d--) { /* out dim d has size s8.dims[7 - d] */
        c[d] = rem % s8.dims[7 - d];
        rem /= s8.dims[7 - d];
      }
      for (int d = 0; d < 8; d++) src = src * s8.dims[d] + c[7 - d]; /* x index d = out coordinate 7 - d */
      want[o] = val(LDMC_I64, src);
    }
    th_expect("transpose rank 8", &out, want, n, 0, 0);
    free(want);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&x);
}

static void test_slice(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    ldmc_tensor x = ramp(dt, SHAPE(5, 6)), out;
    ldmc_attrs at = {0};
    at.start = INTS(1, 0);
    at.limit = INTS(5, 6);
    at.stride = INTS(2, 4); /* rows 1, 3; cols 0, 4 */
    if (th_eval(LDMC_OP_SLICE, &at, dt, NULL, 1, &x, &out)) {
      CHECK(out.shape.dims[0] == 2 && out.shape.dims[1] == 2);
      th_expect("strided slice", &out, VALS(val(dt, 6), val(dt, 10), val(dt, 18), val(dt, 22)), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    at.start = INTS(2, 3);
    at.limit = INTS(2, 5);
    at.stride = INTS(1, 1);
    if (th_eval(LDMC_OP_SLICE, &at, dt, NULL, 1, &x, &out)) {
      CHECK(out.shape.dims[0] == 0 && out.shape.dims[1] == 2 && out.nbytes == 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&x);
  }
}

static void test_concatenate(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    bool p = dt == LDMC_PRED;
    ldmc_tensor in[3] = {th_tensor(dt, SHAPE(2, 1), p ? VALS(1, 0) : VALS(1, 2)),
                         th_tensor(dt, SHAPE(2, 2), p ? VALS(0, 1, 1, 1) : VALS(3, 4, 5, 6)),
                         th_tensor(dt, SHAPE(2, 0), NULL)},
                out;
    ldmc_attrs at = {0};
    at.axis = 1;
    if (th_eval(LDMC_OP_CONCATENATE, &at, dt, NULL, 3, in, &out)) {
      th_expect("concatenate axis 1", &out, p ? VALS(1, 0, 1, 0, 1, 1) : VALS(1, 3, 4, 2, 5, 6), 6, 0, 0);
      ldmc_tensor_release(&out);
    }
    at.axis = 0;
    if (th_eval(LDMC_OP_CONCATENATE, &at, dt, NULL, 1, &in[1], &out)) { /* one operand: a copy */
      th_expect("concatenate one", &out, p ? VALS(0, 1, 1, 1) : VALS(3, 4, 5, 6), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    th_release(3, in);
  }
}

static void pad1(ldmc_dtype dt, ldmc_shape xs, const double *xv, double pv, ldmc_ints lo, ldmc_ints hi, ldmc_ints in,
                 const double *want, int64_t n, const char *label) {
  ldmc_tensor t[2] = {th_tensor(dt, xs, xv), th_tensor(dt, SHAPE0, &pv)}, out;
  ldmc_attrs at = {0};
  at.low = lo;
  at.high = hi;
  at.interior = in;
  if (th_eval(LDMC_OP_PAD, &at, dt, NULL, 2, t, &out)) {
    th_expect(label, &out, want, n, 0, 0);
    ldmc_tensor_release(&out);
  }
  th_release(2, t);
}

static void test_pad(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    if (dt == LDMC_PRED) {
      pad1(dt, SHAPE(3), VALS(1, 0, 1), 0, INTS(1), INTS(1), INTS(1), VALS(0, 1, 0, 0, 0, 1, 0), 7, "pad pred");
      continue;
    }
    pad1(dt, SHAPE(3), VALS(1, 2, 3), 0, INTS(1), INTS(2), INTS(1), VALS(0, 1, 0, 2, 0, 3, 0, 0), 8, "pad interior");
    pad1(dt, SHAPE(3), VALS(1, 2, 3), 7, INTS(-1), INTS(-1), INTS(1), VALS(7, 2, 7), 3, "pad negative+interior");
    pad1(dt, SHAPE(3), VALS(1, 2, 3), 7, INTS(-2), INTS(1), INTS(0), VALS(3, 7), 2, "pad crop low");
    pad1(dt, SHAPE(3), VALS(1, 2, 3), 7, INTS(-3), INTS(0), INTS(0), VALS(0), 0, "pad crop all");
    pad1(dt, SHAPE(2, 2), VALS(1, 2, 3, 4), 9, INTS(1, -1), INTS(0, 1), INTS(1, 0), VALS(9, 9, 2, 9, 9, 9, 4, 9), 8,
         "pad 2d");
    pad1(dt, SHAPE(0), VALS(0), 5, INTS(1), INTS(1), INTS(3), VALS(5, 5), 2, "pad empty");
    pad1(dt, SHAPE0, VALS(4), 5, INTS0, INTS0, INTS0, VALS(4), 1, "pad rank 0");
  }
}

static void test_gather(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    bool p = dt == LDMC_PRED;
    ldmc_tensor x = th_tensor(dt, SHAPE(3, 2), p ? VALS(1, 0, 0, 0, 1, 1) : VALS(1, 2, 3, 4, 5, 6)), out;
    ldmc_attrs at = {0};
    /* axis 0, i32 indices [2,2] with clamping (-1 -> 0, 7 -> 2) */
    ldmc_tensor in0[2] = {x, th_tensor(LDMC_I32, SHAPE(2, 2), VALS(2, 0, -1, 7))};
    if (th_eval(LDMC_OP_GATHER, &at, dt, NULL, 2, in0, &out)) {
      CHECK(out.shape.rank == 3 && out.shape.dims[0] == 2 && out.shape.dims[1] == 2 && out.shape.dims[2] == 2);
      th_expect("gather axis 0", &out, p ? VALS(1, 1, 1, 0, 1, 0, 1, 1) : VALS(5, 6, 1, 2, 1, 2, 5, 6), 8, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&in0[1]);
    /* axis 1, i64 indices [3] */
    at.axis = 1;
    ldmc_tensor in1[2] = {x, th_tensor(LDMC_I64, SHAPE(3), VALS(1, 1, 0))};
    if (th_eval(LDMC_OP_GATHER, &at, dt, NULL, 2, in1, &out)) {
      th_expect("gather axis 1", &out, p ? VALS(0, 0, 1, 0, 0, 0, 1, 1, 1) : VALS(2, 2, 1, 4, 4, 3, 6, 6, 5), 9, 0,
                0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&in1[1]);
    /* rank-0 index drops the axis */
    at.axis = 0;
    ldmc_tensor in2[2] = {x, th_tensor(LDMC_I32, SHAPE0, VALS(1))};
    if (th_eval(LDMC_OP_GATHER, &at, dt, NULL, 2, in2, &out)) {
      CHECK(out.shape.rank == 1);
      th_expect("gather scalar index", &out, p ? VALS(0, 0) : VALS(3, 4), 2, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&in2[1]);
    ldmc_tensor_release(&x);
  }
}

static void test_scatter_add(void) {
  for (int d = 0; d < NELEM(k_numeric); d++) {
    ldmc_dtype dt = k_numeric[d];
    ldmc_tensor in[3] = {th_tensor(dt, SHAPE(4), VALS(1, 2, 3, 4)), th_tensor(LDMC_I32, SHAPE(4), VALS(1, 1, -1, 4)),
                         th_tensor(dt, SHAPE(4), VALS(10, 20, 30, 40))},
                out;
    ldmc_attrs at = {0};
    if (th_eval(LDMC_OP_SCATTER_ADD, &at, dt, NULL, 3, in, &out)) {
      th_expect("scatter_add dup + out of range", &out, VALS(1, 32, 3, 4), 4, 0, 0);
      ldmc_tensor_release(&out);
    }
    th_release(3, in);
    ldmc_tensor in2[3] = {th_tensor(dt, SHAPE(2, 3), NULL), th_tensor(LDMC_I64, SHAPE(2), VALS(2, 0)),
                          th_tensor(dt, SHAPE(2, 2), VALS(1, 2, 3, 4))};
    at.axis = 1;
    if (th_eval(LDMC_OP_SCATTER_ADD, &at, dt, NULL, 3, in2, &out)) {
      th_expect("scatter_add axis 1", &out, VALS(2, 0, 1, 4, 0, 3), 6, 0, 0);
      ldmc_tensor_release(&out);
    }
    th_release(3, in2);
  }
  /* duplicates accumulate exactly and round once: 1 + 2^-8 + 2^-30 -> 1 + 2^-7 in bf16 */
  ldmc_tensor in[3] = {th_tensor(LDMC_BF16, SHAPE(1), VALS(1)), th_tensor(LDMC_I32, SHAPE(2), VALS(0, 0)),
                       th_tensor(LDMC_BF16, SHAPE(2), VALS(0x1p-8, 0x1p-30))},
              out;
  ldmc_attrs at = {0};
  if (th_eval(LDMC_OP_SCATTER_ADD, &at, LDMC_BF16, NULL, 3, in, &out)) {
    th_expect("scatter_add single rounding", &out, VALS(1 + 0x1p-7), 1, 0, 0);
    ldmc_tensor_release(&out);
  }
  th_release(3, in);
}

int main(void) {
  test_broadcast();
  test_reshape_transpose();
  test_slice();
  test_concatenate();
  test_pad();
  test_gather();
  test_scatter_add();
  return test_summary("test_interp_movement");
}
