/* Donated state (backends/backend.h): a training step executable binds its
 * state once and every run updates it in place.
 *   - K AdamW steps of a small MLP with donation, on interp and llvm-cpu,
 *     equal K steps without donation (outputs fed back as inputs) on interp;
 *   - the state tensors keep their addresses, donated outputs are left
 *     untouched, and after the first step a llvm-cpu run allocates nothing
 *     (malloc, calloc, realloc and aligned allocations are counted);
 *   - llvm-cpu's plan gives donated roots no arena slot and runs them after
 *     every reader of their parameter (the independent buffer checker);
 *   - a graph whose donated output is read together with the old state is
 *     refused by llvm-cpu and computed correctly by the interpreter;
 *   - bad pairings are refused at compile time with a message;
 *   - a sampler-like step whose donated output is a convolution with a long
 *     K (several K blocks) and an epilogue reading the old state (x' = x*s +
 *     conv(h, w)): its K partials must not go into the state they overwrite. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "test_util.h"

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 1
/* Allocation counting by interposing the allocator (glibc's entry points
 * stay reachable as __libc_*); sanitizers own the allocator, so not there. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t a, size_t b);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
static atomic_long g_allocs;
static atomic_int g_counting;
void *malloc(size_t n) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed)) atomic_fetch_add(&g_allocs, 1);
  return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed)) atomic_fetch_add(&g_allocs, 1);
  return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed)) atomic_fetch_add(&g_allocs, 1);
  return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed)) atomic_fetch_add(&g_allocs, 1);
  return __libc_memalign(align, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
  if (atomic_load_explicit(&g_counting, memory_order_relaxed)) atomic_fetch_add(&g_allocs, 1);
  *out = __libc_memalign(align, n);
  return *out ? 0 : 12;
}
#endif

#define K_STEPS 4

static ldmc_graph *mlp_step(void) {
  ldmc_builder *b = ldmc_builder_new("mlp");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, (int64_t[]){8, 5});
  ldmc_value y = ldmc_parameter(b, "y", LDMC_F32, 2, (int64_t[]){8, 3});
  ldmc_value w1 = ldmc_parameter(b, "w1", LDMC_F32, 2, (int64_t[]){5, 7});
  ldmc_value b1 = ldmc_parameter(b, "b1", LDMC_F32, 1, (int64_t[]){7});
  ldmc_value w2 = ldmc_parameter(b, "w2", LDMC_F32, 2, (int64_t[]){7, 3});
  ldmc_value b2 = ldmc_parameter(b, "b2", LDMC_F32, 1, (int64_t[]){3});
  ldmc_value h = ldmc_silu(b, ldmc_add(b, ldmc_matmul(b, x, w1), b1));
  ldmc_value d = ldmc_sub(b, ldmc_add(b, ldmc_matmul(b, h, w2), b2), y);
  ldmc_value loss = ldmc_scale(b, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, d, d), 2, (int64_t[]){0, 1}, false),
                               1.0 / 24);
  ldmc_builder_output(b, loss, "loss");
  ldmc_status st;
  ldmc_graph *model = ldmc_builder_finish(b, &st);
  CHECK_MSG(model, "model: %s", ldmc_last_error());
  if (!model) return NULL;
  ldmc_train_opts o = {.n_data_params = 2, .weight_decay = 0.01, .clip_norm = 0.5, .ema_decay = 0.9};
  ldmc_graph *step = NULL;
  CHECK_MSG(ldmc_train_step_build(model, &o, &step) == LDMC_OK, "step: %s", ldmc_last_error());
  ldmc_graph_free(model);
  return step;
}

/* x' = x * step / 2 + conv3x3(h, w): conv_out fused with a sampler's update, K = 128 * 9 */
static ldmc_graph *conv_update_step(void) {
  ldmc_builder *b = ldmc_builder_new("conv_update");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, (int64_t[]){2, 4, 8, 8});
  ldmc_value h = ldmc_parameter(b, "h", LDMC_F32, 4, (int64_t[]){2, 128, 8, 8});
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 4, (int64_t[]){4, 128, 3, 3});
  ldmc_value step = ldmc_parameter(b, "step", LDMC_F32, 0, NULL);
  ldmc_value xs = ldmc_scale(b, ldmc_mul(b, x, step), 0.5); /* numpy-style broadcast of the scalar */
  ldmc_builder_output(b, ldmc_add(b, xs, ldmc_conv2d(b, h, w, 1, 1, 1, 1)), "x");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g, "conv_update: %s", ldmc_last_error());
  return g;
}

