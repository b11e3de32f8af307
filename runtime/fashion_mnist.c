/* Fashion-MNIST: zlib inflate over the gzip bytes, the IDX checks, a split in
 * memory, the epoch order and the batcher (see fashion_mnist.h). Files are
 * read whole and decoded by the same in-memory path the fuzz target drives. */
#include "runtime/fashion_mnist.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "backends/interp/interp.h" /* ldmc_philox4x32_10 */
#include "support/fileio.h"

const char *const ldmc_fmnist_class_names[LDMC_FMNIST_CLASSES] = {
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"};

ldmc_status ldmc_fmnist_split_parse(const char *name, ldmc_fmnist_split *out) {
  if (name && strcmp(name, "train") == 0) {
    *out = LDMC_FMNIST_TRAIN;
    return LDMC_OK;
  }
  if (name && strcmp(name, "test") == 0) {
    *out = LDMC_FMNIST_TEST;
    return LDMC_OK;
  }
  char q[64];
  return ldmc_error(LDMC_ERR_INVALID, "unknown Fashion-MNIST split '%s' (expected train or test)",
                    name ? ldmc_quote(name, q, sizeof q) : "(null)");
}

const char *ldmc_fmnist_split_name(ldmc_fmnist_split s) { return s == LDMC_FMNIST_TEST ? "test" : "train"; }
const char *ldmc_fmnist_images_file(ldmc_fmnist_split s) {
  return s == LDMC_FMNIST_TEST ? "t10k-images-idx3-ubyte.gz" : "train-images-idx3-ubyte.gz";
}
const char *ldmc_fmnist_labels_file(ldmc_fmnist_split s) {
  return s == LDMC_FMNIST_TEST ? "t10k-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte.gz";
}

const char *ldmc_fmnist_resolve_dir(const char *dir) {
  if (dir && dir[0]) return dir;
  const char *env = getenv(LDMC_FMNIST_DIR_ENV);
  if (env && env[0]) return env;
  return LDMC_FMNIST_DEFAULT_DIR;
}

/* ---- gzip: zlib's inflate over a buffer ---------------------------------------------
 * One z_stream in gzip-only mode (windowBits 16 + 15): zlib parses the header
 * and checks the CRC-32 and length of each member. */
typedef struct gz_in {
  z_stream zs;
  const uint8_t *src;
  size_t len, fed; /* bytes of src handed to zlib so far */
  bool ended;      /* the last member ended exactly at the end of src */
} gz_in;

#define GZ_CHUNK ((size_t)1 << 30) /* zlib counts in uInt: feed and drain in pieces */

static size_t gz_offset(const gz_in *g) { return (size_t)(g->zs.next_in - (const Bytef *)g->src); }

static ldmc_status gz_open(gz_in *g, const uint8_t *src, size_t len) {
  memset(g, 0, sizeof *g);
  if (len == 0) return ldmc_error(LDMC_ERR_FORMAT, "empty file, not gzip");
  if (len < 2 || src[0] != 0x1f || src[1] != 0x8b)
    return ldmc_error(LDMC_ERR_FORMAT, "not a gzip file (starts with %02x %02x; gzip starts with 1f 8b)", src[0],
                      len > 1 ? src[1] : 0);
  g->src = src;
  g->len = len;
  g->zs.next_in = (Bytef *)src;
  if (inflateInit2(&g->zs, 16 + MAX_WBITS) != Z_OK)
    return ldmc_error(LDMC_ERR_NOMEM, "zlib: cannot start inflate: %s", g->zs.msg ? g->zs.msg : "out of memory");
  return LDMC_OK;
}

static void gz_close(gz_in *g) {
  if (g->src) inflateEnd(&g->zs);
}

/* Up to n decompressed bytes into dst; *got < n only at the clean end of the
 * last member. Truncated or corrupt input is an error with its offset. */
static ldmc_status gz_read(gz_in *g, uint8_t *dst, size_t n, size_t *got) {
  *got = 0;
  while (*got < n && !g->ended) {
    if (g->zs.avail_in == 0 && g->fed < g->len) {
      size_t c = g->len - g->fed < GZ_CHUNK ? g->len - g->fed : GZ_CHUNK;
      g->zs.next_in = (Bytef *)g->src + g->fed;
      g->zs.avail_in = (uInt)c;
      g->fed += c;
    }
    size_t want = n - *got < GZ_CHUNK ? n - *got : GZ_CHUNK;
    g->zs.next_out = dst + *got;
    g->zs.avail_out = (uInt)want;
    int rc = inflate(&g->zs, Z_NO_FLUSH);
    *got += want - g->zs.avail_out;
    if (rc == Z_STREAM_END) {
      size_t off = gz_offset(g), rest = g->len - off;
      if (rest == 0) {
        g->ended = true;
      } else if (rest >= 2 && g->src[off] == 0x1f && g->src[off + 1] == 0x8b) {
        if (inflateReset(&g->zs) != Z_OK) return ldmc_error(LDMC_ERR_INTERNAL, "zlib: inflateReset failed");
      } else {
        return ldmc_error(LDMC_ERR_FORMAT, "%zu trailing bytes after the gzip stream (from byte %zu) are not a gzip member",
                          rest, off);
      }
    } else if (rc == Z_OK || rc == Z_BUF_ERROR) {
      /* room left for output, no input left, no stream end: nothing more can come */
      if (g->zs.avail_out > 0 && g->zs.avail_in == 0 && g->fed == g->len)
        return ldmc_error(LDMC_ERR_FORMAT, "truncated gzip stream: the file ends (at %zu bytes) before the stream does",
                          g->len);
    } else if (rc == Z_MEM_ERROR) {
      return ldmc_error(LDMC_ERR_NOMEM, "zlib: out of memory inflating");
    } else if (rc != Z_OK) { /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
      return ldmc_error(LDMC_ERR_FORMAT, "corrupt gzip data near byte %zu: %s", gz_offset(g),
                        g->zs.msg ? g->zs.msg : "inflate failed");
    }
  }
  return LDMC_OK;
}

/* ---- IDX -------------------------------------------------------------------------------- */
static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

#define TRAILING_COUNT_CAP ((size_t)64 << 20) /* count trailing bytes up to this, then say "at least" */

static ldmc_status idx_body(gz_in *g, ldmc_idx_kind kind, ldmc_idx *out) {
  const bool images = kind == LDMC_IDX_IMAGES;
  const size_t hlen = images ? 16 : 8;
  const uint32_t want_magic = images ? LDMC_IDX_MAGIC_IMAGES : LDMC_IDX_MAGIC_LABELS;
  const char *what = images ? "images" : "labels";
  uint8_t h[16];
  size_t got;
  LDMC_TRY(gz_read(g, h, hlen, &got));
  if (got == 0) return ldmc_error(LDMC_ERR_FORMAT, "no IDX data: the gzip stream is empty");
  if (got < 4) return ldmc_error(LDMC_ERR_FORMAT, "truncated IDX header: %zu of %zu bytes", got, hlen);
  if (be32(h) != want_magic)
    return ldmc_error(LDMC_ERR_FORMAT,
                      "IDX magic number 0x%08x, expected 0x%08x (unsigned bytes, %s: %s)%s", be32(h), want_magic,
                      images ? "3 dims" : "1 dim", images ? "count x 28 x 28 images" : "count labels",
                      be32(h) == (images ? LDMC_IDX_MAGIC_LABELS : LDMC_IDX_MAGIC_IMAGES)
                          ? (images ? "; this is a labels file" : "; this is an images file")
                          : "");
  if (got < hlen) return ldmc_error(LDMC_ERR_FORMAT, "truncated IDX header: %zu of %zu bytes", got, hlen);
  uint32_t count = be32(h + 4);
  if (count > LDMC_IDX_MAX_COUNT)
    return ldmc_error(LDMC_ERR_FORMAT, "IDX header announces %u %s, more than the limit of %d", count, what,
                      LDMC_IDX_MAX_COUNT);
  if (images && (be32(h + 8) != LDMC_FMNIST_ROWS || be32(h + 12) != LDMC_FMNIST_COLS))
    return ldmc_error(LDMC_ERR_FORMAT, "images are %ux%u (rows x cols), expected 28x28", be32(h + 8), be32(h + 12));
  const size_t item = images ? LDMC_FMNIST_PIXELS : 1, need = (size_t)count * item;

  /* The buffer grows with what actually decompresses, so a header announcing
   * millions of images in a tiny file costs no more than the file holds. */
  size_t cap = need < ((size_t)1 << 20) ? need : ((size_t)1 << 20), have = 0;
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf) return ldmc_error(LDMC_ERR_NOMEM, "cannot allocate %zu bytes for %s", cap, what);
  ldmc_status s = LDMC_OK;
  while (have < need) {
    if (have == cap) {
      size_t nc = cap > need / 2 ? need : cap * 2;
      uint8_t *nb = realloc(buf, nc);
      if (!nb) {
        s = ldmc_error(LDMC_ERR_NOMEM, "cannot allocate %zu bytes for %s", nc, what);
        goto fail;
      }
      buf = nb;
      cap = nc;
    }
    if ((s = gz_read(g, buf + have, cap - have, &got)) != LDMC_OK) goto fail;
    have += got;
    if (have < cap && have < need) {
      s = ldmc_error(LDMC_ERR_FORMAT, "truncated IDX data: the header announces %u %s (%zu bytes after the header) but %zu follow",
                     count, what, need, have);
      goto fail;
    }
  }
  /* exactly need bytes: anything more (or a broken stream end) is an error */
  uint8_t scratch[4096];
  size_t extra = 0;
  do {
    if ((s = gz_read(g, scratch, sizeof scratch, &got)) != LDMC_OK) goto fail;
    extra += got;
  } while (got == sizeof scratch && extra < TRAILING_COUNT_CAP);
  if (extra) {
    s = ldmc_error(LDMC_ERR_FORMAT, "%s%zu trailing bytes after the %u %s the IDX header announces (%zu bytes expected)",
                   extra >= TRAILING_COUNT_CAP ? "at least " : "", extra, count, what, hlen + need);
    goto fail;
  }
  if (!images) {
    for (size_t i = 0; i < need; i++)
      if (buf[i] >= LDMC_FMNIST_CLASSES) {
        s = ldmc_error(LDMC_ERR_FORMAT, "label %u at index %zu is outside 0..%d", buf[i], i, LDMC_FMNIST_CLASSES - 1);
        goto fail;
      }
  }
  out->kind = kind;
  out->count = count;
  out->data = buf;
  return LDMC_OK;
fail:
  free(buf);
  return s;
}

