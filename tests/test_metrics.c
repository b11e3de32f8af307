/* Sample-quality metrics (models/metrics.h) and their inputs (models/eval.h):
 *  1. FD, KID (every subset's MMD²) and class accuracy on random feature sets
 *     (d = 16 and 128, hundreds of rows; correlated, ReLU-like, nearly
 *     singular of rank 10, and fewer rows than features) against
 *     tests/python/metrics_ref.py (scipy.linalg.sqrtm, numpy, the subset
 *     scheme reimplemented); skipped, with a message, without scipy;
 *  2. FD of a set with itself is ~0; FD of Gaussians with known diagonal (and
 *     co-diagonalizable) covariances equals Σ(μ1−μ2)² + Σ(√a − √b)², from the
 *     statistics and, within sampling error, from 20000 draws;
 *  3. KID of two samples of one distribution is ~0 within its spread and
 *     far from 0 for shifted ones; the subset scheme draws distinct indices;
 *  4. class accuracy on hand-made logits (a tie goes to the first class,
 *     unprompted labels left out) and its errors;
 *  5. a tiny classifier whose logits are known by construction, written as
 *     an .ldmc model file (bf16 and f32 tensors), loaded and run in batches
 *     with a partial last batch on interp and llvm-cpu: exact features and
 *     logits, the expected accuracy; sample files and their errors;
 *  6. sets too small for a figure are refused with a message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/weights_io.h"
#include "models/eval.h"
#include "models/metrics.h"
#include "runtime/checkpoint.h"
#include "support/half.h"
#include "test_util.h"

static char g_dir[64];

/* ---- random data ---- */
static uint64_t g_rng = 12345;
static uint64_t next_u64(void) {
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double uniform(void) { return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0; }
static double normal(void) { return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform()); }

/* x[n][d] = relu?(z A + shift), z[n][r] standard normal, A[r][d] normal / sqrt(r), plus noise. */
static float *make_set(int64_t n, int32_t d, int32_t r, double shift, double scale, double noise, bool relu,
                       uint64_t seed_a) {
  uint64_t keep = g_rng;
  g_rng = seed_a; /* the same A for sets drawn with the same seed_a */
  double *a = malloc((size_t)r * d * sizeof *a);
  for (int64_t i = 0; i < (int64_t)r * d; i++) a[i] = normal() / sqrt((double)r);
  g_rng = keep;
  float *x = malloc((size_t)(n * d) * sizeof *x);
  double *z = malloc((size_t)r * sizeof *z);
  for (int64_t i = 0; i < n; i++) {
    for (int32_t k = 0; k < r; k++) z[k] = normal();
    for (int32_t j = 0; j < d; j++) {
      double v = shift;
      for (int32_t k = 0; k < r; k++) v += scale * z[k] * a[k * d + j];
      v += noise * normal();
      x[i * d + j] = (float)(relu && v < 0 ? 0 : v);
    }
  }
  free(a);
  free(z);
  return x;
}

static ldmc_status add_f32(ldmc_tensor_set *s, const char *name, const float *v, int rank, const int64_t *dims) {
  ldmc_tensor t;
  ldmc_shape sh = {rank, {0}};
  for (int i = 0; i < rank; i++) sh.dims[i] = dims[i];
  LDMC_TRY(ldmc_tensor_alloc(&t, name, LDMC_F32, &sh));
  memcpy(t.data, v, t.nbytes);
  return ldmc_tensor_set_add(s, &t);
}

static ldmc_status add_i64(ldmc_tensor_set *s, const char *name, const int64_t *v, int64_t n) {
  ldmc_tensor t;
  LDMC_TRY(ldmc_tensor_alloc(&t, name, LDMC_I64, &(ldmc_shape){1, {n}}));
  memcpy(t.data, v, t.nbytes);
  return ldmc_tensor_set_add(s, &t);
}

/* ---- 1: against numpy/scipy ---- */
typedef struct ref_case {
  const char *name;
  int64_t n1, n2;
  int32_t d, rank;
  double shift2, scale2, noise;
  bool relu;
  int32_t subsets;
  int64_t subset_size;
} ref_case;

static double ref_scalar(const ldmc_tensor_set *ref, const char *name) {
  const ldmc_tensor *t = ldmc_tensor_set_find(ref, name);
  return t ? ldmc_tensor_get(t, 0) : NAN;
}

