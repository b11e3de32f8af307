/* Samplers: DDIM, DDPM and DPM-Solver++ 2M with diffusers' timestep rules,
 * each denoising step one compiled graph (the denoiser inlined, classifier-
 * free guidance, the update, in-graph Philox noise), and the runtime loop
 * around it (docs/sampling.md).
 *
 *   models/sampler_schedule.c  timesteps and the per-step coefficients
 *   models/sampler_graph.c     the step graph and the initial-noise graph
 *   models/sampler_run.c       the bound, compiled sampler and its loop
 *
 * Every step of every sampler is one update of the same form,
 *   x' = c_x x + c_x0 x0 + c_eps eps + c_d (x0 - x0_prev) + c_noise z,
 * with x0 and eps the denoiser's output converted at (alpha_t, sigma_t), so
 * one executable serves every step and the coefficients are its inputs. */
#ifndef LDMC_MODELS_SAMPLERS_H
#define LDMC_MODELS_SAMPLERS_H

#include "backends/backend.h"
#include "models/diffusion.h"

typedef enum ldmc_sampler_kind {
  LDMC_SAMPLER_DDIM,     /* diffusers' DDIMScheduler */
  LDMC_SAMPLER_DDPM,     /* DDPMScheduler */
  LDMC_SAMPLER_DPMPP_2M, /* DPMSolverMultistepScheduler: dpmsolver++, order 2, midpoint */
  LDMC_SAMPLER_LCM,      /* LCMScheduler: multi-step consistency sampling of a distilled model */
  LDMC_SAMPLER_COUNT
} ldmc_sampler_kind;

typedef enum ldmc_timestep_spacing {
  LDMC_SPACING_LEADING,
  LDMC_SPACING_TRAILING,
  LDMC_SPACING_LINSPACE,
  LDMC_SPACING_COUNT
} ldmc_timestep_spacing;

typedef enum ldmc_ddpm_variance {
  LDMC_DDPM_FIXED_SMALL, /* posterior variance (1 - abar_prev) / (1 - abar_t) beta_t, >= 1e-20 */
  LDMC_DDPM_FIXED_LARGE, /* beta_t = 1 - abar_t / abar_prev */
} ldmc_ddpm_variance;

typedef enum ldmc_final_sigmas {
  LDMC_FINAL_SIGMA_ZERO, /* the last step lands on sigma = 0: it returns x0 */
  LDMC_FINAL_SIGMA_MIN,  /* the last step lands on sigma of t = 0 */
} ldmc_final_sigmas;

typedef struct ldmc_sampler_config {
  ldmc_sampler_kind kind;
  int steps;                     /* inference steps N, 1..T */
  ldmc_timestep_spacing spacing; /* DDIM, DDPM: leading; DPM-Solver++: linspace (diffusers' defaults) */
  int steps_offset;              /* added to leading timesteps (0; SD-1.5's configs: 1) */
  /* DDIM */
  double eta;                    /* 0: deterministic; > 0 adds eta sigma_t(eta) noise */
  bool set_alpha_to_one;         /* true: abar_prev of the last step is 1, else abar_0 */
  /* DDPM */
  ldmc_ddpm_variance variance;
  /* DPM-Solver++ 2M */
  bool lower_order_final;        /* true: first order at the last step when N < 15 */
  bool euler_at_final;           /* false */
  ldmc_final_sigmas final_sigmas;
  double lambda_min_clipped;     /* -INFINITY: timesteps whose log-SNR/2 is below it are not used */
  /* DDIM, DDPM: clamp x0 to [-range, range]. diffusers' class default is on,
   * for pixels in [-1, 1]; off here, as latent models configure it. */
  bool clip_sample;
  double clip_sample_range;      /* 1 */
  /* LCM: the distillation's solver steps (original_inference_steps, 50) and
   * the boundary scalings' timestep scaling (10) */
  int lcm_origin_steps;
  double timestep_scaling;
} ldmc_sampler_config;

/* Consistency models' boundary scalings at timestep t (LCM; diffusers'
 * get_scalings_for_boundary_condition_discrete): with s = scaling t,
 * c_skip = sigma_data^2 / (s^2 + sigma_data^2), c_out = s / sqrt(s^2 + sigma_data^2). */
#define LDMC_LCM_SIGMA_DATA 0.5
void ldmc_lcm_boundary(double t, double scaling, double *c_skip, double *c_out);

