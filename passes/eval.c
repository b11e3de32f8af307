/* A small evaluator of single nodes: constant folding uses it, and the tests
 * use it to execute a plan over its arena. Elementwise ops go through the
 * scalar evaluator the interpreter uses (ir/scalar.h), so a folded constant
 * is exactly what the interpreter would compute; the rest is computed in
 * double precision with results rounded to the node's dtype. It covers the
 * elementwise ops, data movement, reductions, dot_general, convolution and
 * the row-wise composites;
 * rng, gather, scatter_add, group_norm, layer_norm, attention answer
 * LDMC_ERR_UNSUPPORTED. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/scalar.h"
#include "passes/pass_util.h"

static void strides_of(const ldmc_shape *s, int64_t *st) {
  int64_t k = 1;
  for (int i = s->rank - 1; i >= 0; i--) {
    st[i] = k;
    k *= s->dims[i];
  }
}

static bool next_index(const ldmc_shape *s, int64_t *idx) {
  for (int i = s->rank - 1; i >= 0; i--) {
    if (++idx[i] < s->dims[i]) return true;
    idx[i] = 0;
  }
  return false;
}

bool ldmc_eval_supported(ldmc_op op) {
  switch (op) {
    case LDMC_OP_PARAMETER: case LDMC_OP_RNG_UNIFORM: case LDMC_OP_RNG_NORMAL: case LDMC_OP_GATHER:
    case LDMC_OP_SCATTER_ADD: case LDMC_OP_GROUP_NORM: case LDMC_OP_LAYER_NORM: case LDMC_OP_ATTENTION:
    case LDMC_OP_ATTENTION_LSE: case LDMC_OP_ATTENTION_GRAD_Q: case LDMC_OP_ATTENTION_GRAD_KV:
      return false;
    default:
      return true;
  }
}

/* out[idx] = in[src(idx)] for the pure index-mapping ops. */
static void eval_movement(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out) {
  const ldmc_shape *os = &out->shape, *is = &in[0].shape;
  int64_t ist[LDMC_MAX_RANK] = {0}, idx[LDMC_MAX_RANK] = {0};
  strides_of(is, ist);
  int64_t numel = 1;
  for (int i = 0; i < os->rank; i++) numel *= os->dims[i];
  const ldmc_attrs *a = &n->attrs;
  for (int64_t e = 0; e < numel; e++, next_index(os, idx)) {
    int64_t src = 0;
    bool pad = false;
    switch (n->op) {
      case LDMC_OP_RESHAPE: src = e; break;
      case LDMC_OP_TRANSPOSE:
        for (int i = 0; i < os->rank; i++) src += idx[i] * ist[a->dims.v[i]];
        break;
      case LDMC_OP_BROADCAST_IN_DIM:
        for (int i = 0; i < is->rank; i++) src += (is->dims[i] == 1 ? 0 : idx[a->dims.v[i]]) * ist[i];
        break;
      case LDMC_OP_SLICE:
        for (int i = 0; i < os->rank; i++) src += (a->start.v[i] + idx[i] * a->stride.v[i]) * ist[i];
        break;
      case LDMC_OP_PAD:
        for (int i = 0; i < os->rank && !pad; i++) {
          int64_t step = 1 + (a->interior.n > i ? a->interior.v[i] : 0), p = idx[i] - a->low.v[i];
          if (p < 0 || p % step != 0 || p / step >= is->dims[i]) pad = true;
          else src += (p / step) * ist[i];
        }
        break;
      case LDMC_OP_UPSAMPLE_NEAREST:
        for (int i = 0; i < os->rank; i++) src += (i < 2 ? idx[i] : idx[i] / a->factor) * ist[i];
        break;
      default: break;
    }
    ldmc_tensor_set_elem(out, e, pad ? ldmc_tensor_get(&in[1], 0) : ldmc_tensor_get(&in[0], src));
  }
}

