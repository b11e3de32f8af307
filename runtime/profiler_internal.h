/* The collector's storage, shared by profiler.c (recording, aggregation) and
 * trace_json.c (the Chrome trace). Not a public header. */
#ifndef LDMC_RUNTIME_PROFILER_INTERNAL_H
#define LDMC_RUNTIME_PROFILER_INTERNAL_H

#include "runtime/profiler.h"

/* What a kernel is, copied from its first event. */
typedef struct prof_kernel {
  int32_t id;   /* the backend's kernel index */
  char *name;
  int32_t *nodes;
  int32_t n_nodes;
  int64_t mac_flops, other_flops, bytes_read, bytes_written;
} prof_kernel;

typedef struct prof_call {
  int32_t k;    /* index into kernels */
  int32_t step; /* index into steps, -1 outside a step */
  int64_t start_ns, end_ns;
} prof_call;

typedef struct prof_step {
  int64_t start_ns, end_ns;
} prof_step;

struct ldmc_profiler {
  const ldmc_graph *g;
  prof_kernel *kernels;
  int32_t n_kernels, cap_kernels;
  int32_t *slot;     /* backend kernel index + 1 -> kernels index, -1 if unseen */
  int32_t n_slot;
  prof_call *calls;
  int64_t n_calls, cap_calls;
  prof_step *steps;
  int32_t n_steps, cap_steps;
  int32_t cur_step;  /* -1 outside a step */
  bool oom;
};

/* Text helpers: ops ('+'-joined op names) and node list ("%1,%2") of a kernel. */
char *ldmc_prof_kernel_ops(const ldmc_graph *g, const prof_kernel *k);
char *ldmc_prof_kernel_nodes(const prof_kernel *k);
const char *ldmc_prof_kernel_scope(const ldmc_graph *g, const prof_kernel *k);

#endif
