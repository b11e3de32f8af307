/* Weights against a graph: refusal messages, F16/BF16 conversion, the random
 * init's bounds and reproducibility, the U-Net's run inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "frontend/nn.h"
#include "frontend/weights_io.h"
#include "models/unet.h"
#include "models/weights.h"
#include "support/half.h"
#include "test_util.h"

static const char *const k_inputs[1] = {"x"};

/* x[2,3] -> lin (4x3 + 4) -> ln (4 + 4) */
static ldmc_graph *small_graph(void) {
  ldmc_builder *b = ldmc_builder_new("small");
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 2, (int64_t[]){2, 3});
  ldmc_value y = ldmc_nn_layer_norm(b, "ln", ldmc_nn_linear(b, "lin", x, 4, true), 1e-5);
  ldmc_builder_output(b, y, "y");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static void add(ldmc_tensor_set *s, const char *name, ldmc_dtype dt, int rank, const int64_t *d, double v) {
  ldmc_tensor t;
  ldmc_shape sh = ldmc_shape_make(rank, d);
  ldmc_tensor_alloc(&t, name, dt, &sh);
  int64_t n;
  ldmc_shape_numel(&sh, 0, &n);
  for (int64_t i = 0; i < n; i++) ldmc_tensor_set_elem(&t, i, v + 0.25 * (double)i);
  ldmc_tensor_set_add(s, &t);
}

static void good_set(ldmc_tensor_set *s, ldmc_dtype dt) {
  memset(s, 0, sizeof *s);
  add(s, "lin.weight", dt, 2, (int64_t[]){4, 3}, 0.5);
  add(s, "lin.bias", dt, 1, (int64_t[]){4}, -1);
  add(s, "ln.weight", dt, 1, (int64_t[]){4}, 1);
  add(s, "ln.bias", dt, 1, (int64_t[]){4}, 0);
}

static void test_check(ldmc_graph *g) {
  ldmc_tensor_set s;
  good_set(&s, LDMC_F32);
  CHECK_MSG(ldmc_weights_check(g, k_inputs, 1, &s) == LDMC_OK, "%s", ldmc_last_error());
  ldmc_tensor_set_free(&s);

  /* F16 and BF16 on disk are converted to f32 exactly (values representable in both) */
  ldmc_dtype halves[2] = {LDMC_F16, LDMC_BF16};
  for (int h = 0; h < 2; h++) {
    good_set(&s, halves[h]);
    CHECK_MSG(ldmc_weights_check(g, k_inputs, 1, &s) == LDMC_OK, "%s", ldmc_last_error());
    ldmc_tensor *w = ldmc_tensor_set_find(&s, "lin.weight");
    CHECK(w->dtype == LDMC_F32 && w->nbytes == 12 * 4);
    CHECK(((float *)w->data)[0] == 0.5f && ((float *)w->data)[11] == 0.5f + 0.25f * 11);
    CHECK(ldmc_tensor_set_find(&s, "lin.bias")->dtype == LDMC_F32);
    ldmc_tensor_set_free(&s);
  }

  /* missing, unexpected and mis-shaped, all named in one message */
  memset(&s, 0, sizeof s);
  add(&s, "lin.weight", LDMC_F32, 2, (int64_t[]){3, 4}, 0);
  add(&s, "ln.weight", LDMC_F32, 1, (int64_t[]){4}, 0);
  add(&s, "ln.bias", LDMC_I32, 1, (int64_t[]){4}, 0);
  add(&s, "extra.weight", LDMC_F32, 1, (int64_t[]){7}, 0);
  add(&s, "x", LDMC_F32, 2, (int64_t[]){2, 3}, 0); /* an input is not a weight */
  CHECK(ldmc_weights_check(g, k_inputs, 1, &s) == LDMC_ERR_INVALID);
  const char *m = ldmc_last_error();
  printf("refusal: %s\n", m);
  CHECK(strstr(m, "4 problems") != NULL || strstr(m, "5 problems") != NULL);
  CHECK(strstr(m, "missing 'lin.bias' (expected f32[4])") != NULL);
  CHECK(strstr(m, "'lin.weight' is f32[3,4], expected f32[4,3]") != NULL);
  CHECK(strstr(m, "'ln.bias' is i32[4], expected f32[4]") != NULL);
  CHECK(strstr(m, "unexpected 'extra.weight' (found f32[7]") != NULL);
  CHECK(strstr(m, "unexpected 'x'") != NULL);
  ldmc_tensor_set_free(&s);

  /* a dtype ldmc does not compute with (raw F64) is refused */
  good_set(&s, LDMC_F32);
  ldmc_tensor *b = ldmc_tensor_set_find(&s, "ln.bias");
  strcpy(b->raw_dtype, "F64");
  b->dtype = LDMC_DTYPE_COUNT;
  CHECK(ldmc_weights_check(g, k_inputs, 1, &s) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), "'ln.bias' is F64[4]") != NULL);
  b->raw_dtype[0] = 0;
  b->dtype = LDMC_F32;
  ldmc_tensor_set_free(&s);
}

