/* Size and cost of a model graph, computed from the IR alone: parameter
 * counts from the weight parameters, FLOPs through the op table's FLOP rules
 * (ldmc_node_flops), memory from node types. No model formulas. */
#ifndef LDMC_MODELS_STATS_H
#define LDMC_MODELS_STATS_H

#include "ir/ir.h"

typedef struct ldmc_model_stats {
  int64_t param_tensors, params; /* weights: parameters other than the inputs */
  int64_t mac_flops;             /* 2 x multiply-adds of convolutions, matrix products and attention */
  int64_t other_flops;           /* elementwise, normalization, softmax, reductions */
  /* Activation memory, bytes, of the graph as built (no passes). activation_bytes
   * ("activation sum"): every value the step computes (each node but parameters
   * and constants), with no fusion or reuse. peak_activation_bytes ("unfused
   * peak"; not the largest tensor, not the planned arena): the most bytes live
   * at once when the nodes run in graph order and each value is freed after its
   * last use (outputs kept); inputs and weights excluded. The planned peak after
   * fusion and buffer assignment is ldmc_plan_stats_compute's (passes/passes.h). */
  int64_t activation_bytes, peak_activation_bytes;
  int64_t nodes;
} ldmc_model_stats;

ldmc_status ldmc_stats_compute(const ldmc_graph *g, const char *const *inputs, int n_inputs, ldmc_model_stats *out);

/* FLOPs grouped by a key: op name or block. */
typedef struct ldmc_stats_bucket {
  char *name;
  int64_t mac_flops, other_flops, nodes;
} ldmc_stats_bucket;

typedef struct ldmc_stats_breakdown {
  ldmc_stats_bucket *items; /* in order of first appearance */
  int n, cap;
} ldmc_stats_breakdown;

/* By op kind (ldmc_op_name), and by top-level block of node->scope: the first
 * scope component, with its index when the second is a number
 * ("down_blocks.1.attentions.0.x" -> "down_blocks.1", "time_embedding.linear_1"
 * -> "time_embedding"); nodes without a scope go to "(top)". Source nodes are
 * skipped. */
ldmc_status ldmc_stats_by_op(const ldmc_graph *g, ldmc_stats_breakdown *out);
ldmc_status ldmc_stats_by_block(const ldmc_graph *g, ldmc_stats_breakdown *out);
void ldmc_stats_breakdown_free(ldmc_stats_breakdown *b);
/* The block of a scope into buf (see above). */
const char *ldmc_stats_block_of(const char *scope, char *buf, size_t len);

/* One U-Net pass for one image at cfg's latent and context: its GFLOPs
 * (mac_flops / 1e9, as `ldmc stats` reports per step) and the normalized
 * per-step cost, those FLOPs over the c=320 reference U-Net's at the same
 * latent and context (no image conditioning or guidance embedding). The
 * sampling cost of a run is norm x passes (2 with guidance) x steps. */
typedef struct ldmc_unet_pass_cost {
  double gflops, norm;
  int64_t params;
} ldmc_unet_pass_cost;
struct ldmc_unet_config;
ldmc_status ldmc_unet_pass_cost_compute(const struct ldmc_unet_config *cfg, ldmc_unet_pass_cost *out);

#endif
