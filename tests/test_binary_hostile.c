/* The .ldmc reader on hostile input. Every rule the reader enforces gets a
 * file built by hand (the protobuf header assembled field by field, chunks
 * made with zstd directly), and the test checks the status and that the
 * message names what and where. Truncations and byte flips of a valid file
 * must fail cleanly or decode; under ASan/UBSan nothing may crash. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "ir/ir.h"
#include "ir/ldmc.pb-c.h"
#include "test_util.h"

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* prelude + region (the data after the prelude) + packed header */
static uint8_t *assemble(const Ldmc__Header *h, const uint8_t *region, size_t rlen, size_t *len) {
  size_t hlen = ldmc__header__get_packed_size(h);
  *len = 24 + rlen + hlen;
  uint8_t *b = malloc(*len);
  memcpy(b, "LDMC", 4);
  b[4] = 1, b[5] = b[6] = b[7] = 0;
  put64(b + 8, 24 + rlen);
  put64(b + 16, hlen);
  if (rlen) memcpy(b + 24, region, rlen);
  ldmc__header__pack(h, b + 24 + rlen);
  return b;
}

/* Decodes; expects failure with the status and every listed substring. */
static void expect_fail(const uint8_t *b, size_t len, ldmc_status want, int line, ...) {
  ldmc_module m;
  ldmc_status st = ldmc_module_decode(b, len, &m);
  const char *msg = ldmc_last_error();
  CHECK_MSG(st == want, "line %d: status %s, want %s (%s)", line, ldmc_status_name(st), ldmc_status_name(want), msg);
  CHECK_MSG(m.graph == NULL && m.tensors.n == 0 && m.tensors.items == NULL, "line %d: output not left empty", line);
  va_list ap;
  va_start(ap, line);
  for (const char *s; (s = va_arg(ap, const char *));) CHECK_MSG(strstr(msg, s) != NULL, "line %d: '%s' not in \"%s\"", line, s, msg);
  va_end(ap);
  if (st == LDMC_OK) ldmc_module_free(&m);
}
#define EXPECT_FAIL(b, len, ...) expect_fail(b, len, LDMC_ERR_FORMAT, __LINE__, __VA_ARGS__, (const char *)NULL)

/* ---- fixtures: one tensor "w" f32[2] with a real chunk ---- */
typedef struct fx {
  Ldmc__Header h;
  Ldmc__Tensor t, t2;
  Ldmc__Tensor *tp[2];
  Ldmc__Blob blob, blob2;
  Ldmc__Chunk c, c2;
  Ldmc__Chunk *cp[1], *cp2[1];
  int64_t dims[9];
  uint8_t region[256];
  size_t rlen;
} fx;

static const float k_w[2] = {1.0f, 2.0f};

static void fx_init(fx *f) {
  memset(f, 0, sizeof *f);
  ldmc__header__init(&f->h);
  ldmc__tensor__init(&f->t);
  ldmc__tensor__init(&f->t2);
  ldmc__blob__init(&f->blob);
  ldmc__blob__init(&f->blob2);
  ldmc__chunk__init(&f->c);
  ldmc__chunk__init(&f->c2);
  f->rlen = ZSTD_compress(f->region, sizeof f->region, k_w, sizeof k_w, 3);
  f->t.name = (ProtobufCBinaryData){1, (uint8_t *)"w"};
  f->t.dtype = "f32";
  f->dims[0] = 2;
  f->t.dims = f->dims;
  f->t.n_dims = 1;
  f->c.offset = 24;
  f->c.size = f->rlen;
  f->c.raw_size = 8;
  f->cp[0] = &f->c;
  f->blob.raw_size = 8;
  f->blob.n_chunks = 1;
  f->blob.chunks = f->cp;
  f->t.data = &f->blob;
  f->tp[0] = &f->t;
  f->h.tensors = f->tp;
  f->h.n_tensors = 1;
}

static void fx_expect(fx *f, int line, ...) {
  size_t len;
  uint8_t *b = assemble(&f->h, f->region, f->rlen, &len);
  ldmc_module m;
  ldmc_status st = ldmc_module_decode(b, len, &m);
  const char *msg = ldmc_last_error();
  CHECK_MSG(st == LDMC_ERR_FORMAT, "line %d: status %s (%s)", line, ldmc_status_name(st), msg);
  if (st == LDMC_OK) ldmc_module_free(&m);
  CHECK_MSG(m.tensors.n == 0 && !m.graph, "line %d: output not left empty", line);
  va_list ap;
  va_start(ap, line);
  for (const char *s; (s = va_arg(ap, const char *));) CHECK_MSG(strstr(msg, s) != NULL, "line %d: '%s' not in \"%s\"", line, s, msg);
  va_end(ap);
  free(b);
}
#define FX_EXPECT(f, ...) fx_expect(f, __LINE__, __VA_ARGS__, (const char *)NULL)

