/* Weights and modules on disk: the .ldmc container (graph + tensors, see
 * docs/formats.md) and safetensors files, the format diffusers and
 * Hugging Face publish weights in. Writes are atomic (temp file + fsync +
 * rename): the destination holds either the old file or the complete new one.
 * Every reader validates the whole file and fails with a message that names
 * the file, the tensor and the offending field. */
#ifndef LDMC_FRONTEND_WEIGHTS_IO_H
#define LDMC_FRONTEND_WEIGHTS_IO_H

#include "ir/ir.h"

/* ---- .ldmc ---- */
ldmc_status ldmc_module_save(const char *path, const ldmc_module *m);
/* Tensors are decompressed into owned, 64-byte aligned memory. */
ldmc_status ldmc_module_load(const char *path, ldmc_module *out);

/* ---- safetensors ----
 * Dtypes ldmc computes with map to ldmc_dtype (F32, BF16, F16, F64, I32, I64,
 * and BOOL -> pred); the spec's others (U8, I8, I16, U16, U32, U64, F8_E5M2,
 * F8_E4M3) are kept as raw bytes with ldmc_tensor.raw_dtype set. Tensors keep
 * the order of the file's JSON header. */
#define LDMC_SAFETENSORS_MAX_HEADER 100000000u /* bytes, as the reference reader */

/* Memory-maps path. Tensors point into the map (owns_data = false) unless the
 * file misaligns them for their element size, in which case they are copied;
 * ldmc_tensor_set_free unmaps (out->release). */
ldmc_status ldmc_safetensors_load(const char *path, ldmc_tensor_set *out);
/* Parses a whole file held in memory; tensors are copied (owns_data = true). */
ldmc_status ldmc_safetensors_parse(const uint8_t *buf, size_t len, ldmc_tensor_set *out);

/* Writes set as safetensors, atomically, laid out as the reference writer does
 * (tensors sorted by dtype, widest first, then name; header padded with
 * spaces to a multiple of 8 so data starts 8-aligned). meta_keys/meta_values:
 * n_meta strings for the "__metadata__" object, or NULL / 0. */
ldmc_status ldmc_safetensors_save(const char *path, const ldmc_tensor_set *set, int n_meta,
                                  const char *const *meta_keys, const char *const *meta_values);
/* The same bytes into a malloc'd buffer. */
ldmc_status ldmc_safetensors_encode(const ldmc_tensor_set *set, int n_meta, const char *const *meta_keys,
                                    const char *const *meta_values, uint8_t **out, size_t *out_len);

#endif