static void test_against_scipy(const ref_case *c, int case_index) {
  float *x1 = make_set(c->n1, c->d, c->rank, 0.0, 1.0, c->noise, c->relu, 100 + (uint64_t)case_index);
  float *x2 = make_set(c->n2, c->d, c->rank, c->shift2, c->scale2, c->noise, c->relu, 100 + (uint64_t)case_index);
  const int32_t classes = 5;
  int64_t n = c->n1;
  float *logits = malloc((size_t)(n * classes) * sizeof *logits);
  int64_t *labels = malloc((size_t)n * sizeof *labels);
  for (int64_t i = 0; i < n; i++) {
    for (int32_t k = 0; k < classes; k++) logits[i * classes + k] = (float)normal();
    labels[i] = (int64_t)(next_u64() % (classes + 1)) - 1; /* -1: unprompted */
  }
  ldmc_fd_result fd;
  ldmc_kid_result kid;
  ldmc_class_accuracy acc;
  ldmc_kid_opts ko = {.subsets = c->subsets, .subset_size = c->subset_size, .seed = 7};
  double *mmd = calloc((size_t)c->subsets, sizeof *mmd);
  CHECK_MSG(ldmc_frechet_distance(x1, c->n1, x2, c->n2, c->d, &fd) == LDMC_OK, "%s: %s", c->name, ldmc_last_error());
  CHECK_MSG(ldmc_kid(x1, c->n1, x2, c->n2, c->d, &ko, &kid, mmd) == LDMC_OK, "%s: %s", c->name, ldmc_last_error());
  CHECK_MSG(ldmc_class_accuracy_compute(logits, labels, n, classes, &acc) == LDMC_OK, "%s", ldmc_last_error());

  ldmc_tensor_set in = {0}, ref = {0};
  const int64_t d1[2] = {c->n1, c->d}, d2[2] = {c->n2, c->d}, dl[2] = {n, classes};
  CHECK(add_f32(&in, "x1", x1, 2, d1) == LDMC_OK && add_f32(&in, "x2", x2, 2, d2) == LDMC_OK);
  CHECK(add_f32(&in, "logits", logits, 2, dl) == LDMC_OK && add_i64(&in, "labels", labels, n) == LDMC_OK);
  char ipath[128], opath[128], cmd[1024];
  snprintf(ipath, sizeof ipath, "%s/in%d.safetensors", g_dir, case_index);
  snprintf(opath, sizeof opath, "%s/out%d.safetensors", g_dir, case_index);
  CHECK(ldmc_safetensors_save(ipath, &in, 0, NULL, NULL) == LDMC_OK);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/python/metrics_ref.py --in %s --out %s --kid-subsets %d "
           "--kid-subset-size %lld --seed 7", getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..", ipath, opath,
           c->subsets, (long long)c->subset_size);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "%s: the reference failed: %s", c->name, cmd);
  if (rc == 0) CHECK(ldmc_safetensors_load(opath, &ref) == LDMC_OK);
  if (rc == 0 && ref.n) {
    /* FD: errors relative to the terms that cancel */
    double scale = fd.tr1 + fd.tr2 + fd.mean_term, want = ref_scalar(&ref, "fd"), want_e = ref_scalar(&ref, "fd_eigh");
    printf("metrics: %-22s FD %.9g, sqrtm %.9g (error %.2g of %.3g), eigh %.9g (error %.2g); %d eigenvalues clamped "
           "(min %.2g)%s\n", c->name, fd.fd, want, fabs(fd.fd - want) / scale, scale, want_e,
           fabs(fd.fd - want_e) / scale, fd.clamped, fd.min_eig_rel, fd.rank_deficient ? ", rank-deficient" : "");
    /* a (nearly) singular covariance: each near-zero eigenvalue's rounding
     * (~1e-16 of the largest) becomes ~1e-8 under the square root, in every
     * method alike (sqrtm and eigh differ by as much) */
    bool singular = c->rank < c->d || c->n1 <= c->d || c->n2 <= c->d;
    double tol = singular ? 2e-7 : 1e-9;
    CHECK_MSG(fabs(fd.fd - want) <= tol * scale, "%s: FD %.12g vs sqrtm %.12g", c->name, fd.fd, want);
    CHECK_MSG(fabs(fd.fd - want_e) <= tol * scale, "%s: FD %.12g vs eigh %.12g", c->name, fd.fd, want_e);
    CHECK_NEAR(fd.mean_term, ref_scalar(&ref, "mean_term"), 1e-9 * scale);
    CHECK_NEAR(fd.tr1, ref_scalar(&ref, "tr1"), 1e-9 * scale);
    CHECK_NEAR(fd.tr2, ref_scalar(&ref, "tr2"), 1e-9 * scale);
    CHECK(fd.rank_deficient == (c->n1 <= c->d || c->n2 <= c->d));
    /* KID: every subset; the kernel's size sets the tolerance */
    const ldmc_tensor *rm = ldmc_tensor_set_find(&ref, "kid_mmd");
    double kscale = 0, maxerr = 0;
    for (int64_t i = 0; i < c->n2; i++) {
      double s = 0;
      for (int32_t j = 0; j < c->d; j++) s += (double)x2[i * c->d + j] * x2[i * c->d + j];
      kscale += pow(s / c->d + 1, 3) / (double)c->n2;
    }
    CHECK(rm && rm->shape.dims[0] == c->subsets);
    for (int32_t s = 0; rm && s < c->subsets; s++) maxerr = fmax(maxerr, fabs(mmd[s] - ldmc_tensor_get(rm, s)));
    printf("metrics: %-22s KID %.6g ± %.3g (numpy %.6g ± %.3g), %d subsets of %lld%s, max subset error %.2g "
           "(kernel scale %.3g)\n", c->name, kid.mean, kid.std, ref_scalar(&ref, "kid_mean"),
           ref_scalar(&ref, "kid_std"), kid.subsets, (long long)kid.subset_size, kid.clipped ? " (clipped)" : "",
           maxerr, kscale);
    CHECK_MSG(maxerr <= 1e-10 * kscale, "%s: KID subsets differ by %.3g", c->name, maxerr);
    CHECK_NEAR(kid.mean, ref_scalar(&ref, "kid_mean"), 1e-10 * kscale);
    CHECK_NEAR(kid.std, ref_scalar(&ref, "kid_std"), 1e-10 * kscale);
    CHECK(kid.subset_size == (int64_t)ref_scalar(&ref, "kid_m"));
    CHECK(kid.clipped == (c->subset_size > (c->n1 < c->n2 ? c->n1 : c->n2)));
    /* class accuracy */
    const ldmc_tensor *cc = ldmc_tensor_set_find(&ref, "acc_class_correct");
    const ldmc_tensor *cn = ldmc_tensor_set_find(&ref, "acc_class_count");
    CHECK(acc.correct == (int64_t)ref_scalar(&ref, "acc_correct") && acc.count == (int64_t)ref_scalar(&ref, "acc_count"));
    for (int32_t k = 0; cc && cn && k < classes; k++)
      CHECK(acc.class_correct[k] == (int64_t)ldmc_tensor_get(cc, k) &&
            acc.class_count[k] == (int64_t)ldmc_tensor_get(cn, k));
    CHECK(acc.count + acc.unprompted == n);
  }
  ldmc_tensor_set_free(&ref);
  ldmc_tensor_set_free(&in);
  free(mmd), free(x1), free(x2), free(logits), free(labels);
}

