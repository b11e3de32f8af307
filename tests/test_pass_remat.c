/* The remat pass (passes/remat.c) under ldmc_pipeline_opts.memory_budget:
 *  1. a 20-layer chain (silu, tanh, layer_norm, an rng dropout mask) and its
 *     gradient (ldmc_grad wrt x): with budget P0/2 the planned arena fits it,
 *     the copies are new nodes (scope "remat.*") whose FLOPs, summed here,
 *     are the reported extra FLOPs, and the outputs equal the unbudgeted
 *     pipeline's bit for bit on the interpreter;
 *  2. a budget above P0 changes nothing (same text); a 1-byte budget
 *     terminates and reports the peak it reached, not met;
 *  3. the rewritten graph verifies and llvm-cpu, compiling with the budget
 *     (remat inside its pipeline), matches the interpreter;
 *  4. the tiny U-Net (c=32, 8x8x4, context 16x5): the gradient wrt the sample
 *     and an AdamW training step with donated state, at no budget and two
 *     budgets: peaks fall, stay within the budgets met, figures printed.
 * Independent oracles: the plan's arena (checked by ldmc_plan_check_buffers),
 * node scopes and per-node FLOPs of the rewritten graph, the interpreter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "models/unet.h"
#include "pass_test_util.h"

enum { R = 64, C = 64, LAYERS = 20 };

static ldmc_graph *chain_forward(void) {
  ldmc_builder *b = ldmc_builder_new("remat_chain");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, (int64_t[]){R, C});
  ldmc_value key = ldmc_parameter(b, "key", LDMC_I64, 0, NULL);
  float gamma[C], beta[C];
  for (int i = 0; i < C; i++) gamma[i] = 1.0f + 0.01f * (float)i, beta[i] = 0.02f * (float)(i % 7) - 0.05f;
  ldmc_value ga = ldmc_constant(b, LDMC_F32, 1, (int64_t[]){C}, gamma), be = ldmc_constant(b, LDMC_F32, 1, (int64_t[]){C}, beta);
  ldmc_value h = x;
  for (int i = 0; i < LAYERS; i++) {
    ldmc_builder_push_scope(b, "layer%d", i);
    if (i % 5 == 4) {
      h = ldmc_layer_norm(b, h, ga, be, 1, 1e-5);
    } else if (i == 7) { /* dropout: the mask is a pure function of the key */
      ldmc_graph *g = ldmc_builder_graph(b);
      ldmc_shape s = ldmc_shape_make(2, (int64_t[]){R, C});
      ldmc_value u = ldmc_graph_add_checked(g, LDMC_OP_RNG_UNIFORM, LDMC_F32, &s, 1, &key, NULL, "layer7");
      ldmc_value keep = ldmc_compare_values(b, LDMC_CMP_GE, u, ldmc_constant_scalar(b, LDMC_F32, 0.2));
      ldmc_value mask = ldmc_select(b, keep, ldmc_constant_scalar(b, LDMC_F32, 1.25), ldmc_constant_scalar(b, LDMC_F32, 0));
      h = ldmc_mul(b, h, mask);
    } else {
      h = ldmc_scale(b, h, 0.9 + 0.02 * i);
      h = i % 2 ? ldmc_unary(b, LDMC_OP_TANH, h) : ldmc_silu(b, h);
    }
    ldmc_builder_pop_scope(b);
  }
  ldmc_builder_output(b, h, "y");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g, "chain: %s", ldmc_last_error());
  return g;
}

static ldmc_graph *chain_grad(void) {
  ldmc_graph *f = chain_forward(), *gg = NULL;
  if (!f) return NULL;
  ldmc_grad_opts o = {.seed = LDMC_GRAD_SUM, .wrt_regex = "^x$"};
  CHECK_MSG(ldmc_grad(f, &o, &gg) == LDMC_OK, "grad: %s", ldmc_last_error());
  ldmc_graph_free(f);
  return gg;
}

/* A copy of g through the llvm-cpu target's pipeline under budget (0: none);
 * the plan is checked by the independent buffer checker. */
