/* The study's JSON configuration (docs/study.md, "Configuration"), read with
 * jansson over the defaults. Every key is checked: an unknown one is an
 * error, so a typo never silently leaves a default in place. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/eval.h"
#include "models/ldm_model.h"
#include "tools/study.h"

void study_config_default(study_config *c) {
  memset(c, 0, sizeof *c);
  /* the repository's default model (its autoencoder) and classifier, wherever ldmc runs from */
  snprintf(c->vae, sizeof c->vae, "%s", ldmc_default_model_path());
  snprintf(c->classifier, sizeof c->classifier, "%s", ldmc_default_classifier_path());
  static const int w[] = {16, 24, 32, 48, 64};
  c->n_widths = 5;
  memcpy(c->widths, w, sizeof w);
  c->groups = 8, c->text_width = 64, c->text_layers = 2, c->text_heads = 4, c->tokens = 4;
  c->train_steps = 1500, c->train_batch = 32, c->warmup = 100, c->ckpt_every = 250;
  c->lr = 5e-4, c->ema = 0.998, c->seed = 0;
  c->n_sweeps = 3;
  c->sweeps[0] = (study_sweep){LDMC_SAMPLER_DDIM, 4, {4, 8, 16, 32}};
  c->sweeps[1] = (study_sweep){LDMC_SAMPLER_DDPM, 4, {4, 8, 16, 32}};
  c->sweeps[2] = (study_sweep){LDMC_SAMPLER_DPMPP_2M, 3, {4, 8, 16}};
  static const double r[] = {1.5, 3, 5, 8};
  c->n_rates = 4;
  memcpy(c->rates, r, sizeof r);
  c->samples = 200, c->sample_batch = 50;
  c->ckpt_sweep = (study_sweep){LDMC_SAMPLER_DDIM, 1, {16}};
  c->ckpt_rate = 3;
  c->distill = true, c->distill_steps = 300, c->distill_batch = 32;
  c->n_lcm_steps = 3, c->lcm_steps[0] = 2, c->lcm_steps[1] = 4, c->lcm_steps[2] = 8;
  c->superres = false, c->superres_factor = 4, c->superres_steps = 400;
  c->superres_sweep = (study_sweep){LDMC_SAMPLER_DDIM, 5, {4, 8, 16, 32, 50}};
  c->threads = 2;
  c->distill_widths = c->superres_widths = ~0u;
}


typedef struct reader {
  const char *file;
  char *err;
  size_t errlen;
  int bad;
} reader;

static int fail(reader *r, const char *key, const char *msg) {
  if (!r->bad) snprintf(r->err, r->errlen, "%s: \"%s\": %s", r->file, key, msg);
  r->bad = 1;
  return 1;
}

/* every key of o must be one of names */
static void check_keys(reader *r, json_t *o, const char *where, const char *const *names) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    bool known = false;
    for (int i = 0; names[i]; i++) known |= !strcmp(k, names[i]);
    if (!known && !r->bad) {
      char msg[256] = "", list[200] = "";
      for (int i = 0; names[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
      snprintf(msg, sizeof msg, "unknown key in %s (known: %s)", where, list);
      fail(r, k, msg);
    }
  }
}

static void get_int(reader *r, json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out) {
  json_t *v = json_object_get(o, key);
  if (!v || r->bad) return;
  if (!json_is_integer(v)) {
    fail(r, key, "expected an integer");
    return;
  }
  int64_t x = json_integer_value(v);
  if (x < lo || x > hi) {
    char msg[96];
    snprintf(msg, sizeof msg, "%lld is outside [%lld, %lld]", (long long)x, (long long)lo, (long long)hi);
    fail(r, key, msg);
    return;
  }
  *out = x;
}

static void get_i32(reader *r, json_t *o, const char *key, int lo, int hi, int *out) {
  int64_t x = *out;
  get_int(r, o, key, lo, hi, &x);
  *out = (int)x;
}

