/* Convolutions on the llvm-cpu backend (implicit GEMM, im2col built while
 * packing B): strides 1 and 2, padding 0/1/2 and asymmetric, dilation,
 * groups, odd and prime sizes, output rows narrower than a vector (lanes that
 * cross rows), several K blocks, images folded into the GEMM's columns
 * (outputs of a few positions), f32 and bf16 storage, bf16 products, at every
 * ISA level the host runs. Oracles: a double-precision direct convolution
 * written here, and the interpreter; 1 and 3 threads must agree bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

typedef struct ccase {
  int64_t N, C, H, W, O, kh, kw, sh, sw, py0, py1, px0, px1, dh, dw, G;
} ccase;

static int64_t out_dim(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1, int64_t d) {
  return (in + p0 + p1 - d * (k - 1) - 1) / s + 1;
}

static ldmc_graph *conv_graph(const ccase *c, ldmc_dtype dt) {
  ldmc_builder *b = ldmc_builder_new("conv");
  int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->O, c->C / c->G, c->kh, c->kw};
  ldmc_value x = ldmc_parameter(b, "x", dt, 4, xd), w = ldmc_parameter(b, "w", dt, 4, wd);
  ldmc_attrs a = {0};
  a.window_stride = (ldmc_ints){2, {c->sh, c->sw}};
  a.pad_low = (ldmc_ints){2, {c->py0, c->px0}};
  a.pad_high = (ldmc_ints){2, {c->py1, c->px1}};
  a.lhs_dilation = (ldmc_ints){2, {1, 1}};
  a.rhs_dilation = (ldmc_ints){2, {c->dh, c->dw}};
  a.groups = c->G;
  a.input_dims = a.kernel_dims = a.output_dims = (ldmc_ints){4, {0, 1, 2, 3}};
  int32_t ops[2] = {x, w};
  int32_t y = ldmc_graph_add_checked(ldmc_builder_graph(b), LDMC_OP_CONVOLUTION, dt, NULL, 2, ops, &a, NULL);
  CHECK_MSG(y >= 0, "conv node: %s", ldmc_last_error());
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

/* y = sum x w in double, and s = sum |x w| for the error bound */
static void oracle(const ccase *c, const ldmc_tensor *x, const ldmc_tensor *w, int64_t OH, int64_t OW, double *y,
                   double *s) {
  int64_t cg = c->C / c->G, og = c->O / c->G;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->O; o++)
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) {
          double acc = 0, abs_ = 0;
          for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t ky = 0; ky < c->kh; ky++)
              for (int64_t kx = 0; kx < c->kw; kx++) {
                int64_t iy = oy * c->sh - c->py0 + ky * c->dh, ix = ox * c->sw - c->px0 + kx * c->dw;
                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                double p = ldmc_tensor_get(x, ((n * c->C + (o / og) * cg + ci) * c->H + iy) * c->W + ix) *
                           ldmc_tensor_get(w, ((o * cg + ci) * c->kh + ky) * c->kw + kx);
                acc += p, abs_ += fabs(p);
              }
          int64_t i = ((n * c->O + o) * OH + oy) * OW + ox;
          y[i] = acc, s[i] = abs_;
        }
}

/* bf16 rounding to nearest even, as a double (the bf16 GEMM rounds f32 operands so) */
static double to_bf16(double v) {
  float f = (float)v;
  uint32_t u;
  memcpy(&u, &f, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&f, &u, 4);
  return f;
}

static void fill(ldmc_tensor *t, unsigned seed) {
  int64_t n = (int64_t)(t->nbytes / ldmc_dtype_size(t->dtype));
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    ldmc_tensor_set_elem(t, i, ((seed >> 8) % 20001) / 10000.0 - 1.0);
  }
}

static ldmc_status run(const ldmc_backend_i *be, const ldmc_graph *g, int threads, bool bf16, ldmc_tensor *in,
                       ldmc_tensor *out) {
  ldmc_compile_opts o = {.threads = threads, .bf16 = bf16, .params_are_weights = true, .n_activation_params = 1};
  ldmc_executable *e = NULL;
  ldmc_status st = be->compile(g, &o, &e);
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, 2, out, 1);
  CHECK_MSG(st == LDMC_OK, "%s: %s", be == &ldmc_backend_interp ? "interp" : "llvm-cpu", ldmc_last_error());
  ldmc_executable_free(e);
  return st;
}

