/* reduce and dot_general. Float results accumulate in double and round once;
 * integers accumulate exactly in 64 bits and wrap to the result width. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/interp/interp.h"

/* ---- reduce ------------------------------------------------------------------ */
ldmc_status ldmc_interp_reduce(const ldmc_interp_args *a) {
  const ldmc_tensor *x = a->in[0];
  ldmc_tensor *out = a->out;
  ldmc_reduce_kind kind = a->node->attrs.reduce;
  const ldmc_ints *dims = &a->node->attrs.dims;
  int64_t nout = ldmc_interp_numel(&out->shape), nin = ldmc_interp_numel(&x->shape);
  /* stride into the result for each operand dim; 0 for reduced dims */
  int64_t ost[LDMC_MAX_RANK], xo[LDMC_MAX_RANK] = {0};
  ldmc_interp_strides(&out->shape, ost);
  for (int d = 0, k = 0; d < x->shape.rank; d++) {
    bool red = false;
    for (int j = 0; j < dims->n; j++) red |= dims->v[j] == d;
    if (!red) xo[d] = ost[k++];
  }
  bool fl = ldmc_interp_is_float(x);
  size_t cnt = (size_t)(nout ? nout : 1);
  double *accf = fl ? malloc(cnt * sizeof *accf) : NULL;
  int64_t *acci = fl ? NULL : malloc(cnt * sizeof *acci);
  if (!accf && !acci) return ldmc_error(LDMC_ERR_NOMEM, "reduce: out of memory");
  int64_t imax = x->dtype == LDMC_I32 ? INT32_MAX : INT64_MAX, imin = x->dtype == LDMC_I32 ? INT32_MIN : INT64_MIN;
  for (int64_t i = 0; i < nout; i++) { /* identities: an empty reduction gives these */
    if (fl)
      accf[i] = kind == LDMC_REDUCE_SUM ? 0.0 : kind == LDMC_REDUCE_MAX ? -INFINITY : INFINITY;
    else
      acci[i] = kind == LDMC_REDUCE_SUM ? 0 : kind == LDMC_REDUCE_MAX ? imin : imax;
  }
  int64_t idx[LDMC_MAX_RANK] = {0}, o = 0;
  for (int64_t i = 0; i < nin; i++) {
    if (fl) {
      double v = ldmc_interp_getf(x, i), *p = &accf[o];
      if (kind == LDMC_REDUCE_SUM) *p += v;
      else if (isnan(v) || (kind == LDMC_REDUCE_MAX ? v > *p : v < *p)) *p = isnan(*p) ? *p : v; /* NaN sticks */
    } else {
      int64_t v = ldmc_interp_geti(x, i), *p = &acci[o];
      if (kind == LDMC_REDUCE_SUM) *p = (int64_t)((uint64_t)*p + (uint64_t)v);
      else if (kind == LDMC_REDUCE_MAX ? v > *p : v < *p) *p = v;
    }
    for (int d = x->shape.rank - 1; d >= 0; d--) { /* odometer over the operand */
      o += xo[d];
      if (++idx[d] < x->shape.dims[d]) break;
      o -= xo[d] * x->shape.dims[d];
      idx[d] = 0;
    }
  }
  for (int64_t i = 0; i < nout; i++) {
    if (fl)
      ldmc_interp_setf(out, i, accf[i]);
    else
      ldmc_interp_seti(out, i, acci[i]);
  }
  free(accf);
  free(acci);
  return LDMC_OK;
}

/* ---- dot_general ----------------------------------------------------------------- */
/* Offsets (in elements) of every multi-index over the listed dims of s, in
 * row-major order of that list. */
static int64_t *offset_table(const ldmc_shape *s, const int64_t *dims, int n, int64_t *count) {
  int64_t st[LDMC_MAX_RANK], c = 1;
  ldmc_interp_strides(s, st);
  for (int i = 0; i < n; i++) c *= s->dims[dims[i]];
  *count = c;
  int64_t *t = malloc((size_t)(c ? c : 1) * sizeof *t);
  if (!t) return NULL;
  for (int64_t k = 0; k < c; k++) {
    int64_t rem = k, off = 0;
    for (int i = n - 1; i >= 0; i--) {
      int64_t d = s->dims[dims[i]];
      off += (rem % d) * st[dims[i]];
      rem /= d;
    }
    t[k] = off;
  }
  return t;
}

/* The dims of s that are neither batch nor contracting, in order. */
static int free_dims(const ldmc_shape *s, const ldmc_ints *batch, const ldmc_ints *contract, int64_t *out) {
  int n = 0;
  for (int d = 0; d < s->rank; d++) {
    bool used = false;
    for (int j = 0; j < batch->n; j++) used |= batch->v[j] == d;
    for (int j = 0; j < contract->n; j++) used |= contract->v[j] == d;
    if (!used) out[n++] = d;
  }
  return n;
}

typedef struct dot_plan {
  int64_t nb, nm, nn, nk;
  int64_t *bl, *br, *fl, *fr, *cl, *cr; /* offset tables: batch, free, contracting for lhs / rhs */
} dot_plan;

static void plan_free(dot_plan *p) {
  free(p->bl); free(p->br); free(p->fl); free(p->fr); free(p->cl); free(p->cr);
}

