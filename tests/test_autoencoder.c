/* The autoencoder (models/autoencoder.c), diffusers' AutoencoderKL:
 *  1. configs: the defaults check, the small one maps 32x32x1 -> 8x8x4; bad
 *     configs fail with a message naming the field, and every builder refuses;
 *  2. SD-1.5 (graphs built, never run): 248 tensors and 83,653,863 parameters
 *     (the published count of its AutoencoderKL), spot-checked key names and
 *     shapes written out here, absent keys, and every key and shape equal to
 *     the state dict of tests/torch/vae_ref.py's model (whose count is also
 *     checked to be the published one);
 *  3. a tiny config (widths 8,16, 2 layers, 4 groups, 16x16, 2 -> 3 channels,
 *     batch 2) with random weights (norms too; logvar's quant_conv bias pushed
 *     past both clamp bounds on two channels) against vae_ref.py in float64:
 *     encoder mean / logvar and decoder output on interp and llvm-cpu, to 1e-4
 *     of the largest reference value;
 *  4. the loss graph with its Philox noise passed to torch: loss, recon and kl,
 *     and the gradient of the loss for every weight (ldmc_grad on interp)
 *     against torch autograd;
 *  5. the AdamW step graph on llvm-cpu: its layout, the first loss equal to the
 *     loss graph's on interp, the loss falling over a few steps.
 * Parts 2 (torch half), 3 and 4 are skipped with a message when /usr/bin/python3
 * cannot import torch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "frontend/weights_io.h"
#include "interp_test_util.h"
#include "models/autoencoder.h"
#include "models/weights.h"

static char g_dir[64];
static bool g_torch;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ldmc_vae_config tiny(void) {
  ldmc_vae_config c;
  ldmc_vae_config_default(&c);
  c.in_channels = 2;
  c.out_channels = 3;
  c.n_blocks = 2;
  c.block_out_channels[0] = 8;
  c.block_out_channels[1] = 16;
  c.block_out_channels[2] = 0;
  c.layers_per_block = 2;
  c.latent_channels = 4;
  c.norm_num_groups = 4;
  c.height = c.width = 16;
  c.batch = 2;
  c.kl_weight = 0.05; /* large enough that the KL term's gradient shows */
  return c;
}

/* The loss compares the reconstruction with the image: equal channels. */
static ldmc_vae_config tiny_loss(void) {
  ldmc_vae_config c = tiny();
  c.out_channels = c.in_channels;
  return c;
}

static void cfg_json(const ldmc_vae_config *c, char *buf, size_t len) {
  int w = snprintf(buf, len, "{\"in_channels\":%d,\"out_channels\":%d,\"layers_per_block\":%d,\"latent_channels\":%d,"
                   "\"norm_num_groups\":%d,\"mid_attention\":%s,\"block_out_channels\":[",
                   c->in_channels, c->out_channels, c->layers_per_block, c->latent_channels, c->norm_num_groups,
                   c->mid_attention ? "true" : "false");
  for (int i = 0; i < c->n_blocks; i++) w += snprintf(buf + w, len - (size_t)w, "%s%d", i ? "," : "", c->block_out_channels[i]);
  snprintf(buf + w, len - (size_t)w, "]}");
}

static const ldmc_node *param(const ldmc_graph *g, const char *name) {
  int32_t id = ldmc_graph_find_param(g, name);
  return id >= 0 ? &g->nodes[id] : NULL;
}

/* ---- 1: configs ---- */
static void expect_bad(ldmc_vae_config c, const char *what) {
  ldmc_graph *g = (ldmc_graph *)&c; /* must be cleared */
  CHECK(ldmc_vae_config_check(&c) == LDMC_ERR_INVALID);
  CHECK_MSG(strstr(ldmc_last_error(), what) != NULL, "message '%s' lacks '%s'", ldmc_last_error(), what);
  CHECK(ldmc_vae_encoder_build(&c, &g) == LDMC_ERR_INVALID && g == NULL);
  g = (ldmc_graph *)&c;
  CHECK(ldmc_vae_decoder_build(&c, &g) == LDMC_ERR_INVALID && g == NULL);
  g = (ldmc_graph *)&c;
  CHECK(ldmc_vae_loss_build(&c, &g) == LDMC_ERR_INVALID && g == NULL);
  int64_t n = -7;
  CHECK(ldmc_vae_param_count(&c, NULL, &n) == LDMC_ERR_INVALID && n == -7);
}

