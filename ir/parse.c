/* The parser of the IR text form (docs/text-format.md). Recursive descent over
 * flat constructs only (no nesting), so hostile input cannot exhaust the stack;
 * every loop consumes a token or fails; every allocation is bounded by the
 * input length. Attributes are read generically through ldmc_attr_table. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/lexer.h"
#include "support/half.h"

typedef struct name_slot {
  const char *p; /* NULL = empty slot */
  size_t len;
  int32_t id;
} name_slot;

/* Names to ids, open addressing; keys point into the input or into strings
 * the graph owns, which outlive the table. */
typedef struct name_set {
  name_slot *slots;
  size_t n_slots, n_used; /* n_slots is a power of two */
} name_set;

typedef struct parser {
  ldmc_lexer lx;
  ldmc_graph *g;
  name_set values;            /* %name -> node id */
  name_set params;            /* parameter name -> node id */
  name_set outputs;           /* output name -> output index */
  ldmc_token *node_toks;      /* the %name token of each node, for messages */
  size_t node_toks_cap;
  int32_t *ops;               /* operand scratch of the current node */
  ldmc_dtype *op_dtypes;
  ldmc_shape *op_shapes;
  size_t ops_cap;
} parser;

/* Per-node context the literal reader needs. */
typedef struct node_ctx {
  ldmc_token name, op_tok;
  ldmc_op op;
  ldmc_dtype dtype;
  ldmc_shape shape;
  int64_t numel;
} node_ctx;

#define TOK (&P->lx.tok)

/* "line:col: expected <what>, found <token>" at the current token. */
__attribute__((format(printf, 2, 3))) static ldmc_status fail(parser *P, const char *fmt, ...) {
  if (TOK->kind == LDMC_TK_BAD && P->lx.err[0]) return ldmc_error(LDMC_ERR_PARSE, "%s", P->lx.err);
  char what[512], found[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  ldmc_tok_describe(TOK, found, sizeof found);
  return ldmc_error(LDMC_ERR_PARSE, "%zu:%zu: expected %s, found %s", TOK->line, TOK->col, what, found);
}

static void next(parser *P) { ldmc_lex_next(&P->lx); }

static ldmc_status expect_punct(parser *P, char c, const char *what) {
  if (!ldmc_tok_punct(TOK, c)) return fail(P, "%s", what);
  next(P);
  return LDMC_OK;
}

/* ---- name sets ---- */
static uint64_t hash_span(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return h;
}

static int32_t name_find(const name_set *S, const char *p, size_t n) {
  if (!S->n_slots) return -1;
  for (size_t i = hash_span(p, n) & (S->n_slots - 1);; i = (i + 1) & (S->n_slots - 1)) {
    const name_slot *s = &S->slots[i];
    if (!s->p) return -1;
    if (s->len == n && memcmp(s->p, p, n) == 0) return s->id;
  }
}

static void slot_put(name_slot *slots, size_t n_slots, name_slot s) {
  size_t i = hash_span(s.p, s.len) & (n_slots - 1);
  while (slots[i].p) i = (i + 1) & (n_slots - 1);
  slots[i] = s;
}

static ldmc_status name_insert(name_set *S, const char *p, size_t n, int32_t id) {
  if ((S->n_used + 1) * 2 > S->n_slots) { /* keep the load under one half */
    size_t cap = S->n_slots ? S->n_slots * 2 : 64;
    name_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) return ldmc_error(LDMC_ERR_NOMEM, "out of memory reading names");
    for (size_t i = 0; i < S->n_slots; i++)
      if (S->slots[i].p) slot_put(slots, cap, S->slots[i]);
    free(S->slots);
    S->slots = slots;
    S->n_slots = cap;
  }
  slot_put(S->slots, S->n_slots, (name_slot){p, n, id});
  S->n_used++;
  return LDMC_OK;
}

/* A %name operand or output reference: must name an earlier node. */
static ldmc_status parse_ref(parser *P, const char *what, int32_t *id) {
  if (TOK->kind != LDMC_TK_VALUE) return fail(P, "%s", what);
  *id = name_find(&P->values, TOK->p + 1, TOK->len - 1);
  if (*id < 0) return fail(P, "a value defined above");
  next(P);
  return LDMC_OK;
}