/* diffusers' defaults for the kind (clip_sample off, see above) and steps. */
void ldmc_sampler_config_default(ldmc_sampler_config *c, ldmc_sampler_kind kind, int steps);
ldmc_status ldmc_sampler_config_check(const ldmc_sampler_config *c, int train_timesteps);
const char *ldmc_sampler_name(ldmc_sampler_kind k);          /* "ddim", "ddpm", "dpmpp2m", "lcm" */
ldmc_status ldmc_sampler_parse(const char *s, ldmc_sampler_kind *out); /* also "dpm++2m", "dpmsolver++" */
const char *ldmc_spacing_name(ldmc_timestep_spacing s);      /* "leading", "trailing", "linspace" */
ldmc_status ldmc_spacing_parse(const char *s, ldmc_timestep_spacing *out);
const char *ldmc_ddpm_variance_name(ldmc_ddpm_variance v);   /* "fixed_small", "fixed_large" */
ldmc_status ldmc_ddpm_variance_parse(const char *s, ldmc_ddpm_variance *out);

/* The inference timesteps, in order (descending), into out[cap] (cap >= steps
 * suffices); *n their count. As the scheduler's set_timesteps computes them,
 * numpy's linspace/arange/round-half-even arithmetic reproduced in double;
 * one deviation: a trailing value that numpy's float arange adds below 0
 * (T = 1000, N = 61: ..., 15, -1) is dropped (diffusers would index
 * alphas_cumprod[-1]). A timestep >= T (leading with a large steps_offset)
 * and, for DPM-Solver++, a repeated timestep are errors. LCM: the solver's
 * timesteps k i - 1 (k = T / lcm_origin_steps, i = 1..origin), reversed, at
 * indices floor(linspace(0, origin, N, endpoint=False)): 999, 759, 499, 259
 * for N = 4; N > origin is an error. */
ldmc_status ldmc_sampler_timesteps(const ldmc_diffusion_config *dc, const ldmc_sampler_config *sc, int64_t *out,
                                   int cap, int *n);

/* One denoising step: what its executable is given. */
typedef struct ldmc_sampler_step {
  int64_t timestep;          /* t, given to the denoiser */
  int64_t prev_timestep;     /* the sampler's previous-timestep rule; < 0 past the end */
  double alpha_cumprod;      /* abar_t */
  double alpha_cumprod_prev; /* abar at prev_timestep, or the final value of the rule */
  double alpha, sigma;       /* sqrt(abar_t), sqrt(1 - abar_t): the prediction conversion */
  double c_x, c_x0, c_eps, c_d, c_noise; /* the update above */
  double c_skip, c_out;      /* LCM: the boundary scalings at t (denoised = c_skip x + c_out x0) */
  int order;                 /* DPM-Solver++: 1 or 2; 0 for the others */
} ldmc_sampler_step;

typedef struct ldmc_sampler_schedule {
  ldmc_sampler_config config;
  int n_steps;
  ldmc_sampler_step *steps; /* owned */
} ldmc_sampler_schedule;

ldmc_status ldmc_sampler_schedule_build(const ldmc_diffusion_config *dc, const ldmc_sampler_config *sc,
                                        ldmc_sampler_schedule *out);
void ldmc_sampler_schedule_release(ldmc_sampler_schedule *s);

/* ---- graphs (sampler_graph.c) ----
 * The denoiser: any graph with the U-Net's interface: parameters sample
 * f32[Bd,...], timestep f32[Bd], context [Bd,...], then its weights; its
 * first output is typed like sample. With guidance Bd = 2B: rows 0..B-1 are
 * conditional, B..2B-1 unconditional (the context's rows likewise), and
 * m = m_u + w (m_c - m_u); without, Bd = B and the denoiser runs once.
 *
 * LCM: the denoiser is a distilled student with the guidance input (its
 * 4th parameter "guidance", ldmc_unet_config.guidance_embed_dim): one pass
 * at batch B (guidance false), fed guidance_scale - 1 (LCM's w).
 *
 * The step graph "sampler_step", parameters in this order:
 *   latents f32[B,...]        x_t (donated: output "latents" overwrites it)
 *   x0_prev f32[B,...]        DPM-Solver++ only: the previous step's x0
 *   encoder_hidden_states     the denoiser's context, [Bd,...]
 *   guidance_scale f32[]      with guidance, and LCM
 *   noise_key i64[B]          stochastic samplers only (DDPM; DDIM with eta > 0; LCM, N > 1):
 *                             row b's noise is rng_normal keyed by noise_key[b]
 *   timestep, alpha_t, sigma_t, c_x, c_x0, c_eps, c_d, c_noise: f32[]
 *   cond_sample [Bd,...]      when the denoiser has that input (super-resolution: the low-resolution
 *                             image's latent), given per run like the context, never a weight
 *   then the denoiser's weights, under their own names.
 * Outputs: latents (x'), and x0 for DPM-Solver++: the next step's x0_prev.
 * x0 is not donated: the update reads x0 and the old x0_prev together, so
 * the planner cannot write one over the other; the runtime keeps two
 * buffers and swaps them after each step (no copy, no allocation). */
