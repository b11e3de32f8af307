/* Bucketed, overlapped gradient all-reduce (grad_sync.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/dist.h"
#include "runtime/grad_sync.h"

struct ldmc_grad_sync {
  const ldmc_graph *g;
  int32_t n_out;
  size_t bucket_bytes;
  size_t *numel, *off; /* per output: floats, offset in flat */
  int32_t *bucket;     /* per output */
  size_t total;
  float *flat;
  int32_t n_buckets;
  size_t *b_lo, *b_hi;      /* per bucket: float range in flat */
  int32_t *b_outputs;       /* per bucket: outputs in it */
  int32_t *b_left;          /* per bucket, this step: outputs not yet copied in */
  int32_t *seen, n_seen;    /* the order outputs were ready in (first step) */
  bool *fed;                /* per output, this step */
  ldmc_tensor *outs;        /* the executable's own outputs (kept allocated) */
  bool hooked, overlapped, relaid;
  ldmc_executable *hooked_exe;
  /* the communication thread */
  pthread_t thread;
  bool thread_up, quit;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  int32_t *queue, q_head, q_tail, n_done;
  ldmc_status comm_st;
  char comm_err[512];
  double allreduce_s, wait_s;
  int64_t steps;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *comm_main(void *arg) {
  ldmc_grad_sync *s = arg;
  float scale = 1.0f / (float)ldmc_dist_size();
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (s->q_head == s->q_tail && !s->quit) pthread_cond_wait(&s->cv_work, &s->mu);
    if (s->quit) break;
    int32_t b = s->queue[s->q_head++];
    bool failed = s->comm_st != LDMC_OK;
    pthread_mutex_unlock(&s->mu);
    ldmc_status st = LDMC_OK;
    if (!failed) {
      double t0 = now_s();
      st = ldmc_dist_allreduce_f32(s->flat + s->b_lo[b], s->b_hi[b] - s->b_lo[b], "the gradient all-reduce");
      for (size_t i = s->b_lo[b]; st == LDMC_OK && i < s->b_hi[b]; i++) s->flat[i] *= scale;
      s->allreduce_s += now_s() - t0;
    }
    pthread_mutex_lock(&s->mu);
    if (st != LDMC_OK && s->comm_st == LDMC_OK) {
      s->comm_st = st;
      strncpy(s->comm_err, ldmc_last_error(), sizeof s->comm_err - 1);
    }
    s->n_done++;
    pthread_cond_broadcast(&s->cv_done);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* Offsets and buckets for outputs in `order`. */
static void layout(ldmc_grad_sync *s, const int32_t *order) {
  size_t at = 0, lo = 0;
  s->n_buckets = 0;
  for (int32_t i = 0; i < s->n_out; i++) {
    int32_t o = order[i];
    s->off[o] = at;
    s->bucket[o] = s->n_buckets;
    at += s->numel[o];
    if ((at - lo) * 4 >= s->bucket_bytes || i == s->n_out - 1) {
      s->b_lo[s->n_buckets] = lo, s->b_hi[s->n_buckets] = at;
      s->n_buckets++;
      lo = at;
    }
  }
  for (int32_t b = 0; b < s->n_buckets; b++) s->b_outputs[b] = 0;
  for (int32_t o = 0; o < s->n_out; o++) s->b_outputs[s->bucket[o]]++;
}

void ldmc_grad_sync_free(ldmc_grad_sync *s) {
  if (!s) return;
  if (s->thread_up) {
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_broadcast(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
  }
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv_work);
  pthread_cond_destroy(&s->cv_done);
  if (s->hooked_exe) ldmc_executable_set_output_hook(s->hooked_exe, NULL);
  for (int32_t o = 0; s->outs && o < s->n_out; o++) ldmc_tensor_release(&s->outs[o]);
  free(s->outs);
  free(s->numel), free(s->off), free(s->bucket), free(s->flat);
  free(s->b_lo), free(s->b_hi), free(s->b_outputs), free(s->b_left);
  free(s->seen), free(s->fed), free(s->queue);
  free(s);
}

ldmc_status ldmc_grad_sync_new(const ldmc_graph *g, size_t bucket_bytes, ldmc_grad_sync **out) {
  *out = NULL;
  int32_t n = g->n_outputs;
  if (n < 1) return ldmc_error(LDMC_ERR_INVALID, "gradient all-reduce: graph '%s' has no outputs", g->name);
  for (int32_t o = 0; o < n; o++)
    if (g->nodes[g->outputs[o]].dtype != LDMC_F32)
      return ldmc_error(LDMC_ERR_UNSUPPORTED, "gradient all-reduce: output '%s' is %s; only f32 is all-reduced",
                        g->output_names[o], ldmc_dtype_name(g->nodes[g->outputs[o]].dtype));
  ldmc_grad_sync *s = calloc(1, sizeof *s);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "gradient all-reduce: out of memory");
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv_work, NULL);
  pthread_cond_init(&s->cv_done, NULL);
  s->g = g, s->n_out = n, s->bucket_bytes = bucket_bytes ? bucket_bytes : 1;
  size_t un = (size_t)n;
  s->numel = malloc(un * sizeof *s->numel), s->off = malloc(un * sizeof *s->off);
  s->bucket = malloc(un * sizeof *s->bucket), s->b_lo = malloc(un * sizeof *s->b_lo);
  s->b_hi = malloc(un * sizeof *s->b_hi), s->b_outputs = malloc(un * sizeof *s->b_outputs);
  s->b_left = malloc(un * sizeof *s->b_left), s->seen = malloc(un * sizeof *s->seen);
  s->fed = malloc(un * sizeof *s->fed), s->queue = malloc(un * sizeof *s->queue);
  s->outs = calloc(un, sizeof *s->outs);
  int32_t *order = malloc(un * sizeof *order);
  bool ok = s->numel && s->off && s->bucket && s->b_lo && s->b_hi && s->b_outputs && s->b_left && s->seen && s->fed &&
            s->queue && s->outs && order;
  for (int32_t o = 0; ok && o < n; o++) {
    int64_t ne = 0;
    ok = ldmc_shape_numel(&g->nodes[g->outputs[o]].shape, 4, &ne) == LDMC_OK;
    s->numel[o] = (size_t)ne;
    s->total += s->numel[o];
    order[o] = n - 1 - o; /* until the first step says otherwise: the backward's rough order */
  }
  if (ok) s->flat = aligned_alloc(64, ((s->total ? s->total : 1) * 4 + 63) & ~(size_t)63);
  if (!ok || !s->flat) {
    free(order);
    ldmc_grad_sync_free(s);
    return ldmc_error(LDMC_ERR_NOMEM, "gradient all-reduce: out of memory");
  }
  layout(s, order);
  free(order);
  if (ldmc_dist_active()) {
    if (pthread_create(&s->thread, NULL, comm_main, s) != 0) {
      ldmc_grad_sync_free(s);
      return ldmc_error(LDMC_ERR_IO, "gradient all-reduce: cannot start the communication thread");
    }
    s->thread_up = true;
  }
  *out = s;
  return LDMC_OK;
}

