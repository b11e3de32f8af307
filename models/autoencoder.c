/* diffusers' AutoencoderKL (see autoencoder.h): Encoder / Decoder of
 * DownEncoderBlock2D, UNetMidBlock2D and UpDecoderBlock2D with
 * ResnetBlock2D (no time embedding), the single-head mid-block Attention,
 * quant_conv / post_quant_conv and the diagonal-Gaussian posterior. Every
 * parameter is named by its diffusers state-dict key, every node carries its
 * block's scope ("encoder.down_blocks.1.resnets.0"). */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "frontend/nn.h"
#include "models/autoencoder.h"

const char *const ldmc_vae_encoder_inputs[1] = {"image"};
const char *const ldmc_vae_decoder_inputs[1] = {"latent"};
const char *const ldmc_vae_loss_inputs[2] = {"image", "rng_key"};

/* ---- configs ---- */

void ldmc_vae_config_default(ldmc_vae_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->in_channels = cfg->out_channels = 1;
  cfg->n_blocks = 3;
  const int ch[3] = {32, 64, 128};
  for (int i = 0; i < 3; i++) cfg->block_out_channels[i] = ch[i];
  cfg->layers_per_block = 1;
  cfg->latent_channels = 4;
  cfg->norm_num_groups = 8;
  cfg->norm_eps = 1e-6;
  cfg->mid_attention = true;
  cfg->height = cfg->width = 32;
  cfg->batch = 1;
  cfg->kl_weight = 1e-6;
  cfg->scaling_factor = 1.0;
}

void ldmc_vae_config_sd15(ldmc_vae_config *cfg) {
  ldmc_vae_config_default(cfg);
  cfg->in_channels = cfg->out_channels = 3;
  cfg->n_blocks = 4;
  const int ch[4] = {128, 256, 512, 512};
  for (int i = 0; i < 4; i++) cfg->block_out_channels[i] = ch[i];
  cfg->layers_per_block = 2;
  cfg->norm_num_groups = 32;
  cfg->height = cfg->width = 512;
  cfg->scaling_factor = 0.18215;
}

