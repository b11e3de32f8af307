/* Small utilities: string building for kernel keys, hashing, kernel objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/llvm_cpu/lc.h"

void ldmc_lc_sb_printf(lc_sb *sb, const char *fmt, ...) {
  if (sb->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = sb->cap - sb->n;
    int k = vsnprintf(sb->s ? sb->s + sb->n : NULL, sb->s ? room : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
      sb->oom = true;
      return;
    }
    if (sb->s && (size_t)k < room) {
      sb->n += (size_t)k;
      return;
    }
    size_t cap = sb->cap ? sb->cap * 2 : 256;
    while (cap < sb->n + (size_t)k + 1) cap *= 2;
    char *s = realloc(sb->s, cap);
    if (!s) {
      sb->oom = true;
      return;
    }
    sb->s = s;
    sb->cap = cap;
  }
}

void ldmc_lc_sb_ints(lc_sb *sb, const int64_t *v, int n) {
  for (int i = 0; i < n; i++) ldmc_lc_sb_printf(sb, i ? ",%lld" : "%lld", (long long)v[i]);
}

void ldmc_lc_sb_hex(lc_sb *sb, const void *data, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (sb->oom) return;
  if (sb->cap < sb->n + 2 * n + 1) {
    size_t cap = sb->n + 2 * n + 64;
    char *s = realloc(sb->s, cap);
    if (!s) {
      sb->oom = true;
      return;
    }
    sb->s = s, sb->cap = cap;
  }
  const unsigned char *d = data;
  for (size_t i = 0; i < n; i++) sb->s[sb->n++] = hex[d[i] >> 4], sb->s[sb->n++] = hex[d[i] & 15];
  sb->s[sb->n] = 0;
}

uint64_t ldmc_lc_hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

lc_kernel *ldmc_lc_kernel_new(lc_kind kind, void *desc, size_t desc_size, const lc_target *t) {
  lc_kernel *k = calloc(1, sizeof *k);
  if (!k) {
    free(desc);
    return NULL;
  }
  k->kind = kind;
  k->desc = desc;
  lc_sb sb = {0};
  ldmc_lc_sb_printf(&sb, "%s|k%d|", ldmc_llvm_cpu_isa_name(t->isa), (int)kind);
  /* descriptors are zero-initialized PODs, so their bytes are canonical */
  ldmc_lc_sb_hex(&sb, desc, desc_size);
  if (sb.oom || !sb.s) {
    free(sb.s);
    ldmc_lc_kernel_free(k);
    return NULL;
  }
  k->key = sb.s;
  k->hash = ldmc_lc_hash(sb.s, sb.n);
  snprintf(k->sym, sizeof k->sym, "ldmc_k_%016llx", (unsigned long long)k->hash);
  return k;
}

void ldmc_lc_kernel_free(lc_kernel *k) {
  if (!k) return;
  free(k->desc);
  free(k->key);
  free(k);
}

void ldmc_lc_strides(const ldmc_shape *s, int64_t *st) {
  int64_t k = 1;
  for (int i = s->rank - 1; i >= 0; i--) {
    st[i] = k;
    k *= s->dims[i];
  }
}

int64_t ldmc_lc_numel(const ldmc_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}
