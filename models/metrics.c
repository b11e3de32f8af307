/* FD, KID and class accuracy (metrics.h). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/metrics.h"

#define MAX_DIM 65536        /* features: far above any classifier's */
#define MAX_ROWS (1LL << 40) /* rows of a feature set */
#define CHUNK 1024           /* rows centred at a time for the covariance */

static ldmc_status check_set(const char *what, const float *x, int64_t n, int32_t d, int64_t min_n) {
  if (d < 1 || d > MAX_DIM)
    return ldmc_error(LDMC_ERR_INVALID, "%s: feature dimension %d must be in [1, %d]", what, d, MAX_DIM);
  if (n < min_n)
    return ldmc_error(LDMC_ERR_INVALID, "%s needs at least %lld samples per set, got %lld", what, (long long)min_n,
                      (long long)n);
  if (n > MAX_ROWS) return ldmc_error(LDMC_ERR_INVALID, "%s: %lld samples is too many", what, (long long)n);
  if (!x) return ldmc_error(LDMC_ERR_INVALID, "%s: no features (NULL)", what);
  for (int64_t i = 0; i < n; i++)
    for (int32_t j = 0; j < d; j++)
      if (!isfinite(x[i * d + j]))
        return ldmc_error(LDMC_ERR_INVALID, "%s: feature %d of sample %lld is not finite (%g)", what, j, (long long)i,
                          (double)x[i * d + j]);
  return LDMC_OK;
}

void ldmc_gaussian_stats_free(ldmc_gaussian_stats *s) {
  if (!s) return;
  free(s->mean);
  free(s->cov);
  memset(s, 0, sizeof *s);
}

ldmc_status ldmc_gaussian_stats_compute(const float *x, int64_t n, int32_t d, ldmc_gaussian_stats *out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "gaussian stats: out is NULL");
  memset(out, 0, sizeof *out);
  LDMC_TRY(check_set("FD", x, n, d, 2));
  out->d = d, out->n = n;
  out->mean = calloc((size_t)d, sizeof *out->mean);
  out->cov = calloc((size_t)d * (size_t)d, sizeof *out->cov);
  int64_t rows = n < CHUNK ? n : CHUNK;
  double *buf = malloc((size_t)rows * (size_t)d * sizeof *buf);
  if (!out->mean || !out->cov || !buf) {
    free(buf);
    ldmc_gaussian_stats_free(out);
    return ldmc_error(LDMC_ERR_NOMEM, "gaussian stats: out of memory (%d features)", d);
  }
  for (int64_t i = 0; i < n; i++)
    for (int32_t j = 0; j < d; j++) out->mean[j] += x[i * d + j];
  for (int32_t j = 0; j < d; j++) out->mean[j] /= (double)n;
  /* Σ (n−1) = Σ_chunks Xcᵀ Xc, Xc the centred rows (upper triangle, dsyrk) */
  for (int64_t i0 = 0; i0 < n; i0 += rows) {
    int64_t r = n - i0 < rows ? n - i0 : rows;
    for (int64_t i = 0; i < r; i++)
      for (int32_t j = 0; j < d; j++) buf[i * d + j] = (double)x[(i0 + i) * d + j] - out->mean[j];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, (int)r, 1.0, buf, d, i0 ? 1.0 : 0.0, out->cov, d);
  }
  free(buf);
  const double s = 1.0 / (double)(n - 1);
  for (int32_t i = 0; i < d; i++)
    for (int32_t j = i; j < d; j++) {
      out->cov[(size_t)i * d + j] *= s;
      out->cov[(size_t)j * d + i] = out->cov[(size_t)i * d + j];
    }
  return LDMC_OK;
}

static ldmc_status check_stats(const char *which, const ldmc_gaussian_stats *s, int32_t d) {
  if (!s || !s->mean || !s->cov) return ldmc_error(LDMC_ERR_INVALID, "FD: statistics %s are missing", which);
  if (s->d != d) return ldmc_error(LDMC_ERR_INVALID, "FD: statistics of %d and %d features", d, s->d);
  for (int64_t i = 0; i < (int64_t)d * d; i++)
    if (!isfinite(s->cov[i]) || (i < d && !isfinite(s->mean[i])))
      return ldmc_error(LDMC_ERR_INVALID, "FD: statistics %s hold a non-finite value", which);
  return LDMC_OK;
}

