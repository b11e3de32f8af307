/* dtypes, shapes, attributes and tensors: the value types of the IR. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "support/half.h"

static const char *const k_dtype_names[] = {"f32", "bf16", "f16", "i32", "i64", "pred", "f64"};
static const size_t k_dtype_sizes[] = {4, 2, 2, 4, 8, 1, 8};
_Static_assert(sizeof k_dtype_names / sizeof k_dtype_names[0] == LDMC_DTYPE_COUNT, "dtype names");
_Static_assert(sizeof k_dtype_sizes / sizeof k_dtype_sizes[0] == LDMC_DTYPE_COUNT, "dtype sizes");

const char *ldmc_dtype_name(ldmc_dtype dt) {
  return (unsigned)dt < LDMC_DTYPE_COUNT ? k_dtype_names[dt] : "<bad dtype>";
}

bool ldmc_dtype_parse(const char *s, size_t len, ldmc_dtype *out) {
  for (int i = 0; i < LDMC_DTYPE_COUNT; i++) {
    if (strlen(k_dtype_names[i]) == len && memcmp(k_dtype_names[i], s, len) == 0) {
      *out = (ldmc_dtype)i;
      return true;
    }
  }
  return false;
}

size_t ldmc_dtype_size(ldmc_dtype dt) { return (unsigned)dt < LDMC_DTYPE_COUNT ? k_dtype_sizes[dt] : 0; }
bool ldmc_dtype_is_float(ldmc_dtype dt) { return (LDMC_DT_FLOAT >> dt) & 1u; }

ldmc_shape ldmc_shape_make(int rank, const int64_t *dims) {
  ldmc_shape s = {0};
  s.rank = rank < 0 ? 0 : rank > LDMC_MAX_RANK ? LDMC_MAX_RANK : rank;
  for (int i = 0; i < s.rank; i++) s.dims[i] = dims[i];
  return s;
}

bool ldmc_shape_equal(const ldmc_shape *a, const ldmc_shape *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

ldmc_status ldmc_shape_numel(const ldmc_shape *s, size_t elem_size, int64_t *out) {
  char buf[200];
  if (s->rank < 0 || s->rank > LDMC_MAX_RANK)
    return ldmc_error(LDMC_ERR_INVALID, "rank %d is outside 0..%d", s->rank, LDMC_MAX_RANK);
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) {
    if (s->dims[i] < 0)
      return ldmc_error(LDMC_ERR_INVALID, "shape %s has negative dim %d", ldmc_shape_str(s, buf, sizeof buf), i);
    if (s->dims[i] != 0 && n > INT64_MAX / s->dims[i])
      return ldmc_error(LDMC_ERR_INVALID, "shape %s: element count overflows int64", ldmc_shape_str(s, buf, sizeof buf));
    n *= s->dims[i];
  }
  if (elem_size > 0 && n > INT64_MAX / (int64_t)elem_size)
    return ldmc_error(LDMC_ERR_INVALID, "shape %s: byte size overflows int64", ldmc_shape_str(s, buf, sizeof buf));
  *out = n;
  return LDMC_OK;
}

char *ldmc_shape_str(const ldmc_shape *s, char *buf, size_t len) {
  size_t k = 0;
  if (len == 0) return buf;
  buf[0] = 0;
  k += (size_t)snprintf(buf + k, len - k, "[");
  for (int i = 0; i < s->rank && i < LDMC_MAX_RANK && k < len; i++)
    k += (size_t)snprintf(buf + k, len - k, i ? ",%" PRId64 : "%" PRId64, s->dims[i]);
  if (k < len) snprintf(buf + k, len - k, "]");
  return buf;
}

/* ---- attributes ---- */
ldmc_status ldmc_attrs_copy(ldmc_attrs *dst, const ldmc_attrs *src) {
  *dst = *src;
  dst->name = NULL;
  dst->value.data = NULL;
  if (src->name && !(dst->name = strdup(src->name))) return ldmc_error(LDMC_ERR_NOMEM, "out of memory copying a name");
  if (src->value.nbytes && !src->value.data) {
    free(dst->name);
    dst->name = NULL;
    dst->value.nbytes = 0;
    return ldmc_error(LDMC_ERR_INVALID, "constant value claims %zu bytes but has no data", src->value.nbytes);
  }
  if (src->value.nbytes) {
    dst->value.data = malloc(src->value.nbytes);
    if (!dst->value.data) {
      free(dst->name);
      dst->name = NULL;
      return ldmc_error(LDMC_ERR_NOMEM, "out of memory copying a %zu-byte constant", src->value.nbytes);
    }
    memcpy(dst->value.data, src->value.data, src->value.nbytes);
  }
  return LDMC_OK;
}