ldmc_status ldmc_vae_config_check(const ldmc_vae_config *cfg) {
  const int64_t lim = (int64_t)1 << 24;
  if (!cfg) return ldmc_error(LDMC_ERR_INVALID, "vae: no config");
  if (cfg->n_blocks < 1 || cfg->n_blocks > LDMC_VAE_MAX_BLOCKS)
    return ldmc_error(LDMC_ERR_INVALID, "vae: n_blocks %d is outside 1..%d (the number of block_out_channels)",
                      cfg->n_blocks, LDMC_VAE_MAX_BLOCKS);
  if (cfg->norm_num_groups < 1 || cfg->norm_num_groups > (1 << 20))
    return ldmc_error(LDMC_ERR_INVALID, "vae: norm_num_groups %d is outside 1..%d", cfg->norm_num_groups, 1 << 20);
  for (int i = 0; i < cfg->n_blocks; i++) {
    int c = cfg->block_out_channels[i];
    if (c < 1 || c > (1 << 20))
      return ldmc_error(LDMC_ERR_INVALID, "vae: block_out_channels[%d] = %d is outside 1..%d", i, c, 1 << 20);
    if (c % cfg->norm_num_groups)
      return ldmc_error(LDMC_ERR_INVALID,
                        "vae: block_out_channels[%d] = %d is not divisible by norm_num_groups %d (every GroupNorm "
                        "splits its channels into equal groups)",
                        i, c, cfg->norm_num_groups);
  }
  if (cfg->layers_per_block < 1 || cfg->layers_per_block > 64)
    return ldmc_error(LDMC_ERR_INVALID, "vae: layers_per_block %d is outside 1..64", cfg->layers_per_block);
  if (cfg->in_channels < 1 || cfg->in_channels > 4096 || cfg->out_channels < 1 || cfg->out_channels > 4096)
    return ldmc_error(LDMC_ERR_INVALID, "vae: in_channels %d / out_channels %d outside 1..4096", cfg->in_channels,
                      cfg->out_channels);
  if (cfg->latent_channels < 1 || cfg->latent_channels > 4096)
    return ldmc_error(LDMC_ERR_INVALID, "vae: latent_channels %d is outside 1..4096", cfg->latent_channels);
  if (!(cfg->norm_eps > 0) || !isfinite(cfg->norm_eps))
    return ldmc_error(LDMC_ERR_INVALID, "vae: norm_eps %g must be positive and finite", cfg->norm_eps);
  if (!(cfg->kl_weight >= 0) || !isfinite(cfg->kl_weight))
    return ldmc_error(LDMC_ERR_INVALID, "vae: kl_weight %g must be >= 0 and finite", cfg->kl_weight);
  if (!(cfg->scaling_factor > 0) || !isfinite(cfg->scaling_factor))
    return ldmc_error(LDMC_ERR_INVALID, "vae: scaling_factor %g must be positive and finite", cfg->scaling_factor);
  if (cfg->batch < 1 || cfg->batch > lim)
    return ldmc_error(LDMC_ERR_INVALID, "vae: batch %" PRId64 " is outside 1..%" PRId64, cfg->batch, lim);
  const int64_t div = (int64_t)1 << (cfg->n_blocks - 1);
  if (cfg->height < 1 || cfg->width < 1 || cfg->height > lim || cfg->width > lim || cfg->height % div ||
      cfg->width % div)
    return ldmc_error(LDMC_ERR_INVALID,
                      "vae: image %" PRId64 "x%" PRId64 " must be positive multiples of %" PRId64 " (%d blocks: %d "
                      "downsamples by 2)",
                      cfg->height, cfg->width, div, cfg->n_blocks, cfg->n_blocks - 1);
  return LDMC_OK;
}

void ldmc_vae_latent_dims(const ldmc_vae_config *cfg, int64_t dims[4]) {
  const int64_t div = (int64_t)1 << (cfg->n_blocks > 0 && cfg->n_blocks <= LDMC_VAE_MAX_BLOCKS ? cfg->n_blocks - 1 : 0);
  dims[0] = cfg->batch;
  dims[1] = cfg->latent_channels;
  dims[2] = cfg->height / div;
  dims[3] = cfg->width / div;
}

/* ---- blocks ---- */

typedef struct vae_ctx {
  ldmc_builder *b;
  const ldmc_vae_config *cfg;
} vae_ctx;

static ldmc_value group_norm(vae_ctx *v, const char *name, ldmc_value x) {
  return ldmc_nn_group_norm(v->b, name, x, v->cfg->norm_num_groups, v->cfg->norm_eps);
}

/* Channels of x[N,C,H,W], or -1 after an error (the builder has it). */
static int64_t channels(ldmc_builder *b, ldmc_value x) {
  const ldmc_shape *s = ldmc_value_shape(b, x);
  return s && s->rank == 4 ? s->dims[1] : -1;
}

/* ResnetBlock2D with temb_channels=None: norm1-SiLU-conv1, norm2-SiLU-conv2
 * (dropout: identity), a 1x1 conv_shortcut when the width changes;
 * output_scale_factor 1. */
static ldmc_value resnet(vae_ctx *v, ldmc_value x, int64_t out_ch) {
  ldmc_builder *b = v->b;
  const int64_t in_ch = channels(b, x);
  ldmc_value h = ldmc_nn_conv2d(b, "conv1", ldmc_silu(b, group_norm(v, "norm1", x)), out_ch, 3, 1, 1, true);
  h = ldmc_nn_conv2d(b, "conv2", ldmc_silu(b, group_norm(v, "norm2", h)), out_ch, 3, 1, 1, true);
  if (in_ch != out_ch) x = ldmc_nn_conv2d(b, "conv_shortcut", x, out_ch, 1, 1, 0, true);
  return ldmc_add(b, x, h);
}

