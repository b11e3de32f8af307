/* Data parallelism over MPI (Open MPI from Debian; docs/distributed.md).
 * Built with MPI when libopenmpi-dev is present (LDMC_HAVE_MPI); without
 * it, and in a process not started by mpirun/srun, everything here is one
 * rank of one and MPI is never initialized. Collectives are called by every
 * rank in the same order; each waits at most the timeout (default 600 s,
 * $LDMC_DIST_TIMEOUT, --dist-timeout) and then fails, so a rank that died or
 * hangs ends the job with a message instead of a hang. */
#ifndef LDMC_RUNTIME_DIST_H
#define LDMC_RUNTIME_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"

bool ldmc_dist_built(void);        /* MPI compiled in */
const char *ldmc_dist_library(void); /* "Open MPI v4.1.4, MPI 3.1" or "none" */

/* Initializes MPI when the process was started by a launcher ($OMPI_COMM_WORLD_SIZE,
 * $PMI_SIZE, $PMIX_RANK or $SLURM_NTASKS with a PMI); else does nothing. An MPI
 * launch of a build without MPI is an error (each copy would train alone). */
ldmc_status ldmc_dist_init(int *argc, char ***argv);
void ldmc_dist_finalize(void);
int ldmc_dist_rank(void);
int ldmc_dist_size(void);
static inline bool ldmc_dist_active(void) { return ldmc_dist_size() > 1; }

void ldmc_dist_set_timeout(double seconds);
double ldmc_dist_timeout(void);

/* Prints "ldmc: rank R of N: why" and ends every rank (MPI_Abort) with exit code 1. */
_Noreturn void ldmc_dist_abort(const char *why);

/* In-place sum over ranks of n floats. what names the collective in errors. */
ldmc_status ldmc_dist_allreduce_f32(float *buf, size_t n, const char *what);
ldmc_status ldmc_dist_allreduce_f64(double *buf, size_t n, const char *what);
/* Maximum over ranks of n int64 values, in place. */
ldmc_status ldmc_dist_allreduce_max_i64(int64_t *buf, size_t n, const char *what);
/* bytes from rank 0 to every rank. */
ldmc_status ldmc_dist_bcast(void *buf, size_t bytes, const char *what);
/* Each rank's `bytes` into rank 0's recv (size x bytes, rank order); recv ignored elsewhere. */
ldmc_status ldmc_dist_gather(const void *send, size_t bytes, void *recv, const char *what);
ldmc_status ldmc_dist_barrier(const char *what);

/* Every rank's status, combined: LDMC_OK on all when all are OK; else each
 * rank returns an error, the failing ranks their own, the others one naming
 * the lowest failing rank. A single-process run returns st. */
ldmc_status ldmc_dist_agree(ldmc_status st, const char *what);

#endif
