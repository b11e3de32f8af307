/* Weights laid out once for tpusim's matrix units (ldmc_compile_opts.params_are_weights): a
 * dot_general's or convolution's weight parameter is converted to bf16 and cut into the tiles its stream
 * loads, in load order, when it is first passed, so each weight load is one DMA of a contiguous bf16
 * tile (half the bytes of the f32 strided load it replaces).
 *
 * Checked: the packed buffer of a 20 x 20 weight on a tiny target (tiles of 16 x 16: four tiles, their
 * offsets and contents by hand); the outputs with packing equal those without (the same bf16
 * rounding, only earlier) and are within bf16 tolerance of the interpreter, for a matmul, a matmul with
 * its bias + GELU epilogue, a transposed rhs and a convolution; the DMA instructions are as many and
 * their bytes are fewer by exactly 2 bytes per weight element per load (one M tile, or one pixel tile on
 * v5e: each weight loaded once); a second weight tensor is packed again. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/tpusim/tpusim.h"
#include "frontend/frontend.h"
#include "support/half.h"
#include "test_util.h"
#include "tpusim_test_util.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float runif(void) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)(-2.0 + 4.0 * (double)(g_rng >> 11) / 9007199254740992.0);
}

static ldmc_graph *finish(ldmc_builder *b, ldmc_value y) {
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

/* x [M, K] w (rhs [K, N], or [N, K] with transposed) (+ bias [N] and GELU with epi). */
static ldmc_graph *g_dense(int64_t M, int64_t K, int64_t N, bool transposed, bool epi) {
  int64_t xd[2] = {M, K}, wd[2] = {transposed ? N : K, transposed ? K : N}, bd[1] = {N}, od[2] = {M, N}, map[1] = {1};
  ldmc_builder *b = ldmc_builder_new("dense");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, xd), w = ldmc_parameter(b, "w", LDMC_F32, 2, wd);
  ldmc_value h;
  if (transposed) {
    ldmc_ints none = {0}, one = {.n = 1, .v = {1}};
    h = ldmc_dot_general(b, x, w, &none, &none, &one, &one);
  } else {
    h = ldmc_matmul(b, x, w);
  }
  if (epi) {
    ldmc_value bias = ldmc_parameter(b, "b", LDMC_F32, 1, bd);
    h = ldmc_gelu(b, ldmc_add(b, h, ldmc_broadcast_in_dim(b, bias, 2, od, map)));
  }
  return finish(b, h);
}

static ldmc_graph *g_conv(void) {
  int64_t xd[4] = {1, 3, 6, 6}, wd[4] = {4, 3, 3, 3};
  ldmc_builder *b = ldmc_builder_new("conv");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd), w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  return finish(b, ldmc_conv2d(b, x, w, 1, 1, 1, 1));
}

typedef struct pack_run {
  ldmc_tensor out;
  uint64_t bytes, packed_bytes;
  size_t dmas;
  int packed_kernels;
} pack_run;

/* Runs g (inputs in) on t with or without weights (parameters from index 1 on) and, if pk, the
 * packed buffer of the product's kernel into pk_out (pk_n values). */
static bool run(ldmc_graph *g, const ldmc_tpu_target *t, ldmc_tensor *in, int np, bool weights, pack_run *r,
                uint16_t *pk_out, size_t pk_n) {
  memset(r, 0, sizeof *r);
  ldmc_compile_opts o = {.bf16 = true, .params_are_weights = weights, .n_activation_params = 1};
  ldmc_executable *e = NULL;
  ldmc_status st = ldmc_tpusim_compile(g, &o, t, &e);
  CHECK_MSG(st == LDMC_OK, "%s (%s): compile: %s", g->name, t->name, ldmc_last_error());
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, np, &r->out, 1);
  CHECK_MSG(st == LDMC_OK, "%s (%s): run: %s", g->name, t->name, ldmc_last_error());
  if (st == LDMC_OK) {
    for (int i = 0; i < ldmc_tpusim_kernel_count(e); i++) {
      ldmc_tpusim_kernel k;
      CHECK(ldmc_tpusim_kernel_get(e, i, &k) == LDMC_OK);
      CHECK_MSG(ldmc_tpu_verify(t, k.program, &k.mem) == LDMC_OK, "kernel %d: %s", i, ldmc_last_error());
      r->bytes += k.stats.bytes_loaded + k.stats.bytes_stored;
      for (size_t j = 0; j < k.program->count; j++)
        r->dmas += k.program->insns[j].op == LDMC_TPU_DMA_LOAD || k.program->insns[j].op == LDMC_TPU_DMA_STORE;
      if (k.packed_buf >= 0) {
        r->packed_kernels++;
        CHECK(k.packed != NULL && k.mem.buf[k.packed_buf].bytes == k.packed_bytes);
        if (pk_out && k.packed) memcpy(pk_out, k.packed, pk_n * sizeof *pk_out);
      }
    }
    r->packed_bytes = ldmc_tpusim_packed_bytes(e);
  }
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

