/* The pipeline on the U-Net.
 *  - a small U-Net (c=16, 4 groups, 2 heads, 8x8 latent, context 8x5) with
 *    inputs and weights uniform in [-0.2, 0.2] (about a real init's scale;
 *    at [-2, 2] activations grow to ~1e5 and f32 group_norm statistics of the
 *    decomposed form drift from the interpreter's f64 ones): every target's
 *    graph passes keep the interpreter's output within atol 1e-4, rtol 1e-3
 *    (decomposition and attention reassociate f32 sums);
 *  - the same U-Net's tpusim plan executed over its arena with dead regions
 *    poisoned (the pass evaluator runs every primitive) matches too;
 *  - the family at c=64 and c=320 (64x64x4, context 1024x77) compiles for
 *    the CPU: the buffer checker passes, fusion cuts the kernel count well
 *    below the node count, the arena is far below the naive sum, and the
 *    stats entry point agrees with the pipeline. */
#include "models/unet.h"
#include "pass_test_util.h"
#include "passes/pass_util.h"

static ldmc_graph *small_unet(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 16);
  cfg.groups = 4;
  cfg.heads = 2;
  cfg.height = cfg.width = 8;
  cfg.context_dim = 8;
  cfg.context_tokens = 5;
  ldmc_graph *g = NULL;
  ldmc_status s = ldmc_unet_build(&cfg, &g);
  CHECK_MSG(s == LDMC_OK, "small unet: %s", ldmc_last_error());
  return g;
}

