/* The U-Net graph against an independent layer-by-layer account of the
 * SD-1.5 architecture written here (names, shapes, parameter counts and
 * matrix-product FLOPs), and against the published SD-1.5 figures. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "models/unet.h"
#include "test_util.h"

/* ---- the independent account ---- */
typedef struct spec {
  char name[160];
  int rank;
  int64_t d[4];
} spec;

static spec g_specs[4096];
static int g_n;
static int64_t g_mac; /* 2 x multiply-adds */

static void add_spec(int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...) {
  spec *s = &g_specs[g_n++];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->name, sizeof s->name, fmt, ap);
  va_end(ap);
  s->rank = rank;
  int64_t d[4] = {d0, d1, d2, d3};
  memcpy(s->d, d, sizeof d);
}

/* conv k x k, in -> out, producing an hw-pixel map per image */
static void a_conv(const char *p, int64_t in, int64_t out, int64_t k, int64_t batch, int64_t hw) {
  add_spec(4, out, in, k, k, "%s.weight", p);
  add_spec(1, out, 0, 0, 0, "%s.bias", p);
  g_mac += 2 * batch * hw * out * in * k * k;
}
static void a_lin(const char *p, int64_t in, int64_t out, int bias, int64_t rows) {
  add_spec(2, out, in, 0, 0, "%s.weight", p);
  if (bias) add_spec(1, out, 0, 0, 0, "%s.bias", p);
  g_mac += 2 * rows * in * out;
}
static void a_norm(const char *p, int64_t c) {
  add_spec(1, c, 0, 0, 0, "%s.weight", p);
  add_spec(1, c, 0, 0, 0, "%s.bias", p);
}

static void a_resnet(const char *p, int64_t in, int64_t out, int64_t temb, int64_t batch, int64_t hw) {
  char q[200];
  snprintf(q, sizeof q, "%s.norm1", p), a_norm(q, in);
  snprintf(q, sizeof q, "%s.conv1", p), a_conv(q, in, out, 3, batch, hw);
  snprintf(q, sizeof q, "%s.time_emb_proj", p), a_lin(q, temb, out, 1, batch);
  snprintf(q, sizeof q, "%s.norm2", p), a_norm(q, out);
  snprintf(q, sizeof q, "%s.conv2", p), a_conv(q, out, out, 3, batch, hw);
  if (in != out) snprintf(q, sizeof q, "%s.conv_shortcut", p), a_conv(q, in, out, 1, batch, hw);
}

static void a_attn(const char *p, int64_t c, int64_t kv_in, int64_t batch, int64_t n, int64_t m) {
  char q[200];
  snprintf(q, sizeof q, "%s.to_q", p), a_lin(q, c, c, 0, batch * n);
  snprintf(q, sizeof q, "%s.to_k", p), a_lin(q, kv_in, c, 0, batch * m);
  snprintf(q, sizeof q, "%s.to_v", p), a_lin(q, kv_in, c, 0, batch * m);
  snprintf(q, sizeof q, "%s.to_out.0", p), a_lin(q, c, c, 1, batch * n);
  g_mac += 2 * 2 * batch * n * m * c; /* Q K^T and P V over all heads: heads x head_dim = c */
}

static void a_transformer(const char *p, int64_t c, int64_t ctx_dim, int64_t tokens, int64_t batch, int64_t hw) {
  char q[200];
  snprintf(q, sizeof q, "%s.norm", p), a_norm(q, c);
  snprintf(q, sizeof q, "%s.proj_in", p), a_conv(q, c, c, 1, batch, hw);
  const char *blk = "transformer_blocks.0";
  snprintf(q, sizeof q, "%s.%s.norm1", p, blk), a_norm(q, c);
  snprintf(q, sizeof q, "%s.%s.attn1", p, blk), a_attn(q, c, c, batch, hw, hw);
  snprintf(q, sizeof q, "%s.%s.norm2", p, blk), a_norm(q, c);
  snprintf(q, sizeof q, "%s.%s.attn2", p, blk), a_attn(q, c, ctx_dim, batch, hw, tokens);
  snprintf(q, sizeof q, "%s.%s.norm3", p, blk), a_norm(q, c);
  snprintf(q, sizeof q, "%s.%s.ff.net.0.proj", p, blk), a_lin(q, c, 8 * c, 1, batch * hw);
  snprintf(q, sizeof q, "%s.%s.ff.net.2", p, blk), a_lin(q, 4 * c, c, 1, batch * hw);
  snprintf(q, sizeof q, "%s.proj_out", p), a_conv(q, c, c, 1, batch, hw);
}

