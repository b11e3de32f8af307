/* The JIT: one ORC LLJIT per ISA level for the process, and the kernel cache
 * in front of it. Kernels whose keys were compiled before are served from the
 * cache; the missing ones of one request are loaded from the on-disk cache
 * (below) or generated, each into its own module, optimized with default<O3>
 * for the target machine, compiled to an object and added to the JIT. */
#include <errno.h>
#include <fcntl.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <llvm/Config/llvm-config.h> /* LLVM_VERSION_STRING */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/llvm_cpu/lc.h"
#include "support/fileio.h"

typedef struct cache_entry {
  uint64_t hash;
  char *key;
  lc_kernel_fn fn;
} cache_entry;

typedef struct jit_state {
  pthread_mutex_t mu;
  LLVMOrcLLJITRef jit;
  LLVMTargetMachineRef tm; /* for optimization */
  cache_entry *tab;
  size_t cap, n;
  uint64_t serial;
} jit_state;

static jit_state g_jit[LDMC_LLVM_CPU_ISA_COUNT] = {
    [0 ... LDMC_LLVM_CPU_ISA_COUNT - 1] = {.mu = PTHREAD_MUTEX_INITIALIZER}};

static pthread_mutex_t g_stats_mu = PTHREAD_MUTEX_INITIALIZER;
static ldmc_llvm_cpu_stats g_stats;

void ldmc_lc_stats_add(int64_t requested, int64_t compiled, int64_t hits, int64_t disk_hits, double seconds) {
  pthread_mutex_lock(&g_stats_mu);
  g_stats.kernels_requested += requested;
  g_stats.kernels_compiled += compiled;
  g_stats.cache_hits += hits;
  g_stats.disk_hits += disk_hits;
  g_stats.llvm_seconds += seconds;
  pthread_mutex_unlock(&g_stats_mu);
}

void ldmc_llvm_cpu_stats_get(ldmc_llvm_cpu_stats *out) {
  pthread_mutex_lock(&g_stats_mu);
  *out = g_stats;
  pthread_mutex_unlock(&g_stats_mu);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ldmc_status llvm_err(LLVMErrorRef e, const char *what) {
  char *m = LLVMGetErrorMessage(e);
  ldmc_status st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: %s: %s", what, m ? m : "?");
  LLVMDisposeErrorMessage(m);
  return st;
}

static ldmc_status jit_create(jit_state *s, const lc_target *t) {
  ldmc_lc_llvm_init();
  LLVMTargetMachineRef jtm = ldmc_lc_tm_create(t);
  if (!jtm) return LDMC_ERR_INTERNAL;
  s->tm = ldmc_lc_tm_create(t);
  if (!s->tm) {
    LLVMDisposeTargetMachine(jtm);
    return LDMC_ERR_INTERNAL;
  }
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&s->jit, jb); /* consumes jb */
  if (e) return llvm_err(e, "creating the JIT");
  /* C library symbols (powf, memcpy, memset) come from the process */
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(s->jit), NULL, NULL);
  if (e) return llvm_err(e, "adding process symbols to the JIT");
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(s->jit), gen);
  return LDMC_OK;
}

static cache_entry *cache_find(jit_state *s, uint64_t h, const char *key) {
  if (!s->cap) return NULL;
  for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    cache_entry *e = &s->tab[i];
    if (!e->key) return NULL;
    if (e->hash == h && strcmp(e->key, key) == 0) return e;
  }
}

static bool hash_taken(jit_state *s, uint64_t h) {
  if (!s->cap) return false;
  for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (!s->tab[i].key) return false;
    if (s->tab[i].hash == h) return true;
  }
}

static ldmc_status cache_insert(jit_state *s, uint64_t h, const char *key, lc_kernel_fn fn) {
  if ((s->n + 1) * 2 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    cache_entry *tab = calloc(cap, sizeof *tab);
    if (!tab) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory growing the kernel cache");
    for (size_t i = 0; i < s->cap; i++) {
      if (!s->tab[i].key) continue;
      size_t j = s->tab[i].hash & (cap - 1);
      while (tab[j].key) j = (j + 1) & (cap - 1);
      tab[j] = s->tab[i];
    }
    free(s->tab);
    s->tab = tab;
    s->cap = cap;
  }
  char *k = strdup(key);
  if (!k) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  size_t j = h & (s->cap - 1);
  while (s->tab[j].key) j = (j + 1) & (s->cap - 1);
  s->tab[j] = (cache_entry){h, k, fn};
  s->n++;
  return LDMC_OK;
}

