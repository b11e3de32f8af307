/* The SD-1.5 UNet2DConditionModel (diffusers layout and key names), scaled by
 * base width c. Blocks follow diffusers' ResnetBlock2D, Transformer2DModel
 * (one BasicTransformerBlock), Downsample2D and Upsample2D; each block's nodes
 * carry its scope ("down_blocks.1.attentions.0") so stats can attribute cost. */
#include <math.h>
#include <stdlib.h>

#include "frontend/frontend.h"
#include "frontend/nn.h"
#include "models/unet.h"

const char *const ldmc_unet_input_names[LDMC_UNET_MAX_INPUTS] = {"sample", "timestep", "encoder_hidden_states",
                                                                  "guidance", "cond_sample"};

int ldmc_unet_n_inputs(const ldmc_unet_config *cfg) {
  return 3 + (cfg->guidance_embed_dim > 0) + (cfg->cond_channels > 0);
}

int ldmc_unet_inputs(const ldmc_unet_config *cfg, const char **names) {
  int n = 0;
  for (int k = 0; k < 3; k++) names[n++] = ldmc_unet_input_names[k];
  if (cfg->guidance_embed_dim > 0) names[n++] = ldmc_unet_input_names[3];
  if (cfg->cond_channels > 0) names[n++] = ldmc_unet_input_names[4];
  return n;
}



typedef struct unet_ctx {
  ldmc_builder *b;
  const ldmc_unet_config *cfg;
  ldmc_value temb;    /* [B, 4c] time embedding */
  ldmc_value context; /* [B, T, D] */
} unet_ctx;

static const int64_t k_nchw_to_nhwc[4] = {0, 2, 3, 1}, k_nhwc_to_nchw[4] = {0, 3, 1, 2};

/* ResnetBlock2D: GN-SiLU-conv1, + time_emb_proj(silu(temb)), GN-SiLU-conv2,
 * 1x1 conv_shortcut when the width changes; output_scale_factor 1. */
static ldmc_value resnet(unet_ctx *u, ldmc_value x, int64_t out_ch) {
  ldmc_builder *b = u->b;
  const ldmc_shape *xs = ldmc_value_shape(b, x);
  if (!xs) return ldmc_silu(b, x);
  const int64_t in_ch = xs->dims[1], batch = xs->dims[0];
  ldmc_value h = ldmc_nn_group_norm(b, "norm1", x, u->cfg->groups, u->cfg->norm_eps);
  h = ldmc_nn_conv2d(b, "conv1", ldmc_silu(b, h), out_ch, 3, 1, 1, true);
  ldmc_value t = ldmc_nn_linear(b, "time_emb_proj", ldmc_silu(b, u->temb), out_ch, true);
  const int64_t t4[4] = {batch, out_ch, 1, 1};
  h = ldmc_add(b, h, ldmc_reshape(b, t, 4, t4));
  h = ldmc_nn_group_norm(b, "norm2", h, u->cfg->groups, u->cfg->norm_eps);
  h = ldmc_nn_conv2d(b, "conv2", ldmc_silu(b, h), out_ch, 3, 1, 1, true); /* dropout: identity at inference */
  if (in_ch != out_ch) x = ldmc_nn_conv2d(b, "conv_shortcut", x, out_ch, 1, 1, 0, true);
  return ldmc_add(b, x, h);
}

/* BasicTransformerBlock: pre-LayerNorm self-attention, cross-attention to the
 * context, GEGLU feed-forward, each residual. x[B,N,C]. */
static ldmc_value transformer_block(unet_ctx *u, ldmc_value x, int64_t ch) {
  ldmc_builder *b = u->b;
  const int heads = u->cfg->heads;
  const int64_t head_dim = ch / heads;
  const double ln_eps = 1e-5;
  x = ldmc_add(b, x, ldmc_nn_attention(b, "attn1", ldmc_nn_layer_norm(b, "norm1", x, ln_eps), -1, heads, head_dim));
  x = ldmc_add(b, x,
               ldmc_nn_attention(b, "attn2", ldmc_nn_layer_norm(b, "norm2", x, ln_eps), u->context, heads, head_dim));
  int mult = u->cfg->ff_mult > 0 ? u->cfg->ff_mult : 4;
  return ldmc_add(b, x, ldmc_nn_geglu_ff(b, "ff", ldmc_nn_layer_norm(b, "norm3", x, ln_eps), mult));
}

/* Transformer2DModel: GN (eps 1e-6), proj_in, blocks over the H*W tokens,
 * proj_out, + input. proj_in/out are 1x1 convs, or Linear with linear_proj. */
