/* Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 28x28 grayscale images of ten
 * clothing classes, 60000 for training and 10000 for testing, as gzipped IDX
 * files from Debian's package dataset-fashion-mnist (bash tools/setup.sh
 * installs it). The gzip layer is zlib's inflate; the IDX reader checks every
 * header field and the exact length and names the file in each error. A split
 * is held in memory once as uint8; the batcher converts rows to f32 into the
 * caller's buffers, in an order that is a pure function of (seed, epoch).
 * See docs/training.md, "Data". */
#ifndef LDMC_RUNTIME_FASHION_MNIST_H
#define LDMC_RUNTIME_FASHION_MNIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

#define LDMC_FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define LDMC_FMNIST_DIR_ENV "LDMC_FASHION_MNIST_DIR"
#define LDMC_FMNIST_ROWS 28
#define LDMC_FMNIST_COLS 28
#define LDMC_FMNIST_PIXELS (LDMC_FMNIST_ROWS * LDMC_FMNIST_COLS)
#define LDMC_FMNIST_CLASSES 10
#define LDMC_FMNIST_SIZE 32 /* batch images: 28x28 padded by 2 on each side */
#define LDMC_FMNIST_PAD 2
#define LDMC_IDX_MAGIC_IMAGES 0x00000803u /* unsigned bytes, 3 dims */
#define LDMC_IDX_MAGIC_LABELS 0x00000801u /* unsigned bytes, 1 dim */
#define LDMC_IDX_MAX_COUNT 16777216       /* 2^24 items: far above any split */
#define LDMC_FMNIST_MAX_GZ_BYTES (1u << 30) /* a compressed file larger is refused */

/* Class index -> name: "t-shirt", "trouser", ..., "ankle boot". */
extern const char *const ldmc_fmnist_class_names[LDMC_FMNIST_CLASSES];

typedef enum ldmc_fmnist_split { LDMC_FMNIST_TRAIN, LDMC_FMNIST_TEST } ldmc_fmnist_split;
/* "train" / "test"; anything else is LDMC_ERR_INVALID. */
ldmc_status ldmc_fmnist_split_parse(const char *name, ldmc_fmnist_split *out);
const char *ldmc_fmnist_split_name(ldmc_fmnist_split s);
/* The file names of a split: "train-images-idx3-ubyte.gz" etc. */
const char *ldmc_fmnist_images_file(ldmc_fmnist_split s);
const char *ldmc_fmnist_labels_file(ldmc_fmnist_split s);
/* The folder a split is read from: dir if non-NULL and non-empty, else
 * $LDMC_FASHION_MNIST_DIR if set and non-empty, else the Debian path. */
const char *ldmc_fmnist_resolve_dir(const char *dir);

/* ---- one IDX file held in memory (gzip bytes) ------------------------------------
 * Images: magic 0x00000803, dims {count, 28, 28}; labels: magic 0x00000801,
 * dims {count}, every label 0..9. All big-endian, then exactly the bytes the
 * dims announce: fewer is truncation, more is trailing data, both errors. The
 * gzip stream must be complete (CRC and length checked by zlib); members may
 * be concatenated, anything else after the last one is an error. name goes
 * into messages ("file NAME: ..."). */
typedef enum ldmc_idx_kind { LDMC_IDX_IMAGES, LDMC_IDX_LABELS } ldmc_idx_kind;
typedef struct ldmc_idx {
  ldmc_idx_kind kind;
  int64_t count;
  uint8_t *data; /* count*784 pixels (row-major 28x28) or count labels; malloc'd */
} ldmc_idx;
ldmc_status ldmc_idx_decode_gz(const uint8_t *gz, size_t len, ldmc_idx_kind kind, const char *name, ldmc_idx *out);
void ldmc_idx_free(ldmc_idx *x);

/* ---- a split ------------------------------------------------------------------------ */
typedef struct ldmc_fmnist ldmc_fmnist;

/* Reads dir/<split files> (dir as ldmc_fmnist_resolve_dir). A missing folder
 * or file is LDMC_ERR_IO saying that the Debian package dataset-fashion-mnist
 * installs it; a malformed file is LDMC_ERR_FORMAT naming it; images and
 * labels must have the same count. */
ldmc_status ldmc_fmnist_open(const char *dir, ldmc_fmnist_split split, ldmc_fmnist **out);
/* The same from two gzip buffers (the names go into messages). */
ldmc_status ldmc_fmnist_open_memory(const uint8_t *images_gz, size_t images_len, const char *images_name,
                                    const uint8_t *labels_gz, size_t labels_len, const char *labels_name,
                                    ldmc_fmnist **out);
void ldmc_fmnist_free(ldmc_fmnist *d);
int64_t ldmc_fmnist_count(const ldmc_fmnist *d);
/* Keeps only the first n images (n <= 0 or >= count: all), before any
 * batcher is made over it: quick runs and tests on a subset. */
