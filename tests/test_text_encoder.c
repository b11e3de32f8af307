/* The prompt encoder (models/text_encoder.h):
 *  1. the word tokenizer: class names, "ankle boot" as one token, casing and
 *     blanks, the empty prompt, unknown words (the message lists the
 *     vocabulary), too long prompts, bad arguments;
 *  2. the SD-1.5 config has CLIP ViT-L/14's published 123,060,480 text-model
 *     parameters in 196 tensors (graph built, not run), as the torch
 *     reference counts them too;
 *  3. a tiny encoder (width 32, 2 layers, 4 heads, MLP 80, T=8, batch 3)
 *     against tests/torch/clip_ref.py (float64) with the same weights:
 *     last_hidden_state on interp and llvm-cpu, and gradients of
 *     sum(last_hidden_state * r) with respect to the token and position
 *     embeddings and a few weights (ldmc_grad, both backends) against torch
 *     autograd. The torch parts are skipped, with a message, when
 *     /usr/bin/python3 cannot import torch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "frontend/frontend.h"
#include "frontend/weights_io.h"
#include "models/stats.h"
#include "models/text_encoder.h"
#include "models/weights.h"
#include "test_util.h"

static bool g_torch;
static char g_dir[64];

/* ---- 1: tokenizer ---- */
static bool ids_are(const int32_t *ids, int n, const int32_t *want, int n_want) {
  for (int i = 0; i < n; i++)
    if (ids[i] != (i < n_want ? want[i] : LDMC_TOKENIZER_END)) return false;
  return true;
}

static void expect_ids(const char *prompt, int tokens, const int32_t *want, int n_want) {
  int32_t ids[16];
  ldmc_status st = ldmc_tokenizer_encode(prompt, tokens, ids);
  CHECK_MSG(st == LDMC_OK && ids_are(ids, tokens, want, n_want), "prompt '%s': %s", prompt,
            st == LDMC_OK ? "wrong ids" : ldmc_last_error());
}

/* Refused, ids untouched, and the message contains each of the needles. */
static void expect_error(const char *prompt, int tokens, const char *const *needles, int n) {
  int32_t ids[16];
  for (int i = 0; i < 16; i++) ids[i] = -7;
  ldmc_status st = ldmc_tokenizer_encode(prompt, tokens, ids);
  CHECK_MSG(st == LDMC_ERR_INVALID, "prompt '%s' should be refused", prompt ? prompt : "(null)");
  bool untouched = true;
  for (int i = 0; i < 16; i++) untouched &= ids[i] == -7;
  CHECK(untouched);
  for (int i = 0; i < n; i++)
    CHECK_MSG(strstr(ldmc_last_error(), needles[i]) != NULL, "message '%s' lacks '%s'", ldmc_last_error(), needles[i]);
}

