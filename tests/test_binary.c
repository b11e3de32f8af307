/* The .ldmc container: layout, bit-exact round trips, hostile input, atomic
 * files. Oracles: the layout documented in docs/formats.md checked byte by
 * byte (prelude fields, the header unpacked with protobuf-c directly, chunks
 * decompressed with zstd directly), original bytes compared with memcmp, a
 * structural graph comparison that does not use the codec, and headers built
 * by hand for every rule the reader enforces. */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "frontend/weights_io.h"
#include "ir/ir.h"
#include "ir/ldmc.pb-c.h"
#include "support/fileio.h"
#include "support/half.h"
#include "test_util.h"

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static ldmc_shape shp(int rank, ...) {
  va_list ap;
  va_start(ap, rank);
  ldmc_shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) s.dims[i] = va_arg(ap, int64_t);
  va_end(ap);
  return s;
}
#define S0() shp(0)
#define S1(a) shp(1, (int64_t)(a))
#define S2(a, b) shp(2, (int64_t)(a), (int64_t)(b))
#define S3(a, b, c) shp(3, (int64_t)(a), (int64_t)(b), (int64_t)(c))
#define S4(a, b, c, d) shp(4, (int64_t)(a), (int64_t)(b), (int64_t)(c), (int64_t)(d))

/* Adds a tensor whose bytes are given. */
static void add_tensor(ldmc_tensor_set *s, const char *name, ldmc_dtype dt, ldmc_shape sh, const void *bytes) {
  ldmc_tensor t;
  CHECK(ldmc_tensor_alloc(&t, name, dt, &sh) == LDMC_OK);
  if (t.nbytes) memcpy(t.data, bytes, t.nbytes);
  CHECK(ldmc_tensor_set_add(s, &t) == LDMC_OK);
}

static void add_raw_tensor(ldmc_tensor_set *s, const char *name, const char *raw, ldmc_shape sh, const void *bytes,
                           size_t nbytes) {
  ldmc_tensor t = {0};
  t.name = strdup(name);
  t.dtype = LDMC_DTYPE_COUNT;
  strcpy(t.raw_dtype, raw);
  t.shape = sh;
  t.nbytes = nbytes;
  t.data = malloc(nbytes ? nbytes : 1);
  memcpy(t.data, bytes, nbytes);
  t.owns_data = true;
  CHECK(ldmc_tensor_set_add(s, &t) == LDMC_OK);
}

static bool tensors_equal(const ldmc_tensor_set *a, const ldmc_tensor_set *b, char *why, size_t len) {
  if (a->n != b->n) return snprintf(why, len, "counts %d vs %d", a->n, b->n), false;
  for (int32_t i = 0; i < a->n; i++) {
    const ldmc_tensor *x = &a->items[i], *y = &b->items[i];
    if (strcmp(x->name, y->name) || x->dtype != y->dtype || strcmp(x->raw_dtype, y->raw_dtype) ||
        !ldmc_shape_equal(&x->shape, &y->shape) || x->nbytes != y->nbytes)
      return snprintf(why, len, "tensor %d '%s' header differs", i, x->name), false;
    if (x->nbytes && memcmp(x->data, y->data, x->nbytes))
      return snprintf(why, len, "tensor %d '%s' bytes differ", i, x->name), false;
  }
  return true;
}

/* ---- layout, checked against docs/formats.md without the decoder ---- */
static void test_layout(void) {
  ldmc_module m = {0};
  float v[2] = {1.0f, -2.5f};
  add_tensor(&m.tensors, "w", LDMC_F32, S1(2), v);
  uint8_t *buf;
  size_t len;
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_OK);
  CHECK(len > 24 && memcmp(buf, "LDMC", 4) == 0);
  CHECK(buf[4] == 1 && buf[5] == 0 && buf[6] == 0 && buf[7] == 0);
  uint64_t hoff = rd64(buf + 8), hlen = rd64(buf + 16);
  CHECK(hoff + hlen == len && hoff >= 24);
  Ldmc__Header *h = ldmc__header__unpack(NULL, hlen, buf + hoff);
  CHECK(h && h->n_tensors == 1 && !h->graph);
  if (h && h->n_tensors == 1) {
    Ldmc__Tensor *t = h->tensors[0];
    CHECK(t->name.len == 1 && t->name.data[0] == 'w' && strcmp(t->dtype, "f32") == 0 && t->raw_dtype[0] == 0);
    CHECK(t->n_dims == 1 && t->dims[0] == 2);
    CHECK(t->data && t->data->raw_size == 8 && t->data->n_chunks == 1);
    if (t->data && t->data->n_chunks == 1) {
      Ldmc__Chunk *c = t->data->chunks[0];
      CHECK(c->offset == 24 && c->raw_size == 8 && c->offset + c->size == hoff);
      float out[2] = {0};
      size_t r = ZSTD_decompress(out, sizeof out, buf + c->offset, c->size);
      CHECK(r == 8 && memcmp(out, v, 8) == 0);
      CHECK(ZSTD_getFrameContentSize(buf + c->offset, c->size) == 8);
    }
  }
  ldmc__header__free_unpacked(h, NULL);
  free(buf);
  ldmc_module_free(&m);
}