static ldmc_graph *compile(const ldmc_graph *g, int64_t budget, const ldmc_pipeline_opts *base, ldmc_remat_report *rep,
                           ldmc_plan **plan) {
  ldmc_graph *c = ldmc_graph_clone(g);
  ldmc_pipeline_opts o = base ? *base : (ldmc_pipeline_opts){0};
  o.verify_each = true;
  o.memory_budget = budget;
  o.remat = rep;
  if (rep) memset(rep, 0xab, sizeof *rep); /* remat must write every field it reports */
  *plan = NULL;
  ldmc_status s = c ? ldmc_compile_plan(c, ldmc_target_find("llvm-cpu"), &o, plan) : LDMC_ERR_NOMEM;
  CHECK_MSG(s == LDMC_OK, "compile '%s' under %lld bytes: %s", g->name, (long long)budget, ldmc_last_error());
  if (s == LDMC_OK) CHECK_MSG(ldmc_plan_check_buffers(*plan, c) == LDMC_OK, "buffers: %s", ldmc_last_error());
  if (s != LDMC_OK) {
    ldmc_graph_free(c);
    return NULL;
  }
  return c;
}

static bool is_remat(const ldmc_node *n) { return n->scope && strncmp(n->scope, "remat", 5) == 0; }

static int64_t node_flops(const ldmc_graph *g, int32_t i) {
  ldmc_flops f = ldmc_node_flops(g, i);
  return f.mac + f.other;
}

static int64_t total_flops(const ldmc_graph *g) {
  int64_t t = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) t += node_flops(g, i);
  return t;
}

/* Inputs for the chain: x in [-2, 2), key 20240611. */
static ldmc_tensor *chain_inputs(const ldmc_graph *g) {
  ldmc_tensor *in = NULL;
  int n = ptu_inputs(g, &in);
  CHECK(n == 2);
  int64_t key = 20240611;
  memcpy(in[1].data, &key, sizeof key);
  return in;
}

static bool same_bits(const ldmc_tensor *a, const ldmc_tensor *b, int n) {
  for (int i = 0; i < n; i++)
    if (a[i].nbytes != b[i].nbytes || memcmp(a[i].data, b[i].data, a[i].nbytes) != 0) return false;
  return true;
}

static void test_chain_half_budget(void) {
  ldmc_graph *gg = chain_grad();
  if (!gg) return;
  ldmc_plan *p0 = NULL, *p1 = NULL;
  ldmc_remat_report rep;
  ldmc_graph *g1 = NULL, *g0 = compile(gg, 0, NULL, NULL, &p0);
  if (!g0) goto out;
  int64_t P0 = p0->arena_bytes;
  /* by hand: each layer leaves one R x C f32 value (silu's input, tanh's output, the mask, the norm's
     input) that the backward reads, all live where the backward starts */
  CHECK_MSG(P0 >= (int64_t)LAYERS * R * C * 4, "P0 %lld: the activations should dominate", (long long)P0);
  int64_t budget = P0 / 2;
  g1 = compile(gg, budget, NULL, &rep, &p1);
  if (!g1) goto out;
  printf("chain: P0 %lld B, budget %lld B -> arena %lld B (remat: %lld -> %lld, met %d), +%lld FLOPs (%d values, %d "
         "nodes, %d plannings)\n",
         (long long)P0, (long long)budget, (long long)p1->arena_bytes, (long long)rep.peak_before,
         (long long)rep.peak_after, rep.met, (long long)rep.extra_flops, rep.values, rep.nodes_added, rep.measures);
  CHECK_MSG(p1->arena_bytes <= budget, "arena %lld over the budget %lld", (long long)p1->arena_bytes, (long long)budget);
  CHECK(rep.met && rep.budget == budget && rep.peak_before == P0 && rep.peak_after == p1->arena_bytes);
  /* the copies: new nodes, counted and summed here from the graph itself */
  int32_t copies = 0;
  int64_t copy_flops = 0;
  for (int32_t i = 0; i < g1->n_nodes; i++)
    if (is_remat(&g1->nodes[i])) copies++, copy_flops += node_flops(g1, i);
  CHECK_MSG(copies > 0 && g1->n_nodes > g0->n_nodes, "copies %d, nodes %d -> %d", copies, g0->n_nodes, g1->n_nodes);
  CHECK(rep.extra_flops > 0);
  /* every saved value keeps an early reader here, so nothing original goes away */
  CHECK_MSG(g1->n_nodes - g0->n_nodes == copies && rep.nodes_added == copies, "%d copies, %d nodes added (report %d)",
            copies, g1->n_nodes - g0->n_nodes, rep.nodes_added);
  CHECK_MSG(rep.extra_flops == copy_flops && total_flops(g1) - total_flops(g0) == copy_flops,
            "extra FLOPs: report %lld, copies %lld, graphs %lld", (long long)rep.extra_flops, (long long)copy_flops,
            (long long)(total_flops(g1) - total_flops(g0)));
  CHECK(rep.values > 0 && rep.values <= copies);
  /* the same numbers, bit for bit: against the unbudgeted pipeline's graph and the input graph */
  ldmc_tensor *in = chain_inputs(gg), *a = NULL, *b = NULL, *c = NULL;
  if (ptu_interp(g0, in, 2, &a) && ptu_interp(g1, in, 2, &b) && ptu_interp(gg, in, 2, &c)) {
    CHECK_MSG(same_bits(a, b, g0->n_outputs), "remat changed the bits of the outputs");
    CHECK_MSG(same_bits(b, c, gg->n_outputs), "remat's outputs differ from the input graph's");
  }
  if (a) ptu_free_tensors(a, g0->n_outputs);
  if (b) ptu_free_tensors(b, g1->n_outputs);
  if (c) ptu_free_tensors(c, gg->n_outputs);
  ptu_free_tensors(in, 2);
out:
  ldmc_plan_free(p0);
  ldmc_plan_free(p1);
  ldmc_graph_free(g0);
  ldmc_graph_free(g1);
  ldmc_graph_free(gg);
}