static void get_real(reader *r, json_t *o, const char *key, double lo, double hi, double *out) {
  json_t *v = json_object_get(o, key);
  if (!v || r->bad) return;
  if (!json_is_number(v)) {
    fail(r, key, "expected a number");
    return;
  }
  double x = json_number_value(v);
  if (!(x >= lo && x <= hi)) {
    char msg[96];
    snprintf(msg, sizeof msg, "%g is outside [%g, %g]", x, lo, hi);
    fail(r, key, msg);
    return;
  }
  *out = x;
}

static void get_str(reader *r, json_t *o, const char *key, char *out, size_t cap) {
  json_t *v = json_object_get(o, key);
  if (!v || r->bad) return;
  if (!json_is_string(v) || !json_string_value(v)[0] || strlen(json_string_value(v)) >= cap) {
    fail(r, key, "expected a non-empty path");
    return;
  }
  snprintf(out, cap, "%s", json_string_value(v));
}

/* an array of 1..max integers in [lo, hi], ascending */
static void get_int_list(reader *r, json_t *o, const char *key, int lo, int hi, int max, int *out, int *n) {
  json_t *v = json_object_get(o, key);
  if (!v || r->bad) return;
  if (!json_is_array(v) || json_array_size(v) < 1 || (int)json_array_size(v) > max) {
    char msg[96];
    snprintf(msg, sizeof msg, "expected an array of 1 to %d integers", max);
    fail(r, key, msg);
    return;
  }
  for (size_t i = 0; i < json_array_size(v); i++) {
    json_t *e = json_array_get(v, i);
    if (!json_is_integer(e) || json_integer_value(e) < lo || json_integer_value(e) > hi ||
        (i > 0 && json_integer_value(e) <= out[i - 1])) {
      char msg[128];
      snprintf(msg, sizeof msg, "element %zu: expected ascending integers in [%d, %d]", i, lo, hi);
      fail(r, key, msg);
      return;
    }
    out[i] = (int)json_integer_value(e);
  }
  *n = (int)json_array_size(v);
}

static void get_sweep(reader *r, json_t *o, const char *name_key, const char *steps_key, int max_steps,
                      study_sweep *s) {
  json_t *v = json_object_get(o, name_key);
  if (v && !r->bad) {
    if (!json_is_string(v) || ldmc_sampler_parse(json_string_value(v), &s->kind) != LDMC_OK ||
        s->kind == LDMC_SAMPLER_LCM)
      fail(r, name_key, "expected ddim, ddpm or dpmpp2m");
  }
  get_int_list(r, o, steps_key, 1, max_steps, STUDY_MAX_STEPS, s->steps, &s->n_steps);
}

/* "widths": a subset of the study's widths, as a bit mask over c->widths */
static void get_subset(reader *r, json_t *o, const study_config *c, unsigned *mask) {
  int w[STUDY_MAX_WIDTHS], n = 0;
  if (!json_object_get(o, "widths") || r->bad) return;
  get_int_list(r, o, "widths", 8, 4096, STUDY_MAX_WIDTHS, w, &n);
  *mask = 0;
  for (int i = 0; i < n && !r->bad; i++) {
    int k = 0;
    while (k < c->n_widths && c->widths[k] != w[i]) k++;
    if (k == c->n_widths) fail(r, "widths", "a width that is not one of the study's widths");
    else *mask |= 1u << k;
  }
}

