/* The Fashion-MNIST data layer (runtime/fashion_mnist.h).
 * Real files (Debian's dataset-fashion-mnist; absent, this test fails with
 * the install message): counts, per-class counts and first labels as
 * published, pixel and label checksums against an independent python3 reader
 * (its gzip module), the epoch order against a python3 Philox4x32-10 +
 * Fisher-Yates written from the header's description (its Philox checked on
 * Random123's known answers first), padding and scaling by hand, shuffling,
 * exact resume from a saved state, no allocation per batch.
 * Hostile files in a temp folder: each a clear error naming the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/fashion_mnist.h"
#include "test_util.h"

/* ---- counting allocations ----------------------------------------------------------
 * Under AddressSanitizer through its malloc hook; otherwise this executable's
 * malloc/calloc/realloc, which glibc's own entry points serve. */
static atomic_long g_allocs;
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t), void (*f)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n) {
  (void)p, (void)n;
  atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
}
static void on_free(const volatile void *p) { (void)p; }
static void alloc_count_init(void) { __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free); }
#else
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t m);
void *__libc_realloc(void *p, size_t n);
void *malloc(size_t n) {
  atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
  return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
  atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
  return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
  atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
  return __libc_realloc(p, n);
}
static void alloc_count_init(void) {}
#endif

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- building IDX files ------------------------------------------------------------------ */
typedef struct bytes {
  uint8_t *p;
  size_t n;
} bytes;

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* IDX images: magic, count, rows, cols, then n_px pixels (pixel k = f(k)). */
static bytes idx_images(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols, size_t n_px) {
  bytes b = {malloc(16 + n_px), 16 + n_px};
  put32(b.p, magic), put32(b.p + 4, count), put32(b.p + 8, rows), put32(b.p + 12, cols);
  for (size_t k = 0; k < n_px; k++) b.p[16 + k] = (uint8_t)((k * 37 + k / 784 * 11) % 256);
  return b;
}

static bytes idx_labels(uint32_t magic, uint32_t count, const uint8_t *labels, size_t n) {
  bytes b = {malloc(8 + n), 8 + n};
  put32(b.p, magic), put32(b.p + 4, count);
  memcpy(b.p + 8, labels, n);
  return b;
}

/* One gzip member of raw (deflateInit2 with windowBits 16 + 15). */
static bytes gzip_bytes(const bytes *raw) {
  z_stream zs = {0};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
  size_t cap = deflateBound(&zs, raw->n) + 64;
  bytes out = {malloc(cap), 0};
  zs.next_in = raw->p;
  zs.avail_in = (uInt)raw->n;
  zs.next_out = out.p;
  zs.avail_out = (uInt)cap;
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) abort();
  out.n = cap - zs.avail_out;
  deflateEnd(&zs);
  return out;
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
}

static char g_tmp[256];

/* A split folder under the temp dir: tmp/name/{train-images..., train-labels...}. */
static void make_split(const char *name, const bytes *images_gz, const bytes *labels_gz, char *dir, size_t len) {
  snprintf(dir, len, "%s/%s", g_tmp, name);
  mkdir(dir, 0755);
  char p[512];
  if (images_gz) {
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    write_file(p, images_gz->p, images_gz->n);
  }
  if (labels_gz) {
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    write_file(p, labels_gz->p, labels_gz->n);
  }
}

static const uint8_t k_labels5[5] = {3, 1, 4, 1, 5};

/* The good tiny split: 5 images of the pattern above, labels 3 1 4 1 5. */
static void good_parts(bytes *im_gz, bytes *lb_gz) {
  bytes im = idx_images(LDMC_IDX_MAGIC_IMAGES, 5, 28, 28, 5 * 784), lb = idx_labels(LDMC_IDX_MAGIC_LABELS, 5, k_labels5, 5);
  *im_gz = gzip_bytes(&im);
  *lb_gz = gzip_bytes(&lb);
  free(im.p);
  free(lb.p);
}

/* Opening dir must fail with status want and a message holding every needle. */
static void expect_fail(const char *what, const char *dir, ldmc_status want, const char *n1, const char *n2) {
  ldmc_fmnist *d = NULL;
  ldmc_error_clear();
  ldmc_status s = ldmc_fmnist_open(dir, LDMC_FMNIST_TRAIN, &d);
  const char *m = ldmc_last_error();
  CHECK_MSG(s == want && d == NULL, "%s: status %s, expected %s (%s)", what, ldmc_status_name(s), ldmc_status_name(want), m);
  CHECK_MSG(!n1 || strstr(m, n1), "%s: message lacks '%s': %s", what, n1, m);
  CHECK_MSG(!n2 || strstr(m, n2), "%s: message lacks '%s': %s", what, n2, m);
  printf("  %-26s -> %s\n", what, m);
  ldmc_fmnist_free(d);
}

