/* U-Net training steps on the llvm-cpu backend, timed.
 *   llvm_cpu_train --channels C --latent HxW[xC] --context DxT --batch B [--threads N] [--steps N]
 *                  [--lr LR] [--bf16] [--weights W.safetensors] [--inputs IN.safetensors]
 *                  [--profile-steps N] [--donate] [--compile-only]
 * Builds the step graph (models/unet_train.h: U-Net + MSE on epsilon +
 * backward + AdamW), compiles it once, runs one warm-up step and --steps timed
 * steps on the same batch, feeding every state output back as the next
 * step's input (--donate: compiled with the pairing as
 * ldmc_compile_opts.donate, the state is updated in place in the same input
 * tensors and nothing is allocated per step). Without --weights/--inputs the
 * weights and batch are deterministic noise. Then --profile-steps more steps with the profiling
 * hook: kernel wall time and FLOPs summed by the phase of each kernel's root
 * node's scope (forward, backward grad.*, optimizer optim.*). Prints
 *   build_s=<s> compile_s=<s> gflop=<per step> fwd_gflop= bwd_gflop= opt_gflop= kernels=<per step>
 *   step_ms median=<ms> min=<ms> images_per_s=<at the median> loss_first=<> loss_last=<>
 *   phase_ms fwd=<> bwd=<> opt=<> gaps=<> phase_gflops fwd=<> bwd=<> opt=<>
 *   phase_kernels <phase> <kernel name>=<ms per step>@<GFLOP/s> ...   (names with >= 2% of the phase)
 *   attn_bwd ms=<> kernels=<> gflops=<> <kernel name>=<ms>@<GFLOP/s> ...  (the attention ops' backward:
 *            backward kernels whose root scope is an attention block itself, grad.*.attnN, projections excluded)
 *   losses <one per step>
 * --compile-only stops after the compile line (nothing runs).
 * bench/train_vs_torch.py drives it against PyTorch with the same weights. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/weights_io.h"
#include "models/unet_train.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ---- the profiling hook: kernel time and FLOPs by phase ---- */
#define MAX_NAMES 32
typedef struct phase_acc {
  const ldmc_graph *g; /* the executable's graph: the kernels' node ids and scopes */
  int64_t ns[LDMC_TRAIN_PHASES], flops[LDMC_TRAIN_PHASES], calls;
  /* by kernel name within each phase: where the time goes */
  const char *names[MAX_NAMES];
  int n_names;
  int64_t name_ns[LDMC_TRAIN_PHASES][MAX_NAMES], name_flops[LDMC_TRAIN_PHASES][MAX_NAMES];
  /* the attention ops' backward (scope grad.*.attnN), by kernel name */
  int64_t attn_ns, attn_flops, attn_calls, attn_name_ns[MAX_NAMES], attn_name_flops[MAX_NAMES];
} phase_acc;

/* scope is grad.<...>.attn<digits> (the attention op and its head split / merge, not to_q ... to_out) */
static bool attn_backward_scope(const char *scope) {
  if (!scope || strncmp(scope, "grad.", 5) != 0) return false;
  const char *last = strrchr(scope, '.');
  if (!last || strncmp(last + 1, "attn", 4) != 0 || !last[5]) return false;
  for (const char *c = last + 5; *c; c++)
    if (*c < '0' || *c > '9') return false;
  return true;
}

static void on_kernel(void *ctx, const ldmc_kernel_event *ev) {
  phase_acc *a = ctx;
  const char *scope = NULL; /* the root's, else the nearest member's (as runtime/profiler.c) */
  for (int32_t i = ev->n_nodes - 1; i >= 0 && !scope; i--)
    if (ev->nodes[i] >= 0 && ev->nodes[i] < a->g->n_nodes) scope = a->g->nodes[ev->nodes[i]].scope;
  ldmc_train_phase p = ldmc_train_phase_of_scope(scope);
  a->ns[p] += ev->end_ns - ev->start_ns;
  a->flops[p] += ev->mac_flops + ev->other_flops;
  a->calls++;
  int k = 0;
  while (k < a->n_names && strcmp(a->names[k], ev->name) != 0) k++;
  if (k == a->n_names && k < MAX_NAMES) a->names[a->n_names++] = ev->name; /* names live as long as e */
  if (k < MAX_NAMES) {
    a->name_ns[p][k] += ev->end_ns - ev->start_ns;
    a->name_flops[p][k] += ev->mac_flops + ev->other_flops;
  }
  if (p == LDMC_TRAIN_BACKWARD && attn_backward_scope(scope)) {
    a->attn_ns += ev->end_ns - ev->start_ns;
    a->attn_flops += ev->mac_flops + ev->other_flops;
    a->attn_calls++;
    if (k < MAX_NAMES) {
      a->attn_name_ns[k] += ev->end_ns - ev->start_ns;
      a->attn_name_flops[k] += ev->mac_flops + ev->other_flops;
    }
  }
}

