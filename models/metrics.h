/* Sample-quality metrics in a classifier's feature space (docs/sampling.md, "Metrics"):
 * the Fréchet distance between the Gaussians fitted to two feature sets, the
 * kernel inception distance (unbiased MMD² with a cubic polynomial kernel
 * over random subsets) and class accuracy (the share of samples the
 * classifier assigns to their prompted class). Pure computation on arrays:
 * features come from models/eval.h. All arithmetic is in double; the matrix
 * square root and the Gram matrices go through LAPACK(E) and BLAS. */
#ifndef LDMC_MODELS_METRICS_H
#define LDMC_MODELS_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "support/status.h"

/* ---- Fréchet distance ------------------------------------------------------------
 * FD = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr √(Σ1 Σ2), covariances with n − 1.
 * Tr √(Σ1 Σ2) = Tr √(√Σ1 Σ2 √Σ1), a symmetric positive semi-definite
 * matrix: Σ1 = V Λ Vᵀ (dsyevd), then the eigenvalues μ of
 * Λ^½ (Vᵀ Σ2 V) Λ^½ (similar to √Σ1 Σ2 √Σ1), Tr √ = Σ √μ. Negative
 * eigenvalues of either decomposition (rounding on a singular or nearly
 * singular covariance: they are ≥ −1e-12 of the largest in practice) are
 * set to 0 and counted. A negative total (rounding when the two sets are the
 * same) is reported as 0. */
typedef struct ldmc_gaussian_stats {
  int32_t d;
  int64_t n;     /* the samples they were fitted to (informational) */
  double *mean;  /* [d] */
  double *cov;   /* [d][d] row-major, symmetric */
} ldmc_gaussian_stats;

/* Mean and covariance (divided by n − 1) of x[n][d]; n >= 2, every value
 * finite (else LDMC_ERR_INVALID naming the row and column). */
ldmc_status ldmc_gaussian_stats_compute(const float *x, int64_t n, int32_t d, ldmc_gaussian_stats *out);
void ldmc_gaussian_stats_free(ldmc_gaussian_stats *s);

typedef struct ldmc_fd_result {
  double fd;
  double mean_term;       /* ‖μ1 − μ2‖² */
  double tr1, tr2;        /* Tr Σ1, Tr Σ2 */
  double tr_sqrt;         /* Tr √(Σ1 Σ2) */
  int64_t n1, n2;
  int32_t d;
  int32_t clamped;        /* negative eigenvalues set to 0 (both decompositions) */
  double min_eig_rel;     /* the most negative eigenvalue over the largest one, or 0 */
  bool rank_deficient;    /* n1 <= d or n2 <= d: a covariance of rank < d (FD biased upward) */
} ldmc_fd_result;

/* From fitted (or given) statistics: a and b of the same d >= 1, finite,
 * covariances symmetrized as (Σ + Σᵀ)/2. */
ldmc_status ldmc_frechet_distance_stats(const ldmc_gaussian_stats *a, const ldmc_gaussian_stats *b,
                                        ldmc_fd_result *out);
/* From two feature sets x1[n1][d], x2[n2][d]: at least 2 rows each (a
 * covariance needs them); fewer is LDMC_ERR_INVALID saying how many. n <= d
 * is allowed and flagged (rank_deficient). */
ldmc_status ldmc_frechet_distance(const float *x1, int64_t n1, const float *x2, int64_t n2, int32_t d,
                                  ldmc_fd_result *out);

/* ---- KID -------------------------------------------------------------------------
 * For each of `subsets` pairs of random subsets X ⊂ x1, Y ⊂ x2 of m rows
 * (without replacement) the unbiased MMD² with k(x, y) = (x·y/d + 1)³:
 *   (Σ_{i≠j} k(Xi,Xj) + Σ_{i≠j} k(Yi,Yj)) / (m(m−1)) − 2 Σ_{i,j} k(Xi,Yj) / m²
 * reported as the mean and the standard deviation (population, ddof 0)
 * over the subsets, as torch-fidelity does. m = subset_size clipped to
 * min(n1, n2), as clean-fid does (clipped is then set); m must end up >= 2. */
#define LDMC_KID_DEFAULT_SUBSETS 100
#define LDMC_KID_DEFAULT_SUBSET_SIZE 1000

typedef struct ldmc_kid_opts {
  int32_t subsets;     /* >= 1 (0: the default) */
  int64_t subset_size; /* >= 2 (0: the default) */
  uint64_t seed;
} ldmc_kid_opts;

typedef struct ldmc_kid_result {
  double mean, std;
  int32_t subsets;
  int64_t subset_size;  /* m, after clipping */
  int64_t requested_size;
  bool clipped;
  int64_t n1, n2;
  int32_t d;
} ldmc_kid_result;

/* per_subset: NULL, or `subsets` doubles receiving each subset's MMD². */
ldmc_status ldmc_kid(const float *x1, int64_t n1, const float *x2, int64_t n2, int32_t d, const ldmc_kid_opts *o,
                     ldmc_kid_result *out, double *per_subset);

/* The subsets, reproducible anywhere: for subset s (0-based) of set w (0 for
 * x1, 1 for x2) a splitmix64 stream starting from state
 * seed ^ (0x9E3779B97F4A7C15 * (2s + w + 1)) (mod 2^64) drives a partial
 * Fisher-Yates shuffle of perm = 0..n−1: for j = 0..m−1, r = j + ((u (n − j))
 * >> 64) with u the stream's next 64-bit output, swap perm[j] and perm[r].
 * The subset is perm[0..m). perm: n entries (all written). */
void ldmc_kid_subset_indices(uint64_t seed, int32_t subset, int which, int64_t n, int64_t m, int64_t *perm);

/* ---- class accuracy -----------------------------------------------------------------
 * A sample is correct when the first maximum of its logits is its label (the
 * prompted class). Labels < 0 (no class prompted) are counted apart and left
 * out; a label >= classes is LDMC_ERR_INVALID naming the sample. */
#define LDMC_METRICS_MAX_CLASSES 1024

typedef struct ldmc_class_accuracy {
  int32_t classes;
  int64_t count, correct; /* samples with a label, and those assigned to it */
  int64_t unprompted;     /* labels < 0 */
  int64_t class_count[LDMC_METRICS_MAX_CLASSES], class_correct[LDMC_METRICS_MAX_CLASSES];
} ldmc_class_accuracy;

/* logits[n][classes], labels[n]; 1 <= classes <= LDMC_METRICS_MAX_CLASSES,
 * finite logits, at least one labelled sample. */
ldmc_status ldmc_class_accuracy_compute(const float *logits, const int64_t *labels, int64_t n, int32_t classes,
                                        ldmc_class_accuracy *out);

#endif