static void test_hostile(void) {
  printf("hostile files:\n");
  char dir[300], missing[300];
  bytes im_gz, lb_gz;
  good_parts(&im_gz, &lb_gz);

  snprintf(missing, sizeof missing, "%s/no-such-folder", g_tmp);
  expect_fail("missing folder", missing, LDMC_ERR_IO, "dataset-fashion-mnist", "no-such-folder");
  expect_fail("missing folder (setup)", missing, LDMC_ERR_IO, "tools/setup.sh", LDMC_FMNIST_DIR_ENV);
  make_split("no-labels", &im_gz, NULL, dir, sizeof dir);
  expect_fail("missing labels file", dir, LDMC_ERR_IO, "train-labels-idx1-ubyte.gz", "dataset-fashion-mnist");

  /* not gzip: the raw IDX bytes under the .gz name */
  bytes im = idx_images(LDMC_IDX_MAGIC_IMAGES, 5, 28, 28, 5 * 784);
  make_split("not-gzip", &im, &lb_gz, dir, sizeof dir);
  expect_fail("not gzip", dir, LDMC_ERR_FORMAT, "not-gzip/train-images-idx3-ubyte.gz", "not a gzip file");
  bytes empty = {NULL, 0};
  make_split("empty", &empty, &lb_gz, dir, sizeof dir);
  expect_fail("empty file", dir, LDMC_ERR_FORMAT, "empty/train-images-idx3-ubyte.gz", "empty");

  bytes cut = {im_gz.p, im_gz.n / 2};
  make_split("truncated-gzip", &cut, &lb_gz, dir, sizeof dir);
  expect_fail("truncated gzip", dir, LDMC_ERR_FORMAT, "truncated-gzip/train-images-idx3-ubyte.gz", "truncated gzip");
  bytes cut8 = {im_gz.p, im_gz.n - 8}; /* all of the deflate data, no CRC/length trailer */
  make_split("no-trailer", &cut8, &lb_gz, dir, sizeof dir);
  expect_fail("gzip without trailer", dir, LDMC_ERR_FORMAT, "no-trailer/train-images", "truncated gzip");

  bytes bad_crc = {malloc(im_gz.n), im_gz.n};
  memcpy(bad_crc.p, im_gz.p, im_gz.n);
  bad_crc.p[im_gz.n - 8] ^= 0x55; /* CRC-32 in the trailer */
  make_split("bad-crc", &bad_crc, &lb_gz, dir, sizeof dir);
  expect_fail("corrupt CRC", dir, LDMC_ERR_FORMAT, "bad-crc/train-images", "incorrect data check");

  bytes garbage = {malloc(im_gz.n + 3), im_gz.n + 3};
  memcpy(garbage.p, im_gz.p, im_gz.n);
  memcpy(garbage.p + im_gz.n, "xyz", 3);
  make_split("gzip-garbage", &garbage, &lb_gz, dir, sizeof dir);
  expect_fail("garbage after gzip", dir, LDMC_ERR_FORMAT, "gzip-garbage/train-images", "3 trailing bytes after the gzip");

  struct {
    const char *name, *needle;
    uint32_t magic, count, rows, cols;
    size_t n_px;
  } bad_images[] = {
      {"wrong-magic", "magic number 0x00000801", LDMC_IDX_MAGIC_LABELS, 5, 28, 28, 5 * 784},
      {"wrong-magic-type", "magic number 0x00000c03", 0x00000c03, 5, 28, 28, 5 * 784},
      {"wrong-dims", "images are 28x27", LDMC_IDX_MAGIC_IMAGES, 5, 28, 27, 5 * 784},
      {"wrong-dims-32", "images are 32x32", LDMC_IDX_MAGIC_IMAGES, 5, 32, 32, 5 * 784},
      {"trailing-bytes", "3 trailing bytes", LDMC_IDX_MAGIC_IMAGES, 5, 28, 28, 5 * 784 + 3},
      {"truncated-idx", "truncated IDX data", LDMC_IDX_MAGIC_IMAGES, 5, 28, 28, 4 * 784 + 100},
      {"huge-count", "more than the limit", LDMC_IDX_MAGIC_IMAGES, 0xffffffffu, 28, 28, 784},
      {"count-mismatch", "holds 6 images", LDMC_IDX_MAGIC_IMAGES, 6, 28, 28, 6 * 784},
  };
  for (size_t i = 0; i < sizeof bad_images / sizeof bad_images[0]; i++) {
    bytes r = idx_images(bad_images[i].magic, bad_images[i].count, bad_images[i].rows, bad_images[i].cols,
                         bad_images[i].n_px);
    bytes z = gzip_bytes(&r);
    make_split(bad_images[i].name, &z, &lb_gz, dir, sizeof dir);
    char file[128];
    snprintf(file, sizeof file, "%s/train-images-idx3-ubyte.gz", bad_images[i].name);
    expect_fail(bad_images[i].name, dir, LDMC_ERR_FORMAT, file, bad_images[i].needle);
    free(r.p);
    free(z.p);
  }
  /* the mismatch names both files */
  make_split("count-mismatch", NULL, NULL, dir, sizeof dir);
  expect_fail("count mismatch (labels)", dir, LDMC_ERR_FORMAT, "count-mismatch/train-labels-idx1-ubyte.gz", "5 labels");

  const uint8_t label10[5] = {3, 1, 10, 1, 5};
  bytes lr = idx_labels(LDMC_IDX_MAGIC_LABELS, 5, label10, 5), lz = gzip_bytes(&lr);
  make_split("label-10", &im_gz, &lz, dir, sizeof dir);
  expect_fail("label 10", dir, LDMC_ERR_FORMAT, "label-10/train-labels-idx1-ubyte.gz", "label 10 at index 2");
  free(lr.p), free(lz.p);
  lr = idx_labels(LDMC_IDX_MAGIC_IMAGES, 5, k_labels5, 5), lz = gzip_bytes(&lr); /* images magic in a labels file */
  make_split("labels-magic", &im_gz, &lz, dir, sizeof dir);
  expect_fail("labels wrong magic", dir, LDMC_ERR_FORMAT, "labels-magic/train-labels", "this is an images file");
  free(lr.p), free(lz.p);
  lr = idx_labels(LDMC_IDX_MAGIC_LABELS, 5, k_labels5, 2), lz = gzip_bytes(&lr); /* short header+data */
  make_split("labels-short", &im_gz, &lz, dir, sizeof dir);
  expect_fail("labels truncated", dir, LDMC_ERR_FORMAT, "labels-short/train-labels", "truncated IDX data");
  free(lr.p), free(lz.p);
  bytes tiny = {(uint8_t *)"\x00\x00\x08", 3}, tz = gzip_bytes(&tiny);
  make_split("short-header", &tz, &lb_gz, dir, sizeof dir);
  expect_fail("3-byte IDX", dir, LDMC_ERR_FORMAT, "short-header/train-images", "truncated IDX header");
  free(tz.p);
  bytes r0 = idx_images(LDMC_IDX_MAGIC_IMAGES, 0, 28, 28, 0), r0z = gzip_bytes(&r0);
  lr = idx_labels(LDMC_IDX_MAGIC_LABELS, 0, k_labels5, 0), lz = gzip_bytes(&lr);
  make_split("no-images", &r0z, &lz, dir, sizeof dir);
  expect_fail("no images", dir, LDMC_ERR_FORMAT, "no-images/train-images", "holds no images");
  free(r0.p), free(r0z.p), free(lr.p), free(lz.p);

  /* a folder where the images file should be; a file where the folder should be */
  snprintf(dir, sizeof dir, "%s/file-is-dir", g_tmp);
  mkdir(dir, 0755);
  char p[512];
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
  mkdir(p, 0755);
  expect_fail("images file is a folder", dir, LDMC_ERR_IO, "file-is-dir/train-images", "not a regular file");
  snprintf(p, sizeof p, "%s/plain-file", g_tmp);
  write_file(p, "x", 1);
  expect_fail("folder is a file", p, LDMC_ERR_IO, "plain-file", "not a folder");

  /* two gzip members are one stream (as gzip -d reads them) */
  bytes a = {im.p, 1000}, b = {im.p + 1000, im.n - 1000}, az = gzip_bytes(&a), bz = gzip_bytes(&b);
  bytes two = {malloc(az.n + bz.n), az.n + bz.n};
  memcpy(two.p, az.p, az.n);
  memcpy(two.p + az.n, bz.p, bz.n);
  make_split("two-members", &two, &lb_gz, dir, sizeof dir);
  ldmc_fmnist *d = NULL;
  ldmc_status s = ldmc_fmnist_open(dir, LDMC_FMNIST_TRAIN, &d);
  CHECK_MSG(s == LDMC_OK && d && ldmc_fmnist_count(d) == 5 && memcmp(ldmc_fmnist_images(d), im.p + 16, 5 * 784) == 0,
            "two gzip members: %s", ldmc_last_error());
  ldmc_fmnist_free(d);

  /* the in-memory entry points give the same checks */
  ldmc_idx x;
  CHECK(ldmc_idx_decode_gz(im.p, im.n, LDMC_IDX_IMAGES, "mem.gz", &x) == LDMC_ERR_FORMAT &&
        strstr(ldmc_last_error(), "file 'mem.gz'") && strstr(ldmc_last_error(), "not a gzip"));
  CHECK(ldmc_idx_decode_gz(lb_gz.p, lb_gz.n, LDMC_IDX_IMAGES, "lab.gz", &x) == LDMC_ERR_FORMAT &&
        strstr(ldmc_last_error(), "this is a labels file"));
  CHECK(ldmc_idx_decode_gz(lb_gz.p, lb_gz.n, LDMC_IDX_LABELS, "lab.gz", &x) == LDMC_OK && x.count == 5 &&
        memcmp(x.data, k_labels5, 5) == 0);
  ldmc_idx_free(&x);
  CHECK(ldmc_fmnist_open_memory(im_gz.p, im_gz.n, "i", lb_gz.p, lb_gz.n, "l", &d) == LDMC_OK && d &&
        ldmc_fmnist_count(d) == 5);
  ldmc_fmnist_free(d);
  CHECK(ldmc_fmnist_open_memory(lb_gz.p, lb_gz.n, "i", lb_gz.p, lb_gz.n, "l", &d) == LDMC_ERR_FORMAT && !d);

  free(im.p), free(bad_crc.p), free(garbage.p);
  free(az.p), free(bz.p), free(two.p), free(im_gz.p), free(lb_gz.p);
}

