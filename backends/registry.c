/* The backend registry, and running executables with inputs checked against
 * the graph's parameters. Adding a backend: one line in k_backends. Built
 * twice: as is for the libraries (tests and benchmarks link llvm-cpu in), and
 * with LDMC_LLVM_CPU_PLUGIN for the ldmc executable, which loads llvm-cpu as
 * a shared module on first use (below). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "backends/tpusim/tpusim.h"

#ifndef LDMC_LLVM_CPU_PLUGIN
static const ldmc_backend_i *const k_backends[] = {
    &ldmc_backend_interp,
    &ldmc_backend_llvm_cpu,
    &ldmc_backend_tpusim,
};
enum { N_BACKENDS = (int)(sizeof k_backends / sizeof k_backends[0]) };

static const ldmc_backend_i *backend_at(int i) { return k_backends[i]; }
static const ldmc_backend_i *backend_use(int i) { return k_backends[i]; }
#else
/* The ldmc executable links no LLVM: its llvm-cpu backend is the shared module
 * libldmc_llvm_cpu.so (backends/llvm_cpu/ built with -fPIC), dlopen()ed the
 * first time a command uses the backend. The module leaves the ldmc_* symbols
 * of the libraries below it undefined; they resolve against the executable,
 * which links those libraries whole and exports them, so the process has one
 * copy of every global (the thread-local error message included). Until then
 * the registry lists llvm-cpu by name and description from the proxy below.
 * The module is $LDMC_LLVM_CPU_PLUGIN if set, else the first of
 * <exe dir>/../lib/libldmc_llvm_cpu.so and <exe dir>/libldmc_llvm_cpu.so. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define LC_PLUGIN_FILE "libldmc_llvm_cpu.so"

static pthread_once_t g_plugin_once = PTHREAD_ONCE_INIT;
static void *g_plugin;                                /* dlopen handle */
static const ldmc_backend_i *_Atomic g_plugin_backend; /* its ldmc_backend_llvm_cpu, once loaded */
static char g_plugin_error[4 * PATH_MAX + 1024];

static void plugin_load(void) {
  char path[PATH_MAX + 64], tried[PATH_MAX + 64];
  const char *env = getenv("LDMC_LLVM_CPU_PLUGIN");
  if (env && *env) {
    snprintf(path, sizeof path, "%s", env);
  } else {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
      snprintf(g_plugin_error, sizeof g_plugin_error,
               "cannot load the llvm-cpu backend: /proc/self/exe: %s (set LDMC_LLVM_CPU_PLUGIN to the path of %s)",
               strerror(errno), LC_PLUGIN_FILE);
      return;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(path, sizeof path, "%s/../lib/" LC_PLUGIN_FILE, exe);
    if (access(path, F_OK) != 0) {
      snprintf(tried, sizeof tried, "%s", path);
      snprintf(path, sizeof path, "%s/" LC_PLUGIN_FILE, exe);
      if (access(path, F_OK) != 0) {
        snprintf(g_plugin_error, sizeof g_plugin_error,
                 "cannot load the llvm-cpu backend: no %s (looked for %s and %s; LDMC_LLVM_CPU_PLUGIN=FILE names it)",
                 LC_PLUGIN_FILE, tried, path);
        return;
      }
    }
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(g_plugin_error, sizeof g_plugin_error, "cannot load the llvm-cpu backend %s: %s", path, e ? e : "?");
    return;
  }
  const ldmc_backend_i *be = dlsym(h, "ldmc_backend_llvm_cpu");
  if (!be || !be->compile) {
    const char *e = dlerror();
    snprintf(g_plugin_error, sizeof g_plugin_error, "cannot load the llvm-cpu backend %s: no ldmc_backend_llvm_cpu: %s",
             path, e ? e : "?");
    dlclose(h);
    return;
  }
  g_plugin = h;
  atomic_store(&g_plugin_backend, be);
}

/* The loaded backend, or NULL with the reason as the error message. */
static const ldmc_backend_i *plugin_backend(void) {
  pthread_once(&g_plugin_once, plugin_load);
  const ldmc_backend_i *be = atomic_load(&g_plugin_backend);
  if (!be) ldmc_error(LDMC_ERR_IO, "%s", g_plugin_error);
  return be;
}

