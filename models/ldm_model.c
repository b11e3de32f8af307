/* Loading a latent diffusion model file (ldm_model.h). The configuration
 * keys are those tools/cmd_train.c writes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/ldm_model.h"
#include "runtime/checkpoint.h"

#ifndef LDMC_SOURCE_DIR
#define LDMC_SOURCE_DIR "."
#endif

const char *ldmc_default_model_path(void) {
  static char buf[4096];
  const char *e = getenv("LDMC_DEFAULT_MODEL");
  if (e && *e) return e;
  snprintf(buf, sizeof buf, "%s/%s", LDMC_SOURCE_DIR, LDMC_DEFAULT_MODEL_FILE);
  return buf;
}

const char *ldmc_default_lcm_path(void) {
  static char buf[4096];
  const char *e = getenv("LDMC_DEFAULT_LCM_MODEL");
  if (e && *e) return e;
  snprintf(buf, sizeof buf, "%s/%s", LDMC_SOURCE_DIR, LDMC_DEFAULT_LCM_FILE);
  return buf;
}

void ldmc_ldm_model_free(ldmc_ldm_model *m) {
  ldmc_tensor_set_free(&m->unet_w);
  ldmc_tensor_set_free(&m->text_w);
  ldmc_tensor_set_free(&m->vae_w);
}

typedef struct cfg_reader {
  const ldmc_checkpoint *ck;
  const char *path;
  ldmc_status st;
} cfg_reader;

static const char *get(cfg_reader *r, const char *key) {
  const char *v = ldmc_checkpoint_config(r->ck, key);
  if (!v && r->st == LDMC_OK)
    r->st = ldmc_error(LDMC_ERR_FORMAT, "%s: the model's configuration has no '%s'", r->path, key);
  return v;
}

static int64_t get_int(cfg_reader *r, const char *key) {
  const char *v = get(r, key);
  if (!v) return 0;
  char *end = NULL;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || !end || end == v || *end) {
    if (r->st == LDMC_OK) r->st = ldmc_error(LDMC_ERR_FORMAT, "%s: configuration '%s' = '%s' is not an integer", r->path, key, v);
    return 0;
  }
  return x;
}

static void get_dims(cfg_reader *r, const char *key, int n, int64_t *out) {
  const char *v = get(r, key);
  if (!v) return;
  const char *s = v;
  for (int i = 0; i < n; i++) {
    char *end = NULL;
    out[i] = strtoll(s, &end, 10);
    if (end == s || out[i] < 1 || (i < n - 1 && *end != 'x') || (i == n - 1 && *end)) {
      if (r->st == LDMC_OK) r->st = ldmc_error(LDMC_ERR_FORMAT, "%s: configuration '%s' = '%s' is not %d dims", r->path, key, v, n);
      return;
    }
    s = end + 1;
  }
}

static void get_ints(cfg_reader *r, const char *key, int *out, int max, int *n) {
  const char *v = get(r, key);
  *n = 0;
  if (!v) return;
  const char *s = v;
  while (*s && *n < max) {
    char *end = NULL;
    long x = strtol(s, &end, 10);
    if (end == s || x < 1) break;
    out[(*n)++] = (int)x;
    if (*end != ',') {
      s = end;
      break;
    }
    s = end + 1;
  }
  if (*s && r->st == LDMC_OK) r->st = ldmc_error(LDMC_ERR_FORMAT, "%s: configuration '%s' = '%s' is not a list of widths", r->path, key, v);
}

/* t as an f32 tensor named name, added to set */
static ldmc_status add_f32(ldmc_tensor_set *set, const char *name, const ldmc_tensor *t) {
  ldmc_tensor c;
  LDMC_TRY(ldmc_tensor_alloc(&c, name, LDMC_F32, &t->shape));
  int64_t n = (int64_t)(c.nbytes / 4);
  for (int64_t i = 0; i < n; i++) ((float *)c.data)[i] = (float)ldmc_tensor_get(t, i);
  ldmc_status st = ldmc_tensor_set_add(set, &c);
  if (st != LDMC_OK) ldmc_tensor_release(&c);
  return st;
}