/* SD-1.5 layout at width c: 4 levels [c,2c,4c,4c], attention on levels 0-2 and the middle. */
static void account(int64_t c, int64_t ctx_dim, int64_t tokens, int64_t batch, int64_t h, int64_t w) {
  g_n = 0;
  g_mac = 0;
  const int64_t ch[4] = {c, 2 * c, 4 * c, 4 * c}, temb = 4 * c;
  const int att[4] = {1, 1, 1, 0};
  char p[200];
  add_spec(4, batch, 4, h, w, "sample"); /* inputs first, as the graph declares them */
  add_spec(1, batch, 0, 0, 0, "timestep");
  add_spec(3, batch, tokens, ctx_dim, 0, "encoder_hidden_states");
  a_lin("time_embedding.linear_1", c, temb, 1, batch);
  a_lin("time_embedding.linear_2", temb, temb, 1, batch);
  int64_t hw = h * w;
  a_conv("conv_in", 4, c, 3, batch, hw);
  int64_t skip[16];
  int ns = 0;
  skip[ns++] = c;
  int64_t cur = c;
  for (int i = 0; i < 4; i++) {
    for (int j = 0; j < 2; j++) {
      snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
      a_resnet(p, cur, ch[i], temb, batch, hw);
      cur = ch[i];
      if (att[i]) {
        snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
        a_transformer(p, cur, ctx_dim, tokens, batch, hw);
      }
      skip[ns++] = cur;
    }
    if (i < 3) {
      hw /= 4;
      snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
      a_conv(p, cur, cur, 3, batch, hw);
      skip[ns++] = cur;
    }
  }
  a_resnet("mid_block.resnets.0", cur, cur, temb, batch, hw);
  a_transformer("mid_block.attentions.0", cur, ctx_dim, tokens, batch, hw);
  a_resnet("mid_block.resnets.1", cur, cur, temb, batch, hw);
  for (int i = 0; i < 4; i++) {
    int lvl = 3 - i;
    for (int j = 0; j < 3; j++) {
      int64_t in = cur + skip[--ns];
      snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
      a_resnet(p, in, ch[lvl], temb, batch, hw);
      cur = ch[lvl];
      if (att[lvl]) {
        snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
        a_transformer(p, cur, ctx_dim, tokens, batch, hw);
      }
    }
    if (i < 3) {
      hw *= 4;
      snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
      a_conv(p, cur, cur, 3, batch, hw);
    }
  }
  a_norm("conv_norm_out", c);
  a_conv("conv_out", c, 4, 3, batch, hw);
}

static int64_t spec_numel(const spec *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->d[i];
  return n;
}

/* Graph parameters vs the account: same set of names, same shapes; returns
 * the weight tensor count and parameter total (inputs excluded). */
static void compare(const ldmc_graph *g, int64_t *tensors, int64_t *params) {
  int n_bad = 0, seen = 0;
  *tensors = *params = 0;
  for (int i = 0; i < g_n; i++) {
    const spec *s = &g_specs[i];
    int32_t id = ldmc_graph_find_param(g, s->name);
    if (id < 0) {
      if (n_bad++ < 5) fprintf(stderr, "  missing parameter %s\n", s->name);
      continue;
    }
    seen++;
    ldmc_shape want = ldmc_shape_make(s->rank, s->d);
    if (!ldmc_shape_equal(&g->nodes[id].shape, &want) || g->nodes[id].dtype != LDMC_F32) {
      char a[80], b[80];
      if (n_bad++ < 5)
        fprintf(stderr, "  %s: graph %s, expected %s\n", s->name, ldmc_shape_str(&g->nodes[id].shape, a, sizeof a),
                ldmc_shape_str(&want, b, sizeof b));
    }
  }
  CHECK_MSG(n_bad == 0, "%d parameters differ from the account", n_bad);
  CHECK_MSG(ldmc_graph_num_params(g) == g_n, "graph has %d parameters, account %d", ldmc_graph_num_params(g), g_n);
  CHECK(seen == g_n);
  for (int i = 3; i < g_n; i++) {
    (*tensors)++;
    *params += spec_numel(&g_specs[i]);
  }
}

static void graph_totals(const ldmc_graph *g, int64_t *tensors, int64_t *params) {
  *tensors = *params = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    if (n->op != LDMC_OP_PARAMETER) continue;
    bool input = false;
    for (int k = 0; k < LDMC_UNET_N_INPUTS; k++) input |= strcmp(n->attrs.name, ldmc_unet_input_names[k]) == 0;
    if (input) continue;
    int64_t e;
    ldmc_shape_numel(&n->shape, 4, &e);
    (*tensors)++;
    *params += e;
  }
}

static void test_sd15(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_sd15(&cfg);
  ldmc_graph *g = NULL;
  ldmc_status st = ldmc_unet_build(&cfg, &g);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return;
  int64_t t, p;
  graph_totals(g, &t, &p);
  /* published: diffusers' SD-1.5 UNet2DConditionModel has 686 tensors, 859,520,964 parameters */
  CHECK_MSG(t == 686, "tensors %" PRId64, t);
  CHECK_MSG(p == 859520964, "parameters %" PRId64, p);
  account(320, 768, 77, 1, 64, 64);
  int64_t ta, pa;
  compare(g, &ta, &pa);
  CHECK(ta == 686 && pa == 859520964);
  ldmc_flops f = ldmc_graph_flops(g);
  CHECK_MSG(f.mac == g_mac, "mac flops graph %" PRId64 ", account %" PRId64, f.mac, g_mac);
  CHECK(f.other > 0);
  printf("sd15: %" PRId64 " tensors, %" PRId64 " parameters, %.3f GFLOPs (mac) per step\n", t, p, f.mac / 1e9);
  ldmc_graph_free(g);
}

