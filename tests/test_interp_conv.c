/* Interpreter convolution against a naive oracle written here a different
 * way: the input is materialized lhs-dilated and padded (by scattering), the
 * kernel rhs-dilated, then a plain strided correlation. Covers stride 2,
 * dilation 2, groups 2, depthwise, padding (also negative), lhs_dilation
 * (checked as a transposed convolution against its scatter formula), 1-D and
 * 3-D, non-canonical layouts, and the half dtypes. */
#include <omp.h>

#include "interp_test_util.h"

typedef struct conv_case {
  int ns;                       /* spatial dims, 1..3 */
  int64_t N, C, O, groups;
  int64_t I[3], K[3];
  int64_t stride[3], lo[3], hi[3], ld[3], rd[3];
} conv_case;

/* Oracle over canonical [N,C,I...] / [O,C/groups,K...]; writes y [N,O,Y...], returns Y sizes. */
static double *naive_conv(const conv_case *c, const double *x, const double *w, int64_t Y[3]) {
  int64_t I[3] = {1, 1, 1}, K[3] = {1, 1, 1}, st[3] = {1, 1, 1}, lo[3] = {0}, hi[3] = {0}, ld[3] = {1, 1, 1},
          rd[3] = {1, 1, 1}, P[3], Kd[3];
  for (int j = 0; j < c->ns; j++) {
    int o = 3 - c->ns + j; /* right-align into 3 dims */
    I[o] = c->I[j], K[o] = c->K[j], st[o] = c->stride[j], lo[o] = c->lo[j], hi[o] = c->hi[j];
    ld[o] = c->ld[j], rd[o] = c->rd[j];
  }
  int64_t Itot = I[0] * I[1] * I[2], Ktot = K[0] * K[1] * K[2], Ptot = 1, Kdtot = 1, Ytot = 1;
  for (int j = 0; j < 3; j++) {
    P[j] = (I[j] - 1) * ld[j] + 1 + lo[j] + hi[j];
    Kd[j] = (K[j] - 1) * rd[j] + 1;
    Y[j] = P[j] >= Kd[j] ? (P[j] - Kd[j]) / st[j] + 1 : 0;
    Ptot *= P[j] > 0 ? P[j] : 0, Kdtot *= Kd[j], Ytot *= Y[j];
  }
  int64_t Cg = c->C / c->groups, Og = c->O / c->groups;
  double *y = calloc((size_t)(c->N * c->O * Ytot + 1), sizeof *y);
  double *pad = calloc((size_t)(Ptot + 1), sizeof *pad), *kd = calloc((size_t)(Kdtot + 1), sizeof *kd);
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->O; o++)
      for (int64_t ci = 0; ci < Cg; ci++) {
        int64_t ch = (o / Og) * Cg + ci;
        /* scatter x[n, ch] into the dilated, padded plane: element i lands at i*ld + lo */
        memset(pad, 0, (size_t)(Ptot + 1) * sizeof *pad);
        for (int64_t a = 0; a < I[0]; a++)
          for (int64_t b = 0; b < I[1]; b++)
            for (int64_t e = 0; e < I[2]; e++) {
              int64_t p0 = a * ld[0] + lo[0], p1 = b * ld[1] + lo[1], p2 = e * ld[2] + lo[2];
              if (p0 < 0 || p1 < 0 || p2 < 0 || p0 >= P[0] || p1 >= P[1] || p2 >= P[2]) continue;
              pad[(p0 * P[1] + p1) * P[2] + p2] = x[((n * c->C + ch) * I[0] + a) * I[1] * I[2] + b * I[2] + e];
            }
        memset(kd, 0, (size_t)(Kdtot + 1) * sizeof *kd);
        for (int64_t a = 0; a < K[0]; a++)
          for (int64_t b = 0; b < K[1]; b++)
            for (int64_t e = 0; e < K[2]; e++)
              kd[(a * rd[0] * Kd[1] + b * rd[1]) * Kd[2] + e * rd[2]] =
                  w[(o * Cg + ci) * Ktot + (a * K[1] + b) * K[2] + e];
        for (int64_t y0 = 0; y0 < Y[0]; y0++)
          for (int64_t y1 = 0; y1 < Y[1]; y1++)
            for (int64_t y2 = 0; y2 < Y[2]; y2++) {
              double acc = 0;
              for (int64_t t0 = 0; t0 < Kd[0]; t0++)
                for (int64_t t1 = 0; t1 < Kd[1]; t1++)
                  for (int64_t t2 = 0; t2 < Kd[2]; t2++)
                    acc += pad[((y0 * st[0] + t0) * P[1] + y1 * st[1] + t1) * P[2] + y2 * st[2] + t2] *
                           kd[(t0 * Kd[1] + t1) * Kd[2] + t2];
              y[(n * c->O + o) * Ytot + (y0 * Y[1] + y1) * Y[2] + y2] += acc;
            }
      }
  (void)Itot;
  free(pad);
  free(kd);
  int64_t Yc[3];
  memcpy(Yc, Y, sizeof Yc);
  for (int j = 0; j < c->ns; j++) Y[j] = Yc[3 - c->ns + j]; /* back to the case's own order */
  return y;
}

