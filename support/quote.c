/* Quoting names read from files for messages (see support/status.h). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "support/status.h"

size_t ldmc_utf8_len(const unsigned char *p) {
  unsigned char c = p[0];
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
  else return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

const char *ldmc_quote(const char *s, char *buf, size_t len) {
  size_t w = 0;
  if (!len) return buf;
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  while (*p) {
    size_t n = ldmc_utf8_len(p);
    char tmp[8];
    size_t k;
    if (n == 1 && (*p < 0x20 || *p == 0x7f || *p == '\\')) {
      k = *p == '\\' ? (size_t)snprintf(tmp, sizeof tmp, "\\\\") : (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", *p);
      n = 1;
    } else if (n == 0) {
      k = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", *p);
      n = 1;
    } else {
      memcpy(tmp, p, n);
      k = n;
    }
    if (w + k + 4 > len) { /* no room: end with "..." */
      if (len >= 4) snprintf(buf + (w + 4 > len ? len - 4 : w), 4, "...");
      return buf;
    }
    memcpy(buf + w, tmp, k);
    w += k;
    p += n;
  }
  buf[w] = 0;
  return buf;
}