static void read_sample(reader *r, json_t *o, study_config *c) {
  static const char *const keys[] = {"samplers", "guidance", "samples", "batch", NULL};
  check_keys(r, o, "\"sample\"", keys);
  json_t *sv = json_object_get(o, "samplers");
  if (sv && !r->bad) {
    if (!json_is_array(sv) || json_array_size(sv) < 1 || json_array_size(sv) > STUDY_MAX_SAMPLERS) {
      fail(r, "samplers", "expected an array of 1 to 4 {\"sampler\": NAME, \"steps\": [N, ...]}");
      return;
    }
    c->n_sweeps = (int)json_array_size(sv);
    for (int i = 0; i < c->n_sweeps && !r->bad; i++) {
      json_t *e = json_array_get(sv, (size_t)i);
      static const char *const sk[] = {"sampler", "steps", NULL};
      if (!json_is_object(e) || !json_object_get(e, "sampler") || !json_object_get(e, "steps")) {
        fail(r, "samplers", "each element is {\"sampler\": NAME, \"steps\": [N, ...]}");
        return;
      }
      check_keys(r, e, "a \"samplers\" element", sk);
      get_sweep(r, e, "sampler", "steps", 1000, &c->sweeps[i]);
      /* as the published study: DPM-Solver++ at most 20 steps (it has converged well before) */
      if (!r->bad && c->sweeps[i].kind == LDMC_SAMPLER_DPMPP_2M && c->sweeps[i].steps[c->sweeps[i].n_steps - 1] > 20)
        fail(r, "samplers", "dpmpp2m runs at most 20 steps");
      for (int j = 0; j < i && !r->bad; j++)
        if (c->sweeps[j].kind == c->sweeps[i].kind) fail(r, "samplers", "a sampler is listed twice");
    }
  }
  json_t *gv = json_object_get(o, "guidance");
  if (gv && !r->bad) {
    if (!json_is_array(gv) || json_array_size(gv) < 1 || json_array_size(gv) > STUDY_MAX_RATES) {
      fail(r, "guidance", "expected an array of 1 to 16 rates");
      return;
    }
    c->n_rates = (int)json_array_size(gv);
    for (int i = 0; i < c->n_rates; i++) {
      json_t *e = json_array_get(gv, (size_t)i);
      double w = json_is_number(e) ? json_number_value(e) : NAN;
      if (!(w >= 1 && w <= 30) || (i > 0 && w <= c->rates[i - 1])) {
        fail(r, "guidance", "expected ascending rates in [1, 30]");
        return;
      }
      c->rates[i] = w;
    }
  }
  get_i32(r, o, "samples", 20, 100000, &c->samples);
  get_i32(r, o, "batch", 1, 4096, &c->sample_batch);
}