/* ---- the tiny split: dir / env resolution, pixels, both orders ---------------------------- */
static void test_tiny(void) {
  bytes im_gz, lb_gz;
  good_parts(&im_gz, &lb_gz);
  char dir[300], missing[300];
  make_split("good", &im_gz, &lb_gz, dir, sizeof dir);
  snprintf(missing, sizeof missing, "%s/not-here", g_tmp);

  /* argument > $LDMC_FASHION_MNIST_DIR > the Debian folder */
  setenv(LDMC_FMNIST_DIR_ENV, dir, 1);
  CHECK(strcmp(ldmc_fmnist_resolve_dir(NULL), dir) == 0);
  CHECK(strcmp(ldmc_fmnist_resolve_dir("/x"), "/x") == 0);
  ldmc_fmnist *d = NULL;
  CHECK_MSG(ldmc_fmnist_open(NULL, LDMC_FMNIST_TRAIN, &d) == LDMC_OK && d, "env folder: %s", ldmc_last_error());
  ldmc_fmnist_free(d);
  d = NULL;
  setenv(LDMC_FMNIST_DIR_ENV, missing, 1);
  CHECK(ldmc_fmnist_open(NULL, LDMC_FMNIST_TRAIN, &d) == LDMC_ERR_IO && strstr(ldmc_last_error(), "not-here"));
  CHECK_MSG(ldmc_fmnist_open(dir, LDMC_FMNIST_TRAIN, &d) == LDMC_OK && d, "argument over env: %s", ldmc_last_error());
  unsetenv(LDMC_FMNIST_DIR_ENV);
  CHECK(strcmp(ldmc_fmnist_resolve_dir(NULL), LDMC_FMNIST_DEFAULT_DIR) == 0);
  CHECK(strcmp(ldmc_fmnist_resolve_dir(""), LDMC_FMNIST_DEFAULT_DIR) == 0);
  if (!d) return;

  /* pixels: the pattern of idx_images, so 0 and 255 both occur */
  const uint8_t *px = ldmc_fmnist_images(d);
  CHECK(px[0] == 0 && px[784 * 2 + 5] == (uint8_t)(((784 * 2 + 5) * 37 + 2 * 11) % 256));
  float img[32 * 32];
  ldmc_fmnist_image_f32(d, 3, img);
  int bad = 0, saw0 = 0, saw255 = 0;
  for (int r = 0; r < 32; r++)
    for (int c = 0; c < 32; c++) {
      float want = -1.0f;
      if (r >= 2 && r < 30 && c >= 2 && c < 30) {
        unsigned x = px[3 * 784 + (r - 2) * 28 + (c - 2)];
        want = (float)((double)x / 127.5 - 1.0);
        saw0 += x == 0, saw255 += x == 255;
      }
      bad += img[r * 32 + c] != want;
    }
  CHECK_MSG(bad == 0, "image 3 padded/scaled: %d of 1024 values differ", bad);
  CHECK(saw0 > 0 && saw255 > 0);
  CHECK(img[0] == -1.0f && img[2 * 32 + 1] == -1.0f && img[29 * 32 + 30] == -1.0f && img[31 * 32 + 31] == -1.0f);

  /* sequential, batch 2 over 5: rows 2, 2, 1 (+1 padding row), then epoch 1 */
  ldmc_fmnist_batcher *b = NULL;
  CHECK(ldmc_fmnist_batcher_new(d, 2, LDMC_FMNIST_SEQUENTIAL, 0, &b) == LDMC_OK);
  CHECK(ldmc_fmnist_batches_per_epoch(b) == 3);
  float bi[2 * 1024];
  int32_t bl[2];
  ldmc_fmnist_batch_info info;
  int rows[3];
  for (int k = 0; k < 3; k++) {
    CHECK(ldmc_fmnist_batcher_next(b, bi, bl, &info) == LDMC_OK);
    rows[k] = info.rows;
    CHECK(info.epoch == 0 && info.first == 2 * k && info.epoch_end == (k == 2));
    CHECK(bl[0] == k_labels5[2 * k]);
  }
  CHECK(rows[0] == 2 && rows[1] == 2 && rows[2] == 1);
  CHECK(bl[1] == -1 && bi[1024] == -1.0f && bi[2047] == -1.0f);
  ldmc_fmnist_image_f32(d, 4, img);
  CHECK(memcmp(bi, img, sizeof img) == 0);
  ldmc_fmnist_state st = ldmc_fmnist_batcher_state(b);
  CHECK(st.epoch == 1 && st.position == 0);
  CHECK(ldmc_fmnist_batcher_next(b, bi, bl, &info) == LDMC_OK && info.epoch == 1 && info.first == 0 && bl[0] == 3);
  ldmc_fmnist_batcher_free(b);

  /* shuffle, batch 2 over 5: 2 full batches, the 5th image dropped, the
   * order the permutation's first 4 */
  CHECK(ldmc_fmnist_batcher_new(d, 2, LDMC_FMNIST_SHUFFLE, 99, &b) == LDMC_OK);
  CHECK(ldmc_fmnist_batches_per_epoch(b) == 2);
  for (int e = 0; e < 3; e++) {
    int32_t perm[5];
    ldmc_fmnist_permutation(99, e, 5, perm);
    for (int k = 0; k < 2; k++) {
      CHECK(ldmc_fmnist_batcher_next(b, bi, bl, &info) == LDMC_OK);
      CHECK(info.rows == 2 && info.epoch == e && info.epoch_end == (k == 1));
      CHECK(bl[0] == k_labels5[perm[2 * k]] && bl[1] == k_labels5[perm[2 * k + 1]]);
      ldmc_fmnist_image_f32(d, perm[2 * k + 1], img);
      CHECK(memcmp(bi + 1024, img, sizeof img) == 0);
    }
  }
  /* bad arguments and states */
  ldmc_fmnist_state bad_st = {1, -1, 0};
  CHECK(ldmc_fmnist_batcher_set_state(b, &bad_st) == LDMC_ERR_INVALID);
  bad_st = (ldmc_fmnist_state){1, 0, 6};
  CHECK(ldmc_fmnist_batcher_set_state(b, &bad_st) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "position 6"));
  bad_st = (ldmc_fmnist_state){1, 4, 5}; /* at the end of epoch 4: the next batch is epoch 5's first */
  CHECK(ldmc_fmnist_batcher_set_state(b, &bad_st) == LDMC_OK);
  CHECK(ldmc_fmnist_batcher_next(b, bi, bl, &info) == LDMC_OK && info.epoch == 5 && info.first == 0);
  CHECK(ldmc_fmnist_batcher_next(b, NULL, bl, &info) == LDMC_ERR_INVALID);
  ldmc_fmnist_batcher_free(b);
  ldmc_fmnist_batcher *nb = NULL;
  CHECK(ldmc_fmnist_batcher_new(d, 6, LDMC_FMNIST_SHUFFLE, 0, &nb) == LDMC_ERR_INVALID && !nb);
  CHECK(ldmc_fmnist_batcher_new(d, 0, LDMC_FMNIST_SEQUENTIAL, 0, &nb) == LDMC_ERR_INVALID && !nb);

  ldmc_fmnist_free(d);
  free(im_gz.p), free(lb_gz.p);
}