/* ---- tensors: every dtype, NaN payloads, empty, rank 0 and 8, raw, multi-chunk ---- */
static void build_tensor_module(ldmc_module *m) {
  memset(m, 0, sizeof *m);
  uint32_t f32[6] = {0x7fc00001u, 0xffffffffu, 0x7f800001u /* signalling */, 0x80000000u, 0x00000001u, 0x3f800000u};
  add_tensor(&m->tensors, "f32.nan_payloads", LDMC_F32, S2(2, 3), f32);
  uint16_t bf[4] = {0x7fc1, 0xff81, 0x8000, ldmc_f32_to_bf16(0.1f)};
  add_tensor(&m->tensors, "bf16", LDMC_BF16, S1(4), bf);
  uint16_t hf[4] = {0x7e01, 0xfc01, 0x0001, ldmc_f32_to_f16(65504.0f)};
  add_tensor(&m->tensors, "f16", LDMC_F16, S4(1, 2, 1, 2), hf);
  int32_t i32[3] = {INT32_MIN, -1, INT32_MAX};
  add_tensor(&m->tensors, "i32", LDMC_I32, S1(3), i32);
  int64_t i64[2] = {INT64_MIN, INT64_MAX};
  add_tensor(&m->tensors, "i64", LDMC_I64, S1(2), i64);
  uint8_t pred[5] = {1, 0, 1, 1, 0};
  add_tensor(&m->tensors, "pred", LDMC_PRED, S1(5), pred);
  add_tensor(&m->tensors, "empty", LDMC_F32, S2(0, 3), NULL);
  add_tensor(&m->tensors, "empty.inner", LDMC_I64, S3(5, 0, 2), NULL);
  float scalar = -0.0f;
  add_tensor(&m->tensors, "scalar", LDMC_F32, S0(), &scalar);
  float r8[16];
  for (int i = 0; i < 16; i++) r8[i] = (float)i * 0.25f;
  ldmc_shape s8 = {8, {1, 2, 1, 2, 1, 2, 1, 2}};
  add_tensor(&m->tensors, "rank8", LDMC_F32, s8, r8);
  /* signalling NaN with a payload, pi, the smallest subnormal, -0 */
  uint64_t f64[4] = {0x7ff0000000000001ull, 0x400921fb54442d18ull, 1, 0x8000000000000000ull};
  add_tensor(&m->tensors, "f64", LDMC_F64, S2(2, 2), f64);
  uint64_t u64[2] = {UINT64_MAX, 1};
  add_raw_tensor(&m->tensors, "raw.u64", "U64", S1(2), u64, sizeof u64);
  uint8_t u8[3] = {0, 128, 255};
  add_raw_tensor(&m->tensors, "raw.u8", "U8", S1(3), u8, 3);
  /* 2.5 Mi floats = 10 MiB: three 4 MiB chunks; half noise, half zeros */
  ldmc_tensor big;
  CHECK(ldmc_tensor_alloc(&big, "big", LDMC_F32, &(ldmc_shape){1, {2621440}}) == LDMC_OK);
  uint32_t x = 12345;
  for (int64_t i = 0; i < 1310720; i++) {
    x = x * 1664525u + 1013904223u;
    memcpy((uint8_t *)big.data + 4 * i, &x, 4);
  }
  CHECK(ldmc_tensor_set_add(&m->tensors, &big) == LDMC_OK);
}

