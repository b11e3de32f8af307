/* The plan `ldmc compile --target llvm-cpu` reports is the one llvm-cpu runs.
 * For U-Nets of three shapes, the backend's plan (backend->plan) is compared
 * with what the executable does, observed independently:
 *   - the bytes it allocates for activations equal the planned arena, and
 *     the prepacked block the planned prepacked bytes;
 *   - the profiler's events (one per executed step) follow the plan: as many
 *     as the plan's non-prepack steps, kernel by kernel in the plan's order
 *     (each event's root is in the kernel the plan says runs then);
 *   - the plan passes the independent buffer checker;
 *   - run with LDMC_LLVM_CPU_POISON=1 (arena NaN-filled, each buffer's bytes
 *     NaN-filled as soon as the plan considers them dead), the outputs still
 *     equal the interpreter's: no step reads memory outside its planned life. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/lc.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "models/unet.h"
#include "passes/passes.h"
#include "test_util.h"

typedef struct trace {
  int32_t *root;
  int n, cap;
} trace;

static void on_kernel(void *ctx, const ldmc_kernel_event *ev) {
  trace *t = ctx;
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 256;
    t->root = realloc(t->root, (size_t)t->cap * sizeof *t->root);
  }
  t->root[t->n++] = ev->n_nodes > 0 ? ev->nodes[ev->n_nodes - 1] : -1;
}

static ldmc_tensor *inputs(const ldmc_graph *g, int *np) {
  *np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)*np, sizeof *in);
  unsigned s = 11;
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape);
    size_t n = in[k].nbytes / 4;
    double sc = p->shape.rank >= 2 ? 1.7 / sqrt((double)n / (double)p->shape.dims[0]) : 0.2;
    for (size_t j = 0; j < n; j++) {
      s = s * 1103515245u + 12345u;
      ((float *)in[k].data)[j] = (float)((((s >> 8) % 20001) / 10000.0 - 1.0) * sc);
    }
    if (k == 1) ((float *)in[k].data)[0] = 321.0f; /* timestep */
    k++;
  }
  return in;
}


/* Every GEMM step runs its kernel's planned blocks: mc x nc x kc from the
 * tiling pass (clipped to a smaller GEMM), the planned mr x nr register tile;
 * every attention step its kernel's block. */
static void check_tiles(const ldmc_graph *g, const ldmc_compile_opts *o, int c) {
  const lc_target *t;
  if (ldmc_lc_target_get(LDMC_LLVM_CPU_ISA_AUTO, &t) != LDMC_OK) return;
  ldmc_graph *opt = NULL;
  ldmc_plan *kp = NULL;
  lc_plan p;
  CHECK_MSG(ldmc_lc_build(g, o, t, o->threads, &opt, &kp, &p) == LDMC_OK, "build: %s", ldmc_last_error());
  if (!kp) return;
  int gemms = 0, bad = 0;
  for (int64_t s = 0; s < p.n_steps; s++) {
    const lc_step *st = &p.steps[s];
    if (!st->k || st->k->kind != LC_K_GEMM) continue;
    const lc_gemm_desc *d = st->k->desc;
    const ldmc_kernel *kr = &kp->kernels[kp->kernel_of[st->node]];
    int64_t mcp = (d->M + d->mr - 1) / d->mr * d->mr, ncp = (d->N + d->nr - 1) / d->nr * d->nr;
    bool ok = kr->n_tile == 3 && d->kc == kr->tile[2] && d->mc == (kr->tile[0] < mcp ? kr->tile[0] : mcp) &&
              d->nc == (kr->tile[1] < ncp ? kr->tile[1] : ncp) && d->mr == kr->reg_tile[0] && d->nr == kr->reg_tile[1];
    if (!ok && bad++ < 3)
      fprintf(stderr, "  %%%d: runs %lldx%dx%d regs %dx%d, planned tile %lldx%lldx%lld regs %lldx%lld\n", (int)st->node,
              (long long)d->mc, d->nc, d->kc, d->mr, d->nr, (long long)kr->tile[0], (long long)kr->tile[1],
              (long long)kr->tile[2], (long long)kr->reg_tile[0], (long long)kr->reg_tile[1]);
    gemms++;
  }
  CHECK_MSG(gemms > 0 && bad == 0, "c=%d: %d of %d GEMM steps run blocks other than the plan's", c, bad, gemms);
  printf("c=%d: %d GEMM steps run the planned tiles\n", c, gemms);
  /* every flash attention step runs its kernel's {rows per tile, block} (the tuning overrides unset) */
  int attn = 0, abad = 0;
  for (int64_t s = 0; s < p.n_steps && !getenv("LDMC_LLVM_CPU_ATTN") && !getenv("LDMC_LLVM_CPU_ATTN_GRAD"); s++) {
    const lc_step *st = &p.steps[s];
    if (!st->k || (st->k->kind != LC_K_ATTN && st->k->kind != LC_K_ATTN_GRAD)) continue;
    const ldmc_kernel *kr = &kp->kernels[kp->kernel_of[st->node]];
    int64_t rows = 0, blk = 0;
    if (st->k->kind == LC_K_ATTN) {
      const lc_attn_desc *d = st->k->desc;
      rows = (int64_t)d->nq * t->W, blk = d->bc;
    } else {
      const lc_attn_grad_desc *d = st->k->desc;
      rows = (int64_t)d->nl * t->W, blk = d->bs;
    }
    bool ok = kr->kind == LDMC_KERNEL_ATTENTION && kr->n_tile == 2 && kr->tile[0] == rows && kr->tile[1] == blk;
    if (!ok && abad++ < 3)
      fprintf(stderr, "  %%%d: attention runs %lldx%lld, planned %lldx%lld\n", (int)st->node, (long long)rows,
              (long long)blk, (long long)kr->tile[0], (long long)kr->tile[1]);
    attn++;
  }
  CHECK_MSG(abad == 0, "c=%d: %d of %d attention steps run blocks other than the plan's", c, abad, attn);
  printf("c=%d: %d attention steps run the planned blocks\n", c, attn);
  ldmc_lc_plan_free(&p);
  ldmc_plan_free(kp);
  ldmc_graph_free(opt);
}