static ldmc_status plan_make(const ldmc_attrs *at, const ldmc_tensor *l, const ldmc_tensor *r, dot_plan *p) {
  int64_t lf[LDMC_MAX_RANK], rf[LDMC_MAX_RANK], dummy;
  int nlf = free_dims(&l->shape, &at->lhs_batch, &at->lhs_contract, lf);
  int nrf = free_dims(&r->shape, &at->rhs_batch, &at->rhs_contract, rf);
  memset(p, 0, sizeof *p);
  p->bl = offset_table(&l->shape, at->lhs_batch.v, at->lhs_batch.n, &p->nb);
  p->br = offset_table(&r->shape, at->rhs_batch.v, at->rhs_batch.n, &dummy);
  p->fl = offset_table(&l->shape, lf, nlf, &p->nm);
  p->fr = offset_table(&r->shape, rf, nrf, &p->nn);
  p->cl = offset_table(&l->shape, at->lhs_contract.v, at->lhs_contract.n, &p->nk);
  p->cr = offset_table(&r->shape, at->rhs_contract.v, at->rhs_contract.n, &dummy);
  if (!p->bl || !p->br || !p->fl || !p->fr || !p->cl || !p->cr) {
    plan_free(p);
    return ldmc_error(LDMC_ERR_NOMEM, "dot_general: out of memory");
  }
  return LDMC_OK;
}

/* Floats: operands packed as double A[b][m][k] and B[b][k][n], then row by
 * row with a double accumulator per output row. Rows run in parallel; each
 * output's sum order is fixed, so results do not depend on thread count. */
static ldmc_status dot_float(const ldmc_tensor *l, const ldmc_tensor *r, ldmc_tensor *out, const dot_plan *p) {
  size_t na = (size_t)(p->nb * p->nm * p->nk), nbm = (size_t)(p->nb * p->nk * p->nn);
  double *A = malloc((na ? na : 1) * sizeof *A), *B = malloc((nbm ? nbm : 1) * sizeof *B);
  if (!A || !B) {
    free(A);
    free(B);
    return ldmc_error(LDMC_ERR_NOMEM, "dot_general: out of memory packing %zu + %zu doubles", na, nbm);
  }
  for (int64_t b = 0; b < p->nb; b++) {
    for (int64_t m = 0; m < p->nm; m++)
      for (int64_t k = 0; k < p->nk; k++)
        A[(b * p->nm + m) * p->nk + k] = ldmc_interp_getf(l, p->bl[b] + p->fl[m] + p->cl[k]);
    for (int64_t k = 0; k < p->nk; k++)
      for (int64_t n = 0; n < p->nn; n++)
        B[(b * p->nk + k) * p->nn + n] = ldmc_interp_getf(r, p->br[b] + p->fr[n] + p->cr[k]);
  }
  int64_t rows = p->nb * p->nm, nn = p->nn, nk = p->nk, nm = p->nm;
  bool oom = false;
#pragma omp parallel if (rows * nn * nk > LDMC_INTERP_PAR_MIN)
  {
    double *acc = malloc((size_t)(nn ? nn : 1) * sizeof *acc);
    if (!acc) {
#pragma omp atomic write
      oom = true;
    }
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; row++) {
      if (!acc) continue;
      const double *arow = A + row * nk, *bmat = B + (row / nm) * nk * nn;
      for (int64_t n = 0; n < nn; n++) acc[n] = 0.0;
      for (int64_t k = 0; k < nk; k++) {
        double av = arow[k];
        const double *brow = bmat + k * nn;
        for (int64_t n = 0; n < nn; n++) acc[n] += av * brow[n];
      }
      for (int64_t n = 0; n < nn; n++) ldmc_interp_setf(out, row * nn + n, acc[n]);
    }
    free(acc);
  }
  free(A);
  free(B);
  return oom ? ldmc_error(LDMC_ERR_NOMEM, "dot_general: out of memory") : LDMC_OK;
}

static void dot_int(const ldmc_tensor *l, const ldmc_tensor *r, ldmc_tensor *out, const dot_plan *p) {
  for (int64_t b = 0; b < p->nb; b++)
    for (int64_t m = 0; m < p->nm; m++)
      for (int64_t n = 0; n < p->nn; n++) {
        uint64_t s = 0;
        for (int64_t k = 0; k < p->nk; k++)
          s += (uint64_t)ldmc_interp_geti(l, p->bl[b] + p->fl[m] + p->cl[k]) *
               (uint64_t)ldmc_interp_geti(r, p->br[b] + p->fr[n] + p->cr[k]);
        ldmc_interp_seti(out, (b * p->nm + m) * p->nn + n, (int64_t)s);
      }
}

/* result = batch ++ lhs free ++ rhs free (StableHLO order) */
ldmc_status ldmc_interp_dot_general(const ldmc_interp_args *a) {
  const ldmc_tensor *l = a->in[0], *r = a->in[1];
  dot_plan p;
  LDMC_TRY(plan_make(&a->node->attrs, l, r, &p));
  ldmc_status st = LDMC_OK;
  if (ldmc_interp_is_float(l))
    st = dot_float(l, r, a->out, &p);
  else
    dot_int(l, r, a->out, &p);
  plan_free(&p);
  return st;
}
