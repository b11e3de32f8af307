/* The prompt encoder (transformers' CLIPTextModel, see text_encoder.h) and
 * its word tokenizer. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "frontend/nn.h"
#include "models/text_encoder.h"

const char *const ldmc_clip_input_names[LDMC_CLIP_N_INPUTS] = {"input_ids"};

#define CLIP_LN_EPS 1e-5
#define CLIP_MAX_DIM (1 << 24) /* any config field; keeps every product in int64 */
/* The causal mask's additive value: exp() of it is 0 in f32, as with the
 * float minimum transformers adds, while staying finite for every backend. */
#define CLIP_MASKED (-1e9)

void ldmc_clip_config_sd15(ldmc_clip_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->vocab_size = 49408;
  cfg->max_positions = 77;
  cfg->width = 768;
  cfg->layers = 12;
  cfg->heads = 12;
  cfg->mlp_width = 3072;
  cfg->batch = 1;
}

void ldmc_clip_config_words(ldmc_clip_config *cfg, int width, int tokens) {
  memset(cfg, 0, sizeof *cfg);
  cfg->vocab_size = LDMC_TOKENIZER_VOCAB_SIZE;
  cfg->max_positions = tokens;
  cfg->width = width;
  cfg->layers = 2;
  cfg->heads = 1;
  for (int h = width / 32; h > 1; h--)
    if (width % h == 0) {
      cfg->heads = h;
      break;
    }
  cfg->mlp_width = width > 0 && width <= CLIP_MAX_DIM / 4 ? 4 * width : width;
  cfg->batch = 1;
}

ldmc_status ldmc_clip_config_check(const ldmc_clip_config *cfg) {
  if (!cfg) return ldmc_error(LDMC_ERR_INVALID, "text encoder config: NULL");
  const struct {
    const char *name;
    int64_t v;
  } f[] = {{"vocab_size", cfg->vocab_size}, {"max_positions", cfg->max_positions}, {"width", cfg->width},
           {"layers", cfg->layers},         {"heads", cfg->heads},                 {"mlp_width", cfg->mlp_width},
           {"batch", cfg->batch}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (f[i].v < 1 || f[i].v > CLIP_MAX_DIM)
      return ldmc_error(LDMC_ERR_INVALID, "text encoder config: %s = %lld must be in [1, %d]", f[i].name,
                        (long long)f[i].v, CLIP_MAX_DIM);
  if (cfg->width % cfg->heads != 0)
    return ldmc_error(LDMC_ERR_INVALID, "text encoder config: width %d is not divisible by heads %d", cfg->width,
                      cfg->heads);
  return LDMC_OK;
}

typedef struct clip_ctx {
  ldmc_builder *b;
  const ldmc_clip_config *cfg;
  ldmc_value mask; /* [T,T]: 0 on and below the diagonal, CLIP_MASKED above */
} clip_ctx;

/* [B,T,H*d] -> [B,H,T,d] */
static ldmc_value split_heads(clip_ctx *c, ldmc_value x) {
  const ldmc_clip_config *cfg = c->cfg;
  const int64_t d4[4] = {cfg->batch, cfg->max_positions, cfg->heads, cfg->width / cfg->heads}, perm[4] = {0, 2, 1, 3};
  return ldmc_transpose(c->b, ldmc_reshape(c->b, x, 4, d4), perm);
}

/* CLIPAttention: q scaled by head_dim^-0.5, logits + causal mask, softmax,
 * heads merged, out_proj. Written in primitives (the attention op has no
 * mask), so the attention pass leaves it alone. */
static ldmc_value self_attention(clip_ctx *c, ldmc_value x) {
  ldmc_builder *b = c->b;
  const ldmc_clip_config *cfg = c->cfg;
  const int64_t D = cfg->width, head_dim = D / cfg->heads;
  ldmc_builder_push_scope(b, "self_attn");
  ldmc_value q = ldmc_scale(b, ldmc_nn_linear(b, "q_proj", x, D, true), 1.0 / sqrt((double)head_dim));
  q = split_heads(c, q);
  ldmc_value k = split_heads(c, ldmc_nn_linear(b, "k_proj", x, D, true));
  ldmc_value v = split_heads(c, ldmc_nn_linear(b, "v_proj", x, D, true));
  const ldmc_ints batch = {.n = 2, .v = {0, 1}}, c3 = {.n = 1, .v = {3}}, c2 = {.n = 1, .v = {2}};
  ldmc_value logits = ldmc_add(b, ldmc_dot_general(b, q, k, &batch, &batch, &c3, &c3), c->mask); /* [B,H,T,T] */
  ldmc_value p = ldmc_softmax(b, logits, 3);
  ldmc_value o = ldmc_dot_general(b, p, v, &batch, &batch, &c3, &c2); /* [B,H,T,d] */
  const int64_t perm[4] = {0, 2, 1, 3}, d3[3] = {cfg->batch, cfg->max_positions, D};
  o = ldmc_reshape(b, ldmc_transpose(b, o, perm), 3, d3);
  o = ldmc_nn_linear(b, "out_proj", o, D, true);
  ldmc_builder_pop_scope(b);
  return o;
}

/* CLIPMLP: fc1, quick_gelu (x * sigmoid(1.702 x)), fc2. */
static ldmc_value mlp(clip_ctx *c, ldmc_value x) {
  ldmc_builder *b = c->b;
  ldmc_builder_push_scope(b, "mlp");
  ldmc_value h = ldmc_nn_linear(b, "fc1", x, c->cfg->mlp_width, true);
  h = ldmc_mul(b, h, ldmc_unary(b, LDMC_OP_LOGISTIC, ldmc_scale(b, h, 1.702)));
  h = ldmc_nn_linear(b, "fc2", h, c->cfg->width, true);
  ldmc_builder_pop_scope(b);
  return h;
}

/* CLIPEncoderLayer: pre-LayerNorm attention and MLP, each residual. */
static ldmc_value encoder_layer(clip_ctx *c, ldmc_value h) {
  ldmc_builder *b = c->b;
  h = ldmc_add(b, h, self_attention(c, ldmc_nn_layer_norm(b, "layer_norm1", h, CLIP_LN_EPS)));
  return ldmc_add(b, h, mlp(c, ldmc_nn_layer_norm(b, "layer_norm2", h, CLIP_LN_EPS)));
}

static ldmc_value causal_mask(ldmc_builder *b, int64_t T) {
  float *m = malloc((size_t)(T * T) * sizeof *m);
  const int64_t d[2] = {T, T};
  if (!m) return ldmc_constant(b, LDMC_F32, 2, d, NULL); /* reports the missing data */
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < T; j++) m[i * T + j] = j <= i ? 0.0f : (float)CLIP_MASKED;
  ldmc_value v = ldmc_constant(b, LDMC_F32, 2, d, m);
  free(m);
  return v;
}

