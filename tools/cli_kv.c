/* The driver's key/value configuration lists (cli_kv.h). */
#include <stdarg.h>
#include <stdio.h>

#include "tools/cli_kv.h"

void ldmc_cli_kv_add(ldmc_cli_kv *c, const char *key, const char *fmt, ...) {
  if (c->n >= LDMC_CLI_KV_MAX) return;
  va_list ap;
  va_start(ap, fmt);
  snprintf(c->keys[c->n], sizeof c->keys[0], "%s", key);
  vsnprintf(c->values[c->n], sizeof c->values[0], fmt, ap);
  va_end(ap);
  c->kp[c->n] = c->keys[c->n], c->vp[c->n] = c->values[c->n];
  c->n++;
}

void ldmc_cli_kv_ints(ldmc_cli_kv *c, const char *key, const int *v, int n) {
  char buf[96] = "";
  size_t len = 0;
  for (int i = 0; i < n && len < sizeof buf - 12; i++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d", i ? "," : "", v[i]);
  ldmc_cli_kv_add(c, key, "%s", buf);
}
