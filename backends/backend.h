/* Backends: a small vtable each, and a registry. Adding a backend is one
 * ldmc_backend_i and one line in registry.c (see docs/adding-a-backend.md). */
#ifndef LDMC_BACKENDS_BACKEND_H
#define LDMC_BACKENDS_BACKEND_H

#include "ir/ir.h"

typedef struct ldmc_compile_opts {
  int threads;            /* 0: the backend's default */
  bool bf16;              /* allow bf16 storage with f32 accumulation */
  const char *cache_dir;  /* optional on-disk kernel cache */
  int verbose;
} ldmc_compile_opts;

/* A compiled graph. run() takes one input per parameter, in the graph's
 * parameter order (dtype and shape must match), and fills one freshly
 * allocated tensor per graph output, named as the output. */
typedef struct ldmc_executable_i {
  ldmc_status (*run)(void *context, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs, int n_outputs);
  void (*destroy)(void *context);
} ldmc_executable_i;

typedef struct ldmc_executable {
  const ldmc_executable_i *iface;
  void *context;
  ldmc_graph *graph; /* the graph as compiled (owned), for parameter and output names */
} ldmc_executable;

typedef struct ldmc_backend_i {
  const char *name;
  const char *description;
  bool (*supports)(const ldmc_node *n); /* ops it runs natively */
  ldmc_status (*compile)(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_executable **out);
} ldmc_backend_i;

int ldmc_backend_count(void);
const ldmc_backend_i *ldmc_backend_get(int i);
const ldmc_backend_i *ldmc_backend_find(const char *name); /* NULL, with a message listing the names, if unknown */

ldmc_status ldmc_executable_run(ldmc_executable *e, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs,
                                int n_outputs);
/* Matches inputs to parameters by name (refusing missing, extra, mis-typed or
 * mis-shaped tensors, each named with expected and found type) and adds the
 * outputs to *outputs under the graph's output names. */
ldmc_status ldmc_executable_run_named(ldmc_executable *e, const ldmc_tensor_set *inputs, ldmc_tensor_set *outputs);
void ldmc_executable_free(ldmc_executable *e);

extern const ldmc_backend_i ldmc_backend_interp;

#endif