/* ---- python3 oracle -------------------------------------------------------------------------- */
static const char *k_oracle_py =
    "import gzip, struct, sys\n"
    "M=0xffffffff\n"
    "def philox(c, k):\n"
    "    c0, c1, c2, c3 = c; k0, k1 = k\n"
    "    for r in range(10):\n"
    "        if r: k0 = (k0 + 0x9E3779B9) & M; k1 = (k1 + 0xBB67AE85) & M\n"
    "        p0 = 0xD2511F53 * c0; p1 = 0xCD9E8D57 * c2\n"
    "        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M, (p0 >> 32) ^ c3 ^ k1, p0 & M\n"
    "    return c0, c1, c2, c3\n"
    "# Random123 kat_vectors, philox4x32 10\n"
    "assert philox((0,0,0,0), (0,0)) == (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)\n"
    "assert philox((M,M,M,M), (M,M)) == (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)\n"
    "assert philox((0x243f6a88,0x85a308d3,0x13198a2e,0x03707344), (0xa4093822,0x299f31d0)) == "
    "(0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)\n"
    "def perm(seed, epoch, n):\n"
    "    p = list(range(n)); key = (seed & M, seed >> 32)\n"
    "    for j in range(n - 1, 0, -1):\n"
    "        w = philox((j, epoch & M, epoch >> 32, 0x46444154), key)\n"
    "        r = (((w[0] << 32) | w[1]) * (j + 1)) >> 64\n"
    "        p[j], p[r] = p[r], p[j]\n"
    "    return p\n"
    "for seed, epoch, n in ((42, 3, 1000), ((1 << 40) + 7, (1 << 33) + 1, 17), (7, 0, 60000)):\n"
    "    p = perm(seed, epoch, n)\n"
    "    print('perm', seed, epoch, n, sum(i * v for i, v in enumerate(p)), *p[:24])\n"
    "d = sys.argv[1]\n"
    "for split, pre in (('train', 'train'), ('test', 't10k')):\n"
    "    im = gzip.open(d + '/' + pre + '-images-idx3-ubyte.gz').read()[16:]\n"
    "    lb = gzip.open(d + '/' + pre + '-labels-idx1-ubyte.gz').read()[8:]\n"
    "    n = len(lb)\n"
    "    print('sum', split, n, sum(im), sum(i * l for i, l in enumerate(lb)))\n"
    "    for i in (0, 1, 12345 % n, n - 1):\n"
    "        x = im[784 * i: 784 * (i + 1)]\n"
    "        print('img', split, i, lb[i], sum(x), sum(k * v for k, v in enumerate(x)), "
    "repr(sum(v / 127.5 - 1 for v in x) - (1024 - 784)))\n";

