/* The prompt encoder: transformers' CLIPTextModel (structure and state-dict
 * keys) over a small word vocabulary, whose last hidden states are the
 * U-Net's context (encoder_hidden_states), and that vocabulary's tokenizer.
 * See docs/models.md, "The prompt encoder". */
#ifndef LDMC_MODELS_TEXT_ENCODER_H
#define LDMC_MODELS_TEXT_ENCODER_H

#include "ir/ir.h"

typedef struct ldmc_clip_config {
  int vocab_size;    /* rows of token_embedding (49408 for SD-1.5) */
  int max_positions; /* rows of position_embedding, and the token count T of the input (77) */
  int width;         /* hidden_size (768) */
  int layers;        /* encoder layers (12) */
  int heads;         /* attention heads (12); width must be divisible by it */
  int mlp_width;     /* intermediate_size (3072) */
  int64_t batch;     /* B */
  bool ids_i64;      /* input_ids as i64 instead of i32 */
} ldmc_clip_config;

/* CLIP ViT-L/14's text model, SD-1.5's text encoder: 123,060,480 parameters. */
void ldmc_clip_config_sd15(ldmc_clip_config *cfg);
/* A small encoder over the word vocabulary below: vocab_size =
 * LDMC_TOKENIZER_VOCAB_SIZE, T = tokens, the given width, 2 layers, as
 * many heads of width >= 32 as divide it (at least 1), MLP 4 x width, batch 1. */
void ldmc_clip_config_words(ldmc_clip_config *cfg, int width, int tokens);
/* Every field >= 1, width divisible by heads; the message names the field. */
ldmc_status ldmc_clip_config_check(const ldmc_clip_config *cfg);

/* Builds the forward graph, named "text_encoder". Parameters, in order:
 * input_ids i32[B,T] (i64 with ids_i64), then the weights under their
 * CLIPTextModel keys:
 *   text_model.embeddings.token_embedding.weight     [V,D]
 *   text_model.embeddings.position_embedding.weight  [T,D]
 *   text_model.encoder.layers.N.layer_norm1.{weight,bias}          [D]
 *   text_model.encoder.layers.N.self_attn.{q,k,v,out}_proj.weight  [D,D] (.bias [D])
 *   text_model.encoder.layers.N.layer_norm2.{weight,bias}          [D]
 *   text_model.encoder.layers.N.mlp.fc1.weight [M,D], .bias [M]; mlp.fc2.weight [D,M], .bias [D]
 *   text_model.final_layer_norm.{weight,bias}                      [D]
 * One output, last_hidden_state f32[B,T,D] (after final_layer_norm).
 * Pre-LayerNorm layers (eps 1e-5): h += out_proj(causal multi-head
 * self-attention(layer_norm1(h))), h += fc2(quick_gelu(fc1(layer_norm2(h)))),
 * quick_gelu(x) = x * sigmoid(1.702 x). Ids outside [0, V) are clamped by
 * the gather (tokenize with ldmc_tokenizer_encode to get valid ones). */
ldmc_status ldmc_clip_build(const ldmc_clip_config *cfg, ldmc_graph **out);

#define LDMC_CLIP_N_INPUTS 1
extern const char *const ldmc_clip_input_names[LDMC_CLIP_N_INPUTS]; /* input_ids */

/* ---- the word tokenizer ----
 * Vocabulary: id 0 "<|startoftext|>", id 1 "<|endoftext|>" (also the pad
 * token, as SD-1.5's CLIP tokenizer pads), then the ten Fashion-MNIST class
 * names in label order, ids 2..11: t-shirt, trouser, pullover, dress, coat,
 * sandal, shirt, sneaker, bag, ankle boot. A prompt is lowercased and split
 * at whitespace; words are matched greedily against the vocabulary, longest
 * entry first, so "ankle boot" (two words) is one token while "ankle" or
 * "boot" alone are unknown. */
#define LDMC_TOKENIZER_START 0
#define LDMC_TOKENIZER_END 1
#define LDMC_TOKENIZER_PAD LDMC_TOKENIZER_END
#define LDMC_TOKENIZER_N_CLASSES 10
#define LDMC_TOKENIZER_VOCAB_SIZE (2 + LDMC_TOKENIZER_N_CLASSES)

/* The text of token id, NULL outside [0, LDMC_TOKENIZER_VOCAB_SIZE). */
const char *ldmc_tokenizer_token(int id);
/* Fashion-MNIST label -> its prompt ("t-shirt", ..., "ankle boot"); NULL
 * outside [0, 10). ldmc_tokenizer_encode of it gives [START, 2 + label, END, pad...]. */
const char *ldmc_class_prompt(int label);

/* prompt -> ids[tokens]: START, one id per matched word, END, then END as
 * padding up to tokens. The empty (or all-blank) prompt is valid: START,
 * END, padding. Errors (LDMC_ERR_INVALID, ids untouched): a NULL prompt or
 * ids, tokens < 2, an unknown word (the message quotes it and lists the
 * vocabulary), more words than tokens - 2 (the message gives both counts). */
ldmc_status ldmc_tokenizer_encode(const char *prompt, int tokens, int32_t *ids);

#endif
