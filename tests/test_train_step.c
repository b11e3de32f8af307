/* The training step graph (ldmc_train_step_build, frontend/train_step.c):
 *  1. one AdamW step of a tiny linear model against the step written out in
 *     C double here (weight decay, clipping active and not, EMA, betas, a
 *     negative lr), f64 on interp to 1e-12 and f32 to f32 rounding; the
 *     layout (parameter and output names, dtypes) and the state pairing;
 *  2. five steps of an MLP on llvm-cpu at every ISA level the host has equal
 *     five steps on the interpreter (state fed back through the pairing);
 *  3. the MLP's loss falls below 0.2 x its start within 50 steps on llvm-cpu;
 *  4. master_f32: a bf16 MLP trains with f32 masters and state, its model
 *     nodes in bf16, tracking the f32 run; without masters a small lr rounds
 *     every update away;
 *  5. errors: bad loss, nothing to train, bad options, name clashes, pairing;
 *  6. three steps of torch.optim.AdamW with clip_grad_norm_ and weight decay
 *     (tests/torch/train_step_ref.py, float64) equal three steps on interp in
 *     f64 to 1e-9; skipped when /usr/bin/python3 cannot import torch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "frontend/weights_io.h"
#include "interp_test_util.h"

/* ---- the tiny linear model: loss = mean((s (x W + b) - y)^2), s frozen ---- */
enum { LN = 6, LD = 3, LO = 2 };

static ldmc_graph *build_linear(ldmc_dtype dt, const char *frozen_name) {
  ldmc_builder *b = ldmc_builder_new("linear");
  ldmc_value x = ldmc_parameter(b, "x", dt, 2, DIMS(LN, LD)), y = ldmc_parameter(b, "y", dt, 2, DIMS(LN, LO));
  ldmc_value w = ldmc_parameter(b, "W", dt, 2, DIMS(LD, LO));
  ldmc_value s = ldmc_parameter(b, frozen_name, dt, 0, NULL); /* between W and b: order is kept */
  ldmc_value bias = ldmc_parameter(b, "b", dt, 1, DIMS(LO));
  ldmc_value pred = ldmc_mul(b, ldmc_add(b, ldmc_matmul(b, x, w), bias), s);
  ldmc_value r = ldmc_sub(b, pred, y);
  ldmc_value loss = ldmc_scale(b, ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, r, r), 2, DIMS(0, 1), false), 1.0 / (LN * LO));
  ldmc_builder_output(b, pred, "pred");
  ldmc_builder_output(b, loss, "mse");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g, "%s", ldmc_last_error());
  return g;
}

typedef struct lin {
  double x[LN * LD], y[LN * LO], s, W[LD * LO], b[LO];
  double mW[LD * LO], vW[LD * LO], eW[LD * LO], mb[LO], vb[LO], eb[LO];
} lin;

typedef struct hp {
  double beta1, beta2, eps, wd, clip, ema; /* as given to the builder (0, 0, 0: defaults) */
} hp;

static double lin_loss_grad(const lin *L, double *dW, double *db) {
  double loss = 0, c = 2.0 / (LN * LO);
  memset(dW, 0, sizeof(double) * LD * LO);
  memset(db, 0, sizeof(double) * LO);
  for (int n = 0; n < LN; n++)
    for (int o = 0; o < LO; o++) {
      double z = L->b[o];
      for (int d = 0; d < LD; d++) z += L->x[n * LD + d] * L->W[d * LO + o];
      double r = L->s * z - L->y[n * LO + o];
      loss += r * r;
      for (int d = 0; d < LD; d++) dW[d * LO + o] += c * r * L->s * L->x[n * LD + d];
      db[o] += c * r * L->s;
    }
  return loss / (LN * LO);
}

static void adamw_ref(double *p, double *m, double *v, double *e, const double *g, int n, const hp *h, double lr, int t,
                      double scale) {
  double b1 = h->beta1, b2 = h->beta2, eps = h->eps;
  if (b1 == 0 && b2 == 0 && eps == 0) b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int i = 0; i < n; i++) {
    double gi = g[i] * scale;
    p[i] *= 1 - lr * h->wd;
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
    p[i] -= lr * mh / (sqrt(vh) + eps);
    if (h->ema > 0) e[i] = h->ema * e[i] + (1 - h->ema) * p[i];
  }
}

static void lin_step_ref(lin *L, const hp *h, double lr, int t, double *loss, double *norm) {
  double dW[LD * LO], db[LO], ss = 0;
  *loss = lin_loss_grad(L, dW, db);
  for (int i = 0; i < LD * LO; i++) ss += dW[i] * dW[i];
  for (int i = 0; i < LO; i++) ss += db[i] * db[i];
  *norm = sqrt(ss);
  double scale = h->clip > 0 ? fmin(1.0, h->clip / (*norm + 1e-6)) : 1.0;
  adamw_ref(L->W, L->mW, L->vW, L->eW, dW, LD * LO, h, lr, t, scale);
  adamw_ref(L->b, L->mb, L->vb, L->eb, db, LO, h, lr, t, scale);
}

/* ---- running step graphs ---- */
static void put(ldmc_tensor_set *set, const char *name, ldmc_dtype dt, ldmc_shape s, const double *v) {
  ldmc_tensor t;
  if (ldmc_tensor_alloc(&t, name, dt, &s) != LDMC_OK || ldmc_tensor_set_add(set, &t) != LDMC_OK) {
    fprintf(stderr, "put %s: %s\n", name, ldmc_last_error());
    exit(2);
  }
  ldmc_tensor *u = ldmc_tensor_set_find(set, name);
  for (int64_t i = 0; v && i < th_numel(&s); i++) ldmc_tensor_set_elem(u, i, v[i]);
}

