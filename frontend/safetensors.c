/* safetensors reader and writer. Layout: u64 little-endian header length N,
 * N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]},
 * "__metadata__": {string: string}}, then the byte buffer the offsets index.
 * The JSON is parsed by jansson with duplicate keys rejected; everything the
 * reference reader checks is checked here (offsets tile the buffer exactly,
 * sizes match dtype x shape). */
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/weights_io.h"
#include "support/fileio.h"

/* The spec's dtypes. rank orders them as the reference's Dtype enum does; its
 * writer sorts tensors by that, descending, so wide types come first and
 * every tensor is aligned to its element size. */
typedef struct st_dtype {
  const char *name;
  size_t size;
  int rank;
  int native; /* ldmc_dtype, or -1 for raw bytes */
} st_dtype;

static const st_dtype k_dtypes[] = {
    {"BOOL", 1, 0, LDMC_PRED},   {"U8", 1, 1, -1},        {"I8", 1, 2, -1},      {"F8_E5M2", 1, 3, -1},
    {"F8_E4M3", 1, 4, -1},       {"I16", 2, 5, -1},       {"U16", 2, 6, -1},     {"F16", 2, 7, LDMC_F16},
    {"BF16", 2, 8, LDMC_BF16},   {"I32", 4, 9, LDMC_I32}, {"U32", 4, 10, -1},    {"F32", 4, 11, LDMC_F32},
    {"F64", 8, 12, LDMC_F64},    {"I64", 8, 13, LDMC_I64}, {"U64", 8, 14, -1},
};
#define N_DTYPES (sizeof k_dtypes / sizeof k_dtypes[0])

static const st_dtype *dtype_by_name(const char *s) {
  for (size_t i = 0; i < N_DTYPES; i++)
    if (strcmp(k_dtypes[i].name, s) == 0) return &k_dtypes[i];
  return NULL;
}

static const st_dtype *dtype_of_tensor(const ldmc_tensor *t) {
  if (t->raw_dtype[0]) {
    if (!memchr(t->raw_dtype, 0, sizeof t->raw_dtype)) return NULL;
    const st_dtype *d = dtype_by_name(t->raw_dtype);
    return d && d->native < 0 ? d : NULL;
  }
  for (size_t i = 0; i < N_DTYPES; i++)
    if (k_dtypes[i].native == (int)t->dtype) return &k_dtypes[i];
  return NULL;
}

static ldmc_status bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static ldmc_status bad(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ldmc_error(LDMC_ERR_FORMAT, "%s", msg);
}