static void fill(ldmc_graph *g, ldmc_tensor *in, int np) {
  for (int k = 0; k < np; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    CHECK(ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape) == LDMC_OK);
    int64_t cnt = 1;
    for (int d = 0; d < p->shape.rank; d++) cnt *= p->shape.dims[d];
    for (int64_t e = 0; e < cnt; e++) ((float *)in[k].data)[e] = runif();
  }
}

static int64_t numel(const ldmc_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->shape.rank; d++) n *= t->shape.dims[d];
  return n;
}

/* Packed and unpacked: the same outputs, within bf16 tolerance of the interpreter, as many DMAs, and
 * saving (>= 0) fewer bytes. */
static void compare(const char *name, ldmc_graph *g, const ldmc_tpu_target *t, int64_t saving) {
  int np = ldmc_graph_num_params(g);
  ldmc_tensor in[4] = {{0}}, want = {0};
  fill(g, in, np);
  pack_run a, b;
  ldmc_executable *ie = NULL;
  ldmc_compile_opts io = {.threads = 1};
  CHECK(ldmc_backend_interp.compile(g, &io, &ie) == LDMC_OK && ldmc_executable_run(ie, in, np, &want, 1) == LDMC_OK);
  if (run(g, t, in, np, true, &a, NULL, 0) && run(g, t, in, np, false, &b, NULL, 0)) {
    int64_t n = numel(&want);
    double amax = 0, err = 0;
    bool same = true;
    for (int64_t i = 0; i < n; i++) {
      const float *p = a.out.data, *u = b.out.data, *w = want.data;
      same &= memcmp(&p[i], &u[i], 4) == 0;
      amax = fmax(amax, fabs(w[i]));
      err = fmax(err, fabs((double)p[i] - w[i]));
    }
    CHECK_MSG(same, "%s (%s): packed and unpacked outputs differ", name, t->name);
    CHECK_MSG(err <= 3e-2 * amax, "%s (%s): %.3g of max |out| from the interpreter", name, t->name, err / amax);
    CHECK_MSG(a.packed_kernels == 1 && b.packed_kernels == 0 && a.packed_bytes > 0 && b.packed_bytes == 0,
              "%s (%s): %d kernels packed", name, t->name, a.packed_kernels);
    CHECK_MSG(a.dmas == b.dmas, "%s (%s): %zu DMAs packed, %zu unpacked", name, t->name, a.dmas, b.dmas);
    CHECK_MSG(a.bytes < b.bytes && (saving < 0 || b.bytes - a.bytes == (uint64_t)saving),
              "%s (%s): %" PRIu64 " bytes packed, %" PRIu64 " unpacked, expected %" PRId64 " fewer", name, t->name,
              a.bytes, b.bytes, saving);
    printf("  %-18s %-5s %zu DMAs, %" PRIu64 " bytes packed (%" PRIu64 " unpacked), %" PRIu64 " bytes of packed weights\n",
           name, t->name, a.dmas, a.bytes, b.bytes, a.packed_bytes);
  }
  ldmc_tensor_release(&a.out), ldmc_tensor_release(&b.out), ldmc_tensor_release(&want);
  for (int i = 0; i < np; i++) ldmc_tensor_release(&in[i]);
  ldmc_executable_free(ie);
  ldmc_graph_free(g);
}

