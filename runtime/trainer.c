/* The training loop (trainer.h). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/dist.h"
#include "runtime/trainer.h"

double ldmc_lr_at(const ldmc_lr_schedule *s, int64_t step) {
  if (s->warmup > 0 && step <= s->warmup) return s->base * (double)step / (double)s->warmup;
  if (s->decay == LDMC_LR_CONSTANT || s->total <= s->warmup) return s->base;
  double f = (double)(step - s->warmup) / (double)(s->total - s->warmup);
  if (f > 1) f = 1;
  double lo = s->base * s->min_frac;
  return lo + (s->base - lo) * 0.5 * (1 + cos(M_PI * f));
}

ldmc_status ldmc_lr_decay_parse(const char *s, ldmc_lr_decay *out) {
  if (s && !strcmp(s, "constant")) *out = LDMC_LR_CONSTANT;
  else if (s && !strcmp(s, "cosine")) *out = LDMC_LR_COSINE;
  else return ldmc_error(LDMC_ERR_INVALID, "unknown learning-rate decay '%s' (constant, cosine)", s ? s : "");
  return LDMC_OK;
}

void ldmc_train_result_free(ldmc_train_result *r) {
  if (!r) return;
  free(r->last_checkpoint);
  r->last_checkpoint = NULL;
}

/* ---- Ctrl-C: finish the step, checkpoint, leave ---- */
static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_duration(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e7) {
    snprintf(buf, n, "?");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
  else snprintf(buf, n, "%lds", t);
}

typedef struct loop_ctx {
  ldmc_executable *e;
  const ldmc_graph *g;
  const int32_t *pairs;
  int32_t n_data, lr_in, step_in;
  ldmc_tensor *inputs;
  const ldmc_train_source *src;
  const ldmc_train_loop_opts *o;
  FILE *csv;
} loop_ctx;

/* FNV-1a over every state tensor's bytes. */
static uint64_t state_hash(const loop_ctx *c) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t k = 0; k < c->g->n_outputs; k++) {
    if (c->pairs[k] < 0) continue;
    const ldmc_tensor *t = &c->inputs[c->pairs[k]];
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->nbytes; i++) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

/* Every rank's state must be rank 0's: the all-reduce gives each the same
 * averaged gradients, so a difference is a bug or a broken network. */
static ldmc_status check_ranks_agree(const loop_ctx *c, int64_t step) {
  uint64_t h = state_hash(c);
  int64_t v[2] = {(int64_t)(h >> 1), (int64_t)(~h >> 1)};
  LDMC_TRY(ldmc_dist_allreduce_max_i64(v, 2, "the state comparison"));
  if (v[0] != (int64_t)(h >> 1) || v[1] != (int64_t)(~h >> 1))
    return ldmc_error(LDMC_ERR_INTERNAL, "step %lld: rank %d's training state differs from another rank's", (long long)step,
                      ldmc_dist_rank());
  return LDMC_OK;
}

/* Rank 0's state, step and data order on every rank. */
static ldmc_status sync_from_rank0(loop_ctx *c, int64_t *done) {
  LDMC_TRY(ldmc_dist_bcast(done, sizeof *done, "the resumed step"));
  for (int32_t k = 0; k < c->g->n_outputs; k++) {
    if (c->pairs[k] < 0) continue;
    ldmc_tensor *t = &c->inputs[c->pairs[k]];
    LDMC_TRY(ldmc_dist_bcast(t->data, t->nbytes, "the training state"));
  }
  if (c->src->get_state && c->src->set_state) {
    int64_t v[LDMC_CHECKPOINT_MAX_DATA_STATE + 1] = {0};
    v[0] = c->src->get_state(c->src->ctx, v + 1);
    LDMC_TRY(ldmc_dist_bcast(v, sizeof v, "the data order"));
    if (ldmc_dist_rank() != 0) LDMC_TRY(c->src->set_state(c->src->ctx, v + 1, (int)v[0]));
  }
  return LDMC_OK;
}