ldmc_status ldmc_idx_decode_gz(const uint8_t *gz, size_t len, ldmc_idx_kind kind, const char *name, ldmc_idx *out) {
  memset(out, 0, sizeof *out);
  if (!name) name = "(memory)";
  char q[512];
  if (kind != LDMC_IDX_IMAGES && kind != LDMC_IDX_LABELS)
    return ldmc_error(LDMC_ERR_INVALID, "file '%s': unknown IDX kind %d", ldmc_quote(name, q, sizeof q), (int)kind);
  gz_in g;
  ldmc_status s = gz_open(&g, gz, len);
  if (s == LDMC_OK) s = idx_body(&g, kind, out);
  gz_close(&g);
  if (s != LDMC_OK) ldmc_error_prefix("file '%s': ", ldmc_quote(name, q, sizeof q));
  return s;
}

void ldmc_idx_free(ldmc_idx *x) {
  if (!x) return;
  free(x->data);
  x->data = NULL;
  x->count = 0;
}

/* ---- a split ---------------------------------------------------------------------------- */
struct ldmc_fmnist {
  int64_t count;
  uint8_t *images, *labels;
};

static ldmc_status fmnist_from_idx(ldmc_idx *im, ldmc_idx *lb, const char *im_name, const char *lb_name,
                                   ldmc_fmnist **out) {
  char q1[512], q2[512];
  ldmc_status s = LDMC_OK;
  if (im->count != lb->count)
    s = ldmc_error(LDMC_ERR_FORMAT, "file '%s' holds %lld images but file '%s' holds %lld labels",
                   ldmc_quote(im_name, q1, sizeof q1), (long long)im->count, ldmc_quote(lb_name, q2, sizeof q2),
                   (long long)lb->count);
  else if (im->count == 0)
    s = ldmc_error(LDMC_ERR_FORMAT, "file '%s' holds no images", ldmc_quote(im_name, q1, sizeof q1));
  ldmc_fmnist *d = NULL;
  if (s == LDMC_OK && !(d = malloc(sizeof *d))) s = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  if (s != LDMC_OK) {
    ldmc_idx_free(im);
    ldmc_idx_free(lb);
    return s;
  }
  d->count = im->count;
  d->images = im->data;
  d->labels = lb->data;
  im->data = lb->data = NULL;
  *out = d;
  return LDMC_OK;
}