/* Eigenvalues below 0 in w[0..d) set to 0; counts them and tracks the most
 * negative relative to the largest. */
static void clamp_eigs(double *w, int32_t d, int32_t *clamped, double *min_rel) {
  double top = 0;
  for (int32_t i = 0; i < d; i++) top = fmax(top, fabs(w[i]));
  for (int32_t i = 0; i < d; i++)
    if (w[i] < 0) {
      if (top > 0 && w[i] / top < *min_rel) *min_rel = w[i] / top;
      w[i] = 0;
      (*clamped)++;
    }
}

ldmc_status ldmc_frechet_distance_stats(const ldmc_gaussian_stats *a, const ldmc_gaussian_stats *b,
                                        ldmc_fd_result *out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "FD: out is NULL");
  memset(out, 0, sizeof *out);
  if (!a || !b) return ldmc_error(LDMC_ERR_INVALID, "FD: statistics are missing");
  const int32_t d = a->d;
  if (d < 1 || d > MAX_DIM) return ldmc_error(LDMC_ERR_INVALID, "FD: feature dimension %d must be in [1, %d]", d, MAX_DIM);
  LDMC_TRY(check_stats("1", a, d));
  LDMC_TRY(check_stats("2", b, d));
  const size_t dd = (size_t)d * (size_t)d;
  double *v = malloc(dd * sizeof *v), *s2 = malloc(dd * sizeof *s2), *t = malloc(dd * sizeof *t);
  double *m = malloc(dd * sizeof *m), *w = malloc((size_t)d * sizeof *w), *mu = malloc((size_t)d * sizeof *mu);
  ldmc_status st = v && s2 && t && m && w && mu ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "FD: out of memory (%d features)", d);
  if (st == LDMC_OK) {
    for (int32_t i = 0; i < d; i++) {
      double dm = a->mean[i] - b->mean[i];
      out->mean_term += dm * dm;
      out->tr1 += a->cov[(size_t)i * d + i];
      out->tr2 += b->cov[(size_t)i * d + i];
      for (int32_t j = 0; j < d; j++) {
        v[(size_t)i * d + j] = 0.5 * (a->cov[(size_t)i * d + j] + a->cov[(size_t)j * d + i]);
        s2[(size_t)i * d + j] = 0.5 * (b->cov[(size_t)i * d + j] + b->cov[(size_t)j * d + i]);
      }
    }
    out->min_eig_rel = 0;
    /* Σ1 = V Λ Vᵀ: v becomes V (eigenvectors as columns), w Λ */
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, v, d, w);
    if (info != 0)
      st = ldmc_error(LDMC_ERR_INTERNAL, "FD: the eigendecomposition of the first covariance failed (dsyevd info %d)",
                      (int)info);
  }
  if (st == LDMC_OK) {
    clamp_eigs(w, d, &out->clamped, &out->min_eig_rel);
    for (int32_t i = 0; i < d; i++) mu[i] = sqrt(w[i]);
    /* T = Vᵀ Σ2 V, M = Λ^½ T Λ^½ */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, s2, d, v, d, 0.0, t, d);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, d, 1.0, v, d, t, d, 0.0, m, d);
    for (int32_t i = 0; i < d; i++)
      for (int32_t j = 0; j < d; j++) m[(size_t)i * d + j] *= mu[i] * mu[j];
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', d, m, d, w);
    if (info != 0)
      st = ldmc_error(LDMC_ERR_INTERNAL, "FD: the eigendecomposition of sqrt(S1) S2 sqrt(S1) failed (dsyevd info %d)",
                      (int)info);
  }
  if (st == LDMC_OK) {
    clamp_eigs(w, d, &out->clamped, &out->min_eig_rel);
    for (int32_t i = 0; i < d; i++) out->tr_sqrt += sqrt(w[i]);
    out->fd = fmax(0.0, out->mean_term + out->tr1 + out->tr2 - 2 * out->tr_sqrt);
    out->n1 = a->n, out->n2 = b->n, out->d = d;
    out->rank_deficient = a->n <= d || b->n <= d;
  }
  free(v), free(s2), free(t), free(m), free(w), free(mu);
  return st;
}