/* ---- attribute values ---- */
static ldmc_status parse_int(parser *P, int64_t *out) {
  if (!ldmc_tok_int64(TOK, out)) return fail(P, "integer");
  next(P);
  return LDMC_OK;
}

static ldmc_status parse_ints(parser *P, ldmc_ints *v) {
  LDMC_TRY(expect_punct(P, '{', "'{'"));
  v->n = 0;
  if (ldmc_tok_punct(TOK, '}')) {
    next(P);
    return LDMC_OK;
  }
  for (;;) {
    LDMC_TRY(parse_int(P, &v->v[v->n]));
    v->n++;
    if (!ldmc_tok_punct(TOK, ',')) break;
    if (v->n == LDMC_MAX_RANK) return fail(P, "'}' (at most %d integers)", LDMC_MAX_RANK);
    next(P);
  }
  return expect_punct(P, '}', "',' or '}'");
}

static ldmc_status parse_element(parser *P, ldmc_dtype dt, uint8_t *dst) {
  switch (dt) {
    case LDMC_F32:
    case LDMC_BF16:
    case LDMC_F16: {
      float f;
      if (!ldmc_tok_float(TOK, &f)) return fail(P, "%s number", ldmc_dtype_name(dt));
      if (dt == LDMC_F32) memcpy(dst, &f, 4);
      else {
        uint16_t h = dt == LDMC_BF16 ? ldmc_f32_to_bf16(f) : ldmc_f32_to_f16(f);
        memcpy(dst, &h, 2);
      }
      break;
    }
    case LDMC_I32:
    case LDMC_I64: {
      int64_t v;
      if (!ldmc_tok_int64(TOK, &v) || (dt == LDMC_I32 && (v < INT32_MIN || v > INT32_MAX)))
        return fail(P, "%s integer", ldmc_dtype_name(dt));
      if (dt == LDMC_I32) {
        int32_t w = (int32_t)v;
        memcpy(dst, &w, 4);
      } else {
        memcpy(dst, &v, 8);
      }
      break;
    }
    case LDMC_F64: {
      double d;
      if (!ldmc_tok_double(TOK, &d)) return fail(P, "f64 number");
      memcpy(dst, &d, 8);
      break;
    }
    case LDMC_PRED:
      if (ldmc_tok_is(TOK, LDMC_TK_IDENT, "true")) *dst = 1;
      else if (ldmc_tok_is(TOK, LDMC_TK_IDENT, "false")) *dst = 0;
      else return fail(P, "'true' or 'false'");
      break;
    default:
      return fail(P, "a valid dtype");
  }
  next(P);
  return LDMC_OK;
}

/* Scalars are bare; other ranks a flat row-major list in braces. */
static ldmc_status parse_literal(parser *P, const node_ctx *c, ldmc_literal *lit) {
  char ty[200];
  snprintf(ty, sizeof ty, "%s", ldmc_dtype_name(c->dtype));
  ldmc_shape_str(&c->shape, ty + strlen(ty), sizeof ty - strlen(ty));
  /* Each element takes at least one character, so a longer literal cannot be here. */
  if ((uint64_t)c->numel > (uint64_t)P->lx.len)
    return fail(P, "a literal for %s (%" PRId64 " elements) within the input's %zu bytes", ty, c->numel, P->lx.len);
  size_t es = ldmc_dtype_size(c->dtype), nbytes = (size_t)c->numel * es;
  uint8_t *data = nbytes ? malloc(nbytes) : NULL;
  if (nbytes && !data) return ldmc_error(LDMC_ERR_NOMEM, "out of memory for a %zu-byte literal", nbytes);
  ldmc_status st = LDMC_OK;
  if (c->shape.rank == 0) {
    st = parse_element(P, c->dtype, data);
  } else if ((st = expect_punct(P, '{', "'{'")) == LDMC_OK) {
    for (int64_t i = 0; i < c->numel && st == LDMC_OK; i++) {
      if (i > 0 && !ldmc_tok_punct(TOK, ','))
        st = fail(P, "',' (%s has %" PRId64 " elements)", ty, c->numel);
      else {
        if (i > 0) next(P);
        st = parse_element(P, c->dtype, data + (size_t)i * es);
      }
    }
    if (st == LDMC_OK && !ldmc_tok_punct(TOK, '}')) st = fail(P, "'}' (%s has %" PRId64 " elements)", ty, c->numel);
    if (st == LDMC_OK) next(P);
  }
  if (st != LDMC_OK) {
    free(data);
    return st;
  }
  lit->data = data;
  lit->nbytes = nbytes;
  return LDMC_OK;
}

