/* MPI behind runtime/dist.h. Collectives are non-blocking calls completed
 * by a test loop with a deadline: MPI's blocking ones would wait forever
 * for a rank that hangs. */
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/dist.h"

#ifdef LDMC_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static bool g_init = false;
static double g_timeout = 600;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool launched_by_mpi(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return true;
  return false;
}

bool ldmc_dist_built(void) {
#ifdef LDMC_HAVE_MPI
  return true;
#else
  return false;
#endif
}

const char *ldmc_dist_library(void) {
#ifdef LDMC_HAVE_MPI
  static char buf[MPI_MAX_LIBRARY_VERSION_STRING + 32];
  if (!buf[0]) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    MPI_Get_library_version(v, &n);
    v[strcspn(v, ",\n")] = 0;
    snprintf(buf, sizeof buf, "%s, MPI %d.%d", v, MPI_VERSION, MPI_SUBVERSION);
  }
  return buf;
#else
  return "none";
#endif
}

int ldmc_dist_rank(void) { return g_rank; }
int ldmc_dist_size(void) { return g_size; }
void ldmc_dist_set_timeout(double s) {
  if (s > 0 && isfinite(s)) g_timeout = s;
}
double ldmc_dist_timeout(void) { return g_timeout; }

ldmc_status ldmc_dist_init(int *argc, char ***argv) {
  const char *t = getenv("LDMC_DIST_TIMEOUT");
  if (t && *t) {
    char *end;
    double v = strtod(t, &end);
    if (*end || !(v > 0)) return ldmc_error(LDMC_ERR_INVALID, "LDMC_DIST_TIMEOUT='%s' is not a positive number of seconds", t);
    g_timeout = v;
  }
  if (!launched_by_mpi() || g_init) return LDMC_OK;
#ifdef LDMC_HAVE_MPI
  int provided = 0;
  /* a communication thread all-reduces gradients while the step computes;
   * the main thread calls MPI only between steps */
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
    return ldmc_error(LDMC_ERR_IO, "MPI_Init_thread failed");
  g_init = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  if (provided < MPI_THREAD_SERIALIZED) {
    ldmc_status st = ldmc_error(LDMC_ERR_UNSUPPORTED, "MPI provides thread level %d, ldmc needs MPI_THREAD_SERIALIZED",
                                provided);
    return st;
  }
  return LDMC_OK;
#else
  (void)argc, (void)argv;
  const char *n = getenv("OMPI_COMM_WORLD_SIZE");
  if (n && atoi(n) > 1)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "started by mpirun with %s ranks, but this ldmc was built without MPI "
                      "(install libopenmpi-dev and rebuild; `ldmc version` says whether MPI is in)", n);
  return LDMC_OK;
#endif
}

void ldmc_dist_finalize(void) {
#ifdef LDMC_HAVE_MPI
  if (g_init) MPI_Finalize();
#endif
  g_init = false;
}

_Noreturn void ldmc_dist_abort(const char *why) {
  fprintf(stderr, "ldmc: rank %d of %d: %s\n", g_rank, g_size, why);
  fflush(stderr);
#ifdef LDMC_HAVE_MPI
  if (g_init) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  exit(1);
}

#ifdef LDMC_HAVE_MPI
/* Completes *req within the timeout. Open MPI moves a message only inside
 * MPI calls (fragment by fragment over shared memory), so tests come back
 * to back, yielding the CPU to the computing threads between them; after
 * 50 ms without completion (a rank computing or stuck) they sleep 1 ms. */
static ldmc_status wait_req(MPI_Request *req, const char *what, double t0) {
  double t_req = now_s();
  for (unsigned spins = 0;; spins++) {
    int done = 0;
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      char msg[MPI_MAX_ERROR_STRING];
      int n = 0;
      MPI_Error_string(rc, msg, &n);
      return ldmc_error(LDMC_ERR_IO, "rank %d: %s failed: %s", g_rank, what, msg);
    }
    if (done) return LDMC_OK;
    if ((spins & 63) != 63) {
      sched_yield();
      continue;
    }
    double t = now_s();
    if (t - t0 > g_timeout)
      return ldmc_error(LDMC_ERR_IO, "rank %d of %d: %s did not complete within %g s: another rank has died or "
                        "hangs ($LDMC_DIST_TIMEOUT)", g_rank, g_size, what, g_timeout);
    if (t - t_req > 0.05) {
      struct timespec nap = {0, 1000000};
      nanosleep(&nap, NULL);
    }
  }
}

