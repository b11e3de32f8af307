/* The graph part of the .ldmc reader: ops, dtypes, attributes, comparison
 * directions and reduce kinds arrive as names and are looked up in the
 * tables; anything unknown, misplaced or malformed is an error naming the
 * node (%id op) and the attribute. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/module_format.h"

static ldmc_status bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static ldmc_status bad(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ldmc_error(LDMC_ERR_FORMAT, "%s", msg);
}

ldmc_status ldmc_pb_strdup(ProtobufCBinaryData b, const char *what, char **out) {
  *out = NULL;
  if (b.len && memchr(b.data, 0, b.len)) return bad("%s contains a NUL byte", what);
  char *s = malloc(b.len + 1);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "out of memory reading %s", what);
  if (b.len) memcpy(s, b.data, b.len);
  s[b.len] = 0;
  *out = s;
  return LDMC_OK;
}

static bool lookup_name(ProtobufCBinaryData b, const char *(*name_of)(int), int count, int *out) {
  for (int i = 0; i < count; i++) {
    const char *n = name_of(i);
    if (strlen(n) == b.len && memcmp(n, b.data, b.len) == 0) {
      *out = i;
      return true;
    }
  }
  return false;
}
static const char *compare_name(int i) { return ldmc_compare_name((ldmc_compare)i); }
static const char *reduce_name(int i) { return ldmc_reduce_kind_name((ldmc_reduce_kind)i); }

static const char *const k_case_names[] = {
    [LDMC__ATTR__VALUE__NOT_SET] = "nothing", [LDMC__ATTR__VALUE_I] = "an int",     [LDMC__ATTR__VALUE_F] = "a float",
    [LDMC__ATTR__VALUE_INTS] = "an int list", [LDMC__ATTR__VALUE_S] = "a string", [LDMC__ATTR__VALUE_RAW] = "inline bytes",
    [LDMC__ATTR__VALUE_BLOB] = "a chunked blob"};

static const char *case_name(Ldmc__Attr__ValueCase c) {
  return (unsigned)c < sizeof k_case_names / sizeof k_case_names[0] && k_case_names[c] ? k_case_names[c] : "an unknown value";
}

/* One attribute into *a. where = "node %7 convolution". nbytes: the node's
 * dtype x shape size, which a literal must match. */
static ldmc_status read_attr(const Ldmc__Attr *pa, int32_t id, uint64_t mask, uint64_t *seen, uint64_t nbytes,
                             ldmc_blob_cb on_blob, void *ctx, const char *where, ldmc_attrs *a) {
  ldmc_attr_field f;
  int nlen = pa->name.len > 64 ? 64 : (int)pa->name.len;
  if (!ldmc_attr_lookup((const char *)pa->name.data, pa->name.len, &f))
    return bad("%s: unknown attribute '%.*s'", where, nlen, (const char *)pa->name.data);
  const ldmc_attr_info *ai = &ldmc_attr_table[f];
  if (!(mask >> f & 1)) return bad("%s: attribute '%s' does not belong to this op", where, ai->name);
  if (*seen >> f & 1) return bad("%s: attribute '%s' appears twice", where, ai->name);
  *seen |= UINT64_C(1) << f;
  void *member = (char *)a + ai->offset;
  Ldmc__Attr__ValueCase want;
  switch (ai->kind) {
    case LDMC_AK_INT: want = LDMC__ATTR__VALUE_I; break;
    case LDMC_AK_FLOAT: want = LDMC__ATTR__VALUE_F; break;
    case LDMC_AK_INTS: want = LDMC__ATTR__VALUE_INTS; break;
    case LDMC_AK_LITERAL:
      want = pa->value_case == LDMC__ATTR__VALUE_BLOB ? LDMC__ATTR__VALUE_BLOB : LDMC__ATTR__VALUE_RAW;
      break;
    default: want = LDMC__ATTR__VALUE_S; break;
  }
  if (pa->value_case != want)
    return bad("%s: attribute '%s' holds %s, expected %s", where, ai->name, case_name(pa->value_case), case_name(want));
  switch (ai->kind) {
    case LDMC_AK_INT: memcpy(member, &pa->i, sizeof(int64_t)); break;
    case LDMC_AK_FLOAT: memcpy(member, &pa->f, sizeof(double)); break;
    case LDMC_AK_INTS: {
      ldmc_ints *v = member;
      if (pa->ints->n_v > LDMC_MAX_RANK)
        return bad("%s: attribute '%s' has %zu values, more than %d", where, ai->name, pa->ints->n_v, LDMC_MAX_RANK);
      v->n = (int)pa->ints->n_v;
      for (size_t i = 0; i < pa->ints->n_v; i++) v->v[i] = pa->ints->v[i];
      break;
    }
    case LDMC_AK_STRING: {
      char what[128];
      snprintf(what, sizeof what, "%s: attribute '%s'", where, ai->name);
      LDMC_TRY(ldmc_pb_strdup(pa->s, what, (char **)member));
      break;
    }
    case LDMC_AK_COMPARE:
    case LDMC_AK_REDUCE: {
      int k;
      bool cmp = ai->kind == LDMC_AK_COMPARE;
      if (!lookup_name(pa->s, cmp ? compare_name : reduce_name, cmp ? LDMC_CMP_COUNT : LDMC_REDUCE_COUNT, &k))
        return bad("%s: attribute '%s' has unknown value '%.*s'", where, ai->name, pa->s.len > 32 ? 32 : (int)pa->s.len,
                   (const char *)pa->s.data);
      if (cmp) *(ldmc_compare *)member = (ldmc_compare)k;
      else *(ldmc_reduce_kind *)member = (ldmc_reduce_kind)k;
      break;
    }
    case LDMC_AK_LITERAL: {
      ldmc_literal *lit = member;
      if (pa->value_case == LDMC__ATTR__VALUE_BLOB) {
        LDMC_TRY(on_blob(ctx, id, pa->blob, nbytes));
        lit->nbytes = (size_t)nbytes; /* filled by the caller once all checks pass */
        break;
      }
      if (pa->raw.len != nbytes)
        return bad("%s: constant holds %zu bytes, but its dtype and shape need %" PRIu64, where, pa->raw.len, nbytes);
      if (nbytes) {
        if (!(lit->data = malloc(nbytes))) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
        memcpy(lit->data, pa->raw.data, nbytes);
        lit->nbytes = (size_t)nbytes;
      }
      break;
    }
  }
  return LDMC_OK;
}

