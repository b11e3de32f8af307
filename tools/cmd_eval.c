/* ldmc eval: sample-quality metrics of a set of generated images in the
 * feature space of ldmc's Fashion-MNIST classifier (docs/sampling.md, "Metrics"): FD
 * and KID against a reference set (a Fashion-MNIST split or another image
 * file), and class accuracy against the prompted labels. The classifier
 * and its features are models/eval.h, the figures models/metrics.h; this
 * file maps flags to them and prints. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "models/eval.h"
#include "models/metrics.h"
#include "runtime/dist.h"
#include "tools/cli_args.h"
#include "tools/cli_io.h"
#include "tools/cli_target.h"
#include "tools/commands.h"

enum { F_CLASSIFIER, F_REFERENCE, F_LIMIT, F_KID_SUBSETS, F_KID_SIZE, F_SEED, F_THREADS, F_TARGET, F_BACKEND,
       F_BATCH, F_DATA, F_JSON, F_COUNT };

static ldmc_cli_flag k_flags[F_COUNT] = {
    [F_CLASSIFIER] = {"classifier", "MODEL", "the classifier's model file (`ldmc train --model classifier`'s model.ldmc;\n"
                                             "default: " LDMC_DEFAULT_CLASSIFIER_FILE " of the repository, or\n"
                                             "$LDMC_DEFAULT_CLASSIFIER)"},
    [F_REFERENCE] = {"reference", "SET", "what the samples are compared with: test (default) or train, a\n"
                                         "Fashion-MNIST split, or FILE.safetensors holding images (as SAMPLES)"},
    [F_LIMIT] = {"limit", "N", "only the first N samples and the first N reference images"},
    [F_KID_SUBSETS] = {"kid-subsets", "K", "KID: random subset pairs (default 100)"},
    [F_KID_SIZE] = {"kid-subset-size", "S", "KID: images per subset (default 1000; clipped to the smaller set)"},
    [F_SEED] = {"seed", "S", "seed of KID's subsets (default 0)"},
    [F_THREADS] = {"threads", "N", "threads of the classifier (default: OpenMP's)"},
    [F_TARGET] = {"target", "NAME", "what runs the classifier: llvm-cpu[:scalar|avx2|avx512] (default) or interp"},
    [F_BACKEND] = {"backend", "NAME", "synonym of --target"},
    [F_BATCH] = {"batch", "B", "images per classifier run (default 250)"},
    [F_DATA] = {"data", "DIR", "Fashion-MNIST folder (default $LDMC_FASHION_MNIST_DIR or\n"
                               "/usr/share/datasets/fashion-mnist)"},
    [F_JSON] = {"json", "FILE", "also write every figure with its sample counts to FILE.json"},
};

static ldmc_cli_cmd k_cmd = {
    .name = "eval",
    .usage = "SAMPLES.safetensors [--classifier MODEL.ldmc] [--reference test|train|FILE.safetensors] [--limit N]\n"
             " [--kid-subsets K] [--kid-subset-size S] [--seed S] [--threads N] [--target NAME] [--json FILE]",
    .summary = "sample quality: FD, KID and class accuracy in the classifier's feature space",
    .details = "SAMPLES: a safetensors file with images f32[N,1,32,32] in [-1, 1] and labels i64[N], the prompted\n"
               "classes (-1: none; without labels no class accuracy). Printed, each with its sample counts:\n"
               "  FD   |mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 Tr sqrt(S1 S2) of the features' means and covariances\n"
               "       (needs 2 images per set; a warning when a set has no more images than features)\n"
               "  KID  unbiased MMD^2 with k(x,y) = (x.y/d + 1)^3, mean +- std over random subset pairs\n"
               "  class accuracy  the share of samples whose argmax logit is their label, overall and per\n"
               "       class, and the classifier's accuracy on the labelled reference images\n"
               "Examples:\n"
               "  ldmc eval samples.safetensors --classifier runs/cls/model.ldmc\n"
               "  ldmc eval samples.safetensors --reference train --limit 5000 --json metrics.json",
    .flags = k_flags,
    .n_flags = F_COUNT,
    .min_pos = 1,
    .max_pos = 1,
};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *class_name(int32_t classes, int32_t k, char *buf, size_t len) {
  if (classes == LDMC_FMNIST_CLASSES) return ldmc_fmnist_class_names[k];
  snprintf(buf, len, "class %d", k);
  return buf;
}

/* What eval computed, for printing and JSON. */
typedef struct eval_result {
  const char *samples_path, *reference_name, *classifier_path, *target;
  ldmc_classifier_config cfg;
  int64_t n_samples, n_reference;
  ldmc_fd_result fd;
  ldmc_kid_result kid;
  bool has_acc, has_ref_acc;
  ldmc_class_accuracy acc, ref_acc;
} eval_result;