/* ---- 2: FD sanity and analytic Gaussians ---- */
static void test_fd_analytic(void) {
  /* a set with itself: 0 up to rounding (also when nearly singular) */
  float *x = make_set(300, 128, 10, 0, 1, 1e-4, false, 5);
  ldmc_fd_result fd;
  CHECK(ldmc_frechet_distance(x, 300, x, 300, 128, &fd) == LDMC_OK);
  printf("metrics: FD of a nearly singular set with itself: %.3g (terms %.3g)\n", fd.fd, fd.tr1 + fd.tr2);
  CHECK(fd.fd >= 0 && fd.fd <= 1e-9 * (fd.tr1 + fd.tr2));
  free(x);
  x = make_set(400, 16, 16, 0.5, 1, 0, true, 6);
  CHECK(ldmc_frechet_distance(x, 400, x, 400, 16, &fd) == LDMC_OK && fd.fd <= 1e-10 * (fd.tr1 + fd.tr2));
  free(x);

  /* diagonal covariances a, b (some zero: singular), and the same rotated by
   * an orthogonal R = H1 H2 (Householder reflections): both give
   * Σ(μ1−μ2)² + Σ(√a − √b)² */
  enum { D = 16 };
  double a[D], b[D], m1[D], m2[D], want = 0;
  for (int i = 0; i < D; i++) {
    a[i] = i % 5 == 0 ? 0 : 0.1 + 3 * uniform();
    b[i] = i % 7 == 0 ? 0 : 0.1 + 3 * uniform();
    m1[i] = normal(), m2[i] = normal();
    want += (m1[i] - m2[i]) * (m1[i] - m2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
  }
  double ca[D * D] = {0}, cb[D * D] = {0}, r[D * D], h[2][D];
  for (int i = 0; i < D; i++) ca[i * D + i] = a[i], cb[i * D + i] = b[i];
  ldmc_gaussian_stats sa = {D, 1000, m1, ca}, sb = {D, 1000, m2, cb};
  CHECK(ldmc_frechet_distance_stats(&sa, &sb, &fd) == LDMC_OK);
  printf("metrics: FD of diagonal Gaussians: %.12g, analytic %.12g\n", fd.fd, want);
  CHECK_NEAR(fd.fd, want, 1e-10 * want);
  for (int k = 0; k < 2; k++) {
    double nn = 0;
    for (int i = 0; i < D; i++) h[k][i] = normal(), nn += h[k][i] * h[k][i];
    for (int i = 0; i < D; i++) h[k][i] /= sqrt(nn);
  }
  for (int i = 0; i < D; i++) /* R = (I − 2 h0 h0ᵀ)(I − 2 h1 h1ᵀ) */
    for (int j = 0; j < D; j++) {
      double s = 0;
      for (int k = 0; k < D; k++)
        s += ((i == k) - 2 * h[0][i] * h[0][k]) * ((k == j) - 2 * h[1][k] * h[1][j]);
      r[i * D + j] = s;
    }
  double ra[D * D], rb[D * D];
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      double sa_ = 0, sb_ = 0;
      for (int k = 0; k < D; k++) sa_ += r[i * D + k] * a[k] * r[j * D + k], sb_ += r[i * D + k] * b[k] * r[j * D + k];
      ra[i * D + j] = sa_, rb[i * D + j] = sb_;
    }
  ldmc_gaussian_stats qa = {D, 1000, m1, ra}, qb = {D, 1000, m2, rb};
  CHECK(ldmc_frechet_distance_stats(&qa, &qb, &fd) == LDMC_OK);
  printf("metrics: FD of rotated Gaussians: %.12g, analytic %.12g (%d eigenvalues clamped)\n", fd.fd, want, fd.clamped);
  CHECK_NEAR(fd.fd, want, 1e-7 * want); /* the zero variances, rotated, are ~1e-16: ~1e-8 under √ */

  /* 20000 draws of each: the fitted FD approaches the analytic one */
  enum { N = 20000, D2 = 8 };
  float *x1 = malloc(N * D2 * sizeof *x1), *x2 = malloc(N * D2 * sizeof *x2);
  double want2 = 0;
  for (int j = 0; j < D2; j++)
    want2 += (m1[j] - m2[j]) * (m1[j] - m2[j]) + (sqrt(a[j + 1]) - sqrt(b[j + 1])) * (sqrt(a[j + 1]) - sqrt(b[j + 1]));
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D2; j++) {
      x1[i * D2 + j] = (float)(m1[j] + sqrt(a[j + 1]) * normal());
      x2[i * D2 + j] = (float)(m2[j] + sqrt(b[j + 1]) * normal());
    }
  CHECK(ldmc_frechet_distance(x1, N, x2, N, D2, &fd) == LDMC_OK);
  printf("metrics: FD of 20000 Gaussian draws each: %.6g, analytic %.6g\n", fd.fd, want2);
  CHECK_NEAR(fd.fd, want2, 0.02 * want2 + 0.01);
  CHECK(!fd.rank_deficient && fd.n1 == N && fd.n2 == N && fd.d == D2);
  free(x1), free(x2);
  /* given statistics are checked */
  double bad[D * D];
  memcpy(bad, ca, sizeof bad);
  bad[3] = NAN;
  ldmc_gaussian_stats sbad = {D, 10, m1, bad}, s8 = {8, 10, m1, ca};
  CHECK(ldmc_frechet_distance_stats(&sa, &sbad, &fd) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "non-finite"));
  CHECK(ldmc_frechet_distance_stats(&sa, &s8, &fd) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "16 and 8"));
}

