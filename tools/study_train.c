/* Training-like cells: `ldmc train` (a width, or its super-resolution
 * finetuning) and `ldmc distill` as child processes of this executable, each
 * in its own folder with its checkpoints, so that a killed study resumes them
 * (--resume) and a finished one (its model.ldmc) is reused as it is. The
 * child's output goes to DIR/logs/<cell>.log; its step lines drive the
 * progress display. */
/* Paths: --out is at most STUDY_PATH - 300 bytes (cmd_study.c checks), so every path built from it fits. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fileio.h"
#include "tools/study.h"

void study_run_dir(const char *dir, study_cell_kind kind, int width, char *buf, size_t len) {
  const char *sub = kind == STUDY_DISTILL ? "distill" : kind == STUDY_SR_TRAIN ? "superres" : "train";
  snprintf(buf, len, "%s/%s/c%d", dir, sub, width);
}

static bool exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

static int mkdirs(const char *path) {
  char tmp[2 * STUDY_PATH];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return 1;
      *p = '/';
    }
  return mkdir(tmp, 0777) != 0 && errno != EEXIST;
}

typedef struct argv_buf {
  char *v[96];
  char s[96][2 * STUDY_PATH];
  int n;
} argv_buf;

static void arg(argv_buf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(argv_buf *a, const char *fmt, ...) {
  if (a->n >= 95) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->s[a->n], sizeof a->s[a->n], fmt, ap);
  va_end(ap);
  a->v[a->n] = a->s[a->n];
  a->v[++a->n] = NULL;
}

/* The child's command line. Training cells use exactly these flags, so a run
 * started outside the study with them (docs/study.md) is reused. */
static void child_args(const study_config *c, const char *dir, const study_cell *cell, const char *out, bool resume,
                       int64_t steps, argv_buf *a) {
  char teacher[2 * STUDY_PATH];
  study_run_dir(dir, STUDY_TRAIN, cell->width, teacher, sizeof teacher);
  snprintf(teacher + strlen(teacher), sizeof teacher - strlen(teacher), "/model.ldmc");
  arg(a, "ldmc");
  if (cell->kind == STUDY_TRAIN) {
    arg(a, "train"), arg(a, "--model"), arg(a, "unet"), arg(a, "--vae"), arg(a, "%s", c->vae);
    arg(a, "--channels"), arg(a, "%d", cell->width), arg(a, "--groups"), arg(a, "%d", c->groups);
    arg(a, "--text-width"), arg(a, "%d", c->text_width), arg(a, "--text-layers"), arg(a, "%d", c->text_layers);
    arg(a, "--text-heads"), arg(a, "%d", c->text_heads), arg(a, "--tokens"), arg(a, "%d", c->tokens);
    arg(a, "--batch"), arg(a, "%d", c->train_batch), arg(a, "--steps"), arg(a, "%lld", (long long)steps);
    arg(a, "--lr"), arg(a, "%g", c->lr), arg(a, "--warmup"), arg(a, "%d", c->warmup);
    arg(a, "--ema"), arg(a, "%g", c->ema), arg(a, "--seed"), arg(a, "%lld", (long long)c->seed);
    arg(a, "--val-every"), arg(a, "500"), arg(a, "--val-batches"), arg(a, "4");
    arg(a, "--ckpt-every"), arg(a, "%d", c->ckpt_every);
    /* every checkpoint is a point of quality against training compute; an interrupted run's own checkpoint
     * counts against --keep too, so room for two of those */
    arg(a, "--keep"), arg(a, "%lld", (long long)(steps / c->ckpt_every + 2));
  } else if (cell->kind == STUDY_DISTILL) {
    arg(a, "distill"), arg(a, "--teacher"), arg(a, "%s", teacher);
    arg(a, "--batch"), arg(a, "%d", c->distill_batch), arg(a, "--steps"), arg(a, "%lld", (long long)steps);
    arg(a, "--lr"), arg(a, "1e-4"), arg(a, "--warmup"), arg(a, "50"), arg(a, "--seed"), arg(a, "%lld", (long long)c->seed);
    arg(a, "--val-every"), arg(a, "%lld", (long long)steps), arg(a, "--ckpt-every"), arg(a, "100"), arg(a, "--keep"), arg(a, "2");
  } else { /* STUDY_SR_TRAIN */
    arg(a, "train"), arg(a, "--model"), arg(a, "unet"), arg(a, "--init"), arg(a, "%s", teacher);
    arg(a, "--superres"), arg(a, "%d", c->superres_factor);
    arg(a, "--batch"), arg(a, "%d", c->train_batch), arg(a, "--steps"), arg(a, "%lld", (long long)steps);
    arg(a, "--lr"), arg(a, "2e-4"), arg(a, "--warmup"), arg(a, "50"), arg(a, "--ema"), arg(a, "0.99");
    arg(a, "--seed"), arg(a, "%lld", (long long)c->seed), arg(a, "--val-every"), arg(a, "%lld", (long long)steps);
    arg(a, "--ckpt-every"), arg(a, "100"), arg(a, "--keep"), arg(a, "2");
  }
  arg(a, "--log-every"), arg(a, "50"), arg(a, "--threads"), arg(a, "%d", c->threads), arg(a, "--no-progress");
  arg(a, "--out"), arg(a, "%s", out);
  if (c->limit > 0) arg(a, "--limit"), arg(a, "%lld", (long long)c->limit);
  if (resume) arg(a, "--resume");
}

