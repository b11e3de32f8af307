/* Training checkpoints (runtime/checkpoint.h): bit-exact round trips (NaN
 * payloads, bf16, i64, f64, empty and multi-chunk tensors), config / step /
 * RNG / data state, lookups, refusals; every truncation and single-byte
 * corruptions at every offset of a small checkpoint are errors; rotation keeps
 * the last K; load_latest falls back past damaged files; a failed write leaves
 * no file. `test_checkpoint --write PATH` writes the sample checkpoint (for
 * tests/cli/inspect_checkpoint.sh). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "frontend/weights_io.h"
#include "ir/ldmc.pb-c.h"
#include "runtime/checkpoint.h"
#include "test_util.h"

static char g_dir[64];

/* ---- the sample: every dtype the tests need, with values that only a
 * byte-exact copy preserves ---- */
static uint32_t g_w[12], g_m[12], g_v[12], g_ema[12];
static uint16_t g_b[5];
static int64_t g_idx[4];
static double g_scalar;
static float *g_big;
#define BIG_N ((4u << 20) / 4 + 1000) /* two zstd chunks */

static void fill_sample(void) {
  const uint32_t w[12] = {0x7fc00001u, 0xffbadbadu, 0x7f800001u /* sNaN */, 0x80000000u /* -0 */,
                          0x00000001u /* subnormal */, 0x7f800000u, 0xff800000u, 0x3f800000u,
                          0xbf000000u, 0x007fffffu, 0x7fffffffu, 0x12345678u};
  memcpy(g_w, w, sizeof w);
  for (int i = 0; i < 12; i++) {
    g_m[i] = w[i] ^ 0x00010000u;
    g_v[i] = 0x3c000000u + (uint32_t)i;
    g_ema[i] = w[11 - i];
  }
  const uint16_t b[5] = {0x7fc1, 0xff81 /* bf16 NaN payloads */, 0x8000, 0x0001, 0x3f80};
  memcpy(g_b, b, sizeof b);
  g_idx[0] = INT64_MIN;
  g_idx[1] = INT64_MAX;
  g_idx[2] = -1;
  g_idx[3] = 1234567890123;
  g_scalar = -0.0;
}

static ldmc_checkpoint *sample(bool big) {
  ldmc_checkpoint *ck = ldmc_checkpoint_new();
  CHECK(ck != NULL);
  CHECK(ldmc_checkpoint_set_config(ck, "model", "unet") == LDMC_OK);
  CHECK(ldmc_checkpoint_set_config(ck, "channels", "64") == LDMC_OK);
  CHECK(ldmc_checkpoint_set_config(ck, "lr schedule", "cosine, warmup=100") == LDMC_OK);
  CHECK(ldmc_checkpoint_set_config(ck, "note", "") == LDMC_OK);
  const int64_t d34[2] = {3, 4}, d5[1] = {5}, d22[2] = {2, 2}, d03[2] = {0, 3};
  CHECK(ldmc_checkpoint_add_tensor(ck, "w", LDMC_CKPT_PARAM, LDMC_F32, 2, d34, g_w) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "b", LDMC_CKPT_PARAM, LDMC_BF16, 1, d5, g_b) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "adam_m.w", LDMC_CKPT_OPTIMIZER, LDMC_F32, 2, d34, g_m) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "adam_v.w", LDMC_CKPT_OPTIMIZER, LDMC_F32, 2, d34, g_v) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "ema.w", LDMC_CKPT_EMA, LDMC_F32, 2, d34, g_ema) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "idx", LDMC_CKPT_OTHER, LDMC_I64, 2, d22, g_idx) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "scalar", LDMC_CKPT_OTHER, LDMC_F64, 0, NULL, &g_scalar) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "empty", LDMC_CKPT_OTHER, LDMC_F32, 2, d03, NULL) == LDMC_OK);
  if (big) {
    const int64_t dn[1] = {BIG_N};
    CHECK(ldmc_checkpoint_add_tensor(ck, "big", LDMC_CKPT_PARAM, LDMC_F32, 1, dn, g_big) == LDMC_OK);
  }
  CHECK(ldmc_checkpoint_set_step(ck, 1234) == LDMC_OK);
  ldmc_checkpoint_set_rng(ck, 42, (int64_t)1 << 40);
  const int64_t ds[3] = {7, 3, 1536};
  CHECK(ldmc_checkpoint_set_data_state(ck, ds, 3) == LDMC_OK);
  return ck;
}

