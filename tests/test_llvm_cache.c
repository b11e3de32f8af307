/* The llvm-cpu on-disk kernel cache (backends/llvm_cpu/jit.c): entries are
 * written by a first process and loaded by later ones; corrupted, truncated,
 * foreign and unreadable entries are detected, compiled again and replaced;
 * two processes filling one cache at once both succeed; the folder comes from
 * cache_dir, LDMC_CACHE_DIR, XDG_CACHE_HOME or HOME, and no_disk_cache or
 * LDMC_CACHE_DIR=off writes nothing. Every compile happens in a fresh child
 * process (this executable with --child), so the in-memory cache is empty and
 * the JIT's counters say where each kernel came from; each child checks its
 * results against the interpreter. The entry format is re-implemented here
 * (magic, format, lengths, FNV-1a 64 of key and object) as the oracle. */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

#pragma GCC diagnostic ignored "-Wformat-truncation" /* paths under a short mkdtemp root */

/* ---- the child: compile, run, compare, report the counters ------------------------------------ */

/* softmax(x w) and log(|x| + 1): a GEMM, a softmax and an elementwise kernel */
static ldmc_graph *cache_graph(void) {
  ldmc_builder *b = ldmc_builder_new("kcache");
  int64_t dx[2] = {6, 35}, dw[2] = {35, 19};
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, dx), w = ldmc_parameter(b, "w", LDMC_F32, 2, dw);
  ldmc_builder_output(b, ldmc_softmax(b, ldmc_matmul(b, x, w), 1), "p");
  ldmc_builder_output(
      b, ldmc_unary(b, LDMC_OP_LOG, ldmc_add(b, ldmc_unary(b, LDMC_OP_ABS, x), ldmc_constant_scalar(b, LDMC_F32, 1.0))),
      "l");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g != NULL, "build: %s", ldmc_last_error());
  return g;
}

static void fill(ldmc_tensor *t, unsigned seed) {
  int64_t n = 1;
  for (int i = 0; i < t->shape.rank; i++) n *= t->shape.dims[i];
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    ldmc_tensor_set_elem(t, i, ((seed >> 8) % 20001) / 10000.0 - 1.0);
  }
}

