/* Checkpoints over the .ldmc container: the module codec (ir/) writes and
 * checks the tensors; this file adds the Checkpoint header message (config,
 * roles, step, RNG and data state), a CRC-32 of the header and of every
 * tensor, and the atomic file. Layout: docs/formats.md, "Checkpoints". */
#include "runtime/checkpoint.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ir/ldmc.pb-c.h"
#include "ir/module_format.h"
#include "support/fileio.h"

#define CKPT_VERSION 1u

/* The libFuzzer target (tests/fuzz/CMakeLists.txt) defines this so mutated
 * inputs get past the checksums to the checks behind them; never elsewhere. */
#ifdef LDMC_FUZZ_IGNORE_CHECKSUMS
#define CRC_DIFFERS(a, b) ((void)(a), (void)(b), false)
#else
#define CRC_DIFFERS(a, b) ((a) != (b))
#endif

struct ldmc_checkpoint {
  ldmc_module m;   /* no graph; tensors borrowed (built) or owned (read) */
  uint8_t *roles;  /* per tensor */
  uint32_t *crcs;  /* per tensor, as stored (read) */
  int32_t *sorted; /* tensor indices by name, for lookups and duplicates */
  int32_t cap_meta;
  char **keys, **values;
  int32_t n_config, cap_config;
  int64_t step, rng_seed, rng_counter;
  int64_t data_state[LDMC_CHECKPOINT_MAX_DATA_STATE];
  int n_data_state;
  char *path;
};

static const char *const k_roles[LDMC_CKPT_ROLE_COUNT] = {"param", "optimizer", "ema", "other"};

const char *ldmc_checkpoint_role_name(ldmc_checkpoint_role r) {
  if (r == LDMC_CKPT_ANY) return "any";
  return (unsigned)r < LDMC_CKPT_ROLE_COUNT ? k_roles[r] : "?";
}

bool ldmc_checkpoint_role_parse(const char *s, ldmc_checkpoint_role *out) {
  for (int r = 0; r < LDMC_CKPT_ROLE_COUNT; r++)
    if (strcmp(s, k_roles[r]) == 0) {
      *out = (ldmc_checkpoint_role)r;
      return true;
    }
  return false;
}

ldmc_checkpoint_role ldmc_checkpoint_role_of_name(const char *name) {
  if (strncmp(name, "adam_m.", 7) == 0 || strncmp(name, "adam_v.", 7) == 0) return LDMC_CKPT_OPTIMIZER;
  if (strncmp(name, "ema.", 4) == 0) return LDMC_CKPT_EMA;
  return LDMC_CKPT_PARAM;
}

/* ---- building ---- */
ldmc_checkpoint *ldmc_checkpoint_new(void) { return calloc(1, sizeof(ldmc_checkpoint)); }

void ldmc_checkpoint_free(ldmc_checkpoint *ck) {
  if (!ck) return;
  ldmc_module_free(&ck->m);
  for (int32_t i = 0; i < ck->n_config; i++) {
    free(ck->keys[i]);
    free(ck->values[i]);
  }
  free(ck->keys);
  free(ck->values);
  free(ck->roles);
  free(ck->crcs);
  free(ck->sorted);
  free(ck->path);
  free(ck);
}

static int32_t config_index(const ldmc_checkpoint *ck, const char *key) {
  for (int32_t i = 0; i < ck->n_config; i++)
    if (strcmp(ck->keys[i], key) == 0) return i;
  return -1;
}

ldmc_status ldmc_checkpoint_set_config(ldmc_checkpoint *ck, const char *key, const char *value) {
  if (!key || !key[0]) return ldmc_error(LDMC_ERR_INVALID, "checkpoint config: empty key");
  if (!value) return ldmc_error(LDMC_ERR_INVALID, "checkpoint config '%s': no value", key);
  char *v = strdup(value);
  if (!v) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  int32_t i = config_index(ck, key);
  if (i >= 0) {
    free(ck->values[i]);
    ck->values[i] = v;
    return LDMC_OK;
  }
  if (ck->n_config == ck->cap_config) {
    int32_t cap = ck->cap_config ? 2 * ck->cap_config : 16;
    char **k = realloc(ck->keys, (size_t)cap * sizeof *k);
    if (k) ck->keys = k;
    char **vs = k ? realloc(ck->values, (size_t)cap * sizeof *vs) : NULL;
    if (!vs) {
      free(v);
      return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    }
    ck->values = vs;
    ck->cap_config = cap;
  }
  char *k = strdup(key);
  if (!k) {
    free(v);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  }
  ck->keys[ck->n_config] = k;
  ck->values[ck->n_config++] = v;
  return LDMC_OK;
}