/* ---- 3: KID ---- */
static void test_kid_behaviour(void) {
  float *x1 = make_set(1000, 16, 16, 0, 1, 0, true, 9), *x2 = make_set(1000, 16, 16, 0, 1, 0, true, 9);
  float *x3 = make_set(1000, 16, 16, 0.5, 1, 0, true, 9);
  ldmc_kid_result same, self, diff;
  ldmc_kid_opts o = {.subsets = 50, .subset_size = 200, .seed = 3};
  CHECK(ldmc_kid(x1, 1000, x2, 1000, 16, &o, &same, NULL) == LDMC_OK);
  CHECK(ldmc_kid(x1, 1000, x1, 1000, 16, &o, &self, NULL) == LDMC_OK);
  CHECK(ldmc_kid(x1, 1000, x3, 1000, 16, &o, &diff, NULL) == LDMC_OK);
  printf("metrics: KID of one distribution %.3g ± %.3g, of a set with itself %.3g ± %.3g, shifted %.3g ± %.3g\n",
         same.mean, same.std, self.mean, self.std, diff.mean, diff.std);
  CHECK(fabs(same.mean) <= same.std && fabs(self.mean) <= self.std);
  CHECK(diff.mean > 3 * diff.std && diff.mean > 20 * same.std);
  CHECK(!same.clipped && same.subset_size == 200 && same.subsets == 50);
  /* defaults; clipping to the smaller set */
  ldmc_kid_result def;
  CHECK(ldmc_kid(x1, 1000, x2, 700, 16, NULL, &def, NULL) == LDMC_OK);
  CHECK(def.subsets == LDMC_KID_DEFAULT_SUBSETS && def.subset_size == 700 && def.clipped &&
        def.requested_size == LDMC_KID_DEFAULT_SUBSET_SIZE);
  /* the subsets: m distinct indices in [0, n), different per subset and set, the same for a seed */
  int64_t p[100], q[100];
  ldmc_kid_subset_indices(3, 4, 0, 100, 30, p);
  ldmc_kid_subset_indices(3, 4, 0, 100, 30, q);
  CHECK(memcmp(p, q, sizeof p) == 0);
  int seen[100] = {0}, dup = 0;
  for (int i = 0; i < 100; i++) dup += seen[p[i]]++ > 0;
  CHECK(dup == 0); /* a permutation */
  ldmc_kid_subset_indices(3, 4, 1, 100, 30, q);
  CHECK(memcmp(p, q, 30 * sizeof *p) != 0);
  ldmc_kid_subset_indices(4, 4, 0, 100, 30, q);
  CHECK(memcmp(p, q, 30 * sizeof *p) != 0);
  free(x1), free(x2), free(x3);
}