static void test_small_unet_targets(void) {
  ldmc_graph *ref = small_unet();
  if (!ref) return;
  const char *targets[] = {"interp", "cpu-nhwc", "llvm-cpu", "tpusim"};
  for (int t = 0; t < 4; t++) {
    ldmc_graph *g = ldmc_graph_clone(ref);
    ldmc_plan *plan = NULL;
    ldmc_pipeline_opts o = {.params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
    ldmc_status s = ldmc_compile_plan(g, ldmc_target_find(targets[t]), &o, &plan);
    CHECK_MSG(s == LDMC_OK, "%s: %s", targets[t], ldmc_last_error());
    if (s == LDMC_OK) {
      char what[64];
      snprintf(what, sizeof what, "small unet on %s", targets[t]);
      ptu_same_results(what, ref, g, 1e-4, 1e-3);
      CHECK_MSG(ldmc_plan_check_buffers(plan, g) == LDMC_OK, "%s: %s", targets[t], ldmc_last_error());
      printf("small unet %-8s: %d -> %d nodes, %d kernels, arena %lld B (naive %lld B)\n", targets[t],
             (int)ref->n_nodes, (int)g->n_nodes, (int)plan->n_kernels, (long long)plan->arena_bytes,
             (long long)plan->naive_bytes);
    }
    ldmc_plan_free(plan);
    ldmc_graph_free(g);
  }
  ldmc_graph_free(ref);
}

/* Executes plan over its arena (see test_pass_buffers.c for the general
 * version): kernels in order, nodes by the evaluator, roots to their
 * offsets, every uncovered byte poisoned with NaN after each kernel. */
static bool arena_exec(const ldmc_graph *g, const ldmc_plan *p, const ldmc_tensor *ins, ldmc_tensor *outs) {
  int32_t nn = g->n_nodes, pi = 0;
  ldmc_tensor *val = calloc((size_t)nn, sizeof *val); /* values outside the arena, and kernel temporaries */
  bool *own = calloc((size_t)nn, sizeof *own);
  int32_t *pos = calloc((size_t)p->n_kernels, sizeof *pos), *last = calloc((size_t)nn, sizeof *last);
  uint8_t *arena = aligned_alloc(64, (size_t)(p->arena_bytes + 64) / 64 * 64), *keep = malloc((size_t)p->arena_bytes + 1);
  memset(arena, 0xff, (size_t)p->arena_bytes);
  for (int32_t t = 0; t < p->n_kernels; t++) pos[p->order[t]] = t;
  for (int32_t i = 0; i < nn; i++) {
    last[i] = p->kernel_of[i] >= 0 ? pos[p->kernel_of[i]] : -1;
    for (int o = 0; o < g->nodes[i].n_operands && p->kernel_of[i] >= 0; o++) {
      int32_t a = g->nodes[i].operands[o];
      if (p->kernel_of[a] >= 0 && last[a] < pos[p->kernel_of[i]]) last[a] = pos[p->kernel_of[i]];
    }
  }
  for (int32_t i = 0; i < g->n_outputs; i++) last[g->outputs[i]] = INT32_MAX;
  bool ok = true;
  for (int32_t i = 0; i < nn && ok; i++) { /* sources and splats */
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) {
      val[i] = ins[pi++];
    } else if (p->kernel_of[i] < 0) {
      ldmc_tensor in[2];
      for (int k = 0; k < n->n_operands; k++) in[k] = val[n->operands[k]];
      ok = ldmc_eval_node(n, in, &val[i]) == LDMC_OK;
      own[i] = true;
    }
  }
  for (int32_t t = 0; t < p->n_kernels && ok; t++) {
    int32_t k = p->order[t];
    const ldmc_kernel *kr = &p->kernels[k];
    for (int32_t j = 0; j < kr->n_nodes && ok; j++) {
      int32_t id = kr->nodes[j];
      const ldmc_node *n = &g->nodes[id];
      ldmc_tensor in[8];
      for (int o = 0; o < n->n_operands && o < 8; o++) {
        int32_t a = n->operands[o];
        if (p->kernel_of[a] >= 0 && p->kernel_of[a] != k && p->offset[a] >= 0) {
          in[o] = (ldmc_tensor){.dtype = g->nodes[a].dtype, .shape = g->nodes[a].shape, .data = arena + p->offset[a],
                                .nbytes = (size_t)ldmc_node_bytes(&g->nodes[a])};
        } else {
          in[o] = val[a];
        }
      }
      ok = n->n_operands <= 8 && ldmc_eval_node(n, in, &val[id]) == LDMC_OK;
      own[id] = ok;
    }
    if (!ok) break;
    if (p->offset[kr->root] >= 0) memcpy(arena + p->offset[kr->root], val[kr->root].data, val[kr->root].nbytes);
    for (int32_t j = 0; j < kr->n_nodes; j++) {
      int32_t id = kr->nodes[j];
      if (id == kr->root && p->offset[id] < 0) continue; /* prepack / alias of a source: kept outside */
      ldmc_tensor_release(&val[id]);
      own[id] = false;
    }
    memset(keep, 0, (size_t)p->arena_bytes);
    for (int32_t q = 0; q < p->n_kernels; q++) {
      int32_t r = p->kernels[q].root;
      if (p->offset[r] >= 0 && pos[q] <= t && last[r] > t) memset(keep + p->offset[r], 1, (size_t)ldmc_node_bytes(&g->nodes[r]));
    }
    for (int64_t b = 0; b < p->arena_bytes; b++)
      if (!keep[b]) arena[b] = 0xff;
  }
  for (int32_t i = 0; i < g->n_outputs && ok; i++) {
    int32_t o = g->outputs[i];
    const ldmc_node *n = &g->nodes[o];
    ok = ldmc_tensor_alloc(&outs[i], g->output_names[i], n->dtype, &n->shape) == LDMC_OK;
    if (ok) memcpy(outs[i].data, p->offset[o] >= 0 ? arena + p->offset[o] : val[o].data, outs[i].nbytes);
  }
  for (int32_t i = 0; i < nn; i++)
    if (own[i]) ldmc_tensor_release(&val[i]);
  free(val);
  free(own);
  free(pos);
  free(last);
  free(arena);
  free(keep);
  return ok;
}

