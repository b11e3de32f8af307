/* The pieces of data-parallel training (docs/distributed.md) that one
 * process can check; tests/cli/mpi.sh runs them under mpirun -np 2:
 *  1. the split step (ldmc_train_step_build_split): gradients graph, then
 *     update graph fed its gradients, equals the fused step graph on the
 *     interpreter (5 steps of an MLP with clipping, weight decay and EMA),
 *     on interp to 1e-6 and on llvm-cpu to 2e-5;
 *  2. the output hook (backend.h) on llvm-cpu: one call per output per run,
 *     with the bytes the run then delivers, the early output reported before
 *     the late one of a chain, and the hook cleared again;
 *  3. ldmc_rng_batch: rank r of N draws rows [r B, (r + 1) B) of the
 *     single-process draw of N B rows (interpreter), for normal and uniform;
 *  4. ldmc_grad_sync_run on one rank returns the executable's outputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "interp_test_util.h"
#include "runtime/grad_sync.h"

enum { MN = 8, MI = 4, MH = 16, MO = 3, K = 5 };

static ldmc_graph *build_mlp(void) {
  ldmc_builder *b = ldmc_builder_new("mlp");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, DIMS(MN, MI)), y = ldmc_parameter(b, "y", LDMC_F32, 2, DIMS(MN, MO));
  ldmc_value w1 = ldmc_parameter(b, "l1.weight", LDMC_F32, 2, DIMS(MI, MH));
  ldmc_value b1 = ldmc_parameter(b, "l1.bias", LDMC_F32, 1, DIMS(MH));
  ldmc_value w2 = ldmc_parameter(b, "l2.weight", LDMC_F32, 2, DIMS(MH, MO));
  ldmc_value b2 = ldmc_parameter(b, "l2.bias", LDMC_F32, 1, DIMS(MO));
  ldmc_value h = ldmc_silu(b, ldmc_add(b, ldmc_matmul(b, x, w1), b1));
  ldmc_value r = ldmc_sub(b, ldmc_add(b, ldmc_matmul(b, h, w2), b2), y);
  ldmc_value loss = ldmc_scale(b, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, r, r), 2, DIMS(0, 1), false), 1.0 / (MN * MO));
  ldmc_builder_output(b, loss, "loss");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g, "%s", ldmc_last_error());
  return g;
}

/* One tensor per parameter of g: data and weights random, state zero, EMA = weights. */
static ldmc_tensor *bind(const ldmc_graph *g) {
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in);
  uint64_t r = 5;
  for (int32_t k = 0; k < np; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    in[k] = th_random(p->dtype, p->shape, &r, -0.7, 0.7);
    free(in[k].name);
    in[k].name = strdup(p->attrs.name);
    const char *nm = p->attrs.name;
    if (!strncmp(nm, "adam_", 5) || !strcmp(nm, "lr") || !strcmp(nm, "step")) memset(in[k].data, 0, in[k].nbytes);
  }
  for (int32_t k = 0; k < np; k++)
    if (!strncmp(in[k].name, "ema.", 4))
      for (int32_t j = 0; j < np; j++)
        if (!strcmp(in[j].name, in[k].name + 4)) memcpy(in[k].data, in[j].data, in[k].nbytes);
  return in;
}

static ldmc_tensor *find(ldmc_tensor *in, int32_t n, const char *name) {
  for (int32_t k = 0; k < n; k++)
    if (!strcmp(in[k].name, name)) return &in[k];
  return NULL;
}

static double rel_diff(const ldmc_tensor *a, const ldmc_tensor *b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < th_numel(&a->shape); i++) {
    double d = ldmc_tensor_get(a, i) - ldmc_tensor_get(b, i);
    num = fmax(num, fabs(d)), den = fmax(den, fabs(ldmc_tensor_get(a, i)));
  }
  return num / (den > 0 ? den : 1);
}

static ldmc_executable *compile(const ldmc_backend_i *be, const ldmc_graph *g, const int32_t *donate) {
  ldmc_compile_opts o = {.threads = 2, .donate = donate, .cache_dir = ""};
  ldmc_executable *e = NULL;
  CHECK_MSG(be->compile(g, &o, &e) == LDMC_OK, "%s: %s", be->name, ldmc_last_error());
  return e;
}

