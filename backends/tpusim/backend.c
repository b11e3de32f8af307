/* The tpusim backend behind the vtable: checks every node can be lowered
 * (naming the first that cannot: there is no fallback), decomposes
 * composites (softmax, GELU, SiLU, upsampling; attention and the norms too
 * unless they run as one kernel) with the pass pipeline's decompose pass,
 * fuses elementwise chains into one vector kernel each and, where a chain
 * consumes a matmul's or convolution's value, into that product's kernel as
 * its epilogue, and the chain after a norm into the norm's kernel (all
 * decided here, at compile time), packs the weight operands of products
 * once (params_are_weights), lowers every other
 * non-source node of the result
 * to one kernel (lower_*.c), verifies every stream, and at
 * run time executes them in order on the functional simulator over one
 * off-chip f32 buffer per node value (or timing-only, over no data). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/tpusim/lower.h"
#include "backends/tpusim/tpusim.h"
#include "passes/passes.h"
#include "support/half.h"

typedef struct tpk_exec {
  ldmc_tpu_target t;
  const ldmc_graph *g; /* the executable's graph */
  float **vals;        /* per node: its off-chip buffer (parameters: the caller's input, bound per run) */
  bool *alias;         /* per node: vals is its operand's buffer (a reshape that is no kernel) */
  uint64_t *bytes;     /* per node */
  tpk_kernel *k;
  ldmc_tpu_stats *stats;
  uint64_t runs;
  int n_k;
  ldmc_profile_hook hook;
  ldmc_tpu_mem mem; /* a kernel's buffers, bound per run (large: kept off the stack) */
  ldmc_tpu_sim_mode mode;
  bool *weight;        /* per node: a parameter that is a weight (params_are_weights) */
  uint16_t **pk_data;  /* per kernel with packed weights: the bf16 tiles (functional mode) */
  const float **pk_src; /* the weight tensor they were packed from */
  uint64_t clock;   /* the simulated clock: cycles of every kernel run so far */
} tpk_exec;

static bool f32_only(const ldmc_node *n) { return n->dtype == LDMC_F32; }

/* Why node n cannot be lowered, or NULL. dot_general and convolution need
 * bf16 allowed (their products are of bf16-rounded inputs). g, when given,
 * also checks the operands' dtypes (a guard: a non-f32 operand is a node
 * refused itself, which is why supports(), passing NULL, may say yes to an
 * f32 convert). */
static const char *why_not(const ldmc_graph *g, const ldmc_node *n, bool bf16) {
  if (!f32_only(n)) return "only f32 values are lowered (v0)";
  if (g)
    for (int j = 0; j < n->n_operands; j++)
      if (g->nodes[n->operands[j]].dtype != LDMC_F32) return "only f32 operands are lowered (v0)";
  static const char *const need_bf16 =
      "no lowering at f32 accuracy: its inputs are rounded to bf16 by the matrix units; compile with bf16 "
      "allowed (ldmc_compile_opts.bf16, ldmc run --bf16)";
  switch (n->op) {
    case LDMC_OP_PARAMETER: case LDMC_OP_CONSTANT: case LDMC_OP_BROADCAST_IN_DIM: return NULL;
    case LDMC_OP_SIN: case LDMC_OP_COS: return NULL;
    case LDMC_OP_RESHAPE: case LDMC_OP_TRANSPOSE: case LDMC_OP_SLICE: case LDMC_OP_CONCATENATE: case LDMC_OP_PAD:
      return tpk_move_why_not(n);
    /* f32 -> f32 (a copy): a non-f32 operand is itself a node refused above */
    case LDMC_OP_CONVERT: return NULL;
    /* composites: decomposed at compile time into the ops lowered here (decompose_graph) */
    case LDMC_OP_SILU: case LDMC_OP_GELU: case LDMC_OP_SOFTMAX: case LDMC_OP_GROUP_NORM: case LDMC_OP_LAYER_NORM:
    case LDMC_OP_UPSAMPLE_NEAREST: return NULL;
    case LDMC_OP_ATTENTION: return bf16 ? NULL : need_bf16; /* its products are dot_generals */
    case LDMC_OP_REDUCE: return tpk_reduce_contiguous(n) ? NULL : "only consecutive dims are reduced (v0)";
    case LDMC_OP_DOT_GENERAL: return bf16 ? NULL : need_bf16;
    case LDMC_OP_CONVOLUTION: {
      const char *w = tpk_conv_why_not(n);
      return w ? w : bf16 ? NULL : need_bf16;
    }
    default:
      if (tpk_unary_func(n->op) >= 0 || tpk_binary_func(n->op) >= 0) return NULL;
      return "no lowering (v0)";
  }
}

static bool tpk_supports(const ldmc_node *n) { return why_not(NULL, n, false) == NULL; }

static void tpk_destroy(void *context) {
  tpk_exec *x = context;
  if (!x) return;
  for (int i = 0; i < x->n_k; i++) {
    tpk_kernel_release(&x->k[i]);
    if (x->pk_data) free(x->pk_data[i]);
  }
  free(x->pk_data);
  free(x->pk_src);
  free(x->weight);
  if (x->vals)
    for (int32_t i = 0; i < x->g->n_nodes; i++)
      if (x->g->nodes[i].op != LDMC_OP_PARAMETER && !(x->alias && x->alias[i])) free(x->vals[i]);
  free(x->vals);
  free(x->alias);
  free(x->bytes);
  free(x->k);
  free(x->stats);
  free(x);
}

