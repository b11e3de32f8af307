/* libFuzzer target for the Fashion-MNIST IDX reader (runtime/fashion_mnist.h):
 * the input is a gzipped IDX file, decoded as images and as labels. Each
 * decode either fails with a message or returns exactly what its header
 * announces (labels 0..9). Decoded images then go through the batcher, with
 * labels written here, in both orders: every row is an image of the split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "runtime/fashion_mnist.h"

/* Labels i % 10 for n images as a gzipped IDX file. */
static uint8_t *labels_gz(int64_t n, size_t *len) {
  size_t raw_n = 8 + (size_t)n;
  uint8_t *raw = malloc(raw_n);
  if (!raw) return NULL;
  const uint32_t hdr[2] = {LDMC_IDX_MAGIC_LABELS, (uint32_t)n};
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < 4; k++) raw[4 * w + k] = (uint8_t)(hdr[w] >> (24 - 8 * k));
  for (int64_t i = 0; i < n; i++) raw[8 + i] = (uint8_t)(i % 10);
  z_stream zs = {0};
  uint8_t *out = NULL;
  if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
    size_t cap = deflateBound(&zs, raw_n) + 64;
    out = malloc(cap);
    zs.next_in = raw;
    zs.avail_in = (uInt)raw_n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (out && deflate(&zs, Z_FINISH) == Z_STREAM_END) {
      *len = cap - zs.avail_out;
    } else {
      free(out);
      out = NULL;
    }
    deflateEnd(&zs);
  }
  free(raw);
  return out;
}

static void run_batcher(const ldmc_fmnist *d, ldmc_fmnist_order order, int32_t batch, uint64_t seed) {
  ldmc_fmnist_batcher *b = NULL;
  if (ldmc_fmnist_batcher_new(d, batch, order, seed, &b) != LDMC_OK) __builtin_trap();
  float *im = malloc((size_t)batch * LDMC_FMNIST_SIZE * LDMC_FMNIST_SIZE * sizeof *im);
  int32_t *lb = malloc((size_t)batch * sizeof *lb);
  if (!im || !lb) __builtin_trap();
  int64_t rows = 0, n = ldmc_fmnist_count(d), per = ldmc_fmnist_batches_per_epoch(b);
  for (int64_t k = 0; k < per; k++) {
    ldmc_fmnist_batch_info info;
    if (ldmc_fmnist_batcher_next(b, im, lb, &info) != LDMC_OK) __builtin_trap();
    if (info.rows < 1 || info.rows > batch || info.epoch != 0 || info.epoch_end != (k == per - 1)) __builtin_trap();
    for (int32_t r = 0; r < batch; r++)
      if (r < info.rows ? (lb[r] < 0 || lb[r] > 9) : lb[r] != -1) __builtin_trap();
    rows += info.rows;
  }
  if (order == LDMC_FMNIST_SEQUENTIAL ? rows != n : rows != per * batch) __builtin_trap();
  ldmc_fmnist_state st = ldmc_fmnist_batcher_state(b);
  if (st.epoch != 1 || st.position != 0) __builtin_trap();
  free(im);
  free(lb);
  ldmc_fmnist_batcher_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ldmc_idx x;
  for (int kind = LDMC_IDX_IMAGES; kind <= LDMC_IDX_LABELS; kind++) {
    ldmc_error_clear();
    if (ldmc_idx_decode_gz(data, size, (ldmc_idx_kind)kind, "fuzz.gz", &x) != LDMC_OK) {
      if (!strstr(ldmc_last_error(), "file 'fuzz.gz': ")) __builtin_trap();
      if (x.data || x.count) __builtin_trap();
      continue;
    }
    if (x.kind != (ldmc_idx_kind)kind || x.count < 0 || x.count > LDMC_IDX_MAX_COUNT || (x.count && !x.data))
      __builtin_trap();
    if (kind == LDMC_IDX_LABELS)
      for (int64_t i = 0; i < x.count; i++)
        if (x.data[i] > 9) __builtin_trap();
    int64_t count = x.count;
    ldmc_idx_free(&x);
    if (kind != LDMC_IDX_IMAGES || count == 0 || count > 4096) continue;
    /* the split: these images with labels i % 10 */
    size_t llen = 0;
    uint8_t *lgz = labels_gz(count, &llen);
    if (!lgz) continue;
    ldmc_fmnist *d = NULL;
    if (ldmc_fmnist_open_memory(data, size, "fuzz.gz", lgz, llen, "labels.gz", &d) != LDMC_OK) __builtin_trap();
    if (ldmc_fmnist_count(d) != count) __builtin_trap();
    int32_t batch = (int32_t)(1 + (size > 0 ? data[size - 1] : 0) % count);
    run_batcher(d, LDMC_FMNIST_SEQUENTIAL, batch, 0);
    run_batcher(d, LDMC_FMNIST_SHUFFLE, batch, size);
    ldmc_fmnist_free(d);
    free(lgz);
  }
  return 0;
}