static ldmc_status parse_enum(parser *P, const char *(*name_of)(int), int count, const char *what, int *out) {
  if (TOK->kind == LDMC_TK_IDENT)
    for (int i = 0; i < count; i++)
      if (ldmc_tok_is(TOK, LDMC_TK_IDENT, name_of(i))) {
        *out = i;
        next(P);
        return LDMC_OK;
      }
  char list[128] = "";
  for (int i = 0; i < count; i++) {
    strcat(list, i ? ", " : "");
    strcat(list, name_of(i));
  }
  return fail(P, "%s (%s)", what, list);
}
static const char *cmp_name(int i) { return ldmc_compare_name((ldmc_compare)i); }
static const char *red_name(int i) { return ldmc_reduce_kind_name((ldmc_reduce_kind)i); }

static ldmc_status parse_string(parser *P, const char *what, char **out) {
  if (TOK->kind != LDMC_TK_STRING) return fail(P, "%s", what);
  char *s = ldmc_tok_string(TOK);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "out of memory reading a string");
  free(*out);
  *out = s;
  next(P);
  return LDMC_OK;
}

static ldmc_status parse_attr_value(parser *P, const node_ctx *c, ldmc_attr_field f, ldmc_attrs *a) {
  void *m = (char *)a + ldmc_attr_table[f].offset;
  switch (ldmc_attr_table[f].kind) {
    case LDMC_AK_INT: return parse_int(P, (int64_t *)m);
    case LDMC_AK_FLOAT:
      if (!ldmc_tok_double(TOK, (double *)m)) return fail(P, "number");
      next(P);
      return LDMC_OK;
    case LDMC_AK_INTS: return parse_ints(P, (ldmc_ints *)m);
    case LDMC_AK_STRING: return parse_string(P, "string", (char **)m);
    case LDMC_AK_LITERAL: return parse_literal(P, c, (ldmc_literal *)m);
    case LDMC_AK_COMPARE: {
      int v = 0; /* (gcc -O3 cannot see parse_enum sets it on success) */
      LDMC_TRY(parse_enum(P, cmp_name, LDMC_CMP_COUNT, "comparison direction", &v));
      *(ldmc_compare *)m = (ldmc_compare)v;
      return LDMC_OK;
    }
    case LDMC_AK_REDUCE: {
      int v = 0;
      LDMC_TRY(parse_enum(P, red_name, LDMC_REDUCE_COUNT, "reduction", &v));
      *(ldmc_reduce_kind *)m = (ldmc_reduce_kind)v;
      return LDMC_OK;
    }
  }
  return ldmc_error(LDMC_ERR_INTERNAL, "attribute kind %d unknown", (int)ldmc_attr_table[f].kind);
}