static void test_init(ldmc_graph *g) {
  ldmc_tensor_set a, b, c;
  CHECK(ldmc_weights_init_random(g, k_inputs, 1, 5, &a) == LDMC_OK);
  CHECK(ldmc_weights_init_random(g, k_inputs, 1, 5, &b) == LDMC_OK);
  CHECK(ldmc_weights_init_random(g, k_inputs, 1, 6, &c) == LDMC_OK);
  CHECK(a.n == 4 && !ldmc_tensor_set_find(&a, "x"));
  const ldmc_tensor *w = ldmc_tensor_set_find(&a, "lin.weight"), *bias = ldmc_tensor_set_find(&a, "lin.bias");
  CHECK(memcmp(w->data, ldmc_tensor_set_find(&b, "lin.weight")->data, w->nbytes) == 0);
  CHECK(memcmp(w->data, ldmc_tensor_set_find(&c, "lin.weight")->data, w->nbytes) != 0);
  const double bound = 1.0 / sqrt(3.0); /* fan_in 3 */
  bool in_bounds = true;
  for (int i = 0; i < 12; i++) in_bounds &= fabs(((float *)w->data)[i]) <= bound;
  for (int i = 0; i < 4; i++) in_bounds &= fabs(((float *)bias->data)[i]) <= bound && ((float *)bias->data)[i] != 0;
  CHECK(in_bounds);
  /* element 0 of lin.weight is 2u-1 scaled, u the documented draw */
  CHECK_NEAR(((float *)w->data)[0], (2 * ldmc_weights_uniform(5, "lin.weight", 0) - 1) * bound, 1e-7);
  const ldmc_tensor *lw = ldmc_tensor_set_find(&a, "ln.weight"), *lb = ldmc_tensor_set_find(&a, "ln.bias");
  CHECK(((float *)lw->data)[0] == 1.0f && ((float *)lw->data)[3] == 1.0f);
  CHECK(((float *)lb->data)[0] == 0.0f && ((float *)lb->data)[3] == 0.0f);
  CHECK(ldmc_weights_check(g, k_inputs, 1, &a) == LDMC_OK);
  ldmc_tensor_set_free(&a);
  ldmc_tensor_set_free(&b);
  ldmc_tensor_set_free(&c);
  /* the draw is uniform on [0,1): mean 1/2, variance 1/12 over many samples */
  double s = 0, s2 = 0;
  const int n = 200000;
  bool in_range = true;
  for (int i = 0; i < n; i++) {
    double u = ldmc_weights_uniform(1, "t", i);
    in_range &= u >= 0 && u < 1;
    s += u;
    s2 += u * u;
  }
  double mean = s / n, var = s2 / n - mean * mean;
  CHECK_NEAR(mean, 0.5, 0.005);
  CHECK_NEAR(var, 1.0 / 12, 0.002);
  CHECK(in_range);
}