static const char *isa_name(ldmc_llvm_cpu_isa i) {
  return i == LDMC_LLVM_CPU_ISA_SCALAR ? "scalar" : i == LDMC_LLVM_CPU_ISA_AVX2 ? "avx2" : "avx512";
}

/* mode 0: f32; 1: bf16 storage; 2: f32 storage with bf16 products */
static void check_case(const ccase *c, ldmc_llvm_cpu_isa isa, int mode, bool threads) {
  ldmc_dtype dt = mode == 1 ? LDMC_BF16 : LDMC_F32;
  ldmc_graph *g = conv_graph(c, dt);
  if (!g) return;
  int64_t OH = out_dim(c->H, c->kh, c->sh, c->py0, c->py1, c->dh), OW = out_dim(c->W, c->kw, c->sw, c->px0, c->px1, c->dw);
  int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->O, c->C / c->G, c->kh, c->kw};
  ldmc_shape xs = ldmc_shape_make(4, xd), ws = ldmc_shape_make(4, wd);
  ldmc_tensor in[2] = {0}, got = {0}, ref = {0};
  ldmc_tensor_alloc(&in[0], "x", dt, &xs);
  ldmc_tensor_alloc(&in[1], "w", dt, &ws);
  fill(&in[0], 11u), fill(&in[1], 29u);
  int64_t ny = c->N * c->O * OH * OW;
  double *y = calloc((size_t)ny, sizeof *y), *s = calloc((size_t)ny, sizeof *s);
  ldmc_tensor rx = {0}, rw = {0}; /* operands as the products see them */
  ldmc_tensor_alloc(&rx, "x", LDMC_F32, &xs), ldmc_tensor_alloc(&rw, "w", LDMC_F32, &ws);
  for (int k = 0; k < 2; k++) {
    ldmc_tensor *r = k ? &rw : &rx;
    for (int64_t i = 0; i < (int64_t)(r->nbytes / 4); i++) {
      double v = ldmc_tensor_get(&in[k], i);
      ldmc_tensor_set_elem(r, i, mode == 2 ? to_bf16(v) : v);
    }
  }
  oracle(c, &rx, &rw, OH, OW, y, s);
  char what[200];
  snprintf(what, sizeof what, "%s %s n%lld c%lld->%lld %lldx%lld @%lldx%lld s%lldx%lld p%lld,%lld/%lld,%lld d%lldx%lld g%lld",
           isa_name(isa), mode == 0 ? "f32" : mode == 1 ? "bf16" : "bf16-products", (long long)c->N, (long long)c->C,
           (long long)c->O, (long long)c->kh, (long long)c->kw, (long long)c->H, (long long)c->W, (long long)c->sh,
           (long long)c->sw, (long long)c->py0, (long long)c->py1, (long long)c->px0, (long long)c->px1, (long long)c->dh,
           (long long)c->dw, (long long)c->G);
  ldmc_llvm_cpu_set_isa(isa);
  if (run(&ldmc_backend_llvm_cpu, g, 2, mode == 2, in, &got) == LDMC_OK &&
      run(&ldmc_backend_interp, g, 1, false, in, &ref) == LDMC_OK) {
    CHECK_MSG(got.shape.rank == 4 && got.shape.dims[2] == OH && got.shape.dims[3] == OW, "%s: output shape", what);
    int64_t K = c->C / c->G * c->kh * c->kw;
    double worst = 0, worst_i = 0;
    int bad = 0;
    for (int64_t i = 0; i < ny && got.shape.rank == 4; i++) {
      double v = ldmc_tensor_get(&got, i), r = ldmc_tensor_get(&ref, i);
      double tol = (double)(K + 2) * ldexp(s[i], mode ? -22 : -23) + 1e-30;
      if (mode == 1) tol += ldexp(fabs(y[i]), -8); /* the bf16 result is rounded */
      double e = fabs(v - y[i]) / tol, ei = fabs(v - r) / (tol + ldexp(fabs(r), mode == 1 ? -8 : -30));
      if (mode == 2) ei = 0; /* the interpreter multiplies in f32 */
      if (!(e <= 1) || !(ei <= 2)) bad++;
      if (e > worst || isnan(e)) worst = e;
      if (ei > worst_i) worst_i = ei;
    }
    CHECK_MSG(bad == 0, "%s: %d of %lld outside the bound (worst %.3g of it vs oracle, %.3g vs interpreter)", what, bad,
              (long long)ny, worst, worst_i);
    if (threads) { /* tiles never split a reduction: any thread count gives the same bits */
      for (int th = 1; th <= 3; th += 2) {
        ldmc_tensor t = {0};
        if (run(&ldmc_backend_llvm_cpu, g, th, mode == 2, in, &t) == LDMC_OK)
          CHECK_MSG(t.nbytes == got.nbytes && memcmp(t.data, got.data, got.nbytes) == 0, "%s: %d threads differ from 2", what, th);
        ldmc_tensor_release(&t);
      }
    }
  }
  ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
  ldmc_tensor_release(&got), ldmc_tensor_release(&ref);
  ldmc_tensor_release(&in[0]), ldmc_tensor_release(&in[1]), ldmc_tensor_release(&rx), ldmc_tensor_release(&rw);
  free(y), free(s);
  ldmc_graph_free(g);
}

