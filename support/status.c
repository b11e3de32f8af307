#include "support/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_message[2048];

ldmc_status ldmc_error(ldmc_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_message, sizeof g_message, fmt, ap);
  va_end(ap);
  return code;
}

void ldmc_error_prefix(const char *fmt, ...) {
  char prefix[512], old[sizeof g_message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, g_message, sizeof old);
  /* prefix + old, truncated to the buffer (memcpy: no format-truncation warning) */
  size_t pl = strlen(prefix), ol = strlen(old); /* both NUL-terminated, prefix < 512 */
  if (ol > sizeof g_message - 1 - pl) ol = sizeof g_message - 1 - pl;
  memcpy(g_message, prefix, pl);
  memcpy(g_message + pl, old, ol);
  g_message[pl + ol] = 0;
}

const char *ldmc_last_error(void) { return g_message[0] ? g_message : "no error message"; }
void ldmc_error_clear(void) { g_message[0] = 0; }

const char *ldmc_status_name(ldmc_status s) {
  static const char *const names[] = {"ok", "invalid", "parse error", "i/o error", "bad format",
                                      "unsupported", "out of memory", "internal error"};
  _Static_assert(sizeof names / sizeof names[0] == LDMC_STATUS_COUNT, "status names");
  return (unsigned)s < LDMC_STATUS_COUNT ? names[s] : "unknown status";
}