#define ORACLE_LINES 32
static char g_oracle[ORACLE_LINES][512];
static int g_n_oracle;

static bool run_oracle(const char *dir) {
  char script[300], cmd[1024];
  snprintf(script, sizeof script, "%s/oracle.py", g_tmp);
  write_file(script, k_oracle_py, strlen(k_oracle_py));
  const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  snprintf(cmd, sizeof cmd, "%s '%s' '%s'", py, script, dir);
  FILE *f = popen(cmd, "r");
  if (!f) return false;
  while (g_n_oracle < ORACLE_LINES && fgets(g_oracle[g_n_oracle], sizeof g_oracle[0], f)) g_n_oracle++;
  int rc = pclose(f);
  CHECK_MSG(rc == 0 && g_n_oracle == 13, "python3 oracle: exit %d, %d lines", rc, g_n_oracle);
  return rc == 0;
}

/* The oracle line starting with prefix, else NULL. */
static const char *oracle(const char *prefix) {
  for (int i = 0; i < g_n_oracle; i++)
    if (strncmp(g_oracle[i], prefix, strlen(prefix)) == 0) return g_oracle[i] + strlen(prefix);
  return NULL;
}

static void test_perm_oracle(void) {
  const struct {
    uint64_t seed;
    int64_t epoch;
    int32_t n;
  } cases[] = {{42, 3, 1000}, {(1ull << 40) + 7, (1ll << 33) + 1, 17}, {7, 0, 60000}};
  int32_t *p = malloc(60000 * sizeof *p);
  for (int c = 0; c < 3; c++) {
    ldmc_fmnist_permutation(cases[c].seed, cases[c].epoch, cases[c].n, p);
    char key[96];
    snprintf(key, sizeof key, "perm %llu %lld %d ", (unsigned long long)cases[c].seed, (long long)cases[c].epoch,
             (int)cases[c].n);
    const char *line = oracle(key);
    CHECK_MSG(line != NULL, "no oracle line '%s'", key);
    if (!line) continue;
    long long want_sum = strtoll(line, (char **)&line, 10), sum = 0;
    for (int32_t i = 0; i < cases[c].n; i++) sum += (long long)i * p[i];
    CHECK_MSG(sum == want_sum, "permutation %s: checksum %lld, python %lld", key, sum, want_sum);
    int bad = 0;
    for (int i = 0; i < 24 && i < cases[c].n; i++) bad += strtol(line, (char **)&line, 10) != p[i];
    CHECK_MSG(bad == 0, "permutation %s: %d of the first 24 differ from python", key, bad);
  }
  free(p);
}