/* key=value pairs in any order, each at most once, only keys in the op's mask. */
static ldmc_status parse_attrs(parser *P, const node_ctx *c, ldmc_attrs *a, char **scope) {
  uint64_t mask = ldmc_op_table[c->op].attr_mask, seen = 0;
  bool seen_scope = false;
  while (TOK->kind == LDMC_TK_IDENT && !ldmc_tok_is(TOK, LDMC_TK_IDENT, "return")) {
    ldmc_attr_field f = LDMC_ATTR_COUNT;
    bool is_scope = ldmc_tok_is(TOK, LDMC_TK_IDENT, "scope");
    if (!is_scope && (!ldmc_attr_lookup(TOK->p, TOK->len, &f) || !(mask >> f & 1u))) {
      char list[512] = "";
      for (int i = 0; i < LDMC_ATTR_COUNT; i++)
        if (mask >> i & 1u) {
          strcat(list, ldmc_attr_table[i].name);
          strcat(list, ", ");
        }
      return fail(P, "an attribute of %s (%sscope)", ldmc_op_name(c->op), list);
    }
    if (is_scope ? seen_scope : (seen >> f & 1u))
      return fail(P, "%s= only once", is_scope ? "scope" : ldmc_attr_table[f].name);
    next(P);
    LDMC_TRY(expect_punct(P, '=', "'='"));
    if (is_scope) {
      seen_scope = true;
      LDMC_TRY(parse_string(P, "string", scope));
    } else {
      seen |= UINT64_C(1) << f;
      LDMC_TRY(parse_attr_value(P, c, f, a));
    }
  }
  return LDMC_OK;
}

static ldmc_status grow_operands(parser *P) {
  size_t cap = P->ops_cap ? P->ops_cap * 2 : 16;
  int32_t *ops = realloc(P->ops, cap * sizeof *ops);
  if (ops) P->ops = ops;
  ldmc_dtype *dts = realloc(P->op_dtypes, cap * sizeof *dts);
  if (dts) P->op_dtypes = dts;
  ldmc_shape *shs = realloc(P->op_shapes, cap * sizeof *shs);
  if (shs) P->op_shapes = shs;
  if (!ops || !dts || !shs) return ldmc_error(LDMC_ERR_NOMEM, "out of memory reading operands");
  P->ops_cap = cap;
  return LDMC_OK;
}

/* DTYPE[DIMS] */
static ldmc_status parse_type(parser *P, node_ctx *c) {
  ldmc_token dt_tok = *TOK;
  if (TOK->kind != LDMC_TK_IDENT || !ldmc_dtype_parse(TOK->p, TOK->len, &c->dtype))
    return fail(P, "dtype (f32, bf16, f16, f64, i32, i64, pred)");
  next(P);
  LDMC_TRY(expect_punct(P, '[', "'['"));
  c->shape.rank = 0;
  if (!ldmc_tok_punct(TOK, ']')) {
    for (;;) {
      int64_t d;
      if (!ldmc_tok_int64(TOK, &d) || d < 0) return fail(P, "dimension (an integer >= 0)");
      c->shape.dims[c->shape.rank++] = d;
      next(P);
      if (!ldmc_tok_punct(TOK, ',')) break;
      if (c->shape.rank == LDMC_MAX_RANK) return fail(P, "']' (rank is at most %d)", LDMC_MAX_RANK);
      next(P);
    }
  }
  LDMC_TRY(expect_punct(P, ']', "',' or ']'"));
  ldmc_status st = ldmc_shape_numel(&c->shape, ldmc_dtype_size(c->dtype), &c->numel);
  if (st != LDMC_OK) ldmc_error_prefix("%zu:%zu: ", dt_tok.line, dt_tok.col);
  return st;
}

/* "%name" of a node for messages, shortened. */
static const char *tok_name(const ldmc_token *t, char *buf, size_t len) {
  snprintf(buf, len, "%.*s%s", t->len > 64 ? 64 : (int)t->len, t->p, t->len > 64 ? "..." : "");
  return buf;
}

/* The op's rule, then the declared type against the inferred one, then the
 * parameter name (which verify requires non-empty and unique). */