ldmc_status ldmc_fmnist_open_memory(const uint8_t *images_gz, size_t images_len, const char *images_name,
                                    const uint8_t *labels_gz, size_t labels_len, const char *labels_name,
                                    ldmc_fmnist **out) {
  *out = NULL;
  if (!images_name) images_name = "(images in memory)";
  if (!labels_name) labels_name = "(labels in memory)";
  ldmc_idx im, lb;
  LDMC_TRY(ldmc_idx_decode_gz(images_gz, images_len, LDMC_IDX_IMAGES, images_name, &im));
  ldmc_status s = ldmc_idx_decode_gz(labels_gz, labels_len, LDMC_IDX_LABELS, labels_name, &lb);
  if (s != LDMC_OK) {
    ldmc_idx_free(&im);
    return s;
  }
  return fmnist_from_idx(&im, &lb, images_name, labels_name, out);
}

static ldmc_status not_installed(const char *what, const char *path) {
  char q[512];
  return ldmc_error(LDMC_ERR_IO,
                    "Fashion-MNIST not found: %s '%s' does not exist. Debian's package dataset-fashion-mnist "
                    "installs it under " LDMC_FMNIST_DEFAULT_DIR " (bash tools/setup.sh installs it, or "
                    "apt-get install dataset-fashion-mnist), or set " LDMC_FMNIST_DIR_ENV
                    " to a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
                    what, ldmc_quote(path, q, sizeof q));
}

