/* safetensors reader and writer. Oracles: the format's published test vectors
 * (the reference Rust crate's test_serialization bytes for "attn.0", and the
 * Python binding's I32 zeros example), hand-written expected headers for the
 * reference writer's ordering, and hand-built hostile files for every rule in
 * the spec. */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/weights_io.h"
#include "support/fileio.h"
#include "test_util.h"

/* safetensors/src/tensor.rs, test_serialization: attn.0, F32 [1,2,3], 0..5 */
static const uint8_t k_attn_vector[] = {
    64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,  123, 34,  100,
    116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,  91,
    49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115, 34,
    58,  91,  48,  44,  50,  52,  93,  125, 125, 0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,
    0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};

/* the same crate, forced alignment: "attn0" [1,1,2,3] gives a 65-byte JSON padded to 72 */
static const uint8_t k_attn0_vector[] = {
    72,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 48,  34,  58,  123, 34,  100, 116,
    121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,  91,  49,
    44,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115,
    34,  58,  91,  48,  44,  50,  52,  93,  125, 125, 32,  32,  32,  32,  32,  32,  32,  0,   0,   0,   0,
    0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};

/* test_empty: no tensors; then no tensors with metadata {"framework": "pt"} */
static const uint8_t k_empty_vector[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
static const char k_empty_meta_vector[] = "(\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ";


static void add_tensor(ldmc_tensor_set *s, const char *name, ldmc_dtype dt, int rank, const int64_t *dims,
                       const void *bytes) {
  ldmc_tensor t;
  ldmc_shape sh = ldmc_shape_make(rank, dims);
  CHECK(ldmc_tensor_alloc(&t, name, dt, &sh) == LDMC_OK);
  if (t.nbytes && bytes) memcpy(t.data, bytes, t.nbytes);
  CHECK(ldmc_tensor_set_add(s, &t) == LDMC_OK);
}

static void add_raw(ldmc_tensor_set *s, const char *name, const char *raw, int rank, const int64_t *dims,
                    const void *bytes, size_t nbytes) {
  ldmc_tensor t = {0};
  t.name = strdup(name);
  t.dtype = LDMC_DTYPE_COUNT;
  strcpy(t.raw_dtype, raw);
  t.shape = ldmc_shape_make(rank, dims);
  t.nbytes = nbytes;
  t.data = malloc(nbytes ? nbytes : 1);
  if (nbytes) memcpy(t.data, bytes, nbytes);
  t.owns_data = true;
  CHECK(ldmc_tensor_set_add(s, &t) == LDMC_OK);
}

static void test_published_vectors(void) {
  ldmc_tensor_set set = {0};
  float v[6] = {0, 1, 2, 3, 4, 5};
  add_tensor(&set, "attn.0", LDMC_F32, 3, (int64_t[]){1, 2, 3}, v);
  uint8_t *buf;
  size_t len;
  CHECK(ldmc_safetensors_encode(&set, 0, NULL, NULL, &buf, &len) == LDMC_OK);
  CHECK_MSG(len == sizeof k_attn_vector && memcmp(buf, k_attn_vector, len) == 0, "writer bytes differ (%zu bytes): %.*s",
            len, (int)(len > 8 ? len - 8 : 0), buf + 8);
  free(buf);
  ldmc_tensor_set_free(&set);

  ldmc_tensor_set r;
  ldmc_status st = ldmc_safetensors_parse(k_attn_vector, sizeof k_attn_vector, &r);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st == LDMC_OK) {
    CHECK(r.n == 1 && strcmp(r.items[0].name, "attn.0") == 0 && r.items[0].dtype == LDMC_F32);
    CHECK(r.items[0].shape.rank == 3 && r.items[0].shape.dims[0] == 1 && r.items[0].shape.dims[2] == 3);
    for (int i = 0; i < 6; i++) CHECK(ldmc_tensor_get(&r.items[0], i) == (double)i);
    CHECK(r.items[0].owns_data && r.items[0].raw_dtype[0] == 0);
  }
  ldmc_tensor_set_free(&r);

  add_tensor(&set, "attn0", LDMC_F32, 4, (int64_t[]){1, 1, 2, 3}, v);
  CHECK(ldmc_safetensors_encode(&set, 0, NULL, NULL, &buf, &len) == LDMC_OK);
  CHECK(len == sizeof k_attn0_vector && memcmp(buf, k_attn0_vector, len) == 0);
  free(buf);
  ldmc_tensor_set_free(&set);
  CHECK(ldmc_safetensors_parse(k_attn0_vector, sizeof k_attn0_vector, &r) == LDMC_OK && r.n == 1 &&
        r.items[0].shape.rank == 4 && ldmc_tensor_get(&r.items[0], 5) == 5.0);
  ldmc_tensor_set_free(&r);

  CHECK(ldmc_safetensors_encode(&set, 0, NULL, NULL, &buf, &len) == LDMC_OK);
  CHECK(len == sizeof k_empty_vector && memcmp(buf, k_empty_vector, len) == 0);
  free(buf);
  const char *k[] = {"framework"}, *val[] = {"pt"};
  CHECK(ldmc_safetensors_encode(&set, 1, k, val, &buf, &len) == LDMC_OK);
  CHECK(len == sizeof k_empty_meta_vector - 1 && memcmp(buf, k_empty_meta_vector, len) == 0);
  CHECK(ldmc_safetensors_parse(buf, len, &r) == LDMC_OK && r.n == 0);
  ldmc_tensor_set_free(&r);
  free(buf);
}