/* "phase_kernels PHASE name=ms@GFLOP/s ..." for the kernel names taking >= 2% of the phase */
static void print_names(const phase_acc *a, int p, int steps) {
  printf("phase_kernels %s", ldmc_train_phase_name((ldmc_train_phase)p));
  for (int k = 0; k < a->n_names; k++) {
    if (a->name_ns[p][k] * 50 < a->ns[p] || a->name_ns[p][k] == 0) continue;
    printf(" %s=%.2fms@%.1f", a->names[k], (double)a->name_ns[p][k] / (1e6 * steps),
           (double)a->name_flops[p][k] / (double)a->name_ns[p][k]);
  }
  printf("\n");
}

/* ---- inputs ---- */
static const ldmc_node *param_node(const ldmc_graph *g, int32_t k) {
  for (int32_t i = 0, j = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER && j++ == k) return &g->nodes[i];
  return NULL;
}

/* Per step parameter: the tensor named like it (ema.P: P) in the files, else
 * lr / step / zero moments, else deterministic noise (fan-in scaled weights). */
static int make_inputs(const ldmc_graph *step, const ldmc_tensor_set *files, int n_files, double lr, ldmc_tensor *in) {
  unsigned seed = 1;
  int32_t np = ldmc_graph_num_params(step);
  for (int32_t k = 0; k < np; k++) {
    const ldmc_node *p = param_node(step, k);
    const char *nm = p->attrs.name;
    if (ldmc_tensor_alloc(&in[k], nm, p->dtype, &p->shape) != LDMC_OK) {
      fprintf(stderr, "%s\n", ldmc_last_error());
      return 1;
    }
    float *d = in[k].data;
    size_t n = in[k].nbytes / 4;
    if (!strcmp(nm, "lr")) d[0] = (float)lr;
    if (!strcmp(nm, "step") || !strcmp(nm, "lr") || !strncmp(nm, "adam_", 5)) continue; /* alloc zeroes */
    const ldmc_tensor *src = NULL;
    for (int f = 0; f < n_files && !src; f++)
      src = ldmc_tensor_set_find(&files[f], strncmp(nm, "ema.", 4) ? nm : nm + 4);
    if (src && src->dtype == LDMC_F32 && src->nbytes == in[k].nbytes) {
      memcpy(d, src->data, in[k].nbytes);
      continue;
    }
    if (files[0].n || files[1].n) {
      fprintf(stderr, "no f32 tensor '%s' of %zu bytes in --weights/--inputs\n", nm, in[k].nbytes);
      return 1;
    }
    double sc = p->shape.rank >= 2 ? 1.0 / sqrt((double)n / (double)p->shape.dims[0]) : 0.2;
    for (size_t j = 0; j < n; j++) {
      seed = seed * 1103515245u + 12345u;
      d[j] = (float)((((seed >> 8) % 20001) / 10000.0 - 1.0) * sc);
    }
    if (!strcmp(nm, "timestep"))
      for (size_t j = 0; j < n; j++) d[j] = (float)((977 * j + 31) % 1000);
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *channels = "32", *latent = "8x8x4", *context = "64x8", *weights = NULL, *inputs = NULL;
  mallopt(M_MMAP_THRESHOLD, 1 << 30); /* reuse the outputs' pages between steps */
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  int threads = 2, steps = 5, prof_steps = 2;
  int64_t batch = 32;
  double lr = 1e-4;
  bool bf16 = false, compile_only = false, donate = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--channels") && v) channels = v, i++;
    else if (!strcmp(a, "--latent") && v) latent = v, i++;
    else if (!strcmp(a, "--context") && v) context = v, i++;
    else if (!strcmp(a, "--batch") && v) batch = atoll(v), i++;
    else if (!strcmp(a, "--weights") && v) weights = v, i++;
    else if (!strcmp(a, "--inputs") && v) inputs = v, i++;
    else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
    else if (!strcmp(a, "--steps") && v) steps = atoi(v), i++;
    else if (!strcmp(a, "--profile-steps") && v) prof_steps = atoi(v), i++;
    else if (!strcmp(a, "--lr") && v) lr = atof(v), i++;
    else if (!strcmp(a, "--bf16")) bf16 = true;
    else if (!strcmp(a, "--donate")) donate = true;
    else if (!strcmp(a, "--compile-only")) compile_only = true;
    else {
      fprintf(stderr, "unknown argument %s (see the comment at the top of bench/llvm_cpu_train.c)\n", a);
      return 2;
    }
  }
  if (steps < 1 || batch < 1 || threads < 1 || prof_steps < 0) {
    fprintf(stderr, "--steps, --batch and --threads must be >= 1, --profile-steps >= 0\n");
    return 2;
  }
  ldmc_unet_config cfg;
  ldmc_graph *g = NULL;
  double t0 = now();
  if (ldmc_unet_config_from_args(&cfg, channels, latent, context, batch) != LDMC_OK ||
      ldmc_unet_train_step_build(&cfg, NULL, &g) != LDMC_OK) {
    fprintf(stderr, "unet train step: %s\n", ldmc_last_error());
    return 1;
  }
  double build_s = now() - t0;
  ldmc_train_step_stats ts;
  if (ldmc_train_step_stats_compute(g, &ts) != LDMC_OK) {
    fprintf(stderr, "%s\n", ldmc_last_error());
    return 1;
  }
  double gf[LDMC_TRAIN_PHASES], gflop = 0;
  for (int p = 0; p < LDMC_TRAIN_PHASES; p++) gflop += gf[p] = (double)(ts.flops[p].mac + ts.flops[p].other) / 1e9;
  int32_t np = ldmc_graph_num_params(g), no = g->n_outputs;
  int32_t *pairs = malloc((size_t)no * sizeof *pairs);
  if (!pairs || ldmc_train_step_state_pairs(g, pairs) != LDMC_OK) {
    fprintf(stderr, "pairs: out of memory, or %s\n", ldmc_last_error());
    return 1;
  }
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = threads, .bf16 = bf16, .donate = donate ? pairs : NULL};
  t0 = now();
  if (ldmc_backend_llvm_cpu.compile(g, &o, &e) != LDMC_OK) {
    fprintf(stderr, "compile: %s\n", ldmc_last_error());
    return 1;
  }
  double compile_s = now() - t0;
  printf("build_s=%.3f compile_s=%.3f gflop=%.4f fwd_gflop=%.4f bwd_gflop=%.4f opt_gflop=%.4f params=%lld "
         "state_mib=%.1f\n", build_s, compile_s, gflop, gf[0], gf[1], gf[2], (long long)ts.trained_params,
         (double)ts.state_bytes / 1048576.0);
  fflush(stdout);
  if (compile_only) {
    ldmc_executable_free(e);
    ldmc_graph_free(g);
    free(pairs);
    return 0;
  }

  ldmc_tensor_set files[2] = {{0}};
  if ((weights && ldmc_safetensors_load(weights, &files[0]) != LDMC_OK) ||
      (inputs && ldmc_safetensors_load(inputs, &files[1]) != LDMC_OK)) {
    fprintf(stderr, "%s\n", ldmc_last_error());
    return 1;
  }
  ldmc_tensor *in = calloc((size_t)np, sizeof *in), *out = calloc((size_t)no, sizeof *out);
  if (!in || !out || make_inputs(g, files, 2, lr, in) != 0) {
    fprintf(stderr, "inputs: out of memory, or %s\n", ldmc_last_error());
    return 1;
  }
  ldmc_tensor_set_free(&files[0]);
  ldmc_tensor_set_free(&files[1]);
  int32_t step_in = -1;
  for (int32_t k = 0; k < np && step_in < 0; k++)
    if (!strcmp(in[k].name, "step")) step_in = k;
  int total = 1 + steps + prof_steps;
  double *ms = malloc((size_t)total * sizeof *ms), *losses = malloc((size_t)total * sizeof *losses);
  phase_acc acc = {.g = e->graph};
  int64_t prof_wall_ns = 0;
  for (int t = 1; t <= total; t++) {
    bool prof = t > 1 + steps;
    if (prof && t == 2 + steps) {
      ldmc_profile_hook h = {.kernel = on_kernel, .ctx = &acc};
      if (ldmc_executable_set_profiler(e, &h) != LDMC_OK) {
        fprintf(stderr, "profiler: %s\n", ldmc_last_error());
        return 1;
      }
    }
    ((float *)in[step_in].data)[0] = (float)t;
    double s0 = now();
    if (ldmc_executable_run(e, in, np, out, no) != LDMC_OK) {
      fprintf(stderr, "step %d: %s\n", t, ldmc_last_error());
      return 1;
    }
    double dt = now() - s0;
    ms[t - 1] = dt * 1e3;
    if (prof) prof_wall_ns += (int64_t)(dt * 1e9);
    losses[t - 1] = ((const float *)out[0].data)[0];
    for (int32_t k = 0; k < no && !donate; k++) { /* donated: in place, loss and grad_norm reused */
      if (pairs[k] >= 0) {
        ldmc_tensor_release(&in[pairs[k]]);
        in[pairs[k]] = out[k];
        memset(&out[k], 0, sizeof out[k]);
      } else {
        ldmc_tensor_release(&out[k]);
      }
    }
  }
  double *timed = malloc((size_t)steps * sizeof *timed);
  memcpy(timed, ms + 1, (size_t)steps * sizeof *timed);
  qsort(timed, (size_t)steps, sizeof *timed, cmp_d);
  double med = timed[steps / 2];
  printf("step_ms median=%.2f min=%.2f first=%.2f images_per_s=%.3f gflops=%.2f loss_first=%.6f loss_last=%.6f\n",
         med, timed[0], ms[0], (double)batch / (med / 1e3), gflop / (med / 1e3), losses[0], losses[total - 1]);
  if (prof_steps > 0) {
    int64_t kern = 0;
    for (int p = 0; p < LDMC_TRAIN_PHASES; p++) kern += acc.ns[p];
    double per = 1e6 * prof_steps; /* ns -> ms per step */
    printf("phase_ms fwd=%.2f bwd=%.2f opt=%.2f gaps=%.2f kernels=%lld phase_gflops fwd=%.2f bwd=%.2f opt=%.2f\n",
           (double)acc.ns[0] / per, (double)acc.ns[1] / per, (double)acc.ns[2] / per,
           (double)(prof_wall_ns - kern) / per, (long long)(acc.calls / prof_steps),
           acc.ns[0] ? (double)acc.flops[0] / (double)acc.ns[0] : 0.0,
           acc.ns[1] ? (double)acc.flops[1] / (double)acc.ns[1] : 0.0,
           acc.ns[2] ? (double)acc.flops[2] / (double)acc.ns[2] : 0.0);
    for (int p = 0; p < LDMC_TRAIN_PHASES; p++) print_names(&acc, p, prof_steps);
    printf("attn_bwd ms=%.2f kernels=%lld gflops=%.2f", (double)acc.attn_ns / per,
           (long long)(acc.attn_calls / prof_steps), acc.attn_ns ? (double)acc.attn_flops / (double)acc.attn_ns : 0.0);
    for (int k = 0; k < acc.n_names; k++)
      if (acc.attn_name_ns[k] > 0)
        printf(" %s=%.2fms@%.1f", acc.names[k], (double)acc.attn_name_ns[k] / per,
               (double)acc.attn_name_flops[k] / (double)acc.attn_name_ns[k]);
    printf("\n");
  }
  printf("losses");
  for (int t = 0; t < total; t++) printf(" %.6f", losses[t]);
  printf("\n");
  for (int32_t k = 0; k < np; k++) ldmc_tensor_release(&in[k]);
  for (int32_t k = 0; k < no; k++) ldmc_tensor_release(&out[k]);
  free(in);
  free(out);
  free(pairs);
  free(ms);
  free(losses);
  free(timed);
  ldmc_executable_free(e);
  ldmc_graph_free(g);
  return 0;
}
