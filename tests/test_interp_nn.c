/* Interpreter composites (silu, gelu, softmax, group_norm, layer_norm,
 * attention, upsample_nearest) against values worked out by hand (exact
 * forms evaluated separately, to 16 digits) and naive loops written here. */
#include "interp_test_util.h"

static void unary_case(ldmc_op op, const double *x, const double *want, int n) {
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_tensor t = th_tensor(k_floats[d], SHAPE(n), x), out;
    if (th_eval(op, NULL, k_floats[d], NULL, 1, &t, &out)) {
      th_expect_dt(ldmc_op_name(op), &out, want, n);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&t);
  }
}

static void test_activations(void) {
  /* silu(x) = x / (1 + e^-x); gelu(x) = x/2 (1 + erf(x / sqrt 2)) */
  unary_case(LDMC_OP_SILU, VALS(0, 1, -1, 2), VALS(0, 0.7310585786300049, -0.2689414213699951, 1.7615941559557646), 4);
  unary_case(LDMC_OP_GELU, VALS(0, 1, -1, 2), VALS(0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416),
             4);
}

static void test_softmax(void) {
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_dtype dt = k_floats[d];
    ldmc_attrs at = {0};
    ldmc_tensor out;
    /* softmax(0, 1, 2) = e^i / (1 + e + e^2), along the last axis of [2,3] */
    ldmc_tensor x = th_tensor(dt, SHAPE(2, 3), VALS(0, 1, 2, 1000, 1000, 1000));
    at.axis = 1;
    if (th_eval(LDMC_OP_SOFTMAX, &at, dt, NULL, 1, &x, &out)) {
      th_expect_dt("softmax axis 1", &out,
                   VALS(0.09003057317038046, 0.24472847105479764, 0.6652409557748219, 1. / 3, 1. / 3, 1. / 3), 6);
      ldmc_tensor_release(&out);
    }
    /* along axis 0: columns (0, 1000), (1, 1000), (2, 1000) -> e^-1000 underflows to 0 */
    at.axis = 0;
    if (th_eval(LDMC_OP_SOFTMAX, &at, dt, NULL, 1, &x, &out)) {
      th_expect_dt("softmax axis 0", &out, VALS(0, 0, 0, 1, 1, 1), 6);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&x);
  }
}

static void test_group_norm(void) {
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_dtype dt = k_floats[d];
    /* x[1, 4, 2], 2 groups: group 0 = {1,2,3,4} (mean 2.5, var 1.25), group 1 = {10,10,10,14} (mean 11, var 3) */
    ldmc_tensor in[3] = {th_tensor(dt, SHAPE(1, 4, 2), VALS(1, 2, 3, 4, 10, 10, 10, 14)),
                         th_tensor(dt, SHAPE(4), VALS(1, 2, 1, 1)), th_tensor(dt, SHAPE(4), VALS(0, 0, 1, -1))},
                out;
    ldmc_attrs at = {0};
    at.groups = 2;
    at.eps = 0;
    if (th_eval(LDMC_OP_GROUP_NORM, &at, dt, NULL, 3, in, &out)) {
      th_expect_dt("group_norm", &out,
                   VALS(-1.3416407864998738, -0.4472135954999579, 0.8944271909999159, 2.6832815729997477,
                        0.42264973081037416, 0.42264973081037416, -1.5773502691896257, 0.7320508075688774),
                   8);
      ldmc_tensor_release(&out);
    }
    th_release(3, in);
    /* a constant group normalizes to 0 (eps keeps it finite): only beta remains */
    ldmc_tensor c[3] = {th_tensor(dt, SHAPE(2, 2, 1, 1), VALS(5, 5, -3, -3)), th_tensor(dt, SHAPE(2), VALS(7, 7)),
                        th_tensor(dt, SHAPE(2), VALS(0.5, -2))};
    at.groups = 1;
    at.eps = 1e-5;
    if (th_eval(LDMC_OP_GROUP_NORM, &at, dt, NULL, 3, c, &out)) {
      th_expect_dt("group_norm constant", &out, VALS(0.5, -2, 0.5, -2), 4);
      ldmc_tensor_release(&out);
    }
    th_release(3, c);
  }
  /* random [2, 6, 3, 4] with 3 groups and eps 1e-3 against a naive loop */
  uint64_t seed = 11;
  ldmc_tensor in[3] = {th_random(LDMC_F32, SHAPE(2, 6, 3, 4), &seed, -2, 3), th_random(LDMC_F32, SHAPE(6), &seed, 0, 2),
                       th_random(LDMC_F32, SHAPE(6), &seed, -1, 1)},
              out;
  double want[144];
  for (int n = 0; n < 2; n++)
    for (int g = 0; g < 3; g++) {
      double s = 0, ss = 0;
      for (int i = 0; i < 24; i++) s += ldmc_tensor_get(&in[0], n * 72 + g * 24 + i);
      double mean = s / 24;
      for (int i = 0; i < 24; i++) ss += pow(ldmc_tensor_get(&in[0], n * 72 + g * 24 + i) - mean, 2);
      for (int i = 0; i < 24; i++) {
        int ch = g * 2 + i / 12;
        want[n * 72 + g * 24 + i] = (ldmc_tensor_get(&in[0], n * 72 + g * 24 + i) - mean) / sqrt(ss / 24 + 1e-3) *
                                        ldmc_tensor_get(&in[1], ch) + ldmc_tensor_get(&in[2], ch);
      }
    }
  ldmc_attrs at = {0};
  at.groups = 3;
  at.eps = 1e-3;
  if (th_eval(LDMC_OP_GROUP_NORM, &at, LDMC_F32, NULL, 3, in, &out)) {
    th_expect("group_norm random", &out, want, 144, 0x1p-23, 1e-12);
    ldmc_tensor_release(&out);
  }
  th_release(3, in);
}