/* ---- reading ---- */
typedef struct span {
  uint64_t begin, end;
  int32_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static ldmc_status read_u64(json_t *v, const char *what, const char *name, uint64_t *out) {
  if (!json_is_integer(v)) return bad("tensor '%s': %s is not an integer", name, what);
  json_int_t x = json_integer_value(v);
  if (x < 0) return bad("tensor '%s': %s is negative (%" JSON_INTEGER_FORMAT ")", name, what, x);
  *out = (uint64_t)x;
  return LDMC_OK;
}

/* One header entry into t (name already set); *sp gets its byte range. */
static ldmc_status read_entry(json_t *e, ldmc_tensor *t, span *sp) {
  const char *name = t->name;
  if (!json_is_object(e)) return bad("tensor '%s': entry is not a JSON object", name);
  json_t *jdt = json_object_get(e, "dtype"), *jshape = json_object_get(e, "shape"),
         *joff = json_object_get(e, "data_offsets");
  if (!json_is_string(jdt)) return bad("tensor '%s': \"dtype\" is missing or not a string", name);
  if (!json_is_array(jshape)) return bad("tensor '%s': \"shape\" is missing or not an array", name);
  if (!json_is_array(joff) || json_array_size(joff) != 2)
    return bad("tensor '%s': \"data_offsets\" is missing or not a [begin, end] pair", name);
  const st_dtype *dt = dtype_by_name(json_string_value(jdt));
  if (!dt) return bad("tensor '%s': unknown dtype \"%.32s\"", name, json_string_value(jdt));
  if (dt->native >= 0) {
    t->dtype = (ldmc_dtype)dt->native;
  } else {
    t->dtype = LDMC_DTYPE_COUNT;
    strcpy(t->raw_dtype, dt->name);
  }
  size_t rank = json_array_size(jshape);
  if (rank > LDMC_MAX_RANK) return bad("tensor '%s': rank %zu is more than ldmc's %d", name, rank, LDMC_MAX_RANK);
  t->shape.rank = (int)rank;
  for (size_t i = 0; i < rank; i++) {
    uint64_t d = 0;
    char what[32];
    snprintf(what, sizeof what, "shape[%zu]", i);
    LDMC_TRY(read_u64(json_array_get(jshape, i), what, name, &d));
    t->shape.dims[i] = (int64_t)d; /* read_u64 took it from a non-negative json_int_t */
  }
  int64_t numel;
  if (ldmc_shape_numel(&t->shape, dt->size, &numel) != LDMC_OK) {
    ldmc_error_prefix("tensor '%s': ", name);
    return LDMC_ERR_FORMAT;
  }
  LDMC_TRY(read_u64(json_array_get(joff, 0), "data_offsets[0]", name, &sp->begin));
  LDMC_TRY(read_u64(json_array_get(joff, 1), "data_offsets[1]", name, &sp->end));
  if (sp->end < sp->begin)
    return bad("tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin", name, sp->begin, sp->end);
  uint64_t need = (uint64_t)numel * dt->size;
  if (sp->end - sp->begin != need) {
    char sh[200];
    return bad("tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64 " bytes, but %s%s needs %" PRIu64,
               name, sp->begin, sp->end, sp->end - sp->begin, dt->name, ldmc_shape_str(&t->shape, sh, sizeof sh), need);
  }
  t->nbytes = (size_t)need;
  return LDMC_OK;
}

static ldmc_status check_metadata(json_t *m) {
  if (!json_is_object(m)) return bad("\"__metadata__\" is not a JSON object");
  const char *k;
  json_t *v;
  json_object_foreach(m, k, v) {
    if (!json_is_string(v)) return bad("\"__metadata__\" value of \"%.64s\" is not a string", k);
  }
  return LDMC_OK;
}

/* Offsets must tile [0, buf_len) exactly: sorted, contiguous, complete. */
static ldmc_status check_tiling(span *sp, int32_t n, uint64_t buf_len, const ldmc_tensor_set *set) {
  qsort(sp, (size_t)n, sizeof *sp, cmp_span);
  uint64_t pos = 0;
  for (int32_t i = 0; i < n; i++) {
    const char *name = set->items[sp[i].idx].name;
    if (sp[i].begin != pos)
      return bad("tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] %s the previous tensor, which ends at %" PRIu64,
                 name, sp[i].begin, sp[i].end, sp[i].begin < pos ? "overlap" : "leave a gap after", pos);
    if (sp[i].end > buf_len)
      return bad("tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the %" PRIu64 "-byte data buffer", name,
                 sp[i].begin, sp[i].end, buf_len);
    pos = sp[i].end;
  }
  if (pos != buf_len)
    return bad("tensors cover %" PRIu64 " bytes of the %" PRIu64 "-byte data buffer; the rest is unaccounted for", pos,
               buf_len);
  return LDMC_OK;
}

static ldmc_status parse_impl(const uint8_t *buf, size_t len, bool copy, ldmc_tensor_set *out) {
  if (len < 8) return bad("file is %zu bytes, too short for the 8-byte header length", len);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
  if (n > LDMC_SAFETENSORS_MAX_HEADER)
    return bad("header length %" PRIu64 " is more than the %u-byte limit", n, LDMC_SAFETENSORS_MAX_HEADER);
  if (n > len - 8) return bad("header length %" PRIu64 " runs past the end of the %zu-byte file", n, len);
  if (n == 0 || buf[8] != '{') return bad("header does not start with '{'");
  json_error_t jerr;
  json_t *root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) return bad("header JSON, line %d column %d: %s", jerr.line, jerr.column, jerr.text);
  ldmc_status s = LDMC_OK;
  span *sp = NULL;
  size_t count = json_object_size(root);
  if (!json_is_object(root)) {
    s = bad("header is not a JSON object");
    goto done;
  }
  if (count > INT32_MAX) {
    s = bad("too many tensors");
    goto done;
  }
  out->items = calloc(count ? count : 1, sizeof *out->items);
  sp = calloc(count ? count : 1, sizeof *sp);
  if (!out->items || !sp) {
    s = ldmc_error(LDMC_ERR_NOMEM, "out of memory for %zu tensors", count);
    goto done;
  }
  out->cap = (int32_t)(count ? count : 1);
  const char *key;
  json_t *val;
  void *iter;
  /* JSON_REJECT_DUPLICATES made the keys unique, so items are appended directly */
  for (iter = json_object_iter(root); iter && s == LDMC_OK; iter = json_object_iter_next(root, iter)) {
    key = json_object_iter_key(iter);
    val = json_object_iter_value(iter);
    if (strlen(key) != json_object_iter_key_len(iter)) {
      s = bad("a tensor name contains a NUL character");
      break;
    }
    if (strcmp(key, "__metadata__") == 0) {
      s = check_metadata(val);
      continue;
    }
    ldmc_tensor *t = &out->items[out->n];
    if (!(t->name = strdup(key))) {
      s = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
      break;
    }
    sp[out->n].idx = out->n;
    out->n++;
    s = read_entry(val, t, &sp[out->n - 1]);
  }
  if (s != LDMC_OK) goto done;
  uint64_t data_len = len - 8 - n;
  s = check_tiling(sp, out->n, data_len, out);
  if (s != LDMC_OK) goto done;
  const uint8_t *data = buf + 8 + n;
  for (int32_t i = 0; i < out->n; i++) {
    ldmc_tensor *t = &out->items[sp[i].idx];
    const uint8_t *src = data + sp[i].begin;
    size_t esize = t->raw_dtype[0] ? ldmc_raw_dtype_size(t->raw_dtype) : ldmc_dtype_size(t->dtype);
    if (!copy && (uintptr_t)src % esize == 0) {
      t->data = (void *)src;
      t->owns_data = false;
      continue;
    }
    size_t alloc = (t->nbytes + 63) & ~(size_t)63;
    if (!(t->data = aligned_alloc(64, alloc ? alloc : 64))) {
      s = ldmc_error(LDMC_ERR_NOMEM, "cannot allocate %zu bytes for tensor '%s'", t->nbytes, t->name);
      goto done;
    }
    t->owns_data = true;
    if (t->nbytes) memcpy(t->data, src, t->nbytes);
  }
done:
  json_decref(root);
  free(sp);
  return s;
}

