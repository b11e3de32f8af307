/* The U-Net training loss and step (models/unet_train.c) at a tiny config
 * (c=32, latent 8x8x4, context 16x5, batch 2):
 *  1. layout: the four data inputs first, then the inference graph's weights
 *     in its order; one scalar output "loss"; the step graph's state pairing;
 *  2. the loss on interp equals mean((out - target)^2) computed here in double
 *     from an inference run of ldmc_unet_build's graph with the same weights;
 *  3. d loss / d w for random weight elements (drawn until three have a
 *     nonzero finite difference) on interp, the loss graph converted to f64
 *     here, against central finite differences of f64 forward runs (the U-Net
 *     builder is f32 only), to 1e-6 relative;
 *  4. ten AdamW steps (lr 1e-3, one fixed batch) on llvm-cpu: the loss falls
 *     below 0.5x its start (observed 0.28x), the first loss equals the
 *     interpreter's; three donated steps (state updated in place) give the
 *     same losses; the step split into forward / backward / optimizer FLOPs;
 *  5. three steps against torch.optim.AdamW training tests/torch/unet_ref.py
 *     (MSE on epsilon, clip_grad_norm_ active, weight decay) in float64, on
 *     interp in f64: weights, moments to 1e-9 of each tensor's largest value
 *     (observed ~1e-12), losses and norms to 1e-12 (observed ~1e-15); skipped
 *     when /usr/bin/python3 cannot import torch.
 * The config has 8 GroupNorm groups (4 channels each), see tiny(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "frontend/weights_io.h"
#include "interp_test_util.h"
#include "models/unet_train.h"

static ldmc_unet_config tiny(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 8;
  cfg.context_dim = 16;
  cfg.context_tokens = 5;
  cfg.batch = 2;
  /* 4 channels per GroupNorm group: with one (32 groups at c=32) the norm
   * cancels every per-channel bias before it, whose gradients are then
   * rounding noise that Adam's m / sqrt(v) turns into full-size updates */
  cfg.groups = 8;
  return cfg;
}

static const ldmc_node *param_node(const ldmc_graph *g, int32_t k) {
  for (int32_t i = 0, j = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER && j++ == k) return &g->nodes[i];
  return NULL;
}

static int64_t fan_in(const ldmc_shape *s) {
  int64_t f = 1;
  for (int i = 1; i < s->rank; i++) f *= s->dims[i];
  return f;
}

/* One tensor per parameter of g, named like it. Weights as unet_ref.py
 * --emit-weights draws them (uniform, fan-in scaled; norm scales 1 +- 0.5);
 * data: noisy sample in [-2, 2), target and context in [-1.7, 1.7)
 * (variance ~1, as noise), timesteps 321 and 777. */
static ldmc_tensor *make_params(const ldmc_graph *g, uint64_t seed) {
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *in = calloc((size_t)np, sizeof *in);
  uint64_t rs = seed;
  for (int32_t k = 0; k < np; k++) {
    const ldmc_node *p = param_node(g, k);
    const char *nm = p->attrs.name;
    ldmc_tensor_alloc(&in[k], nm, p->dtype, &p->shape);
    int64_t n = th_numel(&p->shape);
    double lo = -1, hi = 1, add = 0;
    size_t len = strlen(nm);
    if (!strcmp(nm, "timestep")) {
      for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(&in[k], i, i % 2 ? 777 : 321);
      continue;
    }
    if (!strcmp(nm, "noisy_sample") || !strcmp(nm, "sample")) lo = -2, hi = 2;
    else if (!strcmp(nm, "target") || !strcmp(nm, "encoder_hidden_states")) lo = -1.7, hi = 1.7;
    else if (p->shape.rank >= 2) lo = -1 / sqrt((double)fan_in(&p->shape)), hi = -lo;
    else if (len > 5 && !strcmp(nm + len - 5, ".bias")) {
      char w[256];
      snprintf(w, sizeof w, "%.*s.weight", (int)(len - 5), nm);
      int32_t wi = ldmc_graph_find_param(g, w);
      double f = wi >= 0 && g->nodes[wi].shape.rank >= 2 ? (double)fan_in(&g->nodes[wi].shape) : 4.0;
      lo = -1 / sqrt(f), hi = -lo;
    } else if (len > 7 && !strcmp(nm + len - 7, ".weight")) lo = -0.5, hi = 0.5, add = 1; /* a norm's scale */
    else lo = -0.5, hi = 0.5;
    for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(&in[k], i, add + th_rand(&rs, lo, hi));
  }
  return in;
}