/* The reference writer's order: dtype (widest first, by its Dtype enum), then name. */
static void test_writer_order_and_metadata(void) {
  ldmc_tensor_set set = {0};
  int64_t one[1] = {1}, two[1] = {2};
  add_tensor(&set, "b", LDMC_F32, 1, one, (float[]){2.0f});
  add_tensor(&set, "a", LDMC_F32, 1, one, (float[]){1.0f});
  add_tensor(&set, "d", LDMC_PRED, 1, two, (uint8_t[]){1, 0});
  add_raw(&set, "e", "U8", 1, one, (uint8_t[]){200}, 1);
  add_tensor(&set, "c", LDMC_I64, 1, one, (int64_t[]){-3});
  add_tensor(&set, "f", LDMC_BF16, 1, one, (uint16_t[]){0x3f80});
  const char *keys[] = {"format", "note"}, *vals[] = {"pt", "ü \"q\""};
  uint8_t *buf;
  size_t len;
  CHECK(ldmc_safetensors_encode(&set, 2, keys, vals, &buf, &len) == LDMC_OK);
  const char *want =
      "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"ü \\\"q\\\"\"},"
      "\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
      "\"f\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[16,18]},"
      "\"e\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18,19]},"
      "\"d\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[19,21]}}";
  size_t wl = strlen(want), n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
  CHECK(n % 8 == 0 && n >= wl && n < wl + 8 && len == 8 + n + 21);
  CHECK_MSG(memcmp(buf + 8, want, wl) == 0, "%.*s", (int)n, buf + 8);
  for (size_t i = 8 + wl; i < 8 + n; i++) CHECK(buf[i] == ' ');
  const uint8_t *d = buf + 8 + n;
  int64_t c;
  memcpy(&c, d, 8);
  CHECK(c == -3 && d[18] == 200 && d[19] == 1 && d[20] == 0);

  ldmc_tensor_set r;
  CHECK(ldmc_safetensors_parse(buf, len, &r) == LDMC_OK);
  /* file (JSON) order, native dtypes mapped, raw ones kept */
  const char *order = "cabfed";
  for (int i = 0; i < 6 && r.n == 6; i++) CHECK(r.items[i].name[0] == order[i]);
  ldmc_tensor *e = ldmc_tensor_set_find(&r, "e"), *dd = ldmc_tensor_set_find(&r, "d");
  CHECK(e && strcmp(e->raw_dtype, "U8") == 0 && e->dtype == LDMC_DTYPE_COUNT && ((uint8_t *)e->data)[0] == 200);
  CHECK(dd && dd->dtype == LDMC_PRED && dd->raw_dtype[0] == 0);
  ldmc_tensor_set_free(&r);
  free(buf);

  /* writer refusals */
  const char *dk[] = {"k", "k"}, *dv[] = {"1", "2"};
  CHECK(ldmc_safetensors_encode(&set, 2, dk, dv, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "duplicate metadata key"));
  set.items[0].nbytes = 3;
  CHECK(ldmc_safetensors_encode(&set, 0, NULL, NULL, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "tensor 'b'"));
  set.items[0].nbytes = 4;
  set.items[1].name[0] = 'b';
  CHECK(ldmc_safetensors_encode(&set, 0, NULL, NULL, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "duplicate tensor name 'b'"));
  set.items[1].name[0] = 'a';
  char *bad_utf8 = set.items[1].name;
  set.items[1].name = "\xff\xfe";
  CHECK(ldmc_safetensors_encode(&set, 0, NULL, NULL, &buf, &len) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "UTF-8"));
  set.items[1].name = bad_utf8;
  ldmc_tensor_set_free(&set);
}