/* ---- 1. split step = fused step ---- */
static void test_split(const ldmc_backend_i *be, double tol) {
  ldmc_graph *m = build_mlp(), *fused = NULL, *grads = NULL, *update = NULL;
  ldmc_train_opts o = {.n_data_params = 2, .weight_decay = 0.05, .clip_norm = 0.5, .ema_decay = 0.9};
  CHECK_MSG(ldmc_train_step_build(m, &o, &fused) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_train_step_build_split(m, &o, &grads, &update) == LDMC_OK, "%s", ldmc_last_error());
  if (!fused || !grads || !update) return;
  CHECK_MSG(!strcmp(grads->output_names[0], "loss") && !strcmp(grads->output_names[1], "grad.l1.weight"),
            "gradients graph outputs %s, %s", grads->output_names[0], grads->output_names[1]);
  CHECK_MSG(!strcmp(update->output_names[0], "grad_norm"), "update graph output 0 is %s", update->output_names[0]);
  CHECK(ldmc_graph_num_params(grads) == ldmc_graph_num_params(fused));
  int32_t npf = ldmc_graph_num_params(fused), npu = ldmc_graph_num_params(update);
  int32_t *pf = malloc((size_t)fused->n_outputs * sizeof *pf), *pu = malloc((size_t)update->n_outputs * sizeof *pu);
  CHECK(ldmc_train_step_state_pairs(fused, pf) == LDMC_OK && ldmc_train_step_state_pairs(update, pu) == LDMC_OK);
  ldmc_tensor *want = bind(fused), *got = bind(fused);
  ldmc_executable *ef = compile(&ldmc_backend_interp, fused, pf);
  ldmc_executable *eg = compile(be, grads, NULL), *eu = compile(be, update, pu);
  ldmc_tensor *uin = calloc((size_t)npu, sizeof *uin);
  ldmc_tensor fo[32] = {{0}}, go[32] = {{0}}, uo[32] = {{0}};
  double worst_loss = 0, worst_norm = 0;
  for (int s = 1; ef && eg && eu && s <= K; s++) {
    for (int side = 0; side < 2; side++) {
      ldmc_tensor *in = side ? got : want;
      ldmc_tensor_set_elem(find(in, npf, "lr"), 0, 0.02);
      ldmc_tensor_set_elem(find(in, npf, "step"), 0, s);
    }
    CHECK(ldmc_executable_run(ef, want, npf, fo, fused->n_outputs) == LDMC_OK);
    CHECK(ldmc_executable_run(eg, got, npf, go, grads->n_outputs) == LDMC_OK);
    for (int32_t k = 0; k < npu; k++) { /* grad.P from the gradients graph, the rest the bound state */
      const ldmc_node *p = &update->nodes[ldmc_graph_param_node(update, k)];
      ldmc_tensor *t = find(got, npf, p->attrs.name);
      for (int32_t j = 0; !t && j < grads->n_outputs; j++)
        if (!strcmp(grads->output_names[j], p->attrs.name)) t = &go[j];
      CHECK_MSG(t, "update input %s unbound", p->attrs.name);
      if (!t) return;
      uin[k] = *t;
      uin[k].owns_data = false;
    }
    CHECK(ldmc_executable_run(eu, uin, npu, uo, update->n_outputs) == LDMC_OK);
    double lf = ldmc_tensor_get(&fo[0], 0), lg = ldmc_tensor_get(&go[0], 0);
    double nf = ldmc_tensor_get(&fo[1], 0), ng = ldmc_tensor_get(&uo[0], 0);
    worst_loss = fmax(worst_loss, fabs(lf - lg) / lf), worst_norm = fmax(worst_norm, fabs(nf - ng) / nf);
    for (int i = 0; i < 32; i++) ldmc_tensor_release(&fo[i]), ldmc_tensor_release(&go[i]), ldmc_tensor_release(&uo[i]);
  }
  double worst = 0;
  const char *wn = "";
  for (int32_t k = 0; k < npf; k++) {
    double d = rel_diff(&want[k], &got[k]);
    if (d > worst) worst = d, wn = want[k].name;
  }
  CHECK_MSG(worst_loss <= tol && worst_norm <= tol, "%s: loss differs by %.3g, grad_norm by %.3g", be->name, worst_loss,
            worst_norm);
  CHECK_MSG(worst <= tol, "%s: after %d split steps %s differs from the fused step by %.3g", be->name, K, wn, worst);
  printf("split step on %s vs fused on interp, %d steps: state %.3g (%s), loss %.3g, grad_norm %.3g\n", be->name, K,
         worst, wn, worst_loss, worst_norm);
  for (int i = 0; i < 32; i++) ldmc_tensor_release(&fo[i]), ldmc_tensor_release(&go[i]), ldmc_tensor_release(&uo[i]);
  for (int32_t k = 0; k < npf; k++) ldmc_tensor_release(&want[k]), ldmc_tensor_release(&got[k]);
  free(want), free(got), free(uin), free(pf), free(pu);
  ldmc_executable_free(ef), ldmc_executable_free(eg), ldmc_executable_free(eu);
  ldmc_graph_free(m), ldmc_graph_free(fused), ldmc_graph_free(grads), ldmc_graph_free(update);
}

