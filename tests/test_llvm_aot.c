/* Ahead-of-time output of the llvm-cpu backend: a graph is emitted as an
 * object file with a generated C header, linked into a small C program by
 * the system compiler, run as a separate process, and its outputs compared
 * with the interpreter's. Also checks the assembly and LLVM IR outputs and
 * that graphs the backend cannot generate code for are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/llvm_cpu/llvm_cpu.h"
#include "frontend/frontend.h"
#include "test_util.h"

static ldmc_graph *build(void) {
  ldmc_builder *b = ldmc_builder_new("aot demo"); /* space: the entry name is made a C identifier */
  int64_t xd[4] = {1, 6, 9, 7}, wd[4] = {8, 6, 3, 3}, c = 8;
  ldmc_value x = ldmc_parameter(b, "x", LDMC_F32, 4, xd);
  ldmc_value w = ldmc_parameter(b, "w", LDMC_F32, 4, wd);
  ldmc_value gm = ldmc_parameter(b, "gamma", LDMC_F32, 1, &c), bt = ldmc_parameter(b, "beta", LDMC_F32, 1, &c);
  ldmc_value y = ldmc_conv2d(b, x, w, 1, 1, 1, 1);
  y = ldmc_silu(b, ldmc_group_norm(b, y, gm, bt, 4, 1e-5));
  ldmc_value s = ldmc_softmax(b, ldmc_unary(b, LDMC_OP_SIN, y), 3);
  ldmc_builder_output(b, y, "features");
  ldmc_builder_output(b, s, "probs");
  ldmc_status st;
  return ldmc_builder_finish(b, &st);
}

static bool write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return false;
  fputs(text, f);
  return fclose(f) == 0;
}

