/* .ldmc writer: tensors and large constants go out as zstd chunks as they are
 * compressed, then the protobuf header, then the prelude is patched to point
 * at the header. See docs/formats.md. The reader is module_decode.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "ir/ldmc.pb-c.h"
#include "ir/module_format.h"

static const struct {
  const char *name;
  size_t size;
} k_raw_dtypes[] = {{"U8", 1}, {"I8", 1}, {"I16", 2}, {"U16", 2}, {"U32", 4},
                    {"U64", 8}, {"F8_E5M2", 1}, {"F8_E4M3", 1}};

size_t ldmc_raw_dtype_size(const char *name) {
  for (size_t i = 0; i < sizeof k_raw_dtypes / sizeof k_raw_dtypes[0]; i++)
    if (strcmp(k_raw_dtypes[i].name, name) == 0) return k_raw_dtypes[i].size;
  return 0;
}

void ldmc_module_free(ldmc_module *m) {
  if (!m) return;
  ldmc_graph_free(m->graph);
  ldmc_tensor_set_free(&m->tensors);
  memset(m, 0, sizeof *m);
}

/* ---- encoder state ---- */
typedef struct enc {
  const ldmc_byte_sink *sink;
  uint64_t pos; /* bytes written so far */
  ZSTD_CCtx *cctx;
  uint8_t *cbuf;
  size_t cbuf_len;
  /* every allocation the header structs point to, freed together */
  void **allocs;
  size_t n_allocs, cap_allocs;
} enc;

static void *enc_alloc(enc *e, size_t n) {
  if (e->n_allocs == e->cap_allocs) {
    size_t cap = e->cap_allocs ? e->cap_allocs * 2 : 256;
    void **a = realloc(e->allocs, cap * sizeof *a);
    if (!a) return NULL;
    e->allocs = a;
    e->cap_allocs = cap;
  }
  void *p = calloc(1, n ? n : 1);
  if (p) e->allocs[e->n_allocs++] = p;
  return p;
}

static ldmc_status enc_write(enc *e, const void *p, size_t n) {
  LDMC_TRY(e->sink->write(e->sink->ctx, p, n));
  e->pos += n;
  return LDMC_OK;
}

static ProtobufCBinaryData bin_str(const char *s) {
  ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)s};
  return b;
}

/* Compresses len bytes into LDMC_CHUNK_RAW-sized zstd frames written at the
 * current position, and describes them in *blob. what names the owner. */
static ldmc_status enc_blob(enc *e, const void *data, size_t len, Ldmc__Blob *blob, const char *what) {
  ldmc__blob__init(blob);
  blob->raw_size = len;
  size_t n = (len + LDMC_CHUNK_RAW - 1) / LDMC_CHUNK_RAW;
  if (n == 0) return LDMC_OK;
  blob->chunks = enc_alloc(e, n * sizeof *blob->chunks);
  Ldmc__Chunk *chunks = enc_alloc(e, n * sizeof *chunks);
  if (!blob->chunks || !chunks) return ldmc_error(LDMC_ERR_NOMEM, "out of memory encoding %s", what);
  blob->n_chunks = n;
  for (size_t i = 0; i < n; i++) {
    size_t off = i * (size_t)LDMC_CHUNK_RAW, raw = len - off < LDMC_CHUNK_RAW ? len - off : LDMC_CHUNK_RAW;
    /* one-shot compress2 records the content size in the frame header */
    size_t c = ZSTD_compress2(e->cctx, e->cbuf, e->cbuf_len, (const uint8_t *)data + off, raw);
    if (ZSTD_isError(c))
      return ldmc_error(LDMC_ERR_INTERNAL, "%s: zstd failed on chunk %zu: %s", what, i, ZSTD_getErrorName(c));
    ldmc__chunk__init(&chunks[i]);
    chunks[i].offset = e->pos;
    chunks[i].size = c;
    chunks[i].raw_size = raw;
    blob->chunks[i] = &chunks[i];
    LDMC_TRY(enc_write(e, e->cbuf, c));
  }
  return LDMC_OK;
}

