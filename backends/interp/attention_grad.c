/* attention's backward ops (ir/ops.def) from their definitions, all
 * arithmetic in double, one rounding on store. With s = scale q k^T:
 *   attention_lse      L_i = m_i + log sum_j exp(s_ij - m_i), m_i = max_j s_ij
 *   P_ij = exp(s_ij - L_i), dP_ij = ct_i . v_j, dS_ij = P_ij (dP_ij - delta_i)
 *   attention_grad_q   dq_i = scale sum_j dS_ij k_j
 *   attention_grad_kv  (dk_j | dv_j) = (scale sum_i dS_ij q_i | sum_i P_ij ct_i)
 * Leading dims are batch; every operand is dense. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"

typedef struct adims {
  int64_t B, N, M, D, E;
} adims;

static adims dims_of(const ldmc_interp_args *a) {
  const ldmc_shape *q = &a->in[0]->shape, *k = &a->in[1]->shape;
  int r = q->rank;
  adims d = {1, q->dims[r - 2], k->dims[r - 2], q->dims[r - 1], 0};
  for (int i = 0; i < r - 2; i++) d.B *= q->dims[i];
  if (a->node->n_operands > 2) d.E = a->in[2]->shape.dims[r - 1];
  return d;
}

/* s[j] = scale q_i . k_j for query i of batch b */
static void scores(const ldmc_interp_args *a, const adims *d, int64_t b, int64_t i, double *s) {
  const ldmc_tensor *q = a->in[0], *k = a->in[1];
  double scale = a->node->attrs.scale;
  for (int64_t j = 0; j < d->M; j++) {
    double dot = 0.0;
    for (int64_t c = 0; c < d->D; c++)
      dot += ldmc_interp_getf(q, (b * d->N + i) * d->D + c) * ldmc_interp_getf(k, (b * d->M + j) * d->D + c);
    s[j] = scale * dot;
  }
}

static ldmc_status lse(const ldmc_interp_args *a, const adims *d) {
  double *s = malloc((size_t)(d->M ? d->M : 1) * sizeof *s);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "attention_lse: out of memory");
  for (int64_t b = 0; b < d->B; b++)
    for (int64_t i = 0; i < d->N; i++) {
      scores(a, d, b, i, s);
      double m = -INFINITY, sum = 0.0;
      for (int64_t j = 0; j < d->M; j++)
        if (s[j] > m || isnan(s[j])) m = s[j];
      for (int64_t j = 0; j < d->M; j++) sum += exp(s[j] - m);
      ldmc_interp_setf(a->out, b * d->N + i, d->M ? m + log(sum) : -INFINITY);
    }
  free(s);
  return LDMC_OK;
}

/* P (in s) and dS (in ds) of query i of batch b */
static void probs(const ldmc_interp_args *a, const adims *d, int64_t b, int64_t i, double *s, double *ds) {
  const ldmc_tensor *v = a->in[2], *ct = a->in[3];
  scores(a, d, b, i, s);
  double L = ldmc_interp_getf(a->in[4], b * d->N + i), delta = ldmc_interp_getf(a->in[5], b * d->N + i);
  for (int64_t j = 0; j < d->M; j++) {
    double dp = 0.0;
    for (int64_t e = 0; e < d->E; e++)
      dp += ldmc_interp_getf(ct, (b * d->N + i) * d->E + e) * ldmc_interp_getf(v, (b * d->M + j) * d->E + e);
    s[j] = exp(s[j] - L);
    ds[j] = s[j] * (dp - delta);
  }
}

static ldmc_status grad(const ldmc_interp_args *a, const adims *d, bool kv) {
  const ldmc_tensor *q = a->in[0], *k = a->in[1], *ct = a->in[3];
  double scale = a->node->attrs.scale;
  int64_t C = d->D + d->E, nacc = kv ? d->M * C : d->D;
  double *s = malloc((size_t)(d->M ? d->M : 1) * sizeof *s), *ds = malloc((size_t)(d->M ? d->M : 1) * sizeof *ds);
  double *acc = malloc((size_t)(nacc ? nacc : 1) * sizeof *acc);
  if (!s || !ds || !acc) {
    free(s), free(ds), free(acc);
    return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", ldmc_op_name(a->node->op));
  }
  for (int64_t b = 0; b < d->B; b++) {
    if (kv) memset(acc, 0, (size_t)nacc * sizeof *acc);
    for (int64_t i = 0; i < d->N; i++) {
      probs(a, d, b, i, s, ds);
      if (!kv) { /* dq_i */
        for (int64_t c = 0; c < d->D; c++) {
          double t = 0.0;
          for (int64_t j = 0; j < d->M; j++) t += ds[j] * ldmc_interp_getf(k, (b * d->M + j) * d->D + c);
          ldmc_interp_setf(a->out, (b * d->N + i) * d->D + c, scale * t);
        }
        continue;
      }
      for (int64_t j = 0; j < d->M; j++) {
        double *row = acc + j * C;
        for (int64_t c = 0; c < d->D; c++) row[c] += ds[j] * ldmc_interp_getf(q, (b * d->N + i) * d->D + c);
        for (int64_t e = 0; e < d->E; e++) row[d->D + e] += s[j] * ldmc_interp_getf(ct, (b * d->N + i) * d->E + e);
      }
    }
    if (!kv) continue;
    for (int64_t j = 0; j < d->M; j++)
      for (int64_t c = 0; c < C; c++)
        ldmc_interp_setf(a->out, (b * d->M + j) * C + c, c < d->D ? scale * acc[j * C + c] : acc[j * C + c]);
  }
  free(s);
  free(ds);
  free(acc);
  return LDMC_OK;
}

ldmc_status ldmc_interp_attention_grad(const ldmc_interp_args *a) {
  adims d = dims_of(a);
  switch (a->node->op) {
    case LDMC_OP_ATTENTION_LSE: return lse(a, &d);
    case LDMC_OP_ATTENTION_GRAD_Q: return grad(a, &d, false);
    case LDMC_OP_ATTENTION_GRAD_KV: return grad(a, &d, true);
    default: return ldmc_error(LDMC_ERR_INTERNAL, "interp: %s is not an attention backward op", ldmc_op_name(a->node->op));
  }
}