static void copy_conv(ldmc_tensor *dst, const ldmc_tensor *src) {
  for (int64_t i = 0; i < th_numel(&dst->shape); i++) ldmc_tensor_set_elem(dst, i, ldmc_tensor_get(src, i));
}

/* One input per parameter of step, in order: the tensor of that name in vals
 * (converted to the parameter's dtype), else the first step's state as
 * docs/training.md gives it (moments 0, ema.P = P, step 1). */
static ldmc_tensor *make_inputs(const ldmc_graph *step, const ldmc_tensor_set *vals) {
  int32_t np = ldmc_graph_num_params(step);
  ldmc_tensor *ins = calloc((size_t)np, sizeof *ins);
  for (int32_t i = 0, j = 0; i < step->n_nodes; i++) {
    const ldmc_node *p = &step->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor *t = &ins[j++];
    ldmc_tensor_alloc(t, p->attrs.name, p->dtype, &p->shape);
    const ldmc_tensor *v = ldmc_tensor_set_find(vals, p->attrs.name);
    if (!v && strncmp(p->attrs.name, "ema.", 4) == 0) v = ldmc_tensor_set_find(vals, p->attrs.name + 4);
    if (v) copy_conv(t, v);
    else if (strcmp(p->attrs.name, "step") == 0) ldmc_tensor_set_elem(t, 0, 1);
    else
      CHECK_MSG(!strncmp(p->attrs.name, "adam_", 5) || !strcmp(p->attrs.name, "lr"), "no value for %s", p->attrs.name);
  }
  return ins;
}

static void set_scalar(const ldmc_graph *step, ldmc_tensor *ins, const char *name, double v) {
  for (int32_t i = 0, j = 0; i < step->n_nodes; i++)
    if (step->nodes[i].op == LDMC_OP_PARAMETER) {
      if (strcmp(step->nodes[i].attrs.name, name) == 0) ldmc_tensor_set_elem(&ins[j], 0, v);
      j++;
    }
}

/* n_weights > 0: the last n_weights parameters are compiled as weights */
static ldmc_executable *compile_w(const ldmc_backend_i *be, const ldmc_graph *g, int32_t n_weights) {
  ldmc_executable *e = NULL;
  ldmc_compile_opts o = {.threads = 2, .params_are_weights = n_weights > 0,
                         .n_activation_params = ldmc_graph_num_params(g) - n_weights};
  ldmc_status st = be->compile(g, &o, &e);
  CHECK_MSG(st == LDMC_OK, "%s compile: %s", be->name, ldmc_last_error());
  return st == LDMC_OK ? e : NULL;
}
static ldmc_executable *compile_on(const ldmc_backend_i *be, const ldmc_graph *g) { return compile_w(be, g, 0); }

/* Runs steps t0 .. t0+K-1, feeding each state output back into the input it
 * pairs with; loss[k] and norm[k] (may be NULL) get each step's values. */
static bool train(ldmc_executable *e, const ldmc_graph *step, ldmc_tensor *ins, int t0, int K, double lr, double *loss,
                  double *norm) {
  int32_t nout = step->n_outputs, pairs[256];
  if (nout > 256 || ldmc_train_step_state_pairs(step, pairs) != LDMC_OK) return false;
  ldmc_tensor outs[256];
  set_scalar(step, ins, "lr", lr);
  for (int k = 0; k < K; k++) {
    set_scalar(step, ins, "step", t0 + k);
    memset(outs, 0, sizeof outs);
    ldmc_status st = ldmc_executable_run(e, ins, ldmc_graph_num_params(step), outs, nout);
    CHECK_MSG(st == LDMC_OK, "run: %s", ldmc_last_error());
    if (st != LDMC_OK) return false;
    if (loss) loss[k] = ldmc_tensor_get(&outs[0], 0);
    if (norm) norm[k] = ldmc_tensor_get(&outs[1], 0);
    for (int32_t o = 0; o < nout; o++) {
      if (pairs[o] < 0) continue;
      ldmc_tensor tmp = ins[pairs[o]];
      ins[pairs[o]] = outs[o];
      outs[o] = tmp;
    }
    th_release(nout, outs);
  }
  return true;
}

static const ldmc_tensor *input_named(const ldmc_graph *step, const ldmc_tensor *ins, const char *name) {
  for (int32_t i = 0, j = 0; i < step->n_nodes; i++)
    if (step->nodes[i].op == LDMC_OP_PARAMETER) {
      if (strcmp(step->nodes[i].attrs.name, name) == 0) return &ins[j];
      j++;
    }
  return NULL;
}

/* max |a - b| / max |b| (max |b| floored at 1e-3) */
static double rel_diff(const ldmc_tensor *a, const ldmc_tensor *b) {
  double d = 0, m = 1e-3;
  for (int64_t i = 0; i < th_numel(&b->shape); i++) {
    double x = ldmc_tensor_get(a, i), y = ldmc_tensor_get(b, i);
    if (!(fabs(x - y) <= d)) d = fabs(x - y);
    m = fmax(m, fabs(y));
  }
  return d / m;
}

/* ---- 1. one step of the linear model against lin_step_ref ---- */
static void lin_random(lin *L, uint64_t seed) {
  uint64_t r = seed;
  for (int i = 0; i < LN * LD; i++) L->x[i] = th_rand(&r, -1, 1);
  for (int i = 0; i < LN * LO; i++) L->y[i] = th_rand(&r, -1, 1);
  L->s = 0.8;
  for (int i = 0; i < LD * LO; i++)
    L->W[i] = th_rand(&r, -1, 1), L->mW[i] = th_rand(&r, -0.1, 0.1), L->vW[i] = th_rand(&r, 1e-3, 2e-2),
    L->eW[i] = th_rand(&r, -1, 1);
  for (int i = 0; i < LO; i++)
    L->b[i] = th_rand(&r, -1, 1), L->mb[i] = th_rand(&r, -0.1, 0.1), L->vb[i] = th_rand(&r, 1e-3, 2e-2),
    L->eb[i] = th_rand(&r, -1, 1);
}