static ldmc_value transformer(unet_ctx *u, ldmc_value x) {
  ldmc_builder *b = u->b;
  const ldmc_shape *xs0 = ldmc_value_shape(b, x);
  if (!xs0) return ldmc_silu(b, x);
  const ldmc_shape xs = *xs0;
  const int64_t n = xs.dims[0], c = xs.dims[1], hh = xs.dims[2], ww = xs.dims[3];
  const int64_t tok[3] = {n, hh * ww, c}, nhwc[4] = {n, hh, ww, c};
  ldmc_value h = ldmc_nn_group_norm(b, "norm", x, u->cfg->groups, u->cfg->transformer_norm_eps);
  if (!u->cfg->linear_proj) h = ldmc_nn_conv2d(b, "proj_in", h, c, 1, 1, 0, true);
  h = ldmc_reshape(b, ldmc_transpose(b, h, k_nchw_to_nhwc), 3, tok);
  if (u->cfg->linear_proj) h = ldmc_nn_linear(b, "proj_in", h, c, true);
  int depth = u->cfg->transformer_depth > 0 ? u->cfg->transformer_depth : 1;
  for (int d = 0; d < depth; d++) {
    ldmc_builder_push_scope(b, "transformer_blocks.%d", d);
    h = transformer_block(u, h, c);
    ldmc_builder_pop_scope(b);
  }
  if (u->cfg->linear_proj) h = ldmc_nn_linear(b, "proj_out", h, c, true);
  h = ldmc_transpose(b, ldmc_reshape(b, h, 4, nhwc), k_nhwc_to_nchw);
  if (!u->cfg->linear_proj) h = ldmc_nn_conv2d(b, "proj_out", h, c, 1, 1, 0, true);
  return ldmc_add(b, h, x);
}

/* [B] -> [B, 2 half] sinusoids of v f_i, f_i = mult exp(-ln(10000) i / div),
 * cos first (diffusers' flip_sin_to_cos) or sin first, under scope. */
static ldmc_value sinusoids(unet_ctx *u, const char *scope, ldmc_value v, int64_t half, double mult, double div,
                            bool cos_first) {
  ldmc_builder *b = u->b;
  float *freqs = malloc((size_t)half * sizeof *freqs);
  if (!freqs) return ldmc_constant(b, LDMC_F32, 1, &half, NULL); /* reports the missing data */
  for (int64_t i = 0; i < half; i++) freqs[i] = (float)(mult * exp(-log(10000.0) * (double)i / div));
  ldmc_builder_push_scope(b, "%s", scope);
  ldmc_value f = ldmc_constant(b, LDMC_F32, 1, &half, freqs);
  free(freqs);
  const int64_t b1[2] = {u->cfg->batch, 1};
  ldmc_value arg = ldmc_mul(b, ldmc_reshape(b, v, 2, b1), f); /* [B, half] */
  ldmc_value c = ldmc_unary(b, LDMC_OP_COS, arg), s = ldmc_unary(b, LDMC_OP_SIN, arg);
  ldmc_value parts[2] = {cos_first ? c : s, cos_first ? s : c};
  ldmc_value emb = ldmc_concatenate(b, 2, parts, 1);
  ldmc_builder_pop_scope(b);
  return emb;
}

/* Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0): [cos(t f), sin(t f)]
 * with f_i = exp(-ln(10000) i / half), then TimestepEmbedding (linear, SiLU,
 * linear). With guidance w, LCM's guidance_scale_embedding(w, dim) =
 * [sin(1000 w f), cos(1000 w f)], f_i = exp(-ln(10000) i / (dim/2 - 1)),
 * projected by cond_proj (no bias) and added before linear_1. */
static ldmc_value time_embedding(unet_ctx *u, ldmc_value timestep, ldmc_value guidance) {
  ldmc_builder *b = u->b;
  const int64_t c = u->cfg->channels;
  ldmc_value emb = sinusoids(u, "time_proj", timestep, c / 2, 1.0, (double)(c / 2), true);
  if (guidance >= 0) {
    int64_t gh = u->cfg->guidance_embed_dim / 2;
    ldmc_value g = sinusoids(u, "guidance_proj", guidance, gh, 1000.0, (double)(gh > 1 ? gh - 1 : 1), false);
    ldmc_builder_push_scope(b, "time_embedding");
    emb = ldmc_add(b, emb, ldmc_nn_linear(b, "cond_proj", g, c, false));
    ldmc_builder_pop_scope(b);
  }
  ldmc_builder_push_scope(b, "time_embedding");
  ldmc_value t = ldmc_nn_linear(b, "linear_1", emb, 4 * c, true);
  t = ldmc_nn_linear(b, "linear_2", ldmc_silu(b, t), 4 * c, true);
  ldmc_builder_pop_scope(b);
  return t;
}

#define MAX_SKIPS (LDMC_UNET_MAX_LEVELS * 64 + 1)