static void test_small_unet_arena(void) {
  ldmc_graph *ref = small_unet();
  if (!ref) return;
  ldmc_graph *g = ldmc_graph_clone(ref);
  ldmc_plan *plan = NULL;
  /* tpusim lowers every composite, so the evaluator can run each node */
  ldmc_status s = ldmc_compile_plan(g, ldmc_target_find("tpusim"), NULL, &plan);
  CHECK_MSG(s == LDMC_OK, "tpusim: %s", ldmc_last_error());
  if (s == LDMC_OK) {
    ldmc_tensor *ins = NULL, *want = NULL;
    int n = ptu_inputs(ref, &ins);
    ldmc_tensor *got = calloc((size_t)g->n_outputs, sizeof *got);
    bool ran = arena_exec(g, plan, ins, got);
    CHECK_MSG(ran, "arena run: %s", ldmc_last_error());
    if (ran && ptu_interp(ref, ins, n, &want)) {
      double e = ptu_err(got, want, ref->n_outputs, 1e-4, 1e-3);
      CHECK_MSG(e <= 1, "small unet over the arena differs from the interpreter (error %.3g)", e);
      ptu_free_tensors(want, ref->n_outputs);
    }
    ptu_free_tensors(got, g->n_outputs);
    ptu_free_tensors(ins, n);
  }
  ldmc_plan_free(plan);
  ldmc_graph_free(g);
  ldmc_graph_free(ref);
}

static void test_family(int c) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, c);
  ldmc_graph *g = NULL;
  if (ldmc_unet_build(&cfg, &g) != LDMC_OK) {
    CHECK_MSG(0, "unet c=%d: %s", c, ldmc_last_error());
    return;
  }
  ldmc_plan_stats st;
  CHECK(ldmc_plan_stats_compute(g, "cpu-nhwc", LDMC_UNET_N_INPUTS, &st) == LDMC_OK);
  int32_t before = g->n_nodes;
  ldmc_plan *plan = NULL;
  ldmc_pipeline_opts o = {.params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
  CHECK(ldmc_compile_plan(g, ldmc_target_find("cpu-nhwc"), &o, &plan) == LDMC_OK);
  if (plan) {
    CHECK_MSG(ldmc_plan_check_buffers(plan, g) == LDMC_OK, "c=%d: %s", c, ldmc_last_error());
    int32_t per_run = 0, attention = 0;
    for (int32_t k = 0; k < plan->n_kernels; k++) {
      per_run += plan->kernels[k].kind != LDMC_KERNEL_PREPACK;
      attention += plan->kernels[k].kind == LDMC_KERNEL_ATTENTION;
    }
    /* 16 transformer blocks, self- and cross-attention each: 32 fused attention kernels */
    CHECK(attention == 32);
    CHECK_MSG(per_run * 3 < before, "c=%d: %d kernels per run for %d nodes", c, (int)per_run, (int)before);
    CHECK(plan->arena_bytes * 20 < plan->naive_bytes);
    /* a lower bound: the first level's skip activations coexist: conv_in and both resnets, c x 64 x 64 f32 each */
    CHECK(plan->arena_bytes >= 3 * (int64_t)c * 64 * 64 * 4);
    CHECK(st.nodes_before == before && st.kernels == plan->n_kernels && st.naive_bytes == plan->naive_bytes);
    CHECK(st.arena_bytes == plan->arena_bytes && st.prepack_kernels == plan->n_kernels - per_run);
    printf("unet c=%d: %d -> %d nodes, %d kernels (%d per run), arena %.2f MiB, naive %.2f MiB\n", c, (int)before,
           (int)g->n_nodes, (int)plan->n_kernels, (int)per_run, plan->arena_bytes / 1048576.0, plan->naive_bytes / 1048576.0);
  }
  ldmc_plan_free(plan);
  ldmc_graph_free(g);
}

int main(void) {
  ptu_scale = 0.1;
  test_small_unet_targets();
  test_small_unet_arena();
  test_family(64);
  test_family(320);
  return test_summary("test_pass_unet");
}
