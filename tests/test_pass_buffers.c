/* Scheduling and buffer assignment.
 *  - hand-computed peaks: a two-branch graph whose root order holds both big
 *    intermediates at once, and in-place kernels;
 *  - the independent checker accepts real plans and rejects corrupted ones
 *    (overlap of live buffers, illegal in-place, misalignment, overflow,
 *    order against a dependency);
 *  - execution over the arena: every kernel's nodes are evaluated (the pass
 *    evaluator) reading inputs from their arena offsets and writing the root
 *    to its offset; after every kernel, all bytes not covered by a live
 *    buffer are poisoned with NaN. Outputs must match the interpreter on the
 *    unoptimized graph (atol 1e-5, rtol 1e-4), so a use after free or an
 *    overlap shows up as NaN or wrong values. A corrupted plan must fail it. */
#include "pass_random_graph.h"
#include "passes/pass_util.h"

static ldmc_plan *compile(ldmc_graph *g, const char *target) {
  ldmc_plan *plan = NULL;
  ldmc_status s = ldmc_compile_plan(g, ldmc_target_find(target), NULL, &plan);
  CHECK_MSG(s == LDMC_OK, "compile %s: %s", target, ldmc_last_error());
  return plan;
}

static void test_schedule_peak(void) {
  /* b1 = x.w1, b2 = x.w2 (64 KiB each), r1 = sum(b1), r2 = sum(b2) (256 B), out = r1 + r2.
     Root order b1 b2 r1 r2: peak 2*65536 + 256. Best: b1 r1 b2 r2: 65536 + 2*256. */
  ldmc_graph *g = ptu_parse("graph t {\n  %0 = f32[64,32] parameter() name=\"x\"\n  %1 = f32[32,256] parameter() name=\"w1\"\n"
                            "  %2 = f32[32,256] parameter() name=\"w2\"\n"
                            "  %3 = f32[64,256] dot_general(%0, %1) lhs_batch={} rhs_batch={} lhs_contract={1} rhs_contract={0}\n"
                            "  %4 = f32[64,256] dot_general(%0, %2) lhs_batch={} rhs_batch={} lhs_contract={1} rhs_contract={0}\n"
                            "  %5 = f32[64] reduce(%3) reduce=sum dims={1}\n  %6 = f32[64] reduce(%4) reduce=sum dims={1}\n"
                            "  %7 = f32[64] add(%5, %6)\n  return %7 \"y\"\n}\n");
  if (!g) return;
  ldmc_plan *p = compile(g, "cpu-nhwc");
  if (p) {
    /* the add is the second reduction's epilogue: kernels b1, b2, r1, r2+add */
    CHECK(p->n_kernels == 4);
    CHECK_MSG(p->peak_in_root_order == 131328 && p->peak_scheduled == 66048, "peaks %lld / %lld",
              (long long)p->peak_in_root_order, (long long)p->peak_scheduled);
    /* r2+add writes in place over r1 (its last reader), so the arena holds one b and one r */
    CHECK(p->live_peak_bytes == 65792 && p->arena_bytes == 65792);
    int32_t k = p->kernel_of[g->outputs[0]];
    CHECK(k >= 0 && p->kernels[k].inplace_of == 5 && p->offset[7] == p->offset[5]);
    CHECK(ldmc_plan_check_buffers(p, g) == LDMC_OK);
  }
  ldmc_plan_free(p);
  ldmc_graph_free(g);
}

/* a = x.y, t = transpose(a) and e = exp(a) read it: e (the last reader, elementwise) reuses a's bytes */
static const char *k_inplace =
    "graph t {\n  %0 = f32[8,8] parameter() name=\"x\"\n  %1 = f32[8,8] parameter() name=\"y\"\n"
    "  %2 = f32[8,8] dot_general(%0, %1) lhs_batch={} rhs_batch={} lhs_contract={1} rhs_contract={0}\n"
    "  %3 = f32[8,8] transpose(%2) dims={1,0}\n  %4 = f32[8,8] exp(%2)\n  return %3 \"t\", %4 \"e\"\n}\n";