/* Inputs for step t (1-based): data and weights from a fixed seed, moments 0. */
static void init_inputs(const ldmc_graph *g, ldmc_tensor *in) {
  uint64_t s = 12345;
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor *t = &in[k++];
    if (ldmc_tensor_alloc(t, n->attrs.name, n->dtype, &n->shape) != LDMC_OK) exit(2);
    const char *nm = n->attrs.name;
    bool zero = !strncmp(nm, "adam_", 5);
    int64_t ne = (int64_t)(t->nbytes / 4);
    for (int64_t e = 0; e < ne; e++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      float v = zero ? 0.0f : (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
      if (!strcmp(nm, "lr")) v = 0.05f;
      if (!strcmp(nm, "step")) v = 1.0f;
      ((float *)t->data)[e] = v;
    }
  }
  /* the EMA starts at the weights */
  for (int32_t a = 0; a < ldmc_graph_num_params(g); a++)
    if (!strncmp(in[a].name, "ema.", 4))
      for (int32_t w = 0; w < ldmc_graph_num_params(g); w++)
        if (!strcmp(in[w].name, in[a].name + 4)) memcpy(in[a].data, in[w].data, in[a].nbytes);
}

static int32_t param_index(const ldmc_graph *g, const char *name) {
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) {
      if (!strcmp(g->nodes[i].attrs.name, name)) return k;
      k++;
    }
  return -1;
}

/* The oracle: K steps without donation on the interpreter, outputs fed back. */
static ldmc_tensor *reference(const ldmc_graph *g, const int32_t *pairs) {
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in), *out = calloc((size_t)g->n_outputs, sizeof *out);
  init_inputs(g, in);
  ldmc_executable *e = NULL;
  CHECK(ldmc_backend_interp.compile(g, &(ldmc_compile_opts){0}, &e) == LDMC_OK);
  int32_t si = param_index(g, "step");
  for (int t = 1; e && t <= K_STEPS; t++) {
    ((float *)in[si].data)[0] = (float)t;
    CHECK_MSG(ldmc_executable_run(e, in, np, out, g->n_outputs) == LDMC_OK, "reference: %s", ldmc_last_error());
    for (int32_t o = 0; o < g->n_outputs; o++) {
      if (pairs[o] >= 0) memcpy(in[pairs[o]].data, out[o].data, out[o].nbytes);
      ldmc_tensor_release(&out[o]);
    }
  }
  ldmc_executable_free(e);
  free(out);
  return in;
}

static void donated_run(const ldmc_backend_i *be, const ldmc_graph *g, const int32_t *pairs, const ldmc_tensor *want) {
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in), *out = calloc((size_t)g->n_outputs, sizeof *out);
  void **addr = calloc((size_t)np, sizeof *addr);
  init_inputs(g, in);
  for (int32_t i = 0; i < np; i++) addr[i] = in[i].data;
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 2, .donate = pairs};
  CHECK_MSG(be->compile(g, &o, &e) == LDMC_OK, "%s: compile: %s", be->name, ldmc_last_error());
  int32_t si = param_index(g, "step");
  long allocs = 0;
  for (int t = 1; e && t <= K_STEPS; t++) {
    ((float *)in[si].data)[0] = (float)t;
#ifdef COUNT_ALLOCS
    if (t > 1) atomic_store(&g_counting, 1);
#endif
    ldmc_status st = ldmc_executable_run(e, in, np, out, g->n_outputs);
#ifdef COUNT_ALLOCS
    atomic_store(&g_counting, 0);
#endif
    CHECK_MSG(st == LDMC_OK, "%s step %d: %s", be->name, t, ldmc_last_error());
    for (int32_t o2 = 0; o2 < g->n_outputs; o2++)
      if (pairs[o2] >= 0) CHECK_MSG(!out[o2].data, "%s: donated output %d was allocated", be->name, (int)o2);
  }
