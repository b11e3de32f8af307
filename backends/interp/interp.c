/* The reference interpreter backend: runs a verified graph node by node with
 * plain loops (see docs/backends/interp.md). Intermediate values are freed
 * after their last use; parameters are read in place, never copied. */
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/interp/interp.h"

ldmc_status ldmc_interp_eval(const ldmc_interp_args *a) {
  switch (a->node->op) {
    case LDMC_OP_CONSTANT: case LDMC_OP_IOTA:
      return ldmc_interp_source(a);
    case LDMC_OP_RNG_UNIFORM: case LDMC_OP_RNG_NORMAL:
      return ldmc_interp_rng(a);
    case LDMC_OP_CONVERT: case LDMC_OP_NEG: case LDMC_OP_ABS: case LDMC_OP_EXP: case LDMC_OP_LOG:
    case LDMC_OP_SQRT: case LDMC_OP_RSQRT: case LDMC_OP_TANH: case LDMC_OP_LOGISTIC: case LDMC_OP_SIN:
    case LDMC_OP_COS: case LDMC_OP_ERF: case LDMC_OP_ADD: case LDMC_OP_SUB: case LDMC_OP_MUL: case LDMC_OP_DIV:
    case LDMC_OP_MAX: case LDMC_OP_MIN: case LDMC_OP_POW: case LDMC_OP_COMPARE: case LDMC_OP_SELECT:
      return ldmc_interp_elementwise(a);
    case LDMC_OP_BROADCAST_IN_DIM: case LDMC_OP_RESHAPE: case LDMC_OP_TRANSPOSE: case LDMC_OP_SLICE:
    case LDMC_OP_CONCATENATE: case LDMC_OP_PAD: case LDMC_OP_GATHER: case LDMC_OP_SCATTER_ADD:
      return ldmc_interp_movement(a);
    case LDMC_OP_REDUCE: return ldmc_interp_reduce(a);
    case LDMC_OP_DOT_GENERAL: return ldmc_interp_dot_general(a);
    case LDMC_OP_CONVOLUTION: return ldmc_interp_convolution(a);
    case LDMC_OP_SILU: case LDMC_OP_GELU: case LDMC_OP_SOFTMAX: case LDMC_OP_GROUP_NORM: case LDMC_OP_LAYER_NORM:
    case LDMC_OP_ATTENTION: case LDMC_OP_UPSAMPLE_NEAREST:
      return ldmc_interp_composite(a);
    case LDMC_OP_ATTENTION_LSE: case LDMC_OP_ATTENTION_GRAD_Q: case LDMC_OP_ATTENTION_GRAD_KV:
      return ldmc_interp_attention_grad(a);
    default:
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "interp: no kernel for op %s", ldmc_op_name(a->node->op));
  }
}

typedef struct interp_ctx {
  const ldmc_graph *g; /* the executable's graph */
  int32_t *last_use;   /* last node reading each value; n_nodes if it is an output */
  ldmc_profile_hook hook; /* kernel == NULL: not profiled */
  int32_t *donate;     /* per output: the parameter it overwrites, -1; NULL: no donation */
} interp_ctx;

/* Each node is one kernel, named by its op (see backend.h). */
static void interp_report(const interp_ctx *c, int32_t i, int64_t t0) {
  ldmc_kernel_event ev = {.kernel = i, .name = ldmc_op_name(c->g->nodes[i].op), .nodes = &i, .n_nodes = 1};
  ev.start_ns = t0;
  ev.end_ns = ldmc_profile_now_ns();
  ldmc_profile_kernel_cost(c->g, &i, 1, &ev);
  c->hook.kernel(c->hook.ctx, &ev);
}

static ldmc_status interp_set_profiler(void *context, const ldmc_profile_hook *hook) {
  interp_ctx *c = context;
  c->hook = hook ? *hook : (ldmc_profile_hook){0};
  return LDMC_OK;
}

static void interp_destroy(void *context) {
  interp_ctx *c = context;
  if (!c) return;
  free(c->last_use);
  free(c->donate);
  free(c);
}

static void release_all(ldmc_tensor *vals, int32_t n) {
  for (int32_t i = 0; i < n; i++)
    if (vals[i].data || vals[i].name) ldmc_tensor_release(&vals[i]);
}