/* F64 is ldmc's f64 both ways: a hand-written file reads as f64 with its
 * bytes, and the writer puts F64 where the reference order does (I64, F64,
 * F32: widest first, then the Dtype enum). */
static void test_f64(void) {
  const char *json = "{\"x\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}}";
  size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
  const double xv[3] = {0.1, -1.0 / 3, 0x1p-1074};
  uint8_t file[128];
  memset(file, ' ', sizeof file);
  memset(file, 0, 8);
  file[0] = (uint8_t)hl;
  memcpy(file + 8, json, jl);
  memcpy(file + 8 + hl, xv, sizeof xv);
  ldmc_tensor_set r;
  ldmc_status st = ldmc_safetensors_parse(file, 8 + hl + sizeof xv, &r);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (st == LDMC_OK) {
    CHECK(r.n == 1 && r.items[0].dtype == LDMC_F64 && !r.items[0].raw_dtype[0] && r.items[0].nbytes == 24 &&
          memcmp(r.items[0].data, xv, 24) == 0 && ldmc_tensor_get(&r.items[0], 1) == -1.0 / 3);
    ldmc_tensor_set_free(&r);
  }

  ldmc_tensor_set set = {0};
  int64_t one[1] = {1};
  add_tensor(&set, "a", LDMC_F32, 1, one, (float[]){1.0f});
  add_tensor(&set, "b", LDMC_F64, 1, one, (double[]){0.1});
  add_tensor(&set, "c", LDMC_I64, 1, one, (int64_t[]){-3});
  uint8_t *buf;
  size_t len;
  CHECK(ldmc_safetensors_encode(&set, 0, NULL, NULL, &buf, &len) == LDMC_OK);
  const char *want = "{\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}";
  size_t wl = strlen(want), n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
  CHECK_MSG(n >= wl && memcmp(buf + 8, want, wl) == 0, "%.*s", (int)n, buf + 8);
  double b;
  memcpy(&b, buf + 8 + n + 8, 8);
  CHECK(len == 8 + n + 20 && b == 0.1);
  free(buf);
  ldmc_tensor_set_free(&set);
}