static ldmc_attrs conv_attrs(const conv_case *c) {
  ldmc_attrs at = {0};
  int r = c->ns + 2;
  at.input_dims.n = at.kernel_dims.n = at.output_dims.n = r;
  for (int i = 0; i < r; i++) at.input_dims.v[i] = at.kernel_dims.v[i] = at.output_dims.v[i] = i;
  at.window_stride.n = at.pad_low.n = at.pad_high.n = at.lhs_dilation.n = at.rhs_dilation.n = c->ns;
  for (int j = 0; j < c->ns; j++) {
    at.window_stride.v[j] = c->stride[j];
    at.pad_low.v[j] = c->lo[j];
    at.pad_high.v[j] = c->hi[j];
    at.lhs_dilation.v[j] = c->ld[j];
    at.rhs_dilation.v[j] = c->rd[j];
  }
  at.groups = c->groups;
  return at;
}

static void run_case(const char *label, const conv_case *c, ldmc_dtype dt, uint64_t seed) {
  ldmc_shape xs = {.rank = c->ns + 2, .dims = {c->N, c->C}}, ws = {.rank = c->ns + 2, .dims = {c->O, c->C / c->groups}};
  for (int j = 0; j < c->ns; j++) xs.dims[2 + j] = c->I[j], ws.dims[2 + j] = c->K[j];
  ldmc_tensor in[2] = {th_random(dt, xs, &seed, -1, 1), th_random(dt, ws, &seed, -1, 1)}, out;
  int64_t nx = th_numel(&xs), nw = th_numel(&ws), Y[3];
  double *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
  for (int64_t i = 0; i < nx; i++) x[i] = ldmc_tensor_get(&in[0], i);
  for (int64_t i = 0; i < nw; i++) w[i] = ldmc_tensor_get(&in[1], i);
  double *want = naive_conv(c, x, w, Y);
  ldmc_attrs at = conv_attrs(c);
  if (th_eval(LDMC_OP_CONVOLUTION, &at, dt, NULL, 2, in, &out)) {
    int64_t ny = c->N * c->O;
    for (int j = 0; j < c->ns; j++) {
      CHECK_MSG(out.shape.dims[2 + j] == Y[j], "%s: spatial dim %d is %lld, oracle says %lld", label, j,
                (long long)out.shape.dims[2 + j], (long long)Y[j]);
      ny *= Y[j];
    }
    th_expect(label, &out, want, ny, th_eps(dt) * 1.01, 1e-12);
    ldmc_tensor_release(&out);
  }
  free(x), free(w), free(want);
  th_release(2, in);
}

#define C2(...) ((conv_case){__VA_ARGS__})

