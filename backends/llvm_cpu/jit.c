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
#include <time.h>

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

static ldmc_status compile_locked(jit_state *s, const lc_target *t, lc_kernel **ks, int n, int verbose) {
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
  if (nm > 0) {
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("ldmc_kernels", ctx);
    LLVMSetTarget(mod, t->triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(s->tm);
    LLVMSetModuleDataLayout(mod, td);
    LLVMDisposeTargetData(td);
    lc_cg cg;
    ldmc_lc_cg_init(&cg, ctx, mod, t);
    for (int i = 0; i < nm; i++) ldmc_lc_emit_kernel(&cg, miss[i], miss[i]->sym);
    ldmc_lc_cg_dispose(&cg);
    if (verbose > 2) {
      char *ir = LLVMPrintModuleToString(mod);
      fprintf(stderr, "%s\n", ir);
      LLVMDisposeMessage(ir);
    }
    st = ldmc_lc_optimize(mod, s->tm);
    if (st == LDMC_OK) dump_module(mod, s->tm);
    if (st != LDMC_OK) {
      LLVMDisposeModule(mod);
      LLVMOrcDisposeThreadSafeContext(tsc);
    } else {
      LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
      LLVMOrcDisposeThreadSafeContext(tsc);
      LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(s->jit, LLVMOrcLLJITGetMainJITDylib(s->jit), tsm);
      if (e) {
        st = llvm_err(e, "adding kernels to the JIT");
      } else {
        for (int i = 0; i < nm && st == LDMC_OK; i++) {
          LLVMOrcExecutorAddress addr = 0;
          e = LLVMOrcLLJITLookup(s->jit, &addr, miss[i]->sym);
          if (e) {
            st = llvm_err(e, "looking up a kernel");
            break;
          }
          miss[i]->fn = (lc_kernel_fn)(uintptr_t)addr;
          st = cache_insert(s, miss[i]->hash, miss[i]->key, miss[i]->fn);
        }
      }
    }
  }
  /* duplicates within the request take the fresh pointers */
  for (int i = 0; i < n && st == LDMC_OK; i++) {
    if (ks[i]->fn) continue;
    cache_entry *e = cache_find(s, ks[i]->hash, ks[i]->key);
    if (!e) st = ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: kernel %s missing after compilation", ks[i]->sym);
    else ks[i]->fn = e->fn;
  }
  double dt = now_s() - t_start;
  if (verbose) fprintf(stderr, "llvm-cpu: %d kernels: %d compiled, %lld cached, %.3f s\n", n, nm, (long long)hits, dt);
  ldmc_lc_stats_add(n, nm, hits, 0, dt);
  free(miss);
  return st;
}

ldmc_status ldmc_lc_jit_compile(const lc_target *t, lc_kernel **ks, int n, const char *cache_dir, int verbose) {
  (void)cache_dir;
  jit_state *s = &g_jit[t->isa];
  pthread_mutex_lock(&s->mu);
  ldmc_status st = s->jit ? LDMC_OK : jit_create(s, t);
  if (st == LDMC_OK) st = compile_locked(s, t, ks, n, verbose);
  pthread_mutex_unlock(&s->mu);
  return st;
}
