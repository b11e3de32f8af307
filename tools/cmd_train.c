/* ldmc train: trains the classifier, the autoencoder or the latent diffusion
 * model (prompt encoder + U-Net) on Fashion-MNIST with checkpoints and exact
 * resume (docs/training.md). The loop is runtime/trainer.c; the models'
 * graphs, data and validation are models/; this file maps flags to them. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "models/ldm_model.h"
#include "models/train_data.h"
#include "runtime/checkpoint.h"
#include "runtime/dist.h"
#include "tools/cli_args.h"
#include "tools/cli_kv.h"
#include "tools/cli_target.h"
#include "tools/commands.h"

enum {
  F_MODEL, F_OUT, F_STEPS, F_EPOCHS, F_BATCH, F_LR, F_WARMUP, F_DECAY, F_MIN_LR, F_WD, F_CLIP, F_EMA, F_SEED,
  F_THREADS, F_TARGET, F_BACKEND, F_BF16, F_CKPT, F_KEEP, F_LOG, F_VAL, F_VAL_BATCHES, F_RESUME, F_PROGRESS,
  F_NO_PROGRESS, F_DATA, F_LIMIT, F_EXPORT, F_CHANNELS, F_GROUPS, F_TEXT_WIDTH, F_TEXT_LAYERS, F_TEXT_HEADS, F_TOKENS,
  F_VAE, F_PREDICTION, F_SCHEDULE, F_COND_DROP, F_VAE_CHANNELS, F_VAE_LAYERS, F_LATENT_CHANNELS, F_KL,
  F_CLS_WIDTHS, F_FEATURES, F_STOP_AFTER, F_INIT, F_SUPERRES, F_COUNT
};

static ldmc_cli_flag k_flags[F_COUNT] = {
    [F_MODEL] = {"model", "NAME", "what to train: classifier, autoencoder, or unet (the latent diffusion model:\n"
                                  "prompt encoder + U-Net over a trained autoencoder's latents, --vae)"},
    [F_OUT] = {"out", "DIR", "output folder: checkpoints DIR/ckpt-<step>.ldmc, DIR/log.csv and, at the end,\n"
                             "DIR/model.ldmc (the trained weights, EMA ones with --ema)"},
    [F_STEPS] = {"steps", "N", "optimizer steps in all (a resumed run continues up to N)"},
    [F_EPOCHS] = {"epochs", "E", "instead of --steps: E passes over the training split"},
    [F_BATCH] = {"batch", "B", "images per step (default 64); under mpirun the global batch, split evenly over\n"
                               "the ranks (B must be a multiple of their count)"},
    [F_LR] = {"lr", "LR", "peak learning rate (default 1e-3; unet 3e-4)"},
    [F_WARMUP] = {"warmup", "N", "linear learning-rate warm-up over the first N steps (default 100)"},
    [F_DECAY] = {"lr-decay", "KIND", "after warm-up: constant or cosine (default cosine, down to --min-lr-frac)"},
    [F_MIN_LR] = {"min-lr-frac", "F", "cosine decay ends at F x the peak learning rate (default 0.1)"},
    [F_WD] = {"weight-decay", "W", "AdamW's decoupled weight decay (default 0)"},
    [F_CLIP] = {"clip", "NORM", "clip gradients to global L2 norm NORM (default 1.0; 0: off)"},
    [F_EMA] = {"ema", "DECAY", "keep an EMA of the weights with this decay, exported as the model (e.g. 0.999)"},
    [F_SEED] = {"seed", "S", "seed of the initial weights, the data order and the in-graph noise (default 0)"},
    [F_THREADS] = {"threads", "N", "threads (default: OpenMP's); resume with the same count for identical bits"},
    [F_TARGET] = {"target", "NAME", "what executes the step: llvm-cpu[:scalar|avx2|avx512] (default) or interp"},
    [F_BACKEND] = {"backend", "NAME", "synonym of --target"},
    [F_BF16] = {"bf16", NULL, "bf16 GEMM/convolution operands with f32 accumulation (master weights stay f32)"},
    [F_CKPT] = {"ckpt-every", "N", "write a checkpoint every N steps (default 500; one is always written at the end)"},
    [F_KEEP] = {"keep", "K", "checkpoints kept, newest first (default 3)"},
    [F_LOG] = {"log-every", "N", "CSV rows and plain progress lines every N steps (default 50)"},
    [F_VAL] = {"val-every", "N", "validate on the test split every N steps (default 1000; also at the end)"},
    [F_VAL_BATCHES] = {"val-batches", "N", "unet: test batches per validation (default 8)"},
    [F_RESUME] = {"resume", NULL, "continue from DIR's newest good checkpoint (same flags, same thread count)"},
    [F_PROGRESS] = {"progress", NULL, "draw a progress bar even when stderr is not a terminal"},
    [F_NO_PROGRESS] = {"no-progress", NULL, "plain progress lines even on a terminal"},
    [F_DATA] = {"data", "DIR", "Fashion-MNIST folder (default $LDMC_FASHION_MNIST_DIR or\n"
                               "/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)"},
    [F_LIMIT] = {"limit", "N", "use only the first N images of each split (quick runs, tests)"},
    [F_EXPORT] = {"export-dtype", "DT", "dtype of DIR/model.ldmc: f32 (default) or bf16"},
    [F_CHANNELS] = {"channels", "C", "unet: base width c (block widths c,2c,4c,4c; default 64)"},
    [F_GROUPS] = {"groups", "G", "unet: GroupNorm groups (default 32; every block width must divide by G, so "
                                 "small widths such as c=16 or 24 need G=8)"},
    [F_TEXT_WIDTH] = {"text-width", "D", "unet: the prompt encoder's width = the U-Net's context width (default 64)"},
    [F_TEXT_LAYERS] = {"text-layers", "N", "unet: prompt encoder layers (default 2)"},
    [F_TEXT_HEADS] = {"text-heads", "N", "unet: prompt encoder attention heads (default 4)"},
    [F_TOKENS] = {"tokens", "T", "unet: prompt tokens = the U-Net's context tokens (default 4)"},
    [F_VAE] = {"vae", "FILE", "unet: the trained autoencoder (the model.ldmc of `ldmc train --model autoencoder`,\n"
                             "or a latent diffusion model file, whose bundled autoencoder is used)"},
    [F_PREDICTION] = {"prediction", "KIND", "unet: epsilon (default), v_prediction or sample"},
    [F_SCHEDULE] = {"schedule", "NAME", "unet: beta schedule scaled_linear (default, SD's) or squaredcos_cap_v2"},
    [F_COND_DROP] = {"cond-drop", "P", "unet: probability a prompt is replaced by the empty one (default 0.1)"},
    [F_VAE_CHANNELS] = {"vae-channels", "C,C,..", "autoencoder: block_out_channels (default 32,64,128)"},
    [F_VAE_LAYERS] = {"vae-layers", "N", "autoencoder: layers_per_block (default 1)"},
    [F_LATENT_CHANNELS] = {"latent-channels", "N", "autoencoder: latent channels (default 4)"},
    [F_KL] = {"kl-weight", "W", "autoencoder: loss = MSE + W x KL (default 1e-6)"},
    [F_CLS_WIDTHS] = {"widths", "C,C,..", "classifier: conv stage widths (default 32,64,128)"},
    [F_FEATURES] = {"features", "F", "classifier: the penultimate (feature) width (default 128)"},
    [F_STOP_AFTER] = {"stop-after", "N", "end this run after N steps with a checkpoint (the schedule stays that of\n"
                                         "--steps; continue with --resume)"},
    [F_INIT] = {"init", "FILE", "unet: start from a trained latent diffusion model file (its configuration, prompt\n"
                                "encoder, U-Net and autoencoder; --channels, --groups, --text-*, --tokens, --vae,\n"
                                "--prediction and --schedule are then an error)"},
    [F_SUPERRES] = {"superres", "F", "unet: super-resolution finetuning: the U-Net also gets the latent of each image\n"
                                     "average-pooled FxF and upsampled back (conv_in widened; its new input channels\n"
                                     "start at zero with --init, so the finetuning starts from the trained model)"},
};

static ldmc_cli_cmd k_cmd = {
    .name = "train",
    .usage = "--model classifier|autoencoder|unet --out DIR [--steps N | --epochs E] [options]",
    .summary = "train the classifier, the autoencoder or the latent diffusion model on Fashion-MNIST",
    .details = "A progress bar (step/total, loss, images/s, ETA) on a terminal, plain lines otherwise; DIR/log.csv\n"
               "has step, lr, loss, grad_norm, images/s and the validation loss and metric (classifier: accuracy,\n"
               "autoencoder: PSNR in dB). Ctrl-C finishes the step, writes a checkpoint and exits (status 130).\n"
               "The autoencoder's model.ldmc stores its latent scale factor (1/std of its training latents).\n"
               "Examples:\n"
               "  ldmc train --model classifier --out runs/cls --epochs 3\n"
               "  ldmc train --model autoencoder --out runs/vae --steps 3000\n"
               "  ldmc train --model unet --vae runs/vae/model.ldmc --out runs/ldm --steps 20000 --ema 0.999\n"
               "  ldmc train --model unet --init runs/ldm/model.ldmc --superres 4 --out runs/sr --steps 2000\n"
               "Data-parallel (docs/distributed.md): mpirun -np N ldmc train ... gives each rank B/N images of every\n"
               "batch and all-reduces the gradients; the result matches one process with the same --batch.\n"
               "A collective waits at most $LDMC_DIST_TIMEOUT seconds (default 600) for the other ranks.",
    .flags = k_flags,
    .n_flags = F_COUNT,
};

static int real_flag(int f, double lo, double hi, double *out) {
  return ldmc_cli_real(&k_cmd, k_flags[f].name, lo, hi, out);
}

static int int_flag(int f, int64_t lo, int64_t hi, int64_t *out) {
  return ldmc_cli_int(&k_cmd, k_flags[f].name, lo, hi, out);
}

/* "32,64,128" into at most max positive ints; false on anything else */
static bool parse_ints(const char *s, int *w, int max, int *n) {
  *n = 0;
  while (*s) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v < 1 || v > (1 << 20) || *n >= max || (*end && *end != ',')) return false;
    w[(*n)++] = (int)v;
    s = *end ? end + 1 : end;
    if (*end && !*s) return false;
  }
  return *n > 0;
}

