/* nn layers: parameter names and shapes under scopes, and numbers on the
 * interpreter against naive loops written here (linear, conv2d with stride
 * and padding, GroupNorm, LayerNorm, GEGLU feed-forward, multi-head self- and
 * cross-attention). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "frontend/nn.h"
#include "models/weights.h"
#include "test_util.h"

/* Fills every parameter of g with a deterministic draw in [-1,1); runs it. */
typedef struct run {
  ldmc_tensor_set in, out;
} run;

static const float *val(run *r, const char *name) {
  ldmc_tensor *t = ldmc_tensor_set_find(&r->in, name);
  if (!t) t = ldmc_tensor_set_find(&r->out, name);
  return t ? t->data : NULL;
}

static bool run_graph(ldmc_graph *g, run *r) {
  memset(r, 0, sizeof *r);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor t;
    ldmc_tensor_alloc(&t, n->attrs.name, LDMC_F32, &n->shape);
    int64_t k;
    ldmc_shape_numel(&n->shape, 0, &k);
    for (int64_t j = 0; j < k; j++) ((float *)t.data)[j] = (float)(2 * ldmc_weights_uniform(3, n->attrs.name, j) - 1);
    ldmc_tensor_set_add(&r->in, &t);
  }
  const ldmc_backend_i *be = ldmc_backend_find("interp");
  ldmc_executable *e = NULL;
  if (!be || be->compile(g, &(ldmc_compile_opts){0}, &e) != LDMC_OK) return false;
  ldmc_status st = ldmc_executable_run_named(e, &r->in, &r->out);
  ldmc_executable_free(e);
  if (st != LDMC_OK) fprintf(stderr, "run: %s\n", ldmc_last_error());
  return st == LDMC_OK;
}

static void run_free(run *r) {
  ldmc_tensor_set_free(&r->in);
  ldmc_tensor_set_free(&r->out);
}

static ldmc_graph *finish(ldmc_builder *b, ldmc_value y) {
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "%s", ldmc_last_error());
  return g;
}

static double max_diff(const float *a, const double *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;
  }
  return m;
}

static void test_names(void) {
  ldmc_builder *b = ldmc_builder_new("names");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, (int64_t[]){1, 8, 4, 4});
  ldmc_builder_push_scope(b, "down_blocks.0");
  ldmc_builder_push_scope(b, "resnets.1");
  ldmc_value y = ldmc_nn_conv2d(b, "conv1", x, 16, 3, 1, 1, true);
  ldmc_builder_pop_scope(b);
  ldmc_builder_pop_scope(b);
  y = ldmc_nn_conv2d(b, "conv_out", y, 4, 1, 1, 0, false);
  ldmc_graph *g = finish(b, y);
  if (!g) return;
  int32_t w = ldmc_graph_find_param(g, "down_blocks.0.resnets.1.conv1.weight");
  int32_t bi = ldmc_graph_find_param(g, "down_blocks.0.resnets.1.conv1.bias");
  CHECK(w >= 0 && g->nodes[w].shape.rank == 4 && g->nodes[w].shape.dims[0] == 16 && g->nodes[w].shape.dims[1] == 8);
  CHECK(bi >= 0 && g->nodes[bi].shape.rank == 1);
  CHECK(ldmc_graph_find_param(g, "conv_out.weight") >= 0 && ldmc_graph_find_param(g, "conv_out.bias") < 0);
  bool scoped = false;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_CONVOLUTION && g->nodes[i].scope)
      scoped |= strcmp(g->nodes[i].scope, "down_blocks.0.resnets.1.conv1") == 0;
  CHECK(scoped);
  ldmc_graph_free(g);
}

static void test_linear_conv(void) {
  ldmc_builder *b = ldmc_builder_new("lin");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, (int64_t[]){2, 3, 5});
  ldmc_graph *g = finish(b, ldmc_nn_linear(b, "l", x, 4, true));
  run r;
  if (g && run_graph(g, &r)) {
    const float *xv = val(&r, "x"), *w = val(&r, "l.weight"), *bv = val(&r, "l.bias"), *y = val(&r, "y");
    double ref[24];
    for (int t = 0; t < 6; t++)
      for (int o = 0; o < 4; o++) {
        double s = bv[o];
        for (int i = 0; i < 5; i++) s += (double)xv[t * 5 + i] * w[o * 5 + i];
        ref[t * 4 + o] = s;
      }
    CHECK(max_diff(y, ref, 24) < 1e-5);
  } else {
    CHECK(!"linear ran");
  }
  run_free(&r);
  ldmc_graph_free(g);

  /* conv 3x3 stride 2 pad 1: [1,2,5,5] -> [1,3,3,3] */
  b = ldmc_builder_new("conv");
  x = ldmc_parameter(b, "x", LDMC_F32, 4, (int64_t[]){1, 2, 5, 5});
  g = finish(b, ldmc_nn_conv2d(b, "c", x, 3, 3, 2, 1, true));
  if (g && run_graph(g, &r)) {
    const float *xv = val(&r, "x"), *w = val(&r, "c.weight"), *bv = val(&r, "c.bias"), *y = val(&r, "y");
    double ref[27];
    for (int o = 0; o < 3; o++)
      for (int oy = 0; oy < 3; oy++)
        for (int ox = 0; ox < 3; ox++) {
          double s = bv[o];
          for (int c = 0; c < 2; c++)
            for (int ky = 0; ky < 3; ky++)
              for (int kx = 0; kx < 3; kx++) {
                int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                if (iy < 0 || iy >= 5 || ix < 0 || ix >= 5) continue;
                s += (double)xv[(c * 5 + iy) * 5 + ix] * w[((o * 2 + c) * 3 + ky) * 3 + kx];
              }
          ref[(o * 3 + oy) * 3 + ox] = s;
        }
    CHECK(max_diff(y, ref, 27) < 1e-5);
  } else {
    CHECK(!"conv ran");
  }
  run_free(&r);
  ldmc_graph_free(g);
}

