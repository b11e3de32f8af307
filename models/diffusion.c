/* Noise schedules and the latent-diffusion training loss (diffusion.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/diffusion.h"

void ldmc_diffusion_config_default(ldmc_diffusion_config *c) {
  memset(c, 0, sizeof *c);
  c->timesteps = 1000;
  c->schedule = LDMC_BETA_SCALED_LINEAR;
  c->beta_start = 0.00085;
  c->beta_end = 0.012;
  c->prediction = LDMC_PREDICT_EPSILON;
  c->cond_drop = 0.1;
}

ldmc_status ldmc_diffusion_config_check(const ldmc_diffusion_config *c) {
  if (c->timesteps < 2 || c->timesteps > 100000)
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: timesteps %d is not in [2, 100000]", c->timesteps);
  if (c->schedule != LDMC_BETA_SQUAREDCOS_CAP_V2 &&
      !(c->beta_start > 0 && c->beta_end > c->beta_start && c->beta_end < 1))
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: betas need 0 < beta_start (%g) < beta_end (%g) < 1", c->beta_start,
                      c->beta_end);
  if (!(c->cond_drop >= 0 && c->cond_drop <= 1))
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: prompt dropout %g is not in [0, 1]", c->cond_drop);
  if (c->prediction != LDMC_PREDICT_EPSILON && c->prediction != LDMC_PREDICT_V && c->prediction != LDMC_PREDICT_SAMPLE)
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: unknown prediction type %d", (int)c->prediction);
  return LDMC_OK;
}

static const char *const k_schedule_names[] = {"scaled_linear", "linear", "squaredcos_cap_v2"};
static const char *const k_prediction_names[] = {"epsilon", "v_prediction", "sample"};

const char *ldmc_beta_schedule_name(ldmc_beta_schedule s) {
  return (unsigned)s < 3 ? k_schedule_names[s] : "?";
}

ldmc_status ldmc_beta_schedule_parse(const char *s, ldmc_beta_schedule *out) {
  for (int i = 0; i < 3; i++)
    if (s && strcmp(s, k_schedule_names[i]) == 0) {
      *out = (ldmc_beta_schedule)i;
      return LDMC_OK;
    }
  return ldmc_error(LDMC_ERR_INVALID, "unknown beta schedule '%s' (scaled_linear, linear, squaredcos_cap_v2)",
                    s ? s : "");
}

const char *ldmc_prediction_name(ldmc_prediction p) { return (unsigned)p < 3 ? k_prediction_names[p] : "?"; }

ldmc_status ldmc_prediction_parse(const char *s, ldmc_prediction *out) {
  if (s && (strcmp(s, "epsilon") == 0 || strcmp(s, "eps") == 0)) *out = LDMC_PREDICT_EPSILON;
  else if (s && (strcmp(s, "v_prediction") == 0 || strcmp(s, "v") == 0)) *out = LDMC_PREDICT_V;
  else if (s && strcmp(s, "sample") == 0) *out = LDMC_PREDICT_SAMPLE;
  else return ldmc_error(LDMC_ERR_INVALID, "unknown prediction type '%s' (epsilon, v_prediction, sample)", s ? s : "");
  return LDMC_OK;
}

static double cos_alpha_bar(double t) {
  double c = cos((t + 0.008) / 1.008 * M_PI / 2);
  return c * c;
}

ldmc_status ldmc_diffusion_schedule(const ldmc_diffusion_config *c, double *betas, double *alphas_cumprod) {
  LDMC_TRY(ldmc_diffusion_config_check(c));
  int T = c->timesteps;
  double prod = 1;
  for (int i = 0; i < T; i++) {
    double f = (double)i / (T - 1), beta;
    switch (c->schedule) {
      case LDMC_BETA_SCALED_LINEAR: {
        double r = sqrt(c->beta_start) + f * (sqrt(c->beta_end) - sqrt(c->beta_start));
        beta = r * r;
        break;
      }
      case LDMC_BETA_LINEAR: beta = c->beta_start + f * (c->beta_end - c->beta_start); break;
      default: {
        beta = 1 - cos_alpha_bar((double)(i + 1) / T) / cos_alpha_bar((double)i / T);
        if (beta > 0.999) beta = 0.999;
      }
    }
    prod *= 1 - beta;
    if (betas) betas[i] = beta;
    if (alphas_cumprod) alphas_cumprod[i] = prod;
  }
  return LDMC_OK;
}

/* ---- the loss graph ---- */

static ldmc_value i64c(ldmc_builder *b, int64_t v) { return ldmc_constant_scalar(b, LDMC_I64, (double)v); }

/* key * 4 + stream: one Philox key per noise stream of the step */
static ldmc_value stream_key(ldmc_builder *b, ldmc_value key, int stream) {
  return ldmc_add(b, ldmc_mul(b, key, i64c(b, 4)), i64c(b, stream));
}