void ldmc_attrs_free(ldmc_attrs *a) {
  free(a->name);
  free(a->value.data);
  a->name = NULL;
  a->value.data = NULL;
  a->value.nbytes = 0;
}

/* ---- tensors ---- */
ldmc_status ldmc_tensor_alloc(ldmc_tensor *t, const char *name, ldmc_dtype dtype, const ldmc_shape *shape) {
  memset(t, 0, sizeof *t);
  int64_t n;
  if ((unsigned)dtype >= LDMC_DTYPE_COUNT) return ldmc_error(LDMC_ERR_INVALID, "bad dtype %d", (int)dtype);
  LDMC_TRY(ldmc_shape_numel(shape, ldmc_dtype_size(dtype), &n));
  size_t nbytes = (size_t)n * ldmc_dtype_size(dtype);
  size_t alloc = (nbytes + 63) & ~(size_t)63;
  void *data = aligned_alloc(64, alloc ? alloc : 64);
  if (!data) return ldmc_error(LDMC_ERR_NOMEM, "cannot allocate %zu bytes for tensor '%s'", nbytes, name ? name : "");
  memset(data, 0, alloc ? alloc : 64);
  char *nm = strdup(name ? name : "");
  if (!nm) {
    free(data);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  }
  t->name = nm;
  t->dtype = dtype;
  t->shape = *shape;
  t->data = data;
  t->nbytes = nbytes;
  t->owns_data = true;
  return LDMC_OK;
}

void ldmc_tensor_release(ldmc_tensor *t) {
  free(t->name);
  if (t->owns_data) free(t->data);
  memset(t, 0, sizeof *t);
}

double ldmc_tensor_get(const ldmc_tensor *t, int64_t i) {
  const uint8_t *p = (const uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case LDMC_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return ldmc_bf16_to_f32(h); }
    case LDMC_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return ldmc_f16_to_f32(h); }
    case LDMC_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case LDMC_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case LDMC_PRED: return p[i] ? 1.0 : 0.0;
    case LDMC_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    default: return 0;
  }
}

void ldmc_tensor_set_elem(ldmc_tensor *t, int64_t i, double v) {
  uint8_t *p = (uint8_t *)t->data;
  switch (t->dtype) {
    case LDMC_F32: { float f = (float)v; memcpy(p + 4 * i, &f, 4); break; }
    case LDMC_BF16: { uint16_t h = ldmc_f64_to_bf16(v); memcpy(p + 2 * i, &h, 2); break; }
    case LDMC_F16: { uint16_t h = ldmc_f64_to_f16(v); memcpy(p + 2 * i, &h, 2); break; }
    /* ints: toward zero, saturating, NaN -> 0 (a plain cast would be undefined) */
    case LDMC_I32: {
      int32_t x = v != v ? 0 : v <= INT32_MIN ? INT32_MIN : v >= INT32_MAX ? INT32_MAX : (int32_t)v;
      memcpy(p + 4 * i, &x, 4);
      break;
    }
    case LDMC_I64: {
      int64_t x = v != v ? 0 : v <= -0x1p63 ? INT64_MIN : v >= 0x1p63 ? INT64_MAX : (int64_t)v;
      memcpy(p + 8 * i, &x, 8);
      break;
    }
    case LDMC_PRED: p[i] = v != 0.0; break;
    case LDMC_F64: memcpy(p + 8 * i, &v, 8); break;
    default: break;
  }
}

ldmc_status ldmc_tensor_set_add(ldmc_tensor_set *s, ldmc_tensor *t) {
  if (ldmc_tensor_set_find(s, t->name)) return ldmc_error(LDMC_ERR_INVALID, "duplicate tensor name '%s'", t->name);
  if (s->n == s->cap) {
    int32_t cap = s->cap ? s->cap * 2 : 16;
    ldmc_tensor *items = realloc(s->items, (size_t)cap * sizeof *items);
    if (!items) return ldmc_error(LDMC_ERR_NOMEM, "out of memory adding tensor '%s'", t->name);
    s->items = items;
    s->cap = cap;
  }
  s->items[s->n++] = *t;
  memset(t, 0, sizeof *t);
  return LDMC_OK;
}

ldmc_tensor *ldmc_tensor_set_find(const ldmc_tensor_set *s, const char *name) {
  for (int32_t i = 0; i < s->n; i++)
    if (strcmp(s->items[i].name, name) == 0) return &s->items[i];
  return NULL;
}

void ldmc_tensor_set_free(ldmc_tensor_set *s) {
  for (int32_t i = 0; i < s->n; i++) ldmc_tensor_release(&s->items[i]);
  free(s->items);
  if (s->release) s->release(s->release_ctx);
  memset(s, 0, sizeof *s);
}