static int widths_flag(int f, int *w, int max, int *n) {
  const char *s = k_flags[f].value;
  if (!s) return LDMC_CLI_CONTINUE;
  if (!parse_ints(s, w, max, n))
    return ldmc_cli_usage_error(&k_cmd, "--%s %s: expected 1 to %d comma-separated widths in 1..1048576",
                                k_flags[f].name, s, max);
  return LDMC_CLI_CONTINUE;
}

/* The autoencoder bundled in a latent diffusion model file (its vae.* part):
 * how a family of widths shares one autoencoder (ldmc study). */
static ldmc_status load_bundled_vae(const char *path, ldmc_vae_config *cfg, ldmc_tensor_set *ws, double *scale) {
  ldmc_ldm_model m;
  LDMC_TRY(ldmc_ldm_model_load(path, &m));
  *cfg = m.vae, *scale = m.latent_scale;
  *ws = m.vae_w;
  m.vae_w = (ldmc_tensor_set){0}; /* moved */
  ldmc_ldm_model_free(&m);
  return LDMC_OK;
}

/* The autoencoder's configuration and weights from its model file, or from
 * a latent diffusion model file that bundles one. */
static ldmc_status load_vae(const char *path, ldmc_vae_config *cfg, ldmc_tensor_set *ws, double *scale) {
  ldmc_checkpoint *ck = NULL;
  LDMC_TRY(ldmc_checkpoint_read(path, &ck));
  ldmc_status st = LDMC_OK;
  const char *model = ldmc_checkpoint_config(ck, "model");
  if (model && !strcmp(model, "ldm")) {
    ldmc_checkpoint_free(ck);
    st = load_bundled_vae(path, cfg, ws, scale);
    if (st != LDMC_OK) ldmc_error_prefix("--vae: ");
    return st;
  }
  if (!model || strcmp(model, "autoencoder") != 0)
    st = ldmc_error(LDMC_ERR_INVALID, "%s: not an autoencoder model or a latent diffusion model bundling one (model = %s)",
                    path, model ? model : "none");
  ldmc_vae_config_default(cfg);
  const char *ch = ldmc_checkpoint_config(ck, "block_out_channels"), *lp = ldmc_checkpoint_config(ck, "layers_per_block");
  const char *lc = ldmc_checkpoint_config(ck, "latent_channels"), *gr = ldmc_checkpoint_config(ck, "norm_num_groups");
  const char *sf = ldmc_checkpoint_config(ck, "scaling_factor");
  if (st == LDMC_OK && (!ch || !lp || !lc || !gr || !sf))
    st = ldmc_error(LDMC_ERR_INVALID, "%s: its configuration lacks block_out_channels, layers_per_block, "
                    "latent_channels, norm_num_groups or scaling_factor", path);
  if (st == LDMC_OK && !parse_ints(ch, cfg->block_out_channels, LDMC_VAE_MAX_BLOCKS, &cfg->n_blocks))
    st = ldmc_error(LDMC_ERR_INVALID, "%s: block_out_channels '%s' is not a list of widths", path, ch);
  if (st == LDMC_OK) {
    cfg->layers_per_block = atoi(lp), cfg->latent_channels = atoi(lc), cfg->norm_num_groups = atoi(gr);
    *scale = strtod(sf, NULL);
    st = ldmc_vae_config_check(cfg);
  }
  for (int32_t i = 0; st == LDMC_OK && i < ldmc_checkpoint_num_tensors(ck); i++) {
    const ldmc_tensor *t = ldmc_checkpoint_tensor_at(ck, i, NULL, NULL);
    ldmc_tensor c;
    st = ldmc_tensor_alloc(&c, t->name, LDMC_F32, &t->shape);
    if (st != LDMC_OK) break;
    for (int64_t j = 0; j < (int64_t)(c.nbytes / 4); j++) ((float *)c.data)[j] = (float)ldmc_tensor_get(t, j);
    st = ldmc_tensor_set_add(ws, &c);
  }
  if (st != LDMC_OK) ldmc_error_prefix("--vae: ");
  ldmc_checkpoint_free(ck);
  return st;
}