static void free_params(ldmc_tensor *t, int32_t n) {
  th_release(n, t);
  free(t);
}

static ldmc_executable *compile(const ldmc_backend_i *be, const ldmc_graph *g) {
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 2};
  ldmc_status st = be->compile(g, &o, &e);
  CHECK_MSG(st == LDMC_OK, "%s compile of %s: %s", be->name, g->name, ldmc_last_error());
  return st == LDMC_OK ? e : NULL;
}

static bool run1(const ldmc_backend_i *be, const ldmc_graph *g, const ldmc_tensor *in, ldmc_tensor *out, int n_out) {
  ldmc_executable *e = compile(be, g);
  if (!e) return false;
  memset(out, 0, (size_t)n_out * sizeof *out);
  ldmc_status st = ldmc_executable_run(e, in, ldmc_graph_num_params(g), out, n_out);
  CHECK_MSG(st == LDMC_OK, "%s run of %s: %s", be->name, g->name, ldmc_last_error());
  ldmc_executable_free(e);
  return st == LDMC_OK;
}

/* ---- 1 + 2: layout, and the loss against C ---- */
static void test_loss(void) {
  ldmc_unet_config cfg = tiny();
  ldmc_graph *u = NULL, *g = NULL;
  CHECK_MSG(ldmc_unet_build(&cfg, &u) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_unet_train_build(&cfg, &g) == LDMC_OK, "%s", ldmc_last_error());
  if (!u || !g) goto done;
  int32_t nu = ldmc_graph_num_params(u), ng = ldmc_graph_num_params(g);
  CHECK_MSG(ng == nu + 1, "loss graph: %d parameters, U-Net %d", (int)ng, (int)nu);
  for (int k = 0; k < LDMC_UNET_TRAIN_N_INPUTS; k++)
    CHECK_MSG(!strcmp(param_node(g, k)->attrs.name, ldmc_unet_train_input_names[k]), "parameter %d is %s", k,
              param_node(g, k)->attrs.name);
  CHECK(ldmc_shape_equal(&param_node(g, 3)->shape, &param_node(u, 0)->shape));
  for (int32_t k = LDMC_UNET_N_INPUTS; k < nu && ng == nu + 1; k++)
    if (strcmp(param_node(u, k)->attrs.name, param_node(g, k + 1)->attrs.name) != 0) {
      CHECK_MSG(0, "weight %d: U-Net %s, loss graph %s", (int)k, param_node(u, k)->attrs.name,
                param_node(g, k + 1)->attrs.name);
      break;
    }
  CHECK(g->n_outputs == 1 && !strcmp(g->output_names[0], "loss") && g->nodes[g->outputs[0]].shape.rank == 0);

  ldmc_tensor *pg = make_params(g, 11);
  /* the U-Net's inputs: the same tensors, without target */
  ldmc_tensor *pu = calloc((size_t)nu, sizeof *pu);
  for (int32_t k = 0, j = 0; k < ng; k++)
    if (k != 3) pu[j++] = pg[k]; /* borrowed */
  ldmc_tensor out = {0}, loss = {0};
  if (run1(&ldmc_backend_interp, u, pu, &out, 1) && run1(&ldmc_backend_interp, g, pg, &loss, 1)) {
    int64_t n = th_numel(&out.shape);
    double s = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
      double d = ldmc_tensor_get(&out, i) - ldmc_tensor_get(&pg[3], i);
      s += d * d;
      mx = fmax(mx, fabs(ldmc_tensor_get(&out, i)));
    }
    double want = s / (double)n, got = ldmc_tensor_get(&loss, 0);
    printf("unet_train: loss %.9g, mean((out - target)^2) in C %.9g (max |out| %.3g)\n", got, want, mx);
    CHECK(mx > 0.05); /* the U-Net's output is not trivially 0 */
    CHECK_MSG(fabs(got - want) <= 2e-6 * want, "loss %.9g, expected %.9g", got, want);
  }
  ldmc_tensor_release(&out);
  ldmc_tensor_release(&loss);
  free(pu);
  free_params(pg, ng);