static void test_fixture_is_valid(void) {
  fx f;
  fx_init(&f);
  size_t len;
  uint8_t *b = assemble(&f.h, f.region, f.rlen, &len);
  ldmc_module m;
  ldmc_status st = ldmc_module_decode(b, len, &m);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  CHECK(st == LDMC_OK && m.tensors.n == 1 && memcmp(m.tensors.items[0].data, k_w, 8) == 0);
  if (st == LDMC_OK) ldmc_module_free(&m);
  /* a limit below the 8 bytes it expands to refuses it */
  st = ldmc_module_decode_limited(b, len, 7, &m);
  CHECK(st == LDMC_ERR_FORMAT && strstr(ldmc_last_error(), "7-byte limit") && strstr(ldmc_last_error(), "tensor 'w'"));
  CHECK(ldmc_module_decode_limited(b, len, 8, &m) == LDMC_OK);
  ldmc_module_free(&m);

  /* every truncation fails cleanly; every single-byte flip fails or decodes */
  for (size_t i = 0; i < len; i++) {
    CHECK(ldmc_module_decode(b, i, &m) == LDMC_ERR_FORMAT);
    if (i + 1 == len) CHECK(strstr(ldmc_last_error(), "does not end the") || strstr(ldmc_last_error(), "shorter"));
  }
  int ok = 0, failed = 0;
  for (size_t i = 0; i < len; i++)
    for (int bit = 0; bit < 8; bit++) {
      b[i] ^= (uint8_t)(1u << bit);
      if (ldmc_module_decode(b, len, &m) == LDMC_OK) {
        ok++;
        ldmc_module_free(&m);
      } else {
        failed++;
        CHECK(ldmc_last_error()[0] != 0);
      }
      b[i] ^= (uint8_t)(1u << bit);
    }
  CHECK(failed > ok); /* most flips are caught (magic, sizes, zstd checksum, names) */
  free(b);
}

static void test_hostile_prelude(void) {
  fx f;
  fx_init(&f);
  size_t len;
  uint8_t *b = assemble(&f.h, f.region, f.rlen, &len);
  EXPECT_FAIL(b, 10, "10 bytes", "shorter than the 24-byte");
  EXPECT_FAIL(NULL, 0, "0 bytes");
  b[0] = 'X';
  EXPECT_FAIL(b, len, "bad magic");
  b[0] = 'L';
  b[4] = 2;
  EXPECT_FAIL(b, len, "version 2");
  b[4] = 1;
  uint64_t hoff = 24 + f.rlen;
  put64(b + 8, 3);
  EXPECT_FAIL(b, len, "offset 3");
  put64(b + 8, UINT64_MAX);
  EXPECT_FAIL(b, len, "does not end");
  put64(b + 8, hoff);
  put64(b + 16, UINT64_MAX - 10);
  EXPECT_FAIL(b, len, "does not end");
  put64(b + 16, len - hoff);
  uint8_t *longer = malloc(len + 1);
  memcpy(longer, b, len);
  longer[len] = 0;
  EXPECT_FAIL(longer, len + 1, "does not end"); /* trailing garbage */
  free(longer);
  memset(b + hoff, 0xff, len - hoff);
  EXPECT_FAIL(b, len, "not a valid protobuf message");
  free(b);
}

