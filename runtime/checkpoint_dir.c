/* A folder of checkpoints, DIR/ckpt-<step>.ldmc: writing with rotation (the
 * last K kept, older ones deleted only once the new one is durable) and
 * resuming from the newest one that reads, falling back past damaged ones. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "support/fileio.h"

#define PREFIX "ckpt-"
#define SUFFIX ".ldmc"

typedef struct entry {
  int64_t step;
  char *name;
} entry;

typedef struct listing {
  entry *v;
  size_t n, cap;
} listing;

static void listing_free(listing *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i].name);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* "ckpt-<1..19 digits>.ldmc" -> step; *rest points past ".ldmc". */
static bool parse_name(const char *name, int64_t *step, const char **rest) {
  if (strncmp(name, PREFIX, strlen(PREFIX)) != 0) return false;
  const char *p = name + strlen(PREFIX), *d = p;
  int64_t v = 0;
  while (*p >= '0' && *p <= '9') {
    if (p - d >= 19 || v > (INT64_MAX - (*p - '0')) / 10) return false;
    v = v * 10 + (*p++ - '0');
  }
  if (p == d || strncmp(p, SUFFIX, strlen(SUFFIX)) != 0) return false;
  *step = v;
  *rest = p + strlen(SUFFIX);
  return true;
}

static int cmp_newest_first(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->step != y->step) return x->step < y->step ? 1 : -1;
  return -strcmp(x->name, y->name);
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* A temp file of a checkpoint write ("ckpt-N.ldmc.tmp.<pid>.<n>", fileio.c)
 * whose process is gone: killed mid-write. Removing it frees its space. */
static void remove_if_stale_temp(const char *dir, const char *name, const char *rest) {
  long pid;
  unsigned n;
  char tail;
  if (sscanf(rest, ".tmp.%ld.%u%c", &pid, &n, &tail) != 2 || pid <= 0 || pid == (long)getpid()) return;
  if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) return; /* alive, or not ours to judge */
  char *p = join(dir, name);
  if (p) (void)unlink(p);
  free(p);
}

/* The checkpoints in dir, newest first. clean_temps: also remove stale temps. */
static ldmc_status list_dir(const char *dir, bool clean_temps, listing *out) {
  memset(out, 0, sizeof *out);
  DIR *d = opendir(dir);
  if (!d) return ldmc_error(LDMC_ERR_IO, "cannot list checkpoint folder '%s': %s", dir, strerror(errno));
  struct dirent *e;
  ldmc_status s = LDMC_OK;
  while (s == LDMC_OK && (e = readdir(d))) {
    int64_t step;
    const char *rest;
    if (!parse_name(e->d_name, &step, &rest)) continue;
    if (*rest) {
      if (clean_temps) remove_if_stale_temp(dir, e->d_name, rest);
      continue;
    }
    if (out->n == out->cap) {
      size_t cap = out->cap ? 2 * out->cap : 16;
      entry *v = realloc(out->v, cap * sizeof *v);
      if (!v) {
        s = ldmc_error(LDMC_ERR_NOMEM, "out of memory listing '%s'", dir);
        break;
      }
      out->v = v;
      out->cap = cap;
    }
    char *name = strdup(e->d_name);
    if (!name) s = ldmc_error(LDMC_ERR_NOMEM, "out of memory listing '%s'", dir);
    else out->v[out->n++] = (entry){step, name};
  }
  closedir(d);
  if (s != LDMC_OK) {
    listing_free(out);
    return s;
  }
  if (out->n) qsort(out->v, out->n, sizeof *out->v, cmp_newest_first);
  return LDMC_OK;
}

static void fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

ldmc_status ldmc_checkpoint_save_rotating(const char *dir, const ldmc_checkpoint *ck, int keep_last, char **written) {
  if (written) *written = NULL;
  if (keep_last < 1) return ldmc_error(LDMC_ERR_INVALID, "checkpoint rotation: keep_last %d, needs >= 1", keep_last);
  LDMC_TRY(ldmc_make_dirs(dir, 0777));
  char name[64];
  snprintf(name, sizeof name, PREFIX "%010" PRId64 SUFFIX, ldmc_checkpoint_step(ck));
  char *path = join(dir, name);
  if (!path) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  ldmc_status s = ldmc_checkpoint_write(ck, path); /* durable: fsynced, renamed, folder fsynced */
  if (s != LDMC_OK) {
    free(path);
    return s;
  }
  listing l;
  s = list_dir(dir, true, &l);
  int kept = 1; /* the new one */
  for (size_t i = 0; s == LDMC_OK && i < l.n; i++) {
    if (strcmp(l.v[i].name, name) == 0) continue;
    if (kept < keep_last) {
      kept++;
      continue;
    }
    char *old = join(dir, l.v[i].name);
    if (!old) s = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    else if (unlink(old) != 0 && errno != ENOENT)
      s = ldmc_error(LDMC_ERR_IO, "wrote %s, but cannot delete the old checkpoint %s: %s", path, old, strerror(errno));
    free(old);
  }
  listing_free(&l);
  fsync_dir(dir);
  if (written) *written = path;
  else free(path);
  return s;
}

static void warn_stderr(void *ctx, const char *msg) {
  (void)ctx;
  fprintf(stderr, "ldmc: warning: %s\n", msg);
}

ldmc_status ldmc_checkpoint_load_latest(const char *dir, ldmc_checkpoint **out, char **path,
                                        ldmc_checkpoint_warn_fn warn, void *warn_ctx) {
  *out = NULL;
  if (path) *path = NULL;
  if (!warn) warn = warn_stderr;
  listing l;
  LDMC_TRY(list_dir(dir, false, &l));
  ldmc_status s = LDMC_OK;
  char first_err[600] = "";
  for (size_t i = 0; i < l.n; i++) {
    char *p = join(dir, l.v[i].name);
    if (!p) {
      s = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
      break;
    }
    ldmc_checkpoint *ck;
    s = ldmc_checkpoint_read(p, &ck);
    if (s == LDMC_OK) {
      *out = ck;
      if (path) *path = p;
      else free(p);
      break;
    }
    if (s == LDMC_ERR_NOMEM) { /* not the file's fault: do not skip it */
      free(p);
      break;
    }
    if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", ldmc_last_error());
    char msg[1200];
    snprintf(msg, sizeof msg, "skipping unreadable checkpoint %s; %s", ldmc_last_error(),
             i + 1 < l.n ? "trying the previous one" : "no older checkpoint left");
    warn(warn_ctx, msg);
    free(p);
  }
  if (s != LDMC_OK && s != LDMC_ERR_NOMEM)
    s = ldmc_error(LDMC_ERR_FORMAT, "%s: none of its %zu checkpoints reads (newest: %s)", dir, l.n, first_err);
  listing_free(&l);
  return s;
}