static bool run_graph(const ldmc_backend_i *be, const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_tensor *in,
                      ldmc_tensor *out) {
  ldmc_executable *e = NULL;
  ldmc_status st = be->compile(g, o, &e);
  CHECK_MSG(st == LDMC_OK, "compile on %s: %s", be->name, ldmc_last_error());
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, 2, out, 2);
  CHECK_MSG(st == LDMC_OK, "run on %s: %s", be->name, ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* --child DIR|- EXPECT [no-disk]: DIR "-" leaves cache_dir NULL (the default
 * folder). EXPECT: compile (nothing from disk), disk (nothing compiled), one
 * (exactly one kernel compiled, the others from disk), any. */
static int child(const char *dir, const char *expect, bool no_disk) {
  ldmc_graph *g = cache_graph();
  if (!g) return test_summary("llvm_cache child");
  ldmc_tensor in[2] = {{0}}, got[2] = {{0}}, want[2] = {{0}};
  for (int k = 0, i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) {
      ldmc_tensor_alloc(&in[k], g->nodes[i].attrs.name, g->nodes[i].dtype, &g->nodes[i].shape);
      fill(&in[k], 7u + 31u * (unsigned)k);
      k++;
    }
  ldmc_compile_opts o = {.threads = 2, .cache_dir = strcmp(dir, "-") ? dir : NULL, .no_disk_cache = no_disk,
                         .verbose = getenv("T_VERBOSE") != NULL};
  ldmc_llvm_cpu_stats s0, s1;
  ldmc_llvm_cpu_stats_get(&s0);
  bool ok = run_graph(&ldmc_backend_llvm_cpu, g, &o, in, got);
  ldmc_llvm_cpu_stats_get(&s1);
  ldmc_compile_opts io = {.threads = 1};
  ok = run_graph(&ldmc_backend_interp, g, &io, in, want) && ok;
  if (ok) {
    for (int k = 0; k < 2; k++) {
      double worst = 0;
      for (int64_t i = 0; i < (int64_t)(got[k].nbytes / sizeof(float)); i++)
        worst = fmax(worst, fabs(ldmc_tensor_get(&got[k], i) - ldmc_tensor_get(&want[k], i)));
      CHECK_MSG(worst < 1e-5, "output %d: llvm-cpu vs interp %g", k, worst);
    }
  }
  long long compiled = s1.kernels_compiled - s0.kernels_compiled, disk = s1.disk_hits - s0.disk_hits;
  printf("child %s %s: %lld compiled, %lld from disk\n", dir, expect, compiled, disk);
  if (!strcmp(expect, "compile")) CHECK_MSG(compiled > 0 && disk == 0, "%lld compiled, %lld from disk", compiled, disk);
  else if (!strcmp(expect, "disk")) CHECK_MSG(compiled == 0 && disk > 0, "%lld compiled, %lld from disk", compiled, disk);
  else if (!strcmp(expect, "one")) CHECK_MSG(compiled == 1 && disk > 0, "%lld compiled, %lld from disk", compiled, disk);
  else CHECK_MSG(compiled + disk > 0, "%lld compiled, %lld from disk", compiled, disk);
  for (int k = 0; k < 2; k++) ldmc_tensor_release(&in[k]), ldmc_tensor_release(&got[k]), ldmc_tensor_release(&want[k]);
  ldmc_graph_free(g);
  return test_summary("llvm_cache child");
}

/* ---- the parent ------------------------------------------------------------------------------- */

static char g_self[4096];

/* env: "NAME=VALUE" to set, "NAME" to unset, applied in the child only */
static pid_t spawn(const char *dir, const char *expect, bool no_disk, const char *const *env) {
  fflush(NULL);
  pid_t p = fork();
  if (p == 0) {
    for (int i = 0; env && env[i]; i++) {
      const char *eq = strchr(env[i], '=');
      if (eq) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
        setenv(name, eq + 1, 1);
      } else {
        unsetenv(env[i]);
      }
    }
    char *argv[] = {g_self, "--child", (char *)dir, (char *)expect, no_disk ? "no-disk" : NULL, NULL};
    execv(g_self, argv);
    _exit(127);
  }
  return p;
}

static bool wait_ok(pid_t p) {
  int status = 0;
  return p > 0 && waitpid(p, &status, 0) == p && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool child_ok(const char *dir, const char *expect, bool no_disk, const char *const *env) {
  return wait_ok(spawn(dir, expect, no_disk, env));
}

/* the entries (*.kc, sorted) of dir; *temps counts leftover temporary files */
static int list_entries(const char *dir, char names[][256], int cap, int *temps) {
  int n = 0;
  if (temps) *temps = 0;
  DIR *d = opendir(dir);
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t l = strlen(e->d_name);
    if (temps && strstr(e->d_name, ".tmp.")) (*temps)++;
    if (l > 3 && !strcmp(e->d_name + l - 3, ".kc") && n < cap) snprintf(names[n++], 256, "%s", e->d_name);
  }
  closedir(d);
  for (int i = 1; i < n; i++) /* insertion sort */
    for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
      char t[256];
      memcpy(t, names[j], 256), memcpy(names[j], names[j - 1], 256), memcpy(names[j - 1], t, 256);
    }
  return n;
}

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap && !(buf = realloc(buf, cap = cap * 2 + 65536))) break;
    size_t k = fread(buf + n, 1, cap - n, f);
    if (!k) break;
    n += k;
  }
  fclose(f);
  *len = n;
  return buf;
}

static bool spit(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return false;
  bool ok = fwrite(data, 1, len, f) == len;
  return fclose(f) == 0 && ok;
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static void put(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> 8 * i);
}

enum { HDR = 32 };