done:
  ldmc_graph_free(u);
  ldmc_graph_free(g);
}

/* ---- 3: gradients against finite differences, in f64 ---- */
/* g with every f32 value made f64 (constants converted), else unchanged.
 * The time embedding's frequencies (the f32 vector constant in scope
 * time_proj) are recomputed in double, as models/unet.c computes them before
 * rounding and unet_ref.py does in float64. */
static ldmc_graph *to_f64(const ldmc_graph *g) {
  ldmc_graph *d = ldmc_graph_new(g->name);
  for (int32_t i = 0; d && i < g->n_nodes; i++) {
    const ldmc_node *n = &g->nodes[i];
    ldmc_attrs at = n->attrs;
    double *buf = NULL;
    ldmc_dtype dt = n->dtype == LDMC_F32 ? LDMC_F64 : n->dtype;
    if (n->op == LDMC_OP_CONSTANT && n->dtype == LDMC_F32) {
      size_t e = n->attrs.value.nbytes / 4;
      bool freqs = n->shape.rank == 1 && n->scope && !strcmp(n->scope, "time_proj");
      buf = malloc((e ? e : 1) * sizeof *buf);
      for (size_t j = 0; j < e; j++)
        buf[j] = freqs ? exp(-log(10000.0) * (double)j / (double)e) : ((const float *)n->attrs.value.data)[j];
      at.value.data = buf;
      at.value.nbytes = e * sizeof *buf;
    }
    int32_t id = ldmc_graph_add(d, n->op, dt, &n->shape, n->n_operands, n->operands, &at, n->scope);
    free(buf);
    CHECK_MSG(id == i, "f64 copy of %%%d: %s", (int)i, ldmc_last_error());
  }
  for (int32_t i = 0; d && i < g->n_outputs; i++) ldmc_graph_add_output(d, g->outputs[i], g->output_names[i]);
  CHECK_MSG(d && ldmc_graph_verify(d) == LDMC_OK, "f64 copy: %s", ldmc_last_error());
  return d;
}

static double run_loss(ldmc_executable *e, const ldmc_tensor *in, int32_t n) {
  ldmc_tensor out = {0};
  if (ldmc_executable_run(e, in, n, &out, 1) != LDMC_OK) return NAN;
  double v = ldmc_tensor_get(&out, 0);
  ldmc_tensor_release(&out);
  return v;
}

static void regex_quote(char *dst, size_t len, const char *s) {
  size_t k = 0;
  for (; *s && k + 3 < len; s++) {
    if (strchr(".[]()*+?{}|^$\\", *s)) dst[k++] = '\\';
    dst[k++] = *s;
  }
  dst[k] = 0;
}

/* Draws weight elements until n have a nonzero finite difference (an
 * element can have none: a 3x3 tap off the centre of a 1x1 map); each drawn
 * element's gradient (from a gradient graph of that one tensor) must match. */