ldmc_status ldmc_clip_build(const ldmc_clip_config *cfg, ldmc_graph **out) {
  if (!out) return ldmc_error(LDMC_ERR_INVALID, "text encoder: out is NULL");
  *out = NULL;
  LDMC_TRY(ldmc_clip_config_check(cfg));
  ldmc_builder *b = ldmc_builder_new("text_encoder");
  if (!b) return ldmc_error(LDMC_ERR_NOMEM, "text encoder: out of memory");
  clip_ctx c = {.b = b, .cfg = cfg};
  const int64_t T = cfg->max_positions, D = cfg->width;
  const int64_t ids_d[2] = {cfg->batch, T};
  ldmc_value ids = ldmc_parameter(b, ldmc_clip_input_names[0], cfg->ids_i64 ? LDMC_I64 : LDMC_I32, 2, ids_d);

  ldmc_builder_push_scope(b, "text_model");
  ldmc_builder_push_scope(b, "embeddings");
  const int64_t tok_d[2] = {cfg->vocab_size, D}, pos_d[2] = {T, D};
  ldmc_value tok = ldmc_nn_param(b, "token_embedding.weight", LDMC_F32, 2, tok_d);
  ldmc_value pos = ldmc_nn_param(b, "position_embedding.weight", LDMC_F32, 2, pos_d);
  /* position_ids = arange(T): the whole table, broadcast over the batch */
  ldmc_value h = ldmc_add(b, ldmc_gather(b, tok, ids, 0), pos); /* [B,T,D] */
  ldmc_builder_pop_scope(b);

  c.mask = causal_mask(b, T);
  for (int l = 0; l < cfg->layers; l++) {
    ldmc_builder_push_scope(b, "encoder.layers.%d", l);
    h = encoder_layer(&c, h);
    ldmc_builder_pop_scope(b);
  }
  h = ldmc_nn_layer_norm(b, "final_layer_norm", h, CLIP_LN_EPS);
  ldmc_builder_pop_scope(b);
  ldmc_builder_output(b, h, "last_hidden_state");
  ldmc_status st;
  *out = ldmc_builder_finish(b, &st);
  if (st != LDMC_OK) ldmc_error_prefix("building the text encoder (width %d, %d layers): ", cfg->width, cfg->layers);
  return st;
}

/* ---- the word tokenizer ---- */

static const char *const k_vocab[LDMC_TOKENIZER_VOCAB_SIZE] = {
    "<|startoftext|>", "<|endoftext|>", "t-shirt", "trouser", "pullover", "dress",
    "coat",            "sandal",        "shirt",   "sneaker", "bag",      "ankle boot"};