static ldmc_status interp_run(void *context, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs,
                              int n_outputs) {
  interp_ctx *c = context;
  const ldmc_graph *g = c->g;
  if (n_inputs != ldmc_graph_num_params(g) || n_outputs != g->n_outputs)
    return ldmc_error(LDMC_ERR_INVALID, "interp: graph '%s' takes %d inputs and %d outputs, got %d and %d", g->name,
                      (int)ldmc_graph_num_params(g), (int)g->n_outputs, n_inputs, n_outputs);
  ldmc_tensor *vals = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *vals);
  if (!vals) return ldmc_error(LDMC_ERR_NOMEM, "interp: out of memory");
  if (!c->donate) memset(outputs, 0, (size_t)n_outputs * sizeof *outputs);
  ldmc_status st = LDMC_OK;
  int param = 0;
  const ldmc_tensor *ops_small[16];
  for (int32_t i = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_PARAMETER) { /* a view of the caller's tensor */
      const ldmc_tensor *in = &inputs[param++];
      size_t need = (size_t)ldmc_interp_numel(&n->shape) * ldmc_dtype_size(n->dtype);
      if (in->dtype != n->dtype || !ldmc_shape_equal(&in->shape, &n->shape) || in->nbytes < need ||
          (need && !in->data)) {
        st = ldmc_error(LDMC_ERR_INVALID, "interp: input for parameter '%s' has the wrong type",
                        n->attrs.name ? n->attrs.name : "");
        break;
      }
      vals[i] = (ldmc_tensor){.dtype = in->dtype, .shape = in->shape, .data = in->data, .nbytes = in->nbytes};
      continue;
    }
    st = ldmc_tensor_alloc(&vals[i], NULL, n->dtype, &n->shape);
    if (st != LDMC_OK) break;
    const ldmc_tensor **ops = ops_small;
    if (n->n_operands > 16 && !(ops = malloc((size_t)n->n_operands * sizeof *ops))) {
      st = ldmc_error(LDMC_ERR_NOMEM, "interp: out of memory");
      break;
    }
    for (int k = 0; k < n->n_operands; k++) ops[k] = &vals[n->operands[k]];
    ldmc_interp_args args = {.node = n, .in = ops, .out = &vals[i]};
    int64_t t0 = __builtin_expect(c->hook.kernel != NULL, 0) ? ldmc_profile_now_ns() : 0;
    st = ldmc_interp_eval(&args);
    if (__builtin_expect(c->hook.kernel != NULL, 0) && st == LDMC_OK) interp_report(c, i, t0);
    if (ops != ops_small) free(ops);
    if (st != LDMC_OK) {
      ldmc_error_prefix("interp: %%%d %s: ", (int)i, ldmc_op_name(n->op));
      break;
    }
    for (int k = 0; k < n->n_operands; k++) { /* free values whose last reader this was */
      int32_t o = n->operands[k];
      if (c->last_use[o] == i && (vals[o].data || vals[o].name)) ldmc_tensor_release(&vals[o]);
    }
    if (c->last_use[i] < 0) ldmc_tensor_release(&vals[i]); /* dead value */
  }
  /* every node has run, so no old state is read any more: donated values
   * are copied into their inputs (the reference keeps it simple) */
  for (int k = 0; k < n_outputs && st == LDMC_OK; k++) {
    const ldmc_tensor *v = &vals[g->outputs[k]];
    if (c->donate && c->donate[k] >= 0) {
      if (v->nbytes && inputs[c->donate[k]].data != v->data) memmove(inputs[c->donate[k]].data, v->data, v->nbytes);
      continue;
    }
    st = ldmc_output_deliver(g, k, v->data, c->donate != NULL, &outputs[k]);
  }
  if (st != LDMC_OK && !c->donate)
    for (int k = 0; k < n_outputs; k++) ldmc_tensor_release(&outputs[k]);
  release_all(vals, g->n_nodes);
  free(vals);
  return st;
}

static const ldmc_executable_i k_interp_exec = {
    .run = interp_run, .destroy = interp_destroy, .set_profiler = interp_set_profiler};

static bool interp_supports(const ldmc_node *n) { return (unsigned)n->op < LDMC_OP_COUNT; }

static ldmc_status interp_compile(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_executable **out) {
  /* threads: OpenMP's default (OMP_NUM_THREADS); only donation applies */
  *out = NULL;
  if (!g) return ldmc_error(LDMC_ERR_INVALID, "interp: no graph to compile");
  LDMC_TRY(ldmc_graph_verify(g));
  LDMC_TRY(ldmc_donation_check(g, o));
  ldmc_executable *e = calloc(1, sizeof *e);
  interp_ctx *c = calloc(1, sizeof *c);
  ldmc_graph *copy = ldmc_graph_clone(g);
  int32_t *last = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *last);
  if (!e || !c || !copy || !last) {
    free(e);
    free(c);
    free(last);
    ldmc_graph_free(copy);
    return ldmc_error(LDMC_ERR_NOMEM, "interp: out of memory compiling '%s'", g->name);
  }
  for (int32_t i = 0; i < g->n_nodes; i++) last[i] = -1;
  for (int32_t i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_operands; k++) last[g->nodes[i].operands[k]] = i;
  for (int32_t k = 0; k < g->n_outputs; k++) last[g->outputs[k]] = g->n_nodes; /* live to the end */
  if (o && o->donate) {
    c->donate = malloc((size_t)(g->n_outputs ? g->n_outputs : 1) * sizeof *c->donate);
    if (!c->donate) {
      free(e);
      free(c);
      free(last);
      ldmc_graph_free(copy);
      return ldmc_error(LDMC_ERR_NOMEM, "interp: out of memory compiling '%s'", g->name);
    }
    memcpy(c->donate, o->donate, (size_t)g->n_outputs * sizeof *c->donate);
  }
  c->g = copy;
  c->last_use = last;
  e->iface = &k_interp_exec;
  e->context = c;
  e->graph = copy;
  *out = e;
  return LDMC_OK;
}

const ldmc_backend_i ldmc_backend_interp = {
    .name = "interp",
    .description = "reference interpreter: plain loops, double accumulation, every op",
    .supports = interp_supports,
    .compile = interp_compile,
};