/* diffusers Attention as the VAE's mid block builds it (heads = 1, head width
 * C, bias=True, residual_connection, rescale 1): group_norm over x[N,C,H,W],
 * tokens [N,HW,C], to_q/to_k/to_v and to_out.0 Linear with bias, logits
 * scaled by 1/sqrt(C), back to [N,C,H,W], plus x. */
static ldmc_value attention(vae_ctx *v, ldmc_value x) {
  ldmc_builder *b = v->b;
  const ldmc_shape *s = ldmc_value_shape(b, x);
  if (!s) return ldmc_silu(b, x); /* reports the bad value */
  const int64_t n = s->dims[0], c = s->dims[1], hh = s->dims[2], ww = s->dims[3], tok = hh * ww;
  const int64_t nct[3] = {n, c, tok}, ntc[3] = {n, tok, c}, heads[4] = {n, 1, tok, c}, nchw[4] = {n, c, hh, ww};
  const int64_t swap[3] = {0, 2, 1};
  ldmc_value t = ldmc_transpose(b, ldmc_reshape(b, group_norm(v, "group_norm", x), 3, nct), swap);
  ldmc_value q = ldmc_reshape(b, ldmc_nn_linear(b, "to_q", t, c, true), 4, heads);
  ldmc_value k = ldmc_reshape(b, ldmc_nn_linear(b, "to_k", t, c, true), 4, heads);
  ldmc_value val = ldmc_reshape(b, ldmc_nn_linear(b, "to_v", t, c, true), 4, heads);
  ldmc_value o = ldmc_reshape(b, ldmc_attention(b, q, k, val, 1.0 / sqrt((double)c)), 3, ntc);
  o = ldmc_nn_linear(b, "to_out.0", o, c, true); /* to_out.1: dropout, identity */
  o = ldmc_reshape(b, ldmc_transpose(b, o, swap), 4, nchw);
  return ldmc_add(b, o, x);
}

/* UNetMidBlock2D: resnets.0, attentions.0 (mid_attention), resnets.1, at the
 * input's width. */
static ldmc_value mid_block(vae_ctx *v, ldmc_value x) {
  ldmc_builder *b = v->b;
  const int64_t c = channels(b, x);
  ldmc_builder_push_scope(b, "mid_block");
  ldmc_builder_push_scope(b, "resnets.0");
  x = resnet(v, x, c);
  ldmc_builder_pop_scope(b);
  if (v->cfg->mid_attention) {
    ldmc_builder_push_scope(b, "attentions.0");
    x = attention(v, x);
    ldmc_builder_pop_scope(b);
  }
  ldmc_builder_push_scope(b, "resnets.1");
  x = resnet(v, x, c);
  ldmc_builder_pop_scope(b);
  ldmc_builder_pop_scope(b);
  return x;
}

/* conv_norm_out, SiLU (conv_act), conv_out 3x3 to out_ch. */
static ldmc_value out_head(vae_ctx *v, ldmc_value x, int64_t out_ch) {
  ldmc_builder *b = v->b;
  x = group_norm(v, "conv_norm_out", x);
  ldmc_builder_push_scope(b, "conv_act");
  x = ldmc_silu(b, x);
  ldmc_builder_pop_scope(b);
  return ldmc_nn_conv2d(b, "conv_out", x, out_ch, 3, 1, 1, true);
}

