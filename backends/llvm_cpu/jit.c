/* The JIT: one ORC LLJIT per ISA level for the process, and the kernel cache
 * in front of it. Kernels whose keys were compiled before are served from the
 * cache; the missing ones of one request are generated into one module,
 * optimized with default<O3> for the target machine and added to the JIT. */
#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/llvm_cpu/lc.h"

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

/* On-disk cache: <dir>/<sym>.o holds the object, <dir>/<sym>.key the full key
 * (compared on load, so a hash collision is a miss, not a wrong kernel). */
static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && n < (1L << 30) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
      if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
      } else {
        buf[n] = 0;
        *len = (size_t)n;
      }
    }
  }
  fclose(f);
  return buf;
}

static bool disk_load(const char *dir, const lc_kernel *k, LLVMMemoryBufferRef *out) {
  char path[4096];
  size_t n = 0;
  snprintf(path, sizeof path, "%s/%s.key", dir, k->sym);
  char *key = read_all(path, &n);
  bool same = key && strcmp(key, k->key) == 0;
  free(key);
  if (!same) return false;
  snprintf(path, sizeof path, "%s/%s.o", dir, k->sym);
  char *obj = read_all(path, &n);
  if (!obj || n == 0) {
    free(obj);
    return false;
  }
  *out = LLVMCreateMemoryBufferWithMemoryRangeCopy(obj, n, k->sym);
  free(obj);
  return *out != NULL;
}

/* written to a temporary name and renamed, so readers never see half a file */
static void write_atomic(const char *path, const void *data, size_t n) {
  char tmp[4200];
  static _Atomic unsigned serial;
  snprintf(tmp, sizeof tmp, "%s.tmp%d.%u", path, (int)getpid(), serial++);
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  bool ok = fwrite(data, 1, n, f) == n;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) remove(tmp);
}

static void disk_store(const char *dir, const lc_kernel *k, LLVMMemoryBufferRef obj) {
  char path[4096];
  mkdir(dir, 0755); /* may exist */
  snprintf(path, sizeof path, "%s/%s.o", dir, k->sym);
  write_atomic(path, LLVMGetBufferStart(obj), LLVMGetBufferSize(obj));
  snprintf(path, sizeof path, "%s/%s.key", dir, k->sym);
  write_atomic(path, k->key, strlen(k->key));
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
  int64_t disk = 0;
  if (nm > 0) {
    /* each kernel its own module, compiled to an object in parallel */
    LLVMMemoryBufferRef *obj = calloc((size_t)nm, sizeof *obj);
    char (*err)[512] = calloc((size_t)nm, sizeof *err);
    if (!obj || !err) st = ldmc_error(LDMC_ERR_NOMEM, "llvm-cpu: out of memory");
    int nt = threads > 0 ? threads : 1;
    if (nt > nm) nt = nm;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) reduction(+ : disk) if (st == LDMC_OK)
    for (int i = 0; i < nm; i++) {
      if (cache_dir && disk_load(cache_dir, miss[i], &obj[i])) {
        disk++;
        continue;
      }
      if (compile_one(t, miss[i], &obj[i], verbose) != LDMC_OK) {
        snprintf(err[i], sizeof err[i], "%s", ldmc_last_error());
        continue;
      }
      if (cache_dir) disk_store(cache_dir, miss[i], obj[i]);
    }
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
  }
  /* duplicates within the request take the fresh pointers */
  for (int i = 0; i < n && st == LDMC_OK; i++) {
    if (ks[i]->fn) continue;
    cache_entry *e = cache_find(s, ks[i]->hash, ks[i]->key);
    if (!e) st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: kernel %s missing after compilation", ks[i]->sym);
    else ks[i]->fn = e->fn;
  }
  double dt = now_s() - t_start;
  if (verbose)
    fprintf(stderr, "llvm-cpu: %d kernels: %d compiled (%lld from the disk cache), %lld cached, %.3f s\n", n, nm,
            (long long)disk, (long long)hits, dt);
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