static void kernel_mem(const tpk_exec *x, const tpk_kernel *k, ldmc_tpu_mem *mem, bool with_data) {
  mem->count = k->n_bufs;
  for (int i = 0; i < k->n_bufs; i++)
    mem->buf[i] = (ldmc_tpu_buffer){.data = with_data ? x->vals[k->buf_node[i]] : NULL, .bytes = x->bytes[k->buf_node[i]]};
  if (k->pk_n > 0) /* the weight, laid out for the matrix units once */
    mem->buf[k->pk_buf] = (ldmc_tpu_buffer){.data = with_data ? x->pk_data[k - x->k] : NULL, .bytes = 2 * k->pk_elems};
}

/* Kernel i's packed weights from the weight tensor bound now, when it is not the one they were packed from. */
static ldmc_status pack_weights(tpk_exec *x, int i) {
  const tpk_kernel *k = &x->k[i];
  const float *src = x->vals[k->buf_node[k->pk_buf]];
  if (src == x->pk_src[i] && x->pk_data[i]) return LDMC_OK;
  if (!x->pk_data[i] && !(x->pk_data[i] = calloc(k->pk_elems ? k->pk_elems : 1, sizeof(uint16_t))))
    return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory packing the weights of %%%d", (int)k->node);
  uint16_t *d = x->pk_data[i];
  for (int t = 0; t < k->pk_n; t++) {
    const tpk_pack_tile *p = &k->pk[t];
    for (uint32_t r = 0; r < p->rows; r++)
      for (uint32_t c = 0; c < p->cols; c++)
        d[(uint64_t)p->dst + (uint64_t)r * p->cols + c] = ldmc_f32_to_bf16(src[(uint64_t)p->src + (uint64_t)r * p->stride + c]);
  }
  x->pk_src[i] = src;
  return LDMC_OK;
}

/* Simulated nanoseconds at simulated cycle c. */
static int64_t sim_ns(const tpk_exec *x, uint64_t c) { return (int64_t)llround((double)c * 1e9 / x->t.clock_hz); }

/* A kernel's event name: its op, "ew" for a fused chain, "<op>+ew" for a matmul or convolution with
 * its chain. */
static const char *kernel_name(const ldmc_graph *g, const tpk_kernel *k) {
  if (k->epilogue)
    for (int i = 0; i < k->n_nodes; i++) {
      if (g->nodes[k->nodes[i]].op == LDMC_OP_DOT_GENERAL) return "dot_general+ew";
      if (g->nodes[k->nodes[i]].op == LDMC_OP_CONVOLUTION) return "convolution+ew";
      if (g->nodes[k->nodes[i]].op == LDMC_OP_GROUP_NORM) return "group_norm+ew";
      if (g->nodes[k->nodes[i]].op == LDMC_OP_LAYER_NORM) return "layer_norm+ew";
    }
  return k->n_nodes > 1 ? "ew" : ldmc_op_name(g->nodes[k->node].op);
}

static ldmc_status tpk_run(void *context, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs, int n_outputs) {
  tpk_exec *x = context;
  const ldmc_graph *g = x->g;
  for (int32_t i = 0, k = 0; i < g->n_nodes && k < n_inputs; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) x->vals[i] = inputs[k++].data; /* DMA only loads from it */
  ldmc_tpu_mem *mem = &x->mem;
  for (int i = 0; i < x->n_k; i++) {
    tpk_kernel *k = &x->k[i];
    if (k->prog.count == 0) continue; /* an empty value */
    bool functional = x->mode == LDMC_TPU_SIM_FUNCTIONAL;
    if (functional && k->pk_n > 0) LDMC_TRY(pack_weights(x, i));
    kernel_mem(x, k, mem, functional);
    ldmc_status st = ldmc_tpu_sim_run(&x->t, &k->prog, mem, x->mode, &x->stats[i]);
    if (st != LDMC_OK)
      return ldmc_error(st, "tpusim: %%%d %s: %s", (int)k->node, ldmc_op_name(g->nodes[k->node].op), ldmc_last_error());
    uint64_t c0 = x->clock;
    x->clock += x->stats[i].cycles; /* kernels run one after another on the one core */
    if (__builtin_expect(x->hook.kernel != NULL, 0)) {
      /* simulated time, not the host's: the kernel spans [c0, c0 + cycles) of the simulated clock */
      ldmc_kernel_event ev = {.kernel = i, .name = kernel_name(g, k),
                              .nodes = k->nodes, .n_nodes = k->n_nodes};
      ev.start_ns = sim_ns(x, c0);
      ev.end_ns = sim_ns(x, x->clock);
      ldmc_profile_kernel_cost(g, k->nodes, k->n_nodes, &ev);
      x->hook.kernel(x->hook.ctx, &ev);
    }
  }
  x->runs++;
  for (int o = 0; o < n_outputs; o++) LDMC_TRY(ldmc_output_deliver(g, o, x->vals[g->outputs[o]], false, &outputs[o]));
  return LDMC_OK; /* timing-only: the outputs are the zeros they were allocated with */
}