/* A well-formed entry: magic, format 1, lengths that add up, checksum; its key in *key. */
static bool entry_valid(const uint8_t *b, size_t n, const char **key, size_t *key_len) {
  if (n < HDR || memcmp(b, "LDMCKRN\n", 8) || le(b + 8, 4) != 1) return false;
  uint64_t kl = le(b + 12, 4), ol = le(b + 16, 8);
  if (HDR + kl + ol != n || ol == 0 || fnv1a(b + HDR, (size_t)(kl + ol)) != le(b + 24, 8)) return false;
  if (key) *key = (const char *)b + HDR, *key_len = (size_t)kl;
  return true;
}

static void test_entries_and_reload(const char *dir) {
  CHECK_MSG(child_ok(dir, "compile", false, NULL), "first compile into the empty cache %s", dir);
  char names[64][256];
  int temps = 0, n = list_entries(dir, names, 64, &temps);
  CHECK_MSG(n >= 3, "%d entries in %s, expected one per distinct kernel (>= 3)", n, dir);
  CHECK_MSG(temps == 0, "%d temporary files left in %s", temps, dir);
  for (int i = 0; i < n; i++) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    size_t len = 0, kl = 0;
    uint8_t *b = slurp(path, &len);
    const char *key = NULL;
    CHECK_MSG(b && entry_valid(b, len, &key, &kl), "%s is not a well-formed entry", path);
    if (key) { /* self-describing: versions, ISA, symbol and kernel key in the text */
      char *k = strndup(key, kl);
      CHECK_MSG(strstr(k, "\nldmc " LDMC_VERSION " sources ") && strstr(k, "\nllvm 19.") && strstr(k, "\nisa ") &&
                    strstr(k, "\ncpu ") && strstr(k, "\nsymbol ldmc_k_") && strstr(k, "\nkernel "),
                "key of %s: %s", path, k);
      free(k);
    }
    free(b);
  }
  struct stat st;
  CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
  CHECK_MSG(child_ok(dir, "disk", false, NULL), "a second process loads every kernel from %s", dir);
}

typedef enum { FLIP_OBJECT, FLIP_KEY, TRUNCATE_HALF, TRUNCATE_HEADER, EMPTY, BAD_MAGIC, FOREIGN_KEY, COLLIDING_KEY,
               N_DAMAGE } damage;
static const char *const k_damage[] = {"a flipped object byte", "a flipped key byte",   "truncated to half",
                                       "truncated inside the header", "empty",       "a bad magic",
                                       "another ldmc version's key", "a colliding kernel's key"};

/* Damages one entry, checks a fresh process compiles exactly that kernel again
 * (the others from disk), with correct results, and that the entry is whole
 * and equal to the original again. */
