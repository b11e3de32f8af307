/* The lexer of the IR text form: tokens with 1-based line:col positions. */
#include "ir/lexer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_word(int c) { return is_alpha(c) || is_digit(c) || c == '.'; }
static int hex_val(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void ldmc_lex_init(ldmc_lexer *lx, const char *src, size_t len) {
  memset(lx, 0, sizeof *lx);
  lx->src = src;
  lx->len = len;
  lx->line = 1;
  ldmc_lex_next(lx);
}

static void skip_space(ldmc_lexer *lx) {
  while (lx->pos < lx->len) {
    char c = lx->src[lx->pos];
    if (c == '\n') {
      lx->pos++;
      lx->line++;
      lx->line_start = lx->pos;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      lx->pos++;
    } else if (c == '#') {
      while (lx->pos < lx->len && lx->src[lx->pos] != '\n') lx->pos++;
    } else {
      break;
    }
  }
}

/* Marks the current token bad with a message at byte offset at (same line). */
static bool lex_fail(ldmc_lexer *lx, size_t at, size_t n, const char *expected) {
  ldmc_token bad = {LDMC_TK_BAD, lx->src + at, n, lx->line, at - lx->line_start + 1};
  char found[160]; /* ldmc_tok_describe writes at most 4 * 32 + 8 bytes */
  ldmc_tok_describe(&bad, found, sizeof found);
  snprintf(lx->err, sizeof lx->err, "%zu:%zu: expected %s, found %s", bad.line, bad.col, expected, found);
  lx->tok.kind = LDMC_TK_BAD;
  lx->tok.len = 1;
  lx->pos = lx->len; /* the parser never consumes a bad token, so lexing ends here */
  return false;
}

/* Scans a string starting at the opening quote; validates escapes. Returns
 * false (with the token marked bad) on a malformed string. */
static bool lex_string(ldmc_lexer *lx) {
  size_t i = lx->pos + 1;
  while (i < lx->len) {
    unsigned char c = (unsigned char)lx->src[i];
    if (c == '"') {
      lx->tok.kind = LDMC_TK_STRING;
      lx->tok.len = i + 1 - lx->pos;
      lx->pos = i + 1;
      return true;
    }
    if (c < 0x20 || c == 0x7f) return lex_fail(lx, i, 1, "'\"' to close the string");
    if (c != '\\') {
      i++;
      continue;
    }
    if (i + 1 >= lx->len) return lex_fail(lx, i + 1, 0, "escape sequence");
    char e = lx->src[i + 1];
    if (e == '"' || e == '\\' || e == 'n' || e == 't') {
      i += 2;
      continue;
    }
    if (e != 'x') return lex_fail(lx, i, 2, "escape sequence (\\\" \\\\ \\n \\t \\xHH)");
    int hi = i + 2 < lx->len ? hex_val(lx->src[i + 2]) : -1;
    int lo = i + 3 < lx->len ? hex_val(lx->src[i + 3]) : -1;
    size_t n = i + 4 <= lx->len ? 4 : lx->len - i;
    if (hi < 0 || lo < 0) return lex_fail(lx, i, n, "two hex digits after \\x");
    if (hi == 0 && lo == 0) return lex_fail(lx, i, n, "a nonzero byte (strings hold no NUL)");
    i += 4;
  }
  return lex_fail(lx, lx->len, 0, "'\"' to close the string");
}

void ldmc_lex_next(ldmc_lexer *lx) {
  skip_space(lx);
  lx->err[0] = 0;
  ldmc_token *t = &lx->tok;
  t->p = lx->src + lx->pos;
  t->line = lx->line;
  t->col = lx->pos - lx->line_start + 1;
  t->len = 0;
  if (lx->pos >= lx->len) {
    t->kind = LDMC_TK_EOF;
    return;
  }
  const char *s = lx->src;
  size_t i = lx->pos;
  unsigned char c = (unsigned char)s[i];
  if (is_alpha(c)) {
    while (i < lx->len && is_word((unsigned char)s[i])) i++;
    t->kind = LDMC_TK_IDENT;
  } else if (c == '%' && i + 1 < lx->len && is_word((unsigned char)s[i + 1])) {
    i++;
    while (i < lx->len && is_word((unsigned char)s[i])) i++;
    t->kind = LDMC_TK_VALUE;
  } else if (is_digit(c) || (c == '-' && i + 1 < lx->len && is_word((unsigned char)s[i + 1]))) {
    i++;
    while (i < lx->len) {
      unsigned char d = (unsigned char)s[i];
      bool sign = (d == '+' || d == '-') && (s[i - 1] == 'e' || s[i - 1] == 'E');
      if (!is_word(d) && !sign) break;
      i++;
    }
    t->kind = LDMC_TK_NUMBER;
  } else if (c == '"') {
    lex_string(lx);
    return;
  } else if (strchr("=[](){},", c) && c) {
    i++;
    t->kind = LDMC_TK_PUNCT;
  } else {
    i++;
    t->kind = LDMC_TK_BAD;
  }
  t->len = i - lx->pos;
  lx->pos = i;
}

bool ldmc_tok_is(const ldmc_token *t, ldmc_tok_kind kind, const char *text) {
  return t->kind == kind && strlen(text) == t->len && memcmp(t->p, text, t->len) == 0;
}

bool ldmc_tok_punct(const ldmc_token *t, char c) { return t->kind == LDMC_TK_PUNCT && t->p[0] == c; }

void ldmc_text_escape(const char *s, size_t n, char *buf, size_t len) {
  size_t k = 0;
  if (len == 0) return;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char tmp[8];
    if (c == '"') strcpy(tmp, "\\\"");
    else if (c == '\\') strcpy(tmp, "\\\\");
    else if (c == '\n') strcpy(tmp, "\\n");
    else if (c == '\t') strcpy(tmp, "\\t");
    else if (c < 0x20 || c == 0x7f) snprintf(tmp, sizeof tmp, "\\x%02x", c);
    else tmp[0] = (char)c, tmp[1] = 0;
    size_t m = strlen(tmp);
    if (k + m + 1 > len) break;
    memcpy(buf + k, tmp, m);
    k += m;
  }
  buf[k] = 0;
}