static ldmc_status tpk_set_profiler(void *context, const ldmc_profile_hook *hook) {
  tpk_exec *x = context;
  x->hook = hook ? *hook : (ldmc_profile_hook){0};
  return LDMC_OK;
}

static const ldmc_executable_i k_tpk_exec = {.run = tpk_run, .destroy = tpk_destroy, .set_profiler = tpk_set_profiler};

ldmc_status ldmc_tpusim_target_resolve(const char *s, ldmc_tpu_target *t) {
  if (!s || !*s) s = "v5e";
  size_t n = strlen(s);
  if (strchr(s, '/') || (n > 5 && strcmp(s + n - 5, ".json") == 0)) return ldmc_tpu_target_load(s, t);
  return ldmc_tpu_target_preset(s, t);
}

static ldmc_status default_target(ldmc_tpu_target *t) {
  return ldmc_tpusim_target_resolve(getenv("LDMC_TPUSIM_TARGET"), t);
}

static bool is_producer(const ldmc_node *n) { return n->op == LDMC_OP_DOT_GENERAL || n->op == LDMC_OP_CONVOLUTION; }

/* A product whose operand 1 is a weight reads it packed (lower_dot.c, lower_conv.c). */
static void mark_pack(const ldmc_graph *g, int32_t id, const bool *weight, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  k->pack_ok = weight && is_producer(n) && weight[n->operands[1]];
}

static ldmc_status lower_node(const ldmc_graph *g, int32_t id, const ldmc_tpu_target *t, const bool *weight, tpk_kernel *k) {
  const ldmc_node *n = &g->nodes[id];
  mark_pack(g, id, weight, k);
  if (n->op == LDMC_OP_BROADCAST_IN_DIM) return tpk_lower_broadcast(g, id, t, k);
  if (n->op == LDMC_OP_REDUCE) return tpk_lower_reduce(g, id, t, k);
  if (n->op == LDMC_OP_DOT_GENERAL) return tpk_lower_dot(g, id, t, k);
  if (n->op == LDMC_OP_CONVOLUTION) return tpk_lower_conv(g, id, t, k);
  if (n->op == LDMC_OP_ATTENTION) return tpk_lower_attention(g, id, t, k);
  if (n->op == LDMC_OP_GROUP_NORM || n->op == LDMC_OP_LAYER_NORM) return tpk_lower_norm_chain(g, id, NULL, t, k);
  if (n->op == LDMC_OP_SIN || n->op == LDMC_OP_COS) return tpk_lower_sincos(g, id, t, k);
  if (n->op == LDMC_OP_RESHAPE || n->op == LDMC_OP_TRANSPOSE || n->op == LDMC_OP_SLICE || n->op == LDMC_OP_CONCATENATE ||
      n->op == LDMC_OP_CONVERT || n->op == LDMC_OP_PAD)
    return tpk_lower_move(g, id, t, k);
  if (tpk_unary_func(n->op) >= 0) return tpk_lower_unary(g, id, t, k);
  return tpk_lower_binary(g, id, t, k);
}

static bool is_output(const ldmc_graph *g, int32_t id) {
  for (int32_t o = 0; o < g->n_outputs; o++)
    if (g->outputs[o] == id) return true;
  return false;
}

static ldmc_status build_kernels(tpk_exec *x, const ldmc_graph *g, tpk_kernel **fused, const bool *absorbed);

/* The nodes of a fused kernel, for the kernel's list: sorted ascending. */
static void sort_ids(int32_t *c, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && c[j - 1] > c[j]; j--) {
      int32_t tmp = c[j];
      c[j] = c[j - 1], c[j - 1] = tmp;
    }
}

static bool fusible_ew(const ldmc_node *n) {
  return n->dtype == LDMC_F32 && (tpk_unary_func(n->op) >= 0 || tpk_binary_func(n->op) >= 0);
}

/* Operand slots of the non-broadcast nodes c[0..n) that read o. */
static int32_t uses_in(const ldmc_graph *g, const int32_t *c, int n, int32_t o) {
  int32_t u = 0;
  for (int i = 0; i < n; i++) {
    const ldmc_node *x = &g->nodes[c[i]];
    if (x->op == LDMC_OP_BROADCAST_IN_DIM) continue;
    for (int j = 0; j < x->n_operands; j++) u += x->operands[j] == o;
  }
  return u;
}

/* Elementwise chains, decided at compile time: from each elementwise root (highest id first) the
 * cluster grows into operands of the root's shape that are elementwise or broadcast_in_dim (a
 * broadcast ends the growth: its operand is read from off chip), used only by the cluster's
 * elementwise nodes, and no output. A cluster of more than one node that lowers becomes fused[root];
 * its other nodes are marked absorbed. */