typedef struct job {
  ldmc_graph *loss;
  int32_t n_data;
  ldmc_cli_kv cfg;
  ldmc_classifier_config cls;
  ldmc_vae_config vae;
  ldmc_tensor_set vae_ws; /* unet: the autoencoder inside the model file */
  double vae_scale;
  int tokens;
  ldmc_ldm_model init;    /* unet --init: the starting model (its autoencoder moved into vae_ws) */
  bool has_init;
  ldmc_tensor_set init_w; /* views of init's prompt encoder and U-Net weights (conv_in widened) */
  int superres;
} job;

static void job_free(job *j) {
  ldmc_graph_free(j->loss);
  ldmc_tensor_set_free(&j->vae_ws);
  j->init_w.n = 0; /* views: init owns them */
  ldmc_tensor_set_free(&j->init_w);
  if (j->has_init) ldmc_ldm_model_free(&j->init);
}

static int build_classifier(job *j, int64_t batch) {
  ldmc_classifier_config_default(&j->cls);
  j->cls.batch = batch;
  int n = 0, rc;
  if ((rc = widths_flag(F_CLS_WIDTHS, j->cls.widths, LDMC_CLASSIFIER_MAX_STAGES, &n)) != LDMC_CLI_CONTINUE) return rc;
  if (n) j->cls.n_stages = n;
  int64_t f = j->cls.features;
  if ((rc = int_flag(F_FEATURES, 1, 1 << 20, &f)) != LDMC_CLI_CONTINUE) return rc;
  j->cls.features = (int)f;
  if (ldmc_classifier_config_check(&j->cls) != LDMC_OK || ldmc_classifier_train_build(&j->cls, &j->loss) != LDMC_OK)
    return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  j->n_data = LDMC_CLASSIFIER_TRAIN_N_INPUTS;
  ldmc_cli_kv_add(&j->cfg, "model", "classifier");
  ldmc_cli_kv_ints(&j->cfg, "widths", j->cls.widths, j->cls.n_stages);
  ldmc_cli_kv_add(&j->cfg, "features", "%d", j->cls.features);
  ldmc_cli_kv_add(&j->cfg, "classes", "%d", j->cls.classes);
  return LDMC_CLI_CONTINUE;
}

