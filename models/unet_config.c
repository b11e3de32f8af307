/* U-Net configs: the family's defaults, SD-1.5, checks and the CLI options. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/unet.h"

/* The largest base width (the CLI's limit; block widths stay below 2^24). */
#define LDMC_UNET_MAX_CHANNELS (1 << 20)

void ldmc_unet_config_default(ldmc_unet_config *cfg, int channels) {
  memset(cfg, 0, sizeof *cfg);
  cfg->channels = channels;
  cfg->n_levels = 4;
  const int mult[4] = {1, 2, 4, 4};
  for (int i = 0; i < 4; i++) {
    cfg->channel_mult[i] = mult[i];
    cfg->attend[i] = i < 3;
  }
  cfg->mid_attention = true;
  cfg->layers_down = 2;
  cfg->heads = 8;
  cfg->groups = 32;
  cfg->norm_eps = 1e-5;
  cfg->transformer_norm_eps = 1e-6;
  cfg->context_dim = 1024;
  cfg->context_tokens = 77;
  cfg->in_channels = cfg->out_channels = 4;
  cfg->linear_proj = false;
  cfg->height = cfg->width = 64;
  cfg->batch = 1;
  cfg->transformer_depth = 1;
  cfg->ff_mult = 4;
}

void ldmc_unet_config_sd15(ldmc_unet_config *cfg) {
  ldmc_unet_config_default(cfg, 320);
  cfg->context_dim = 768;
}

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static int64_t lcm64(int64_t a, int64_t b) { return a / gcd64(a, b) * b; }

/* The one rule for the base width c, stated in full whatever part of it c
 * breaks: every block width c * channel_mult[i] must be divisible by the
 * GroupNorm groups (and, where the level attends, by the heads), and c must be
 * even (the sinusoidal timestep embedding has c/2 frequencies). That makes c a
 * multiple of `step` (32 for the family's defaults), at most
 * LDMC_UNET_MAX_CHANNELS. */
static ldmc_status check_channels(const ldmc_unet_config *cfg, int64_t c) {
  int64_t step = 2;
  char mults[128] = "";
  size_t w = 0;
  for (int i = 0; i < cfg->n_levels && i < LDMC_UNET_MAX_LEVELS; i++) {
    int64_t m = cfg->channel_mult[i] > 0 ? cfg->channel_mult[i] : 1;
    step = lcm64(step, cfg->groups / gcd64(cfg->groups, m));
    bool attends = cfg->attend[i] || (i == cfg->n_levels - 1 && cfg->mid_attention);
    if (attends) step = lcm64(step, cfg->heads / gcd64(cfg->heads, m));
    if (w < sizeof mults) {
      if (m == 1) w += (size_t)snprintf(mults + w, sizeof mults - w, "%sc", i ? "," : "");
      else w += (size_t)snprintf(mults + w, sizeof mults - w, "%s%dc", i ? "," : "", (int)m);
    }
  }
  int64_t hi = LDMC_UNET_MAX_CHANNELS / step * step;
  if (c >= step && c <= hi && c % step == 0) return LDMC_OK;
  return ldmc_error(LDMC_ERR_INVALID,
                    "unet: channels %" PRId64 ": the base width c must be a multiple of %" PRId64 " from %" PRId64
                    " to %" PRId64 " (block widths %s divisible by the %d GroupNorm groups and the %d attention heads; "
                    "c even)",
                    c, step, step, hi, mults, cfg->groups, cfg->heads);
}