static ldmc_status plan_fusion(const ldmc_graph *g, const ldmc_tpu_target *t, tpk_kernel **fused, bool *absorbed) {
  int32_t nn = g->n_nodes;
  int32_t *uses = calloc((size_t)(nn ? nn : 1), sizeof *uses);
  if (!uses) return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
  for (int32_t i = 0; i < nn; i++)
    for (int j = 0; j < g->nodes[i].n_operands; j++) uses[g->nodes[i].operands[j]]++;
  for (int32_t o = 0; o < g->n_outputs; o++) uses[g->outputs[o]] += 2; /* never absorbed */
  for (int32_t root = nn - 1; root >= 0; root--) {
    const ldmc_node *rn = &g->nodes[root];
    if (absorbed[root] || !fusible_ew(rn)) continue;
    int32_t c[TPK_MAX_FUSE];
    int n = 0;
    c[n++] = root;
    /* breadth first over the cluster's operands, to a fixpoint: a value joins once every use of it is
     * by an elementwise node of the cluster (x * sigmoid(x) takes x in once both uses are in) */
    for (bool grew = true; grew && n < TPK_MAX_FUSE;) {
      grew = false;
      for (int q = 0; q < n && n < TPK_MAX_FUSE; q++) {
        const ldmc_node *x = &g->nodes[c[q]];
        if (x->op == LDMC_OP_BROADCAST_IN_DIM) continue;
        for (int j = 0; j < x->n_operands && n < TPK_MAX_FUSE; j++) {
          int32_t o = x->operands[j];
          const ldmc_node *on = &g->nodes[o];
          bool dup = false;
          for (int i = 0; i < n; i++) dup = dup || c[i] == o;
          if (dup || absorbed[o] || !ldmc_shape_equal(&on->shape, &rn->shape) || on->dtype != LDMC_F32) continue;
          if (!fusible_ew(on) && on->op != LDMC_OP_BROADCAST_IN_DIM) continue;
          if (uses_in(g, c, n, o) != uses[o]) continue; /* used outside (or by a broadcast): its value is needed */
          c[n++] = o;
          grew = true;
        }
      }
    }
    if (n < 2) continue;
    sort_ids(c, n); /* ascending */
    tpk_kernel *k = calloc(1, sizeof *k);
    if (!k) {
      free(uses);
      return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
    }
    ldmc_tpu_program_init(&k->prog);
    if (tpk_lower_fused(g, c, n, t, k) != LDMC_OK) { /* a form it does not take: one kernel per node */
      tpk_kernel_release(k);
      free(k);
      continue;
    }
    fused[root] = k;
    for (int i = 0; i + 1 < n; i++) absorbed[c[i]] = true;
  }
  free(uses);
  return LDMC_OK;
}

/* Off-chip bytes the DMAs of a stream move (as the simulator counts them). */
static uint64_t dma_bytes(const ldmc_tpu_program *p) {
  uint64_t b = 0;
  for (size_t i = 0; i < p->count; i++) {
    const ldmc_tpu_insn *in = &p->insns[i];
    if (in->op == LDMC_TPU_DMA_LOAD || in->op == LDMC_TPU_DMA_STORE)
      b += (uint64_t)in->u.dma.rows * in->u.dma.cols * (in->u.dma.mem_dtype == LDMC_TPU_BF16 ? 2u : 4u);
  }
  return b;
}

/* Bytes of node p's kernel alone, plus (single non-NULL) those of that node's. */
static ldmc_status unfused_bytes(const ldmc_graph *g, int32_t p, const int32_t *single, const ldmc_tpu_target *t,
                                 const bool *weight, uint64_t *out) {
  *out = 0;
  for (int i = 0; i < (single ? 2 : 1); i++) {
    tpk_kernel *k = calloc(1, sizeof *k);
    if (!k) return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
    ldmc_tpu_program_init(&k->prog);
    ldmc_status st = lower_node(g, i ? *single : p, t, weight, k);
    *out += dma_bytes(&k->prog);
    tpk_kernel_release(k);
    free(k);
    LDMC_TRY(st);
  }
  return LDMC_OK;
}

/* Epilogues, after plan_fusion: a dot_general or convolution whose value (or a reshape of it, used
 * once) is read only by the elementwise nodes of one chain -- a fused cluster or a single elementwise
 * node -- is lowered with that chain on its output tiles (lower_epi.c) when the form allows: the
 * kernel replaces the chain's (fused[root]) and the producer and its reshapes are absorbed (no
 * kernel, no off-chip value) if the fused kernel's DMAs move fewer bytes than the two kernels'. A
 * chain takes one producer; the others read theirs from off chip. */