static void test_layer_norm(void) {
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_dtype dt = k_floats[d];
    /* rows {1,2,3} (mean 2, var 2/3) and {0,0,6} (mean 2, var 8); gamma {1,1,2}, beta {0,1,0} */
    ldmc_tensor in[3] = {th_tensor(dt, SHAPE(2, 3), VALS(1, 2, 3, 0, 0, 6)), th_tensor(dt, SHAPE(3), VALS(1, 1, 2)),
                         th_tensor(dt, SHAPE(3), VALS(0, 1, 0))},
                out;
    ldmc_attrs at = {0};
    at.axis = 1;
    if (th_eval(LDMC_OP_LAYER_NORM, &at, dt, NULL, 3, in, &out)) {
      th_expect_dt("layer_norm", &out,
                   VALS(-1.224744871391589, 1, 2.449489742783178, -0.7071067811865475, 0.29289321881345254,
                        2.82842712474619),
                   6);
      ldmc_tensor_release(&out);
    }
    th_release(3, in);
    /* axis 0: statistics over everything, gamma/beta of the full shape */
    ldmc_tensor all[3] = {th_tensor(dt, SHAPE(2, 2), VALS(1, 2, 3, 0)), th_tensor(dt, SHAPE(2, 2), VALS(1, 1, 1, 2)),
                          th_tensor(dt, SHAPE(2, 2), VALS(0, 0, 1, 0))};
    at.axis = 0;
    /* mean 1.5, var (0.25 + 0.25 + 2.25 + 2.25) / 4 = 1.25 */
    if (th_eval(LDMC_OP_LAYER_NORM, &at, dt, NULL, 3, all, &out)) {
      th_expect_dt("layer_norm axis 0", &out,
                   VALS(-0.4472135954999579, 0.4472135954999579, 1 + 1.3416407864998738, -2 * 1.3416407864998738), 4);
      ldmc_tensor_release(&out);
    }
    th_release(3, all);
  }
}

