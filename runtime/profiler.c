/* The profiler: records kernel events from a backend's hook, brackets them
 * into steps, and aggregates them per kernel (runtime/profiler.h). The hook
 * only appends to arrays; everything else happens in ldmc_profiler_report. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/profiler_internal.h"

ldmc_profiler *ldmc_profiler_new(const ldmc_graph *g) {
  ldmc_profiler *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->g = g;
  p->cur_step = -1;
  return p;
}

void ldmc_profiler_free(ldmc_profiler *p) {
  if (!p) return;
  for (int32_t i = 0; i < p->n_kernels; i++) {
    free(p->kernels[i].name);
    free(p->kernels[i].nodes);
  }
  free(p->kernels);
  free(p->slot);
  free(p->calls);
  free(p->steps);
  free(p);
}

static bool grow(void **arr, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return true;
  int64_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  void *a = realloc(*arr, (size_t)c * elem);
  if (!a) return false;
  *arr = a;
  *cap = c;
  return true;
}

static bool grow32(void **arr, int32_t *cap, int64_t need, size_t elem) {
  int64_t c = *cap;
  bool ok = need < INT32_MAX / 2 && grow(arr, &c, need, elem);
  *cap = (int32_t)c;
  return ok;
}

/* The kernels index of ev's kernel, added on first sight; -1 on OOM. */
static int32_t kernel_slot(ldmc_profiler *p, const ldmc_kernel_event *ev) {
  int32_t s = ev->kernel < -1 ? 0 : ev->kernel + 1;
  if (s < p->n_slot && p->slot[s] >= 0) return p->slot[s];
  if (s >= p->n_slot) {
    int32_t n = p->n_slot ? p->n_slot : 64;
    while (n <= s) n *= 2;
    int32_t *t = realloc(p->slot, (size_t)n * sizeof *t);
    if (!t) return -1;
    for (int32_t i = p->n_slot; i < n; i++) t[i] = -1;
    p->slot = t;
    p->n_slot = n;
  }
  if (!grow32((void **)&p->kernels, &p->cap_kernels, p->n_kernels + 1, sizeof *p->kernels)) return -1;
  prof_kernel *k = &p->kernels[p->n_kernels];
  memset(k, 0, sizeof *k);
  k->id = ev->kernel;
  k->name = strdup(ev->name ? ev->name : "?");
  int32_t nn = ev->n_nodes > 0 && ev->nodes ? ev->n_nodes : 0;
  k->nodes = malloc((size_t)(nn ? nn : 1) * sizeof *k->nodes);
  if (!k->name || !k->nodes) {
    free(k->name);
    free(k->nodes);
    return -1;
  }
  if (nn) memcpy(k->nodes, ev->nodes, (size_t)nn * sizeof *k->nodes);
  k->n_nodes = nn;
  k->mac_flops = ev->mac_flops;
  k->other_flops = ev->other_flops;
  k->bytes_read = ev->bytes_read;
  k->bytes_written = ev->bytes_written;
  p->slot[s] = p->n_kernels;
  return p->n_kernels++;
}

static void on_kernel(void *ctx, const ldmc_kernel_event *ev) {
  ldmc_profiler *p = ctx;
  int32_t k = kernel_slot(p, ev);
  if (k < 0 || !grow((void **)&p->calls, &p->cap_calls, p->n_calls + 1, sizeof *p->calls)) {
    p->oom = true;
    return;
  }
  p->calls[p->n_calls++] = (prof_call){.k = k, .step = p->cur_step, .start_ns = ev->start_ns, .end_ns = ev->end_ns};
}

ldmc_profile_hook ldmc_profiler_hook(ldmc_profiler *p) { return (ldmc_profile_hook){.kernel = on_kernel, .ctx = p}; }

void ldmc_profiler_step_begin(ldmc_profiler *p) {
  if (!grow32((void **)&p->steps, &p->cap_steps, p->n_steps + 1, sizeof *p->steps)) {
    p->oom = true;
    p->cur_step = -1;
    return;
  }
  p->cur_step = p->n_steps;
  p->steps[p->n_steps++] = (prof_step){.start_ns = ldmc_profile_now_ns(), .end_ns = 0};
}

void ldmc_profiler_step_end(ldmc_profiler *p) {
  if (p->cur_step >= 0) p->steps[p->cur_step].end_ns = ldmc_profile_now_ns();
  p->cur_step = -1;
}