static ldmc_status plan_epilogue(const ldmc_graph *g, const ldmc_tpu_target *t, const bool *weight, tpk_kernel **fused,
                                 bool *absorbed) {
  int32_t nn = g->n_nodes;
  size_t cnt = (size_t)(nn ? nn : 1);
  int32_t *uses = calloc(cnt, sizeof *uses), *user = malloc(cnt * sizeof *user), *owner = malloc(cnt * sizeof *owner);
  bool *taken = calloc(cnt, sizeof *taken);
  ldmc_status st = uses && user && owner && taken ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
  for (int32_t i = 0; i < nn && st == LDMC_OK; i++) user[i] = owner[i] = -1;
  for (int32_t i = 0; i < nn && st == LDMC_OK; i++)
    for (int j = 0; j < g->nodes[i].n_operands; j++) uses[g->nodes[i].operands[j]]++, user[g->nodes[i].operands[j]] = i;
  for (int32_t o = 0; o < g->n_outputs && st == LDMC_OK; o++) uses[g->outputs[o]] += 2; /* an output's value is written */
  for (int32_t r = 0; r < nn && st == LDMC_OK; r++)
    if (fused[r])
      for (int i = 0; i < fused[r]->n_nodes; i++) owner[fused[r]->nodes[i]] = r;
  for (int32_t p = 0; p < nn && st == LDMC_OK; p++) {
    if (!is_producer(&g->nodes[p]) || absorbed[p]) continue;
    int32_t kn[TPK_MAX_KNODES], src = p;
    int nk = 0;
    kn[nk++] = p;
    while (nk < TPK_MAX_KNODES - TPK_MAX_FUSE && uses[src] == 1 && g->nodes[user[src]].op == LDMC_OP_RESHAPE)
      src = user[src], kn[nk++] = src;
    int32_t u = user[src], single[1];
    if (u < 0) continue;
    const int32_t *cn = single;
    int cnn = 1, r = owner[u];
    if (r >= 0) cn = fused[r]->nodes, cnn = fused[r]->n_nodes;
    else if (!absorbed[u] && fusible_ew(&g->nodes[u])) single[0] = r = u;
    else continue;
    if (taken[r] || uses_in(g, cn, cnn, src) != uses[src] || nk + cnn > TPK_MAX_KNODES) continue;
    tpk_chain ch = {.nodes = cn, .n = cnn, .src = src};
    tpk_kernel *k = calloc(1, sizeof *k);
    if (!k) {
      st = ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
      break;
    }
    ldmc_tpu_program_init(&k->prog);
    mark_pack(g, p, weight, k);
    ldmc_status ls = g->nodes[p].op == LDMC_OP_DOT_GENERAL ? tpk_lower_dot_chain(g, p, &ch, t, k)
                                                           : tpk_lower_conv_chain(g, p, &ch, t, k);
    /* worth it when it moves fewer bytes than the two kernels it replaces (the chain's vector tiles
     * can shrink the matmul's where the scratchpad is small, and then its operands are re-read more) */
    uint64_t before = 0;
    if (ls == LDMC_OK) {
      ls = unfused_bytes(g, p, fused[r] ? NULL : &u, t, weight, &before);
      if (fused[r]) before += dma_bytes(&fused[r]->prog);
    }
    if (ls != LDMC_OK || dma_bytes(&k->prog) >= before) { /* not taken, or not worth it: the chain stays its own */
      tpk_kernel_release(k);
      free(k);
      continue;
    }
    for (int i = 0; i < cnn; i++) kn[nk++] = cn[i];
    sort_ids(kn, nk);
    k->n_nodes = nk;
    memcpy(k->nodes, kn, sizeof *kn * (size_t)nk);
    if (fused[r]) tpk_kernel_release(fused[r]), free(fused[r]);
    fused[r] = k;
    taken[r] = true;
    for (int i = 0; i < nk; i++)
      if (kn[i] != r) absorbed[kn[i]] = true;
  }
  free(uses), free(user), free(owner), free(taken);
  return st;
}

static bool is_norm(const ldmc_node *n) { return n->op == LDMC_OP_GROUP_NORM || n->op == LDMC_OP_LAYER_NORM; }

/* Norms, after the epilogues: a group / layer norm (one kernel, lower_norm.c) whose value is read only
 * by the elementwise nodes of one chain not taken by a product (the SiLU after it) runs that chain on
 * its normalized tiles: the kernel replaces the chain's, the norm is absorbed. The norm's value is then
 * never stored nor read back, so this always moves fewer bytes. */
static ldmc_status plan_norm(const ldmc_graph *g, const ldmc_tpu_target *t, tpk_kernel **fused, bool *absorbed) {
  int32_t nn = g->n_nodes;
  size_t cnt = (size_t)(nn ? nn : 1);
  int32_t *uses = calloc(cnt, sizeof *uses), *user = malloc(cnt * sizeof *user), *owner = malloc(cnt * sizeof *owner);
  ldmc_status st = uses && user && owner ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
  for (int32_t i = 0; i < nn && st == LDMC_OK; i++) user[i] = owner[i] = -1;
  for (int32_t i = 0; i < nn && st == LDMC_OK; i++)
    for (int j = 0; j < g->nodes[i].n_operands; j++) uses[g->nodes[i].operands[j]]++, user[g->nodes[i].operands[j]] = i;
  for (int32_t o = 0; o < g->n_outputs && st == LDMC_OK; o++) uses[g->outputs[o]] += 2;
  for (int32_t r = 0; r < nn && st == LDMC_OK; r++)
    if (fused[r])
      for (int i = 0; i < fused[r]->n_nodes; i++) owner[fused[r]->nodes[i]] = r;
  for (int32_t p = 0; p < nn && st == LDMC_OK; p++) {
    if (!is_norm(&g->nodes[p]) || absorbed[p] || user[p] < 0) continue;
    int32_t u = user[p], single[1];
    const int32_t *cn = single;
    int cnn = 1, r = owner[u];
    if (r >= 0 && !fused[r]->epilogue) cn = fused[r]->nodes, cnn = fused[r]->n_nodes;
    else if (r < 0 && !absorbed[u] && fusible_ew(&g->nodes[u])) single[0] = r = u;
    else continue;
    if (uses_in(g, cn, cnn, p) != uses[p] || cnn + 1 > TPK_MAX_KNODES) continue;
    tpk_chain ch = {.nodes = cn, .n = cnn, .src = p};
    tpk_kernel *k = calloc(1, sizeof *k);
    if (!k) {
      st = ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
      break;
    }
    ldmc_tpu_program_init(&k->prog);
    if (tpk_lower_norm_chain(g, p, &ch, t, k) != LDMC_OK) { /* a form the epilogue does not take */
      tpk_kernel_release(k);
      free(k);
      continue;
    }
    int32_t kn[TPK_MAX_KNODES];
    int nk = 0;
    kn[nk++] = p;
    for (int i = 0; i < cnn; i++) kn[nk++] = cn[i];
    sort_ids(kn, nk);
    k->n_nodes = nk;
    memcpy(k->nodes, kn, sizeof *kn * (size_t)nk);
    if (fused[r]) tpk_kernel_release(fused[r]), free(fused[r]);
    fused[r] = k;
    for (int i = 0; i < nk; i++)
      if (kn[i] != r) absorbed[kn[i]] = true;
  }
  free(uses), free(user), free(owner);
  return st;
}