/* Whether b holds exactly a's content (order, bytes, roles, state). */
static bool same(const ldmc_checkpoint *a, const ldmc_checkpoint *b) {
  if (ldmc_checkpoint_step(a) != ldmc_checkpoint_step(b)) return false;
  int64_t s1, c1, s2, c2;
  ldmc_checkpoint_rng(a, &s1, &c1);
  ldmc_checkpoint_rng(b, &s2, &c2);
  if (s1 != s2 || c1 != c2) return false;
  const int64_t *d1, *d2;
  int n1 = ldmc_checkpoint_data_state(a, &d1), n2 = ldmc_checkpoint_data_state(b, &d2);
  if (n1 != n2 || (n1 && memcmp(d1, d2, (size_t)n1 * 8) != 0)) return false;
  if (ldmc_checkpoint_num_config(a) != ldmc_checkpoint_num_config(b)) return false;
  for (int32_t i = 0; i < ldmc_checkpoint_num_config(a); i++) {
    const char *k1, *v1, *k2, *v2;
    ldmc_checkpoint_config_at(a, i, &k1, &v1);
    ldmc_checkpoint_config_at(b, i, &k2, &v2);
    if (strcmp(k1, k2) || strcmp(v1, v2)) return false;
  }
  if (ldmc_checkpoint_num_tensors(a) != ldmc_checkpoint_num_tensors(b)) return false;
  for (int32_t i = 0; i < ldmc_checkpoint_num_tensors(a); i++) {
    ldmc_checkpoint_role r1, r2;
    const ldmc_tensor *x = ldmc_checkpoint_tensor_at(a, i, &r1, NULL), *y = ldmc_checkpoint_tensor_at(b, i, &r2, NULL);
    if (r1 != r2 || strcmp(x->name, y->name) || x->dtype != y->dtype || !ldmc_shape_equal(&x->shape, &y->shape) ||
        x->nbytes != y->nbytes || (x->nbytes && memcmp(x->data, y->data, x->nbytes) != 0))
      return false;
  }
  return true;
}

static char *path_in(const char *dir, const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ & 3];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

static int count_files(const char *dir, const char *needle) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.' && (!needle || strstr(e->d_name, needle))) n++;
  closedir(d);
  return n;
}

