/* Latent consistency distillation (Luo et al. 2023, "Latent Consistency
 * Models", Algorithm 1; diffusers' train_lcm_distill_sd_wds.py): the loss
 * graph of one distillation step, with a frozen guided teacher, the student
 * and its EMA target network in one graph (docs/distillation.md). The step
 * graph around it is ldmc_train_step_build with ema_from_model. */
#ifndef LDMC_MODELS_DISTILL_H
#define LDMC_MODELS_DISTILL_H

#include "models/diffusion.h"
#include "models/unet.h"

typedef enum ldmc_lcd_loss_kind {
  LDMC_LCD_L2,    /* mean((f - y)^2) */
  LDMC_LCD_HUBER, /* mean(sqrt((f - y)^2 + c^2) - c), pseudo-Huber */
} ldmc_lcd_loss_kind;

typedef struct ldmc_lcd_config {
  int solver_steps;        /* DDIM solver timesteps k i - 1, i = 1..N, k = T / N: 50 */
  /* The guidance scale s of each example, uniform in [s_min, s_max], in the
   * samplers' convention m = m_u + s (m_c - m_u) (LCM's w = s - 1 is what
   * the student's guidance input receives): [2, 8] */
  double scale_min, scale_max;
  double timestep_scaling; /* the boundary scalings' 10 */
  ldmc_lcd_loss_kind loss;
  double huber_c;          /* pseudo-Huber's c: 0.001 */
  /* Tests: also output t_start f32[B], scale f32[B], x_start (x), x_prev
   * (x_e), prediction (f) and target (y), after loss. */
  bool probe_outputs;
} ldmc_lcd_config;

void ldmc_lcd_config_default(ldmc_lcd_config *c);
ldmc_status ldmc_lcd_config_check(const ldmc_lcd_config *c, int train_timesteps);
const char *ldmc_lcd_loss_name(ldmc_lcd_loss_kind k); /* "l2", "huber" */
ldmc_status ldmc_lcd_loss_parse(const char *s, ldmc_lcd_loss_kind *out);

/* The distillation loss graph "lcd". Data parameters as ldmc_ldm_loss_build's
 * (latent_mean, latent_logvar, tokens, key: LDMC_LDM_N_DATA), then the
 * prompt encoder's weights as "text." + name, the student's under their own
 * names, the teacher's as "teacher." + name, the target's as "ema." + the
 * student's names. From key, four Philox streams (key * 4 + s): the
 * posterior sample, the solver index n in 0..N-1, the noise, the scale s.
 *   z0 = scale (mean + exp(logvar / 2) n0)
 *   t_s = k (n + 1) - 1, t_e = max(t_s - k, 0); x = alpha(t_s) z0 + sigma(t_s) eps
 *   teacher on [x; x] with [text(tokens); text(empty)]: (x0, eps) per half,
 *     guided x0_g = x0_u + s (x0_c - x0_u), eps_g likewise
 *   x_e = alpha(t_e) x0_g + sigma(t_e) eps_g            (one DDIM step)
 *   f = c_skip(t_s) x + c_out(t_s) x0(student(x, t_s, ctx, s - 1))
 *   y = c_skip(t_e) x_e + c_out(t_e) x0(target(x_e, t_e, ctx, s - 1))
 *   loss = mean(d(f, y)), d = L2 or pseudo-Huber
 * student: a U-Net at batch B with the guidance input (guidance_embed_dim >
 * 0); teacher: the same interface without it, at batch 2B; text: tokens
 * [B, T] -> context. One output "loss" f32[]. */
ldmc_status ldmc_lcd_loss_build(const ldmc_diffusion_config *dc, const ldmc_lcd_config *lc, const ldmc_graph *student,
                                const ldmc_graph *teacher, const ldmc_graph *text, const int32_t *empty_tokens,
                                double latent_scale, ldmc_graph **out);

/* The training options a distillation step needs on top of o: the student
 * trained, the prompt encoder and teacher frozen ("^(text|teacher)\."), the
 * target read from the EMA (ema_from_model) with decay ema (LCM: 0.95). */
void ldmc_lcd_train_opts(ldmc_train_opts *o, double ema);

/* ---- a distillation of a trained latent diffusion model (distill_job.c) ---- */
struct ldmc_ldm_model;
typedef struct ldmc_lcd_job {
  ldmc_unet_config student;  /* the teacher's config + guidance_embed_dim, at the batch */
  ldmc_graph *loss;          /* ldmc_lcd_loss_build's */
  ldmc_tensor_set init;      /* the student = the teacher (cond_proj zero), teacher.*, text.* */
  ldmc_tensor_set extra;     /* views for the exported file: text_model.* and vae.* */
  int32_t empty[77];
} ldmc_lcd_job;

/* The loss graph and initial weights of distilling teacher (a model file's
 * contents, kept alive while the job lives: init and extra view nothing of
 * it, they copy; extra views the job's own copies) at batch B with a
 * guidance embedding of guidance_dim. */
ldmc_status ldmc_lcd_job_build(const struct ldmc_ldm_model *teacher, const ldmc_lcd_config *lc, int guidance_dim,
                               int64_t batch, ldmc_lcd_job *out);
void ldmc_lcd_job_free(ldmc_lcd_job *j);

#endif