static ldmc_status build(tpk_exec *x, const ldmc_graph *g, const ldmc_compile_opts *o) {
  int32_t nn = g->n_nodes;
  x->vals = calloc((size_t)(nn ? nn : 1), sizeof *x->vals);
  x->bytes = calloc((size_t)(nn ? nn : 1), sizeof *x->bytes);
  x->k = calloc((size_t)(nn ? nn : 1), sizeof *x->k);
  x->stats = calloc((size_t)(nn ? nn : 1), sizeof *x->stats);
  x->alias = calloc((size_t)(nn ? nn : 1), sizeof *x->alias);
  x->weight = calloc((size_t)(nn ? nn : 1), sizeof *x->weight);
  x->pk_data = calloc((size_t)(nn ? nn : 1), sizeof *x->pk_data);
  x->pk_src = calloc((size_t)(nn ? nn : 1), sizeof *x->pk_src);
  if (!x->vals || !x->bytes || !x->k || !x->stats || !x->alias || !x->weight || !x->pk_data || !x->pk_src)
    return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
  /* parameters from n_activation_params on are weights: the products read them laid out once */
  for (int32_t i = 0, pi = 0; i < nn && o && o->params_are_weights; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) x->weight[i] = g->nodes[i].dtype == LDMC_F32 && pi++ >= o->n_activation_params;
  tpk_kernel **fused = calloc((size_t)(nn ? nn : 1), sizeof *fused);
  bool *absorbed = calloc((size_t)(nn ? nn : 1), sizeof *absorbed);
  ldmc_status fs = fused && absorbed ? plan_fusion(g, &x->t, fused, absorbed) : ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory");
  if (fs == LDMC_OK) fs = plan_epilogue(g, &x->t, x->weight, fused, absorbed);
  if (fs == LDMC_OK) fs = plan_norm(g, &x->t, fused, absorbed);
  ldmc_status st = fs == LDMC_OK ? build_kernels(x, g, fused, absorbed) : fs;
  for (int32_t i = 0; fused && i < nn; i++)
    if (fused[i]) tpk_kernel_release(fused[i]), free(fused[i]);
  free(fused);
  free(absorbed);
  return st;
}

static ldmc_status build_kernels(tpk_exec *x, const ldmc_graph *g, tpk_kernel **fused, const bool *absorbed) {
  int32_t nn = g->n_nodes;
  bool functional = x->mode == LDMC_TPU_SIM_FUNCTIONAL;
  for (int32_t i = 0; i < nn; i++) {
    const ldmc_node *n = &g->nodes[i];
    uint32_t numel;
    LDMC_TRY(tpk_numel32(g, i, &numel));
    x->bytes[i] = 4ull * numel;
    if (n->op == LDMC_OP_PARAMETER) continue;
    if (absorbed[i]) continue; /* computed on chip by its cluster's kernel: no kernel, no off-chip value */
    /* a reshape of a computed value is that value's buffer (row-major either way): no copy, no kernel;
     * kept as a kernel when its operand is a parameter (bound per run) or it is an output */
    if (n->op == LDMC_OP_RESHAPE && g->nodes[n->operands[0]].op != LDMC_OP_PARAMETER && !is_output(g, i)) {
      x->vals[i] = x->vals[n->operands[0]];
      x->alias[i] = true;
      continue;
    }
    /* timing-only runs read and write no data: only what run() hands back (outputs) is allocated */
    bool held = functional || n->op == LDMC_OP_CONSTANT || is_output(g, i);
    if (held && !(x->vals[i] = calloc(numel ? numel : 1, 4)))
      return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory for %%%d %s", (int)i, ldmc_op_name(n->op));
    if (n->op == LDMC_OP_CONSTANT) {
      if (n->attrs.value.nbytes < x->bytes[i] || (x->bytes[i] && !n->attrs.value.data))
        return ldmc_error(LDMC_ERR_INVALID, "tpusim: %%%d constant: holds %zu bytes, needs %" PRIu64, (int)i,
                          n->attrs.value.nbytes, x->bytes[i]);
      if (x->bytes[i]) memcpy(x->vals[i], n->attrs.value.data, x->bytes[i]);
      continue;
    }
    tpk_kernel *k = &x->k[x->n_k++];
    if (fused[i]) {
      *k = *fused[i]; /* the program and the packing move to the executable */
      ldmc_tpu_program_init(&fused[i]->prog);
      fused[i]->pk = NULL, fused[i]->pk_n = fused[i]->pk_cap = 0;
    } else {
      ldmc_tpu_program_init(&k->prog);
      LDMC_TRY(lower_node(g, i, &x->t, x->weight, k));
      k->n_nodes = 1;
      k->nodes[0] = i;
    }
    if (k->prog.count) {
      ldmc_tpu_mem mem;
      kernel_mem(x, k, &mem, false);
      ldmc_status st = ldmc_tpu_verify(&x->t, &k->prog, &mem);
      if (st != LDMC_OK)
        return ldmc_error(LDMC_ERR_INTERNAL, "tpusim: %%%d %s: the lowered stream fails verification: %s", (int)i,
                          ldmc_op_name(n->op), ldmc_last_error());
    }
  }
  return LDMC_OK;
}