static ldmc_status save(loop_ctx *c, int64_t step, ldmc_train_result *r) {
  if (ldmc_dist_active()) {
    LDMC_TRY(check_ranks_agree(c, step));
    if (ldmc_dist_rank() != 0) return LDMC_OK;
  }
  ldmc_checkpoint *ck = ldmc_checkpoint_new();
  if (!ck) return ldmc_error(LDMC_ERR_NOMEM, "checkpoint: out of memory");
  ldmc_status st = LDMC_OK;
  for (int32_t i = 0; i < c->o->n_config && st == LDMC_OK; i++)
    st = ldmc_checkpoint_set_config(ck, c->o->config_keys[i], c->o->config_values[i]);
  for (int32_t k = 0; k < c->g->n_outputs && st == LDMC_OK; k++) {
    if (c->pairs[k] < 0) continue;
    const ldmc_tensor *t = &c->inputs[c->pairs[k]];
    st = ldmc_checkpoint_add_tensor(ck, t->name, ldmc_checkpoint_role_of_name(t->name), t->dtype, t->shape.rank,
                                    t->shape.dims, t->data);
  }
  if (st == LDMC_OK) st = ldmc_checkpoint_set_step(ck, step);
  ldmc_checkpoint_set_rng(ck, c->o->seed, step);
  if (st == LDMC_OK && c->src->get_state) {
    int64_t v[LDMC_CHECKPOINT_MAX_DATA_STATE];
    int n = c->src->get_state(c->src->ctx, v);
    st = ldmc_checkpoint_set_data_state(ck, v, n);
  }
  char *path = NULL;
  if (st == LDMC_OK) st = ldmc_checkpoint_save_rotating(c->o->out_dir, ck, c->o->keep, &path);
  ldmc_checkpoint_free(ck);
  if (st == LDMC_OK) {
    free(r->last_checkpoint);
    r->last_checkpoint = path;
  } else {
    free(path);
  }
  return st;
}

/* The newest good checkpoint into the state inputs; *step its step (0: none). */
static ldmc_status restore(loop_ctx *c, int64_t *step) {
  ldmc_checkpoint *ck = NULL;
  char *path = NULL;
  *step = 0;
  LDMC_TRY(ldmc_checkpoint_load_latest(c->o->out_dir, &ck, &path, NULL, NULL));
  if (!ck) return LDMC_OK;
  ldmc_status st = LDMC_OK;
  for (int32_t k = 0; k < c->g->n_outputs && st == LDMC_OK; k++) {
    if (c->pairs[k] < 0) continue;
    ldmc_tensor *t = &c->inputs[c->pairs[k]];
    const ldmc_tensor *src = NULL;
    st = ldmc_checkpoint_get(ck, t->name, ldmc_checkpoint_role_of_name(t->name), t->dtype, &t->shape, &src);
    if (st == LDMC_OK) memcpy(t->data, src->data, t->nbytes);
  }
  const char *model = c->o->n_config > 0 ? ldmc_checkpoint_config(ck, c->o->config_keys[0]) : NULL;
  if (st == LDMC_OK && c->o->n_config > 0 && (!model || strcmp(model, c->o->config_values[0]) != 0))
    st = ldmc_error(LDMC_ERR_INVALID, "%s: its %s is '%s', this run's '%s'", path, c->o->config_keys[0],
                    model ? model : "(none)", c->o->config_values[0]);
  if (st == LDMC_OK && c->src->set_state) {
    const int64_t *v = NULL;
    int n = ldmc_checkpoint_data_state(ck, &v);
    st = c->src->set_state(c->src->ctx, v, n);
  }
  if (st == LDMC_OK) *step = ldmc_checkpoint_step(ck);
  else ldmc_error_prefix("resuming from %s: ", path);
  ldmc_checkpoint_free(ck);
  free(path);
  return st;
}

/* log.csv: kept up to the resumed step, then appended */
static ldmc_status open_csv(loop_ctx *c, int64_t resumed) {
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/log.csv", c->o->out_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *old = resumed > 0 ? fopen(path, "r") : NULL;
  FILE *f = fopen(tmp, "w");
  if (!f) {
    if (old) fclose(old);
    return ldmc_error(LDMC_ERR_IO, "%s: %s", tmp, strerror(errno));
  }
  fprintf(f, "step,lr,loss,grad_norm,images_per_s,val_loss,val_%s\n", c->src->metric_name ? c->src->metric_name : "metric");
  if (old) {
    char line[512];
    while (fgets(line, sizeof line, old)) {
      long long s;
      if (sscanf(line, "%lld,", &s) == 1 && s <= resumed) fputs(line, f);
    }
    fclose(old);
  }
  if (fflush(f) != 0 || rename(tmp, path) != 0) {
    fclose(f);
    return ldmc_error(LDMC_ERR_IO, "%s: %s", path, strerror(errno));
  }
  c->csv = f;
  return LDMC_OK;
}

