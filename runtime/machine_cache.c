/* The calibration cache: one JSON file (jansson) holding an entry per CPU
 * name, so a home directory shared between machines keeps each one's
 * figures; and the lookups profiles make from it (runtime/profiler.h). */
#include <errno.h>
#include <jansson.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/profiler.h"
#include "support/fileio.h"

#define CACHE_FORMAT "ldmc machine calibration 1"

void ldmc_machine_cpu_name(char *buf, size_t len) {
  snprintf(buf, len, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) != 0) continue;
    const char *v = strchr(line, ':');
    if (!v) continue;
    v++;
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strcspn(v, "\n");
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n > 0) snprintf(buf, len, "%.*s", (int)n, v);
    break;
  }
  fclose(f);
}

int ldmc_machine_nproc(void) {
  int n = omp_get_num_procs();
  return n > 0 ? n : 1;
}

ldmc_status ldmc_machine_cache_path(char *buf, size_t len) {
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (xdg && xdg[0] == '/') n = snprintf(buf, len, "%s/ldmc/machine.json", xdg);
  else if (home && home[0]) n = snprintf(buf, len, "%s/.cache/ldmc/machine.json", home);
  else return ldmc_error(LDMC_ERR_IO, "no cache folder: neither XDG_CACHE_HOME nor HOME is set");
  if (n < 0 || (size_t)n >= len) return ldmc_error(LDMC_ERR_IO, "cache path too long");
  return LDMC_OK;
}

/* mkdir -p of path's folder */
static ldmc_status make_parent(const char *path) {
  char dir[4096];
  if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return ldmc_error(LDMC_ERR_IO, "%s: path too long", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return LDMC_OK;
  *slash = 0;
  for (char *p = dir + 1; ; p++) {
    bool end = *p == 0;
    if (*p == '/' || end) {
      char c = *p;
      *p = 0;
      if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ldmc_error(LDMC_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
      *p = c;
    }
    if (end) break;
  }
  return LDMC_OK;
}

static json_t *read_cache(const char *path, bool *missing, ldmc_status *st) {
  *missing = false;
  *st = LDMC_OK;
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) *missing = true;
    else *st = ldmc_error(LDMC_ERR_IO, "%s: %s", path, strerror(errno));
    return NULL;
  }
  json_error_t err;
  json_t *root = json_loadf(f, 0, &err);
  fclose(f);
  if (!json_is_object(root) || !json_is_object(json_object_get(root, "machines"))) {
    if (root) *st = ldmc_error(LDMC_ERR_FORMAT, "%s: not an ldmc calibration cache (no \"machines\" object)", path);
    else *st = ldmc_error(LDMC_ERR_FORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    json_decref(root);
    return NULL;
  }
  return root;
}

static ldmc_status parse_entry(const char *path, const char *cpu, json_t *e, ldmc_machine *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->cpu, sizeof m->cpu, "%s", cpu);
  json_t *th = json_object_get(e, "threads"), *gf = json_object_get(e, "fma_gflops"), *bw = json_object_get(e, "triad_gbs");
  json_t *np = json_object_get(e, "nproc");
  size_t n = json_array_size(th);
  if (!json_is_object(e) || !json_is_integer(np) || n == 0 || n > LDMC_MACHINE_MAX_POINTS ||
      json_array_size(gf) != n || json_array_size(bw) != n)
    return ldmc_error(LDMC_ERR_FORMAT, "%s: entry '%s': expected nproc and equal-length arrays threads, fma_gflops, triad_gbs",
                      path, cpu);
  m->nproc = (int)json_integer_value(np);
  const char *isa = json_string_value(json_object_get(e, "isa")), *when = json_string_value(json_object_get(e, "measured"));
  snprintf(m->isa, sizeof m->isa, "%s", isa ? isa : "?");
  snprintf(m->measured, sizeof m->measured, "%s", when ? when : "?");
  for (size_t i = 0; i < n; i++) {
    json_t *t = json_array_get(th, i), *g = json_array_get(gf, i), *b = json_array_get(bw, i);
    json_int_t tv = json_integer_value(t);
    if (!json_is_integer(t) || !json_is_number(g) || !json_is_number(b) || tv < 1 || tv > 1 << 20 ||
        (i > 0 && tv <= m->threads[i - 1]) || json_number_value(g) < 0 || json_number_value(b) < 0)
      return ldmc_error(LDMC_ERR_FORMAT, "%s: entry '%s': point %zu is not an ascending thread count with "
                        "non-negative figures", path, cpu, i);
    m->threads[i] = (int)tv;
    m->gflops[i] = json_number_value(g);
    m->gbs[i] = json_number_value(b);
  }
  m->n = (int)n;
  return LDMC_OK;
}

ldmc_status ldmc_machine_load(const char *path, ldmc_machine *out, bool *found) {
  *found = false;
  memset(out, 0, sizeof *out);
  char cpu[128];
  ldmc_machine_cpu_name(cpu, sizeof cpu);
  bool missing;
  ldmc_status st;
  json_t *root = read_cache(path, &missing, &st);
  if (!root) return missing ? LDMC_OK : st;
  json_t *e = json_object_get(json_object_get(root, "machines"), cpu);
  if (e) {
    st = parse_entry(path, cpu, e, out);
    *found = st == LDMC_OK;
  }
  json_decref(root);
  return st;
}

ldmc_status ldmc_machine_save(const char *path, const ldmc_machine *m) {
  bool missing;
  ldmc_status st;
  json_t *root = read_cache(path, &missing, &st);
  if (!root) root = json_pack("{s:s,s:{}}", "format", CACHE_FORMAT, "machines"); /* absent or unreadable: start over */
  json_t *th = json_array(), *gf = json_array(), *bw = json_array();
  for (int i = 0; i < m->n; i++) {
    json_array_append_new(th, json_integer(m->threads[i]));
    json_array_append_new(gf, json_real(m->gflops[i]));
    json_array_append_new(bw, json_real(m->gbs[i]));
  }
  json_t *e = json_pack("{s:s,s:i,s:s,s:o,s:o,s:o}", "isa", m->isa, "nproc", m->nproc, "measured", m->measured,
                        "threads", th, "fma_gflops", gf, "triad_gbs", bw);
  char *s = NULL;
  if (root && e && json_object_set_new(json_object_get(root, "machines"), m->cpu, e) == 0) {
    e = NULL;
    s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  }
  json_decref(e);
  json_decref(root);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory writing the calibration", path);
  st = make_parent(path);
  if (st == LDMC_OK) st = ldmc_file_write_atomic(path, s, strlen(s));
  free(s);
  return st;
}

/* Interpolated between measured counts, over the running maximum: t threads
 * can always do what fewer did (a busy machine can measure less at more). */
static double interp(const ldmc_machine *m, const double *v, int threads) {
  if (m->n <= 0) return 0;
  double lo = v[0];
  if (threads <= m->threads[0]) return lo;
  for (int i = 1; i < m->n; i++) {
    double hi = v[i] > lo ? v[i] : lo;
    if (threads <= m->threads[i]) {
      double f = (double)(threads - m->threads[i - 1]) / (double)(m->threads[i] - m->threads[i - 1]);
      return lo + f * (hi - lo);
    }
    lo = hi;
  }
  return lo;
}

double ldmc_machine_peak(const ldmc_machine *m, int threads) { return interp(m, m->gflops, threads); }
double ldmc_machine_bandwidth(const ldmc_machine *m, int threads) { return interp(m, m->gbs, threads); }