/* Encoder, quant_conv and the posterior's parameters: *mean, *logvar [B,L,h,w]. */
static void encode(vae_ctx *v, ldmc_value x, ldmc_value *mean, ldmc_value *logvar) {
  ldmc_builder *b = v->b;
  const ldmc_vae_config *cfg = v->cfg;
  const int nb = cfg->n_blocks;
  ldmc_builder_push_scope(b, "encoder");
  x = ldmc_nn_conv2d(b, "conv_in", x, cfg->block_out_channels[0], 3, 1, 1, true);
  for (int i = 0; i < nb; i++) {
    const int64_t ch = cfg->block_out_channels[i];
    ldmc_builder_push_scope(b, "down_blocks.%d", i);
    for (int j = 0; j < cfg->layers_per_block; j++) {
      ldmc_builder_push_scope(b, "resnets.%d", j);
      x = resnet(v, x, ch);
      ldmc_builder_pop_scope(b);
    }
    if (i != nb - 1) {
      /* Downsample2D(padding=0): zero pad right and bottom by one, then 3x3
       * stride 2 unpadded (not the U-Net's symmetric pad 1) */
      const int64_t lo[4] = {0, 0, 0, 0}, hi[4] = {0, 0, 1, 1};
      ldmc_builder_push_scope(b, "downsamplers.0");
      x = ldmc_pad(b, x, ldmc_constant_scalar(b, LDMC_F32, 0.0), lo, hi, NULL);
      x = ldmc_nn_conv2d(b, "conv", x, ch, 3, 2, 0, true);
      ldmc_builder_pop_scope(b);
    }
    ldmc_builder_pop_scope(b);
  }
  x = mid_block(v, x);
  x = out_head(v, x, 2 * (int64_t)cfg->latent_channels); /* double_z */
  ldmc_builder_pop_scope(b);
  x = ldmc_nn_conv2d(b, "quant_conv", x, 2 * (int64_t)cfg->latent_channels, 1, 1, 0, true);

  /* DiagonalGaussianDistribution: mean, logvar = chunk(moments, 2, dim=1);
   * logvar clamped to [-30, 20] */
  ldmc_builder_push_scope(b, "posterior");
  int64_t d[4];
  ldmc_vae_latent_dims(cfg, d);
  const int64_t lo[4] = {0, 0, 0, 0}, mid[4] = {d[0], d[1], d[2], d[3]}, lo2[4] = {0, d[1], 0, 0},
                hi2[4] = {d[0], 2 * d[1], d[2], d[3]};
  *mean = ldmc_slice(b, x, lo, mid, NULL);
  ldmc_value lv = ldmc_slice(b, x, lo2, hi2, NULL);
  lv = ldmc_binary(b, LDMC_OP_MAX, lv, ldmc_constant_scalar(b, LDMC_F32, -30.0));
  *logvar = ldmc_binary(b, LDMC_OP_MIN, lv, ldmc_constant_scalar(b, LDMC_F32, 20.0));
  ldmc_builder_pop_scope(b);
}

/* post_quant_conv and the Decoder: z[B,L,h,w] -> [B,Cout,H,W]. up_blocks.0 is
 * the deepest (widest) level: block_out_channels reversed. */
static ldmc_value decode(vae_ctx *v, ldmc_value z) {
  ldmc_builder *b = v->b;
  const ldmc_vae_config *cfg = v->cfg;
  const int nb = cfg->n_blocks;
  ldmc_value x = ldmc_nn_conv2d(b, "post_quant_conv", z, cfg->latent_channels, 1, 1, 0, true);
  ldmc_builder_push_scope(b, "decoder");
  x = ldmc_nn_conv2d(b, "conv_in", x, cfg->block_out_channels[nb - 1], 3, 1, 1, true);
  x = mid_block(v, x);
  for (int i = 0; i < nb; i++) {
    const int64_t ch = cfg->block_out_channels[nb - 1 - i];
    ldmc_builder_push_scope(b, "up_blocks.%d", i);
    for (int j = 0; j < cfg->layers_per_block + 1; j++) {
      ldmc_builder_push_scope(b, "resnets.%d", j);
      x = resnet(v, x, ch);
      ldmc_builder_pop_scope(b);
    }
    if (i != nb - 1) {
      ldmc_builder_push_scope(b, "upsamplers.0");
      x = ldmc_nn_conv2d(b, "conv", ldmc_upsample_nearest(b, x, 2), ch, 3, 1, 1, true);
      ldmc_builder_pop_scope(b);
    }
    ldmc_builder_pop_scope(b);
  }
  x = out_head(v, x, cfg->out_channels);
  ldmc_builder_pop_scope(b);
  return x;
}