static bool exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static void rm_tree(const char *dir) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static void test_round_trip(void) {
  ldmc_checkpoint *ck = sample(true);
  const char *p = path_in(g_dir, "rt.ldmc");
  CHECK_MSG(ldmc_checkpoint_write(ck, p) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_checkpoint *r = NULL;
  CHECK_MSG(ldmc_checkpoint_read(p, &r) == LDMC_OK, "%s", ldmc_last_error());
  if (!r) return;
  CHECK(same(ck, r));
  CHECK(strcmp(ldmc_checkpoint_path(r), p) == 0);
  /* bit-exact, by dtype */
  const ldmc_tensor *w = ldmc_checkpoint_find(r, "w", LDMC_CKPT_PARAM);
  CHECK(w && w->dtype == LDMC_F32 && memcmp(w->data, g_w, sizeof g_w) == 0);
  const ldmc_tensor *b = ldmc_checkpoint_find(r, "b", LDMC_CKPT_ANY);
  CHECK(b && b->dtype == LDMC_BF16 && b->nbytes == 10 && memcmp(b->data, g_b, sizeof g_b) == 0);
  const ldmc_tensor *idx = ldmc_checkpoint_find(r, "idx", LDMC_CKPT_OTHER);
  CHECK(idx && idx->dtype == LDMC_I64 && memcmp(idx->data, g_idx, sizeof g_idx) == 0);
  const ldmc_tensor *sc = ldmc_checkpoint_find(r, "scalar", LDMC_CKPT_OTHER);
  CHECK(sc && sc->shape.rank == 0 && sc->nbytes == 8 && memcmp(sc->data, &g_scalar, 8) == 0);
  const ldmc_tensor *em = ldmc_checkpoint_find(r, "empty", LDMC_CKPT_OTHER);
  CHECK(em && em->nbytes == 0 && em->shape.rank == 2 && em->shape.dims[0] == 0 && em->shape.dims[1] == 3);
  const ldmc_tensor *big = ldmc_checkpoint_find(r, "big", LDMC_CKPT_PARAM);
  CHECK(big && big->nbytes == (size_t)BIG_N * 4 && memcmp(big->data, g_big, big->nbytes) == 0);
  /* roles and lookups */
  CHECK(ldmc_checkpoint_find(r, "w", LDMC_CKPT_EMA) == NULL);
  CHECK(ldmc_checkpoint_find(r, "adam_m.w", LDMC_CKPT_OPTIMIZER) != NULL);
  CHECK(ldmc_checkpoint_find(r, "ema.w", LDMC_CKPT_EMA) != NULL);
  CHECK(ldmc_checkpoint_find(r, "nope", LDMC_CKPT_ANY) == NULL);
  CHECK(ldmc_checkpoint_count(r, LDMC_CKPT_PARAM) == 3 && ldmc_checkpoint_count(r, LDMC_CKPT_OPTIMIZER) == 2 &&
        ldmc_checkpoint_count(r, LDMC_CKPT_EMA) == 1 && ldmc_checkpoint_count(r, LDMC_CKPT_OTHER) == 3 &&
        ldmc_checkpoint_count(r, LDMC_CKPT_ANY) == 9);
  uint32_t crc = 0;
  ldmc_checkpoint_role role;
  const ldmc_tensor *t0 = ldmc_checkpoint_tensor_at(r, 0, &role, &crc);
  /* the CRC-32 of w's 48 bytes: python3 -c 'import zlib, struct; print(hex(zlib.crc32(struct.pack("<12I", ...))))' */
  CHECK(t0 && strcmp(t0->name, "w") == 0 && role == LDMC_CKPT_PARAM);
  CHECK_MSG(crc == 0xc9a0c36eu, "crc 0x%08x", crc);
  CHECK(ldmc_checkpoint_tensor_at(r, 9, NULL, NULL) == NULL);
  /* state and config, in order */
  int64_t seed, ctr;
  ldmc_checkpoint_rng(r, &seed, &ctr);
  const int64_t *ds;
  CHECK(ldmc_checkpoint_step(r) == 1234 && seed == 42 && ctr == (int64_t)1 << 40);
  CHECK(ldmc_checkpoint_data_state(r, &ds) == 3 && ds[0] == 7 && ds[1] == 3 && ds[2] == 1536);
  const char *k, *v;
  ldmc_checkpoint_config_at(r, 2, &k, &v);
  CHECK(strcmp(k, "lr schedule") == 0 && strcmp(v, "cosine, warmup=100") == 0);
  CHECK(strcmp(ldmc_checkpoint_config(r, "channels"), "64") == 0 && strcmp(ldmc_checkpoint_config(r, "note"), "") == 0);
  CHECK(ldmc_checkpoint_config(r, "absent") == NULL);
  /* get: the type a resume expects, or an error naming file, tensor and both types */
  const ldmc_tensor *got;
  ldmc_shape s34 = ldmc_shape_make(2, (int64_t[]){3, 4}), s43 = ldmc_shape_make(2, (int64_t[]){4, 3});
  CHECK(ldmc_checkpoint_get(r, "ema.w", LDMC_CKPT_EMA, LDMC_F32, &s34, &got) == LDMC_OK && got);
  CHECK(ldmc_checkpoint_get(r, "ema.w", LDMC_CKPT_EMA, LDMC_F32, &s43, &got) == LDMC_ERR_INVALID && !got);
  CHECK_MSG(strstr(ldmc_last_error(), "rt.ldmc: tensor 'ema.w' is ema f32[3,4], expected ema f32[4,3]") != NULL, "%s",
            ldmc_last_error());
  CHECK(ldmc_checkpoint_get(r, "w", LDMC_CKPT_OPTIMIZER, LDMC_F32, &s34, &got) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_get(r, "zz", LDMC_CKPT_PARAM, LDMC_F32, &s34, &got) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), "no tensor 'zz'") != NULL);
  /* the file is the in-memory encoding (deterministic), and re-encoding what was read gives it again */
  uint8_t *e1 = NULL, *e2 = NULL, *f = NULL;
  size_t n1 = 0, n2 = 0, fl = 0;
  CHECK(ldmc_checkpoint_encode(ck, &e1, &n1) == LDMC_OK);
  CHECK(ldmc_checkpoint_encode(r, &e2, &n2) == LDMC_OK);
  FILE *fp = fopen(p, "rb");
  if (fp) {
    f = malloc(n1 + 1);
    fl = fread(f, 1, n1 + 1, fp);
    fclose(fp);
  }
  CHECK(n1 == n2 && e1 && e2 && memcmp(e1, e2, n1) == 0);
  CHECK(f && fl == n1 && memcmp(f, e1, n1) == 0);
  printf("round trip: %d tensors, %.2f MiB raw in a %zu-byte file\n", ldmc_checkpoint_num_tensors(r),
         (double)(BIG_N * 4 + 4 * 48 + 10 + 32 + 8) / (1 << 20), n1);
  free(e1);
  free(e2);
  free(f);
  /* the container stays a module: the plain reader sees the tensors */
  ldmc_module m;
  CHECK_MSG(ldmc_module_load(p, &m) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(m.graph == NULL && m.tensors.n == 9 && ldmc_tensor_set_find(&m.tensors, "adam_v.w"));
  ldmc_module_free(&m);
  bool is = false;
  CHECK(ldmc_checkpoint_sniff(p, &is) == LDMC_OK && is);
  ldmc_checkpoint_free(r);
  ldmc_checkpoint_free(ck);

  /* an empty checkpoint round-trips too */
  ck = ldmc_checkpoint_new();
  p = path_in(g_dir, "empty.ldmc");
  CHECK(ldmc_checkpoint_write(ck, p) == LDMC_OK);
  CHECK(ldmc_checkpoint_read(p, &r) == LDMC_OK && r && same(ck, r));
  CHECK(r && ldmc_checkpoint_num_tensors(r) == 0 && ldmc_checkpoint_step(r) == 0);
  ldmc_checkpoint_free(r);
  ldmc_checkpoint_free(ck);

  /* a plain module is not a checkpoint */
  ldmc_module pm = {0};
  ldmc_tensor t;
  ldmc_shape s2 = ldmc_shape_make(1, (int64_t[]){2});
  ldmc_tensor_alloc(&t, "x", LDMC_F32, &s2);
  ldmc_tensor_set_add(&pm.tensors, &t);
  p = path_in(g_dir, "module.ldmc");
  CHECK(ldmc_module_save(p, &pm) == LDMC_OK);
  ldmc_module_free(&pm);
  CHECK(ldmc_checkpoint_read(p, &r) == LDMC_ERR_FORMAT && r == NULL);
  CHECK_MSG(strstr(ldmc_last_error(), "module.ldmc: not a checkpoint") != NULL, "%s", ldmc_last_error());
  CHECK(ldmc_checkpoint_sniff(p, &is) == LDMC_OK && !is);
  CHECK(ldmc_checkpoint_read(path_in(g_dir, "missing.ldmc"), &r) == LDMC_ERR_IO && r == NULL);
}

