/* ldmc sample: images from a latent diffusion model (the repository's
 * default one unless --model): prompts through the prompt encoder, a
 * sampler's compiled denoising step looped by models/sampler_run.c, latents
 * decoded by the autoencoder, a PNG grid (a row per prompt), optional
 * safetensors of latents and samples, and the sampling cost
 * (docs/sampling.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frontend/weights_io.h"
#include "models/ldm_model.h"
#include "models/samplers.h"
#include "models/stats.h"
#include "runtime/png_grid.h"
#include "runtime/dist.h"
#include "tools/cli_args.h"
#include "tools/cli_target.h"
#include "tools/commands.h"
#include "tools/sample_superres.h"

enum {
  F_MODEL, F_PROMPT, F_SAMPLER, F_STEPS, F_CFG, F_ETA, F_SEED, F_N, F_OUT, F_SAVE_LATENTS, F_SAVE_SAMPLES,
  F_SPACING, F_STEPS_OFFSET, F_BATCH, F_THREADS, F_TARGET, F_BACKEND, F_SCALE, F_PROGRESS, F_NO_PROGRESS, F_EVAL,
  F_CLASSIFIER, F_LABELS, F_SR_FROM, F_COUNT
};

static ldmc_cli_flag k_flags[F_COUNT] = {
    [F_MODEL] = {"model", "FILE", "latent diffusion model (`ldmc train --model unet`'s model.ldmc; default: the\n"
                                  "repository's models/default/ldm.ldmc, or $LDMC_DEFAULT_MODEL; with --sampler\n"
                                  "lcm its distilled models/default/lcm.ldmc, or $LDMC_DEFAULT_LCM_MODEL)"},
    [F_PROMPT] = {"prompt", "TEXT", "a prompt (a class name: t-shirt, trouser, pullover, dress, coat, sandal,\n"
                                    "shirt, sneaker, bag, ankle boot); repeat for several, one grid row each"},
    [F_SAMPLER] = {"sampler", "NAME", "ddim (default), ddpm, dpmpp2m (DPM-Solver++ 2M), or lcm (multi-step\n"
                                      "consistency sampling of a distilled model, `ldmc distill`; 1-8 steps)"},
    [F_STEPS] = {"steps", "N", "denoising steps (default 50)"},
    [F_CFG] = {"cfg", "W[,W..]", "classifier-free guidance rate (default 3; 1: no unconditional pass); several\n"
                                 "rates: a row per prompt and rate, the same noise in every rate's row; lcm:\n"
                                 "the rate given to the distilled model (one pass per step whatever W)"},
    [F_ETA] = {"eta", "E", "ddim: noise eta (default 0: deterministic)"},
    [F_SEED] = {"seed", "S", "seed of the noise (default 0); a seed gives the same images for any thread count"},
    [F_N] = {"n", "K", "images per prompt (default 8)"},
    [F_OUT] = {"out", "FILE.png", "the PNG grid (default samples.png)"},
    [F_SAVE_LATENTS] = {"save-latents", "FILE", "also write the final latents (latents f32[N,C,h,w]) as safetensors"},
    [F_SAVE_SAMPLES] = {"save-samples", "FILE", "also write the decoded images (images f32[N,C,H,W] in [-1,1], labels\n"
                                                "i64[N]: the prompted class, -1 for another prompt) as safetensors"},
    [F_SPACING] = {"spacing", "KIND", "timestep spacing: leading, trailing or linspace (default: the sampler's\n"
                                      "diffusers default: leading for ddim/ddpm, linspace for dpmpp2m)"},
    [F_STEPS_OFFSET] = {"steps-offset", "K", "diffusers' steps_offset (default 1, as SD-1.5's scheduler configs)"},
    [F_BATCH] = {"batch", "B", "images denoised together (default 16; any split gives the same images)"},
    [F_THREADS] = {"threads", "N", "threads (default: OpenMP's)"},
    [F_TARGET] = {"target", "NAME", "what executes: llvm-cpu[:scalar|avx2|avx512] (default) or interp"},
    [F_BACKEND] = {"backend", "NAME", "synonym of --target"},
    [F_SCALE] = {"scale", "S", "grid pixels per image pixel (default 2)"},
    [F_PROGRESS] = {"progress", NULL, "draw a progress bar even when stderr is not a terminal"},
    [F_NO_PROGRESS] = {"no-progress", NULL, "no progress bar"},
    [F_EVAL] = {"eval", NULL, "also score the samples as `ldmc eval` does (FD, KID, class accuracy against the\n"
                              "Fashion-MNIST test split, in the classifier's feature space)"},
    [F_LABELS] = {"labels", NULL, "write each row's prompt (and guidance rate) left of it in the grid"},
    [F_SR_FROM] = {"superres-from", "SPLIT", "a super-resolution model (`ldmc train --superres`): condition on the first\n"
                                             "--n images of SPLIT (test), each prompted with its class name, no guidance;\n"
                                             "the grid's rows: low-res input, sample, original (no --prompt, --cfg)"},
    [F_CLASSIFIER] = {"classifier", "FILE", "with --eval: the classifier (default: the repository's\n"
                                            "models/default/classifier.ldmc)"},
};

static ldmc_cli_cmd k_cmd = {
    .name = "sample",
    .usage = "[--model FILE] --prompt TEXT [--prompt TEXT ...] [--sampler ddim|ddpm|dpmpp2m|lcm] [--steps N] [--cfg W]\n"
             "[--seed S] [--n K] [-o grid.png] [options]\n"
             "[--model FILE] --superres-from test [--n K] [--sampler NAME] [--steps N] [-o grid.png] [options]",
    .summary = "sample images from a latent diffusion model into a PNG grid, with the sampling cost",
    .details = "Prints seconds per step and the sampling cost: the U-Net's GFLOPs per step normalized to the c=320\n"
               "U-Net at the same latent and context (as `ldmc stats`), x the denoiser evaluations per image per\n"
               "step (2 with guidance: the conditional and unconditional passes), x steps.\n"
               "Example: ldmc sample --prompt sneaker --prompt bag --sampler dpmpp2m --steps 20 --cfg 4 -o s.png\n"
               "Super-resolution: ldmc sample --model runs/sr/model.ldmc --superres-from test --n 8 -o sr.png",
    .flags = k_flags,
    .n_flags = F_COUNT,
    .repeatable = "prompt",
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int real_flag(int f, double lo, double hi, double *out) {
  return ldmc_cli_real(&k_cmd, k_flags[f].name, lo, hi, out);
}

typedef struct progress {
  bool bar;
  int64_t done_images, total_images, B;
  double t0;
} progress;

static ldmc_status on_step(void *ctx, const ldmc_sample_progress *p) {
  progress *pr = ctx;
  if (!pr->bar) return LDMC_OK;
  double f = ((double)pr->done_images + (double)pr->B * p->step / p->n_steps) / (double)pr->total_images;
  double el = now_s() - pr->t0, eta = f > 0 ? el * (1 - f) / f : 0;
  int w = 30, d = (int)(w * f);
  char bar[40];
  for (int i = 0; i < w; i++) bar[i] = i < d ? '#' : '.';
  bar[w] = 0;
  fprintf(stderr, "\r[%s] step %d/%d (t=%lld) images %lld/%lld ETA %.0fs   ", bar, p->step, p->n_steps,
          (long long)p->timestep, (long long)pr->done_images, (long long)pr->total_images, eta);
  fflush(stderr);
  return LDMC_OK;
}

/* the class index of a prompt that is exactly a class name (after trimming, any case), else -1 */
static int64_t prompt_label(const char *p) {
  for (int c = 0; c < 10; c++) {
    const char *name = ldmc_class_prompt(c);
    size_t n = strlen(name);
    while (*p == ' ') p++;
    if (strncasecmp(p, name, n) == 0) {
      const char *r = p + n;
      while (*r == ' ') r++;
      if (!*r) return c;
    }
  }
  return -1;
}