static void test_inplace_and_checker(void) {
  ldmc_graph *g = ptu_parse(k_inplace);
  if (!g) return;
  ldmc_plan *p = compile(g, "cpu-nhwc");
  if (!p) return;
  CHECK(p->n_kernels == 3 && p->kernels[p->kernel_of[4]].inplace_of == 2 && p->offset[4] == p->offset[2]);
  CHECK(p->arena_bytes == 512 && p->offset[3] != p->offset[2]);
  CHECK(ldmc_plan_check_buffers(p, g) == LDMC_OK);
  /* corruptions, each undone after */
  int64_t saved = p->offset[3];
  p->offset[3] = p->offset[2]; /* t over a while e still needs a */
  CHECK(ldmc_plan_check_buffers(p, g) != LDMC_OK);
  p->offset[3] = saved + 64 > p->arena_bytes ? saved - 32 : saved + 32; /* misaligned */
  CHECK(ldmc_plan_check_buffers(p, g) != LDMC_OK);
  p->offset[3] = saved;
  p->arena_bytes -= 64; /* something ends past the arena */
  CHECK(ldmc_plan_check_buffers(p, g) != LDMC_OK);
  p->arena_bytes += 64;
  int32_t o0 = p->order[0];
  p->order[0] = p->order[1];
  p->order[1] = o0; /* a reader before the dot */
  CHECK(ldmc_plan_check_buffers(p, g) != LDMC_OK);
  p->order[1] = p->order[0];
  p->order[0] = o0;
  CHECK(ldmc_plan_check_buffers(p, g) == LDMC_OK);
  ldmc_plan_free(p);
  ldmc_graph_free(g);
  /* in place is illegal when the reader permutes: a = x.y, n = neg(transpose(a)) */
  g = ptu_parse("graph t {\n  %0 = f32[8,8] parameter() name=\"x\"\n  %1 = f32[8,8] parameter() name=\"y\"\n"
                "  %2 = f32[8,8] dot_general(%0, %1) lhs_batch={} rhs_batch={} lhs_contract={1} rhs_contract={0}\n"
                "  %3 = f32[8,8] transpose(%2) dims={1,0}\n  %4 = f32[8,8] neg(%3)\n  return %4 \"n\"\n}\n");
  if (!g) return;
  p = compile(g, "llvm-cpu"); /* (the cpu target would sink the neg above the transpose) */
  if (p) {
    CHECK(p->n_kernels == 2 && p->kernel_of[3] == p->kernel_of[4] && p->kernels[p->kernel_of[4]].inplace_of == -1);
    CHECK(p->offset[4] != p->offset[2] && ldmc_plan_check_buffers(p, g) == LDMC_OK);
    p->offset[4] = p->offset[2];
    CHECK(ldmc_plan_check_buffers(p, g) != LDMC_OK);
    CHECK(strstr(ldmc_last_error(), "in-place") != NULL);
  }
  ldmc_plan_free(p);
  ldmc_graph_free(g);
}

/* ---- execution over the arena ---- */

typedef struct exec {
  const ldmc_graph *g;
  const ldmc_plan *p;
  uint8_t *arena;
  ldmc_tensor *held;  /* values outside the arena: parameters, constants, splats, prepack outputs */
  bool *have;
  int32_t *def, *last; /* per root, from the graph and the order (computed here, not by the pass) */
} exec;

static ldmc_tensor view(const exec *x, int32_t id) {
  const ldmc_node *n = &x->g->nodes[id];
  ldmc_tensor t = {.dtype = n->dtype, .shape = n->shape, .nbytes = (size_t)ldmc_node_bytes(n)};
  t.data = x->arena + x->p->offset[id];
  return t;
}

/* Value of a node computed outside the kernels (sources, splats). */
static bool held_value(exec *x, int32_t id) {
  if (x->have[id]) return true;
  const ldmc_node *n = &x->g->nodes[id];
  ldmc_tensor in[4];
  for (int k = 0; k < n->n_operands; k++) {
    if (!held_value(x, n->operands[k])) return false;
    in[k] = x->held[n->operands[k]];
  }
  if (ldmc_eval_node(n, in, &x->held[id]) != LDMC_OK) return false;
  x->have[id] = true;
  return true;
}