/* ---- 2. the output hook ---- */
typedef struct hook_log {
  int calls[4], order[8], n;
  float copy[4][64];
} hook_log;

static void on_ready(void *ctx, int32_t o, const void *data) {
  hook_log *h = ctx;
  if (o < 0 || o >= 4) return;
  h->calls[o]++;
  if (h->n < 8) h->order[h->n++] = o;
  if (data) memcpy(h->copy[o], data, 64 * sizeof(float));
}

static void test_output_hook(void) {
  ldmc_builder *b = ldmc_builder_new("chain");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, DIMS(8, 8)), w = ldmc_parameter(b, "w", LDMC_F32, 2, DIMS(8, 8));
  ldmc_value early = ldmc_unary(b, LDMC_OP_EXP, x), v = early;
  for (int i = 0; i < 6; i++) v = ldmc_unary(b, LDMC_OP_TANH, ldmc_matmul(b, v, w)); /* kernels after early */
  ldmc_builder_output(b, v, "late");
  ldmc_builder_output(b, early, "early");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  ldmc_executable *e = g ? compile(&ldmc_backend_llvm_cpu, g, NULL) : NULL;
  if (!e) return;
  uint64_t r = 9;
  ldmc_tensor in[2] = {th_random(LDMC_F32, SHAPE(8, 8), &r, -1, 1), th_random(LDMC_F32, SHAPE(8, 8), &r, -1, 1)};
  ldmc_tensor out[2] = {{0}};
  hook_log h;
  memset(&h, 0, sizeof h);
  ldmc_output_hook hk = {.ready = on_ready, .ctx = &h};
  CHECK_MSG(ldmc_executable_set_output_hook(e, &hk) == LDMC_OK, "%s", ldmc_last_error());
  for (int run = 0; run < 2; run++) {
    ldmc_tensor_release(&out[0]), ldmc_tensor_release(&out[1]);
    CHECK(ldmc_executable_run(e, in, 2, out, 2) == LDMC_OK);
  }
  CHECK_MSG(h.calls[0] == 2 && h.calls[1] == 2, "hook calls over 2 runs: late %d, early %d", h.calls[0], h.calls[1]);
  CHECK_MSG(h.order[0] == 1 && h.order[1] == 0, "the early output is reported first (got %d then %d)", h.order[0],
            h.order[1]);
  CHECK_MSG(!memcmp(h.copy[0], out[0].data, 64 * 4) && !memcmp(h.copy[1], out[1].data, 64 * 4),
            "the hook saw the delivered bytes");
  CHECK(ldmc_executable_set_output_hook(e, NULL) == LDMC_OK);
  ldmc_tensor_release(&out[0]), ldmc_tensor_release(&out[1]);
  CHECK(ldmc_executable_run(e, in, 2, out, 2) == LDMC_OK);
  CHECK_MSG(h.calls[0] == 2, "a cleared hook is not called (%d calls)", h.calls[0]);
  ldmc_executable *ei = compile(&ldmc_backend_interp, g, NULL);
  CHECK_MSG(ei && ldmc_executable_set_output_hook(ei, &hk) == LDMC_ERR_UNSUPPORTED,
            "the interpreter says it has no output hook");
  ldmc_executable_free(ei);
  for (int i = 0; i < 2; i++) ldmc_tensor_release(&in[i]), ldmc_tensor_release(&out[i]);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
}