static void eval_concat(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out) {
  int64_t axis = n->attrs.axis, idx[LDMC_MAX_RANK] = {0};
  int64_t numel = ldmc_node_numel(n);
  for (int64_t e = 0; e < numel; e++, next_index(&out->shape, idx)) {
    int64_t p = idx[axis];
    int k = 0;
    while (p >= in[k].shape.dims[axis]) p -= in[k++].shape.dims[axis];
    int64_t st[LDMC_MAX_RANK], src = 0;
    strides_of(&in[k].shape, st);
    for (int i = 0; i < out->shape.rank; i++) src += (i == axis ? p : idx[i]) * st[i];
    ldmc_tensor_set_elem(out, e, ldmc_tensor_get(&in[k], src));
  }
}

static void eval_iota(const ldmc_node *n, ldmc_tensor *out) {
  int64_t idx[LDMC_MAX_RANK] = {0}, numel = ldmc_node_numel(n);
  for (int64_t e = 0; e < numel; e++, next_index(&out->shape, idx)) ldmc_tensor_set_elem(out, e, (double)idx[n->attrs.axis]);
}

static void eval_reduce(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out) {
  bool red[LDMC_MAX_RANK] = {0};
  for (int i = 0; i < n->attrs.dims.n; i++) red[n->attrs.dims.v[i]] = true;
  int64_t onumel = ldmc_node_numel(n);
  double init = n->attrs.reduce == LDMC_REDUCE_SUM ? 0 : n->attrs.reduce == LDMC_REDUCE_MAX ? -INFINITY : INFINITY;
  double *acc = malloc((size_t)(onumel ? onumel : 1) * sizeof *acc);
  if (!acc) return;
  for (int64_t e = 0; e < onumel; e++) acc[e] = init;
  int64_t ost[LDMC_MAX_RANK] = {0}, idx[LDMC_MAX_RANK] = {0}, inumel = 1;
  strides_of(&out->shape, ost);
  for (int i = 0; i < in->shape.rank; i++) inumel *= in->shape.dims[i];
  for (int64_t e = 0; e < inumel; e++, next_index(&in->shape, idx)) {
    int64_t o = 0;
    for (int i = 0, j = 0; i < in->shape.rank; i++)
      if (!red[i]) o += idx[i] * ost[j++];
    double v = ldmc_tensor_get(in, e);
    switch (n->attrs.reduce) {
      case LDMC_REDUCE_SUM: acc[o] += v; break;
      case LDMC_REDUCE_MAX: acc[o] = isnan(v) || v > acc[o] ? v : acc[o]; break;
      default: acc[o] = isnan(v) || v < acc[o] ? v : acc[o]; break;
    }
  }
  for (int64_t e = 0; e < onumel; e++) ldmc_tensor_set_elem(out, e, acc[e]);
  free(acc);
}