static void test_tensor_round_trip(void) {
  ldmc_module m, back;
  build_tensor_module(&m);
  uint8_t *buf;
  size_t len;
  ldmc_status st = ldmc_module_encode(&m, &buf, &len);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st != LDMC_OK) return;
  st = ldmc_module_decode(buf, len, &back);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  char why[200] = "";
  CHECK_MSG(st == LDMC_OK && tensors_equal(&m.tensors, &back.tensors, why, sizeof why), "%s", why);
  CHECK(back.graph == NULL);
  /* decoded tensors are owned and 64-byte aligned */
  for (int32_t i = 0; st == LDMC_OK && i < back.tensors.n; i++)
    CHECK(back.tensors.items[i].owns_data && (uintptr_t)back.tensors.items[i].data % 64 == 0);
  ldmc_tensor *raw = st == LDMC_OK ? ldmc_tensor_set_find(&back.tensors, "raw.u64") : NULL;
  CHECK(raw && strcmp(raw->raw_dtype, "U64") == 0 && raw->dtype == LDMC_DTYPE_COUNT);
  ldmc_tensor *d = st == LDMC_OK ? ldmc_tensor_set_find(&back.tensors, "f64") : NULL;
  CHECK(d && d->dtype == LDMC_F64 && !d->raw_dtype[0] && d->nbytes == 32);
  /* the 10 MiB tensor went out as 3 chunks of 4, 4 and 2 MiB */
  Ldmc__Header *h = ldmc__header__unpack(NULL, rd64(buf + 16), buf + rd64(buf + 8));
  CHECK(h && h->n_tensors == (size_t)m.tensors.n);
  if (h) {
    Ldmc__Blob *b = h->tensors[h->n_tensors - 1]->data;
    CHECK(b->n_chunks == 3 && b->chunks[0]->raw_size == 4u << 20 && b->chunks[2]->raw_size == 2u << 20);
    CHECK(h->tensors[6]->data == NULL || h->tensors[6]->data->n_chunks == 0); /* empty: no chunks */
    /* zeros compress: the data region is well under the raw 10 MiB + noise */
    CHECK(rd64(buf + 8) < (6u << 20) + 4096);
  }
  ldmc__header__free_unpacked(h, NULL);
  /* encode(decode(x)) == x byte for byte */
  uint8_t *buf2;
  size_t len2;
  CHECK(st == LDMC_OK && ldmc_module_encode(&back, &buf2, &len2) == LDMC_OK);
  if (st == LDMC_OK) {
    CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);
  }
  free(buf);
  ldmc_module_free(&back);
  ldmc_module_free(&m);
}

/* A tensor written as raw "F64" (before f64 was an ldmc dtype) reads as
 * f64, bytes unchanged; the file is the encoder's with its header rewritten. */
static void test_legacy_raw_f64(void) {
  ldmc_module m = {0}, back;
  const double v[3] = {0.1, -1.0 / 3, 0x1p-1074};
  add_tensor(&m.tensors, "w", LDMC_F64, S1(3), v);
  uint8_t *buf;
  size_t len;
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_OK);
  ldmc_module_free(&m);
  uint64_t hoff = rd64(buf + 8);
  Ldmc__Header *h = ldmc__header__unpack(NULL, rd64(buf + 16), buf + hoff);
  CHECK(h && h->n_tensors == 1 && strcmp(h->tensors[0]->dtype, "f64") == 0);
  if (!h) {
    free(buf);
    return;
  }
  char *dt = h->tensors[0]->dtype, *raw = h->tensors[0]->raw_dtype;
  h->tensors[0]->dtype = "";
  h->tensors[0]->raw_dtype = "F64";
  size_t hlen = ldmc__header__get_packed_size(h);
  uint8_t *old = malloc(hoff + hlen);
  memcpy(old, buf, hoff);
  ldmc__header__pack(h, old + hoff);
  for (int i = 0; i < 8; i++) old[16 + i] = (uint8_t)(hlen >> (8 * i));
  h->tensors[0]->dtype = dt;
  h->tensors[0]->raw_dtype = raw;
  ldmc__header__free_unpacked(h, NULL);
  ldmc_status st = ldmc_module_decode(old, hoff + hlen, &back);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st == LDMC_OK) {
    const ldmc_tensor *t = ldmc_tensor_set_find(&back.tensors, "w");
    CHECK(t && t->dtype == LDMC_F64 && !t->raw_dtype[0] && t->nbytes == 24 && memcmp(t->data, v, 24) == 0);
    ldmc_module_free(&back);
  }
  free(old);
  free(buf);
}

/* ---- graphs ---- */
static bool str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