int main(void) {
  /* N, C, H, W, O, kh, kw, sh, sw, pad y lo/hi, pad x lo/hi, dh, dw, G */
  static const ccase cases[] = {
      {1, 5, 11, 13, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},   /* prime sizes; OW 13: rows cross in every vector */
      {1, 4, 17, 19, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},   /* stride 2, OW 10 */
      {1, 3, 8, 64, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},    /* stride 2, OW 32: whole vectors in a row */
      {2, 3, 16, 64, 4, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1},   /* stride 2, no padding, OW 31, batch 2 */
      {1, 3, 15, 15, 4, 3, 3, 2, 2, 0, 1, 0, 1, 1, 1, 1},   /* asymmetric padding (downsample style) */
      {1, 4, 9, 23, 5, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},    /* padding 2, dilation 2 */
      {1, 3, 10, 40, 3, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1},   /* 5x5, OW 40: half vectors cross */
      {1, 6, 8, 8, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* 8x8: two rows per 16 lanes */
      {1, 4, 7, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* OW 5: four rows per vector */
      {1, 4, 6, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* OW 3: too many rows, gathers */
      {1, 6, 12, 34, 8, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1},   /* 1x1 stride 2 */
      {1, 8, 13, 21, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},   /* groups 2, stride 2 */
      {1, 5, 9, 31, 4, 1, 3, 1, 2, 0, 0, 1, 1, 1, 1, 1},    /* 1x3, stride (1, 2) */
      {1, 4, 12, 29, 3, 3, 3, 2, 1, 1, 1, 1, 1, 1, 2, 1},   /* stride (2, 1), dilation (1, 2) */
      {1, 29, 20, 20, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},  /* K = 261: two K blocks, odd K */
      {1, 31, 9, 37, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},  /* K = 279, M = 17 */
      {1, 8, 40, 45, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},  /* N = 1800: several column tiles */
      {1, 8, 66, 70, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},  /* stride 2, N = 1155 */
      /* images folded into the GEMM's columns (few output positions per image) */
      {5, 6, 4, 4, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* 4x4 outputs, 5 images */
      {3, 7, 11, 13, 6, 9, 11, 1, 1, 0, 0, 0, 0, 1, 1, 1},  /* 3x3 outputs from a 9x11 kernel (a weight gradient) */
      {4, 8, 9, 9, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},     /* 5x5 outputs, stride 2, groups 2 */
      {7, 33, 6, 6, 5, 6, 6, 1, 1, 0, 0, 0, 0, 1, 1, 1},    /* 1x1 output, K = 1188: K blocks */
  };
  int nc = (int)(sizeof cases / sizeof cases[0]);
  ldmc_llvm_cpu_isa host = ldmc_llvm_cpu_host_isa();
  bool bf16_host = host == LDMC_LLVM_CPU_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
  for (int i = 0; i < nc; i++) {
    for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; isa <= (int)host; isa++) {
      check_case(&cases[i], (ldmc_llvm_cpu_isa)isa, 0, isa == (int)host);
      check_case(&cases[i], (ldmc_llvm_cpu_isa)isa, 1, false);
    }
    if (bf16_host) check_case(&cases[i], LDMC_LLVM_CPU_ISA_AVX512, 2, true);
  }
  return test_summary("llvm_conv");
}