static void test_damage(const char *dir) {
  char names[64][256];
  int n = list_entries(dir, names, 64, NULL);
  if (n < 1) return;
  for (int d = 0; d < N_DAMAGE; d++) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, names[d % n]);
    size_t len = 0, kl = 0;
    uint8_t *orig = slurp(path, &len);
    const char *key = NULL;
    if (!orig || !entry_valid(orig, len, &key, &kl)) {
      CHECK_MSG(false, "%s is not a valid entry before damage %d", path, d);
      free(orig);
      continue;
    }
    uint8_t *b = malloc(len + 64);
    memcpy(b, orig, len);
    size_t blen = len;
    if (d == FLIP_OBJECT) b[HDR + kl + (len - HDR - kl) / 2] ^= 0x10;
    if (d == FLIP_KEY) b[HDR + kl / 2] ^= 0x01;
    if (d == TRUNCATE_HALF) blen = len / 2;
    if (d == TRUNCATE_HEADER) blen = 20;
    if (d == EMPTY) blen = 0;
    if (d == BAD_MAGIC) b[0] = 'X';
    if (d == FOREIGN_KEY || d == COLLIDING_KEY) {
      /* a different key of another length, with a valid checksum: only the key tells */
      const char *what = d == FOREIGN_KEY ? "\nldmc " : "\nkernel ";
      const char *at = memmem(key, kl, what, strlen(what));
      CHECK_MSG(at != NULL, "no '%s' in the key of %s", what + 1, path);
      if (!at) at = key;
      size_t off = (size_t)(at - key) + strlen(what);
      const char *ins = d == FOREIGN_KEY ? "9.9.9-other " : "x";
      size_t il = strlen(ins), nl = len + il;
      uint8_t *c = malloc(nl);
      memcpy(c, orig, HDR + off);
      memcpy(c + HDR + off, ins, il);
      memcpy(c + HDR + off + il, orig + HDR + off, len - HDR - off);
      put(c + 12, kl + il, 4);
      put(c + 24, fnv1a(c + HDR, nl - HDR), 8);
      CHECK(entry_valid(c, nl, NULL, NULL));
      free(b);
      b = c;
      blen = nl;
    }
    CHECK(spit(path, b, blen));
    CHECK_MSG(child_ok(dir, "one", false, NULL), "an entry with %s is compiled again, not loaded", k_damage[d]);
    size_t got_len = 0, gkl = 0;
    uint8_t *now = slurp(path, &got_len);
    const char *gkey = NULL;
    CHECK_MSG(now && entry_valid(now, got_len, &gkey, &gkl) && gkl == kl && !memcmp(gkey, key, kl),
              "the entry with %s was not replaced by a whole one", k_damage[d]);
    free(now);
    free(b);
    free(orig);
  }
  /* an entry that cannot be read (a folder in its place): compiled, not fatal */
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", dir, names[0]);
  CHECK(unlink(path) == 0 && mkdir(path, 0700) == 0);
  CHECK_MSG(child_ok(dir, "one", false, NULL), "an unreadable entry is compiled again");
  rmdir(path);
  CHECK_MSG(child_ok(dir, "one", false, NULL), "a missing entry is compiled again");
  CHECK_MSG(child_ok(dir, "disk", false, NULL), "after the repairs every kernel comes from disk");
}

static void test_concurrent(const char *dir) {
  pid_t a = spawn(dir, "any", false, NULL), b = spawn(dir, "any", false, NULL);
  pid_t c = spawn(dir, "any", false, NULL);
  CHECK_MSG(wait_ok(a), "concurrent process 1");
  CHECK_MSG(wait_ok(b), "concurrent process 2");
  CHECK_MSG(wait_ok(c), "concurrent process 3");
  char names[64][256];
  int temps = 0, n = list_entries(dir, names, 64, &temps);
  CHECK_MSG(n >= 3 && temps == 0, "%d entries, %d temporary files after concurrent compiles", n, temps);
  CHECK_MSG(child_ok(dir, "disk", false, NULL), "entries written concurrently all load");
}

static int count_in(const char *dir) {
  char names[64][256];
  return list_entries(dir, names, 64, NULL);
}