/* ---- graphs ---- */

static ldmc_status start(const ldmc_vae_config *cfg, const char *name, vae_ctx *v) {
  LDMC_TRY(ldmc_vae_config_check(cfg));
  v->cfg = cfg;
  v->b = ldmc_builder_new(name);
  return v->b ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "vae: out of memory starting graph '%s'", name);
}

static ldmc_status finish(vae_ctx *v, const char *what, ldmc_graph **out) {
  ldmc_status st;
  *out = ldmc_builder_finish(v->b, &st);
  if (st != LDMC_OK) ldmc_error_prefix("building the autoencoder's %s: ", what);
  return st;
}

static ldmc_value image_input(vae_ctx *v) {
  const int64_t d[4] = {v->cfg->batch, v->cfg->in_channels, v->cfg->height, v->cfg->width};
  return ldmc_parameter(v->b, ldmc_vae_encoder_inputs[0], LDMC_F32, 4, d);
}

ldmc_status ldmc_vae_encoder_build(const ldmc_vae_config *cfg, ldmc_graph **out) {
  *out = NULL;
  vae_ctx v;
  LDMC_TRY(start(cfg, "vae_encoder", &v));
  ldmc_value mean, logvar;
  encode(&v, image_input(&v), &mean, &logvar);
  ldmc_builder_output(v.b, mean, "mean");
  ldmc_builder_output(v.b, logvar, "logvar");
  return finish(&v, "encoder", out);
}

ldmc_status ldmc_vae_decoder_build(const ldmc_vae_config *cfg, ldmc_graph **out) {
  *out = NULL;
  vae_ctx v;
  LDMC_TRY(start(cfg, "vae_decoder", &v));
  int64_t d[4];
  ldmc_vae_latent_dims(cfg, d);
  ldmc_value z = ldmc_parameter(v.b, ldmc_vae_decoder_inputs[0], LDMC_F32, 4, d);
  ldmc_builder_output(v.b, decode(&v, z), "decoded");
  return finish(&v, "decoder", out);
}

ldmc_status ldmc_vae_build(const ldmc_vae_config *cfg, ldmc_graph **out) {
  *out = NULL;
  vae_ctx v;
  LDMC_TRY(start(cfg, "vae", &v));
  ldmc_value mean, logvar;
  encode(&v, image_input(&v), &mean, &logvar);
  ldmc_builder_output(v.b, decode(&v, mean), "decoded");
  ldmc_builder_output(v.b, mean, "mean");
  ldmc_builder_output(v.b, logvar, "logvar");
  return finish(&v, "forward graph", out);
}

static ldmc_value rng_normal(ldmc_builder *b, ldmc_value key, const int64_t dims[4]) {
  return ldmc_rng_batch(b, LDMC_OP_RNG_NORMAL, LDMC_F32, 4, dims, key);
}

static ldmc_value sum_all(ldmc_builder *b, ldmc_value x) {
  const int64_t axes[4] = {0, 1, 2, 3};
  return ldmc_reduce(b, LDMC_REDUCE_SUM, x, 4, axes, false);
}