static int build_vae(job *j, int64_t batch) {
  ldmc_vae_config_default(&j->vae);
  j->vae.batch = batch;
  int n = 0, rc;
  if ((rc = widths_flag(F_VAE_CHANNELS, j->vae.block_out_channels, LDMC_VAE_MAX_BLOCKS, &n)) != LDMC_CLI_CONTINUE)
    return rc;
  if (n) j->vae.n_blocks = n;
  int64_t lp = j->vae.layers_per_block, lc = j->vae.latent_channels;
  if ((rc = int_flag(F_VAE_LAYERS, 1, 16, &lp)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = int_flag(F_LATENT_CHANNELS, 1, 1024, &lc)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = real_flag(F_KL, 0, 1e3, &j->vae.kl_weight)) != LDMC_CLI_CONTINUE) return rc;
  j->vae.layers_per_block = (int)lp, j->vae.latent_channels = (int)lc;
  if (ldmc_vae_config_check(&j->vae) != LDMC_OK || ldmc_vae_loss_build(&j->vae, &j->loss) != LDMC_OK)
    return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  j->n_data = LDMC_VAE_LOSS_N_INPUTS;
  ldmc_cli_kv_add(&j->cfg, "model", "autoencoder");
  ldmc_cli_kv_ints(&j->cfg, "block_out_channels", j->vae.block_out_channels, j->vae.n_blocks);
  ldmc_cli_kv_add(&j->cfg, "layers_per_block", "%d", j->vae.layers_per_block);
  ldmc_cli_kv_add(&j->cfg, "latent_channels", "%d", j->vae.latent_channels);
  ldmc_cli_kv_add(&j->cfg, "norm_num_groups", "%d", j->vae.norm_num_groups);
  ldmc_cli_kv_add(&j->cfg, "kl_weight", "%g", j->vae.kl_weight);
  return LDMC_CLI_CONTINUE;
}