void ldmc_profiler_record_whole(ldmc_profiler *p, int64_t start_ns, int64_t end_ns) {
  const ldmc_graph *g = p->g;
  int32_t *nodes = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *nodes);
  if (!nodes) {
    p->oom = true;
    return;
  }
  int32_t n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op != LDMC_OP_PARAMETER) nodes[n++] = i;
  ldmc_kernel_event ev = {.kernel = -1, .name = "run", .nodes = nodes, .n_nodes = n};
  bool known = p->n_slot > 0 && p->slot[0] >= 0;
  if (!known) ldmc_profile_kernel_cost(g, nodes, n, &ev); /* quadratic in nodes: only once */
  ev.start_ns = start_ns;
  ev.end_ns = end_ns;
  on_kernel(p, &ev);
  free(nodes);
}

ldmc_status ldmc_profiler_status(const ldmc_profiler *p) {
  return p->oom ? ldmc_error(LDMC_ERR_NOMEM, "profiler: out of memory; some kernel events were lost") : LDMC_OK;
}

int64_t ldmc_profiler_n_calls(const ldmc_profiler *p) { return p->n_calls; }

int ldmc_profiler_n_steps(const ldmc_profiler *p) {
  int n = 0;
  for (int32_t i = 0; i < p->n_steps; i++) n += p->steps[i].end_ns > 0;
  return n;
}

/* ---- text of a kernel ---- */
char *ldmc_prof_kernel_ops(const ldmc_graph *g, const prof_kernel *k) {
  size_t len = 1;
  for (int32_t i = 0; i < k->n_nodes; i++)
    if (k->nodes[i] >= 0 && k->nodes[i] < g->n_nodes) len += strlen(ldmc_op_name(g->nodes[k->nodes[i]].op)) + 1;
  char *s = malloc(len);
  if (!s) return NULL;
  s[0] = 0;
  size_t at = 0;
  bool seen[LDMC_OP_COUNT] = {0}; /* each op once, in order of appearance: "reshape+transpose+attention" */
  for (int32_t i = 0; i < k->n_nodes; i++) {
    if (k->nodes[i] < 0 || k->nodes[i] >= g->n_nodes) continue;
    ldmc_op op = g->nodes[k->nodes[i]].op;
    if ((unsigned)op >= LDMC_OP_COUNT || op == LDMC_OP_PARAMETER || seen[op]) continue;
    seen[op] = true;
    at += (size_t)snprintf(s + at, len - at, "%s%s", at ? "+" : "", ldmc_op_name(op));
  }
  return s;
}

char *ldmc_prof_kernel_nodes(const prof_kernel *k) {
  size_t len = (size_t)k->n_nodes * 13 + 1;
  char *s = malloc(len);
  if (!s) return NULL;
  s[0] = 0;
  size_t at = 0;
  for (int32_t i = 0; i < k->n_nodes; i++) at += (size_t)snprintf(s + at, len - at, "%s%%%d", i ? "," : "", (int)k->nodes[i]);
  return s;
}

const char *ldmc_prof_kernel_scope(const ldmc_graph *g, const prof_kernel *k) {
  for (int32_t i = k->n_nodes - 1; i >= 0; i--) { /* the root's, else the nearest member's */
    int32_t id = k->nodes[i];
    if (id >= 0 && id < g->n_nodes && g->nodes[id].scope) return g->nodes[id].scope;
  }
  return "";
}

/* ---- aggregation ---- */
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int cmp_total_desc(const void *a, const void *b) {
  const ldmc_profile_kernel *x = a, *y = b;
  if (x->total_s != y->total_s) return x->total_s > y->total_s ? -1 : 1;
  return x->kernel < y->kernel ? -1 : x->kernel > y->kernel;
}