static void test_width(int c, int64_t batch, int64_t hw) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, c);
  cfg.batch = batch;
  cfg.height = cfg.width = hw;
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_unet_build(&cfg, &g) == LDMC_OK, "c=%d: %s", c, ldmc_last_error());
  if (!g) return;
  account(c, 1024, 77, batch, hw, hw);
  int64_t ta, pa, t, p;
  compare(g, &ta, &pa);
  graph_totals(g, &t, &p);
  CHECK_MSG(t == ta && p == pa, "c=%d: graph %" PRId64 " / %" PRId64 ", account %" PRId64 " / %" PRId64, c, t, p, ta,
            pa);
  ldmc_flops f = ldmc_graph_flops(g);
  CHECK_MSG(f.mac == g_mac, "c=%d mac flops graph %" PRId64 ", account %" PRId64, c, f.mac, g_mac);
  printf("c=%d batch %" PRId64 " latent %" PRId64 ": %" PRId64 " parameters, %.3f GFLOPs\n", c, batch, hw, p,
         f.mac / 1e9);
  /* scopes name the blocks */
  int scoped = 0, attn_scoped = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) {
    const char *s = g->nodes[i].scope;
    if (!s) continue;
    scoped++;
    if (g->nodes[i].op == LDMC_OP_ATTENTION && strncmp(s, "down_blocks.1.attentions.0", 26) == 0) attn_scoped++;
  }
  CHECK(scoped > g->n_nodes / 2);
  CHECK_MSG(attn_scoped == 2, "attention nodes in down_blocks.1.attentions.0: %d", attn_scoped);
  ldmc_graph_free(g);
}

static void test_config_errors(void) {
  ldmc_unet_config cfg;
  ldmc_graph *g = NULL;
  ldmc_unet_config_default(&cfg, 48); /* 48 % 32 != 0 */
  CHECK(ldmc_unet_build(&cfg, &g) == LDMC_ERR_INVALID && !g);
  CHECK(strstr(ldmc_last_error(), "groups") != NULL);
  ldmc_unet_config_default(&cfg, 64);
  cfg.height = 60; /* not a multiple of 8 */
  CHECK(ldmc_unet_build(&cfg, &g) == LDMC_ERR_INVALID && !g);
  CHECK(strstr(ldmc_last_error(), "latent") != NULL);
  CHECK(ldmc_unet_config_from_args(&cfg, "96", "32x32x4", "768x10", 2) == LDMC_OK);
  CHECK(cfg.channels == 96 && cfg.height == 32 && cfg.width == 32 && cfg.context_dim == 768 &&
        cfg.context_tokens == 10 && cfg.batch == 2 && cfg.in_channels == 4);
  CHECK(ldmc_unet_config_from_args(&cfg, "64", "16x8", NULL, 0) == LDMC_OK);
  CHECK(cfg.height == 16 && cfg.width == 8 && cfg.context_dim == 1024 && cfg.batch == 1);
  CHECK(ldmc_unet_config_from_args(&cfg, "64x", NULL, NULL, 0) != LDMC_OK);
  CHECK(ldmc_unet_config_from_args(&cfg, "64", "64x64x4x2", NULL, 0) != LDMC_OK);
  CHECK(ldmc_unet_config_from_args(&cfg, "64", "64x", NULL, 0) != LDMC_OK);
  CHECK(ldmc_unet_config_from_args(&cfg, "64", NULL, "1024", 0) != LDMC_OK);
  CHECK(ldmc_unet_config_from_args(&cfg, "64", NULL, "0x77", 0) != LDMC_OK);
  CHECK(ldmc_unet_config_from_args(&cfg, "64", "-8x8", NULL, 0) != LDMC_OK);
  int w[4], n;
  CHECK(ldmc_unet_parse_widths("64,96,128", w, 4, &n) == LDMC_OK && n == 3 && w[2] == 128);
  CHECK(ldmc_unet_parse_widths("64,,96", w, 4, &n) != LDMC_OK);
  CHECK(ldmc_unet_parse_widths("64,96,", w, 4, &n) != LDMC_OK);
  CHECK(ldmc_unet_parse_widths("1,2,3,4,5", w, 4, &n) != LDMC_OK);
  CHECK(ldmc_unet_parse_widths("", w, 4, &n) != LDMC_OK);
}

static void test_linear_proj(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 64);
  cfg.linear_proj = true;
  cfg.height = cfg.width = 16;
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_unet_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return;
  int32_t id = ldmc_graph_find_param(g, "mid_block.attentions.0.proj_in.weight");
  CHECK(id >= 0 && g->nodes[id].shape.rank == 2 && g->nodes[id].shape.dims[0] == 256);
  ldmc_graph_free(g);
}

int main(void) {
  test_sd15();
  test_width(64, 1, 64);
  test_width(128, 2, 32);
  test_width(768, 1, 64);
  test_config_errors();
  test_linear_proj();
  return test_summary("test_unet");
}