/* ---- 4: class accuracy by hand ---- */
static void test_accuracy_by_hand(void) {
  const float l[7 * 3] = {3, 1, 0,  /* 0 */
                          0, 2, 1,  /* 1 */
                          1, 1, 0,  /* tie: 0 */
                          0, 0, 5,  /* 2 */
                          9, 0, 0,  /* 0 */
                          0, 4, 4,  /* tie: 1 */
                          0, 0, 1}; /* 2 */
  const int64_t y[7] = {0, 1, 1, 2, -1, 1, 0};
  ldmc_class_accuracy a;
  CHECK(ldmc_class_accuracy_compute(l, y, 7, 3, &a) == LDMC_OK);
  printf("metrics: class accuracy by hand: %lld of %lld (%lld unprompted)\n", (long long)a.correct, (long long)a.count,
         (long long)a.unprompted);
  CHECK(a.count == 6 && a.correct == 4 && a.unprompted == 1);
  CHECK(a.class_count[0] == 2 && a.class_correct[0] == 1);
  CHECK(a.class_count[1] == 3 && a.class_correct[1] == 2);
  CHECK(a.class_count[2] == 1 && a.class_correct[2] == 1);
  const int64_t y_bad[2] = {0, 3};
  CHECK(ldmc_class_accuracy_compute(l, y_bad, 2, 3, &a) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "sample 1") &&
        strstr(ldmc_last_error(), "label 3"));
  const int64_t y_none[2] = {-1, -1};
  CHECK(ldmc_class_accuracy_compute(l, y_none, 2, 3, &a) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "at least 1"));
  float ln[3] = {0, NAN, 1};
  CHECK(ldmc_class_accuracy_compute(ln, y, 1, 3, &a) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "not finite"));
  CHECK(ldmc_class_accuracy_compute(l, y, 7, 0, &a) == LDMC_ERR_INVALID);
}

/* ---- 5: a classifier with known logits ---- */
#define TINY_POS(c) (17 * (c) + 3) /* the pooled 16x16 position lit for class c */
static float tiny_value(int64_t i) { return 0.25f + 0.0625f * (float)(i % 8); }