static void test_refusals(void) {
  ldmc_checkpoint *ck = ldmc_checkpoint_new();
  float x[4] = {0};
  const int64_t d4[1] = {4}, dneg[1] = {-1}, d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  CHECK(ldmc_checkpoint_add_tensor(ck, "p", LDMC_CKPT_PARAM, LDMC_F32, 1, d4, x) == LDMC_OK);
  CHECK(ldmc_checkpoint_add_tensor(ck, "p", LDMC_CKPT_EMA, LDMC_F32, 1, d4, x) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), "'p' added twice") != NULL);
  CHECK(ldmc_checkpoint_add_tensor(ck, "", LDMC_CKPT_PARAM, LDMC_F32, 1, d4, x) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_add_tensor(ck, "q", LDMC_CKPT_PARAM, LDMC_F32, 1, dneg, x) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_add_tensor(ck, "q", LDMC_CKPT_PARAM, LDMC_F32, 9, d9, x) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_add_tensor(ck, "q", LDMC_CKPT_PARAM, LDMC_F32, 1, d4, NULL) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_add_tensor(ck, "q", LDMC_CKPT_ANY, LDMC_F32, 1, d4, x) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_add_tensor(ck, "q", LDMC_CKPT_PARAM, LDMC_DTYPE_COUNT, 1, d4, x) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_num_tensors(ck) == 1);
  CHECK(ldmc_checkpoint_set_step(ck, -1) == LDMC_ERR_INVALID);
  int64_t many[LDMC_CHECKPOINT_MAX_DATA_STATE + 1] = {0};
  CHECK(ldmc_checkpoint_set_data_state(ck, many, LDMC_CHECKPOINT_MAX_DATA_STATE + 1) == LDMC_ERR_INVALID);
  CHECK(ldmc_checkpoint_set_data_state(ck, many, LDMC_CHECKPOINT_MAX_DATA_STATE) == LDMC_OK);
  CHECK(ldmc_checkpoint_set_config(ck, "", "x") == LDMC_ERR_INVALID);
  /* setting a key again replaces its value in place */
  CHECK(ldmc_checkpoint_set_config(ck, "a", "1") == LDMC_OK && ldmc_checkpoint_set_config(ck, "b", "2") == LDMC_OK);
  CHECK(ldmc_checkpoint_set_config(ck, "a", "3") == LDMC_OK);
  const char *k, *v;
  ldmc_checkpoint_config_at(ck, 0, &k, &v);
  CHECK(ldmc_checkpoint_num_config(ck) == 2 && strcmp(k, "a") == 0 && strcmp(v, "3") == 0);
  ldmc_checkpoint_free(ck);
  /* roles by name and name */
  CHECK(ldmc_checkpoint_role_of_name("adam_m.conv.weight") == LDMC_CKPT_OPTIMIZER);
  CHECK(ldmc_checkpoint_role_of_name("adam_v.x") == LDMC_CKPT_OPTIMIZER);
  CHECK(ldmc_checkpoint_role_of_name("ema.x") == LDMC_CKPT_EMA);
  CHECK(ldmc_checkpoint_role_of_name("emax") == LDMC_CKPT_PARAM);
  ldmc_checkpoint_role r;
  CHECK(ldmc_checkpoint_role_parse("optimizer", &r) && r == LDMC_CKPT_OPTIMIZER && !ldmc_checkpoint_role_parse("opt", &r));
}

/* Every prefix and single-byte corruptions at every offset: an error with a
 * message, never success (nor a crash: ASan runs this too). */