ldmc_status ldmc_safetensors_parse(const uint8_t *buf, size_t len, ldmc_tensor_set *out) {
  memset(out, 0, sizeof *out);
  ldmc_status s = parse_impl(buf, len, true, out);
  if (s != LDMC_OK) ldmc_tensor_set_free(out);
  return s;
}

ldmc_status ldmc_safetensors_load(const char *path, ldmc_tensor_set *out) {
  memset(out, 0, sizeof *out);
  ldmc_file_map *map;
  LDMC_TRY(ldmc_file_map_open(path, &map));
  ldmc_status s = parse_impl(map->data, map->len, false, out);
  out->release = ldmc_file_map_release;
  out->release_ctx = map;
  if (s != LDMC_OK) {
    ldmc_tensor_set_free(out); /* also unmaps */
    ldmc_error_prefix("%s: ", path);
  }
  return s;
}

/* ---- writing ---- */
typedef struct st_plan {
  char *header; /* JSON, padded with spaces to a multiple of 8 */
  size_t header_len;
  int32_t *order; /* tensors in file order */
  uint64_t data_len;
} st_plan;

/* qsort has no context argument; a thread-local keeps writers thread-safe */
static _Thread_local const ldmc_tensor_set *t_sort_set;

static int cmp_write_order(const void *a, const void *b) {
  const ldmc_tensor *x = &t_sort_set->items[*(const int32_t *)a], *y = &t_sort_set->items[*(const int32_t *)b];
  int rx = dtype_of_tensor(x)->rank, ry = dtype_of_tensor(y)->rank;
  if (rx != ry) return ry - rx; /* widest dtype first, as the reference writer */
  return strcmp(x->name, y->name);
}