ldmc_status ldmc_lc_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm) {
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    ldmc_status st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: generated IR does not verify: %.2000s", msg ? msg : "?");
    LLVMDisposeMessage(msg);
    return st;
  }
  LLVMDisposeMessage(msg);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, po);
  LLVMDisposePassBuilderOptions(po);
  return e ? llvm_err(e, "optimizing") : LDMC_OK;
}

/* LDMC_LLVM_CPU_DUMP=<dir>: keep the optimized IR and assembly of every JIT module */
static void dump_module(LLVMModuleRef mod, LLVMTargetMachineRef tm) {
  const char *dir = getenv("LDMC_LLVM_CPU_DUMP");
  if (!dir || !*dir) return;
  static _Atomic int serial;
  int k = serial++;
  char path[4096];
  snprintf(path, sizeof path, "%s/kernels_%03d.ll", dir, k);
  char *err = NULL;
  if (LLVMPrintModuleToFile(mod, path, &err)) fprintf(stderr, "llvm-cpu: dump %s: %s\n", path, err ? err : "?");
  LLVMDisposeMessage(err);
  err = NULL;
  LLVMModuleRef c = LLVMCloneModule(mod); /* code generation changes the IR it runs on */
  snprintf(path, sizeof path, "%s/kernels_%03d.s", dir, k);
  if (LLVMTargetMachineEmitToFile(tm, c, path, LLVMAssemblyFile, &err))
    fprintf(stderr, "llvm-cpu: dump %s: %s\n", path, err ? err : "?");
  LLVMDisposeMessage(err);
  LLVMDisposeModule(c);
}

/* One kernel: its own context and module, optimized, compiled to an object. */
static ldmc_status compile_one(const lc_target *t, const lc_kernel *k, LLVMMemoryBufferRef *out, int verbose) {
  LLVMTargetMachineRef tm = ldmc_lc_tm_create(t);
  if (!tm) return LDMC_ERR_INTERNAL;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(k->sym, ctx);
  LLVMSetTarget(mod, t->triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(mod, td);
  LLVMDisposeTargetData(td);
  lc_cg cg;
  ldmc_lc_cg_init(&cg, ctx, mod, t);
  ldmc_lc_emit_kernel(&cg, k, k->sym);
  ldmc_lc_cg_dispose(&cg);
  if (verbose > 2) {
    char *ir = LLVMPrintModuleToString(mod);
    fprintf(stderr, "%s\n", ir);
    LLVMDisposeMessage(ir);
  }
  ldmc_status st = ldmc_lc_optimize(mod, tm);
  if (st == LDMC_OK) dump_module(mod, tm);
  char *err = NULL;
  if (st == LDMC_OK && LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &err, out)) {
    st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: code generation for %s failed: %s", k->sym, err ? err : "?");
    *out = NULL;
  }
  LLVMDisposeMessage(err);
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  LLVMDisposeTargetMachine(tm);
  return st;
}

/* ---- the on-disk kernel cache ----------------------------------------------------------------
 * One self-describing file per kernel, <dir>/<sym>.<isa>.kc:
 *   magic "LDMCKRN\n" | u32 format | u32 key length | u64 object length |
 *   u64 FNV-1a 64 of key and object | key text | object            (little-endian)
 * The key text names everything the object code depends on: the entry format,
 * ldmc's version and a fingerprint of this backend's sources, the LLVM
 * version (headers and library), the ISA level, triple, CPU and features, the
 * symbol and the kernel's descriptor key. An entry whose size, magic, format,
 * checksum or key does not match exactly is never loaded: the kernel is
 * compiled and the entry replaced. Entries are written to a temporary file in
 * the same folder and renamed (support/fileio.h), so concurrent processes
 * sharing a folder see old or new entries, never half of one. */
#if defined(__has_include)
#if __has_include("llvm_cpu_fingerprint.h")
#include "llvm_cpu_fingerprint.h" /* generated by CMake from backends/llvm_cpu/'s sources */
#endif
#endif
#ifndef LDMC_LLVM_CPU_FINGERPRINT
#define LDMC_LLVM_CPU_FINGERPRINT "unknown"
#endif
#ifndef LDMC_VERSION
#define LDMC_VERSION "unknown"
#endif

