/* The sampler's step graph and initial-noise graph (samplers.h): the
 * denoiser inlined once, guidance, the prediction conversion and the update
 * x' = c_x x + c_x0 x0 + c_eps eps + c_d (x0 - x0_prev) + c_noise z with the
 * coefficients as rank-0 inputs, so one executable serves every step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/samplers.h"

bool ldmc_sampler_is_stochastic(const ldmc_sampler_config *sc) {
  return sc->kind == LDMC_SAMPLER_DDPM || (sc->kind == LDMC_SAMPLER_DDIM && sc->eta > 0) ||
         (sc->kind == LDMC_SAMPLER_LCM && sc->steps > 1);
}

/* splitmix64's finalizer */
static uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int64_t ldmc_sample_noise_key(uint64_t seed, int64_t image, int64_t step) {
  return (int64_t)mix64(mix64(mix64(seed) ^ (uint64_t)image) ^ (uint64_t)step);
}

/* Row b of the result is rng_normal f32[1, dims[1..]] keyed by keys[b], so a
 * row's noise depends on its key alone, not on the batch around it. */
static ldmc_value row_noise(ldmc_builder *b, ldmc_value keys, int rank, const int64_t *dims) {
  int64_t B = dims[0], row[LDMC_MAX_RANK], none[1] = {0};
  memcpy(row, dims, (size_t)rank * sizeof *row);
  row[0] = 1;
  ldmc_value *z = malloc((size_t)B * sizeof *z);
  if (!z) return -1; /* the caller reports the missing value */
  for (int64_t r = 0; r < B; r++) {
    int64_t lo[1] = {r}, hi[1] = {r + 1};
    ldmc_value k = ldmc_reshape(b, ldmc_slice(b, keys, lo, hi, NULL), 0, none);
    z[r] = ldmc_rng(b, LDMC_OP_RNG_NORMAL, LDMC_F32, rank, row, k);
  }
  ldmc_value out = B == 1 ? z[0] : ldmc_concatenate(b, (int)B, z, 0);
  free(z);
  return out;
}

static ldmc_status finish(ldmc_builder *b, const char *what, ldmc_graph **out) {
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) {
    ldmc_error_prefix("%s: ", what);
    return st != LDMC_OK ? st : LDMC_ERR_INVALID;
  }
  *out = g;
  return LDMC_OK;
}

ldmc_status ldmc_sampler_noise_build(int rank, const int64_t *dims, ldmc_graph **out) {
  *out = NULL;
  if (rank < 1 || rank > LDMC_MAX_RANK || !dims)
    return ldmc_error(LDMC_ERR_INVALID, "sampler noise graph: rank %d is not in [1, %d]", rank, LDMC_MAX_RANK);
  for (int i = 0; i < rank; i++)
    if (dims[i] < 1)
      return ldmc_error(LDMC_ERR_INVALID, "sampler noise graph: dim %d is %lld", i, (long long)dims[i]);
  ldmc_builder *b = ldmc_builder_new("sampler_noise");
  if (!b) return ldmc_error(LDMC_ERR_NOMEM, "sampler noise graph: out of memory");
  ldmc_value keys = ldmc_parameter(b, "noise_key", LDMC_I64, 1, dims);
  ldmc_value z = row_noise(b, keys, rank, dims);
  if (z < 0 && ldmc_builder_status(b) == LDMC_OK) {
    ldmc_builder_free(b);
    return ldmc_error(LDMC_ERR_NOMEM, "sampler noise graph: out of memory");
  }
  ldmc_builder_output(b, z, "noise");
  return finish(b, "sampler noise graph", out);
}

/* The denoiser's interface: sample f32[Bd,...], timestep f32[Bd], context
 * [Bd,...], its first output typed like sample. */