int study_config_load(const char *path, study_config *c, char *err, size_t errlen) {
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    return 1;
  }
  reader r = {path, err, errlen, 0};
  if (!json_is_object(root)) {
    fail(&r, "(top level)", "expected a JSON object");
    json_decref(root);
    return 1;
  }
  static const char *const top[] = {"vae", "classifier", "widths", "unet", "train", "sample", "checkpoints",
                                    "distill", "superres", "threads", "limit", NULL};
  check_keys(&r, root, "the top level", top);
  get_str(&r, root, "vae", c->vae, sizeof c->vae);
  get_str(&r, root, "classifier", c->classifier, sizeof c->classifier);
  get_int_list(&r, root, "widths", 8, 4096, STUDY_MAX_WIDTHS, c->widths, &c->n_widths);
  get_i32(&r, root, "threads", 1, 1024, &c->threads);
  get_int(&r, root, "limit", 0, 1000000, &c->limit);
  json_t *o;
  if ((o = json_object_get(root, "unet")) && !r.bad) {
    static const char *const k[] = {"groups", "text_width", "text_layers", "text_heads", "tokens", NULL};
    if (!json_is_object(o)) fail(&r, "unet", "expected an object");
    check_keys(&r, o, "\"unet\"", k);
    get_i32(&r, o, "groups", 1, 1024, &c->groups);
    get_i32(&r, o, "text_width", 4, 4096, &c->text_width);
    get_i32(&r, o, "text_layers", 1, 64, &c->text_layers);
    get_i32(&r, o, "text_heads", 1, 64, &c->text_heads);
    get_i32(&r, o, "tokens", 1, 77, &c->tokens);
  }
  if ((o = json_object_get(root, "train")) && !r.bad) {
    static const char *const k[] = {"steps", "gflops", "batch", "lr", "warmup", "ema", "seed", "ckpt_every", NULL};
    if (!json_is_object(o)) fail(&r, "train", "expected an object");
    check_keys(&r, o, "\"train\"", k);
    get_int(&r, o, "steps", 1, 100000000, &c->train_steps);
    get_real(&r, o, "gflops", 0, 1e12, &c->train_gflops);
    get_i32(&r, o, "batch", 1, 4096, &c->train_batch);
    get_real(&r, o, "lr", 1e-8, 1, &c->lr);
    get_i32(&r, o, "warmup", 0, 1000000, &c->warmup);
    get_real(&r, o, "ema", 0, 0.999999, &c->ema);
    get_int(&r, o, "seed", 0, (int64_t)1 << 40, &c->seed);
    get_i32(&r, o, "ckpt_every", 1, 1000000, &c->ckpt_every);
  }
  if ((o = json_object_get(root, "sample")) && !r.bad) {
    if (!json_is_object(o)) fail(&r, "sample", "expected an object");
    else read_sample(&r, o, c);
  }
  if ((o = json_object_get(root, "checkpoints")) && !r.bad) {
    static const char *const k[] = {"sampler", "steps", "guidance", "weights", NULL};
    if (!json_is_object(o)) fail(&r, "checkpoints", "expected an object");
    check_keys(&r, o, "\"checkpoints\"", k);
    int64_t st = c->ckpt_sweep.steps[0];
    get_sweep(&r, o, "sampler", "__none", 1, &c->ckpt_sweep);
    get_int(&r, o, "steps", 1, 1000, &st);
    c->ckpt_sweep.steps[0] = (int)st, c->ckpt_sweep.n_steps = 1;
    get_real(&r, o, "guidance", 1, 30, &c->ckpt_rate);
    json_t *w = json_object_get(o, "weights");
    if (w && !r.bad) {
      if (json_is_string(w) && !strcmp(json_string_value(w), "ema")) c->ckpt_ema = true;
      else if (json_is_string(w) && !strcmp(json_string_value(w), "params")) c->ckpt_ema = false;
      else fail(&r, "weights", "expected \"params\" (the trained parameters) or \"ema\"");
    }
  }
  if ((o = json_object_get(root, "distill")) && !r.bad) {
    static const char *const k[] = {"steps", "batch", "lcm_steps", "widths", NULL};
    if (json_is_false(o)) c->distill = false;
    else if (!json_is_object(o)) fail(&r, "distill", "expected an object or false");
    else {
      c->distill = true;
      check_keys(&r, o, "\"distill\"", k);
      get_int(&r, o, "steps", 1, 100000000, &c->distill_steps);
      get_i32(&r, o, "batch", 1, 4096, &c->distill_batch);
      get_int_list(&r, o, "lcm_steps", 2, 8, STUDY_MAX_STEPS, c->lcm_steps, &c->n_lcm_steps);
      get_subset(&r, o, c, &c->distill_widths);
    }
  }
  if ((o = json_object_get(root, "superres")) && !r.bad) {
    static const char *const k[] = {"factor", "steps", "sampler", "sample_steps", "widths", NULL};
    if (json_is_false(o)) c->superres = false;
    else if (!json_is_object(o)) fail(&r, "superres", "expected an object or false");
    else {
      c->superres = true;
      check_keys(&r, o, "\"superres\"", k);
      get_i32(&r, o, "factor", 2, 8, &c->superres_factor);
      get_int(&r, o, "steps", 1, 100000000, &c->superres_steps);
      get_sweep(&r, o, "sampler", "sample_steps", 1000, &c->superres_sweep);
      get_subset(&r, o, c, &c->superres_widths);
    }
  }
  for (int i = 0; i < c->n_widths && !r.bad; i++)
    if (c->widths[i] % c->groups) {
      char msg[128];
      snprintf(msg, sizeof msg, "width %d is not divisible by unet.groups = %d", c->widths[i], c->groups);
      fail(&r, "widths", msg);
    }
  json_decref(root);
  return r.bad;
}

static json_t *int_array(const int *v, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
  return a;
}

static json_t *subset_array(const study_config *c, unsigned mask) {
  json_t *a = json_array();
  for (int i = 0; i < c->n_widths; i++)
    if (mask & (1u << i)) json_array_append_new(a, json_integer(c->widths[i]));
  return a;
}