/* Every dtype of the spec through a file: save, map, compare bytes. */
static void test_all_dtypes_file(void) {
  static const char *raw[] = {"U8", "I8", "I16", "U16", "U32", "U64", "F8_E5M2", "F8_E4M3"};
  static const size_t raw_size[] = {1, 1, 2, 2, 4, 8, 1, 1};
  ldmc_tensor_set set = {0};
  uint8_t bytes[64];
  for (int i = 0; i < 64; i++) bytes[i] = (uint8_t)(i * 37 + 11);
  int64_t dims[2] = {2, 3};
  for (int i = 0; i < 8; i++) {
    char name[32];
    snprintf(name, sizeof name, "raw.%s", raw[i]);
    add_raw(&set, name, raw[i], 2, dims, bytes, 6 * raw_size[i]);
  }
  for (int dt = 0; dt < LDMC_DTYPE_COUNT; dt++) {
    char name[32];
    snprintf(name, sizeof name, "native.%s", ldmc_dtype_name((ldmc_dtype)dt));
    uint8_t b[48];
    memcpy(b, bytes, sizeof b);
    if (dt == LDMC_PRED)
      for (int i = 0; i < 6; i++) b[i] &= 1;
    add_tensor(&set, name, (ldmc_dtype)dt, 2, dims, b);
  }
  add_tensor(&set, "empty", LDMC_F32, 2, (int64_t[]){0, 4}, NULL);
  add_tensor(&set, "scalar", LDMC_F16, 0, NULL, (uint16_t[]){0x7e01});

  char dir[] = "/tmp/ldmc_test_st.XXXXXX", path[256];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  const char *k[] = {"format"}, *v[] = {"pt"};
  ldmc_status st = ldmc_safetensors_save(path, &set, 1, k, v);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  ldmc_tensor_set r;
  st = ldmc_safetensors_load(path, &r);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  CHECK(r.n == set.n);
  for (int32_t i = 0; st == LDMC_OK && i < set.n; i++) {
    const ldmc_tensor *a = &set.items[i], *b = ldmc_tensor_set_find(&r, a->name);
    CHECK_MSG(b && b->dtype == a->dtype && strcmp(b->raw_dtype, a->raw_dtype) == 0 && ldmc_shape_equal(&a->shape, &b->shape) &&
                  b->nbytes == a->nbytes && (a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0),
              "tensor '%s' differs", a->name);
    /* the reference layout aligns every tensor, so nothing was copied out of the map */
    CHECK(b && !b->owns_data);
  }
  ldmc_tensor_set_free(&r);
  /* the same bytes as the in-memory writer */
  uint8_t *enc, *file;
  size_t enc_len, file_len;
  CHECK(ldmc_safetensors_encode(&set, 1, k, v, &enc, &enc_len) == LDMC_OK);
  CHECK(ldmc_file_read(path, 1u << 20, &file, &file_len) == LDMC_OK && file_len == enc_len && memcmp(enc, file, enc_len) == 0);
  free(file);
  free(enc);

  /* a failed save leaves the old file and no temp file */
  set.items[0].nbytes = 1;
  CHECK(ldmc_safetensors_save(path, &set, 0, NULL, NULL) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), path));
  set.items[0].nbytes = 6;
  CHECK(ldmc_file_read(path, 1u << 20, &file, &file_len) == LDMC_OK && file_len == enc_len);
  free(file);
  DIR *dd = opendir(dir);
  int entries = 0;
  for (struct dirent *e; dd && (e = readdir(dd));) entries += e->d_name[0] != '.';
  if (dd) closedir(dd);
  CHECK(entries == 1);

  /* a header whose length is not a multiple of 8 misaligns the data: copied, still right */
  const char *json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t jl = strlen(json);
  CHECK(jl % 4 != 0);
  uint8_t mis[128] = {0};
  mis[0] = (uint8_t)jl;
  memcpy(mis + 8, json, jl);
  float xv[2] = {3.5f, -1.25f};
  memcpy(mis + 8 + jl, xv, 8);
  CHECK(ldmc_file_write_atomic(path, mis, 8 + jl + 8) == LDMC_OK);
  st = ldmc_safetensors_load(path, &r);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  CHECK(st == LDMC_OK && r.n == 1 && r.items[0].owns_data && (uintptr_t)r.items[0].data % 64 == 0 &&
        ldmc_tensor_get(&r.items[0], 0) == 3.5 && ldmc_tensor_get(&r.items[0], 1) == -1.25);
  ldmc_tensor_set_free(&r);
  /* load errors name the file */
  CHECK(truncate(path, 20) == 0);
  CHECK(ldmc_safetensors_load(path, &r) == LDMC_ERR_FORMAT && strstr(ldmc_last_error(), path));
  CHECK(r.n == 0 && r.items == NULL && r.release == NULL);
  unlink(path);
  CHECK(ldmc_safetensors_load(path, &r) == LDMC_ERR_IO && strstr(ldmc_last_error(), path));
  rmdir(dir);
  ldmc_tensor_set_free(&set);
}