static void test_cases(void) {
  /* ns, N, C, O, groups, I, K, stride, lo, hi, ld, rd */
  struct { const char *name; conv_case c; } cases[] = {
      {"3x3 pad 1", C2(2, 2, 3, 4, 1, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1})},
      {"stride 2", C2(2, 1, 3, 2, 1, {7, 6}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, {1, 1})},
      {"stride 2 no pad, uneven", C2(2, 1, 2, 2, 1, {6, 5}, {2, 3}, {2, 2}, {0, 0}, {0, 0}, {1, 1}, {1, 1})},
      {"rhs dilation 2", C2(2, 1, 2, 3, 1, {7, 7}, {3, 3}, {1, 1}, {2, 2}, {2, 2}, {1, 1}, {2, 2})},
      {"groups 2", C2(2, 2, 4, 6, 2, {4, 4}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1})},
      {"depthwise", C2(2, 1, 4, 4, 4, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1})},
      {"depthwise x2", C2(2, 1, 3, 6, 3, {5, 4}, {3, 3}, {2, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1})},
      {"asymmetric pad", C2(2, 1, 2, 2, 1, {4, 5}, {3, 2}, {1, 1}, {2, 0}, {0, 3}, {1, 1}, {1, 1})},
      {"negative pad", C2(2, 1, 2, 2, 1, {6, 6}, {3, 3}, {1, 1}, {-1, 0}, {1, -2}, {1, 1}, {1, 1})},
      {"lhs dilation 2", C2(2, 1, 2, 3, 1, {3, 4}, {3, 3}, {1, 1}, {2, 1}, {2, 1}, {2, 2}, {1, 1})},
      {"all at once", C2(2, 2, 4, 4, 2, {5, 6}, {2, 3}, {2, 1}, {1, -1}, {2, 1}, {2, 1}, {2, 2})},
      {"1x1", C2(2, 2, 5, 3, 1, {3, 3}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, {1, 1})},
      {"1-D", C2(1, 2, 3, 2, 1, {9}, {3}, {2}, {1}, {2}, {1}, {2})},
      {"3-D", C2(3, 1, 2, 2, 1, {3, 4, 3}, {2, 3, 2}, {1, 2, 1}, {1, 1, 0}, {0, 1, 1}, {1, 1, 2}, {1, 1, 1})},
      {"empty output", C2(2, 1, 1, 1, 1, {2, 2}, {3, 3}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, {1, 1})},
      {"zero batch", C2(2, 0, 2, 2, 1, {3, 3}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1})},
  };
  for (int i = 0; i < NELEM(cases); i++)
    for (int d = 0; d < NELEM(k_floats); d++) run_case(cases[i].name, &cases[i].c, k_floats[d], 77 + i);
  /* big enough for the parallel path (over 2^22 multiply-adds per batch element) */
  conv_case big = C2(2, 2, 64, 64, 1, {12, 12}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1});
  run_case("parallel", &big, LDMC_F32, 5);
}

/* Transposed convolution (PyTorch conv_transpose2d, stride s, padding p):
 *   out[n, o, Y] += x[n, i, I] * wt[i, o, k]   for Y = I*s + k - p
 * equals a convolution with lhs_dilation s, padding K-1-p on both sides, and
 * the kernel flipped spatially with its feature dims swapped. */
static void test_transposed(void) {
  const int64_t N = 1, Ci = 2, Co = 3, H = 3, W = 4, K = 3, s = 2, p = 1;
  const int64_t OH = (H - 1) * s - 2 * p + K, OW = (W - 1) * s - 2 * p + K;
  uint64_t seed = 99;
  ldmc_tensor x = th_random(LDMC_F32, SHAPE(N, Ci, H, W), &seed, -1, 1);
  ldmc_tensor wt = th_random(LDMC_F32, SHAPE(Ci, Co, K, K), &seed, -1, 1); /* PyTorch layout [in, out, kh, kw] */
  ldmc_tensor w = th_tensor(LDMC_F32, SHAPE(Co, Ci, K, K), NULL);
  for (int64_t o = 0; o < Co; o++)
    for (int64_t i = 0; i < Ci; i++)
      for (int64_t a = 0; a < K; a++)
        for (int64_t b = 0; b < K; b++)
          ldmc_tensor_set_elem(&w, ((o * Ci + i) * K + a) * K + b,
                               ldmc_tensor_get(&wt, ((i * Co + o) * K + (K - 1 - a)) * K + (K - 1 - b)));
  double *want = calloc((size_t)(N * Co * OH * OW), sizeof *want);
  for (int64_t i = 0; i < Ci; i++)
    for (int64_t o = 0; o < Co; o++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t ww = 0; ww < W; ww++)
          for (int64_t a = 0; a < K; a++)
            for (int64_t b = 0; b < K; b++) {
              int64_t y = h * s + a - p, z = ww * s + b - p;
              if (y < 0 || z < 0 || y >= OH || z >= OW) continue;
              want[(o * OH + y) * OW + z] +=
                  ldmc_tensor_get(&x, (i * H + h) * W + ww) * ldmc_tensor_get(&wt, ((i * Co + o) * K + a) * K + b);
            }
  conv_case c = C2(2, N, Ci, Co, 1, {H, W}, {K, K}, {1, 1}, {K - 1 - p, K - 1 - p}, {K - 1 - p, K - 1 - p}, {s, s},
                   {1, 1});
  ldmc_attrs at = conv_attrs(&c);
  ldmc_tensor in[2] = {x, w}, out;
  if (th_eval(LDMC_OP_CONVOLUTION, &at, LDMC_F32, NULL, 2, in, &out)) {
    CHECK(out.shape.dims[2] == OH && out.shape.dims[3] == OW);
    th_expect("transposed conv", &out, want, N * Co * OH * OW, 0x1p-23, 1e-12);
    ldmc_tensor_release(&out);
  }
  free(want);
  th_release(1, &x), th_release(1, &wt), th_release(1, &w);
}