ldmc_status ldmc_unet_config_check(const ldmc_unet_config *cfg) {
  const int64_t lim = (int64_t)1 << 24;
  if (cfg->n_levels < 1 || cfg->n_levels > LDMC_UNET_MAX_LEVELS)
    return ldmc_error(LDMC_ERR_INVALID, "unet: n_levels %d is outside 1..%d", cfg->n_levels, LDMC_UNET_MAX_LEVELS);
  if (cfg->layers_down < 1 || cfg->layers_down > 64)
    return ldmc_error(LDMC_ERR_INVALID, "unet: layers_down %d is outside 1..64", cfg->layers_down);
  if (cfg->heads < 1) return ldmc_error(LDMC_ERR_INVALID, "unet: heads %d must be >= 1", cfg->heads);
  if (cfg->groups < 1) return ldmc_error(LDMC_ERR_INVALID, "unet: groups %d must be >= 1", cfg->groups);
  LDMC_TRY(check_channels(cfg, cfg->channels));
  if (cfg->transformer_depth < 0 || cfg->transformer_depth > 64 || cfg->ff_mult < 0 || cfg->ff_mult > 64)
    return ldmc_error(LDMC_ERR_INVALID, "unet: transformer_depth %d / ff_mult %d outside 0..64",
                      cfg->transformer_depth, cfg->ff_mult);
  if (cfg->cond_channels < 0 || cfg->cond_channels > 4096)
    return ldmc_error(LDMC_ERR_INVALID, "unet: cond_channels %d must be 0 (none) or in 1..4096", cfg->cond_channels);
  if (cfg->guidance_embed_dim < 0 || cfg->guidance_embed_dim == 2 || cfg->guidance_embed_dim % 2 ||
      cfg->guidance_embed_dim > 4096)
    return ldmc_error(LDMC_ERR_INVALID, "unet: guidance_embed_dim %d must be 0 (none) or even in 4..4096",
                      cfg->guidance_embed_dim);
  for (int i = 0; i < cfg->n_levels; i++) {
    int m = cfg->channel_mult[i];
    if (m < 1 || m > 64) return ldmc_error(LDMC_ERR_INVALID, "unet: channel_mult[%d] = %d is outside 1..64", i, m);
    int64_t ch = (int64_t)cfg->channels * m;
    if (ch > lim) return ldmc_error(LDMC_ERR_INVALID, "unet: level %d width %" PRId64 " is too large", i, ch);
    if (ch % cfg->groups)
      return ldmc_error(LDMC_ERR_INVALID, "unet: level %d width %" PRId64 " is not divisible by groups %d", i, ch,
                        cfg->groups);
    bool attends = cfg->attend[i] || (i == cfg->n_levels - 1 && cfg->mid_attention);
    if (attends && ch % cfg->heads)
      return ldmc_error(LDMC_ERR_INVALID, "unet: level %d width %" PRId64 " is not divisible by heads %d", i, ch,
                        cfg->heads);
  }
  if (cfg->context_dim < 1 || cfg->context_tokens < 1 || cfg->context_dim > lim || cfg->context_tokens > lim)
    return ldmc_error(LDMC_ERR_INVALID, "unet: context %dx%d must be positive", cfg->context_dim,
                      cfg->context_tokens);
  if (cfg->in_channels < 1 || cfg->out_channels < 1 || cfg->in_channels > 4096 || cfg->out_channels > 4096)
    return ldmc_error(LDMC_ERR_INVALID, "unet: in/out channels %d/%d outside 1..4096", cfg->in_channels,
                      cfg->out_channels);
  if (cfg->batch < 1 || cfg->batch > lim)
    return ldmc_error(LDMC_ERR_INVALID, "unet: batch %" PRId64 " is outside 1..%" PRId64, cfg->batch, lim);
  int64_t div = (int64_t)1 << (cfg->n_levels - 1);
  if (cfg->height < 1 || cfg->width < 1 || cfg->height > lim || cfg->width > lim || cfg->height % div ||
      cfg->width % div)
    return ldmc_error(LDMC_ERR_INVALID, "unet: latent %" PRId64 "x%" PRId64 " must be positive multiples of %" PRId64
                      " (%d levels)", cfg->height, cfg->width, div, cfg->n_levels);
  if (!(cfg->norm_eps > 0) || !(cfg->transformer_norm_eps > 0))
    return ldmc_error(LDMC_ERR_INVALID, "unet: norm eps must be positive");
  return LDMC_OK;
}

/* Parses "AxBx..." into exactly n (or, if n2 > 0, n2) positive dims. */
static ldmc_status parse_dims(const char *what, const char *s, int n, int n2, int64_t *out, int *got) {
  int k = 0;
  const char *p = s;
  while (*p) {
    if (k == (n2 > n ? n2 : n)) break;
    if (*p < '0' || *p > '9') break;
    errno = 0;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (errno || v < 1 || v > ((int64_t)1 << 24)) break;
    out[k++] = v;
    p = end;
    if (*p == 'x' && p[1]) p++;
    else if (*p) break;
  }
  if (*p || (k != n && k != n2))
    return n2 > 0 ? ldmc_error(LDMC_ERR_INVALID, "%s '%s': expected %d or %d positive numbers joined by 'x'", what, s,
                               n, n2)
                  : ldmc_error(LDMC_ERR_INVALID, "%s '%s': expected %d positive numbers joined by 'x'", what, s, n);
  *got = k;
  return LDMC_OK;
}

ldmc_status ldmc_unet_parse_widths(const char *s, int *out, int max, int *n_out) {
  int k = 0;
  const char *p = s;
  *n_out = 0;
  ldmc_unet_config def;
  ldmc_unet_config_default(&def, 320);
  while (*p) {
    if (*p < '0' || *p > '9') break;
    errno = 0;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (errno || v > INT32_MAX) v = INT32_MAX; /* out of range: the rule's message below says so */
    if (k == max)
      return max == 1 ? ldmc_error(LDMC_ERR_INVALID, "channels '%s': one width here (ldmc stats and ldmc profile take a list)", s)
                      : ldmc_error(LDMC_ERR_INVALID, "channels '%s': more than %d widths", s, max);
    /* the range and divisibility rule of the family's defaults (groups 32, heads 8) */
    LDMC_TRY(check_channels(&def, v));
    out[k++] = (int)v;
    p = end;
    if (*p == ',' && p[1] && max > 1) p++;
    else if (*p) break;
  }
  if (*p || k == 0)
    return max == 1 ? ldmc_error(LDMC_ERR_INVALID, "channels '%s': expected one width, a whole number such as 320", s)
                    : ldmc_error(LDMC_ERR_INVALID, "channels '%s': expected widths separated by commas, e.g. 64,96,128", s);
  *n_out = k;
  return LDMC_OK;
}

ldmc_status ldmc_unet_config_from_args(ldmc_unet_config *cfg, const char *channels, const char *latent,
                                       const char *context, int64_t batch) {
  int c = 320, n;
  if (channels) {
    LDMC_TRY(ldmc_unet_parse_widths(channels, &c, 1, &n));
  }
  ldmc_unet_config_default(cfg, c);
  int64_t d[3];
  int got;
  if (latent) {
    LDMC_TRY(parse_dims("latent", latent, 2, 3, d, &got));
    cfg->height = d[0];
    cfg->width = d[1];
    if (got == 3) cfg->in_channels = cfg->out_channels = (int)d[2];
  }
  if (context) {
    LDMC_TRY(parse_dims("context", context, 2, 0, d, &got));
    cfg->context_dim = (int)d[0];
    cfg->context_tokens = (int)d[1];
  }
  if (batch < 0) return ldmc_error(LDMC_ERR_INVALID, "batch %" PRId64 " must be >= 1", batch);
  if (batch > 0) cfg->batch = batch;
  return ldmc_unet_config_check(cfg);
}
