/* Fusion, tiling, attention recognition, decomposition and layout on text IR.
 * Expected kernels (kinds, members, inputs) are worked out by hand from the
 * rules in passes/fusion.c; graph rewrites must keep interpreter results
 * (atol 1e-5, rtol 1e-5: reassociation-free rewrites of f32 math). */
#include "pass_test_util.h"

#define CONV_ATTRS                                                                                      \
  "window_stride={1,1} pad_low={1,1} pad_high={1,1} lhs_dilation={1,1} rhs_dilation={1,1} "            \
  "input_dims={0,1,2,3} kernel_dims={0,1,2,3} output_dims={0,1,2,3} groups=1"

static ldmc_plan *fuse(ldmc_graph *g, const char *target) {
  ldmc_plan *p = ldmc_plan_new();
  CHECK(ptu_run_plan(&ldmc_pass_fusion, g, target, p));
  return p;
}

/* Kernel containing node id: its kind and member count. */
static void expect_kernel(const ldmc_plan *p, int32_t id, ldmc_kernel_kind kind, int n_nodes, int n_inputs) {
  int32_t k = p->kernel_of[id];
  CHECK_MSG(k >= 0, "%%%d is in no kernel", (int)id);
  if (k < 0) return;
  const ldmc_kernel *kr = &p->kernels[k];
  CHECK_MSG(kr->kind == kind && kr->n_nodes == n_nodes && kr->n_inputs == n_inputs,
            "kernel of %%%d: %s with %d nodes, %d inputs; expected %s, %d, %d", (int)id, ldmc_kernel_kind_name(kr->kind),
            (int)kr->n_nodes, (int)kr->n_inputs, ldmc_kernel_kind_name(kind), n_nodes, n_inputs);
}