/* ---- real data ----------------------------------------------------------------------------------- */
static void check_split(const ldmc_fmnist *d, const char *split, int64_t want_n) {
  int64_t n = ldmc_fmnist_count(d);
  CHECK_MSG(n == want_n, "%s: %lld images, published %lld", split, (long long)n, (long long)want_n);
  const uint8_t *lb = ldmc_fmnist_labels(d), *im = ldmc_fmnist_images(d);
  int64_t per[10] = {0};
  long long lsum = 0, psum = 0;
  for (int64_t i = 0; i < n; i++) per[lb[i]]++, lsum += i * lb[i];
  for (int64_t k = 0; k < n * 784; k++) psum += im[k];
  for (int c = 0; c < 10; c++) CHECK_MSG(per[c] == want_n / 10, "%s: class %d has %lld images", split, c, (long long)per[c]);
  /* published: both splits begin with an ankle boot */
  CHECK_MSG(lb[0] == 9, "%s: first label %d, published 9 (ankle boot)", split, lb[0]);
  /* sums verified with python3's gzip module when this test was written */
  long long fixed = strcmp(split, "train") == 0 ? 3431114169ll : 573469082ll;
  CHECK_MSG(psum == fixed, "%s: pixel sum %lld, expected %lld", split, psum, fixed);
  char key[64];
  snprintf(key, sizeof key, "sum %s %lld ", split, (long long)n);
  const char *line = oracle(key);
  CHECK_MSG(line != NULL, "no oracle line '%s'", key);
  if (line) {
    long long wp = strtoll(line, (char **)&line, 10), wl = strtoll(line, NULL, 10);
    CHECK_MSG(psum == wp && lsum == wl, "%s: pixel sum %lld label checksum %lld, python %lld %lld", split, psum, lsum, wp, wl);
  }
  int64_t idx[4] = {0, 1, 12345 % n, n - 1};
  for (int j = 0; j < 4; j++) {
    int64_t i = idx[j];
    snprintf(key, sizeof key, "img %s %lld ", split, (long long)i);
    line = oracle(key);
    CHECK_MSG(line != NULL, "no oracle line '%s'", key);
    if (!line) continue;
    long wl = strtol(line, (char **)&line, 10);
    long long ws = strtoll(line, (char **)&line, 10), ww = strtoll(line, (char **)&line, 10);
    double wf = strtod(line, NULL);
    long long s = 0, w = 0;
    for (int k = 0; k < 784; k++) s += im[i * 784 + k], w += (long long)k * im[i * 784 + k];
    float img[1024];
    ldmc_fmnist_image_f32(d, i, img);
    double f = 0;
    for (int k = 0; k < 1024; k++) f += img[k];
    CHECK_MSG(lb[i] == wl && s == ws && w == ww, "%s image %lld: label %d sums %lld %lld, python %ld %lld %lld", split,
              (long long)i, lb[i], s, w, wl, ws, ww);
    CHECK_MSG(fabs(f - wf) < 1e-3, "%s image %lld: padded/scaled sum %.6f, python %.6f", split, (long long)i, f, wf);
  }
  printf("%s: %lld images, 10 classes x %lld, first label %d (%s), pixel sum %lld\n", split, (long long)n,
         (long long)per[0], lb[0], ldmc_fmnist_class_names[lb[0]], psum);
}

/* Runs k batches, hashing images and labels (FNV-1a over the bytes). */
static uint64_t run_batches(ldmc_fmnist_batcher *b, int k, int32_t batch, float *im, int32_t *lb) {
  uint64_t h = 1469598103934665603ull;
  for (int j = 0; j < k; j++) {
    ldmc_fmnist_batch_info info;
    if (ldmc_fmnist_batcher_next(b, im, lb, &info) != LDMC_OK) return 0;
    const uint8_t *p = (const uint8_t *)im;
    for (size_t q = 0; q < (size_t)batch * 1024 * 4; q += 61) h = (h ^ p[q]) * 1099511628211ull;
    for (int32_t r = 0; r < batch; r++) h = (h ^ (uint32_t)lb[r]) * 1099511628211ull;
    h = (h ^ (uint64_t)info.rows) * 1099511628211ull;
  }
  return h;
}