static ldmc_status allreduce(void *buf, size_t n, MPI_Datatype dt, size_t esize, MPI_Op op, const char *what) {
  if (!g_init || g_size == 1) return LDMC_OK;
  double t0 = now_s();
  for (size_t at = 0; at < n;) { /* MPI counts are int */
    int cnt = n - at > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)(n - at);
    MPI_Request req;
    if (MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + at * esize, cnt, dt, op, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
      return ldmc_error(LDMC_ERR_IO, "rank %d: %s: MPI_Iallreduce failed", g_rank, what);
    LDMC_TRY(wait_req(&req, what, t0));
    at += (size_t)cnt;
  }
  return LDMC_OK;
}
#endif

ldmc_status ldmc_dist_allreduce_f32(float *buf, size_t n, const char *what) {
#ifdef LDMC_HAVE_MPI
  return allreduce(buf, n, MPI_FLOAT, 4, MPI_SUM, what);
#else
  (void)buf, (void)n, (void)what;
  return LDMC_OK;
#endif
}

ldmc_status ldmc_dist_allreduce_f64(double *buf, size_t n, const char *what) {
#ifdef LDMC_HAVE_MPI
  return allreduce(buf, n, MPI_DOUBLE, 8, MPI_SUM, what);
#else
  (void)buf, (void)n, (void)what;
  return LDMC_OK;
#endif
}

ldmc_status ldmc_dist_allreduce_max_i64(int64_t *buf, size_t n, const char *what) {
#ifdef LDMC_HAVE_MPI
  return allreduce(buf, n, MPI_INT64_T, 8, MPI_MAX, what);
#else
  (void)buf, (void)n, (void)what;
  return LDMC_OK;
#endif
}

ldmc_status ldmc_dist_bcast(void *buf, size_t bytes, const char *what) {
#ifdef LDMC_HAVE_MPI
  if (!g_init || g_size == 1) return LDMC_OK;
  double t0 = now_s();
  for (size_t at = 0; at < bytes;) {
    int cnt = bytes - at > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)(bytes - at);
    MPI_Request req;
    if (MPI_Ibcast((char *)buf + at, cnt, MPI_BYTE, 0, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
      return ldmc_error(LDMC_ERR_IO, "rank %d: %s: MPI_Ibcast failed", g_rank, what);
    LDMC_TRY(wait_req(&req, what, t0));
    at += (size_t)cnt;
  }
  return LDMC_OK;
#else
  (void)buf, (void)bytes, (void)what;
  return LDMC_OK;
#endif
}

ldmc_status ldmc_dist_gather(const void *send, size_t bytes, void *recv, const char *what) {
#ifdef LDMC_HAVE_MPI
  if (g_init && g_size > 1) {
    if (bytes > (size_t)INT_MAX) return ldmc_error(LDMC_ERR_INVALID, "%s: %zu bytes per rank is too many to gather", what, bytes);
    MPI_Request req;
    if (MPI_Igather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
      return ldmc_error(LDMC_ERR_IO, "rank %d: %s: MPI_Igather failed", g_rank, what);
    return wait_req(&req, what, now_s());
  }
#else
  (void)what;
#endif
  if (recv != send) memcpy(recv, send, bytes);
  return LDMC_OK;
}

ldmc_status ldmc_dist_barrier(const char *what) {
#ifdef LDMC_HAVE_MPI
  if (!g_init || g_size == 1) return LDMC_OK;
  MPI_Request req;
  if (MPI_Ibarrier(MPI_COMM_WORLD, &req) != MPI_SUCCESS)
    return ldmc_error(LDMC_ERR_IO, "rank %d: %s: MPI_Ibarrier failed", g_rank, what);
  return wait_req(&req, what, now_s());
#else
  (void)what;
  return LDMC_OK;
#endif
}

ldmc_status ldmc_dist_agree(ldmc_status st, const char *what) {
  if (g_size == 1) return st;
  /* the lowest failing rank: max over ranks of (size - rank) where failed */
  int64_t v = st == LDMC_OK ? 0 : (int64_t)(g_size - g_rank);
  ldmc_status cst = ldmc_dist_allreduce_max_i64(&v, 1, what);
  if (cst != LDMC_OK) return cst;
  if (st != LDMC_OK) return st;
  if (v == 0) return LDMC_OK;
  return ldmc_error(LDMC_ERR_INVALID, "%s: rank %d failed (its message above)", what, (int)(g_size - v));
}
