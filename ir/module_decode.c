/* .ldmc reader. Validates the prelude, the protobuf header and every name,
 * dtype, shape, attribute and chunk before allocating tensor memory, then
 * decompresses each chunk into exactly its declared size and verifies the
 * graph. Hostile input gives LDMC_ERR_FORMAT with a message, never a crash. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zstd.h>

#include "ir/module_format.h"

/* A chunk and who owns it, for the overlap check and its message. */
typedef struct range {
  uint64_t off, size;
  int32_t owner;  /* tensor index, or node id when is_node */
  uint32_t chunk;
  bool is_node;
} range;

/* A large constant whose bytes are decompressed after all checks pass. */
typedef struct pending_lit {
  int32_t node;
  const Ldmc__Blob *blob;
} pending_lit;

typedef struct dec {
  const uint8_t *data;
  size_t len;
  uint64_t data_end; /* where the header starts */
  uint64_t max_bytes, total_raw;
  const Ldmc__Header *h;
  ldmc_module *out;
  range *ranges;
  size_t n_ranges, cap_ranges;
  pending_lit *lits;
  size_t n_lits, cap_lits;
} dec;

static ldmc_status bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static ldmc_status bad(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ldmc_error(LDMC_ERR_FORMAT, "%s", msg);
}

/* Names come from the file: quoted (escapes, at most ~96 bytes) so a
 * message never carries raw bytes to the terminal. */
typedef struct qname {
  char s[100];
} qname;

static const char *quote(const char *name, qname *q) { return ldmc_quote(name, q->s, sizeof q->s); }

static void owner_str(const dec *d, bool is_node, int32_t owner, char *buf, size_t n) {
  if (is_node)
    snprintf(buf, n, "node %%%d %s", (int)owner, ldmc_op_name(d->out->graph->nodes[owner].op));
  else
  {
    qname q;
    snprintf(buf, n, "tensor '%s'", quote(d->out->tensors.items[owner].name, &q));
  }
}

static ldmc_status read_shape(const int64_t *dims, size_t n, size_t esize, const char *what, ldmc_shape *s,
                              uint64_t *nbytes) {
  if (n > LDMC_MAX_RANK) return bad("%s: rank %zu is more than %d", what, n, LDMC_MAX_RANK);
  memset(s, 0, sizeof *s);
  s->rank = (int)n;
  for (size_t i = 0; i < n; i++) s->dims[i] = dims[i];
  int64_t numel;
  if (ldmc_shape_numel(s, esize, &numel) != LDMC_OK) {
    ldmc_error_prefix("%s: ", what);
    return LDMC_ERR_FORMAT;
  }
  *nbytes = (uint64_t)numel * esize;
  if (*nbytes > SIZE_MAX) return bad("%s: %" PRIu64 " bytes do not fit in memory here", what, *nbytes);
  return LDMC_OK;
}

/* Checks a blob's chunks against the data region and the expected size, and
 * records them. owner_desc is only used for messages. */
static ldmc_status check_blob(dec *d, const Ldmc__Blob *b, uint64_t expected, bool is_node, int32_t owner,
                              const char *what) {
  if (!b) {
    if (expected == 0) return LDMC_OK;
    return bad("%s: no data, expected %" PRIu64 " bytes", what, expected);
  }
  if (b->raw_size != expected)
    return bad("%s: data is %" PRIu64 " bytes, but its dtype and shape need %" PRIu64, what, b->raw_size, expected);
  uint64_t sum = 0;
  for (size_t j = 0; j < b->n_chunks; j++) {
    const Ldmc__Chunk *c = b->chunks[j];
    if (c->raw_size == 0 || c->size == 0) return bad("%s: chunk %zu is empty", what, j);
    if (c->raw_size > LDMC_CHUNK_RAW_MAX)
      return bad("%s: chunk %zu holds %" PRIu64 " bytes, more than the %u-byte chunk limit", what, j, c->raw_size,
                 LDMC_CHUNK_RAW_MAX);
    if (c->offset < LDMC_PRELUDE_SIZE || c->offset > d->data_end || c->size > d->data_end - c->offset)
      return bad("%s: chunk %zu at offset %" PRIu64 " + %" PRIu64 " bytes lies outside the data region [%u, %" PRIu64
                 ") of the %zu-byte file",
                 what, j, c->offset, c->size, LDMC_PRELUDE_SIZE, d->data_end, d->len);
    if (c->raw_size > expected - sum)
      return bad("%s: chunks hold more than the %" PRIu64 " bytes declared (at chunk %zu)", what, expected, j);
    sum += c->raw_size;
    if (d->max_bytes && c->raw_size > d->max_bytes - d->total_raw)
      return bad("%s: the file expands to more than the %" PRIu64 "-byte limit", what, d->max_bytes);
    d->total_raw += c->raw_size;
    if (d->n_ranges == d->cap_ranges) {
      size_t cap = d->cap_ranges ? d->cap_ranges * 2 : 64;
      range *r = realloc(d->ranges, cap * sizeof *r);
      if (!r) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
      d->ranges = r;
      d->cap_ranges = cap;
    }
    d->ranges[d->n_ranges++] = (range){c->offset, c->size, owner, (uint32_t)j, is_node};
  }
  if (sum != expected) return bad("%s: chunks hold %" PRIu64 " bytes, not the %" PRIu64 " declared", what, sum, expected);
  return LDMC_OK;
}