/* Attribute-by-attribute comparison through the table (floats bitwise). */
static bool graphs_equal(const ldmc_graph *a, const ldmc_graph *b, char *why, size_t len) {
  if (!str_eq(a->name, b->name)) return snprintf(why, len, "names differ"), false;
  if (a->n_nodes != b->n_nodes) return snprintf(why, len, "node counts %d vs %d", a->n_nodes, b->n_nodes), false;
  for (int32_t i = 0; i < a->n_nodes; i++) {
    const ldmc_node *x = &a->nodes[i], *y = &b->nodes[i];
    if (x->op != y->op || x->dtype != y->dtype || !ldmc_shape_equal(&x->shape, &y->shape) ||
        x->n_operands != y->n_operands || !str_eq(x->scope, y->scope))
      return snprintf(why, len, "node %d header differs", i), false;
    for (int k = 0; k < x->n_operands; k++)
      if (x->operands[k] != y->operands[k]) return snprintf(why, len, "node %d operand %d", i, k), false;
    uint64_t mask = ldmc_op_table[x->op].attr_mask;
    for (int f = 0; f < LDMC_ATTR_COUNT; f++) {
      if (!(mask >> f & 1u)) continue;
      const char *pa = (const char *)&x->attrs + ldmc_attr_table[f].offset;
      const char *pb = (const char *)&y->attrs + ldmc_attr_table[f].offset;
      bool same = true;
      switch (ldmc_attr_table[f].kind) {
        case LDMC_AK_INT: same = *(const int64_t *)pa == *(const int64_t *)pb; break;
        case LDMC_AK_FLOAT: same = memcmp(pa, pb, sizeof(double)) == 0; break;
        case LDMC_AK_INTS: {
          const ldmc_ints *u = (const ldmc_ints *)pa, *v = (const ldmc_ints *)pb;
          same = u->n == v->n && memcmp(u->v, v->v, (size_t)u->n * sizeof u->v[0]) == 0;
          break;
        }
        case LDMC_AK_STRING: {
          const char *u = *(char *const *)pa, *v = *(char *const *)pb;
          same = (!u && !v) || (u && v && strcmp(u, v) == 0);
          break;
        }
        case LDMC_AK_LITERAL: {
          const ldmc_literal *u = (const ldmc_literal *)pa, *v = (const ldmc_literal *)pb;
          same = u->nbytes == v->nbytes && (u->nbytes == 0 || memcmp(u->data, v->data, u->nbytes) == 0);
          break;
        }
        case LDMC_AK_COMPARE: same = *(const ldmc_compare *)pa == *(const ldmc_compare *)pb; break;
        case LDMC_AK_REDUCE: same = *(const ldmc_reduce_kind *)pa == *(const ldmc_reduce_kind *)pb; break;
      }
      if (!same) return snprintf(why, len, "node %d attribute %s", i, ldmc_attr_table[f].name), false;
    }
  }
  if (a->n_outputs != b->n_outputs) return snprintf(why, len, "output counts differ"), false;
  for (int32_t i = 0; i < a->n_outputs; i++)
    if (a->outputs[i] != b->outputs[i] || !str_eq(a->output_names[i], b->output_names[i]))
      return snprintf(why, len, "output %d differs", i), false;
  return true;
}