/* Result dims: batch, lhs free, rhs free (StableHLO order). */
static void eval_dot(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out) {
  const ldmc_attrs *a = &n->attrs;
  const ldmc_shape *ls = &in[0].shape, *rs = &in[1].shape;
  int lfree[LDMC_MAX_RANK], rfree[LDMC_MAX_RANK], nlf = 0, nrf = 0;
  for (int i = 0; i < ls->rank; i++) {
    bool used = false;
    for (int k = 0; k < a->lhs_batch.n; k++) used |= a->lhs_batch.v[k] == i;
    for (int k = 0; k < a->lhs_contract.n; k++) used |= a->lhs_contract.v[k] == i;
    if (!used) lfree[nlf++] = i;
  }
  for (int i = 0; i < rs->rank; i++) {
    bool used = false;
    for (int k = 0; k < a->rhs_batch.n; k++) used |= a->rhs_batch.v[k] == i;
    for (int k = 0; k < a->rhs_contract.n; k++) used |= a->rhs_contract.v[k] == i;
    if (!used) rfree[nrf++] = i;
  }
  int64_t lst[LDMC_MAX_RANK], rst[LDMC_MAX_RANK];
  strides_of(ls, lst);
  strides_of(rs, rst);
  ldmc_shape cs = {.rank = a->lhs_contract.n};
  for (int k = 0; k < cs.rank; k++) cs.dims[k] = ls->dims[a->lhs_contract.v[k]];
  int64_t idx[LDMC_MAX_RANK] = {0}, numel = ldmc_node_numel(n);
  int nb = a->lhs_batch.n;
  for (int64_t e = 0; e < numel; e++, next_index(&out->shape, idx)) {
    int64_t lb = 0, rb = 0;
    for (int k = 0; k < nb; k++) {
      lb += idx[k] * lst[a->lhs_batch.v[k]];
      rb += idx[k] * rst[a->rhs_batch.v[k]];
    }
    for (int k = 0; k < nlf; k++) lb += idx[nb + k] * lst[lfree[k]];
    for (int k = 0; k < nrf; k++) rb += idx[nb + nlf + k] * rst[rfree[k]];
    double acc = 0;
    int64_t c[LDMC_MAX_RANK] = {0}, cn = 1;
    for (int k = 0; k < cs.rank; k++) cn *= cs.dims[k];
    for (int64_t j = 0; j < cn; j++, next_index(&cs, c)) {
      int64_t lo = lb, ro = rb;
      for (int k = 0; k < cs.rank; k++) {
        lo += c[k] * lst[a->lhs_contract.v[k]];
        ro += c[k] * rst[a->rhs_contract.v[k]];
      }
      acc += ldmc_tensor_get(&in[0], lo) * ldmc_tensor_get(&in[1], ro);
    }
    ldmc_tensor_set_elem(out, e, acc);
  }
}

/* General convolution over input_dims / kernel_dims / output_dims. */
static void eval_conv(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out) {
  const ldmc_attrs *a = &n->attrs;
  const ldmc_shape *xs = &in[0].shape, *ws = &in[1].shape;
  int ns = xs->rank - 2;
  int64_t xst[LDMC_MAX_RANK], wst[LDMC_MAX_RANK];
  strides_of(xs, xst);
  strides_of(ws, wst);
  int64_t groups = a->groups > 0 ? a->groups : 1;
  int64_t cin = xs->dims[a->input_dims.v[1]], cin_g = cin / groups;
  int64_t cout = ws->dims[a->kernel_dims.v[0]], cout_g = cout / groups;
  ldmc_shape win = {.rank = ns + 1};
  win.dims[0] = cin_g;
  for (int s = 0; s < ns; s++) win.dims[s + 1] = ws->dims[a->kernel_dims.v[2 + s]];
  int64_t idx[LDMC_MAX_RANK] = {0}, numel = ldmc_node_numel(n);
  for (int64_t e = 0; e < numel; e++, next_index(&out->shape, idx)) {
    int64_t b = idx[a->output_dims.v[0]], f = idx[a->output_dims.v[1]], g = f / cout_g;
    double acc = 0;
    int64_t w[LDMC_MAX_RANK] = {0}, wn = 1;
    for (int k = 0; k < win.rank; k++) wn *= win.dims[k];
    for (int64_t j = 0; j < wn; j++, next_index(&win, w)) {
      int64_t xo = b * xst[a->input_dims.v[0]] + (g * cin_g + w[0]) * xst[a->input_dims.v[1]];
      int64_t wo = f * wst[a->kernel_dims.v[0]] + w[0] * wst[a->kernel_dims.v[1]];
      bool inside = true;
      for (int s = 0; s < ns && inside; s++) {
        int64_t ld = a->lhs_dilation.n > s ? a->lhs_dilation.v[s] : 1;
        int64_t rd = a->rhs_dilation.n > s ? a->rhs_dilation.v[s] : 1;
        int64_t st = a->window_stride.n > s ? a->window_stride.v[s] : 1;
        int64_t pl = a->pad_low.n > s ? a->pad_low.v[s] : 0;
        int64_t p = idx[a->output_dims.v[2 + s]] * st + w[1 + s] * rd - pl; /* in the dilated input */
        if (p < 0 || p % ld != 0 || p / ld >= xs->dims[a->input_dims.v[2 + s]]) inside = false;
        xo += (p / ld) * xst[a->input_dims.v[2 + s]];
        wo += w[1 + s] * wst[a->kernel_dims.v[2 + s]];
      }
      if (inside) acc += ldmc_tensor_get(&in[0], xo) * ldmc_tensor_get(&in[1], wo);
    }
    ldmc_tensor_set_elem(out, e, acc);
  }
}

