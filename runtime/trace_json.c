/* The Chrome trace event format (the JSON object form, which Perfetto and
 * chrome://tracing open): metadata naming the process and thread, one
 * complete ("X") event per step and one per kernel call inside it. What a
 * kernel is (name, args) is serialized once with jansson, which escapes
 * strings; the calls are streamed, so a long run's trace never sits in memory
 * as a JSON tree. Written atomically. */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/profiler_internal.h"
#include "support/fileio.h"

typedef struct out {
  ldmc_atomic_file *f;
  char buf[1 << 16];
  size_t n;
  ldmc_status st;
} out;

static void flush(out *o) {
  if (o->st == LDMC_OK && o->n) o->st = ldmc_atomic_write(o->f, o->buf, o->n);
  o->n = 0;
}

static void put(out *o, const char *s, size_t len) {
  if (o->n + len > sizeof o->buf) flush(o);
  if (o->st != LDMC_OK) return;
  if (len > sizeof o->buf) {
    o->st = ldmc_atomic_write(o->f, s, len);
    return;
  }
  memcpy(o->buf + o->n, s, len);
  o->n += len;
}

static void putf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out *o, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_json(out *o, json_t *v) {
  char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER) : NULL;
  json_decref(v);
  if (!s) {
    if (o->st == LDMC_OK) o->st = ldmc_error(LDMC_ERR_NOMEM, "out of memory writing the trace");
    return;
  }
  put(o, s, strlen(s));
  free(s);
}

/* `"name":..,"cat":"kernel","args":{..}` of each kernel, serialized once. */
static char **kernel_fragments(const ldmc_profiler *p) {
  char **frag = calloc((size_t)(p->n_kernels ? p->n_kernels : 1), sizeof *frag);
  if (!frag) return NULL;
  for (int32_t i = 0; i < p->n_kernels; i++) {
    const prof_kernel *k = &p->kernels[i];
    char *ops = ldmc_prof_kernel_ops(p->g, k), *nodes = ldmc_prof_kernel_nodes(k);
    json_t *args = ops && nodes ? json_pack("{s:i,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "kernel", (int)k->id, "ops", ops,
                                            "nodes", nodes, "block", ldmc_prof_kernel_scope(p->g, k), "mac_flops",
                                            (json_int_t)k->mac_flops, "other_flops", (json_int_t)k->other_flops,
                                            "bytes_read", (json_int_t)k->bytes_read, "bytes_written",
                                            (json_int_t)k->bytes_written)
                                : NULL;
    free(ops);
    free(nodes);
    json_t *name = json_string(k->name);
    char *a = args ? json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *nm = name ? json_dumps(name, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(args);
    json_decref(name);
    if (a && nm) {
      size_t len = strlen(a) + strlen(nm) + 64;
      frag[i] = malloc(len);
      if (frag[i]) snprintf(frag[i], len, "\"name\":%s,\"cat\":\"kernel\",\"args\":%s", nm, a);
    }
    free(a);
    free(nm);
    if (!frag[i]) {
      for (int32_t j = 0; j < i; j++) free(frag[j]);
      free(frag);
      return NULL;
    }
  }
  return frag;
}

ldmc_status ldmc_profile_write_trace(const ldmc_profiler *p, const char *backend, const char *path) {
  char **frag = kernel_fragments(p);
  if (!frag) return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  out *o = calloc(1, sizeof *o);
  if (!o) {
    for (int32_t i = 0; i < p->n_kernels; i++) free(frag[i]);
    free(frag);
    return ldmc_error(LDMC_ERR_NOMEM, "%s: out of memory", path);
  }
  o->st = ldmc_atomic_open(path, &o->f);
  int pid = (int)getpid(), tid = 1;
  /* time zero: the first step or call */
  int64_t t0 = INT64_MAX;
  for (int32_t s = 0; s < p->n_steps; s++) t0 = p->steps[s].start_ns < t0 ? p->steps[s].start_ns : t0;
  for (int64_t i = 0; i < p->n_calls; i++) t0 = p->calls[i].start_ns < t0 ? p->calls[i].start_ns : t0;
  if (t0 == INT64_MAX) t0 = 0;
  putf(o, "{\"displayTimeUnit\":\"ms\",\"otherData\":");
  put_json(o, json_pack("{s:s,s:s,s:s}", "producer", "ldmc profile", "graph", p->g->name ? p->g->name : "", "backend",
                        backend ? backend : ""));
  putf(o, ",\"traceEvents\":[\n");
  putf(o, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":", pid, tid);
  char label[300];
  snprintf(label, sizeof label, "ldmc %s", backend ? backend : "");
  put_json(o, json_pack("{s:s}", "name", label));
  putf(o, "},\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"steps and kernels\"}}",
       pid, tid);
  for (int32_t s = 0; s < p->n_steps; s++) {
    const prof_step *st = &p->steps[s];
    if (st->end_ns <= 0) continue;
    putf(o, ",\n{\"name\":\"step %d\",\"cat\":\"step\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%d,\"tid\":%d}",
         (int)s, (double)(st->start_ns - t0) * 1e-3, (double)(st->end_ns - st->start_ns) * 1e-3, pid, tid);
  }
  for (int64_t i = 0; i < p->n_calls && o->st == LDMC_OK; i++) {
    const prof_call *c = &p->calls[i];
    putf(o, ",\n{\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%d,\"tid\":%d,", (double)(c->start_ns - t0) * 1e-3,
         (double)(c->end_ns - c->start_ns) * 1e-3, pid, tid);
    put(o, frag[c->k], strlen(frag[c->k]));
    put(o, "}", 1);
  }
  putf(o, "\n]}\n");
  flush(o);
  ldmc_status st = o->st;
  if (st == LDMC_OK) st = ldmc_atomic_commit(o->f);
  else ldmc_atomic_abort(o->f);
  free(o);
  for (int32_t i = 0; i < p->n_kernels; i++) free(frag[i]);
  free(frag);
  return st;
}
