/* The sampler runtime (samplers.h): a step graph compiled once with its
 * latents donated, the inputs bound once, and the loop that sets each step's
 * coefficients and noise keys and runs it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/samplers.h"

struct ldmc_sampler {
  ldmc_sampler_schedule sched;
  ldmc_graph *step, *noise;
  ldmc_executable *exe, *noise_exe;
  ldmc_sampler_inputs in;
  int32_t n_params;
  ldmc_tensor *inputs;  /* one per step parameter: ours owned (the context a view during a run), weights views */
  ldmc_tensor noise_key; /* i64[B], the noise graph's input */
  ldmc_tensor x0_spare;  /* DPM-Solver++: where the step writes x0, then swapped with the x0_prev input */
  int64_t B, Bd;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const ldmc_node *param(const ldmc_graph *g, int32_t i) { return &g->nodes[ldmc_graph_param_node(g, i)]; }

static ldmc_tensor view_of(const ldmc_tensor *t) {
  ldmc_tensor v = *t;
  v.name = NULL;
  v.owns_data = false;
  return v;
}

static bool same_type(const ldmc_tensor *t, const ldmc_node *p) {
  return t->dtype == p->dtype && ldmc_shape_equal(&t->shape, &p->shape) && t->data;
}

static ldmc_status type_error(const char *what, const ldmc_tensor *t, const ldmc_node *p) {
  char want[160], got[160] = "?";
  ldmc_shape_str(&p->shape, want, sizeof want);
  if (t) ldmc_shape_str(&t->shape, got, sizeof got);
  return ldmc_error(LDMC_ERR_INVALID, "sampler: %s '%s' must be %s %s, got %s %s", what, p->attrs.name ? p->attrs.name : "",
                    ldmc_dtype_name(p->dtype), want, t ? ldmc_dtype_name(t->dtype) : "nothing", got);
}

void ldmc_sampler_free(ldmc_sampler *s) {
  if (!s) return;
  ldmc_executable_free(s->exe);
  ldmc_executable_free(s->noise_exe);
  if (s->inputs)
    for (int32_t i = 0; i < s->n_params; i++)
      if (s->inputs[i].owns_data) ldmc_tensor_release(&s->inputs[i]);
  free(s->inputs);
  ldmc_tensor_release(&s->noise_key);
  ldmc_tensor_release(&s->x0_spare);
  ldmc_graph_free(s->step);
  ldmc_graph_free(s->noise);
  ldmc_sampler_schedule_release(&s->sched);
  free(s);
}

static ldmc_status bind_inputs(ldmc_sampler *s, const ldmc_tensor_set *weights) {
  s->n_params = ldmc_graph_num_params(s->step);
  if (!(s->inputs = calloc((size_t)s->n_params, sizeof *s->inputs)))
    return ldmc_error(LDMC_ERR_NOMEM, "sampler: out of memory");
  for (int32_t i = 0; i < s->n_params; i++) {
    const ldmc_node *p = param(s->step, i);
    if (i == s->in.context || i == s->in.cond) continue; /* the caller's, per run */
    if (i < s->in.n_inputs) {
      LDMC_TRY(ldmc_tensor_alloc(&s->inputs[i], NULL, p->dtype, &p->shape));
      continue;
    }
    const ldmc_tensor *w = weights ? ldmc_tensor_set_find(weights, p->attrs.name) : NULL;
    if (!w) return ldmc_error(LDMC_ERR_INVALID, "sampler: no weight '%s' for the denoiser", p->attrs.name);
    if (!same_type(w, p)) return type_error("weight", w, p);
    s->inputs[i] = view_of(w);
  }
  if (s->in.x0_prev >= 0) LDMC_TRY(ldmc_tensor_alloc(&s->x0_spare, "x0", LDMC_F32, &param(s->step, s->in.x0_prev)->shape));
  return ldmc_tensor_alloc(&s->noise_key, NULL, LDMC_I64, &param(s->noise, 0)->shape);
}