static void eval_softmax(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out) {
  int64_t st[LDMC_MAX_RANK], idx[LDMC_MAX_RANK] = {0}, numel = ldmc_node_numel(n);
  int axis = (int)n->attrs.axis;
  strides_of(&out->shape, st);
  int64_t len = out->shape.dims[axis], step = st[axis];
  for (int64_t e = 0; e < numel; e++, next_index(&out->shape, idx)) {
    if (idx[axis] != 0) continue;
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < len; j++) m = fmax(m, ldmc_tensor_get(in, e + j * step));
    for (int64_t j = 0; j < len; j++) sum += exp(ldmc_tensor_get(in, e + j * step) - m);
    for (int64_t j = 0; j < len; j++) ldmc_tensor_set_elem(out, e + j * step, exp(ldmc_tensor_get(in, e + j * step) - m) / sum);
  }
}

ldmc_status ldmc_eval_node(const ldmc_node *n, const ldmc_tensor *in, ldmc_tensor *out) {
  if (!ldmc_eval_supported(n->op)) return ldmc_error(LDMC_ERR_UNSUPPORTED, "eval: %s is not evaluated", ldmc_op_name(n->op));
  LDMC_TRY(ldmc_tensor_alloc(out, "", n->dtype, &n->shape));
  uint32_t flags = ldmc_op_table[n->op].flags;
  if (n->op == LDMC_OP_CONSTANT) {
    if (n->attrs.value.nbytes < out->nbytes) {
      ldmc_tensor_release(out);
      return ldmc_error(LDMC_ERR_INVALID, "eval: constant holds %zu bytes, its type needs %zu", n->attrs.value.nbytes,
                        out->nbytes);
    }
    memcpy(out->data, n->attrs.value.data, out->nbytes);
  } else if (n->op == LDMC_OP_IOTA) {
    eval_iota(n, out);
  } else if (flags & LDMC_OPF_ELEMENTWISE) { /* the interpreter's own scalar code (ir/scalar.h) */
    const ldmc_tensor *ops[3] = {NULL, NULL, NULL};
    for (int k = 0; k < n->n_operands && k < 3; k++) ops[k] = &in[k];
    ldmc_status st = ldmc_scalar_eval_elementwise(n, ops, out);
    if (st != LDMC_OK) {
      ldmc_tensor_release(out);
      return st;
    }
  } else {
    switch (n->op) {
      case LDMC_OP_RESHAPE: case LDMC_OP_TRANSPOSE: case LDMC_OP_BROADCAST_IN_DIM: case LDMC_OP_SLICE:
      case LDMC_OP_PAD: case LDMC_OP_UPSAMPLE_NEAREST:
        eval_movement(n, in, out);
        break;
      case LDMC_OP_CONCATENATE: eval_concat(n, in, out); break;
      case LDMC_OP_REDUCE: eval_reduce(n, in, out); break;
      case LDMC_OP_DOT_GENERAL: eval_dot(n, in, out); break;
      case LDMC_OP_CONVOLUTION: eval_conv(n, in, out); break;
      case LDMC_OP_SOFTMAX: eval_softmax(n, in, out); break;
      default:
        ldmc_tensor_release(out);
        return ldmc_error(LDMC_ERR_UNSUPPORTED, "eval: %s is not evaluated", ldmc_op_name(n->op));
    }
  }
  return LDMC_OK;
}