static ldmc_status read_idx_file(const char *dir, const char *file, ldmc_idx_kind kind, char *path, size_t plen,
                                 ldmc_idx *out) {
  char q[512];
  if ((size_t)snprintf(path, plen, "%s/%s", dir, file) >= plen)
    return ldmc_error(LDMC_ERR_IO, "path '%s/%s' is too long", ldmc_quote(dir, q, sizeof q), file);
  struct stat st;
  if (stat(path, &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) return not_installed("file", path);
  uint8_t *gz = NULL;
  size_t len = 0;
  LDMC_TRY(ldmc_file_read(path, LDMC_FMNIST_MAX_GZ_BYTES, &gz, &len));
  ldmc_status s = ldmc_idx_decode_gz(gz, len, kind, path, out);
  free(gz);
  return s;
}

ldmc_status ldmc_fmnist_open(const char *dir, ldmc_fmnist_split split, ldmc_fmnist **out) {
  *out = NULL;
  char q[512];
  if (split != LDMC_FMNIST_TRAIN && split != LDMC_FMNIST_TEST)
    return ldmc_error(LDMC_ERR_INVALID, "unknown Fashion-MNIST split %d", (int)split);
  dir = ldmc_fmnist_resolve_dir(dir);
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return not_installed("folder", dir);
    return ldmc_error(LDMC_ERR_IO, "cannot open Fashion-MNIST folder '%s': %s", ldmc_quote(dir, q, sizeof q),
                      strerror(errno));
  }
  if (!S_ISDIR(st.st_mode))
    return ldmc_error(LDMC_ERR_IO, "Fashion-MNIST folder '%s' is not a folder", ldmc_quote(dir, q, sizeof q));
  char ipath[PATH_MAX], lpath[PATH_MAX];
  ldmc_idx im, lb;
  LDMC_TRY(read_idx_file(dir, ldmc_fmnist_images_file(split), LDMC_IDX_IMAGES, ipath, sizeof ipath, &im));
  ldmc_status s = read_idx_file(dir, ldmc_fmnist_labels_file(split), LDMC_IDX_LABELS, lpath, sizeof lpath, &lb);
  if (s != LDMC_OK) {
    ldmc_idx_free(&im);
    return s;
  }
  return fmnist_from_idx(&im, &lb, ipath, lpath, out);
}

void ldmc_fmnist_free(ldmc_fmnist *d) {
  if (!d) return;
  free(d->images);
  free(d->labels);
  free(d);
}

int64_t ldmc_fmnist_count(const ldmc_fmnist *d) { return d->count; }

void ldmc_fmnist_limit(ldmc_fmnist *d, int64_t n) {
  if (n > 0 && n < d->count) d->count = n;
}
const uint8_t *ldmc_fmnist_images(const ldmc_fmnist *d) { return d->images; }
const uint8_t *ldmc_fmnist_labels(const ldmc_fmnist *d) { return d->labels; }