static void test_order(const ldmc_fmnist *train, const ldmc_fmnist *test) {
  const int32_t n = (int32_t)ldmc_fmnist_count(train);
  int32_t *p = malloc(n * sizeof *p), *q = malloc(n * sizeof *q);
  char *seen = calloc(n, 1);
  ldmc_fmnist_permutation(1, 0, n, p);
  int ok = 1;
  for (int32_t i = 0; i < n; i++) {
    if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
    else seen[p[i]] = 1;
  }
  CHECK_MSG(ok, "the order of (1, 0) is not a permutation of 0..%d", n - 1);
  int same = 0;
  ldmc_fmnist_permutation(1, 0, n, q);
  CHECK(memcmp(p, q, n * sizeof *p) == 0);
  ldmc_fmnist_permutation(1, 1, n, q); /* another epoch */
  for (int32_t i = 0; i < n; i++) same += p[i] == q[i];
  CHECK_MSG(same < 20, "epochs 0 and 1 agree at %d positions", same);
  same = 0;
  ldmc_fmnist_permutation(2, 0, n, q); /* another seed */
  for (int32_t i = 0; i < n; i++) same += p[i] == q[i];
  CHECK_MSG(same < 20, "seeds 1 and 2 agree at %d positions", same);

  /* the batcher follows the permutation, whatever the batch size */
  enum { B = 100 };
  float *im = malloc(sizeof(float) * 1024 * 256);
  int32_t lb[256];
  ldmc_fmnist_batcher *b = NULL, *b2 = NULL;
  CHECK(ldmc_fmnist_batcher_new(train, 256, LDMC_FMNIST_SHUFFLE, 1, &b) == LDMC_OK);
  CHECK(ldmc_fmnist_batches_per_epoch(b) == n / 256);
  const uint8_t *labels = ldmc_fmnist_labels(train);
  int bad = 0;
  for (int k = 0; k < 3; k++) {
    ldmc_fmnist_batcher_next(b, im, lb, NULL);
    for (int r = 0; r < 256; r++) bad += lb[r] != labels[p[256 * k + r]];
  }
  float one[1024];
  ldmc_fmnist_image_f32(train, p[2 * 256 + 17], one);
  CHECK(memcmp(im + 17 * 1024, one, sizeof one) == 0);
  ldmc_fmnist_batcher_free(b);
  CHECK(ldmc_fmnist_batcher_new(train, 64, LDMC_FMNIST_SHUFFLE, 1, &b) == LDMC_OK);
  for (int k = 0; k < 12; k++) {
    ldmc_fmnist_batcher_next(b, im, lb, NULL);
    for (int r = 0; r < 64; r++) bad += lb[r] != labels[p[64 * k + r]];
  }
  CHECK_MSG(bad == 0, "batch labels differ from the permutation's at %d rows", bad);
  ldmc_fmnist_batcher_free(b);

  /* save/restore: 595 of epoch 0's 600 batches, save, 10 more (into epoch 1) */
  CHECK(ldmc_fmnist_batcher_new(train, B, LDMC_FMNIST_SHUFFLE, 5, &b) == LDMC_OK);
  run_batches(b, 595, B, im, lb);
  ldmc_fmnist_state st = ldmc_fmnist_batcher_state(b);
  CHECK(st.seed == 5 && st.epoch == 0 && st.position == 595 * B);
  uint64_t h1 = run_batches(b, 10, B, im, lb);
  CHECK(ldmc_fmnist_batcher_state(b).epoch == 1 && ldmc_fmnist_batcher_state(b).position == 5 * B);
  CHECK(ldmc_fmnist_batcher_new(train, B, LDMC_FMNIST_SHUFFLE, 12345, &b2) == LDMC_OK);
  run_batches(b2, 3, B, im, lb); /* some other position and seed first */
  CHECK(ldmc_fmnist_batcher_set_state(b2, &st) == LDMC_OK);
  uint64_t h2 = run_batches(b2, 10, B, im, lb);
  CHECK_MSG(h1 == h2 && h1 != 0, "restored batches differ: %016llx vs %016llx", (unsigned long long)h1,
            (unsigned long long)h2);
  st.seed = 6; /* another seed: other batches */
  CHECK(ldmc_fmnist_batcher_set_state(b2, &st) == LDMC_OK);
  CHECK(run_batches(b2, 10, B, im, lb) != h1);
  ldmc_fmnist_batcher_free(b);
  ldmc_fmnist_batcher_free(b2);

  /* sequential over the test split, batch 256: 39 full batches + 16 rows,
   * every image once; resumes exactly too */
  CHECK(ldmc_fmnist_batcher_new(test, 256, LDMC_FMNIST_SEQUENTIAL, 0, &b) == LDMC_OK);
  CHECK(ldmc_fmnist_batches_per_epoch(b) == 40);
  int64_t rows = 0, nb = 0;
  bad = 0;
  long long lsum = 0;
  ldmc_fmnist_batch_info info = {0};
  const uint8_t *tl = ldmc_fmnist_labels(test);
  do {
    ldmc_fmnist_batcher_next(b, im, lb, &info);
    for (int r = 0; r < info.rows; r++) lsum += (info.first + r) * (long long)lb[r], bad += lb[r] != tl[info.first + r];
    rows += info.rows, nb++;
  } while (!info.epoch_end && nb < 100);
  CHECK_MSG(rows == 10000 && nb == 40 && info.rows == 16 && bad == 0, "sequential: %lld rows in %lld batches, last %d",
            (long long)rows, (long long)nb, info.rows);
  CHECK(lb[16] == -1 && lb[255] == -1 && im[16 * 1024] == -1.0f);
  const char *line = oracle("sum test 10000 ");
  if (line) {
    strtoll(line, (char **)&line, 10);
    CHECK(lsum == strtoll(line, NULL, 10));
  }
  run_batches(b, 20, 256, im, lb);
  st = ldmc_fmnist_batcher_state(b);
  h1 = run_batches(b, 30, 256, im, lb); /* across the end of epoch 1 */
  CHECK(ldmc_fmnist_batcher_new(test, 256, LDMC_FMNIST_SEQUENTIAL, 0, &b2) == LDMC_OK);
  CHECK(ldmc_fmnist_batcher_set_state(b2, &st) == LDMC_OK);
  CHECK(run_batches(b2, 30, 256, im, lb) == h1);
  ldmc_fmnist_batcher_free(b);
  ldmc_fmnist_batcher_free(b2);

  /* no allocation per batch: 1000 batches of 64 cross into epoch 1 (937 per epoch) */
  CHECK(ldmc_fmnist_batcher_new(train, 64, LDMC_FMNIST_SHUFFLE, 3, &b) == LDMC_OK);
  long before = atomic_load(&g_allocs);
  double t0 = now_s();
  for (int k = 0; k < 1000; k++) ldmc_fmnist_batcher_next(b, im, lb, &info);
  double dt = now_s() - t0;
  long after = atomic_load(&g_allocs);
  CHECK_MSG(after == before, "%ld allocations during 1000 batches", after - before);
  CHECK(ldmc_fmnist_batcher_state(b).epoch == 1);
  /* the counter works: it sees the batcher's own allocations */
  ldmc_fmnist_batcher_free(b);
  long per_batch = after - before;
  before = atomic_load(&g_allocs);
  CHECK(ldmc_fmnist_batcher_new(train, 64, LDMC_FMNIST_SHUFFLE, 3, &b) == LDMC_OK);
  CHECK(atomic_load(&g_allocs) > before);
  ldmc_fmnist_batcher_free(b);
  printf("batches: 1000 x 64 (shuffled, one epoch change) in %.3f s, %.0f images/s, %ld allocations\n", dt,
         64000 / dt, per_batch);
  free(im), free(p), free(q), free(seen);
}