static void print_accuracy(const char *what, const ldmc_class_accuracy *a, const char *unit) {
  printf("%s: %.4f (%lld of %lld %s", what, (double)a->correct / (double)a->count, (long long)a->correct,
         (long long)a->count, unit);
  if (a->unprompted) printf("; %lld without a prompted class left out", (long long)a->unprompted);
  printf(")\n");
}

static void print_result(const eval_result *r) {
  printf("samples:    %s, %lld images\n", r->samples_path, (long long)r->n_samples);
  printf("reference:  %s, %lld images\n", r->reference_name, (long long)r->n_reference);
  printf("classifier: %s (widths", r->classifier_path);
  for (int i = 0; i < r->cfg.n_stages; i++) printf("%s%d", i ? "," : " ", r->cfg.widths[i]);
  printf(", %d features, %d classes), on %s\n", r->cfg.features, r->cfg.classes, r->target);
  printf("FD:  %.6g  (%lld samples vs %lld reference, %d features)\n", r->fd.fd, (long long)r->fd.n1,
         (long long)r->fd.n2, r->fd.d);
  printf("KID: %.6g +- %.3g  (%d subsets of %lld; %lld samples vs %lld reference)\n", r->kid.mean, r->kid.std,
         r->kid.subsets, (long long)r->kid.subset_size, (long long)r->kid.n1, (long long)r->kid.n2);
  if (!r->has_acc) {
    printf("class accuracy: none (the samples have no labels)\n");
  } else {
    print_accuracy("class accuracy", &r->acc, "samples");
    printf("  %-5s %-12s %-9s %-8s %s\n", "class", "name", "accuracy", "correct", "samples");
    for (int32_t k = 0; k < r->acc.classes; k++) {
      char buf[32];
      if (!r->acc.class_count[k]) continue;
      printf("  %-5d %-12s %-9.4f %-8lld %lld\n", k, class_name(r->acc.classes, k, buf, sizeof buf),
             (double)r->acc.class_correct[k] / (double)r->acc.class_count[k], (long long)r->acc.class_correct[k],
             (long long)r->acc.class_count[k]);
    }
  }
  if (r->has_ref_acc) print_accuracy("reference accuracy", &r->ref_acc, "reference images");
}

static json_t *accuracy_json(const ldmc_class_accuracy *a) {
  json_t *o = json_object(), *per = json_array();
  json_object_set_new(o, "value", json_real((double)a->correct / (double)a->count));
  json_object_set_new(o, "correct", json_integer(a->correct));
  json_object_set_new(o, "count", json_integer(a->count));
  json_object_set_new(o, "unprompted", json_integer(a->unprompted));
  for (int32_t k = 0; k < a->classes; k++) {
    char buf[32];
    json_t *c = json_object();
    json_object_set_new(c, "class", json_integer(k));
    json_object_set_new(c, "name", json_string(class_name(a->classes, k, buf, sizeof buf)));
    json_object_set_new(c, "accuracy", a->class_count[k] ? json_real((double)a->class_correct[k] / (double)a->class_count[k])
                                                         : json_null());
    json_object_set_new(c, "correct", json_integer(a->class_correct[k]));
    json_object_set_new(c, "count", json_integer(a->class_count[k]));
    json_array_append_new(per, c);
  }
  json_object_set_new(o, "per_class", per);
  return o;
}