static void test_fusion_patterns(void) {
  /* conv + bias + silu + residual: one contraction kernel {4,5,6,7,8} reading x, w, b, r */
  ldmc_graph *g = ptu_parse("graph t {\n  %0 = f32[1,4,6,6] parameter() name=\"x\"\n"
                            "  %1 = f32[8,4,3,3] parameter() name=\"w\"\n  %2 = f32[8] parameter() name=\"b\"\n"
                            "  %3 = f32[1,8,6,6] parameter() name=\"r\"\n"
                            "  %4 = f32[1,8,6,6] convolution(%0, %1) " CONV_ATTRS "\n"
                            "  %5 = f32[1,8,6,6] broadcast_in_dim(%2) dims={1}\n  %6 = f32[1,8,6,6] add(%4, %5)\n"
                            "  %7 = f32[1,8,6,6] silu(%6)\n  %8 = f32[1,8,6,6] add(%7, %3)\n"
                            "  return %8 \"y\"\n}\n");
  if (g) {
    ldmc_plan *p = fuse(g, "llvm-cpu");
    CHECK(p->n_kernels == 1);
    expect_kernel(p, 4, LDMC_KERNEL_CONTRACTION, 5, 4);
    ldmc_plan_free(p);
    ldmc_graph_free(g);
  }
  /* group_norm + silu: a norm kernel; its consumer conv is another kernel */
  g = ptu_parse("graph t {\n  %0 = f32[1,8,4,4] parameter() name=\"x\"\n  %1 = f32[8] parameter() name=\"g\"\n"
                "  %2 = f32[8] parameter() name=\"b\"\n  %3 = f32[8,8,3,3] parameter() name=\"w\"\n"
                "  %4 = f32[1,8,4,4] group_norm(%0, %1, %2) groups=4 eps=1e-5\n  %5 = f32[1,8,4,4] silu(%4)\n"
                "  %6 = f32[1,8,4,4] convolution(%5, %3) " CONV_ATTRS "\n  return %6 \"y\"\n}\n");
  if (g) {
    ldmc_plan *p = fuse(g, "llvm-cpu");
    CHECK(p->n_kernels == 2);
    expect_kernel(p, 5, LDMC_KERNEL_NORM, 2, 3);
    expect_kernel(p, 6, LDMC_KERNEL_CONTRACTION, 1, 2);
    ldmc_plan_free(p);
    ldmc_graph_free(g);
  }
  /* attention with a scale epilogue; a producer of q stays outside (no prologue fusion) */
  g = ptu_parse("graph t {\n  %0 = f32[2,5,4] parameter() name=\"q\"\n  %1 = f32[2,7,4] parameter() name=\"k\"\n"
                "  %2 = f32[2,7,3] parameter() name=\"v\"\n  %3 = f32[2,5,4] exp(%0)\n"
                "  %4 = f32[2,5,3] attention(%3, %1, %2) scale=0.5\n  %5 = f32[] constant() value=2\n"
                "  %6 = f32[2,5,3] broadcast_in_dim(%5) dims={}\n  %7 = f32[2,5,3] mul(%4, %6)\n  return %7 \"y\"\n}\n");
  if (g) {
    ldmc_plan *p = fuse(g, "cpu-nhwc");
    CHECK(p->n_kernels == 2 && p->kernel_of[6] == -1 && p->kernel_of[5] == -1);
    expect_kernel(p, 7, LDMC_KERNEL_ATTENTION, 2, 4); /* inputs %3 %1 %2 and the splat %6 */
    expect_kernel(p, 3, LDMC_KERNEL_ELEMENTWISE, 1, 1);
    ldmc_plan_free(p);
    ldmc_graph_free(g);
  }
  /* a value used by two kernels, a graph output used inside, a reduction with its prologue */
  g = ptu_parse("graph t {\n  %0 = f32[4,6] parameter() name=\"x\"\n  %1 = f32[4,6] exp(%0)\n"
                "  %2 = f32[4,6] neg(%1)\n  %3 = f32[4,6] tanh(%1)\n  %4 = f32[4,6] mul(%0, %0)\n"
                "  %5 = f32[4] reduce(%4) reduce=sum dims={1}\n  %6 = f32[4,6] broadcast_in_dim(%5) dims={0}\n"
                "  %7 = f32[4,6] div(%3, %6)\n  %8 = f32[4,6] abs(%7)\n"
                "  return %2 \"a\", %7 \"b\", %8 \"c\"\n}\n");
  if (g) {
    ldmc_plan *p = fuse(g, "cpu-nhwc");
    /* {1} {2} {4,5} {3,6,7} {8}: %1 feeds two kernels, %7 is an output, %5 feeds a broadcast */
    CHECK(p->n_kernels == 5);
    expect_kernel(p, 1, LDMC_KERNEL_ELEMENTWISE, 1, 1);
    expect_kernel(p, 5, LDMC_KERNEL_REDUCTION, 2, 1);
    expect_kernel(p, 7, LDMC_KERNEL_ELEMENTWISE, 3, 2);
    expect_kernel(p, 8, LDMC_KERNEL_ELEMENTWISE, 1, 1);
    ldmc_plan_free(p);
    /* the reference target fuses nothing: one kernel per non-source node */
    p = fuse(g, "interp");
    CHECK(p->n_kernels == 8);
    ldmc_plan_free(p);
    ldmc_graph_free(g);
  }
  /* prepack: a relayout of a weight runs once; a broadcast of a bias stays fusible */
  g = ptu_parse("graph t {\n  %0 = f32[3,4] parameter() name=\"x\"\n  %1 = f32[5,4] parameter() name=\"w\"\n"
                "  %2 = f32[5] parameter() name=\"b\"\n  %3 = f32[4,5] transpose(%1) dims={1,0}\n"
                "  %4 = f32[3,5] dot_general(%0, %3) lhs_batch={} rhs_batch={} lhs_contract={1} rhs_contract={0}\n"
                "  %5 = f32[3,5] broadcast_in_dim(%2) dims={1}\n  %6 = f32[3,5] add(%4, %5)\n  return %6 \"y\"\n}\n");
  if (g) {
    ldmc_plan *p = ldmc_plan_new();
    ldmc_status st = LDMC_OK;
    ldmc_pass_ctx ctx = {.target = ldmc_target_find("cpu-nhwc"), .plan = p, .status = &st, .params_are_weights = true,
                         .n_activation_params = 1};
    CHECK(ldmc_pass_fusion.run(g, &ctx) && st == LDMC_OK);
    CHECK(p->n_kernels == 2);
    expect_kernel(p, 3, LDMC_KERNEL_PREPACK, 1, 1);
    expect_kernel(p, 6, LDMC_KERNEL_CONTRACTION, 3, 3);
    ldmc_plan_free(p);
    ldmc_graph_free(g);
  }
}