static void test_budget_extremes(void) {
  ldmc_graph *gg = chain_grad();
  if (!gg) return;
  ldmc_plan *p0 = NULL, *p1 = NULL, *p2 = NULL;
  ldmc_remat_report big, tiny;
  ldmc_graph *g0 = compile(gg, 0, NULL, NULL, &p0);
  ldmc_graph *g1 = g0 ? compile(gg, p0->arena_bytes + 1, NULL, &big, &p1) : NULL;
  ldmc_graph *g2 = g0 ? compile(gg, 1, NULL, &tiny, &p2) : NULL;
  if (g1) {
    char *t0 = ldmc_graph_print(g0), *t1 = ldmc_graph_print(g1);
    CHECK_MSG(t0 && t1 && strcmp(t0, t1) == 0, "a budget above the peak changed the graph");
    free(t0);
    free(t1);
    CHECK(p1->arena_bytes == p0->arena_bytes);
    CHECK(big.met && big.peak_before == p0->arena_bytes && big.peak_after == p0->arena_bytes);
    CHECK(big.extra_flops == 0 && big.values == 0 && big.nodes_added == 0 && big.measures == 1);
  }
  if (g2) {
    printf("chain: budget 1 B -> arena %lld B of %lld (met %d, %d plannings, +%lld FLOPs)\n",
           (long long)p2->arena_bytes, (long long)p0->arena_bytes, tiny.met, tiny.measures, (long long)tiny.extra_flops);
    CHECK(!tiny.met && tiny.budget == 1 && tiny.peak_before == p0->arena_bytes);
    CHECK_MSG(tiny.peak_after == p2->arena_bytes && p2->arena_bytes < p0->arena_bytes,
              "reported %lld, planned %lld, unbudgeted %lld", (long long)tiny.peak_after, (long long)p2->arena_bytes,
              (long long)p0->arena_bytes);
    CHECK(tiny.measures >= 2 && tiny.measures <= 400);
    CHECK(p2->arena_bytes >= 2 * R * C * 4); /* y and grad.x are both live at the end */
    /* the dropout mask is recomputed from its key (rng ops are pure) and gives the same bits below */
    int rng_copies = 0;
    for (int32_t i = 0; i < g2->n_nodes; i++)
      rng_copies += is_remat(&g2->nodes[i]) && g2->nodes[i].op == LDMC_OP_RNG_UNIFORM;
    CHECK(rng_copies > 0);
    ldmc_tensor *in = chain_inputs(gg), *a = NULL, *b = NULL;
    if (ptu_interp(g0, in, 2, &a) && ptu_interp(g2, in, 2, &b))
      CHECK_MSG(same_bits(a, b, g0->n_outputs), "the 1-byte budget's graph computes other bits");
    if (a) ptu_free_tensors(a, g0->n_outputs);
    if (b) ptu_free_tensors(b, g2->n_outputs);
    ptu_free_tensors(in, 2);
  }
  /* without a budget the pass is not in the pipeline, and alone it does nothing */
  ldmc_status st = LDMC_OK;
  ldmc_pass_ctx ctx = {.target = ldmc_target_find("llvm-cpu"), .status = &st};
  CHECK(!ldmc_pass_remat.run(gg, &ctx) && st == LDMC_OK);
  CHECK(ldmc_pass_find("remat") == &ldmc_pass_remat);
  ldmc_plan_free(p0);
  ldmc_plan_free(p1);
  ldmc_plan_free(p2);
  ldmc_graph_free(g0);
  ldmc_graph_free(g1);
  ldmc_graph_free(g2);
  ldmc_graph_free(gg);
}

