/* The printer of the IR text form (docs/text-format.md). Attributes are
 * printed generically from ldmc_attr_table, every one in the op's mask, in
 * attrs.def order, so print -> parse -> print is byte-identical. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "support/half.h"

typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool oom;
} sbuf;

static bool sb_reserve(sbuf *b, size_t extra) {
  if (b->oom) return false;
  if (b->n + extra + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (!sb_reserve(b, n)) return;
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if ((size_t)k < sizeof tmp) {
    sb_put(b, tmp, (size_t)k);
    return;
  }
  if (!sb_reserve(b, (size_t)k)) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

/* "...", escaping ", \, newline, tab and other control bytes as \xHH. */
static void sb_quoted(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"') sb_str(b, "\\\"");
    else if (*p == '\\') sb_str(b, "\\\\");
    else if (*p == '\n') sb_str(b, "\\n");
    else if (*p == '\t') sb_str(b, "\\t");
    else if (*p < 0x20 || *p == 0x7f) sb_printf(b, "\\x%02x", *p);
    else sb_put(b, (const char *)p, 1);
  }
  sb_put(b, "\"", 1);
}

static void sb_real(sbuf *b, double v, int digits) {
  if (isnan(v)) sb_str(b, "nan");
  else if (isinf(v)) sb_str(b, v < 0 ? "-inf" : "inf");
  else sb_printf(b, "%.*g", digits, v);
}

static void sb_element(sbuf *b, ldmc_dtype dt, const uint8_t *p) {
  switch (dt) {
    case LDMC_F32: { float f; memcpy(&f, p, 4); sb_real(b, f, 9); break; }
    case LDMC_BF16: { uint16_t h; memcpy(&h, p, 2); sb_real(b, ldmc_bf16_to_f32(h), 9); break; }
    case LDMC_F16: { uint16_t h; memcpy(&h, p, 2); sb_real(b, ldmc_f16_to_f32(h), 9); break; }
    case LDMC_I32: { int32_t v; memcpy(&v, p, 4); sb_printf(b, "%" PRId32, v); break; }
    case LDMC_I64: { int64_t v; memcpy(&v, p, 8); sb_printf(b, "%" PRId64, v); break; }
    case LDMC_PRED: sb_str(b, *p ? "true" : "false"); break;
    case LDMC_F64: { double d; memcpy(&d, p, 8); sb_real(b, d, 17); break; } /* 17 digits: round-trips */
    default: sb_str(b, "?"); break;
  }
}

/* Prints as many elements as both the shape and the data hold (a verified
 * graph has them equal). */
static void sb_literal(sbuf *b, const ldmc_node *n) {
  size_t es = ldmc_dtype_size(n->dtype);
  int64_t numel = 0;
  if (es == 0 || ldmc_shape_numel(&n->shape, es, &numel) != LDMC_OK) numel = 0;
  size_t have = n->attrs.value.data ? n->attrs.value.nbytes / es : 0;
  const uint8_t *d = n->attrs.value.data;
  if (n->shape.rank == 0 && have >= 1) {
    sb_element(b, n->dtype, d);
    return;
  }
  if ((uint64_t)numel < have) have = (size_t)numel;
  sb_put(b, "{", 1);
  for (size_t i = 0; i < have && !b->oom; i++) {
    if (i) sb_put(b, ", ", 2);
    sb_element(b, n->dtype, d + i * es);
  }
  sb_put(b, "}", 1);
}

static void sb_ints(sbuf *b, const ldmc_ints *v) {
  int n = v->n < 0 ? 0 : v->n > LDMC_MAX_RANK ? LDMC_MAX_RANK : v->n;
  sb_put(b, "{", 1);
  for (int i = 0; i < n; i++) sb_printf(b, i ? ",%" PRId64 : "%" PRId64, v->v[i]);
  sb_put(b, "}", 1);
}

static void sb_attr(sbuf *b, const ldmc_node *n, int f) {
  const void *m = (const char *)&n->attrs + ldmc_attr_table[f].offset;
  sb_printf(b, " %s=", ldmc_attr_table[f].name);
  switch (ldmc_attr_table[f].kind) {
    case LDMC_AK_INT: sb_printf(b, "%" PRId64, *(const int64_t *)m); break;
    case LDMC_AK_FLOAT: sb_real(b, *(const double *)m, 17); break;
    case LDMC_AK_INTS: sb_ints(b, (const ldmc_ints *)m); break;
    case LDMC_AK_STRING: sb_quoted(b, *(char *const *)m); break;
    case LDMC_AK_LITERAL: sb_literal(b, n); break;
    case LDMC_AK_COMPARE: sb_str(b, ldmc_compare_name(*(const ldmc_compare *)m)); break;
    case LDMC_AK_REDUCE: sb_str(b, ldmc_reduce_kind_name(*(const ldmc_reduce_kind *)m)); break;
  }
}

/* A name the lexer reads as one identifier prints bare; anything else quoted. */
static bool is_ident(const char *s) {
  if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
  for (; *s; s++)
    if (!(*s == '_' || *s == '.' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
      return false;
  return true;
}

static void sb_node(sbuf *b, const ldmc_node *n, int32_t id) {
  char shape[200];
  int rank_ok = n->shape.rank >= 0 && n->shape.rank <= LDMC_MAX_RANK;
  sb_printf(b, "  %%%" PRId32 " = %s%s %s(", id, ldmc_dtype_name(n->dtype),
            rank_ok ? ldmc_shape_str(&n->shape, shape, sizeof shape) : "[?]", ldmc_op_name(n->op));
  for (int i = 0; i < n->n_operands; i++) sb_printf(b, i ? ", %%%" PRId32 : "%%%" PRId32, n->operands[i]);
  sb_put(b, ")", 1);
  uint64_t mask = (unsigned)n->op < LDMC_OP_COUNT ? ldmc_op_table[n->op].attr_mask : 0;
  for (int f = 0; f < LDMC_ATTR_COUNT; f++)
    if (mask >> f & 1u) sb_attr(b, n, f);
  if (n->scope && *n->scope) {
    sb_str(b, " scope=");
    sb_quoted(b, n->scope);
  }
  sb_put(b, "\n", 1);
}

char *ldmc_graph_print(const ldmc_graph *g) {
  sbuf b = {0};
  sb_str(&b, "graph ");
  if (is_ident(g->name)) sb_str(&b, g->name);
  else sb_quoted(&b, g->name);
  sb_str(&b, " {\n");
  for (int32_t i = 0; i < g->n_nodes && !b.oom; i++) sb_node(&b, &g->nodes[i], i);
  sb_str(&b, "  return");
  for (int32_t i = 0; i < g->n_outputs; i++) {
    sb_printf(&b, i ? ", %%%" PRId32 " " : " %%%" PRId32 " ", g->outputs[i]);
    sb_quoted(&b, g->output_names[i]);
  }
  sb_str(&b, "\n}\n");
  if (b.oom) {
    free(b.p);
    ldmc_error(LDMC_ERR_NOMEM, "out of memory printing graph '%s'", g->name ? g->name : "");
    return NULL;
  }
  return b.p;
}