ldmc_status ldmc_frechet_distance(const float *x1, int64_t n1, const float *x2, int64_t n2, int32_t d,
                                  ldmc_fd_result *out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "FD: out is NULL");
  memset(out, 0, sizeof *out);
  ldmc_gaussian_stats a, b;
  LDMC_TRY(ldmc_gaussian_stats_compute(x1, n1, d, &a));
  ldmc_status st = ldmc_gaussian_stats_compute(x2, n2, d, &b);
  if (st == LDMC_OK) st = ldmc_frechet_distance_stats(&a, &b, out);
  ldmc_gaussian_stats_free(&a);
  ldmc_gaussian_stats_free(&b);
  return st;
}

/* ---- KID ---- */

static uint64_t splitmix64_next(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void ldmc_kid_subset_indices(uint64_t seed, int32_t subset, int which, int64_t n, int64_t m, int64_t *perm) {
  uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * (2 * (uint64_t)subset + (uint64_t)which + 1));
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t j = 0; j < m && j < n; j++) {
    unsigned __int128 p = (unsigned __int128)splitmix64_next(&x) * (uint64_t)(n - j);
    int64_t r = j + (int64_t)(p >> 64), tmp = perm[j];
    perm[j] = perm[r];
    perm[r] = tmp;
  }
}

static double cube_kernel(double g, double inv_d) {
  double k = g * inv_d + 1.0;
  return k * k * k;
}

/* Σ_{i<j} k over the upper triangle of the Gram matrix g[m][m] (dsyrk's). */
static double sum_off_diagonal(const double *g, int64_t m, double inv_d) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(dynamic, 16)
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = i + 1; j < m; j++) s += cube_kernel(g[i * m + j], inv_d);
  return s;
}

static double sum_all(const double *g, int64_t m, double inv_d) {
  double s = 0;
#pragma omp parallel for reduction(+ : s)
  for (int64_t i = 0; i < m * m; i++) s += cube_kernel(g[i], inv_d);
  return s;
}

static void gather(const float *x, const int64_t *idx, int64_t m, int32_t d, double *out) {
  for (int64_t i = 0; i < m; i++)
    for (int32_t j = 0; j < d; j++) out[i * d + j] = x[idx[i] * d + j];
}