void ldmc_tok_describe(const ldmc_token *t, char *buf, size_t len) {
  if (t->len == 0) { /* EOF, or a bad token at the very end */
    snprintf(buf, len, "end of input");
    return;
  }
  enum { SHOW = 32 };
  char body[4 * SHOW + 8];
  size_t n = t->len;
  ldmc_text_escape(t->p, n > SHOW ? SHOW : n, body, sizeof body);
  snprintf(buf, len, "\"%s%s\"", body, n > SHOW ? "..." : "");
}

char *ldmc_tok_string(const ldmc_token *t) {
  char *out = malloc(t->len > 1 ? t->len - 1 : 1);
  if (!out) return NULL;
  size_t k = 0;
  for (size_t i = 1; i + 1 < t->len; i++) {
    char c = t->p[i];
    if (c == '\\') {
      char e = t->p[++i];
      if (e == 'n') c = '\n';
      else if (e == 't') c = '\t';
      else if (e == 'x') {
        c = (char)(hex_val(t->p[i + 1]) * 16 + hex_val(t->p[i + 2]));
        i += 2;
      } else c = e;
    }
    out[k++] = c;
  }
  out[k] = 0;
  return out;
}

bool ldmc_tok_int64(const ldmc_token *t, int64_t *out) {
  if (t->kind != LDMC_TK_NUMBER) return false;
  size_t i = 0;
  bool neg = t->p[0] == '-';
  if (neg) i++;
  if (i == t->len) return false;
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
  for (; i < t->len; i++) {
    if (!is_digit((unsigned char)t->p[i])) return false;
    uint64_t d = (uint64_t)(t->p[i] - '0');
    if (v > (limit - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return true;
}

/* Checks the float grammar and copies the text NUL-terminated into buf. */
static int float_text(const ldmc_token *t, char *buf, size_t len) {
  if (ldmc_tok_is(t, LDMC_TK_IDENT, "inf")) return 1;
  if (ldmc_tok_is(t, LDMC_TK_NUMBER, "-inf")) return -1;
  if (ldmc_tok_is(t, LDMC_TK_IDENT, "nan")) return 2;
  if (t->kind != LDMC_TK_NUMBER || t->len >= len) return 0;
  const char *p = t->p, *e = t->p + t->len;
  if (*p == '-') p++;
  const char *d0 = p;
  while (p < e && is_digit((unsigned char)*p)) p++;
  if (p == d0) return 0;
  if (p < e && *p == '.') {
    p++;
    while (p < e && is_digit((unsigned char)*p)) p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    const char *x0 = p;
    while (p < e && is_digit((unsigned char)*p)) p++;
    if (p == x0) return 0;
  }
  if (p != e) return 0;
  memcpy(buf, t->p, t->len);
  buf[t->len] = 0;
  return 3;
}

bool ldmc_tok_double(const ldmc_token *t, double *out) {
  char buf[256];
  switch (float_text(t, buf, sizeof buf)) {
    case 1: *out = INFINITY; return true;
    case -1: *out = -INFINITY; return true;
    case 2: *out = NAN; return true;
    case 3: *out = strtod(buf, NULL); return true;
    default: return false;
  }
}

bool ldmc_tok_float(const ldmc_token *t, float *out) {
  char buf[256];
  switch (float_text(t, buf, sizeof buf)) {
    case 1: *out = INFINITY; return true;
    case -1: *out = -INFINITY; return true;
    case 2: *out = NAN; return true;
    case 3: *out = strtof(buf, NULL); return true;
    default: return false;
  }
}