static ldmc_status enc_tensor(enc *e, const ldmc_tensor *t, int32_t idx, Ldmc__Tensor *pt) {
  char what[300];
  ldmc__tensor__init(pt);
  if (!t->name) return ldmc_error(LDMC_ERR_INVALID, "tensor %d has no name", (int)idx);
  /* refuse what the reader (module_decode.c) refuses, naming the tensor */
  if (!t->name[0]) return ldmc_error(LDMC_ERR_INVALID, "tensor %d has an empty name (.ldmc files need a name for every tensor)", (int)idx);
  snprintf(what, sizeof what, "tensor '%s'", t->name);
  if (t->raw_dtype[0]) {
    if (!memchr(t->raw_dtype, 0, sizeof t->raw_dtype) || !ldmc_raw_dtype_size(t->raw_dtype))
      return ldmc_error(LDMC_ERR_INVALID, "%s: unknown raw dtype '%.12s'", what, t->raw_dtype);
    pt->raw_dtype = (char *)t->raw_dtype;
  } else {
    if ((unsigned)t->dtype >= LDMC_DTYPE_COUNT) return ldmc_error(LDMC_ERR_INVALID, "%s: bad dtype %d", what, (int)t->dtype);
    pt->dtype = (char *)ldmc_dtype_name(t->dtype);
  }
  int64_t numel;
  size_t esize = ldmc_tensor_elem_size(t);
  if (ldmc_shape_numel(&t->shape, esize, &numel) != LDMC_OK) {
    ldmc_error_prefix("%s: ", what);
    return LDMC_ERR_INVALID;
  }
  if ((uint64_t)numel * esize != t->nbytes)
    return ldmc_error(LDMC_ERR_INVALID, "%s: holds %zu bytes, but %" PRId64 " elements of %zu bytes need %" PRIu64, what,
                      t->nbytes, numel, esize, (uint64_t)numel * esize);
  if (t->nbytes && !t->data) return ldmc_error(LDMC_ERR_INVALID, "%s has no data", what);
  pt->name = bin_str(t->name);
  pt->n_dims = (size_t)t->shape.rank;
  pt->dims = (int64_t *)t->shape.dims;
  pt->data = enc_alloc(e, sizeof *pt->data);
  if (!pt->data) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  return enc_blob(e, t->data, t->nbytes, pt->data, what);
}

static int cmp_name_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static ldmc_status check_unique_names(const ldmc_tensor_set *s) {
  if (s->n < 2) return LDMC_OK;
  const char **names = malloc((size_t)s->n * sizeof *names);
  if (!names) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < s->n; i++) names[i] = s->items[i].name ? s->items[i].name : "";
  qsort(names, (size_t)s->n, sizeof *names, cmp_name_ptr);
  ldmc_status st = LDMC_OK;
  for (int32_t i = 1; i < s->n && st == LDMC_OK; i++)
    if (strcmp(names[i - 1], names[i]) == 0) st = ldmc_error(LDMC_ERR_INVALID, "duplicate tensor name '%s'", names[i]);
  free(names);
  return st;
}

/* One attribute of node id into *pa; a literal larger than the inline limit is
 * written to the data region. */
static ldmc_status enc_attr(enc *e, const ldmc_graph *g, int32_t id, ldmc_attr_field f, Ldmc__Attr *pa, bool *skip) {
  const ldmc_node *n = &g->nodes[id];
  const ldmc_attr_info *ai = &ldmc_attr_table[f];
  const void *member = (const char *)&n->attrs + ai->offset;
  ldmc__attr__init(pa);
  pa->name = bin_str(ai->name);
  *skip = false;
  switch (ai->kind) {
    case LDMC_AK_INT:
      pa->value_case = LDMC__ATTR__VALUE_I;
      memcpy(&pa->i, member, sizeof(int64_t));
      break;
    case LDMC_AK_FLOAT:
      pa->value_case = LDMC__ATTR__VALUE_F;
      memcpy(&pa->f, member, sizeof(double));
      break;
    case LDMC_AK_INTS: {
      const ldmc_ints *v = member;
      if (v->n < 0 || v->n > LDMC_MAX_RANK)
        return ldmc_error(LDMC_ERR_INVALID, "%%%d %s: attribute '%s' has %d values", (int)id, ldmc_op_name(n->op), ai->name, v->n);
      pa->value_case = LDMC__ATTR__VALUE_INTS;
      pa->ints = enc_alloc(e, sizeof *pa->ints);
      if (!pa->ints) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
      ldmc__ints__init(pa->ints);
      pa->ints->n_v = (size_t)v->n;
      pa->ints->v = (int64_t *)v->v;
      break;
    }
    case LDMC_AK_STRING: {
      const char *s = *(char *const *)member;
      if (!s) *skip = true; /* NULL and "" stay distinct */
      pa->value_case = LDMC__ATTR__VALUE_S;
      pa->s = bin_str(s);
      break;
    }
    case LDMC_AK_COMPARE: {
      ldmc_compare c = *(const ldmc_compare *)member;
      if ((unsigned)c >= LDMC_CMP_COUNT) return ldmc_error(LDMC_ERR_INVALID, "%%%d compare: bad direction %d", (int)id, (int)c);
      pa->value_case = LDMC__ATTR__VALUE_S;
      pa->s = bin_str(ldmc_compare_name(c));
      break;
    }
    case LDMC_AK_REDUCE: {
      ldmc_reduce_kind k = *(const ldmc_reduce_kind *)member;
      if ((unsigned)k >= LDMC_REDUCE_COUNT) return ldmc_error(LDMC_ERR_INVALID, "%%%d reduce: bad kind %d", (int)id, (int)k);
      pa->value_case = LDMC__ATTR__VALUE_S;
      pa->s = bin_str(ldmc_reduce_kind_name(k));
      break;
    }
    case LDMC_AK_LITERAL: {
      const ldmc_literal *lit = member;
      if (lit->nbytes && !lit->data) return ldmc_error(LDMC_ERR_INVALID, "%%%d %s: literal has no data", (int)id, ldmc_op_name(n->op));
      if (lit->nbytes <= LDMC_INLINE_LITERAL_MAX) {
        pa->value_case = LDMC__ATTR__VALUE_RAW;
        pa->raw.len = lit->nbytes;
        pa->raw.data = lit->data;
      } else {
        char what[64];
        snprintf(what, sizeof what, "node %%%d %s", (int)id, ldmc_op_name(n->op));
        pa->value_case = LDMC__ATTR__VALUE_BLOB;
        pa->blob = enc_alloc(e, sizeof *pa->blob);
        if (!pa->blob) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
        LDMC_TRY(enc_blob(e, lit->data, lit->nbytes, pa->blob, what));
      }
      break;
    }
  }
  return LDMC_OK;
}