static void test_hostile_tensors(void) {
  fx f;
  fx_init(&f);
  f.t.dtype = "f31";
  FX_EXPECT(&f, "tensor 'w'", "unknown dtype 'f31'");
  fx_init(&f);
  f.t.dtype = "";
  FX_EXPECT(&f, "exactly one of dtype and raw_dtype");
  fx_init(&f);
  f.t.raw_dtype = "F64";
  FX_EXPECT(&f, "exactly one of dtype and raw_dtype");
  fx_init(&f);
  f.t.dtype = "";
  f.t.raw_dtype = "F128";
  FX_EXPECT(&f, "unknown raw dtype 'F128'");
  fx_init(&f);
  f.t.n_dims = 9;
  for (int i = 0; i < 9; i++) f.dims[i] = 1;
  FX_EXPECT(&f, "tensor 'w'", "rank 9");
  fx_init(&f);
  f.dims[0] = -2;
  FX_EXPECT(&f, "tensor 'w'", "negative");
  fx_init(&f);
  f.t.n_dims = 2;
  f.dims[0] = INT64_C(1) << 62;
  f.dims[1] = 4;
  FX_EXPECT(&f, "tensor 'w'", "overflows");
  fx_init(&f);
  f.dims[0] = 3; /* f32[3] needs 12 bytes, the blob says 8 */
  FX_EXPECT(&f, "tensor 'w'", "8 bytes", "need 12");
  fx_init(&f);
  f.t.data = NULL;
  FX_EXPECT(&f, "tensor 'w'", "no data");
  fx_init(&f);
  f.t.name = (ProtobufCBinaryData){3, (uint8_t *)"a\0b"};
  FX_EXPECT(&f, "tensor 0", "NUL");
  fx_init(&f);
  f.t.name = (ProtobufCBinaryData){0, NULL};
  FX_EXPECT(&f, "empty name");
}

static void test_hostile_chunks(void) {
  fx f;
  fx_init(&f);
  f.c.size = 1000;
  char want[128];
  snprintf(want, sizeof want, "chunk 0 at offset 24 + 1000 bytes lies outside the data region [24, %zu)", 24 + f.rlen);
  FX_EXPECT(&f, "tensor 'w'", want);
  fx_init(&f);
  f.c.offset = 4; /* inside the prelude */
  FX_EXPECT(&f, "tensor 'w'", "outside the data region");
  fx_init(&f);
  f.c.offset = UINT64_MAX - 2;
  FX_EXPECT(&f, "tensor 'w'", "outside the data region");
  fx_init(&f);
  f.c.raw_size = 0;
  FX_EXPECT(&f, "chunk 0 is empty");
  fx_init(&f);
  f.c.raw_size = 1u << 30;
  f.blob.raw_size = 1u << 30;
  f.dims[0] = 1 << 28;
  FX_EXPECT(&f, "chunk limit");
  fx_init(&f);
  f.c.raw_size = 4; /* chunks sum to 4 of the 8 declared */
  FX_EXPECT(&f, "tensor 'w'", "chunks hold 4 bytes, not the 8 declared");

  /* the frame holds 8 bytes, the chunk and the tensor claim 4 */
  fx_init(&f);
  f.dims[0] = 1;
  f.blob.raw_size = 4;
  f.c.raw_size = 4;
  FX_EXPECT(&f, "tensor 'w'", "chunk 0 at offset 24 holds 8 bytes, not the 4 declared");
  /* corrupted compressed bytes: the frame checksum or structure catches it */
  fx_init(&f);
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
  float noise[16];
  for (int i = 0; i < 16; i++) noise[i] = (float)i * 1.37f;
  f.rlen = ZSTD_compress2(cc, f.region, sizeof f.region, noise, sizeof noise);
  f.c.size = f.rlen;
  f.c.raw_size = f.blob.raw_size = sizeof noise;
  f.dims[0] = 16;
  f.region[f.rlen - 6] ^= 0x40;
  FX_EXPECT(&f, "tensor 'w'", "chunk 0");
  /* trailing bytes after the frame, counted in the chunk */
  fx_init(&f);
  f.region[f.rlen] = 0xaa;
  f.region[f.rlen + 1] = 0xbb;
  f.rlen += 2;
  f.c.size = f.rlen;
  FX_EXPECT(&f, "tensor 'w'", "not exactly one");
  /* a frame that does not record its content size */
  fx_init(&f);
  ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
  f.rlen = ZSTD_compress2(cc, f.region, sizeof f.region, k_w, sizeof k_w);
  f.c.size = f.rlen;
  FX_EXPECT(&f, "tensor 'w'", "does not record its size");
  ZSTD_freeCCtx(cc);
  /* not a zstd frame at all */
  fx_init(&f);
  memset(f.region, 0x11, f.rlen);
  FX_EXPECT(&f, "tensor 'w'", "not a zstd frame");

  /* two tensors whose chunks overlap */
  fx_init(&f);
  f.t2 = f.t;
  f.t2.name = (ProtobufCBinaryData){1, (uint8_t *)"v"};
  f.blob2 = f.blob;
  f.c2 = f.c;
  f.c2.offset = 25;
  f.c2.size = f.rlen - 1;
  f.cp2[0] = &f.c2;
  f.blob2.chunks = f.cp2;
  f.t2.data = &f.blob2;
  f.tp[1] = &f.t2;
  f.h.n_tensors = 2;
  FX_EXPECT(&f, "tensor 'w' chunk 0", "overlaps tensor 'v' chunk 0 at offset 25");
  /* the same chunk shared: also an overlap */
  f.c2.offset = 24;
  f.c2.size = f.rlen;
  FX_EXPECT(&f, "overlaps");
  /* duplicate names */
  f.t2.name = (ProtobufCBinaryData){1, (uint8_t *)"w"};
  f.t2.data = NULL;
  f.t2.n_dims = 1;
  f.dims[0] = 2;
  Ldmc__Tensor empty = f.t2;
  int64_t zero = 0;
  empty.dims = &zero;
  f.tp[1] = &empty;
  FX_EXPECT(&f, "duplicate tensor name 'w'");
}