ldmc_status ldmc_sampler_new(const ldmc_diffusion_config *dc, const ldmc_sampler_config *sc, bool guidance,
                             const ldmc_graph *denoiser, const ldmc_tensor_set *weights, const ldmc_backend_i *be,
                             const ldmc_compile_opts *co, ldmc_sampler **out) {
  *out = NULL;
  if (!be) return ldmc_error(LDMC_ERR_INVALID, "sampler: no backend");
  ldmc_sampler *s = calloc(1, sizeof *s);
  if (!s) return ldmc_error(LDMC_ERR_NOMEM, "sampler: out of memory");
  ldmc_status st = ldmc_sampler_schedule_build(dc, sc, &s->sched);
  if (st == LDMC_OK) st = ldmc_sampler_step_build(sc, dc->prediction, guidance, denoiser, &s->step);
  if (st == LDMC_OK) st = ldmc_sampler_step_inputs(s->step, &s->in);
  if (st == LDMC_OK) {
    const ldmc_shape *xs = &param(s->step, s->in.latents)->shape;
    s->B = xs->dims[0];
    s->Bd = param(s->step, s->in.context)->shape.dims[0];
    st = ldmc_sampler_noise_build(xs->rank, xs->dims, &s->noise);
  }
  if (st == LDMC_OK) st = bind_inputs(s, weights);
  if (st == LDMC_OK) {
    ldmc_compile_opts o = {0};
    if (co) o = *co;
    int32_t pairs[2] = {s->in.latents, -1}; /* outputs: latents [, x0] */
    o.donate = pairs;
    o.params_are_weights = true;
    o.n_activation_params = s->in.n_inputs;
    st = be->compile(s->step, &o, &s->exe);
    if (st == LDMC_OK) {
      o.donate = NULL;
      o.params_are_weights = false;
      o.n_activation_params = 0;
      st = be->compile(s->noise, &o, &s->noise_exe);
    }
    if (st != LDMC_OK) ldmc_error_prefix("sampler: compiling on %s: ", be->name);
  }
  if (st != LDMC_OK) {
    ldmc_sampler_free(s);
    return st;
  }
  *out = s;
  return LDMC_OK;
}

ldmc_status ldmc_sampler_init_noise(ldmc_sampler *s, uint64_t seed, int64_t first_image) {
  int64_t *k = s->noise_key.data;
  for (int64_t b = 0; b < s->B; b++) k[b] = ldmc_sample_noise_key(seed, first_image + b, 0);
  ldmc_tensor z = {0};
  ldmc_status st = ldmc_executable_run(s->noise_exe, &s->noise_key, 1, &z, 1);
  ldmc_tensor *x = &s->inputs[s->in.latents];
  if (st == LDMC_OK && z.nbytes != x->nbytes) st = ldmc_error(LDMC_ERR_INTERNAL, "sampler: noise of the wrong size");
  if (st == LDMC_OK) memcpy(x->data, z.data, x->nbytes);
  ldmc_tensor_release(&z);
  return st;
}

static void set_scalar(ldmc_sampler *s, int32_t i, double v) {
  if (i >= 0) ldmc_tensor_set_elem(&s->inputs[i], 0, v);
}