static ldmc_status enc_graph(enc *e, const ldmc_graph *g, Ldmc__Graph *pg) {
  LDMC_TRY(ldmc_graph_verify(g)); /* never write what the reader would refuse */
  ldmc__graph__init(pg);
  pg->name = bin_str(g->name);
  pg->n_nodes = (size_t)g->n_nodes;
  pg->nodes = enc_alloc(e, (size_t)g->n_nodes * sizeof *pg->nodes);
  Ldmc__Node *nodes = enc_alloc(e, (size_t)g->n_nodes * sizeof *nodes);
  if (!pg->nodes || !nodes) return ldmc_error(LDMC_ERR_NOMEM, "out of memory encoding graph '%s'", g->name);
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    Ldmc__Node *pn = &nodes[i];
    ldmc__node__init(pn);
    pg->nodes[i] = pn;
    pn->op = (char *)ldmc_op_name(n->op);
    pn->dtype = (char *)ldmc_dtype_name(n->dtype);
    pn->n_dims = (size_t)n->shape.rank;
    pn->dims = (int64_t *)n->shape.dims;
    pn->n_operands = (size_t)n->n_operands;
    pn->operands = n->operands;
    pn->scope = bin_str(n->scope);
    uint64_t mask = ldmc_op_table[n->op].attr_mask;
    int k = __builtin_popcountll(mask);
    if (k == 0) continue;
    pn->attrs = enc_alloc(e, (size_t)k * sizeof *pn->attrs);
    Ldmc__Attr *attrs = enc_alloc(e, (size_t)k * sizeof *attrs);
    if (!pn->attrs || !attrs) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    for (int f = 0; f < LDMC_ATTR_COUNT; f++) {
      if (!(mask >> f & 1)) continue;
      bool skip;
      LDMC_TRY(enc_attr(e, g, i, (ldmc_attr_field)f, &attrs[pn->n_attrs], &skip));
      if (!skip) {
        pn->attrs[pn->n_attrs] = &attrs[pn->n_attrs];
        pn->n_attrs++;
      }
    }
  }
  pg->n_outputs = (size_t)g->n_outputs;
  pg->outputs = enc_alloc(e, (size_t)g->n_outputs * sizeof *pg->outputs);
  Ldmc__Output *outs = enc_alloc(e, (size_t)g->n_outputs * sizeof *outs);
  if (!pg->outputs || !outs) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < g->n_outputs; i++) {
    ldmc__output__init(&outs[i]);
    outs[i].node = g->outputs[i];
    outs[i].name = bin_str(g->output_names[i]);
    pg->outputs[i] = &outs[i];
  }
  return LDMC_OK;
}

