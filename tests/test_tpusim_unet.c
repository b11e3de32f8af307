/* A tiny SD-style U-Net (c=32, 32 groups, 4 levels, 8x8 latent, context
 * 32 x 4, random weights) end to end on tpusim against the interpreter,
 * on v5e and on a small target where every kernel spans many tiles. The
 * graph is compiled as built: tpusim's compile decomposes the composites
 * (group/layer norm, softmax, attention, GELU, SiLU, upsample) with the
 * pass pipeline's decompose pass, then every node is one kernel on the
 * functional simulator: convolutions by implicit im2col, products and the
 * attention's matmuls on the matrix units (bf16 inputs, f32 accumulation),
 * norms and softmax as reductions and vector ops, skip concatenations,
 * head transposes and reshapes as DMA copies, the timestep's sin/cos as
 * polynomials. Oracles: the interpreter on the graph as built (f32), and
 * the interpreter on the decomposed graph with every matrix-unit operand
 * rounded to bf16 (what the hardware computes, up to summation order).
 * Tolerance: bf16's -- relative L2 error below 2e-2, max abs error below
 * 5e-2 of max |out|, and both errors below 1.5x the distance between the
 * two oracles (the error bf16 products themselves cause). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/tpusim/tpusim.h"
#include "models/unet.h"
#include "models/weights.h"
#include "test_util.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static ldmc_tpu_target small_target(void) {
  ldmc_tpu_target t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "small");
  t.clock_hz = 1e9;
  t.cores_per_chip = 1;
  t.mxu_count = 2, t.mxu_rows = 32, t.mxu_cols = 32;
  t.vec_lanes = 32, t.vec_sublanes = 4, t.vec_ops_per_cycle = 1, t.vec_latency = 2;
  for (int i = 0; i < LDMC_TPU_T_COUNT; i++) t.vec_cycles[i] = 4;
  t.vmem_bytes = 64 << 10;
  t.vmem_banks = 1;
  t.acc_bytes = 256 * 4 * 32;
  t.hbm_bytes_per_s = 100e9;
  t.hbm_latency_ns = 200;
  t.dma_engines = 4;
  return t;
}

/* g with every matrix-unit operand (of dot_general, convolution and the
 * attention tpusim runs as one kernel: q, k, v) rounded to bf16 by a convert pair: the interpreter on it computes what the matrix
 * units are specified to compute (bf16 inputs, exact products, sums in
 * higher precision), an oracle for everything but accumulation order. */
static ldmc_graph *round_matmul_inputs(const ldmc_graph *g) {
  ldmc_graph *r = ldmc_graph_new(g->name);
  int32_t *map = calloc((size_t)g->n_nodes + 1, sizeof *map);
  bool ok = r && map;
  for (int32_t i = 0; i < g->n_nodes && ok; i++) {
    const ldmc_node *n = &g->nodes[i];
    int32_t ops[8];
    ok = n->n_operands <= 8;
    for (int j = 0; j < n->n_operands && ok; j++) {
      ops[j] = map[n->operands[j]];
      if (n->op == LDMC_OP_DOT_GENERAL || n->op == LDMC_OP_CONVOLUTION || n->op == LDMC_OP_ATTENTION) {
        const ldmc_node *x = &g->nodes[n->operands[j]];
        int32_t h = ldmc_graph_add(r, LDMC_OP_CONVERT, LDMC_BF16, &x->shape, 1, &ops[j], NULL, NULL);
        ops[j] = h < 0 ? -1 : ldmc_graph_add(r, LDMC_OP_CONVERT, LDMC_F32, &x->shape, 1, &h, NULL, NULL);
        ok = ops[j] >= 0;
      }
    }
    if (ok) map[i] = ldmc_graph_add(r, n->op, n->dtype, &n->shape, n->n_operands, ops, &n->attrs, n->scope);
    ok = ok && map[i] >= 0;
  }
  for (int32_t o = 0; o < g->n_outputs && ok; o++) ok = ldmc_graph_add_output(r, map[g->outputs[o]], g->output_names[o]) == LDMC_OK;
  free(map);
  if (!ok) {
    ldmc_graph_free(r);
    return NULL;
  }
  return r;
}

static void errors(const ldmc_tensor *got, const ldmc_tensor *want, double *rel, double *md, double *mx) {
  size_t n = want->nbytes / 4;
  double se = 0, sw = 0;
  *md = *mx = 0;
  for (size_t j = 0; j < n; j++) {
    double wv = ((float *)want->data)[j], a = ((float *)got->data)[j];
    double d = isnan(a) ? INFINITY : fabs(a - wv);
    *md = d > *md ? d : *md;
    *mx = fabs(wv) > *mx ? fabs(wv) : *mx;
    se += d * d, sw += wv * wv;
  }
  *rel = sqrt(se / (sw > 0 ? sw : 1));
}