static double median_of(double *v, int64_t n) {
  if (n <= 0) return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void derive(ldmc_profile_kernel *k, double steps_total_s) {
  double flops = (double)(k->mac_flops + k->other_flops), bytes = (double)(k->bytes_read + k->bytes_written);
  k->gflops_s = k->median_s > 0 ? flops / k->median_s * 1e-9 : 0;
  k->gbytes_s = k->median_s > 0 ? bytes / k->median_s * 1e-9 : 0;
  k->intensity = bytes > 0 ? flops / bytes : 0;
  k->share = steps_total_s > 0 ? k->total_s / steps_total_s : 0;
}

void ldmc_profile_report_free(ldmc_profile_report *r) {
  if (!r) return;
  for (int32_t i = 0; i < r->n_kernels; i++) {
    free(r->kernels[i].name);
    free(r->kernels[i].ops);
    free(r->kernels[i].nodes);
    free(r->kernels[i].scope);
  }
  free(r->kernels);
  free(r->graph);
  memset(r, 0, sizeof *r);
}

static ldmc_status step_totals(const ldmc_profiler *p, ldmc_profile_report *r, bool *in_step) {
  double *t = malloc((size_t)(p->n_steps ? p->n_steps : 1) * sizeof *t);
  if (!t) return ldmc_error(LDMC_ERR_NOMEM, "profiler: out of memory");
  int n = 0;
  for (int32_t i = 0; i < p->n_steps; i++) {
    in_step[i] = p->steps[i].end_ns > 0;
    if (!in_step[i]) continue;
    t[n] = (double)(p->steps[i].end_ns - p->steps[i].start_ns) * 1e-9;
    r->steps_total_s += t[n];
    r->step_min_s = n == 0 || t[n] < r->step_min_s ? t[n] : r->step_min_s;
    n++;
  }
  r->steps = n;
  r->step_mean_s = n ? r->steps_total_s / n : 0;
  r->step_median_s = median_of(t, n);
  free(t);
  return LDMC_OK;
}

ldmc_status ldmc_profiler_report(const ldmc_profiler *p, ldmc_profile_report *r) {
  memset(r, 0, sizeof *r);
  const ldmc_graph *g = p->g;
  ldmc_flops gf = ldmc_graph_flops(g);
  r->graph_mac_flops = gf.mac;
  r->graph_other_flops = gf.other;
  r->graph = strdup(g->name ? g->name : "");
  bool *in_step = calloc((size_t)(p->n_steps ? p->n_steps : 1), sizeof *in_step);
  int64_t *count = calloc((size_t)(p->n_kernels ? p->n_kernels : 1) + 1, sizeof *count);
  double *dur = malloc((size_t)(p->n_calls ? p->n_calls : 1) * sizeof *dur);
  r->kernels = calloc((size_t)(p->n_kernels ? p->n_kernels : 1), sizeof *r->kernels);
  ldmc_status st = LDMC_OK;
  if (!r->graph || !in_step || !count || !dur || !r->kernels) {
    st = ldmc_error(LDMC_ERR_NOMEM, "profiler: out of memory");
    goto done;
  }
  if ((st = step_totals(p, r, in_step)) != LDMC_OK) goto done;
  /* counting sort of the calls of completed steps by kernel: count[k] .. count[k+1] */
  for (int64_t i = 0; i < p->n_calls; i++) {
    const prof_call *c = &p->calls[i];
    if (c->step >= 0 && in_step[c->step]) count[c->k + 1]++;
  }
  for (int32_t k = 0; k < p->n_kernels; k++) count[k + 1] += count[k];
  int64_t *fill = malloc((size_t)(p->n_kernels ? p->n_kernels : 1) * sizeof *fill);
  if (!fill) {
    st = ldmc_error(LDMC_ERR_NOMEM, "profiler: out of memory");
    goto done;
  }
  memcpy(fill, count, (size_t)p->n_kernels * sizeof *fill);
  for (int64_t i = 0; i < p->n_calls; i++) {
    const prof_call *c = &p->calls[i];
    if (c->step >= 0 && in_step[c->step]) dur[fill[c->k]++] = (double)(c->end_ns - c->start_ns) * 1e-9;
  }
  free(fill);
  int32_t nk = 0;
  for (int32_t k = 0; k < p->n_kernels && st == LDMC_OK; k++) {
    int64_t n = count[k + 1] - count[k];
    if (n == 0) continue;
    const prof_kernel *pk = &p->kernels[k];
    ldmc_profile_kernel *o = &r->kernels[nk++];
    o->kernel = pk->id;
    o->name = strdup(pk->name);
    o->ops = ldmc_prof_kernel_ops(g, pk);
    o->nodes = ldmc_prof_kernel_nodes(pk);
    o->scope = strdup(ldmc_prof_kernel_scope(g, pk));
    o->root = pk->n_nodes ? pk->nodes[pk->n_nodes - 1] : -1;
    if (!o->name || !o->ops || !o->nodes || !o->scope) st = ldmc_error(LDMC_ERR_NOMEM, "profiler: out of memory");
    o->kernels = 1;
    o->calls = n;
    double *d = dur + count[k];
    for (int64_t i = 0; i < n; i++) o->total_s += d[i];
    o->median_s = median_of(d, n);
    o->min_s = d[0]; /* sorted by median_of */
    o->mac_flops = pk->mac_flops;
    o->other_flops = pk->other_flops;
    o->bytes_read = pk->bytes_read;
    o->bytes_written = pk->bytes_written;
    derive(o, r->steps_total_s);
    if (r->steps > 0) { /* per step: a kernel called c times over s steps counts c / s times */
      r->exec_mac_flops += (int64_t)llround((double)pk->mac_flops * (double)n / r->steps);
      r->exec_other_flops += (int64_t)llround((double)pk->other_flops * (double)n / r->steps);
      r->bytes_per_step += (int64_t)llround((double)(pk->bytes_read + pk->bytes_written) * (double)n / r->steps);
      r->kernel_s_per_step += o->total_s / r->steps;
      r->calls_per_step += n;
    }
  }
  r->n_kernels = nk;
  if (r->steps > 0) r->calls_per_step /= r->steps;
  qsort(r->kernels, (size_t)nk, sizeof *r->kernels, cmp_total_desc);
  r->gflops_s = r->step_median_s > 0 ? (double)r->graph_mac_flops / r->step_median_s * 1e-9 : 0;
done:
  free(in_step);
  free(count);
  free(dur);
  if (st != LDMC_OK) ldmc_profile_report_free(r);
  return st;
}

void ldmc_profile_report_set_machine(ldmc_profile_report *r, int threads, double peak_gflops, double bandwidth_gbs) {
  r->threads = threads;
  r->peak_gflops = peak_gflops;
  r->bandwidth_gbs = bandwidth_gbs;
  r->pct_peak = peak_gflops > 0 ? 100.0 * r->gflops_s / peak_gflops : 0;
}

ldmc_status ldmc_profile_report_group(const ldmc_profile_report *r, ldmc_profile_key_fn key, ldmc_profile_report *out) {
  *out = *r;
  out->kernels = calloc((size_t)(r->n_kernels ? r->n_kernels : 1), sizeof *out->kernels);
  out->graph = strdup(r->graph ? r->graph : "");
  out->n_kernels = 0;
  if (!out->kernels || !out->graph) {
    free(out->kernels);
    free(out->graph);
    memset(out, 0, sizeof *out);
    return ldmc_error(LDMC_ERR_NOMEM, "profiler: out of memory");
  }
  ldmc_status st = LDMC_OK;
  double steps = r->steps > 0 ? r->steps : 1;
  for (int32_t i = 0; i < r->n_kernels && st == LDMC_OK; i++) {
    const ldmc_profile_kernel *k = &r->kernels[i];
    char buf[256];
    const char *name = key(k, buf, sizeof buf);
    ldmc_profile_kernel *o = NULL;
    for (int32_t j = 0; j < out->n_kernels && !o; j++)
      if (strcmp(out->kernels[j].name, name) == 0) o = &out->kernels[j];
    if (!o) {
      o = &out->kernels[out->n_kernels++];
      o->kernel = -1;
      o->root = -1;
      o->name = strdup(name);
      o->ops = strdup(k->ops);
      o->nodes = strdup("");
      o->scope = strdup(k->scope);
      if (!o->name || !o->ops || !o->nodes || !o->scope) st = ldmc_error(LDMC_ERR_NOMEM, "profiler: out of memory");
    } else {
      if (o->ops && strcmp(o->ops, k->ops) != 0) o->ops[0] = 0; /* mixed: no single op list */
      if (o->scope && strcmp(o->scope, k->scope) != 0) o->scope[0] = 0;
    }
    double per_step = (double)k->calls / steps; /* calls of this kernel per step */
    o->kernels++;
    o->calls += k->calls;
    o->total_s += k->total_s;
    o->median_s += k->median_s * per_step;
    o->min_s += k->min_s * per_step;
    o->mac_flops += (int64_t)llround((double)k->mac_flops * per_step);
    o->other_flops += (int64_t)llround((double)k->other_flops * per_step);
    o->bytes_read += (int64_t)llround((double)k->bytes_read * per_step);
    o->bytes_written += (int64_t)llround((double)k->bytes_written * per_step);
  }
  for (int32_t j = 0; j < out->n_kernels; j++) derive(&out->kernels[j], r->steps_total_s);
  qsort(out->kernels, (size_t)out->n_kernels, sizeof *out->kernels, cmp_total_desc);
  if (st != LDMC_OK) ldmc_profile_report_free(out);
  return st;
}