/* ---- a graph with every op (its own copy: test_text.c's is static) ---- */
static int32_t gadd(ldmc_graph *g, ldmc_op op, ldmc_dtype dt, ldmc_shape s, int n, const int32_t *ops,
                    const ldmc_attrs *a, const char *scope) {
  int32_t id = ldmc_graph_add_checked(g, op, dt, &s, n, ops, a, scope);
  CHECK_MSG(id >= 0, "adding %s: %s", ldmc_op_name(op), ldmc_last_error());
  return id;
}
static int32_t param(ldmc_graph *g, const char *name, ldmc_dtype dt, ldmc_shape s) {
  ldmc_attrs a = {0};
  a.name = (char *)name;
  return gadd(g, LDMC_OP_PARAMETER, dt, s, 0, NULL, &a, NULL);
}
static int32_t constant(ldmc_graph *g, ldmc_dtype dt, ldmc_shape s, const void *data, size_t nbytes) {
  ldmc_attrs a = {0};
  a.value.data = (void *)data;
  a.value.nbytes = nbytes;
  return gadd(g, LDMC_OP_CONSTANT, dt, s, 0, NULL, &a, NULL);
}
static ldmc_ints ints(int n, const int64_t *v) {
  ldmc_ints r = {.n = n};
  for (int i = 0; i < n; i++) r.v[i] = v[i];
  return r;
}
#define INTS(...) ints((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static ldmc_graph *every_op_graph(void) {
  ldmc_graph *g = ldmc_graph_new("every op \"binary\"");
  int32_t x = param(g, "x", LDMC_F32, S2(2, 3)), y = param(g, "y\n", LDMC_F32, S2(2, 3));
  int32_t z = param(g, "z", LDMC_F32, S1(3)), img = param(g, "img", LDMC_F32, S4(1, 4, 8, 8));
  int32_t w = param(g, "w", LDMC_F32, S4(8, 2, 3, 3)), gam = param(g, "gamma", LDMC_F32, S1(4));
  int32_t bet = param(g, "beta", LDMC_F32, S1(4)), g3 = param(g, "g3", LDMC_F32, S1(3)), b3 = param(g, "b3", LDMC_F32, S1(3));
  int32_t q = param(g, "q", LDMC_F16, S3(2, 4, 8)), k = param(g, "k", LDMC_F16, S3(2, 6, 8));
  int32_t v = param(g, "v", LDMC_F16, S3(2, 6, 5));
  param(g, "pb", LDMC_BF16, S2(1, 1));
  param(g, "pp", LDMC_PRED, S1(0));
  float s = 1.5f;
  int32_t cs = constant(g, LDMC_F32, S0(), &s, 4);
  uint32_t nan_payloads[6] = {0x7fc00001u, 0xffbfffffu, 0x7f800001u, 0x80000000u, 1u, 0x7f800000u};
  constant(g, LDMC_F32, S2(2, 3), nan_payloads, sizeof nan_payloads);
  uint16_t bf[2] = {0x7fc1, 0xff80};
  constant(g, LDMC_BF16, S1(2), bf, sizeof bf);
  uint16_t hf[2] = {0x7e01, 0x0001};
  constant(g, LDMC_F16, S1(2), hf, sizeof hf);
  int32_t i32v[3] = {INT32_MIN, INT32_MAX, 0};
  constant(g, LDMC_I32, S3(1, 3, 1), i32v, sizeof i32v);
  uint8_t pv[3] = {1, 0, 1};
  constant(g, LDMC_PRED, S1(3), pv, sizeof pv);
  constant(g, LDMC_F32, S2(0, 3), NULL, 0);
  float big[3000]; /* 12000 bytes: stored as a chunked blob, not inline */
  for (int i = 0; i < 3000; i++) big[i] = (float)i / 7.0f;
  constant(g, LDMC_F32, S2(1000, 3), big, sizeof big);
  int64_t keyv = 42;
  int32_t key = constant(g, LDMC_I64, S0(), &keyv, 8);
  ldmc_attrs a = {0};
  int32_t idx = gadd(g, LDMC_OP_IOTA, LDMC_I32, S1(4), 0, NULL, &a, NULL);
  gadd(g, LDMC_OP_RNG_UNIFORM, LDMC_F32, S2(2, 3), 1, &key, NULL, NULL);
  gadd(g, LDMC_OP_RNG_NORMAL, LDMC_BF16, S1(4), 1, &key, NULL, "noise");
  gadd(g, LDMC_OP_CONVERT, LDMC_F16, S0(), 1, &x, NULL, NULL);
  const ldmc_op unary[] = {LDMC_OP_NEG, LDMC_OP_ABS, LDMC_OP_EXP, LDMC_OP_LOG, LDMC_OP_SQRT, LDMC_OP_RSQRT,
                           LDMC_OP_TANH, LDMC_OP_LOGISTIC, LDMC_OP_SIN, LDMC_OP_COS, LDMC_OP_ERF, LDMC_OP_SILU,
                           LDMC_OP_GELU};
  for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) gadd(g, unary[i], LDMC_F32, S0(), 1, &x, NULL, NULL);
  int32_t xy[2] = {x, y};
  const ldmc_op binary[] = {LDMC_OP_ADD, LDMC_OP_SUB, LDMC_OP_MUL, LDMC_OP_DIV, LDMC_OP_MAX, LDMC_OP_MIN, LDMC_OP_POW};
  for (size_t i = 0; i < sizeof binary / sizeof binary[0]; i++) gadd(g, binary[i], LDMC_F32, S0(), 2, xy, NULL, "blöck");
  a = (ldmc_attrs){.direction = LDMC_CMP_GE};
  int32_t cmp = gadd(g, LDMC_OP_COMPARE, LDMC_PRED, S0(), 2, xy, &a, NULL);
  int32_t sel[3] = {cmp, x, y};
  gadd(g, LDMC_OP_SELECT, LDMC_F32, S0(), 3, sel, NULL, NULL);
  a = (ldmc_attrs){.dims = INTS(1)};
  gadd(g, LDMC_OP_BROADCAST_IN_DIM, LDMC_F32, S2(2, 3), 1, &z, &a, NULL);
  gadd(g, LDMC_OP_RESHAPE, LDMC_F32, S2(3, 2), 1, &x, NULL, NULL);
  a = (ldmc_attrs){.dims = INTS(1, 0)};
  gadd(g, LDMC_OP_TRANSPOSE, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){.start = INTS(0, 1), .limit = INTS(2, 3), .stride = INTS(1, 2)};
  gadd(g, LDMC_OP_SLICE, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){.axis = 0};
  int32_t cat[3] = {x, y, x};
  gadd(g, LDMC_OP_CONCATENATE, LDMC_F32, S0(), 3, cat, &a, NULL);
  a = (ldmc_attrs){.low = INTS(1, -1), .high = INTS(0, 2), .interior = INTS(1, 0)};
  int32_t padops[2] = {x, cs};
  gadd(g, LDMC_OP_PAD, LDMC_F32, S0(), 2, padops, &a, NULL);
  a = (ldmc_attrs){.axis = 1};
  int32_t gops[2] = {x, idx};
  int32_t gat = gadd(g, LDMC_OP_GATHER, LDMC_F32, S0(), 2, gops, &a, NULL);
  int32_t sops[3] = {x, idx, gat};
  gadd(g, LDMC_OP_SCATTER_ADD, LDMC_F32, S0(), 3, sops, &a, NULL);
  a = (ldmc_attrs){.reduce = LDMC_REDUCE_MIN, .dims = INTS(1)};
  gadd(g, LDMC_OP_REDUCE, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){.lhs_batch = INTS(0), .rhs_batch = INTS(0), .lhs_contract = INTS(1), .rhs_contract = INTS(1)};
  gadd(g, LDMC_OP_DOT_GENERAL, LDMC_F32, S0(), 2, xy, &a, NULL);
  a = (ldmc_attrs){.window_stride = INTS(2, 1), .pad_low = INTS(1, 0), .pad_high = INTS(1, 2),
                   .lhs_dilation = INTS(1, 1), .rhs_dilation = INTS(1, 2), .groups = 2,
                   .input_dims = INTS(0, 1, 2, 3), .kernel_dims = INTS(0, 1, 2, 3), .output_dims = INTS(0, 1, 2, 3)};
  int32_t conv_ops[2] = {img, w};
  int32_t conv = gadd(g, LDMC_OP_CONVOLUTION, LDMC_F32, S0(), 2, conv_ops, &a, "down_blocks.0");
  a = (ldmc_attrs){.axis = 1};
  gadd(g, LDMC_OP_SOFTMAX, LDMC_F32, S0(), 1, &x, &a, NULL);
  a = (ldmc_attrs){.groups = 2, .eps = 1e-5};
  int32_t gn[3] = {img, gam, bet};
  gadd(g, LDMC_OP_GROUP_NORM, LDMC_F32, S0(), 3, gn, &a, NULL);
  a = (ldmc_attrs){.axis = 1};
  uint64_t tiny = 1; /* the smallest subnormal double: its bits must survive */
  memcpy(&a.eps, &tiny, 8);
  int32_t ln[3] = {x, g3, b3};
  gadd(g, LDMC_OP_LAYER_NORM, LDMC_F32, S0(), 3, ln, &a, NULL);
  a = (ldmc_attrs){.scale = 0.35355339059327373};
  int32_t at[3] = {q, k, v};
  int32_t att = gadd(g, LDMC_OP_ATTENTION, LDMC_F16, S0(), 3, at, &a, "mid.attn");
  a = (ldmc_attrs){.factor = 2};
  int32_t up = gadd(g, LDMC_OP_UPSAMPLE_NEAREST, LDMC_F32, S0(), 1, &img, &a, NULL);
  int32_t pd = param(g, "pd", LDMC_F64, S1(3));
  const double dv[3] = {0.1, 1.0 / 3, 0x1p-1074};
  int32_t dd[2] = {pd, constant(g, LDMC_F64, S1(3), dv, sizeof dv)};
  int32_t sum = gadd(g, LDMC_OP_ADD, LDMC_F64, S0(), 2, dd, NULL, NULL);
  a = (ldmc_attrs){.scale = 0.35355339059327373}; /* attention's backward ops */
  int32_t lse = gadd(g, LDMC_OP_ATTENTION_LSE, LDMC_F32, S0(), 2, at, &a, "grad.mid.attn");
  int32_t gops6[6] = {q, k, v, att, lse, lse};
  gadd(g, LDMC_OP_ATTENTION_GRAD_Q, LDMC_F32, S0(), 6, gops6, &a, NULL);
  gadd(g, LDMC_OP_ATTENTION_GRAD_KV, LDMC_F32, S0(), 6, gops6, &a, NULL);
  ldmc_graph_add_output(g, conv, "conv");
  ldmc_graph_add_output(g, att, "attn \"out\"");
  ldmc_graph_add_output(g, up, "up");
  ldmc_graph_add_output(g, sum, "f64 sum");
  return g;
}