static ldmc_status check_denoiser(const ldmc_graph *d, bool guidance, int64_t *Bd) {
  const char *name = d && d->name ? d->name : "";
  if (!d || ldmc_graph_num_params(d) < 3 || d->n_outputs < 1)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: denoiser '%s' needs the U-Net's interface (sample, timestep, context, "
                      "weights... -> one output)", name);
  const ldmc_node *x = &d->nodes[ldmc_graph_param_node(d, 0)], *t = &d->nodes[ldmc_graph_param_node(d, 1)];
  const ldmc_node *c = &d->nodes[ldmc_graph_param_node(d, 2)], *o = &d->nodes[d->outputs[0]];
  *Bd = x->shape.rank >= 1 ? x->shape.dims[0] : 0;
  if (x->dtype != LDMC_F32 || x->shape.rank < 2)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: denoiser '%s': its first parameter '%s' must be f32 [B, ...] (the sample)",
                      name, x->attrs.name ? x->attrs.name : "");
  if (t->dtype != LDMC_F32 || t->shape.rank != 1 || t->shape.dims[0] != *Bd)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: denoiser '%s': its second parameter '%s' must be f32[%lld] (the timestep)",
                      name, t->attrs.name ? t->attrs.name : "", (long long)*Bd);
  if (c->shape.rank < 1 || c->shape.dims[0] != *Bd)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: denoiser '%s': its third parameter '%s' must be [%lld, ...] (the context)",
                      name, c->attrs.name ? c->attrs.name : "", (long long)*Bd);
  if (o->dtype != LDMC_F32 || !ldmc_shape_equal(&o->shape, &x->shape))
    return ldmc_error(LDMC_ERR_INVALID, "sampler: denoiser '%s': its output '%s' must be typed like its sample", name,
                      d->output_names[0]);
  if (guidance && *Bd % 2)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: guidance needs the denoiser's batch to be 2B (cond, uncond rows); "
                      "'%s' has %lld", name, (long long)*Bd);
  return LDMC_OK;
}

static ldmc_value scalar_param(ldmc_builder *b, const char *name) { return ldmc_parameter(b, name, LDMC_F32, 0, NULL); }