static ldmc_status write_json(const char *path, const eval_result *r) {
  json_t *root = json_object(), *fd = json_object(), *kid = json_object(), *cls = json_object();
  json_object_set_new(root, "samples", json_pack("{s:s, s:I}", "path", r->samples_path, "count", (json_int_t)r->n_samples));
  json_object_set_new(root, "reference",
                      json_pack("{s:s, s:I}", "name", r->reference_name, "count", (json_int_t)r->n_reference));
  json_t *widths = json_array();
  for (int i = 0; i < r->cfg.n_stages; i++) json_array_append_new(widths, json_integer(r->cfg.widths[i]));
  json_object_set_new(cls, "path", json_string(r->classifier_path));
  json_object_set_new(cls, "widths", widths);
  json_object_set_new(cls, "features", json_integer(r->cfg.features));
  json_object_set_new(cls, "classes", json_integer(r->cfg.classes));
  json_object_set_new(cls, "target", json_string(r->target));
  json_object_set_new(root, "classifier", cls);
  json_object_set_new(fd, "value", json_real(r->fd.fd));
  json_object_set_new(fd, "mean_term", json_real(r->fd.mean_term));
  json_object_set_new(fd, "trace_sqrt", json_real(r->fd.tr_sqrt));
  json_object_set_new(fd, "n_samples", json_integer(r->fd.n1));
  json_object_set_new(fd, "n_reference", json_integer(r->fd.n2));
  json_object_set_new(fd, "features", json_integer(r->fd.d));
  json_object_set_new(fd, "rank_deficient", json_boolean(r->fd.rank_deficient));
  json_object_set_new(fd, "clamped_eigenvalues", json_integer(r->fd.clamped));
  json_object_set_new(root, "fd", fd);
  json_object_set_new(kid, "mean", json_real(r->kid.mean));
  json_object_set_new(kid, "std", json_real(r->kid.std));
  json_object_set_new(kid, "subsets", json_integer(r->kid.subsets));
  json_object_set_new(kid, "subset_size", json_integer(r->kid.subset_size));
  json_object_set_new(kid, "requested_subset_size", json_integer(r->kid.requested_size));
  json_object_set_new(kid, "n_samples", json_integer(r->kid.n1));
  json_object_set_new(kid, "n_reference", json_integer(r->kid.n2));
  json_object_set_new(root, "kid", kid);
  json_object_set_new(root, "class_accuracy", r->has_acc ? accuracy_json(&r->acc) : json_null());
  json_object_set_new(root, "reference_accuracy", r->has_ref_acc ? accuracy_json(&r->ref_acc) : json_null());
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
  json_decref(root);
  if (!text) return ldmc_error(LDMC_ERR_NOMEM, "--json: could not format the results");
  size_t len = strlen(text);
  char *t2 = realloc(text, len + 2);
  if (t2) text = t2, text[len] = '\n', text[len + 1] = 0;
  ldmc_status st = ldmc_tool_write_text(path, text);
  free(text);
  return st;
}

/* The folder of --json must exist: found out before minutes of work, not after. */
static int check_json_folder(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) return LDMC_CLI_CONTINUE;
  if (slash == dir) slash[1] = 0;
  else *slash = 0;
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return ldmc_cli_fail(&k_cmd, "--json %s: the folder %s does not exist", path, dir);
  return LDMC_CLI_CONTINUE;
}

/* The reference set: a Fashion-MNIST split (images read as training sees
 * them) or a sample file. Its features, and its labels when it has them. */
typedef struct reference {
  ldmc_fmnist *split;
  ldmc_sample_set file;
  int64_t *labels;
  int64_t n;
  char name[64];
} reference;

static void reference_free(reference *r) {
  ldmc_fmnist_free(r->split);
  ldmc_sample_set_free(&r->file);
  free(r->labels);
}