static void test_tokenizer(void) {
  static const char *const names[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                        "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};
  CHECK(LDMC_TOKENIZER_VOCAB_SIZE == 12);
  CHECK(strcmp(ldmc_tokenizer_token(0), "<|startoftext|>") == 0 && strcmp(ldmc_tokenizer_token(1), "<|endoftext|>") == 0);
  CHECK(ldmc_tokenizer_token(12) == NULL && ldmc_tokenizer_token(-1) == NULL);
  CHECK(ldmc_class_prompt(10) == NULL && ldmc_class_prompt(-1) == NULL);
  for (int c = 0; c < 10; c++) {
    CHECK(ldmc_class_prompt(c) && strcmp(ldmc_class_prompt(c), names[c]) == 0);
    CHECK(strcmp(ldmc_tokenizer_token(2 + c), names[c]) == 0);
    const int32_t want[3] = {0, 2 + c, 1};
    expect_ids(ldmc_class_prompt(c), 8, want, 3);
  }
  const int32_t empty[2] = {0, 1};
  expect_ids("", 8, empty, 2);
  expect_ids(" \t\n ", 8, empty, 2);
  expect_ids("", 2, empty, 2);
  const int32_t boot[3] = {0, 11, 1};
  expect_ids("ANKLE Boot", 8, boot, 3);
  expect_ids("  ankle \t boot\n", 3, boot, 3);
  const int32_t many[6] = {0, 5, 6, 2, 8, 1}; /* dress coat t-shirt shirt: "shirt" is not part of "t-shirt" */
  expect_ids("Dress  COAT\tT-Shirt shirt", 6, many, 6);
  const int32_t two_boots[5] = {0, 11, 11, 10, 1};
  expect_ids("ankle boot ankle boot bag", 8, two_boots, 5);

  const char *unknown[] = {"unknown word 'boot'", "word 1 of 1", "'t-shirt'", "'trouser'", "'ankle boot'"};
  expect_error("boot", 8, unknown, 5);
  const char *ankle[] = {"unknown word 'ankle'", "word 2 of 2", "'bag'", "empty prompt"};
  expect_error("dress ankle", 8, ankle, 4);
  const char *robot[] = {"unknown word 'robot'", "prompt 'coat robot'"};
  expect_error("coat robot", 8, robot, 2);
  const char *special[] = {"unknown word '<|endoftext|>'"};
  expect_error("<|endoftext|>", 8, special, 1);
  const char *punct[] = {"unknown word 'dress,'"};
  expect_error("dress, coat", 8, punct, 1);
  const char *too_long[] = {"too long", "3 tokens", "at most 2"};
  expect_error("dress coat bag", 4, too_long, 3);
  const int32_t fits[4] = {0, 5, 6, 1};
  expect_ids("dress coat", 4, fits, 4);
  const char *few[] = {"need >= 2"};
  expect_error("", 1, few, 1);
  const char *null[] = {"NULL"};
  expect_error(NULL, 8, null, 1);
  CHECK(ldmc_tokenizer_encode("dress", 8, NULL) == LDMC_ERR_INVALID);
}

/* ---- 2: the SD-1.5 config ---- */
static void test_sd15_count(void) {
  ldmc_clip_config cfg;
  ldmc_clip_config_sd15(&cfg);
  ldmc_graph *g = NULL;
  CHECK_MSG(ldmc_clip_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!g) return;
  ldmc_model_stats st;
  CHECK(ldmc_stats_compute(g, ldmc_clip_input_names, LDMC_CLIP_N_INPUTS, &st) == LDMC_OK);
  printf("text_encoder: SD-1.5 config: %lld tensors, %lld parameters, %.2f GFLOPs (multiply-add) per prompt\n",
         (long long)st.param_tensors, (long long)st.params, (double)st.mac_flops / 1e9);
  CHECK_MSG(st.params == 123060480, "parameters %lld, published 123,060,480", (long long)st.params);
  CHECK(st.param_tensors == 196);
  const ldmc_node *ids = &g->nodes[ldmc_graph_param_node(g, 0)];
  CHECK(ids->dtype == LDMC_I32 && ids->shape.rank == 2 && ids->shape.dims[1] == 77);
  const ldmc_node *y = &g->nodes[g->outputs[0]];
  CHECK(g->n_outputs == 1 && strcmp(g->output_names[0], "last_hidden_state") == 0 && y->shape.rank == 3 &&
        y->shape.dims[1] == 77 && y->shape.dims[2] == 768);
  CHECK(ldmc_graph_find_param(g, "text_model.encoder.layers.11.self_attn.out_proj.bias") >= 0);
  CHECK(ldmc_graph_find_param(g, "text_model.final_layer_norm.weight") >= 0);
  ldmc_graph_free(g);
  cfg.ids_i64 = true;
  CHECK(ldmc_clip_build(&cfg, &g) == LDMC_OK && g->nodes[ldmc_graph_param_node(g, 0)].dtype == LDMC_I64);
  ldmc_graph_free(g);

  cfg.heads = 7;
  CHECK(ldmc_clip_build(&cfg, &g) == LDMC_ERR_INVALID && g == NULL && strstr(ldmc_last_error(), "heads 7"));
  cfg.heads = 12;
  cfg.vocab_size = 0;
  CHECK(ldmc_clip_build(&cfg, &g) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "vocab_size"));
  ldmc_clip_config_words(&cfg, 64, 8);
  CHECK(cfg.vocab_size == 12 && cfg.max_positions == 8 && cfg.heads == 2 && cfg.mlp_width == 256 &&
        ldmc_clip_config_check(&cfg) == LDMC_OK);
  ldmc_clip_config_words(&cfg, 100, 8);
  CHECK(ldmc_clip_config_check(&cfg) == LDMC_OK && cfg.heads == 2);

  if (!g_torch) return;
  char cmd[512], line[128] = "";
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/torch/clip_ref.py --config sd15 --count",
           getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..");
  FILE *p = popen(cmd, "r");
  CHECK(p != NULL);
  if (!p) return;
  if (!fgets(line, sizeof line, p)) line[0] = 0;
  CHECK_MSG(pclose(p) == 0 && strcmp(line, "196 123060480\n") == 0, "torch counts '%s'", line);
  printf("text_encoder: torch reference counts %s", line);
}

/* ---- 3: against torch ---- */
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

static ldmc_status add_view(ldmc_tensor_set *s, const ldmc_tensor *t, const char *name) {
  ldmc_tensor v = *t;
  v.name = strdup(name ? name : t->name);
  v.owns_data = false;
  return v.name ? ldmc_tensor_set_add(s, &v) : LDMC_ERR_NOMEM;
}