static void one(int c, int hw, int batch, int threads) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, c);
  cfg.height = cfg.width = hw;
  cfg.batch = batch;
  cfg.context_dim = 64;
  cfg.context_tokens = 7;
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_unet_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return;
  ldmc_compile_opts o = {.threads = threads, .params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
  const ldmc_backend_i *be = &ldmc_backend_llvm_cpu;
  ldmc_graph *opt = NULL;
  ldmc_plan *kp = NULL;
  CHECK_MSG(be->plan(g, &o, &opt, &kp) == LDMC_OK, "plan: %s", ldmc_last_error());
  check_tiles(g, &o, c);
  setenv("LDMC_LLVM_CPU_POISON", "1", 1);
  ldmc_executable *e = NULL, *ref = NULL;
  ldmc_status st = be->compile(g, &o, &e);
  unsetenv("LDMC_LLVM_CPU_POISON");
  CHECK_MSG(st == LDMC_OK, "compile: %s", ldmc_last_error());
  int np = 0;
  ldmc_tensor *in = inputs(g, &np);
  ldmc_tensor got = {0}, want = {0};
  trace tr = {0};
  ldmc_profile_hook hook = {on_kernel, &tr};
  if (e && kp && opt) {
    CHECK(ldmc_executable_set_profiler(e, &hook) == LDMC_OK);
    CHECK_MSG(ldmc_executable_run(e, in, np, &got, 1) == LDMC_OK, "run: %s", ldmc_last_error());
    size_t arena = 0, prepacked = 0;
    CHECK(ldmc_llvm_cpu_memory(e, &arena, &prepacked) == LDMC_OK);
    CHECK_MSG((int64_t)arena == kp->arena_bytes, "c=%d %dx%d: allocated %zu arena bytes, planned %lld", c, hw, hw, arena,
              (long long)kp->arena_bytes);
    CHECK_MSG((int64_t)prepacked == kp->prepacked_bytes, "c=%d: prepacked %zu, planned %lld", c, prepacked,
              (long long)kp->prepacked_bytes);
    CHECK_MSG(kp->executed_by && ldmc_plan_check_buffers(kp, opt) == LDMC_OK, "%s", ldmc_last_error());
    /* the events, kernel by kernel in the plan's order */
    int64_t run_steps = 0;
    for (int32_t k = 0; k < kp->n_kernels; k++) run_steps += kp->kernels[k].n_steps - kp->kernels[k].n_prepack_steps;
    CHECK_MSG(tr.n == run_steps, "c=%d: %d events, the plan has %lld steps per run", c, tr.n, (long long)run_steps);
    int ev = 0, bad = 0;
    for (int32_t pos = 0; pos < kp->n_kernels && ev <= tr.n; pos++) {
      const ldmc_kernel *kr = &kp->kernels[kp->order[pos]];
      for (int32_t s = 0; s < kr->n_steps - kr->n_prepack_steps && ev < tr.n; s++, ev++) {
        int32_t r = tr.root[ev];
        bool member = false;
        for (int32_t j = 0; j < kr->n_nodes && !member; j++) member = kr->nodes[j] == r;
        for (int32_t j = 0; j < kr->n_inputs && !member; j++) member = kr->inputs[j] == r; /* a view computed here */
        bad += !member;
      }
    }
    CHECK_MSG(bad == 0, "c=%d: %d events outside the kernel the plan runs at that point", c, bad);
    printf("c=%d %dx%d batch %d: %d kernels, %d steps per run, arena %.2f MiB planned = allocated, prepacked %.2f MiB\n",
           c, hw, hw, batch, (int)kp->n_kernels, tr.n, (double)arena / (1 << 20), (double)prepacked / (1 << 20));
  }
  st = ldmc_backend_interp.compile(g, &o, &ref);
  if (st == LDMC_OK) st = ldmc_executable_run(ref, in, np, &want, 1);
  CHECK_MSG(st == LDMC_OK, "interp: %s", ldmc_last_error());
  if (got.data && want.data) {
    size_t n = got.nbytes / 4;
    double scale = 1e-30, md = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(((float *)want.data)[i]));
    for (size_t i = 0; i < n; i++) {
      double d = fabs((double)((float *)got.data)[i] - ((float *)want.data)[i]);
      md = isnan(d) ? INFINITY : fmax(md, d);
    }
    CHECK_MSG(md / scale < 1e-4, "c=%d poisoned run: max difference %.3g of %.3g", c, md, scale);
  }
  ldmc_tensor_release(&got);
  ldmc_tensor_release(&want);
  for (int i = 0; i < np; i++) ldmc_tensor_release(&in[i]);
  free(in);
  free(tr.root);
  ldmc_executable_free(e);
  ldmc_executable_free(ref);
  ldmc_plan_free(kp);
  ldmc_graph_free(opt);
  ldmc_graph_free(g);
}

int main(void) {
  one(32, 8, 1, 2);
  one(32, 16, 2, 1);
  one(64, 8, 1, 2);
  one(96, 8, 1, 3); /* a third width, an odd thread count */
  return test_summary("llvm_executed_plan");
}