/* "step N/M" of the log's last such line: the child's progress */
static double log_progress(const char *log) {
  FILE *f = fopen(log, "rb");
  if (!f) return 0;
  char buf[4096];
  fseek(f, 0, SEEK_END);
  long sz = ftell(f), off = sz > (long)sizeof buf - 1 ? sz - (long)sizeof buf + 1 : 0;
  fseek(f, off, SEEK_SET);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  double frac = 0;
  for (char *p = buf; (p = strstr(p, "step ")); p += 5) {
    long a, b;
    if (sscanf(p, "step %ld/%ld", &a, &b) == 2 && b > 0) frac = (double)a / (double)b;
  }
  return frac;
}

/* Seconds of compiled steps in a run folder's log.csv: per row, the steps since the previous row over images/s. */
static double csv_step_seconds(const char *run, int batch, int64_t *last_step) {
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/log.csv", run);
  FILE *f = fopen(path, "r");
  *last_step = 0;
  if (!f) return NAN;
  char line[512];
  double s = 0;
  long prev = 0;
  if (!fgets(line, sizeof line, f)) line[0] = 0; /* header */
  while (fgets(line, sizeof line, f)) {
    long step;
    double lr, loss, gn, ips;
    if (sscanf(line, "%ld,%lf,%lf,%lf,%lf", &step, &lr, &loss, &gn, &ips) == 5 && ips > 0 && step > prev) {
      s += (double)(step - prev) * batch / ips;
      prev = step;
    }
  }
  fclose(f);
  *last_step = prev;
  return s;
}

static int write_json(const char *path, json_t *o, char *err, size_t errlen) {
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  ldmc_atomic_file *f = NULL;
  ldmc_status st = text ? ldmc_atomic_open(path, &f) : ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  if (st == LDMC_OK) st = ldmc_atomic_write(f, text, strlen(text));
  if (st == LDMC_OK) st = ldmc_atomic_write(f, "\n", 1);
  if (st == LDMC_OK) st = ldmc_atomic_commit(f);
  else if (f) ldmc_atomic_abort(f);
  free(text);
  if (st != LDMC_OK) snprintf(err, errlen, "%s", ldmc_last_error());
  return st != LDMC_OK;
}

int study_write_cell(const char *dir, const char *name, json_t *o, char *err, size_t errlen) {
  char path[2 * STUDY_PATH];
  snprintf(path, sizeof path, "%s/cells", dir);
  if (mkdirs(path)) {
    snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    return 1;
  }
  snprintf(path, sizeof path, "%s/cells/%s.json", dir, name);
  return write_json(path, o, err, errlen);
}