static void *plugin_sym(const char *name) {
  if (!plugin_backend()) return NULL;
  void *f = dlsym(g_plugin, name);
  if (!f) ldmc_error(LDMC_ERR_INTERNAL, "the llvm-cpu backend module has no %s: %s", name, dlerror());
  return f;
}

/* Stand-in for the backend until it is loaded: each member loads it and calls
 * its own. Only the registry hands this out, and only where the module could
 * not be loaded or for listing (ldmc_backend_get before any use). */
static bool proxy_supports(const ldmc_node *n) {
  const ldmc_backend_i *be = plugin_backend();
  return be && be->supports && be->supports(n);
}
static ldmc_status proxy_compile(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_executable **out) {
  *out = NULL;
  const ldmc_backend_i *be = plugin_backend();
  return be ? be->compile(g, o, out) : LDMC_ERR_IO;
}
static ldmc_status proxy_plan(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_graph **opt,
                              struct ldmc_plan **plan) {
  const ldmc_backend_i *be = plugin_backend();
  if (!be) return LDMC_ERR_IO;
  if (!be->plan) return ldmc_error(LDMC_ERR_UNSUPPORTED, "llvm-cpu: no plan");
  return be->plan(g, o, opt, plan);
}
static const ldmc_backend_i k_llvm_cpu_proxy = {
    .name = "llvm-cpu",
    .description = "LLVM 19 JIT for the host CPU: vectorized kernels, GEMM/convolution microkernels, OpenMP",
    .supports = proxy_supports,
    .compile = proxy_compile,
    .plan = proxy_plan,
};

static const ldmc_backend_i *const k_backends[] = {
    &ldmc_backend_interp,
    &k_llvm_cpu_proxy,
    &ldmc_backend_tpusim,
};
enum { N_BACKENDS = (int)(sizeof k_backends / sizeof k_backends[0]) };

/* For listing: the loaded backend if it is, else the proxy (loads nothing). */
static const ldmc_backend_i *backend_at(int i) {
  const ldmc_backend_i *be = k_backends[i] == &k_llvm_cpu_proxy ? atomic_load(&g_plugin_backend) : NULL;
  return be ? be : k_backends[i];
}
/* For use: loads the module, and gives its own table (every member, whatever
 * backend.h adds); the proxy if it cannot be loaded, whose compile() then
 * fails with the reason. */
static const ldmc_backend_i *backend_use(int i) {
  if (k_backends[i] != &k_llvm_cpu_proxy) return k_backends[i];
  pthread_once(&g_plugin_once, plugin_load);
  return backend_at(i);
}