static void test_damage(void) {
  ldmc_checkpoint *ck = sample(false);
  uint8_t *buf = NULL;
  size_t len = 0;
  CHECK(ldmc_checkpoint_encode(ck, &buf, &len) == LDMC_OK);
  int n_trunc = 0, trunc_ok = 0, n_flip = 0, flip_ok = 0, by_crc = 0;
  for (size_t k = 0; k < len; k++) {
    uint8_t *p = malloc(k ? k : 1); /* exact size: ASan sees reads past the end */
    memcpy(p, buf, k);
    ldmc_checkpoint *r = NULL;
    ldmc_status s = ldmc_checkpoint_decode(p, k, 0, &r);
    n_trunc++;
    if (s == LDMC_OK || r || !ldmc_last_error()[0]) trunc_ok++;
    ldmc_checkpoint_free(r);
    free(p);
  }
  const uint8_t masks[3] = {0x01, 0x80, 0xff};
  uint8_t *p = malloc(len);
  for (size_t i = 0; i < len; i++)
    for (int m = 0; m < 3; m++) {
      memcpy(p, buf, len);
      p[i] ^= masks[m];
      ldmc_checkpoint *r = NULL;
      ldmc_status s = ldmc_checkpoint_decode(p, len, 0, &r);
      n_flip++;
      if (s == LDMC_OK || r || !ldmc_last_error()[0]) {
        flip_ok++;
        if (flip_ok <= 5)
          fprintf(stderr, "FAIL: byte %zu ^ 0x%02x decodes (%s)\n", i, masks[m], r && same(ck, r) ? "same content" : "different content");
      } else if (strstr(ldmc_last_error(), "checksum")) {
        by_crc++;
      }
      ldmc_checkpoint_free(r);
    }
  free(p);
  CHECK_MSG(trunc_ok == 0, "%d of %d truncations decoded", trunc_ok, n_trunc);
  CHECK_MSG(flip_ok == 0, "%d of %d corruptions decoded", flip_ok, n_flip);
  printf("damage: %d truncations and %d single-byte corruptions of a %zu-byte checkpoint all refused (%d by a checksum)\n",
         n_trunc, n_flip, len, by_crc);
  /* a file's message names it */
  const char *path = path_in(g_dir, "cut.ldmc");
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(buf, 1, len - 3, f);
    fclose(f);
  }
  ldmc_checkpoint *r = NULL;
  CHECK(ldmc_checkpoint_read(path, &r) == LDMC_ERR_FORMAT && !r);
  CHECK_MSG(strstr(ldmc_last_error(), "cut.ldmc: header at offset") && strstr(ldmc_last_error(), "truncated"), "%s",
            ldmc_last_error());
  /* a flipped byte in the data region: named by tensor */
  free(buf);
  ldmc_checkpoint_free(ck);
}

/* The byte-level checks above, with a flip placed where only the CRCs can see it. */
static void test_checksums(void) {
  ldmc_checkpoint *ck = sample(false);
  uint8_t *buf = NULL;
  size_t len = 0;
  CHECK(ldmc_checkpoint_encode(ck, &buf, &len) == LDMC_OK);
  /* rename tensor "idx" to "idy" in the header: a valid container, a different checkpoint */
  uint8_t *hit = NULL;
  for (size_t i = len; i-- > 3;)
    if (memcmp(buf + i - 3, "idx", 3) == 0) {
      hit = buf + i - 1;
      break;
    }
  CHECK(hit != NULL);
  if (hit) {
    *hit = 'y';
    ldmc_module m;
    CHECK(ldmc_module_decode(buf, len, &m) == LDMC_OK); /* the container alone cannot tell */
    ldmc_module_free(&m);
    ldmc_checkpoint *r = NULL;
    CHECK(ldmc_checkpoint_decode(buf, len, 0, &r) == LDMC_ERR_FORMAT && !r);
    CHECK_MSG(strstr(ldmc_last_error(), "header checksum mismatch") != NULL, "%s", ldmc_last_error());
  }
  free(buf);
  ldmc_checkpoint_free(ck);
}

/* Re-encodes buf's header after mutate(h, false) with a correct header CRC,
 * so the checks behind the checksums are reached; mutate(h, true) then puts
 * back what it replaced, before the header is freed. Returns the new file. */
typedef void (*mutate_fn)(Ldmc__Header *h, bool undo);

static uint8_t *rewrite(const uint8_t *buf, size_t len, mutate_fn mutate, size_t *out_len) {
  uint64_t hoff = 0;
  for (int i = 7; i >= 0; i--) hoff = hoff << 8 | buf[8 + i];
  Ldmc__Header *h = ldmc__header__unpack(NULL, len - hoff, buf + hoff);
  if (!h) return NULL;
  mutate(h, false);
  h->checkpoint->header_crc32 = 0;
  size_t n = ldmc__header__get_packed_size(h);
  uint8_t *out = malloc(hoff + n + 8);
  memcpy(out, buf, hoff);
  ldmc__header__pack(h, out + hoff);
  h->checkpoint->header_crc32 = (uint32_t)crc32(0, out + hoff, (uInt)n);
  n = ldmc__header__get_packed_size(h);
  ldmc__header__pack(h, out + hoff);
  for (int i = 0; i < 8; i++) out[16 + i] = (uint8_t)((uint64_t)n >> (8 * i));
  mutate(h, true);
  ldmc__header__free_unpacked(h, NULL);
  *out_len = hoff + n;
  return out;
}