ldmc_status ldmc_kid(const float *x1, int64_t n1, const float *x2, int64_t n2, int32_t d, const ldmc_kid_opts *o,
                     ldmc_kid_result *out, double *per_subset) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "KID: out is NULL");
  memset(out, 0, sizeof *out);
  ldmc_kid_opts opt = o ? *o : (ldmc_kid_opts){0};
  if (opt.subsets == 0) opt.subsets = LDMC_KID_DEFAULT_SUBSETS;
  if (opt.subset_size == 0) opt.subset_size = LDMC_KID_DEFAULT_SUBSET_SIZE;
  if (opt.subsets < 1 || opt.subset_size < 2)
    return ldmc_error(LDMC_ERR_INVALID, "KID: %d subsets of %lld samples: need at least 1 subset of at least 2",
                      opt.subsets, (long long)opt.subset_size);
  LDMC_TRY(check_set("KID", x1, n1, d, 2));
  LDMC_TRY(check_set("KID", x2, n2, d, 2));
  int64_t m = opt.subset_size, nmin = n1 < n2 ? n1 : n2;
  out->requested_size = m;
  if (m > nmin) m = nmin, out->clipped = true;
  const int64_t nmax = n1 > n2 ? n1 : n2;
  int64_t *perm = malloc((size_t)nmax * sizeof *perm);
  double *xs = malloc((size_t)(m * d) * sizeof *xs), *ys = malloc((size_t)(m * d) * sizeof *ys);
  double *g = malloc((size_t)(m * m) * sizeof *g), *mmd = malloc((size_t)opt.subsets * sizeof *mmd);
  if (!perm || !xs || !ys || !g || !mmd) {
    free(perm), free(xs), free(ys), free(g), free(mmd);
    return ldmc_error(LDMC_ERR_NOMEM, "KID: out of memory (subsets of %lld)", (long long)m);
  }
  const double inv_d = 1.0 / d, mf = (double)m;
  double sum = 0;
  for (int32_t s = 0; s < opt.subsets; s++) {
    ldmc_kid_subset_indices(opt.seed, s, 0, n1, m, perm);
    gather(x1, perm, m, d, xs);
    ldmc_kid_subset_indices(opt.seed, s, 1, n2, m, perm);
    gather(x2, perm, m, d, ys);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)m, d, 1.0, xs, d, 0.0, g, (int)m);
    double kxx = 2 * sum_off_diagonal(g, m, inv_d);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)m, d, 1.0, ys, d, 0.0, g, (int)m);
    double kyy = 2 * sum_off_diagonal(g, m, inv_d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)m, d, 1.0, xs, d, ys, d, 0.0, g, (int)m);
    double kxy = sum_all(g, m, inv_d);
    mmd[s] = (kxx + kyy) / (mf * (mf - 1)) - 2 * kxy / (mf * mf);
    sum += mmd[s];
  }
  out->mean = sum / opt.subsets;
  double var = 0;
  for (int32_t s = 0; s < opt.subsets; s++) var += (mmd[s] - out->mean) * (mmd[s] - out->mean);
  out->std = sqrt(var / opt.subsets);
  out->subsets = opt.subsets, out->subset_size = m, out->n1 = n1, out->n2 = n2, out->d = d;
  if (per_subset) memcpy(per_subset, mmd, (size_t)opt.subsets * sizeof *mmd);
  free(perm), free(xs), free(ys), free(g), free(mmd);
  return LDMC_OK;
}

/* ---- class accuracy ---- */

ldmc_status ldmc_class_accuracy_compute(const float *logits, const int64_t *labels, int64_t n, int32_t classes,
                                        ldmc_class_accuracy *out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "class accuracy: out is NULL");
  memset(out, 0, sizeof *out);
  if (classes < 1 || classes > LDMC_METRICS_MAX_CLASSES)
    return ldmc_error(LDMC_ERR_INVALID, "class accuracy: %d classes must be in [1, %d]", classes,
                      LDMC_METRICS_MAX_CLASSES);
  if (n < 0 || (n > 0 && (!logits || !labels))) return ldmc_error(LDMC_ERR_INVALID, "class accuracy: no logits or labels");
  out->classes = classes;
  for (int64_t i = 0; i < n; i++) {
    const float *l = logits + i * classes;
    int32_t best = 0;
    for (int32_t k = 0; k < classes; k++) {
      if (!isfinite(l[k]))
        return ldmc_error(LDMC_ERR_INVALID, "class accuracy: logit %d of sample %lld is not finite (%g)", k,
                          (long long)i, (double)l[k]);
      if (l[k] > l[best]) best = k;
    }
    if (labels[i] < 0) {
      out->unprompted++;
      continue;
    }
    if (labels[i] >= classes)
      return ldmc_error(LDMC_ERR_INVALID, "class accuracy: sample %lld has label %lld, but the classifier has %d classes",
                        (long long)i, (long long)labels[i], classes);
    out->count++;
    out->class_count[labels[i]]++;
    if (best == labels[i]) out->correct++, out->class_correct[labels[i]]++;
  }
  if (out->count == 0)
    return ldmc_error(LDMC_ERR_INVALID, "class accuracy needs at least 1 sample with a prompted class, got 0 of %lld",
                      (long long)n);
  return LDMC_OK;
}