/* x/127.5 - 1 in double, rounded once to f32: 0 -> -1 and 255 -> 1 exactly. */
static float pixel_f32(unsigned x) { return (float)((double)x / 127.5 - 1.0); }

static void write_image(const uint8_t *px, const float *lut, float *o) {
  const int S = LDMC_FMNIST_SIZE, P = LDMC_FMNIST_PAD;
  for (int i = 0; i < P * S; i++) o[i] = -1.0f;
  for (int r = 0; r < LDMC_FMNIST_ROWS; r++) {
    float *row = o + (r + P) * S;
    for (int c = 0; c < P; c++) row[c] = row[S - 1 - c] = -1.0f;
    for (int c = 0; c < LDMC_FMNIST_COLS; c++) row[P + c] = lut[px[r * LDMC_FMNIST_COLS + c]];
  }
  for (int i = (S - P) * S; i < S * S; i++) o[i] = -1.0f;
}

void ldmc_fmnist_image_f32(const ldmc_fmnist *d, int64_t i, float out[LDMC_FMNIST_SIZE * LDMC_FMNIST_SIZE]) {
  float lut[256];
  for (unsigned x = 0; x < 256; x++) lut[x] = pixel_f32(x);
  write_image(d->images + i * LDMC_FMNIST_PIXELS, lut, out);
}

/* ---- epoch order ------------------------------------------------------------------------- */
#define FMNIST_STREAM_TAG 0x46444154u /* "FDAT" */

void ldmc_fmnist_permutation(uint64_t seed, int64_t epoch, int32_t n, int32_t *perm) {
  for (int32_t j = 0; j < n; j++) perm[j] = j;
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const uint64_t e = (uint64_t)epoch;
  for (int32_t j = n - 1; j > 0; j--) {
    const uint32_t ctr[4] = {(uint32_t)j, (uint32_t)e, (uint32_t)(e >> 32), FMNIST_STREAM_TAG};
    uint32_t w[4];
    ldmc_philox4x32_10(ctr, key, w);
    uint64_t u = (uint64_t)w[0] << 32 | w[1];
    int32_t r = (int32_t)(((unsigned __int128)u * (uint64_t)(j + 1)) >> 64);
    int32_t t = perm[j];
    perm[j] = perm[r];
    perm[r] = t;
  }
}

/* ---- batches ------------------------------------------------------------------------------ */
struct ldmc_fmnist_batcher {
  const ldmc_fmnist *d;
  int32_t batch;
  ldmc_fmnist_order order;
  ldmc_fmnist_state st;
  int32_t *perm; /* shuffle: the order of (perm_seed, perm_epoch) when perm_ok */
  bool perm_ok;
  uint64_t perm_seed;
  int64_t perm_epoch;
  float lut[256];
};

ldmc_status ldmc_fmnist_batcher_new(const ldmc_fmnist *d, int32_t batch, ldmc_fmnist_order order, uint64_t seed,
                                    ldmc_fmnist_batcher **out) {
  *out = NULL;
  if (!d) return ldmc_error(LDMC_ERR_INVALID, "Fashion-MNIST batcher: no dataset");
  if (order != LDMC_FMNIST_SHUFFLE && order != LDMC_FMNIST_SEQUENTIAL)
    return ldmc_error(LDMC_ERR_INVALID, "Fashion-MNIST batcher: unknown order %d", (int)order);
  if (batch < 1 || batch > d->count)
    return ldmc_error(LDMC_ERR_INVALID, "Fashion-MNIST batcher: batch size %d is outside 1..%lld (the split's images)",
                      (int)batch, (long long)d->count);
  ldmc_fmnist_batcher *b = calloc(1, sizeof *b);
  if (!b) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  if (order == LDMC_FMNIST_SHUFFLE && !(b->perm = malloc((size_t)d->count * sizeof *b->perm))) {
    free(b);
    return ldmc_error(LDMC_ERR_NOMEM, "cannot allocate the order of %lld images", (long long)d->count);
  }
  b->d = d;
  b->batch = batch;
  b->order = order;
  b->st.seed = seed;
  for (unsigned x = 0; x < 256; x++) b->lut[x] = pixel_f32(x);
  *out = b;
  return LDMC_OK;
}

void ldmc_fmnist_batcher_free(ldmc_fmnist_batcher *b) {
  if (!b) return;
  free(b->perm);
  free(b);
}