/* Image i shows class c: -1 everywhere but one pixel of value v in the 2x2
 * window of pooled position TINY_POS(c). Through conv1 (the centre tap 1),
 * max pool and ReLU only that position is v; fc1 picks TINY_POS(k) into
 * feature k; fc2 is the identity: logits = features = v at c, 0 elsewhere. */
static void tiny_image(int64_t i, int c, float *im) {
  for (int k = 0; k < 32 * 32; k++) im[k] = -1;
  int p = TINY_POS(c), row = p / 16, col = p % 16;
  im[(2 * row + (int)(i % 2)) * 32 + 2 * col + (int)(i / 2 % 2)] = tiny_value(i);
}

static ldmc_status write_tiny_model(const char *path, const char *model_key, bool drop_fc2_bias) {
  static float conv_w[9], conv_b[1], fc1_b[10], fc2_w[100], fc2_b[10];
  static uint16_t fc1_w[10 * 256]; /* bf16 on disk */
  memset(conv_w, 0, sizeof conv_w);
  conv_w[4] = 1;
  memset(fc1_w, 0, sizeof fc1_w);
  for (int k = 0; k < 10; k++) fc1_w[k * 256 + TINY_POS(k)] = ldmc_f32_to_bf16(1.0f);
  memset(fc2_w, 0, sizeof fc2_w);
  for (int k = 0; k < 10; k++) fc2_w[k * 10 + k] = 1;
  ldmc_checkpoint *ck = ldmc_checkpoint_new();
  const char *keys[4] = {"model", "widths", "features", "classes"}, *vals[4] = {model_key, "1", "10", "10"};
  ldmc_status st = LDMC_OK;
  for (int i = 0; i < 4 && st == LDMC_OK; i++) st = ldmc_checkpoint_set_config(ck, keys[i], vals[i]);
  const int64_t dcw[4] = {1, 1, 3, 3}, d1[1] = {1}, dfw[2] = {10, 256}, d10[1] = {10}, d2w[2] = {10, 10};
  if (st == LDMC_OK) st = ldmc_checkpoint_add_tensor(ck, "conv1.weight", LDMC_CKPT_PARAM, LDMC_F32, 4, dcw, conv_w);
  if (st == LDMC_OK) st = ldmc_checkpoint_add_tensor(ck, "conv1.bias", LDMC_CKPT_PARAM, LDMC_F32, 1, d1, conv_b);
  if (st == LDMC_OK) st = ldmc_checkpoint_add_tensor(ck, "fc1.weight", LDMC_CKPT_PARAM, LDMC_BF16, 2, dfw, fc1_w);
  if (st == LDMC_OK) st = ldmc_checkpoint_add_tensor(ck, "fc1.bias", LDMC_CKPT_PARAM, LDMC_F32, 1, d10, fc1_b);
  if (st == LDMC_OK) st = ldmc_checkpoint_add_tensor(ck, "fc2.weight", LDMC_CKPT_PARAM, LDMC_F32, 2, d2w, fc2_w);
  if (st == LDMC_OK && !drop_fc2_bias)
    st = ldmc_checkpoint_add_tensor(ck, "fc2.bias", LDMC_CKPT_PARAM, LDMC_F32, 1, d10, fc2_b);
  /* a training checkpoint's optimizer state is ignored */
  if (st == LDMC_OK) st = ldmc_checkpoint_add_tensor(ck, "adam_m.fc2.bias", LDMC_CKPT_OPTIMIZER, LDMC_F32, 1, d10, fc2_b);
  if (st == LDMC_OK) st = ldmc_checkpoint_write(ck, path);
  ldmc_checkpoint_free(ck);
  return st;
}