#ifdef COUNT_ALLOCS
  allocs = atomic_load(&g_allocs);
  atomic_store(&g_allocs, 0);
  if (be == &ldmc_backend_llvm_cpu)
    CHECK_MSG(allocs == 0, "llvm-cpu: %ld allocations in steps 2..%d (expected none)", allocs, K_STEPS);
  printf("%s: %ld allocations in steps 2..%d\n", be->name, allocs, K_STEPS);
#else
  (void)allocs;
#endif
  double worst = 0;
  for (int32_t i = 0; i < np; i++) {
    CHECK_MSG(in[i].data == addr[i], "%s: input %s moved", be->name, in[i].name);
    int64_t ne = (int64_t)(in[i].nbytes / 4);
    double scale = 1e-6;
    for (int64_t k = 0; k < ne; k++) scale = fmax(scale, fabs(((float *)want[i].data)[k]));
    for (int64_t k = 0; k < ne; k++)
      worst = fmax(worst, fabs(((float *)in[i].data)[k] - ((float *)want[i].data)[k]) / scale);
  }
  double tol = be == &ldmc_backend_interp ? 0 : 1e-5; /* the reference's own arithmetic: bit-identical */
  CHECK_MSG(worst <= tol, "%s: state after %d donated steps differs from the reference by %.3g (tol %.1g)", be->name,
            K_STEPS, worst, tol);
  printf("%s: %d donated steps, state within %.2g of the reference, addresses fixed\n", be->name, K_STEPS, worst);
  for (int32_t o2 = 0; o2 < g->n_outputs; o2++) ldmc_tensor_release(&out[o2]);
  for (int32_t i = 0; i < np; i++) ldmc_tensor_release(&in[i]);
  free(in);
  free(out);
  free(addr);
  ldmc_executable_free(e);
}

static void check_plan(const ldmc_graph *g, const int32_t *pairs) {
  ldmc_compile_opts with = {.threads = 2, .donate = pairs}, without = {.threads = 2};
  ldmc_graph *o1 = NULL, *o2 = NULL;
  ldmc_plan *p1 = NULL, *p2 = NULL;
  CHECK_MSG(ldmc_backend_llvm_cpu.plan(g, &with, &o1, &p1) == LDMC_OK, "plan: %s", ldmc_last_error());
  CHECK_MSG(ldmc_backend_llvm_cpu.plan(g, &without, &o2, &p2) == LDMC_OK, "plan: %s", ldmc_last_error());
  if (p1 && p2) {
    int donated = 0, want = 0;
    for (int32_t o = 0; o < g->n_outputs; o++) want += pairs[o] >= 0;
    for (int32_t k = 0; k < p1->n_kernels; k++)
      if (p1->kernels[k].donated_to >= 0) {
        donated++;
        CHECK(p1->offset[p1->kernels[k].root] < 0);
      }
    CHECK_MSG(donated == want, "%d donated kernels, %d state outputs", donated, want);
    CHECK(ldmc_plan_check_buffers(p1, o1) == LDMC_OK);
    CHECK_MSG(p1->arena_bytes <= p2->arena_bytes, "arena with donation %lld > without %lld",
              (long long)p1->arena_bytes, (long long)p2->arena_bytes);
    printf("plan: %d donated kernels, arena %lld bytes (without donation %lld)\n", donated,
           (long long)p1->arena_bytes, (long long)p2->arena_bytes);
  }
  ldmc_plan_free(p1);
  ldmc_plan_free(p2);
  ldmc_graph_free(o1);
  ldmc_graph_free(o2);
}

/* out0 = 2 p (donated to p), out1 = exp(out0) + p: out1 needs the old p after
 * out0 exists, so p cannot be overwritten in place. */