int study_run_train_cell(const study_config *c, const char *dir, const study_cell *cell, study_progress *p, char *err,
                         size_t errlen) {
  char run[2 * STUDY_PATH], model[2 * STUDY_PATH], name[128], logs[2 * STUDY_PATH], log[2 * STUDY_PATH];
  study_run_dir(dir, cell->kind, cell->width, run, sizeof run);
  snprintf(model, sizeof model, "%s/model.ldmc", run);
  study_cell_name(cell, 0, name, sizeof name);
  snprintf(logs, sizeof logs, "%s/logs", dir);
  snprintf(log, sizeof log, "%s/%s.log", logs, name);
  study_width_costs wc;
  if (study_width_costs_compute(c, cell->width, &wc, err, errlen)) return 1;
  int64_t steps = cell->kind == STUDY_TRAIN ? wc.train_steps : cell->kind == STUDY_DISTILL ? c->distill_steps
                                                                                          : c->superres_steps;
  int batch = cell->kind == STUDY_DISTILL ? c->distill_batch : c->train_batch;
  double wall = NAN;
  if (!exists(model)) {
    if (mkdirs(logs) || mkdirs(run)) {
      snprintf(err, errlen, "cannot create %s: %s", run, strerror(errno));
      return 1;
    }
    char pattern[2 * STUDY_PATH];
    snprintf(pattern, sizeof pattern, "%s/ckpt-*.ldmc", run);
    glob_t gl;
    bool resume = glob(pattern, 0, NULL, &gl) == 0 && gl.gl_pathc > 0;
    globfree(&gl);
    argv_buf a = {0};
    child_args(c, dir, cell, run, resume, steps, &a);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd < 0) {
      snprintf(err, errlen, "cannot open %s: %s", log, strerror(errno));
      return 1;
    }
    dprintf(fd, "== study:");
    for (int i = 0; i < a.n; i++) dprintf(fd, " %s", a.v[i]);
    dprintf(fd, "\n");
    double t0 = study_now();
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
      dup2(fd, 1), dup2(fd, 2);
      close(fd);
      execv("/proc/self/exe", a.v);
      dprintf(2, "study: cannot run /proc/self/exe: %s\n", strerror(errno));
      _exit(127);
    }
    close(fd);
    if (pid < 0) {
      snprintf(err, errlen, "fork: %s", strerror(errno));
      return 1;
    }
    int status = 0;
    char what[192];
    for (;;) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (r < 0 && errno != EINTR) {
        snprintf(err, errlen, "waitpid: %s", strerror(errno));
        return 1;
      }
      double frac = log_progress(log);
      snprintf(what, sizeof what, "%s %.0f%% (log: %s)", name, 100 * frac, log);
      study_progress_show(p, what, frac);
      sleep(1);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !exists(model)) {
      snprintf(err, errlen, "%s failed (%s %d); its output is in %s", name,
               WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
               log);
      return 1;
    }
    wall = study_now() - t0;
  }
  int64_t last = 0;
  double secs = csv_step_seconds(run, batch, &last);
  json_t *o = json_object();
  json_object_set_new(o, "kind", json_string(study_kind_name(cell->kind)));
  json_object_set_new(o, "width", json_integer(cell->width));
  json_object_set_new(o, "steps", json_integer(steps));
  json_object_set_new(o, "batch", json_integer(batch));
  json_object_set_new(o, "params_m", json_real(wc.params_m));
  json_object_set_new(o, "gflop", json_real(cell->gflop));
  json_object_set_new(o, "seconds", json_real(isnan(secs) ? 0 : secs)); /* compiled steps, from log.csv */
  if (!isnan(wall)) json_object_set_new(o, "wall_s", json_real(wall));
  json_object_set_new(o, "model", json_string(model));
  int rc = study_write_cell(dir, name, o, err, errlen);
  json_decref(o);
  return rc;
}