static ldmc_status read_node(ldmc_graph *g, const Ldmc__Node *pn, int32_t id, ldmc_blob_cb on_blob, void *ctx) {
  char where[96];
  ldmc_op op;
  ldmc_dtype dt;
  snprintf(where, sizeof where, "node %%%d", (int)id);
  if (!ldmc_op_lookup(pn->op, strlen(pn->op), &op)) return bad("%s: unknown op '%.32s'", where, pn->op);
  snprintf(where, sizeof where, "node %%%d %s", (int)id, ldmc_op_name(op));
  if (!ldmc_dtype_parse(pn->dtype, strlen(pn->dtype), &dt)) return bad("%s: unknown dtype '%.32s'", where, pn->dtype);
  if (pn->n_dims > LDMC_MAX_RANK) return bad("%s: rank %zu is more than %d", where, pn->n_dims, LDMC_MAX_RANK);
  ldmc_shape shape = ldmc_shape_make((int)pn->n_dims, pn->dims);
  int64_t numel;
  if (ldmc_shape_numel(&shape, ldmc_dtype_size(dt), &numel) != LDMC_OK) {
    ldmc_error_prefix("%s: ", where);
    return LDMC_ERR_FORMAT;
  }
  uint64_t nbytes = (uint64_t)numel * ldmc_dtype_size(dt);
  if (pn->n_operands > (size_t)INT32_MAX) return bad("%s: too many operands", where);
  for (size_t i = 0; i < pn->n_operands; i++)
    if (pn->operands[i] < 0 || pn->operands[i] >= id)
      return bad("%s: operand %zu refers to %%%d, which is not an earlier node", where, i, (int)pn->operands[i]);
  uint64_t mask = ldmc_op_table[op].attr_mask, seen = 0;
  ldmc_attrs attrs = {0};
  char *scope = NULL;
  ldmc_status s = LDMC_OK;
  for (size_t i = 0; i < pn->n_attrs && s == LDMC_OK; i++)
    s = read_attr(pn->attrs[i], id, mask, &seen, nbytes, on_blob, ctx, where, &attrs);
  if (s == LDMC_OK) {
    char what[128];
    snprintf(what, sizeof what, "%s: scope", where);
    s = ldmc_pb_strdup(pn->scope, what, &scope);
  }
  if (s == LDMC_OK && ldmc_graph_add(g, op, dt, &shape, (int)pn->n_operands, pn->operands, NULL, scope) < 0)
    s = LDMC_ERR_NOMEM;
  free(scope);
  if (s != LDMC_OK) {
    ldmc_attrs_free(&attrs);
    return s;
  }
  g->nodes[id].attrs = attrs; /* moved, not copied: constants can be large */
  return LDMC_OK;
}

ldmc_status ldmc_graph_decode_pb(const Ldmc__Graph *pg, ldmc_blob_cb on_blob, void *ctx, ldmc_graph **out) {
  *out = NULL;
  char *name;
  LDMC_TRY(ldmc_pb_strdup(pg->name, "graph name", &name));
  ldmc_graph *g = ldmc_graph_new(name);
  free(name);
  if (!g) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  ldmc_status s = LDMC_OK;
  if (pg->n_nodes > (size_t)INT32_MAX - 1) s = bad("graph has %zu nodes, too many", pg->n_nodes);
  for (size_t i = 0; i < pg->n_nodes && s == LDMC_OK; i++) s = read_node(g, pg->nodes[i], (int32_t)i, on_blob, ctx);
  for (size_t i = 0; i < pg->n_outputs && s == LDMC_OK; i++) {
    const Ldmc__Output *po = pg->outputs[i];
    char what[64], *oname;
    if (po->node < 0 || po->node >= g->n_nodes) {
      s = bad("output %zu refers to %%%d, which does not exist", i, (int)po->node);
      break;
    }
    snprintf(what, sizeof what, "output %zu name", i);
    s = ldmc_pb_strdup(po->name, what, &oname);
    if (s == LDMC_OK) s = ldmc_graph_add_output(g, po->node, oname);
    free(oname);
  }
  if (s != LDMC_OK) {
    ldmc_graph_free(g);
    return s;
  }
  *out = g;
  return LDMC_OK;
}