ldmc_status ldmc_sample_run(ldmc_sampler *s, const ldmc_sample_run_opts *o) {
  if (!s || !o) return ldmc_error(LDMC_ERR_INVALID, "sampler: nothing to run");
  const ldmc_node *cp = param(s->step, s->in.context), *xp = param(s->step, s->in.latents);
  if (!o->context || !same_type(o->context, cp)) return type_error("context", o->context, cp);
  if (o->x_T && !same_type(o->x_T, xp)) return type_error("initial latents", o->x_T, xp);
  if (s->in.cond >= 0 && (!o->cond || !same_type(o->cond, param(s->step, s->in.cond))))
    return type_error("image condition", o->cond, param(s->step, s->in.cond));
  if (s->in.guidance >= 0 && !isfinite(o->guidance_scale))
    return ldmc_error(LDMC_ERR_INVALID, "sampler: guidance scale %g is not a number", o->guidance_scale);
  if (o->first_image < 0) return ldmc_error(LDMC_ERR_INVALID, "sampler: first image %lld < 0", (long long)o->first_image);
  double t0 = now_s();
  ldmc_tensor *x = &s->inputs[s->in.latents];
  if (o->x_T) memcpy(x->data, o->x_T->data, x->nbytes);
  else LDMC_TRY(ldmc_sampler_init_noise(s, o->seed, o->first_image));
  if (s->in.x0_prev >= 0) memset(s->inputs[s->in.x0_prev].data, 0, s->inputs[s->in.x0_prev].nbytes);
  s->inputs[s->in.context] = view_of(o->context);
  if (s->in.cond >= 0) s->inputs[s->in.cond] = view_of(o->cond);
  set_scalar(s, s->in.guidance, o->guidance_scale);
  ldmc_tensor outs[2] = {{0}, {0}}; /* the donated latents stay empty */
  ldmc_status st = LDMC_OK;
  for (int i = 0; i < s->sched.n_steps && st == LDMC_OK; i++) {
    const ldmc_sampler_step *p = &s->sched.steps[i];
    set_scalar(s, s->in.timestep, (double)p->timestep);
    set_scalar(s, s->in.alpha, p->alpha);
    set_scalar(s, s->in.sigma, p->sigma);
    set_scalar(s, s->in.c_x, p->c_x);
    set_scalar(s, s->in.c_x0, p->c_x0);
    set_scalar(s, s->in.c_eps, p->c_eps);
    set_scalar(s, s->in.c_d, p->c_d);
    set_scalar(s, s->in.c_noise, p->c_noise);
    if (s->in.noise_key >= 0) {
      int64_t *k = s->inputs[s->in.noise_key].data;
      for (int64_t b = 0; b < s->B; b++) k[b] = ldmc_sample_noise_key(o->seed, o->first_image + b, i + 1);
    }
    if (s->in.x0_prev >= 0) outs[1] = s->x0_spare; /* owned and typed: written in place */
    st = ldmc_executable_run(s->exe, s->inputs, s->n_params, outs, s->step->n_outputs);
    if (s->in.x0_prev >= 0) { /* this x0 is the next step's x0_prev; on failure the spare stays the spare */
      if (st == LDMC_OK) {
        s->x0_spare = s->inputs[s->in.x0_prev];
        s->inputs[s->in.x0_prev] = outs[1];
      }
      memset(&outs[1], 0, sizeof outs[1]);
    }
    if (st != LDMC_OK) {
      ldmc_error_prefix("sampler step %d/%d (t = %lld): ", i + 1, s->sched.n_steps, (long long)p->timestep);
      break;
    }
    if (o->progress) {
      ldmc_sample_progress pr = {.step = i + 1, .n_steps = s->sched.n_steps, .timestep = p->timestep,
                                 .elapsed_s = now_s() - t0, .latents = x};
      st = o->progress(o->progress_ctx, &pr);
    }
  }
  for (int k = 0; k < 2; k++) ldmc_tensor_release(&outs[k]);
  memset(&s->inputs[s->in.context], 0, sizeof s->inputs[s->in.context]); /* no view left behind */
  if (s->in.cond >= 0) memset(&s->inputs[s->in.cond], 0, sizeof s->inputs[s->in.cond]);
  return st;
}

const ldmc_tensor *ldmc_sampler_latents(const ldmc_sampler *s) { return &s->inputs[s->in.latents]; }
const ldmc_sampler_schedule *ldmc_sampler_get_schedule(const ldmc_sampler *s) { return &s->sched; }
const ldmc_graph *ldmc_sampler_step_graph(const ldmc_sampler *s) { return s->step; }
ldmc_executable *ldmc_sampler_step_executable(ldmc_sampler *s) { return s->exe; }

void ldmc_sampler_get_cost(const ldmc_sampler *s, ldmc_sampler_cost *out) {
  memset(out, 0, sizeof *out);
  out->n_steps = s->sched.n_steps;
  out->batch = s->B;
  out->denoiser_batch = s->Bd;
  out->step_flops = ldmc_graph_flops(s->step);
}