static void lin_put(ldmc_tensor_set *set, const lin *L, ldmc_dtype dt, bool ema) {
  put(set, "x", dt, SHAPE(LN, LD), L->x);
  put(set, "y", dt, SHAPE(LN, LO), L->y);
  put(set, "scale", dt, SHAPE0, &L->s);
  put(set, "W", dt, SHAPE(LD, LO), L->W);
  put(set, "adam_m.W", dt, SHAPE(LD, LO), L->mW);
  put(set, "adam_v.W", dt, SHAPE(LD, LO), L->vW);
  put(set, "b", dt, SHAPE(LO), L->b);
  put(set, "adam_m.b", dt, SHAPE(LO), L->mb);
  put(set, "adam_v.b", dt, SHAPE(LO), L->vb);
  if (ema) put(set, "ema.W", dt, SHAPE(LD, LO), L->eW), put(set, "ema.b", dt, SHAPE(LO), L->eb);
}

static ldmc_graph *lin_step_graph(ldmc_dtype dt, const hp *h) {
  ldmc_graph *m = build_linear(dt, "scale");
  ldmc_train_opts o = {.loss = "mse", .n_data_params = 2, .wrt_regex = "^(W|b)$", .beta1 = h->beta1,
                       .beta2 = h->beta2, .eps = h->eps, .weight_decay = h->wd, .clip_norm = h->clip, .ema_decay = h->ema};
  ldmc_graph *g = NULL;
  CHECK_MSG(m && ldmc_train_step_build(m, &o, &g) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_graph_free(m);
  return g;
}

/* Parameter and output names in order (the frozen scale last), dtypes, and
 * the pairing, also after a round trip through the text form. */
static void check_layout(const ldmc_graph *g, ldmc_dtype dt, bool ema) {
  const char *pn[] = {"x",     "y", "lr",       "step",     "W",     "adam_m.W", "adam_v.W",
                      "ema.W", "b", "adam_m.b", "adam_v.b", "ema.b", "scale"};
  const char *on[] = {"loss", "grad_norm", "W", "adam_m.W", "adam_v.W", "ema.W", "b", "adam_m.b", "adam_v.b", "ema.b"};
  const char *want_p[16], *want_o[16];
  int np = 0, no = 0;
  for (int i = 0; i < NELEM(pn); i++)
    if (ema || strncmp(pn[i], "ema.", 4)) want_p[np++] = pn[i];
  for (int i = 0; i < NELEM(on); i++)
    if (ema || strncmp(on[i], "ema.", 4)) want_o[no++] = on[i];
  CHECK_MSG(ldmc_graph_num_params(g) == np && g->n_outputs == no, "%d parameters, %d outputs; expected %d, %d",
            (int)ldmc_graph_num_params(g), (int)g->n_outputs, np, no);
  if (ldmc_graph_num_params(g) != np || g->n_outputs != no) return;
  for (int32_t i = 0, j = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == LDMC_OP_PARAMETER) {
      const ldmc_node *p = &g->nodes[i];
      bool hyper = j == 2 || j == 3;
      CHECK_MSG(strcmp(p->attrs.name, want_p[j]) == 0, "parameter %d is %s, expected %s", (int)j, p->attrs.name, want_p[j]);
      CHECK_MSG(p->dtype == (hyper ? LDMC_F32 : dt) && (!hyper || p->shape.rank == 0), "%s is %s", p->attrs.name,
                ldmc_dtype_name(p->dtype));
      j++;
    }
  for (int32_t o = 0; o < no; o++)
    CHECK_MSG(strcmp(g->output_names[o], want_o[o]) == 0, "output %d is %s, expected %s", (int)o, g->output_names[o],
              want_o[o]);
  char *text = ldmc_graph_print(g);
  ldmc_graph *back = NULL;
  CHECK_MSG(text && ldmc_graph_parse(text, strlen(text), &back) == LDMC_OK, "text round trip: %s", ldmc_last_error());
  free(text);
  for (int r = 0; r < 2; r++) {
    const ldmc_graph *h = r ? back : g;
    int32_t pairs[16];
    if (!h || ldmc_train_step_state_pairs(h, pairs) != LDMC_OK) {
      CHECK_MSG(0, "pairs: %s", h ? ldmc_last_error() : "no graph");
      continue;
    }
    for (int32_t o = 0; o < no; o++) {
      int32_t w = -1; /* the output's namesake among the parameters */
      for (int k = 0; k < np; k++)
        if (!strcmp(want_p[k], want_o[o])) w = k;
      CHECK_MSG(pairs[o] == w, "%s: output %s pairs with input %d, expected %d", r ? "parsed" : "built", want_o[o],
                (int)pairs[o], (int)w);
    }
  }
  ldmc_graph_free(back);
}

static void test_one_step(ldmc_dtype dt) {
  const struct {
    const char *name;
    hp h;
    double lr, clip_x; /* clip_norm = clip_x x the gradient norm */
    int t;
  } cases[] = {
      {"plain adam", {.wd = 0}, 0.05, 0, 1},
      {"weight decay, step 3", {.wd = 0.1}, 0.05, 0, 3},
      {"betas, eps, clip active, ema", {.beta1 = 0.8, .beta2 = 0.95, .eps = 1e-3, .wd = 0.1, .ema = 0.9}, 0.02, 0.3, 2},
      {"clip inactive, ema", {.wd = 0.01, .ema = 0.99}, 0.1, 10, 4},
      {"negative lr (ascent)", {.wd = 0.1}, -0.03, 0.5, 5},
  };
  double tol = dt == LDMC_F64 ? 1e-12 : 4e-6;
  for (int c = 0; c < NELEM(cases); c++) {
    lin L0, L;
    lin_random(&L0, 11 + (uint64_t)c);
    if (dt == LDMC_F32) /* the reference starts from the values the graph sees */
      for (double *v = (double *)&L0; v < (double *)(&L0 + 1); v++) *v = (float)*v;
    L = L0;
    hp h = cases[c].h;
    double lr = (float)cases[c].lr, loss, norm, dW[LD * LO], db[LO];
    if (cases[c].clip_x > 0) { /* relative to this step's norm */
      lin_loss_grad(&L0, dW, db);
      double ss = 0;
      for (int i = 0; i < LD * LO; i++) ss += dW[i] * dW[i];
      for (int i = 0; i < LO; i++) ss += db[i] * db[i];
      h.clip = cases[c].clip_x * sqrt(ss);
    }
    lin_step_ref(&L, &h, lr, cases[c].t, &loss, &norm);
    ldmc_graph *g = lin_step_graph(dt, &h);
    if (!g) continue;
    check_layout(g, dt, h.ema > 0);
    ldmc_tensor_set vals = {0};
    lin_put(&vals, &L0, dt, h.ema > 0);
    ldmc_tensor *ins = make_inputs(g, &vals);
    set_scalar(g, ins, "lr", lr);
    set_scalar(g, ins, "step", cases[c].t);
    int32_t np = ldmc_graph_num_params(g);
    ldmc_tensor outs[16] = {{0}};
    if (th_run_graph(g, ins, np, outs, g->n_outputs)) {
      char label[128];
      snprintf(label, sizeof label, "%s %s", ldmc_dtype_name(dt), cases[c].name);
      const struct {
        const char *out;
        const double *want;
        int n;
      } cmp[] = {{"loss", &loss, 1},     {"grad_norm", &norm, 1},  {"W", L.W, LD * LO},      {"adam_m.W", L.mW, LD * LO},
                 {"adam_v.W", L.vW, LD * LO}, {"ema.W", L.eW, LD * LO}, {"b", L.b, LO}, {"adam_m.b", L.mb, LO},
                 {"adam_v.b", L.vb, LO},   {"ema.b", L.eb, LO}};
      int found = 0;
      for (int k = 0; k < NELEM(cmp); k++)
        for (int32_t o = 0; o < g->n_outputs; o++) {
          if (strcmp(g->output_names[o], cmp[k].out) != 0) continue;
          char l2[160];
          snprintf(l2, sizeof l2, "%s: %s", label, cmp[k].out);
          th_expect(l2, &outs[o], cmp[k].want, cmp[k].n, tol, tol);
          found++;
        }
      CHECK_MSG(found == g->n_outputs, "%s: compared %d of %d outputs", label, found, (int)g->n_outputs);
      /* the step moved the weights (so equality above is not vacuous) */
      CHECK(fabs(L.W[0] - L0.W[0]) > 1e-4 && fabs(L.b[1] - L0.b[1]) > 1e-4);
      if (h.clip > 0 && cases[c].clip_x < 1) CHECK(norm > h.clip);
      printf("one step, %s: loss %.6f, grad_norm %.6f\n", label, loss, norm);
    }
    th_release(g->n_outputs, outs);
    th_release(np, ins);
    free(ins);
    ldmc_tensor_set_free(&vals);
    ldmc_graph_free(g);
  }
}

/* ---- the MLP: loss = mean((silu(x W1 + b1) W2 + b2 - y)^2) ---- */
enum { MN = 32, MI = 4, MH = 16, MO = 2 };

static ldmc_graph *build_mlp(ldmc_dtype dt) {
  ldmc_builder *b = ldmc_builder_new("mlp");
  ldmc_value x = ldmc_parameter(b, "x", dt, 2, DIMS(MN, MI)), y = ldmc_parameter(b, "y", dt, 2, DIMS(MN, MO));
  ldmc_value w1 = ldmc_parameter(b, "l1.weight", dt, 2, DIMS(MI, MH)), b1 = ldmc_parameter(b, "l1.bias", dt, 1, DIMS(MH));
  ldmc_value w2 = ldmc_parameter(b, "l2.weight", dt, 2, DIMS(MH, MO)), b2 = ldmc_parameter(b, "l2.bias", dt, 1, DIMS(MO));
  ldmc_builder_push_scope(b, "mlp");
  ldmc_value h = ldmc_silu(b, ldmc_add(b, ldmc_matmul(b, x, w1), b1));
  ldmc_value r = ldmc_sub(b, ldmc_add(b, ldmc_matmul(b, h, w2), b2), y);
  ldmc_value sum = ldmc_reduce(b, LDMC_REDUCE_SUM, ldmc_mul(b, r, r), 2, DIMS(0, 1), false);
  ldmc_value loss = ldmc_scale(b, sum, 1.0 / (MN * MO));
  ldmc_builder_pop_scope(b);
  ldmc_builder_output(b, loss, "loss");
  ldmc_status st;
  ldmc_graph *g = ldmc_builder_finish(b, &st);
  CHECK_MSG(g, "%s", ldmc_last_error());
  return g;
}

/* Data and initial weights (f32 values; converted to the parameters' dtype).
 * The target is a smooth function of x the MLP can fit. */
static void mlp_values(ldmc_tensor_set *set, double w_lo, double w_hi) {
  uint64_t r = 77;
  double x[MN * MI], y[MN * MO], w1[MI * MH], b1[MH] = {0}, w2[MH * MO], b2[MO] = {0};
  for (int i = 0; i < MN * MI; i++) x[i] = (float)th_rand(&r, -1, 1);
  for (int n = 0; n < MN; n++) {
    const double *u = &x[n * MI];
    y[n * MO] = (float)(sin(2 * u[0]) * u[1] + 0.5), y[n * MO + 1] = (float)(u[2] - u[3] * u[3]);
  }
  for (int i = 0; i < MI * MH; i++) w1[i] = (float)((th_rand(&r, 0, 1) < 0.5 ? -1 : 1) * th_rand(&r, w_lo, w_hi));
  for (int i = 0; i < MH * MO; i++) w2[i] = (float)((th_rand(&r, 0, 1) < 0.5 ? -1 : 1) * th_rand(&r, w_lo, w_hi));
  put(set, "x", LDMC_F32, SHAPE(MN, MI), x);
  put(set, "y", LDMC_F32, SHAPE(MN, MO), y);
  put(set, "l1.weight", LDMC_F32, SHAPE(MI, MH), w1);
  put(set, "l1.bias", LDMC_F32, SHAPE(MH), b1);
  put(set, "l2.weight", LDMC_F32, SHAPE(MH, MO), w2);
  put(set, "l2.bias", LDMC_F32, SHAPE(MO), b2);
}

static ldmc_graph *mlp_step_graph(ldmc_dtype dt, const ldmc_train_opts *o) {
  ldmc_graph *m = build_mlp(dt), *g = NULL;
  CHECK_MSG(m && ldmc_train_step_build(m, o, &g) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_graph_free(m);
  return g;
}

/* ---- 2. K steps on llvm-cpu at every ISA level = K steps on interp ---- */
static void test_llvm_matches_interp(void) {
  enum { K = 5 };
  ldmc_train_opts o = {.n_data_params = 2, .weight_decay = 0.05, .clip_norm = 0.5, .ema_decay = 0.9};
  ldmc_graph *g = mlp_step_graph(LDMC_F32, &o);
  if (!g) return;
  ldmc_tensor_set vals = {0};
  mlp_values(&vals, 0.1, 0.6);
  int32_t np = ldmc_graph_num_params(g);
  ldmc_tensor *want = make_inputs(g, &vals);
  double wl[K], wn[K];
  ldmc_executable *ei = compile_on(&ldmc_backend_interp, g);
  bool ok = ei && train(ei, g, want, 1, K, 0.02, wl, wn);
  ldmc_executable_free(ei);
  CHECK_MSG(ok && wn[0] > 0.5, "interp steps (grad_norm %g, so clipping is active)", ok ? wn[0] : 0.0);
  for (int isa = LDMC_LLVM_CPU_ISA_SCALAR; ok && isa <= (int)ldmc_llvm_cpu_host_isa(); isa++) {
    ldmc_llvm_cpu_set_isa((ldmc_llvm_cpu_isa)isa);
    ldmc_executable *e = compile_on(&ldmc_backend_llvm_cpu, g);
    ldmc_llvm_cpu_set_isa(LDMC_LLVM_CPU_ISA_AUTO);
    ldmc_tensor *got = make_inputs(g, &vals);
    double gl[K], gn[K];
    if (e && train(e, g, got, 1, K, 0.02, gl, gn)) {
      double worst = 0;
      const char *wname = "";
      for (int32_t j = 0; j < np; j++) {
        double d = rel_diff(&got[j], &want[j]);
        if (d > worst) worst = d, wname = got[j].name;
      }
      for (int k = 0; k < K; k++) {
        CHECK_MSG(fabs(gl[k] - wl[k]) <= 1e-5 * wl[k], "%s step %d: loss %.9g, interp %.9g",
                  ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), k + 1, gl[k], wl[k]);
        CHECK_MSG(fabs(gn[k] - wn[k]) <= 1e-5 * wn[k], "%s step %d: grad_norm %.9g, interp %.9g",
                  ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), k + 1, gn[k], wn[k]);
      }
      CHECK_MSG(worst <= 2e-5, "%s: after %d steps %s differs from interp by %.3g (relative)",
                ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), K, wname, worst);
      printf("llvm-cpu %s, %d steps vs interp: max relative state difference %.3g (%s), loss %.6f -> %.6f\n",
             ldmc_llvm_cpu_isa_name((ldmc_llvm_cpu_isa)isa), K, worst, wname, gl[0], gl[K - 1]);
    }
    ldmc_executable_free(e);
    th_release(np, got);
    free(got);
  }
  th_release(np, want);
  free(want);
  ldmc_tensor_set_free(&vals);
  ldmc_graph_free(g);
}