/* The public functions of backends/llvm_cpu/llvm_cpu.h, forwarded to the module. */
const char *ldmc_llvm_cpu_isa_name(ldmc_llvm_cpu_isa isa) {
  const char *(*f)(ldmc_llvm_cpu_isa) = (const char *(*)(ldmc_llvm_cpu_isa))plugin_sym(__func__);
  return f ? f(isa) : "<llvm-cpu not loaded>";
}
bool ldmc_llvm_cpu_isa_parse(const char *s, ldmc_llvm_cpu_isa *out) {
  bool (*f)(const char *, ldmc_llvm_cpu_isa *) = (bool (*)(const char *, ldmc_llvm_cpu_isa *))plugin_sym(__func__);
  return f && f(s, out);
}
ldmc_llvm_cpu_isa ldmc_llvm_cpu_host_isa(void) {
  ldmc_llvm_cpu_isa (*f)(void) = (ldmc_llvm_cpu_isa(*)(void))plugin_sym(__func__);
  return f ? f() : LDMC_LLVM_CPU_ISA_SCALAR;
}
void ldmc_llvm_cpu_set_isa(ldmc_llvm_cpu_isa isa) {
  void (*f)(ldmc_llvm_cpu_isa) = (void (*)(ldmc_llvm_cpu_isa))plugin_sym(__func__);
  if (f) f(isa);
}
ldmc_status ldmc_llvm_cpu_current_isa(ldmc_llvm_cpu_isa *out) {
  ldmc_status (*f)(ldmc_llvm_cpu_isa *) = (ldmc_status(*)(ldmc_llvm_cpu_isa *))plugin_sym(__func__);
  return f ? f(out) : LDMC_ERR_IO;
}
void ldmc_llvm_cpu_stats_get(ldmc_llvm_cpu_stats *out) { /* zeros until the backend is loaded */
  memset(out, 0, sizeof *out);
  if (!atomic_load(&g_plugin_backend)) return;
  void (*f)(ldmc_llvm_cpu_stats *) = (void (*)(ldmc_llvm_cpu_stats *))plugin_sym(__func__);
  if (f) f(out);
}
bool ldmc_llvm_cpu_emit_kind_parse(const char *s, ldmc_llvm_cpu_emit_kind *out) {
  bool (*f)(const char *, ldmc_llvm_cpu_emit_kind *) =
      (bool (*)(const char *, ldmc_llvm_cpu_emit_kind *))plugin_sym(__func__);
  if (f) return f(s, out);
  /* without the module, parse here so that the emit itself reports why */
  static const char *const names[] = {"obj", "asm", "llvm"};
  for (int i = 0; s && i < 3; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = (ldmc_llvm_cpu_emit_kind)i;
      return true;
    }
  return false;
}
ldmc_status ldmc_llvm_cpu_emit(const ldmc_graph *g, const ldmc_compile_opts *o, ldmc_llvm_cpu_emit_kind kind,
                               const char *path, const char *header_path, const char *entry) {
  typedef ldmc_status (*emit_fn)(const ldmc_graph *, const ldmc_compile_opts *, ldmc_llvm_cpu_emit_kind, const char *,
                                 const char *, const char *);
  emit_fn f = (emit_fn)plugin_sym(__func__);
  return f ? f(g, o, kind, path, header_path, entry) : LDMC_ERR_IO;
}
#endif

int ldmc_backend_count(void) { return N_BACKENDS; }

const ldmc_backend_i *ldmc_backend_get(int i) { return i >= 0 && i < N_BACKENDS ? backend_at(i) : NULL; }

const ldmc_backend_i *ldmc_backend_find(const char *name) {
  char names[512];
  size_t k = 0;
  names[0] = 0;
  for (int i = 0; i < N_BACKENDS; i++) {
    if (name && strcmp(k_backends[i]->name, name) == 0) return backend_use(i);
    if (k < sizeof names) k += (size_t)snprintf(names + k, sizeof names - k, i ? ", %s" : "%s", k_backends[i]->name);
  }
  ldmc_error(LDMC_ERR_INVALID, "unknown backend '%s' (available: %s)", name ? name : "(null)", names);
  return NULL;
}

/* "f32[2,3]" */
static const char *type_str(ldmc_dtype dt, const ldmc_shape *s, char *buf, size_t len) {
  char sh[LDMC_MAX_RANK * 24 + 8];
  if (s->rank < 0 || s->rank > LDMC_MAX_RANK)
    snprintf(buf, len, "%s[<rank %d>]", ldmc_dtype_name(dt), s->rank);
  else
    snprintf(buf, len, "%s%s", ldmc_dtype_name(dt), ldmc_shape_str(s, sh, sizeof sh));
  return buf;
}

static const char *param_name(const ldmc_node *n) { return n->attrs.name ? n->attrs.name : ""; }

/* Checks one input against parameter node p: type, and storage large enough. */
static ldmc_status check_input(const ldmc_node *p, const ldmc_tensor *t, const char *what) {
  char want[256], got[256];
  if (t->dtype != p->dtype || !ldmc_shape_equal(&t->shape, &p->shape))
    return ldmc_error(LDMC_ERR_INVALID, "%s '%s': expected %s, found %s", what, param_name(p),
                      type_str(p->dtype, &p->shape, want, sizeof want), type_str(t->dtype, &t->shape, got, sizeof got));
  int64_t n;
  LDMC_TRY(ldmc_shape_numel(&p->shape, ldmc_dtype_size(p->dtype), &n));
  size_t need = (size_t)n * ldmc_dtype_size(p->dtype);
  if (t->nbytes < need || (need && !t->data))
    return ldmc_error(LDMC_ERR_INVALID, "%s '%s' (%s): holds %zu bytes, needs %zu", what, param_name(p),
                      type_str(p->dtype, &p->shape, want, sizeof want), t->data ? t->nbytes : 0, need);
  return LDMC_OK;
}