static long file_size(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

static const char *k_main =
    "#include <stdio.h>\n#include <stdlib.h>\n#include \"aot_demo.h\"\n"
    "int main(int argc, char **argv) {\n"
    "  static const size_t in_bytes[4] = {6*9*7*4, 8*6*9*4, 8*4, 8*4}, out_bytes[2] = {8*9*7*4, 8*9*7*4};\n"
    "  void *in[4], *out[2];\n"
    "  FILE *f = fopen(argv[1], \"rb\");\n"
    "  if (!f || argc < 3) return 2;\n"
    "  for (int i = 0; i < 4; i++) { in[i] = malloc(in_bytes[i]); if (fread(in[i], 1, in_bytes[i], f) != in_bytes[i]) return 3; }\n"
    "  fclose(f);\n"
    "  for (int i = 0; i < aot_demo_NUM_OUTPUTS; i++) out[i] = malloc(out_bytes[i]);\n"
    "  void *ws = aligned_alloc(64, (aot_demo_WORKSPACE_BYTES + 63) / 64 * 64);\n"
    "  aot_demo((const void *const *)in, out, ws);\n"
    "  f = fopen(argv[2], \"wb\");\n"
    "  for (int i = 0; i < 2; i++) fwrite(out[i], 1, out_bytes[i], f);\n"
    "  return fclose(f) != 0;\n"
    "}\n";

int main(void) {
  char dir[] = "/tmp/ldmc_aot_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char obj[256], hdr[256], src[256], exe[256], inb[256], outb[256], cmd[2048], as[256], ll[256];
  snprintf(obj, sizeof obj, "%s/aot_demo.o", dir);
  snprintf(hdr, sizeof hdr, "%s/aot_demo.h", dir);
  snprintf(src, sizeof src, "%s/main.c", dir);
  snprintf(exe, sizeof exe, "%s/demo", dir);
  snprintf(inb, sizeof inb, "%s/in.bin", dir);
  snprintf(outb, sizeof outb, "%s/out.bin", dir);
  snprintf(as, sizeof as, "%s/aot_demo.s", dir);
  snprintf(ll, sizeof ll, "%s/aot_demo.ll", dir);
  ldmc_graph *g = build();
  CHECK(g != NULL);
  if (!g) return test_summary("llvm_aot");
  ldmc_compile_opts o = {0};
  ldmc_status st = ldmc_llvm_cpu_emit(g, &o, LDMC_EMIT_OBJ, obj, hdr, NULL);
  CHECK_MSG(st == LDMC_OK, "emit obj: %s", ldmc_last_error());
  CHECK(ldmc_llvm_cpu_emit(g, &o, LDMC_EMIT_ASM, as, NULL, "aot_demo") == LDMC_OK);
  CHECK(ldmc_llvm_cpu_emit(g, &o, LDMC_EMIT_LLVM, ll, NULL, "aot_demo") == LDMC_OK);
  CHECK(file_size(as) > 0 && file_size(ll) > 0);
  CHECK(write_file(src, k_main));
  /* inputs, and the reference from the interpreter */
  ldmc_tensor in[4] = {0}, want[2] = {0};
  FILE *f = fopen(inb, "wb");
  for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
    if (g->nodes[i].op != LDMC_OP_PARAMETER) continue;
    ldmc_tensor_alloc(&in[k], g->nodes[i].attrs.name, LDMC_F32, &g->nodes[i].shape);
    float *p = in[k].data;
    for (size_t j = 0; j < in[k].nbytes / 4; j++) p[j] = (float)(((j * 2654435761u + (unsigned)k * 97) % 2001) / 1000.0 - 1.0);
    fwrite(in[k].data, 1, in[k].nbytes, f);
    k++;
  }
  fclose(f);
  ldmc_executable *ref = NULL;
  st = ldmc_backend_interp.compile(g, &o, &ref);
  if (st == LDMC_OK) st = ldmc_executable_run(ref, in, 4, want, 2);
  CHECK_MSG(st == LDMC_OK, "interp: %s", ldmc_last_error());
  ldmc_executable_free(ref);
  snprintf(cmd, sizeof cmd, "cc -O1 -I%s %s %s -o %s -lm && %s %s %s", dir, src, obj, exe, exe, inb, outb);
  int rc = system(cmd);
  CHECK_MSG(rc == 0, "compiling and running the AOT program failed (%d): %s", rc, cmd);
  if (rc == 0 && st == LDMC_OK) {
    f = fopen(outb, "rb");
    for (int o2 = 0; o2 < 2 && f; o2++) {
      size_t n = want[o2].nbytes / 4;
      float *got = malloc(n * 4);
      CHECK(fread(got, 4, n, f) == n);
      double worst = 0;
      for (size_t i = 0; i < n; i++) {
        double w = ((float *)want[o2].data)[i], e = fabs(got[i] - w) / (1e-4 + fabs(w));
        if (e > worst) worst = e;
      }
      CHECK_MSG(worst < 1e-3, "output %d: worst relative error %g", o2, worst);
      free(got);
    }
    if (f) fclose(f);
  }
  /* the header declares the entry point and the workspace size */
  f = fopen(hdr, "r");
  char text[8192] = {0};
  if (f) {
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
  }
  CHECK(strstr(text, "void aot_demo(const void *const *inputs, void *const *outputs, void *workspace);") != NULL);
  CHECK(strstr(text, "#define aot_demo_WORKSPACE_BYTES") != NULL);
  /* a graph with an op the backend has no kernel for is refused, naming the node */
  ldmc_builder *b = ldmc_builder_new("conv3d"); /* (3-D convolutions have no generated kernel) */
  int64_t xd[5] = {1, 2, 5, 4, 3}, wd[5] = {3, 2, 2, 3, 1};
  ldmc_value x3 = ldmc_parameter(b, "x", LDMC_F32, 5, xd), w3 = ldmc_parameter(b, "w", LDMC_F32, 5, wd);
  ldmc_attrs a3 = {0};
  a3.window_stride.n = a3.lhs_dilation.n = a3.rhs_dilation.n = a3.pad_low.n = a3.pad_high.n = 3;
  for (int k = 0; k < 3; k++) a3.window_stride.v[k] = a3.lhs_dilation.v[k] = a3.rhs_dilation.v[k] = 1;
  a3.groups = 1;
  a3.input_dims.n = a3.kernel_dims.n = a3.output_dims.n = 5;
  for (int k = 0; k < 5; k++) a3.input_dims.v[k] = a3.kernel_dims.v[k] = a3.output_dims.v[k] = k;
  int32_t ops[2] = {x3, w3};
  ldmc_value r = ldmc_graph_add_checked(ldmc_builder_graph(b), LDMC_OP_CONVOLUTION, LDMC_F32, NULL, 2, ops, &a3, NULL);
  ldmc_builder_output(b, r, "r");
  ldmc_graph *g2 = ldmc_builder_finish(b, &st);
  st = ldmc_llvm_cpu_emit(g2, &o, LDMC_EMIT_OBJ, obj, NULL, NULL);
  CHECK(st == LDMC_ERR_UNSUPPORTED);
  CHECK(strstr(ldmc_last_error(), "convolution") != NULL);
  ldmc_graph_free(g2);
  for (int k = 0; k < 4; k++) ldmc_tensor_release(&in[k]);
  for (int k = 0; k < 2; k++) ldmc_tensor_release(&want[k]);
  ldmc_graph_free(g);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return test_summary("llvm_aot");
}
