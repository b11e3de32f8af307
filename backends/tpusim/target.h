/* The tpusim machine model: one TensorCore-like core with weight-stationary
 * systolic matrix units, a vector unit, a scratchpad (vector memory), an
 * accumulator memory and DMA engines to off-chip memory. Read from a JSON
 * file (docs/backends/tpusim.md, "Target file") or taken from a built-in
 * preset ("v1", "v4", "v5e"; also shipped as backends/tpusim/presets/). */
#ifndef LDMC_TPUSIM_TARGET_H
#define LDMC_TPUSIM_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/status.h"

#define LDMC_TPU_MAX_MXU 8 /* matrix units per core */

/* The vector unit's multi-cycle functions; each costs vec_cycles[f] cycles
 * per vreg (lanes x sublanes elements). Everything else costs one slot. */
typedef enum ldmc_tpu_trans {
  LDMC_TPU_T_EXP,
  LDMC_TPU_T_LOG,
  LDMC_TPU_T_SQRT,
  LDMC_TPU_T_RSQRT,
  LDMC_TPU_T_RECIP, /* also the cost of a division */
  LDMC_TPU_T_TANH,
  LDMC_TPU_T_ERF,
  LDMC_TPU_T_SIGMOID,
  LDMC_TPU_T_COUNT
} ldmc_tpu_trans;
const char *ldmc_tpu_trans_name(ldmc_tpu_trans t); /* "exp", ... (the JSON keys) */

typedef struct ldmc_tpu_target {
  char name[32];
  double clock_hz;
  int cores_per_chip; /* informational: the simulator models one core */
  /* matrix units: R x C, bf16 inputs, f32 accumulation */
  int mxu_count, mxu_rows, mxu_cols;
  /* vector unit: a vreg is sublanes x lanes f32 elements */
  int vec_lanes, vec_sublanes;
  int vec_ops_per_cycle;  /* vregs of simple ops (add, max, copy...) per cycle */
  int vec_latency;        /* pipeline cycles from issue of the last vreg to its result */
  int vec_cycles[LDMC_TPU_T_COUNT];
  uint64_t vmem_bytes;    /* scratchpad; byte addresses are 32-bit */
  int vmem_banks;         /* recorded; the timing model has no bank conflicts */
  uint64_t acc_bytes;     /* accumulator: rows of mxu_cols f32 */
  double hbm_bytes_per_s; /* off-chip bandwidth available to this core */
  double hbm_latency_ns;
  int dma_engines;        /* DMA transfers in flight at once */
} ldmc_tpu_target;

/* A built-in preset by name; fails naming the known presets. */
ldmc_status ldmc_tpu_target_preset(const char *name, ldmc_tpu_target *out);
/* The preset names, NULL-terminated. */
const char *const *ldmc_tpu_target_preset_names(void);
/* Parses a target from JSON text; `where` (a file name) starts every message. */
ldmc_status ldmc_tpu_target_parse(const char *text, size_t len, const char *where, ldmc_tpu_target *out);
ldmc_status ldmc_tpu_target_load(const char *path, ldmc_tpu_target *out);
/* The checks the parser applies, for a target built in code. */
ldmc_status ldmc_tpu_target_check(const ldmc_tpu_target *t, const char *where);

/* Derived figures. */
uint32_t ldmc_tpu_target_acc_rows(const ldmc_tpu_target *t);        /* acc_bytes / (4 * mxu_cols) */
double ldmc_tpu_target_bytes_per_cycle(const ldmc_tpu_target *t);    /* hbm_bytes_per_s / clock_hz */
uint64_t ldmc_tpu_target_latency_cycles(const ldmc_tpu_target *t);  /* ceil(latency_ns * clock_hz / 1e9) */
uint64_t ldmc_tpu_target_peak_macs_per_cycle(const ldmc_tpu_target *t); /* count * R * C */

#endif