/* max |a - b| / max |b| (floored at 1e-12) over the tensors, NaN as infinity. */
static double rel_err(const ldmc_tensor *a, const ldmc_tensor *b, double *scale) {
  int64_t n;
  if (!a || !b || !ldmc_shape_equal(&a->shape, &b->shape) || ldmc_shape_numel(&a->shape, 0, &n) != LDMC_OK)
    return INFINITY;
  double md = 0, mx = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = ldmc_tensor_get(a, i), y = ldmc_tensor_get(b, i), d = fabs(x - y);
    if (!(d <= md)) md = isnan(d) ? INFINITY : d;
    if (fabs(y) > mx) mx = fabs(y);
  }
  if (scale) *scale = mx;
  return md / fmax(mx, 1e-12);
}

static ldmc_status run_on(const char *backend, const ldmc_graph *g, const ldmc_tensor_set *in, ldmc_tensor_set *out) {
  const ldmc_backend_i *be = ldmc_backend_find(backend);
  if (!be) return LDMC_ERR_INVALID;
  ldmc_executable *e = NULL;
  ldmc_status st = be->compile(g, &(ldmc_compile_opts){.threads = 2}, &e);
  if (st == LDMC_OK) st = ldmc_executable_run_named(e, in, out);
  ldmc_executable_free(e);
  return st;
}

static const char *const k_grad_params[] = {
    "text_model.embeddings.token_embedding.weight",         "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.0.self_attn.q_proj.weight", "text_model.encoder.layers.0.self_attn.v_proj.bias",
    "text_model.encoder.layers.1.layer_norm1.bias",        "text_model.encoder.layers.1.mlp.fc1.weight",
    "text_model.final_layer_norm.weight"};
#define N_GRAD_PARAMS (int)(sizeof k_grad_params / sizeof k_grad_params[0])

