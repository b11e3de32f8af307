/* Constants of the .ldmc container shared by its encoder and decoder
 * (ir-internal; the layout is described in docs/formats.md). */
#ifndef LDMC_IR_MODULE_FORMAT_H
#define LDMC_IR_MODULE_FORMAT_H

#include <stdint.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/ldmc.pb-c.h"

#define LDMC_FILE_MAGIC "LDMC"
#define LDMC_FILE_VERSION 1u
/* magic[4], u32 version, u64 header offset, u64 header length (little-endian) */
#define LDMC_PRELUDE_SIZE 24u
/* Raw bytes per zstd chunk the writer produces; the reader accepts chunks up
 * to LDMC_CHUNK_RAW_MAX so a future writer may choose larger ones. */
#define LDMC_CHUNK_RAW (4u << 20)
#define LDMC_CHUNK_RAW_MAX (256u << 20)
/* Constants at most this large are stored inside the header. */
#define LDMC_INLINE_LITERAL_MAX 4096u
#define LDMC_ZSTD_LEVEL 3

static inline void ldmc_put_u32le(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ldmc_put_u64le(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t ldmc_get_u32le(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static inline uint64_t ldmc_get_u64le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Element size of a tensor: its native dtype, or its raw dtype; 0 if neither
 * is valid. */
static inline size_t ldmc_tensor_elem_size(const ldmc_tensor *t) {
  if (t->raw_dtype[0]) return ldmc_raw_dtype_size(t->raw_dtype);
  return ldmc_dtype_size(t->dtype);
}

/* Copies a length-delimited protobuf string into a malloc'd C string,
 * refusing embedded NULs ("<what> contains a NUL byte"). */
ldmc_status ldmc_pb_strdup(ProtobufCBinaryData b, const char *what, char **out);

/* Rebuilds a graph from its protobuf form, checking every name, shape,
 * operand and attribute (module_graph_decode.c). Constants stored as chunked
 * blobs get nbytes set and data NULL; on_blob(ctx, node, blob, nbytes) is
 * called for each so the caller can check and later fill them. The graph is
 * not verified here. On failure *out is NULL. */
typedef ldmc_status (*ldmc_blob_cb)(void *ctx, int32_t node, const Ldmc__Blob *blob, uint64_t nbytes);
ldmc_status ldmc_graph_decode_pb(const Ldmc__Graph *pg, ldmc_blob_cb on_blob, void *ctx, ldmc_graph **out);

#endif