/* [B] -> [B,C,h,w] along dim 0 */
static ldmc_value per_row(ldmc_builder *b, ldmc_value v, const ldmc_shape *s) {
  const int64_t map[1] = {0};
  return ldmc_broadcast_in_dim(b, v, s->rank, s->dims, map);
}

/* A table of T values as an f32[T] constant, gathered at t[B]. */
static ldmc_value lookup(ldmc_builder *b, const double *table, int T, ldmc_value t) {
  float *f = malloc((size_t)T * sizeof *f);
  if (!f) return -1; /* the constant below is never made: the caller reports it */
  for (int i = 0; i < T; i++) f[i] = (float)table[i];
  int64_t d = T;
  ldmc_value c = ldmc_constant(b, LDMC_F32, 1, &d, f);
  free(f);
  return ldmc_gather(b, c, t, 0);
}

ldmc_status ldmc_ldm_loss_build(const ldmc_diffusion_config *dc, const ldmc_graph *unet, const ldmc_graph *text,
                                const int32_t *empty_tokens, double latent_scale, ldmc_graph **out) {
  *out = NULL;
  LDMC_TRY(ldmc_diffusion_config_check(dc));
  if (!(latent_scale > 0) || !isfinite(latent_scale))
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: latent scale %g is not a positive number", latent_scale);
  if (ldmc_graph_num_params(unet) < 3 || unet->n_outputs != 1)
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: '%s' is not a U-Net graph (sample, timestep, context -> one output)",
                      unet->name ? unet->name : "");
  const ldmc_node *sample = &unet->nodes[ldmc_graph_param_node(unet, 0)], *ctx = &unet->nodes[ldmc_graph_param_node(unet, 2)];
  const ldmc_shape zs = sample->shape;
  int64_t B = zs.dims[0];
  if (text && (ldmc_graph_num_params(text) < 1 || text->n_outputs != 1))
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: '%s' is not a prompt encoder (tokens -> one output)",
                      text->name ? text->name : "");
  const ldmc_node *tok = text ? &text->nodes[ldmc_graph_param_node(text, 0)] : NULL;
  if (tok && (tok->shape.rank != 2 || tok->shape.dims[0] != B || ldmc_dtype_is_float(tok->dtype) || !empty_tokens))
    return ldmc_error(LDMC_ERR_INVALID, "diffusion: the prompt encoder's tokens must be integer [%lld, T] with the empty "
                      "prompt's ids given", (long long)B);

  int T = dc->timesteps;
  double *betas = malloc((size_t)T * sizeof *betas), *abar = malloc((size_t)T * sizeof *abar);
  double *sa = malloc((size_t)T * sizeof *sa), *sb = malloc((size_t)T * sizeof *sb);
  ldmc_builder *b = ldmc_builder_new("ldm");
  if (!betas || !abar || !sa || !sb || !b) {
    free(betas), free(abar), free(sa), free(sb);
    ldmc_builder_free(b);
    return ldmc_error(LDMC_ERR_NOMEM, "diffusion: out of memory");
  }
  ldmc_status st = ldmc_diffusion_schedule(dc, betas, abar);
  for (int i = 0; i < T; i++) sa[i] = sqrt(abar[i]), sb[i] = sqrt(1 - abar[i]);

  ldmc_value mean = ldmc_parameter(b, "latent_mean", LDMC_F32, zs.rank, zs.dims);
  ldmc_value logvar = ldmc_parameter(b, "latent_logvar", LDMC_F32, zs.rank, zs.dims);
  ldmc_value cond = tok ? ldmc_parameter(b, "tokens", tok->dtype, 2, tok->shape.dims)
                        : ldmc_parameter(b, "encoder_hidden_states", ctx->dtype, ctx->shape.rank, ctx->shape.dims);
  ldmc_value key = ldmc_parameter(b, "key", LDMC_I64, 0, NULL);
  /* super-resolution: the U-Net's cond_sample is a fifth data input (the low-resolution image's latent) */
  int32_t ucp = ldmc_graph_find_param(unet, "cond_sample"), upos = -1;
  for (int32_t i = 0; ucp >= 0 && i < ldmc_graph_num_params(unet); i++)
    if (ldmc_graph_param_node(unet, i) == ucp) upos = i;
  const ldmc_node *ucn = ucp >= 0 ? &unet->nodes[ucp] : NULL;
  ldmc_value cond_sample = ucn ? ldmc_parameter(b, "cond_sample", ucn->dtype, ucn->shape.rank, ucn->shape.dims) : -1;

  ldmc_builder_push_scope(b, "diffusion");
  /* z0 = scale (mean + std n): a sample of the posterior, as SD trains */
  ldmc_value n = ldmc_rng_batch(b, LDMC_OP_RNG_NORMAL, LDMC_F32, zs.rank, zs.dims, stream_key(b, key, 0));
  ldmc_value std = ldmc_unary(b, LDMC_OP_EXP, ldmc_scale(b, logvar, 0.5));
  ldmc_value z0 = ldmc_scale(b, ldmc_add(b, mean, ldmc_mul(b, std, n)), latent_scale);
  /* t = min(floor(T u), T - 1): uniform on 0..T-1 */
  ldmc_value u = ldmc_rng_batch(b, LDMC_OP_RNG_UNIFORM, LDMC_F32, 1, &B, stream_key(b, key, 1));
  ldmc_value t = ldmc_convert(b, ldmc_scale(b, u, (double)T), LDMC_I32);
  t = ldmc_binary(b, LDMC_OP_MIN, t, ldmc_broadcast_to(b, ldmc_constant_scalar(b, LDMC_I32, T - 1), 1, &B));
  ldmc_value eps = ldmc_rng_batch(b, LDMC_OP_RNG_NORMAL, LDMC_F32, zs.rank, zs.dims, stream_key(b, key, 2));
  ldmc_value alpha = per_row(b, lookup(b, sa, T, t), &zs), sigma = per_row(b, lookup(b, sb, T, t), &zs);
  ldmc_value zt = ldmc_add(b, ldmc_mul(b, alpha, z0), ldmc_mul(b, sigma, eps));
  ldmc_value target = dc->prediction == LDMC_PREDICT_V        ? ldmc_sub(b, ldmc_mul(b, alpha, eps), ldmc_mul(b, sigma, z0))
                      : dc->prediction == LDMC_PREDICT_SAMPLE ? z0
                                                              : eps;
  if (tok && dc->cond_drop > 0) { /* rows whose u' < drop get the empty prompt */
    int64_t Tt = tok->shape.dims[1];
    ldmc_value d = ldmc_rng_batch(b, LDMC_OP_RNG_UNIFORM, LDMC_F32, 1, &B, stream_key(b, key, 3));
    ldmc_value drop = ldmc_compare_values(b, LDMC_CMP_LT, d, ldmc_broadcast_to(b, ldmc_constant_scalar(b, LDMC_F32, dc->cond_drop), 1, &B));
    ldmc_value empty = ldmc_constant(b, LDMC_I32, 1, &Tt, empty_tokens);
    if (tok->dtype != LDMC_I32) empty = ldmc_convert(b, empty, tok->dtype);
    const int64_t rows[1] = {0}, cols[1] = {1};
    ldmc_value drop2 = ldmc_broadcast_in_dim(b, drop, 2, tok->shape.dims, rows);
    ldmc_value empty2 = ldmc_broadcast_in_dim(b, empty, 2, tok->shape.dims, cols);
    cond = ldmc_select(b, drop2, empty2, cond);
  }
  ldmc_value tf = ldmc_convert(b, t, LDMC_F32);
  ldmc_builder_pop_scope(b);

  ldmc_value context = cond;
  if (tok && st == LDMC_OK) {
    ldmc_value bind[1] = {cond}; /* the rest: its weights, as new parameters */
    ldmc_value *tb = calloc((size_t)ldmc_graph_num_params(text), sizeof *tb);
    if (!tb) st = ldmc_error(LDMC_ERR_NOMEM, "diffusion: out of memory");
    else {
      for (int32_t i = 0; i < ldmc_graph_num_params(text); i++) tb[i] = i ? -1 : bind[0];
      st = ldmc_builder_inline(b, text, tb, NULL, &context);
      free(tb);
    }
  }
  ldmc_value pred = -1;
  if (st == LDMC_OK) {
    int32_t np = ldmc_graph_num_params(unet);
    ldmc_value *ub = malloc((size_t)np * sizeof *ub);
    if (!ub) st = ldmc_error(LDMC_ERR_NOMEM, "diffusion: out of memory");
    else {
      for (int32_t i = 0; i < np; i++) ub[i] = -1;
      ub[0] = zt, ub[1] = tf, ub[2] = context;
      if (upos >= 0) ub[upos] = cond_sample;
      st = ldmc_builder_inline(b, unet, ub, NULL, &pred);
      free(ub);
    }
  }
  if (st == LDMC_OK) {
    ldmc_builder_push_scope(b, "loss");
    ldmc_value e = ldmc_sub(b, pred, target);
    int64_t axes[LDMC_MAX_RANK], numel = 1;
    for (int i = 0; i < zs.rank; i++) axes[i] = i, numel *= zs.dims[i];
    ldmc_value loss = ldmc_scale(b, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, e, e), zs.rank, axes, false),
                                 1.0 / (double)numel);
    ldmc_builder_pop_scope(b);
    ldmc_builder_output(b, loss, "loss");
  }
  free(betas), free(abar), free(sa), free(sb);
  if (st != LDMC_OK && ldmc_builder_status(b) == LDMC_OK) { /* failed outside the builder */
    ldmc_builder_free(b);
    return st;
  }
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) {
    ldmc_error_prefix("diffusion loss graph: ");
    return st != LDMC_OK ? st : LDMC_ERR_INVALID;
  }
  *out = g;
  return LDMC_OK;
}