static void m_none(Ldmc__Header *h, bool undo) { (void)h, (void)undo; }
static void m_tensor_crc(Ldmc__Header *h, bool undo) { h->checkpoint->tensors[5]->crc32 ^= !undo; }
static void m_data_crc(Ldmc__Header *h, bool undo) { h->checkpoint->data_crc32 ^= !undo; }
static void m_version(Ldmc__Header *h, bool undo) { h->checkpoint->version = undo ? 1 : 2; }
static void m_step(Ldmc__Header *h, bool undo) { h->checkpoint->step = undo ? 0 : -5; }
static void m_count(Ldmc__Header *h, bool undo) { h->checkpoint->n_tensors += undo ? 1 : -1; }
static void m_empty_key(Ldmc__Header *h, bool undo) { h->checkpoint->config[2]->key.len = undo ? 11 : 0; }
static void m_nul_value(Ldmc__Header *h, bool undo) { h->checkpoint->config[2]->value.data[3] = undo ? 'i' : 0; }
static void m_role(Ldmc__Header *h, bool undo) {
  static char *old;
  Ldmc__CheckpointTensor *t = h->checkpoint->tensors[1];
  if (!undo) old = t->role;
  t->role = undo ? old : "momentum";
}
static void m_data_state(Ldmc__Header *h, bool undo) {
  static int64_t many[LDMC_CHECKPOINT_MAX_DATA_STATE + 1], *old;
  static size_t old_n;
  Ldmc__Checkpoint *c = h->checkpoint;
  if (!undo) old = c->data_state, old_n = c->n_data_state;
  c->data_state = undo ? old : many;
  c->n_data_state = undo ? old_n : LDMC_CHECKPOINT_MAX_DATA_STATE + 1;
}
static void m_dup_key(Ldmc__Header *h, bool undo) {
  static ProtobufCBinaryData old;
  if (!undo) old = h->checkpoint->config[1]->key;
  h->checkpoint->config[1]->key = undo ? old : h->checkpoint->config[0]->key;
}
static void m_raw_dtype(Ldmc__Header *h, bool undo) { /* bf16 "b" as the raw U16 a module may hold */
  static char *old_dt, *old_raw;
  Ldmc__Tensor *t = h->tensors[1];
  if (!undo) old_dt = t->dtype, old_raw = t->raw_dtype;
  t->dtype = undo ? old_dt : "";
  t->raw_dtype = undo ? old_raw : "U16";
}

static void test_semantics(void) {
  ldmc_checkpoint *ck = sample(false);
  uint8_t *buf = NULL;
  size_t len = 0;
  CHECK(ldmc_checkpoint_encode(ck, &buf, &len) == LDMC_OK);
  ldmc_checkpoint_free(ck);
  struct {
    mutate_fn mutate;
    const char *want; /* NULL: decodes */
  } cases[] = {
      {m_none, NULL},
      {m_tensor_crc, "tensor 'idx' (other): data checksum mismatch"},
      {m_data_crc, "data region checksum mismatch"},
      {m_role, "tensor 'b': unknown role 'momentum'"},
      {m_version, "checkpoint layout version 2 is not supported"},
      {m_step, "step -5 is negative"},
      {m_data_state, "data state has 65 values, more than 64"},
      {m_count, "checkpoint describes 7 tensors, but the file holds 8"},
      {m_dup_key, "config key 'model' appears twice"},
      {m_empty_key, "config entry 2 has an empty key"},
      {m_nul_value, "config entry 2: value contains a NUL byte"},
      {m_raw_dtype, "tensor 'b': raw dtype 'U16' in a checkpoint"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = 0;
    uint8_t *f = rewrite(buf, len, cases[i].mutate, &n);
    CHECK(f != NULL);
    if (!f) continue;
    ldmc_checkpoint *r = NULL;
    ldmc_status s = ldmc_checkpoint_decode(f, n, 0, &r);
    if (!cases[i].want)
      CHECK_MSG(s == LDMC_OK && r, "case %zu: %s", i, ldmc_last_error());
    else
      CHECK_MSG(s == LDMC_ERR_FORMAT && !r && strstr(ldmc_last_error(), cases[i].want), "case %zu: want '%s', got '%s'",
                i, cases[i].want, ldmc_last_error());
    ldmc_checkpoint_free(r);
    free(f);
  }
  free(buf);
}

static void test_rotation(void) {
  char dir[128];
  snprintf(dir, sizeof dir, "%s/rot/sub", g_dir); /* created on the first save */
  ldmc_checkpoint *ck = sample(false);
  for (int64_t step = 100; step <= 500; step += 100) {
    CHECK(ldmc_checkpoint_set_step(ck, step) == LDMC_OK);
    char *w = NULL;
    CHECK_MSG(ldmc_checkpoint_save_rotating(dir, ck, 3, &w) == LDMC_OK, "%s", ldmc_last_error());
    char want[64];
    snprintf(want, sizeof want, "ckpt-%010lld.ldmc", (long long)step);
    CHECK(w && strcmp(w, path_in(dir, want)) == 0 && exists(w));
    free(w);
  }
  CHECK(count_files(dir, NULL) == 3);
  CHECK(exists(path_in(dir, "ckpt-0000000300.ldmc")) && exists(path_in(dir, "ckpt-0000000500.ldmc")));
  CHECK(!exists(path_in(dir, "ckpt-0000000200.ldmc")));
  /* a temp file of a write whose process is gone is removed; one of a live process is kept */
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, NULL, 0);
  char stale[64], live[64];
  snprintf(stale, sizeof stale, "ckpt-0000000600.ldmc.tmp.%ld.0", (long)child);
  snprintf(live, sizeof live, "ckpt-0000000600.ldmc.tmp.%ld.0", (long)getppid());
  fclose(fopen(path_in(dir, stale), "wb"));
  fclose(fopen(path_in(dir, live), "wb"));
  fclose(fopen(path_in(dir, "ckpt-notes.txt"), "wb")); /* not a checkpoint: left alone */
  /* an older step (a resume from an earlier checkpoint) is kept with the K-1 newest */
  CHECK(ldmc_checkpoint_set_step(ck, 250) == LDMC_OK);
  CHECK(ldmc_checkpoint_save_rotating(dir, ck, 2, NULL) == LDMC_OK);
  CHECK(exists(path_in(dir, "ckpt-0000000250.ldmc")) && exists(path_in(dir, "ckpt-0000000500.ldmc")));
  CHECK(!exists(path_in(dir, "ckpt-0000000300.ldmc")) && !exists(path_in(dir, "ckpt-0000000400.ldmc")));
  CHECK(!exists(path_in(dir, stale)) && exists(path_in(dir, live)) && exists(path_in(dir, "ckpt-notes.txt")));
  CHECK(count_files(dir, NULL) == 4);
  CHECK(ldmc_checkpoint_save_rotating(dir, ck, 0, NULL) == LDMC_ERR_INVALID);
  ldmc_checkpoint_free(ck);
}