/* Tiles fit the budget the target gives them and respect the problem size. */
static void test_tiling(void) {
  ldmc_graph *g = ptu_parse("graph t {\n  %0 = f32[1,64,32,32] parameter() name=\"x\"\n"
                            "  %1 = f32[128,64,3,3] parameter() name=\"w\"\n"
                            "  %2 = f32[1,128,32,32] convolution(%0, %1) " CONV_ATTRS "\n"
                            "  %3 = f32[2,1024,64] parameter() name=\"q\"\n  %4 = f32[2,77,64] parameter() name=\"k\"\n"
                            "  %5 = f32[2,1024,64] attention(%3, %4, %4) scale=0.125\n  %6 = f32[1,128,32,32] exp(%2)\n"
                            "  return %6 \"a\", %5 \"b\"\n}\n");
  if (!g) return;
  const char *targets[] = {"cpu-nhwc", "tpusim", "nvptx"};
  for (int t = 0; t < 3; t++) {
    const ldmc_target *tg = ldmc_target_find(targets[t]);
    ldmc_plan *p = fuse(g, targets[t]);
    CHECK(ptu_run_plan(&ldmc_pass_tiling, g, targets[t], p));
    int64_t budget = tg->scratchpad_bytes ? tg->scratchpad_bytes / 2 : tg->l2_bytes / 2;
    for (int32_t k = 0; k < p->n_kernels; k++) {
      const ldmc_kernel *kr = &p->kernels[k];
      if (kr->kind == LDMC_KERNEL_CONTRACTION) {
        /* implicit GEMM: M = 32*32 pixels, N = 128 out channels, K = 64*9 */
        int64_t mt = kr->tile[0], nt = kr->tile[1], kt = kr->tile[2];
        CHECK(kr->n_tile == 3 && mt >= 1 && mt <= 1024 && nt >= 1 && nt <= 128 && kt >= 1 && kt <= 576);
        CHECK_MSG((mt * kt + kt * nt + mt * nt) * 4 <= budget, "%s: conv tile %lldx%lldx%lld over budget", targets[t],
                  (long long)mt, (long long)nt, (long long)kt);
        CHECK(nt == 128 || nt % (tg->vector_bytes / 4) == 0);
      } else if (kr->kind == LDMC_KERNEL_ATTENTION) {
        int64_t br = kr->tile[0], bc = kr->tile[1];
        CHECK(kr->n_tile == 2 && br >= 1 && br <= 1024 && bc >= 1 && bc <= 77);
        CHECK_MSG((br * 64 + 2 * bc * 64 + br * bc) * 4 <= budget, "%s: attention tile %lldx%lld over budget", targets[t],
                  (long long)br, (long long)bc);
      }
    }
    ldmc_plan_free(p);
  }
  ldmc_graph_free(g);
}

static void attention_case(const char *text, bool expect, double scale) {
  ldmc_graph *g = ptu_parse(text);
  if (!g) return;
  ldmc_graph *ref = ldmc_graph_clone(g);
  bool ch = ptu_run(&ldmc_pass_attention, g);
  CHECK_MSG(ch == expect, "attention matched=%d, expected %d", ch, expect);
  ptu_run(&ldmc_pass_dce, g);
  if (expect) {
    const ldmc_node *o = &g->nodes[g->outputs[0]];
    CHECK(o->op == LDMC_OP_ATTENTION && ptu_count(g, LDMC_OP_DOT_GENERAL) == 0);
    CHECK_NEAR(o->attrs.scale, scale, 1e-7);
  }
  ptu_same_results("attention", ref, g, 1e-5, 1e-5);
  ldmc_graph_free(ref);
  ldmc_graph_free(g);
}

#define QKV                                                                                                  \
  "graph t {\n  %0 = f32[2,5,4] parameter() name=\"q\"\n  %1 = f32[2,7,4] parameter() name=\"k\"\n"          \
  "  %2 = f32[2,7,3] parameter() name=\"v\"\n"
#define DOT_QK "lhs_batch={0} rhs_batch={0} lhs_contract={2} rhs_contract={2}"
#define DOT_PV "lhs_batch={0} rhs_batch={0} lhs_contract={2} rhs_contract={1}"