static void test_load_file(ldmc_graph *g) {
  char dir[] = "/tmp/ldmc_weights_XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(!"mkdtemp");
    return;
  }
  char p[128];
  snprintf(p, sizeof p, "%s/w.safetensors", dir);
  ldmc_tensor_set s, l;
  good_set(&s, LDMC_BF16);
  CHECK(ldmc_safetensors_save(p, &s, 0, NULL, NULL) == LDMC_OK);
  ldmc_tensor_set_free(&s);
  CHECK_MSG(ldmc_weights_load(g, k_inputs, 1, p, 0, &l) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(l.n == 4 && ldmc_tensor_set_find(&l, "ln.weight")->dtype == LDMC_F32);
  CHECK(((float *)ldmc_tensor_set_find(&l, "lin.bias")->data)[2] == -0.5f);
  ldmc_tensor_set_free(&l);
  memset(&s, 0, sizeof s);
  add(&s, "lin.weight", LDMC_F32, 2, (int64_t[]){4, 3}, 0);
  CHECK(ldmc_safetensors_save(p, &s, 0, NULL, NULL) == LDMC_OK);
  ldmc_tensor_set_free(&s);
  CHECK(ldmc_weights_load(g, k_inputs, 1, p, 0, &l) == LDMC_ERR_INVALID);
  CHECK(strstr(ldmc_last_error(), p) != NULL && strstr(ldmc_last_error(), "missing 'ln.weight'") != NULL);
  CHECK(l.n == 0);
  CHECK(ldmc_weights_load(g, k_inputs, 1, "/nonexistent/w.safetensors", 0, &l) != LDMC_OK);
  unlink(p);
  rmdir(dir);
}

static void test_unet_inputs(void) {
  ldmc_unet_config cfg;
  ldmc_unet_config_default(&cfg, 32);
  cfg.height = cfg.width = 8;
  cfg.context_dim = 16;
  cfg.context_tokens = 3;
  cfg.batch = 2;
  ldmc_graph *g = NULL;
  CHECK(ldmc_unet_build(&cfg, &g) == LDMC_OK);
  if (!g) return;
  ldmc_tensor_set in = {0};
  add(&in, "sample", LDMC_F32, 4, (int64_t[]){2, 4, 8, 8}, 0);
  add(&in, "timestep", LDMC_I64, 1, (int64_t[]){2}, 0);
  ((int64_t *)ldmc_tensor_set_find(&in, "timestep")->data)[1] = 999;
  add(&in, "encoder_hidden_states", LDMC_F32, 3, (int64_t[]){2, 3, 16}, 0);
  CHECK_MSG(ldmc_unet_inputs_check(g, &in) == LDMC_OK, "%s", ldmc_last_error());
  const ldmc_tensor *t = ldmc_tensor_set_find(&in, "timestep");
  CHECK(t->dtype == LDMC_F32 && ((float *)t->data)[1] == 999.0f);
  ldmc_tensor_set_free(&in);

  memset(&in, 0, sizeof in);
  add(&in, "sample", LDMC_F16, 4, (int64_t[]){2, 4, 8, 8}, 0);
  add(&in, "timestep", LDMC_F32, 1, (int64_t[]){3}, 0);
  add(&in, "context", LDMC_F32, 3, (int64_t[]){2, 3, 16}, 0);
  CHECK(ldmc_unet_inputs_check(g, &in) == LDMC_ERR_INVALID);
  const char *m = ldmc_last_error();
  printf("refusal: %s\n", m);
  CHECK(strstr(m, "'sample' is f16[2,4,8,8], expected f32[2,4,8,8]") != NULL);
  CHECK(strstr(m, "'timestep' is f32[3], expected f32[2]") != NULL);
  CHECK(strstr(m, "missing 'encoder_hidden_states' (expected f32[2,3,16])") != NULL);
  CHECK(strstr(m, "unexpected 'context'") != NULL);

  ldmc_tensor_set w = {0}, views = {0};
  CHECK(ldmc_weights_init_random(g, ldmc_unet_input_names, LDMC_UNET_N_INPUTS, 1, &w) == LDMC_OK);
  CHECK(w.n == ldmc_graph_num_params(g) - 3);
  CHECK(ldmc_weights_bind(&w, &in, &views) == LDMC_OK);
  CHECK(views.n == w.n + in.n && !views.items[0].owns_data && views.items[0].data == in.items[0].data);
  ldmc_tensor_set_free(&views);
  ldmc_tensor_set_free(&w);
  ldmc_tensor_set_free(&in);
  ldmc_graph_free(g);
}

int main(void) {
  ldmc_graph *g = small_graph();
  CHECK(g != NULL);
  if (g) {
    test_check(g);
    test_init(g);
    test_load_file(g);
    ldmc_graph_free(g);
  }
  test_unet_inputs();
  return test_summary("test_weights");
}
