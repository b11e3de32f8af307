/* The backend side of profiling (backend.h): setting an executable's hook,
 * the clock, and the FLOPs and bytes of a kernel from its IR nodes. */
#include <time.h>

#include "backends/backend.h"

ldmc_status ldmc_executable_set_profiler(ldmc_executable *e, const ldmc_profile_hook *hook) {
  if (!e || !e->iface) return ldmc_error(LDMC_ERR_INVALID, "no executable to profile");
  if (!e->iface->set_profiler)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "the backend of graph '%s' reports no kernels to a profiler",
                      e->graph && e->graph->name ? e->graph->name : "");
  return e->iface->set_profiler(e->context, hook && hook->kernel ? hook : NULL);
}

ldmc_status ldmc_executable_set_output_hook(ldmc_executable *e, const ldmc_output_hook *hook) {
  if (!e || !e->iface) return ldmc_error(LDMC_ERR_INVALID, "no executable for an output hook");
  if (!e->iface->set_output_hook)
    return ldmc_error(LDMC_ERR_UNSUPPORTED, "the backend of graph '%s' reports no output as ready before run() returns",
                      e->graph && e->graph->name ? e->graph->name : "");
  return e->iface->set_output_hook(e->context, hook && hook->ready ? hook : NULL);
}

int64_t ldmc_profile_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t value_bytes(const ldmc_node *n) {
  int64_t e;
  size_t es = ldmc_dtype_size(n->dtype);
  if (ldmc_shape_numel(&n->shape, es, &e) != LDMC_OK) return 0;
  return e * (int64_t)es;
}

static bool in_set(const int32_t *nodes, int32_t n, int32_t id) {
  for (int32_t i = 0; i < n; i++)
    if (nodes[i] == id) return true;
  return false;
}

void ldmc_profile_kernel_cost(const ldmc_graph *g, const int32_t *nodes, int32_t n, ldmc_kernel_event *ev) {
  ev->mac_flops = ev->other_flops = ev->bytes_read = ev->bytes_written = 0;
  if (!g || !nodes || n <= 0) return;
  for (int32_t i = 0; i < n; i++) {
    int32_t id = nodes[i];
    if (id < 0 || id >= g->n_nodes) continue;
    ldmc_flops f = ldmc_node_flops(g, id);
    ev->mac_flops += f.mac;
    ev->other_flops += f.other;
    const ldmc_node *nd = &g->nodes[id];
    for (int k = 0; k < nd->n_operands; k++) {
      int32_t o = nd->operands[k];
      if (o < 0 || o >= g->n_nodes || in_set(nodes, n, o)) continue;
      bool seen = false; /* read once even when several members (or operands) use it */
      for (int32_t j = 0; j <= i && !seen; j++) {
        if (nodes[j] < 0 || nodes[j] >= g->n_nodes) continue;
        const ldmc_node *m = &g->nodes[nodes[j]];
        for (int q = 0; q < (j == i ? k : m->n_operands) && !seen; q++) seen = m->operands[q] == o;
      }
      if (!seen) ev->bytes_read += value_bytes(&g->nodes[o]);
    }
  }
  int32_t root = nodes[n - 1];
  if (root >= 0 && root < g->n_nodes) ev->bytes_written = value_bytes(&g->nodes[root]);
}