/* ---- graphs ---- */
typedef struct gfx {
  Ldmc__Header h;
  Ldmc__Graph g;
  Ldmc__Node n[3];
  Ldmc__Node *np[3];
  Ldmc__Attr a[3];
  Ldmc__Attr *ap[3];
  Ldmc__Output o;
  Ldmc__Output *op[1];
  Ldmc__Ints ints;
  int64_t dims[2][9];
  int64_t iv[9];
  int32_t ops[2];
} gfx;

/* %0 = f32[2] parameter() name="x"; %1 = f32[2] neg(%0); return %1 as "y" */
static void gfx_init(gfx *f) {
  memset(f, 0, sizeof *f);
  ldmc__header__init(&f->h);
  ldmc__graph__init(&f->g);
  f->g.name = (ProtobufCBinaryData){1, (uint8_t *)"g"};
  for (int i = 0; i < 3; i++) {
    ldmc__node__init(&f->n[i]);
    ldmc__attr__init(&f->a[i]);
    f->np[i] = &f->n[i];
    f->ap[i] = &f->a[i];
  }
  f->n[0].op = "parameter";
  f->n[0].dtype = "f32";
  f->dims[0][0] = 2;
  f->n[0].dims = f->dims[0];
  f->n[0].n_dims = 1;
  f->a[0].name = (ProtobufCBinaryData){4, (uint8_t *)"name"};
  f->a[0].value_case = LDMC__ATTR__VALUE_S;
  f->a[0].s = (ProtobufCBinaryData){1, (uint8_t *)"x"};
  f->n[0].attrs = &f->ap[0];
  f->n[0].n_attrs = 1;
  f->n[1].op = "neg";
  f->n[1].dtype = "f32";
  f->dims[1][0] = 2;
  f->n[1].dims = f->dims[1];
  f->n[1].n_dims = 1;
  f->n[1].operands = f->ops;
  f->n[1].n_operands = 1;
  f->g.nodes = f->np;
  f->g.n_nodes = 2;
  ldmc__output__init(&f->o);
  f->o.node = 1;
  f->o.name = (ProtobufCBinaryData){1, (uint8_t *)"y"};
  f->op[0] = &f->o;
  f->g.outputs = f->op;
  f->g.n_outputs = 1;
  ldmc__ints__init(&f->ints);
  f->ints.v = f->iv;
  f->h.graph = &f->g;
}

static void gfx_expect(gfx *f, int line, ...) {
  size_t len;
  uint8_t *b = assemble(&f->h, NULL, 0, &len);
  ldmc_module m;
  ldmc_status st = ldmc_module_decode(b, len, &m);
  const char *msg = ldmc_last_error();
  CHECK_MSG(st == LDMC_ERR_FORMAT, "line %d: status %s (%s)", line, ldmc_status_name(st), msg);
  if (st == LDMC_OK) ldmc_module_free(&m);
  va_list ap;
  va_start(ap, line);
  for (const char *s; (s = va_arg(ap, const char *));) CHECK_MSG(strstr(msg, s) != NULL, "line %d: '%s' not in \"%s\"", line, s, msg);
  va_end(ap);
  free(b);
}
#define GFX_EXPECT(f, ...) gfx_expect(f, __LINE__, __VA_ARGS__, (const char *)NULL)