static void test_norms(void) {
  /* GroupNorm: [2,4,3,1] in 2 groups; LayerNorm over the last dim of [3,4] */
  ldmc_builder *b = ldmc_builder_new("gn");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, (int64_t[]){2, 4, 3, 1});
  ldmc_graph *g = finish(b, ldmc_nn_group_norm(b, "n", x, 2, 1e-5));
  run r;
  if (g && run_graph(g, &r)) {
    const float *xv = val(&r, "x"), *gw = val(&r, "n.weight"), *gb = val(&r, "n.bias"), *y = val(&r, "y");
    double ref[24];
    for (int n = 0; n < 2; n++)
      for (int grp = 0; grp < 2; grp++) {
        const float *p = xv + n * 12 + grp * 6;
        double m = 0, v = 0;
        for (int i = 0; i < 6; i++) m += p[i] / 6.0;
        for (int i = 0; i < 6; i++) v += (p[i] - m) * (p[i] - m) / 6.0;
        for (int i = 0; i < 6; i++) {
          int c = grp * 2 + i / 3;
          ref[n * 12 + grp * 6 + i] = (p[i] - m) / sqrt(v + 1e-5) * gw[c] + gb[c];
        }
      }
    CHECK(max_diff(y, ref, 24) < 1e-5);
  } else {
    CHECK(!"group norm ran");
  }
  run_free(&r);
  ldmc_graph_free(g);

  b = ldmc_builder_new("ln");
  x = ldmc_parameter(b, "x", LDMC_F32, 2, (int64_t[]){3, 4});
  g = finish(b, ldmc_nn_layer_norm(b, "n", x, 1e-5));
  if (g && run_graph(g, &r)) {
    const float *xv = val(&r, "x"), *gw = val(&r, "n.weight"), *gb = val(&r, "n.bias"), *y = val(&r, "y");
    double ref[12];
    for (int t = 0; t < 3; t++) {
      double m = 0, v = 0;
      for (int i = 0; i < 4; i++) m += xv[t * 4 + i] / 4.0;
      for (int i = 0; i < 4; i++) v += (xv[t * 4 + i] - m) * (xv[t * 4 + i] - m) / 4.0;
      for (int i = 0; i < 4; i++) ref[t * 4 + i] = (xv[t * 4 + i] - m) / sqrt(v + 1e-5) * gw[i] + gb[i];
    }
    CHECK(max_diff(y, ref, 12) < 1e-5);
  } else {
    CHECK(!"layer norm ran");
  }
  run_free(&r);
  ldmc_graph_free(g);
}

static void test_geglu(void) {
  ldmc_builder *b = ldmc_builder_new("ff");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, (int64_t[]){1, 2, 3});
  ldmc_graph *g = finish(b, ldmc_nn_geglu_ff(b, "ff", x, 2));
  run r;
  if (g && run_graph(g, &r)) {
    CHECK(ldmc_graph_find_param(g, "ff.net.0.proj.weight") >= 0 && ldmc_graph_find_param(g, "ff.net.2.bias") >= 0);
    const float *xv = val(&r, "x"), *w0 = val(&r, "ff.net.0.proj.weight"), *b0 = val(&r, "ff.net.0.proj.bias");
    const float *w2 = val(&r, "ff.net.2.weight"), *b2 = val(&r, "ff.net.2.bias"), *y = val(&r, "y");
    double ref[6];
    for (int t = 0; t < 2; t++) {
      double h[12], u[6];
      for (int o = 0; o < 12; o++) {
        h[o] = b0[o];
        for (int i = 0; i < 3; i++) h[o] += (double)xv[t * 3 + i] * w0[o * 3 + i];
      }
      for (int k = 0; k < 6; k++) u[k] = h[k] * 0.5 * h[6 + k] * (1 + erf(h[6 + k] / sqrt(2.0))); /* value * gelu(gate) */
      for (int o = 0; o < 3; o++) {
        ref[t * 3 + o] = b2[o];
        for (int k = 0; k < 6; k++) ref[t * 3 + o] += u[k] * w2[o * 6 + k];
      }
    }
    CHECK(max_diff(y, ref, 6) < 1e-5);
  } else {
    CHECK(!"ff ran");
  }
  run_free(&r);
  ldmc_graph_free(g);
}

