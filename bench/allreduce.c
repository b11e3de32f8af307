/* The all-reduce data-parallel training uses (runtime/dist.h), timed for
 * message sizes 4 B .. 64 MiB; prints each size's time and bandwidth and the
 * latency-bandwidth model t = a + bytes / b (a: the smallest time of the
 * messages up to 1 KiB, b: the best bandwidth of those from 1 MiB on),
 * which docs/distributed.md's scaling model takes. Run under mpirun:
 *   mpirun -np 2 build/bin/bench_allreduce [--max-mib M] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/dist.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (ldmc_dist_init(&argc, &argv) != LDMC_OK) {
    fprintf(stderr, "bench_allreduce: %s\n", ldmc_last_error());
    return 1;
  }
  size_t max_mib = 64;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--max-mib") && i + 1 < argc) max_mib = (size_t)atol(argv[++i]);
  int rank = ldmc_dist_rank(), n = ldmc_dist_size();
  if (n < 2) {
    fprintf(stderr, "bench_allreduce: run it under mpirun with 2 or more ranks\n");
    return 1;
  }
  size_t max_floats = max_mib << 18;
  float *buf = malloc(max_floats * sizeof *buf);
  if (!buf) return 1;
  for (size_t i = 0; i < max_floats; i++) buf[i] = 1.0f;
  double lat = 1e9, bw = 0;
  if (rank == 0) printf("%d ranks, %s\n%12s %12s %12s %14s\n", n, ldmc_dist_library(), "bytes", "reps", "us", "GB/s (algbw)");
  for (size_t floats = 1; floats <= max_floats; floats *= 4) {
    int reps = floats < (1 << 14) ? 200 : floats < (1 << 20) ? 30 : 5;
    ldmc_dist_allreduce_f32(buf, floats, "warm-up");
    ldmc_dist_barrier("start");
    double t0 = now_s();
    for (int r = 0; r < reps; r++)
      if (ldmc_dist_allreduce_f32(buf, floats, "bench") != LDMC_OK) return 1;
    double dt = (now_s() - t0) / reps, bytes = (double)floats * 4;
    ldmc_dist_allreduce_f64(&dt, 1, "time"); /* the ranks' mean */
    dt /= n;
    if (rank == 0) printf("%12.0f %12d %12.2f %14.3f\n", bytes, reps, dt * 1e6, bytes / dt / 1e9);
    if (bytes <= 1024 && dt < lat) lat = dt;
    if (bytes >= (1 << 20) && bytes / dt > bw) bw = bytes / dt;
  }
  if (rank == 0) printf("model: t = %.2f us + bytes / (%.3f GB/s)\n", lat * 1e6, bw / 1e9);
  free(buf);
  ldmc_dist_finalize();
  return 0;
}