/* A copy of g with its composites decomposed into primitives by the tpusim
 * pass target's decompose pass (the target runs no composite natively) and
 * the cleanup passes around it, as the target's pipeline has them; the plan
 * passes are not run (one kernel per node). A graph without composites is
 * copied as it is. */
static ldmc_status decompose_graph(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_graph **out) {
  *out = NULL;
  bool any = false;
  for (int32_t i = 0; i < g->n_nodes && !any; i++) any = ldmc_op_table[g->nodes[i].op].flags & LDMC_OPF_COMPOSITE;
  ldmc_graph *c = ldmc_graph_clone(g);
  if (!c) return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory copying graph '%s'", g->name);
  if (!any) {
    *out = c;
    return LDMC_OK;
  }
  const ldmc_target *tt0 = ldmc_target_find("tpusim");
  /* attention runs natively (one flash kernel, lower_attn.c) when bf16 products are allowed and every
   * attention node has a form that kernel takes; otherwise all are decomposed */
  bool flash = o && o->bf16;
  for (int32_t i = 0; i < g->n_nodes && flash; i++)
    if (g->nodes[i].op == LDMC_OP_ATTENTION) flash = tpk_attention_why_not(g, &g->nodes[i]) == NULL;
  /* group / layer norms run natively (one kernel each, lower_norm.c) when every node of the op has a
   * form that kernel takes */
  bool gn = true, ln = true;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op == LDMC_OP_GROUP_NORM) gn = gn && tpk_norm_why_not(g, n) == NULL;
    if (n->op == LDMC_OP_LAYER_NORM) ln = ln && tpk_norm_why_not(g, n) == NULL;
  }
  ldmc_target tcopy;
  const ldmc_target *tt = tt0;
  if (tt0) {
    tcopy = *tt0;
    if (flash) tcopy.native_ops |= LDMC_OPMASK(LDMC_OP_ATTENTION);
    if (gn) tcopy.native_ops |= LDMC_OPMASK(LDMC_OP_GROUP_NORM);
    if (ln) tcopy.native_ops |= LDMC_OPMASK(LDMC_OP_LAYER_NORM);
    tt = &tcopy;
  }
  ldmc_pipeline *pl = ldmc_pipeline_new("tpusim-decompose");
  static const ldmc_pass *const cleanup[] = {&ldmc_pass_simplify, &ldmc_pass_fold, &ldmc_pass_cse, &ldmc_pass_dce};
  ldmc_status st = tt && pl ? LDMC_OK : ldmc_error(LDMC_ERR_INTERNAL, "tpusim: no tpusim pass target or pipeline");
  if (st == LDMC_OK) st = ldmc_pipeline_add_fixpoint(pl, "cleanup", 4, cleanup);
  if (st == LDMC_OK) st = ldmc_pipeline_add(pl, &ldmc_pass_decompose);
  if (st == LDMC_OK) st = ldmc_pipeline_add_fixpoint(pl, "cleanup2", 4, cleanup);
  ldmc_pass_ctx ctx = {.target = tt};
  if (st == LDMC_OK) st = ldmc_pipeline_run(pl, c, &ctx, o ? o->pipeline : NULL);
  ldmc_pipeline_free(pl);
  /* the executable is called with the original graph's inputs and outputs */
  if (st == LDMC_OK && (ldmc_graph_num_params(c) != ldmc_graph_num_params(g) || c->n_outputs != g->n_outputs))
    st = ldmc_error(LDMC_ERR_INTERNAL, "tpusim: decomposing graph '%s' changed its inputs or outputs", g->name);
  if (st != LDMC_OK) {
    ldmc_graph_free(c);
    return st;
  }
  *out = c;
  return LDMC_OK;
}