static void test_configs(void) {
  ldmc_vae_config c;
  ldmc_vae_config_default(&c);
  CHECK_MSG(ldmc_vae_config_check(&c) == LDMC_OK, "%s", ldmc_last_error());
  int64_t d[4];
  ldmc_vae_latent_dims(&c, d);
  CHECK(c.in_channels == 1 && c.height == 32 && c.width == 32);
  CHECK(d[0] == 1 && d[1] == 4 && d[2] == 8 && d[3] == 8);
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_vae_build(&c, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (g) {
    const ldmc_node *m = &g->nodes[g->outputs[1]], *o = &g->nodes[g->outputs[0]];
    CHECK(!strcmp(g->output_names[1], "mean") && m->shape.rank == 4 && m->shape.dims[1] == 4 && m->shape.dims[2] == 8);
    CHECK(!strcmp(g->output_names[0], "decoded") && o->shape.dims[1] == 1 && o->shape.dims[3] == 32);
  }
  ldmc_graph_free(g);
  int64_t nt = 0, np = 0;
  CHECK(ldmc_vae_param_count(&c, &nt, &np) == LDMC_OK);
  printf("autoencoder: default config 32x32x1 -> 8x8x4: %lld tensors, %lld parameters\n", (long long)nt, (long long)np);

  ldmc_vae_config b = c;
  b.block_out_channels[1] = 60;
  expect_bad(b, "block_out_channels[1] = 60 is not divisible by norm_num_groups 8");
  b = c, b.height = 30;
  expect_bad(b, "image 30x32 must be positive multiples of 4");
  b = c, b.n_blocks = 0;
  expect_bad(b, "n_blocks 0 is outside 1..8");
  b = c, b.n_blocks = 4; /* block_out_channels[3] is 0 */
  expect_bad(b, "block_out_channels[3] = 0 is outside");
  b = c, b.layers_per_block = 0;
  expect_bad(b, "layers_per_block 0");
  b = c, b.latent_channels = 0;
  expect_bad(b, "latent_channels 0");
  b = c, b.norm_num_groups = 0;
  expect_bad(b, "norm_num_groups 0");
  b = c, b.norm_eps = 0;
  expect_bad(b, "norm_eps 0 must be positive");
  b = c, b.kl_weight = -1;
  expect_bad(b, "kl_weight -1 must be >= 0");
  b = c, b.kl_weight = NAN;
  expect_bad(b, "kl_weight");
  b = c, b.batch = 0;
  expect_bad(b, "batch 0");
  b = c, b.in_channels = 0;
  expect_bad(b, "in_channels 0");
  b = c, b.out_channels = 3;
  CHECK(ldmc_vae_config_check(&b) == LDMC_OK); /* a decoder may differ, the loss may not */
  ldmc_graph *s = NULL;
  CHECK(ldmc_vae_loss_build(&b, &s) == LDMC_ERR_INVALID && !s);
  CHECK_MSG(strstr(ldmc_last_error(), "out_channels 3 must equal in_channels 1"), "%s", ldmc_last_error());
  CHECK(ldmc_vae_train_step_build(&b, NULL, &s) == LDMC_ERR_INVALID && !s);
  ldmc_train_opts o = {.n_data_params = 3};
  CHECK(ldmc_vae_train_step_build(&c, &o, &s) == LDMC_ERR_INVALID && !s);
  CHECK(strstr(ldmc_last_error(), "n_data_params = 3") != NULL);
  o = (ldmc_train_opts){.loss = "kl"};
  CHECK(ldmc_vae_train_step_build(&c, &o, &s) == LDMC_ERR_INVALID && !s);
  CHECK(strstr(ldmc_last_error(), "loss 'kl' requested") != NULL);
}

/* ---- 2: SD-1.5 ---- */
typedef struct key_shape {
  const char *name;
  int rank;
  int64_t d[4];
} key_shape;

static void test_sd15(void) {
  ldmc_vae_config c;
  ldmc_vae_config_sd15(&c);
  CHECK_MSG(ldmc_vae_config_check(&c) == LDMC_OK, "%s", ldmc_last_error());
  int64_t nt = 0, np = 0;
  CHECK_MSG(ldmc_vae_param_count(&c, &nt, &np) == LDMC_OK, "%s", ldmc_last_error());
  printf("autoencoder: SD-1.5 AutoencoderKL: %lld tensors, %lld parameters (published 83,653,863)\n", (long long)nt,
         (long long)np);
  CHECK(nt == 248);
  CHECK(np == 83653863);
  ldmc_graph *g = NULL, *enc = NULL, *dec = NULL;
  CHECK_MSG(ldmc_vae_build(&c, &g) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(ldmc_vae_encoder_build(&c, &enc) == LDMC_OK && ldmc_vae_decoder_build(&c, &dec) == LDMC_OK);
  if (!g || !enc || !dec) goto done;
  /* the encoder and decoder graphs split the weights between them */
  CHECK(ldmc_graph_num_params(enc) - 1 + ldmc_graph_num_params(dec) - 1 == nt);
  const key_shape keys[] = {
      {"encoder.conv_in.weight", 4, {128, 3, 3, 3}},
      {"encoder.down_blocks.0.resnets.0.norm1.weight", 1, {128}},
      {"encoder.down_blocks.0.resnets.1.conv2.bias", 1, {128}},
      {"encoder.down_blocks.0.downsamplers.0.conv.weight", 4, {128, 128, 3, 3}},
      {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight", 4, {256, 128, 1, 1}},
      {"encoder.down_blocks.3.resnets.1.conv1.weight", 4, {512, 512, 3, 3}},
      {"encoder.mid_block.attentions.0.group_norm.weight", 1, {512}},
      {"encoder.mid_block.attentions.0.to_q.weight", 2, {512, 512}},
      {"encoder.mid_block.attentions.0.to_k.bias", 1, {512}},
      {"encoder.mid_block.attentions.0.to_out.0.weight", 2, {512, 512}},
      {"encoder.mid_block.resnets.1.norm2.bias", 1, {512}},
      {"encoder.conv_norm_out.weight", 1, {512}},
      {"encoder.conv_out.weight", 4, {8, 512, 3, 3}},
      {"quant_conv.weight", 4, {8, 8, 1, 1}},
      {"quant_conv.bias", 1, {8}},
      {"post_quant_conv.weight", 4, {4, 4, 1, 1}},
      {"post_quant_conv.bias", 1, {4}},
      {"decoder.conv_in.weight", 4, {512, 4, 3, 3}},
      {"decoder.mid_block.attentions.0.to_v.weight", 2, {512, 512}},
      {"decoder.up_blocks.0.resnets.2.conv2.bias", 1, {512}},
      {"decoder.up_blocks.0.upsamplers.0.conv.weight", 4, {512, 512, 3, 3}},
      {"decoder.up_blocks.2.resnets.0.conv_shortcut.weight", 4, {256, 512, 1, 1}},
      {"decoder.up_blocks.2.upsamplers.0.conv.bias", 1, {256}},
      {"decoder.up_blocks.3.resnets.0.conv_shortcut.weight", 4, {128, 256, 1, 1}},
      {"decoder.up_blocks.3.resnets.2.norm1.weight", 1, {128}},
      {"decoder.conv_norm_out.bias", 1, {128}},
      {"decoder.conv_out.weight", 4, {3, 128, 3, 3}},
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    const ldmc_node *p = param(g, keys[i].name);
    ldmc_shape want = ldmc_shape_make(keys[i].rank, keys[i].d);
    CHECK_MSG(p && ldmc_shape_equal(&p->shape, &want), "SD-1.5 key %s %s", keys[i].name, p ? "mis-shaped" : "missing");
  }
  const char *absent[] = {"encoder.down_blocks.3.downsamplers.0.conv.weight", "decoder.up_blocks.3.upsamplers.0.conv.weight",
                          "encoder.down_blocks.0.resnets.0.conv_shortcut.weight",
                          "decoder.up_blocks.1.resnets.0.conv_shortcut.weight", /* 512 -> 512 */
                          "encoder.mid_block.attentions.0.to_out.1.weight", "encoder.mid_block.attentions.0.query.weight",
                          "decoder.up_blocks.0.resnets.0.time_emb_proj.weight"};
  for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
    CHECK_MSG(!param(g, absent[i]), "SD-1.5 has a key %s that diffusers' does not", absent[i]);
  const ldmc_node *mo = &enc->nodes[enc->outputs[0]], *dd = &dec->nodes[dec->outputs[0]];
  CHECK(mo->shape.dims[1] == 4 && mo->shape.dims[2] == 64 && mo->shape.dims[3] == 64);
  CHECK(dd->shape.dims[1] == 3 && dd->shape.dims[2] == 512 && dd->shape.dims[3] == 512);

  if (g_torch) { /* every key and shape against the torch model's state dict */
    char cmd[512], line[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/vae_ref.py --keys",
             getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..");
    FILE *f = popen(cmd, "r");
    int seen = 0, bad = 0;
    while (f && fgets(line, sizeof line, f)) {
      char name[400], dims[100];
      if (sscanf(line, "%399s %99s", name, dims) != 2) continue;
      seen++;
      const ldmc_node *p = param(g, name);
      int64_t d[4] = {0};
      int r = 0;
      for (char *s = dims; r < 4 && *s; r++) {
        d[r] = strtoll(s, &s, 10);
        if (*s == 'x') s++;
      }
      ldmc_shape want = ldmc_shape_make(r, d);
      if (!p || !ldmc_shape_equal(&p->shape, &want)) {
        if (bad++ < 5) fprintf(stderr, "torch key %s [%s]: %s in ldmc's graph\n", name, dims, p ? "mis-shaped" : "missing");
      }
    }
    CHECK(f && pclose(f) == 0);
    printf("autoencoder: SD-1.5 torch state dict: %d keys, %d missing or mis-shaped in ldmc's graph\n", seen, bad);
    CHECK(seen == 248 && bad == 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/vae_ref.py --count",
             getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..");
    f = popen(cmd, "r");
    long long tt = 0, tp = 0;
    CHECK(f && fscanf(f, "%lld %lld", &tt, &tp) == 2);
    if (f) pclose(f);
    CHECK_MSG(tt == 248 && tp == 83653863, "torch reference: %lld tensors, %lld parameters", tt, tp);
  }
done:
  ldmc_graph_free(g);
  ldmc_graph_free(enc);
  ldmc_graph_free(dec);
}

/* ---- helpers for 3-5 ---- */
/* Norm weights and biases from init are ones and zeros: random, so the
 * comparison exercises them. */
static void perturb_norms(ldmc_tensor_set *w) {
  for (int32_t i = 0; i < w->n; i++) {
    ldmc_tensor *t = &w->items[i];
    if (t->shape.rank != 1 || !strstr(t->name, "norm")) continue;
    bool weight = strstr(t->name, ".weight") != NULL;
    for (int64_t k = 0; k < t->shape.dims[0]; k++) {
      double u = ldmc_weights_uniform(99, t->name, k);
      ldmc_tensor_set_elem(t, k, weight ? 0.5 + u : u - 0.5);
    }
  }
}

static void add_random(ldmc_tensor_set *s, const char *name, const int64_t *d, uint64_t seed, double lo, double hi) {
  ldmc_tensor t;
  ldmc_shape sh = ldmc_shape_make(4, d);
  CHECK(ldmc_tensor_alloc(&t, name, LDMC_F32, &sh) == LDMC_OK);
  for (int64_t i = 0; i < th_numel(&sh); i++) ldmc_tensor_set_elem(&t, i, lo + (hi - lo) * ldmc_weights_uniform(seed, name, i));
  CHECK(ldmc_tensor_set_add(s, &t) == LDMC_OK);
}

/* Views (not owned) of the tensors named like g's parameters, in parameter
 * order, from a or b; NULL (and a failure) if one is missing. */
static ldmc_tensor *views_for(const ldmc_graph *g, const ldmc_tensor_set *a, const ldmc_tensor_set *b) {
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *v = calloc((size_t)np, sizeof *v);
  for (int32_t k = 0; v && k < np; k++) {
    const char *nm = g->nodes[ldmc_graph_param_node(g, k)].attrs.name;
    ldmc_tensor *t = ldmc_tensor_set_find(a, nm);
    if (!t && b) t = ldmc_tensor_set_find(b, nm);
    CHECK_MSG(t != NULL, "no tensor for parameter %s of %s", nm, g->name);
    if (!t) {
      free(v);
      return NULL;
    }
    v[k] = *t;
    v[k].owns_data = false;
  }
  return v;
}

/* Runs g on be with the named tensors; outputs into out[n_out]. */
static bool run(const ldmc_backend_i *be, const ldmc_graph *g, const ldmc_tensor_set *a, const ldmc_tensor_set *b,
                ldmc_tensor *out, int n_out) {
  ldmc_tensor *in = views_for(g, a, b);
  ldmc_executable *e = NULL;
  memset(out, 0, (size_t)n_out * sizeof *out);
  ldmc_compile_opts o = {.threads = 2};
  ldmc_status st = in ? be->compile(g, &o, &e) : LDMC_ERR_INVALID;
  CHECK_MSG(st == LDMC_OK, "%s compile of %s: %s", be->name, g->name, ldmc_last_error());
  if (st == LDMC_OK) {
    st = ldmc_executable_run(e, in, ldmc_graph_num_params(g), out, n_out);
    CHECK_MSG(st == LDMC_OK, "%s run of %s: %s", be->name, g->name, ldmc_last_error());
  }
  ldmc_executable_free(e);
  free(in);
  return st == LDMC_OK;
}

/* max |a - b| / max |b|; NaN propagates. */
static double rel_err(const ldmc_tensor *a, const ldmc_tensor *b, double *max_ref) {
  double d = 0, m = 0;
  int64_t n = th_numel(&b->shape);
  if (th_numel(&a->shape) != n) return INFINITY;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(ldmc_tensor_get(a, i) - ldmc_tensor_get(b, i));
    if (!(e <= d)) d = e;
    m = fmax(m, fabs(ldmc_tensor_get(b, i)));
  }
  if (max_ref) *max_ref = m;
  return m > 0 ? d / m : d;
}

static bool torch_ref(const char *json, const char *w, const char *in, const char *out, const char *extra) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/vae_ref.py --config '%s' --weights %s --inputs %s --out %s %s",
           getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..", json, w, in, out, extra);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "torch reference failed: %s", cmd);
  return rc == 0;
}

static void path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

/* Random weights for cfg, written to NAME and loaded back (as `ldmc run` would). */
static bool weights_file(const ldmc_vae_config *cfg, const ldmc_graph *full, double logvar_bias_hi, double logvar_bias_lo,
                         const char *name, ldmc_tensor_set *w) {
  ldmc_tensor_set r = {0};
  CHECK(ldmc_weights_init_random(full, ldmc_vae_encoder_inputs, 1, 7, &r) == LDMC_OK);
  perturb_norms(&r);
  ldmc_tensor *qb = ldmc_tensor_set_find(&r, "quant_conv.bias");
  CHECK(qb != NULL);
  if (qb) { /* logvar's first two channels: past the clamp's upper and lower bounds, or moderate */
    ldmc_tensor_set_elem(qb, cfg->latent_channels, logvar_bias_hi);
    ldmc_tensor_set_elem(qb, cfg->latent_channels + 1, logvar_bias_lo);
  }
  char p[128];
  path(p, sizeof p, name);
  CHECK_MSG(ldmc_safetensors_save(p, &r, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_tensor_set_free(&r);
  ldmc_status st = ldmc_weights_load(full, ldmc_vae_encoder_inputs, 1, p, 0, w);
  CHECK_MSG(st == LDMC_OK, "%s", ldmc_last_error());
  return st == LDMC_OK;
}

/* ---- 3: encoder and decoder against torch ---- */
static void test_parity(void) {
  ldmc_vae_config cfg = tiny();
  char json[512], wp[128], ip[128], rp[128];
  cfg_json(&cfg, json, sizeof json);
  path(wp, sizeof wp, "weights.safetensors");
  path(ip, sizeof ip, "inputs.safetensors");
  path(rp, sizeof rp, "ref.safetensors");
  ldmc_graph *full = NULL, *enc = NULL, *dec = NULL;
  ldmc_tensor_set w = {0}, in = {0}, ref = {0};
  CHECK(ldmc_vae_build(&cfg, &full) == LDMC_OK && ldmc_vae_encoder_build(&cfg, &enc) == LDMC_OK &&
        ldmc_vae_decoder_build(&cfg, &dec) == LDMC_OK);
  if (!full || !enc || !dec || !weights_file(&cfg, full, 45.0, -50.0, "weights.safetensors", &w)) goto done;
  const int64_t xd[4] = {cfg.batch, cfg.in_channels, cfg.height, cfg.width};
  int64_t zd[4];
  ldmc_vae_latent_dims(&cfg, zd);
  add_random(&in, "image", xd, 1, -1, 1);
  add_random(&in, "latent", zd, 2, -2, 2);
  CHECK(ldmc_safetensors_save(ip, &in, 0, NULL, NULL) == LDMC_OK);
  if (!torch_ref(json, wp, ip, rp, "") || ldmc_safetensors_load(rp, &ref) != LDMC_OK) goto done;
  const ldmc_backend_i *bes[2] = {&ldmc_backend_interp, &ldmc_backend_llvm_cpu};
  for (int k = 0; k < 2; k++) {
    double t0 = now_s();
    ldmc_tensor eo[2], dout[1];
    if (run(bes[k], enc, &w, &in, eo, 2)) {
      const char *names[2] = {"mean", "logvar"};
      for (int i = 0; i < 2; i++) {
        double m = 0, r = rel_err(&eo[i], ldmc_tensor_set_find(&ref, names[i]), &m);
        printf("autoencoder: %s encoder %s: max |ldmc - torch| / max |torch| = %.3g (max |torch| %.3g)\n", bes[k]->name,
               names[i], r, m);
        CHECK_MSG(r < 1e-4 && m > 1e-2, "%s %s: relative error %.3g", bes[k]->name, names[i], r);
      }
      /* the clamp is on: channel 0 of logvar sits at 20, channel 1 at -30 */
      int64_t plane = zd[2] * zd[3];
      CHECK(ldmc_tensor_get(&eo[1], 0) == 20.0 && ldmc_tensor_get(&eo[1], plane) == -30.0);
      th_release(2, eo);
    }
    if (run(bes[k], dec, &w, &in, dout, 1)) {
      double m = 0, r = rel_err(&dout[0], ldmc_tensor_set_find(&ref, "decoded"), &m);
      printf("autoencoder: %s decoder: max |ldmc - torch| / max |torch| = %.3g (max |torch| %.3g)\n", bes[k]->name, r, m);
      CHECK_MSG(r < 1e-4 && m > 1e-2, "%s decoder: relative error %.3g", bes[k]->name, r);
      th_release(1, dout);
    }
    printf("autoencoder: %s encoder + decoder compile and run: %.2f s\n", bes[k]->name, now_s() - t0);
  }
done:
  ldmc_tensor_set_free(&w);
  ldmc_tensor_set_free(&in);
  ldmc_tensor_set_free(&ref);
  ldmc_graph_free(full);
  ldmc_graph_free(enc);
  ldmc_graph_free(dec);
}

/* eps = rng_normal(key) of the latent's shape, as the loss graph draws it. */
static bool draw_eps(const ldmc_vae_config *cfg, int64_t key, ldmc_tensor *eps) {
  int64_t zd[4];
  ldmc_vae_latent_dims(cfg, zd);
  ldmc_graph *g = ldmc_graph_new("eps");
  ldmc_attrs pa = {.name = "rng_key"};
  ldmc_shape s0 = {0}, sz = ldmc_shape_make(4, zd);
  int32_t k = ldmc_graph_add_checked(g, LDMC_OP_PARAMETER, LDMC_I64, &s0, 0, NULL, &pa, NULL);
  int32_t r = ldmc_graph_add_checked(g, LDMC_OP_RNG_NORMAL, LDMC_F32, &sz, 1, &k, NULL, NULL);
  CHECK(r >= 0 && ldmc_graph_add_output(g, r, "eps") == LDMC_OK);
  ldmc_tensor kt;
  ldmc_tensor_alloc(&kt, "rng_key", LDMC_I64, &s0);
  memcpy(kt.data, &key, 8);
  ldmc_executable *e = NULL;
  bool ok = ldmc_backend_interp.compile(g, &(ldmc_compile_opts){0}, &e) == LDMC_OK &&
            ldmc_executable_run(e, &kt, 1, eps, 1) == LDMC_OK;
  CHECK_MSG(ok, "eps: %s", ldmc_last_error());
  ldmc_executable_free(e);
  ldmc_tensor_release(&kt);
  ldmc_graph_free(g);
  if (ok) {
    free(eps->name);
    eps->name = strdup("eps");
  }
  return ok;
}

/* ---- 4: the loss and its gradient against torch autograd ---- */
static void test_loss_grad(void) {
  ldmc_vae_config cfg = tiny_loss();
  char json[512], wp[128], ip[128], rp[128], extra[64];
  cfg_json(&cfg, json, sizeof json);
  path(wp, sizeof wp, "weights2.safetensors");
  path(ip, sizeof ip, "inputs2.safetensors");
  path(rp, sizeof rp, "ref2.safetensors");
  snprintf(extra, sizeof extra, "--loss %.17g", cfg.kl_weight);
  ldmc_graph *full = NULL, *loss = NULL, *gg = NULL;
  ldmc_tensor_set w = {0}, in = {0}, ref = {0};
  ldmc_tensor eps = {0}, key = {0};
  CHECK(ldmc_vae_build(&cfg, &full) == LDMC_OK);
  CHECK_MSG(ldmc_vae_loss_build(&cfg, &loss) == LDMC_OK, "%s", ldmc_last_error());
  if (!full || !loss || !weights_file(&cfg, full, -1.0, -3.0, "weights2.safetensors", &w)) goto done;
  CHECK(loss->n_outputs == 3 && !strcmp(loss->output_names[0], "loss") && !strcmp(loss->output_names[1], "recon") &&
        !strcmp(loss->output_names[2], "kl"));
  CHECK(ldmc_graph_num_params(loss) == ldmc_graph_num_params(full) + 1);
  for (int k = 0; k < LDMC_VAE_LOSS_N_INPUTS; k++)
    CHECK(!strcmp(loss->nodes[ldmc_graph_param_node(loss, k)].attrs.name, ldmc_vae_loss_inputs[k]));
  const int64_t xd[4] = {cfg.batch, cfg.in_channels, cfg.height, cfg.width};
  int64_t zd[4];
  ldmc_vae_latent_dims(&cfg, zd);
  add_random(&in, "image", xd, 3, -1, 1);
  add_random(&in, "latent", zd, 4, -2, 2);
  const int64_t kv = 0x123456789abLL;
  if (!draw_eps(&cfg, kv, &eps)) goto done;
  ldmc_tensor_set_add(&in, &eps);
  ldmc_tensor_alloc(&key, "rng_key", LDMC_I64, &(ldmc_shape){0});
  memcpy(key.data, &kv, 8);
  ldmc_tensor_set_add(&in, &key);
  CHECK(ldmc_safetensors_save(ip, &in, 0, NULL, NULL) == LDMC_OK);
  if (!torch_ref(json, wp, ip, rp, extra) || ldmc_safetensors_load(rp, &ref) != LDMC_OK) goto done;

  ldmc_tensor lo[3];
  if (run(&ldmc_backend_interp, loss, &w, &in, lo, 3)) {
    const char *names[3] = {"loss", "recon", "kl"};
    for (int i = 0; i < 3; i++) {
      double r = rel_err(&lo[i], ldmc_tensor_set_find(&ref, names[i]), NULL);
      printf("autoencoder: interp %s = %.9g, torch %.9g (rel %.2g)\n", names[i], ldmc_tensor_get(&lo[i], 0),
             ldmc_tensor_get(ldmc_tensor_set_find(&ref, names[i]), 0), r);
      CHECK_MSG(r < 1e-5, "%s: relative error %.3g", names[i], r);
    }
    /* both terms matter at this kl_weight */
    CHECK(cfg.kl_weight * ldmc_tensor_get(&lo[2], 0) > 0.05 * ldmc_tensor_get(&lo[1], 0));
    th_release(3, lo);
  }
  /* every weight (the image is a float parameter too, but is data here) */
  ldmc_grad_opts go = {.output = "loss", .seed = LDMC_GRAD_SCALAR, .wrt_regex = "^(encoder|decoder|quant_conv|post_quant_conv)\\."};
  CHECK_MSG(ldmc_grad(loss, &go, &gg) == LDMC_OK, "%s", ldmc_last_error());
  int32_t nw = ldmc_graph_num_params(loss) - LDMC_VAE_LOSS_N_INPUTS;
  if (gg) CHECK(gg->n_outputs == 3 + nw);
  ldmc_tensor *go_out = gg ? calloc((size_t)gg->n_outputs, sizeof *go_out) : NULL;
  double t0 = now_s();
  if (go_out && gg->n_outputs == 3 + nw && run(&ldmc_backend_interp, gg, &w, &in, go_out, gg->n_outputs)) {
    /* Errors relative to each tensor's largest torch value, floored at 1e-3
     * of the largest over all tensors: to_k.bias's gradient is exactly zero
     * (softmax ignores a per-query constant), torch's is ~1e-18, ldmc's ~1e-10. */
    double global = 0;
    for (int32_t i = 3; i < gg->n_outputs; i++) {
      const ldmc_tensor *r = ldmc_tensor_set_find(&ref, gg->output_names[i]);
      for (int64_t j = 0; r && j < th_numel(&r->shape); j++) global = fmax(global, fabs(ldmc_tensor_get(r, j)));
    }
    double worst = 0;
    const char *worst_name = "";
    int compared = 0;
    for (int32_t i = 3; i < gg->n_outputs; i++) {
      const ldmc_tensor *r = ldmc_tensor_set_find(&ref, gg->output_names[i]);
      CHECK_MSG(r != NULL, "torch has no %s", gg->output_names[i]);
      if (!r) continue;
      double m = 0, e = rel_err(&go_out[i], r, &m);
      e = m > 0 ? e * m / fmax(m, 1e-3 * global) : e / (1e-3 * global);
      compared++;
      CHECK_MSG(e < 1e-4, "%s: max |ldmc - torch| / max(max |torch|, 1e-3 global) = %.3g (max |torch| %.3g)",
                gg->output_names[i], e, m);
      if (!(e <= worst)) worst = e, worst_name = gg->output_names[i];
    }
    printf("autoencoder: loss gradient of %d weight tensors vs torch autograd: worst max |ldmc - torch| / max |torch| "
           "= %.3g (%s; largest gradient %.3g); interp %.2f s\n",
           compared, worst, worst_name, global, now_s() - t0);
    CHECK(compared == nw && global > 1e-3);
    th_release(gg->n_outputs, go_out);
  }
  free(go_out);
done:
  ldmc_tensor_set_free(&w);
  ldmc_tensor_set_free(&in);
  ldmc_tensor_set_free(&ref);
  ldmc_graph_free(full);
  ldmc_graph_free(loss);
  ldmc_graph_free(gg);
}

/* ---- 5: AdamW steps on llvm-cpu ---- */
static void test_train_step(void) {
  ldmc_vae_config cfg = tiny_loss();
  ldmc_graph *loss = NULL, *step = NULL, *full = NULL;
  ldmc_tensor_set w = {0}, data = {0};
  CHECK(ldmc_vae_build(&cfg, &full) == LDMC_OK && ldmc_vae_loss_build(&cfg, &loss) == LDMC_OK);
  CHECK_MSG(ldmc_vae_train_step_build(&cfg, NULL, &step) == LDMC_OK, "%s", ldmc_last_error());
  if (!loss || !step || !full) goto done;
  CHECK(!strcmp(step->name, "vae.train_step"));
  int32_t ns = ldmc_graph_num_params(step), no = step->n_outputs;
  int32_t nw = ldmc_graph_num_params(loss) - LDMC_VAE_LOSS_N_INPUTS;
  CHECK_MSG(ns == LDMC_VAE_LOSS_N_INPUTS + 2 + 3 * nw, "%d step parameters for %d weights", (int)ns, (int)nw);
  CHECK(!strcmp(step->output_names[0], "loss") && no == 2 + 3 * nw); /* recon, kl dropped */
  int32_t *pairs = malloc((size_t)no * sizeof *pairs);
  CHECK(ldmc_train_step_state_pairs(step, pairs) == LDMC_OK);

  CHECK(ldmc_weights_init_random(full, ldmc_vae_encoder_inputs, 1, 11, &w) == LDMC_OK);
  const int64_t xd[4] = {cfg.batch, cfg.in_channels, cfg.height, cfg.width};
  add_random(&data, "image", xd, 5, -1, 1);
  ldmc_tensor key;
  ldmc_tensor_alloc(&key, "rng_key", LDMC_I64, &(ldmc_shape){0});
  ldmc_tensor_set_add(&data, &key);
  ldmc_tensor *ref = calloc(3, sizeof *ref);
  bool have_ref = run(&ldmc_backend_interp, loss, &w, &data, ref, 3); /* key 0 */

  /* the step's inputs: data, lr, step, then P, adam_m.P (0), adam_v.P (0) */
  ldmc_tensor *in = calloc((size_t)ns, sizeof *in);
  for (int32_t k = 0; k < ns; k++) {
    const ldmc_node *p = &step->nodes[ldmc_graph_param_node(step, k)];
    ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape);
    const ldmc_tensor *src = ldmc_tensor_set_find(&w, p->attrs.name);
    if (!src) src = ldmc_tensor_set_find(&data, p->attrs.name);
    if (src && src->nbytes == in[k].nbytes) memcpy(in[k].data, src->data, src->nbytes);
    if (!strcmp(p->attrs.name, "lr")) ldmc_tensor_set_elem(&in[k], 0, 2e-3);
  }
  ldmc_tensor *outs = calloc((size_t)no, sizeof *outs);
  double t0 = now_s();
  ldmc_executable *e = NULL;
  CHECK_MSG(ldmc_backend_llvm_cpu.compile(step, &(ldmc_compile_opts){.threads = 2}, &e) == LDMC_OK, "%s",
            ldmc_last_error());
  double t1 = now_s();
  enum { STEPS = 12 };
  double losses[STEPS];
  int done_steps = 0;
  for (int t = 1; e && t <= STEPS; t++) {
    int64_t kv = t - 1; /* a new noise draw every step; the first is key 0 as above */
    memcpy(in[1].data, &kv, 8);
    ldmc_tensor_set_elem(&in[3], 0, t); /* step */
    if (ldmc_executable_run(e, in, ns, outs, no) != LDMC_OK) {
      CHECK_MSG(0, "step %d: %s", t, ldmc_last_error());
      break;
    }
    losses[done_steps++] = ldmc_tensor_get(&outs[0], 0);
    for (int32_t k = 0; k < no; k++) /* feed the state back */
      if (pairs[k] >= 0) {
        ldmc_tensor_release(&in[pairs[k]]);
        in[pairs[k]] = outs[k];
        memset(&outs[k], 0, sizeof outs[k]);
      }
    th_release(no, outs);
  }
  if (done_steps == STEPS) {
    printf("autoencoder: llvm-cpu train step compile %.2f s, %d steps %.2f s; losses", t1 - t0, STEPS, now_s() - t1);
    for (int t = 0; t < STEPS; t++) printf(" %.4f", losses[t]);
    printf(" (%.3fx)\n", losses[STEPS - 1] / losses[0]);
    if (have_ref)
      CHECK_MSG(fabs(losses[0] - ldmc_tensor_get(&ref[0], 0)) <= 1e-4 * ldmc_tensor_get(&ref[0], 0),
                "first llvm-cpu step loss %.9g, interp loss graph %.9g", losses[0], ldmc_tensor_get(&ref[0], 0));
    for (int t = 0; t < STEPS; t++) CHECK(isfinite(losses[t]));
    CHECK_MSG(losses[STEPS - 1] < 0.7 * losses[0], "loss %.5g -> %.5g in %d steps", losses[0], losses[STEPS - 1], STEPS);
  }
  ldmc_executable_free(e);
  th_release(ns, in);
  free(in);
  free(outs);
  th_release(3, ref);
  free(ref);
  free(pairs);
done:
  ldmc_tensor_set_free(&w);
  ldmc_tensor_set_free(&data);
  ldmc_graph_free(loss);
  ldmc_graph_free(step);
  ldmc_graph_free(full);
}

int main(void) {
  double t0 = now_s();
  g_torch = system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
  test_configs();
  test_sd15();
  if (g_torch) {
    strcpy(g_dir, "/tmp/ldmc_vae_torch_XXXXXX");
    if (mkdtemp(g_dir)) {
      test_parity();
      test_loss_grad();
      char cmd[128];
      snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
      if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    } else {
      CHECK(!"mkdtemp");
    }
  } else {
    printf("SKIP torch comparisons: /usr/bin/python3 cannot import torch and numpy (apt install python3-torch)\n");
  }
  test_train_step();
  printf("autoencoder: %.1f s in all\n", now_s() - t0);
  return test_summary("test_autoencoder");
}