typedef struct warnings {
  int n;
  char last[1200];
} warnings;

static void collect(void *ctx, const char *msg) {
  warnings *w = ctx;
  w->n++;
  snprintf(w->last, sizeof w->last, "%s", msg);
}

static void truncate_file(const char *p, off_t keep) { CHECK(truncate(p, keep) == 0); }

static void flip_byte(const char *p, long off) {
  FILE *f = fopen(p, "r+b");
  if (!f) return;
  fseek(f, off, SEEK_SET);
  int c = fgetc(f);
  fseek(f, off, SEEK_SET);
  fputc(c ^ 0x20, f);
  fclose(f);
}

static void test_load_latest(void) {
  char dir[128];
  snprintf(dir, sizeof dir, "%s/latest", g_dir);
  ldmc_checkpoint *ck = sample(false), *r = NULL;
  char *path = NULL;
  warnings w = {0};
  CHECK(mkdir(dir, 0777) == 0);
  /* an empty folder: nothing to resume, not an error */
  CHECK(ldmc_checkpoint_load_latest(dir, &r, &path, collect, &w) == LDMC_OK && !r && !path && w.n == 0);
  CHECK(ldmc_checkpoint_load_latest(path_in(g_dir, "no-such-dir"), &r, NULL, collect, &w) == LDMC_ERR_IO);
  for (int64_t step = 100; step <= 300; step += 100) {
    CHECK(ldmc_checkpoint_set_step(ck, step) == LDMC_OK);
    CHECK(ldmc_checkpoint_save_rotating(dir, ck, 5, NULL) == LDMC_OK);
  }
  CHECK(ldmc_checkpoint_load_latest(dir, &r, &path, collect, &w) == LDMC_OK && r && w.n == 0);
  CHECK(r && ldmc_checkpoint_step(r) == 300 && path && strstr(path, "ckpt-0000000300.ldmc"));
  ldmc_checkpoint_free(r);
  free(path);
  /* the newest cut short (a crash mid-copy, a full disk): a warning naming it, then the previous one */
  struct stat st;
  stat(path_in(dir, "ckpt-0000000300.ldmc"), &st);
  truncate_file(path_in(dir, "ckpt-0000000300.ldmc"), st.st_size / 2);
  CHECK(ldmc_checkpoint_load_latest(dir, &r, &path, collect, &w) == LDMC_OK && r);
  CHECK(r && ldmc_checkpoint_step(r) == 200 && ldmc_checkpoint_num_tensors(r) == 8);
  CHECK(w.n == 1);
  CHECK_MSG(strstr(w.last, "ckpt-0000000300.ldmc") && strstr(w.last, "trying the previous one"), "%s", w.last);
  printf("fallback warning: %s\n", w.last);
  ldmc_checkpoint_free(r);
  free(path);
  /* the next one corrupt in its data: two warnings, the oldest loads */
  flip_byte(path_in(dir, "ckpt-0000000200.ldmc"), 40);
  w.n = 0;
  CHECK(ldmc_checkpoint_load_latest(dir, &r, NULL, collect, &w) == LDMC_OK && r && ldmc_checkpoint_step(r) == 100);
  CHECK(w.n == 2 && strstr(w.last, "ckpt-0000000200.ldmc"));
  CHECK_MSG(strstr(w.last, "tensor '"), "%s", w.last);
  ldmc_checkpoint_free(r);
  /* none left: an error naming the folder */
  truncate_file(path_in(dir, "ckpt-0000000100.ldmc"), 0);
  w.n = 0;
  CHECK(ldmc_checkpoint_load_latest(dir, &r, NULL, collect, &w) == LDMC_ERR_FORMAT && !r && w.n == 3);
  CHECK_MSG(strstr(ldmc_last_error(), "none of its 3 checkpoints reads"), "%s", ldmc_last_error());
  ldmc_checkpoint_free(ck);
}