static void test_tiny_classifier(void) {
  enum { N = 23 };
  char mpath[128], spath[128], bad[128];
  snprintf(mpath, sizeof mpath, "%s/tiny.ldmc", g_dir);
  snprintf(spath, sizeof spath, "%s/samples.safetensors", g_dir);
  CHECK_MSG(write_tiny_model(mpath, "classifier", false) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_classifier_model m;
  CHECK_MSG(ldmc_classifier_model_load(mpath, &m) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(m.cfg.n_stages == 1 && m.cfg.widths[0] == 1 && m.cfg.features == 10 && m.cfg.classes == 10 && m.weights.n == 6);
  /* samples: image i shows class i % 10; label i % 10 except every third, one unprompted */
  static float images[N * 1024];
  int64_t labels[N], want_correct = 0, want_count = 0;
  for (int64_t i = 0; i < N; i++) {
    tiny_image(i, (int)(i % 10), images + i * 1024);
    labels[i] = i == 5 ? -1 : i % 3 == 0 ? (i + 1) % 10 : i % 10;
    want_count += labels[i] >= 0;
    want_correct += labels[i] == i % 10;
  }
  ldmc_tensor_set s = {0};
  const int64_t di[4] = {N, 1, 32, 32};
  CHECK(add_f32(&s, "images", images, 4, di) == LDMC_OK && add_i64(&s, "labels", labels, N) == LDMC_OK);
  CHECK(ldmc_safetensors_save(spath, &s, 0, NULL, NULL) == LDMC_OK);
  ldmc_sample_set ss;
  CHECK_MSG(ldmc_sample_set_load(spath, &m.cfg, 0, &ss) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(ss.n == N && ss.labels && ss.labels[5] == -1 && memcmp(ss.images, images, sizeof images) == 0);
  const char *backends[2] = {"interp", "llvm-cpu"};
  for (int b = 0; b < 2; b++) {
    ldmc_feature_extractor *x = NULL;
    ldmc_features f = {0};
    CHECK_MSG(ldmc_feature_extractor_new(&m, 8, ldmc_backend_find(backends[b]), &(ldmc_compile_opts){.threads = 2}, &x) ==
                  LDMC_OK, "%s", ldmc_last_error());
    if (x) CHECK_MSG(ldmc_features_of_images(x, ss.images, ss.n, &f) == LDMC_OK, "%s", ldmc_last_error());
    int bad_rows = 0;
    for (int64_t i = 0; f.features && i < N; i++)
      for (int k = 0; k < 10; k++) {
        float want = k == i % 10 ? tiny_value(i) : 0.0f;
        bad_rows += f.features[i * 10 + k] != want || f.logits[i * 10 + k] != want;
      }
    ldmc_class_accuracy a;
    CHECK(f.features && ldmc_class_accuracy_compute(f.logits, ss.labels, f.n, f.classes, &a) == LDMC_OK);
    printf("metrics: tiny classifier on %s, %d images in batches of 8: %d wrong values, accuracy %lld of %lld "
           "(want %lld of %lld)\n", backends[b], N, bad_rows, (long long)a.correct, (long long)a.count,
           (long long)want_correct, (long long)want_count);
    CHECK(f.n == N && f.d == 10 && f.classes == 10 && bad_rows == 0);
    CHECK(a.correct == want_correct && a.count == want_count && a.unprompted == 1);
    ldmc_features_free(&f);
    /* limit, and n = 1 (one partial batch) */
    if (x) CHECK(ldmc_features_of_images(x, ss.images + 1024 * 7, 1, &f) == LDMC_OK && f.n == 1 &&
                 f.features[7] == tiny_value(7) && f.features[0] == 0);
    ldmc_features_free(&f);
    if (x) CHECK(ldmc_features_of_images(x, ss.images, 0, &f) == LDMC_ERR_INVALID);
    ldmc_feature_extractor_free(x);
  }
  ldmc_sample_set_free(&ss);
  CHECK(ldmc_sample_set_load(spath, &m.cfg, 4, &ss) == LDMC_OK && ss.n == 4);
  ldmc_sample_set_free(&ss);

  /* sample file errors name the file and the tensor */
  snprintf(bad, sizeof bad, "%s/bad.safetensors", g_dir);
  ldmc_tensor_set b1 = {0};
  CHECK(add_f32(&b1, "pictures", images, 4, di) == LDMC_OK && ldmc_safetensors_save(bad, &b1, 0, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_sample_set_load(bad, &m.cfg, 0, &ss) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "bad.safetensors") &&
        strstr(ldmc_last_error(), "no tensor 'images'"));
  ldmc_tensor_set_free(&b1);
  const int64_t dwrong[4] = {N, 1, 16, 64};
  CHECK(add_f32(&b1, "images", images, 4, dwrong) == LDMC_OK && ldmc_safetensors_save(bad, &b1, 0, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_sample_set_load(bad, &m.cfg, 0, &ss) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "[23,1,16,64]"));
  ldmc_tensor_set_free(&b1);
  CHECK(add_f32(&b1, "images", images, 4, di) == LDMC_OK && add_i64(&b1, "labels", labels, N - 1) == LDMC_OK &&
        ldmc_safetensors_save(bad, &b1, 0, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_sample_set_load(bad, &m.cfg, 0, &ss) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "'labels'"));
  ldmc_tensor_set_free(&b1);
  images[3 * 1024 + 5] = INFINITY;
  CHECK(add_f32(&b1, "images", images, 4, di) == LDMC_OK && ldmc_safetensors_save(bad, &b1, 0, NULL, NULL) == LDMC_OK);
  CHECK(ldmc_sample_set_load(bad, &m.cfg, 0, &ss) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "image 3"));
  ldmc_tensor_set_free(&b1);
  ldmc_tensor_set_free(&s);
  ldmc_classifier_model_free(&m);

  /* model file errors */
  CHECK(write_tiny_model(mpath, "autoencoder", false) == LDMC_OK);
  CHECK(ldmc_classifier_model_load(mpath, &m) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "tiny.ldmc") &&
        strstr(ldmc_last_error(), "not a classifier"));
  CHECK(write_tiny_model(mpath, "classifier", true) == LDMC_OK);
  CHECK(ldmc_classifier_model_load(mpath, &m) != LDMC_OK && strstr(ldmc_last_error(), "fc2.bias"));
  printf("metrics: a model file without fc2.bias: %s\n", ldmc_last_error());
  CHECK(ldmc_classifier_model_load(spath, &m) != LDMC_OK && strstr(ldmc_last_error(), "samples.safetensors"));
  CHECK(ldmc_classifier_model_load("/nonexistent/cls.ldmc", &m) != LDMC_OK);
}

/* ---- 6: too small ---- */
static void test_too_small(void) {
  float x[3 * 4] = {1, 2, 3, 4, 2, 3, 4, 5, 0, 1, 0, 1};
  ldmc_fd_result fd;
  ldmc_kid_result kid;
  CHECK(ldmc_frechet_distance(x, 1, x, 3, 4, &fd) == LDMC_ERR_INVALID &&
        strstr(ldmc_last_error(), "FD needs at least 2 samples per set, got 1"));
  printf("metrics: FD of 1 sample: %s\n", ldmc_last_error());
  CHECK(ldmc_frechet_distance(x, 3, x, 2, 4, &fd) == LDMC_OK && fd.rank_deficient);
  CHECK(ldmc_kid(x, 3, x, 1, 4, NULL, &kid, NULL) == LDMC_ERR_INVALID &&
        strstr(ldmc_last_error(), "KID needs at least 2 samples per set, got 1"));
  CHECK(ldmc_kid(x, 3, x, 3, 4, &(ldmc_kid_opts){.subsets = 2, .subset_size = 1}, &kid, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_kid(x, 3, x, 3, 4, &(ldmc_kid_opts){.subsets = -1}, &kid, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_kid(x, 3, x, 2, 4, &(ldmc_kid_opts){.subsets = 2, .subset_size = 10}, &kid, NULL) == LDMC_OK &&
        kid.clipped && kid.subset_size == 2);
  x[6] = NAN;
  CHECK(ldmc_frechet_distance(x, 3, x, 3, 4, &fd) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "feature 2 of sample 1"));
  CHECK(ldmc_kid(x, 3, x, 3, 4, NULL, &kid, NULL) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "not finite"));
  CHECK(ldmc_frechet_distance(x, 3, x, 3, 0, &fd) == LDMC_ERR_INVALID);
}

int main(void) {
  strcpy(g_dir, "/tmp/ldmc_metrics_XXXXXX");
  if (!mkdtemp(g_dir)) {
    CHECK(!"mkdtemp");
    return test_summary("test_metrics");
  }
  if (system("/usr/bin/python3 -c 'import numpy, scipy.linalg' >/dev/null 2>&1") != 0) {
    printf("SKIP scipy comparisons: /usr/bin/python3 cannot import numpy and scipy (apt install python3-scipy)\n");
  } else {
    const ref_case cases[] = {
        {"d16 correlated", 300, 400, 16, 16, 0.3, 1.5, 0, false, 20, 150},
        {"d128 relu", 500, 600, 128, 128, 0.2, 1.2, 0, true, 10, 200},
        {"d128 rank-10 + 1e-4", 400, 300, 128, 10, 0.1, 1.0, 1e-4, false, 10, 500},
        {"d128 n1=100 < d", 100, 200, 128, 128, 0.0, 0.8, 0, true, 8, 1000},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) test_against_scipy(&cases[i], i);
  }
  test_fd_analytic();
  test_kid_behaviour();
  test_accuracy_by_hand();
  test_tiny_classifier();
  test_too_small();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  return test_summary("test_metrics");
}