/* The architecture from the flags (and the autoencoder from --vae). */
static int ldm_from_flags(job *j, int64_t batch, ldmc_unet_config *u, ldmc_clip_config *tc, ldmc_diffusion_config *dc) {
  const char *vae = k_flags[F_VAE].value;
  if (!vae) return ldmc_cli_usage_error(&k_cmd, "--model unet needs --vae FILE (a trained autoencoder's model.ldmc)");
  if (load_vae(vae, &j->vae, &j->vae_ws, &j->vae_scale) != LDMC_OK) return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  int64_t c = 64, G = 32, D = 64, L = 2, H = 4, T = 4;
  int rc;
  if ((rc = int_flag(F_CHANNELS, 8, 1 << 20, &c)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = int_flag(F_GROUPS, 1, 1 << 16, &G)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = int_flag(F_TEXT_WIDTH, 1, 1 << 16, &D)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = int_flag(F_TEXT_LAYERS, 1, 64, &L)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = int_flag(F_TEXT_HEADS, 1, 64, &H)) != LDMC_CLI_CONTINUE) return rc;
  if ((rc = int_flag(F_TOKENS, 3, 77, &T)) != LDMC_CLI_CONTINUE) return rc;
  ldmc_diffusion_config_default(dc);
  if (k_flags[F_PREDICTION].value && ldmc_prediction_parse(k_flags[F_PREDICTION].value, &dc->prediction) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--prediction: %s", ldmc_last_error());
  if (k_flags[F_SCHEDULE].value && ldmc_beta_schedule_parse(k_flags[F_SCHEDULE].value, &dc->schedule) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--schedule: %s", ldmc_last_error());
  int64_t ld[4];
  ldmc_vae_config vb = j->vae;
  vb.batch = batch;
  ldmc_vae_latent_dims(&vb, ld);
  ldmc_unet_config_default(u, (int)c);
  u->groups = (int)G;
  u->in_channels = u->out_channels = (int)ld[1];
  u->height = ld[2], u->width = ld[3];
  u->context_dim = (int)D, u->context_tokens = (int)T;
  ldmc_clip_config_words(tc, (int)D, (int)T);
  tc->layers = (int)L, tc->heads = (int)H;
  return LDMC_CLI_CONTINUE;
}

/* conv_in.weight [c, Cin, k, k] -> [c, Cin + extra, k, k], the new input channels zero. */
static ldmc_status widen_conv_in(ldmc_tensor_set *w, int extra) {
  ldmc_tensor *t = ldmc_tensor_set_find(w, "conv_in.weight");
  if (!t || t->dtype != LDMC_F32 || t->shape.rank != 4)
    return ldmc_error(LDMC_ERR_FORMAT, "--init: the U-Net has no f32 conv_in.weight [c, C, k, k]");
  ldmc_shape s = t->shape;
  int64_t co = s.dims[0], ci = s.dims[1], kk = s.dims[2] * s.dims[3];
  s.dims[1] += extra;
  ldmc_tensor n;
  LDMC_TRY(ldmc_tensor_alloc(&n, t->name, LDMC_F32, &s));
  for (int64_t o = 0; o < co; o++)
    memcpy((float *)n.data + o * (ci + extra) * kk, (const float *)t->data + o * ci * kk, (size_t)(ci * kk) * 4);
  ldmc_tensor_release(t);
  *t = n;
  return LDMC_OK;
}

/* The architecture, diffusion and weights of a trained model (--init). */
static int ldm_from_init(job *j, const char *path, ldmc_unet_config *u, ldmc_clip_config *tc, ldmc_diffusion_config *dc) {
  static const int conflicts[] = {F_CHANNELS, F_GROUPS, F_TEXT_WIDTH, F_TEXT_LAYERS, F_TEXT_HEADS, F_TOKENS, F_VAE,
                                  F_PREDICTION, F_SCHEDULE};
  for (size_t k = 0; k < sizeof conflicts / sizeof *conflicts; k++)
    if (ldmc_cli_has(&k_cmd, k_flags[conflicts[k]].name))
      return ldmc_cli_usage_error(&k_cmd, "--%s conflicts with --init (the architecture is the model file's)",
                                  k_flags[conflicts[k]].name);
  if (ldmc_ldm_model_load(path, &j->init) != LDMC_OK) return ldmc_cli_fail(&k_cmd, "--init: %s", ldmc_last_error());
  j->has_init = true;
  ldmc_ldm_model *m = &j->init;
  if (m->unet.guidance_embed_dim > 0)
    return ldmc_cli_usage_error(&k_cmd, "--init %s: a distilled (LCM) model; give the model it was distilled from", path);
  if (m->superres_factor > 0 && m->superres_factor != j->superres)
    return ldmc_cli_usage_error(&k_cmd, "--init %s: a %dx super-resolution model; continue it with --superres %d", path,
                                m->superres_factor, m->superres_factor);
  j->vae = m->vae, j->vae_scale = m->latent_scale;
  j->vae_ws = m->vae_w;
  m->vae_w = (ldmc_tensor_set){0}; /* moved */
  *u = m->unet, *tc = m->text, *dc = m->diffusion;
  ldmc_status st = LDMC_OK;
  if (j->superres > 0 && m->unet.cond_channels == 0) st = widen_conv_in(&m->unet_w, u->in_channels);
  const ldmc_tensor_set *parts[2] = {&m->text_w, &m->unet_w};
  for (int p = 0; p < 2 && st == LDMC_OK; p++)
    for (int32_t i = 0; i < parts[p]->n && st == LDMC_OK; i++) {
      ldmc_tensor v = parts[p]->items[i];
      v.owns_data = false;
      st = ldmc_tensor_set_add(&j->init_w, &v);
    }
  if (st != LDMC_OK) return ldmc_cli_fail(&k_cmd, "--init %s: %s", path, ldmc_last_error());
  return LDMC_CLI_CONTINUE;
}

static int build_ldm(job *j, int64_t batch) {
  int64_t sr = 0;
  int rc;
  if ((rc = int_flag(F_SUPERRES, 2, 1 << 10, &sr)) != LDMC_CLI_CONTINUE) return rc;
  j->superres = (int)sr;
  ldmc_unet_config u;
  ldmc_clip_config tc;
  ldmc_diffusion_config dc;
  const char *init = k_flags[F_INIT].value;
  rc = init ? ldm_from_init(j, init, &u, &tc, &dc) : ldm_from_flags(j, batch, &u, &tc, &dc);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  if ((rc = real_flag(F_COND_DROP, 0, 1, &dc.cond_drop)) != LDMC_CLI_CONTINUE) return rc;
  if (sr > 0 && (j->vae.height % sr || j->vae.width % sr))
    return ldmc_cli_usage_error(&k_cmd, "--superres %lld does not divide the %lldx%lld images", (long long)sr,
                                (long long)j->vae.height, (long long)j->vae.width);
  u.batch = batch, tc.batch = batch;
  if (sr > 0) u.cond_channels = u.in_channels; /* the low-resolution image's latent, channel for channel */
  ldmc_graph *ug = NULL, *tg = NULL;
  int32_t empty[77];
  int T = u.context_tokens;
  ldmc_status st = ldmc_unet_config_check(&u);
  if (st == LDMC_OK) st = ldmc_clip_config_check(&tc);
  if (st == LDMC_OK) st = ldmc_unet_build(&u, &ug);
  if (st == LDMC_OK) st = ldmc_clip_build(&tc, &tg);
  if (st == LDMC_OK) st = ldmc_tokenizer_encode("", T, empty);
  if (st == LDMC_OK) st = ldmc_ldm_loss_build(&dc, ug, tg, empty, j->vae_scale, &j->loss);
  ldmc_graph_free(ug), ldmc_graph_free(tg);
  if (st != LDMC_OK) return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  j->n_data = LDMC_LDM_N_DATA + (sr > 0);
  j->tokens = T;
  ldmc_cli_kv_add(&j->cfg, "model", "ldm");
  ldmc_cli_kv_add(&j->cfg, "unet.channels", "%d", u.channels);
  if (u.groups != 32) ldmc_cli_kv_add(&j->cfg, "unet.groups", "%d", u.groups);
  if (u.cond_channels > 0) {
    ldmc_cli_kv_add(&j->cfg, "unet.cond_channels", "%d", u.cond_channels);
    ldmc_cli_kv_add(&j->cfg, "superres.factor", "%d", j->superres);
  }
  ldmc_cli_kv_add(&j->cfg, "unet.latent", "%lldx%lldx%d", (long long)u.height, (long long)u.width, u.in_channels);
  ldmc_cli_kv_add(&j->cfg, "unet.context", "%dx%d", u.context_dim, u.context_tokens);
  ldmc_cli_kv_add(&j->cfg, "text.width", "%d", tc.width);
  ldmc_cli_kv_add(&j->cfg, "text.layers", "%d", tc.layers);
  ldmc_cli_kv_add(&j->cfg, "text.heads", "%d", tc.heads);
  ldmc_cli_kv_add(&j->cfg, "text.tokens", "%d", tc.max_positions);
  ldmc_cli_kv_add(&j->cfg, "prediction", "%s", ldmc_prediction_name(dc.prediction));
  ldmc_cli_kv_add(&j->cfg, "beta_schedule", "%s", ldmc_beta_schedule_name(dc.schedule));
  ldmc_cli_kv_add(&j->cfg, "num_train_timesteps", "%d", dc.timesteps);
  ldmc_cli_kv_add(&j->cfg, "cond_drop", "%g", dc.cond_drop);
  if (init) ldmc_cli_kv_add(&j->cfg, "init", "%s", init);
  ldmc_cli_kv_ints(&j->cfg, "vae.block_out_channels", j->vae.block_out_channels, j->vae.n_blocks);
  ldmc_cli_kv_add(&j->cfg, "vae.layers_per_block", "%d", j->vae.layers_per_block);
  ldmc_cli_kv_add(&j->cfg, "vae.latent_channels", "%d", j->vae.latent_channels);
  ldmc_cli_kv_add(&j->cfg, "vae.norm_num_groups", "%d", j->vae.norm_num_groups);
  ldmc_cli_kv_add(&j->cfg, "vae.scaling_factor", "%.9g", j->vae_scale);
  return LDMC_CLI_CONTINUE;
}

int ldmc_cmd_train(int argc, char **argv) {
  int rc = ldmc_cli_parse(&k_cmd, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *model = k_flags[F_MODEL].value, *out = k_flags[F_OUT].value;
  if (!model) return ldmc_cli_usage_error(&k_cmd, "--model is required (classifier, autoencoder or unet)");
  if (!out) return ldmc_cli_usage_error(&k_cmd, "--out DIR is required");
  bool is_cls = !strcmp(model, "classifier"), is_vae = !strcmp(model, "autoencoder"), is_ldm = !strcmp(model, "unet");
  if (!is_cls && !is_vae && !is_ldm)
    return ldmc_cli_usage_error(&k_cmd, "--model %s: expected classifier, autoencoder or unet", model);
  if (!is_ldm && (ldmc_cli_has(&k_cmd, "init") || ldmc_cli_has(&k_cmd, "superres")))
    return ldmc_cli_usage_error(&k_cmd, "--%s is for --model unet", ldmc_cli_has(&k_cmd, "init") ? "init" : "superres");
  if (ldmc_cli_has(&k_cmd, "steps") && ldmc_cli_has(&k_cmd, "epochs"))
    return ldmc_cli_usage_error(&k_cmd, "give --steps or --epochs, not both");
  if (ldmc_cli_has(&k_cmd, "progress") && ldmc_cli_has(&k_cmd, "no-progress"))
    return ldmc_cli_usage_error(&k_cmd, "give --progress or --no-progress, not both");
  int64_t batch = 64, steps = 0, epochs = 0, warmup = 100, seed = 0, threads = 0, ckpt = 500, keep = 3, log = 50;
  int64_t val = 1000, val_batches = 8, limit = 0, stop_after = 0;
  double lr = is_ldm ? 3e-4 : 1e-3, min_lr = 0.1, wd = 0, clip = 1.0, ema = 0;
  if ((rc = int_flag(F_BATCH, 1, 1 << 20, &batch)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_STEPS, 1, INT64_MAX / 2, &steps)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_EPOCHS, 1, 1 << 20, &epochs)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_WARMUP, 0, INT64_MAX / 2, &warmup)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_SEED, 0, (int64_t)1 << 40, &seed)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_THREADS, 1, 1024, &threads)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_CKPT, 0, INT64_MAX / 2, &ckpt)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_KEEP, 1, 1000, &keep)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_LOG, 1, INT64_MAX / 2, &log)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_VAL, 0, INT64_MAX / 2, &val)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_VAL_BATCHES, 1, 1 << 20, &val_batches)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_LIMIT, 0, 1 << 24, &limit)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_STOP_AFTER, 1, INT64_MAX / 2, &stop_after)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_LR, 0, 10, &lr)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_MIN_LR, 0, 1, &min_lr)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_WD, 0, 10, &wd)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_CLIP, 0, 1e9, &clip)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_EMA, 0, 0.999999999, &ema)) != LDMC_CLI_CONTINUE)
    return rc;
  ldmc_lr_decay decay = LDMC_LR_COSINE;
  if (k_flags[F_DECAY].value && ldmc_lr_decay_parse(k_flags[F_DECAY].value, &decay) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--lr-decay: %s", ldmc_last_error());
  ldmc_dtype export_dt = LDMC_F32;
  const char *ed = k_flags[F_EXPORT].value;
  if (ed && strcmp(ed, "f32") && strcmp(ed, "bf16"))
    return ldmc_cli_usage_error(&k_cmd, "--export-dtype %s: expected f32 or bf16", ed);
  if (ed && !strcmp(ed, "bf16")) export_dt = LDMC_BF16;
  int trc = 0;
  const char *tspec = ldmc_cli_target_flag(&k_cmd, &trc);
  if (trc != LDMC_CLI_CONTINUE) return trc;
  ldmc_cli_target ct;
  if (ldmc_cli_target_parse(tspec ? tspec : "llvm-cpu", &ct) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "%s", ldmc_last_error());
  if (!ct.be) return ldmc_cli_usage_error(&k_cmd, "--target %s: no backend executes it (interp or llvm-cpu)", tspec);

  int ranks = ldmc_dist_size(), rank = ldmc_dist_rank();
  if (batch % ranks != 0)
    return ldmc_cli_usage_error(&k_cmd, "--batch %lld does not split evenly over %d ranks", (long long)batch, ranks);
  job j;
  memset(&j, 0, sizeof j);
  int64_t local = batch / ranks;
  ldmc_batch_shard_set(rank, ranks); /* the loss graph's per-row noise: this rank's rows of the global batch */
  rc = is_cls ? build_classifier(&j, local) : is_vae ? build_vae(&j, local) : build_ldm(&j, local);
  ldmc_batch_shard_set(0, 1);
  if (rc != LDMC_CLI_CONTINUE) {
    job_free(&j);
    return rc;
  }
  ldmc_cli_kv_add(&j.cfg, "batch", "%lld", (long long)batch);
  ldmc_cli_kv_add(&j.cfg, "seed", "%lld", (long long)seed);

  ldmc_train_opts to = {.clip_norm = clip, .ema_decay = ema, .weight_decay = wd, .master_f32 = true};
  ldmc_compile_opts co = {.threads = (int)threads, .bf16 = ldmc_cli_has(&k_cmd, "bf16")};
  ldmc_data_opts dopt = {.dir = k_flags[F_DATA].value, .limit = limit, .seed = (uint64_t)seed, .be = ct.be, .co = co,
                         .shard_rank = rank, .shard_ranks = ranks, .superres = j.superres,
                         .latent_scale = j.vae_scale};
  ldmc_train_session *s = NULL;
  ldmc_model_data *data = NULL;
  ldmc_train_source src;
  ldmc_train_result res;
  memset(&res, 0, sizeof res);
  if (rank == 0) {
    fprintf(stderr, "compiling the %s training step on %s", model, ct.be->name);
    if (ranks > 1) fprintf(stderr, ", data-parallel over %d ranks (%lld images each per step)", ranks, (long long)local);
    fprintf(stderr, "\n");
  }
  ldmc_status st = ldmc_train_session_new(j.loss, j.n_data, &to, (uint64_t)seed, j.has_init ? &j.init_w : NULL,
                                          ct.be, &co, &s);
  if (st == LDMC_OK) {
    st = is_cls   ? ldmc_classifier_data_new(&j.cls, &dopt, s, &data, &src)
         : is_vae ? ldmc_vae_data_new(&j.vae, &dopt, s, &data, &src)
                  : ldmc_ldm_data_new(j.loss, &j.vae, &j.vae_ws, j.tokens, val_batches, &dopt, s, &data, &src);
  }
  if (st == LDMC_OK && epochs > 0) {
    int64_t n = limit > 0 && limit < 60000 ? limit : 60000;
    steps = epochs * (n / batch);
  }
  if (st == LDMC_OK && steps <= 0) st = ldmc_error(LDMC_ERR_INVALID, "give --steps N or --epochs E");
  if (st == LDMC_OK) {
    ldmc_train_loop_opts lo = {
        .steps = steps, .lr = {.base = lr, .min_frac = min_lr, .warmup = warmup, .total = steps, .decay = decay},
        .out_dir = out, .ckpt_every = ckpt, .keep = (int)keep, .log_every = log, .val_every = val,
        .resume = ldmc_cli_has(&k_cmd, "resume"), .stop_after = stop_after,
        .progress = ldmc_cli_has(&k_cmd, "progress") ? 1 : ldmc_cli_has(&k_cmd, "no-progress") ? 0 : -1,
        .seed = seed, .n_config = j.cfg.n, .config_keys = j.cfg.kp, .config_values = j.cfg.vp};
    st = ldmc_train_session_loop(s, &src, &lo, &res);
  }
  if (st != LDMC_OK && ranks > 1) ldmc_dist_abort(ldmc_last_error()); /* the others may wait in a collective */
  if (rank != 0) { /* rank 0 exports and reports */
    int other_rc = res.interrupted ? 130 : LDMC_EXIT_OK;
    ldmc_train_result_free(&res);
    ldmc_model_data_free(data);
    ldmc_train_session_free(s);
    job_free(&j);
    return other_rc;
  }
  if (st == LDMC_OK && res.paused)
    printf("stopped after step %lld of %lld: %s (continue with --resume)\n", (long long)res.last_step, (long long)steps,
           res.last_checkpoint ? res.last_checkpoint : "");
  if (st == LDMC_OK && !res.interrupted && !res.paused) {
    if (is_vae) { /* SD's 0.18215, measured for this autoencoder */
      ldmc_tensor_set ws = {0};
      ldmc_tensor *views = calloc((size_t)ldmc_graph_num_params(j.loss), sizeof *views);
      st = views ? ldmc_train_session_views(s, j.loss, j.n_data, ema > 0, views) : LDMC_ERR_NOMEM;
      for (int32_t k = j.n_data; st == LDMC_OK && k < ldmc_graph_num_params(j.loss); k++) st = ldmc_tensor_set_add(&ws, &views[k]);
      double scale = NAN;
      if (st == LDMC_OK) st = ldmc_vae_measure_scale(&j.vae, &ws, &dopt, 10000, &scale);
      if (st == LDMC_OK) {
        ldmc_cli_kv_add(&j.cfg, "scaling_factor", "%.9g", scale);
        fprintf(stderr, "latent scale factor: %.6f (1/std of the latents of %lld training images)\n", scale,
                (long long)(limit > 0 && limit < 10000 ? limit : 10000));
      }
      ws.n = 0; /* the views own nothing, their names included: the session does */
      ldmc_tensor_set_free(&ws);
      free(views);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.ldmc", out);
    if (st == LDMC_OK)
      st = ldmc_train_session_export(s, path, res.last_step, ema > 0, export_dt, NULL, j.cfg.n, j.cfg.kp, j.cfg.vp,
                                     is_ldm ? &j.vae_ws : NULL, "vae.");
    if (st == LDMC_OK) {
      printf("trained %s: steps %lld..%lld, loss %.6f, images/s %.1f", model, (long long)res.first_step,
             (long long)res.last_step, res.last_loss, res.images_per_s);
      if (!isnan(res.last_val_loss)) printf(", val_loss %.6f", res.last_val_loss);
      if (!isnan(res.last_metric)) printf(", val_%s %.4f", src.metric_name, res.last_metric);
      printf("\nmodel: %s\n", path);
    }
  }
  int exit_rc = st != LDMC_OK ? ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error()) : res.interrupted ? 130 : LDMC_EXIT_OK;
  ldmc_train_result_free(&res);
  ldmc_model_data_free(data);
  ldmc_train_session_free(s);
  job_free(&j);
  return exit_rc;
}