/* Frozen parameters come last, so they alone can be compiled as weights
 * (prepacked once) while the trained ones change every step. */
static void test_frozen_weights(void) {
  enum { K = 4 };
  ldmc_train_opts o = {.n_data_params = 2, .wrt_regex = "^l2\\."};
  ldmc_graph *g = mlp_step_graph(LDMC_F32, &o);
  if (!g) return;
  int32_t pairs[64], np = ldmc_graph_num_params(g), last = -1;
  CHECK(g->n_outputs <= 64 && ldmc_train_step_state_pairs(g, pairs) == LDMC_OK);
  for (int32_t k = 0; k < g->n_outputs; k++) last = pairs[k] > last ? pairs[k] : last;
  CHECK_MSG(last + 1 == np - 2, "state ends at input %d of %d: the frozen l1 should be the last two", (int)last, (int)np);
  ldmc_tensor_set vals = {0};
  mlp_values(&vals, 0.1, 0.6);
  ldmc_tensor *want = make_inputs(g, &vals), *got = make_inputs(g, &vals);
  double wl[K], gl[K];
  ldmc_executable *ei = compile_on(&ldmc_backend_interp, g), *e = compile_w(&ldmc_backend_llvm_cpu, g, np - last - 1);
  if (ei && e && train(ei, g, want, 1, K, 0.02, wl, NULL) && train(e, g, got, 1, K, 0.02, gl, NULL)) {
    double worst = 0;
    for (int32_t j = 0; j < np; j++) worst = fmax(worst, rel_diff(&got[j], &want[j]));
    printf("l2 trained, frozen l1 as llvm-cpu weights, %d steps vs interp: max relative difference %.3g\n", K, worst);
    CHECK_MSG(worst <= 2e-5 && fabs(gl[K - 1] - wl[K - 1]) <= 1e-5 * wl[K - 1], "weights run differs by %.3g", worst);
    CHECK(gl[K - 1] < gl[0]);
  }
  ldmc_executable_free(ei), ldmc_executable_free(e);
  th_release(np, want), th_release(np, got);
  free(want), free(got);
  ldmc_tensor_set_free(&vals);
  ldmc_graph_free(g);
}