ldmc_status ldmc_ldm_model_load(const char *path, ldmc_ldm_model *m) {
  memset(m, 0, sizeof *m);
  ldmc_checkpoint *ck = NULL;
  ldmc_status st = ldmc_checkpoint_read(path, &ck);
  if (st != LDMC_OK) {
    if (!strcmp(path, ldmc_default_model_path()))
      ldmc_error_prefix("the default model (train it with bash tools/train_default.sh): ");
    else if (!strcmp(path, ldmc_default_lcm_path()))
      ldmc_error_prefix("the default distilled model (make it with bash tools/distill_default.sh): ");
    return st;
  }
  cfg_reader r = {ck, path, LDMC_OK};
  const char *kind = get(&r, "model");
  if (kind && strcmp(kind, "ldm") != 0)
    r.st = ldmc_error(LDMC_ERR_INVALID, "%s: a %s model, not a latent diffusion model (ldm)", path, kind);
  int64_t lat[3] = {0}, ctx[2] = {0};
  int c = (int)get_int(&r, "unet.channels");
  get_dims(&r, "unet.latent", 3, lat);
  get_dims(&r, "unet.context", 2, ctx);
  if (r.st == LDMC_OK) {
    ldmc_unet_config_default(&m->unet, c);
    m->unet.height = lat[0], m->unet.width = lat[1];
    m->unet.in_channels = m->unet.out_channels = (int)lat[2];
    m->unet.context_dim = (int)ctx[0], m->unet.context_tokens = (int)ctx[1];
    m->unet.batch = 1;
    if (ldmc_checkpoint_config(ck, "unet.groups")) m->unet.groups = (int)get_int(&r, "unet.groups");
    if (ldmc_checkpoint_config(ck, "unet.guidance_embed_dim")) /* a distilled (LCM) model */
      m->unet.guidance_embed_dim = (int)get_int(&r, "unet.guidance_embed_dim");
    if (ldmc_checkpoint_config(ck, "unet.cond_channels")) { /* a super-resolution model */
      m->unet.cond_channels = (int)get_int(&r, "unet.cond_channels");
      m->superres_factor = (int)get_int(&r, "superres.factor");
    }
    ldmc_clip_config_words(&m->text, (int)get_int(&r, "text.width"), (int)get_int(&r, "text.tokens"));
    m->text.layers = (int)get_int(&r, "text.layers");
    m->text.heads = (int)get_int(&r, "text.heads");
    ldmc_vae_config_default(&m->vae);
    get_ints(&r, "vae.block_out_channels", m->vae.block_out_channels, LDMC_VAE_MAX_BLOCKS, &m->vae.n_blocks);
    m->vae.layers_per_block = (int)get_int(&r, "vae.layers_per_block");
    m->vae.latent_channels = (int)get_int(&r, "vae.latent_channels");
    m->vae.norm_num_groups = (int)get_int(&r, "vae.norm_num_groups");
    const char *sf = get(&r, "vae.scaling_factor");
    m->latent_scale = sf ? strtod(sf, NULL) : 0;
    ldmc_diffusion_config_default(&m->diffusion);
    m->diffusion.timesteps = (int)get_int(&r, "num_train_timesteps");
    const char *pred = get(&r, "prediction"), *sched = get(&r, "beta_schedule");
    if (pred && r.st == LDMC_OK) r.st = ldmc_prediction_parse(pred, &m->diffusion.prediction);
    if (sched && r.st == LDMC_OK) r.st = ldmc_beta_schedule_parse(sched, &m->diffusion.schedule);
  }
  st = r.st;
  if (st == LDMC_OK) st = ldmc_unet_config_check(&m->unet);
  if (st == LDMC_OK && (m->unet.cond_channels > 0) != (m->superres_factor > 0))
    st = ldmc_error(LDMC_ERR_FORMAT, "unet.cond_channels %d needs a superres.factor >= 2 (it is %d)",
                    m->unet.cond_channels, m->superres_factor);
  if (st == LDMC_OK && m->superres_factor == 1)
    st = ldmc_error(LDMC_ERR_FORMAT, "superres.factor 1: expected >= 2");
  if (st == LDMC_OK) st = ldmc_clip_config_check(&m->text);
  if (st == LDMC_OK) st = ldmc_vae_config_check(&m->vae);
  if (st == LDMC_OK) st = ldmc_diffusion_config_check(&m->diffusion);
  if (st == LDMC_OK && !(m->latent_scale > 0))
    st = ldmc_error(LDMC_ERR_FORMAT, "%s: the latent scale factor is not a positive number", path);
  if (st != LDMC_OK && r.st == LDMC_OK) ldmc_error_prefix("%s: ", path);
  for (int32_t i = 0; st == LDMC_OK && i < ldmc_checkpoint_num_tensors(ck); i++) {
    const ldmc_tensor *t = ldmc_checkpoint_tensor_at(ck, i, NULL, NULL);
    const char *nm = t->name;
    if (!strncmp(nm, "vae.", 4)) st = add_f32(&m->vae_w, nm + 4, t);
    else if (!strncmp(nm, "text_model.", 11)) st = add_f32(&m->text_w, nm, t);
    else st = add_f32(&m->unet_w, nm, t);
  }
  m->step = ldmc_checkpoint_step(ck);
  ldmc_checkpoint_free(ck);
  if (st != LDMC_OK) ldmc_ldm_model_free(m);
  return st;
}