static ldmc_status reference_open(const char *spec, const char *data, const ldmc_classifier_config *cfg, int64_t limit,
                                  reference *r) {
  ldmc_fmnist_split split;
  if (strcmp(spec, "test") == 0 || strcmp(spec, "train") == 0) {
    LDMC_TRY(ldmc_fmnist_split_parse(spec, &split));
    LDMC_TRY(ldmc_fmnist_open(data, split, &r->split));
    ldmc_fmnist_limit(r->split, limit);
    r->n = ldmc_fmnist_count(r->split);
    snprintf(r->name, sizeof r->name, "Fashion-MNIST %s", spec);
    r->labels = malloc((size_t)r->n * sizeof *r->labels);
    if (!r->labels) return ldmc_error(LDMC_ERR_NOMEM, "out of memory for %lld labels", (long long)r->n);
    for (int64_t i = 0; i < r->n; i++) r->labels[i] = ldmc_fmnist_labels(r->split)[i];
    return LDMC_OK;
  }
  LDMC_TRY(ldmc_sample_set_load(spec, cfg, limit, &r->file));
  r->n = r->file.n;
  snprintf(r->name, sizeof r->name, "file");
  return LDMC_OK;
}

static ldmc_status reference_features(ldmc_feature_extractor *x, const reference *r, ldmc_features *f) {
  return r->split ? ldmc_features_of_fmnist(x, r->split, r->n, f) : ldmc_features_of_images(x, r->file.images, r->n, f);
}