/* ---- 3. the loss falls ---- */
static void test_loss_falls(void) {
  enum { K = 50 };
  ldmc_train_opts o = {.n_data_params = 2, .weight_decay = 1e-4, .clip_norm = 1.0};
  ldmc_graph *g = mlp_step_graph(LDMC_F32, &o);
  if (!g) return;
  ldmc_tensor_set vals = {0};
  mlp_values(&vals, 0.1, 0.6);
  ldmc_tensor *ins = make_inputs(g, &vals);
  double loss[K];
  ldmc_executable *e = compile_on(&ldmc_backend_llvm_cpu, g);
  if (e && train(e, g, ins, 1, K, 0.03, loss, NULL)) {
    printf("llvm-cpu MLP: loss %.5f -> %.5f after %d steps (%.3g x)\n", loss[0], loss[K - 1], K, loss[K - 1] / loss[0]);
    CHECK_MSG(loss[K - 1] < 0.2 * loss[0], "loss %.5f -> %.5f", loss[0], loss[K - 1]);
  }
  ldmc_executable_free(e);
  th_release(ldmc_graph_num_params(g), ins);
  free(ins);
  ldmc_tensor_set_free(&vals);
  ldmc_graph_free(g);
}

/* ---- 4. master weights ---- */
static int count_ops(const ldmc_graph *g, ldmc_op op, ldmc_dtype dt) {
  int n = 0;
  for (int32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i].op == op && g->nodes[i].dtype == dt;
  return n;
}