/* Position of name in the sorted index (found: *hit). */
static int32_t lower_bound(const ldmc_checkpoint *ck, const char *name, bool *hit) {
  int32_t lo = 0, hi = ck->m.tensors.n;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (strcmp(ck->m.tensors.items[ck->sorted[mid]].name, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  *hit = lo < ck->m.tensors.n && strcmp(ck->m.tensors.items[ck->sorted[lo]].name, name) == 0;
  return lo;
}

static ldmc_status reserve_tensors(ldmc_checkpoint *ck, int32_t n) {
  ldmc_tensor_set *s = &ck->m.tensors;
  if (n <= s->cap && n <= ck->cap_meta) return LDMC_OK;
  int32_t cap = s->cap > 16 ? s->cap : 16;
  while (cap < n) cap *= 2;
  ldmc_tensor *items = realloc(s->items, (size_t)cap * sizeof *items);
  if (items) s->items = items, s->cap = cap;
  uint8_t *roles = items ? realloc(ck->roles, (size_t)cap) : NULL;
  if (roles) ck->roles = roles;
  uint32_t *crcs = roles ? realloc(ck->crcs, (size_t)cap * sizeof *crcs) : NULL;
  if (crcs) ck->crcs = crcs;
  int32_t *sorted = crcs ? realloc(ck->sorted, (size_t)cap * sizeof *sorted) : NULL;
  if (!sorted) return ldmc_error(LDMC_ERR_NOMEM, "out of memory for %d checkpoint tensors", (int)n);
  ck->sorted = sorted;
  ck->cap_meta = cap;
  return LDMC_OK;
}

ldmc_status ldmc_checkpoint_add_tensor(ldmc_checkpoint *ck, const char *name, ldmc_checkpoint_role role,
                                       ldmc_dtype dtype, int rank, const int64_t *dims, const void *data) {
  if (!name || !name[0]) return ldmc_error(LDMC_ERR_INVALID, "checkpoint tensor with an empty name");
  if ((unsigned)role >= LDMC_CKPT_ROLE_COUNT)
    return ldmc_error(LDMC_ERR_INVALID, "checkpoint tensor '%s': bad role %d", name, (int)role);
  if ((unsigned)dtype >= LDMC_DTYPE_COUNT)
    return ldmc_error(LDMC_ERR_INVALID, "checkpoint tensor '%s': bad dtype %d", name, (int)dtype);
  if (rank < 0 || rank > LDMC_MAX_RANK || (rank && !dims))
    return ldmc_error(LDMC_ERR_INVALID, "checkpoint tensor '%s': rank %d is not in [0, %d]", name, rank, LDMC_MAX_RANK);
  ldmc_shape shape = ldmc_shape_make(rank, dims);
  int64_t numel;
  size_t esize = ldmc_dtype_size(dtype);
  if (ldmc_shape_numel(&shape, esize, &numel) != LDMC_OK) {
    ldmc_error_prefix("checkpoint tensor '%s': ", name);
    return LDMC_ERR_INVALID;
  }
  size_t nbytes = (size_t)numel * esize;
  if (nbytes && !data) return ldmc_error(LDMC_ERR_INVALID, "checkpoint tensor '%s' has no data", name);
  bool hit;
  int32_t at = lower_bound(ck, name, &hit);
  if (hit)
    return ldmc_error(LDMC_ERR_INVALID, "checkpoint tensor '%s' added twice (names are unique over all roles)", name);
  int32_t n = ck->m.tensors.n;
  LDMC_TRY(reserve_tensors(ck, n + 1));
  char *nm = strdup(name);
  if (!nm) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  ck->m.tensors.items[n] = (ldmc_tensor){.name = nm, .dtype = dtype, .shape = shape, .data = (void *)data,
                                         .nbytes = nbytes, .owns_data = false};
  ck->roles[n] = (uint8_t)role;
  ck->crcs[n] = 0;
  memmove(ck->sorted + at + 1, ck->sorted + at, (size_t)(n - at) * sizeof *ck->sorted);
  ck->sorted[at] = n;
  ck->m.tensors.n = n + 1;
  return LDMC_OK;
}

ldmc_status ldmc_checkpoint_set_step(ldmc_checkpoint *ck, int64_t step) {
  if (step < 0) return ldmc_error(LDMC_ERR_INVALID, "checkpoint step %" PRId64 " is negative", step);
  ck->step = step;
  return LDMC_OK;
}

void ldmc_checkpoint_set_rng(ldmc_checkpoint *ck, int64_t seed, int64_t counter) {
  ck->rng_seed = seed;
  ck->rng_counter = counter;
}

ldmc_status ldmc_checkpoint_set_data_state(ldmc_checkpoint *ck, const int64_t *v, int n) {
  if (n < 0 || n > LDMC_CHECKPOINT_MAX_DATA_STATE || (n && !v))
    return ldmc_error(LDMC_ERR_INVALID, "checkpoint data state: %d values, at most %d", n, LDMC_CHECKPOINT_MAX_DATA_STATE);
  if (n) memcpy(ck->data_state, v, (size_t)n * sizeof *v);
  ck->n_data_state = n;
  return LDMC_OK;
}

/* ---- reading what it holds ---- */
int64_t ldmc_checkpoint_step(const ldmc_checkpoint *ck) { return ck->step; }

void ldmc_checkpoint_rng(const ldmc_checkpoint *ck, int64_t *seed, int64_t *counter) {
  if (seed) *seed = ck->rng_seed;
  if (counter) *counter = ck->rng_counter;
}

int ldmc_checkpoint_data_state(const ldmc_checkpoint *ck, const int64_t **v) {
  if (v) *v = ck->data_state;
  return ck->n_data_state;
}

int32_t ldmc_checkpoint_num_config(const ldmc_checkpoint *ck) { return ck->n_config; }

void ldmc_checkpoint_config_at(const ldmc_checkpoint *ck, int32_t i, const char **key, const char **value) {
  bool ok = i >= 0 && i < ck->n_config;
  if (key) *key = ok ? ck->keys[i] : NULL;
  if (value) *value = ok ? ck->values[i] : NULL;
}

const char *ldmc_checkpoint_config(const ldmc_checkpoint *ck, const char *key) {
  int32_t i = config_index(ck, key);
  return i >= 0 ? ck->values[i] : NULL;
}

int32_t ldmc_checkpoint_num_tensors(const ldmc_checkpoint *ck) { return ck->m.tensors.n; }

const ldmc_tensor *ldmc_checkpoint_tensor_at(const ldmc_checkpoint *ck, int32_t i, ldmc_checkpoint_role *role,
                                             uint32_t *crc32) {
  if (i < 0 || i >= ck->m.tensors.n) return NULL;
  if (role) *role = (ldmc_checkpoint_role)ck->roles[i];
  if (crc32) *crc32 = ck->crcs[i];
  return &ck->m.tensors.items[i];
}

int32_t ldmc_checkpoint_count(const ldmc_checkpoint *ck, ldmc_checkpoint_role role) {
  if (role == LDMC_CKPT_ANY) return ck->m.tensors.n;
  int32_t n = 0;
  for (int32_t i = 0; i < ck->m.tensors.n; i++) n += ck->roles[i] == (uint8_t)role;
  return n;
}

static int32_t find_index(const ldmc_checkpoint *ck, const char *name) {
  bool hit;
  int32_t at = lower_bound(ck, name, &hit);
  return hit ? ck->sorted[at] : -1;
}

const ldmc_tensor *ldmc_checkpoint_find(const ldmc_checkpoint *ck, const char *name, ldmc_checkpoint_role role) {
  int32_t i = name ? find_index(ck, name) : -1;
  if (i < 0 || (role != LDMC_CKPT_ANY && ck->roles[i] != (uint8_t)role)) return NULL;
  return &ck->m.tensors.items[i];
}

ldmc_status ldmc_checkpoint_get(const ldmc_checkpoint *ck, const char *name, ldmc_checkpoint_role role,
                                ldmc_dtype dtype, const ldmc_shape *shape, const ldmc_tensor **out) {
  *out = NULL;
  const char *file = ck->path ? ck->path : "checkpoint";
  int32_t i = find_index(ck, name);
  if (i < 0) return ldmc_error(LDMC_ERR_INVALID, "%s: no tensor '%s' (%s)", file, name, ldmc_checkpoint_role_name(role));
  const ldmc_tensor *t = &ck->m.tensors.items[i];
  char want[160], have[160];
  ldmc_shape_str(shape, want, sizeof want);
  ldmc_shape_str(&t->shape, have, sizeof have);
  if ((role != LDMC_CKPT_ANY && ck->roles[i] != (uint8_t)role) || t->dtype != dtype || !ldmc_shape_equal(&t->shape, shape))
    return ldmc_error(LDMC_ERR_INVALID, "%s: tensor '%s' is %s %s%s, expected %s %s%s", file, name,
                      ldmc_checkpoint_role_name((ldmc_checkpoint_role)ck->roles[i]), ldmc_dtype_name(t->dtype), have,
                      ldmc_checkpoint_role_name(role), ldmc_dtype_name(dtype), want);
  *out = t;
  return LDMC_OK;
}

const char *ldmc_checkpoint_path(const ldmc_checkpoint *ck) { return ck->path ? ck->path : ""; }

/* ---- encoding ---- */
static uint32_t crc_bytes(uint32_t crc, const void *p, size_t n) {
  return (uint32_t)crc32_z(crc, p, n);
}

static ProtobufCBinaryData bin(const char *s) {
  ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
  return b;
}

/* Passes the encoder's bytes on, with a CRC-32 of the data region: what it
 * writes after the prelude and before the header (extra() comes between). */
typedef struct crc_sink {
  const ldmc_byte_sink *to;
  uint64_t pos;
  uint32_t crc;
} crc_sink;

static ldmc_status crc_write(void *ctx, const void *data, size_t len) {
  crc_sink *c = ctx;
  const uint8_t *p = data;
  size_t skip = c->pos < LDMC_PRELUDE_SIZE ? LDMC_PRELUDE_SIZE - (size_t)c->pos : 0;
  if (skip > len) skip = len;
  c->crc = crc_bytes(c->crc, p + skip, len - skip);
  c->pos += len;
  return c->to->write(c->to->ctx, data, len);
}

static ldmc_status crc_patch(void *ctx, uint64_t offset, const void *data, size_t len) {
  crc_sink *c = ctx;
  return c->to->patch(c->to->ctx, offset, data, len);
}

typedef struct extra_ctx {
  const ldmc_checkpoint *ck;
  const uint32_t *crcs; /* of the tensors, computed before encoding */
  const crc_sink *data; /* holds the data region's CRC when extra() runs */
} extra_ctx;

/* Packs Header{checkpoint} after the module's header: the CRC covers both,
 * with header_crc32 0 (absent), which is what the reader repacks. */
static ldmc_status pack_checkpoint(void *vctx, const uint8_t *header, size_t len, uint8_t **out, size_t *out_len) {
  const extra_ctx *x = vctx;
  const ldmc_checkpoint *ck = x->ck;
  int32_t nt = ck->m.tensors.n, nc = ck->n_config;
  Ldmc__ConfigEntry *ce = calloc((size_t)nc + 1, sizeof *ce);
  Ldmc__ConfigEntry **cp = calloc((size_t)nc + 1, sizeof *cp);
  Ldmc__CheckpointTensor *te = calloc((size_t)nt + 1, sizeof *te);
  Ldmc__CheckpointTensor **tp = calloc((size_t)nt + 1, sizeof *tp);
  ldmc_status s = LDMC_OK;
  if (!ce || !cp || !te || !tp) s = ldmc_error(LDMC_ERR_NOMEM, "out of memory encoding a checkpoint");
  Ldmc__Checkpoint c;
  ldmc__checkpoint__init(&c);
  Ldmc__Header h;
  ldmc__header__init(&h);
  if (s == LDMC_OK) {
    c.version = CKPT_VERSION;
    for (int32_t i = 0; i < nc; i++) {
      ldmc__config_entry__init(&ce[i]);
      ce[i].key = bin(ck->keys[i]);
      ce[i].value = bin(ck->values[i]);
      cp[i] = &ce[i];
    }
    c.n_config = (size_t)nc;
    c.config = cp;
    c.step = ck->step;
    c.rng_seed = ck->rng_seed;
    c.rng_counter = ck->rng_counter;
    c.n_data_state = (size_t)ck->n_data_state;
    c.data_state = (int64_t *)ck->data_state;
    for (int32_t i = 0; i < nt; i++) {
      ldmc__checkpoint_tensor__init(&te[i]);
      te[i].role = (char *)k_roles[ck->roles[i]];
      te[i].crc32 = x->crcs[i];
      tp[i] = &te[i];
    }
    c.n_tensors = (size_t)nt;
    c.tensors = tp;
    c.data_crc32 = x->data->crc;
    h.checkpoint = &c;
    size_t n0 = ldmc__header__get_packed_size(&h);
    uint8_t *buf = malloc(n0 + 16);
    if (!buf) {
      s = ldmc_error(LDMC_ERR_NOMEM, "out of memory encoding a checkpoint");
    } else {
      ldmc__header__pack(&h, buf);
      c.header_crc32 = crc_bytes(crc_bytes(0, header, len), buf, n0);
      size_t n1 = ldmc__header__get_packed_size(&h);
      if (n1 > n0 + 16) { /* a fixed32 field and the longer length prefix: never */
        s = ldmc_error(LDMC_ERR_INTERNAL, "checkpoint header grew by %zu bytes", n1 - n0);
        free(buf);
      } else {
        ldmc__header__pack(&h, buf);
        *out = buf;
        *out_len = n1;
      }
    }
  }
  free(ce);
  free(cp);
  free(te);
  free(tp);
  return s;
}

static ldmc_status encode_to(const ldmc_checkpoint *ck, const ldmc_byte_sink *sink) {
  int32_t n = ck->m.tensors.n;
  uint32_t *crcs = malloc(((size_t)n + 1) * sizeof *crcs);
  if (!crcs) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++)
    crcs[i] = crc_bytes(0, ck->m.tensors.items[i].data, ck->m.tensors.items[i].nbytes);
  crc_sink cs = {sink, 0, 0};
  ldmc_byte_sink through = {crc_write, crc_patch, &cs};
  extra_ctx x = {ck, crcs, &cs};
  ldmc_header_extra ext = {pack_checkpoint, &x};
  ldmc_status s = ldmc_module_encode_ext(&ck->m, &ext, &through);
  free(crcs);
  return s;
}

ldmc_status ldmc_checkpoint_encode(const ldmc_checkpoint *ck, uint8_t **out, size_t *out_len) {
  ldmc_membuf b = {0};
  ldmc_byte_sink sink = ldmc_membuf_sink(&b);
  *out = NULL;
  *out_len = 0;
  ldmc_status s = encode_to(ck, &sink);
  if (s != LDMC_OK) {
    free(b.p);
    return s;
  }
  *out = b.p;
  *out_len = b.len;
  return LDMC_OK;
}

static ldmc_status file_write(void *ctx, const void *data, size_t len) { return ldmc_atomic_write(ctx, data, len); }

static ldmc_status file_patch(void *ctx, uint64_t offset, const void *data, size_t len) {
  return ldmc_atomic_pwrite(ctx, offset, data, len);
}

ldmc_status ldmc_checkpoint_write(const ldmc_checkpoint *ck, const char *path) {
  ldmc_atomic_file *f;
  if (ldmc_atomic_open(path, &f) != LDMC_OK) {
    ldmc_error_prefix("checkpoint not written: ");
    return LDMC_ERR_IO;
  }
  ldmc_byte_sink sink = {file_write, file_patch, f};
  ldmc_status s = encode_to(ck, &sink);
  if (s != LDMC_OK) {
    ldmc_atomic_abort(f);
    ldmc_error_prefix("%s: checkpoint not written: ", path);
    return s;
  }
  return ldmc_atomic_commit(f);
}

/* ---- decoding ---- */
static ldmc_status bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static ldmc_status bad(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ldmc_error(LDMC_ERR_FORMAT, "%s", msg);
}

/* The header of a file the module decoder accepted (or any bytes, for sniffing). */
static Ldmc__Header *unpack_header(const uint8_t *data, size_t len) {
  if (len < LDMC_PRELUDE_SIZE || memcmp(data, LDMC_FILE_MAGIC, 4) != 0) return NULL;
  uint64_t hoff = ldmc_get_u64le(data + 8), hlen = ldmc_get_u64le(data + 16);
  if (hoff < LDMC_PRELUDE_SIZE || hoff > len || hlen != len - hoff) return NULL;
  return ldmc__header__unpack(NULL, (size_t)hlen, data + hoff);
}

/* Repacks the header with header_crc32 cleared and compares CRCs. */
static ldmc_status check_header_crc(Ldmc__Header *h) {
  uint32_t stored = h->checkpoint->header_crc32;
  h->checkpoint->header_crc32 = 0;
  size_t n = ldmc__header__get_packed_size(h);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return ldmc_error(LDMC_ERR_NOMEM, "out of memory checking a %zu-byte header", n);
  ldmc__header__pack(h, buf);
  uint32_t crc = crc_bytes(0, buf, n);
  free(buf);
  h->checkpoint->header_crc32 = stored;
  if (CRC_DIFFERS(crc, stored))
    return bad("header checksum mismatch (CRC-32 0x%08x, stored 0x%08x): the file is corrupt", crc, stored);
  return LDMC_OK;
}

static ldmc_status copy_bytes(ProtobufCBinaryData b, const char *what, int32_t i, char **out) {
  if (b.len && memchr(b.data, 0, b.len)) return bad("config entry %d: %s contains a NUL byte", (int)i, what);
  char *s = malloc(b.len + 1);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  if (b.len) memcpy(s, b.data, b.len);
  s[b.len] = 0;
  *out = s;
  return LDMC_OK;
}

static ldmc_status read_config(ldmc_checkpoint *ck, const Ldmc__Checkpoint *c) {
  if (c->n_config > INT32_MAX / 2) return bad("%zu config entries is too many", c->n_config);
  ck->keys = calloc(c->n_config + 1, sizeof *ck->keys);
  ck->values = calloc(c->n_config + 1, sizeof *ck->values);
  if (!ck->keys || !ck->values) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  ck->cap_config = (int32_t)c->n_config + 1;
  for (size_t i = 0; i < c->n_config; i++) {
    char *k = NULL, *v = NULL;
    LDMC_TRY(copy_bytes(c->config[i]->key, "key", (int32_t)i, &k));
    ck->keys[i] = k;
    ck->n_config = (int32_t)i + 1;
    LDMC_TRY(copy_bytes(c->config[i]->value, "value", (int32_t)i, &v));
    ck->values[i] = v;
    char q[100];
    if (!k[0]) return bad("config entry %zu has an empty key", i);
    if (config_index(ck, k) != (int32_t)i) return bad("config key '%s' appears twice", ldmc_quote(k, q, sizeof q));
  }
  return LDMC_OK;
}

typedef struct name_ix {
  const char *name;
  int32_t i;
} name_ix;

static int cmp_name_ix(const void *a, const void *b) {
  return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

/* The lookup index of tensors the container decoder read (names unique). */
static ldmc_status index_tensors(ldmc_checkpoint *ck) {
  int32_t n = ck->m.tensors.n;
  name_ix *v = malloc(((size_t)n + 1) * sizeof *v);
  if (!v) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++) v[i] = (name_ix){ck->m.tensors.items[i].name, i};
  qsort(v, (size_t)n, sizeof *v, cmp_name_ix);
  for (int32_t i = 0; i < n; i++) ck->sorted[i] = v[i].i;
  free(v);
  return LDMC_OK;
}

static ldmc_status read_tensors(ldmc_checkpoint *ck, const Ldmc__Checkpoint *c) {
  int32_t n = ck->m.tensors.n;
  if (c->n_tensors != (size_t)n)
    return bad("checkpoint describes %zu tensors, but the file holds %d", c->n_tensors, (int)n);
  if (n > ck->cap_meta) {
    ck->roles = malloc((size_t)n);
    ck->crcs = malloc((size_t)n * sizeof *ck->crcs);
    ck->sorted = malloc((size_t)n * sizeof *ck->sorted);
    if (!ck->roles || !ck->crcs || !ck->sorted) return ldmc_error(LDMC_ERR_NOMEM, "out of memory for %d tensors", (int)n);
    ck->cap_meta = n;
  }
  for (int32_t i = 0; i < n; i++) {
    const ldmc_tensor *t = &ck->m.tensors.items[i];
    const Ldmc__CheckpointTensor *pt = c->tensors[i];
    char q[100], q2[100];
    ldmc_checkpoint_role role;
    if (!ldmc_checkpoint_role_parse(pt->role ? pt->role : "", &role))
      return bad("tensor '%s': unknown role '%s'", ldmc_quote(t->name, q, sizeof q), ldmc_quote(pt->role, q2, sizeof q2));
    if (t->raw_dtype[0]) /* the container allows them; checkpoints hold what ldmc computes with */
      return bad("tensor '%s': raw dtype '%s' in a checkpoint", ldmc_quote(t->name, q, sizeof q), t->raw_dtype);
    uint32_t crc = crc_bytes(0, t->data, t->nbytes);
    if (CRC_DIFFERS(crc, pt->crc32))
      return bad("tensor '%s' (%s): data checksum mismatch (CRC-32 0x%08x, stored 0x%08x): the file is corrupt",
                 ldmc_quote(t->name, q, sizeof q), k_roles[role], crc, pt->crc32);
    ck->roles[i] = (uint8_t)role;
    ck->crcs[i] = crc;
  }
  return index_tensors(ck);
}

static ldmc_status decode_checkpoint(ldmc_checkpoint *ck, Ldmc__Header *h, const uint8_t *data) {
  const Ldmc__Checkpoint *c = h->checkpoint;
  if (!c) return bad("not a checkpoint: an .ldmc module without checkpoint fields");
  LDMC_TRY(check_header_crc(h));
  uint64_t hoff = ldmc_get_u64le(data + 8); /* checked by the container decoder */
  uint32_t dcrc = crc_bytes(0, data + LDMC_PRELUDE_SIZE, (size_t)(hoff - LDMC_PRELUDE_SIZE));
  if (CRC_DIFFERS(dcrc, c->data_crc32))
    return bad("data region checksum mismatch (CRC-32 0x%08x of bytes [%u, %" PRIu64 "), stored 0x%08x): the file is corrupt",
               dcrc, LDMC_PRELUDE_SIZE, hoff, c->data_crc32);
  if (c->version != CKPT_VERSION)
    return bad("checkpoint layout version %u is not supported (this ldmc reads version %u)", c->version, CKPT_VERSION);
  if (ck->m.graph) return bad("a checkpoint holds no graph, this file has one");
  if (c->step < 0) return bad("step %" PRId64 " is negative", c->step);
  if (c->n_data_state > LDMC_CHECKPOINT_MAX_DATA_STATE)
    return bad("data state has %zu values, more than %d", c->n_data_state, LDMC_CHECKPOINT_MAX_DATA_STATE);
  ck->step = c->step;
  ck->rng_seed = c->rng_seed;
  ck->rng_counter = c->rng_counter;
  ck->n_data_state = (int)c->n_data_state;
  if (c->n_data_state) memcpy(ck->data_state, c->data_state, c->n_data_state * sizeof *c->data_state);
  LDMC_TRY(read_config(ck, c));
  return read_tensors(ck, c);
}

ldmc_status ldmc_checkpoint_decode(const uint8_t *data, size_t len, uint64_t max_bytes, ldmc_checkpoint **out) {
  *out = NULL;
  ldmc_checkpoint *ck = ldmc_checkpoint_new();
  if (!ck) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  /* the container first: sizes, offsets, dtypes, shapes, zstd frame checksums */
  ldmc_status s = ldmc_module_decode_limited(data, len, max_bytes, &ck->m);
  if (s == LDMC_OK) {
    Ldmc__Header *h = unpack_header(data, len);
    s = h ? decode_checkpoint(ck, h, data) : bad("header is not a valid protobuf message");
    if (h) ldmc__header__free_unpacked(h, NULL);
  }
  if (s != LDMC_OK) {
    ldmc_checkpoint_free(ck);
    return s;
  }
  *out = ck;
  return LDMC_OK;
}

ldmc_status ldmc_checkpoint_read(const char *path, ldmc_checkpoint **out) {
  *out = NULL;
  ldmc_file_map *map;
  LDMC_TRY(ldmc_file_map_open(path, &map));
  ldmc_status s = ldmc_checkpoint_decode(map->data, map->len, 0, out);
  ldmc_file_map_release(map);
  if (s == LDMC_OK && !((*out)->path = strdup(path))) {
    ldmc_checkpoint_free(*out);
    *out = NULL;
    s = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  }
  if (s != LDMC_OK) ldmc_error_prefix("%s: ", path);
  return s;
}

ldmc_status ldmc_checkpoint_sniff(const char *path, bool *is_checkpoint) {
  *is_checkpoint = false;
  ldmc_file_map *map;
  LDMC_TRY(ldmc_file_map_open(path, &map));
  Ldmc__Header *h = unpack_header(map->data, map->len);
  *is_checkpoint = h && h->checkpoint;
  if (h) ldmc__header__free_unpacked(h, NULL);
  ldmc_file_map_release(map);
  return LDMC_OK;
}