static void test_attention(void) {
  /* composite softmax, scale on the logits */
  attention_case(QKV "  %3 = f32[2,5,7] dot_general(%0, %1) " DOT_QK "\n  %4 = f32[] constant() value=0.5\n"
                     "  %5 = f32[2,5,7] broadcast_in_dim(%4) dims={}\n  %6 = f32[2,5,7] mul(%3, %5)\n"
                     "  %7 = f32[2,5,7] softmax(%6) axis=2\n  %8 = f32[2,5,3] dot_general(%7, %2) " DOT_PV "\n"
                     "  return %8 \"y\"\n}\n",
                 true, 0.5);
  /* decomposed softmax, division by a constant (scale 1/4), k given transposed */
  attention_case(QKV "  %3 = f32[2,4,7] transpose(%1) dims={0,2,1}\n"
                     "  %4 = f32[2,5,7] dot_general(%0, %3) lhs_batch={0} rhs_batch={0} lhs_contract={2} rhs_contract={1}\n"
                     "  %5 = f32[] constant() value=4\n  %6 = f32[2,5,7] broadcast_in_dim(%5) dims={}\n"
                     "  %7 = f32[2,5,7] div(%4, %6)\n  %8 = f32[2,5] reduce(%7) reduce=max dims={2}\n"
                     "  %9 = f32[2,5,7] broadcast_in_dim(%8) dims={0,1}\n  %10 = f32[2,5,7] sub(%7, %9)\n"
                     "  %11 = f32[2,5,7] exp(%10)\n  %12 = f32[2,5] reduce(%11) reduce=sum dims={2}\n"
                     "  %13 = f32[2,5,7] broadcast_in_dim(%12) dims={0,1}\n  %14 = f32[2,5,7] div(%11, %13)\n"
                     "  %15 = f32[2,5,3] dot_general(%14, %2) " DOT_PV "\n  return %15 \"y\"\n}\n",
                 true, 0.25);
  /* scale on q, no scale on logits */
  attention_case(QKV "  %3 = f32[] constant() value=0.25\n  %4 = f32[2,5,4] broadcast_in_dim(%3) dims={}\n"
                     "  %5 = f32[2,5,4] mul(%0, %4)\n  %6 = f32[2,5,7] dot_general(%5, %1) " DOT_QK "\n"
                     "  %7 = f32[2,5,7] softmax(%6) axis=2\n  %8 = f32[2,5,3] dot_general(%7, %2) " DOT_PV "\n"
                     "  return %8 \"y\"\n}\n",
                 true, 0.25);
  /* the probabilities are also an output: no match */
  attention_case(QKV "  %3 = f32[2,5,7] dot_general(%0, %1) " DOT_QK "\n  %4 = f32[2,5,7] softmax(%3) axis=2\n"
                     "  %5 = f32[2,5,3] dot_general(%4, %2) " DOT_PV "\n  return %5 \"y\", %4 \"p\"\n}\n",
                 false, 1);
  /* softmax over the wrong axis: no match */
  attention_case(QKV "  %3 = f32[2,5,7] dot_general(%0, %1) " DOT_QK "\n  %4 = f32[2,5,7] softmax(%3) axis=1\n"
                     "  %5 = f32[2,5,3] dot_general(%4, %2) " DOT_PV "\n  return %5 \"y\"\n}\n",
                 false, 1);
}