static void test_master_f32(void) {
  enum { K = 20 };
  ldmc_train_opts o = {.n_data_params = 2, .clip_norm = 1.0, .ema_decay = 0.9, .master_f32 = true};
  ldmc_graph *gb = mlp_step_graph(LDMC_BF16, &o), *gf = mlp_step_graph(LDMC_F32, &o);
  if (!gb || !gf) {
    ldmc_graph_free(gb), ldmc_graph_free(gf);
    return;
  }
  for (int32_t i = 0, j = 0; i < gb->n_nodes; i++) {
    const ldmc_node *p = &gb->nodes[i];
    if (p->op != LDMC_OP_PARAMETER) continue;
    ldmc_dtype want = j < 2 ? LDMC_BF16 : LDMC_F32; /* the data stays bf16; lr, step, masters, state f32 */
    CHECK_MSG(p->dtype == want, "input %s is %s", p->attrs.name, ldmc_dtype_name(p->dtype));
    j++;
  }
  for (int32_t k = 2; k < gb->n_outputs; k++)
    CHECK_MSG(gb->nodes[gb->outputs[k]].dtype == LDMC_F32, "output %s is %s", gb->output_names[k],
              ldmc_dtype_name(gb->nodes[gb->outputs[k]].dtype));
  /* forward and backward contractions stay in bf16: 2 forward, 3 backward (dx of layer 1 is not needed) */
  CHECK_MSG(count_ops(gb, LDMC_OP_DOT_GENERAL, LDMC_BF16) == 5 && count_ops(gb, LDMC_OP_DOT_GENERAL, LDMC_F32) == 0,
            "dot_general: %d bf16, %d f32", count_ops(gb, LDMC_OP_DOT_GENERAL, LDMC_BF16),
            count_ops(gb, LDMC_OP_DOT_GENERAL, LDMC_F32));
  CHECK(count_ops(gb, LDMC_OP_SILU, LDMC_BF16) == 1 && count_ops(gb, LDMC_OP_SILU, LDMC_F32) == 0);
  CHECK(gb->nodes[gb->outputs[0]].dtype == LDMC_BF16);

  ldmc_tensor_set vals = {0};
  mlp_values(&vals, 0.1, 0.6);
  ldmc_tensor *ib = make_inputs(gb, &vals), *inf = make_inputs(gf, &vals);
  double lb[K], lf[K];
  ldmc_executable *eb = compile_on(&ldmc_backend_llvm_cpu, gb), *ef = compile_on(&ldmc_backend_llvm_cpu, gf);
  if (eb && ef && train(eb, gb, ib, 1, K, 0.02, lb, NULL) && train(ef, gf, inf, 1, K, 0.02, lf, NULL)) {
    double worst_loss = 0, worst = 0;
    for (int k = 0; k < K; k++) worst_loss = fmax(worst_loss, fabs(lb[k] - lf[k]) / lf[k]);
    for (int32_t j = 4; j < ldmc_graph_num_params(gf); j++)
      if (!strncmp(ib[j].name, "l", 1) || !strncmp(ib[j].name, "ema.", 4)) worst = fmax(worst, rel_diff(&ib[j], &inf[j]));
    printf("bf16 with f32 masters vs f32, %d steps: loss %.5f vs %.5f, max relative loss difference %.3g, "
           "weights %.3g\n", K, lb[K - 1], lf[K - 1], worst_loss, worst);
    CHECK_MSG(worst_loss < 0.03 && worst < 0.03, "bf16 run strays from f32: loss %.3g, weights %.3g", worst_loss, worst);
    CHECK(lb[K - 1] < 0.5 * lb[0]);
  }
  ldmc_executable_free(eb), ldmc_executable_free(ef);
  th_release(ldmc_graph_num_params(gb), ib), th_release(ldmc_graph_num_params(gf), inf);
  free(ib), free(inf);
  ldmc_graph_free(gb), ldmc_graph_free(gf);
  ldmc_tensor_set_free(&vals);

  /* lr 1e-5 against weights in [0.25, 0.9): bf16 weights never move, f32 masters do */
  const double lr = 1e-5;
  mlp_values(&vals, 0.25, 0.9);
  for (int master = 0; master < 2; master++) {
    ldmc_train_opts om = {.n_data_params = 2, .master_f32 = master};
    ldmc_graph *g = mlp_step_graph(LDMC_BF16, &om);
    if (!g) continue;
    ldmc_tensor *ins = make_inputs(g, &vals);
    const ldmc_tensor *w = input_named(g, ins, "l1.weight"), *m = input_named(g, ins, "adam_m.l1.weight");
    CHECK(w && m && w->dtype == (master ? LDMC_F32 : LDMC_BF16) && m->dtype == LDMC_F32);
    ldmc_tensor w0;
    ldmc_tensor_alloc(&w0, "w0", LDMC_F32, &w->shape);
    copy_conv(&w0, w);
    ldmc_executable *e = compile_on(&ldmc_backend_interp, g);
    if (e && train(e, g, ins, 1, 3, lr, NULL, NULL)) {
      w = input_named(g, ins, "l1.weight");
      double moved = 0;
      int64_t n = th_numel(&w->shape);
      for (int64_t i = 0; i < n; i++) moved += fabs(ldmc_tensor_get(w, i) - ldmc_tensor_get(&w0, i)) / (double)n;
      printf("bf16 MLP, lr %g, 3 steps, %s: mean |change| of l1.weight %.3g\n", lr, master ? "f32 masters" : "no masters",
             moved);
      if (master) CHECK_MSG(moved > lr, "masters moved by %.3g", moved);
      else CHECK_MSG(moved == 0, "bf16 weights moved by %.3g", moved);
    }
    ldmc_executable_free(e);
    ldmc_tensor_release(&w0);
    th_release(ldmc_graph_num_params(g), ins);
    free(ins);
    ldmc_graph_free(g);
  }
  ldmc_tensor_set_free(&vals);
}