static void unorderable(void) {
  ldmc_builder *b = ldmc_builder_new("unorderable");
  ldmc_value p = ldmc_parameter(b, "p", LDMC_F32, 1, (int64_t[]){6});
  ldmc_value o0 = ldmc_scale(b, p, 2.0);
  ldmc_value o1 = ldmc_add(b, ldmc_unary(b, LDMC_OP_EXP, o0), p);
  ldmc_builder_output(b, o0, "p");
  ldmc_builder_output(b, o1, "q");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) return;
  int32_t pairs[2] = {0, -1};
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.donate = pairs};
  st = ldmc_backend_llvm_cpu.compile(g, &o, &e);
  CHECK_MSG(st != LDMC_OK && strstr(ldmc_last_error(), "donated"), "llvm-cpu accepted an unorderable donation (%s)",
            st == LDMC_OK ? "ok" : ldmc_last_error());
  printf("llvm-cpu refuses: %s\n", st == LDMC_OK ? "(nothing)" : ldmc_last_error());
  ldmc_executable_free(e);
  e = NULL;
  CHECK(ldmc_backend_interp.compile(g, &o, &e) == LDMC_OK);
  ldmc_tensor in = {0}, out[2] = {{0}};
  if (e && ldmc_tensor_alloc(&in, "p", LDMC_F32, &g->nodes[0].shape) == LDMC_OK) {
    for (int i = 0; i < 6; i++) ((float *)in.data)[i] = 0.1f * (float)i;
    CHECK(ldmc_executable_run(e, &in, 1, out, 2) == LDMC_OK);
    for (int i = 0; i < 6 && out[1].data; i++) {
      float p0 = 0.1f * (float)i;
      CHECK_NEAR(((float *)in.data)[i], 2 * p0, 1e-7);
      CHECK_NEAR(((float *)out[1].data)[i], expf(2 * p0) + p0, 1e-6);
    }
  }
  ldmc_tensor_release(&in);
  ldmc_tensor_release(&out[0]);
  ldmc_tensor_release(&out[1]);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
}

static void bad_pairs(const ldmc_graph *g, const int32_t *pairs) {
  int32_t n = g->n_outputs, *bad = malloc((size_t)n * sizeof *bad);
  ldmc_executable *e = NULL;
  /* loss (rank 0) onto w1 */
  memcpy(bad, pairs, (size_t)n * sizeof *bad);
  bad[0] = param_index(g, "w1");
  CHECK(ldmc_backend_interp.compile(g, &(ldmc_compile_opts){.donate = bad}, &e) != LDMC_OK &&
        strstr(ldmc_last_error(), "cannot be donated"));
  /* two outputs onto one parameter */
  memcpy(bad, pairs, (size_t)n * sizeof *bad);
  for (int32_t o = 1; o < n; o++)
    if (pairs[o] >= 0 && pairs[o - 1] >= 0) {
      bad[o] = pairs[o - 1];
      break;
    }
  CHECK(ldmc_backend_llvm_cpu.compile(g, &(ldmc_compile_opts){.donate = bad}, &e) != LDMC_OK);
  /* donated state declared a weight */
  ldmc_compile_opts w = {.donate = pairs, .params_are_weights = true, .n_activation_params = 2};
  CHECK(ldmc_backend_interp.compile(g, &w, &e) != LDMC_OK && strstr(ldmc_last_error(), "declared a weight"));
  printf("bad pairings refused: %s\n", ldmc_last_error());
  free(bad);
}

int main(void) {
  ldmc_graph *g = mlp_step();
  if (!g) return test_summary("test_donation");
  int32_t *pairs = malloc((size_t)g->n_outputs * sizeof *pairs);
  CHECK(ldmc_train_step_state_pairs(g, pairs) == LDMC_OK);
  ldmc_tensor *want = reference(g, pairs);
  donated_run(&ldmc_backend_interp, g, pairs, want);
  donated_run(&ldmc_backend_llvm_cpu, g, pairs, want);
  check_plan(g, pairs);
  unorderable();
  bad_pairs(g, pairs);
  ldmc_graph *cu = conv_update_step();
  if (cu) {
    int32_t cu_pairs[1] = {0};
    ldmc_tensor *cu_want = reference(cu, cu_pairs);
    donated_run(&ldmc_backend_llvm_cpu, cu, cu_pairs, cu_want);
    for (int32_t i = 0; i < ldmc_graph_num_params(cu); i++) ldmc_tensor_release(&cu_want[i]);
    free(cu_want);
    ldmc_graph_free(cu);
  }
  for (int32_t i = 0; i < ldmc_graph_num_params(g); i++) ldmc_tensor_release(&want[i]);
  free(want);
  free(pairs);
  ldmc_graph_free(g);
  return test_summary("test_donation");
}