static void test_decompose(void) {
  const char *text =
      "graph t {\n  %0 = f32[1,8,4,4] parameter() name=\"x\"\n  %1 = f32[8] parameter() name=\"g\"\n"
      "  %2 = f32[8] parameter() name=\"b\"\n  %3 = f32[1,8,4,4] group_norm(%0, %1, %2) groups=2 eps=1e-5\n"
      "  %4 = f32[1,8,4,4] silu(%3)\n  %5 = f32[1,8,4,4] gelu(%4)\n  %6 = f32[1,8,8,8] upsample_nearest(%5) factor=2\n"
      "  %7 = f32[1,8,64] reshape(%6)\n  %8 = f32[1,8,64] softmax(%7) axis=2\n  %9 = f32[64] parameter() name=\"lg\"\n"
      "  %10 = f32[64] parameter() name=\"lb\"\n  %11 = f32[1,8,64] layer_norm(%8, %9, %10) axis=2 eps=1e-5\n"
      "  %12 = f32[1,8,64] attention(%11, %11, %11) scale=0.125\n  return %12 \"y\"\n}\n";
  ldmc_graph *g = ptu_parse(text);
  if (!g) return;
  ldmc_graph *ref = ldmc_graph_clone(g);
  CHECK(!ptu_run_plan(&ldmc_pass_decompose, g, "cpu-nhwc", NULL)); /* the CPU runs them all natively */
  CHECK(ptu_run_plan(&ldmc_pass_decompose, g, "tpusim", NULL));
  int composites = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) composites += (ldmc_op_table[g->nodes[i].op].flags & LDMC_OPF_COMPOSITE) != 0;
  CHECK(composites == 0);
  CHECK(!ptu_run_plan(&ldmc_pass_decompose, g, "tpusim", NULL));
  ptu_same_results("decompose", ref, g, 1e-5, 1e-4);
  ldmc_graph_free(g);
  /* nvptx keeps group_norm, softmax, layer_norm, attention and lowers silu, gelu, upsample */
  g = ldmc_graph_clone(ref);
  CHECK(ptu_run_plan(&ldmc_pass_decompose, g, "nvptx", NULL));
  CHECK(ptu_count(g, LDMC_OP_GROUP_NORM) == 1 && ptu_count(g, LDMC_OP_ATTENTION) == 1 && ptu_count(g, LDMC_OP_SILU) == 0 &&
        ptu_count(g, LDMC_OP_UPSAMPLE_NEAREST) == 0);
  ptu_same_results("decompose nvptx", ref, g, 1e-5, 1e-4);
  ldmc_graph_free(g);
  ldmc_graph_free(ref);
}

static void test_layout(void) {
  const char *two_convs =
      "graph t {\n  %0 = f32[1,4,5,5] parameter() name=\"x\"\n  %1 = f32[6,4,3,3] parameter() name=\"w1\"\n"
      "  %2 = f32[6] parameter() name=\"b1\"\n  %3 = f32[5,6,3,3] parameter() name=\"w2\"\n"
      "  %4 = f32[1,6,5,5] convolution(%0, %1) " CONV_ATTRS "\n  %5 = f32[1,6,5,5] broadcast_in_dim(%2) dims={1}\n"
      "  %6 = f32[1,6,5,5] add(%4, %5)\n  %7 = f32[] constant() value=0\n  %8 = f32[1,6,5,5] broadcast_in_dim(%7) dims={}\n"
      "  %9 = f32[1,6,5,5] max(%6, %8)\n  %10 = f32[1,5,5,5] convolution(%9, %3) " CONV_ATTRS "\n"
      "  return %10 \"y\"\n}\n";
  ldmc_graph *g = ptu_parse(two_convs);
  if (!g) return;
  ldmc_graph *ref = ldmc_graph_clone(g);
  CHECK(ptu_run(&ldmc_pass_layout, g));
  /* per conv: x to NHWC, weights to HWIO, result back: 6 transposes */
  CHECK(ptu_count(g, LDMC_OP_TRANSPOSE) == 6);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_CONVOLUTION) continue;
    CHECK(n->attrs.input_dims.v[1] == 3 && n->attrs.output_dims.v[1] == 3 && n->attrs.kernel_dims.v[0] == 3 &&
          n->attrs.kernel_dims.v[1] == 2 && n->attrs.kernel_dims.v[2] == 0);
  }
  CHECK(!ptu_run(&ldmc_pass_layout, g)); /* NHWC convolutions are left alone */
  ptu_same_results("layout", ref, g, 1e-5, 1e-5);
  /* sinking: the transpose back after conv 1 moves through add and max and cancels against
     conv 2's input transpose; left: x in, result out, two weights */
  ldmc_pipeline *p = ldmc_pipeline_new("t");
  const ldmc_pass *grp[] = {&ldmc_pass_sink_transposes, &ldmc_pass_simplify, &ldmc_pass_cse, &ldmc_pass_dce};
  ldmc_pipeline_add_fixpoint(p, "g", 4, grp);
  ldmc_pass_ctx ctx = {.target = ldmc_target_find("cpu-nhwc")};
  CHECK(ldmc_pipeline_run(p, g, &ctx, NULL) == LDMC_OK);
  ldmc_pipeline_free(p);
  CHECK_MSG(ptu_count(g, LDMC_OP_TRANSPOSE) == 4, "%d transposes after sinking, expected 4", ptu_count(g, LDMC_OP_TRANSPOSE));
  ptu_same_results("layout+sink", ref, g, 1e-5, 1e-5);
  ldmc_graph_free(g);
  ldmc_graph_free(ref);
  /* a constant weight is repacked at compile time: w[o,i,h,w] = 1000o + 100i + 10h + w lands at [h,w,i,o] */
  char text[8192];
  int k = snprintf(text, sizeof text, "graph t {\n  %%0 = f32[1,2,4,4] parameter() name=\"x\"\n  %%1 = f32[3,2,2,2] constant() value={");
  for (int o = 0; o < 3; o++)
    for (int i = 0; i < 2; i++)
      for (int h = 0; h < 2; h++)
        for (int w = 0; w < 2; w++) k += snprintf(text + k, sizeof text - (size_t)k, "%s%d", o + i + h + w ? ", " : "", 1000 * o + 100 * i + 10 * h + w);
  snprintf(text + k, sizeof text - (size_t)k, "}\n  %%2 = f32[1,3,5,5] convolution(%%0, %%1) " CONV_ATTRS "\n  return %%2 \"y\"\n}\n");
  g = ptu_parse(text);
  if (!g) return;
  ref = ldmc_graph_clone(g);
  CHECK(ptu_run(&ldmc_pass_layout, g));
  ptu_run(&ldmc_pass_dce, g);
  CHECK(ptu_count(g, LDMC_OP_TRANSPOSE) == 2);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_CONSTANT) continue;
    CHECK(n->shape.rank == 4 && n->shape.dims[0] == 2 && n->shape.dims[1] == 2 && n->shape.dims[2] == 2 && n->shape.dims[3] == 3);
    ldmc_tensor t = {.dtype = n->dtype, .shape = n->shape, .data = n->attrs.value.data, .nbytes = n->attrs.value.nbytes};
    /* [h=1, w=0, i=1, o=2] at ((1*2 + 0)*2 + 1)*3 + 2 = 17 */
    CHECK_NEAR(ldmc_tensor_get(&t, 17), 2110, 0);
    CHECK_NEAR(ldmc_tensor_get(&t, 0), 0, 0);
  }
  ptu_same_results("layout const", ref, g, 1e-5, 1e-5);
  ldmc_graph_free(g);
  ldmc_graph_free(ref);
}


