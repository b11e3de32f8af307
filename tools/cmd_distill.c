/* ldmc distill: latent consistency distillation of a trained latent
 * diffusion model into a few-step student (models/distill.h,
 * docs/distillation.md), with the training loop of `ldmc train`
 * (runtime/trainer.c): progress, validation, checkpoints, exact resume. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/distill.h"
#include "models/ldm_model.h"
#include "models/train_data.h"
#include "runtime/checkpoint.h"
#include "runtime/dist.h"
#include "tools/cli_args.h"
#include "tools/cli_kv.h"
#include "tools/cli_target.h"
#include "tools/commands.h"

enum {
  F_TEACHER, F_OUT, F_STEPS, F_BATCH, F_LR, F_WARMUP, F_DECAY, F_MIN_LR, F_WD, F_CLIP, F_EMA, F_SCALE_MIN,
  F_SCALE_MAX, F_LOSS, F_HUBER_C, F_SOLVER, F_GDIM, F_SEED, F_THREADS, F_TARGET, F_BACKEND, F_BF16, F_CKPT, F_KEEP,
  F_LOG, F_VAL, F_VAL_BATCHES, F_RESUME, F_PROGRESS, F_NO_PROGRESS, F_DATA, F_LIMIT, F_EXPORT, F_STOP_AFTER, F_COUNT
};

static ldmc_cli_flag k_flags[F_COUNT] = {
    [F_TEACHER] = {"teacher", "FILE", "the trained latent diffusion model to distill (default: the repository's\n"
                                      "default model, models/default/ldm.ldmc)"},
    [F_OUT] = {"out", "DIR", "output folder: checkpoints DIR/ckpt-<step>.ldmc, DIR/log.csv and, at the end,\n"
                             "DIR/model.ldmc (the EMA target network: the distilled model)"},
    [F_STEPS] = {"steps", "N", "distillation steps in all (a resumed run continues up to N)"},
    [F_BATCH] = {"batch", "B", "images per step (default 32; the teacher runs on 2B rows); under mpirun the global\n"
                               "batch, split evenly over the ranks"},
    [F_LR] = {"lr", "LR", "peak learning rate (default 1e-4)"},
    [F_WARMUP] = {"warmup", "N", "linear learning-rate warm-up over the first N steps (default 100)"},
    [F_DECAY] = {"lr-decay", "KIND", "after warm-up: constant or cosine (default constant)"},
    [F_MIN_LR] = {"min-lr-frac", "F", "cosine decay ends at F x the peak learning rate (default 0.1)"},
    [F_WD] = {"weight-decay", "W", "AdamW's decoupled weight decay (default 0)"},
    [F_CLIP] = {"clip", "NORM", "clip gradients to global L2 norm NORM (default 1.0; 0: off)"},
    [F_EMA] = {"ema", "DECAY", "decay of the EMA target network (default 0.95, LCM's)"},
    [F_SCALE_MIN] = {"cfg-min", "S", "smallest guidance scale drawn per example (default 2; the samplers' --cfg)"},
    [F_SCALE_MAX] = {"cfg-max", "S", "largest guidance scale drawn per example (default 8)"},
    [F_LOSS] = {"loss", "KIND", "l2 (default) or huber (pseudo-Huber sqrt(d^2 + c^2) - c)"},
    [F_HUBER_C] = {"huber-c", "C", "the pseudo-Huber loss's c (default 0.001)"},
    [F_SOLVER] = {"solver-steps", "N", "DDIM solver timesteps of the teacher's ODE (default 50: t = 20 i - 1)"},
    [F_GDIM] = {"guidance-dim", "D", "width of the guidance-scale embedding (LCM's time_cond_proj_dim; default 128)"},
    [F_SEED] = {"seed", "S", "seed of the data order and the in-graph noise (default 0)"},
    [F_THREADS] = {"threads", "N", "threads (default: OpenMP's); resume with the same count for identical bits"},
    [F_TARGET] = {"target", "NAME", "what executes the step: llvm-cpu[:scalar|avx2|avx512] (default) or interp"},
    [F_BACKEND] = {"backend", "NAME", "synonym of --target"},
    [F_BF16] = {"bf16", NULL, "bf16 GEMM/convolution operands with f32 accumulation (master weights stay f32)"},
    [F_CKPT] = {"ckpt-every", "N", "write a checkpoint every N steps (default 500; one is always written at the end)"},
    [F_KEEP] = {"keep", "K", "checkpoints kept, newest first (default 3)"},
    [F_LOG] = {"log-every", "N", "CSV rows and plain progress lines every N steps (default 50)"},
    [F_VAL] = {"val-every", "N", "validate on the test split every N steps (default 1000; also at the end)"},
    [F_VAL_BATCHES] = {"val-batches", "N", "test batches per validation (default 4)"},
    [F_RESUME] = {"resume", NULL, "continue from DIR's newest good checkpoint (same flags, same thread count)"},
    [F_PROGRESS] = {"progress", NULL, "draw a progress bar even when stderr is not a terminal"},
    [F_NO_PROGRESS] = {"no-progress", NULL, "plain progress lines even on a terminal"},
    [F_DATA] = {"data", "DIR", "Fashion-MNIST folder (default $LDMC_FASHION_MNIST_DIR or\n"
                               "/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)"},
    [F_LIMIT] = {"limit", "N", "use only the first N images of each split (quick runs, tests)"},
    [F_EXPORT] = {"export-dtype", "DT", "dtype of DIR/model.ldmc: f32 (default) or bf16"},
    [F_STOP_AFTER] = {"stop-after", "N", "end this run after N steps with a checkpoint (continue with --resume)"},
};

static ldmc_cli_cmd k_cmd = {
    .name = "distill",
    .usage = "--out DIR --steps N [--teacher FILE] [options]",
    .summary = "latent consistency distillation of a latent diffusion model to 1-8-step sampling",
    .details = "Each step draws per example a solver index n (t = k(n+1) - 1 of the teacher's N solver steps), noise,\n"
               "and a guidance scale in [--cfg-min, --cfg-max]; the frozen teacher takes one guided DDIM step from t\n"
               "to t - k, and the student at t is pulled toward the EMA target at t - k, both through the consistency\n"
               "boundary scalings (docs/distillation.md). DIR/log.csv has step, lr, loss, grad_norm, images/s and the\n"
               "validation loss (the EMA network's consistency loss on test batches). Ctrl-C finishes the step,\n"
               "writes a checkpoint and exits (status 130). Sample the result with\n"
               "  ldmc sample --model DIR/model.ldmc --sampler lcm --steps 4 --cfg 5 --prompt sneaker\n"
               "Example:\n"
               "  ldmc distill --teacher models/default/ldm.ldmc --out runs/lcm --steps 3000\n"
               "Data-parallel: mpirun -np N ldmc distill ... (docs/distributed.md); the result matches one process.",
    .flags = k_flags,
    .n_flags = F_COUNT,
};

static int real_flag(int f, double lo, double hi, double *out) {
  return ldmc_cli_real(&k_cmd, k_flags[f].name, lo, hi, out);
}
static int int_flag(int f, int64_t lo, int64_t hi, int64_t *out) {
  return ldmc_cli_int(&k_cmd, k_flags[f].name, lo, hi, out);
}

/* The teacher's configuration (every key but batch and seed), then the distillation's. */
static ldmc_status teacher_config(const char *path, ldmc_cli_kv *c) {
  ldmc_checkpoint *ck = NULL;
  LDMC_TRY(ldmc_checkpoint_read(path, &ck));
  for (int32_t i = 0; i < ldmc_checkpoint_num_config(ck); i++) {
    const char *k, *v;
    ldmc_checkpoint_config_at(ck, i, &k, &v);
    if (strcmp(k, "batch") && strcmp(k, "seed")) ldmc_cli_kv_add(c, k, "%s", v);
  }
  ldmc_checkpoint_free(ck);
  return LDMC_OK;
}