/* ---- 5. errors ---- */
static void expect_error(const ldmc_graph *m, const ldmc_train_opts *o, const char *needle) {
  ldmc_graph *g = NULL;
  ldmc_status st = ldmc_train_step_build(m, o, &g);
  CHECK_MSG(st == LDMC_ERR_INVALID && !g && strstr(ldmc_last_error(), needle), "wanted '%s': status %s, message '%s'",
            needle, ldmc_status_name(st), ldmc_last_error());
  if (st == LDMC_ERR_INVALID) printf("error as expected: %s\n", ldmc_last_error());
  ldmc_graph_free(g);
}

static void test_errors(void) {
  ldmc_graph *m = build_linear(LDMC_F32, "scale");
  if (!m) return;
  const ldmc_train_opts base = {.loss = "mse", .n_data_params = 2};
  ldmc_train_opts o = base;
  o.loss = "pred";
  expect_error(m, &o, "loss output 'pred' is f32[6,2]; it must be a rank-0 float");
  o.loss = NULL; /* the first output, pred */
  expect_error(m, &o, "loss output 'pred' is f32[6,2]");
  o.loss = "nope";
  expect_error(m, &o, "graph 'linear' has no output 'nope' (outputs: pred, mse)");
  o = base, o.wrt_regex = "^nomatch$";
  expect_error(m, &o, "matches none of the trainable parameters of graph 'linear' (float parameters after the 2 data "
                      "parameters: W, scale, b)");
  o.wrt_regex = "^(x|y)$"; /* data is never trained */
  expect_error(m, &o, "matches none of the trainable parameters");
  o.wrt_regex = "(";
  expect_error(m, &o, "wrt_regex '(' does not compile");
  o = base, o.n_data_params = 6;
  expect_error(m, &o, "n_data_params = 6, but graph 'linear' has 5 parameters");
  o.n_data_params = -1;
  expect_error(m, &o, "n_data_params = -1");
  o.n_data_params = 5;
  expect_error(m, &o, "has no float parameter after its 5 data parameters");
  const struct {
    double *field, v;
    const char *msg;
  } bad[] = {{&o.beta1, 1.0, "beta1 = 1 must be in [0, 1)"},
             {&o.beta2, -0.1, "beta2 = -0.1 must be in [0, 1)"},
             {&o.eps, -1, "eps = -1 must be finite and >= 0"},
             {&o.weight_decay, INFINITY, "weight_decay = inf must be finite and >= 0"},
             {&o.clip_norm, NAN, "clip_norm = nan must be finite and >= 0"},
             {&o.ema_decay, 1.0, "ema_decay = 1 must be in [0, 1)"}};
  for (int i = 0; i < NELEM(bad); i++) {
    o = base;
    *bad[i].field = bad[i].v;
    expect_error(m, &o, bad[i].msg);
  }
  expect_error(NULL, &base, "the model is NULL");
  ldmc_graph_free(m);
  /* names the step graph gives its own parameters and outputs */
  m = build_linear(LDMC_F32, "lr");
  o = base, o.wrt_regex = "^(W|b)$";
  if (m) expect_error(m, &o, "two parameters named 'lr'");
  ldmc_graph_free(m);
  m = build_linear(LDMC_F32, "adam_v.b");
  if (m) expect_error(m, &o, "two parameters named 'adam_v.b'");
  ldmc_graph_free(m);
  m = build_linear(LDMC_F32, "grad_norm");
  o.wrt_regex = NULL; /* trains it too */
  if (m) expect_error(m, &o, "trained state 'grad_norm' would be named like the step graph's output");
  ldmc_graph_free(m);

  /* the pairing refuses an output that cannot replace its namesake */
  ldmc_builder *b = ldmc_builder_new("pairs");
  ldmc_value p = ldmc_parameter(b, "p", LDMC_F32, 1, DIMS(3)), q = ldmc_parameter(b, "q", LDMC_F32, 1, DIMS(3));
  ldmc_builder_output(b, ldmc_add(b, p, q), "q");
  ldmc_builder_output(b, ldmc_reduce(b, LDMC_REDUCE_SUM, p, 1, DIMS(0), false), "p");
  ldmc_graph *g = ldmc_builder_finish(b, NULL);
  int32_t pairs[2] = {7, 7};
  ldmc_status st = g ? ldmc_train_step_state_pairs(g, pairs) : LDMC_ERR_INTERNAL;
  CHECK_MSG(st == LDMC_ERR_INVALID && pairs[0] == 1 &&
                strstr(ldmc_last_error(), "output 'p' is f32[] but parameter 0 'p' is f32[3]; it cannot replace it"),
            "pairs: %s", ldmc_last_error());
  ldmc_graph_free(g);
}