/* out[b,n,:] of multi-head attention, naive, double precision */
static void attn_ref(const float *x, const float *ctx, int B, int N, int M, int C, int Cc, int H, run *r,
                     const char *p, double *out) {
  char nm[64];
  snprintf(nm, sizeof nm, "%s.to_q.weight", p);
  const float *wq = val(r, nm);
  snprintf(nm, sizeof nm, "%s.to_k.weight", p);
  const float *wk = val(r, nm);
  snprintf(nm, sizeof nm, "%s.to_v.weight", p);
  const float *wv = val(r, nm);
  snprintf(nm, sizeof nm, "%s.to_out.0.weight", p);
  const float *wo = val(r, nm);
  snprintf(nm, sizeof nm, "%s.to_out.0.bias", p);
  const float *bo = val(r, nm);
  int D = C / H;
  double *q = calloc((size_t)(B * N * C), sizeof *q), *k = calloc((size_t)(B * M * C), sizeof *k);
  double *v = calloc((size_t)(B * M * C), sizeof *v), *o = calloc((size_t)(B * N * C), sizeof *o);
  for (int bb = 0; bb < B; bb++) {
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++)
        for (int i = 0; i < C; i++) q[(bb * N + n) * C + c] += (double)x[(bb * N + n) * C + i] * wq[c * C + i];
    for (int m = 0; m < M; m++)
      for (int c = 0; c < C; c++)
        for (int i = 0; i < Cc; i++) {
          k[(bb * M + m) * C + c] += (double)ctx[(bb * M + m) * Cc + i] * wk[c * Cc + i];
          v[(bb * M + m) * C + c] += (double)ctx[(bb * M + m) * Cc + i] * wv[c * Cc + i];
        }
    for (int h = 0; h < H; h++)
      for (int n = 0; n < N; n++) {
        double s[64], mx = -1e300, z = 0;
        for (int m = 0; m < M; m++) {
          s[m] = 0;
          for (int d = 0; d < D; d++) s[m] += q[(bb * N + n) * C + h * D + d] * k[(bb * M + m) * C + h * D + d];
          s[m] /= sqrt((double)D);
          if (s[m] > mx) mx = s[m];
        }
        for (int m = 0; m < M; m++) z += (s[m] = exp(s[m] - mx));
        for (int d = 0; d < D; d++)
          for (int m = 0; m < M; m++) o[(bb * N + n) * C + h * D + d] += s[m] / z * v[(bb * M + m) * C + h * D + d];
      }
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++) {
        double a = bo[c];
        for (int i = 0; i < C; i++) a += o[(bb * N + n) * C + i] * wo[c * C + i];
        out[(bb * N + n) * C + c] = a;
      }
  }
  free(q), free(k), free(v), free(o);
}

static void test_attention(void) {
  const int B = 2, N = 5, M = 3, C = 4, Cc = 6, H = 2;
  ldmc_builder *b = ldmc_builder_new("attn");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 3, (int64_t[]){B, N, C});
  ldmc_value ctx = ldmc_parameter(b, "ctx", LDMC_F32, 3, (int64_t[]){B, M, Cc});
  ldmc_value y1 = ldmc_nn_attention(b, "attn1", x, -1, H, C / H);
  ldmc_value y2 = ldmc_nn_attention(b, "attn2", x, ctx, H, C / H);
  ldmc_builder_output(b, y1, "y1");
  ldmc_graph *g = finish(b, y2);
  run r;
  if (g && run_graph(g, &r)) {
    CHECK(ldmc_graph_find_param(g, "attn2.to_k.weight") >= 0 && ldmc_graph_find_param(g, "attn2.to_k.bias") < 0);
    int32_t kw = ldmc_graph_find_param(g, "attn2.to_k.weight");
    CHECK(g->nodes[kw].shape.dims[0] == C && g->nodes[kw].shape.dims[1] == Cc);
    double ref[B * N * C];
    attn_ref(val(&r, "x"), val(&r, "x"), B, N, N, C, C, H, &r, "attn1", ref);
    CHECK(max_diff(val(&r, "y1"), ref, B * N * C) < 1e-5);
    attn_ref(val(&r, "x"), val(&r, "ctx"), B, N, M, C, Cc, H, &r, "attn2", ref);
    CHECK(max_diff(val(&r, "y"), ref, B * N * C) < 1e-5);
  } else {
    CHECK(!"attention ran");
  }
  run_free(&r);
  ldmc_graph_free(g);
}

int main(void) {
  test_names();
  test_linear_conv();
  test_norms();
  test_geglu();
  test_attention();
  return test_summary("test_nn");
}
