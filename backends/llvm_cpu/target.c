/* Targets: the host's CPU and features, or a forced smaller level (avx2,
 * scalar) so every vector width is generated and tested on one machine. */
#include <llvm-c/Target.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
static void llvm_init(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
}
void ldmc_lc_llvm_init(void) { pthread_once(&g_init_once, llvm_init); }

static const char *const k_isa_names[LDMC_LLVM_CPU_ISA_COUNT] = {"auto", "scalar", "avx2", "avx512"};

const char *ldmc_llvm_cpu_isa_name(ldmc_llvm_cpu_isa isa) {
  return (unsigned)isa < LDMC_LLVM_CPU_ISA_COUNT ? k_isa_names[isa] : "<bad isa>";
}

bool ldmc_llvm_cpu_isa_parse(const char *s, ldmc_llvm_cpu_isa *out) {
  for (int i = 0; s && i < LDMC_LLVM_CPU_ISA_COUNT; i++)
    if (strcmp(s, k_isa_names[i]) == 0) {
      *out = (ldmc_llvm_cpu_isa)i;
      return true;
    }
  return false;
}

/* "+avx2,-avx512f,..." contains exactly "+name" */
static bool has_feature(const char *features, const char *name) {
  size_t n = strlen(name);
  for (const char *p = features; p && *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n + 1 && p[0] == '+' && memcmp(p + 1, name, n) == 0) return true;
    p = e ? e + 1 : NULL;
  }
  return false;
}

static char g_host_cpu[64], g_host_features[4096];
static ldmc_llvm_cpu_isa g_host_isa;
static pthread_once_t g_host_once = PTHREAD_ONCE_INIT;
static void host_probe(void) {
  ldmc_lc_llvm_init();
  char *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
  snprintf(g_host_cpu, sizeof g_host_cpu, "%s", cpu ? cpu : "x86-64");
  snprintf(g_host_features, sizeof g_host_features, "%s", feat ? feat : "");
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(feat);
  g_host_isa = LDMC_LLVM_CPU_ISA_SCALAR;
  if (has_feature(g_host_features, "avx2") && has_feature(g_host_features, "fma")) g_host_isa = LDMC_LLVM_CPU_ISA_AVX2;
  if (g_host_isa == LDMC_LLVM_CPU_ISA_AVX2 && has_feature(g_host_features, "avx512f") &&
      has_feature(g_host_features, "avx512bw") && has_feature(g_host_features, "avx512vl") &&
      has_feature(g_host_features, "avx512dq"))
    g_host_isa = LDMC_LLVM_CPU_ISA_AVX512;
}

ldmc_llvm_cpu_isa ldmc_llvm_cpu_host_isa(void) {
  pthread_once(&g_host_once, host_probe);
  return g_host_isa;
}

static _Atomic int g_forced = LDMC_LLVM_CPU_ISA_AUTO;
void ldmc_llvm_cpu_set_isa(ldmc_llvm_cpu_isa isa) {
  g_forced = (unsigned)isa < LDMC_LLVM_CPU_ISA_COUNT ? (int)isa : LDMC_LLVM_CPU_ISA_AUTO;
}

ldmc_status ldmc_llvm_cpu_current_isa(ldmc_llvm_cpu_isa *out) {
  ldmc_llvm_cpu_isa host = ldmc_llvm_cpu_host_isa(), want = (ldmc_llvm_cpu_isa)g_forced;
  if (want == LDMC_LLVM_CPU_ISA_AUTO) {
    const char *env = getenv("LDMC_LLVM_CPU_ISA");
    if (env && *env && !ldmc_llvm_cpu_isa_parse(env, &want))
      return ldmc_error(LDMC_ERR_INVALID, "LDMC_LLVM_CPU_ISA='%s': expected scalar, avx2, avx512 or auto", env);
  }
  if (want == LDMC_LLVM_CPU_ISA_AUTO) want = host;
  if (want > host)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: ISA level %s requested, but this host (%s) supports only %s",
                      ldmc_llvm_cpu_isa_name(want), g_host_cpu, ldmc_llvm_cpu_isa_name(host));
  *out = want;
  return LDMC_OK;
}

static lc_target g_targets[LDMC_LLVM_CPU_ISA_COUNT];
static pthread_once_t g_targets_once = PTHREAD_ONCE_INIT;
static void targets_init(void) {
  ldmc_llvm_cpu_host_isa();
  char *triple = LLVMGetDefaultTargetTriple();
  for (int i = LDMC_LLVM_CPU_ISA_SCALAR; i < LDMC_LLVM_CPU_ISA_COUNT; i++) {
    lc_target *t = &g_targets[i];
    t->isa = (ldmc_llvm_cpu_isa)i;
    snprintf(t->triple, sizeof t->triple, "%s", triple);
    switch (t->isa) {
      case LDMC_LLVM_CPU_ISA_SCALAR: /* baseline x86-64; our code uses 1-lane vectors */
        snprintf(t->cpu, sizeof t->cpu, "x86-64");
        t->W = 1, t->mr = 4, t->nr = 4, t->kc = 256, t->nc = 256;
        break;
      case LDMC_LLVM_CPU_ISA_AVX2: /* 16 ymm: 6x16 tile = 12 accumulators + 2 B + 1 broadcast */
        snprintf(t->cpu, sizeof t->cpu, "x86-64-v3");
        t->W = 8, t->mr = 6, t->nr = 16, t->kc = 256, t->nc = 512;
        break;
      default: /* 32 zmm: 14x32 tile = 28 accumulators + 2 B + 1 broadcast */
        snprintf(t->cpu, sizeof t->cpu, "%s", g_host_cpu);
        snprintf(t->features, sizeof t->features, "%s", g_host_features);
        t->W = 16, t->mr = 14, t->nr = 32, t->kc = 256, t->nc = 512;
        t->avx512bf16 = has_feature(g_host_features, "avx512bf16");
        break;
    }
  }
  LLVMDisposeMessage(triple);
}

ldmc_status ldmc_lc_target_get(ldmc_llvm_cpu_isa isa, const lc_target **out) {
  if (isa == LDMC_LLVM_CPU_ISA_AUTO) LDMC_TRY(ldmc_llvm_cpu_current_isa(&isa));
  if ((unsigned)isa >= LDMC_LLVM_CPU_ISA_COUNT) return ldmc_error(LDMC_ERR_INVALID, "llvm-cpu: bad ISA level %d", isa);
  if (isa > ldmc_llvm_cpu_host_isa())
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: ISA level %s is not supported by this host",
                      ldmc_llvm_cpu_isa_name(isa));
  pthread_once(&g_targets_once, targets_init);
  *out = &g_targets[isa];
  return LDMC_OK;
}

LLVMTargetMachineRef ldmc_lc_tm_create(const lc_target *t) {
  ldmc_lc_llvm_init();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(t->triple, &target, &err)) {
    ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: no LLVM target for %s: %s", t->triple, err ? err : "?");
    LLVMDisposeMessage(err);
    return NULL;
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, t->triple, t->cpu, t->features, LLVMCodeGenLevelAggressive,
                                                    LLVMRelocPIC, LLVMCodeModelDefault);
  if (!tm) ldmc_error(LDMC_ERR_INTERNAL, "llvm-cpu: cannot create a target machine for %s (%s)", t->triple, t->cpu);
  return tm;
}
