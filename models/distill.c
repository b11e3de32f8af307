/* The latent consistency distillation loss graph (distill.h): per-example
 * solver indices, noise and guidance scales drawn in the graph, the guided
 * teacher's DDIM step, the student and the EMA target with the boundary
 * scalings, all tables of the N solver timesteps gathered at the index. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/distill.h"
#include "models/samplers.h"

void ldmc_lcd_config_default(ldmc_lcd_config *c) {
  memset(c, 0, sizeof *c);
  c->solver_steps = 50;
  c->scale_min = 2, c->scale_max = 8;
  c->timestep_scaling = 10;
  c->loss = LDMC_LCD_L2;
  c->huber_c = 0.001;
}

ldmc_status ldmc_lcd_config_check(const ldmc_lcd_config *c, int T) {
  if (c->solver_steps < 1 || c->solver_steps > T || T % c->solver_steps)
    return ldmc_error(LDMC_ERR_INVALID, "distillation: %d solver steps must divide the %d training timesteps",
                      c->solver_steps, T);
  if (!(c->scale_min >= 1) || !(c->scale_max >= c->scale_min) || !isfinite(c->scale_max))
    return ldmc_error(LDMC_ERR_INVALID, "distillation: guidance scales [%g, %g] must satisfy 1 <= min <= max",
                      c->scale_min, c->scale_max);
  if (!(c->timestep_scaling > 0) || !isfinite(c->timestep_scaling))
    return ldmc_error(LDMC_ERR_INVALID, "distillation: timestep scaling %g is not a positive number", c->timestep_scaling);
  if (c->loss != LDMC_LCD_L2 && c->loss != LDMC_LCD_HUBER)
    return ldmc_error(LDMC_ERR_INVALID, "distillation: unknown loss %d", (int)c->loss);
  if (c->loss == LDMC_LCD_HUBER && !(c->huber_c > 0 && isfinite(c->huber_c)))
    return ldmc_error(LDMC_ERR_INVALID, "distillation: huber c %g is not a positive number", c->huber_c);
  return LDMC_OK;
}

const char *ldmc_lcd_loss_name(ldmc_lcd_loss_kind k) { return k == LDMC_LCD_HUBER ? "huber" : "l2"; }

ldmc_status ldmc_lcd_loss_parse(const char *s, ldmc_lcd_loss_kind *out) {
  if (s && !strcmp(s, "l2")) *out = LDMC_LCD_L2;
  else if (s && !strcmp(s, "huber")) *out = LDMC_LCD_HUBER;
  else return ldmc_error(LDMC_ERR_INVALID, "unknown distillation loss '%s' (l2, huber)", s ? s : "");
  return LDMC_OK;
}

void ldmc_lcd_train_opts(ldmc_train_opts *o, double ema) {
  o->loss = "loss";
  o->wrt_regex = NULL;
  o->frozen_regex = "^(text|teacher)\\.";
  o->ema_decay = ema;
  o->ema_from_model = true;
}

/* ---- the graph ---- */

typedef struct lcd_build {
  ldmc_builder *b;
  ldmc_prediction pred;
  ldmc_shape zs; /* [B, C, h, w] */
} lcd_build;

static ldmc_value i64c(ldmc_builder *b, int64_t v) { return ldmc_constant_scalar(b, LDMC_I64, (double)v); }

/* key * 4 + stream, as the diffusion loss keys its streams */
static ldmc_value stream_key(ldmc_builder *b, ldmc_value key, int stream) {
  return ldmc_add(b, ldmc_mul(b, key, i64c(b, 4)), i64c(b, stream));
}

/* [B] -> the latent's shape, along dim 0 */
static ldmc_value per_row(lcd_build *l, ldmc_value v, int64_t rows) {
  ldmc_shape s = l->zs;
  s.dims[0] = rows;
  const int64_t map[1] = {0};
  return ldmc_broadcast_in_dim(l->b, v, s.rank, s.dims, map);
}

/* table[N] as an f32 constant gathered at idx[B] */
static ldmc_value lookup(ldmc_builder *b, const double *table, int N, ldmc_value idx) {
  float f[1024];
  for (int i = 0; i < N; i++) f[i] = (float)table[i];
  int64_t d = N;
  return ldmc_gather(b, ldmc_constant(b, LDMC_F32, 1, &d, f), idx, 0);
}