ldmc_status ldmc_unet_build(const ldmc_unet_config *cfg, ldmc_graph **out) {
  *out = NULL;
  LDMC_TRY(ldmc_unet_config_check(cfg));
  ldmc_builder *b = ldmc_builder_new("unet");
  if (!b) return LDMC_ERR_NOMEM;
  unet_ctx u = {.b = b, .cfg = cfg};
  const int64_t B = cfg->batch, c = cfg->channels, L = cfg->n_levels;
  const int64_t sd[4] = {B, cfg->in_channels, cfg->height, cfg->width};
  const int64_t cd[3] = {B, cfg->context_tokens, cfg->context_dim};
  ldmc_value sample = ldmc_parameter(b, ldmc_unet_input_names[0], LDMC_F32, 4, sd);
  ldmc_value timestep = ldmc_parameter(b, ldmc_unet_input_names[1], LDMC_F32, 1, &B);
  u.context = ldmc_parameter(b, ldmc_unet_input_names[2], LDMC_F32, 3, cd);
  ldmc_value guidance = cfg->guidance_embed_dim > 0 ? ldmc_parameter(b, ldmc_unet_input_names[3], LDMC_F32, 1, &B) : -1;
  if (cfg->cond_channels > 0) { /* image conditioning: extra input channels of conv_in */
    const int64_t cd4[4] = {B, cfg->cond_channels, cfg->height, cfg->width};
    ldmc_value cond = ldmc_parameter(b, ldmc_unet_input_names[4], LDMC_F32, 4, cd4);
    sample = ldmc_concatenate(b, 2, (ldmc_value[]){sample, cond}, 1);
  }
  u.temb = time_embedding(&u, timestep, guidance);

  ldmc_value *skips = malloc(MAX_SKIPS * sizeof *skips);
  if (!skips) {
    ldmc_builder_free(b);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory building the U-Net");
  }
  int n_skips = 0;
  ldmc_value x = ldmc_nn_conv2d(b, "conv_in", sample, c, 3, 1, 1, true);
  skips[n_skips++] = x;
  for (int i = 0; i < L; i++) {
    const int64_t ch = c * cfg->channel_mult[i];
    ldmc_builder_push_scope(b, "down_blocks.%d", i);
    for (int j = 0; j < cfg->layers_down; j++) {
      ldmc_builder_push_scope(b, "resnets.%d", j);
      x = resnet(&u, x, ch);
      ldmc_builder_pop_scope(b);
      if (cfg->attend[i]) {
        ldmc_builder_push_scope(b, "attentions.%d", j);
        x = transformer(&u, x);
        ldmc_builder_pop_scope(b);
      }
      skips[n_skips++] = x;
    }
    if (i != L - 1) {
      ldmc_builder_push_scope(b, "downsamplers.0");
      x = ldmc_nn_conv2d(b, "conv", x, ch, 3, 2, 1, true);
      ldmc_builder_pop_scope(b);
      skips[n_skips++] = x;
    }
    ldmc_builder_pop_scope(b);
  }

  const int64_t mid_ch = c * cfg->channel_mult[L - 1];
  ldmc_builder_push_scope(b, "mid_block");
  ldmc_builder_push_scope(b, "resnets.0");
  x = resnet(&u, x, mid_ch);
  ldmc_builder_pop_scope(b);
  if (cfg->mid_attention) {
    ldmc_builder_push_scope(b, "attentions.0");
    x = transformer(&u, x);
    ldmc_builder_pop_scope(b);
  }
  ldmc_builder_push_scope(b, "resnets.1");
  x = resnet(&u, x, mid_ch);
  ldmc_builder_pop_scope(b);
  ldmc_builder_pop_scope(b);

  for (int i = 0; i < L; i++) {
    const int level = (int)L - 1 - i;
    const int64_t ch = c * cfg->channel_mult[level];
    ldmc_builder_push_scope(b, "up_blocks.%d", i);
    for (int j = 0; j < cfg->layers_down + 1; j++) {
      ldmc_value cat[2] = {x, skips[--n_skips]};
      x = ldmc_concatenate(b, 2, cat, 1);
      ldmc_builder_push_scope(b, "resnets.%d", j);
      x = resnet(&u, x, ch);
      ldmc_builder_pop_scope(b);
      if (cfg->attend[level]) {
        ldmc_builder_push_scope(b, "attentions.%d", j);
        x = transformer(&u, x);
        ldmc_builder_pop_scope(b);
      }
    }
    if (i != L - 1) {
      ldmc_builder_push_scope(b, "upsamplers.0");
      x = ldmc_nn_conv2d(b, "conv", ldmc_upsample_nearest(b, x, 2), ch, 3, 1, 1, true);
      ldmc_builder_pop_scope(b);
    }
    ldmc_builder_pop_scope(b);
  }
  free(skips);

  x = ldmc_nn_group_norm(b, "conv_norm_out", x, cfg->groups, cfg->norm_eps);
  ldmc_builder_push_scope(b, "conv_act");
  x = ldmc_silu(b, x);
  ldmc_builder_pop_scope(b);
  x = ldmc_nn_conv2d(b, "conv_out", x, cfg->out_channels, 3, 1, 1, true);
  ldmc_builder_output(b, x, "out_sample");
  ldmc_status st;
  *out = ldmc_builder_finish(b, &st);
  if (st != LDMC_OK) ldmc_error_prefix("building the U-Net (c=%d): ", cfg->channels);
  return st;
}