static ldmc_status refuse(const ldmc_graph *g, bool bf16, const char *after) {
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const char *why = why_not(g, &g->nodes[i], bf16);
    if (why)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: %%%d %s (%s)%s: %s", (int)i, ldmc_op_name(g->nodes[i].op),
                        ldmc_dtype_name(g->nodes[i].dtype), after, why);
  }
  return LDMC_OK;
}

ldmc_status ldmc_tpusim_compile(const ldmc_graph *g, const ldmc_compile_opts *o, const ldmc_tpu_target *t,
                                ldmc_executable **out) {
  return ldmc_tpusim_compile_mode(g, o, t, LDMC_TPU_SIM_FUNCTIONAL, out);
}

ldmc_status ldmc_tpusim_compile_mode(const ldmc_graph *g, const ldmc_compile_opts *o, const ldmc_tpu_target *t,
                                     ldmc_tpu_sim_mode mode, ldmc_executable **out) {
  *out = NULL;
  if (mode != LDMC_TPU_SIM_FUNCTIONAL && mode != LDMC_TPU_SIM_TIMING_ONLY)
    return ldmc_error(LDMC_ERR_INVALID, "tpusim: bad simulation mode %d", (int)mode);
  if (!g) return ldmc_error(LDMC_ERR_INVALID, "tpusim: no graph");
  LDMC_TRY(ldmc_graph_verify(g));
  bool bf16 = o && o->bf16;
  if (o && o->donate) return ldmc_error(LDMC_ERR_UNSUPPORTED, "tpusim: donated state is not supported (v0)");
  LDMC_TRY(refuse(g, bf16, ""));
  ldmc_graph *gc = NULL;
  LDMC_TRY(decompose_graph(g, o, &gc));
  /* a composite's decomposition should only hold lowered ops; if not, say which */
  ldmc_status rs = refuse(gc, bf16, " of the decomposed graph");
  if (rs != LDMC_OK) {
    ldmc_graph_free(gc);
    return rs;
  }
  tpk_exec *x = calloc(1, sizeof *x);
  ldmc_executable *e = calloc(1, sizeof *e);
  if (!x || !e) {
    free(x), free(e), ldmc_graph_free(gc);
    return ldmc_error(LDMC_ERR_NOMEM, "tpusim: out of memory compiling graph '%s'", g->name);
  }
  x->g = gc;
  x->mode = mode;
  ldmc_status st = t ? ldmc_tpu_target_check(t, "tpusim target") : default_target(&x->t);
  if (t && st == LDMC_OK) x->t = *t;
  if (st == LDMC_OK) st = build(x, gc, o);
  if (st != LDMC_OK) {
    tpk_destroy(x);
    ldmc_graph_free(gc);
    free(e);
    return st;
  }
  e->iface = &k_tpk_exec;
  e->context = x;
  e->graph = gc;
  *out = e;
  return LDMC_OK;
}

static ldmc_status tpk_compile(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_executable **out) {
  return ldmc_tpusim_compile(g, o, NULL, out);
}

static tpk_exec *exec_of(const ldmc_executable *e) {
  return e && e->iface == &k_tpk_exec ? (tpk_exec *)e->context : NULL;
}

int ldmc_tpusim_kernel_count(const ldmc_executable *e) {
  const tpk_exec *x = exec_of(e);
  return x ? x->n_k : -1;
}

ldmc_status ldmc_tpusim_kernel_get(const ldmc_executable *e, int i, ldmc_tpusim_kernel *out) {
  const tpk_exec *x = exec_of(e);
  if (!x) return ldmc_error(LDMC_ERR_INVALID, "not a tpusim executable");
  if (i < 0 || i >= x->n_k) return ldmc_error(LDMC_ERR_INVALID, "tpusim: kernel %d of %d", i, x->n_k);
  const tpk_kernel *k = &x->k[i];
  out->node = k->node;
  out->nodes = k->nodes;
  out->n_nodes = k->n_nodes;
  out->buf_nodes = k->buf_node;
  out->tiles = k->tile_desc;
  out->program = &k->prog;
  kernel_mem(x, k, &out->mem, false);
  out->stats = x->stats[i];
  out->runs = x->runs;
  out->packed_buf = k->pk_n > 0 ? k->pk_buf : -1;
  out->packed_bytes = k->pk_n > 0 ? 2 * k->pk_elems : 0;
  out->packed = k->pk_n > 0 ? x->pk_data[i] : NULL;
  return LDMC_OK;
}

uint64_t ldmc_tpusim_packed_bytes(const ldmc_executable *e) {
  const tpk_exec *x = exec_of(e);
  uint64_t b = 0;
  for (int i = 0; x && i < x->n_k; i++)
    if (x->k[i].pk_n > 0) b += 2 * x->k[i].pk_elems;
  return b;
}

const ldmc_tpu_target *ldmc_tpusim_target(const ldmc_executable *e) {
  const tpk_exec *x = exec_of(e);
  return x ? &x->t : NULL;
}

const ldmc_backend_i ldmc_backend_tpusim = {
    .name = "tpusim",
    .description = "TPU-like accelerator model: composites decomposed, one kernel per node, run on the functional simulator (backends/tpusim)",
    .supports = tpk_supports,
    .compile = tpk_compile,
};