char *study_config_dump(const study_config *c) {
  json_t *o = json_object(), *u = json_object(), *t = json_object(), *s = json_object(), *sw = json_array(),
         *g = json_array(), *ck = json_object();
  json_object_set_new(o, "vae", json_string(c->vae));
  json_object_set_new(o, "classifier", json_string(c->classifier));
  json_object_set_new(o, "widths", int_array(c->widths, c->n_widths));
  json_object_set_new(u, "groups", json_integer(c->groups));
  json_object_set_new(u, "text_width", json_integer(c->text_width));
  json_object_set_new(u, "text_layers", json_integer(c->text_layers));
  json_object_set_new(u, "text_heads", json_integer(c->text_heads));
  json_object_set_new(u, "tokens", json_integer(c->tokens));
  json_object_set_new(o, "unet", u);
  json_object_set_new(t, "steps", json_integer(c->train_steps));
  json_object_set_new(t, "gflops", json_real(c->train_gflops));
  json_object_set_new(t, "batch", json_integer(c->train_batch));
  json_object_set_new(t, "lr", json_real(c->lr));
  json_object_set_new(t, "warmup", json_integer(c->warmup));
  json_object_set_new(t, "ema", json_real(c->ema));
  json_object_set_new(t, "seed", json_integer(c->seed));
  json_object_set_new(t, "ckpt_every", json_integer(c->ckpt_every));
  json_object_set_new(o, "train", t);
  for (int i = 0; i < c->n_sweeps; i++) {
    json_t *e = json_object();
    json_object_set_new(e, "sampler", json_string(ldmc_sampler_name(c->sweeps[i].kind)));
    json_object_set_new(e, "steps", int_array(c->sweeps[i].steps, c->sweeps[i].n_steps));
    json_array_append_new(sw, e);
  }
  for (int i = 0; i < c->n_rates; i++) json_array_append_new(g, json_real(c->rates[i]));
  json_object_set_new(s, "samplers", sw);
  json_object_set_new(s, "guidance", g);
  json_object_set_new(s, "samples", json_integer(c->samples));
  json_object_set_new(s, "batch", json_integer(c->sample_batch));
  json_object_set_new(o, "sample", s);
  json_object_set_new(ck, "sampler", json_string(ldmc_sampler_name(c->ckpt_sweep.kind)));
  json_object_set_new(ck, "steps", json_integer(c->ckpt_sweep.steps[0]));
  json_object_set_new(ck, "guidance", json_real(c->ckpt_rate));
  json_object_set_new(ck, "weights", json_string(c->ckpt_ema ? "ema" : "params"));
  json_object_set_new(o, "checkpoints", ck);
  if (c->distill) {
    json_t *d = json_object();
    json_object_set_new(d, "steps", json_integer(c->distill_steps));
    json_object_set_new(d, "batch", json_integer(c->distill_batch));
    json_object_set_new(d, "lcm_steps", int_array(c->lcm_steps, c->n_lcm_steps));
    json_object_set_new(d, "widths", subset_array(c, c->distill_widths));
    json_object_set_new(o, "distill", d);
  } else json_object_set_new(o, "distill", json_false());
  if (c->superres) {
    json_t *d = json_object();
    json_object_set_new(d, "factor", json_integer(c->superres_factor));
    json_object_set_new(d, "steps", json_integer(c->superres_steps));
    json_object_set_new(d, "sampler", json_string(ldmc_sampler_name(c->superres_sweep.kind)));
    json_object_set_new(d, "sample_steps", int_array(c->superres_sweep.steps, c->superres_sweep.n_steps));
    json_object_set_new(d, "widths", subset_array(c, c->superres_widths));
    json_object_set_new(o, "superres", d);
  } else json_object_set_new(o, "superres", json_false());
  json_object_set_new(o, "threads", json_integer(c->threads));
  if (c->limit > 0) json_object_set_new(o, "limit", json_integer(c->limit));
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(o);
  return text;
}
