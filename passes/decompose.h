/* Lowering of composite ops (silu, gelu, softmax, group_norm, layer_norm,
 * attention, upsample_nearest, attention's backward ops) into primitives. */
#ifndef LDMC_PASSES_DECOMPOSE_H
#define LDMC_PASSES_DECOMPOSE_H

#include <stdint.h>

#include "ir/ir.h"

/* Writes a new graph to *out in which every composite op whose bit
 * (UINT64_C(1) << op) is clear in keep_ops_mask is replaced by primitives.
 * Other nodes are copied as they are; parameters keep their order and names,
 * outputs their names, and each replacement node the scope of the composite
 * it came from. bf16/f16 composites compute in f32 between converts, f64
 * ones in f64.
 * On failure *out is NULL and the message names the node. */
ldmc_status ldmc_decompose_composites(const ldmc_graph *in, uint64_t keep_ops_mask, ldmc_graph **out);

#endif
