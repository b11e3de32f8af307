/* A model's key/value configuration as the driver collects it, to be stored
 * with checkpoints and exported model files (ldmc train, ldmc distill). */
#ifndef LDMC_TOOLS_CLI_KV_H
#define LDMC_TOOLS_CLI_KV_H

#define LDMC_CLI_KV_MAX 48

typedef struct ldmc_cli_kv {
  int n;
  char keys[LDMC_CLI_KV_MAX][40], values[LDMC_CLI_KV_MAX][96];
  const char *kp[LDMC_CLI_KV_MAX], *vp[LDMC_CLI_KV_MAX]; /* n pointers into keys/values, for the C APIs */
} ldmc_cli_kv;

/* Appends key = printf(fmt, ...); past LDMC_CLI_KV_MAX entries it is dropped. */
void ldmc_cli_kv_add(ldmc_cli_kv *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* key = "v0,v1,..." */
void ldmc_cli_kv_ints(ldmc_cli_kv *c, const char *key, const int *v, int n);

#endif
