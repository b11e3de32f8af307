/* Private to backends/tpusim: the four token channels between neighbouring
 * queues, shared by the verifier and the simulator. */
#ifndef LDMC_TPUSIM_TOKENS_H
#define LDMC_TPUSIM_TOKENS_H

#include "backends/tpusim/isa.h"

enum { LDMC_TPU_CH_L2C, LDMC_TPU_CH_C2L, LDMC_TPU_CH_C2S, LDMC_TPU_CH_S2C, LDMC_TPU_CH_COUNT };

static const int ldmc_tpu_ch_from[LDMC_TPU_CH_COUNT] = {LDMC_TPU_Q_LOAD, LDMC_TPU_Q_COMPUTE, LDMC_TPU_Q_COMPUTE, LDMC_TPU_Q_STORE};

/* The channel queue q pops from (prev: from the queue before it); -1 if none. */
static inline int ldmc_tpu_ch_pop(int q, int prev) {
  if (prev) return q == LDMC_TPU_Q_COMPUTE ? LDMC_TPU_CH_L2C : q == LDMC_TPU_Q_STORE ? LDMC_TPU_CH_C2S : -1;
  return q == LDMC_TPU_Q_LOAD ? LDMC_TPU_CH_C2L : q == LDMC_TPU_Q_COMPUTE ? LDMC_TPU_CH_S2C : -1;
}
/* The channel queue q pushes to; -1 if none. */
static inline int ldmc_tpu_ch_push(int q, int prev) {
  if (prev) return q == LDMC_TPU_Q_COMPUTE ? LDMC_TPU_CH_C2L : q == LDMC_TPU_Q_STORE ? LDMC_TPU_CH_S2C : -1;
  return q == LDMC_TPU_Q_LOAD ? LDMC_TPU_CH_L2C : q == LDMC_TPU_Q_COMPUTE ? LDMC_TPU_CH_C2S : -1;
}

#endif