/* x [5, 20] w [20, 20] on the tiny target: tn = C x units = 16, tk = R x units = 16, one M tile. The
 * stream loads tiles (n0, k0) = (0, 0) 16x16, (0, 16) 4x16, (16, 0) 16x4, (16, 16) 4x4, at
 * n0 K + k0 ns: 0, 256, 320, 384. */
static void packed_layout(void) {
  ldmc_tpu_target t = tpusim_tiny_target(8192);
  ldmc_graph *g = g_dense(5, 20, 20, false, false);
  ldmc_tensor in[2] = {{0}};
  fill(g, in, 2);
  uint16_t pk[400];
  pack_run r;
  if (run(g, &t, in, 2, true, &r, pk, 400)) {
    CHECK_MSG(r.packed_bytes == 800, "packed bytes %" PRIu64 ", expected 800", r.packed_bytes);
    const float *w = in[1].data;
    static const int tiles[4][5] = {{0, 0, 16, 16, 0}, {16, 0, 4, 16, 256}, {0, 16, 16, 4, 320}, {16, 16, 4, 4, 384}};
    int bad = 0;
    for (int i = 0; i < 4; i++) /* k0, n0, rows, cols, offset */
      for (int rr = 0; rr < tiles[i][2]; rr++)
        for (int c = 0; c < tiles[i][3]; c++)
          bad += pk[tiles[i][4] + rr * tiles[i][3] + c] != ldmc_f32_to_bf16(w[(tiles[i][0] + rr) * 20 + tiles[i][1] + c]);
    CHECK_MSG(bad == 0, "%d packed values differ from the hand layout", bad);
    /* another weight tensor: packed again, the result follows it */
    ldmc_tensor w2 = {0};
    CHECK(ldmc_tensor_alloc(&w2, "w", LDMC_F32, &in[1].shape) == LDMC_OK);
    for (int i = 0; i < 400; i++) ((float *)w2.data)[i] = -((float *)in[1].data)[i];
    ldmc_tensor in2[2] = {in[0], w2};
    pack_run r2;
    uint16_t pk2[400];
    if (run(g, &t, in2, 2, true, &r2, pk2, 400)) {
      CHECK(pk2[0] == ldmc_f32_to_bf16(-w[0]) && pk2[399] == ldmc_f32_to_bf16(-w[19 * 20 + 19]));
      int64_t n = numel(&r.out);
      int flips = 0;
      for (int64_t i = 0; i < n; i++) flips += ((float *)r2.out.data)[i] != -((float *)r.out.data)[i];
      CHECK_MSG(flips == 0, "%d outputs of -w are not the negated outputs", flips);
      ldmc_tensor_release(&r2.out);
    }
    ldmc_tensor_release(&w2);
  }
  ldmc_tensor_release(&r.out);
  for (int i = 0; i < 2; i++) ldmc_tensor_release(&in[i]);
  ldmc_graph_free(g);
}

int main(void) {
  packed_layout();
  ldmc_tpu_target tiny = tpusim_tiny_target(8192), v5e;
  CHECK(ldmc_tpu_target_preset("v5e", &v5e) == LDMC_OK);
  /* on v5e one tile each: the weight is loaded once, 2 bytes per element fewer */
  compare("matmul", g_dense(37, 100, 45, false, false), &v5e, 2 * 100 * 45);
  compare("matmul rhs^T", g_dense(37, 100, 45, true, false), &v5e, 2 * 100 * 45);
  compare("matmul+bias+gelu", g_dense(37, 100, 45, false, true), &v5e, 2 * 100 * 45);
  compare("conv 3x3", g_conv(), &v5e, 2 * 4 * 27);
  /* many tiles (weights re-read per M tile or pixel tile): fewer bytes, same results */
  compare("matmul", g_dense(37, 100, 45, false, false), &tiny, -1);
  compare("matmul rhs^T", g_dense(37, 100, 45, true, false), &tiny, -1);
  compare("matmul+bias+gelu", g_dense(37, 100, 45, false, true), &tiny, -1);
  compare("conv 3x3", g_conv(), &tiny, -1);
  return test_summary("tpusim_pack");
}