void ldmc_fmnist_limit(ldmc_fmnist *d, int64_t n);
const uint8_t *ldmc_fmnist_images(const ldmc_fmnist *d); /* [count][28][28] */
const uint8_t *ldmc_fmnist_labels(const ldmc_fmnist *d); /* [count], 0..9 */
/* Image i as the batcher writes it: 32x32 f32, x/127.5 - 1 inside, -1 (the
 * background's value) in the 2-pixel border. i must be in [0, count). */
void ldmc_fmnist_image_f32(const ldmc_fmnist *d, int64_t i, float out[LDMC_FMNIST_SIZE * LDMC_FMNIST_SIZE]);

/* ---- the order of an epoch ----------------------------------------------------------
 * Fisher-Yates over 0..n-1 (j from n-1 down to 1 swaps perm[j] with perm[r],
 * r uniform in [0, j]) with r drawn from Philox4x32-10 (backends/interp/rng.c):
 *   key     {lo32(seed), hi32(seed)}
 *   counter {j, lo32(epoch), hi32(epoch), 0x46444154 ("FDAT", keeps it apart
 *           from the graphs' rng ops, whose counters end in 0)}
 *   r       ((w0 << 32 | w1) * (j + 1)) >> 64   (128-bit product; the bias
 *           is below (j+1) / 2^64)
 * so an epoch's order depends on (seed, epoch, n) only. n <= LDMC_IDX_MAX_COUNT. */
void ldmc_fmnist_permutation(uint64_t seed, int64_t epoch, int32_t n, int32_t *perm);

/* ---- batches ------------------------------------------------------------------------
 * LDMC_FMNIST_SHUFFLE (training): epoch e visits the dataset in the order
 *   ldmc_fmnist_permutation(seed, e, count); every batch is full; the last
 *   count % batch rows of an epoch are dropped (they come back, shuffled
 *   elsewhere, in later epochs).
 * LDMC_FMNIST_SEQUENTIAL (evaluation): images 0..count-1 in order, every
 *   image exactly once per epoch; the final batch may be partial: its info
 *   says how many rows are valid, and the rows past them are filled with -1
 *   pixels and label -1.
 * After a batch that ends an epoch the next one starts epoch + 1 at 0. */
typedef enum ldmc_fmnist_order { LDMC_FMNIST_SHUFFLE, LDMC_FMNIST_SEQUENTIAL } ldmc_fmnist_order;

/* Data-order state: with the same dataset, order and batch size, restoring
 * it continues with exactly the batches that followed it. position counts
 * rows (not batches) into the epoch's order. */
typedef struct ldmc_fmnist_state {
  uint64_t seed;
  int64_t epoch;    /* >= 0 */
  int64_t position; /* 0 <= position <= count */
} ldmc_fmnist_state;

typedef struct ldmc_fmnist_batch_info {
  int32_t rows;     /* valid rows: batch, or fewer in a sequential epoch's last batch */
  int64_t epoch;    /* the epoch these rows belong to */
  int64_t first;    /* position of row 0 in that epoch's order */
  bool epoch_end;   /* this batch finished its epoch */
} ldmc_fmnist_batch_info;

typedef struct ldmc_fmnist_batcher ldmc_fmnist_batcher;

/* d is borrowed and must outlive the batcher. 1 <= batch <= count. Starts at
 * {seed, epoch 0, position 0}. All memory is allocated here. */
ldmc_status ldmc_fmnist_batcher_new(const ldmc_fmnist *d, int32_t batch, ldmc_fmnist_order order, uint64_t seed,
                                    ldmc_fmnist_batcher **out);
void ldmc_fmnist_batcher_free(ldmc_fmnist_batcher *b);
/* Writes the next batch: images f32 [batch, 1, 32, 32], labels int32 [batch]
 * (caller's buffers; nothing is allocated). info may be NULL. */
ldmc_status ldmc_fmnist_batcher_next(ldmc_fmnist_batcher *b, float *images, int32_t *labels,
                                     ldmc_fmnist_batch_info *info);
/* As ldmc_fmnist_batcher_next, but the rows' dataset indices instead of
 * their images (-1 for the unused rows of a partial batch): for data kept
 * per image elsewhere (an autoencoder's latents). Same order and state. */
ldmc_status ldmc_fmnist_batcher_next_indices(ldmc_fmnist_batcher *b, int32_t *indices, int32_t *labels,
                                             ldmc_fmnist_batch_info *info);
ldmc_fmnist_state ldmc_fmnist_batcher_state(const ldmc_fmnist_batcher *b);
/* LDMC_ERR_INVALID (state unchanged) when epoch < 0 or position is outside [0, count]. */
ldmc_status ldmc_fmnist_batcher_set_state(ldmc_fmnist_batcher *b, const ldmc_fmnist_state *s);
/* Full batches per epoch (shuffle), or batches including a partial last one (sequential). */
int64_t ldmc_fmnist_batches_per_epoch(const ldmc_fmnist_batcher *b);

#endif
