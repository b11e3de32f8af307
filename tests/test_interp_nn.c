/* Interpreter composites (silu, gelu, softmax, group_norm, layer_norm,
 * attention, upsample_nearest, attention's backward ops) against values
 * worked out by hand (exact forms evaluated separately, to 16 digits),
 * naive loops written here, and (the backward ops) torch.autograd's values
 * and central finite differences of the attention op. */
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

/* attention_lse, attention_grad_q, attention_grad_kv. Hand case: q = I2, k
 * rows (1,0), (0,1), (1,1), v = (1, 2, 3), ct = (1, -1), scale 1 and 0.5:
 * lse = log(1 + 2 e^scale) for both rows; delta = rowsum(ct y) and the
 * gradients as torch.autograd gives them in float64 (dq flattened, then
 * rows (dk_j | dv_j)). */
static void test_attention_backward_hand(void) {
  static const double scales[2] = {1.0, 0.5}, lse[2] = {1.8619948040582512, 1.4580200879470335};
  static const double delta[2][2] = {{2.0, -2.266956394754555}, {2.0, -2.150955193571652}};
  static const double dq[2][4] = {{0.0, 0.4223187982515182, -0.11274070381830126, -0.19683739061491523},
                                  {0.0, 0.19182586559527537, -0.028957110672984454, -0.1339116442493063}};
  static const double dkv[2][9] = {{-0.4223187982515182, 0.19683739061491545, 0.26695639475455457, 0.0,
                                    0.11274070381830148, -0.26695639475455457, 0.4223187982515182, -0.3095780944332167,
                                    0.0},
                                   {-0.19182586559527537, 0.13391164424930638, 0.1509551935716521, 0.0,
                                    0.028957110672984534, -0.1509551935716521, 0.19182586559527537,
                                    -0.16286875492229083, 0.0}};
  for (int d = 0; d < NELEM(k_floats); d++) {
    ldmc_dtype dt = k_floats[d], cd = dt == LDMC_F64 ? LDMC_F64 : LDMC_F32;
    double rel = cd == LDMC_F64 ? 1e-14 : 1e-6, abs_tol = cd == LDMC_F64 ? 1e-15 : 2e-7;
    for (int s = 0; s < 2; s++) {
      ldmc_tensor in[6] = {th_tensor(dt, SHAPE(1, 2, 2), VALS(1, 0, 0, 1)),
                           th_tensor(dt, SHAPE(1, 3, 2), VALS(1, 0, 0, 1, 1, 1)),
                           th_tensor(dt, SHAPE(1, 3, 1), VALS(1, 2, 3)), th_tensor(dt, SHAPE(1, 2, 1), VALS(1, -1)),
                           th_tensor(cd, SHAPE(1, 2), VALS(lse[s], lse[s])),
                           th_tensor(cd, SHAPE(1, 2), VALS(delta[s][0], delta[s][1]))},
                  out;
      ldmc_attrs at = {0};
      at.scale = scales[s];
      if (th_eval(LDMC_OP_ATTENTION_LSE, &at, cd, NULL, 2, in, &out)) {
        CHECK(out.dtype == cd && out.shape.rank == 2 && out.shape.dims[1] == 2);
        th_expect("attention_lse", &out, VALS(lse[s], lse[s]), 2, rel, abs_tol);
        ldmc_tensor_release(&out);
      }
      if (th_eval(LDMC_OP_ATTENTION_GRAD_Q, &at, cd, NULL, 6, in, &out)) {
        CHECK(out.dtype == cd && out.shape.rank == 3 && out.shape.dims[1] == 2 && out.shape.dims[2] == 2);
        th_expect("attention_grad_q", &out, dq[s], 4, rel, abs_tol);
        ldmc_tensor_release(&out);
      }
      if (th_eval(LDMC_OP_ATTENTION_GRAD_KV, &at, cd, NULL, 6, in, &out)) {
        CHECK(out.dtype == cd && out.shape.rank == 3 && out.shape.dims[1] == 3 && out.shape.dims[2] == 3);
        th_expect("attention_grad_kv", &out, dkv[s], 9, rel, abs_tol);
        ldmc_tensor_release(&out);
      }
      th_release(6, in);
    }
  }
}

