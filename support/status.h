/* Status codes and the thread-local error message every fallible call sets. */
#ifndef LDMC_SUPPORT_STATUS_H
#define LDMC_SUPPORT_STATUS_H

#include <stddef.h>

typedef enum ldmc_status {
  LDMC_OK = 0,
  LDMC_ERR_INVALID, /* bad argument, ill-typed graph, wrong shape */
  LDMC_ERR_PARSE,   /* malformed text */
  LDMC_ERR_IO,      /* file missing, unreadable, not writable */
  LDMC_ERR_FORMAT,  /* malformed or hostile binary file */
  LDMC_ERR_UNSUPPORTED,
  LDMC_ERR_NOMEM,
  LDMC_ERR_INTERNAL,
  LDMC_STATUS_COUNT
} ldmc_status;

/* Records a message (printf-style) for the calling thread and returns code. */
ldmc_status ldmc_error(ldmc_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepends context ("file x.safetensors: ") to the current message. */
void ldmc_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ldmc_last_error(void);
void ldmc_error_clear(void);
const char *ldmc_status_name(ldmc_status s);

#define LDMC_TRY(expr)                     \
  do {                                     \
    ldmc_status ldmc_try_s_ = (expr);      \
    if (ldmc_try_s_ != LDMC_OK) return ldmc_try_s_; \
  } while (0)

/* Length of the valid UTF-8 sequence at p (1..4; 1 for ASCII), 0 if invalid. */
size_t ldmc_utf8_len(const unsigned char *p);
/* s (a name read from a file) with control bytes and invalid UTF-8 as \xNN
 * and backslashes as \\, truncated with "..." to fit len; returns buf. So a
 * message never carries raw bytes to the terminal. */
const char *ldmc_quote(const char *s, char *buf, size_t len);

#endif