static bool run_plan(exec *x, const ldmc_tensor *ins, ldmc_tensor *outs, bool poison) {
  const ldmc_graph *g = x->g;
  const ldmc_plan *p = x->p;
  int32_t nn = g->n_nodes, pi = 0;
  for (int32_t i = 0; i < nn; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) {
      x->held[i] = ins[pi++];
      x->held[i].owns_data = false;
      x->held[i].name = NULL;
      x->have[i] = true;
    }
  memset(x->arena, 0xff, (size_t)p->arena_bytes); /* 0xffffffff is a NaN */
  ldmc_tensor *tmp = calloc((size_t)nn, sizeof *tmp);
  bool ok = true;
  for (int32_t t = 0; t < p->n_kernels && ok; t++) {
    const ldmc_kernel *kr = &p->kernels[p->order[t]];
    for (int32_t j = 0; j < kr->n_nodes && ok; j++) {
      int32_t id = kr->nodes[j];
      const ldmc_node *n = &g->nodes[id];
      ldmc_tensor in[16];
      for (int k = 0; k < n->n_operands && ok; k++) {
        int32_t a = n->operands[k], ka = p->kernel_of[a];
        if (ka == p->order[t]) in[k] = tmp[a];
        else if (ka < 0 || p->offset[a] < 0) ok = held_value(x, a), in[k] = x->held[a];
        else in[k] = view(x, a);
      }
      if (ok) ok = ldmc_eval_node(n, in, &tmp[id]) == LDMC_OK;
    }
    if (!ok) break;
    if (p->offset[kr->root] < 0) { /* prepack output, or a reshape of a source: outside the arena */
      x->held[kr->root] = tmp[kr->root];
      x->have[kr->root] = true;
      memset(&tmp[kr->root], 0, sizeof tmp[kr->root]);
    } else if (p->offset[kr->root] >= 0) {
      memcpy(x->arena + p->offset[kr->root], tmp[kr->root].data, tmp[kr->root].nbytes);
    }
    for (int32_t j = 0; j < kr->n_nodes; j++) ldmc_tensor_release(&tmp[kr->nodes[j]]);
    if (!poison) continue;
    /* poison every byte no live buffer covers */
    uint8_t *keep = calloc((size_t)p->arena_bytes + 1, 1);
    for (int32_t k = 0; k < p->n_kernels; k++) {
      int32_t r = p->kernels[k].root;
      if (p->offset[r] < 0 || x->def[r] > t || x->last[r] <= t) continue;
      memset(keep + p->offset[r], 1, (size_t)ldmc_node_bytes(&g->nodes[r]));
    }
    for (int64_t b = 0; b < p->arena_bytes; b++)
      if (!keep[b]) x->arena[b] = 0xff;
    free(keep);
  }
  free(tmp);
  for (int32_t i = 0; i < g->n_outputs && ok; i++) {
    int32_t o = g->outputs[i], ko = p->kernel_of[o];
    ldmc_tensor src;
    if (ko < 0 || p->offset[o] < 0) {
      ok = held_value(x, o);
      src = x->held[o];
    } else {
      src = view(x, o);
    }
    if (ok) ok = ldmc_tensor_alloc(&outs[i], g->output_names[i], src.dtype, &src.shape) == LDMC_OK;
    if (ok) memcpy(outs[i].data, src.data, src.nbytes);
  }
  return ok;
}

/* Liveness from scratch: a root lives from its kernel's position to its last reader's; outputs to the end. */
static void liveness(exec *x) {
  const ldmc_plan *p = x->p;
  int32_t *pos = calloc((size_t)p->n_kernels, sizeof *pos);
  for (int32_t t = 0; t < p->n_kernels; t++) pos[p->order[t]] = t;
  for (int32_t i = 0; i < x->g->n_nodes; i++) x->def[i] = x->last[i] = -1;
  for (int32_t k = 0; k < p->n_kernels; k++) x->def[p->kernels[k].root] = x->last[p->kernels[k].root] = pos[k];
  for (int32_t i = 0; i < x->g->n_nodes; i++) {
    int32_t k = p->kernel_of[i];
    if (k < 0) continue;
    for (int o = 0; o < x->g->nodes[i].n_operands; o++) {
      int32_t a = x->g->nodes[i].operands[o];
      if (p->kernel_of[a] >= 0 && p->kernel_of[a] != k && pos[k] > x->last[a]) x->last[a] = pos[k];
    }
  }
  for (int32_t i = 0; i < x->g->n_outputs; i++) x->last[x->g->outputs[i]] = INT32_MAX;
  free(pos);
}

/* Runs the optimized graph's plan over its arena and compares with the
 * interpreter on ref; returns the error measure (<= 1 passes). */
