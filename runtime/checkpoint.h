/* Training checkpoints: the .ldmc container (docs/formats.md, "Checkpoints")
 * holding a model configuration (ordered string key/value pairs), named
 * tensors tagged with a role (parameters, optimizer state, EMA weights,
 * other), the step, the RNG state and the data-order state. Writes are
 * atomic; every read checks the container and CRC-32s of the header, of the
 * compressed data and of every tensor's bytes, so a truncated or corrupted
 * file is an error naming the file and what is wrong, never wrong data. A directory manager keeps the
 * last K checkpoints and resumes from the newest good one.
 *
 * Errors are ldmc_status codes with ldmc_last_error() set, as everywhere. */
#ifndef LDMC_RUNTIME_CHECKPOINT_H
#define LDMC_RUNTIME_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"

typedef struct ldmc_checkpoint ldmc_checkpoint;

/* What a tensor is for; stored by name ("param", "optimizer", "ema", "other"). */
typedef enum ldmc_checkpoint_role {
  LDMC_CKPT_PARAM,     /* trained parameters P */
  LDMC_CKPT_OPTIMIZER, /* optimizer state: adam_m.P, adam_v.P */
  LDMC_CKPT_EMA,       /* EMA weights: ema.P */
  LDMC_CKPT_OTHER,     /* anything else (frozen weights, buffers, ...) */
  LDMC_CKPT_ROLE_COUNT,
  LDMC_CKPT_ANY = -1 /* lookups: any role */
} ldmc_checkpoint_role;

#define LDMC_CHECKPOINT_MAX_DATA_STATE 64 /* int64 values of data-order state */

const char *ldmc_checkpoint_role_name(ldmc_checkpoint_role r); /* "param", ...; "any" for ANY */
bool ldmc_checkpoint_role_parse(const char *s, ldmc_checkpoint_role *out);
/* The role of a training step's state by its name (frontend.h's layout):
 * adam_m.* / adam_v.* optimizer, ema.* EMA, anything else a parameter. */
ldmc_checkpoint_role ldmc_checkpoint_role_of_name(const char *name);

/* ---- building ---- */
ldmc_checkpoint *ldmc_checkpoint_new(void); /* NULL when out of memory */
void ldmc_checkpoint_free(ldmc_checkpoint *ck);  /* NULL is fine */

/* Sets key to value (both copied); a new key goes last, an existing one keeps
 * its place. Keys are non-empty. */
ldmc_status ldmc_checkpoint_set_config(ldmc_checkpoint *ck, const char *key, const char *value);
/* Adds a tensor. Names are unique over the whole checkpoint (whatever the
 * role); dtype is an ldmc dtype; rank <= 8, dims >= 0. data (numel x element
 * size bytes) is NOT copied: it must stay valid and unchanged until the
 * checkpoint is written or freed, so a training loop checkpoints its state
 * where it lives. */
ldmc_status ldmc_checkpoint_add_tensor(ldmc_checkpoint *ck, const char *name, ldmc_checkpoint_role role,
                                       ldmc_dtype dtype, int rank, const int64_t *dims, const void *data);
ldmc_status ldmc_checkpoint_set_step(ldmc_checkpoint *ck, int64_t step); /* step >= 0 */
void ldmc_checkpoint_set_rng(ldmc_checkpoint *ck, int64_t seed, int64_t counter);
/* n <= LDMC_CHECKPOINT_MAX_DATA_STATE values (copied), e.g. {seed, epoch, position}. */
ldmc_status ldmc_checkpoint_set_data_state(ldmc_checkpoint *ck, const int64_t *v, int n);

/* ---- reading what it holds ---- */
int64_t ldmc_checkpoint_step(const ldmc_checkpoint *ck);
void ldmc_checkpoint_rng(const ldmc_checkpoint *ck, int64_t *seed, int64_t *counter);
int ldmc_checkpoint_data_state(const ldmc_checkpoint *ck, const int64_t **v); /* returns the count */

int32_t ldmc_checkpoint_num_config(const ldmc_checkpoint *ck);
void ldmc_checkpoint_config_at(const ldmc_checkpoint *ck, int32_t i, const char **key, const char **value);
const char *ldmc_checkpoint_config(const ldmc_checkpoint *ck, const char *key); /* NULL: absent */

