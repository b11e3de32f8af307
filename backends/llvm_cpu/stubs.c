#include "backends/llvm_cpu/lc.h"
ldmc_status ldmc_llvm_cpu_emit(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_llvm_cpu_emit_kind kind,
                               const char *path, const char *header_path, const char *entry) {
  (void)g, (void)o, (void)kind, (void)path, (void)header_path, (void)entry;
  return ldmc_error(LDMC_ERR_UNSUPPORTED, "not yet");
}
bool ldmc_llvm_cpu_emit_kind_parse(const char *s, ldmc_llvm_cpu_emit_kind *out) { (void)s, (void)out; return false; }