/* A model's output m at (alpha, sigma) [rows of the latent shape] as (x0, eps). */
static void convert(lcd_build *l, ldmc_value m, ldmc_value x, ldmc_value alpha, ldmc_value sigma, ldmc_value *x0,
                    ldmc_value *eps) {
  ldmc_builder *b = l->b;
  if (l->pred == LDMC_PREDICT_EPSILON) {
    *eps = m;
    *x0 = ldmc_div(b, ldmc_sub(b, x, ldmc_mul(b, sigma, m)), alpha);
  } else if (l->pred == LDMC_PREDICT_V) {
    *x0 = ldmc_sub(b, ldmc_mul(b, alpha, x), ldmc_mul(b, sigma, m));
    *eps = ldmc_add(b, ldmc_mul(b, alpha, m), ldmc_mul(b, sigma, x));
  } else {
    *x0 = m;
    *eps = ldmc_div(b, ldmc_sub(b, x, ldmc_mul(b, alpha, m)), sigma);
  }
}

/* Parameters for g's weights (its parameters from `first` on), named
 * prefix + name, into w[first..]; w[0..first-1] = -1. */
static ldmc_status weights_of(ldmc_builder *b, const ldmc_graph *g, int32_t first, const char *prefix, ldmc_value **w) {
  int32_t np = ldmc_graph_num_params(g);
  *w = malloc((size_t)np * sizeof **w);
  if (!*w) return ldmc_error(LDMC_ERR_NOMEM, "distillation: out of memory");
  for (int32_t k = 0; k < np; k++) {
    (*w)[k] = -1;
    if (k < first) continue;
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    const char *nm = p->attrs.name ? p->attrs.name : "";
    size_t len = strlen(prefix) + strlen(nm) + 1;
    char *full = malloc(len);
    if (!full) return ldmc_error(LDMC_ERR_NOMEM, "distillation: out of memory");
    memcpy(full, prefix, strlen(prefix));
    memcpy(full + strlen(prefix), nm, strlen(nm) + 1);
    (*w)[k] = ldmc_parameter(b, full, p->dtype, p->shape.rank, p->shape.dims);
    free(full);
  }
  return LDMC_OK;
}

/* g applied to inputs (its first n_in parameters) with weights w (from
 * weights_of); its first output. */
static ldmc_value call(ldmc_builder *b, const ldmc_graph *g, ldmc_value *w, int n_in, const ldmc_value *in,
                       ldmc_status *st) {
  if (*st != LDMC_OK) return -1;
  for (int k = 0; k < n_in; k++) w[k] = in[k];
  ldmc_value *outs = malloc((size_t)(g->n_outputs ? g->n_outputs : 1) * sizeof *outs);
  if (!outs) {
    *st = ldmc_error(LDMC_ERR_NOMEM, "distillation: out of memory");
    return -1;
  }
  *st = ldmc_builder_inline(b, g, w, NULL, outs);
  ldmc_value o = outs[0];
  free(outs);
  return *st == LDMC_OK ? o : -1;
}

static ldmc_status check_models(const ldmc_graph *student, const ldmc_graph *teacher, const ldmc_graph *text,
                                const int32_t *empty, int64_t *B) {
  if (!student || !teacher || !text || !empty)
    return ldmc_error(LDMC_ERR_INVALID, "distillation: the student, teacher, prompt encoder and empty prompt are needed");
  if (ldmc_graph_num_params(student) < 4 || student->n_outputs != 1 ||
      ldmc_graph_param_node(student, 3) != ldmc_graph_find_param(student, "guidance"))
    return ldmc_error(LDMC_ERR_INVALID, "distillation: the student '%s' needs the U-Net interface with the guidance "
                      "input (sample, timestep, context, guidance, weights...)", student->name ? student->name : "");
  if (ldmc_graph_num_params(teacher) < 3 || teacher->n_outputs != 1)
    return ldmc_error(LDMC_ERR_INVALID, "distillation: the teacher '%s' is not a U-Net graph",
                      teacher->name ? teacher->name : "");
  const ldmc_shape *xs = &student->nodes[ldmc_graph_param_node(student, 0)].shape;
  const ldmc_shape *xt = &teacher->nodes[ldmc_graph_param_node(teacher, 0)].shape;
  const ldmc_shape *tk = &text->nodes[ldmc_graph_param_node(text, 0)].shape;
  *B = xs->dims[0];
  bool same = xs->rank == xt->rank && xt->dims[0] == 2 * *B;
  for (int i = 1; same && i < xs->rank; i++) same = xs->dims[i] == xt->dims[i];
  if (!same)
    return ldmc_error(LDMC_ERR_INVALID, "distillation: the teacher's sample must be the student's with twice its batch "
                      "(%lld: conditional and unconditional rows)", (long long)(2 * *B));
  if (tk->rank != 2 || tk->dims[0] != *B || text->n_outputs != 1)
    return ldmc_error(LDMC_ERR_INVALID, "distillation: the prompt encoder must take tokens [%lld, T]", (long long)*B);
  return LDMC_OK;
}