static void plan_free(st_plan *p) {
  free(p->header);
  free(p->order);
  memset(p, 0, sizeof *p);
}

static ldmc_status check_tensor(const ldmc_tensor *t, int32_t i) {
  if (!t->name) return ldmc_error(LDMC_ERR_INVALID, "tensor %d has no name", (int)i);
  if (strcmp(t->name, "__metadata__") == 0) return ldmc_error(LDMC_ERR_INVALID, "a tensor may not be named '__metadata__'");
  const st_dtype *dt = dtype_of_tensor(t);
  if (!dt) return ldmc_error(LDMC_ERR_INVALID, "tensor '%s': dtype has no safetensors name", t->name);
  int64_t numel;
  if (ldmc_shape_numel(&t->shape, dt->size, &numel) != LDMC_OK) {
    ldmc_error_prefix("tensor '%s': ", t->name);
    return LDMC_ERR_INVALID;
  }
  if ((uint64_t)numel * dt->size != t->nbytes)
    return ldmc_error(LDMC_ERR_INVALID, "tensor '%s': holds %zu bytes, but %s x %" PRId64 " elements need %" PRIu64,
                      t->name, t->nbytes, dt->name, numel, (uint64_t)numel * dt->size);
  if (t->nbytes && !t->data) return ldmc_error(LDMC_ERR_INVALID, "tensor '%s' has no data", t->name);
  return LDMC_OK;
}

static ldmc_status build_root(const ldmc_tensor_set *set, int n_meta, const char *const *keys, const char *const *vals,
                              const int32_t *order, json_t *root, uint64_t *data_len) {
  if (n_meta > 0) {
    json_t *meta = json_object();
    if (!meta || json_object_set_new(root, "__metadata__", meta) != 0) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_meta; i++) {
      if (!keys[i] || !vals[i]) return ldmc_error(LDMC_ERR_INVALID, "metadata entry %d is NULL", i);
      if (json_object_get(meta, keys[i])) return ldmc_error(LDMC_ERR_INVALID, "duplicate metadata key '%s'", keys[i]);
      json_t *v = json_string(vals[i]);
      if (!v || json_object_set_new(meta, keys[i], v) != 0)
        return ldmc_error(LDMC_ERR_INVALID, "metadata '%s': key or value is not valid UTF-8", keys[i]);
    }
  }
  uint64_t pos = 0;
  for (int32_t k = 0; k < set->n; k++) {
    const ldmc_tensor *t = &set->items[order[k]];
    if (json_object_get(root, t->name)) return ldmc_error(LDMC_ERR_INVALID, "duplicate tensor name '%s'", t->name);
    json_t *shape = json_array(), *offs = json_array();
    json_t *e = json_pack("{s:s, s:o, s:o}", "dtype", dtype_of_tensor(t)->name, "shape", shape, "data_offsets", offs);
    if (!e) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    if (json_object_set_new(root, t->name, e) != 0)
      return ldmc_error(LDMC_ERR_INVALID, "tensor name '%s' is not valid UTF-8", t->name);
    for (int d = 0; d < t->shape.rank; d++)
      if (json_array_append_new(shape, json_integer(t->shape.dims[d])) != 0) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    if (json_array_append_new(offs, json_integer((json_int_t)pos)) != 0 ||
        json_array_append_new(offs, json_integer((json_int_t)(pos + t->nbytes))) != 0)
      return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    pos += t->nbytes;
  }
  *data_len = pos;
  return LDMC_OK;
}

