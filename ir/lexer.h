/* Tokens of the IR text form (ir-internal; used by parse.c). The grammar is in
 * docs/text-format.md. The lexer never reads past len and never allocates. */
#ifndef LDMC_IR_LEXER_H
#define LDMC_IR_LEXER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ldmc_tok_kind {
  LDMC_TK_EOF,
  LDMC_TK_IDENT,  /* [A-Za-z_][A-Za-z0-9_.]* */
  LDMC_TK_VALUE,  /* %[A-Za-z0-9_.]+ */
  LDMC_TK_NUMBER, /* -?[0-9A-Za-z_.]... (validated by the parser) or -inf */
  LDMC_TK_STRING, /* "..." with escapes, validated; text includes the quotes */
  LDMC_TK_PUNCT,  /* one of = [ ] ( ) { } , */
  LDMC_TK_BAD     /* anything else; may carry a lexer message */
} ldmc_tok_kind;

typedef struct ldmc_token {
  ldmc_tok_kind kind;
  const char *p;
  size_t len;
  size_t line, col; /* 1-based, columns count bytes */
} ldmc_token;

typedef struct ldmc_lexer {
  const char *src;
  size_t len, pos, line, line_start;
  ldmc_token tok;   /* the current (lookahead) token */
  char err[192];    /* set when tok is LDMC_TK_BAD with a more precise message */
} ldmc_lexer;

void ldmc_lex_init(ldmc_lexer *lx, const char *src, size_t len);
void ldmc_lex_next(ldmc_lexer *lx);

bool ldmc_tok_is(const ldmc_token *t, ldmc_tok_kind kind, const char *text);
bool ldmc_tok_punct(const ldmc_token *t, char c);
/* Writes how an error message names a token: `"text"` (escaped, shortened) or
 * `end of input`. */
void ldmc_tok_describe(const ldmc_token *t, char *buf, size_t len);
/* Appends s[0..n) to buf as the body of a quoted string (escapes, bounded). */
void ldmc_text_escape(const char *s, size_t n, char *buf, size_t len);
/* Decodes a validated LDMC_TK_STRING token into a malloc'd C string (NULL on OOM). */
char *ldmc_tok_string(const ldmc_token *t);

/* Number grammar: -?[0-9]+ for integers; -?[0-9]+(.[0-9]*)?([eE][+-]?[0-9]+)?,
 * inf, -inf, nan for floats. Return false when the token is not one. */
bool ldmc_tok_int64(const ldmc_token *t, int64_t *out);
bool ldmc_tok_double(const ldmc_token *t, double *out);
bool ldmc_tok_float(const ldmc_token *t, float *out);

#endif