/* Whether rows remain for one more batch of this epoch from position pos. */
static bool epoch_has_batch(const ldmc_fmnist_batcher *b, int64_t pos) {
  int64_t left = b->d->count - pos;
  return b->order == LDMC_FMNIST_SHUFFLE ? left >= b->batch : left > 0;
}

/* The next batch as images (and labels), or as dataset indices (images NULL). */
static ldmc_status next_batch(ldmc_fmnist_batcher *b, float *images, int32_t *indices, int32_t *labels,
                              ldmc_fmnist_batch_info *info) {
  ldmc_fmnist_state *st = &b->st;
  if (!epoch_has_batch(b, st->position)) { /* a restored state at an epoch's end */
    if (st->epoch == INT64_MAX) return ldmc_error(LDMC_ERR_INVALID, "Fashion-MNIST batcher: epoch counter overflow");
    st->epoch++;
    st->position = 0;
  }
  const int64_t n = b->d->count, pos = st->position;
  if (b->order == LDMC_FMNIST_SHUFFLE && (!b->perm_ok || b->perm_seed != st->seed || b->perm_epoch != st->epoch)) {
    ldmc_fmnist_permutation(st->seed, st->epoch, (int32_t)n, b->perm);
    b->perm_ok = true;
    b->perm_seed = st->seed;
    b->perm_epoch = st->epoch;
  }
  const int32_t rows = n - pos < b->batch ? (int32_t)(n - pos) : b->batch;
  const size_t img = (size_t)LDMC_FMNIST_SIZE * LDMC_FMNIST_SIZE;
  for (int32_t k = 0; k < rows; k++) {
    int64_t i = b->order == LDMC_FMNIST_SHUFFLE ? b->perm[pos + k] : pos + k;
    if (images) write_image(b->d->images + i * LDMC_FMNIST_PIXELS, b->lut, images + (size_t)k * img);
    else indices[k] = (int32_t)i;
    labels[k] = b->d->labels[i];
  }
  for (int32_t k = rows; k < b->batch; k++) { /* a sequential epoch's partial last batch */
    if (images)
      for (size_t p = 0; p < img; p++) images[(size_t)k * img + p] = -1.0f;
    else indices[k] = -1;
    labels[k] = -1;
  }
  ldmc_fmnist_batch_info bi = {.rows = rows, .epoch = st->epoch, .first = pos, .epoch_end = false};
  st->position += rows;
  if (!epoch_has_batch(b, st->position)) {
    bi.epoch_end = true;
    if (st->epoch < INT64_MAX) { /* the state names where the next batch starts */
      st->epoch++;
      st->position = 0;
    }
  }
  if (info) *info = bi;
  return LDMC_OK;
}

ldmc_status ldmc_fmnist_batcher_next(ldmc_fmnist_batcher *b, float *images, int32_t *labels,
                                     ldmc_fmnist_batch_info *info) {
  if (!images || !labels) return ldmc_error(LDMC_ERR_INVALID, "Fashion-MNIST batcher: no output buffers");
  return next_batch(b, images, NULL, labels, info);
}

ldmc_status ldmc_fmnist_batcher_next_indices(ldmc_fmnist_batcher *b, int32_t *indices, int32_t *labels,
                                             ldmc_fmnist_batch_info *info) {
  if (!indices || !labels) return ldmc_error(LDMC_ERR_INVALID, "Fashion-MNIST batcher: no output buffers");
  return next_batch(b, NULL, indices, labels, info);
}

ldmc_fmnist_state ldmc_fmnist_batcher_state(const ldmc_fmnist_batcher *b) { return b->st; }

ldmc_status ldmc_fmnist_batcher_set_state(ldmc_fmnist_batcher *b, const ldmc_fmnist_state *s) {
  if (s->epoch < 0 || s->position < 0 || s->position > b->d->count)
    return ldmc_error(LDMC_ERR_INVALID,
                      "Fashion-MNIST data state: epoch %lld, position %lld: needs epoch >= 0 and position in 0..%lld",
                      (long long)s->epoch, (long long)s->position, (long long)b->d->count);
  b->st = *s;
  return LDMC_OK;
}

int64_t ldmc_fmnist_batches_per_epoch(const ldmc_fmnist_batcher *b) {
  int64_t n = b->d->count;
  return b->order == LDMC_FMNIST_SHUFFLE ? n / b->batch : (n + b->batch - 1) / b->batch;
}