static void test_hostile_graph(void) {
  gfx f;
  gfx_init(&f);
  size_t len;
  uint8_t *b = assemble(&f.h, NULL, 0, &len);
  ldmc_module m;
  ldmc_status st = ldmc_module_decode(b, len, &m);
  CHECK_MSG(st == LDMC_OK, "fixture: %s", ldmc_last_error());
  CHECK(st == LDMC_OK && m.graph && m.graph->n_nodes == 2 && m.graph->nodes[1].op == LDMC_OP_NEG &&
        strcmp(m.graph->nodes[0].attrs.name, "x") == 0 && strcmp(m.graph->output_names[0], "y") == 0);
  if (st == LDMC_OK) ldmc_module_free(&m);
  free(b);

  gfx_init(&f);
  f.n[1].op = "frobnicate";
  GFX_EXPECT(&f, "node %1", "unknown op 'frobnicate'");
  gfx_init(&f);
  f.n[1].dtype = "f8";
  GFX_EXPECT(&f, "node %1 neg", "unknown dtype 'f8'");
  gfx_init(&f);
  f.n[1].n_dims = 9;
  GFX_EXPECT(&f, "node %1 neg", "rank 9");
  gfx_init(&f);
  f.dims[1][0] = -1;
  GFX_EXPECT(&f, "node %1 neg", "negative");
  gfx_init(&f);
  f.n[1].n_dims = 2;
  f.dims[1][0] = f.dims[1][1] = INT64_C(1) << 32;
  GFX_EXPECT(&f, "node %1 neg", "overflows");
  gfx_init(&f);
  f.ops[0] = 1; /* itself */
  GFX_EXPECT(&f, "node %1 neg", "operand 0 refers to %1, which is not an earlier node");
  gfx_init(&f);
  f.ops[0] = -5;
  GFX_EXPECT(&f, "operand 0 refers to %-5");
  gfx_init(&f);
  f.o.node = 7;
  GFX_EXPECT(&f, "output 0 refers to %7");
  gfx_init(&f);
  f.o.name = (ProtobufCBinaryData){2, (uint8_t *)"\0y"};
  GFX_EXPECT(&f, "output 0 name", "NUL");
  gfx_init(&f);
  f.n[1].scope = (ProtobufCBinaryData){3, (uint8_t *)"a\0b"};
  GFX_EXPECT(&f, "node %1 neg: scope", "NUL");

  /* attributes */
  gfx_init(&f);
  f.a[0].name = (ProtobufCBinaryData){6, (uint8_t *)"colour"};
  GFX_EXPECT(&f, "node %0 parameter", "unknown attribute 'colour'");
  gfx_init(&f);
  f.a[1].name = (ProtobufCBinaryData){4, (uint8_t *)"axis"};
  f.a[1].value_case = LDMC__ATTR__VALUE_I;
  f.n[1].attrs = &f.ap[1];
  f.n[1].n_attrs = 1;
  GFX_EXPECT(&f, "node %1 neg", "attribute 'axis' does not belong to this op");
  gfx_init(&f);
  f.a[1] = f.a[0];
  f.n[0].n_attrs = 2;
  GFX_EXPECT(&f, "node %0 parameter", "attribute 'name' appears twice");
  gfx_init(&f);
  f.a[0].value_case = LDMC__ATTR__VALUE_I;
  GFX_EXPECT(&f, "node %0 parameter", "attribute 'name' holds an int, expected a string");
  gfx_init(&f);
  f.n[0].n_attrs = 0; /* a parameter without a name: the verifier's rule */
  GFX_EXPECT(&f, "graph 'g'", "%0 parameter");
  gfx_init(&f);
  f.dims[1][0] = 3; /* neg's type disagrees with its operand: the verifier's rule */
  GFX_EXPECT(&f, "graph 'g'", "%1 neg");

  /* %1 = reduce with bad kind / too many dims; compare with a bad direction */
  gfx_init(&f);
  f.n[1].op = "reduce";
  f.n[1].n_dims = 0;
  f.a[1].name = (ProtobufCBinaryData){6, (uint8_t *)"reduce"};
  f.a[1].value_case = LDMC__ATTR__VALUE_S;
  f.a[1].s = (ProtobufCBinaryData){4, (uint8_t *)"mean"};
  f.a[2].name = (ProtobufCBinaryData){4, (uint8_t *)"dims"};
  f.a[2].value_case = LDMC__ATTR__VALUE_INTS;
  f.a[2].ints = &f.ints;
  f.ints.n_v = 1;
  f.n[1].attrs = &f.ap[1];
  f.n[1].n_attrs = 2;
  GFX_EXPECT(&f, "node %1 reduce", "attribute 'reduce' has unknown value 'mean'");
  f.a[1].s = (ProtobufCBinaryData){3, (uint8_t *)"sum"};
  f.ints.n_v = 9;
  GFX_EXPECT(&f, "node %1 reduce", "attribute 'dims' has 9 values");
  f.ints.n_v = 1;
  b = assemble(&f.h, NULL, 0, &len);
  st = ldmc_module_decode(b, len, &m);
  CHECK_MSG(st == LDMC_OK && m.graph->nodes[1].attrs.reduce == LDMC_REDUCE_SUM, "%s", ldmc_last_error());
  if (st == LDMC_OK) ldmc_module_free(&m);
  free(b);

  /* constants: inline size must match dtype x shape; a blob must have real chunks */
  gfx_init(&f);
  f.n[0].op = "constant";
  f.a[0].name = (ProtobufCBinaryData){5, (uint8_t *)"value"};
  f.a[0].value_case = LDMC__ATTR__VALUE_RAW;
  f.a[0].raw = (ProtobufCBinaryData){4, (uint8_t *)"abcd"};
  GFX_EXPECT(&f, "node %0 constant", "4 bytes", "need 8");
  f.a[0].raw = (ProtobufCBinaryData){8, (uint8_t *)"abcdefgh"};
  b = assemble(&f.h, NULL, 0, &len);
  st = ldmc_module_decode(b, len, &m);
  CHECK_MSG(st == LDMC_OK && memcmp(m.graph->nodes[0].attrs.value.data, "abcdefgh", 8) == 0, "%s", ldmc_last_error());
  if (st == LDMC_OK) ldmc_module_free(&m);
  free(b);
  Ldmc__Blob blob;
  Ldmc__Chunk chunk, *cp = &chunk;
  ldmc__blob__init(&blob);
  ldmc__chunk__init(&chunk);
  blob.raw_size = 8;
  blob.n_chunks = 1;
  blob.chunks = &cp;
  chunk.offset = 24;
  chunk.size = 50;
  chunk.raw_size = 8;
  f.a[0].value_case = LDMC__ATTR__VALUE_BLOB;
  f.a[0].blob = &blob;
  GFX_EXPECT(&f, "node %0 constant", "chunk 0 at offset 24 + 50 bytes lies outside");
  blob.raw_size = 12;
  GFX_EXPECT(&f, "node %0 constant", "12 bytes", "need 8");
}