static ldmc_status plan_make(const ldmc_tensor_set *set, int n_meta, const char *const *keys, const char *const *vals,
                             st_plan *p) {
  memset(p, 0, sizeof *p);
  if (n_meta > 0 && (!keys || !vals)) return ldmc_error(LDMC_ERR_INVALID, "metadata arrays are NULL");
  for (int32_t i = 0; i < set->n; i++) LDMC_TRY(check_tensor(&set->items[i], i));
  p->order = malloc((set->n ? (size_t)set->n : 1) * sizeof *p->order);
  json_t *root = json_object();
  if (!p->order || !root) {
    json_decref(root);
    plan_free(p);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  }
  for (int32_t i = 0; i < set->n; i++) p->order[i] = i;
  t_sort_set = set;
  qsort(p->order, (size_t)set->n, sizeof *p->order, cmp_write_order);
  ldmc_status s = build_root(set, n_meta, keys, vals, p->order, root, &p->data_len);
  char *js = s == LDMC_OK ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (s == LDMC_OK && !js) s = ldmc_error(LDMC_ERR_NOMEM, "out of memory writing the header");
  if (s != LDMC_OK) {
    free(js);
    plan_free(p);
    return s;
  }
  size_t n = strlen(js), padded = n + (8 - n % 8) % 8;
  char *h = malloc(padded + 1);
  if (!h) {
    free(js);
    plan_free(p);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  }
  memcpy(h, js, n);
  free(js);
  p->header = h;
  memset(p->header + n, ' ', padded - n);
  p->header[padded] = 0;
  p->header_len = padded;
  return LDMC_OK;
}

static void put_len(uint8_t b[8], uint64_t v) {
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

ldmc_status ldmc_safetensors_encode(const ldmc_tensor_set *set, int n_meta, const char *const *meta_keys,
                                    const char *const *meta_values, uint8_t **out, size_t *out_len) {
  st_plan p;
  *out = NULL;
  *out_len = 0;
  LDMC_TRY(plan_make(set, n_meta, meta_keys, meta_values, &p));
  size_t total = 8 + p.header_len + (size_t)p.data_len;
  uint8_t *buf = malloc(total);
  if (!buf) {
    plan_free(&p);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory for a %zu-byte safetensors buffer", total);
  }
  put_len(buf, p.header_len);
  memcpy(buf + 8, p.header, p.header_len);
  size_t pos = 8 + p.header_len;
  for (int32_t k = 0; k < set->n; k++) {
    const ldmc_tensor *t = &set->items[p.order[k]];
    if (t->nbytes) memcpy(buf + pos, t->data, t->nbytes);
    pos += t->nbytes;
  }
  plan_free(&p);
  *out = buf;
  *out_len = total;
  return LDMC_OK;
}

ldmc_status ldmc_safetensors_save(const char *path, const ldmc_tensor_set *set, int n_meta,
                                  const char *const *meta_keys, const char *const *meta_values) {
  st_plan p;
  ldmc_status s = plan_make(set, n_meta, meta_keys, meta_values, &p);
  if (s != LDMC_OK) {
    ldmc_error_prefix("%s: ", path);
    return s;
  }
  ldmc_atomic_file *f;
  if ((s = ldmc_atomic_open(path, &f)) != LDMC_OK) {
    plan_free(&p);
    return s;
  }
  uint8_t len[8];
  put_len(len, p.header_len);
  s = ldmc_atomic_write(f, len, 8);
  if (s == LDMC_OK) s = ldmc_atomic_write(f, p.header, p.header_len);
  for (int32_t k = 0; k < set->n && s == LDMC_OK; k++) {
    const ldmc_tensor *t = &set->items[p.order[k]];
    s = ldmc_atomic_write(f, t->data, t->nbytes);
  }
  plan_free(&p);
  if (s != LDMC_OK) {
    ldmc_atomic_abort(f);
    return s;
  }
  return ldmc_atomic_commit(f);
}