static void test_graph_round_trip(void) {
  ldmc_module m = {0}, back;
  m.graph = every_op_graph();
  CHECK_MSG(ldmc_graph_verify(m.graph) == LDMC_OK, "%s", ldmc_last_error());
  uint64_t seen = 0;
  for (int32_t i = 0; i < m.graph->n_nodes; i++) seen |= UINT64_C(1) << m.graph->nodes[i].op;
  CHECK_MSG(seen == (UINT64_C(1) << LDMC_OP_COUNT) - 1, "ops missing: %#" PRIx64, ~seen & ((UINT64_C(1) << LDMC_OP_COUNT) - 1));
  float w[3] = {1, 2, 3};
  add_tensor(&m.tensors, "weights", LDMC_F32, S1(3), w);
  uint8_t *buf;
  size_t len;
  ldmc_status st = ldmc_module_encode(&m, &buf, &len);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st != LDMC_OK) return;
  st = ldmc_module_decode(buf, len, &back);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st == LDMC_OK) {
    char why[200] = "";
    CHECK_MSG(back.graph && graphs_equal(m.graph, back.graph, why, sizeof why), "%s", why);
    CHECK_MSG(tensors_equal(&m.tensors, &back.tensors, why, sizeof why), "%s", why);
    char *t1 = ldmc_graph_print(m.graph), *t2 = back.graph ? ldmc_graph_print(back.graph) : NULL;
    CHECK(t1 && t2 && strcmp(t1, t2) == 0);
    free(t1);
    free(t2);
    ldmc_module_free(&back);
  }
  /* the large constant went to the data region, the small ones stayed inline */
  Ldmc__Header *h = ldmc__header__unpack(NULL, rd64(buf + 16), buf + rd64(buf + 8));
  int blobs = 0, inl = 0;
  for (size_t i = 0; h && h->graph && i < h->graph->n_nodes; i++)
    for (size_t k = 0; k < h->graph->nodes[i]->n_attrs; k++) {
      blobs += h->graph->nodes[i]->attrs[k]->value_case == LDMC__ATTR__VALUE_BLOB;
      inl += h->graph->nodes[i]->attrs[k]->value_case == LDMC__ATTR__VALUE_RAW;
    }
  CHECK(blobs == 1 && inl >= 8);
  ldmc__header__free_unpacked(h, NULL);
  free(buf);
  ldmc_module_free(&m);
}