/* `ldmc eval SAMPLES` with sample's classifier, threads and target: the same report */
static int run_eval(const char *samples_path, int64_t threads, const char *tspec) {
  fflush(stdout);
  char th[32];
  snprintf(th, sizeof th, "%lld", (long long)(threads > 0 ? threads : 0));
  char *ev[12] = {"eval", (char *)samples_path};
  int ec = 2;
  if (k_flags[F_CLASSIFIER].value) ev[ec++] = "--classifier", ev[ec++] = (char *)k_flags[F_CLASSIFIER].value;
  if (threads > 0) ev[ec++] = "--threads", ev[ec++] = th;
  if (tspec) ev[ec++] = "--target", ev[ec++] = (char *)tspec;
  return ldmc_cmd_eval(ec, ev);
}

int ldmc_cmd_sample(int argc, char **argv) {
  int rc = ldmc_cli_parse(&k_cmd, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  int np = k_cmd.n_repeated;
  const char *srf = k_flags[F_SR_FROM].value;
  if (srf && strcmp(srf, "test") != 0) return ldmc_cli_usage_error(&k_cmd, "--superres-from %s: expected test", srf);
  if (srf && (np > 0 || ldmc_cli_has(&k_cmd, "cfg") || ldmc_cli_has(&k_cmd, "eval") ||
              ldmc_cli_has(&k_cmd, "save-samples")))
    return ldmc_cli_usage_error(&k_cmd, "--superres-from prompts each test image with its class name, without guidance: "
                                "give no --prompt, --cfg, --eval or --save-samples");
  if (np < 1 && !srf) return ldmc_cli_usage_error(&k_cmd, "give at least one --prompt TEXT");
  int64_t steps = 50, seed = 0, n = 8, batch = 16, threads = 0, offset = 1, scale = 2;
  double cfg = 3, eta = 0, rates[16];
  int nr = 1;
  if ((rc = ldmc_cli_int(&k_cmd, "steps", 1, 1000, &steps)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "seed", 0, (int64_t)1 << 40, &seed)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "n", 1, 4096, &n)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "batch", 1, 4096, &batch)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "threads", 1, 1024, &threads)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "steps-offset", 0, 999, &offset)) != LDMC_CLI_CONTINUE ||
      (rc = ldmc_cli_int(&k_cmd, "scale", 1, 16, &scale)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_ETA, 0, 10, &eta)) != LDMC_CLI_CONTINUE)
    return rc;
  rates[0] = cfg;
  if (k_flags[F_CFG].value) { /* W or W,W,... */
    const char *v = k_flags[F_CFG].value;
    nr = 0;
    while (*v) {
      char *end = NULL;
      errno = 0;
      double w = strtod(v, &end);
      if (errno || end == v || !(w >= 0 && w <= 100) || (*end && *end != ',') || nr >= 16)
        return ldmc_cli_usage_error(&k_cmd, "--cfg %s: expected up to 16 comma-separated rates in [0, 100]",
                                    k_flags[F_CFG].value);
      rates[nr++] = w;
      v = *end ? end + 1 : end;
    }
    if (nr == 0) return ldmc_cli_usage_error(&k_cmd, "--cfg: no rate given");
    cfg = rates[0];
  }
  if (ldmc_cli_has(&k_cmd, "progress") && ldmc_cli_has(&k_cmd, "no-progress"))
    return ldmc_cli_usage_error(&k_cmd, "give --progress or --no-progress, not both");
  ldmc_sampler_kind kind = LDMC_SAMPLER_DDIM;
  if (k_flags[F_SAMPLER].value && ldmc_sampler_parse(k_flags[F_SAMPLER].value, &kind) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--sampler: %s", ldmc_last_error());
  ldmc_sampler_config sc;
  ldmc_sampler_config_default(&sc, kind, (int)steps);
  sc.steps_offset = (int)offset;
  sc.eta = eta;
  if (k_flags[F_SPACING].value && ldmc_spacing_parse(k_flags[F_SPACING].value, &sc.spacing) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--spacing: %s", ldmc_last_error());
  if (eta > 0 && kind != LDMC_SAMPLER_DDIM) return ldmc_cli_usage_error(&k_cmd, "--eta applies to --sampler ddim only");
  const char *out = k_flags[F_OUT].value ? k_flags[F_OUT].value : "samples.png";
  size_t ol = strlen(out);
  if (ol < 4 || strcasecmp(out + ol - 4, ".png") != 0)
    return ldmc_cli_usage_error(&k_cmd, "--out %s: the grid is a .png file", out);
  int trc = 0;
  const char *tspec = ldmc_cli_target_flag(&k_cmd, &trc);
  if (trc != LDMC_CLI_CONTINUE) return trc;
  ldmc_cli_target ct;
  if (ldmc_cli_target_parse(tspec ? tspec : "llvm-cpu", &ct) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "%s", ldmc_last_error());
  if (!ct.be) return ldmc_cli_usage_error(&k_cmd, "--target %s: no backend executes it (interp or llvm-cpu)", tspec);
  /* prompts are checked before anything is loaded or written */
  for (int i = 0; i < np; i++) {
    int32_t ids[77];
    if (ldmc_tokenizer_encode(k_cmd.repeated[i], 77, ids) != LDMC_OK)
      return ldmc_cli_usage_error(&k_cmd, "--prompt '%s': %s", k_cmd.repeated[i], ldmc_last_error());
  }

  bool lcm = kind == LDMC_SAMPLER_LCM;
  const char *path = k_flags[F_MODEL].value ? k_flags[F_MODEL].value
                     : lcm                  ? ldmc_default_lcm_path()
                                            : ldmc_default_model_path();
  ldmc_ldm_model m;
  if (ldmc_ldm_model_load(path, &m) != LDMC_OK) return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  ldmc_status st = ldmc_sampler_config_check(&sc, m.diffusion.timesteps);
  if (st == LDMC_OK && lcm && m.unet.guidance_embed_dim == 0)
    st = ldmc_error(LDMC_ERR_INVALID, "--sampler lcm needs a distilled model (`ldmc distill`); %s is not one", path);
  if (st == LDMC_OK && !lcm && m.unet.guidance_embed_dim > 0)
    st = ldmc_error(LDMC_ERR_INVALID, "%s is a distilled (consistency) model: sample it with --sampler lcm", path);
  if (st == LDMC_OK && !srf && m.unet.cond_channels > 0)
    st = ldmc_error(LDMC_ERR_INVALID, "%s is a %dx super-resolution model: sample it with --superres-from test", path,
                    m.superres_factor);
  if (st == LDMC_OK && srf && m.unet.cond_channels == 0)
    st = ldmc_error(LDMC_ERR_INVALID, "--superres-from: %s is not a super-resolution model (ldmc train --superres)",
                    path);
  if (st != LDMC_OK) {
    ldmc_ldm_model_free(&m);
    return ldmc_cli_usage_error(&k_cmd, "%s", ldmc_last_error());
  }
  ldmc_compile_opts co = {.threads = (int)threads};
  if (srf) {
    ldmc_sr_sample_opts so = {.m = &m, .model_path = path, .sc = &sc, .n = n, .batch = batch, .seed = (uint64_t)seed,
                              .out_png = out, .save_latents = k_flags[F_SAVE_LATENTS].value, .scale = (int)scale,
                              .labels = ldmc_cli_has(&k_cmd, "labels"), .be = ct.be, .co = co};
    st = ldmc_dist_size() > 1 ? ldmc_error(LDMC_ERR_INVALID, "--superres-from runs in one process (not under mpirun)")
                              : ldmc_sample_superres(&so);
    ldmc_ldm_model_free(&m);
    return st == LDMC_OK ? LDMC_EXIT_OK : ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  }
  bool guidance = !lcm && (nr > 1 || cfg != 1); /* lcm: the rate is the model's input, one pass */
  int64_t rows_out = (int64_t)np * nr, total = rows_out * n;
  /* several rates: a batch stays within one grid row (one rate) */
  int64_t B = nr > 1 ? (batch < n ? batch : n) : (batch < total ? batch : total);
  int64_t lat[4] = {total, m.unet.in_channels, m.unet.height, m.unet.width};
  ldmc_vae_config vc = m.vae;
  vc.batch = 1;
  {
    int64_t ld[4];
    ldmc_vae_latent_dims(&vc, ld);
    if (ld[1] != lat[1] || ld[2] != lat[2] || ld[3] != lat[3]) st = ldmc_error(LDMC_ERR_FORMAT, "%s: the autoencoder's latents do not match the U-Net's", path);
  }
  ldmc_shape ls = ldmc_shape_make(4, lat);
  ldmc_tensor latents = {0}, images = {0}, ctx_all = {0}, ctx = {0}, labels = {0};
  if (st == LDMC_OK) st = ldmc_tensor_alloc(&latents, "latents", LDMC_F32, &ls);
  /* the prompts' contexts, and the empty prompt's */
  const char **plist = calloc((size_t)np + 1, sizeof *plist);
  if (st == LDMC_OK && !plist) st = ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int i = 0; st == LDMC_OK && i < np; i++) plist[i] = k_cmd.repeated[i];
  if (st == LDMC_OK) plist[np] = "";
  if (st == LDMC_OK) st = ldmc_ldm_encode_prompts(&m, plist, np + 1, ct.be, &co, &ctx_all);
  int64_t T = m.unet.context_tokens, D = m.unet.context_dim, row = T * D;
  ldmc_unet_config uc = m.unet;
  uc.batch = guidance ? 2 * B : B;
  ldmc_graph *unet = NULL;
  ldmc_sampler *s = NULL;
  if (st == LDMC_OK) st = ldmc_unet_build(&uc, &unet);
  if (st == LDMC_OK) {
    if (ldmc_dist_rank() == 0)
      fprintf(stderr, "compiling the %s step (U-Net c=%d, batch %lld%s) on %s\n", ldmc_sampler_name(kind), m.unet.channels,
            (long long)uc.batch, guidance ? ": conditional + unconditional" : "", ct.be->name);
    st = ldmc_sampler_new(&m.diffusion, &sc, guidance, unet, &m.unet_w, ct.be, &co, &s);
  }
  int64_t cdims[3] = {guidance ? 2 * B : B, T, D};
  ldmc_shape cs = ldmc_shape_make(3, cdims);
  if (st == LDMC_OK) st = ldmc_tensor_alloc(&ctx, "encoder_hidden_states", LDMC_F32, &cs);
  progress pr = {.bar = ldmc_cli_has(&k_cmd, "progress") || (!ldmc_cli_has(&k_cmd, "no-progress") && isatty(2)),
                 .total_images = total, .B = B, .t0 = now_s()};
  if (ldmc_dist_rank() != 0) pr.bar = false;
  double t_sample = 0;
  int64_t runs = 0;
  /* chunks of the output (row-major: row = prompt x rate, a column per image); image (prompt p,
   * column c) draws noise index p n + c in every rate's row */
  /* under mpirun, chunk k runs on rank k mod N; a chunk computes what it computes in one process
   * (its images' noise keys are theirs), and the latents are summed over the ranks, each element
   * written by one of them (x + 0 is exact) */
  int ranks = ldmc_dist_size(), rank = ldmc_dist_rank();
  int64_t chunk = 0;
  memset(latents.data, 0, latents.nbytes);
  for (int64_t R = 0; st == LDMC_OK && R < (nr > 1 ? rows_out : 1); R++) {
    int64_t first = nr > 1 ? R * n : 0, end = nr > 1 ? first + n : total;
    for (int64_t o0 = first; st == LDMC_OK && o0 < end; o0 += B) {
      int64_t rows = end - o0 < B ? end - o0 : B;
      if (chunk++ % ranks != rank) {
        pr.done_images += rank == 0 ? rows : 0;
        continue;
      }
      for (int64_t r = 0; r < B; r++) { /* rows past the chunk repeat its last image and are dropped */
        int64_t o = o0 + (r < rows ? r : rows - 1), p = o / n / nr;
        memcpy((float *)ctx.data + r * row, (const float *)ctx_all.data + p * row, (size_t)row * 4);
        if (guidance) memcpy((float *)ctx.data + (B + r) * row, (const float *)ctx_all.data + np * row, (size_t)row * 4);
      }
      int64_t p0 = o0 / n / nr, c0 = o0 % n;
      ldmc_sample_run_opts ro = {.seed = (uint64_t)seed, .first_image = nr > 1 ? p0 * n + c0 : o0, .context = &ctx,
                                 .guidance_scale = rates[(o0 / n) % nr], .progress = on_step, .progress_ctx = &pr};
      double t0 = now_s();
      st = ldmc_sample_run(s, &ro);
      t_sample += now_s() - t0;
      runs++;
      if (st != LDMC_OK) break;
      const ldmc_tensor *z = ldmc_sampler_latents(s);
      int64_t per = lat[1] * lat[2] * lat[3];
      memcpy((float *)latents.data + o0 * per, z->data, (size_t)(rows * per) * 4);
      pr.done_images += rows;
    }
  }
  if (pr.bar) fprintf(stderr, "\n");
  if (ranks > 1) {
    if (st != LDMC_OK) ldmc_dist_abort(ldmc_last_error()); /* the others wait for its latents */
    st = ldmc_dist_allreduce_f32(latents.data, latents.nbytes / 4, "gathering the sampled latents");
    if (st != LDMC_OK) ldmc_dist_abort(ldmc_last_error());
    if (rank != 0) { /* rank 0 decodes and writes; --eval: every rank scores a share of the samples */
      char shared[4096] = "";
      int ret = LDMC_EXIT_OK;
      if (ldmc_cli_has(&k_cmd, "eval")) st = ldmc_dist_bcast(shared, sizeof shared, "the samples file");
      if (st != LDMC_OK) ldmc_dist_abort(ldmc_last_error());
      if (ldmc_cli_has(&k_cmd, "eval") && shared[0]) ret = run_eval(shared, threads, tspec);
      ldmc_sampler_free(s);
      ldmc_graph_free(unet);
      ldmc_tensor_release(&latents), ldmc_tensor_release(&ctx_all), ldmc_tensor_release(&ctx);
      free(plist);
      ldmc_ldm_model_free(&m);
      return shared[0] || !ldmc_cli_has(&k_cmd, "eval") ? ret : LDMC_EXIT_FAIL;
    }
  }
  if (st == LDMC_OK) st = ldmc_ldm_decode(&m, &latents, ct.be, &co, &images);
  if (st == LDMC_OK) {
    static char label_buf[64][96];
    static const char *label_ptr[64];
    bool labelled = ldmc_cli_has(&k_cmd, "labels") && rows_out <= 64;
    for (int64_t R = 0; labelled && R < rows_out; R++) {
      if (nr > 1) snprintf(label_buf[R], sizeof label_buf[R], "%s, cfg %g", k_cmd.repeated[R / nr], rates[R % nr]);
      else snprintf(label_buf[R], sizeof label_buf[R], "%s", k_cmd.repeated[R]);
      label_ptr[R] = label_buf[R];
    }
    ldmc_png_grid g = {.images = images.data, .n = total, .channels = images.shape.dims[1], .row_labels = labelled ? label_ptr : NULL,
                       .height = images.shape.dims[2], .width = images.shape.dims[3], .lo = -1, .hi = 1, .rows = (int)rows_out,
                       .cols = (int)n, .scale = (int)scale, .pad = 2, .background = 255};
    st = ldmc_png_grid_write(out, &g);
  }
  int64_t labd[1] = {total};
  ldmc_shape lbs = ldmc_shape_make(1, labd);
  char tmp_samples[64] = "";
  const char *samples_path = k_flags[F_SAVE_SAMPLES].value;
  if (st == LDMC_OK && !samples_path && ldmc_cli_has(&k_cmd, "eval")) { /* scored from a temporary file */
    snprintf(tmp_samples, sizeof tmp_samples, "/tmp/ldmc-samples-XXXXXX.safetensors");
    int fd = mkstemps(tmp_samples, 12);
    if (fd < 0) st = ldmc_error(LDMC_ERR_IO, "--eval: cannot create a temporary file in /tmp: %s", strerror(errno));
    else close(fd);
    samples_path = tmp_samples;
  }
  if (st == LDMC_OK && samples_path) {
    st = ldmc_tensor_alloc(&labels, "labels", LDMC_I64, &lbs);
    for (int64_t i = 0; st == LDMC_OK && i < total; i++)
      ((int64_t *)labels.data)[i] = prompt_label(k_cmd.repeated[i / n / nr]);
    ldmc_tensor_set set = {0};
    ldmc_tensor iv = images, lv = labels;
    free(iv.name);
    iv.name = strdup("images"), iv.owns_data = false, lv.owns_data = false;
    lv.name = strdup("labels");
    if (st == LDMC_OK) st = ldmc_tensor_set_add(&set, &iv);
    if (st == LDMC_OK) st = ldmc_tensor_set_add(&set, &lv);
    if (st == LDMC_OK) st = ldmc_safetensors_save(samples_path, &set, 0, NULL, NULL);
    images.name = NULL;
    ldmc_tensor_set_free(&set);
  }
  if (st == LDMC_OK && k_flags[F_SAVE_LATENTS].value) {
    ldmc_tensor_set set = {0};
    ldmc_tensor lv = latents;
    lv.name = strdup("latents"), lv.owns_data = false;
    st = ldmc_tensor_set_add(&set, &lv);
    if (st == LDMC_OK) st = ldmc_safetensors_save(k_flags[F_SAVE_LATENTS].value, &set, 0, NULL, NULL);
    ldmc_tensor_set_free(&set);
  }
  if (st == LDMC_OK) {
    /* cost: the U-Net's GFLOPs per image per step normalized to c=320 at this latent and context, x passes x steps */
    ldmc_unet_pass_cost pc = {NAN, NAN, 0};
    (void)ldmc_unet_pass_cost_compute(&m.unet, &pc); /* unchanged on failure: the cost prints as nan */
    double norm = pc.norm, gf = pc.gflops;
    int passes = guidance ? 2 : 1;
    ldmc_sampler_cost cost;
    ldmc_sampler_get_cost(s, &cost);
    printf("wrote %s: %d prompt%s x %lld images, %s %d steps, cfg %s, seed %lld\n", out, np, np == 1 ? "" : "s",
           (long long)n, ldmc_sampler_name(kind), cost.n_steps, k_flags[F_CFG].value ? k_flags[F_CFG].value : "3",
           (long long)seed);
    if (nr > 1) printf("rows: prompt x rate, %d rates per prompt\n", nr);
    printf("time: %.3f s per step (batch %lld%s), %.2f s per image\n", t_sample / (double)(runs * cost.n_steps),
           (long long)B, guidance ? ", x2 with guidance" : "", t_sample / (double)total);
    printf("sampling cost: %.4f normalized per-step cost (U-Net c=%d: %.4f GFLOPs per image per pass; c=320 = 1)"
           " x %d pass%s%s x %d steps = %.4f\n", norm, m.unet.channels, gf, passes, passes == 1 ? "" : "es",
           guidance ? " (classifier-free guidance: conditional + unconditional)" : "", cost.n_steps,
           norm * passes * cost.n_steps);
  }
  int ret = st == LDMC_OK ? LDMC_EXIT_OK : ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  if (ranks > 1 && ldmc_cli_has(&k_cmd, "eval")) { /* the other ranks score with rank 0 (a shared file system) */
    char shared[4096] = "";
    if (st == LDMC_OK) snprintf(shared, sizeof shared, "%s", samples_path);
    if (ldmc_dist_bcast(shared, sizeof shared, "the samples file") != LDMC_OK) ldmc_dist_abort(ldmc_last_error());
  }
  if (st == LDMC_OK && ldmc_cli_has(&k_cmd, "eval")) ret = run_eval(samples_path, threads, tspec);
  if (tmp_samples[0]) unlink(tmp_samples);
  ldmc_sampler_free(s);
  ldmc_graph_free(unet);
  ldmc_tensor_release(&latents), ldmc_tensor_release(&images), ldmc_tensor_release(&ctx_all);
  ldmc_tensor_release(&ctx), ldmc_tensor_release(&labels);
  free(plist);
  ldmc_ldm_model_free(&m);
  return ret;
}