/* ---- 3. per-row noise of a shard ---- */
static ldmc_graph *draws(int rank, int ranks, int64_t B) {
  ldmc_batch_shard_set(rank, ranks);
  ldmc_builder *b = ldmc_builder_new("draws");
  ldmc_value key = ldmc_parameter(b, "key", LDMC_I64, 0, NULL);
  ldmc_builder_output(b, ldmc_rng_batch(b, LDMC_OP_RNG_NORMAL, LDMC_F32, 3, DIMS(B, 3, 5), key), "n");
  ldmc_builder_output(b, ldmc_rng_batch(b, LDMC_OP_RNG_UNIFORM, LDMC_F32, 1, DIMS(B), key), "u");
  ldmc_batch_shard_set(0, 1);
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g, "%s", ldmc_last_error());
  return g;
}

static void run_draws(ldmc_graph *g, ldmc_tensor *out) {
  ldmc_executable *e = compile(&ldmc_backend_interp, g, NULL);
  ldmc_tensor key = {0};
  ldmc_tensor_alloc(&key, "key", LDMC_I64, &SHAPE0);
  ((int64_t *)key.data)[0] = 12345;
  CHECK(e && ldmc_executable_run(e, &key, 1, out, 2) == LDMC_OK);
  ldmc_tensor_release(&key);
  ldmc_executable_free(e);
}

static void test_rng_shard(void) {
  enum { B = 3, N = 4 };
  ldmc_graph *whole = draws(0, 1, N * B);
  ldmc_tensor w[2] = {{0}};
  run_draws(whole, w);
  for (int r = 0; r < N; r++) {
    ldmc_graph *g = draws(r, N, B);
    ldmc_tensor s[2] = {{0}};
    run_draws(g, s);
    CHECK_MSG(s[0].data && !memcmp(s[0].data, (float *)w[0].data + r * B * 15, B * 15 * 4),
              "rank %d of %d: normal rows %d..%d of the whole batch's", r, N, r * B, r * B + B - 1);
    CHECK_MSG(s[1].data && !memcmp(s[1].data, (float *)w[1].data + r * B, B * 4), "rank %d of %d: uniform rows", r, N);
    ldmc_tensor_release(&s[0]), ldmc_tensor_release(&s[1]);
    ldmc_graph_free(g);
  }
  int rank, ranks;
  ldmc_batch_shard_get(&rank, &ranks);
  CHECK(rank == 0 && ranks == 1);
  ldmc_tensor_release(&w[0]), ldmc_tensor_release(&w[1]);
  ldmc_graph_free(whole);
}

/* ---- 4. one rank: the gradient sync only runs the step ---- */
static void test_grad_sync_one_rank(void) {
  ldmc_graph *m = build_mlp(), *grads = NULL, *update = NULL;
  ldmc_train_opts o = {.n_data_params = 2};
  CHECK(ldmc_train_step_build_split(m, &o, &grads, &update) == LDMC_OK);
  ldmc_executable *e = grads ? compile(&ldmc_backend_llvm_cpu, grads, NULL) : NULL;
  ldmc_grad_sync *s = NULL;
  CHECK_MSG(e && ldmc_grad_sync_new(e->graph, 1024, &s) == LDMC_OK, "%s", ldmc_last_error());
  if (s) {
    int32_t np = ldmc_graph_num_params(grads);
    ldmc_tensor *in = bind(grads), out[8] = {{0}};
    CHECK(ldmc_grad_sync_run(s, e, in, np) == LDMC_OK);
    CHECK(ldmc_executable_run(e, in, np, out, grads->n_outputs) == LDMC_OK);
    for (int32_t k = 0; k < grads->n_outputs; k++)
      CHECK_MSG(!memcmp(ldmc_grad_sync_output(s, k), out[k].data, out[k].nbytes), "output %s", grads->output_names[k]);
    ldmc_grad_sync_stats gs;
    ldmc_grad_sync_get_stats(s, &gs);
    CHECK(gs.steps == 1 && gs.bytes_per_step == 0 && gs.overlapped);
    for (int32_t k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
    for (int k = 0; k < 8; k++) ldmc_tensor_release(&out[k]);
    free(in);
  }
  ldmc_grad_sync_free(s);
  ldmc_executable_free(e);
  ldmc_graph_free(m), ldmc_graph_free(grads), ldmc_graph_free(update);
}

int main(void) {
  test_split(&ldmc_backend_interp, 1e-6);
  test_split(&ldmc_backend_llvm_cpu, 2e-5);
  test_output_hook();
  test_rng_shard();
  test_grad_sync_one_rank();
  return test_summary("test_data_parallel");
}