/* ---- files: atomic save, load, failures leave nothing behind ---- */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  if (d) closedir(d);
  return n;
}

static void test_files(void) {
  char dir[] = "/tmp/ldmc_test_binary.XXXXXX", path[256], missing[300];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/m.ldmc", dir);
  ldmc_module m, back;
  build_tensor_module(&m);
  m.graph = every_op_graph();
  ldmc_status st = ldmc_module_save(path, &m);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  CHECK(count_entries(dir) == 1);
  st = ldmc_module_load(path, &back);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  char why[200] = "";
  if (st == LDMC_OK) {
    CHECK_MSG(tensors_equal(&m.tensors, &back.tensors, why, sizeof why), "%s", why);
    CHECK_MSG(back.graph && graphs_equal(m.graph, back.graph, why, sizeof why), "%s", why);
    ldmc_module_free(&back);
  }
  /* the file holds exactly what encode produces */
  uint8_t *enc, *file;
  size_t enc_len, file_len;
  CHECK(ldmc_module_encode(&m, &enc, &enc_len) == LDMC_OK);
  CHECK(ldmc_file_read(path, 1u << 30, &file, &file_len) == LDMC_OK);
  CHECK(file_len == enc_len && memcmp(enc, file, enc_len) == 0);
  free(file);

  /* a module that cannot be written leaves the old file as it was, no temp */
  ldmc_module badm = {0};
  add_tensor(&badm.tensors, "a", LDMC_F32, S1(2), (float[]){1, 2});
  badm.tensors.items[0].nbytes = 4; /* lies about its size */
  CHECK(ldmc_module_save(path, &badm) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), path) && strstr(ldmc_last_error(), "tensor 'a'"));
  CHECK(count_entries(dir) == 1);
  CHECK(ldmc_file_read(path, 1u << 30, &file, &file_len) == LDMC_OK);
  CHECK(file_len == enc_len && memcmp(enc, file, enc_len) == 0);
  free(file);
  badm.tensors.items[0].nbytes = 8;
  ldmc_module_free(&badm);
  free(enc);

  /* overwriting replaces the file */
  ldmc_module small = {0};
  add_tensor(&small.tensors, "only", LDMC_I32, S1(1), (int32_t[]){7});
  CHECK(ldmc_module_save(path, &small) == LDMC_OK);
  CHECK(ldmc_module_load(path, &back) == LDMC_OK && back.tensors.n == 1 && !back.graph);
  ldmc_module_free(&back);
  ldmc_module_free(&small);
  CHECK(count_entries(dir) == 1);

  /* i/o errors name the path */
  snprintf(missing, sizeof missing, "%s/no/such/dir/m.ldmc", dir);
  CHECK(ldmc_module_save(missing, &m) == LDMC_ERR_IO && strstr(ldmc_last_error(), "no/such/dir"));
  CHECK(ldmc_module_load(missing, &back) == LDMC_ERR_IO && strstr(ldmc_last_error(), missing));
  /* a truncated file: the message names the file and what is wrong */
  CHECK(ldmc_module_save(path, &m) == LDMC_OK);
  CHECK(truncate(path, 100) == 0);
  CHECK(ldmc_module_load(path, &back) == LDMC_ERR_FORMAT);
  CHECK_MSG(strstr(ldmc_last_error(), path) && strstr(ldmc_last_error(), "100-byte file"), "%s", ldmc_last_error());
  CHECK(back.graph == NULL && back.tensors.n == 0);

  /* fileio: size cap, empty files, atomic one-shot write */
  CHECK(ldmc_file_write_atomic(path, "hello", 5) == LDMC_OK);
  CHECK(ldmc_file_read(path, 4, &file, &file_len) == LDMC_ERR_IO && strstr(ldmc_last_error(), "4-byte limit"));
  CHECK(ldmc_file_read(path, 5, &file, &file_len) == LDMC_OK && file_len == 5 && file[5] == 0 &&
        memcmp(file, "hello", 5) == 0);
  free(file);
  CHECK(ldmc_file_write_atomic(path, "", 0) == LDMC_OK);
  ldmc_file_map *map;
  CHECK(ldmc_file_map_open(path, &map) == LDMC_OK && map->len == 0);
  ldmc_file_map_release(map);
  CHECK(ldmc_module_load(path, &back) == LDMC_ERR_FORMAT);
  CHECK(ldmc_file_map_open(dir, &map) == LDMC_ERR_IO); /* a directory */
  ldmc_atomic_file *af;
  CHECK(ldmc_atomic_open(path, &af) == LDMC_OK);
  CHECK(ldmc_atomic_write(af, "partial", 7) == LDMC_OK);
  CHECK(count_entries(dir) == 2); /* the temp file exists while writing ... */
  ldmc_atomic_abort(af);
  CHECK(count_entries(dir) == 1); /* ... and is gone after abort; the target is untouched */
  struct stat sb;
  CHECK(stat(path, &sb) == 0 && sb.st_size == 0);

  unlink(path);
  rmdir(dir);
  ldmc_module_free(&m);
}

int main(void) {
  test_layout();
  test_tensor_round_trip();
  test_legacy_raw_f64();
  test_graph_round_trip();
  test_files();
  return test_summary("test_binary");
}