#define KC_MAGIC "LDMCKRN\n"
enum { KC_FORMAT = 1, KC_HDR = 32, KC_PATH = 4096 };
#define KC_MAX_BYTES ((size_t)1 << 30)

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* The full key of k's entry (malloc'd), NULL on OOM. */
static char *disk_key(const lc_target *t, const lc_kernel *k) {
  unsigned maj = 0, min = 0, pat = 0;
  LLVMGetVersion(&maj, &min, &pat);
  lc_sb sb = {0};
  ldmc_lc_sb_printf(&sb,
                    "ldmc kernel cache %d\nldmc %s sources %s\nllvm %s library %u.%u.%u\nisa %s\ntriple %s\ncpu %s\n"
                    "features %s\nsymbol %s\nkernel %s\n",
                    KC_FORMAT, LDMC_VERSION, LDMC_LLVM_CPU_FINGERPRINT, LLVM_VERSION_STRING, maj, min, pat,
                    ldmc_llvm_cpu_isa_name(t->isa), t->triple, t->cpu, t->features, k->sym, k->key);
  if (sb.oom) {
    free(sb.s);
    return NULL;
  }
  return sb.s;
}

typedef enum { KC_ABSENT, KC_REJECTED, KC_LOADED } kc_result;

/* Loads the object of the entry at path if it is intact and its key is key;
 * else says why in why[] (KC_REJECTED) or that there is none (KC_ABSENT). */