static void test_locations(const char *root) {
  char d[4400], env1[4500], env2[4500], env3[4500], sub[4500];
  /* no_disk_cache: nothing written even with cache_dir set */
  snprintf(d, sizeof d, "%s/nodisk", root);
  CHECK(mkdir(d, 0700) == 0);
  CHECK_MSG(child_ok(d, "compile", true, NULL), "no_disk_cache compiles");
  CHECK_MSG(count_in(d) == 0, "no_disk_cache wrote %d entries", count_in(d));
  /* cache_dir "" is no disk cache either */
  CHECK_MSG(child_ok("", "compile", false, NULL), "cache_dir \"\" compiles");

  /* LDMC_CACHE_DIR: created (mkdir -p, 0700), used, and reused */
  snprintf(sub, sizeof sub, "%s/env/a/b", root);
  snprintf(env1, sizeof env1, "LDMC_CACHE_DIR=%s", sub);
  const char *e1[] = {env1, NULL};
  CHECK_MSG(child_ok("-", "compile", false, e1), "LDMC_CACHE_DIR=%s", sub);
  struct stat st;
  CHECK_MSG(stat(sub, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700, "%s: mode %o", sub,
            (unsigned)(st.st_mode & 0777));
  CHECK_MSG(count_in(sub) >= 3, "LDMC_CACHE_DIR holds %d entries", count_in(sub));
  CHECK_MSG(child_ok("-", "disk", false, e1), "LDMC_CACHE_DIR reused");
  /* an explicit cache_dir wins over LDMC_CACHE_DIR */
  snprintf(d, sizeof d, "%s/explicit", root);
  CHECK_MSG(child_ok(d, "compile", false, e1), "cache_dir over LDMC_CACHE_DIR");
  CHECK(count_in(d) >= 3);

  /* XDG_CACHE_HOME/ldmc/kernels, then HOME/.cache/ldmc/kernels; LDMC_CACHE_DIR=off and "" disable */
  snprintf(env1, sizeof env1, "XDG_CACHE_HOME=%s/xdg", root);
  snprintf(env2, sizeof env2, "HOME=%s/home", root);
  const char *off[] = {"LDMC_CACHE_DIR=off", env1, env2, NULL}, *empty[] = {"LDMC_CACHE_DIR=", env1, env2, NULL};
  CHECK_MSG(child_ok("-", "compile", false, off), "LDMC_CACHE_DIR=off");
  CHECK_MSG(child_ok("-", "compile", false, empty), "LDMC_CACHE_DIR=");
  snprintf(d, sizeof d, "%s/xdg/ldmc/kernels", root);
  CHECK_MSG(count_in(d) == 0, "LDMC_CACHE_DIR=off / empty wrote into %s", d);
  const char *xdg[] = {"LDMC_CACHE_DIR", env1, env2, NULL};
  CHECK_MSG(child_ok("-", "compile", false, xdg), "XDG_CACHE_HOME");
  CHECK_MSG(count_in(d) >= 3, "%s holds %d entries", d, count_in(d));
  const char *home[] = {"LDMC_CACHE_DIR", "XDG_CACHE_HOME", env2, NULL};
  CHECK_MSG(child_ok("-", "compile", false, home), "HOME");
  snprintf(d, sizeof d, "%s/home/.cache/ldmc/kernels", root);
  CHECK_MSG(count_in(d) >= 3, "%s holds %d entries", d, count_in(d));
  CHECK_MSG(child_ok("-", "disk", false, home), "HOME reused");
  const char *relative[] = {"LDMC_CACHE_DIR", "XDG_CACHE_HOME=relative", env2, NULL};
  CHECK_MSG(child_ok("-", "disk", false, relative), "a relative XDG_CACHE_HOME is ignored (HOME's cache)");
  /* nowhere usable: no cache, a warning with verbose, never a failure */
  const char *none[] = {"LDMC_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "T_VERBOSE=1", NULL};
  CHECK_MSG(child_ok("-", "compile", false, none), "neither XDG_CACHE_HOME nor HOME");
  snprintf(d, sizeof d, "%s/file", root);
  CHECK(spit(d, "x", 1));
  snprintf(env3, sizeof env3, "LDMC_CACHE_DIR=%s/file/sub", root);
  const char *bad[] = {env3, "T_VERBOSE=1", NULL};
  CHECK_MSG(child_ok("-", "compile", false, bad), "a cache folder that cannot be created");
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "--child")) return child(argv[2], argv[3], argc >= 5 && !strcmp(argv[4], "no-disk"));
  ssize_t k = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
  if (k <= 0) snprintf(g_self, sizeof g_self, "%s", argv[0]);
  else g_self[k] = 0;
  char root[] = "/tmp/ldmc_test_kcache_XXXXXX";
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/main", root);
  test_entries_and_reload(dir);
  test_damage(dir);
  snprintf(dir, sizeof dir, "%s/concurrent", root);
  test_concurrent(dir);
  test_locations(root);
  char cmd[4300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
  return test_summary("llvm_cache");
}