static void test_grad_fd(void) {
  ldmc_unet_config cfg = tiny();
  ldmc_graph *g32 = NULL, *g = NULL;
  ldmc_executable *ef = NULL;
  CHECK_MSG(ldmc_unet_train_build(&cfg, &g32) == LDMC_OK, "%s", ldmc_last_error());
  if (!g32 || !(g = to_f64(g32))) goto done;
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *in = make_params(g, 5);
  ef = compile(&ldmc_backend_interp, g);
  uint64_t rs = 2024;
  int nonzero = 0;
  for (int tries = 0; ef && nonzero < 3 && tries < 12; tries++) {
    int32_t k = LDMC_UNET_TRAIN_N_INPUTS + (int32_t)th_rand(&rs, 0, np - LDMC_UNET_TRAIN_N_INPUTS);
    ldmc_tensor *t = &in[k];
    int64_t e = (int64_t)th_rand(&rs, 0, (double)th_numel(&t->shape));
    char re[300] = "^", q[290];
    regex_quote(q, sizeof q, t->name);
    strncat(re, q, sizeof re - 3);
    strcat(re, "$");
    ldmc_grad_opts go = {.output = "loss", .seed = LDMC_GRAD_SCALAR, .wrt_regex = re};
    ldmc_graph *gg = NULL;
    ldmc_tensor outs[2] = {{0}};
    CHECK_MSG(ldmc_grad(g, &go, &gg) == LDMC_OK && gg->n_outputs == 2, "grad of %s: %s", t->name, ldmc_last_error());
    if (gg && gg->n_outputs == 2 && run1(&ldmc_backend_interp, gg, in, outs, 2)) {
      double l0 = run_loss(ef, in, np);
      CHECK_MSG(ldmc_tensor_get(&outs[0], 0) == l0, "gradient graph's loss %.17g, forward %.17g",
                ldmc_tensor_get(&outs[0], 0), l0);
      double gv = ldmc_tensor_get(&outs[1], e);
      double x = ldmc_tensor_get(t, e), h = 1e-5 * fmax(1.0, fabs(x));
      ldmc_tensor_set_elem(t, e, x + h);
      double lp = run_loss(ef, in, np);
      ldmc_tensor_set_elem(t, e, x - h);
      double lm = run_loss(ef, in, np);
      ldmc_tensor_set_elem(t, e, x);
      double fd = (lp - lm) / (2 * h);
      printf("unet_train: d loss / d %s[%lld] = %.10g, finite difference %.10g\n", t->name, (long long)e, gv, fd);
      /* f64: the difference quotient is good to ~1e-11 absolute here (h = 1e-5, loss ~1) */
      CHECK_MSG(fabs(gv - fd) <= 1e-6 * fabs(fd) + 1e-10, "%s[%lld]: gradient %.12g, finite difference %.12g",
                t->name, (long long)e, gv, fd);
      nonzero += fabs(fd) > 1e-8;
    }
    th_release(2, outs);
    ldmc_graph_free(gg);
  }
  CHECK_MSG(nonzero == 3, "only %d of the drawn weight elements have a nonzero gradient", nonzero);
  free_params(in, np);
done:
  ldmc_executable_free(ef);
  ldmc_graph_free(g32);
  ldmc_graph_free(g);
}

/* ---- 4: training on llvm-cpu ---- */
/* Feeds each paired output back as its input (docs/training.md). */
static void feed_back(const int32_t *pairs, ldmc_tensor *ins, ldmc_tensor *outs, int32_t n_out) {
  for (int32_t k = 0; k < n_out; k++) {
    if (pairs[k] < 0) continue;
    ldmc_tensor_release(&ins[pairs[k]]);
    ins[pairs[k]] = outs[k]; /* named like the parameter it replaces */
    memset(&outs[k], 0, sizeof outs[k]);
  }
}

/* The step's inputs: data and weights from make_params of the loss graph,
 * moments 0, lr, step 1. */
static ldmc_tensor *step_inputs(const ldmc_graph *step, const ldmc_graph *loss, uint64_t seed, double lr) {
  ldmc_tensor *vals = make_params(loss, seed);
  int32_t nl = ldmc_graph_num_params(loss), ns = ldmc_graph_num_params(step);
  ldmc_tensor *in = calloc((size_t)ns, sizeof *in);
  for (int32_t k = 0; k < ns; k++) {
    const ldmc_node *p = param_node(step, k);
    ldmc_tensor_alloc(&in[k], p->attrs.name, p->dtype, &p->shape);
    const char *nm = p->attrs.name;
    if (!strcmp(nm, "lr")) ldmc_tensor_set_elem(&in[k], 0, lr);
    else if (!strcmp(nm, "step")) ldmc_tensor_set_elem(&in[k], 0, 1);
    else if (!strncmp(nm, "ema.", 4)) nm += 4;
    for (int32_t j = 0; j < nl; j++)
      if (!strcmp(vals[j].name, nm) && vals[j].nbytes == in[k].nbytes) memcpy(in[k].data, vals[j].data, vals[j].nbytes);
  }
  free_params(vals, nl);
  return in;
}