/* sum(ct * attention(q, k, v)) on the interpreter, in f64 */
static double attn_loss(const ldmc_tensor *qkv, const ldmc_tensor *ct, double scale) {
  ldmc_attrs at = {0};
  at.scale = scale;
  ldmc_tensor out;
  double s = 0;
  if (!th_eval(LDMC_OP_ATTENTION, &at, LDMC_F64, NULL, 3, qkv, &out)) return NAN;
  for (int64_t i = 0; i < th_numel(&out.shape); i++) s += ldmc_tensor_get(&out, i) * ldmc_tensor_get(ct, i);
  ldmc_tensor_release(&out);
  return s;
}

/* Random f64 case with two leading dims [2, 3], N=4, M=5, D=6, E=3, scale
 * 0.4: lse against a naive log-sum-exp, the gradients against central
 * differences of the attention op (h = 1e-5, error ~ h^2). */
static void test_attention_backward_random(void) {
  uint64_t seed = 33;
  const double scale = 0.4, h = 1e-5;
  ldmc_tensor in[6] = {th_random(LDMC_F64, SHAPE(2, 3, 4, 6), &seed, -1, 1),
                       th_random(LDMC_F64, SHAPE(2, 3, 5, 6), &seed, -1, 1),
                       th_random(LDMC_F64, SHAPE(2, 3, 5, 3), &seed, -1, 1),
                       th_random(LDMC_F64, SHAPE(2, 3, 4, 3), &seed, -1, 1)},
              y, out;
  ldmc_attrs at = {0};
  at.scale = scale;
  double lse[24], delta[24];
  for (int b = 0; b < 6; b++)
    for (int n = 0; n < 4; n++) {
      double l[5], mx = -1e300, s = 0;
      for (int m = 0; m < 5; m++) {
        l[m] = 0;
        for (int dd = 0; dd < 6; dd++)
          l[m] += ldmc_tensor_get(&in[0], (b * 4 + n) * 6 + dd) * ldmc_tensor_get(&in[1], (b * 5 + m) * 6 + dd);
        mx = fmax(mx, l[m] *= scale);
      }
      for (int m = 0; m < 5; m++) s += exp(l[m] - mx);
      lse[b * 4 + n] = mx + log(s);
    }
  if (!th_eval(LDMC_OP_ATTENTION_LSE, &at, LDMC_F64, NULL, 2, in, &in[4])) return;
  th_expect("attention_lse random", &in[4], lse, 24, 1e-14, 1e-15);
  if (!th_eval(LDMC_OP_ATTENTION, &at, LDMC_F64, NULL, 3, in, &y)) return;
  for (int i = 0; i < 24; i++) {
    delta[i] = 0;
    for (int e = 0; e < 3; e++) delta[i] += ldmc_tensor_get(&in[3], i * 3 + e) * ldmc_tensor_get(&y, i * 3 + e);
  }
  ldmc_tensor_release(&y);
  in[5] = th_tensor(LDMC_F64, SHAPE(2, 3, 4), delta);
  /* d loss / d x for x in q, k, v by central differences */
  double fd[3][180];
  int64_t cnt[3] = {144, 180, 90};
  for (int o = 0; o < 3; o++)
    for (int64_t i = 0; i < cnt[o]; i++) {
      double x0 = ldmc_tensor_get(&in[o], i);
      ldmc_tensor_set_elem(&in[o], i, x0 + h);
      double up = attn_loss(in, &in[3], scale);
      ldmc_tensor_set_elem(&in[o], i, x0 - h);
      double dn = attn_loss(in, &in[3], scale);
      ldmc_tensor_set_elem(&in[o], i, x0);
      fd[o][i] = (up - dn) / (2 * h);
    }
  if (th_eval(LDMC_OP_ATTENTION_GRAD_Q, &at, LDMC_F64, NULL, 6, in, &out)) {
    th_expect("attention_grad_q vs finite differences", &out, fd[0], 144, 1e-7, 1e-8);
    ldmc_tensor_release(&out);
  }
  double kv[6 * 5 * 9];
  for (int b = 0; b < 6; b++)
    for (int m = 0; m < 5; m++)
      for (int c = 0; c < 9; c++) kv[(b * 5 + m) * 9 + c] = c < 6 ? fd[1][(b * 5 + m) * 6 + c] : fd[2][(b * 5 + m) * 3 + c - 6];
  if (th_eval(LDMC_OP_ATTENTION_GRAD_KV, &at, LDMC_F64, NULL, 6, in, &out)) {
    th_expect("attention_grad_kv vs finite differences", &out, kv, 270, 1e-7, 1e-8);
    ldmc_tensor_release(&out);
  }
  th_release(6, in);
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
  test_attention_backward_hand();
  test_attention_backward_random();
  test_upsample();
  return test_summary("test_interp_nn");
}