static double arena_run(const ldmc_graph *ref, const ldmc_graph *g, const ldmc_plan *p) {
  exec x = {.g = g, .p = p};
  x.arena = aligned_alloc(64, (size_t)(p->arena_bytes + 64) / 64 * 64);
  x.held = calloc((size_t)g->n_nodes, sizeof *x.held);
  x.have = calloc((size_t)g->n_nodes, sizeof *x.have);
  x.def = calloc((size_t)g->n_nodes, sizeof *x.def);
  x.last = calloc((size_t)g->n_nodes, sizeof *x.last);
  liveness(&x);
  ldmc_tensor *ins = NULL, *want = NULL;
  int n = ptu_inputs(ref, &ins);
  ldmc_tensor *got = calloc((size_t)g->n_outputs + 1, sizeof *got);
  double err = INFINITY;
  bool ran = run_plan(&x, ins, got, true);
  CHECK_MSG(ran, "arena run failed: %s", ldmc_last_error());
  if (ran && ptu_interp(ref, ins, n, &want)) err = ptu_err(got, want, g->n_outputs, 1e-5, 1e-4);
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (x.have[i] && g->nodes[i].op != LDMC_OP_PARAMETER) ldmc_tensor_release(&x.held[i]);
  if (want) ptu_free_tensors(want, ref->n_outputs);
  ptu_free_tensors(got, g->n_outputs);
  ptu_free_tensors(ins, n);
  free(x.arena);
  free(x.held);
  free(x.have);
  free(x.def);
  free(x.last);
  return err;
}

static void test_arena_random(void) {
  const char *targets[] = {"cpu-nhwc", "llvm-cpu", "tpusim"};
  int ran = 0, caught = 0, corrupted = 0;
  for (int i = 0; i < 40; i++) {
    ldmc_graph *ref = prg_build(12 + i % 16, false);
    if (!ref) continue;
    for (int t = 0; t < 3; t++) {
      ldmc_graph *g = ldmc_graph_clone(ref);
      ldmc_plan *p = compile(g, targets[t]);
      if (p && p->n_kernels > 0) {
        double e = arena_run(ref, g, p);
        CHECK_MSG(e <= 1, "random graph %d on %s: arena results differ (error %.3g)", i, targets[t], e);
        if (e > 1 && getenv("LDMC_TEST_VERBOSE")) {
          char *txt = ldmc_graph_print(g), *pl = ldmc_plan_print(p, g);
          fprintf(stderr, "%s%s", txt, pl);
          free(txt);
          free(pl);
        }
        ran++;
        /* move the latest-defined buffer onto one that is still live at its definition: the checker
           rejects it and the poisoned run disagrees (unless the victim is never read again) */
        int32_t victim = -1, culprit = -1;
        for (int32_t a = 0; a < p->n_kernels && victim < 0; a++)
          for (int32_t b = 0; b < p->n_kernels && victim < 0; b++) {
            int32_t ra = p->kernels[p->order[a]].root, rb = p->kernels[p->order[b]].root;
            if (a < b && p->offset[ra] >= 0 && p->offset[rb] >= 0 && p->offset[ra] != p->offset[rb] &&
                p->kernels[p->order[b]].kind != LDMC_KERNEL_ALIAS && ldmc_node_bytes(&g->nodes[ra]) >= ldmc_node_bytes(&g->nodes[rb])) {
              bool read_after = false; /* ra read by a kernel after b */
              for (int32_t c = b + 1; c < p->n_kernels && !read_after; c++)
                for (int32_t q = 0; q < p->kernels[p->order[c]].n_inputs; q++)
                  read_after |= p->kernels[p->order[c]].inputs[q] == ra;
              bool b_reads_a = false;
              for (int32_t q = 0; q < p->kernels[p->order[b]].n_inputs; q++) b_reads_a |= p->kernels[p->order[b]].inputs[q] == ra;
              if (read_after && !b_reads_a) {
                victim = ra;
                culprit = rb;
              }
            }
          }
        if (victim >= 0) {
          corrupted++;
          int64_t saved = p->offset[culprit];
          p->offset[culprit] = p->offset[victim];
          CHECK_MSG(ldmc_plan_check_buffers(p, g) != LDMC_OK, "checker missed an overlap (graph %d, %s)", i, targets[t]);
          caught += arena_run(ref, g, p) > 1;
          p->offset[culprit] = saved;
        }
      }
      ldmc_plan_free(p);
      ldmc_graph_free(g);
    }
    ldmc_graph_free(ref);
  }
  printf("arena runs: %d plans, %d corrupted, %d of those caught by the poisoned run\n", ran, corrupted, caught);
  CHECK(ran >= 90);
  CHECK(corrupted > 10 && caught >= corrupted * 3 / 4);
}

int main(void) {
  test_schedule_peak();
  test_inplace_and_checker();
  test_arena_random();
  return test_summary("test_pass_buffers");
}