/* A failed write leaves nothing at the path (and no temp file), and an
 * existing checkpoint there unchanged. */
static void test_write_failures(void) {
  ldmc_checkpoint *ck = sample(true);
  /* a folder that cannot exist: under a regular file */
  const char *file = path_in(g_dir, "plain-file");
  fclose(fopen(file, "wb"));
  char bad_dir[200];
  snprintf(bad_dir, sizeof bad_dir, "%s/ckpts", file);
  CHECK(ldmc_checkpoint_write(ck, path_in(bad_dir, "x.ldmc")) == LDMC_ERR_IO);
  CHECK(strstr(ldmc_last_error(), "checkpoint not written") != NULL);
  CHECK(ldmc_checkpoint_save_rotating(bad_dir, ck, 2, NULL) == LDMC_ERR_IO);
  /* an unwritable folder (only when not root: root writes anyway) */
  char ro[128];
  snprintf(ro, sizeof ro, "%s/readonly", g_dir);
  CHECK(mkdir(ro, 0555) == 0);
  if (geteuid() != 0) {
    CHECK(ldmc_checkpoint_write(ck, path_in(ro, "x.ldmc")) == LDMC_ERR_IO);
    CHECK(count_files(ro, NULL) == 0);
  } else {
    printf("write failures: running as root, the read-only folder case is skipped\n");
  }
  /* failing half-way: a file size limit below the checkpoint's size (EFBIG) */
  char wd[128];
  snprintf(wd, sizeof wd, "%s/efbig", g_dir);
  CHECK(mkdir(wd, 0777) == 0);
  const char *p = path_in(wd, "ck.ldmc");
  ldmc_checkpoint *small = sample(false);
  CHECK(ldmc_checkpoint_write(small, p) == LDMC_OK);
  struct stat before;
  stat(p, &before);
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 1 << 20; /* the big checkpoint is over 4 MiB */
  signal(SIGXFSZ, SIG_IGN);
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  ldmc_status s = ldmc_checkpoint_write(ck, p);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_DFL);
  CHECK_MSG(s == LDMC_ERR_IO, "status %d: %s", (int)s, ldmc_last_error());
  printf("write failure: %s\n", ldmc_last_error());
  struct stat after;
  CHECK(stat(p, &after) == 0 && after.st_size == before.st_size && after.st_ino == before.st_ino);
  CHECK(count_files(wd, ".tmp.") == 0 && count_files(wd, NULL) == 1);
  ldmc_checkpoint *r = NULL;
  CHECK(ldmc_checkpoint_read(p, &r) == LDMC_OK && r && same(small, r));
  ldmc_checkpoint_free(r);
  /* the same in a rotating folder: nothing new, nothing deleted */
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  signal(SIGXFSZ, SIG_IGN);
  s = ldmc_checkpoint_save_rotating(wd, ck, 1, NULL);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_DFL);
  CHECK(s == LDMC_ERR_IO && count_files(wd, NULL) == 1 && exists(p));
  ldmc_checkpoint_free(small);
  ldmc_checkpoint_free(ck);
}

int main(int argc, char **argv) {
  fill_sample();
  if (argc == 3 && strcmp(argv[1], "--write") == 0) { /* for tests/cli/inspect_checkpoint.sh */
    ldmc_checkpoint *ck = sample(false);
    ldmc_status s = ldmc_checkpoint_write(ck, argv[2]);
    ldmc_checkpoint_free(ck);
    if (s != LDMC_OK) fprintf(stderr, "%s\n", ldmc_last_error());
    return s == LDMC_OK && t_failed == 0 ? 0 : 1;
  }
  g_big = malloc((size_t)BIG_N * 4);
  uint32_t x = 2463534242u; /* xorshift32: incompressible, so the file is over 4 MiB */
  for (uint32_t i = 0; i < BIG_N; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    g_big[i] = (float)x / 4294967296.0f - 0.5f;
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/ldmc-ckpt.XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_refusals();
  test_damage();
  test_checksums();
  test_semantics();
  test_rotation();
  test_load_latest();
  test_write_failures();
  rm_tree(g_dir);
  free(g_big);
  return test_summary("test_checkpoint");
}
