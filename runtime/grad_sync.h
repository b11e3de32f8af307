/* Gradient all-reduce for data-parallel training (docs/distributed.md): the
 * outputs of a gradients graph (loss, grad.P ...) packed into buckets of
 * about bucket_bytes, each all-reduced on a communication thread as soon as
 * its last output is written (the executable's output hook, backend.h), so
 * communication overlaps the rest of the backward; then averaged over the
 * ranks. The bucket layout follows the order outputs became ready in the
 * first step on rank 0, so every rank packs the same buckets. */
#ifndef LDMC_RUNTIME_GRAD_SYNC_H
#define LDMC_RUNTIME_GRAD_SYNC_H

#include "backends/backend.h"

typedef struct ldmc_grad_sync ldmc_grad_sync;

typedef struct ldmc_grad_sync_stats {
  int64_t steps;
  int32_t buckets;        /* in the current layout */
  int64_t bytes_per_step; /* all-reduced per rank per step */
  double allreduce_s;     /* communication thread inside MPI, all steps */
  double wait_s;          /* the step waiting for communication after its last kernel, all steps */
  bool overlapped;        /* the backend reports outputs as they are ready (else all at the end) */
} ldmc_grad_sync_stats;

/* g: the executable's graph, every output f32. */
ldmc_status ldmc_grad_sync_new(const ldmc_graph *g, size_t bucket_bytes, ldmc_grad_sync **out);
void ldmc_grad_sync_free(ldmc_grad_sync *s);

/* Runs e (compiled from g) on inputs, all-reduces and averages its outputs.
 * On one rank it only runs e. */
ldmc_status ldmc_grad_sync_run(ldmc_grad_sync *s, ldmc_executable *e, const ldmc_tensor *inputs, int n_inputs);
/* Output o of the last run, averaged over the ranks (g's dtype and shape). */
float *ldmc_grad_sync_output(ldmc_grad_sync *s, int32_t o);
void ldmc_grad_sync_get_stats(const ldmc_grad_sync *s, ldmc_grad_sync_stats *out);

#endif