/* ---- 6. torch.optim.AdamW (float64) ---- */
static void test_torch(void) {
  if (system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    printf("SKIP torch comparison: /usr/bin/python3 cannot import torch and numpy\n");
    return;
  }
  enum { K = 3 };
  char dir[] = "/tmp/ldmc_train_torch_XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(!"mkdtemp");
    return;
  }
  lin L;
  lin_random(&L, 5);
  double dW[LD * LO], db[LO], ss = 0;
  lin_loss_grad(&L, dW, db);
  for (int i = 0; i < LD * LO; i++) ss += dW[i] * dW[i];
  for (int i = 0; i < LO; i++) ss += db[i] * db[i];
  hp h = {.beta1 = 0.85, .beta2 = 0.99, .eps = 1e-6, .wd = 0.05, .clip = 0.6 * sqrt(ss), .ema = 0.9};
  double lr = (float)0.05;
  ldmc_graph *g = lin_step_graph(LDMC_F64, &h);
  ldmc_tensor_set vals = {0}, ref = {0};
  put(&vals, "x", LDMC_F64, SHAPE(LN, LD), L.x);
  put(&vals, "y", LDMC_F64, SHAPE(LN, LO), L.y);
  put(&vals, "scale", LDMC_F64, SHAPE0, &L.s);
  put(&vals, "W", LDMC_F64, SHAPE(LD, LO), L.W);
  put(&vals, "b", LDMC_F64, SHAPE(LO), L.b);
  char init[96], out[96], cmd[1024];
  snprintf(init, sizeof init, "%s/init.safetensors", dir);
  snprintf(out, sizeof out, "%s/ref.safetensors", dir);
  CHECK_MSG(ldmc_safetensors_save(init, &vals, 0, NULL, NULL) == LDMC_OK, "%s", ldmc_last_error());
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 %s/tests/torch/train_step_ref.py --init %s --out %s --steps %d --lr %.17g --beta1 %.17g "
           "--beta2 %.17g --eps %.17g --weight-decay %.17g --clip %.17g --ema %.17g",
           getenv("LDMC_SRC") ? getenv("LDMC_SRC") : "..", init, out, K, lr, h.beta1, h.beta2, h.eps, h.wd, h.clip, h.ema);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "torch reference failed: %s", cmd);
  if (rc == 0) CHECK_MSG(ldmc_safetensors_load(out, &ref) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_tensor *ins = g ? make_inputs(g, &vals) : NULL;
  double loss[K], norm[K];
  ldmc_executable *e = g ? compile_on(&ldmc_backend_interp, g) : NULL;
  if (rc == 0 && e && train(e, g, ins, 1, K, lr, loss, norm)) {
    const char *names[] = {"W", "b", "adam_m.W", "adam_v.W", "adam_m.b", "adam_v.b", "ema.W", "ema.b"};
    double worst = 0;
    for (int i = 0; i < NELEM(names); i++) {
      const ldmc_tensor *a = input_named(g, ins, names[i]), *t = ldmc_tensor_set_find(&ref, names[i]);
      CHECK_MSG(a && t && ldmc_shape_equal(&a->shape, &t->shape), "%s missing or misshapen", names[i]);
      if (a && t) worst = fmax(worst, rel_diff(a, t));
    }
    const ldmc_tensor *tl = ldmc_tensor_set_find(&ref, "loss"), *tn = ldmc_tensor_set_find(&ref, "grad_norm");
    CHECK(tl && tn && th_numel(&tl->shape) == K && th_numel(&tn->shape) == K);
    for (int k = 0; tl && tn && k < K; k++) {
      worst = fmax(worst, fabs(loss[k] - ldmc_tensor_get(tl, k)) / ldmc_tensor_get(tl, k));
      worst = fmax(worst, fabs(norm[k] - ldmc_tensor_get(tn, k)) / ldmc_tensor_get(tn, k));
    }
    printf("torch.optim.AdamW (clip_grad_norm_, weight decay, EMA) vs ldmc f64 on interp, %d steps: max relative "
           "difference %.3g (loss %.6f -> %.6f, grad_norm %.4f > clip %.4f)\n",
           K, worst, loss[0], loss[K - 1], norm[0], h.clip);
    CHECK_MSG(worst < 1e-9, "ldmc and torch differ by %.3g", worst);
    CHECK(tn && ldmc_tensor_get(tn, 0) > h.clip); /* clipping was active */
  }
  ldmc_executable_free(e);
  if (ins) th_release(ldmc_graph_num_params(g), ins);
  free(ins);
  ldmc_tensor_set_free(&vals);
  ldmc_tensor_set_free(&ref);
  ldmc_graph_free(g);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
  test_one_step(LDMC_F64);
  test_one_step(LDMC_F32);
  test_llvm_matches_interp();
  test_frozen_weights();
  test_loss_falls();
  test_master_f32();
  test_errors();
  test_torch();
  return test_summary("test_train_step");
}