ldmc_status ldmc_sampler_step_build(const ldmc_sampler_config *sc, ldmc_prediction pred, bool guidance,
                                    const ldmc_graph *denoiser, ldmc_graph **out) {
  *out = NULL;
  int64_t Bd;
  LDMC_TRY(check_denoiser(denoiser, guidance, &Bd));
  if ((unsigned)sc->kind >= LDMC_SAMPLER_COUNT) return ldmc_error(LDMC_ERR_INVALID, "sampler: unknown kind %d", (int)sc->kind);
  if (pred != LDMC_PREDICT_EPSILON && pred != LDMC_PREDICT_V && pred != LDMC_PREDICT_SAMPLE)
    return ldmc_error(LDMC_ERR_INVALID, "sampler: unknown prediction type %d", (int)pred);
  bool dpm = sc->kind == LDMC_SAMPLER_DPMPP_2M, noisy = ldmc_sampler_is_stochastic(sc);
  bool lcm = sc->kind == LDMC_SAMPLER_LCM;
  int32_t gi = ldmc_graph_find_param(denoiser, "guidance");
  const ldmc_node *gn = gi >= 0 ? &denoiser->nodes[gi] : NULL;
  bool has_w = gn && ldmc_graph_num_params(denoiser) > 3 && ldmc_graph_param_node(denoiser, 3) == gi;
  if (lcm && guidance)
    return ldmc_error(LDMC_ERR_INVALID, "sampler lcm: a distilled model takes the guidance rate as an input; build it "
                      "without classifier-free guidance batching");
  if (lcm && !(has_w && gn->dtype == LDMC_F32 && gn->shape.rank == 1 && gn->shape.dims[0] == Bd))
    return ldmc_error(LDMC_ERR_INVALID, "sampler lcm: denoiser '%s' has no guidance input (4th parameter 'guidance' "
                      "f32[%lld]): is it a distilled model?", denoiser->name ? denoiser->name : "", (long long)Bd);
  const ldmc_node *xn = &denoiser->nodes[ldmc_graph_param_node(denoiser, 0)];
  const ldmc_node *cn = &denoiser->nodes[ldmc_graph_param_node(denoiser, 2)];
  ldmc_shape xs = xn->shape;
  int64_t B = guidance ? Bd / 2 : Bd;
  xs.dims[0] = B;

  ldmc_builder *b = ldmc_builder_new("sampler_step");
  if (!b) return ldmc_error(LDMC_ERR_NOMEM, "sampler step graph: out of memory");
  ldmc_value x = ldmc_parameter(b, "latents", LDMC_F32, xs.rank, xs.dims);
  ldmc_value x0p = dpm ? ldmc_parameter(b, "x0_prev", LDMC_F32, xs.rank, xs.dims) : -1;
  ldmc_value ctx = ldmc_parameter(b, "encoder_hidden_states", cn->dtype, cn->shape.rank, cn->shape.dims);
  ldmc_value w = guidance || lcm ? scalar_param(b, "guidance_scale") : -1;
  ldmc_value keys = noisy ? ldmc_parameter(b, "noise_key", LDMC_I64, 1, &B) : -1;
  ldmc_value t = scalar_param(b, "timestep"), alpha = scalar_param(b, "alpha_t"), sigma = scalar_param(b, "sigma_t");
  ldmc_value c_x = scalar_param(b, "c_x"), c_x0 = scalar_param(b, "c_x0"), c_eps = scalar_param(b, "c_eps");
  /* every sampler has all eight, so a runtime sets them alike (c_d is DPM-Solver's, c_noise the noisy ones') */
  ldmc_value c_d = scalar_param(b, "c_d"), c_noise = scalar_param(b, "c_noise");
  /* image conditioning (super-resolution): a per-run input like the context, never a weight */
  int32_t ci = ldmc_graph_find_param(denoiser, "cond_sample");
  int32_t cpos = -1;
  for (int32_t i = 0; ci >= 0 && i < ldmc_graph_num_params(denoiser); i++)
    if (ldmc_graph_param_node(denoiser, i) == ci) cpos = i;
  const ldmc_node *cdn = ci >= 0 ? &denoiser->nodes[ci] : NULL;
  ldmc_value cond = cdn ? ldmc_parameter(b, "cond_sample", cdn->dtype, cdn->shape.rank, cdn->shape.dims) : -1;

  /* the denoiser, once, on both halves (its scopes kept as they are) */
  ldmc_value xin = guidance ? ldmc_concatenate(b, 2, (ldmc_value[]){x, x}, 0) : x;
  ldmc_value tb = ldmc_broadcast_to(b, t, 1, &Bd);
  int32_t np = ldmc_graph_num_params(denoiser);
  ldmc_value *bind = malloc((size_t)np * sizeof *bind), *outs = malloc((size_t)denoiser->n_outputs * sizeof *outs);
  ldmc_status st = bind && outs ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "sampler step graph: out of memory");
  if (st == LDMC_OK) {
    for (int32_t i = 0; i < np; i++) bind[i] = -1;
    bind[0] = xin, bind[1] = tb, bind[2] = ctx;
    if (cpos >= 0) bind[cpos] = cond;
    if (lcm) /* LCM's w = guidance scale - 1, one per row */
      bind[3] = ldmc_broadcast_to(b, ldmc_sub(b, w, ldmc_constant_scalar(b, LDMC_F32, 1.0)), 1, &Bd);
    st = ldmc_builder_inline(b, denoiser, bind, NULL, outs);
  }
  ldmc_value m = st == LDMC_OK ? outs[0] : -1;
  free(bind), free(outs);
  if (st != LDMC_OK && ldmc_builder_status(b) == LDMC_OK) {
    ldmc_builder_free(b);
    return st;
  }

  ldmc_builder_push_scope(b, "sampler");
  if (guidance) { /* m = m_u + w (m_c - m_u) */
    int64_t lo[LDMC_MAX_RANK] = {0}, mid[LDMC_MAX_RANK], hi[LDMC_MAX_RANK];
    memcpy(mid, xs.dims, sizeof mid);
    memcpy(hi, xs.dims, sizeof hi);
    hi[0] = Bd;
    ldmc_value mc = ldmc_slice(b, m, lo, mid, NULL);
    lo[0] = B;
    ldmc_value mu = ldmc_slice(b, m, lo, hi, NULL);
    m = ldmc_add(b, mu, ldmc_mul(b, w, ldmc_sub(b, mc, mu)));
  }
  ldmc_value x0, eps;
  if (pred == LDMC_PREDICT_EPSILON) { /* x0 = (x - sigma eps) / alpha */
    eps = m;
    x0 = ldmc_div(b, ldmc_sub(b, x, ldmc_mul(b, sigma, m)), alpha);
  } else if (pred == LDMC_PREDICT_V) { /* x0 = alpha x - sigma v, eps = alpha v + sigma x */
    x0 = ldmc_sub(b, ldmc_mul(b, alpha, x), ldmc_mul(b, sigma, m));
    eps = ldmc_add(b, ldmc_mul(b, alpha, m), ldmc_mul(b, sigma, x));
  } else { /* eps = (x - alpha x0) / sigma */
    x0 = m;
    eps = ldmc_div(b, ldmc_sub(b, x, ldmc_mul(b, alpha, m)), sigma);
  }
  if (sc->clip_sample && !dpm) { /* eps stays unclipped, as diffusers' use_clipped_model_output = False */
    ldmc_value r = ldmc_constant_scalar(b, LDMC_F32, sc->clip_sample_range);
    x0 = ldmc_binary(b, LDMC_OP_MAX, ldmc_binary(b, LDMC_OP_MIN, x0, r), ldmc_unary(b, LDMC_OP_NEG, r));
  }
  ldmc_value xnew = ldmc_add(b, ldmc_add(b, ldmc_mul(b, c_x, x), ldmc_mul(b, c_x0, x0)), ldmc_mul(b, c_eps, eps));
  if (dpm) xnew = ldmc_add(b, xnew, ldmc_mul(b, c_d, ldmc_sub(b, x0, x0p)));
  if (noisy) {
    ldmc_value z = row_noise(b, keys, xs.rank, xs.dims);
    if (z < 0 && ldmc_builder_status(b) == LDMC_OK) {
      ldmc_builder_free(b);
      return ldmc_error(LDMC_ERR_NOMEM, "sampler step graph: out of memory");
    }
    xnew = ldmc_add(b, xnew, ldmc_mul(b, c_noise, z));
  }
  ldmc_builder_pop_scope(b);
  ldmc_builder_output(b, xnew, "latents");
  if (dpm) ldmc_builder_output(b, x0, "x0");
  return finish(b, "sampler step graph", out);
}