/* The encoder refuses what the decoder would refuse. */
static void test_encode_rejects(void) {
  ldmc_module m = {0};
  ldmc_tensor t;
  uint8_t *buf;
  size_t len;
  ldmc_shape s = {1, {2}};
  CHECK(ldmc_tensor_alloc(&t, "a", LDMC_F32, &s) == LDMC_OK);
  CHECK(ldmc_tensor_set_add(&m.tensors, &t) == LDMC_OK);
  CHECK(ldmc_tensor_alloc(&t, "b", LDMC_F32, &s) == LDMC_OK);
  CHECK(ldmc_tensor_set_add(&m.tensors, &t) == LDMC_OK);
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_OK);
  free(buf);
  m.tensors.items[1].name[0] = 'a'; /* duplicates made behind the set's back */
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "duplicate tensor name 'a'"));
  m.tensors.items[1].name[0] = 'b';
  m.tensors.items[1].shape.dims[0] = 3;
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "tensor 'b'"));
  m.tensors.items[1].shape.dims[0] = -2;
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "negative"));
  m.tensors.items[1].shape.dims[0] = 2;
  strcpy(m.tensors.items[1].raw_dtype, "Q4");
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "unknown raw dtype 'Q4'"));
  m.tensors.items[1].raw_dtype[0] = 0;
  /* an ill-typed graph is not written */
  m.graph = ldmc_graph_new("bad");
  ldmc_shape s2 = {1, {2}}, s3 = {1, {3}};
  ldmc_attrs a = {0};
  a.name = "p";
  int32_t p = ldmc_graph_add(m.graph, LDMC_OP_PARAMETER, LDMC_F32, &s2, 0, NULL, &a, NULL);
  ldmc_graph_add(m.graph, LDMC_OP_NEG, LDMC_F32, &s3, 1, &p, NULL, NULL);
  CHECK(ldmc_module_encode(&m, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "%1 neg"));
  ldmc_module_free(&m);
}

int main(void) {
  test_fixture_is_valid();
  test_hostile_prelude();
  test_hostile_tensors();
  test_hostile_chunks();
  test_hostile_graph();
  test_encode_rejects();
  return test_summary("test_binary_hostile");
}