/* A gradient accumulation chain: y = x0 + x1 + ... + x23. The llvm-cpu target
 * reads at most 10 values per kernel, so fusion splits the chain; a target
 * without the limit (cpu-nhwc) keeps one kernel reading all 24. */
static void test_input_limit(void) {
  char text[4096];
  int k = snprintf(text, sizeof text, "graph t {\n");
  for (int i = 0; i < 24; i++) k += snprintf(text + k, sizeof text - (size_t)k, "  %%%d = f32[7] parameter() name=\"x%d\"\n", i, i);
  k += snprintf(text + k, sizeof text - (size_t)k, "  %%24 = f32[7] add(%%0, %%1)\n");
  for (int i = 2; i < 24; i++) k += snprintf(text + k, sizeof text - (size_t)k, "  %%%d = f32[7] add(%%%d, %%%d)\n", 23 + i, 22 + i, i);
  snprintf(text + k, sizeof text - (size_t)k, "  return %%46 \"y\"\n}\n");
  for (int t = 0; t < 2; t++) {
    ldmc_graph *g = ptu_parse(text);
    if (!g) continue;
    ldmc_plan *p = fuse(g, t ? "cpu-nhwc" : "llvm-cpu");
    int most = 0, nk = 0;
    for (int32_t j = 0; j < p->n_kernels; j++) {
      if (p->kernels[j].n_inputs > most) most = (int)p->kernels[j].n_inputs;
      nk += p->kernels[j].n_nodes > 0;
    }
    if (t == 0) CHECK_MSG(most <= 10 && nk >= 3, "llvm-cpu: %d kernels, one reads %d values (limit 10)", nk, most);
    else CHECK_MSG(nk == 1 && most == 24, "cpu-nhwc: %d kernels, the widest reads %d values (expected 1, 24)", nk, most);
    ldmc_plan_free(p);
    ldmc_graph_free(g);
  }
}

int main(void) {
  test_fusion_patterns();
  test_input_limit();
  test_tiling();
  test_attention();
  test_decompose();
  test_layout();
  return test_summary("test_pass_fusion");
}