int ldmc_cmd_distill(int argc, char **argv) {
  int rc = ldmc_cli_parse(&k_cmd, argc, argv);
  if (rc != LDMC_CLI_CONTINUE) return rc;
  const char *out = k_flags[F_OUT].value;
  const char *teacher = k_flags[F_TEACHER].value ? k_flags[F_TEACHER].value : ldmc_default_model_path();
  if (!out) return ldmc_cli_usage_error(&k_cmd, "--out DIR is required");
  if (!ldmc_cli_has(&k_cmd, "steps")) return ldmc_cli_usage_error(&k_cmd, "--steps N is required");
  if (ldmc_cli_has(&k_cmd, "progress") && ldmc_cli_has(&k_cmd, "no-progress"))
    return ldmc_cli_usage_error(&k_cmd, "give --progress or --no-progress, not both");
  int64_t batch = 32, steps = 0, warmup = 100, seed = 0, threads = 0, ckpt = 500, keep = 3, log = 50;
  int64_t val = 1000, val_batches = 4, limit = 0, stop_after = 0, solver = 50, gdim = 128;
  double lr = 1e-4, min_lr = 0.1, wd = 0, clip = 1.0, ema = 0.95;
  ldmc_lcd_config lc;
  ldmc_lcd_config_default(&lc);
  if ((rc = int_flag(F_BATCH, 1, 1 << 20, &batch)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_STEPS, 1, INT64_MAX / 2, &steps)) != LDMC_CLI_CONTINUE ||
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
      (rc = int_flag(F_SOLVER, 1, 1000, &solver)) != LDMC_CLI_CONTINUE ||
      (rc = int_flag(F_GDIM, 4, 4096, &gdim)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_LR, 0, 10, &lr)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_MIN_LR, 0, 1, &min_lr)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_WD, 0, 10, &wd)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_CLIP, 0, 1e9, &clip)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_EMA, 1e-9, 0.999999999, &ema)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_SCALE_MIN, 1, 1e3, &lc.scale_min)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_SCALE_MAX, 1, 1e3, &lc.scale_max)) != LDMC_CLI_CONTINUE ||
      (rc = real_flag(F_HUBER_C, 1e-12, 1e3, &lc.huber_c)) != LDMC_CLI_CONTINUE)
    return rc;
  if (gdim % 2) return ldmc_cli_usage_error(&k_cmd, "--guidance-dim %lld: must be even", (long long)gdim);
  if (lc.scale_max < lc.scale_min)
    return ldmc_cli_usage_error(&k_cmd, "--cfg-max %g is below --cfg-min %g", lc.scale_max, lc.scale_min);
  lc.solver_steps = (int)solver;
  if (k_flags[F_LOSS].value && ldmc_lcd_loss_parse(k_flags[F_LOSS].value, &lc.loss) != LDMC_OK)
    return ldmc_cli_usage_error(&k_cmd, "--loss: %s", ldmc_last_error());
  ldmc_lr_decay decay = LDMC_LR_CONSTANT;
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

  ldmc_ldm_model m;
  ldmc_status st = ldmc_ldm_model_load(teacher, &m);
  if (st != LDMC_OK) return ldmc_cli_fail(&k_cmd, "--teacher: %s", ldmc_last_error());
  if (st == LDMC_OK && ldmc_lcd_config_check(&lc, m.diffusion.timesteps) != LDMC_OK) {
    ldmc_ldm_model_free(&m);
    return ldmc_cli_usage_error(&k_cmd, "%s", ldmc_last_error());
  }
  ldmc_cli_kv cfg = {0};
  ldmc_lcd_job job;
  memset(&job, 0, sizeof job);
  st = teacher_config(teacher, &cfg);
  int ranks = ldmc_dist_size(), rank = ldmc_dist_rank();
  if (st == LDMC_OK && batch % ranks != 0)
    st = ldmc_error(LDMC_ERR_INVALID, "--batch %lld does not split evenly over %d ranks", (long long)batch, ranks);
  ldmc_batch_shard_set(rank, ranks); /* the loss graph's per-row noise: this rank's rows of the global batch */
  if (st == LDMC_OK) st = ldmc_lcd_job_build(&m, &lc, (int)gdim, batch / ranks, &job);
  ldmc_batch_shard_set(0, 1);
  if (st != LDMC_OK) {
    ldmc_ldm_model_free(&m);
    return ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error());
  }
  ldmc_cli_kv_add(&cfg, "unet.guidance_embed_dim", "%lld", (long long)gdim);
  ldmc_cli_kv_add(&cfg, "distill.method", "lcm");
  ldmc_cli_kv_add(&cfg, "distill.teacher_steps", "%lld", (long long)m.step);
  ldmc_cli_kv_add(&cfg, "distill.solver_steps", "%d", lc.solver_steps);
  ldmc_cli_kv_add(&cfg, "distill.cfg_range", "%g,%g", lc.scale_min, lc.scale_max);
  ldmc_cli_kv_add(&cfg, "distill.loss", "%s", ldmc_lcd_loss_name(lc.loss));
  if (lc.loss == LDMC_LCD_HUBER) ldmc_cli_kv_add(&cfg, "distill.huber_c", "%g", lc.huber_c);
  ldmc_cli_kv_add(&cfg, "distill.ema", "%g", ema);
  ldmc_cli_kv_add(&cfg, "timestep_scaling", "%g", lc.timestep_scaling);
  ldmc_cli_kv_add(&cfg, "batch", "%lld", (long long)batch);
  ldmc_cli_kv_add(&cfg, "seed", "%lld", (long long)seed);

  ldmc_train_opts to = {.clip_norm = clip, .weight_decay = wd, .master_f32 = true};
  ldmc_lcd_train_opts(&to, ema);
  ldmc_compile_opts co = {.threads = (int)threads, .bf16 = ldmc_cli_has(&k_cmd, "bf16")};
  ldmc_data_opts dopt = {.dir = k_flags[F_DATA].value, .limit = limit, .seed = (uint64_t)seed, .be = ct.be, .co = co,
                         .shard_rank = rank, .shard_ranks = ranks};
  ldmc_train_session *s = NULL;
  ldmc_model_data *data = NULL;
  ldmc_train_source src;
  ldmc_train_result res;
  memset(&res, 0, sizeof res);
  if (rank == 0) {
    fprintf(stderr, "compiling the distillation step (teacher on %lld rows, student and target on %lld) on %s",
            (long long)(2 * batch / ranks), (long long)(batch / ranks), ct.be->name);
    if (ranks > 1) fprintf(stderr, ", data-parallel over %d ranks", ranks);
    fprintf(stderr, "\n");
  }
  st = ldmc_train_session_new(job.loss, LDMC_LDM_N_DATA, &to, (uint64_t)seed, &job.init, ct.be, &co, &s);
  ldmc_tensor_set_free(&job.init); /* copied into the session */
  if (st == LDMC_OK)
    st = ldmc_ldm_data_new(job.loss, &m.vae, &m.vae_w, m.text.max_positions, val_batches, &dopt, s, &data, &src);
  if (st == LDMC_OK) {
    ldmc_train_loop_opts lo = {
        .steps = steps, .lr = {.base = lr, .min_frac = min_lr, .warmup = warmup, .total = steps, .decay = decay},
        .out_dir = out, .ckpt_every = ckpt, .keep = (int)keep, .log_every = log, .val_every = val,
        .resume = ldmc_cli_has(&k_cmd, "resume"), .stop_after = stop_after,
        .progress = ldmc_cli_has(&k_cmd, "progress") ? 1 : ldmc_cli_has(&k_cmd, "no-progress") ? 0 : -1,
        .seed = seed, .n_config = cfg.n, .config_keys = cfg.kp, .config_values = cfg.vp};
    st = ldmc_train_session_loop(s, &src, &lo, &res);
  }
  if (st != LDMC_OK && ranks > 1) ldmc_dist_abort(ldmc_last_error()); /* the others may wait in a collective */
  if (rank != 0) { /* rank 0 exports and reports */
    int other_rc = res.interrupted ? 130 : LDMC_EXIT_OK;
    ldmc_train_result_free(&res);
    ldmc_model_data_free(data);
    ldmc_train_session_free(s);
    ldmc_lcd_job_free(&job);
    ldmc_ldm_model_free(&m);
    return other_rc;
  }
  if (st == LDMC_OK && res.paused)
    printf("stopped after step %lld of %lld: %s (continue with --resume)\n", (long long)res.last_step, (long long)steps,
           res.last_checkpoint ? res.last_checkpoint : "");
  if (st == LDMC_OK && !res.interrupted && !res.paused) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.ldmc", out);
    st = ldmc_train_session_export(s, path, res.last_step, true, export_dt, NULL, cfg.n, cfg.kp, cfg.vp, &job.extra, "");
    if (st == LDMC_OK) {
      printf("distilled: steps %lld..%lld, loss %.6f, images/s %.1f", (long long)res.first_step,
             (long long)res.last_step, res.last_loss, res.images_per_s);
      if (!isnan(res.last_val_loss)) printf(", val_loss %.6f", res.last_val_loss);
      printf("\nmodel: %s (sample it with --sampler lcm)\n", path);
    }
  }
  int exit_rc = st != LDMC_OK ? ldmc_cli_fail(&k_cmd, "%s", ldmc_last_error()) : res.interrupted ? 130 : LDMC_EXIT_OK;
  ldmc_train_result_free(&res);
  ldmc_model_data_free(data);
  ldmc_train_session_free(s);
  ldmc_lcd_job_free(&job);
  ldmc_ldm_model_free(&m);
  return exit_rc;
}