static ldmc_status enc_all(enc *e, const ldmc_module *m, const ldmc_header_extra *x) {
  uint8_t prelude[LDMC_PRELUDE_SIZE] = {0};
  LDMC_TRY(enc_write(e, prelude, sizeof prelude)); /* patched at the end */
  Ldmc__Header h;
  ldmc__header__init(&h);
  LDMC_TRY(check_unique_names(&m->tensors));
  if (m->tensors.n > 0) {
    h.n_tensors = (size_t)m->tensors.n;
    h.tensors = enc_alloc(e, h.n_tensors * sizeof *h.tensors);
    Ldmc__Tensor *ts = enc_alloc(e, h.n_tensors * sizeof *ts);
    if (!h.tensors || !ts) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < m->tensors.n; i++) {
      LDMC_TRY(enc_tensor(e, &m->tensors.items[i], i, &ts[i]));
      h.tensors[i] = &ts[i];
    }
  }
  Ldmc__Graph pg;
  if (m->graph) {
    LDMC_TRY(enc_graph(e, m->graph, &pg));
    h.graph = &pg;
  }
  size_t hlen = ldmc__header__get_packed_size(&h);
  uint8_t *hbuf = malloc(hlen ? hlen : 1);
  if (!hbuf) return ldmc_error(LDMC_ERR_NOMEM, "out of memory packing a %zu-byte header", hlen);
  ldmc__header__pack(&h, hbuf);
  uint64_t hoff = e->pos;
  uint8_t *xbuf = NULL;
  size_t xlen = 0;
  ldmc_status s = x ? x->extra(x->ctx, hbuf, hlen, &xbuf, &xlen) : LDMC_OK;
  if (s == LDMC_OK) s = enc_write(e, hbuf, hlen);
  if (s == LDMC_OK && xlen) s = enc_write(e, xbuf, xlen);
  free(hbuf);
  free(xbuf);
  LDMC_TRY(s);
  hlen += xlen;
  memcpy(prelude, LDMC_FILE_MAGIC, 4);
  ldmc_put_u32le(prelude + 4, LDMC_FILE_VERSION);
  ldmc_put_u64le(prelude + 8, hoff);
  ldmc_put_u64le(prelude + 16, hlen);
  return e->sink->patch(e->sink->ctx, 0, prelude, sizeof prelude);
}

ldmc_status ldmc_module_encode_to(const ldmc_module *m, const ldmc_byte_sink *sink) {
  return ldmc_module_encode_ext(m, NULL, sink);
}

ldmc_status ldmc_module_encode_ext(const ldmc_module *m, const ldmc_header_extra *x, const ldmc_byte_sink *sink) {
  enc e = {.sink = sink};
  ldmc_status s = LDMC_OK;
  e.cctx = ZSTD_createCCtx();
  e.cbuf_len = ZSTD_compressBound(LDMC_CHUNK_RAW);
  e.cbuf = malloc(e.cbuf_len);
  if (!e.cctx || !e.cbuf) s = ldmc_error(LDMC_ERR_NOMEM, "out of memory creating a zstd compressor");
  if (s == LDMC_OK) {
    ZSTD_CCtx_setParameter(e.cctx, ZSTD_c_compressionLevel, LDMC_ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(e.cctx, ZSTD_c_checksumFlag, 1); /* readers detect corrupted data */
    s = enc_all(&e, m, x);
  }
  for (size_t i = 0; i < e.n_allocs; i++) free(e.allocs[i]);
  free(e.allocs);
  free(e.cbuf);
  ZSTD_freeCCtx(e.cctx);
  return s;
}

/* ---- in-memory sink ---- */
static ldmc_status mem_write(void *ctx, const void *data, size_t len) {
  ldmc_membuf *b = ctx;
  if (len > SIZE_MAX - b->len) return ldmc_error(LDMC_ERR_NOMEM, "encoded file is too large");
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + len) cap = cap > SIZE_MAX / 2 ? b->len + len : cap * 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return ldmc_error(LDMC_ERR_NOMEM, "out of memory growing an encoded file to %zu bytes", cap);
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, len);
  b->len += len;
  return LDMC_OK;
}

static ldmc_status mem_patch(void *ctx, uint64_t offset, const void *data, size_t len) {
  ldmc_membuf *b = ctx;
  if (offset > b->len || len > b->len - offset) return ldmc_error(LDMC_ERR_INTERNAL, "patch past the end of the buffer");
  memcpy(b->p + offset, data, len);
  return LDMC_OK;
}

ldmc_byte_sink ldmc_membuf_sink(ldmc_membuf *b) { return (ldmc_byte_sink){mem_write, mem_patch, b}; }

ldmc_status ldmc_module_encode(const ldmc_module *m, uint8_t **out, size_t *out_len) {
  ldmc_membuf b = {0};
  ldmc_byte_sink sink = ldmc_membuf_sink(&b);
  *out = NULL;
  *out_len = 0;
  ldmc_status s = ldmc_module_encode_to(m, &sink);
  if (s != LDMC_OK) {
    free(b.p);
    return s;
  }
  *out = b.p;
  *out_len = b.len;
  return LDMC_OK;
}