typedef struct ldmc_sampler_inputs {
  int32_t latents, x0_prev, context, guidance, noise_key; /* -1 where absent */
  int32_t timestep, alpha, sigma, c_x, c_x0, c_eps, c_d, c_noise;
  int32_t cond; /* cond_sample: the denoiser's image conditioning, per run (-1: none) */
  int32_t n_inputs; /* the step's own inputs; the denoiser's weights follow */
} ldmc_sampler_inputs;

bool ldmc_sampler_is_stochastic(const ldmc_sampler_config *sc);
ldmc_status ldmc_sampler_step_build(const ldmc_sampler_config *sc, ldmc_prediction pred, bool guidance,
                                    const ldmc_graph *denoiser, ldmc_graph **out);
/* Where each input of a step graph is (by name). */
ldmc_status ldmc_sampler_step_inputs(const ldmc_graph *step, ldmc_sampler_inputs *out);
/* "sampler_noise": noise_key i64[B] -> noise f32[B,dims[1..]] (row b keyed by
 * noise_key[b], exactly as the step graph draws it): x_T. */
ldmc_status ldmc_sampler_noise_build(int rank, const int64_t *dims, ldmc_graph **out);

/* The Philox key of image `image`'s noise at `step` (0: x_T; k >= 1: the
 * noise of denoising step k) for a seed: splitmix64's finalizer chained over
 * (seed, image, step). Keyed per image, so an image's noise is the same
 * whatever the batch it is drawn in. */
int64_t ldmc_sample_noise_key(uint64_t seed, int64_t image, int64_t step);

/* ---- the runtime (sampler_run.c) ---- */
typedef struct ldmc_sampler ldmc_sampler;

/* Builds the schedule and the step and noise graphs, compiles them on be
 * (co: threads, cache; donate and params_are_weights are set here), and
 * binds weights (the denoiser's weights by parameter name; views: they must
 * outlive the sampler; NULL when the denoiser has none). */
ldmc_status ldmc_sampler_new(const ldmc_diffusion_config *dc, const ldmc_sampler_config *sc, bool guidance,
                             const ldmc_graph *denoiser, const ldmc_tensor_set *weights, const ldmc_backend_i *be,
                             const ldmc_compile_opts *co, ldmc_sampler **out);
void ldmc_sampler_free(ldmc_sampler *s);

typedef struct ldmc_sample_progress {
  int step, n_steps;       /* steps done (1-based) of n_steps */
  int64_t timestep;        /* the t of the step just done */
  double elapsed_s;        /* since the run began */
  const ldmc_tensor *latents; /* after the step (borrowed) */
} ldmc_sample_progress;
/* A non-OK return stops the run with that status (e.g. on Ctrl-C). */
typedef ldmc_status (*ldmc_sample_progress_fn)(void *ctx, const ldmc_sample_progress *p);

typedef struct ldmc_sample_run_opts {
  uint64_t seed;
  int64_t first_image;          /* global index of row 0: noise keys of row b use first_image + b */
  const ldmc_tensor *context;   /* the denoiser's context (cond rows, then uncond rows with guidance) */
  double guidance_scale;        /* w, with guidance */
  const ldmc_tensor *x_T;       /* NULL: drawn in-graph from (seed, image, 0) */
  const ldmc_tensor *cond;      /* the denoiser's cond_sample [Bd,...] when it has one (rows as the context's);
                                 * a model without one ignores it */
  ldmc_sample_progress_fn progress;
  void *progress_ctx;
} ldmc_sample_run_opts;

/* Runs every step: x_T, then per step sets the coefficients (and noise keys)
 * and runs the step executable, which updates the latents in place (and
 * DPM-Solver's x0 into the spare buffer, swapped with x0_prev). The result
 * stays in ldmc_sampler_latents. */
ldmc_status ldmc_sample_run(ldmc_sampler *s, const ldmc_sample_run_opts *o);
/* Draws x_T for (seed, first_image) into the latents (ldmc_sample_run does
 * it unless x_T is given). */
ldmc_status ldmc_sampler_init_noise(ldmc_sampler *s, uint64_t seed, int64_t first_image);

const ldmc_tensor *ldmc_sampler_latents(const ldmc_sampler *s); /* f32[B,...], valid until the next run */
const ldmc_sampler_schedule *ldmc_sampler_get_schedule(const ldmc_sampler *s);
const ldmc_graph *ldmc_sampler_step_graph(const ldmc_sampler *s);
ldmc_executable *ldmc_sampler_step_executable(ldmc_sampler *s); /* e.g. for ldmc_executable_set_profiler */

/* Sampling cost: denoiser evaluations and FLOPs. One step evaluates the
 * denoiser on denoiser_batch rows (2B with guidance); a run does n_steps. */
typedef struct ldmc_sampler_cost {
  int n_steps;
  int64_t batch, denoiser_batch;
  ldmc_flops step_flops;        /* ldmc_graph_flops of the step graph */
} ldmc_sampler_cost;
void ldmc_sampler_get_cost(const ldmc_sampler *s, ldmc_sampler_cost *out);

#endif