static void test_real(void) {
  const char *dir = ldmc_fmnist_resolve_dir(NULL);
  ldmc_fmnist *train = NULL, *test = NULL;
  double t0 = now_s();
  ldmc_status s = ldmc_fmnist_open(dir, LDMC_FMNIST_TRAIN, &train);
  double t_train = now_s() - t0;
  CHECK_MSG(s == LDMC_OK, "%s", ldmc_last_error());
  if (s == LDMC_OK) s = ldmc_fmnist_open(dir, LDMC_FMNIST_TEST, &test);
  CHECK_MSG(s == LDMC_OK, "%s", ldmc_last_error());
  if (s != LDMC_OK) {
    fprintf(stderr, "the real-data checks need the dataset: %s\n", ldmc_last_error());
    ldmc_fmnist_free(train);
    return;
  }
  printf("opened %s: train in %.2f s\n", dir, t_train);
  run_oracle(dir);
  test_perm_oracle();
  check_split(train, "train", 60000);
  check_split(test, "test", 10000);
  test_order(train, test);
  ldmc_fmnist_free(train);
  ldmc_fmnist_free(test);
}

static void test_names(void) {
  CHECK(strcmp(ldmc_fmnist_class_names[0], "t-shirt") == 0 && strcmp(ldmc_fmnist_class_names[1], "trouser") == 0 &&
        strcmp(ldmc_fmnist_class_names[5], "sandal") == 0 && strcmp(ldmc_fmnist_class_names[9], "ankle boot") == 0);
  ldmc_fmnist_split sp;
  CHECK(ldmc_fmnist_split_parse("test", &sp) == LDMC_OK && sp == LDMC_FMNIST_TEST);
  CHECK(ldmc_fmnist_split_parse("train", &sp) == LDMC_OK && sp == LDMC_FMNIST_TRAIN);
  CHECK(ldmc_fmnist_split_parse("valid", &sp) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "valid"));
  CHECK(strcmp(ldmc_fmnist_labels_file(LDMC_FMNIST_TEST), "t10k-labels-idx1-ubyte.gz") == 0);
}

static void rm_tree(const char *dir) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
  alloc_count_init();
  snprintf(g_tmp, sizeof g_tmp, "/tmp/ldmc-fmnist.XXXXXX");
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 1;
  }
  const char *env = getenv(LDMC_FMNIST_DIR_ENV);
  char *saved_env = env ? strdup(env) : NULL;
  test_names();
  test_hostile();
  test_tiny();
  if (saved_env) setenv(LDMC_FMNIST_DIR_ENV, saved_env, 1);
  free(saved_env);
  test_real();
  rm_tree(g_tmp);
  return test_summary("test_data_fmnist");
}