static int cmp_range(const void *a, const void *b) {
  const range *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

static ldmc_status check_overlaps(dec *d) {
  if (d->n_ranges < 2) return LDMC_OK;
  qsort(d->ranges, d->n_ranges, sizeof *d->ranges, cmp_range);
  for (size_t i = 1; i < d->n_ranges; i++) {
    const range *p = &d->ranges[i - 1], *r = &d->ranges[i];
    if (r->off < p->off + p->size) {
      char a[300], b[300];
      owner_str(d, p->is_node, p->owner, a, sizeof a);
      owner_str(d, r->is_node, r->owner, b, sizeof b);
      return bad("%s chunk %u [%" PRIu64 ", %" PRIu64 ") overlaps %s chunk %u at offset %" PRIu64, a, p->chunk, p->off,
                 p->off + p->size, b, r->chunk, r->off);
    }
  }
  return LDMC_OK;
}

/* Decompresses a validated blob into dst (exactly b->raw_size bytes). */
static ldmc_status inflate_blob(dec *d, ZSTD_DCtx *dctx, const Ldmc__Blob *b, uint8_t *dst, const char *what) {
  uint64_t pos = 0;
  for (size_t j = 0; b && j < b->n_chunks; j++) {
    const Ldmc__Chunk *c = b->chunks[j];
    const uint8_t *src = d->data + c->offset;
    size_t csize = (size_t)c->size, raw = (size_t)c->raw_size;
    unsigned long long fcs = ZSTD_getFrameContentSize(src, csize);
    if (fcs == ZSTD_CONTENTSIZE_ERROR) return bad("%s: chunk %zu at offset %" PRIu64 " is not a zstd frame", what, j, c->offset);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
      return bad("%s: chunk %zu at offset %" PRIu64 " does not record its size", what, j, c->offset);
    if (fcs != raw)
      return bad("%s: chunk %zu at offset %" PRIu64 " holds %llu bytes, not the %zu declared", what, j, c->offset, fcs, raw);
    size_t fsz = ZSTD_findFrameCompressedSize(src, csize);
    if (ZSTD_isError(fsz) || fsz != csize)
      return bad("%s: chunk %zu at offset %" PRIu64 " is not exactly one %zu-byte zstd frame", what, j, c->offset, csize);
    size_t r = ZSTD_decompressDCtx(dctx, dst + pos, raw, src, csize);
    if (ZSTD_isError(r)) return bad("%s: chunk %zu at offset %" PRIu64 " is corrupt: %s", what, j, c->offset, ZSTD_getErrorName(r));
    if (r != raw) return bad("%s: chunk %zu decompressed to %zu bytes, not %zu", what, j, r, raw);
    pos += raw;
  }
  return LDMC_OK;
}

/* ---- tensors ---- */
static ldmc_status read_tensor_meta(dec *d, int32_t i) {
  const Ldmc__Tensor *pt = d->h->tensors[i];
  ldmc_tensor *t = &d->out->tensors.items[i];
  char what[500];
  qname q;
  snprintf(what, sizeof what, "tensor %d: name", (int)i);
  LDMC_TRY(ldmc_pb_strdup(pt->name, what, &t->name));
  snprintf(what, sizeof what, "tensor %d", (int)i);
  d->out->tensors.n = i + 1; /* owned from here on */
  if (!t->name[0]) return bad("tensor %d has an empty name", (int)i);
  snprintf(what, sizeof what, "tensor '%s'", quote(t->name, &q));
  bool has_dt = pt->dtype && pt->dtype[0], has_raw = pt->raw_dtype && pt->raw_dtype[0];
  size_t esize;
  if (has_dt == has_raw) return bad("%s: needs exactly one of dtype and raw_dtype", what);
  if (has_dt) {
    if (!ldmc_dtype_parse(pt->dtype, strlen(pt->dtype), &t->dtype)) return bad("%s: unknown dtype '%s'", what, quote(pt->dtype, &q));
    esize = ldmc_dtype_size(t->dtype);
  } else if (strcmp(pt->raw_dtype, "F64") == 0) { /* written before f64 was an ldmc dtype: same bytes */
    t->dtype = LDMC_F64;
    esize = 8;
  } else {
    esize = strlen(pt->raw_dtype) < sizeof t->raw_dtype ? ldmc_raw_dtype_size(pt->raw_dtype) : 0;
    if (!esize) return bad("%s: unknown raw dtype '%s'", what, quote(pt->raw_dtype, &q));
    strcpy(t->raw_dtype, pt->raw_dtype);
    t->dtype = LDMC_DTYPE_COUNT;
  }
  uint64_t nbytes = 0;
  LDMC_TRY(read_shape(pt->dims, pt->n_dims, esize, what, &t->shape, &nbytes));
  t->nbytes = (size_t)nbytes;
  t->owns_data = true;
  return check_blob(d, pt->data, nbytes, false, i, what);
}

static int cmp_tensor_name(const void *a, const void *b) {
  return strcmp((*(const ldmc_tensor *const *)a)->name, (*(const ldmc_tensor *const *)b)->name);
}

static ldmc_status check_duplicate_tensors(dec *d) {
  int32_t n = d->out->tensors.n;
  if (n < 2) return LDMC_OK;
  const ldmc_tensor **v = malloc((size_t)n * sizeof *v);
  if (!v) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++) v[i] = &d->out->tensors.items[i];
  qsort(v, (size_t)n, sizeof *v, cmp_tensor_name);
  ldmc_status s = LDMC_OK;
  qname q;
  for (int32_t i = 1; i < n && s == LDMC_OK; i++)
    if (strcmp(v[i - 1]->name, v[i]->name) == 0) s = bad("duplicate tensor name '%s'", quote(v[i]->name, &q));
  free(v);
  return s;
}