ldmc_status ldmc_lcd_loss_build(const ldmc_diffusion_config *dc, const ldmc_lcd_config *lc, const ldmc_graph *student,
                                const ldmc_graph *teacher, const ldmc_graph *text, const int32_t *empty_tokens,
                                double latent_scale, ldmc_graph **out) {
  *out = NULL;
  LDMC_TRY(ldmc_diffusion_config_check(dc));
  LDMC_TRY(ldmc_lcd_config_check(lc, dc->timesteps));
  if (!(latent_scale > 0) || !isfinite(latent_scale))
    return ldmc_error(LDMC_ERR_INVALID, "distillation: latent scale %g is not a positive number", latent_scale);
  int64_t B;
  LDMC_TRY(check_models(student, teacher, text, empty_tokens, &B));
  const int T = dc->timesteps, N = lc->solver_steps, k = T / N;
  if (N > 1024) return ldmc_error(LDMC_ERR_INVALID, "distillation: at most 1024 solver steps");
  double *abar = malloc((size_t)T * sizeof *abar);
  double *tab = malloc((size_t)(10 * N) * sizeof *tab);
  ldmc_builder *b = ldmc_builder_new("lcd");
  if (!abar || !tab || !b) {
    free(abar), free(tab), ldmc_builder_free(b);
    return ldmc_error(LDMC_ERR_NOMEM, "distillation: out of memory");
  }
  ldmc_status st = ldmc_diffusion_schedule(dc, NULL, abar);
  /* per solver index n: t_s, t_e, alpha/sigma at both, c_skip/c_out at both */
  double *ts = tab, *te = tab + N, *as = tab + 2 * N, *ss = tab + 3 * N, *ae = tab + 4 * N, *se = tab + 5 * N;
  double *ks = tab + 6 * N, *os = tab + 7 * N, *ke = tab + 8 * N, *oe = tab + 9 * N;
  for (int n = 0; n < N; n++) {
    int s = k * (n + 1) - 1, e = s - k < 0 ? 0 : s - k;
    ts[n] = s, te[n] = e;
    as[n] = sqrt(abar[s]), ss[n] = sqrt(1 - abar[s]), ae[n] = sqrt(abar[e]), se[n] = sqrt(1 - abar[e]);
    ldmc_lcm_boundary(s, lc->timestep_scaling, &ks[n], &os[n]);
    ldmc_lcm_boundary(e, lc->timestep_scaling, &ke[n], &oe[n]);
  }
  const ldmc_node *tok = &text->nodes[ldmc_graph_param_node(text, 0)];
  lcd_build l = {.b = b, .pred = dc->prediction, .zs = student->nodes[ldmc_graph_param_node(student, 0)].shape};
  const ldmc_shape *zs = &l.zs;
  ldmc_value mean = ldmc_parameter(b, "latent_mean", LDMC_F32, zs->rank, zs->dims);
  ldmc_value logvar = ldmc_parameter(b, "latent_logvar", LDMC_F32, zs->rank, zs->dims);
  ldmc_value tokens = ldmc_parameter(b, "tokens", tok->dtype, 2, tok->shape.dims);
  ldmc_value key = ldmc_parameter(b, "key", LDMC_I64, 0, NULL);
  ldmc_value *wt = NULL, *ws = NULL, *wteach = NULL, *wema = NULL;
  if (st == LDMC_OK) st = weights_of(b, text, 1, "text.", &wt);
  if (st == LDMC_OK) st = weights_of(b, student, 4, "", &ws);
  if (st == LDMC_OK) st = weights_of(b, teacher, 3, "teacher.", &wteach);
  if (st == LDMC_OK) st = weights_of(b, student, 4, "ema.", &wema);

  ldmc_value x = -1, xe = -1, tsf = -1, tef = -1, w = -1, a_s = -1, s_s = -1, a_e = -1, s_e = -1;
  ldmc_value cks = -1, cos_ = -1, cke = -1, coe = -1, scale = -1;
  if (st == LDMC_OK) {
    ldmc_builder_push_scope(b, "distill");
    ldmc_value n0 = ldmc_rng_batch(b, LDMC_OP_RNG_NORMAL, LDMC_F32, zs->rank, zs->dims, stream_key(b, key, 0));
    ldmc_value z0 = ldmc_scale(b, ldmc_add(b, mean, ldmc_mul(b, ldmc_unary(b, LDMC_OP_EXP, ldmc_scale(b, logvar, 0.5)), n0)),
                               latent_scale);
    /* n = min(floor(N u), N - 1), uniform on 0..N-1 */
    ldmc_value u = ldmc_rng_batch(b, LDMC_OP_RNG_UNIFORM, LDMC_F32, 1, &B, stream_key(b, key, 1));
    ldmc_value idx = ldmc_convert(b, ldmc_scale(b, u, (double)N), LDMC_I32);
    idx = ldmc_binary(b, LDMC_OP_MIN, idx, ldmc_broadcast_to(b, ldmc_constant_scalar(b, LDMC_I32, N - 1), 1, &B));
    ldmc_value eps = ldmc_rng_batch(b, LDMC_OP_RNG_NORMAL, LDMC_F32, zs->rank, zs->dims, stream_key(b, key, 2));
    ldmc_value us = ldmc_rng_batch(b, LDMC_OP_RNG_UNIFORM, LDMC_F32, 1, &B, stream_key(b, key, 3));
    scale = ldmc_add(b, ldmc_scale(b, us, lc->scale_max - lc->scale_min),
                                ldmc_broadcast_to(b, ldmc_constant_scalar(b, LDMC_F32, lc->scale_min), 1, &B));
    w = ldmc_sub(b, scale, ldmc_broadcast_to(b, ldmc_constant_scalar(b, LDMC_F32, 1.0), 1, &B)); /* LCM's w */
    tsf = lookup(b, ts, N, idx), tef = lookup(b, te, N, idx);
    a_s = per_row(&l, lookup(b, as, N, idx), B), s_s = per_row(&l, lookup(b, ss, N, idx), B);
    a_e = per_row(&l, lookup(b, ae, N, idx), B), s_e = per_row(&l, lookup(b, se, N, idx), B);
    cks = per_row(&l, lookup(b, ks, N, idx), B), cos_ = per_row(&l, lookup(b, os, N, idx), B);
    cke = per_row(&l, lookup(b, ke, N, idx), B), coe = per_row(&l, lookup(b, oe, N, idx), B);
    x = ldmc_add(b, ldmc_mul(b, a_s, z0), ldmc_mul(b, s_s, eps));
    ldmc_builder_pop_scope(b);

    /* the prompt encoder on the prompts and on the empty prompt */
    ldmc_value ctx_c = call(b, text, wt, 1, &tokens, &st);
    int64_t Tt = tok->shape.dims[1];
    ldmc_value empty = ldmc_constant(b, LDMC_I32, 1, &Tt, empty_tokens);
    if (tok->dtype != LDMC_I32) empty = ldmc_convert(b, empty, tok->dtype);
    const int64_t cols[1] = {1};
    ldmc_value empty2 = ldmc_broadcast_in_dim(b, empty, 2, tok->shape.dims, cols);
    ldmc_value ctx_u = call(b, text, wt, 1, &empty2, &st);

    /* the guided teacher and its DDIM step from t_s to t_e (no gradient: its weights are frozen) */
    ldmc_builder_push_scope(b, "teacher");
    ldmc_value tin[3] = {ldmc_concatenate(b, 2, (ldmc_value[]){x, x}, 0),
                         ldmc_concatenate(b, 2, (ldmc_value[]){tsf, tsf}, 0),
                         ldmc_concatenate(b, 2, (ldmc_value[]){ctx_c, ctx_u}, 0)};
    ldmc_value m = call(b, teacher, wteach, 3, tin, &st);
    ldmc_builder_pop_scope(b);
    if (st == LDMC_OK) {
      ldmc_builder_push_scope(b, "solver");
      int64_t lo[LDMC_MAX_RANK] = {0}, mid[LDMC_MAX_RANK], hi[LDMC_MAX_RANK];
      memcpy(mid, zs->dims, sizeof mid);
      memcpy(hi, zs->dims, sizeof hi);
      hi[0] = 2 * B;
      ldmc_value mc = ldmc_slice(b, m, lo, mid, NULL);
      lo[0] = B;
      ldmc_value mu = ldmc_slice(b, m, lo, hi, NULL);
      ldmc_value x0c, epc, x0u, epu;
      convert(&l, mc, x, a_s, s_s, &x0c, &epc);
      convert(&l, mu, x, a_s, s_s, &x0u, &epu);
      ldmc_value sr = per_row(&l, scale, B);
      ldmc_value x0g = ldmc_add(b, x0u, ldmc_mul(b, sr, ldmc_sub(b, x0c, x0u)));
      ldmc_value epg = ldmc_add(b, epu, ldmc_mul(b, sr, ldmc_sub(b, epc, epu)));
      xe = ldmc_add(b, ldmc_mul(b, a_e, x0g), ldmc_mul(b, s_e, epg));
      ldmc_builder_pop_scope(b);
    }
    ldmc_value ctx_t = ctx_c;
    ldmc_value sin_[4] = {x, tsf, ctx_c, w};
    ldmc_value ms = call(b, student, ws, 4, sin_, &st);
    ldmc_builder_push_scope(b, "target");
    ldmc_value tin2[4] = {xe, tef, ctx_t, w};
    ldmc_value mt = call(b, student, wema, 4, tin2, &st);
    ldmc_builder_pop_scope(b);
    if (st == LDMC_OK) {
      ldmc_builder_push_scope(b, "loss");
      ldmc_value x0s, e1, x0t, e2;
      convert(&l, ms, x, a_s, s_s, &x0s, &e1);
      convert(&l, mt, xe, a_e, s_e, &x0t, &e2);
      ldmc_value f = ldmc_add(b, ldmc_mul(b, cks, x), ldmc_mul(b, cos_, x0s));
      ldmc_value y = ldmc_add(b, ldmc_mul(b, cke, xe), ldmc_mul(b, coe, x0t));
      ldmc_value d = ldmc_sub(b, f, y), d2 = ldmc_mul(b, d, d);
      if (lc->loss == LDMC_LCD_HUBER) {
        ldmc_value c = ldmc_constant_scalar(b, LDMC_F32, lc->huber_c);
        d2 = ldmc_sub(b, ldmc_unary(b, LDMC_OP_SQRT, ldmc_add(b, d2, ldmc_constant_scalar(b, LDMC_F32, lc->huber_c * lc->huber_c))), c);
      }
      int64_t axes[LDMC_MAX_RANK], numel = 1;
      for (int i = 0; i < zs->rank; i++) axes[i] = i, numel *= zs->dims[i];
      ldmc_value loss = ldmc_scale(b, ldmc_reduce(b, LDMC_REDUCE_SUM, d2, zs->rank, axes, false), 1.0 / (double)numel);
      ldmc_builder_pop_scope(b);
      ldmc_builder_output(b, loss, "loss");
      if (lc->probe_outputs) {
        ldmc_builder_output(b, tsf, "t_start");
        ldmc_builder_output(b, scale, "scale");
        ldmc_builder_output(b, x, "x_start");
        ldmc_builder_output(b, xe, "x_prev");
        ldmc_builder_output(b, f, "prediction");
        ldmc_builder_output(b, y, "target");
      }
    }
  }
  free(wt), free(ws), free(wteach), free(wema);
  free(abar), free(tab);
  if (st != LDMC_OK && ldmc_builder_status(b) == LDMC_OK) {
    ldmc_builder_free(b);
    return st;
  }
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  if (!g) {
    ldmc_error_prefix("distillation loss graph: ");
    return st != LDMC_OK ? st : LDMC_ERR_INVALID;
  }
  *out = g;
  return LDMC_OK;
}