static void test_train_llvm(void) {
  ldmc_unet_config cfg = tiny();
  ldmc_graph *loss = NULL, *step = NULL;
  CHECK_MSG(ldmc_unet_train_build(&cfg, &loss) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_unet_train_step_build(&cfg, NULL, &step) == LDMC_OK, "%s", ldmc_last_error());
  if (!loss || !step) goto done;
  CHECK(!strcmp(step->name, "unet.train_step"));
  int32_t ns = ldmc_graph_num_params(step), no = step->n_outputs;
  int32_t *pairs = malloc((size_t)no * sizeof *pairs);
  CHECK(ldmc_train_step_state_pairs(step, pairs) == LDMC_OK);
  int32_t paired = 0;
  for (int32_t k = 0; k < no; k++) paired += pairs[k] >= 0;
  int32_t nw = ldmc_graph_num_params(loss) - LDMC_UNET_TRAIN_N_INPUTS;
  CHECK_MSG(paired == 3 * nw, "%d paired outputs for %d weights", (int)paired, (int)nw);
  CHECK_MSG(ns == LDMC_UNET_TRAIN_N_INPUTS + 2 + 3 * nw, "%d step parameters", (int)ns);

  ldmc_train_step_stats ts;
  CHECK_MSG(ldmc_train_step_stats_compute(step, &ts) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_flops fl = ldmc_graph_flops(loss);
  CHECK_MSG(ts.flops[LDMC_TRAIN_FORWARD].mac == fl.mac && ts.flops[LDMC_TRAIN_FORWARD].other == fl.other,
            "forward FLOPs of the step %lld + %lld, of the loss graph %lld + %lld",
            (long long)ts.flops[LDMC_TRAIN_FORWARD].mac, (long long)ts.flops[LDMC_TRAIN_FORWARD].other,
            (long long)fl.mac, (long long)fl.other);
  CHECK(ts.flops[LDMC_TRAIN_OPTIMIZER].mac == 0 && ts.flops[LDMC_TRAIN_OPTIMIZER].other > 0);
  CHECK(ts.trained_tensors == nw && !ts.ema && ts.state_bytes == 3 * ts.param_bytes &&
        ts.param_bytes == 4 * ts.trained_params);
  printf("unet_train: step FLOPs forward %lld, backward %lld (%.2fx), optimizer %lld other\n",
         (long long)ts.flops[0].mac, (long long)ts.flops[1].mac, (double)ts.flops[1].mac / (double)ts.flops[0].mac,
         (long long)ts.flops[2].other);

  ldmc_tensor *in = step_inputs(step, loss, 11, 1e-3);
  ldmc_tensor *outs = calloc((size_t)no, sizeof *outs);
  ldmc_tensor ref = {0};
  ldmc_tensor *lin = make_params(loss, 11);
  bool have_ref = run1(&ldmc_backend_interp, loss, lin, &ref, 1);
  free_params(lin, ldmc_graph_num_params(loss));
  ldmc_executable *e = compile(&ldmc_backend_llvm_cpu, step);
  double losses[11];
  int done_steps = 0;
  for (int t = 1; e && t <= 11; t++) {
    ldmc_tensor_set_elem(&in[LDMC_UNET_TRAIN_N_INPUTS + 1], 0, t); /* step */
    ldmc_status st = ldmc_executable_run(e, in, ns, outs, no);
    CHECK_MSG(st == LDMC_OK, "step %d: %s", t, ldmc_last_error());
    if (st != LDMC_OK) break;
    losses[t - 1] = ldmc_tensor_get(&outs[0], 0);
    done_steps = t;
    feed_back(pairs, in, outs, no);
    th_release(no, outs);
  }
  if (done_steps == 11) {
    printf("unet_train: llvm-cpu losses");
    for (int t = 0; t < 11; t++) printf(" %.4f", losses[t]);
    printf(" (after 10 steps: %.3fx)\n", losses[10] / losses[0]);
    for (int t = 0; t < 11; t++) CHECK(isfinite(losses[t]));
    if (have_ref)
      CHECK_MSG(fabs(losses[0] - ldmc_tensor_get(&ref, 0)) <= 1e-4 * ldmc_tensor_get(&ref, 0),
                "first llvm-cpu loss %.9g, interp %.9g", losses[0], ldmc_tensor_get(&ref, 0));
    CHECK_MSG(losses[10] < 0.5 * losses[0], "loss %.5g -> %.5g in 10 steps", losses[0], losses[10]);
  }
  /* the same three first steps with the state donated: updated in place, same losses */
  ldmc_executable *ed = NULL;
  ldmc_compile_opts od = {.threads = 2, .donate = pairs};
  CHECK_MSG(ldmc_backend_llvm_cpu.compile(step, &od, &ed) == LDMC_OK, "donated compile: %s", ldmc_last_error());
  ldmc_tensor *din = step_inputs(step, loss, 11, 1e-3);
  for (int t = 1; ed && done_steps == 11 && t <= 3; t++) {
    ldmc_tensor_set_elem(&din[LDMC_UNET_TRAIN_N_INPUTS + 1], 0, t);
    void *w0 = din[LDMC_UNET_TRAIN_N_INPUTS + 2].data;
    ldmc_status st = ldmc_executable_run(ed, din, ns, outs, no);
    CHECK_MSG(st == LDMC_OK, "donated step %d: %s", t, ldmc_last_error());
    if (st != LDMC_OK) break;
    CHECK_MSG(ldmc_tensor_get(&outs[0], 0) == losses[t - 1], "donated step %d: loss %.9g, swapped-in state %.9g", t,
              ldmc_tensor_get(&outs[0], 0), losses[t - 1]);
    CHECK(din[LDMC_UNET_TRAIN_N_INPUTS + 2].data == w0 && !outs[2].data); /* in place: no new state tensor */
  }
  th_release(no, outs);
  free_params(din, ns);
  ldmc_executable_free(ed);
  ldmc_tensor_release(&ref);
  ldmc_executable_free(e);
  free(outs);
  free_params(in, ns);
  free(pairs);
done:
  ldmc_graph_free(loss);
  ldmc_graph_free(step);
}

/* ---- 5: torch.optim.AdamW on tests/torch/unet_ref.py, float64 ---- */
static ldmc_status set_add_copy(ldmc_tensor_set *set, const ldmc_tensor *t) {
  ldmc_tensor c;
  LDMC_TRY(ldmc_tensor_alloc(&c, t->name, t->dtype, &t->shape));
  memcpy(c.data, t->data, t->nbytes);
  return ldmc_tensor_set_add(set, &c);
}

/* max |a - b| over max |b|: per tensor, so elements with near-zero values
 * (Adam's m / sqrt(v) of a tiny gradient) do not dominate */
static double tensor_rel(const ldmc_tensor *a, const ldmc_tensor *b) {
  double d = 0, m = 0;
  for (int64_t i = 0; i < th_numel(&b->shape); i++) {
    d = fmax(d, fabs(ldmc_tensor_get(a, i) - ldmc_tensor_get(b, i)));
    m = fmax(m, fabs(ldmc_tensor_get(b, i)));
  }
  return m > 0 ? d / m : d;
}

static void test_torch(void) {
  if (system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    printf("SKIP torch comparison: /usr/bin/python3 cannot import torch and numpy\n");
    return;
  }
  enum { K = 3 };
  const double lr = 0x1p-10, wd = 0.01, clip = 0.05; /* lr is an f32 input: exact there */
  char dir[] = "/tmp/ldmc_unet_train_XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(!"mkdtemp");
    return;
  }
  ldmc_unet_config cfg = tiny();
  ldmc_graph *l32 = NULL, *loss = NULL, *step = NULL;
  CHECK_MSG(ldmc_unet_train_build(&cfg, &l32) == LDMC_OK, "%s", ldmc_last_error());
  if (l32) loss = to_f64(l32);
  ldmc_train_opts o = {.loss = "loss", .n_data_params = LDMC_UNET_TRAIN_N_INPUTS, .weight_decay = wd,
                       .clip_norm = clip};
  if (loss) CHECK_MSG(ldmc_train_step_build(loss, &o, &step) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_tensor_set w = {0}, data = {0}, ref = {0};
  char wpath[96], ipath[96], opath[96], cmd[2048];
  snprintf(wpath, sizeof wpath, "%s/w.safetensors", dir);
  snprintf(ipath, sizeof ipath, "%s/in.safetensors", dir);
  snprintf(opath, sizeof opath, "%s/ref.safetensors", dir);
  int rc = 1;
  ldmc_tensor *in = NULL, *outs = NULL;
  int32_t *pairs = NULL;
  if (!step) goto done;
  int32_t nl = ldmc_graph_num_params(loss), ns = ldmc_graph_num_params(step), no = step->n_outputs;
  ldmc_tensor *vals = make_params(loss, 11);
  for (int32_t k = 0; k < nl; k++) set_add_copy(k < LDMC_UNET_TRAIN_N_INPUTS ? &data : &w, &vals[k]);
  free_params(vals, nl);
  CHECK_MSG(ldmc_safetensors_save(wpath, &w, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  CHECK_MSG(ldmc_safetensors_save(ipath, &data, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 %s/tests/torch/unet_ref.py "
           "--config '{\"channels\": %d, \"context_dim\": %d, \"groups\": %d}' "
           "--weights %s --inputs %s --train-steps %d --lr %.17g --weight-decay %.17g --clip %.17g --out %s "
           "--dtype float64",
           getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..", cfg.channels, cfg.context_dim, cfg.groups, wpath, ipath, K,
           lr, wd, clip, opath);
  rc = system(cmd);
  CHECK_MSG(rc == 0, "torch reference failed: %s", cmd);
  if (rc == 0) CHECK_MSG(ldmc_safetensors_load(opath, &ref) == LDMC_OK, "%s", ldmc_last_error());
  in = step_inputs(step, loss, 11, lr);
  outs = calloc((size_t)no, sizeof *outs);
  pairs = malloc((size_t)no * sizeof *pairs);
  ldmc_executable *e = rc == 0 ? compile(&ldmc_backend_interp, step) : NULL;
  double losses[K], norms[K];
  bool ok = e && ldmc_train_step_state_pairs(step, pairs) == LDMC_OK;
  for (int t = 1; ok && t <= K; t++) {
    ldmc_tensor_set_elem(&in[LDMC_UNET_TRAIN_N_INPUTS + 1], 0, t);
    ok = ldmc_executable_run(e, in, ns, outs, no) == LDMC_OK;
    CHECK_MSG(ok, "step %d: %s", t, ldmc_last_error());
    if (!ok) break;
    losses[t - 1] = ldmc_tensor_get(&outs[0], 0);
    norms[t - 1] = ldmc_tensor_get(&outs[1], 0);
    feed_back(pairs, in, outs, no);
    th_release(no, outs);
  }
  ldmc_executable_free(e);
  if (ok) {
    double worst = 0;
    const char *worst_name = "";
    int compared = 0;
    for (int32_t k = 0; k < ns; k++) {
      const ldmc_tensor *t = ldmc_tensor_set_find(&ref, in[k].name);
      if (k < LDMC_UNET_TRAIN_N_INPUTS + 2) continue; /* data, lr, step */
      CHECK_MSG(t && ldmc_shape_equal(&t->shape, &in[k].shape), "torch gives no %s of its shape", in[k].name);
      if (!t) continue;
      double r = tensor_rel(&in[k], t);
      if (r > worst || isnan(r)) worst = r, worst_name = in[k].name;
      compared++;
    }
    const ldmc_tensor *tl = ldmc_tensor_set_find(&ref, "loss"), *tn = ldmc_tensor_set_find(&ref, "grad_norm");
    CHECK(tl && tn && th_numel(&tl->shape) == K && th_numel(&tn->shape) == K);
    double wl = 0;
    for (int k = 0; tl && tn && k < K; k++) {
      wl = fmax(wl, fabs(losses[k] - ldmc_tensor_get(tl, k)) / ldmc_tensor_get(tl, k));
      wl = fmax(wl, fabs(norms[k] - ldmc_tensor_get(tn, k)) / ldmc_tensor_get(tn, k));
    }
    printf("unet_train: torch.optim.AdamW (clip_grad_norm_ %.3g, weight decay %.3g) vs ldmc f64 on interp, %d "
           "steps: %d state tensors within %.3g (worst %s), losses and norms within %.3g; loss %.6f -> %.6f, "
           "grad_norm %.4f\n", clip, wd, K, compared, worst, worst_name, wl, losses[0], losses[K - 1], norms[0]);
    CHECK_MSG(compared == ns - LDMC_UNET_TRAIN_N_INPUTS - 2, "compared %d state tensors", compared);
    CHECK_MSG(worst < 1e-9, "state %s differs from torch by %.3g", worst_name, worst);
    CHECK_MSG(wl < 1e-12, "losses or norms differ from torch by %.3g", wl);
    CHECK(norms[0] > clip); /* clipping was active */
  }
done:
  if (in) free_params(in, ldmc_graph_num_params(step));
  free(outs);
  free(pairs);
  ldmc_tensor_set_free(&w);
  ldmc_tensor_set_free(&data);
  ldmc_tensor_set_free(&ref);
  ldmc_graph_free(l32);
  ldmc_graph_free(loss);
  ldmc_graph_free(step);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* ---- errors ---- */
static void test_errors(void) {
  ldmc_unet_config cfg = tiny();
  ldmc_graph *g = NULL;
  ldmc_train_opts o = {.n_data_params = 3};
  CHECK(ldmc_unet_train_step_build(&cfg, &o, &g) == LDMC_ERR_INVALID && !g &&
        strstr(ldmc_last_error(), "n_data_params = 3, but the loss graph has 4 data inputs"));
  o = (ldmc_train_opts){.loss = "mse"};
  CHECK(ldmc_unet_train_step_build(&cfg, &o, &g) == LDMC_ERR_INVALID && !g && strstr(ldmc_last_error(), "'mse'"));
  cfg.channels = 33; /* odd: not a multiple of the groups */
  CHECK(ldmc_unet_train_build(&cfg, &g) == LDMC_ERR_INVALID && !g && strstr(ldmc_last_error(), "channels"));
  cfg = tiny();
  o = (ldmc_train_opts){0};
  CHECK(ldmc_unet_train_opts_from_args("0.999", "2.5", &o) == LDMC_OK && o.ema_decay == 0.999 && o.clip_norm == 2.5);
  const char *bad[][2] = {{"1", NULL}, {"0", NULL}, {"x", NULL}, {"0.9x", NULL}, {NULL, "0"}, {NULL, "-1"},
                          {NULL, "inf"}, {NULL, "nan"}};
  for (int i = 0; i < NELEM(bad); i++)
    CHECK_MSG(ldmc_unet_train_opts_from_args(bad[i][0], bad[i][1], &o) == LDMC_ERR_INVALID &&
                  strstr(ldmc_last_error(), bad[i][0] ? "'--ema'" : "'--clip'"),
              "--ema %s --clip %s: %s", bad[i][0] ? bad[i][0] : "-", bad[i][1] ? bad[i][1] : "-", ldmc_last_error());
  /* the split needs a step graph */
  ldmc_train_step_stats ts;
  if (ldmc_unet_build(&cfg, &g) == LDMC_OK)
    CHECK(ldmc_train_step_stats_compute(g, &ts) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "not a training step"));
  ldmc_graph_free(g);
  CHECK(ldmc_train_phase_of_scope(NULL) == LDMC_TRAIN_FORWARD &&
        ldmc_train_phase_of_scope("gradient.x") == LDMC_TRAIN_FORWARD &&
        ldmc_train_phase_of_scope("grad") == LDMC_TRAIN_BACKWARD &&
        ldmc_train_phase_of_scope("grad.down_blocks.0") == LDMC_TRAIN_BACKWARD &&
        ldmc_train_phase_of_scope("optim.adamw") == LDMC_TRAIN_OPTIMIZER);
}

int main(void) {
  test_errors();
  test_loss();
  test_grad_fd();
  test_train_llvm();
  test_torch();
  return test_summary("unet_train");
}