/* Runs g once: input 0 given, the other parameters bound by name from ws
 * (views), its first output moved into *out. */
static ldmc_status run_with_weights(const ldmc_graph *g, const ldmc_tensor *in0, const ldmc_tensor_set *ws,
                                    const ldmc_backend_i *be, const ldmc_compile_opts *co, ldmc_tensor *out) {
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in), *outs = calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *outs);
  ldmc_status st = in && outs ? LDMC_OK : ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  if (st == LDMC_OK) in[0] = *in0, in[0].owns_data = false;
  for (int32_t k = 1; k < np && st == LDMC_OK; k++) {
    const ldmc_node *p = &g->nodes[ldmc_graph_param_node(g, k)];
    const ldmc_tensor *w = ldmc_tensor_set_find(ws, p->attrs.name);
    if (!w || w->dtype != p->dtype || !ldmc_shape_equal(&w->shape, &p->shape))
      st = ldmc_error(LDMC_ERR_FORMAT, "graph '%s': weight '%s' is %s in the model file", g->name, p->attrs.name,
                      w ? "of another type" : "missing");
    else in[k] = *w, in[k].owns_data = false;
  }
  ldmc_executable *e = NULL;
  if (st == LDMC_OK) {
    ldmc_compile_opts c = *co;
    c.donate = NULL;
    c.params_are_weights = true;
    c.n_activation_params = 1;
    st = be->compile(g, &c, &e);
  }
  if (st == LDMC_OK) st = ldmc_executable_run(e, in, np, outs, g->n_outputs);
  if (st == LDMC_OK) {
    *out = outs[0];
    memset(&outs[0], 0, sizeof outs[0]);
  }
  for (int32_t k = 0; outs && k < g->n_outputs; k++) ldmc_tensor_release(&outs[k]);
  ldmc_executable_free(e);
  free(in), free(outs);
  return st;
}

ldmc_status ldmc_ldm_encode_prompts(const ldmc_ldm_model *m, const char *const *prompts, int64_t n,
                                    const ldmc_backend_i *be, const ldmc_compile_opts *co, ldmc_tensor *out) {
  ldmc_clip_config c = m->text;
  c.batch = n;
  ldmc_graph *g = NULL;
  LDMC_TRY(ldmc_clip_build(&c, &g));
  const ldmc_node *p0 = &g->nodes[ldmc_graph_param_node(g, 0)];
  ldmc_tensor ids = {0};
  ldmc_status st = ldmc_tensor_alloc(&ids, "input_ids", p0->dtype, &p0->shape);
  int T = c.max_positions;
  int32_t *buf = malloc((size_t)T * sizeof *buf);
  if (st == LDMC_OK && !buf) st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < n && st == LDMC_OK; i++) {
    st = ldmc_tokenizer_encode(prompts[i], T, buf);
    if (st != LDMC_OK) ldmc_error_prefix("prompt %lld ('%s'): ", (long long)(i + 1), prompts[i]);
    for (int j = 0; j < T && st == LDMC_OK; j++) ldmc_tensor_set_elem(&ids, i * T + j, buf[j]);
  }
  if (st == LDMC_OK) st = run_with_weights(g, &ids, &m->text_w, be, co, out);
  free(buf);
  ldmc_tensor_release(&ids);
  ldmc_graph_free(g);
  return st;
}

ldmc_status ldmc_ldm_decode(const ldmc_ldm_model *m, const ldmc_tensor *latents, const ldmc_backend_i *be,
                            const ldmc_compile_opts *co, ldmc_tensor *out) {
  ldmc_vae_config c = m->vae;
  c.batch = latents->shape.dims[0];
  ldmc_graph *g = NULL;
  LDMC_TRY(ldmc_vae_decoder_build(&c, &g));
  const ldmc_node *p0 = &g->nodes[ldmc_graph_param_node(g, 0)];
  ldmc_tensor z = {0};
  ldmc_status st = ldmc_shape_equal(&p0->shape, &latents->shape)
                       ? ldmc_tensor_alloc(&z, "latent", LDMC_F32, &p0->shape)
                       : ldmc_error(LDMC_ERR_INVALID, "decode: the latents' shape is not the autoencoder's");
  for (int64_t i = 0; st == LDMC_OK && i < (int64_t)(z.nbytes / 4); i++)
    ((float *)z.data)[i] = (float)(ldmc_tensor_get(latents, i) / m->latent_scale);
  if (st == LDMC_OK) st = run_with_weights(g, &z, &m->vae_w, be, co, out);
  ldmc_tensor_release(&z);
  ldmc_graph_free(g);
  return st;
}