static void test_attention(void) {
  /* q = I2, k rows (1,0), (0,1), (1,1), v = (1, 2, 3):
   * row 0 logits (1,0,1) -> (e + 2 + 3e) / (2e + 1) = 2; row 1 logits (0,1,1) -> (1 + 5e) / (1 + 2e) */
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_dtype dt = k_floats[d];
    ldmc_tensor in[3] = {th_tensor(dt, SHAPE(1, 2, 2), VALS(1, 0, 0, 1)),
                         th_tensor(dt, SHAPE(1, 3, 2), VALS(1, 0, 0, 1, 1, 1)), th_tensor(dt, SHAPE(1, 3, 1), VALS(1, 2, 3))},
                out;
    ldmc_attrs at = {0};
    at.scale = 1;
    if (th_eval(LDMC_OP_ATTENTION, &at, dt, NULL, 3, in, &out)) {
      CHECK(out.shape.rank == 3 && out.shape.dims[1] == 2 && out.shape.dims[2] == 1);
      th_expect_dt("attention", &out, VALS(2, 2.2669563947545543), 2);
      ldmc_tensor_release(&out);
    }
    at.scale = 0.5; /* logits halved: row 1 -> (1 + 5 e^0.5) / (1 + 2 e^0.5) */
    if (th_eval(LDMC_OP_ATTENTION, &at, dt, NULL, 3, in, &out)) {
      th_expect_dt("attention scale", &out, VALS(2, 2.150955193571652), 2);
      ldmc_tensor_release(&out);
    }
    th_release(3, in);
  }
  /* random, two leading dims [2, 3], N=4, M=5, D=6, E=3, against a naive loop */
  uint64_t seed = 21;
  ldmc_tensor in[3] = {th_random(LDMC_F32, SHAPE(2, 3, 4, 6), &seed, -1, 1),
                       th_random(LDMC_F32, SHAPE(2, 3, 5, 6), &seed, -1, 1),
                       th_random(LDMC_F32, SHAPE(2, 3, 5, 3), &seed, -1, 1)},
              out;
  double want[2 * 3 * 4 * 3], scale = 0.4;
  for (int b = 0; b < 6; b++)
    for (int n = 0; n < 4; n++) {
      double l[5], mx = -1e300, s = 0;
      for (int m = 0; m < 5; m++) {
        l[m] = 0;
        for (int dd = 0; dd < 6; dd++)
          l[m] += ldmc_tensor_get(&in[0], (b * 4 + n) * 6 + dd) * ldmc_tensor_get(&in[1], (b * 5 + m) * 6 + dd);
        l[m] *= scale;
        mx = fmax(mx, l[m]);
      }
      for (int m = 0; m < 5; m++) s += l[m] = exp(l[m] - mx);
      for (int e = 0; e < 3; e++) {
        double acc = 0;
        for (int m = 0; m < 5; m++) acc += l[m] / s * ldmc_tensor_get(&in[2], (b * 5 + m) * 3 + e);
        want[(b * 4 + n) * 3 + e] = acc;
      }
    }
  ldmc_attrs at = {0};
  at.scale = scale;
  if (th_eval(LDMC_OP_ATTENTION, &at, LDMC_F32, NULL, 3, in, &out)) {
    th_expect("attention random", &out, want, 72, 0x1p-23, 1e-12);
    ldmc_tensor_release(&out);
  }
  th_release(3, in);
}

static void test_upsample(void) {
  for (int d = 0; d < NELEM(k_all); d++) {
    ldmc_dtype dt = k_all[d];
    bool p = dt == LDMC_PRED;
    ldmc_tensor x = th_tensor(dt, SHAPE(1, 1, 2, 2), p ? VALS(1, 0, 0, 1) : VALS(1, 2, 3, 4)), out;
    ldmc_attrs at = {0};
    at.factor = 2;
    if (th_eval(LDMC_OP_UPSAMPLE_NEAREST, &at, dt, NULL, 1, &x, &out)) {
      CHECK(out.shape.dims[2] == 4 && out.shape.dims[3] == 4);
      th_expect("upsample 2x", &out,
                p ? VALS(1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1)
                  : VALS(1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4),
                16, 0, 0);
      ldmc_tensor_release(&out);
    }
    ldmc_tensor_release(&x);
  }
  /* 1-D spatial, two channels, factor 3 */
  ldmc_tensor x = th_tensor(LDMC_I32, SHAPE(1, 2, 2), VALS(1, 2, 3, 4)), out;
  ldmc_attrs at = {0};
  at.factor = 3;
  if (th_eval(LDMC_OP_UPSAMPLE_NEAREST, &at, LDMC_I32, NULL, 1, &x, &out)) {
    th_expect("upsample 1-D x3", &out, VALS(1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4), 12, 0, 0);
    ldmc_tensor_release(&out);
  }
  ldmc_tensor_release(&x);
}

int main(void) {
  test_activations();
  test_softmax();
  test_group_norm();
  test_layer_norm();
  test_attention();
  test_upsample();
  return test_summary("test_interp_nn");
}