ldmc_status ldmc_vae_loss_build(const ldmc_vae_config *cfg, ldmc_graph **out) {
  *out = NULL;
  vae_ctx v;
  LDMC_TRY(ldmc_vae_config_check(cfg));
  if (cfg->out_channels != cfg->in_channels)
    return ldmc_error(LDMC_ERR_INVALID,
                      "vae loss: the reconstruction is compared with the image, so out_channels %d must equal "
                      "in_channels %d",
                      cfg->out_channels, cfg->in_channels);
  LDMC_TRY(start(cfg, "vae", &v));
  ldmc_builder *b = v.b;
  ldmc_value image = image_input(&v); /* the data first: ldmc_train_step_build's n_data_params */
  ldmc_value key = ldmc_parameter(b, ldmc_vae_loss_inputs[1], LDMC_I64, 0, NULL);
  ldmc_value mean, logvar;
  encode(&v, image, &mean, &logvar);
  int64_t d[4];
  ldmc_vae_latent_dims(cfg, d);

  ldmc_builder_push_scope(b, "posterior"); /* DiagonalGaussianDistribution.sample() */
  ldmc_value z = ldmc_add(b, mean, ldmc_mul(b, ldmc_unary(b, LDMC_OP_EXP, ldmc_scale(b, logvar, 0.5)),
                                            rng_normal(b, key, d)));
  ldmc_builder_pop_scope(b);
  ldmc_value rec = decode(&v, z);

  ldmc_builder_push_scope(b, "loss");
  const double n_pix = (double)cfg->batch * cfg->out_channels * (double)cfg->height * (double)cfg->width;
  ldmc_value diff = ldmc_sub(b, rec, image);
  ldmc_value recon = ldmc_scale(b, sum_all(b, ldmc_mul(b, diff, diff)), 1.0 / n_pix);
  ldmc_value var = ldmc_unary(b, LDMC_OP_EXP, logvar);
  ldmc_value t = ldmc_add(b, ldmc_mul(b, mean, mean), var);
  t = ldmc_sub(b, ldmc_sub(b, t, ldmc_constant_scalar(b, LDMC_F32, 1.0)), logvar);
  ldmc_value kl = ldmc_scale(b, sum_all(b, t), 0.5 / (double)cfg->batch);
  ldmc_value loss = ldmc_add(b, recon, ldmc_scale(b, kl, cfg->kl_weight));
  ldmc_builder_pop_scope(b);
  ldmc_builder_output(b, loss, "loss");
  ldmc_builder_output(b, recon, "recon");
  ldmc_builder_output(b, kl, "kl");
  return finish(&v, "loss graph", out);
}

ldmc_status ldmc_vae_train_step_build(const ldmc_vae_config *cfg, const ldmc_train_opts *o, ldmc_graph **step) {
  *step = NULL;
  ldmc_train_opts to = o ? *o : (ldmc_train_opts){0};
  if (to.n_data_params != 0 && to.n_data_params != LDMC_VAE_LOSS_N_INPUTS)
    return ldmc_error(LDMC_ERR_INVALID, "vae train step: n_data_params = %d, but the loss graph has %d data inputs",
                      (int)to.n_data_params, LDMC_VAE_LOSS_N_INPUTS);
  if (to.loss && strcmp(to.loss, "loss") != 0)
    return ldmc_error(LDMC_ERR_INVALID, "vae train step: loss '%s' requested, but the loss graph's loss is 'loss'",
                      to.loss);
  to.n_data_params = LDMC_VAE_LOSS_N_INPUTS;
  to.loss = "loss";
  ldmc_graph *g = NULL;
  LDMC_TRY(ldmc_vae_loss_build(cfg, &g));
  ldmc_status st = ldmc_train_step_build(g, &to, step); /* named "vae.train_step" after the loss graph */
  ldmc_graph_free(g);
  return st;
}

ldmc_status ldmc_vae_param_count(const ldmc_vae_config *cfg, int64_t *tensors, int64_t *params) {
  ldmc_graph *g = NULL;
  LDMC_TRY(ldmc_vae_build(cfg, &g));
  int64_t nt = 0, np = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER || !strcmp(n->attrs.name, ldmc_vae_encoder_inputs[0])) continue;
    int64_t e = 0;
    ldmc_shape_numel(&n->shape, 0, &e);
    nt++;
    np += e;
  }
  ldmc_graph_free(g);
  if (tensors) *tensors = nt;
  if (params) *params = np;
  return LDMC_OK;
}