static kc_result disk_load(const char *path, const char *key, const char *name, LLVMMemoryBufferRef *out, char *why,
                           size_t why_len) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return KC_ABSENT;
    snprintf(why, why_len, "cannot open it: %s", strerror(errno));
    return KC_REJECTED;
  }
  struct stat st;
  uint8_t *buf = NULL;
  size_t len = 0, got = 0;
  kc_result r = KC_REJECTED;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(why, why_len, "not a regular file");
    goto done;
  }
  if (st.st_size < KC_HDR || (uint64_t)st.st_size > KC_MAX_BYTES) {
    snprintf(why, why_len, "%lld bytes, not an entry (truncated?)", (long long)st.st_size);
    goto done;
  }
  len = (size_t)st.st_size;
  if (!(buf = malloc(len))) {
    snprintf(why, why_len, "out of memory");
    goto done;
  }
  while (got < len) {
    ssize_t k = read(fd, buf + got, len - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  if (got != len) {
    snprintf(why, why_len, "read %zu of %zu bytes", got, len);
    goto done;
  }
  uint64_t key_len = get_le(buf + 12, 4), obj_len = get_le(buf + 16, 8);
  if (memcmp(buf, KC_MAGIC, 8) != 0) {
    snprintf(why, why_len, "not a kernel cache entry (bad magic)");
  } else if (get_le(buf + 8, 4) != KC_FORMAT) {
    snprintf(why, why_len, "entry format %u, this ldmc writes %d", (unsigned)get_le(buf + 8, 4), KC_FORMAT);
  } else if (key_len > len || obj_len > len || KC_HDR + key_len + obj_len != len || obj_len == 0) {
    snprintf(why, why_len, "%zu bytes where its header says %llu (truncated or corrupted)", len,
             (unsigned long long)(KC_HDR + key_len + obj_len));
  } else if (ldmc_lc_hash((const char *)buf + KC_HDR, (size_t)(key_len + obj_len)) != get_le(buf + 24, 8)) {
    snprintf(why, why_len, "checksum mismatch (corrupted)");
  } else if (key_len != strlen(key) || memcmp(buf + KC_HDR, key, (size_t)key_len) != 0) {
    snprintf(why, why_len, "written for another key (other ldmc or LLVM version, ISA, CPU or a hash collision)");
  } else {
    *out = LLVMCreateMemoryBufferWithMemoryRangeCopy((const char *)buf + KC_HDR + key_len, (size_t)obj_len, name);
    if (*out) r = KC_LOADED;
    else snprintf(why, why_len, "out of memory");
  }
done:
  free(buf);
  close(fd);
  return r;
}

static bool disk_store(const char *path, const char *key, LLVMMemoryBufferRef obj, char *why, size_t why_len) {
  size_t kl = strlen(key), ol = LLVMGetBufferSize(obj), n = KC_HDR + kl + ol;
  uint8_t *buf = malloc(n);
  if (!buf) {
    snprintf(why, why_len, "out of memory");
    return false;
  }
  memcpy(buf, KC_MAGIC, 8);
  put_le(buf + 8, KC_FORMAT, 4);
  put_le(buf + 12, kl, 4);
  put_le(buf + 16, ol, 8);
  memcpy(buf + KC_HDR, key, kl);
  memcpy(buf + KC_HDR + kl, LLVMGetBufferStart(obj), ol);
  put_le(buf + 24, ldmc_lc_hash((const char *)buf + KC_HDR, kl + ol), 8);
  bool ok = ldmc_file_write_atomic(path, buf, n) == LDMC_OK;
  if (!ok) snprintf(why, why_len, "%s", ldmc_last_error());
  free(buf);
  return ok;
}

/* mkdir -p; the folders it creates get mode 0700. A world-writable folder is
 * refused: its entries are code this process would run. */
static bool mkdir_p(const char *dir, char *why, size_t why_len) {
  if (ldmc_make_dirs(dir, 0700) != LDMC_OK) {
    snprintf(why, why_len, "%s", ldmc_last_error());
    return false;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(why, why_len, "%s is not a folder", dir);
    return false;
  }
  if (st.st_mode & S_IWOTH) { /* anyone could plant code there that this process would run */
    snprintf(why, why_len, "%s is writable by every user", dir);
    return false;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    snprintf(why, why_len, "cannot write to %s: %s", dir, strerror(errno));
    return false;
  }
  return true;
}

/* The cache folder for a compile (see ldmc_compile_opts.cache_dir): true with
 * it in dir[], false when there is none; *warn then says whether that is a
 * failure worth a warning (rather than a request). */
static bool disk_dir(const char *opt, char *dir, size_t len, bool *warn, char *why, size_t why_len) {
  *warn = false;
  const char *env = getenv("LDMC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int k;
  if (opt) {
    if (!*opt) return false;
    k = snprintf(dir, len, "%s", opt);
  } else if (env) {
    if (!*env || strcmp(env, "off") == 0) return false;
    k = snprintf(dir, len, "%s", env);
  } else if (xdg && xdg[0] == '/') {
    k = snprintf(dir, len, "%s/ldmc/kernels", xdg);
  } else if (home && home[0] == '/') {
    k = snprintf(dir, len, "%s/.cache/ldmc/kernels", home);
  } else {
    *warn = true;
    snprintf(why, why_len, "neither XDG_CACHE_HOME nor HOME is an absolute path");
    return false;
  }
  if (k < 0 || (size_t)k >= len) {
    *warn = true;
    snprintf(why, why_len, "the folder name is too long");
    return false;
  }
  if (!mkdir_p(dir, why, why_len)) {
    *warn = true;
    return false;
  }
  return true;
}

static ldmc_status compile_locked(jit_state *s, const lc_target *t, lc_kernel **ks, int n, const char *cache_dir,
                                  int threads, int verbose) {
  double t_start = now_s();
  int64_t hits = 0;
  lc_kernel **miss = malloc((size_t)(n ? n : 1) * sizeof *miss);
  if (!miss) return ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
  int nm = 0;
  for (int i = 0; i < n; i++) {
    cache_entry *e = cache_find(s, ks[i]->hash, ks[i]->key);
    if (e) {
      ks[i]->fn = e->fn;
      hits++;
      continue;
    }
    bool dup = false; /* the same kernel twice in this request */
    for (int j = 0; j < nm && !dup; j++) dup = miss[j]->hash == ks[i]->hash && strcmp(miss[j]->key, ks[i]->key) == 0;
    if (dup) {
      hits++;
      continue;
    }
    /* a different kernel with a colliding hash gets a unique symbol */
    bool clash = hash_taken(s, ks[i]->hash);
    for (int j = 0; j < nm && !clash; j++) clash = miss[j]->hash == ks[i]->hash;
    if (clash) snprintf(ks[i]->sym, sizeof ks[i]->sym, "ldmc_k_%016llx_%llu", (unsigned long long)ks[i]->hash,
                        (unsigned long long)++s->serial);
    miss[nm++] = ks[i];
  }
  ldmc_status st = LDMC_OK;
  int64_t disk = 0, rejected = 0, stored = 0;
  char dir[KC_PATH], why_dir[KC_PATH + 256];
  bool warn = false, use_disk = nm > 0 && disk_dir(cache_dir, dir, sizeof dir, &warn, why_dir, sizeof why_dir);
  if (warn && verbose) {
    static _Atomic int warned; /* once per process */
    if (warned++ == 0)
      fprintf(stderr,
              "llvm-cpu: warning: no on-disk kernel cache (%s); every process compiles its kernels "
              "(LDMC_CACHE_DIR=DIR picks a folder, LDMC_CACHE_DIR=off turns the cache off)\n",
              why_dir);
  }
  if (nm > 0) {
    /* each kernel its own module, compiled to an object in parallel */
    LLVMMemoryBufferRef *obj = calloc((size_t)nm, sizeof *obj);
    char (*err)[512] = calloc((size_t)nm, sizeof *err);
    char (*why)[512] = use_disk ? calloc((size_t)nm, sizeof *why) : NULL;
    if (!obj || !err || (use_disk && !why)) st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    int nt = threads > 0 ? threads : 1;
    if (nt > nm) nt = nm;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) reduction(+ : disk, rejected, stored) if (st == LDMC_OK)
    for (int i = 0; i < nm; i++) {
      char path[KC_PATH + 128], *key = NULL;
      bool cached = use_disk && (key = disk_key(t, miss[i])) != NULL;
      if (cached) {
        snprintf(path, sizeof path, "%s/%s.%s.kc", dir, miss[i]->sym, ldmc_llvm_cpu_isa_name(t->isa));
        kc_result r = disk_load(path, key, miss[i]->sym, &obj[i], why[i], sizeof why[i]);
        if (r == KC_LOADED) {
          disk++;
          free(key);
          continue;
        }
        rejected += r == KC_REJECTED;
      }
      if (compile_one(t, miss[i], &obj[i], verbose) != LDMC_OK) {
        snprintf(err[i], sizeof err[i], "%s", ldmc_last_error());
      } else if (cached) {
        char werr[256];
        if (disk_store(path, key, obj[i], werr, sizeof werr)) stored++;
        else if (!why[i][0]) snprintf(why[i], sizeof why[i], "not written: %s", werr);
      }
      free(key);
    }
    for (int i = 0; verbose && why && i < nm; i++)
      if (why[i][0])
        fprintf(stderr, "llvm-cpu: kernel cache: %s/%s.%s.kc: %s; compiled again\n", dir, miss[i]->sym,
                ldmc_llvm_cpu_isa_name(t->isa), why[i]);
    for (int i = 0; i < nm && st == LDMC_OK; i++)
      if (!obj[i]) st = ldmc_error(LDMC_ERR_INTERNAL, "%s", err[i][0] ? err[i] : "llvm-cpu: kernel compilation failed");
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(s->jit);
    for (int i = 0; i < nm && st == LDMC_OK; i++) {
      LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(s->jit, jd, obj[i]); /* takes the buffer */
      obj[i] = NULL;
      if (e) st = llvm_err(e, "adding a kernel to the JIT");
    }
    for (int i = 0; i < nm && st == LDMC_OK; i++) {
      LLVMOrcExecutorAddress addr = 0;
      LLVMErrorRef e = LLVMOrcLLJITLookup(s->jit, &addr, miss[i]->sym);
      if (e) {
        st = llvm_err(e, "looking up a kernel");
        break;
      }
      miss[i]->fn = (lc_kernel_fn)(uintptr_t)addr;
      st = cache_insert(s, miss[i]->hash, miss[i]->key, miss[i]->fn);
    }
    for (int i = 0; obj && i < nm; i++)
      if (obj[i]) LLVMDisposeMemoryBuffer(obj[i]);
    free(obj);
    free(err);
    free(why);
  }
  /* duplicates within the request take the fresh pointers */
  for (int i = 0; i < n && st == LDMC_OK; i++) {
    if (ks[i]->fn) continue;
    cache_entry *e = cache_find(s, ks[i]->hash, ks[i]->key);
    if (!e) st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: kernel %s missing after compilation", ks[i]->sym);
    else ks[i]->fn = e->fn;
  }
  double dt = now_s() - t_start;
  if (verbose) {
    char where[KC_PATH + 64];
    if (use_disk) snprintf(where, sizeof where, "disk cache %s: %lld loaded, %lld written, %lld rejected", dir,
                           (long long)disk, (long long)stored, (long long)rejected);
    else snprintf(where, sizeof where, "%s", nm ? "no disk cache" : "disk cache not needed");
    fprintf(stderr, "llvm-cpu: %d kernels: %lld cached in memory, %lld from the disk cache, %lld compiled (%s), %.3f s\n",
            n, (long long)hits, (long long)disk, (long long)(nm - disk), where, dt);
  }
  ldmc_lc_stats_add(n, nm - disk, hits, disk, dt);
  free(miss);
  return st;
}

ldmc_status ldmc_lc_jit_compile(const lc_target *t, lc_kernel **ks, int n, const char *cache_dir, int threads,
                                int verbose) {
  jit_state *s = &g_jit[t->isa];
  pthread_mutex_lock(&s->mu);
  ldmc_status st = s->jit ? LDMC_OK : jit_create(s, t);
  if (st == LDMC_OK) st = compile_locked(s, t, ks, n, cache_dir, threads, verbose);
  pthread_mutex_unlock(&s->mu);
  return st;
}