const char *ldmc_tokenizer_token(int id) {
  return id >= 0 && id < LDMC_TOKENIZER_VOCAB_SIZE ? k_vocab[id] : NULL;
}

const char *ldmc_class_prompt(int label) {
  return label >= 0 && label < LDMC_TOKENIZER_N_CLASSES ? k_vocab[2 + label] : NULL;
}

typedef struct word {
  const char *s;
  size_t n;
} word;

static bool is_blank(char ch) { return isspace((unsigned char)ch) != 0; }

/* Whether entry (its words separated by single spaces) equals words w[0..]
 * (at most nw), case-insensitively; *used gets how many words it took. */
static bool entry_matches(const char *entry, const word *w, int nw, int *used) {
  int k = 0;
  for (const char *e = entry; *e; k++) {
    size_t len = strcspn(e, " ");
    if (k >= nw || w[k].n != len) return false;
    for (size_t i = 0; i < len; i++)
      if (tolower((unsigned char)w[k].s[i]) != (unsigned char)e[i]) return false;
    e += len;
    if (*e == ' ') e++;
  }
  *used = k;
  return true;
}

static ldmc_status unknown_word(const char *prompt, const word *w, int index, int nw) {
  char vocab[256] = "", qp[160], qw[96], wbuf[64];
  for (int i = 2; i < LDMC_TOKENIZER_VOCAB_SIZE; i++) {
    size_t used = strlen(vocab);
    snprintf(vocab + used, sizeof vocab - used, "%s'%s'", i > 2 ? ", " : "", k_vocab[i]);
  }
  size_t n = w->n < sizeof wbuf - 1 ? w->n : sizeof wbuf - 1;
  memcpy(wbuf, w->s, n);
  wbuf[n] = 0;
  return ldmc_error(LDMC_ERR_INVALID,
                    "prompt '%s': unknown word '%s' (word %d of %d); the vocabulary is %s (lowercased, split at "
                    "whitespace; 'ankle boot' is one token), or the empty prompt",
                    ldmc_quote(prompt, qp, sizeof qp), ldmc_quote(wbuf, qw, sizeof qw), index + 1, nw, vocab);
}

ldmc_status ldmc_tokenizer_encode(const char *prompt, int tokens, int32_t *ids) {
  if (!prompt || !ids) return ldmc_error(LDMC_ERR_INVALID, "tokenizer: %s is NULL", prompt ? "ids" : "the prompt");
  if (tokens < 2)
    return ldmc_error(LDMC_ERR_INVALID, "tokenizer: %d tokens cannot hold the start and end tokens (need >= 2)",
                      tokens);
  int nw = 0;
  for (const char *p = prompt; *p;) {
    while (*p && is_blank(*p)) p++;
    if (!*p) break;
    nw++;
    while (*p && !is_blank(*p)) p++;
  }
  word *w = malloc((size_t)(nw ? nw : 1) * sizeof *w);
  int32_t *got = malloc((size_t)(nw ? nw : 1) * sizeof *got);
  if (!w || !got) {
    free(w);
    free(got);
    return ldmc_error(LDMC_ERR_NOMEM, "tokenizer: out of memory");
  }
  int k = 0;
  for (const char *p = prompt; *p;) {
    while (*p && is_blank(*p)) p++;
    if (!*p) break;
    w[k].s = p;
    while (*p && !is_blank(*p)) p++;
    w[k].n = (size_t)(p - w[k].s);
    k++;
  }
  ldmc_status st = LDMC_OK;
  int n_ids = 0;
  for (int i = 0; i < nw && st == LDMC_OK;) {
    int best = -1, best_used = 0;
    for (int id = 2; id < LDMC_TOKENIZER_VOCAB_SIZE; id++) {
      int used = 0;
      if (entry_matches(k_vocab[id], w + i, nw - i, &used) && used > best_used) best = id, best_used = used;
    }
    if (best < 0) {
      st = unknown_word(prompt, &w[i], i, nw);
      break;
    }
    got[n_ids++] = best;
    i += best_used;
  }
  if (st == LDMC_OK && n_ids > tokens - 2) {
    char qp[160];
    st = ldmc_error(LDMC_ERR_INVALID,
                    "prompt '%s' is too long: %d tokens, but %d tokens hold at most %d besides the start and end "
                    "tokens",
                    ldmc_quote(prompt, qp, sizeof qp), n_ids, tokens, tokens - 2);
  }
  if (st == LDMC_OK) {
    ids[0] = LDMC_TOKENIZER_START;
    for (int i = 0; i < n_ids; i++) ids[1 + i] = got[i];
    for (int i = 1 + n_ids; i < tokens; i++) ids[i] = LDMC_TOKENIZER_END; /* end, then end as padding */
  }
  free(w);
  free(got);
  return st;
}