static void progress_bar(int64_t step, int64_t total, double loss, double ips, double eta) {
  char e[32];
  fmt_duration(eta, e, sizeof e);
  int width = 30, done = total > 0 ? (int)((double)width * (double)step / (double)total) : width;
  char bar[64];
  for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
  bar[width] = 0;
  fprintf(stderr, "\r[%s] %lld/%lld loss %.5f %.1f img/s ETA %s   ", bar, (long long)step, (long long)total, loss, ips,
          e);
  fflush(stderr);
}

ldmc_status ldmc_train_loop(ldmc_executable *e, const ldmc_graph *g, const int32_t *pairs, int32_t n_data,
                            ldmc_tensor *inputs, const ldmc_train_source *src, const ldmc_train_loop_opts *o,
                            ldmc_train_result *r) {
  memset(r, 0, sizeof *r);
  r->last_loss = r->last_val_loss = r->last_metric = NAN;
  if (o->steps < 1 || o->keep < 1 || o->log_every < 1 || !o->out_dir)
    return ldmc_error(LDMC_ERR_INVALID, "training loop: needs steps >= 1, keep >= 1, log_every >= 1 and a folder");
  if (g->n_outputs < 2 || strcmp(g->output_names[0], "loss") || strcmp(g->output_names[1], "grad_norm"))
    return ldmc_error(LDMC_ERR_INVALID, "training loop: graph '%s' is not a step graph (outputs loss, grad_norm)",
                      g->name ? g->name : "");
  loop_ctx c = {.e = e, .g = g, .pairs = pairs, .n_data = n_data, .inputs = inputs, .src = src, .o = o};
  c.lr_in = n_data, c.step_in = n_data + 1;
  if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST)
    return ldmc_error(LDMC_ERR_IO, "%s: cannot create the output folder: %s", o->out_dir, strerror(errno));
  int64_t done = 0;
  bool rank0 = ldmc_dist_rank() == 0;
  ldmc_status rst = o->resume && rank0 ? restore(&c, &done) : LDMC_OK;
  LDMC_TRY(ldmc_dist_agree(rst, "resuming"));
  if (ldmc_dist_active()) LDMC_TRY(sync_from_rank0(&c, &done));
  if (done >= o->steps) {
    r->first_step = done + 1, r->last_step = done;
    return ldmc_error(LDMC_ERR_INVALID, "%s: already at step %lld of %lld: nothing to resume (raise --steps)",
                      o->out_dir, (long long)done, (long long)o->steps);
  }
  if (rank0) LDMC_TRY(open_csv(&c, done));
  ldmc_lr_schedule lr = o->lr;
  if (lr.total <= 0) lr.total = o->steps;
  bool bar = rank0 && (o->progress > 0 || (o->progress < 0 && isatty(2)));
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  int32_t no = g->n_outputs;
  ldmc_tensor *out = calloc((size_t)no, sizeof *out);
  ldmc_status st = out ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "training loop: out of memory");
  r->first_step = done + 1;
  double t_start = now_s(), t_win = t_start, ips = 0;
  int64_t win_steps = 0;
  for (int64_t step = done + 1; step <= o->steps && st == LDMC_OK; step++) {
    st = src->fill(src->ctx, step, inputs);
    if (st != LDMC_OK) {
      ldmc_error_prefix("step %lld: data: ", (long long)step);
      break;
    }
    double rate = ldmc_lr_at(&lr, step);
    ldmc_tensor_set_elem(&inputs[c.lr_in], 0, rate);
    ldmc_tensor_set_elem(&inputs[c.step_in], 0, (double)step);
    double loss = NAN, gn = NAN;
    if (o->runner) {
      st = o->runner->run(o->runner->ctx, inputs, &loss, &gn);
    } else {
      st = ldmc_executable_run(e, inputs, ldmc_graph_num_params(g), out, no);
      if (st == LDMC_OK) loss = ldmc_tensor_get(&out[0], 0), gn = ldmc_tensor_get(&out[1], 0);
    }
    if (st != LDMC_OK) {
      ldmc_error_prefix("step %lld: ", (long long)step);
      break;
    }
    if (ldmc_dist_active()) { /* a signal on any rank stops every rank after this step */
      int64_t stop = g_stop;
      st = ldmc_dist_allreduce_max_i64(&stop, 1, "the stop flag");
      if (st != LDMC_OK) break;
      g_stop = (sig_atomic_t)stop;
    }
    if (!isfinite(loss)) {
      st = ldmc_error(LDMC_ERR_INVALID, "step %lld: the loss is %g (lr %g, gradient norm %g); the last checkpoint "
                      "is from before it", (long long)step, loss, rate, gn);
      break;
    }
    r->last_loss = loss, r->last_step = step;
    win_steps++;
    double t = now_s();
    if (t > t_win + 1e-9 && (win_steps >= 2 || step == done + 1)) ips = (double)(src->images_per_step * win_steps) / (t - t_win);
    double val = NAN;
    bool final = step == o->steps;
    if (src->validate && ((o->val_every > 0 && step % o->val_every == 0) || final)) { /* every rank: it may shard */
      st = src->validate(src->ctx, inputs, &val);
      if (st != LDMC_OK) {
        ldmc_error_prefix("step %lld: validation: ", (long long)step);
        break;
      }
      r->last_val_loss = val;
      if (src->metric) r->last_metric = *src->metric;
    }
    if (rank0 && (step % o->log_every == 0 || final || !isnan(val))) {
      fprintf(c.csv, "%lld,%.9g,%.9g,%.9g,%.3f,", (long long)step, rate, loss, gn, ips);
      if (!isnan(val)) fprintf(c.csv, "%.9g", val);
      fprintf(c.csv, ",");
      if (!isnan(val) && src->metric) fprintf(c.csv, "%.9g", *src->metric);
      fprintf(c.csv, "\n");
      fflush(c.csv);
      if (!bar || !isnan(val)) {
        char eta[32];
        fmt_duration((double)(o->steps - step) * (t - t_start) / (double)(step - done), eta, sizeof eta);
        if (bar) fprintf(stderr, "\n");
        fprintf(stderr, "step %lld/%lld loss %.6f grad_norm %.4g lr %.3g %.1f img/s ETA %s", (long long)step,
                (long long)o->steps, loss, gn, rate, ips, eta);
        if (!isnan(val)) fprintf(stderr, " val_loss %.6f", val);
        if (!isnan(val) && src->metric) fprintf(stderr, " val_%s %.4f", src->metric_name, *src->metric);
        fprintf(stderr, "\n");
      }
      t_win = t, win_steps = 0;
    }
    if (bar) progress_bar(step, o->steps, loss, ips, (double)(o->steps - step) * (t - t_start) / (double)(step - done));
    bool pause = o->stop_after > 0 && step - done >= o->stop_after && !final;
    bool ckpt = final || g_stop || pause || (o->ckpt_every > 0 && step % o->ckpt_every == 0);
    if (ckpt) st = save(&c, step, r);
    if (pause) {
      r->paused = true;
      break;
    }
    if (g_stop) {
      r->interrupted = true;
      if (bar) fprintf(stderr, "\n");
      if (rank0)
        fprintf(stderr, "interrupted at step %lld: checkpoint %s\n", (long long)step,
                r->last_checkpoint ? r->last_checkpoint : "(not written)");
      break;
    }
  }
  if (bar) fprintf(stderr, "\n");
  double total = now_s() - t_start;
  if (r->last_step >= r->first_step && total > 0)
    r->images_per_s = (double)(src->images_per_step * (r->last_step - r->first_step + 1)) / total;
  for (int32_t k = 0; out && k < no; k++) ldmc_tensor_release(&out[k]);
  free(out);
  if (c.csv) fclose(c.csv);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  return st;
}