/* NHWC input, HWIO kernel, NHWC output give the NCHW result transposed. */
static void test_layouts(void) {
  const int64_t N = 2, C = 3, O = 4, H = 5, W = 4, K = 3;
  uint64_t seed = 7;
  ldmc_tensor x = th_random(LDMC_F32, SHAPE(N, C, H, W), &seed, -1, 1);
  ldmc_tensor w = th_random(LDMC_F32, SHAPE(O, C, K, K), &seed, -1, 1);
  ldmc_tensor xh = th_tensor(LDMC_F32, SHAPE(N, H, W, C), NULL), wh = th_tensor(LDMC_F32, SHAPE(K, K, C, O), NULL);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t ww = 0; ww < W; ww++)
          ldmc_tensor_set_elem(&xh, ((n * H + h) * W + ww) * C + c, ldmc_tensor_get(&x, ((n * C + c) * H + h) * W + ww));
  for (int64_t o = 0; o < O; o++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t a = 0; a < K; a++)
        for (int64_t b = 0; b < K; b++)
          ldmc_tensor_set_elem(&wh, ((a * K + b) * C + c) * O + o, ldmc_tensor_get(&w, ((o * C + c) * K + a) * K + b));
  conv_case cc = C2(2, N, C, O, 1, {H, W}, {K, K}, {2, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1});
  ldmc_attrs at = conv_attrs(&cc);
  ldmc_tensor ref, got, in[2] = {x, w};
  bool ok = th_eval(LDMC_OP_CONVOLUTION, &at, LDMC_F32, NULL, 2, in, &ref);
  at.input_dims = INTS(0, 3, 1, 2);
  at.kernel_dims = INTS(3, 2, 0, 1);
  at.output_dims = INTS(0, 3, 1, 2);
  in[0] = xh, in[1] = wh;
  ok = th_eval(LDMC_OP_CONVOLUTION, &at, LDMC_F32, NULL, 2, in, &got) && ok;
  if (ok) {
    int64_t OH = ref.shape.dims[2], OW = ref.shape.dims[3];
    CHECK(got.shape.dims[1] == OH && got.shape.dims[2] == OW && got.shape.dims[3] == O);
    double *want = malloc((size_t)(N * O * OH * OW) * sizeof *want);
    for (int64_t n = 0; n < N; n++)
      for (int64_t o = 0; o < O; o++)
        for (int64_t h = 0; h < OH; h++)
          for (int64_t ww = 0; ww < OW; ww++)
            want[((n * OH + h) * OW + ww) * O + o] = ldmc_tensor_get(&ref, ((n * O + o) * OH + h) * OW + ww);
    th_expect("NHWC/HWIO layout", &got, want, N * O * OH * OW, 0, 0);
    free(want);
    ldmc_tensor_release(&ref), ldmc_tensor_release(&got);
  }
  th_release(1, &x), th_release(1, &w), th_release(1, &xh), th_release(1, &wh);
}

/* Results do not depend on the thread count (each output has a fixed sum order). */
static void test_threads(void) {
  uint64_t seed = 31;
  ldmc_tensor in[2] = {th_random(LDMC_F32, SHAPE(1, 64, 16, 16), &seed, -1, 1),
                       th_random(LDMC_F32, SHAPE(64, 64, 3, 3), &seed, -1, 1)},
              out[3];
  conv_case c = C2(2, 1, 64, 64, 1, {16, 16}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1});
  ldmc_attrs at = conv_attrs(&c);
  int threads[3] = {1, 2, 5};
  bool ok = true;
  for (int i = 0; i < 3; i++) {
    omp_set_num_threads(threads[i]);
    ok &= th_eval(LDMC_OP_CONVOLUTION, &at, LDMC_F32, NULL, 2, in, &out[i]);
  }
  omp_set_num_threads(omp_get_num_procs());
  if (ok) {
    CHECK(memcmp(out[0].data, out[1].data, out[0].nbytes) == 0);
    CHECK(memcmp(out[0].data, out[2].data, out[0].nbytes) == 0);
    th_release(3, out);
  }
  th_release(2, in);
}

int main(void) {
  test_threads();
  test_cases();
  test_transposed();
  test_layouts();
  return test_summary("test_interp_conv");
}