/* ---- hostile files ---- */
/* 8-byte length + header + data_len bytes (values i) */
static uint8_t *make_file(const char *header, size_t hlen, size_t data_len, size_t *len) {
  *len = 8 + hlen + data_len;
  uint8_t *b = malloc(*len);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  memcpy(b + 8, header, hlen);
  for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (uint8_t)i;
  return b;
}

static void expect_bad(const char *header, size_t data_len, int line, ...) {
  size_t len;
  uint8_t *b = make_file(header, strlen(header), data_len, &len);
  ldmc_tensor_set r;
  ldmc_status st = ldmc_safetensors_parse(b, len, &r);
  const char *msg = ldmc_last_error();
  CHECK_MSG(st == LDMC_ERR_FORMAT, "line %d: status %s for %s", line, ldmc_status_name(st), header);
  CHECK_MSG(r.n == 0 && r.items == NULL, "line %d: output not left empty", line);
  if (st == LDMC_OK) ldmc_tensor_set_free(&r);
  va_list ap;
  va_start(ap, line);
  for (const char *s; (s = va_arg(ap, const char *));) CHECK_MSG(strstr(msg, s) != NULL, "line %d: '%s' not in \"%s\"", line, s, msg);
  va_end(ap);
  free(b);
}
#define BAD(header, data_len, ...) expect_bad(header, data_len, __LINE__, __VA_ARGS__, (const char *)NULL)
#define T(name, dtype, shape, b, e) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_hostile(void) {
  ldmc_tensor_set r;
  uint8_t tiny[5] = {1, 0, 0, 0, 0};
  CHECK(ldmc_safetensors_parse(tiny, 5, &r) == LDMC_ERR_FORMAT && strstr(ldmc_last_error(), "too short"));
  CHECK(ldmc_safetensors_parse(NULL, 0, &r) == LDMC_ERR_FORMAT);
  uint8_t over[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  CHECK(ldmc_safetensors_parse(over, 16, &r) == LDMC_ERR_FORMAT &&
        strstr(ldmc_last_error(), "header length 100 runs past the end of the 16-byte file"));
  uint8_t huge[16] = {0, 0xc2, 0xeb, 0x0b, 0, 0, 0, 0, '{', '}'}; /* 200,000,000 */
  CHECK(ldmc_safetensors_parse(huge, 16, &r) == LDMC_ERR_FORMAT && strstr(ldmc_last_error(), "limit"));
  uint8_t maxlen[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  CHECK(ldmc_safetensors_parse(maxlen, 16, &r) == LDMC_ERR_FORMAT);

  /* valid baselines, so the failures below are about the one thing changed */
  size_t len;
  uint8_t *b = make_file("{" T("a", "F32", "[2]", 0, 8) "}  ", strlen("{" T("a", "F32", "[2]", 0, 8) "}  "), 8, &len);
  CHECK(ldmc_safetensors_parse(b, len, &r) == LDMC_OK && r.n == 1);
  ldmc_tensor_set_free(&r);
  free(b);
  b = make_file("{}", 2, 0, &len);
  CHECK(ldmc_safetensors_parse(b, len, &r) == LDMC_OK && r.n == 0);
  ldmc_tensor_set_free(&r);
  free(b);
  /* truncating a valid file anywhere fails */
  b = make_file("{" T("a", "F32", "[2]", 0, 8) "}", strlen("{" T("a", "F32", "[2]", 0, 8) "}"), 8, &len);
  for (size_t i = 0; i < len; i++) CHECK(ldmc_safetensors_parse(b, i, &r) == LDMC_ERR_FORMAT);
  free(b);

  BAD("{abc", 0, "header JSON", "line 1");
  BAD("[1,2]", 0, "does not start with '{'");
  BAD(" {}", 0, "does not start with '{'");
  BAD("{}x", 0, "header JSON");
  BAD("{\"a\":5}", 0, "tensor 'a'", "not a JSON object");
  BAD("{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, "duplicate");
  BAD("{" T("a", "F32", "[2]", 0, 8) "}", 4, "tensor 'a'", "run past the 4-byte data buffer");
  BAD("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12, "tensor 'b'", "overlap");
  BAD("{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12, "tensor 'b'", "gap");
  BAD("{" T("a", "F32", "[1]", 4, 8) "}", 8, "tensor 'a'", "gap");
  BAD("{" T("a", "F32", "[1]", 0, 4) "}", 8, "cover 4 bytes of the 8-byte data buffer");
  BAD("{" T("a", "F32", "[4294967296,4294967296]", 0, 4) "}", 4, "tensor 'a'", "overflows");
  BAD("{" T("a", "F32", "[2]", 0, 4) "}", 4, "tensor 'a'", "hold 4 bytes, but F32[2] needs 8");
  BAD("{" T("a", "BF16", "[3]", 0, 4) "}", 4, "needs 6");
  BAD("{" T("a", "F128", "[1]", 0, 16) "}", 16, "tensor 'a'", "unknown dtype \"F128\"");
  BAD("{" T("a", "F32", "[-1]", 0, 0) "}", 0, "tensor 'a'", "shape[0] is negative");
  BAD("{" T("a", "F32", "[1.5]", 0, 4) "}", 4, "tensor 'a'", "shape[0] is not an integer");
  BAD("{" T("a", "F32", "[\"2\"]", 0, 8) "}", 8, "shape[0] is not an integer");
  BAD("{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, "rank 9");
  BAD("{" T("a", "F32", "[1]", 8, 4) "}", 8, "end before they begin");
  BAD("{" T("a", "F32", "[1]", -4, 0) "}", 8, "data_offsets[0] is negative");
  BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "[begin, end] pair");
  BAD("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" is missing");
  BAD("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\" is missing");
  BAD("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" is missing or not a string");
  BAD("{\"__metadata__\":[1]}", 0, "\"__metadata__\" is not a JSON object");
  BAD("{\"__metadata__\":{\"k\":1}}", 0, "value of \"k\" is not a string");
  BAD("{" T("a", "F32", "[1]", 0, 99999999999999999999) "}", 4, "header JSON");
  BAD("{\"a\\u0000b\":{}}", 0, "header JSON");
  BAD("{\"\xff\":{}}", 0, "header JSON");
  /* spaces after the JSON are the padding the spec allows; metadata is not a tensor */
  b = make_file("{\"__metadata__\":{\"k\":\"v\"}," T("a", "I64", "[1]", 0, 8) "}      ",
                strlen("{\"__metadata__\":{\"k\":\"v\"}," T("a", "I64", "[1]", 0, 8) "}      "), 8, &len);
  CHECK(ldmc_safetensors_parse(b, len, &r) == LDMC_OK && r.n == 1 && r.items[0].dtype == LDMC_I64);
  ldmc_tensor_set_free(&r);
  free(b);
  /* zero-size tensors may share an offset */
  b = make_file("{" T("z", "F32", "[0]", 4, 4) "," T("a", "F32", "[1]", 0, 4) "," T("y", "U8", "[0,3]", 4, 4) "}",
                strlen("{" T("z", "F32", "[0]", 4, 4) "," T("a", "F32", "[1]", 0, 4) "," T("y", "U8", "[0,3]", 4, 4) "}"),
                4, &len);
  CHECK_MSG(ldmc_safetensors_parse(b, len, &r) == LDMC_OK && r.n == 3, "%s", ldmc_last_error());
  ldmc_tensor_set_free(&r);
  free(b);
}

int main(void) {
  test_published_vectors();
  test_writer_order_and_metadata();
  test_f64();
  test_all_dtypes_file();
  test_hostile();
  return test_summary("test_safetensors");
}
