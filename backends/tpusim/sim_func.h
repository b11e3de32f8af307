/* Private to backends/tpusim: the on-chip state of the functional
 * simulator and the effect of one instruction on it (sim_func.c). */
#ifndef LDMC_TPUSIM_SIM_FUNC_H
#define LDMC_TPUSIM_SIM_FUNC_H

#include "backends/tpusim/sim.h"

typedef struct ldmc_tpu_machine {
  const ldmc_tpu_target *t;
  ldmc_tpu_mem *mem;
  uint8_t *vmem;
  float *acc; /* acc_rows x mxu_cols */
  /* per matrix unit: two weight buffers (active, shadow) of R x C bf16 values held as f32 */
  float *w[LDMC_TPU_MAX_MXU][2];
  uint16_t wk[LDMC_TPU_MAX_MXU][2], wn[LDMC_TPU_MAX_MXU][2];
  uint8_t active[LDMC_TPU_MAX_MXU];
  bool pending[LDMC_TPU_MAX_MXU]; /* the shadow holds weights newer than the active ones */
} ldmc_tpu_machine;

ldmc_status ldmc_tpu_machine_init(ldmc_tpu_machine *m, const ldmc_tpu_target *t, ldmc_tpu_mem *mem);
void ldmc_tpu_machine_free(ldmc_tpu_machine *m);
/* Applies a verified instruction. */
void ldmc_tpu_machine_exec(ldmc_tpu_machine *m, const ldmc_tpu_insn *in);

#endif