/* llvm-cpu compiles the input graph with the budget in its pipeline options:
 * what it plans is the rewritten graph, and it computes what the interpreter
 * computes from the input graph. */
static void test_llvm_cpu(void) {
  ldmc_graph *gg = chain_grad();
  if (!gg) return;
  ldmc_plan *p0 = NULL;
  ldmc_graph *g0 = compile(gg, 0, NULL, NULL, &p0);
  const ldmc_backend_i *be = ldmc_backend_find("llvm-cpu");
  ldmc_remat_report rep = {0};
  ldmc_pipeline_opts po = {.memory_budget = p0 ? p0->arena_bytes / 2 : 1, .remat = &rep};
  ldmc_compile_opts o = {.threads = 2, .pipeline = &po};
  ldmc_graph *opt = NULL;
  ldmc_plan *kp = NULL;
  CHECK_MSG(be && be->plan(gg, &o, &opt, &kp) == LDMC_OK, "plan: %s", ldmc_last_error());
  if (opt) {
    CHECK_MSG(ldmc_graph_verify(opt) == LDMC_OK, "verify: %s", ldmc_last_error());
    int32_t copies = 0;
    for (int32_t i = 0; i < opt->n_nodes; i++) copies += is_remat(&opt->nodes[i]);
    CHECK_MSG(copies > 0 && rep.met, "llvm-cpu's pipeline recomputed %d nodes (met %d)", copies, rep.met);
    CHECK_MSG(ldmc_plan_check_buffers(kp, opt) == LDMC_OK, "%s", ldmc_last_error());
  }
  ldmc_executable *e = NULL;
  ldmc_tensor *in = chain_inputs(gg), *want = NULL, got[2] = {{0}};
  CHECK_MSG(be && be->compile(gg, &o, &e) == LDMC_OK, "compile: %s", ldmc_last_error());
  if (e && ptu_interp(gg, in, 2, &want)) {
    CHECK_MSG(ldmc_executable_run(e, in, 2, got, 2) == LDMC_OK, "run: %s", ldmc_last_error());
    double err = ptu_err(got, want, 2, 1e-5, 1e-4);
    CHECK_MSG(err <= 1, "llvm-cpu vs interp: %.3g of the tolerance", err);
  }
  if (want) ptu_free_tensors(want, 2);
  for (int i = 0; i < 2; i++) ldmc_tensor_release(&got[i]);
  ptu_free_tensors(in, 2);
  ldmc_executable_free(e);
  ldmc_graph_free(opt);
  ldmc_plan_free(kp);
  ldmc_plan_free(p0);
  ldmc_graph_free(g0);
  ldmc_graph_free(gg);
}

/* ---- the tiny U-Net ---- */
static ldmc_graph *tiny_unet(void) {
  ldmc_unet_config cfg;
  ldmc_graph *g = NULL;
  CHECK(ldmc_unet_config_from_args(&cfg, "32", "8x8x4", "16x5", 1) == LDMC_OK);
  CHECK_MSG(ldmc_unet_build(&cfg, &g) == LDMC_OK, "unet: %s", ldmc_last_error());
  return g;
}

/* The model with loss = sum(out_sample^2) as its output "loss". */
static ldmc_graph *with_loss(ldmc_graph *g) {
  int32_t o = g->outputs[0], ops[2] = {o, o};
  ldmc_attrs ra = {.reduce = LDMC_REDUCE_SUM};
  ra.dims.n = g->nodes[o].shape.rank;
  for (int i = 0; i < ra.dims.n; i++) ra.dims.v[i] = i;
  int32_t sq = ldmc_graph_add_checked(g, LDMC_OP_MUL, LDMC_F32, NULL, 2, ops, NULL, "loss");
  int32_t r = sq < 0 ? -1 : ldmc_graph_add_checked(g, LDMC_OP_REDUCE, LDMC_F32, NULL, 1, &sq, &ra, "loss");
  CHECK_MSG(r >= 0 && ldmc_graph_add_output(g, r, "loss") == LDMC_OK, "loss: %s", ldmc_last_error());
  return g;
}