/* Copies output o in; submits its bucket when that completes it. */
static void feed(ldmc_grad_sync *s, int32_t o, const void *data) {
  if (s->fed[o]) return;
  s->fed[o] = true;
  if (s->steps == 0) s->seen[s->n_seen++] = o;
  if (data) memcpy(s->flat + s->off[o], data, s->numel[o] * 4);
  else memset(s->flat + s->off[o], 0, s->numel[o] * 4);
  int32_t b = s->bucket[o];
  if (--s->b_left[b] == 0 && s->thread_up) {
    pthread_mutex_lock(&s->mu);
    s->queue[s->q_tail++] = b;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
  }
}

static void on_ready(void *ctx, int32_t o, const void *data) { feed(ctx, o, data); }

ldmc_status ldmc_grad_sync_run(ldmc_grad_sync *s, ldmc_executable *e, const ldmc_tensor *inputs, int n_inputs) {
  if (!s->hooked) {
    ldmc_output_hook h = {.ready = on_ready, .ctx = s};
    ldmc_status hs = ldmc_executable_set_output_hook(e, &h);
    if (hs == LDMC_OK) s->overlapped = true, s->hooked_exe = e;
    else if (hs != LDMC_ERR_UNSUPPORTED) return hs;
    s->hooked = true;
  }
  if (s->steps == 1 && !s->relaid && ldmc_dist_active()) { /* buckets in the order rank 0 saw the outputs complete */
    LDMC_TRY(ldmc_dist_bcast(s->seen, (size_t)s->n_out * sizeof *s->seen, "the bucket layout"));
    layout(s, s->seen);
    s->relaid = true;
  }
  for (int32_t o = 0; o < s->n_out; o++) s->fed[o] = false;
  for (int32_t b = 0; b < s->n_buckets; b++) s->b_left[b] = s->b_outputs[b];
  s->q_head = s->q_tail = s->n_done = 0;
  if (s->steps == 0) s->n_seen = 0;
  ldmc_status st = ldmc_executable_run(e, inputs, n_inputs, s->outs, s->n_out);
  double t0 = now_s();
  for (int32_t o = 0; st == LDMC_OK && o < s->n_out; o++) feed(s, o, s->outs[o].data); /* those no hook reported */
  if (s->thread_up) { /* every bucket was submitted (a failed run: wait for what was) */
    pthread_mutex_lock(&s->mu);
    while (s->n_done < s->q_tail) pthread_cond_wait(&s->cv_done, &s->mu);
    ldmc_status cs = s->comm_st;
    if (cs != LDMC_OK) ldmc_error(cs, "%s", s->comm_err);
    pthread_mutex_unlock(&s->mu);
    if (st == LDMC_OK) st = cs;
  }
  s->wait_s += now_s() - t0;
  if (st != LDMC_OK) return st;
  s->steps++;
  return LDMC_OK;
}

float *ldmc_grad_sync_output(ldmc_grad_sync *s, int32_t o) {
  if (!ldmc_dist_active()) return s->outs[o].data;
  return s->flat + s->off[o];
}

void ldmc_grad_sync_get_stats(const ldmc_grad_sync *s, ldmc_grad_sync_stats *out) {
  *out = (ldmc_grad_sync_stats){.steps = s->steps, .buckets = s->n_buckets,
                                .bytes_per_step = ldmc_dist_active() ? (int64_t)s->total * 4 : 0,
                                .allreduce_s = s->allreduce_s, .wait_s = s->wait_s, .overlapped = s->overlapped};
}