int main(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 8;
  cfg.context_dim = 32;
  cfg.context_tokens = 4;
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_unet_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return test_summary("tpusim_unet");
  ldmc_tensor_set w = {0};
  CHECK_MSG(ldmc_weights_init_random(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, 11, &w) == LDMC_OK, "%s",
            ldmc_last_error());

  /* inputs in parameter order: sample, timestep, context (own data), then views of the weights */
  int np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in);
  unsigned s = 7;
  bool ok = in != NULL;
  for (int k = 0; k < np && ok; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    if (k >= LDMC_UNET_N_INPUTS) {
      const ldmc_tensor *t = ldmc_tensor_set_find(&w, p->attrs.name);
      CHECK_MSG(t != NULL, "no weight %s", p->attrs.name);
      ok = t != NULL;
      if (ok) in[k] = *t; /* a view: not released here */
      continue;
    }
    ok = ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape) == LDMC_OK;
    size_t n = ok ? in[k].nbytes / 4 : 0;
    for (size_t j = 0; j < n; j++) {
      s = s * 1103515245u + 12345u;
      ((float *)in[k].data)[j] = (float)(((s >> 8) % 20001) / 10000.0 - 1.0);
    }
    if (k == 1) ((float *)in[k].data)[0] = 321.0f; /* timestep */
  }

  /* the oracle: the interpreter on the graph as built */
  ldmc_tensor want = {0}, want16 = {0};
  ldmc_executable *ref = NULL;
  ldmc_compile_opts io = {.threads = 1};
  ldmc_status st = ok ? ldmc_backend_interp.compile(g, &io, &ref) : LDMC_ERR_INVALID;
  if (st == LDMC_OK) st = ldmc_executable_run(ref, in, np, &want, 1);
  CHECK_MSG(st == LDMC_OK, "interp: %s", ldmc_last_error());
  ldmc_executable_free(ref);
  double base_rel = 0, base_md = 0, base_mx = 0;

  /* v5e, and a small target on which every convolution and product spans
   * many tiles (2 units of 32 x 32, 256 accumulator rows, 64 KiB of scratchpad) */
  ldmc_tpu_target targets[2];
  CHECK(ldmc_tpu_target_preset("v5e", &targets[0]) == LDMC_OK);
  targets[1] = small_target();
  CHECK(ldmc_tpu_target_check(&targets[1], "small") == LDMC_OK);
  for (int ti = 0; ti < 2 && ok && want.data; ti++) {
    const ldmc_tpu_target *t = &targets[ti];
    ldmc_tensor got = {0};
    ldmc_executable *e = NULL;
    ldmc_compile_opts o = {.bf16 = true};
    double t0 = now_s();
    st = ldmc_tpusim_compile(g, &o, t, &e); /* decomposes the composites itself */
    CHECK_MSG(st == LDMC_OK, "tpusim compile (%s): %s", t->name, ldmc_last_error());
    double t1 = now_s();
    if (st == LDMC_OK) {
      st = ldmc_executable_run(e, in, np, &got, 1);
      CHECK_MSG(st == LDMC_OK, "tpusim run (%s): %s", t->name, ldmc_last_error());
    }
    double t2 = now_s();
    const ldmc_graph *opt = e ? e->graph : NULL; /* the graph the kernels compute: composites decomposed */
    if (ti == 0 && opt) {
      /* the second oracle: that graph with the matrix units' bf16 rounding made explicit */
      ldmc_graph *g16 = round_matmul_inputs(opt);
      CHECK_MSG(g16 != NULL, "rounded graph: %s", ldmc_last_error());
      st = g16 ? ldmc_backend_interp.compile(g16, &io, &ref) : LDMC_ERR_INVALID;
      if (st == LDMC_OK) st = ldmc_executable_run(ref, in, np, &want16, 1);
      CHECK_MSG(st == LDMC_OK, "interp (bf16-rounded products): %s", ldmc_last_error());
      ldmc_executable_free(ref);
      ldmc_graph_free(g16);
      if (want16.data) errors(&want16, &want, &base_rel, &base_md, &base_mx);
    }
    if (got.data && opt) {
      double rel, md, mx, rel16 = 0, md16 = 0, mx16 = 0;
      errors(&got, &want, &rel, &md, &mx);
      if (want16.data) errors(&got, &want16, &rel16, &md16, &mx16);
      /* simulated totals over the kernels (run one after another on one core) */
      uint64_t cycles = 0, insns = 0, macs = 0;
      int nk = ldmc_tpusim_kernel_count(e), nconv = 0;
      for (int i = 0; i < nk; i++) {
        ldmc_tpusim_kernel kk;
        if (ldmc_tpusim_kernel_get(e, i, &kk) != LDMC_OK) continue;
        CHECK_MSG(ldmc_tpu_verify(t, kk.program, &kk.mem) == LDMC_OK, "%s: kernel %d: %s", t->name, i, ldmc_last_error());
        cycles += kk.stats.cycles;
        insns += kk.program->count;
        macs += kk.stats.macs;
        nconv += opt->nodes[kk.node].op == LDMC_OP_CONVOLUTION;
      }
      printf("tpusim_unet (%s): %d nodes (%d decomposed), %d kernels (%d convolutions), %llu instructions, "
             "%llu simulated cycles (%.3f ms at %.2f GHz), %.3g MACs\n",
             t->name, (int)g->n_nodes, (int)opt->n_nodes, nk, nconv, (unsigned long long)insns,
             (unsigned long long)cycles, 1e3 * (double)cycles / t->clock_hz, t->clock_hz / 1e9, (double)macs);
      printf("tpusim_unet (%s): compile %.2f s, run %.2f s; relative L2 error %.3g, max |tpusim - interp| = %.3g, "
             "max |interp| = %.3g\n",
             t->name, t1 - t0, t2 - t1, rel, md, mx);
      printf("tpusim_unet (%s): against the interpreter on bf16-rounded products: relative L2 error %.3g, max abs "
             "error %.3g (that oracle against the f32 one: %.3g, %.3g)\n",
             t->name, rel16, md16, base_rel, base_md);
      CHECK(mx > 1e-3); /* the model does something */
      CHECK_MSG(rel < 2e-2, "%s: relative L2 error %g", t->name, rel);
      CHECK_MSG(md < 5e-2 * mx, "%s: max abs error %g (scale %g)", t->name, md, mx);
      /* as close to the f32 oracle as bf16 products themselves get, and no further from the rounded one */
      CHECK_MSG(want16.data && rel < 1.5 * base_rel && rel16 < 1.5 * base_rel,
                "%s: relative L2 errors %g (f32 oracle), %g (bf16-rounded oracle); the oracles differ by %g", t->name,
                rel, rel16, base_rel);
    }
    /* the weights laid out once (params_are_weights): the same outputs bit for bit, fewer bytes moved */
    if (got.data) {
      ldmc_compile_opts ow = {.bf16 = true, .params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
      ldmc_executable *ew = NULL;
      ldmc_tensor gotw = {0};
      st = ldmc_tpusim_compile(g, &ow, t, &ew);
      if (st == LDMC_OK) st = ldmc_executable_run(ew, in, np, &gotw, 1);
      CHECK_MSG(st == LDMC_OK, "tpusim with packed weights (%s): %s", t->name, ldmc_last_error());
      if (st == LDMC_OK) {
        int64_t n = 1, diff = 0, packed = 0;
        for (int d = 0; d < got.shape.rank; d++) n *= got.shape.dims[d];
        for (int64_t i = 0; i < n; i++) diff += memcmp((float *)got.data + i, (float *)gotw.data + i, 4) != 0;
        uint64_t b0 = 0, b1 = 0;
        for (int i = 0; i < ldmc_tpusim_kernel_count(e); i++) {
          ldmc_tpusim_kernel kk;
          if (ldmc_tpusim_kernel_get(e, i, &kk) == LDMC_OK) b0 += kk.stats.bytes_loaded + kk.stats.bytes_stored;
        }
        for (int i = 0; i < ldmc_tpusim_kernel_count(ew); i++) {
          ldmc_tpusim_kernel kk;
          if (ldmc_tpusim_kernel_get(ew, i, &kk) != LDMC_OK) continue;
          b1 += kk.stats.bytes_loaded + kk.stats.bytes_stored;
          packed += kk.packed_buf >= 0;
          CHECK_MSG(ldmc_tpu_verify(t, kk.program, &kk.mem) == LDMC_OK, "%s: packed kernel %d: %s", t->name, i,
                    ldmc_last_error());
        }
        printf("tpusim_unet (%s): packed weights: %lld kernels, %llu packed bytes, %llu DMA bytes (%llu unpacked)\n",
               t->name, (long long)packed, (unsigned long long)ldmc_tpusim_packed_bytes(ew), (unsigned long long)b1,
               (unsigned long long)b0);
        CHECK_MSG(diff == 0, "%s: %lld outputs differ with packed weights", t->name, (long long)diff);
        CHECK_MSG(packed > 0 && b1 < b0, "%s: %lld kernels packed, %llu bytes against %llu", t->name, (long long)packed,
                  (unsigned long long)b1, (unsigned long long)b0);
      }
      ldmc_tensor_release(&gotw);
      ldmc_executable_free(ew);
    }
    ldmc_tensor_release(&got);
    ldmc_executable_free(e);
  }
  ldmc_tensor_release(&want);
  ldmc_tensor_release(&want16);
  for (int k = 0; k < LDMC_UNET_N_INPUTS && k < np; k++) ldmc_tensor_release(&in[k]);
  free(in);
  ldmc_tensor_set_free(&w);
  ldmc_graph_free(g);
  return test_summary("tpusim_unet");
}