/* Tensors in the order they were added (or stored). crc32: the CRC-32 of its
 * bytes as read (0 in a checkpoint built in memory); role, crc32 may be NULL.
 * NULL when i is out of range. */
int32_t ldmc_checkpoint_num_tensors(const ldmc_checkpoint *ck);
const ldmc_tensor *ldmc_checkpoint_tensor_at(const ldmc_checkpoint *ck, int32_t i, ldmc_checkpoint_role *role,
                                             uint32_t *crc32);
int32_t ldmc_checkpoint_count(const ldmc_checkpoint *ck, ldmc_checkpoint_role role); /* ANY: all */
/* The tensor called name if its role is role (or role is ANY); else NULL. */
const ldmc_tensor *ldmc_checkpoint_find(const ldmc_checkpoint *ck, const char *name, ldmc_checkpoint_role role);
/* As find, but a missing tensor, another role, dtype or shape is an error
 * (LDMC_ERR_INVALID) naming the checkpoint's file, the tensor and both types:
 * what resuming into a compiled step needs. */
ldmc_status ldmc_checkpoint_get(const ldmc_checkpoint *ck, const char *name, ldmc_checkpoint_role role,
                                ldmc_dtype dtype, const ldmc_shape *shape, const ldmc_tensor **out);
/* The file it was read from ("" for one built or decoded in memory). */
const char *ldmc_checkpoint_path(const ldmc_checkpoint *ck);

/* ---- files ---- */
/* Atomically: a temp file in path's folder, fsync, rename over path, fsync the
 * folder. On any failure path is untouched (old contents or absent) and the
 * temp file is removed. */
ldmc_status ldmc_checkpoint_write(const ldmc_checkpoint *ck, const char *path);
/* Maps path and decodes it: tensors are decompressed into memory the
 * checkpoint owns. Messages start with the path. */
ldmc_status ldmc_checkpoint_read(const char *path, ldmc_checkpoint **out);
/* Whether path is an .ldmc file whose header marks it a checkpoint (a quick
 * look: nothing beyond the prelude and header is checked). I/O errors only. */
ldmc_status ldmc_checkpoint_sniff(const char *path, bool *is_checkpoint);

/* In memory. max_bytes caps the decompressed tensor bytes (0: no cap), for
 * untrusted input. */
ldmc_status ldmc_checkpoint_encode(const ldmc_checkpoint *ck, uint8_t **out, size_t *out_len);
ldmc_status ldmc_checkpoint_decode(const uint8_t *data, size_t len, uint64_t max_bytes, ldmc_checkpoint **out);

/* ---- a directory of checkpoints: DIR/ckpt-<step, 10+ digits>.ldmc ---- */
/* Writes DIR/ckpt-<step>.ldmc (creating DIR if needed), and only once it is
 * durable deletes the older ones beyond the keep_last (>= 1) newest by step;
 * the file just written is never deleted. Also removes temp files of
 * checkpoint writes whose process no longer runs (a write killed with
 * SIGKILL). written: the path (malloc'd), or NULL. */
ldmc_status ldmc_checkpoint_save_rotating(const char *dir, const ldmc_checkpoint *ck, int keep_last, char **written);

/* Warnings of load_latest: one line, no newline. NULL: "ldmc: warning: ..." on stderr. */
typedef void (*ldmc_checkpoint_warn_fn)(void *ctx, const char *message);
/* Reads the newest DIR/ckpt-<step>.ldmc that reads correctly: each one that
 * does not (truncated, corrupt) is reported through warn, naming it and what
 * is wrong, and the next older one is tried. *out = NULL with LDMC_OK when DIR
 * holds no checkpoint; an error when DIR cannot be listed or none of them
 * reads. path: the file loaded (malloc'd), or NULL. */
ldmc_status ldmc_checkpoint_load_latest(const char *dir, ldmc_checkpoint **out, char **path,
                                        ldmc_checkpoint_warn_fn warn, void *warn_ctx);

#endif