static ldmc_status read_tensors(dec *d) {
  size_t n = d->h->n_tensors;
  if (n == 0) return LDMC_OK;
  if (n > INT32_MAX) return bad("%zu tensors is too many", n);
  ldmc_tensor_set *set = &d->out->tensors;
  set->items = calloc(n, sizeof *set->items);
  if (!set->items) return ldmc_error(LDMC_ERR_NOMEM, "out of memory for %zu tensors", n);
  set->cap = (int32_t)n;
  for (size_t i = 0; i < n; i++) LDMC_TRY(read_tensor_meta(d, (int32_t)i));
  return check_duplicate_tensors(d);
}

/* ---- graph constants: checked now, decompressed once everything passed ---- */
static ldmc_status note_literal(void *ctx, int32_t node, const Ldmc__Blob *b, uint64_t expected) {
  dec *d = ctx;
  char what[64];
  snprintf(what, sizeof what, "node %%%d constant", (int)node);
  LDMC_TRY(check_blob(d, b, expected, true, node, what));
  if (d->n_lits == d->cap_lits) {
    size_t cap = d->cap_lits ? d->cap_lits * 2 : 16;
    pending_lit *p = realloc(d->lits, cap * sizeof *p);
    if (!p) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    d->lits = p;
    d->cap_lits = cap;
  }
  d->lits[d->n_lits++] = (pending_lit){node, b};
  return LDMC_OK;
}

/* 64-byte aligned, like ldmc_tensor_alloc. Large buffers are 2 MiB aligned and
 * asked for transparent huge pages: decompressing into fresh memory is
 * otherwise dominated by 4 KiB page faults (measured 3-4x slower). */
static void *alloc_aligned(size_t n) {
  size_t a = (n + 63) & ~(size_t)63;
#ifdef MADV_HUGEPAGE
  const size_t huge = (size_t)2 << 20;
  if (a >= 2 * huge) {
    size_t h = (a + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, h);
    if (p) (void)madvise(p, h, MADV_HUGEPAGE); /* only a hint; failure is harmless */
    return p;
  }
#endif
  return aligned_alloc(64, a ? a : 64);
}

