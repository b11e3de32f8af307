/* The tpusim simulator: runs a verified program over off-chip buffers and
 * the on-chip memories. Timing is always modelled (docs/backends/tpusim.md,
 * "Timing model"); the functional mode also computes every result (bf16
 * matrix inputs rounded to nearest even, f32 accumulation, vector ops in
 * f32), the timing-only mode skips the arithmetic and needs no buffer data. */
#ifndef LDMC_TPUSIM_SIM_H
#define LDMC_TPUSIM_SIM_H

#include <stdint.h>
#include <stdio.h>

#include "backends/tpusim/isa.h"

typedef enum ldmc_tpu_sim_mode { LDMC_TPU_SIM_FUNCTIONAL, LDMC_TPU_SIM_TIMING_ONLY } ldmc_tpu_sim_mode;

/* Why an instruction started later than its queue could issue it. */
typedef enum ldmc_tpu_stall {
  LDMC_TPU_STALL_TOKEN_LOAD,    /* waiting for a token from the load queue */
  LDMC_TPU_STALL_TOKEN_COMPUTE, /* ... from the compute queue */
  LDMC_TPU_STALL_TOKEN_STORE,   /* ... from the store queue */
  LDMC_TPU_STALL_UNIT,          /* its unit is busy (matrix stream or weight path, vector unit, accumulator port) */
  LDMC_TPU_STALL_WEIGHTS,       /* matmul waits for its load_w; load_w for the shadow weight buffer */
  LDMC_TPU_STALL_HAZARD,        /* reads or writes what an in-flight compute instruction writes or reads */
  LDMC_TPU_STALL_SCOREBOARD,    /* every scoreboard entry is in flight */
  LDMC_TPU_STALL_DMA,           /* no DMA engine free, or the off-chip link busy */
  LDMC_TPU_STALL_COUNT
} ldmc_tpu_stall;
const char *ldmc_tpu_stall_name(ldmc_tpu_stall s);

#define LDMC_TPU_SCOREBOARD 32 /* compute instructions tracked in flight */

typedef struct ldmc_tpu_stats {
  uint64_t cycles;                        /* last completion */
  uint64_t insns[LDMC_TPU_Q_COUNT];
  uint64_t mxu_busy[LDMC_TPU_MAX_MXU];    /* cycles streaming activation rows */
  uint64_t wload_busy[LDMC_TPU_MAX_MXU];  /* cycles shifting weights in */
  uint64_t vec_busy, acc_busy;            /* vector unit, accumulator read port */
  uint64_t dma_busy;                      /* cycles the off-chip link transfers */
  uint64_t bytes_loaded, bytes_stored;    /* off-chip bytes */
  uint64_t macs;                          /* matmul multiply-accumulates */
  uint64_t vec_elems;                     /* elements the vector unit produced */
  uint64_t stall[LDMC_TPU_Q_COUNT][LDMC_TPU_STALL_COUNT];
} ldmc_tpu_stats;

/* Issue and completion cycle of one instruction (ldmc_tpu_sim_trace). */
typedef struct ldmc_tpu_event {
  uint64_t start, end;
} ldmc_tpu_event;

/* Verifies (ldmc_tpu_verify) and runs. FUNCTIONAL needs data for every
 * buffer and writes the stores' results into them. */
ldmc_status ldmc_tpu_sim_run(const ldmc_tpu_target *t, const ldmc_tpu_program *p, ldmc_tpu_mem *mem, ldmc_tpu_sim_mode mode,
                             ldmc_tpu_stats *stats);
/* As ldmc_tpu_sim_run, also filling events[i] for every instruction i. */
ldmc_status ldmc_tpu_sim_trace(const ldmc_tpu_target *t, const ldmc_tpu_program *p, ldmc_tpu_mem *mem, ldmc_tpu_sim_mode mode,
                               ldmc_tpu_stats *stats, ldmc_tpu_event *events);

/* busy / cycles of every unit, MAC and bandwidth utilization, stalls. */
void ldmc_tpu_stats_print(FILE *f, const ldmc_tpu_target *t, const ldmc_tpu_stats *s);

#endif