static ldmc_status check_node(parser *P, const node_ctx *c, int n, const ldmc_attrs *a) {
  char nm[80];
  ldmc_type_query q = {.op = c->op, .attrs = a, .n_operands = n, .operand_dtypes = P->op_dtypes,
                       .operand_shapes = P->op_shapes, .dtype = c->dtype, .shape = c->shape};
  ldmc_status st = ldmc_infer_type(&q);
  if (st != LDMC_OK) {
    ldmc_error_prefix("%zu:%zu: ", c->name.line, c->name.col);
    return st;
  }
  if (q.dtype != c->dtype || !ldmc_shape_equal(&q.shape, &c->shape)) {
    char want[160], got[160];
    ldmc_shape_str(&c->shape, want, sizeof want);
    ldmc_shape_str(&q.shape, got, sizeof got);
    return ldmc_error(LDMC_ERR_INVALID, "%zu:%zu: %s %s: declared %s%s but the operands give %s%s", c->name.line,
                      c->name.col, tok_name(&c->name, nm, sizeof nm), ldmc_op_name(c->op), ldmc_dtype_name(c->dtype),
                      want, ldmc_dtype_name(q.dtype), got);
  }
  if (c->op != LDMC_OP_PARAMETER) return LDMC_OK;
  if (!a->name || !a->name[0])
    return ldmc_error(LDMC_ERR_INVALID, "%zu:%zu: %s parameter: name is empty", c->name.line, c->name.col,
                      tok_name(&c->name, nm, sizeof nm));
  int32_t prev = name_find(&P->params, a->name, strlen(a->name));
  if (prev >= 0) {
    char esc[160], other[80];
    ldmc_text_escape(a->name, strlen(a->name) > 64 ? 64 : strlen(a->name), esc, sizeof esc);
    return ldmc_error(LDMC_ERR_INVALID, "%zu:%zu: %s parameter: name \"%s\" is already used by %s", c->name.line,
                      c->name.col, tok_name(&c->name, nm, sizeof nm), esc, tok_name(&P->node_toks[prev], other, sizeof other));
  }
  return LDMC_OK;
}

/* %NAME = DTYPE[DIMS] OP(OPERANDS) ATTRS... */
static ldmc_status parse_node(parser *P) {
  node_ctx c = {.name = *TOK};
  if (name_find(&P->values, TOK->p + 1, TOK->len - 1) >= 0) return fail(P, "a name not defined before");
  next(P);
  LDMC_TRY(expect_punct(P, '=', "'='"));
  LDMC_TRY(parse_type(P, &c));
  c.op_tok = *TOK;
  if (TOK->kind != LDMC_TK_IDENT || !ldmc_op_lookup(TOK->p, TOK->len, &c.op)) return fail(P, "op name");
  next(P);
  LDMC_TRY(expect_punct(P, '(', "'('"));
  int n = 0;
  if (!ldmc_tok_punct(TOK, ')')) {
    for (;;) {
      if ((size_t)n == P->ops_cap) LDMC_TRY(grow_operands(P));
      LDMC_TRY(parse_ref(P, n ? "operand" : "operand or ')'", &P->ops[n]));
      P->op_dtypes[n] = P->g->nodes[P->ops[n]].dtype;
      P->op_shapes[n] = P->g->nodes[P->ops[n]].shape;
      n++;
      if (!ldmc_tok_punct(TOK, ',')) break;
      if (n == INT32_MAX) return fail(P, "')' (too many operands)");
      next(P);
    }
  }
  LDMC_TRY(expect_punct(P, ')', "',' or ')'"));

  ldmc_attrs a = {0};
  char *scope = NULL;
  ldmc_status st = parse_attrs(P, &c, &a, &scope);
  if (st == LDMC_OK) st = check_node(P, &c, n, &a);
  if (st == LDMC_OK) {
    /* The literal moves into the node rather than being copied. */
    ldmc_attrs no_value = a;
    no_value.value = (ldmc_literal){0};
    int32_t id = ldmc_graph_add(P->g, c.op, c.dtype, &c.shape, n, P->ops, &no_value, scope);
    if (id < 0) {
      st = LDMC_ERR_NOMEM;
    } else {
      ldmc_node *node = &P->g->nodes[id];
      node->attrs.value = a.value;
      a.value = (ldmc_literal){0};
      st = name_insert(&P->values, c.name.p + 1, c.name.len - 1, id);
      if (st == LDMC_OK && c.op == LDMC_OP_PARAMETER)
        st = name_insert(&P->params, node->attrs.name, strlen(node->attrs.name), id);
      if (st == LDMC_OK && (size_t)id >= P->node_toks_cap) {
        size_t cap = P->node_toks_cap ? P->node_toks_cap * 2 : 64;
        ldmc_token *t = realloc(P->node_toks, cap * sizeof *t);
        if (!t) st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
        else P->node_toks = t, P->node_toks_cap = cap;
      }
      if (st == LDMC_OK) P->node_toks[id] = c.name;
    }
  }
  ldmc_attrs_free(&a);
  free(scope);
  LDMC_TRY(st);
  /* Checked after the node's own type, so a type error shows before what follows. */
  if (TOK->kind != LDMC_TK_VALUE && !ldmc_tok_is(TOK, LDMC_TK_IDENT, "return"))
    return fail(P, "attribute, next node or 'return'");
  return LDMC_OK;
}