/* Peaks at no budget and at 80% and 50% of it: falling, within the budgets met. */
static void budgets(const char *what, const ldmc_graph *g, const ldmc_pipeline_opts *base) {
  ldmc_plan *p0 = NULL;
  ldmc_graph *g0 = compile(g, 0, base, NULL, &p0);
  if (!g0) return;
  int64_t P0 = p0->arena_bytes, last = P0;
  printf("%s: no budget: planned peak %.3f MiB, %d nodes\n", what, P0 / 1048576.0, (int)g0->n_nodes);
  const double frac[2] = {0.8, 0.5};
  for (int i = 0; i < 2; i++) {
    int64_t budget = (int64_t)(frac[i] * (double)P0);
    ldmc_remat_report rep;
    ldmc_plan *p = NULL;
    ldmc_graph *c = compile(g, budget, base, &rep, &p);
    if (!c) continue;
    printf("%s: budget %.3f MiB (%.0f%%): planned peak %.3f MiB%s, +%lld FLOPs (+%.2f%%), %d values recomputed, %d "
           "plannings\n",
           what, budget / 1048576.0, 100 * frac[i], p->arena_bytes / 1048576.0, rep.met ? "" : " (budget not met)",
           (long long)rep.extra_flops, 100.0 * (double)rep.extra_flops / (double)total_flops(g0), rep.values,
           rep.measures);
    CHECK(rep.peak_before == P0 && rep.peak_after == p->arena_bytes && rep.met == (p->arena_bytes <= budget));
    CHECK_MSG(p->arena_bytes < P0 && p->arena_bytes <= last, "%s: peak %lld after %lld", what,
              (long long)p->arena_bytes, (long long)last);
    CHECK(total_flops(c) - total_flops(g0) == rep.extra_flops && rep.extra_flops > 0);
    last = p->arena_bytes;
    ldmc_plan_free(p);
    ldmc_graph_free(c);
  }
  ldmc_plan_free(p0);
  ldmc_graph_free(g0);
}

static void test_unet(void) {
  ldmc_graph *f = tiny_unet(), *gs = NULL, *ts = NULL;
  if (!f) return;
  ldmc_grad_opts go = {.seed = LDMC_GRAD_SUM, .wrt_regex = "^sample$"};
  CHECK_MSG(ldmc_grad(f, &go, &gs) == LDMC_OK, "grad: %s", ldmc_last_error());
  ldmc_pipeline_opts w = {.params_are_weights = true, .n_activation_params = LDMC_UNET_N_INPUTS};
  if (gs) budgets("unet c=32 grad wrt sample", gs, &w);
  ldmc_train_opts to = {.loss = "loss", .n_data_params = LDMC_UNET_N_INPUTS};
  CHECK_MSG(ldmc_train_step_build(with_loss(f), &to, &ts) == LDMC_OK, "train step: %s", ldmc_last_error());
  int32_t *pairs = ts ? malloc((size_t)ts->n_outputs * sizeof *pairs) : NULL, top = -1;
  CHECK(!ts || (pairs && ldmc_train_step_state_pairs(ts, pairs) == LDMC_OK));
  if (ts && pairs) {
    for (int32_t i = 0; i < ts->n_outputs; i++) top = pairs[i] > top ? pairs[i] : top;
    /* the state overwrites its inputs (no arena slots): activations and gradients are what is left */
    ldmc_pipeline_opts d = {.params_are_weights = true, .n_activation_params = top + 1, .donate = pairs};
    budgets("unet c=32 AdamW step, donated state", ts, &d);
  }
  free(pairs);
  ldmc_graph_free(ts);
  ldmc_graph_free(gs);
  ldmc_graph_free(f);
}

int main(void) {
  test_chain_half_budget();
  test_budget_extremes();
  test_llvm_cpu();
  test_unet();
  return test_summary("test_pass_remat");
}