static void test_torch(void) {
  ldmc_clip_config cfg = {.vocab_size = LDMC_TOKENIZER_VOCAB_SIZE, .max_positions = 8, .width = 32, .layers = 2,
                          .heads = 4, .mlp_width = 80, .batch = 3};
  const char *prompts[3] = {"ankle boot", "", "dress Coat shirt bag"};
  ldmc_graph *g = NULL, *gg = NULL;
  CHECK_MSG(ldmc_clip_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  /* wrt: the listed parameters, as one alternation */
  char re[1024] = "^(";
  for (int i = 0; i < N_GRAD_PARAMS; i++) {
    size_t used = strlen(re);
    snprintf(re + used, sizeof re - used, "%s%s", i ? "|" : "", k_grad_params[i]);
  }
  strcat(re, ")$");
  ldmc_grad_opts go = {.output = "last_hidden_state", .seed = LDMC_GRAD_COTANGENT, .wrt_regex = re};
  if (g) CHECK_MSG(ldmc_grad(g, &go, &gg) == LDMC_OK, "%s", ldmc_last_error());
  if (!g || !gg) {
    ldmc_graph_free(g);
    return;
  }
  CHECK(gg->n_outputs == 1 + N_GRAD_PARAMS);
  ldmc_tensor_set w = {0}, in = {0}, fwd_in = {0}, grad_in = {0}, ref = {0};
  CHECK(ldmc_weights_init_random(g, ldmc_clip_input_names, LDMC_CLIP_N_INPUTS, 11, &w) == LDMC_OK);
  perturb_norms(&w);
  ldmc_tensor ids, ct;
  const int64_t T = cfg.max_positions, D = cfg.width;
  ldmc_tensor_alloc(&ids, "input_ids", LDMC_I32, &(ldmc_shape){2, {cfg.batch, T}});
  for (int b = 0; b < 3; b++)
    CHECK_MSG(ldmc_tokenizer_encode(prompts[b], (int)T, (int32_t *)ids.data + b * T) == LDMC_OK, "%s",
              ldmc_last_error());
  ldmc_tensor_alloc(&ct, "cotangent.last_hidden_state", LDMC_F32, &(ldmc_shape){3, {cfg.batch, T, D}});
  for (int64_t i = 0; i < cfg.batch * T * D; i++) ldmc_tensor_set_elem(&ct, i, 2 * ldmc_weights_uniform(5, "ct", i) - 1);
  CHECK(ldmc_tensor_set_add(&in, &ids) == LDMC_OK && ldmc_tensor_set_add(&in, &ct) == LDMC_OK);
  CHECK(ldmc_weights_bind(&w, &(ldmc_tensor_set){0}, &fwd_in) == LDMC_OK);
  CHECK(ldmc_weights_bind(&w, &(ldmc_tensor_set){0}, &grad_in) == LDMC_OK);
  CHECK(add_view(&fwd_in, &in.items[0], NULL) == LDMC_OK);
  CHECK(add_view(&grad_in, &in.items[0], NULL) == LDMC_OK && add_view(&grad_in, &in.items[1], NULL) == LDMC_OK);

  char wpath[128], ipath[128], rpath[512], cmd[1024];
  snprintf(wpath, sizeof wpath, "%s/weights.safetensors", g_dir);
  snprintf(ipath, sizeof ipath, "%s/inputs.safetensors", g_dir);
  snprintf(rpath, sizeof rpath, "%s/ref.safetensors", g_dir);
  CHECK_MSG(ldmc_safetensors_save(wpath, &w, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_safetensors_save(ipath, &in, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 %s/tests/torch/clip_ref.py --config '{\"vocab_size\":12,\"max_positions\":8,"
           "\"width\":32,\"layers\":2,\"heads\":4,\"mlp_width\":80}' --weights %s --inputs %s --out %s --grad",
           getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..", wpath, ipath, rpath);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "torch reference failed: %s", cmd);
  if (rc == 0) CHECK(ldmc_safetensors_load(rpath, &ref) == LDMC_OK);

  const char *backends[2] = {"interp", "llvm-cpu"};
  for (int k = 0; k < 2 && rc == 0; k++) {
    ldmc_tensor_set out = {0}, gout = {0};
    CHECK_MSG(run_on(backends[k], g, &fwd_in, &out) == LDMC_OK, "%s: %s", backends[k], ldmc_last_error());
    double scale = 0, e = rel_err(ldmc_tensor_set_find(&out, "last_hidden_state"),
                                  ldmc_tensor_set_find(&ref, "last_hidden_state"), &scale);
    printf("text_encoder: %s: last_hidden_state max |ldmc - torch| / max |torch| = %.3g (max |torch| %.3g)\n",
           backends[k], e, scale);
    CHECK_MSG(e < 2e-6, "%s: last_hidden_state differs from torch by %.3g", backends[k], e);
    CHECK(scale > 0.5);
    CHECK_MSG(run_on(backends[k], gg, &grad_in, &gout) == LDMC_OK, "%s grad: %s", backends[k], ldmc_last_error());
    for (int i = 0; i < N_GRAD_PARAMS; i++) {
      char name[160];
      snprintf(name, sizeof name, "grad.%s", k_grad_params[i]);
      const ldmc_tensor *a = ldmc_tensor_set_find(&gout, name);
      double e2 = rel_err(a, ldmc_tensor_set_find(&ref, name), &scale);
      printf("text_encoder: %s: %s: error %.3g (max |torch| %.3g)\n", backends[k], name, e2, scale);
      CHECK_MSG(e2 < 5e-6 && scale > 1e-3, "%s: %s differs from torch by %.3g (scale %.3g)", backends[k], name, e2,
                scale);
    }
    /* rows of tokens no prompt uses get no gradient; used rows do */
    const ldmc_tensor *te = ldmc_tensor_set_find(&gout, "grad.text_model.embeddings.token_embedding.weight");
    if (te) {
      double used = 0, unused = 0;
      for (int64_t r = 0; r < cfg.vocab_size; r++)
        for (int64_t j = 0; j < D; j++) {
          double v = fabs(ldmc_tensor_get(te, r * D + j));
          bool u = r == 0 || r == 1 || r == 5 || r == 6 || r == 8 || r == 10 || r == 11;
          if (u) used = fmax(used, v);
          else unused = fmax(unused, v);
        }
      CHECK_MSG(used > 1e-3 && unused == 0, "token_embedding gradient: used rows %g, unused rows %g", used, unused);
    }
    ldmc_tensor_set_free(&out);
    ldmc_tensor_set_free(&gout);
  }
  ldmc_tensor_set_free(&ref);
  ldmc_tensor_set_free(&fwd_in);
  ldmc_tensor_set_free(&grad_in);
  ldmc_tensor_set_free(&in);
  ldmc_tensor_set_free(&w);
  ldmc_graph_free(gg);
  ldmc_graph_free(g);
}

int main(void) {
  test_tokenizer();
  g_torch = system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
  if (!g_torch) printf("SKIP torch comparisons: /usr/bin/python3 cannot import torch and numpy\n");
  test_sd15_count();
  if (g_torch) {
    strcpy(g_dir, "/tmp/ldmc_text_encoder_XXXXXX");
    if (mkdtemp(g_dir)) {
      test_torch();
      char cmd[128];
      snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
      if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    } else {
      CHECK(!"mkdtemp");
    }
  }
  return test_summary("test_text_encoder");
}