static ldmc_status inflate_all(dec *d) {
  ZSTD_DCtx *dctx = ZSTD_createDCtx();
  if (!dctx) return ldmc_error(LDMC_ERR_NOMEM, "out of memory creating a zstd decompressor");
  ldmc_status s = LDMC_OK;
  for (int32_t i = 0; i < d->out->tensors.n && s == LDMC_OK; i++) {
    ldmc_tensor *t = &d->out->tensors.items[i];
    char what[500];
    qname q;
    snprintf(what, sizeof what, "tensor '%s'", quote(t->name, &q));
    if (!(t->data = alloc_aligned(t->nbytes))) {
      s = ldmc_error(LDMC_ERR_NOMEM, "cannot allocate %zu bytes for %s", t->nbytes, what);
      break;
    }
    s = inflate_blob(d, dctx, d->h->tensors[i]->data, t->data, what);
  }
  for (size_t i = 0; i < d->n_lits && s == LDMC_OK; i++) {
    ldmc_literal *lit = &d->out->graph->nodes[d->lits[i].node].attrs.value;
    char what[64];
    snprintf(what, sizeof what, "node %%%d constant", (int)d->lits[i].node);
    if (!(lit->data = malloc(lit->nbytes ? lit->nbytes : 1))) {
      s = ldmc_error(LDMC_ERR_NOMEM, "cannot allocate %zu bytes for %s", lit->nbytes, what);
      break;
    }
    s = inflate_blob(d, dctx, d->lits[i].blob, lit->data, what);
  }
  ZSTD_freeDCtx(dctx);
  return s;
}

static ldmc_status decode_header(dec *d) {
  LDMC_TRY(read_tensors(d));
  if (d->h->graph) LDMC_TRY(ldmc_graph_decode_pb(d->h->graph, note_literal, d, &d->out->graph));
  LDMC_TRY(check_overlaps(d));
  LDMC_TRY(inflate_all(d));
  if (d->out->graph && ldmc_graph_verify(d->out->graph) != LDMC_OK) {
    qname q;
    ldmc_error_prefix("graph '%s': ", quote(d->out->graph->name, &q));
    return LDMC_ERR_FORMAT;
  }
  return LDMC_OK;
}

ldmc_status ldmc_module_decode_limited(const uint8_t *data, size_t len, uint64_t max_bytes, ldmc_module *out) {
  memset(out, 0, sizeof *out);
  if (len < LDMC_PRELUDE_SIZE) return bad("file is %zu bytes, shorter than the %u-byte .ldmc prelude", len, LDMC_PRELUDE_SIZE);
  if (memcmp(data, LDMC_FILE_MAGIC, 4) != 0) return bad("not an .ldmc file (bad magic)");
  uint32_t version = ldmc_get_u32le(data + 4);
  if (version != LDMC_FILE_VERSION)
    return bad(".ldmc format version %u is not supported (this ldmc reads version %u)", version, LDMC_FILE_VERSION);
  uint64_t hoff = ldmc_get_u64le(data + 8), hlen = ldmc_get_u64le(data + 16);
  if (hoff < LDMC_PRELUDE_SIZE || hoff > len || hlen != len - hoff)
    return bad("header at offset %" PRIu64 " + %" PRIu64 " bytes does not end the %zu-byte file (truncated or padded?)",
               hoff, hlen, len);
  Ldmc__Header *h = ldmc__header__unpack(NULL, (size_t)hlen, data + hoff);
  if (!h) return bad("header (%" PRIu64 " bytes at offset %" PRIu64 ") is not a valid protobuf message", hlen, hoff);
  dec d = {.data = data, .len = len, .data_end = hoff, .max_bytes = max_bytes, .h = h, .out = out};
  ldmc_status s = decode_header(&d);
  ldmc__header__free_unpacked(h, NULL);
  free(d.ranges);
  free(d.lits);
  if (s != LDMC_OK) {
    if (s == LDMC_ERR_INVALID) s = LDMC_ERR_FORMAT;
    ldmc_module_free(out);
  }
  return s;
}

ldmc_status ldmc_module_decode(const uint8_t *data, size_t len, ldmc_module *out) {
  return ldmc_module_decode_limited(data, len, 0, out);
}