ldmc_status ldmc_executable_run(ldmc_executable *e, const ldmc_tensor *inputs, int n_inputs, ldmc_tensor *outputs,
                                int n_outputs) {
  if (!e || !e->graph || !e->iface || !e->iface->run) return ldmc_error(LDMC_ERR_INVALID, "no executable to run");
  const ldmc_graph *g = e->graph;
  int32_t np = ldmc_graph_num_params(g);
  if (n_inputs != np || (n_inputs > 0 && !inputs))
    return ldmc_error(LDMC_ERR_INVALID, "graph '%s' takes %d input(s), got %d", g->name, (int)np, n_inputs);
  if (n_outputs != g->n_outputs || (n_outputs > 0 && !outputs))
    return ldmc_error(LDMC_ERR_INVALID, "graph '%s' has %d output(s), got room for %d", g->name, (int)g->n_outputs,
                      n_outputs);
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    if (g->nodes[i].op != LDMC_OP_PARAMETER) continue;
    char what[32];
    snprintf(what, sizeof what, "input %d", (int)k);
    LDMC_TRY(check_input(&g->nodes[i], &inputs[k++], what));
  }
  return e->iface->run(e->context, inputs, n_inputs, outputs, n_outputs);
}

ldmc_status ldmc_executable_run_named(ldmc_executable *e, const ldmc_tensor_set *inputs, ldmc_tensor_set *outputs) {
  if (!e || !e->graph || !inputs || !outputs) return ldmc_error(LDMC_ERR_INVALID, "no executable or tensors to run");
  const ldmc_graph *g = e->graph;
  int32_t np = ldmc_graph_num_params(g);
  char want[256], got[256];
  /* every given tensor must be a parameter */
  for (int32_t j = 0; j < inputs->n; j++) {
    const ldmc_tensor *t = &inputs->items[j];
    if (ldmc_graph_find_param(g, t->name ? t->name : "") < 0)
      return ldmc_error(LDMC_ERR_INVALID, "unexpected input '%s' (%s): graph '%s' has no such parameter",
                        t->name ? t->name : "", type_str(t->dtype, &t->shape, got, sizeof got), g->name);
  }
  ldmc_tensor *ordered = calloc((size_t)(np ? np : 1), sizeof *ordered);
  ldmc_tensor *outs = calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *outs);
  ldmc_status st = LDMC_OK;
  if (!ordered || !outs) {
    st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int32_t i = 0, k = 0; i < g->n_nodes && st == LDMC_OK; i++) {
    const ldmc_node *p = &g->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    const ldmc_tensor *t = ldmc_tensor_set_find(inputs, param_name(p));
    if (!t) {
      st = ldmc_error(LDMC_ERR_INVALID, "missing input '%s' (expected %s)", param_name(p),
                      type_str(p->dtype, &p->shape, want, sizeof want));
      break;
    }
    st = check_input(p, t, "input");
    ordered[k++] = *t; /* shallow: run() only reads */
  }
  if (st == LDMC_OK) st = ldmc_executable_run(e, ordered, np, outs, g->n_outputs);
  if (st == LDMC_OK) {
    for (int32_t k = 0; k < g->n_outputs; k++) {
      if (st == LDMC_OK) st = ldmc_tensor_set_add(outputs, &outs[k]); /* takes ownership on success */
      if (st != LDMC_OK) ldmc_tensor_release(&outs[k]);
    }
  }
done:
  free(ordered);
  free(outs);
  return st;
}

void ldmc_executable_free(ldmc_executable *e) {
  if (!e) return;
  if (e->iface && e->iface->destroy) e->iface->destroy(e->context);
  ldmc_graph_free(e->graph);
  free(e);
}
