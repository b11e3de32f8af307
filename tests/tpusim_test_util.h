/* What the tpusim tests share: a target small enough that every test shape
 * spans many tiles (2 matrix units of 8 x 8, 32 accumulator rows, vmem bytes
 * of scratchpad). */
#ifndef LDMC_TESTS_TPUSIM_TEST_UTIL_H
#define LDMC_TESTS_TPUSIM_TEST_UTIL_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "backends/tpusim/tpusim.h"

static inline ldmc_tpu_target tpusim_tiny_target(uint64_t vmem) {
  ldmc_tpu_target t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "tiny%" PRIu64, vmem); /* tiny8192, tiny2048: told apart in messages */
  t.clock_hz = 1e9;
  t.cores_per_chip = 1;
  t.mxu_count = 2, t.mxu_rows = 8, t.mxu_cols = 8;
  t.vec_lanes = 8, t.vec_sublanes = 2, t.vec_ops_per_cycle = 1, t.vec_latency = 2;
  for (int i = 0; i < LDMC_TPU_T_COUNT; i++) t.vec_cycles[i] = 2;
  t.vmem_bytes = vmem;
  t.vmem_banks = 1;
  t.acc_bytes = 32 * 4 * 8;
  t.hbm_bytes_per_s = 16e9;
  t.hbm_latency_ns = 100;
  t.dma_engines = 2;
  return t;
}

#endif