int ldmc_cmd_eval(int argc, char **argv) {
  int rc = ldmc_cli_parse(&k_cmd, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  int64_t limit = 0, subsets = LDMC_KID_DEFAULT_SUBSETS, subset_size = LDMC_KID_DEFAULT_SUBSET_SIZE, seed = 0;
  int64_t threads = 0, batch = 250;
  if ((rc = ldmc_cli_int(&k_cmd, "limit", 1, 1 << 24, &limit)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "kid-subsets", 1, 100000, &subsets)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "kid-subset-size", 2, 1 << 24, &subset_size)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "seed", 0, INT64_MAX, &seed)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "threads", 1, 1024, &threads)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "batch", 1, 65536, &batch)) != LDMC_CLI_CONTINUE)
    return rc;
  const char *json = k_flags[F_JSON].value, *ref_spec = k_flags[F_REFERENCE].value ? k_flags[F_REFERENCE].value : "test";
  static const char *const json_ext[] = {".json", NULL};
  if ((rc = ldmc_tool_check_output(&k_cmd, "--json", json, json_ext)) != LDMC_CLI_CONTINUE) return rc;
  if (!*ref_spec) return ldmc_cli_usage_error(&k_cmd, "--reference: expected test, train or a .safetensors file");
  if (json && (rc = check_json_folder(json)) != LDMC_CLI_CONTINUE) return rc;
  int trc = LDMC_CLI_CONTINUE;
  const char *tspec = ldmc_cli_target_flag(&k_cmd, &trc);
  if (trc != LDMC_CLI_CONTINUE) return trc;
  ldmc_cli_target ct;
  if (ldmc_cli_target_parse(tspec ? tspec : "llvm-cpu", &ct) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "%s", ldmc_last_error());
  if (!ct.be) return ldmc_cli_usage_error(&k_cmd, "--target %s: no backend executes it (interp or llvm-cpu)", tspec);

  const char *cls_path = k_flags[F_CLASSIFIER].value;
  struct stat sb;
  if (!cls_path) {
    cls_path = ldmc_default_classifier_path();
    if (stat(cls_path, &sb) != 0)
      return ldmc_cli_fail(&k_cmd, "no classifier: pass --classifier or train one with ldmc train --model classifier "
                                   "(the default %s does not exist)", cls_path);
  }
  eval_result r;
  memset(&r, 0, sizeof r);
  r.samples_path = k_cmd.pos[0], r.classifier_path = cls_path, r.target = ct.be->name;
  ldmc_classifier_model model;
  ldmc_sample_set samples;
  reference ref;
  memset(&ref, 0, sizeof ref);
  memset(&samples, 0, sizeof samples);
  ldmc_feature_extractor *x = NULL;
  ldmc_features fs = {0}, fr = {0};
  ldmc_status st = ldmc_classifier_model_load(cls_path, &model);
  if (st == LDMC_OK) st = ldmc_sample_set_load(r.samples_path, &model.cfg, limit, &samples);
  if (st == LDMC_OK) st = reference_open(ref_spec, k_flags[F_DATA].value, &model.cfg, limit, &ref);
  /* refused before the classifier runs */
  if (st == LDMC_OK && (samples.n < 2 || ref.n < 2))
    st = ldmc_error(LDMC_ERR_INVALID, "FD and KID need at least 2 images per set: %s has %lld",
                    samples.n < 2 ? r.samples_path : ref_spec, (long long)(samples.n < 2 ? samples.n : ref.n));
  if (st == LDMC_OK) {
    r.cfg = model.cfg, r.n_samples = samples.n, r.n_reference = ref.n, r.reference_name = ref.split ? ref.name : ref_spec;
    int64_t most = samples.n > ref.n ? samples.n : ref.n;
    ldmc_compile_opts co = {.threads = (int)threads};
    st = ldmc_feature_extractor_new(&model, batch < most ? batch : most, ct.be, &co, &x);
  }
  st = ldmc_dist_agree(st, "loading the sets"); /* under mpirun every rank computes a share of the features */
  bool rank0 = ldmc_dist_rank() == 0;
  if (st == LDMC_OK) {
    double t0 = now_s();
    st = ldmc_features_of_images(x, samples.images, samples.n, &fs);
    double t1 = now_s();
    if (st == LDMC_OK) st = reference_features(x, &ref, &fr);
    if (st == LDMC_OK && rank0)
      fprintf(stderr, "features: %lld samples in %.2f s, %lld reference images in %.2f s (%s, batch %lld)\n",
              (long long)fs.n, t1 - t0, (long long)fr.n, now_s() - t1, ct.be->name,
              (long long)ldmc_feature_extractor_batch(x));
  }
  if (st == LDMC_OK) {
    st = ldmc_frechet_distance(fs.features, fs.n, fr.features, fr.n, fs.d, &r.fd);
    if (st == LDMC_OK && r.fd.rank_deficient && rank0)
      fprintf(stderr, "ldmc eval: warning: FD from %lld samples and %lld reference images in %d features: a set no "
                      "larger than the feature count has a rank-deficient covariance (FD is biased upward)\n",
              (long long)fs.n, (long long)fr.n, fs.d);
  }
  if (st == LDMC_OK) {
    ldmc_kid_opts ko = {.subsets = (int32_t)subsets, .subset_size = subset_size, .seed = (uint64_t)seed};
    st = ldmc_kid(fs.features, fs.n, fr.features, fr.n, fs.d, &ko, &r.kid, NULL);
    if (st == LDMC_OK && r.kid.clipped && rank0)
      fprintf(stderr, "ldmc eval: note: KID subset size %lld clipped to %lld, the smaller set\n",
              (long long)r.kid.requested_size, (long long)r.kid.subset_size);
  }
  if (st == LDMC_OK && samples.labels) {
    st = ldmc_class_accuracy_compute(fs.logits, samples.labels, fs.n, fs.classes, &r.acc);
    r.has_acc = st == LDMC_OK;
  }
  const int64_t *ref_labels = ref.split ? ref.labels : ref.file.labels;
  if (st == LDMC_OK && ref_labels)
    r.has_ref_acc = ldmc_class_accuracy_compute(fr.logits, ref_labels, fr.n, fr.classes, &r.ref_acc) == LDMC_OK;
  if (st == LDMC_OK && rank0) print_result(&r);
  if (st == LDMC_OK && json && rank0) {
    st = write_json(json, &r);
    if (st == LDMC_OK) fprintf(stderr, "wrote %s\n", json);
  }
  rc = st == LDMC_OK ? LDMC_EXIT_OK : rank0 ? ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error()) : LDMC_EXIT_FAIL;
  ldmc_features_free(&fs);
  ldmc_features_free(&fr);
  ldmc_feature_extractor_free(x);
  reference_free(&ref);
  ldmc_sample_set_free(&samples);
  ldmc_classifier_model_free(&model);
  return rc;
}