ldmc_status ldmc_sampler_step_inputs(const ldmc_graph *g, ldmc_sampler_inputs *o) {
  static const char *const names[] = {"latents", "x0_prev", "encoder_hidden_states", "guidance_scale", "noise_key",
                                      "timestep", "alpha_t", "sigma_t", "c_x", "c_x0", "c_eps", "c_d", "c_noise",
                                      "cond_sample"};
  int32_t *slot[] = {&o->latents, &o->x0_prev, &o->context, &o->guidance, &o->noise_key, &o->timestep, &o->alpha,
                     &o->sigma, &o->c_x, &o->c_x0, &o->c_eps, &o->c_d, &o->c_noise, &o->cond};
  enum { N_NAMES = sizeof names / sizeof *names };
  _Static_assert(sizeof slot / sizeof *slot == N_NAMES, "a slot per name");
  int32_t np = ldmc_graph_num_params(g), n = 0;
  for (int k = 0; k < N_NAMES; k++) *slot[k] = -1;
  for (int32_t i = 0; i < np; i++) {
    const char *pn = g->nodes[ldmc_graph_param_node(g, i)].attrs.name;
    int k = 0;
    while (k < N_NAMES && !(pn && !strcmp(pn, names[k]))) k++;
    if (k == N_NAMES) break; /* the denoiser's weights from here on */
    *slot[k] = i;
    n = i + 1;
  }
  o->n_inputs = n;
  if (o->latents != 0 || o->context < 0 || o->timestep < 0 || o->c_noise < 0)
    return ldmc_error(LDMC_ERR_INVALID, "graph '%s' is not a sampler step graph (latents, ..., c_noise first)",
                      g->name ? g->name : "");
  return LDMC_OK;
}