/* return %a "name", %b "name" */
static ldmc_status parse_return(parser *P) {
  next(P); /* 'return' */
  if (TOK->kind != LDMC_TK_VALUE) return expect_punct(P, '}', "output value or '}'");
  for (;;) {
    int32_t id = -1;
    char *name = NULL;
    LDMC_TRY(parse_ref(P, "output value", &id));
    ldmc_token name_tok = *TOK;
    LDMC_TRY(parse_string(P, "output name string", &name));
    int32_t prev = name_find(&P->outputs, name, strlen(name));
    ldmc_status st = LDMC_OK;
    if (!name[0]) {
      st = ldmc_error(LDMC_ERR_INVALID, "%zu:%zu: output name is empty", name_tok.line, name_tok.col);
    } else if (prev >= 0) {
      char esc[160];
      ldmc_text_escape(name, strlen(name) > 64 ? 64 : strlen(name), esc, sizeof esc);
      st = ldmc_error(LDMC_ERR_INVALID, "%zu:%zu: output name \"%s\" is already used by output %d", name_tok.line,
                      name_tok.col, esc, (int)prev);
    }
    if (st == LDMC_OK) st = ldmc_graph_add_output(P->g, id, name);
    free(name);
    LDMC_TRY(st);
    int32_t k = P->g->n_outputs - 1;
    LDMC_TRY(name_insert(&P->outputs, P->g->output_names[k], strlen(P->g->output_names[k]), k));
    if (!ldmc_tok_punct(TOK, ',')) break;
    next(P);
  }
  return expect_punct(P, '}', "',' or '}'");
}

static ldmc_status parse_graph(parser *P) {
  if (!ldmc_tok_is(TOK, LDMC_TK_IDENT, "graph")) return fail(P, "'graph'");
  next(P);
  char *name = NULL;
  if (TOK->kind == LDMC_TK_IDENT) {
    name = strndup(TOK->p, TOK->len);
    if (!name) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    next(P);
  } else {
    LDMC_TRY(parse_string(P, "graph name", &name));
  }
  P->g = ldmc_graph_new(name);
  free(name);
  if (!P->g) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  LDMC_TRY(expect_punct(P, '{', "'{'"));
  while (TOK->kind == LDMC_TK_VALUE) LDMC_TRY(parse_node(P));
  if (!ldmc_tok_is(TOK, LDMC_TK_IDENT, "return")) return fail(P, "node or 'return'");
  LDMC_TRY(parse_return(P));
  if (TOK->kind != LDMC_TK_EOF) return fail(P, "end of input");
  return LDMC_OK;
}

ldmc_status ldmc_graph_parse(const char *text, size_t len, ldmc_graph **out) {
  *out = NULL;
  if (!text && len) return ldmc_error(LDMC_ERR_INVALID, "ldmc_graph_parse: NULL text");
  parser P = {0};
  ldmc_lex_init(&P.lx, text ? text : "", len);
  ldmc_status st = parse_graph(&P);
  free(P.values.slots);
  free(P.params.slots);
  free(P.outputs.slots);
  free(P.node_toks);
  free(P.ops);
  free(P.op_dtypes);
  free(P.op_shapes);
  if (st != LDMC_OK) {
    ldmc_graph_free(P.g);
    return st;
  }
  *out = P.g;
  return LDMC_OK;
}
